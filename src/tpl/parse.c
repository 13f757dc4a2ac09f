/* tpl/parse.c: Jinja lexer and parser, following Jinja2 3.1's own (lexer.py, parser.py) as
 * transformers configures it: trim_blocks, lstrip_blocks, keep_trailing_newline off, `{%- -%}`
 * whitespace control, raw blocks, Python string-literal escapes. The output is an AST of `node`s
 * allocated in the template's arena. Errors leave through longjmp with a line and column. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tpl_int.h"

/* ---------------------------------------------------------------- tokens */

typedef enum ttype {
    T_EOF,
    T_DATA,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STRING,
    T_INT,
    T_FLOAT,
    T_OP,
} ttype;

/* multi-character operators; single-character ones are their own character */
enum { O_FLOORDIV = 256, O_POW, O_EQ, O_NE, O_GE, O_LE };

typedef struct token {
    uint8_t type;
    int op;
    uint32_t pos;
    const char *p; /* name / data / decoded string */
    size_t n;
    int64_t ival;
    double fval;
} token;

typedef struct parser {
    const char *src;
    size_t len;
    tarena *mem;
    token *tok;
    size_t ntok, cap;
    size_t i; /* current token */
    int depth;
    int loop_depth;
    node *macro; /* innermost macro being parsed */
    ft_err *err;
    const char *name;
    jmp_buf jb;
} parser;

void tpl_line_col(const char *src, size_t len, size_t pos, int64_t *line, int64_t *col) {
    int64_t l = 1, c = 1;
    for (size_t i = 0; i < pos && i < len; i++) {
        if (src[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)src[i] & 0xC0) != 0x80)
            c++;
    }
    *line = l;
    *col = c;
}

__attribute__((format(printf, 3, 4))) __attribute__((noreturn)) static void pfail(parser *ps, size_t pos,
                                                                                 const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int64_t line, col;
    tpl_line_col(ps->src, ps->len, pos, &line, &col);
    FT_ERR_AT(ps->err, FT_ERR_PARSE, ps->name, line, col, "template syntax error: %s", msg);
    ps->err ? (void)(ps->err->offset = (int64_t)pos) : (void)0;
    longjmp(ps->jb, 1);
}

static void *palloc(parser *ps, size_t n) {
    void *p = tarena_alloc(ps->mem, n);
    if (!p) {
        FT_ERR(ps->err, FT_ERR_NOMEM, "out of memory compiling template");
        longjmp(ps->jb, 1);
    }
    return p;
}

static void push_tok(parser *ps, token t) {
    if (ps->ntok == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 256;
        token *nt = palloc(ps, cap * sizeof(token));
        if (ps->ntok)
            memcpy(nt, ps->tok, ps->ntok * sizeof(token));
        ps->tok = nt;
        ps->cap = cap;
    }
    ps->tok[ps->ntok++] = t;
}

/* ---------------------------------------------------------------- lexer */

/* Unicode whitespace at s[i]: its byte length, or 0 (Python's \s and str.isspace). */
static size_t ws_at(const char *s, size_t n, size_t i) {
    if (i >= n)
        return 0;
    uint32_t c;
    int k = ft_utf8_decode(s + i, n - i, &c);
    if (k <= 0)
        return 0;
    return py_isspace(c) ? (size_t)k : 0;
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
    size_t k;
    while ((k = ws_at(s, n, i)) > 0)
        i += k;
    return i;
}

/* End of the whitespace-only tail check: is s[from..to) all whitespace and non-empty? */
static bool all_ws(const char *s, size_t from, size_t to) {
    if (from >= to)
        return false;
    return skip_ws(s, to, from) == to;
}

/* Python's str.rstrip(): length after removing trailing Unicode whitespace. */
static size_t rstrip_len(const char *s, size_t from, size_t to) {
    size_t end = to;
    while (end > from) {
        size_t st = end - 1;
        while (st > from && ((unsigned char)s[st] & 0xC0) == 0x80)
            st--;
        if (ws_at(s, end, st) == end - st)
            end = st;
        else
            break;
    }
    return end;
}

/* The text before a tag, after `-` stripping or lstrip_blocks (Jinja2's OptionalLStrip). */
static void emit_data(parser *ps, size_t from, size_t to, char sign, bool is_variable, bool line_starting) {
    const char *s = ps->src;
    if (sign == '-')
        to = rstrip_len(s, from, to);
    else if (sign != '+' && !is_variable) {
        size_t l_pos = from;
        for (size_t i = to; i > from; i--)
            if (s[i - 1] == '\n') {
                l_pos = i;
                break;
            }
        if ((l_pos > from || line_starting) && all_ws(s, l_pos, to))
            to = l_pos;
    }
    if (to > from)
        push_tok(ps, (token){.type = T_DATA, .pos = (uint32_t)from, .p = s + from, .n = to - from});
}

/* Try to match a block end at i: `+%}` | `-%}\s*` | `%}\n?` (trim_blocks). Returns the end
 * position or 0. */
static size_t match_block_end(const char *s, size_t n, size_t i) {
    if (i + 3 <= n && s[i] == '+' && s[i + 1] == '%' && s[i + 2] == '}')
        return i + 3;
    if (i + 3 <= n && s[i] == '-' && s[i + 1] == '%' && s[i + 2] == '}')
        return skip_ws(s, n, i + 3);
    if (i + 2 <= n && s[i] == '%' && s[i + 1] == '}')
        return (i + 2 < n && s[i + 2] == '\n') ? i + 3 : i + 2;
    return 0;
}

static size_t match_var_end(const char *s, size_t n, size_t i) {
    if (i + 3 <= n && s[i] == '-' && s[i + 1] == '}' && s[i + 2] == '}')
        return skip_ws(s, n, i + 3);
    if (i + 2 <= n && s[i] == '}' && s[i + 1] == '}')
        return i + 2;
    return 0;
}

static bool is_ident_start(unsigned char c) { return c == '_' || (unsigned)((c | 32) - 'a') < 26u || c >= 0x80; }
static bool is_ident(unsigned char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* (\d+_)*\d+ at i: end or 0 */
static size_t match_digits(const char *s, size_t n, size_t i) {
    if (i >= n || !is_digit((unsigned char)s[i]))
        return 0;
    while (i < n && is_digit((unsigned char)s[i])) {
        i++;
        if (i + 1 < n && s[i] == '_' && is_digit((unsigned char)s[i + 1]))
            i++;
    }
    return i;
}

/* Jinja2's float_re: digits ((. digits)? e[+-]? digits | . digits), not after a '.' */
static size_t match_float(const char *s, size_t n, size_t i) {
    if (i > 0 && s[i - 1] == '.')
        return 0;
    size_t j = match_digits(s, n, i);
    if (!j)
        return 0;
    size_t frac = 0;
    if (j < n && s[j] == '.')
        frac = match_digits(s, n, j + 1);
    size_t k = frac ? frac : j;
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        size_t e = k + 1;
        if (e < n && (s[e] == '+' || s[e] == '-'))
            e++;
        size_t ee = match_digits(s, n, e);
        if (ee)
            return ee;
    }
    return frac ? frac : 0;
}

