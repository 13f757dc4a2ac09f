/* model/forward.c: the Llama decoder's layer body and the forward and backward passes over a
 * packed batch, fp32, through the model's kernel table.
 *
 *   x = embed(ids)
 *   per layer:  x = x + o_proj(attn(rope(q), rope(k), v))  with q|k|v = qkv_proj(rmsnorm1(x))
 *               x = x + down(silu(gate) * up)              with gate|up = gu_proj(rmsnorm2(x))
 *   logits = lm_head(rmsnorm(x));  loss = sum of cross-entropy over trainable targets
 *
 * model_layer_forward is the one layer body: training's forward, the backward's recompute under
 * activation checkpointing and KV-cache decoding (decode.c) all run it. The backward walks the
 * same steps in reverse, reading what the forward kept in the layer's activation set (see
 * internal.h) and recomputing the cheap SwiGLU output. Weight gradients accumulate through
 * sgemm's beta = 1. The LM head and the cross-entropy run on the trainable rows only, in chunks
 * of `ws->chunk` rows, so the (B*T, V) logits never exist in training; the softmax gradient is
 * formed in place of each chunk's logits. */
#include <math.h>
#include <omp.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* Wall time, or with FTUNE_PROFILE=cpu the process's CPU time (steadier on a shared machine). */
static double prof_now(bool cpu) {
    if (cpu) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    }
    return ft_time_now();
}

/* FTUNE_PROFILE=1: P(family, call) adds the call's time to prof[family] (prof may be NULL). */
#define P(fam, call)                                                                                                   \
    do {                                                                                                               \
        double t0_ = prof ? prof_now(prof_cpu) : 0;                                                                    \
        call;                                                                                                          \
        if (prof)                                                                                                      \
            prof[fam] += prof_now(prof_cpu) - t0_;                                                                     \
    } while (0)

static ft_attn_shape attn_shape(const ft_model *m, const ft_workspace *ws, int64_t B, int64_t T) {
    return (ft_attn_shape){.B = B,
                           .Tq = T,
                           .Tk = T,
                           .NH = m->NH,
                           .KVH = m->KVH,
                           .HD = m->HD,
                           .q_offset = 0,
                           .window = m->cfg.sliding_window,
                           .q_stride = m->QKV,
                           .k_stride = m->QKV,
                           .v_stride = m->QKV,
                           .o_stride = m->Q,
                           .threads = ws->attn_threads};
}

/* ---------------------------------------------------------------- products
 * bf16 runs every product on the backend's bf16 GEMM (operands rounded by the callers below),
 * fp32 on sgemm; linear layers in PyTorch's nn.Linear forms. */

static void mm(const ft_backend *be, bool bf, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    (bf ? be->gemm_bf16 : be->sgemm)(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* y (N, out) (+)= x (N, in) W^T (beta 0 or 1). W16: the bf16 bits of W (bf16 training); without
 * them bf16 reads W's fp32 storage (decoding's weights are rounded in place). */
static void lin_fwd(const ft_backend *be, bool bf, const uint16_t *W16, float *y, const float *x, const float *W,
                    int64_t N, int64_t in, int64_t out, float beta) {
    if (W16)
        be->gemm_bf16_w16(false, true, N, out, in, 1.0f, x, in, W16, in, beta, y, out);
    else if (!bf && beta == 0.0f)
        be->linear_fwd(y, x, W, N, in, out);
    else
        mm(be, bf, false, true, N, out, in, 1.0f, x, in, W, in, beta, y, out);
}

/* dW (out, in) (+)= dy^T x; dx (N, in) (+)= dy W; as ft_tensor_linear_bwd */
static void lin_bwd(const ft_backend *be, bool bf, const uint16_t *W16, float *dx, float *dW, const float *dy,
                    const float *x, const float *W, int64_t N, int64_t in, int64_t out, bool dx_accumulate,
                    bool dW_zero) {
    if (!bf) {
        be->linear_bwd(dx, dW, dy, x, W, N, in, out, dx_accumulate, dW_zero);
        return;
    }
    if (dW)
        be->gemm_bf16(true, false, out, in, N, 1.0f, dy, out, x, in, dW_zero ? 0.0f : 1.0f, dW, in);
    if (dx && W16)
        be->gemm_bf16_w16(false, false, N, in, out, 1.0f, dy, out, W16, in, dx_accumulate ? 1.0f : 0.0f, dx, in);
    else if (dx)
        be->gemm_bf16(false, false, N, in, out, 1.0f, dy, out, W, in, dx_accumulate ? 1.0f : 0.0f, dx, in);
}

/* ---------------------------------------------------------------- norms */

size_t model_norm_stats(const ft_model_config *c) { return ft_model_config_is_dbrx(c) ? 2 : 1; }

void model_norm_fwd(const ft_model *m, float *out, float *stats, const float *x, const float *w, int64_t N) {
    const float eps = (float)m->cfg.rms_norm_eps;
    if (m->norm_kind == FT_NORM_LAYER)
        m->be->layernorm_fwd(out, stats ? stats + N : NULL, stats, x, w, N, m->C, eps);
    else
        m->be->rmsnorm_fwd(out, stats, x, w, N, m->C, eps);
}

void model_norm_bwd(const ft_model *m, float *dx, float *dw, const float *dout, const float *x, const float *w,
                    const float *stats, int64_t N) {
    if (m->norm_kind == FT_NORM_LAYER)
        m->be->layernorm_bwd(dx, dw, dout, x, w, stats + N, stats, N, m->C);
    else
        m->be->rmsnorm_bwd(dx, dw, dout, x, w, stats, N, m->C);
}

/* DBRX's clip_qkv: q|k|v (N, QKV) clamped to [-clip, clip] in place; pass (when kept) records
 * where the value was inside, the only places torch.clamp's gradient flows (bounds included). */
static void clamp_qkv(float *qkv, uint8_t *pass, int64_t n, float clip) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float v = qkv[i];
        if (pass)
            pass[i] = v >= -clip && v <= clip;
        qkv[i] = v < -clip ? -clip : v > clip ? clip : v;
    }
}

