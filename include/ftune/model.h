/* ftune/model.h: the Llama-family decoder (Llama 2/3/3.x, CodeLlama, Mistral) on CPU, fp32:
 * forward, backward into accumulated gradients, and KV-cache decoding for generation.
 * Implemented in src/model/ (kernels in src/tensor/).
 *
 * Memory: parameters, gradients and activations each live in one arena sized at creation from
 * the params below, so a step allocates nothing. Batches are packed: a row holds several
 * samples, position ids restart per sample, and attention never crosses a sample boundary.
 *
 * Changes since the first draft (additive): ft_batch_owned + ft_model_batch_load (JSON batches);
 * ft_model_eval (loss and token accuracy without logits);
 * ft_model_forward's logits may be NULL (loss only, LM head on trainable rows); a
 * config.sliding_window > 0 limits attention to that many positions (Mistral). */
#ifndef FTUNE_MODEL_H
#define FTUNE_MODEL_H

#include "ftune/base.h"
#include "ftune/config.h"

typedef struct ft_model ft_model; /* opaque */

typedef struct ft_model_params {
    int64_t max_batch; /* B: rows per micro-batch the activation arena is sized for */
    int64_t max_seq;   /* T: tokens per row */
    bool training;     /* allocate gradients and backward activations */
    int threads;       /* 0: all cores */
} ft_model_params;
ft_model_params ft_model_default_params(void);

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

/* A packed batch, all (B, T) row-major. targets[b][t] is the token to predict at t, -100 = no
 * loss. position_ids / sample_ids may be NULL (0..T-1; one sample per row). */
typedef struct ft_batch {
    int64_t B, T;
    const int32_t *input_ids;
    const int32_t *targets;
    const int32_t *position_ids;
    const int32_t *sample_ids;
} ft_batch;

/* A batch read from the JSON of `ftune debug forward` ({"input_ids": [[..]], "targets": [[..]],
 * "position_ids"?, "sample_ids"?}); it owns its arrays. Shapes are checked here, values against
 * the model by the forward calls. */
typedef struct ft_batch_owned {
    ft_batch b;
    int32_t *input_ids, *targets, *position_ids, *sample_ids;
} ft_batch_owned;
ft_status ft_model_batch_load(const char *path, ft_batch_owned *out, ft_err *err);
void ft_model_batch_free(ft_batch_owned *b);

/* Forward only. *loss_sum gets the sum of cross-entropy over trainable tokens (double),
 * *n_trainable their count; logits (B, T, V) are copied to `logits` when non-NULL. */
ft_status ft_model_forward(ft_model *m, const ft_batch *b, float *logits, double *loss_sum, int64_t *n_trainable,
                           ft_err *err);
/* Forward and backward. Gradients ACCUMULATE (+=) d(loss_sum / denom)/dparam, so a global batch
 * split into micro-batches gives exactly the gradient of (total CE / global trainable tokens)
 * when every call passes the same denom. */
ft_status ft_model_forward_backward(ft_model *m, const ft_batch *b, double denom, double *loss_sum,
                                    int64_t *n_trainable, ft_err *err);
void ft_model_zero_grad(ft_model *m);
/* Global L2 norm of all gradients. */
double ft_model_grad_norm(ft_model *m);

/* Evaluation without logits: the loss sum and count as ft_model_forward, and *n_correct, the
 * trainable targets that are the argmax of their logits (the first maximum, as torch.argmax):
 * token accuracy = n_correct / n_trainable. The LM head runs on the trainable rows only. */
ft_status ft_model_eval(ft_model *m, const ft_batch *b, double *loss_sum, int64_t *n_trainable, int64_t *n_correct,
                        ft_err *err);

/* KV-cache decoding for generation (batch 1). */
typedef struct ft_kv_cache ft_kv_cache;
ft_status ft_kv_cache_new(const ft_model *m, int64_t max_tokens, ft_kv_cache **out, ft_err *err);
void ft_kv_cache_free(ft_kv_cache *c);
void ft_kv_cache_reset(ft_kv_cache *c);
int64_t ft_kv_cache_len(const ft_kv_cache *c);
/* Append n tokens at positions len..len+n-1 and write the logits of the last one (V floats). */
ft_status ft_model_decode(ft_model *m, ft_kv_cache *c, const int32_t *tokens, int64_t n, float *logits_last,
                          ft_err *err);

/* Save all parameters as safetensors with HF names (F32, or BF16 when `bf16`). */
ft_status ft_model_save_weights(ft_model *m, const char *path, bool bf16, ft_err *err);
/* Peak bytes of each arena (params, grads, activations) for memory reports. */
void ft_model_memory(const ft_model *m, size_t *params, size_t *grads, size_t *acts);

#endif
