/* ftune/runs.h: the run service (SPEC §2, §5, §7) that the CLI and the server are faces of: the
 * JSON objects they print or serve (a run with its checkpoints and evaluations, the model
 * catalogue). Implemented in src/runs/. */
#ifndef FTUNE_RUNS_H
#define FTUNE_RUNS_H

#include <jansson.h>
#include <signal.h>

#include "ftune/data.h"
#include "ftune/memplan.h"
#include "ftune/store.h"
#include "ftune/train.h"

/* The run's checkpoints still on disk ([{name, path, step, epoch, created}], oldest first; those
 * removed by keep_checkpoints are left out). New reference; an empty list when none. */
json_t *ft_runs_checkpoints_json(ft_store *s, const char *run);
/* The evaluations kept in the run folder (eval/ep{E}-ba{B}.json, ftune/train.h): [{step, epoch,
 * eval_loss, eval_token_accuracy, eval_tokens, generations: [{prompt, completion}], path}] by
 * step. New reference. */
json_t *ft_runs_evaluations_json(const char *run_dir);
/* The precision a run trained in, from its latest MODEL_INITIALIZED event (the trainer writes
 * "dtype D (GEMM route R" there): dtype "fp32"/"bf16" and route "sgemm"/"sgemm-bf16"/
 * "onednn-bf16". False (both "") before the model is initialized. */
bool ft_runs_precision(ft_store *s, const char *run, char *dtype, size_t dtype_size, char *route, size_t route_size);
/* The processes a run trained on (issue #15): *world_size and *hosts (a new reference: an array of
 * host names, one per rank in rank order when the run recorded them so) from the run's config,
 * "world_size" and "hosts", which the trainer records for a run of several processes; a run that
 * started without them ran as one process on its recorded host. False (nothing set) when unknown:
 * not started yet, or a config whose fields are not a positive integer and an array of strings. */
bool ft_runs_world(const ft_run *r, int64_t *world_size, json_t **hosts);
/* The run as `ftune get --json`: ft_run_to_json plus "checkpoints", "evaluations" and, once
 * known, "dtype", "gemm_route", "world_size" and "hosts" (ft_runs_world). */
json_t *ft_runs_run_json_full(ft_store *s, const ft_run *r);

/* The model catalogue of SPEC §7 (`ftune models`). */
typedef struct ft_catalogue_entry {
    const char *id;   /* hub id "meta-llama/Meta-Llama-3.1-8B-Instruct" */
    const char *arch; /* "LlamaForCausalLM" */
    int64_t max_context;
    double default_lr;
} ft_catalogue_entry;
const ft_catalogue_entry *ft_runs_catalogue(size_t *n);
/* The catalogue as `ftune models --json`: [{name, architecture, max_context_length,
 * default_learning_rate, present, path}] with where each is in the local Hugging Face cache. */
json_t *ft_runs_models_json(void);

/* ---------------------------------------------------------------- processes and actions */

/* This machine's host name (static buffer). */
const char *ft_runs_hostname(void);
/* Whether the run's recorded process is alive. A run owned by another host counts as alive (it
 * cannot be checked from here); a pid of 0 as dead; a zombie or a recycled pid (not an ftune) as
 * dead. */
bool ft_runs_process_alive(const ft_run *r);
/* STARTING, RUNNING or TERMINATING whose process is gone (SIGKILL, power cut, OOM). */
bool ft_runs_is_orphaned(const ft_run *r);

/* Cancel (SPEC §5): a pending or queued run (or one whose process is gone) stops at once; a
 * running one moves to TERMINATING, and its process stops at the next step boundary after a
 * checkpoint, then records STOPPED. *what (may be NULL) says which ("stopped", "stopping after
 * its next checkpoint", "already finished"). FT_ERR_NOT_FOUND for an unknown run. */
ft_status ft_runs_cancel(ft_store *s, const char *name, const char **what, ft_err *err);
/* Hand a stopped, failed or orphaned run back to this machine's worker, which continues it from
 * its latest checkpoint: the run moves to STARTING owned by no process here, which the worker
 * takes over (`ftune resume` does the same in the foreground). FT_ERR_INVALID when the run has
 * completed, is queued, or its process is alive. */