/* ---------------------------------------------------------------- the layer body */

/* Batched decoding's attention: each sequence over its own cache (after this step's append).
 * With at most MODEL_SEG_ROWS rows each, the sequences run side by side, one per thread with
 * its own scratch; otherwise one after another, each on all threads. */
static void seg_attention(const ft_model *m, int64_t layer, layer_acts *A, const layer_run *r, int64_t most) {
    const int64_t Q = m->Q, QKV = m->QKV;
    const int nt = r->n_segs > 1 && most <= MODEL_SEG_ROWS && r->as->threads > 1 ? (int)r->as->threads : 1;
    if (nt == 1) { /* not inside a parallel region, even an inactive one: a nested region would start threads */
        for (int64_t s = 0; s < r->n_segs; s++) {
            const layer_seg *g = &r->segs[s];
            ft_attn_shape as = *r->as;
            as.B = 1, as.Tq = g->n, as.Tk = g->at + g->n, as.q_offset = g->at;
            m->be->attention_fwd(&as, A->att + g->row0 * Q, NULL, A->qkv + g->row0 * QKV,
                                 g->k + layer * g->layer_stride, g->v + layer * g->layer_stride, NULL, r->attn_scratch);
        }
        return;
    }
    const size_t per = model_seg_scratch(&m->cfg, r->as->Tk);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t s = 0; s < r->n_segs; s++) {
        const layer_seg *g = &r->segs[s];
        ft_attn_shape as = *r->as;
        as.B = 1, as.Tq = g->n, as.Tk = g->at + g->n, as.q_offset = g->at, as.threads = 1;
        m->be->attention_fwd(&as, A->att + g->row0 * Q, NULL, A->qkv + g->row0 * QKV, g->k + layer * g->layer_stride,
                             g->v + layer * g->layer_stride, NULL, r->attn_scratch + (size_t)omp_get_thread_num() * per);
    }
}