static size_t match_int(const char *s, size_t n, size_t i, int64_t *val, bool *overflow) {
    size_t j = i;
    int base = 10;
    *overflow = false;
    if (i + 1 < n && s[i] == '0' && strchr("bBoOxX", s[i + 1]) && s[i + 1]) {
        char b = (char)(s[i + 1] | 32);
        base = b == 'b' ? 2 : b == 'o' ? 8 : 16;
        j = i + 2;
        size_t start = j;
        uint64_t v = 0;
        for (;;) {
            if (j < n && s[j] == '_' && j + 1 < n)
                j++;
            int d = -1;
            if (j < n) {
                char c = (char)(s[j] | 32);
                if (c >= '0' && c <= '9')
                    d = c - '0';
                else if (c >= 'a' && c <= 'f')
                    d = c - 'a' + 10;
            }
            if (d < 0 || d >= base) {
                if (j > start && s[j - 1] == '_')
                    j--;
                break;
            }
            if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
                *overflow = true;
            v = v * (uint64_t)base + (uint64_t)d;
            j++;
        }
        if (j == start)
            return 0;
        if (v > INT64_MAX)
            *overflow = true;
        *val = (int64_t)v;
        return j;
    }
    if (i >= n || !is_digit((unsigned char)s[i]))
        return 0;
    if (s[i] == '0') {
        j = i + 1;
        while (j + 1 < n && s[j] == '_' && s[j + 1] == '0')
            j += 2;
        while (j < n && s[j] == '0')
            j++;
        *val = 0;
        return j;
    }
    j = match_digits(s, n, i);
    uint64_t v = 0;
    for (size_t k = i; k < j; k++) {
        if (s[k] == '_')
            continue;
        if (v > (UINT64_MAX - 9) / 10)
            *overflow = true;
        v = v * 10 + (uint64_t)(s[k] - '0');
    }
    if (v > INT64_MAX)
        *overflow = true;
    *val = (int64_t)v;
    return j;
}

static int hexval(char c) {
    c = (char)(c | 32);
    return (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Decode a string literal body as Jinja2 does: backslashreplace to ASCII, then Python's
 * unicode-escape codec. */
static void decode_string(parser *ps, size_t pos, const char *s, size_t n, const char **out, size_t *out_n) {
    char *o = palloc(ps, n * 2 + 16);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            o[k++] = s[i++];
            continue;
        }
        if (i + 1 >= n) { /* a lone trailing backslash cannot occur (the regex forbids it) */
            o[k++] = s[i++];
            continue;
        }
        char c = s[i + 1];
        i += 2;
        switch (c) {
        case '\n':
            break;
        case '\\':
        case '\'':
        case '"':
            o[k++] = c;
            break;
        case 'a':
            o[k++] = 7;
            break;
        case 'b':
            o[k++] = 8;
            break;
        case 'f':
            o[k++] = 12;
            break;
        case 'n':
            o[k++] = '\n';
            break;
        case 'r':
            o[k++] = '\r';
            break;
        case 't':
            o[k++] = '\t';
            break;
        case 'v':
            o[k++] = 11;
            break;
        case 'x':
        case 'u':
        case 'U': {
            int digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t v = 0;
            for (int d = 0; d < digits; d++) {
                int h = i + (size_t)d < n ? hexval(s[i + (size_t)d]) : -1;
                if (h < 0)
                    pfail(ps, pos, "(unicode error) 'unicodeescape' codec can't decode bytes: truncated \\%c escape",
                          c);
                v = v * 16 + (uint32_t)h;
            }
            i += (size_t)digits;
            if (v > 0x10FFFF)
                pfail(ps, pos, "illegal Unicode character");
            if (v >= 0xD800 && v <= 0xDFFF)
                pfail(ps, pos, "surrogate code point \\%c%04x in a string literal is not supported", c, v);
            k += (size_t)ft_utf8_encode(v, o + k);
            break;
        }
        case 'N':
            pfail(ps, pos, "\\N{...} escapes in string literals are not supported");
        default:
            if (c >= '0' && c <= '7') {
                uint32_t v = (uint32_t)(c - '0');
                for (int d = 0; d < 2 && i < n && s[i] >= '0' && s[i] <= '7'; d++)
                    v = v * 8 + (uint32_t)(s[i++] - '0');
                k += (size_t)ft_utf8_encode(v, o + k);
            } else if ((unsigned char)c >= 0x80) {
                /* backslashreplace turned the character into \xNN / \uNNNN / \UNNNNNNNN, and
                 * the escaped backslash before it keeps that text literal */
                uint32_t cp;
                size_t st = i - 1;
                int len = ft_utf8_decode(s + st, n - st, &cp);
                if (len <= 0) {
                    cp = (unsigned char)c;
                    len = 1;
                }
                i = st + (size_t)len;
                char tmp[16];
                int tn = cp < 0x100 ? snprintf(tmp, sizeof tmp, "\\x%02x", cp)
                         : cp < 0x10000 ? snprintf(tmp, sizeof tmp, "\\u%04x", cp)
                                        : snprintf(tmp, sizeof tmp, "\\U%08x", cp);
                o[k++] = '\\';
                memcpy(o + k, tmp, (size_t)tn);
                k += (size_t)tn;
            } else {
                o[k++] = '\\';
                o[k++] = c;
            }
        }
    }
    *out = o;
    *out_n = k;
}

