/* zero_store.cu - ZeRO on the device for GPU ranks: the collectives'
 * stream (the model's, or its own with overlap_comm, ordered with the
 * model's by events) and the layer store that gpt2_cuda takes its layers
 * from at stages 2-3 (backend_cuda_impl.cuh):
 *   gradients: the layers in buckets of reduce_bucket_size elements, each
 *     written into one of two fp32 slots and reduced into the owners'
 *     own_grads when its backward ends, every micro-batch;
 *   parameters: stage 2 keeps the layers' compute copy whole and gathers
 *     each layer from the ranks' homes once per update, when first used;
 *     stage 3 keeps only the rank's slice (its home: on the device, or the
 *     host's with offload_param) and gathers each layer into a slot for its
 *     pass, up to stage3_prefetch_bucket_size elements ahead; a slot that
 *     still holds its layer at the current version is not gathered again;
 *   pipelined offload: each part of the home is read from offloadd's master
 *     as its update passes it.
 * Also the collectives' GPU time (comm_s). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda_impl.cuh"

/* ------------------------------------------------------- timing */

/* The collectives' time: a pair of events on cs around each (best effort:
 * -1, nothing recorded, when the step's pairs are used up). */
int zs_comm_begin(cuda_impl *c)
{
    if (!c->comm_ev && !(c->comm_ev = (ev_pair *)calloc(COMM_EV_MAX, sizeof *c->comm_ev))) return -1;
    if (c->ncomm_used == COMM_EV_MAX) return -1;
    return ev_pair_start(c->comm_ev, c->ncomm_used, &c->ncomm_made, c->cs) == 0 ? c->ncomm_used : -1;
}

void zs_comm_end(cuda_impl *c, int i)
{
    if (i < 0) return;
    if (cudaEventRecord(c->comm_ev[i].b, c->cs) == cudaSuccess) c->ncomm_used = i + 1;
    cudaGetLastError();
}

double zs_comm_fold(cuda_impl *c)
{
    double s = 0.0;
    if (ev_pairs_wait(c->comm_ev, c->ncomm_used))
        for (int i = 0; i < c->ncomm_used; i++) s += ev_pair_ms(&c->comm_ev[i]) * 1e-3;
    c->ncomm_used = 0;
    return s;
}

/* ------------------------------------------------ the collectives' stream */

/* cs waits for everything queued on the model's stream so far. */
int zs_comm_after_model(cuda_impl *c, zf_err *err)
{
    cudaStream_t s = zf_gpt2c_stream(c->model);
    if (c->cs == s) return 0;
    CKE(cudaEventRecord(c->ev_join, s));
    CKE(cudaStreamWaitEvent(c->cs, c->ev_join, 0));
    return 0;
}

/* The model's stream waits for everything queued on cs so far. */
int zs_model_after_comm(cuda_impl *c, zf_err *err)
{
    cudaStream_t s = zf_gpt2c_stream(c->model);
    if (c->cs == s) return 0;
    CKE(cudaEventRecord(c->ev_join, c->cs));
    CKE(cudaStreamWaitEvent(s, c->ev_join, 0));
    return 0;
}

/* ----------------------------------------------------- the layer store */

/* The rank's part of [lo, hi) from the host's fp32 copy into a device
 * buffer of type dt whose element 0 is flat element origin, through the
 * staging buffer in chunks of its size, on cs.  The host copy: offloadd's
 * master once its update has passed the part (pipelined: up_ready), else
 * "params", which it wrote; both hold the rank's slice (the shard). */
