/* ftune/model.h: the Llama-family decoder (Llama 2/3/3.x, CodeLlama, Mistral): forward,
 * backward into accumulated gradients, and KV-cache decoding for generation, through the
 * kernel table of ftune/tensor.h. Implemented in src/model/.
 *
 * Memory: the model holds the parameters (fp32 master weights) and, when training, their
 * gradients, each in one arena; activations and scratch live in workspaces the caller creates
 * for a (B, T), and KV caches in their own objects, so a step allocates nothing and one model
 * serves several workspaces. Batches are packed (ftune/batch.h).
 *
 * Changes since the first draft (additive): ft_batch_owned + ft_model_batch_load (JSON batches);
 * ft_model_eval (loss and token accuracy without logits);
 * ft_model_forward's logits may be NULL (loss only, LM head on trainable rows); a
 * config.sliding_window > 0 limits attention to that many positions (Mistral). */
#ifndef FTUNE_MODEL_H
#define FTUNE_MODEL_H

#include "ftune/base.h"
#include "ftune/batch.h"
#include "ftune/config.h"
#include "ftune/tensor.h"

typedef struct ft_model ft_model;         /* opaque: parameters (+ gradients) */
typedef struct ft_workspace ft_workspace; /* opaque: activations and scratch for (B, T) */

typedef struct ft_model_params {
    bool training; /* allocate gradients */
} ft_model_params;
ft_model_params ft_model_default_params(void);

/* Bytes of the parameters and (when training) of their gradients, fp32, for a config: what a
 * memory planner adds to ft_workspace_bytes and the optimizer's state (ftune/optim.h). */
void ft_model_state_bytes(const ft_model_config *c, bool training, size_t *params, size_t *grads);

/* Load a model folder (config.json + model.safetensors or a sharded index). `dir` is a resolved
 * folder (see ftune/hf.h for names). */
ft_status ft_model_load(const char *dir, const ft_model_params *p, ft_model **out, ft_err *err);
/* A randomly initialised model (normal(0, initializer_range), norms 1), deterministic in `seed`. */
ft_status ft_model_new_random(const ft_model_config *c, uint64_t seed, const ft_model_params *p, ft_model **out,
                              ft_err *err);
void ft_model_free(ft_model *m);
const ft_model_config *ft_model_get_config(const ft_model *m);

/* Parameters in Hugging Face order and names ("model.embed_tokens.weight",
 * "model.layers.0.self_attn.q_proj.weight", ..., "lm_head.weight" unless tied). */
typedef struct ft_param {
    const char *name;
    int ndim;
    int64_t shape[2];
    int64_t numel;
    float *data; /* fp32 master weights */
    float *grad; /* NULL unless training */
} ft_param;
size_t ft_model_n_params(const ft_model *m);
ft_param *ft_model_param(ft_model *m, size_t i);
/* Find by HF name; NULL if absent. */
ft_param *ft_model_find_param(ft_model *m, const char *name);

/* A batch read from the JSON of `ftune debug forward` ({"input_ids": [[..]], "targets": [[..]],
 * "position_ids"?, "sample_ids"?}); it owns its arrays. Shapes are checked here, values against
 * the model by the forward calls. */
typedef struct ft_batch_owned {
    ft_batch b;
    int32_t *input_ids, *targets, *position_ids, *sample_ids;
} ft_batch_owned;
ft_status ft_model_batch_load(const char *path, ft_batch_owned *out, ft_err *err);
/* The same from text already read (`path` names it in errors). */
ft_status ft_model_batch_parse(const char *path, const char *text, size_t len, ft_batch_owned *out, ft_err *err);
void ft_model_batch_free(ft_batch_owned *b);

/* ---------------------------------------------------------------- workspaces
 * Activations, scratch and the LM head's logits chunk for batches of up to (max_batch, max_seq),
 * created by the caller for a model: several workspaces can use one model at once (evaluation
 * beside training, many requests), each from one thread at a time. A training workspace keeps
 * what the backward needs; with checkpointing only each layer's input, the rest recomputed
 * layer by layer in the backward (the same kernels, so fp32 gradients are bitwise the same).
 *
 * bf16 mixed precision (PyTorch CPU autocast's recipe): parameters, gradients and optimizer state
 * stay fp32; every linear-layer product (q/k/v, o, gate/up, down, LM head) in its three training
 * forms takes operands rounded to bf16 (nearest-even) with fp32 accumulation; the activations saved
 * for the backward (norm outputs, q/k/v after RoPE, gate/up, the SwiGLU output) are kept rounded;
 * the residual stream, norm statistics, softmax and loss stay fp32. Without checkpointing each
 * layer keeps those saved inputs as bf16 (half the memory of fp32), unpacked exactly into one fp32
 * set for its backward; the products see fp32 numbers holding bf16 values, on the process's bf16
 * GEMM route (ftune/tensor.h). KV-cache decoding: ft_model_set_inference_dtype. */
