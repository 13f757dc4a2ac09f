/* server/v1.c: the OpenAI-compatible inference API of `ftune serve` under /v1 (issue #13 item 2):
 * GET /v1/models[/{id}], POST /v1/chat/completions, POST /v1/completions, and GET /metrics
 * (Prometheus text). Requests run on one inference engine per loaded model (ftune/infer.h).
 *
 * Models: registered models by `catalog.schema.name` (its newest version when the request
 * comes) or `catalog.schema.name/version`, and the `--model` preloads by the name they were given.
 * A registry version is immutable, so the engine of a version never changes under a client. A
 * model loads on first use; when more than `max_loaded` are loaded, or when the machine lacks the
 * memory the next one needs (its weights and KV pool), the least recently used idle one is
 * unloaded (preloads stay); when that is not enough the answer is 503 with Retry-After. A memory
 * watch thread also unloads idle models (never one a request is using) while the machine's
 * available memory (MemAvailable, the cgroup limit) is below a low mark.
 *
 * Errors are OpenAI's {"error": {"message", "type", "param", "code"}}: 400 invalid_request_error
 * naming the `param`, 401, 404 model_not_found (param "model"), 429 with Retry-After when the
 * model's queue is full, 500; a failure after a stream started is sent as `data: {"error": ...}`.
 *
 * Streams: chunks in the shape the `openai` client parses (chat.completion.chunk; the first delta
 * of each choice carries the role, its last chunk the finish_reason; with
 * stream_options.include_usage a final chunk with "choices": [] and the usage; then
 * `data: [DONE]`), and `: ping` comments while a request waits. A client that goes away is
 * noticed by polling its socket while waiting (every 20 ms), and its generation is cancelled. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "ftune/ftune.h"
#include "ftune/hf.h"
#include "ftune/infer.h"
#include "ftune/json.h"
#include "ftune/memplan.h"
#include "ftune/store.h"
#include "server_internal.h"

enum { MAX_N = 8, MAX_STOP = 4 };

/* ---------------------------------------------------------------- loaded models */

typedef struct v1_model {
    char *id;   /* the name requests use: "c.s.n/3" for registry versions, the --model name for preloads */
    char *dir;
    char *run;  /* source run or NULL */
    json_t *metrics;
    double created;
    bool preload;
    ft_model *m;
    ft_tok *tok;
    ft_infer *e;
    int64_t users; /* requests using it now */
    double last_used;
    struct v1_model *next;
} v1_model;

enum { R_CHAT, R_COMPLETIONS, R_MODELS, R_OTHER, R_COUNT };

struct srv_v1 {
    pthread_mutex_t mu;
    pthread_mutex_t load_mu; /* one load at a time */
    v1_model *models;
    char **preload;
    size_t n_preload;
    int64_t slots, max_loaded;
    uint64_t requests[R_COUNT][6]; /* by status class 1xx..5xx, [5]: cancelled */
    uint64_t unloads, pressure_unloads;
    double ping_s;
    /* the memory watch: a thread that unloads idle models while memory is short */
    double check_s;
    uint64_t low;
    uint64_t (*available)(void *user);
    void *available_user;
    pthread_t watch;
    bool watching, stopping;
    pthread_cond_t watch_cv;
};

/* Bytes available: the probe's, or the machine's (MemAvailable, the cgroup limit). */
static uint64_t mem_available(const srv_v1 *v) {
    if (v->available)
        return v->available(v->available_user);
    ft_memplan_machine mm;
    ft_memplan_machine_read(&mm);
    return mm.available;
}

static void model_free(v1_model *v) {
    if (!v)
        return;
    ft_infer_free(v->e);
    ft_tok_free(v->tok);
    ft_model_free(v->m);
    json_decref(v->metrics);
    ft_free(v->id);
    ft_free(v->dir);
    ft_free(v->run);
    ft_free(v);
}

/* Load a model folder into an engine. */
static ft_status model_load(srv_v1 *v, v1_model *mdl, ft_err *err) {
    ft_model_params mp = ft_model_default_params();
    FT_TRY(ft_model_load(mdl->dir, &mp, &mdl->m, err));
    FT_TRY(ft_tok_load(mdl->dir, &mdl->tok, err));
    ft_infer_params ip = ft_infer_default_params();
    ip.max_seqs = v->slots;
    return ft_infer_new(mdl->m, mdl->tok, mdl->dir, &ip, &mdl->e, err);
}

/* Under v->mu: the least recently used idle loaded model that is not a preload goes while more
 * than max_loaded are loaded, or (need > 0) while the machine has less than `need` bytes
 * available. */
static void unload_idle(srv_v1 *v, uint64_t need) {
    for (;;) {
        bool short_of_memory = false;
        if (need) {
            uint64_t avail = mem_available(v);
            short_of_memory = avail && avail < need;
        }
        int64_t loaded = 0;
        v1_model *lru = NULL;
        for (v1_model *m = v->models; m; m = m->next) {
            if (!m->e)
                continue;
            loaded++;
            if (m->users == 0 && !m->preload && (!lru || m->last_used < lru->last_used))
                lru = m;
        }
        if ((loaded <= v->max_loaded && !short_of_memory) || !lru)
            return;
        ft_infer_free(lru->e);
        ft_tok_free(lru->tok);
        ft_model_free(lru->m);
        lru->e = NULL, lru->tok = NULL, lru->m = NULL;
        v->unloads++;
    }
}

/* A registered name ("c.s.n" or "c.s.n/V") in the store: that version (the newest for a bare
 * name) into *ver (owned by *vs, n of them). FT_ERR_NOT_FOUND when it is no registered model. */
static ft_status registry_version(const char *db, const char *name, ft_model_version **vs, size_t *nv,
                                  ft_model_version **ver, ft_err *err) {
    *vs = NULL, *nv = 0, *ver = NULL;
    ft_status st = ft_registry_check_name(name, err);
    if (st != FT_OK && strchr(name, '/')) {
        char base[512];
        snprintf(base, sizeof base, "%.*s", (int)(strchr(name, '/') - name), name);
        st = ft_registry_check_name(base, err);
    }
    if (st != FT_OK)
        return FT_ERR(err, FT_ERR_NOT_FOUND, "%s is not a registered model name", name);
    ft_store *s = NULL;
    FT_TRY(ft_store_open(db, &s, err));
    st = ft_registry_show(s, name, vs, nv, err);
    ft_store_close(s);
    if (st == FT_OK && *nv == 0)
        st = FT_ERR(err, FT_ERR_NOT_FOUND, "no registered model %s", name);
    if (st == FT_ERR_INVALID)
        st = FT_ERR_NOT_FOUND;
    if (st == FT_OK)
        *ver = &(*vs)[*nv - 1];
    return st;
}

static void *memory_watch(void *arg);