static int own_part_up(cuda_impl *c, void *dst, size_t origin, size_t lo, size_t hi, zf_err *err)
{
    size_t a, part_n;
    zf_comm_part(c->total, c->comm->size, c->comm->rank, lo, hi - lo, &a, &part_n);
    if (!part_n) return 0;
    const size_t e = a + part_n;
    if (c->up_ready && c->up_ready(c->up_ctx, e - c->own_off) != 0)
        return zf_err_set(err, "backend_cuda: waiting for offloadd's update of [%zu, %zu)", a, e);
    const float *src = c->up_src ? c->up_src : c->params + (c->own_off - c->params_base);
    for (size_t k = a; k < e; k += c->staging_n) {
        const size_t n = e - k < c->staging_n ? e - k : c->staging_n;
        CKE(cudaMemcpyAsync(c->staging, src + (k - c->own_off), n * sizeof(float), cudaMemcpyHostToDevice, c->cs));
        if (zf_gk_convert(c->gk_cs, (char *)dst + (k - origin) * zf_gpu_dtype_size(c->dt), c->dt, c->staging, ZF_GPU_F32,
                          n))
            return zf_err_set(err, "backend_cuda: parameters from the host: %s", zf_gk_error(c->gk_cs));
    }
    return 0;
}

/* Unit u's range [lo, hi) (u < L: layer u; L: the embeddings, L + 1: ln_f)
 * gathered into dst (holding the range) on cs: every rank's part from its
 * device home or, with offload_param, from its host slice.  Pipelined
 * offload with a device home: the home's part of the unit is first
 * refreshed from offloadd's master, once per update (home_ver). */
static int gather_unit(cuda_impl *c, int u, void *dst, size_t lo, size_t hi, zf_err *err)
{
    const int t = zs_comm_begin(c);
    int rc = 0;
    if (c->poff) {
        rc = own_part_up(c, dst, lo, lo, hi, err);
    } else if (c->up_ready && c->home_ver[u] != c->pver) {
        rc = own_part_up(c, c->home, c->own_off, lo, hi, err);
        if (!rc) c->home_ver[u] = c->pver;
    }
    if (!rc) rc = zf_nccl_gather_range(c->nccl, dst, lo, hi, c->poff ? NULL : c->home, c->dt, c->cs, err);
    zs_comm_end(c, t);
    return rc;
}

/* Part 0 (the embeddings, [0, lay_lo)) or 1 (ln_f, [lay_hi, total)) of
 * what the model keeps whole: its flat range, and where it starts in the
 * model's flat buffers (the second follows the first there). */
void zs_kept_part(const cuda_impl *c, int part, size_t *lo, size_t *hi, size_t *at)
{
    *lo = part ? c->lay_hi : 0;
    *hi = part ? c->total : c->lay_lo;
    *at = part ? c->lay_lo : 0;
}

/* One kept part gathered into the model on cs, cs ordered after the
 * model's work so far and the model after it. */
int zs_gather_kept(cuda_impl *c, int part, zf_err *err)
{
    size_t lo, hi, at;
    zs_kept_part(c, part, &lo, &hi, &at);
    char *p = (char *)zf_gpt2c_params_dev(c->model) + at * zf_gpu_dtype_size(c->dt);
    const int L = zf_gpt2c_get_config(c->model)->n_layer;
    if (zs_comm_after_model(c, err) != 0 || gather_unit(c, L + part, p, lo, hi, err) != 0) return -1;
    c->kept_stale[part] = 0;
    return zs_model_after_comm(c, err);
}

/* Layer l's parameters for a pass, on cs unless current: stage 3 into its
 * slot (l % nslots), after the slot's last reader; stage 2 into its place
 * in the whole copy, once per update.  Without prefetch the gather also
 * waits for all the model's work so far.  The model waits for
 * ev_pready[l % nslots]. */
static int layer_gather(cuda_impl *c, int l, zf_err *err)
{
    const int k = l % c->nslots;
    if (c->s3 ? c->slot_layer[k] == l && c->slot_ver[k] == c->pver : c->lay_ver[l] == c->pver) return 0;
    size_t lo, hi;
    zf_gpt2c_layer_range(c->model, l, &lo, &hi);
    void *dst = c->s3 ? c->pslot[k] : (char *)c->lay_params + (lo - c->lay_lo) * zf_gpu_dtype_size(c->dt);
    if (c->s3) {
        c->slot_layer[k] = -1;
        CKE(cudaStreamWaitEvent(c->cs, c->ev_pfree[k], 0));
    }
    if (!c->prefetch && zs_comm_after_model(c, err) != 0) return -1;
    if (gather_unit(c, l, dst, lo, hi, err) != 0) return -1;
    CKE(cudaEventRecord(c->ev_pready[k], c->cs));
    if (c->s3) {
        c->slot_layer[k] = l;
        c->slot_ver[k] = c->pver;
    } else {
        c->lay_ver[l] = c->pver;
    }
    return 0;
}

