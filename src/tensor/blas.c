/* tensor/blas.c: threads, matrix products (OpenBLAS sgemm) and nn.Linear forward/backward.
 *
 * ftune links OpenBLAS's OpenMP build, so BLAS calls and our own `omp parallel` loops run on the
 * same libgomp pool (two spinning pools on few cores would halve both). A BLAS call made inside
 * one of our parallel regions runs single-threaded, which is what the attention tiles want. */
#include <cblas.h>
#include <omp.h>

#include "ftune/tensor.h"

void ft_tensor_set_threads(int n) {
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int ft_tensor_threads(void) { return omp_get_max_threads(); }

const char *ft_tensor_blas_core(void) { return openblas_get_corename(); }

void ft_tensor_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        /* BLAS would scale C by beta; keep that meaning. */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M,
                (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void ft_tensor_linear_fwd(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out) {
    /* y (N, out) = x (N, in) . W^T, W (out, in) */
    ft_tensor_sgemm(false, true, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
}

void ft_tensor_linear_bwd(float *dx, float *dW, const float *dy, const float *x, const float *W, int64_t N,
                          int64_t in, int64_t out, bool dx_accumulate, bool dW_zero) {
    if (dW) /* dW (out, in) += dy^T (out, N) . x (N, in) */
        ft_tensor_sgemm(true, false, out, in, N, 1.0f, dy, out, x, in, dW_zero ? 0.0f : 1.0f, dW, in);
    if (dx) /* dx (N, in) = dy (N, out) . W (out, in) */
        ft_tensor_sgemm(false, false, N, in, out, 1.0f, dy, out, W, in, dx_accumulate ? 1.0f : 0.0f, dx, in);
}
