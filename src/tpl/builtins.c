/* tpl/builtins.c: what a chat template can call: Jinja2's filters and tests (as the sandboxed
 * environment runs them, with transformers' tojson), the methods of Python's str, dict and list
 * that templates use, and the globals range, dict, namespace, raise_exception and strftime_now.
 * Each follows the Python/Jinja2 3.1 behaviour, including the odd corners real templates hit
 * (generators are always true, `d.items` is the method, str.title splits at apostrophes). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tpl_int.h"

enum {
    /* globals */
    G_RANGE = 1,
    G_DICT,
    G_NAMESPACE,
    G_RAISE,
    G_STRFTIME,
    /* str methods */
    S_STRIP,
    S_LSTRIP,
    S_RSTRIP,
    S_STARTSWITH,
    S_ENDSWITH,
    S_SPLIT,
    S_RSPLIT,
    S_UPPER,
    S_LOWER,
    S_REPLACE,
    S_TITLE,
    S_CAPITALIZE,
    S_FORMAT,
    S_JOIN,
    S_FIND,
    S_RFIND,
    S_COUNT,
    S_ISDIGIT,
    S_ISALPHA,
    S_ISSPACE,
    S_ISALNUM,
    S_ISUPPER,
    S_ISLOWER,
    S_SPLITLINES,
    S_REMOVEPREFIX,
    S_REMOVESUFFIX,
    S_SWAPCASE,
    S_CASEFOLD,
    S_CENTER,
    S_LJUST,
    S_RJUST,
    S_ZFILL,
    S_INDEX,
    S_RINDEX,
    S_UNSUPPORTED,
    /* dict */
    D_GET,
    D_ITEMS,
    D_KEYS,
    D_VALUES,
    D_COPY,
    /* list */
    L_COUNT,
    L_INDEX,
    L_COPY,
    /* loop */
    LOOP_CYCLE,
};

/* ---------------------------------------------------------------- argument access */

typedef struct args {
    rstate *r;
    const node *at;
    const char *fname;
    tv *v;
    size_t n;
    const char **kwn;
    tv *kwv;
    size_t nkw;
} args;

/* Positional argument i, or the keyword `name`, or `dflt` (presence in *given). */
static tv arg(args *a, size_t i, const char *name, tv dflt, bool *given) {
    if (i < a->n) {
        if (given)
            *given = true;
        return a->v[i];
    }
    for (size_t k = 0; name && k < a->nkw; k++)
        if (!strcmp(a->kwn[k], name)) {
            if (given)
                *given = true;
            return a->kwv[k];
        }
    if (given)
        *given = false;
    return dflt;
}

static void max_args(args *a, size_t max) {
    if (a->n > max)
        tpl_fail(a->r, a->at, FT_ERR_INVALID, "TypeError: %s() takes at most %zu argument(s) (%zu given)", a->fname, max,
                 a->n);
}

static tv need_str(args *a, tv v, const char *what) {
    if (v.t != TV_STR) {
        if (v.t == TV_UNDEF)
            fail_undefined(a->r, a->at, v);
        tpl_fail(a->r, a->at, FT_ERR_INVALID, "TypeError: %s() %s must be str, not %s", a->fname, what,
                 tv_type_name(v));
    }
    return v;
}

static int64_t need_int(args *a, tv v, const char *what) {
    if (v.t == TV_INT)
        return v.i;
    if (v.t == TV_BOOL)
        return v.b;
    if (v.t == TV_UNDEF)
        fail_undefined(a->r, a->at, v);
    tpl_fail(a->r, a->at, FT_ERR_INVALID, "TypeError: %s() %s must be an integer, not %s", a->fname, what,
             tv_type_name(v));
}

static bool is_digit_c(char c) { return c >= '0' && c <= '9'; }
static tv mkstr(sbuf *b) { return tv_str(b->p ? b->p : "", b->n); }

/* ---------------------------------------------------------------- string helpers */

static bool cp_in(uint32_t c, tv chars) {
    for (size_t i = 0; i < chars.s.n; i = u8_next(chars.s.p, chars.s.n, i))
        if (u8_cp(chars.s.p, chars.s.n, i) == c)
            return true;
    return false;
}

/* which: 1 left, 2 right, 3 both; chars undefined/None: whitespace */
static tv py_strip(tv s, tv chars, int which) {
    bool ws = chars.t != TV_STR;
    size_t b = 0, e = s.s.n;
    if (which & 1)
        while (b < e) {
            size_t nx = u8_next(s.s.p, e, b);
            uint32_t c = u8_cp(s.s.p, e, b);
            if (ws ? !py_isspace(c) : !cp_in(c, chars))
                break;
            b = nx;
        }
    if (which & 2)
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)s.s.p[st] & 0xC0) == 0x80)
                st--;
            uint32_t c = u8_cp(s.s.p, e, st);
            if (ws ? !py_isspace(c) : !cp_in(c, chars))
                break;
            e = st;
        }
    return tv_str(s.s.p + b, e - b);
}

static tv map_case(rstate *r, tv s, int mode) {
    /* mode 0 upper, 1 lower, 2 swapcase */
    sbuf b = {0};
    for (size_t i = 0; i < s.s.n;) {
        uint32_t c = u8_cp(s.s.p, s.s.n, i);
        size_t nx = u8_next(s.s.p, s.s.n, i);
        if (nx - i == 1 && (unsigned char)s.s.p[i] >= 0x80) {
            sb_putc(r, &b, s.s.p[i]);
        } else {
            uint32_t o = mode == 0 ? py_upper(c) : mode == 1 ? py_lower(c) : (py_upper(c) != c ? py_upper(c) : py_lower(c));
            sb_cp(r, &b, o);
        }
        i = nx;
    }
    return mkstr(&b);
}

static bool cased(uint32_t c) { return py_upper(c) != c || py_lower(c) != c; }

static tv py_title(rstate *r, tv s) {
    sbuf b = {0};
    bool prev_cased = false;
    for (size_t i = 0; i < s.s.n; i = u8_next(s.s.p, s.s.n, i)) {
        uint32_t c = u8_cp(s.s.p, s.s.n, i);
        if (cased(c)) {
            sb_cp(r, &b, prev_cased ? py_lower(c) : py_upper(c));
            prev_cased = true;
        } else {
            sb_cp(r, &b, c);
            prev_cased = false;
        }
    }
    return mkstr(&b);
}

static tv py_capitalize(rstate *r, tv s) {
    sbuf b = {0};
    for (size_t i = 0; i < s.s.n; i = u8_next(s.s.p, s.s.n, i)) {
        uint32_t c = u8_cp(s.s.p, s.s.n, i);
        sb_cp(r, &b, i == 0 ? py_upper(c) : py_lower(c));
    }
    return mkstr(&b);
}

/* Jinja2's title filter: split at runs of [-\s({[<], upper the first character of every piece */
static tv jinja_title(rstate *r, tv s) {
    sbuf b = {0};
    bool at_start = true;
    for (size_t i = 0; i < s.s.n; i = u8_next(s.s.p, s.s.n, i)) {
        uint32_t c = u8_cp(s.s.p, s.s.n, i);
        bool sep = py_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
        if (sep) {
            sb_cp(r, &b, c);
            at_start = true;
        } else {
            sb_cp(r, &b, at_start ? py_upper(c) : py_lower(c));
            at_start = false;
        }
    }
    return mkstr(&b);
}

static tv py_replace(rstate *r, const node *at, tv s, tv old, tv new_, int64_t count) {
    sbuf b = {0};
    if (count < 0)
        count = INT64_MAX;
    if (old.s.n == 0) {
        int64_t done = 0;
        size_t i = 0;
        if (done < count) {
            sb_put(r, &b, new_.s.p, new_.s.n);
            done++;
        }
        while (i < s.s.n) {
            size_t nx = u8_next(s.s.p, s.s.n, i);
            sb_put(r, &b, s.s.p + i, nx - i);
            i = nx;
            if (done < count) {
                sb_put(r, &b, new_.s.p, new_.s.n);
                done++;
            }
        }
        check_str_size(r, at, b.n);
        return mkstr(&b);
    }
    size_t i = 0;
    int64_t done = 0;
    while (i < s.s.n) {
        const char *hit = done < count ? memmem(s.s.p + i, s.s.n - i, old.s.p, old.s.n) : NULL;
        if (!hit) {
            sb_put(r, &b, s.s.p + i, s.s.n - i);
            break;
        }
        size_t h = (size_t)(hit - s.s.p);
        sb_put(r, &b, s.s.p + i, h - i);
        sb_put(r, &b, new_.s.p, new_.s.n);
        i = h + old.s.n;
        done++;
    }
    return mkstr(&b);
}

