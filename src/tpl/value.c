/* tpl/value.c: the value model of the Jinja engine: arena, strings, Python's truthiness,
 * equality and ordering, str()/repr() printing (floats as Python's shortest repr), and
 * json.dumps(ensure_ascii=False) as transformers' tojson filter calls it. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tpl_int.h"

/* ---------------------------------------------------------------- arena */

struct tchunk {
    tchunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
};

void *tarena_alloc(tarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    tchunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 32768 ? n : 65536 - sizeof(tchunk);
        if (a->cap_total && a->used_total + cap > a->cap_total) {
            a->failed = true;
            return NULL;
        }
        c = ft_malloc(sizeof(tchunk) + cap);
        if (!c) {
            a->failed = true;
            return NULL;
        }
        c->used = 0;
        c->cap = cap;
        /* A big allocation gets its own chunk behind the current one, so the current one's
         * free space stays usable. */
        if (a->head && n > 32768) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
        a->used_total += cap;
    }
    void *p = c->mem + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void tarena_free(tarena *a) {
    tchunk *c = a->head;
    while (c) {
        tchunk *nx = c->next;
        ft_free(c);
        c = nx;
    }
    a->head = NULL;
    a->used_total = 0;
}

void *ralloc(rstate *r, size_t n) {
    void *p = tarena_alloc(&r->mem, n);
    if (!p)
        tpl_fail(r, NULL, FT_ERR_LIMIT, "template render needs more than %zu bytes of memory (limit)",
                 r->lim.max_memory);
    return p;
}

void sb_put(rstate *r, sbuf *b, const char *s, size_t n) {
    if (n == 0)
        return;
    if (b->n + n > r->lim.max_output)
        tpl_fail(r, NULL, FT_ERR_LIMIT, "template output or string over %zu bytes (limit)", r->lim.max_output);
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n)
            cap *= 2;
        char *p = ralloc(r, cap);
        if (b->n)
            memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

void sb_putc(rstate *r, sbuf *b, char c) { sb_put(r, b, &c, 1); }

void sb_printf(rstate *r, sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_put(r, b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void sb_cp(rstate *r, sbuf *b, uint32_t c) {
    char tmp[4];
    if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        sb_putc(r, b, (char)c); /* an invalid byte carried through */
        return;
    }
    sb_put(r, b, tmp, (size_t)ft_utf8_encode(c, tmp));
}

/* ---------------------------------------------------------------- UTF-8 and Python character classes */

size_t u8_next(const char *p, size_t n, size_t i) {
    uint32_t cp;
    int k = ft_utf8_decode(p + i, n - i, &cp);
    return i + (k > 0 ? (size_t)k : 1);
}

uint32_t u8_cp(const char *p, size_t n, size_t i) {
    uint32_t cp;
    int k = ft_utf8_decode(p + i, n - i, &cp);
    return k > 0 ? cp : (uint8_t)p[i];
}

size_t u8_len(const char *p, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i = u8_next(p, n, i))
        c++;
    return c;
}

bool py_isspace(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Simple case mappings of the scripts chat data uses most (Latin-1, Latin Extended-A, Greek,
 * Cyrillic, fullwidth Latin); other characters map to themselves. */
uint32_t py_upper(uint32_t c) {
    if (c >= 'a' && c <= 'z')
        return c - 32;
    if (c < 0x80)
        return c;
    if (c == 0xb5)
        return 0x39c;
    if ((c >= 0xe0 && c <= 0xfe && c != 0xf7))
        return c - 32;
    if (c == 0xff)
        return 0x178;
    if (c >= 0x100 && c <= 0x17f && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17f) {
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
        if (odd_upper)
            return (c & 1) ? c : c - 1;
        return (c & 1) ? c - 1 : c;
    }
    if (c == 0x131)
        return 'I';
    if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2)
        return c - 32;
    if (c == 0x3c2)
        return 0x3a3;
    if (c == 0x3ac)
        return 0x386;
    if (c >= 0x3ad && c <= 0x3af)
        return c - 37;
    if (c == 0x3cc)
        return 0x38c;
    if (c == 0x3cd || c == 0x3ce)
        return c - 63;
    if (c >= 0x430 && c <= 0x44f)
        return c - 32;
    if (c >= 0x450 && c <= 0x45f)
        return c - 80;
    if (((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x4ff)) && (c & 1))
        return c - 1;
    if (c >= 0x4c1 && c <= 0x4ce && !(c & 1))
        return c - 1;
    if (c >= 0xff41 && c <= 0xff5a)
        return c - 32;
    return c;
}

