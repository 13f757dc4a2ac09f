/* tests/server: the routes that change runs, end to end through the real binary (`ftune serve`
 * supervising `ftune worker`): POST /api/runs validates as `ftune create` does (data errors with
 * file:line:column, bad values naming their field), the queued run executes to COMPLETED and is
 * registered; cancel, resume and delete; SIGTERM stops the running run after a checkpoint and a
 * restarted server resumes it to the end. A tiny model (1 layer, hidden 16) keeps each run short. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ftune/json.h"
#include "ftune/store.h"
#include "http_client.h"
#include "test.h"

static const char TEMPLATE[] =
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}{% endif %}{% endfor %}";

typedef struct env {
    char home[1024], model[1024], train[1024], bad[1024];
} env;

static bool setup(env *e) {
    const char *tmp = ft_test_tmpdir();
    snprintf(e->home, sizeof e->home, "%s/home", tmp);
    snprintf(e->model, sizeof e->model, "%s/model", tmp);
    snprintf(e->train, sizeof e->train, "%s/train.jsonl", tmp);
    snprintf(e->bad, sizeof e->bad, "%s/bad.jsonl", tmp);
    char tok[1100];
    snprintf(tok, sizeof tok, "%s/tok", tmp);
    ft_mkdir_p(tok, NULL);
    char *src = ft_path_join(ft_test_fixture("tok/mistral-7b-v0.1"), "tokenizer.json");
    char *dst = ft_path_join(tok, "tokenizer.json");
    ft_status st = ft_file_copy(src, dst, NULL);
    ft_free(src);
    ft_free(dst);
    if (st != FT_OK)
        return false;
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:b, s:b, s:s}", "bos_token", "<s>", "eos_token", "</s>", "unk_token",
                            "<unk>", "add_bos_token", 1, "add_eos_token", 0, "chat_template", TEMPLATE);
    char *text = json_dumps(cfg, 0);
    char *cpath = ft_path_join(tok, "tokenizer_config.json");
    ft_file_write_atomic(cpath, text, strlen(text), NULL);
    free(text);
    ft_free(cpath);
    json_decref(cfg);
    char *cmd = ft_asprintf("%s init-model --out '%s' --vocab-size 32000 --hidden-size 16 --intermediate-size 32 "
                            "--layers 1 --heads 2 --tie-embeddings --max-position-embeddings 256 --tokenizer '%s' "
                            "--seed 1 >/dev/null 2>&1",
                            ft_test_ftune_bin(), e->model, tok);
    int rc = ft_test_run(cmd, NULL);
    ft_free(cmd);
    if (rc != 0)
        return false;
    static const char *const people[] = {"Maria", "John", "Aisha", "Kenji"};
    static const char *const cities[] = {"Paris", "Lima", "Oslo", "Rome"};
    ft_buf b = {0};
    for (int i = 0; i < 48; i++)
        ft_buf_appendf(&b,
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"Where is %s? %s went to %s.\"},"
                       "{\"role\":\"assistant\",\"content\":\"%s\"}]}\n",
                       people[i % 4], people[i % 4], cities[(i / 4) % 4], cities[(i / 4) % 4]);
    ft_file_write_atomic(e->train, b.data, b.len, NULL);
    ft_buf_free(&b);
    const char *bad = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n"
                      "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n";
    ft_file_write_atomic(e->bad, bad, strlen(bad), NULL);
    return true;
}

/* FTUNE_DEBUG_KILL_AT_STEP for the next server's runs (NULL: none): each run process SIGKILLs
 * itself after that step, a crash at a known point. */
static const char *g_kill_at_step;

