/* tensor/gemm_bf16.c: bf16 matrix products and the choice of their route (ftune/tensor.h).
 *
 * A bf16 GEMM's operands are bf16 values kept in fp32 storage (the model rounds them where the
 * recipe says); the product accumulates in fp32. Two routes compute it:
 *  - "sgemm": OpenBLAS sgemm on the fp32 storage. Products of two bf16 values are exact in fp32,
 *    so this is the same arithmetic, at fp32 speed;
 *  - "onednn": oneDNN's bf16 matmul (AVX512-BF16 dot products, AMX where the CPU has it) on
 *    operands packed to 16 bits here, fp32 accumulation and output. Primitives are created once
 *    per shape and kept in a small cache behind a mutex (a primitive executes concurrently from
 *    several threads; each call brings its own memory objects, stream and scratchpad).
 * The route is chosen once per process, at the first bf16 use, by timing both on a
 * training-sized product (FTUNE_GEMM=sgemm|onednn decides instead). No CPU is assumed to favour
 * either: where vdpbf16ps runs at half the fp32 FMA rate sgemm wins, where it runs at twice
 * (Zen 4/5, AMX Xeons) oneDNN does. */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ftune/tensor.h"

/* ---------------------------------------------------------------- packing */

/* fp32 -> bf16 bits, round-to-nearest-even (exact for values already rounded), NaN kept quiet. */
static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu))
        return (uint16_t)((u >> 16) | 0x0040u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* dst (rows, cols) contiguous = src (rows, cols) with row stride ld. Parallel unless called from
 * inside a parallel region. */
static void pack(uint16_t *dst, const float *src, int64_t rows, int64_t cols, int64_t ld) {
#pragma omp parallel for schedule(dynamic, 16) if (!omp_in_parallel() && rows * cols > 65536)
    for (int64_t i = 0; i < rows; i++) {
        const float *s = src + i * ld;
        uint16_t *d = dst + i * cols;
#pragma omp simd
        for (int64_t j = 0; j < cols; j++)
            d[j] = to_bf16(s[j]);
    }
}

/* Per-thread buffers that grow to the largest call and are kept (the packed operands and the
 * primitive's scratchpad). ft_tensor_gemm_bf16_release frees the calling thread's. */
typedef struct grow {
    void *p;
    size_t cap;
} grow;
static _Thread_local grow tl_a, tl_b, tl_pad;
static _Thread_local dnnl_stream_t tl_stream;

static void *grow_to(grow *g, size_t bytes) {
    if (bytes > g->cap) {
        free(g->p);
        g->cap = bytes + bytes / 8;
        g->p = aligned_alloc(64, (g->cap + 63) & ~(size_t)63);
        if (!g->p)
            g->cap = 0;
    }
    return g->p;
}

static _Thread_local grow tl_x; /* the sgemm route's expanded blocks of a bf16 B (below) */

void ft_tensor_gemm_bf16_release(void) {
    grow *g[4] = {&tl_a, &tl_b, &tl_pad, &tl_x};
    for (int i = 0; i < 4; i++) {
        free(g[i]->p);
        *g[i] = (grow){0};
    }
    if (tl_stream) { /* a thread that ends (the inference engine's) must not leave its stream */
        dnnl_stream_destroy(tl_stream);
        tl_stream = NULL;
    }
}

/* ---------------------------------------------------------------- the oneDNN primitive cache */

typedef struct prim_key {
    bool ta, tb;
    int64_t M, N, K, ldc;
    int64_t ldb; /* B's row stride as oneDNN reads it: packed here (contiguous), or the caller's bf16 B */
    float alpha, beta;
} prim_key;

typedef struct prim_entry {
    prim_key key;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a_md, b_md, c_md;
    size_t pad_bytes;
    bool owned; /* not in the cache: the caller destroys it after its call */
} prim_entry;

/* Training uses a dozen shapes per workspace; decoding a few more. Entries are never evicted (another
 * thread may be executing one): past the cap a new shape gets a primitive for its call only. */
enum { CACHE_CAP = 64 };
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static prim_entry cache[CACHE_CAP];
static int cache_n;
static dnnl_engine_t engine;
static bool onednn_broken; /* engine or a primitive could not be created: fall back to sgemm */
static int64_t cache_created; /* primitives ever created (tests check the caching) */

static bool key_eq(const prim_key *a, const prim_key *b) {
    return a->ta == b->ta && a->tb == b->tb && a->M == b->M && a->N == b->N && a->K == b->K && a->ldc == b->ldc && a->ldb == b->ldb &&
           a->alpha == b->alpha && a->beta == b->beta;
}

/* A new primitive for `k` into e; false when oneDNN refuses. Called with cache_mu held. */
static bool prim_create(prim_entry *e, const prim_key *k) {
    if (!engine && dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success)
        return false;
    /* op(A) (M, K) from a packed contiguous A: (M, K) rows, or A^T stored (K, M). Same for B. */
    dnnl_dims_t ad = {k->M, k->K}, bd = {k->K, k->N}, cd = {k->M, k->N};
    dnnl_dims_t as = {k->ta ? 1 : k->K, k->ta ? k->M : 1};
    dnnl_dims_t bs = {k->tb ? 1 : k->ldb, k->tb ? k->ldb : 1};
    dnnl_dims_t cs = {k->ldc, 1};
    if (dnnl_memory_desc_init_by_strides(&e->a_md, 2, ad, dnnl_bf16, as) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&e->b_md, 2, bd, dnnl_bf16, bs) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&e->c_md, 2, cd, dnnl_f32, cs) != dnnl_success)
        return false;
    dnnl_matmul_desc_t md;
    if (dnnl_matmul_desc_init(&md, &e->a_md, &e->b_md, NULL, &e->c_md) != dnnl_success)
        return false;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    bool ok = dnnl_primitive_attr_create(&attr) == dnnl_success &&
              dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    if (ok && k->alpha != 1.0f)
        ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha) == dnnl_success;
    if (ok && k->beta != 0.0f) /* C = alpha op(A) op(B) + beta C */
        ok = dnnl_post_ops_create(&po) == dnnl_success && dnnl_post_ops_append_sum(po, k->beta) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    e->pd = NULL;
    e->prim = NULL;
    if (ok)
        ok = dnnl_primitive_desc_create(&e->pd, &md, attr, engine, NULL) == dnnl_success;
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (ok)
        ok = dnnl_primitive_create(&e->prim, e->pd) == dnnl_success;
    if (!ok) {
        if (e->pd)
            dnnl_primitive_desc_destroy(e->pd);
        return false;
    }
    const dnnl_memory_desc_t *pad = dnnl_primitive_desc_query_md(e->pd, dnnl_query_scratchpad_md, 0);
    e->pad_bytes = pad ? dnnl_memory_desc_get_size(pad) : 0;
    e->key = *k;
    e->owned = false;
    cache_created++;
    return true;
}

