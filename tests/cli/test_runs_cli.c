/* tests/cli: the run commands end to end through the real binary, without training: create's
 * validation (every bad value exits 2 naming its flag), the queue with --detach, cancel of a
 * queued run, list/get/events/metrics --json, delete, and the registry commands. Each test has
 * its own FTUNE_HOME. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "ftune/json.h"
#include "ftune/store.h"
#include "test.h"

/* Run `ftune ARGS` with FTUNE_HOME=home; stdout (and stderr when `merge`) into *out. */
static int ftune(const char *home, bool merge, char **out, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int ftune(const char *home, bool merge, char **out, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *cmd = ft_asprintf("FTUNE_HOME='%s' USER=tester %s %s%s", home, ft_test_ftune_bin(), args,
                            merge ? " 2>&1" : " 2>/dev/null");
    char *o = NULL;
    int rc = ft_test_run(cmd, &o);
    ft_free(cmd);
    if (out)
        *out = o;
    else
        free(o);
    return rc;
}

static json_t *parse(const char *s) {
    json_error_t e;
    return s ? json_loads(s, 0, &e) : NULL;
}

TEST(cli_create_rejects_bad_values_naming_the_flag) {
    const char *home = ft_test_tmpdir();
    char *data = ft_path_join(home, "d.jsonl");
    ft_file_write_atomic(data, "{}\n", 3, NULL);
    static const struct {
        const char *args, *flag;
    } cases[] = {
        {"--learning-rate abc", "--learning-rate"},
        {"--learning-rate -1", "--learning-rate"},
        {"--training-duration 3x", "--training-duration"},
        {"--task-type CHAT", "--task-type"},
        {"--optimizer sgd", "--optimizer"},
        {"--context-length 1", "--context-length"},
        {"--warmup lots", "--warmup"},
        {"--loss-on everything", "--loss-on"},
        {"--save-interval 10tok", "--save-interval"},
        {"--global-batch-size -4", "--global-batch-size"},
        {"--seed x", "--seed"},
        {"--threads -1", "--threads"},
        {"--name a/b", "--name"},
        {"--register-to main", "--register-to"},
        {"--register-to a.b.c.d", "--register-to"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out;
        const char *reg = strstr(cases[i].args, "--register-to") ? "" : "--register-to main.demo";
        int rc = ftune(home, true, &out, "create --model m --train-data-path '%s' %s %s", data, reg, cases[i].args);
        if (rc != 2 || !out || !strstr(out, cases[i].flag))
            ft_test_fail_(__FILE__, __LINE__, "%s: exit %d, output: %s", cases[i].args, rc, out ? out : "");
        free(out);
    }
    /* required flags and a missing data path */
    char *out;
    char *mdir = ft_path_join(home, "m"), *mcfg = ft_path_join(home, "m/config.json");
    ft_mkdir_p(mdir, NULL);
    ft_file_write_atomic(mcfg, "{}", 2, NULL);
    CHECK_EQ_INT(ftune(home, true, &out, "create --train-data-path x --register-to a.b"), 2);
    CHECK(out && strstr(out, "--model"));
    free(out);
    CHECK_EQ_INT(ftune(home, true, &out, "create --model '%s' --train-data-path /nonexistent/d.jsonl --register-to a.b", mdir), 2);
    CHECK(out && strstr(out, "--train-data-path") && strstr(out, "/nonexistent/d.jsonl"));
    free(out);
    /* nothing was recorded */
    CHECK_EQ_INT(ftune(home, false, &out, "list --json"), 0);
    CHECK(out && strstr(out, "[]"));
    free(out);
    ft_free(data);
    ft_free(mdir);
    ft_free(mcfg);
}

/* Hold the worker lock so that --detach queues without starting a worker. */
static int hold_worker_lock(const char *home) {
    char *p = ft_path_join(home, "worker.lock");
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ft_free(p);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

TEST(cli_queue_cancel_list_events_delete) {
    const char *home = ft_test_tmpdir();
    int lock = hold_worker_lock(home);
    REQUIRE(lock >= 0);
    char *out;
    REQUIRE(ftune(home, false, &out,
                  "create --model org/Tiny-Model_1 --train-data-path /x.jsonl --register-to main.demo "
                  "--no-validate-inputs --detach --task-type INSTRUCTION_FINETUNE --learning-rate 1e-3") == 0);
    char name[128] = "";
    sscanf(out ? out : "", "%127s", name);
    free(out);
    /* SPEC §1 name: task prefix, model slug, 6 lowercase letters */
    CHECK(strncmp(name, "ift-tiny-model-1-", 17) == 0 && strlen(name) == 23);

    REQUIRE(ftune(home, false, &out, "create --model m --train-data-path /y --register-to main.demo "
                                     "--no-validate-inputs --detach --name second --json") == 0);
    json_t *j = parse(out);
    free(out);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "status")), "QUEUED");
    CHECK_STR_EQ(json_string_value(json_object_get(j, "experiment_path")), "/Users/tester/second");
    /* the same object as `get --json`: checkpoints and evaluations, none yet */
    CHECK(json_is_array(json_object_get(j, "checkpoints")) && json_is_array(json_object_get(j, "evaluations")));
    json_decref(j);

    REQUIRE(ftune(home, false, &out, "list --json --status queued") == 0);
    j = parse(out);
    free(out);
    CHECK_EQ_INT(json_array_size(j), 2);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(j, 0), "name")), "second");
    json_decref(j);
    REQUIRE(ftune(home, false, &out, "list --json --limit 1") == 0);
    j = parse(out);
    free(out);
    CHECK_EQ_INT(json_array_size(j), 1);
    json_decref(j);
    CHECK_EQ_INT(ftune(home, true, NULL, "list --status BOGUS"), 2);

    REQUIRE(ftune(home, false, &out, "cancel %s --json", name) == 0);
    j = parse(out);
    free(out);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "status")), "STOPPED");
    json_decref(j);
    REQUIRE(ftune(home, false, &out, "events %s --json", name) == 0);
    j = parse(out);
    free(out);
    REQUIRE(json_array_size(j) == 3);
    const char *types[] = {"CREATED", "QUEUED", "STOPPED"};
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(j, i);
        CHECK_STR_EQ(json_string_value(json_object_get(e, "type")), types[i]);
        CHECK_EQ_INT(json_integer_value(json_object_get(e, "seq")), (int64_t)i + 1);
        CHECK(json_is_string(json_object_get(e, "time")) && json_is_string(json_object_get(e, "level")) &&
              json_is_string(json_object_get(e, "message")));
    }
    json_decref(j);
    /* --follow ends by itself on a finished run */
    REQUIRE(ftune(home, false, &out, "events %s --follow", name) == 0);
    CHECK(out && strstr(out, "STOPPED"));
    free(out);
    REQUIRE(ftune(home, false, &out, "metrics %s --json", name) == 0);
    CHECK(out && strstr(out, "[]"));
    free(out);
    REQUIRE(ftune(home, false, &out, "get %s", name) == 0);
    CHECK(out && strstr(out, "STOPPED") && strstr(out, "cancelled"));
    free(out);

    /* delete removes the record and the run folder */
    char *dir = ft_asprintf("%s/experiments/Users/tester/second/second", home);
    REQUIRE_OK(ft_mkdir_p(dir, NULL), (ft_err *)NULL);
    char *other = ft_asprintf("%s/experiments/Users/tester/shared/other", home);
    REQUIRE_OK(ft_mkdir_p(other, NULL), (ft_err *)NULL);
    CHECK_EQ_INT(ftune(home, false, NULL, "delete second"), 0);
    CHECK(!ft_path_exists(dir));
    /* the run's own experiment folder (/Users/tester/second) goes too; others stay */
    char *exp = ft_asprintf("%s/experiments/Users/tester/second", home);
    CHECK(!ft_path_exists(exp));
    CHECK(ft_path_is_dir(other));
    ft_free(exp);
    ft_free(other);
    CHECK_EQ_INT(ftune(home, true, &out, "get second"), 2);
    CHECK(out && strstr(out, "no run named"));
    free(out);
    ft_free(dir);
    CHECK_EQ_INT(ftune(home, true, NULL, "delete no-such-run"), 2);
    close(lock);
}

