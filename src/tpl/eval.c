/* tpl/eval.c: the Jinja evaluator: scopes (a frame per for-loop iteration, macro call, with,
 * filter and set block, as Jinja2 compiles them), statements, expressions with Python's
 * arithmetic and comparison semantics, attribute and item lookup as Jinja2's sandboxed
 * environment does it (Python attribute first for `.x`, item first for `[x]`), slices, macros
 * and call blocks. Limits on depth, loop iterations, output and memory end a render with
 * FT_ERR_LIMIT. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tpl_int.h"

/* ---------------------------------------------------------------- errors */

void tpl_fail(rstate *r, const node *n, ft_status code, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n) {
        int64_t line, col;
        tpl_line_col(r->t->src, r->t->src_len, n->pos, &line, &col);
        FT_ERR_AT(r->err, code, r->t->name, line, col, "%s", msg);
        if (r->err)
            r->err->offset = n->pos;
    } else
        FT_ERR_AT(r->err, code, r->t->name, 0, 0, "%s", msg);
    if (!r->err)
        r->fallback_code = code;
    longjmp(r->jb, 1);
}

void fail_undefined(rstate *r, const node *at, tv v) {
    if (v.s.p)
        tpl_fail(r, at, FT_ERR_INVALID, "UndefinedError: %.*s", (int)v.s.n, v.s.p);
    tpl_fail(r, at, FT_ERR_INVALID, "UndefinedError: value is undefined");
}

void check_str_size(rstate *r, const node *at, size_t n) {
    if (n > r->lim.max_output)
        tpl_fail(r, at, FT_ERR_LIMIT, "string of %zu bytes is over the output limit (%zu bytes)", n, r->lim.max_output);
}

/* ---------------------------------------------------------------- frames */

struct frame {
    frame *parent;
    const char **names;
    size_t *lens;
    tv *vals;
    size_t n, cap;
};

static frame *frame_new(rstate *r, frame *parent) {
    frame *f = ralloc(r, sizeof *f);
    f->parent = parent;
    return f;
}

static tv *frame_find_local(frame *f, const char *name, size_t n) {
    for (size_t i = f->n; i > 0; i--)
        if (f->lens[i - 1] == n && memcmp(f->names[i - 1], name, n) == 0)
            return &f->vals[i - 1];
    return NULL;
}

static tv *frame_find(frame *f, const char *name, size_t n) {
    for (; f; f = f->parent) {
        tv *v = frame_find_local(f, name, n);
        if (v)
            return v;
    }
    return NULL;
}

static void frame_set(rstate *r, frame *f, const char *name, size_t n, tv v) {
    tv *p = frame_find_local(f, name, n);
    if (p) {
        *p = v;
        return;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        const char **nn = ralloc(r, cap * sizeof(char *));
        size_t *nl = ralloc(r, cap * sizeof(size_t));
        tv *nv = ralloc(r, cap * sizeof(tv));
        if (f->n) {
            memcpy(nn, f->names, f->n * sizeof(char *));
            memcpy(nl, f->lens, f->n * sizeof(size_t));
            memcpy(nv, f->vals, f->n * sizeof(tv));
        }
        f->names = nn;
        f->lens = nl;
        f->vals = nv;
        f->cap = cap;
    }
    f->names[f->n] = name;
    f->lens[f->n] = n;
    f->vals[f->n] = v;
    f->n++;
}

/* ---------------------------------------------------------------- lookups */

static const char *type_repr(tv v, char *buf, size_t cap) {
    /* Jinja2's object_type_repr */
    if (v.t == TV_NONE)
        return "None";
    if (v.t == TV_NS)
        return "jinja2.utils.Namespace object";
    if (v.t == TV_LOOP)
        return "jinja2.runtime.LoopContext object";
    if (v.t == TV_MACRO)
        return "jinja2.runtime.Macro object";
    snprintf(buf, cap, "%s object", tv_type_name(v));
    return buf;
}

static tv no_attr(rstate *r, tv obj, const char *name, size_t n) {
    char b[64];
    return tv_undef_msg(r, "'%s' has no attribute '%.*s'", type_repr(obj, b, sizeof b), (int)(n > 200 ? 200 : n),
                        name);
}

static bool name_is(const char *s, size_t n, const char *lit) { return strlen(lit) == n && memcmp(s, lit, n) == 0; }

static tv loop_attr(rstate *r, tloop *l, const char *name, size_t n, bool *found) {
    size_t len = l->items->n, i = l->index0;
    *found = true;
    if (name_is(name, n, "index"))
        return tv_int((int64_t)i + 1);
    if (name_is(name, n, "index0"))
        return tv_int((int64_t)i);
    if (name_is(name, n, "revindex"))
        return tv_int((int64_t)(len - i));
    if (name_is(name, n, "revindex0"))
        return tv_int((int64_t)(len - i - 1));
    if (name_is(name, n, "first"))
        return tv_bool(i == 0);
    if (name_is(name, n, "last"))
        return tv_bool(i + 1 == len);
    if (name_is(name, n, "length"))
        return tv_int((int64_t)len);
    if (name_is(name, n, "depth"))
        return tv_int(l->depth0 + 1);
    if (name_is(name, n, "depth0"))
        return tv_int(l->depth0);
    if (name_is(name, n, "previtem"))
        return i > 0 ? l->items->v[i - 1] : tv_undef_msg(r, "there is no previous item");
    if (name_is(name, n, "nextitem"))
        return i + 1 < len ? l->items->v[i + 1] : tv_undef_msg(r, "there is no next item");
    *found = false;
    return tv_undef();
}

/* Python's getattr(obj, name) part of a lookup: methods, loop and namespace attributes. */
static bool py_getattr(rstate *r, tv obj, const char *name, size_t n, tv *out) {
    if (obj.t == TV_LOOP) {
        bool found;
        *out = loop_attr(r, obj.loop, name, n, &found);
        if (found)
            return true;
    }
    if (obj.t == TV_NS) {
        tv *v = tdict_get_str(obj.d, name, n);
        if (v) {
            *out = *v;
            return true;
        }
        return false;
    }
    tv m = builtin_method(r, obj, name, n);
    if (m.t != TV_UNDEF || m.s.p) {
        *out = m;
        return true;
    }
    return false;
}