/* Start `ftune serve --port 0 --workers N` on e->home; the port from its first stdout line. */
static pid_t serve_workers(const env *e, int *port, const char *workers) {
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0)
            dup2(nul, 2);
        setenv("FTUNE_HOME", e->home, 1);
        setenv("USER", "tester", 1);
        setenv("OMP_NUM_THREADS", "1", 1);
        if (g_kill_at_step)
            setenv("FTUNE_DEBUG_KILL_AT_STEP", g_kill_at_step, 1);
        execl(ft_test_ftune_bin(), "ftune", "serve", "--port", "0", "--workers", workers, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[128] = {0};
    size_t n = 0;
    while (n < sizeof line - 1) {
        struct pollfd p = {fds[0], POLLIN, 0};
        if (poll(&p, 1, 60000) <= 0 || read(fds[0], line + n, 1) <= 0 || line[n] == '\n')
            break;
        n++;
    }
    close(fds[0]);
    *port = 0;
    if (sscanf(line, "listening %d", port) != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

static pid_t serve(const env *e, int *port) { return serve_workers(e, port, "1"); }

static int stop(pid_t pid) {
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *create_body(const env *e, const char *name, const char *duration, const char *extra) {
    return ft_asprintf("{\"model\": \"%s\", \"train_data_path\": \"%s\", \"register_to\": \"main.api\", \"name\": \"%s\","
                       " \"training_duration\": \"%s\", \"learning_rate\": 0.001, \"context_length\": 64,"
                       " \"global_batch_size\": 4, \"micro_batch_size\": 2, \"threads\": 1, \"seed\": 5%s}",
                       e->model, e->train, name, duration, extra ? extra : "");
}

/* Poll GET /api/runs/{name} until its status is one of `want` ("RUNNING|COMPLETED"); the status. */
static char *wait_status(int port, const char *name, const char *want, double timeout_s) {
    char path[256];
    snprintf(path, sizeof path, "/api/runs/%s", name);
    double t0 = ft_time_now();
    char *last = NULL;
    while (ft_time_now() - t0 < timeout_s) {
        int st;
        json_t *j = get_json(port, path, NULL, &st);
        const char *s = json_string_value(json_object_get(j, "status"));
        ft_free(last);
        last = s ? ft_strdup(s) : NULL;
        json_decref(j);
        if (last && strstr(want, last))
            return last;
        usleep(50 * 1000);
    }
    return last;
}

TEST(server_api_creates_a_run_that_executes_and_registers) {
    env e;
    REQUIRE(setup(&e));
    int port;
    pid_t pid = serve(&e, &port);
    REQUIRE(pid > 0);
    int st;
    char *body = create_body(&e, "api-one", "6ba", ", \"eval_prompts\": [\"Where is Maria?\"], \"eval_max_new_tokens\": 3");
    json_t *j = post_json(port, "/api/runs", body, &st);
    ft_free(body);
    CHECK_EQ_INT(st, 201);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "name")), "api-one");
    CHECK(json_is_true(json_object_get(json_object_get(j, "memory"), "fits")));
    json_decref(j);
    /* its events to the end, as a client of the stream sees them */
    sse_client c;
    REQUIRE(sse_open(&c, port, "api-one", -1));
    int64_t id, last = 0;
    char type[32] = "";
    while ((id = sse_next(&c, type, sizeof type)) > 0) {
        CHECK_EQ_INT(id, last + 1);
        last = id;
    }
    sse_close(&c);
    CHECK_EQ_INT(id, -1);
    CHECK_STR_EQ(type, "COMPLETED");
    j = get_json(port, "/api/runs/api-one", NULL, &st);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "status")), "COMPLETED");
    CHECK_STR_EQ(json_string_value(json_object_get(j, "registered_model")), "main.api.api-one/1");
    json_decref(j);
    j = get_json(port, "/api/runs/api-one/metrics?name=loss", NULL, &st);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "data")), 6);
    json_decref(j);
    j = get_json(port, "/api/registry/main.api.api-one", NULL, &st);
    CHECK_EQ_INT(st, 200);
    json_decref(j);

    /* the memory plan: the 201 carries it; POST /api/validate reports the same object as `ftune
     * validate --json` for the same settings; a run that cannot fit is refused with the numbers */
    {
        char *vb = ft_asprintf("{\"model\": \"%s\", \"train_data_path\": \"%s\", \"context_length\": 64, "
                               "\"global_batch_size\": 4, \"micro_batch_size\": 2}", e.model, e.train);
        json_t *v = post_json(port, "/api/validate", vb, &st);
        ft_free(vb);
        CHECK_EQ_INT(st, 200);
        json_t *mem = json_object_get(v, "memory");
        CHECK(json_is_true(json_object_get(mem, "fits")));
        CHECK(json_integer_value(json_object_get(mem, "predicted_peak_bytes")) > 0);
        CHECK(json_integer_value(json_object_get(mem, "available_bytes")) > 0);
        char *cmd = ft_asprintf("OMP_NUM_THREADS=1 FTUNE_HOME='%s' %s validate '%s' --model '%s' --context-length 64 "
                                "--global-batch-size 4 --micro-batch-size 2 --json --no-estimate",
                                e.home, ft_test_ftune_bin(), e.train, e.model);
        char *out = NULL;
        CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
        json_t *cj = out ? json_loads(out, 0, NULL) : NULL;
        json_t *cmem = json_object_get(cj, "memory");
        static const char *const same[] = {"predicted_peak_bytes", "weights_bytes", "gradients_bytes", "optimizer_bytes",
                                           "activations_bytes", "micro_batch_size"};
        for (size_t i = 0; i < sizeof same / sizeof *same; i++)
            if (!json_equal(json_object_get(mem, same[i]), json_object_get(cmem, same[i])))
                ft_test_fail_(__FILE__, __LINE__, "memory.%s: API %lld, CLI %lld", same[i],
                              (long long)json_integer_value(json_object_get(mem, same[i])),
                              (long long)json_integer_value(json_object_get(cmem, same[i])));
        json_decref(cj);
        free(out);
        ft_free(cmd);
        json_decref(v);
        vb = ft_asprintf("{\"model\": \"%s\", \"train_data_path\": \"%s\", \"memory_limit\": \"16M\"}", e.model, e.train);
        v = post_json(port, "/api/validate", vb, &st);
        ft_free(vb);
        CHECK_EQ_INT(st, 200);
        mem = json_object_get(v, "memory");
        CHECK(json_is_false(json_object_get(mem, "fits")));
        CHECK(json_string_value(json_object_get(mem, "message")));
        json_decref(v);
        char *rb = create_body(&e, "api-huge", "1ba", ", \"memory_limit\": \"16M\"");
        v = post_json(port, "/api/runs", rb, &st);
        ft_free(rb);
        CHECK_EQ_INT(st, 400);
        CHECK_STR_EQ(err_code(v), "insufficient_memory");
        mem = json_object_get(json_object_get(v, "error"), "memory");
        CHECK(json_integer_value(json_object_get(mem, "predicted_peak_bytes")) >
              json_integer_value(json_object_get(mem, "limit_bytes")));
        CHECK_EQ_INT(json_integer_value(json_object_get(mem, "limit_bytes")), 16 << 20);
        json_decref(v);
        v = get_json(port, "/api/runs/api-huge", NULL, &st);
        CHECK_EQ_INT(st, 404); /* nothing recorded */
        json_decref(v);
    }

    /* the CLI's validation, as API errors */
    static const struct {
        const char *extra, *code, *field;
    } bad[] = {
        {", \"learning_rate\": \"abc\"", "invalid_value", "learning_rate"},
        {", \"optimizer\": \"sgd\"", "invalid_value", "optimizer"},
        {", \"context_length\": 100000", "invalid_value", "context_length"},
        {", \"register_to\": \"main\"", "invalid_value", "register_to"},
        {", \"seed\": \"5\"", "invalid_type", "seed"},
        {", \"eval_prompts\": [1]", "invalid_type", "eval_prompts"},
        {", \"bogus\": 1", "unknown_field", "bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *b = create_body(&e, "api-bad", "1ba", bad[i].extra);
        /* the extra key repeats one of the body's: parsed without JSON_REJECT_DUPLICATES the
         * later one wins, and the body goes out with each key once */
        json_t *bj = json_loads(b, 0, NULL);
        ft_free(b);
        char *bs = bj ? json_dumps(bj, 0) : NULL;
        json_decref(bj);
        j = post_json(port, "/api/runs", bs ? bs : "{}", &st);
        free(bs);
        const char *code = err_code(j), *field = err_field(j);
        if (st != 400 || !code || strcmp(code, bad[i].code) || !field || strcmp(field, bad[i].field))
            ft_test_fail_(__FILE__, __LINE__, "%s: status %d code %s field %s", bad[i].extra, st, code, field);
        json_decref(j);
    }
    /* data errors carry every problem with file:line:column */
    char *b2 = ft_asprintf("{\"model\": \"%s\", \"train_data_path\": \"%s\", \"register_to\": \"main.api\"}", e.model, e.bad);
    j = post_json(port, "/api/runs", b2, &st);
    ft_free(b2);
    CHECK_EQ_INT(st, 400);
    CHECK_STR_EQ(err_code(j), "invalid_data");
    CHECK_STR_EQ(err_field(j), "train_data_path");
    json_t *errs = json_object_get(json_object_get(j, "error"), "errors");
    CHECK_EQ_INT(json_array_size(errs), 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(errs, 0), "line")), 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(json_object_get(j, "error"), "location"), "line")), 2);
    json_decref(j);
    /* a taken name, a missing required field */
    body = create_body(&e, "api-one", "1ba", NULL);
    j = post_json(port, "/api/runs", body, &st);
    ft_free(body);
    CHECK_EQ_INT(st, 400);
    CHECK_STR_EQ(err_field(j), "name");
    json_decref(j);
    j = post_json(port, "/api/runs", "{\"model\": \"m\", \"train_data_path\": \"d\"}", &st);
    CHECK_EQ_INT(st, 400);
    CHECK_STR_EQ(err_field(j), "register_to");
    json_decref(j);
    /* delete: gone from the API, its folder gone */
    j = delete_json(port, "/api/runs/api-one", &st);
    CHECK_EQ_INT(st, 200);
    json_decref(j);
    j = get_json(port, "/api/runs/api-one", NULL, &st);
    CHECK_EQ_INT(st, 404);
    json_decref(j);
    j = delete_json(port, "/api/runs/api-one", &st);
    CHECK_EQ_INT(st, 404);
    json_decref(j);
    CHECK_EQ_INT(stop(pid), 0);
}

