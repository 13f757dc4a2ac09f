/* train/estimate.c: the run-time estimate of SPEC §3's validation summary, from a measured
 * forward+backward of the actual model on this machine (shared by `ftune validate` and the
 * validation step of `ftune create`). */
#include <stdio.h>
#include <unistd.h>

#include "ftune/config.h"
#include "ftune/model.h"
#include "ftune/train.h"

/* The run's time from one measured forward+backward of the real model on a short row, scaled
 * to the whole run by the FLOPs per token at the full context length (matmuls 6 x params,
 * causal attention 6 x layers x width x T). Needs the weights in memory, so very large models
 * are not measured. */
void ft_train_estimate(const char *dir, ft_data_report *r, int threads) {
    ft_model_config cfg;
    ft_err e;
    ft_err_clear(&e);
    char *cfg_path = ft_path_join(dir, "config.json");
    ft_status s = cfg_path ? ft_model_config_load(cfg_path, &cfg, &e) : FT_ERR_NOMEM;
    ft_free(cfg_path);
    if (s != FT_OK) {
        char why[sizeof r->est_note - 64];
        ft_err_format(&e, why, sizeof why);
        snprintf(r->est_note, sizeof r->est_note, "no estimate: cannot read the model's config.json: %s", why);
        return;
    }
    char why[sizeof r->est_note - 64];
    double P = (double)ft_model_config_n_params(&cfg);
    double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    if (P * 4 * 3 > mem * 0.6) {
        snprintf(r->est_note, sizeof r->est_note,
                 "no estimate: measuring a step of this %.1fB-parameter model needs more memory than this machine has",
                 P / 1e9);
        return;
    }
    int64_t Tm = r->context_length < 128 ? r->context_length : 128;
    if (threads > 0)
        ft_tensor_set_threads(threads);
    ft_model_params mp = ft_model_default_params();
    mp.training = true;
    ft_model *m = NULL;
    if ((s = ft_model_load(dir, &mp, &m, &e)) != FT_OK) {
        ft_err_format(&e, why, sizeof why);
        snprintf(r->est_note, sizeof r->est_note, "no estimate: cannot load the model: %s", why);
        return;
    }
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_batch = 1;
    wp.max_seq = Tm;
    wp.training = true;
    ft_workspace *ws = NULL;
    if ((s = ft_workspace_new(m, &wp, &ws, &e)) != FT_OK) {
        ft_model_free(m);
        ft_err_format(&e, why, sizeof why);
        snprintf(r->est_note, sizeof r->est_note, "no estimate: %s", why);
        return;
    }
    int32_t *buf = ft_malloc((size_t)Tm * 4 * sizeof *buf);
    if (!buf) {
        ft_workspace_free(ws);
        ft_model_free(m);
        snprintf(r->est_note, sizeof r->est_note, "no estimate: out of memory");
        return;
    }
    for (int64_t t = 0; t < Tm; t++) {
        buf[t] = (int32_t)(t % (cfg.vocab_size > 1 ? cfg.vocab_size - 1 : 1)) + 1;
        buf[Tm + t] = t + 1 < Tm ? buf[t] : -100;
        buf[2 * Tm + t] = (int32_t)t;
        buf[3 * Tm + t] = 0;
    }
    ft_batch b = {1, Tm, buf, buf + Tm, buf + 2 * Tm, buf + 3 * Tm};
    double best = -1;
    for (int rep = 0; rep < 3 && s == FT_OK; rep++) { /* the first warms caches; keep the fastest */
        double loss;
        int64_t nt;
        double t0 = ft_time_now();
        s = ft_model_forward_backward(m, ws, &b, (double)Tm, &loss, &nt, &e);
        double dt = ft_time_now() - t0;
        if (rep > 0 && (best < 0 || dt < best))
            best = dt;
    }
    ft_workspace_free(ws);
    ft_model_free(m);
    ft_free(buf);
    if (s != FT_OK || best <= 0) {
        ft_err_format(&e, why, sizeof why);
        snprintf(r->est_note, sizeof r->est_note, "no estimate: the measured step failed: %s", why);
        return;
    }
    double L = (double)cfg.num_hidden_layers, C = (double)cfg.hidden_size, T = (double)r->context_length;
    double per_tok_full = 6 * P + 6 * L * C * T, per_tok_meas = 6 * P + 6 * L * C * (double)Tm;
    double row_tokens = (double)r->rows_per_epoch * r->epochs * T; /* padding costs compute too */
    r->est_seconds = best / (double)Tm * (per_tok_full / per_tok_meas) * row_tokens;
    snprintf(r->est_note, sizeof r->est_note,
             "from a measured forward+backward of %lld tokens (%.3f s) on this machine, fp32 CPU, optimizer "
             "excluded",
             (long long)Tm, best);
}

