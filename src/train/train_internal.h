/* train/train_internal.h: what the trainer's files share (not a public header): gradient
 * accumulation over micro-batches, the optimizer seam, checkpoint contents, evaluation and
 * export helpers. Tests include it to reach the pieces directly. */
#ifndef FTUNE_TRAIN_INTERNAL_H
#define FTUNE_TRAIN_INTERNAL_H

#include "ftune/ckpt.h"
#include "ftune/gen.h"
#include "ftune/model.h"
#include "ftune/safetensors.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"
#include "ftune/train.h"

/* One global batch of (B, T) rows run as ceil(B / micro) forward/backward passes of at most
 * `micro` rows, every pass dividing by `denom` (the global batch's trainable tokens), so the
 * accumulated gradient is that of the mean loss over the whole global batch whatever `micro`
 * is. Gradients are zeroed first. *loss_sum gets the summed CE, *n_trainable the count. */
ft_status train_accumulate(ft_model *m, ft_workspace *ws, const ft_batch *b, int64_t micro, double denom,
                           double *loss_sum, int64_t *n_trainable, ft_err *err);
/* The same, also summing the mixture-of-experts load-balancing loss (without its coefficient;
 * exact over the whole batch) into *aux when non-NULL. */
ft_status train_accumulate_aux(ft_model *m, ft_workspace *ws, const ft_batch *b, int64_t micro, double denom,
                               double *loss_sum, int64_t *n_trainable, double *aux, ft_err *err);
/* Rows [r0, r1) of a batch, as a batch of their own (pointers into b). */
ft_batch train_batch_rows(const ft_batch *b, int64_t r0, int64_t r1);

/* Loss-spike detection as llm.c does it: the z-score of `loss` against the losses in the ring
 * window[0..W) (*n filled, *pos next slot); true when above zmax. The loss is then added. */
bool train_spike_check(double *window, int64_t W, int64_t *n, int64_t *pos, double loss, double zmax, double *z);

/* ---------------------------------------------------------------- optimizer seam */

typedef struct train_opt train_opt;
ft_status train_opt_new(ft_model *m, ft_optimizer_kind kind, double weight_decay, double peak_lr, train_opt **out,
                        ft_err *err);
void train_opt_free(train_opt *o);
/* The optimizer inside, for ft_train_step. */
ft_optim *train_opt_optim(train_opt *o);
/* Save / load every state tensor ("<param>.<state>") and the step count, F32 safetensors. */
ft_status train_opt_save(train_opt *o, const char *path, ft_err *err);
ft_status train_opt_load(train_opt *o, const char *path, ft_err *err);

/* ---------------------------------------------------------------- model files */

/* Write the model's weights as safetensors with HF names (F32, streamed from the parameters). */
ft_status train_save_weights(ft_model *m, const char *path, ft_err *err);
/* ft_train_check_architecture: ftune/train.h. */

/* ---------------------------------------------------------------- evaluation */

typedef struct train_eval_ctx {
    ft_model *model;
    ft_workspace *ws;      /* the run's (training) workspace, used one row at a time */
    const ft_tok *tok;
    const char *model_dir; /* generation_config.json / tokenizer_config.json */
    ft_dataset *eval_ds;   /* NULL: no eval loss */
    int64_t T;
    uint64_t seed;
    bool chat;             /* render eval prompts with the chat template */
    const char *const *prompts;
    size_t n_prompts;
    int64_t max_new_tokens;
    ft_generator *gen;     /* created on first use, freed by the caller */
} train_eval_ctx;

/* Eval loss and token accuracy over the eval data (one epoch in file order, one row at a time)
 * and a sampled completion per prompt. Fills r (generations owned by r: train_eval_free). */
ft_status train_evaluate(train_eval_ctx *ctx, int64_t step, int64_t epoch, const ft_train_sink *sink,
                         ft_eval_result *r, ft_err *err);
void train_eval_free(ft_eval_result *r);
/* The result as JSON (new reference). */
json_t *train_eval_to_json(const ft_eval_result *r);

/* ---------------------------------------------------------------- export */

/* The final weights as an HF folder (config.json, safetensors with HF names, sharded above
 * max_shard_bytes (0: transformers' 5 GB), in `dtype` (F32, BF16, F16; config torch_dtype says it), tokenizer files and generation_config.json copied from
 * the source model). */
ft_status train_export(ft_model *m, const char *src_model_dir, const char *out_dir, ft_st_dtype dtype,
                       uint64_t max_shard_bytes, ft_err *err);
/* The dtype a run exports in: its export_dtype, where "auto" is the base model's torch_dtype
 * (config.json's torch_dtype or dtype; float32 when it names none). */
ft_st_dtype train_export_dtype(const char *export_dtype, const ft_model_config *base);

#endif
