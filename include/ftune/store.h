/* ftune/store.h: the run store (SPEC §1, §5): runs, their events, metrics and checkpoints, and the
 * model registry, in one SQLite database, $FTUNE_HOME/ftune.db. Implemented in src/store/.
 *
 * Durability: the database runs in WAL mode with synchronous=FULL, so every committed transaction
 * (an event, a step's metrics, a status change) has reached the disk before the call returns; a
 * process killed at any instant, or a power cut, leaves the store at its last commit. Readers
 * (`ftune get`, `ftune events --follow`) never block the writer and see only committed rows.
 * Several processes may open the store at once: writers wait (busy timeout) rather than fail.
 *
 * One ft_store is one connection: use it from one thread at a time. */
#ifndef FTUNE_STORE_H
#define FTUNE_STORE_H

#include <jansson.h>

#include "ftune/base.h"

typedef struct ft_store ft_store;

/* ---------------------------------------------------------------- opening */

/* Open (creating if needed) the store at `db_path` and bring its schema up to the newest version
 * (numbered migrations, each in its own transaction). The caller frees with ft_store_close. */
ft_status ft_store_open(const char *db_path, ft_store **out, ft_err *err);
/* Open $FTUNE_HOME/ftune.db, creating $FTUNE_HOME. */
ft_status ft_store_open_home(ft_store **out, ft_err *err);
/* For commands that only read (list, get, events, registry list...): $FTUNE_HOME/ftune.db when it
 * exists, otherwise an empty store in memory, so that nothing is created on disk. */
ft_status ft_store_open_home_existing(ft_store **out, ft_err *err);
void ft_store_close(ft_store *s);
/* How long a write waits for another process's lock before failing with FT_ERR_IO (the default
 * is 30 s). A trainer's bookkeeping uses a short wait and buffers instead (cli/run_exec.c). */
void ft_store_set_busy_timeout(ft_store *s, int ms);
/* The schema version this store is at, and the newest this build knows. */
int64_t ft_store_schema_version(ft_store *s);
int64_t ft_store_schema_latest(void);

/* ---------------------------------------------------------------- runs */

typedef enum ft_run_status {
    FT_RUN_PENDING = 0,
    FT_RUN_QUEUED,
    FT_RUN_STARTING,
    FT_RUN_RUNNING,
    FT_RUN_TERMINATING,
    FT_RUN_COMPLETED,
    FT_RUN_FAILED,
    FT_RUN_STOPPED,
    FT_RUN_N_STATUS
} ft_run_status;

const char *ft_run_status_str(ft_run_status s);
/* "RUNNING" (any case) -> FT_RUN_RUNNING; false when unknown. */
bool ft_run_status_parse(const char *s, ft_run_status *out);
/* COMPLETED, FAILED and STOPPED. */
bool ft_run_status_is_final(ft_run_status s);
/* Whether a run may move from `from` to `to`. The lifecycle:
 *   PENDING -> QUEUED -> STARTING -> RUNNING -> COMPLETED
 *   any unfinished status -> TERMINATING -> STOPPED;  any unfinished status -> FAILED | STOPPED
 *   STARTING | RUNNING | TERMINATING -> QUEUED        (a dead process's run handed back)
 *   STARTING | RUNNING | TERMINATING | FAILED | STOPPED -> STARTING   (resume from a checkpoint)
 * COMPLETED is final. Setting the status a run already has is allowed (no-op). */
bool ft_run_transition_ok(ft_run_status from, ft_run_status to);

/* One run as stored. Strings are owned by the struct: ft_run_deinit frees them. NULL for unset. */
typedef struct ft_run {
    int64_t id;
    char *name;
    ft_run_status status;
    /* the create() fields (SPEC §2) */
    char *model, *task_type, *train_data_path, *register_to, *eval_data_path, *custom_weights_path;
    char *training_duration;
    double learning_rate;
    int64_t context_length; /* 0: automatic */
    char *experiment_path;  /* as given (e.g. /Users/me/x) */
    char *run_dir;          /* where its files are on disk */
    char *config_json;      /* the whole submitted config, a JSON object */
    char *details;          /* why it failed or stopped; NULL otherwise */
    char *registered_name;  /* "c.s.n/3" once registered */
    int64_t pid;            /* process running it, 0 when none */
    char *host;
    double progress; /* 0..1 */
    double eta_s;    /* < 0: unknown */
    double created, started, finished; /* unix seconds, 0 when not yet */
    double updated;
} ft_run;

void ft_run_deinit(ft_run *r);
/* The run as JSON (`ftune get --json`): every field above with times as ISO 8601 and the config
 * as an object. New reference. */
json_t *ft_run_to_json(const ft_run *r);
/* A time (seconds since the epoch) as the store's JSON writes it: "2026-11-22T10:11:12.345Z". */
void ft_store_format_time(double t, char *buf, size_t cap);

