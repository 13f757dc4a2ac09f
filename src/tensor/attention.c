/* tensor/attention.c: causal grouped-query attention, forward and backward, on the CPU.
 *
 * Flash-style tiling: queries are taken a block of rows at a time, the G query heads that share
 * a kv head stacked into one tile; a tile's scores S = Q K^T over the keys it can see live only
 * in a per-thread buffer (about 192 x Tk floats, in L2 for the usual T), get
 * masked (causal, and same sample when sample ids are given), softmaxed and multiplied by V
 * right away. Only the log-sum-exp of each row is kept for the backward, which recomputes the
 * probabilities tile by tile (dS = P * (dP - rowsum(dO * O))). The products inside a tile are
 * single-threaded sgemm calls made from inside the OpenMP region (OpenBLAS's OpenMP build runs
 * them on the calling thread), so the parallelism is over (batch, kv head, query block) in the
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

/* Query rows per tile: the G query heads that share a kv head are stacked into one tile of
 * G * qb rows (one sgemm against their common K and V instead of G small ones), with qb chosen
 * so that a tile has about 192 rows. */
static int64_t tile_rows(const ft_attn_shape *s) {
    int64_t G = s->NH / s->KVH, qb = (192 / G + 15) / 16 * 16;
    return qb < 32 ? 32 : qb > 128 ? 128 : qb;
}

/* Per-thread scratch: Qs, dOs, dQs (G*qb, HD) and P, dP (G*qb, Tk). */
static size_t thread_scratch(const ft_attn_shape *s) {
    size_t rows = (size_t)(s->NH / s->KVH) * (size_t)tile_rows(s);
    return rows * (3 * (size_t)s->HD + 2 * (size_t)s->Tk) + 64;
}

/* Threads a call may use: the current count, capped by what the scratch was sized for. */
static int call_threads(const ft_attn_shape *s) {
    int n = omp_get_max_threads();
    return s->threads > 0 && s->threads < n ? (int)s->threads : n;
}

