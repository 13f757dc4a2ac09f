/* model/model.c: the Llama-family model object: parameter layout in HF order, the three arenas
 * (weights, gradients, activations) sized once at creation, random initialisation, loading and
 * saving Hugging Face safetensors, and gradient utilities. The numerics are in forward.c and
 * decode.c. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/safetensors.h"
#include "internal.h"

ft_model_params ft_model_default_params(void) {
    return (ft_model_params){.max_batch = 1, .max_seq = 512, .training = false, .threads = 0};
}

/* ---------------------------------------------------------------- layout */

/* Place every parameter in one arena, back to back in HF order with no padding, so that q/k/v
 * and gate/up form contiguous matrices; gradients mirror the layout. */
static ft_status layout(ft_model *m, ft_err *err) {
    const ft_model_config *c = &m->cfg;
    m->n_params = ft_model_config_tensors(c, NULL, 0);
    m->specs = ft_calloc(m->n_params, sizeof *m->specs);
    m->params = ft_calloc(m->n_params, sizeof *m->params);
    m->w = ft_calloc((size_t)m->L, sizeof *m->w);
    m->g = ft_calloc((size_t)m->L, sizeof *m->g);
    if (!m->specs || !m->params || !m->w || !m->g)
        return FT_ERR(err, FT_ERR_NOMEM, "model: out of memory");
    ft_model_config_tensors(c, m->specs, m->n_params);
    int64_t total = 0;
    for (size_t i = 0; i < m->n_params; i++)
        total += ft_tensor_spec_numel(&m->specs[i]);
    size_t bytes = (size_t)total * sizeof(float);
    FT_TRY(ft_arena_init(&m->warena, "weights", bytes + 64, err));
    float *wbase = ft_arena_alloc(&m->warena, bytes, err);
    if (!wbase)
        return FT_ERR_NOMEM;
    float *gbase = NULL;
    if (m->p.training) {
        FT_TRY(ft_arena_init(&m->garena, "gradients", bytes + 64, err));
        gbase = ft_arena_alloc(&m->garena, bytes, err);
        if (!gbase)
            return FT_ERR_NOMEM;
    }
    int64_t off = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        ft_tensor_spec *s = &m->specs[i];
        ft_param *p = &m->params[i];
        p->name = s->name;
        p->ndim = s->ndim;
        p->shape[0] = s->shape[0];
        p->shape[1] = s->ndim == 2 ? s->shape[1] : 0;
        p->numel = ft_tensor_spec_numel(s);
        p->data = wbase + off;
        p->grad = gbase ? gbase + off : NULL;
        off += p->numel;
    }
    /* Views by role: the spec order is fixed by ft_model_config_tensors. */
    size_t i = 0;
    m->embed = m->params[i].data;
    m->g_embed = m->params[i++].grad;
    for (int64_t l = 0; l < m->L; l++) {
        layer_w *w = &m->w[l], *g = &m->g[l];
        ft_param *P = &m->params[i];
        FT_ASSERT(strstr(P[0].name, "input_layernorm") && strstr(P[1].name, "q_proj") && strstr(P[4].name, "o_proj") &&
                  strstr(P[6].name, "gate_proj") && strstr(P[8].name, "down_proj"));
        FT_ASSERT(P[2].data == P[1].data + P[1].numel && P[3].data == P[2].data + P[2].numel);
        FT_ASSERT(P[7].data == P[6].data + P[6].numel);
        *w = (layer_w){P[0].data, P[1].data, P[4].data, P[5].data, P[6].data, P[8].data};
        *g = (layer_w){P[0].grad, P[1].grad, P[4].grad, P[5].grad, P[6].grad, P[8].grad};
        i += 9;
    }
    m->norm = m->params[i].data;
    m->g_norm = m->params[i++].grad;
    if (c->tie_word_embeddings) {
        m->head = m->embed;
        m->g_head = m->g_embed;
    } else {
        m->head = m->params[i].data;
        m->g_head = m->params[i++].grad;
    }
    FT_ASSERT(i == m->n_params);
    return FT_OK;
}

