/* tensor/blas.c: threads, matrix products (OpenBLAS sgemm) and nn.Linear forward/backward.
 *
 * ftune links OpenBLAS's OpenMP build, so BLAS calls and our own `omp parallel` loops run on the
 * same libgomp pool (two spinning pools on few cores would halve both). OpenBLAS itself is kept
 * single-threaded: ft_tensor_sgemm splits a large product into panels of C (rows, or columns
 * when C is wide and short) that the threads claim one at a time, each a single-threaded sgemm.
 * Why: OpenBLAS's own threaded gemm has its threads hand packed panels to each other and
 * busy-wait for them many times per call; on a shared machine, where one of our threads is
 * often descheduled, the other spins. With panels there is one join per product, and a thread
 * that runs late just claims fewer panels. A product of a few rows with a weight matrix (x W^T
 * with M <= FT_TENSOR_FEW_ROWS: decode steps, the LM head) streams the weights once in
 * gemm_rows.c; the other one-row forms are a GEMV split the same way (gemv_row). */
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Two settings that the libraries read when they load, before main, so they are set here and the
 * process execs itself again (once: the new process finds them set):
 *  - OPENBLAS_CORETYPE=SkylakeX on AVX-512 CPUs that OpenBLAS does not recognise (AMD Zen 4/5),
 *    where it would fall back to Haswell's AVX2 kernels at half the speed;
 *  - how threads wait at the end of a parallel region, unless the user set OMP_WAIT_POLICY or
 *    GOMP_SPINCOUNT. Throughput work (training, evaluation) gets OMP_WAIT_POLICY=PASSIVE: they
 *    sleep at once. On a shared machine a spinning thread burns the time slice its partner needs
 *    (a training step ran 1.5x faster with 2 threads and ~4 other busy processes), and its
 *    regions last milliseconds, so a wake-up costs little. Latency-bound work (decoding: `serve`,
 *    `generate`, the decode and serve benches) gets GOMP_SPINCOUNT=100000: threads spin for a
 *    few milliseconds before sleeping. A decode step opens about ten regions per layer, each
 *    tens of microseconds long, and waking sleeping threads for each cost the 1B shape about
 *    10% of its single-stream decode speed (7.8 against 8.8 tokens/s, alternated runs, idle
 *    machine). FTUNE_OMP_WAIT marks a setting made here, so that a process started by one kind
 *    (a server's training worker) gets its own kind's. */
void ft_runtime_init(char **argv, bool latency) {
    bool changed = false;
    /* FTUNE_OPENBLAS_CORETYPE, when given, is used as is. Otherwise an AVX-512 CPU gets the
     * SkylakeX kernels, also over an inherited OPENBLAS_CORETYPE=Haswell: environments set that
     * to work around OpenBLAS's own mis-detection of these CPUs, and it halves matmul speed. */
    const char *want = getenv("FTUNE_OPENBLAS_CORETYPE");
    const char *have = getenv("OPENBLAS_CORETYPE");
#if defined(__x86_64__) || defined(__i386__)
    if (!want && __builtin_cpu_supports("avx512f") && (!have || !strcmp(have, "Haswell")))
        want = "SkylakeX";
#endif
    if (want && *want && (!have || strcmp(have, want) != 0)) {
        setenv("OPENBLAS_CORETYPE", want, 1);
        changed = true;
    }
    const char *mark = getenv("FTUNE_OMP_WAIT");
    if (mark || (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT"))) {
        const char *kind = latency ? "spin" : "passive";
        if (!mark || strcmp(mark, kind) != 0) {
            if (latency) {
                unsetenv("OMP_WAIT_POLICY");
                setenv("GOMP_SPINCOUNT", "100000", 1);
            } else {
                unsetenv("GOMP_SPINCOUNT");
                setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
            }
            setenv("FTUNE_OMP_WAIT", kind, 1);
            changed = true;
        }
    }
    if (changed && argv)
        execv("/proc/self/exe", argv);
    /* exec failed: carry on with the libraries' defaults */
}

bool ft_dtype_parse(const char *name, ft_dtype *out) {
    if (!strcmp(name, "fp32") || !strcmp(name, "float32"))
        *out = FT_DTYPE_FP32;
    else if (!strcmp(name, "bf16") || !strcmp(name, "bfloat16"))
        *out = FT_DTYPE_BF16;
    else
        return false;
    return true;
}

const char *ft_dtype_name(ft_dtype d) { return d == FT_DTYPE_BF16 ? "bf16" : "fp32"; }

void ft_tensor_set_threads(int n) {
    if (n <= 0)
        n = omp_get_num_procs();
    /* OpenBLAS's OpenMP build follows omp_get_max_threads() and runs single-threaded inside a
     * parallel region, which is how ft_tensor_sgemm uses it; openblas_set_num_threads would
     * reset the OpenMP count, so it is not called. */
    omp_set_num_threads(n);
}

int ft_tensor_threads(void) { return omp_get_max_threads(); }

const char *ft_tensor_blas_core(void) { return openblas_get_corename(); }

/* One row of C (M = 1: a decode step's x . W^T): a matrix-vector product. sgemm would pack the
 * whole weight matrix for one row (reading it twice and writing a copy), and the small-product
 * rule below would keep a decode step's layers on one thread; as a GEMV the step is bound by
 * reading the weights once, so the rows of op(B) (the outputs) are split into panels the threads
 * claim, each a single-threaded sgemv, above ~64K weights. c (1, N) = alpha op(a) op(B) + beta c. */
static void gemv_row(bool trans_a, bool trans_b, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int nt) {
    const int incx = trans_a ? (int)lda : 1; /* op(A) (1, K): a row, or a column of A */
    if ((double)N * (double)K < 65536.0 || N < 64)
        nt = 1;
    int64_t w = (N + 4 * (int64_t)nt - 1) / (4 * (int64_t)nt); /* four panels per thread */
    w = (w + 15) / 16 * 16;
    int64_t panels = (N + w - 1) / w;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (int64_t p = 0; p < panels; p++) {
        int64_t lo = p * w, n = N - lo < w ? N - lo : w;
        if (trans_b) /* B (N, K): c[lo..] = B[lo.., :] . a */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)K, alpha, B + lo * ldb, (int)ldb, A, incx, beta,
                        C + lo, 1);
        else /* B (K, N): c[lo..] = B[:, lo..]^T . a */
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)n, alpha, B + lo, (int)ldb, A, incx, beta, C + lo, 1);
    }
}

