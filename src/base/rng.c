/* base/rng.c: xoshiro256** seeded by splitmix64 (Blackman & Vigna's published algorithms).
 * The generator's entire state is four words, so checkpoints restore it exactly. */
#include <math.h>

#include "ftune/base.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void ft_rng_seed(ft_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ft_rng_next(ft_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float ft_rng_float(ft_rng *r) { return (float)(ft_rng_next(r) >> 40) * (1.0f / 16777216.0f); }

double ft_rng_double(ft_rng *r) { return (double)(ft_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

uint64_t ft_rng_below(ft_rng *r, uint64_t n) {
    if (n <= 1)
        return 0;
    /* Rejection sampling removes modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = ft_rng_next(r);
    while (x >= limit);
    return x % n;
}

double ft_rng_normal(ft_rng *r) {
    double u1 = ft_rng_double(r), u2 = ft_rng_double(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
