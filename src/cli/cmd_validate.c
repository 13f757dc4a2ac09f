/* cli/cmd_validate.c: `ftune validate --model M --task-type T [--context-length N]
 * [--training-duration D] [--json] PATH` (SPEC §3, §6): check every record of the training
 * data, print each problem as `file:line:column: level: message`, then the summary, and an
 * estimate of the run's time from a measured training step of the model. Exit 0 when the data
 * is valid, 2 when it is not. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "data_summary.h"
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
    {"global-batch-size", CLI_INT, "N: rows per optimizer step, for the step count (default: automatic, as ftune create)"},
    {"seed", CLI_INT, "N: packing seed (default 17)"},
    {"max-line-bytes", CLI_INT, "N: longest JSONL line accepted (default 64 MiB)"},
    {"threads", CLI_INT, "N: worker threads (default: all cores)"},
    {"max-errors", CLI_INT, "N: problems listed in --json output (default 1000; all are counted)"},
    {"no-estimate", CLI_FLAG, "skip the measured training step"},
    {"micro-batch-size", CLI_STR, "N: rows per forward/backward for the memory plan (default automatic)"},
    {"optimizer", CLI_STR, "adamw (default) | lion, for the memory plan"},
    {"dtype", CLI_STR, "the run's dtype, for the memory plan (default fp32)"},
    {"memory-limit", CLI_STR, "20G | 80%: the limit a run must fit (default 95% of the available memory)"},
    {"activation-checkpointing", CLI_STR, "auto (default) | on | off, for the memory plan"},
    {"processes", CLI_INT, "N: plan memory per process of a data-parallel run on N processes (mpirun -np N; ZeRO-1)"},
    {"processes-per-host", CLI_INT, "N: of them on this machine, sharing its memory (default: all of --processes)"},
    {"table-version", CLI_INT, "N: read a Delta table at version N (also: PATH@N)"},
    {"prompt-column", CLI_STR, "NAME: Parquet column of IFT prompts (default prompt)"},
    {"response-column", CLI_STR, "NAME: Parquet column of IFT responses (default response, else completion)"},
    {"messages-column", CLI_STR, "NAME: Parquet column of chat messages (default messages)"},
    {"text-column", CLI_STR, "NAME: Parquet column of CPT documents (default text)"},
    {NULL, 0, NULL},
};

static void print_issue(void *ctx, const ft_data_issue *is) {
    (void)ctx;
    char place[1200];
    printf("%s: %s: %s\n", ft_data_issue_place(is, place, sizeof place), is->level == FT_ISSUE_ERROR ? "error" : "warning",
           is->message);
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
        return cli_usage_error("validate", NULL,
                               "expected one data path (a JSONL file or folder, a Delta table, an HF dataset org/name/split, "
                               "Parquet/Arrow files)");
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
    vp.reader.prompt_column = cli_str(&a, "prompt-column", NULL);
    vp.reader.response_column = cli_str(&a, "response-column", NULL);
    vp.reader.messages_column = cli_str(&a, "messages-column", NULL);
    vp.reader.text_column = cli_str(&a, "text-column", NULL);
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
    /* The run's memory settings, checked as create checks them. */
    ft_train_config rc_cfg = ft_train_default_config();
    static const char *const mem_flags[] = {"micro-batch-size", "optimizer", "dtype", "memory-limit",
                                            "activation-checkpointing"};
    for (size_t i = 0; i < sizeof mem_flags / sizeof *mem_flags; i++) {
        const char *v = cli_str(&a, mem_flags[i], NULL);
        if (v && ft_train_config_set(&rc_cfg, mem_flags[i], v, &err) != FT_OK) {
            ft_train_config_deinit(&rc_cfg);
            cli_args_free(&a);
            return cli_usage_error("validate", mem_flags[i], "%s", err.msg);
        }
    }
    rc_cfg.global_batch_size = cli_int(&a, "global-batch-size", 0);
    const int64_t processes = cli_int(&a, "processes", 1), per_host = cli_int(&a, "processes-per-host", processes);
    if (processes < 1 || per_host < 1 || per_host > processes) {
        ft_train_config_deinit(&rc_cfg);
        bool host_flag = processes >= 1;
        cli_args_free(&a);
        return host_flag ? cli_usage_error("validate", "processes-per-host", "must be 1..%lld (--processes)",
                                           (long long)processes)
                         : cli_usage_error("validate", "processes", "must be at least 1");
    }
    const char *model = cli_str(&a, "model", NULL);
    ft_model_config mcfg;
    bool have_mcfg = false;
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
        if (cp && ft_model_config_load(cp, &cfg, &err) == FT_OK) {
            model_max = cfg.max_position_embeddings;
            mcfg = cfg;
            have_mcfg = true;
        }
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
    char *data_path = cli_has(&a, "table-version")
                          ? ft_asprintf("%s@%lld", a.pos[0], (long long)cli_int(&a, "table-version", 0))
                          : ft_strdup(a.pos[0]);
    if (cli_has(&a, "table-version") && (cli_int(&a, "table-version", -1) < 0 || strchr(a.pos[0], '@'))) {
        ft_free(data_path);
        exit_code = cli_usage_error("validate", "table-version", "must be a version number, given once (not with PATH@N)");
        goto out;
    }
    ft_status vs = data_path ? ft_data_validate(data_path, &vp, &rep, NULL, &err) : FT_ERR(&err, FT_ERR_NOMEM, "out of memory");
    ft_free(data_path);
    if (vs != FT_OK) {
        exit_code = cli_report("validate", &err);
        goto out;
    }
    if (rep->valid) /* steps and epochs as the trainer will count them */
        cli_plan_batches(rep, vp.duration, cli_int(&a, "global-batch-size", 0));
    if (!rep->has_tokens)
        snprintf(rep->est_note, sizeof rep->est_note, "no token statistics: give --model");
    else if (cli_has(&a, "no-estimate"))
        snprintf(rep->est_note, sizeof rep->est_note, "--no-estimate");
    else if (rep->valid)
        ft_train_estimate(dir, rep, vp.threads);
    else
        snprintf(rep->est_note, sizeof rep->est_note, "the data is not valid");
    /* The memory plan of the run these settings would make (validate exits 2 when it cannot fit). */
    json_t *mem_json = NULL;
    int mem_rc = CLI_EXIT_OK;
    if (have_mcfg && rep->valid && !json_out)
        cli_print_data_summary(stdout, rep, task);
    if (have_mcfg && rep->valid)
        mem_rc = cli_memory_plan(json_out ? NULL : stdout, "validate", &rc_cfg, &mcfg, T, rep->rows_per_epoch, processes,
                                 per_host,
                                 json_out ? &mem_json : NULL);
    if (json_out) {
        json_t *j = ft_data_report_to_json(rep, vp.max_issues);
        if (mem_json)
            json_object_set_new(j, "memory", mem_json);
        char *s = ft_json_dumps(j, 2);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(j);
    } else if (!(have_mcfg && rep->valid)) {
        cli_print_data_summary(stdout, rep, task);
    }
    exit_code = rep->valid && mem_rc == CLI_EXIT_OK ? CLI_EXIT_OK : CLI_EXIT_USAGE;
out:
    ft_train_config_deinit(&rc_cfg);
    ft_data_report_free(rep);
    ft_chat_free(chat);
    ft_tok_free(tok);
    ft_free(dir);
    cli_args_free(&a);
    return exit_code;
}