/* The primitive for k into *out (copied under the lock; cached ones live until the process
 * ends); false when oneDNN cannot make it, which turns the oneDNN route off for good. */
static bool prim_get(const prim_key *k, prim_entry *out) {
    pthread_mutex_lock(&cache_mu);
    bool ok = false;
    if (!onednn_broken) {
        int hit = -1;
        for (int i = 0; i < cache_n; i++)
            if (key_eq(&cache[i].key, k)) {
                hit = i;
                break;
            }
        if (hit < 0) {
            prim_entry e;
            if (prim_create(&e, k)) {
                if (cache_n < CACHE_CAP) {
                    hit = cache_n++;
                    cache[hit] = e;
                } else {
                    e.owned = true;
                    *out = e;
                    pthread_mutex_unlock(&cache_mu);
                    return true;
                }
            } else {
                onednn_broken = true;
            }
        }
        if (hit >= 0) {
            *out = cache[hit];
            ok = true;
        }
    }
    pthread_mutex_unlock(&cache_mu);
    return ok;
}

static int64_t onednn_calls; /* products oneDNN computed (atomic) */

void ft_tensor_gemm_bf16_stats(int64_t *primitives, int64_t *onednn_products) {
    pthread_mutex_lock(&cache_mu);
    if (primitives)
        *primitives = cache_created;
    pthread_mutex_unlock(&cache_mu);
    if (onednn_products)
        *onednn_products = __atomic_load_n(&onednn_calls, __ATOMIC_RELAXED);
}

/* The oneDNN route; false when oneDNN could not do it (the caller falls back to sgemm). B comes
 * either as fp32 storage of bf16 values (B, packed here) or already as bf16 bits (B16, row stride
 * ldb16: a weight the model packed once, so no per-call packing and no buffer the size of it). */
