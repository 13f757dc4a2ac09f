/* tests/server/test_v1.c: the OpenAI-compatible /v1 of `ftune serve` over real HTTP: the routes'
 * shapes and errors (OpenAI's error object, statuses, param), token auth on every /v1 route,
 * /metrics, a client that disconnects mid-generation, a full queue answered 429 with Retry-After,
 * and the real `openai` npm client (tests/server/openai.mjs) for every check of issue #13 item 4. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ftune/server.h"
#include "ftune/store.h"
#include "http_client.h"
#include "test.h"
#include "train/tiny.h"

#define TOKEN "test-token-0123456789abcdef"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"

typedef struct v1_fixture {
    char home[1024];
    ft_server *srv;
    int port;
} v1_fixture;

/* Server settings the next v1_start applies (tests of pings and memory pressure). */
static double g_ping_s, g_check_s;
static uint64_t g_low;
static _Atomic uint64_t g_avail; /* the fake machine's available memory */
static uint64_t fake_available(void *user) {
    (void)user;
    return g_avail;
}

/* A home with the tiny model registered twice as main.demo.tiny, served with a token. */
static bool v1_start(v1_fixture *f, int64_t slots, const char *preload, ft_err *err) {
    memset(f, 0, sizeof *f);
    snprintf(f->home, sizeof f->home, "%s", ft_test_tmpdir());
    char *src = ft_path_join(f->home, "export");
    char *db = ft_path_join(f->home, "ftune.db");
    bool ok = tiny_model_write(src, 4, err) == FT_OK;
    ft_store *s = NULL;
    ok = ok && ft_store_open(db, &s, err) == FT_OK;
    ft_model_version v;
    if (ok && ft_registry_register(s, f->home, "main.demo.tiny", src, NULL, NULL, "{\"final_loss\":1.5}", &v, err) ==
                  FT_OK)
        ft_model_version_deinit(&v);
    else
        ok = false;
    if (ok && ft_registry_register(s, f->home, "main.demo.tiny", src, NULL, NULL, NULL, &v, err) == FT_OK)
        ft_model_version_deinit(&v);
    else
        ok = false;
    ft_store_close(s);
    ft_server_params p;
    ft_server_default_params(&p);
    p.port = 0;
    p.home = f->home;
    p.token = TOKEN;
    p.infer_slots = slots;
    p.ping_s = g_ping_s;
    if (g_low) {
        p.memory_check_s = g_check_s, p.memory_low = g_low;
        p.memory_available = fake_available;
    }
    g_ping_s = g_check_s = 0, g_low = 0;
    const char *models[1] = {preload && !strcmp(preload, "folder") ? src : preload};
    if (preload) {
        p.models = models;
        p.n_models = 1;
    }
    ok = ok && ft_server_start(&p, &f->srv, err) == FT_OK;
    if (ok)
        f->port = ft_server_port(f->srv);
    ft_free(src);
    ft_free(db);
    return ok;
}

static json_t *v1_post(v1_fixture *f, const char *path, const char *body, int *status, char **headers) {
    http_resp r;
    *status = 0;
    if (http(f->port, "POST", path, AUTH "Content-Type: application/json\r\n", body, strlen(body), &r) != 0)
        return NULL;
    *status = r.status;
    json_t *j = json_loadb(r.body, r.body_len, JSON_ALLOW_NUL, NULL);
    if (headers)
        *headers = ft_strdup(r.headers);
    http_resp_free(&r);
    return j;
}

static const char *oa_param(json_t *j) { return json_string_value(json_object_get(json_object_get(j, "error"), "param")); }
static const char *oa_type(json_t *j) { return json_string_value(json_object_get(json_object_get(j, "error"), "type")); }