tv get_attr(rstate *r, const node *at, tv obj, const char *name, size_t n) {
    if (obj.t == TV_UNDEF)
        fail_undefined(r, at, obj);
    tv v;
    if (py_getattr(r, obj, name, n, &v))
        return v;
    if (obj.t == TV_DICT) {
        tv *p = tdict_get_str(obj.d, name, n);
        if (p)
            return *p;
    }
    return no_attr(r, obj, name, n);
}

static bool as_index(tv k, int64_t *i) {
    if (k.t == TV_INT) {
        *i = k.i;
        return true;
    }
    if (k.t == TV_BOOL) {
        *i = k.b;
        return true;
    }
    return false;
}

static bool hashable_d(tv k, int depth) {
    if (k.t == TV_DICT || k.t == TV_NS || depth > 400)
        return false;
    if (k.t == TV_LIST) {
        if (k.l->kind != LK_TUPLE)
            return k.l->kind == LK_GEN;
        for (size_t i = 0; i < k.l->n; i++)
            if (!hashable_d(k.l->v[i], depth + 1))
                return false;
    }
    return true;
}
static bool hashable(tv k) { return hashable_d(k, 0); }

/* Byte offset of code point `idx` in s (idx <= code point count). */
size_t tpl_cp_offset(const char *s, size_t n, size_t idx) {
    size_t i = 0;
    while (idx-- > 0 && i < n)
        i = u8_next(s, n, i);
    return i;
}

tv get_item(rstate *r, const node *at, tv obj, tv key) {
    if (obj.t == TV_UNDEF)
        fail_undefined(r, at, obj);
    int64_t idx;
    if (obj.t == TV_DICT && hashable(key)) {
        tv *p = tdict_get(obj.d, key);
        if (p)
            return *p;
    } else if (obj.t == TV_LIST && obj.l->kind <= LK_TUPLE && as_index(key, &idx)) {
        int64_t n = (int64_t)obj.l->n;
        if (idx < 0)
            idx += n;
        if (idx >= 0 && idx < n)
            return obj.l->v[idx];
    } else if (obj.t == TV_STR && as_index(key, &idx)) {
        int64_t n = (int64_t)u8_len(obj.s.p, obj.s.n);
        if (idx < 0)
            idx += n;
        if (idx >= 0 && idx < n) {
            size_t b = tpl_cp_offset(obj.s.p, obj.s.n, (size_t)idx);
            return tv_str(obj.s.p + b, u8_next(obj.s.p, obj.s.n, b) - b);
        }
    }
    if (key.t == TV_STR) {
        tv v;
        if (py_getattr(r, obj, key.s.p, key.s.n, &v))
            return v;
        return no_attr(r, obj, key.s.p, key.s.n);
    }
    char b[64];
    sbuf kb = {0};
    tv_repr_into(r, &kb, key);
    return tv_undef_msg(r, "%s has no element %.*s", type_repr(obj, b, sizeof b), (int)(kb.n > 200 ? 200 : kb.n),
                        kb.p ? kb.p : "");
}

/* Python's slice.indices + element walk. */
static tv do_slice(rstate *r, const node *at, tv obj, tv vs, tv ve, tv vst) {
    if (obj.t == TV_UNDEF)
        fail_undefined(r, at, obj);
    int64_t start = 0, stop = 0, step = 1;
    bool has_start = vs.t != TV_NONE && vs.t != TV_UNDEF, has_stop = ve.t != TV_NONE && ve.t != TV_UNDEF;
    bool ok = true;
    if (has_start)
        ok &= as_index(vs, &start);
    if (has_stop)
        ok &= as_index(ve, &stop);
    if (vst.t != TV_NONE && vst.t != TV_UNDEF)
        ok &= as_index(vst, &step);
    bool is_str = obj.t == TV_STR, is_list = obj.t == TV_LIST && obj.l->kind <= LK_TUPLE;
    if (!ok || (!is_str && !is_list))
        return tv_undef_msg(r, "%s object has no element slice", tv_type_name(obj));
    if (step == 0)
        tpl_fail(r, at, FT_ERR_INVALID, "ValueError: slice step cannot be zero");
    /* strings: work on code point boundaries */
    size_t *offs = NULL;
    int64_t len;
    if (is_str) {
        len = (int64_t)u8_len(obj.s.p, obj.s.n);
        offs = ralloc(r, ((size_t)len + 1) * sizeof(size_t));
        size_t b = 0;
        for (int64_t i = 0; i <= len; i++) {
            offs[i] = b;
            if (i < len)
                b = u8_next(obj.s.p, obj.s.n, b);
        }
    } else
        len = (int64_t)obj.l->n;
    int64_t lower = step > 0 ? 0 : -1, upper = step > 0 ? len : len - 1;
    if (!has_start)
        start = step < 0 ? upper : lower;
    else {
        if (start < 0) {
            start += len;
            if (start < lower)
                start = lower;
        } else if (start > upper)
            start = upper;
    }
    if (!has_stop)
        stop = step < 0 ? lower : upper;
    else {
        if (stop < 0) {
            stop += len;
            if (stop < lower)
                stop = lower;
        } else if (stop > upper)
            stop = upper;
    }
    int64_t count = 0;
    if (step > 0 && start < stop)
        count = (stop - start + step - 1) / step;
    else if (step < 0 && start > stop)
        count = (start - stop + (-step) - 1) / (-step);
    if (is_str) {
        if (step == 1)
            return tv_str(obj.s.p + offs[start], count ? offs[stop] - offs[start] : 0);
        sbuf b = {0};
        for (int64_t k = 0, i = start; k < count; k++, i += step)
            sb_put(r, &b, obj.s.p + offs[i], offs[i + 1] - offs[i]);
        return tv_str(b.p ? b.p : "", b.n);
    }
    tv out = tv_list_new(r, (size_t)count, obj.l->kind == LK_TUPLE ? LK_TUPLE : LK_LIST);
    for (int64_t k = 0, i = start; k < count; k++, i += step)
        out.l->v[k] = obj.l->v[i];
    return out;
}