/* Tokens inside {{ }} or {% %} up to the closing delimiter. Returns the position after it. */
static size_t lex_tag(parser *ps, size_t i, bool block, bool *line_starting) {
    const char *s = ps->src;
    size_t n = ps->len;
    char stack[256];
    int sp = 0;
    for (;;) {
        if (i >= n)
            pfail(ps, i, "unexpected end of template, expected '%s'", block ? "end of statement block" : "end of print statement");
        if (sp == 0) {
            size_t e = block ? match_block_end(s, n, i) : match_var_end(s, n, i);
            if (e) {
                push_tok(ps, (token){.type = block ? T_BLOCK_END : T_VAR_END, .pos = (uint32_t)i});
                *line_starting = s[e - 1] == '\n';
                return e;
            }
        }
        size_t w = skip_ws(s, n, i);
        if (w > i) {
            i = w;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        size_t e;
        if ((e = match_float(s, n, i)) > 0) {
            char tmp[128];
            size_t k = 0;
            for (size_t j = i; j < e && k < sizeof tmp - 1; j++)
                if (s[j] != '_')
                    tmp[k++] = s[j];
            tmp[k] = 0;
            push_tok(ps, (token){.type = T_FLOAT, .pos = (uint32_t)i, .fval = strtod(tmp, NULL)});
            i = e;
            continue;
        }
        int64_t iv;
        bool ovf;
        if ((e = match_int(s, n, i, &iv, &ovf)) > 0) {
            if (ovf)
                pfail(ps, i, "integer literal too large (ftune integers are 64-bit)");
            push_tok(ps, (token){.type = T_INT, .pos = (uint32_t)i, .ival = iv});
            i = e;
            continue;
        }
        if (is_ident_start(c) && !is_digit(c)) {
            e = i + 1;
            while (e < n && is_ident((unsigned char)s[e]))
                e++;
            push_tok(ps, (token){.type = T_NAME, .pos = (uint32_t)i, .p = s + i, .n = e - i});
            i = e;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != (char)c) {
                if (s[j] == '\\')
                    j++;
                j++;
            }
            if (j >= n)
                pfail(ps, i, "unexpected char %s at %zu", c == '\'' ? "\"'\"" : "'\"'", i);
            token t = {.type = T_STRING, .pos = (uint32_t)i};
            decode_string(ps, i, s + i + 1, j - i - 1, &t.p, &t.n);
            push_tok(ps, t);
            i = j + 1;
            continue;
        }
        /* operators, longest first */
        static const struct {
            const char *s;
            int op;
        } ops2[] = {{"//", O_FLOORDIV}, {"**", O_POW}, {"==", O_EQ}, {"!=", O_NE}, {">=", O_GE}, {"<=", O_LE}};
        int op = 0;
        size_t olen = 0;
        for (size_t k = 0; k < sizeof ops2 / sizeof *ops2; k++)
            if (i + 1 < n && s[i] == ops2[k].s[0] && s[i + 1] == ops2[k].s[1]) {
                op = ops2[k].op;
                olen = 2;
                break;
            }
        if (!op && c && strchr("+-/*%~[](){}><=.:|,;", c)) {
            op = c;
            olen = 1;
        }
        if (!op)
            pfail(ps, i, "unexpected char '%c' at %zu", c >= 0x20 && c < 0x7f ? c : '?', i);
        if (op == '{' || op == '(' || op == '[') {
            if (sp >= (int)sizeof stack)
                pfail(ps, i, "brackets nested too deeply");
            stack[sp++] = op == '{' ? '}' : op == '(' ? ')' : ']';
        } else if (op == '}' || op == ')' || op == ']') {
            if (sp == 0)
                pfail(ps, i, "unexpected '%c'", (char)op);
            char want = stack[--sp];
            if (want != (char)op)
                pfail(ps, i, "unexpected '%c', expected '%c'", (char)op, want);
        }
        push_tok(ps, (token){.type = T_OP, .op = op, .pos = (uint32_t)i});
        i += olen;
    }
}

/* Find "{%" sign? \s* "endraw" \s* end from i: returns start of the tag and fills *tag_end, *sign. */
static size_t find_endraw(parser *ps, size_t i, size_t *tag_end, char *sign) {
    const char *s = ps->src;
    size_t n = ps->len;
    for (size_t j = i; j + 1 < n; j++) {
        if (s[j] != '{' || s[j + 1] != '%')
            continue;
        size_t k = j + 2;
        char sg = 0;
        if (k < n && (s[k] == '-' || s[k] == '+'))
            sg = s[k++];
        k = skip_ws(s, n, k);
        if (k + 6 > n || memcmp(s + k, "endraw", 6) != 0)
            continue;
        k = skip_ws(s, n, k + 6);
        size_t e = match_block_end(s, n, k);
        if (!e)
            continue;
        *tag_end = e;
        *sign = sg;
        return j;
    }
    pfail(ps, i, "Missing end of raw directive");
}

static void lex(parser *ps) {
    const char *s = ps->src;
    size_t n = ps->len, pos = 0;
    bool line_starting = true;
    while (pos < n) {
        /* the earliest "{%", "{{" or "{#" */
        size_t j = pos;
        while (j + 1 < n && !(s[j] == '{' && (s[j + 1] == '%' || s[j + 1] == '{' || s[j + 1] == '#')))
            j++;
        if (j + 1 >= n) {
            push_tok(ps, (token){.type = T_DATA, .pos = (uint32_t)pos, .p = s + pos, .n = n - pos});
            break;
        }
        char kind = s[j + 1];
        size_t k = j + 2;
        char sign = 0;
        if (k < n && (s[k] == '-' || s[k] == '+'))
            sign = s[k++];
        /* {% raw %} */
        if (kind == '%') {
            size_t r = skip_ws(s, n, k);
            if (r + 3 <= n && memcmp(s + r, "raw", 3) == 0) {
                size_t q = skip_ws(s, n, r + 3), e = 0;
                if (q + 3 <= n && s[q] == '-' && s[q + 1] == '%' && s[q + 2] == '}')
                    e = skip_ws(s, n, q + 3);
                else if (q + 2 <= n && s[q] == '%' && s[q + 1] == '}')
                    e = q + 2;
                if (e) {
                    emit_data(ps, pos, j, sign, false, line_starting);
                    size_t tag_end;
                    char esign;
                    size_t endtag = find_endraw(ps, e, &tag_end, &esign);
                    /* the raw text is data; its own end tag strips like any block tag */
                    emit_data(ps, e, endtag, esign, false, s[e - 1] == '\n');
                    line_starting = s[tag_end - 1] == '\n';
                    pos = tag_end;
                    continue;
                }
            }
        }
        emit_data(ps, pos, j, sign, kind == '{', line_starting);
        if (kind == '#') {
            /* comment: up to `+#}` | `-#}\s*` | `#}\n?` */
            size_t q = k;
            for (;; q++) {
                if (q + 1 >= n)
                    pfail(ps, j, "Missing end of comment tag");
                if (s[q] == '#' && s[q + 1] == '}')
                    break;
            }
            size_t e;
            if (q > k && s[q - 1] == '-' && q - 1 >= k)
                e = skip_ws(s, n, q + 2);
            else if (q > k && s[q - 1] == '+')
                e = q + 2;
            else
                e = (q + 2 < n && s[q + 2] == '\n') ? q + 3 : q + 2;
            line_starting = s[e - 1] == '\n';
            pos = e;
            continue;
        }
        push_tok(ps, (token){.type = kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, .pos = (uint32_t)j});
        pos = lex_tag(ps, k, kind == '%', &line_starting);
    }
    push_tok(ps, (token){.type = T_EOF, .pos = (uint32_t)n});
}