static tv py_split(rstate *r, args *a, tv s, tv sep, int64_t maxsplit, bool from_right) {
    size_t cap = 8, n = 0;
    tv *parts = ralloc(r, cap * sizeof(tv));
#define PUSH(x)                                                       \
    do {                                                              \
        if (n == cap) {                                               \
            tv *np_ = ralloc(r, cap * 2 * sizeof(tv));                \
            memcpy(np_, parts, n * sizeof(tv));                       \
            parts = np_;                                              \
            cap *= 2;                                                 \
        }                                                             \
        parts[n++] = (x);                                             \
    } while (0)
    if (maxsplit < 0)
        maxsplit = INT64_MAX;
    if (sep.t != TV_STR) {
        /* whitespace runs; leading/trailing ignored */
        if (!from_right) {
            size_t i = 0;
            int64_t splits = 0;
            for (;;) {
                while (i < s.s.n && py_isspace(u8_cp(s.s.p, s.s.n, i)))
                    i = u8_next(s.s.p, s.s.n, i);
                if (i >= s.s.n)
                    break;
                if (splits >= maxsplit) {
                    PUSH(tv_str(s.s.p + i, s.s.n - i));
                    break;
                }
                size_t st = i;
                while (i < s.s.n && !py_isspace(u8_cp(s.s.p, s.s.n, i)))
                    i = u8_next(s.s.p, s.s.n, i);
                PUSH(tv_str(s.s.p + st, i - st));
                splits++;
            }
        } else {
            size_t e = s.s.n;
            int64_t splits = 0;
            for (;;) {
                tv left = py_strip(tv_str(s.s.p, e), tv_none(), 2);
                e = left.s.n;
                if (e == 0)
                    break;
                if (splits >= maxsplit) {
                    PUSH(tv_str(s.s.p, e));
                    break;
                }
                size_t st = e;
                while (st > 0) {
                    size_t p = st - 1;
                    while (p > 0 && ((unsigned char)s.s.p[p] & 0xC0) == 0x80)
                        p--;
                    if (py_isspace(u8_cp(s.s.p, s.s.n, p)))
                        break;
                    st = p;
                }
                PUSH(tv_str(s.s.p + st, e - st));
                splits++;
                e = st;
            }
            for (size_t i = 0; i < n / 2; i++) {
                tv t = parts[i];
                parts[i] = parts[n - 1 - i];
                parts[n - 1 - i] = t;
            }
        }
    } else {
        if (sep.s.n == 0)
            tpl_fail(r, a->at, FT_ERR_INVALID, "ValueError: empty separator");
        if (!from_right) {
            size_t i = 0;
            int64_t splits = 0;
            for (;;) {
                const char *hit = splits < maxsplit ? memmem(s.s.p + i, s.s.n - i, sep.s.p, sep.s.n) : NULL;
                if (!hit) {
                    PUSH(tv_str(s.s.p + i, s.s.n - i));
                    break;
                }
                size_t h = (size_t)(hit - s.s.p);
                PUSH(tv_str(s.s.p + i, h - i));
                i = h + sep.s.n;
                splits++;
            }
        } else {
            size_t e = s.s.n;
            int64_t splits = 0;
            for (;;) {
                size_t h = SIZE_MAX;
                if (splits < maxsplit && e >= sep.s.n)
                    for (size_t k = e - sep.s.n + 1; k-- > 0;)
                        if (memcmp(s.s.p + k, sep.s.p, sep.s.n) == 0) {
                            h = k;
                            break;
                        }
                if (h == SIZE_MAX) {
                    PUSH(tv_str(s.s.p, e));
                    break;
                }
                PUSH(tv_str(s.s.p + h + sep.s.n, e - h - sep.s.n));
                e = h;
                splits++;
            }
            for (size_t i = 0; i < n / 2; i++) {
                tv t = parts[i];
                parts[i] = parts[n - 1 - i];
                parts[n - 1 - i] = t;
            }
        }
    }
#undef PUSH
    tv l = tv_list_new(r, 0, LK_LIST);
    l.l->v = parts;
    l.l->n = n;
    return l;
}

static bool is_line_break(uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
}

static tv py_splitlines(rstate *r, tv s, bool keepends) {
    size_t cap = 8, n = 0;
    tv *parts = ralloc(r, cap * sizeof(tv));
    size_t i = 0, st = 0;
    while (i < s.s.n) {
        uint32_t c = u8_cp(s.s.p, s.s.n, i);
        size_t nx = u8_next(s.s.p, s.s.n, i);
        if (is_line_break(c)) {
            size_t end = i;
            if (c == '\r' && nx < s.s.n && s.s.p[nx] == '\n')
                nx++;
            if (n == cap) {
                tv *np = ralloc(r, cap * 2 * sizeof(tv));
                memcpy(np, parts, n * sizeof(tv));
                parts = np;
                cap *= 2;
            }
            parts[n++] = tv_str(s.s.p + st, (keepends ? nx : end) - st);
            st = nx;
        }
        i = nx;
    }
    if (st < s.s.n) {
        if (n == cap) {
            tv *np = ralloc(r, cap * 2 * sizeof(tv));
            memcpy(np, parts, n * sizeof(tv));
            parts = np;
        }
        parts[n++] = tv_str(s.s.p + st, s.s.n - st);
    }
    tv l = tv_list_new(r, 0, LK_LIST);
    l.l->v = parts;
    l.l->n = n;
    return l;
}

static bool str_prefix_match(args *a, tv s, tv prefix, bool suffix) {
    if (prefix.t == TV_LIST && prefix.l->kind == LK_TUPLE) {
        for (size_t i = 0; i < prefix.l->n; i++)
            if (str_prefix_match(a, s, need_str(a, prefix.l->v[i], "tuple element"), suffix))
                return true;
        return false;
    }
    need_str(a, prefix, "argument");
    if (prefix.s.n > s.s.n)
        return false;
    return memcmp(suffix ? s.s.p + s.s.n - prefix.s.n : s.s.p, prefix.s.p, prefix.s.n) == 0;
}

/* code point index of byte offset */
static int64_t cp_index(const char *s, size_t n, size_t byte) { return (int64_t)u8_len(s, byte < n ? byte : n); }

static tv pad_str(rstate *r, tv s, int64_t width, tv fill, int mode) {
    /* mode 0 center, 1 ljust, 2 rjust */
    int64_t len = (int64_t)u8_len(s.s.p, s.s.n);
    if (width <= len)
        return s;
    if (width > (int64_t)r->lim.max_output)
        tpl_fail(r, NULL, FT_ERR_LIMIT, "padding width over the output limit");
    int64_t total = width - len, left = mode == 1 ? 0 : mode == 2 ? total : total / 2 + (total & width & 1);
    sbuf b = {0};
    const char *fp = fill.t == TV_STR && fill.s.n ? fill.s.p : " ";
    size_t fl = fill.t == TV_STR && fill.s.n ? fill.s.n : 1;
    for (int64_t i = 0; i < left; i++)
        sb_put(r, &b, fp, fl);
    sb_put(r, &b, s.s.p, s.s.n);
    for (int64_t i = left; i < total; i++)
        sb_put(r, &b, fp, fl);
    return mkstr(&b);
}

/* ---------------------------------------------------------------- str.format */

static void format_spec(rstate *r, const node *at, sbuf *out, tv v, const char *spec, size_t sn) {
    if (sn == 0) {
        tv_str_into(r, out, v);
        return;
    }
    /* [[fill]align][sign][#][0][width][,][.precision][type] */
    size_t i = 0;
    uint32_t fill = ' ';
    char align = 0;
    if (sn >= 2 && strchr("<>^=", spec[u8_next(spec, sn, 0)]) && u8_next(spec, sn, 0) < sn) {
        fill = u8_cp(spec, sn, 0);
        i = u8_next(spec, sn, 0);
        align = spec[i++];
    } else if (strchr("<>^=", spec[0])) {
        align = spec[0];
        i = 1;
    }
    char sign = 0;
    if (i < sn && strchr("+- ", spec[i]))
        sign = spec[i++];
    if (i < sn && spec[i] == '#')
        i++;
    if (i < sn && spec[i] == '0') {
        if (!align) {
            fill = '0';
            align = '=';
        }
        i++;
    }
    int64_t width = 0;
    while (i < sn && spec[i] >= '0' && spec[i] <= '9' && width < 100000)
        width = width * 10 + (spec[i++] - '0');
    bool comma = false;
    if (i < sn && (spec[i] == ',' || spec[i] == '_'))
        comma = spec[i++] == ',';
    int prec = -1;
    if (i < sn && spec[i] == '.') {
        i++;
        prec = 0;
        while (i < sn && spec[i] >= '0' && spec[i] <= '9' && prec < 1000)
            prec = prec * 10 + (spec[i++] - '0');
    }
    char type = i < sn ? spec[i++] : 0;
    if (i != sn)
        tpl_fail(r, at, FT_ERR_INVALID, "ValueError: Invalid format specifier");
    sbuf body = {0};
    if (v.t == TV_STR) {
        if (type && type != 's')
            tpl_fail(r, at, FT_ERR_INVALID, "ValueError: Unknown format code '%c' for object of type 'str'", type);
        size_t len = v.s.n;
        if (prec >= 0)
            len = tpl_cp_offset(v.s.p, v.s.n, (size_t)prec);
        sb_put(r, &body, v.s.p, len);
        if (!align)
            align = '<';
    } else if (tv_is_num(v)) {
        char tmp[512];
        char fmt[32];
        if (!type && v.t != TV_FLOAT) {
            snprintf(tmp, sizeof tmp, sign == '+' ? "%+lld" : sign == ' ' ? "% lld" : "%lld",
                     (long long)(v.t == TV_BOOL ? v.b : v.i));
        } else if (type == 'd') {
            if (v.t == TV_FLOAT)
                tpl_fail(r, at, FT_ERR_INVALID, "ValueError: Unknown format code 'd' for object of type 'float'");
            snprintf(tmp, sizeof tmp, sign == '+' ? "%+lld" : "%lld", (long long)(v.t == TV_BOOL ? v.b : v.i));
        } else if (type && strchr("fFeEgG%", type)) {
            double d = tv_as_double(v) * (type == '%' ? 100 : 1);
            snprintf(fmt, sizeof fmt, "%%%s.%d%c", sign == '+' ? "+" : sign == ' ' ? " " : "", prec < 0 ? 6 : prec,
                     type == '%' ? 'f' : type);
            snprintf(tmp, sizeof tmp, fmt, d);
            if (type == '%')
                strncat(tmp, "%", sizeof tmp - strlen(tmp) - 1);
        } else if (!type) {
            if (prec >= 0) {
                snprintf(fmt, sizeof fmt, "%%.%dg", prec == 0 ? 1 : prec);
                snprintf(tmp, sizeof tmp, fmt, v.f);
            } else
                float_repr(v.f, tmp, sizeof tmp);
        } else
            tpl_fail(r, at, FT_ERR_INVALID, "ValueError: Unknown format code '%c' for a number", type);
        if (comma) {
            /* thousands separators in the integer part */
            char g[700];
            size_t tl = strlen(tmp), k = 0, st = (tmp[0] == '-' || tmp[0] == '+' || tmp[0] == ' ') ? 1 : 0, ie = st;
            while (ie < tl && tmp[ie] >= '0' && tmp[ie] <= '9')
                ie++;
            for (size_t q = 0; q < st; q++)
                g[k++] = tmp[q];
            for (size_t q = st; q < ie; q++) {
                g[k++] = tmp[q];
                if (q + 1 < ie && (ie - q - 1) % 3 == 0)
                    g[k++] = ',';
            }
            for (size_t q = ie; q < tl && k < sizeof g - 1; q++)
                g[k++] = tmp[q];
            g[k] = 0;
            snprintf(tmp, sizeof tmp, "%s", g);
        }
        sb_put(r, &body, tmp, strlen(tmp));
        if (!align)
            align = '>';
    } else {
        tv_str_into(r, &body, v);
        if (!align)
            align = '<';
    }
    int64_t len = (int64_t)u8_len(body.p ? body.p : "", body.n), pad = width > len ? width - len : 0;
    int64_t left = align == '<' ? 0 : align == '^' ? pad / 2 : pad;
    if (align == '=' && body.n && (body.p[0] == '-' || body.p[0] == '+' || body.p[0] == ' ')) {
        sb_putc(r, out, body.p[0]);
        for (int64_t k = 0; k < pad; k++)
            sb_cp(r, out, fill);
        sb_put(r, out, body.p + 1, body.n - 1);
        return;
    }
    for (int64_t k = 0; k < left; k++)
        sb_cp(r, out, fill);
    sb_put(r, out, body.p, body.n);
    for (int64_t k = left; k < pad; k++)
        sb_cp(r, out, fill);
}