ft_status srv_v1_new(const srv_ctx *c, const ft_server_params *p, srv_v1 **out, ft_err *err) {
    *out = NULL;
    srv_v1 *v = ft_calloc(1, sizeof *v);
    if (!v)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&v->mu, NULL);
    pthread_mutex_init(&v->load_mu, NULL);
    v->slots = p->infer_slots > 0 ? p->infer_slots : 8;
    v->max_loaded = p->max_loaded_models > 0 ? p->max_loaded_models : 2;
    v->ping_s = p->ping_s > 0 ? p->ping_s : 5.0;
    v->check_s = p->memory_check_s > 0 ? p->memory_check_s : 1.0;
    v->available = p->memory_available;
    v->available_user = p->memory_user;
    v->low = p->memory_low;
    if (!v->low) {
        ft_memplan_machine mm;
        ft_memplan_machine_read(&mm);
        uint64_t total = mm.cgroup_limit && mm.cgroup_limit < mm.mem_total ? mm.cgroup_limit : mm.mem_total;
        v->low = total / 20 > ((uint64_t)512 << 20) ? total / 20 : (uint64_t)512 << 20;
    }
    pthread_cond_init(&v->watch_cv, NULL);
    *out = v;
    if (pthread_create(&v->watch, NULL, memory_watch, v) == 0)
        v->watching = true;
    for (size_t i = 0; i < p->n_models; i++) {
        v1_model *mdl = ft_calloc(1, sizeof *mdl);
        if (!mdl)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        mdl->preload = true;
        mdl->created = (double)time(NULL);
        mdl->next = v->models;
        v->models = mdl;
        /* a registered model is served as its version c.s.n/V (a bare name also finds it while
         * it is the newest); anything else (a folder, a hub id) under the name given */
        ft_model_version *vs = NULL, *ver = NULL;
        size_t nv = 0;
        ft_err rerr;
        if (registry_version(c->db_path, p->models[i], &vs, &nv, &ver, &rerr) == FT_OK) {
            char id[512];
            snprintf(id, sizeof id, "%s/%lld", ver->name, (long long)ver->version);
            mdl->id = ft_strdup(id);
            mdl->dir = ft_strdup(ver->path);
            mdl->run = ver->run ? ft_strdup(ver->run) : NULL;
            mdl->metrics = ver->metrics_json ? json_loads(ver->metrics_json, 0, NULL) : NULL;
            mdl->created = ver->created;
            ft_model_version_list_free(vs, nv);
        } else {
            ft_model_version_list_free(vs, nv);
            mdl->id = ft_strdup(p->models[i]);
            FT_TRY(ft_hf_resolve(p->models[i], &mdl->dir, err));
        }
        ft_status s = model_load(v, mdl, err);
        if (s != FT_OK) {
            ft_err_prefix(err, "--model %s", p->models[i]);
            return s;
        }
        if (v->max_loaded < (int64_t)p->n_models)
            v->max_loaded = (int64_t)p->n_models;
    }
    return FT_OK;
}

/* The memory watch: while the machine is short of memory, idle models go, least recently used
 * first, one per check (what the next reading says is after that one's memory came back). */
static void *memory_watch(void *arg) {
    srv_v1 *v = arg;
    pthread_mutex_lock(&v->mu);
    while (!v->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + v->check_s;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&v->watch_cv, &v->mu, &ts);
        if (v->stopping)
            break;
        pthread_mutex_unlock(&v->mu);
        uint64_t avail = mem_available(v);
        pthread_mutex_lock(&v->mu);
        if (!avail || avail >= v->low)
            continue;
        v1_model *lru = NULL;
        for (v1_model *m = v->models; m; m = m->next)
            if (m->e && m->users == 0 && !m->preload && (!lru || m->last_used < lru->last_used))
                lru = m;
        if (!lru)
            continue;
        ft_infer_free(lru->e);
        ft_tok_free(lru->tok);
        ft_model_free(lru->m);
        lru->e = NULL, lru->tok = NULL, lru->m = NULL;
        v->unloads++;
        v->pressure_unloads++;
    }
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

void srv_v1_free(srv_v1 *v) {
    if (!v)
        return;
    if (v->watching) {
        pthread_mutex_lock(&v->mu);
        v->stopping = true;
        pthread_cond_signal(&v->watch_cv);
        pthread_mutex_unlock(&v->mu);
        pthread_join(v->watch, NULL);
    }
    pthread_cond_destroy(&v->watch_cv);
    for (v1_model *m = v->models, *n; m; m = n) {
        n = m->next;
        model_free(m);
    }
    pthread_mutex_destroy(&v->mu);
    pthread_mutex_destroy(&v->load_mu);
    ft_free(v);
}

/* ---------------------------------------------------------------- errors and helpers */

static void v1_error(srv_response *rs, int status, const char *type, const char *param, const char *code,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void v1_error(srv_response *rs, int status, const char *type, const char *param, const char *code,
                     const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *m = json_string(msg);
    json_t *e = json_pack("{s:o, s:s, s:o, s:o}", "message", m ? m : json_string("(message is not valid UTF-8)"),
                          "type", type, "param", param ? json_string(param) : json_null(), "code",
                          code ? json_string(code) : json_null());
    srv_json(rs, status, json_pack("{s:o}", "error", e));
}

#define BAD(rs, param, ...) v1_error(rs, 400, "invalid_request_error", param, "invalid_value", __VA_ARGS__)

void srv_v1_auth_error(srv_response *rs, bool had_header) {
    v1_error(rs, 401, "invalid_request_error", NULL, "invalid_api_key",
             had_header ? "Incorrect API key provided: the bearer token is not the server's"
                        : "You didn't provide an API key: this server needs Authorization: Bearer <token>");
    rs->www_authenticate = true;
}

static void count(srv_ctx *c, int route, int status) {
    srv_v1 *v = c->v1;
    if (!v)
        return;
    int k = status == 499 ? 5 : status / 100 - 1;
    if (k < 0 || k > 5)
        k = 4;
    pthread_mutex_lock(&v->mu);
    v->requests[route][k]++;
    pthread_mutex_unlock(&v->mu);
}

/* Whether the client closed its connection (fd known and readable at EOF). */
static bool client_gone(int fd) {
    if (fd <= 0)
        return false;
    struct pollfd pf = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&pf, 1, 0) <= 0)
        return false;
    if (pf.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL))
        return true;
    char b;
    ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0;
}

static void rand_id(char *out, size_t cap, const char *prefix) {
    static atomic_uint_fast64_t counter;
    uint64_t x = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)atomic_fetch_add(&counter, 1) * 0xBF58476D1CE4E5B9ull ^
                 (uint64_t)(uintptr_t)out;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    snprintf(out, cap, "%s%016llx", prefix, (unsigned long long)x);
}

/* ---------------------------------------------------------------- GET /v1/models */

static json_t *model_object(const char *id, double created, const char *run, const json_t *metrics, const char *dir,
                            bool loaded) {
    json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", "model", "created", (json_int_t)created,
                          "owned_by", "ftune");
    json_object_set_new(o, "source_run", run ? json_string(run) : json_null());
    json_object_set_new(o, "metrics", metrics ? json_deep_copy(metrics) : json_null());
    if (dir)
        json_object_set_new(o, "path", json_string(dir));
    json_object_set_new(o, "loaded", json_boolean(loaded));
    return o;
}

static bool loaded_id(srv_v1 *v, const char *id) {
    bool r = false;
    pthread_mutex_lock(&v->mu);
    for (v1_model *m = v->models; m; m = m->next)
        if (m->e && !strcmp(m->id, id))
            r = true;
    pthread_mutex_unlock(&v->mu);
    return r;
}