/* ---------------------------------------------------------------- parser helpers */

static token *cur(parser *ps) { return &ps->tok[ps->i]; }
static token *look(parser *ps) { return &ps->tok[ps->i + 1 < ps->ntok ? ps->i + 1 : ps->i]; }
static token *next_tok(parser *ps) {
    token *t = cur(ps);
    if (ps->i + 1 < ps->ntok)
        ps->i++;
    return t;
}
static bool is_name(const token *t, const char *name) {
    return t->type == T_NAME && t->n == strlen(name) && memcmp(t->p, name, t->n) == 0;
}
static bool is_op(const token *t, int op) { return t->type == T_OP && t->op == op; }
static bool skip_name(parser *ps, const char *name) {
    if (is_name(cur(ps), name)) {
        next_tok(ps);
        return true;
    }
    return false;
}
static bool skip_op(parser *ps, int op) {
    if (is_op(cur(ps), op)) {
        next_tok(ps);
        return true;
    }
    return false;
}

static const char *describe(const token *t, char *buf, size_t cap) {
    switch (t->type) {
    case T_EOF:
        return "end of template";
    case T_DATA:
        return "template data";
    case T_VAR_BEGIN:
        return "begin of print statement";
    case T_VAR_END:
        return "end of print statement";
    case T_BLOCK_BEGIN:
        return "begin of statement block";
    case T_BLOCK_END:
        return "end of statement block";
    case T_NAME:
        snprintf(buf, cap, "%.*s", (int)(t->n > 60 ? 60 : t->n), t->p);
        return buf;
    case T_STRING:
        return "string";
    case T_INT:
        return "integer";
    case T_FLOAT:
        return "float";
    default:
        if (t->op < 256)
            snprintf(buf, cap, "%c", (char)t->op);
        else
            snprintf(buf, cap, "%s",
                     t->op == O_FLOORDIV ? "//" : t->op == O_POW ? "**" : t->op == O_EQ ? "==" : t->op == O_NE ? "!=" : t->op == O_GE ? ">=" : "<=");
        return buf;
    }
}

static void expect_type(parser *ps, ttype type, const char *what) {
    token *t = cur(ps);
    if (t->type != type) {
        char b[80];
        pfail(ps, t->pos, "expected %s, got '%s'", what, describe(t, b, sizeof b));
    }
    next_tok(ps);
}
static void expect_op(parser *ps, int op) {
    token *t = cur(ps);
    if (!is_op(t, op)) {
        char b[80], w[8];
        snprintf(w, sizeof w, "%c", (char)op);
        pfail(ps, t->pos, "expected token '%s', got '%s'", w, describe(t, b, sizeof b));
    }
    next_tok(ps);
}
static token *expect_name(parser *ps) {
    token *t = cur(ps);
    if (t->type != T_NAME) {
        char b[80];
        pfail(ps, t->pos, "expected token 'name', got '%s'", describe(t, b, sizeof b));
    }
    return next_tok(ps);
}
static void expect_kw(parser *ps, const char *name) {
    token *t = cur(ps);
    if (!is_name(t, name)) {
        char b[80];
        pfail(ps, t->pos, "expected token '%s', got '%s'", name, describe(t, b, sizeof b));
    }
    next_tok(ps);
}

static node *mk(parser *ps, nkind k, uint32_t pos) {
    node *n = palloc(ps, sizeof *n);
    n->kind = (uint8_t)k;
    n->pos = pos;
    return n;
}

/* growable node-pointer vector in the arena */
typedef struct nvec {
    node **v;
    size_t n, cap;
} nvec;
static void nv_push(parser *ps, nvec *v, node *x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        node **nv = palloc(ps, cap * sizeof(node *));
        if (v->n)
            memcpy(nv, v->v, v->n * sizeof(node *));
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
}

static void enter(parser *ps) {
    if (++ps->depth > 150)
        pfail(ps, cur(ps)->pos, "template nested too deeply (limit 150)");
}
static void leave(parser *ps) { ps->depth--; }

/* ---------------------------------------------------------------- expressions */

static node *parse_expression(parser *ps, bool with_condexpr);
static node *parse_tuple(parser *ps, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_paren);
static node *parse_unary(parser *ps, bool with_filter);
static node *parse_postfix(parser *ps, node *n);
static node *parse_filter(parser *ps, node *n, bool start_inline);

static const char *const known_filters[] = {
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
    "last", "length", "list", "lower", "map", "max", "min", "pprint", "random", "reject", "rejectattr",
    "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags",
    "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount",
    "wordwrap", "xmlattr", NULL};
static const char *const known_tests[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "filter",
    "float", "ge", "gt", "greaterthan", "in", "integer", "iterable", "le", "lower", "lt", "lessthan", "mapping",
    "ne", "none", "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper", "==",
    "!=", "<", "<=", ">", ">=", NULL};

static bool in_list(const char *const *l, const char *s, size_t n) {
    for (; *l; l++)
        if (strlen(*l) == n && memcmp(*l, s, n) == 0)
            return true;
    return false;
}

static const char *dup_str(parser *ps, const char *s, size_t n) {
    char *d = palloc(ps, n + 1);
    memcpy(d, s, n);
    return d;
}

/* f(args, k=v, *a, **kw): fills n->list/n (positional), names/list2/n2 (keywords), dyn_*. */
static void parse_call_args(parser *ps, node *call) {
    token *open = cur(ps);
    expect_op(ps, '(');
    nvec args = {0}, kwv = {0};
    const char **kwn = NULL;
    size_t kwcap = 0;
    bool require_comma = false;
    while (!is_op(cur(ps), ')')) {
        if (require_comma) {
            expect_op(ps, ',');
            if (is_op(cur(ps), ')'))
                break;
        }
        if (is_op(cur(ps), '*')) {
            if (call->dyn_args || call->dyn_kwargs)
                pfail(ps, open->pos, "invalid syntax for function call expression");
            next_tok(ps);
            call->dyn_args = parse_expression(ps, true);
        } else if (is_op(cur(ps), O_POW)) {
            if (call->dyn_kwargs)
                pfail(ps, open->pos, "invalid syntax for function call expression");
            next_tok(ps);
            call->dyn_kwargs = parse_expression(ps, true);
        } else if (cur(ps)->type == T_NAME && is_op(look(ps), '=')) {
            if (call->dyn_kwargs)
                pfail(ps, open->pos, "invalid syntax for function call expression");
            token *k = next_tok(ps);
            next_tok(ps);
            if (kwv.n == kwcap) {
                size_t cap = kwcap ? kwcap * 2 : 4;
                const char **nk = palloc(ps, cap * sizeof(char *));
                if (kwv.n)
                    memcpy(nk, kwn, kwv.n * sizeof(char *));
                kwn = nk;
                kwcap = cap;
            }
            kwn[kwv.n] = dup_str(ps, k->p, k->n);
            nv_push(ps, &kwv, parse_expression(ps, true));
        } else {
            if (call->dyn_args || call->dyn_kwargs || kwv.n)
                pfail(ps, open->pos, "invalid syntax for function call expression");
            nv_push(ps, &args, parse_expression(ps, true));
        }
        require_comma = true;
    }
    expect_op(ps, ')');
    call->list = args.v;
    call->n = args.n;
    call->list2 = kwv.v;
    call->n2 = kwv.n;
    call->names = kwn;
}

