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
 * step (phase_times), so timing adds no synchronisation inside the step. */
#include "backend_cuda.cuh"

#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2_cuda.cuh"
#include "gpt2_kernels.cuh"

extern "C" {
#include "ds_config.h"
#include "lr_schedule.h"
#include "shard_optimizer.h"
}

enum { PH_FWD, PH_BWD, PH_OPT, PH_XFER };
#define EV_MAX 256 /* event pairs kept before older ones are folded into acc */

typedef struct ev_pair {
    cudaEvent_t a, b;
    int phase;
} ev_pair;

typedef struct cuda_impl {
    zf_gpt2c *model;
    float *params, *grads;
    size_t total, bytes;
    int params_pinned, grads_pinned;
    const float *up_src; /* pinned source of pipelined uploads (offloadd's master) */
    int up_pinned;
    double *ss_dev, *ss_host; /* exact statistics: per block and lane sums (+ the non-finite count) */
    int ga, nb; /* backward calls per step (spec), and since zero_grads */
    zf_gpu_dtype dt;
    /* device optimizer */
    int has_opt;
    float *master, *m, *v; /* device, total each (one allocation at master) */
    float *h_master, *h_m, *h_v; /* host home (offloadd's segments) */
    int64_t *rows;
    int nrows;
    zf_adamw_hparams hp;
    zf_lr_schedule sched;
    /* phase events */
    ev_pair ev[EV_MAX];
    int nev_made, nev_used, open;
    zf_phase_times acc; /* folded pairs not yet reported */
} cuda_impl;

#define CKE(call)                                                                                              \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) return zf_err_set(err, "backend_cuda: %s: %s", #call, cudaGetErrorString(e_)); \
    } while (0)

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
    if (!c->nev_used) return;
    if (cudaEventSynchronize(c->ev[c->nev_used - 1].b) == cudaSuccess) {
        for (int i = 0; i < c->nev_used; i++) {
            float ms = 0;
            if (cudaEventElapsedTime(&ms, c->ev[i].a, c->ev[i].b) == cudaSuccess) add_ms(t, c->ev[i].phase, ms);
        }
    }
    cudaGetLastError();
    c->nev_used = 0;
}

static void ph_begin(cuda_impl *c, int phase)
{
    if (c->nev_used == EV_MAX) fold(c, &c->acc);
    ev_pair *p = &c->ev[c->nev_used];
    if (c->nev_used == c->nev_made) {
        if (cudaEventCreate(&p->a) != cudaSuccess || cudaEventCreate(&p->b) != cudaSuccess) {
            cudaGetLastError();
            c->open = 0; /* timing is best effort: no pair, no time */
            return;
        }
        c->nev_made++;
    }
    p->phase = phase;
    c->open = cudaEventRecord(p->a, zf_gpt2c_stream(c->model)) == cudaSuccess;
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
}

/* ----------------------------------------------------------- the model */

static float cu_forward(zf_backend *b, const int32_t *tokens, const int32_t *targets, int B, int T, int training,
                        uint64_t seed, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
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
    return zf_gpt2c_zero_grads(c->model, err);
}
static int cu_backward(zf_backend *b, float scale, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    /* optimizer offloaded: the last micro-batch's backward streams each
     * layer's finished gradients to the host while the next layers compute */
    if (!c->has_opt && c->grads_pinned && c->ga > 0 && ++c->nb == c->ga) {
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
    int rc = zf_gpt2c_get_grads(c->model, c->grads, err);
    ph_end(c);
    return rc;
}
static int cu_params_from_host(zf_backend *b, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    ph_begin(c, PH_XFER);
    int rc = zf_gpt2c_set_params(c->model, c->params, err);
    ph_end(c);
    return rc;
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
        c->up_pinned = cudaHostRegister((void *)src, c->bytes, cudaHostRegisterDefault) == cudaSuccess;
        cudaGetLastError(); /* not pinned: the copies still work, slower */
        c->up_src = src;
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
    ph_begin(c, PH_OPT);
    int rc = zf_gk_adamw_rows(gk, c->master, zf_gpt2c_grads_dev(c->model), c->m, c->v, zf_gpt2c_params_dev(c->model),
                              c->dt, c->rows, c->nrows, &h, (int64_t)step, grad_scale);
    ph_end(c);
    if (rc) return zf_err_set(err, "backend_cuda: AdamW step %ld: %s", step, zf_gk_error(gk));
    *lr = h.lr;
    return 0;
}

static int cu_params_to_host(zf_backend *b, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    cudaStream_t s = zf_gpt2c_stream(c->model);
    /* between steps (generation, checkpoints, export): not timed */
    CKE(cudaMemcpyAsync(c->params, c->master, c->bytes, cudaMemcpyDeviceToHost, s));
    CKE(cudaStreamSynchronize(s));
    return 0;
}

static int cu_opt_to_host(zf_backend *b, zf_err *err)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    cudaStream_t s = zf_gpt2c_stream(c->model);
    CKE(cudaMemcpyAsync(c->h_master, c->master, c->bytes, cudaMemcpyDeviceToHost, s));
    CKE(cudaMemcpyAsync(c->h_m, c->m, c->bytes, cudaMemcpyDeviceToHost, s));
    CKE(cudaMemcpyAsync(c->h_v, c->v, c->bytes, cudaMemcpyDeviceToHost, s));
    CKE(cudaStreamSynchronize(s));
    return cu_params_to_host(b, err);
}

