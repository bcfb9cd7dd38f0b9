/* shard_optimizer.c - see shard_optimizer.h. */
#include "shard_optimizer.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* Work items never straddle a decay boundary and are at most this long, so
 * one parallel loop covers the whole shard (GPT-2 alternates small no-decay
 * tensors with big decay ones; one parallel region per tensor would waste
 * more time in fork/join than in arithmetic for the small ones). */
#define ZF_SHARD_ITEM 32768

typedef struct shard_item { size_t off, len; int decay; } shard_item;

struct zf_shard_opt {
    size_t shard_offset, shard_numel;
    zf_adamw_hparams h;
    zf_lr_schedule sched;
    int have_sched;
    float *master, *m, *v;
    shard_item *items;
    size_t nitems;
};

static int cmp_range(const void *a, const void *b)
{
    const zf_decay_range *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int zf_decay_ranges_check(const zf_decay_range *ranges, int nranges, size_t total_numel, zf_err *err)
{
    if (nranges <= 0 || !ranges)
        return zf_err_set(err, "decay ranges: expected at least one range, got %d", nranges);
    zf_decay_range *r = zf_xmalloc((size_t)nranges * sizeof *r);
    memcpy(r, ranges, (size_t)nranges * sizeof *r);
    qsort(r, (size_t)nranges, sizeof *r, cmp_range);
    size_t pos = 0;
    int rc = 0;
    for (int i = 0; i < nranges && rc == 0; i++) {
        if (r[i].offset != pos)
            rc = zf_err_set(err, "decay ranges: range at offset %zu (numel %zu): expected to start at %zu (%s)",
                            r[i].offset, r[i].numel, pos, r[i].offset > pos ? "gap" : "overlap");
        else if (r[i].numel > total_numel - pos)
            rc = zf_err_set(err, "decay ranges: range at offset %zu: numel %zu runs past the buffer end %zu",
                            r[i].offset, r[i].numel, total_numel);
        pos += r[i].numel;
    }
    if (rc == 0 && pos != total_numel)
        rc = zf_err_set(err, "decay ranges: expected to cover %zu elements, cover %zu", total_numel, pos);
    free(r);
    return rc;
}

zf_shard_opt *zf_shard_opt_create_checked(size_t shard_offset, size_t shard_numel, const zf_decay_range *ranges,
                                          int nranges, const zf_adamw_hparams *h, const zf_lr_schedule *sched,
                                          float *master, float *m, float *v, zf_err *err)
{
    if (!h || !master || !m || !v || (nranges > 0 && !ranges) || nranges < 0) {
        zf_err_set(err, "shard optimizer: expected hparams, master, m and v buffers and ranges");
        return NULL;
    }
    if (sched && zf_lr_schedule_check(sched, err)) return NULL;
    /* Intersect the ranges with the shard, in offset order. */
    zf_decay_range *r = zf_xmalloc((size_t)(nranges ? nranges : 1) * sizeof *r);
    int nr = 0;
    size_t end = shard_offset + shard_numel;
    for (int i = 0; i < nranges; i++) {
        size_t a = ranges[i].offset, b = ranges[i].offset + ranges[i].numel;
        if (ranges[i].numel == 0 || b <= shard_offset || a >= end) continue;
        r[nr].offset = a < shard_offset ? shard_offset : a;
        r[nr].numel = (b > end ? end : b) - r[nr].offset;
        r[nr].decay = ranges[i].decay != 0;
        nr++;
    }
    qsort(r, (size_t)nr, sizeof *r, cmp_range);
    size_t pos = shard_offset;
    for (int i = 0; i < nr; i++) {
        if (r[i].offset != pos) {
            zf_err_set(err, "shard optimizer: decay ranges leave [%zu, %zu) of shard [%zu, %zu) %s",
                       pos < r[i].offset ? pos : r[i].offset, pos < r[i].offset ? r[i].offset : pos,
                       shard_offset, end, r[i].offset > pos ? "uncovered" : "covered twice");
            free(r);
            return NULL;
        }
        pos += r[i].numel;
    }
    if (pos != end) {
        zf_err_set(err, "shard optimizer: decay ranges leave [%zu, %zu) of shard [%zu, %zu) uncovered",
                   pos, end, shard_offset, end);
        free(r);
        return NULL;
    }
    zf_shard_opt *o = zf_xcalloc(1, sizeof *o);
    o->shard_offset = shard_offset;
    o->shard_numel = shard_numel;
    o->h = *h;
    if (sched) { o->sched = *sched; o->have_sched = 1; }
    o->master = master; o->m = m; o->v = v;
    size_t nitems = 0;
    for (int i = 0; i < nr; i++) nitems += (r[i].numel + ZF_SHARD_ITEM - 1) / ZF_SHARD_ITEM;
    o->items = zf_xmalloc((nitems ? nitems : 1) * sizeof *o->items);
    for (int i = 0; i < nr; i++) {
        for (size_t k = 0; k < r[i].numel; k += ZF_SHARD_ITEM) {
            shard_item *it = &o->items[o->nitems++];
            it->off = r[i].offset - shard_offset + k;
            it->len = r[i].numel - k < ZF_SHARD_ITEM ? r[i].numel - k : ZF_SHARD_ITEM;
            it->decay = r[i].decay;
        }
    }
    free(r);
    return o;
}

zf_shard_opt *zf_shard_opt_create(size_t shard_offset, size_t shard_numel, const zf_decay_range *ranges, int nranges,
                                  const zf_adamw_hparams *h, const zf_lr_schedule *sched,
                                  float *master, float *m, float *v)
{
    return zf_shard_opt_create_checked(shard_offset, shard_numel, ranges, nranges, h, sched, master, m, v, NULL);
}

double zf_shard_opt_lr(const zf_shard_opt *o, long step)
{
    return o->have_sched ? zf_lr_at(&o->sched, step) : o->h.lr;
}

/* The AdamW coefficients of `step` without (c[0]) and with (c[1]) weight
 * decay; returns the lr they use. */
static double step_coefs(const zf_shard_opt *o, long step, zf_adamw_coefs c[2])
{
    zf_adamw_hparams h = o->h;
    h.lr = zf_shard_opt_lr(o, step);
    zf_adamw_coefs_init(&c[0], &h, step, 0);
    zf_adamw_coefs_init(&c[1], &h, step, 1);
    return h.lr;
}

double zf_shard_opt_step(zf_shard_opt *o, const float *g, long step, float grad_scale)
{
    zf_adamw_coefs c[2];
    const double lr = step_coefs(o, step, c);
    const shard_item *items = o->items;
    float *p = o->master, *m = o->m, *v = o->v;
    long n = (long)o->nitems;
    #pragma omp parallel for schedule(dynamic, 4) if (o->shard_numel > ZF_SHARD_ITEM)
    for (long k = 0; k < n; k++) {
        size_t off = items[k].off;
        zf_adamw_kernel(p + off, g + off, m + off, v + off, items[k].len, &c[items[k].decay], grad_scale);
    }
    return lr;
}

double zf_shard_opt_step_chunked(zf_shard_opt *o, const float *g, long step, float grad_scale, size_t chunk,
                                 void (*done)(void *ctx, size_t upto), void *ctx)
{
    zf_adamw_coefs c[2];
    const double lr = step_coefs(o, step, c);
    const shard_item *items = o->items;
    float *p = o->master, *m = o->m, *v = o->v;
    const long n = (long)o->nitems;
    /* No barrier per chunk (threads would sleep and wake at each one): the
     * items are handed out in offset order, each marks itself finished, and
     * whichever thread gets the lock advances the finished prefix and
     * announces it. */
    unsigned char *fin = zf_xcalloc((size_t)(n ? n : 1), 1);
    long prefix = 0;            /* items [0, prefix) finished; under lk */
    size_t announced = 0;
    omp_lock_t lk;
    omp_init_lock(&lk);
    #pragma omp parallel if (o->shard_numel > ZF_SHARD_ITEM)
    {
        #pragma omp for schedule(dynamic, 1)
        for (long k = 0; k < n; k++) {
            size_t off = items[k].off;
            zf_adamw_kernel(p + off, g + off, m + off, v + off, items[k].len, &c[items[k].decay], grad_scale);
            __atomic_store_n(&fin[k], 1, __ATOMIC_RELEASE);
            if (done && omp_test_lock(&lk)) {
                long q = prefix;
                while (q < n && __atomic_load_n(&fin[q], __ATOMIC_ACQUIRE)) q++;
                prefix = q;
                if (q < n && items[q].off >= announced + chunk && items[q].off > announced) {
                    announced = items[q].off;
                    done(ctx, announced);
                }
                omp_unset_lock(&lk);
            }
        }
    }
    omp_destroy_lock(&lk);
    free(fin);
    if (done) done(ctx, o->shard_numel); /* every item finished (the loop's barrier) */
    return lr;
}

void zf_shard_opt_free(zf_shard_opt *o)
{
    if (!o) return;
    free(o->items);
    free(o);
}

/* ---- clipping helpers ---- */

#define ZF_SUMSQ_MIN_BLOCK 65536

/* Sum of squares of one block into 16 double lanes: lane j takes elements
 * j, j+16, j+32, ...; squares of floats are exact in double, so fused or not
 * every path adds the same values in the same order. */
static double block_sumsq(const float *g, size_t n)
{
    double lanes[ZF_SUMSQ_LANES] = {0};
    size_t i = 0;
#if defined(__AVX512F__)
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    for (; i + 16 <= n; i += 16) {
        __m512d x0 = _mm512_cvtps_pd(_mm256_loadu_ps(g + i));
        __m512d x1 = _mm512_cvtps_pd(_mm256_loadu_ps(g + i + 8));
        a0 = _mm512_add_pd(a0, _mm512_mul_pd(x0, x0));
        a1 = _mm512_add_pd(a1, _mm512_mul_pd(x1, x1));
    }
    _mm512_storeu_pd(lanes, a0);
    _mm512_storeu_pd(lanes + 8, a1);
#elif defined(__AVX2__)
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (; i + 16 <= n; i += 16) {
        for (int q = 0; q < 4; q++) {
            __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(g + i + 4 * q));
            a[q] = _mm256_add_pd(a[q], _mm256_mul_pd(x, x));
        }
    }
    for (int q = 0; q < 4; q++) _mm256_storeu_pd(lanes + 4 * q, a[q]);
#else
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < ZF_SUMSQ_LANES; j++) {
            double x = (double)g[i + j];
            lanes[j] += x * x;
        }