typedef struct ft_workspace_params {
    int64_t max_batch;  /* B: rows per micro-batch */
    int64_t max_seq;    /* T: tokens per row */
    bool training;      /* keep activations for ft_model_forward_backward */
    bool checkpointing; /* training only: per-layer activation checkpointing */
    ft_dtype dtype;     /* FT_DTYPE_FP32, or FT_DTYPE_BF16: mixed precision (below) */
    int threads;        /* threads the attention scratch is sized for; 0: omp_get_max_threads() */
} ft_workspace_params;
ft_workspace_params ft_workspace_default_params(void);
/* Whether workspaces of this dtype (for training or not) can run the config: FT_ERR_UNSUPPORTED,
 * with a message that says why, for bf16 on a mixture of experts (fp32 only so far) and for
 * training a mixture of experts with router_jitter_noise != 0. */
ft_status ft_workspace_check_dtype(const ft_model_config *c, ft_dtype dtype, bool training, ft_err *err);
/* Bytes ft_workspace_new allocates for a model of config c (exact: the same layout code). */
size_t ft_workspace_bytes(const ft_model_config *c, const ft_workspace_params *p);
ft_status ft_workspace_new(const ft_model *m, const ft_workspace_params *p, ft_workspace **out, ft_err *err);
void ft_workspace_free(ft_workspace *ws);
const ft_workspace_params *ft_workspace_get_params(const ft_workspace *ws);
/* Bytes the workspace holds (its arena's size). */
size_t ft_workspace_size(const ft_workspace *ws);

/* ---------------------------------------------------------------- passes */

/* Forward only. *loss_sum gets the sum of cross-entropy over trainable tokens (double),
 * *n_trainable their count; logits (B, T, V) are copied to `logits` when non-NULL. */
ft_status ft_model_forward(ft_model *m, ft_workspace *ws, const ft_batch *b, float *logits, double *loss_sum,
                           int64_t *n_trainable, ft_err *err);
/* Forward and backward (a training model and workspace). Gradients ACCUMULATE (+=)
 * d(loss_sum / denom)/dparam, so a global batch split into micro-batches gives exactly the
 * gradient of (total CE / global trainable tokens) when every call passes the same denom. */
ft_status ft_model_forward_backward(ft_model *m, ft_workspace *ws, const ft_batch *b, double denom, double *loss_sum,
                                    int64_t *n_trainable, ft_err *err);
void ft_model_zero_grad(ft_model *m);
/* Global L2 norm of all gradients: the sums of squares of fixed chunks of FT_GRAD_CHUNK elements of
 * the flat gradient (HF parameter order), each in double in a fixed order, added in chunk order;
 * so it does not depend on the number of threads or of data-parallel processes. */
double ft_model_grad_norm(ft_model *m);
#define FT_GRAD_CHUNK ((int64_t)4096)
/* Elements of all parameters (the flat parameter and gradient blocks). */
int64_t ft_model_n_elements(const ft_model *m);
/* out[c - c0] = the sum of squares of gradient chunk c, for c in [c0, c1). */
void ft_model_grad_sumsq_chunks(ft_model *m, int64_t c0, int64_t c1, double *out);

/* Evaluation without logits: the loss sum and count as ft_model_forward, and *n_correct, the
 * trainable targets that are the argmax of their logits (the first maximum, as torch.argmax):
 * token accuracy = n_correct / n_trainable. The LM head runs on the trainable rows only. */
ft_status ft_model_eval(ft_model *m, ft_workspace *ws, const ft_batch *b, double *loss_sum, int64_t *n_trainable,
                        int64_t *n_correct, ft_err *err);

/* The precision KV-cache decoding runs in (generate --dtype). FT_DTYPE_BF16, for a model created
 * without training: its weights are rounded to bf16 in place (what a bf16 checkpoint holds; there
 * are no fp32 masters to keep) and decoding follows the training recipe's roundings (GEMM operands
 * bf16 on the process's bf16 GEMM route, fp32 accumulation, residual, norms, softmax and logits
 * fp32). Setting FT_DTYPE_FP32 afterwards keeps the rounded weights. FT_ERR_INVALID on a training
 * model (its workspaces choose their dtype). */
ft_status ft_model_set_inference_dtype(ft_model *m, ft_dtype d, ft_err *err);
ft_dtype ft_model_inference_dtype(const ft_model *m);

