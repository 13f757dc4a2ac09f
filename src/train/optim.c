/* train/optim.c: DecoupledAdamW and DecoupledLionW (Composer's definitions, SPEC §2) and
 * global-norm gradient clipping; see ftune/optim.h for the formulas.
 *
 * The model keeps its parameters and gradients each in one flat, contiguous block (HF order);
 * the state mirrors that layout, so a step is one parallel loop over every element. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ftune/optim.h"

struct ft_optim {
    ft_optim_params p;
    ft_model *m;
    int64_t n;      /* elements over all parameters */
    int64_t lo, hi; /* the elements updated here (ZeRO-1 shard; 0, n: all) */
    float *w, *g;   /* flat parameters and gradients */
    float *m1, *m2; /* exp_avg, exp_avg_sq (NULL for Lion), over [lo, hi) */
    ft_arena arena;
    ft_optim_state *state;
    size_t n_state;
    char *names; /* storage of the state names */
};

ft_optim_params ft_optim_default_params(ft_optim_kind kind) {
    ft_optim_params p = {.kind = kind, .peak_lr = 5e-7, .weight_decay = 0.0};
    if (kind == FT_OPTIM_LION) {
        p.beta1 = 0.99;
        p.beta2 = 0.95;
    } else {
        p.beta1 = 0.9;
        p.beta2 = 0.95;
        p.eps = 1e-8;
    }
    return p;
}

bool ft_optim_kind_parse(const char *name, ft_optim_kind *out) {
    if (!strcmp(name, "adamw"))
        *out = FT_OPTIM_ADAMW;
    else if (!strcmp(name, "lion"))
        *out = FT_OPTIM_LION;
    else
        return false;
    return true;
}

const char *ft_optim_kind_name(ft_optim_kind kind) { return kind == FT_OPTIM_LION ? "lion" : "adamw"; }

ft_status ft_optim_new(ft_model *m, const ft_optim_params *p, ft_optim **out, ft_err *err) {
    *out = NULL;
    size_t np = ft_model_n_params(m);
    ft_param *p0 = ft_model_param(m, 0);
    if (!p0 || !p0->grad)
        return FT_ERR(err, FT_ERR_INVALID, "optimizer: the model was not created for training");
    if (!(p->peak_lr > 0) || !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) ||
        !(p->weight_decay >= 0) || (p->kind == FT_OPTIM_ADAMW && !(p->eps > 0)))
        return FT_ERR(err, FT_ERR_INVALID, "optimizer: bad hyperparameters (need peak_lr > 0, 0 <= betas < 1, "
                                           "weight_decay >= 0, eps > 0)");
    ft_optim *o = ft_calloc(1, sizeof *o);
    if (!o)
        return FT_ERR(err, FT_ERR_NOMEM, "optimizer: out of memory");
    o->p = *p;
    o->m = m;
    o->w = p0->data;
    o->g = p0->grad;
    for (size_t i = 0; i < np; i++) {
        ft_param *t = ft_model_param(m, i);
        FT_ASSERT(t->data == o->w + o->n && t->grad == o->g + o->n); /* flat layout */
        o->n += t->numel;
    }
    int nbuf = p->kind == FT_OPTIM_ADAMW ? 2 : 1;
    bool sharded = p->sharded;
    if (sharded && !(p->shard_lo >= 0 && p->shard_hi >= p->shard_lo && p->shard_hi <= o->n)) {
        int64_t n = o->n;
        ft_free(o);
        return FT_ERR(err, FT_ERR_INVALID, "optimizer: shard [%lld, %lld) is outside the %lld parameters",
                      (long long)p->shard_lo, (long long)p->shard_hi, (long long)n);
    }
    o->lo = sharded ? p->shard_lo : 0;
    o->hi = sharded ? p->shard_hi : o->n;
    const int64_t ns = o->hi - o->lo;
    /* A shard's state is one block per buffer, not named per parameter (a parameter may straddle
     * shards): only "step" is listed; the trainer gathers full state by name for checkpoints. */
    o->n_state = sharded ? 1 : (size_t)nbuf * np + 1;
    o->state = ft_calloc(o->n_state, sizeof *o->state);
    size_t name_cap = 0;
    for (size_t i = 0; i < np; i++)
        name_cap += strlen(ft_model_param(m, i)->name) + 16;
    o->names = ft_malloc(name_cap * (size_t)nbuf + 8);
    ft_status s = FT_OK;
    if (!o->state || !o->names)
        s = FT_ERR(err, FT_ERR_NOMEM, "optimizer: out of memory");
    if (s == FT_OK)
        s = ft_arena_init(&o->arena, "optimizer state", ((size_t)ns * (size_t)nbuf + 16) * sizeof(float) + 256, err);
    float *buf = NULL;
    if (s == FT_OK && !(buf = ft_arena_alloc(&o->arena, ((size_t)ns * (size_t)nbuf + 16) * sizeof(float), err)))
        s = FT_ERR_NOMEM;
    if (s != FT_OK) {
        ft_optim_free(o);
        return s;
    }
    o->m1 = buf;
    o->m2 = nbuf == 2 ? buf + ns : NULL;
    float *stepf = buf + ns * nbuf;
    char *nm = o->names;
    size_t k = 0;
    for (int b = 0; !sharded && b < nbuf; b++) {
        int64_t off = 0;
        for (size_t i = 0; i < np; i++) {
            ft_param *t = ft_model_param(m, i);
            int len = sprintf(nm, "%s.%s", t->name, b == 0 ? "exp_avg" : "exp_avg_sq");
            o->state[k++] = (ft_optim_state){nm, t->ndim, {t->shape[0], t->shape[1]}, t->numel,
                                             (b == 0 ? o->m1 : o->m2) + off};
            nm += len + 1;
            off += t->numel;
        }
    }
    o->state[k++] = (ft_optim_state){"step", 1, {1, 0}, 1, stepf};
    *out = o;
    return FT_OK;
}

