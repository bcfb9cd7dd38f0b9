/* backend_cuda.cu - see backend_cuda.cuh and backend.h.
 *
 * The shared-memory parameters and gradients are registered as pinned host
 * memory, so the copies (gradients down, parameters up) run at full
 * PCIe/NVLink-C2C speed.
 *
 * With a device optimizer (spec->ds set) the fp32 master weights and both
 * AdamW moments live on the GPU next to the gradients: one step is
 * grad_stats (two scalars to the host) and one AdamW launch over the layout
 * rows that also rewrites the compute copy, the same arithmetic as
 * offloadd's (lib/adamw.h, bit for bit).  offloadd's master/m/v segments stay
 * the state's host home: read once at creation (initial or resumed state),
 * written before each checkpoint.
 *
 * Phase times: a pair of CUDA events around each phase's work, read once per
 * step (phase_times), so timing adds no synchronisation inside the step.
 *
 * ZeRO on the device (spec->comm: GPU ranks, one GPU at stage 3 with
 * offload_param, or ZF_GPU_ZERO_ONE_RANK): at stages 0-1 the device
 * gradients are reduced over NCCL (nccl_comm.cuh) when grad_stats is
 * asked; the statistics are taken over the rank's slice and combined on the
 * host engine; the optimizer (device or offloadd) updates the rank's shard
 * only, and the compute copies are then all-gathered (stage 1).  At stages
 * 2-3 the model takes its layers from the layer store of zero_store.cu
 * (gradients reduced in buckets during backward, parameters gathered as
 * they are used); this file reduces the embeddings' and ln_f's gradients at
 * the step's end and gathers them after each update.  The host "params"
 * lag behind: params_to_host gathers the fp32 masters (a collective). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda_impl.cuh"

extern "C" {
#include "rng.h"
#include "shard_optimizer.h"
}

/* ---------------------------------------------------------------- timing */

static void add_ms(zf_phase_times *t, int phase, float ms)
{
    const double s = (double)ms * 1e-3;
    if (phase == PH_FWD) t->forward_s += s;
    else if (phase == PH_BWD) t->backward_s += s;
    else if (phase == PH_OPT) t->optimizer_s += s;
    else t->transfer_s += s;
}

/* Wait for the recorded pairs and add their times to t. */
static void fold(cuda_impl *c, zf_phase_times *t)
{
    if (ev_pairs_wait(c->ev, c->nev_used))
        for (int i = 0; i < c->nev_used; i++) add_ms(t, c->ev[i].phase, ev_pair_ms(&c->ev[i]));
    c->nev_used = 0;
}

static void ph_begin(cuda_impl *c, int phase)
{
    if (c->nev_used == EV_MAX) fold(c, &c->acc);
    c->ev[c->nev_used].phase = phase;
    c->open = ev_pair_start(c->ev, c->nev_used, &c->nev_made, zf_gpt2c_stream(c->model)) == 0;
}

static void ph_end(cuda_impl *c)
{
    if (!c->open) return;
    c->open = 0;
    if (cudaEventRecord(c->ev[c->nev_used].b, zf_gpt2c_stream(c->model)) == cudaSuccess) c->nev_used++;
    cudaGetLastError();
}

static void cu_phase_times(zf_backend *b, zf_phase_times *t)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    fold(c, &c->acc);
    t->forward_s += c->acc.forward_s;
    t->backward_s += c->acc.backward_s;
    t->optimizer_s += c->acc.optimizer_s;
    t->transfer_s += c->acc.transfer_s;
    memset(&c->acc, 0, sizeof c->acc);
    t->comm_s += zs_comm_fold(c);
}

/* ----------------------------------------------------------- the model */

static float cu_forward(zf_backend *b, const int32_t *tokens, const int32_t *targets, int B, int T, int training,
                        uint64_t seed, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    /* ranks must not share masks: each mixes its rank into the key (a one-rank
     * run with the same global batch therefore draws other masks; the CPU
     * ranks' global-row masks are not mirrored here) */
    if (c->nccl) seed = zf_hash3(seed, (uint64_t)c->rank, 0x72616e6bu);
    if (training) ph_begin(c, PH_FWD); /* evaluation is not a step phase */
    float loss = zf_gpt2c_forward(c->model, tokens, targets, B, T, training, seed);
    if (training) ph_end(c);
    if (isnan(loss)) zf_err_set(err, "GPU forward failed: %s", zf_gpt2c_error(c->model));
    return loss;
}

