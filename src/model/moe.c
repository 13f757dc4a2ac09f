/* model/moe.c: the sparse mixture-of-experts MLP (MixtralForCausalLM's block_sparse_moe), forward
 * and backward, fp32, as transformers' MixtralSparseMoeBlock computes it:
 *
 *   p (N, E)   = softmax(xn Wr^T) in fp32             the router ("gate", no bias)
 *   sel, w     = the top K of p per token, w = p_sel / sum(p_sel)
 *   out[t]     = sum over the token's experts e, in ascending e, of w_e * w2_e(silu(w1_e x) * w3_e x)
 *   next       = xmid + out
 *
 * Top-k ties go to the lower expert index (torch.topk's order on CPU is not specified for ties;
 * the reference fixtures keep a margin between the k-th and (k+1)-th probabilities, so the choice
 * never decides a tested route). Tokens are grouped by expert with a stable counting sort (rows of
 * expert e in ascending token order), so each expert runs one GEMM over its contiguous rows in the
 * forward and in both backward products, instead of a loop over tokens. The combination is a
 * per-token gather (no scatter races), summed in ascending expert order like transformers'
 * index_add_ loop.
 *
 * The load-balancing loss (transformers' load_balancing_loss_func) pools the router
 * probabilities of all layers: aux = E * sum_e (count_e / M) (prob_sum_e / M), where count_e is
 * how often expert e was selected, prob_sum_e its summed probability and M the number of counted
 * (token, layer) pairs; tokens with a negative sample id (the loader's padding) are not counted,
 * as transformers excludes attention_mask == 0. Its gradient with respect to a counted token's
 * p_e is coef * E * count_e / M^2 (the selection counts carry no gradient), which the backward
 * adds as aux_scale before the softmax's backward. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "internal.h"

static bool counted(const int32_t *sample_ids, int64_t t) { return !sample_ids || sample_ids[t] >= 0; }

/* probs, sel, selw of N tokens from xn (N, C). */
static void route(const ft_model *m, const float *xn, const float *wr, layer_acts *A, int64_t N) {
    const int64_t E = m->E, K = m->K, C = m->C;
    /* router logits (N, E), softmax in place */
    m->be->linear_fwd(A->probs, xn, wr, N, C, E);
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; t++) {
        float *p = A->probs + t * E;
        float mx = p[0];
        for (int64_t e = 1; e < E; e++)
            mx = p[e] > mx ? p[e] : mx;
        float sum = 0;
        for (int64_t e = 0; e < E; e++) {
            p[e] = expf(p[e] - mx);
            sum += p[e];
        }
        for (int64_t e = 0; e < E; e++)
            p[e] /= sum;
        /* top K by repeated selection, the first (lowest) index winning ties */
        int32_t *sel = A->sel + t * K;
        float *w = A->selw + t * K;
        float s = 0;
        for (int64_t k = 0; k < K; k++) {
            int64_t best = -1;
            for (int64_t e = 0; e < E; e++) {
                bool taken = false;
                for (int64_t j = 0; j < k && !taken; j++)
                    taken = sel[j] == e;
                if (!taken && (best < 0 || p[e] > p[best]))
                    best = e;
            }
            sel[k] = (int32_t)best;
            s += p[best];
        }
        /* renormalise (summed in descending probability, as transformers sums its top-k), then
         * order the slots by expert index: the order the outputs are summed in */
        for (int64_t k = 0; k < K; k++)
            w[k] = p[sel[k]] / s;
        for (int64_t k = 1; k < K; k++)
            for (int64_t j = k; j > 0 && sel[j - 1] > sel[j]; j--) {
                int32_t ti = sel[j];
                sel[j] = sel[j - 1], sel[j - 1] = ti;
                float tw = w[j];
                w[j] = w[j - 1], w[j - 1] = tw;
            }
    }
}