TEST(cli_registry_commands) {
    const char *home = ft_test_tmpdir();
    ft_err err;
    char *src = ft_path_join(home, "export"), *db = ft_path_join(home, "ftune.db");
    REQUIRE_OK(ft_mkdir_p(src, &err), &err);
    char *f = ft_path_join(src, "config.json");
    ft_file_write_atomic(f, "{}", 2, NULL);
    ft_free(f);
    ft_store *s;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.ner", src, "chat-a-aaaaaa", NULL, NULL, NULL, &err), &err);
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.ner", src, "chat-a-bbbbbb", NULL, NULL, NULL, &err), &err);
    ft_store_close(s);
    char *out;
    REQUIRE(ftune(home, false, &out, "registry show main.demo.ner --json") == 0);
    json_t *j = parse(out);
    free(out);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "name")), "main.demo.ner");
    json_t *vs = json_object_get(j, "versions");
    REQUIRE(json_array_size(vs) == 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(vs, 1), "version")), 2);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(vs, 1), "run")), "chat-a-bbbbbb");
    char *p2 = ft_asprintf("%s/registry/main/demo/ner/2", home);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(vs, 1), "path")), p2);
    ft_free(p2);
    CHECK(json_is_string(json_object_get(json_array_get(vs, 0), "created")));
    json_decref(j);
    REQUIRE(ftune(home, false, &out, "registry show main.demo.ner/1 --json") == 0);
    j = parse(out);
    free(out);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "versions")), 1);
    json_decref(j);
    REQUIRE(ftune(home, false, &out, "registry list") == 0);
    CHECK(out && strstr(out, "main.demo.ner"));
    free(out);
    CHECK_EQ_INT(ftune(home, true, NULL, "registry show main.demo.none"), 2);
    CHECK_EQ_INT(ftune(home, true, NULL, "registry show notaname"), 2);
    CHECK_EQ_INT(ftune(home, true, NULL, "registry frob"), 2);
    ft_free(src);
    ft_free(db);
}

TEST(cli_models_catalogue) {
    char *out;
    const char *home = ft_test_tmpdir();
    char *cmd = ft_asprintf("HF_HUB_CACHE='%s/hub' FTUNE_HOME='%s' %s models --json", home, home, ft_test_ftune_bin());
    REQUIRE(ft_test_run(cmd, &out) == 0);
    ft_free(cmd);
    json_t *j = parse(out);
    free(out);
    REQUIRE(json_is_array(j));
    CHECK(json_array_size(j) >= 30);
    bool found = false;
    for (size_t i = 0; i < json_array_size(j); i++) {
        json_t *m = json_array_get(j, i);
        if (!strcmp(json_string_value(json_object_get(m, "name")), "meta-llama/Meta-Llama-3-8B-Instruct")) {
            found = true;
            CHECK_EQ_INT(json_integer_value(json_object_get(m, "max_context_length")), 8192);
            CHECK(json_is_false(json_object_get(m, "present")));
        }
        if (strstr(json_string_value(json_object_get(m, "name")), "405B-Instruct"))
            CHECK_NEAR(json_real_value(json_object_get(m, "default_learning_rate")), 1e-5, 1e-12);
    }
    CHECK(found);
    json_decref(j);
}