tlist *iterate(rstate *r, const node *at, tv v) {
    switch (v.t) {
    case TV_UNDEF: {
        tlist *l = ralloc(r, sizeof *l);
        return l;
    }
    case TV_LIST:
        if (v.l->kind == LK_GEN) {
            if (v.l->consumed) {
                tlist *l = ralloc(r, sizeof *l);
                return l;
            }
            v.l->consumed = true;
        }
        return v.l;
    case TV_DICT: {
        tv l = tv_list_new(r, v.d->n, LK_LIST);
        for (size_t i = 0; i < v.d->n; i++)
            l.l->v[i] = v.d->k[i];
        return l.l;
    }
    case TV_STR: {
        size_t n = u8_len(v.s.p, v.s.n);
        tv l = tv_list_new(r, n, LK_LIST);
        size_t b = 0;
        for (size_t i = 0; i < n; i++) {
            size_t e = u8_next(v.s.p, v.s.n, b);
            l.l->v[i] = tv_str(v.s.p + b, e - b);
            b = e;
        }
        return l.l;
    }
    default:
        tpl_fail(r, at, FT_ERR_INVALID, "TypeError: '%s' object is not iterable", tv_type_name(v));
    }
}

/* ---------------------------------------------------------------- arithmetic */

static int64_t ovf_check(rstate *r, const node *at, bool overflow, int64_t v) {
    if (overflow)
        tpl_fail(r, at, FT_ERR_LIMIT, "integer overflow (ftune integers are 64-bit)");
    return v;
}

static int64_t as_i64(tv v) { return v.t == TV_BOOL ? v.b : v.i; }

__attribute__((noreturn)) static void bad_operands(rstate *r, const node *at, const char *op, tv a, tv b) {
    if (a.t == TV_UNDEF)
        fail_undefined(r, at, a);
    if (b.t == TV_UNDEF)
        fail_undefined(r, at, b);
    tpl_fail(r, at, FT_ERR_INVALID, "TypeError: unsupported operand type(s) for %s: '%s' and '%s'", op,
             tv_type_name(a), tv_type_name(b));
}

static tv repeat(rstate *r, const node *at, tv seq, int64_t times) {
    if (times < 0)
        times = 0;
    if (seq.t == TV_STR) {
        if (seq.s.n == 0 || times == 0) /* "" * 10**12 must not loop 10**12 times */
            return tv_str("", 0);
        if ((uint64_t)times > r->lim.max_output / seq.s.n)
            check_str_size(r, at, r->lim.max_output + 1);
        sbuf b = {0};
        for (int64_t i = 0; i < times; i++)
            sb_put(r, &b, seq.s.p, seq.s.n);
        return tv_str(b.p ? b.p : "", b.n);
    }
    if (seq.l->n == 0 || times == 0)
        return tv_list_new(r, 0, seq.l->kind == LK_TUPLE ? LK_TUPLE : LK_LIST);
    if ((uint64_t)times > r->lim.max_memory / sizeof(tv) / seq.l->n)
        tpl_fail(r, at, FT_ERR_LIMIT, "list repetition over the memory limit");
    tv out = tv_list_new(r, seq.l->n * (size_t)times, seq.l->kind);
    for (int64_t i = 0; seq.l->n && i < times; i++)
        memcpy(out.l->v + (size_t)i * seq.l->n, seq.l->v, seq.l->n * sizeof(tv));
    return out;
}

static double py_fmod(double a, double b) {
    double m = fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0)))
        m += b;
    else if (m == 0)
        m = copysign(0.0, b);
    return m;
}

/* Python's printf-style `str % args` for the conversions templates use. */
/* c is one of set's characters (strchr alone also matches a NUL byte, which a template string may hold) */
static bool fmt_in(char c, const char *set) { return c != 0 && strchr(set, c) != NULL; }

