/* train/opt_seam.c: the trainer's view of the optimizer (ftune/optim.h): the optimizer ft_train_step
 * updates with, and the state tensors written to and read from a checkpoint's optimizer.safetensors
 * under their ftune/optim.h names ("<param>.exp_avg", "<param>.exp_avg_sq", "step"), streamed
 * from the optimizer's arena. */
#include <string.h>

#include "ftune/optim.h"
#include "ftune/safetensors.h"
#include "train_internal.h"

struct train_opt {
    ft_model *m;
    ft_optim *o;
};

ft_status train_opt_new(ft_model *m, ft_optimizer_kind kind, double weight_decay, double peak_lr, train_opt **out,
                        ft_err *err) {
    train_opt *t = ft_calloc(1, sizeof *t);
    if (!t)
        return FT_ERR(err, FT_ERR_NOMEM, "optimizer: out of memory");
    ft_optim_params p = ft_optim_default_params(kind == FT_OPTIMIZER_LION ? FT_OPTIM_LION : FT_OPTIM_ADAMW);
    p.peak_lr = peak_lr;
    p.weight_decay = weight_decay;
    t->m = m;
    ft_status s = ft_optim_new(m, &p, &t->o, err);
    if (s != FT_OK) {
        ft_free(t);
        return s;
    }
    *out = t;
    return FT_OK;
}

void train_opt_free(train_opt *t) {
    if (!t)
        return;
    ft_optim_free(t->o);
    ft_free(t);
}

ft_optim *train_opt_optim(train_opt *t) { return t->o; }

ft_status train_opt_save(train_opt *t, const char *path, ft_err *err) {
    ft_st_writer *w = NULL;
    ft_st_write_params wp = ft_st_write_default_params();
    wp.max_shard_bytes = 0;
    FT_TRY(ft_st_writer_new(path, &wp, &w, err));
    ft_status s = ft_st_writer_metadata(w, "optimizer", ft_optim_kind_name(ft_optim_get_params(t->o)->kind), err);
    size_t n = ft_optim_n_state(t->o);
    for (size_t i = 0; s == FT_OK && i < n; i++) {
        ft_optim_state *st = ft_optim_state_at(t->o, i);
        s = ft_st_writer_add(w, st->name, FT_ST_DTYPE_F32, st->ndim, st->shape, err);
    }
    for (size_t i = 0; s == FT_OK && i < n; i++) {
        ft_optim_state *st = ft_optim_state_at(t->o, i);
        s = ft_st_writer_write_f32(w, st->name, st->data, st->numel, err);
    }
    if (s == FT_OK)
        s = ft_st_writer_finish(w, err);
    ft_st_writer_free(w);
    return s;
}

ft_status train_opt_load(train_opt *t, const char *path, ft_err *err) {
    ft_st_reader *r = NULL;
    FT_TRY(ft_st_open(path, &r, err));
    ft_status s = FT_OK;
    const char *kind = ft_st_metadata(r, "optimizer");
    const char *want = ft_optim_kind_name(ft_optim_get_params(t->o)->kind);
    if (!kind || strcmp(kind, want))
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "optimizer state is for \"%s\", the run uses %s",
                      kind ? kind : "?", want);
    size_t n = ft_optim_n_state(t->o);
    for (size_t i = 0; s == FT_OK && i < n; i++) {
        ft_optim_state *st = ft_optim_state_at(t->o, i);
        const ft_st_tensor *tt = NULL;
        s = ft_st_get(r, st->name, st->ndim, st->shape, &tt, err);
        if (s == FT_OK)
            s = ft_st_read_f32(tt, st->data, st->numel, err);
    }
    ft_st_close(r);
    return s;
}