void model_layer_forward(const ft_model *m, int64_t layer, layer_acts *A, float *next, int64_t N, const layer_run *r) {
    const ft_backend *be = m->be;
    const ft_layer_desc *d = &m->layers[layer];
    const layer_w *W = r->W;
    const layer_w16 *W16 = r->W16;
    const int64_t C = m->C, F = d->ffn, Q = m->Q, KV = m->KV, QKV = m->QKV;
    const bool bf = r->bf16;
    double *prof = r->prof;
    const bool prof_cpu = r->prof_cpu;
    FT_ASSERT(d->mlp == FT_MLP_SWIGLU || (d->mlp == FT_MLP_MOE_SWIGLU && !bf));
    /* Attention block. bf16: the norm's output is only a GEMM operand, so it is rounded in place
     * (and kept so for the weight gradient); q, k after RoPE and v are saved rounded, and
     * attention reads them so. */
    P(PROF_NORM, model_norm_fwd(m, A->xn1, A->rstd1, A->x, W->ln1, N));
    if (bf)
        P(PROF_MISC, be->round_bf16(A->xn1, A->xn1, N * C));
    /* (N, Q + 2 KV) */
    P(PROF_MATMUL, lin_fwd(be, bf, W16 ? W16->wqkv : NULL, A->qkv, A->xn1, W->wqkv, N, C, QKV, 0.0f));
    if (d->qkv_clip > 0) /* DBRX: the fused projection clamped before the split and RoPE */
        P(PROF_MISC, clamp_qkv(A->qkv, A->qkv_pass, N * QKV, (float)d->qkv_clip));
    /* q's and k's heads are adjacent in a qkv row: one RoPE pass over NH + KVH heads */
    P(PROF_ROPE, be->rope_fwd(A->qkv, QKV, r->cos_t, r->sin_t, N, d->n_heads + d->n_kv_heads, d->head_dim));
    if (bf)
        P(PROF_MISC, be->round_bf16(A->qkv, A->qkv, N * QKV));
    const float *k = A->qkv + Q, *v = A->qkv + Q + KV;
    const layer_kv *kv = r->kv;
    if (kv) { /* decoding: append this chunk's keys and values to the cache, attend over it */
        for (int64_t i = 0; i < N; i++) {
            memcpy(kv->k + (kv->at + i) * kv->stride, A->qkv + i * QKV + Q, (size_t)KV * sizeof(float));
            memcpy(kv->v + (kv->at + i) * kv->stride, A->qkv + i * QKV + Q + KV, (size_t)KV * sizeof(float));
        }
        k = kv->k, v = kv->v;
    }
    if (r->segs) { /* batched decoding: each sequence appends to and attends over its own cache */
        int64_t most = 0;
        for (int64_t s = 0; s < r->n_segs; s++) {
            const layer_seg *g = &r->segs[s];
            float *ck = g->k + layer * g->layer_stride, *cv = g->v + layer * g->layer_stride;
            for (int64_t i = 0; i < g->n; i++) {
                const float *row = A->qkv + (g->row0 + i) * QKV;
                memcpy(ck + (g->at + i) * KV, row + Q, (size_t)KV * sizeof(float));
                memcpy(cv + (g->at + i) * KV, row + Q + KV, (size_t)KV * sizeof(float));
            }
            most = g->n > most ? g->n : most;
        }
        P(PROF_ATTN, seg_attention(m, layer, A, r, most));
    } else {
        P(PROF_ATTN, be->attention_fwd(r->as, A->att, A->lse, A->qkv, k, v, r->sample_ids, r->attn_scratch));
    }
    /* xmid (N, C) = x + att (N, Q) Wo^T. bf16: att stays fp32 (attention's backward reads it),
     * its rounded copy is the GEMM operand. */
    const float *att = A->att;
    if (bf) {
        P(PROF_MISC, be->round_bf16(r->abuf, A->att, N * Q));
        att = r->abuf;
    }
    if (A->xmid != A->x)
        P(PROF_MISC, memcpy(A->xmid, A->x, (size_t)(N * C) * sizeof(float)));
    P(PROF_MATMUL, lin_fwd(be, bf, W16 ? W16->wo : NULL, A->xmid, att, W->wo, N, Q, C, 1.0f));
    /* MLP block. */
    P(PROF_NORM, model_norm_fwd(m, A->xn2, A->rstd2, A->xmid, W->ln2, N));
    if (bf)
        P(PROF_MISC, be->round_bf16(A->xn2, A->xn2, N * C));
    if (d->mlp == FT_MLP_MOE_SWIGLU) { /* the sparse-MoE MLP (moe.c) */
        P(PROF_SWIGLU, model_moe_forward(m, W, A, next, N, r));
        return;
    }
    /* (N, 2F) */
    P(PROF_MATMUL, lin_fwd(be, bf, W16 ? W16->wgu : NULL, A->gu, A->xn2, W->wgu, N, C, 2 * F, 0.0f));
    if (!next && !bf)
        return; /* fp32 recompute: the backward forms h itself */
    /* h = silu(gate) * up from the unrounded gate and up; bf16 then keeps h rounded (down_proj's
     * operand and saved input) and gate | up rounded (SwiGLU's saved inputs). */
    P(PROF_SWIGLU, be->swiglu_fwd(A->h, A->gu, N, F));
    if (bf) {
        P(PROF_MISC, be->round_bf16(A->h, A->h, N * F));
        P(PROF_MISC, be->round_bf16(A->gu, A->gu, N * 2 * F));
    }
    if (!next)
        return;
    /* next (N, C) = xmid + h (N, F) Wd^T. Without training all layers share one set, so `next`
     * may be A->x, which is no longer needed here. */
    if (next != A->xmid)
        P(PROF_MISC, memcpy(next, A->xmid, (size_t)(N * C) * sizeof(float)));
    P(PROF_MATMUL, lin_fwd(be, bf, W16 ? W16->wd : NULL, next, A->h, W->wd, N, F, C, 1.0f));
}

