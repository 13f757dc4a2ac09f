/* tests/gen/test_sample.c: the sampler: greedy at temperature 0, top-k and top-p cut-offs, the
 * temperature's effect on the distribution (frequencies over many seeded draws against the
 * analytic probabilities), determinism for a seed, and the same draws as the comparison sort it
 * replaced. */
#include <math.h>
#include <stdlib.h>

#include "ftune/gen.h"
#include "test.h"

static void freqs(ft_sampler *s, const float *logits, const ft_sampling *p, int n, double *f, int V) {
    ft_rng rng;
    ft_rng_seed(&rng, 1234);
    for (int i = 0; i < V; i++)
        f[i] = 0;
    for (int i = 0; i < n; i++)
        f[ft_sampler_sample(s, logits, p, &rng)] += 1.0 / n;
}

TEST(gen_sampler_greedy_and_cutoffs) {
    ft_sampler s;
    ft_err err;
    REQUIRE_OK(ft_sampler_init(&s, 5, &err), &err);
    /* probabilities 0.5, 0.3, 0.2 on ids 3, 1, 4; ids 0 and 2 impossible */
    float l[5] = {-INFINITY, logf(0.3f), -INFINITY, logf(0.5f), logf(0.2f)};
    ft_rng rng;
    ft_rng_seed(&rng, 1);
    ft_sampling greedy = {.temperature = 0, .top_k = 0, .top_p = 1};
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(ft_sampler_sample(&s, l, &greedy, &rng), 3);
    /* Ties go to the lowest id. */
    float tie[5] = {1, 2, 2, 0, 2};
    CHECK_EQ_INT(ft_sampler_sample(&s, tie, &greedy, &rng), 1);
    ft_sampling k1 = {.temperature = 1, .top_k = 1, .top_p = 1};
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(ft_sampler_sample(&s, l, &k1, &rng), 3);
    double f[5];
    ft_sampling plain = {.temperature = 1, .top_k = 0, .top_p = 1};
    freqs(&s, l, &plain, 40000, f, 5);
    CHECK_NEAR(f[3], 0.5, 0.01);
    CHECK_NEAR(f[1], 0.3, 0.01);
    CHECK_NEAR(f[4], 0.2, 0.01);
    CHECK(f[0] == 0 && f[2] == 0);
    /* top_k 2: the 0.2 token is cut, the rest renormalised to 5/8, 3/8. */
    ft_sampling k2 = {.temperature = 1, .top_k = 2, .top_p = 1};
    freqs(&s, l, &k2, 40000, f, 5);
    CHECK_NEAR(f[3], 0.625, 0.01);
    CHECK_NEAR(f[1], 0.375, 0.01);
    CHECK(f[4] == 0);
    /* top_p 0.7: 0.5 < 0.7 <= 0.8, so ids 3 and 1 stay. top_p 0.5: only id 3 (mass reaches 0.5). */
    ft_sampling p7 = {.temperature = 1, .top_k = 0, .top_p = 0.7};
    freqs(&s, l, &p7, 40000, f, 5);
    CHECK_NEAR(f[3], 0.625, 0.01);
    CHECK(f[4] == 0);
    ft_sampling p4 = {.temperature = 1, .top_k = 0, .top_p = 0.4};
    freqs(&s, l, &p4, 1000, f, 5);
    CHECK_NEAR(f[3], 1.0, 1e-9);
    /* min_p 0.5: tokens under 0.5 x 0.5 = 0.25 go (the 0.2 one): 5/8, 3/8 as top_k 2. min_p 0.7:
     * only the top token (0.3 < 0.35). */
    ft_sampling m5 = {.temperature = 1, .top_k = 0, .top_p = 1, .min_p = 0.5};
    freqs(&s, l, &m5, 40000, f, 5);
    CHECK_NEAR(f[3], 0.625, 0.01);
    CHECK_NEAR(f[1], 0.375, 0.01);
    CHECK(f[4] == 0);
    ft_sampling m7 = {.temperature = 1, .top_k = 0, .top_p = 1, .min_p = 0.7};
    freqs(&s, l, &m7, 1000, f, 5);
    CHECK_NEAR(f[3], 1.0, 1e-9);
    /* Temperature 2: probabilities proportional to sqrt(p). */
    ft_sampling t2 = {.temperature = 2, .top_k = 0, .top_p = 1};
    freqs(&s, l, &t2, 40000, f, 5);
    double z = sqrt(0.5) + sqrt(0.3) + sqrt(0.2);
    CHECK_NEAR(f[3], sqrt(0.5) / z, 0.01);
    CHECK_NEAR(f[4], sqrt(0.2) / z, 0.01);
    ft_sampler_deinit(&s);
}

