/* tensor/attention.c: causal grouped-query attention, forward and backward, on the CPU.
 *
 * Flash-style tiling: queries are taken QB rows at a time; a block's scores S = Q K^T over the
 * keys it can see live only in a per-thread tile (QB x Tk floats, in L2 for the usual T), get
 * masked (causal, and same sample when sample ids are given), softmaxed and multiplied by V
 * right away. Only the log-sum-exp of each row is kept for the backward, which recomputes the
 * probabilities tile by tile (dS = P * (dP - rowsum(dO * O))). The products inside a tile are
 * single-threaded sgemm calls made from inside the OpenMP region (OpenBLAS's OpenMP build runs
 * them on the calling thread), so the parallelism is over (batch, head, query block) in the
 * forward and over (batch, kv head) in the backward, where a kv head's dK and dV collect the
 * contributions of its whole group of query heads without atomics.
 *
 * Keys a block never needs are skipped: those after its last row (causal) and those before the
 * first token of the earliest sample among its rows (packing). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ftune/tensor.h"
#include "vmath.h"

enum { QB = 64 }; /* query rows per tile */

size_t ft_tensor_attention_scratch(const ft_attn_shape *s) {
    size_t threads = (size_t)omp_get_max_threads();
    /* first-occurrence table (B*Tq int32) + two tiles per thread */
    return (size_t)(s->B * s->Tq) + threads * 2 * QB * (size_t)s->Tk + 16;
}

/* first[b*Tq + i] = smallest j with sid[j] == sid[i] in row b: keys before it are never seen
 * by query i. Rows hold few samples, so a short list of (id, first) per row suffices. */
static void first_occurrence(int32_t *first, const int32_t *sid, int64_t B, int64_t T) {
    for (int64_t b = 0; b < B; b++) {
        const int32_t *s = sid + b * T;
        int32_t *f = first + b * T;
        for (int64_t i = 0; i < T; i++) {
            /* contiguous runs are the common case: reuse the previous row's answer */
            if (i > 0 && s[i] == s[i - 1]) {
                f[i] = f[i - 1];
                continue;
            }
            int64_t j = 0;
            while (s[j] != s[i])
                j++;
            f[i] = (int32_t)j;
        }
    }
}

/* Probabilities of one tile row in place: row (nk) holds scaled scores for keys lo..lo+nk-1;
 * keys past `jn` are causally masked, those before `js` are outside the sliding window, and with
 * sample ids those of another sample are masked too.
 * lse_in: use this log-sum-exp (backward); otherwise compute and return it. */
static float softmax_row(float *row, int64_t nk, int64_t js, int64_t jn, const int32_t *sid_keys, int32_t sid_i,
                         bool use_lse, float lse_in) {
    for (int64_t j = 0; j < js; j++)
        row[j] = -INFINITY; /* outside the sliding window */
    if (sid_keys) {
        for (int64_t j = 0; j < jn; j++)
            if (sid_keys[j] != sid_i)
                row[j] = -INFINITY;
    }
    float m, lse;
    if (use_lse) {
        m = lse_in;
#pragma omp simd
        for (int64_t j = 0; j < jn; j++)
            row[j] = row[j] == -INFINITY ? 0.0f : ft_vexp(row[j] - m);
        lse = lse_in;
    } else {
        m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < jn; j++)
            m = row[j] > m ? row[j] : m;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < jn; j++) {
            float e = row[j] == -INFINITY ? 0.0f : ft_vexp(row[j] - m);
            row[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
#pragma omp simd
        for (int64_t j = 0; j < jn; j++)
            row[j] *= inv;
        lse = m + logf(sum);
    }
    for (int64_t j = jn; j < nk; j++)
        row[j] = 0.0f;
    return lse;
}

typedef struct tile {
    int64_t i0, nr; /* query rows i0..i0+nr-1 */
    int64_t lo, nk; /* keys lo..lo+nk-1 */
} tile;