static tv py_format(args *a, tv s) {
    rstate *r = a->r;
    sbuf b = {0};
    size_t auto_idx = 0;
    for (size_t i = 0; i < s.s.n; i++) {
        char c = s.s.p[i];
        if (c == '}') {
            if (i + 1 < s.s.n && s.s.p[i + 1] == '}') {
                sb_putc(r, &b, '}');
                i++;
                continue;
            }
            tpl_fail(r, a->at, FT_ERR_INVALID, "ValueError: Single '}' encountered in format string");
        }
        if (c != '{') {
            sb_putc(r, &b, c);
            continue;
        }
        if (i + 1 < s.s.n && s.s.p[i + 1] == '{') {
            sb_putc(r, &b, '{');
            i++;
            continue;
        }
        size_t j = i + 1;
        int depth = 1;
        while (j < s.s.n && depth) {
            if (s.s.p[j] == '{')
                depth++;
            else if (s.s.p[j] == '}')
                depth--;
            if (depth)
                j++;
        }
        if (j >= s.s.n)
            tpl_fail(r, a->at, FT_ERR_INVALID, "ValueError: expected '}' before end of string");
        const char *f = s.s.p + i + 1;
        size_t fn = j - i - 1, k = 0;
        while (k < fn && f[k] != '.' && f[k] != '[' && f[k] != '!' && f[k] != ':')
            k++;
        tv v;
        if (k == 0)
            v = auto_idx < a->n ? a->v[auto_idx++] : (tpl_fail(r, a->at, FT_ERR_INVALID, "IndexError: Replacement index %zu out of range", auto_idx), tv_undef());
        else if (f[0] >= '0' && f[0] <= '9') {
            size_t idx = (size_t)strtoull(f, NULL, 10);
            if (idx >= a->n)
                tpl_fail(r, a->at, FT_ERR_INVALID, "IndexError: Replacement index %zu out of range", idx);
            v = a->v[idx];
        } else {
            bool found = false;
            v = tv_undef();
            for (size_t q = 0; q < a->nkw; q++)
                if (strlen(a->kwn[q]) == k && memcmp(a->kwn[q], f, k) == 0) {
                    v = a->kwv[q];
                    found = true;
                }
            if (!found)
                tpl_fail(r, a->at, FT_ERR_INVALID, "KeyError: '%.*s'", (int)k, f);
        }
        while (k < fn && (f[k] == '.' || f[k] == '[')) {
            if (f[k] == '.') {
                size_t st = ++k;
                while (k < fn && f[k] != '.' && f[k] != '[' && f[k] != '!' && f[k] != ':')
                    k++;
                v = get_attr(r, a->at, v, f + st, k - st);
            } else {
                size_t st = ++k;
                while (k < fn && f[k] != ']')
                    k++;
                bool digits = k > st;
                for (size_t q = st; q < k; q++)
                    digits &= f[q] >= '0' && f[q] <= '9';
                v = get_item(r, a->at, v, digits ? tv_int(strtoll(f + st, NULL, 10)) : tv_str(f + st, k - st));
                k++;
            }
            if (v.t == TV_UNDEF)
                fail_undefined(r, a->at, v);
        }
        char conv = 0;
        if (k + 1 < fn && f[k] == '!') {
            conv = f[k + 1];
            k += 2;
        }
        const char *spec = "";
        size_t sn = 0;
        if (k < fn && f[k] == ':') {
            spec = f + k + 1;
            sn = fn - k - 1;
        }
        if (conv == 'r' || conv == 'a') {
            sbuf t = {0};
            tv_repr_into(r, &t, v);
            v = mkstr(&t);
        } else if (conv == 's')
            v = tv_to_str(r, v);
        format_spec(r, a->at, &b, v, spec, sn);
        i = j;
    }
    return mkstr(&b);
}

/* ---------------------------------------------------------------- methods */

static const struct {
    const char *name;
    int id;
} str_methods[] = {
    {"strip", S_STRIP},           {"lstrip", S_LSTRIP},       {"rstrip", S_RSTRIP},
    {"startswith", S_STARTSWITH}, {"endswith", S_ENDSWITH},   {"split", S_SPLIT},
    {"rsplit", S_RSPLIT},         {"upper", S_UPPER},         {"lower", S_LOWER},
    {"replace", S_REPLACE},       {"title", S_TITLE},         {"capitalize", S_CAPITALIZE},
    {"format", S_FORMAT},         {"join", S_JOIN},           {"find", S_FIND},
    {"rfind", S_RFIND},           {"count", S_COUNT},         {"isdigit", S_ISDIGIT},
    {"isalpha", S_ISALPHA},       {"isspace", S_ISSPACE},     {"isalnum", S_ISALNUM},
    {"isupper", S_ISUPPER},       {"islower", S_ISLOWER},     {"splitlines", S_SPLITLINES},
    {"removeprefix", S_REMOVEPREFIX}, {"removesuffix", S_REMOVESUFFIX}, {"swapcase", S_SWAPCASE},
    {"casefold", S_CASEFOLD},     {"center", S_CENTER},       {"ljust", S_LJUST},
    {"rjust", S_RJUST},           {"zfill", S_ZFILL},         {"index", S_INDEX},
    {"rindex", S_RINDEX},         {"encode", S_UNSUPPORTED},  {"expandtabs", S_UNSUPPORTED},
    {"format_map", S_UNSUPPORTED}, {"isascii", S_UNSUPPORTED}, {"isdecimal", S_UNSUPPORTED},
    {"isidentifier", S_UNSUPPORTED}, {"isnumeric", S_UNSUPPORTED}, {"isprintable", S_UNSUPPORTED},
    {"istitle", S_UNSUPPORTED},   {"maketrans", S_UNSUPPORTED}, {"partition", S_UNSUPPORTED},
    {"rpartition", S_UNSUPPORTED}, {"translate", S_UNSUPPORTED},
};

tv builtin_method(rstate *r, tv self, const char *name, size_t n) {
    int id = 0;
#define IS(lit) (strlen(lit) == n && memcmp(name, lit, n) == 0)
    if (self.t == TV_STR) {
        for (size_t i = 0; i < sizeof str_methods / sizeof *str_methods; i++)
            if (IS(str_methods[i].name)) {
                id = str_methods[i].id;
                break;
            }
    } else if (self.t == TV_DICT) {
        if (IS("get"))
            id = D_GET;
        else if (IS("items"))
            id = D_ITEMS;
        else if (IS("keys"))
            id = D_KEYS;
        else if (IS("values"))
            id = D_VALUES;
        else if (IS("copy"))
            id = D_COPY;
        else if (IS("pop") || IS("popitem") || IS("setdefault") || IS("update") || IS("clear"))
            return tv_undef_msg(r, "access to attribute '%.*s' of 'dict' object is unsafe.", (int)n, name);
        else if (IS("fromkeys"))
            id = S_UNSUPPORTED;
    } else if (self.t == TV_LIST && self.l->kind <= LK_TUPLE) {
        if (IS("count"))
            id = L_COUNT;
        else if (IS("index"))
            id = L_INDEX;
        else if (IS("copy") && self.l->kind == LK_LIST)
            id = L_COPY;
        else if (self.l->kind == LK_LIST && (IS("append") || IS("extend") || IS("insert") || IS("pop") ||
                                             IS("remove") || IS("reverse") || IS("sort") || IS("clear")))
            return tv_undef_msg(r, "access to attribute '%.*s' of 'list' object is unsafe.", (int)n, name);
    } else if (self.t == TV_LOOP) {
        if (IS("cycle"))
            id = LOOP_CYCLE;
    }
#undef IS
    if (!id)
        return tv_undef();
    tfunc *fn = ralloc(r, sizeof *fn);
    fn->id = id;
    fn->self = self;
    return (tv){.t = TV_FUNC, .fn = fn};
}

