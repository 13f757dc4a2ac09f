/* tests/tensor: the CPU kernels. Forward values against naive double-precision formulas, and
 * every backward against central finite differences of L = sum(out * R) for a random R. */
#include <stdlib.h>
#include <sys/mman.h>

#include "ftune/tensor.h"
#include "test.h"

static float *randn(ft_rng *r, int64_t n, float scale) {
    float *x = ft_malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)ft_rng_normal(r) * scale;
    return x;
}

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* Central differences of loss() with respect to x[idx] for `count` indices (all when count >= n,
 * else a deterministic sample), against the analytic gradient. Fails when the worst error
 * exceeds rtol * max|grad| + atol. */
typedef double (*loss_fn)(void *ctx);
static double fd_check(const char *what, float *x, const float *grad, int64_t n, int64_t count, loss_fn loss, void *ctx,
                       float h, double rtol) {
    double gmax = 0, worst = 0;
    for (int64_t i = 0; i < n; i++)
        gmax = fmax(gmax, fabs(grad[i]));
    ft_rng r;
    ft_rng_seed(&r, 99);
    for (int64_t c = 0; c < (count < n ? count : n); c++) {
        int64_t i = count < n ? (int64_t)ft_rng_below(&r, (uint64_t)n) : c;
        float x0 = x[i];
        x[i] = x0 + h;
        double lp = loss(ctx);
        x[i] = x0 - h;
        double lm = loss(ctx);
        x[i] = x0;
        double num = (lp - lm) / (2.0 * h);
        worst = fmax(worst, fabs(num - grad[i]));
    }
    if (!(worst <= rtol * gmax + 1e-4))
        ft_test_fail_(__FILE__, __LINE__, "%s: finite differences differ by %.3g (max |grad| %.3g)", what, worst, gmax);
    return worst;
}

/* ---------------------------------------------------------------- RMSNorm */

typedef struct {
    float *x, *w, *out, *R;
    int64_t N, C;
} rms_ctx;
static double rms_loss(void *p) {
    rms_ctx *c = p;
    ft_tensor_rmsnorm_fwd(c->out, NULL, c->x, c->w, c->N, c->C, 1e-5f);
    return dot(c->out, c->R, c->N * c->C);
}

TEST(tensor_rmsnorm_matches_formula_and_gradients) {
    ft_rng r;
    ft_rng_seed(&r, 1);
    int64_t N = 5, C = 37;
    rms_ctx c = {randn(&r, N * C, 1), randn(&r, C, 1), ft_calloc(N * C, 4), randn(&r, N * C, 1), N, C};
    float *rstd = ft_calloc(N, 4), *dx = ft_calloc(N * C, 4), *dw = ft_calloc(C, 4);
    ft_tensor_rmsnorm_fwd(c.out, rstd, c.x, c.w, N, C, 1e-5f);
    for (int64_t n = 0; n < N; n++) {
        double ss = 0;
        for (int64_t k = 0; k < C; k++)
            ss += (double)c.x[n * C + k] * c.x[n * C + k];
        double rs = 1 / sqrt(ss / C + 1e-5);
        CHECK_NEAR(rstd[n], rs, 1e-6 * rs);
        for (int64_t k = 0; k < C; k++)
            CHECK_NEAR(c.out[n * C + k], c.w[k] * c.x[n * C + k] * rs, 1e-5);
    }
    ft_tensor_rmsnorm_bwd(dx, dw, c.R, c.x, c.w, rstd, N, C);
    fd_check("rmsnorm dx", c.x, dx, N * C, 1000, rms_loss, &c, 1e-2f, 1e-2);
    fd_check("rmsnorm dw", c.w, dw, C, 1000, rms_loss, &c, 1e-2f, 1e-2);
    free(c.x), free(c.w), free(c.out), free(c.R), free(rstd), free(dx), free(dw);
}

/* ---------------------------------------------------------------- LayerNorm without bias (DBRX) */

static double ln_loss(void *p) {
    rms_ctx *c = p;
    ft_tensor_layernorm_fwd(c->out, NULL, NULL, c->x, c->w, c->N, c->C, 1e-5f);
    return dot(c->out, c->R, c->N * c->C);
}