static node *parse_primary(parser *ps) {
    token *t = cur(ps);
    node *n;
    char b[80];
    switch (t->type) {
    case T_NAME:
        next_tok(ps);
        n = mk(ps, N_CONST, t->pos);
        if (is_name(t, "true") || is_name(t, "True"))
            n->val = tv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False"))
            n->val = tv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None"))
            n->val = tv_none();
        else {
            n->kind = N_NAME;
            n->str = dup_str(ps, t->p, t->n);
            n->slen = t->n;
            if (ps->macro && (is_name(t, "varargs") || is_name(t, "kwargs") || is_name(t, "caller"))) {
                /* remember that the macro body uses them (Jinja2 then accepts extra arguments) */
                ps->macro->op |= is_name(t, "varargs") ? 1 : is_name(t, "kwargs") ? 2 : 4;
            }
        }
        return n;
    case T_STRING: {
        next_tok(ps);
        size_t total = t->n, i0 = ps->i;
        while (cur(ps)->type == T_STRING)
            total += next_tok(ps)->n;
        char *s = palloc(ps, total + 1);
        size_t k = t->n;
        memcpy(s, t->p, t->n);
        for (size_t i = i0; i < ps->i; i++) {
            memcpy(s + k, ps->tok[i].p, ps->tok[i].n);
            k += ps->tok[i].n;
        }
        n = mk(ps, N_CONST, t->pos);
        n->val = tv_str(s, total);
        return n;
    }
    case T_INT:
        next_tok(ps);
        n = mk(ps, N_CONST, t->pos);
        n->val = tv_int(t->ival);
        return n;
    case T_FLOAT:
        next_tok(ps);
        n = mk(ps, N_CONST, t->pos);
        n->val = tv_float(t->fval);
        return n;
    case T_OP:
        if (t->op == '(') {
            next_tok(ps);
            n = parse_tuple(ps, false, true, NULL, true);
            expect_op(ps, ')');
            return n;
        }
        if (t->op == '[') {
            next_tok(ps);
            nvec items = {0};
            while (!is_op(cur(ps), ']')) {
                if (items.n)
                    expect_op(ps, ',');
                if (is_op(cur(ps), ']'))
                    break;
                nv_push(ps, &items, parse_expression(ps, true));
            }
            expect_op(ps, ']');
            n = mk(ps, N_LIST, t->pos);
            n->list = items.v;
            n->n = items.n;
            return n;
        }
        if (t->op == '{') {
            next_tok(ps);
            nvec keys = {0}, vals = {0};
            while (!is_op(cur(ps), '}')) {
                if (keys.n)
                    expect_op(ps, ',');
                if (is_op(cur(ps), '}'))
                    break;
                nv_push(ps, &keys, parse_expression(ps, true));
                expect_op(ps, ':');
                nv_push(ps, &vals, parse_expression(ps, true));
            }
            expect_op(ps, '}');
            n = mk(ps, N_DICT, t->pos);
            n->list = keys.v;
            n->n = keys.n;
            n->list2 = vals.v;
            n->n2 = vals.n;
            return n;
        }
        /* fallthrough */
    default:
        pfail(ps, t->pos, "unexpected '%s'", describe(t, b, sizeof b));
    }
}

static node *parse_subscribed(parser *ps) {
    node *args[3] = {0};
    uint32_t pos = cur(ps)->pos;
    if (is_op(cur(ps), ':')) {
        next_tok(ps);
    } else {
        node *e = parse_expression(ps, true);
        if (!is_op(cur(ps), ':'))
            return e;
        next_tok(ps);
        args[0] = e;
    }
    if (is_op(cur(ps), ':')) {
        /* stop omitted */
    } else if (!is_op(cur(ps), ']') && !is_op(cur(ps), ','))
        args[1] = parse_expression(ps, true);
    if (is_op(cur(ps), ':')) {
        next_tok(ps);
        if (!is_op(cur(ps), ']') && !is_op(cur(ps), ','))
            args[2] = parse_expression(ps, true);
    }
    node *s = mk(ps, N_SLICE, pos);
    s->a = args[0];
    s->b = args[1];
    s->c = args[2];
    return s;
}

static node *parse_postfix(parser *ps, node *n) {
    for (;;) {
        token *t = cur(ps);
        if (is_op(t, '.')) {
            next_tok(ps);
            token *a = cur(ps);
            if (a->type == T_NAME) {
                next_tok(ps);
                node *g = mk(ps, N_GETATTR, a->pos);
                g->a = n;
                g->str = dup_str(ps, a->p, a->n);
                g->slen = a->n;
                n = g;
            } else if (a->type == T_INT) {
                next_tok(ps);
                node *g = mk(ps, N_GETITEM, a->pos);
                g->a = n;
                g->b = mk(ps, N_CONST, a->pos);
                g->b->val = tv_int(a->ival);
                n = g;
            } else
                pfail(ps, a->pos, "expected name or number");
        } else if (is_op(t, '[')) {
            next_tok(ps);
            nvec args = {0};
            while (!is_op(cur(ps), ']')) {
                if (args.n)
                    expect_op(ps, ',');
                nv_push(ps, &args, parse_subscribed(ps));
            }
            expect_op(ps, ']');
            node *g = mk(ps, N_GETITEM, t->pos);
            g->a = n;
            if (args.n == 1)
                g->b = args.v[0];
            else {
                g->b = mk(ps, N_TUPLE, t->pos);
                g->b->list = args.v;
                g->b->n = args.n;
            }
            n = g;
        } else if (is_op(t, '(')) {
            node *c = mk(ps, N_CALL, t->pos);
            c->a = n;
            parse_call_args(ps, c);
            n = c;
        } else
            return n;
    }
}

static node *parse_filter(parser *ps, node *n, bool start_inline) {
    while (is_op(cur(ps), '|') || start_inline) {
        if (!start_inline)
            next_tok(ps);
        token *name = expect_name(ps);
        if (is_op(cur(ps), '.'))
            pfail(ps, name->pos, "dotted filter names are not supported");
        if (!in_list(known_filters, name->p, name->n))
            pfail(ps, name->pos, "No filter named '%.*s'.", (int)name->n, name->p);
        node *f = mk(ps, N_FILTER, name->pos);
        f->a = n;
        f->str = dup_str(ps, name->p, name->n);
        f->slen = name->n;
        if (is_op(cur(ps), '('))
            parse_call_args(ps, f);
        n = f;
        start_inline = false;
    }
    return n;
}

