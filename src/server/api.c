/* server/api.c: the router and the REST API of `ftune serve` (SPEC §6b, ftune/server.h): auth,
 * static files, and the routes over the run store, the registry, the catalogue and data
 * validation. Works on srv_request/srv_response only; server.c carries them over HTTP.
 *
 * Every handler opens its own store connection (one ft_store per thread, ftune/store.h): SQLite
 * in WAL mode lets the readers run beside a training run that writes. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/ftune.h"
#include "ftune/json.h"
#include "ftune/runs.h"
#include "ftune/store.h"
#include "server_internal.h"

/* ---------------------------------------------------------------- responses */

void srv_response_deinit(srv_response *rs) {
    if (rs->kind == SRV_RESP_STREAM && rs->stream_free && rs->stream_cls)
        rs->stream_free(rs->stream_cls); /* never sent */
    ft_buf_free(&rs->body);
    memset(rs, 0, sizeof *rs);
}

void srv_json(srv_response *rs, int status, json_t *j) {
    rs->kind = SRV_RESP_BODY;
    rs->status = status;
    rs->content_type = "application/json";
    rs->static_body = NULL;
    rs->body.len = 0;
    char *t = j ? ft_json_dumps(j, 0) : NULL;
    json_decref(j);
    if (!t || ft_buf_append(&rs->body, t, strlen(t)) != FT_OK || ft_buf_putc(&rs->body, '\n') != FT_OK) {
        rs->status = 500;
        rs->body.len = 0;
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
        rs->static_body = oom;
        rs->static_len = sizeof oom - 1;
    }
    free(t);
}

void srv_error(srv_response *rs, int status, const char *code, const char *field, const ft_err *loc,
               const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_object();
    json_object_set_new(e, "code", json_string(code));
    /* json_string refuses invalid UTF-8; a message quoting the request must still go out. */
    json_t *m = json_string(msg);
    json_object_set_new(e, "message", m ? m : json_string("(message is not valid UTF-8)"));
    if (field)
        json_object_set_new(e, "field", json_string(field));
    if (loc && (loc->file[0] || loc->line > 0)) {
        json_t *l = json_object();
        if (loc->file[0]) {
            json_t *f = json_string(loc->file);
            if (f)
                json_object_set_new(l, "file", f);
        }
        if (loc->line > 0)
            json_object_set_new(l, "line", json_integer(loc->line));
        if (loc->column > 0)
            json_object_set_new(l, "column", json_integer(loc->column));
        json_object_set_new(e, "location", l);
    }
    srv_json(rs, status, json_pack("{s:o}", "error", e));
}

/* An ft_err from the library as a response: its status picks the HTTP status. */
static void error_from(srv_response *rs, const ft_err *err, const char *field) {
    int status = 500;
    const char *code = "internal";
    switch (err->code) {
    case FT_ERR_NOT_FOUND: status = field ? 400 : 404; code = field ? "invalid_value" : "not_found"; break;
    case FT_ERR_PARSE:
    case FT_ERR_INVALID:
    case FT_ERR_RANGE:
    case FT_ERR_UNSUPPORTED: status = 400; code = "invalid_value"; break;
    case FT_ERR_LIMIT: status = 413; code = "too_large"; break;
    default: break;
    }
    srv_error(rs, status, code, field, err, "%s", err->msg);
}

static void set_static(srv_response *rs, const srv_asset *a) {
    rs->kind = SRV_RESP_BODY;
    rs->status = 200;
    rs->content_type = a->content_type;
    rs->static_body = a->data;
    rs->static_len = a->len;
    rs->cache_control = "no-cache";
}

/* ---------------------------------------------------------------- request helpers */

static const char *query(const srv_request *rq, const char *key) {
    for (size_t i = 0; i < rq->n_query; i++)
        if (!strcmp(rq->query[i].key, key))
            return rq->query[i].value ? rq->query[i].value : "";
    return NULL;
}

/* An integer query parameter in [lo, hi]; false (and rs set) when malformed. */
static bool query_int(const srv_request *rq, srv_response *rs, const char *key, int64_t lo, int64_t hi,
                      int64_t *out) {
    const char *v = query(rq, key);
    if (!v)
        return true;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        srv_error(rs, 400, "invalid_value", key, NULL, "query parameter %s=\"%.100s\": expected an integer in %lld..%lld",
                  key, v, (long long)lo, (long long)hi);
        return false;
    }
    *out = x;
    return true;
}

/* Run names as `ftune create --name` accepts them: letters, digits, '-', '_' and '.', not
 * starting with '.' or '-', at most 128; so never '/', "..", or anything a path could abuse. */
static bool run_name_ok(const char *n, size_t len) {
    if (len == 0 || len > 128 || n[0] == '.' || n[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return false;
    }
    return true;
}

static ft_status open_store(srv_ctx *c, ft_store **s, ft_err *err) { return ft_store_open(c->db_path, s, err); }

/* Open the store and fetch run `name`: false (and rs set: 404, 500) when that fails. */
static bool load_run(srv_ctx *c, srv_response *rs, const char *name, ft_store **s, ft_run *r) {
    ft_err err;
    if (open_store(c, s, &err) != FT_OK) {
        error_from(rs, &err, NULL);
        return false;
    }
    if (ft_store_run_get(*s, name, r, &err) != FT_OK) {
        if (err.code == FT_ERR_NOT_FOUND)
            srv_error(rs, 404, "not_found", NULL, NULL, "no run named \"%s\" (GET /api/runs lists them)", name);
        else
            error_from(rs, &err, NULL);
        ft_store_close(*s);
        *s = NULL;
        return false;
    }
    return true;
}

static json_t *data_list(json_t *arr) { return json_pack("{s:o}", "data", arr); }

/* ---------------------------------------------------------------- JSON bodies */

/* Parse the body as a JSON object; false (and rs set) when it is not one. */
static bool parse_body(const srv_request *rq, srv_response *rs, json_t **out) {
    *out = NULL;
    if (!rq->body_len) {
        srv_error(rs, 400, "invalid_json", NULL, NULL, "the request needs a JSON object body");
        return false;
    }
    json_error_t je;
    json_t *j = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        ft_err loc;
        ft_err_clear(&loc);
        snprintf(loc.file, sizeof loc.file, "request body");
        loc.line = je.line > 0 ? je.line : 1;
        loc.column = je.column > 0 ? je.column : 1;
        srv_error(rs, 400, "invalid_json", NULL, &loc, "the body is not valid JSON: %s", je.text);
        return false;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        srv_error(rs, 400, "invalid_json", NULL, NULL, "the body must be a JSON object");
        return false;
    }
    *out = j;
    return true;
}

