/* tests/main.c: the test runner.
 *
 *   ftune_tests [FILTER...]       run every test whose name or source path contains one of the
 *                                 filters (all when none); end with "N passed, N failed, N skipped"
 *   ftune_tests --list [FILTER...] print the matching tests' names and files
 *   ftune_tests --helper NAME     run the TEST_HELPER NAME in this process (a process that another
 *                                 test starts, e.g. a training process it kills)
 *
 * Each test runs in a forked child, in its own process group, so that a crash (a signal, abort(),
 * a sanitizer report, an exit() in the middle) or a hang counts as that test's failure, says why,
 * and the run goes on. The child reports its outcome through a shared page; a child that ends
 * without reporting, or that reports and then exits non-zero (a leak report at exit), failed.
 *
 * A filter that matches no test is an error (exit 2): a renamed test must not let a script that
 * names it pass while testing nothing.
 *
 * Environment: FT_TEST_TIMEOUT per-test limit in seconds (default 600, 0 = none; the test's whole
 * process group is killed when it runs out); FT_TEST_NOFORK=1 runs the tests in this process (for
 * a debugger; a crash then ends the run); FT_TEST_KEEP=1 keeps the temporary folders;
 * FT_TEST_RUNNER_SELFTEST=1 runs only the runner's own self-tests (tests/test_runner.c), which
 * crash, hang and fail on purpose. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

typedef struct {
    const char *name, *file;
    ft_test_fn fn;
    ft_test_kind kind;
} test_case;

/* What a test's process reports to the runner (a MAP_SHARED page, so it survives the child). */
typedef struct {
    volatile int finished; /* the test function returned */
    volatile int failed, skipped;
    char skip_reason[512];
} test_outcome;

static test_case *tests;
static size_t n_tests, cap_tests;
static test_outcome local_outcome;
static test_outcome *outcome = &local_outcome;
static char tmp_root[512];
static char cur_tmp[600];
static volatile sig_atomic_t interrupted;

void ft_test_register_kind(const char *name, const char *file, ft_test_fn fn, ft_test_kind kind) {
    if (n_tests == cap_tests) {
        cap_tests = cap_tests ? cap_tests * 2 : 256;
        tests = realloc(tests, cap_tests * sizeof *tests);
        if (!tests)
            abort();
    }
    tests[n_tests++] = (test_case){name, file, fn, kind};
}

void ft_test_register(const char *name, const char *file, ft_test_fn fn) {
    ft_test_register_kind(name, file, fn, FT_TEST_KIND_TEST);
}

void ft_test_fail_(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    outcome->failed = 1;
}

