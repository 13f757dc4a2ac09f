/* tensor/ops.c: the row-wise and elementwise kernels of the Llama model: embedding, RMSNorm,
 * RoPE (Hugging Face rotate-half layout, default and llama3 frequencies), SwiGLU, and the fused
 * softmax cross-entropy. Each loop over rows is OpenMP-parallel; inner loops are `omp simd`
 * so GCC emits AVX-512 code under -march=native. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ftune/tensor.h"
#include "vmath.h"

/* ---------------------------------------------------------------- embedding */

void ft_tensor_embedding_fwd(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C) {
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t n = 0; n < N; n++)
        memcpy(out + n * C, table + (int64_t)ids[n] * C, (size_t)C * sizeof(float));
}

void ft_tensor_embedding_bwd(float *dtable, const int32_t *ids, const float *dout, int64_t N, int64_t C) {
    /* Rows repeat (the same token many times), so threads split the columns, not the rows:
     * no two threads ever touch the same float. */
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t c0 = C * t / nt, c1 = C * (t + 1) / nt;
        for (int64_t n = 0; n < N; n++) {
            float *d = dtable + (int64_t)ids[n] * C;
            const float *g = dout + n * C;
#pragma omp simd
            for (int64_t c = c0; c < c1; c++)
                d[c] += g[c];
        }
    }
}

/* ---------------------------------------------------------------- RMSNorm */

void ft_tensor_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int64_t N, int64_t C, float eps) {
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;
        float *o = out + n * C;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int64_t c = 0; c < C; c++)
            ss += xr[c] * xr[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        if (rstd)
            rstd[n] = r;
        /* HF: weight * (x * rsqrt(var + eps)); same rounding order. */
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            o[c] = w[c] * (xr[c] * r);
    }
}

void ft_tensor_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                           int64_t N, int64_t C) {
    /* y = w * xh, xh = x r, r = (mean(x^2) + eps)^-1/2:
     * dx = r (g - xh mean(g xh)) with g = dy * w;  dw = sum_n dy * xh. */
#pragma omp parallel
    {
        /* the dw pass below reads only inputs: no barrier between the two */
#pragma omp for schedule(dynamic, 16) nowait
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + n * C, *dy = dout + n * C;
            float *d = dx + n * C;
            float r = rstd[n], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int64_t c = 0; c < C; c++)
                dot += dy[c] * w[c] * xr[c];
            float k = dot * r * r / (float)C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++)
                d[c] += r * (dy[c] * w[c] - xr[c] * k);
        }
        if (dw) {
            /* Columns split across threads; each sums its columns over all rows. */
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            int64_t c0 = C * t / nt, c1 = C * (t + 1) / nt;
            for (int64_t n = 0; n < N; n++) {
                const float *xr = x + n * C, *dy = dout + n * C;
                float r = rstd[n];
#pragma omp simd
                for (int64_t c = c0; c < c1; c++)
                    dw[c] += dy[c] * (xr[c] * r);
            }
        }
    }
}

/* ---------------------------------------------------------------- LayerNorm (no bias) */

void ft_tensor_layernorm_fwd(float *out, float *mean, float *rstd, const float *x, const float *w, int64_t N,
                             int64_t C, float eps) {
    /* Two passes (mean, then the centred sum of squares), as PyTorch's CPU kernel computes the
     * biased variance; the statistics in double so a large mean does not cancel the variance. */
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;
        float *o = out + n * C;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < C; c++)
            s += xr[c];
        const float mu = (float)(s / (double)C);
        double ss = 0.0;
#pragma omp simd reduction(+ : ss)
        for (int64_t c = 0; c < C; c++)
            ss += (double)(xr[c] - mu) * (double)(xr[c] - mu);
        const float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        if (mean)
            mean[n] = mu;
        if (rstd)
            rstd[n] = r;
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            o[c] = ((xr[c] - mu) * r) * w[c];
    }
}

