/* ftune/tensor.h: the CPU kernels of the Llama-family model, fp32, forward and backward.
 * Implemented in src/tensor/ (matmuls through OpenBLAS sgemm, the rest OpenMP loops that share
 * libgomp's thread pool with OpenBLAS's OpenMP build, so there is only ever one pool).
 *
 * Conventions: every tensor is row-major; shapes are in comments as (rows, cols). N is a count of
 * token rows (B*T). Backward kernels that say "accumulate" add (+=) into their outputs, the
 * others overwrite. A `stride` is the distance in floats between consecutive rows, so kernels
 * can work on a column slice of a wider buffer (q, k and v live side by side in one qkv row). */
#ifndef FTUNE_TENSOR_H
#define FTUNE_TENSOR_H

#include "ftune/base.h"

/* ---------------------------------------------------------------- dtypes */

/* What the GEMM operands and saved activations are stored as. Master weights, gradients and
 * optimizer state are fp32 in both. */
typedef enum ft_dtype { FT_DTYPE_FP32 = 0, FT_DTYPE_BF16 } ft_dtype;
/* "fp32" | "bf16" -> dtype; false when unknown. */
bool ft_dtype_parse(const char *name, ft_dtype *out);
const char *ft_dtype_name(ft_dtype d);
/* bf16 GEMM routes (src/tensor/gemm_bf16.c). Operands are bf16 values in fp32 storage, products
 * accumulate in fp32:
 *  FT_GEMM_SGEMM  "sgemm-bf16": OpenBLAS sgemm on that storage (exact products, fp32 speed);
 *  FT_GEMM_ONEDNN "onednn-bf16": oneDNN's bf16 matmul (AVX512-BF16/AMX) on operands packed to 16
 *                 bits, primitives cached per shape.
 * The process uses one, chosen at the first bf16 use by timing both on one thread by its CPU
 * time (~15 ms), or named by FTUNE_GEMM=sgemm|onednn. */
typedef enum ft_gemm_route { FT_GEMM_SGEMM = 0, FT_GEMM_ONEDNN = 1 } ft_gemm_route;
/* The process's bf16 route (measured once, thread-safe); *why (may be NULL) gets how it was
 * chosen, with the measured GFLOP/s. */
ft_gemm_route ft_tensor_bf16_route(const char **why);
/* Use route r from now on in this process (tests compare the routes; a tool may pin one). Call it
 * while no bf16 product runs. */
void ft_tensor_bf16_route_set(ft_gemm_route r);
/* FT_ERR_INVALID when FTUNE_GEMM names no route (a CLI checks this before a run starts). */
ft_status ft_tensor_gemm_env_check(ft_err *err);
/* The GEMM route a dtype runs on: "sgemm" (fp32), "sgemm-bf16" or "onednn-bf16". */
const char *ft_tensor_gemm_route(ft_dtype d);
/* What `auto` means here: bf16 when its route is oneDNN's and that measured clearly (15%) faster
 * than fp32 sgemm, else fp32. *why (may be NULL) gets a sentence for the run's log. */
ft_dtype ft_tensor_auto_dtype(const char **why);

/* ---------------------------------------------------------------- runtime, threads and BLAS */

/* The process-wide tuning a program using the library calls once, first thing in main (the
 * ftune CLI does): on x86 CPUs with AVX-512 that OpenBLAS does not recognise (AMD Zen 4/5) it
 * re-executes the program with OPENBLAS_CORETYPE=SkylakeX so OpenBLAS loads its AVX-512 kernels
 * (the variable is read when the library loads, hence the re-exec; FTUNE_OPENBLAS_CORETYPE
 * overrides), and, unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT, how OpenMP threads wait:
 * OMP_WAIT_POLICY=passive for throughput work, a few milliseconds of spinning (GOMP_SPINCOUNT)
 * when `latency` (decoding: many short parallel regions). argv must be main's; returns only when
 * no re-exec was needed (or it failed). Model and workspace setup never change process state. */
void ft_runtime_init(char **argv, bool latency);

/* Threads kernels use: omp_get_max_threads() unless set (n <= 0 restores all cores). Also sets
 * OpenBLAS's count. Process-wide, like the OpenMP setting it wraps: a program's choice (the CLI's
 * --threads, a run's `threads`), never made by creating a model. */
void ft_tensor_set_threads(int n);
int ft_tensor_threads(void);
/* The OpenBLAS core kernel in use ("SkylakeX", "Haswell", ...). */
const char *ft_tensor_blas_core(void);