tv tpl_str_percent(rstate *r, const node *at, tv fmt, tv args) {
    tlist one = {.v = &args, .n = 1, .kind = LK_TUPLE};
    tlist *a = (args.t == TV_LIST && args.l->kind == LK_TUPLE) ? args.l : &one;
    size_t ai = 0;
    sbuf b = {0};
    const char *s = fmt.s.p;
    size_t n = fmt.s.n;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            sb_putc(r, &b, s[i]);
            continue;
        }
        if (++i >= n)
            tpl_fail(r, at, FT_ERR_INVALID, "ValueError: incomplete format");
        if (s[i] == '%') {
            sb_putc(r, &b, '%');
            continue;
        }
        char spec[32];
        size_t k = 0;
        spec[k++] = '%';
        while (i < n && fmt_in(s[i], "-+ #0123456789.") && k < 20)
            spec[k++] = s[i++];
        if (i >= n)
            tpl_fail(r, at, FT_ERR_INVALID, "ValueError: incomplete format");
        tv v;
        if (s[i] == '(' && args.t == TV_DICT) {
            /* %(name)s takes the value from a mapping */
            size_t st = ++i;
            while (i < n && s[i] != ')')
                i++;
            if (i >= n)
                tpl_fail(r, at, FT_ERR_INVALID, "ValueError: incomplete format key");
            tv *p = tdict_get_str(args.d, s + st, i - st);
            if (!p)
                tpl_fail(r, at, FT_ERR_INVALID, "KeyError: '%.*s'", (int)(i - st), s + st);
            v = *p;
            ai = a->n;
            i++;
            while (i < n && fmt_in(s[i], "-+ #0123456789.") && k < 20)
                spec[k++] = s[i++];
            if (i >= n)
                tpl_fail(r, at, FT_ERR_INVALID, "ValueError: incomplete format");
        } else {
            if (ai >= a->n)
                tpl_fail(r, at, FT_ERR_INVALID, "TypeError: not enough arguments for format string");
            v = a->v[ai++];
        }
        char conv = s[i];
        if (conv == 's' || conv == 'r') {
            sbuf t = {0};
            if (conv == 's')
                tv_str_into(r, &t, v);
            else
                tv_repr_into(r, &t, v);
            spec[k++] = '.';
            spec[k++] = '*';
            spec[k++] = 's';
            spec[k] = 0;
            if (k == 4)
                sb_put(r, &b, t.p, t.n);
            else {
                char tmp[4096];
                int w = snprintf(tmp, sizeof tmp, spec, (int)t.n, t.p ? t.p : "");
                sb_put(r, &b, tmp, w < 0 ? 0 : (size_t)w < sizeof tmp ? (size_t)w : sizeof tmp - 1);
            }
        } else if (fmt_in(conv, "diouxXeEfFgGc")) {
            if (!tv_is_num(v))
                tpl_fail(r, at, FT_ERR_INVALID, "TypeError: %%%c format: a real number is required, not %s", conv,
                         tv_type_name(v));
            char tmp[512];
            int w;
            if (fmt_in(conv, "diouxXc")) {
                spec[k++] = 'l';
                spec[k++] = 'l';
                spec[k++] = conv == 'i' || conv == 'u' ? 'd' : conv;
                spec[k] = 0;
                w = snprintf(tmp, sizeof tmp, spec, (long long)(v.t == TV_FLOAT ? (int64_t)v.f : as_i64(v)));
            } else {
                spec[k++] = conv;
                spec[k] = 0;
                w = snprintf(tmp, sizeof tmp, spec, tv_as_double(v));
            }
            sb_put(r, &b, tmp, w < 0 ? 0 : (size_t)w < sizeof tmp ? (size_t)w : sizeof tmp - 1);
        } else
            tpl_fail(r, at, FT_ERR_INVALID, "ValueError: unsupported format character '%c'", conv);
    }
    if (ai < a->n && args.t != TV_DICT)
        tpl_fail(r, at, FT_ERR_INVALID, "TypeError: not all arguments converted during string formatting");
    return tv_str(b.p ? b.p : "", b.n);
}

tv tpl_binop(rstate *r, const node *at, int op, tv a, tv b) {
    static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**"};
    bool na = tv_is_num(a), nb = tv_is_num(b);
    bool ints = na && nb && a.t != TV_FLOAT && b.t != TV_FLOAT;
    int64_t x = ints ? as_i64(a) : 0, y = ints ? as_i64(b) : 0, z = 0;
    switch (op) {
    case OP_ADD:
        if (ints)
            {
                bool o = __builtin_add_overflow(x, y, &z);
                return tv_int(ovf_check(r, at, o, z));
            }
        if (na && nb)
            return tv_float(tv_as_double(a) + tv_as_double(b));
        if (a.t == TV_STR && b.t == TV_STR) {
            check_str_size(r, at, a.s.n + b.s.n);
            char *p = ralloc(r, a.s.n + b.s.n + 1);
            memcpy(p, a.s.p, a.s.n);
            memcpy(p + a.s.n, b.s.p, b.s.n);
            return tv_str(p, a.s.n + b.s.n);
        }
        if (a.t == TV_LIST && b.t == TV_LIST && a.l->kind <= LK_TUPLE && a.l->kind == b.l->kind) {
            tv o = tv_list_new(r, a.l->n + b.l->n, a.l->kind);
            if (a.l->n)
                memcpy(o.l->v, a.l->v, a.l->n * sizeof(tv));
            if (b.l->n)
                memcpy(o.l->v + a.l->n, b.l->v, b.l->n * sizeof(tv));
            return o;
        }
        if (a.t == TV_STR && b.t != TV_UNDEF)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: can only concatenate str (not \"%s\") to str", tv_type_name(b));
        if (a.t == TV_LIST && b.t != TV_UNDEF && a.l->kind == LK_LIST)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: can only concatenate list (not \"%s\") to list", tv_type_name(b));
        break;
    case OP_SUB:
        if (ints)
            {
                bool o = __builtin_sub_overflow(x, y, &z);
                return tv_int(ovf_check(r, at, o, z));
            }
        if (na && nb)
            return tv_float(tv_as_double(a) - tv_as_double(b));
        break;
    case OP_MUL:
        if (ints)
            {
                bool o = __builtin_mul_overflow(x, y, &z);
                return tv_int(ovf_check(r, at, o, z));
            }
        if (na && nb)
            return tv_float(tv_as_double(a) * tv_as_double(b));
        if ((a.t == TV_STR || (a.t == TV_LIST && a.l->kind <= LK_TUPLE)) && (b.t == TV_INT || b.t == TV_BOOL))
            return repeat(r, at, a, as_i64(b));
        if ((b.t == TV_STR || (b.t == TV_LIST && b.l->kind <= LK_TUPLE)) && (a.t == TV_INT || a.t == TV_BOOL))
            return repeat(r, at, b, as_i64(a));
        break;
    case OP_DIV:
        if (na && nb) {
            if (tv_as_double(b) == 0)
                tpl_fail(r, at, FT_ERR_INVALID, "ZeroDivisionError: division by zero");
            return tv_float(tv_as_double(a) / tv_as_double(b));
        }
        break;
    case OP_FLOORDIV:
        if (ints) {
            if (y == 0)
                tpl_fail(r, at, FT_ERR_INVALID, "ZeroDivisionError: integer division or modulo by zero");
            if (x == INT64_MIN && y == -1)
                ovf_check(r, at, true, 0);
            int64_t q = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0)))
                q--;
            return tv_int(q);
        }
        if (na && nb) {
            double fa = tv_as_double(a), fb = tv_as_double(b);
            if (fb == 0)
                tpl_fail(r, at, FT_ERR_INVALID, "ZeroDivisionError: float floor division by zero");
            double mod = fmod(fa, fb), div = (fa - mod) / fb;
            if (mod != 0 && ((fb < 0) != (mod < 0)))
                div -= 1.0;
            double fl = copysign(0.0, fa / fb);
            if (div != 0) {
                fl = floor(div);
                if (div - fl > 0.5)
                    fl += 1.0;
            }
            return tv_float(fl);
        }
        break;
    case OP_MOD:
        if (a.t == TV_STR)
            return tpl_str_percent(r, at, a, b);
        if (ints) {
            if (y == 0)
                tpl_fail(r, at, FT_ERR_INVALID, "ZeroDivisionError: integer division or modulo by zero");
            if (y == -1)
                return tv_int(0);
            int64_t m = x % y;
            if (m != 0 && ((m < 0) != (y < 0)))
                m += y;
            return tv_int(m);
        }
        if (na && nb) {
            if (tv_as_double(b) == 0)
                tpl_fail(r, at, FT_ERR_INVALID, "ZeroDivisionError: float modulo");
            return tv_float(py_fmod(tv_as_double(a), tv_as_double(b)));
        }
        break;
    case OP_POW:
        if (ints && y >= 0) {
            int64_t acc = 1, base = x;
            bool o = false;
            for (int64_t e = y; e > 0; e >>= 1) {
                if (e & 1)
                    o |= __builtin_mul_overflow(acc, base, &acc);
                if (e > 1)
                    o |= __builtin_mul_overflow(base, base, &base);
                if (o)
                    break;
            }
            return tv_int(ovf_check(r, at, o, acc));
        }
        if (na && nb) {
            double fa = tv_as_double(a), fb = tv_as_double(b);
            if (fa == 0 && fb < 0)
                tpl_fail(r, at, FT_ERR_INVALID, "ZeroDivisionError: 0.0 cannot be raised to a negative power");
            return tv_float(pow(fa, fb));
        }
        break;
    }
    bad_operands(r, at, names[op], a, b);
}

