/* tests/cli: the data-loss paths of issue #9 through the real binary, without training: a run
 * never takes a folder that holds the user's files or ftune's own; delete removes only what
 * ftune made, and drops a record whose folder cannot be reached; relative paths are recorded
 * absolute, so commands from another folder act on the same files; mapped paths (/Users, /Volumes,
 * dbfs:) cannot leave their root, with '..' or a symbolic link. Each test has its own FTUNE_HOME;
 * the worker lock is held so that --detach only queues. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ftune/json.h"
#include "ftune/store.h"
#include "test.h"

/* `cd DIR && FTUNE_HOME=home ftune ARGS`, stdout and stderr together into *out. */
static int ftune_in(const char *dir, const char *home, char **out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int ftune_in(const char *dir, const char *home, char **out, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *bin = ft_path_canonical(ft_test_ftune_bin());
    char *cmd = ft_asprintf("cd '%s' && FTUNE_HOME='%s' USER=tester '%s' %s 2>&1", dir, home, bin, args);
    char *o = NULL;
    int rc = ft_test_run(cmd, &o);
    ft_free(cmd);
    ft_free(bin);
    if (out)
        *out = o;
    else
        free(o);
    return rc;
}

static int hold_worker_lock(const char *home) {
    ft_mkdir_p(home, NULL);
    char *p = ft_path_join(home, "worker.lock");
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ft_free(p);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void write_file(const char *dir, const char *rel, const char *text) {
    char *p = ft_path_join(dir, rel);
    char *slash = strrchr(p, '/');
    *slash = 0;
    ft_mkdir_p(p, NULL);
    *slash = '/';
    ft_file_write_atomic(p, text, strlen(text), NULL);
    ft_free(p);
}

static bool exists_in(const char *dir, const char *rel) {
    char *p = ft_path_join(dir, rel);
    bool e = ft_path_exists(p);
    ft_free(p);
    return e;
}

/* The last line of the output, parsed (the --json object). */
static json_t *last_json(const char *out) {
    const char *end = out ? out + strlen(out) : NULL;
    if (!end)
        return NULL;
    while (end > out && end[-1] == '\n')
        end--;
    const char *start = end;
    while (start > out && start[-1] != '\n')
        start--;
    return json_loadb(start, (size_t)(end - start), 0, NULL);
}

#define QUEUE_FLAGS "--model m --train-data-path /x.jsonl --register-to main.demo --no-validate-inputs --detach"

/* A record made the way an earlier ftune made them (no marker), pointing at `run_dir`. */
static void legacy_record(const char *home, const char *name, const char *run_dir) {
    char *db = ft_path_join(home, "ftune.db");
    ft_store *s;
    ft_err err;
    if (ft_store_open(db, &s, &err) != FT_OK) {
        ft_test_fail_(__FILE__, __LINE__, "store: %s", err.msg);
        ft_free(db);
        return;
    }
    ft_run r = {0};
    r.name = (char *)name;
    r.model = "m";
    r.task_type = "CHAT_COMPLETION";
    r.train_data_path = "/x.jsonl";
    r.register_to = "main.demo";
    r.training_duration = "1ep";
    r.experiment_path = (char *)run_dir;
    r.run_dir = (char *)run_dir;
    r.config_json = "{}";
    if (ft_store_run_create(s, &r, &err) != FT_OK)
        ft_test_fail_(__FILE__, __LINE__, "run_create: %s", err.msg);
    ft_store_close(s);
    ft_free(db);
}

TEST(paths_create_refuses_a_folder_with_user_files_and_ftune_home) {
    char *tmp = ft_path_canonical(ft_test_tmpdir());
    char *home = ft_path_join(tmp, "home");
    int lock = hold_worker_lock(home);
    REQUIRE(lock >= 0);
    /* a store that exists (read-only commands no longer create one): it must survive */
    char *db = ft_path_join(home, "ftune.db");
    ft_store *st;
    ft_err e;
    REQUIRE_OK(ft_store_open(db, &st, &e), &e);
    ft_store_close(st);
    ft_free(db);
    /* the user's project, where the run folder would go */
    char *proj = ft_path_join(tmp, "x/proj");
    write_file(proj, "src/main.c", "int main(void) { return 0; }\n");
    char *out;
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path '%s/x' --name proj", tmp), 2);
    CHECK(out && strstr(out, "--experiment-path") && strstr(out, "not empty"));
    free(out);
    CHECK(exists_in(proj, "src/main.c"));
    /* FTUNE_HOME's registry, FTUNE_HOME itself (from its parent), and a folder holding it */
    write_file(home, "registry/main/demo/m/1/config.json", "{}");
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path '%s' --name registry", home), 2);
    CHECK(out && strstr(out, "FTUNE_HOME"));
    free(out);
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path '%s' --name home", tmp), 2);
    CHECK(out && strstr(out, "FTUNE_HOME"));
    free(out);
    char *parent = ft_strdup(tmp), *base = strrchr(parent, '/');
    *base++ = 0;
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path '%s' --name '%s'", parent, base),
                 2);
    CHECK(out && strstr(out, "FTUNE_HOME"));
    free(out);
    /* a folder inside FTUNE_HOME that is not experiments/ or volumes/, even an empty one */
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path '%s/tables' --name t", home), 2);
    CHECK(out && strstr(out, "FTUNE_HOME"));
    free(out);
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "list --json"), 0);
    CHECK(out && strstr(out, "[]"));
    free(out);
    CHECK(exists_in(home, "registry/main/demo/m/1/config.json") && exists_in(home, "ftune.db"));
    ft_free(parent);
    ft_free(proj);
    ft_free(home);
    ft_free(tmp);
    close(lock);
}

