/* offload_server.h - the offloadd daemon: the CPU optimizer server.
 *
 * Owns: for every trainer rank it serves, that rank's ZeRO shard of the fp32
 * master parameters and the AdamW moments, in shared memory it creates
 * ("master-r<rank>", "adam_m-r<rank>", "adam_v-r<rank>") and the update's
 * progress word ("progress-r<rank>"); applying AdamW to the shard when the
 * rank says its gradients are ready (`grads_ready`), then writing the
 * updated shard into the rank's working parameters (the trainer's "params"
 * segment, converted to its dtype) unless the update is pipelined (below);
 * handing the state to ckptd (`opt_state_req`) and restoring it on resume,
 * also from a checkpoint of another world size (the rank's new partition
 * filled from the saved partitions that overlap it).  One offloadd per node
 * serves the node's ranks (up to ZF_OFFLOAD_MAX_RANKS, by their global rank).
 *
 * When the rank's "params" segment is fp32 and holds exactly its shard (one
 * rank, stage 0, or ZeRO stage 3's slice), that segment IS the master: the update
 * writes the parameters in place, nothing is copied, and opt_state names it
 * as master_shm (the host keeps the fp32 parameters once: 4 bytes a
 * parameter less, what bounds ZeRO-3 with full offload on one GPU). */
#ifndef ZF_OFFLOAD_SERVER_H
#define ZF_OFFLOAD_SERVER_H

#include "options.h"

/* Pipelined updates (grads_ready with pipelined = true): the update runs in
 * offset order and, each time the finished prefix has grown by
 * ZF_OFFLOAD_CHUNK elements, the rank's progress segment ("progress-r<rank>",
 * int64 [8], named in the opt_state reply as progress_shm) holds in word 0
 *   (applied step << ZF_OFFLOAD_STEP_SHIFT) + elements of the shard updated
 * (stored with release order), so the trainer can copy the master's updated
 * prefix while the rest is computed.  "params" is then NOT written (the
 * trainer refreshes it from the master when it reads it); the reply comes
 * when the whole shard is done.  Unpipelined updates and opt_init set the
 * word to (step << shift) + shard_numel.
 *
 * opt_state_req with an integer "step": the trainer kept the optimizer on
 * the GPU and wrote the state into our segments; offloadd adopts the step
 * count (so a checkpoint's optimizer.step is right, and a resume with the
 * optimizer offloaded passes the step check). */
#define ZF_OFFLOAD_STEP_SHIFT 40
#define ZF_OFFLOAD_CHUNK ((size_t)1 << 20)

/* Trainer ranks one offloadd serves (the ranks of its node). */
#define ZF_OFFLOAD_MAX_RANKS 64

int zf_offload_serve(const zf_options *o);

#endif
