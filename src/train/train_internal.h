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

/* ---------------------------------------------------------------- data parallelism (dp.c) */

struct ft_train_dp {
    ft_comm *comm;     /* NULL when simulating */
    int64_t rank, world;
    bool simulate;     /* one process computing what `world` ranks would */
    bool zero;         /* ZeRO-1: optimizer state and update of this rank's shard only */
    int64_t n;         /* flat parameter elements */
    int64_t n_chunks;  /* of FT_GRAD_CHUNK elements */
    int64_t c_lo, c_hi; /* this rank's chunks */
    int64_t lo, hi;    /* its elements */
    float *scratch;    /* reduce-scatter receive buffers, or the simulation's accumulator */
    double *chunk_ss;  /* n_chunks sums of squares */
    double comm_s;     /* seconds spent in collectives (gradients, norm, parameters) */
    double comm_bytes; /* bytes this rank sent in them */
    bool failed;       /* the last train_dp_agree found a failure (on any rank): every rank knows */
    int64_t nonfinite_rank; /* the last step: the first rank whose own share's loss was not finite; -1 none */
    /* FTUNE_TEST_FAULT (a test hook, docs/distributed.md): set by the trainer for one step of this
     * rank. TRAIN_FAULT_FAIL: this rank's share of the step fails (as an I/O error would);
     * TRAIN_FAULT_NAN: its share's loss and gradients are NaN (what only it sees). */
    int inject;
};
enum { TRAIN_FAULT_NONE = 0, TRAIN_FAULT_FAIL, TRAIN_FAULT_NAN, TRAIN_FAULT_CKPT, TRAIN_FAULT_READ };
/* Over comm's ranks (simulate_world 0), or one process simulating simulate_world ranks. */
ft_status train_dp_new(ft_comm *comm, int64_t simulate_world, bool zero, ft_model *m, ft_train_dp **out,
                       ft_err *err);
void train_dp_free(ft_train_dp *dp);
/* Every rank's status `s` at one point of a step, shared (a collective every rank calls at the same
 * points, whatever its status): FT_OK when all are; else every rank returns the failure of the
 * lowest failed rank, "rank R of N (host H): what", and dp->failed is set, so that no rank goes
 * on to a collective that a failed one never reaches and rank 0 records the reason. `nonfinite`:
 * this rank's own share of the loss was not finite (dp->nonfinite_rank). In a simulation: s. */
ft_status train_dp_agree(ft_train_dp *dp, ft_status s, bool nonfinite, ft_err *err);
/* The step with data parallelism (ft_train_step calls it when p->dp is set). */
ft_status train_dp_step(ft_model *m, ft_workspace *ws, ft_optim *o, const ft_batch *b,
                        const ft_train_step_params *p, ft_train_step_result *r, ft_err *err);

/* ---------------------------------------------------------------- optimizer seam */

typedef struct train_opt train_opt;
ft_status train_opt_new(ft_model *m, ft_optimizer_kind kind, double weight_decay, double peak_lr, train_opt **out,
                        ft_err *err);
/* The same for a data-parallel run: sharded (ZeRO-1) as dp says; dp NULL: train_opt_new. */
ft_status train_opt_new_dp(ft_model *m, ft_optimizer_kind kind, double weight_decay, double peak_lr,
                           ft_train_dp *dp, train_opt **out, ft_err *err);
void train_opt_free(train_opt *o);
/* The optimizer inside, for ft_train_step. */
ft_optim *train_opt_optim(train_opt *o);
/* Save / load every state tensor ("<param>.<state>") and the step count, F32 safetensors. */
ft_status train_opt_save(train_opt *o, const char *path, ft_err *err);
ft_status train_opt_load(train_opt *o, const char *path, ft_err *err);
/* Data parallelism, in two halves so that no collective waits on a rank's file system:
 * train_opt_gather (every rank, a collective) gathers a sharded state to rank 0; then rank 0 alone
 * writes it with train_opt_save (the same file as one process writes). train_opt_read (rank 0
 * alone) reads a file into rank 0's full buffers; train_opt_scatter (every rank, a collective)
 * hands every rank its shard. */
ft_status train_opt_gather(train_opt *o, ft_err *err);
ft_status train_opt_read(train_opt *o, const char *path, ft_err *err);
ft_status train_opt_scatter(train_opt *o, ft_err *err);

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
