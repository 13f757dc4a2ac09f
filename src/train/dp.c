/* train/dp.c: data parallelism (issue #15): the optimizer step of one global batch shared among
 * the processes of an ft_comm (see ft_train_dp in ftune/train.h), and its simulation in one
 * process, which computes the same bits and is what the tests compare N ranks against.
 *
 * Why the results do not depend on the MPI library: each rank accumulates its micro-batches into
 * its own gradient exactly as one process would; the gradients are then added element by element
 * in rank order by the shard owners (ft_comm_reduce_scatter_f32), the losses and counts in rank
 * order (ft_comm_sum_*), and the gradient norm over fixed chunks in chunk order; the optimizer is
 * element-wise, so updating a shard (ZeRO-1) or everything gives the same bits. */
#include <math.h>
#include <string.h>

#include "train_internal.h"

ft_status train_dp_new(ft_comm *comm, int64_t simulate_world, bool zero, ft_model *m, ft_train_dp **out,
                       ft_err *err) {
    *out = NULL;
    ft_train_dp *dp = ft_calloc(1, sizeof *dp);
    if (!dp)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    dp->simulate = simulate_world > 0;
    dp->comm = dp->simulate ? NULL : comm;
    dp->world = dp->simulate ? simulate_world : ft_comm_size(comm);
    dp->rank = dp->simulate ? 0 : ft_comm_rank(comm);
    dp->zero = zero;
    dp->nonfinite_rank = -1;
    dp->n = ft_model_n_elements(m);
    dp->n_chunks = (dp->n + FT_GRAD_CHUNK - 1) / FT_GRAD_CHUNK;
    if (dp->simulate) {
        dp->c_lo = 0, dp->c_hi = dp->n_chunks, dp->lo = 0, dp->hi = dp->n;
    } else {
        ft_comm_shard(dp->n_chunks, dp->world, dp->rank, &dp->c_lo, &dp->c_hi);
        dp->lo = dp->c_lo * FT_GRAD_CHUNK < dp->n ? dp->c_lo * FT_GRAD_CHUNK : dp->n;
        dp->hi = dp->c_hi * FT_GRAD_CHUNK < dp->n ? dp->c_hi * FT_GRAD_CHUNK : dp->n;
    }
    int64_t scratch = dp->simulate ? dp->n : ft_comm_scratch_floats(comm, dp->n, FT_GRAD_CHUNK);
    dp->scratch = ft_malloc((size_t)(scratch > 0 ? scratch : 1) * sizeof(float));
    dp->chunk_ss = ft_malloc((size_t)(dp->n_chunks > 0 ? dp->n_chunks : 1) * sizeof(double));
    if (!dp->scratch || !dp->chunk_ss) {
        train_dp_free(dp);
        return FT_ERR(err, FT_ERR_NOMEM, "data parallelism: out of memory (%lld floats of receive buffers)",
                      (long long)scratch);
    }
    *out = dp;
    return FT_OK;
}

void train_dp_free(ft_train_dp *dp) {
    if (!dp)
        return;
    ft_free(dp->scratch);
    ft_free(dp->chunk_ss);
    ft_free(dp);
}

/* Rows of micro-batches [k0, k1) of a batch of B rows in micro-batches of `micro`. */
static void share_rows(int64_t B, int64_t micro, int64_t n_micro, int64_t world, int64_t g, int64_t *r0, int64_t *r1) {
    int64_t k0, k1;
    ft_comm_shard(n_micro, world, g, &k0, &k1);
    *r0 = k0 * micro < B ? k0 * micro : B;
    *r1 = k1 * micro < B ? k1 * micro : B;
}

/* The passes over rows [r0, r1): gradients zeroed, then each micro-batch adds d(CE_sum / denom)
 * with the whole global batch's router counts (MoE) set on the workspace. */
static ft_status accumulate_share(ft_model *m, ft_workspace *ws, const ft_batch *b, int64_t r0, int64_t r1,
                                  int64_t micro, double denom, const double *counts, double *v, int64_t *nt,
                                  ft_err *err) {
    v[0] = v[1] = 0; /* loss sum, aux loss */
    *nt = 0;
    ft_model_zero_grad(m);
    if (counts)
        FT_TRY(ft_workspace_set_router_counts(ws, counts, counts[ft_model_get_config(m)->num_local_experts], err));
    ft_status s = FT_OK;
    for (int64_t a = r0; s == FT_OK && a < r1; a += micro) {
        ft_batch mb = train_batch_rows(b, a, a + micro < r1 ? a + micro : r1);
        double ls = 0;
        int64_t n = 0;
        s = ft_model_forward_backward(m, ws, &mb, denom, &ls, &n, err);
        v[0] += ls;
        *nt += n;
        v[1] += ft_workspace_aux_loss(ws);
    }
    ft_workspace_set_router_counts(ws, NULL, 0, NULL);
    return s;
}

