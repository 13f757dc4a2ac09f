/* tests/tensor: the bf16 GEMM routes (src/tensor/gemm_bf16.c). Both routes against the float64
 * product of the same bf16-rounded operands, in every transpose form with alpha, beta and row
 * strides; the oneDNN route against the sgemm route; primitives made once per shape; concurrent
 * calls from a parallel region; the route choice and FTUNE_GEMM.
 *
 * Tolerance: fp32 accumulation of K exact products, in any order, is off from the exact sum by
 * at most about K * 2^-24 * sum_k |a_ik b_kj|; the test allows 2 K 2^-24 sum|a b| per element
 * (plus the beta term's rounding), i.e. what any correct fp32-accumulating kernel meets and a
 * bf16-accumulating or wrongly transposed one does not. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/tensor.h"
#include "test.h"

static float *rand_bf16(uint64_t *s, int64_t n) {
    float *x = ft_malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((double)((*s = *s * 6364136223846793005ull + 1442695040888963407ull) >> 40) / (1 << 24) - 0.5);
    ft_tensor_round_bf16(x, x, n);
    return x;
}

/* The worst error of C against float64, as a multiple of the element's tolerance (<= 1 passes). */
static double gemm_err(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float beta, const float *C0, const float *C, int64_t ldc) {
    double worst = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                double p = (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
                acc += p, mag += fabs(p);
            }
            double want = alpha * acc + beta * (double)C0[i * ldc + j];
            double tol = 2.0 * (double)K * 0x1p-24 * fabs(alpha) * mag + 0x1p-23 * fabs(want) + 1e-30;
            worst = fmax(worst, fabs(want - (double)C[i * ldc + j]) / tol);
        }
    return worst;
}

TEST(tensor_gemm_bf16_routes_match_float64_in_every_form) {
    enum { PAD = 5 };
    const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 70, 129}, {64, 256, 512}, {130, 48, 300}};
    const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.5f, -0.75f}};
    uint64_t s = 777;
    int64_t calls0 = 0, calls1 = 0;
    ft_tensor_gemm_bf16_stats(NULL, &calls0);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int64_t M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        float *A = rand_bf16(&s, (K + PAD) * (M + PAD)), *B = rand_bf16(&s, (K + PAD) * (N + PAD));
        float *C0 = rand_bf16(&s, M * (N + PAD));
        float *C[2] = {ft_malloc((size_t)(M * (N + PAD)) * 4), ft_malloc((size_t)(M * (N + PAD)) * 4)};
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t k = 0; k < sizeof ab / sizeof *ab; k++) {
                    const int64_t lda = (ta ? M : K) + PAD, ldb = (tb ? K : N) + PAD, ldc = N + PAD;
                    for (int r = 0; r < 2; r++) {
                        memcpy(C[r], C0, (size_t)(M * ldc) * 4);
                        ft_tensor_gemm_bf16_on((ft_gemm_route)r, ta, tb, M, N, K, ab[k][0], A, lda, B, ldb, ab[k][1],
                                               C[r], ldc);
                        double e = gemm_err(ta, tb, M, N, K, ab[k][0], A, lda, B, ldb, ab[k][1], C0, C[r], ldc);
                        if (!(e <= 1.0))
                            ft_test_fail_(__FILE__, __LINE__,
                                          "%s (%lld,%lld,%lld) trans %d/%d alpha %g beta %g: error %.3g x tolerance",
                                          r ? "onednn" : "sgemm", (long long)M, (long long)N, (long long)K, ta, tb,
                                          ab[k][0], ab[k][1], e);
                        for (int64_t i = 0; i < M; i++) /* C's padding is never written */
                            for (int64_t j = N; j < ldc; j++)
                                if (C[r][i * ldc + j] != C0[i * ldc + j]) {
                                    ft_test_fail_(__FILE__, __LINE__, "%s: C padding written", r ? "onednn" : "sgemm");
                                    i = M;
                                    break;
                                }
                    }
                }
        ft_free(A), ft_free(B), ft_free(C0), ft_free(C[0]), ft_free(C[1]);
    }
    /* oneDNN really computed them (no silent fallback on a CPU that has bf16 matmul) */
    ft_tensor_gemm_bf16_stats(NULL, &calls1);
    CHECK(calls1 - calls0 >= 5 * 4 * 3 - 3); /* (1,1,1) may legitimately be any kernel; all others oneDNN */
}

