/* cli/run_common.h: what the run commands (create, resume, worker, get, list, events, metrics,
 * cancel, delete, registry) share: opening the store, executing a run with the store as the
 * trainer's sink, the background worker, and the human renderings of runs. */
#ifndef FTUNE_CLI_RUN_COMMON_H
#define FTUNE_CLI_RUN_COMMON_H

#include <stdbool.h>

#include "cli.h"
#include "ftune/store.h"

/* Open $FTUNE_HOME/ftune.db; on failure prints "ftune CMD: why" and returns the exit code. */
int run_open_store(const char *command, ft_store **s);
/* The same for a command that works on existing runs: when there is no ftune.db yet, an empty
 * store in memory (no folder is created for `list`, `get`, ... with a new FTUNE_HOME). */
int run_open_store_existing(const char *command, ft_store **s);
/* run_open_store_existing for a command that still holds its parsed arguments: on failure also
 * frees a. */
int run_open_store_args(const char *command, cli_args *a, ft_store **s);
/* The usage check of the commands on exactly one RUN (get, resume, events, metrics): 0 when there
 * is one; otherwise frees a, prints the usage error and returns its exit code. */
int run_expect_one_run(const char *command, cli_args *a);

/* This machine's host name (static buffer). */
const char *run_hostname(void);
/* Whether the run's recorded process is alive. A run owned by another host counts as alive (it
 * cannot be checked from here); a pid of 0 as dead. */
bool run_process_alive(const ft_run *r);
/* STARTING, RUNNING or TERMINATING whose process is gone (SIGKILL, power cut, OOM). */
bool run_is_orphaned(const ft_run *r);

typedef struct run_exec_opts {
    bool resume;     /* continue from the latest checkpoint (else: start fresh unless there is one) */
    bool show;       /* progress bar and event lines on stderr */
    int threads;     /* > 0: override the configured thread count */
    bool allow_changed_data; /* resume even when the data changed since the start (a WARN event) */
    bool data_checked;       /* the caller found the data unchanged (run_data_check): skip checking again */
} run_exec_opts;

/* Compare a run's data now with what it recorded when it started (RUN_DATA_FINGERPRINT): returns
 * the number of files whose content changed (or 1 when the data cannot be read now), 0 when none,
 * -1 when nothing was recorded; `changes` describes each difference (also mere touches). *now
 * (may be NULL) gets the current fingerprint. */
int run_data_check(const ft_run *r, ft_buf *changes, json_t **now);

/* Execute the run `name`, which the caller has moved to STARTING: take ownership (pid, host),
 * train with the store as sink, register the exported model, and leave the run COMPLETED,
 * STOPPED or FAILED. Returns the exit code (0 completed, 1 stopped or failed). */
int run_execute(ft_store *s, const char *name, const run_exec_opts *o);

/* Make sure a background worker serves the queue, starting `ftune worker --until-idle` detached
 * when none holds the worker lock. */
void run_ensure_worker(void);
/* The worker loop (ftune worker). */
int run_worker_loop(bool until_idle, double poll_s, bool quiet);

/* ---------------------------------------------------------------- run folders (run_files.c) */

/* The data fingerprint a run records when it starts (run_exec.c), in its folder. */
#define RUN_DATA_FINGERPRINT "data_fingerprint.json"

/* Why the canonical folder `dir` may not hold a run ($FTUNE_HOME, a folder holding it, or one
 * inside it but outside experiments/ and volumes/); NULL when it may. Caller frees. */
char *run_dir_forbidden(const char *dir);
/* The checks on a new run's canonical folder: allowed, and absent or empty. Returns 0, or prints
 * the usage error naming --flag and returns its exit code. */
int run_dir_check_new(const char *command, const char *flag, const char *run_dir, const char *name);
/* Make the run folder and its missing parents and write its marker (the run's name and the
 * folders made), which is what `delete` trusts. */
ft_status run_dir_make(const char *run_dir, const char *name, ft_err *err);
/* Remove what ftune created for run `name` in `run_dir` (see run_files.c); what stays or could not
 * be reached is described in `note`. Returns 0, or 1 when something ftune made could not be
 * removed. */
int run_dir_remove(const char *run_dir, const char *name, ft_buf *note);

/* "RUNNING ▓▓▓▓▓▓▓▓░░░░░░░░░░░░ 45%  ETA 3m12s" into buf. */
void run_status_line(const ft_run *r, char *buf, size_t cap);
/* Print a run's JSON (`get --json`) on one line of stdout. */
void run_print_json(const ft_run *r);
/* The same object with "checkpoints" ([{name, path, step, epoch, created}], those still on disk)
 * and "evaluations" (the run folder's eval/ files: {step, epoch, eval_loss, eval_token_accuracy,
 * eval_tokens, generations: [{prompt, completion}], path}, by step): `get --json`, and the
 * final line of `create --json` and `resume --json`. */
void run_print_json_full(ft_store *s, const ft_run *r);
/* Local time "2026-11-22 10:11:12" into buf. */
void run_format_time(double t, char *buf, size_t cap);

#endif