/* Activations for N = max_batch * max_seq rows; training keeps one set per layer. */
static ft_status alloc_acts(ft_model *m, ft_err *err) {
    const int64_t N = m->N, C = m->C, F = m->F, Q = m->Q, QKV = m->QKV, V = m->V, L = m->L;
    const bool tr = m->p.training;
    int64_t chunk = (int64_t)((64u << 20) / ((size_t)V * sizeof(float)));
    m->chunk = chunk < 16 ? 16 : chunk > N ? N : chunk;
    m->attn_threads = omp_get_max_threads();
    ft_attn_shape as = {.B = m->p.max_batch, .Tq = m->p.max_seq, .Tk = m->p.max_seq, .NH = m->NH, .KVH = m->KVH,
                        .HD = m->HD, .threads = m->attn_threads};
    m->attn_scratch_n = ft_tensor_attention_scratch(&as);
    int64_t sets = tr ? L : 1;
    int64_t per_set = 5 * N * C + 2 * N + N * QKV + N * Q + N * m->NH + 2 * N * F;
    int64_t rest = 3 * N * C + N + m->HD + N * m->HD + 3 * N + N * F + m->chunk * V + (int64_t)m->attn_scratch_n;
    if (tr)
        rest += 4 * N * C + N * QKV + N * Q + (m->attn_threads > 1 ? m->attn_threads - 1 : 1) * m->chunk * C;
    int64_t n_bufs = 14 * sets + 40; /* alignment slack */
    size_t cap = (size_t)(sets * per_set + rest) * sizeof(float) + (size_t)n_bufs * 64 + 4096;
    FT_TRY(ft_arena_init(&m->aarena, "activations", cap, err));
    m->acts = ft_calloc((size_t)L, sizeof *m->acts);
    if (!m->acts)
        return FT_ERR(err, FT_ERR_NOMEM, "model: out of memory");
    ft_arena *a = &m->aarena;
#define GET(ptr, count)                                                   \
    do {                                                                  \
        (ptr) = ft_arena_alloc(a, (size_t)(count) * sizeof *(ptr), err);  \
        if (!(ptr))                                                       \
            return FT_ERR_NOMEM;                                          \
    } while (0)
    for (int64_t l = 0; l < sets; l++) {
        layer_acts *s = &m->acts[l];
        GET(s->x, N * C);
        GET(s->xn1, N * C);
        GET(s->rstd1, N);
        GET(s->qkv, N * QKV);
        GET(s->att, N * Q);
        GET(s->lse, N * m->NH);
        GET(s->xmid, N * C);
        GET(s->xn2, N * C);
        GET(s->rstd2, N);
        GET(s->gu, N * 2 * F);
    }
    for (int64_t l = sets; l < L; l++)
        m->acts[l] = m->acts[0];
    GET(m->xL, N * C);
    GET(m->xf, N * C);
    GET(m->rstdf, N);
    GET(m->inv_freq, m->HD / 2 + 1);
    GET(m->cos_t, N * (m->HD / 2));
    GET(m->sin_t, N * (m->HD / 2));
    GET(m->pos, N);
    GET(m->rows, N);
    GET(m->tgt, N);
    GET(m->hbuf, N * F);
    GET(m->xc, N * C);
    GET(m->logits, m->chunk * V);
    GET(m->attn_scratch, m->attn_scratch_n);
    if (tr) {
        GET(m->dx, N * C);
        GET(m->dtmp, N * C);
        GET(m->dqkv, N * QKV);
        GET(m->datt, N * Q);
        GET(m->dxc, N * C);
        GET(m->dxpart, (m->attn_threads > 1 ? m->attn_threads - 1 : 1) * m->chunk * C);
    }
#undef GET
    ft_tensor_rope_inv_freq(m->inv_freq, &m->cfg);
    return FT_OK;
}

