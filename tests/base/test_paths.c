/* tests/base: canonical paths (issue #9), checked against Python's os.path.realpath, an
 * independent implementation of the same rules (symbolic links in the existing part resolved,
 * '.' and '..' taken after them, a missing tail kept); and SHA-256 against coreutils' sha256sum. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

static char *run_line(const char *cmd) {
    char *out = NULL;
    if (ft_test_run(cmd, &out) != 0) {
        free(out);
        return NULL;
    }
    char *nl = out ? strchr(out, '\n') : NULL;
    if (nl)
        *nl = 0;
    return out;
}

TEST(base_canonical_paths_match_python_realpath) {
    char *tmp = ft_path_canonical(ft_test_tmpdir());
    REQUIRE(tmp);
    char *cmd = ft_asprintf("cd '%s' && mkdir -p a/b/c d && ln -s a/b lb && ln -s '%s/d' abs && ln -s ../.. a/b/up && "
                            "ln -s loop1 loop2 && ln -s loop2 loop1 && ln -s missing dangling",
                            tmp, tmp);
    REQUIRE(ft_test_run(cmd, NULL) == 0);
    ft_free(cmd);
    static const char *const cases[] = {
        "a/b/c", "./a/./b//c/", "a/b/../b/c", "lb/c", "lb/..", "lb/../..", "abs", "abs/x/y", "a/b/up",
        "a/b/up/lb/c", "missing/x/../y", "missing/../a", "dangling", "dangling/x", "/", "/..", "..", "../..",
        "a/b/c/../../../../x", "lb/c/../../up/d",
    };
    /* Python resolves all of them in one run, from the same folder */
    ft_buf py = {0};
    ft_buf_appendf(&py, "cd '%s' && python3 -c 'import os,sys; print(\"\\n\".join(os.path.realpath(a) for a in "
                        "sys.argv[1:]))'", tmp);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ft_buf_appendf(&py, " '%s'", cases[i]);
    char *ref = NULL;
    REQUIRE(ft_test_run(ft_buf_cstr(&py), &ref) == 0 && ref);
    ft_buf_free(&py);
    char *cwd = getcwd(NULL, 0);
    REQUIRE(cwd && chdir(tmp) == 0);
    char *line = ref;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *nl = line ? strchr(line, '\n') : NULL;
        if (nl)
            *nl = 0;
        char *mine = ft_path_canonical(cases[i]);
        if (!mine || !line || strcmp(mine, line))
            ft_test_fail_(__FILE__, __LINE__, "canonical(%s): got %s, python realpath %s", cases[i],
                          mine ? mine : "(null)", line ? line : "(null)");
        ft_free(mine);
        line = nl ? nl + 1 : NULL;
    }
    free(ref);
    /* a loop is refused (Python's non-strict realpath leaves it unresolved instead) */
    CHECK(ft_path_canonical("loop1/x") == NULL);
    REQUIRE(chdir(cwd) == 0);
    free(cwd);
    CHECK(ft_path_within("/a/b", "/a") && ft_path_within("/a", "/a") && ft_path_within("/a", "/"));
    CHECK(!ft_path_within("/ab", "/a") && !ft_path_within("/a", "/a/b"));
    ft_free(tmp);
}

TEST(base_sha256_matches_sha256sum) {
    const char *tmp = ft_test_tmpdir();
    static const size_t sizes[] = {0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 3 * 1024 * 1024 + 17};
    ft_rng rng;
    ft_rng_seed(&rng, 7);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        char *data = ft_malloc(n + 1);
        for (size_t k = 0; k < n; k++)
            data[k] = (char)ft_rng_below(&rng, 256);
        char *p = ft_asprintf("%s/f%zu", tmp, n);
        REQUIRE_OK(ft_file_write_atomic(p, data, n, NULL), (ft_err *)NULL);
        char hex[65], hex2[65];
        int64_t size = -1;
        ft_err err;
        CHECK_OK(ft_sha256_file(p, hex, &size, &err), &err);
        CHECK_EQ_INT(size, (int64_t)n);
        /* the same bytes in uneven pieces */
        ft_sha256 c;
        ft_sha256_init(&c);
        for (size_t off = 0, step = 1; off < n; off += step, step = step * 3 % 97 + 1)
            ft_sha256_update(&c, data + off, off + step <= n ? step : n - off);
        ft_sha256_final(&c, hex2);
        CHECK_STR_EQ(hex2, hex);
        char *cmd = ft_asprintf("sha256sum '%s'", p);
        char *ref = run_line(cmd);
        if (ref && strchr(ref, ' '))
            *strchr(ref, ' ') = 0;
        if (!ref || strcmp(ref, hex))
            ft_test_fail_(__FILE__, __LINE__, "%zu bytes: got %s, sha256sum %s", n, hex, ref ? ref : "(null)");
        free(ref);
        ft_free(cmd);
        ft_free(p);
        ft_free(data);
    }
}
