/* tok/decode.c: ids -> text through the decoders of tokenizer.json (ByteLevel, Metaspace,
 * Replace, ByteFallback, Fuse, Strip, Sequence), as `tokenizers` runs them: each decoder maps a
 * list of token strings to a new list, and the result is their concatenation. Also the
 * streaming decoder (the DecodeStream algorithm: emit only text that no later id can change). */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* A list of owned strings. */
typedef struct strlist {
    char **s;
    size_t *n;
    size_t count, cap;
} strlist;

static void sl_free(strlist *l) {
    for (size_t i = 0; i < l->count; i++)
        ft_free(l->s[i]);
    ft_free(l->s);
    ft_free(l->n);
    memset(l, 0, sizeof *l);
}

/* Takes ownership of s (heap, NUL-terminated). */
static ft_status sl_push_own(strlist *l, char *s, size_t n) {
    if (!s)
        return FT_ERR_NOMEM;
    if (l->count == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        char **ss = ft_realloc(l->s, nc * sizeof *ss);
        if (!ss) {
            ft_free(s);
            return FT_ERR_NOMEM;
        }
        l->s = ss;
        size_t *nn = ft_realloc(l->n, nc * sizeof *nn);
        if (!nn) {
            ft_free(s);
            return FT_ERR_NOMEM;
        }
        l->n = nn;
        l->cap = nc;
    }
    l->s[l->count] = s;
    l->n[l->count++] = n;
    return FT_OK;
}
static ft_status sl_push(strlist *l, const char *s, size_t n) { return sl_push_own(l, ft_strndup(s, n), n); }

static char *buf_take(ft_buf *b, size_t *n) {
    ft_buf_cstr(b);
    *n = b->len;
    char *s = b->data;
    if (!s)
        s = ft_strdup("");
    memset(b, 0, sizeof *b);
    return s;
}

/* Append s as valid UTF-8: each maximal ill-formed subpart becomes U+FFFD. */
static ft_status append_lossy(ft_buf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t v = ft_utf8_valid_prefix(s + i, n - i);
        FT_TRY(ft_buf_append(b, s + i, v));
        i += v;
        if (i >= n)
            break;
        FT_TRY(ft_buf_append(b, "\xEF\xBF\xBD", 3));
        i += tok_bad_subpart((const unsigned char *)s + i, n - i);
    }
    return FT_OK;
}

/* byte-level char -> byte, -1 outside the alphabet. The 68 bytes outside the printable set
 * (0x00-0x20, 0x7F-0xA0, 0xAD) map, in order, to U+0100..U+0143. */
static int char_to_byte(uint32_t c) {
    if ((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))
        return (int)c;
    if (c < 0x100 || c > 0x143)
        return -1;
    uint32_t k = c - 0x100;
    if (k <= 0x20)
        return (int)k;
    if (k <= 0x20 + 34)
        return (int)(0x7F + (k - 0x21));
    return 0xAD;
}

static ft_status dec_apply(const tok_dec *d, strlist *in, strlist *out, ft_err *err);

