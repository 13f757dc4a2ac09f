/* tests/server: `ftune serve`'s REST API over real HTTP (a small socket client below): every route
 * with its failures (bad JSON, huge bodies, wrong types, unknown fields and runs, traversal, no or
 * wrong token), event streams that reconnect with Last-Event-ID without a gap or a duplicate,
 * 20 concurrent clients listing and following while a writer records events, the binary's
 * start-up refusals and its SIGTERM shutdown. Each test serves its own FTUNE_HOME. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ftune/json.h"
#include "ftune/server.h"
#include "ftune/store.h"
#include "server/server_internal.h"
#include "test.h"

#include "http_client.h"

/* ---------------------------------------------------------------- fixtures */

static void make_run(ft_store *s, const char *name, const char *run_dir) {
    ft_run r = {0};
    r.name = (char *)name;
    r.model = (char *)"models/tiny";
    r.task_type = (char *)"CHAT_COMPLETION";
    r.train_data_path = (char *)"data/train.jsonl";
    r.register_to = (char *)"main.demo";
    r.training_duration = (char *)"2ep";
    r.learning_rate = 1e-3;
    r.run_dir = (char *)run_dir;
    r.config_json = (char *)"{\"seed\":17}";
    ft_err err;
    FT_ASSERT(ft_store_run_create(s, &r, &err) == FT_OK);
}

static ft_server *start(const char *home, const char *token, ft_err *err) {
    ft_server_params p;
    ft_server_default_params(&p);
    p.port = 0;
    p.home = home;
    p.token = token;
    p.poll_s = 0.02;
    p.max_body = 64 * 1024;
    ft_server *s = NULL;
    if (ft_server_start(&p, &s, err) != FT_OK)
        return NULL;
    return s;
}

static ft_store *open_home(const char *home) {
    char *db = ft_path_join(home, "ftune.db");
    ft_store *s = NULL;
    ft_err err;
    FT_ASSERT(ft_store_open(db, &s, &err) == FT_OK);
    ft_free(db);
    return s;
}

/* ---------------------------------------------------------------- the read-only routes */