TEST(server_api_cancel_resume_and_sigterm) {
    env e;
    REQUIRE(setup(&e));
    int port;
    pid_t pid = serve(&e, &port);
    REQUIRE(pid > 0);
    int st;
    /* long enough to be caught running; a checkpoint every 5 steps */
    char *body = create_body(&e, "api-long", ft_test_sanitized() ? "200ba" : "400ba", ", \"save_interval\": \"5ba\", \"keep_checkpoints\": 2");
    json_t *j = post_json(port, "/api/runs", body, &st);
    ft_free(body);
    CHECK_EQ_INT(st, 201);
    json_decref(j);
    char *s = wait_status(port, "api-long", "RUNNING", 60);
    CHECK_STR_EQ(s, "RUNNING");
    ft_free(s);
    /* a running run is not deleted */
    j = delete_json(port, "/api/runs/api-long", &st);
    CHECK_EQ_INT(st, 409);
    json_decref(j);
    j = post_json(port, "/api/runs/api-long/cancel", "{}", &st);
    CHECK_EQ_INT(st, 200);
    json_decref(j);
    s = wait_status(port, "api-long", "STOPPED|FAILED|COMPLETED", 60);
    CHECK_STR_EQ(s, "STOPPED");
    ft_free(s);
    j = post_json(port, "/api/runs/api-long/cancel", "{}", &st);
    CHECK_EQ_INT(st, 409);
    json_decref(j);
    j = get_json(port, "/api/runs/api-long/checkpoints", NULL, &st);
    CHECK(json_array_size(json_object_get(j, "data")) >= 1);
    json_decref(j);
    /* resume: the worker continues it */
    j = post_json(port, "/api/runs/api-long/resume", "{}", &st);
    CHECK_EQ_INT(st, 200);
    json_decref(j);
    s = wait_status(port, "api-long", "RUNNING", 60);
    CHECK_STR_EQ(s, "RUNNING");
    ft_free(s);
    j = post_json(port, "/api/runs/api-long/resume", "{}", &st);
    CHECK_EQ_INT(st, 409);
    json_decref(j);
    /* SIGTERM: the server stops the run after a checkpoint and exits cleanly */
    CHECK_EQ_INT(stop(pid), 0);
    char *db = ft_path_join(e.home, "ftune.db");
    ft_store *store;
    ft_err err;
    REQUIRE_OK(ft_store_open(db, &store, &err), &err);
    ft_run r;
    REQUIRE_OK(ft_store_run_get(store, "api-long", &r, &err), &err);
    CHECK_EQ_INT(r.status, FT_RUN_STOPPED);
    CHECK(r.details && strstr(r.details, "shutdown"));
    ft_run_deinit(&r);
    ft_store_close(store);
    ft_free(db);
    /* a new server resumes it on its own, to the end, with a loss for every step once */
    pid = serve(&e, &port);
    REQUIRE(pid > 0);
    s = wait_status(port, "api-long", "COMPLETED|FAILED", 300);
    CHECK_STR_EQ(s, "COMPLETED");
    ft_free(s);
    j = get_json(port, "/api/runs/api-long/metrics?name=loss", NULL, &st);
    json_t *data = json_object_get(j, "data");
    CHECK_EQ_INT(json_array_size(data), ft_test_sanitized() ? 200 : 400);
    for (size_t i = 0; i < json_array_size(data); i++)
        if (json_integer_value(json_object_get(json_array_get(data, i), "step")) != (json_int_t)i + 1) {
            ft_test_fail_(__FILE__, __LINE__, "metric %zu has step %lld", i,
                          (long long)json_integer_value(json_object_get(json_array_get(data, i), "step")));
            break;
        }
    json_decref(j);
    CHECK_EQ_INT(stop(pid), 0);
}

