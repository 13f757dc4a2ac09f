/* tok/pretok.c: pattern matching and the pre-tokenizers of tokenizer.json (Sequence, Split,
 * ByteLevel, Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit).
 *
 * Matching follows `tokenizers`: a pattern yields (start, end, is_match) segments covering the
 * text, regexes run on Oniguruma (the engine `tokenizers` uses, Ruby syntax, UTF-8) and iterate
 * like rust-onig's find_iter (an empty match right after a match is skipped); the split
 * behaviors (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous) then group the
 * segments, and empty pieces are dropped. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tok/fast_split.h"
#include "tok/tok_internal.h"

/* ---------------------------------------------------------------- patterns */

/* Oniguruma compiles (onig_new, onig_initialize) are not safe to run in several threads at once,
 * searches on a compiled regex are: loading serializes its compiles behind this lock so that
 * tokenizers may be loaded from any thread. It guards the library, not ftune data. */
static pthread_mutex_t onig_compile_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t onig_init_once = PTHREAD_ONCE_INIT;
static void init_onig_once(void) {
    OnigEncoding encs[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(encs, 1);
}

ft_status tok_regex_compile(tok_regex *r, const char *pattern, size_t len, bool is_regex, ft_err *err) {
    memset(r, 0, sizeof *r);
    if (!is_regex) {
        r->literal = ft_strndup(pattern, len);
        if (!r->literal)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        r->literal_len = len;
        return FT_OK;
    }
    OnigErrorInfo einfo;
    /* \p{L} and friends with the Unicode version `tokenizers` has (unicode.c) */
    ft_buf rw = {0};
    if (tok_rewrite_properties(pattern, len, &rw)) {
        ft_buf_free(&rw);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    pthread_once(&onig_init_once, init_onig_once);
    pthread_mutex_lock(&onig_compile_lock);
    int rc = onig_new(&r->re, (const OnigUChar *)ft_buf_cstr(&rw), (const OnigUChar *)rw.data + rw.len,
                      ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_RUBY, &einfo);
    pthread_mutex_unlock(&onig_compile_lock);
    ft_buf_free(&rw);
    if (rc != ONIG_NORMAL) {
        OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, rc, &einfo);
        r->re = NULL;
        return FT_ERR(err, FT_ERR_INVALID, "bad regex /%.*s/: %s", (int)(len > 200 ? 200 : len), pattern, (char *)msg);
    }
    fast_split_detect(r, pattern, len);
    return FT_OK;
}

void tok_regex_free(tok_regex *r) {
    if (r->re) {
        pthread_mutex_lock(&onig_compile_lock);
        onig_free(r->re);
        pthread_mutex_unlock(&onig_compile_lock);
    }
    ft_free(r->literal);
    memset(r, 0, sizeof *r);
}

static ft_status mv_push(match_vec *mv, size_t a, size_t e, bool m) {
    if (mv->n == mv->cap) {
        size_t nc = mv->cap ? mv->cap * 2 : 64;
        size_t *v = ft_realloc(mv->v, 3 * nc * sizeof *v);
        if (!v)
            return FT_ERR_NOMEM;
        mv->v = v;
        mv->cap = nc;
    }
    mv->v[3 * mv->n] = a;
    mv->v[3 * mv->n + 1] = e;
    mv->v[3 * mv->n + 2] = m;
    mv->n++;
    return FT_OK;
}

/* Emit a match [a, e) after the text since *prev. */
static ft_status mv_match(match_vec *mv, size_t *prev, size_t a, size_t e) {
    if (*prev != a)
        FT_TRY(mv_push(mv, *prev, a, false));
    FT_TRY(mv_push(mv, a, e, true));
    *prev = e;
    return FT_OK;
}

ft_status tok_find_matches(const tok_regex *re, const char *s, size_t n, match_vec *out, ft_err *err) {
    out->n = 0;
    if (n == 0)
        return mv_push(out, 0, 0, false) ? FT_ERR(err, FT_ERR_NOMEM, "out of memory") : FT_OK;
    size_t prev = 0;
    ft_status st = FT_OK;
    if (!re->re) {
        if (re->literal_len) {
            for (size_t i = 0; i + re->literal_len <= n && !st;) {
                const char *hit = memmem(s + i, n - i, re->literal, re->literal_len);
                if (!hit)
                    break;
                size_t a = (size_t)(hit - s);
                st = mv_match(out, &prev, a, a + re->literal_len);
                i = a + re->literal_len;
            }
        }
    } else if (re->fast) {
        size_t pos = 0;
        while (pos < n && !st) {
            size_t e = fast_split_next(re, s, n, pos);
            st = mv_match(out, &prev, pos, e);
            pos = e;
        }
    } else {
        OnigRegion *region = onig_region_new();
        if (!region)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        const OnigUChar *str = (const OnigUChar *)s, *end = str + n;
        size_t last_end = 0;
        bool have_last = false;
        size_t last_match = 0;
        while (last_end <= n && !st) {
            int r = onig_search(re->re, str, end, str + last_end, end, region, ONIG_OPTION_NONE);
            if (r == ONIG_MISMATCH)
                break;
            if (r < 0) {
                OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
                onig_error_code_to_str(msg, r);
                onig_region_free(region, 1);
                return FT_ERR(err, FT_ERR_LIMIT, "regex search failed: %s", (char *)msg);
            }
            size_t a = (size_t)region->beg[0], e = (size_t)region->end[0];
            if (a == e && have_last && last_match == e) {
                last_end += e < n ? (size_t)tok_utf8_len((unsigned char)s[e]) : 1;
                continue;
            }
            last_end = e;
            last_match = e;
            have_last = true;
            st = mv_match(out, &prev, a, e);
        }
        onig_region_free(region, 1);
    }
    if (!st && prev != n)
        st = mv_push(out, prev, n, false);
    if (st)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    return FT_OK;
}

/* Segments where a character predicate holds (each such char is one match). */
static ft_status find_char_matches(bool (*pred)(uint32_t), const char *s, size_t n, match_vec *out) {
    out->n = 0;
    if (n == 0)
        return mv_push(out, 0, 0, false);
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int cl = tok_utf8_next(s + i, n - i, &c);
        if (pred(c)) {
            if (last < i)
                FT_TRY(mv_push(out, last, i, false));
            FT_TRY(mv_push(out, i, i + (size_t)cl, true));
            last = i + (size_t)cl;
        }
        i += (size_t)cl;
    }
    if (n > last)
        FT_TRY(mv_push(out, last, n, false));
    return FT_OK;
}