/* Insert a new run in PENDING with a CREATED event. Fields read from `r`: name, model,
 * task_type, train_data_path, register_to, eval_data_path, custom_weights_path,
 * training_duration, learning_rate, context_length, experiment_path, run_dir, config_json.
 * FT_ERR_INVALID when the name is taken. */
ft_status ft_store_run_create(ft_store *s, const ft_run *r, ft_err *err);
/* FT_ERR_NOT_FOUND when no run has that name. */
ft_status ft_store_run_get(ft_store *s, const char *name, ft_run *out, ft_err *err);
/* Runs, newest first, optionally only those whose status bit (1 << status) is in `status_mask`
 * (0: all), at most `limit` (0: no limit). The caller frees with ft_run_list_free. */
ft_status ft_store_run_list(ft_store *s, uint32_t status_mask, int64_t limit, ft_run **runs, size_t *n, ft_err *err);
void ft_run_list_free(ft_run *runs, size_t n);

/* Move a run to `to`, validating the transition against the current status in one transaction,
 * and record an event of type `event_type` (NULL: none) with `message`. `details` (NULL: keep)
 * replaces the run's details; STARTING (a new attempt) clears them unless given. STARTING records started time, final statuses the finished time.
 * FT_ERR_INVALID names both statuses when the move is not allowed. */
ft_status ft_store_run_set_status(ft_store *s, const char *name, ft_run_status to, const char *event_type,
                                  const char *level, const char *message, const char *details, ft_err *err);
/* Claim a run for this process: sets pid and host. */
ft_status ft_store_run_set_owner(ft_store *s, const char *name, int64_t pid, const char *host, ft_err *err);
/* Take a run over from the process that owned it (`expected_pid`, e.g. one that died): sets
 * (pid, host) only if the run is still owned by expected_pid, in one statement, so that of two
 * processes resuming the same run (`ftune resume` and a worker) exactly one wins. The loser gets
 * FT_ERR_INVALID naming the new owner. */
ft_status ft_store_run_take_over(ft_store *s, const char *name, int64_t expected_pid, int64_t pid, const char *host,
                                 ft_err *err);
ft_status ft_store_run_set_progress(ft_store *s, const char *name, double progress, double eta_s, ft_err *err);
ft_status ft_store_run_set_registered(ft_store *s, const char *name, const char *registered_name, ft_err *err);
/* Replace the run's config_json (a JSON object's text): e.g. the world size and hosts a
 * data-parallel run records when it starts (ft_runs_world reads them). */
ft_status ft_store_run_set_config(ft_store *s, const char *name, const char *config_json, ft_err *err);
/* The oldest QUEUED run that no process owns yet (a foreground `ftune create` owns its run from
 * the start), moved to STARTING and owned by (pid, host) in one transaction, so that
 * two workers never take the same run. *name (caller frees) is NULL when none is queued. */
ft_status ft_store_run_claim_next(ft_store *s, int64_t pid, const char *host, char **name, ft_err *err);
/* Remove a run and everything recorded about it (events, metrics, checkpoints). Registered
 * versions stay: they are clones. */
ft_status ft_store_run_delete(ft_store *s, const char *name, ft_err *err);

/* ---------------------------------------------------------------- events */

typedef struct ft_event {
    int64_t seq; /* 1, 2, ... per run */
    double time; /* unix seconds */
    char type[32];
    char level[8]; /* "INFO" | "WARN" | "ERROR" */
    char *message;
} ft_event;

/* Append an event; *seq (may be NULL) gets its sequence number. */
ft_status ft_store_event_add(ft_store *s, const char *run, const char *type, const char *level,
                             const char *message, int64_t *seq, ft_err *err);
/* Events with seq > after_seq, in order. The caller frees with ft_event_list_free. */
ft_status ft_store_event_list(ft_store *s, const char *run, int64_t after_seq, ft_event **events, size_t *n,
                              ft_err *err);
void ft_event_list_free(ft_event *events, size_t n);
json_t *ft_event_to_json(const ft_event *e);

/* ---------------------------------------------------------------- metrics */

typedef struct ft_metric {
    int64_t step;
    char name[48];
    double value;
    double time;
} ft_metric;

/* Record n metrics of one step in one transaction. */
ft_status ft_store_metrics_add(ft_store *s, const char *run, int64_t step, const char *const *names,
                               const double *values, size_t n, ft_err *err);
/* Record metrics of any steps (m[i].time ignored) in one transaction. */
ft_status ft_store_metrics_add_batch(ft_store *s, const char *run, const ft_metric *m, size_t n, ft_err *err);
/* Metrics in step order, only `name` when not NULL. The caller frees with ft_free. */
ft_status ft_store_metrics_list(ft_store *s, const char *run, const char *name, ft_metric **out, size_t *n,
                                ft_err *err);
