/* model/moe.c: the sparse mixture-of-experts MLP (MixtralForCausalLM's block_sparse_moe and
 * DbrxForCausalLM's ffn), forward and backward, fp32, as transformers' MixtralSparseMoeBlock and
 * (4.40) DbrxFFN compute it:
 *
 *   p (N, E)   = softmax(xn Wr^T) in fp32             the router (Mixtral "gate", DBRX router.layer)
 *   sel, w     = the top K of p per token, w = p_sel / ||p_sel||_r  (Mixtral: r = 1, the sum;
 *                DBRX: r = moe_normalize_expert_weights, or w = p_sel when it is null)
 *   out[t]     = sum over the token's experts e, in ascending e, of w_e * y_e with
 *                Mixtral y = w2_e(silu(w1_e x) * w3_e x), DBRX y = (silu(x w1_e^T) * x v1_e^T) w2_e
 *                (DBRX's w2 (F, C) per expert is not transposed; its three tensors are (E F, C))
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
 * adds as aux_scale before the softmax's backward. DBRX (4.40) hands load_balancing_loss_func the
 * router's probabilities where Mixtral hands it logits, so the function's softmax runs a second
 * time: DBRX's prob_sum sums q = softmax(p) and the gradient goes back through that softmax too. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "internal.h"

static bool counted(const int32_t *sample_ids, int64_t t) { return !sample_ids || sample_ids[t] >= 0; }

/* The divisor of the top-k weights: their r-norm (r = 1: `sum`, already summed), 1 when r = 0. */
static float router_scale(double r, const float *p, const int32_t *sel, int64_t K, float sum) {
    if (r == 1.0)
        return sum;
    if (r == 0.0)
        return 1.0f;
    double acc = 0;
    for (int64_t k = 0; k < K; k++)
        acc += pow((double)p[sel[k]], r);
    return (float)pow(acc, 1.0 / r);
}

/* DBRX's aux loss: q (E) = softmax(p) of one token's router probabilities, in double. */
static void softmax_again(const float *p, double *q, int64_t E) {
    double mx = p[0], sum = 0;
    for (int64_t e = 1; e < E; e++)
        mx = p[e] > mx ? p[e] : mx;
    for (int64_t e = 0; e < E; e++)
        sum += q[e] = exp((double)p[e] - mx);
    for (int64_t e = 0; e < E; e++)
        q[e] /= sum;
}

