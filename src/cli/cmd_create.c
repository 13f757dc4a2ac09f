/* cli/cmd_create.c: `ftune create`: every create() parameter of SPEC §2 as a flag (a bad value
 * exits 2 naming its flag), created by the run service (ft_runs_create: the run name and
 * experiment folder of SPEC §1, input validation before queueing, the memory plan), then the run
 * in the foreground with a progress bar, or handed to the background worker with --detach. */
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ftune/ckpt.h"
#include "ftune/data.h"
#include "ftune/hf.h"
#include "ftune/json.h"
#include "ftune/runs.h"
#include "ftune/train.h"
#include "data_summary.h"
#include "ftune/config.h"
#include "ftune/safetensors.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"
#include "run_common.h"


/* Flags that are config parameters: the flag name is the parameter with '-' for '_'. */
static const char *const param_flags[] = {
    "model",          "train-data-path", "register-to",       "task-type",        "eval-data-path",
    "custom-weights-path", "training-duration", "learning-rate", "context-length", "experiment-path",
    "data-prep-cluster-id", "seed",      "global-batch-size", "micro-batch-size", "optimizer",
    "weight-decay",   "warmup",          "grad-clip",         "loss-on",          "save-interval",
    "keep-checkpoints", "dtype",         "device",            "threads",          "eval-max-new-tokens",
    "memory-limit",   "activation-checkpointing", "export-dtype",
    "prompt-column",  "response-column", "messages-column",   "text-column",      "export-gguf",
};

static const cli_opt opts[] = {
    {"model", CLI_STR, "M: model folder, hub id org/name, or registered c.s.n[/version] (required)"},
    {"train-data-path", CLI_STR, "P: JSONL file or folder (chat, IFT), folder of .txt (CPT), a Delta table "
                                 "c.s.t, an HF dataset org/name/split, Parquet/Arrow files (required)"},
    {"register-to", CLI_STR, "c.s[.n]: where the result is registered (required)"},
    {"export-gguf", CLI_STR, "f32|f16|bf16: also register model.gguf for llama.cpp / Ollama (docs/export.md)"},
    {"task-type", CLI_STR, "CHAT_COMPLETION (default) | INSTRUCTION_FINETUNE | CONTINUED_PRETRAIN"},
    {"eval-data-path", CLI_STR, "P: evaluation data, same format"},
    {"table-version", CLI_INT, "N: read the Delta table of --train-data-path at version N (also: table@N)"},
    {"eval-prompt", CLI_STR_LIST, "TEXT: a prompt sampled at every checkpoint (repeatable)"},
    {"custom-weights-path", CLI_STR, "P: start from an earlier run's checkpoint"},
    {"training-duration", CLI_STR, "Nep | Ntok | Nba (default 1ep)"},
    {"learning-rate", CLI_STR, "peak learning rate (default 5e-7)"},
    {"context-length", CLI_STR, "N tokens (default min(8192, model max))"},
    {"no-validate-inputs", CLI_FLAG, "skip checking paths and every record before queueing"},
    {"experiment-path", CLI_STR, "P: where checkpoints and metrics go (default /Users/<user>/<run>); the run folder P/<name> must be new or empty (docs/runs.md)"},
    {"data-prep-cluster-id", CLI_STR, "accepted for compatibility, unused"},
    {"prompt-column", CLI_STR, "NAME: Parquet column of IFT prompts (default prompt)"},
    {"response-column", CLI_STR, "NAME: Parquet column of IFT responses (default response, else completion)"},
    {"messages-column", CLI_STR, "NAME: Parquet column of chat messages (default messages)"},
    {"text-column", CLI_STR, "NAME: Parquet column of CPT documents (default text)"},
    {"name", CLI_STR, "the run name (default <task>-<model>-<6 letters>)"},
    {"seed", CLI_STR, "N (default 17)"},
    {"global-batch-size", CLI_STR, "sequences per optimizer step (default automatic)"},
    {"micro-batch-size", CLI_STR, "sequences per forward/backward (default automatic)"},
    {"optimizer", CLI_STR, "adamw (default) | lion"},
    {"weight-decay", CLI_STR, "decoupled weight decay (default 0)"},
    {"warmup", CLI_STR, "2% (default) | Nba | Nep | Ntok"},
    {"grad-clip", CLI_STR, "max gradient norm (default 1.0; 0 disables)"},
    {"loss-on", CLI_STR, "all_assistant (default) | last_assistant"},
    {"save-interval", CLI_STR, "Nba | Nep (default every epoch and at the end)"},
    {"keep-checkpoints", CLI_STR, "N newest to keep (default all)"},
    {"dtype", CLI_STR, "fp32 (default) | bf16 (mixed precision: bf16 GEMM operands, fp32 master weights, gradients and optimizer state) | auto (the fastest on this machine)"},
    {"device", CLI_STR, "cpu"},
    {"threads", CLI_STR, "N (default all cores)"},
    {"eval-max-new-tokens", CLI_STR, "N tokens per eval prompt (default 100)"},
    {"memory-limit", CLI_STR,
     "20G | 80%: the run's predicted peak memory must fit (default 95% of the available memory)"},
    {"activation-checkpointing", CLI_STR, "auto (default: only when needed to fit) | on | off"},
    {"export-dtype", CLI_STR, "auto (default: the base model's torch_dtype, bf16 for real checkpoints) | fp32 | bf16 | fp16: the exported weights"},
    {"detach", CLI_FLAG, "queue the run for the background worker and return its name at once"},
    {"quiet", CLI_FLAG, "no progress bar or event lines"},
    {NULL, 0, NULL},
};

