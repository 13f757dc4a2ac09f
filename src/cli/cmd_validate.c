/* cli/cmd_validate.c: `ftune validate --model M --task-type T [--context-length N]
 * [--training-duration D] [--json] PATH` (SPEC §3, §6): check every record of the training
 * data, print each problem as `file:line:column: level: message`, then the summary, and an
 * estimate of the run's time from a measured training step of the model. Exit 0 when the data
 * is valid, 2 when it is not. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ftune/config.h"
#include "ftune/data.h"
#include "ftune/hf.h"
#include "ftune/json.h"
#include "ftune/model.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"
#include "ftune/train.h"

static const char *const synopsis = "--model M --task-type T [--context-length N] [--training-duration D] PATH";

static const cli_opt opts[] = {
    {"model", CLI_STR, "M: model folder, hub id org/name, or registered c.s.name (its tokenizer and template)"},
    {"task-type", CLI_STR, "T: CHAT_COMPLETION (default), INSTRUCTION_FINETUNE or CONTINUED_PRETRAIN"},
    {"context-length", CLI_INT, "N: tokens per sample (default min(8192, the model's maximum))"},
    {"training-duration", CLI_STR, "D: Nep, Ntok or Nba (default 1ep), for the totals and the estimate"},
    {"global-batch-size", CLI_INT, "N: rows per optimizer step, for the step count (default 16)"},
    {"seed", CLI_INT, "N: packing seed (default 17)"},
    {"max-line-bytes", CLI_INT, "N: longest JSONL line accepted (default 64 MiB)"},
    {"threads", CLI_INT, "N: worker threads (default: all cores)"},
    {"max-errors", CLI_INT, "N: problems listed in --json output (default 1000; all are counted)"},
    {"no-estimate", CLI_FLAG, "skip the measured training step"},
    {NULL, 0, NULL},
};

static void print_issue(void *ctx, const ft_data_issue *is) {
    (void)ctx;
    printf("%s:%lld:%lld: %s: %s\n", is->file, (long long)is->line, (long long)is->column,
           is->level == FT_ISSUE_ERROR ? "error" : "warning", is->message);
}

/* The run's time from one measured forward+backward of the real model on a short row, scaled
 * to the whole run by the FLOPs per token at the full context length (matmuls 6 x params,
 * causal attention 6 x layers x width x T). Needs the weights in memory, so very large models
 * are not measured. */
