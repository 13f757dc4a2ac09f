/* runs/validate.c: data validation as a service call (SPEC §3): resolve the model, load its
 * tokenizer and chat template, check every record, and plan the run's steps; used by
 * POST /api/validate. `ftune validate` prints issues as they are found and shares the plan. */
#include <string.h>

#include "ftune/config.h"
#include "ftune/hf.h"
#include "ftune/runs.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"
#include "ftune/train.h"

void ft_runs_validate_default_params(ft_runs_validate_params *p) {
    memset(p, 0, sizeof *p);
    p->task = FT_TASK_CHAT_COMPLETION;
    p->duration.value = 1;
    p->duration.unit = FT_DURATION_EPOCHS;
    p->seed = 17;
    p->max_errors = 1000;
}

void ft_runs_plan_batches(ft_data_report *r, ft_data_duration d, int64_t global_batch_size) {
    if (!r->has_tokens || r->rows_per_epoch <= 0 || r->context_length <= 0)
        return;
    int64_t G = global_batch_size;
    if (G <= 0) { /* the trainer's automatic size (ftune/train.h) */
        G = 65536 / r->context_length;
        G = G < 1 ? 1 : G > 64 ? 64 : G;
        int64_t cap = r->rows_per_epoch / 8;
        if (G > cap)
            G = cap < 1 ? 1 : cap;
    }
    double rows = (double)r->rows_per_epoch;
    switch (d.unit) {
    case FT_DURATION_EPOCHS: r->epochs = (double)d.value; break;
    case FT_DURATION_TOKENS:
        r->epochs = r->tokens_per_epoch > 0 ? (double)d.value / (double)r->tokens_per_epoch : 0;
        break;
    case FT_DURATION_BATCHES: r->epochs = (double)d.value * (double)G / rows; break;
    }
    r->tokens_total = (int64_t)((double)r->tokens_per_epoch * r->epochs + 0.5);
    r->steps_total = d.unit == FT_DURATION_BATCHES ? d.value : (int64_t)((rows * r->epochs + (double)G - 1) / (double)G);
    if (r->steps_total < 1)
        r->steps_total = 1;
}

ft_status ft_runs_validate(const ft_runs_validate_params *p, ft_data_report **report, const char **field,
                           ft_err *err) {
    *report = NULL;
    const char *dummy;
    if (!field)
        field = &dummy;
    *field = NULL;
    char *dir = NULL, *mapped = NULL;
    ft_tok *tok = NULL;
    ft_chat *chat = NULL;
    ft_status st = FT_OK;
    int64_t T = p->context_length;
    if (!p->path || !*p->path) {
        *field = "path";
        return FT_ERR(err, FT_ERR_INVALID, "a data path is required");
    }
    if (p->model) {
        if ((st = ft_hf_resolve(p->model, &dir, err)) != FT_OK) {
            *field = "model";
            goto out;
        }
        ft_model_config mc;
        int64_t model_max = 0;
        char *cp = ft_path_join(dir, "config.json");
        if (!cp) {
            st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            goto out;
        }
        if ((st = ft_model_config_load(cp, &mc, err)) != FT_OK) {
            ft_free(cp);
            *field = "model";
            goto out;
        }
        ft_free(cp);
        model_max = mc.max_position_embeddings;
        if (T == 0)
            T = model_max > 0 && model_max < 8192 ? model_max : 8192;
        if (T < 2 || (model_max > 0 && T > model_max)) {
            *field = "context_length";
            st = FT_ERR(err, FT_ERR_INVALID, "context_length %lld: must be 2..%lld (the model's maximum)",
                        (long long)T, (long long)(model_max > 0 ? model_max : 1 << 30));
            goto out;
        }
        if ((st = ft_tok_load(dir, &tok, err)) != FT_OK) {
            *field = "model";
            goto out;
        }
        if (p->task == FT_TASK_CHAT_COMPLETION && (st = ft_chat_load(dir, &chat, err)) != FT_OK) {
            ft_err_prefix(err, "task_type CHAT_COMPLETION needs the model's chat template");
            *field = "model";
            goto out;
        }
    }
    mapped = ft_path_map_volumes(p->path);
    if (!mapped) {
        st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (!ft_path_exists(mapped)) {
        *field = "path";
        st = FT_ERR(err, FT_ERR_NOT_FOUND, "%s: no such file or folder", p->path);
        goto out;
    }
    ft_validate_params vp;
    ft_validate_default_params(&vp, p->task);
    vp.sample.task = p->task;
    vp.sample.tok = tok;
    vp.sample.chat = chat;
    vp.sample.context_length = T > 0 ? T : 8192;
    vp.duration = p->duration;
    vp.global_batch_size = p->global_batch_size > 0 ? p->global_batch_size : 16;
    vp.seed = p->seed;
    vp.threads = p->threads;
    vp.max_issues = p->max_errors ? p->max_errors : 1000;
    if ((st = ft_data_validate(mapped, &vp, report, NULL, err)) != FT_OK) {
        *field = "path";
        goto out;
    }
    ft_data_report *r = *report;
    if (r->valid)
        ft_runs_plan_batches(r, p->duration, p->global_batch_size);
    if (!r->has_tokens)
        snprintf(r->est_note, sizeof r->est_note, "no token statistics: give a model");
    else if (!p->estimate)
        snprintf(r->est_note, sizeof r->est_note, "not requested (\"estimate\": true measures a training step)");
    else if (r->valid)
        ft_train_estimate(dir, r, p->threads);
    else
        snprintf(r->est_note, sizeof r->est_note, "the data is not valid");
out:
    ft_free(mapped);
    ft_chat_free(chat);
    ft_tok_free(tok);
    ft_free(dir);
    return st;
}