/* bf16: the GEMM weights of layer l as bf16 bits in ws->wbuf, *w16 their views; false (nothing
 * done) for fp32. pack false: only the views (wbuf holds layer l already: the backward's first
 * layer is the forward's last). */
static bool layer_weights16(const ft_model *m, ft_workspace *ws, int64_t l, layer_w16 *w16, bool pack) {
    if (ws->p.dtype != FT_DTYPE_BF16)
        return false;
    const int64_t C = m->C, Q = m->Q, QKV = m->QKV, F = m->layers[l].ffn;
    uint16_t *p = ws->wbuf;
    const float *src[4] = {m->w[l].wqkv, m->w[l].wo, m->w[l].wgu, m->w[l].wd};
    const uint16_t **dst[4] = {&w16->wqkv, &w16->wo, &w16->wgu, &w16->wd};
    const int64_t n[4] = {QKV * C, C * Q, 2 * F * C, C * F};
    for (int i = 0; i < 4; i++) {
        if (pack)
            m->be->pack_bf16(p, src[i], n[i]);
        *dst[i] = p;
        p += n[i];
    }
    return true;
}

/* bf16 training: a layer's saved GEMM inputs to and from their bf16 store (internal.h). Exact,
 * as they hold bf16 values: packing keeps the upper 16 bits, unpacking restores them. */
static void saved_parts(const ft_model *m, int64_t l, layer_acts *A, int64_t N, float *part[5], int64_t n[5]) {
    const int64_t C = m->C, QKV = m->QKV, F = m->layers[l].ffn;
    float *p[5] = {A->xn1, A->qkv, A->xn2, A->gu, A->h};
    const int64_t k[5] = {N * C, N * QKV, N * C, N * 2 * F, N * F};
    for (int i = 0; i < 5; i++)
        part[i] = p[i], n[i] = k[i];
}

static void saved_pack(const ft_model *m, int64_t l, layer_acts *A, int64_t N) {
    float *part[5];
    int64_t n[5];
    saved_parts(m, l, A, N, part, n);
    uint16_t *dst = A->saved;
    for (int i = 0; i < 5; i++) {
        const uint32_t *src = (const uint32_t *)(void *)part[i];
#pragma omp parallel for simd schedule(dynamic, 65536)
        for (int64_t j = 0; j < n[i]; j++)
            dst[j] = (uint16_t)(src[j] >> 16);
        dst += n[i];
    }
}

static void saved_unpack(const ft_model *m, int64_t l, layer_acts *A, int64_t N) {
    float *part[5];
    int64_t n[5];
    saved_parts(m, l, A, N, part, n);
    const uint16_t *src = A->saved;
    for (int i = 0; i < 5; i++) {
        uint32_t *dst = (uint32_t *)(void *)part[i];
#pragma omp parallel for simd schedule(dynamic, 65536)
        for (int64_t j = 0; j < n[i]; j++)
            dst[j] = (uint32_t)src[j] << 16;
        src += n[i];
    }
}

static layer_run run_of(const ft_model *m, ft_workspace *ws, const layer_w *W, const layer_w16 *W16,
                        const ft_attn_shape *as, const ft_batch *b) {
    (void)m;
    return (layer_run){.W = W,
                       .W16 = ws->p.dtype == FT_DTYPE_BF16 ? W16 : NULL,
                       .bf16 = ws->p.dtype == FT_DTYPE_BF16,
                       .abuf = ws->abuf,
                       .as = as,
                       .sample_ids = b->sample_ids,
                       .cos_t = ws->cos_t,
                       .sin_t = ws->sin_t,
                       .attn_scratch = ws->attn_scratch,
                       .prof = ws->profile ? ws->prof : NULL,
                       .prof_cpu = ws->profile_cpu,
                       .xe = ws->xe,
                       .ye = ws->ye};
}

/* The load-balancing loss of the last forward (without its coefficient), from its own routing
 * counts or the whole batch's (ft_workspace_set_router_counts); with scale non-NULL also its
 * gradient with respect to a counted token's router probabilities, times coef (E). */
static double aux_loss(const ft_model *m, const ft_workspace *ws, double coef, float *scale) {
    const bool global = ws->global_tokens > 0;
    const double *cnt = global ? ws->global_count : ws->stats.count;
    const double M = global ? ws->global_tokens : ws->stats.tokens;
    double aux = 0;
    for (int64_t e = 0; e < m->E; e++) {
        double f = M > 0 ? (double)m->E * cnt[e] / (M * M) : 0.0;
        aux += f * ws->stats.prob_sum[e];
        if (scale)
            scale[e] = (float)(coef * f);
    }
    return aux;
}