typedef enum field_type { F_STR, F_INT, F_BOOL, F_NUM, F_STRLIST } field_type;
typedef struct body_field {
    const char *name;
    field_type type;
} body_field;

/* Every key of `j` is one of `fields`, with the right type; false (and rs set) otherwise. */
static bool check_fields(json_t *j, const body_field *fields, srv_response *rs) {
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        const body_field *f = fields;
        while (f->name && strcmp(f->name, key))
            f++;
        if (!f->name) {
            ft_buf known = {0};
            for (f = fields; f->name; f++)
                ft_buf_appendf(&known, "%s%s", known.len ? ", " : "", f->name);
            srv_error(rs, 400, "unknown_field", key, NULL, "unknown field \"%s\" (known: %s)", key,
                      ft_buf_cstr(&known));
            ft_buf_free(&known);
            return false;
        }
        if (json_is_null(v))
            continue;
        bool ok = false;
        switch (f->type) {
        case F_STR: ok = json_is_string(v); break;
        case F_INT: ok = json_is_integer(v); break;
        case F_BOOL: ok = json_is_boolean(v); break;
        case F_NUM: ok = json_is_number(v) || json_is_string(v); break;
        case F_STRLIST: {
            ok = json_is_array(v);
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) ok = ok && json_is_string(x);
            break;
        }
        }
        if (!ok) {
            static const char *const want[] = {"a string", "an integer", "true or false", "a number",
                                               "a list of strings"};
            srv_error(rs, 400, "invalid_type", key, NULL, "field \"%s\" must be %s", key, want[f->type]);
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- routes: runs */

static void runs_list(srv_ctx *c, const srv_request *rq, srv_response *rs) {
    uint32_t mask = 0;
    for (size_t i = 0; i < rq->n_query; i++) {
        if (strcmp(rq->query[i].key, "status"))
            continue;
        /* status=RUNNING,QUEUED and status=RUNNING&status=QUEUED both work */
        const char *p = rq->query[i].value ? rq->query[i].value : "";
        while (*p) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            char one[32];
            ft_run_status st;
            if (n >= sizeof one || (snprintf(one, sizeof one, "%.*s", (int)n, p), !ft_run_status_parse(one, &st))) {
                srv_error(rs, 400, "invalid_value", "status", NULL,
                          "\"%.*s\" is not a status (PENDING, QUEUED, STARTING, RUNNING, TERMINATING, COMPLETED, "
                          "FAILED, STOPPED)", (int)(n > 64 ? 64 : n), p);
                return;
            }
            mask |= 1u << st;
            p += n + (e ? 1 : 0);
        }
    }
    int64_t limit = 100;
    if (!query_int(rq, rs, "limit", 1, 1000, &limit))
        return;
    const char *before = query(rq, "before"), *after = query(rq, "after");
    if (before && after) {
        srv_error(rs, 400, "invalid_value", "after", NULL, "give either before or after, not both");
        return;
    }
    ft_store *s;
    ft_err err;
    if (open_store(c, &s, &err) != FT_OK) {
        error_from(rs, &err, NULL);
        return;
    }
    ft_run *runs;
    size_t n;
    if (ft_store_run_list(s, mask, 0, &runs, &n, &err) != FT_OK) {
        ft_store_close(s);
        error_from(rs, &err, NULL);
        return;
    }
    /* Newest first; `before`/`after` are run names (cursors): the page of runs created before
     * (older than) or after (newer than) that run. */
    size_t lo = 0, hi = n;
    const char *cursor = before ? before : after;
    if (cursor) {
        size_t k = 0;
        while (k < n && strcmp(runs[k].name, cursor))
            k++;
        if (k == n) {
            srv_error(rs, 400, "invalid_value", before ? "before" : "after", NULL,
                      "no run named \"%.200s\" among the listed runs", cursor);
            ft_run_list_free(runs, n);
            ft_store_close(s);
            return;
        }
        if (before)
            lo = k + 1;
        else
            hi = k;
    }
    /* `after` pages toward newer runs: the `limit` runs just above the cursor. */
    size_t from = lo, to = hi;
    if (to - from > (size_t)limit) {
        if (after)
            from = to - (size_t)limit;
        else
            to = from + (size_t)limit;
    }
    json_t *arr = json_array();
    for (size_t i = from; i < to; i++) {
        /* The list adds the run's last recorded training loss (the runs table shows it). */
        json_t *o = ft_run_to_json(&runs[i]);
        ft_metric *m;
        size_t nm;
        double last = NAN;
        if (ft_store_metrics_list(s, runs[i].name, "loss", &m, &nm, NULL) == FT_OK) {
            if (nm)
                last = m[nm - 1].value;
            ft_free(m);
        }
        json_object_set_new(o, "final_loss", isfinite(last) ? json_real(last) : json_null());
        json_array_append_new(arr, o);
    }
    bool more = after ? from > lo : to < hi;
    srv_json(rs, 200, json_pack("{s:o, s:b}", "data", arr, "has_more", more));
    ft_run_list_free(runs, n);
    ft_store_close(s);
}

