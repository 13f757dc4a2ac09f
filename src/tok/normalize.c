/* tok/normalize.c: the normalizers of tokenizer.json (Sequence, Prepend, Replace, NFC, NFD,
 * NFKC, NFKD, Lowercase, Strip) over pieces that remember, for every byte, the range of the
 * original text it came from (so that token offsets point into the caller's text, as the
 * alignments of `tokenizers`' NormalizedString do). Unicode data comes from utf8proc. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/tok_internal.h"
#include "tok/unicode_post9.h"

/* ---------------------------------------------------------------- Unicode classes */

bool tok_is_whitespace(uint32_t c) {
    /* The White_Space property (what Rust's char::is_whitespace and regex \s use). */
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool tok_is_numeric(uint32_t c) {
    /* Rust's char::is_numeric: the N categories (Unicode 16.0, as `tokenizers` is built) */
    if (c < 0x80)
        return c >= '0' && c <= '9';
    return tok_u16_in(U16_NUMBER, c);
}

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid][0])
            hi = mid;
        else if (c > r[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

bool tok_is_punct(uint32_t c) {
    /* the Punctuation pre-tokenizer: ASCII punctuation or category P as of Unicode 8.0 (the
     * unicode_categories crate `tokenizers` uses) */
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E);
    return in_ranges(unicode_punct8, sizeof unicode_punct8 / sizeof unicode_punct8[0], c);
}

bool tok_is_word_char(uint32_t c) {
    /* Rust regex's Unicode \w (what `tokenizers` uses for Whitespace and single_word):
     * Alphabetic, marks, decimal numbers, connector punctuation, Join_Control (Unicode 16.0). */
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return tok_u16_in(U16_WORD, c);
}

/* ---------------------------------------------------------------- building pieces */

typedef struct builder {
    char *s;
    size_t *al;
    size_t n, cap;
} builder;

static ft_status b_reserve(builder *b, size_t extra) {
    if (b->n + extra <= b->cap)
        return FT_OK;
    size_t nc = b->cap ? b->cap * 2 : 64;
    while (nc < b->n + extra)
        nc *= 2;
    char *s = ft_realloc(b->s, nc);
    if (!s)
        return FT_ERR_NOMEM;
    b->s = s;
    size_t *al = ft_realloc(b->al, 2 * nc * sizeof *al);
    if (!al)
        return FT_ERR_NOMEM;
    b->al = al;
    b->cap = nc;
    return FT_OK;
}

/* Append bytes that all came from original range [a, e). */
static ft_status b_put(builder *b, const char *s, size_t n, size_t a, size_t e) {
    FT_TRY(b_reserve(b, n));
    memcpy(b->s + b->n, s, n);
    for (size_t i = 0; i < n; i++) {
        b->al[2 * (b->n + i)] = a;
        b->al[2 * (b->n + i) + 1] = e;
    }
    b->n += n;
    return FT_OK;
}

/* Append p[i..j) keeping its alignment. */
static ft_status b_copy(builder *b, const piece *p, size_t i, size_t j) {
    FT_TRY(b_reserve(b, j - i));
    memcpy(b->s + b->n, p->s + i, j - i);
    for (size_t k = i; k < j; k++) {
        b->al[2 * (b->n + k - i)] = piece_orig_start(p, k);
        b->al[2 * (b->n + k - i) + 1] = piece_orig_end(p, k);
    }
    b->n += j - i;
    return FT_OK;
}

/* Move the built string into scratch memory and make it the piece. */
static ft_status b_finish(builder *b, piece *p, scratch *mem) {
    char *s = scratch_alloc(mem, b->n + 1);
    size_t *al = scratch_alloc(mem, 2 * (b->n + 1) * sizeof *al);
    if (!s || !al) {
        ft_free(b->s);
        ft_free(b->al);
        return FT_ERR_NOMEM;
    }
    if (b->n) {
        memcpy(s, b->s, b->n);
        memcpy(al, b->al, 2 * b->n * sizeof *al);
    }
    p->s = s;
    p->n = b->n;
    p->al = al;
    ft_free(b->s);
    ft_free(b->al);
    return FT_OK;
}

/* ---------------------------------------------------------------- normalizers */

static ft_status norm_prepend(const tok_norm *nm, piece *p, scratch *mem) {
    if (p->n == 0)
        return FT_OK;
    builder b = {0};
    size_t cl = (size_t)tok_utf8_len((unsigned char)p->s[0]);
    if (cl > p->n)
        cl = p->n;
    ft_status s = b_put(&b, nm->str, nm->str_len, piece_orig_start(p, 0), piece_orig_end(p, cl - 1));
    if (!s)
        s = b_copy(&b, p, 0, p->n);
    if (s) {
        ft_free(b.s);
        ft_free(b.al);
        return s;
    }
    return b_finish(&b, p, mem);
}

static ft_status norm_replace(const tok_norm *nm, piece *p, scratch *mem, ft_err *err) {
    match_vec mv = {0};
    ft_status s = tok_find_matches(&nm->pat, p->s, p->n, &mv, err);
    if (s) {
        ft_free(mv.v);
        return s;
    }
    bool any = false;
    for (size_t k = 0; k < mv.n; k++)
        any |= mv.v[3 * k + 2] != 0;
    if (!any) {
        ft_free(mv.v);
        return FT_OK;
    }
    builder b = {0};
    for (size_t k = 0; k < mv.n && !s; k++) {
        size_t a = mv.v[3 * k], e = mv.v[3 * k + 1];
        if (!mv.v[3 * k + 2]) {
            s = b_copy(&b, p, a, e);
        } else if (e > 0) {
            /* as NormalizedString::replace: the new text takes the range of the last char
             * before the match's end (the match's last char) */
            size_t k = e - 1;
            while (k > 0 && ((unsigned char)p->s[k] & 0xC0) == 0x80)
                k--;
            s = b_put(&b, nm->str, nm->str_len, piece_orig_start(p, k), piece_orig_end(p, e - 1));
        } else {
            size_t o = p->n ? piece_orig_start(p, 0) : p->base;
            s = b_put(&b, nm->str, nm->str_len, o, o);
        }
    }
    ft_free(mv.v);
    if (s) {
        ft_free(b.s);
        ft_free(b.al);
        return FT_ERR(err, s, "out of memory in Replace");
    }
    return b_finish(&b, p, mem);
}

static ft_status norm_lowercase(piece *p, scratch *mem) {
    bool ascii_lower = true;
    for (size_t i = 0; i < p->n; i++) {
        unsigned char c = (unsigned char)p->s[i];
        if (c >= 0x80 || (c >= 'A' && c <= 'Z')) {
            ascii_lower = false;
            break;
        }
    }
    if (ascii_lower)
        return FT_OK;
    builder b = {0};
    ft_status s = FT_OK;
    for (size_t i = 0; i < p->n && !s;) {
        uint32_t c;
        int cl = tok_utf8_next(p->s + i, p->n - i, &c);
        char out[8];
        int on;
        size_t a = piece_orig_start(p, i), e = piece_orig_end(p, i + (size_t)cl - 1);
        if (c == 0x130) { /* the one unconditional multi-char lowercase: "i" + combining dot */
            memcpy(out, "i\xCC\x87", 3);
            on = 3;
        } else {
            on = ft_utf8_encode(tok_u16_lower(c), out);
        }
        s = b_put(&b, out, (size_t)on, a, e);
        i += (size_t)cl;
    }
    if (s) {
        ft_free(b.s);
        ft_free(b.al);
        return s;
    }
    return b_finish(&b, p, mem);
}

static void norm_strip(const tok_norm *nm, piece *p) {
    size_t a = 0, e = p->n;
    if (nm->left) {
        while (a < e) {
            uint32_t c;
            int cl = tok_utf8_next(p->s + a, e - a, &c);
            if (!tok_is_whitespace(c))
                break;
            a += (size_t)cl;
        }
    }
    if (nm->right) {
        while (e > a) {
            size_t k = e - 1;
            while (k > a && ((unsigned char)p->s[k] & 0xC0) == 0x80)
                k--;
            uint32_t c;
            tok_utf8_next(p->s + k, e - k, &c);
            if (!tok_is_whitespace(c))
                break;
            e = k;
        }
    }
    *p = piece_sub(p, a, e);
}

static utf8proc_option_t unicode_opts(norm_kind k) {
    switch (k) {
    case NORM_NFC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    case NORM_NFD: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    case NORM_NFKC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    default: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    }
}

/* NFC/NFD/NFKC/NFKD as `tokenizers` runs them (the unicode-normalization-alignments crate):
 * each char is fully decomposed (the first code point "replaces" the char, the others are
 * "added"), runs of combining marks are stably sorted by combining class, and for NFC/NFKC the
 * crate's recomposition loop merges pairs (a composite "removes" what it absorbed). Each output
 * char then takes an alignment the way NormalizedString::transform assigns it: a replacing char
 * the range of the input char it replaces, an added char the range of the input char before.
 * utf8proc supplies decompositions, combining classes and pair composition; code points that
 * Unicode 9.0 (the crate's tables) did not have are held inert (unicode_post9.h). */
/* Assigned after Unicode 9.0 with normalization data: inert for `tokenizers` (see
 * gen_unicode_post9.py). */
static bool post9(int32_t cp) {
    return cp >= 0 && in_ranges(unicode_post9, sizeof unicode_post9 / sizeof unicode_post9[0], (uint32_t)cp);
}

static uint8_t ccc_of(int32_t cp) {
    return post9(cp) ? 0 : (uint8_t)utf8proc_get_property(cp)->combining_class;
}

typedef struct cpc {
    int32_t cp;
    int32_t change;
    uint8_t ccc;
} cpc;

typedef struct cpc_vec {
    cpc *v;
    size_t n, cap;
} cpc_vec;

static ft_status cpc_push(cpc_vec *a, int32_t cp, int32_t change) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        cpc *v = ft_realloc(a->v, nc * sizeof *v);
        if (!v)
            return FT_ERR_NOMEM;
        a->v = v;
        a->cap = nc;
    }
    a->v[a->n++] = (cpc){cp, change, ccc_of(cp)};
    return FT_OK;
}

