/* tests/train/test_ckpt.c: the checkpoint commit protocol: `latest` moves only to complete
 * folders; truncated, missing and corrupt files and bad pointers are reported and skipped in
 * favour of the last complete checkpoint; pruning never deletes what `latest` names. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ftune/ckpt.h"
#include "test.h"

static void put(const char *path, const char *text) {
    ft_err err;
    CHECK_OK(ft_file_write_atomic(path, text, strlen(text), &err), &err);
}

/* A checkpoint with two files whose contents depend on `batch`. */
static void make_ckpt(const char *run, int64_t ep, int64_t ba) {
    ft_ckpt_writer w;
    ft_err err;
    REQUIRE_OK(ft_ckpt_begin(run, ep, ba, &w, &err), &err);
    char *a = ft_ckpt_path(&w, "weights.bin"), *b = ft_ckpt_path(&w, "state.json");
    char text[256];
    snprintf(text, sizeof text, "weights of batch %lld, padded to some length .........................",
             (long long)ba);
    put(a, text);
    snprintf(text, sizeof text, "{\"batch\": %lld}", (long long)ba);
    put(b, text);
    ft_free(a);
    ft_free(b);
    REQUIRE_OK(ft_ckpt_commit(&w, &err), &err);
}

static char *latest_of(const char *run, ft_buf *notes) {
    char *p = NULL;
    ft_err err;
    if (ft_ckpt_find_latest(run, true, &p, notes, &err) != FT_OK)
        return NULL;
    return p;
}

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

TEST(ckpt_names) {
    int64_t e, b;
    CHECK(ft_ckpt_parse_name("ep2-ba30", &e, &b) && e == 2 && b == 30);
    CHECK(!ft_ckpt_parse_name("ep2-ba30x", &e, &b));
    CHECK(!ft_ckpt_parse_name("ep02-ba30", &e, &b));
    CHECK(!ft_ckpt_parse_name(".tmp-ep2-ba30.12", &e, &b));
    CHECK(!ft_ckpt_parse_name("latest", &e, &b));
}

TEST(ckpt_commit_and_latest) {
    const char *run = ft_test_tmpdir();
    ft_err err;
    char *p = NULL;
    CHECK(ft_ckpt_find_latest(run, true, &p, NULL, &err) == FT_ERR_NOT_FOUND);
    make_ckpt(run, 0, 5);
    make_ckpt(run, 1, 10);
    p = latest_of(run, NULL);
    REQUIRE(p);
    CHECK(ends_with(p, "/checkpoints/ep1-ba10"));
    ft_free(p);
    /* The symlink and the text file both name it. */
    char lp[1024], target[64];
    snprintf(lp, sizeof lp, "%s/checkpoints/latest", run);
    ssize_t n = readlink(lp, target, sizeof target - 1);
    REQUIRE(n > 0);
    target[n] = 0;
    CHECK_STR_EQ(target, "ep1-ba10");
    snprintf(lp, sizeof lp, "%s/checkpoints/latest.txt", run);
    char *txt = NULL;
    REQUIRE_OK(ft_file_read_all(lp, &txt, NULL, &err), &err);
    CHECK_STR_EQ(txt, "ep1-ba10\n");
    ft_free(txt);
    /* No temporary folders are left behind. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls -A %s/checkpoints", run);
    char *out = NULL;
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK(out && !strstr(out, ".tmp"));
    free(out);
    /* Resolve accepts the folder, the pointer, checkpoints/ and the run folder. */
    const char *refs[] = {"checkpoints/ep0-ba5", "checkpoints/latest", "checkpoints/latest.txt", "checkpoints", ""};
    const char *want[] = {"ep0-ba5", "ep1-ba10", "ep1-ba10", "ep1-ba10", "ep1-ba10"};
    for (int i = 0; i < 5; i++) {
        char ref[1100];
        snprintf(ref, sizeof ref, "%s%s%s", run, *refs[i] ? "/" : "", refs[i]);
        char *r = NULL;
        CHECK_OK(ft_ckpt_resolve(ref, &r, &err), &err);
        CHECK(r && ends_with(r, want[i]));
        ft_free(r);
    }
    char ref[1100];
    snprintf(ref, sizeof ref, "%s/nope", run);
    char *r = NULL;
    CHECK(ft_ckpt_resolve(ref, &r, &err) == FT_ERR_NOT_FOUND);
}

