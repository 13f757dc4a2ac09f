/* tests/main.c: the test runner. `ftune_tests [FILTER...]` runs every registered test whose name or
 * source path contains one of the filters (all when none), and ends with "N passed, N failed". */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

typedef struct {
    const char *name, *file;
    ft_test_fn fn;
} test_case;

static test_case *tests;
static size_t n_tests, cap_tests;
static int current_failed;
static int current_skipped;
static char tmp_root[512];
static char cur_tmp[600];

void ft_test_register(const char *name, const char *file, ft_test_fn fn) {
    if (n_tests == cap_tests) {
        cap_tests = cap_tests ? cap_tests * 2 : 256;
        tests = realloc(tests, cap_tests * sizeof *tests);
        if (!tests)
            abort();
    }
    tests[n_tests++] = (test_case){name, file, fn};
}

void ft_test_fail_(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    current_failed = 1;
}

void ft_test_skip_(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  %s:%d: skipped: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    current_skipped = 1;
}

const char *ft_test_fixture(const char *rel) {
    static char ring[8][1024];
    static int k;
    char *b = ring[k++ % 8];
    const char *root = getenv("FT_TEST_ROOT");
    snprintf(b, 1024, "%s/tests/fixtures/%s", root ? root : ".", rel);
    return b;
}

const char *ft_test_tmpdir(void) { return cur_tmp; }

const char *ft_test_ftune_bin(void) {
    const char *b = getenv("FTUNE_BIN");
    return b ? b : "build/ftune";
}

int ft_test_sanitized(void) {
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 1;
#endif
#endif
    return 0;
}

int ft_test_run(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    ft_buf b = {0};
    char chunk[4096];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, p)) > 0)
        ft_buf_append(&b, chunk, r);
    int st = pclose(p);
    if (out)
        *out = b.data ? b.data : ft_strdup("");
    else
        ft_buf_free(&b);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int matches(const test_case *t, int argc, char **argv) {
    if (argc <= 1)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(t->name, argv[i]) || strstr(t->file, argv[i]))
            return 1;
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(tmp_root, sizeof tmp_root, "%s/ftune-tests-%ld", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid());
    int passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < n_tests; i++) {
        test_case *t = &tests[i];
        if (!matches(t, argc, argv))
            continue;
        snprintf(cur_tmp, sizeof cur_tmp, "%s/%s", tmp_root, t->name);
        ft_err err;
        if (ft_mkdir_p(cur_tmp, &err) != FT_OK) {
            fprintf(stderr, "cannot create %s\n", cur_tmp);
            return 1;
        }
        current_failed = 0;
        current_skipped = 0;
        double t0 = ft_time_now();
        t->fn();
        double dt = ft_time_now() - t0;
        if (current_failed) {
            failed++;
            printf("FAIL %s (%s) %.2fs\n", t->name, t->file, dt);
        } else if (current_skipped) {
            skipped++;
            printf("skip %s %.2fs\n", t->name, dt);
        } else {
            passed++;
            printf("ok   %s %.2fs\n", t->name, dt);
        }
    }
    if (!getenv("FT_TEST_KEEP"))
        ft_rm_rf(tmp_root, NULL);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