TEST(v1_routes_shapes_and_errors) {
    v1_fixture f;
    ft_err err;
    REQUIRE(v1_start(&f, 4, NULL, &err));
    int st;
    /* every /v1 route needs the token; the error is OpenAI's shape */
    json_t *j = get_json(f.port, "/v1/models", NULL, &st);
    CHECK_EQ_INT(st, 401);
    CHECK(oa_type(j) && json_object_get(json_object_get(j, "error"), "message"));
    json_decref(j);
    j = get_json(f.port, "/metrics", NULL, &st);
    CHECK_EQ_INT(st, 401);
    json_decref(j);
    /* models: the registry, newest version under the bare name and every version */
    j = get_json(f.port, "/v1/models", AUTH, &st);
    CHECK_EQ_INT(st, 200);
    json_t *data = json_object_get(j, "data");
    CHECK_EQ_INT(json_array_size(data), 3);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "object")), "list");
    bool has_v1 = false;
    size_t i;
    json_t *m;
    json_array_foreach(data, i, m) if (!strcmp(json_string_value(json_object_get(m, "id")), "main.demo.tiny/1")) {
        has_v1 = true;
        CHECK(json_real_value(json_object_get(json_object_get(m, "metrics"), "final_loss")) == 1.5);
    }
    CHECK(has_v1);
    json_decref(j);
    /* a chat completion */
    char *hdr = NULL;
    j = v1_post(&f, "/v1/chat/completions",
                "{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
                "\"max_tokens\": 6, \"temperature\": 0}",
                &st, &hdr);
    CHECK_EQ_INT(st, 200);
    CHECK(hdr && strstr(hdr, "application/json"));
    ft_free(hdr);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(ch, "message"), "role")), "assistant");
    json_t *u = json_object_get(j, "usage");
    CHECK(json_integer_value(json_object_get(u, "total_tokens")) ==
          json_integer_value(json_object_get(u, "prompt_tokens")) +
              json_integer_value(json_object_get(u, "completion_tokens")));
    json_decref(j);
    /* errors: 400 naming the param, 404 model with param "model", 405, bad JSON */
    j = v1_post(&f, "/v1/chat/completions",
                "{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
                "\"temperature\": 3}",
                &st, NULL);
    CHECK_EQ_INT(st, 400);
    CHECK_STR_EQ(oa_param(j), "temperature");
    CHECK_STR_EQ(oa_type(j), "invalid_request_error");
    json_decref(j);
    j = v1_post(&f, "/v1/chat/completions", "{\"model\": \"main.demo.none\", \"messages\": [{\"role\": \"user\", "
                                            "\"content\": \"hi\"}]}", &st, NULL);
    CHECK_EQ_INT(st, 404);
    CHECK_STR_EQ(oa_param(j), "model");
    json_decref(j);
    j = v1_post(&f, "/v1/chat/completions", "{\"model\": \"../../etc\", \"messages\": [{\"role\": \"user\", "
                                            "\"content\": \"hi\"}]}", &st, NULL);
    CHECK_EQ_INT(st, 404);
    json_decref(j);
    static const char *bad[][2] = {
        {"{", NULL},
        {"[]", NULL},
        {"{\"model\": \"main.demo.tiny\"}", "messages"},
        {"{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}",
         "messages[0].role"},
        {"{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": 0}", "n"},
        {"{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_p\": 0}",
         "top_p"},
        {"{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{}]}",
         "tools"},
        {"{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": "
         "2}",
         "top_logprobs"},
        {"{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
         "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"schema\": {\"anyOf\": []}}}}",
         "response_format"},
        {"{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
         "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"schema\": {\"oneOf\": [{}]}}}}",
         "response_format"},
        {"{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
         "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"strict\": true, \"schema\": "
         "{\"type\": \"object\", \"properties\": {\"a\": {}}}}}}",
         "response_format"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        j = v1_post(&f, "/v1/chat/completions", bad[k][0], &st, NULL);
        CHECK_EQ_INT(st, 400);
        if (bad[k][1])
            CHECK_STR_EQ(oa_param(j), bad[k][1]);
        json_decref(j);
    }
    /* completions: a raw prompt, 16 tokens by default */
    j = v1_post(&f, "/v1/completions", "{\"model\": \"main.demo.tiny/1\", \"prompt\": \"abc\", \"temperature\": 0}",
                &st, NULL);
    CHECK_EQ_INT(st, 200);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "object")), "text_completion");
    json_decref(j);
    /* /metrics: Prometheus text with the engine's series */
    http_resp r;
    REQUIRE(http(f.port, "GET", "/metrics", AUTH, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body, "ftune_completion_tokens_total{model=\"main.demo.tiny/2\"}"));
    CHECK(strstr(r.body, "ftune_time_to_first_token_seconds_bucket"));
    CHECK(strstr(r.body, "ftune_kv_slots{model=\"main.demo.tiny/2\"} 4"));
    CHECK(strstr(r.body, "ftune_v1_requests_total{route=\"chat_completions\",status=\"4xx\"}"));
    http_resp_free(&r);
    ft_server_stop(f.srv);
}