static node *parse_test(parser *ps, node *n) {
    next_tok(ps); /* is */
    bool negated = skip_name(ps, "not");
    token *name = expect_name(ps);
    if (is_op(cur(ps), '.'))
        pfail(ps, name->pos, "dotted test names are not supported");
    if (!in_list(known_tests, name->p, name->n))
        pfail(ps, name->pos, "No test named '%.*s'.", (int)name->n, name->p);
    node *t = mk(ps, N_TEST, name->pos);
    t->a = n;
    t->str = dup_str(ps, name->p, name->n);
    t->slen = name->n;
    t->flag = negated;
    token *c = cur(ps);
    if (is_op(c, '('))
        parse_call_args(ps, t);
    else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT || c->type == T_FLOAT || is_op(c, '(') ||
              is_op(c, '[') || is_op(c, '{')) &&
             !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is"))
            pfail(ps, c->pos, "You cannot chain multiple tests with is");
        node *arg = parse_postfix(ps, parse_primary(ps));
        t->list = palloc(ps, sizeof(node *));
        t->list[0] = arg;
        t->n = 1;
    }
    return t;
}

static node *parse_filter_expr(parser *ps, node *n) {
    for (;;) {
        token *t = cur(ps);
        if (is_op(t, '|'))
            n = parse_filter(ps, n, false);
        else if (is_name(t, "is"))
            n = parse_test(ps, n);
        else if (is_op(t, '(')) {
            node *c = mk(ps, N_CALL, t->pos);
            c->a = n;
            parse_call_args(ps, c);
            n = c;
        } else
            return n;
    }
}

static node *parse_unary(parser *ps, bool with_filter) {
    enter(ps);
    token *t = cur(ps);
    node *n;
    if (is_op(t, '-') || is_op(t, '+')) {
        next_tok(ps);
        n = mk(ps, t->op == '-' ? N_NEG : N_POS, t->pos);
        n->a = parse_unary(ps, false);
    } else
        n = parse_primary(ps);
    n = parse_postfix(ps, n);
    if (with_filter)
        n = parse_filter_expr(ps, n);
    leave(ps);
    return n;
}

