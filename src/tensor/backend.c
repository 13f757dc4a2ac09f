/* tensor/backend.c: the CPU backend table (ftune/tensor.h), the optimizer update kernels and the
 * bf16 rounding cast. The table only points at the ft_tensor_* kernels of this folder. */
#include <math.h>
#include <string.h>

#include "ftune/tensor.h"

void ft_tensor_adamw(float *w, float *m1, float *m2, const float *g, int64_t n, const ft_optim_update *u) {
    const float keep = u->keep, b1 = u->beta1, b2 = u->beta2, a1 = u->one_minus_beta1, a2 = u->one_minus_beta2;
    const float step_size = u->step_size, inv_sqrt_bc2 = u->inv_sqrt_bc2, eps = u->eps, gscale = u->gscale;
    const bool decay = keep != 1.0f;
#pragma omp parallel for simd schedule(dynamic, 262144)
    for (int64_t i = 0; i < n; i++) {
        float p = decay ? w[i] * keep : w[i];
        float gi = g[i] * gscale;
        float m = m1[i] * b1 + gi * a1;
        float v = m2[i] * b2 + gi * gi * a2;
        m1[i] = m;
        m2[i] = v;
        w[i] = p - step_size * (m / (sqrtf(v) * inv_sqrt_bc2 + eps));
    }
}

void ft_tensor_lion(float *w, float *m1, const float *g, int64_t n, const ft_optim_update *u) {
    const float keep = u->keep, lr = u->lr, a1 = u->one_minus_beta1, a2 = u->one_minus_beta2, gscale = u->gscale;
    const bool decay = keep != 1.0f;
#pragma omp parallel for simd schedule(dynamic, 262144)
    for (int64_t i = 0; i < n; i++) {
        float p = decay ? w[i] * keep : w[i];
        float gi = g[i] * gscale, m = m1[i];
        float c = m + a1 * (gi - m); /* lerp(m, g, 1 - b1) */
        float sgn = (float)(c > 0.0f) - (float)(c < 0.0f);
        w[i] = p - lr * sgn;
        m1[i] = m + a2 * (gi - m); /* lerp(m, g, 1 - b2) */
    }
}

/* Round-to-nearest-even on the upper 16 bits, as PyTorch's float -> bfloat16 conversion (c10's
 * round_to_nearest_even): add 0x7FFF plus the lowest kept bit, then truncate. NaN is kept quiet. */
void ft_tensor_round_bf16(float *dst, const float *src, int64_t n) {
#pragma omp parallel for simd schedule(dynamic, 65536)
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        uint32_t r = isnan(src[i]) ? (u | 0x00400000u) & 0xFFFF0000u : (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
        float f;
        memcpy(&f, &r, 4);
        dst[i] = f;
    }
}

static const ft_backend cpu = {
    .name = "cpu",
    .sgemm = ft_tensor_sgemm,
    .gemm_bf16 = ft_tensor_gemm_bf16,
    .gemm_bf16_w16 = ft_tensor_gemm_bf16_w16,
    .pack_bf16 = ft_tensor_pack_bf16,
    .linear_fwd = ft_tensor_linear_fwd,
    .linear_bwd = ft_tensor_linear_bwd,
    .embedding_fwd = ft_tensor_embedding_fwd,
    .embedding_bwd = ft_tensor_embedding_bwd,
    .rmsnorm_fwd = ft_tensor_rmsnorm_fwd,
    .rmsnorm_bwd = ft_tensor_rmsnorm_bwd,
    .layernorm_fwd = ft_tensor_layernorm_fwd,
    .layernorm_bwd = ft_tensor_layernorm_bwd,
    .rope_table = ft_tensor_rope_table,
    .rope_fwd = ft_tensor_rope_fwd,
    .rope_bwd = ft_tensor_rope_bwd,
    .swiglu_fwd = ft_tensor_swiglu_fwd,
    .swiglu_bwd = ft_tensor_swiglu_bwd,
    .add = ft_tensor_add,
    .cross_entropy = ft_tensor_cross_entropy,
    .attention_scratch = ft_tensor_attention_scratch,
    .attention_fwd = ft_tensor_attention_fwd,
    .attention_bwd = ft_tensor_attention_bwd,
    .adamw = ft_tensor_adamw,
    .lion = ft_tensor_lion,
    .round_bf16 = ft_tensor_round_bf16,
};

const ft_backend *ft_backend_cpu(void) { return &cpu; }
