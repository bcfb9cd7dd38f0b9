/* zero_plan.h - the ZeRO partition plan of one rank.
 *
 * Owns: which part of model.h's flat buffer this rank owns (the contiguous
 * slice [r*per, min((r+1)*per, total)), per = ceil(total/N)), what the
 * stage makes the rank keep whole or only for its slice (parameters,
 * gradients, optimizer shard), the units the model fetches and releases
 * (gpt2_cpu.h's hooks: wte+wpe, each block, ln_f) with, per unit, the
 * segments that stage 3 gathers on use and those it keeps whole
 * (stage3_param_persistence_threshold, per tensor as DeepSpeed), and the
 * ZeRO options of the DeepSpeed config in elements. */
#ifndef ZF_ZERO_PLAN_H
#define ZF_ZERO_PLAN_H

#include <stddef.h>

#include "ds_config.h"
#include "log.h"
#include "model.h"

typedef struct zf_zero_options {
    int stage;                          /* 0..3 */
    size_t reduce_bucket_size;          /* elements per gradient reduce-scatter/allreduce */
    size_t allgather_bucket_size;       /* elements per parameter allgather (stages 1-2) */
    int overlap_comm;                   /* stage 2/3: reduce buckets during backward, non-blocking */
    size_t prefetch_bucket_size;        /* stage 3: elements gathered ahead of use */
    size_t param_persistence_threshold; /* stage 3: tensors with fewer elements stay whole */
    size_t max_live_parameters;         /* stage 3: gathered elements alive at once (prefetch bound) */
} zf_zero_options;

/* From zero_optimization of a loaded config (DeepSpeed's defaults apply). */
void zf_zero_options_from_config(zf_zero_options *z, const zf_ds_config *c);

/* A run [start, end) of a unit whose tensors are all persistent or all not
 * (alignment gaps go with the tensor before them). */
typedef struct zf_zero_seg {
    size_t start, end;
    int persistent;
} zf_zero_seg;

typedef struct zf_zero_unit {
    size_t start, end;     /* contiguous in the flat buffer */
    int nseg;
    zf_zero_seg *seg;
    size_t gathered;       /* elements of non-persistent segments (gathered on use at stage 3) */
} zf_zero_unit;

typedef struct zf_zero_plan {
    int stage, rank, world;
    size_t total;             /* floats of the flat buffer (padding included): Psi */
    size_t own_off, own_n;    /* this rank's slice */
    /* The optimizer's shard: the whole buffer at stage 0, the slice above. */
    size_t opt_off, opt_n;
    /* The buffers the rank keeps between steps (what offloadd reads and
     * writes): [base, base + numel) of the flat buffer each. */
    size_t params_base, params_numel; /* stage 0-2: whole; stage 3: the slice */
    size_t grads_base, grads_numel;   /* stage 0-1: whole; stage 2-3: the slice */
    int n_units;
    zf_zero_unit *units;
    size_t persistent;        /* stage 3: elements kept whole (persistent segments) */
} zf_zero_plan;

/* Units from the table (names of model.h: transformer.wte/wpe, h.<i>.*,
 * ln_f); -1 if they are not contiguous in that order, or on a bad stage,
 * world or rank. */
int zf_zero_plan_init(zf_zero_plan *p, const zf_param_table *t, int n_layer, const zf_zero_options *o, int rank,
                      int world, zf_err *err);
void zf_zero_plan_free(zf_zero_plan *p);

#endif