/* ---------------------------------------------------------------- forward */

static void forward_layers(ft_model *m, ft_workspace *ws, const ft_batch *b) {
    const ft_backend *be = m->be;
    const int64_t B = b->B, T = b->T, N = B * T, C = m->C;
    double *prof = ws->profile ? ws->prof : NULL;
    const bool prof_cpu = ws->profile_cpu;
    for (int64_t n = 0; n < N; n++)
        ws->pos[n] = b->position_ids ? b->position_ids[n] : (int32_t)(n % T);
    P(PROF_ROPE, be->rope_table(ws->cos_t, ws->sin_t, ws->pos, m->inv_freq, N, m->HD / 2));
    ft_attn_shape as = attn_shape(m, ws, B, T);
    P(PROF_EMBED, be->embedding_fwd(ws->acts[0].x, b->input_ids, m->embed, N, C));
    layer_w16 W16;
    layer_run run = run_of(m, ws, NULL, &W16, &as, b);
    if (m->E > 0) { /* the routing statistics of this forward, for the load-balancing loss */
        memset(ws->stats.count, 0, (size_t)m->E * sizeof(double));
        memset(ws->stats.prob_sum, 0, (size_t)m->E * sizeof(double));
        ws->stats.tokens = 0;
        run.stats = &ws->stats;
    }
    for (int64_t l = 0; l < m->L; l++) {
        float *next = l + 1 < m->L ? ws->acts[l + 1].x : ws->xL;
        run.W = &m->w[l];
        P(PROF_MISC, layer_weights16(m, ws, l, &W16, true));
        model_layer_forward(m, l, &ws->acts[l], next, N, &run);
        if (ws->acts[l].saved && l + 1 < m->L) /* the last layer's stay in the shared set */
            P(PROF_MISC, saved_pack(m, l, &ws->acts[l], N));
    }
    ws->aux = m->E > 0 ? aux_loss(m, ws, 0, NULL) : 0.0;
    P(PROF_NORM, model_norm_fwd(m, ws->xf, ws->rstdf, ws->xL, m->norm, N));
    if (run.bf16) { /* the LM head's operands: xf (only ever a GEMM operand) and the head */
        P(PROF_MISC, be->round_bf16(ws->xf, ws->xf, N * C));
        P(PROF_MISC, be->pack_bf16(ws->head16, m->head, m->V * C));
    }
}

/* logits-like C (M, V) = A (M, C) head^T: the head's bf16 bits in bf16, its fp32 masters in fp32 */
static void head_fwd(const ft_model *m, const ft_workspace *ws, int64_t M, const float *A, float *out) {
    if (ws->p.dtype == FT_DTYPE_BF16)
        m->be->gemm_bf16_w16(false, true, M, m->V, m->C, 1.0f, A, m->C, ws->head16, m->C, 0.0f, out, m->V);
    else
        m->be->sgemm(false, true, M, m->V, m->C, 1.0f, A, m->C, m->head, m->C, 0.0f, out, m->V);
}

/* dx (nc, C) = dl (nc, Vs) head[v0 .. v0 + Vs) (Vs, C), dl's rows V apart */
static void head_bwd_dx(const ft_model *m, const ft_workspace *ws, int64_t nc, int64_t v0, int64_t Vs, const float *dl,
                        float *dx) {
    if (ws->p.dtype == FT_DTYPE_BF16)
        m->be->gemm_bf16_w16(false, false, nc, m->C, Vs, 1.0f, dl, m->V, ws->head16 + v0 * m->C, m->C, 0.0f, dx,
                             m->C);
    else
        m->be->sgemm(false, false, nc, m->C, Vs, 1.0f, dl, m->V, m->head + v0 * m->C, m->C, 0.0f, dx, m->C);
}

/* dx (nc, C) = dlogits (nc, V) head (V, C), the vocabulary split among the threads. Why: both
 * inputs are large and the output small, so splitting the output (as ft_tensor_sgemm does) would
 * have every thread pack all of one input again; split along V each packs only its share, and
 * adding the partial results (nc x C) is cheap. */
static void head_dx(ft_model *m, ft_workspace *ws, int64_t nc, float *dx) {
    const int64_t C = m->C, V = m->V;
    int nt = ft_tensor_threads();
    if (nt > ws->attn_threads)
        nt = (int)ws->attn_threads; /* the partial buffers were sized at creation */
    if (nt <= 1 || V < 4096) {
        head_bwd_dx(m, ws, nc, 0, V, ws->logits, dx);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t v0 = V * t / n, v1 = V * (t + 1) / n;
        float *dst = t == 0 ? dx : ws->dxpart + (size_t)(t - 1) * (size_t)(nc * C);
        head_bwd_dx(m, ws, nc, v0, v1 - v0, ws->logits + v0, dst);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t i = 0; i < nc * C; i++)
            for (int u = 1; u < n; u++)
                dx[i] += ws->dxpart[(size_t)(u - 1) * (size_t)(nc * C) + (size_t)i];
    }
}