/* --model preloads: a registered name is served as its version (listed once, loaded at start);
 * a folder under the name given. A POST that is not JSON is refused (415). */
TEST(v1_preloads) {
    v1_fixture f;
    ft_err err;
    REQUIRE(v1_start(&f, 2, "main.demo.tiny", &err));
    int st;
    json_t *j = get_json(f.port, "/v1/models", AUTH, &st);
    CHECK_EQ_INT(st, 200);
    json_t *data = json_object_get(j, "data");
    CHECK_EQ_INT(json_array_size(data), 3);
    size_t i;
    json_t *m;
    int loaded = 0;
    json_array_foreach(data, i, m) loaded += json_is_true(json_object_get(m, "loaded"));
    CHECK_EQ_INT(loaded, 2); /* main.demo.tiny and main.demo.tiny/2: one engine */
    json_decref(j);
    http_resp r;
    const char *body = "{\"model\": \"main.demo.tiny\", \"prompt\": \"abc\", \"max_tokens\": 2}";
    REQUIRE(http(f.port, "POST", "/v1/completions", AUTH "Content-Type: text/plain\r\n", body, strlen(body), &r) == 0);
    CHECK_EQ_INT(r.status, 415);
    http_resp_free(&r);
    ft_server_stop(f.srv);
    REQUIRE(v1_start(&f, 2, "folder", &err));
    j = get_json(f.port, "/v1/models", AUTH, &st);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "data")), 6); /* versions 1-4 (registered twice more), the bare name, the folder */
    json_decref(j);
    char *req = ft_asprintf("{\"model\": \"%s/export\", \"prompt\": \"abc\", \"max_tokens\": 2}", f.home);
    j = v1_post(&f, "/v1/completions", req, &st, NULL);
    CHECK_EQ_INT(st, 200);
    json_decref(j);
    ft_free(req);
    ft_server_stop(f.srv);
}

/* Models load on first use; with room for one, using another unloads the idle one (and it
 * loads again when asked for). */