ft_status ft_runs_request_resume(ft_store *s, const char *name, ft_err *err);

/* ---------------------------------------------------------------- validation (SPEC §3) */

typedef struct ft_runs_validate_params {
    const char *model;         /* its tokenizer and chat template; NULL: structure only */
    ft_task_type task;
    const char *path;          /* the data (dbfs:/Volumes and /Volumes paths mapped) */
    int64_t context_length;    /* 0: min(8192, the model's maximum) */
    ft_data_duration duration; /* for the totals (default 1 epoch) */
    int64_t global_batch_size; /* 0: the trainer's automatic size */
    uint64_t seed;             /* packing seed (default 17) */
    size_t max_errors;         /* issues kept in the report (default 1000; all are counted) */
    bool estimate;             /* measure a training step for the time estimate */
    int threads;               /* 0: all cores */
    /* The run's memory settings (dtype, optimizer, micro_batch_size, memory_limit,
     * activation_checkpointing; global_batch_size is taken from above); NULL: the defaults. */
    const ft_train_config *run;
    int64_t world_size;        /* processes the run will train on (mpirun -np N), for the memory plan; 0: one */
} ft_runs_validate_params;
void ft_runs_validate_default_params(ft_runs_validate_params *p);

/* Validate data as `ftune validate` does: every record checked, the token statistics and the
 * plan (steps, epochs, tokens) when a model is given, and then, when the data is valid, the
 * run's memory plan into *memory (may be NULL; ft_runs_memory_plan's object, "fits": false when
 * the run cannot fit). FT_OK whenever the data could be read (the report says whether it is
 * valid); otherwise an error, and *field (may be NULL) names the parameter it is about ("model",
 * "path", "context_length"). The caller frees the report and the memory plan. */
ft_status ft_runs_validate(const ft_runs_validate_params *p, ft_data_report **report, json_t **memory,
                           const char **field, ft_err *err);

/* The memory plan of a run (ftune/memplan.h) as `ftune validate`, `ftune create` and the API make
 * it: for c's global batch (else the trainer's automatic size, capped by the epoch when
 * rows_per_epoch > 0), the predicted peak against the limit (c->memory_limit, default 95% of
 * what is available) and the available memory. *json (may be NULL) gets {fits,
 * predicted_peak_bytes, limit_bytes, available_bytes, available_source, activation_checkpointing,
 * micro_batch_size, weights_bytes, gradients_bytes, optimizer_bytes, activations_bytes,
 * loader_bytes, process_bytes, comm_bytes, world_size, zero, predicted_peak_others_bytes (ranks > 0),
 * message?}, per process of `world`
 * (NULL: one process; ft_memplan_for_run); `summary` (may be NULL) the one-line description
 * ("predicted peak ...; limit ... of ... available (...)"). FT_OK when it fits; FT_ERR_INVALID
 * when it cannot, with the numbers and what would make it fit. */
ft_status ft_runs_memory_plan(const ft_train_config *c, const ft_model_config *mc, int64_t T, int64_t rows_per_epoch,
                              const ft_memplan_world *world, json_t **json, char *summary, size_t cap, ft_err *err);
/* Recompute the report's epochs, tokens_total and steps_total for `global_batch_size` rows a step,
 * or (0) the trainer's automatic global batch size, which depends on the rows per epoch that
 * validation has just counted. */
void ft_runs_plan_batches(ft_data_report *r, ft_data_duration d, int64_t global_batch_size);

/* ---------------------------------------------------------------- run folders (files.c) */

/* The data fingerprint a run records when it starts (exec.c), in its folder. */
#define FT_RUNS_DATA_FINGERPRINT "data_fingerprint.json"

/* Why the canonical folder `dir` may not hold a run ($FTUNE_HOME, a folder holding it, or one
 * inside it but outside experiments/ and volumes/); NULL when it may. Caller frees. */
char *ft_runs_dir_forbidden(const char *dir);
/* The run named by the folder's marker (caller frees); NULL when there is none. */
char *ft_runs_dir_owner(const char *dir);
/* Make the run folder and its missing parents and write its marker (the run's name and the
 * folders made), which is what ft_runs_dir_remove trusts. */
