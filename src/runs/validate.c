/* runs/validate.c: data validation as a service call (SPEC §3): resolve the model, load its
 * tokenizer and chat template, check every record, and plan the run's steps; used by
 * POST /api/validate. `ftune validate` prints issues as they are found and shares the plan. */
#include <string.h>

#include "ftune/config.h"
#include "ftune/hf.h"
#include "ftune/memplan.h"
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

ft_status ft_runs_memory_plan(const ft_train_config *c, const ft_model_config *mc, int64_t T, int64_t rows_per_epoch,
                              const ft_memplan_world *world, json_t **json, char *summary, size_t cap, ft_err *err) {
    if (json)
        *json = NULL;
    if (summary && cap)
        summary[0] = 0;
    int64_t G = c->global_batch_size;
    if (G <= 0) { /* the trainer's automatic size (ftune/train.h) */
        G = 65536 / T;
        G = G < 1 ? 1 : G > 64 ? 64 : G;
        int64_t epoch_cap = rows_per_epoch / 8;
        if (rows_per_epoch > 0 && G > epoch_cap)
            G = epoch_cap < 1 ? 1 : epoch_cap;
    }
    ft_memplan_machine mm;
    ft_memplan_machine_read(&mm);
    ft_memplan_choice ch;
    uint64_t limit = 0;
    ft_err e;
    ft_err_clear(&e);
    ft_status s = ft_memplan_for_run(c, mc, T, G, world, &mm, &ch, &limit, &e);
    const int64_t N = world && world->size > 1 ? world->size : 1;
    const bool zero = N > 1 && world->zero;
    if (json) {
        *json = json_pack("{s:b, s:I, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "fits", s == FT_OK,
                          "predicted_peak_bytes", (json_int_t)ch.plan.total, "limit_bytes", (json_int_t)limit,
                          "available_bytes", (json_int_t)mm.available, "activation_checkpointing", ch.checkpointing,
                          "micro_batch_size", (json_int_t)ch.micro_batch, "weights_bytes", (json_int_t)ch.plan.params,
                          "gradients_bytes", (json_int_t)ch.plan.grads, "optimizer_bytes",
                          (json_int_t)ch.plan.optimizer, "activations_bytes", (json_int_t)ch.plan.workspace,
                          "loader_bytes", (json_int_t)ch.plan.batches, "process_bytes", (json_int_t)ch.plan.process,
                          "available_source", mm.source);
        if (*json) {
            json_object_set_new(*json, "comm_bytes", json_integer((json_int_t)ch.plan.comm));
            json_object_set_new(*json, "predicted_peak_others_bytes", json_integer((json_int_t)ch.plan.total_others));
            json_object_set_new(*json, "world_size", json_integer((json_int_t)N));
            json_object_set_new(*json, "zero", json_boolean(zero));
        }
        if (*json && s != FT_OK)
            json_object_set_new(*json, "message", json_string(e.msg));
    }
    if (s != FT_OK) {
        if (err)
            *err = e;
        return s;
    }
    if (summary && cap) {
        char desc[700], l[32], a[32];
        ft_memplan_params p = ft_memplan_default_params(mc);
        p.dtype = ch.dtype;
        p.optimizer = c->optimizer == FT_OPTIMIZER_LION ? FT_OPTIM_LION : FT_OPTIM_ADAMW;
        p.micro_batch = ch.micro_batch;
        p.context_length = T;
        p.checkpointing = ch.checkpointing;
        p.world_size = N;
        p.zero = zero;
        ft_memplan_describe(&p, &ch.plan, desc, sizeof desc);
        snprintf(summary, cap, "predicted peak %s; limit %s of %s available (%s)", desc,
                 ft_memplan_format_bytes(limit, l, 32), ft_memplan_format_bytes(mm.available, a, 32), mm.source);
    }
    return FT_OK;
}

ft_status ft_runs_validate(const ft_runs_validate_params *p, ft_data_report **report, json_t **memory,
                           const char **field, ft_err *err) {
    *report = NULL;
    if (memory)
        *memory = NULL;
    ft_model_config mcfg;
    bool have_mcfg = false;
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
        mcfg = mc;
        have_mcfg = true;
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
    /* The memory plan of the run these settings would make (refused by create when it cannot fit). */
    if (memory && have_mcfg && r->valid) {
        ft_train_config dflt = ft_train_default_config();
        ft_train_config c = p->run ? *p->run : dflt;
        c.global_batch_size = p->global_batch_size;
        ft_memplan_world w = {.size = p->world_size, .zero = true};
        ft_runs_memory_plan(&c, &mcfg, T, r->rows_per_epoch, &w, memory, NULL, 0, NULL);
        ft_train_config_deinit(&dflt);
    }
out:
    ft_free(mapped);
    ft_chat_free(chat);
    ft_tok_free(tok);
    ft_free(dir);
    return st;
}