/* Stable sort of v[a..n) by combining class (short runs: insertion sort). */
static void sort_pending(cpc *v, size_t a, size_t n) {
    for (size_t i = a + 1; i < n; i++) {
        cpc x = v[i];
        size_t j = i;
        while (j > a && v[j - 1].ccc > x.ccc) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

/* The primary composite of a + b, or -1. */
static int32_t compose_pair(int32_t a, int32_t b) {
    if (post9(a) || post9(b))
        return -1;
    utf8proc_int32_t buf[2] = {a, b};
    utf8proc_ssize_t n = utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE);
    return n == 1 && !post9(buf[0]) ? buf[0] : -1;
}

static ft_status recompose(const cpc_vec *in, cpc_vec *out) {
    bool have = false;
    cpc k = {0, 0, 0};
    int last_ccc = -1;
    cpc_vec buf = {0};
    ft_status s = FT_OK;
    for (size_t i = 0; i < in->n && !s; i++) {
        cpc ch = in->v[i];
        if (!have) {
            if (ch.ccc != 0) {
                s = cpc_push(out, ch.cp, ch.change);
                continue;
            }
            k = ch;
            have = true;
            continue;
        }
        if (last_ccc < 0) {
            int32_t r = compose_pair(k.cp, ch.cp);
            if (r >= 0) {
                k.cp = r;
                k.change = k.change + ch.change - 1;
                continue;
            }
            if (ch.ccc == 0) {
                s = cpc_push(out, k.cp, k.change);
                k = ch;
                continue;
            }
            s = cpc_push(&buf, ch.cp, ch.change);
            last_ccc = ch.ccc;
            continue;
        }
        if (last_ccc >= ch.ccc) {
            if (ch.ccc == 0) {
                s = cpc_push(out, k.cp, k.change);
                for (size_t j = 0; j < buf.n && !s; j++)
                    s = cpc_push(out, buf.v[j].cp, buf.v[j].change);
                buf.n = 0;
                k = ch;
                last_ccc = -1;
                continue;
            }
            s = cpc_push(&buf, ch.cp, ch.change);
            last_ccc = ch.ccc;
            continue;
        }
        int32_t r = compose_pair(k.cp, ch.cp);
        if (r >= 0) {
            k.cp = r;
            k.change = k.change + ch.change - 1;
            continue;
        }
        s = cpc_push(&buf, ch.cp, ch.change);
        last_ccc = ch.ccc;
    }
    if (!s && have)
        s = cpc_push(out, k.cp, k.change);
    for (size_t j = 0; j < buf.n && !s; j++)
        s = cpc_push(out, buf.v[j].cp, buf.v[j].change);
    ft_free(buf.v);
    return s;
}

static ft_status norm_unicode(norm_kind k, piece *p, scratch *mem) {
    bool ascii = true;
    for (size_t i = 0; i < p->n; i++)
        if ((unsigned char)p->s[i] >= 0x80) {
            ascii = false;
            break;
        }
    if (ascii || p->n == 0)
        return FT_OK;
    /* most text is already normalized: one utf8proc call tells */
    utf8proc_option_t opt = unicode_opts(k);
    utf8proc_uint8_t *whole = NULL;
    utf8proc_ssize_t wn = utf8proc_map((const utf8proc_uint8_t *)p->s, (utf8proc_ssize_t)p->n, &whole, opt);
    bool same = wn >= 0 && (size_t)wn == p->n && memcmp(whole, p->s, p->n) == 0;
    free(whole);
    if (same)
        return FT_OK;

    bool compat = k == NORM_NFKC || k == NORM_NFKD, comp = k == NORM_NFC || k == NORM_NFKC;
    cpc_vec dec = {0}, out = {0};
    size_t n_chars = 0;
    size_t *cstart = ft_malloc((p->n + 1) * sizeof *cstart); /* byte start of each input char */
    ft_status s = cstart ? FT_OK : FT_ERR_NOMEM;
    size_t ready = 0;
    for (size_t i = 0; i < p->n && !s;) {
        uint32_t c;
        int cl = tok_utf8_next(p->s + i, p->n - i, &c);
        cstart[n_chars++] = i;
        utf8proc_int32_t d[32];
        int bc = 0;
        utf8proc_ssize_t dn = post9((int32_t)c) ? 0
                                                : utf8proc_decompose_char((utf8proc_int32_t)c, d, 32,
                                                                          UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0), &bc);
        if (dn <= 0 || dn > 32) {
            d[0] = (utf8proc_int32_t)c;
            dn = 1;
        }
        for (utf8proc_ssize_t j = 0; j < dn && !s; j++) {
            uint8_t ccc = ccc_of(d[j]);
            if (ccc == 0) {
                sort_pending(dec.v, ready, dec.n);
                ready = dec.n;
            }
            s = cpc_push(&dec, d[j], j == 0 ? 0 : 1);
        }
        i += (size_t)cl;
    }
    if (!s) {
        sort_pending(dec.v, ready, dec.n);
        cstart[n_chars] = p->n;
    }
    if (!s && comp)
        s = recompose(&dec, &out);
    const cpc_vec *res = comp ? &out : &dec;
    builder b = {0};
    size_t ptr = 0; /* next input char to be replaced */
    size_t piece_start = piece_orig_start(p, 0);
    for (size_t i = 0; i < res->n && !s; i++) {
        size_t a, e;
        if (res->v[i].change > 0) {
            if (ptr == 0) {
                a = e = piece_start;
            } else {
                a = piece_orig_start(p, cstart[ptr - 1]);
                e = piece_orig_end(p, cstart[ptr] - 1);
            }
        } else {
            size_t q = ptr < n_chars ? ptr : n_chars - 1;
            a = piece_orig_start(p, cstart[q]);
            e = piece_orig_end(p, cstart[q + 1] - 1);
            ptr += 1 + (size_t)(res->v[i].change < 0 ? -res->v[i].change : 0);
            if (ptr > n_chars)
                ptr = n_chars;
        }
        char u[4];
        int un = ft_utf8_encode((uint32_t)res->v[i].cp, u);
        s = b_put(&b, u, (size_t)un, a, e);
    }
    ft_free(dec.v);
    ft_free(out.v);
    ft_free(cstart);
    if (s) {
        ft_free(b.s);
        ft_free(b.al);
        return s;
    }
    return b_finish(&b, p, mem);
}

