/* bench/bw_probe.c: the machine's memory read bandwidth, the ceiling of single-stream decoding
 * (every weight is read once per token). Sums a buffer far larger than the caches with all
 * threads (OpenMP, AVX through -march=native), best of REPS passes, and prints GB/s (10^9 bytes/s).
 * Usage: bw_probe [MiB (default 1024)] [threads (default all)] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    if (argc > 2)
        omp_set_num_threads(atoi(argv[2]));
    size_t n = mib * 1024 * 1024 / sizeof(float);
    float *a = malloc(n * sizeof(float));
    if (!a)
        return 1;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(i & 7);
    double best = 1e30, sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now(), s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
        for (size_t i = 0; i < n; i++)
            s += a[i];
        double t = now() - t0;
        sink += s;
        if (t < best)
            best = t;
    }
    printf("%.2f\n", (double)(n * sizeof(float)) / best / 1e9);
    fprintf(stderr, "bw_probe: %zu MiB, best of 5, checksum %g\n", mib, sink);
    free(a);
    return 0;
}