static ft_status dec_one(const tok_dec *d, strlist *in, strlist *out, ft_err *err) {
    ft_status s = FT_OK;
    switch (d->kind) {
    case DEC_SEQUENCE:
        return FT_ERR(err, FT_ERR_INTERNAL, "sequence in dec_one");
    case DEC_BYTELEVEL: {
        ft_buf bytes = {0}, txt = {0};
        for (size_t i = 0; i < in->count && !s; i++) {
            size_t mark = bytes.len;
            bool ok = true;
            for (size_t k = 0; k < in->n[i] && ok && !s;) {
                uint32_t c;
                int cl = ft_utf8_decode(in->s[i] + k, in->n[i] - k, &c);
                int b = cl > 0 ? char_to_byte(c) : -1;
                if (b < 0)
                    ok = false;
                else
                    s = ft_buf_putc(&bytes, (char)b);
                k += cl > 0 ? (size_t)cl : 1;
            }
            if (!ok && !s) {
                bytes.len = mark;
                s = ft_buf_append(&bytes, in->s[i], in->n[i]);
            }
        }
        if (!s)
            s = append_lossy(&txt, bytes.data ? bytes.data : "", bytes.len);
        ft_buf_free(&bytes);
        if (!s) {
            size_t n;
            char *t = buf_take(&txt, &n);
            s = sl_push_own(out, t, n);
        }
        ft_buf_free(&txt);
        break;
    }
    case DEC_METASPACE: {
        char rep[4];
        int rl = ft_utf8_encode(d->ch, rep);
        for (size_t i = 0; i < in->count && !s; i++) {
            ft_buf b = {0};
            for (size_t k = 0; k < in->n[i] && !s;) {
                if (k + (size_t)rl <= in->n[i] && memcmp(in->s[i] + k, rep, (size_t)rl) == 0) {
                    if (!(i == 0 && d->prepend_scheme != PREPEND_NEVER))
                        s = ft_buf_putc(&b, ' ');
                    k += (size_t)rl;
                } else {
                    s = ft_buf_putc(&b, in->s[i][k]);
                    k++;
                }
            }
            size_t n;
            char *t = buf_take(&b, &n);
            if (!s)
                s = sl_push_own(out, t, n);
            else
                ft_free(t);
        }
        break;
    }
    case DEC_REPLACE: {
        match_vec mv = {0};
        for (size_t i = 0; i < in->count && !s; i++) {
            s = tok_find_matches(&d->pat, in->s[i], in->n[i], &mv, err);
            if (s)
                break;
            ft_buf b = {0};
            for (size_t k = 0; k < mv.n && !s; k++) {
                if (mv.v[3 * k + 2])
                    s = ft_buf_append(&b, d->str, d->str_len);
                else
                    s = ft_buf_append(&b, in->s[i] + mv.v[3 * k], mv.v[3 * k + 1] - mv.v[3 * k]);
            }
            size_t n;
            char *t = buf_take(&b, &n);
            if (!s)
                s = sl_push_own(out, t, n);
            else
                ft_free(t);
        }
        ft_free(mv.v);
        break;
    }
    case DEC_BYTEFALLBACK: {
        ft_buf pend = {0};
        for (size_t i = 0; i <= in->count && !s; i++) {
            int byte = -1;
            if (i < in->count && in->n[i] == 6 && !memcmp(in->s[i], "<0x", 3) && in->s[i][5] == '>') {
                char hex[3] = {in->s[i][3], in->s[i][4], 0};
                char *end;
                long v = strtol(hex, &end, 16);
                bool hexok = true;
                for (int k = 0; k < 2; k++) {
                    char c = hex[k];
                    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                        hexok = false;
                }
                if (hexok && *end == 0)
                    byte = (int)v;
            }
            if (byte >= 0) {
                s = ft_buf_putc(&pend, (char)byte);
                continue;
            }
            if (pend.len) {
                if (ft_utf8_valid_prefix(pend.data, pend.len) == pend.len)
                    s = sl_push(out, pend.data, pend.len);
                else
                    for (size_t k = 0; k < pend.len && !s; k++)
                        s = sl_push(out, "\xEF\xBF\xBD", 3);
                pend.len = 0;
            }
            if (i < in->count && !s)
                s = sl_push(out, in->s[i], in->n[i]);
        }
        ft_buf_free(&pend);
        break;
    }
    case DEC_FUSE: {
        ft_buf b = {0};
        for (size_t i = 0; i < in->count && !s; i++)
            s = ft_buf_append(&b, in->s[i], in->n[i]);
        size_t n;
        char *t = buf_take(&b, &n);
        if (!s)
            s = sl_push_own(out, t, n);
        else
            ft_free(t);
        break;
    }
    case DEC_STRIP: {
        char c8[4];
        size_t cl = (size_t)ft_utf8_encode(d->ch, c8);
        for (size_t i = 0; i < in->count && !s; i++) {
            const char *p = in->s[i];
            size_t a = 0, e = in->n[i];
            for (size_t k = 0; k < d->start && a + cl <= e && !memcmp(p + a, c8, cl); k++)
                a += cl;
            for (size_t k = 0; k < d->stop && e >= a + cl && !memcmp(p + e - cl, c8, cl); k++)
                e -= cl;
            s = sl_push(out, p + a, e - a);
        }
        break;
    }
    }
    if (s && (!err || err->code == FT_OK))
        return FT_ERR(err, s, "decoding failed");
    return s;
}

static ft_status dec_apply(const tok_dec *d, strlist *in, strlist *out, ft_err *err) {
    if (d->kind != DEC_SEQUENCE)
        return dec_one(d, in, out, err);
    strlist cur = *in;
    memset(in, 0, sizeof *in);
    for (size_t i = 0; i < d->n_children; i++) {
        strlist next = {0};
        ft_status s = dec_apply(&d->children[i], &cur, &next, err);
        sl_free(&cur);
        if (s) {
            sl_free(&next);
            return s;
        }
        cur = next;
    }
    *out = cur;
    return FT_OK;
}