static void run_get(srv_ctx *c, const char *name, srv_response *rs) {
    ft_store *s;
    ft_run r;
    if (!load_run(c, rs, name, &s, &r))
        return;
    srv_json(rs, 200, ft_runs_run_json_full(s, &r));
    ft_run_deinit(&r);
    ft_store_close(s);
}

static void run_events(srv_ctx *c, const char *name, const srv_request *rq, srv_response *rs) {
    int64_t after = 0;
    if (!query_int(rq, rs, "after", 0, INT64_MAX, &after))
        return;
    const char *follow = query(rq, "follow");
    bool fol = follow && (!strcmp(follow, "1") || !strcmp(follow, "true"));
    if (follow && !fol && strcmp(follow, "0") && strcmp(follow, "false")) {
        srv_error(rs, 400, "invalid_value", "follow", NULL, "follow must be 1 or 0");
        return;
    }
    if (fol && rq->last_event_id && *rq->last_event_id) {
        /* An EventSource reconnecting: continue after the last event it received. */
        char *end;
        errno = 0;
        long long x = strtoll(rq->last_event_id, &end, 10);
        if (*end || errno || x < 0) {
            srv_error(rs, 400, "invalid_value", "Last-Event-ID", NULL, "Last-Event-ID must be an event number");
            return;
        }
        after = x;
    }
    ft_store *s;
    ft_run r;
    if (!load_run(c, rs, name, &s, &r))
        return;
    ft_run_deinit(&r);
    if (fol) {
        ft_store_close(s);
        rs->kind = SRV_RESP_SSE;
        rs->status = 200;
        rs->content_type = "text/event-stream";
        snprintf(rs->sse_run, sizeof rs->sse_run, "%s", name);
        rs->sse_after = after;
        return;
    }
    ft_event *ev;
    size_t n;
    ft_err err;
    if (ft_store_event_list(s, name, after, &ev, &n, &err) != FT_OK) {
        error_from(rs, &err, NULL);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, ft_event_to_json(&ev[i]));
        ft_event_list_free(ev, n);
        srv_json(rs, 200, data_list(arr));
    }
    ft_store_close(s);
}

static void run_metrics(srv_ctx *c, const char *name, const srv_request *rq, srv_response *rs) {
    const char *mname = query(rq, "name");
    if (mname && (!*mname || strlen(mname) >= 48)) {
        srv_error(rs, 400, "invalid_value", "name", NULL, "name must be a metric name (loss, lr, eval_loss, ...)");
        return;
    }
    ft_store *s;
    ft_run r;
    if (!load_run(c, rs, name, &s, &r))
        return;
    ft_run_deinit(&r);
    ft_metric *m;
    size_t n;
    ft_err err;
    if (ft_store_metrics_list(s, name, mname, &m, &n, &err) != FT_OK) {
        error_from(rs, &err, NULL);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            char t[40];
            ft_store_format_time(m[i].time, t, sizeof t);
            json_array_append_new(arr, json_pack("{s:I, s:s, s:o, s:s}", "step", (json_int_t)m[i].step, "name",
                                                 m[i].name, "value",
                                                 isfinite(m[i].value) ? json_real(m[i].value) : json_null(), "time", t));
        }
        ft_free(m);
        srv_json(rs, 200, data_list(arr));
    }
    ft_store_close(s);
}

static void run_checkpoints(srv_ctx *c, const char *name, srv_response *rs, bool evaluations) {
    ft_store *s;
    ft_run r;
    if (!load_run(c, rs, name, &s, &r))
        return;
    srv_json(rs, 200, data_list(evaluations ? ft_runs_evaluations_json(r.run_dir) : ft_runs_checkpoints_json(s, name)));
    ft_run_deinit(&r);
    ft_store_close(s);
}

/* ---------------------------------------------------------------- routes: registry, models, validate */

static void registry_list(srv_ctx *c, srv_response *rs) {
    ft_store *s;
    ft_err err;
    if (open_store(c, &s, &err) != FT_OK) {
        error_from(rs, &err, NULL);
        return;
    }
    ft_model_version *v;
    size_t n;
    if (ft_registry_list(s, &v, &n, &err) != FT_OK) {
        error_from(rs, &err, NULL);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *o = ft_model_version_to_json(&v[i]);
            json_object_set_new(o, "latest_version", json_integer(v[i].version));
            json_array_append_new(arr, o);
        }
        ft_model_version_list_free(v, n);
        srv_json(rs, 200, data_list(arr));
    }
    ft_store_close(s);
}