void ft_test_skip_(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char reason[sizeof outcome->skip_reason];
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    fprintf(stderr, "  %s:%d: skipped: %s\n", file, line, reason);
    memcpy(outcome->skip_reason, reason, sizeof reason);
    outcome->skipped = 1;
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

int ft_test_sh(char **out, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return ft_test_run(cmd, out);
}

/* ------------------------------------------------------------------------------------------------
 * Selecting tests */

static int is_runnable(const test_case *t, int selftest) {
    return selftest ? t->kind == FT_TEST_KIND_SELFTEST : t->kind == FT_TEST_KIND_TEST;
}

static int matches(const test_case *t, int nf, char **filters) {
    if (nf == 0)
        return 1;
    for (int i = 0; i < nf; i++)
        if (strstr(t->name, filters[i]) || strstr(t->file, filters[i]))
            return 1;
    return 0;
}

/* Every filter must select at least one test; names the first that selects none. */
static const char *unmatched_filter(int nf, char **filters, int selftest) {
    for (int i = 0; i < nf; i++) {
        int hit = 0;
        for (size_t k = 0; k < n_tests && !hit; k++)
            hit = is_runnable(&tests[k], selftest) && matches(&tests[k], 1, &filters[i]);
        if (!hit)
            return filters[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Running one test in a child process */

static void on_interrupt(int sig) { interrupted = sig; }

static double env_seconds(const char *name, double dflt) {
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end;
    double x = strtod(v, &end);
    if (*end || x < 0) {
        fprintf(stderr, "ftune_tests: %s=%s is not a number of seconds; using %g\n", name, v, dflt);
        return dflt;
    }
    return x;
}

static void run_in_child(const test_case *t) {
    /* Own process group: a timeout kills the test and whatever it started. */
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    /* Tests never read the user's terminal (a background process group would stop on it). */
    int fd = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        dup2(fd, 0);
        if (fd != 0)
            close(fd);
    }
    t->fn();
    outcome->finished = 1;
    fflush(stdout);
    fflush(stderr);
    /* exit, not _exit: LeakSanitizer checks this test's leaks at exit. */
    exit(0);
}

static const char *signal_name(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGPIPE: return "SIGPIPE";
    case SIGTRAP: return "SIGTRAP";
    default: return "signal";
    }
}

/* Runs test t in a child; returns 'P' (passed), 'F' (failed) or 'S' (skipped), with the reason of a
 * failure the test did not report itself (crash, timeout, exit) or of a skip in why. */
static char run_forked(const test_case *t, double timeout, char *why, size_t why_cap) {
    memset((void *)outcome, 0, sizeof *outcome);
    why[0] = 0;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_cap, "fork failed: %s", strerror(errno));
        return 'F';
    }
    if (pid == 0)
        run_in_child(t);
    setpgid(pid, pid); /* also here, so that a kill before the child ran setpgid reaches it */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    double deadline = ft_time_now() + timeout;
    int st = 0, timed_out = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            snprintf(why, why_cap, "waitpid failed: %s", strerror(errno));
            return 'F';
        }
        if (interrupted) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return 'F';
        }
        double left = timeout > 0 ? deadline - ft_time_now() : 1.0;
        if (left <= 0) {
            timed_out = 1;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        if (left > 1.0)
            left = 1.0; /* wake now and then: SIGCHLD is not queued twice */
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        sigtimedwait(&chld, NULL, &ts);
    }
    if (timed_out) {
        snprintf(why, why_cap, "timed out after %gs (FT_TEST_TIMEOUT); its processes were killed", timeout);
        return 'F';
    }
    if (!outcome->finished) {
        if (WIFSIGNALED(st)) {
            /* whatever it left running (a grandchild) goes with it */
            kill(-pid, SIGKILL);
            snprintf(why, why_cap, "crashed: killed by signal %d (%s)", WTERMSIG(st), signal_name(WTERMSIG(st)));
        } else {
            snprintf(why, why_cap, "crashed: its process exited with status %d before the test returned "
                                   "(a sanitizer report or an exit() above?)", WEXITSTATUS(st));
        }
        return 'F';
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        if (WIFSIGNALED(st))
            snprintf(why, why_cap, "the test returned, then its process was killed by signal %d (%s) at exit",
                     WTERMSIG(st), signal_name(WTERMSIG(st)));
        else
            snprintf(why, why_cap, "the test returned, then its process exited with status %d "
                                   "(a leak or sanitizer report above?)", WEXITSTATUS(st));
        return 'F';
    }
    if (outcome->failed)
        return 'F';
    if (outcome->skipped) {
        snprintf(why, why_cap, "%s", outcome->skip_reason);
        return 'S';
    }
    return 'P';
}

static char run_inline(const test_case *t, char *why, size_t why_cap) {
    memset((void *)outcome, 0, sizeof *outcome);
    why[0] = 0;
    t->fn();
    if (outcome->failed)
        return 'F';
    if (outcome->skipped) {
        snprintf(why, why_cap, "%s", outcome->skip_reason);
        return 'S';
    }
    return 'P';
}

/* ------------------------------------------------------------------------------------------------
 * Entry */