tv builtin_global(rstate *r, const char *name, size_t n) {
    int id = 0;
#define IS(lit) (strlen(lit) == n && memcmp(name, lit, n) == 0)
    if (IS("range"))
        id = G_RANGE;
    else if (IS("dict"))
        id = G_DICT;
    else if (IS("namespace"))
        id = G_NAMESPACE;
    else if (IS("raise_exception"))
        id = G_RAISE;
    else if (IS("strftime_now"))
        id = G_STRFTIME;
#undef IS
    if (!id)
        return tv_undef();
    tfunc *fn = ralloc(r, sizeof *fn);
    fn->id = id;
    return (tv){.t = TV_FUNC, .fn = fn};
}

static void dict_update_from(rstate *r, const node *at, tdict *d, tv src) {
    if (src.t == TV_DICT) {
        for (size_t i = 0; i < src.d->n; i++)
            tdict_set(r, d, src.d->k[i], src.d->v[i]);
        return;
    }
    tlist *l = iterate(r, at, src);
    for (size_t i = 0; i < l->n; i++) {
        tlist *pair = iterate(r, at, l->v[i]);
        if (pair->n != 2)
            tpl_fail(r, at, FT_ERR_INVALID, "ValueError: dictionary update sequence element has length %zu; 2 is required",
                     pair->n);
        tpl_charge(r, at, (int64_t)d->n + 1); /* tdict_set searches linearly */
        tdict_set(r, d, pair->v[0], pair->v[1]);
    }
}

tv call_builtin(rstate *r, const node *at, tfunc *fn, tv *argv, size_t nargs, const char **kwn, tv *kwv, size_t nkw) {
    args A = {r, at, "function", argv, nargs, kwn, kwv, nkw}, *a = &A;
    tv self = fn->self;
    switch (fn->id) {
    case G_RANGE: {
        A.fname = "range";
        max_args(a, 3);
        if (nargs == 0)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: range expected at least 1 argument, got 0");
        int64_t start = 0, stop, step = 1;
        if (nargs == 1)
            stop = need_int(a, argv[0], "argument");
        else {
            start = need_int(a, argv[0], "argument");
            stop = need_int(a, argv[1], "argument");
            if (nargs == 3)
                step = need_int(a, argv[2], "argument");
        }
        if (step == 0)
            tpl_fail(r, at, FT_ERR_INVALID, "ValueError: range() arg 3 must not be zero");
        int64_t count = 0;
        if (step > 0 && start < stop)
            count = (int64_t)(((uint64_t)stop - (uint64_t)start - 1) / (uint64_t)step) + 1;
        else if (step < 0 && start > stop)
            count = (int64_t)(((uint64_t)start - (uint64_t)stop - 1) / (uint64_t)(-(step + 1) + 1)) + 1;
        if (count > 100000)
            tpl_fail(r, at, FT_ERR_LIMIT,
                     "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        tv l = tv_list_new(r, (size_t)count, LK_LIST);
        for (int64_t i = 0; i < count; i++)
            l.l->v[i] = tv_int(start + i * step);
        l.l->is_range = true;
        l.l->range[0] = start;
        l.l->range[1] = stop;
        l.l->range[2] = step;
        return l;
    }
    case G_DICT:
    case G_NAMESPACE: {
        tv d = tv_dict_new(r);
        if (nargs > 1)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: %s expected at most 1 argument, got %zu",
                     fn->id == G_DICT ? "dict" : "namespace", nargs);
        if (nargs == 1)
            dict_update_from(r, at, d.d, argv[0]);
        for (size_t i = 0; i < nkw; i++)
            tdict_set(r, d.d, tv_cstr(kwn[i]), kwv[i]);
        if (fn->id == G_NAMESPACE)
            d.t = TV_NS;
        return d;
    }
    case G_RAISE: {
        tv m = nargs ? argv[0] : tv_undef();
        sbuf b = {0};
        tv_str_into(r, &b, m);
        tpl_fail(r, at, FT_ERR_INVALID, "raise_exception: %.*s", (int)(b.n > 800 ? 800 : b.n), b.p ? b.p : "");
    }
    case G_STRFTIME: {
        A.fname = "strftime_now";
        tv f = need_str(a, arg(a, 0, "format", tv_undef(), NULL), "format");
        char fmt[256], out[1024];
        if (f.s.n >= sizeof fmt)
            tpl_fail(r, at, FT_ERR_LIMIT, "strftime_now format too long");
        memcpy(fmt, f.s.p, f.s.n);
        fmt[f.s.n] = 0;
        time_t t = (time_t)r->now;
        struct tm tmv;
        gmtime_r(&t, &tmv);
        size_t k = f.s.n ? strftime(out, sizeof out, fmt, &tmv) : 0;
        return tv_strdup(r, out, k);
    }
    /* ---- str */
    case S_STRIP:
    case S_LSTRIP:
    case S_RSTRIP: {
        A.fname = "strip";
        max_args(a, 1);
        tv chars = arg(a, 0, NULL, tv_none(), NULL);
        if (chars.t != TV_NONE)
            need_str(a, chars, "arg");
        return py_strip(self, chars, fn->id == S_STRIP ? 3 : fn->id == S_LSTRIP ? 1 : 2);
    }
    case S_STARTSWITH:
    case S_ENDSWITH: {
        A.fname = fn->id == S_STARTSWITH ? "startswith" : "endswith";
        if (nargs < 1)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: %s() takes at least 1 argument (0 given)", A.fname);
        tv s = self;
        if (nargs >= 2) {
            tv sl = tv_list_new(r, 0, LK_LIST);
            (void)sl;
            int64_t st = need_int(a, argv[1], "start"), len = (int64_t)u8_len(s.s.p, s.s.n);
            int64_t en = nargs >= 3 ? need_int(a, argv[2], "end") : len;
            if (st < 0)
                st = st + len < 0 ? 0 : st + len;
            if (en < 0)
                en = en + len < 0 ? 0 : en + len;
            if (st > len)
                return tv_bool(false);
            if (en > len)
                en = len;
            if (en < st)
                en = st;
            size_t b0 = 0, b1 = 0, i = 0;
            for (size_t p = 0; p <= s.s.n; p = u8_next(s.s.p, s.s.n, p), i++) {
                if ((int64_t)i == st)
                    b0 = p;
                if ((int64_t)i == en) {
                    b1 = p;
                    break;
                }
                if (p == s.s.n)
                    break;
            }
            s = tv_str(s.s.p + b0, b1 - b0);
        }
        return tv_bool(str_prefix_match(a, s, argv[0], fn->id == S_ENDSWITH));
    }
    case S_SPLIT:
    case S_RSPLIT: {
        A.fname = "split";
        max_args(a, 2);
        tv sep = arg(a, 0, "sep", tv_none(), NULL);
        if (sep.t != TV_NONE)
            need_str(a, sep, "sep");
        int64_t maxsplit = need_int(a, arg(a, 1, "maxsplit", tv_int(-1), NULL), "maxsplit");
        return py_split(r, a, self, sep, maxsplit, fn->id == S_RSPLIT);
    }
    case S_UPPER:
        return map_case(r, self, 0);
    case S_LOWER:
    case S_CASEFOLD:
        return map_case(r, self, 1);
    case S_SWAPCASE:
        return map_case(r, self, 2);
    case S_TITLE:
        return py_title(r, self);
    case S_CAPITALIZE:
        return py_capitalize(r, self);
    case S_REPLACE: {
        A.fname = "replace";
        max_args(a, 3);
        if (nargs < 2)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: replace expected at least 2 arguments, got %zu", nargs);
        tv old = need_str(a, argv[0], "argument 1"), nw = need_str(a, argv[1], "argument 2");
        int64_t count = nargs > 2 ? need_int(a, argv[2], "count") : -1;
        return py_replace(r, at, self, old, nw, count);
    }
    case S_FORMAT:
        A.fname = "format";
        return py_format(a, self);
    case S_JOIN: {
        A.fname = "join";
        if (nargs != 1)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: join() takes exactly one argument (%zu given)", nargs);
        tlist *l = iterate(r, at, argv[0]);
        sbuf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (l->v[i].t != TV_STR)
                tpl_fail(r, at, FT_ERR_INVALID, "TypeError: sequence item %zu: expected str instance, %s found", i,
                         tv_type_name(l->v[i]));
            if (i)
                sb_put(r, &b, self.s.p, self.s.n);
            sb_put(r, &b, l->v[i].s.p, l->v[i].s.n);
        }
        return mkstr(&b);
    }
    case S_FIND:
    case S_RFIND:
    case S_INDEX:
    case S_RINDEX:
    case S_COUNT: {
        A.fname = "find";
        tv sub = need_str(a, arg(a, 0, NULL, tv_undef(), NULL), "argument");
        if (fn->id == S_COUNT) {
            if (sub.s.n == 0)
                return tv_int((int64_t)u8_len(self.s.p, self.s.n) + 1);
            int64_t c = 0;
            for (size_t i = 0; i + sub.s.n <= self.s.n;) {
                const char *h = memmem(self.s.p + i, self.s.n - i, sub.s.p, sub.s.n);
                if (!h)
                    break;
                c++;
                i = (size_t)(h - self.s.p) + sub.s.n;
            }
            return tv_int(c);
        }
        int64_t pos = -1;
        if (fn->id == S_FIND || fn->id == S_INDEX) {
            const char *h = sub.s.n ? memmem(self.s.p, self.s.n, sub.s.p, sub.s.n) : self.s.p;
            if (h)
                pos = cp_index(self.s.p, self.s.n, (size_t)(h - self.s.p));
        } else if (sub.s.n <= self.s.n) {
            for (size_t k = self.s.n - sub.s.n + 1; k-- > 0;)
                if (memcmp(self.s.p + k, sub.s.p, sub.s.n) == 0) {
                    pos = cp_index(self.s.p, self.s.n, k);
                    break;
                }
        }
        if (pos < 0 && (fn->id == S_INDEX || fn->id == S_RINDEX))
            tpl_fail(r, at, FT_ERR_INVALID, "ValueError: substring not found");
        return tv_int(pos);
    }
    case S_ISDIGIT:
    case S_ISALPHA:
    case S_ISSPACE:
    case S_ISALNUM: {
        if (self.s.n == 0)
            return tv_bool(false);
        for (size_t i = 0; i < self.s.n; i = u8_next(self.s.p, self.s.n, i)) {
            uint32_t c = u8_cp(self.s.p, self.s.n, i);
            bool dig = c >= '0' && c <= '9', al = py_isalpha(c), sp = py_isspace(c);
            bool ok = fn->id == S_ISDIGIT ? dig : fn->id == S_ISALPHA ? al : fn->id == S_ISSPACE ? sp : (dig || al);
            if (!ok)
                return tv_bool(false);
        }
        return tv_bool(true);
    }
    case S_ISUPPER:
    case S_ISLOWER: {
        bool any = false;
        for (size_t i = 0; i < self.s.n; i = u8_next(self.s.p, self.s.n, i)) {
            uint32_t c = u8_cp(self.s.p, self.s.n, i);
            if (!cased(c))
                continue;
            any = true;
            if (fn->id == S_ISUPPER ? py_upper(c) != c : py_lower(c) != c)
                return tv_bool(false);
        }
        return tv_bool(any);
    }
    case S_SPLITLINES:
        return py_splitlines(r, self, tv_truthy(arg(a, 0, "keepends", tv_bool(false), NULL)));
    case S_REMOVEPREFIX:
    case S_REMOVESUFFIX: {
        tv p = need_str(a, arg(a, 0, NULL, tv_undef(), NULL), "argument");
        bool suf = fn->id == S_REMOVESUFFIX;
        if (p.s.n <= self.s.n && memcmp(suf ? self.s.p + self.s.n - p.s.n : self.s.p, p.s.p, p.s.n) == 0)
            return suf ? tv_str(self.s.p, self.s.n - p.s.n) : tv_str(self.s.p + p.s.n, self.s.n - p.s.n);
        return self;
    }
    case S_CENTER:
    case S_LJUST:
    case S_RJUST: {
        int64_t w = need_int(a, arg(a, 0, NULL, tv_undef(), NULL), "width");
        tv fill = arg(a, 1, NULL, tv_cstr(" "), NULL);
        return pad_str(r, self, w, fill, fn->id == S_CENTER ? 0 : fn->id == S_LJUST ? 1 : 2);
    }
    case S_ZFILL: {
        int64_t w = need_int(a, arg(a, 0, NULL, tv_undef(), NULL), "width");
        int64_t len = (int64_t)u8_len(self.s.p, self.s.n);
        if (w <= len)
            return self;
        if (w > (int64_t)r->lim.max_output)
            tpl_fail(r, at, FT_ERR_LIMIT, "zfill width over the output limit");
        sbuf b = {0};
        size_t st = 0;
        if (self.s.n && (self.s.p[0] == '-' || self.s.p[0] == '+')) {
            sb_putc(r, &b, self.s.p[0]);
            st = 1;
        }
        for (int64_t i = 0; i < w - len; i++)
            sb_putc(r, &b, '0');
        sb_put(r, &b, self.s.p + st, self.s.n - st);
        return mkstr(&b);
    }
    case S_UNSUPPORTED:
        tpl_fail(r, at, FT_ERR_UNSUPPORTED, "this Python method is not supported by ftune's template engine");
    /* ---- dict */
    case D_GET: {
        A.fname = "get";
        max_args(a, 2);
        if (nargs < 1)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: get expected at least 1 argument, got 0");
        tv *v = tdict_get(self.d, argv[0]);
        return v ? *v : (nargs > 1 ? argv[1] : tv_none());
    }
    case D_ITEMS: {
        tv l = tv_list_new(r, self.d->n, LK_ITEMS);
        for (size_t i = 0; i < self.d->n; i++) {
            tv p = tv_list_new(r, 2, LK_TUPLE);
            p.l->v[0] = self.d->k[i];
            p.l->v[1] = self.d->v[i];
            l.l->v[i] = p;
        }
        return l;
    }
    case D_KEYS:
    case D_VALUES: {
        tv l = tv_list_new(r, self.d->n, fn->id == D_KEYS ? LK_KEYS : LK_VALUES);
        for (size_t i = 0; i < self.d->n; i++)
            l.l->v[i] = fn->id == D_KEYS ? self.d->k[i] : self.d->v[i];
        return l;
    }
    case D_COPY: {
        tv d = tv_dict_new(r);
        dict_update_from(r, at, d.d, self);
        return d;
    }
    /* ---- list */
    case L_COUNT:
    case L_INDEX: {
        tv x = arg(a, 0, NULL, tv_undef(), NULL);
        int64_t c = 0;
        for (size_t i = 0; i < self.l->n; i++)
            if (tv_eq(self.l->v[i], x)) {
                if (fn->id == L_INDEX)
                    return tv_int((int64_t)i);
                c++;
            }
        if (fn->id == L_INDEX)
            tpl_fail(r, at, FT_ERR_INVALID, "ValueError: value is not in list");
        return tv_int(c);
    }
    case L_COPY: {
        tv l = tv_list_new(r, self.l->n, LK_LIST);
        if (self.l->n)
            memcpy(l.l->v, self.l->v, self.l->n * sizeof(tv));
        return l;
    }
    case LOOP_CYCLE:
        if (nargs == 0)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: no items for cycling given");
        return argv[self.loop->index0 % nargs];
    }
    tpl_fail(r, at, FT_ERR_INTERNAL, "unknown builtin %d", fn->id);
}

