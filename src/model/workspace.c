/* model/workspace.c: workspaces, the activations and scratch of forward/backward passes over
 * batches of up to (max_batch, max_seq) rows, created by the caller for a model (ftune/model.h).
 * One function lays the buffers out; run without memory it counts, so ft_workspace_bytes is
 * exactly what ft_workspace_new allocates (a memory planner's activation term). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

ft_workspace_params ft_workspace_default_params(void) {
    return (ft_workspace_params){.max_batch = 1, .max_seq = 512, .training = false, .checkpointing = false,
                                 .dtype = FT_DTYPE_FP32, .threads = 0};
}

/* A bump allocator over `base` (NULL: only count). 64-byte aligned like ft_arena_alloc. */
typedef struct bump {
    uint8_t *base;
    size_t used;
} bump;

static void *take(bump *a, size_t bytes) {
    size_t start = (a->used + 63) & ~(size_t)63;
    a->used = start + bytes;
    return a->base ? a->base + start : NULL;
}

/* The sizes a layout needs from the model (so that sizing works from a config alone). */
typedef struct dims {
    int64_t C, F, Q, KV, QKV, V, L, NH, HD, E, K;
} dims;

static dims dims_of(const ft_model_config *c) {
    dims d = {.C = c->hidden_size,
              .F = c->intermediate_size,
              .NH = c->num_attention_heads,
              .HD = c->head_dim,
              .V = c->vocab_size,
              .L = c->num_hidden_layers,
              .E = c->num_local_experts,
              .K = c->num_local_experts > 0 ? c->num_experts_per_tok : 1};
    d.Q = d.NH * d.HD;
    d.KV = c->num_key_value_heads * d.HD;
    d.QKV = d.Q + 2 * d.KV;
    return d;
}

static int64_t threads_of(const ft_workspace_params *p) {
    return p->threads > 0 ? p->threads : omp_get_max_threads();
}

/* Rows of logits per LM-head chunk: about 64 MiB of them. */
static int64_t chunk_of(int64_t N, int64_t V) {
    int64_t chunk = (int64_t)((64u << 20) / ((size_t)V * sizeof(float)));
    return chunk < 16 ? 16 : chunk > N ? N : chunk;
}

/* Lay out every buffer of a workspace (ws->acts must have L entries, or ws be a counting dummy
 * whose pointers stay NULL). Returns the bytes used. */
