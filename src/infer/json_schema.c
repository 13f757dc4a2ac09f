/* infer/json_schema.c: JSON Schemas (response_format json_schema, draft 2020-12 and OpenAI's
 * Structured Outputs subset) compiled to the grammar of the JSON texts they accept, for
 * constrained decoding (grammar.c matches it).
 *
 * Supported: type (one or a list, so nullable types), properties with required and
 * additionalProperties, enum and const, anyOf, $ref to any JSON Pointer in the document ($defs,
 * definitions, "#": recursion included), allOf of one schema, items with minItems and maxItems,
 * strings with minLength and maxLength, a pattern (regex.c) or a format (date-time, date, time,
 * duration, email, hostname, ipv4, ipv6, uuid, uri), integers with minimum, maximum, the
 * exclusive bounds and multipleOf, numbers with bounds. Anything else that constrains a value is
 * refused when the request arrives, naming the keyword and where it is (a JSON Pointer), rather
 * than produce output that may not validate. Annotations (title, description, default, ...) are
 * ignored.
 *
 * What is generated is always valid, but not every valid document can be generated: properties
 * come in the schema's order, with none beyond the declared ones; optional ones may be left
 * out; numbers have at most 15 digits before and after the point; a bounded number is an integer
 * or n.ddd with the whole unit [n, n+1] inside the bounds; between tokens at most WS_MAX white
 * space characters; formats generate a plain subset (dates up to the 28th of February, ...). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ftune/json.h"
#include "infer_internal.h"

enum { SLOT_WS = 2, SLOT_VALUE = 3, SLOT_OBJECT = 4, SLOT_STRING = 5, SLOT_NUMBER = 6, SLOT_DIGIT = 7 };
enum { WS_MAX = 8, MAX_ENUM = 512, MAX_LENGTH = 10000, MAX_DEPTH = 64, MAX_MULTIPLE_DFA = 100 };
#define INT_LIMIT 999999999999999LL /* 15 digits */

typedef struct memo {
    const json_t *schema;
    int32_t rule;
} memo;

typedef struct sc {
    infer_gb *b;
    const json_t *root;
    bool strict;
    ft_err *err;
    ft_status st;
    memo *m;
    size_t n_m, cap_m;
    int depth;
} sc;

static int32_t bad(sc *c, ft_status code, const char *where, const char *fmt, const char *arg) {
    if (c->st == FT_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, fmt, arg ? arg : "");
        c->st = FT_ERR(c->err, code, "%s: %s", where, msg);
    }
    return infer_gb_rule(c->b); /* a placeholder: the compile fails */
}

/* ---------------------------------------------------------------- building blocks */

static int32_t ref(int32_t rule) { return INFER_G_REF(rule); }

static void lit(sc *c, infer_syms *s, const char *text) { infer_syms_lit(c->b, s, text, strlen(text)); }

static int32_t rule_of(sc *c, const infer_syms *s) {
    int32_t r = infer_gb_rule(c->b);
    infer_gb_alt(c->b, r, s->v, s->n);
    return r;
}

static int32_t lit_rule(sc *c, const char *text) {
    infer_syms s = {0};
    lit(c, &s, text);
    int32_t r = rule_of(c, &s);
    infer_syms_free(&s);
    return r;
}

static int32_t ws(sc *c) {
    int32_t *slot = infer_gb_cache(c->b, SLOT_WS);
    if (*slot < 0) {
        uint8_t set[32] = {0};
        for (const char *w = " \t\n\r"; *w; w++)
            set[(uint8_t)*w >> 3] |= (uint8_t)(1u << (*w & 7));
        int32_t t = infer_gb_set(c->b, set);
        *slot = infer_gb_repeat(c->b, &t, 1, 0, WS_MAX);
    }
    return ref(*slot);
}

static int32_t digit(sc *c) { return infer_gb_range(c->b, '0', '9'); }

/* digit terminals, n of them */
static void digits(sc *c, infer_syms *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        infer_syms_push(c->b, s, digit(c));
}

/* "text" with ws around a separator: ws , ws */
static void sep(sc *c, infer_syms *s, const char *text) {
    infer_syms_push(c->b, s, ws(c));
    lit(c, s, text);
    infer_syms_push(c->b, s, ws(c));
}

static int32_t string_rule(sc *c, int64_t min_len, int64_t max_len) {
    int32_t ch = ref(infer_json_char_rule(c->b));
    int32_t body = infer_gb_repeat(c->b, &ch, 1, min_len, max_len);
    infer_syms s = {0};
    lit(c, &s, "\"");
    infer_syms_push(c->b, &s, ref(body));
    lit(c, &s, "\"");
    int32_t r = rule_of(c, &s);
    infer_syms_free(&s);
    return r;
}

static int32_t any_string(sc *c) {
    int32_t *slot = infer_gb_cache(c->b, SLOT_STRING);
    if (*slot < 0)
        *slot = string_rule(c, 0, -1);
    return *slot;
}

