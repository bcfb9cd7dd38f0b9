/* backend.h - where the trainer's model computes: the CPU model, or (in the
 * CUDA build) the GPU model.  One interface, so the training loop, the
 * loss-scaling and clipping decisions and the exchange with offloadd are
 * written once.
 *
 * The trainer's fp32 parameters and gradients live in shared memory
 * ("params", "grads"); a backend reads the first and fills the second:
 *   zero_grads; { forward; backward(scale) } x GA; grads_to_host
 *   ... offloadd updates "params" ...; params_from_host
 * The CPU backend computes directly on those buffers (the host calls are
 * no-ops); the GPU backend keeps device copies, pins both buffers
 * (cudaHostRegister) and copies across once per step.
 *
 * A GPU backend may also keep the optimizer (runs whose DeepSpeed config
 * offloads no optimizer): then grad_stats / optimizer_step are set and the
 * step needs no big transfer; "params" on the host is refreshed only when
 * something reads it (params_to_host: generation, checkpoints, export) and
 * offloadd's master/m/v segments only before a checkpoint (opt_to_host). */
#ifndef ZF_BACKEND_H
#define ZF_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "log.h"
#include "model.h" /* a C header without extern "C" of its own */

/* Seconds per phase of one optimizer step.  comm_s: time in ZeRO's
 * communication: on GPU ranks the GPU time of the collectives on the device
 * (reductions, gathers and the host copies that feed them), on CPU ranks
 * the time inside the host engine's calls (lib/comm.h); it overlaps the
 * other phases, so it is not part of their sum. */
typedef struct zf_phase_times {
    double forward_s, backward_s, optimizer_s, transfer_s, comm_s;
} zf_phase_times;

typedef struct zf_backend zf_backend;
struct zf_backend {
    const char *name; /* "cpu", "cuda bf16", ... for logs */
    void *impl;
    /* mean loss over non-ignored targets; NAN with *err on failure */
    float (*forward)(zf_backend *b, const int32_t *tokens, const int32_t *targets, int B, int T, int training,
                     uint64_t dropout_seed, zf_err *err);
    int (*target_count)(zf_backend *b);
    int (*zero_grads)(zf_backend *b, zf_err *err);
    /* gradient of the last forward's loss times scale, added to the grads */
    int (*backward)(zf_backend *b, float loss_scale, zf_err *err);
    int (*grads_to_host)(zf_backend *b, zf_err *err);
    int (*params_from_host)(zf_backend *b, zf_err *err);
    void (*free)(zf_backend *b);

    /* ---- optional (NULL when the backend does not offer them) ---- */
    /* The device-resident optimizer.  grad_stats: the accumulated (scaled)
     * gradients' non-finite count > 0 and sum of squares, computed where the
     * gradients are; only scalars reach the host.  optimizer_step: AdamW step
     * number applied_step (1-based) on the device master weights with each
     * gradient times grad_scale, lr of the DeepSpeed schedule (returned),
     * weight decay on the layout's decay rows only; the compute copy is
     * refreshed from the master.  params_to_host: fp32 master -> "params".
     * opt_to_host: master, exp_avg, exp_avg_sq -> the host buffers named in
     * the spec (offloadd's segments, which ckptd saves), and "params". */
    int (*grad_stats)(zf_backend *b, int *overflow, double *sumsq, zf_err *err);
    int (*optimizer_step)(zf_backend *b, long applied_step, float grad_scale, double *lr, zf_err *err);
    int (*params_to_host)(zf_backend *b, zf_err *err);
    int (*opt_to_host)(zf_backend *b, zf_err *err);
    /* Test-only (ZF_DEBUG_OVERFLOW_STEPS): make the accumulated gradients
     * non-finite where they are (one element set to +inf). */
    int (*poison_grads)(zf_backend *b, zf_err *err);
    /* Device time of each phase since the last call, ADDED to *t (waits for
     * the work queued so far).  NULL: the calls are synchronous and the
     * caller's clocks measure them. */
    void (*phase_times)(zf_backend *b, zf_phase_times *t);
    /* Optimizer offloaded, pipelined (a GPU backend): the NEXT forward takes
     * the parameters from host_src (table->total fp32, offloadd's master)
     * range by range in the order it uses them, calling ready(ctx, end)
     * before each range; ready returns 0 once host_src[0, end) holds the
     * updated values (the forward waits for the upload per range, not for
     * the whole buffer).  host_src NULL disarms. */
    int (*upload_params_next)(zf_backend *b, const float *host_src, int (*ready)(void *ctx, size_t end), void *ctx,
                              zf_err *err);
    /* Optimizer offloaded: the accumulated gradients' non-finite count > 0
     * and their zf_sum_squares, BIT FOR BIT (its recipe, shard_optimizer.h),
     * computed where the gradients are: the decision does not wait for two
     * host passes over the whole buffer. */
    int (*grad_stats_exact)(zf_backend *b, int *overflow, double *sumsq, zf_err *err);
};