static tile make_tile(const ft_attn_shape *s, const int32_t *first, int64_t b, int64_t blk) {
    tile t;
    t.i0 = blk * QB;
    t.nr = s->Tq - t.i0 < QB ? s->Tq - t.i0 : QB;
    int64_t hi = s->q_offset + t.i0 + t.nr; /* keys < hi */
    if (hi > s->Tk)
        hi = s->Tk;
    t.lo = 0;
    if (s->window > 0 && s->q_offset + t.i0 - s->window + 1 > 0)
        t.lo = s->q_offset + t.i0 - s->window + 1;
    if (first) {
        t.lo = hi;
        for (int64_t r = 0; r < t.nr; r++)
            if (first[b * s->Tq + t.i0 + r] < t.lo)
                t.lo = first[b * s->Tq + t.i0 + r];
        int64_t wlo = s->window > 0 ? s->q_offset + t.i0 - s->window + 1 : 0;
        if (t.lo < wlo)
            t.lo = wlo;
    }
    t.nk = hi - t.lo;
    return t;
}

/* First key (tile-local) inside query i's sliding window. */
static int64_t window_start(const ft_attn_shape *s, const tile *t, int64_t i) {
    if (s->window <= 0)
        return 0;
    int64_t js = s->q_offset + i - s->window + 1 - t->lo;
    return js > 0 ? js : 0;
}

void ft_tensor_attention_fwd(const ft_attn_shape *s, float *out, float *lse, const float *q, const float *k,
                             const float *v, const int32_t *sample_ids, float *scratch) {
    const int64_t B = s->B, Tq = s->Tq, Tk = s->Tk, NH = s->NH, HD = s->HD, G = s->NH / s->KVH;
    const int64_t nblk = (Tq + QB - 1) / QB;
    const float scale = 1.0f / sqrtf((float)HD);
    int32_t *first = NULL;
    float *tiles = scratch + B * Tq;
    if (sample_ids) {
        first = (int32_t *)scratch;
        first_occurrence(first, sample_ids, B, Tq);
    }
#pragma omp parallel
    {
        float *S = tiles + (size_t)omp_get_thread_num() * 2 * QB * (size_t)Tk;
#pragma omp for collapse(3) schedule(dynamic)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < NH; h++)
                for (int64_t blk = 0; blk < nblk; blk++) {
                    tile t = make_tile(s, first, b, blk);
                    int64_t g = h / G;
                    const float *Q = q + (b * Tq + t.i0) * s->q_stride + h * HD;
                    const float *K = k + (b * Tk + t.lo) * s->k_stride + g * HD;
                    const float *Vv = v + (b * Tk + t.lo) * s->v_stride + g * HD;
                    /* S (nr, nk) = scale * Q (nr, HD) K^T (HD, nk) */
                    ft_tensor_sgemm(false, true, t.nr, t.nk, HD, scale, Q, s->q_stride, K, s->k_stride, 0.0f, S,
                                    t.nk);
                    for (int64_t r = 0; r < t.nr; r++) {
                        int64_t i = t.i0 + r;
                        int64_t jn = s->q_offset + i + 1 - t.lo; /* keys lo..q_offset+i */
                        if (jn > t.nk)
                            jn = t.nk;
                        const int32_t *sk = sample_ids ? sample_ids + b * Tq + t.lo : NULL;
                        int32_t si = sample_ids ? sample_ids[b * Tq + i] : 0;
                        float l = softmax_row(S + r * t.nk, t.nk, window_start(s, &t, i), jn, sk, si, false, 0.0f);
                        if (lse)
                            lse[(b * NH + h) * Tq + i] = l;
                    }
                    /* O (nr, HD) = P (nr, nk) V (nk, HD) */
                    ft_tensor_sgemm(false, false, t.nr, HD, t.nk, 1.0f, S, t.nk, Vv, s->v_stride, 0.0f,
                                    out + (b * Tq + t.i0) * s->o_stride + h * HD, s->o_stride);
                }
    }
}