#endif
    for (int j = 0; i < n; i++, j++) {
        double x = (double)g[i];
        lanes[j] += x * x;
    }
    double s = 0;
    for (int j = 0; j < ZF_SUMSQ_LANES; j++) s += lanes[j];
    return s;
}

void zf_sum_squares_plan(size_t n, size_t *block, size_t *nblocks)
{
    /* The block size is a function of n alone (a multiple of 16 so that
     * lane assignment is the same in every block). */
    size_t nb = n / ZF_SUMSQ_MIN_BLOCK;
    if (nb < 1) nb = 1;
    if (nb > ZF_SUMSQ_MAX_BLOCKS) nb = ZF_SUMSQ_MAX_BLOCKS;
    size_t bs = (n + nb - 1) / nb;
    bs = (bs + 15) / 16 * 16;
    if (bs == 0) bs = 16;
    *block = bs;
    *nblocks = (n + bs - 1) / bs;
}

double zf_sum_squares(const float *g, size_t n)
{
    size_t bs, nb;
    zf_sum_squares_plan(n, &bs, &nb);
    if (nb <= 1) return block_sumsq(g, n);
    double part[ZF_SUMSQ_MAX_BLOCKS];
    #pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nb; b++) {
        size_t off = b * bs;
        size_t len = n - off < bs ? n - off : bs;
        part[b] = block_sumsq(g + off, len);
    }
    double s = 0;
    for (size_t b = 0; b < nb; b++) s += part[b];
    return s;
}

float zf_clip_coef(double total_norm, double max_norm)
{
    if (!(max_norm > 0)) return 1.0f;
    /* torch: clip_coef = max_norm / (total_norm + 1e-6) on a float32 tensor,
     * where scalar / tensor is tensor.reciprocal() * scalar */
    float d = (float)total_norm + (float)1e-6;
    float c = (1.0f / d) * (float)max_norm;
    if (c > 1.0f) c = 1.0f;
    return c;
}