static int cu_target_count(zf_backend *b) { return zf_gpt2c_target_count(((cuda_impl *)b->impl)->model); }
static int cu_zero_grads(zf_backend *b, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    c->nb = 0;
    if (c->store) CKE(cudaMemsetAsync(c->own_grads, 0, c->own_n * sizeof(float), zf_gpt2c_stream(c->model)));
    return zf_gpt2c_zero_grads(c->model, err);
}
static int cu_backward(zf_backend *b, float scale, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    /* optimizer offloaded: the last micro-batch's backward streams each
     * layer's finished gradients to the host while the next layers compute */
    if (!c->has_opt && !c->nccl && c->grads_pinned && c->ga > 0 && ++c->nb == c->ga) {
        zf_err e2;
        if (zf_gpt2c_stream_grads_next(c->model, c->grads, &e2) != 0) c->ga = 0; /* not this layout: plain copies */
    }
    ph_begin(c, PH_BWD);
    int rc = zf_gpt2c_backward(c->model, scale, err);
    ph_end(c);
    return rc;
}
static int cu_grads_to_host(zf_backend *b, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    ph_begin(c, PH_XFER);
    int rc;
    if (c->nccl) { /* the reduced gradients of the optimizer's shard, into the kept buffer */
        cudaStream_t s = zf_gpt2c_stream(c->model);
        const float *src = c->store ? c->own_grads : zf_gpt2c_grads_dev(c->model) + c->opt_off;
        CKE(cudaMemcpyAsync(c->grads + (c->opt_off - c->grads_base), src, c->opt_n * sizeof(float),
                            cudaMemcpyDeviceToHost, s));
        CKE(cudaStreamSynchronize(s));
        rc = 0;
    } else {
        rc = zf_gpt2c_get_grads(c->model, c->grads, err);
    }
    ph_end(c);
    return rc;
}

/* After the shards were updated: stage 1 gathers every rank's slice of
 * the compute copy into every rank's; stages 2-3 only what the model keeps
 * whole, the layers when they are used (cs is ordered after the update
 * here, so those gathers come after it too). */
static int gather_compute_copy(cuda_impl *c, zf_err *err)
{
    if (!c->nccl || c->stage == 0) return 0;
    ph_begin(c, PH_XFER);
    int rc;
    if (c->store) {
        rc = zs_gather_kept(c, 0, err);
        if (!rc) rc = zs_gather_kept(c, 1, err);
    } else {
        rc = zs_comm_after_model(c, err);
        const int t = zs_comm_begin(c);
        if (!rc) rc = zf_nccl_allgather(c->nccl, zf_gpt2c_params_dev(c->model), c->dt, c->cs, err);
        zs_comm_end(c, t);
        if (!rc) rc = zs_model_after_comm(c, err);
    }
    ph_end(c);
    return rc;
}

static int cu_params_from_host(zf_backend *b, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    ph_begin(c, PH_XFER);
    int rc = 0;
    c->pver++; /* what the slots hold is old; the home is current (written below) */
    if (c->home_ver) {
        const int L = zf_gpt2c_get_config(c->model)->n_layer;
        for (int u = 0; u < L + 2; u++) c->home_ver[u] = c->pver;
    }
    if (c->poff) {
        /* the host slice is the home: nothing to upload */
    } else if (c->store) { /* the host slice into the home, through own_grads (consumed by now) as fp32 staging */
        cudaStream_t s = zf_gpt2c_stream(c->model);
        zf_gk *gk = zf_gpt2c_gk(c->model);
        CKE(cudaMemcpyAsync(c->own_grads, c->params + (c->own_off - c->params_base), c->own_n * sizeof(float),
                            cudaMemcpyHostToDevice, s));
        if (zf_gk_convert(gk, c->home, c->dt, c->own_grads, ZF_GPU_F32, c->own_n))
            rc = zf_err_set(err, "backend_cuda: parameters from the host: %s", zf_gk_error(gk));
    } else if (c->nccl) { /* ranks: offloadd wrote the shard only */
        rc = zf_gpt2c_set_params_range(c->model, c->params, c->opt_off, c->opt_n, err);
    } else {
        rc = zf_gpt2c_set_params(c->model, c->params, err);
    }
    ph_end(c);
    return rc ? rc : gather_compute_copy(c, err);
}

