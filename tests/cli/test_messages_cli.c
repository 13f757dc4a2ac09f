/* tests/cli: issue #9 item 12, messages that say what is wrong and what to do, through the real
 * binary: --json errors on stdout for every command, usage errors naming a flag once, the exit
 * codes in `ftune help`, nothing created under a new FTUNE_HOME by read-only commands, registry
 * names, inputs that are folders, JSONL read alike by validate/tokenize/chat-template, events with
 * newlines, the checkpoint count of `get`, the memory a global batch needs, non-UTF-8 paths and
 * prompts, a corrupt store, a full disk and a read-only home. Each test has its own FTUNE_HOME. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ftune/json.h"
#include "ftune/store.h"
#include "test.h"

/* Run `ftune ARGS` with FTUNE_HOME=home: stdout into *out, stderr into *err (either may be NULL). */
static int run2(const char *home, char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int run2(const char *home, char **out, char **err, const char *fmt, ...) {
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char errf[1200];
    snprintf(errf, sizeof errf, "%s/.stderr", ft_test_tmpdir());
    char *cmd = ft_asprintf("FTUNE_HOME='%s' USER=tester %s %s 2>'%s'", home, ft_test_ftune_bin(), args, errf);
    char *o = NULL;
    int rc = ft_test_run(cmd, &o);
    ft_free(cmd);
    if (out)
        *out = o;
    else
        free(o);
    if (err) {
        size_t n;
        if (ft_file_read_all(errf, err, &n, NULL) != FT_OK)
            *err = NULL;
    }
    return rc;
}

static char *home_in_tmp(const char *name) { return ft_path_join(ft_test_tmpdir(), name); }

/* A tiny model (context up to 4096) with the tinytok tokenizer; the folder is returned. */
static char *tiny_model(void) {
    char *dir = home_in_tmp("model");
    char *cmd = ft_asprintf("%s init-model --out '%s' --vocab-size 300 --hidden-size 8 --intermediate-size 16 "
                            "--layers 1 --heads 2 --max-position-embeddings 4096 --tokenizer '%s' --seed 1 >/dev/null "
                            "2>&1",
                            ft_test_ftune_bin(), dir, ft_test_fixture("train/tinytok"));
    int rc = ft_test_run(cmd, NULL);
    ft_free(cmd);
    if (rc != 0) {
        ft_free(dir);
        return NULL;
    }
    return dir;
}

TEST(messages_json_errors_on_stdout_for_every_command) {
    char *home = home_in_tmp("home");
    static const char *const cases[] = {
        "list --bogus --json",
        "list --status NOPE --json",
        "create --json",
        "create --model m --train-data-path /nonexistent/x.jsonl --register-to a.b --json",
        "get nope --json",
        "events nope --json",
        "metrics nope --json",
        "cancel nope --json",
        "delete nope --json",
        "resume nope --json",
        "models --bogus --json",
        "registry show ../../etc --json",
        "registry list extra --json",
        "worker --poll 0 --json",
        "validate /nonexistent/x.jsonl --json",
        "validate /dev/zero --json",
        "tokenize --json hello",
        "chat-template --json",
        "generate --json",
        "init-model --json",
        "debug forward --json",
        "bench train-step --config nope --json",
        "no-such-command --json",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out = NULL;
        int rc = run2(home, &out, NULL, "%s", cases[i]);
        /* the last line of stdout is the error object */
        const char *last = out ? out : "";
        size_t n = strlen(last);
        while (n && last[n - 1] == '\n')
            n--;
        const char *start = last + n;
        while (start > last && start[-1] != '\n')
            start--;
        json_t *j = json_loadb(start, (size_t)(last + n - start), 0, NULL);
        json_t *e = json_object_get(j, "error");
        const char *msg = json_string_value(json_object_get(e, "message"));
        bool ok = rc != 0 && json_is_object(e) && json_is_string(json_object_get(e, "code")) && msg && *msg &&
                  json_integer_value(json_object_get(e, "exit_code")) == rc;
        if (!ok)
            ft_test_fail_(__FILE__, __LINE__, "`ftune %s`: exit %d, stdout: %s", cases[i], rc, out ? out : "");
        json_decref(j);
        free(out);
    }
    ft_free(home);
}

TEST(messages_usage_errors_name_the_flag_once_and_help_lists_exit_codes) {
    char *home = home_in_tmp("home");
    char *err = NULL;
    CHECK_EQ_INT(run2(home, NULL, &err, "tokenize hello"), 2);
    CHECK(err && strstr(err, "ftune tokenize: --model: required") && !strstr(err, "----"));
    free(err);
    CHECK_EQ_INT(run2(home, NULL, &err, "chat-template /tmp"), 2);
    CHECK(err && strstr(err, "--model: required") && strstr(err, "\"/tmp\" is the conversations FILE") &&
          !strstr(err, "----"));
    free(err);
    CHECK_EQ_INT(run2(home, NULL, &err, "worker --poll 0"), 2);
    CHECK(err && strstr(err, "--poll: must be more than 0") && !strstr(err, "between 0"));
    free(err);
    char *out = NULL;
    CHECK_EQ_INT(run2(home, &out, NULL, "help"), 0);
    CHECK(out && strstr(out, "exit codes:") && strstr(out, "  0   success") && strstr(out, "  1   failure") &&
          strstr(out, "  2   bad usage or invalid input") && strstr(out, "130: Ctrl-C"));
    free(out);
    ft_free(home);
}

TEST(messages_read_only_commands_create_nothing_under_a_new_home) {
    char *home = ft_asprintf("%s/nonexist/deep/home", ft_test_tmpdir());
    char *top = ft_asprintf("%s/nonexist", ft_test_tmpdir());
    char *out = NULL;
    CHECK_EQ_INT(run2(home, &out, NULL, "list"), 0);
    CHECK(out && strstr(out, "no runs"));
    free(out);
    CHECK_EQ_INT(run2(home, &out, NULL, "list --json"), 0);
    CHECK(out && strstr(out, "[]"));
    free(out);
    CHECK_EQ_INT(run2(home, NULL, NULL, "registry list"), 0);
    CHECK_EQ_INT(run2(home, NULL, NULL, "get r"), 2);
    CHECK_EQ_INT(run2(home, NULL, NULL, "events r"), 2);
    CHECK_EQ_INT(run2(home, NULL, NULL, "metrics r"), 2);
    CHECK_EQ_INT(run2(home, NULL, NULL, "registry show a.b.c"), 2);
    CHECK_EQ_INT(run2(home, NULL, NULL, "cancel r"), 2);
    CHECK_EQ_INT(run2(home, NULL, NULL, "delete r"), 2);
    CHECK(!ft_path_exists(top));
    ft_free(home);
    ft_free(top);
}

TEST(messages_registry_names_say_what_is_wrong) {
    char *home = home_in_tmp("home");
    char *err = NULL;
    CHECK_EQ_INT(run2(home, NULL, &err, "registry show ../../etc"), 2);
    CHECK(err && strstr(err, "is not a registered model name") && !strstr(err, "version"));
    free(err);
    char long_name[301];
    memset(long_name, 'n', 300);
    long_name[300] = 0;
    CHECK_EQ_INT(run2(home, NULL, &err, "create --model m --train-data-path /x.jsonl --register-to main.demo.%s",
                      long_name),
                 2);
    CHECK(err && strstr(err, "--register-to") && strstr(err, "300 characters long; at most 128"));
    free(err);
    CHECK_EQ_INT(run2(home, NULL, &err, "create --model m --train-data-path /x.jsonl --register-to a/b.c"), 2);
    CHECK(err && strstr(err, "\"a/b.c\"") && strstr(err, "the character '/'"));
    free(err);
    ft_free(home);
}

/* A folder given as the input file was read as empty (exit 0, no output); BOM, CRLF and blank
 * lines that `validate` accepts made tokenize/chat-template --jsonl fail. */
TEST(messages_jsonl_inputs_read_like_validate) {
    char *home = home_in_tmp("home");
    const char *tok = ft_test_fixture("tok/llama3-instruct-rev1"); /* has a chat template */
    char *err = NULL, *out = NULL;
    const char *dir = ft_test_tmpdir();
    CHECK_EQ_INT(run2(home, &out, &err, "tokenize --model '%s' --jsonl --file '%s'", tok, dir), 2);
    CHECK(err && strstr(err, "is a folder"));
    free(err);
    free(out);
    CHECK_EQ_INT(run2(home, &out, &err, "chat-template --model '%s' '%s'", tok, dir), 2);
    CHECK(err && strstr(err, "is a folder"));
    free(err);
    free(out);

    char *conv = ft_path_join(dir, "conv.jsonl"), *texts = ft_path_join(dir, "texts.jsonl");
    const char c[] = "\xEF\xBB\xBF{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                     "{\"role\":\"assistant\",\"content\":\"yo\"}]}\r\n  \r\n\n"
                     "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\r\n";
    const char t[] = "\xEF\xBB\xBF{\"text\":\"hi\"}\r\n \t\r\n\n{\"text\":\"yo\"}\r\n";
    REQUIRE_OK(ft_file_write_atomic(conv, c, sizeof c - 1, NULL), (ft_err *)NULL);
    REQUIRE_OK(ft_file_write_atomic(texts, t, sizeof t - 1, NULL), (ft_err *)NULL);
    CHECK_EQ_INT(run2(home, NULL, NULL, "validate '%s' --no-estimate", conv), 0);
    CHECK_EQ_INT(run2(home, &out, &err, "chat-template --model '%s' --jsonl '%s'", tok, conv), 0);
    CHECK(out && !strstr(out, "error") && strstr(out, "user<|end_header_id|>\\n\\nhi<|eot_id|>") &&
          strstr(out, "user<|end_header_id|>\\n\\na<|eot_id|>"));
    free(out);
    free(err);
    CHECK_EQ_INT(run2(home, &out, &err, "tokenize --model '%s' --jsonl --file '%s'", tok, texts), 0);
    size_t lines = 0;
    for (const char *p = out ? out : ""; *p; p++)
        lines += *p == '\n';
    CHECK(out && !strstr(out, "error") && lines == 2);
    free(out);
    free(err);
    ft_free(conv);
    ft_free(texts);
    ft_free(home);
}

/* A message with newlines stays one entry: continuation lines are indented. `get` counts the
 * checkpoints still on disk, not every one saved. */
TEST(messages_events_with_newlines_and_checkpoint_count) {
    char *home = home_in_tmp("home");
    ft_mkdir_p(home, NULL);
    char *db = ft_path_join(home, "ftune.db");
    ft_store *s;
    ft_err e;
    REQUIRE_OK(ft_store_open(db, &s, &e), &e);
    ft_run r = {.name = "nl", .model = "m", .task_type = "CHAT_COMPLETION", .train_data_path = "/x.jsonl",
                .config_json = "{}"};
    REQUIRE_OK(ft_store_run_create(s, &r, &e), &e);
    REQUIRE_OK(ft_store_event_add(s, "nl", "TRAIN_UPDATED", "WARN", "first line\nSTOPPED fake\r\x01", NULL, &e), &e);
    const char *tmp = ft_test_tmpdir();
    char *kept = ft_path_join(tmp, "ck6");
    ft_mkdir_p(kept, NULL);
    for (int i = 1; i <= 6; i++) {
        char name[32], *path;
        snprintf(name, sizeof name, "ck%d", i);
        path = ft_path_join(tmp, name);
        REQUIRE_OK(ft_store_checkpoint_add(s, "nl", name, path, i, 0, &e), &e);
        ft_free(path);
    }
    ft_store_close(s);
    char *out = NULL;
    CHECK_EQ_INT(run2(home, &out, NULL, "events nl"), 0);
    /* every line either starts an event (its number) or is indented past the columns */
    CHECK(out && strstr(out, "WARN  first line\n") && strstr(out, "\n                                                    STOPPED fake\\r\\x01\n"));
    free(out);
    CHECK_EQ_INT(run2(home, &out, NULL, "get nl"), 0);
    CHECK(out && strstr(out, "ck6 (1 kept of 6 saved)") && !strstr(out, "in all"));
    free(out);
    ft_free(kept);
    ft_free(db);
    ft_free(home);
}

/* --global-batch-size 1048576 passed validation, then failed allocating 128 GiB: refused before
 * anything is recorded, with the numbers and the size that fits. */
TEST(messages_global_batch_size_checked_against_memory) {
    double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    if (phys > 200.0 * (1ull << 30))
        SKIP("this machine has more than 200 GiB: a 1M x 4096-token batch (256 GiB) might fit");
    char *model = tiny_model();
    REQUIRE(model);
    char *home = home_in_tmp("home");
    char *data = ft_path_join(ft_test_tmpdir(), "d.jsonl");
    const char d[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n";
    REQUIRE_OK(ft_file_write_atomic(data, d, sizeof d - 1, NULL), (ft_err *)NULL);
    char *err = NULL, *out = NULL;
    CHECK_EQ_INT(run2(home, &out, &err,
                      "create --model '%s' --train-data-path '%s' --register-to a.b --global-batch-size 1048576 "
                      "--context-length 4096",
                      model, data),
                 2);
    CHECK(err && strstr(err, "--global-batch-size: global batch size 1048576 at context length 4096 needs about") &&
          strstr(err, "use a global batch size of at most"));
    free(err);
    free(out);
    CHECK_EQ_INT(run2(home, &out, NULL, "list --json"), 0);
    CHECK(out && strstr(out, "[]"));
    free(out);
    ft_free(model);
    ft_free(home);
    ft_free(data);
}

/* A path or prompt that is not UTF-8 cannot be recorded in the run's JSON config: it used to pass
 * validation and fail as "required", or be dropped without a word. */
TEST(messages_non_utf8_paths_and_prompts_are_refused_by_name) {
    char *home = home_in_tmp("home");
    char *bad = ft_asprintf("%s/caf\xE9.jsonl", ft_test_tmpdir());
    const char d[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n";
    REQUIRE_OK(ft_file_write_atomic(bad, d, sizeof d - 1, NULL), (ft_err *)NULL);
    char *err = NULL;
    CHECK_EQ_INT(run2(home, NULL, &err, "create --model m --train-data-path '%s' --register-to a.b", bad), 2);
    CHECK(err && strstr(err, "--train-data-path") && strstr(err, "not valid UTF-8"));
    free(err);
    CHECK_EQ_INT(run2(home, NULL, &err,
                      "create --model m --train-data-path /x.jsonl --register-to a.b --eval-prompt \"$(printf 'ok \\377')\""),
                 2);
    CHECK(err && strstr(err, "--eval-prompt") && strstr(err, "not valid UTF-8"));
    free(err);
    ft_free(bad);
    ft_free(home);
}

TEST(messages_corrupt_store_says_how_to_recover) {
    char *home = home_in_tmp("home");
    ft_mkdir_p(home, NULL);
    char *db = ft_path_join(home, "ftune.db");
    char junk[8192];
    memset(junk, 'x', sizeof junk);
    REQUIRE_OK(ft_file_write_atomic(db, junk, sizeof junk, NULL), (ft_err *)NULL);
    char *err = NULL;
    CHECK_EQ_INT(run2(home, NULL, &err, "list"), 1);
    CHECK(err && strstr(err, "ftune.db") && strstr(err, "damaged") && strstr(err, ".recover") &&
          strstr(err, "move ftune.db aside"));
    free(err);
    ft_free(db);
    ft_free(home);
}

/* A small tmpfs as FTUNE_HOME (needs the right to mount: root in a container): on a full disk
 * `list` and `get` work and `delete` frees space; a read-only home says so. */
TEST(messages_full_disk_and_read_only_home) {
    char *mnt = home_in_tmp("mnt");
    ft_mkdir_p(mnt, NULL);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0)
        SKIP("cannot mount a tmpfs here (not root?): the full-disk and read-only checks need one");
    char *home = ft_path_join(mnt, "home");
    int lock_fd = -1;
    ft_mkdir_p(home, NULL);
    {
        /* hold the worker lock: the runs stay QUEUED */
        char *p = ft_path_join(home, "worker.lock");
        lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        ft_free(p);
        if (lock_fd >= 0)
            flock(lock_fd, LOCK_EX | LOCK_NB);
    }
    char *out = NULL, *err = NULL;
    CHECK_EQ_INT(run2(home, NULL, NULL,
                      "create --model m --train-data-path /x.jsonl --register-to a.b --no-validate-inputs --detach "
                      "--name full1"),
                 0);
    CHECK_EQ_INT(run2(home, NULL, NULL,
                      "create --model m --train-data-path /x.jsonl --register-to a.b --no-validate-inputs --detach "
                      "--name full2"),
                 0);
    /* full1's folder holds a 1 MiB checkpoint; the rest of the disk is filled */
    CHECK_EQ_INT(run2(home, &out, NULL, "get full1 --json"), 0);
    json_t *j = json_loads(out ? out : "", 0, NULL);
    free(out);
    char *ckdir = ft_asprintf("%s/checkpoints/ep1-ba1", json_string_value(json_object_get(j, "run_dir")));
    json_decref(j);
    ft_mkdir_p(ckdir, NULL);
    char *big = ft_path_join(ckdir, "model.safetensors"), *fill = ft_path_join(mnt, "fill");
    static char mb[1 << 20];
    CHECK_OK(ft_file_write_atomic(big, mb, sizeof mb, NULL), (ft_err *)NULL);
    FILE *f = fopen(fill, "wb");
    while (f && fwrite(mb, 1, 4096, f) == 4096 && fflush(f) == 0)
        ;
    if (f)
        fclose(f);
    CHECK_EQ_INT(run2(home, &out, &err, "list"), 0);
    CHECK(out && strstr(out, "full1") && strstr(out, "full2"));
    free(out);
    free(err);
    CHECK_EQ_INT(run2(home, &out, NULL, "get full2"), 0);
    free(out);
    /* a write that needs space says the disk is full */
    CHECK(run2(home, NULL, &err,
               "create --model m --train-data-path /x.jsonl --register-to a.b --no-validate-inputs --detach "
               "--name full3") != 0);
    CHECK(err && (strstr(err, "disk is full") || strstr(err, "No space left on device")));
    free(err);
    /* delete removes the run's files first, then the record */
    CHECK_EQ_INT(run2(home, &out, &err, "delete full1"), 0);
    CHECK(out && strstr(out, "deleted full1"));
    free(out);
    free(err);
    CHECK(!ft_path_exists(big));
    unlink(fill);
    /* read-only home */
    if (lock_fd >= 0)
        close(lock_fd);
    CHECK(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL) == 0);
    CHECK_EQ_INT(run2(home, &out, NULL, "list"), 0);
    CHECK(out && strstr(out, "full2") && !strstr(out, "full1"));
    free(out);
    CHECK_EQ_INT(run2(home, &out, NULL, "get full2"), 0);
    CHECK(out && strstr(out, "QUEUED"));
    free(out);
    CHECK_EQ_INT(run2(home, NULL, &err, "cancel full2"), 1);
    CHECK(err && strstr(err, "cannot be written") && strstr(err, "FTUNE_HOME"));
    free(err);
    umount(mnt);
    ft_free(big);
    ft_free(fill);
    ft_free(ckdir);
    ft_free(home);
    ft_free(mnt);
}

/* Found in the hostile pass: `init-model --out` into a folder holding a real model replaced its
 * weights with random ones. It is refused unless --force. */
TEST(messages_init_model_does_not_overwrite_a_model) {
    char *model = tiny_model();
    REQUIRE(model);
    char *w = ft_path_join(model, "model.safetensors");
    char *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    REQUIRE_OK(ft_file_read_all(w, &before, &nb, NULL), (ft_err *)NULL);
    char *err = NULL;
    char *home = home_in_tmp("home");
    CHECK_EQ_INT(run2(home, NULL, &err,
                      "init-model --out '%s' --vocab-size 300 --hidden-size 8 --intermediate-size 16 --layers 1 "
                      "--heads 2 --seed 2",
                      model),
                 2);
    CHECK(err && strstr(err, "--out") && strstr(err, "already holds a model") && strstr(err, "--force"));
    free(err);
    REQUIRE_OK(ft_file_read_all(w, &after, &na, NULL), (ft_err *)NULL);
    CHECK(na == nb && memcmp(before, after, nb) == 0);
    ft_free(after);
    CHECK_EQ_INT(run2(home, NULL, NULL,
                      "init-model --out '%s' --vocab-size 300 --hidden-size 8 --intermediate-size 16 --layers 1 "
                      "--heads 2 --seed 2 --force",
                      model),
                 0);
    REQUIRE_OK(ft_file_read_all(w, &after, &na, NULL), (ft_err *)NULL);
    CHECK(na == nb && memcmp(before, after, nb) != 0);
    ft_free(after);
    ft_free(before);
    ft_free(w);
    ft_free(model);
    ft_free(home);
}