/* The create command's face of ft_runs_create: the data's problems and summary on stderr. */
typedef struct create_ui {
    bool quiet;
    int64_t shown;        /* problems printed (at most 50) */
    int64_t issues[2];    /* problems of the training and the eval data */
    ft_task_type task;
} create_ui;

static void on_issue(void *user, const char *field, const ft_data_issue *is) {
    create_ui *u = user;
    u->issues[strcmp(field, "eval_data_path") == 0]++;
    if (u->shown++ >= 50)
        return;
    char place[1200];
    fprintf(stderr, "%s: %s: %s\n", ft_data_issue_place(is, place, sizeof place),
            is->level == FT_ISSUE_ERROR ? "error" : "warning", is->message);
}

static void on_summary(void *user, const char *path, const ft_data_report *rep) {
    create_ui *u = user;
    fprintf(stderr, "%s:", path);
    cli_print_data_summary(stderr, rep, u->task);
}

static void on_memory(void *user, const char *summary) {
    create_ui *u = user;
    if (!u->quiet)
        fprintf(stderr, "memory: %s\n", summary);
}

/* An error of ft_runs_create as the CLI says it: naming the flag of its field. */
static int create_error(const create_ui *u, const char *field, const ft_err *err) {
    if (!field)
        return cli_report("create", err);
    char flag[64];
    snprintf(flag, sizeof flag, "%s", field);
    for (char *q = flag; *q; q++)
        if (*q == '_')
            *q = '-';
    bool data = (!strcmp(field, "train_data_path") && u->issues[0]) || (!strcmp(field, "eval_data_path") && u->issues[1]);
    return cli_usage_error("create", flag, "%s%s", err->msg, data ? " (see above; --no-validate-inputs skips this check)" : "");
}

