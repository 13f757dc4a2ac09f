/* model/forward.c: the Llama decoder's forward and backward passes over a packed batch, fp32.
 *
 *   x = embed(ids)
 *   per layer:  x = x + o_proj(attn(rope(q), rope(k), v))  with q|k|v = qkv_proj(rmsnorm1(x))
 *               x = x + down(silu(gate) * up)              with gate|up = gu_proj(rmsnorm2(x))
 *   logits = lm_head(rmsnorm(x));  loss = sum of cross-entropy over trainable targets
 *
 * The backward walks the same steps in reverse, reading what the forward kept in the layer's
 * activation set (see internal.h) and recomputing the cheap SwiGLU output. Weight gradients
 * accumulate through sgemm's beta = 1. The LM head and the cross-entropy run on the trainable
 * rows only, in chunks of `m->chunk` rows, so the (B*T, V) logits never exist in training; the
 * softmax gradient is formed in place of each chunk's logits. */
#include <omp.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* FTUNE_PROFILE=1: P(family, call) adds the call's wall time to m->prof[family]. */
#define P(fam, call)                                                                                                   \
    do {                                                                                                               \
        double t0_ = m->profile ? prof_now(m) : 0;                                                                     \
        call;                                                                                                          \
        if (m->profile)                                                                                                \
            m->prof[fam] += prof_now(m) - t0_;                                                                         \
    } while (0)

/* Wall time, or with FTUNE_PROFILE=cpu the process's CPU time (steadier on a shared machine). */
static double prof_now(const ft_model *m) {
    if (m->profile_cpu) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    }
    return ft_time_now();
}

static ft_attn_shape attn_shape(const ft_model *m, int64_t B, int64_t T) {
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
                           .threads = m->attn_threads};
}

static void forward_layers(ft_model *m, const ft_batch *b) {
    const int64_t B = b->B, T = b->T, N = B * T, C = m->C, F = m->F, Q = m->Q, KV = m->KV, QKV = m->QKV;
    const float eps = (float)m->cfg.rms_norm_eps;
    for (int64_t n = 0; n < N; n++)
        m->pos[n] = b->position_ids ? b->position_ids[n] : (int32_t)(n % T);
    P(PROF_ROPE, ft_tensor_rope_table(m->cos_t, m->sin_t, m->pos, m->inv_freq, N, m->HD / 2));
    ft_attn_shape as = attn_shape(m, B, T);

    P(PROF_EMBED, ft_tensor_embedding_fwd(m->acts[0].x, b->input_ids, m->embed, N, C));
    for (int64_t l = 0; l < m->L; l++) {
        layer_acts *A = &m->acts[l];
        const layer_w *W = &m->w[l];
        P(PROF_NORM, ft_tensor_rmsnorm_fwd(A->xn1, A->rstd1, A->x, W->ln1, N, C, eps));
        /* (N, Q + 2 KV) */
        P(PROF_MATMUL, ft_tensor_linear_fwd(A->qkv, A->xn1, W->wqkv, N, C, QKV));
        /* q's and k's heads are adjacent in a qkv row: one RoPE pass over NH + KVH heads */
        P(PROF_ROPE, ft_tensor_rope_fwd(A->qkv, QKV, m->cos_t, m->sin_t, N, m->NH + m->KVH, m->HD));
        P(PROF_ATTN, ft_tensor_attention_fwd(&as, A->att, A->lse, A->qkv, A->qkv + Q, A->qkv + Q + KV, b->sample_ids,
                                             m->attn_scratch));
        /* xmid (N, C) = x + att (N, Q) Wo^T */
        P(PROF_MISC, memcpy(A->xmid, A->x, (size_t)(N * C) * sizeof(float)));
        P(PROF_MATMUL, ft_tensor_sgemm(false, true, N, C, Q, 1.0f, A->att, Q, W->wo, Q, 1.0f, A->xmid, C));
        P(PROF_NORM, ft_tensor_rmsnorm_fwd(A->xn2, A->rstd2, A->xmid, W->ln2, N, C, eps));
        /* (N, 2F) */
        P(PROF_MATMUL, ft_tensor_linear_fwd(A->gu, A->xn2, W->wgu, N, C, 2 * F));
        P(PROF_SWIGLU, ft_tensor_swiglu_fwd(m->hbuf, A->gu, N, F));
        /* Next residual. Without training all layers share one set, so `next` may be A->x,
         * which is no longer needed here. */
        float *next = l + 1 < m->L ? m->acts[l + 1].x : m->xL;
        P(PROF_MISC, memcpy(next, A->xmid, (size_t)(N * C) * sizeof(float)));
        P(PROF_MATMUL, ft_tensor_sgemm(false, true, N, C, F, 1.0f, m->hbuf, F, W->wd, F, 1.0f, next, C));
    }
    P(PROF_NORM, ft_tensor_rmsnorm_fwd(m->xf, m->rstdf, m->xL, m->norm, N, C, eps));
}