TEST(server_runs_routes_and_their_failures) {
    const char *home = ft_test_tmpdir();
    ft_err err;
    ft_server *srv = start(home, NULL, &err);
    REQUIRE(srv);
    int port = ft_server_port(srv);
    ft_store *s = open_home(home);
    char *rd = ft_path_join(home, "runs/chat-b");
    make_run(s, "chat-a", NULL);
    make_run(s, "chat-b", rd);
    make_run(s, "chat-c", NULL);
    CHECK_OK(ft_store_run_set_status(s, "chat-b", FT_RUN_QUEUED, "QUEUED", "INFO", "queued", NULL, &err), &err);
    const char *names[] = {"loss", "lr"};
    double v1[] = {2.5, 1e-3}, v2[] = {2.0, 2e-3};
    CHECK_OK(ft_store_metrics_add(s, "chat-b", 1, names, v1, 2, &err), &err);
    CHECK_OK(ft_store_metrics_add(s, "chat-b", 2, names, v2, 2, &err), &err);
    /* a checkpoint on disk and an evaluation file in the run folder */
    char *ck = ft_path_join(rd, "checkpoints/ep1-ba2");
    ft_mkdir_p(ck, NULL);
    CHECK_OK(ft_store_checkpoint_add(s, "chat-b", "ep1-ba2", ck, 2, 1, &err), &err);
    char *ev = ft_path_join(rd, "eval/ep1-ba2.json");
    char *evdir = ft_path_join(rd, "eval");
    ft_mkdir_p(evdir, NULL);
    const char *evj = "{\"step\":2,\"epoch\":1,\"eval_loss\":1.5,\"generations\":[{\"prompt\":\"hi\",\"completion\":\"yo\"}]}";
    CHECK_OK(ft_file_write_atomic(ev, evj, strlen(evj), &err), &err);

    int st;
    json_t *j = get_json(port, "/health", NULL, &st);
    CHECK_EQ_INT(st, 200);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);

    /* list, newest first, filters and cursors */
    j = get_json(port, "/api/runs", NULL, &st);
    CHECK_EQ_INT(st, 200);
    json_t *data = json_object_get(j, "data");
    CHECK_EQ_INT(json_array_size(data), 3);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(data, 0), "name")), "chat-c");
    CHECK(json_is_false(json_object_get(j, "has_more")));
    json_decref(j);
    j = get_json(port, "/api/runs?status=QUEUED", NULL, &st);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "data")), 1);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "name")), "chat-b");
    json_decref(j);
    j = get_json(port, "/api/runs?status=queued,PENDING", NULL, &st);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "data")), 3);
    json_decref(j);
    j = get_json(port, "/api/runs?limit=1", NULL, &st);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "data")), 1);
    CHECK(json_is_true(json_object_get(j, "has_more")));
    json_decref(j);
    j = get_json(port, "/api/runs?before=chat-c&limit=1", NULL, &st);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "name")), "chat-b");
    CHECK(json_is_true(json_object_get(j, "has_more")));
    json_decref(j);
    j = get_json(port, "/api/runs?after=chat-a&limit=1", NULL, &st);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "name")), "chat-b");
    json_decref(j);
    static const struct {
        const char *path, *field;
    } bad[] = {
        {"/api/runs?status=DONE", "status"}, {"/api/runs?limit=abc", "limit"}, {"/api/runs?limit=0", "limit"},
        {"/api/runs?limit=99999999999999999999", "limit"}, {"/api/runs?before=nope", "before"},
        {"/api/runs?before=chat-a&after=chat-c", "after"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = get_json(port, bad[i].path, NULL, &st);
        if (st != 400 || !err_field(j) || strcmp(err_field(j), bad[i].field))
            ft_test_fail_(__FILE__, __LINE__, "%s: status %d, field %s", bad[i].path, st, err_field(j));
        json_decref(j);
    }

    /* one run, with checkpoints and evaluations */
    j = get_json(port, "/api/runs/chat-b", NULL, &st);
    CHECK_EQ_INT(st, 200);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "status")), "QUEUED");
    CHECK_EQ_INT(json_array_size(json_object_get(j, "checkpoints")), 1);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "evaluations")), 1);
    json_decref(j);
    j = get_json(port, "/api/runs/nope", NULL, &st);
    CHECK_EQ_INT(st, 404);
    CHECK_STR_EQ(err_code(j), "not_found");
    json_decref(j);
    /* traversal and odd names never reach the store or the disk */
    static const char *const names_bad[] = {"/api/runs/..", "/api/runs/..%2F..%2Fetc", "/api/runs/.hidden",
                                            "/api/runs/a%20b", "/api/runs/-x", "/api/runs/%2E%2E/events"};
    for (size_t i = 0; i < sizeof names_bad / sizeof *names_bad; i++) {
        j = get_json(port, names_bad[i], NULL, &st);
        if (st != 400 || !err_code(j) || strcmp(err_code(j), "invalid_name"))
            ft_test_fail_(__FILE__, __LINE__, "%s: status %d code %s", names_bad[i], st, err_code(j));
        json_decref(j);
    }
    j = get_json(port, "/api/runs/chat-b/events", NULL, &st);
    CHECK_EQ_INT(st, 200);
    data = json_object_get(j, "data");
    CHECK_EQ_INT(json_array_size(data), 2); /* CREATED, QUEUED */
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(data, 1), "type")), "QUEUED");
    json_decref(j);
    j = get_json(port, "/api/runs/chat-b/events?after=1", NULL, &st);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "data")), 1);
    json_decref(j);
    j = get_json(port, "/api/runs/chat-b/events?after=-1", NULL, &st);
    CHECK_EQ_INT(st, 400);
    json_decref(j);
    j = get_json(port, "/api/runs/chat-b/metrics?name=loss", NULL, &st);
    CHECK_EQ_INT(st, 200);
    data = json_object_get(j, "data");
    CHECK_EQ_INT(json_array_size(data), 2);
    CHECK_NEAR(json_real_value(json_object_get(json_array_get(data, 1), "value")), 2.0, 0);
    json_decref(j);
    j = get_json(port, "/api/runs/chat-b/metrics", NULL, &st);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "data")), 4);
    json_decref(j);
    j = get_json(port, "/api/runs/chat-b/checkpoints", NULL, &st);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "name")), "ep1-ba2");
    json_decref(j);
    j = get_json(port, "/api/runs/chat-b/evaluations", NULL, &st);
    CHECK_STR_EQ(json_string_value(json_object_get(
                     json_array_get(json_object_get(json_array_get(json_object_get(j, "data"), 0), "generations"), 0),
                     "completion")),
                 "yo");
    json_decref(j);
    j = get_json(port, "/api/runs/nope/metrics", NULL, &st);
    CHECK_EQ_INT(st, 404);
    json_decref(j);
    j = get_json(port, "/api/runs/chat-b/nothing", NULL, &st);
    CHECK_EQ_INT(st, 404);
    json_decref(j);
    /* wrong methods */
    http_resp r;
    REQUIRE(http(port, "PUT", "/api/runs/chat-b", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 405);
    http_resp_free(&r);
    REQUIRE(http(port, "DELETE", "/api/models", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 405);
    http_resp_free(&r);
    /* a state-changing request without a JSON content type (a cross-site form) is refused */
    REQUIRE(http(port, "POST", "/api/runs/chat-b/cancel", "Content-Type: text/plain\r\n", "x", 1, &r) == 0);
    CHECK_EQ_INT(r.status, 415);
    http_resp_free(&r);
    /* another site's name as Host (DNS rebinding) */
    j = get_json(port, "/api/runs", "Host: evil.example\r\n", &st);
    (void)j;
    json_decref(j);
    int fd = connect_port(port);
    REQUIRE(fd >= 0);
    const char *rq = "GET /api/runs HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n";
    send_all(fd, rq, strlen(rq));
    char buf[256] = {0};
    CHECK(recv(fd, buf, sizeof buf - 1, MSG_WAITALL) > 12);
    CHECK(!strncmp(buf, "HTTP/1.1 403", 12));
    close(fd);

    ft_store_close(s);
    ft_server_stop(srv);
    ft_free(rd);
    ft_free(ck);
    ft_free(ev);
    ft_free(evdir);
}

TEST(server_registry_models_static_and_openapi) {
    const char *home = ft_test_tmpdir();
    ft_err err;
    ft_server *srv = start(home, NULL, &err);
    REQUIRE(srv);
    int port = ft_server_port(srv);
    ft_store *s = open_home(home);
    char *src = ft_path_join(home, "export");
    char *cfg = ft_path_join(src, "config.json");
    ft_mkdir_p(src, NULL);
    CHECK_OK(ft_file_write_atomic(cfg, "{}", 2, &err), &err);
    ft_model_version v;
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.m", src, NULL, NULL, "{\"final_loss\":1.25}", &v, &err), &err);
    ft_model_version_deinit(&v);
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.m", src, NULL, NULL, NULL, &v, &err), &err);
    ft_model_version_deinit(&v);
    int st;
    json_t *j = get_json(port, "/api/registry", NULL, &st);
    CHECK_EQ_INT(st, 200);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "latest_version")), 2);
    json_decref(j);
    j = get_json(port, "/api/registry/main.demo.m", NULL, &st);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "versions")), 2);
    json_decref(j);
    j = get_json(port, "/api/registry/main.demo.m/1", NULL, &st);
    CHECK_EQ_INT(st, 200);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "versions")), 1);
    json_decref(j);
    j = get_json(port, "/api/registry/main.demo.x", NULL, &st);
    CHECK_EQ_INT(st, 404);
    json_decref(j);
    static const char *const bad[] = {"/api/registry/main", "/api/registry/a.b.c/x", "/api/registry/a.b.c/0",
                                      "/api/registry/..%2F..%2Fa.b.c", "/api/registry/a.b.c/1/2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = get_json(port, bad[i], NULL, &st);
        if (st != 400)
            ft_test_fail_(__FILE__, __LINE__, "%s: status %d", bad[i], st);
        json_decref(j);
    }
    j = get_json(port, "/api/models", NULL, &st);
    CHECK_EQ_INT(st, 200);
    CHECK(json_array_size(json_object_get(j, "data")) >= 30);
    json_decref(j);
    j = get_json(port, "/api/openapi.json", NULL, &st);
    CHECK_EQ_INT(st, 200);
    CHECK(json_is_object(json_object_get(j, "paths")));
    CHECK(json_object_get(json_object_get(j, "paths"), "/api/runs/{name}/events") != NULL);
    json_decref(j);
    http_resp r;
    REQUIRE(http(port, "GET", "/", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strcasestr(r.headers, "Content-Type: text/html"));
    CHECK(strcasestr(r.headers, "Content-Security-Policy: default-src 'self'"));
    CHECK(strstr(r.body, "<script src=\"/app.js\""));
    http_resp_free(&r);
    REQUIRE(http(port, "GET", "/app.js", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.body_len > 1000);
    http_resp_free(&r);
    REQUIRE(http(port, "GET", "/../../etc/passwd", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 404);
    CHECK(!strstr(r.body, "root:"));
    http_resp_free(&r);
    j = get_json(port, "/v1/models", NULL, &st); /* the OpenAI-compatible list (tests/server/test_v1.c) */
    CHECK_EQ_INT(st, 200);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "object")), "list");
    json_decref(j);
    ft_store_close(s);
    ft_server_stop(srv);
    ft_free(src);
    ft_free(cfg);
}