/* C (M, N) = alpha * op(A) op(B) + beta * C, op(X) = X or X^T; lda/ldb/ldc row strides. */
void ft_tensor_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* ft_tensor_sgemm with every size passed to BLAS at most `limit` (ft_tensor_sgemm uses INT_MAX,
 * OpenBLAS's int): larger M, N, K are split into blocks (K blocks accumulate into C); a row
 * stride beyond it takes a plain loop. A smaller limit lets tests exercise the splitting. */
void ft_tensor_sgemm_limited(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                             int64_t ldc, int64_t limit);

/* ft_tensor_sgemm's meaning with A and B holding bf16 values (fp32 storage), on the process's
 * bf16 route. C stays fp32. */
void ft_tensor_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                         int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The same on a given route (tests compare the routes); oneDNN falls back to sgemm when it is
 * unavailable. */
void ft_tensor_gemm_bf16_on(ft_gemm_route r, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                            const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                            int64_t ldc);
/* The same with B given as bf16 bits (uint16, row stride ldb): a weight packed once with
 * ft_tensor_pack_bf16 and used by many products. oneDNN reads it as it is (no per-call packing,
 * no buffer of its size); the sgemm route expands it to fp32 16 MiB at a time. Same results as
 * ft_tensor_gemm_bf16 on B's values in fp32 storage, up to the summation order. */
void ft_tensor_gemm_bf16_w16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C,
                             int64_t ldc);
void ft_tensor_gemm_bf16_w16_on(ft_gemm_route r, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                float alpha, const float *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                                float *C, int64_t ldc);
/* dst (n) = src rounded to bfloat16 bits, round-to-nearest-even as ft_tensor_round_bf16 (NaN
 * stays a quiet NaN). */
void ft_tensor_pack_bf16(uint16_t *dst, const float *src, int64_t n);
/* Counters since the process started: oneDNN primitives created (each shape once) and products
 * oneDNN computed. Either pointer may be NULL. */
void ft_tensor_gemm_bf16_stats(int64_t *primitives, int64_t *onednn_products);
/* Free the calling thread's packing buffers (they grow to the largest product and are kept). */
void ft_tensor_gemm_bf16_release(void);

/* nn.Linear without bias, weight W (out, in) as PyTorch stores it.
 * forward: y (N, out) = x (N, in) W^T. */
void ft_tensor_linear_fwd(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out);
/* backward: dx (N, in) = dy W (or += when dx_accumulate; dx may be NULL to skip);
 * dW (out, in) += dy^T x (dW may be NULL to skip). dW_zero: overwrite dW instead of adding. */
void ft_tensor_linear_bwd(float *dx, float *dW, const float *dy, const float *x, const float *W, int64_t N,
                          int64_t in, int64_t out, bool dx_accumulate, bool dW_zero);

/* ---------------------------------------------------------------- elementwise and rows */

/* out (N, C) = table[ids[n]] (V, C). Ids must be in range (the caller checks). */
void ft_tensor_embedding_fwd(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C);
/* dtable[ids[n]] += dout[n]; accumulate. */
void ft_tensor_embedding_bwd(float *dtable, const int32_t *ids, const float *dout, int64_t N, int64_t C);

/* RMSNorm as Hugging Face's LlamaRMSNorm: out = w * (x / sqrt(mean(x^2) + eps)).
 * x, out (N, C); rstd (N) gets 1/sqrt(mean(x^2) + eps) (may be NULL). */
void ft_tensor_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int64_t N, int64_t C, float eps);
/* dx (N, C) += d/dx; dw (C) += d/dw (dw may be NULL); rstd from the forward. */
void ft_tensor_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                           int64_t N, int64_t C);
/* LayerNorm without bias as PyTorch's nn.LayerNorm(C, bias=False) (DBRX):
 * out = w * (x - mean(x)) / sqrt(var(x) + eps), var the biased variance. mean, rstd (N) get each
 * row's mean and 1/sqrt(var + eps) (either may be NULL). */
void ft_tensor_layernorm_fwd(float *out, float *mean, float *rstd, const float *x, const float *w, int64_t N,
                             int64_t C, float eps);
/* dx (N, C) += d/dx; dw (C) += d/dw (dw may be NULL); mean and rstd from the forward. */
void ft_tensor_layernorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w,
                             const float *mean, const float *rstd, int64_t N, int64_t C);

/* ---------------------------------------------------------------- RoPE
 * Hugging Face's rotate-half layout: a head vector of HD values is split into halves; the pair
 * (i, i + HD/2) rotates by angle pos * inv_freq[i]. */