TEST(paths_delete_removes_only_what_ftune_made) {
    char *tmp = ft_path_canonical(ft_test_tmpdir());
    char *home = ft_path_join(tmp, "home");
    int lock = hold_worker_lock(home);
    REQUIRE(lock >= 0);
    char *out;
    /* a run into a new folder: create makes it (and its parents) */
    REQUIRE(ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path '%s/new/exp' --name r1", tmp) == 0);
    free(out);
    char *run = ft_asprintf("%s/new/exp/r1", tmp);
    CHECK(exists_in(run, ".ftune-run"));
    /* what a run writes, plus a file of the user's put in the run folder afterwards */
    write_file(run, "checkpoints/ep1-ba2/model.safetensors", "x");
    write_file(run, "train_config.json", "{}");
    write_file(run, "metrics.jsonl.tmp.123", "");
    write_file(run, "notes.txt", "mine");
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "delete r1"), 0);
    CHECK(out && strstr(out, "kept") && strstr(out, "notes.txt"));
    free(out);
    CHECK(!exists_in(run, "checkpoints") && !exists_in(run, "train_config.json") &&
          !exists_in(run, "metrics.jsonl.tmp.123"));
    CHECK(exists_in(run, "notes.txt"));
    CHECK_EQ_INT(ftune_in(tmp, home, NULL, "get r1"), 2);
    /* a clean run: its folder and the parents create made go, a parent that existed stays */
    REQUIRE(ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path '%s/new2/exp' --name r2", tmp) == 0);
    free(out);
    char *run2 = ft_asprintf("%s/new2/exp/r2", tmp);
    write_file(run2, "checkpoints/latest.txt", "ep1-ba2\n");
    CHECK_EQ_INT(ftune_in(tmp, home, NULL, "delete r2"), 0);
    CHECK(!exists_in(tmp, "new2"));
    CHECK(ft_path_is_dir(tmp));

    /* records from before the marker: a run pointed at the user's project, at FTUNE_HOME, at the
     * registry: nothing of theirs goes, the records do */
    char *proj = ft_path_join(tmp, "proj");
    write_file(proj, "src/main.c", "int main(void) { return 0; }\n");
    write_file(proj, "checkpoints/mine.txt", "the user's own checkpoints folder");
    legacy_record(home, "proj", proj);
    char *reg = ft_path_join(home, "registry");
    write_file(reg, "main/demo/m/1/config.json", "{}");
    legacy_record(home, "registry", reg);
    legacy_record(home, "home", home);
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "delete proj registry home"), 0);
    CHECK(out && strstr(out, "kept"));
    free(out);
    CHECK(exists_in(proj, "src/main.c") && exists_in(proj, "checkpoints/mine.txt"));
    CHECK(exists_in(reg, "main/demo/m/1/config.json") && exists_in(home, "ftune.db"));
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "list --json"), 0);
    CHECK(out && strstr(out, "[]"));
    free(out);
    /* a record from before the marker whose folder a run did make (train_config.json names it) */
    char *old = ft_path_join(tmp, "old/r3");
    write_file(old, "train_config.json", "{\"name\": \"r3\"}");
    write_file(old, "checkpoints/ep1-ba1/x", "x");
    legacy_record(home, "r3", old);
    CHECK_EQ_INT(ftune_in(tmp, home, NULL, "delete r3"), 0);
    CHECK(!ft_path_exists(old));
    ft_free(old);
    ft_free(reg);
    ft_free(proj);
    ft_free(run2);
    ft_free(run);
    ft_free(home);
    ft_free(tmp);
    close(lock);
}