/* Every servable id: registry names (newest version) and name/version, then the preloads. */
static json_t *models_list(srv_ctx *c, ft_err *err) {
    json_t *data = json_array();
    ft_store *s = NULL;
    if (ft_store_open(c->db_path, &s, err) != FT_OK) {
        json_decref(data);
        return NULL;
    }
    ft_model_version *names = NULL;
    size_t n = 0;
    if (ft_registry_list(s, &names, &n, err) == FT_OK) {
        for (size_t i = 0; i < n; i++) {
            ft_model_version *vs = NULL;
            size_t nv = 0;
            if (ft_registry_show(s, names[i].name, &vs, &nv, NULL) != FT_OK)
                continue;
            for (size_t k = nv; k-- > 0;) {
                json_t *metrics = vs[k].metrics_json ? json_loads(vs[k].metrics_json, 0, NULL) : NULL;
                char id[512];
                snprintf(id, sizeof id, "%s/%lld", vs[k].name, (long long)vs[k].version);
                if (k == nv - 1) {
                    json_t *o = model_object(vs[k].name, vs[k].created, vs[k].run, metrics, vs[k].path,
                                             loaded_id(c->v1, id));
                    json_object_set_new(o, "version", json_integer(vs[k].version));
                    json_array_append_new(data, o);
                }
                json_t *o = model_object(id, vs[k].created, vs[k].run, metrics, vs[k].path, loaded_id(c->v1, id));
                json_object_set_new(o, "version", json_integer(vs[k].version));
                json_array_append_new(data, o);
                json_decref(metrics);
            }
            ft_model_version_list_free(vs, nv);
        }
        ft_model_version_list_free(names, n);
    }
    ft_store_close(s);
    pthread_mutex_lock(&c->v1->mu);
    for (v1_model *m = c->v1->models; m; m = m->next) {
        if (!m->preload)
            continue;
        bool listed = false; /* a registered preload is in the list already */
        size_t i;
        json_t *o;
        json_array_foreach(data, i, o) listed |= !strcmp(json_string_value(json_object_get(o, "id")), m->id);
        if (!listed)
            json_array_append_new(data, model_object(m->id, m->created, m->run, m->metrics, m->dir, m->e != NULL));
    }
    pthread_mutex_unlock(&c->v1->mu);
    return data;
}

/* ---------------------------------------------------------------- resolving a request's model */

/* The loaded model for a request's `model` (loading it on first use), with a use counted:
 * give it back with model_release. NULL with rs set on failure. */