/* RoPE's frequencies as plain numbers (from a model config by the model). */
typedef struct ft_rope_params {
    int64_t head_dim;
    double theta;
    bool llama3; /* transformers' llama3 scaling with the four numbers below */
    double factor, low_freq_factor, high_freq_factor;
    int64_t original_max_position_embeddings;
} ft_rope_params;
/* inv_freq (HD/2): 1 / theta^(2i/HD) in fp32 as transformers computes it, with llama3
 * scaling when asked. */
void ft_tensor_rope_inv_freq(float *inv_freq, const ft_rope_params *p);
/* cos, sin (N, HD/2) for the positions pos (N). */
void ft_tensor_rope_table(float *cos_t, float *sin_t, const int32_t *pos, const float *inv_freq, int64_t N,
                          int64_t half);
/* Rotate in place the n_heads heads of x (N rows of `stride` floats; the heads start at x).
 * bwd applies the transposed rotation (the gradient). */
void ft_tensor_rope_fwd(float *x, int64_t stride, const float *cos_t, const float *sin_t, int64_t N, int64_t n_heads,
                        int64_t head_dim);
void ft_tensor_rope_bwd(float *dx, int64_t stride, const float *cos_t, const float *sin_t, int64_t N,
                        int64_t n_heads, int64_t head_dim);

/* SwiGLU: gu (N, 2F) holds [gate | up] per row; h (N, F) = silu(gate) * up. */
void ft_tensor_swiglu_fwd(float *h, const float *gu, int64_t N, int64_t F);
/* dgu (N, 2F) = d/d[gate | up] of h given dh (N, F). dgu may alias gu (in place). */
void ft_tensor_swiglu_bwd(float *dgu, const float *dh, const float *gu, int64_t N, int64_t F);

/* y (n) += x (n), parallel. */
void ft_tensor_add(float *y, const float *x, int64_t n);

/* ---------------------------------------------------------------- cross-entropy
 * logits (N, V), targets (N) (-100: no loss). Returns the sum of -log softmax(logits)[target]
 * over rows with a target, in double; *n_valid their count. When `grad_scale` != 0 the logits
 * are overwritten by grad_scale * (softmax - onehot) (zero rows for ignored targets): the fused
 * backward. `correct` (may be NULL) gets the number of valid rows whose argmax is the target.
 * Out-of-range targets are the caller's to reject. */
double ft_tensor_cross_entropy(float *logits, const int32_t *targets, int64_t N, int64_t V, float grad_scale,
                               int64_t *n_valid, int64_t *correct);

/* ---------------------------------------------------------------- attention
 * Causal scaled-dot-product attention with grouped KV heads (GQA; MQA when KVH = 1, MHA when
 * KVH = NH), over query rows i in [0, Tq) at absolute position q_offset + i and key rows j in
 * [0, Tk): i attends to j iff j <= q_offset + i, (with sample ids) sid[j] == sid[i], and (with a
 * sliding window W, as Mistral) q_offset + i - j < W.
 * Packed rows give each sample its own id, so attention never crosses a sample.
 * Tiled over query blocks (flash style: a block's scores live in a per-thread scratch tile and
 * never in memory as a (T, T) matrix); the backward recomputes the probabilities from the
 * saved log-sum-exp. */
typedef struct ft_attn_shape {
    int64_t B, Tq, Tk, NH, KVH, HD;
    int64_t q_offset; /* 0 for training; cache length for decoding */
    int64_t window;   /* sliding window (keys within the last `window` positions); 0: none */
    /* Row strides (floats) of q (B, Tq, NH*HD), k and v (B, Tk, KVH*HD), out (B, Tq, NH*HD).
     * The backward's dq, dk, dv and dout use the same strides as q, k, v and out. */
    int64_t q_stride, k_stride, v_stride, o_stride;
    /* Threads the scratch is sized for (0: omp_get_max_threads() now); the kernels never use
     * more, so a scratch sized once stays valid if the thread count grows later. */
    int64_t threads;
} ft_attn_shape;

/* Scratch floats the kernels need (per call; covers all threads). */
size_t ft_tensor_attention_scratch(const ft_attn_shape *s);
/* out (B, Tq, NH*HD); lse (B, NH, Tq) (may be NULL when no backward follows).
 * sample_ids (B, Tq) or NULL; only with Tq == Tk. */
void ft_tensor_attention_fwd(const ft_attn_shape *s, float *out, float *lse, const float *q, const float *k,
                             const float *v, const int32_t *sample_ids, float *scratch);
/* dq overwritten; dk, dv overwritten (the kernel zeroes them first). */
void ft_tensor_attention_bwd(const ft_attn_shape *s, float *dq, float *dk, float *dv, const float *dout,
                             const float *out, const float *lse, const float *q, const float *k, const float *v,
                             const int32_t *sample_ids, float *scratch);

