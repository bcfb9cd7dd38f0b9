/* backend_cuda_impl.cuh - what backend_cuda.cu and zero_store.cu share:
 * the GPU backend's state (cuda_impl) and the device side of ZeRO that
 * zero_store.cu owns (the collectives' stream, the layer store of stages
 * 2-3).  Private to those two files. */
#ifndef ZF_BACKEND_CUDA_IMPL_CUH
#define ZF_BACKEND_CUDA_IMPL_CUH

#include <cuda_runtime.h>

#include "backend_cuda.cuh"
#include "gpt2_cuda.cuh"
#include "gpt2_kernels.cuh"
#include "nccl_comm.cuh"

extern "C" {
#include "ds_config.h"
#include "lr_schedule.h"
#include "zero_plan.h"
}

enum { PH_FWD, PH_BWD, PH_OPT, PH_XFER };
#define EV_MAX 256 /* event pairs kept before older ones are folded into acc */
#define ZS_MAX 16 /* stage 3's parameter slots at most (prefetch depth + 1) */
#define COMM_EV_MAX 2048 /* collectives timed per step (more go untimed: no synchronisation mid-step) */

typedef struct ev_pair {
    cudaEvent_t a, b;
    int phase;
} ev_pair;

/* Timing by pairs of CUDA events, best effort: a pair that cannot be made
 * or recorded times nothing.  ev_pair_start: pair i of a ring, its events
 * made on first use (*made counts the ring's), its start recorded on s; 0
 * or -1.  ev_pairs_wait: waits for the last of pairs [0, n); 1 when they
 * can be read.  ev_pair_ms: one pair's milliseconds (0 if unreadable). */
