/* comm.h - collectives between data-parallel ranks (zf_comm).
 *
 * Owns: the one place where zeroflow talks to a collective engine.  CPU
 * ranks use MPI (Open MPI); MPI is initialised from the environment that
 * mpirun / srun set (OMPI_COMM_WORLD_SIZE/RANK/LOCAL_RANK, or PMI_SIZE/
 * PMI_RANK), and a world of one without a launcher makes NO MPI call at all
 * (every collective is then a copy or a no-op).
 *
 * Buffers: the float-range collectives work on the flat parameter/gradient
 * buffer of model.h, partitioned as ZeRO partitions it: rank r owns the
 * contiguous slice [r*per, min((r+1)*per, total)), per = ceil(total/size)
 * (zf_comm_slice).  A collective on a range [off, off+n) of the flat buffer
 * exchanges, with each owner, the intersection of the range with the owner's
 * slice (possibly empty).
 *
 * Engines: the float-range operations go through a table of functions
 * (zf_comm_ops) chosen at init: MPI, or the copies of a world of one without
 * MPI.  The scalar operations (flags, norms, losses) always go through the
 * host engine.  GPU ranks' device collectives are trainer/cuda/nccl_comm.cuh
 * (typed, in place, queued on a stream), made from this comm: NCCL's id
 * travels through zf_comm_bcast, and it shares zf_comm_slice's partition.
 *
 * Threads: call from the thread that called zf_comm_init only (MPI is
 * initialised without thread support; OpenMP regions never communicate). */
#ifndef ZF_COMM_H
#define ZF_COMM_H

#include <stddef.h>

#include "log.h"

/* A pending non-blocking operation.  Holds the count arrays the engine
 * reads until completion, so it must stay at a fixed address until
 * zf_comm_wait (or a zf_comm_test returning 1). */
typedef struct zf_comm_req {
    int active;
    void *handle;            /* the engine's request (MPI_Request) */
    int *counts, *displs;    /* owned, freed on completion */
} zf_comm_req;

typedef struct zf_comm zf_comm;

/* Float-range collectives of one engine (MPI, or a world of one). */
typedef struct zf_comm_ops {
    const char *name;
    /* buf[0..n) summed over ranks, in place.  req NULL = blocking. */
    int (*allreduce_sum)(zf_comm *c, float *buf, size_t n, zf_comm_req *req, zf_err *err);
    /* full = the flat buffer (base address); range [off, off+n); out receives
     * this rank's intersection (zf_comm_range_part), summed over ranks.  out
     * NULL: in place, the sum lands at full + off (the start of the range;
     * the rest of the range is then undefined), so no receive buffer. */
    int (*reduce_scatter)(zf_comm *c, const float *full, size_t off, size_t n, float *out, zf_comm_req *req,
                          zf_err *err);
    /* Every rank's intersection of [off, off+n), taken from own (this rank's
     * part, may alias full + its offset), lands in full at its place. */
    int (*allgather)(zf_comm *c, float *full, size_t off, size_t n, const float *own, zf_comm_req *req, zf_err *err);
} zf_comm_ops;

struct zf_comm {
    int rank, size;            /* in the world */
    int local_rank, local_size; /* on this node (offloadd serves the node) */
    int mpi;                   /* 1: MPI initialised by zf_comm_init */
    size_t total, per;         /* the partitioned flat buffer (zf_comm_set_layout) */
    const zf_comm_ops *ops;
    void *impl;
    long bytes_sent;           /* float-range payload this rank contributed, for the logs */
    double busy_s;             /* seconds inside the calls below under MPI (issuing, waiting,
                                  testing): the time in communication a step reports */
};

/* From the launcher's environment; world 1 without one.  A launcher that
 * says size > 1 but an MPI that cannot start is an error. */
int zf_comm_init(zf_comm *c, zf_err *err);
/* A world of one without MPI (tests, the single-process pipeline). */
void zf_comm_init_single(zf_comm *c);
void zf_comm_finalize(zf_comm *c);

/* The flat buffer the range collectives partition (total floats). */
void zf_comm_set_layout(zf_comm *c, size_t total);

/* Rank r's slice of a buffer of `total` floats over `size` ranks. */
void zf_comm_slice(size_t total, int size, int r, size_t *off, size_t *n);
/* Intersection of [off, off+n) with rank r's slice of `total` floats over
 * `size` ranks: the element offset in the flat buffer and the count (0 when
 * disjoint).  zf_comm_range_part: the same over c's layout. */
void zf_comm_part(size_t total, int size, int r, size_t off, size_t n, size_t *part_off, size_t *part_n);
void zf_comm_range_part(const zf_comm *c, int r, size_t off, size_t n, size_t *part_off, size_t *part_n);

/* Scalars (host engine, blocking). */
int zf_comm_allreduce_sum_f64(zf_comm *c, double *v, int n, zf_err *err);
int zf_comm_allreduce_max_int(zf_comm *c, int *v, int n, zf_err *err);
int zf_comm_barrier(zf_comm *c, zf_err *err);
/* bytes from root to every rank. */
int zf_comm_bcast(zf_comm *c, void *buf, size_t bytes, int root, zf_err *err);

/* Float ranges through c->ops (see zf_comm_ops). */
int zf_comm_allreduce_sum(zf_comm *c, float *buf, size_t n, zf_comm_req *req, zf_err *err);
int zf_comm_reduce_scatter(zf_comm *c, const float *full, size_t off, size_t n, float *out, zf_comm_req *req,
                           zf_err *err);
int zf_comm_allgather(zf_comm *c, float *full, size_t off, size_t n, const float *own, zf_comm_req *req, zf_err *err);

/* Completion of a non-blocking operation: wait blocks; test returns 1 when
 * done, 0 when pending (and drives MPI's progress), -1 on error.  Both
 * accept an inactive request (done). */
int zf_comm_wait(zf_comm *c, zf_comm_req *req, zf_err *err);
int zf_comm_test(zf_comm *c, zf_comm_req *req, zf_err *err);

#endif
