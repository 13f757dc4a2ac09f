/* tok/encode.c: the encoding pipeline of `tokenizers` (tokenizer/mod.rs encode_single_sequence
 * and added_vocabulary.rs): added tokens that are not normalized are split out of the raw text,
 * each remaining segment is normalized on its own, normalized added tokens are split out of
 * that, the pre-tokenizer cuts the rest into words, BPE turns each word into tokens, and the
 * post-processor adds the template's special tokens. Offsets are carried as byte ranges of the
 * caller's text all along. Also the multi-threaded batch encoder. */
#include <omp.h>
#include <string.h>

#include "tok/tok_internal.h"

/* ---------------------------------------------------------------- invalid UTF-8 */

/* Length of the maximal subpart of an ill-formed sequence at s (Unicode 3.9, the rule Rust's
 * from_utf8_lossy follows): each becomes one U+FFFD. */
size_t tok_bad_subpart(const unsigned char *s, size_t n) {
    unsigned b = s[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t need;
    if (b >= 0xC2 && b <= 0xDF)
        need = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0)
            lo = 0xA0;
        if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0)
            lo = 0x90;
        if (b == 0xF4)
            hi = 0x8F;
    } else
        return 1;
    size_t k = 1;
    for (; k <= need && k < n; k++) {
        unsigned c = s[k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF))
            break;
    }
    return k;
}

/* Replace ill-formed sequences by U+FFFD; the piece maps each replacement to its bytes. */
static ft_status make_valid(const char *text, size_t len, piece *p, scratch *mem) {
    size_t cap = len * 3 + 1;
    char *s = scratch_alloc(mem, cap);
    size_t *al = scratch_alloc(mem, 2 * cap * sizeof *al);
    if (!s || !al)
        return FT_ERR_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t v = ft_utf8_valid_prefix(text + i, len - i);
        for (size_t k = 0; k < v; k++) {
            s[o] = text[i + k];
            al[2 * o] = i + k;
            al[2 * o + 1] = i + k + 1;
            o++;
        }
        i += v;
        if (i >= len)
            break;
        size_t b = tok_bad_subpart((const unsigned char *)text + i, len - i);
        static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
        for (int k = 0; k < 3; k++) {
            s[o] = fffd[k];
            al[2 * o] = i;
            al[2 * o + 1] = i + b;
            o++;
        }
        i += b;
    }
    p->s = s;
    p->n = o;
    p->al = al;
    p->base = 0;
    p->added = -1;
    return FT_OK;
}

/* ---------------------------------------------------------------- added tokens */

static bool ends_with_word(const char *s, size_t n) {
    if (!n)
        return false;
    size_t k = n - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    uint32_t c;
    tok_utf8_next(s + k, n - k, &c);
    return tok_is_word_char(c);
}
static bool starts_with_word(const char *s, size_t n) {
    if (!n)
        return false;
    uint32_t c;
    tok_utf8_next(s, n, &c);
    return tok_is_word_char(c);
}