/* A writer killed halfway leaves a .tmp folder, which is never picked up and is cleaned later. */
TEST(ckpt_half_written_is_ignored) {
    const char *run = ft_test_tmpdir();
    ft_err err;
    make_ckpt(run, 0, 5);
    ft_ckpt_writer w;
    REQUIRE_OK(ft_ckpt_begin(run, 0, 8, &w, &err), &err);
    char *a = ft_ckpt_path(&w, "weights.bin");
    put(a, "partial");
    ft_free(a);
    /* "crash": no commit. Also a folder with a final name but no manifest (not ours, but a copy
     * interrupted by hand). */
    char d[1100];
    snprintf(d, sizeof d, "%s/checkpoints/ep0-ba9", run);
    REQUIRE(mkdir(d, 0755) == 0);
    ft_buf notes = {0};
    char *p = latest_of(run, &notes);
    REQUIRE(p);
    CHECK(ends_with(p, "ep0-ba5"));
    ft_free(p);
    /* Without the pointers the scan sees ep0-ba9 first, and skips it. */
    snprintf(d, sizeof d, "%s/checkpoints/latest", run);
    unlink(d);
    snprintf(d, sizeof d, "%s/checkpoints/latest.txt", run);
    unlink(d);
    p = latest_of(run, &notes);
    REQUIRE(p);
    CHECK(ends_with(p, "ep0-ba5"));
    CHECK(strstr(ft_buf_cstr(&notes), "ep0-ba9") && strstr(ft_buf_cstr(&notes), "MANIFEST.json is missing"));
    ft_free(p);
    ft_buf_free(&notes);
    /* The next commit removes the stale temporary folder. */
    make_ckpt(run, 0, 10);
    CHECK(!ft_path_exists(w.tmp_dir));
}

TEST(ckpt_corrupt_falls_back) {
    const char *run = ft_test_tmpdir();
    ft_err err;
    make_ckpt(run, 0, 5);
    make_ckpt(run, 0, 10);
    make_ckpt(run, 1, 15);
    char f[1200];
    /* Truncated file in the newest: falls back to ep0-ba10, saying why. */
    snprintf(f, sizeof f, "%s/checkpoints/ep1-ba15/weights.bin", run);
    REQUIRE(truncate(f, 10) == 0);
    snprintf(f, sizeof f, "%s/checkpoints/ep1-ba15", run);
    CHECK(ft_ckpt_verify(f, false, &err) != FT_OK);
    CHECK(strstr(err.msg, "weights.bin is truncated (10 of") != NULL);
    ft_buf notes = {0};
    char *p = latest_of(run, &notes);
    REQUIRE(p);
    CHECK(ends_with(p, "ep0-ba10"));
    CHECK(strstr(ft_buf_cstr(&notes), "truncated") != NULL);
    ft_free(p);
    ft_buf_free(&notes);
    /* Missing file in ep0-ba10 too: falls back to ep0-ba5. */
    snprintf(f, sizeof f, "%s/checkpoints/ep0-ba10/state.json", run);
    REQUIRE(unlink(f) == 0);
    p = latest_of(run, &notes);
    REQUIRE(p);
    CHECK(ends_with(p, "ep0-ba5"));
    CHECK(strstr(ft_buf_cstr(&notes), "missing state.json") != NULL);
    ft_free(p);
    ft_buf_free(&notes);
    /* Same size, flipped content: only the deep check sees it. */
    snprintf(f, sizeof f, "%s/checkpoints/ep0-ba5/state.json", run);
    put(f, "{\"batch\": 6}");
    snprintf(f, sizeof f, "%s/checkpoints/ep0-ba5", run);
    CHECK_OK(ft_ckpt_verify(f, false, &err), &err);
    CHECK(ft_ckpt_verify(f, true, &err) == FT_ERR_PARSE);
    CHECK(strstr(err.msg, "state.json is corrupt") != NULL);
    CHECK(ft_ckpt_find_latest(run, true, &p, NULL, &err) == FT_ERR_NOT_FOUND);
}