/* The matches of `\w+|[^\w\s]+` with Rust regex classes (Whitespace pre-tokenizer): runs of
 * word chars and runs of other non-space chars; whitespace is what lies between. */
static ft_status find_word_runs(const char *s, size_t n, match_vec *out) {
    out->n = 0;
    if (n == 0)
        return mv_push(out, 0, 0, false);
    size_t prev = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int cl = tok_utf8_next(s + i, n - i, &c);
        int cls = tok_is_word_char(c) ? 1 : tok_is_whitespace(c) ? 0 : 2;
        if (cls == 0) {
            i += (size_t)cl;
            continue;
        }
        size_t j = i + (size_t)cl;
        while (j < n) {
            uint32_t d;
            int dl = tok_utf8_next(s + j, n - j, &d);
            int dc = tok_is_word_char(d) ? 1 : tok_is_whitespace(d) ? 0 : 2;
            if (dc != cls)
                break;
            j += (size_t)dl;
        }
        FT_TRY(mv_match(out, &prev, i, j));
        i = j;
    }
    if (prev != n)
        FT_TRY(mv_push(out, prev, n, false));
    return FT_OK;
}

/* Group segments by behavior and push the non-empty pieces. */
static ft_status split_by(const piece *p, match_vec *mv, split_behavior b, bool invert, piece_vec *out) {
    size_t n = mv->n;
    size_t *v = mv->v;
    if (invert)
        for (size_t k = 0; k < n; k++)
            v[3 * k + 2] = !v[3 * k + 2];
    /* Rewrite in place into (start, end, remove) */
    size_t m = 0;
    switch (b) {
    case SPLIT_ISOLATED:
        for (size_t k = 0; k < n; k++)
            v[3 * k + 2] = 0;
        m = n;
        break;
    case SPLIT_REMOVED:
        m = n;
        break;
    case SPLIT_CONTIGUOUS: {
        bool prev_match = false;
        for (size_t k = 0; k < n; k++) {
            bool is = v[3 * k + 2];
            if (is == prev_match && m > 0) {
                v[3 * (m - 1) + 1] = v[3 * k + 1];
            } else {
                v[3 * m] = v[3 * k];
                v[3 * m + 1] = v[3 * k + 1];
                v[3 * m + 2] = 0;
                m++;
            }
            prev_match = is;
        }
        break;
    }
    case SPLIT_MERGED_PREV: {
        bool prev_match = false;
        for (size_t k = 0; k < n; k++) {
            bool is = v[3 * k + 2];
            if (is && !prev_match && m > 0) {
                v[3 * (m - 1) + 1] = v[3 * k + 1];
            } else {
                v[3 * m] = v[3 * k];
                v[3 * m + 1] = v[3 * k + 1];
                v[3 * m + 2] = 0;
                m++;
            }
            prev_match = is;
        }
        break;
    }
    case SPLIT_MERGED_NEXT: {
        /* walk backwards, merging a match into the piece after it */
        bool prev_match = false;
        size_t w = n; /* write from the end */
        for (size_t k = n; k-- > 0;) {
            bool is = v[3 * k + 2];
            size_t a = v[3 * k], e = v[3 * k + 1];
            if (is && !prev_match && w < n) {
                v[3 * w] = a;
            } else {
                w--;
                v[3 * w] = a;
                v[3 * w + 1] = e;
                v[3 * w + 2] = 0;
            }
            prev_match = is;
        }
        memmove(v, v + 3 * w, 3 * (n - w) * sizeof *v);
        m = n - w;
        break;
    }
    }
    for (size_t k = 0; k < m; k++) {
        if (v[3 * k + 2] || v[3 * k + 1] == v[3 * k])
            continue;
        FT_TRY(piece_push(out, piece_sub(p, v[3 * k], v[3 * k + 1])));
    }
    return FT_OK;
}

