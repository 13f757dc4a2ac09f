/* server/server.c: the HTTP daemon of `ftune serve` on libmicrohttpd: binding (loopback unless a
 * token is given), reading requests into srv_request (headers, query, a size-limited body),
 * sending srv_response, and Server-Sent Event streams of a run's events.
 *
 * Threads: one per connection (MHD_USE_THREAD_PER_CONNECTION), so an event stream may block in
 * its content reader, polling the store, without holding up other clients. Shutdown sets
 * `stopping`; each stream notices within one poll interval and ends, then MHD joins the
 * connection threads. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ftune/store.h"
#include "server_internal.h"

struct ft_server {
    struct MHD_Daemon *d;
    srv_ctx ctx;
    int port;
    pthread_t supervisor;
    bool supervising;
};

void ft_server_default_params(ft_server_params *p) {
    memset(p, 0, sizeof *p);
    p->host = "127.0.0.1";
    p->port = 8080;
    p->workers = 1;
    p->max_body = 1 << 20;
    p->poll_s = 0.25;
    p->stop_grace_s = 300;
}

bool ft_server_host_is_loopback(const char *host) {
    if (!host || !*host)
        return false;
    if (!strcasecmp(host, "localhost") || !strcasecmp(host, "localhost."))
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&a6))
            return a6.s6_addr[12] == 127;
    }
    return false;
}

/* ---------------------------------------------------------------- one request */

typedef struct conn {
    ft_buf body;
    bool too_large;
} conn;

typedef struct query_collect {
    srv_request *rq;
} query_collect;

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    srv_request *rq = cls;
    if (rq->n_query == SRV_MAX_QUERY) {
        rq->query_overflow = true;
        return MHD_NO;
    }
    rq->query[rq->n_query].key = key;
    rq->query[rq->n_query].value = value;
    rq->n_query++;
    return MHD_YES;
}

/* The state of one event stream (freed by MHD through sse_free). */
typedef struct sse_state {
    srv_ctx *ctx;
    ft_store *s;
    char run[160];
    int64_t after;
    ft_buf pending;
    size_t sent;
    bool done, opened;
    double last_write;
} sse_state;

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* MHD asks for the next bytes of the stream. In thread-per-connection mode this may block: it
 * waits (polling the store) until there is something to send, a keep-alive comment is due, or
 * the server stops. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    sse_state *st = cls;
    for (;;) {
        if (st->sent < st->pending.len) {
            size_t n = st->pending.len - st->sent;
            if (n > max)
                n = max;
            memcpy(buf, st->pending.data + st->sent, n);
            st->sent += n;
            if (st->sent == st->pending.len)
                st->pending.len = st->sent = 0;
            st->last_write = ft_time_now();
            return (ssize_t)n;
        }
        if (st->done || atomic_load(&st->ctx->stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!st->opened) {
            st->opened = true;
            /* retry: how soon an EventSource reconnects after a dropped connection */
            ft_buf_appendf(&st->pending, "retry: 1000\n\n");
            continue;
        }
        if (!st->s && ft_store_open(st->ctx->db_path, &st->s, NULL) != FT_OK)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        ft_err err;
        if (srv_sse_poll(st->s, st->run, &st->after, &st->pending, &st->done, &err) != FT_OK) {
            if (err.code == FT_ERR_NOT_FOUND) { /* deleted while followed */
                ft_buf_appendf(&st->pending, "event: end\ndata: {\"status\":\"DELETED\"}\n\n");
                st->done = true;
                continue;
            }
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (st->pending.len)
            continue;
        if (ft_time_now() - st->last_write > 15.0) {
            ft_buf_appendf(&st->pending, ": keep-alive\n\n");
            continue;
        }
        sleep_s(st->ctx->poll_s);
    }
}

static void sse_free(void *cls) {
    sse_state *st = cls;
    ft_store_close(st->s);
    ft_buf_free(&st->pending);
    ft_free(st);
}

/* MHD's reader for a SRV_RESP_STREAM body. */
typedef struct stream_box {
    ssize_t (*read)(void *, char *, size_t);
    void (*free)(void *);
    void *cls;
} stream_box;

static ssize_t stream_box_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_box *b = cls;
    ssize_t n = b->read(b->cls, buf, max);
    if (n == -1)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return n;
}

static void stream_box_free(void *cls) {
    stream_box *b = cls;
    b->free(b->cls);
    ft_free(b);
}