/* GPU ranks: the gradients reduced into their owners over NCCL, then one
 * decision for all: the non-finite flag is a max and the squared norm a sum
 * over each rank's slice (at stage 0 every rank holds the whole sum and
 * still counts its slice only).  With the optimizer offloaded the shard's
 * gradients go to the host here (offloadd's input). */
static int cu_zero_grad_stats(zf_backend *b, int *overflow, double *sumsq, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    float *g = zf_gpt2c_grads_dev(c->model);
    ph_begin(c, PH_XFER);
    int rc = zs_comm_after_model(c, err);
    const int t = zs_comm_begin(c);
    if (rc) {
    } else if (c->store) { /* the layers are in own_grads already; the embeddings' and ln_f's join them */
        for (int part = 0; part < 2 && !rc; part++) {
            size_t lo, hi, at;
            zs_kept_part(c, part, &lo, &hi, &at);
            rc = zf_nccl_reduce_range_add(c->nccl, g + at, lo, hi, c->own_grads, c->cs, err);
        }
    } else {
        rc = c->stage == 0 ? zf_nccl_allreduce(c->nccl, g, c->cs, err) : zf_nccl_reduce_scatter(c->nccl, g, c->cs, err);
    }
    zs_comm_end(c, t);
    if (!rc) rc = zs_model_after_comm(c, err);
    ph_end(c);
    if (rc) return -1;
    double ss = 0.0;
    long long bad = 0;
    if (c->own_n) {
        zf_gk *gk = zf_gpt2c_gk(c->model);
        ph_begin(c, PH_OPT);
        rc = zf_gk_grad_stats(gk, c->store ? c->own_grads : g + c->own_off, c->own_n, &ss, &bad);
        ph_end(c);
        if (rc) return zf_err_set(err, "backend_cuda: gradient statistics: %s", zf_gk_error(gk));
    }
    int flag = bad > 0;
    if (zf_comm_allreduce_max_int(c->comm, &flag, 1, err) != 0 || zf_comm_allreduce_sum_f64(c->comm, &ss, 1, err) != 0)
        return -1;
    *overflow = flag;
    *sumsq = ss;
    return c->has_opt ? 0 : cu_grads_to_host(b, err);
}
/* zf_sum_squares's recipe on the GPU: one CUDA block per sum block, thread
 * j = lane j adding (double)x * x of elements j, j + 16, ... in order (the
 * product of two doubles from floats is exact, so fused or not it is the
 * host's addition).  Loads run 32 ahead of the additions. */
static __global__ void sumsq_exact_k(const float *g, size_t n, size_t bs, double *lanes, unsigned long long *bad)
{
    const size_t a = (size_t)blockIdx.x * bs;
    const size_t e = a + bs < n ? a + bs : n;
    const int j = threadIdx.x;
    double acc = 0.0;
    unsigned long long nb = 0;
    size_t k = a + j;
    for (; k + 31 * 16 < e; k += 32 * 16) {
        float x[32];
#pragma unroll
        for (int u = 0; u < 32; u++) x[u] = __ldg(g + k + (size_t)u * 16);
#pragma unroll
        for (int u = 0; u < 32; u++) {
            nb += (__float_as_uint(x[u]) & 0x7f800000u) == 0x7f800000u;
            acc += (double)x[u] * (double)x[u];
        }
    }
    for (; k < e; k += 16) {
        const float x = g[k];
        nb += (__float_as_uint(x) & 0x7f800000u) == 0x7f800000u;
        acc += (double)x * (double)x;
    }
    lanes[(size_t)blockIdx.x * ZF_SUMSQ_LANES + j] = acc;
    if (nb) atomicAdd(bad, nb);
}

