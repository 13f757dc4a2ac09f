/* gen/sample.c: drawing the next token from logits: greedy, temperature, top-k, top-p, as
 * transformers' sampling warpers do (temperature, then top-k, then top-p), with ft_rng.
 *
 * The candidates are walked best first (larger logit, lower id on ties: a total order, so the
 * draw for a seed is fully defined). Without top-k that is the whole vocabulary in order: a
 * radix sort (three passes over 11-bit digits of an order-preserving key) puts the 128256
 * logits of a Llama-3 vocabulary in order in about a millisecond, where qsort took ~20 ms per
 * row, single-threaded, in every decode step of the serving engine. With a small top-k a heap
 * picks the k first and only they are sorted. Both give exactly the order of the comparison
 * sort (tests/gen/test_sample.c checks it against qsort with the comparator). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/gen.h"

ft_status ft_sampler_init(ft_sampler *s, int64_t V, ft_err *err) {
    memset(s, 0, sizeof *s);
    if (V <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "sampler: vocabulary size %lld", (long long)V);
    s->V = V;
    s->probs = ft_malloc((size_t)V * sizeof(float));
    s->idx = ft_malloc((size_t)V * sizeof(int32_t));
    s->radix = ft_malloc(3 * (size_t)V * sizeof(uint32_t));
    if (!s->probs || !s->idx || !s->radix) {
        ft_sampler_deinit(s);
        return FT_ERR(err, FT_ERR_NOMEM, "sampler: out of memory for %lld entries", (long long)V);
    }
    return FT_OK;
}

void ft_sampler_deinit(ft_sampler *s) {
    ft_free(s->probs);
    ft_free(s->idx);
    ft_free(s->radix);
    memset(s, 0, sizeof *s);
}

static int32_t argmax(const float *x, int64_t V) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i])))
            best = i;
    return (int32_t)best;
}

/* Order: larger logit first, lower id on ties (a total order, so results do not depend on the
 * sort's stability). */
static int cmp_desc(const void *a, const void *b, void *ctx) {
    const float *l = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = l[i], y = l[j];
    if (x > y)
        return -1;
    if (x < y)
        return 1;
    return (i > j) - (i < j);
}

/* idx[0..V) = all ids in cmp_desc's order: an LSD radix sort of (key, id) pairs that starts in
 * id order; each pass is stable, so equal logits stay in ascending id order. The key is the
 * logit's bits made to sort ascending for descending logits; -0 becomes +0 first (x + 0), as
 * the comparator finds them equal, and a NaN sorts after everything (the comparator's order is
 * undefined with NaNs; this one is not). work: 3V words. */
static void sort_all(const float *l, int64_t V, int32_t *idx, uint32_t *work) {
    uint32_t *key = work, *key2 = work + V, *idx2 = work + 2 * V;
    int64_t count[3][2048];
    memset(count, 0, sizeof count);
#pragma omp simd
    for (int64_t i = 0; i < V; i++) {
        const float x = l[i] + 0.0f;
        uint32_t u;
        memcpy(&u, &x, 4);
        const uint32_t up = u ^ ((uint32_t)((int32_t)u >> 31) | 0x80000000u); /* ascending in x */
        key[i] = x != x ? UINT32_MAX : ~up;
        idx[i] = (int32_t)i;
    }
    for (int64_t i = 0; i < V; i++) { /* the three digits' histograms in one pass */
        const uint32_t k = key[i];
        count[0][k & 2047]++;
        count[1][(k >> 11) & 2047]++;
        count[2][k >> 22]++;
    }
    uint32_t *ks = key, *kd = key2;
    int32_t *is = idx, *id = (int32_t *)idx2;
    for (int pass = 0; pass < 3; pass++) {
        const int shift = 11 * pass;
        int64_t *c = count[pass];
        if (c[(ks[0] >> shift) & 2047] == V) /* one digit value: the pass would not move anything */
            continue;
        int64_t at = 0;
        for (int d = 0; d < 2048; d++) {
            const int64_t n = c[d];
            c[d] = at;
            at += n;
        }
        for (int64_t i = 0; i < V; i++) {
            const int64_t to = c[(ks[i] >> shift) & 2047]++;
            kd[to] = ks[i];
            id[to] = is[i];
        }
        uint32_t *kt = ks;
        ks = kd, kd = kt;
        int32_t *it = is;
        is = id, id = it;
    }
    if (is != idx)
        memcpy(idx, is, (size_t)V * sizeof(int32_t));
}

