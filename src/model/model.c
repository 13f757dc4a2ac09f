/* model/model.c: the Llama-family model object: parameter layout in HF order, the layers'
 * description as data, the two arenas (weights, gradients) sized once at creation, random
 * initialisation, loading and saving Hugging Face safetensors, and gradient utilities.
 * Activations live in workspaces (workspace.c); the numerics are in forward.c and decode.c. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/safetensors.h"
#include "internal.h"

ft_model_params ft_model_default_params(void) {
    return (ft_model_params){.training = false};
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
    m->layers = ft_calloc((size_t)m->L, sizeof *m->layers);
    m->inv_freq = ft_calloc((size_t)(m->HD / 2 + 1), sizeof *m->inv_freq);
    if (!m->specs || !m->params || !m->w || !m->g || !m->layers || !m->inv_freq)
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
    const bool dbrx = ft_model_config_is_dbrx(c);
    const int64_t FC = m->F * m->C;
    for (int64_t l = 0; l < m->L; l++) {
        layer_w *w = &m->w[l], *g = &m->g[l];
        ft_param *P = &m->params[i];
        size_t np;
        if (dbrx) { /* norm_1, Wqkv (fused already), out_proj, norm_2, router, w1, v1, w2 */
            np = 8;
            FT_ASSERT(strstr(P[0].name, "norm_1") && strstr(P[1].name, "Wqkv") && strstr(P[4].name, "router") &&
                      strstr(P[7].name, "mlp.w2"));
            *w = (layer_w){.ln1 = P[0].data, .wqkv = P[1].data, .wo = P[2].data, .ln2 = P[3].data, .wr = P[4].data,
                           .w1 = P[5].data, .w3 = P[6].data, .w2 = P[7].data, .estride = FC};
            *g = (layer_w){.ln1 = P[0].grad, .wqkv = P[1].grad, .wo = P[2].grad, .ln2 = P[3].grad, .wr = P[4].grad,
                           .w1 = P[5].grad, .w3 = P[6].grad, .w2 = P[7].grad, .estride = FC};
        } else {
            FT_ASSERT(strstr(P[0].name, "input_layernorm") && strstr(P[1].name, "q_proj") &&
                      strstr(P[4].name, "o_proj"));
            FT_ASSERT(P[2].data == P[1].data + P[1].numel && P[3].data == P[2].data + P[2].numel);
            np = 9;
            if (m->E > 0) { /* router, then per expert w1 | w3 | w2 back to back */
                np = 7 + 3 * (size_t)m->E;
                FT_ASSERT(strstr(P[6].name, "block_sparse_moe.gate") && strstr(P[7].name, "experts.0.w1"));
                for (int64_t e = 0; e < m->E; e++)
                    FT_ASSERT(P[7 + 3 * e].data == P[7].data + e * 3 * FC);
                *w = (layer_w){.ln1 = P[0].data, .wqkv = P[1].data, .wo = P[4].data, .ln2 = P[5].data,
                               .wr = P[6].data, .w1 = P[7].data, .w3 = P[8].data, .w2 = P[9].data, .estride = 3 * FC};
                *g = (layer_w){.ln1 = P[0].grad, .wqkv = P[1].grad, .wo = P[4].grad, .ln2 = P[5].grad,
                               .wr = P[6].grad, .w1 = P[7].grad, .w3 = P[8].grad, .w2 = P[9].grad, .estride = 3 * FC};
            } else {
                FT_ASSERT(strstr(P[6].name, "gate_proj") && strstr(P[8].name, "down_proj"));
                FT_ASSERT(P[7].data == P[6].data + P[6].numel);
                *w = (layer_w){.ln1 = P[0].data, .wqkv = P[1].data, .wo = P[4].data, .ln2 = P[5].data,
                               .wgu = P[6].data, .wd = P[8].data};
                *g = (layer_w){.ln1 = P[0].grad, .wqkv = P[1].grad, .wo = P[4].grad, .ln2 = P[5].grad,
                               .wgu = P[6].grad, .wd = P[8].grad};
            }
        }
        m->layers[l] = (ft_layer_desc){.norm = m->norm_kind,
                                       .n_heads = m->NH,
                                       .n_kv_heads = m->KVH,
                                       .head_dim = m->HD,
                                       .window = c->sliding_window,
                                       .mlp = m->E > 0 ? FT_MLP_MOE_SWIGLU : FT_MLP_SWIGLU,
                                       .ffn = m->F,
                                       .first_param = i,
                                       .n_params = np,
                                       .n_experts = m->E,
                                       .top_k = m->E > 0 ? c->num_experts_per_tok : 0,
                                       .qkv_clip = m->clip,
                                       .router_p = m->E > 0 ? m->router_p : 0,
                                       .experts_fused = m->E > 0 && m->w2_fc,
                                       .aux_of_probs = m->E > 0 && m->aux_of_probs};
        i += np;
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

