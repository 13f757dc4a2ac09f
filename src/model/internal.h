/* model/internal.h (internal to src/model/): the ft_model and ft_workspace structs shared by
 * model.c (creation, weights, parameters), workspace.c (activation layout), forward.c (the layer
 * body, forward and backward) and decode.c (KV cache). */
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
    /* mixture of experts (wgu, wd NULL): the router and expert 0's gate w1 (F, C), up w3 (F, C) and
     * down w2, expert e's `estride` floats further. Mixtral: per expert [w1 | w3 | w2] back to back
     * (w3 == w1 + FC: one gate|up GEMM), w2 (C, F); DBRX: the fused w1, v1, w2 tensors (E F, C)
     * each, estride FC, w2 (F, C) used untransposed (ft_model.w2_fc). */
    float *wr; /* (E, C) */
    float *w1, *w3, *w2;
    int64_t estride;
} layer_w;

/* What one layer's forward writes (and a training workspace keeps for the backward); N rows.
 * Without training every layer shares one set; with checkpointing each layer has its own x and
 * shares the rest, which the backward recomputes layer by layer. */
typedef struct layer_acts {
    float *x;     /* (N, C) layer input (residual stream) */
    float *xn1;   /* (N, C) input_layernorm(x) */
    float *rstd1; /* norm statistics (model_norm_fwd) or NULL */
    float *qkv;   /* (N, Q + 2 KV) q, k after RoPE, v */
    uint8_t *qkv_pass; /* (N, Q + 2 KV) clip_qkv: 1 where the clamp let the value through, or NULL */
    float *att;   /* (N, Q) attention output before o_proj */
    float *lse;   /* (B, NH, T) softmax log-sum-exp, or NULL */
    float *xmid;  /* (N, C) x + o_proj(att); may be x (in place) */
    float *xn2;   /* (N, C) post_attention_layernorm(xmid) */
    float *rstd2; /* norm statistics or NULL */
    float *gu;    /* (N, 2F) [gate | up] */
    float *h;     /* (N, F) silu(gate) * up: fp32 scratch; bf16: rounded (down_proj's saved input) */
    /* bf16 training without checkpointing: this layer's saved GEMM inputs, which hold bf16 values,
     * stored as bf16 (N, 2C + QKV + 3F: xn1 | qkv | xn2 | gu | h). xn1, qkv, xn2, gu and h above
     * are then one fp32 set shared by all layers: the forward packs them here after the layer,
     * the backward unpacks them before it (exactly: the values are bf16 already). NULL otherwise. */
    uint16_t *saved;
    /* Mixture of experts (src/model/moe.c): gu and h then have N K rows, grouped by expert. */
    float *probs;   /* (N, E) router softmax, fp32 */
    int32_t *sel;   /* (N, K) each token's experts, ascending */
    float *selw;    /* (N, K) their renormalised weights */
    int32_t *rowof; /* (N, K) the expert-grouped row of each (token, slot) */
    int32_t *tok;   /* (N K) the token of each grouped row */
    int64_t *offs;  /* (E + 1) expert e's rows are offs[e] .. offs[e + 1] */
} layer_acts;

/* The load-balancing statistics of transformers' load_balancing_loss_func, pooled over the
 * layers: per expert the (token, slot) selections and the summed router probabilities of the
 * counted tokens (sample id >= 0), and how many (token, layer) pairs were counted. */
typedef struct moe_stats {
    double *count;    /* (E) */
    double *prob_sum; /* (E) */
    double tokens;
} moe_stats;

enum { PROF_EMBED, PROF_NORM, PROF_MATMUL, PROF_ROPE, PROF_ATTN, PROF_SWIGLU, PROF_HEAD, PROF_MISC, PROF_COUNT };

struct ft_model {
    ft_model_config cfg;
    ft_model_params p;
    const ft_backend *be;
    int64_t C, F, Q, KV, QKV, V, L, NH, KVH, HD;

    size_t n_params;
    ft_tensor_spec *specs; /* names and shapes, HF order */
    ft_param *params;
    ft_layer_desc *layers; /* (L) the architecture as data */