static enum MHD_Result send_response(struct MHD_Connection *mc, srv_ctx *ctx, srv_response *rs) {
    struct MHD_Response *r;
    if (rs->kind == SRV_RESP_STREAM) {
        stream_box *b = ft_calloc(1, sizeof *b);
        if (!b)
            return MHD_NO;
        *b = (stream_box){rs->stream_read, rs->stream_free, rs->stream_cls};
        rs->stream_cls = NULL; /* MHD owns it now: stream_box_free runs when the response is done */
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_box_read, b, stream_box_free);
        if (!r) {
            stream_box_free(b);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
    } else if (rs->kind == SRV_RESP_SSE) {
        sse_state *st = ft_calloc(1, sizeof *st);
        if (!st)
            return MHD_NO;
        st->ctx = ctx;
        snprintf(st->run, sizeof st->run, "%s", rs->sse_run);
        st->after = rs->sse_after;
        st->last_write = ft_time_now();
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, st, sse_free);
        if (!r) {
            sse_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
    } else if (rs->static_body) {
        r = MHD_create_response_from_buffer(rs->static_len, (void *)rs->static_body, MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_buffer(rs->body.len, rs->body.data ? rs->body.data : (void *)"",
                                            MHD_RESPMEM_MUST_COPY);
    }
    if (!r)
        return MHD_NO;
    if (rs->content_type)
        MHD_add_response_header(r, "Content-Type", rs->content_type);
    if (rs->cache_control)
        MHD_add_response_header(r, "Cache-Control", rs->cache_control);
    else if (rs->kind == SRV_RESP_BODY)
        MHD_add_response_header(r, "Cache-Control", "no-store");
    if (rs->www_authenticate)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    if (rs->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", rs->retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    /* The UI loads nothing from anywhere else, and no other site may frame it. */
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    enum MHD_Result ret = MHD_queue_response(mc, (unsigned)rs->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    ft_server *srv = cls;
    conn *c = *con_cls;
    if (!c) {
        c = ft_calloc(1, sizeof *c);
        if (!c)
            return MHD_NO;
        *con_cls = c;
        /* A declared body over the limit is refused before it is read. */
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > srv->ctx.max_body) {
            /* Answered before the body is read: MHD then closes the connection. */
            srv_response rs;
            memset(&rs, 0, sizeof rs);
            srv_error(&rs, 413, "too_large", NULL, NULL, "the request body is larger than %zu bytes", srv->ctx.max_body);
            enum MHD_Result ret = send_response(mc, &srv->ctx, &rs);
            srv_response_deinit(&rs);
            return ret;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!c->too_large && c->body.len + *upload_size > srv->ctx.max_body)
            c->too_large = true;
        if (!c->too_large && ft_buf_append(&c->body, upload_data, *upload_size) != FT_OK)
            c->too_large = true;
        *upload_size = 0;
        return MHD_YES;
    }
    srv_request rq;
    memset(&rq, 0, sizeof rq);
    rq.method = method;
    rq.path = url;
    MHD_get_connection_values(mc, MHD_GET_ARGUMENT_KIND, collect_query, &rq);
    rq.authorization = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
    rq.content_type = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Type");
    rq.host_header = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Host");
    rq.last_event_id = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Last-Event-ID");
    rq.body = c->body.data;
    rq.body_len = c->body.len;
    rq.body_too_large = c->too_large;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    rq.fd = ci ? (int)ci->connect_fd : -1;
    srv_response rs;
    srv_handle(&srv->ctx, &rq, &rs);
    enum MHD_Result ret = send_response(mc, &srv->ctx, &rs);
    srv_response_deinit(&rs);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)mc;
    (void)toe;
    conn *c = *con_cls;
    if (c) {
        ft_buf_free(&c->body);
        ft_free(c);
        *con_cls = NULL;
    }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char m[512];
    vsnprintf(m, sizeof m, fmt, ap);
    FT_LOG_DEBUG("http: %s", m);
}

/* ---------------------------------------------------------------- start and stop */

ft_status ft_server_start(const ft_server_params *p, ft_server **out, ft_err *err) {
    *out = NULL;
    const char *host = p->host && *p->host ? p->host : "127.0.0.1";
    bool has_token = p->token && *p->token;
    if (!ft_server_host_is_loopback(host) && !has_token)
        return FT_ERR(err, FT_ERR_INVALID,
                      "binding %s (not loopback) needs a token: give --token-file FILE, so that only clients "
                      "with the token reach the API", host);
    if (p->port < 0 || p->port > 65535)
        return FT_ERR(err, FT_ERR_INVALID, "port %d: must be 0..65535", p->port);
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gr = getaddrinfo(!strcasecmp(host, "localhost") ? "127.0.0.1" : host, port, &hints, &ai);
    if (gr != 0 || !ai)
        return FT_ERR(err, FT_ERR_INVALID, "host %s: %s", host, gai_strerror(gr));
    /* A loopback-only server must not reach other addresses through a name that resolves elsewhere. */
    char numeric[INET6_ADDRSTRLEN] = "";
    getnameinfo(ai->ai_addr, ai->ai_addrlen, numeric, sizeof numeric, NULL, 0, NI_NUMERICHOST);
    if (!has_token && !ft_server_host_is_loopback(numeric)) {
        freeaddrinfo(ai);
        return FT_ERR(err, FT_ERR_INVALID, "%s resolves to %s, which is not loopback: give --token-file FILE", host,
                      numeric);
    }
    ft_server *s = ft_calloc(1, sizeof *s);
    if (!s) {
        freeaddrinfo(ai);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    ft_status st = srv_ctx_init(&s->ctx, p, err);
    if (st != FT_OK) {
        freeaddrinfo(ai);
        srv_ctx_deinit(&s->ctx);
        ft_free(s);
        return st;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)512,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)0, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)120, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        srv_ctx_deinit(&s->ctx);
        ft_free(s);
        return FT_ERR(err, FT_ERR_IO, "cannot listen on %s port %d (in use, or not an address of this machine)",
                      host, p->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : p->port;
    if (s->ctx.exe && pthread_create(&s->supervisor, NULL, srv_supervise, &s->ctx) == 0)
        s->supervising = true;
    *out = s;
    return FT_OK;
}

int ft_server_port(const ft_server *s) { return s->port; }

void ft_server_stop(ft_server *s) {
    if (!s)
        return;
    atomic_store(&s->ctx.stopping, true);
    /* The worker first: its running run checkpoints and stops (resumable); the API keeps
     * answering meanwhile. */
    if (s->supervising)
        pthread_join(s->supervisor, NULL);
    /* Wait for the connection threads: event streams end within a poll interval. */
    MHD_stop_daemon(s->d);
    srv_ctx_deinit(&s->ctx);
    ft_free(s);
}