static v1_model *model_acquire(srv_ctx *c, const char *name, srv_response *rs) {
    srv_v1 *v = c->v1;
    /* preloads by their exact name */
    pthread_mutex_lock(&v->mu);
    for (v1_model *m = v->models; m; m = m->next)
        if (m->preload && !strcmp(m->id, name) && m->e) {
            m->users++;
            m->last_used = ft_time_now();
            pthread_mutex_unlock(&v->mu);
            return m;
        }
    pthread_mutex_unlock(&v->mu);
    /* registry: c.s.n (the newest version now) or c.s.n/V */
    ft_err err;
    ft_model_version *vs = NULL, *ver = NULL;
    size_t nv = 0;
    ft_status st = registry_version(c->db_path, name, &vs, &nv, &ver, &err);
    if (st != FT_OK) {
        ft_model_version_list_free(vs, nv);
        if (st == FT_ERR_NOT_FOUND)
            v1_error(rs, 404, "invalid_request_error", "model", "model_not_found",
                     "The model `%s` does not exist: give a registered model catalog.schema.name[/version] or a "
                     "--model preload (GET /v1/models lists them)",
                     name);
        else
            v1_error(rs, 500, "server_error", NULL, NULL, "the registry could not be read: %s", err.msg);
        return NULL;
    }
    char id[512];
    snprintf(id, sizeof id, "%s/%lld", ver->name, (long long)ver->version);
    pthread_mutex_lock(&v->load_mu); /* one load at a time; others wait for it */
    pthread_mutex_lock(&v->mu);
    v1_model *found = NULL;
    for (v1_model *m = v->models; m; m = m->next)
        if (!strcmp(m->id, id))
            found = m;
    if (!found && (found = ft_calloc(1, sizeof *found))) {
        found->id = ft_strdup(id);
        found->dir = ft_strdup(ver->path);
        found->run = ver->run ? ft_strdup(ver->run) : NULL;
        found->metrics = ver->metrics_json ? json_loads(ver->metrics_json, 0, NULL) : NULL;
        found->created = ver->created;
        found->next = v->models;
        v->models = found;
    }
    if (found)
        found->users++; /* held through the load: never unloaded meanwhile */
    pthread_mutex_unlock(&v->mu);
    ft_model_version_list_free(vs, nv);
    if (!found) {
        pthread_mutex_unlock(&v->load_mu);
        v1_error(rs, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    st = FT_OK;
    if (!found->e) {
        /* memory pressure: idle models go first when this one would not fit beside them */
        ft_model_config mc;
        char *cfg = ft_path_join(found->dir, "config.json");
        if (cfg && ft_model_config_load(cfg, &mc, NULL) == FT_OK) {
            size_t wbytes = 0, gbytes = 0;
            ft_model_state_bytes(&mc, false, &wbytes, &gbytes);
            int64_t ctx = mc.max_position_embeddings > 0 && mc.max_position_embeddings < 4096
                              ? mc.max_position_embeddings
                              : 4096;
            uint64_t need = (uint64_t)wbytes + ft_kv_pool_bytes(&mc, v->slots, ctx, 256, 0);
            pthread_mutex_lock(&v->mu);
            unload_idle(v, need + need / 8);
            pthread_mutex_unlock(&v->mu);
            uint64_t avail = mem_available(v);
            if (avail && avail < need) {
                ft_memplan_machine mm;
                ft_memplan_machine_read(&mm);
                st = FT_ERR(&err, FT_ERR_NOMEM, "loading it needs %.1f GiB; %.1f GiB are available (%s)",
                            (double)need / (1 << 30), (double)avail / (1 << 30),
                            v->available ? "the server's memory probe" : mm.source);
            }
        }
        ft_free(cfg);
        if (st == FT_OK)
            st = model_load(v, found, &err);
        if (st != FT_OK) {
            ft_infer_free(found->e);
            ft_tok_free(found->tok);
            ft_model_free(found->m);
            found->e = NULL, found->tok = NULL, found->m = NULL;
        }
    }
    pthread_mutex_unlock(&v->load_mu);
    pthread_mutex_lock(&v->mu);
    found->last_used = ft_time_now();
    if (st != FT_OK)
        found->users--;
    unload_idle(v, 0);
    pthread_mutex_unlock(&v->mu);
    if (st == FT_ERR_NOMEM) {
        v1_error(rs, 503, "server_error", "model", "insufficient_memory",
                 "the model %s cannot be loaded now: %s; retry later", id, err.msg);
        rs->retry_after = 10;
        return NULL;
    }
    if (st != FT_OK) {
        v1_error(rs, 500, "server_error", "model", "model_load_failed", "the model %s could not be loaded: %s", id,
                 err.msg);
        return NULL;
    }
    return found;
}

static void model_release(srv_ctx *c, v1_model *m) {
    pthread_mutex_lock(&c->v1->mu);
    m->users--;
    m->last_used = ft_time_now();
    pthread_mutex_unlock(&c->v1->mu);
}

/* ---------------------------------------------------------------- request bodies */

typedef struct v1_req {
    bool chat;
    const char *model;
    json_t *messages; /* chat: normalised [{role, content}] (owned) */
    const char *prompt;
    int64_t max_tokens;
    ft_sampling sampling;
    double presence, frequency, repetition;
    bool has_seed;
    uint64_t seed;
    int64_t n;
    const char *stop[MAX_STOP];
    size_t n_stop;
    bool logprobs;
    int top_logprobs; /* -1: none */
    ft_infer_json json;
    const json_t *schema; /* borrowed from the body */
    bool strict;          /* json_schema.strict */
    bool stream, include_usage;
} v1_req;

/* An optional number field of the body within [lo, hi] (an integer one when `integer`): true with
 * *out the field (NULL when absent or null), false with a 400 in rs. One check for both kinds, so
 * that their messages agree. */
static bool range_field(json_t *body, const char *key, bool integer, double lo, double hi, json_t **out,
                        srv_response *rs) {
    *out = NULL;
    json_t *x = json_object_get(body, key);
    if (!x || json_is_null(x))
        return true;
    if (integer ? !json_is_integer(x) : !json_is_number(x)) {
        BAD(rs, key, "'%s' must be %s", key, integer ? "an integer" : "a number");
        return false;
    }
    double d = json_number_value(x);
    if (!(d >= lo && d <= hi)) {
        if (integer)
            BAD(rs, key, "'%s' is %lld; it must be between %.0f and %.0f", key, (long long)json_integer_value(x), lo, hi);
        else
            BAD(rs, key, "'%s' is %g; it must be between %g and %g", key, d, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

static bool num_field(json_t *body, const char *key, double lo, double hi, double *out, srv_response *rs) {
    json_t *x;
    if (!range_field(body, key, false, lo, hi, &x, rs))
        return false;
    if (x)
        *out = json_number_value(x);
    return true;
}

static bool int_field(json_t *body, const char *key, int64_t lo, int64_t hi, int64_t *out, srv_response *rs) {
    json_t *x;
    if (!range_field(body, key, true, (double)lo, (double)hi, &x, rs))
        return false;
    if (x)
        *out = json_integer_value(x);
    return true;
}

static bool bool_field(json_t *body, const char *key, bool *out, srv_response *rs) {
    json_t *x = json_object_get(body, key);
    if (!x || json_is_null(x))
        return true;
    if (!json_is_boolean(x)) {
        BAD(rs, key, "'%s' must be true or false", key);
        return false;
    }
    *out = json_is_true(x);
    return true;
}

/* A message's content: a string, or a list of {"type": "text", "text"} parts joined. */
static json_t *content_text(json_t *content, size_t i, srv_response *rs) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    if (json_is_string(content))
        return json_incref(content);
    if (json_is_null(content))
        return json_string("");
    if (!json_is_array(content)) {
        BAD(rs, param, "'%s' must be a string or a list of text parts", param);
        return NULL;
    }
    ft_buf b = {0};
    size_t k;
    json_t *part;
    json_array_foreach(content, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text)) {
            ft_buf_free(&b);
            BAD(rs, param, "'%s[%zu]': only {\"type\": \"text\", \"text\": ...} parts are supported", param, k);
            return NULL;
        }
        ft_buf_append(&b, json_string_value(text), json_string_length(text));
    }
    json_t *r = json_stringn(b.data ? b.data : "", b.len);
    ft_buf_free(&b);
    return r;
}

/* Parse and check a body: false with rs set (400) on the first problem. */
static bool parse_req(const srv_request *rq, bool chat, v1_req *q, json_t **body_out, srv_response *rs) {
    memset(q, 0, sizeof *q);
    q->chat = chat;
    *body_out = NULL;
    if (!rq->body_len) {
        BAD(rs, NULL, "the request needs a JSON body");
        return false;
    }
    json_error_t je;
    json_t *body = json_loadb(rq->body, rq->body_len, 0, &je);
    if (!body) {
        BAD(rs, NULL, "the body is not valid JSON: %s at line %d, column %d", je.text, je.line, je.column);
        return false;
    }
    *body_out = body;
    if (!json_is_object(body)) {
        BAD(rs, NULL, "the body must be a JSON object");
        return false;
    }
    static const char *unsupported[] = {"tools", "tool_choice", "functions", "function_call", "logit_bias", "audio",
                                        "modalities", "prediction", "suffix", "best_of", NULL};
    for (int i = 0; unsupported[i]; i++) {
        json_t *x = json_object_get(body, unsupported[i]);
        if (x && !json_is_null(x) && !(json_is_array(x) && json_array_size(x) == 0)) {
            BAD(rs, unsupported[i], "'%s' is not supported by this server", unsupported[i]);
            return false;
        }
    }
    json_t *model = json_object_get(body, "model");
    if (!json_is_string(model) || !json_string_length(model)) {
        BAD(rs, "model", "'model' is required: a registered model catalog.schema.name[/version] (GET /v1/models)");
        return false;
    }
    q->model = json_string_value(model);
    if (chat) {
        json_t *msgs = json_object_get(body, "messages");
        if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
            BAD(rs, "messages", "'messages' must be a non-empty list of {role, content}");
            return false;
        }
        q->messages = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(msgs, i, m) {
            char param[64];
            snprintf(param, sizeof param, "messages[%zu].role", i);
            json_t *role = json_object_get(m, "role");
            const char *r = json_is_string(role) ? json_string_value(role) : NULL;
            if (!json_is_object(m) || !r ||
                (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "developer"))) {
                BAD(rs, param, "'%s' must be one of system, developer, user, assistant", param);
                return false;
            }
            json_t *text = content_text(json_object_get(m, "content"), i, rs);
            if (!text)
                return false;
            json_array_append_new(q->messages, json_pack("{s:s, s:o}", "role", !strcmp(r, "developer") ? "system" : r,
                                                         "content", text));
        }
    } else {
        json_t *p = json_object_get(body, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
            p = json_array_get(p, 0);
        if (!json_is_string(p) || !json_string_length(p)) {
            BAD(rs, "prompt", "'prompt' must be a non-empty string");
            return false;
        }
        q->prompt = json_string_value(p);
    }
    q->max_tokens = chat ? 0 : 16;
    if (!int_field(body, "max_tokens", 1, 1 << 20, &q->max_tokens, rs) ||
        !int_field(body, "max_completion_tokens", 1, 1 << 20, &q->max_tokens, rs))
        return false;
    double temperature = 1, top_p = 1, min_p = 0;
    int64_t top_k = 0;
    q->repetition = 1;
    if (!num_field(body, "temperature", 0, 2, &temperature, rs) || !num_field(body, "top_p", 0, 1, &top_p, rs) ||
        !int_field(body, "top_k", -1, 1 << 30, &top_k, rs) || !num_field(body, "min_p", 0, 1, &min_p, rs) ||
        !num_field(body, "presence_penalty", -2, 2, &q->presence, rs) ||
        !num_field(body, "frequency_penalty", -2, 2, &q->frequency, rs) ||
        !num_field(body, "repetition_penalty", 0.01, 100, &q->repetition, rs))
        return false;
    if (top_p <= 0) {
        BAD(rs, "top_p", "'top_p' must be greater than 0");
        return false;
    }
    q->sampling = (ft_sampling){.temperature = temperature, .top_k = top_k < 0 ? 0 : top_k, .top_p = top_p,
                                .min_p = min_p};
    json_t *seed = json_object_get(body, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) {
            BAD(rs, "seed", "'seed' must be an integer");
            return false;
        }
        q->has_seed = true;
        q->seed = (uint64_t)json_integer_value(seed);
    }
    q->n = 1;
    if (!int_field(body, "n", 1, MAX_N, &q->n, rs))
        return false;
    json_t *stop = json_object_get(body, "stop");
    if (json_is_string(stop)) {
        q->stop[q->n_stop++] = json_string_value(stop);
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > MAX_STOP) {
            BAD(rs, "stop", "'stop' holds at most %d strings", MAX_STOP);
            return false;
        }
        size_t i;
        json_t *x;
        json_array_foreach(stop, i, x) {
            if (!json_is_string(x) || !json_string_length(x)) {
                BAD(rs, "stop", "'stop' must be a string or a list of non-empty strings");
                return false;
            }
            q->stop[q->n_stop++] = json_string_value(x);
        }
    } else if (stop && !json_is_null(stop)) {
        BAD(rs, "stop", "'stop' must be a string or a list of strings");
        return false;
    }
    if (q->n_stop == 1 && !*q->stop[0]) {
        BAD(rs, "stop", "a stop string must not be empty");
        return false;
    }
    q->top_logprobs = -1;
    if (chat) {
        if (!bool_field(body, "logprobs", &q->logprobs, rs))
            return false;
        int64_t tl = -1;
        if (!int_field(body, "top_logprobs", 0, FT_INFER_MAX_TOP, &tl, rs))
            return false;
        if (tl >= 0 && !q->logprobs) {
            BAD(rs, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            return false;
        }
        if (q->logprobs)
            q->top_logprobs = tl < 0 ? 0 : (int)tl;
    } else {
        int64_t lp = -1;
        if (!int_field(body, "logprobs", 0, 5, &lp, rs))
            return false;
        q->logprobs = lp >= 0;
        q->top_logprobs = (int)lp;
        bool echo = false;
        if (!bool_field(body, "echo", &echo, rs))
            return false;
        if (echo) {
            BAD(rs, "echo", "'echo' is not supported by this server");
            return false;
        }
    }
    json_t *rf = json_object_get(body, "response_format");
    if (rf && !json_is_null(rf)) {
        json_t *type = json_object_get(rf, "type");
        const char *t = json_is_string(type) ? json_string_value(type) : "";
        if (!strcmp(t, "json_object")) {
            q->json = FT_INFER_JSON_OBJECT;
        } else if (!strcmp(t, "json_schema")) {
            json_t *js = json_object_get(rf, "json_schema");
            json_t *schema = json_object_get(js, "schema");
            if (!json_is_object(schema)) {
                BAD(rs, "response_format", "'response_format.json_schema.schema' must be a JSON Schema object");
                return false;
            }
            json_t *strict = json_object_get(js, "strict");
            if (strict && !json_is_boolean(strict) && !json_is_null(strict)) {
                BAD(rs, "response_format", "'response_format.json_schema.strict' must be true or false");
                return false;
            }
            q->strict = json_is_true(strict);
            ft_err err;
            if (ft_infer_check_schema(schema, q->strict, &err) != FT_OK) {
                BAD(rs, "response_format", "response_format.json_schema: %s", err.msg);
                return false;
            }
            q->json = FT_INFER_JSON_SCHEMA;
            q->schema = schema;
        } else if (strcmp(t, "text")) {
            BAD(rs, "response_format", "'response_format.type' must be text, json_object or json_schema");
            return false;
        }
    }
    if (!bool_field(body, "stream", &q->stream, rs))
        return false;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!q->stream) {
            BAD(rs, "stream_options", "'stream_options' is only allowed with 'stream': true");
            return false;
        }
        if (!bool_field(so, "include_usage", &q->include_usage, rs))
            return false;
    }
    json_t *user = json_object_get(body, "user");
    if (user && !json_is_null(user) && !json_is_string(user)) {
        BAD(rs, "user", "'user' must be a string");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- one generation (n choices) */

typedef struct choice {
    uint64_t id;
    bool started, done;
    ft_infer_finish finish;
    ft_buf text;
    json_t *logprobs; /* chat: [{token, logprob, bytes, top_logprobs}]; completions: built at the end */
    int64_t completion;
    ft_err err;
    bool failed;
} choice;

typedef struct gen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs; /* the HTTP side + one per running choice */
    srv_ctx *ctx;
    v1_model *mdl;
    const ft_tok *tok;
    bool chat, stream, include_usage, logprobs;
    char id[64], model[512];
    int64_t created, prompt_tokens, n;
    choice ch[MAX_N];
    int64_t n_done;
    ft_buf pending; /* stream: SSE text not yet sent */
    size_t sent;
    bool finished_stream; /* [DONE] queued */
    int fd;
    double last_write;
    bool http_done;
} gen;

