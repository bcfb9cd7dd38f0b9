/* shard_optimizer.h - the optimizer of one ZeRO shard (offloadd's core).
 *
 * Owns: applying AdamW to a contiguous shard [shard_offset, shard_offset +
 * shard_numel) of the flat fp32 parameter buffer, whose fp32 master copy and
 * moments live in caller-owned (shared) memory, with the lr of the DeepSpeed
 * schedule and weight decay only on decay tensors.  Also the global-norm
 * clipping helpers the trainer uses (each rank sums the squares of its
 * gradients, the sums are added across ranks, then zf_clip_coef).
 *
 * The update of an element depends only on that element, the step and the
 * scalars, so a shard's result is identical to updating the whole buffer at
 * once, for any sharding and any thread count. */
#ifndef ZF_SHARD_OPTIMIZER_H
#define ZF_SHARD_OPTIMIZER_H

#include <stddef.h>
#include "log.h"
#include "adamw.h"
#include "lr_schedule.h"

/* Absolute offsets in the flat buffer; together they cover the whole buffer
 * (in any order, without overlap).  decay = 1: weight decay applies. */
typedef struct zf_decay_range { size_t offset, numel; int decay; } zf_decay_range;

typedef struct zf_shard_opt zf_shard_opt;

/* Check that ranges tile [0, total_numel) exactly; -1 with the first range
 * at fault otherwise. */
int zf_decay_ranges_check(const zf_decay_range *ranges, int nranges, size_t total_numel, zf_err *err);

/* master, m, v: shard_numel floats each, caller-owned (shared memory), left
 * as they are (the caller initialises them: master = initial params, m = v = 0,
 * or a checkpoint).  h->lr is ignored when sched is given (sched->base_lr is
 * the optimizer lr); sched NULL = constant h->lr.  Returns NULL if the ranges
 * do not cover the shard exactly or the schedule is invalid; the _checked
 * variant says why. */
zf_shard_opt *zf_shard_opt_create(size_t shard_offset, size_t shard_numel, const zf_decay_range *ranges, int nranges,
                                  const zf_adamw_hparams *h, const zf_lr_schedule *sched,
                                  float *master, float *m, float *v);
zf_shard_opt *zf_shard_opt_create_checked(size_t shard_offset, size_t shard_numel, const zf_decay_range *ranges,
                                          int nranges, const zf_adamw_hparams *h, const zf_lr_schedule *sched,
                                          float *master, float *m, float *v, zf_err *err);

/* Apply applied-step number `step` (1-based; steps skipped for overflow do
 * not count) using this shard's gradients (shard_numel floats): lr =
 * zf_lr_at(sched, step), each grad multiplied by grad_scale (= clip_coef /
 * loss_scale), decay only on decay ranges.  Returns the lr used. */
double zf_shard_opt_step(zf_shard_opt *o, const float *shard_grads, long step, float grad_scale);

/* The same update (bitwise), done in offset order (all threads, items of
 * 32K elements handed out in order, no barrier): done(ctx, upto) says that
 * elements [0, upto) of the shard hold their new values, each time the
 * finished prefix has grown by at least `chunk` elements, and once at the end
 * with shard_numel (called by one thread at a time, in increasing order).
 * Lets a consumer copy the updated parameters while the rest is computed. */
double zf_shard_opt_step_chunked(zf_shard_opt *o, const float *shard_grads, long step, float grad_scale, size_t chunk,
                                 void (*done)(void *ctx, size_t upto), void *ctx);

/* The lr zf_shard_opt_step would use for `step`. */
double zf_shard_opt_lr(const zf_shard_opt *o, long step);

void zf_shard_opt_free(zf_shard_opt *o);

/* Sum of squares in double, deterministic: the partition into blocks and the
 * order of every addition depend only on n, never on the thread count or the
 * vector width. */
double zf_sum_squares(const float *g, size_t n);

/* Its exact recipe, for a reimplementation that must give the same bits (the
 * GPU's): blocks of *block elements (the last shorter), *nblocks of them
 * (at most 256); in each block 16 double lanes, element k of the block added
 * (as (double)x * x) to lane k % 16 in increasing k; a block's sum is
 * ((0 + lane 0) + lane 1) + ... + lane 15; the total is the blocks' sums
 * added from 0 in block order (one block: that block's sum). */
#define ZF_SUMSQ_LANES 16
#define ZF_SUMSQ_MAX_BLOCKS 256
void zf_sum_squares_plan(size_t n, size_t *block, size_t *nblocks);

/* torch.nn.utils.clip_grad_norm_ semantics: min(1, max_norm / (total_norm +
 * 1e-6)) computed in float32 as torch does with its float32 total norm
 * ((1 / (norm + 1e-6)) * max_norm, torch's scalar / tensor);
 * max_norm <= 0 -> 1 (clipping off).  A nan total norm gives nan and an
 * infinite one 0, as in torch. */
float zf_clip_coef(double total_norm, double max_norm);

#endif
