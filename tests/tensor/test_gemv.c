/* tests/tensor: ft_tensor_sgemm with one row (M = 1): every transpose form, alpha/beta, a row
 * stride wider than the row and sizes on both sides of the parallel threshold, against a float64
 * loop. The x W^T form (trans_b, a decode step's product) takes the few-row kernel
 * (src/tensor/gemm_rows.c, also tested in test_gemm_rows.c), the others the multithreaded GEMV
 * route (src/tensor/blas.c gemv_row). */
#include <stdlib.h>

#include "ftune/tensor.h"
#include "test.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 40) / (double)(1ull << 24) - 0.5);
}

TEST(sgemm_one_row_gemv_route) {
    static const int64_t sizes[][2] = {{5, 7}, {64, 33}, {1000, 300}, {4099, 768}};
    uint64_t seed = 1;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const int64_t N = sizes[si][0], K = sizes[si][1], ldb_pad = 3, lda = 5;
        for (int form = 0; form < 4; form++) {
            bool ta = form & 1, tb = form & 2;
            /* op(A) (1, K): A is (1, K) or (K, 1) with row stride lda; op(B) (K, N). */
            int64_t ldb = (tb ? K : N) + ldb_pad;
            float *A = malloc((size_t)(K * lda) * sizeof(float));
            float *B = malloc((size_t)((tb ? N : K) * ldb) * sizeof(float));
            float *C = malloc((size_t)N * sizeof(float)), *C0 = malloc((size_t)N * sizeof(float));
            for (int64_t i = 0; i < K * lda; i++)
                A[i] = frand(&seed);
            for (int64_t i = 0; i < (tb ? N : K) * ldb; i++)
                B[i] = frand(&seed);
            for (int64_t j = 0; j < N; j++)
                C[j] = C0[j] = frand(&seed);
            const float alpha = 0.75f, beta = form == 3 ? 0.0f : 0.5f;
            ft_tensor_sgemm(ta, tb, 1, N, K, alpha, A, ta ? lda : K, B, ldb, beta, C, N);
            double worst = 0;
            for (int64_t j = 0; j < N; j++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (double)(ta ? A[k * lda] : A[k]) * (double)(tb ? B[j * ldb + k] : B[k * ldb + j]);
                double want = alpha * acc + (beta == 0.0f ? 0.0 : beta * (double)C0[j]);
                double d = fabs(want - C[j]) / (1.0 + fabs(want));
                worst = d > worst ? d : worst;
            }
            if (worst > 1e-5)
                ft_test_fail_(__FILE__, __LINE__, "N %lld K %lld trans_a %d trans_b %d: relative error %g",
                              (long long)N, (long long)K, ta, tb, worst);
            free(A);
            free(B);
            free(C);
            free(C0);
        }
    }
}