TEST(paths_delete_a_run_whose_folder_cannot_be_reached) {
    char *tmp = ft_path_canonical(ft_test_tmpdir());
    char *home = ft_path_join(tmp, "home");
    ft_mkdir_p(home, NULL);
    char longname[301];
    memset(longname, 'a', 300);
    longname[300] = 0;
    char *dir = ft_asprintf("%s/%s/r", tmp, longname);
    legacy_record(home, "r", dir);
    char *out;
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "delete r"), 0);
    CHECK(out && strstr(out, "deleted r") && strstr(out, "could not reach"));
    free(out);
    CHECK_EQ_INT(ftune_in(tmp, home, NULL, "get r"), 2);
    /* and create refuses such a folder up front, recording nothing */
    int lock = hold_worker_lock(home);
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path '%s/%s' --name r", tmp, longname),
                 2);
    CHECK(out && strstr(out, "--experiment-path"));
    free(out);
    CHECK_EQ_INT(ftune_in(tmp, home, NULL, "get r"), 2);
    close(lock);
    ft_free(dir);
    ft_free(home);
    ft_free(tmp);
}

TEST(paths_relative_paths_are_recorded_absolute) {
    char *tmp = ft_path_canonical(ft_test_tmpdir());
    char *a = ft_path_join(tmp, "a"), *b = ft_path_join(tmp, "b");
    write_file(a, "chat.jsonl", "{}\n");
    write_file(a, "eval.jsonl", "{}\n");
    write_file(a, "model/config.json", "{}");
    write_file(b, "chat.jsonl", "{}\n");
    /* relative FTUNE_HOME, experiment path, data, eval and model paths, given in a/ */
    char *home = ft_path_join(a, "relhome");
    int lock = hold_worker_lock(home);
    REQUIRE(lock >= 0);
    char *out;
    REQUIRE(ftune_in(a, "relhome", &out,
                     "create --model model --train-data-path chat.jsonl --eval-data-path ./eval.jsonl --register-to "
                     "main.demo --no-validate-inputs --detach --experiment-path relexp --name r1 --json") == 0);
    json_t *j = last_json(out);
    free(out);
    char *exp = ft_path_join(a, "relexp"), *rd = ft_path_join(a, "relexp/r1"), *td = ft_path_join(a, "chat.jsonl"),
         *ed = ft_path_join(a, "eval.jsonl"), *md = ft_path_join(a, "model");
    CHECK_STR_EQ(json_string_value(json_object_get(j, "experiment_path")), exp);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "run_dir")), rd);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "train_data_path")), td);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "eval_data_path")), ed);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "model")), md);
    json_t *cfg = json_object_get(j, "config");
    CHECK_STR_EQ(json_string_value(json_object_get(cfg, "train_data_path")), td);
    CHECK_STR_EQ(json_string_value(json_object_get(cfg, "experiment_path")), exp);
    json_decref(j);
    /* a hub id that is not a local folder stays a hub id */
    REQUIRE(ftune_in(a, "relhome", &out,
                     "create --model org/name --train-data-path chat.jsonl --register-to main.demo "
                     "--no-validate-inputs --detach --name r2 --json") == 0);
    j = last_json(out);
    free(out);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "model")), "org/name");
    /* the default experiment folder is under the (absolute) home */
    const char *r2dir = json_string_value(json_object_get(j, "run_dir"));
    CHECK(r2dir && !strncmp(r2dir, home, strlen(home)));
    json_decref(j);
    /* from b/, with the same home given absolute: delete acts on a/relexp/r1, not b/relexp/r1 */
    write_file(b, "relexp/r1/precious.txt", "b's file");
    CHECK_EQ_INT(ftune_in(b, home, NULL, "delete r1"), 0);
    CHECK(exists_in(b, "relexp/r1/precious.txt"));
    CHECK(!ft_path_exists(rd));
    ft_free(exp);
    ft_free(rd);
    ft_free(td);
    ft_free(ed);
    ft_free(md);
    ft_free(home);
    ft_free(a);
    ft_free(b);
    ft_free(tmp);
    close(lock);
}