/* The layer store (gpt2_cuda.cuh).  fetch: the layer's parameters (gathered
 * if not current, waited for) and, in backward, the layer's place in its
 * bucket's gradient slot, zeroed when the bucket starts (after the slot's
 * previous reduction). */
static int store_fetch(void *ctx, int l, int phase, void **params, float **grads, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)ctx;
    size_t lo, hi;
    zf_gpt2c_layer_range(c->model, l, &lo, &hi);
    cudaStream_t s = zf_gpt2c_stream(c->model);
    if (layer_gather(c, l, err) != 0) return -1;
    CKE(cudaStreamWaitEvent(s, c->ev_pready[l % c->nslots], 0));
    *params = c->s3 ? c->pslot[l % c->nslots] : (char *)c->lay_params + (lo - c->lay_lo) * zf_gpu_dtype_size(c->dt);
    if (phase == 1) {
        const int b = c->bk_of[l], k = b % c->ngs;
        if (l == c->bk_top[b]) {
            CKE(cudaStreamWaitEvent(s, c->ev_gfree[k], 0));
            CKE(cudaMemsetAsync(c->gslot[k], 0, (c->bk[b][1] - c->bk[b][0]) * sizeof(float), s));
        }
        *grads = c->gslot[k] + (lo - c->bk[b][0]);
    }
    return 0;
}

/* done: the slot's reader is queued; with prefetch the pass's next depth
 * layers are gathered now (those not yet there: the farthest goes into the
 * slot the layer before this one freed), ahead of the bucket's reduction on
 * cs, so that the next layers' compute does not wait behind it; a bucket
 * whose backward is complete is reduced into the owners on cs. */
static int store_done(void *ctx, int l, int phase, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)ctx;
    cudaStream_t s = zf_gpt2c_stream(c->model);
    if (c->s3) CKE(cudaEventRecord(c->ev_pfree[l % c->nslots], s));
    const int L = zf_gpt2c_get_config(c->model)->n_layer;
    for (int j = 1; c->prefetch && j <= c->depth; j++) {
        const int next = phase == 0 ? l + j : l - j;
        if (next < 0 || next >= L) break;
        if (layer_gather(c, next, err) != 0) return -1;
    }
    if (phase == 0) return 0;
    const int b = c->bk_of[l], k = b % c->ngs;
    if (l != c->bk_bot[b]) return 0;
    CKE(cudaEventRecord(c->ev_gready[k], s));
    CKE(cudaStreamWaitEvent(c->cs, c->ev_gready[k], 0));
    const int t = zs_comm_begin(c);
    const int rc = zf_nccl_reduce_range_add(c->nccl, c->gslot[k], c->bk[b][0], c->bk[b][1], c->own_grads, c->cs, err);
    zs_comm_end(c, t);
    if (rc != 0) return -1;
    CKE(cudaEventRecord(c->ev_gfree[k], c->cs));
    return 0;
}

/* The forward is about to read the embeddings (part 0) or ln_f (1): after a
 * pipelined update they are gathered here, as the update passes them. */
static int store_kept(void *ctx, int part, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)ctx;
    return c->kept_stale[part] ? zs_gather_kept(c, part, err) : 0;
}

zf_gpt2c_layer_store zs_layer_store(cuda_impl *c)
{
    zf_gpt2c_layer_store st = {c, store_fetch, store_done, store_kept};
    return st;
}