/* ---------------------------------------------------------------- mixture of experts
 * The load-balancing loss of transformers' load_balancing_loss_func, pooled over the layers:
 * aux = E * sum_e (count_e / M) * (prob_sum_e / M), count_e the (token, slot) selections of
 * expert e, prob_sum_e its summed router probabilities, M the counted (token, layer) pairs;
 * tokens with a negative sample id (padding) are not counted. The training loss is
 * CE_sum / denom + coef * aux with coef = ft_model_config_aux_coef(config):
 * ft_model_forward_backward adds coef * aux's gradient. Over micro-batches aux is not a sum
 * (count_e and M belong to the whole batch), so a caller that splits a batch first sums the
 * routing counts of all micro-batches (ft_model_router_counts, a forward without the LM head),
 * sets them on the workspace, and then each micro-batch's pass adds exactly its share of the
 * whole batch's loss and gradient (ft_train_step does this). Dense models: no-ops, aux 0. */

/* The load-balancing loss (without coef) of the last forward pass on ws: with counts set, this
 * batch's share (the shares of the micro-batches add up to the whole batch's aux). */
double ft_workspace_aux_loss(const ft_workspace *ws);
/* Add the batch's routing counts to counts[0..E) and its counted (token, layer) pairs to *tokens. */
ft_status ft_model_router_counts(ft_model *m, ft_workspace *ws, const ft_batch *b, double *counts, double *tokens,
                                 ft_err *err);
/* Use these whole-batch counts for the following passes on ws (copied); NULL: each pass's own. */
ft_status ft_workspace_set_router_counts(ft_workspace *ws, const double *counts, double tokens, ft_err *err);

/* The last forward's routing of a layer: sel (B*T, K) each token's experts in ascending order,
 * probs (B*T, E) the router's softmax (fp32). Views into the workspace, valid until its next pass.
 * A training workspace without checkpointing keeps every layer's; others only the last layer's.
 * logits, when non-NULL, gets the router logits of the first n_rows tokens (n_rows, E). */
ft_status ft_workspace_routing(const ft_workspace *ws, int64_t layer, const int32_t **sel, const float **probs,
                               float *logits, int64_t n_rows, ft_err *err);

/* KV-cache decoding for generation (batch 1). */
typedef struct ft_kv_cache ft_kv_cache;
ft_status ft_kv_cache_new(const ft_model *m, int64_t max_tokens, ft_kv_cache **out, ft_err *err);
void ft_kv_cache_free(ft_kv_cache *c);
void ft_kv_cache_reset(ft_kv_cache *c);
int64_t ft_kv_cache_len(const ft_kv_cache *c);
/* Append n tokens at positions len..len+n-1 and write the logits of the last one (V floats). */
ft_status ft_model_decode(ft_model *m, ft_kv_cache *c, const int32_t *tokens, int64_t n, float *logits_last,
                          ft_err *err);

/* Batched KV-cache decoding for serving (several sequences per step): a pool of `pool_tokens`
 * cached tokens shared by up to `n_slots` sequences, and the work buffers for steps of up to
 * `max_rows` tokens in all. A sequence takes a slot with a reservation of the tokens it may need
 * (its prompt and max_tokens, at most `slot_tokens`), in blocks of FT_KV_BLOCK tokens, so many
 * short requests fit where few full-context ones would. One step (ft_model_decode_batch) runs
 * every new token of every sequence in it through the model together: the matrix products over
 * all the rows at once (M = the rows, so 8 sequences decoding cost little more than one),
 * attention per sequence over its own cache. A sequence's tokens may be a prompt chunk (prefill)
 * or its one new token. */
enum { FT_KV_BLOCK = 16 };
typedef struct ft_kv_pool ft_kv_pool;
/* Bytes ft_kv_pool_new allocates (the caches and the step's work buffers); pool_tokens 0:
 * n_slots * slot_tokens. */
size_t ft_kv_pool_bytes(const ft_model_config *c, int64_t n_slots, int64_t slot_tokens, int64_t max_rows,
                        int64_t pool_tokens);
ft_status ft_kv_pool_new(const ft_model *m, int64_t n_slots, int64_t slot_tokens, int64_t max_rows,
                         int64_t pool_tokens, ft_kv_pool **out, ft_err *err);
void ft_kv_pool_free(ft_kv_pool *p);
int64_t ft_kv_pool_slots(const ft_kv_pool *p);
int64_t ft_kv_pool_slot_tokens(const ft_kv_pool *p);
int64_t ft_kv_pool_max_rows(const ft_kv_pool *p);
int64_t ft_kv_pool_tokens(const ft_kv_pool *p);   /* capacity, a multiple of FT_KV_BLOCK */
int64_t ft_kv_pool_reserved(const ft_kv_pool *p); /* tokens reserved by all slots */
/* Give a free slot room for `tokens` (rounded up to blocks, contiguous in the pool) and empty it:
 * FT_ERR_LIMIT when the pool has no such run of free blocks now (retry when a slot is released),
 * FT_ERR_RANGE when tokens exceed slot_tokens or the whole pool, FT_ERR_INVALID for a bad or
 * taken slot. Release gives the blocks back (a no-op for a free slot). */