/* LM head and cross-entropy over the trainable rows (compacted), chunk by chunk. With
 * grad_scale != 0 also dxc (trainable rows' d xf) and the head's weight gradient. */
static double head_loss(ft_model *m, ft_workspace *ws, const ft_batch *b, float grad_scale, int64_t *n_valid,
                        int64_t *n_correct) {
    const ft_backend *be = m->be;
    const int64_t N = b->B * b->T, C = m->C, V = m->V;
    const bool bf = ws->p.dtype == FT_DTYPE_BF16;
    int64_t nv = 0;
    if (b->targets)
        for (int64_t n = 0; n < N; n++)
            if (b->targets[n] != -100) {
                ws->rows[nv] = (int32_t)n;
                ws->tgt[nv++] = b->targets[n];
            }
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nv; k++)
        memcpy(ws->xc + k * C, ws->xf + (int64_t)ws->rows[k] * C, (size_t)C * sizeof(float));
    double loss = 0.0;
    for (int64_t k0 = 0; k0 < nv; k0 += ws->chunk) {
        int64_t nc = nv - k0 < ws->chunk ? nv - k0 : ws->chunk;
        const float *xc = ws->xc + k0 * C;
        /* logits (nc, V) = xc (nc, C) head^T */
        head_fwd(m, ws, nc, xc, ws->logits);
        int64_t right = 0;
        loss += be->cross_entropy(ws->logits, ws->tgt + k0, nc, V, grad_scale, NULL, n_correct ? &right : NULL);
        if (n_correct)
            *n_correct += right;
        if (grad_scale != 0.0f) {
            /* bf16: dlogits are only GEMM operands: rounded in place */
            if (bf)
                be->round_bf16(ws->logits, ws->logits, nc * V);
            /* dxc (nc, C) = dlogits (nc, V) head (V, C);  dhead (V, C) += dlogits^T xc */
            head_dx(m, ws, nc, ws->dxc + k0 * C);
            mm(be, bf, true, false, V, C, nc, 1.0f, ws->logits, V, xc, C, 1.0f, m->g_head, C);
        }
    }
    *n_valid = nv;
    return loss;
}

ft_status ft_model_eval(ft_model *m, ft_workspace *ws, const ft_batch *b, double *loss_sum, int64_t *n_trainable,
                        int64_t *n_correct, ft_err *err) {
    FT_TRY(model_check_batch(m, ws, b, err));
    forward_layers(m, ws, b);
    int64_t nv = 0, right = 0;
    double loss = head_loss(m, ws, b, 0.0f, &nv, &right);
    if (loss_sum)
        *loss_sum = loss;
    if (n_trainable)
        *n_trainable = nv;
    if (n_correct)
        *n_correct = right;
    return FT_OK;
}

ft_status ft_model_forward(ft_model *m, ft_workspace *ws, const ft_batch *b, float *logits, double *loss_sum,
                           int64_t *n_trainable, ft_err *err) {
    FT_TRY(model_check_batch(m, ws, b, err));
    forward_layers(m, ws, b);
    const int64_t N = b->B * b->T;
    double loss = 0.0;
    int64_t nv = 0;
    if (logits) {
        head_fwd(m, ws, N, ws->xf, logits);
        if (b->targets) {
            /* The kernel skips -100 rows; the logits stay untouched with grad_scale 0. */
            loss = m->be->cross_entropy(logits, b->targets, N, m->V, 0.0f, &nv, NULL);
        }
    } else {
        loss = head_loss(m, ws, b, 0.0f, &nv, NULL);
    }
    if (loss_sum)
        *loss_sum = loss;
    if (n_trainable)
        *n_trainable = nv;
    return FT_OK;
}

/* ---------------------------------------------------------------- backward */