static void gen_unref(gen *g) {
    pthread_mutex_lock(&g->mu);
    bool last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (!last)
        return;
    for (int64_t i = 0; i < g->n; i++) {
        ft_buf_free(&g->ch[i].text);
        json_decref(g->ch[i].logprobs);
    }
    ft_buf_free(&g->pending);
    if (g->mdl)
        model_release(g->ctx, g->mdl);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    ft_free(g);
}

static json_t *token_entry(const ft_tok *tok, int32_t id, float lp) {
    char *t = NULL;
    size_t n = 0;
    if (ft_tok_decode(tok, &id, 1, false, &t, &n, NULL) != FT_OK) {
        t = ft_strdup("");
        n = 0;
    }
    json_t *bytes = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(bytes, json_integer((unsigned char)t[i]));
    json_t *s = json_stringn(t ? t : "", n);
    json_t *o = json_pack("{s:o, s:f, s:o}", "token", s ? s : json_string(""), "logprob", (double)lp, "bytes", bytes);
    ft_free(t);
    return o;
}

static json_t *chat_logprob(const ft_tok *tok, const ft_infer_token *tk) {
    json_t *e = token_entry(tok, tk->id, tk->logprob);
    json_t *top = json_array();
    for (int k = 0; k < tk->n_top; k++)
        json_array_append_new(top, token_entry(tok, tk->top_ids[k], tk->top_logprobs[k]));
    json_object_set_new(e, "top_logprobs", top);
    return e;
}

static const char *finish_name(ft_infer_finish f) { return f == FT_INFER_LENGTH ? "length" : "stop"; }

static json_t *usage_json(const gen *g) {
    int64_t c = 0;
    for (int64_t i = 0; i < g->n; i++)
        c += g->ch[i].completion;
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)g->prompt_tokens, "completion_tokens",
                     (json_int_t)c, "total_tokens", (json_int_t)(g->prompt_tokens + c));
}

