/* comm/comm.c: the communication seam (ftune/comm.h): one process always, MPI (Open MPI) when
 * compiled with FT_WITH_MPI (make MPI=1). Every sum is done here in rank order on data that MPI
 * only moves (point to point or gathers), so results do not depend on MPI's algorithms.
 *
 * Messages are cut into pieces of at most PIECE bytes: MPI counts are ints, and a model's
 * gradients are larger than 2 GiB from about 500M parameters. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftune/comm.h"

#ifdef FT_WITH_MPI
#include <mpi.h>
#endif

#define PIECE ((size_t)1 << 30)

struct ft_comm {
    int64_t rank, size;
    int64_t local_size; /* ranks on this host (this one included) */
    bool mpi;
    char host[256];
    double timeout_s; /* FTUNE_COMM_TIMEOUT_S: the longest wait for the peers (0: no limit) */
#ifdef FT_WITH_MPI
    MPI_Comm world;
#endif
};

bool ft_comm_mpi_built(void) {
#ifdef FT_WITH_MPI
    return true;
#else
    return false;
#endif
}

static const char *const launcher_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", NULL};

bool ft_comm_launched_by_mpi(void) {
    for (size_t i = 0; launcher_vars[i]; i++)
        if (getenv(launcher_vars[i]))
            return true;
    return false;
}

/* The world size the launcher announced (1 when it says nothing). */
__attribute__((unused)) static int64_t launcher_size(void) {
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    if (!v)
        v = getenv("PMI_SIZE");
    if (!v)
        v = getenv("PMIX_SIZE");
    long long n = v ? atoll(v) : 1;
    return n > 0 ? n : 1;
}

static ft_comm *comm_alloc(void) {
    ft_comm *c = ft_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->size = 1;
    c->local_size = 1;
    if (gethostname(c->host, sizeof c->host - 1) != 0 || !c->host[0])
        snprintf(c->host, sizeof c->host, "localhost");
    return c;
}

ft_status ft_comm_single(ft_comm **out, ft_err *err) {
    *out = comm_alloc();
    return *out ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
}

#ifdef FT_WITH_MPI
/* An MPI error as an ft_err: what failed and MPI's words for it. */
static ft_status mpi_fail(ft_err *err, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        len = 0;
    msg[len] = 0;
    return FT_ERR(err, FT_ERR_IO, "MPI %s failed: %s (error %d); a peer process may have died", what,
                  len ? msg : "unknown error", rc);
}
#define MPI_TRY(call, what)                   \
    do {                                      \
        int mpi_rc_ = (call);                 \
        if (mpi_rc_ != MPI_SUCCESS)           \
            return mpi_fail(err, mpi_rc_, what); \
    } while (0)

/* Every wait of this file: nonblocking requests tested until done, yielding the core between
 * tests (a waiting rank gives way to the computing ones of its host, and keeps MPI's progress
 * going), and with FTUNE_COMM_TIMEOUT_S set, a peer that stays silent that long (stopped, stuck;
 * a dead one is the launcher's to notice) ends the job: MPI_Abort, so every process stops. */
static ft_status wait_reqs(ft_comm *c, int n, MPI_Request *r, const char *what, ft_err *err) {
    double t0 = c->timeout_s > 0 ? ft_time_now() : 0;
    for (unsigned k = 0;; k++) {
        int done = 0, rc = MPI_Testall(n, r, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, rc, what);
        if (done)
            return FT_OK;
        sched_yield();
        if (c->timeout_s > 0 && (k & 255) == 0 && ft_time_now() - t0 > c->timeout_s) {
            FT_LOG_ERROR("rank %lld of %lld: waited %.0f s in MPI %s (FTUNE_COMM_TIMEOUT_S): a process of the run is "
                         "stuck; ending all of them",
                         (long long)c->rank, (long long)c->size, c->timeout_s, what);
            MPI_Abort(c->world, 1);
        }
    }
}
#endif

