/* tests/fuzz/fuzz_server_request.c: libFuzzer target for `ftune serve`'s router and JSON bodies.
 * The input is "METHOD PATH?QUERY\nHEADER-LINES\n\nBODY": the request line and query are split
 * as the HTTP layer does, the body goes to the route as is. Any response must be well-formed:
 * a status in 200..599 and, for JSON, a body that parses (errors with {"error": {code,
 * message}}). File names in validation bodies are redirected to one small data file, so the
 * fuzzer exercises parsing and checking, not the machine's file system. Build: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftune/store.h"
#include "server/server_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static srv_ctx g_ctx;
static char g_data[256];
static char g_home[64];
static bool g_ready;

static void cleanup(void) {
    ft_rm_rf(g_home, NULL);
}

static void setup(void) {
    char home[] = "/tmp/ftune-fuzz-server-XXXXXX";
    if (!mkdtemp(home))
        abort();
    snprintf(g_home, sizeof g_home, "%s", home);
    atexit(cleanup);
    ft_server_params p;
    ft_server_default_params(&p);
    p.home = home;
    p.max_body = 1 << 16;
    if (srv_ctx_init(&g_ctx, &p, NULL) != FT_OK)
        abort();
    snprintf(g_data, sizeof g_data, "%s/d.jsonl", home);
    const char *rows = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n"
                       "{\"messages\": 1}\n";
    ft_file_write_atomic(g_data, rows, strlen(rows), NULL);
    /* one run with events and metrics for the read routes */
    ft_store *s;
    if (ft_store_open(g_ctx.db_path, &s, NULL) != FT_OK)
        abort();
    ft_run r = {0};
    r.name = (char *)"run-a";
    r.config_json = (char *)"{}";
    ft_store_run_create(s, &r, NULL);
    const char *n[] = {"loss"};
    double v[] = {1.0};
    ft_store_metrics_add(s, "run-a", 1, n, v, 1, NULL);
    ft_store_close(s);
    g_ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_ready)
        setup();
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = 0;
    srv_request rq;
    memset(&rq, 0, sizeof rq);
    /* request line */
    char *nl = strchr(in, '\n');
    char *rest = nl ? nl + 1 : in + strlen(in);
    if (nl)
        *nl = 0;
    char *sp = strchr(in, ' ');
    if (!sp) {
        free(in);
        return 0;
    }
    *sp = 0;
    rq.method = in;
    rq.path = sp + 1;
    char *q = strchr(sp + 1, '?');
    if (q) {
        *q++ = 0;
        for (char *kv = strtok(q, "&"); kv; kv = strtok(NULL, "&")) {
            if (rq.n_query == SRV_MAX_QUERY) {
                rq.query_overflow = true;
                break;
            }
            char *eq = strchr(kv, '=');
            if (eq)
                *eq++ = 0;
            rq.query[rq.n_query++] = (srv_kv){kv, eq};
        }
    }
    /* headers until an empty line */
    while (*rest && *rest != '\n') {
        char *e = strchr(rest, '\n');
        char *next = e ? e + 1 : rest + strlen(rest);
        if (e)
            *e = 0;
        char *colon = strchr(rest, ':');
        if (colon) {
            *colon = 0;
            const char *v = colon + 1 + (colon[1] == ' ');
            if (!strcasecmp(rest, "authorization"))
                rq.authorization = v;
            else if (!strcasecmp(rest, "content-type"))
                rq.content_type = v;
            else if (!strcasecmp(rest, "host"))
                rq.host_header = v;
            else if (!strcasecmp(rest, "last-event-id"))
                rq.last_event_id = v;
        }
        rest = next;
    }
    if (*rest == '\n')
        rest++;
    /* the body, with file names redirected */
    size_t blen = size - (size_t)(rest - in);
    char *body = NULL;
    json_t *j = json_loadb(rest, blen, JSON_REJECT_DUPLICATES, NULL);
    static const char *const file_keys[] = {"path", "train_data_path", "eval_data_path", "model",
                                            "custom_weights_path", "experiment_path"};
    if (json_is_object(j)) {
        for (size_t k = 0; k < sizeof file_keys / sizeof *file_keys; k++)
            if (json_is_string(json_object_get(j, file_keys[k])))
                json_object_set_new(j, file_keys[k], json_string(k == 3 ? "/nonexistent-model" : g_data));
        body = json_dumps(j, 0);
    }
    json_decref(j);
    rq.body = body ? body : rest;
    rq.body_len = body ? strlen(body) : blen;
    rq.body_too_large = rq.body_len > g_ctx.max_body;
    srv_response rs;
    srv_handle(&g_ctx, &rq, &rs);
    if (rs.status < 200 || rs.status > 599)
        __builtin_trap();
    if (rs.kind == SRV_RESP_BODY && rs.content_type && !strcmp(rs.content_type, "application/json") &&
        !rs.static_body) {
        json_t *out = json_loadb(rs.body.data, rs.body.len, 0, NULL);
        if (!out)
            __builtin_trap();
        if (rs.status >= 400) {
            json_t *e = json_object_get(out, "error");
            if (!json_is_string(json_object_get(e, "code")) || !json_is_string(json_object_get(e, "message")))
                __builtin_trap();
        }
        json_decref(out);
    }
    srv_response_deinit(&rs);
    free(body);
    free(in);
    return 0;
}
