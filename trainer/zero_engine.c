/* zero_engine.c - see zero_engine.h. */
#include "zero_engine.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loss_scaler.h"
#include "shard_optimizer.h"

enum { U_RELEASED = 0, U_INFLIGHT = 1, U_LIVE = 2 };

/* A gradient bucket: an in-place reduce-scatter of [off, off+n) of the
 * working grads; this rank's part [po, po+pn) lands at the start of the
 * range and is added to grads_part on completion. */
typedef struct bucket {
    size_t off, n, po, pn;
    zf_comm_req req;
} bucket;

typedef struct trace_step { int unit, phase; } trace_step;

struct zf_zero {
    zf_comm *c;
    zf_zero_plan p;
    int eff;              /* the stage's mechanics: the plan's stage, 0 in a world of one
                             (every slice is the whole buffer: nothing to partition) */
    zf_zero_options o;
    float *params;        /* stage 0-2: the caller's whole params; stage 3: working mapping */
    float *home;          /* stage 3: the caller's slice */
    float *grads;         /* stage 0-1: the caller's whole grads; stage 2-3: working mapping */
    float *gpart;         /* stage 2-3: the caller's slice of grads */
    size_t map_bytes;     /* bytes of each working mapping */
    size_t page;          /* floats per page */
    zf_gpt2_hooks hooks;
    /* stage 2-3 buckets, FIFO (completed and added in issue order, so the
     * sums do not depend on timing) */
    bucket *bq;
    int bq_head, bq_len, bq_cap;
    size_t pend_lo, pend_hi; /* final gradients not yet in a bucket */
    size_t inflight_elems;
    /* stage 3 */
    int *ustate;
    zf_comm_req **ureq;   /* per unit, one per segment */
    size_t live;          /* non-persistent elements gathered or in flight */
    trace_step *trace;
    int ntrace, cursor;
    int backward_started;
    zf_zero_stats st;
    int failed;
    zf_err err;
};

static int fail(zf_zero *z, const zf_err *e)
{
    if (!z->failed) {
        z->failed = 1;
        z->err = *e;
    }
    return -1;
}

/* ------------------------------------------------------- page helpers */