/* ---------------------------------------------------------------- filters */

static tv soft_str(rstate *r, tv v) { return v.t == TV_UNDEF ? tv_str("", 0) : tv_to_str(r, v); }

static int64_t py_len(rstate *r, const node *at, tv v) {
    switch (v.t) {
    case TV_UNDEF:
        return 0;
    case TV_STR:
        return (int64_t)u8_len(v.s.p, v.s.n);
    case TV_LIST:
        if (v.l->kind == LK_GEN)
            break;
        return (int64_t)v.l->n;
    case TV_DICT:
        return (int64_t)v.d->n;
    default:
        break;
    }
    tpl_fail(r, at, FT_ERR_INVALID, "TypeError: object of type '%s' has no len()", tv_type_name(v));
}

/* Jinja2's make_attrgetter: "a.b.0" walks attributes / items */
static tv attr_path(rstate *r, const node *at, tv v, tv path) {
    if (path.t == TV_INT)
        return get_item(r, at, v, path);
    if (path.t != TV_STR)
        tpl_fail(r, at, FT_ERR_INVALID, "TypeError: attribute must be a string");
    size_t i = 0;
    while (i <= path.s.n) {
        size_t j = i;
        while (j < path.s.n && path.s.p[j] != '.')
            j++;
        bool digits = j > i;
        for (size_t k = i; k < j; k++)
            digits &= path.s.p[k] >= '0' && path.s.p[k] <= '9';
        tv key = digits ? tv_int(strtoll(path.s.p + i, NULL, 10)) : tv_str(path.s.p + i, j - i);
        v = get_item(r, at, v, key);
        i = j + 1;
    }
    return v;
}

static tv gen_from(rstate *r, tv *items, size_t n) {
    tv l = tv_list_new(r, n, LK_GEN);
    if (n)
        memcpy(l.l->v, items, n * sizeof(tv));
    return l;
}

static tv sort_key(rstate *r, tv v, bool case_sensitive) {
    if (!case_sensitive && v.t == TV_STR)
        return map_case(r, v, 1);
    return v;
}

static void sort_values(rstate *r, const node *at, tv *vals, tv *keys, size_t n, bool reverse) {
    /* stable merge-free insertion sort would be O(n^2); chat data is small but fuzzing is not:
     * a bottom-up merge sort keeps it O(n log n) and stable */
    tv *tk = ralloc(r, (n + 1) * sizeof(tv)), *tvv = ralloc(r, (n + 1) * sizeof(tv));
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int c = tv_cmp(keys[j], keys[i]);
                if (c == 2)
                    tpl_fail(r, at, FT_ERR_INVALID, "TypeError: '<' not supported between instances of '%s' and '%s'",
                             tv_type_name(keys[j]), tv_type_name(keys[i]));
                bool take_right = reverse ? c > 0 : c < 0;
                if (take_right) {
                    tk[k] = keys[j];
                    tvv[k++] = vals[j++];
                } else {
                    tk[k] = keys[i];
                    tvv[k++] = vals[i++];
                }
            }
            while (i < mid) {
                tk[k] = keys[i];
                tvv[k++] = vals[i++];
            }
            while (j < hi) {
                tk[k] = keys[j];
                tvv[k++] = vals[j++];
            }
        }
        memcpy(keys, tk, n * sizeof(tv));
        memcpy(vals, tvv, n * sizeof(tv));
    }
}