static ft_status model_create(const ft_model_config *c, const ft_model_params *p, ft_model **out, ft_err *err) {
    *out = NULL;
    FT_TRY(ft_model_config_validate(c, err));
    ft_model_params pp = p ? *p : ft_model_default_params();
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
    m->E = c->num_local_experts;
    m->K = m->E > 0 ? c->num_experts_per_tok : 0;
    const bool dbrx = ft_model_config_is_dbrx(c);
    m->norm_kind = dbrx ? FT_NORM_LAYER : FT_NORM_RMS;
    m->clip = dbrx ? (float)c->clip_qkv : 0.0f;
    m->router_p = dbrx ? c->moe_normalize_expert_weights : 1.0; /* Mixtral: divided by the sum */
    m->w2_fc = dbrx;
    m->aux_of_probs = dbrx;
    m->be = ft_backend_cpu();
    ft_status s = layout(m, err);
    if (s != FT_OK) {
        ft_model_free(m);
        return s;
    }
    ft_rope_params rp = {.head_dim = m->HD,
                         .theta = c->rope_theta,
                         .llama3 = c->rope_scaling == FT_ROPE_LLAMA3,
                         .factor = c->rope_factor,
                         .low_freq_factor = c->rope_low_freq_factor,
                         .high_freq_factor = c->rope_high_freq_factor,
                         .original_max_position_embeddings = c->rope_original_max_position_embeddings};
    ft_tensor_rope_inv_freq(m->inv_freq, &rp);
    *out = m;
    return FT_OK;
}