static size_t lay_out(ft_workspace *ws, const ft_model_config *c, const ft_workspace_params *p, bump *a) {
    const dims d = dims_of(c);
    const int64_t N = p->max_batch * p->max_seq, C = d.C, F = d.F, Q = d.Q, QKV = d.QKV, L = d.L, E = d.E;
    const int64_t NK = N * d.K; /* rows of the MLP's gate/up: N, or N K grouped by expert */
    const bool tr = p->training, ck = tr && p->checkpointing;
    const int64_t threads = threads_of(p), chunk = chunk_of(N, d.V);
    const int64_t NS = N * (int64_t)model_norm_stats(c); /* norm statistics: rstd (and LayerNorm's mean) */
    const bool clip = tr && ft_model_config_is_dbrx(c) && c->clip_qkv > 0;
    ft_attn_shape as = {.B = p->max_batch, .Tq = p->max_seq, .Tk = p->max_seq, .NH = d.NH,
                        .KVH = c->num_key_value_heads, .HD = d.HD, .threads = threads};
    size_t scratch = ft_tensor_attention_scratch(&as);
#define GET(ptr, count) ((ptr) = take(a, (size_t)(count) * sizeof *(ptr)))
    /* Full activation sets: one per layer in fp32 training without checkpointing, else one shared.
     * bf16 training without checkpointing: one shared fp32 set, and per layer its own residual
     * stream (x, xmid), norm statistics, attention output and log-sum-exp in fp32 and the saved
     * GEMM inputs (xn1, qkv, xn2, gu, h) packed as bf16 (internal.h). */
    const bool bf = p->dtype == FT_DTYPE_BF16, packed = bf && tr && !ck;
    int64_t sets = tr && !ck && !packed ? L : 1;
    for (int64_t l = 0; l < sets; l++) {
        layer_acts *s = &ws->acts[l];
        GET(s->x, N * C);
        GET(s->xn1, N * C);
        GET(s->rstd1, NS);
        GET(s->qkv, N * QKV);
        if (clip)
            GET(s->qkv_pass, N * QKV);
        GET(s->att, N * Q);
        GET(s->lse, N * d.NH);
        GET(s->xmid, N * C);
        GET(s->xn2, N * C);
        GET(s->rstd2, NS);
        GET(s->gu, NK * 2 * F);
        if (E > 0) {
            GET(s->probs, N * E);
            GET(s->sel, N * d.K);
            GET(s->selw, N * d.K);
            GET(s->rowof, N * d.K);
            GET(s->tok, NK);
            GET(s->offs, E + 1);
        }
    }
    for (int64_t l = sets; l < L; l++) {
        ws->acts[l] = ws->acts[0];
        if (ck) /* each layer's own input, the checkpoint */
            GET(ws->acts[l].x, N * C);
        if (packed) {
            layer_acts *s = &ws->acts[l];
            GET(s->x, N * C);
            GET(s->rstd1, NS);
            GET(s->att, N * Q);
            GET(s->lse, N * d.NH);
            GET(s->xmid, N * C);
            GET(s->rstd2, NS);
        }
    }
    for (int64_t l = 0; l < L; l++)
        ws->acts[l].saved = packed ? take(a, (size_t)(N * (2 * C + QKV + 3 * F)) * sizeof(uint16_t)) : NULL;
    /* h: shared scratch (bf16 training keeps it in `saved`) */
    float *h = NULL;
    GET(h, NK * F);
    for (int64_t l = 0; l < L; l++)
        ws->acts[l].h = h;
    if (bf) {
        GET(ws->wbuf, QKV * C + C * Q + 3 * F * C);
        GET(ws->head16, d.V * C);
        GET(ws->abuf, N * Q);
        if (tr)
            GET(ws->gbuf, N * C);
    }
    GET(ws->xL, N * C);
    GET(ws->xf, N * C);
    GET(ws->rstdf, NS);
    GET(ws->cos_t, N * (d.HD / 2));
    GET(ws->sin_t, N * (d.HD / 2));
    GET(ws->pos, N);
    GET(ws->rows, N);
    GET(ws->tgt, N);
    GET(ws->xc, N * C);
    GET(ws->logits, chunk * d.V);
    GET(ws->attn_scratch, scratch);
    if (E > 0) {
        GET(ws->xe, NK * C);
        GET(ws->ye, NK * C);
        GET(ws->stats.count, E);
        GET(ws->stats.prob_sum, E);
        GET(ws->global_count, E);
        GET(ws->aux_scale, E);
        if (tr) {
            GET(ws->dh, NK * F);
            GET(ws->dz, N * E);
            GET(ws->dsel, N * d.K);
        }
    }
    if (tr) {
        GET(ws->dx, N * C);
        GET(ws->dtmp, N * C);
        GET(ws->dqkv, N * QKV);
        GET(ws->datt, N * Q);
        GET(ws->dxc, N * C);
        GET(ws->dxpart, (threads > 1 ? threads - 1 : 1) * chunk * C);
    }
#undef GET
    ws->N = N;
    ws->chunk = chunk;
    ws->attn_threads = threads;
    return a->used;
}

static ft_status check_params(const ft_workspace_params *p, ft_err *err) {
    if (p->max_batch <= 0 || p->max_seq <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "workspace: max_batch and max_seq must be positive (got %lld x %lld)",
                      (long long)p->max_batch, (long long)p->max_seq);
    if (p->max_batch * p->max_seq > ((int64_t)1 << 31))
        return FT_ERR(err, FT_ERR_INVALID, "workspace: max_batch * max_seq is too large");
    if (p->dtype != FT_DTYPE_FP32 && p->dtype != FT_DTYPE_BF16)
        return FT_ERR(err, FT_ERR_INVALID, "workspace: unknown dtype %d", (int)p->dtype);
    return FT_OK;
}

