/* bench/fma_peak.c: this machine's fp32 fused-multiply-add peak, measured, so that the training
 * benchmark reports GFLOP/s as a share of what the cores can do (issue #10 item 5) rather than of
 * a datasheet figure. Built and run by bench/train_step.bench.sh:
 *
 *   fma_peak [THREADS] [SECONDS]      prints one JSON line
 *
 * Each of THREADS OpenMP threads (default: all cores) runs independent chains of vector FMAs on
 * registers (no memory traffic): 2 x lanes FLOPs per FMA. Enough independent accumulators
 * (ACC) cover the FMA latency times the FMA ports of current x86 cores (4-5 cycles x 2 ports).
 * The widest vector the compiler targets is used (-march=native): AVX-512, else AVX2+FMA, else
 * scalar fmaf. The machine may be shared, and the peak is what the cores reach when the process
 * has them: each thread divides its FLOPs by its own CPU time (CLOCK_THREAD_CPUTIME_ID, which stops
 * while another process holds the core but keeps running when two threads share one core's FMA
 * ports), the threads' rates add up, and the best of several short repetitions is kept. The
 * wall-clock rate of the same repetitions is printed beside it. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ACC 16

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }

#if defined(__AVX512F__)
#define ISA "avx512"
#define LANES 16
typedef __m512 vec;
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VSUM(v) _mm512_reduce_add_ps(v)
#elif defined(__FMA__) && defined(__AVX__)
#define ISA "avx2-fma"
#define LANES 8
typedef __m256 vec;
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
static float VSUM(__m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#else
#define ISA "scalar"
#define LANES 1
typedef float vec;
#define VSET1(x) (x)
#define VFMA(a, b, c) fmaf(a, b, c)
#define VSUM(v) (v)
#endif

/* `iters` rounds of ACC independent FMAs; the multiplier and addend keep the values bounded
 * (x -> 0.999 x + 0.001 converges to 1) so nothing overflows or goes subnormal. Returns a sum the
 * caller prints, so the compiler cannot drop the work. */
static float kernel(int64_t iters, float seed) {
    vec acc[ACC];
    for (int i = 0; i < ACC; i++)
        acc[i] = VSET1(seed + (float)i * 1e-3f);
    const vec mul = VSET1(0.999f), add = VSET1(0.001f);
    for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 16 /* = ACC: the accumulators stay in registers, ACC independent chains */
        for (int i = 0; i < ACC; i++)
            acc[i] = VFMA(acc[i], mul, add);
    }
    float s = 0;
    for (int i = 0; i < ACC; i++)
        s += VSUM(acc[i]);
    return s;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    double seconds = argc > 2 ? atof(argv[2]) : 0.1;
    if (threads <= 0)
        threads = omp_get_num_procs();
    if (seconds <= 0 || seconds > 60) {
        fprintf(stderr, "usage: fma_peak [THREADS] [SECONDS (0-60]]\n");
        return 2;
    }
    /* calibrate: iterations for about `seconds` on one thread */
    int64_t iters = 1 << 16;
    volatile float sink = 0;
    for (;;) {
        double t0 = now();
        sink += kernel(iters, 1.0f);
        double dt = now() - t0;
        if (dt > 0.05) {
            iters = (int64_t)((double)iters * seconds / dt) + 1;
            break;
        }
        iters *= 4;
    }
    const double flops_thread = 2.0 * LANES * ACC * (double)iters;
    double best = 0, best_wall = 0;
    for (int rep = 0; rep < 15; rep++) {
        double t0 = now(), rate = 0;
        float part = 0;
#pragma omp parallel num_threads(threads) reduction(+ : part, rate)
        {
#pragma omp barrier
            double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
            part += kernel(iters, 1.0f + 1e-4f * (float)omp_get_thread_num());
            rate += flops_thread / (clock_s(CLOCK_THREAD_CPUTIME_ID) - c0);
        }
        double wall = flops_thread * threads / (now() - t0);
        sink += part;
        best = rate > best ? rate : best;
        best_wall = wall > best_wall ? wall : best_wall;
    }
    printf("{\"fma_peak_gflops\": %.1f, \"threads\": %d, \"per_thread_gflops\": %.1f, \"wall_gflops\": %.1f, "
           "\"isa\": \"%s\", \"check\": %.3g}\n",
           best / 1e9, threads, best / 1e9 / threads, best_wall / 1e9, ISA, (double)sink);
    return 0;
}