static int cu_grad_stats_exact(zf_backend *b, int *overflow, double *sumsq, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    const size_t words = ZF_SUMSQ_MAX_BLOCKS * ZF_SUMSQ_LANES + 1;
    if (!c->ss_dev) {
        CKE(cudaMalloc(&c->ss_dev, words * sizeof(double)));
        CKE(cudaMallocHost(&c->ss_host, words * sizeof(double)));
    }
    size_t bs, nb;
    zf_sum_squares_plan(c->total, &bs, &nb);
    cudaStream_t s = zf_gpt2c_stream(c->model);
    unsigned long long *bad = (unsigned long long *)(c->ss_dev + words - 1);
    ph_begin(c, PH_OPT);
    CKE(cudaMemsetAsync(bad, 0, sizeof *bad, s));
    sumsq_exact_k<<<(unsigned)nb, ZF_SUMSQ_LANES, 0, s>>>(zf_gpt2c_grads_dev(c->model), c->total, bs, c->ss_dev, bad);
    CKE(cudaGetLastError());
    CKE(cudaMemcpyAsync(c->ss_host, c->ss_dev, nb * ZF_SUMSQ_LANES * sizeof(double), cudaMemcpyDeviceToHost, s));
    CKE(cudaMemcpyAsync(c->ss_host + words - 1, bad, sizeof *bad, cudaMemcpyDeviceToHost, s));
    ph_end(c);
    CKE(cudaStreamSynchronize(s));
    unsigned long long nbad;
    memcpy(&nbad, c->ss_host + words - 1, sizeof nbad);
    double total = 0.0;
    for (size_t k = 0; k < nb; k++) {
        double sb = 0.0;
        for (int j = 0; j < ZF_SUMSQ_LANES; j++) sb += c->ss_host[k * ZF_SUMSQ_LANES + j];
        total += sb;
    }
    *overflow = nbad > 0;
    *sumsq = total;
    return 0;
}

/* Optimizer offloaded, pipelined: the next forward uploads per range as
 * offloadd announces it (zf_gpt2c_upload_params_next); the source is pinned
 * once so the copies run asynchronously at full speed. */
static int cu_upload_params_next(zf_backend *b, const float *src, int (*ready)(void *, size_t), void *ctx, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    if (src && src != c->up_src) {
        if (c->up_pinned) cudaHostUnregister((void *)c->up_src);
        /* offloadd may keep the master in "params" (offload_server.h), pinned already */
        const int in_params = src >= c->params && src + c->opt_n <= c->params + c->params_bytes / sizeof(float);
        c->up_pinned = !(in_params && c->params_pinned) &&
                       cudaHostRegister((void *)src, c->opt_n * sizeof(float), cudaHostRegisterDefault) == cudaSuccess;
        cudaGetLastError(); /* not pinned: the copies still work, slower */
        c->up_src = src;
    }
    if (c->store) { /* the layers are gathered as they are used: each waits for its part of the shard */
        if (!src) return zf_err_set(err, "backend_cuda: pipelined upload: expected offloadd's master shard");
        /* the gathers of the next forward come after this step's readers */
        if (zs_comm_after_model(c, err) != 0) return -1;
        c->up_ready = ready;
        c->up_ctx = ctx;
        c->kept_stale[0] = c->kept_stale[1] = 1;
        c->pver++;
        return 0;
    }
    return zf_gpt2c_upload_params_next(c->model, src, ready, ctx, err);
}
static int cu_poison_grads(zf_backend *b, zf_err *err)
{
    return zf_gpt2c_poison_grads(((cuda_impl *)b->impl)->model, err);
}

/* ----------------------------------------------------- device optimizer */

static int cu_grad_stats(zf_backend *b, int *overflow, double *sumsq, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    zf_gk *gk = zf_gpt2c_gk(c->model);
    long long bad = 0;
    ph_begin(c, PH_OPT);
    int rc = zf_gk_grad_stats(gk, zf_gpt2c_grads_dev(c->model), c->total, sumsq, &bad);
    ph_end(c);
    if (rc) return zf_err_set(err, "backend_cuda: gradient statistics: %s", zf_gk_error(gk));
    *overflow = bad > 0;
    return 0;
}