/* -?(0|[1-9]\d{0,14})(\.\d{1,15})?([eE][+-]?\d{1,2})? */
static int32_t any_number(sc *c, bool integer) {
    int32_t *slot = infer_gb_cache(c->b, SLOT_NUMBER);
    if (!integer && *slot >= 0)
        return *slot;
    infer_gb *b = c->b;
    int32_t d = digit(c), nz = infer_gb_range(b, '1', '9');
    int32_t d14 = infer_gb_repeat(b, &d, 1, 0, 14);
    int32_t intpart = infer_gb_rule(b);
    int32_t zero = infer_gb_byte(b, '0');
    infer_gb_alt(b, intpart, &zero, 1);
    int32_t nzs[2] = {nz, ref(d14)};
    infer_gb_alt(b, intpart, nzs, 2);
    int32_t minus = infer_gb_repeat(b, (int32_t[]){infer_gb_byte(b, '-')}, 1, 0, 1);
    infer_syms s = {0};
    infer_syms_push(b, &s, ref(minus));
    infer_syms_push(b, &s, ref(intpart));
    if (!integer) {
        int32_t frac_digits = infer_gb_repeat(b, &d, 1, 1, 15);
        int32_t frac = infer_gb_repeat(b, (int32_t[]){infer_gb_byte(b, '.'), ref(frac_digits)}, 2, 0, 1);
        uint8_t pm[32] = {0};
        pm['+' >> 3] |= (uint8_t)(1u << ('+' & 7));
        pm['-' >> 3] |= (uint8_t)(1u << ('-' & 7));
        int32_t sign = infer_gb_repeat(b, (int32_t[]){infer_gb_set(b, pm)}, 1, 0, 1);
        int32_t exp_digits = infer_gb_repeat(b, &d, 1, 1, 2);
        uint8_t e[32] = {0};
        e['e' >> 3] |= (uint8_t)(1u << ('e' & 7));
        e['E' >> 3] |= (uint8_t)(1u << ('E' & 7));
        int32_t expo = infer_gb_repeat(b, (int32_t[]){infer_gb_set(b, e), ref(sign), ref(exp_digits)}, 3, 0, 1);
        infer_syms_push(b, &s, ref(frac));
        infer_syms_push(b, &s, ref(expo));
    }
    int32_t r = rule_of(c, &s);
    infer_syms_free(&s);
    if (!integer)
        *slot = r;
    return r;
}

static int32_t any_value(sc *c);

/* { ws } | { ws "key" ws : ws value (ws , ws "key" ws : ws value)* ws } */
static int32_t any_object(sc *c) {
    int32_t *slot = infer_gb_cache(c->b, SLOT_OBJECT);
    if (*slot >= 0)
        return *slot;
    infer_gb *b = c->b;
    int32_t r = infer_gb_rule(b);
    *slot = r;
    infer_syms member = {0}, more = {0}, s = {0};
    infer_syms_push(b, &member, ref(any_string(c)));
    sep(c, &member, ":");
    infer_syms_push(b, &member, ref(any_value(c)));
    sep(c, &more, ",");
    for (size_t i = 0; i < member.n; i++)
        infer_syms_push(b, &more, member.v[i]);
    int32_t rest = infer_gb_repeat(b, more.v, more.n, 0, -1);
    lit(c, &s, "{");
    infer_syms_push(b, &s, ws(c));
    lit(c, &s, "}");
    infer_gb_alt(b, r, s.v, s.n);
    s.n = 0;
    lit(c, &s, "{");
    infer_syms_push(b, &s, ws(c));
    for (size_t i = 0; i < member.n; i++)
        infer_syms_push(b, &s, member.v[i]);
    infer_syms_push(b, &s, ref(rest));
    infer_syms_push(b, &s, ws(c));
    lit(c, &s, "}");
    infer_gb_alt(b, r, s.v, s.n);
    infer_syms_free(&member);
    infer_syms_free(&more);
    infer_syms_free(&s);
    return r;
}

/* [ ws ] | [ ws item{min,max} separated by ws , ws  ws ] */
static int32_t array_of(sc *c, int32_t item, int64_t min, int64_t max) {
    infer_gb *b = c->b;
    int32_t r = infer_gb_rule(b);
    infer_syms s = {0}, more = {0};
    if (min <= 0) {
        lit(c, &s, "[");
        infer_syms_push(b, &s, ws(c));
        lit(c, &s, "]");
        infer_gb_alt(b, r, s.v, s.n);
        s.n = 0;
    }
    if (max != 0) {
        sep(c, &more, ",");
        infer_syms_push(b, &more, ref(item));
        int32_t rest = infer_gb_repeat(b, more.v, more.n, min > 1 ? min - 1 : 0, max < 0 ? -1 : max - 1);
        lit(c, &s, "[");
        infer_syms_push(b, &s, ws(c));
        infer_syms_push(b, &s, ref(item));
        infer_syms_push(b, &s, ref(rest));
        infer_syms_push(b, &s, ws(c));
        lit(c, &s, "]");
        infer_gb_alt(b, r, s.v, s.n);
    }
    infer_syms_free(&s);
    infer_syms_free(&more);
    return r;
}

static int32_t any_value(sc *c) {
    int32_t *slot = infer_gb_cache(c->b, SLOT_VALUE);
    if (*slot >= 0)
        return *slot;
    int32_t r = infer_gb_rule(c->b);
    *slot = r;
    int32_t alts[] = {ref(any_object(c)), ref(array_of(c, r, 0, -1)), ref(any_string(c)), ref(any_number(c, false)),
                      ref(lit_rule(c, "true")), ref(lit_rule(c, "false")), ref(lit_rule(c, "null"))};
    for (size_t i = 0; i < sizeof alts / sizeof alts[0]; i++)
        infer_gb_alt(c->b, r, &alts[i], 1);
    return r;
}

/* ---------------------------------------------------------------- integer ranges */

/* n-digit strings (leading zeros allowed) from lo to hi, both n digits: digit by digit, the
 * first digit's range split where the rest is not free */