TEST(tensor_layernorm_matches_formula_and_gradients) {
    ft_rng r;
    ft_rng_seed(&r, 2);
    int64_t N = 6, C = 41;
    rms_ctx c = {randn(&r, N * C, 1), randn(&r, C, 1), ft_calloc(N * C, 4), randn(&r, N * C, 1), N, C};
    for (int64_t k = 0; k < N * C; k++) /* a row mean far from 0, as residual streams have */
        c.x[k] += 3.0f;
    float *mean = ft_calloc(N, 4), *rstd = ft_calloc(N, 4), *dx = ft_calloc(N * C, 4), *dw = ft_calloc(C, 4);
    ft_tensor_layernorm_fwd(c.out, mean, rstd, c.x, c.w, N, C, 1e-5f);
    for (int64_t n = 0; n < N; n++) {
        double mu = 0, var = 0;
        for (int64_t k = 0; k < C; k++)
            mu += c.x[n * C + k];
        mu /= (double)C;
        for (int64_t k = 0; k < C; k++)
            var += (c.x[n * C + k] - mu) * (c.x[n * C + k] - mu);
        double rs = 1 / sqrt(var / (double)C + 1e-5);
        CHECK_NEAR(mean[n], mu, 1e-6 * fabs(mu) + 1e-7);
        CHECK_NEAR(rstd[n], rs, 1e-6 * rs);
        for (int64_t k = 0; k < C; k++)
            CHECK_NEAR(c.out[n * C + k], c.w[k] * (c.x[n * C + k] - mu) * rs, 1e-5);
    }
    ft_tensor_layernorm_bwd(dx, dw, c.R, c.x, c.w, mean, rstd, N, C);
    fd_check("layernorm dx", c.x, dx, N * C, 1000, ln_loss, &c, 1e-2f, 1e-2);
    fd_check("layernorm dw", c.w, dw, C, 1000, ln_loss, &c, 1e-2f, 1e-2);
    /* the row gradient of a centred norm sums to zero */
    for (int64_t n = 0; n < N; n++) {
        double s = 0;
        for (int64_t k = 0; k < C; k++)
            s += dx[n * C + k];
        CHECK_NEAR(s, 0.0, 1e-4);
    }
    free(c.x), free(c.w), free(c.out), free(c.R), free(mean), free(rstd), free(dx), free(dw);
}

/* ---------------------------------------------------------------- RoPE */

TEST(tensor_rope_inv_freq_default_and_llama3) {
    ft_rope_params c = {.head_dim = 16, .theta = 500000.0};
    float f[8];
    ft_tensor_rope_inv_freq(f, &c);
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(f[i], 1.0 / pow(500000.0, 2.0 * i / 16), 1e-6 * f[i]);
    c.llama3 = true;
    c.factor = 8, c.low_freq_factor = 1, c.high_freq_factor = 4;
    c.original_max_position_embeddings = 8192;
    float g[8];
    ft_tensor_rope_inv_freq(g, &c);
    for (int i = 0; i < 8; i++) {
        double inv = 1.0 / pow(500000.0, 2.0 * i / 16), wl = 2 * M_PI / inv, want;
        if (wl < 8192.0 / 4)
            want = inv; /* high frequency: kept */
        else if (wl > 8192.0 / 1)
            want = inv / 8; /* low frequency: scaled */
        else {
            double s = (8192.0 / wl - 1) / (4 - 1);
            want = (1 - s) * inv / 8 + s * inv;
        }
        CHECK_NEAR(g[i], want, 1e-5 * want);
    }
    CHECK(g[0] == f[0]);
    CHECK(g[7] < f[7]);
}

typedef struct {
    float *x, *x0, *R, *cs, *sn;
    int64_t N, stride, H, HD;
} rope_ctx;
static double rope_loss(void *p) {
    rope_ctx *c = p;
    memcpy(c->x0, c->x, (size_t)(c->N * c->stride) * 4);
    ft_tensor_rope_fwd(c->x0, c->stride, c->cs, c->sn, c->N, c->H, c->HD);
    return dot(c->x0, c->R, c->N * c->stride);
}