    ft_arena warena, garena;    /* weights, gradients */
    layer_w *w, *g;             /* (L) */
    float *embed, *norm, *head; /* head == embed when tied */
    float *g_embed, *g_norm, *g_head;
    float *inv_freq; /* (HD/2) RoPE frequencies */
    ft_dtype infer_dtype; /* KV-cache decoding's (ft_model_set_inference_dtype) */
    int64_t E, K;    /* experts and experts per token; E 0: dense MLPs */
    ft_norm_kind norm_kind; /* every norm of the model (the layers' and the final one) */
    float clip;        /* qkv clamp; 0: none */
    double router_p;   /* top-k weights divided by their router_p-norm; 0: not normalised */
    bool w2_fc;        /* experts' down weights (F, C), used untransposed (DBRX) */
    bool aux_of_probs; /* the load-balancing loss softmaxes the router probabilities again (DBRX) */
};

struct ft_workspace {
    const ft_model *m;
    ft_workspace_params p;
    int64_t N;            /* rows the activations are sized for */
    int64_t chunk;        /* rows of logits per LM-head chunk */
    int64_t attn_threads; /* threads attn_scratch is sized for */
    ft_arena arena;
    layer_acts *acts; /* (L) */
    float *xL;        /* (N, C) final residual */
    float *xf;        /* (N, C) model.norm(xL) */
    float *rstdf;     /* (N) */
    float *cos_t, *sin_t; /* (N, HD/2) */
    int32_t *pos;     /* (N) */
    int32_t *rows;    /* (N) indices of trainable rows */
    int32_t *tgt;     /* (N) their targets */
    float *dx;        /* (N, C) residual gradient */
    float *dtmp;      /* (N, C) */
    float *dqkv;      /* (N, Q + 2 KV) */
    float *datt;      /* (N, Q) */
    float *xc, *dxc;  /* (N, C) compacted trainable rows of xf and their gradient */
    float *logits;    /* (chunk, V) */
    float *dxpart;    /* (attn_threads - 1, chunk, C) partial LM-head input gradients */
    float *attn_scratch;
    /* mixture of experts: gathered rows, their gradients, router gradients, statistics */
    float *xe, *ye;      /* (N K, C) expert inputs; expert outputs / gathered output gradients */
    float *dh;           /* (N K, F) training */
    float *dz;           /* (N, E) training: router logits' gradient */
    float *dsel;         /* (N, K) training: the routing weights' gradient */
    moe_stats stats;     /* of the last forward */
    double *global_count; /* (E) counts of the whole batch set by ft_workspace_set_router_counts */
    double global_tokens; /* 0: use each call's own statistics */
    double aux;           /* the last forward's load-balancing loss share */
    float *aux_scale;     /* (E) its gradient with respect to a counted token's router probabilities */
    /* bf16 only: GEMM weights as bf16 bits (read by the products as they are: no fp32 copy and no
     * per-product packing), activation operands rounded to bf16 in fp32 storage */
    uint16_t *wbuf;   /* one layer's wqkv | wo | wgu | wd */
    uint16_t *head16; /* (V, C) the LM head, refreshed by every forward, shared by its backward */
    float *abuf;   /* (N, Q) the attention output rounded for o_proj */
    float *gbuf;   /* (N, C) the residual gradient rounded for down_proj's and o_proj's backward */

    /* FTUNE_PROFILE=1: wall time per kernel family, printed to stderr when the workspace is
     * freed (a developer's tool for the speed work; FTUNE_PROFILE=cpu: process CPU time). */
    bool profile, profile_cpu;
    double prof[PROF_COUNT];
};

/* The model's norm (m->norm_kind): RMSNorm with stats (N) its rstd, or LayerNorm without bias with
 * stats (2N) its rstd then its mean; stats NULL when nothing is kept (decoding). The backward
 * reads the stats of the forward over the same N rows. */
