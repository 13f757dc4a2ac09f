/* infer/regex.c: ECMAScript regular expressions (JSON Schema "pattern", and the formats that
 * json_schema.c writes as patterns) compiled to grammar rules over the bytes of a JSON string's
 * contents, for constrained decoding.
 *
 * A regular language is a context-free one: alternation becomes a rule's alternatives,
 * quantifiers bounded repetition (infer_gb_repeat), a character a terminal. The text matched is
 * the string after JSON unescaping, so each character is written the way JSON writes it: `"`
 * as \", `\` as \\, control characters as their escapes, the rest as UTF-8. A pattern matches
 * anywhere in a string (JSON Schema, ECMA-262 `test`): what is not anchored by ^ or $ gets any
 * characters before or after it.
 *
 * Classes are exact over ASCII; beyond it a class either holds every non-ASCII character (\D,
 * \W, [^...]), a few listed ones, or none: where ECMAScript's set is irregular beyond ASCII (\S,
 * `.`, a negated class with \s) only its ASCII part is generated, a subset, so what is generated
 * always matches. Refused with FT_ERR_UNSUPPORTED: back-references, look-around, \b, \p{..},
 * ranges beyond ASCII; FT_ERR_INVALID: a malformed pattern. */
#include <string.h>

#include "infer_internal.h"

enum { SLOT_UTF8 = 0, SLOT_JSON_CHAR = 1 };
enum { MAX_EXTRA = 16, MAX_REPEAT = 1000, MAX_NEST = 32 };

typedef struct cclass {
    uint8_t ascii[16]; /* bit c: ASCII character c */
    bool non_ascii;    /* every character beyond ASCII */
    uint32_t extra[MAX_EXTRA]; /* or these */
    int n_extra;
} cclass;

typedef struct rx {
    infer_gb *b;
    const char *s;
    size_t i, n;
    int depth;
    ft_err *err;
    ft_status st;
} rx;

static void cc_add(cclass *c, uint32_t cp) { c->ascii[cp >> 3] |= (uint8_t)(1u << (cp & 7)); }
static bool cc_has(const cclass *c, uint32_t cp) { return c->ascii[cp >> 3] >> (cp & 7) & 1; }
static void cc_range(cclass *c, uint32_t lo, uint32_t hi) {
    for (uint32_t x = lo; x <= hi; x++)
        cc_add(c, x);
}