/* Stable counting sort of the N K (token, slot) pairs by expert: offs, rowof, tok. */
static void group(const ft_model *m, layer_acts *A, int64_t N) {
    const int64_t E = m->E, K = m->K;
    int64_t *offs = A->offs;
    memset(offs, 0, (size_t)(E + 1) * sizeof *offs);
    for (int64_t i = 0; i < N * K; i++)
        offs[A->sel[i] + 1]++;
    for (int64_t e = 0; e < E; e++)
        offs[e + 1] += offs[e];
    /* offs[e] serves as expert e's cursor, ending at the start of e + 1; shifted back below */
    for (int64_t t = 0; t < N; t++)
        for (int64_t k = 0; k < K; k++) {
            int64_t row = offs[A->sel[t * K + k]]++;
            A->rowof[t * K + k] = (int32_t)row;
            A->tok[row] = (int32_t)t;
        }
    for (int64_t e = E; e > 0; e--)
        offs[e] = offs[e - 1];
    offs[0] = 0;
}

/* dst (rows, C) = src[idx[r]] */
static void gather_rows(float *dst, const float *src, const int32_t *idx, int64_t rows, int64_t C) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        memcpy(dst + r * C, src + (int64_t)idx[r] * C, (size_t)C * sizeof(float));
}

void model_moe_forward(const ft_model *m, const layer_w *W, layer_acts *A, float *next, int64_t N,
                       const layer_run *r) {
    const ft_backend *be = m->be;
    const int64_t E = m->E, K = m->K, C = m->C, F = m->F, NK = N * K;
    route(m, A->xn2, W->wr, A, N);
    if (r->stats) {
        moe_stats *st = r->stats;
        for (int64_t t = 0; t < N; t++) {
            if (!counted(r->sample_ids, t))
                continue;
            st->tokens += 1;
            for (int64_t e = 0; e < E; e++)
                st->prob_sum[e] += A->probs[t * E + e];
            for (int64_t k = 0; k < K; k++)
                st->count[A->sel[t * K + k]] += 1;
        }
    }
    group(m, A, N);
    gather_rows(r->xe, A->xn2, A->tok, NK, C);
    /* gate|up (n_e, 2F) = x_e (n_e, C) [w1_e | w3_e]^T, one GEMM per expert */
    for (int64_t e = 0; e < E; e++) {
        int64_t o = A->offs[e], n = A->offs[e + 1] - o;
        if (n > 0)
            be->linear_fwd(A->gu + o * 2 * F, r->xe + o * C, W->wexp + e * 3 * F * C, n, C, 2 * F);
    }
    if (!next)
        return; /* the backward's recompute: it forms h itself */
    be->swiglu_fwd(A->h, A->gu, NK, F);
    /* y_e (n_e, C) = h_e (n_e, F) w2_e^T */
    for (int64_t e = 0; e < E; e++) {
        int64_t o = A->offs[e], n = A->offs[e + 1] - o;
        if (n > 0)
            be->sgemm(false, true, n, C, F, 1.0f, A->h + o * F, F, W->wexp + e * 3 * F * C + 2 * F * C, F, 0.0f,
                      r->ye + o * C, C);
    }
    /* next[t] = xmid[t] + sum over the token's experts (ascending) of w * y; next may be xmid */
    const float *xmid = A->xmid, *ye = r->ye;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; t++) {
        const float *w = A->selw + t * K;
        const int32_t *rows = A->rowof + t * K;
        for (int64_t c = 0; c < C; c++) {
            float acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += w[k] * ye[(int64_t)rows[k] * C + c];
            next[t * C + c] = xmid[t * C + c] + acc;
        }
    }
}

