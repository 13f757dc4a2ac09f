/* tests/comm/test_comm.c: the communication seam (ftune/comm.h). One process: the collectives are
 * identities and the shards cover every unit once. Under mpirun (MPI=1 build): the collectives of
 * 3 and 4 ranks against the same sums computed in one process in rank order, bit for bit (the
 * values span magnitudes so that another order gives other bits, which the child also checks), and
 * a rank that dies ends the whole job quickly with a non-zero status instead of a hang. */
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "mpi_util.h"
#include "test.h"

TEST(comm_single_process) {
    ft_err err;
    ft_comm *c = NULL;
    REQUIRE_OK(ft_comm_single(&c, &err), &err);
    CHECK_EQ_INT(ft_comm_rank(c), 0);
    CHECK_EQ_INT(ft_comm_size(c), 1);
    CHECK_STR_EQ(ft_comm_backend(c), "single");
    CHECK(ft_comm_host(c)[0] != 0);
    float x[5] = {1, 2, 3, 4, 5};
    CHECK_OK(ft_comm_reduce_scatter_f32(c, x, 5, 2, NULL, &err), &err);
    CHECK_OK(ft_comm_allgather_f32(c, x, 5, 2, &err), &err);
    CHECK(x[0] == 1 && x[4] == 5);
    double d[2] = {0.5, -1};
    int64_t k[2] = {7, 9};
    CHECK_OK(ft_comm_sum_f64(c, d, 2, &err), &err);
    CHECK_OK(ft_comm_sum_i64(c, k, 2, &err), &err);
    CHECK(d[0] == 0.5 && d[1] == -1 && k[0] == 7 && k[1] == 9);
    CHECK_OK(ft_comm_barrier(c, &err), &err);
    CHECK_OK(ft_comm_bcast(c, k, sizeof k, 0, &err), &err);
    ft_comm_free(c);
    /* Not launched by mpirun: ft_comm_world is one process too, MPI build or not. */
    if (!ft_comm_launched_by_mpi()) {
        REQUIRE_OK(ft_comm_world(&c, &err), &err);
        CHECK_EQ_INT(ft_comm_size(c), 1);
        CHECK_STR_EQ(ft_comm_backend(c), "single");
        ft_comm_free(c);
    }
}

TEST(comm_shards_cover_every_unit_once) {
    for (int64_t n = 0; n < 40; n++)
        for (int64_t size = 1; size <= 9; size++) {
            int64_t next = 0;
            for (int64_t r = 0; r < size; r++) {
                int64_t lo, hi;
                ft_comm_shard(n, size, r, &lo, &hi);
                CHECK_EQ_INT(lo, next);
                CHECK(hi >= lo && hi - lo <= n / size + 1);
                next = hi;
            }
            CHECK_EQ_INT(next, n);
        }
    int64_t lo, hi; /* no overflow of n * rank */
    ft_comm_shard((int64_t)1 << 62, 64, 63, &lo, &hi);
    CHECK_EQ_INT(hi, (int64_t)1 << 62);
}

/* Rank r's contribution at element i: values from 1e-3 to 1e5 with both signs, so the order in
 * which the ranks are added changes the bits of many sums. */
static float contrib(int64_t r, int64_t i) {
    uint64_t h = (uint64_t)(r * 1000003 + i) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    float mant = (float)(h & 0xFFFFFF) / (float)0x1000000 - 0.5f;
    static const float scale[] = {1e-3f, 1.0f, 1e2f, 1e5f};
    return mant * scale[(h >> 40) & 3];
}