/* The names of the runs with `status` (GET /api/runs?status=), sorted, comma-separated, into buf. */
static void runs_with_status(int port, const char *status, char *buf, size_t cap) {
    char path[128];
    snprintf(path, sizeof path, "/api/runs?status=%s", status);
    int st;
    json_t *j = get_json(port, path, NULL, &st);
    json_t *data = json_object_get(j, "data");
    const char *names[8];
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(data) && n < 8; i++)
        names[n++] = json_string_value(json_object_get(json_array_get(data, i), "name"));
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of names */
        for (size_t k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
            const char *t = names[k];
            names[k] = names[k - 1];
            names[k - 1] = t;
        }
    buf[0] = 0;
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? "," : "", names[i]);
    json_decref(j);
}

/* Poll until the runs with `status` are exactly `want` (sorted, comma-separated); whether they were. */
static bool wait_runs_with_status(int port, const char *status, const char *want, double timeout_s, char *seen,
                                  size_t cap) {
    double t0 = ft_time_now();
    while (ft_time_now() - t0 < timeout_s) {
        runs_with_status(port, status, seen, cap);
        if (!strcmp(seen, want))
            return true;
        usleep(50 * 1000);
    }
    return false;
}

TEST(server_workers_two_runs_at_once_and_the_third_waits_for_a_slot) {
    env e;
    REQUIRE(setup(&e));
    int port;
    pid_t pid = serve_workers(&e, &port, "2");
    REQUIRE(pid > 0);
    int st;
    /* long enough to be caught running together; a checkpoint every 5 steps */
    static const char *const names[] = {"w-a", "w-b", "w-c"};
    for (int i = 0; i < 3; i++) {
        char *body = create_body(&e, names[i], ft_test_sanitized() ? "300ba" : "600ba",
                                 ", \"save_interval\": \"5ba\", \"keep_checkpoints\": 1");
        json_t *j = post_json(port, "/api/runs", body, &st);
        ft_free(body);
        CHECK_EQ_INT(st, 201);
        json_decref(j);
    }
    char seen[256];
    /* two execute at once; the third stays QUEUED while both slots are taken */
    CHECK(wait_runs_with_status(port, "RUNNING", "w-a,w-b", 120, seen, sizeof seen));
    if (strcmp(seen, "w-a,w-b"))
        fprintf(stderr, "  running: %s\n", seen);
    runs_with_status(port, "QUEUED", seen, sizeof seen);
    CHECK_STR_EQ(seen, "w-c");
    /* each in its own process */
    int64_t pids[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof path, "/api/runs/%s", names[i]);
        json_t *j = get_json(port, path, NULL, &st);
        pids[i] = json_integer_value(json_object_get(j, "pid"));
        json_decref(j);
    }
    CHECK(pids[0] > 0 && pids[1] > 0 && pids[0] != pids[1]);
    /* a slot frees: the queued run starts while the other keeps running */
    json_t *j = post_json(port, "/api/runs/w-a/cancel", "{}", &st);
    CHECK_EQ_INT(st, 200);
    json_decref(j);
    CHECK(wait_runs_with_status(port, "RUNNING", "w-b,w-c", 120, seen, sizeof seen));
    char *s = wait_status(port, "w-a", "STOPPED|FAILED|COMPLETED", 60);
    CHECK_STR_EQ(s, "STOPPED");
    ft_free(s);
    /* SIGTERM: both running runs stop after a checkpoint, marked as stopped by the shutdown */
    CHECK_EQ_INT(stop(pid), 0);
    char *db = ft_path_join(e.home, "ftune.db");
    ft_store *store;
    ft_err err;
    REQUIRE_OK(ft_store_open(db, &store, &err), &err);
    for (int i = 1; i < 3; i++) {
        ft_run r;
        REQUIRE_OK(ft_store_run_get(store, names[i], &r, &err), &err);
        CHECK_EQ_INT(r.status, FT_RUN_STOPPED);
        CHECK(r.details && strstr(r.details, "shutdown"));
        ft_run_deinit(&r);
    }
    ft_store_close(store);
    ft_free(db);
}