/* ---------------------------------------------------------------- optimizer updates
 * One fused pass over n parameters (w), their gradients read as g * gscale (fused clipping), and
 * the state; see ftune/optim.h for the definitions. keep: the decoupled weight-decay factor
 * (1 when no decay). */
typedef struct ft_optim_update {
    float keep, lr, beta1, beta2, eps;
    float one_minus_beta1, one_minus_beta2; /* rounded from double, as PyTorch's scalars are */
    float step_size, inv_sqrt_bc2; /* AdamW: lr / (1 - b1^t), 1 / sqrt(1 - b2^t) */
    float gscale;
} ft_optim_update;
void ft_tensor_adamw(float *w, float *m1, float *m2, const float *g, int64_t n, const ft_optim_update *u);
void ft_tensor_lion(float *w, float *m1, const float *g, int64_t n, const ft_optim_update *u);

/* ---------------------------------------------------------------- casts */

/* dst (n) = src rounded to bfloat16, round-to-nearest-even, kept as fp32 values (NaN stays NaN);
 * dst may be src. */
void ft_tensor_round_bf16(float *dst, const float *src, int64_t n);

/* ---------------------------------------------------------------- backend table
 * The operations the model and the optimizer run, as one table, so that another backend (CUDA:
 * src/tensor/cuda/) implements the table without touching model code. Every entry has the
 * meaning and arguments of the ft_tensor_* function of the same name above; the model never
 * calls a kernel except through its table. */
typedef struct ft_backend {
    const char *name;
    /* GEMM: the general form and its three training uses (forward, input and weight gradients) */
    void (*sgemm)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
    /* sgemm's meaning on bf16-valued operands (the bf16 recipe's products) */
    void (*gemm_bf16)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
    /* the same with B (a weight) as bf16 bits, and the cast that makes them */
    void (*gemm_bf16_w16)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                          int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc);
    void (*pack_bf16)(uint16_t *dst, const float *src, int64_t n);
    void (*linear_fwd)(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out);
    void (*linear_bwd)(float *dx, float *dW, const float *dy, const float *x, const float *W, int64_t N, int64_t in,
                       int64_t out, bool dx_accumulate, bool dW_zero);
    void (*embedding_fwd)(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C);
    void (*embedding_bwd)(float *dtable, const int32_t *ids, const float *dout, int64_t N, int64_t C);
    void (*rmsnorm_fwd)(float *out, float *rstd, const float *x, const float *w, int64_t N, int64_t C, float eps);
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                        int64_t N, int64_t C);
    void (*layernorm_fwd)(float *out, float *mean, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                          float eps);
    void (*layernorm_bwd)(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *mean,
                          const float *rstd, int64_t N, int64_t C);
    void (*rope_table)(float *cos_t, float *sin_t, const int32_t *pos, const float *inv_freq, int64_t N,
                       int64_t half);
    void (*rope_fwd)(float *x, int64_t stride, const float *cos_t, const float *sin_t, int64_t N, int64_t n_heads,
                     int64_t head_dim);
    void (*rope_bwd)(float *dx, int64_t stride, const float *cos_t, const float *sin_t, int64_t N, int64_t n_heads,
                     int64_t head_dim);
    void (*swiglu_fwd)(float *h, const float *gu, int64_t N, int64_t F);
    void (*swiglu_bwd)(float *dgu, const float *dh, const float *gu, int64_t N, int64_t F);
    void (*add)(float *y, const float *x, int64_t n);
    double (*cross_entropy)(float *logits, const int32_t *targets, int64_t N, int64_t V, float grad_scale,
                            int64_t *n_valid, int64_t *correct);
    size_t (*attention_scratch)(const ft_attn_shape *s);
    void (*attention_fwd)(const ft_attn_shape *s, float *out, float *lse, const float *q, const float *k,
                          const float *v, const int32_t *sample_ids, float *scratch);
    void (*attention_bwd)(const ft_attn_shape *s, float *dq, float *dk, float *dv, const float *dout,
                          const float *out, const float *lse, const float *q, const float *k, const float *v,
                          const int32_t *sample_ids, float *scratch);
    void (*adamw)(float *w, float *m1, float *m2, const float *g, int64_t n, const ft_optim_update *u);
    void (*lion)(float *w, float *m1, const float *g, int64_t n, const ft_optim_update *u);
    void (*round_bf16)(float *dst, const float *src, int64_t n);
} ft_backend;
/* The CPU implementation (OpenBLAS + OpenMP). */
const ft_backend *ft_backend_cpu(void);

#endif