void ft_tensor_layernorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w,
                             const float *mean, const float *rstd, int64_t N, int64_t C) {
    /* y = w * xh, xh = (x - mu) r: with g = dy * w,
     * dx = r (g - mean(g) - xh mean(g xh));  dw = sum_n dy * xh. */
#pragma omp parallel
    {
#pragma omp for schedule(dynamic, 16) nowait
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + n * C, *dy = dout + n * C;
            float *d = dx + n * C;
            const float mu = mean[n], r = rstd[n];
            float sg = 0.0f, sgx = 0.0f;
#pragma omp simd reduction(+ : sg, sgx)
            for (int64_t c = 0; c < C; c++) {
                float g = dy[c] * w[c];
                sg += g;
                sgx += g * ((xr[c] - mu) * r);
            }
            sg /= (float)C, sgx /= (float)C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++)
                d[c] += r * (dy[c] * w[c] - sg - ((xr[c] - mu) * r) * sgx);
        }
        if (dw) {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            int64_t c0 = C * t / nt, c1 = C * (t + 1) / nt;
            for (int64_t n = 0; n < N; n++) {
                const float *xr = x + n * C, *dy = dout + n * C;
                const float mu = mean[n], r = rstd[n];
#pragma omp simd
                for (int64_t c = c0; c < c1; c++)
                    dw[c] += dy[c] * ((xr[c] - mu) * r);
            }
        }
    }
}

/* ---------------------------------------------------------------- RoPE */

void ft_tensor_rope_inv_freq(float *inv_freq, const ft_rope_params *c) {
    int64_t HD = c->head_dim, half = HD / 2;
    float theta = (float)c->theta;
    /* transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all fp32. */
    for (int64_t i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)HD;
        inv_freq[i] = 1.0f / powf(theta, e);
    }
    if (!c->llama3)
        return;
    /* transformers' _compute_llama3_parameters, elementwise and in fp32 like its tensors:
     * long wavelengths are divided by `factor`, short ones kept, the band between smoothed. */
    float factor = (float)c->factor;
    float low = (float)c->low_freq_factor, high = (float)c->high_freq_factor;
    float old_ctx = (float)c->original_max_position_embeddings;
    float low_wavelen = (float)((double)c->original_max_position_embeddings / c->low_freq_factor);
    float high_wavelen = (float)((double)c->original_max_position_embeddings / c->high_freq_factor);
    float band = (float)(c->high_freq_factor - c->low_freq_factor);
    for (int64_t i = 0; i < half; i++) {
        float f = inv_freq[i];
        float wavelen = (float)(2.0 * M_PI) / f;
        float scaled = wavelen > low_wavelen ? f / factor : f;
        float smooth = (old_ctx / wavelen - low) / band;
        float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
        bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        inv_freq[i] = medium ? smoothed : scaled;
    }
    (void)high;
}

void ft_tensor_rope_table(float *cos_t, float *sin_t, const int32_t *pos, const float *inv_freq, int64_t N,
                          int64_t half) {
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t n = 0; n < N; n++) {
        float p = (float)pos[n];
        for (int64_t i = 0; i < half; i++) {
            float a = p * inv_freq[i]; /* fp32 product, as HF's fp32 matmul of one term */
            sincosf(a, &sin_t[n * half + i], &cos_t[n * half + i]);
        }
    }
}

void ft_tensor_rope_fwd(float *x, int64_t stride, const float *cos_t, const float *sin_t, int64_t N, int64_t n_heads,
                        int64_t head_dim) {
    int64_t half = head_dim / 2;
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t n = 0; n < N; n++) {
        const float *cs = cos_t + n * half, *sn = sin_t + n * half;
        for (int64_t h = 0; h < n_heads; h++) {
            float *a = x + n * stride + h * head_dim, *b = a + half;
#pragma omp simd
            for (int64_t i = 0; i < half; i++) {
                float x1 = a[i], x2 = b[i];
                a[i] = x1 * cs[i] - x2 * sn[i];
                b[i] = x2 * cs[i] + x1 * sn[i];
            }
        }
    }
}