ft_status ft_tok_decode(const ft_tok *t, const int32_t *ids, size_t n, bool skip_special_tokens, char **out,
                        size_t *out_len, ft_err *err) {
    *out = NULL;
    strlist toks = {0};
    ft_status s = FT_OK;
    for (size_t i = 0; i < n && !s; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= t->vocab_cap || !t->vocab_str[id])
            continue;
        if (skip_special_tokens && t->special_flag[id])
            continue;
        const char *str = t->vocab_str[id];
        size_t sn = strlen(str);
        for (size_t k = 0; k < t->n_added; k++)
            if (t->added[k].id == id && t->added[k].norm) {
                str = t->added[k].norm;
                sn = t->added[k].norm_len;
                break;
            }
        s = sl_push(&toks, str, sn);
    }
    if (s) {
        sl_free(&toks);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    ft_buf b = {0};
    if (t->dec) {
        strlist res = {0};
        s = dec_apply(t->dec, &toks, &res, err);
        for (size_t i = 0; i < res.count && !s; i++)
            s = ft_buf_append(&b, res.s[i], res.n[i]);
        sl_free(&res);
    } else {
        for (size_t i = 0; i < toks.count && !s; i++) {
            if (i)
                s = ft_buf_putc(&b, ' ');
            if (!s)
                s = ft_buf_append(&b, toks.s[i], toks.n[i]);
        }
    }
    sl_free(&toks);
    if (s) {
        ft_buf_free(&b);
        return err && err->code ? s : FT_ERR(err, s, "decoding failed");
    }
    size_t len;
    *out = buf_take(&b, &len);
    if (!*out)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (out_len)
        *out_len = len;
    return FT_OK;
}

/* ---------------------------------------------------------------- streaming */

struct ft_tok_stream {
    const ft_tok *t;
    bool skip;
    int32_t *ids;
    size_t n, cap;
    char *prefix;
    size_t prefix_len;
    size_t prefix_index;
};

ft_status ft_tok_stream_new(const ft_tok *t, bool skip_special_tokens, ft_tok_stream **out, ft_err *err) {
    ft_tok_stream *s = ft_calloc(1, sizeof *s);
    if (!s)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    s->t = t;
    s->skip = skip_special_tokens;
    *out = s;
    return FT_OK;
}

void ft_tok_stream_reset(ft_tok_stream *s) {
    s->n = 0;
    ft_free(s->prefix);
    s->prefix = NULL;
    s->prefix_len = 0;
    s->prefix_index = 0;
}

void ft_tok_stream_free(ft_tok_stream *s) {
    if (!s)
        return;
    ft_free(s->ids);
    ft_free(s->prefix);
    ft_free(s);
}

static bool ends_with_fffd(const char *s, size_t n) { return n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3); }

ft_status ft_tok_stream_push(ft_tok_stream *s, int32_t id, ft_buf *out, ft_err *err) {
    if (s->prefix_len == 0 && s->n) {
        char *p;
        size_t pn;
        FT_TRY(ft_tok_decode(s->t, s->ids, s->n, s->skip, &p, &pn, err));
        if (!ends_with_fffd(p, pn)) {
            ft_free(s->prefix);
            s->prefix = p;
            s->prefix_len = pn;
            s->prefix_index = s->n;
        } else {
            ft_free(p);
        }
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        int32_t *v = ft_realloc(s->ids, nc * sizeof *v);
        if (!v)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        s->ids = v;
        s->cap = nc;
    }
    s->ids[s->n++] = id;
    char *str;
    size_t sn;
    FT_TRY(ft_tok_decode(s->t, s->ids, s->n, s->skip, &str, &sn, err));
    if (sn > s->prefix_len && !ends_with_fffd(str, sn)) {
        if (s->prefix_len && memcmp(str, s->prefix, s->prefix_len) != 0) {
            ft_free(str);
            return FT_ERR(err, FT_ERR_INVALID, "streaming decode: id %d changed text already emitted", (int)id);
        }
        ft_status st = ft_buf_append(out, str + s->prefix_len, sn - s->prefix_len);
        ft_free(str);
        if (st)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        size_t new_prefix_index = s->n - s->prefix_index;
        memmove(s->ids, s->ids + s->prefix_index, (s->n - s->prefix_index) * sizeof *s->ids);
        s->n -= s->prefix_index;
        ft_free(s->prefix);
        s->prefix = NULL;
        FT_TRY(ft_tok_decode(s->t, s->ids, s->n, s->skip, &s->prefix, &s->prefix_len, err));
        s->prefix_index = new_prefix_index;
        return FT_OK;
    }
    ft_free(str);
    return FT_OK;
}
