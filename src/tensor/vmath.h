/* tensor/vmath.h (internal): a vectorizable exp for the hot loops (softmax, SiLU).
 *
 * Why not expf: glibc's expf is a call per element that the compiler cannot vectorize without
 * -ffast-math, and the attention and cross-entropy softmaxes take ~10^8 exps per training
 * step. This one is plain arithmetic that GCC turns into AVX-512 code inside `omp simd` loops:
 * exp(x) = 2^n * e^r with n = round(x / ln 2), |r| <= ln2 / 2, e^r by its Taylor series to
 * degree 7 (truncation error < 6e-9 relative, below float rounding). Inputs are clamped to
 * [-87, 88] so 2^n stays a normal float; callers that need an exact 0 (masked scores) select it
 * themselves. */
#ifndef FTUNE_TENSOR_VMATH_H
#define FTUNE_TENSOR_VMATH_H

#include <stdint.h>
#include <string.h>

#pragma omp declare simd notinbranch
static inline float ft_vexp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* Round to nearest through the 1.5 * 2^23 trick: pure arithmetic, so it vectorizes. */
    const float shifter = 12582912.0f;
    float n = (x * 1.44269504088896341f + shifter) - shifter;
    float r = x - n * 0.693145751953125f;       /* ln2 high part, exact in float */
    r = r - n * 1.42860682030941723212e-6f;      /* ln2 low part */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* unsigned: no UB for n < -127 (underflow, NaN) */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