static int cu_optimizer_step(zf_backend *b, long step, float grad_scale, double *lr, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    zf_gk *gk = zf_gpt2c_gk(c->model);
    zf_adamw_hparams h = c->hp;
    h.lr = zf_lr_at(&c->sched, step); /* as offloadd's zf_shard_opt_step */
    /* the shard [opt_off, opt_off + opt_n): rows relative to it (opt_init) */
    void *lp = c->store ? c->home : (char *)zf_gpt2c_params_dev(c->model) + c->opt_off * zf_gpu_dtype_size(c->dt);
    const float *gr = c->store ? c->own_grads : zf_gpt2c_grads_dev(c->model) + c->opt_off;
    ph_begin(c, PH_OPT);
    int rc = zf_gk_adamw_rows(gk, c->master, gr, c->m, c->v, lp, c->dt, c->rows, c->nrows, &h, (int64_t)step,
                              grad_scale);
    ph_end(c);
    if (rc) return zf_err_set(err, "backend_cuda: AdamW step %ld: %s", step, zf_gk_error(gk));
    c->pver++;
    *lr = h.lr;
    return gather_compute_copy(c, err);
}

static int cu_params_to_host(zf_backend *b, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    cudaStream_t s = zf_gpt2c_stream(c->model);
    /* between steps (generation, checkpoints, export): not timed */
    if (c->opt_n == c->total || c->s3) { /* stage 3: the host keeps the slice only */
        CKE(cudaMemcpyAsync(c->params, c->master, c->opt_n * sizeof(float), cudaMemcpyDeviceToHost, s));
        CKE(cudaStreamSynchronize(s));
        return 0;
    }
    /* ranks' shards: the fp32 masters gathered in a buffer of the collective's size */
    float *all = NULL;
    CKE(cudaMalloc(&all, zf_nccl_capacity(c->nccl) * sizeof(float)));
    int rc = 0;
    cudaError_t e = cudaMemcpyAsync(all + c->opt_off, c->master, c->opt_n * sizeof(float), cudaMemcpyDeviceToDevice, s);
    if (e != cudaSuccess) rc = zf_err_set(err, "backend_cuda: params_to_host: %s", cudaGetErrorString(e));
    if (!rc) rc = zs_comm_after_model(c, err);
    if (!rc) rc = zf_nccl_allgather(c->nccl, all, ZF_GPU_F32, c->cs, err);
    if (!rc) rc = zs_model_after_comm(c, err);
    if (!rc && (e = cudaMemcpyAsync(c->params, all, c->bytes, cudaMemcpyDeviceToHost, s)) == cudaSuccess)
        e = cudaStreamSynchronize(s);
    if (!rc && e != cudaSuccess) rc = zf_err_set(err, "backend_cuda: params_to_host: %s", cudaGetErrorString(e));
    cudaFree(all);
    return rc;
}

static int cu_opt_to_host(zf_backend *b, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    cudaStream_t s = zf_gpt2c_stream(c->model);
    const size_t sb = c->opt_n * sizeof(float);
    CKE(cudaMemcpyAsync(c->h_master, c->master, sb, cudaMemcpyDeviceToHost, s));
    CKE(cudaMemcpyAsync(c->h_m, c->m, sb, cudaMemcpyDeviceToHost, s));
    CKE(cudaMemcpyAsync(c->h_v, c->v, sb, cudaMemcpyDeviceToHost, s));
    CKE(cudaStreamSynchronize(s));
    if (c->h_master == c->params) return 0; /* offloadd keeps the master in "params": written above */
    return cu_params_to_host(b, err);
}

/* Upload the optimizer state of the shard [opt_off, opt_off + opt_n) from
 * its host home; the shard's compute copy from the master (on resume
 * offloadd has also written the master into "params").  The layout rows are
 * cut to the shard and made relative to it. */