ft_status ft_comm_world(ft_comm **out, ft_err *err) {
    *out = NULL;
    if (!ft_comm_launched_by_mpi())
        return ft_comm_single(out, err);
#ifndef FT_WITH_MPI
    if (launcher_size() > 1)
        return FT_ERR(err, FT_ERR_UNSUPPORTED,
                      "started by an MPI launcher as one of %lld processes, but this ftune is built without MPI: "
                      "build it with `make MPI=1` (needs libopenmpi-dev), or run it without mpirun",
                      (long long)launcher_size());
    return ft_comm_single(out, err);
#else
    ft_comm *c = comm_alloc();
    if (!c)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        /* Only the training thread calls MPI (OpenMP threads never do). */
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            ft_free(c);
            return FT_ERR(err, FT_ERR_IO, "MPI_Init failed (error %d): check the mpirun command line", rc);
        }
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->world);
    if (rc != MPI_SUCCESS) {
        ft_free(c);
        return mpi_fail(err, rc, "MPI_Comm_dup");
    }
    MPI_Comm_set_errhandler(c->world, MPI_ERRORS_RETURN);
    int r = 0, n = 1;
    MPI_Comm_rank(c->world, &r);
    MPI_Comm_size(c->world, &n);
    c->rank = r;
    c->size = n;
    c->local_size = n;
    MPI_Comm node; /* the ranks that share this host's memory */
    if (MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, r, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        int ln = n;
        MPI_Comm_size(node, &ln);
        c->local_size = ln;
        MPI_Comm_free(&node);
    }
    c->mpi = true;
    const char *to = getenv("FTUNE_COMM_TIMEOUT_S");
    c->timeout_s = to && atof(to) > 0 ? atof(to) : 0;
    *out = c;
    return FT_OK;
#endif
}

void ft_comm_free(ft_comm *c) {
    if (!c)
        return;
#ifdef FT_WITH_MPI
    if (c->mpi) {
        MPI_Comm_free(&c->world);
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin)
            MPI_Finalize();
    }
#endif
    ft_free(c);
}

int64_t ft_comm_rank(const ft_comm *c) { return c ? c->rank : 0; }
int64_t ft_comm_size(const ft_comm *c) { return c ? c->size : 1; }
int64_t ft_comm_local_size(const ft_comm *c) { return c ? c->local_size : 1; }
const char *ft_comm_backend(const ft_comm *c) { return c && c->mpi ? "mpi" : "single"; }
const char *ft_comm_host(const ft_comm *c) { return c ? c->host : "localhost"; }

void ft_comm_shard(int64_t n, int64_t size, int64_t rank, int64_t *lo, int64_t *hi) {
    if (size < 1)
        size = 1;
    /* n * r may overflow for huge n: split the product. */
    *lo = (n / size) * rank + (n % size) * rank / size;
    *hi = (n / size) * (rank + 1) + (n % size) * (rank + 1) / size;
}

/* Rank r's elements of an n-element buffer sharded in units. */
static void shard_elems(int64_t n, int64_t unit, int64_t size, int64_t r, int64_t *lo, int64_t *hi) {
    if (unit < 1)
        unit = 1;
    int64_t units = (n + unit - 1) / unit, ulo, uhi;
    ft_comm_shard(units, size, r, &ulo, &uhi);
    *lo = ulo * unit < n ? ulo * unit : n;
    *hi = uhi * unit < n ? uhi * unit : n;
}

static bool multi(const ft_comm *c) { return c && c->mpi && c->size > 1; }

ft_status ft_comm_barrier(ft_comm *c, ft_err *err) {
    if (!multi(c))
        return FT_OK;
#ifdef FT_WITH_MPI
    MPI_Request rq;
    MPI_TRY(MPI_Ibarrier(c->world, &rq), "barrier");
    return wait_reqs(c, 1, &rq, "barrier", err);
#else
    (void)err;
#endif
    return FT_OK;
}

ft_status ft_comm_bcast(ft_comm *c, void *buf, size_t bytes, int64_t root, ft_err *err) {
    if (!multi(c))
        return FT_OK;
#ifdef FT_WITH_MPI
    for (size_t off = 0; off < bytes; off += PIECE) {
        size_t k = bytes - off < PIECE ? bytes - off : PIECE;
        MPI_Request rq;
        MPI_TRY(MPI_Ibcast((char *)buf + off, (int)k, MPI_BYTE, (int)root, c->world, &rq), "broadcast");
        FT_TRY(wait_reqs(c, 1, &rq, "broadcast", err));
    }
#else
    (void)buf, (void)bytes, (void)root, (void)err;
#endif
    return FT_OK;
}

#ifdef FT_WITH_MPI
/* Requests of one exchange, grown as pieces are posted. */
typedef struct reqs {
    MPI_Request *r;
    size_t n, cap;
} reqs;

