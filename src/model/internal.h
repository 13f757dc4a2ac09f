/* model/internal.h (internal to src/model/): the ft_model struct shared by model.c (creation,
 * weights, parameters), forward.c (forward/backward) and decode.c (KV cache). */
#ifndef FTUNE_MODEL_INTERNAL_H
#define FTUNE_MODEL_INTERNAL_H

#include "ftune/model.h"
#include "ftune/tensor.h"

/* One decoder layer's weights (or gradients): views into the parameter (gradient) arena. q, k, v
 * are stored back to back (HF order), so wqkv is the concatenated (Q + 2 KV, C) matrix and one
 * sgemm computes all three; the same holds for gate and up (wgu, (2F, C)). */
typedef struct layer_w {
    float *ln1;  /* (C) */
    float *wqkv; /* (Q + 2 KV, C) */
    float *wo;   /* (C, Q) */
    float *ln2;  /* (C) */
    float *wgu;  /* (2F, C) */
    float *wd;   /* (C, F) */
} layer_w;

/* What one layer keeps from the forward for the backward; N = B*T rows. */
typedef struct layer_acts {
    float *x;     /* (N, C) layer input (residual stream) */
    float *xn1;   /* (N, C) input_layernorm(x) */
    float *rstd1; /* (N) */
    float *qkv;   /* (N, Q + 2 KV) q, k after RoPE, v */
    float *att;   /* (N, Q) attention output before o_proj */
    float *lse;   /* (B, NH, T) softmax log-sum-exp */
    float *xmid;  /* (N, C) x + o_proj(att) */
    float *xn2;   /* (N, C) post_attention_layernorm(xmid) */
    float *rstd2; /* (N) */
    float *gu;    /* (N, 2F) [gate | up] */
} layer_acts;

enum { PROF_EMBED, PROF_NORM, PROF_MATMUL, PROF_ROPE, PROF_ATTN, PROF_SWIGLU, PROF_HEAD, PROF_MISC, PROF_COUNT };

struct ft_model {
    ft_model_config cfg;
    ft_model_params p;
    int64_t C, F, Q, KV, QKV, V, L, NH, KVH, HD;

    size_t n_params;
    ft_tensor_spec *specs; /* names and shapes, HF order */
    ft_param *params;

    ft_arena warena, garena, aarena; /* weights, gradients, activations */
    layer_w *w, *g;                  /* (L) */
    float *embed, *norm, *head;      /* head == embed when tied */
    float *g_embed, *g_norm, *g_head;

    int64_t N; /* rows the activations are sized for */
    int64_t chunk; /* rows of logits per LM-head chunk */
    layer_acts *acts; /* (L); all alias one set when not training */
    float *xL;     /* (N, C) final residual */
    float *xf;     /* (N, C) model.norm(xL) */
    float *rstdf;  /* (N) */
    float *inv_freq; /* (HD/2) */
    float *cos_t, *sin_t; /* (N, HD/2) */
    int32_t *pos;     /* (N) */
    int32_t *rows;    /* (N) indices of trainable rows */
    int32_t *tgt;     /* (N) their targets */
    float *hbuf;   /* (N, F) SwiGLU output; backward: h then dh */
    float *dx;     /* (N, C) residual gradient */
    float *dtmp;   /* (N, C) */
    float *dqkv;   /* (N, Q + 2 KV) */
    float *datt;   /* (N, Q) */
    float *xc, *dxc; /* (N, C) compacted trainable rows of xf and their gradient */
    float *logits; /* (chunk, V) */
    float *dxpart; /* (attn_threads - 1, chunk, C) partial LM-head input gradients */
    float *attn_scratch;
    size_t attn_scratch_n;
    int64_t attn_threads; /* threads attn_scratch is sized for */

    /* FTUNE_PROFILE=1: wall time per kernel family, printed to stderr when the model is freed
     * (a developer's tool for the speed work). */
    bool profile, profile_cpu;
    double prof[PROF_COUNT];
};

/* Check a batch against the model and its arenas; errors name the offending value. */
ft_status ft_model_check_batch_(const ft_model *m, const ft_batch *b, ft_err *err);

#endif
