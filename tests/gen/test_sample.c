/* tests/gen/test_sample.c: the sampler: greedy at temperature 0, top-k and top-p cut-offs, the
 * temperature's effect on the distribution (frequencies over many seeded draws against the
 * analytic probabilities), and determinism for a seed. */
#include <math.h>

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