/* B as bf16 bits (ft_tensor_gemm_bf16_w16_on: the model's packed weights and LM head), both
 * routes, every form, strided A, B and C, against float64 on the same values; shapes whose stored B
 * is wider than one 16 MiB expansion block make the sgemm route work block by block (columns of C
 * when B is transposed, K slices that accumulate when not). */
TEST(tensor_gemm_bf16_w16_matches_float64_in_every_form) {
    enum { PAD = 3 };
    const int64_t shapes[][3] = {{7, 5, 3}, {33, 70, 129}, {130, 48, 300}, {3, 40, 262150}, {3, 262150, 40}};
    uint64_t s = 4242;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int64_t M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        const bool big = N * K > 1000000;
        float *A = rand_bf16(&s, (K + PAD) * (M + PAD)), *B = rand_bf16(&s, (K + PAD) * (N + PAD));
        uint16_t *B16 = ft_malloc((size_t)((K + PAD) * (N + PAD)) * sizeof(uint16_t));
        ft_tensor_pack_bf16(B16, B, (K + PAD) * (N + PAD));
        float *C0 = rand_bf16(&s, M * (N + PAD)), *C = ft_malloc((size_t)(M * (N + PAD)) * 4);
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                /* the big shapes: B stored wide (the form that needs blocks), A as stored */
                if (big && (tb != (N < K) || ta))
                    continue;
                const int64_t lda = (ta ? M : K) + PAD, ldb = (tb ? K : N) + PAD, ldc = N + PAD;
                for (int r = 0; r < 2; r++)
                    for (int k = big; k < 2; k++) {
                        const float alpha = k ? 0.5f : 1.0f, beta = k ? -0.75f : 0.0f;
                        memcpy(C, C0, (size_t)(M * ldc) * 4);
                        ft_tensor_gemm_bf16_w16_on((ft_gemm_route)r, ta, tb, M, N, K, alpha, A, lda, B16, ldb, beta, C,
                                                   ldc);
                        double e = gemm_err(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, C, ldc);
                        if (!(e <= 1.0))
                            ft_test_fail_(__FILE__, __LINE__,
                                          "w16 %s (%lld,%lld,%lld) trans %d/%d alpha %g beta %g: error %.3g x tolerance",
                                          r ? "onednn" : "sgemm", (long long)M, (long long)N, (long long)K, ta, tb,
                                          alpha, beta, e);
                        for (int64_t i = 0; i < M; i++)
                            for (int64_t j = N; j < ldc; j++)
                                if (C[i * ldc + j] != C0[i * ldc + j]) {
                                    ft_test_fail_(__FILE__, __LINE__, "w16: C padding written");
                                    i = M;
                                    break;
                                }
                    }
            }
        ft_free(A), ft_free(B), ft_free(B16), ft_free(C0), ft_free(C);
    }
}

/* ft_tensor_pack_bf16 gives the bits ft_tensor_round_bf16 keeps: ties to even, carries into the
 * exponent, overflow to infinity, signed zeros, subnormals, infinities and a quiet NaN. */
TEST(tensor_pack_bf16_is_round_bf16s_bits) {
    const uint32_t special[] = {0x00000000u, 0x80000000u, 0x3F808000u, 0x3F818000u, 0x3F80FFFFu, 0x7F7FFFFFu,
                                0xFF7FFFFFu, 0x00000001u, 0x807FFFFFu, 0x7F800000u, 0xFF800000u, 0x7FC00000u,
                                0x7F800001u, 0xFFFF7FFFu, 0x3FFF8000u};
    enum { NS = sizeof special / sizeof *special, NR = 200000 };
    float *x = ft_malloc((NS + NR) * sizeof(float)), *r = ft_malloc((NS + NR) * sizeof(float));
    uint16_t *p = ft_malloc((NS + NR) * sizeof(uint16_t));
    memcpy(x, special, sizeof special);
    uint64_t s = 99;
    for (int i = 0; i < NR; i++) { /* random bit patterns: every exponent, half of them exact ties */
        uint32_t u = (uint32_t)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 32);
        if (i & 1)
            u = (u & 0xFFFF0000u) | 0x8000u;
        memcpy(&x[NS + i], &u, 4);
    }
    ft_tensor_round_bf16(r, x, NS + NR);
    ft_tensor_pack_bf16(p, x, NS + NR);
    int64_t bad = 0;
    for (int i = 0; i < NS + NR; i++) {
        uint32_t u;
        memcpy(&u, &r[i], 4);
        if (isnan(x[i]) ? !(isnan(r[i]) && (p[i] & 0x7F80u) == 0x7F80u && (p[i] & 0x0040u)) : p[i] != (uint16_t)(u >> 16))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    ft_free(x), ft_free(r), ft_free(p);
}