ft_status ft_model_forward_backward(ft_model *m, ft_workspace *ws, const ft_batch *b, double denom, double *loss_sum,
                                    int64_t *n_trainable, ft_err *err) {
    if (!m->p.training)
        return FT_ERR(err, FT_ERR_INVALID, "forward_backward on a model created without training");
    if (!ws->p.training)
        return FT_ERR(err, FT_ERR_INVALID, "forward_backward on a workspace created without training");
    if (!(denom > 0))
        return FT_ERR(err, FT_ERR_INVALID, "forward_backward: the loss denominator must be positive");
    FT_TRY(model_check_batch(m, ws, b, err));
    const ft_backend *be = m->be;
    const int64_t B = b->B, T = b->T, N = B * T, C = m->C, F = m->F, Q = m->Q, KV = m->KV, QKV = m->QKV;
    double *prof = ws->profile ? ws->prof : NULL;
    const bool prof_cpu = ws->profile_cpu;
    forward_layers(m, ws, b);
    int64_t nv = 0;
    double loss = 0;
    P(PROF_HEAD, loss = head_loss(m, ws, b, (float)(1.0 / denom), &nv, NULL));
    if (loss_sum)
        *loss_sum = loss;
    if (n_trainable)
        *n_trainable = nv;

    /* d xf: the trainable rows' gradients scattered back, zeros elsewhere. */
    P(PROF_MISC, memset(ws->dtmp, 0, (size_t)(N * C) * sizeof(float)));
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nv; k++)
        memcpy(ws->dtmp + (int64_t)ws->rows[k] * C, ws->dxc + k * C, (size_t)C * sizeof(float));
    P(PROF_MISC, memset(ws->dx, 0, (size_t)(N * C) * sizeof(float)));
    P(PROF_NORM, model_norm_bwd(m, ws->dx, m->g_norm, ws->dtmp, ws->xL, m->norm, ws->rstdf, N));

    ft_attn_shape as = attn_shape(m, ws, B, T);
    layer_w16 W16;
    layer_run run = run_of(m, ws, NULL, &W16, &as, b);
    const bool bf = run.bf16;
    const double coef = ft_model_config_aux_coef(&m->cfg);
    if (m->E > 0)
        aux_loss(m, ws, coef, ws->aux_scale);
    for (int64_t l = m->L - 1; l >= 0; l--) {
        layer_acts *A = &ws->acts[l];
        const layer_w *G = &m->g[l], W = m->w[l];
        run.W = &m->w[l];
        /* the last layer's are still in wbuf from the forward just before */
        P(PROF_MISC, layer_weights16(m, ws, l, &W16, l < m->L - 1));
        const layer_w16 *w16 = run.W16;
        /* Checkpointing: this layer's activations again from its saved input, by the same body
         * and kernels as the forward, so everything below sees bitwise the same values. The last
         * layer's are still there from the forward. */
        if (ws->p.checkpointing && l < m->L - 1)
            model_layer_forward(m, l, A, NULL, N, &run);
        /* bf16: this layer's saved inputs back from their bf16 store (the last layer's are still
         * in the shared set) */
        if (A->saved && l < m->L - 1)
            P(PROF_MISC, saved_unpack(m, l, A, N));
        /* bf16: the incoming gradient of a linear layer is rounded as the operand of both its
         * backward products; the saved inputs are rounded already. */
        const float *dy = ws->dx, *att = A->att;
        if (bf) {
            P(PROF_MISC, be->round_bf16(ws->gbuf, ws->dx, N * C));
            P(PROF_MISC, be->round_bf16(ws->abuf, A->att, N * Q));
            dy = ws->gbuf, att = ws->abuf;
        }
        if (m->layers[l].mlp == FT_MLP_MOE_SWIGLU) {
            /* d xn2 into dtmp, the router's and experts' gradients (moe.c) */
            P(PROF_SWIGLU, model_moe_backward(m, &W, G, A, ws, dy, ws->dtmp, N, coef > 0 ? ws->aux_scale : NULL,
                                              b->sample_ids));
        } else {
            /* MLP: x_next = xmid + h Wd^T, dx holds d x_next. */
            /* h (N, F); bf16 kept it (rounded) from the forward */
            if (!bf)
                P(PROF_SWIGLU, be->swiglu_fwd(A->h, A->gu, N, F));
            /* dWd += dy^T h */
            P(PROF_MATMUL, lin_bwd(be, bf, NULL, NULL, G->wd, dy, A->h, W.wd, N, F, C, false, false));
            /* dh = dy Wd, into h's place */
            P(PROF_MATMUL, lin_bwd(be, bf, w16 ? w16->wd : NULL, A->h, NULL, dy, NULL, W.wd, N, F, C, false, false));
            /* d[gate|up], in place */
            P(PROF_SWIGLU, be->swiglu_bwd(A->gu, A->h, A->gu, N, F));
            if (bf)
                P(PROF_MISC, be->round_bf16(A->gu, A->gu, N * 2 * F));
            P(PROF_MATMUL, lin_bwd(be, bf, w16 ? w16->wgu : NULL, ws->dtmp, G->wgu, A->gu, A->xn2, W.wgu, N, C, 2 * F,
                                   false, false));
        }
        /* dx = d xmid */
        P(PROF_NORM, model_norm_bwd(m, ws->dx, G->ln2, ws->dtmp, A->xmid, W.ln2, A->rstd2, N));
        /* Attention: xmid = x + att Wo^T. */
        if (bf)
            P(PROF_MISC, be->round_bf16(ws->gbuf, ws->dx, N * C));
        P(PROF_MATMUL, lin_bwd(be, bf, w16 ? w16->wo : NULL, ws->datt, G->wo, dy, att, W.wo, N, Q, C, false, false));
        P(PROF_ATTN, be->attention_bwd(&as, ws->dqkv, ws->dqkv + Q, ws->dqkv + Q + KV, ws->datt, A->att, A->lse,
                                       A->qkv, A->qkv + Q, A->qkv + Q + KV, b->sample_ids, ws->attn_scratch));
        P(PROF_ROPE, be->rope_bwd(ws->dqkv, QKV, ws->cos_t, ws->sin_t, N, m->NH + m->KVH, m->HD));
        if (A->qkv_pass) { /* clip_qkv: no gradient where the clamp cut the value */
            const uint8_t *pass = A->qkv_pass;
            float *dq = ws->dqkv;
#pragma omp parallel for simd schedule(static)
            for (int64_t k = 0; k < N * QKV; k++)
                dq[k] = pass[k] ? dq[k] : 0.0f;
        }
        if (bf)
            P(PROF_MISC, be->round_bf16(ws->dqkv, ws->dqkv, N * QKV));
        P(PROF_MATMUL, lin_bwd(be, bf, w16 ? w16->wqkv : NULL, ws->dtmp, G->wqkv, ws->dqkv, A->xn1, W.wqkv, N, C, QKV,
                               false, false));
        /* dx = d x */
        P(PROF_NORM, model_norm_bwd(m, ws->dx, G->ln1, ws->dtmp, A->x, W.ln1, A->rstd1, N));
    }
    P(PROF_EMBED, be->embedding_bwd(m->g_embed, b->input_ids, ws->dx, N, C));
    return FT_OK;
}

