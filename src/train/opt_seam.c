/* train/opt_seam.c: the trainer's view of the optimizer (ftune/optim.h): the optimizer ft_train_step
 * updates with, and the state written to and read from a checkpoint's optimizer.safetensors under
 * their ftune/optim.h names ("<param>.exp_avg", "<param>.exp_avg_sq", "step"). In a data-parallel
 * run with ZeRO-1 each rank keeps only its shard of the state: a checkpoint gathers it to rank 0,
 * which writes the same file one process writes (full state by parameter name), so a run saved
 * on N ranks resumes on any number; a resume reads it on rank 0 and hands each rank its shard.
 *
 * Memory: the gathered state (one n-float buffer per optimizer buffer) needs no allocation of its
 * own. Between steps the gradients (n floats) and the reduce-scatter's receive buffers (at least n
 * floats, ft_comm_scratch_floats) hold nothing: the next step zeroes the gradients before using
 * them and overwrites the receive buffers. So a checkpoint gathers exp_avg into the gradients and
 * exp_avg_sq into the receive buffers, and a resume reads into the same two; rank 0's peak is
 * then the same as a step's, and ZeRO-1 saves on every rank what ftune/memplan.h predicts. */
#include <string.h>

#include "ftune/optim.h"
#include "ftune/safetensors.h"
#include "train_internal.h"

struct train_opt {
    ft_model *m;
    ft_optim *o;
    ft_train_dp *dp;  /* NULL: one process */
    float *full[2];   /* rank 0 of a sharded run: the gathered state (between gather and save), in
                       * the gradients and the receive buffers (see above) */
};

/* The state is sharded across processes (ZeRO-1 in a real multi-rank run). */
static bool sharded(const train_opt *t) { return t->dp && t->dp->zero && !t->dp->simulate && t->dp->world > 1; }
static bool root(const train_opt *t) { return !t->dp || t->dp->rank == 0; }

ft_status train_opt_new_dp(ft_model *m, ft_optimizer_kind kind, double weight_decay, double peak_lr,
                           ft_train_dp *dp, train_opt **out, ft_err *err) {
    train_opt *t = ft_calloc(1, sizeof *t);
    if (!t)
        return FT_ERR(err, FT_ERR_NOMEM, "optimizer: out of memory");
    ft_optim_params p = ft_optim_default_params(kind == FT_OPTIMIZER_LION ? FT_OPTIM_LION : FT_OPTIM_ADAMW);
    p.peak_lr = peak_lr;
    p.weight_decay = weight_decay;
    t->m = m;
    t->dp = dp;
    if (sharded(t)) {
        p.sharded = true;
        p.shard_lo = dp->lo;
        p.shard_hi = dp->hi;
    }
    ft_status s = ft_optim_new(m, &p, &t->o, err);
    if (s != FT_OK) {
        ft_free(t);
        return s;
    }
    *out = t;
    return FT_OK;
}

ft_status train_opt_new(ft_model *m, ft_optimizer_kind kind, double weight_decay, double peak_lr, train_opt **out,
                        ft_err *err) {
    return train_opt_new_dp(m, kind, weight_decay, peak_lr, NULL, out, err);
}

static void free_full(train_opt *t) { t->full[0] = t->full[1] = NULL; }

void train_opt_free(train_opt *t) {
    if (!t)
        return;
    free_full(t);
    ft_optim_free(t->o);
    ft_free(t);
}

ft_optim *train_opt_optim(train_opt *t) { return t->o; }

/* Buffer k over all parameters: the optimizer's own, or rank 0's gathered one. */
static float *full_buffer(train_opt *t, int k) { return sharded(t) ? t->full[k] : ft_optim_buffer(t->o, k); }

/* The gathered state's buffers: the gradients and the receive buffers, idle between steps. */
static void borrow_full(train_opt *t) {
    t->full[0] = ft_model_param(t->m, 0)->grad;
    t->full[1] = t->dp->scratch;
}

ft_status train_opt_gather(train_opt *t, ft_err *err) {
    if (!sharded(t))
        return FT_OK;
    if (root(t))
        borrow_full(t);
    ft_status s = FT_OK;
    int64_t n = ft_model_n_elements(t->m);
    for (int k = 0; s == FT_OK && k < ft_optim_n_buffers(t->o); k++)
        s = ft_comm_gather_f32(t->dp->comm, ft_optim_buffer(t->o, k), t->full[k], n, FT_GRAD_CHUNK, 0, err);
    return s;
}

static const char *const buffer_suffix[2] = {"exp_avg", "exp_avg_sq"};

