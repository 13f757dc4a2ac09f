/* ftune/optim.h: the optimizers of SPEC §2, Composer's decoupled definitions, and global-norm
 * gradient clipping. Implemented in src/train/optim.c.
 *
 *   DecoupledAdamW (default): p *= 1 - (lr / peak_lr) * wd;  m = b1 m + (1 - b1) g;
 *     v = b2 v + (1 - b2) g^2;  p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *     betas 0.9 / 0.95, eps 1e-8.
 *   DecoupledLionW: p *= 1 - (lr / peak_lr) * wd;  p -= lr * sign(lerp(m, g, 1 - b1));
 *     m = lerp(m, g, 1 - b2);  betas 0.99 / 0.95.
 * Weight decay applies to every parameter (as Composer does by default); SPEC's default is 0.
 *
 * The state lives in one arena with the parameters' flat layout, so an update is a single
 * OpenMP-parallel pass over all parameters. It is exposed as named fp32 tensors, so checkpoints
 * save and restore it exactly: "<param>.exp_avg" (both), "<param>.exp_avg_sq" (AdamW), and
 * "step" (1 element: the number of updates done, exact up to 2^24). */
#ifndef FTUNE_OPTIM_H
#define FTUNE_OPTIM_H

#include "ftune/base.h"
#include "ftune/model.h"

typedef enum ft_optim_kind { FT_OPTIM_ADAMW = 0, FT_OPTIM_LION } ft_optim_kind;

typedef struct ft_optim_params {
    ft_optim_kind kind;
    double peak_lr;      /* the schedule's peak: weight decay is scaled by lr / peak_lr */
    double weight_decay; /* 0 by default */
    double beta1, beta2;
    double eps; /* AdamW only */
    /* ZeRO-1 (data parallelism): update, and keep state for, only the flat parameter elements
     * [shard_lo, shard_hi) (possibly empty) when `sharded`. A sharded optimizer lists only "step"
     * among its state tensors; its buffers are ft_optim_buffer's. */
    bool sharded;
    int64_t shard_lo, shard_hi;
} ft_optim_params;
/* SPEC §2 defaults for the kind; peak_lr 5e-7 (SPEC's learning-rate default). */
ft_optim_params ft_optim_default_params(ft_optim_kind kind);
/* "adamw" | "lion" -> kind; false when unknown. */
bool ft_optim_kind_parse(const char *name, ft_optim_kind *out);
const char *ft_optim_kind_name(ft_optim_kind kind);

typedef struct ft_optim ft_optim; /* opaque */

/* Bytes of an optimizer's state for a model of config c (fp32 exp_avg, and exp_avg_sq for AdamW):
 * a memory planner's third term beside ft_model_state_bytes and ft_workspace_bytes. */
size_t ft_optim_state_bytes(const ft_model_config *c, ft_optim_kind kind);

/* An optimizer over all parameters of a model created with training = true. */
ft_status ft_optim_new(ft_model *m, const ft_optim_params *p, ft_optim **out, ft_err *err);
void ft_optim_free(ft_optim *o);
const ft_optim_params *ft_optim_get_params(const ft_optim *o);

/* One update of every parameter from its gradient, at learning rate lr. */
ft_status ft_optim_step(ft_optim *o, double lr, ft_err *err);
/* Clipping fused into the update: the global gradient norm (stored in *norm, may be NULL) and,
 * when it is above max_norm (> 0), an update from g * max_norm / (norm + 1e-6) without writing
 * the scaled gradients back: the same result as ft_optim_clip_grad_norm + ft_optim_step with one
 * pass over memory fewer. A non-finite norm is FT_ERR_NUMERIC and updates nothing. */
ft_status ft_optim_step_clipped(ft_optim *o, double lr, double max_norm, double *norm, ft_err *err);
/* The same with the gradient norm given (data parallelism: computed over every process's shard). */
ft_status ft_optim_step_norm(ft_optim *o, double lr, double max_norm, double norm, ft_err *err);
/* The flat elements this optimizer updates: [*lo, *hi). */
void ft_optim_shard(const ft_optim *o, int64_t *lo, int64_t *hi);
/* Its state buffers over that range: 0 exp_avg, 1 exp_avg_sq (AdamW); n_buffers 2 (AdamW) or 1. */
int ft_optim_n_buffers(const ft_optim *o);
float *ft_optim_buffer(ft_optim *o, int k);
/* Updates done so far (the "step" tensor). */
int64_t ft_optim_step_count(const ft_optim *o);
void ft_optim_set_step_count(ft_optim *o, int64_t step);

/* The state tensors, in parameter order (all exp_avg, then all exp_avg_sq), then "step". */
typedef struct ft_optim_state {
    const char *name;
    int ndim;
    int64_t shape[2];
    int64_t numel;
    float *data;
} ft_optim_state;
size_t ft_optim_n_state(const ft_optim *o);
ft_optim_state *ft_optim_state_at(ft_optim *o, size_t i);
ft_optim_state *ft_optim_find_state(ft_optim *o, const char *name);

/* torch.nn.utils.clip_grad_norm_: the global L2 norm of all gradients; when above max_norm,
 * every gradient is scaled by max_norm / (norm + 1e-6). Returns the norm before clipping.
 * max_norm <= 0: no clipping, just the norm. */
double ft_optim_clip_grad_norm(ft_model *m, double max_norm);

#endif
