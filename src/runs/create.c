/* runs/create.c: creating a run (SPEC §1, §2, §3): every parameter checked, the run name and
 * experiment folder, input validation before anything is recorded (paths, the model's weights
 * headers, tokenizer and chat template, every record of the data at the run's context length,
 * custom weights, the memory plan), then the run folder with its marker, the record, and the
 * queue. `ftune create` and POST /api/runs are its two faces; an error names the parameter it is
 * about (`field`), and the data's problems come one by one through on_issue, with
 * file:line:column. */
#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ftune/ckpt.h"
#include "ftune/config.h"
#include "ftune/data.h"
#include "ftune/hf.h"
#include "ftune/json.h"
#include "ftune/runs.h"
#include "ftune/safetensors.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"
#include "ftune/train.h"

/* ---------------------------------------------------------------- checks of single values */

static const char *user_name(void) {
    const char *u = getenv("USER");
    if (u && *u && !strchr(u, '/'))
        return u;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_name ? pw->pw_name : "user";
}

bool ft_runs_name_ok(const char *n) {
    size_t len = strlen(n);
    if (len == 0 || len > 128 || n[0] == '.' || n[0] == '-')
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return false;
    return true;
}

/* register_to: "catalog.schema" or "catalog.schema.name". */
static ft_status register_to_check(const char *v, ft_err *err) {
    int dots = 0;
    for (const char *p = v; *p; p++)
        dots += *p == '.';
    if (dots == 1) { /* the run's name completes it; check the two given parts with a stand-in */
        char *full = ft_asprintf("%s.x", v);
        ft_err e2;
        bool ok = full && ft_registry_check_name(full, &e2) == FT_OK;
        ft_free(full);
        if (ok)
            return FT_OK;
        const char *why = strstr(e2.msg, " name: ");
        return FT_ERR(err, FT_ERR_INVALID, "\"%.60s%s\": %s", v, strlen(v) > 60 ? "..." : "", why ? why + 7 : e2.msg);
    }
    if (dots != 2)
        return FT_ERR(err, FT_ERR_INVALID, "\"%.60s%s\": expected catalog.schema or catalog.schema.name", v,
                      strlen(v) > 60 ? "..." : "");
    return ft_registry_check_name(v, err);
}

/* An error about `f`: its message keeps the location (file:line:column) of the cause. */
static ft_status field_error(const char **field, const char *f, ft_status st, ft_err *err) {
    *field = f;
    if (err && err->file[0]) { /* fold the location into the message: the field is the place now */
        char m[sizeof err->msg];
        ft_err_format(err, m, sizeof m);
        snprintf(err->msg, sizeof err->msg, "%s", m);
        err->file[0] = 0;
        err->line = err->column = 0;
        err->offset = -1;
    }
    return st;
}

/* ---------------------------------------------------------------- the model's inputs */

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