ft_status ft_kv_pool_reserve(ft_kv_pool *p, int64_t slot, int64_t tokens, ft_err *err);
void ft_kv_pool_release(ft_kv_pool *p, int64_t slot);
int64_t ft_kv_pool_capacity(const ft_kv_pool *p, int64_t slot); /* the slot's reserved tokens (0: free) */
/* Tokens cached in a slot; reset empties it, keeping its reservation. */
int64_t ft_kv_pool_len(const ft_kv_pool *p, int64_t slot);
void ft_kv_pool_reset(ft_kv_pool *p, int64_t slot);

typedef struct ft_decode_seq {
    int64_t slot;          /* distinct slots within one step */
    const int32_t *tokens; /* appended at positions len..len+n-1 of the slot */
    int64_t n;
    bool logits;           /* write the logits of its last token (next row of `logits`) */
} ft_decode_seq;
/* One step. `logits` gets (number of seqs with .logits, V) rows in seqs' order. Errors (bad
 * slot, token, sizes over the pool's) change nothing. */
ft_status ft_model_decode_batch(ft_model *m, ft_kv_pool *p, const ft_decode_seq *seqs, int64_t n_seqs, float *logits,
                                ft_err *err);
/* Where a pool's steps spent their wall time, cumulative since ft_kv_pool_new (a measurement is
 * the difference of two readings). */
typedef struct ft_decode_profile {
    int64_t steps, rows, logit_rows;
    double total_s;     /* all of ft_model_decode_batch */
    double matmul_s;    /* the layers' weight products */
    double attention_s; /* attention over the caches */
    double head_s;      /* the final norm and the LM head */
} ft_decode_profile;
void ft_kv_pool_get_profile(const ft_kv_pool *p, ft_decode_profile *out);

/* Save all parameters as safetensors with HF names (F32, or BF16 when `bf16`). */
ft_status ft_model_save_weights(ft_model *m, const char *path, bool bf16, ft_err *err);
/* Bytes of the parameters and gradients the model holds, for memory reports. */
void ft_model_memory(const ft_model *m, size_t *params, size_t *grads);

/* ---------------------------------------------------------------- architecture as data
 * Each decoder layer described by kinds and its tensors, so variants (LayerNorm, a fused QKV
 * weight, QKV clipping, a sparse-MoE MLP) are new kinds, not new layer bodies. Llama's pre-norm
 * RMSNorm layer with grouped-query attention and a SwiGLU MLP; Mixtral's routed experts; DBRX's
 * LayerNorm, clamped QKV and p-norm router on the same body. */
typedef enum ft_norm_kind {
    FT_NORM_RMS = 0,
    FT_NORM_LAYER = 1, /* LayerNorm without bias (DBRX), eps config.rms_norm_eps */
} ft_norm_kind;
typedef enum ft_mlp_kind {
    FT_MLP_SWIGLU = 0,
    FT_MLP_MOE_SWIGLU = 1, /* a router picks the top-k of n_experts SwiGLU experts per token */
} ft_mlp_kind;
typedef struct ft_layer_desc {
    ft_norm_kind norm;
    int64_t n_heads, n_kv_heads, head_dim;
    int64_t window;   /* sliding window (Mistral); 0: none */
    ft_mlp_kind mlp;
    int64_t ffn;      /* MLP width F */
    size_t first_param, n_params; /* its tensors: ft_model_param(m, first_param + i) */
    int64_t n_experts, top_k;     /* FT_MLP_MOE_SWIGLU */
    double qkv_clip;  /* q|k|v clamped to +-qkv_clip before RoPE (DBRX); 0: none */
    double router_p;  /* MoE: the top-k weights divided by their p-norm (Mixtral 1: their sum); 0: not */
    bool experts_fused; /* MoE: DBRX's fused w1, v1, w2 (E F, C) each, w2 untransposed (h w2_e) */
    bool aux_of_probs;  /* MoE: the load-balancing loss softmaxes the router's probabilities once more,
                           as transformers 4.40's DBRX passes probabilities where Mixtral passes logits */
} ft_layer_desc;
const ft_layer_desc *ft_model_layer(const ft_model *m, int64_t layer);
/* The kernel table the model runs on (ftune/tensor.h); the optimizer uses the same. */
const ft_backend *ft_model_backend(const ft_model *m);

#endif