TEST(server_survives_a_crashing_run_which_resumes_then_fails) {
    env e;
    REQUIRE(setup(&e));
    int port;
    g_kill_at_step = "3"; /* every process of the run dies after step 3 */
    pid_t pid = serve(&e, &port);
    g_kill_at_step = NULL;
    REQUIRE(pid > 0);
    int st;
    char *body = create_body(&e, "crash", "6ba", ", \"save_interval\": \"2ba\"");
    json_t *j = post_json(port, "/api/runs", body, &st);
    ft_free(body);
    CHECK_EQ_INT(st, 201);
    json_decref(j);
    /* the worker resumes it from its checkpoint after each crash, then gives up */
    char *s = wait_status(port, "crash", "FAILED|COMPLETED", 180);
    CHECK_STR_EQ(s, "FAILED");
    ft_free(s);
    j = get_json(port, "/api/runs/crash", NULL, &st);
    const char *details = json_string_value(json_object_get(j, "details"));
    CHECK(details && strstr(details, "again after three resumes"));
    json_decref(j);
    j = get_json(port, "/api/runs/crash/events", NULL, &st);
    int resumes = 0;
    json_t *data = json_object_get(j, "data");
    for (size_t i = 0; i < json_array_size(data); i++) {
        const char *m = json_string_value(json_object_get(json_array_get(data, i), "message"));
        resumes += m && strstr(m, "is gone: resuming from the latest checkpoint") != NULL;
    }
    CHECK_EQ_INT(resumes, 3);
    json_decref(j);
    /* the server is unharmed */
    j = get_json(port, "/health", NULL, &st);
    CHECK_EQ_INT(st, 200);
    json_decref(j);
    j = get_json(port, "/api/runs", NULL, &st);
    CHECK_EQ_INT(st, 200);
    json_decref(j);
    CHECK_EQ_INT(stop(pid), 0);
}