static bool gemm_onednn(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                        const float *B, int64_t ldb, const uint16_t *B16, int64_t ldb16, float beta, float *C,
                        int64_t ldc) {
    prim_key k = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .ldc = ldc, .ldb = B16 ? ldb16 : tb ? K : N,
                  .alpha = alpha, .beta = beta};
    prim_entry e;
    if (!prim_get(&k, &e))
        return false;
    uint16_t *a = grow_to(&tl_a, (size_t)(M * K) * 2), *b = B16 ? (uint16_t *)B16 : grow_to(&tl_b, (size_t)(K * N) * 2);
    void *pad = e.pad_bytes ? grow_to(&tl_pad, e.pad_bytes) : NULL;
    bool ok = a && b && (pad || !e.pad_bytes);
    if (ok && !tl_stream)
        ok = dnnl_stream_create(&tl_stream, engine, dnnl_stream_default_flags) == dnnl_success;
    if (ok) {
        /* stored A: (M, K), or (K, M) when transposed; likewise B */
        pack(a, A, ta ? K : M, ta ? M : K, lda);
        if (!B16)
            pack(b, B, tb ? N : K, tb ? K : N, ldb);
        dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, mp = NULL;
        const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(e.pd, dnnl_query_scratchpad_md, 0);
        ok = dnnl_memory_create(&ma, &e.a_md, engine, a) == dnnl_success &&
             dnnl_memory_create(&mb, &e.b_md, engine, b) == dnnl_success &&
             dnnl_memory_create(&mc, &e.c_md, engine, C) == dnnl_success &&
             (!e.pad_bytes || dnnl_memory_create(&mp, pmd, engine, pad) == dnnl_success);
        if (ok) {
            dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc},
                                       {DNNL_ARG_SCRATCHPAD, mp}};
            ok = dnnl_primitive_execute(e.prim, tl_stream, e.pad_bytes ? 4 : 3, args) == dnnl_success &&
                 dnnl_stream_wait(tl_stream) == dnnl_success;
            if (ok)
                __atomic_add_fetch(&onednn_calls, 1, __ATOMIC_RELAXED);
        }
        dnnl_memory_t all[4] = {ma, mb, mc, mp};
        for (int i = 0; i < 4; i++)
            if (all[i])
                dnnl_memory_destroy(all[i]);
    }
    if (e.owned) {
        dnnl_primitive_destroy(e.prim);
        dnnl_primitive_desc_destroy(e.pd);
    }
    return ok;
}

/* ---------------------------------------------------------------- route choice */

static pthread_once_t route_once = PTHREAD_ONCE_INIT;
static ft_gemm_route route;
static const char *route_why = "";
static char route_why_buf[256];
static double route_gflops[2]; /* measured GFLOP/s: sgemm, onednn (0 when not measured) */
static double fp32_gflops;

/* The measurement's product, the forward form (x W^T): about 0.27 GFLOP, ~2 ms on one core. */
enum { MEAS_M = 128, MEAS_N = 1024, MEAS_K = 1024 };

static double thread_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GFLOP per CPU-second of route r on one thread: the best of two runs after a warm-up (JIT,
 * packing buffers, pages). Why one thread and its CPU time: on a shared machine wall time mostly
 * measures the other processes (one run here saw sgemm at 28 GFLOP/s by the clock); the calling
 * thread's CPU time measures the kernels, and both routes split a product among threads alike. */
static double time_route(ft_gemm_route r, const float *A, const float *B, float *C) {
    const int64_t M = MEAS_M, N = MEAS_N, K = MEAS_K;
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = thread_cpu_now();
        if (r == FT_GEMM_ONEDNN) {
            if (!gemm_onednn(false, true, M, N, K, 1.0f, A, K, B, K, NULL, 0, 0.0f, C, N))
                return 0;
        } else {
            ft_tensor_sgemm(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        }
        double t = thread_cpu_now() - t0;
        if (rep > 0 && t > 0 && t < best)
            best = t;
    }
    return 2.0 * (double)(M * N * K) / best * 1e-9;
}

