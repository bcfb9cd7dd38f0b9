/* zero_rank.h - the trainer process's side of ZeRO (one rank of the pipeline).
 *
 * Owns: the rank's kept shared-memory segments as the stage wants them
 * (parameters whole or the slice, gradients whole or the slice, named per
 * rank so N trainers of one run do not collide), the ZeRO fields of
 * offloadd's opt_init, the per-rank memory report at start (measured from
 * the real segment sizes, offloadd's optimizer segments and the engine's
 * resident working pages, printed with lib/zero_memory.h's line next to the
 * accounting), the decisions all ranks must take together (stop), and the
 * ranks' nodes (which rank speaks for a node's daemons). */
#ifndef ZF_ZERO_RANK_H
#define ZF_ZERO_RANK_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"
#include "log.h"
#include "msg.h"
#include "model_source.h"
#include "shm.h"
#include "zero_engine.h"
#include "zero_plan.h"

/* "what" in a world of one (the names the single-rank pipeline always
 * used), "what-r<rank>" otherwise. */
void zf_zero_rank_seg_name(char *out, size_t n, const char *what, int rank, int world);

/* params: plan->params_numel floats from params_base, read from the model
 * source for that range only (a rank never holds the whole initial model
 * unless it keeps it); grads: plan->grads_numel zeros. */
int zf_zero_rank_segments(const zf_zero_plan *p, const char *run_id, const zf_model_source *src, zf_shm *params,
                          zf_shm *grads, zf_err *err);

/* The optimizer shard and the segments' bases, on an opt_init message. */
void zf_zero_rank_opt_init(const zf_zero_plan *p, zf_msg *m);

/* Bytes of the master/m/v segments named in offloadd's opt_state reply
 * (attached, measured, detached). */
int zf_zero_rank_opt_bytes(const zf_msg *opt_state, uint64_t *bytes, zf_err *err);

/* The report line (lib/zero_memory.h format) of this rank from measured
 * sizes; *match = 1 when they equal the accounting (K = 4, optimizer in
 * offloadd). */
int zf_zero_rank_memory_line(zf_zero *z, const zf_zero_plan *p, const zf_shm *params, const zf_shm *grads,
                             uint64_t optimizer_bytes, char *line, size_t n, int *match, zf_err *err);

/* The closing line of a rank: peak resident memory of the process
 * (VmHWM) and the engine's bookkeeping (stage-3 live peak, gradient
 * buckets). */
void zf_zero_rank_summary(zf_zero *z, int rank, char *line, size_t n);

/* The ranks' nodes.  The launcher tells each rank its index among its
 * node's ranks (local_rank; -1: not known, every rank on one node), and a
 * node's ranks must be consecutive (mpirun --map-by slot, srun's block
 * distribution): one collective gives every rank the layout. */
typedef struct zf_node_layout {
    int first, count;     /* this rank's node: its ranks [first, first + count) */
    int nodes;
    char others[6144];    /* the other nodes' first ranks, "2,4" (for rank 0's checkpoints) */
    char nonce[17];       /* the same 16 hex digits on every rank, new each run: marks its checkpoint parts */
} zf_node_layout;
int zf_zero_rank_nodes(zf_comm *c, const char *run_id, int rank, int world, int local_rank, zf_node_layout *out,
                       zf_err *err);

/* 1 on every rank when any rank asks to stop (a signal), else 0. */
int zf_zero_rank_agree_stop(zf_comm *c, int stop_here);

#endif