ft_status train_opt_save(train_opt *t, const char *path, ft_err *err) {
    if (sharded(t) && !t->full[0])
        return FT_ERR(err, FT_ERR_INTERNAL, "optimizer: saving a sharded state that was not gathered");
    ft_st_writer *w = NULL;
    ft_st_write_params wp = ft_st_write_default_params();
    wp.max_shard_bytes = 0;
    FT_TRY(ft_st_writer_new(path, &wp, &w, err));
    ft_status s = ft_st_writer_metadata(w, "optimizer", ft_optim_kind_name(ft_optim_get_params(t->o)->kind), err);
    size_t np = ft_model_n_params(t->m);
    int nb = ft_optim_n_buffers(t->o);
    char name[600];
    /* all exp_avg, then all exp_avg_sq, then step: the order of ftune/optim.h's state list */
    for (int k = 0; s == FT_OK && k < nb; k++)
        for (size_t i = 0; s == FT_OK && i < np; i++) {
            ft_param *p = ft_model_param(t->m, i);
            snprintf(name, sizeof name, "%s.%s", p->name, buffer_suffix[k]);
            s = ft_st_writer_add(w, name, FT_ST_DTYPE_F32, p->ndim, p->shape, err);
        }
    int64_t one = 1;
    if (s == FT_OK)
        s = ft_st_writer_add(w, "step", FT_ST_DTYPE_F32, 1, &one, err);
    const float *w0 = ft_model_param(t->m, 0)->data;
    for (int k = 0; s == FT_OK && k < nb; k++) {
        const float *buf = full_buffer(t, k);
        for (size_t i = 0; s == FT_OK && i < np; i++) {
            ft_param *p = ft_model_param(t->m, i);
            snprintf(name, sizeof name, "%s.%s", p->name, buffer_suffix[k]);
            s = ft_st_writer_write_f32(w, name, buf + (p->data - w0), p->numel, err);
        }
    }
    float step = (float)ft_optim_step_count(t->o);
    if (s == FT_OK)
        s = ft_st_writer_write_f32(w, "step", &step, 1, err);
    if (s == FT_OK)
        s = ft_st_writer_finish(w, err);
    ft_st_writer_free(w);
    free_full(t);
    return s;
}

ft_status train_opt_read(train_opt *t, const char *path, ft_err *err) {
    if (sharded(t))
        borrow_full(t);
    ft_st_reader *r = NULL;
    FT_TRY(ft_st_open(path, &r, err));
    ft_status s = FT_OK;
    const char *kind = ft_st_metadata(r, "optimizer");
    const char *want = ft_optim_kind_name(ft_optim_get_params(t->o)->kind);
    if (!kind || strcmp(kind, want))
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "optimizer state is for \"%s\", the run uses %s",
                      kind ? kind : "?", want);
    size_t np = ft_model_n_params(t->m);
    const float *w0 = ft_model_param(t->m, 0)->data;
    char name[600];
    for (int k = 0; s == FT_OK && k < ft_optim_n_buffers(t->o); k++) {
        float *buf = full_buffer(t, k);
        for (size_t i = 0; s == FT_OK && i < np; i++) {
            ft_param *p = ft_model_param(t->m, i);
            snprintf(name, sizeof name, "%s.%s", p->name, buffer_suffix[k]);
            const ft_st_tensor *tt = NULL;
            s = ft_st_get(r, name, p->ndim, p->shape, &tt, err);
            if (s == FT_OK)
                s = ft_st_read_f32(tt, buf + (p->data - w0), p->numel, err);
        }
    }
    int64_t one = 1;
    float step = 0;
    const ft_st_tensor *tt = NULL;
    if (s == FT_OK)
        s = ft_st_get(r, "step", 1, &one, &tt, err);
    if (s == FT_OK)
        s = ft_st_read_f32(tt, &step, 1, err);
    if (s == FT_OK)
        ft_optim_set_step_count(t->o, (int64_t)step);
    ft_st_close(r);
    return s;
}

ft_status train_opt_load(train_opt *t, const char *path, ft_err *err) { return train_opt_read(t, path, err); }

ft_status train_opt_scatter(train_opt *t, ft_err *err) {
    if (!t->dp || t->dp->simulate || t->dp->world <= 1)
        return FT_OK;
    ft_comm *c = t->dp->comm;
    int64_t step = ft_optim_step_count(t->o), n = ft_model_n_elements(t->m);
    FT_TRY(ft_comm_bcast(c, &step, sizeof step, 0, err));
    ft_optim_set_step_count(t->o, step);
    for (int k = 0; k < ft_optim_n_buffers(t->o); k++) {
        if (!sharded(t)) { /* every rank keeps it all */
            FT_TRY(ft_comm_bcast(c, ft_optim_buffer(t->o, k), (size_t)n * sizeof(float), 0, err));
            continue;
        }
        /* the followers receive into their gradients (idle before the first step) */
        float *tmp = root(t) ? t->full[k] : ft_model_param(t->m, 0)->grad;
        ft_status s = ft_comm_bcast(c, tmp, (size_t)n * sizeof(float), 0, err);
        if (s == FT_OK && t->dp->hi > t->dp->lo)
            memcpy(ft_optim_buffer(t->o, k), tmp + t->dp->lo, (size_t)(t->dp->hi - t->dp->lo) * sizeof(float));
        if (s != FT_OK)
            return s;
    }
    free_full(t);
    return FT_OK;
}