bool tpl_contains(rstate *r, const node *at, tv container, tv item) {
    switch (container.t) {
    case TV_STR:
        if (item.t != TV_STR) {
            if (item.t == TV_UNDEF)
                fail_undefined(r, at, item);
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: 'in <string>' requires string as left operand, not %s",
                     tv_type_name(item));
        }
        if (item.s.n == 0)
            return true;
        return item.s.n <= container.s.n && memmem(container.s.p, container.s.n, item.s.p, item.s.n) != NULL;
    case TV_DICT:
        if (!hashable(item))
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: unhashable type: '%s'", tv_type_name(item));
        return tdict_get(container.d, item) != NULL;
    case TV_UNDEF:
    case TV_LIST: {
        tlist *l = iterate(r, at, container);
        for (size_t i = 0; i < l->n; i++)
            if (tv_eq(l->v[i], item))
                return true;
        return false;
    }
    default:
        tpl_fail(r, at, FT_ERR_INVALID, "TypeError: argument of type '%s' is not iterable", tv_type_name(container));
    }
}

static bool compare(rstate *r, const node *at, int op, tv a, tv b) {
    switch (op) {
    case OP_EQ:
        return tv_eq(a, b);
    case OP_NE:
        return !tv_eq(a, b);
    case OP_IN:
        return tpl_contains(r, at, b, a);
    case OP_NOTIN:
        return !tpl_contains(r, at, b, a);
    default: {
        if (a.t == TV_UNDEF)
            fail_undefined(r, at, a);
        if (b.t == TV_UNDEF)
            fail_undefined(r, at, b);
        int c = tv_cmp(a, b);
        static const char *const sym[] = {"<", "<=", ">", ">="};
        if (c == 2)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: '%s' not supported between instances of '%s' and '%s'",
                     sym[op - OP_LT], tv_type_name(a), tv_type_name(b));
        bool nan = (a.t == TV_FLOAT && isnan(a.f)) || (b.t == TV_FLOAT && isnan(b.f));
        if (nan)
            return false;
        return op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
    }
    }
}

/* ---------------------------------------------------------------- expressions */

typedef struct callargs {
    tv *args;
    size_t nargs;
    const char **kwn;
    tv *kwv;
    size_t nkw;
} callargs;

static void eval_args(rstate *r, frame *f, const node *n, callargs *ca, size_t extra_kw) {
    size_t np = n->n, nk = n->n2;
    tlist *dyn = NULL;
    tdict *dynkw = NULL;
    if (n->dyn_args) {
        tv d = eval_expr(r, f, n->dyn_args);
        dyn = iterate(r, n, d);
        np += dyn->n;
    }
    if (n->dyn_kwargs) {
        tv d = eval_expr(r, f, n->dyn_kwargs);
        if (d.t != TV_DICT)
            tpl_fail(r, n, FT_ERR_INVALID, "TypeError: argument after ** must be a mapping, not %s", tv_type_name(d));
        dynkw = d.d;
        nk += d.d->n;
    }
    ca->args = ralloc(r, (np + 1) * sizeof(tv));
    ca->kwn = ralloc(r, (nk + extra_kw + 1) * sizeof(char *));
    ca->kwv = ralloc(r, (nk + extra_kw + 1) * sizeof(tv));
    ca->nargs = 0;
    ca->nkw = 0;
    for (size_t i = 0; i < n->n; i++)
        ca->args[ca->nargs++] = eval_expr(r, f, n->list[i]);
    for (size_t i = 0; dyn && i < dyn->n; i++)
        ca->args[ca->nargs++] = dyn->v[i];
    for (size_t i = 0; i < n->n2; i++) {
        ca->kwn[ca->nkw] = n->names[i];
        ca->kwv[ca->nkw++] = eval_expr(r, f, n->list2[i]);
    }
    for (size_t i = 0; dynkw && i < dynkw->n; i++) {
        if (dynkw->k[i].t != TV_STR)
            tpl_fail(r, n, FT_ERR_INVALID, "TypeError: keywords must be strings");
        tv k = tv_strdup(r, dynkw->k[i].s.p, dynkw->k[i].s.n);
        ca->kwn[ca->nkw] = k.s.p;
        ca->kwv[ca->nkw++] = dynkw->v[i];
    }
}