static ft_status post(ft_comm *c, reqs *q, bool send, void *buf, size_t bytes, int64_t peer, int tag, ft_err *err) {
    for (size_t off = 0; off < bytes; off += PIECE) {
        size_t k = bytes - off < PIECE ? bytes - off : PIECE;
        if (q->n == q->cap) {
            size_t cap = q->cap ? 2 * q->cap : 16;
            MPI_Request *nr = ft_realloc(q->r, cap * sizeof *nr);
            if (!nr)
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            q->r = nr;
            q->cap = cap;
        }
        int rc = send ? MPI_Isend((char *)buf + off, (int)k, MPI_BYTE, (int)peer, tag, c->world, &q->r[q->n])
                      : MPI_Irecv((char *)buf + off, (int)k, MPI_BYTE, (int)peer, tag, c->world, &q->r[q->n]);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, rc, send ? "send" : "receive");
        q->n++;
    }
    return FT_OK;
}

static ft_status wait_all(ft_comm *c, reqs *q, const char *what, ft_err *err) {
    ft_status s = q->n ? wait_reqs(c, (int)q->n, q->r, what, err) : FT_OK;
    ft_free(q->r);
    q->r = NULL;
    q->n = q->cap = 0;
    return s;
}

/* Shards of buf (elements of `esz` bytes) to every rank. */
static ft_status gather_shards(ft_comm *c, void *buf, size_t esz, int64_t n, int64_t unit, ft_err *err) {
    const int64_t root = -1;
    reqs q = {0};
    ft_status s = FT_OK;
    int64_t me = c->rank, lo, hi;
    shard_elems(n, unit, c->size, me, &lo, &hi);
    for (int64_t r = 0; s == FT_OK && r < c->size; r++) {
        if (r == me)
            continue;
        if (root < 0 || me == root) { /* receive r's shard */
            int64_t rlo, rhi;
            shard_elems(n, unit, c->size, r, &rlo, &rhi);
            if (rhi > rlo)
                s = post(c, &q, false, (char *)buf + (size_t)rlo * esz, (size_t)(rhi - rlo) * esz, r, 11, err);
        }
        if ((root < 0 || r == root) && hi > lo && s == FT_OK)
            s = post(c, &q, true, (char *)buf + (size_t)lo * esz, (size_t)(hi - lo) * esz, r, 11, err);
    }
    if (s != FT_OK) {
        ft_free(q.r);
        return s;
    }
    return wait_all(c, &q, "all-gather", err);
}
#endif

int64_t ft_comm_scratch_floats(const ft_comm *c, int64_t n, int64_t unit) {
    if (!multi(c))
        return 0;
    int64_t most = 0;
    for (int64_t r = 0; r < c->size; r++) {
        int64_t lo, hi;
        shard_elems(n, unit, c->size, r, &lo, &hi);
        if (hi - lo > most)
            most = hi - lo;
    }
    return most * c->size;
}

ft_status ft_comm_reduce_scatter_f32(ft_comm *c, float *buf, int64_t n, int64_t unit, float *scratch, ft_err *err) {
    if (!multi(c))
        return FT_OK;
#ifdef FT_WITH_MPI
    const int64_t N = c->size, me = c->rank;
    int64_t lo, hi;
    shard_elems(n, unit, N, me, &lo, &hi);
    const int64_t L = hi - lo, slot = ft_comm_scratch_floats(c, n, unit) / N;
    float *own = NULL;
    if (!scratch) {
        own = ft_malloc((size_t)(slot * N > 0 ? slot * N : 1) * sizeof(float));
        if (!own)
            return FT_ERR(err, FT_ERR_NOMEM, "reduce-scatter: out of memory (%lld floats)", (long long)(slot * N));
        scratch = own;
    }
    /* Rank r's contribution to my shard lands in scratch + r * slot (mine stays in buf). */
    reqs q = {0};
    ft_status s = FT_OK;
    for (int64_t r = 0; s == FT_OK && r < N; r++) {
        if (r == me)
            continue;
        if (L > 0)
            s = post(c, &q, false, scratch + r * slot, (size_t)L * sizeof(float), r, 12, err);
        int64_t rlo, rhi;
        shard_elems(n, unit, N, r, &rlo, &rhi);
        if (s == FT_OK && rhi > rlo)
            s = post(c, &q, true, buf + rlo, (size_t)(rhi - rlo) * sizeof(float), r, 12, err);
    }
    if (s == FT_OK)
        s = wait_all(c, &q, "reduce-scatter", err);
    else
        ft_free(q.r);
    if (s == FT_OK && L > 0) {
        /* ((x_0 + x_1) + x_2) + ...: the same float additions as one process adding the ranks'
         * contributions in rank order. */
        float *mine = buf + lo, *acc = me == 0 ? mine : scratch;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < L; i++) {
            float a = acc[i];
            for (int64_t r = 1; r < N; r++)
                a += r == me ? mine[i] : scratch[r * slot + i];
            mine[i] = a;
        }
    }
    ft_free(own);
    return s;