int cmd_create(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "create", "--model M --train-data-path P --register-to c.s[.n] [options]", opts, argc,
                        argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    int rc = CLI_EXIT_OK;
    ft_train_config cfg = ft_train_default_config();
    ft_err err;
    /* a bad FTUNE_GEMM is refused before a run is recorded (the trainer would fail it later) */
    if (ft_tensor_gemm_env_check(&err) != FT_OK) {
        ft_train_config_deinit(&cfg);
        cli_args_free(&a);
        return cli_usage_error("create", NULL, "%s", err.msg);
    }
    ft_store *s = NULL;
    char *name = NULL;
    bool json = cli_has(&a, "json");

    /* The run's settings are recorded as JSON, which holds only UTF-8: a path or prompt in
     * another encoding would be lost on the way (refused as "required", or dropped). */
    for (size_t k = 0; k < a.n_opts; k++) {
        if (!a.given[k] || (a.opts[k].kind != CLI_STR && a.opts[k].kind != CLI_STR_LIST))
            continue;
        size_t nv = a.opts[k].kind == CLI_STR ? 1 : a.list_n[k];
        for (size_t i = 0; i < nv; i++) {
            const char *v = a.opts[k].kind == CLI_STR ? a.str[k] : a.list[k][i];
            size_t len = strlen(v), ok = ft_utf8_valid_prefix(v, len);
            if (ok < len) {
                rc = cli_usage_error("create", a.opts[k].name,
                                     "is not valid UTF-8 (byte 0x%02X at offset %zu); ftune records a run's settings "
                                     "as JSON text: rename the file or folder (or link it under a UTF-8 name)%s",
                                     (unsigned char)v[ok], ok,
                                     a.opts[k].kind == CLI_STR_LIST ? ", or write the text in UTF-8" : "");
                cli_args_free(&a);
                return rc;
            }
        }
    }

    static const char *const required[] = {"model", "train-data-path", "register-to"};
    for (size_t i = 0; i < 3; i++)
        if (!cli_has(&a, required[i])) {
            rc = cli_usage_error("create", required[i], "required");
            goto done;
        }
    for (size_t i = 0; i < sizeof param_flags / sizeof *param_flags; i++) {
        const char *v = cli_str(&a, param_flags[i], NULL);
        if (!v)
            continue;
        if (ft_train_config_set(&cfg, param_flags[i], v, &err) != FT_OK) {
            rc = cli_usage_error("create", param_flags[i], "%s", err.msg);
            goto done;
        }
    }
    size_t n_prompts;
    const char **prompts = cli_list(&a, "eval-prompt", &n_prompts);
    for (size_t i = 0; i < n_prompts; i++)
        if (ft_train_config_set(&cfg, "eval_prompts", prompts[i], &err) != FT_OK) {
            rc = cli_usage_error("create", "eval-prompt", "%s", err.msg);
            goto done;
        }
    if (cli_has(&a, "table-version")) {
        int64_t v = cli_int(&a, "table-version", -1);
        char *p = v >= 0 ? ft_asprintf("%s@%lld", cfg.train_data_path, (long long)v) : NULL;
        if (v < 0 || strchr(cfg.train_data_path, '@') || !ft_data_path_is_table(p ? p : "")) {
            ft_free(p);
            rc = cli_usage_error("create", "table-version",
                                 v < 0 ? "must be a version number (0, 1, ...)"
                                       : "applies to a Delta table given once (catalog.schema.table or a table folder, "
                                         "without @N)");
            goto done;
        }
        ft_free(cfg.train_data_path);
        cfg.train_data_path = p;
    }
    cfg.validate_inputs = !cli_has(&a, "no-validate-inputs");
    if (cli_has(&a, "name")) {
        ft_free(cfg.name);
        cfg.name = ft_strdup(cli_str(&a, "name", ""));
    }
    bool detach = cli_has(&a, "detach"), quiet = cli_has(&a, "quiet");
    if (detach && ft_comm_size(run_comm()) > 1) {
        rc = cli_usage_error("create", "detach",
                             "a run on %lld processes (mpirun) trains in the foreground: the background worker is one "
                             "process; drop --detach (or run the mpirun command itself in the background)",
                             (long long)ft_comm_size(run_comm()));
        goto done;
    }
    char self[4096];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sn > 0 ? sn : 0] = 0;
    create_ui ui = {.quiet = quiet, .task = cfg.task_type};
    ft_runs_create_params cp = {.config = &cfg,
                                .detach = detach,
                                .worker_exe = sn > 0 ? self : NULL,
                                .summary = !quiet,
                                .user = &ui,
                                .on_issue = on_issue,
                                .on_summary = on_summary,
                                .on_memory = on_memory};
    /* under mpirun: the plan per process, the ranks on this host sharing its memory */
    ft_memplan_world world = {.size = ft_comm_size(run_comm()), .local = ft_comm_local_size(run_comm()), .zero = true};
    const char *fz = getenv("FTUNE_ZERO");
    world.zero = !(fz && !strcmp(fz, "0"));
    cp.world = &world;
    const char *field = NULL;
    ft_status st = ft_runs_create(NULL, &cp, &name, NULL, &field, &err);
    if (st != FT_OK) {
        rc = create_error(&ui, field, &err);
        goto done;
    }
    if ((rc = run_open_store("create", &s)) != CLI_EXIT_OK)
        goto done;
    if (detach) {
        if (json) {
            ft_run got;
            if (ft_store_run_get(s, name, &got, &err) == FT_OK) {
                run_print_json_full(s, &got);
                ft_run_deinit(&got);
            }
        } else {
            printf("%s\n", name);
        }
        goto done;
    }

    /* Foreground: this process runs it (ft_runs_create made it ours before queueing it). */
    if (ft_store_run_set_status(s, name, FT_RUN_STARTING, NULL, NULL, NULL, NULL, &err) != FT_OK) {
        rc = cli_report("create", &err);
        goto done;
    }
    ft_run got;
    if (!json || !quiet) {
        if (ft_store_run_get(s, name, &got, &err) == FT_OK) {
            fprintf(stderr, "run %s (%s)\n", name, got.run_dir ? got.run_dir : "");
            ft_run_deinit(&got);
        }
    }
    run_exec_opts o = {.resume = false, .show = !quiet};
    rc = run_execute(s, name, &o);
    if (json && ft_store_run_get(s, name, &got, &err) == FT_OK) {
        run_print_json_full(s, &got);
        ft_run_deinit(&got);
    }

done:
    ft_store_close(s);
    ft_train_config_deinit(&cfg);
    ft_free(name);
    cli_args_free(&a);
    return rc;
}