/* One primitive per shape: repeated products of a shape create none after the first. */
TEST(tensor_gemm_bf16_onednn_caches_primitives) {
    uint64_t s = 31;
    const int64_t M = 48, N = 96, K = 80;
    float *A = rand_bf16(&s, M * K), *B = rand_bf16(&s, N * K), *C = ft_calloc((size_t)(M * N), 4);
    ft_tensor_gemm_bf16_on(FT_GEMM_ONEDNN, false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    int64_t p0 = 0, p1 = 0, c0 = 0, c1 = 0;
    ft_tensor_gemm_bf16_stats(&p0, &c0);
    for (int i = 0; i < 10; i++)
        ft_tensor_gemm_bf16_on(FT_GEMM_ONEDNN, false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    ft_tensor_gemm_bf16_stats(&p1, &c1);
    CHECK_EQ_INT(p1, p0);
    CHECK_EQ_INT(c1 - c0, 10);
    /* another beta is another primitive (sum post-op), once */
    ft_tensor_gemm_bf16_on(FT_GEMM_ONEDNN, false, true, M, N, K, 1.0f, A, K, B, K, 1.0f, C, N);
    ft_tensor_gemm_bf16_on(FT_GEMM_ONEDNN, false, true, M, N, K, 1.0f, A, K, B, K, 1.0f, C, N);
    ft_tensor_gemm_bf16_stats(&p1, NULL);
    CHECK(p1 - p0 <= 1);
    ft_free(A), ft_free(B), ft_free(C);
}

/* Threads sharing primitives at once (the LM head's backward calls from a parallel region): each
 * result equals the same product computed alone, bit for bit. */
TEST(tensor_gemm_bf16_onednn_concurrent_calls) {
    uint64_t s = 5;
    enum { T = 4 };
    const int64_t M = 40, N = 72, K = 96;
    float *A = rand_bf16(&s, T * M * K), *B = rand_bf16(&s, N * K);
    float *C = ft_calloc((size_t)(T * M * N), 4), *D = ft_calloc((size_t)(T * M * N), 4);
    for (int t = 0; t < T; t++)
        ft_tensor_gemm_bf16_on(FT_GEMM_ONEDNN, false, true, M, N, K, 1.0f, A + t * M * K, K, B, K, 0.0f,
                               D + t * M * N, N);
    for (int rep = 0; rep < 5; rep++) {
#pragma omp parallel for num_threads(T) schedule(static, 1)
        for (int t = 0; t < T; t++)
            ft_tensor_gemm_bf16_on(FT_GEMM_ONEDNN, false, true, M, N, K, 1.0f, A + t * M * K, K, B, K, 0.0f,
                                   C + t * M * N, N);
        CHECK(memcmp(C, D, (size_t)(T * M * N) * 4) == 0);
    }
    ft_free(A), ft_free(B), ft_free(C), ft_free(D);
}

/* The process's route is one of the two with a reason; FTUNE_GEMM values are checked. */
TEST(tensor_gemm_bf16_route_choice) {
    const char *why = NULL;
    ft_gemm_route r = ft_tensor_bf16_route(&why);
    CHECK(r == FT_GEMM_SGEMM || r == FT_GEMM_ONEDNN);
    CHECK(why && *why);
    const char *name = ft_tensor_gemm_route(FT_DTYPE_BF16);
    CHECK(!strcmp(name, r == FT_GEMM_ONEDNN ? "onednn-bf16" : "sgemm-bf16"));
    CHECK(!strcmp(ft_tensor_gemm_route(FT_DTYPE_FP32), "sgemm"));
    const char *d_why = NULL;
    ft_dtype d = ft_tensor_auto_dtype(&d_why);
    CHECK(d == FT_DTYPE_FP32 || (d == FT_DTYPE_BF16 && r == FT_GEMM_ONEDNN));
    CHECK(d_why && strstr(d_why, ft_dtype_name(d)));
    const char *was = getenv("FTUNE_GEMM");
    char *saved = was ? strdup(was) : NULL;
    ft_err err;
    setenv("FTUNE_GEMM", "mkl", 1);
    CHECK(ft_tensor_gemm_env_check(&err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "FTUNE_GEMM=mkl") && strstr(err.msg, "sgemm or onednn"));
    setenv("FTUNE_GEMM", "onednn", 1);
    CHECK_OK(ft_tensor_gemm_env_check(&err), &err);
    if (saved)
        setenv("FTUNE_GEMM", saved, 1);
    else
        unsetenv("FTUNE_GEMM");
    free(saved);
}