TEST(paths_mapped_paths_cannot_leave_their_root) {
    char *tmp = ft_path_canonical(ft_test_tmpdir());
    char *home = ft_path_join(tmp, "home");
    int lock = hold_worker_lock(home);
    REQUIRE(lock >= 0);
    write_file(tmp, "outside/d.jsonl", "{}\n");
    /* a volume folder that is a symbolic link out of FTUNE_HOME */
    char *vol = ft_path_join(home, "volumes/c/s");
    ft_mkdir_p(vol, NULL);
    char *link = ft_path_join(vol, "v"), *target = ft_path_join(tmp, "outside");
    REQUIRE(symlink(target, link) == 0);
    static const char *const exp_cases[] = {"/Users/../../..", "/Users/../..", "/Volumes/../..", "/Users/..",
                                            "dbfs:/Volumes/../../..", "/Workspace/a/../../../x", "/Volumes/c/s/v"};
    char *out;
    for (size_t i = 0; i < sizeof exp_cases / sizeof *exp_cases; i++) {
        int rc = ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path '%s' --name r", exp_cases[i]);
        if (rc != 2 || !out || !strstr(out, "--experiment-path"))
            ft_test_fail_(__FILE__, __LINE__, "--experiment-path %s: exit %d: %s", exp_cases[i], rc, out ? out : "");
        free(out);
    }
    static const char *const data_cases[] = {"/Volumes/../../outside/d.jsonl", "dbfs:/Volumes/../../outside/d.jsonl",
                                             "/Volumes/c/s/v/d.jsonl", "dbfs:/tmp/d.jsonl"};
    for (size_t i = 0; i < sizeof data_cases / sizeof *data_cases; i++) {
        for (int validate = 0; validate < 2; validate++) {
            int rc = ftune_in(tmp, home, &out,
                              "create --model m --register-to main.demo --detach %s --train-data-path '%s' --name r",
                              validate ? "" : "--no-validate-inputs", data_cases[i]);
            if (rc != 2 || !out || !strstr(out, "--train-data-path"))
                ft_test_fail_(__FILE__, __LINE__, "--train-data-path %s: exit %d: %s", data_cases[i], rc,
                              out ? out : "");
            free(out);
        }
    }
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "list --json"), 0);
    CHECK(out && strstr(out, "[]"));
    free(out);
    /* what stays inside is accepted */
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path /Users/me/../me/x --name ok"), 0);
    free(out);
    char *okdir = ft_path_join(home, "experiments/Users/me/x/ok");
    CHECK(ft_path_is_dir(okdir));
    ft_free(okdir);
    /* the trainer and the readers refuse the same paths (ft_path_map) */
    ft_err err;
    char *mapped = NULL;
    setenv("FTUNE_HOME", home, 1);
    CHECK(ft_path_map("/Volumes/../../outside/d.jsonl", &mapped, &err) == FT_ERR_INVALID);
    CHECK(ft_path_map("/Volumes/c/s/v/d.jsonl", &mapped, &err) == FT_ERR_INVALID);
    CHECK(mapped == NULL);
    unsetenv("FTUNE_HOME");
    ft_free(link);
    ft_free(target);
    ft_free(vol);
    ft_free(home);
    ft_free(tmp);
    close(lock);
}