static tv do_round(rstate *r, tv v, int64_t prec, tv method) {
    const char *m = method.t == TV_STR ? method.s.p : "common";
    size_t mn = method.t == TV_STR ? method.s.n : 6;
    bool common = mn == 6 && !memcmp(m, "common", 6), ceil_ = mn == 4 && !memcmp(m, "ceil", 4),
         floor_ = mn == 5 && !memcmp(m, "floor", 5);
    if (!common && !ceil_ && !floor_)
        tpl_fail(r, NULL, FT_ERR_INVALID, "FilterArgumentError: method must be common, ceil or floor");
    if (!tv_is_num(v))
        tpl_fail(r, NULL, FT_ERR_INVALID, "TypeError: type %s doesn't define __round__ method", tv_type_name(v));
    if (common) {
        if (v.t != TV_FLOAT)
            return v.t == TV_BOOL ? tv_int(v.b) : v; /* round(int, n) stays an int for n >= 0 */
        if (!isfinite(v.f))
            return v;
        if (prec > 300 || prec < -300)
            return prec > 0 ? v : tv_float(copysign(0.0, v.f));
        if (prec >= 0) {
            char tmp[700];
            snprintf(tmp, sizeof tmp, "%.*f", (int)prec, v.f);
            return tv_float(strtod(tmp, NULL));
        }
        double p = pow(10.0, (double)-prec), y = v.f / p, rd = nearbyint(y);
        return tv_float(rd * p);
    }
    double x = tv_as_double(v), p = pow(10.0, (double)prec);
    return tv_float((ceil_ ? ceil(x * p) : floor(x * p)) / p);
}

static tv py_float_parse(tv s, bool *ok) {
    /* Python float(): surrounding whitespace, underscores between digits, inf/nan */
    char tmp[128];
    tv t = py_strip(s, tv_none(), 3);
    *ok = false;
    if (t.s.n == 0 || t.s.n >= sizeof tmp)
        return tv_undef();
    size_t k = 0;
    for (size_t i = 0; i < t.s.n; i++) {
        char c = t.s.p[i];
        if (c == '_') {
            if (i == 0 || i + 1 >= t.s.n || !is_digit_c(t.s.p[i - 1]) || !is_digit_c(t.s.p[i + 1]))
                return tv_undef();
            continue;
        }
        if (!strchr("0123456789+-.eEinfatyINFATY", c))
            return tv_undef();
        tmp[k++] = c;
    }
    tmp[k] = 0;
    char *end;
    double d = strtod(tmp, &end);
    if (*end)
        return tv_undef();
    /* strtod accepts hex and "infinity"/"nan(...)" variants Python also accepts; good enough */
    *ok = true;
    return tv_float(d);
}

static void need_filter_args(rstate *r, const node *at, const char *name, size_t nargs, size_t max) {
    if (nargs > max)
        tpl_fail(r, at, FT_ERR_INVALID, "TypeError: %s filter takes at most %zu argument(s)", name, max);
}

static tv json_to_ascii(rstate *r, tv s) {
    sbuf b = {0};
    for (size_t i = 0; i < s.s.n;) {
        unsigned char c = (unsigned char)s.s.p[i];
        if (c < 0x80) {
            sb_putc(r, &b, (char)c);
            i++;
            continue;
        }
        uint32_t cp = u8_cp(s.s.p, s.s.n, i);
        i = u8_next(s.s.p, s.s.n, i);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            sb_printf(r, &b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
        } else
            sb_printf(r, &b, "\\u%04x", cp);
    }
    return mkstr(&b);
}

static bool name_eq(const char *s, const char *lit) { return !strcmp(s, lit); }