/* The collectives' stream and the events that order it with the model's. */
int zs_comm_setup(cuda_impl *c, const zf_zero_options *zo, zf_err *err)
{
    c->overlap = zo && zo->overlap_comm;
    /* stage 2 gathers each layer once after an update, stage 3 for each pass */
    c->prefetch = c->overlap && (!c->s3 || zo->prefetch_bucket_size > 0);
    cudaEvent_t *ev[5 + 2 * ZS_MAX] = {&c->ev_join, &c->ev_gready[0], &c->ev_gready[1], &c->ev_gfree[0], &c->ev_gfree[1]};
    for (int i = 0; i < ZS_MAX; i++) {
        ev[5 + 2 * i] = &c->ev_pfree[i];
        ev[6 + 2 * i] = &c->ev_pready[i];
    }
    for (; c->events_made < 5 + 2 * ZS_MAX; c->events_made++)
        CKE(cudaEventCreateWithFlags(ev[c->events_made], cudaEventDisableTiming));
    c->cs = zf_gpt2c_stream(c->model);
    c->gk_cs = zf_gpt2c_gk(c->model);
    if (!c->overlap) return 0;
    c->cs = NULL;
    c->gk_cs = NULL;
    CKE(cudaStreamCreateWithFlags(&c->cs, cudaStreamNonBlocking));
    if (!(c->gk_cs = zf_gk_create(c->cs, NULL, 0, err))) return -1;
    return 0;
}

/* Gradient buckets over the layers, from the highest (the backward's
 * order): a bucket takes the next layer while its span stays within
 * reduce_bucket_size elements (0: no bound), and always one. */
static int make_buckets(cuda_impl *c, const zf_zero_options *zo, zf_err *err)
{
    const int L = zf_gpt2c_get_config(c->model)->n_layer;
    const size_t cap = zo && zo->reduce_bucket_size ? zo->reduce_bucket_size : (size_t)-1;
    c->bk_of = (int *)malloc((size_t)L * 3 * sizeof(int));
    c->bk = (size_t(*)[2])malloc((size_t)L * sizeof *c->bk);
    if (!c->bk_of || !c->bk) return zf_err_set(err, "backend_cuda: out of host memory");
    c->bk_top = c->bk_of + L;
    c->bk_bot = c->bk_top + L;
    int b = -1;
    c->gslot_n = 0;
    for (int l = L - 1; l >= 0; l--) {
        size_t lo, hi;
        zf_gpt2c_layer_range(c->model, l, &lo, &hi);
        if (b < 0 || c->bk[b][1] - lo > cap) {
            b++;
            c->bk[b][1] = hi;
            c->bk_top[b] = l;
        }
        c->bk[b][0] = lo;
        c->bk_bot[b] = l;
        c->bk_of[l] = b;
        if (c->bk[b][1] - lo > c->gslot_n) c->gslot_n = c->bk[b][1] - lo;
    }
    c->nbk = b + 1;
    c->ngs = c->nbk > 1 ? 2 : 1; /* one bucket: its reduction overlaps the next forward only */
    return 0;
}

/* Stages 2-3: the buckets and one allocation for the home, own_grads, the
 * layers' whole copy (stage 2) or two layer slots (stage 3), the gradient
 * slots and the staging buffer (parameters from the host). */