/* ---------------------------------------------------------------- pre-tokenizers */

/* Copy p with `pre` (one char's bytes) in front; the new bytes map to p's first char. */
static ft_status prepend_str(piece *p, const char *pre, size_t pn, scratch *mem) {
    char *s = scratch_alloc(mem, p->n + pn);
    size_t *al = scratch_alloc(mem, 2 * (p->n + pn) * sizeof *al);
    if (!s || !al)
        return FT_ERR_NOMEM;
    size_t a = p->n ? piece_orig_start(p, 0) : p->base, e = a;
    if (p->n) {
        size_t cl = (size_t)tok_utf8_len((unsigned char)p->s[0]);
        e = piece_orig_end(p, (cl <= p->n ? cl : p->n) - 1);
    }
    memcpy(s, pre, pn);
    for (size_t i = 0; i < pn; i++) {
        al[2 * i] = a;
        al[2 * i + 1] = e;
    }
    memcpy(s + pn, p->s, p->n);
    for (size_t i = 0; i < p->n; i++) {
        al[2 * (pn + i)] = piece_orig_start(p, i);
        al[2 * (pn + i) + 1] = piece_orig_end(p, i);
    }
    p->s = s;
    p->al = al;
    p->n += pn;
    return FT_OK;
}

/* Metaspace: every ' ' becomes the replacement (3 bytes for U+2581), then the prefix. */
static ft_status metaspace_transform(const tok_pre *pre, piece *p, scratch *mem) {
    size_t spaces = 0;
    for (size_t i = 0; i < p->n; i++)
        spaces += p->s[i] == ' ';
    size_t rl = (size_t)pre->rep_len;
    if (spaces) {
        size_t nn = p->n + spaces * (rl - 1);
        char *s = scratch_alloc(mem, nn + 1);
        size_t *al = scratch_alloc(mem, 2 * (nn + 1) * sizeof *al);
        if (!s || !al)
            return FT_ERR_NOMEM;
        size_t o = 0;
        for (size_t i = 0; i < p->n; i++) {
            size_t a = piece_orig_start(p, i), e = piece_orig_end(p, i);
            if (p->s[i] == ' ') {
                for (size_t k = 0; k < rl; k++) {
                    s[o] = pre->rep_utf8[k];
                    al[2 * o] = a;
                    al[2 * o + 1] = e;
                    o++;
                }
            } else {
                s[o] = p->s[i];
                al[2 * o] = a;
                al[2 * o + 1] = e;
                o++;
            }
        }
        p->s = s;
        p->al = al;
        p->n = nn;
    }
    bool starts = p->n >= rl && memcmp(p->s, pre->rep_utf8, rl) == 0;
    bool add = false;
    if (pre->prepend_scheme == PREPEND_ALWAYS)
        add = !starts;
    else if (pre->prepend_scheme == PREPEND_FIRST)
        add = !starts && (p->n ? piece_orig_start(p, 0) : p->base) == 0;
    if (add)
        FT_TRY(prepend_str(p, pre->rep_utf8, rl, mem));
    return FT_OK;
}