ft_status ft_workspace_check_dtype(const ft_model_config *c, ft_dtype dtype, bool training, ft_err *err) {
    if (training && ft_model_config_is_dbrx(c) && c->router_jitter_noise != 0)
        return FT_ERR(err, FT_ERR_UNSUPPORTED,
                      "the model's \"ffn_config.moe_jitter_eps\": %g is not supported for training: it multiplies "
                      "the router's input by fresh random noise every step, which makes a step irreproducible and "
                      "breaks exact resume; set it to null in config.json's ffn_config to fine-tune this model "
                      "(generation ignores it either way)",
                      c->router_jitter_noise);
    if (training && c->num_local_experts > 0 && c->router_jitter_noise != 0)
        return FT_ERR(err, FT_ERR_UNSUPPORTED,
                      "the model's \"router_jitter_noise\": %g is not supported for training: it multiplies the "
                      "router's input by fresh random noise every step, which makes a step irreproducible and breaks "
                      "exact resume; set it to 0.0 (Mixtral's default) in config.json to fine-tune this model",
                      c->router_jitter_noise);
    if (dtype == FT_DTYPE_BF16 && c->num_local_experts > 0)
        return FT_ERR(err, FT_ERR_UNSUPPORTED,
                      "bf16 mixed precision is not implemented for mixture-of-experts models (%s) yet; use fp32 "
                      "(--dtype fp32)",
                      c->architecture);
    return FT_OK;
}

size_t ft_workspace_bytes(const ft_model_config *c, const ft_workspace_params *p) {
    if (p->max_batch <= 0 || p->max_seq <= 0 || c->num_hidden_layers <= 0)
        return 0;
    ft_workspace dummy = {0};
    dummy.acts = ft_calloc((size_t)c->num_hidden_layers, sizeof *dummy.acts);
    if (!dummy.acts)
        return 0;
    bump a = {0};
    size_t n = lay_out(&dummy, c, p, &a);
    ft_free(dummy.acts);
    return (n + 64 + 4095) & ~(size_t)4095; /* the arena's alignment slack, whole pages as it maps them */
}

ft_status ft_workspace_new(const ft_model *m, const ft_workspace_params *p, ft_workspace **out, ft_err *err) {
    *out = NULL;
    ft_workspace_params pp = p ? *p : ft_workspace_default_params();
    FT_TRY(check_params(&pp, err));
    FT_TRY(ft_workspace_check_dtype(&m->cfg, pp.dtype, pp.training, err));
    if (pp.training && !m->p.training)
        return FT_ERR(err, FT_ERR_INVALID, "workspace: a training workspace needs a model created with training");
    if (pp.threads <= 0)
        pp.threads = omp_get_max_threads();
    pp.checkpointing = pp.training && pp.checkpointing;
    ft_workspace *ws = ft_calloc(1, sizeof *ws);
    if (!ws)
        return FT_ERR(err, FT_ERR_NOMEM, "workspace: out of memory");
    ws->m = m;
    ws->p = pp;
    ws->acts = ft_calloc((size_t)m->L, sizeof *ws->acts);
    size_t bytes = ft_workspace_bytes(&m->cfg, &pp);
    ft_status s = ws->acts && bytes ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "workspace: out of memory");
    if (s == FT_OK)
        s = ft_arena_init(&ws->arena, "activations", bytes, err);
    uint8_t *base = NULL;
    if (s == FT_OK && !(base = ft_arena_alloc(&ws->arena, bytes - 64, err)))
        s = FT_ERR_NOMEM;
    if (s != FT_OK) {
        ft_workspace_free(ws);
        return s;
    }
    bump a = {.base = base};
    size_t used = lay_out(ws, &m->cfg, &pp, &a);
    FT_ASSERT(used <= bytes - 64);
    const char *prof = getenv("FTUNE_PROFILE");
    ws->profile = prof && *prof && strcmp(prof, "0") != 0;
    ws->profile_cpu = prof && !strcmp(prof, "cpu");
    *out = ws;
    return FT_OK;
}

void ft_workspace_free(ft_workspace *ws) {
    if (!ws)
        return;
    if (ws->profile) {
        static const char *const names[PROF_COUNT] = {"embedding", "rmsnorm", "matmul", "rope",
                                                      "attention", "swiglu", "head+loss", "copies"};
        double total = 0;
        for (int i = 0; i < PROF_COUNT; i++)
            total += ws->prof[i];
        for (int i = 0; i < PROF_COUNT; i++)
            fprintf(stderr, "profile %-10s %8.3f s %5.1f%%\n", names[i], ws->prof[i],
                    total > 0 ? 100 * ws->prof[i] / total : 0.0);
    }
    ft_arena_deinit(&ws->arena);
    ft_free(ws->acts);
    ft_free(ws);
}

const ft_workspace_params *ft_workspace_get_params(const ft_workspace *ws) { return &ws->p; }

size_t ft_workspace_size(const ft_workspace *ws) { return ws->arena.cap; }
