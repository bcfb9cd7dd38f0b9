/* nccl_comm.cuh - the data-parallel collectives of GPU ranks (zf_nccl).
 *
 * Owns: one NCCL communicator for the run's ranks (one rank per GPU), made
 * from the host engine of lib/comm.h: rank 0's ncclUniqueId reaches the
 * others through zf_comm_bcast (MPI under mpirun or srun), then every rank
 * joins with ncclCommInitRank on its current device.
 *
 * The collectives work in place on the device's flat buffers, partitioned
 * as lib/comm.h partitions them: rank r owns [r*per, min((r+1)*per, total)),
 * per = ceil(total / size).  NCCL's reduce-scatter and all-gather need equal
 * counts on every rank, so the buffers they run on hold per * size elements
 * (zf_nccl_capacity; the tail past total is padding that no one reads).
 * Everything is queued on the caller's stream (no host synchronisation).
 *
 * Stage 3 moves ranges (one layer) instead of whole buffers: each owner
 * broadcasts or receives the reduction of its part, in one NCCL group.
 *
 * Scalars (flags, norms, losses) stay on the host engine: they are few and
 * the host decides with them. */
#ifndef ZF_NCCL_COMM_CUH
#define ZF_NCCL_COMM_CUH

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "matmul.cuh" /* zf_gpu_dtype */

#ifdef __cplusplus
extern "C" {
#endif

#include "comm.h"

typedef struct zf_nccl zf_nccl;

/* A collective: every rank of c calls it, each with its GPU current.
 * total: the flat buffer's floats (the partition). */
zf_nccl *zf_nccl_create(zf_comm *c, size_t total, zf_err *err);
void zf_nccl_free(zf_nccl *n);

/* Elements a buffer needs for the in-place collectives: per * size. */
size_t zf_nccl_capacity(const zf_nccl *n);
/* This rank's slice of the partition. */
void zf_nccl_slice(const zf_nccl *n, size_t *off, size_t *count);

/* buf[0, total) summed over ranks, in place (fp32). */
int zf_nccl_allreduce(zf_nccl *n, float *buf, cudaStream_t s, zf_err *err);
/* buf holds capacity floats; afterwards this rank's slice of buf holds the
 * slice summed over ranks (the rest is undefined). */
int zf_nccl_reduce_scatter(zf_nccl *n, float *buf, cudaStream_t s, zf_err *err);
/* buf holds capacity elements of type dt; every rank's slice of buf lands in
 * every rank's buf. */
int zf_nccl_allgather(zf_nccl *n, void *buf, zf_gpu_dtype dt, cudaStream_t s, zf_err *err);

/* ZeRO stage 3, any range [lo, hi) of the flat buffer (a layer):
 * gather_range: dst holds the range's elements of type dt; each rank's part
 * of the range, taken from its home (its slice, from its own offset; NULL:
 * the part is in dst already), lands in every rank's dst.  reduce_range_add: buf holds the range's fp32
 * gradients of this rank; the sum over ranks of each rank's part is ADDED to
 * that rank's acc (its slice, from its own offset); buf is left undefined. */
int zf_nccl_gather_range(zf_nccl *n, void *dst, size_t lo, size_t hi, const void *home, zf_gpu_dtype dt,
                         cudaStream_t s, zf_err *err);
int zf_nccl_reduce_range_add(zf_nccl *n, float *buf, size_t lo, size_t hi, float *acc, cudaStream_t s, zf_err *err);

#ifdef __cplusplus
}
#endif

#endif