ft_status ft_runs_dir_make(const char *run_dir, const char *name, ft_err *err);
/* Remove what ftune created for run `name` in `run_dir` (never a file it did not create); what
 * stays or could not be reached is described in `note`. FT_OK, or FT_ERR_IO when something ftune
 * made could not be removed (the note says what). */
ft_status ft_runs_dir_remove(const char *run_dir, const char *name, ft_buf *note);

/* Delete a run (`ftune delete`, DELETE /api/runs/{name}): its record and the files ftune made for
 * it; registered versions are clones and stay. A run whose process is alive is refused
 * (FT_ERR_INVALID) unless `force`, which kills that process first (only on this host). `note` (may
 * be NULL) gets what stayed on disk. FT_ERR_NOT_FOUND for an unknown run; FT_ERR_IO when the
 * record went but some file ftune made could not be removed (the note says which). */
ft_status ft_runs_delete(ft_store *s, const char *name, bool force, ft_buf *note, ft_err *err);

/* ---------------------------------------------------------------- executing a run (exec.c) */

/* What a caller sees of a run while it executes: the event lines and the steps (for a progress
 * bar). Every member may be NULL. The CLI prints them; the worker writes failures to its log. */
typedef struct ft_runs_observer {
    void *user;
    /* An event as recorded (type "TRAIN_UPDATED", "FAILED", ...; level "INFO" | "WARN" |
     * "ERROR"), and the notices that are not events (type "  eval prompt", "TERMINATING"). */
    void (*on_line)(void *user, const char *type, const char *level, const char *message);
    void (*on_step)(void *user, int64_t step, int64_t total_steps, double loss);
} ft_runs_observer;

typedef struct ft_runs_exec_params {
    bool resume;             /* continue from the latest checkpoint (else: start fresh unless there is one) */
    int threads;             /* > 0: override the configured thread count */
    bool allow_changed_data; /* resume even when the data changed since the start (a WARN event) */
    bool data_checked;       /* the caller found the data unchanged (ft_runs_data_check): skip checking again */
    const ft_runs_observer *observer; /* NULL: nothing reported beyond the store */
    /* The stop signal received (SIGINT, SIGTERM, SIGHUP; 0: none), set by the caller's signal
     * handler: the run stops at the next step boundary after a checkpoint and records STOPPED
     * with the signal named in its details. NULL: none. */
    const volatile sig_atomic_t *stop_signal;
    /* Data parallelism (issue #15): the processes of this run (ftune/comm.h; this process is rank
     * 0, the others follow with ft_train_follow). NULL: this process alone. */
    ft_comm *comm;
} ft_runs_exec_params;

/* Execute the run `name`, which the caller has moved to STARTING: take ownership (this pid and
 * host), train with the store as the trainer's sink (events, metrics, checkpoints, progress;
 * writes wait in memory while ftune.db is locked or unavailable, for FTUNE_STORE_OUTAGE_S seconds,
 * default 600), stop after a checkpoint when the run is cancelled (TERMINATING) or *stop_signal
 * is set, register the exported model, and leave the run COMPLETED, STOPPED or FAILED (*final,
 * may be NULL). FT_OK when the run ended COMPLETED; otherwise an error whose message is the
 * reason (FT_ERR_CANCELLED when it stopped). */
ft_status ft_runs_execute(ft_store *s, const char *name, const ft_runs_exec_params *p, ft_run_status *final,
                          ft_err *err);

/* Compare a run's data now with what it recorded when it started (FT_RUNS_DATA_FINGERPRINT):
 * returns the number of files whose content changed (or 1 when the data cannot be read now), 0
 * when none, -1 when nothing was recorded; `changes` describes each difference (also mere
 * touches). *now (may be NULL) gets the current fingerprint. */
int ft_runs_data_check(const ft_run *r, ft_buf *changes, json_t **now);

/* ---------------------------------------------------------------- the worker (worker.c) */

typedef struct ft_runs_worker_params {
    int workers;        /* runs executed at once (default 1) */
    bool until_idle;    /* return when nothing is queued and nothing runs */
    double poll_s;      /* seconds between looks at the queue (default 2) */
    /* Set (to the signal, or any non-zero value) by the caller to stop: each running run gets
     * SIGTERM and stops after a checkpoint (STOPPED, resumable), then the worker returns. */
    const volatile sig_atomic_t *stop;
    /* Lines for the worker's log ("starting NAME", "NAME ended (exit 0)"); NULL: none. */
    void (*on_log)(void *user, const char *line);
    void *log_user;
} ft_runs_worker_params;
void ft_runs_worker_default_params(ft_runs_worker_params *p);