static void choose_route(void) {
    const char *env = getenv("FTUNE_GEMM");
    if (env && !strcmp(env, "sgemm")) {
        route = FT_GEMM_SGEMM;
        route_why = "FTUNE_GEMM=sgemm";
        return;
    }
    if (env && !strcmp(env, "onednn")) {
        route = FT_GEMM_ONEDNN;
        route_why = "FTUNE_GEMM=onednn";
        return;
    }
    /* Measure on this thread alone (its OpenMP setting restored after): operands rounded to
     * bf16 as the model passes them. */
    const int64_t M = MEAS_M, N = MEAS_N, K = MEAS_K;
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    float *A = malloc((size_t)(M * K) * 4), *B = malloc((size_t)(N * K) * 4), *C = malloc((size_t)(M * N) * 4);
    route = FT_GEMM_SGEMM;
    if (!A || !B || !C) {
        route_why = "out of memory for the measurement: sgemm";
    } else {
        uint32_t s = 12345;
        for (int64_t i = 0; i < M * K; i++)
            A[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) * 0x1p-24f - 0.5f;
        for (int64_t i = 0; i < N * K; i++)
            B[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) * 0x1p-24f - 0.5f;
        ft_tensor_round_bf16(A, A, M * K);
        ft_tensor_round_bf16(B, B, N * K);
        /* alternate the routes twice and keep each one's best */
        for (int round = 0; round < 2; round++) {
            for (int r = 0; r < 2; r++) {
                double g = time_route((ft_gemm_route)r, A, B, C);
                if (g > route_gflops[r])
                    route_gflops[r] = g;
            }
        }
        fp32_gflops = route_gflops[FT_GEMM_SGEMM]; /* same kernel as fp32 */
        if (route_gflops[FT_GEMM_ONEDNN] > route_gflops[FT_GEMM_SGEMM])
            route = FT_GEMM_ONEDNN;
        snprintf(route_why_buf, sizeof route_why_buf,
                 "measured at first bf16 use, one thread: oneDNN bf16 %.0f GFLOP per CPU-s, sgemm on bf16 values "
                 "%.0f%s",
                 route_gflops[FT_GEMM_ONEDNN], route_gflops[FT_GEMM_SGEMM],
                 route_gflops[FT_GEMM_ONEDNN] > 0 ? "" : " (oneDNN unavailable)");
        route_why = route_why_buf;
    }
    free(A);
    free(B);
    free(C);
    omp_set_num_threads(threads);
}

ft_status ft_tensor_gemm_env_check(ft_err *err) {
    const char *env = getenv("FTUNE_GEMM");
    if (env && *env && strcmp(env, "sgemm") && strcmp(env, "onednn"))
        return FT_ERR(err, FT_ERR_INVALID, "FTUNE_GEMM=%s: unknown GEMM route (use sgemm or onednn, or unset it to "
                                           "let ftune measure which is faster)", env);
    return FT_OK;
}

ft_gemm_route ft_tensor_bf16_route(const char **why) {
    pthread_once(&route_once, choose_route);
    if (why)
        *why = route_why;
    return __atomic_load_n(&route, __ATOMIC_RELAXED);
}

void ft_tensor_bf16_route_set(ft_gemm_route r) {
    pthread_once(&route_once, choose_route);
    __atomic_store_n(&route, r, __ATOMIC_RELAXED);
    route_why = r == FT_GEMM_ONEDNN ? "set by the program: oneDNN" : "set by the program: sgemm";
}

const char *ft_tensor_gemm_route(ft_dtype d) {
    if (d != FT_DTYPE_BF16)
        return "sgemm";
    return ft_tensor_bf16_route(NULL) == FT_GEMM_ONEDNN ? "onednn-bf16" : "sgemm-bf16";
}

ft_dtype ft_tensor_auto_dtype(const char **why) {
    static char buf[320];
    const char *rwhy = NULL;
    ft_gemm_route r = ft_tensor_bf16_route(&rwhy);
    double bf = route_gflops[r], fp = fp32_gflops;
    if (!(bf > 0 && fp > 0)) {
        /* the route was forced: measure nothing more, bf16 only if it is oneDNN's */
        if (why) {
            snprintf(buf, sizeof buf, "auto chose %s: %s", r == FT_GEMM_ONEDNN ? "bf16" : "fp32", rwhy);
            *why = buf;
        }
        return r == FT_GEMM_ONEDNN ? FT_DTYPE_BF16 : FT_DTYPE_FP32;
    }
    /* bf16 pays roundings and casts besides the products: it must be clearly faster */
    bool pick = r == FT_GEMM_ONEDNN && bf > 1.15 * fp;
    if (why) {
        snprintf(buf, sizeof buf, "auto chose %s (%s): %s", pick ? "bf16" : "fp32",
                 pick ? "oneDNN's bf16 matmul is faster than fp32 sgemm"
                      : "no bf16 GEMM route here is clearly faster than fp32 sgemm",
                 rwhy);
        *why = buf;
    }
    return pick ? FT_DTYPE_BF16 : FT_DTYPE_FP32;
}

