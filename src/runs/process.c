/* runs/process.c: which process runs a run and whether it is still there (a run whose process
 * died is resumed by the worker), and the actions on a run that need no training: cancel, and
 * handing a run back to the worker to resume. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ftune/runs.h"

const char *ft_runs_hostname(void) {
    static char host[256];
    if (!host[0] && gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "localhost");
    return host;
}

bool ft_runs_process_alive(const ft_run *r) {
    if (r->pid <= 0)
        return false;
    if (r->host && strcmp(r->host, ft_runs_hostname()) != 0)
        return true;
    if (kill((pid_t)r->pid, 0) != 0 && errno == ESRCH)
        return false;
    /* A zombie (exited, not yet reaped) is gone for our purposes. */
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)r->pid);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
            return false;
    }
    /* A recycled pid: the process there now is not an ftune. */
    snprintf(path, sizeof path, "/proc/%lld/cmdline", (long long)r->pid);
    f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0; /* argv[0] ends at the first NUL */
        const char *base = strrchr(buf, '/');
        if (n > 0 && !strstr(base ? base + 1 : buf, "ftune"))
            return false;
    }
    return true;
}

bool ft_runs_is_orphaned(const ft_run *r) {
    bool active = r->status == FT_RUN_STARTING || r->status == FT_RUN_RUNNING || r->status == FT_RUN_TERMINATING;
    return active && !ft_runs_process_alive(r);
}

ft_status ft_runs_cancel(ft_store *s, const char *name, const char **what, ft_err *err) {
    const char *dummy;
    if (!what)
        what = &dummy;
    ft_run r;
    FT_TRY(ft_store_run_get(s, name, &r, err));
    ft_status st = FT_OK;
    if (ft_run_status_is_final(r.status)) {
        *what = "already finished";
    } else if (r.status == FT_RUN_PENDING || r.status == FT_RUN_QUEUED || ft_runs_is_orphaned(&r)) {
        st = ft_store_run_set_status(s, name, FT_RUN_STOPPED, "STOPPED", "INFO",
                                     r.status == FT_RUN_PENDING || r.status == FT_RUN_QUEUED
                                         ? "cancelled before it started"
                                         : "cancelled (its process was gone)",
                                     "cancelled", err);
        *what = "stopped";
    } else {
        st = ft_store_run_set_status(s, name, FT_RUN_TERMINATING, NULL, NULL, NULL, "cancelled", err);
        *what = "stopping after its next checkpoint";
    }
    ft_run_deinit(&r);
    return st;
}

ft_status ft_runs_request_resume(ft_store *s, const char *name, ft_err *err) {
    ft_run r;
    FT_TRY(ft_store_run_get(s, name, &r, err));
    ft_status st = FT_OK;
    if (r.status == FT_RUN_COMPLETED) {
        st = FT_ERR(err, FT_ERR_INVALID, "%s has already completed", name);
    } else if (r.status == FT_RUN_PENDING || r.status == FT_RUN_QUEUED) {
        st = FT_ERR(err, FT_ERR_INVALID, "%s is %s: the worker starts it when its turn comes", name,
                    ft_run_status_str(r.status));
    } else if (!ft_run_status_is_final(r.status) && ft_runs_process_alive(&r)) {
        st = FT_ERR(err, FT_ERR_INVALID, "%s is %s in process %lld on %s", name, ft_run_status_str(r.status),
                    (long long)r.pid, r.host ? r.host : "?");
    } else {
        char msg[256];
        snprintf(msg, sizeof msg, "resume requested (%s): the worker continues it from its latest checkpoint",
                 ft_run_status_str(r.status));
        /* Owned by no live process of this host: the worker's search for runs whose process is
         * gone picks it up (and of two takers exactly one wins, ft_store_run_take_over). */
        st = ft_store_run_take_over(s, name, r.pid, 0, ft_runs_hostname(), err);
        if (st == FT_OK)
            st = ft_store_run_set_status(s, name, FT_RUN_STARTING, "TRAIN_UPDATED", "INFO", msg, NULL, err);
    }
    ft_run_deinit(&r);
    return st;
}