/* A rank's own micro-batches' routing counts (E) and counted tokens (counts[E]). */
static ft_status share_counts(ft_model *m, ft_workspace *ws, const ft_batch *b, int64_t r0, int64_t r1, int64_t micro,
                              double *counts, ft_err *err) {
    FT_TRY(ft_workspace_set_router_counts(ws, NULL, 0, err));
    const int64_t E = ft_model_get_config(m)->num_local_experts;
    for (int64_t a = r0; a < r1; a += micro) {
        ft_batch mb = train_batch_rows(b, a, a + micro < r1 ? a + micro : r1);
        FT_TRY(ft_model_router_counts(m, ws, &mb, counts, &counts[E], err));
    }
    return FT_OK;
}

ft_status train_dp_agree(ft_train_dp *dp, ft_status s, bool nonfinite, ft_err *err) {
    dp->failed = s != FT_OK;
    if (dp->simulate)
        return s;
    typedef struct {
        int32_t status, nonfinite;
        char host[64], msg[440];
    } agree_msg;
    const int64_t N = dp->world;
    agree_msg mine = {.status = (int32_t)s, .nonfinite = nonfinite};
    snprintf(mine.host, sizeof mine.host, "%s", ft_comm_host(dp->comm));
    if (s != FT_OK)
        ft_err_format(err, mine.msg, sizeof mine.msg);
    agree_msg *all = ft_calloc((size_t)N, sizeof *all);
    if (!all) /* the others are in the collective: they must not wait for this rank */
        ft_comm_abort(dp->comm, 1);
    ft_err e2;
    double t0 = ft_time_now();
    if (ft_comm_allgather_bytes(dp->comm, &mine, sizeof mine, all, &e2) != FT_OK)
        ft_comm_abort(dp->comm, 1);
    dp->comm_s += ft_time_now() - t0;
    dp->comm_bytes += (double)sizeof mine * (double)(N - 1);
    ft_status out = FT_OK;
    dp->nonfinite_rank = -1;
    for (int64_t k = N - 1; k >= 0; k--) { /* the lowest rank's */
        if (all[k].nonfinite)
            dp->nonfinite_rank = k;
        if (all[k].status != FT_OK)
            out = (ft_status)all[k].status;
    }
    for (int64_t k = 0; out != FT_OK && k < N; k++)
        if (all[k].status != FT_OK) {
            FT_ERR(err, out, "rank %lld of %lld (host %s): %s", (long long)k, (long long)N, all[k].host, all[k].msg);
            break;
        }
    ft_free(all);
    dp->failed = out != FT_OK;
    return out;
}

static ft_status timed(ft_train_dp *dp, double bytes, ft_status s, double t0) {
    dp->comm_s += ft_time_now() - t0;
    dp->comm_bytes += bytes;
    return s;
}