static ft_status model_create(const ft_model_config *c, const ft_model_params *p, ft_model **out, ft_err *err) {
    *out = NULL;
    FT_TRY(ft_model_config_validate(c, err));
    ft_model_params pp = p ? *p : ft_model_default_params();
    if (pp.max_batch <= 0 || pp.max_seq <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "model params: max_batch and max_seq must be positive");
    if (pp.max_batch * pp.max_seq > ((int64_t)1 << 31))
        return FT_ERR(err, FT_ERR_INVALID, "model params: max_batch * max_seq is too large");
    ft_model *m = ft_calloc(1, sizeof *m);
    if (!m)
        return FT_ERR(err, FT_ERR_NOMEM, "model: out of memory");
    m->cfg = *c;
    m->p = pp;
    m->C = c->hidden_size;
    m->F = c->intermediate_size;
    m->NH = c->num_attention_heads;
    m->KVH = c->num_key_value_heads;
    m->HD = c->head_dim;
    m->Q = m->NH * m->HD;
    m->KV = m->KVH * m->HD;
    m->QKV = m->Q + 2 * m->KV;
    m->V = c->vocab_size;
    m->L = c->num_hidden_layers;
    m->N = pp.max_batch * pp.max_seq;
    const char *prof = getenv("FTUNE_PROFILE");
    m->profile = prof && *prof && strcmp(prof, "0") != 0;
    m->profile_cpu = prof && !strcmp(prof, "cpu");
    if (pp.threads > 0)
        ft_tensor_set_threads(pp.threads);
    ft_status s = layout(m, err);
    if (s == FT_OK)
        s = alloc_acts(m, err);
    if (s != FT_OK) {
        ft_model_free(m);
        return s;
    }
    *out = m;
    return FT_OK;
}

void ft_model_free(ft_model *m) {
    if (!m)
        return;
    if (m->profile) {
        static const char *const names[PROF_COUNT] = {"embedding", "rmsnorm", "matmul", "rope",
                                                      "attention", "swiglu", "head+loss", "copies"};
        double total = 0;
        for (int i = 0; i < PROF_COUNT; i++)
            total += m->prof[i];
        for (int i = 0; i < PROF_COUNT; i++)
            fprintf(stderr, "profile %-10s %8.3f s %5.1f%%\n", names[i], m->prof[i], 100 * m->prof[i] / total);
    }
    ft_arena_deinit(&m->warena);
    ft_arena_deinit(&m->garena);
    ft_arena_deinit(&m->aarena);
    ft_free(m->specs);
    ft_free(m->params);
    ft_free(m->w);
    ft_free(m->g);
    ft_free(m->acts);
    ft_free(m);
}

const ft_model_config *ft_model_get_config(const ft_model *m) { return &m->cfg; }

/* ---------------------------------------------------------------- initialisation */

ft_status ft_model_new_random(const ft_model_config *c, uint64_t seed, const ft_model_params *p, ft_model **out,
                              ft_err *err) {
    FT_TRY(model_create(c, p, out, err));
    ft_model *m = *out;
    float std = (float)c->initializer_range;
    /* Each tensor is cut into fixed 64Ki-element pieces with their own generator, seeded from
     * (seed, tensor, piece): the result is the same whatever the thread count. */
    enum { PIECE = 1 << 16 };
    for (size_t i = 0; i < m->n_params; i++) {
        ft_param *t = &m->params[i];
        if (t->ndim == 1) {
            for (int64_t k = 0; k < t->numel; k++)
                t->data[k] = 1.0f;
            continue;
        }
        int64_t pieces = (t->numel + PIECE - 1) / PIECE;
#pragma omp parallel for schedule(dynamic)
        for (int64_t pc = 0; pc < pieces; pc++) {
            ft_rng r;
            ft_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xD1B54A32D192ED03ull + (uint64_t)pc);
            int64_t end = (pc + 1) * PIECE < t->numel ? (pc + 1) * PIECE : t->numel;
            for (int64_t k = pc * PIECE; k < end; k++)
                t->data[k] = (float)ft_rng_normal(&r) * std;
        }
    }
    return FT_OK;
}

/* ---------------------------------------------------------------- load and save */

ft_status ft_model_load(const char *dir, const ft_model_params *p, ft_model **out, ft_err *err) {
    *out = NULL;
    char *cfg_path = ft_path_join(dir, "config.json");
    if (!cfg_path)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_model_config c;
    ft_status s = ft_model_config_load(cfg_path, &c, err);
    ft_free(cfg_path);
    FT_TRY(s);
    ft_st_reader *r = NULL;
    FT_TRY(ft_st_open(dir, &r, err));
    ft_model *m = NULL;
    s = model_create(&c, p, &m, err);
    for (size_t i = 0; s == FT_OK && i < m->n_params; i++) {
        ft_param *t = &m->params[i];
        const ft_st_tensor *st;
        s = ft_st_get(r, t->name, t->ndim, t->shape, &st, err);
        if (s == FT_OK)
            s = ft_st_read_f32(st, t->data, t->numel, err);
    }
    ft_st_close(r);
    if (s != FT_OK) {
        ft_err_prefix(err, "loading model %s", dir);
        ft_model_free(m);
        return s;
    }
    *out = m;
    return FT_OK;
}