size_t model_norm_stats(const ft_model_config *c); /* floats of stats per row: 1 or 2 */
void model_norm_fwd(const ft_model *m, float *out, float *stats, const float *x, const float *w, int64_t N);
void model_norm_bwd(const ft_model *m, float *dx, float *dw, const float *dout, const float *x, const float *w,
                    const float *stats, int64_t N);

/* Check a batch against the model and a workspace; errors name the offending value. */
ft_status model_check_batch(const ft_model *m, const ft_workspace *ws, const ft_batch *b, ft_err *err);

/* Where a layer's attention finds its keys and values when they are not in A->qkv: a KV cache's
 * rows for this layer, `stride` floats apart; the N new rows are written at row `at`. */
typedef struct layer_kv {
    float *k, *v;
    int64_t stride, at;
} layer_kv;

/* Batched decoding (kvpool.c): the N rows are several sequences back to back, each with its own
 * cache. Sequence s owns rows row0..row0+n-1 and its layer-0 keys and values at k, v
 * (`layer_stride` floats further per layer), `at` tokens already cached. The GEMMs run over all
 * N rows; attention and the cache append run per sequence. */
typedef struct layer_seg {
    int64_t row0, n, at;
    float *k, *v;
    int64_t layer_stride;
} layer_seg;
/* A step whose sequences have at most this many rows each (decoding rows, short chunks) runs
 * their attentions side by side, one sequence per thread, each on its own part of the scratch
 * (model_seg_scratch floats per thread) instead of one after another on all threads: one
 * parallel region per layer instead of one per sequence, and no thread idle while a sequence's
 * few heads are shared out. */
enum { MODEL_SEG_ROWS = 16 };
size_t model_seg_scratch(const ft_model_config *c, int64_t slot_tokens);

/* THE layer body, used by training's forward, the backward's recompute (checkpointing) and KV-cache
 * decoding. Reads A->x (N rows), writes the fields of A, and the layer's output into `next`
 * (N, C; may be A->x or A->xmid), or stops before down_proj when next is NULL (what the
 * backward's recompute needs). */
/* bf16 training: a layer's GEMM weights as bf16 bits (views into ws->wbuf) */
typedef struct layer_w16 {
    const uint16_t *wqkv, *wo, *wgu, *wd;
} layer_w16;

typedef struct layer_run {
    const layer_w *W;         /* the weights: norms (and GEMMs unless W16) */
    const layer_w16 *W16;     /* bf16 training: the GEMM weights as bf16; NULL: W's (decoding's are rounded) */
    bool bf16;                /* round GEMM operands and saved activations (see forward.c) */
    float *abuf;              /* bf16: (N, Q) scratch for the rounded attention output */
    const ft_attn_shape *as;
    const int32_t *sample_ids;
    const float *cos_t, *sin_t;
    const layer_kv *kv;       /* NULL for training */
    const layer_seg *segs;    /* batched decoding (as->Tk sized the scratch): instead of kv */
    int64_t n_segs;
    float *attn_scratch;
    double *prof;             /* FTUNE_PROFILE counters or NULL */
    bool prof_cpu;
    /* mixture of experts: scratch (N K, C) twice, and the statistics to add to (NULL: none) */
    float *xe, *ye;
    moe_stats *stats;
} layer_run;
void model_layer_forward(const ft_model *m, int64_t layer, layer_acts *A, float *next, int64_t N, const layer_run *r);

/* moe.c: the sparse-MoE MLP. Forward from A->xn2 to next = xmid + MoE(xn2) (next NULL: stop
 * after the experts' gate/up products, what the backward needs); backward from dy = d next into
 * dxn2 (N, C, overwritten) and the router's and experts' gradients in G; aux_scale[e] is the
 * load-balancing loss's gradient with respect to each counted token's router probability. */
void model_moe_forward(const ft_model *m, const layer_w *W, layer_acts *A, float *next, int64_t N, const layer_run *r);
void model_moe_backward(const ft_model *m, const layer_w *W, const layer_w *G, layer_acts *A, ft_workspace *ws,
                        const float *dy, float *dxn2, int64_t N, const float *aux_scale, const int32_t *sample_ids);

#endif
