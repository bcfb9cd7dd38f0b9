/* rng.h - deterministic random numbers for everything seeded in zeroflow.
 *
 * Owns: the one generator used for parameter initialisation, dropout masks,
 * data shuffling and sampling, so that a seed fixes a run bit for bit on any
 * thread count.  Two forms:
 *   - zf_rng: a small sequential generator (xoshiro256** seeded by
 *     splitmix64); its whole state is 4 words and is saved in checkpoints.
 *   - zf_hash3: a stateless counter-based hash of (seed, a, b) for values
 *     drawn in parallel, and the dropout draws built on it (element i of
 *     layer l's mask at step s), which give the same mask whatever the
 *     thread schedule or device. */
#ifndef ZF_RNG_H
#define ZF_RNG_H

#include <stdint.h>

/* The stateless functions below also compile for the GPU (nvcc), so the
 * CUDA kernels draw exactly the CPU model's dropout masks from this code. */
#ifdef __CUDACC__
#define ZF_RNG_FN static inline __host__ __device__
#else
#define ZF_RNG_FN static inline
#endif

typedef struct zf_rng {
    uint64_t s[4];
} zf_rng;

ZF_RNG_FN uint64_t zf_splitmix64(uint64_t *x)
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

ZF_RNG_FN uint64_t zf_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

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
ZF_RNG_FN uint64_t zf_hash3(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t x = seed ^ zf_rotl64(a * 0x9E3779B97F4A7C15ULL, 17) ^ (b * 0xC2B2AE3D27D4EB4FULL);
    (void)zf_splitmix64(&x);
    return zf_splitmix64(&x);
}

/* Dropout draws.  A masked tensor gets one 64-bit key, zf_drop_key(seed,
 * site); its element i is kept when zf_drop_u16(key, i) >= zf_drop_threshold(p),
 * i.e. with probability 1 - ceil(p 2^16) / 2^16 (p resolved to 2^-16).
 * Elements 2c and 2c+1 share one 32-bit hash of pair c (low, high half).
 * Only 32-bit arithmetic per element: the GPU attention forward draws one per
 * score, and a 64-bit multiply costs a GPU about four 32-bit ones.  The CPU
 * model, the GPU kernels (trainer/cuda/gpt2_kernels.cuh, attention.cu) and
 * tests/py/test_gpt2_reference.py compute the same bits. */
ZF_RNG_FN uint64_t zf_drop_key(uint64_t seed, uint64_t site) { return zf_hash3(seed, site, 0x64726f70u); }

/* A 32-bit multiply-xorshift mixer (a bijection with full avalanche). */
ZF_RNG_FN uint32_t zf_mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* 32 random bits for pair c of the tensor keyed by key: two mixing rounds,
 * the key's low word before the first, its high word (and c's, for tensors
 * beyond 2^33 elements) before the second. */
ZF_RNG_FN uint32_t zf_drop_pair(uint64_t key, uint64_t c)
{
    const uint32_t x = zf_mix32((uint32_t)c ^ (uint32_t)key);
    return zf_mix32(x ^ (uint32_t)(key >> 32) ^ ((uint32_t)(c >> 32) * 0x9E3779B9U));
}

ZF_RNG_FN uint32_t zf_drop_u16(uint64_t key, uint64_t i)
{
    const uint32_t h = zf_drop_pair(key, i >> 1);
    return (i & 1u) ? h >> 16 : h & 0xFFFFu;
}

/* The dropout factor of element i: scale (1/(1-p)) if kept, else 0. */
ZF_RNG_FN float zf_drop_keep(uint64_t key, uint64_t i, uint32_t thr, float scale)
{
    return zf_drop_u16(key, i) >= thr ? scale : 0.0f;
}

/* ceil(p 2^16) for p in [0, 1] (p 2^16 is exact in float): element kept when
 * its u16 is >= this, which is u16 / 2^16 >= p. */
ZF_RNG_FN uint32_t zf_drop_threshold(float p)
{
    if (!(p > 0.0f)) return 0;
    if (p >= 1.0f) return 65536u;
    const float x = p * 65536.0f;
    uint32_t t = (uint32_t)x;
    return (float)t < x ? t + 1u : t;
}

#endif