void model_moe_backward(const ft_model *m, const layer_w *W, const layer_w *G, layer_acts *A, ft_workspace *ws,
                        const float *dy, float *dxn2, int64_t N, const float *aux_scale, const int32_t *sample_ids) {
    const ft_backend *be = m->be;
    const int64_t E = m->E, K = m->K, C = m->C, F = m->F, NK = N * K;
    float *xe = ws->xe, *dye = ws->ye, *dh = ws->dh;
    /* h from the kept gate|up; the expert inputs and the output gradient gathered by expert */
    be->swiglu_fwd(A->h, A->gu, NK, F);
    gather_rows(xe, A->xn2, A->tok, NK, C);
    gather_rows(dye, dy, A->tok, NK, C);
    /* d(w y) / dy = w; d / dw = dy . y = (dy w2_e) . h: dh_unweighted (n_e, F) = dy_e w2_e */
    for (int64_t e = 0; e < E; e++) {
        int64_t o = A->offs[e], n = A->offs[e + 1] - o;
        if (n > 0)
            be->linear_bwd(dh + o * F, NULL, dye + o * C, NULL, W->wexp + e * 3 * F * C + 2 * F * C, n, F, C, false,
                           false);
    }
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; t++)
        for (int64_t k = 0; k < K; k++) {
            int64_t row = A->rowof[t * K + k];
            float w = A->selw[t * K + k];
            float *dhr = dh + row * F, *dyr = dye + row * C;
            const float *hr = A->h + row * F;
            double dot = 0;
            for (int64_t f = 0; f < F; f++)
                dot += (double)dhr[f] * hr[f];
            ws->dsel[t * K + k] = (float)dot;
            for (int64_t f = 0; f < F; f++)
                dhr[f] *= w;
            for (int64_t c = 0; c < C; c++)
                dyr[c] *= w;
        }
    /* dw2_e += (w dy_e)^T h_e; then d[gate|up] in place of gu; dw13_e += dgu_e^T x_e and
     * dx_e = dgu_e [w1_e | w3_e], into dye's rows (no longer needed) */
    for (int64_t e = 0; e < E; e++) {
        int64_t o = A->offs[e], n = A->offs[e + 1] - o;
        if (n > 0)
            be->linear_bwd(NULL, G->wexp + e * 3 * F * C + 2 * F * C, dye + o * C, A->h + o * F, NULL, n, F, C,
                           false, false);
    }
    be->swiglu_bwd(A->gu, dh, A->gu, NK, F);
    for (int64_t e = 0; e < E; e++) {
        int64_t o = A->offs[e], n = A->offs[e + 1] - o;
        if (n > 0)
            be->linear_bwd(dye + o * C, G->wexp + e * 3 * F * C, A->gu + o * 2 * F, xe + o * C, W->wexp + e * 3 * F * C,
                           n, C, 2 * F, false, false);
    }
    /* dxn2[t] = sum of its rows' input gradients; the router's part is added below */
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; t++) {
        float *d = dxn2 + t * C;
        memcpy(d, dye + (int64_t)A->rowof[t * K] * C, (size_t)C * sizeof(float));
        for (int64_t k = 1; k < K; k++) {
            const float *s = dye + (int64_t)A->rowof[t * K + k] * C;
            for (int64_t c = 0; c < C; c++)
                d[c] += s[c];
        }
    }
    /* Router: w_j = p_j / S (S the sum of the selected p) gives dp_j = dw_j / S - sum_k dw_k w_k / S
     * for the selected j; the load-balancing loss adds aux_scale[e] to every counted token's dp_e;
     * then softmax's backward dz = p (dp - sum_e dp_e p_e). */
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; t++) {
        const float *p = A->probs + t * E, *w = A->selw + t * K, *dw = ws->dsel + t * K;
        const int32_t *sel = A->sel + t * K;
        float *dz = ws->dz + t * E;
        double S = 0, wd = 0;
        for (int64_t k = 0; k < K; k++)
            S += p[sel[k]], wd += (double)dw[k] * w[k];
        /* dz holds dp first */
        for (int64_t e = 0; e < E; e++)
            dz[e] = aux_scale && counted(sample_ids, t) ? aux_scale[e] : 0.0f;
        for (int64_t k = 0; k < K; k++)
            dz[sel[k]] += (float)((dw[k] - wd) / S);
        double dot = 0;
        for (int64_t e = 0; e < E; e++)
            dot += (double)dz[e] * p[e];
        for (int64_t e = 0; e < E; e++)
            dz[e] = p[e] * (float)(dz[e] - dot);
    }
    /* dWr (E, C) += dz^T xn2;  dxn2 += dz Wr */
    be->linear_bwd(dxn2, G->wr, ws->dz, A->xn2, W->wr, N, C, E, true, false);
}