/* ---------------------------------------------------------------- the product */

void ft_tensor_gemm_bf16_on(ft_gemm_route r, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                            const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                            int64_t ldc) {
    if (M <= 0 || N <= 0)
        return;
    if (r == FT_GEMM_ONEDNN && K > 0 &&
        gemm_onednn(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, 0, beta, C, ldc))
        return;
    ft_tensor_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ft_tensor_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                         int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ft_tensor_gemm_bf16_on(ft_tensor_bf16_route(NULL), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                           ldc);
}

/* ---------------------------------------------------------------- weights kept as bf16 */

void ft_tensor_pack_bf16(uint16_t *dst, const float *src, int64_t n) {
#pragma omp parallel for simd schedule(dynamic, 65536) if (!omp_in_parallel() && n > 65536)
    for (int64_t i = 0; i < n; i++)
        dst[i] = to_bf16(src[i]);
}

/* dst (rows, cols) contiguous = the bf16 values of src (rows, cols, row stride ld) as fp32:
 * exact (the upper 16 bits). Parallel unless called from inside a parallel region. */
static void expand(float *dst, const uint16_t *src, int64_t rows, int64_t cols, int64_t ld) {
#pragma omp parallel for schedule(dynamic, 16) if (!omp_in_parallel() && rows * cols > 65536)
    for (int64_t i = 0; i < rows; i++) {
        const uint16_t *s = src + i * ld;
        uint32_t *d = (uint32_t *)(void *)(dst + i * cols);
#pragma omp simd
        for (int64_t j = 0; j < cols; j++)
            d[j] = (uint32_t)s[j] << 16;
    }
}


/* Floats per expanded block on the sgemm route: 16 MiB, so a 1B model's LM head (128256 x 2048)
 * never needs an fp32 copy of itself. */
enum { EXPAND_FLOATS = 1 << 22 };

/* The sgemm route with B as bf16 bits: B expanded to fp32 a block at a time (rows of the stored
 * B: output columns when B is transposed, else a slice of K whose products accumulate). */
static void gemm_w16_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                           int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const int64_t cols = tb ? K : N, rows = tb ? N : K; /* the stored B */
    int64_t blk = EXPAND_FLOATS / (cols > 0 ? cols : 1);
    blk = blk < 16 ? 16 : blk / 16 * 16;
    if (blk > rows)
        blk = rows;
    float *x = grow_to(&tl_x, (size_t)(blk * cols) * sizeof(float));
    if (!x) { /* out of memory for a block: a plain loop */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                float acc = 0;
                for (int64_t k = 0; k < K; k++) {
                    uint32_t u = (uint32_t)(tb ? B[j * ldb + k] : B[k * ldb + j]) << 16;
                    float bv;
                    memcpy(&bv, &u, 4);
                    acc += (ta ? A[k * lda + i] : A[i * lda + k]) * bv;
                }
                C[i * ldc + j] = alpha * acc + (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]);
            }
        return;
    }
    for (int64_t r0 = 0; r0 < rows; r0 += blk) {
        int64_t nr = rows - r0 < blk ? rows - r0 : blk;
        expand(x, B + r0 * ldb, nr, cols, ldb);
        if (tb) /* columns r0.. of C */
            ft_tensor_sgemm(ta, true, M, nr, K, alpha, A, lda, x, cols, beta, C + r0, ldc);
        else /* K slice r0..: the first sets C (beta), the others add */
            ft_tensor_sgemm(ta, false, M, N, nr, alpha, ta ? A + r0 * lda : A + r0, lda, x, cols,
                            r0 == 0 ? beta : 1.0f, C, ldc);
    }
}

void ft_tensor_gemm_bf16_w16_on(ft_gemm_route r, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                float alpha, const float *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                                float *C, int64_t ldc) {
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    if (r == FT_GEMM_ONEDNN && gemm_onednn(trans_a, trans_b, M, N, K, alpha, A, lda, NULL, 0, B, ldb, beta, C, ldc))
        return;
    gemm_w16_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ft_tensor_gemm_bf16_w16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C,
                             int64_t ldc) {
    ft_tensor_gemm_bf16_w16_on(ft_tensor_bf16_route(NULL), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta,
                               C, ldc);
}