TEST(gen_sampler_seeded_and_large_vocab) {
    enum { V = 50000 };
    ft_sampler s;
    ft_err err;
    REQUIRE_OK(ft_sampler_init(&s, V, &err), &err);
    static float l[V];
    ft_rng r;
    ft_rng_seed(&r, 9);
    for (int i = 0; i < V; i++)
        l[i] = (float)ft_rng_normal(&r) * 3;
    ft_sampling p = {.temperature = 1, .top_k = 50, .top_p = 0.95};
    int32_t a[64], b[64];
    ft_rng r1, r2;
    ft_rng_seed(&r1, 5);
    ft_rng_seed(&r2, 5);
    for (int i = 0; i < 64; i++) {
        a[i] = ft_sampler_sample(&s, l, &p, &r1);
        b[i] = ft_sampler_sample(&s, l, &p, &r2);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* Every draw is among the 50 largest logits. */
    for (int i = 0; i < 64; i++) {
        int larger = 0;
        for (int j = 0; j < V; j++)
            larger += l[j] > l[a[i]];
        CHECK(larger < 50);
    }
    ft_sampler_deinit(&s);
}

/* ---------------------------------------------------------------- the same draws as before
 * The sampler orders the whole vocabulary by a radix sort (no top-k) or a heap and qsort (small
 * top-k). ref_sample is the algorithm it replaced: every candidate ordered by qsort with the
 * comparator (larger logit, lower id on ties), then the same softmax, cut-offs and draw. Same
 * seed, same logits: the same ids, on a Llama-3-sized vocabulary with ties, -inf, -0 and +0. */

static int ref_cmp(const void *a, const void *b, void *ctx) {
    const float *l = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (l[i] > l[j])
        return -1;
    if (l[i] < l[j])
        return 1;
    return (i > j) - (i < j);
}

static int32_t ref_sample(const float *l, int64_t V, const ft_sampling *p, ft_rng *rng, int32_t *idx, float *pr) {
    int64_t k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    for (int64_t i = 0; i < V; i++)
        idx[i] = (int32_t)i;
    qsort_r(idx, (size_t)V, sizeof(int32_t), ref_cmp, (void *)l);
    double inv_t = 1.0 / p->temperature, mx = (double)l[idx[0]], sum = 0;
    for (int64_t i = 0; i < k; i++) {
        double x = (double)l[idx[i]];
        double e = isfinite(x) ? exp((x - mx) * inv_t) : 0.0;
        pr[i] = (float)e;
        sum += e;
    }
    if (!(sum > 0) || !isfinite(sum))
        return idx[0];
    int64_t keep = k;
    if (p->top_p > 0 && p->top_p < 1) {
        double cum = 0;
        for (int64_t i = 0; i < k; i++) {
            cum += pr[i] / sum;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        double s2 = 0;
        for (int64_t i = 0; i < keep; i++)
            s2 += pr[i];
        sum = s2;
    }
    if (p->min_p > 0 && p->min_p <= 1) {
        double floor_p = p->min_p * pr[0], s3 = pr[0];
        int64_t kept = 1;
        while (kept < keep && pr[kept] >= floor_p)
            s3 += pr[kept++];
        keep = kept;
        sum = s3;
    }
    double u = ft_rng_double(rng) * sum, c = 0;
    for (int64_t i = 0; i < keep; i++) {
        c += pr[i];
        if (u < c)
            return idx[i];
    }
    return idx[keep - 1];
}

TEST(gen_sampler_same_draws_as_comparison_sort) {
    static const int64_t sizes[] = {5, 1000, 128256};
    static const ft_sampling settings[] = {
        {.temperature = 1, .top_k = 0, .top_p = 1},         /* the whole vocabulary (OpenAI's default) */
        {.temperature = 0.7, .top_k = 0, .top_p = 0.9},     /* top-p alone */
        {.temperature = 1, .top_k = 50, .top_p = 0.95},     /* heap route */
        {.temperature = 1.3, .top_k = 20000, .top_p = 1, .min_p = 0.02}, /* large k: the full sort's prefix */
        {.temperature = 0.5, .top_k = 3, .top_p = 1, .min_p = 0.5},
    };
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const int64_t V = sizes[si];
        ft_sampler s;
        ft_err err;
        REQUIRE_OK(ft_sampler_init(&s, V, &err), &err);
        float *l = malloc((size_t)V * sizeof(float)), *pr = malloc((size_t)V * sizeof(float));
        int32_t *idx = malloc((size_t)V * sizeof(int32_t));
        REQUIRE(l && pr && idx);
        ft_rng r;
        ft_rng_seed(&r, 77 + (uint64_t)si);
        for (int64_t i = 0; i < V; i++) {
            /* values on a grid of 1/8 (many ties), some -inf, and zeros of both signs */
            double x = floor(ft_rng_normal(&r) * 16) / 8;
            uint64_t u = ft_rng_below(&r, 100);
            l[i] = u < 3 ? -INFINITY : u < 6 ? (u & 1 ? -0.0f : 0.0f) : (float)x;
        }
        for (size_t pi = 0; pi < sizeof settings / sizeof *settings; pi++) {
            ft_rng r1, r2;
            ft_rng_seed(&r1, 1000 + pi);
            ft_rng_seed(&r2, 1000 + pi);
            int same = 0, draws = V > 100000 ? 40 : 200;
            for (int d = 0; d < draws; d++) {
                int32_t a = ft_sampler_sample(&s, l, &settings[pi], &r1);
                int32_t b = ref_sample(l, V, &settings[pi], &r2, idx, pr);
                same += a == b;
            }
            if (same != draws)
                ft_test_fail_(__FILE__, __LINE__, "V %lld setting %zu: %d of %d draws differ from the comparison sort's",
                              (long long)V, pi, draws - same, draws);
        }
        free(l);
        free(pr);
        free(idx);
        ft_sampler_deinit(&s);
    }
}