uint32_t py_lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z')
        return c + 32;
    if (c < 0x80)
        return c;
    if (c >= 0xc0 && c <= 0xde && c != 0xd7)
        return c + 32;
    if (c == 0x178)
        return 0xff;
    if (c >= 0x100 && c <= 0x17f && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17f) {
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
        if (odd_upper)
            return (c & 1) ? c + 1 : c;
        return (c & 1) ? c : c + 1;
    }
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
        return c + 32;
    if (c == 0x386)
        return 0x3ac;
    if (c >= 0x388 && c <= 0x38a)
        return c + 37;
    if (c == 0x38c)
        return 0x3cc;
    if (c == 0x38e || c == 0x38f)
        return c + 63;
    if (c >= 0x410 && c <= 0x42f)
        return c + 32;
    if (c >= 0x400 && c <= 0x40f)
        return c + 80;
    if (((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x4ff)) && !(c & 1))
        return c + 1;
    if (c >= 0x4c1 && c <= 0x4ce && (c & 1))
        return c + 1;
    if (c >= 0xff21 && c <= 0xff3a)
        return c + 32;
    return c;
}

bool py_isalpha(uint32_t c) {
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (py_upper(c) != c || py_lower(c) != c)
        return true;
    /* Letters without case (CJK, Arabic, Hebrew, Devanagari, Thai, Hangul, kana) */
    return (c >= 0x5d0 && c <= 0x5ea) || (c >= 0x620 && c <= 0x64a) || (c >= 0x905 && c <= 0x939) ||
           (c >= 0xe01 && c <= 0xe30) || (c >= 0x3041 && c <= 0x30ff) || (c >= 0x4e00 && c <= 0x9fff) ||
           (c >= 0xac00 && c <= 0xd7a3) || c == 0xdf || c == 0xaa || c == 0xba;
}

/* Python's str.isprintable for repr(): approximated by the general categories C* and Z* that
 * chat text meets (controls, format characters such as ZWJ, separators, private use). */
static bool py_isprintable(uint32_t c) {
    if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0xa0) || c == 0xad)
        return false;
    if (c == 0x61c || c == 0x1680 || c == 0x180e || (c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f) ||
        (c >= 0x205f && c <= 0x206f) || c == 0x3000 || (c >= 0xd800 && c <= 0xf8ff) || c == 0xfeff ||
        (c >= 0xfff0 && c <= 0xfffb) || c == 0xfffe || c == 0xffff || (c >= 0xe0000 && c <= 0xe007f) ||
        c >= 0xf0000)
        return false;
    return true;
}

/* ---------------------------------------------------------------- constructors */

tv tv_cstr(const char *s) { return tv_str(s, strlen(s)); }

tv tv_strdup(rstate *r, const char *p, size_t n) {
    char *d = ralloc(r, n + 1);
    if (n)
        memcpy(d, p, n);
    return tv_str(d, n);
}

