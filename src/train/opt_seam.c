/* train/opt_seam.c: the trainer's view of the optimizer: one update per step, with the state
 * tensors saved in and restored from checkpoints. The update rules are SPEC §2's decoupled
 * AdamW (betas 0.9/0.95, eps 1e-8, bias correction, decay p *= 1 - (lr/peak_lr)*wd) and
 * decoupled Lion (betas 0.99/0.95). TODO(#5): delegate to ftune/optim.h once it lands, keeping
 * the checkpoint tensor names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/safetensors.h"
#include "train_internal.h"

struct train_opt {
    ft_model *m;
    ft_optimizer_kind kind;
    double wd, peak_lr;
    int64_t t;    /* updates done (AdamW bias correction) */
    float **m1;   /* per parameter: AdamW exp_avg / Lion exp_avg */
    float **m2;   /* per parameter: AdamW exp_avg_sq (NULL for Lion) */
    size_t n;
};

ft_status train_opt_new(ft_model *m, ft_optimizer_kind kind, double weight_decay, double peak_lr, train_opt **out,
                        ft_err *err) {
    train_opt *o = ft_calloc(1, sizeof *o);
    if (!o)
        return FT_ERR(err, FT_ERR_NOMEM, "optimizer: out of memory");
    o->m = m;
    o->kind = kind;
    o->wd = weight_decay;
    o->peak_lr = peak_lr;
    o->n = ft_model_n_params(m);
    o->m1 = ft_calloc(o->n, sizeof(float *));
    o->m2 = ft_calloc(o->n, sizeof(float *));
    bool ok = o->m1 && o->m2;
    for (size_t i = 0; ok && i < o->n; i++) {
        ft_param *p = ft_model_param(m, i);
        o->m1[i] = ft_calloc((size_t)p->numel, sizeof(float));
        ok = o->m1[i] != NULL;
        if (ok && kind == FT_OPTIMIZER_ADAMW) {
            o->m2[i] = ft_calloc((size_t)p->numel, sizeof(float));
            ok = o->m2[i] != NULL;
        }
    }
    if (!ok) {
        train_opt_free(o);
        return FT_ERR(err, FT_ERR_NOMEM, "optimizer: out of memory for the state");
    }
    *out = o;
    return FT_OK;
}

void train_opt_free(train_opt *o) {
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        if (o->m1)
            ft_free(o->m1[i]);
        if (o->m2)
            ft_free(o->m2[i]);
    }
    ft_free(o->m1);
    ft_free(o->m2);
    ft_free(o);
}

void train_opt_step(train_opt *o, double lr, double grad_norm, double max_norm) {
    float clip = 1.0f;
    if (max_norm > 0 && grad_norm > max_norm)
        clip = (float)(max_norm / (grad_norm + 1e-6));
    o->t++;
    float decay = (float)(1.0 - (o->peak_lr > 0 ? lr / o->peak_lr : 0) * o->wd);
    for (size_t i = 0; i < o->n; i++) {
        ft_param *p = ft_model_param(o->m, i);
        float *w = p->data, *g = p->grad, *m1 = o->m1[i], *m2 = o->m2[i];
        int64_t n = p->numel;
        if (o->kind == FT_OPTIMIZER_ADAMW) {
            const float b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
            float bc1 = 1.0f - powf(b1, (float)o->t), bc2 = 1.0f - powf(b2, (float)o->t);
            float step = (float)lr / bc1, sbc2 = sqrtf(bc2);
#pragma omp parallel for schedule(static) if (n > 65536)
            for (int64_t j = 0; j < n; j++) {
                float gj = g[j] * clip;
                m1[j] = b1 * m1[j] + (1 - b1) * gj;
                m2[j] = b2 * m2[j] + (1 - b2) * gj * gj;
                w[j] = w[j] * decay - step * m1[j] / (sqrtf(m2[j]) / sbc2 + eps);
            }
        } else {
            const float b1 = 0.99f, b2 = 0.95f;
            float flr = (float)lr;
#pragma omp parallel for schedule(static) if (n > 65536)
            for (int64_t j = 0; j < n; j++) {
                float gj = g[j] * clip;
                float u = b1 * m1[j] + (1 - b1) * gj;
                w[j] = w[j] * decay - flr * (float)((u > 0) - (u < 0));
                m1[j] = b2 * m1[j] + (1 - b2) * gj;
            }
        }
    }
}

static const char *state_name(const train_opt *o, int which) {
    return which == 0 ? "exp_avg" : (o->kind == FT_OPTIMIZER_ADAMW ? "exp_avg_sq" : NULL);
}

ft_status train_opt_save(train_opt *o, const char *path, ft_err *err) {
    ft_st_writer *w = NULL;
    ft_st_write_params wp = ft_st_write_default_params();
    wp.max_shard_bytes = 0;
    FT_TRY(ft_st_writer_new(path, &wp, &w, err));
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)o->t);
    ft_status s = ft_st_writer_metadata(w, "step", num, err);
    if (s == FT_OK)
        s = ft_st_writer_metadata(w, "optimizer", o->kind == FT_OPTIMIZER_ADAMW ? "adamw" : "lion", err);
    char name[256];
    for (size_t i = 0; s == FT_OK && i < o->n; i++)
        for (int k = 0; s == FT_OK && k < 2 && state_name(o, k); k++) {
            ft_param *p = ft_model_param(o->m, i);
            snprintf(name, sizeof name, "%s.%s", p->name, state_name(o, k));
            s = ft_st_writer_add(w, name, FT_ST_DTYPE_F32, p->ndim, p->shape, err);
        }
    for (size_t i = 0; s == FT_OK && i < o->n; i++)
        for (int k = 0; s == FT_OK && k < 2 && state_name(o, k); k++) {
            ft_param *p = ft_model_param(o->m, i);
            snprintf(name, sizeof name, "%s.%s", p->name, state_name(o, k));
            s = ft_st_writer_write_f32(w, name, k == 0 ? o->m1[i] : o->m2[i], p->numel, err);
        }
    if (s == FT_OK)
        s = ft_st_writer_finish(w, err);
    ft_st_writer_free(w);
    return s;
}

ft_status train_opt_load(train_opt *o, const char *path, ft_err *err) {
    ft_st_reader *r = NULL;
    FT_TRY(ft_st_open(path, &r, err));
    ft_status s = FT_OK;
    const char *kind = ft_st_metadata(r, "optimizer"), *step = ft_st_metadata(r, "step");
    const char *want = o->kind == FT_OPTIMIZER_ADAMW ? "adamw" : "lion";
    if (!kind || strcmp(kind, want) || !step)
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "optimizer state is for \"%s\", the run uses %s",
                      kind ? kind : "?", want);
    if (s == FT_OK)
        o->t = strtoll(step, NULL, 10);
    char name[256];
    for (size_t i = 0; s == FT_OK && i < o->n; i++)
        for (int k = 0; s == FT_OK && k < 2 && state_name(o, k); k++) {
            ft_param *p = ft_model_param(o->m, i);
            snprintf(name, sizeof name, "%s.%s", p->name, state_name(o, k));
            const ft_st_tensor *t = NULL;
            s = ft_st_get(r, name, p->ndim, p->shape, &t, err);
            if (s == FT_OK)
                s = ft_st_read_f32(t, k == 0 ? o->m1[i] : o->m2[i], p->numel, err);
        }
    ft_st_close(r);
    return s;
}
