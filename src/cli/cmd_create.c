/* cli/cmd_create.c: `ftune create`: every create() parameter of SPEC §2 (each validated, a bad
 * value exits 2 naming its flag), the run name and experiment folder of SPEC §1, input
 * validation before queueing, then the run in the foreground with a progress bar, or handed to
 * the background worker with --detach. */
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
    "prompt-column",  "response-column", "messages-column",   "text-column",
};

static const cli_opt opts[] = {
    {"model", CLI_STR, "M: model folder, hub id org/name, or registered c.s.n[/version] (required)"},
    {"train-data-path", CLI_STR, "P: JSONL file or folder (chat, IFT), folder of .txt (CPT), a Delta table "
                                 "c.s.t, an HF dataset org/name/split, Parquet/Arrow files (required)"},
    {"register-to", CLI_STR, "c.s[.n]: where the result is registered (required)"},
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

static const char *user_name(void) {
    const char *u = getenv("USER");
    if (u && *u && !strchr(u, '/'))
        return u;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_name ? pw->pw_name : "user";
}

static bool run_name_ok(const char *n) {
    size_t len = strlen(n);
    if (len == 0 || len > 128 || n[0] == '.' || n[0] == '-')
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return false;
    return true;
}

/* register_to: "catalog.schema" or "catalog.schema.name"; err says what is wrong. */
static bool register_to_ok(const char *v, ft_err *err) {
    int dots = 0;
    for (const char *p = v; *p; p++)
        dots += *p == '.';
    if (dots == 1) { /* the run's name completes it; check the two given parts with a stand-in */
        char *full = ft_asprintf("%s.x", v);
        ft_err e2;
        bool ok = full && ft_registry_check_name(full, &e2) == FT_OK;
        ft_free(full);
        if (!ok) {
            const char *why = strstr(e2.msg, " name: ");
            FT_ERR(err, FT_ERR_INVALID, "\"%.60s%s\": %s", v, strlen(v) > 60 ? "..." : "", why ? why + 7 : e2.msg);
        }
        return ok;
    }
    if (dots != 2) {
        FT_ERR(err, FT_ERR_INVALID, "\"%.60s%s\": expected catalog.schema or catalog.schema.name", v,
               strlen(v) > 60 ? "..." : "");
        return false;
    }
    return ft_registry_check_name(v, err) == FT_OK;
}

typedef struct issue_printer {
    int64_t shown;
} issue_printer;

static void print_issue(void *ctx, const ft_data_issue *is) {
    issue_printer *p = ctx;
    if (p->shown++ >= 50)
        return;
    fprintf(stderr, "%s:%lld:%lld: %s: %s\n", is->file ? is->file : "?", (long long)is->line,
            (long long)is->column, is->level == FT_ISSUE_ERROR ? "error" : "warning", is->message);
}

/* What the validation of the inputs needs from the model: its folder, tokenizer, chat template
 * and the context length the run will use. */
typedef struct model_inputs {
    char *dir;
    ft_model_config mc;
    ft_tok *tok;
    ft_chat *chat;
    int64_t T;
} model_inputs;

static void model_inputs_free(model_inputs *mi) {
    ft_chat_free(mi->chat);
    ft_tok_free(mi->tok);
    ft_free(mi->dir);
}

/* A usage error naming `flag`, with the error's file:line:column when it has one. */
static int model_error(const char *flag, const ft_err *err) {
    char m[2048];
    ft_err_format(err, m, sizeof m);
    return cli_usage_error("create", flag, "%s", m);
}

static int load_model_inputs(const ft_train_config *cfg, model_inputs *mi) {
    ft_err err;
    if (ft_hf_resolve(cfg->model, &mi->dir, &err) != FT_OK)
        return model_error("model", &err);
    ft_model_config mc;
    char *cp = ft_path_join(mi->dir, "config.json");
    ft_status st = cp ? ft_model_config_load(cp, &mi->mc, &err) : FT_ERR(&err, FT_ERR_NOMEM, "out of memory");
    ft_free(cp);
    if (st != FT_OK)
        return model_error("model", &err);
    mc = mi->mc;
    int64_t maxpos = mc.max_position_embeddings > 0 ? mc.max_position_embeddings : 8192;
    mi->T = cfg->context_length > 0 ? cfg->context_length : (maxpos < 8192 ? maxpos : 8192);
    if (mi->T > maxpos)
        return cli_usage_error("create", "context-length", "%lld is above the model's maximum of %lld",
                               (long long)mi->T, (long long)maxpos);
    if (cfg->global_batch_size > 0 &&
        ft_train_check_memory(&mc, cfg->global_batch_size, cfg->micro_batch_size, mi->T, &err) != FT_OK)
        return cli_usage_error("create", "global-batch-size", "%s", err.msg);
    if (!cfg->custom_weights_path) {
        /* The weights' headers and sizes (a cheap open: nothing is read but the headers), so a
         * truncated or foreign file is refused here rather than failing the recorded run. */
        ft_st_reader *rd = NULL;
        if (ft_st_open(mi->dir, &rd, &err) != FT_OK)
            return model_error("model", &err);
        ft_st_close(rd);
    }
    if (ft_tok_load(mi->dir, &mi->tok, &err) != FT_OK)
        return model_error("model", &err);
    if (cfg->task_type == FT_TASK_CHAT_COMPLETION && ft_chat_load(mi->dir, &mi->chat, &err) != FT_OK) {
        ft_err_prefix(&err, "task_type CHAT_COMPLETION needs the model's chat template");
        return model_error("model", &err);
    }
    return CLI_EXIT_OK;
}

/* A user path as it is recorded (issue #9: a run, its resume, its worker and its deletion must
 * act on the same files wherever they are started): absolute and canonical. /Volumes and dbfs:
 * paths stay as given (they name a place under $FTUNE_HOME, which is itself absolute); so does a
 * relative name that is not a local path when `may_be_name` (a hub id org/name, a registered
 * c.s.n[/v], a table c.s.t). Caller frees; NULL only when out of memory or on a symlink loop. */
static char *user_path(const char *p, bool may_be_name) {
    if (!strncmp(p, "dbfs:", 5) || !strncmp(p, "/Volumes/", 9))
        return ft_strdup(p);
    if (p[0] != '/' && may_be_name && p[0] != '.' && !ft_path_exists(p))
        return ft_strdup(p);
    return ft_path_canonical(p);
}

/* Replace a path field of the config with its recorded form (user_path). Exit code. */
static int record_path(const char *flag, char **field, bool may_be_name) {
    if (!*field)
        return CLI_EXIT_OK;
    ft_err err;
    char *mapped = NULL;
    if (!strncmp(*field, "dbfs:", 5) || !strncmp(*field, "/Volumes/", 9)) { /* refused when it leaves volumes/ */
        if (ft_path_map(*field, &mapped, &err) != FT_OK)
            return model_error(flag, &err);
        ft_free(mapped);
    }
    /* a table version suffix (`table@N`) stays as written after the folder's recorded form */
    char *at = strrchr(*field, '@');
    size_t nd = at ? strspn(at + 1, "0123456789") : 0;
    bool suffix = at && at != *field && nd > 0 && at[1 + nd] == 0 && ft_data_path_is_table(*field);
    if (suffix)
        *at = 0;
    char *abs = user_path(*field, may_be_name);
    if (suffix)
        *at = '@';
    if (!abs)
        return cli_usage_error("create", flag, "%s: cannot resolve this path (a loop of symbolic links?)", *field);
    if (suffix) {
        char *v = ft_asprintf("%s%s", abs, at);
        ft_free(abs);
        abs = v;
        if (!abs)
            return cli_usage_error("create", flag, "out of memory");
    }
    ft_free(*field);
    *field = abs;
    return CLI_EXIT_OK;
}

/* `table` -> `table@N` for a Delta table read at its latest version N. Exit code. */
static int pin_table_version(const char *flag, char **field) {
    if (!*field)
        return CLI_EXIT_OK;
    ft_err err;
    int64_t v = -1;
    if (ft_data_table_latest_version(*field, &v, &err) != FT_OK || v < 0) /* validation reports errors */
        return CLI_EXIT_OK;
    char *p = ft_asprintf("%s@%lld", *field, (long long)v);
    if (!p)
        return cli_usage_error("create", flag, "out of memory");
    ft_free(*field);
    *field = p;
    return CLI_EXIT_OK;
}

/* A data path (Volumes mapped) exists; else the usage error naming the flag. */
static int check_exists(const char *flag, const char *path) {
    if (ft_data_path_is_table(path)) /* a Delta table name, an HF dataset id: validation opens it */
        return CLI_EXIT_OK;
    ft_err err;
    char *mapped = NULL;
    if (ft_path_map(path, &mapped, &err) != FT_OK)
        return model_error(flag, &err);
    if (!ft_path_exists(mapped)) {
        int rc = cli_usage_error("create", flag, "%s: no such file or folder%s%s", path,
                                 mapped && strcmp(mapped, path) ? " (looked at " : "",
                                 mapped && strcmp(mapped, path) ? mapped : "");
        if (mapped && strcmp(mapped, path))
            fprintf(stderr, ")\n");
        ft_free(mapped);
        return rc;
    }
    ft_free(mapped);
    return CLI_EXIT_OK;
}

/* Check one data path as `ftune validate` does (SPEC §3): present, every record well formed,
 * rendered through the chat template and tokenized at the run's context length; problems are
 * printed as file:line:column. The training data's summary (with the measured time estimate)
 * is printed too unless quiet. Returns an exit code. */
static int validate_data(const char *flag, const char *path, const ft_train_config *cfg, const model_inputs *mi,
                         bool summary) {
    int rc = check_exists(flag, path);
    if (rc != CLI_EXIT_OK)
        return rc;
    char *mapped = ft_data_path_is_table(path) ? ft_strdup(path) : ft_path_map_volumes(path);
    if (!mapped)
        return cli_usage_error("create", flag, "out of memory");
    ft_validate_params p;
    ft_validate_default_params(&p, cfg->task_type);
    p.sample.task = cfg->task_type;
    p.sample.tok = mi->tok;
    p.sample.chat = mi->chat;
    p.sample.context_length = mi->T;
    p.sample.last_assistant = cfg->loss_on == FT_LOSS_LAST_ASSISTANT;
    p.reader.prompt_column = cfg->prompt_column;
    p.reader.response_column = cfg->response_column;
    p.reader.messages_column = cfg->messages_column;
    p.reader.text_column = cfg->text_column;
    p.duration = cfg->training_duration;
    p.seed = cfg->seed;
    p.threads = cfg->threads;
    if (cfg->global_batch_size > 0) {
        p.global_batch_size = cfg->global_batch_size;
    } else { /* the automatic size before the epoch-length cap (ftune/train.h) */
        int64_t g = 65536 / mi->T;
        p.global_batch_size = g < 1 ? 1 : g > 64 ? 64 : g;
    }
    issue_printer ip = {0};
    p.on_issue = print_issue;
    p.on_issue_ctx = &ip;
    ft_data_report *rep = NULL;
    ft_err err;
    ft_status st = ft_data_validate(mapped, &p, &rep, NULL, &err);
    if (st != FT_OK) {
        rc = cli_report("create", &err);
    } else if (!rep->valid) {
        fprintf(stderr, "ftune create: --%s: %s: %lld error(s) in %lld of %lld records (see above; "
                        "--no-validate-inputs skips this check)\n",
                flag, path, (long long)rep->n_errors, (long long)(rep->n_records - rep->n_valid_records),
                (long long)rep->n_records);
        rc = CLI_EXIT_USAGE;
    } else if (summary) {
        cli_plan_batches(rep, cfg->training_duration, cfg->global_batch_size);
        ft_train_estimate(mi->dir, rep, cfg->threads);
        fprintf(stderr, "%s:", path);
        cli_print_data_summary(stderr, rep, cfg->task_type);
    }
    ft_data_report_free(rep);
    ft_free(mapped);
    return rc;
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
    ft_store *s = NULL;
    char *name = NULL, *exp_path = NULL, *exp_dir = NULL, *run_dir = NULL;
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
    /* A Delta table is read at the version it has now, by this create and by the run's worker,
     * resume and evaluation: the recorded path names it (`table@N`). */
    if ((rc = pin_table_version("train-data-path", &cfg.train_data_path)) != CLI_EXIT_OK ||
        (rc = pin_table_version("eval-data-path", &cfg.eval_data_path)) != CLI_EXIT_OK)
        goto done;
    cfg.validate_inputs = !cli_has(&a, "no-validate-inputs");
    if (!register_to_ok(cfg.register_to, &err)) {
        rc = cli_usage_error("create", "register-to", "%s", err.msg);
        goto done;
    }

    /* The run name (SPEC §1) and its folder. */
    if (cli_has(&a, "name")) {
        if (!run_name_ok(cli_str(&a, "name", ""))) {
            rc = cli_usage_error("create", "name", "\"%s\": use letters, digits, '-', '_' and '.' (at most 128)",
                                 cli_str(&a, "name", ""));
            goto done;
        }
        name = ft_strdup(cli_str(&a, "name", ""));
    } else {
        ft_rng rng;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ft_rng_seed(&rng, (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40));
        name = ft_run_name_generate(ft_task_type_name(cfg.task_type), cfg.model, &rng);
    }
    exp_path = cli_has(&a, "experiment-path") ? ft_strdup(cfg.experiment_path)
                                              : ft_asprintf("/Users/%s/%s", user_name(), name);
    if (!name || !exp_path) {
        rc = cli_usage_error("create", NULL, "out of memory");
        goto done;
    }
    if (ft_experiment_dir(exp_path, &exp_dir, &err) != FT_OK) {
        rc = model_error("experiment-path", &err);
        goto done;
    }
    /* Recorded absolute and canonical (a relative experiment path means the folder it names from
     * here); the mapped forms (/Users/.., /Volumes/.., dbfs:..) are kept as the user wrote them. */
    static const char *const mapped_prefixes[] = {"/Users/", "/Workspace/", "/Shared/", "/Repos/", "/Volumes/", "dbfs:"};
    bool mapped_form = false;
    for (size_t i = 0; i < sizeof mapped_prefixes / sizeof *mapped_prefixes; i++)
        mapped_form |= !strncmp(exp_path, mapped_prefixes[i], strlen(mapped_prefixes[i]));
    if (!mapped_form) {
        ft_free(exp_path);
        exp_path = ft_strdup(exp_dir);
    }
    ft_free(cfg.name);
    cfg.name = ft_strdup(name);
    ft_free(cfg.experiment_path);
    cfg.experiment_path = ft_strdup(exp_dir);
    run_dir = ft_path_join(exp_dir, name);
    if ((rc = record_path("train-data-path", &cfg.train_data_path, true)) != CLI_EXIT_OK ||
        (rc = record_path("eval-data-path", &cfg.eval_data_path, true)) != CLI_EXIT_OK ||
        (rc = record_path("custom-weights-path", &cfg.custom_weights_path, false)) != CLI_EXIT_OK ||
        (rc = record_path("model", &cfg.model, true)) != CLI_EXIT_OK)
        goto done;
    if (ft_train_config_validate(&cfg, &err) != FT_OK) {
        rc = cli_usage_error("create", NULL, "%s", err.msg);
        goto done;
    }
    /* The run folder: never FTUNE_HOME's own, never a folder that already holds something. */
    if ((rc = run_dir_check_new("create", "experiment-path", run_dir, name)) != CLI_EXIT_OK)
        goto done;

    /* Validation before anything is recorded (SPEC §2 validate_inputs). */
    if (cfg.validate_inputs) {
        /* The cheap checks first: a mistyped path is reported before the model is loaded. */
        if ((rc = check_exists("train-data-path", cfg.train_data_path)) != CLI_EXIT_OK ||
            (cfg.eval_data_path && (rc = check_exists("eval-data-path", cfg.eval_data_path)) != CLI_EXIT_OK))
            goto done;
        model_inputs mi = {0};
        rc = load_model_inputs(&cfg, &mi);
        if (rc == CLI_EXIT_OK)
            rc = validate_data("train-data-path", cfg.train_data_path, &cfg, &mi, !cli_has(&a, "quiet"));
        if (rc == CLI_EXIT_OK && cfg.eval_data_path)
            rc = validate_data("eval-data-path", cfg.eval_data_path, &cfg, &mi, false);
        if (rc == CLI_EXIT_OK && cfg.custom_weights_path) {
            char *mapped = NULL, *ck = NULL;
            ft_status st = ft_path_map(cfg.custom_weights_path, &mapped, &err);
            if (st == FT_OK)
                st = ft_ckpt_resolve(mapped, &ck, &err);
            if (st == FT_OK)
                st = ft_train_check_architecture(&mi.mc, ck, &err);
            ft_free(mapped);
            ft_free(ck);
            if (st != FT_OK)
                rc = model_error("custom-weights-path", &err);
        }
        /* The memory plan: refused here, before anything is recorded, when it cannot fit. */
        if (rc == CLI_EXIT_OK)
            rc = cli_memory_plan(cli_has(&a, "quiet") ? NULL : stderr, "create", &cfg, &mi.mc, mi.T, 0, NULL);
        model_inputs_free(&mi);
        if (rc != CLI_EXIT_OK)
            goto done;
    } else {
        /* Without validation the memory plan still runs when the model's config can be read. */
        char *dir = NULL, *cp = NULL;
        ft_model_config mc;
        if (ft_hf_resolve(cfg.model, &dir, &err) == FT_OK && (cp = ft_path_join(dir, "config.json")) &&
            ft_model_config_load(cp, &mc, &err) == FT_OK) {
            int64_t maxpos = mc.max_position_embeddings > 0 ? mc.max_position_embeddings : 8192;
            int64_t T = cfg.context_length > 0 ? cfg.context_length : (maxpos < 8192 ? maxpos : 8192);
            rc = cli_memory_plan(NULL, "create", &cfg, &mc, T, 0, NULL);
        }
        ft_free(cp);
        ft_free(dir);
        if (rc != CLI_EXIT_OK)
            goto done;
    }

    if ((rc = run_open_store("create", &s)) != CLI_EXIT_OK)
        goto done;
    json_t *cj = ft_train_config_to_json(&cfg);
    char *cjs = ft_json_dumps(cj, 0);
    json_decref(cj);
    char dur[32];
    ft_duration_format(cfg.training_duration, dur, sizeof dur);
    ft_run r = {0};
    r.name = name;
    r.model = cfg.model;
    r.task_type = (char *)ft_task_type_name(cfg.task_type);
    r.train_data_path = cfg.train_data_path;
    r.register_to = cfg.register_to;
    r.eval_data_path = cfg.eval_data_path;
    r.custom_weights_path = cfg.custom_weights_path;
    r.training_duration = dur;
    r.learning_rate = cfg.learning_rate;
    r.context_length = cfg.context_length;
    r.experiment_path = exp_path;
    r.run_dir = run_dir;
    r.config_json = cjs;
    /* The folder before the record, so that every recorded run has its marker; checked again
     * (validation took a while). */
    ft_status st = FT_OK;
    if ((rc = run_dir_check_new("create", "experiment-path", run_dir, name)) != CLI_EXIT_OK) {
        free(cjs);
        goto done;
    }
    if ((st = ft_runs_dir_make(run_dir, name, &err)) != FT_OK) {
        free(cjs);
        rc = model_error("experiment-path", &err);
        goto done;
    }
    st = ft_store_run_create(s, &r, &err);
    free(cjs);
    if (st != FT_OK) {
        ft_buf note = {0};
        ft_runs_dir_remove(run_dir, name, &note); /* takes back only what ft_runs_dir_make made */
        ft_buf_free(&note);
        rc = st == FT_ERR_INVALID ? cli_usage_error("create", "name", "%s", err.msg) : cli_report("create", &err);
        goto done;
    }
    /* A foreground run is owned by this process before it is QUEUED, so that a background
     * worker never claims it. */
    if (!cli_has(&a, "detach") && ft_store_run_set_owner(s, name, getpid(), run_hostname(), &err) != FT_OK) {
        rc = cli_report("create", &err);
        goto done;
    }
    if (ft_store_run_set_status(s, name, FT_RUN_QUEUED, "QUEUED", "INFO",
                                cli_has(&a, "detach") ? "queued for the background worker" : "queued to run here",
                                NULL, &err) != FT_OK) {
        rc = cli_report("create", &err);
        goto done;
    }

    if (cli_has(&a, "detach")) {
        run_ensure_worker();
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

    /* Foreground: this process runs it. */
    if (ft_store_run_set_status(s, name, FT_RUN_STARTING, NULL, NULL, NULL, NULL, &err) != FT_OK) {
        rc = cli_report("create", &err);
        goto done;
    }
    if (!json || !cli_has(&a, "quiet"))
        fprintf(stderr, "run %s (%s)\n", name, run_dir);
    run_exec_opts o = {.resume = false, .show = !cli_has(&a, "quiet")};
    rc = run_execute(s, name, &o);
    if (json) {
        ft_run got;
        if (ft_store_run_get(s, name, &got, &err) == FT_OK) {
            run_print_json_full(s, &got);
            ft_run_deinit(&got);
        }
    }

done:
    ft_store_close(s);
    ft_train_config_deinit(&cfg);
    ft_free(name);
    ft_free(exp_path);
    ft_free(exp_dir);
    ft_free(run_dir);
    cli_args_free(&a);
    return rc;
}