tv tv_undef_msg(rstate *r, const char *fmt, ...) {
    char tmp[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    tv v = tv_strdup(r, tmp, n < 0 ? 0 : ((size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1));
    v.t = TV_UNDEF;
    return v;
}

tv tv_list_new(rstate *r, size_t n, tl_kind kind) {
    tlist *l = ralloc(r, sizeof *l);
    if (n > SIZE_MAX / sizeof(tv) / 2)
        tpl_fail(r, NULL, FT_ERR_LIMIT, "list too large");
    l->v = n ? ralloc(r, n * sizeof(tv)) : NULL;
    l->n = n;
    l->kind = (uint8_t)kind;
    return (tv){.t = TV_LIST, .l = l};
}

tv tv_dict_new(rstate *r) {
    tdict *d = ralloc(r, sizeof *d);
    return (tv){.t = TV_DICT, .d = d};
}

tv *tdict_get_str(tdict *d, const char *k, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == TV_STR && d->k[i].s.n == n && memcmp(d->k[i].s.p, k, n) == 0)
            return &d->v[i];
    return NULL;
}

tv *tdict_get(tdict *d, tv key) {
    if (key.t == TV_STR)
        return tdict_get_str(d, key.s.p, key.s.n);
    for (size_t i = 0; i < d->n; i++)
        if (tv_eq(d->k[i], key))
            return &d->v[i];
    return NULL;
}

void tdict_set(rstate *r, tdict *d, tv key, tv val) {
    tv *p = tdict_get(d, key);
    if (p) {
        *p = val;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        tv *k = ralloc(r, cap * sizeof(tv)), *v = ralloc(r, cap * sizeof(tv));
        if (d->n) {
            memcpy(k, d->k, d->n * sizeof(tv));
            memcpy(v, d->v, d->n * sizeof(tv));
        }
        d->k = k;
        d->v = v;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n] = val;
    d->n++;
}

tv tv_from_json(rstate *r, const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_NULL:
        return tv_none();
    case JSON_TRUE:
        return tv_bool(true);
    case JSON_FALSE:
        return tv_bool(false);
    case JSON_INTEGER:
        return tv_int((int64_t)json_integer_value(j));
    case JSON_REAL:
        return tv_float(json_real_value(j));
    case JSON_STRING:
        return tv_str(json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        tv l = tv_list_new(r, json_array_size(j), LK_LIST);
        for (size_t i = 0; i < l.l->n; i++)
            l.l->v[i] = tv_from_json(r, json_array_get(j, i));
        return l;
    }
    case JSON_OBJECT: {
        tv d = tv_dict_new(r);
        const char *k;
        json_t *v;
        /* jansson keeps insertion order when iterating with json_object_foreach (>= 2.11
         * preserves order); Python dicts do too. */
        json_object_foreach((json_t *)j, k, v) {
            /* JSON object keys are unique: append without the linear search of tdict_set */
            tv key = tv_cstr(k), val = tv_from_json(r, v);
            if (d.d->n == d.d->cap) {
                size_t cap = d.d->cap ? d.d->cap * 2 : 8;
                tv *nk = ralloc(r, cap * sizeof(tv)), *nv = ralloc(r, cap * sizeof(tv));
                if (d.d->n) {
                    memcpy(nk, d.d->k, d.d->n * sizeof(tv));
                    memcpy(nv, d.d->v, d.d->n * sizeof(tv));
                }
                d.d->k = nk;
                d.d->v = nv;
                d.d->cap = cap;
            }
            d.d->k[d.d->n] = key;
            d.d->v[d.d->n++] = val;
        }
        return d;
    }
    }
    return tv_undef();
}

/* ---------------------------------------------------------------- truthiness, equality, order */

bool tv_truthy(tv v) {
    switch (v.t) {
    case TV_UNDEF:
    case TV_NONE:
        return false;
    case TV_BOOL:
        return v.b;
    case TV_INT:
        return v.i != 0;
    case TV_FLOAT:
        return v.f != 0.0;
    case TV_STR:
        return v.s.n != 0;
    case TV_LIST:
        return v.l->kind == LK_GEN ? true : v.l->n != 0;
    case TV_DICT:
        return v.d->n != 0;
    default:
        return true;
    }
}

bool tv_is_num(tv v) { return v.t == TV_BOOL || v.t == TV_INT || v.t == TV_FLOAT; }

double tv_as_double(tv v) {
    return v.t == TV_FLOAT ? v.f : v.t == TV_INT ? (double)v.i : v.t == TV_BOOL ? (double)v.b : 0.0;
}

static bool num_eq(tv a, tv b) {
    if (a.t == TV_FLOAT || b.t == TV_FLOAT)
        return tv_as_double(a) == tv_as_double(b);
    int64_t x = a.t == TV_BOOL ? a.b : a.i, y = b.t == TV_BOOL ? b.b : b.i;
    return x == y;
}

