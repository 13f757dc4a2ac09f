/* runs/worker.c: the background worker of an $FTUNE_HOME (`ftune worker`, which `ftune serve`
 * supervises and `ftune create --detach` starts): it resumes this host's runs whose process died
 * and starts queued runs, up to `workers` at once, each in its own forked process, so that a
 * crashed run (a segfault, the OOM killer) takes that run and never the worker or the server.
 *
 * One worker per home, held by an flock on $FTUNE_HOME/worker.lock (which holds its pid). Queued
 * runs are claimed atomically in the store (ft_store_run_claim_next), so a foreground `ftune
 * resume` and the worker never take the same run. On stop each running run gets SIGTERM and stops
 * at its next step boundary after a checkpoint (STOPPED, resumable). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftune/runs.h"

#define MAX_WORKERS 64

void ft_runs_worker_default_params(ft_runs_worker_params *p) {
    memset(p, 0, sizeof *p);
    p->workers = 1;
    p->poll_s = 2.0;
}

/* ---------------------------------------------------------------- the lock */

static char *worker_lock_path(void) {
    char *home = ft_home_dir();
    if (!home)
        return NULL;
    ft_mkdir_p(home, NULL);
    char *p = ft_path_join(home, "worker.lock");
    ft_free(home);
    return p;
}