/* The background worker of $FTUNE_HOME: one per home (a lock file, worker.lock, holding its pid).
 * It resumes this host's runs whose process died (from their latest checkpoint; a run that dies
 * three times in a row is failed), then starts queued runs oldest first, up to `workers` at
 * once, each in its own forked process (a crash takes the run, never the worker). The calling
 * process must be single-threaded (it forks without exec). FT_ERR_INVALID when another worker
 * holds the lock (with until_idle: FT_OK, that one serves the queue). */
ft_status ft_runs_worker(const ft_runs_worker_params *p, ft_err *err);
/* Make sure a worker serves the queue: when none holds the lock, start `exe worker --until-idle`
 * detached (its output appended to $FTUNE_HOME/worker.log). */
void ft_runs_worker_ensure(const char *exe);

/* ---------------------------------------------------------------- creating a run (create.c) */

/* Run names as `ftune create --name` accepts them: letters, digits, '-', '_' and '.', at most
 * 128, not starting with '.' or '-'. */
bool ft_runs_name_ok(const char *name);
/* The checks on a new run's canonical folder: allowed (ft_runs_dir_forbidden), and absent or
 * empty. FT_ERR_INVALID with *field (may be NULL) "experiment_path" or "name" saying which to
 * change; FT_ERR_IO (field "experiment_path") when the folder cannot even be looked at (a file
 * or an unreadable folder on its path). */
ft_status ft_runs_dir_check_new(const char *run_dir, const char *name, const char **field, ft_err *err);

typedef struct ft_runs_create_params {
    /* The create() parameters (SPEC §2; model, train_data_path and register_to required). name
     * NULL: generated (<task>-<model>-<6 letters>); experiment_path NULL: /Users/<user>/<name>.
     * Paths are recorded absolute and canonical (a relative one from the working folder). Not
     * modified. */
    const ft_train_config *config;
    /* true: QUEUED for the background worker; false: QUEUED and owned by this process (pid,
     * host), for the caller to move to STARTING and execute (ft_runs_execute). */
    bool detach;
    const char *worker_exe; /* with detach: start `worker_exe worker --until-idle` when no worker serves the queue */
    bool summary;           /* measure a training step and report the training data through on_summary */
    void *user;
    /* Every problem of the data, as found (field: "train_data_path" or "eval_data_path"). */
    void (*on_issue)(void *user, const char *field, const ft_data_issue *issue);
    /* The training data's report, with the plan and (summary) the time estimate. */
    void (*on_summary)(void *user, const char *path, const ft_data_report *report);
    /* The memory plan's line ("predicted peak ...; limit ... of ... available (...)") when it fits. */
    void (*on_memory)(void *user, const char *summary);
    /* The processes the run will train on (`mpirun -np N ftune create`), for the memory plan
     * (per process); NULL: one. */
    const ft_memplan_world *world;
} ft_runs_create_params;

/* Create a run as `ftune create` and POST /api/runs do: every parameter checked, the run folder,
 * and with validate_inputs the model (weights headers, tokenizer, chat template), every record of
 * the data at the run's context length, custom weights; always the memory plan. Then the run
 * folder with its marker, the record, and the queue. `store` NULL: $FTUNE_HOME's, opened only
 * once everything is valid. *name gets the run's name (caller frees); *memory (may be NULL) the
 * memory plan (ft_runs_memory_plan's object) when the run was refused for memory ("fits":
 * false), else NULL. On an error nothing is recorded and *field (may be NULL) names the parameter
 * it is about ("train_data_path", "name", ...; NULL when none): invalid data is FT_ERR_INVALID
 * with its problems given to on_issue, a refusal for memory FT_ERR_INVALID with *memory set. */
ft_status ft_runs_create(ft_store *store, const ft_runs_create_params *p, char **name, json_t **memory,
                         const char **field, ft_err *err);

#endif