static bool list_like_same(tv a, tv b) {
    /* list == list, tuple == tuple; a list never equals a tuple in Python */
    int ka = a.l->kind == LK_TUPLE, kb = b.l->kind == LK_TUPLE;
    return ka == kb && a.l->kind != LK_GEN && b.l->kind != LK_GEN && a.l->kind <= LK_TUPLE && b.l->kind <= LK_TUPLE;
}

/* Values nest as deep as a template loop makes them; past this depth equality and ordering give
 * up (false / unordered) where Python would raise RecursionError, instead of overflowing the
 * C stack. */
enum { MAX_COMPARE_DEPTH = 400 };
static bool eq_d(tv a, tv b, int depth);
static int cmp_d(tv a, tv b, int depth);

bool tv_eq(tv a, tv b) { return eq_d(a, b, 0); }
int tv_cmp(tv a, tv b) { return cmp_d(a, b, 0); }

static bool eq_d(tv a, tv b, int depth) {
    if (depth > MAX_COMPARE_DEPTH)
        return false;
    if (tv_is_num(a) && tv_is_num(b))
        return num_eq(a, b);
    if (a.t != b.t)
        return false;
    switch (a.t) {
    case TV_UNDEF:
    case TV_NONE:
        return true;
    case TV_STR:
        return a.s.n == b.s.n && memcmp(a.s.p, b.s.p, a.s.n) == 0;
    case TV_LIST:
        if (a.l == b.l)
            return true;
        if (!list_like_same(a, b) || a.l->n != b.l->n)
            return false;
        for (size_t i = 0; i < a.l->n; i++)
            if (!eq_d(a.l->v[i], b.l->v[i], depth + 1))
                return false;
        return true;
    case TV_DICT:
        if (a.d->n != b.d->n)
            return false;
        for (size_t i = 0; i < a.d->n; i++) {
            tv *o = tdict_get(b.d, a.d->k[i]);
            if (!o || !eq_d(a.d->v[i], *o, depth + 1))
                return false;
        }
        return true;
    case TV_NS:
        return a.d == b.d;
    case TV_MACRO:
        return a.m == b.m;
    case TV_FUNC:
        return a.fn == b.fn;
    case TV_LOOP:
        return a.loop == b.loop;
    }
    return false;
}

static int cmp_d(tv a, tv b, int depth) {
    if (depth > MAX_COMPARE_DEPTH)
        return 2;
    if (tv_is_num(a) && tv_is_num(b)) {
        if (a.t == TV_FLOAT || b.t == TV_FLOAT) {
            double x = tv_as_double(a), y = tv_as_double(b);
            return x < y ? -1 : x > y ? 1 : 0; /* NaN compares as equal here: neither < nor > */
        }
        int64_t x = a.t == TV_BOOL ? a.b : a.i, y = b.t == TV_BOOL ? b.b : b.i;
        return x < y ? -1 : x > y;
    }
    if (a.t == TV_STR && b.t == TV_STR) {
        /* UTF-8 byte order is code point order */
        size_t m = a.s.n < b.s.n ? a.s.n : b.s.n;
        int c = m ? memcmp(a.s.p, b.s.p, m) : 0;
        if (c)
            return c < 0 ? -1 : 1;
        return a.s.n < b.s.n ? -1 : a.s.n > b.s.n;
    }
    if (a.t == TV_LIST && b.t == TV_LIST && list_like_same(a, b)) {
        size_t m = a.l->n < b.l->n ? a.l->n : b.l->n;
        for (size_t i = 0; i < m; i++) {
            if (eq_d(a.l->v[i], b.l->v[i], depth + 1))
                continue;
            return cmp_d(a.l->v[i], b.l->v[i], depth + 1);
        }
        return a.l->n < b.l->n ? -1 : a.l->n > b.l->n;
    }
    return 2;
}