#else
    (void)buf, (void)n, (void)unit, (void)scratch, (void)err;
    return FT_OK;
#endif
}

ft_status ft_comm_allgather_f32(ft_comm *c, float *buf, int64_t n, int64_t unit, ft_err *err) {
    if (!multi(c))
        return FT_OK;
#ifdef FT_WITH_MPI
    return gather_shards(c, buf, sizeof(float), n, unit, err);
#else
    (void)buf, (void)n, (void)unit, (void)err;
    return FT_OK;
#endif
}

ft_status ft_comm_gather_f32(ft_comm *c, const float *mine, float *full, int64_t n, int64_t unit, int64_t root,
                             ft_err *err) {
    int64_t lo, hi;
    shard_elems(n, unit, ft_comm_size(c), ft_comm_rank(c), &lo, &hi);
    if (ft_comm_rank(c) == root && hi > lo)
        memmove(full + lo, mine, (size_t)(hi - lo) * sizeof(float));
    if (!multi(c))
        return FT_OK;
#ifdef FT_WITH_MPI
    reqs q = {0};
    ft_status s = FT_OK;
    if (c->rank == root) {
        for (int64_t r = 0; s == FT_OK && r < c->size; r++) {
            int64_t rlo, rhi;
            shard_elems(n, unit, c->size, r, &rlo, &rhi);
            if (r != root && rhi > rlo)
                s = post(c, &q, false, full + rlo, (size_t)(rhi - rlo) * sizeof(float), r, 13, err);
        }
    } else if (hi > lo) {
        s = post(c, &q, true, (void *)mine, (size_t)(hi - lo) * sizeof(float), root, 13, err);
    }
    if (s != FT_OK) {
        ft_free(q.r);
        return s;
    }
    return wait_all(c, &q, "gather", err);
#else
    (void)err;
    return FT_OK;
#endif
}

ft_status ft_comm_allgather_f64(ft_comm *c, double *buf, int64_t n, int64_t unit, ft_err *err) {
    if (!multi(c))
        return FT_OK;
#ifdef FT_WITH_MPI
    return gather_shards(c, buf, sizeof(double), n, unit, err);
#else
    (void)buf, (void)n, (void)unit, (void)err;
    return FT_OK;
#endif
}

ft_status ft_comm_allgather_bytes(ft_comm *c, const void *mine, size_t bytes, void *out, ft_err *err) {
    if (!multi(c)) {
        memcpy(out, mine, bytes);
        return FT_OK;
    }
#ifdef FT_WITH_MPI
    if (bytes > (size_t)1 << 30)
        return FT_ERR(err, FT_ERR_LIMIT, "all-gather of %zu bytes a rank: too large", bytes);
    MPI_Request rq;
    MPI_TRY(MPI_Iallgather(mine, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, c->world, &rq), "all-gather");
    return wait_reqs(c, 1, &rq, "all-gather", err);
#else
    (void)err;
#endif
    return FT_OK;
}

/* All ranks' n values gathered, then summed in rank order into v. */
#define ORDERED_SUM(T)                                                                   \
    if (!multi(c))                                                                       \
        return FT_OK;                                                                    \
    T *all = ft_malloc((size_t)(n * c->size > 0 ? n * c->size : 1) * sizeof(T));        \
    if (!all)                                                                            \
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");                               \
    ft_status s = ft_comm_allgather_bytes(c, v, (size_t)n * sizeof(T), all, err);        \
    for (int64_t i = 0; s == FT_OK && i < n; i++) {                                      \
        T a = all[i];                                                                    \
        for (int64_t r = 1; r < c->size; r++)                                            \
            a += all[r * n + i];                                                         \
        v[i] = a;                                                                        \
    }                                                                                    \
    ft_free(all);                                                                        \
    return s;

ft_status ft_comm_sum_f64(ft_comm *c, double *v, int64_t n, ft_err *err) { ORDERED_SUM(double) }
ft_status ft_comm_sum_i64(ft_comm *c, int64_t *v, int64_t n, ft_err *err) { ORDERED_SUM(int64_t) }

void ft_comm_abort(ft_comm *c, int code) {
#ifdef FT_WITH_MPI
    if (c && c->mpi)
        MPI_Abort(c->world, code);
#else
    (void)c;
#endif
    _exit(code);
}