/* dx (nc, C) = dlogits (nc, V) head (V, C), the vocabulary split among the threads. Why: both
 * inputs are large and the output small, so splitting the output (as ft_tensor_sgemm does) would
 * have every thread pack all of one input again; split along V each packs only its share, and
 * adding the partial results (nc x C) is cheap. */
static void head_dx(ft_model *m, int64_t nc, float *dx) {
    const int64_t C = m->C, V = m->V;
    int nt = ft_tensor_threads();
    if (nt > m->attn_threads)
        nt = (int)m->attn_threads; /* the partial buffers were sized at creation */
    if (nt <= 1 || V < 4096) {
        ft_tensor_sgemm(false, false, nc, C, V, 1.0f, m->logits, V, m->head, C, 0.0f, dx, C);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t v0 = V * t / n, v1 = V * (t + 1) / n;
        float *dst = t == 0 ? dx : m->dxpart + (size_t)(t - 1) * (size_t)(nc * C);
        ft_tensor_sgemm(false, false, nc, C, v1 - v0, 1.0f, m->logits + v0, V, m->head + v0 * C, C, 0.0f, dst, C);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t i = 0; i < nc * C; i++)
            for (int u = 1; u < n; u++)
                dx[i] += m->dxpart[(size_t)(u - 1) * (size_t)(nc * C) + (size_t)i];
    }
}

/* LM head and cross-entropy over the trainable rows (compacted), chunk by chunk. With
 * grad_scale != 0 also dxc (trainable rows' d xf) and the head's weight gradient. */
static double head_loss(ft_model *m, const ft_batch *b, float grad_scale, int64_t *n_valid, int64_t *n_correct) {
    const int64_t N = b->B * b->T, C = m->C, V = m->V;
    int64_t nv = 0;
    if (b->targets)
        for (int64_t n = 0; n < N; n++)
            if (b->targets[n] != -100) {
                m->rows[nv] = (int32_t)n;
                m->tgt[nv++] = b->targets[n];
            }
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nv; k++)
        memcpy(m->xc + k * C, m->xf + (int64_t)m->rows[k] * C, (size_t)C * sizeof(float));
    double loss = 0.0;
    for (int64_t k0 = 0; k0 < nv; k0 += m->chunk) {
        int64_t nc = nv - k0 < m->chunk ? nv - k0 : m->chunk;
        const float *xc = m->xc + k0 * C;
        /* logits (nc, V) = xc (nc, C) head^T */
        ft_tensor_sgemm(false, true, nc, V, C, 1.0f, xc, C, m->head, C, 0.0f, m->logits, V);
        int64_t right = 0;
        loss += ft_tensor_cross_entropy(m->logits, m->tgt + k0, nc, V, grad_scale, NULL, n_correct ? &right : NULL);
        if (n_correct)
            *n_correct += right;
        if (grad_scale != 0.0f) {
            /* dxc (nc, C) = dlogits (nc, V) head (V, C);  dhead (V, C) += dlogits^T xc */
            head_dx(m, nc, m->dxc + k0 * C);
            ft_tensor_sgemm(true, false, V, C, nc, 1.0f, m->logits, V, xc, C, 1.0f, m->g_head, C);
        }
    }
    *n_valid = nv;
    return loss;
}

ft_status ft_model_eval(ft_model *m, const ft_batch *b, double *loss_sum, int64_t *n_trainable, int64_t *n_correct,
                        ft_err *err) {
    FT_TRY(ft_model_check_batch_(m, b, err));
    forward_layers(m, b);
    int64_t nv = 0, right = 0;
    double loss = head_loss(m, b, 0.0f, &nv, &right);
    if (loss_sum)
        *loss_sum = loss;
    if (n_trainable)
        *n_trainable = nv;
    if (n_correct)
        *n_correct = right;
    return FT_OK;
}

ft_status ft_model_forward(ft_model *m, const ft_batch *b, float *logits, double *loss_sum, int64_t *n_trainable,
                           ft_err *err) {
    FT_TRY(ft_model_check_batch_(m, b, err));
    forward_layers(m, b);
    const int64_t N = b->B * b->T;
    double loss = 0.0;
    int64_t nv = 0;
    if (logits) {
        ft_tensor_sgemm(false, true, N, m->V, m->C, 1.0f, m->xf, m->C, m->head, m->C, 0.0f, logits, m->V);
        if (b->targets) {
            /* The kernel skips -100 rows; the logits stay untouched with grad_scale 0. */
            loss = ft_tensor_cross_entropy(logits, b->targets, N, m->V, 0.0f, &nv, NULL);
        }
    } else {
        loss = head_loss(m, b, 0.0f, &nv, NULL);
    }
    if (loss_sum)
        *loss_sum = loss;
    if (n_trainable)
        *n_trainable = nv;
    return FT_OK;
}