TEST(v1_models_load_on_use_and_unload_when_idle) {
    const char *home = ft_test_tmpdir();
    ft_err err;
    char *src = ft_path_join(home, "export"), *db = ft_path_join(home, "ftune.db");
    REQUIRE_OK(tiny_model_write(src, 4, &err), &err);
    ft_store *s = NULL;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    ft_model_version v;
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.a", src, NULL, NULL, NULL, &v, &err), &err);
    ft_model_version_deinit(&v);
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.b", src, NULL, NULL, NULL, &v, &err), &err);
    ft_model_version_deinit(&v);
    ft_store_close(s);
    ft_server_params p;
    ft_server_default_params(&p);
    p.port = 0, p.home = home, p.token = TOKEN, p.infer_slots = 1, p.max_loaded_models = 1;
    v1_fixture f = {0};
    REQUIRE_OK(ft_server_start(&p, &f.srv, &err), &err);
    f.port = ft_server_port(f.srv);
    const char *names[] = {"main.demo.a", "main.demo.b", "main.demo.a"};
    for (int k = 0; k < 3; k++) {
        char *body = ft_asprintf("{\"model\": \"%s\", \"prompt\": \"abc\", \"max_tokens\": 2}", names[k]);
        int st;
        json_t *j = v1_post(&f, "/v1/completions", body, &st, NULL);
        CHECK_EQ_INT(st, 200);
        json_decref(j);
        ft_free(body);
        j = get_json(f.port, "/v1/models", AUTH, &st);
        int loaded = 0;
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(j, "data"), i, m) if (json_is_true(json_object_get(m, "loaded"))) {
            loaded++;
            CHECK(!strncmp(json_string_value(json_object_get(m, "id")), names[k], strlen(names[k])));
        }
        CHECK_EQ_INT(loaded, 2); /* the name and its version: one engine */
        json_decref(j);
    }
    http_resp r;
    REQUIRE(http(f.port, "GET", "/metrics", AUTH, NULL, 0, &r) == 0);
    CHECK(strstr(r.body, "ftune_model_unloads_total 2\n"));
    http_resp_free(&r);
    ft_server_stop(f.srv);
    ft_free(src);
    ft_free(db);
}

/* A stream read to its end: the text of the data lines. */
TEST(v1_stream_shape_and_disconnect) {
    v1_fixture f;
    ft_err err;
    REQUIRE(v1_start(&f, 1, NULL, &err));
    const char *body = "{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
                       "\"max_tokens\": 8, \"seed\": 1, \"stream\": true, \"stream_options\": {\"include_usage\": "
                       "true}}";
    http_resp r;
    REQUIRE(http(f.port, "POST", "/v1/chat/completions", AUTH "Content-Type: application/json\r\n", body,
                 strlen(body), &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.headers, "text/event-stream"));
    CHECK(strstr(r.body, "\"role\":\"assistant\""));
    CHECK(strstr(r.body, "\"finish_reason\":\"length\""));
    CHECK(strstr(r.body, "\"choices\":[],"));
    const char *done = strstr(r.body, "data: [DONE]\n\n");
    CHECK(done && done[14] == 0);
    http_resp_free(&r);
    /* a client that goes away mid-generation: its slot is free again well within a second */
    const char *lbody = "{\"model\": \"main.demo.tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
                        "\"max_tokens\": 200, \"seed\": 1, \"stream\": true}";
    int fd = connect_port(f.port);
    REQUIRE(fd >= 0);
    char *req = ft_asprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" AUTH
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                            strlen(lbody), lbody);
    REQUIRE(send_all(fd, req, strlen(req)));
    ft_free(req);
    char buf[4096];
    ssize_t got = 0;
    while (got <= 0 || !memmem(buf, (size_t)got, "data:", 5)) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        REQUIRE(poll(&pf, 1, 20000) == 1);
        got = read(fd, buf, sizeof buf);
        REQUIRE(got > 0);
    }
    close(fd);
    double t0 = ft_time_now(), freed_after = -1;
    while (ft_time_now() - t0 < 2.0) {
        REQUIRE(http(f.port, "GET", "/metrics", AUTH, NULL, 0, &r) == 0);
        bool free_now = strstr(r.body, "ftune_kv_slots_used{model=\"main.demo.tiny/2\"} 0\n") != NULL;
        http_resp_free(&r);
        if (free_now) {
            freed_after = ft_time_now() - t0;
            break;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "  disconnect: slot free after %.0f ms\n", freed_after * 1000);
    CHECK(freed_after >= 0 && freed_after < 1.0);
    ft_server_stop(f.srv);
}

/* Run a command (a node script), echo its output, return its exit status. */
static int run_echo(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[4096];
    while (fgets(line, sizeof line, p))
        fprintf(stderr, "  %s", line);
    return pclose(p);
}

