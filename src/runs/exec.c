/* runs/exec.c: executing a run with the SQLite store as the trainer's sink (SPEC §5): status
 * changes, events, metrics, checkpoints, progress, cancellation (`ftune cancel`, POST
 * /api/runs/{name}/cancel, or a stop signal the caller catches), the data a run read, and the
 * registration of the exported model at the end. The CLI's foreground runs and the worker's
 * children (worker.c) both execute runs here; what a caller shows goes through an observer.
 *
 * Cancellation: a cancel moves a run to TERMINATING in the store; the process running it polls
 * its status between steps (at most every half second) and stops at the next step boundary after
 * a checkpoint. A stop signal (the caller's handler sets *stop_signal) is polled the same way. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ftune/ckpt.h"
#include "ftune/data.h"
#include "ftune/json.h"
#include "ftune/runs.h"
#include "ftune/train.h"

/* What stopped a run, for its details and events. */
static const char *stop_signal_desc(int sig) {
    switch (sig) {
    case SIGINT: return "stopped by Ctrl-C (SIGINT)";
    case SIGHUP: return "stopped by SIGHUP (its terminal closed)";
    case SIGTERM: return "stopped by SIGTERM";
    default: return "stopped by a signal";
    }
}

/* ---------------------------------------------------------------- the sink */

/* ---- bookkeeping that outlives a locked or unavailable store
 * A run's events, metrics, progress and checkpoint rows are bookkeeping: the trainer's real work
 * is the model and its checkpoints on disk. So while training, a write that finds ftune.db locked
 * (another process in a long transaction), full or failing waits briefly (a short busy timeout),
 * then goes into an in-memory queue, and training goes on. The queue is written, in order, at the
 * next attempt that succeeds; attempts back off from 1 s to 30 s. Only when the store has been
 * unavailable for FTUNE_STORE_OUTAGE_S seconds (default 600) does the run stop, after a
 * checkpoint, with that reason; `ftune resume` continues it once the store is back. */

#define SINK_BUSY_MS 1000          /* the wait of one attempt while training */
#define STORE_DEFAULT_BUSY_MS 30000 /* ft_store_open's, restored for the end of the run */

typedef enum { OP_EVENT, OP_STARTED, OP_CHECKPOINT } op_kind;

typedef struct pending_op {
    op_kind kind;
    char type[32], level[8];
    char *message;          /* events */
    char *ck_name, *ck_path; /* checkpoints */
    int64_t step, epoch;
} pending_op;

typedef struct sink_ctx {
    ft_store *s;
    const char *name;
    const ft_runs_observer *obs;
    const volatile sig_atomic_t *stop_signal;
    double last_progress_write, last_stop_poll, last_flush;
    bool stop_requested;
    ft_metric *buf;
    size_t n, cap;
    bool has_eval;
    double eval_loss, eval_acc;
    int64_t steps, total_steps;
    double loss;
    int64_t kill_at_step; /* FTUNE_DEBUG_KILL_AT_STEP: SIGKILL this process after that step (tests) */
    ft_err store_err;     /* a store failure that ends the run (code FT_OK when none) */
    /* the queue of writes the store did not take yet */
    pending_op *ops;
    size_t n_ops, cap_ops;
    bool progress_dirty;
    double progress, eta_s;
    double outage_since;  /* > 0 while the store is unavailable: when the first write failed */
    double next_attempt;  /* no write before this time while unavailable */
    double backoff;       /* seconds until the next attempt, doubling to 30 */
    double outage_limit;  /* seconds of unavailability after which the run stops */
    size_t deferred;      /* writes that waited in the queue during the current outage */
    bool outage_fatal;    /* the limit was reached: stop after a checkpoint, then fail */
    ft_err outage_err;    /* the last failure of the current outage */
} sink_ctx;

static const char *level_str(ft_log_level l) {
    return l >= FT_LOG_ERROR ? "ERROR" : l == FT_LOG_WARN ? "WARN" : "INFO";
}

static void show_line(sink_ctx *c, const char *type, const char *level, const char *msg) {
    if (c->obs && c->obs->on_line)
        c->obs->on_line(c->obs->user, type, level, msg ? msg : "");
}