ft_status train_dp_step(ft_model *m, ft_workspace *ws, ft_optim *o, const ft_batch *b, const ft_train_step_params *p,
                        ft_train_step_result *r, ft_err *err) {
    ft_train_dp *dp = p->dp;
    *r = (ft_train_step_result){.loss = NAN, .grad_norm = NAN};
    const double denom = p->denom;
    if (!(denom > 0)) /* the trainer never steps on a batch without trainable tokens */
        return FT_ERR(err, FT_ERR_INVALID, "data-parallel step: the global batch's trainable token count is needed");
    int64_t micro = p->micro <= 0 ? b->B : p->micro, fit = ft_workspace_get_params(ws)->max_batch;
    if (micro > fit)
        micro = fit;
    const int64_t n_micro = (b->B + micro - 1) / micro, N = dp->world, n = dp->n;
    const int64_t E = ft_model_get_config(m)->num_local_experts;
    float *g = ft_model_param(m, 0)->grad;
    double *counts = NULL;
    ft_status s = FT_OK;
    if (ft_model_config_aux_coef(ft_model_get_config(m)) != 0) {
        /* The load-balancing loss is over the global batch: routing counts summed over all ranks
         * (whole numbers, so the sum is exact in any order). */
        counts = ft_calloc((size_t)E + 1, sizeof *counts);
        if (!counts)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (int64_t gi = dp->simulate ? 0 : dp->rank; s == FT_OK && gi < (dp->simulate ? N : dp->rank + 1); gi++) {
            int64_t r0, r1;
            share_rows(b->B, micro, n_micro, N, gi, &r0, &r1);
            s = share_counts(m, ws, b, r0, r1, micro, counts, err);
        }
        if (!dp->simulate)
            s = train_dp_agree(dp, s, false, err);
        if (s == FT_OK && !dp->simulate) {
            double t0 = ft_time_now();
            s = timed(dp, (double)(E + 1) * 8 * (double)(N - 1), ft_comm_sum_f64(dp->comm, counts, E + 1, err), t0);
        }
    }
    double v[2] = {0, 0};
    int64_t nt = 0;
    if (s == FT_OK && dp->simulate) {
        /* What N ranks compute: each share alone, then the shares added in rank order. */
        for (int64_t gi = 0; s == FT_OK && gi < N; gi++) {
            int64_t r0, r1, ng = 0;
            double vg[2];
            share_rows(b->B, micro, n_micro, N, gi, &r0, &r1);
            s = accumulate_share(m, ws, b, r0, r1, micro, denom, counts, vg, &ng, err);
            if (s != FT_OK)
                break;
            float *acc = dp->scratch;
            if (gi == 0) {
                memcpy(acc, g, (size_t)n * sizeof(float));
                v[0] = vg[0], v[1] = vg[1];
            } else {
#pragma omp parallel for schedule(static)
                for (int64_t i = 0; i < n; i++)
                    acc[i] += g[i];
                v[0] += vg[0], v[1] += vg[1];
            }
            nt += ng;
        }
        if (s == FT_OK)
            memcpy(g, dp->scratch, (size_t)n * sizeof(float));
    } else if (s == FT_OK) {
        int64_t r0, r1;
        share_rows(b->B, micro, n_micro, N, dp->rank, &r0, &r1);
        s = accumulate_share(m, ws, b, r0, r1, micro, denom, counts, v, &nt, err);
        if (s == FT_OK && dp->inject == TRAIN_FAULT_FAIL)
            s = FT_ERR(err, FT_ERR_IO, "rows %lld..%lld of the step's batch: Input/output error (injected by "
                       "FTUNE_TEST_FAULT)", (long long)r0, (long long)r1);
        if (s == FT_OK && dp->inject == TRAIN_FAULT_NAN) { /* what only this rank sees */
            v[0] = NAN;
            if (dp->n > 0)
                g[0] = NAN;
        }
        /* every rank's share computed (or failed) before any rank waits for the others' gradients */
        s = train_dp_agree(dp, s, !isfinite(v[0]) || !isfinite(v[1]), err);
        double t0 = ft_time_now();
        if (s == FT_OK)
            s = timed(dp, (double)(n - (dp->hi - dp->lo)) * 4,
                      ft_comm_reduce_scatter_f32(dp->comm, g, n, FT_GRAD_CHUNK, dp->scratch, err), t0);
        if (s == FT_OK)
            s = ft_comm_sum_f64(dp->comm, v, 2, err);
        if (s == FT_OK)
            s = ft_comm_sum_i64(dp->comm, &nt, 1, err);
    }
    ft_free(counts);
    if (s != FT_OK)
        return s;
    r->loss_sum = v[0];
    r->aux_loss = v[1];
    r->n_trainable = nt;
    if ((double)nt != denom)
        return FT_ERR(err, FT_ERR_INTERNAL,
                      "data parallelism: the ranks counted %lld trainable tokens in the global batch, the loader %.0f "
                      "(do all processes read the same data?)",
                      (long long)nt, denom);
    r->loss = r->loss_sum / denom;
    /* The norm: this rank's chunks, all ranks' chunk sums gathered and added in chunk order (the
     * same sum ft_model_grad_norm takes in one process). */
    double norm;
    if (dp->simulate) {
        norm = ft_model_grad_norm(m);
    } else {
        ft_model_grad_sumsq_chunks(m, dp->c_lo, dp->c_hi, dp->chunk_ss + dp->c_lo);
        double t0 = ft_time_now();
        FT_TRY(timed(dp, (double)(dp->c_hi - dp->c_lo) * 8 * (double)(N - 1),
                     ft_comm_allgather_f64(dp->comm, dp->chunk_ss, dp->n_chunks, 1, err), t0));
        double ss = 0;
        for (int64_t c = 0; c < dp->n_chunks; c++)
            ss += dp->chunk_ss[c];
        norm = sqrt(ss);
    }
    r->grad_norm = norm;
    if (!isfinite(r->loss) || !isfinite(r->aux_loss) || !isfinite(norm))
        return FT_OK; /* every rank sees the same sums: all skip the update */
    if (!dp->simulate && !dp->zero) { /* every rank updates everything: it needs the whole sum */
        double t0 = ft_time_now();
        FT_TRY(timed(dp, (double)(dp->hi - dp->lo) * 4 * (double)(N - 1),
                     ft_comm_allgather_f32(dp->comm, g, n, FT_GRAD_CHUNK, err), t0));
    }
    ft_err e2;
    ft_err_clear(&e2);
    s = ft_optim_step_norm(o, p->lr, p->max_norm, norm, &e2);
    if (s != FT_OK) {
        if (err)
            *err = e2;
        return s;
    }
    if (!dp->simulate && dp->zero) { /* each rank updated its shard: everyone gets all of them */
        double t0 = ft_time_now();
        FT_TRY(timed(dp, (double)(dp->hi - dp->lo) * 4 * (double)(N - 1),
                     ft_comm_allgather_f32(dp->comm, ft_model_param(m, 0)->data, n, FT_GRAD_CHUNK, err), t0));
    }
    r->updated = true;
    return FT_OK;
}
