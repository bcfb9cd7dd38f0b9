/* rng.h - deterministic random numbers for everything seeded in zeroflow.
 *
 * Owns: the one generator used for parameter initialisation, dropout masks,
 * data shuffling and sampling, so that a seed fixes a run bit for bit on any
 * thread count.  Two forms:
 *   - zf_rng: a small sequential generator (xoshiro256** seeded by
 *     splitmix64); its whole state is 4 words and is saved in checkpoints.
 *   - zf_hash3: a stateless counter-based hash of (seed, a, b) for values
 *     drawn in parallel (dropout element i of layer l at step s), which gives
 *     the same mask whatever the thread schedule or device. */
#ifndef ZF_RNG_H
#define ZF_RNG_H

#include <stdint.h>

typedef struct zf_rng {
    uint64_t s[4];
} zf_rng;

static inline uint64_t zf_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Seed from a 64-bit seed and a stream id (distinct streams per purpose). */
static inline void zf_rng_seed(zf_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ULL);
    for (int i = 0; i < 4; i++) r->s[i] = zf_splitmix64(&x);
}

static inline uint64_t zf_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t zf_rng_u64(zf_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = zf_rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = zf_rotl64(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double zf_rng_uniform(zf_rng *r) { return (double)(zf_rng_u64(r) >> 11) * 0x1.0p-53; }

/* Uniform integer in [0, n) without modulo bias (n > 0). */
static inline uint64_t zf_rng_below(zf_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = zf_rng_u64(r); while (x >= limit);
    return x % n;
}

/* Standard normal by Box-Muller (one value per call; simple and exact enough
 * for initialisation). */
double zf_rng_normal(zf_rng *r);

/* Stateless hash of three words -> 64 random bits. */
static inline uint64_t zf_hash3(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t x = seed ^ zf_rotl64(a * 0x9E3779B97F4A7C15ULL, 17) ^ (b * 0xC2B2AE3D27D4EB4FULL);
    (void)zf_splitmix64(&x);
    return zf_splitmix64(&x);
}

/* Stateless uniform float in [0, 1) with 24 random bits.  b and b^1 share
 * one zf_hash3 (of b >> 1): even b takes bits 40..63, odd b bits 8..31, two
 * disjoint slices of the same 64 random bits.  Dropout masks (the CPU model,
 * the GPU kernels) draw one uniform per element, so this halves their
 * hashing; the GPU copies (trainer/cuda/gpt2_kernels.cuh, attention.cu) and
 * tests/py/test_gpt2_reference.py must compute the same. */
static inline float zf_hash3_uniform(uint64_t seed, uint64_t a, uint64_t b)
{
    const uint64_t h = zf_hash3(seed, a, b >> 1);
    return (float)((b & 1u) ? (uint32_t)h >> 8 : (uint32_t)(h >> 40)) * 0x1.0p-24f;
}

#endif