TEST(server_validate_reports_and_refuses_bad_bodies) {
    const char *home = ft_test_tmpdir();
    ft_err err;
    ft_server *srv = start(home, NULL, &err);
    REQUIRE(srv);
    int port = ft_server_port(srv);
    char *data = ft_path_join(home, "d.jsonl");
    const char *rows = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n"
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n"
                       "{\"messages\": 5}\n";
    CHECK_OK(ft_file_write_atomic(data, rows, strlen(rows), &err), &err);
    char body[1024];
    snprintf(body, sizeof body, "{\"train_data_path\": \"%s\"}", data);
    int st;
    json_t *j = post_json(port, "/api/validate", body, &st);
    CHECK_EQ_INT(st, 200);
    CHECK(json_is_false(json_object_get(j, "valid")));
    json_t *errs = json_object_get(j, "errors");
    CHECK_EQ_INT(json_array_size(errs), 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(errs, 0), "line")), 2);
    CHECK(json_integer_value(json_object_get(json_array_get(errs, 1), "column")) > 1);
    json_decref(j);

    static const struct {
        const char *body;
        int status;
        const char *code, *field;
    } bad[] = {
        {"{\"train_data_path\": ", 400, "invalid_json", NULL},
        {"[1,2]", 400, "invalid_json", NULL},
        {"{\"a\":1,\"a\":2}", 400, "invalid_json", NULL},
        {"{\"train_data_path\": 5}", 400, "invalid_type", "train_data_path"},
        {"{\"train_data_path\": \"x\", \"context_length\": \"8\"}", 400, "invalid_type", "context_length"},
        {"{\"train_data_path\": \"x\", \"estimate\": 1}", 400, "invalid_type", "estimate"},
        {"{\"train_data_path\": \"x\", \"nonsense\": 1}", 400, "unknown_field", "nonsense"},
        {"{}", 400, "missing_field", "train_data_path"},
        {"{\"train_data_path\": \"/nonexistent/x.jsonl\"}", 400, "invalid_value", "train_data_path"},
        {"{\"train_data_path\": \"x\", \"task_type\": \"CHAT\"}", 400, "invalid_value", "task_type"},
        {"{\"train_data_path\": \"x\", \"training_duration\": \"3x\"}", 400, "invalid_value", "training_duration"},
        {"{\"train_data_path\": \"x\", \"model\": \"/nonexistent/model\"}", 400, "invalid_value", "model"},
        {"{\"train_data_path\": \"x\", \"context_length\": 1}", 400, "invalid_value", "context_length"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = post_json(port, "/api/validate", bad[i].body, &st);
        const char *code = err_code(j), *field = err_field(j);
        bool ok = st == bad[i].status && code && !strcmp(code, bad[i].code) &&
                  (bad[i].field ? field && !strcmp(field, bad[i].field) : !field);
        if (!ok)
            ft_test_fail_(__FILE__, __LINE__, "%s: status %d code %s field %s", bad[i].body, st, code, field);
        json_decref(j);
    }
    /* the location of a JSON error in the body */
    j = post_json(port, "/api/validate", "{\n  \"train_data_path\": x\n}", &st);
    json_t *loc = json_object_get(json_object_get(j, "error"), "location");
    CHECK_EQ_INT(json_integer_value(json_object_get(loc, "line")), 2);
    json_decref(j);
    /* bodies over the limit: declared, and sent in chunks without a length */
    size_t big = 200 * 1024;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    http_resp r;
    REQUIRE(http(port, "POST", "/api/validate", "Content-Type: application/json\r\n", huge, big, &r) == 0);
    CHECK_EQ_INT(r.status, 413);
    http_resp_free(&r);
    int fd = connect_port(port);
    REQUIRE(fd >= 0);
    const char *hdr = "POST /api/validate HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    send_all(fd, hdr, strlen(hdr));
    for (int k = 0; k < 20; k++) {
        char ch[32];
        int n = snprintf(ch, sizeof ch, "%x\r\n", 8192);
        send_all(fd, ch, (size_t)n);
        send_all(fd, huge, 8192);
        send_all(fd, "\r\n", 2);
    }
    send_all(fd, "0\r\n\r\n", 5);
    char buf[64] = {0};
    CHECK(recv(fd, buf, 12, MSG_WAITALL) == 12);
    CHECK(!strncmp(buf, "HTTP/1.1 413", 12));
    close(fd);
    free(huge);
    /* no content type */
    REQUIRE(http(port, "POST", "/api/validate", NULL, "{}", 2, &r) == 0);
    CHECK_EQ_INT(r.status, 415);
    http_resp_free(&r);
    ft_server_stop(srv);
    ft_free(data);
}