TEST(tensor_rope_rotate_half_and_gradient) {
    ft_rng r;
    ft_rng_seed(&r, 2);
    int64_t N = 6, H = 3, HD = 8, stride = 30, half = HD / 2;
    ft_rope_params cfg = {.head_dim = HD, .theta = 10000.0}; /* LlamaConfig's default theta */
    float inv[4], cs[6 * 4], sn[6 * 4];
    int32_t pos[6] = {0, 1, 2, 7, 0, 100};
    ft_tensor_rope_inv_freq(inv, &cfg);
    ft_tensor_rope_table(cs, sn, pos, inv, N, half);
    rope_ctx c = {
        randn(&r, N * stride, 1), ft_calloc(N * stride, 4), randn(&r, N * stride, 1), cs, sn, N, stride, H, HD};
    /* forward against the formula q*cos + rotate_half(q)*sin */
    memcpy(c.x0, c.x, (size_t)(N * stride) * 4);
    ft_tensor_rope_fwd(c.x0, stride, cs, sn, N, H, HD);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < stride; k++) {
            double want = c.x[n * stride + k];
            if (k < H * HD) {
                int64_t i = k % HD, j = i % half;
                double a = pos[n] * (double)inv[j];
                double rot = i < half ? -c.x[n * stride + k + half] : c.x[n * stride + k - half];
                want = c.x[n * stride + k] * cos(a) + rot * sin(a);
            }
            CHECK_NEAR(c.x0[n * stride + k], want, 2e-5);
        }
    float *dx = ft_calloc(N * stride, 4);
    memcpy(dx, c.R, (size_t)(N * stride) * 4);
    ft_tensor_rope_bwd(dx, stride, cs, sn, N, H, HD);
    fd_check("rope dx", c.x, dx, N * stride, 1000, rope_loss, &c, 1e-2f, 1e-3);
    free(c.x), free(c.x0), free(c.R), free(dx);
}

/* ---------------------------------------------------------------- SwiGLU */

typedef struct {
    float *gu, *h, *R;
    int64_t N, F;
} swiglu_ctx;
static double swiglu_loss(void *p) {
    swiglu_ctx *c = p;
    ft_tensor_swiglu_fwd(c->h, c->gu, c->N, c->F);
    return dot(c->h, c->R, c->N * c->F);
}

TEST(tensor_swiglu_values_and_gradient) {
    ft_rng r;
    ft_rng_seed(&r, 3);
    int64_t N = 4, F = 45;
    swiglu_ctx c = {randn(&r, N * 2 * F, 3), ft_calloc(N * F, 4), randn(&r, N * F, 1), N, F};
    c.gu[0] = -100.0f, c.gu[1] = 100.0f; /* saturated ends */
    ft_tensor_swiglu_fwd(c.h, c.gu, N, F);
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < F; f++) {
            double g = c.gu[n * 2 * F + f], u = c.gu[n * 2 * F + F + f];
            CHECK_NEAR(c.h[n * F + f], g / (1 + exp(-g)) * u, 1e-5 * (1 + fabs(g * u)));
        }
    float *d = ft_calloc(N * 2 * F, 4);
    ft_tensor_swiglu_bwd(d, c.R, c.gu, N, F);
    fd_check("swiglu d[gate|up]", c.gu, d, N * 2 * F, 1000, swiglu_loss, &c, 1e-2f, 1e-2);
    /* in place gives the same */
    float *inplace = ft_malloc((size_t)(N * 2 * F) * 4);
    memcpy(inplace, c.gu, (size_t)(N * 2 * F) * 4);
    ft_tensor_swiglu_bwd(inplace, c.R, inplace, N, F);
    CHECK(memcmp(inplace, d, (size_t)(N * 2 * F) * 4) == 0);
    free(c.gu), free(c.h), free(c.R), free(d), free(inplace);
}

/* ---------------------------------------------------------------- cross-entropy */

typedef struct {
    float *logits, *tmp;
    const int32_t *t;
    int64_t N, V;
} ce_ctx;
static double ce_loss(void *p) {
    ce_ctx *c = p;
    return ft_tensor_cross_entropy(c->logits, c->t, c->N, c->V, 0.0f, NULL, NULL);
}

TEST(tensor_cross_entropy_values_ignore_and_gradient) {
    ft_rng r;
    ft_rng_seed(&r, 4);
    int64_t N = 5, V = 203;
    int32_t t[5] = {3, -100, 202, 0, 77};
    ce_ctx c = {randn(&r, N * V, 4), NULL, t, N, V};
    c.logits[4 * V + 77] = 50; /* argmax hit */
    int64_t nv = 0, right = 0;
    double loss = ft_tensor_cross_entropy(c.logits, t, N, V, 0.0f, &nv, &right);
    double want = 0;
    for (int64_t n = 0; n < N; n++) {
        if (t[n] < 0)
            continue;
        double m = -1e30, s = 0;
        for (int64_t j = 0; j < V; j++)
            m = fmax(m, c.logits[n * V + j]);
        for (int64_t j = 0; j < V; j++)
            s += exp(c.logits[n * V + j] - m);
        want += m + log(s) - c.logits[n * V + t[n]];
    }
    CHECK_EQ_INT(nv, 4);
    CHECK(right >= 1);
    CHECK_NEAR(loss, want, 1e-6 * fabs(want));
    float *g = ft_malloc((size_t)(N * V) * 4);
    memcpy(g, c.logits, (size_t)(N * V) * 4);
    double l2 = ft_tensor_cross_entropy(g, t, N, V, 1.0f, NULL, NULL);
    CHECK_NEAR(l2, loss, 1e-9 * fabs(loss));
    for (int64_t j = 0; j < V; j++)
        CHECK(g[1 * V + j] == 0.0f); /* ignored row: zero gradient */
    fd_check("cross-entropy dlogits", c.logits, g, N * V, 400, ce_loss, &c, 1e-2f, 1e-2);
    free(c.logits), free(g);
}

