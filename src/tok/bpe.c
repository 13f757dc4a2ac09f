/* tok/bpe.c: the BPE model of tokenizer.json, merge for merge as `tokenizers` does it
 * (models/bpe: lowest merge rank first, leftmost on ties), plus the hash maps and the scratch
 * allocator the pipeline uses, and a per-encoding cache of pre-token -> tokens.
 *
 * Why two merge loops: most pre-tokens are a few symbols long, where scanning the live pairs
 * for the lowest rank beats a heap; long words (hundreds of symbols) take the heap, which gives
 * the same merge order (see the note above merge_heap). */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* ---------------------------------------------------------------- hashing */

uint64_t tok_hash(const char *s, size_t n) {
    /* FNV-1a over 8-byte words then a final mix: fast for short keys, good enough spread. */
    uint64_t h = 0xcbf29ce484222325ull ^ (n * 0x9E3779B97F4A7C15ull);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, n - i);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static ft_status strmap_grow(strmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    uint32_t *slots = ft_calloc(ncap, sizeof *slots);
    if (!slots)
        return FT_ERR_NOMEM;
    for (size_t e = 0; e < m->n; e++) {
        size_t i = (size_t)m->hash[e] & (ncap - 1);
        while (slots[i])
            i = (i + 1) & (ncap - 1);
        slots[i] = (uint32_t)e + 1;
    }
    ft_free(m->slots);
    m->slots = slots;
    m->cap = ncap;
    return FT_OK;
}

ft_status strmap_put(strmap *m, const char *k, size_t n, int32_t v) {
    if ((m->n + 1) * 2 > m->cap)
        FT_TRY(strmap_grow(m));
    uint64_t h = tok_hash(k, n);
    size_t i = (size_t)h & (m->cap - 1);
    while (m->slots[i]) {
        size_t e = m->slots[i] - 1;
        if (m->hash[e] == h && m->key_len[e] == n && memcmp(m->blob.data + m->key_off[e], k, n) == 0) {
            m->val[e] = v;
            return FT_OK;
        }
        i = (i + 1) & (m->cap - 1);
    }
    if (m->n == m->n_cap) {
        size_t nc = m->n_cap ? m->n_cap * 2 : 1024;
        size_t *ko = ft_realloc(m->key_off, nc * sizeof *ko);
        if (!ko)
            return FT_ERR_NOMEM;
        m->key_off = ko;
        uint32_t *kl = ft_realloc(m->key_len, nc * sizeof *kl);
        if (!kl)
            return FT_ERR_NOMEM;
        m->key_len = kl;
        int32_t *vv = ft_realloc(m->val, nc * sizeof *vv);
        if (!vv)
            return FT_ERR_NOMEM;
        m->val = vv;
        uint64_t *hh = ft_realloc(m->hash, nc * sizeof *hh);
        if (!hh)
            return FT_ERR_NOMEM;
        m->hash = hh;
        m->n_cap = nc;
    }
    size_t e = m->n++;
    m->key_off[e] = m->blob.len;
    m->key_len[e] = (uint32_t)n;
    m->val[e] = v;
    m->hash[e] = h;
    FT_TRY(ft_buf_append(&m->blob, k, n));
    m->slots[i] = (uint32_t)e + 1;
    return FT_OK;
}