/* The bytes of code point cp as JSON writes it inside a string. */
static size_t json_encode(uint32_t cp, char out[8]) {
    static const char hex[] = "0123456789abcdef";
    if (cp == '"' || cp == '\\') {
        out[0] = '\\', out[1] = (char)cp;
        return 2;
    }
    if (cp < 0x20) {
        const char *short_esc = cp == '\b' ? "b" : cp == '\f' ? "f" : cp == '\n' ? "n" : cp == '\r' ? "r" : cp == '\t' ? "t" : NULL;
        if (short_esc) {
            out[0] = '\\', out[1] = short_esc[0];
            return 2;
        }
        memcpy(out, "\\u00", 4);
        out[4] = hex[cp >> 4], out[5] = hex[cp & 15];
        return 6;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F)), out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Any one well-formed UTF-8 character beyond ASCII (RFC 3629's table). */
static int32_t utf8_rule(infer_gb *b) {
    int32_t *slot = infer_gb_cache(b, SLOT_UTF8);
    if (*slot >= 0)
        return *slot;
    int32_t r = infer_gb_rule(b);
    *slot = r;
    int32_t C = infer_gb_range(b, 0x80, 0xBF);
    const struct {
        uint8_t lo, hi, c2lo, c2hi;
        int rest;
    } rows[] = {{0xC2, 0xDF, 0x80, 0xBF, 0}, {0xE0, 0xE0, 0xA0, 0xBF, 1}, {0xE1, 0xEC, 0x80, 0xBF, 1},
                {0xED, 0xED, 0x80, 0x9F, 1}, {0xEE, 0xEF, 0x80, 0xBF, 1}, {0xF0, 0xF0, 0x90, 0xBF, 2},
                {0xF1, 0xF3, 0x80, 0xBF, 2}, {0xF4, 0xF4, 0x80, 0x8F, 2}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int32_t s[4] = {infer_gb_range(b, rows[i].lo, rows[i].hi), infer_gb_range(b, rows[i].c2lo, rows[i].c2hi), C, C};
        infer_gb_alt(b, r, s, (size_t)(2 + rows[i].rest));
    }
    return r;
}

/* A class as a rule: the ASCII characters written plainly in one terminal, the ones JSON escapes
 * each as its escape, then what lies beyond ASCII. */
static int32_t class_rule(infer_gb *b, const cclass *c) {
    int32_t r = infer_gb_rule(b);
    uint8_t plain[32] = {0};
    bool any_plain = false;
    for (uint32_t x = 0x20; x < 0x80; x++)
        if (cc_has(c, x) && x != '"' && x != '\\') {
            plain[x >> 3] |= (uint8_t)(1u << (x & 7));
            any_plain = true;
        }
    if (any_plain) {
        int32_t t = infer_gb_set(b, plain);
        infer_gb_alt(b, r, &t, 1);
    }
    for (uint32_t x = 0; x < 0x80; x++)
        if (cc_has(c, x) && (x < 0x20 || x == '"' || x == '\\')) {
            char e[8];
            size_t n = json_encode(x, e);
            infer_syms s = {0};
            infer_syms_lit(b, &s, e, n);
            infer_gb_alt(b, r, s.v, s.n);
            infer_syms_free(&s);
        }
    if (c->non_ascii) {
        int32_t u = INFER_G_REF(utf8_rule(b));
        infer_gb_alt(b, r, &u, 1);
    } else {
        for (int i = 0; i < c->n_extra; i++) {
            char e[8];
            size_t n = json_encode(c->extra[i], e);
            infer_syms s = {0};
            infer_syms_lit(b, &s, e, n);
            infer_gb_alt(b, r, s.v, s.n);
            infer_syms_free(&s);
        }
    }
    return r;
}

int32_t infer_json_char_rule(infer_gb *b) {
    int32_t *slot = infer_gb_cache(b, SLOT_JSON_CHAR);
    if (*slot >= 0)
        return *slot;
    /* printable ASCII plainly, every escape JSON has (\u without lone surrogates, which would
     * count as characters of their own), any UTF-8 character */
    int32_t r = infer_gb_rule(b);
    *slot = r;
    uint8_t plain[32] = {0};
    for (unsigned x = 0x20; x < 0x80; x++)
        if (x != '"' && x != '\\')
            plain[x >> 3] |= (uint8_t)(1u << (x & 7));
    int32_t t = infer_gb_set(b, plain);
    infer_gb_alt(b, r, &t, 1);
    int32_t bs = infer_gb_byte(b, '\\');
    uint8_t esc[32] = {0};
    for (const char *e = "\"\\/bfnrt"; *e; e++)
        esc[(uint8_t)*e >> 3] |= (uint8_t)(1u << (*e & 7));
    int32_t s2[2] = {bs, infer_gb_set(b, esc)};
    infer_gb_alt(b, r, s2, 2);
    uint8_t hex[32] = {0}, hex_nd[32] = {0}, d[32] = {0}, lo8[32] = {0};
    for (const char *h = "0123456789abcdefABCDEF"; *h; h++) {
        hex[(uint8_t)*h >> 3] |= (uint8_t)(1u << (*h & 7));
        if (*h != 'd' && *h != 'D')
            hex_nd[(uint8_t)*h >> 3] |= (uint8_t)(1u << (*h & 7));
    }
    d['d' >> 3] |= (uint8_t)(1u << ('d' & 7));
    d['D' >> 3] |= (uint8_t)(1u << ('D' & 7));
    for (const char *h = "01234567"; *h; h++)
        lo8[(uint8_t)*h >> 3] |= (uint8_t)(1u << (*h & 7));
    int32_t H = infer_gb_set(b, hex), u = infer_gb_byte(b, 'u');
    int32_t s6a[6] = {bs, u, infer_gb_set(b, hex_nd), H, H, H};
    int32_t s6b[6] = {bs, u, infer_gb_set(b, d), infer_gb_set(b, lo8), H, H};
    infer_gb_alt(b, r, s6a, 6);
    infer_gb_alt(b, r, s6b, 6);
    int32_t m = INFER_G_REF(utf8_rule(b));
    infer_gb_alt(b, r, &m, 1);
    return r;
}

/* ---------------------------------------------------------------- the parser */

static bool fail(rx *p, ft_status code, const char *what) {
    if (p->st == FT_OK)
        p->st = FT_ERR(p->err, code, "pattern /%s/ at offset %zu: %s", p->s, p->i, what);
    return false;
}

static bool at_end(const rx *p) { return p->i >= p->n; }
static char peek(const rx *p) { return at_end(p) ? 0 : p->s[p->i]; }

/* One UTF-8 code point of the pattern. */
static uint32_t next_cp(rx *p) {
    const unsigned char *s = (const unsigned char *)p->s + p->i;
    size_t left = p->n - p->i;
    uint32_t cp = s[0];
    size_t len = 1;
    if (cp >= 0xF0 && left >= 4)
        cp = (uint32_t)(s[0] & 7) << 18 | (uint32_t)(s[1] & 63) << 12 | (uint32_t)(s[2] & 63) << 6 | (s[3] & 63), len = 4;
    else if (cp >= 0xE0 && left >= 3)
        cp = (uint32_t)(s[0] & 15) << 12 | (uint32_t)(s[1] & 63) << 6 | (s[2] & 63), len = 3;
    else if (cp >= 0xC0 && left >= 2)
        cp = (uint32_t)(s[0] & 31) << 6 | (s[1] & 63), len = 2;
    p->i += len;
    return cp;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void class_digit(cclass *c) { cc_range(c, '0', '9'); }
static void class_word(cclass *c) {
    cc_range(c, 'a', 'z');
    cc_range(c, 'A', 'Z');
    class_digit(c);
    cc_add(c, '_');
}
static void class_space(cclass *c) {
    for (const char *s = " \t\n\r\f\v"; *s; s++)
        cc_add(c, (uint8_t)*s);
}
static void class_invert_ascii(cclass *c) {
    for (int i = 0; i < 16; i++)
        c->ascii[i] = (uint8_t)~c->ascii[i];
}

/* After a backslash: a class escape into *cls (true), or a single character into *cp. */
static bool parse_escape(rx *p, bool in_class, cclass *cls, bool *is_class, uint32_t *cp) {
    *is_class = false;
    if (at_end(p))
        return fail(p, FT_ERR_INVALID, "a pattern cannot end with a backslash");
    char c = p->s[p->i++];
    memset(cls, 0, sizeof *cls);
    switch (c) {
    case 'd': class_digit(cls), *is_class = true; return true;
    case 'w': class_word(cls), *is_class = true; return true;
    case 's': class_space(cls), *is_class = true; return true;
    case 'D': class_digit(cls), class_invert_ascii(cls), cls->non_ascii = true, *is_class = true; return true;
    case 'W': class_word(cls), class_invert_ascii(cls), cls->non_ascii = true, *is_class = true; return true;
    case 'S': class_space(cls), class_invert_ascii(cls), *is_class = true; return true; /* ASCII part only */
    case 'n': *cp = '\n'; return true;
    case 't': *cp = '\t'; return true;
    case 'r': *cp = '\r'; return true;
    case 'f': *cp = '\f'; return true;
    case 'v': *cp = '\v'; return true;
    case '0': *cp = 0; return true;
    case 'b':
        if (in_class) {
            *cp = '\b';
            return true;
        }
        return fail(p, FT_ERR_UNSUPPORTED, "word boundaries (\\b) are not supported");
    case 'B': return fail(p, FT_ERR_UNSUPPORTED, "\\B is not supported");
    case 'p':
    case 'P': return fail(p, FT_ERR_UNSUPPORTED, "Unicode property classes (\\p{...}) are not supported");
    case 'k': return fail(p, FT_ERR_UNSUPPORTED, "back-references are not supported");
    case 'x': {
        int h1 = hexval(peek(p)), h2 = p->i + 1 < p->n ? hexval(p->s[p->i + 1]) : -1;
        if (h1 < 0 || h2 < 0)
            return fail(p, FT_ERR_INVALID, "\\x needs two hex digits");
        p->i += 2;
        *cp = (uint32_t)(h1 * 16 + h2);
        return true;
    }
    case 'u': {
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            int h = hexval(peek(p));
            if (h < 0)
                return fail(p, FT_ERR_UNSUPPORTED, "\\u needs four hex digits (\\u{...} is not supported)");
            v = v * 16 + (uint32_t)h;
            p->i++;
        }
        if (v >= 0xD800 && v < 0xE000)
            return fail(p, FT_ERR_UNSUPPORTED, "surrogate escapes are not supported");
        *cp = v;
        return true;
    }
    default:
        if (c >= '1' && c <= '9')
            return fail(p, FT_ERR_UNSUPPORTED, "back-references are not supported");
        if (strchr("^$\\.*+?()[]{}|/-", c)) {
            *cp = (uint8_t)c;
            return true;
        }
        return fail(p, FT_ERR_INVALID, "an unknown escape");
    }
}

static bool class_add_cp(rx *p, cclass *c, uint32_t cp) {
    if (cp < 0x80) {
        cc_add(c, cp);
        return true;
    }
    if (c->n_extra >= MAX_EXTRA)
        return fail(p, FT_ERR_UNSUPPORTED, "a class lists too many non-ASCII characters");
    c->extra[c->n_extra++] = cp;
    return true;
}

/* [...] after the '[' */
static bool parse_class(rx *p, cclass *out) {
    memset(out, 0, sizeof *out);
    bool neg = false, has_space_class = false, positive_non_ascii = false;
    if (peek(p) == '^') {
        neg = true;
        p->i++;
    }
    bool first = true;
    while (!at_end(p)) {
        if (peek(p) == ']' && !first)
            break;
        first = false;
        uint32_t lo;
        bool is_class = false;
        cclass sub;
        if (peek(p) == '\\') {
            p->i++;
            if (!parse_escape(p, true, &sub, &is_class, &lo))
                return false;
        } else {
            lo = next_cp(p);
        }
        if (is_class) {
            for (int i = 0; i < 16; i++)
                out->ascii[i] |= sub.ascii[i];
            positive_non_ascii |= sub.non_ascii;
            has_space_class |= p->s[p->i - 1] == 's' || p->s[p->i - 1] == 'S';
            continue;
        }
        if (peek(p) == '-' && p->i + 1 < p->n && p->s[p->i + 1] != ']') {
            p->i++;
            uint32_t hi;
            if (peek(p) == '\\') {
                p->i++;
                if (!parse_escape(p, true, &sub, &is_class, &hi))
                    return false;
                if (is_class)
                    return fail(p, FT_ERR_INVALID, "a class escape cannot end a range");
            } else {
                hi = next_cp(p);
            }
            if (hi < lo)
                return fail(p, FT_ERR_INVALID, "a range out of order");
            if (hi >= 0x80)
                return fail(p, FT_ERR_UNSUPPORTED, "character ranges beyond ASCII are not supported");
            cc_range(out, lo, hi);
            continue;
        }
        if (!class_add_cp(p, out, lo))
            return false;
    }
    if (at_end(p))
        return fail(p, FT_ERR_INVALID, "an unterminated character class");
    p->i++; /* ']' */
    if (neg) {
        class_invert_ascii(out);
        /* beyond ASCII: all of it unless the class named some (or \s, whose set is irregular) */
        out->non_ascii = !has_space_class && out->n_extra == 0 && !positive_non_ascii;
        out->n_extra = 0;
    } else {
        out->non_ascii = positive_non_ascii;
    }
    return true;
}

static int32_t parse_alt(rx *p, bool top);

/* {n}, {n,}, {n,m} after the '{'; false without changing p when it is none */
static bool parse_braces(rx *p, int64_t *min, int64_t *max) {
    size_t save = p->i;
    int64_t a = 0, b = -1;
    bool digits = false;
    while (peek(p) >= '0' && peek(p) <= '9' && a <= MAX_REPEAT)
        a = a * 10 + (p->s[p->i++] - '0'), digits = true;
    if (!digits) {
        p->i = save;
        return false;
    }
    if (peek(p) == ',') {
        p->i++;
        if (peek(p) >= '0' && peek(p) <= '9') {
            b = 0;
            while (peek(p) >= '0' && peek(p) <= '9' && b <= MAX_REPEAT)
                b = b * 10 + (p->s[p->i++] - '0');
        }
    } else {
        b = a;
    }
    if (peek(p) != '}') {
        p->i = save;
        return false;
    }
    p->i++;
    *min = a, *max = b;
    return true;
}

/* One alternative's items into out; at the top level, ^ at its start and $ at its end set the
 * anchors. */
static bool parse_seq(rx *p, bool top, infer_syms *out, bool *anchor_start, bool *anchor_end) {
    infer_gb *b = p->b;
    if (top && peek(p) == '^') {
        p->i++;
        *anchor_start = true;
    }
    while (!at_end(p) && peek(p) != '|' && peek(p) != ')') {
        char c = peek(p);
        infer_syms atom = {0};
        if (c == '$') {
            p->i++;
            if (top && (at_end(p) || peek(p) == '|')) {
                *anchor_end = true;
                break;
            }
            return fail(p, FT_ERR_UNSUPPORTED, "'$' is supported only at the end of the pattern");
        }
        if (c == '^')
            return fail(p, FT_ERR_UNSUPPORTED, "'^' is supported only at the start of the pattern");
        if (c == '*' || c == '+' || c == '?' || c == '{')
            return fail(p, FT_ERR_INVALID, "a quantifier without anything to repeat (write \\{ for a brace)");
        if (c == ']' || c == '}')
            return fail(p, FT_ERR_INVALID, "a lone bracket (escape it)");
        if (c == '(') {
            p->i++;
            if (peek(p) == '?') {
                if (p->i + 1 < p->n && p->s[p->i + 1] == ':') {
                    p->i += 2;
                } else if (p->i + 2 < p->n && p->s[p->i + 1] == '<' && p->s[p->i + 2] != '=' && p->s[p->i + 2] != '!') {
                    const char *gt = memchr(p->s + p->i, '>', p->n - p->i); /* a named group */
                    if (!gt)
                        return fail(p, FT_ERR_INVALID, "an unterminated group name");
                    p->i = (size_t)(gt - p->s) + 1;
                } else {
                    return fail(p, FT_ERR_UNSUPPORTED, "look-ahead and look-behind are not supported");
                }
            }
            if (++p->depth > MAX_NEST)
                return fail(p, FT_ERR_UNSUPPORTED, "groups nest too deep");
            int32_t g = parse_alt(p, false);
            p->depth--;
            if (p->st != FT_OK)
                return false;
            if (peek(p) != ')')
                return fail(p, FT_ERR_INVALID, "an unclosed group");
            p->i++;
            infer_syms_push(b, &atom, INFER_G_REF(g));
        } else if (c == '[') {
            p->i++;
            cclass cl;
            if (!parse_class(p, &cl))
                return false;
            infer_syms_push(b, &atom, INFER_G_REF(class_rule(b, &cl)));
        } else if (c == '.') {
            p->i++;
            cclass cl;
            memset(&cl, 0, sizeof cl);
            cc_range(&cl, 0, 0x7F);
            cl.ascii['\n' >> 3] &= (uint8_t)~(1u << ('\n' & 7));
            cl.ascii['\r' >> 3] &= (uint8_t)~(1u << ('\r' & 7));
            infer_syms_push(b, &atom, INFER_G_REF(class_rule(b, &cl)));
        } else {
            uint32_t cp;
            if (c == '\\') {
                p->i++;
                cclass cl;
                bool is_class;
                if (!parse_escape(p, false, &cl, &is_class, &cp))
                    return false;
                if (is_class) {
                    infer_syms_push(b, &atom, INFER_G_REF(class_rule(b, &cl)));
                    goto quant;
                }
            } else {
                cp = next_cp(p);
            }
            char e[8];
            size_t n = json_encode(cp, e);
            infer_syms_lit(b, &atom, e, n);
        }
    quant:;
        int64_t min = 1, max = 1;
        c = peek(p);
        if (c == '*')
            min = 0, max = -1, p->i++;
        else if (c == '+')
            min = 1, max = -1, p->i++;
        else if (c == '?')
            min = 0, max = 1, p->i++;
        else if (c == '{') {
            p->i++;
            if (!parse_braces(p, &min, &max)) {
                infer_syms_free(&atom);
                return fail(p, FT_ERR_INVALID, "a lone '{' (write \\{)");
            }
            if (min > MAX_REPEAT || max > MAX_REPEAT) {
                infer_syms_free(&atom);
                return fail(p, FT_ERR_UNSUPPORTED, "repetition counts above 1000 are not supported");
            }
            if (max >= 0 && max < min) {
                infer_syms_free(&atom);
                return fail(p, FT_ERR_INVALID, "a quantifier {n,m} with m < n");
            }
        }
        if (min != 1 || max != 1) {
            if (peek(p) == '?')
                p->i++; /* lazy: the same language */
            int32_t r = infer_gb_repeat(b, atom.v, atom.n, min, max);
            atom.n = 0;
            infer_syms_push(b, &atom, INFER_G_REF(r));
        }
        for (size_t k = 0; k < atom.n; k++)
            infer_syms_push(b, out, atom.v[k]);
        infer_syms_free(&atom);
    }
    return p->st == FT_OK;
}

static int32_t parse_alt(rx *p, bool top) {
    infer_gb *b = p->b;
    int32_t r = infer_gb_rule(b);
    int32_t any = -1;
    for (;;) {
        infer_syms seq = {0}, full = {0};
        bool as = false, ae = false;
        if (!parse_seq(p, top, &seq, &as, &ae)) {
            infer_syms_free(&seq);
            return r;
        }
        if (top && (!as || !ae) && any < 0) {
            int32_t ch = INFER_G_REF(infer_json_char_rule(b));
            any = infer_gb_repeat(b, &ch, 1, 0, -1);
        }
        if (top && !as)
            infer_syms_push(b, &full, INFER_G_REF(any));
        for (size_t k = 0; k < seq.n; k++)
            infer_syms_push(b, &full, seq.v[k]);
        if (top && !ae)
            infer_syms_push(b, &full, INFER_G_REF(any));
        infer_gb_alt(b, r, full.v, full.n);
        infer_syms_free(&seq);
        infer_syms_free(&full);
        if (peek(p) != '|')
            break;
        p->i++;
    }
    return r;
}

ft_status infer_regex_compile(infer_gb *b, const char *re, int32_t *rule, ft_err *err) {
    rx p = {.b = b, .s = re, .n = strlen(re), .err = err, .st = FT_OK};
    *rule = parse_alt(&p, true);
    if (p.st == FT_OK && !at_end(&p))
        fail(&p, FT_ERR_INVALID, "an unmatched ')'");
    return p.st;
}