static int stop_signal_now(const sink_ctx *c) { return c->stop_signal ? (int)*c->stop_signal : 0; }

static void op_free(pending_op *op) {
    ft_free(op->message);
    ft_free(op->ck_name);
    ft_free(op->ck_path);
}

static ft_status push_op(sink_ctx *c, const pending_op *op) {
    if (c->n_ops == c->cap_ops) {
        size_t ncap = c->cap_ops ? c->cap_ops * 2 : 16;
        pending_op *no = ft_realloc(c->ops, ncap * sizeof *no);
        if (!no)
            return FT_ERR(&c->store_err, FT_ERR_NOMEM, "out of memory queueing a store write");
        c->ops = no;
        c->cap_ops = ncap;
    }
    c->ops[c->n_ops++] = *op;
    return FT_OK;
}

/* One queued write. */
static ft_status write_op(sink_ctx *c, const pending_op *op, ft_err *err) {
    switch (op->kind) {
    case OP_STARTED: {
        ft_status st = ft_store_run_set_status(c->s, c->name, FT_RUN_RUNNING, op->type, op->level, op->message, NULL,
                                               err);
        /* Cancelled while starting (TERMINATING): record the event; should_stop ends the run. */
        if (st == FT_ERR_INVALID) {
            ft_err_clear(err);
            st = ft_store_event_add(c->s, c->name, op->type, op->level, op->message, NULL, err);
        }
        return st;
    }
    case OP_EVENT: return ft_store_event_add(c->s, c->name, op->type, op->level, op->message, NULL, err);
    case OP_CHECKPOINT:
        return ft_store_checkpoint_add(c->s, c->name, op->ck_name, op->ck_path, op->step, op->epoch, err);
    }
    return FT_OK;
}

/* Write what is queued, in order: events and checkpoint rows, then the latest progress, then the
 * buffered metrics (when `metrics` or when the metrics are due). While the store is unavailable
 * this only tries when the back-off allows, unless `force`. A store that refuses for a reason
 * other than availability (the run was deleted, a bug) is an error for the run: store_err. */
static ft_status sink_flush(sink_ctx *c, bool force, bool metrics) {
    double now = ft_time_now();
    if (c->outage_since > 0 && !force && now < c->next_attempt)
        return FT_OK;
    ft_err e;
    ft_err_clear(&e);
    ft_status st = FT_OK;
    size_t done = 0;
    for (; done < c->n_ops && st == FT_OK; done++)
        if ((st = write_op(c, &c->ops[done], &e)) != FT_OK)
            break;
    for (size_t i = 0; i < done; i++)
        op_free(&c->ops[i]);
    memmove(c->ops, c->ops + done, (c->n_ops - done) * sizeof *c->ops);
    c->n_ops -= done;
    if (st == FT_OK && c->progress_dirty) {
        st = ft_store_run_set_progress(c->s, c->name, c->progress, c->eta_s, &e);
        if (st == FT_OK) {
            c->progress_dirty = false;
            c->last_progress_write = now;
        }
    }
    if (st == FT_OK && c->n > 0 && (metrics || c->outage_since > 0 || now - c->last_flush >= 2.0)) {
        st = ft_store_metrics_add_batch(c->s, c->name, c->buf, c->n, &e);
        if (st == FT_OK) {
            c->n = 0;
            c->last_flush = now;
        }
    }
    if (st == FT_OK) {
        if (c->outage_since > 0) {
            char msg[1400];
            snprintf(msg, sizeof msg,
                     "the run store was unavailable for %.0f s (%s); %zu writes waited in memory meanwhile and are "
                     "recorded now",
                     now - c->outage_since, c->outage_err.msg, c->deferred);
            c->outage_since = 0;
            c->deferred = 0;
            show_line(c, "TRAIN_UPDATED", "WARN", msg);
            ft_store_event_add(c->s, c->name, "TRAIN_UPDATED", "WARN", msg, NULL, NULL);
        }
        return FT_OK;
    }
    if (st != FT_ERR_IO) { /* not a question of availability */
        c->store_err = e;
        return st;
    }
    /* unavailable: keep everything and try again later */
    if (c->outage_since <= 0) {
        c->outage_since = now;
        c->backoff = 1.0;
        char msg[1400];
        snprintf(msg, sizeof msg, "the run store is unavailable (%s); training goes on, its records wait in memory",
                 e.msg);
        show_line(c, "TRAIN_UPDATED", "WARN", msg);
    } else {
        c->backoff = c->backoff * 2 > 30 ? 30 : c->backoff * 2;
    }
    c->outage_err = e;
    c->next_attempt = ft_time_now() + c->backoff;
    if (ft_time_now() - c->outage_since >= c->outage_limit)
        c->outage_fatal = true;
    return FT_OK;
}

