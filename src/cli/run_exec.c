/* cli/run_exec.c: the CLI's face of the run service (ftune/runs.h): a foreground run with a
 * progress bar and event lines (Ctrl-C, SIGTERM and SIGHUP stop it after a checkpoint; a second
 * Ctrl-C kills at once, and the run then resumes from its latest checkpoint), the worker with its
 * log lines, the usage errors about run folders, and the human renderings of runs. What runs a
 * run, the worker, the queue and the run folders live in src/runs/. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftune/ckpt.h"
#include "ftune/data.h"
#include "ftune/json.h"
#include "ftune/runs.h"
#include "ftune/train.h"
#include "run_common.h"

/* ---------------------------------------------------------------- small helpers */

int run_open_store(const char *command, ft_store **s) {
    ft_err err;
    if (ft_store_open_home(s, &err) != FT_OK)
        return cli_report(command, &err);
    /* What killed registrations left in the registry goes at the next command (issue #9). */
    ft_registry_clean_incoming(NULL, NULL);
    return CLI_EXIT_OK;
}

int run_open_store_existing(const char *command, ft_store **s) {
    ft_err err;
    if (ft_store_open_home_existing(s, &err) != FT_OK)
        return cli_report(command, &err);
    ft_registry_clean_incoming(NULL, NULL);
    return CLI_EXIT_OK;
}

int run_open_store_args(const char *command, cli_args *a, ft_store **s) {
    int rc = run_open_store_existing(command, s);
    if (rc)
        cli_args_free(a);
    return rc;
}

int run_expect_one_run(const char *command, cli_args *a) {
    if (a->n_pos == 1)
        return CLI_EXIT_OK;
    cli_args_free(a);
    return cli_usage_error(command, NULL, "expected one run name");
}

const char *run_hostname(void) { return ft_runs_hostname(); }

bool run_process_alive(const ft_run *r) { return ft_runs_process_alive(r); }

bool run_is_orphaned(const ft_run *r) { return ft_runs_is_orphaned(r); }

