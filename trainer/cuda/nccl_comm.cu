/* nccl_comm.cu - see nccl_comm.cuh. */
#include "nccl_comm.cuh"

#include <nccl.h>
#include <stdlib.h>
#include <string.h>

struct zf_nccl {
    ncclComm_t comm;
    int rank, size;
    size_t total, per;
};

static int nccl_fail(zf_err *err, const char *what, ncclResult_t r)
{
    return zf_err_set(err, "nccl: %s: %s", what, ncclGetErrorString(r));
}

#define NK(call)                                                 \
    do {                                                         \
        ncclResult_t r_ = (call);                                \
        if (r_ != ncclSuccess) return nccl_fail(err, #call, r_); \
    } while (0)

static ncclDataType_t nccl_type(zf_gpu_dtype dt)
{
    return dt == ZF_GPU_BF16 ? ncclBfloat16 : dt == ZF_GPU_F16 ? ncclFloat16 : ncclFloat32;
}

zf_nccl *zf_nccl_create(zf_comm *c, size_t total, zf_err *err)
{
    ncclUniqueId id;
    if (c->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) {
            /* the others wait in the broadcast: send them a zero id, which
             * makes their ncclCommInitRank fail instead of hanging */
            memset(&id, 0, sizeof id);
            zf_err e2;
            zf_comm_bcast(c, &id, sizeof id, 0, &e2);
            nccl_fail(err, "ncclGetUniqueId", r);
            return NULL;
        }
    }
    if (zf_comm_bcast(c, &id, sizeof id, 0, err) != 0) return NULL;
    zf_nccl *n = (zf_nccl *)calloc(1, sizeof *n);
    if (!n) {
        zf_err_set(err, "nccl: out of host memory");
        return NULL;
    }
    n->rank = c->rank;
    n->size = c->size;
    n->total = total;
    n->per = (total + (size_t)c->size - 1) / (size_t)c->size;
    ncclResult_t r = ncclCommInitRank(&n->comm, c->size, id, c->rank);
    if (r != ncclSuccess) {
        nccl_fail(err, "ncclCommInitRank", r);
        free(n);
        return NULL;
    }
    return n;
}

void zf_nccl_free(zf_nccl *n)
{
    if (!n) return;
    ncclCommDestroy(n->comm);
    free(n);
}

size_t zf_nccl_capacity(const zf_nccl *n) { return n->per * (size_t)n->size; }

void zf_nccl_slice(const zf_nccl *n, size_t *off, size_t *count) { zf_comm_slice(n->total, n->size, n->rank, off, count); }

int zf_nccl_allreduce(zf_nccl *n, float *buf, cudaStream_t s, zf_err *err)
{
    NK(ncclAllReduce(buf, buf, n->total, ncclFloat32, ncclSum, n->comm, s));
    return 0;
}

int zf_nccl_reduce_scatter(zf_nccl *n, float *buf, cudaStream_t s, zf_err *err)
{
    /* in place: the receive buffer is this rank's block of the send buffer */
    NK(ncclReduceScatter(buf, buf + (size_t)n->rank * n->per, n->per, ncclFloat32, ncclSum, n->comm, s));
    return 0;
}

int zf_nccl_allgather(zf_nccl *n, void *buf, zf_gpu_dtype dt, cudaStream_t s, zf_err *err)
{
    const size_t es = zf_gpu_dtype_size(dt);
    NK(ncclAllGather((char *)buf + (size_t)n->rank * n->per * es, buf, n->per, nccl_type(dt), n->comm, s));
    return 0;
}

/* Rank r's part [*po, *po + *pn) of [lo, hi). */
static void part(const zf_nccl *n, int r, size_t lo, size_t hi, size_t *po, size_t *pn)
{
    zf_comm_part(n->total, n->size, r, lo, hi - lo, po, pn);
}

/* Every owner broadcasts its part (one group: the parts travel at once). */
int zf_nccl_gather_range(zf_nccl *n, void *dst, size_t lo, size_t hi, const void *home, zf_gpu_dtype dt,
                         cudaStream_t s, zf_err *err)
{
    const size_t es = zf_gpu_dtype_size(dt);
    size_t own, own_n;
    zf_nccl_slice(n, &own, &own_n);
    NK(ncclGroupStart());
    for (int r = 0; r < n->size; r++) {
        size_t po, pn;
        part(n, r, lo, hi, &po, &pn);
        if (!pn) continue;
        char *to = (char *)dst + (po - lo) * es;
        const char *from = r == n->rank && home ? (const char *)home + (po - own) * es : to;
        ncclResult_t rc = ncclBroadcast(from, to, pn, nccl_type(dt), r, n->comm, s);
        if (rc != ncclSuccess) {
            ncclGroupEnd();
            return nccl_fail(err, "ncclBroadcast", rc);
        }
    }
    NK(ncclGroupEnd());
    return 0;
}

static __global__ void add_k(float *acc, const float *x, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        acc[i] += x[i];
}

/* Every part reduced into its owner in place (one group), then the owner's
 * part added to its accumulator. */
int zf_nccl_reduce_range_add(zf_nccl *n, float *buf, size_t lo, size_t hi, float *acc, cudaStream_t s, zf_err *err)
{
    NK(ncclGroupStart());
    for (int r = 0; r < n->size; r++) {
        size_t po, pn;
        part(n, r, lo, hi, &po, &pn);
        if (!pn) continue;
        ncclResult_t rc = ncclReduce(buf + (po - lo), buf + (po - lo), pn, ncclFloat32, ncclSum, r, n->comm, s);
        if (rc != ncclSuccess) {
            ncclGroupEnd();
            return nccl_fail(err, "ncclReduce", rc);
        }
    }
    NK(ncclGroupEnd());
    size_t po, pn, own, own_n;
    part(n, n->rank, lo, hi, &po, &pn);
    if (!pn) return 0;
    zf_nccl_slice(n, &own, &own_n);
    const unsigned blocks = (unsigned)(pn / 1024 + 1 < 1024 ? pn / 1024 + 1 : 1024);
    add_k<<<blocks, 256, 0, s>>>(acc + (po - own), buf + (po - lo), pn);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return zf_err_set(err, "nccl: adding the reduced part: %s", cudaGetErrorString(e));
    return 0;
}
