/* test_offload_pipeline.c - offloadd's chunked (pipelined) shard update.
 *
 * zf_shard_opt_step_chunked must give bitwise the result of
 * zf_shard_opt_step (the update the GPU trainer's upload races against),
 * for several chunk sizes, shard offsets and thread counts, with decay and
 * no-decay ranges of odd lengths; its progress callback must announce
 * increasing prefixes ending at shard_numel, and every announced prefix
 * must already hold its final values when announced (what the trainer
 * copies to the GPU at that moment). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shard_optimizer.h"
#include "zf_check.h"

typedef struct watch {
    const float *p, *want; /* the live master and the expected final values */
    size_t last, calls, n;
    int order_bad, early_bad;
} watch;

static void on_done(void *ctx, size_t upto)
{
    watch *w = ctx;
    w->calls++;
    if (upto < w->last || upto > w->n || (upto == w->last && w->calls > 1)) w->order_bad++;
    /* the new prefix holds the final values now */
    if (upto > w->last && memcmp(w->p + w->last, w->want + w->last, (upto - w->last) * sizeof(float)) != 0)
        w->early_bad++;
    if (upto > w->last) w->last = upto;
}

static float urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

int main(void)
{
    /* a flat buffer of alternating decay / no-decay tensors of odd sizes */
    const size_t sizes[] = { 50257 * 3, 1024 * 3, 771, 3 * 1024 * 1024 + 17, 1, 4097, 2 * 1024 * 1024 + 5, 999, 65536 };
    const int nr = (int)(sizeof sizes / sizeof sizes[0]);
    zf_decay_range ranges[16];
    size_t total = 0;
    for (int i = 0; i < nr; i++) {
        ranges[i] = (zf_decay_range){ total, sizes[i], i % 2 == 0 };
        total += sizes[i];
    }
    zf_adamw_hparams h = { 3e-4, 0.9, 0.95, 1e-8, 0.1 };
    zf_lr_schedule sched;
    zf_lr_schedule_defaults(&sched, "WarmupLR", 3e-4);
    sched.warmup_num_steps = 3;
    float *p0 = malloc(total * sizeof(float)), *g = malloc(total * sizeof(float));
    uint64_t seed = 7;
    for (size_t i = 0; i < total; i++) {
        p0[i] = urand(&seed);
        g[i] = urand(&seed) * 1e-2f;
    }
    /* shards: the whole buffer, and one starting inside a tensor */
    const size_t shard_off[2] = { 0, 1000 }, shard_n[2] = { total, total - 1000 - 12345 };
    const size_t chunks[3] = { 1, (size_t)1 << 20, 3 * 1000 * 1000 };
    const int threads[2] = { 1, 3 };
    for (int sh = 0; sh < 2; sh++) {
        const size_t off = shard_off[sh], n = shard_n[sh];
        float *rp = malloc(n * 4), *rm = calloc(n, 4), *rv = calloc(n, 4);
        float *cp = malloc(n * 4), *cm = calloc(n, 4), *cv = calloc(n, 4);
        memcpy(rp, p0 + off, n * 4);
        zf_shard_opt *ref = zf_shard_opt_create(off, n, ranges, nr, &h, &sched, rp, rm, rv);
        CHECK(ref != NULL, "reference optimizer for shard %d", sh);
        if (!ref) return zf_check_summary("test_offload_pipeline");
        for (int ci = 0; ci < 3; ci++) {
            for (int ti = 0; ti < 2; ti++) {
                omp_set_num_threads(threads[ti]);
                memcpy(rp, p0 + off, n * 4);
                memset(rm, 0, n * 4);
                memset(rv, 0, n * 4);
                memcpy(cp, p0 + off, n * 4);
                memset(cm, 0, n * 4);
                memset(cv, 0, n * 4);
                zf_shard_opt *o = zf_shard_opt_create(off, n, ranges, nr, &h, &sched, cp, cm, cv);
                for (long step = 1; step <= 4; step++) {
                    float gs = step == 2 ? 0.37f : 1.0f; /* a clipped step */
                    double lr_ref = zf_shard_opt_step(ref, g + off, step, gs);
                    watch w = { cp, rp, 0, 0, n, 0, 0 };
                    double lr = zf_shard_opt_step_chunked(o, g + off, step, gs, chunks[ci], on_done, &w);
                    CHECK(lr == lr_ref, "lr %g vs %g", lr, lr_ref);
                    CHECK(w.last == n && w.order_bad == 0, "shard %d chunk %zu threads %d step %ld: last %zu of %zu, "
                          "%d out of order", sh, chunks[ci], threads[ti], step, w.last, n, w.order_bad);
                    CHECK(w.early_bad == 0, "shard %d chunk %zu step %ld: %d prefixes announced before final", sh,
                          chunks[ci], step, w.early_bad);
                    CHECK(memcmp(cp, rp, n * 4) == 0 && memcmp(cm, rm, n * 4) == 0 && memcmp(cv, rv, n * 4) == 0,
                          "shard %d chunk %zu threads %d step %ld: state differs from zf_shard_opt_step", sh,
                          chunks[ci], threads[ti], step);
                    /* one thread always gets to announce: every chunk's worth (with
                     * several, a busy announcer may merge some) */
                    if (threads[ti] == 1 && chunks[ci] == ((size_t)1 << 20))
                        CHECK(w.calls >= n / chunks[ci], "chunk %zu: %zu announcements for %zu elements", chunks[ci],
                              w.calls, n);
                }
                zf_shard_opt_free(o);
            }
        }
        zf_shard_opt_free(ref);
        free(rp), free(rm), free(rv), free(cp), free(cm), free(cv);
    }
    /* an empty shard still ends with one announcement */
    {
        float x = 0;
        zf_shard_opt *o = zf_shard_opt_create(0, 0, ranges, nr, &h, NULL, &x, &x, &x);
        watch w = { &x, &x, 0, 0, 0, 0, 0 };
        if (o) zf_shard_opt_step_chunked(o, g, 1, 1.0f, 1 << 20, on_done, &w);
        CHECK(o && w.calls == 1 && w.last == 0, "empty shard: %zu announcements", w.calls);
        zf_shard_opt_free(o);
    }
    free(p0);
    free(g);
    return zf_check_summary("test_offload_pipeline");
}