TEST(v1_openai_client) {
    if (access("tools/npm/node_modules/openai/package.json", R_OK) != 0)
        SKIP("npm openai is missing: `make deps` installs it into tools/npm");
    if (system("node --version >/dev/null 2>&1") != 0)
        SKIP("node is missing: `make deps` installs it");
    v1_fixture f;
    ft_err err;
    REQUIRE(v1_start(&f, 8, NULL, &err));
    char *cmd = ft_asprintf("node tests/server/openai.mjs http://127.0.0.1:%d '%s' main.demo.tiny "
                            "'[\"main.demo.tiny\", \"main.demo.tiny/1\", \"main.demo.tiny/2\"]' 2>&1",
                            f.port, TOKEN);
    CHECK_EQ_INT(run_echo(cmd), 0);
    ft_free(cmd);
    ft_server_stop(f.srv);
}

/* ---------------------------------------------------------------- pings, memory, versions */

typedef struct bg_request {
    v1_fixture *f;
    const char *body;
    int status;
    json_t *reply;
    atomic_bool done;
    pthread_t t;
} bg_request;

static void *bg_run(void *arg) {
    bg_request *b = arg;
    b->reply = v1_post(b->f, "/v1/completions", b->body, &b->status, NULL);
    atomic_store(&b->done, true);
    return NULL;
}

static void bg_start(bg_request *b, v1_fixture *f, const char *body) {
    memset(b, 0, sizeof *b);
    b->f = f, b->body = body;
    pthread_create(&b->t, NULL, bg_run, b);
}

static void bg_join(bg_request *b) {
    pthread_join(b->t, NULL);
    json_decref(b->reply);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Whether /v1/models lists `id` as loaded. */
static bool is_loaded(v1_fixture *f, const char *id) {
    int st;
    json_t *j = get_json(f->port, "/v1/models", AUTH, &st);
    bool loaded = false;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(j, "data"), i, m) if (!strcmp(json_string_value(json_object_get(m, "id")), id))
        loaded = json_is_true(json_object_get(m, "loaded"));
    json_decref(j);
    return loaded;
}

/* Wait (up to 5 s) until the engine of `id` runs sequences. */
static bool wait_running(v1_fixture *f, const char *id) {
    char key[256];
    snprintf(key, sizeof key, "ftune_running_sequences{model=\"%s\"} ", id);
    for (int i = 0; i < 2500; i++) {
        http_resp r;
        bool runs = false;
        if (http(f->port, "GET", "/metrics", AUTH, NULL, 0, &r) == 0) {
            const char *m = strstr(r.body, key);
            runs = m && atoi(m + strlen(key)) > 0;
            http_resp_free(&r);
        }
        if (runs)
            return true;
        sleep_ms(2);
    }
    return false;
}

/* The blocker keeps the only slot busy: n choices of up to 200 tokens each. */
#define BLOCKER(model) \
    "{\"model\": \"" model "\", \"prompt\": \"hello\", \"max_tokens\": 240, \"n\": 8, \"seed\": 1}"

/* A stream whose first token waits behind another request gets `: ping` comments before its
 * first chunk, and the openai client parses such a stream as any other. */