tv apply_filter(rstate *r, frame *f, const node *at, const char *name, tv v, tv *argv, size_t nargs, const char **kwn,
                tv *kwv, size_t nkw) {
    args A = {r, at, name, argv, nargs, kwn, kwv, nkw}, *a = &A;
    if (name_eq(name, "tojson")) {
        need_filter_args(r, at, name, nargs, 4);
        tv ensure_ascii = arg(a, 0, "ensure_ascii", tv_bool(false), NULL);
        tv indent = arg(a, 1, "indent", tv_none(), NULL);
        tv seps = arg(a, 2, "separators", tv_none(), NULL);
        tv sort_keys = arg(a, 3, "sort_keys", tv_bool(false), NULL);
        const char *ind = NULL;
        size_t ilen = 0;
        if (indent.t == TV_INT || indent.t == TV_BOOL) {
            int64_t w = indent.t == TV_BOOL ? indent.b : indent.i;
            if (w > 1000)
                tpl_fail(r, at, FT_ERR_LIMIT, "tojson indent too large");
            char *sp = ralloc(r, (size_t)(w > 0 ? w : 0) + 1);
            memset(sp, ' ', (size_t)(w > 0 ? w : 0));
            ind = sp;
            ilen = (size_t)(w > 0 ? w : 0);
        } else if (indent.t == TV_STR) {
            ind = indent.s.p;
            ilen = indent.s.n;
        } else if (indent.t != TV_NONE)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: tojson indent must be an int or a string");
        const char *item_sep = ind ? "," : ", ", *key_sep = ": ";
        if (seps.t == TV_LIST && seps.l->kind <= LK_TUPLE) {
            if (seps.l->n != 2 || seps.l->v[0].t != TV_STR || seps.l->v[1].t != TV_STR)
                tpl_fail(r, at, FT_ERR_INVALID, "ValueError: tojson separators must be two strings");
            item_sep = tv_strdup(r, seps.l->v[0].s.p, seps.l->v[0].s.n).s.p;
            key_sep = tv_strdup(r, seps.l->v[1].s.p, seps.l->v[1].s.n).s.p;
        } else if (seps.t != TV_NONE)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: tojson separators must be a pair of strings");
        sbuf b = {0};
        const char *why = NULL;
        if (!tv_tojson(r, &b, v, ind, ilen, 0, item_sep, key_sep, tv_truthy(sort_keys), &why))
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: %s", why);
        tv s = mkstr(&b);
        return tv_truthy(ensure_ascii) ? json_to_ascii(r, s) : s;
    }
    if (name_eq(name, "trim")) {
        tv chars = arg(a, 0, "chars", tv_none(), NULL);
        if (chars.t != TV_NONE)
            need_str(a, chars, "chars");
        return py_strip(soft_str(r, v), chars, 3);
    }
    if (name_eq(name, "length") || name_eq(name, "count"))
        return tv_int(py_len(r, at, v));
    if (name_eq(name, "string"))
        return soft_str(r, v);
    if (name_eq(name, "safe"))
        return v.t == TV_STR ? v : soft_str(r, v);
    if (name_eq(name, "upper"))
        return map_case(r, soft_str(r, v), 0);
    if (name_eq(name, "lower"))
        return map_case(r, soft_str(r, v), 1);
    if (name_eq(name, "title"))
        return jinja_title(r, soft_str(r, v));
    if (name_eq(name, "capitalize"))
        return py_capitalize(r, soft_str(r, v));
    if (name_eq(name, "replace")) {
        tv s = soft_str(r, v);
        tv old = need_str(a, arg(a, 0, "old", tv_undef(), NULL), "old");
        tv nw = need_str(a, arg(a, 1, "new", tv_undef(), NULL), "new");
        tv cnt = arg(a, 2, "count", tv_none(), NULL);
        return py_replace(r, at, s, old, nw, cnt.t == TV_NONE ? -1 : need_int(a, cnt, "count"));
    }
    if (name_eq(name, "default") || name_eq(name, "d")) {
        tv dflt = arg(a, 0, "default_value", tv_str("", 0), NULL);
        bool boolean = tv_truthy(arg(a, 1, "boolean", tv_bool(false), NULL));
        if (v.t == TV_UNDEF || (boolean && !tv_truthy(v)))
            return dflt;
        return v;
    }
    if (name_eq(name, "first")) {
        tlist *l = iterate(r, at, v);
        return l->n ? l->v[0] : tv_undef_msg(r, "No first item, sequence was empty.");
    }
    if (name_eq(name, "last")) {
        if (v.t == TV_LIST && v.l->kind == LK_GEN)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: 'generator' object is not reversible");
        tlist *l = iterate(r, at, v);
        return l->n ? l->v[l->n - 1] : tv_undef_msg(r, "No last item, sequence was empty.");
    }
    if (name_eq(name, "list")) {
        tlist *l = iterate(r, at, v);
        tv x = tv_list_new(r, l->n, LK_LIST);
        if (l->n)
            memcpy(x.l->v, l->v, l->n * sizeof(tv));
        return x;
    }
    if (name_eq(name, "join")) {
        tv sep = arg(a, 0, "d", tv_str("", 0), NULL);
        tv attr = arg(a, 1, "attribute", tv_none(), NULL);
        tlist *l = iterate(r, at, v);
        sbuf b = {0};
        tv ssep = soft_str(r, sep);
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                sb_put(r, &b, ssep.s.p, ssep.s.n);
            tv x = attr.t != TV_NONE ? attr_path(r, at, l->v[i], attr) : l->v[i];
            tv_str_into(r, &b, x);
        }
        return mkstr(&b);
    }
    if (name_eq(name, "items")) {
        if (v.t == TV_UNDEF)
            return gen_from(r, NULL, 0);
        if (v.t != TV_DICT)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: Can only get item pairs from a mapping.");
        tv l = tv_list_new(r, v.d->n, LK_GEN);
        for (size_t i = 0; i < v.d->n; i++) {
            tv p = tv_list_new(r, 2, LK_TUPLE);
            p.l->v[0] = v.d->k[i];
            p.l->v[1] = v.d->v[i];
            l.l->v[i] = p;
        }
        return l;
    }
    if (name_eq(name, "dictsort")) {
        if (v.t != TV_DICT)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: dictsort needs a mapping");
        bool cs = tv_truthy(arg(a, 0, "case_sensitive", tv_bool(false), NULL));
        tv by = arg(a, 1, "by", tv_cstr("key"), NULL);
        bool rev = tv_truthy(arg(a, 2, "reverse", tv_bool(false), NULL));
        bool by_value = by.t == TV_STR && by.s.n == 5 && !memcmp(by.s.p, "value", 5);
        size_t n = v.d->n;
        tv *vals = ralloc(r, (n + 1) * sizeof(tv)), *keys = ralloc(r, (n + 1) * sizeof(tv));
        for (size_t i = 0; i < n; i++) {
            tv p = tv_list_new(r, 2, LK_TUPLE);
            p.l->v[0] = v.d->k[i];
            p.l->v[1] = v.d->v[i];
            vals[i] = p;
            keys[i] = sort_key(r, by_value ? v.d->v[i] : v.d->k[i], cs);
        }
        sort_values(r, at, vals, keys, n, rev);
        tv l = tv_list_new(r, 0, LK_LIST);
        l.l->v = vals;
        l.l->n = n;
        return l;
    }
    if (name_eq(name, "sort")) {
        bool rev = tv_truthy(arg(a, 0, "reverse", tv_bool(false), NULL));
        bool cs = tv_truthy(arg(a, 1, "case_sensitive", tv_bool(false), NULL));
        tv attr = arg(a, 2, "attribute", tv_none(), NULL);
        tlist *l = iterate(r, at, v);
        size_t n = l->n;
        tv *vals = ralloc(r, (n + 1) * sizeof(tv)), *keys = ralloc(r, (n + 1) * sizeof(tv));
        for (size_t i = 0; i < n; i++) {
            vals[i] = l->v[i];
            keys[i] = sort_key(r, attr.t != TV_NONE ? attr_path(r, at, l->v[i], attr) : l->v[i], cs);
        }
        sort_values(r, at, vals, keys, n, rev);
        tv out = tv_list_new(r, 0, LK_LIST);
        out.l->v = vals;
        out.l->n = n;
        return out;
    }
    if (name_eq(name, "unique")) {
        bool cs = tv_truthy(arg(a, 0, "case_sensitive", tv_bool(false), NULL));
        tv attr = arg(a, 1, "attribute", tv_none(), NULL);
        tlist *l = iterate(r, at, v);
        tv *out = ralloc(r, (l->n + 1) * sizeof(tv)), *seen = ralloc(r, (l->n + 1) * sizeof(tv));
        size_t k = 0;
        for (size_t i = 0; i < l->n; i++) {
            tv key = sort_key(r, attr.t != TV_NONE ? attr_path(r, at, l->v[i], attr) : l->v[i], cs);
            bool dup = false;
            tpl_charge(r, at, (int64_t)k + 1);
            for (size_t j = 0; j < k && !dup; j++)
                dup = tv_eq(seen[j], key);
            if (!dup) {
                seen[k] = key;
                out[k++] = l->v[i];
            }
        }
        return gen_from(r, out, k);
    }
    if (name_eq(name, "reverse")) {
        if (v.t == TV_STR) {
            sbuf b = {0};
            size_t e = v.s.n;
            while (e > 0) {
                size_t st = e - 1;
                while (st > 0 && ((unsigned char)v.s.p[st] & 0xC0) == 0x80)
                    st--;
                sb_put(r, &b, v.s.p + st, e - st);
                e = st;
            }
            return mkstr(&b);
        }
        bool was_gen = v.t == TV_LIST && v.l->kind == LK_GEN;
        tlist *l = iterate(r, at, v);
        tv out = tv_list_new(r, l->n, was_gen ? LK_LIST : LK_GEN);
        for (size_t i = 0; i < l->n; i++)
            out.l->v[i] = l->v[l->n - 1 - i];
        return out;
    }
    if (name_eq(name, "map")) {
        tlist *l = iterate(r, at, v);
        tv *out = ralloc(r, (l->n + 1) * sizeof(tv));
        bool has_attr;
        tv attr = arg(a, SIZE_MAX, "attribute", tv_undef(), &has_attr);
        if (has_attr) {
            tv dflt = arg(a, SIZE_MAX, "default", tv_undef(), NULL);
            for (size_t i = 0; i < l->n; i++) {
                out[i] = attr_path(r, at, l->v[i], attr);
                if (out[i].t == TV_UNDEF && dflt.t != TV_UNDEF)
                    out[i] = dflt;
            }
            return gen_from(r, out, l->n);
        }
        if (nargs < 1)
            return gen_from(r, l->v, l->n);
        tv fname = need_str(a, argv[0], "filter name");
        char *fn = (char *)tv_strdup(r, fname.s.p, fname.s.n).s.p;
        for (size_t i = 0; i < l->n; i++)
            out[i] = apply_filter(r, f, at, fn, l->v[i], argv + 1, nargs - 1, kwn, kwv, nkw);
        return gen_from(r, out, l->n);
    }
    if (name_eq(name, "select") || name_eq(name, "reject") || name_eq(name, "selectattr") ||
        name_eq(name, "rejectattr")) {
        bool attr_mode = name[6] == 'a' || name[7] == 'a' ? (strstr(name, "attr") != NULL) : false;
        bool want = name[0] == 's';
        tlist *l = iterate(r, at, v);
        tv *out = ralloc(r, (l->n + 1) * sizeof(tv));
        size_t k = 0, off = attr_mode ? 1 : 0;
        tv attr = attr_mode ? arg(a, 0, NULL, tv_undef(), NULL) : tv_undef();
        if (attr_mode && attr.t == TV_UNDEF)
            tpl_fail(r, at, FT_ERR_INVALID, "FilterArgumentError: Missing parameter for attribute name");
        const char *test = NULL;
        if (nargs > off) {
            tv tn = need_str(a, argv[off], "test name");
            test = tv_strdup(r, tn.s.p, tn.s.n).s.p;
        }
        for (size_t i = 0; i < l->n; i++) {
            tv x = attr_mode ? attr_path(r, at, l->v[i], attr) : l->v[i];
            bool t = test ? apply_test(r, f, at, test, x, argv + off + 1, nargs > off + 1 ? nargs - off - 1 : 0)
                          : tv_truthy(x);
            if (t == want)
                out[k++] = l->v[i];
        }
        return gen_from(r, out, k);
    }
    if (name_eq(name, "int")) {
        tv dflt = arg(a, 0, "default", tv_int(0), NULL);
        int64_t base = need_int(a, arg(a, 1, "base", tv_int(10), NULL), "base");
        if (v.t == TV_STR) {
            tv s = py_strip(v, tv_none(), 3);
            char tmp[80];
            if (s.s.n && s.s.n < sizeof tmp && (base == 10 || base == 16 || base == 8 || base == 2)) {
                size_t k = 0;
                for (size_t i = 0; i < s.s.n; i++)
                    if (s.s.p[i] != '_')
                        tmp[k++] = s.s.p[i];
                tmp[k] = 0;
                char *end;
                long long x = strtoll(tmp, &end, (int)base);
                if (!*end && end != tmp && !strchr(tmp, ' '))
                    return tv_int(x);
            }
            bool ok;
            tv fl = py_float_parse(v, &ok);
            if (ok && isfinite(fl.f) && fabs(fl.f) < 9.2e18)
                return tv_int((int64_t)fl.f);
            return dflt;
        }
        if (v.t == TV_INT)
            return v;
        if (v.t == TV_BOOL)
            return tv_int(v.b);
        if (v.t == TV_FLOAT)
            return isfinite(v.f) && fabs(v.f) < 9.2e18 ? tv_int((int64_t)v.f) : dflt;
        return dflt;
    }
    if (name_eq(name, "float")) {
        tv dflt = arg(a, 0, "default", tv_float(0.0), NULL);
        if (v.t == TV_FLOAT)
            return v;
        if (v.t == TV_INT || v.t == TV_BOOL)
            return tv_float(tv_as_double(v));
        if (v.t == TV_STR) {
            bool ok;
            tv x = py_float_parse(v, &ok);
            return ok ? x : dflt;
        }
        return dflt;
    }
    if (name_eq(name, "abs")) {
        if (v.t == TV_FLOAT)
            return tv_float(fabs(v.f));
        if (v.t == TV_INT) {
            if (v.i == INT64_MIN)
                tpl_fail(r, at, FT_ERR_LIMIT, "integer overflow (ftune integers are 64-bit)");
            return tv_int(v.i < 0 ? -v.i : v.i);
        }
        if (v.t == TV_BOOL)
            return tv_int(v.b);
        if (v.t == TV_UNDEF)
            fail_undefined(r, at, v);
        tpl_fail(r, at, FT_ERR_INVALID, "TypeError: bad operand type for abs(): '%s'", tv_type_name(v));
    }
    if (name_eq(name, "round")) {
        int64_t prec = need_int(a, arg(a, 0, "precision", tv_int(0), NULL), "precision");
        if (v.t == TV_UNDEF)
            fail_undefined(r, at, v);
        return do_round(r, v, prec, arg(a, 1, "method", tv_cstr("common"), NULL));
    }
    if (name_eq(name, "indent")) {
        tv width = arg(a, 0, "width", tv_int(4), NULL);
        bool first = tv_truthy(arg(a, 1, "first", tv_bool(false), NULL));
        bool blank = tv_truthy(arg(a, 2, "blank", tv_bool(false), NULL));
        tv ind;
        if (width.t == TV_STR)
            ind = width;
        else {
            int64_t w = need_int(a, width, "width");
            if (w > 10000)
                tpl_fail(r, at, FT_ERR_LIMIT, "indent width too large");
            char *sp = ralloc(r, (size_t)(w > 0 ? w : 0) + 1);
            memset(sp, ' ', (size_t)(w > 0 ? w : 0));
            ind = tv_str(sp, (size_t)(w > 0 ? w : 0));
        }
        tv s = soft_str(r, v);
        sbuf sb = {0};
        sb_put(r, &sb, s.s.p, s.s.n);
        sb_putc(r, &sb, '\n');
        tv lines = py_splitlines(r, mkstr(&sb), false);
        sbuf b = {0};
        if (first)
            sb_put(r, &b, ind.s.p, ind.s.n);
        for (size_t i = 0; i < lines.l->n; i++) {
            tv ln = lines.l->v[i];
            if (i) {
                sb_putc(r, &b, '\n');
                if (blank || ln.s.n)
                    sb_put(r, &b, ind.s.p, ind.s.n);
            }
            sb_put(r, &b, ln.s.p, ln.s.n);
        }
        return mkstr(&b);
    }
    if (name_eq(name, "wordcount")) {
        tv s = soft_str(r, v);
        int64_t words = 0;
        bool in = false;
        for (size_t i = 0; i < s.s.n; i = u8_next(s.s.p, s.s.n, i)) {
            uint32_t c = u8_cp(s.s.p, s.s.n, i);
            bool w = c == '_' || (c >= '0' && c <= '9') || py_isalpha(c);
            if (w && !in)
                words++;
            in = w;
        }
        return tv_int(words);
    }
    if (name_eq(name, "batch")) {
        int64_t count = need_int(a, arg(a, 0, "linecount", tv_undef(), NULL), "linecount");
        bool has_fill;
        tv fill = arg(a, 1, "fill_with", tv_none(), &has_fill);
        if (count <= 0)
            tpl_fail(r, at, FT_ERR_INVALID, "ValueError: batch size must be positive");
        tlist *l = iterate(r, at, v);
        size_t nb = (l->n + (size_t)count - 1) / (size_t)count;
        tv out = tv_list_new(r, nb, LK_GEN);
        for (size_t b = 0; b < nb; b++) {
            size_t st = b * (size_t)count, len = l->n - st < (size_t)count ? l->n - st : (size_t)count;
            size_t tot = has_fill && fill.t != TV_NONE ? (size_t)count : len;
            tv row = tv_list_new(r, tot, LK_LIST);
            for (size_t i = 0; i < tot; i++)
                row.l->v[i] = i < len ? l->v[st + i] : fill;
            out.l->v[b] = row;
        }
        return out;
    }
    if (name_eq(name, "min") || name_eq(name, "max")) {
        bool cs = tv_truthy(arg(a, 0, "case_sensitive", tv_bool(false), NULL));
        tv attr = arg(a, 1, "attribute", tv_none(), NULL);
        tlist *l = iterate(r, at, v);
        if (!l->n)
            return tv_undef_msg(r, "No aggregated item, sequence was empty.");
        size_t best = 0;
        tv bk = sort_key(r, attr.t != TV_NONE ? attr_path(r, at, l->v[0], attr) : l->v[0], cs);
        for (size_t i = 1; i < l->n; i++) {
            tv k = sort_key(r, attr.t != TV_NONE ? attr_path(r, at, l->v[i], attr) : l->v[i], cs);
            int c = tv_cmp(k, bk);
            if (c == 2)
                tpl_fail(r, at, FT_ERR_INVALID, "TypeError: values cannot be ordered");
            if (name[1] == 'i' ? c < 0 : c > 0) {
                best = i;
                bk = k;
            }
        }
        return l->v[best];
    }
    if (name_eq(name, "sum")) {
        tv attr = arg(a, 0, "attribute", tv_none(), NULL);
        tv acc = arg(a, 1, "start", tv_int(0), NULL);
        tlist *l = iterate(r, at, v);
        for (size_t i = 0; i < l->n; i++) {
            tv x = attr.t != TV_NONE ? attr_path(r, at, l->v[i], attr) : l->v[i];
            acc = tpl_binop(r, at, OP_ADD, acc, x);
        }
        return acc;
    }
    if (name_eq(name, "center")) {
        int64_t w = need_int(a, arg(a, 0, "width", tv_int(80), NULL), "width");
        return pad_str(r, soft_str(r, v), w, tv_cstr(" "), 0);
    }
    if (name_eq(name, "format")) {
        tv s = soft_str(r, v);
        if (nargs && nkw)
            tpl_fail(r, at, FT_ERR_INVALID, "FilterArgumentError: can't handle positional and keyword arguments at the same time");
        if (nkw) {
            tv d = tv_dict_new(r);
            for (size_t i = 0; i < nkw; i++)
                tdict_set(r, d.d, tv_cstr(kwn[i]), kwv[i]);
            return tpl_str_percent(r, at, s, d);
        }
        tv t = tv_list_new(r, nargs, LK_TUPLE);
        if (nargs)
            memcpy(t.l->v, argv, nargs * sizeof(tv));
        return tpl_str_percent(r, at, s, t);
    }
    if (name_eq(name, "attr")) {
        tv nm = need_str(a, arg(a, 0, "name", tv_undef(), NULL), "name");
        if (v.t == TV_UNDEF)
            fail_undefined(r, at, v);
        tv x;
        tv m = builtin_method(r, v, nm.s.p, nm.s.n);
        if (m.t != TV_UNDEF)
            return m;
        x = v.t == TV_NS ? (tdict_get_str(v.d, nm.s.p, nm.s.n) ? *tdict_get_str(v.d, nm.s.p, nm.s.n) : tv_undef())
                         : tv_undef();
        return x.t != TV_UNDEF ? x : tv_undef_msg(r, "'%s object' has no attribute '%.*s'", tv_type_name(v), (int)nm.s.n, nm.s.p);
    }
    if (name_eq(name, "escape") || name_eq(name, "e") || name_eq(name, "forceescape")) {
        tv s = soft_str(r, v);
        sbuf b = {0};
        for (size_t i = 0; i < s.s.n; i++) {
            char c = s.s.p[i];
            const char *rep = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&#34;" : c == '\'' ? "&#39;" : NULL;
            if (rep)
                sb_put(r, &b, rep, strlen(rep));
            else
                sb_putc(r, &b, c);
        }
        return mkstr(&b);
    }
    tpl_fail(r, at, FT_ERR_UNSUPPORTED, "the '%s' filter is not supported by ftune's template engine", name);
}