static void estimate(const char *dir, ft_data_report *r, int threads) {
    ft_model_config cfg;
    ft_err e;
    ft_err_clear(&e);
    char *cfg_path = ft_path_join(dir, "config.json");
    ft_status s = cfg_path ? ft_model_config_load(cfg_path, &cfg, &e) : FT_ERR_NOMEM;
    ft_free(cfg_path);
    if (s != FT_OK) {
        snprintf(r->est_note, sizeof r->est_note, "no estimate: cannot read the model's config.json: %s", e.msg);
        return;
    }
    double P = (double)ft_model_config_n_params(&cfg);
    double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    if (P * 4 * 3 > mem * 0.6) {
        snprintf(r->est_note, sizeof r->est_note,
                 "no estimate: measuring a step of this %.1fB-parameter model needs more memory than this machine has",
                 P / 1e9);
        return;
    }
    int64_t Tm = r->context_length < 128 ? r->context_length : 128;
    ft_model_params mp = ft_model_default_params();
    mp.max_batch = 1;
    mp.max_seq = Tm;
    mp.training = true;
    mp.threads = threads;
    ft_model *m = NULL;
    if ((s = ft_model_load(dir, &mp, &m, &e)) != FT_OK) {
        snprintf(r->est_note, sizeof r->est_note, "no estimate: cannot load the model: %s", e.msg);
        return;
    }
    int32_t *buf = ft_malloc((size_t)Tm * 4 * sizeof *buf);
    if (!buf) {
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
        s = ft_model_forward_backward(m, &b, (double)Tm, &loss, &nt, &e);
        double dt = ft_time_now() - t0;
        if (rep > 0 && (best < 0 || dt < best))
            best = dt;
    }
    ft_model_free(m);
    ft_free(buf);
    if (s != FT_OK || best <= 0) {
        snprintf(r->est_note, sizeof r->est_note, "no estimate: the measured step failed: %s", e.msg);
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

static void print_summary(const ft_data_report *r, ft_task_type task) {
    printf("\n%s: %lld record%s in %lld file%s: %lld valid; %lld error%s, %lld warning%s\n",
           r->valid ? "valid" : "INVALID", (long long)r->n_records, r->n_records == 1 ? "" : "s",
           (long long)r->n_sources, r->n_sources == 1 ? "" : "s", (long long)r->n_valid_records,
           (long long)r->n_errors, r->n_errors == 1 ? "" : "s", (long long)r->n_warnings,
           r->n_warnings == 1 ? "" : "s");
    if (!r->has_tokens) {
        printf("token statistics: need --model (the tokenizer%s)\n",
               task == FT_TASK_CHAT_COMPLETION ? " and chat template" : "");
        return;
    }
    printf("samples %lld, tokens %lld (before truncation %lld), trainable tokens %lld\n", (long long)r->n_samples,
           (long long)r->n_tokens, (long long)r->n_tokens_full, (long long)r->n_trainable);
    printf("truncated samples %lld, samples without trainable tokens %lld, longest sample %lld tokens\n",
           (long long)r->n_truncated, (long long)r->n_no_trainable, (long long)r->max_len);
    int64_t peak = 1;
    for (int i = 0; i < FT_DATA_HIST_BUCKETS; i++)
        if (r->hist[i] > peak)
            peak = r->hist[i];
    printf("token lengths:\n");
    for (int i = 0; i < FT_DATA_HIST_BUCKETS; i++) {
        if (!r->hist[i])
            continue;
        char range[48];
        if (i + 1 < FT_DATA_HIST_BUCKETS)
            snprintf(range, sizeof range, "%lld-%lld", (long long)ft_data_hist_lower(i),
                     (long long)ft_data_hist_lower(i + 1) - 1);
        else
            snprintf(range, sizeof range, "%lld+", (long long)ft_data_hist_lower(i));
        int bar = (int)(40 * r->hist[i] / peak);
        printf("  %14s %8lld ", range, (long long)r->hist[i]);
        for (int k = 0; k < (bar > 0 ? bar : 1); k++)
            fputs("#", stdout);
        putchar('\n');
    }
    printf("context length %lld: %lld packed rows per epoch, %.1f%% padding\n", (long long)r->context_length,
           (long long)r->rows_per_epoch, r->padding_pct);
    printf("tokens per epoch %lld x %.3g epochs = %lld tokens", (long long)r->tokens_per_epoch, r->epochs,
           (long long)r->tokens_total);
    if (r->steps_total > 0)
        printf(", %lld optimizer steps", (long long)r->steps_total);
    putchar('\n');
    if (r->est_seconds >= 0) {
        char d[32];
        ft_format_duration(r->est_seconds, d, sizeof d);
        printf("estimated training time: %s (%s)\n", d, r->est_note);
    } else {
        printf("estimated training time: unavailable (%s)\n", r->est_note);
    }
}

int cmd_validate(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&a, "validate", synopsis, opts, argc, argv);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    bool json_out = cli_has(&a, "json");
    ft_err err;
    ft_err_clear(&err);
    ft_task_type task = FT_TASK_CHAT_COMPLETION;
    if (a.n_pos != 1) {
        cli_args_free(&a);
        return cli_usage_error("validate", NULL, "expected one data path (a JSONL file or a folder)");
    }
    if (cli_has(&a, "task-type") && ft_task_type_parse(cli_str(&a, "task-type", NULL), &task, &err) != FT_OK) {
        cli_args_free(&a);
        return cli_usage_error("validate", "task-type", "%s", err.msg);
    }
    ft_validate_params vp;
    ft_validate_default_params(&vp, task);
    if (cli_has(&a, "training-duration") &&
        ft_duration_parse(cli_str(&a, "training-duration", NULL), "training_duration", &vp.duration, &err) != FT_OK) {
        cli_args_free(&a);
        return cli_usage_error("validate", "training-duration", "%s", err.msg);
    }
    vp.global_batch_size = cli_int(&a, "global-batch-size", 16);
    vp.seed = (uint64_t)cli_int(&a, "seed", 17);
    vp.threads = (int)cli_int(&a, "threads", 0);
    if (cli_has(&a, "max-line-bytes")) {
        if (cli_int(&a, "max-line-bytes", 0) < 16) {
            cli_args_free(&a);
            return cli_usage_error("validate", "max-line-bytes", "must be at least 16");
        }
        vp.reader.max_line_bytes = (size_t)cli_int(&a, "max-line-bytes", 0);
    }
    if (vp.global_batch_size < 1) {
        cli_args_free(&a);
        return cli_usage_error("validate", "global-batch-size", "must be at least 1");
    }
    const char *model = cli_str(&a, "model", NULL);
    char *dir = NULL;
    ft_tok *tok = NULL;
    ft_chat *chat = NULL;
    ft_data_report *rep = NULL;
    int exit_code = CLI_EXIT_FAIL;
    int64_t T = 0;
    if (model) {
        if (ft_hf_resolve(model, &dir, &err) != FT_OK) {
            exit_code = cli_report("validate", &err);
            goto out;
        }
        ft_model_config cfg;
        char *cp = ft_path_join(dir, "config.json");
        int64_t model_max = 0;
        if (cp && ft_model_config_load(cp, &cfg, &err) == FT_OK)
            model_max = cfg.max_position_embeddings;
        ft_free(cp);
        T = model_max > 0 && model_max < 8192 ? model_max : 8192;
        if (cli_has(&a, "context-length")) {
            T = cli_int(&a, "context-length", T);
            if (T < 2 || (model_max > 0 && T > model_max)) {
                exit_code = cli_usage_error("validate", "context-length", "must be 2..%lld (the model's maximum)",
                                            (long long)(model_max > 0 ? model_max : 1 << 30));
                goto out;
            }
        }
        if (ft_tok_load(dir, &tok, &err) != FT_OK) {
            exit_code = cli_report("validate", &err);
            goto out;
        }
    } else if (cli_has(&a, "context-length")) {
        T = cli_int(&a, "context-length", 0);
    }
    vp.sample.context_length = T > 0 ? T : 8192;
    if (model && task == FT_TASK_CHAT_COMPLETION && ft_chat_load(dir, &chat, &err) != FT_OK) {
        ft_err_prefix(&err, "the model's chat template");
        exit_code = cli_report("validate", &err);
        goto out;
    }
    vp.sample.tok = tok;
    vp.sample.chat = chat;
    vp.max_issues = (size_t)cli_int(&a, "max-errors", 1000);
    if (!json_out) {
        vp.on_issue = print_issue;
        vp.max_issues = 1; /* printed as found; the report only counts */
    }
    if (ft_data_validate(a.pos[0], &vp, &rep, NULL, &err) != FT_OK) {
        exit_code = cli_report("validate", &err);
        goto out;
    }
    if (!rep->has_tokens)
        snprintf(rep->est_note, sizeof rep->est_note, "no token statistics: give --model");
    else if (cli_has(&a, "no-estimate"))
        snprintf(rep->est_note, sizeof rep->est_note, "--no-estimate");
    else if (rep->valid)
        estimate(dir, rep, vp.threads);
    else
        snprintf(rep->est_note, sizeof rep->est_note, "the data is not valid");
    if (json_out) {
        json_t *j = ft_data_report_to_json(rep, vp.max_issues);
        char *s = ft_json_dumps(j, 2);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(j);
    } else {
        print_summary(rep, task);
    }
    exit_code = rep->valid ? CLI_EXIT_OK : CLI_EXIT_USAGE;
out:
    ft_data_report_free(rep);
    ft_chat_free(chat);
    ft_tok_free(tok);
    ft_free(dir);
    cli_args_free(&a);
    return exit_code;
}
