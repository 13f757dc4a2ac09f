/* tensor/gemm_rows.c: the product of a few rows with a weight matrix, C (M, N) = alpha A (M, K)
 * B (N, K)^T + beta C for M <= FT_TENSOR_FEW_ROWS: a decode step of one or a few sequences
 * (nn.Linear's x W^T, the LM head). ft_tensor_sgemm routes such products here (blas.c).
 *
 * Why not sgemm: OpenBLAS packs B, here the whole weight matrix, before its kernel runs: for a
 * few rows it reads the weights, writes a packed copy and reads that again, and the packing took
 * more time than the arithmetic (perf on the 1B shape's 8-row decode step: sgemm_incopy 16% of
 * the samples, the kernel 7%). A decode step is bound by reading the weights once; this kernel
 * streams each weight row once and multiplies it with every row of A while it is in registers
 * (A, a few rows, stays in L1/L2).
 *
 * Batch invariance: every output C[i][j] is computed by the same sequence of operations whatever
 * M, the tiling or the thread count: one 16-lane accumulator over k in steps of 16 (A[i][k..] *
 * B[j][k..] fused into it), a fixed pairwise sum of its lanes, then the k % 16 leftover products
 * in order, then alpha and beta. So a sequence decoded beside seven others gets bit-identical
 * logits to the same sequence decoded alone (M = 1 takes this route too), and its tokens cannot
 * depend on its neighbours in the batch. The file is compiled with -ffp-contract=fast (Makefile)
 * so that `acc + a * b` is one FMA where the CPU has it.
 *
 * Written with GCC/Clang vector extensions: 16 floats are one AVX-512 register, two AVX2 ones
 * or four SSE ones, one code path on every CPU. */
#include <omp.h>
#include <string.h>

#include "internal.h"

typedef float v16 __attribute__((vector_size(64)));

/* An unaligned load into a register. The empty asm keeps it there: without it GCC folds the
 * load into every FMA that uses the value (one load per FMA instead of one per tile row or
 * column, which made the kernel load-bound). */
static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __asm__("" : "+v"(v));
#endif
    return v;
}

/* The lanes' sum in a fixed order: lane l + lane l + 8, then + 4, + 2, + 1 (a shuffle tree,
 * the same order for every output). */
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));
static inline float hsum(v16 v) {
    v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
           __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (b[0] + b[2]) + (b[1] + b[3]);
}

/* An MR x NR tile of dot products over K: out[i * NR + j] = A[i] . B[j]. MR and NR are
 * constants at each use, so the accumulators live in registers (MR * NR <= 16). */
static inline __attribute__((always_inline)) void tile(int MR, int NR, const float *A, int64_t lda, const float *B,
                                                       int64_t ldb, int64_t K, float *out) {
    v16 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++)
            acc[i][j] = (v16){0};
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        v16 a[4], b[4];
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++)
            b[j] = load16(B + j * ldb + k);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++)
            a[i] = load16(A + i * lda + k);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++)
                acc[i][j] = acc[i][j] + a[i] * b[j];
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) {
            float s = hsum(acc[i][j]);
            for (int64_t t = k; t < K; t++)
                s = s + A[i * lda + t] * B[j * ldb + t];
            out[i * NR + j] = s;
        }
}

#define TILE_FN(MR, NR)                                                                                                \
    static void tile_##MR##x##NR(const float *A, int64_t lda, const float *B, int64_t ldb, int64_t K, float *out) {   \
        tile(MR, NR, A, lda, B, ldb, K, out);                                                                          \
    }
TILE_FN(1, 4)
TILE_FN(2, 4)
TILE_FN(3, 4)
TILE_FN(4, 4)
TILE_FN(1, 1)
TILE_FN(2, 1)
TILE_FN(3, 1)
TILE_FN(4, 1)

typedef void (*tile_fn)(const float *, int64_t, const float *, int64_t, int64_t, float *);
static const tile_fn TILES[2][4] = {{tile_1x1, tile_2x1, tile_3x1, tile_4x1}, {tile_1x4, tile_2x4, tile_3x4, tile_4x4}};

/* Columns [lo, hi) of C: weight rows four at a time (then one at a time), each block against
 * all rows of A, four at a time; the block's four weight rows come from memory once and from
 * the cache for the other row groups. */
static void panel(int64_t M, int64_t lo, int64_t hi, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    float out[16];
    for (int64_t j = lo; j < hi;) {
        const int nr = hi - j >= 4 ? 4 : 1;
        for (int64_t i = 0; i < M; i += 4) {
            const int mr = M - i >= 4 ? 4 : (int)(M - i);
            TILES[nr == 4][mr - 1](A + i * lda, lda, B + j * ldb, ldb, K, out);
            for (int r = 0; r < mr; r++)
                for (int c = 0; c < nr; c++) {
                    float *y = &C[(i + r) * ldc + j + c];
                    const float v = alpha * out[r * nr + c];
                    *y = beta == 0.0f ? v : v + beta * *y;
                }
        }
        j += nr;
    }
}

void tensor_gemm_rows(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float beta, float *C, int64_t ldc, int nt) {
    FT_ASSERT(M >= 1 && M <= FT_TENSOR_FEW_ROWS);
    /* Small products on one thread; otherwise panels of columns (multiples of 4 weight rows,
     * about eight per thread) that the threads claim one at a time, so a thread that runs late
     * on a shared machine just claims fewer. */
    if ((double)N * (double)K < 65536.0 || N < 64)
        nt = 1;
    int64_t w = (N + 8 * (int64_t)nt - 1) / (8 * (int64_t)nt);
    w = (w + 15) / 16 * 16;
    const int64_t panels = (N + w - 1) / w;
    if (nt == 1) { /* no parallel construct at all: inside another region it would open a nested team */
        panel(M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t p = 0; p < panels; p++) {
        const int64_t lo = p * w, hi = N - lo < w ? N : lo + w;
        panel(M, lo, hi, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
}