void ft_tensor_rope_bwd(float *dx, int64_t stride, const float *cos_t, const float *sin_t, int64_t N,
                        int64_t n_heads, int64_t head_dim) {
    int64_t half = head_dim / 2;
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t n = 0; n < N; n++) {
        const float *cs = cos_t + n * half, *sn = sin_t + n * half;
        for (int64_t h = 0; h < n_heads; h++) {
            float *a = dx + n * stride + h * head_dim, *b = a + half;
#pragma omp simd
            for (int64_t i = 0; i < half; i++) {
                float g1 = a[i], g2 = b[i];
                a[i] = g1 * cs[i] + g2 * sn[i];
                b[i] = g2 * cs[i] - g1 * sn[i];
            }
        }
    }
}

/* ---------------------------------------------------------------- SwiGLU */

void ft_tensor_swiglu_fwd(float *h, const float *gu, int64_t N, int64_t F) {
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t n = 0; n < N; n++) {
        const float *g = gu + n * 2 * F, *u = g + F;
        float *o = h + n * F;
#pragma omp simd
        for (int64_t f = 0; f < F; f++)
            o[f] = g[f] / (1.0f + ft_vexp(-g[f])) * u[f];
    }
}

void ft_tensor_swiglu_bwd(float *dgu, const float *dh, const float *gu, int64_t N, int64_t F) {
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t n = 0; n < N; n++) {
        const float *g = gu + n * 2 * F, *u = g + F, *d = dh + n * F;
        float *dg = dgu + n * 2 * F, *du = dg + F;
#pragma omp simd
        for (int64_t f = 0; f < F; f++) {
            float gv = g[f], uv = u[f], s = 1.0f / (1.0f + ft_vexp(-gv));
            float silu = gv * s;
            dg[f] = d[f] * uv * s * (1.0f + gv * (1.0f - s));
            du[f] = d[f] * silu;
        }
    }
}

void ft_tensor_add(float *y, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(dynamic, 262144)
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

/* ---------------------------------------------------------------- cross-entropy */

double ft_tensor_cross_entropy(float *logits, const int32_t *targets, int64_t N, int64_t V, float grad_scale,
                               int64_t *n_valid, int64_t *correct) {
    double loss = 0.0;
    int64_t valid = 0, right = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, valid, right)
    for (int64_t n = 0; n < N; n++) {
        float *row = logits + n * V;
        int32_t t = targets[n];
        if (t < 0) {
            if (grad_scale != 0.0f)
                memset(row, 0, (size_t)V * sizeof(float));
            continue;
        }
        float m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < V; j++)
            m = row[j] > m ? row[j] : m;
        float xt = row[t];
        if (correct) {
            int64_t am = 0;
            while (am < V && row[am] != m)
                am++;
            right += am == t;
        }
        /* Sum of exps: float lanes over blocks of 512 (vectorizes), blocks added in double. */
        double sum = 0.0;
        if (grad_scale != 0.0f) {
            for (int64_t j0 = 0; j0 < V; j0 += 512) {
                int64_t j1 = j0 + 512 < V ? j0 + 512 : V;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int64_t j = j0; j < j1; j++) {
                    float e = ft_vexp(row[j] - m);
                    row[j] = e;
                    s += e;
                }
                sum += s;
            }
            float k = (float)(grad_scale / sum);
#pragma omp simd
            for (int64_t j = 0; j < V; j++)
                row[j] *= k;
            row[t] -= grad_scale;
        } else {
            for (int64_t j0 = 0; j0 < V; j0 += 512) {
                int64_t j1 = j0 + 512 < V ? j0 + 512 : V;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int64_t j = j0; j < j1; j++)
                    s += ft_vexp(row[j] - m);
                sum += s;
            }
        }
        loss += (double)m + log(sum) - (double)xt;
        valid++;
    }
    if (n_valid)
        *n_valid = valid;
    if (correct)
        *correct = right;
    return loss;
}