/* Queue an event or checkpoint row and try to write the queue. */
static ft_status sink_queue(sink_ctx *c, const pending_op *op) {
    FT_TRY(push_op(c, op));
    if (c->outage_since > 0)
        c->deferred++;
    return sink_flush(c, false, false);
}

static ft_status sink_event(void *user, ft_train_event type, ft_log_level level, const char *message) {
    sink_ctx *c = user;
    const char *tname = ft_train_event_name(type);
    /* The final statuses are recorded once the trainer has returned, with its result. */
    if (type == FT_EVENT_STOPPED || type == FT_EVENT_FAILED)
        return FT_OK;
    pending_op op = {.kind = type == FT_EVENT_STARTED ? OP_STARTED : OP_EVENT, .message = ft_strdup(message)};
    snprintf(op.type, sizeof op.type, "%s", tname);
    snprintf(op.level, sizeof op.level, "%s", level_str(level));
    ft_status st = sink_queue(c, &op);
    /* TRAIN_UPDATED lines would drown the bar; the bar shows the same. */
    if (type != FT_EVENT_TRAIN_UPDATED || level >= FT_LOG_WARN)
        show_line(c, tname, level_str(level), message);
    return st;
}

/* The processes of a data-parallel run, recorded in its config for `ftune get` (ft_runs_world).
 * Bookkeeping: a store that refuses it is logged, not fatal. */
static ft_status sink_world(void *user, int64_t world_size, const char *const *hosts) {
    sink_ctx *c = user;
    ft_run r;
    ft_err e2;
    if (ft_store_run_get(c->s, c->name, &r, &e2) != FT_OK)
        return FT_OK;
    json_t *cfg = r.config_json ? json_loads(r.config_json, 0, NULL) : NULL;
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        cfg = json_object();
    }
    if (world_size == 1 && !json_object_get(cfg, "world_size")) { /* one process, as always: nothing to say */
        json_decref(cfg);
        ft_run_deinit(&r);
        return FT_OK;
    }
    json_t *hs = json_array();
    for (int64_t k = 0; k < world_size && hosts[k]; k++)
        json_array_append_new(hs, json_string(hosts[k]));
    json_object_set_new(cfg, "world_size", json_integer((json_int_t)world_size));
    json_object_set_new(cfg, "hosts", hs);
    char *text = json_dumps(cfg, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!text || ft_store_run_set_config(c->s, c->name, text, &e2) != FT_OK)
        FT_LOG_WARN("run %s: could not record its %lld processes in the store: %s", c->name, (long long)world_size,
                    text ? e2.msg : "out of memory");
    free(text);
    json_decref(cfg);
    ft_run_deinit(&r);
    return FT_OK;
}

static ft_status sink_metric(void *user, int64_t step, const char *name, double value) {
    sink_ctx *c = user;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        ft_metric *nb = ft_realloc(c->buf, ncap * sizeof *nb);
        if (!nb)
            return FT_ERR(NULL, FT_ERR_NOMEM, "out of memory");
        c->buf = nb;
        c->cap = ncap;
    }
    ft_metric *m = &c->buf[c->n++];
    memset(m, 0, sizeof *m);
    m->step = step;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->value = value;
    return FT_OK;
}