TEST(v1_pings_while_queued) {
    v1_fixture f;
    ft_err err;
    g_ping_s = 0.001;
    REQUIRE(v1_start(&f, 1, NULL, &err));
    bg_request blocker, more;
    bg_start(&blocker, &f, BLOCKER("main.demo.tiny/1"));
    REQUIRE(wait_running(&f, "main.demo.tiny/1"));
    bg_start(&more, &f, BLOCKER("main.demo.tiny/1")); /* queued before the stream */
    sleep_ms(5);
    const char *body = "{\"model\": \"main.demo.tiny/1\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
                       "\"max_tokens\": 6, \"seed\": 3, \"stream\": true}";
    http_resp r;
    REQUIRE(http(f.port, "POST", "/v1/chat/completions", AUTH "Content-Type: application/json\r\n", body, strlen(body),
                 &r) == 0);
    const char *ping = strstr(r.body, ": ping\n\n"), *first = strstr(r.body, "data: {");
    CHECK_EQ_INT(r.status, 200);
    CHECK(ping && first && ping < first);
    CHECK(strstr(r.body, "data: [DONE]") != NULL);
    http_resp_free(&r);
    bg_join(&blocker);
    bg_join(&more);
    if (access("tools/npm/node_modules/openai/package.json", R_OK) == 0 && system("node --version >/dev/null 2>&1") == 0) {
        char *cmd = ft_asprintf("node tests/server/openai_ping.mjs http://127.0.0.1:%d '%s' main.demo.tiny/1 2>&1",
                                f.port, TOKEN);
        CHECK_EQ_INT(run_echo(cmd), 0);
        ft_free(cmd);
    } else {
        fprintf(stderr, "  (the openai client part needs node and npm openai: make deps)\n");
    }
    ft_server_stop(f.srv);
}

/* Memory pressure (a fake reading; the real one, ft_memplan_machine_read, is tested in
 * tests/train/test_memplan.c): idle models are unloaded, one in use is not until it is idle. */
TEST(v1_memory_pressure_unloads_idle_models) {
    v1_fixture f;
    ft_err err;
    g_avail = (uint64_t)1 << 40;
    g_low = (uint64_t)1 << 30, g_check_s = 0.01;
    REQUIRE(v1_start(&f, 1, NULL, &err));
    int st;
    const char *small1 = "{\"model\": \"main.demo.tiny/1\", \"prompt\": \"a\", \"max_tokens\": 2}";
    const char *small2 = "{\"model\": \"main.demo.tiny/2\", \"prompt\": \"a\", \"max_tokens\": 2}";
    json_decref(v1_post(&f, "/v1/completions", small1, &st, NULL));
    CHECK_EQ_INT(st, 200);
    json_decref(v1_post(&f, "/v1/completions", small2, &st, NULL));
    CHECK_EQ_INT(st, 200);
    CHECK(is_loaded(&f, "main.demo.tiny/1") && is_loaded(&f, "main.demo.tiny/2"));
    sleep_ms(50); /* plenty of memory: nothing goes */
    CHECK(is_loaded(&f, "main.demo.tiny/1") && is_loaded(&f, "main.demo.tiny/2"));
    bg_request busy, busy2;
    bg_start(&busy, &f, BLOCKER("main.demo.tiny/2"));
    REQUIRE(wait_running(&f, "main.demo.tiny/2"));
    bg_start(&busy2, &f, BLOCKER("main.demo.tiny/2")); /* keeps it in use longer */
    g_avail = (uint64_t)1 << 20; /* pressure */
    bool gone1 = false;
    for (int i = 0; i < 300 && !gone1; i++, sleep_ms(10))
        gone1 = !is_loaded(&f, "main.demo.tiny/1");
    bool kept2 = is_loaded(&f, "main.demo.tiny/2");
    bool still_busy = !atomic_load(&busy2.done);
    CHECK(gone1);
    CHECK(kept2);      /* in use: kept */
    CHECK(still_busy); /* (so the check above meant something) */
    bg_join(&busy);
    bg_join(&busy2);
    CHECK_EQ_INT(busy.status, 200);
    bool gone2 = false;
    for (int i = 0; i < 300 && !gone2; i++, sleep_ms(10))
        gone2 = !is_loaded(&f, "main.demo.tiny/2");
    CHECK(gone2); /* idle now: unloaded */
    http_resp r;
    REQUIRE(http(f.port, "GET", "/metrics", AUTH, NULL, 0, &r) == 0);
    CHECK(strstr(r.body, "ftune_model_pressure_unloads_total 2\n") != NULL);
    http_resp_free(&r);
    g_avail = (uint64_t)1 << 40; /* memory again: it loads on use */
    json_decref(v1_post(&f, "/v1/completions", small1, &st, NULL));
    CHECK_EQ_INT(st, 200);
    ft_server_stop(f.srv);
}