/* ---------------------------------------------------------------- mixture of experts */

double ft_workspace_aux_loss(const ft_workspace *ws) { return ws->aux; }

ft_status ft_model_router_counts(ft_model *m, ft_workspace *ws, const ft_batch *b, double *counts, double *tokens,
                                 ft_err *err) {
    if (m->E == 0)
        return FT_OK;
    FT_TRY(model_check_batch(m, ws, b, err));
    forward_layers(m, ws, b);
    for (int64_t e = 0; e < m->E; e++)
        counts[e] += ws->stats.count[e];
    *tokens += ws->stats.tokens;
    return FT_OK;
}

ft_status ft_workspace_set_router_counts(ft_workspace *ws, const double *counts, double tokens, ft_err *err) {
    const ft_model *m = ws->m;
    if (m->E == 0)
        return FT_OK;
    if (!counts) {
        ws->global_tokens = 0;
        return FT_OK;
    }
    if (!(tokens >= 0) || !isfinite(tokens))
        return FT_ERR(err, FT_ERR_INVALID, "router counts: the token count must be >= 0");
    memcpy(ws->global_count, counts, (size_t)m->E * sizeof(double));
    ws->global_tokens = tokens;
    return FT_OK;
}

ft_status ft_workspace_routing(const ft_workspace *ws, int64_t layer, const int32_t **sel, const float **probs,
                               float *logits, int64_t n_rows, ft_err *err) {
    const ft_model *m = ws->m;
    if (m->E == 0)
        return FT_ERR(err, FT_ERR_INVALID, "routing: the model has no experts");
    if (layer < 0 || layer >= m->L)
        return FT_ERR(err, FT_ERR_RANGE, "routing: layer %lld is outside 0..%lld", (long long)layer,
                      (long long)m->L - 1);
    bool kept = ws->p.training && !ws->p.checkpointing;
    if (!kept && layer != m->L - 1)
        return FT_ERR(err, FT_ERR_INVALID,
                      "routing: this workspace keeps only the last layer's routing (use a training workspace "
                      "without checkpointing)");
    *sel = ws->acts[layer].sel;
    *probs = ws->acts[layer].probs;
    if (logits) { /* the router's input is still there: its product again */
        if (n_rows < 0 || n_rows > ws->N)
            return FT_ERR(err, FT_ERR_RANGE, "routing: %lld rows (the workspace has %lld)", (long long)n_rows,
                          (long long)ws->N);
        m->be->linear_fwd(logits, ws->acts[layer].xn2, m->w[layer].wr, n_rows, m->C, m->E);
    }
    return FT_OK;
}