static void registry_show(srv_ctx *c, const char *name, srv_response *rs) {
    /* c.s.n or c.s.n/V: the name is checked before it reaches the store. */
    char base[400];
    const char *slash = strchr(name, '/');
    size_t bl = slash ? (size_t)(slash - name) : strlen(name);
    ft_err err;
    bool ok = bl < sizeof base;
    if (ok) {
        memcpy(base, name, bl);
        base[bl] = 0;
        ok = ft_registry_check_name(base, &err) == FT_OK;
    }
    if (ok && slash) {
        const char *v = slash + 1;
        ok = *v && strlen(v) < 19 && v[0] != '0';
        for (const char *p = v; ok && *p; p++)
            ok = *p >= '0' && *p <= '9';
    }
    if (!ok) {
        srv_error(rs, 400, "invalid_name", "name", NULL,
                  "\"%.200s\": expected catalog.schema.model or catalog.schema.model/VERSION", name);
        return;
    }
    ft_store *s;
    if (open_store(c, &s, &err) != FT_OK) {
        error_from(rs, &err, NULL);
        return;
    }
    ft_model_version *v;
    size_t n;
    if (ft_registry_show(s, name, &v, &n, &err) != FT_OK) {
        if (err.code == FT_ERR_NOT_FOUND)
            srv_error(rs, 404, "not_found", NULL, NULL, "no registered model \"%s\" (GET /api/registry lists them)",
                      name);
        else
            error_from(rs, &err, NULL);
    } else {
        json_t *vs = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *o = ft_model_version_to_json(&v[i]);
            json_object_del(o, "name");
            json_array_append_new(vs, o);
        }
        srv_json(rs, 200, json_pack("{s:s, s:o}", "name", n ? v[0].name : base, "versions", vs));
        ft_model_version_list_free(v, n);
    }
    ft_store_close(s);
}

/* The memory settings of a body (POST /api/validate, POST /api/runs) into a run configuration:
 * those the body gives, the defaults otherwise. False (rs set to the 400 naming the field) on a
 * bad value. */
static bool body_memory_config(const json_t *j, ft_train_config *c, srv_response *rs) {
    static const char *const keys[] = {"model", "context_length", "global_batch_size", "micro_batch_size", "optimizer",
                                       "dtype", "memory_limit", "activation_checkpointing", "threads"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        json_t *v = json_object_get(j, keys[i]);
        if (!v || json_is_null(v))
            continue;
        char num[32];
        const char *text = json_string_value(v);
        if (json_is_integer(v)) {
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
            text = num;
        }
        ft_err err;
        if (text && ft_train_config_set(c, keys[i], text, &err) != FT_OK) {
            srv_error(rs, 400, "invalid_value", keys[i], NULL, "%s", err.msg);
            return false;
        }
    }
    return true;
}

static void validate(const srv_request *rq, srv_response *rs) {
    static const body_field fields[] = {
        {"model", F_STR},           {"task_type", F_STR},       {"path", F_STR},  {"train_data_path", F_STR},
        {"context_length", F_INT},  {"training_duration", F_STR}, {"global_batch_size", F_INT},
        {"seed", F_INT},            {"max_errors", F_INT},      {"estimate", F_BOOL},
        {"micro_batch_size", F_INT}, {"optimizer", F_STR},      {"dtype", F_STR},  {"memory_limit", F_STR},
        {"activation_checkpointing", F_STR}, {NULL, 0},
    };
    json_t *j;
    if (!parse_body(rq, rs, &j))
        return;
    if (!check_fields(j, fields, rs)) {
        json_decref(j);
        return;
    }
    ft_runs_validate_params p;
    ft_runs_validate_default_params(&p);
    ft_train_config run_cfg = ft_train_default_config();
    ft_err err;
    const char *path = json_string_value(json_object_get(j, "path"));
    const char *tdp = json_string_value(json_object_get(j, "train_data_path"));
    const char *path_field = tdp ? "train_data_path" : "path";
    p.path = tdp ? tdp : path;
    p.model = json_string_value(json_object_get(j, "model"));
    const char *task = json_string_value(json_object_get(j, "task_type"));
    const char *dur = json_string_value(json_object_get(j, "training_duration"));
    json_t *cl = json_object_get(j, "context_length"), *gb = json_object_get(j, "global_batch_size"),
           *seed = json_object_get(j, "seed"), *me = json_object_get(j, "max_errors");
    if (path && tdp) {
        srv_error(rs, 400, "invalid_value", "path", NULL, "give path or train_data_path, not both");
        goto out;
    }
    if (!p.path || !*p.path) {
        srv_error(rs, 400, "missing_field", "train_data_path", NULL, "train_data_path (the data to check) is required");
        goto out;
    }
    if (task && ft_task_type_parse(task, &p.task, &err) != FT_OK) {
        srv_error(rs, 400, "invalid_value", "task_type", NULL, "%s", err.msg);
        goto out;
    }
    if (dur && ft_duration_parse(dur, "training_duration", &p.duration, &err) != FT_OK) {
        srv_error(rs, 400, "invalid_value", "training_duration", NULL, "%s", err.msg);
        goto out;
    }
    if (json_is_integer(cl)) {
        p.context_length = json_integer_value(cl);
        if (p.context_length < 2) {
            srv_error(rs, 400, "invalid_value", "context_length", NULL, "context_length must be at least 2");
            goto out;
        }
    }
    if (json_is_integer(gb)) {
        p.global_batch_size = json_integer_value(gb);
        if (p.global_batch_size < 1 || p.global_batch_size > 1 << 20) {
            srv_error(rs, 400, "invalid_value", "global_batch_size", NULL, "global_batch_size must be 1..1048576");
            goto out;
        }
    }
    if (json_is_integer(seed)) {
        if (json_integer_value(seed) < 0) {
            srv_error(rs, 400, "invalid_value", "seed", NULL, "seed must be >= 0");
            goto out;
        }
        p.seed = (uint64_t)json_integer_value(seed);
    }
    if (json_is_integer(me)) {
        if (json_integer_value(me) < 1 || json_integer_value(me) > 100000) {
            srv_error(rs, 400, "invalid_value", "max_errors", NULL, "max_errors must be 1..100000");
            goto out;
        }
        p.max_errors = (size_t)json_integer_value(me);
    }
    p.estimate = json_is_true(json_object_get(j, "estimate"));
    if (!body_memory_config(j, &run_cfg, rs))
        goto out;
    p.run = &run_cfg;
    ft_data_report *rep = NULL;
    json_t *memory = NULL;
    const char *field = NULL;
    if (ft_runs_validate(&p, &rep, &memory, &field, &err) != FT_OK) {
        error_from(rs, &err, field && !strcmp(field, "path") ? path_field : field);
        goto out;
    }
    /* "memory": the plan against what this machine has (with a model and valid data); a run that
     * cannot fit says so there ("fits": false, "message"), as `ftune validate` does. */
    json_t *report = ft_data_report_to_json(rep, p.max_errors);
    if (memory)
        json_object_set_new(report, "memory", memory);
    srv_json(rs, 200, report);
    ft_data_report_free(rep);
out:
    ft_train_config_deinit(&run_cfg);
    json_decref(j);
}