static int32_t digits_between(sc *c, const char *lo, const char *hi, size_t n) {
    infer_gb *b = c->b;
    int32_t r = infer_gb_rule(b);
    infer_syms s = {0};
    if (n == 0) {
        infer_gb_alt(b, r, NULL, 0);
        return r;
    }
    if (lo[0] == hi[0]) {
        infer_syms_push(b, &s, infer_gb_byte(b, (uint8_t)lo[0]));
        infer_syms_push(b, &s, ref(digits_between(c, lo + 1, hi + 1, n - 1)));
        infer_gb_alt(b, r, s.v, s.n);
        infer_syms_free(&s);
        return r;
    }
    char nines[24], zeros[24];
    memset(nines, '9', n - 1);
    memset(zeros, '0', n - 1);
    bool lo_free = !memcmp(lo + 1, zeros, n - 1), hi_free = !memcmp(hi + 1, nines, n - 1);
    char a = lo_free ? lo[0] : (char)(lo[0] + 1), z = hi_free ? hi[0] : (char)(hi[0] - 1);
    if (!lo_free) {
        infer_syms_push(b, &s, infer_gb_byte(b, (uint8_t)lo[0]));
        infer_syms_push(b, &s, ref(digits_between(c, lo + 1, nines, n - 1)));
        infer_gb_alt(b, r, s.v, s.n);
        s.n = 0;
    }
    if (a <= z) {
        infer_syms_push(b, &s, infer_gb_range(b, (uint8_t)a, (uint8_t)z));
        digits(c, &s, n - 1);
        infer_gb_alt(b, r, s.v, s.n);
        s.n = 0;
    }
    if (!hi_free) {
        infer_syms_push(b, &s, infer_gb_byte(b, (uint8_t)hi[0]));
        infer_syms_push(b, &s, ref(digits_between(c, zeros, hi + 1, n - 1)));
        infer_gb_alt(b, r, s.v, s.n);
    }
    infer_syms_free(&s);
    return r;
}

/* decimal integers a..b (0 <= a <= b), without leading zeros */
static int32_t nonneg_range(sc *c, int64_t a, int64_t b) {
    int32_t r = infer_gb_rule(c->b);
    int64_t p = 1;
    for (size_t L = 1; L <= 15; L++, p *= 10) {
        int64_t lo = L == 1 ? 0 : p, hi = p * 10 - 1;
        if (lo < a)
            lo = a;
        if (hi > b)
            hi = b;
        if (lo > hi)
            continue;
        char ls[24], hs[24];
        snprintf(ls, sizeof ls, "%lld", (long long)lo);
        snprintf(hs, sizeof hs, "%lld", (long long)hi);
        int32_t x = ref(digits_between(c, ls, hs, L));
        infer_gb_alt(c->b, r, &x, 1);
    }
    return r;
}

/* integers lo..hi (lo <= hi, |both| <= INT_LIMIT) */
static int32_t int_range(sc *c, int64_t lo, int64_t hi) {
    int32_t r = infer_gb_rule(c->b);
    if (hi >= 0) {
        int32_t x = ref(nonneg_range(c, lo > 0 ? lo : 0, hi));
        infer_gb_alt(c->b, r, &x, 1);
    }
    if (lo < 0) {
        int32_t x[2] = {infer_gb_byte(c->b, '-'), ref(nonneg_range(c, hi < 0 ? -hi : 1, -lo))};
        infer_gb_alt(c->b, r, x, 2);
    }
    return r;
}

/* non-negative multiples of k (2..MAX_MULTIPLE_DFA) of at most 15 digits (positive ones only:
 * without "0"): the remainder automaton, one rule per (remainder, digits read) */
static int32_t multiples(sc *c, int64_t k, bool positive) {
    infer_gb *b = c->b;
    int32_t base = -1;
    for (int64_t i = 0; i < k * 15; i++) {
        int32_t r = infer_gb_rule(b);
        if (i == 0)
            base = r;
    }
    if (infer_gb_failed(b))
        return base;
    for (int64_t rem = 0; rem < k; rem++)
        for (int64_t len = 1; len <= 15; len++) {
            int32_t r = base + (int32_t)(rem * 15 + len - 1);
            if (rem == 0)
                infer_gb_alt(b, r, NULL, 0);
            if (len == 15)
                continue;
            for (int d = 0; d <= 9; d++) {
                int64_t to = (rem * 10 + d) % k;
                int32_t x[2] = {infer_gb_byte(b, (uint8_t)('0' + d)), ref(base + (int32_t)(to * 15 + len))};
                infer_gb_alt(b, r, x, 2);
            }
        }
    int32_t r = infer_gb_rule(b);
    if (!positive) {
        int32_t z = infer_gb_byte(b, '0');
        infer_gb_alt(b, r, &z, 1);
    }
    for (int d = 1; d <= 9; d++) {
        int32_t x[2] = {infer_gb_byte(b, (uint8_t)('0' + d)), ref(base + (int32_t)((d % k) * 15))};
        infer_gb_alt(b, r, x, 2);
    }
    return r;
}

/* ---------------------------------------------------------------- numbers with bounds */

typedef struct bounds {
    bool has_lo, has_hi, lo_excl, hi_excl;
    double lo, hi;
} bounds;

static bool number_of(const json_t *x, double *v) {
    if (!json_is_number(x))
        return false;
    *v = json_number_value(x);
    return isfinite(*v);
}