static int opt_init(cuda_impl *c, const zf_backend_spec *s, zf_err *err)
{
    const zf_param_table *t = s->table;
    if (!s->layout_rows || s->layout_nrows < 1 || !s->opt_master || !s->opt_m || !s->opt_v)
        return zf_err_set(err, "backend_cuda: spec: expected layout rows and the optimizer's host buffers");
    for (int r = 0; r < s->layout_nrows; r++) {
        const int64_t off = s->layout_rows[3 * r], n = s->layout_rows[3 * r + 1];
        if (off < 0 || n < 0 || (uint64_t)(off + n) > (uint64_t)t->total)
            return zf_err_set(err, "backend_cuda: layout row %d: expected a range inside %zu parameters, got [%lld, +%lld)",
                              r, t->total, (long long)off, (long long)n);
    }
    c->rows = (int64_t *)malloc((size_t)s->layout_nrows * 3 * sizeof(int64_t));
    if (!c->rows) return zf_err_set(err, "backend_cuda: out of host memory");
    const int64_t lo = (int64_t)c->opt_off, hi = (int64_t)(c->opt_off + c->opt_n);
    c->nrows = 0;
    for (int r = 0; r < s->layout_nrows; r++) {
        const int64_t *row = s->layout_rows + 3 * r;
        const int64_t a = row[0] > lo ? row[0] : lo, e = row[0] + row[1] < hi ? row[0] + row[1] : hi;
        if (e <= a) continue;
        int64_t *out = c->rows + 3 * c->nrows++;
        out[0] = a - lo;
        out[1] = e - a;
        out[2] = row[2];
    }
    zf_ds_config_optimizer(s->ds, &c->hp, &c->sched);
    c->h_master = s->opt_master;
    c->h_m = s->opt_m;
    c->h_v = s->opt_v;
    const size_t sb = c->opt_n * sizeof(float);
    cudaError_t e = cudaMalloc(&c->master, 3 * sb);
    if (e != cudaSuccess)
        return zf_err_set(err, "backend_cuda: optimizer state: %zu bytes of device memory: %s", 3 * sb,
                          cudaGetErrorString(e));
    c->m = c->master + c->opt_n;
    c->v = c->m + c->opt_n;
    cudaStream_t st = zf_gpt2c_stream(c->model);
    CKE(cudaMemcpyAsync(c->master, c->h_master, sb, cudaMemcpyHostToDevice, st));
    CKE(cudaMemcpyAsync(c->m, c->h_m, sb, cudaMemcpyHostToDevice, st));
    CKE(cudaMemcpyAsync(c->v, c->h_v, sb, cudaMemcpyHostToDevice, st));
    zf_gk *gk = zf_gpt2c_gk(c->model);
    void *lp = c->store ? c->home : (char *)zf_gpt2c_params_dev(c->model) + c->opt_off * zf_gpu_dtype_size(c->dt);
    if (zf_gk_convert(gk, lp, c->dt, c->master, ZF_GPU_F32, c->opt_n))
        return zf_err_set(err, "backend_cuda: compute copy from the master: %s", zf_gk_error(gk));
    CKE(cudaStreamSynchronize(st));
    c->has_opt = 1;
    return 0;
}

/* The rank's device bytes by kind, next to ZeRO's accounting at the compute
 * type's size K for parameters and gradients (K Psi + K Psi + 12 Psi, each
 * part over N where the stage partitions it, less what is offloaded).  The
 * gradients here are fp32; at stages 2-3 the rank keeps its slice of them
 * plus the bucket slots and the embeddings' and ln_f's whole gradients, so
 * they exceed the accounting by those. */
static void report_device_memory(const cuda_impl *c, int rank, int gpu, int world)
{
    const double GiB = 1073741824.0, es = (double)zf_gpu_dtype_size(c->dt), psi = (double)c->total, N = world;
    const size_t cap = zf_gpt2c_flat_capacity(c->model);
    double params = (double)cap * es, grads = (double)cap * 4.0;
    const double other = (double)zf_gpt2c_device_bytes(c->model) - params - grads;
    if (c->store) {
        params += (c->home ? (double)c->own_n * es : 0.0) + (double)c->staging_n * 4.0 +
                  (c->s3 ? (double)c->nslots * (double)c->slot_n : (double)(c->lay_hi - c->lay_lo)) * es;
        grads += (double)c->own_n * 4.0 + (double)c->ngs * (double)c->gslot_n * 4.0;
    }
    const double opt = c->master ? 3.0 * (double)c->opt_n * 4.0 : 0.0;
    const double want = (c->poff ? 0.0 : c->stage == 3 ? es * psi / N : es * psi) +
                        (c->stage >= 2 ? es * psi / N : es * psi) +
                        (c->master ? (c->stage >= 1 ? 12.0 * psi / N : 12.0 * psi) : 0.0);
    zf_info("rank %d on GPU %d: ZeRO stage %d over NCCL, %zu of %zu parameters in the optimizer's shard; device memory: "
            "parameters %.2f GiB%s, gradients %.2f GiB (fp32), optimizer %.2f GiB%s, activations and scratch %.2f GiB; "
            "ZeRO's accounting for the three: %.2f GiB", rank, gpu, c->stage, c->opt_n, c->total, params / GiB,
            c->poff ? " (parameters' home on the host; embeddings, ln_f and the layer slots here)" : "", grads / GiB,
            opt / GiB, c->master ? "" : " (in offloadd)", other / GiB, want / GiB);
    if (!c->store) return;
    char gather[128] = "";
    if (c->s3 && c->prefetch)
        snprintf(gather, sizeof gather, ", layers gathered up to %d ahead of the one computing (prefetch, %d slots)",
                 c->depth, c->nslots);
    else if (c->s3)
        snprintf(gather, sizeof gather, ", each layer gathered when used (no prefetch)");
    zf_info("rank %d: the layers' gradients reduced in %d bucket%s of up to %zu elements (reduce_bucket_size), "
            "overlap_comm %s%s", rank, c->nbk, c->nbk == 1 ? "" : "s", c->gslot_n, c->overlap ? "on" : "off", gather);
}

