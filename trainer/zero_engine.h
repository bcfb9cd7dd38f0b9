/* zero_engine.h - the ZeRO engine of one CPU rank (stages 0-3).
 *
 * Owns: the rank's working parameter and gradient buffers as the model sees
 * them (always the whole flat buffer's address range, gpt2_cpu.h addresses
 * tensors by offset), the collectives of each stage through zf_comm, and
 * the stage-3 life of parameters (gathered before use, released after,
 * prefetched, kept whole when small).
 *
 *   stage 0: params and grads whole; gradients all-reduced (in buckets) after
 *            the accumulation; the optimizer shard is the whole buffer.
 *   stage 1: as 0, but the optimizer owns only the rank's slice: after its
 *            step the slices are all-gathered into the whole params.
 *   stage 2: params whole; gradients only for the slice (grads_part): the
 *            whole-size working gradients are a MAP_NORESERVE mapping whose
 *            pages exist only between a unit's backward and its bucket's
 *            reduce-scatter into the owners (reduce_bucket_size; with
 *            overlap_comm non-blocking, waited before the optimizer and
 *            before the next backward writes the same range).
 *   stage 3: as 2 for gradients; parameters' home is the slice (params_home)
 *            and the working params are another such mapping: a unit's
 *            non-persistent segments are all-gathered at fetch (or ahead by
 *            stage3_prefetch_bucket_size, within stage3_max_live_parameters)
 *            and their pages dropped (MADV_DONTNEED) at release; persistent
 *            segments (tensors under stage3_param_persistence_threshold) are
 *            gathered once and again after every optimizer step.
 *
 * A world of one runs every stage as stage 0: each slice is then the whole
 * buffer, the model computes on the caller's buffers directly and nothing
 * is exchanged (any backend, hooks or not, trains as before).
 *
 * Equivalence with one rank: each rank back-propagates its loss times
 * loss_scale / (GA * world) (zf_zero_backward_scale), so the sum over ranks
 * is the mean DeepSpeed averages; the overflow flag is a max and the
 * squared norm a sum over each rank's own slice (never counted twice).
 *
 * Errors inside hooks (which cannot return them) are kept: check
 * zf_zero_failed after forward/backward. */
#ifndef ZF_ZERO_ENGINE_H
#define ZF_ZERO_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"
#include "gpt2_cpu.h"
#include "log.h"
#include "zero_plan.h"

typedef struct zf_zero zf_zero;

/* plan: from zf_zero_plan_init (copied).  The caller's buffers, which
 * outlive the engine (shared-memory segments offloadd works on):
 *   params: plan->params_numel floats for [params_base, ...): whole
 *           (stages 0-2, the model reads it directly) or the slice (stage 3,
 *           the home, initialised with the slice's initial values);
 *   grads:  plan->grads_numel floats for [grads_base, ...).
 * Stage 3 gathers the persistent segments here (a collective: every rank
 * creates its engine at the same point). */
zf_zero *zf_zero_create(zf_comm *c, const zf_zero_plan *plan, const zf_zero_options *o, float *params, float *grads,
                        zf_err *err);
void zf_zero_free(zf_zero *z);

/* What the model computes on: whole-buffer address ranges. */
float *zf_zero_work_params(zf_zero *z);
float *zf_zero_work_grads(zf_zero *z);
/* Hooks to install on the model (gpt2_cpu.h); NULL at stages 0-1. */
const zf_gpt2_hooks *zf_zero_hooks(zf_zero *z);

/* Start of an optimizer step: gradients zeroed (the kept buffer; the
 * working pages of stages 2-3 are zero already). */
int zf_zero_zero_grads(zf_zero *z, zf_err *err);
/* loss_scale / (ga * world): the backward scale of one micro-batch. */
float zf_zero_backward_scale(const zf_zero *z, float loss_scale, int ga);
/* After the last micro-batch: gradients reduced into their owners (stage
 * 0-1 all-reduce, 2-3 the remaining buckets), then the one decision for all
 * ranks: *overflow = any non-finite gradient anywhere, *sumsq = squared
 * global norm of the (scaled) gradients. */
int zf_zero_reduce(zf_zero *z, int *overflow, double *sumsq, zf_err *err);
/* After the optimizer wrote the rank's part of params: stage 1-2 all-gather
 * the slices into the whole params; stage 3 drops every gathered unit and
 * regathers the persistent segments.  Also after anything else rewrote the
 * kept params (a resume). */
int zf_zero_params_updated(zf_zero *z, zf_err *err);
/* Stage 3: every parameter present in the working params (generation,
 * export) / released again.  No-ops at stages 0-2.  Collectives. */
int zf_zero_gather_all(zf_zero *z, zf_err *err);
int zf_zero_release_all(zf_zero *z, zf_err *err);

/* The mean over ranks of a value (losses). */
int zf_zero_mean(zf_zero *z, double *v, int n, zf_err *err);

/* A hook failed: the first error (and every later collective skipped). */
int zf_zero_failed(const zf_zero *z, zf_err *err);

/* Measured transient bytes: resident pages of the working mappings (stage
 * 2-3; at start: the persistent parameters; buckets reduce in place). */
uint64_t zf_zero_transient_bytes(zf_zero *z);

/* Bookkeeping for logs and tests. */
typedef struct zf_zero_stats {
    long gathers, prefetches, releases, buckets; /* counts since create */
    size_t live_peak;      /* stage 3: most non-persistent elements gathered at once */
    size_t bucket_peak;    /* most elements of gradient buckets in flight at once */
} zf_zero_stats;
void zf_zero_get_stats(const zf_zero *z, zf_zero_stats *s);

#endif