static int run_helper(const char *name) {
    for (size_t i = 0; i < n_tests; i++) {
        if (tests[i].kind == FT_TEST_KIND_HELPER && strcmp(tests[i].name, name) == 0) {
            tests[i].fn();
            fflush(stdout);
            return outcome->failed ? 1 : 0;
        }
    }
    fprintf(stderr, "ftune_tests: no helper named '%s'\n", name);
    return 2;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "--helper") == 0) {
        if (argc != 3) {
            fprintf(stderr, "usage: ftune_tests --helper NAME\n");
            return 2;
        }
        return run_helper(argv[2]);
    }
    int list = argc >= 2 && strcmp(argv[1], "--list") == 0;
    int nf = argc - 1 - list;
    char **filters = argv + 1 + list;
    const char *st_env = getenv("FT_TEST_RUNNER_SELFTEST");
    int selftest = st_env && strcmp(st_env, "1") == 0;
    const char *bad = unmatched_filter(nf, filters, selftest);
    if (bad) {
        fprintf(stderr, "ftune_tests: no test matches '%s' (a filter is a substring of a test's name or file; "
                        "`ftune_tests --list` shows them)\n", bad);
        return 2;
    }
    if (list) {
        for (size_t i = 0; i < n_tests; i++)
            if (is_runnable(&tests[i], selftest) && matches(&tests[i], nf, filters))
                printf("%s %s\n", tests[i].name, tests[i].file);
        return 0;
    }
    const char *nofork_env = getenv("FT_TEST_NOFORK");
    int nofork = nofork_env && strcmp(nofork_env, "1") == 0;
    double timeout = env_seconds("FT_TEST_TIMEOUT", 600);
    if (!nofork) {
        void *page = mmap(NULL, sizeof(test_outcome), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED) {
            fprintf(stderr, "ftune_tests: mmap failed: %s\n", strerror(errno));
            return 1;
        }
        outcome = page;
        /* SIGCHLD is blocked here and waited for with sigtimedwait (children unblock it). */
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_BLOCK, &chld, NULL);
        struct sigaction sa = {0};
        sa.sa_handler = on_interrupt;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
    }
    snprintf(tmp_root, sizeof tmp_root, "%s/ftune-tests-%ld", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid());
    const char *build = ft_test_sanitized() ? " (ASan+UBSan build)" : "";
    int passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < n_tests && !interrupted; i++) {
        test_case *t = &tests[i];
        if (!is_runnable(t, selftest) || !matches(t, nf, filters))
            continue;
        snprintf(cur_tmp, sizeof cur_tmp, "%s/%s", tmp_root, t->name);
        ft_err err;
        if (ft_mkdir_p(cur_tmp, &err) != FT_OK) {
            fprintf(stderr, "ftune_tests: cannot create %s: %s\n", cur_tmp, err.msg);
            return 1;
        }
        char why[700];
        double t0 = ft_time_now();
        char r = nofork ? run_inline(t, why, sizeof why) : run_forked(t, timeout, why, sizeof why);
        double dt = ft_time_now() - t0;
        if (interrupted)
            break;
        if (r == 'F') {
            failed++;
            printf("FAIL %s (%s) %.2fs%s%s\n", t->name, t->file, dt, why[0] ? ": " : "", why);
        } else if (r == 'S') {
            skipped++;
            printf("skip %s %.2fs: %s%s\n", t->name, dt, why, strstr(why, "ASan") ? "" : build);
        } else {
            passed++;
            printf("ok   %s %.2fs\n", t->name, dt);
        }
        /* A finished test's files go at once (a failed one's stay for a look when FT_TEST_KEEP is set), so an
           interrupted run leaves little behind and the suite's peak disk use is one test's, not all of them. */
        if (!getenv("FT_TEST_KEEP"))
            ft_rm_rf(cur_tmp, NULL);
    }
    if (!getenv("FT_TEST_KEEP"))
        ft_rm_rf(tmp_root, NULL);
    if (interrupted) {
        printf("interrupted by signal %d after %d passed, %d failed, %d skipped\n", (int)interrupted, passed, failed,
               skipped);
        return 128 + (int)interrupted;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
