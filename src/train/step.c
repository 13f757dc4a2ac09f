/* train/step.c: THE training step (ft_train_step: gradient accumulation over micro-batches with
 * the loss divided by the global batch's trainable tokens, the gradient-reduction hook, clipping
 * fused into the optimizer update), and the model files a checkpoint holds (weights streamed as
 * HF-named safetensors, the architecture check of custom_weights_path). */
#include <math.h>
#include <string.h>

#include "ftune/safetensors.h"
#include "train_internal.h"

ft_batch train_batch_rows(const ft_batch *b, int64_t r0, int64_t r1) {
    ft_batch s = *b;
    int64_t off = r0 * b->T;
    s.B = r1 - r0;
    s.input_ids = b->input_ids + off;
    s.targets = b->targets + off;
    s.position_ids = b->position_ids ? b->position_ids + off : NULL;
    s.sample_ids = b->sample_ids ? b->sample_ids + off : NULL;
    return s;
}

/* A mixture of experts' load-balancing loss is defined over the whole batch (its routing counts
 * are the batch's), so when the batch takes several passes a forward over every micro-batch
 * first sums the counts, which each pass then uses: the passes' losses and gradients add up to
 * exactly the whole batch's, whatever the split. One pass needs no such forward. */
static ft_status global_router_counts(ft_model *m, ft_workspace *ws, const ft_batch *b, int64_t micro, ft_err *err) {
    const ft_model_config *c = ft_model_get_config(m);
    FT_TRY(ft_workspace_set_router_counts(ws, NULL, 0, err));
    if (ft_model_config_aux_coef(c) == 0 || micro >= b->B)
        return FT_OK;
    double *counts = ft_calloc((size_t)c->num_local_experts, sizeof *counts), tokens = 0;
    if (!counts)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_status s = FT_OK;
    for (int64_t r0 = 0; s == FT_OK && r0 < b->B; r0 += micro) {
        ft_batch mb = train_batch_rows(b, r0, r0 + micro < b->B ? r0 + micro : b->B);
        s = ft_model_router_counts(m, ws, &mb, counts, &tokens, err);
    }
    if (s == FT_OK)
        s = ft_workspace_set_router_counts(ws, counts, tokens, err);
    ft_free(counts);
    return s;
}

ft_status train_accumulate(ft_model *m, ft_workspace *ws, const ft_batch *b, int64_t micro, double denom,
                           double *loss_sum, int64_t *n_trainable, ft_err *err) {
    return train_accumulate_aux(m, ws, b, micro, denom, loss_sum, n_trainable, NULL, err);
}

ft_status train_accumulate_aux(ft_model *m, ft_workspace *ws, const ft_batch *b, int64_t micro, double denom,
                               double *loss_sum, int64_t *n_trainable, double *aux, ft_err *err) {
    *loss_sum = 0;
    *n_trainable = 0;
    if (aux)
        *aux = 0;
    if (micro <= 0)
        micro = b->B;
    int64_t fit = ft_workspace_get_params(ws)->max_batch;
    if (micro > fit)
        micro = fit;
    FT_TRY(global_router_counts(m, ws, b, micro, err));
    ft_model_zero_grad(m);
    /* (B, T) -> ceil(B / micro) passes of (<= micro, T); each adds d(CE_sum / denom). */
    for (int64_t r0 = 0; r0 < b->B; r0 += micro) {
        int64_t r1 = r0 + micro < b->B ? r0 + micro : b->B;
        ft_batch mb = train_batch_rows(b, r0, r1);
        double ls = 0;
        int64_t nt = 0;
        ft_status s = ft_model_forward_backward(m, ws, &mb, denom, &ls, &nt, err);
        if (s != FT_OK) {
            ft_workspace_set_router_counts(ws, NULL, 0, NULL);
            return s;
        }
        *loss_sum += ls;
        *n_trainable += nt;
        if (aux)
            *aux += ft_workspace_aux_loss(ws);
    }
    return ft_workspace_set_router_counts(ws, NULL, 0, err);
}