static bool read_bounds(sc *c, const json_t *s, const char *where, bounds *bd) {
    memset(bd, 0, sizeof *bd);
    double v;
    json_t *x;
    if ((x = json_object_get(s, "minimum"))) {
        if (!number_of(x, &v))
            return bad(c, FT_ERR_INVALID, where, "'minimum' must be a number%s", NULL), false;
        bd->has_lo = true, bd->lo = v;
    }
    if ((x = json_object_get(s, "maximum"))) {
        if (!number_of(x, &v))
            return bad(c, FT_ERR_INVALID, where, "'maximum' must be a number%s", NULL), false;
        bd->has_hi = true, bd->hi = v;
    }
    x = json_object_get(s, "exclusiveMinimum");
    if (json_is_boolean(x)) /* draft 4: a flag on minimum */
        bd->lo_excl = json_is_true(x) && bd->has_lo;
    else if (x) {
        if (!number_of(x, &v))
            return bad(c, FT_ERR_INVALID, where, "'exclusiveMinimum' must be a number%s", NULL), false;
        if (!bd->has_lo || v >= bd->lo)
            bd->has_lo = true, bd->lo = v, bd->lo_excl = true;
    }
    x = json_object_get(s, "exclusiveMaximum");
    if (json_is_boolean(x))
        bd->hi_excl = json_is_true(x) && bd->has_hi;
    else if (x) {
        if (!number_of(x, &v))
            return bad(c, FT_ERR_INVALID, where, "'exclusiveMaximum' must be a number%s", NULL), false;
        if (!bd->has_hi || v <= bd->hi)
            bd->has_hi = true, bd->hi = v, bd->hi_excl = true;
    }
    return true;
}

/* the integers within the bounds, clamped to 15 digits */
static void int_bounds(const bounds *bd, int64_t *lo, int64_t *hi) {
    double l = -(double)INT_LIMIT, h = (double)INT_LIMIT;
    if (bd->has_lo) {
        double x = ceil(bd->lo);
        if (bd->lo_excl && x == bd->lo)
            x += 1;
        if (x > l)
            l = x;
    }
    if (bd->has_hi) {
        double x = floor(bd->hi);
        if (bd->hi_excl && x == bd->hi)
            x -= 1;
        if (x < h)
            h = x;
    }
    *lo = l > (double)INT_LIMIT ? INT_LIMIT + 1 : (int64_t)l;
    *hi = h < -(double)INT_LIMIT ? -INT_LIMIT - 1 : (int64_t)h;
}

static int32_t integer_rule(sc *c, const json_t *s, const char *where) {
    bounds bd;
    if (!read_bounds(c, s, where, &bd))
        return infer_gb_rule(c->b);
    int64_t lo, hi;
    int_bounds(&bd, &lo, &hi);
    if (lo > hi)
        return bad(c, FT_ERR_INVALID, where, "the bounds admit no integer%s", NULL);
    json_t *mo = json_object_get(s, "multipleOf");
    double k = 1;
    if (mo && (!number_of(mo, &k) || k <= 0))
        return bad(c, FT_ERR_INVALID, where, "'multipleOf' must be a number above 0%s", NULL);
    if (k != floor(k) || k > (double)INT_LIMIT)
        return bad(c, FT_ERR_UNSUPPORTED, where, "'multipleOf' of an integer must be a whole number%s", NULL);
    int64_t K = (int64_t)k;
    if (K <= 1)
        return bd.has_lo || bd.has_hi ? int_range(c, lo, hi) : any_number(c, true);
    int64_t first = lo >= 0 ? (lo + K - 1) / K : -((-lo) / K), last = hi >= 0 ? hi / K : -((-hi + K - 1) / K);
    if (last - first + 1 <= MAX_ENUM) { /* few: list them */
        int32_t r = infer_gb_rule(c->b);
        for (int64_t q = first; q <= last; q++) {
            char t[32];
            snprintf(t, sizeof t, "%lld", (long long)(q * K));
            int32_t x = ref(lit_rule(c, t));
            infer_gb_alt(c->b, r, &x, 1);
        }
        if (first > last)
            return bad(c, FT_ERR_INVALID, where, "no multiple of 'multipleOf' lies within the bounds%s", NULL);
        return r;
    }
    if (bd.has_hi || (bd.has_lo && lo > 0) || K > MAX_MULTIPLE_DFA)
        return bad(c, FT_ERR_UNSUPPORTED, where,
                   "'multipleOf' is supported with at most 512 multiples within the bounds, or up to 100 without "
                   "maximum and with minimum at most 0%s", NULL);
    int32_t r = infer_gb_rule(c->b);
    int32_t x = ref(multiples(c, K, false));
    infer_gb_alt(c->b, r, &x, 1);
    if (!bd.has_lo) {
        int32_t y[2] = {infer_gb_byte(c->b, '-'), ref(multiples(c, K, true))};
        infer_gb_alt(c->b, r, y, 2);
    }
    return r;
}

static int32_t number_rule(sc *c, const json_t *s, const char *where) {
    json_t *mo = json_object_get(s, "multipleOf");
    if (mo) {
        double k;
        if (number_of(mo, &k) && k == floor(k))
            return integer_rule(c, s, where); /* whole multiples are integers */
        return bad(c, FT_ERR_UNSUPPORTED, where, "'multipleOf' of a number must be a whole number%s", NULL);
    }
    bounds bd;
    if (!read_bounds(c, s, where, &bd))
        return infer_gb_rule(c->b);
    if (!bd.has_lo && !bd.has_hi)
        return any_number(c, false);
    infer_gb *b = c->b;
    int32_t r = infer_gb_rule(b);
    bool any = false;
    int64_t lo, hi;
    int_bounds(&bd, &lo, &hi);
    if (lo <= hi) {
        int32_t x = ref(int_range(c, lo, hi));
        infer_gb_alt(b, r, &x, 1);
        any = true;
    }
    /* n.ddd (ddd not all zero) lies strictly inside (n, n+1): fine when [n, n+1] is within */
    int32_t d = digit(c), d13 = infer_gb_repeat(b, &d, 1, 0, 13);
    int32_t frac[3] = {infer_gb_byte(b, '.'), ref(d13), infer_gb_range(b, '1', '9')};
    int32_t frac_r = infer_gb_rule(b);
    infer_gb_alt(b, frac_r, frac, 3);
    double L = bd.has_lo ? bd.lo : -(double)INT_LIMIT, H = bd.has_hi ? bd.hi : (double)INT_LIMIT;
    double plo = fmax(0, ceil(L)), phi = fmin(floor(H) - 1, (double)INT_LIMIT);
    if (plo <= phi) {
        int32_t x[2] = {ref(nonneg_range(c, (int64_t)plo, (int64_t)phi)), ref(frac_r)};
        infer_gb_alt(b, r, x, 2);
        any = true;
    }
    double nlo = fmax(0, ceil(-H)), nhi = fmin(floor(-L) - 1, (double)INT_LIMIT);
    if (nlo <= nhi) {
        int32_t x[3] = {infer_gb_byte(b, '-'), ref(nonneg_range(c, (int64_t)nlo, (int64_t)nhi)), ref(frac_r)};
        infer_gb_alt(b, r, x, 3);
        any = true;
    }
    if (!any)
        return bad(c, FT_ERR_UNSUPPORTED, where,
                   "the bounds hold no integer and no whole unit [n, n+1], which is what ftune generates for "
                   "bounded numbers%s", NULL);
    return r;
}

