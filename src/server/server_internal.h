/* server/server_internal.h: what the files of src/server share. The router (api.c) works on a
 * plain request and response, apart from libmicrohttpd (server.c), so that the fuzz target and
 * the unit tests drive it directly. */
#ifndef FTUNE_SERVER_INTERNAL_H
#define FTUNE_SERVER_INTERNAL_H

#include <jansson.h>
#include <stdatomic.h>

#include "ftune/server.h"

typedef struct srv_kv {
    const char *key, *value;
} srv_kv;

#define SRV_MAX_QUERY 32

typedef struct srv_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* decoded path, without the query */
    srv_kv query[SRV_MAX_QUERY];
    size_t n_query;
    bool query_overflow;         /* more parameters than SRV_MAX_QUERY */
    const char *authorization;   /* header or NULL */
    const char *content_type;    /* header or NULL */
    const char *host_header;     /* header or NULL */
    const char *last_event_id;   /* header or NULL */
    const char *body;
    size_t body_len;
    bool body_too_large;
    int fd; /* the connection's socket (to notice a client that went away); 0 or -1: unknown */
} srv_request;

typedef enum srv_kind {
    SRV_RESP_BODY = 0, /* status + body */
    SRV_RESP_SSE,      /* an event stream of run `sse_run` after `sse_after` */
    SRV_RESP_STREAM,   /* a body made by stream_read (v1.c's completion streams) */
} srv_kind;

typedef struct srv_response {
    srv_kind kind;
    int status;
    const char *content_type;
    ft_buf body;
    const void *static_body; /* when set: not owned, served instead of body */
    size_t static_len;
    const char *cache_control;
    bool www_authenticate;
    char sse_run[160];
    int64_t sse_after;
    int retry_after; /* seconds for a Retry-After header; 0: none */
    /* SRV_RESP_STREAM: read fills buf (blocking until there is something) and returns the bytes,
     * -1 at the end, -2 on an error; free is called once when the response is done (also when
     * it is never sent). */
    ssize_t (*stream_read)(void *cls, char *buf, size_t max);
    void (*stream_free)(void *cls);
    void *stream_cls;
} srv_response;

/* The daemon's state the router reads. */
typedef struct srv_ctx {
    char *home;       /* $FTUNE_HOME */
    char *db_path;    /* home/ftune.db */
    char *token;      /* NULL: none */
    size_t max_body;
    int workers;
    double poll_s;
    char *exe;           /* the ftune binary for the worker; NULL: none */
    double stop_grace_s; /* how long a stopping worker may take to checkpoint */
    atomic_bool stopping;
    atomic_int_least64_t worker_pid; /* the supervised worker, 0 when none */
    struct srv_v1 *v1;               /* /v1: loaded models and counters (v1.c) */
} srv_ctx;

/* The supervisor thread: keeps `exe worker` running until c->stopping, then stops it. */
void *srv_supervise(void *arg);

ft_status srv_ctx_init(srv_ctx *c, const ft_server_params *p, ft_err *err);
void srv_ctx_deinit(srv_ctx *c);

/* Route one request. Fills *rs (caller frees with srv_response_deinit). Never fails: errors are
 * responses. */
void srv_handle(srv_ctx *c, const srv_request *rq, srv_response *rs);
void srv_response_deinit(srv_response *rs);

/* Set rs to a JSON error {"error": {code, message, field?, location?}}. */
void srv_error(srv_response *rs, int status, const char *code, const char *field, const ft_err *loc,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Set rs to `j` (stolen) as JSON with `status`. */
void srv_json(srv_response *rs, int status, json_t *j);

/* The event stream: the text to send after `*after` (events of run `name` as SSE frames, `id:`
 * = seq), advancing *after; *done when the run is final and every event is out. The store is
 * opened by the caller (one connection per stream). */
typedef struct ft_store ft_store;
ft_status srv_sse_poll(ft_store *s, const char *name, int64_t *after, ft_buf *out, bool *done, ft_err *err);

/* /v1 and /metrics (v1.c). srv_v1_new loads the params' --model preloads (registry names
 * through c's store). */
typedef struct srv_v1 srv_v1;
ft_status srv_v1_new(const srv_ctx *c, const ft_server_params *p, srv_v1 **out, ft_err *err);
void srv_v1_free(srv_v1 *v);
void srv_v1_handle(srv_ctx *c, const srv_request *rq, srv_response *rs);
/* The 401 of a /v1 route in OpenAI's error shape. */
void srv_v1_auth_error(srv_response *rs, bool had_header);

/* Embedded static files (assets.c): NULL when there is none at `path`. */
typedef struct srv_asset {
    const char *path;
    const char *content_type;
    const unsigned char *data;
    size_t len;
} srv_asset;
const srv_asset *srv_asset_find(const char *path);

/* Constant-time comparison of two strings (time depends only on the length of `given`). */
bool srv_token_equal(const char *given, const char *expected);

#endif