const char *tv_type_name(tv v) {
    switch (v.t) {
    case TV_UNDEF:
        return "Undefined";
    case TV_NONE:
        return "NoneType";
    case TV_BOOL:
        return "bool";
    case TV_INT:
        return "int";
    case TV_FLOAT:
        return "float";
    case TV_STR:
        return "str";
    case TV_LIST:
        switch (v.l->kind) {
        case LK_TUPLE:
            return "tuple";
        case LK_ITEMS:
            return "dict_items";
        case LK_KEYS:
            return "dict_keys";
        case LK_VALUES:
            return "dict_values";
        case LK_GEN:
            return "generator";
        }
        return "list";
    case TV_DICT:
        return "dict";
    case TV_NS:
        return "Namespace";
    case TV_MACRO:
        return "Macro";
    case TV_FUNC:
        return "builtin_function_or_method";
    case TV_LOOP:
        return "LoopContext";
    }
    return "object";
}

/* ---------------------------------------------------------------- printing */

/* Python's repr(float): the shortest digits that round-trip, fixed notation for exponents in
 * [-4, 16), scientific otherwise, always with a ".0" or an exponent. */
void float_repr(double f, char *buf, size_t cap) {
    if (isnan(f)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    int prec;
    for (prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, f);
        if (strtod(e, NULL) == f)
            break;
    }
    /* e = "-d.ddde+XX" */
    const char *p = e;
    bool neg = *p == '-';
    if (neg)
        p++;
    char digits[40];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    int decpt = exp10 + 1;
    char out[64];
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -decpt; i++)
                out[o++] = '0';
            memcpy(out + o, digits, nd);
            o += nd;
        } else if ((size_t)decpt < nd) {
            memcpy(out + o, digits, (size_t)decpt);
            o += (size_t)decpt;
            out[o++] = '.';
            memcpy(out + o, digits + decpt, nd - (size_t)decpt);
            o += nd - (size_t)decpt;
        } else {
            memcpy(out + o, digits, nd);
            o += nd;
            for (size_t i = nd; i < (size_t)decpt; i++)
                out[o++] = '0';
            out[o++] = '.';
            out[o++] = '0';
        }
        out[o] = 0;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, nd - 1);
            o += nd - 1;
        }
        out[o] = 0;
        snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    snprintf(buf, cap, "%s", out);
}

static void repr_str(rstate *r, sbuf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    sb_putc(r, b, q);
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int k = ft_utf8_decode(s + i, n - i, &c);
        if (k <= 0) {
            /* not reachable for valid UTF-8; Python would hold a surrogate escape here */
            sb_printf(r, b, "\\udc%02x", (uint8_t)s[i]);
            i++;
            continue;
        }
        i += (size_t)k;
        if (c == (uint32_t)q || c == '\\') {
            sb_putc(r, b, '\\');
            sb_putc(r, b, (char)c);
        } else if (c == '\n')
            sb_put(r, b, "\\n", 2);
        else if (c == '\r')
            sb_put(r, b, "\\r", 2);
        else if (c == '\t')
            sb_put(r, b, "\\t", 2);
        else if (!py_isprintable(c)) {
            if (c < 0x100)
                sb_printf(r, b, "\\x%02x", c);
            else if (c < 0x10000)
                sb_printf(r, b, "\\u%04x", c);
            else
                sb_printf(r, b, "\\U%08x", c);
        } else
            sb_put(r, b, s + i - k, (size_t)k);
    }
    sb_putc(r, b, q);
}