/* A registered version never changes under a client: registering a newer version (other
 * weights) while a request runs on the bare name leaves that request's answer as it was before
 * (the same choices as the same request earlier), version 2 answers as before, and the bare name
 * then finds the new weights. */
TEST(v1_version_is_immutable) {
    v1_fixture f;
    ft_err err;
    REQUIRE(v1_start(&f, 1, NULL, &err));
    int st;
    const char *q2 = "{\"model\": \"main.demo.tiny/2\", \"prompt\": \"hello\", \"max_tokens\": 12, \"seed\": 7}";
    const char *qbare = "{\"model\": \"main.demo.tiny\", \"prompt\": \"hello\", \"max_tokens\": 12, \"seed\": 7}";
    json_t *a = v1_post(&f, "/v1/completions", q2, &st, NULL);
    CHECK_EQ_INT(st, 200);
    const char *text_a = json_string_value(json_object_get(json_array_get(json_object_get(a, "choices"), 0), "text"));
    REQUIRE(text_a);
    /* A new version registered while a long request on the bare name runs: the request keeps the
     * version it started on. The request may end before the registration does on a slow or busy
     * machine; then that try proves nothing and the next one registers the version after it. */
    char *db = ft_path_join(f.home, "ftune.db");
    bool registered_while_running = false;
    for (int attempt = 0; attempt < 4 && !registered_while_running; attempt++) {
        char name[32];
        snprintf(name, sizeof name, "export%d", 3 + attempt);
        /* the next version's folder (other weights), written before the request starts so that
         * only the registration happens while it runs */
        char *src = ft_path_join(f.home, name);
        REQUIRE_OK(tiny_model_write(src, (uint64_t)(5 + attempt), &err), &err);
        /* what the long request answers before any new version exists */
        json_t *ref = v1_post(&f, "/v1/completions", BLOCKER("main.demo.tiny"), &st, NULL);
        CHECK_EQ_INT(st, 200);
        bg_request running;
        bg_start(&running, &f, BLOCKER("main.demo.tiny"));
        char running_id[64];
        snprintf(running_id, sizeof running_id, "main.demo.tiny/%d", 2 + attempt);
        CHECK(wait_running(&f, running_id));
        ft_store *s = NULL;
        REQUIRE_OK(ft_store_open(db, &s, &err), &err);
        ft_model_version v;
        REQUIRE_OK(ft_registry_register(s, f.home, "main.demo.tiny", src, NULL, NULL, NULL, &v, &err), &err);
        CHECK_EQ_INT(v.version, 3 + attempt);
        ft_model_version_deinit(&v);
        ft_store_close(s);
        registered_while_running = !atomic_load(&running.done);
        pthread_join(running.t, NULL);
        CHECK_EQ_INT(running.status, 200);
        /* whether or not it overlapped, the request answered as its version does */
        CHECK(ref && running.reply &&
              json_equal(json_object_get(ref, "choices"), json_object_get(running.reply, "choices")));
        json_decref(running.reply);
        json_decref(ref);
        ft_free(src);
    }
    CHECK(registered_while_running);
    json_t *b = v1_post(&f, "/v1/completions", q2, &st, NULL);
    const char *text_b = json_string_value(json_object_get(json_array_get(json_object_get(b, "choices"), 0), "text"));
    CHECK(text_b && !strcmp(text_a, text_b)); /* version 2 answers as before */
    json_t *c = v1_post(&f, "/v1/completions", qbare, &st, NULL);
    CHECK_EQ_INT(st, 200);
    const char *text_c = json_string_value(json_object_get(json_array_get(json_object_get(c, "choices"), 0), "text"));
    CHECK(text_c && strcmp(text_a, text_c) != 0); /* the new weights answer otherwise */
    json_decref(a);
    json_decref(b);
    json_decref(c);
    ft_free(db);
    ft_server_stop(f.srv);
}
