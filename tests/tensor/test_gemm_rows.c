/* tests/tensor: ft_tensor_sgemm's x W^T form with a few rows (M <= 16: decode steps, the LM
 * head), which streams the weights once (src/tensor/gemm_rows.c): against a float64 loop for
 * every M from 1 to 16, K with and without a tail of k % 16, N on both sides of the parallel
 * threshold and not a multiple of the 4-row tile, strides wider than the rows, alpha and beta;
 * and batch invariance: each row's result is bit-identical to the product of that row alone and
 * to the same product on one thread. */
#include <stdlib.h>
#include <string.h>

#include "ftune/tensor.h"
#include "test.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 40) / (double)(1ull << 24) - 0.5);
}

TEST(sgemm_few_rows_route) {
    static const int64_t sizes[][2] = {{7, 5}, {64, 48}, {333, 100}, {4099, 768}, {2050, 2051}};
    uint64_t seed = 3;
    const int saved = ft_tensor_threads();
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const int64_t N = sizes[si][0], K = sizes[si][1], lda = K + 3, ldb = K + 5, ldc = N + 2, Mmax = 16;
        float *A = malloc((size_t)(Mmax * lda) * sizeof(float)), *B = malloc((size_t)(N * ldb) * sizeof(float));
        float *C0 = malloc((size_t)(Mmax * ldc) * sizeof(float)), *C = malloc((size_t)(Mmax * ldc) * sizeof(float));
        float *one = malloc((size_t)ldc * sizeof(float)), *C1 = malloc((size_t)(Mmax * ldc) * sizeof(float));
        REQUIRE(A && B && C0 && C && one && C1);
        for (int64_t i = 0; i < Mmax * lda; i++)
            A[i] = frand(&seed);
        for (int64_t i = 0; i < N * ldb; i++)
            B[i] = frand(&seed);
        for (int64_t i = 0; i < Mmax * ldc; i++)
            C0[i] = frand(&seed);
        for (int64_t M = 1; M <= Mmax; M++) {
            const float alpha = M % 3 == 0 ? 0.75f : 1.0f, beta = M % 2 ? 0.0f : 0.5f;
            ft_tensor_set_threads(2);
            memcpy(C, C0, (size_t)(Mmax * ldc) * sizeof(float));
            ft_tensor_sgemm(false, true, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            ft_tensor_set_threads(1);
            memcpy(C1, C0, (size_t)(Mmax * ldc) * sizeof(float));
            ft_tensor_sgemm(false, true, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc);
            double worst = 0;
            int64_t variant = 0, untouched = 0;
            for (int64_t i = 0; i < M; i++) {
                /* row i alone, two threads */
                ft_tensor_set_threads(2);
                memcpy(one, C0 + i * ldc, (size_t)ldc * sizeof(float));
                ft_tensor_sgemm(false, true, 1, N, K, alpha, A + i * lda, lda, B, ldb, beta, one, ldc);
                for (int64_t j = 0; j < N; j++) {
                    double acc = 0;
                    for (int64_t k = 0; k < K; k++)
                        acc += (double)A[i * lda + k] * (double)B[j * ldb + k];
                    double want = alpha * acc + (beta == 0.0f ? 0.0 : beta * (double)C0[i * ldc + j]);
                    double d = fabs(want - C[i * ldc + j]) / (1.0 + fabs(want));
                    worst = d > worst ? d : worst;
                    variant += memcmp(&C[i * ldc + j], &one[j], 4) != 0 || memcmp(&C[i * ldc + j], &C1[i * ldc + j], 4);
                }
                for (int64_t j = N; j < ldc; j++) /* the stride's padding is not written */
                    untouched += memcmp(&C[i * ldc + j], &C0[i * ldc + j], 4) != 0;
            }
            if (worst > 1e-5 || variant || untouched)
                ft_test_fail_(__FILE__, __LINE__,
                              "M %lld N %lld K %lld: relative error %g, %lld results differ from the row alone or on one "
                              "thread, %lld padding values written",
                              (long long)M, (long long)N, (long long)K, worst, (long long)variant, (long long)untouched);
        }
        free(A), free(B), free(C0), free(C), free(one), free(C1);
    }
    ft_tensor_set_threads(saved);
}