size_t ft_optim_state_bytes(const ft_model_config *c, ft_optim_kind kind) {
    size_t n = 0, cnt = ft_model_config_tensors(c, NULL, 0);
    ft_tensor_spec *specs = ft_calloc(cnt, sizeof *specs);
    if (!specs)
        return 0;
    ft_model_config_tensors(c, specs, cnt);
    for (size_t i = 0; i < cnt; i++)
        n += (size_t)ft_tensor_spec_numel(&specs[i]);
    ft_free(specs);
    int nbuf = kind == FT_OPTIM_ADAMW ? 2 : 1;
    return (n * (size_t)nbuf + 16) * sizeof(float);
}

void ft_optim_free(ft_optim *o) {
    if (!o)
        return;
    ft_arena_deinit(&o->arena);
    ft_free(o->state);
    ft_free(o->names);
    ft_free(o);
}

const ft_optim_params *ft_optim_get_params(const ft_optim *o) { return &o->p; }

int64_t ft_optim_step_count(const ft_optim *o) { return (int64_t)o->state[o->n_state - 1].data[0]; }

void ft_optim_set_step_count(ft_optim *o, int64_t step) { o->state[o->n_state - 1].data[0] = (float)step; }

size_t ft_optim_n_state(const ft_optim *o) { return o->n_state; }

ft_optim_state *ft_optim_state_at(ft_optim *o, size_t i) { return i < o->n_state ? &o->state[i] : NULL; }

ft_optim_state *ft_optim_find_state(ft_optim *o, const char *name) {
    for (size_t i = 0; i < o->n_state; i++)
        if (!strcmp(o->state[i].name, name))
            return &o->state[i];
    return NULL;
}

/* One update; the gradients are read as g * gscale (the fused clipping). */
static ft_status update(ft_optim *o, double lr, float gscale, ft_err *err) {
    if (!(lr >= 0) || !isfinite(lr))
        return FT_ERR(err, FT_ERR_INVALID, "optimizer: learning rate %g is not a finite number >= 0", lr);
    int64_t t = ft_optim_step_count(o) + 1;
    ft_optim_set_step_count(o, t);
    const double bc1 = 1.0 - pow(o->p.beta1, (double)t), bc2 = 1.0 - pow(o->p.beta2, (double)t);
    ft_optim_update u = {.keep = o->p.weight_decay != 0.0 ? (float)(1.0 - (lr / o->p.peak_lr) * o->p.weight_decay) : 1.0f,
                         .lr = (float)lr,
                         .beta1 = (float)o->p.beta1,
                         .beta2 = (float)o->p.beta2,
                         .eps = (float)o->p.eps,
                         .one_minus_beta1 = (float)(1.0 - o->p.beta1),
                         .one_minus_beta2 = (float)(1.0 - o->p.beta2),
                         .step_size = (float)(lr / bc1),
                         .inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2)),
                         .gscale = gscale};
    const ft_backend *be = ft_model_backend(o->m);
    /* Element-wise: a shard's update is bit for bit that part of the whole update. */
    if (o->p.kind == FT_OPTIM_ADAMW)
        be->adamw(o->w + o->lo, o->m1, o->m2, o->g + o->lo, o->hi - o->lo, &u);
    else
        be->lion(o->w + o->lo, o->m1, o->g + o->lo, o->hi - o->lo, &u);
    return FT_OK;
}

ft_status ft_optim_step(ft_optim *o, double lr, ft_err *err) { return update(o, lr, 1.0f, err); }

void ft_optim_shard(const ft_optim *o, int64_t *lo, int64_t *hi) {
    *lo = o->lo;
    *hi = o->hi;
}

int ft_optim_n_buffers(const ft_optim *o) { return o->m2 ? 2 : 1; }

float *ft_optim_buffer(ft_optim *o, int k) { return k == 0 ? o->m1 : k == 1 ? o->m2 : NULL; }

ft_status ft_optim_step_clipped(ft_optim *o, double lr, double max_norm, double *norm, ft_err *err) {
    double n = ft_model_grad_norm(o->m);
    if (norm)
        *norm = n;
    return ft_optim_step_norm(o, lr, max_norm, n, err);
}

ft_status ft_optim_step_norm(ft_optim *o, double lr, double max_norm, double n, ft_err *err) {
    if (!isfinite(n))
        return FT_ERR(err, FT_ERR_NUMERIC, "optimizer: the gradient norm is %g", n);
    double coef = max_norm > 0 ? max_norm / (n + 1e-6) : 1.0;
    /* Same float product as clipping the gradients first, so both paths agree bit for bit. */
    return update(o, lr, coef < 1.0 ? (float)coef : 1.0f, err);
}

double ft_optim_clip_grad_norm(ft_model *m, double max_norm) {
    double norm = ft_model_grad_norm(m);
    if (max_norm <= 0)
        return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
        ft_param *p0 = ft_model_param(m, 0);
        int64_t n = 0;
        for (size_t i = 0; i < ft_model_n_params(m); i++)
            n += ft_model_param(m, i)->numel;
        float *g = p0->grad;
#pragma omp parallel for simd schedule(dynamic, 262144)
        for (int64_t i = 0; i < n; i++)
            g[i] *= c;
    }
    return norm;
}