/* ---------------------------------------------------------------- load: 20 clients and a real run */

enum { N_CLIENTS = 20 };

typedef struct load_client {
    int port;
    int64_t events, lists, errors, last;
    bool ordered, ended;
    double first_event_s;
} load_client;

static void *load_main(void *arg) {
    load_client *c = arg;
    c->ordered = true;
    double t0 = ft_time_now();
    for (int k = 0; k < 10; k++) {
        int st;
        json_t *j = get_json(c->port, k % 2 ? "/api/runs?status=RUNNING,QUEUED,STARTING" : "/api/runs", NULL, &st);
        if (st == 200 && json_is_array(json_object_get(j, "data")))
            c->lists++;
        else
            c->errors++;
        json_decref(j);
    }
    sse_client s;
    if (!sse_open(&s, c->port, "api-load", -1)) {
        c->errors++;
        return NULL;
    }
    int64_t id;
    while ((id = sse_next(&s, NULL, 0)) > 0) {
        if (!c->events)
            c->first_event_s = ft_time_now() - t0;
        if (id != c->last + 1)
            c->ordered = false;
        c->last = id;
        c->events++;
    }
    c->ended = id == -1;
    sse_close(&s);
    return NULL;
}

TEST(server_twenty_clients_list_and_follow_a_training_run) {
    env e;
    REQUIRE(setup(&e));
    int port;
    pid_t pid = serve(&e, &port);
    REQUIRE(pid > 0);
    int st;
    char *body = create_body(&e, "api-load", ft_test_sanitized() ? "60ba" : "150ba", ", \"save_interval\": \"50ba\"");
    json_t *j = post_json(port, "/api/runs", body, &st);
    ft_free(body);
    CHECK_EQ_INT(st, 201);
    json_decref(j);
    double t0 = ft_time_now();
    pthread_t th[N_CLIENTS];
    load_client c[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].port = port;
        pthread_create(&th[i], NULL, load_main, &c[i]);
    }
    int64_t events = 0, lists = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(c[i].errors, 0);
        CHECK(c[i].ordered);
        CHECK(c[i].ended);
        events += c[i].events;
        lists += c[i].lists;
    }
    double dt = ft_time_now() - t0;
    /* every client saw every event of the run, from CREATED to COMPLETED */
    j = get_json(port, "/api/runs/api-load/events", NULL, &st);
    size_t n = json_array_size(json_object_get(j, "data"));
    const char *last_type = json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), n - 1), "type"));
    CHECK_STR_EQ(last_type, "COMPLETED");
    for (int i = 0; i < N_CLIENTS; i++)
        CHECK_EQ_INT(c[i].last, (int64_t)n);
    json_decref(j);
    fprintf(stderr, "  [load] %d clients while a run trained: %lld list requests, %lld streamed events in %.1f s\n",
            N_CLIENTS, (long long)lists, (long long)events, dt);
    CHECK_EQ_INT(stop(pid), 0);
}