/* ---------------------------------------------------------------- routes: actions on runs */

/* The run as GET /api/runs/{name} answers it, with `status` as the HTTP status. */
static void run_reply(srv_ctx *c, const char *name, int status, srv_response *rs) {
    ft_store *s;
    ft_run r;
    if (!load_run(c, rs, name, &s, &r))
        return;
    srv_json(rs, status, ft_runs_run_json_full(s, &r));
    ft_run_deinit(&r);
    ft_store_close(s);
}

static void run_cancel(srv_ctx *c, const char *name, srv_response *rs) {
    ft_store *s;
    ft_run r;
    if (!load_run(c, rs, name, &s, &r))
        return;
    ft_run_deinit(&r);
    const char *what = NULL;
    ft_err err;
    ft_status st = ft_runs_cancel(s, name, &what, &err);
    ft_store_close(s);
    if (st != FT_OK)
        return error_from(rs, &err, NULL);
    if (!strcmp(what, "already finished"))
        return srv_error(rs, 409, "conflict", NULL, NULL, "%s has already finished", name);
    run_reply(c, name, 200, rs);
}

static void run_resume(srv_ctx *c, const char *name, srv_response *rs) {
    if (!c->exe)
        return srv_error(rs, 501, "not_implemented", NULL, NULL, "this server executes no runs (started without the "
                                                                  "ftune binary): use `ftune resume %s`", name);
    ft_store *s;
    ft_run r;
    if (!load_run(c, rs, name, &s, &r))
        return;
    ft_run_deinit(&r);
    ft_err err;
    ft_status st = ft_runs_request_resume(s, name, &err);
    ft_store_close(s);
    if (st == FT_ERR_INVALID)
        return srv_error(rs, 409, "conflict", NULL, NULL, "%s", err.msg);
    if (st != FT_OK)
        return error_from(rs, &err, NULL);
    run_reply(c, name, 200, rs);
}

/* The data's problems as ft_runs_create finds them, for the error's "errors" (at most 1000). */
typedef struct create_issues {
    json_t *list;
    const char *field; /* the data they are about */
} create_issues;

static void collect_issue(void *user, const char *field, const ft_data_issue *is) {
    create_issues *ci = user;
    ci->field = field;
    if (json_array_size(ci->list) >= 1000)
        return;
    json_t *e = json_pack("{s:s, s:I, s:I, s:s, s:s}", "file", is->file ? is->file : "?", "line", (json_int_t)is->line,
                          "column", (json_int_t)is->column, "level", is->level == FT_ISSUE_ERROR ? "error" : "warning",
                          "message", is->message ? is->message : "");
    if (e && is->row >= 0) /* a table row (0-based in its file): the message names it */
        json_object_set_new(e, "row", json_integer(is->row));
    json_array_append_new(ci->list, e);
}

/* The body as a run configuration: every key through ft_train_config_set (which checks the
 * value and names the parameter), lists one element at a time. False with rs set on a bad value. */
static bool body_config(const json_t *j, ft_train_config *cfg, srv_response *rs) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        if (json_is_null(v))
            continue;
        if (!strcmp(key, "validate_inputs")) {
            cfg->validate_inputs = json_is_true(v);
            continue;
        }
        ft_err err;
        ft_status st = FT_OK;
        if (json_is_array(v)) {
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) {
                if ((st = ft_train_config_set(cfg, key, json_string_value(x), &err)) != FT_OK)
                    break;
            }
        } else {
            char num[64];
            const char *text = json_string_value(v);
            if (json_is_integer(v))
                snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
            else if (json_is_real(v))
                snprintf(num, sizeof num, "%.17g", json_real_value(v));
            st = ft_train_config_set(cfg, key, text ? text : num, &err);
        }
        if (st != FT_OK) {
            srv_error(rs, 400, "invalid_value", key, NULL, "%s", err.msg);
            return false;
        }
    }
    return true;
}