ft_status ft_model_forward_backward(ft_model *m, const ft_batch *b, double denom, double *loss_sum,
                                    int64_t *n_trainable, ft_err *err) {
    if (!m->p.training)
        return FT_ERR(err, FT_ERR_INVALID, "forward_backward on a model created without training");
    if (!(denom > 0))
        return FT_ERR(err, FT_ERR_INVALID, "forward_backward: the loss denominator must be positive");
    FT_TRY(ft_model_check_batch_(m, b, err));
    const int64_t B = b->B, T = b->T, N = B * T, C = m->C, F = m->F, Q = m->Q, KV = m->KV, QKV = m->QKV;
    forward_layers(m, b);
    int64_t nv = 0;
    double loss = 0;
    P(PROF_HEAD, loss = head_loss(m, b, (float)(1.0 / denom), &nv, NULL));
    if (loss_sum)
        *loss_sum = loss;
    if (n_trainable)
        *n_trainable = nv;

    /* d xf: the trainable rows' gradients scattered back, zeros elsewhere. */
    P(PROF_MISC, memset(m->dtmp, 0, (size_t)(N * C) * sizeof(float)));
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nv; k++)
        memcpy(m->dtmp + (int64_t)m->rows[k] * C, m->dxc + k * C, (size_t)C * sizeof(float));
    P(PROF_MISC, memset(m->dx, 0, (size_t)(N * C) * sizeof(float)));
    P(PROF_NORM, ft_tensor_rmsnorm_bwd(m->dx, m->g_norm, m->dtmp, m->xL, m->norm, m->rstdf, N, C));

    ft_attn_shape as = attn_shape(m, B, T);
    for (int64_t l = m->L - 1; l >= 0; l--) {
        layer_acts *A = &m->acts[l];
        const layer_w *W = &m->w[l];
        const layer_w *G = &m->g[l];
        /* MLP: x_next = xmid + h Wd^T, dx holds d x_next. */
        /* h (N, F) */
        P(PROF_SWIGLU, ft_tensor_swiglu_fwd(m->hbuf, A->gu, N, F));
        /* dWd += dx^T h */
        P(PROF_MATMUL, ft_tensor_linear_bwd(NULL, G->wd, m->dx, m->hbuf, W->wd, N, F, C, false, false));
        /* dh = dx Wd */
        P(PROF_MATMUL, ft_tensor_linear_bwd(m->hbuf, NULL, m->dx, NULL, W->wd, N, F, C, false, false));
        /* d[gate|up], in place */
        P(PROF_SWIGLU, ft_tensor_swiglu_bwd(A->gu, m->hbuf, A->gu, N, F));
        P(PROF_MATMUL, ft_tensor_linear_bwd(m->dtmp, G->wgu, A->gu, A->xn2, W->wgu, N, C, 2 * F, false, false));
        /* dx = d xmid */
        P(PROF_NORM, ft_tensor_rmsnorm_bwd(m->dx, G->ln2, m->dtmp, A->xmid, W->ln2, A->rstd2, N, C));
        /* Attention: xmid = x + att Wo^T. */
        P(PROF_MATMUL, ft_tensor_linear_bwd(m->datt, G->wo, m->dx, A->att, W->wo, N, Q, C, false, false));
        P(PROF_ATTN, ft_tensor_attention_bwd(&as, m->dqkv, m->dqkv + Q, m->dqkv + Q + KV, m->datt, A->att, A->lse,
                                             A->qkv, A->qkv + Q, A->qkv + Q + KV, b->sample_ids, m->attn_scratch));
        P(PROF_ROPE, ft_tensor_rope_bwd(m->dqkv, QKV, m->cos_t, m->sin_t, N, m->NH + m->KVH, m->HD));
        P(PROF_MATMUL, ft_tensor_linear_bwd(m->dtmp, G->wqkv, m->dqkv, A->xn1, W->wqkv, N, C, QKV, false, false));
        /* dx = d x */
        P(PROF_NORM, ft_tensor_rmsnorm_bwd(m->dx, G->ln1, m->dtmp, A->x, W->ln1, A->rstd1, N, C));
    }
    P(PROF_EMBED, ft_tensor_embedding_bwd(m->g_embed, b->input_ids, m->dx, N, C));
    return FT_OK;
}