/* ---------------------------------------------------------------- strings */

static const struct {
    const char *name, *re;
} formats[] = {
#define DATE "\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8]))"
#define TIME "(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)"
#define LABEL "[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?"
#define OCTET "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)"
#define DUR_T "T(?:\\d{1,4}H(?:\\d{1,4}M)?(?:\\d{1,4}S)?|\\d{1,4}M(?:\\d{1,4}S)?|\\d{1,4}S)"
    {"date-time", "^" DATE "T" TIME "$"},
    {"date", "^" DATE "$"},
    {"time", "^" TIME "$"},
    {"duration", "^P(?:(?:\\d{1,4}Y(?:\\d{1,4}M)?(?:\\d{1,4}D)?|\\d{1,4}M(?:\\d{1,4}D)?|\\d{1,4}D)(?:" DUR_T ")?|" DUR_T
                 "|\\d{1,4}W)$"},
    {"email", "^[a-zA-Z0-9_+-]{1,32}(?:\\.[a-zA-Z0-9_+-]{1,32}){0,2}@" LABEL "(?:\\." LABEL "){1,3}$"},
    {"hostname", "^" LABEL "(?:\\." LABEL "){0,3}$"},
    {"ipv4", "^" OCTET "(?:\\." OCTET "){3}$"},
    {"ipv6", "^[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}$"},
    {"uuid", "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},
    {"uri", "^https://" LABEL "(?:\\." LABEL "){1,3}(?:/[a-zA-Z0-9._~-]{0,32}){0,8}$"},
#undef DATE
#undef TIME
#undef LABEL
#undef OCTET
#undef DUR_T
};

static int32_t quoted(sc *c, int32_t body) {
    infer_syms s = {0};
    lit(c, &s, "\"");
    infer_syms_push(c->b, &s, ref(body));
    lit(c, &s, "\"");
    int32_t r = rule_of(c, &s);
    infer_syms_free(&s);
    return r;
}

static int32_t string_schema(sc *c, const json_t *s, const char *where) {
    json_t *mn = json_object_get(s, "minLength"), *mx = json_object_get(s, "maxLength");
    json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    if ((mn && !json_is_integer(mn)) || (mx && !json_is_integer(mx)))
        return bad(c, FT_ERR_INVALID, where, "'minLength' and 'maxLength' must be integers%s", NULL);
    int64_t min = mn ? json_integer_value(mn) : 0, max = mx ? json_integer_value(mx) : -1;
    if (min < 0 || (mx && max < min))
        return bad(c, FT_ERR_INVALID, where, "'minLength'/'maxLength' out of order or negative%s", NULL);
    if (min > MAX_LENGTH || max > MAX_LENGTH)
        return bad(c, FT_ERR_UNSUPPORTED, where, "string lengths above 10000 are not supported%s", NULL);
    if ((pat || fmt) && (mn || mx))
        return bad(c, FT_ERR_UNSUPPORTED, where, "'%s' together with 'minLength'/'maxLength' is not supported",
                   pat ? "pattern" : "format");
    if (pat && fmt)
        return bad(c, FT_ERR_UNSUPPORTED, where, "'pattern' together with 'format' is not supported%s", NULL);
    const char *re = NULL;
    if (fmt) {
        const char *f = json_string_value(fmt);
        if (!f)
            return bad(c, FT_ERR_INVALID, where, "'format' must be a string%s", NULL);
        for (size_t i = 0; i < sizeof formats / sizeof formats[0] && !re; i++)
            if (!strcmp(formats[i].name, f))
                re = formats[i].re;
        if (!re)
            return bad(c, FT_ERR_UNSUPPORTED, where,
                       "format '%s' is not supported (date-time, date, time, duration, email, hostname, ipv4, ipv6, "
                       "uuid, uri are)", f);
    } else if (pat) {
        re = json_string_value(pat);
        if (!re)
            return bad(c, FT_ERR_INVALID, where, "'pattern' must be a string%s", NULL);
    }
    if (!re)
        return !mn && !mx ? any_string(c) : string_rule(c, min, max);
    int32_t body;
    ft_err e;
    if (infer_regex_compile(c->b, re, &body, &e) != FT_OK)
        return bad(c, e.code, where, "%s", e.msg);
    return quoted(c, body);
}

/* ---------------------------------------------------------------- schemas */

static int32_t schema(sc *c, const json_t *s, const char *where);

/* A JSON Pointer ("#/$defs/a") within the document. */
static const json_t *resolve(const json_t *root, const char *p) {
    if (p[0] != '#')
        return NULL;
    p++;
    const json_t *cur = root;
    while (*p == '/') {
        p++;
        char tok[256];
        size_t n = 0;
        while (*p && *p != '/' && n + 1 < sizeof tok) {
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
                tok[n++] = p[1] == '0' ? '~' : '/';
                p += 2;
            } else {
                tok[n++] = *p++;
            }
        }
        tok[n] = 0;
        if (json_is_object(cur))
            cur = json_object_get(cur, tok);
        else if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(tok, &end, 10);
            cur = *end || !n ? NULL : json_array_get(cur, i);
        } else
            return NULL;
        if (!cur)
            return NULL;
    }
    return *p ? NULL : cur;
}