/* Split p by the added tokens of `set` into pieces (tokens get .added = id), appended to out. */
static ft_status split_added(const ft_tok *t, const added_set *set, bool normalized, const piece *p, piece_vec *out) {
    if (!set->any || p->n == 0)
        return p->n ? piece_push(out, *p) : FT_OK;
    const char *s = p->s;
    size_t n = p->n, start_offset = 0;
    for (size_t i = 0; i < n;) {
        unsigned b = (unsigned char)s[i];
        const uint32_t *cands = set->by_first[b];
        size_t nc = set->n_first[b];
        const added_tok *hit = NULL;
        size_t hn = 0;
        for (size_t k = 0; k < nc; k++) {
            const added_tok *a = &t->added[cands[k]];
            size_t pn;
            const char *pat = (normalized && a->norm) ? (pn = a->norm_len, a->norm) : (pn = a->len, a->content);
            if (pn <= n - i && memcmp(s + i, pat, pn) == 0) {
                hit = a;
                hn = pn;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t start = i, stop = i + hn;
        i = stop; /* the matcher moves on past a match even when it is discarded below */
        if (hit->single_word) {
            bool start_space = start == 0 || !ends_with_word(s, start);
            bool stop_space = stop == n || !starts_with_word(s + stop, n - stop);
            if (!start_space || !stop_space)
                continue;
        }
        if (hit->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t k = ns - 1;
                while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
                    k--;
                uint32_t c;
                tok_utf8_next(s + k, ns - k, &c);
                if (!tok_is_whitespace(c))
                    break;
                ns = k;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (hit->rstrip) {
            while (stop < n) {
                uint32_t c;
                int cl = tok_utf8_next(s + stop, n - stop, &c);
                if (!tok_is_whitespace(c))
                    break;
                stop += (size_t)cl;
            }
            i = stop;
        }
        if (start_offset < start)
            FT_TRY(piece_push(out, piece_sub(p, start_offset, start)));
        piece q = piece_sub(p, start, stop);
        q.added = hit->id;
        FT_TRY(piece_push(out, q));
        start_offset = stop;
    }
    if (start_offset < n)
        FT_TRY(piece_push(out, piece_sub(p, start_offset, n)));
    return FT_OK;
}

/* ---------------------------------------------------------------- encoding */

static ft_status enc_reserve(ft_tok_encoding *e, size_t extra) {
    if (e->n + extra <= e->cap)
        return FT_OK;
    size_t nc = e->cap ? e->cap * 2 : 256;
    while (nc < e->n + extra)
        nc *= 2;
    int32_t *ids = ft_realloc(e->ids, nc * sizeof *ids);
    if (!ids)
        return FT_ERR_NOMEM;
    e->ids = ids;
    ft_tok_span *off = ft_realloc(e->offsets, nc * sizeof *off);
    if (!off)
        return FT_ERR_NOMEM;
    e->offsets = off;
    e->cap = nc;
    return FT_OK;
}

void ft_tok_encoding_init(ft_tok_encoding *e) { memset(e, 0, sizeof *e); }

void ft_tok_encoding_free(ft_tok_encoding *e) {
    if (!e)
        return;
    ft_free(e->ids);
    ft_free(e->offsets);
    if (e->scratch_) {
        enc_state_free(e->scratch_);
        ft_free(e->scratch_);
    }
    memset(e, 0, sizeof *e);
}

/* Original byte range of piece bytes [a, b), widened to whole characters. */
static ft_tok_span piece_span(const piece *p, size_t a, size_t b) {
    while (a > 0 && ((unsigned char)p->s[a] & 0xC0) == 0x80)
        a--;
    while (b < p->n && ((unsigned char)p->s[b] & 0xC0) == 0x80)
        b++;
    if (b <= a)
        return (ft_tok_span){piece_orig_start(p, a < p->n ? a : 0), piece_orig_start(p, a < p->n ? a : 0)};
    return (ft_tok_span){piece_orig_start(p, a), piece_orig_end(p, b - 1)};
}

/* The ByteLevel post-processor with trim_offsets (processors/byte_level.rs process_offsets):
 * leading and trailing spaces ('Ġ' or whitespace in the token's string) leave the token's
 * span, except the one space a first token got from add_prefix_space. */
static void trim_offsets(const ft_tok *t, const int32_t *ids, ft_tok_span *off, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const char *s = ft_tok_id_to_token(t, ids[i]);
        if (!s)
            continue;
        size_t len = strlen(s), lead = 0, trail = 0;
        uint32_t c;
        for (size_t k = 0; k < len;) {
            int cl = ft_utf8_decode(s + k, len - k, &c);
            if (cl <= 0 || !(c == 0x120 || tok_is_whitespace(c)))
                break;
            lead++;
            k += (size_t)cl;
        }
        for (size_t k = len; k > 0;) {
            size_t b = k - 1;
            while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80)
                b--;
            int cl = ft_utf8_decode(s + b, k - b, &c);
            if (cl <= 0 || !(c == 0x120 || tok_is_whitespace(c)))
                break;
            trail++;
            k = b;
        }
        if (lead) {
            bool first = i == 0 || off[i].start == 0;
            if (first && t->post_trim_prefix_space && lead == 1)
                lead = 0;
            off[i].start = off[i].start + lead < off[i].end ? off[i].start + lead : off[i].end;
        }
        if (trail && off[i].end >= trail)
            off[i].end = off[i].end - trail > off[i].start ? off[i].end - trail : off[i].start;
    }
}

ft_status ft_tok_encode(const ft_tok *t, const char *text, size_t len, bool add_special_tokens, ft_tok_encoding *out,
                        ft_err *err) {
    out->n = 0;
    if (!out->scratch_) {
        out->scratch_ = ft_calloc(1, sizeof(enc_state));
        if (!out->scratch_)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    enc_state *st = out->scratch_;
    if (st->owner != t) {
        /* the cache belongs to one tokenizer */
        enc_state_free(st);
        memset(st, 0, sizeof *st);
        st->owner = t;
    }
    scratch_reset(&st->mem);
    if (!text)
        len = 0;
    piece whole = {.s = text ? text : "", .n = len, .al = NULL, .base = 0, .added = -1};
    if (ft_utf8_valid_prefix(whole.s, len) != len)
        if (make_valid(text, len, &whole, &st->mem))
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");

    /* 1. added tokens matched on the raw text, 2. normalize each other segment, 3. normalized
     * added tokens */
    st->a.n = 0;
    st->b.n = 0;
    FT_TRY(split_added(t, &t->set_raw, false, &whole, &st->b) ? FT_ERR(err, FT_ERR_NOMEM, "out of memory") : FT_OK);
    if (t->norm || t->set_norm.any) {
        for (size_t i = 0; i < st->b.n; i++) {
            piece p = st->b.v[i];
            if (p.added >= 0) {
                if (piece_push(&st->a, p))
                    return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                continue;
            }
            FT_TRY(tok_normalize(t, t->norm, &p, &st->mem, err));
            if (split_added(t, &t->set_norm, true, &p, &st->a))
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        }
    } else {
        piece_vec tmp = st->a;
        st->a = st->b;
        st->b = tmp;
    }
    st->b.n = 0;

    /* 4. pre-tokenize */
    FT_TRY(tok_pretokenize(t, t->pre, st, err));

    /* 5. model, 6. post-processor */
    size_t nb = add_special_tokens ? t->n_post_before : 0, na = add_special_tokens ? t->n_post_after : 0;
    if (enc_reserve(out, nb + na + st->a.n))
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nb; i++) {
        out->ids[out->n] = t->post_before[i];
        out->offsets[out->n++] = (ft_tok_span){0, 0};
    }
    for (size_t i = 0; i < st->a.n; i++) {
        const piece *p = &st->a.v[i];
        if (p->added >= 0) {
            if (enc_reserve(out, 1))
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            out->ids[out->n] = p->added;
            out->offsets[out->n++] = piece_span(p, 0, p->n);
            continue;
        }
        FT_TRY(tok_bpe(t, st, p->s, p->n, err));
        if (enc_reserve(out, st->out_n + na))
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        size_t pos = 0;
        for (size_t k = 0; k < st->out_n; k++) {
            size_t e = pos + st->out_len[k];
            if (e > p->n)
                e = p->n;
            out->ids[out->n] = st->out_id[k];
            out->offsets[out->n++] = piece_span(p, pos, e);
            pos = e;
        }
    }
    if (t->post_trim_offsets && out->n > nb)
        trim_offsets(t, out->ids + nb, out->offsets + nb, out->n - nb);
    if (enc_reserve(out, na))
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < na; i++) {
        out->ids[out->n] = t->post_after[i];
        out->offsets[out->n++] = (ft_tok_span){0, 0};
    }
    return FT_OK;
}