tv call_value(rstate *r, frame *f, const node *at, tv callee, tv *args, size_t nargs, const char **kwn, tv *kwv,
              size_t nkw) {
    (void)f;
    switch (callee.t) {
    case TV_MACRO:
        return call_macro(r, at, callee.m, args, nargs, kwn, kwv, nkw);
    case TV_FUNC: {
        return call_builtin(r, at, callee.fn, args, nargs, kwn, kwv, nkw);
    }
    case TV_UNDEF:
        fail_undefined(r, at, callee);
    default:
        tpl_fail(r, at, FT_ERR_INVALID, "TypeError: '%s' object is not callable", tv_type_name(callee));
    }
}

static tv eval_call(rstate *r, frame *f, const node *n, tv caller) {
    tv callee = eval_expr(r, f, n->a);
    callargs ca;
    eval_args(r, f, n, &ca, 1);
    if (caller.t == TV_MACRO) {
        ca.kwn[ca.nkw] = "caller";
        ca.kwv[ca.nkw++] = caller;
    }
    return call_value(r, f, n, callee, ca.args, ca.nargs, ca.kwn, ca.kwv, ca.nkw);
}

static tv eval_filter(rstate *r, frame *f, const node *n, tv input) {
    tv v = n->a ? (n->a->kind == N_FILTER ? eval_filter(r, f, n->a, input) : eval_expr(r, f, n->a)) : input;
    callargs ca;
    eval_args(r, f, n, &ca, 0);
    return apply_filter(r, f, n, n->str, v, ca.args, ca.nargs, ca.kwn, ca.kwv, ca.nkw);
}

tv eval_expr(rstate *r, frame *f, const node *n) {
    if (++r->depth > r->lim.max_depth)
        tpl_fail(r, n, FT_ERR_LIMIT, "template recursion deeper than %lld (limit)", (long long)r->lim.max_depth);
    tv v;
    switch (n->kind) {
    case N_CONST:
        v = n->val;
        break;
    case N_NAME: {
        tv *p = frame_find(f, n->str, n->slen);
        if (p)
            v = *p;
        else {
            v = builtin_global(r, n->str, n->slen);
            if (v.t == TV_UNDEF)
                v = tv_undef_msg(r, "'%.*s' is undefined", (int)n->slen, n->str);
        }
        break;
    }
    case N_GETATTR:
        v = get_attr(r, n, eval_expr(r, f, n->a), n->str, n->slen);
        break;
    case N_GETITEM: {
        tv obj = eval_expr(r, f, n->a);
        if (n->b->kind == N_SLICE) {
            const node *s = n->b;
            tv a = s->a ? eval_expr(r, f, s->a) : tv_none();
            tv b = s->b ? eval_expr(r, f, s->b) : tv_none();
            tv c = s->c ? eval_expr(r, f, s->c) : tv_none();
            v = do_slice(r, n, obj, a, b, c);
        } else
            v = get_item(r, n, obj, eval_expr(r, f, n->b));
        break;
    }
    case N_CALL:
        v = eval_call(r, f, n, tv_undef());
        break;
    case N_FILTER:
        v = eval_filter(r, f, n, tv_undef());
        break;
    case N_TEST: {
        tv x = eval_expr(r, f, n->a);
        callargs ca;
        eval_args(r, f, n, &ca, 0);
        if (ca.nkw)
            tpl_fail(r, n, FT_ERR_INVALID, "tests take no keyword arguments here");
        bool b = apply_test(r, f, n, n->str, x, ca.args, ca.nargs);
        v = tv_bool(n->flag ? !b : b);
        break;
    }
    case N_BINOP:
        v = tpl_binop(r, n, n->op, eval_expr(r, f, n->a), eval_expr(r, f, n->b));
        break;
    case N_NEG:
    case N_POS: {
        tv x = eval_expr(r, f, n->a);
        if (x.t == TV_UNDEF)
            fail_undefined(r, n, x);
        if (!tv_is_num(x))
            tpl_fail(r, n, FT_ERR_INVALID, "TypeError: bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+',
                     tv_type_name(x));
        if (n->kind == N_POS)
            v = x.t == TV_BOOL ? tv_int(x.b) : x;
        else if (x.t == TV_FLOAT)
            v = tv_float(-x.f);
        else
            v = tv_int(ovf_check(r, n, as_i64(x) == INT64_MIN, -as_i64(x)));
        break;
    }
    case N_NOT:
        v = tv_bool(!tv_truthy(eval_expr(r, f, n->a)));
        break;
    case N_AND:
        v = eval_expr(r, f, n->a);
        if (tv_truthy(v))
            v = eval_expr(r, f, n->b);
        break;
    case N_OR:
        v = eval_expr(r, f, n->a);
        if (!tv_truthy(v))
            v = eval_expr(r, f, n->b);
        break;
    case N_CONCAT: {
        sbuf b = {0};
        for (size_t i = 0; i < n->n; i++)
            tv_str_into(r, &b, eval_expr(r, f, n->list[i]));
        v = tv_str(b.p ? b.p : "", b.n);
        break;
    }
    case N_COMPARE: {
        tv left = eval_expr(r, f, n->a);
        v = tv_bool(true);
        for (size_t i = 0; i < n->n; i++) {
            tv right = eval_expr(r, f, n->list[i]->a);
            if (!compare(r, n->list[i], n->list[i]->op, left, right)) {
                v = tv_bool(false);
                break;
            }
            left = right;
        }
        break;
    }
    case N_CONDEXPR:
        if (tv_truthy(eval_expr(r, f, n->a)))
            v = eval_expr(r, f, n->b);
        else if (n->c)
            v = eval_expr(r, f, n->c);
        else
            v = tv_undef_msg(r, "the inline if-expression evaluated to false and no else section was defined.");
        break;
    case N_LIST:
    case N_TUPLE:
        v = tv_list_new(r, n->n, n->kind == N_LIST ? LK_LIST : LK_TUPLE);
        for (size_t i = 0; i < n->n; i++)
            v.l->v[i] = eval_expr(r, f, n->list[i]);
        break;
    case N_DICT:
        v = tv_dict_new(r);
        for (size_t i = 0; i < n->n; i++) {
            tv k = eval_expr(r, f, n->list[i]);
            if (!hashable(k))
                tpl_fail(r, n->list[i], FT_ERR_INVALID, "TypeError: unhashable type: '%s'", tv_type_name(k));
            tdict_set(r, v.d, k, eval_expr(r, f, n->list2[i]));
        }
        break;
    default:
        tpl_fail(r, n, FT_ERR_INTERNAL, "unexpected node kind %d in an expression", n->kind);
    }
    r->depth--;
    return v;
}