static inline int ev_pair_start(ev_pair *ring, int i, int *made, cudaStream_t s)
{
    ev_pair *p = &ring[i];
    if (i == *made) {
        if (cudaEventCreate(&p->a) != cudaSuccess || cudaEventCreate(&p->b) != cudaSuccess) {
            cudaGetLastError();
            return -1;
        }
        (*made)++;
    }
    if (cudaEventRecord(p->a, s) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return 0;
}
static inline int ev_pairs_wait(const ev_pair *ring, int n)
{
    if (n <= 0) return 0;
    if (cudaEventSynchronize(ring[n - 1].b) == cudaSuccess) return 1;
    cudaGetLastError();
    return 0;
}
static inline float ev_pair_ms(const ev_pair *p)
{
    float ms = 0;
    if (cudaEventElapsedTime(&ms, p->a, p->b) != cudaSuccess) {
        cudaGetLastError();
        ms = 0;
    }
    return ms;
}
static inline void ev_pairs_destroy(ev_pair *ring, int made)
{
    for (int i = 0; i < made; i++) {
        cudaEventDestroy(ring[i].a);
        cudaEventDestroy(ring[i].b);
    }
}

typedef struct cuda_impl {
    zf_gpt2c *model;
    float *params, *grads;
    size_t total, bytes;
    size_t params_bytes;    /* of "params" (the whole buffer, or what the rank keeps) */
    int params_pinned, grads_pinned;
    const float *up_src; /* pinned source of pipelined uploads (offloadd's master, the shard) */
    int up_pinned;
    /* offloadd's update pipelined on the store path (stages 2-3): each part
     * of the shard is waited for (up_ready: offloadd's progress) before it
     * is copied up from up_src */
    int (*up_ready)(void *ctx, size_t end);
    void *up_ctx;
    int kept_stale[2];   /* the embeddings / ln_f still to gather in the next forward (pipelined update) */
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
    /* ZeRO over NCCL (GPU ranks, or one GPU through the ranks' path); nccl
     * NULL: the plain one-GPU path */
    zf_nccl *nccl;
    zf_comm *comm;
    int stage, rank;
    size_t own_off, own_n;  /* the rank's slice */
    size_t opt_off, opt_n;  /* the optimizer's shard: the whole buffer (stage 0) or the slice */
    size_t grads_base;      /* flat index of grads[0] (the host gradients the rank keeps) */
    /* stages 2-3, the layer store of gpt2_cuda: the layers' gradients go
     * to bucket slots and are reduced into the owners' own_grads as each
     * bucket's backward ends; stage 3 also keeps only the rank's slice of
     * the parameters (home) and gathers each layer into a slot for its pass,
     * stage 2 keeps the layers' compute copy whole (lay_params) */
    int store, s3;
    int poff;               /* offload_param: the home is the host's kept fp32 slice ("params", pinned) */
    size_t params_base;     /* flat index of params[0] (the host parameters the rank keeps) */
    void *home;             /* compute copy of the rank's slice (own_n, dt); NULL with poff */
    float *own_grads;       /* the rank's slice of the gradients (own_n), summed over ranks and micro-batches */
    void *lay_params;       /* stage 2: the layers' compute copy [lay_lo, lay_hi), whole (each layer
                               gathered when first used after an update) */
    void *pslot[ZS_MAX];    /* stage 3: a layer's gathered parameters (dt), slot l % nslots for layer l */
    int slot_layer[ZS_MAX]; /* the layer a slot holds (-1: none) ... */
    unsigned long slot_ver[ZS_MAX], pver; /* ... gathered at parameter version slot_ver (pver: bumped by each update) */
    int nslots, depth;      /* parameter slots (stage 2: 2, for the events), and layers gathered ahead */
    unsigned long *lay_ver; /* stage 2: the version each layer's place in lay_params holds */
    unsigned long *home_ver; /* pipelined: the version of each unit's part of the home (layers, then the two kept parts) */
    float *gslot[2];        /* a bucket's gradients of this rank (fp32), slot b % ngs for bucket b */
    int ngs;                /* 2, or 1 when one bucket holds every layer */
    float *staging;         /* fp32 chunks of the own part on their way from the host (offload_param, pipelined) */
    size_t staging_n;
    void *zmem;             /* the one allocation of the buffers above */
    size_t zmem_bytes;
    size_t slot_n, gslot_n; /* elements of a parameter slot (the largest layer) and of a gradient slot */
    size_t lay_lo, lay_hi;  /* the layers' span: outside it the model keeps the tensors whole */
    /* gradient buckets: consecutive layers, highest first, as many as fit in
     * reduce_bucket_size elements (at least one); bucket b is [bk[b][0],
     * bk[b][1]), its backward starts at layer bk_top[b] and ends at bk_bot[b] */
    int nbk, *bk_of, *bk_top, *bk_bot;
    size_t (*bk)[2];
    /* the collectives' stream: its own with overlap_comm (reductions and
     * gathers run beside the compute, ordered by the events), else the
     * model's; prefetch (with overlap_comm; at stage 3 only if
     * stage3_prefetch_bucket_size > 0): the pass's next depth layers are
     * gathered while this one computes */
    cudaStream_t cs;
    zf_gk *gk_cs;           /* conversions on cs */
    int overlap, prefetch;
    cudaEvent_t ev_join, ev_gready[2], ev_gfree[2], ev_pfree[ZS_MAX], ev_pready[ZS_MAX];
    int events_made;
    /* phase events */
    ev_pair ev[EV_MAX];
    int nev_made, nev_used, open;
    ev_pair *comm_ev;       /* pairs around the collectives on cs, folded once per step */
    int ncomm_made, ncomm_used;
    zf_phase_times acc; /* folded pairs not yet reported */
} cuda_impl;

#define CKE(call)                                                                                              \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) return zf_err_set(err, "backend_cuda: %s: %s", #call, cudaGetErrorString(e_)); \
    } while (0)

/* ---- zero_store.cu: ZeRO on the device (GPU ranks) ---- */

/* The collectives' stream (its own with overlap_comm) and its events. */
int zs_comm_setup(cuda_impl *c, const zf_zero_options *zo, zf_err *err);
/* Stages 2-3: the buckets, slots, home and own_grads (c->model exists). */
int zs_alloc(cuda_impl *c, const zf_zero_options *zo, zf_err *err);
void zs_free(cuda_impl *c);
/* The layer store for gpt2_cuda (ctx c). */
zf_gpt2c_layer_store zs_layer_store(cuda_impl *c);
/* cs after everything queued on the model's stream so far, and back. */
int zs_comm_after_model(cuda_impl *c, zf_err *err);
int zs_model_after_comm(cuda_impl *c, zf_err *err);
/* A collective's GPU time: begin (an index, -1 untimed) / end around it on
 * cs; fold returns the seconds since the last fold (waits for them). */
int zs_comm_begin(cuda_impl *c);
void zs_comm_end(cuda_impl *c, int i);
double zs_comm_fold(cuda_impl *c);
/* What the model keeps whole: part 0 the embeddings, 1 ln_f (flat range
 * [lo, hi), at its place in the model's buffers); gathered from the homes
 * into the model with both streams ordered around it. */
void zs_kept_part(const cuda_impl *c, int part, size_t *lo, size_t *hi, size_t *at);
int zs_gather_kept(cuda_impl *c, int part, zf_err *err);

#endif
