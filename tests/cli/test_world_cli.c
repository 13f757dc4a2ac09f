/* tests/cli/test_world_cli.c: `ftune get` shows the processes a run trained on (issue #15): the
 * world size and hosts the run's config records ("world_size", "hosts": one host per rank), a started
 * run without them as one process on its host, nothing for a run not started yet or a config whose
 * fields are malformed; the same in --json. Runs are made through the store API. */
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "ftune/store.h"
#include "test.h"

static int get(const char *home, const char *args, char **out) {
    char *cmd = ft_asprintf("FTUNE_HOME='%s' %s get %s 2>&1", home, ft_test_ftune_bin(), args);
    int rc = ft_test_run(cmd, out);
    ft_free(cmd);
    return rc;
}

/* The "processes" line of `ftune get NAME` (owned by the caller; NULL when there is none). */
static char *processes_line(const char *home, const char *name) {
    char *out = NULL, *args = ft_asprintf("'%s'", name);
    int rc = get(home, args, &out);
    ft_free(args);
    char *line = NULL;
    const char *p = rc == 0 && out ? strstr(out, "\nprocesses ") : NULL;
    if (p) {
        p++;
        const char *nl = strchr(p, '\n');
        line = ft_strndup(p, nl ? (size_t)(nl - p) : strlen(p));
    } else if (rc != 0) {
        ft_test_fail_(__FILE__, __LINE__, "ftune get %s exited %d: %s", name, rc, out ? out : "");
    }
    free(out);
    return line;
}

static json_t *get_json(const char *home, const char *name) {
    char *out = NULL, *args = ft_asprintf("'%s' --json", name);
    int rc = get(home, args, &out);
    ft_free(args);
    json_error_t je;
    json_t *j = rc == 0 && out ? json_loads(out, 0, &je) : NULL;
    if (!j)
        ft_test_fail_(__FILE__, __LINE__, "ftune get %s --json exited %d: %s", name, rc, out ? out : "");
    free(out);
    return j;
}

static void add_run(ft_store *s, const char *name, const char *config, bool start, const char *host) {
    ft_err e;
    ft_run r = {.name = (char *)name, .model = "m", .task_type = "CHAT_COMPLETION", .train_data_path = "/x.jsonl",
                .config_json = (char *)config};
    CHECK_OK(ft_store_run_create(s, &r, &e), &e);
    if (!start)
        return;
    CHECK_OK(ft_store_run_set_status(s, name, FT_RUN_QUEUED, NULL, NULL, NULL, NULL, &e), &e);
    CHECK_OK(ft_store_run_set_status(s, name, FT_RUN_STARTING, NULL, NULL, NULL, NULL, &e), &e);
    CHECK_OK(ft_store_run_set_owner(s, name, 1, host, &e), &e);
}

TEST(cli_get_shows_world_size_and_hosts) {
    const char *home = ft_test_tmpdir();
    char *db = ft_path_join(home, "ftune.db");
    ft_store *s;
    ft_err e;
    REQUIRE_OK(ft_store_open(db, &s, &e), &e);
    add_run(s, "two", "{\"world_size\": 2, \"hosts\": [\"ftune-host-a\", \"ftune-host-b\"]}", true, "ftune-host-a");
    add_run(s, "four", "{\"world_size\": 4, \"hosts\": [\"n1\", \"n2\", \"n1\", \"n2\"]}", true, "n1");
    add_run(s, "one", "{}", true, "box");
    add_run(s, "queued", "{}", false, NULL);
    add_run(s, "bad", "{\"world_size\": \"two\", \"hosts\": [\"a\", \"b\"]}", true, "box");
    ft_store_close(s);

    char *l = processes_line(home, "two");
    CHECK_STR_EQ(l, "processes            2 processes on 2 hosts: ftune-host-a (rank 0), ftune-host-b (rank 1)");
    free(l);
    l = processes_line(home, "four");
    CHECK_STR_EQ(l, "processes            4 processes on 2 hosts: n1 (ranks 0, 2), n2 (ranks 1, 3)");
    free(l);
    l = processes_line(home, "one");
    CHECK_STR_EQ(l, "processes            1 process on 1 host: box (rank 0)");
    free(l);
    CHECK(!(l = processes_line(home, "queued")));
    free(l);
    CHECK(!(l = processes_line(home, "bad")));
    free(l);

    json_t *j = get_json(home, "four");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "world_size")), 4);
    json_t *h = json_object_get(j, "hosts");
    REQUIRE(json_array_size(h) == 4);
    CHECK_STR_EQ(json_string_value(json_array_get(h, 0)), "n1");
    CHECK_STR_EQ(json_string_value(json_array_get(h, 3)), "n2");
    json_decref(j);
    j = get_json(home, "one");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "world_size")), 1);
    CHECK_STR_EQ(json_string_value(json_array_get(json_object_get(j, "hosts"), 0)), "box");
    json_decref(j);
    j = get_json(home, "queued");
    CHECK(j && !json_object_get(j, "world_size") && !json_object_get(j, "hosts"));
    json_decref(j);
    j = get_json(home, "bad");
    CHECK(j && !json_object_get(j, "world_size"));
    json_decref(j);
    ft_free(db);
}