/* ---------------------------------------------------------------- statements */

static void exec_node(rstate *r, frame *f, const node *n);

static void assign(rstate *r, frame *f, const node *target, tv v) {
    if (target->kind == N_NAME) {
        frame_set(r, f, target->str, target->slen, v);
        return;
    }
    if (target->kind == N_NSREF) {
        tv *ns = frame_find(f, target->str, target->slen);
        if (!ns || ns->t != TV_NS)
            tpl_fail(r, target, FT_ERR_INVALID, "TemplateRuntimeError: cannot assign attribute on non-namespace object");
        tdict_set(r, ns->d, tv_str(target->names[0], target->n2), v);
        return;
    }
    /* tuple unpacking */
    tlist *l = iterate(r, target, v);
    if (l->n != target->n)
        tpl_fail(r, target, FT_ERR_INVALID, "ValueError: %s values to unpack (expected %zu, got %zu)",
                 l->n > target->n ? "too many" : "not enough", target->n, l->n);
    for (size_t i = 0; i < l->n; i++)
        assign(r, f, target->list[i], l->v[i]);
}

static sbuf *capture_begin(rstate *r, sbuf **saved) {
    *saved = r->out;
    sbuf *b = ralloc(r, sizeof *b);
    r->out = b;
    return b;
}

static tv capture_end(rstate *r, sbuf *saved, sbuf *b) {
    r->out = saved;
    return tv_str(b->p ? b->p : "", b->n);
}

void tpl_charge(rstate *r, const node *at, int64_t work) {
    r->iterations += work;
    if (r->iterations > r->lim.max_iterations)
        tpl_fail(r, at, FT_ERR_LIMIT, "more than %lld loop iterations (limit)", (long long)r->lim.max_iterations);
}

static void count_iteration(rstate *r, const node *at) {
    if (++r->iterations > r->lim.max_iterations)
        tpl_fail(r, at, FT_ERR_LIMIT, "more than %lld loop iterations (limit)", (long long)r->lim.max_iterations);
}

static void exec_for(rstate *r, frame *f, const node *n) {
    tv seq = eval_expr(r, f, n->b);
    tlist *items = iterate(r, n->b, seq);
    if (n->c) { /* {% for x in y if cond %}: filter first, loop.* counts what is left */
        tv kept = tv_list_new(r, items->n, LK_LIST);
        size_t k = 0;
        for (size_t i = 0; i < items->n; i++) {
            count_iteration(r, n);
            frame *tf = frame_new(r, f);
            assign(r, tf, n->a, items->v[i]);
            if (tv_truthy(eval_expr(r, tf, n->c)))
                kept.l->v[k++] = items->v[i];
        }
        kept.l->n = k;
        items = kept.l;
    }
    tloop *lp = ralloc(r, sizeof *lp);
    lp->items = items;
    for (size_t i = 0; i < items->n; i++) {
        count_iteration(r, n);
        frame *it = frame_new(r, f);
        lp = ralloc(r, sizeof *lp);
        lp->items = items;
        lp->index0 = i;
        assign(r, it, n->a, items->v[i]);
        frame_set(r, it, "loop", 4, (tv){.t = TV_LOOP, .loop = lp});
        exec_node(r, it, n->d);
        if (r->ctl == CTL_BREAK) {
            r->ctl = CTL_NONE;
            break;
        }
        r->ctl = CTL_NONE;
    }
    if (items->n == 0 && n->e)
        exec_node(r, frame_new(r, f), n->e);
}

tv call_macro(rstate *r, const node *at, tmacro *m, tv *args, size_t nargs, const char **kwn, tv *kwv, size_t nkw) {
    const node *def = m->def;
    if (++r->depth > r->lim.max_depth)
        tpl_fail(r, at, FT_ERR_LIMIT, "macro recursion deeper than %lld (limit)", (long long)r->lim.max_depth);
    const char *mname = def->kind == N_MACRO ? def->str : "caller";
    frame *mf = frame_new(r, m->closure);
    size_t np = def->n;
    bool *given = ralloc(r, (np + 1) * sizeof(bool));
    tv *vals = ralloc(r, (np + 1) * sizeof(tv));
    bool uses_varargs = def->op & 1, uses_kwargs = def->op & 2, uses_caller = def->op & 4;
    if (nargs > np && !uses_varargs)
        tpl_fail(r, at, FT_ERR_INVALID, "TypeError: macro '%s' takes not more than %zu argument(s)", mname, np);
    for (size_t i = 0; i < np && i < nargs; i++) {
        vals[i] = args[i];
        given[i] = true;
    }
    tv kwargs = tv_dict_new(r);
    tv caller = tv_undef_msg(r, "No caller defined");
    for (size_t k = 0; k < nkw; k++) {
        size_t kl = strlen(kwn[k]);
        bool matched = false;
        for (size_t i = 0; i < np; i++)
            if (def->list[i]->slen == kl && memcmp(def->list[i]->str, kwn[k], kl) == 0) {
                if (given[i])
                    tpl_fail(r, at, FT_ERR_INVALID, "TypeError: macro '%s' got multiple values for argument '%s'",
                             mname, kwn[k]);
                vals[i] = kwv[k];
                given[i] = true;
                matched = true;
            }
        if (matched)
            continue;
        if (!strcmp(kwn[k], "caller") && uses_caller) {
            caller = kwv[k];
            continue;
        }
        if (!uses_kwargs)
            tpl_fail(r, at, FT_ERR_INVALID, "TypeError: macro '%s' takes no keyword argument '%s'", mname, kwn[k]);
        tdict_set(r, kwargs.d, tv_cstr(kwn[k]), kwv[k]);
    }
    for (size_t i = 0; i < np; i++) {
        const node *p = def->list[i];
        tv v;
        if (given[i])
            v = vals[i];
        else if (def->list2[i])
            v = eval_expr(r, mf, def->list2[i]);
        else
            v = tv_undef_msg(r, "parameter '%.*s' was not provided", (int)p->slen, p->str);
        frame_set(r, mf, p->str, p->slen, v);
    }
    if (uses_varargs) {
        size_t extra = nargs > np ? nargs - np : 0;
        tv va = tv_list_new(r, extra, LK_TUPLE);
        for (size_t i = 0; i < extra; i++)
            va.l->v[i] = args[np + i];
        frame_set(r, mf, "varargs", 7, va);
    }
    if (uses_kwargs)
        frame_set(r, mf, "kwargs", 6, kwargs);
    if (uses_caller)
        frame_set(r, mf, "caller", 6, caller);
    sbuf *saved;
    sbuf *b = capture_begin(r, &saved);
    int saved_ctl = r->ctl;
    exec_node(r, mf, def->d);
    r->ctl = saved_ctl;
    r->depth--;
    return capture_end(r, saved, b);
}