TEST_HELPER(mpi_comm_child) {
    ft_err err;
    ft_comm *c = NULL;
    REQUIRE_OK(ft_comm_world(&c, &err), &err);
    const int64_t N = ft_comm_size(c), me = ft_comm_rank(c);
    const char *want = getenv("OMPI_COMM_WORLD_SIZE");
    REQUIRE(want && atoll(want) == N && N > 1);
    CHECK_STR_EQ(ft_comm_backend(c), "mpi");
    const int64_t n = 300007, unit = 4096;
    float *x = ft_malloc((size_t)n * sizeof *x), *expect = ft_malloc((size_t)n * sizeof *expect);
    float *scratch = ft_malloc((size_t)ft_comm_scratch_floats(c, n, unit) * sizeof(float));
    REQUIRE(x && expect && scratch);
    int64_t reordered = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = contrib(me, i);
        float a = contrib(0, i), b = contrib(N - 1, i);
        for (int64_t r = 1; r < N; r++)
            a += contrib(r, i);
        for (int64_t r = N - 2; r >= 0; r--)
            b += contrib(r, i);
        expect[i] = a;
        reordered += a != b;
    }
    if (N >= 3) /* the order matters for these values (a + b == b + a, so only from 3 ranks on) */
        CHECK(reordered > n / 100);
    CHECK_OK(ft_comm_reduce_scatter_f32(c, x, n, unit, scratch, &err), &err);
    int64_t units = (n + unit - 1) / unit, lo, hi;
    ft_comm_shard(units, N, me, &lo, &hi);
    int64_t bad = 0;
    for (int64_t i = lo * unit; i < hi * unit && i < n; i++)
        bad += x[i] != expect[i];
    CHECK_EQ_INT(bad, 0);
    /* The gather to rank 1, then the all-gather: every rank has all the ordered sums. */
    float *full = ft_calloc((size_t)n, sizeof *full);
    REQUIRE(full);
    CHECK_OK(ft_comm_gather_f32(c, x + lo * unit, me == 1 ? full : NULL, n, unit, 1, &err), &err);
    if (me == 1) {
        for (int64_t i = 0; i < n; i++)
            x[i] = full[i];
        bad = 0;
        for (int64_t i = 0; i < n; i++)
            bad += x[i] != expect[i];
        CHECK_EQ_INT(bad, 0);
    }
    CHECK_OK(ft_comm_allgather_f32(c, x, n, unit, &err), &err);
    bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += x[i] != expect[i];
    CHECK_EQ_INT(bad, 0);
    /* The same with a scratch allocated by the call and a unit that splits unevenly. */
    for (int64_t i = 0; i < n; i++)
        x[i] = contrib(me, i);
    CHECK_OK(ft_comm_reduce_scatter_f32(c, x, n, 1000, NULL, &err), &err);
    CHECK_OK(ft_comm_allgather_f32(c, x, n, 1000, &err), &err);
    bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += x[i] != expect[i];
    CHECK_EQ_INT(bad, 0);
    /* Ordered sums of doubles, exact sums of int64 */
    double d[3] = {(double)contrib(me, 1) * 1e-9, (double)contrib(me, 2), (double)me};
    int64_t k[2] = {me, (int64_t)1 << 40};
    CHECK_OK(ft_comm_sum_f64(c, d, 3, &err), &err);
    CHECK_OK(ft_comm_sum_i64(c, k, 2, &err), &err);
    double e0 = (double)contrib(0, 1) * 1e-9, e1 = (double)contrib(0, 2);
    for (int64_t r = 1; r < N; r++) {
        e0 += (double)contrib(r, 1) * 1e-9;
        e1 += (double)contrib(r, 2);
    }
    CHECK(d[0] == e0 && d[1] == e1 && d[2] == (double)(N * (N - 1) / 2));
    CHECK_EQ_INT(k[0], N * (N - 1) / 2);
    CHECK_EQ_INT(k[1], N << 40);
    /* per-chunk doubles and a broadcast */
    double parts[10];
    for (int i = 0; i < 10; i++)
        parts[i] = i * 0.5 + 100 * (double)me;
    CHECK_OK(ft_comm_allgather_f64(c, parts, 10, 1, &err), &err);
    for (int64_t r = 0; r < N; r++) {
        int64_t plo, phi;
        ft_comm_shard(10, N, r, &plo, &phi);
        for (int64_t i = plo; i < phi; i++)
            CHECK(parts[i] == i * 0.5 + 100 * (double)r);
    }
    char msg[32] = "";
    if (me == N - 1)
        snprintf(msg, sizeof msg, "from the last rank");
    CHECK_OK(ft_comm_bcast(c, msg, sizeof msg, N - 1, &err), &err);
    CHECK_STR_EQ(msg, "from the last rank");
    CHECK_OK(ft_comm_barrier(c, &err), &err);
    ft_free(x);
    ft_free(full);
    ft_free(expect);
    ft_free(scratch);
    if (me == 0)
        printf("mpi_comm_child: %lld ranks ok, %lld of %lld sums depend on the order\n", (long long)N,
               (long long)reordered, (long long)n);
    ft_comm_free(c);
}

