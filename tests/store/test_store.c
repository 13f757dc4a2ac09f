/* tests/store: the SQLite run store: migrations, the run lifecycle, events, metrics, checkpoints,
 * concurrent readers while a writer commits, and a writer killed in the middle of a transaction. */
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ftune/store.h"
#include "test.h"

static char *db_in_tmp(void) { return ft_path_join(ft_test_tmpdir(), "ftune.db"); }

static ft_status make_run(ft_store *s, const char *name, ft_err *err) {
    ft_run r = {0};
    r.name = (char *)name;
    r.model = (char *)"models/tiny";
    r.task_type = (char *)"CHAT_COMPLETION";
    r.train_data_path = (char *)"data/train.jsonl";
    r.register_to = (char *)"main.demo";
    r.training_duration = (char *)"2ep";
    r.learning_rate = 1e-3;
    r.config_json = (char *)"{\"seed\":17}";
    return ft_store_run_create(s, &r, err);
}

TEST(store_migrations_apply_once_and_refuse_newer) {
    ft_err err;
    char *db = db_in_tmp();
    ft_store *s;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    CHECK_EQ_INT(ft_store_schema_version(s), ft_store_schema_latest());
    ft_store_close(s);
    /* Reopening applies nothing new. */
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    CHECK_EQ_INT(ft_store_schema_version(s), ft_store_schema_latest());
    ft_store_close(s);
    /* The journal is WAL. */
    sqlite3 *raw;
    REQUIRE(sqlite3_open(db, &raw) == SQLITE_OK);
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK_STR_EQ((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    /* A store from a newer ftune is refused, not damaged. */
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO schema_version VALUES (%lld, 0)", (long long)ft_store_schema_latest() + 1);
    REQUIRE(sqlite3_exec(raw, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(raw);
    CHECK(ft_store_open(db, &s, &err) == FT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "newer") != NULL);
    ft_free(db);
}

TEST(store_run_lifecycle_and_events) {
    ft_err err;
    char *db = db_in_tmp();
    ft_store *s;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    REQUIRE_OK(make_run(s, "chat-tiny-abcdef", &err), &err);
    CHECK(make_run(s, "chat-tiny-abcdef", &err) == FT_ERR_INVALID); /* names are unique */

    ft_run r;
    REQUIRE_OK(ft_store_run_get(s, "chat-tiny-abcdef", &r, &err), &err);
    CHECK_EQ_INT(r.status, FT_RUN_PENDING);
    CHECK_STR_EQ(r.register_to, "main.demo");
    CHECK_NEAR(r.learning_rate, 1e-3, 1e-15);
    CHECK(r.created > 0);
    ft_run_deinit(&r);
    CHECK(ft_store_run_get(s, "nope", &r, &err) == FT_ERR_NOT_FOUND);

    const char *path = "chat-tiny-abcdef";
    CHECK_OK(ft_store_run_set_status(s, path, FT_RUN_QUEUED, "QUEUED", "INFO", "queued", NULL, &err), &err);
    /* QUEUED cannot jump to COMPLETED */
    CHECK(ft_store_run_set_status(s, path, FT_RUN_COMPLETED, "COMPLETED", "INFO", "", NULL, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "QUEUED") && strstr(err.msg, "COMPLETED"));
    CHECK_OK(ft_store_run_set_status(s, path, FT_RUN_STARTING, NULL, NULL, NULL, NULL, &err), &err);
    CHECK_OK(ft_store_run_set_status(s, path, FT_RUN_RUNNING, "STARTED", "INFO", "started", NULL, &err), &err);
    CHECK_OK(ft_store_run_set_progress(s, path, 0.45, 192, &err), &err);
    CHECK_OK(ft_store_run_set_status(s, path, FT_RUN_COMPLETED, "COMPLETED", "INFO", "done", NULL, &err), &err);
    /* COMPLETED is final */
    CHECK(ft_store_run_set_status(s, path, FT_RUN_STARTING, NULL, NULL, NULL, NULL, &err) == FT_ERR_INVALID);
    REQUIRE_OK(ft_store_run_get(s, path, &r, &err), &err);
    CHECK_EQ_INT(r.status, FT_RUN_COMPLETED);
    CHECK(r.finished >= r.started && r.started > 0);
    CHECK_NEAR(r.progress, 1.0, 0);
    json_t *j = ft_run_to_json(&r);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "status")), "COMPLETED");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "config"), "seed")), 17);
    json_decref(j);
    ft_run_deinit(&r);

    ft_event *ev;
    size_t n;
    REQUIRE_OK(ft_store_event_list(s, path, 0, &ev, &n, &err), &err);
    REQUIRE(n == 4);
    const char *types[] = {"CREATED", "QUEUED", "STARTED", "COMPLETED"};
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(ev[i].seq, (int64_t)i + 1);
        CHECK_STR_EQ(ev[i].type, types[i]);
    }
    ft_event_list_free(ev, n);
    REQUIRE_OK(ft_store_event_list(s, path, 2, &ev, &n, &err), &err); /* --follow reads after a seq */
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(n ? ev[0].seq : 0, 3);
    ft_event_list_free(ev, n);

    /* status filter and limit */
    REQUIRE_OK(make_run(s, "chat-tiny-second", &err), &err);
    ft_run *runs;
    REQUIRE_OK(ft_store_run_list(s, 0, 0, &runs, &n, &err), &err);
    CHECK_EQ_INT(n, 2);
    CHECK_STR_EQ(n ? runs[0].name : "", "chat-tiny-second"); /* newest first */
    ft_run_list_free(runs, n);
    REQUIRE_OK(ft_store_run_list(s, 1u << FT_RUN_COMPLETED, 0, &runs, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    ft_run_list_free(runs, n);
    REQUIRE_OK(ft_store_run_list(s, 0, 1, &runs, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    ft_run_list_free(runs, n);

    /* the worker's claim takes the oldest queued run once */
    CHECK_OK(ft_store_run_set_status(s, "chat-tiny-second", FT_RUN_QUEUED, "QUEUED", "INFO", "", NULL, &err), &err);
    char *claimed = NULL;
    CHECK_OK(ft_store_run_claim_next(s, 1234, "hostx", &claimed, &err), &err);
    CHECK_STR_EQ(claimed, "chat-tiny-second");
    ft_free(claimed);
    CHECK_OK(ft_store_run_claim_next(s, 1234, "hostx", &claimed, &err), &err);
    CHECK(claimed == NULL);
    REQUIRE_OK(ft_store_run_get(s, "chat-tiny-second", &r, &err), &err);
    CHECK_EQ_INT(r.status, FT_RUN_STARTING);
    CHECK_EQ_INT(r.pid, 1234);
    CHECK_STR_EQ(r.host, "hostx");
    ft_run_deinit(&r);

    /* take-over is compare-and-set on the owner */
    CHECK_OK(ft_store_run_take_over(s, "chat-tiny-second", 1234, 777, "hosty", &err), &err);
    CHECK(ft_store_run_take_over(s, "chat-tiny-second", 1234, 888, "hostz", &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "777") != NULL);
    REQUIRE_OK(ft_store_run_get(s, "chat-tiny-second", &r, &err), &err);
    CHECK_EQ_INT(r.pid, 777);
    ft_run_deinit(&r);

    CHECK_OK(ft_store_run_delete(s, path, &err), &err);
    CHECK(ft_store_run_get(s, path, &r, &err) == FT_ERR_NOT_FOUND);
    CHECK(ft_store_event_list(s, path, 0, &ev, &n, &err) == FT_ERR_NOT_FOUND);
    ft_store_close(s);
    ft_free(db);
}

TEST(store_transitions_table) {
    CHECK(ft_run_transition_ok(FT_RUN_PENDING, FT_RUN_QUEUED));
    CHECK(ft_run_transition_ok(FT_RUN_RUNNING, FT_RUN_TERMINATING));
    CHECK(ft_run_transition_ok(FT_RUN_TERMINATING, FT_RUN_STOPPED));
    CHECK(ft_run_transition_ok(FT_RUN_STOPPED, FT_RUN_STARTING)); /* resume */
    CHECK(ft_run_transition_ok(FT_RUN_RUNNING, FT_RUN_QUEUED));   /* dead process, handed back */
    CHECK(!ft_run_transition_ok(FT_RUN_COMPLETED, FT_RUN_FAILED));
    CHECK(!ft_run_transition_ok(FT_RUN_STOPPED, FT_RUN_COMPLETED));
    CHECK(!ft_run_transition_ok(FT_RUN_QUEUED, FT_RUN_RUNNING));
    CHECK(!ft_run_transition_ok(FT_RUN_FAILED, FT_RUN_STOPPED));
    ft_run_status st;
    CHECK(ft_run_status_parse("running", &st) && st == FT_RUN_RUNNING);
    CHECK(!ft_run_status_parse("RUN", &st));
}

TEST(store_metrics_and_checkpoints) {
    ft_err err;
    char *db = db_in_tmp();
    ft_store *s;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    REQUIRE_OK(make_run(s, "r", &err), &err);
    const char *names[] = {"loss", "lr"};
    for (int step = 1; step <= 5; step++) {
        double v[] = {3.0 - step * 0.1, 1e-3};
        CHECK_OK(ft_store_metrics_add(s, "r", step, names, v, 2, &err), &err);
    }
    ft_metric *m;
    size_t n;
    REQUIRE_OK(ft_store_metrics_list(s, "r", "loss", &m, &n, &err), &err);
    CHECK_EQ_INT(n, 5);
    CHECK_NEAR(n ? m[4].value : 0, 2.5, 1e-12);
    ft_free(m);
    REQUIRE_OK(ft_store_metrics_list(s, "r", NULL, &m, &n, &err), &err);
    CHECK_EQ_INT(n, 10);
    ft_free(m);
    /* a resume from step 3 forgets the replayed steps */
    CHECK_OK(ft_store_metrics_truncate(s, "r", 3, &err), &err);
    REQUIRE_OK(ft_store_metrics_list(s, "r", "loss", &m, &n, &err), &err);
    CHECK_EQ_INT(n, 3);
    ft_free(m);

    CHECK_OK(ft_store_checkpoint_add(s, "r", "ep0-ba3", "/x/ep0-ba3", 3, 0, &err), &err);
    CHECK_OK(ft_store_checkpoint_add(s, "r", "ep1-ba6", "/x/ep1-ba6", 6, 1, &err), &err);
    ft_checkpoint_row *c;
    REQUIRE_OK(ft_store_checkpoint_list(s, "r", &c, &n, &err), &err);
    CHECK_EQ_INT(n, 2);
    CHECK_STR_EQ(n == 2 ? c[1].name : "", "ep1-ba6");
    ft_checkpoint_list_free(c, n);
    ft_store_close(s);
    ft_free(db);
}

/* A child process commits events one by one while the parent reads: every read sees a gap-free
 * prefix 1..k of the sequence, growing, and never an error. */
TEST(store_concurrent_readers_while_writing) {
    ft_err err;
    char *db = db_in_tmp();
    ft_store *s;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    REQUIRE_OK(make_run(s, "w", &err), &err); /* seq 1: CREATED */
    const int N = ft_test_sanitized() ? 60 : 200;
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ft_store *w;
        if (ft_store_open(db, &w, NULL) != FT_OK)
            _exit(3);
        for (int i = 0; i < N; i++) {
            char msg[32];
            snprintf(msg, sizeof msg, "step %d", i);
            if (ft_store_event_add(w, "w", "TRAIN_UPDATED", "INFO", msg, NULL, NULL) != FT_OK)
                _exit(4);
        }
        ft_store_close(w);
        _exit(0);
    }
    int64_t last = 0, reads = 0;
    bool ok = true;
    for (;;) {
        int status;
        pid_t done = waitpid(pid, &status, WNOHANG);
        ft_event *ev;
        size_t n;
        if (ft_store_event_list(s, "w", 0, &ev, &n, &err) != FT_OK) {
            ok = false;
            break;
        }
        for (size_t i = 0; i < n; i++)
            if (ev[i].seq != (int64_t)i + 1)
                ok = false;
        if ((int64_t)n < last)
            ok = false;
        last = (int64_t)n;
        reads++;
        ft_event_list_free(ev, n);
        if (done == pid) {
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            break;
        }
    }
    CHECK(ok);
    CHECK(reads > 1);
    ft_event *ev;
    size_t n;
    REQUIRE_OK(ft_store_event_list(s, "w", 0, &ev, &n, &err), &err);
    CHECK_EQ_INT(n, N + 1);
    ft_event_list_free(ev, n);
    ft_store_close(s);
    ft_free(db);
}

/* A writer killed with SIGKILL inside an open transaction: the store opens, passes SQLite's
 * integrity check, and holds exactly the events committed before the kill. */
TEST(store_killed_writer_leaves_consistent_store) {
    ft_err err;
    char *db = db_in_tmp();
    ft_store *s;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    REQUIRE_OK(make_run(s, "k", &err), &err);
    ft_store_close(s);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const int committed = 25;
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        ft_store *w;
        if (ft_store_open(db, &w, NULL) != FT_OK)
            _exit(3);
        for (int i = 0; i < committed; i++)
            if (ft_store_event_add(w, "k", "TRAIN_UPDATED", "INFO", "committed", NULL, NULL) != FT_OK)
                _exit(4);
        /* Now an uncommitted transaction that keeps writing until it is killed. */
        sqlite3 *raw;
        if (sqlite3_open(db, &raw) != SQLITE_OK)
            _exit(5);
        sqlite3_busy_timeout(raw, 10000);
        sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        for (int i = 0;; i++) {
            char sql[256];
            snprintf(sql, sizeof sql,
                     "INSERT INTO events VALUES ((SELECT id FROM runs WHERE name='k'), %d, 0, 'X', 'INFO', "
                     "printf('%%.2000c', 'x'))",
                     1000 + i);
            sqlite3_exec(raw, sql, NULL, NULL, NULL);
            if (i == 200) /* enough to spill pages into the WAL */
                if (write(fds[1], "k", 1) != 1)
                    _exit(6);
        }
    }
    close(fds[1]);
    char c;
    CHECK(read(fds[0], &c, 1) == 1);
    close(fds[0]);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));

    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    ft_event *ev;
    size_t n;
    REQUIRE_OK(ft_store_event_list(s, "k", 0, &ev, &n, &err), &err);
    CHECK_EQ_INT(n, committed + 1);
    ft_event_list_free(ev, n);
    /* and it still takes writes */
    CHECK_OK(ft_store_event_add(s, "k", "COMPLETED", "INFO", "after the crash", NULL, &err), &err);
    ft_store_close(s);
    sqlite3 *raw;
    REQUIRE(sqlite3_open(db, &raw) == SQLITE_OK);
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK_STR_EQ((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(raw);
    ft_free(db);
}

TEST(store_run_names) {
    ft_rng rng;
    ft_rng_seed(&rng, 1);
    char *n = ft_run_name_generate("INSTRUCTION_FINETUNE", "meta-llama/Meta-Llama-3.1-8B-Instruct", &rng);
    REQUIRE(n);
    CHECK(strncmp(n, "ift-meta-llama-3-1-8b-instruct-", 31) == 0);
    CHECK_EQ_INT(strlen(n), 31 + 6);
    for (size_t i = 31; i < strlen(n); i++)
        CHECK(n[i] >= 'a' && n[i] <= 'z');
    ft_free(n);
    char *s = ft_model_slug("main.demo.my_model/2");
    CHECK_STR_EQ(s, "my-model");
    ft_free(s);
    s = ft_model_slug("/tmp/x/tiny-llama/");
    CHECK_STR_EQ(s, "tiny-llama");
    ft_free(s);
    n = ft_run_name_generate("CHAT_COMPLETION", "./m", &rng);
    CHECK(n && strncmp(n, "chat-m-", 7) == 0);
    ft_free(n);
    n = ft_run_name_generate("CONTINUED_PRETRAIN", "a/b", &rng);
    CHECK(n && strncmp(n, "cpt-b-", 6) == 0);
    ft_free(n);
    const char *prev = getenv("FTUNE_HOME");
    char *saved = prev ? ft_strdup(prev) : NULL;
    setenv("FTUNE_HOME", "/h", 1);
    char *d = NULL;
    CHECK_OK(ft_experiment_dir("/Users/me/exp", &d, NULL), (ft_err *)NULL);
    CHECK_STR_EQ(d, "/h/experiments/Users/me/exp");
    ft_free(d);
    CHECK_OK(ft_experiment_dir("/tmp/exp", &d, NULL), (ft_err *)NULL);
    CHECK_STR_EQ(d, "/tmp/exp");
    ft_free(d);
    if (saved)
        setenv("FTUNE_HOME", saved, 1);
    else
        unsetenv("FTUNE_HOME");
    ft_free(saved);
}