enum { T_NULL = 1, T_BOOL = 2, T_OBJECT = 4, T_ARRAY = 8, T_STRING = 16, T_INTEGER = 32, T_NUMBER = 64 };

static int type_bit(const char *t) {
    static const char *names[] = {"null", "boolean", "object", "array", "string", "integer", "number"};
    for (int i = 0; i < 7; i++)
        if (!strcmp(t, names[i]))
            return 1 << i;
    return 0;
}

static bool lit_has_type(const json_t *v, int types) {
    switch (json_typeof(v)) {
    case JSON_NULL: return types & T_NULL;
    case JSON_TRUE:
    case JSON_FALSE: return types & T_BOOL;
    case JSON_OBJECT: return types & T_OBJECT;
    case JSON_ARRAY: return types & T_ARRAY;
    case JSON_STRING: return types & T_STRING;
    case JSON_INTEGER: return types & (T_INTEGER | T_NUMBER);
    case JSON_REAL: {
        double x = json_real_value(v);
        return (types & T_NUMBER) || ((types & T_INTEGER) && x == floor(x));
    }
    }
    return false;
}

static void where_child(char *out, size_t cap, const char *where, const char *k1, const char *k2) {
    if (k2)
        snprintf(out, cap, "%s/%s/%s", where, k1, k2);
    else
        snprintf(out, cap, "%s/%s", where, k1);
}