ft_status ft_model_save_weights(ft_model *m, const char *path, bool bf16, ft_err *err) {
    ft_st_writer *w = NULL;
    FT_TRY(ft_st_writer_new(path, NULL, &w, err));
    ft_status s = FT_OK;
    ft_st_dtype dt = bf16 ? FT_ST_DTYPE_BF16 : FT_ST_DTYPE_F32;
    for (size_t i = 0; s == FT_OK && i < m->n_params; i++)
        s = ft_st_writer_add(w, m->params[i].name, dt, m->params[i].ndim, m->params[i].shape, err);
    for (size_t i = 0; s == FT_OK && i < m->n_params; i++)
        s = ft_st_writer_write_f32(w, m->params[i].name, m->params[i].data, m->params[i].numel, err);
    if (s == FT_OK)
        s = ft_st_writer_finish(w, err);
    ft_st_writer_free(w);
    return s;
}

/* ---------------------------------------------------------------- parameters and gradients */

size_t ft_model_n_params(const ft_model *m) { return m->n_params; }

ft_param *ft_model_param(ft_model *m, size_t i) { return i < m->n_params ? &m->params[i] : NULL; }

ft_param *ft_model_find_param(ft_model *m, const char *name) {
    for (size_t i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name))
            return &m->params[i];
    return NULL;
}

void ft_model_zero_grad(ft_model *m) {
    if (!m->p.training)
        return;
    float *g = m->params[0].grad;
    size_t n = m->garena.used / sizeof(float);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < n; k += 16384)
        memset(g + k, 0, (n - k < 16384 ? n - k : 16384) * sizeof(float));
}

double ft_model_grad_norm(ft_model *m) {
    if (!m->p.training)
        return 0.0;
    const float *g = m->params[0].grad;
    int64_t n = 0;
    for (size_t i = 0; i < m->n_params; i++)
        n += m->params[i].numel;
    double ss = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : ss)
    for (int64_t k = 0; k < n; k++)
        ss += (double)g[k] * g[k];
    return sqrt(ss);
}

void ft_model_memory(const ft_model *m, size_t *params, size_t *grads, size_t *acts) {
    if (params)
        *params = m->warena.peak;
    if (grads)
        *grads = m->garena.peak;
    if (acts)
        *acts = m->aarena.peak;
}

ft_status ft_model_check_batch_(const ft_model *m, const ft_batch *b, ft_err *err) {
    if (b->B <= 0 || b->T <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "batch: B and T must be positive (got %lld x %lld)", (long long)b->B,
                      (long long)b->T);
    if (b->T > m->p.max_seq || b->B * b->T > m->N)
        return FT_ERR(err, FT_ERR_RANGE, "batch %lld x %lld exceeds the model's %lld x %lld", (long long)b->B,
                      (long long)b->T, (long long)m->p.max_batch, (long long)m->p.max_seq);
    int64_t N = b->B * b->T;
    for (int64_t n = 0; n < N; n++) {
        int64_t bb = n / b->T, t = n % b->T;
        if (b->input_ids[n] < 0 || b->input_ids[n] >= m->V)
            return FT_ERR(err, FT_ERR_INVALID, "input_ids[%lld][%lld] = %d is outside the vocabulary (%lld)",
                          (long long)bb, (long long)t, b->input_ids[n], (long long)m->V);
        if (b->targets && b->targets[n] != -100 && (b->targets[n] < 0 || b->targets[n] >= m->V))
            return FT_ERR(err, FT_ERR_INVALID, "targets[%lld][%lld] = %d is neither -100 nor a token id (< %lld)",
                          (long long)bb, (long long)t, b->targets[n], (long long)m->V);
        if (b->position_ids && b->position_ids[n] < 0)
            return FT_ERR(err, FT_ERR_INVALID, "position_ids[%lld][%lld] = %d is negative", (long long)bb,
                          (long long)t, b->position_ids[n]);
    }
    return FT_OK;
}