TEST(paths_registry_delete_and_leftovers_cli) {
    char *tmp = ft_path_canonical(ft_test_tmpdir());
    char *home = ft_path_join(tmp, "home"), *src = ft_path_join(tmp, "export");
    write_file(src, "config.json", "{}");
    ft_mkdir_p(home, NULL);
    char *db = ft_path_join(home, "ftune.db");
    ft_store *s;
    ft_err err;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    for (int i = 0; i < 2; i++)
        REQUIRE_OK(ft_registry_register(s, home, "main.demo.m", src, NULL, NULL, NULL, NULL, &err), &err);
    ft_store_close(s);
    /* a registration killed half-way: any command cleans it */
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    REQUIRE(child > 0);
    waitpid(child, NULL, 0);
    char *dead = ft_asprintf("%s/registry/main/demo/m/.incoming-%ld-1", home, (long)child);
    write_file(dead, "config.json", "{}");
    char *out;
    CHECK_EQ_INT(ftune_in(tmp, home, NULL, "list"), 0);
    CHECK(!ft_path_exists(dead));
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "registry delete main.demo.m"), 2);
    CHECK(out && strstr(out, "NAME/VERSION"));
    free(out);
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "registry delete main.demo.m/1 --json"), 0);
    CHECK(out && strstr(out, "[\"main.demo.m/1\"]"));
    free(out);
    CHECK(!exists_in(home, "registry/main/demo/m/1") && exists_in(home, "registry/main/demo/m/2"));
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "registry show main.demo.m/1"), 2);
    free(out);
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "registry delete main.demo.m/1"), 2);
    CHECK(out && strstr(out, "main.demo.m/1"));
    free(out);
    ft_free(dead);
    ft_free(db);
    ft_free(src);
    ft_free(home);
    ft_free(tmp);
}

TEST(paths_relative_folders_of_old_records_are_refused_not_guessed) {
    char *tmp = ft_path_canonical(ft_test_tmpdir());
    char *home = ft_path_join(tmp, "home");
    ft_mkdir_p(home, NULL);
    legacy_record(home, "rel", "relexp/rel");
    write_file(tmp, "relexp/rel/precious.txt", "not the run's");
    char *out;
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "resume rel"), 1);
    CHECK(out && strstr(out, "relative"));
    free(out);
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "get rel --json"), 0);
    CHECK(out && strstr(out, "FAILED"));
    free(out);
    CHECK(!exists_in(tmp, "relexp/rel/train_config.json"));
    CHECK_EQ_INT(ftune_in(tmp, home, &out, "delete rel"), 0);
    CHECK(out && strstr(out, "relative"));
    free(out);
    CHECK(exists_in(tmp, "relexp/rel/precious.txt"));
    /* an absolute experiment path is recorded canonical */
    int lock = hold_worker_lock(home);
    REQUIRE(ftune_in(tmp, home, &out, "create " QUEUE_FLAGS " --experiment-path '%s//new/./exp/' --name c --json",
                     tmp) == 0);
    json_t *j = last_json(out);
    free(out);
    char *exp = ft_path_join(tmp, "new/exp");
    CHECK_STR_EQ(json_string_value(json_object_get(j, "experiment_path")), exp);
    json_decref(j);
    close(lock);
    ft_free(exp);
    ft_free(home);
    ft_free(tmp);
}