static float *map_whole(size_t bytes)
{
    /* address space only: pages appear when written and go with MADV_DONTNEED */
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Zero [lo, hi) of a working mapping, returning whole pages to the kernel
 * (the partial pages at the ends hold neighbours' data: memset). */
static void drop_range(zf_zero *z, float *base, size_t lo, size_t hi, int keep_edges)
{
    if (hi <= lo) return;
    size_t a = (lo + z->page - 1) / z->page * z->page, b = hi / z->page * z->page;
    if (a >= b) {
        if (!keep_edges) memset(base + lo, 0, (hi - lo) * sizeof(float));
        return;
    }
    if (!keep_edges) {
        memset(base + lo, 0, (a - lo) * sizeof(float));
        memset(base + b, 0, (hi - b) * sizeof(float));
    }
    madvise(base + a, (b - a) * sizeof(float), MADV_DONTNEED);
}

static uint64_t resident_bytes(void *addr, size_t bytes)
{
    if (!addr || !bytes) return 0;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = (bytes + pg - 1) / pg;
    unsigned char *v = zf_xmalloc(n);
    uint64_t r = 0;
    if (mincore(addr, bytes, v) == 0)
        for (size_t i = 0; i < n; i++) r += v[i] & 1;
    free(v);
    return r * pg;
}

/* --------------------------------------------------- gradient buckets */

static void bucket_finish(zf_zero *z, bucket *b)
{
    if (b->pn) {
        float *dst = z->gpart + (b->po - z->p.own_off);
        const float *src = z->grads + b->off;
        #pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < b->pn; i++) dst[i] += src[i];
    }
    drop_range(z, z->grads, b->off, b->off + b->n, 0);
    z->inflight_elems -= b->n;
}

/* Complete the oldest buckets: all of them (wait) or those done (test). */
static int buckets_progress(zf_zero *z, int wait)
{
    zf_err e;
    while (z->bq_len > 0) {
        bucket *b = &z->bq[z->bq_head];
        if (wait) {
            if (zf_comm_wait(z->c, &b->req, &e) != 0) return fail(z, &e);
        } else {
            int done = zf_comm_test(z->c, &b->req, &e);
            if (done < 0) return fail(z, &e);
            if (!done) return 0;
        }
        bucket_finish(z, b);
        z->bq_head = (z->bq_head + 1) % z->bq_cap;
        z->bq_len--;
    }
    return 0;
}

static size_t bucket_elems(const zf_zero *z);

static int bucket_issue(zf_zero *z, size_t off, size_t n)
{
    /* double buffering: at most about two buckets in flight, so the working
     * gradients' resident pages and the receive buffers stay bounded by
     * reduce_bucket_size (MPI progresses a non-blocking collective mostly
     * inside MPI calls: the wait is where an older bucket completes) */
    while (z->bq_len > 0 && z->inflight_elems + n > 2 * bucket_elems(z)) {
        zf_err e;
        bucket *h = &z->bq[z->bq_head];
        if (zf_comm_wait(z->c, &h->req, &e) != 0) return fail(z, &e);
        bucket_finish(z, h);
        z->bq_head = (z->bq_head + 1) % z->bq_cap;
        z->bq_len--;
    }
    if (z->bq_len == z->bq_cap) { /* grow the ring, keeping FIFO order */
        int cap = z->bq_cap ? 2 * z->bq_cap : 8;
        bucket *nb = zf_xcalloc((size_t)cap, sizeof *nb);
        for (int i = 0; i < z->bq_len; i++) nb[i] = z->bq[(z->bq_head + i) % z->bq_cap];
        free(z->bq);
        z->bq = nb;
        z->bq_cap = cap;
        z->bq_head = 0;
    }
    bucket *b = &z->bq[(z->bq_head + z->bq_len) % z->bq_cap];
    memset(b, 0, sizeof *b);
    b->off = off;
    b->n = n;
    zf_comm_range_part(z->c, z->c->rank, off, n, &b->po, &b->pn);
    zf_err e;
    if (zf_comm_reduce_scatter(z->c, z->grads, off, n, NULL, z->o.overlap_comm ? &b->req : NULL, &e) != 0)
        return fail(z, &e);
    z->bq_len++;
    z->inflight_elems += n;
    if (z->inflight_elems > z->st.bucket_peak) z->st.bucket_peak = z->inflight_elems;
    z->st.buckets++;
    return z->o.overlap_comm ? buckets_progress(z, 0) : buckets_progress(z, 1);
}

static size_t bucket_elems(const zf_zero *z)
{
    size_t b = z->o.reduce_bucket_size ? z->o.reduce_bucket_size : z->p.total;
    return b > (size_t)INT_MAX ? (size_t)INT_MAX : b;
}

/* Issue the pending range [pend_lo, pend_hi) as buckets, highest first
 * (the order backward made them final). */
static int flush_pending(zf_zero *z)
{
    size_t bs = bucket_elems(z);
    while (z->pend_hi > z->pend_lo) {
        size_t n = z->pend_hi - z->pend_lo < bs ? z->pend_hi - z->pend_lo : bs;
        if (bucket_issue(z, z->pend_hi - n, n) != 0) return -1;
        z->pend_hi -= n;
    }
    z->pend_lo = z->pend_hi = 0;
    return 0;
}

static void hook_grads_ready(void *ctx, int unit)
{
    zf_zero *z = ctx;
    if (z->failed || z->eff < 2) return;
    const zf_zero_unit *u = &z->p.units[unit];
    /* backward makes units final from the end down, so they extend the
     * pending range downwards; anything else starts a new range */
    if (z->pend_hi > z->pend_lo && u->end != z->pend_lo && flush_pending(z) != 0) return;
    if (z->pend_hi == z->pend_lo) z->pend_hi = u->end;
    z->pend_lo = u->start;
    if (z->pend_hi - z->pend_lo >= bucket_elems(z) || unit == 0) flush_pending(z);
    else if (z->o.overlap_comm) buckets_progress(z, 0);
    if (unit == 0) z->backward_started = 0;
}

/* ------------------------------------------------- stage-3 parameters */

static int unit_gather(zf_zero *z, int unit, int nonblocking)
{
    const zf_zero_unit *u = &z->p.units[unit];
    zf_err e;
    for (int s = 0; s < u->nseg; s++) {
        const zf_zero_seg *g = &u->seg[s];
        if (g->persistent) continue;
        size_t po, pn;
        zf_comm_range_part(z->c, z->c->rank, g->start, g->end - g->start, &po, &pn);
        const float *own = pn ? z->home + (po - z->p.own_off) : z->home;
        if (zf_comm_allgather(z->c, z->params, g->start, g->end - g->start, own, nonblocking ? &z->ureq[unit][s] : NULL,
                              &e) != 0)
            return fail(z, &e);
    }
    z->ustate[unit] = nonblocking ? U_INFLIGHT : U_LIVE;
    z->live += u->gathered;
    if (z->live > z->st.live_peak) z->st.live_peak = z->live;
    if (nonblocking) z->st.prefetches++;
    else z->st.gathers++;
    return 0;
}

static int unit_wait(zf_zero *z, int unit)
{
    zf_err e;
    for (int s = 0; s < z->p.units[unit].nseg; s++)
        if (zf_comm_wait(z->c, &z->ureq[unit][s], &e) != 0) return fail(z, &e);
    z->ustate[unit] = U_LIVE;
    return 0;
}

static void unit_release(zf_zero *z, int unit)
{
    const zf_zero_unit *u = &z->p.units[unit];
    for (int s = 0; s < u->nseg; s++)
        if (!u->seg[s].persistent) drop_range(z, z->params, u->seg[s].start, u->seg[s].end, 1);
    z->ustate[unit] = U_RELEASED;
    z->live -= u->gathered;
    z->st.releases++;
}

static int trace_find(const zf_zero *z, int unit, int phase)
{
    if (z->cursor < z->ntrace && z->trace[z->cursor].unit == unit && z->trace[z->cursor].phase == phase)
        return z->cursor;
    for (int i = 0; i < z->ntrace; i++)
        if (z->trace[i].unit == unit && z->trace[i].phase == phase) return i;
    return -1;
}

static void hook_fetch(void *ctx, int unit, int phase)
{
    zf_zero *z = ctx;
    if (z->failed) return;
    if (phase == ZF_GPT2_BACKWARD && !z->backward_started) {
        /* the previous micro-batch's buckets read the ranges this backward
         * is about to accumulate into: complete them first */
        z->backward_started = 1;
        if (buckets_progress(z, 1) != 0) return;
    } else if (z->bq_len) {
        buckets_progress(z, 0);
    }
    if (z->eff < 3) return;
    int at = trace_find(z, unit, phase);
    z->cursor = at < 0 ? z->ntrace : at + 1;
    if (z->ustate[unit] == U_INFLIGHT && unit_wait(z, unit) != 0) return;
    if (z->ustate[unit] == U_RELEASED && z->p.units[unit].gathered && unit_gather(z, unit, 0) != 0) return;
    if (!z->p.units[unit].gathered) z->ustate[unit] = U_LIVE;
    /* prefetch what the trace uses next: the window of upcoming units
     * (already gathered or in flight ones included) holds at most
     * stage3_prefetch_bucket_size elements, and all gathered ones at most
     * stage3_max_live_parameters */
    size_t ahead = 0;
    for (int i = z->cursor; i < z->ntrace; i++) {
        int v = z->trace[i].unit;
        size_t g = z->p.units[v].gathered;
        if (g == 0 || v == unit) continue;
        if (ahead + g > z->o.prefetch_bucket_size) break;
        ahead += g;
        if (z->ustate[v] != U_RELEASED) continue;
        if (z->live + g > z->o.max_live_parameters) break;
        if (unit_gather(z, v, 1) != 0) return;
    }
}

static void hook_release(void *ctx, int unit, int phase)
{
    zf_zero *z = ctx;
    (void)phase;
    if (z->failed || z->eff < 3) return;
    /* kept when the very next use is the same unit (the classifier's wte
     * from forward to backward) */
    if (z->cursor < z->ntrace && z->trace[z->cursor].unit == unit) return;
    if (z->ustate[unit] == U_LIVE) unit_release(z, unit);
}

static int gather_persistent(zf_zero *z)
{
    zf_err e;
    for (int u = 0; u < z->p.n_units; u++)
        for (int s = 0; s < z->p.units[u].nseg; s++) {
            const zf_zero_seg *g = &z->p.units[u].seg[s];
            if (!g->persistent) continue;
            size_t po, pn;
            zf_comm_range_part(z->c, z->c->rank, g->start, g->end - g->start, &po, &pn);
            const float *own = pn ? z->home + (po - z->p.own_off) : z->home;
            if (zf_comm_allgather(z->c, z->params, g->start, g->end - g->start, own, NULL, &e) != 0) return fail(z, &e);
        }
    return 0;
}

static int drop_all_units(zf_zero *z)
{
    for (int u = 0; u < z->p.n_units; u++) {
        if (z->ustate[u] == U_INFLIGHT && unit_wait(z, u) != 0) return -1;
        if (z->ustate[u] == U_LIVE && z->p.units[u].gathered) unit_release(z, u);
        z->ustate[u] = U_RELEASED;
    }
    z->live = 0;
    z->cursor = 0;
    return 0;
}

/* --------------------------------------------------------------- API */

zf_zero *zf_zero_create(zf_comm *c, const zf_zero_plan *plan, const zf_zero_options *o, float *params, float *grads,
                        zf_err *err)
{
    if (plan->world != c->size || plan->rank != c->rank) {
        zf_err_set(err, "zero engine: plan for rank %d of %d: expected the communicator's rank %d of %d", plan->rank,
                   plan->world, c->rank, c->size);
        return NULL;
    }
    zf_zero *z = zf_xcalloc(1, sizeof *z);
    z->c = c;
    z->p = *plan;
    /* own copy of the units (the caller frees its plan) */
    z->p.units = zf_xcalloc((size_t)plan->n_units, sizeof *z->p.units);
    for (int u = 0; u < plan->n_units; u++) {
        z->p.units[u] = plan->units[u];
        z->p.units[u].seg = zf_xcalloc((size_t)(plan->units[u].nseg ? plan->units[u].nseg : 1), sizeof(zf_zero_seg));
        memcpy(z->p.units[u].seg, plan->units[u].seg, (size_t)plan->units[u].nseg * sizeof(zf_zero_seg));
    }
    z->o = *o;
    z->eff = plan->world == 1 ? 0 : plan->stage;
    z->page = (size_t)sysconf(_SC_PAGESIZE) / sizeof(float);
    zf_comm_set_layout(c, plan->total);
    z->map_bytes = (plan->total * sizeof(float) + z->page * sizeof(float) - 1) / (z->page * sizeof(float)) * z->page *
                   sizeof(float);
    if (z->eff >= 2) {
        z->gpart = grads;
        if (!(z->grads = map_whole(z->map_bytes))) {
            zf_err_set(err, "zero engine: mmap of %zu bytes of working gradients: expected address space, got none",
                       z->map_bytes);
            zf_zero_free(z);
            return NULL;
        }
    } else {
        z->grads = grads;
    }
    if (z->eff == 3) {
        z->home = params;
        if (!(z->params = map_whole(z->map_bytes))) {
            zf_err_set(err, "zero engine: mmap of %zu bytes of working parameters: expected address space, got none",
                       z->map_bytes);
            zf_zero_free(z);
            return NULL;
        }
        int L = plan->n_units - 2;
        z->ustate = zf_xcalloc((size_t)plan->n_units, sizeof(int));
        z->ureq = zf_xcalloc((size_t)plan->n_units, sizeof *z->ureq);
        for (int u = 0; u < plan->n_units; u++)
            z->ureq[u] = zf_xcalloc((size_t)(plan->units[u].nseg ? plan->units[u].nseg : 1), sizeof(zf_comm_req));
        /* the order gpt2_cpu.h fetches units in */
        z->trace = zf_xcalloc((size_t)(2 * L + 5), sizeof *z->trace);
        z->trace[z->ntrace++] = (trace_step){ 0, ZF_GPT2_FORWARD };
        for (int l = 1; l <= L; l++) z->trace[z->ntrace++] = (trace_step){ l, ZF_GPT2_FORWARD };
        z->trace[z->ntrace++] = (trace_step){ L + 1, ZF_GPT2_FORWARD };
        z->trace[z->ntrace++] = (trace_step){ 0, ZF_GPT2_FORWARD };
        z->trace[z->ntrace++] = (trace_step){ 0, ZF_GPT2_BACKWARD };
        z->trace[z->ntrace++] = (trace_step){ L + 1, ZF_GPT2_BACKWARD };
        for (int l = L; l >= 1; l--) z->trace[z->ntrace++] = (trace_step){ l, ZF_GPT2_BACKWARD };
        if (gather_persistent(z) != 0) {
            *err = z->err;
            zf_zero_free(z);
            return NULL;
        }
    } else {
        z->params = params;
    }
    z->hooks = (zf_gpt2_hooks){ z, hook_fetch, hook_release, hook_grads_ready };
    return z;
}

void zf_zero_free(zf_zero *z)
{
    if (!z) return;
    zf_err e;
    for (int i = 0; i < z->bq_len; i++) {
        bucket *b = &z->bq[(z->bq_head + i) % z->bq_cap];
        zf_comm_wait(z->c, &b->req, &e);
    }
    free(z->bq);
    if (z->ureq) {
        for (int u = 0; u < z->p.n_units; u++) {
            for (int s = 0; s < z->p.units[u].nseg; s++) zf_comm_wait(z->c, &z->ureq[u][s], &e);
            free(z->ureq[u]);
        }
        free(z->ureq);
    }
    if (z->eff >= 2 && z->grads) munmap(z->grads, z->map_bytes);
    if (z->eff == 3 && z->params) munmap(z->params, z->map_bytes);
    free(z->ustate);
    free(z->trace);
    zf_zero_plan_free(&z->p);
    free(z);
}

float *zf_zero_work_params(zf_zero *z) { return z->params; }
float *zf_zero_work_grads(zf_zero *z) { return z->grads; }
const zf_gpt2_hooks *zf_zero_hooks(zf_zero *z) { return z->eff >= 2 ? &z->hooks : NULL; }

int zf_zero_zero_grads(zf_zero *z, zf_err *err)
{
    if (zf_zero_failed(z, err)) return -1;
    if (z->eff >= 2) {
        if (buckets_progress(z, 1) != 0) return zf_zero_failed(z, err), -1;
        memset(z->gpart, 0, z->p.own_n * sizeof(float));
    } else {
        memset(z->grads, 0, z->p.total * sizeof(float));
    }
    z->backward_started = 0;
    return 0;
}

float zf_zero_backward_scale(const zf_zero *z, float loss_scale, int ga)
{
    return loss_scale / (float)ga / (float)z->p.world;
}

int zf_zero_reduce(zf_zero *z, int *overflow, double *sumsq, zf_err *err)
{
    if (zf_zero_failed(z, err)) return -1;
    const float *own;
    if (z->eff >= 2) {
        if (flush_pending(z) != 0 || buckets_progress(z, 1) != 0) return zf_zero_failed(z, err), -1;
        own = z->gpart;
    } else {
        size_t bs = bucket_elems(z);
        for (size_t off = 0; off < z->p.total; off += bs) {
            size_t n = z->p.total - off < bs ? z->p.total - off : bs;
            if (zf_comm_allreduce_sum(z->c, z->grads + off, n, NULL, err) != 0) return -1;
            z->st.buckets++;
        }
        own = z->grads + z->p.own_off;
    }
    int ovf = zf_grads_have_overflow(own, z->p.own_n);
    double ss = ovf ? 0.0 : zf_sum_squares(own, z->p.own_n);
    if (zf_comm_allreduce_max_int(z->c, &ovf, 1, err) != 0 || zf_comm_allreduce_sum_f64(z->c, &ss, 1, err) != 0)
        return -1;
    *overflow = ovf;
    *sumsq = ss;
    return 0;
}

int zf_zero_params_updated(zf_zero *z, zf_err *err)
{
    if (zf_zero_failed(z, err)) return -1;
    if (z->eff == 1 || z->eff == 2) {
        size_t bs = z->o.allgather_bucket_size ? z->o.allgather_bucket_size : z->p.total;
        if (bs > (size_t)INT_MAX) bs = (size_t)INT_MAX;
        for (size_t off = 0; off < z->p.total; off += bs) {
            size_t n = z->p.total - off < bs ? z->p.total - off : bs, po, pn;
            zf_comm_range_part(z->c, z->c->rank, off, n, &po, &pn);
            if (zf_comm_allgather(z->c, z->params, off, n, z->params + (pn ? po : off), NULL, err) != 0) return -1;
        }
    } else if (z->eff == 3) {
        if (drop_all_units(z) != 0 || gather_persistent(z) != 0) return zf_zero_failed(z, err), -1;
    }
    return 0;
}

int zf_zero_gather_all(zf_zero *z, zf_err *err)
{
    if (zf_zero_failed(z, err)) return -1;
    if (z->eff < 3) return 0;
    for (int u = 0; u < z->p.n_units; u++) {
        if (z->ustate[u] == U_INFLIGHT && unit_wait(z, u) != 0) return zf_zero_failed(z, err), -1;
        if (z->ustate[u] == U_RELEASED && unit_gather(z, u, 0) != 0) return zf_zero_failed(z, err), -1;
    }
    return 0;
}

int zf_zero_release_all(zf_zero *z, zf_err *err)
{
    if (zf_zero_failed(z, err)) return -1;
    if (z->eff < 3) return 0;
    return drop_all_units(z) != 0 ? (zf_zero_failed(z, err), -1) : 0;
}

int zf_zero_mean(zf_zero *z, double *v, int n, zf_err *err)
{
    if (zf_comm_allreduce_sum_f64(z->c, v, n, err) != 0) return -1;
    for (int i = 0; i < n; i++) v[i] /= (double)z->p.world;
    return 0;
}

int zf_zero_failed(const zf_zero *z, zf_err *err)
{
    if (!z->failed) return 0;
    if (err) *err = z->err;
    return 1;
}

uint64_t zf_zero_transient_bytes(zf_zero *z)
{
    uint64_t t = 0;
    if (z->eff >= 2) t += resident_bytes(z->grads, z->map_bytes);
    if (z->eff == 3) t += resident_bytes(z->params, z->map_bytes);
    return t;
}

void zf_zero_get_stats(const zf_zero *z, zf_zero_stats *s) { *s = z->st; }