static ft_status load_model_inputs(const ft_train_config *cfg, model_inputs *mi, const char **field, ft_err *err) {
    ft_status st;
    if ((st = ft_hf_resolve(cfg->model, &mi->dir, err)) != FT_OK)
        return field_error(field, "model", st, err);
    char *cp = ft_path_join(mi->dir, "config.json");
    st = cp ? ft_model_config_load(cp, &mi->mc, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_free(cp);
    if (st != FT_OK)
        return field_error(field, "model", st, err);
    int64_t maxpos = mi->mc.max_position_embeddings > 0 ? mi->mc.max_position_embeddings : 8192;
    mi->T = cfg->context_length > 0 ? cfg->context_length : (maxpos < 8192 ? maxpos : 8192);
    if (mi->T > maxpos) {
        *field = "context_length";
        return FT_ERR(err, FT_ERR_INVALID, "%lld is above the model's maximum of %lld", (long long)mi->T,
                      (long long)maxpos);
    }
    if (cfg->global_batch_size > 0 &&
        (st = ft_train_check_memory(&mi->mc, cfg->global_batch_size, cfg->micro_batch_size, mi->T, err)) != FT_OK) {
        *field = "global_batch_size";
        return st;
    }
    if (!cfg->custom_weights_path) {
        /* The weights' headers and sizes (a cheap open: nothing is read but the headers), so a
         * truncated or foreign file is refused here rather than failing the recorded run. */
        ft_st_reader *rd = NULL;
        if ((st = ft_st_open(mi->dir, &rd, err)) != FT_OK)
            return field_error(field, "model", st, err);
        ft_st_close(rd);
    }
    if ((st = ft_tok_load(mi->dir, &mi->tok, err)) != FT_OK)
        return field_error(field, "model", st, err);
    if (cfg->task_type == FT_TASK_CHAT_COMPLETION && (st = ft_chat_load(mi->dir, &mi->chat, err)) != FT_OK) {
        ft_err_prefix(err, "task_type CHAT_COMPLETION needs the model's chat template");
        return field_error(field, "model", st, err);
    }
    return FT_OK;
}

/* ---------------------------------------------------------------- paths */

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

/* Replace a path field of the config with its recorded form (user_path). */
static ft_status record_path(const char *f, char **value, bool may_be_name, const char **field, ft_err *err) {
    if (!*value)
        return FT_OK;
    char *mapped = NULL;
    if (!strncmp(*value, "dbfs:", 5) || !strncmp(*value, "/Volumes/", 9)) { /* refused when it leaves volumes/ */
        ft_status st = ft_path_map(*value, &mapped, err);
        if (st != FT_OK)
            return field_error(field, f, st, err);
        ft_free(mapped);
    }
    /* a table version suffix (`table@N`) stays as written after the folder's recorded form */
    char *at = strrchr(*value, '@');
    size_t nd = at ? strspn(at + 1, "0123456789") : 0;
    bool suffix = at && at != *value && nd > 0 && at[1 + nd] == 0 && ft_data_path_is_table(*value);
    if (suffix)
        *at = 0;
    char *abs = user_path(*value, may_be_name);
    if (suffix)
        *at = '@';
    if (!abs) {
        *field = f;
        return FT_ERR(err, FT_ERR_INVALID, "%s: cannot resolve this path (a loop of symbolic links?)", *value);
    }
    if (suffix) {
        char *v = ft_asprintf("%s%s", abs, at);
        ft_free(abs);
        if (!(abs = v))
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    ft_free(*value);
    *value = abs;
    return FT_OK;
}

/* `table` -> `table@N` for a Delta table read at its latest version N, `org/name/split` ->
 * `org/name/split@<commit>` for a Hugging Face dataset read from the hub cache's snapshot
 * refs/main names now (ft_data_source_pin): the run's create, worker, resume and evaluation all
 * read the rows it has now (its errors are validation's to report). */
static ft_status pin_table_version(char **value, ft_err *err) {
    if (!*value)
        return FT_OK;
    char *p = NULL;
    ft_err e;
    ft_err_clear(&e);
    ft_status s = ft_data_source_pin(*value, &p, &e);
    if (s == FT_ERR_NOMEM)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (s != FT_OK || !p)
        return FT_OK;
    ft_free(*value);
    *value = p;
    return FT_OK;
}

/* A data path (Volumes mapped) exists. */
static ft_status check_exists(const char *f, const char *path, const char **field, ft_err *err) {
    if (ft_data_path_is_table(path)) /* a Delta table name, an HF dataset id: validation opens it */
        return FT_OK;
    char *mapped = NULL;
    ft_status st = ft_path_map(path, &mapped, err);
    if (st != FT_OK)
        return field_error(field, f, st, err);
    if (!ft_path_exists(mapped)) {
        bool other = mapped && strcmp(mapped, path);
        st = FT_ERR(err, FT_ERR_INVALID, "%s: no such file or folder%s%s%s", path, other ? " (looked at " : "",
                    other ? mapped : "", other ? ")" : "");
        *field = f;
    }
    ft_free(mapped);
    return st;
}

/* The checks on a new run's canonical folder: allowed, and absent or empty. */
ft_status ft_runs_dir_check_new(const char *run_dir, const char *name, const char **field, ft_err *err) {
    const char *dummy;
    if (!field)
        field = &dummy;
    *field = "experiment_path";
    char *why = ft_runs_dir_forbidden(run_dir);
    if (why) {
        ft_status st = FT_ERR(err, FT_ERR_INVALID, "the run folder %s cannot be used: %s; choose another experiment path",
                              run_dir, why);
        ft_free(why);
        return st;
    }
    struct stat sb;
    if (lstat(run_dir, &sb) != 0) {
        if (errno == ENOENT) {
            *field = NULL;
            return FT_OK;
        }
        /* the machine refuses to look (a file or an unreadable folder on the way): FT_ERR_IO */
        return FT_ERR(err, FT_ERR_IO, "the run folder %s cannot be used: %s", run_dir, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return FT_ERR(err, FT_ERR_INVALID,
                      "the run folder %s exists and is not a folder; choose another experiment path or name", run_dir);
    DIR *d = opendir(run_dir);
    if (!d)
        return FT_ERR(err, FT_ERR_INVALID, "the run folder %s cannot be opened: %s", run_dir, strerror(errno));
    bool empty = true;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = false;
    closedir(d);
    if (empty) {
        *field = NULL;
        return FT_OK;
    }
    char *owner = ft_runs_dir_owner(run_dir);
    ft_status st;
    if (owner && !strcmp(owner, name)) {
        *field = "name";
        st = FT_ERR(err, FT_ERR_INVALID,
                    "the run folder %s already belongs to a run named %s; choose another name (or `ftune delete %s` "
                    "first)",
                    run_dir, name, name);
    } else {
        st = FT_ERR(err, FT_ERR_INVALID,
                    "the run folder %s already exists and is not empty; ftune writes only into a new or empty folder, "
                    "so that deleting the run never removes files it did not create: choose another experiment path "
                    "or name",
                    run_dir);
    }
    ft_free(owner);
    return st;
}

/* ---------------------------------------------------------------- the data */

typedef struct issue_fwd {
    const ft_runs_create_params *p;
    const char *field;
} issue_fwd;

static void forward_issue(void *ctx, const ft_data_issue *is) {
    issue_fwd *f = ctx;
    if (f->p->on_issue)
        f->p->on_issue(f->p->user, f->field, is);
}

/* Check one data path as `ftune validate` does (SPEC §3): present, every record well formed,
 * rendered through the chat template and tokenized at the run's context length; problems go to
 * on_issue. The training data's report (with the measured time estimate) goes to on_summary. */
static ft_status validate_data(const ft_runs_create_params *prm, const char *f, const char *path,
                               const ft_train_config *cfg, const model_inputs *mi, bool summary, const char **field,
                               ft_err *err) {
    FT_TRY(check_exists(f, path, field, err));
    char *mapped = ft_data_path_is_table(path) ? ft_strdup(path) : ft_path_map_volumes(path);
    if (!mapped)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_validate_params p;
    ft_train_validate_params(cfg, mi->tok, mi->chat, mi->T, &p);
    if (cfg->global_batch_size > 0) {
        p.global_batch_size = cfg->global_batch_size;
    } else { /* the automatic size before the epoch-length cap (ftune/train.h) */
        int64_t g = 65536 / mi->T;
        p.global_batch_size = g < 1 ? 1 : g > 64 ? 64 : g;
    }
    issue_fwd fwd = {prm, f};
    p.on_issue = forward_issue;
    p.on_issue_ctx = &fwd;
    ft_data_report *rep = NULL;
    ft_status st = ft_data_validate(mapped, &p, &rep, NULL, err);
    if (st != FT_OK) {
        field_error(field, f, st, err);
    } else if (!rep->valid) {
        *field = f;
        st = FT_ERR(err, FT_ERR_INVALID, "%s: %lld error(s) in %lld of %lld records", path, (long long)rep->n_errors,
                    (long long)(rep->n_records - rep->n_valid_records), (long long)rep->n_records);
    } else if (summary && prm->on_summary) {
        ft_runs_plan_batches(rep, cfg->training_duration, cfg->global_batch_size);
        ft_train_estimate(mi->dir, rep, cfg->threads);
        prm->on_summary(prm->user, path, rep);
    }
    ft_data_report_free(rep);
    ft_free(mapped);
    return st;
}

/* The memory plan of the run: refused here, before anything is recorded, when it cannot fit. */
static ft_status memory_plan(const ft_runs_create_params *prm, const ft_train_config *cfg,
                             const ft_model_config *mc, int64_t T, json_t **memory, ft_err *err) {
    char summary[1200];
    json_t *plan = NULL;
    ft_status st = ft_runs_memory_plan(cfg, mc, T, 0, prm->world, &plan, summary, sizeof summary, err);
    if (st == FT_OK && prm->on_memory)
        prm->on_memory(prm->user, summary);
    if (memory)
        *memory = plan;
    else
        json_decref(plan);
    return st;
}

/* ---------------------------------------------------------------- create */

ft_status ft_runs_create(ft_store *store, const ft_runs_create_params *p, char **name_out, json_t **memory,
                         const char **field, ft_err *err) {
    const char *dummy;
    if (!field)
        field = &dummy;
    *field = NULL;
    *name_out = NULL;
    if (memory)
        *memory = NULL;
    ft_train_config cfg;
    FT_TRY(ft_train_config_copy(&cfg, p->config, err));
    ft_status st = FT_OK;
    ft_store *own_store = NULL;
    char *name = NULL, *exp_path = NULL, *exp_dir = NULL, *run_dir = NULL, *cjs = NULL;
    static const char *const required[] = {"model", "train_data_path", "register_to"};
    const char *const values[] = {cfg.model, cfg.train_data_path, cfg.register_to};
    for (size_t i = 0; i < 3; i++)
        if (!values[i] || !*values[i]) {
            *field = required[i];
            st = FT_ERR(err, FT_ERR_INVALID, "required");
            goto done;
        }
    /* A Delta table is read at the version it has now, an HF dataset at the hub cache snapshot
     * refs/main names now, by this create and by the run's worker, resume and evaluation: the
     * recorded path names it (`table@N`, `org/name/split@<commit>`). */
    if ((st = pin_table_version(&cfg.train_data_path, err)) != FT_OK ||
        (st = pin_table_version(&cfg.eval_data_path, err)) != FT_OK)
        goto done;
    if ((st = register_to_check(cfg.register_to, err)) != FT_OK) {
        *field = "register_to";
        goto done;
    }

    /* The run name (SPEC §1) and its folder. */
    if (cfg.name) {
        if (!ft_runs_name_ok(cfg.name)) {
            *field = "name";
            st = FT_ERR(err, FT_ERR_INVALID, "\"%.200s\": use letters, digits, '-', '_' and '.' (at most 128)", cfg.name);
            goto done;
        }
        name = ft_strdup(cfg.name);
    } else {
        ft_rng rng;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ft_rng_seed(&rng, (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40));
        name = ft_run_name_generate(ft_task_type_name(cfg.task_type), cfg.model, &rng);
    }
    const bool exp_given = cfg.experiment_path != NULL;
    exp_path = cfg.experiment_path ? ft_strdup(cfg.experiment_path) : ft_asprintf("/Users/%s/%s", user_name(), name);
    if (!name || !exp_path) {
        st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = ft_experiment_dir(exp_path, &exp_dir, err)) != FT_OK) {
        field_error(field, "experiment_path", st, err);
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
    if (!cfg.name || !cfg.experiment_path || !run_dir || !exp_path) {
        st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = record_path("train_data_path", &cfg.train_data_path, true, field, err)) != FT_OK ||
        (st = record_path("eval_data_path", &cfg.eval_data_path, true, field, err)) != FT_OK ||
        (st = record_path("custom_weights_path", &cfg.custom_weights_path, false, field, err)) != FT_OK ||
        (st = record_path("model", &cfg.model, true, field, err)) != FT_OK)
        goto done;
    if ((st = ft_train_config_validate(&cfg, err)) != FT_OK)
        goto done;
    /* The run folder: never FTUNE_HOME's own, never a folder that already holds something. */
    if ((st = ft_runs_dir_check_new(run_dir, name, field, err)) != FT_OK) {
        if (st == FT_ERR_IO && !exp_given) { /* the default folder, under ftune's home, unreachable */
            char *home = ft_home_dir();
            if (field)
                *field = NULL;
            if (err && home) {
                size_t n = strlen(err->msg);
                snprintf(err->msg + n, sizeof err->msg - n,
                         " (the default experiment path, under ftune's home %s, $FTUNE_HOME: point FTUNE_HOME at a "
                         "writable folder or give an experiment path)",
                         home);
            }
            ft_free(home);
        }
        goto done;
    }

    /* Validation before anything is recorded (SPEC §2 validate_inputs). */
    if (cfg.validate_inputs) {
        /* The cheap checks first: a mistyped path is reported before the model is loaded. */
        if ((st = check_exists("train_data_path", cfg.train_data_path, field, err)) != FT_OK ||
            (cfg.eval_data_path && (st = check_exists("eval_data_path", cfg.eval_data_path, field, err)) != FT_OK))
            goto done;
        model_inputs mi = {0};
        st = load_model_inputs(&cfg, &mi, field, err);
        if (st == FT_OK)
            st = validate_data(p, "train_data_path", cfg.train_data_path, &cfg, &mi, p->summary, field, err);
        if (st == FT_OK && cfg.eval_data_path)
            st = validate_data(p, "eval_data_path", cfg.eval_data_path, &cfg, &mi, false, field, err);
        if (st == FT_OK && cfg.custom_weights_path) {
            char *mapped = NULL, *ck = NULL;
            st = ft_path_map(cfg.custom_weights_path, &mapped, err);
            if (st == FT_OK)
                st = ft_ckpt_resolve(mapped, &ck, err);
            if (st == FT_OK)
                st = ft_train_check_architecture(&mi.mc, ck, err);
            ft_free(mapped);
            ft_free(ck);
            if (st != FT_OK)
                field_error(field, "custom_weights_path", st, err);
        }
        if (st == FT_OK)
            st = memory_plan(p, &cfg, &mi.mc, mi.T, memory, err);
        model_inputs_free(&mi);
        if (st != FT_OK)
            goto done;
    } else {
        /* Without validation the memory plan still runs when the model's config can be read. */
        char *dir = NULL, *cp = NULL;
        ft_model_config mc;
        if (ft_hf_resolve(cfg.model, &dir, NULL) == FT_OK && (cp = ft_path_join(dir, "config.json")) &&
            ft_model_config_load(cp, &mc, NULL) == FT_OK) {
            int64_t maxpos = mc.max_position_embeddings > 0 ? mc.max_position_embeddings : 8192;
            int64_t T = cfg.context_length > 0 ? cfg.context_length : (maxpos < 8192 ? maxpos : 8192);
            st = memory_plan(p, &cfg, &mc, T, memory, err);
        }
        ft_free(cp);
        ft_free(dir);
        if (st != FT_OK)
            goto done;
    }

    if (!store) {
        if ((st = ft_store_open_home(&own_store, err)) != FT_OK)
            goto done;
        /* What killed registrations left in the registry goes at the next command (issue #9). */
        ft_registry_clean_incoming(NULL, NULL);
        store = own_store;
    }
    json_t *cj = ft_train_config_to_json(&cfg);
    cjs = ft_json_dumps(cj, 0);
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
    if ((st = ft_runs_dir_check_new(run_dir, name, field, err)) != FT_OK)
        goto done;
    if ((st = ft_runs_dir_make(run_dir, name, err)) != FT_OK) {
        field_error(field, "experiment_path", st, err);
        goto done;
    }
    if ((st = ft_store_run_create(store, &r, err)) != FT_OK) {
        ft_buf note = {0};
        ft_runs_dir_remove(run_dir, name, &note); /* takes back only what ft_runs_dir_make made */
        ft_buf_free(&note);
        if (st == FT_ERR_INVALID)
            *field = "name";
        goto done;
    }
    /* A run the caller executes is owned by this process before it is QUEUED, so that a
     * background worker never claims it. */
    if (!p->detach && (st = ft_store_run_set_owner(store, name, getpid(), ft_runs_hostname(), err)) != FT_OK)
        goto done;
    if ((st = ft_store_run_set_status(store, name, FT_RUN_QUEUED, "QUEUED", "INFO",
                                      p->detach ? "queued for the background worker" : "queued to run here", NULL,
                                      err)) != FT_OK)
        goto done;
    if (p->detach && p->worker_exe)
        ft_runs_worker_ensure(p->worker_exe);
    *name_out = name;
    name = NULL;
done:
    if (st != FT_OK && memory && *memory && json_is_true(json_object_get(*memory, "fits"))) {
        json_decref(*memory); /* only a refusal for memory keeps the plan with the error */
        *memory = NULL;
    }
    ft_store_close(own_store);
    free(cjs);
    ft_train_config_deinit(&cfg);
    ft_free(name);
    ft_free(exp_path);
    ft_free(exp_dir);
    ft_free(run_dir);
    return st;
}