/* A run outlives a worker killed with SIGKILL (the run is its own process); the next worker must
 * start at once (the run's process does not hold the worker's lock) and leave the live run alone. */
TEST(worker_killed_leaves_its_run_running_and_the_next_worker_starts) {
    env e;
    REQUIRE(setup(&e));
    char *cmd = ft_asprintf("FTUNE_HOME='%s' USER=tester OMP_NUM_THREADS=1 %s create --detach --quiet "
                            "--model '%s' --train-data-path '%s' --register-to main.w --name w-orphan "
                            "--training-duration %s --learning-rate 0.001 --context-length 64 --global-batch-size 4 "
                            "--micro-batch-size 2 --threads 1 --save-interval 5ba --keep-checkpoints 1 2>&1",
                            e.home, ft_test_ftune_bin(), e.model, e.train, ft_test_sanitized() ? "400ba" : "2000ba");
    char *out = NULL;
    int crc = ft_test_run(cmd, &out);
    if (crc != 0)
        ft_test_fail_(__FILE__, __LINE__, "ftune create exited %d: %s", crc, out ? out : "");
    free(out);
    ft_free(cmd);
    char *db = ft_path_join(e.home, "ftune.db");
    ft_store *s;
    ft_err err;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    ft_run r = {0};
    double t0 = ft_time_now();
    bool running = false;
    while (!running && ft_time_now() - t0 < 60) {
        REQUIRE_OK(ft_store_run_get(s, "w-orphan", &r, &err), &err);
        running = r.status == FT_RUN_RUNNING;
        if (!running) {
            ft_run_deinit(&r);
            usleep(50 * 1000);
        }
    }
    REQUIRE(running);
    int64_t run_pid = r.pid;
    ft_run_deinit(&r);
    /* SIGKILL the worker (its pid is in worker.lock) */
    char *lock = ft_path_join(e.home, "worker.lock");
    char *text = NULL;
    size_t len = 0;
    REQUIRE_OK(ft_file_read_all(lock, &text, &len, &err), &err);
    long worker = atol(text);
    ft_free(text);
    ft_free(lock);
    REQUIRE(worker > 0 && worker != run_pid);
    kill((pid_t)worker, SIGKILL);
    usleep(200 * 1000);
    CHECK(kill((pid_t)run_pid, 0) == 0); /* the run goes on */
    /* a new worker takes the lock and serves (timeout stops it: exit 124), rather than finding the
     * lock held (exit 1) */
    cmd = ft_asprintf("FTUNE_HOME='%s' timeout -s TERM 2 %s worker --quiet --poll 0.2 >/dev/null 2>&1", e.home,
                      ft_test_ftune_bin());
    CHECK_EQ_INT(ft_test_run(cmd, NULL), 124);
    ft_free(cmd);
    /* it left the live run alone */
    REQUIRE_OK(ft_store_run_get(s, "w-orphan", &r, &err), &err);
    CHECK_EQ_INT(r.status, FT_RUN_RUNNING);
    CHECK_EQ_INT(r.pid, run_pid);
    ft_run_deinit(&r);
    /* cancel: the orphaned run's own process stops it after a checkpoint */
    cmd = ft_asprintf("FTUNE_HOME='%s' %s cancel w-orphan >/dev/null 2>&1", e.home, ft_test_ftune_bin());
    CHECK_EQ_INT(ft_test_run(cmd, NULL), 0);
    ft_free(cmd);
    for (t0 = ft_time_now(); kill((pid_t)run_pid, 0) == 0 && ft_time_now() - t0 < 60;)
        usleep(50 * 1000);
    REQUIRE_OK(ft_store_run_get(s, "w-orphan", &r, &err), &err);
    CHECK_EQ_INT(r.status, FT_RUN_STOPPED);
    ft_run_deinit(&r);
    ft_store_close(s);
    ft_free(db);
}