void run_format_time(double t, char *buf, size_t cap) {
    if (t <= 0) {
        snprintf(buf, cap, "-");
        return;
    }
    time_t secs = (time_t)t;
    struct tm tm;
    localtime_r(&secs, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

void run_status_line(const ft_run *r, char *buf, size_t cap) {
    const char *st = ft_run_status_str(r->status);
    if (r->status == FT_RUN_RUNNING || r->status == FT_RUN_TERMINATING || r->status == FT_RUN_STARTING) {
        double p = r->progress < 0 ? 0 : r->progress > 1 ? 1 : r->progress;
        char bar[3 * 20 + 1];
        size_t k = 0;
        int filled = (int)(20.0 * p + 0.5);
        for (int i = 0; i < 20; i++) {
            memcpy(bar + k, i < filled ? "\xe2\x96\x93" : "\xe2\x96\x91", 3); /* ▓ ░ */
            k += 3;
        }
        bar[k] = 0;
        char eta[32] = "?";
        if (r->eta_s >= 0)
            ft_format_duration(r->eta_s, eta, sizeof eta);
        snprintf(buf, cap, "%s %s %d%%  ETA %s%s", st, bar, (int)(100.0 * p), eta,
                 run_is_orphaned(r) ? "  (its process is gone: `ftune resume` or `ftune worker` continues it)" : "");
    } else {
        snprintf(buf, cap, "%s", st);
    }
}

void run_print_json(const ft_run *r) {
    json_t *j = ft_run_to_json(r);
    char *s = ft_json_dumps(j, 0);
    printf("%s\n", s ? s : "{}");
    fflush(stdout);
    free(s);
    json_decref(j);
}

void run_print_json_full(ft_store *s, const ft_run *r) {
    json_t *j = ft_runs_run_json_full(s, r);
    char *txt = ft_json_dumps(j, 0);
    printf("%s\n", txt ? txt : "{}");
    fflush(stdout);
    free(txt);
    json_decref(j);
}

/* ---------------------------------------------------------------- a foreground run */

static volatile sig_atomic_t g_stop_signal; /* the SIGINT/SIGTERM/SIGHUP received; handlers need a global */

static void on_stop_signal(int sig) {
    g_stop_signal = sig;
    signal(sig, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

typedef struct show_ctx {
    const char *name;
    bool show;
    ft_progress bar;
    bool bar_started;
    bool failed_shown; /* the run's FAILED line (its reason) has been shown */
} show_ctx;

static void show_line(void *user, const char *type, const char *level, const char *msg) {
    show_ctx *c = user;
    if (!strcmp(type, "FAILED"))
        c->failed_shown = true;
    if (!c->show) { /* quiet: the reason of a failure still has to reach the user */
        if (!strcmp(type, "FAILED"))
            fprintf(stderr, "ftune: run %s FAILED: %s\n", c->name, msg);
        return;
    }
    if (c->bar_started && c->bar.tty)
        fputs("\r\033[K", stderr);
    fprintf(stderr, "%-18s %s%s%s\n", type, strcmp(level, "INFO") ? level : "", strcmp(level, "INFO") ? " " : "",
            msg ? msg : "");
    fflush(stderr);
}

static void show_step(void *user, int64_t step, int64_t total, double loss) {
    show_ctx *c = user;
    if (!c->show)
        return;
    if (!c->bar_started) {
        ft_progress_begin(&c->bar, stderr, "train", total, "step");
        c->bar_started = true;
    }
    char extra[64];
    snprintf(extra, sizeof extra, "loss %.4f", loss);
    ft_progress_update(&c->bar, step, extra);
}

/* ---------------------------------------------------------------- several processes (mpirun) */

static ft_comm *g_comm; /* this command's processes (run_distributed), for run_execute */

ft_comm *run_comm(void) { return g_comm; }

int run_distributed(const char *command, int (*fn)(int, char **), int argc, char **argv) {
    ft_comm *comm = NULL;
    ft_err err;
    if (ft_comm_world(&comm, &err) != FT_OK)
        return cli_report(command, &err);
    if (ft_comm_rank(comm) > 0) {
        /* Rank 0 parses the command line, records the run and reports; this rank trains its share
         * of each step with it and exits with rank 0's status. A stop signal (mpirun forwards
         * Ctrl-C and SIGTERM to every rank) is rank 0's to act on: it stops every rank at the same
         * step after a checkpoint. */
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        int status = 0;
        ft_status st = ft_train_follow(comm, &status, &err);
        ft_comm_free(comm);
        return st != FT_OK ? cli_report(command, &err) : status;
    }
    g_comm = comm;
    int rc = fn(argc, argv);
    g_comm = NULL;
    if (ft_train_release(comm, rc, &err) != FT_OK)
        cli_report(command, &err);
    ft_comm_free(comm);
    return rc;
}

int run_execute(ft_store *s, const char *name, const run_exec_opts *o) {
    show_ctx sc = {.name = name, .show = o->show};
    ft_runs_observer obs = {.user = &sc, .on_line = show_line, .on_step = show_step};
    ft_runs_exec_params p = {.resume = o->resume,
                             .threads = o->threads,
                             .allow_changed_data = o->allow_changed_data,
                             .data_checked = o->data_checked,
                             .observer = &obs,
                             .stop_signal = &g_stop_signal,
                             .comm = g_comm};
    g_stop_signal = 0;
    /* SIGHUP (the terminal closed) is a request to stop like SIGTERM: record STOPPED after a
     * checkpoint, resumable, instead of dying mid-step with the run left RUNNING. Output to a
     * closed pipe must not kill the run either: with SIGPIPE ignored, writes just fail. */
    struct sigaction sa = {0}, old_int, old_term, old_hup, old_pipe, ign = {0};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old_pipe);
    ft_err err;
    ft_status st = ft_runs_execute(s, name, &p, NULL, &err);
    if (sc.bar_started)
        ft_progress_end(&sc.bar, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    if (st == FT_OK)
        return CLI_EXIT_OK;
    /* A stop and the run's own failures were shown as its STOPPED or FAILED line; what is left
     * is the store refusing (an unknown run, a final status that could not be recorded). */
    if (st != FT_ERR_CANCELLED && !sc.failed_shown)
        return cli_report("run", &err);
    return CLI_EXIT_FAIL;
}

/* ---------------------------------------------------------------- the worker */

void run_ensure_worker(void) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return;
    self[n] = 0;
    ft_runs_worker_ensure(self);
}

static volatile sig_atomic_t g_worker_stop;
static void on_worker_signal(int sig) { g_worker_stop = sig; }

static void worker_log(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "ftune worker: %s\n", line);
    fflush(stderr);
}

int run_worker_loop(bool until_idle, double poll_s, bool quiet, int workers) {
    struct sigaction sa = {0};
    sa.sa_handler = on_worker_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL); /* a worker in a terminal that closes stops like on SIGTERM */
    g_worker_stop = 0;
    ft_runs_worker_params p;
    ft_runs_worker_default_params(&p);
    p.workers = workers;
    p.until_idle = until_idle;
    p.poll_s = poll_s;
    p.stop = &g_worker_stop;
    if (!quiet)
        p.on_log = worker_log;
    ft_err err;
    if (ft_runs_worker(&p, &err) != FT_OK)
        return err.code == FT_ERR_INVALID ? cli_fail("worker", CLI_EXIT_FAIL, "%s", err.msg) : cli_report("worker", &err);
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- run folders */

int run_dir_check_new(const char *command, const char *flag, const char *run_dir, const char *name) {
    char *why = ft_runs_dir_forbidden(run_dir);
    if (why) {
        int rc = cli_usage_error(command, flag, "the run folder %s cannot be used: %s; choose another --%s", run_dir,
                                 why, flag);
        ft_free(why);
        return rc;
    }
    struct stat st;
    if (lstat(run_dir, &st) != 0) {
        if (errno == ENOENT)
            return CLI_EXIT_OK;
        return cli_usage_error(command, flag, "the run folder %s cannot be used: %s", run_dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return cli_usage_error(command, flag, "the run folder %s exists and is not a folder; choose another --%s or --name",
                               run_dir, flag);
    DIR *d = opendir(run_dir);
    if (!d)
        return cli_usage_error(command, flag, "the run folder %s cannot be opened: %s", run_dir, strerror(errno));
    bool empty = true;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = false;
    closedir(d);
    if (empty)
        return CLI_EXIT_OK;
    char *owner = ft_runs_dir_owner(run_dir);
    int rc;
    if (owner && !strcmp(owner, name))
        rc = cli_usage_error(command, "name",
                             "the run folder %s already belongs to a run named %s; choose another --name (or "
                             "`ftune delete %s` first)",
                             run_dir, name, name);
    else
        rc = cli_usage_error(command, flag,
                             "the run folder %s already exists and is not empty; ftune writes only into a new or empty "
                             "folder, so that `ftune delete` never removes files it did not create: choose another "
                             "--%s or --name",
                             run_dir, flag);
    ft_free(owner);
    return rc;
}