void ft_model_free(ft_model *m) {
    if (!m)
        return;
    ft_arena_deinit(&m->warena);
    ft_arena_deinit(&m->garena);
    ft_free(m->specs);
    ft_free(m->params);
    ft_free(m->w);
    ft_free(m->g);
    ft_free(m->layers);
    ft_free(m->inv_freq);
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

/* transformers v5 can save Mixtral's experts fused per layer: model.layers.N.mlp.gate.weight
 * (E, C), mlp.experts.gate_up_proj (E, 2F, C) with expert e's gate (w1) rows before its up (w3)
 * rows, mlp.experts.down_proj (E, C, F) (w2). Read them into the per-expert layout. */
static bool moe_fused(const ft_model *m, const ft_st_reader *r) {
    return m->E > 0 && !m->w2_fc && !ft_st_find(r, "model.layers.0.block_sparse_moe.experts.0.w1.weight") &&
           ft_st_find(r, "model.layers.0.mlp.experts.gate_up_proj");
}

static ft_status load_fused_layer(ft_model *m, const ft_st_reader *r, int64_t l, float *tmp, ft_err *err) {
    const int64_t E = m->E, F = m->F, C = m->C;
    char name[128];
    const ft_st_tensor *st;
    snprintf(name, sizeof name, "model.layers.%lld.mlp.gate.weight", (long long)l);
    if (!ft_st_find(r, name))
        snprintf(name, sizeof name, "model.layers.%lld.block_sparse_moe.gate.weight", (long long)l);
    int64_t rs[2] = {E, C};
    FT_TRY(ft_st_get(r, name, 2, rs, &st, err));
    FT_TRY(ft_st_read_f32(st, m->w[l].wr, E * C, err));
    int64_t gu[3] = {E, 2 * F, C}, dn[3] = {E, C, F};
    snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.gate_up_proj", (long long)l);
    FT_TRY(ft_st_get(r, name, 3, gu, &st, err));
    FT_TRY(ft_st_read_f32(st, tmp, E * 2 * F * C, err));
    for (int64_t e = 0; e < E; e++) /* w1 | w3 back to back in Mixtral's layout */
        memcpy(m->w[l].w1 + e * m->w[l].estride, tmp + e * 2 * F * C, (size_t)(2 * F * C) * sizeof(float));
    snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.down_proj", (long long)l);
    FT_TRY(ft_st_get(r, name, 3, dn, &st, err));
    FT_TRY(ft_st_read_f32(st, tmp, E * C * F, err));
    for (int64_t e = 0; e < E; e++)
        memcpy(m->w[l].w2 + e * m->w[l].estride, tmp + e * C * F, (size_t)(C * F) * sizeof(float));
    return FT_OK;
}

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
    bool fused = s == FT_OK && moe_fused(m, r);
    float *tmp = NULL;
    if (fused && !(tmp = ft_malloc((size_t)(2 * m->E * m->F * m->C) * sizeof(float))))
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (int64_t l = 0; fused && s == FT_OK && l < m->L; l++)
        s = load_fused_layer(m, r, l, tmp, err);
    ft_free(tmp);
    for (size_t i = 0; s == FT_OK && i < m->n_params; i++) {
        ft_param *t = &m->params[i];
        const ft_st_tensor *st;
        if (fused && strstr(t->name, ".block_sparse_moe."))
            continue; /* read above */
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

ft_status ft_model_set_inference_dtype(ft_model *m, ft_dtype d, ft_err *err) {
    if (d != FT_DTYPE_FP32 && d != FT_DTYPE_BF16)
        return FT_ERR(err, FT_ERR_INVALID, "inference dtype: unknown dtype %d", (int)d);
    if (m->p.training)
        return FT_ERR(err, FT_ERR_INVALID, "inference dtype: a training model keeps fp32 master weights; choose the "
                                           "dtype of its workspaces instead");
    if (d == FT_DTYPE_BF16)
        FT_TRY(ft_workspace_check_dtype(&m->cfg, d, false, err)); /* not for MoE layers yet */
    if (d == FT_DTYPE_BF16)
        for (size_t i = 0; i < m->n_params; i++)
            m->be->round_bf16(m->params[i].data, m->params[i].data, m->params[i].numel);
    m->infer_dtype = d;
    return FT_OK;
}

ft_dtype ft_model_inference_dtype(const ft_model *m) { return m->infer_dtype; }

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

int64_t ft_model_n_elements(const ft_model *m) {
    int64_t n = 0;
    for (size_t i = 0; i < m->n_params; i++)
        n += m->params[i].numel;
    return n;
}

/* One chunk's sum of squares, in 8 lanes combined in a fixed order: the same bits whichever thread
 * or process sums it, and the compiler may still vectorise the lanes. */
static double chunk_sumsq(const float *g, int64_t n) {
    double lane[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            lane[j] += (double)g[i + j] * g[i + j];
    for (int j = 0; i < n; i++, j++)
        lane[j] += (double)g[i] * g[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

void ft_model_grad_sumsq_chunks(ft_model *m, int64_t c0, int64_t c1, double *out) {
    const int64_t n = ft_model_n_elements(m);
    const float *g = m->p.training ? m->params[0].grad : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t c = c0; c < c1; c++) {
        int64_t lo = c * FT_GRAD_CHUNK, hi = lo + FT_GRAD_CHUNK < n ? lo + FT_GRAD_CHUNK : n;
        out[c - c0] = g && hi > lo ? chunk_sumsq(g + lo, hi - lo) : 0.0;
    }
}

double ft_model_grad_norm(ft_model *m) {
    if (!m->p.training)
        return 0.0;
    /* Fixed chunks summed in chunk order: the norm does not depend on the thread count, nor on how
     * many processes share the chunks in data-parallel training (train/dp.c). */
    const int64_t nc = (ft_model_n_elements(m) + FT_GRAD_CHUNK - 1) / FT_GRAD_CHUNK;
    double part[256], ss = 0.0;
    for (int64_t c0 = 0; c0 < nc; c0 += 256) {
        int64_t c1 = c0 + 256 < nc ? c0 + 256 : nc;
        ft_model_grad_sumsq_chunks(m, c0, c1, part);
        for (int64_t c = c0; c < c1; c++)
            ss += part[c - c0];
    }
    return sqrt(ss);
}

void ft_model_memory(const ft_model *m, size_t *params, size_t *grads) {
    if (params)
        *params = m->warena.peak;
    if (grads)
        *grads = m->garena.peak;
}

void ft_model_state_bytes(const ft_model_config *c, bool training, size_t *params, size_t *grads) {
    /* As layout() sizes the arenas: all tensors back to back, plus the arena's slack. */
    size_t n = 0, cnt = ft_model_config_tensors(c, NULL, 0);
    ft_tensor_spec *specs = ft_calloc(cnt, sizeof *specs);
    if (specs) {
        ft_model_config_tensors(c, specs, cnt);
        for (size_t i = 0; i < cnt; i++)
            n += (size_t)ft_tensor_spec_numel(&specs[i]);
    }
    ft_free(specs);
    size_t bytes = n * sizeof(float) + 64;
    if (params)
        *params = bytes;
    if (grads)
        *grads = training ? bytes : 0;
}

const ft_layer_desc *ft_model_layer(const ft_model *m, int64_t layer) {
    return layer >= 0 && layer < m->L ? &m->layers[layer] : NULL;
}

const ft_backend *ft_model_backend(const ft_model *m) { return m->be; }

ft_status model_check_batch(const ft_model *m, const ft_workspace *ws, const ft_batch *b, ft_err *err) {
    if (ws->m != m)
        return FT_ERR(err, FT_ERR_INVALID, "the workspace belongs to another model");
    if (b->B <= 0 || b->T <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "batch: B and T must be positive (got %lld x %lld)", (long long)b->B,
                      (long long)b->T);
    if (b->T > ws->p.max_seq || b->B * b->T > ws->N)
        return FT_ERR(err, FT_ERR_RANGE, "batch %lld x %lld exceeds the workspace's %lld x %lld", (long long)b->B,
                      (long long)b->T, (long long)ws->p.max_batch, (long long)ws->p.max_seq);
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