/* Min-heap on (logit, -id) over idx[0..k): the root is the weakest kept candidate. */
static bool weaker(const float *l, int32_t a, int32_t b) { return l[a] < l[b] || (l[a] == l[b] && a > b); }
static void sift_down(const float *l, int32_t *h, int64_t k, int64_t i) {
    for (;;) {
        int64_t c = 2 * i + 1, m = i;
        if (c < k && weaker(l, h[c], h[m]))
            m = c;
        if (c + 1 < k && weaker(l, h[c + 1], h[m]))
            m = c + 1;
        if (m == i)
            return;
        int32_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

int32_t ft_sampler_sample(ft_sampler *s, const float *logits, const ft_sampling *p, ft_rng *rng) {
    int64_t V = s->V;
    if (!(p->temperature > 0))
        return argmax(logits, V);
    /* 1. Candidates, best first: the top k by a heap (O(V log k)), or all of them. */
    int64_t k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    int32_t *idx = s->idx;
    if (k > V / 16) { /* all of them in order (the first k are the top k) */
        sort_all(logits, V, idx, s->radix);
    } else {
        for (int64_t i = 0; i < k; i++)
            idx[i] = (int32_t)i;
        for (int64_t i = k / 2 - 1; i >= 0; i--)
            sift_down(logits, idx, k, i);
        for (int64_t i = k; i < V; i++)
            if (weaker(logits, idx[0], (int32_t)i)) {
                idx[0] = (int32_t)i;
                sift_down(logits, idx, k, 0);
            }
        qsort_r(idx, (size_t)k, sizeof(int32_t), cmp_desc, (void *)logits);
    }
    /* 2. Softmax of logits / T over the candidates (max first, so exp never overflows). */
    double inv_t = 1.0 / p->temperature, mx = (double)logits[idx[0]], sum = 0;
    float *pr = s->probs;
    for (int64_t i = 0; i < k; i++) {
        double l = (double)logits[idx[i]];
        double e = isfinite(l) ? exp((l - mx) * inv_t) : 0.0;
        pr[i] = (float)e;
        sum += e;
    }
    if (!(sum > 0) || !isfinite(sum))
        return idx[0];
    /* 3. Top-p: the smallest prefix whose mass reaches p (at least one token). */
    int64_t keep = k;
    if (p->top_p > 0 && p->top_p < 1) {
        double cum = 0;
        for (int64_t i = 0; i < k; i++) {
            cum += pr[i] / sum;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        double s2 = 0;
        for (int64_t i = 0; i < keep; i++)
            s2 += pr[i];
        sum = s2;
    }
    /* 3b. min-p: drop the candidates less probable than min_p times the most probable one (the
     * first; at least it stays). */
    if (p->min_p > 0 && p->min_p <= 1) {
        double floor_p = p->min_p * pr[0];
        int64_t kept = 1;
        double s3 = pr[0];
        while (kept < keep && pr[kept] >= floor_p) {
            s3 += pr[kept];
            kept++;
        }
        keep = kept;
        sum = s3;
    }
    /* 4. Draw. */
    double u = ft_rng_double(rng) * sum, c = 0;
    for (int64_t i = 0; i < keep; i++) {
        c += pr[i];
        if (u < c)
            return idx[i];
    }
    return idx[keep - 1];
}