/* What a backend is made from. */
typedef struct zf_backend_spec {
    const zf_gpt2_config *cfg;
    const zf_param_table *table;
    float *params, *grads;   /* the shared-memory buffers, table->total floats */
    int max_B, max_T;
    int rank;                /* picks the GPU: rank % device count */
    int fp16, bf16;          /* the DeepSpeed config's precision */
    /* The device optimizer (set by the loop when the config offloads no
     * optimizer; a backend that cannot keep it ignores them): the config
     * (AdamW hyperparameters, lr schedule), the layout rows (offset, numel,
     * decay) and the optimizer state's host home: master, exp_avg,
     * exp_avg_sq of table->total floats each, read at creation (initial or
     * resumed state) and written by opt_to_host.  ds == NULL: no device
     * optimizer. */
    const struct zf_ds_config *ds;
    const int64_t *layout_rows;
    int layout_nrows;
    float *opt_master, *opt_m, *opt_v;
    int act_checkpointing;   /* keep each block's input only; recompute in backward */
    int grad_accum;          /* backward calls per step (0: unknown); lets a GPU backend copy the
                                last one's finished gradients to the host during that backward */
    /* GPU ranks of a world > 1, or one GPU at stage 3 with offload_param
     * (NULL: one rank, the whole model on the GPU).  The backend then does
     * ZeRO stages 0-3 itself, on the device: grad_stats first reduces the
     * gradients into their owners (all-reduce at stage 0, reduce-scatter
     * above) and combines the flag and the norm over the ranks; the optimizer
     * (on the device, or offloadd's through grads_to_host/params_from_host)
     * updates the rank's shard; the shards are then all-gathered into every
     * rank's compute copy (stage 3: the layers' slices are gathered into
     * the layer being computed, one at a time, and its gradients reduced
     * into their owners as its backward ends; stage 2 reduces the layers'
     * gradients likewise, in buckets, during each backward).  comm: the
     * host engine (MPI) that NCCL's id travels on and the scalars are
     * combined with; zplan:
     * the rank's plan; params_kept / grads_kept: the host parameters and
     * gradients the rank keeps, zplan->params_numel floats from
     * zplan->params_base and zplan->grads_numel from zplan->grads_base
     * (offloadd's input and output); the optimizer's host buffers
     * (opt_master, ...) then hold the shard, zplan->opt_n floats each.
     * Dropout masks are drawn from a key of the rank's own (see
     * zf_backend_cuda_create). */
    struct zf_comm *comm;
    const struct zf_zero_plan *zplan;
    const struct zf_zero_options *zopts; /* reduce_bucket_size, overlap_comm, prefetch (zero_plan.h) */
    float *params_kept, *grads_kept;
    int offload_param;       /* stage 3 with offload_param.device cpu: the parameters' home is params_kept */
} zf_backend_spec;

/* The CPU model on the shared buffers. */
zf_backend *zf_backend_cpu_create(const zf_backend_spec *s, zf_err *err);

/* ZeRO on a CPU backend: the model calls the engine's hooks (a struct
 * zf_gpt2_hooks, NULL: none), its dropout masks follow the global batch row
 * row0 (rank * micro batch), and zero_grads is left to the engine (which
 * keeps stage 2-3 gradients only for its slice).  -1 on a backend that is
 * not the CPU one. */
struct zf_gpt2_hooks;
int zf_backend_cpu_attach_zero(zf_backend *b, const struct zf_gpt2_hooks *hooks, uint64_t row0, zf_err *err);

/* A factory the CUDA build passes to the training loop (NULL in the CPU
 * build).  NULL with err on failure; *no_device = 1 when the machine has no
 * usable GPU at all (the caller may then train on the CPU; any other
 * failure, such as a model too large for the GPU, is the run's end). */
typedef zf_backend *(*zf_backend_factory)(const zf_backend_spec *s, int *no_device, zf_err *err);

#ifdef __cplusplus
}
#endif

#endif