/* Under g->mu: queue one SSE data line. */
static void sse_data(gen *g, json_t *j) {
    char *t = ft_json_dumps(j, 0);
    json_decref(j);
    if (t) {
        ft_buf_appendf(&g->pending, "data: %s\n\n", t);
        free(t);
    }
}

static json_t *chunk_base(const gen *g) {
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", g->id, "object",
                     g->chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)g->created, "model",
                     g->model, "system_fingerprint", "ftune-" FTUNE_VERSION);
}

/* Under g->mu: a stream chunk for choice i with text and (optional) logprobs / finish. */
static void stream_chunk(gen *g, int64_t i, const char *text, size_t len, const ft_infer_token *tk,
                         const char *finish) {
    json_t *c = chunk_base(g);
    json_t *choice;
    if (g->chat) {
        json_t *delta = json_object();
        if (!g->ch[i].started)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (len || !g->ch[i].started || !finish) {
            json_t *s = json_stringn(text ? text : "", len);
            json_object_set_new(delta, "content", s ? s : json_string(""));
        }
        g->ch[i].started = true;
        json_t *lp = json_null();
        if (tk && g->logprobs)
            lp = json_pack("{s:[o]}", "content", chat_logprob(g->tok, tk));
        choice = json_pack("{s:I, s:o, s:o, s:o}", "index", (json_int_t)i, "delta", delta, "logprobs", lp,
                           "finish_reason", finish ? json_string(finish) : json_null());
    } else {
        json_t *s = json_stringn(text ? text : "", len);
        json_t *lp = json_null();
        if (tk && g->logprobs) {
            char *t = NULL;
            size_t n = 0;
            ft_tok_decode(g->tok, &tk->id, 1, false, &t, &n, NULL);
            json_t *top = json_object();
            for (int k = 0; k < tk->n_top; k++) {
                char *u = NULL;
                size_t un = 0;
                ft_tok_decode(g->tok, &tk->top_ids[k], 1, false, &u, &un, NULL);
                json_object_setn_new(top, u ? u : "", u ? un : 0, json_real(tk->top_logprobs[k]));
                ft_free(u);
            }
            json_t *ts = json_stringn(t ? t : "", n);
            lp = json_pack("{s:[o], s:[f], s:[o], s:[i]}", "tokens", ts ? ts : json_string(""), "token_logprobs",
                           (double)tk->logprob, "top_logprobs", top, "text_offset", 0);
            ft_free(t);
        }
        choice = json_pack("{s:I, s:o, s:o, s:o}", "index", (json_int_t)i, "text", s ? s : json_string(""),
                           "logprobs", lp, "finish_reason", finish ? json_string(finish) : json_null());
    }
    json_object_set_new(c, "choices", json_pack("[o]", choice));
    sse_data(g, c);
}

typedef struct choice_ref {
    gen *g;
    int64_t i;
} choice_ref;

/* The engine's events for one choice (engine thread). */
static void on_event(void *user, const ft_infer_event *ev) {
    choice_ref *r = user;
    gen *g = r->g;
    choice *c = &g->ch[r->i];
    pthread_mutex_lock(&g->mu);
    if (ev->text_len)
        ft_buf_append(&c->text, ev->text, ev->text_len);
    if (ev->kind == FT_INFER_TOKEN) {
        if (g->logprobs) {
            if (!c->logprobs)
                c->logprobs = json_array();
            if (g->chat)
                json_array_append_new(c->logprobs, chat_logprob(g->tok, ev->token));
            else
                json_array_append_new(c->logprobs, json_pack("{s:i, s:f}", "id", ev->token->id, "lp",
                                                             (double)ev->token->logprob));
        }
        if (g->stream)
            stream_chunk(g, r->i, ev->text, ev->text_len, ev->token, NULL);
    } else {
        c->done = true;
        c->finish = ev->finish;
        c->completion = ev->completion_tokens;
        if (ev->finish == FT_INFER_ERROR && ev->err) {
            c->failed = true;
            c->err = *ev->err;
        }
        g->prompt_tokens = ev->prompt_tokens;
        g->n_done++;
        if (g->stream && ev->finish != FT_INFER_CANCELLED) {
            if (c->failed) {
                json_t *e = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", c->err.msg, "type",
                                      "server_error", "param", "code");
                sse_data(g, e);
            } else {
                stream_chunk(g, r->i, ev->text, ev->text_len, NULL, finish_name(ev->finish));
            }
        }
        if (g->stream && g->n_done == g->n && !g->finished_stream) {
            if (g->include_usage) {
                json_t *u = chunk_base(g);
                json_object_set_new(u, "choices", json_array());
                json_object_set_new(u, "usage", usage_json(g));
                sse_data(g, u);
            }
            ft_buf_appendf(&g->pending, "data: [DONE]\n\n");
            g->finished_stream = true;
        }
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (ev->kind == FT_INFER_DONE) {
        ft_free(r);
        gen_unref(g);
    }
}

static void cancel_all(gen *g) {
    for (int64_t i = 0; i < g->n; i++)
        if (g->ch[i].id)
            ft_infer_cancel(g->mdl->e, g->ch[i].id);
}

/* ---------------------------------------------------------------- streaming body */