TEST(comm_mpi_collectives_match_rank_order_sums) {
    SKIP_WITHOUT_MPI();
    int nps[] = {2, 3, 4};
    for (size_t t = 0; t < sizeof nps / sizeof *nps; t++) {
        char cmd[2048];
        mpi_test_launch(cmd, sizeof cmd, 120, nps[t]);
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s --helper mpi_comm_child 2>&1", mpi_test_self());
        char *out = NULL;
        int st = ft_test_run(cmd, &out);
        if (st != 0 || !strstr(out, "ranks ok"))
            ft_test_fail_(__FILE__, __LINE__, "-np %d: exit %d, output:\n%s", nps[t], st, out);
        ft_free(out);
    }
}

/* Rank 1 dies (SIGKILL) while rank 0 waits for it in a collective. */
TEST_HELPER(mpi_die_child) {
    ft_err err;
    ft_comm *c = NULL;
    REQUIRE_OK(ft_comm_world(&c, &err), &err);
    if (ft_comm_rank(c) == 1) {
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
        raise(SIGKILL);
    }
    float x[1000] = {0};
    for (int i = 0; i < 1000; i++) /* would hang forever without the launcher's abort */
        if (ft_comm_reduce_scatter_f32(c, x, 1000, 10, NULL, &err) != FT_OK)
            break;
    ft_comm_free(c);
}

TEST(comm_mpi_dead_rank_ends_the_job) {
    SKIP_WITHOUT_MPI();
    char cmd[2048];
    mpi_test_launch(cmd, sizeof cmd, 60, 3);
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s --helper mpi_die_child >/dev/null 2>&1",
             mpi_test_self());
    double t0 = ft_time_now();
    int st = ft_test_run(cmd, NULL);
    double dt = ft_time_now() - t0;
    CHECK(st != 0);
    CHECK(st != 124); /* not ended by the timeout (mpirun itself exits 137 for a rank killed by SIGKILL) */
    if (dt > 30)
        ft_test_fail_(__FILE__, __LINE__, "the job took %.1f s to end after a rank died", dt);
}

/* Rank 1 stops (SIGSTOP: alive, silent); with FTUNE_COMM_TIMEOUT_S the others end the job. */
TEST_HELPER(mpi_stuck_child) {
    ft_err err;
    ft_comm *c = NULL;
    REQUIRE_OK(ft_comm_world(&c, &err), &err);
    const char *piddir = getenv("FT_STUCK_PIDDIR");
    if (ft_comm_rank(c) == 1) {
        char p[1200], v[32];
        snprintf(p, sizeof p, "%s/stuck.pid", piddir ? piddir : "/tmp");
        snprintf(v, sizeof v, "%lld\n", (long long)getpid());
        ft_file_write_atomic(p, v, strlen(v), NULL);
        raise(SIGSTOP);
    }
    int64_t x = 1;
    ft_comm_sum_i64(c, &x, 1, &err);
    ft_comm_free(c);
}

TEST(comm_mpi_stuck_rank_times_out) {
    SKIP_WITHOUT_MPI();
    const char *tmp = ft_test_tmpdir();
    char cmd[2048];
    mpi_test_launch(cmd, sizeof cmd, 60, 2);
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd),
             "-x FTUNE_COMM_TIMEOUT_S=2 -x FT_STUCK_PIDDIR=%s %s --helper mpi_stuck_child >/dev/null 2>&1", tmp,
             mpi_test_self());
    double t0 = ft_time_now();
    int st = ft_test_run(cmd, NULL);
    double dt = ft_time_now() - t0;
    CHECK(st != 0 && st != 124);
    if (dt > 30)
        ft_test_fail_(__FILE__, __LINE__, "the job took %.1f s to end with a stopped rank", dt);
    char p[1200], *v = NULL;
    size_t n = 0;
    snprintf(p, sizeof p, "%s/stuck.pid", tmp);
    if (ft_file_read_all(p, &v, &n, NULL) == FT_OK) {
        pid_t pid = (pid_t)atol(v);
        struct timespec ts = {0, 200 * 1000 * 1000};
        for (int i = 0; i < 25 && pid > 0 && kill(pid, 0) == 0; i++)
            nanosleep(&ts, NULL);
        if (pid > 0 && kill(pid, 0) == 0) {
            kill(pid, SIGKILL);
            ft_test_fail_(__FILE__, __LINE__, "the stopped rank %d was left behind", (int)pid);
        }
        ft_free(v);
    }
}
