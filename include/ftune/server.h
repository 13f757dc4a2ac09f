/* ftune/server.h: `ftune serve` (SPEC §6b): one HTTP daemon (libmicrohttpd) serving the web UI at
 * `/`, the REST API under `/api/`, the OpenAI-compatible inference under `/v1/` with `/metrics`
 * (src/server/v1.c), and `/health`. Implemented in src/server/.
 *
 * Security: the daemon binds loopback by default. Any other address needs a bearer token (start
 * fails without one); with a token every route except `/health` and the static UI files needs
 * `Authorization: Bearer <token>` (compared in constant time). Without a token, requests whose
 * Host header is not a loopback name are refused (DNS rebinding), and requests that change state
 * must carry `Content-Type: application/json` (a cross-site form cannot send it without a CORS
 * preflight, which the server never grants).
 *
 * The API's lists are `{"data": [...]}`; errors are `{"error": {"code", "message", "field"?,
 * "location"?}}` with the HTTP status that fits. The OpenAPI document is at /api/openapi.json. */
#ifndef FTUNE_SERVER_H
#define FTUNE_SERVER_H

#include "ftune/base.h"

typedef struct ft_server ft_server;

typedef struct ft_server_params {
    const char *host;  /* address to bind (default "127.0.0.1"; "::1", "localhost", "0.0.0.0", ...) */
    int port;          /* default 8080; 0: any free port (ft_server_port says which) */
    const char *token; /* bearer token; NULL or "": none (then only loopback may be bound) */
    int workers;       /* runs the server executes at once (default 1) */
    size_t max_body;   /* largest request body accepted, bytes (default 1 MiB) */
    const char *home;  /* $FTUNE_HOME to serve (NULL: the environment's) */
    double poll_s;     /* how often event streams look for new events (default 0.25 s) */
    /* The ftune binary. With it the server supervises `ftune worker --workers N` (the run
     * service's worker, ftune/runs.h: queued runs execute, runs whose process died resume; on stop
     * the running runs checkpoint and stay resumable). Runs are created, cancelled and deleted
     * in the server through the run service, as the CLI does. NULL: a server that executes no
     * runs (creating and resuming answer 501; cancel and delete still work). */
    const char *exe;
    double stop_grace_s; /* how long the worker may take to checkpoint when stopping (default 300 s) */
    /* /v1 (OpenAI-compatible inference, docs/serve.md): models loaded at start (folders, hub ids
     * or registered names, served under the name given), sequences decoding at once per model
     * (default 8), and how many models stay loaded before the least recently used idle one is
     * unloaded (default 2). */
    const char *const *models;
    size_t n_models;
    int64_t infer_slots;
    int64_t max_loaded_models;
    /* /v1 streams send an SSE comment (`: ping`) when nothing else was sent for ping_s seconds
     * (default 5), e.g. while a request waits in the queue or its prompt is prefilled. */
    double ping_s;
    /* Memory pressure: every memory_check_s (default 1 s) the machine's available memory is read
     * (memory_available, NULL: MemAvailable and the cgroup limit, ft_memplan_machine_read; tests
     * put a fake here) and, while it is below memory_low bytes (default: 5% of MemTotal, at least
     * 512 MiB), the least recently used idle model that is not a --model preload is unloaded, one
     * per check. A model in use by a request is never unloaded. */
    double memory_check_s;
    uint64_t memory_low;
    uint64_t (*memory_available)(void *user);
    void *memory_user;
} ft_server_params;

void ft_server_default_params(ft_server_params *p);

/* Whether `host` names a loopback address (127.0.0.0/8, ::1, "localhost"). */
bool ft_server_host_is_loopback(const char *host);

/* Bind and start serving in background threads. FT_ERR_INVALID when a non-loopback host has no
 * token; FT_ERR_IO when the address cannot be bound. Stop and free with ft_server_stop. */
ft_status ft_server_start(const ft_server_params *p, ft_server **out, ft_err *err);
/* The port it listens on (the chosen one when params.port was 0). */
int ft_server_port(const ft_server *s);
/* Stop: event streams end, open requests finish, the daemon closes. NULL is a no-op. */
void ft_server_stop(ft_server *s);

#endif