static void exec_node(rstate *r, frame *f, const node *n) {
    switch (n->kind) {
    case N_BODY:
        for (size_t i = 0; i < n->n; i++) {
            exec_node(r, f, n->list[i]);
            if (r->ctl)
                return;
        }
        return;
    case N_DATA:
        sb_put(r, r->out, n->str, n->slen);
        return;
    case N_OUTPUT: {
        tv v = eval_expr(r, f, n->a);
        tv_str_into(r, r->out, v);
        return;
    }
    case N_IF:
        if (tv_truthy(eval_expr(r, f, n->a)))
            exec_node(r, f, n->d);
        else if (n->c)
            exec_node(r, f, n->c);
        return;
    case N_FOR:
        exec_for(r, f, n);
        return;
    case N_SET:
        assign(r, f, n->a, eval_expr(r, f, n->b));
        return;
    case N_SETBLOCK: {
        sbuf *saved;
        sbuf *b = capture_begin(r, &saved);
        exec_node(r, frame_new(r, f), n->d);
        tv v = capture_end(r, saved, b);
        if (n->c)
            v = eval_filter(r, f, n->c, v);
        assign(r, f, n->a, v);
        return;
    }
    case N_MACRO: {
        tmacro *m = ralloc(r, sizeof *m);
        m->def = n;
        m->closure = f;
        frame_set(r, f, n->str, n->slen, (tv){.t = TV_MACRO, .m = m});
        return;
    }
    case N_CALLBLOCK: {
        tmacro *m = ralloc(r, sizeof *m);
        m->def = n;
        m->closure = f;
        tv v = eval_call(r, f, n->a, (tv){.t = TV_MACRO, .m = m});
        tv_str_into(r, r->out, v);
        return;
    }
    case N_FILTERBLOCK: {
        sbuf *saved;
        sbuf *b = capture_begin(r, &saved);
        exec_node(r, frame_new(r, f), n->d);
        tv v = capture_end(r, saved, b);
        tv_str_into(r, r->out, eval_filter(r, f, n->c, v));
        return;
    }
    case N_WITH: {
        frame *wf = frame_new(r, f);
        for (size_t i = 0; i < n->n; i++)
            assign(r, wf, n->list[i], eval_expr(r, f, n->list2[i]));
        exec_node(r, wf, n->d);
        return;
    }
    case N_BREAK:
        r->ctl = CTL_BREAK;
        return;
    case N_CONTINUE:
        r->ctl = CTL_CONTINUE;
        return;
    default:
        tpl_fail(r, n, FT_ERR_INTERNAL, "unexpected node kind %d as a statement", n->kind);
    }
}

/* ---------------------------------------------------------------- render */

ft_tpl_limits ft_tpl_default_limits(void) {
    return (ft_tpl_limits){
        .max_depth = 200, .max_iterations = 1000000, .max_output = 64u << 20, .max_memory = 512u << 20};
}

ft_tpl_render_params ft_tpl_default_render_params(void) {
    return (ft_tpl_render_params){.limits = ft_tpl_default_limits(), .now = -1};
}

ft_status ft_tpl_render(const ft_tpl *t, const json_t *vars, const ft_tpl_render_params *params, ft_buf *out,
                        ft_err *err) {
    ft_tpl_render_params p = params ? *params : ft_tpl_default_render_params();
    if (vars && !json_is_object(vars))
        return FT_ERR(err, FT_ERR_INVALID, "template variables must be a JSON object");
    rstate *r = ft_calloc(1, sizeof *r);
    if (!r)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    r->t = t;
    r->lim = p.limits;
    if (r->lim.max_depth <= 0)
        r->lim.max_depth = 200;
    if (r->lim.max_depth > 400) /* deeper than this would risk the C stack */
        r->lim.max_depth = 400;
    r->mem.cap_total = r->lim.max_memory;
    r->err = err;
    r->now = p.now;
    if (r->now < 0) {
        const char *fake = getenv("FTUNE_FAKE_NOW");
        r->now = fake && *fake ? (int64_t)strtoll(fake, NULL, 10) : (int64_t)time(NULL);
    }
    ft_status st = FT_OK;
    if (setjmp(r->jb)) {
        st = err ? err->code : r->fallback_code;
        if (st == FT_OK)
            st = FT_ERR_INTERNAL;
        tarena_free(&r->mem);
        ft_free(r);
        return st;
    }
    r->root = frame_new(r, NULL);
    if (vars) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)vars, k, v) frame_set(r, r->root, k, strlen(k), tv_from_json(r, v));
    }
    sbuf o = {0};
    r->out = &o;
    exec_node(r, r->root, t->root);
    if (o.n && ft_buf_append(out, o.p, o.n) != FT_OK)
        st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    tarena_free(&r->mem);
    ft_free(r);
    return st;
}