static void runs_create(srv_ctx *c, const srv_request *rq, srv_response *rs) {
    static const body_field fields[] = {
        {"model", F_STR},           {"train_data_path", F_STR},   {"register_to", F_STR},
        {"task_type", F_STR},       {"eval_data_path", F_STR},    {"eval_prompts", F_STRLIST},
        {"custom_weights_path", F_STR}, {"training_duration", F_STR}, {"learning_rate", F_NUM},
        {"context_length", F_INT},  {"validate_inputs", F_BOOL},  {"experiment_path", F_STR},
        {"data_prep_cluster_id", F_STR}, {"name", F_STR},         {"seed", F_INT},
        {"global_batch_size", F_INT}, {"micro_batch_size", F_INT}, {"optimizer", F_STR},
        {"weight_decay", F_NUM},    {"warmup", F_STR},            {"grad_clip", F_NUM},
        {"loss_on", F_STR},         {"save_interval", F_STR},     {"keep_checkpoints", F_INT},
        {"dtype", F_STR},           {"device", F_STR},            {"threads", F_INT},
        {"eval_max_new_tokens", F_INT}, {"memory_limit", F_STR}, {"activation_checkpointing", F_STR},
        {"prompt_column", F_STR},   {"response_column", F_STR},   {"messages_column", F_STR},
        {"text_column", F_STR},     {"export_dtype", F_STR},      {NULL, 0},
    };
    if (!c->exe)
        return srv_error(rs, 501, "not_implemented", NULL, NULL,
                         "this server creates no runs (started without the ftune binary): use `ftune create`");
    json_t *j;
    if (!parse_body(rq, rs, &j))
        return;
    if (!check_fields(j, fields, rs)) {
        json_decref(j);
        return;
    }
    static const char *const required[] = {"model", "train_data_path", "register_to"};
    for (size_t i = 0; i < 3; i++) {
        const char *v = json_string_value(json_object_get(j, required[i]));
        if (!v || !*v) {
            srv_error(rs, 400, "missing_field", required[i], NULL, "%s is required", required[i]);
            json_decref(j);
            return;
        }
    }
    const char *nm = json_string_value(json_object_get(j, "name"));
    if (nm && !run_name_ok(nm, strlen(nm))) {
        srv_error(rs, 400, "invalid_name", "name", NULL,
                  "\"%.200s\": use letters, digits, '-', '_' and '.' (at most 128, not starting with '.' or '-')", nm);
        json_decref(j);
        return;
    }
    /* Created by the run service, as `ftune create --detach` does; the server's worker runs it. */
    ft_train_config cfg = ft_train_default_config();
    create_issues ci = {json_array(), NULL};
    json_t *memory = NULL;
    ft_store *s = NULL;
    char *name = NULL;
    ft_err err;
    if (!body_config(j, &cfg, rs))
        goto out;
    if (ft_store_open(c->db_path, &s, &err) != FT_OK) {
        error_from(rs, &err, NULL);
        goto out;
    }
    ft_runs_create_params cp = {.config = &cfg, .detach = true, .user = &ci, .on_issue = collect_issue};
    const char *field = NULL;
    ft_status st = ft_runs_create(s, &cp, &name, &memory, &field, &err);
    if (st == FT_OK) {
        ft_run r;
        if (ft_store_run_get(s, name, &r, &err) != FT_OK) {
            error_from(rs, &err, NULL);
            goto out;
        }
        json_t *run = ft_runs_run_json_full(s, &r);
        ft_run_deinit(&r);
        if (memory)
            json_object_set(run, "memory", memory);
        srv_json(rs, 201, run);
    } else if (memory && json_is_false(json_object_get(memory, "fits"))) {
        /* refused for memory: the numbers go with the error */
        srv_error(rs, 400, "insufficient_memory", "memory_limit", NULL, "%s", err.msg);
        json_t *ej = json_loadb(rs->body.data, rs->body.len, 0, NULL);
        json_object_set(json_object_get(ej, "error"), "memory", memory);
        srv_json(rs, 400, ej);
    } else if (field && ci.field && !strcmp(field, ci.field) && json_array_size(ci.list)) {
        /* invalid data: every problem in "errors", the first as the location */
        json_t *first = json_array_get(ci.list, 0);
        ft_err loc;
        ft_err_clear(&loc);
        snprintf(loc.file, sizeof loc.file, "%s", json_string_value(json_object_get(first, "file")));
        loc.line = json_integer_value(json_object_get(first, "line"));
        loc.column = json_integer_value(json_object_get(first, "column"));
        srv_error(rs, 400, "invalid_data", field, &loc,
                  "%s (listed in \"errors\"; \"validate_inputs\": false skips this check)", err.msg);
        json_t *ej = json_loadb(rs->body.data, rs->body.len, 0, NULL);
        json_object_set(json_object_get(ej, "error"), "errors", ci.list);
        srv_json(rs, 400, ej);
    } else if (field) {
        srv_error(rs, 400, "invalid_value", field, NULL, "%s", err.msg);
    } else {
        error_from(rs, &err, NULL);
    }
out:
    ft_store_close(s);
    ft_free(name);
    json_decref(memory);
    json_decref(ci.list);
    ft_train_config_deinit(&cfg);
    json_decref(j);
}

static void run_delete(srv_ctx *c, const char *name, srv_response *rs) {
    ft_store *s;
    ft_run r;
    if (!load_run(c, rs, name, &s, &r))
        return;
    bool active = !ft_run_status_is_final(r.status) && r.status != FT_RUN_PENDING && r.status != FT_RUN_QUEUED &&
                  ft_runs_process_alive(&r);
    ft_run_deinit(&r);
    if (active) {
        ft_store_close(s);
        return srv_error(rs, 409, "conflict", NULL, NULL, "%s is running: cancel it first", name);
    }
    ft_buf note = {0};
    ft_err err;
    ft_status st = ft_runs_delete(s, name, false, &note, &err);
    ft_store_close(s);
    if (st == FT_OK || st == FT_ERR_IO) { /* FT_ERR_IO: the record went, a file ftune made stayed */
        json_t *o = json_pack("{s:s}", "deleted", name);
        if (note.len)
            json_object_set_new(o, "note", json_string(ft_buf_cstr(&note)));
        srv_json(rs, 200, o);
    } else if (st == FT_ERR_INVALID) {
        srv_error(rs, 409, "conflict", NULL, NULL, "%s", err.msg);
    } else {
        error_from(rs, &err, NULL);
    }
    ft_buf_free(&note);
}

/* ---------------------------------------------------------------- auth */