ft_status ft_train_step(ft_model *m, ft_workspace *ws, ft_optim *o, const ft_batch *b, const ft_train_step_params *p,
                        ft_train_step_result *r, ft_err *err) {
    if (p->dp)
        return train_dp_step(m, ws, o, b, p, r, err);
    *r = (ft_train_step_result){.loss = NAN, .grad_norm = NAN};
    double denom = p->denom;
    if (denom <= 0) {
        int64_t n = 0;
        for (int64_t i = 0; b->targets && i < b->B * b->T; i++)
            n += b->targets[i] != -100;
        denom = (double)n;
    }
    if (denom <= 0) { /* nothing to learn from: no update, not an error */
        ft_model_zero_grad(m);
        return FT_OK;
    }
    FT_TRY(train_accumulate_aux(m, ws, b, p->micro, denom, &r->loss_sum, &r->n_trainable, &r->aux_loss, err));
    if (p->reduce.fn)
        FT_TRY(p->reduce.fn(p->reduce.ctx, m, &r->loss_sum, &r->n_trainable, err));
    r->loss = r->loss_sum / denom;
    if (!isfinite(r->loss) || !isfinite(r->aux_loss)) {
        r->grad_norm = ft_model_grad_norm(m);
        return FT_OK;
    }
    ft_err e2;
    ft_err_clear(&e2);
    ft_status s = ft_optim_step_clipped(o, p->lr, p->max_norm, &r->grad_norm, &e2);
    if (s == FT_ERR_NUMERIC) /* a non-finite gradient norm: skipped, the caller decides */
        return FT_OK;
    if (s != FT_OK) {
        if (err)
            *err = e2;
        return s;
    }
    r->updated = true;
    return FT_OK;
}

bool train_spike_check(double *window, int64_t W, int64_t *n, int64_t *pos, double loss, double zmax, double *z) {
    bool spike = false;
    *z = 0;
    /* Judge only once half the window is there: early losses fall fast and would look odd. */
    if (*n >= W / 2 && *n >= 4) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < *n; i++)
            mean += window[i];
        mean /= (double)*n;
        for (int64_t i = 0; i < *n; i++)
            var += (window[i] - mean) * (window[i] - mean);
        double sd = sqrt(var / (double)*n);
        if (sd > 0) {
            *z = (loss - mean) / sd;
            spike = *z > zmax;
        }
    }
    window[*pos] = loss;
    *pos = (*pos + 1) % W;
    if (*n < W)
        (*n)++;
    return spike;
}

ft_status train_save_weights(ft_model *m, const char *path, ft_err *err) {
    ft_st_writer *w = NULL;
    ft_st_write_params wp = ft_st_write_default_params();
    wp.max_shard_bytes = 0; /* one file per checkpoint: the manifest lists it */
    FT_TRY(ft_st_writer_new(path, &wp, &w, err));
    ft_status s = FT_OK;
    size_t n = ft_model_n_params(m);
    for (size_t i = 0; s == FT_OK && i < n; i++) {
        ft_param *p = ft_model_param(m, i);
        s = ft_st_writer_add(w, p->name, FT_ST_DTYPE_F32, p->ndim, p->shape, err);
    }
    /* Straight from the parameters: no copy, so the extra memory is the writer's buffer. */
    for (size_t i = 0; s == FT_OK && i < n; i++) {
        ft_param *p = ft_model_param(m, i);
        s = ft_st_writer_write_f32(w, p->name, p->data, p->numel, err);
    }
    if (s == FT_OK)
        s = ft_st_writer_finish(w, err);
    ft_st_writer_free(w);
    return s;
}

ft_status ft_train_check_architecture(const ft_model_config *want, const char *ckpt_dir, ft_err *err) {
    char *p = ft_path_join(ckpt_dir, "config.json");
    if (!p)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_model_config got;
    ft_status s = ft_model_config_load(p, &got, err);
    ft_free(p);
    if (s != FT_OK)
        return s;
    struct {
        const char *name;
        int64_t a, b;
    } f[] = {
        {"vocab_size", want->vocab_size, got.vocab_size},
        {"hidden_size", want->hidden_size, got.hidden_size},
        {"intermediate_size", want->intermediate_size, got.intermediate_size},
        {"num_hidden_layers", want->num_hidden_layers, got.num_hidden_layers},
        {"num_attention_heads", want->num_attention_heads, got.num_attention_heads},
        {"num_key_value_heads", want->num_key_value_heads, got.num_key_value_heads},
        {"head_dim", want->head_dim, got.head_dim},
        {"tie_word_embeddings", want->tie_word_embeddings, got.tie_word_embeddings},
        {"num_local_experts", want->num_local_experts, got.num_local_experts},
        {"num_experts_per_tok", want->num_experts_per_tok, got.num_experts_per_tok},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i].a != f[i].b)
            return FT_ERR_AT(err, FT_ERR_INVALID, ckpt_dir, 0, 0,
                             "custom_weights_path: the checkpoint's %s is %lld but the model's is %lld (not the same "
                             "architecture)",
                             f[i].name, (long long)f[i].b, (long long)f[i].a);
    if (strcmp(want->architecture, got.architecture))
        return FT_ERR_AT(err, FT_ERR_INVALID, ckpt_dir, 0, 0,
                         "custom_weights_path: the checkpoint is a %s but the model is a %s", got.architecture,
                         want->architecture);
    return FT_OK;
}
