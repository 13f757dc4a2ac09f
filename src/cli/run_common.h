/* cli/run_common.h: what the run commands (create, resume, worker, get, list, events, metrics,
 * cancel, delete, registry) share: opening the store, the faces of the run service (ftune/runs.h:
 * a foreground run, the worker), and the human renderings of runs. */
#ifndef FTUNE_CLI_RUN_COMMON_H
#define FTUNE_CLI_RUN_COMMON_H

#include <stdbool.h>

#include "cli.h"
#include "ftune/comm.h"
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

/* `mpirun -np N ftune create|resume ...` (launched by an MPI launcher): rank 0 runs `fn` with the
 * run's processes available to run_execute (run_comm), the other ranks follow its runs
 * (ft_train_follow); all exit with rank 0's status. */
int run_distributed(const char *command, int (*fn)(int, char **), int argc, char **argv);
/* The processes of this command's runs (NULL: this one alone). */
ft_comm *run_comm(void);

typedef struct run_exec_opts {
    bool resume;     /* continue from the latest checkpoint (else: start fresh unless there is one) */
    bool show;       /* progress bar and event lines on stderr */
    int threads;     /* > 0: override the configured thread count */
    bool allow_changed_data; /* resume even when the data changed since the start (a WARN event) */
    bool data_checked;       /* the caller found the data unchanged (run_data_check): skip checking again */
} run_exec_opts;

/* ft_runs_execute in the foreground: Ctrl-C, SIGTERM and SIGHUP stop the run after a checkpoint;
 * with `show`, a progress bar and the event lines on stderr (quiet: only a failure's reason).
 * Returns the exit code (0 completed, 1 stopped or failed). */
int run_execute(ft_store *s, const char *name, const run_exec_opts *o);

/* ft_runs_worker_ensure with this binary. */
void run_ensure_worker(void);
/* ft_runs_worker until SIGINT, SIGTERM or SIGHUP, its log lines on stderr unless quiet. */
int run_worker_loop(bool until_idle, double poll_s, bool quiet, int workers);

/* ---------------------------------------------------------------- run folders (ftune/runs.h) */

/* The checks on a new run's canonical folder: allowed, and absent or empty. Returns 0, or prints
 * the usage error naming --flag and returns its exit code. */
int run_dir_check_new(const char *command, const char *flag, const char *run_dir, const char *name);
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