static void print_value(rstate *r, sbuf *b, tv v, bool repr, int depth) {
    if (depth > 200)
        tpl_fail(r, NULL, FT_ERR_LIMIT, "value nested too deeply to print");
    char tmp[64];
    switch (v.t) {
    case TV_UNDEF:
        if (repr)
            sb_put(r, b, "Undefined", 9);
        return;
    case TV_NONE:
        sb_put(r, b, "None", 4);
        return;
    case TV_BOOL:
        sb_put(r, b, v.b ? "True" : "False", v.b ? 4 : 5);
        return;
    case TV_INT:
        sb_printf(r, b, "%lld", (long long)v.i);
        return;
    case TV_FLOAT:
        float_repr(v.f, tmp, sizeof tmp);
        sb_put(r, b, tmp, strlen(tmp));
        return;
    case TV_STR:
        if (repr)
            repr_str(r, b, v.s.p, v.s.n);
        else
            sb_put(r, b, v.s.p, v.s.n);
        return;
    case TV_LIST: {
        const char *open = "[", *close = "]";
        if (v.l->is_range) {
            if (v.l->range[2] == 1)
                sb_printf(r, b, "range(%lld, %lld)", (long long)v.l->range[0], (long long)v.l->range[1]);
            else
                sb_printf(r, b, "range(%lld, %lld, %lld)", (long long)v.l->range[0], (long long)v.l->range[1],
                          (long long)v.l->range[2]);
            return;
        }
        switch (v.l->kind) {
        case LK_TUPLE:
            open = "(";
            close = v.l->n == 1 ? ",)" : ")";
            break;
        case LK_ITEMS:
            open = "dict_items([";
            close = "])";
            break;
        case LK_KEYS:
            open = "dict_keys([";
            close = "])";
            break;
        case LK_VALUES:
            open = "dict_values([";
            close = "])";
            break;
        case LK_GEN:
            /* Python prints the object's address, which no two runs share */
            sb_printf(r, b, "<generator object at %p>", (void *)v.l);
            return;
        }
        sb_put(r, b, open, strlen(open));
        for (size_t i = 0; i < v.l->n; i++) {
            if (i)
                sb_put(r, b, ", ", 2);
            print_value(r, b, v.l->v[i], true, depth + 1);
        }
        sb_put(r, b, close, strlen(close));
        return;
    }
    case TV_DICT:
    case TV_NS:
        if (v.t == TV_NS)
            sb_put(r, b, "<Namespace ", 11);
        sb_putc(r, b, '{');
        for (size_t i = 0; i < v.d->n; i++) {
            if (i)
                sb_put(r, b, ", ", 2);
            print_value(r, b, v.d->k[i], true, depth + 1);
            sb_put(r, b, ": ", 2);
            print_value(r, b, v.d->v[i], true, depth + 1);
        }
        sb_putc(r, b, '}');
        if (v.t == TV_NS)
            sb_putc(r, b, '>');
        return;
    case TV_MACRO:
        sb_printf(r, b, "<Macro '%.*s'>", (int)v.m->def->slen, v.m->def->str ? v.m->def->str : "caller");
        return;
    case TV_FUNC:
        sb_printf(r, b, "<built-in method %d>", v.fn->id);
        return;
    case TV_LOOP:
        sb_printf(r, b, "<LoopContext %zu/%zu>", v.loop->index0 + 1, v.loop->items->n);
        return;
    }
}

void tv_str_into(rstate *r, sbuf *b, tv v) { print_value(r, b, v, false, 0); }
void tv_repr_into(rstate *r, sbuf *b, tv v) { print_value(r, b, v, true, 0); }

tv tv_to_str(rstate *r, tv v) {
    if (v.t == TV_STR)
        return v;
    sbuf b = {0};
    tv_str_into(r, &b, v);
    return tv_str(b.p ? b.p : "", b.n);
}

/* ---------------------------------------------------------------- json.dumps */

static void json_str(rstate *r, sbuf *b, const char *s, size_t n) {
    sb_putc(r, b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                esc = tmp;
            }
        }
        if (esc) {
            sb_put(r, b, s + run, i - run);
            sb_put(r, b, esc, strlen(esc));
            run = i + 1;
        }
    }
    sb_put(r, b, s + run, n - run);
    sb_putc(r, b, '"');
}

static void json_newline(rstate *r, sbuf *b, const char *indent, size_t ilen, int64_t level) {
    sb_putc(r, b, '\n');
    for (int64_t i = 0; i < level; i++)
        sb_put(r, b, indent, ilen);
}

/* Python's json encoder: key conversion (str, int, float, bool, None), float repr with
 * NaN/Infinity, indent levels, and the separators given. */