static node *binop(parser *ps, op_kind op, node *a, node *b, uint32_t pos) {
    node *n = mk(ps, N_BINOP, pos);
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static node *parse_pow(parser *ps) {
    node *l = parse_unary(ps, true);
    while (is_op(cur(ps), O_POW)) {
        uint32_t pos = next_tok(ps)->pos;
        l = binop(ps, OP_POW, l, parse_unary(ps, true), pos);
    }
    return l;
}

static node *parse_math2(parser *ps) {
    node *l = parse_pow(ps);
    for (;;) {
        token *t = cur(ps);
        op_kind op;
        if (is_op(t, '*'))
            op = OP_MUL;
        else if (is_op(t, '/'))
            op = OP_DIV;
        else if (is_op(t, O_FLOORDIV))
            op = OP_FLOORDIV;
        else if (is_op(t, '%'))
            op = OP_MOD;
        else
            return l;
        next_tok(ps);
        l = binop(ps, op, l, parse_pow(ps), t->pos);
    }
}

static node *parse_concat(parser *ps) {
    uint32_t pos = cur(ps)->pos;
    node *first = parse_math2(ps);
    if (!is_op(cur(ps), '~'))
        return first;
    nvec args = {0};
    nv_push(ps, &args, first);
    while (skip_op(ps, '~'))
        nv_push(ps, &args, parse_math2(ps));
    node *n = mk(ps, N_CONCAT, pos);
    n->list = args.v;
    n->n = args.n;
    return n;
}

static node *parse_math1(parser *ps) {
    node *l = parse_concat(ps);
    for (;;) {
        token *t = cur(ps);
        if (!is_op(t, '+') && !is_op(t, '-'))
            return l;
        next_tok(ps);
        l = binop(ps, t->op == '+' ? OP_ADD : OP_SUB, l, parse_concat(ps), t->pos);
    }
}

static node *parse_compare(parser *ps) {
    uint32_t pos = cur(ps)->pos;
    node *e = parse_math1(ps);
    nvec ops = {0};
    for (;;) {
        token *t = cur(ps);
        int op = -1;
        if (is_op(t, O_EQ))
            op = OP_EQ;
        else if (is_op(t, O_NE))
            op = OP_NE;
        else if (is_op(t, '<'))
            op = OP_LT;
        else if (is_op(t, O_LE))
            op = OP_LE;
        else if (is_op(t, '>'))
            op = OP_GT;
        else if (is_op(t, O_GE))
            op = OP_GE;
        if (op >= 0)
            next_tok(ps);
        else if (is_name(t, "in")) {
            next_tok(ps);
            op = OP_IN;
        } else if (is_name(t, "not") && is_name(look(ps), "in")) {
            next_tok(ps);
            next_tok(ps);
            op = OP_NOTIN;
        } else
            break;
        node *operand = mk(ps, N_BINOP, t->pos);
        operand->op = (uint8_t)op;
        operand->a = parse_math1(ps);
        nv_push(ps, &ops, operand);
    }
    if (!ops.n)
        return e;
    node *n = mk(ps, N_COMPARE, pos);
    n->a = e;
    n->list = ops.v;
    n->n = ops.n;
    return n;
}

static node *parse_not(parser *ps) {
    token *t = cur(ps);
    if (is_name(t, "not")) {
        next_tok(ps);
        enter(ps);
        node *n = mk(ps, N_NOT, t->pos);
        n->a = parse_not(ps);
        leave(ps);
        return n;
    }
    return parse_compare(ps);
}

static node *parse_and(parser *ps) {
    node *l = parse_not(ps);
    while (is_name(cur(ps), "and")) {
        node *n = mk(ps, N_AND, next_tok(ps)->pos);
        n->a = l;
        n->b = parse_not(ps);
        l = n;
    }
    return l;
}

static node *parse_or(parser *ps) {
    node *l = parse_and(ps);
    while (is_name(cur(ps), "or")) {
        node *n = mk(ps, N_OR, next_tok(ps)->pos);
        n->a = l;
        n->b = parse_and(ps);
        l = n;
    }
    return l;
}

static node *parse_condexpr(parser *ps) {
    enter(ps);
    node *e1 = parse_or(ps);
    while (is_name(cur(ps), "if")) {
        node *n = mk(ps, N_CONDEXPR, next_tok(ps)->pos);
        n->b = e1;
        n->a = parse_or(ps);
        if (skip_name(ps, "else"))
            n->c = parse_condexpr(ps);
        e1 = n;
    }
    leave(ps);
    return e1;
}

static node *parse_expression(parser *ps, bool with_condexpr) {
    return with_condexpr ? parse_condexpr(ps) : parse_or(ps);
}

static bool tuple_end(parser *ps, const char *extra_end) {
    token *t = cur(ps);
    if (t->type == T_VAR_END || t->type == T_BLOCK_END || is_op(t, ')'))
        return true;
    return extra_end && is_name(t, extra_end);
}

static node *parse_tuple(parser *ps, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_paren) {
    uint32_t pos = cur(ps)->pos;
    nvec args = {0};
    bool is_tuple = false;
    for (;;) {
        if (args.n)
            expect_op(ps, ',');
        if (tuple_end(ps, extra_end))
            break;
        nv_push(ps, &args, simplified ? parse_primary(ps) : parse_expression(ps, with_condexpr));
        if (is_op(cur(ps), ','))
            is_tuple = true;
        else
            break;
    }
    if (!is_tuple) {
        if (args.n)
            return args.v[0];
        if (!explicit_paren) {
            char b[80];
            pfail(ps, cur(ps)->pos, "Expected an expression, got '%s'", describe(cur(ps), b, sizeof b));
        }
    }
    node *n = mk(ps, N_TUPLE, pos);
    n->list = args.v;
    n->n = args.n;
    return n;
}

/* ---------------------------------------------------------------- statements */

static node *subparse(parser *ps, const char *const *end_tokens);

static bool can_assign(const node *n) {
    if (n->kind == N_NAME)
        return true;
    if (n->kind == N_TUPLE) {
        for (size_t i = 0; i < n->n; i++)
            if (!can_assign(n->list[i]))
                return false;
        return true;
    }
    return n->kind == N_NSREF;
}

static node *parse_assign_target(parser *ps, bool with_namespace, bool name_only, const char *extra_end) {
    token *t = cur(ps);
    node *target;
    if (with_namespace && t->type == T_NAME && is_op(look(ps), '.')) {
        next_tok(ps);
        next_tok(ps);
        token *attr = expect_name(ps);
        target = mk(ps, N_NSREF, t->pos);
        target->str = dup_str(ps, t->p, t->n);
        target->slen = t->n;
        target->names = palloc(ps, sizeof(char *));
        target->names[0] = dup_str(ps, attr->p, attr->n);
        target->n2 = attr->n;
    } else if (name_only) {
        token *nm = expect_name(ps);
        target = mk(ps, N_NAME, nm->pos);
        target->str = dup_str(ps, nm->p, nm->n);
        target->slen = nm->n;
    } else
        target = parse_tuple(ps, true, true, extra_end, false);
    if (!can_assign(target) || (target->kind == N_NAME && (!strcmp(target->str, "true") || !strcmp(target->str, "false") ||
                                                           !strcmp(target->str, "none"))))
        pfail(ps, t->pos, "can't assign to this expression");
    return target;
}

/* {% ... %} body {% end %}: expects the block end of the opening tag first. */
static node *parse_statements(parser *ps, const char *const *end_tokens, bool drop_needle) {
    skip_op(ps, ':');
    expect_type(ps, T_BLOCK_END, "end of statement block");
    node *body = subparse(ps, end_tokens);
    if (cur(ps)->type == T_EOF) {
        char want[200] = "";
        for (const char *const *e = end_tokens; *e; e++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'", e == end_tokens ? "" : " or ", *e);
        pfail(ps, cur(ps)->pos, "Unexpected end of template. Jinja was looking for the following tags: %s.", want);
    }
    if (drop_needle)
        next_tok(ps);
    return body;
}

static void parse_signature(parser *ps, node *m) {
    expect_op(ps, '(');
    nvec args = {0}, defs = {0};
    bool any_default = false;
    while (!is_op(cur(ps), ')')) {
        if (args.n)
            expect_op(ps, ',');
        node *arg = parse_assign_target(ps, false, true, NULL);
        node *d = NULL;
        if (skip_op(ps, '=')) {
            d = parse_expression(ps, true);
            any_default = true;
        } else if (any_default)
            pfail(ps, arg->pos, "non-default argument follows default argument");
        nv_push(ps, &args, arg);
        nv_push(ps, &defs, d);
    }
    expect_op(ps, ')');
    m->list = args.v;
    m->n = args.n;
    m->list2 = defs.v;
    m->n2 = defs.n;
}

static node *parse_statement(parser *ps) {
    token *t = cur(ps);
    char b[80];
    if (t->type != T_NAME)
        pfail(ps, t->pos, "tag name expected");
    enter(ps);
    node *n = NULL;
    if (is_name(t, "for")) {
        next_tok(ps);
        n = mk(ps, N_FOR, t->pos);
        n->a = parse_assign_target(ps, false, false, "in");
        expect_kw(ps, "in");
        n->b = parse_tuple(ps, false, false, "recursive", false);
        if (skip_name(ps, "if"))
            n->c = parse_expression(ps, true);
        if (skip_name(ps, "recursive"))
            pfail(ps, t->pos, "recursive for loops are not supported");
        static const char *const e1[] = {"endfor", "else", NULL}, *const e2[] = {"endfor", NULL};
        ps->loop_depth++;
        node *body = parse_statements(ps, e1, false);
        ps->loop_depth--;
        n->d = body;
        if (is_name(next_tok(ps), "else"))
            n->e = parse_statements(ps, e2, true);
    } else if (is_name(t, "if")) {
        next_tok(ps);
        n = mk(ps, N_IF, t->pos);
        node *curif = n;
        static const char *const ends[] = {"elif", "else", "endif", NULL}, *const e2[] = {"endif", NULL};
        for (;;) {
            curif->a = parse_tuple(ps, false, false, NULL, false);
            curif->d = parse_statements(ps, ends, false);
            token *k = next_tok(ps);
            if (is_name(k, "elif")) {
                node *nx = mk(ps, N_IF, k->pos);
                curif->c = nx;
                curif = nx;
                continue;
            }
            if (is_name(k, "else"))
                curif->c = parse_statements(ps, e2, true);
            break;
        }
    } else if (is_name(t, "set")) {
        next_tok(ps);
        node *target = parse_assign_target(ps, true, false, NULL);
        if (skip_op(ps, '=')) {
            n = mk(ps, N_SET, t->pos);
            n->a = target;
            n->b = parse_tuple(ps, false, true, NULL, false);
        } else {
            static const char *const e[] = {"endset", NULL};
            n = mk(ps, N_SETBLOCK, t->pos);
            n->a = target;
            n->c = is_op(cur(ps), '|') ? parse_filter(ps, NULL, false) : NULL;
            n->d = parse_statements(ps, e, true);
        }
    } else if (is_name(t, "macro")) {
        next_tok(ps);
        n = mk(ps, N_MACRO, t->pos);
        node *name = parse_assign_target(ps, false, true, NULL);
        n->str = name->str;
        n->slen = name->slen;
        node *outer = ps->macro;
        int outer_loops = ps->loop_depth;
        ps->macro = n;
        ps->loop_depth = 0;
        parse_signature(ps, n);
        static const char *const e[] = {"endmacro", NULL};
        n->d = parse_statements(ps, e, true);
        ps->macro = outer;
        ps->loop_depth = outer_loops;
    } else if (is_name(t, "call")) {
        next_tok(ps);
        n = mk(ps, N_CALLBLOCK, t->pos);
        node *outer = ps->macro;
        int outer_loops = ps->loop_depth;
        ps->macro = n;
        if (is_op(cur(ps), '('))
            parse_signature(ps, n);
        ps->macro = outer;
        n->a = parse_expression(ps, true);
        if (n->a->kind != N_CALL)
            pfail(ps, t->pos, "expected call");
        static const char *const e[] = {"endcall", NULL};
        ps->macro = n;
        ps->loop_depth = 0;
        n->d = parse_statements(ps, e, true);
        ps->macro = outer;
        ps->loop_depth = outer_loops;
    } else if (is_name(t, "filter")) {
        next_tok(ps);
        n = mk(ps, N_FILTERBLOCK, t->pos);
        n->c = parse_filter(ps, NULL, true);
        static const char *const e[] = {"endfilter", NULL};
        n->d = parse_statements(ps, e, true);
    } else if (is_name(t, "with")) {
        next_tok(ps);
        n = mk(ps, N_WITH, t->pos);
        nvec targets = {0}, values = {0};
        while (cur(ps)->type != T_BLOCK_END) {
            if (targets.n)
                expect_op(ps, ',');
            nv_push(ps, &targets, parse_assign_target(ps, false, false, NULL));
            expect_op(ps, '=');
            nv_push(ps, &values, parse_expression(ps, true));
        }
        n->list = targets.v;
        n->n = targets.n;
        n->list2 = values.v;
        n->n2 = values.n;
        static const char *const e[] = {"endwith", NULL};
        n->d = parse_statements(ps, e, true);
    } else if (is_name(t, "break") || is_name(t, "continue")) {
        next_tok(ps);
        if (ps->loop_depth == 0)
            pfail(ps, t->pos, "'%s' outside loop", is_name(t, "break") ? "break" : "continue");
        n = mk(ps, is_name(t, "break") ? N_BREAK : N_CONTINUE, t->pos);
    } else if (is_name(t, "print")) {
        next_tok(ps);
        n = mk(ps, N_OUTPUT, t->pos);
        n->a = parse_tuple(ps, false, true, NULL, false);
    } else if (is_name(t, "block") || is_name(t, "extends") || is_name(t, "include") || is_name(t, "import") ||
               is_name(t, "from") || is_name(t, "autoescape")) {
        pfail(ps, t->pos, "the '%s' tag is not supported in chat templates", describe(t, b, sizeof b));
    } else
        pfail(ps, t->pos, "Encountered unknown tag '%s'.", describe(t, b, sizeof b));
    leave(ps);
    return n;
}

static node *subparse(parser *ps, const char *const *end_tokens) {
    nvec body = {0};
    uint32_t pos = cur(ps)->pos;
    for (;;) {
        token *t = cur(ps);
        if (t->type == T_EOF)
            break;
        if (t->type == T_DATA) {
            node *d = mk(ps, N_DATA, t->pos);
            d->str = t->p;
            d->slen = t->n;
            nv_push(ps, &body, d);
            next_tok(ps);
        } else if (t->type == T_VAR_BEGIN) {
            next_tok(ps);
            node *o = mk(ps, N_OUTPUT, t->pos);
            o->a = parse_tuple(ps, false, true, NULL, false);
            expect_type(ps, T_VAR_END, "end of print statement");
            nv_push(ps, &body, o);
        } else if (t->type == T_BLOCK_BEGIN) {
            next_tok(ps);
            if (end_tokens)
                for (const char *const *e = end_tokens; *e; e++)
                    if (is_name(cur(ps), *e))
                        goto done;
            nv_push(ps, &body, parse_statement(ps));
            expect_type(ps, T_BLOCK_END, "end of statement block");
        } else {
            char b[80];
            pfail(ps, t->pos, "unexpected '%s'", describe(t, b, sizeof b));
        }
    }
    if (end_tokens) {
        char want[200] = "";
        for (const char *const *e = end_tokens; *e; e++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'", e == end_tokens ? "" : " or ", *e);
        pfail(ps, cur(ps)->pos, "Unexpected end of template. Jinja was looking for the following tags: %s.", want);
    }
done:;
    node *n = mk(ps, N_BODY, pos);
    n->list = body.v;
    n->n = body.n;
    return n;
}

/* ---------------------------------------------------------------- compile */

ft_status ft_tpl_compile(const char *name, const char *src, size_t len, ft_tpl **out, ft_err *err) {
    *out = NULL;
    if (len > UINT32_MAX / 2)
        return FT_ERR(err, FT_ERR_LIMIT, "template larger than 2 GiB");
    ft_tpl *t = ft_calloc(1, sizeof *t);
    if (!t)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    t->name = ft_strdup(name ? name : "template");
    /* Jinja2 normalizes \r\n and \r to \n and drops one trailing newline
     * (keep_trailing_newline=False) before lexing. */
    t->src = ft_malloc(len + 1);
    if (!t->name || !t->src) {
        ft_tpl_free(t);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            t->src[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else
            t->src[k++] = src[i];
    }
    if (k > 0 && t->src[k - 1] == '\n')
        k--;
    t->src[k] = 0;
    t->src_len = k;

    parser *ps = ft_calloc(1, sizeof *ps);
    if (!ps) {
        ft_tpl_free(t);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    ps->src = t->src;
    ps->len = k;
    ps->mem = &t->mem;
    ps->err = err;
    ps->name = t->name;
    if (setjmp(ps->jb)) {
        ft_status s = err ? err->code : FT_ERR_PARSE;
        ft_free(ps);
        ft_tpl_free(t);
        return s == FT_OK ? FT_ERR_PARSE : s;
    }
    lex(ps);
    t->root = subparse(ps, NULL);
    ft_free(ps);
    *out = t;
    return FT_OK;
}

void ft_tpl_free(ft_tpl *t) {
    if (!t)
        return;
    tarena_free(&t->mem);
    ft_free(t->name);
    ft_free(t->src);
    ft_free(t);
}
