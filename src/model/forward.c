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

/* ---------------------------------------------------------------- the layer body */

void model_layer_forward(const ft_model *m, int64_t layer, layer_acts *A, float *next, const ft_attn_shape *as,
                         const int32_t *sample_ids, const float *cos_t, const float *sin_t, int64_t N,
                         const layer_kv *kv, float *attn_scratch, double *prof, bool prof_cpu) {
    const ft_backend *be = m->be;
    const ft_layer_desc *d = &m->layers[layer];
    const layer_w *W = &m->w[layer];
    const int64_t C = m->C, F = d->ffn, Q = m->Q, KV = m->KV, QKV = m->QKV;
    const float eps = (float)m->cfg.rms_norm_eps;
    FT_ASSERT(d->norm == FT_NORM_RMS && d->mlp == FT_MLP_SWIGLU);
    /* Attention block. */
    P(PROF_NORM, be->rmsnorm_fwd(A->xn1, A->rstd1, A->x, W->ln1, N, C, eps));
    /* (N, Q + 2 KV) */
    P(PROF_MATMUL, be->linear_fwd(A->qkv, A->xn1, W->wqkv, N, C, QKV));
    /* q's and k's heads are adjacent in a qkv row: one RoPE pass over NH + KVH heads */
    P(PROF_ROPE, be->rope_fwd(A->qkv, QKV, cos_t, sin_t, N, d->n_heads + d->n_kv_heads, d->head_dim));
    const float *k = A->qkv + Q, *v = A->qkv + Q + KV;
    if (kv) { /* decoding: append this chunk's keys and values to the cache, attend over it */
        for (int64_t i = 0; i < N; i++) {
            memcpy(kv->k + (kv->at + i) * kv->stride, A->qkv + i * QKV + Q, (size_t)KV * sizeof(float));
            memcpy(kv->v + (kv->at + i) * kv->stride, A->qkv + i * QKV + Q + KV, (size_t)KV * sizeof(float));
        }
        k = kv->k, v = kv->v;
    }
    P(PROF_ATTN, be->attention_fwd(as, A->att, A->lse, A->qkv, k, v, sample_ids, attn_scratch));
    /* xmid (N, C) = x + att (N, Q) Wo^T */
    if (A->xmid != A->x)
        P(PROF_MISC, memcpy(A->xmid, A->x, (size_t)(N * C) * sizeof(float)));
    P(PROF_MATMUL, be->sgemm(false, true, N, C, Q, 1.0f, A->att, Q, W->wo, Q, 1.0f, A->xmid, C));
    /* MLP block. */
    P(PROF_NORM, be->rmsnorm_fwd(A->xn2, A->rstd2, A->xmid, W->ln2, N, C, eps));
    /* (N, 2F) */
    P(PROF_MATMUL, be->linear_fwd(A->gu, A->xn2, W->wgu, N, C, 2 * F));
    if (!next)
        return; /* the backward's recompute: it forms h itself */
    P(PROF_SWIGLU, be->swiglu_fwd(A->h, A->gu, N, F));
    /* next (N, C) = xmid + h (N, F) Wd^T. Without training all layers share one set, so `next`
     * may be A->x, which is no longer needed here. */
    if (next != A->xmid)
        P(PROF_MISC, memcpy(next, A->xmid, (size_t)(N * C) * sizeof(float)));
    P(PROF_MATMUL, be->sgemm(false, true, N, C, F, 1.0f, A->h, F, W->wd, F, 1.0f, next, C));
}

/* ---------------------------------------------------------------- forward */

static void forward_layers(ft_model *m, ft_workspace *ws, const ft_batch *b) {
    const ft_backend *be = m->be;
    const int64_t B = b->B, T = b->T, N = B * T, C = m->C;
    const float eps = (float)m->cfg.rms_norm_eps;
    double *prof = ws->profile ? ws->prof : NULL;
    const bool prof_cpu = ws->profile_cpu;
    for (int64_t n = 0; n < N; n++)
        ws->pos[n] = b->position_ids ? b->position_ids[n] : (int32_t)(n % T);
    P(PROF_ROPE, be->rope_table(ws->cos_t, ws->sin_t, ws->pos, m->inv_freq, N, m->HD / 2));
    ft_attn_shape as = attn_shape(m, ws, B, T);
    P(PROF_EMBED, be->embedding_fwd(ws->acts[0].x, b->input_ids, m->embed, N, C));
    for (int64_t l = 0; l < m->L; l++) {
        float *next = l + 1 < m->L ? ws->acts[l + 1].x : ws->xL;
        model_layer_forward(m, l, &ws->acts[l], next, &as, b->sample_ids, ws->cos_t, ws->sin_t, N, NULL,
                            ws->attn_scratch, prof, prof_cpu);
    }
    P(PROF_NORM, be->rmsnorm_fwd(ws->xf, ws->rstdf, ws->xL, m->norm, N, C, eps));
}

/* dx (nc, C) = dlogits (nc, V) head (V, C), the vocabulary split among the threads. Why: both
 * inputs are large and the output small, so splitting the output (as ft_tensor_sgemm does) would
 * have every thread pack all of one input again; split along V each packs only its share, and
 * adding the partial results (nc x C) is cheap. */