static bool is_rep_char(uint32_t c, uint32_t rep) { return c == rep; }

static ft_status pre_one(const ft_tok *t, const tok_pre *pre, enc_state *st, const piece *p, piece_vec *out,
                         match_vec *mv, ft_err *err) {
    (void)t;
    ft_status s = FT_OK;
    switch (pre->kind) {
    case PRE_SEQUENCE:
        return FT_ERR(err, FT_ERR_INTERNAL, "nested sequence reached pre_one");
    case PRE_SPLIT:
        FT_TRY(tok_find_matches(&pre->pat, p->s, p->n, mv, err));
        s = split_by(p, mv, pre->behavior, pre->invert, out);
        break;
    case PRE_BYTELEVEL: {
        piece q = *p;
        if (pre->add_prefix_space && !(q.n && q.s[0] == ' '))
            if (prepend_str(&q, " ", 1, &st->mem))
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        if (pre->use_regex) {
            FT_TRY(tok_find_matches(&pre->pat, q.s, q.n, mv, err));
            s = split_by(&q, mv, SPLIT_ISOLATED, false, out);
        } else if (q.n) {
            s = piece_push(out, q);
        }
        break;
    }
    case PRE_METASPACE: {
        piece q = *p;
        if (metaspace_transform(pre, &q, &st->mem))
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        if (pre->split) {
            /* split on the replacement char, MergedWithNext */
            mv->n = 0;
            if (q.n == 0) {
                s = FT_OK;
                break;
            }
            size_t last = 0;
            for (size_t i = 0; i < q.n && !s;) {
                uint32_t c;
                int cl = tok_utf8_next(q.s + i, q.n - i, &c);
                if (is_rep_char(c, pre->replacement)) {
                    if (last < i)
                        s = mv_push(mv, last, i, false);
                    if (!s)
                        s = mv_push(mv, i, i + (size_t)cl, true);
                    last = i + (size_t)cl;
                }
                i += (size_t)cl;
            }
            if (!s && q.n > last)
                s = mv_push(mv, last, q.n, false);
            if (!s)
                s = split_by(&q, mv, SPLIT_MERGED_NEXT, false, out);
        } else if (q.n) {
            s = piece_push(out, q);
        }
        break;
    }
    case PRE_DIGITS:
        s = find_char_matches(tok_is_numeric, p->s, p->n, mv);
        if (!s)
            s = split_by(p, mv, pre->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, false, out);
        break;
    case PRE_PUNCTUATION:
        s = find_char_matches(tok_is_punct, p->s, p->n, mv);
        if (!s)
            s = split_by(p, mv, pre->behavior, false, out);
        break;
    case PRE_WHITESPACE:
        s = find_word_runs(p->s, p->n, mv);
        if (!s)
            s = split_by(p, mv, SPLIT_REMOVED, true, out);
        break;
    case PRE_WHITESPACE_SPLIT:
        s = find_char_matches(tok_is_whitespace, p->s, p->n, mv);
        if (!s)
            s = split_by(p, mv, SPLIT_REMOVED, false, out);
        break;
    }
    if (s)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory while pre-tokenizing");
    return FT_OK;
}

/* Run one pre-tokenizer (or a Sequence) over the pieces in st->a that are not added tokens;
 * the result replaces st->a (st->b is the spare list). */
ft_status tok_pretokenize(const ft_tok *t, const tok_pre *pre, enc_state *st, ft_err *err) {
    if (!pre)
        return FT_OK;
    if (pre->kind == PRE_SEQUENCE) {
        for (size_t i = 0; i < pre->n_children; i++)
            FT_TRY(tok_pretokenize(t, &pre->children[i], st, err));
        return FT_OK;
    }
    st->b.n = 0;
    ft_status s = FT_OK;
    for (size_t i = 0; i < st->a.n && !s; i++) {
        const piece *p = &st->a.v[i];
        if (p->added >= 0) {
            if (piece_push(&st->b, *p))
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            continue;
        }
        s = pre_one(t, pre, st, p, &st->b, &st->mv, err);
    }
    piece_vec tmp = st->a;
    st->a = st->b;
    st->b = tmp;
    return s;
}