int zs_alloc(cuda_impl *c, const zf_zero_options *zo, zf_err *err)
{
    const zf_gpt2_config *cfg = zf_gpt2c_get_config(c->model);
    const size_t es = zf_gpu_dtype_size(c->dt);
    size_t slot = 0;
    for (int l = 0; l < cfg->n_layer; l++) {
        size_t lo, hi;
        zf_gpt2c_layer_range(c->model, l, &lo, &hi);
        if (hi - lo > slot) slot = hi - lo;
    }
    zf_gpt2c_layers_span(c->model, &c->lay_lo, &c->lay_hi);
    c->slot_n = slot;
    /* stage 3 gathers up to stage3_prefetch_bucket_size elements ahead (at
     * least one layer, within stage3_max_live_parameters with the layer in
     * use, and ZS_MAX slots); stage 2 the next layer */
    c->nslots = 2;
    c->depth = c->prefetch ? 1 : 0;
    if (c->s3 && c->prefetch) {
        size_t d = (zo->prefetch_bucket_size + slot - 1) / slot;
        if (zo->max_live_parameters && zo->max_live_parameters / slot - 1 < d) d = zo->max_live_parameters / slot - 1;
        if (d > (size_t)(ZS_MAX - 1)) d = ZS_MAX - 1;
        if (d > (size_t)(cfg->n_layer - 1)) d = (size_t)(cfg->n_layer - 1);
        c->depth = d < 1 ? 1 : (int)d;
        c->nslots = c->depth + 1;
    }
    for (int k = 0; k < ZS_MAX; k++) c->slot_layer[k] = -1;
    if (make_buckets(c, zo, err) != 0) return -1;
    c->lay_ver = (unsigned long *)calloc((size_t)cfg->n_layer + 2, sizeof *c->lay_ver);
    c->home_ver = (unsigned long *)calloc((size_t)cfg->n_layer + 2, sizeof *c->home_ver);
    if (!c->lay_ver || !c->home_ver) return zf_err_set(err, "backend_cuda: out of host memory");
    c->staging_n = slot < ((size_t)1 << 22) ? slot : ((size_t)1 << 22);
    const size_t a = 256;
#define RUP(x) (((x) + a - 1) / a * a)
    const size_t home_b = c->poff ? 0 : RUP(c->own_n * es), og_b = RUP(c->own_n * 4),
                 lay_b = c->s3 ? 0 : RUP((c->lay_hi - c->lay_lo) * es), ps_b = c->s3 ? RUP(slot * es) : 0,
                 gs_b = RUP(c->gslot_n * 4), st_b = RUP(c->staging_n * 4);
#undef RUP
    c->zmem_bytes = home_b + og_b + lay_b + (size_t)c->nslots * ps_b + (size_t)c->ngs * gs_b + st_b;
    cudaError_t e = cudaMalloc(&c->zmem, c->zmem_bytes);
    if (e != cudaSuccess)
        return zf_err_set(err, "backend_cuda: ZeRO stage %d buffers: %zu bytes of device memory: %s", c->stage,
                          c->zmem_bytes, cudaGetErrorString(e));
    char *p = (char *)c->zmem;
    c->home = c->poff ? NULL : p;
    p += home_b;
    c->own_grads = (float *)p;
    p += og_b;
    c->lay_params = c->s3 ? NULL : p;
    p += lay_b;
    for (int k = 0; k < c->nslots; k++) c->pslot[k] = c->s3 ? p + (size_t)k * ps_b : NULL;
    p += (size_t)c->nslots * ps_b;
    c->gslot[0] = (float *)p;
    c->gslot[1] = c->ngs > 1 ? (float *)(p + gs_b) : NULL;
    p += (size_t)c->ngs * gs_b;
    c->staging = (float *)p;
    CKE(cudaMemset(c->zmem, 0, c->zmem_bytes));
    return 0;
}

void zs_free(cuda_impl *c)
{
    if (c->comm_ev) ev_pairs_destroy(c->comm_ev, c->ncomm_made);
    free(c->comm_ev);
    if (c->zmem) cudaFree(c->zmem);
    free(c->bk_of);
    free(c->bk);
    free(c->lay_ver);
    free(c->home_ver);
    cudaEvent_t zev[5 + 2 * ZS_MAX] = {c->ev_join, c->ev_gready[0], c->ev_gready[1], c->ev_gfree[0], c->ev_gfree[1]};
    for (int i = 0; i < ZS_MAX; i++) {
        zev[5 + 2 * i] = c->ev_pfree[i];
        zev[6 + 2 * i] = c->ev_pready[i];
    }
    for (int i = 0; i < c->events_made; i++) cudaEventDestroy(zev[i]);
    if (c->overlap && c->gk_cs) zf_gk_free(c->gk_cs); /* overlap_comm: cs and gk_cs are this file's */
    if (c->overlap && c->cs) cudaStreamDestroy(c->cs);
}
