/* tensor/internal.h (internal): what the files of src/tensor/ share and nothing outside uses. */
#ifndef FTUNE_TENSOR_INTERNAL_H
#define FTUNE_TENSOR_INTERNAL_H

#include "ftune/tensor.h"

/* Most rows of A that ft_tensor_sgemm's x W^T form sends to tensor_gemm_rows (gemm_rows.c). */
enum { FT_TENSOR_FEW_ROWS = 16 };

/* C (M, N) = alpha A (M, K) B (N, K)^T + beta C for 1 <= M <= FT_TENSOR_FEW_ROWS, streaming B
 * once, on up to nt threads; each C[i][j] bit-identical whatever M and nt (gemm_rows.c). */
void tensor_gemm_rows(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float beta, float *C, int64_t ldc, int nt);

#endif