/* ---------------------------------------------------------------- linear, embedding */

TEST(tensor_linear_and_embedding) {
    ft_rng r;
    ft_rng_seed(&r, 5);
    int64_t N = 7, in = 13, out = 9;
    float *x = randn(&r, N * in, 1), *W = randn(&r, out * in, 1), *y = ft_calloc(N * out, 4);
    float *dy = randn(&r, N * out, 1), *dx = ft_calloc(N * in, 4), *dW = ft_calloc(out * in, 4);
    ft_tensor_linear_fwd(y, x, W, N, in, out);
    ft_tensor_linear_bwd(dx, dW, dy, x, W, N, in, out, false, false);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < out; o++)
            CHECK_NEAR(y[n * out + o], dot(x + n * in, W + o * in, in), 1e-4);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < in; i++) {
            double s = 0;
            for (int64_t o = 0; o < out; o++)
                s += (double)dy[n * out + o] * W[o * in + i];
            CHECK_NEAR(dx[n * in + i], s, 1e-4);
        }
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) {
            double s = 0;
            for (int64_t n = 0; n < N; n++)
                s += (double)dy[n * out + o] * x[n * in + i];
            CHECK_NEAR(dW[o * in + i], s, 1e-4);
        }
    /* embedding: repeated ids accumulate */
    int32_t ids[7] = {2, 0, 2, 5, 2, 0, 8};
    float *table = randn(&r, 9 * in, 1), *e = ft_calloc(N * in, 4), *dt = ft_calloc(9 * in, 4);
    ft_tensor_embedding_fwd(e, ids, table, N, in);
    CHECK(memcmp(e + 3 * in, table + 5 * in, (size_t)in * 4) == 0);
    ft_tensor_embedding_bwd(dt, ids, x, N, in);
    for (int64_t i = 0; i < in; i++) {
        CHECK_NEAR(dt[2 * in + i], (double)x[0 * in + i] + x[2 * in + i] + x[4 * in + i], 1e-5);
        CHECK_NEAR(dt[1 * in + i], 0, 0);
    }
    free(x), free(W), free(y), free(dy), free(dx), free(dW), free(table), free(e), free(dt);
}

/* ---------------------------------------------------------------- attention */

/* Naive attention in double: out (B, Tq, NH*HD) contiguous; q/k/v contiguous too. */
static void naive_attention(double *out, const float *q, const float *k, const float *v, const int32_t *sid,
                            const ft_attn_shape *s) {
    int64_t G = s->NH / s->KVH, HD = s->HD;
    double *p = ft_malloc((size_t)s->Tk * sizeof(double));
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->NH; h++)
            for (int64_t i = 0; i < s->Tq; i++) {
                const float *qi = q + (b * s->Tq + i) * s->q_stride + h * HD;
                double m = -1e300, sum = 0;
                for (int64_t j = 0; j < s->Tk; j++) {
                    bool ok = j <= s->q_offset + i && (!sid || sid[b * s->Tq + j] == sid[b * s->Tq + i]) &&
                              (s->window == 0 || s->q_offset + i - j < s->window);
                    const float *kj = k + (b * s->Tk + j) * s->k_stride + (h / G) * HD;
                    p[j] = ok ? dot(qi, kj, HD) / sqrt((double)HD) : -1e300;
                    m = fmax(m, p[j]);
                }
                for (int64_t j = 0; j < s->Tk; j++)
                    sum += p[j] = p[j] <= -1e299 ? 0 : exp(p[j] - m);
                for (int64_t d = 0; d < HD; d++) {
                    double o = 0;
                    for (int64_t j = 0; j < s->Tk; j++)
                        o += p[j] / sum * v[(b * s->Tk + j) * s->v_stride + (h / G) * HD + d];
                    out[(b * s->Tq + i) * s->o_stride + h * HD + d] = o;
                }
            }
    free(p);
}

