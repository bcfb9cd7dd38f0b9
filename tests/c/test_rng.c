/* test_rng.c - lib/rng.h's dropout draws: the threshold's rounding at the
 * edges, the pair layout, the kept fraction, independence between tensors
 * and between positions, and that element indices beyond 2^33 reach the
 * hash.  (That the CPU model's masks are these draws is checked against an
 * independent numpy transcription in tests/py/test_gpt2_reference.py; the
 * GPU kernels' masks against the host in tests/gpu/test_attention.cu and
 * test_kernels.cu.) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "rng.h"
#include "zf_check.h"

static void test_threshold(void)
{
    CHECK(zf_drop_threshold(0.0f) == 0, "p = 0 keeps everything");
    CHECK(zf_drop_threshold(-0.5f) == 0, "p < 0 keeps everything");
    CHECK(zf_drop_threshold(1.0f) == 65536u, "p = 1 keeps nothing");
    CHECK(zf_drop_threshold(0.5f) == 32768u, "p = 0.5: exact half");
    CHECK(zf_drop_threshold(0x1.0p-16f) == 1u, "p = 2^-16: one value dropped");
    CHECK(zf_drop_threshold(0x1.0p-17f) == 1u, "p = 2^-17 rounds up to one value");
    CHECK(zf_drop_threshold(0.1f) == 6554u, "p = 0.1: ceil(6553.6) = 6554, got %u", zf_drop_threshold(0.1f));
    CHECK(zf_drop_threshold(nextafterf(0.5f, 1.0f)) == 32769u, "just above 0.5 rounds up");
    /* u16 >= thr <=> u16 / 2^16 >= p, for every u16 at a few p */
    const float ps[4] = {0.1f, 0.3f, 0.5f, 0.9999f};
    for (int k = 0; k < 4; k++) {
        const uint32_t thr = zf_drop_threshold(ps[k]);
        int bad = 0;
        for (uint32_t u = 0; u < 65536u; u++) bad += (u >= thr) != ((float)u * 0x1.0p-16f >= ps[k]);
        CHECK(bad == 0, "p = %g: %d draws where u16 >= thr and u >= p disagree", (double)ps[k], bad);
    }
}

static void test_pairs_and_fraction(void)
{
    const uint64_t key = zf_drop_key(1234, 7);
    int pair_bad = 0;
    for (uint64_t c = 0; c < 1000; c++) {
        const uint32_t h = zf_drop_pair(key, c);
        pair_bad += zf_drop_u16(key, 2 * c) != (h & 0xFFFFu) || zf_drop_u16(key, 2 * c + 1) != (h >> 16);
    }
    CHECK(pair_bad == 0, "elements 2c, 2c+1 are the low and high halves of pair c (%d wrong)", pair_bad);

    /* kept fraction and independence, 2^22 elements (binomial sd ~1.5e-4) */
    const uint64_t n = (uint64_t)1 << 22, key2 = zf_drop_key(1234, 8), key3 = zf_drop_key(1235, 7);
    const uint32_t thr = zf_drop_threshold(0.1f);
    uint64_t drop = 0, both_site = 0, both_seed = 0, both_next = 0, prev = 0;
    double mean = 0.0;
    for (uint64_t i = 0; i < n; i++) {
        const uint32_t u = zf_drop_u16(key, i);
        const int d = u < thr;
        drop += d;
        both_site += d && zf_drop_u16(key2, i) < thr;
        both_seed += d && zf_drop_u16(key3, i) < thr;
        both_next += d && prev;
        prev = d;
        mean += u;
    }
    const double f = (double)drop / n;
    CHECK(fabs(f - 6554.0 / 65536.0) < 1e-3, "dropped fraction %.5f, expected 0.10001", f);
    CHECK(fabs(mean / n - 32767.5) < 60.0, "mean draw %.1f, expected 32767.5", mean / n);
    /* both dropped: p^2 = 0.01 for independent masks */
    CHECK(fabs((double)both_site / n - 0.01) < 5e-4, "another site: both dropped %.5f, expected 0.01",
          (double)both_site / n);
    CHECK(fabs((double)both_seed / n - 0.01) < 5e-4, "another seed: both dropped %.5f, expected 0.01",
          (double)both_seed / n);
    CHECK(fabs((double)both_next / n - 0.01) < 5e-4, "neighbours (within and across pairs): both dropped %.5f",
          (double)both_next / n);
}

static void test_high_indices(void)
{
    /* pair c and c + 2^32 share the low word: the high word must change the draw */
    const uint64_t key = zf_drop_key(99, 3);
    int same = 0;
    for (uint64_t c = 0; c < 1000; c++) same += zf_drop_pair(key, c) == zf_drop_pair(key, c + ((uint64_t)1 << 32));
    CHECK(same < 3, "%d of 1000 pairs equal to the pair 2^32 later", same);
}

int main(void)
{
    test_threshold();
    test_pairs_and_fraction();
    test_high_indices();
    return zf_check_summary("test_rng");
}