static ft_status sink_step(void *user, const ft_train_step_info *info) {
    sink_ctx *c = user;
    double now = ft_time_now();
    c->steps = info->step;
    c->total_steps = info->total_steps;
    c->loss = info->loss;
    if (c->obs && c->obs->on_step)
        c->obs->on_step(c->obs->user, info->step, info->total_steps, info->loss);
    c->progress = info->progress;
    c->eta_s = info->eta_s;
    c->progress_dirty = true;
    ft_status st = FT_OK;
    /* Progress and metrics are committed about once a second: each commit is an fsync, and a
     * crash loses nothing that a resume does not recompute. */
    if (now - c->last_progress_write >= 1.0 || info->step == info->total_steps || now - c->last_flush >= 2.0)
        st = sink_flush(c, false, false);
    if (c->kill_at_step > 0 && info->step == c->kill_at_step)
        raise(SIGKILL); /* a crash at a known point, for the resume tests */
    return st;
}

static ft_status sink_checkpoint(void *user, const char *path, int64_t epoch, int64_t batch) {
    sink_ctx *c = user;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    /* the metrics up to the checkpoint first: a resume from it keeps them */
    FT_TRY(sink_flush(c, false, true));
    pending_op op = {.kind = OP_CHECKPOINT, .ck_name = ft_strdup(base), .ck_path = ft_strdup(path),
                     .step = batch, .epoch = epoch};
    return sink_queue(c, &op);
}

/* A final status change, retried with back-off while the store is unavailable (each attempt
 * waits up to the 30 s busy timeout), for up to the outage limit. */
static ft_status set_status_retry(sink_ctx *c, ft_run_status to, const char *type, const char *level,
                                  const char *msg, const char *details, ft_err *err) {
    double t0 = ft_time_now(), wait = 1;
    for (;;) {
        ft_status st = ft_store_run_set_status(c->s, c->name, to, type, level, msg, details, err);
        if (st != FT_ERR_IO || ft_time_now() - t0 >= c->outage_limit)
            return st;
        struct timespec ts = {(time_t)wait, 0};
        nanosleep(&ts, NULL);
        wait = wait * 2 > 30 ? 30 : wait * 2;
    }
}

/* After training: everything queued must reach the store before the final status. Tries with
 * back-off until the outage limit; false (store_err set) when the store stayed unavailable. */