typedef struct {
    ft_attn_shape s;
    float *q, *k, *v, *out, *R, *scratch;
    const int32_t *sid;
} attn_ctx;
static double attn_loss(void *p) {
    attn_ctx *c = p;
    ft_tensor_attention_fwd(&c->s, c->out, NULL, c->q, c->k, c->v, c->sid, c->scratch);
    return dot(c->out, c->R, c->s.B * c->s.Tq * c->s.o_stride);
}

static void attention_case(int64_t B, int64_t T, int64_t NH, int64_t KVH, int64_t HD, bool packed, int64_t window) {
    ft_rng r;
    ft_rng_seed(&r, (uint64_t)(T * 31 + NH * 7 + KVH + window));
    ft_attn_shape s = {.B = B,
                       .Tq = T,
                       .Tk = T,
                       .NH = NH,
                       .KVH = KVH,
                       .HD = HD,
                       .window = window,
                       .q_stride = NH * HD,
                       .k_stride = KVH * HD,
                       .v_stride = KVH * HD,
                       .o_stride = NH * HD};
    int32_t *sid = NULL;
    if (packed) {
        sid = ft_malloc((size_t)(B * T) * 4);
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                sid[b * T + t] = (int32_t)(t < T / 3 ? 0 : t < T - 5 ? 1 : 2) + (int32_t)b;
    }
    attn_ctx c = {s,
                  randn(&r, B * T * NH * HD, 1),
                  randn(&r, B * T * KVH * HD, 1),
                  randn(&r, B * T * KVH * HD, 1),
                  ft_calloc(B * T * NH * HD, 4),
                  randn(&r, B * T * NH * HD, 1),
                  ft_malloc(ft_tensor_attention_scratch(&s) * 4),
                  sid};
    float *lse = ft_calloc(B * NH * T, 4);
    ft_tensor_attention_fwd(&s, c.out, lse, c.q, c.k, c.v, sid, c.scratch);
    double *want = ft_malloc((size_t)(B * T * NH * HD) * sizeof(double));
    naive_attention(want, c.q, c.k, c.v, sid, &s);
    double worst = 0;
    for (int64_t i = 0; i < B * T * NH * HD; i++)
        worst = fmax(worst, fabs(c.out[i] - want[i]));
    if (!(worst < 2e-5))
        ft_test_fail_(__FILE__, __LINE__, "attention T=%lld NH=%lld KVH=%lld packed=%d window=%lld: forward off by %g",
                      (long long)T, (long long)NH, (long long)KVH, packed, (long long)window, worst);
    float *dq = ft_calloc(B * T * NH * HD, 4), *dk = randn(&r, B * T * KVH * HD, 1),
          *dv = randn(&r, B * T * KVH * HD, 1); /* garbage in dk, dv: the kernel must zero them */
    ft_tensor_attention_bwd(&s, dq, dk, dv, c.R, c.out, lse, c.q, c.k, c.v, sid, c.scratch);
    fd_check("attention dq", c.q, dq, B * T * NH * HD, 150, attn_loss, &c, 1e-2f, 1e-2);
    fd_check("attention dk", c.k, dk, B * T * KVH * HD, 150, attn_loss, &c, 1e-2f, 1e-2);
    fd_check("attention dv", c.v, dv, B * T * KVH * HD, 150, attn_loss, &c, 1e-2f, 1e-2);
    free(c.q), free(c.k), free(c.v), free(c.out), free(c.R), free(c.scratch), free(lse), free(want), free(dq), free(dk),
        free(dv), free(sid);
}

TEST(tensor_attention_gqa_packed_multi_tile) {
    attention_case(2, 75, 4, 2, 8, true, 0);
}
TEST(tensor_attention_mqa_and_mha) {
    attention_case(1, 11, 3, 1, 6, false, 0);
    attention_case(2, 9, 2, 2, 4, true, 0);
}
TEST(tensor_attention_sliding_window) {
    attention_case(1, 70, 2, 1, 4, false, 5);
}