bool srv_token_equal(const char *given, const char *expected) {
    /* Runs over every byte of `given` whatever matches, so the time says nothing about where a
     * guess first differs (only its own length, which the client knows). */
    size_t gl = strlen(given), el = strlen(expected);
    unsigned char diff = (unsigned char)(gl != el);
    for (size_t i = 0; i < gl; i++)
        diff |= (unsigned char)given[i] ^ (unsigned char)(el ? expected[i % el] : 0);
    return diff == 0 && el > 0;
}

/* Host header names a loopback address ("localhost:8080", "127.0.0.1", "[::1]:80"). */
static bool host_header_loopback(const char *h) {
    if (!h)
        return true; /* HTTP/1.0 clients send none */
    char host[256];
    size_t n = strlen(h);
    if (n >= sizeof host)
        return false;
    memcpy(host, h, n + 1);
    if (host[0] == '[') {
        char *e = strchr(host, ']');
        if (!e)
            return false;
        *e = 0;
        return ft_server_host_is_loopback(host + 1);
    }
    char *colon = strchr(host, ':');
    if (colon)
        *colon = 0;
    return ft_server_host_is_loopback(host);
}

/* ---------------------------------------------------------------- the router */

static bool is(const srv_request *rq, const char *m) { return !strcmp(rq->method, m); }

static void method_not_allowed(srv_response *rs, const char *allowed) {
    srv_error(rs, 405, "method_not_allowed", NULL, NULL, "use %s on this path", allowed);
}

/* Mutating requests need a JSON content type: a cross-site HTML form can send only
 * form/text types without a CORS preflight, which this server never grants. */
static bool json_content_type(const srv_request *rq, srv_response *rs) {
    const char *ct = rq->content_type;
    if (ct && !strncasecmp(ct, "application/json", 16) && (ct[16] == 0 || ct[16] == ';' || ct[16] == ' '))
        return true;
    srv_error(rs, 415, "unsupported_media_type", NULL, NULL, "send the request with Content-Type: application/json");
    return false;
}

static void not_yet(srv_response *rs, const char *what) {
    srv_error(rs, 501, "not_implemented", NULL, NULL, "%s is not available in this version of ftune serve", what);
}

static void route_run(srv_ctx *c, const srv_request *rq, srv_response *rs, const char *rest) {
    /* rest: "NAME" or "NAME/sub" */
    const char *slash = strchr(rest, '/');
    size_t nl = slash ? (size_t)(slash - rest) : strlen(rest);
    if (!run_name_ok(rest, nl)) {
        srv_error(rs, 400, "invalid_name", "name", NULL,
                  "\"%.*s\" is not a run name (letters, digits, '-', '_' and '.', at most 128, not starting with "
                  "'.' or '-')", (int)(nl > 200 ? 200 : nl), rest);
        return;
    }
    char name[160];
    snprintf(name, sizeof name, "%.*s", (int)nl, rest);
    const char *sub = slash ? slash + 1 : NULL;
    if (!sub) {
        if (is(rq, "GET"))
            run_get(c, name, rs);
        else if (is(rq, "DELETE"))
            run_delete(c, name, rs);
        else
            method_not_allowed(rs, "GET or DELETE");
        return;
    }
    static const char *const gets[] = {"events", "metrics", "checkpoints", "evaluations"};
    for (size_t i = 0; i < 4; i++)
        if (!strcmp(sub, gets[i])) {
            if (!is(rq, "GET"))
                method_not_allowed(rs, "GET");
            else if (i == 0)
                run_events(c, name, rq, rs);
            else if (i == 1)
                run_metrics(c, name, rq, rs);
            else
                run_checkpoints(c, name, rs, i == 3);
            return;
        }
    if (!strcmp(sub, "cancel") || !strcmp(sub, "resume")) {
        if (!is(rq, "POST"))
            method_not_allowed(rs, "POST");
        else if (json_content_type(rq, rs)) {
            if (!strcmp(sub, "cancel"))
                run_cancel(c, name, rs);
            else
                run_resume(c, name, rs);
        }
        return;
    }
    srv_error(rs, 404, "not_found", NULL, NULL, "no route /api/runs/%s/%.100s", name, sub);
}