/* Upload the optimizer state from its host home; the compute copy from the
 * master (on resume offloadd has also written the master into "params"). */
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
    memcpy(c->rows, s->layout_rows, (size_t)s->layout_nrows * 3 * sizeof(int64_t));
    c->nrows = s->layout_nrows;
    zf_ds_config_optimizer(s->ds, &c->hp, &c->sched);
    c->h_master = s->opt_master;
    c->h_m = s->opt_m;
    c->h_v = s->opt_v;
    cudaError_t e = cudaMalloc(&c->master, 3 * c->bytes);
    if (e != cudaSuccess)
        return zf_err_set(err, "backend_cuda: optimizer state: %zu bytes of device memory: %s", 3 * c->bytes,
                          cudaGetErrorString(e));
    c->m = c->master + c->total;
    c->v = c->m + c->total;
    cudaStream_t st = zf_gpt2c_stream(c->model);
    CKE(cudaMemcpyAsync(c->master, c->h_master, c->bytes, cudaMemcpyHostToDevice, st));
    CKE(cudaMemcpyAsync(c->m, c->h_m, c->bytes, cudaMemcpyHostToDevice, st));
    CKE(cudaMemcpyAsync(c->v, c->h_v, c->bytes, cudaMemcpyHostToDevice, st));
    zf_gk *gk = zf_gpt2c_gk(c->model);
    if (zf_gk_convert(gk, zf_gpt2c_params_dev(c->model), c->dt, c->master, ZF_GPU_F32, c->total))
        return zf_err_set(err, "backend_cuda: compute copy from the master: %s", zf_gk_error(gk));
    CKE(cudaStreamSynchronize(st));
    c->has_opt = 1;
    return 0;
}

static void cu_free(zf_backend *b)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    zf_gpt2c_free(c->model);
    for (int i = 0; i < c->nev_made; i++) {
        cudaEventDestroy(c->ev[i].a);
        cudaEventDestroy(c->ev[i].b);
    }
    if (c->master) cudaFree(c->master);
    free(c->rows);
    if (c->params_pinned) cudaHostUnregister(c->params);
    if (c->grads_pinned) cudaHostUnregister(c->grads);
    if (c->up_pinned) cudaHostUnregister((void *)c->up_src);
    if (c->ss_dev) cudaFree(c->ss_dev);
    if (c->ss_host) cudaFreeHost(c->ss_host);
    free(c);
    free(b);
}

extern "C" zf_backend *zf_backend_cuda_create(const zf_backend_spec *s, zf_err *err)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        zf_err_set(err, "no usable CUDA device");
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
    c->params = s->params;
    c->grads = s->grads;
    c->total = s->table->total;
    c->bytes = s->table->total * sizeof(float);
    c->dt = dt;
    c->ga = s->grad_accum;
    c->model = zf_gpt2c_create_ex(s->cfg, s->table, dt, s->max_B, s->max_T, s->act_checkpointing, err);
    if (!c->model) {
        free(c);
        free(b);
        return NULL;
    }
    /* Pin the shared buffers; if the system refuses, copies still work, slower. */
    c->params_pinned = cudaHostRegister(c->params, c->bytes, cudaHostRegisterDefault) == cudaSuccess;
    c->grads_pinned = cudaHostRegister(c->grads, c->bytes, cudaHostRegisterDefault) == cudaSuccess;
    cudaGetLastError(); /* clear a refusal */
    static const char *names[2][3] = {{"cuda (fp32)", "cuda (bf16)", "cuda (fp16)"},
                                      {"cuda (fp32, optimizer on the GPU)", "cuda (bf16, optimizer on the GPU)",
                                       "cuda (fp16, optimizer on the GPU)"}};
    const int ti = dt == ZF_GPU_BF16 ? 1 : dt == ZF_GPU_F16 ? 2 : 0;
    b->name = names[0][ti];
    b->impl = c;
    b->forward = cu_forward;
    b->target_count = cu_target_count;
    b->zero_grads = cu_zero_grads;
    b->backward = cu_backward;
    b->grads_to_host = cu_grads_to_host;
    b->params_from_host = cu_params_from_host;
    b->poison_grads = cu_poison_grads;
    b->phase_times = cu_phase_times;
    b->free = cu_free;
    if (s->ds) {
        if (opt_init(c, s, err) != 0) {
            cu_free(b);
            return NULL;
        }
        b->name = names[1][ti];
        b->grad_stats = cu_grad_stats;
        b->optimizer_step = cu_optimizer_step;
        b->params_to_host = cu_params_to_host;
        b->opt_to_host = cu_opt_to_host;
    } else if (cu_params_from_host(b, err) != 0) {
        cu_free(b);
        return NULL;
    } else {
        b->upload_params_next = cu_upload_params_next;
        b->grad_stats_exact = cu_grad_stats_exact;
    }
    /* creation's copies are not a step's transfers */
    zf_phase_times drop = {0, 0, 0, 0};
    cu_phase_times(b, &drop);
    return b;
}