/* Take the worker lock without waiting; -1 when another worker holds it. */
static int take_worker_lock(void) {
    char *p = worker_lock_path();
    if (!p)
        return -1;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ft_free(p);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void ft_runs_worker_ensure(const char *exe) {
    int fd = take_worker_lock();
    if (fd < 0)
        return; /* a worker is serving the queue; it re-checks the queue before it exits */
    close(fd);
    if (!exe)
        return;
    char *home = ft_home_dir();
    char *log = home ? ft_path_join(home, "worker.log") : NULL;
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        if (fork() != 0)
            _exit(0); /* the worker is re-parented to init: nobody has to wait for it */
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        if (home) /* the worker serves this home whatever folder it runs in */
            setenv("FTUNE_HOME", home, 1);
        int out = log ? open(log, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        execl(exe, "ftune", "worker", "--until-idle", (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
    ft_free(log);
    ft_free(home);
}

/* ---------------------------------------------------------------- finding work */

static ft_status fail_run(ft_store *s, const char *name, const char *reason) {
    return ft_store_run_set_status(s, name, FT_RUN_FAILED, "FAILED", "ERROR", reason, reason, NULL);
}

/* How many times this worker resumed each run: a run whose process keeps dying is failed when it
 * dies after three resumes instead of looping forever. */
typedef struct resume_counts {
    char *names[64];
    int count[64];
} resume_counts;

/* The run's slot in rc (NULL when all 64 are taken: then it is not counted). */
static int *resume_count(resume_counts *rc, const char *name) {
    int k = 0;
    while (k < 64 && rc->names[k] && strcmp(rc->names[k], name))
        k++;
    if (k == 64)
        return NULL;
    if (!rc->names[k] && !(rc->names[k] = ft_strdup(name)))
        return NULL;
    return &rc->count[k];
}

/* Find work: first a run of this host whose process died (resumed from its latest checkpoint),
 * then the oldest queued one. *resume says which. Runs executing in this worker's own children
 * are never orphans (their pid is alive). */
static ft_status next_work(ft_store *s, resume_counts *counts, char **name, bool *resume, ft_err *err) {
    *name = NULL;
    *resume = false;
    ft_run *runs;
    size_t n;
    uint32_t mask = (1u << FT_RUN_STARTING) | (1u << FT_RUN_RUNNING) | (1u << FT_RUN_TERMINATING);
    FT_TRY(ft_store_run_list(s, mask, 0, &runs, &n, err));
    for (size_t i = n; i-- > 0 && !*name;) { /* oldest first */
        ft_run *r = &runs[i];
        if (!r->host || strcmp(r->host, ft_runs_hostname()) != 0 || !ft_runs_is_orphaned(r))
            continue;
        char msg[256];
        snprintf(msg, sizeof msg, "the process running it (pid %lld) is gone", (long long)r->pid);
        if (r->status == FT_RUN_TERMINATING) {
            ft_store_run_set_status(s, r->name, FT_RUN_STOPPED, "STOPPED", "INFO", msg, "cancelled", NULL);
            continue;
        }
        char full[400];
        snprintf(full, sizeof full, "%s: resuming from the latest checkpoint", msg);
        /* Ownership first, atomically: `ftune resume` may be reaching for the same run. */
        if (ft_store_run_take_over(s, r->name, r->pid, getpid(), ft_runs_hostname(), NULL) != FT_OK)
            continue;
        int *count = resume_count(counts, r->name);
        if (count && *count >= 3) { /* a run whose process keeps dying is not resumed forever */
            snprintf(full, sizeof full, "%s again after three resumes from its latest checkpoint; giving up "
                                        "(`ftune resume %s` tries again)", msg, r->name);
            fail_run(s, r->name, full);
            continue;
        }
        if (ft_store_run_set_status(s, r->name, FT_RUN_STARTING, "TRAIN_UPDATED", "WARN", full, NULL, NULL) == FT_OK) {
            if (count)
                ++*count;
            *name = ft_strdup(r->name);
            *resume = true;
        }
    }
    ft_run_list_free(runs, n);
    if (*name)
        return FT_OK;
    return ft_store_run_claim_next(s, getpid(), ft_runs_hostname(), name, err);
}

static bool queue_nonempty(void) {
    ft_store *s;
    if (ft_store_open_home(&s, NULL) != FT_OK)
        return false;
    ft_run *runs;
    size_t n = 0;
    bool any = ft_store_run_list(s, 1u << FT_RUN_QUEUED, 1, &runs, &n, NULL) == FT_OK && n > 0;
    if (n)
        ft_run_list_free(runs, n);
    ft_store_close(s);
    return any;
}

/* ---------------------------------------------------------------- the loop */

static volatile sig_atomic_t g_child_stop; /* the child's stop signal; a handler needs a global */
static void on_child_signal(int sig) {
    g_child_stop = sig;
    signal(sig, SIG_DFL); /* a second one ends the run at once */
}

static void logf_line(const ft_runs_worker_params *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_line(const ft_runs_worker_params *p, const char *fmt, ...) {
    if (!p->on_log)
        return;
    char line[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    p->on_log(p->log_user, line);
}

typedef struct child_ctx {
    const ft_runs_worker_params *p;
    const char *name;
} child_ctx;

/* The run's failures reach the worker's log (the store has them too). */
static void child_line(void *user, const char *type, const char *level, const char *message) {
    (void)level;
    const child_ctx *c = user;
    if (!strcmp(type, "FAILED"))
        logf_line(c->p, "run %s FAILED: %s", c->name, message);
}

/* In the forked child: execute the run and exit with 0 (completed) or 1. Never returns. The
 * worker's lock is closed first: a run that outlives its worker (killed with SIGKILL) must not keep
 * the next worker from starting (that one sees the run's process alive and leaves it alone). */
static void run_child(const ft_runs_worker_params *p, int lock, const char *name, bool resume) {
    if (lock >= 0)
        close(lock);
    g_child_stop = 0;
    struct sigaction sa = {0}, ign = {0};
    sa.sa_handler = on_child_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, NULL);
    /* SQLite connections must not cross a fork: the child opens its own. */
    ft_store *cs;
    if (ft_store_open_home(&cs, NULL) != FT_OK)
        _exit(1);
    child_ctx cc = {p, name};
    ft_runs_observer obs = {.user = &cc, .on_line = child_line};
    ft_runs_exec_params o = {.resume = resume, .observer = &obs, .stop_signal = &g_child_stop};
    ft_status st = ft_runs_execute(cs, name, &o, NULL, NULL);
    ft_store_close(cs);
    _exit(st == FT_OK ? 0 : 1);
}

typedef struct slot {
    pid_t pid; /* 0: free */
    char *name;
} slot;

/* Reap the children that ended; returns how many slots are busy. */
static int reap(const ft_runs_worker_params *p, slot *slots, int n, bool block) {
    int busy = 0;
    for (int i = 0; i < n; i++) {
        if (!slots[i].pid)
            continue;
        int status;
        pid_t w;
        while ((w = waitpid(slots[i].pid, &status, block ? 0 : WNOHANG)) < 0 && errno == EINTR && block)
            ;
        if (w == slots[i].pid) {
            logf_line(p, "%s ended (%s %d)", slots[i].name, WIFSIGNALED(status) ? "signal" : "exit",
                      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            slots[i].pid = 0;
            ft_free(slots[i].name);
            slots[i].name = NULL;
        } else if (w < 0 && errno == ECHILD) {
            slots[i].pid = 0;
            ft_free(slots[i].name);
            slots[i].name = NULL;
        } else {
            busy++;
        }
    }
    return busy;
}

static void nap(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL); /* a signal ends it early, which is what a stop wants */
}

ft_status ft_runs_worker(const ft_runs_worker_params *p, ft_err *err) {
    int n_slots = p->workers < 1 ? 1 : p->workers > MAX_WORKERS ? MAX_WORKERS : p->workers;
    double poll_s = p->poll_s > 0 ? p->poll_s : 2.0;
    int lock = take_worker_lock();
    if (lock < 0)
        return p->until_idle ? FT_OK
                             : FT_ERR(err, FT_ERR_INVALID, "another worker is already running for this FTUNE_HOME");
    char pidline[32];
    int pl = snprintf(pidline, sizeof pidline, "%ld\n", (long)getpid());
    if (ftruncate(lock, 0) == 0 && write(lock, pidline, (size_t)pl) < 0)
        FT_LOG_DEBUG("could not write the worker pid");
    logf_line(p, "pid %ld serving %s with %d slot%s", (long)getpid(),
              p->until_idle ? "until the queue is empty" : "the queue", n_slots, n_slots == 1 ? "" : "s");

    slot slots[MAX_WORKERS];
    memset(slots, 0, sizeof slots);
    resume_counts rcount;
    memset(&rcount, 0, sizeof rcount);
    ft_status rc = FT_OK;
    bool stopping = false;
    while (!(stopping = p->stop && *p->stop)) {
        int busy = reap(p, slots, n_slots, false);
        char *name = NULL;
        bool resume = false;
        if (busy < n_slots) {
            ft_store *s;
            if ((rc = ft_store_open_home(&s, err)) != FT_OK)
                break;
            rc = next_work(s, &rcount, &name, &resume, err);
            ft_store_close(s);
            if (rc != FT_OK)
                break;
        }
        if (name) {
            logf_line(p, "%s %s", resume ? "resuming" : "starting", name);
            pid_t pid = fork();
            if (pid == 0)
                run_child(p, lock, name, resume);
            if (pid < 0) {
                /* The run stays STARTING owned by us; when we are gone it is an orphan that the
                 * next worker resumes. */
                logf_line(p, "cannot start a process for %s: %s", name, strerror(errno));
                ft_free(name);
                nap(poll_s);
                continue;
            }
            for (int i = 0; i < n_slots; i++)
                if (!slots[i].pid) {
                    slots[i].pid = pid;
                    slots[i].name = name;
                    break;
                }
            continue; /* look for more work at once while slots are free */
        }
        if (busy == 0 && p->until_idle) {
            /* Release the lock, then look again: a run queued while we decided to leave is
             * either seen here or its creator found the lock free and started a new worker. */
            close(lock);
            lock = -1;
            if (!queue_nonempty() || (lock = take_worker_lock()) < 0)
                break;
            continue;
        }
        nap(poll_s);
    }
    if (stopping) /* each running run stops after a checkpoint */
        for (int i = 0; i < n_slots; i++)
            if (slots[i].pid)
                kill(slots[i].pid, SIGTERM);
    reap(p, slots, n_slots, true);
    for (int k = 0; k < 64; k++)
        ft_free(rcount.names[k]);
    if (lock >= 0)
        close(lock);
    return rc;
}