void srv_handle(srv_ctx *c, const srv_request *rq, srv_response *rs) {
    memset(rs, 0, sizeof *rs);
    const char *path = rq->path ? rq->path : "/";
    bool head = is(rq, "HEAD");

    if (!strcmp(path, "/health")) {
        if (!is(rq, "GET") && !head)
            return method_not_allowed(rs, "GET");
        srv_json(rs, 200, json_pack("{s:s, s:s}", "status", "ok", "version", FTUNE_VERSION));
        return;
    }
    /* Without a token only loopback is served; a page on another site that resolves its own
     * name to 127.0.0.1 (DNS rebinding) still sends its own name as Host. */
    if (!c->token && !host_header_loopback(rq->host_header)) {
        srv_error(rs, 403, "forbidden", NULL, NULL, "this server answers only to localhost names (Host: %.100s)",
                  rq->host_header);
        return;
    }
    bool v1 = !strncmp(path, "/v1/", 4) || !strcmp(path, "/v1") || !strcmp(path, "/metrics");
    bool api = !strncmp(path, "/api/", 5) || !strcmp(path, "/api") || v1;
    if (!api) {
        const srv_asset *a = srv_asset_find(path);
        if (!a) {
            srv_error(rs, 404, "not_found", NULL, NULL, "no page at %.200s (the UI is at /)", path);
            return;
        }
        if (!is(rq, "GET") && !head)
            return method_not_allowed(rs, "GET");
        set_static(rs, a);
        return;
    }
    if (c->token) {
        const char *h = rq->authorization;
        bool ok = h && !strncasecmp(h, "Bearer ", 7) && srv_token_equal(h + 7, c->token);
        if (!ok && v1) {
            srv_v1_auth_error(rs, h != NULL);
            return;
        }
        if (!ok) {
            srv_error(rs, 401, "unauthorized", NULL, NULL,
                      h ? "the bearer token is not the server's" : "this server needs Authorization: Bearer <token>");
            rs->www_authenticate = true;
            return;
        }
    }
    if (rq->body_too_large) {
        srv_error(rs, 413, "too_large", NULL, NULL, "the request body is larger than %zu bytes", c->max_body);
        return;
    }
    if (rq->query_overflow) {
        srv_error(rs, 400, "invalid_value", NULL, NULL, "too many query parameters (at most %d)", SRV_MAX_QUERY);
        return;
    }
    if (v1) {
        if (c->v1)
            srv_v1_handle(c, rq, rs);
        else
            not_yet(rs, "OpenAI-compatible inference (/v1)");
        return;
    }
    if (!strcmp(path, "/api/openapi.json")) {
        if (!is(rq, "GET"))
            return method_not_allowed(rs, "GET");
        const srv_asset *a = srv_asset_find("/api/openapi.json");
        if (a)
            set_static(rs, a);
        else
            srv_error(rs, 500, "internal", NULL, NULL, "the OpenAPI document is missing from this build");
        return;
    }
    if (!strcmp(path, "/api/runs") || !strcmp(path, "/api/runs/")) {
        if (is(rq, "GET"))
            runs_list(c, rq, rs);
        else if (is(rq, "POST")) {
            if (json_content_type(rq, rs))
                runs_create(c, rq, rs);
        } else
            method_not_allowed(rs, "GET or POST");
        return;
    }
    if (!strncmp(path, "/api/runs/", 10))
        return route_run(c, rq, rs, path + 10);
    if (!strcmp(path, "/api/validate")) {
        if (!is(rq, "POST"))
            return method_not_allowed(rs, "POST");
        if (json_content_type(rq, rs))
            validate(rq, rs);
        return;
    }
    if (!strcmp(path, "/api/models")) {
        if (!is(rq, "GET"))
            return method_not_allowed(rs, "GET");
        srv_json(rs, 200, data_list(ft_runs_models_json()));
        return;
    }
    if (!strcmp(path, "/api/registry") || !strcmp(path, "/api/registry/")) {
        if (!is(rq, "GET"))
            return method_not_allowed(rs, "GET");
        registry_list(c, rs);
        return;
    }
    if (!strncmp(path, "/api/registry/", 14)) {
        if (!is(rq, "GET"))
            return method_not_allowed(rs, "GET");
        registry_show(c, path + 14, rs);
        return;
    }
    srv_error(rs, 404, "not_found", NULL, NULL, "no API route %.200s (GET /api/openapi.json lists them)", path);
}

/* ---------------------------------------------------------------- event streams */

ft_status srv_sse_poll(ft_store *s, const char *name, int64_t *after, ft_buf *out, bool *done, ft_err *err) {
    *done = false;
    ft_run r;
    FT_TRY(ft_store_run_get(s, name, &r, err));
    /* The status is read before the events: a run seen final has written its last event. */
    ft_run_status status = r.status;
    bool final = ft_run_status_is_final(status);
    ft_run_deinit(&r);
    ft_event *ev;
    size_t n;
    FT_TRY(ft_store_event_list(s, name, *after, &ev, &n, err));
    ft_status st = FT_OK;
    for (size_t i = 0; i < n && st == FT_OK; i++) {
        json_t *j = ft_event_to_json(&ev[i]);
        char *t = ft_json_dumps(j, 0);
        json_decref(j);
        st = t ? ft_buf_appendf(out, "id: %lld\ndata: %s\n\n", (long long)ev[i].seq, t)
               : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        free(t);
        if (st == FT_OK)
            *after = ev[i].seq;
    }
    ft_event_list_free(ev, n);
    if (st == FT_OK && final) {
        *done = true;
        st = ft_buf_appendf(out, "event: end\ndata: {\"status\":\"%s\"}\n\n", ft_run_status_str(status));
    }
    return st;
}

/* ---------------------------------------------------------------- context */

ft_status srv_ctx_init(srv_ctx *c, const ft_server_params *p, ft_err *err) {
    memset(c, 0, sizeof *c);
    c->home = p->home ? ft_strdup(p->home) : ft_home_dir();
    if (!c->home)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_status st = ft_home_make(c->home, err);
    if (st != FT_OK)
        return st;
    c->db_path = ft_path_join(c->home, "ftune.db");
    c->token = p->token && *p->token ? ft_strdup(p->token) : NULL;
    c->max_body = p->max_body ? p->max_body : 1 << 20;
    c->workers = p->workers > 0 ? p->workers : 1;
    c->poll_s = p->poll_s > 0 ? p->poll_s : 0.25;
    atomic_init(&c->stopping, false);
    atomic_init(&c->worker_pid, 0);
    c->exe = p->exe ? ft_strdup(p->exe) : NULL;
    c->stop_grace_s = p->stop_grace_s > 0 ? p->stop_grace_s : 300;
    if (!c->db_path)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    /* Create the store (and its schema) once here, so that requests only open it. */
    ft_store *s;
    FT_TRY(ft_store_open(c->db_path, &s, err));
    ft_store_close(s);
    return srv_v1_new(c, p, &c->v1, err);
}

void srv_ctx_deinit(srv_ctx *c) {
    srv_v1_free(c->v1);
    c->v1 = NULL;
    ft_free(c->home);
    ft_free(c->exe);
    ft_free(c->db_path);
    if (c->token) {
        memset(c->token, 0, strlen(c->token));
        ft_free(c->token);
    }
    memset(c, 0, sizeof *c);
}
