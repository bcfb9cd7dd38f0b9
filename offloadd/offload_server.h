/* offload_server.h - the offloadd daemon: the CPU optimizer server.
 *
 * Owns: for every trainer rank it serves, that rank's ZeRO shard of the fp32
 * master parameters and the AdamW moments, in shared memory it creates
 * ("master-r<rank>", "adam_m-r<rank>", "adam_v-r<rank>"); applying AdamW to
 * the shard when the rank says its gradients are ready (`grads_ready`), then
 * writing the updated shard into the rank's working parameters (the
 * trainer's "params" segment, converted to its dtype); handing the state to
 * ckptd (`opt_state_req`) and restoring it on resume.  One offloadd per node
 * serves all local ranks. */
#ifndef ZF_OFFLOAD_SERVER_H
#define ZF_OFFLOAD_SERVER_H

#include "options.h"

/* Trainer ranks one offloadd serves (the ranks of its node). */
#define ZF_OFFLOAD_MAX_RANKS 64

int zf_offload_serve(const zf_options *o);

#endif
