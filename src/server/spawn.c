/* server/spawn.c: the process `ftune serve` runs: the worker it supervises (`ftune worker
 * --workers N`, the run service's worker (ft_runs_worker): N queued runs at once, each in its own
 * process, and runs whose process died resumed).
 *
 * Why a supervised process rather than ft_runs_worker in a thread: the worker forks a process per
 * run without exec, which is only safe from a single-threaded process (a fork of the server would
 * copy SQLite's and libmicrohttpd's locks as other threads hold them).
 *
 * The worker is started with posix_spawn (the server is multithreaded: no fork without exec), with
 * the default signal dispositions and an empty mask (the server blocks SIGINT/SIGTERM for its
 * sigwait), in their own process group (a Ctrl-C at the terminal reaches the server, which stops
 * the worker in order), and FTUNE_HOME set to the served home. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftune/runs.h"
#include "ftune/store.h"
#include "server_internal.h"

/* What a run stopped by the server's shutdown says in its details; the next `ftune serve` on this
 * home resumes exactly those runs. */
#define SHUTDOWN_DETAILS "stopped by ftune serve's shutdown after a checkpoint; it resumes when the server starts again"

extern char **environ;

/* environ with FTUNE_HOME replaced (caller frees the array and its first entry). */
static char **child_env(const srv_ctx *c) {
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = ft_calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    env[0] = ft_asprintf("FTUNE_HOME=%s", c->home);
    size_t k = 1;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "FTUNE_HOME=", 11))
            env[k++] = environ[i];
    return env;
}

static void free_env(char **env) {
    if (env) {
        ft_free(env[0]);
        ft_free(env);
    }
}

static int spawn(const srv_ctx *c, char *const argv[], posix_spawn_file_actions_t *fa, pid_t *pid) {
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGCHLD);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    char **env = child_env(c);
    int rc = env ? posix_spawn(pid, c->exe, fa, &at, argv, env) : ENOMEM;
    free_env(env);
    posix_spawnattr_destroy(&at);
    return rc;
}

/* ---------------------------------------------------------------- the supervised worker */

static pid_t start_worker(const srv_ctx *c) {
    char *log = ft_path_join(c->home, "worker.log");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (log) {
        posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
    }
    char workers[16];
    snprintf(workers, sizeof workers, "%d", c->workers > 0 ? c->workers : 1);
    char *argv[] = {(char *)"ftune", (char *)"worker", (char *)"--poll", (char *)"0.5", (char *)"--workers", workers, NULL};
    pid_t pid = -1;
    if (spawn(c, argv, &fa, &pid) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    ft_free(log);
    return pid;
}

static void nap(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Keep one worker running while the server serves: restart it when it ends (a crash, or it found
 * another worker holding this home's lock: then that one serves the queue, and we look again in
 * a few seconds). On stop, SIGTERM: the worker's running run stops after a checkpoint (STOPPED,
 * resumable) and the worker exits; SIGKILL only after `stop_grace_s`. */
/* The parent of process `pid` (0 when unknown). */
static pid_t parent_of(int64_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    long long pp = 0;
    if (!rp || sscanf(rp + 1, " %*c %lld", &pp) != 1)
        return 0;
    return (pid_t)pp;
}

/* Names of this host's runs in `mask` statuses (NULL-terminated, caller frees each and the array),
 * only those whose details equal `details` when given, and only those whose process is a child of
 * `parent` when it is > 0. */
static char **runs_of_host(const srv_ctx *c, uint32_t mask, const char *details, pid_t parent) {
    ft_store *s;
    if (ft_store_open(c->db_path, &s, NULL) != FT_OK)
        return NULL;
    ft_run *runs;
    size_t n = 0;
    char **names = NULL;
    if (ft_store_run_list(s, mask, 0, &runs, &n, NULL) == FT_OK) {
        names = ft_calloc(n + 1, sizeof *names);
        size_t k = 0;
        for (size_t i = 0; names && i < n; i++) {
            const ft_run *r = &runs[i];
            if (r->host && strcmp(r->host, ft_runs_hostname()))
                continue;
            if (details && (!r->details || strcmp(r->details, details)))
                continue;
            if (parent > 0 && (r->pid <= 0 || parent_of(r->pid) != parent))
                continue;
            names[k++] = ft_strdup(r->name);
        }
        ft_run_list_free(runs, n);
    }
    ft_store_close(s);
    return names;
}

static void free_names(char **names) {
    for (size_t i = 0; names && names[i]; i++)
        ft_free(names[i]);
    ft_free(names);
}

/* At start: hand the runs the last shutdown stopped back to the worker. */
static void resume_after_shutdown(const srv_ctx *c) {
    char **names = runs_of_host(c, 1u << FT_RUN_STOPPED, SHUTDOWN_DETAILS, 0);
    ft_store *s;
    if (names && names[0] && ft_store_open(c->db_path, &s, NULL) == FT_OK) {
        for (size_t i = 0; names[i]; i++) {
            ft_err err;
            if (ft_runs_request_resume(s, names[i], &err) != FT_OK)
                FT_LOG_WARN("serve: cannot resume %s: %s", names[i], err.msg);
        }
        ft_store_close(s);
    }
    free_names(names);
}

/* At stop, after the worker has gone: the runs it was running when asked to stop (now STOPPED
 * by our SIGTERM, not cancelled by a user meanwhile) say why, which is what
 * resume_after_shutdown looks for. */
static void mark_shutdown_stops(const srv_ctx *c, char **was_running) {
    ft_store *s;
    if (!was_running || !was_running[0] || ft_store_open(c->db_path, &s, NULL) != FT_OK)
        return;
    for (size_t i = 0; was_running[i]; i++) {
        ft_run r;
        if (ft_store_run_get(s, was_running[i], &r, NULL) != FT_OK)
            continue;
        if (r.status == FT_RUN_STOPPED && !(r.details && !strcmp(r.details, "cancelled")))
            ft_store_run_set_status(s, was_running[i], FT_RUN_STOPPED, NULL, NULL, NULL, SHUTDOWN_DETAILS, NULL);
        ft_run_deinit(&r);
    }
    ft_store_close(s);
}

void *srv_supervise(void *arg) {
    srv_ctx *c = arg;
    pid_t pid = -1;
    double started = 0;
    resume_after_shutdown(c);
    while (!atomic_load(&c->stopping)) {
        if (pid <= 0) {
            pid = start_worker(c);
            started = ft_time_now();
            atomic_store(&c->worker_pid, (int64_t)pid);
            if (pid <= 0) {
                FT_LOG_WARN("serve: cannot start the worker (%s worker)", c->exe);
                nap(5);
                continue;
            }
        }
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            pid = -1;
            atomic_store(&c->worker_pid, 0);
            /* a worker that ends at once found another one serving this home: wait longer */
            double ran = ft_time_now() - started;
            for (double t = 0; t < (ran < 2 ? 5.0 : 1.0) && !atomic_load(&c->stopping); t += 0.1)
                nap(0.1);
            continue;
        }
        nap(0.1);
    }
    if (pid > 0) {
        char **was_running = runs_of_host(c, (1u << FT_RUN_STARTING) | (1u << FT_RUN_RUNNING), NULL, pid);
        kill(pid, SIGTERM);
        double t0 = ft_time_now();
        int status;
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (ft_time_now() - t0 > c->stop_grace_s) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                break;
            }
            nap(0.05);
        }
        atomic_store(&c->worker_pid, 0);
        mark_shutdown_stops(c, was_running);
        free_names(was_running);
    }
    return NULL;
}