/* Forget the metrics of steps after `step` (a resumed run replays them). */
ft_status ft_store_metrics_truncate(ft_store *s, const char *run, int64_t step, ft_err *err);

/* ---------------------------------------------------------------- checkpoints */

typedef struct ft_checkpoint_row {
    char name[64]; /* "ep1-ba30" */
    char *path;
    int64_t step, epoch;
    double time;
} ft_checkpoint_row;

ft_status ft_store_checkpoint_add(ft_store *s, const char *run, const char *name, const char *path, int64_t step,
                                  int64_t epoch, ft_err *err);
ft_status ft_store_checkpoint_list(ft_store *s, const char *run, ft_checkpoint_row **out, size_t *n, ft_err *err);
void ft_checkpoint_list_free(ft_checkpoint_row *rows, size_t n);

/* ---------------------------------------------------------------- registry
 * Three-level names `catalog.schema.model`; each registration adds version 1, 2, ... whose files
 * are a clone of the source folder at $FTUNE_HOME/registry/<catalog>/<schema>/<model>/<version>/
 * (the layout the model resolver reads, see hf.h). */

typedef struct ft_model_version {
    char *name; /* "c.s.n" */
    int64_t version;
    char *path;
    char *run;        /* source run, NULL if registered by hand */
    char *checkpoint; /* source checkpoint folder, NULL if none */
    char *metrics_json;
    char *tokenizer_hash; /* fnv1a64 of tokenizer.json, tokenizer_config.json, chat_template.jinja */
    double created;
} ft_model_version;

void ft_model_version_deinit(ft_model_version *v);
json_t *ft_model_version_to_json(const ft_model_version *v);

/* Check `name` is catalog.schema.model, each part [A-Za-z0-9_-]+ . */
ft_status ft_registry_check_name(const char *name, ft_err *err);
/* Clone the HF folder `src_dir` into the registry under `name` as its next version and record it.
 * The copy goes to a temporary folder first (files fsynced), then is renamed to its version
 * number inside the transaction that records it, so a version row always has complete files.
 * `run`, `checkpoint`, `metrics_json` may be NULL. `home` NULL: $FTUNE_HOME. */
ft_status ft_registry_register(ft_store *s, const char *home, const char *name, const char *src_dir,
                               const char *run, const char *checkpoint, const char *metrics_json,
                               ft_model_version *out, ft_err *err);
/* Registered model names (sorted) with their newest version; caller frees with
 * ft_model_version_list_free. */
ft_status ft_registry_list(ft_store *s, ft_model_version **out, size_t *n, ft_err *err);
/* All versions of `name`, oldest first ("c.s.n/2": that version only). FT_ERR_NOT_FOUND if none. */
ft_status ft_registry_show(ft_store *s, const char *name, ft_model_version **out, size_t *n, ft_err *err);
void ft_model_version_list_free(ft_model_version *v, size_t n);
/* Delete one version, "c.s.n/3": its folder and its row. Its number is never given again.
 * Refused (FT_ERR_INVALID) while another live ftune process is registering or deleting a version
 * of that model, unless `force`; FT_ERR_NOT_FOUND when there is no such version. `home` NULL:
 * $FTUNE_HOME. */
ft_status ft_registry_delete(ft_store *s, const char *home, const char *name_version, bool force, ft_err *err);
/* Remove the temporary folders (registry/c/s/n/.incoming-<pid>-*, .deleting-<pid>-*) that
 * processes which are no longer alive left behind (a registration killed half-way). Those of live
 * processes stay. `home` NULL: $FTUNE_HOME. */
ft_status ft_registry_clean_incoming(const char *home, ft_err *err);

/* ---------------------------------------------------------------- names and paths */

/* A run name as SPEC §1: "<chat|ift|cpt>-<model slug>-<6 lowercase letters>" (caller frees). */
char *ft_run_name_generate(const char *task_type, const char *model, ft_rng *rng);
/* The slug of a model name: its last part, lowercased, other characters folded to '-'
 * ("meta-llama/Meta-Llama-3.1-8B-Instruct" -> "meta-llama-3-1-8b-instruct"). Caller frees. */
char *ft_model_slug(const char *model);
/* Where an experiment path lives on disk, canonical (ftune/base.h ft_path_map): workspace paths
 * (/Users/.., /Workspace/.., /Shared/.., /Repos/..) under $FTUNE_HOME/experiments, /Volumes/..
 * under $FTUNE_HOME/volumes, others made absolute. A mapped path that leaves its root ("..",
 * symbolic links) is refused with FT_ERR_INVALID. *out is owned by the caller. */
ft_status ft_experiment_dir(const char *experiment_path, char **out, ft_err *err);

#endif