size_t ft_tensor_attention_scratch(const ft_attn_shape *s) {
    size_t threads = (size_t)(s->threads > 0 ? s->threads : omp_get_max_threads());
    /* first-occurrence table (B*Tq int32) + one scratch area per thread */
    return (size_t)(s->B * s->Tq) + threads * thread_scratch(s) + 16;
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
 * without use_lse the exps are left unnormalised and *inv_out gets 1 / their sum;
 * keys past `jn` are causally masked, those before `js` are outside the sliding window, and with
 * sample ids those of another sample are masked too.
 * lse_in: use this log-sum-exp (backward); otherwise compute and return it. */
static float softmax_row(float *row, int64_t nk, int64_t js, int64_t jn, const int32_t *sid_keys, int32_t sid_i,
                         bool use_lse, float lse_in, float *inv_out) {
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
        *inv_out = 1.0f / sum; /* the caller scales P V's rows: HD values instead of jn */
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

static tile make_tile(const ft_attn_shape *s, const int32_t *first, int64_t b, int64_t blk, int64_t qb) {
    tile t;
    t.i0 = blk * qb;
    t.nr = s->Tq - t.i0 < qb ? s->Tq - t.i0 : qb;
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

/* Copy the G heads of group g, rows i0..i0+nr-1, into a stacked (G*nr, HD) matrix, or back. */
static void stack_heads(float *dst, const float *src, int64_t stride, int64_t row0, int64_t nr, int64_t g, int64_t G,
                        int64_t HD) {
    for (int64_t hh = 0; hh < G; hh++)
        for (int64_t r = 0; r < nr; r++)
            memcpy(dst + (hh * nr + r) * HD, src + (row0 + r) * stride + (g * G + hh) * HD, (size_t)HD * sizeof(float));
}
static void unstack_heads(float *dst, const float *src, int64_t stride, int64_t row0, int64_t nr, int64_t g, int64_t G,
                          int64_t HD) {
    for (int64_t hh = 0; hh < G; hh++)
        for (int64_t r = 0; r < nr; r++)
            memcpy(dst + (row0 + r) * stride + (g * G + hh) * HD, src + (hh * nr + r) * HD, (size_t)HD * sizeof(float));
}

void ft_tensor_attention_fwd(const ft_attn_shape *s, float *out, float *lse, const float *q, const float *k,
                             const float *v, const int32_t *sample_ids, float *scratch) {
    const int64_t B = s->B, Tq = s->Tq, Tk = s->Tk, NH = s->NH, KVH = s->KVH, HD = s->HD, G = NH / KVH;
    const int64_t qb = tile_rows(s), nblk = (Tq + qb - 1) / qb;
    const float scale = 1.0f / sqrtf((float)HD);
    int32_t *first = NULL;
    float *area = scratch + B * Tq;
    const size_t per_thread = thread_scratch(s);
    if (sample_ids) {
        first = (int32_t *)scratch;
        first_occurrence(first, sample_ids, B, Tq);
    }
#pragma omp parallel num_threads(call_threads(s))
    {
        float *Qs = area + (size_t)omp_get_thread_num() * per_thread;
        float *Os = Qs + G * qb * HD, *inv = Os + G * qb * HD, *S = Qs + 3 * G * qb * HD;
#pragma omp for collapse(3) schedule(dynamic)
        for (int64_t b = 0; b < B; b++)
            for (int64_t g = 0; g < KVH; g++)
                for (int64_t blk = 0; blk < nblk; blk++) {
                    tile t = make_tile(s, first, b, blk, qb);
                    const int64_t rows = G * t.nr;
                    const float *K = k + (b * Tk + t.lo) * s->k_stride + g * HD;
                    const float *Vv = v + (b * Tk + t.lo) * s->v_stride + g * HD;
                    stack_heads(Qs, q, s->q_stride, b * Tq + t.i0, t.nr, g, G, HD);
                    /* S (G*nr, nk) = scale * Qs (G*nr, HD) K^T (HD, nk) */
                    ft_tensor_sgemm(false, true, rows, t.nk, HD, scale, Qs, HD, K, s->k_stride, 0.0f, S, t.nk);
                    for (int64_t hh = 0; hh < G; hh++)
                        for (int64_t r = 0; r < t.nr; r++) {
                            int64_t i = t.i0 + r;
                            int64_t jn = s->q_offset + i + 1 - t.lo; /* keys lo..q_offset+i */
                            if (jn > t.nk)
                                jn = t.nk;
                            const int32_t *sk = sample_ids ? sample_ids + b * Tq + t.lo : NULL;
                            int32_t si = sample_ids ? sample_ids[b * Tq + i] : 0;
                            float l = softmax_row(S + (hh * t.nr + r) * t.nk, t.nk, window_start(s, &t, i), jn, sk, si,
                                                  false, 0.0f, &inv[hh * t.nr + r]);
                            if (lse)
                                lse[(b * NH + g * G + hh) * Tq + i] = l;
                        }
                    /* Os (G*nr, HD) = P (G*nr, nk) V (nk, HD) */
                    ft_tensor_sgemm(false, false, rows, HD, t.nk, 1.0f, S, t.nk, Vv, s->v_stride, 0.0f, Os, HD);
                    for (int64_t hh = 0; hh < G; hh++) /* normalise while unstacking */
                        for (int64_t r = 0; r < t.nr; r++) {
                            const float *src = Os + (hh * t.nr + r) * HD;
                            float *dst = out + (b * Tq + t.i0 + r) * s->o_stride + (g * G + hh) * HD,
                                  f = inv[hh * t.nr + r];
#pragma omp simd
                            for (int64_t d = 0; d < HD; d++)
                                dst[d] = src[d] * f;
                        }
                }
    }
}

void ft_tensor_attention_bwd(const ft_attn_shape *s, float *dq, float *dk, float *dv, const float *dout,
                             const float *out, const float *lse, const float *q, const float *k, const float *v,
                             const int32_t *sample_ids, float *scratch) {
    const int64_t B = s->B, Tq = s->Tq, Tk = s->Tk, NH = s->NH, KVH = s->KVH, HD = s->HD, G = NH / KVH;
    const int64_t qb = tile_rows(s), nblk = (Tq + qb - 1) / qb;
    const float scale = 1.0f / sqrtf((float)HD);
    int32_t *first = NULL;
    float *area = scratch + B * Tq;
    const size_t per_thread = thread_scratch(s);
    if (sample_ids) {
        first = (int32_t *)scratch;
        first_occurrence(first, sample_ids, B, Tq);
    }
#pragma omp parallel num_threads(call_threads(s))
    {
        float *Qs = area + (size_t)omp_get_thread_num() * per_thread;
        float *dOs = Qs + G * qb * HD, *dQs = dOs + G * qb * HD, *P = dQs + G * qb * HD, *dP = P + G * qb * Tk;
#pragma omp for collapse(2) schedule(dynamic)
        for (int64_t b = 0; b < B; b++)
            for (int64_t g = 0; g < KVH; g++) {
                for (int64_t j = 0; j < Tk; j++) {
                    memset(dk + (b * Tk + j) * s->k_stride + g * HD, 0, (size_t)HD * sizeof(float));
                    memset(dv + (b * Tk + j) * s->v_stride + g * HD, 0, (size_t)HD * sizeof(float));
                }
                for (int64_t blk = 0; blk < nblk; blk++) {
                    tile t = make_tile(s, first, b, blk, qb);
                    const int64_t rows = G * t.nr;
                    const float *K = k + (b * Tk + t.lo) * s->k_stride + g * HD;
                    const float *Vv = v + (b * Tk + t.lo) * s->v_stride + g * HD;
                    float *dK = dk + (b * Tk + t.lo) * s->k_stride + g * HD;
                    float *dV = dv + (b * Tk + t.lo) * s->v_stride + g * HD;
                    stack_heads(Qs, q, s->q_stride, b * Tq + t.i0, t.nr, g, G, HD);
                    stack_heads(dOs, dout, s->o_stride, b * Tq + t.i0, t.nr, g, G, HD);
                    ft_tensor_sgemm(false, true, rows, t.nk, HD, scale, Qs, HD, K, s->k_stride, 0.0f, P, t.nk);
                    /* dP (G*nr, nk) = dOs V^T */
                    ft_tensor_sgemm(false, true, rows, t.nk, HD, 1.0f, dOs, HD, Vv, s->v_stride, 0.0f, dP, t.nk);
                    for (int64_t hh = 0; hh < G; hh++)
                        for (int64_t r = 0; r < t.nr; r++) {
                            int64_t i = t.i0 + r, h = g * G + hh, row = hh * t.nr + r;
                            int64_t jn = s->q_offset + i + 1 - t.lo;
                            if (jn > t.nk)
                                jn = t.nk;
                            const int32_t *sk = sample_ids ? sample_ids + b * Tq + t.lo : NULL;
                            int32_t si = sample_ids ? sample_ids[b * Tq + i] : 0;
                            float *pr = P + row * t.nk, *dpr = dP + row * t.nk;
                            softmax_row(pr, t.nk, window_start(s, &t, i), jn, sk, si, true, lse[(b * NH + h) * Tq + i],
                                        NULL);
                            const float *dor = dOs + row * HD, *orow = out + (b * Tq + i) * s->o_stride + h * HD;
                            float D = 0.0f;
#pragma omp simd reduction(+ : D)
                            for (int64_t d = 0; d < HD; d++)
                                D += dor[d] * orow[d];
#pragma omp simd
                            for (int64_t j = 0; j < t.nk; j++)
                                dpr[j] = pr[j] * (dpr[j] - D);
                        }
                    /* dQs = scale dS K;  dK += scale dS^T Qs;  dV += P^T dOs */
                    ft_tensor_sgemm(false, false, rows, HD, t.nk, scale, dP, t.nk, K, s->k_stride, 0.0f, dQs, HD);
                    unstack_heads(dq, dQs, s->q_stride, b * Tq + t.i0, t.nr, g, G, HD);
                    ft_tensor_sgemm(true, false, t.nk, HD, rows, scale, dP, t.nk, Qs, HD, 1.0f, dK, s->k_stride);
                    ft_tensor_sgemm(true, false, t.nk, HD, rows, 1.0f, P, t.nk, dOs, HD, 1.0f, dV, s->v_stride);
                }
            }
    }
}