static void cu_free(zf_backend *b)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    zf_gpt2c_free(c->model);
    ev_pairs_destroy(c->ev, c->nev_made);
    if (c->master) cudaFree(c->master);
    free(c->rows);
    zs_free(c);
    zf_nccl_free(c->nccl);
    if (c->params_pinned) cudaHostUnregister(c->params);
    if (c->grads_pinned) cudaHostUnregister(c->grads);
    if (c->up_pinned) cudaHostUnregister((void *)c->up_src);
    if (c->ss_dev) cudaFree(c->ss_dev);
    if (c->ss_host) cudaFreeHost(c->ss_host);
    free(c);
    free(b);
}

/* A device allocation that failed at creation: say what would make the
 * model fit. */
static void fit_hint(zf_err *err)
{
    if (!strstr(err->msg, "out of memory")) return;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    zf_err_set(err, "%s: the model does not fit this GPU (less is needed with --batch_size smaller, "
               "--gradient_checkpointing, offload_optimizer, or ZeRO-3 with offload_param)", msg);
}

extern "C" zf_backend *zf_backend_cuda_create(const zf_backend_spec *s, int *no_device, zf_err *err)
{
    int n = 0;
    *no_device = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        cudaGetLastError();
        *no_device = 1;
        zf_err_set(err, "no usable CUDA device");
        return NULL;
    }
    /* ZeRO on the device: ranks, one GPU streaming its layers from the host,
     * or one GPU sent through the ranks' path (ZF_GPU_ZERO_ONE_RANK, tests) */
    const int ranks = s->comm != NULL;
    if (ranks && (!s->zplan || s->zplan->stage > 3 || !s->params_kept || !s->grads_kept)) {
        zf_err_set(err, "GPU ranks: expected a ZeRO plan of stage 0-3 and the rank's kept host buffers");
        return NULL;
    }
    cudaError_t e = cudaSetDevice(s->rank % n);
    if (e != cudaSuccess) {
        zf_err_set(err, "cudaSetDevice(%d): %s", s->rank % n, cudaGetErrorString(e));
        return NULL;
    }
    zf_gpu_dtype dt = s->bf16 ? ZF_GPU_BF16 : s->fp16 ? ZF_GPU_F16 : ZF_GPU_F32;
    cuda_impl *c = (cuda_impl *)calloc(1, sizeof *c);
    zf_backend *b = (zf_backend *)calloc(1, sizeof *b);
    if (!c || !b) {
        free(c);
        free(b);
        zf_err_set(err, "out of memory");
        return NULL;
    }
    b->impl = c;
    b->free = cu_free;
    c->params = s->params;
    c->grads = s->grads;
    c->total = s->table->total;
    c->bytes = s->table->total * sizeof(float);
    c->opt_n = c->total;
    size_t params_bytes = c->bytes, grads_bytes = c->bytes, capacity = 0;
    c->dt = dt;
    c->ga = s->grad_accum;
    c->rank = s->rank;
    if (ranks) {
        /* first, so that every rank meets the others in the same collective */
        if (!(c->nccl = zf_nccl_create(s->comm, c->total, err))) {
            cu_free(b);
            return NULL;
        }
        c->comm = s->comm;
        c->stage = s->zplan->stage;
        c->own_off = s->zplan->own_off;
        c->own_n = s->zplan->own_n;
        c->opt_off = s->zplan->opt_off;
        c->opt_n = s->zplan->opt_n;
        c->params = s->params_kept;
        c->grads = s->grads_kept;
        c->grads_base = s->zplan->grads_base;
        c->params_base = s->zplan->params_base;
        params_bytes = s->zplan->params_numel * sizeof(float);
        grads_bytes = s->zplan->grads_numel * sizeof(float);
        capacity = zf_nccl_capacity(c->nccl);
        c->store = c->stage >= 2;
        c->s3 = c->stage == 3;
        c->poff = c->s3 && s->offload_param;
        if (c->poff && s->ds) {
            zf_err_set(err, "GPU ranks: offload_param needs the optimizer offloaded too (offload_optimizer.device cpu)");
            cu_free(b);
            return NULL;
        }
    }
    const zf_gpt2c_layer_store store = zs_layer_store(c);
    const zf_gpt2c_options mo = {s->act_checkpointing, capacity, c->store ? &store : NULL};
    c->model = zf_gpt2c_create_ex(s->cfg, s->table, dt, s->max_B, s->max_T, &mo, err);
    if (!c->model || (ranks && zs_comm_setup(c, s->zopts, err) != 0) || (c->store && zs_alloc(c, s->zopts, err) != 0)) {
        fit_hint(err);
        cu_free(b);
        return NULL;
    }
    /* Pin the shared buffers; if the system refuses, copies still work, slower. */
    c->params_bytes = params_bytes;
    c->params_pinned = cudaHostRegister(c->params, params_bytes, cudaHostRegisterDefault) == cudaSuccess;
    c->grads_pinned = cudaHostRegister(c->grads, grads_bytes, cudaHostRegisterDefault) == cudaSuccess;
    cudaGetLastError(); /* clear a refusal */
    static const char *names[2][3] = {{"cuda (fp32)", "cuda (bf16)", "cuda (fp16)"},
                                      {"cuda (fp32, optimizer on the GPU)", "cuda (bf16, optimizer on the GPU)",
                                       "cuda (fp16, optimizer on the GPU)"}};
    const int ti = dt == ZF_GPU_BF16 ? 1 : dt == ZF_GPU_F16 ? 2 : 0;
    b->name = names[0][ti];
    b->forward = cu_forward;
    b->target_count = cu_target_count;
    b->zero_grads = cu_zero_grads;
    b->backward = cu_backward;
    b->grads_to_host = cu_grads_to_host;
    b->params_from_host = cu_params_from_host;
    b->poison_grads = cu_poison_grads;
    b->phase_times = cu_phase_times;
    /* ranks: the compute copy from the host (stages 0-1: every rank holds the
     * same whole parameters at start or resume; stages 2-3: the slice into
     * the home, then gathered); the device optimizer
     * below then rewrites its shard from the master, which equals it */
    if (ranks && (c->store ? cu_params_from_host(b, err) : zf_gpt2c_set_params(c->model, c->params, err)) != 0) {
        cu_free(b);
        return NULL;
    }
    if (s->ds) {
        if (opt_init(c, s, err) != 0) {
            fit_hint(err);
            cu_free(b);
            return NULL;
        }
        b->name = names[1][ti];
        b->grad_stats = cu_grad_stats;
        b->optimizer_step = cu_optimizer_step;
        b->params_to_host = cu_params_to_host;
        b->opt_to_host = cu_opt_to_host;
    } else if (!ranks) {
        if (cu_params_from_host(b, err) != 0) {
            cu_free(b);
            return NULL;
        }
        b->upload_params_next = cu_upload_params_next;
        b->grad_stats_exact = cu_grad_stats_exact;
    }
    if (ranks) {
        b->grad_stats = cu_zero_grad_stats; /* the reduction over NCCL comes first */
        if (c->store && !s->ds) b->upload_params_next = cu_upload_params_next;
        report_device_memory(c, s->rank, s->rank % n, s->comm->size);
    }
    /* creation's copies are not a step's transfers */
    zf_phase_times drop = {0, 0, 0, 0, 0};
    cu_phase_times(b, &drop);
    return b;
}