bool tv_tojson(rstate *r, sbuf *b, tv v, const char *indent, size_t ilen, int64_t level, const char *item_sep,
               const char *key_sep, bool sort_keys, const char **why) {
    if (level > 200) {
        *why = "value nested too deeply for tojson";
        return false;
    }
    char tmp[64];
    switch (v.t) {
    case TV_NONE:
        sb_put(r, b, "null", 4);
        return true;
    case TV_BOOL:
        sb_put(r, b, v.b ? "true" : "false", v.b ? 4 : 5);
        return true;
    case TV_INT:
        sb_printf(r, b, "%lld", (long long)v.i);
        return true;
    case TV_FLOAT:
        if (isnan(v.f))
            sb_put(r, b, "NaN", 3);
        else if (isinf(v.f))
            sb_put(r, b, v.f < 0 ? "-Infinity" : "Infinity", v.f < 0 ? 9 : 8);
        else {
            float_repr(v.f, tmp, sizeof tmp);
            sb_put(r, b, tmp, strlen(tmp));
        }
        return true;
    case TV_STR:
        json_str(r, b, v.s.p, v.s.n);
        return true;
    case TV_LIST:
        if (v.l->kind == LK_GEN || v.l->kind >= LK_ITEMS || v.l->is_range) {
            *why = v.l->is_range ? "Object of type range is not JSON serializable"
                   : v.l->kind == LK_GEN ? "Object of type generator is not JSON serializable"
                                       : "Object of type dict view is not JSON serializable";
            return false;
        }
        if (v.l->n == 0) {
            sb_put(r, b, "[]", 2);
            return true;
        }
        sb_putc(r, b, '[');
        for (size_t i = 0; i < v.l->n; i++) {
            if (i)
                sb_put(r, b, item_sep, strlen(item_sep));
            if (indent)
                json_newline(r, b, indent, ilen, level + 1);
            if (!tv_tojson(r, b, v.l->v[i], indent, ilen, level + 1, item_sep, key_sep, sort_keys, why))
                return false;
        }
        if (indent)
            json_newline(r, b, indent, ilen, level);
        sb_putc(r, b, ']');
        return true;
    case TV_DICT: {
        if (v.d->n == 0) {
            sb_put(r, b, "{}", 2);
            return true;
        }
        /* keys as strings first (Python converts before sorting) */
        size_t n = v.d->n;
        tv *keys = ralloc(r, n * sizeof(tv));
        size_t *order = ralloc(r, n * sizeof(size_t));
        for (size_t i = 0; i < n; i++) {
            tv k = v.d->k[i];
            order[i] = i;
            if (k.t == TV_STR)
                keys[i] = k;
            else if (k.t == TV_BOOL)
                keys[i] = tv_cstr(k.b ? "true" : "false");
            else if (k.t == TV_NONE)
                keys[i] = tv_cstr("null");
            else if (k.t == TV_INT || k.t == TV_FLOAT) {
                sbuf kb = {0};
                if (k.t == TV_FLOAT && (isnan(k.f) || isinf(k.f)))
                    sb_put(r, &kb, isnan(k.f) ? "NaN" : k.f < 0 ? "-Infinity" : "Infinity",
                           isnan(k.f) ? 3 : k.f < 0 ? 9 : 8);
                else
                    tv_str_into(r, &kb, k);
                keys[i] = tv_str(kb.p, kb.n);
            } else {
                *why = "keys must be str, int, float, bool or None";
                return false;
            }
        }
        if (sort_keys) /* insertion sort: stable, dicts are small */
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && tv_cmp(keys[order[j]], keys[order[j - 1]]) < 0; j--) {
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        sb_putc(r, b, '{');
        for (size_t ii = 0; ii < n; ii++) {
            size_t i = order[ii];
            if (ii)
                sb_put(r, b, item_sep, strlen(item_sep));
            if (indent)
                json_newline(r, b, indent, ilen, level + 1);
            json_str(r, b, keys[i].s.p, keys[i].s.n);
            sb_put(r, b, key_sep, strlen(key_sep));
            if (!tv_tojson(r, b, v.d->v[i], indent, ilen, level + 1, item_sep, key_sep, sort_keys, why))
                return false;
        }
        if (indent)
            json_newline(r, b, indent, ilen, level);
        sb_putc(r, b, '}');
        return true;
    }
    default:
        *why = v.t == TV_UNDEF ? "Object of type Undefined is not JSON serializable"
                               : "object is not JSON serializable";
        return false;
    }
}