int32_t strmap_get(const strmap *m, const char *k, size_t n) {
    if (!m->cap)
        return -1;
    uint64_t h = tok_hash(k, n);
    size_t i = (size_t)h & (m->cap - 1);
    uint32_t sl;
    while ((sl = m->slots[i])) {
        size_t e = sl - 1;
        if (m->hash[e] == h && m->key_len[e] == n && memcmp(m->blob.data + m->key_off[e], k, n) == 0)
            return m->val[e];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

void strmap_free(strmap *m) {
    ft_free(m->slots);
    ft_free(m->key_off);
    ft_free(m->key_len);
    ft_free(m->val);
    ft_free(m->hash);
    ft_buf_free(&m->blob);
    memset(m, 0, sizeof *m);
}

static ft_status pairmap_grow(pairmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 4096;
    pairmap n = {0};
    n.keys = ft_calloc(ncap, sizeof *n.keys);
    n.rank = ft_malloc(ncap * sizeof *n.rank);
    n.merged = ft_malloc(ncap * sizeof *n.merged);
    if (!n.keys || !n.rank || !n.merged) {
        pairmap_free(&n);
        return FT_ERR_NOMEM;
    }
    n.cap = ncap;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        uint64_t key = m->keys[i];
        uint64_t h = key * 0x9E3779B97F4A7C15ull;
        size_t j = (size_t)(h >> 20) & (ncap - 1);
        while (n.keys[j])
            j = (j + 1) & (ncap - 1);
        n.keys[j] = key;
        n.rank[j] = m->rank[i];
        n.merged[j] = m->merged[i];
    }
    n.n = m->n;
    pairmap_free(m);
    *m = n;
    return FT_OK;
}

ft_status pairmap_put(pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    if ((m->n + 1) * 2 > m->cap)
        FT_TRY(pairmap_grow(m));
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = m->cap - 1, i = (size_t)(h >> 20) & mask;
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & mask;
    if (!m->keys[i])
        m->n++;
    m->keys[i] = key;
    m->rank[i] = rank; /* a later duplicate wins, as in `tokenizers`' HashMap collect */
    m->merged[i] = merged;
    return FT_OK;
}

void pairmap_free(pairmap *m) {
    ft_free(m->keys);
    ft_free(m->rank);
    ft_free(m->merged);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- scratch memory */

void *scratch_alloc(scratch *s, size_t n) {
    n = (n + 15) & ~(size_t)15;
    scratch_block *b = s->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        /* reuse a following (already reset) block when it fits */
        if (b && b->next && b->next->cap >= n && b->next->used == 0) {
            /* rotate: move the empty block to the head */
            scratch_block *nb = b->next;
            b->next = nb->next;
            nb->next = b;
            s->head = nb;
            b = nb;
        } else {
            scratch_block *nb = ft_malloc(sizeof *nb + cap);
            if (!nb)
                return NULL;
            nb->cap = cap;
            nb->used = 0;
            nb->next = b;
            s->head = nb;
            b = nb;
        }
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void scratch_reset(scratch *s) {
    /* keep only the largest block so steady-state encoding allocates nothing */
    scratch_block *keep = NULL;
    for (scratch_block *b = s->head, *nx; b; b = nx) {
        nx = b->next;
        if (!keep || b->cap > keep->cap) {
            if (keep)
                ft_free(keep);
            keep = b;
        } else {
            ft_free(b);
        }
    }
    if (keep) {
        keep->used = 0;
        keep->next = NULL;
    }
    s->head = keep;
}

void scratch_free(scratch *s) {
    for (scratch_block *b = s->head, *nx; b; b = nx) {
        nx = b->next;
        ft_free(b);
    }
    s->head = NULL;
}

ft_status piece_push(piece_vec *pv, piece p) {
    if (pv->n == pv->cap) {
        size_t nc = pv->cap ? pv->cap * 2 : 64;
        piece *v = ft_realloc(pv->v, nc * sizeof *v);
        if (!v)
            return FT_ERR_NOMEM;
        pv->v = v;
        pv->cap = nc;
    }
    pv->v[pv->n++] = p;
    return FT_OK;
}

/* ---------------------------------------------------------------- BPE */

static ft_status out_push(enc_state *st, int32_t id, uint32_t len) {
    if (st->out_n == st->out_cap) {
        size_t nc = st->out_cap ? st->out_cap * 2 : 256;
        int32_t *a = ft_realloc(st->out_id, nc * sizeof *a);
        if (!a)
            return FT_ERR_NOMEM;
        st->out_id = a;
        uint32_t *b = ft_realloc(st->out_len, nc * sizeof *b);
        if (!b)
            return FT_ERR_NOMEM;
        st->out_len = b;
        st->out_cap = nc;
    }
    st->out_id[st->out_n] = id;
    st->out_len[st->out_n] = len;
    st->out_n++;
    return FT_OK;
}

static ft_status sym_reserve(enc_state *st, size_t n) {
    if (n <= st->sym_cap)
        return FT_OK;
    size_t nc = st->sym_cap ? st->sym_cap : 256;
    while (nc < n)
        nc *= 2;
#define GROW(f)                                           \
    do {                                                  \
        void *p_ = ft_realloc(st->f, nc * sizeof *st->f); \
        if (!p_)                                          \
            return FT_ERR_NOMEM;                          \
        st->f = p_;                                       \
    } while (0)
    GROW(sym_id);
    GROW(sym_prev);
    GROW(sym_next);
    GROW(sym_len);
    GROW(pair_rank);
    GROW(pair_new);
#undef GROW
    st->sym_cap = nc;
    return FT_OK;
}

/* Heap entries: (rank, pos, new id), popped lowest rank first, then lowest position: the
 * order of `tokenizers`' queue. Stale entries are skipped as there (the symbol is gone, or the
 * pair at pos no longer produces the same token). */
typedef struct hent {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
} hent;
static inline bool hless(hent a, hent b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

static ft_status heap_push(hent **heap, size_t *n, size_t *cap, hent e) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        hent *h = ft_realloc(*heap, nc * sizeof *h);
        if (!h)
            return FT_ERR_NOMEM;
        *heap = h;
        *cap = nc;
    }
    hent *h = *heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(e, h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
    return FT_OK;
}
static hent heap_pop(hent *h, size_t *n) {
    hent top = h[0];
    hent last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m)
            break;
        size_t c = (l + 1 < m && hless(h[l + 1], h[l])) ? l + 1 : l;
        if (!hless(h[c], last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (m)
        h[i] = last;
    return top;
}

static ft_status merge_heap(const ft_tok *t, enc_state *st, size_t ns) {
    int32_t *id = st->sym_id, *prev = st->sym_prev, *next = st->sym_next;
    uint32_t *len = st->sym_len;
    hent *heap = st->heap;
    size_t hn = 0, hcap = st->heap_cap;
    ft_status s = FT_OK;
    for (size_t i = 0; i + 1 < ns; i++) {
        uint32_t r;
        int32_t nid;
        if (pairmap_get(&t->merges, id[i], id[i + 1], &r, &nid))
            if ((s = heap_push(&heap, &hn, &hcap, (hent){r, (uint32_t)i, nid})))
                goto done;
    }
    while (hn) {
        hent top = heap_pop(heap, &hn);
        size_t p = top.pos;
        if (len[p] == 0 || next[p] < 0)
            continue;
        size_t q = (size_t)next[p];
        uint32_t r;
        int32_t nid;
        if (!pairmap_get(&t->merges, id[p], id[q], &r, &nid) || nid != top.new_id)
            continue;
        id[p] = nid;
        len[p] += len[q];
        len[q] = 0;
        next[p] = next[q];
        if (next[q] >= 0)
            prev[next[q]] = (int32_t)p;
        if (prev[p] >= 0) {
            size_t a = (size_t)prev[p];
            if (pairmap_get(&t->merges, id[a], id[p], &r, &nid))
                if ((s = heap_push(&heap, &hn, &hcap, (hent){r, (uint32_t)a, nid})))
                    goto done;
        }
        if (next[p] >= 0) {
            if (pairmap_get(&t->merges, id[p], id[next[p]], &r, &nid))
                if ((s = heap_push(&heap, &hn, &hcap, (hent){r, (uint32_t)p, nid})))
                    goto done;
        }
    }
done:
    st->heap = heap;
    st->heap_cap = hcap;
    return s;
}

/* Few symbols: keep the rank of each live pair and scan for the lowest. Same order as the heap:
 * a stale heap entry can never merge (the pair at its position changed, so the merged token
 * differs), hence "lowest current rank, leftmost" is exactly what the heap pops. */
static void merge_scan(const ft_tok *t, enc_state *st, size_t ns) {
    int32_t *id = st->sym_id, *next = st->sym_next, *prev = st->sym_prev;
    uint32_t *len = st->sym_len, *rank = st->pair_rank;
    int32_t *nw = st->pair_new;
    for (size_t i = 0; i < ns; i++) {
        if (i + 1 < ns && pairmap_get(&t->merges, id[i], id[i + 1], &rank[i], &nw[i]))
            continue;
        rank[i] = UINT32_MAX;
    }
    for (;;) {
        uint32_t best = UINT32_MAX;
        int32_t bp = -1;
        for (int32_t i = 0; i >= 0; i = next[i])
            if (rank[i] < best) {
                best = rank[i];
                bp = i;
            }
        if (bp < 0)
            break;
        size_t p = (size_t)bp, q = (size_t)next[p];
        id[p] = nw[p];
        len[p] += len[q];
        len[q] = 0;
        next[p] = next[q];
        if (next[q] >= 0)
            prev[next[q]] = (int32_t)p;
        rank[p] = UINT32_MAX;
        if (next[p] >= 0 && !pairmap_get(&t->merges, id[p], id[next[p]], &rank[p], &nw[p]))
            rank[p] = UINT32_MAX;
        if (prev[p] >= 0) {
            size_t a = (size_t)prev[p];
            if (!pairmap_get(&t->merges, id[a], id[p], &rank[a], &nw[a]))
                rank[a] = UINT32_MAX;
        }
    }
}

/* Cache of pre-token bytes -> (id, byte length) lists, per encoding state. */
#define CACHE_MAX_KEY 256
#define CACHE_MAX_ENTRIES 65536

static bool cache_get(enc_state *st, const char *s, size_t n, uint64_t h) {
    if (!st->cache_cap)
        return false;
    size_t mask = st->cache_cap - 1, i = (size_t)h & mask;
    for (;;) {
        bpe_cache_entry *e = &st->cache[i];
        if (!e->hash)
            return false;
        if (e->hash == h && e->key_len == n && memcmp(st->cache_keys.data + e->key_off, s, n) == 0) {
            st->out_n = 0;
            for (uint32_t k = 0; k < e->n_tok; k++)
                if (out_push(st, st->cache_toks[e->tok_off + 2 * k], (uint32_t)st->cache_toks[e->tok_off + 2 * k + 1]))
                    return false;
            return true;
        }
        i = (i + 1) & mask;
    }
}

static void cache_clear(enc_state *st) {
    if (st->cache)
        memset(st->cache, 0, st->cache_cap * sizeof *st->cache);
    st->cache_n = 0;
    st->cache_keys.len = 0;
    st->cache_toks_n = 0;
}

/* Grow the table (rehash) while it is under CACHE_MAX_ENTRIES; a fresh encoding starts small so
 * that one-off encodes stay cheap. */
static bool cache_grow(enc_state *st) {
    size_t nc = st->cache_cap ? st->cache_cap * 2 : 1024;
    bpe_cache_entry *t = ft_calloc(nc, sizeof *t);
    if (!t)
        return false;
    for (size_t i = 0; i < st->cache_cap; i++) {
        bpe_cache_entry *e = &st->cache[i];
        if (!e->hash)
            continue;
        size_t j = (size_t)e->hash & (nc - 1);
        while (t[j].hash)
            j = (j + 1) & (nc - 1);
        t[j] = *e;
    }
    ft_free(st->cache);
    st->cache = t;
    st->cache_cap = nc;
    return true;
}

static void cache_put(enc_state *st, const char *s, size_t n, uint64_t h) {
    if (st->cache_n >= CACHE_MAX_ENTRIES || st->cache_keys.len + n > UINT32_MAX / 2 ||
        st->cache_toks_n + 2 * st->out_n > UINT32_MAX / 2)
        cache_clear(st);
    if ((st->cache_n + 1) * 2 > st->cache_cap && !cache_grow(st))
        return;
    if (st->cache_toks_n + 2 * st->out_n > st->cache_toks_cap) {
        size_t nc = st->cache_toks_cap ? st->cache_toks_cap * 2 : 1024;
        while (nc < st->cache_toks_n + 2 * st->out_n)
            nc *= 2;
        int32_t *p = ft_realloc(st->cache_toks, nc * sizeof *p);
        if (!p)
            return;
        st->cache_toks = p;
        st->cache_toks_cap = nc;
    }
    size_t key_off = st->cache_keys.len;
    if (ft_buf_append(&st->cache_keys, s, n))
        return;
    size_t mask = st->cache_cap - 1, i = (size_t)h & mask;
    while (st->cache[i].hash)
        i = (i + 1) & mask;
    bpe_cache_entry *e = &st->cache[i];
    e->hash = h | 1; /* never 0, so an entry is never mistaken for empty */
    e->key_off = (uint32_t)key_off;
    e->key_len = (uint32_t)n;
    e->tok_off = (uint32_t)st->cache_toks_n;
    e->n_tok = (uint32_t)st->out_n;
    for (size_t k = 0; k < st->out_n; k++) {
        st->cache_toks[st->cache_toks_n++] = st->out_id[k];
        st->cache_toks[st->cache_toks_n++] = (int32_t)st->out_len[k];
    }
    st->cache_n++;
}

/* Look up one initial symbol: the char s[0..cl) with the continuing-subword prefix / end-of-word
 * suffix around it when they apply. */
static int32_t lookup_symbol(const ft_tok *t, const char *s, size_t cl, bool first, bool last, char *tmp,
                             size_t *keylen) {
    bool pre = !first && t->cont_prefix_len, suf = last && t->eow_suffix_len;
    if (!pre && !suf) {
        *keylen = cl;
        memcpy(tmp, s, cl);
        if (t->byte_level && cl == 1)
            return t->byte_level_ids[(unsigned char)s[0]];
        return strmap_get(&t->vocab, s, cl);
    }
    size_t k = 0;
    if (pre) {
        memcpy(tmp, t->cont_prefix, t->cont_prefix_len);
        k += t->cont_prefix_len;
    }
    memcpy(tmp + k, s, cl);
    k += cl;
    if (suf) {
        memcpy(tmp + k, t->eow_suffix, t->eow_suffix_len);
        k += t->eow_suffix_len;
    }
    *keylen = k;
    return strmap_get(&t->vocab, tmp, k);
}

ft_status tok_bpe(const ft_tok *t, enc_state *st, const char *s, size_t n, ft_err *err) {
    st->out_n = 0;
    if (n == 0)
        return FT_OK;
    if (t->ignore_merges) {
        int32_t id = strmap_get(&t->vocab, s, n);
        if (id >= 0)
            return out_push(st, id, (uint32_t)n);
    }
    uint64_t h = 0;
    bool cacheable = n <= CACHE_MAX_KEY;
    if (cacheable) {
        h = tok_hash(s, n) | 1;
        if (cache_get(st, s, n, h))
            return FT_OK;
    }
    if (sym_reserve(st, n + 1))
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory in BPE");
    char *tmp = NULL;
    char tmp_small[64];
    size_t tmp_cap = 4 + t->cont_prefix_len + t->eow_suffix_len;
    tmp = tmp_cap <= sizeof tmp_small ? tmp_small : ft_malloc(tmp_cap);
    if (!tmp)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory in BPE");
    size_t ns = 0;
    int32_t unk_pending = -1;
    uint32_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        size_t cl = t->byte_level ? 1 : (size_t)tok_utf8_len((unsigned char)s[i]);
        if (i + cl > n)
            cl = n - i;
        size_t kl;
        int32_t id = lookup_symbol(t, s + i, cl, i == 0, i + cl == n, tmp, &kl);
        if (id >= 0) {
            if (unk_pending >= 0) {
                st->sym_id[ns] = unk_pending;
                st->sym_len[ns++] = unk_len;
                unk_pending = -1;
            }
            st->sym_id[ns] = id;
            st->sym_len[ns++] = (uint32_t)cl;
        } else {
            bool done = false;
            if (t->byte_fallback) {
                bool all = true;
                for (size_t k = 0; k < kl; k++)
                    if (t->byte_ids[(unsigned char)tmp[k]] < 0)
                        all = false;
                if (all) {
                    if (sym_reserve(st, ns + kl + (n - i) + 1)) {
                        if (tmp != tmp_small)
                            ft_free(tmp);
                        return FT_ERR(err, FT_ERR_NOMEM, "out of memory in BPE");
                    }
                    /* unk_pending stays pending across byte tokens, as in `tokenizers` */
                    for (size_t k = 0; k < kl; k++) {
                        st->sym_id[ns] = t->byte_ids[(unsigned char)tmp[k]];
                        st->sym_len[ns++] = 1;
                    }
                    done = true;
                }
            }
            if (!done && t->unk_id >= 0) {
                if (unk_pending >= 0 && t->fuse_unk) {
                    unk_len += (uint32_t)cl;
                } else {
                    if (unk_pending >= 0) {
                        st->sym_id[ns] = unk_pending;
                        st->sym_len[ns++] = unk_len;
                    }
                    unk_pending = t->unk_id;
                    unk_len = (uint32_t)cl;
                }
            }
        }
        i += cl;
    }
    if (tmp != tmp_small)
        ft_free(tmp);
    if (unk_pending >= 0) {
        st->sym_id[ns] = unk_pending;
        st->sym_len[ns++] = unk_len;
    }
    for (size_t i = 0; i < ns; i++) {
        st->sym_prev[i] = (int32_t)i - 1;
        st->sym_next[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    if (ns > 1) {
        if (ns <= 48) {
            merge_scan(t, st, ns);
        } else if (merge_heap(t, st, ns)) {
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory in BPE");
        }
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = st->sym_next[i])
        if (out_push(st, st->sym_id[i], st->sym_len[i]))
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory in BPE");
    if (cacheable)
        cache_put(st, s, n, h);
    return FT_OK;
}

void enc_state_free(enc_state *st) {
    if (!st)
        return;
    scratch_free(&st->mem);
    ft_free(st->a.v);
    ft_free(st->b.v);
    ft_free(st->mv.v);
    ft_free(st->sym_id);
    ft_free(st->sym_prev);
    ft_free(st->sym_next);
    ft_free(st->sym_len);
    ft_free(st->pair_rank);
    ft_free(st->pair_new);
    ft_free(st->heap);
    ft_free(st->cache);
    ft_buf_free(&st->cache_keys);
    ft_free(st->cache_toks);
    ft_free(st->out_id);
    ft_free(st->out_len);
}