ft_status tok_normalize(const ft_tok *t, const tok_norm *nm, piece *p, scratch *mem, ft_err *err) {
    if (!nm)
        return FT_OK;
    ft_status s = FT_OK;
    switch (nm->kind) {
    case NORM_SEQUENCE:
        for (size_t i = 0; i < nm->n_children; i++)
            FT_TRY(tok_normalize(t, &nm->children[i], p, mem, err));
        return FT_OK;
    case NORM_PREPEND: s = norm_prepend(nm, p, mem); break;
    case NORM_REPLACE: return norm_replace(nm, p, mem, err);
    case NORM_NFC: case NORM_NFD: case NORM_NFKC: case NORM_NFKD: s = norm_unicode(nm->kind, p, mem); break;
    case NORM_LOWERCASE: s = norm_lowercase(p, mem); break;
    case NORM_STRIP: norm_strip(nm, p); break;
    }
    if (s)
        return FT_ERR(err, s, "out of memory while normalizing");
    return FT_OK;
}

/* Normalize a whole string (added tokens' content at load time). *out owned by the caller. */
ft_status tok_normalize_string(const ft_tok *t, const char *str, size_t n, char **out, size_t *out_len, ft_err *err) {
    scratch mem = {0};
    piece p = {.s = str, .n = n, .al = NULL, .base = 0, .added = -1};
    ft_status s = tok_normalize(t, t->norm, &p, &mem, err);
    if (!s) {
        *out = ft_strndup(p.s, p.n);
        *out_len = p.n;
        if (!*out)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    scratch_free(&mem);
    return s;
}