TEST(tensor_attention_decode_offset_matches_naive) {
    /* queries 3 rows at positions 5..7 against 8 cached keys (the decode path) */
    ft_rng r;
    ft_rng_seed(&r, 6);
    ft_attn_shape s = {.B = 1,
                       .Tq = 3,
                       .Tk = 8,
                       .NH = 4,
                       .KVH = 2,
                       .HD = 6,
                       .q_offset = 5,
                       .q_stride = 24,
                       .k_stride = 12,
                       .v_stride = 12,
                       .o_stride = 24};
    float *q = randn(&r, 3 * 24, 1), *k = randn(&r, 8 * 12, 1), *v = randn(&r, 8 * 12, 1), *o = ft_calloc(3 * 24, 4);
    float *scratch = ft_malloc(ft_tensor_attention_scratch(&s) * 4);
    double want[3 * 24];
    ft_tensor_attention_fwd(&s, o, NULL, q, k, v, NULL, scratch);
    naive_attention(want, q, k, v, NULL, &s);
    for (int i = 0; i < 3 * 24; i++)
        CHECK_NEAR(o[i], want[i], 2e-5);
    free(q), free(k), free(v), free(o), free(scratch);
}

/* Sizes beyond BLAS's int are split (issue #9 item 13): with a small limit standing in for INT_MAX,
 * every split (rows, columns, the inner dimension, a row stride past the limit) gives the float64
 * product, for each transpose. */
TEST(tensor_sgemm_splits_sizes_blas_cannot_take) {
    enum { M = 13, N = 11, K = 17, PAD = 3 };
    uint64_t s = 12345;
    float A[(K + PAD) * (M + PAD)], B[(K + PAD) * (N + PAD)], C0[M * (N + PAD)], C[M * (N + PAD)];
    for (size_t i = 0; i < sizeof A / sizeof *A; i++)
        A[i] = (float)((double)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 40) / (1 << 24) - 0.5);
    for (size_t i = 0; i < sizeof B / sizeof *B; i++)
        B[i] = (float)((double)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 40) / (1 << 24) - 0.5);
    for (size_t i = 0; i < sizeof C0 / sizeof *C0; i++)
        C0[i] = (float)((double)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 40) / (1 << 24) - 0.5);
    const int64_t limits[] = {1, 2, 4, 5, 12, 16, 100};
    const float alpha = 0.75f, beta = 0.5f;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t lda = (ta ? M : K) + PAD, ldb = (tb ? K : N) + PAD, ldc = N + PAD;
            for (size_t li = 0; li < sizeof limits / sizeof *limits; li++) {
                memcpy(C, C0, sizeof C);
                ft_tensor_sgemm_limited(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, limits[li]);
                double worst = 0;
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double acc = 0;
                        for (int64_t k = 0; k < K; k++)
                            acc += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                                   (double)(tb ? B[j * ldb + k] : B[k * ldb + j]);
                        double want = alpha * acc + beta * (double)C0[i * ldc + j];
                        worst = fmax(worst, fabs(want - (double)C[i * ldc + j]));
                    }
                if (!(worst <= 1e-5))
                    ft_test_fail_(__FILE__, __LINE__, "trans %d/%d, limit %lld: max error %g", ta, tb,
                                  (long long)limits[li], worst);
                /* the padding of C is never written */
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = N; j < ldc; j++)
                        if (C[i * ldc + j] != C0[i * ldc + j])
                            ft_test_fail_(__FILE__, __LINE__, "C[%lld][%lld] (padding) written", (long long)i,
                                          (long long)j);
            }
        }
}

/* The same through ft_tensor_sgemm with a real row stride past INT_MAX (A reserved, not touched:
 * only the rows used are written). The old int cast made it negative, and BLAS refused the call. */
TEST(tensor_sgemm_row_stride_past_int_max) {
    const int64_t lda = (int64_t)2147483647 + 9, M = 2, N = 2, K = 3;
    size_t bytes = (size_t)((M - 1) * lda + K) * sizeof(float);
    float *A = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (A == MAP_FAILED)
        SKIP("cannot reserve %zu bytes of address space", bytes);
    float B[3 * 2] = {1, 2, 3, 4, 5, 6}, C[4] = {0};
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++)
            A[i * lda + k] = (float)(i + 1) * (float)(k + 1); /* rows (1 2 3), (2 4 6) */
    ft_tensor_sgemm(false, false, M, N, K, 1.0f, A, lda, B, 2, 0.0f, C, 2);
    /* (1 2 3).B = (22 28); (2 4 6).B = (44 56) */
    CHECK_NEAR(C[0], 22, 1e-5);
    CHECK_NEAR(C[1], 28, 1e-5);
    CHECK_NEAR(C[2], 44, 1e-5);
    CHECK_NEAR(C[3], 56, 1e-5);
    munmap(A, bytes);
}
