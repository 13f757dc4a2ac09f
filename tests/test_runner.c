/* tests/test_runner.c: the test runner (tests/main.c) and tools/run-tests.sh cannot be fooled.
 *
 * The TEST_SELFTEST cases below crash, exit, hang and fail on purpose; they run only when
 * FT_TEST_RUNNER_SELFTEST=1, which runner_counts_crashes_as_failures sets when it runs this binary
 * again. It checks that each is counted as a failure with its reason, that the tests after a crash
 * still run, that a hang is killed together with the processes it started, and that skips are
 * skips. The other tests check that a filter matching nothing fails, and that run-tests.sh fails
 * when a test binary crashes or exits non-zero even after printing a clean summary. */
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

/* ------------------------------------------------------------------------------------------------
 * Self-tests: each misbehaves on purpose (registration order is run order) */

TEST_SELFTEST(selftest_segv) {
    volatile int *volatile p = NULL;
    *p = 1;
}

TEST_SELFTEST(selftest_abort) { abort(); }

TEST_SELFTEST(selftest_exit_midway) { exit(3); }

TEST_SELFTEST(selftest_hang) {
    /* A process of its own that must not outlive the timeout. */
    const char *pidfile = getenv("FT_SELFTEST_PIDFILE");
    if (pidfile && fork() == 0) {
        execl("/bin/sh", "sh", "-c", "echo $$ > \"$FT_SELFTEST_PIDFILE\"; exec sleep 300", (char *)NULL);
        _exit(127);
    }
    for (;;)
        pause();
}

TEST_SELFTEST(selftest_check_fails) { CHECK(1 + 1 == 3); }

TEST_SELFTEST(selftest_skip) { SKIP("the reason given"); }

/* Leaks a block: under ASan, LeakSanitizer fails the test at its process's exit. */
TEST_SELFTEST(selftest_leak) {
    static void *volatile sink;
    sink = malloc(4096);
    memset(sink, 1, 4096);
    sink = NULL;
}

TEST_SELFTEST(selftest_pass) { CHECK(1 + 1 == 2); }

/* ------------------------------------------------------------------------------------------------
 * Checks */

static const char *self_exe(void) {
    static char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
        return NULL;
    path[n] = 0;
    return path;
}

/* The output line that starts with prefix, or NULL (points into out). */
static const char *line_of(const char *out, const char *prefix) {
    size_t n = strlen(prefix);
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, prefix, n) == 0)
            return l;
    return NULL;
}

static void check_line(const char *out, const char *prefix, const char *want) {
    const char *l = line_of(out, prefix);
    if (!l) {
        ft_test_fail_(__FILE__, __LINE__, "no line starting with '%s' in:\n%s", prefix, out);
        return;
    }
    const char *end = strchr(l, '\n');
    size_t n = end ? (size_t)(end - l) : strlen(l);
    char *line = ft_strndup(l, n);
    if (want && !strstr(line, want))
        ft_test_fail_(__FILE__, __LINE__, "line '%s' does not say '%s'", line, want);
    ft_free(line);
}

/* True while pid exists and is not a zombie (a killed orphan may wait a while to be reaped). */
static int process_running(pid_t pid) {
    char path[64], *text = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    if (ft_file_read_all(path, &text, &n, NULL) != FT_OK)
        return 0;
    const char *p = strrchr(text, ')'); /* "pid (comm) S ..." */
    int running = p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
    ft_free(text);
    return running;
}

TEST(runner_counts_crashes_as_failures) {
    const char *exe = self_exe();
    REQUIRE(exe);
    char pidfile[700];
    snprintf(pidfile, sizeof pidfile, "%s/hang.pid", ft_test_tmpdir());
    char *cmd = ft_asprintf("FT_TEST_RUNNER_SELFTEST=1 FT_TEST_TIMEOUT=3 FT_SELFTEST_PIDFILE='%s' "
                            "ASAN_OPTIONS=detect_leaks=1 '%s' selftest_ 2>/dev/null",
                            pidfile, exe);
    char *out = NULL;
    int rc = ft_test_run(cmd, &out);
    ft_free(cmd);
    REQUIRE(out);
    CHECK_EQ_INT(rc, 1);
    /* Under ASan a SIGSEGV becomes a report and exit 1; without it, the signal itself. */
    check_line(out, "FAIL selftest_segv ", ft_test_sanitized() ? "crashed" : "SIGSEGV");
    check_line(out, "FAIL selftest_abort ", "SIGABRT");
    check_line(out, "FAIL selftest_exit_midway ", "exited with status 3 before the test returned");
    check_line(out, "FAIL selftest_hang ", "timed out after 3s");
    check_line(out, "FAIL selftest_check_fails ", NULL);
    check_line(out, "skip selftest_skip ", "the reason given");
    check_line(out, "ok   selftest_pass ", NULL);
    if (ft_test_sanitized()) {
        check_line(out, "FAIL selftest_leak ", "leak");
        check_line(out, "1 passed, 6 failed, 1 skipped", NULL);
    } else {
        check_line(out, "ok   selftest_leak ", NULL);
        check_line(out, "2 passed, 5 failed, 1 skipped", NULL);
    }
    /* The process the hanging test started was killed with it. */
    char *pid_text = NULL;
    size_t n = 0;
    ft_err err;
    REQUIRE_OK(ft_file_read_all(pidfile, &pid_text, &n, &err), &err);
    long pid = strtol(pid_text, NULL, 10);
    ft_free(pid_text);
    REQUIRE(pid > 1);
    int alive = 0;
    for (int i = 0; i < 100 && (alive = process_running((pid_t)pid)); i++)
        usleep(20000);
    CHECK(!alive);
    if (alive)
        kill((pid_t)pid, SIGKILL);
    free(out);
}