TEST(ckpt_bad_latest_pointer) {
    const char *run = ft_test_tmpdir();
    make_ckpt(run, 0, 5);
    make_ckpt(run, 0, 7);
    char f[1100];
    /* Garbage in both pointers: the newest complete folder is used. */
    snprintf(f, sizeof f, "%s/checkpoints/latest", run);
    unlink(f);
    REQUIRE(symlink("../../etc", f) == 0);
    snprintf(f, sizeof f, "%s/checkpoints/latest.txt", run);
    put(f, "garbage\n");
    ft_buf notes = {0};
    char *p = latest_of(run, &notes);
    REQUIRE(p);
    CHECK(ends_with(p, "ep0-ba7"));
    CHECK(strstr(ft_buf_cstr(&notes), "not a checkpoint name") != NULL);
    ft_free(p);
    ft_buf_free(&notes);
    /* A pointer to a folder that is gone. */
    snprintf(f, sizeof f, "%s/checkpoints/latest", run);
    unlink(f);
    snprintf(f, sizeof f, "%s/checkpoints/latest.txt", run);
    put(f, "ep9-ba99\n");
    p = latest_of(run, &notes);
    REQUIRE(p);
    CHECK(ends_with(p, "ep0-ba7"));
    ft_free(p);
    ft_buf_free(&notes);
}

TEST(ckpt_prune_keeps_latest) {
    const char *run = ft_test_tmpdir();
    ft_err err;
    for (int b = 1; b <= 5; b++)
        make_ckpt(run, 0, b);
    /* Point latest at an old one (as after a fallback) and keep 2. */
    char f[1100];
    snprintf(f, sizeof f, "%s/checkpoints/latest.txt", run);
    put(f, "ep0-ba2\n");
    snprintf(f, sizeof f, "%s/checkpoints/latest", run);
    unlink(f);
    REQUIRE(symlink("ep0-ba2", f) == 0);
    REQUIRE_OK(ft_ckpt_prune(run, 2, &err), &err);
    const char *exist[] = {"ep0-ba5", "ep0-ba4", "ep0-ba2"}, *gone[] = {"ep0-ba3", "ep0-ba1"};
    for (int i = 0; i < 3; i++) {
        snprintf(f, sizeof f, "%s/checkpoints/%s", run, exist[i]);
        CHECK(ft_path_is_dir(f));
    }
    for (int i = 0; i < 2; i++) {
        snprintf(f, sizeof f, "%s/checkpoints/%s", run, gone[i]);
        CHECK(!ft_path_exists(f));
    }
    /* Re-saving a name that exists replaces it. */
    make_ckpt(run, 0, 5);
    char *p = latest_of(run, NULL);
    CHECK(p && ends_with(p, "ep0-ba5"));
    ft_free(p);
}

/* Found while writing fuzz_ckpt_manifest (issue #9): ft_ckpt_prune, which passes no notes buffer, crashed on a
 * `latest` symlink whose target is not a checkpoint name. */
TEST(ckpt_prune_with_a_bad_latest_symlink) {
    const char *run = ft_test_tmpdir();
    ft_err err;
    for (int b = 1; b <= 3; b++)
        make_ckpt(run, 0, b);
    char f[1100];
    snprintf(f, sizeof f, "%s/checkpoints/latest", run);
    unlink(f);
    REQUIRE(symlink("../../etc", f) == 0);
    CHECK_OK(ft_ckpt_prune(run, 1, &err), &err);
    char *p = NULL;
    CHECK_OK(ft_ckpt_find_latest(run, false, &p, NULL, NULL), &err);
    CHECK(p && ends_with(p, "ep0-ba3"));
    ft_free(p);
}

/* A manifest entry must name a file of the checkpoint's own folder: "", "." and ".." are refused
 * like paths. */
TEST(ckpt_manifest_names_stay_in_the_folder) {
    const char *run = ft_test_tmpdir();
    make_ckpt(run, 0, 1);
    char dir[1100], mp[1200];
    snprintf(dir, sizeof dir, "%s/checkpoints/ep0-ba1", run);
    snprintf(mp, sizeof mp, "%s/MANIFEST.json", dir);
    const char *names[] = {"", ".", "..", "../ep0-ba1", "/etc/passwd"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char text[512];
        snprintf(text, sizeof text, "{\"format\": 1, \"files\": [{\"name\": \"%s\", \"size\": 4096, "
                 "\"hash\": \"0000000000000000\"}]}", names[i]);
        put(mp, text);
        ft_err err;
        ft_status s = ft_ckpt_verify(dir, false, &err);
        if (s == FT_OK || !strstr(err.msg, "malformed"))
            ft_test_fail_(__FILE__, __LINE__, "name \"%s\": %s", names[i], s == FT_OK ? "accepted" : err.msg);
    }
}