/* ---------------------------------------------------------------- tests */

bool apply_test(rstate *r, frame *f, const node *at, const char *name, tv v, tv *argv, size_t nargs) {
    (void)f;
    tv a0 = nargs ? argv[0] : tv_undef();
#define T(lit) (!strcmp(name, lit))
    if (T("defined"))
        return v.t != TV_UNDEF;
    if (T("undefined"))
        return v.t == TV_UNDEF;
    if (T("none"))
        return v.t == TV_NONE;
    if (T("boolean"))
        return v.t == TV_BOOL;
    if (T("true"))
        return v.t == TV_BOOL && v.b;
    if (T("false"))
        return v.t == TV_BOOL && !v.b;
    if (T("integer"))
        return v.t == TV_INT;
    if (T("float"))
        return v.t == TV_FLOAT;
    if (T("number"))
        return tv_is_num(v);
    if (T("string"))
        return v.t == TV_STR;
    if (T("mapping"))
        return v.t == TV_DICT;
    if (T("iterable"))
        return v.t == TV_STR || v.t == TV_LIST || v.t == TV_DICT || v.t == TV_UNDEF;
    if (T("sequence"))
        return v.t == TV_STR || v.t == TV_DICT || v.t == TV_UNDEF || (v.t == TV_LIST && v.l->kind <= LK_TUPLE);
    if (T("callable"))
        return v.t == TV_MACRO || v.t == TV_FUNC || v.t == TV_UNDEF;
    if (T("escaped"))
        return false;
    if (T("lower") || T("upper")) {
        tv s = soft_str(r, v);
        bool any = false;
        for (size_t i = 0; i < s.s.n; i = u8_next(s.s.p, s.s.n, i)) {
            uint32_t c = u8_cp(s.s.p, s.s.n, i);
            if (!cased(c))
                continue;
            any = true;
            if (T("lower") ? py_lower(c) != c : py_upper(c) != c)
                return false;
        }
        return any;
    }
    if (T("odd") || T("even") || T("divisibleby")) {
        tv d = T("divisibleby") ? a0 : tv_int(2);
        if (v.t == TV_UNDEF)
            fail_undefined(r, at, v);
        tv m = tpl_binop(r, at, OP_MOD, v, d);
        bool zero = !tv_truthy(m);
        return T("odd") ? !zero : zero;
    }
    if (T("eq") || T("equalto") || T("=="))
        return tv_eq(v, a0);
    if (T("ne") || T("!="))
        return !tv_eq(v, a0);
    if (T("in")) {
        return tpl_contains(r, at, a0, v);
    }
    if (T("sameas")) {
        if (v.t != a0.t)
            return false;
        if (v.t == TV_NONE || v.t == TV_UNDEF)
            return v.t == TV_NONE || v.s.p == a0.s.p;
        if (v.t == TV_BOOL)
            return v.b == a0.b;
        if (v.t == TV_INT)
            return v.i == a0.i && v.i >= -5 && v.i <= 256; /* CPython's small-int cache */
        if (v.t == TV_STR)
            return v.s.p == a0.s.p && v.s.n == a0.s.n;
        return v.l == a0.l;
    }
    if (T("filter") || T("test")) {
        tv s = need_str(&(args){r, at, name, argv, nargs, NULL, NULL, 0}, v, "name");
        (void)s;
        return true;
    }
    if (T("lt") || T("lessthan") || T("<") || T("le") || T("<=") || T("gt") || T("greaterthan") || T(">") ||
        T("ge") || T(">=")) {
        if (v.t == TV_UNDEF)
            fail_undefined(r, at, v);
        if (a0.t == TV_UNDEF)
            fail_undefined(r, at, a0);
        int c = tv_cmp(v, a0);
        if (c == 2)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: values of types '%s' and '%s' cannot be ordered",
                     tv_type_name(v), tv_type_name(a0));
        if (T("lt") || T("lessthan") || T("<"))
            return c < 0;
        if (T("le") || T("<="))
            return c <= 0;
        if (T("gt") || T("greaterthan") || T(">"))
            return c > 0;
        return c >= 0;
    }
#undef T
    tpl_fail(r, at, FT_ERR_UNSUPPORTED, "the '%s' test is not supported", name);
}