TEST(runner_filter_matching_nothing_fails) {
    const char *exe = self_exe();
    REQUIRE(exe);
    char *out = NULL;
    char *cmd = ft_asprintf("'%s' no_such_test_xyz 2>&1", exe);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    CHECK(out && strstr(out, "no test matches 'no_such_test_xyz'"));
    free(out);
    ft_free(cmd);
    /* one filter of two matching nothing is enough to fail */
    cmd = ft_asprintf("'%s' --list runner_filter no_such_test_xyz 2>&1", exe);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    free(out);
    ft_free(cmd);
    cmd = ft_asprintf("'%s' --list runner_filter 2>&1", exe);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK(out && strstr(out, "runner_filter_matching_nothing_fails tests/test_runner.c"));
    free(out);
    ft_free(cmd);
    /* helpers and self-tests are not tests */
    cmd = ft_asprintf("'%s' --list selftest_ 2>&1", exe);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    free(out);
    ft_free(cmd);
    cmd = ft_asprintf("'%s' --helper no_such_helper 2>&1", exe);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    free(out);
    ft_free(cmd);
}

/* tools/run-tests.sh against fake test binaries (shell scripts) in a scratch folder: the optimized,
 * the sanitized and the MPI build's (mpi_body NULL: none). */
static int run_script3(const char *dir, const char *opt_body, const char *san_body, const char *mpi_body, char **out) {
    const char *bodies[3] = {opt_body, san_body, mpi_body};
    const char *names[3] = {"build", "build-san", "build-mpi"};
    ft_err err;
    char *mpi_bin = ft_asprintf("%s/build-mpi/ftune_tests", dir);
    unlink(mpi_bin);
    ft_free(mpi_bin);
    for (int i = 0; i < 3 && bodies[i]; i++) {
        char *sub = ft_asprintf("%s/%s", dir, names[i]);
        char *bin = ft_asprintf("%s/ftune_tests", sub);
        char *text = ft_asprintf("#!/bin/sh\n%s\n", bodies[i]);
        if (ft_mkdir_p(sub, &err) != FT_OK || ft_file_write_atomic(bin, text, strlen(text), &err) != FT_OK)
            ft_test_fail_(__FILE__, __LINE__, "cannot write %s", bin);
        chmod(bin, 0755);
        ft_free(sub);
        ft_free(bin);
        ft_free(text);
    }
    char script[PATH_MAX];
    if (!realpath("tools/run-tests.sh", script))
        return -1;
    char *cmd = ft_asprintf("cd '%s' && sh '%s' 2>&1", dir, script);
    int rc = ft_test_run(cmd, out);
    ft_free(cmd);
    return rc;
}

static int run_script(const char *dir, const char *opt_body, const char *san_body, char **out) {
    return run_script3(dir, opt_body, san_body, "echo '2 passed, 0 failed, 0 skipped'", out);
}

static const char *last_line(char *out) {
    size_t n = strlen(out);
    while (n && out[n - 1] == '\n')
        out[--n] = 0;
    char *l = strrchr(out, '\n');
    return l ? l + 1 : out;
}

TEST(runner_script_fails_on_any_crash_or_exit_status) {
    const char *dir = ft_test_tmpdir();
    char *out = NULL;
    /* clean: exit 0, counts added */
    CHECK_EQ_INT(run_script(dir, "echo '4 passed, 0 failed, 1 skipped'", "echo '3 passed, 0 failed, 2 skipped'", &out),
                 0);
    CHECK_STR_EQ(last_line(out), "9 passed, 0 failed, 3 skipped");
    free(out);
    /* the MPI build's tests missing: not a silent pass */
    CHECK_EQ_INT(run_script3(dir, "echo '4 passed, 0 failed, 0 skipped'", "echo '3 passed, 0 failed, 0 skipped'", NULL,
                             &out),
                 1);
    CHECK(strstr(out, "build-mpi/ftune_tests is missing"));
    CHECK_STR_EQ(last_line(out), "7 passed, 1 failed, 0 skipped");
    free(out);
    /* a clean summary, then a crash: the old `| tee` pipeline reported success */
    CHECK_EQ_INT(run_script(dir, "echo '4 passed, 0 failed, 0 skipped'; kill -SEGV $$",
                            "echo '3 passed, 0 failed, 0 skipped'", &out),
                 1);
    CHECK(strstr(out, "exited with status"));
    CHECK_STR_EQ(last_line(out), "9 passed, 1 failed, 0 skipped");
    free(out);
    /* no summary at all (the binary died early) */
    CHECK_EQ_INT(run_script(dir, "echo '4 passed, 0 failed, 0 skipped'", "echo 'ok   a'; exit 1", &out), 1);
    CHECK(strstr(out, "without its summary line"));
    free(out);
    /* failures counted, exit non-zero */
    CHECK_EQ_INT(run_script(dir, "echo '4 passed, 2 failed, 0 skipped'; exit 1", "echo '3 passed, 0 failed, 0 skipped'",
                            &out),
                 1);
    CHECK_STR_EQ(last_line(out), "9 passed, 2 failed, 0 skipped");
    free(out);
}