/* The product when every size fits BLAS's int (ft_tensor_sgemm_limited checked). */
static void sgemm_fits(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (K <= 0) {
        /* BLAS would scale C by beta; keep that meaning. */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    /* x W^T for a few rows (decode steps, the LM head): streamed once (gemm_rows.c) */
    if (!trans_a && trans_b && M <= FT_TENSOR_FEW_ROWS) {
        tensor_gemm_rows(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nt);
        return;
    }
    if (M == 1) {
        gemv_row(trans_a, trans_b, N, K, alpha, A, lda, B, ldb, beta, C, nt);
        return;
    }
    /* Small products, or a call from inside a parallel region: one thread. */
    if (nt <= 1 || (double)M * (double)N * (double)K < 4e6) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M,
                    (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return;
    }
    /* Panels along the longer side of C, two per thread (a late thread leaves its second one to
     * the others), at least 64 wide. Each panel packs the whole of the other operand again, and
     * splitting the longer side makes that the smaller one: about 2% extra work. */
    bool by_rows = M >= N;
    int64_t dim = by_rows ? M : N;
    int64_t w = (dim + 2 * nt - 1) / (2 * nt);
    w = (w + 31) / 32 * 32;
    if (w < 64)
        w = 64;
    int64_t panels = (dim + w - 1) / w;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t p = 0; p < panels; p++) {
        int64_t lo = p * w, n = dim - lo < w ? dim - lo : w;
        const float *a = A, *b = B;
        float *c = C;
        int64_t m = M, nn = N;
        if (by_rows) { /* rows lo.. of C and of op(A) */
            a = trans_a ? A + lo : A + lo * lda;
            c = C + lo * ldc;
            m = n;
        } else { /* columns lo.. of C and of op(B) */
            b = trans_b ? B + lo * ldb : B + lo;
            c = C + lo;
            nn = n;
        }
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m,
                    (int)nn, (int)K, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
    }
}

/* A row stride BLAS cannot take: a plain loop (float64 sums), C (M, N). */
static void sgemm_loop(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && (double)M * (double)N * (double)K > 1e6)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)(trans_a ? A[k * lda + i] : A[i * lda + k]) *
                       (double)(trans_b ? B[j * ldb + k] : B[k * ldb + j]);
            float *c = &C[i * ldc + j];
            *c = (float)(alpha * acc) + (beta == 0.0f ? 0.0f : beta * *c);
        }
}

/* Why: cblas_sgemm takes int sizes; a cast of a larger int64 would wrap to a wrong (or negative)
 * size and read or write out of bounds. Blocks of at most `limit` keep every call in range. */
void ft_tensor_sgemm_limited(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                             int64_t ldc, int64_t limit) {
    if (M <= 0 || N <= 0)
        return;
    if (limit < 1 || limit > INT_MAX)
        limit = INT_MAX;
    if (lda > limit || ldb > limit || ldc > limit) {
        sgemm_loop(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (M > limit) { /* rows of C and of op(A) */
        for (int64_t i = 0; i < M; i += limit)
            ft_tensor_sgemm_limited(trans_a, trans_b, M - i < limit ? M - i : limit, N, K, alpha,
                                    trans_a ? A + i : A + i * lda, lda, B, ldb, beta, C + i * ldc, ldc, limit);
        return;
    }
    if (N > limit) { /* columns of C and of op(B) */
        for (int64_t j = 0; j < N; j += limit)
            ft_tensor_sgemm_limited(trans_a, trans_b, M, N - j < limit ? N - j : limit, K, alpha, A, lda,
                                    trans_b ? B + j * ldb : B + j, ldb, beta, C + j, ldc, limit);
        return;
    }
    if (K > limit) { /* the first block scales C by beta, the others accumulate */
        for (int64_t k = 0; k < K; k += limit)
            ft_tensor_sgemm_limited(trans_a, trans_b, M, N, K - k < limit ? K - k : limit, alpha,
                                    trans_a ? A + k * lda : A + k, lda, trans_b ? B + k : B + k * ldb, ldb,
                                    k == 0 ? beta : 1.0f, C, ldc, limit);
        return;
    }
    sgemm_fits(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ft_tensor_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ft_tensor_sgemm_limited(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, INT_MAX);
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