static int32_t object_schema(sc *c, const json_t *s, const char *where) {
    infer_gb *b = c->b;
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return bad(c, FT_ERR_INVALID, where, "'properties' must be an object%s", NULL);
    if (req && !json_is_array(req))
        return bad(c, FT_ERR_INVALID, where, "'required' must be a list of names%s", NULL);
    size_t n_req = req ? json_array_size(req) : 0;
    for (size_t i = 0; i < n_req; i++)
        if (!json_is_string(json_array_get(req, i)))
            return bad(c, FT_ERR_INVALID, where, "'required' must be a list of names%s", NULL);
    if (c->strict) {
        if (!json_is_false(addl))
            return bad(c, FT_ERR_INVALID, where,
                       "strict mode: 'additionalProperties' must be given and false (or set \"strict\": false)%s",
                       NULL);
        const char *k;
        json_t *v;
        if (props)
            json_object_foreach(props, k, v) {
                bool listed = false;
                for (size_t i = 0; i < n_req && !listed; i++)
                    listed = !strcmp(json_string_value(json_array_get(req, i)), k);
                if (!listed)
                    return bad(c, FT_ERR_INVALID, where,
                               "strict mode: every property must be in 'required' ('%s' is not); make it nullable "
                               "(\"type\": [..., \"null\"]) to leave it empty", k);
            }
    }
    /* properties, then required names without a schema of their own (any value) */
    size_t n = props ? json_object_size(props) : 0, cap = n + n_req;
    if (!props && !n_req && !json_is_false(addl))
        return any_object(c);
    const char **keys = ft_calloc(cap ? cap : 1, sizeof *keys);
    int32_t *vals = ft_calloc(cap ? cap : 1, sizeof *vals);
    bool *required = ft_calloc(cap ? cap : 1, sizeof *required);
    if (!keys || !vals || !required) {
        ft_free(keys), ft_free(vals), ft_free(required);
        c->st = FT_ERR(c->err, FT_ERR_NOMEM, "out of memory");
        return infer_gb_rule(b);
    }
    size_t k = 0;
    const char *key;
    json_t *v;
    if (props)
        json_object_foreach(props, key, v) {
            char w[512];
            where_child(w, sizeof w, where, "properties", key);
            keys[k] = key;
            vals[k] = schema(c, v, w);
            for (size_t i = 0; i < n_req; i++)
                required[k] |= !strcmp(json_string_value(json_array_get(req, i)), key);
            k++;
        }
    for (size_t i = 0; i < n_req; i++) {
        const char *name = json_string_value(json_array_get(req, i));
        bool known = false;
        for (size_t j = 0; j < k && !known; j++)
            known = !strcmp(keys[j], name);
        if (!known) {
            keys[k] = name;
            vals[k] = any_value(c);
            required[k++] = true;
        }
    }
    n = k;
    /* S(i, first): the members from i on, in order; an optional one may be left out */
    int32_t *S = ft_malloc((2 * n + 2) * sizeof *S);
    if (!S) {
        ft_free(keys), ft_free(vals), ft_free(required);
        c->st = FT_ERR(c->err, FT_ERR_NOMEM, "out of memory");
        return infer_gb_rule(b);
    }
    for (size_t i = 0; i < 2 * n + 2; i++)
        S[i] = infer_gb_rule(b);
    infer_gb_alt(b, S[2 * n], NULL, 0);
    infer_gb_alt(b, S[2 * n + 1], NULL, 0);
    for (size_t i = n; i-- > 0;) {
        json_t *ks = json_string(keys[i]);
        char *kt = ks ? json_dumps(ks, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        json_decref(ks);
        if (!kt) {
            c->st = FT_ERR(c->err, FT_ERR_NOMEM, "out of memory");
            break;
        }
        for (int first = 0; first < 2; first++) {
            infer_syms m = {0};
            if (!first)
                sep(c, &m, ",");
            lit(c, &m, kt);
            sep(c, &m, ":");
            infer_syms_push(b, &m, ref(vals[i]));
            infer_syms_push(b, &m, ref(S[2 * (i + 1)])); /* not first any more */
            int32_t r = S[2 * i + (size_t)first];
            infer_gb_alt(b, r, m.v, m.n);
            if (!required[i]) {
                int32_t skip = ref(S[2 * (i + 1) + (size_t)first]);
                infer_gb_alt(b, r, &skip, 1);
            }
            infer_syms_free(&m);
        }
        free(kt);
    }
    infer_syms o = {0};
    lit(c, &o, "{");
    infer_syms_push(b, &o, ws(c));
    infer_syms_push(b, &o, ref(S[1]));
    infer_syms_push(b, &o, ws(c));
    lit(c, &o, "}");
    int32_t r = rule_of(c, &o);
    infer_syms_free(&o);
    ft_free(S), ft_free(keys), ft_free(vals), ft_free(required);
    return r;
}

static int32_t array_schema(sc *c, const json_t *s, const char *where) {
    json_t *items = json_object_get(s, "items"), *mn = json_object_get(s, "minItems"), *mx = json_object_get(s, "maxItems");
    if ((mn && !json_is_integer(mn)) || (mx && !json_is_integer(mx)))
        return bad(c, FT_ERR_INVALID, where, "'minItems' and 'maxItems' must be integers%s", NULL);
    int64_t min = mn ? json_integer_value(mn) : 0, max = mx ? json_integer_value(mx) : -1;
    if (min < 0 || (mx && max < min))
        return bad(c, FT_ERR_INVALID, where, "'minItems'/'maxItems' out of order or negative%s", NULL);
    if (min > MAX_LENGTH || max > MAX_LENGTH)
        return bad(c, FT_ERR_UNSUPPORTED, where, "array lengths above 10000 are not supported%s", NULL);
    if (json_is_true(json_object_get(s, "uniqueItems")) && (max < 0 || max > 1))
        return bad(c, FT_ERR_UNSUPPORTED, where, "'uniqueItems' is not supported%s", NULL);
    if (json_is_false(items)) {
        if (min > 0)
            return bad(c, FT_ERR_INVALID, where, "'items': false with 'minItems' admits no array%s", NULL);
        max = 0;
    }
    char w[512];
    where_child(w, sizeof w, where, "items", NULL);
    int32_t item = items && !json_is_boolean(items) ? schema(c, items, w) : any_value(c);
    return array_of(c, item, min, max);
}

/* Keywords that constrain values and are not supported. */
static const char *refused[] = {"oneOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
                                "dependencies", "patternProperties", "propertyNames", "minProperties",
                                "maxProperties", "unevaluatedProperties", "unevaluatedItems", "contains",
                                "minContains", "maxContains", "prefixItems", "additionalItems", "$dynamicRef",
                                "$recursiveRef", NULL};

static int32_t schema_body(sc *c, const json_t *s, const char *where, int32_t r) {
    infer_gb *b = c->b;
    for (int i = 0; refused[i]; i++)
        if (json_object_get(s, refused[i]))
            return bad(c, FT_ERR_UNSUPPORTED, where, "'%s' is not supported in response_format schemas%s",
                       refused[i]), r;
    json_t *x;
    if ((x = json_object_get(s, "$ref"))) {
        const char *p = json_string_value(x);
        const json_t *t = p ? resolve(c->root, p) : NULL;
        if (!t)
            return bad(c, FT_ERR_UNSUPPORTED, where,
                       "'$ref' must point into this schema ('#', '#/$defs/name'); '%s' does not", p), r;
        int32_t y = ref(schema(c, t, p));
        infer_gb_alt(b, r, &y, 1);
        return r;
    }
    if ((x = json_object_get(s, "allOf"))) {
        if (!json_is_array(x) || json_array_size(x) != 1)
            return bad(c, FT_ERR_UNSUPPORTED, where, "'allOf' is supported with one schema only%s", NULL), r;
        char w[512];
        where_child(w, sizeof w, where, "allOf", "0");
        int32_t y = ref(schema(c, json_array_get(x, 0), w));
        infer_gb_alt(b, r, &y, 1);
        return r;
    }
    if ((x = json_object_get(s, "anyOf"))) {
        if (!json_is_array(x) || !json_array_size(x))
            return bad(c, FT_ERR_INVALID, where, "'anyOf' must be a non-empty list of schemas%s", NULL), r;
        size_t i;
        json_t *v;
        json_array_foreach(x, i, v) {
            char w[512], idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            where_child(w, sizeof w, where, "anyOf", idx);
            int32_t y = ref(schema(c, v, w));
            infer_gb_alt(b, r, &y, 1);
        }
        return r;
    }
    /* the types: given, or what the keywords speak of, or any */
    int types = 0;
    json_t *type = json_object_get(s, "type");
    if (json_is_string(type)) {
        if (!(types = type_bit(json_string_value(type))))
            return bad(c, FT_ERR_INVALID, where, "unknown type '%s'", json_string_value(type)), r;
    } else if (json_is_array(type)) {
        size_t i;
        json_t *v;
        json_array_foreach(type, i, v) {
            int t = json_is_string(v) ? type_bit(json_string_value(v)) : 0;
            if (!t)
                return bad(c, FT_ERR_INVALID, where, "'type' lists an unknown type%s", NULL), r;
            types |= t;
        }
    } else if (type) {
        return bad(c, FT_ERR_INVALID, where, "'type' must be a type name or a list of them%s", NULL), r;
    }
    json_t *en = json_object_get(s, "enum"), *cst = json_object_get(s, "const");
    if (en || cst) {
        if (en && (!json_is_array(en) || !json_array_size(en)))
            return bad(c, FT_ERR_INVALID, where, "'enum' must be a non-empty list%s", NULL), r;
        if (en && json_array_size(en) > MAX_ENUM)
            return bad(c, FT_ERR_UNSUPPORTED, where, "at most 512 enum values%s", NULL), r;
        size_t n = cst ? 1 : json_array_size(en), kept = 0;
        for (size_t i = 0; i < n; i++) {
            json_t *v = cst ? cst : json_array_get(en, i);
            if (types && !lit_has_type(v, types))
                continue;
            if (cst && en) { /* both: the const, if the enum has it */
                bool in = false;
                for (size_t j = 0; j < json_array_size(en) && !in; j++)
                    in = json_equal(json_array_get(en, j), cst);
                if (!in)
                    continue;
            }
            char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            if (!t) {
                c->st = FT_ERR(c->err, FT_ERR_NOMEM, "out of memory");
                return r;
            }
            int32_t y = ref(lit_rule(c, t));
            free(t);
            infer_gb_alt(b, r, &y, 1);
            kept++;
        }
        if (!kept)
            return bad(c, FT_ERR_INVALID, where, "no value of 'enum'/'const' has the schema's type%s", NULL), r;
        return r;
    }
    if (!types) {
        static const struct {
            const char *kw;
            int t;
        } implied[] = {{"properties", T_OBJECT}, {"required", T_OBJECT}, {"additionalProperties", T_OBJECT},
                       {"items", T_ARRAY}, {"minItems", T_ARRAY}, {"maxItems", T_ARRAY},
                       {"pattern", T_STRING}, {"format", T_STRING}, {"minLength", T_STRING},
                       {"maxLength", T_STRING}, {"minimum", T_NUMBER}, {"maximum", T_NUMBER},
                       {"exclusiveMinimum", T_NUMBER}, {"exclusiveMaximum", T_NUMBER}, {"multipleOf", T_NUMBER}};
        for (size_t i = 0; i < sizeof implied / sizeof implied[0]; i++)
            if (json_object_get(s, implied[i].kw))
                types |= implied[i].t;
        if (!types) {
            int32_t y = ref(any_value(c));
            infer_gb_alt(b, r, &y, 1);
            return r;
        }
    }
    if ((types & T_NUMBER) && (types & T_INTEGER))
        types &= ~T_INTEGER;
    if (types & T_NULL) {
        int32_t y = ref(lit_rule(c, "null"));
        infer_gb_alt(b, r, &y, 1);
    }
    if (types & T_BOOL) {
        int32_t y = ref(lit_rule(c, "true")), z = ref(lit_rule(c, "false"));
        infer_gb_alt(b, r, &y, 1);
        infer_gb_alt(b, r, &z, 1);
    }
    int32_t y;
    if (types & T_OBJECT)
        y = ref(object_schema(c, s, where)), infer_gb_alt(b, r, &y, 1);
    if (types & T_ARRAY)
        y = ref(array_schema(c, s, where)), infer_gb_alt(b, r, &y, 1);
    if (types & T_STRING)
        y = ref(string_schema(c, s, where)), infer_gb_alt(b, r, &y, 1);
    if (types & T_INTEGER)
        y = ref(integer_rule(c, s, where)), infer_gb_alt(b, r, &y, 1);
    if (types & T_NUMBER)
        y = ref(number_rule(c, s, where)), infer_gb_alt(b, r, &y, 1);
    return r;
}

/* The rule of a schema: one per schema object, made before its body so that references to it
 * (recursion) find it. */
static int32_t schema(sc *c, const json_t *s, const char *where) {
    if (c->st != FT_OK)
        return 0;
    for (size_t i = 0; i < c->n_m; i++)
        if (c->m[i].schema == s)
            return c->m[i].rule;
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0))
        return any_value(c);
    if (json_is_false(s))
        return bad(c, FT_ERR_INVALID, where, "the schema false admits no value%s", NULL);
    if (!json_is_object(s))
        return bad(c, FT_ERR_INVALID, where, "a schema must be an object%s", NULL);
    if (c->depth >= MAX_DEPTH)
        return bad(c, FT_ERR_UNSUPPORTED, where, "the schema nests too deep%s", NULL);
    if (c->n_m == c->cap_m) {
        size_t cap = c->cap_m ? c->cap_m * 2 : 32;
        memo *m = ft_realloc(c->m, cap * sizeof *m);
        if (!m) {
            c->st = FT_ERR(c->err, FT_ERR_NOMEM, "out of memory");
            return 0;
        }
        c->m = m, c->cap_m = cap;
    }
    int32_t r = infer_gb_rule(c->b);
    c->m[c->n_m++] = (memo){s, r};
    c->depth++;
    schema_body(c, s, where, r);
    c->depth--;
    return r;
}

ft_status infer_schema_compile(const json_t *s, bool strict, infer_grammar **out, ft_err *err) {
    *out = NULL;
    sc c = {.b = infer_gb_new(), .root = s, .strict = strict, .err = err, .st = FT_OK};
    if (!c.b)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    int32_t root;
    if (!s) {
        root = any_object(&c);
    } else {
        if (strict) {
            json_t *t = json_object_get(s, "type");
            if (!json_is_string(t) || strcmp(json_string_value(t), "object") != 0)
                bad(&c, FT_ERR_INVALID, "#", "strict mode: the root schema must be of type object%s", NULL);
        }
        root = schema(&c, s, "#");
    }
    ft_status st = c.st;
    if (st == FT_OK)
        st = infer_grammar_build(c.b, root, out, err);
    ft_free(c.m);
    infer_gb_free(c.b);
    return st;
}
