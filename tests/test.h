/* tests/test.h: the ftune test framework. Tests register themselves (one binary, all modules);
 * a failed check prints file:line and the values and marks the test failed, then the test goes
 * on (CHECK) or returns (REQUIRE); SKIP("reason") ends a test as skipped. The runner
 * (tests/main.c) runs each test in its own process, so a crash or a hang fails that test only,
 * and prints "N passed, N failed, N skipped". */
#ifndef FTUNE_TEST_H
#define FTUNE_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ftune/base.h"

typedef void (*ft_test_fn)(void);
typedef enum {
    FT_TEST_KIND_TEST,     /* an ordinary test */
    FT_TEST_KIND_HELPER,   /* never run as a test: `ftune_tests --helper NAME` runs it (a process
                            * another test starts, e.g. to kill it) */
    FT_TEST_KIND_SELFTEST, /* the runner's own self-tests (crash, hang on purpose): run only with
                            * FT_TEST_RUNNER_SELFTEST=1, by tests/test_runner.c */
} ft_test_kind;
void ft_test_register(const char *name, const char *file, ft_test_fn fn);
void ft_test_register_kind(const char *name, const char *file, ft_test_fn fn, ft_test_kind kind);
void ft_test_fail_(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Mark the current test skipped with a reason (counted as skipped, never as passed). */
void ft_test_skip_(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Repository-relative path of a fixture: "tests/fixtures/<rel>" (owned by the test runner's
 * static buffer ring; copy if kept). */
const char *ft_test_fixture(const char *rel);
/* A fresh empty temporary folder for this test (removed at exit unless FT_TEST_KEEP=1). */
const char *ft_test_tmpdir(void);
/* Path of the ftune binary for end-to-end tests ($FTUNE_BIN, else build/ftune). */
const char *ft_test_ftune_bin(void);
/* Run a shell command, capturing stdout (owned by the caller) and returning the exit status. */
int ft_test_run(const char *cmd, char **out);
/* ft_test_run on a printf-formatted command (at most 8 KiB). */
int ft_test_sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when the test binary was built with sanitizers (slow paths may take smaller sizes). */
int ft_test_sanitized(void);

#define TEST(name)                                                                       \
    static void name(void);                                                              \
    __attribute__((constructor)) static void ft_test_reg_##name(void) {                  \
        ft_test_register(#name, __FILE__, name);                                         \
    }                                                                                    \
    static void name(void)

/* A process entry that is not a test: `ftune_tests --helper name` runs it and exits 0 unless a
 * check failed (it has no ft_test_tmpdir()). */
#define TEST_HELPER(name)                                                                \
    static void name(void);                                                              \
    __attribute__((constructor)) static void ft_test_reg_##name(void) {                  \
        ft_test_register_kind(#name, __FILE__, name, FT_TEST_KIND_HELPER);               \
    }                                                                                    \
    static void name(void)

/* A test of the runner itself, run only when FT_TEST_RUNNER_SELFTEST=1. */
#define TEST_SELFTEST(name)                                                              \
    static void name(void);                                                              \
    __attribute__((constructor)) static void ft_test_reg_##name(void) {                  \
        ft_test_register_kind(#name, __FILE__, name, FT_TEST_KIND_SELFTEST);             \
    }                                                                                    \
    static void name(void)

/* End the test as skipped, saying why (a skip is never a pass). */
#define SKIP(...)                                                                        \
    do {                                                                                 \
        ft_test_skip_(__FILE__, __LINE__, __VA_ARGS__);                                  \
        return;                                                                          \
    } while (0)

/* Skip under the ASan+UBSan build, saying so and why (the optimized run covers the test). */
#define SKIP_IF_SANITIZED(why)                                                           \
    do {                                                                                 \
        if (ft_test_sanitized())                                                         \
            SKIP("not run under ASan+UBSan: %s; the optimized run covers it", why);      \
    } while (0)

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond))                                                        \
            ft_test_fail_(__FILE__, __LINE__, "check failed: %s", #cond);   \
    } while (0)

#define REQUIRE(cond)                                                        \
    do {                                                                     \
        if (!(cond)) {                                                       \
            ft_test_fail_(__FILE__, __LINE__, "required: %s", #cond);        \
            return;                                                          \
        }                                                                    \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                                     \
    do {                                                                                                       \
        long long ft_a_ = (long long)(a), ft_b_ = (long long)(b);                                              \
        if (ft_a_ != ft_b_)                                                                                    \
            ft_test_fail_(__FILE__, __LINE__, "%s == %s: got %lld, expected %lld", #a, #b, ft_a_, ft_b_);     \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                                     \
    do {                                                                                                       \
        const char *ft_a_ = (a), *ft_b_ = (b);                                                                 \
        if (!ft_a_ || !ft_b_ || strcmp(ft_a_, ft_b_) != 0)                                                     \
            ft_test_fail_(__FILE__, __LINE__, "%s == %s: got \"%s\", expected \"%s\"", #a, #b,                 \
                          ft_a_ ? ft_a_ : "(null)", ft_b_ ? ft_b_ : "(null)");                                 \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                                  \
    do {                                                                                                       \
        double ft_a_ = (double)(a), ft_b_ = (double)(b), ft_t_ = (double)(tol);                                \
        if (!(fabs(ft_a_ - ft_b_) <= ft_t_))                                                                   \
            ft_test_fail_(__FILE__, __LINE__, "%s ~= %s: got %.9g, expected %.9g (tol %.3g)", #a, #b, ft_a_,   \
                          ft_b_, ft_t_);                                                                       \
    } while (0)

/* An ft_status call that must succeed; prints the error's message when it does not. */
#define CHECK_OK(expr, errp)                                                                                   \
    do {                                                                                                       \
        ft_status ft_s_ = (expr);                                                                              \
        if (ft_s_ != FT_OK) {                                                                                  \
            char ft_m_[1600];                                                                                  \
            ft_err_format((errp), ft_m_, sizeof ft_m_);                                                        \
            ft_test_fail_(__FILE__, __LINE__, "%s failed: %s: %s", #expr, ft_status_str(ft_s_), ft_m_);       \
        }                                                                                                      \
    } while (0)

#define REQUIRE_OK(expr, errp)                                                                                 \
    do {                                                                                                       \
        ft_status ft_s_ = (expr);                                                                              \
        if (ft_s_ != FT_OK) {                                                                                  \
            char ft_m_[1600];                                                                                  \
            ft_err_format((errp), ft_m_, sizeof ft_m_);                                                        \
            ft_test_fail_(__FILE__, __LINE__, "%s failed: %s: %s", #expr, ft_status_str(ft_s_), ft_m_);       \
            return;                                                                                            \
        }                                                                                                      \
    } while (0)

#endif