static ssize_t stream_read(void *cls, char *buf, size_t max) {
    gen *g = cls;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        if (g->sent < g->pending.len) {
            size_t n = g->pending.len - g->sent;
            if (n > max)
                n = max;
            memcpy(buf, g->pending.data + g->sent, n);
            g->sent += n;
            if (g->sent == g->pending.len)
                g->pending.len = g->sent = 0;
            g->last_write = ft_time_now();
            pthread_mutex_unlock(&g->mu);
            return (ssize_t)n;
        }
        if (g->finished_stream || g->n_done == g->n) {
            pthread_mutex_unlock(&g->mu);
            return -1; /* end of stream */
        }
        if (atomic_load(&g->ctx->stopping) || client_gone(g->fd)) {
            pthread_mutex_unlock(&g->mu);
            cancel_all(g);
            return -2;
        }
        if (ft_time_now() - g->last_write > g->ctx->v1->ping_s) { /* keep proxies and clients from timing out */
            ft_buf_appendf(&g->pending, ": ping\n\n");
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
}

static void stream_free(void *cls) {
    gen *g = cls;
    cancel_all(g); /* a no-op for finished choices; stops the rest when the client went away */
    gen_unref(g);
}

/* ---------------------------------------------------------------- the completion routes */

static void generate(srv_ctx *c, const srv_request *rq, srv_response *rs, bool chat) {
    int route = chat ? R_CHAT : R_COMPLETIONS;
    if (strcmp(rq->method, "POST")) {
        v1_error(rs, 405, "invalid_request_error", NULL, "method_not_allowed", "use POST");
        count(c, route, 405);
        return;
    }
    const char *ct = rq->content_type;
    if (!ct || strncasecmp(ct, "application/json", 16) || (ct[16] && ct[16] != ';' && ct[16] != ' ')) {
        v1_error(rs, 415, "invalid_request_error", NULL, "unsupported_media_type",
                 "send the request body as JSON with Content-Type: application/json");
        count(c, route, 415);
        return;
    }
    v1_req q;
    json_t *body = NULL;
    if (!parse_req(rq, chat, &q, &body, rs)) {
        json_decref(q.messages);
        json_decref(body);
        count(c, route, rs->status);
        return;
    }
    v1_model *mdl = model_acquire(c, q.model, rs);
    if (!mdl) {
        json_decref(q.messages);
        json_decref(body);
        count(c, route, rs->status);
        return;
    }
    ft_err err;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    ft_status st;
    if (chat)
        st = ft_infer_chat_ids(mdl->e, q.messages, &ids, &n_ids, &err);
    else
        st = ft_gen_prompt_ids(ft_infer_generator(mdl->e), q.prompt, false, &ids, &n_ids, &err);
    if (st != FT_OK) {
        BAD(rs, chat ? "messages" : "prompt", "the prompt could not be built: %s", err.msg);
        ft_free(ids);
        model_release(c, mdl);
        json_decref(q.messages);
        json_decref(body);
        count(c, route, 400);
        return;
    }
    int64_t ctx = ft_infer_get_params(mdl->e)->max_context;
    if ((int64_t)n_ids >= ctx) {
        v1_error(rs, 400, "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded",
                 "This model's maximum context length is %lld tokens; the prompt has %zu tokens", (long long)ctx,
                 n_ids);
        ft_free(ids);
        model_release(c, mdl);
        json_decref(q.messages);
        json_decref(body);
        count(c, route, 400);
        return;
    }
    gen *g = ft_calloc(1, sizeof *g);
    FT_ASSERT(g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->refs = 1;
    g->ctx = c;
    g->mdl = mdl;
    g->tok = mdl->tok;
    g->chat = chat, g->stream = q.stream, g->include_usage = q.include_usage, g->logprobs = q.logprobs;
    g->n = q.n;
    g->created = (int64_t)time(NULL);
    g->prompt_tokens = (int64_t)n_ids;
    g->fd = rq->fd;
    g->last_write = ft_time_now();
    rand_id(g->id, sizeof g->id, chat ? "chatcmpl-" : "cmpl-");
    snprintf(g->model, sizeof g->model, "%s", q.model);
    uint64_t seed = q.has_seed ? q.seed : ((uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull) ^ (uint64_t)(uintptr_t)g;
    int status = 200;
    for (int64_t i = 0; i < q.n; i++) {
        ft_infer_request r = ft_infer_default_request();
        r.prompt = ids, r.n_prompt = n_ids;
        r.max_tokens = q.max_tokens;
        r.sampling = q.sampling;
        r.presence_penalty = q.presence, r.frequency_penalty = q.frequency, r.repetition_penalty = q.repetition;
        r.seed = seed + (uint64_t)i;
        r.turn_stops = chat;
        for (size_t k = 0; k < q.n_stop; k++)
            r.stop[k] = q.stop[k];
        r.n_stop = q.n_stop;
        r.top_logprobs = q.top_logprobs;
        r.json = q.json;
        r.json_schema = q.schema;
        r.json_strict = q.strict;
        choice_ref *ref = ft_calloc(1, sizeof *ref);
        FT_ASSERT(ref);
        ref->g = g, ref->i = i;
        r.cb = on_event, r.user = ref;
        pthread_mutex_lock(&g->mu);
        g->refs++;
        pthread_mutex_unlock(&g->mu);
        if (ft_infer_submit(mdl->e, &r, &g->ch[i].id, &err) != FT_OK) {
            ft_free(ref);
            pthread_mutex_lock(&g->mu);
            g->refs--;
            pthread_mutex_unlock(&g->mu);
            status = err.code == FT_ERR_LIMIT ? 429 : 400;
            break;
        }
    }
    ft_free(ids);
    json_decref(q.messages);
    json_decref(body);
    if (status != 200) {
        cancel_all(g);
        if (status == 429) {
            v1_error(rs, 429, "rate_limit_exceeded", NULL, "rate_limit_exceeded", "%s; retry after a second", err.msg);
            rs->retry_after = 1;
        } else {
            BAD(rs, NULL, "%s", err.msg);
        }
        gen_unref(g);
        count(c, route, status);
        return;
    }
    if (q.stream) {
        rs->kind = SRV_RESP_STREAM;
        rs->status = 200;
        rs->content_type = "text/event-stream";
        rs->stream_read = stream_read;
        rs->stream_free = stream_free;
        rs->stream_cls = g;
        count(c, route, 200);
        return;
    }
    /* wait for every choice, watching the client */
    pthread_mutex_lock(&g->mu);
    bool gone = false;
    while (g->n_done < g->n) {
        if (!gone && (client_gone(g->fd) || atomic_load(&c->stopping))) {
            gone = true;
            pthread_mutex_unlock(&g->mu);
            cancel_all(g);
            pthread_mutex_lock(&g->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
    if (gone) {
        v1_error(rs, 499, "invalid_request_error", NULL, "client_closed", "the client closed the connection");
        gen_unref(g);
        count(c, route, 499);
        return;
    }
    for (int64_t i = 0; i < g->n; i++)
        if (g->ch[i].failed) {
            v1_error(rs, 500, "server_error", NULL, NULL, "generation failed: %s", g->ch[i].err.msg);
            gen_unref(g);
            count(c, route, 500);
            return;
        }
    json_t *choices = json_array();
    for (int64_t i = 0; i < g->n; i++) {
        choice *ch = &g->ch[i];
        json_t *text = json_stringn(ch->text.data ? ch->text.data : "", ch->text.len);
        if (!text)
            text = json_string("");
        json_t *o;
        if (chat) {
            json_t *lp = q.logprobs ? json_pack("{s:o}", "content", ch->logprobs ? json_incref(ch->logprobs)
                                                                                  : json_array())
                                    : json_null();
            o = json_pack("{s:I, s:{s:s, s:o, s:n}, s:o, s:s}", "index", (json_int_t)i, "message", "role",
                          "assistant", "content", text, "refusal", "logprobs", lp, "finish_reason",
                          finish_name(ch->finish));
        } else {
            json_t *lp = json_null();
            if (q.logprobs) { /* the legacy shape: tokens, token_logprobs, top_logprobs, text_offset */
                json_t *toks = json_array(), *lps = json_array(), *offs = json_array(), *tops = json_array();
                size_t k, off = 0;
                json_t *x;
                json_array_foreach(ch->logprobs, k, x) {
                    int32_t id = (int32_t)json_integer_value(json_object_get(x, "id"));
                    char *t = NULL;
                    size_t tn = 0;
                    ft_tok_decode(g->tok, &id, 1, false, &t, &tn, NULL);
                    json_t *ts = json_stringn(t ? t : "", tn);
                    json_array_append_new(toks, ts ? ts : json_string(""));
                    json_array_append_new(lps, json_real(json_real_value(json_object_get(x, "lp"))));
                    json_array_append_new(offs, json_integer((json_int_t)off));
                    json_array_append_new(tops, json_null());
                    off += tn;
                    ft_free(t);
                }
                lp = json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops,
                               "text_offset", offs);
            }
            o = json_pack("{s:I, s:o, s:o, s:s}", "index", (json_int_t)i, "text", text, "logprobs", lp,
                          "finish_reason", finish_name(ch->finish));
        }
        json_array_append_new(choices, o);
    }
    json_t *resp = json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:o}", "id", g->id, "object",
                             chat ? "chat.completion" : "text_completion", "created", (json_int_t)g->created, "model",
                             g->model, "system_fingerprint", "ftune-" FTUNE_VERSION, "choices", choices, "usage",
                             usage_json(g));
    srv_json(rs, 200, resp);
    gen_unref(g);
    count(c, route, 200);
}

/* ---------------------------------------------------------------- /metrics */

static void hist_text(ft_buf *b, const char *name, const char *labels, const ft_infer_hist *h, bool counts) {
    uint64_t cum = 0;
    for (int i = 0; i < FT_INFER_HIST; i++) {
        cum += h->count[i];
        if (counts && ft_infer_hist_bounds[i] < 1)
            continue;
        ft_buf_appendf(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, ft_infer_hist_bounds[i],
                       (unsigned long long)cum);
    }
    cum += h->count[FT_INFER_HIST];
    ft_buf_appendf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels,
                   (unsigned long long)cum, name, labels, h->sum, name, labels, (unsigned long long)h->n);
}

static void metrics(srv_ctx *c, srv_response *rs) {
    srv_v1 *v = c->v1;
    ft_buf b = {0};
    static const char *routes[R_COUNT] = {"chat_completions", "completions", "models", "other"};
    static const char *classes[6] = {"1xx", "2xx", "3xx", "4xx", "5xx", "cancelled"};
    ft_buf_appendf(&b, "# HELP ftune_v1_requests_total Requests to /v1 by route and status class.\n"
                       "# TYPE ftune_v1_requests_total counter\n");
    pthread_mutex_lock(&v->mu);
    for (int r = 0; r < R_COUNT; r++)
        for (int k = 0; k < 6; k++)
            if (v->requests[r][k] || k == 1)
                ft_buf_appendf(&b, "ftune_v1_requests_total{route=\"%s\",status=\"%s\"} %llu\n", routes[r],
                               classes[k], (unsigned long long)v->requests[r][k]);
    ft_buf_appendf(&b, "# HELP ftune_model_unloads_total Models unloaded to make room.\n"
                       "# TYPE ftune_model_unloads_total counter\nftune_model_unloads_total %llu\n",
                   (unsigned long long)v->unloads);
    ft_buf_appendf(&b, "# HELP ftune_model_pressure_unloads_total Idle models unloaded because memory was short.\n"
                       "# TYPE ftune_model_pressure_unloads_total counter\nftune_model_pressure_unloads_total %llu\n",
                   (unsigned long long)v->pressure_unloads);
    static const char *gauges[][2] = {
        {"ftune_requests_total", "counter"},          {"ftune_prompt_tokens_total", "counter"},
        {"ftune_completion_tokens_total", "counter"}, {"ftune_engine_steps_total", "counter"},
        {"ftune_queue_depth", "gauge"},               {"ftune_running_sequences", "gauge"},
        {"ftune_kv_slots_used", "gauge"},             {"ftune_kv_slots", "gauge"},
        {"ftune_kv_tokens_used", "gauge"},            {"ftune_kv_tokens", "gauge"},
        {"ftune_batch_size", "gauge"},
    };
    const size_t NG = sizeof gauges / sizeof *gauges;
    ft_infer_stats st[16];
    char names[16][512];
    size_t nm = 0;
    for (v1_model *m = v->models; m && nm < 16; m = m->next)
        if (m->e) {
            ft_infer_get_stats(m->e, &st[nm]);
            snprintf(names[nm], sizeof names[nm], "%s", m->id);
            nm++;
        }
    pthread_mutex_unlock(&v->mu);
    for (size_t gi = 0; gi < NG; gi++) {
        ft_buf_appendf(&b, "# TYPE %s %s\n", gauges[gi][0], gauges[gi][1]);
        for (size_t i = 0; i < nm; i++) {
            const ft_infer_stats *s = &st[i];
            double val[] = {(double)s->requests,     (double)s->prompt_tokens, (double)s->completion_tokens,
                            (double)s->steps,        (double)s->queued,        (double)s->running,
                            (double)s->slots_used,   (double)s->slots,         (double)s->kv_tokens_used,
                            (double)s->kv_tokens,    (double)s->last_batch};
            ft_buf_appendf(&b, "%s{model=\"%s\"} %.0f\n", gauges[gi][0], names[i], val[gi]);
        }
    }
    static const char *hists[3][2] = {{"ftune_time_to_first_token_seconds", "Submit to first token."},
                                      {"ftune_inter_token_latency_seconds", "Between consecutive tokens."},
                                      {"ftune_step_batch_size", "Sequences per engine step."}};
    for (int h = 0; h < 3; h++) {
        ft_buf_appendf(&b, "# HELP %s %s\n# TYPE %s histogram\n", hists[h][0], hists[h][1], hists[h][0]);
        for (size_t i = 0; i < nm; i++) {
            char labels[600];
            snprintf(labels, sizeof labels, "model=\"%s\"", names[i]);
            hist_text(&b, hists[h][0], labels, h == 0 ? &st[i].ttft : h == 1 ? &st[i].itl : &st[i].batch, h == 2);
        }
    }
    rs->kind = SRV_RESP_BODY;
    rs->status = 200;
    rs->content_type = "text/plain; version=0.0.4";
    rs->body = b;
}

/* ---------------------------------------------------------------- routing */

void srv_v1_handle(srv_ctx *c, const srv_request *rq, srv_response *rs) {
    const char *path = rq->path;
    if (!strcmp(path, "/metrics")) {
        if (strcmp(rq->method, "GET"))
            return v1_error(rs, 405, "invalid_request_error", NULL, "method_not_allowed", "use GET");
        return metrics(c, rs);
    }
    if (!strcmp(path, "/v1/chat/completions"))
        return generate(c, rq, rs, true);
    if (!strcmp(path, "/v1/completions"))
        return generate(c, rq, rs, false);
    if (!strcmp(path, "/v1/models") || !strncmp(path, "/v1/models/", 11)) {
        if (strcmp(rq->method, "GET")) {
            count(c, R_MODELS, 405);
            return v1_error(rs, 405, "invalid_request_error", NULL, "method_not_allowed", "use GET");
        }
        ft_err err;
        json_t *data = models_list(c, &err);
        if (!data) {
            count(c, R_MODELS, 500);
            return v1_error(rs, 500, "server_error", NULL, NULL, "the registry could not be read: %s", err.msg);
        }
        if (path[10] == '/') {
            const char *id = path + 11;
            size_t i;
            json_t *m;
            json_array_foreach(data, i, m) if (!strcmp(json_string_value(json_object_get(m, "id")), id)) {
                json_t *one = json_incref(m);
                json_decref(data);
                count(c, R_MODELS, 200);
                return srv_json(rs, 200, one);
            }
            json_decref(data);
            count(c, R_MODELS, 404);
            return v1_error(rs, 404, "invalid_request_error", "model", "model_not_found",
                            "The model `%.300s` does not exist (GET /v1/models lists them)", id);
        }
        count(c, R_MODELS, 200);
        return srv_json(rs, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
    }
    count(c, R_OTHER, 404);
    v1_error(rs, 404, "invalid_request_error", NULL, "unknown_url", "Unknown request URL: %s %.200s", rq->method,
             path);
}