void ft_tensor_attention_bwd(const ft_attn_shape *s, float *dq, float *dk, float *dv, const float *dout,
                             const float *out, const float *lse, const float *q, const float *k, const float *v,
                             const int32_t *sample_ids, float *scratch) {
    const int64_t B = s->B, Tq = s->Tq, Tk = s->Tk, NH = s->NH, KVH = s->KVH, HD = s->HD, G = NH / KVH;
    const int64_t nblk = (Tq + QB - 1) / QB;
    const float scale = 1.0f / sqrtf((float)HD);
    int32_t *first = NULL;
    float *tiles = scratch + B * Tq;
    if (sample_ids) {
        first = (int32_t *)scratch;
        first_occurrence(first, sample_ids, B, Tq);
    }
#pragma omp parallel
    {
        float *P = tiles + (size_t)omp_get_thread_num() * 2 * QB * (size_t)Tk;
        float *dP = P + QB * (size_t)Tk;
#pragma omp for collapse(2) schedule(dynamic)
        for (int64_t b = 0; b < B; b++)
            for (int64_t g = 0; g < KVH; g++) {
                for (int64_t j = 0; j < Tk; j++) {
                    memset(dk + (b * Tk + j) * s->k_stride + g * HD, 0, (size_t)HD * sizeof(float));
                    memset(dv + (b * Tk + j) * s->v_stride + g * HD, 0, (size_t)HD * sizeof(float));
                }
                for (int64_t h = g * G; h < (g + 1) * G; h++)
                    for (int64_t blk = 0; blk < nblk; blk++) {
                        tile t = make_tile(s, first, b, blk);
                        const float *Q = q + (b * Tq + t.i0) * s->q_stride + h * HD;
                        const float *dO = dout + (b * Tq + t.i0) * s->o_stride + h * HD;
                        const float *O = out + (b * Tq + t.i0) * s->o_stride + h * HD;
                        const float *K = k + (b * Tk + t.lo) * s->k_stride + g * HD;
                        const float *Vv = v + (b * Tk + t.lo) * s->v_stride + g * HD;
                        float *dQ = dq + (b * Tq + t.i0) * s->q_stride + h * HD;
                        float *dK = dk + (b * Tk + t.lo) * s->k_stride + g * HD;
                        float *dV = dv + (b * Tk + t.lo) * s->v_stride + g * HD;
                        ft_tensor_sgemm(false, true, t.nr, t.nk, HD, scale, Q, s->q_stride, K, s->k_stride, 0.0f, P,
                                        t.nk);
                        /* dP (nr, nk) = dO (nr, HD) V^T */
                        ft_tensor_sgemm(false, true, t.nr, t.nk, HD, 1.0f, dO, s->o_stride, Vv, s->v_stride, 0.0f,
                                        dP, t.nk);
                        for (int64_t r = 0; r < t.nr; r++) {
                            int64_t i = t.i0 + r;
                            int64_t jn = s->q_offset + i + 1 - t.lo;
                            if (jn > t.nk)
                                jn = t.nk;
                            const int32_t *sk = sample_ids ? sample_ids + b * Tq + t.lo : NULL;
                            int32_t si = sample_ids ? sample_ids[b * Tq + i] : 0;
                            float *pr = P + r * t.nk, *dpr = dP + r * t.nk;
                            softmax_row(pr, t.nk, window_start(s, &t, i), jn, sk, si, true,
                                        lse[(b * NH + h) * Tq + i]);
                            const float *dor = dO + r * s->o_stride, *orow = O + r * s->o_stride;
                            float D = 0.0f;
#pragma omp simd reduction(+ : D)
                            for (int64_t d = 0; d < HD; d++)
                                D += dor[d] * orow[d];
#pragma omp simd
                            for (int64_t j = 0; j < t.nk; j++)
                                dpr[j] = pr[j] * (dpr[j] - D);
                        }
                        /* dQ = scale dS K;  dK += scale dS^T Q;  dV += P^T dO */
                        ft_tensor_sgemm(false, false, t.nr, HD, t.nk, scale, dP, t.nk, K, s->k_stride, 0.0f, dQ,
                                        s->q_stride);
                        ft_tensor_sgemm(true, false, t.nk, HD, t.nr, scale, dP, t.nk, Q, s->q_stride, 1.0f, dK,
                                        s->k_stride);
                        ft_tensor_sgemm(true, false, t.nk, HD, t.nr, 1.0f, P, t.nk, dO, s->o_stride, 1.0f, dV,
                                        s->v_stride);
                    }
            }
    }
}
