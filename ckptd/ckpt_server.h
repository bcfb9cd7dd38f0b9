/* ckpt_server.h - the ckptd daemon: asynchronous, atomic checkpoints.
 *
 * Owns: taking a consistent snapshot of a run's state when the trainer asks
 * (`ckpt_save`): from offloadd, the optimizer partition (master, adam_m,
 * adam_v) of each rank of its node, copied out of shared memory before
 * answering `ckpt_snapshot` so the trainer can go on at once (at most two
 * snapshots wait for the writer); then compressing and writing them in a
 * background thread with lib/ckpt.c (temp dir, fsync, rename, `latest`),
 * plus config.json and the tokenizer files so that a checkpoint directory
 * is a self-contained model; and `ckpt_wait`, answered when everything asked
 * for is on disk.  Across nodes, a node other than rank 0's writes its part
 * (OUTPUT_DIR/ckpt-parts/node-<first rank>), and rank 0's ckptd takes the
 * parts of this run in before it commits (their files hard-linked as they
 * are, only the masters read, for the model), then removes them.
 * The "model" tensor is placed from the ranks' fp32 masters (see
 * ckpt_consolidate.h), never read from a rank's parameters, and written
 * from them piece by piece (no whole-model buffer).
 *
 * In place: when the copies would not fit the host's available memory
 * (MemAvailable less a tenth, 2 GiB at least; a model near the largest that
 * full offload trains), the segments stay attached, the checkpoint is
 * written from them, and `ckpt_snapshot` is answered only once it is on
 * disk: the trainer (and, through its barrier, every rank) waits, as
 * DeepSpeed's synchronous save does, instead of the host running out of
 * memory.  ZF_CKPT_IN_PLACE=1 or 0 forces the choice (tests, operators). */
#ifndef ZF_CKPT_SERVER_H
#define ZF_CKPT_SERVER_H

#include "options.h"

int zf_ckpt_serve(const zf_options *o);

#endif