static void head_dx(ft_model *m, ft_workspace *ws, int64_t nc, float *dx) {
    const ft_backend *be = m->be;
    const int64_t C = m->C, V = m->V;
    int nt = ft_tensor_threads();
    if (nt > ws->attn_threads)
        nt = (int)ws->attn_threads; /* the partial buffers were sized at creation */
    if (nt <= 1 || V < 4096) {
        be->sgemm(false, false, nc, C, V, 1.0f, ws->logits, V, m->head, C, 0.0f, dx, C);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t v0 = V * t / n, v1 = V * (t + 1) / n;
        float *dst = t == 0 ? dx : ws->dxpart + (size_t)(t - 1) * (size_t)(nc * C);
        be->sgemm(false, false, nc, C, v1 - v0, 1.0f, ws->logits + v0, V, m->head + v0 * C, C, 0.0f, dst, C);
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
        be->sgemm(false, true, nc, V, C, 1.0f, xc, C, m->head, C, 0.0f, ws->logits, V);
        int64_t right = 0;
        loss += be->cross_entropy(ws->logits, ws->tgt + k0, nc, V, grad_scale, NULL, n_correct ? &right : NULL);
        if (n_correct)
            *n_correct += right;
        if (grad_scale != 0.0f) {
            /* dxc (nc, C) = dlogits (nc, V) head (V, C);  dhead (V, C) += dlogits^T xc */
            head_dx(m, ws, nc, ws->dxc + k0 * C);
            be->sgemm(true, false, V, C, nc, 1.0f, ws->logits, V, xc, C, 1.0f, m->g_head, C);
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
        m->be->sgemm(false, true, N, m->V, m->C, 1.0f, ws->xf, m->C, m->head, m->C, 0.0f, logits, m->V);
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
    P(PROF_NORM, be->rmsnorm_bwd(ws->dx, m->g_norm, ws->dtmp, ws->xL, m->norm, ws->rstdf, N, C));

    ft_attn_shape as = attn_shape(m, ws, B, T);
    for (int64_t l = m->L - 1; l >= 0; l--) {
        layer_acts *A = &ws->acts[l];
        const layer_w *W = &m->w[l];
        const layer_w *G = &m->g[l];
        /* Checkpointing: this layer's activations again from its saved input, by the same body
         * and kernels as the forward, so everything below sees bitwise the same values. The last
         * layer's are still there from the forward. */
        if (ws->p.checkpointing && l < m->L - 1)
            model_layer_forward(m, l, A, NULL, &as, b->sample_ids, ws->cos_t, ws->sin_t, N, NULL, ws->attn_scratch,
                                prof, prof_cpu);
        /* MLP: x_next = xmid + h Wd^T, dx holds d x_next. */
        /* h (N, F) */
        P(PROF_SWIGLU, be->swiglu_fwd(A->h, A->gu, N, F));
        /* dWd += dx^T h */
        P(PROF_MATMUL, be->linear_bwd(NULL, G->wd, ws->dx, A->h, W->wd, N, F, C, false, false));
        /* dh = dx Wd */
        P(PROF_MATMUL, be->linear_bwd(A->h, NULL, ws->dx, NULL, W->wd, N, F, C, false, false));
        /* d[gate|up], in place */
        P(PROF_SWIGLU, be->swiglu_bwd(A->gu, A->h, A->gu, N, F));
        P(PROF_MATMUL, be->linear_bwd(ws->dtmp, G->wgu, A->gu, A->xn2, W->wgu, N, C, 2 * F, false, false));
        /* dx = d xmid */
        P(PROF_NORM, be->rmsnorm_bwd(ws->dx, G->ln2, ws->dtmp, A->xmid, W->ln2, A->rstd2, N, C));
        /* Attention: xmid = x + att Wo^T. */
        P(PROF_MATMUL, be->linear_bwd(ws->datt, G->wo, ws->dx, A->att, W->wo, N, Q, C, false, false));
        P(PROF_ATTN, be->attention_bwd(&as, ws->dqkv, ws->dqkv + Q, ws->dqkv + Q + KV, ws->datt, A->att, A->lse,
                                       A->qkv, A->qkv + Q, A->qkv + Q + KV, b->sample_ids, ws->attn_scratch));
        P(PROF_ROPE, be->rope_bwd(ws->dqkv, QKV, ws->cos_t, ws->sin_t, N, m->NH + m->KVH, m->HD));
        P(PROF_MATMUL, be->linear_bwd(ws->dtmp, G->wqkv, ws->dqkv, A->xn1, W->wqkv, N, C, QKV, false, false));
        /* dx = d x */
        P(PROF_NORM, be->rmsnorm_bwd(ws->dx, G->ln1, ws->dtmp, A->x, W->ln1, A->rstd1, N, C));
    }
    P(PROF_EMBED, be->embedding_bwd(m->g_embed, b->input_ids, ws->dx, N, C));
    return FT_OK;
}