/* Expert e's gate, up and down weights (or their gradients). */
static float *ex_w1(const layer_w *W, int64_t e) { return W->w1 + e * W->estride; }
static float *ex_w3(const layer_w *W, int64_t e) { return W->w3 + e * W->estride; }
static float *ex_w2(const layer_w *W, int64_t e) { return W->w2 + e * W->estride; }

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
        /* renormalise (summed in descending probability, as transformers sums its top-k): by the
         * sum (r = 1), DBRX's p-norm, or not at all (r = 0); then order the slots by expert index:
         * the order the outputs are summed in */
        s = router_scale(m->router_p, p, sel, K, s);
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
            if (m->aux_of_probs) {
                double q[E];
                softmax_again(A->probs + t * E, q, E);
                for (int64_t e = 0; e < E; e++)
                    st->prob_sum[e] += q[e];
            } else {
                for (int64_t e = 0; e < E; e++)
                    st->prob_sum[e] += A->probs[t * E + e];
            }
            for (int64_t k = 0; k < K; k++)
                st->count[A->sel[t * K + k]] += 1;
        }
    }
    group(m, A, N);
    gather_rows(r->xe, A->xn2, A->tok, NK, C);
    /* gate|up (n_e, 2F) = x_e (n_e, C) [w1_e | w3_e]^T: one GEMM per expert where w1_e and w3_e
     * lie back to back (Mixtral), else one for each half (DBRX's separate w1 and v1) */
    const bool gu_fused = W->w3 == W->w1 + F * C;
    for (int64_t e = 0; e < E; e++) {
        int64_t o = A->offs[e], n = A->offs[e + 1] - o;
        if (n == 0)
            continue;
        if (gu_fused) {
            be->linear_fwd(A->gu + o * 2 * F, r->xe + o * C, ex_w1(W, e), n, C, 2 * F);
        } else {
            be->sgemm(false, true, n, F, C, 1.0f, r->xe + o * C, C, ex_w1(W, e), C, 0.0f, A->gu + o * 2 * F, 2 * F);
            be->sgemm(false, true, n, F, C, 1.0f, r->xe + o * C, C, ex_w3(W, e), C, 0.0f, A->gu + o * 2 * F + F,
                      2 * F);
        }
    }
    if (!next)
        return; /* the backward's recompute: it forms h itself */
    be->swiglu_fwd(A->h, A->gu, NK, F);
    /* y_e (n_e, C) = h_e (n_e, F) w2_e^T (Mixtral, w2_e (C, F)) or h_e w2_e (DBRX, w2_e (F, C)) */
    for (int64_t e = 0; e < E; e++) {
        int64_t o = A->offs[e], n = A->offs[e + 1] - o;
        if (n > 0)
            be->sgemm(false, !m->w2_fc, n, C, F, 1.0f, A->h + o * F, F, ex_w2(W, e), m->w2_fc ? C : F, 0.0f,
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
        if (n == 0)
            continue;
        if (m->w2_fc) /* dh (n_e, F) = dy_e (n_e, C) w2_e^T, w2_e (F, C) */
            be->sgemm(false, true, n, F, C, 1.0f, dye + o * C, C, ex_w2(W, e), C, 0.0f, dh + o * F, F);
        else
            be->linear_bwd(dh + o * F, NULL, dye + o * C, NULL, ex_w2(W, e), n, F, C, false, false);
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
        if (n == 0)
            continue;
        if (m->w2_fc) /* dw2_e (F, C) += h_e^T (w dy_e) */
            be->sgemm(true, false, F, C, n, 1.0f, A->h + o * F, F, dye + o * C, C, 1.0f, ex_w2(G, e), C);
        else
            be->linear_bwd(NULL, ex_w2(G, e), dye + o * C, A->h + o * F, NULL, n, F, C, false, false);
    }
    be->swiglu_bwd(A->gu, dh, A->gu, NK, F);
    const bool gu_fused = W->w3 == W->w1 + F * C;
    for (int64_t e = 0; e < E; e++) {
        int64_t o = A->offs[e], n = A->offs[e + 1] - o;
        if (n == 0)
            continue;
        const float *dgu = A->gu + o * 2 * F, *x = xe + o * C;
        if (gu_fused) {
            be->linear_bwd(dye + o * C, ex_w1(G, e), dgu, x, ex_w1(W, e), n, C, 2 * F, false, false);
            continue;
        }
        /* DBRX: dw1_e += dgate^T x, dv1_e += dup^T x; dx = dgate w1_e + dup v1_e */
        be->sgemm(true, false, F, C, n, 1.0f, dgu, 2 * F, x, C, 1.0f, ex_w1(G, e), C);
        be->sgemm(true, false, F, C, n, 1.0f, dgu + F, 2 * F, x, C, 1.0f, ex_w3(G, e), C);
        be->sgemm(false, false, n, C, F, 1.0f, dgu, 2 * F, ex_w1(W, e), C, 0.0f, dye + o * C, C);
        be->sgemm(false, false, n, C, F, 1.0f, dgu + F, 2 * F, ex_w3(W, e), C, 1.0f, dye + o * C, C);
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
    /* Router: w_j = p_j / S with S = ||p_sel||_r gives dp_j = (dw_j - wd w_j^(r-1)) / S for the
     * selected j, wd = sum_k dw_k w_k (r = 1: (dw_j - wd) / S; r = 0: S = 1, dp_j = dw_j). The
     * load-balancing loss adds aux_scale[e] to every counted token's dp_e (DBRX: to dq_e, q =
     * softmax(p), so dp = q (aux_scale - q . aux_scale)); then softmax's backward
     * dz = p (dp - sum_e dp_e p_e). */
    const double rp = m->router_p;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; t++) {
        const float *p = A->probs + t * E, *w = A->selw + t * K, *dw = ws->dsel + t * K;
        const int32_t *sel = A->sel + t * K;
        float *dz = ws->dz + t * E;
        double S = 0, wd = 0;
        for (int64_t k = 0; k < K; k++)
            S += p[sel[k]], wd += (double)dw[k] * w[k];
        if (rp == 0) {
            S = 1, wd = 0;
        } else if (rp != 1) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += pow((double)p[sel[k]], rp);
            S = pow(acc, 1.0 / rp);
        }
        /* dz holds dp first */
        const bool aux = aux_scale && counted(sample_ids, t);
        if (aux && m->aux_of_probs) {
            double q[E], qs = 0;
            softmax_again(p, q, E);
            for (int64_t e = 0; e < E; e++)
                qs += q[e] * aux_scale[e];
            for (int64_t e = 0; e < E; e++)
                dz[e] = (float)(q[e] * (aux_scale[e] - qs));
        } else {
            for (int64_t e = 0; e < E; e++)
                dz[e] = aux ? aux_scale[e] : 0.0f;
        }
        for (int64_t k = 0; k < K; k++) {
            double pw = rp == 1 ? 1.0 : rp == 0 ? 0.0 : pow((double)w[k], rp - 1);
            dz[sel[k]] += (float)((dw[k] - wd * pw) / S);
        }
        double dot = 0;
        for (int64_t e = 0; e < E; e++)
            dot += (double)dz[e] * p[e];
        for (int64_t e = 0; e < E; e++)
            dz[e] = p[e] * (float)(dz[e] - dot);
    }
    /* dWr (E, C) += dz^T xn2;  dxn2 += dz Wr */
    be->linear_bwd(dxn2, G->wr, ws->dz, A->xn2, W->wr, N, C, E, true, false);
}