static bool sink_flush_final(sink_ctx *c) {
    for (;;) {
        if (sink_flush(c, true, true) != FT_OK)
            return false;
        if (c->outage_since <= 0)
            return true;
        if (ft_time_now() - c->outage_since >= c->outage_limit) {
            c->outage_fatal = true;
            return false;
        }
        struct timespec ts = {(time_t)c->backoff, (long)((c->backoff - (double)(time_t)c->backoff) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static ft_status sink_eval(void *user, const ft_eval_result *r) {
    sink_ctx *c = user;
    if (r->has_loss) {
        c->has_eval = true;
        c->eval_loss = r->loss;
        c->eval_acc = r->token_accuracy;
    }
    if (c->obs && c->obs->on_line)
        for (size_t i = 0; i < r->n_generations; i++) {
            char line[1024];
            snprintf(line, sizeof line, "%.200s -> %.600s", r->generations[i].prompt, r->generations[i].completion);
            show_line(c, "  eval prompt", "INFO", line);
        }
    return FT_OK;
}

static bool sink_should_stop(void *user) {
    sink_ctx *c = user;
    if (c->stop_requested || c->outage_fatal)
        return true;
    if (stop_signal_now(c)) {
        c->stop_requested = true;
        ft_store_run_set_status(c->s, c->name, FT_RUN_TERMINATING, NULL, NULL, NULL,
                                stop_signal_desc(stop_signal_now(c)), NULL);
        show_line(c, "TERMINATING", "INFO", "stopping after a checkpoint (Ctrl-C again to kill)");
        return true;
    }
    double now = ft_time_now();
    if (now - c->last_stop_poll < 0.5)
        return false;
    c->last_stop_poll = now;
    ft_run r;
    if (ft_store_run_get(c->s, c->name, &r, NULL) == FT_OK) {
        if (r.status == FT_RUN_TERMINATING) {
            c->stop_requested = true;
            show_line(c, "TERMINATING", "INFO", "cancelled: stopping after a checkpoint");
        }
        ft_run_deinit(&r);
    }
    return c->stop_requested;
}

/* ---------------------------------------------------------------- the data a run read (issue #9) */

/* {"train": fingerprint, "eval": fingerprint} of the run's data as it is now. */
static ft_status data_now(const ft_run *r, json_t **out, ft_err *err) {
    *out = NULL;
    ft_task_type task;
    FT_TRY(ft_task_type_parse(r->task_type ? r->task_type : "", &task, err));
    json_t *o = json_object(), *fp = NULL;
    ft_status s = ft_data_fingerprint(r->train_data_path ? r->train_data_path : "", task, &fp, err);
    if (s == FT_OK)
        json_object_set_new(o, "train", fp);
    if (s == FT_OK && r->eval_data_path && *r->eval_data_path) {
        s = ft_data_fingerprint(r->eval_data_path, task, &fp, err);
        if (s == FT_OK)
            json_object_set_new(o, "eval", fp);
    }
    if (s == FT_OK)
        *out = o;
    else
        json_decref(o);
    return s;
}

static void data_record(const ft_run *r, const json_t *fp) {
    char *p = r->run_dir ? ft_path_join(r->run_dir, FT_RUNS_DATA_FINGERPRINT) : NULL;
    char *text = p ? json_dumps(fp, JSON_INDENT(1) | JSON_REAL_PRECISION(17)) : NULL;
    if (text)
        ft_file_write_atomic(p, text, strlen(text), NULL);
    free(text);
    ft_free(p);
}

int ft_runs_data_check(const ft_run *r, ft_buf *changes, json_t **now_out) {
    if (now_out)
        *now_out = NULL;
    char *p = r->run_dir ? ft_path_join(r->run_dir, FT_RUNS_DATA_FINGERPRINT) : NULL;
    json_t *before = NULL;
    bool recorded = p && ft_path_exists(p) && ft_json_load_file(p, &before, NULL) == FT_OK;
    ft_free(p);
    json_t *now = NULL;
    ft_err err;
    int changed;
    if (data_now(r, &now, &err) != FT_OK) {
        char m[1200];
        ft_err_format(&err, m, sizeof m);
        ft_buf_appendf(changes, "the data cannot be read now: %s", m);
        changed = recorded ? 1 : -1;
    } else if (!recorded) {
        changed = -1;
    } else {
        static const char *const parts[] = {"train", "eval"};
        changed = 0;
        for (int i = 0; i < 2; i++) {
            json_t *a = json_object_get(before, parts[i]), *b = json_object_get(now, parts[i]);
            if (!a && !b)
                continue;
            json_t *empty = json_object();
            changed += ft_data_fingerprint_compare(a ? a : empty, b ? b : empty, changes);
            json_decref(empty);
        }
    }
    json_decref(before);
    if (now_out)
        *now_out = now;
    else
        json_decref(now);
    return changed;
}

/* ---------------------------------------------------------------- executing a run */


/* "c.s" -> "c.s.<run>", "c.s.n" -> itself (caller frees). */
static char *registry_name(const char *register_to, const char *run) {
    int dots = 0;
    for (const char *p = register_to; *p; p++)
        dots += *p == '.';
    return dots == 1 ? ft_asprintf("%s.%s", register_to, run) : ft_strdup(register_to);
}

static ft_status fail_run(ft_store *s, const char *name, const char *reason) {
    ft_err e2;
    ft_status st = ft_store_run_set_status(s, name, FT_RUN_FAILED, "FAILED", "ERROR", reason, reason, &e2);
    if (st != FT_OK) {
        char m[1200];
        ft_err_format(&e2, m, sizeof m);
        FT_LOG_WARN("cannot record the failure of %s: %s", name, m);
    }
    return st;
}

ft_status ft_runs_execute(ft_store *s, const char *name, const ft_runs_exec_params *o, ft_run_status *final,
                          ft_err *out_err) {
    ft_runs_exec_params defaults = {0};
    if (!o)
        o = &defaults;
    if (final)
        *final = FT_RUN_FAILED;
    ft_err err;
    ft_err_clear(&err);
    ft_run r;
    if (ft_store_run_get(s, name, &r, out_err) != FT_OK)
        return out_err ? out_err->code : FT_ERR_NOT_FOUND;
    ft_status own = ft_store_run_set_owner(s, name, getpid(), ft_runs_hostname(), out_err);
    if (own != FT_OK) {
        ft_run_deinit(&r);
        return own;
    }
    sink_ctx c = {.s = s, .name = name, .obs = o->observer, .stop_signal = o->stop_signal};

    /* A folder recorded relative (by an ftune before issue #9) names different files from every
     * working folder: refuse rather than train, checkpoint or register in the wrong place. */
    if (r.run_dir && r.run_dir[0] != '/') {
        char *reason = ft_asprintf("the run folder was recorded as the relative path \"%s\", which names a different "
                                   "folder from every working folder; create the run again",
                                   r.run_dir);
        fail_run(s, name, reason ? reason : "the run folder was recorded as a relative path");
        show_line(&c, "FAILED", "ERROR", reason ? reason : "the run folder was recorded as a relative path");
        ft_status st = FT_ERR(out_err, FT_ERR_INVALID, "%s", reason ? reason : "relative run folder");
        ft_free(reason);
        ft_run_deinit(&r);
        return st;
    }

    /* The data: recorded at the start, checked at a resume (a resumed run must train on what the
     * steps before it trained on). */
    char *cfg_path = r.run_dir ? ft_path_join(r.run_dir, "train_config.json") : NULL;
    bool have_folder = cfg_path && ft_path_exists(cfg_path);
    ft_free(cfg_path);
    if (!o->data_checked) {
        ft_buf changes = {0};
        json_t *now = NULL;
        int changed = have_folder ? ft_runs_data_check(&r, &changes, &now) : -1;
        if (!have_folder && data_now(&r, &now, NULL) != FT_OK)
            now = NULL; /* unreadable data: the trainer says why */
        if (changed > 0 && !o->allow_changed_data) {
            char *reason = ft_asprintf("the data changed since the run started: %s; restore it, or run "
                                       "`ftune resume %s --allow-changed-data` to continue on the data as it is now",
                                       ft_buf_cstr(&changes), name);
            fail_run(s, name, reason ? reason : "the data changed since the run started");
            show_line(&c, "FAILED", "ERROR", reason ? reason : "the data changed since the run started");
            ft_status st = FT_ERR(out_err, FT_ERR_INVALID, "%s", reason ? reason : "the data changed");
            ft_free(reason);
            ft_buf_free(&changes);
            json_decref(now);
            ft_run_deinit(&r);
            return st;
        }
        if (changed > 0 || (changed == 0 && changes.len)) {
            char *msg = ft_asprintf("%s: %s", changed > 0 ? "resuming on changed data (--allow-changed-data)"
                                                          : "data files touched, content unchanged",
                                    ft_buf_cstr(&changes));
            ft_store_event_add(s, name, "TRAIN_UPDATED", changed > 0 ? "WARN" : "INFO", msg ? msg : "data changed",
                               NULL, NULL);
            show_line(&c, "TRAIN_UPDATED", changed > 0 ? "WARN" : "INFO", msg ? msg : "data changed");
            ft_free(msg);
        }
        if (now && (changed != 0 || changes.len || !have_folder))
            data_record(&r, now); /* what this attempt reads */
        ft_buf_free(&changes);
        json_decref(now);
    }

    const char *kill_env = getenv("FTUNE_DEBUG_KILL_AT_STEP");
    c.kill_at_step = kill_env ? atoll(kill_env) : 0;
    const char *outage_env = getenv("FTUNE_STORE_OUTAGE_S");
    c.outage_limit = outage_env && atof(outage_env) > 0 ? atof(outage_env) : 600;
    ft_train_sink sink = {
        .user = &c,
        .on_event = sink_event,
        .on_metric = sink_metric,
        .on_step = sink_step,
        .on_checkpoint = sink_checkpoint,
        .on_eval = sink_eval,
        .on_world = sink_world,
        .should_stop = sink_should_stop,
    };
    ft_train_result res;
    memset(&res, 0, sizeof res);
    ft_status st = FT_OK;
    if (have_folder) {
        /* The run has been started before: continue from its latest checkpoint, and forget the
         * metrics of the steps after it, which the resumed run computes again. */
        char *ck = NULL;
        int64_t step = 0, ep = 0;
        ft_buf quiet = {0}; /* skipped checkpoints are reported once, by the resume below */
        ft_status fl = ft_ckpt_find_latest(r.run_dir, false, &ck, &quiet, NULL);
        ft_buf_free(&quiet);
        if (fl == FT_OK) {
            const char *b = strrchr(ck, '/');
            if (!ft_ckpt_parse_name(b ? b + 1 : ck, &ep, &step))
                step = 0;
        }
        ft_free(ck);
        st = ft_store_metrics_truncate(s, name, step, &err);
        ft_store_set_busy_timeout(s, SINK_BUSY_MS);
        if (st == FT_OK)
            st = ft_train_resume_on(r.run_dir, o->threads, o->comm, &sink, &res, &err);
    } else {
        json_t *j = json_loads(r.config_json ? r.config_json : "{}", 0, NULL);
        json_object_del(j, "world_size"); /* what a data-parallel start recorded: not configuration */
        json_object_del(j, "hosts");
        ft_train_config cfg = ft_train_default_config();
        st = j ? ft_train_config_from_json(j, &cfg, &err)
               : FT_ERR(&err, FT_ERR_PARSE, "run %s: its stored configuration is not JSON", name);
        json_decref(j);
        if (st == FT_OK && o->threads > 0)
            cfg.threads = o->threads;
        ft_store_set_busy_timeout(s, SINK_BUSY_MS);
        if (st == FT_OK)
            st = ft_train_run_on(&cfg, o->comm, &sink, &res, &err);
        ft_train_config_deinit(&cfg);
    }
    /* Everything the store did not take during training, before the final status. */
    ft_store_set_busy_timeout(s, STORE_DEFAULT_BUSY_MS);
    sink_flush_final(&c);
    ft_status rc = FT_OK;
    ft_run_status end = FT_RUN_FAILED;
    if (c.outage_fatal) {
        /* The store stayed unavailable: the checkpoints are on disk, the bookkeeping is not. */
        char reason[1800];
        snprintf(reason, sizeof reason,
                 "the run store has been unavailable for more than %.0f s (%s); training stopped after step %lld "
                 "of %lld%s%s; once ftune.db is writable again, `ftune resume %s` continues from there",
                 c.outage_limit, c.outage_err.msg, (long long)res.steps_done, (long long)res.total_steps,
                 res.last_checkpoint[0] ? ", its checkpoint is kept in " : "", res.last_checkpoint, name);
        ft_err_clear(&c.store_err);
        if (fail_run(s, name, reason) != FT_OK)
            FT_LOG_WARN("run %s stays recorded as running; `ftune resume %s` continues it", name, name);
        show_line(&c, "FAILED", "ERROR", reason);
        rc = FT_ERR(out_err, FT_ERR_IO, "%s", reason);
    } else if (st != FT_OK || res.outcome == FT_TRAIN_FAILED || c.store_err.code != FT_OK) {
        char reason[1400];
        if (c.store_err.code != FT_OK) /* the store refused a write: that is the real reason */
            ft_err_format(&c.store_err, reason, sizeof reason);
        else if (st != FT_OK)
            ft_err_format(&err, reason, sizeof reason);
        else
            snprintf(reason, sizeof reason, "%s", res.reason[0] ? res.reason : "the trainer failed");
        fail_run(s, name, reason);
        show_line(&c, "FAILED", "ERROR", reason);
        if (c.store_err.code != FT_OK)
            rc = c.store_err.code, out_err ? (void)(*out_err = c.store_err) : (void)0;
        else if (st != FT_OK)
            rc = st, out_err ? (void)(*out_err = err) : (void)0;
        else
            rc = FT_ERR(out_err, FT_ERR_INTERNAL, "%s", reason);
    } else if (res.outcome == FT_TRAIN_STOPPED) {
        char msg[1400];
        snprintf(msg, sizeof msg, "stopped after step %lld of %lld%s%s", (long long)res.steps_done,
                 (long long)res.total_steps, res.last_checkpoint[0] ? "; last checkpoint " : "",
                 res.last_checkpoint);
        set_status_retry(&c, FT_RUN_TERMINATING, NULL, NULL, NULL, NULL, NULL);
        ft_err serr;
        int sig = stop_signal_now(&c);
        if (set_status_retry(&c, FT_RUN_STOPPED, "STOPPED", "INFO", msg,
                             c.stop_requested && !sig ? "cancelled" : stop_signal_desc(sig), &serr) != FT_OK) {
            rc = serr.code;
            if (out_err)
                *out_err = serr;
        } else {
            end = FT_RUN_STOPPED;
            rc = FT_ERR(out_err, FT_ERR_CANCELLED, "%s", msg);
        }
        show_line(&c, "STOPPED", "INFO", msg);
    } else {
        /* COMPLETED: register the exported folder, then finish. */
        char *reg = r.register_to && *r.register_to ? registry_name(r.register_to, name) : NULL;
        json_t *m = json_object();
        json_object_set_new(m, "final_loss", json_real(res.final_loss));
        if (res.has_eval) {
            json_object_set_new(m, "eval_loss", json_real(res.eval_loss));
            json_object_set_new(m, "eval_token_accuracy", json_real(res.eval_token_accuracy));
        }
        json_object_set_new(m, "steps", json_integer(res.steps_done));
        char *mjs = ft_json_dumps(m, 0);
        json_decref(m);
        ft_status rst = FT_OK;
        if (reg) {
            ft_model_version v;
            rst = ft_registry_register(s, NULL, reg, res.export_dir, name,
                                       res.last_checkpoint[0] ? res.last_checkpoint : NULL, mjs, &v, &err);
            if (rst == FT_OK) {
                char vname[600], msg[1400];
                snprintf(vname, sizeof vname, "%s/%lld", reg, (long long)v.version);
                snprintf(msg, sizeof msg, "registered as %s version %lld (%s)", reg, (long long)v.version, v.path);
                ft_store_event_add(s, name, "REGISTERED", "INFO", msg, NULL, NULL);
                ft_store_run_set_registered(s, name, vname, NULL);
                show_line(&c, "REGISTERED", "INFO", msg);
                ft_model_version_deinit(&v);
            }
        }
        free(mjs);
        if (rst != FT_OK) {
            char reason[1400];
            ft_err_format(&err, reason, sizeof reason);
            char *full = ft_asprintf("registration failed: %s", reason);
            fail_run(s, name, full ? full : reason);
            show_line(&c, "FAILED", "ERROR", full ? full : reason);
            rc = FT_ERR(out_err, rst, "%s", full ? full : reason);
            ft_free(full);
        } else {
            char msg[256];
            snprintf(msg, sizeof msg, "%lld steps, final loss %.4f%s", (long long)res.steps_done, res.final_loss,
                     res.has_eval ? "" : "");
            if (res.has_eval)
                snprintf(msg + strlen(msg), sizeof msg - strlen(msg), ", eval loss %.4f, eval token accuracy %.1f%%",
                         res.eval_loss, 100.0 * res.eval_token_accuracy);
            if (set_status_retry(&c, FT_RUN_COMPLETED, "COMPLETED", "INFO", msg, NULL, &err) != FT_OK) {
                rc = err.code;
                if (out_err)
                    *out_err = err;
            } else {
                end = FT_RUN_COMPLETED;
            }
            show_line(&c, "COMPLETED", "INFO", msg);
        }
        ft_free(reg);
    }
    ft_free(c.buf);
    for (size_t i = 0; i < c.n_ops; i++)
        op_free(&c.ops[i]);
    ft_free(c.ops);
    ft_run_deinit(&r);
    if (final)
        *final = end;
    return rc;
}