ft_status ft_tok_encode_ids(const ft_tok *t, const char *text, size_t len, bool add_special_tokens, int32_t **ids,
                            size_t *n, ft_err *err) {
    *ids = NULL;
    *n = 0;
    ft_tok_encoding enc;
    ft_tok_encoding_init(&enc);
    ft_status s = ft_tok_encode(t, text, len, add_special_tokens, &enc, err);
    if (s == FT_OK) {
        *ids = ft_malloc((enc.n ? enc.n : 1) * sizeof(int32_t));
        if (!*ids)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        else {
            memcpy(*ids, enc.ids, enc.n * sizeof(int32_t));
            *n = enc.n;
        }
    }
    ft_tok_encoding_free(&enc);
    return s;
}

/* ---------------------------------------------------------------- batches */

ft_status ft_tok_encode_batch(const ft_tok *t, const char *const *texts, const size_t *lens, size_t n_texts,
                              bool add_special_tokens, int threads, ft_tok_batch *out, ft_err *err) {
    memset(out, 0, sizeof *out);
    int32_t **rows = ft_calloc(n_texts + 1, sizeof *rows);
    size_t *rn = ft_calloc(n_texts + 1, sizeof *rn);
    out->row_start = ft_calloc(n_texts + 1, sizeof *out->row_start);
    if (!rows || !rn || !out->row_start) {
        ft_free(rows);
        ft_free(rn);
        ft_free(out->row_start);
        out->row_start = NULL;
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (threads <= 0)
        threads = omp_get_max_threads();
    ft_status first = FT_OK;
    ft_err first_err;
    ft_err_clear(&first_err);
#pragma omp parallel num_threads(threads)
    {
        ft_tok_encoding enc = {0};
        ft_err e;
        ft_err_clear(&e);
#pragma omp for schedule(dynamic, 8)
        for (size_t i = 0; i < n_texts; i++) {
            ft_status s = ft_tok_encode(t, texts[i], lens[i], add_special_tokens, &enc, &e);
            if (!s) {
                rows[i] = ft_malloc((enc.n ? enc.n : 1) * sizeof(int32_t));
                if (!rows[i])
                    s = FT_ERR(&e, FT_ERR_NOMEM, "out of memory");
                else {
                    if (enc.n)
                        memcpy(rows[i], enc.ids, enc.n * sizeof(int32_t));
                    rn[i] = enc.n;
                }
            }
            if (s) {
#pragma omp critical(ft_tok_batch_err)
                if (!first) {
                    first = s;
                    first_err = e;
                }
            }
        }
        ft_tok_encoding_free(&enc);
    }
    size_t total = 0;
    for (size_t i = 0; i < n_texts; i++) {
        out->row_start[i] = total;
        total += rn[i];
    }
    out->row_start[n_texts] = total;
    out->n_texts = n_texts;
    if (!first) {
        out->ids = ft_malloc((total ? total : 1) * sizeof *out->ids);
        if (!out->ids)
            first = FT_ERR(&first_err, FT_ERR_NOMEM, "out of memory");
        else
            for (size_t i = 0; i < n_texts; i++)
                if (rn[i])
                    memcpy(out->ids + out->row_start[i], rows[i], rn[i] * sizeof(int32_t));
    }
    for (size_t i = 0; i < n_texts; i++)
        ft_free(rows[i]);
    ft_free(rows);
    ft_free(rn);
    if (first) {
        if (err)
            *err = first_err;
        ft_tok_batch_free(out);
        return first;
    }
    return FT_OK;
}

void ft_tok_batch_free(ft_tok_batch *b) {
    if (!b)
        return;
    ft_free(b->ids);
    ft_free(b->row_start);
    memset(b, 0, sizeof *b);
}
