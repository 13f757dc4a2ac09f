/* tests/comm/test_two_hosts.c: MPI between two hosts for real. tools/two-hosts.sh makes two network
 * namespaces joined by a veth pair (each its own address and hostname), starts one rank in each with
 * mpirun over TCP (no shared-memory transport), under a time limit, and removes the namespaces and
 * whatever runs in them afterwards, on failure too.
 *
 * - two_hosts_mpi_probe: a tiny MPI program (tests/fixtures/mpi/two_hosts_probe.c, built here with
 *   mpicc) gathers the hostnames and allreduces 8 MiB; the sum is exact, the hosts are the two
 *   namespaces, the veth pair carried the payload both ways, and nothing is left behind.
 * - two_hosts_cleanup_on_timeout: a job that hangs is killed at its limit; exit 124, namespaces and
 *   processes gone.
 *
 * They need root (namespaces) and Open MPI (mpirun, mpicc); otherwise they are skipped, saying why. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

#define HARNESS "tools/two-hosts.sh"

/* Why the two-host tests cannot run here, or NULL when they can. */
static const char *why_not(void) {
    if (geteuid() != 0)
        return "network namespaces need root";
    if (ft_test_run("command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1", NULL) != 0)
        return "Open MPI is not installed (mpirun, mpicc: Debian openmpi-bin, libopenmpi-dev)";
    if (ft_test_run("command -v ip >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1", NULL) != 0)
        return "iproute2 (ip) or util-linux (unshare) is not installed";
    return NULL;
}

/* The value of `key=` in a KEY=VALUE file's text (owned by the caller), or NULL. */
static char *stat_value(const char *text, const char *key) {
    size_t kl = strlen(key);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=')
            return ft_strndup(p + kl + 1, len - kl - 1);
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* True when a namespace named in "namespaces=A B" still exists. */
static bool namespaces_left(const char *stats) {
    char *names = stat_value(stats, "namespaces");
    if (!names)
        return false;
    char *list = NULL;
    ft_test_run("ip netns list 2>/dev/null", &list);
    bool left = false;
    char *save = NULL;
    for (char *tok = strtok_r(names, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        for (const char *p = list; p && (p = strstr(p, tok)); p += strlen(tok))
            if (p[strlen(tok)] == ' ' || p[strlen(tok)] == '\n' || p[strlen(tok)] == '\0')
                left = true;
    free(list);
    free(names);
    return left;
}

TEST(two_hosts_mpi_probe) {
    const char *why = why_not();
    if (why)
        SKIP("%s", why);
    const char *dir = ft_test_tmpdir();
    char *probe = ft_path_join(dir, "probe"), *stats = ft_path_join(dir, "stats"), *out = NULL;
    char *cmd = ft_asprintf("mpicc -O1 '%s' -o '%s' 2>&1", ft_test_fixture("mpi/two_hosts_probe.c"), probe);
    int rc = ft_test_run(cmd, &out);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "mpicc failed (%d): %s", rc, out);
    free(out);
    free(cmd);
    REQUIRE(rc == 0);

    /* 1 Mi doubles = 8 MiB per rank */
    cmd = ft_asprintf("sh %s --timeout 120 --stats '%s' -- '%s' 1048576 2>&1", HARNESS, stats, probe);
    rc = ft_test_run(cmd, &out);
    free(cmd);
    if (rc == 3)
        SKIP("cannot make network namespaces here: %s", out);
    CHECK_EQ_INT(rc, 0);
    if (!strstr(out, "probe ranks=2 hosts=ftune-host-a,ftune-host-b doubles=1048576 sum=ok"))
        ft_test_fail_(__FILE__, __LINE__, "unexpected output of the two-host job:\n%s", out);
    free(out);

    char *text = NULL;
    size_t n = 0;
    REQUIRE(ft_file_read_all(stats, &text, &n, NULL) == FT_OK);
    char *a = stat_value(text, "a_tx_bytes"), *b = stat_value(text, "b_tx_bytes");
    REQUIRE(a && b);
    /* each side sends at least half of its 8 MiB through the link whatever the allreduce algorithm */
    long long atx = atoll(a), btx = atoll(b);
    if (atx < 4 << 20 || btx < 4 << 20)
        ft_test_fail_(__FILE__, __LINE__, "the veth pair carried too little: a sent %lld bytes, b %lld", atx, btx);
    CHECK(!namespaces_left(text));
    free(a);
    free(b);
    free(text);
    free(probe);
    free(stats);
}

TEST(two_hosts_cleanup_on_timeout) {
    const char *why = why_not();
    if (why)
        SKIP("%s", why);
    const char *dir = ft_test_tmpdir();
    char *stats = ft_path_join(dir, "stats"), *out = NULL;
    /* a job that never ends, recognisable by its argument among the machine's processes */
    char *marker = ft_asprintf("%d.%d", 300 + (int)(getpid() % 600), (int)(getpid() % 997));
    char *cmd = ft_asprintf("sh %s --timeout 2 --stats '%s' -- sleep %s 2>&1", HARNESS, stats, marker);
    double t0 = ft_time_now();
    int rc = ft_test_run(cmd, &out);
    double dt = ft_time_now() - t0;
    free(cmd);
    if (rc == 3)
        SKIP("cannot make network namespaces here: %s", out);
    CHECK_EQ_INT(rc, 124);
    CHECK(out && strstr(out, "ran out of its 2s"));
    CHECK(dt < 30);
    free(out);
    char *text = NULL;
    size_t n = 0;
    REQUIRE(ft_file_read_all(stats, &text, &n, NULL) == FT_OK);
    CHECK(!namespaces_left(text));
    free(text);
    cmd = ft_asprintf("ps -eo args | grep -c '^sleep %s$'", marker);
    ft_test_run(cmd, &out);
    CHECK_EQ_INT(atoi(out ? out : "1"), 0);
    free(out);
    free(cmd);
    free(marker);
    free(stats);
}