/* ---------------------------------------------------------------- auth */

TEST(server_token_auth) {
    CHECK(srv_token_equal("abcdefghijklmnop", "abcdefghijklmnop"));
    CHECK(!srv_token_equal("abcdefghijklmnoq", "abcdefghijklmnop"));
    CHECK(!srv_token_equal("abcdefghijklmno", "abcdefghijklmnop"));
    CHECK(!srv_token_equal("abcdefghijklmnopq", "abcdefghijklmnop"));
    CHECK(!srv_token_equal("", "abcdefghijklmnop"));
    CHECK(ft_server_host_is_loopback("127.0.0.1") && ft_server_host_is_loopback("::1") &&
          ft_server_host_is_loopback("localhost") && ft_server_host_is_loopback("127.1.2.3"));
    CHECK(!ft_server_host_is_loopback("0.0.0.0") && !ft_server_host_is_loopback("::") &&
          !ft_server_host_is_loopback("10.0.0.1") && !ft_server_host_is_loopback("example.com"));

    const char *home = ft_test_tmpdir();
    ft_err err;
    /* any address but loopback needs a token */
    ft_server_params p;
    ft_server_default_params(&p);
    p.host = "0.0.0.0";
    p.port = 0;
    p.home = home;
    ft_server *srv = NULL;
    CHECK(ft_server_start(&p, &srv, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "token"));
    CHECK(!srv);

    srv = start(home, "s3cret-token-0123456789", &err);
    REQUIRE(srv);
    int port = ft_server_port(srv);
    int st;
    json_t *j = get_json(port, "/api/runs", NULL, &st);
    CHECK_EQ_INT(st, 401);
    CHECK_STR_EQ(err_code(j), "unauthorized");
    json_decref(j);
    http_resp r;
    REQUIRE(http(port, "GET", "/api/runs", "Authorization: Bearer wrong\r\n", NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 401);
    CHECK(strcasestr(r.headers, "WWW-Authenticate: Bearer"));
    http_resp_free(&r);
    j = get_json(port, "/api/runs", "Authorization: Bearer s3cret-token-012345678\r\n", &st);
    CHECK_EQ_INT(st, 401);
    json_decref(j);
    j = get_json(port, "/api/runs", "Authorization: Basic s3cret-token-0123456789\r\n", &st);
    CHECK_EQ_INT(st, 401);
    json_decref(j);
    j = get_json(port, "/api/runs", "Authorization: Bearer s3cret-token-0123456789\r\n", &st);
    CHECK_EQ_INT(st, 200);
    json_decref(j);
    j = get_json(port, "/api/runs/x/events?follow=1", NULL, &st);
    CHECK_EQ_INT(st, 401);
    json_decref(j);
    /* /health and the UI's files need no token (the UI asks for it) */
    j = get_json(port, "/health", NULL, &st);
    CHECK_EQ_INT(st, 200);
    json_decref(j);
    REQUIRE(http(port, "GET", "/", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    http_resp_free(&r);
    /* a token server answers other Host names (it may be bound to a public address) */
    j = get_json(port, "/api/runs", "Authorization: Bearer s3cret-token-0123456789\r\n", &st);
    json_decref(j);
    ft_server_stop(srv);
}

TEST(server_sse_follow_reconnects_without_gap_or_duplicate) {
    const char *home = ft_test_tmpdir();
    ft_err err;
    ft_server *srv = start(home, NULL, &err);
    REQUIRE(srv);
    int port = ft_server_port(srv);
    ft_store *s = open_home(home);
    make_run(s, "run-sse", NULL); /* event 1: CREATED */
    CHECK_OK(ft_store_run_set_status(s, "run-sse", FT_RUN_QUEUED, "QUEUED", "INFO", "q", NULL, &err), &err);
    CHECK_OK(ft_store_run_set_status(s, "run-sse", FT_RUN_STARTING, NULL, NULL, NULL, NULL, &err), &err);
    CHECK_OK(ft_store_run_set_status(s, "run-sse", FT_RUN_RUNNING, "STARTED", "INFO", "go", NULL, &err), &err);
    sse_client c;
    REQUIRE(sse_open(&c, port, "run-sse", -1));
    int64_t seen = 0;
    char type[32];
    for (int k = 0; k < 3; k++) {
        int64_t id = sse_next(&c, type, sizeof type);
        CHECK_EQ_INT(id, seen + 1);
        seen = id;
    }
    CHECK_STR_EQ(type, "STARTED");
    /* Drop the connection, record more while nobody listens, and resume from the last id. */
    sse_close(&c);
    for (int k = 0; k < 5; k++)
        CHECK_OK(ft_store_event_add(s, "run-sse", "TRAIN_UPDATED", "INFO", "p", NULL, &err), &err);
    REQUIRE(sse_open(&c, port, "run-sse", seen));
    for (int k = 0; k < 5; k++) {
        int64_t id = sse_next(&c, type, sizeof type);
        CHECK_EQ_INT(id, seen + 1);
        seen = id;
    }
    /* events recorded while connected arrive live; the final status ends the stream */
    for (int k = 0; k < 3; k++)
        CHECK_OK(ft_store_event_add(s, "run-sse", "CHECKPOINT_SAVED", "INFO", "c", NULL, &err), &err);
    CHECK_OK(ft_store_run_set_status(s, "run-sse", FT_RUN_COMPLETED, "COMPLETED", "INFO", "done", NULL, &err), &err);
    int64_t id;
    while ((id = sse_next(&c, type, sizeof type)) > 0) {
        CHECK_EQ_INT(id, seen + 1);
        seen = id;
    }
    CHECK_EQ_INT(id, -1);
    CHECK_EQ_INT(seen, 12);
    CHECK_STR_EQ(type, "COMPLETED");
    sse_close(&c);
    /* following a finished run replays its events and ends; an unknown run is a 404 */
    REQUIRE(sse_open(&c, port, "run-sse", 10));
    CHECK_EQ_INT(sse_next(&c, NULL, 0), 11);
    CHECK_EQ_INT(sse_next(&c, NULL, 0), 12);
    CHECK_EQ_INT(sse_next(&c, NULL, 0), -1);
    sse_close(&c);
    int st;
    json_t *j = get_json(port, "/api/runs/none/events?follow=1", NULL, &st);
    CHECK_EQ_INT(st, 404);
    json_decref(j);
    j = get_json(port, "/api/runs/run-sse/events?follow=1", "Last-Event-ID: abc\r\n", &st);
    CHECK_EQ_INT(st, 400);
    json_decref(j);
    ft_store_close(s);
    ft_server_stop(srv);
}

/* ---------------------------------------------------------------- concurrency */

enum { N_CLIENTS = 20, N_WRITES = 120 };

typedef struct client_result {
    int port;
    int64_t last_seq;
    int64_t events, errors, lists;
    bool ordered;
} client_result;

static void *client_main(void *arg) {
    client_result *r = arg;
    r->ordered = true;
    /* list a few times, then follow the run to its end */
    for (int k = 0; k < 5; k++) {
        int st;
        json_t *j = get_json(r->port, "/api/runs?limit=10", NULL, &st);
        if (st == 200 && json_array_size(json_object_get(j, "data")) == 1)
            r->lists++;
        else
            r->errors++;
        json_decref(j);
    }
    sse_client c;
    if (!sse_open(&c, r->port, "run-busy", -1)) {
        r->errors++;
        return NULL;
    }
    int64_t id;
    while ((id = sse_next(&c, NULL, 0)) > 0) {
        if (id != r->last_seq + 1)
            r->ordered = false;
        r->last_seq = id;
        r->events++;
    }
    if (id != -1)
        r->errors++;
    sse_close(&c);
    return NULL;
}

TEST(server_twenty_concurrent_clients_list_and_follow_while_a_run_writes) {
    const char *home = ft_test_tmpdir();
    ft_err err;
    ft_server *srv = start(home, NULL, &err);
    REQUIRE(srv);
    int port = ft_server_port(srv);
    ft_store *s = open_home(home);
    make_run(s, "run-busy", NULL);
    CHECK_OK(ft_store_run_set_status(s, "run-busy", FT_RUN_QUEUED, "QUEUED", "INFO", "q", NULL, &err), &err);
    CHECK_OK(ft_store_run_set_status(s, "run-busy", FT_RUN_STARTING, NULL, NULL, NULL, NULL, &err), &err);
    CHECK_OK(ft_store_run_set_status(s, "run-busy", FT_RUN_RUNNING, "STARTED", "INFO", "go", NULL, &err), &err);
    double t0 = ft_time_now();
    pthread_t th[N_CLIENTS];
    client_result res[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        memset(&res[i], 0, sizeof res[i]);
        res[i].port = port;
        pthread_create(&th[i], NULL, client_main, &res[i]);
    }
    /* The writer: events and metrics as a training run records them. */
    const char *names[] = {"loss"};
    for (int k = 0; k < N_WRITES; k++) {
        double v = 3.0 - 0.01 * k;
        CHECK_OK(ft_store_event_add(s, "run-busy", "TRAIN_UPDATED", "INFO", "step", NULL, &err), &err);
        CHECK_OK(ft_store_metrics_add(s, "run-busy", k + 1, names, &v, 1, &err), &err);
        usleep(2000);
    }
    CHECK_OK(ft_store_run_set_status(s, "run-busy", FT_RUN_COMPLETED, "COMPLETED", "INFO", "done", NULL, &err), &err);
    int64_t total_events = 0, lists = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(res[i].errors, 0);
        CHECK(res[i].ordered);
        CHECK_EQ_INT(res[i].last_seq, N_WRITES + 4); /* CREATED QUEUED STARTED + writes + COMPLETED */
        total_events += res[i].events;
        lists += res[i].lists;
    }
    double dt = ft_time_now() - t0;
    fprintf(stderr, "  [load] %d clients: %lld list requests and %lld streamed events in %.2f s (%.0f events/s)\n",
            N_CLIENTS, (long long)lists, (long long)total_events, dt, (double)total_events / dt);
    ft_store_close(s);
    ft_server_stop(srv);
}

/* ---------------------------------------------------------------- the binary */

TEST(server_binary_refuses_unsafe_starts_and_stops_on_sigterm) {
    const char *home = ft_test_tmpdir();
    char *out = NULL;
    char *cmd = ft_asprintf("FTUNE_HOME='%s' %s serve --host 0.0.0.0 --port 0 2>&1", home, ft_test_ftune_bin());
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    CHECK(out && strstr(out, "--token-file"));
    free(out);
    ft_free(cmd);
    char *tf = ft_path_join(home, "token");
    ft_file_write_atomic(tf, "short\n", 6, NULL);
    cmd = ft_asprintf("FTUNE_HOME='%s' %s serve --port 0 --token-file '%s' 2>&1", home, ft_test_ftune_bin(), tf);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    CHECK(out && strstr(out, "at least 16"));
    free(out);
    ft_free(cmd);
    ft_free(tf);

    /* Start, follow a running run's events, then SIGTERM: the stream ends and the process exits 0. */
    char *db = ft_path_join(home, "ftune.db");
    ft_store *s;
    ft_err err;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    make_run(s, "run-term", NULL);
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        setenv("FTUNE_HOME", home, 1);
        execl(ft_test_ftune_bin(), "ftune", "serve", "--port", "0", (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char line[128] = {0};
    size_t n = 0;
    while (n < sizeof line - 1) {
        struct pollfd pfd = {pipefd[0], POLLIN, 0};
        if (poll(&pfd, 1, 30000) <= 0)
            break;
        ssize_t r = read(pipefd[0], line + n, 1);
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    int port = 0;
    CHECK(sscanf(line, "listening %d", &port) == 1);
    if (port > 0) {
        sse_client c;
        REQUIRE(sse_open(&c, port, "run-term", -1));
        CHECK_EQ_INT(sse_next(&c, NULL, 0), 1);
        kill(pid, SIGTERM);
        CHECK_EQ_INT(sse_next(&c, NULL, 0), -2); /* the stream ends with the server */
        sse_close(&c);
    } else {
        kill(pid, SIGTERM);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(pipefd[0]);
    ft_store_close(s);
    ft_free(db);
}
