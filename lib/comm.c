/* comm.c - see comm.h.  The host engine on MPI; a world of one without a
 * launcher never calls MPI. */
#include "comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mpi_fail(zf_err *err, const char *what, int rc)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    return zf_err_set(err, "comm: %s: expected MPI_SUCCESS, got %s", what, s);
}

static MPI_Comm world(const zf_comm *c) { return *(MPI_Comm *)c->impl; }

static int env_int(const char *a, const char *b, int dflt)
{
    const char *v = getenv(a);
    if ((!v || !*v) && b) v = getenv(b);
    if (!v || !*v) return dflt;
    char *end;
    long x = strtol(v, &end, 10);
    return *end || x < 0 || x > INT_MAX ? -1 : (int)x;
}

void zf_comm_slice(size_t total, int size, int r, size_t *off, size_t *n)
{
    size_t per = size > 0 ? (total + (size_t)size - 1) / (size_t)size : total;
    size_t o = per * (size_t)r;
    *off = o > total ? total : o;
    *n = o >= total ? 0 : (total - o < per ? total - o : per);
}

void zf_comm_set_layout(zf_comm *c, size_t total)
{
    c->total = total;
    c->per = (total + (size_t)c->size - 1) / (size_t)c->size;
}

void zf_comm_part(size_t total, int size, int r, size_t off, size_t n, size_t *part_off, size_t *part_n)
{
    size_t so, sn;
    zf_comm_slice(total, size, r, &so, &sn);
    size_t lo = off > so ? off : so, hi = off + n < so + sn ? off + n : so + sn;
    *part_off = lo;
    *part_n = hi > lo ? hi - lo : 0;
}

void zf_comm_range_part(const zf_comm *c, int r, size_t off, size_t n, size_t *part_off, size_t *part_n)
{
    zf_comm_part(c->total, c->size, r, off, n, part_off, part_n);
}

/* Per-owner counts and displacements (relative to off) of a range. */
static int range_counts(const zf_comm *c, size_t off, size_t n, int **counts, int **displs, zf_err *err)
{
    if (off + n > c->total)
        return zf_err_set(err, "comm: range [%zu, %zu): expected within the flat buffer of %zu floats", off, off + n,
                          c->total);
    if (n > (size_t)INT_MAX)
        return zf_err_set(err, "comm: range of %zu floats: expected at most %d per collective (use buckets)", n,
                          INT_MAX);
    *counts = zf_xcalloc((size_t)c->size, sizeof(int));
    *displs = zf_xcalloc((size_t)c->size, sizeof(int));
    for (int r = 0; r < c->size; r++) {
        size_t po, pn;
        zf_comm_range_part(c, r, off, n, &po, &pn);
        (*counts)[r] = (int)pn;
        (*displs)[r] = pn ? (int)(po - off) : 0;
    }
    return 0;
}

static void req_take(zf_comm_req *req, MPI_Request h, int *counts, int *displs)
{
    req->active = 1;
    req->handle = zf_xmalloc(sizeof(MPI_Request));
    *(MPI_Request *)req->handle = h;
    req->counts = counts;
    req->displs = displs;
}

static void req_done(zf_comm_req *req)
{
    free(req->handle);
    free(req->counts);
    free(req->displs);
    memset(req, 0, sizeof *req);
}

/* ------------------------------------------------------- host engine */

static int mpi_allreduce_sum(zf_comm *c, float *buf, size_t n, zf_comm_req *req, zf_err *err)
{
    if (n > (size_t)INT_MAX) return zf_err_set(err, "comm: allreduce of %zu floats: expected at most %d", n, INT_MAX);
    c->bytes_sent += (long)(n * sizeof(float));
    if (!req) {
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, world(c));
        return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "MPI_Allreduce", rc);
    }
    MPI_Request h;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, world(c), &h);
    if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Iallreduce", rc);
    req_take(req, h, NULL, NULL);
    return 0;
}

static int mpi_reduce_scatter(zf_comm *c, const float *full, size_t off, size_t n, float *out, zf_comm_req *req,
                              zf_err *err)
{
    int *counts, *displs;
    if (range_counts(c, off, n, &counts, &displs, err) != 0) return -1;
    static float dummy;
    /* in place: MPI takes the input from the receive buffer and leaves the
     * rank's result at its start */
    const void *send = out ? (const void *)(full + off) : MPI_IN_PLACE;
    float *recv = !out ? (float *)full + off : counts[c->rank] ? out : &dummy;
    c->bytes_sent += (long)(n * sizeof(float));
    int rc;
    if (!req) {
        rc = MPI_Reduce_scatter(send, recv, counts, MPI_FLOAT, MPI_SUM, world(c));
        free(counts);
        free(displs);
        return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "MPI_Reduce_scatter", rc);
    }
    MPI_Request h;
    rc = MPI_Ireduce_scatter(send, recv, counts, MPI_FLOAT, MPI_SUM, world(c), &h);
    if (rc != MPI_SUCCESS) {
        free(counts);
        free(displs);
        return mpi_fail(err, "MPI_Ireduce_scatter", rc);
    }
    req_take(req, h, counts, displs);
    return 0;
}

static int mpi_allgather(zf_comm *c, float *full, size_t off, size_t n, const float *own, zf_comm_req *req,
                         zf_err *err)
{
    int *counts, *displs;
    if (range_counts(c, off, n, &counts, &displs, err) != 0) return -1;
    int mine = counts[c->rank];
    /* own may be this rank's place in full itself: MPI forbids aliasing the
     * send buffer with the receive buffer, MPI_IN_PLACE says it. */
    const void *send = mine == 0 || own == full + off + displs[c->rank] ? MPI_IN_PLACE : (const void *)own;
    c->bytes_sent += (long)((size_t)mine * sizeof(float));
    int rc;
    if (!req) {
        rc = MPI_Allgatherv(send, mine, MPI_FLOAT, full + off, counts, displs, MPI_FLOAT, world(c));
        free(counts);
        free(displs);
        return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "MPI_Allgatherv", rc);
    }
    MPI_Request h;
    rc = MPI_Iallgatherv(send, mine, MPI_FLOAT, full + off, counts, displs, MPI_FLOAT, world(c), &h);
    if (rc != MPI_SUCCESS) {
        free(counts);
        free(displs);
        return mpi_fail(err, "MPI_Iallgatherv", rc);
    }
    req_take(req, h, counts, displs);
    return 0;
}

static const zf_comm_ops mpi_ops = { "mpi", mpi_allreduce_sum, mpi_reduce_scatter, mpi_allgather };

/* ------------------------------------------------------ world of one */

static int one_allreduce_sum(zf_comm *c, float *buf, size_t n, zf_comm_req *req, zf_err *err)
{
    (void)c, (void)buf, (void)n, (void)req, (void)err;
    return 0;
}

static int one_reduce_scatter(zf_comm *c, const float *full, size_t off, size_t n, float *out, zf_comm_req *req,
                              zf_err *err)
{
    (void)req;
    if (off + n > c->total)
        return zf_err_set(err, "comm: range [%zu, %zu): expected within the flat buffer of %zu floats", off, off + n,
                          c->total);
    if (n && out && out != full + off) memmove(out, full + off, n * sizeof(float));
    return 0;
}

static int one_allgather(zf_comm *c, float *full, size_t off, size_t n, const float *own, zf_comm_req *req,
                         zf_err *err)
{
    (void)req;
    if (off + n > c->total)
        return zf_err_set(err, "comm: range [%zu, %zu): expected within the flat buffer of %zu floats", off, off + n,
                          c->total);
    if (n && own != full + off) memmove(full + off, own, n * sizeof(float));
    return 0;
}

static const zf_comm_ops one_ops = { "single", one_allreduce_sum, one_reduce_scatter, one_allgather };

/* ------------------------------------------------------------- setup */

void zf_comm_init_single(zf_comm *c)
{
    memset(c, 0, sizeof *c);
    c->size = c->local_size = 1;
    c->ops = &one_ops;
}

int zf_comm_init(zf_comm *c, zf_err *err)
{
    zf_comm_init_single(c);
    int size = env_int("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", 1);
    int rank = env_int("OMPI_COMM_WORLD_RANK", "PMI_RANK", 0);
    if (size < 1 || rank < 0 || rank >= size)
        return zf_err_set(err, "comm: OMPI_COMM_WORLD_SIZE/RANK (or PMI_SIZE/RANK): expected 0 <= rank < size, "
                               "got rank %d of %d", rank, size);
    if (size == 1 && !getenv("OMPI_COMM_WORLD_SIZE")) return 0; /* no launcher: no MPI at all */
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int rc = MPI_Init(NULL, NULL);
        if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Init", rc);
    }
    MPI_Comm *w = zf_xmalloc(sizeof *w);
    /* errors come back as codes, so they are reported, not aborted on */
    MPI_Comm_dup(MPI_COMM_WORLD, w);
    MPI_Comm_set_errhandler(*w, MPI_ERRORS_RETURN);
    c->impl = w;
    c->mpi = 1;
    MPI_Comm_rank(*w, &c->rank);
    MPI_Comm_size(*w, &c->size);
    MPI_Comm node;
    MPI_Comm_split_type(*w, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    c->ops = &mpi_ops;
    if (c->size != size || c->rank != rank) {
        int r = c->rank, s = c->size;
        zf_comm_finalize(c);
        return zf_err_set(err, "comm: MPI world: expected rank %d of %d (launcher environment), got %d of %d", rank,
                          size, r, s);
    }
    return 0;
}

void zf_comm_finalize(zf_comm *c)
{
    if (c->mpi) {
        MPI_Comm_free((MPI_Comm *)c->impl);
        free(c->impl);
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
    }
    zf_comm_init_single(c);
}

/* ----------------------------------------------------------- scalars */

static int allreduce_sum_f64_untimed(zf_comm *c, double *v, int n, zf_err *err)
{
    if (!c->mpi) return 0;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, world(c));
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "MPI_Allreduce(sum of doubles)", rc);
}

static int allreduce_max_int_untimed(zf_comm *c, int *v, int n, zf_err *err)
{
    if (!c->mpi) return 0;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT, MPI_MAX, world(c));
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "MPI_Allreduce(max of ints)", rc);
}

static int barrier_untimed(zf_comm *c, zf_err *err)
{
    if (!c->mpi) return 0;
    int rc = MPI_Barrier(world(c));
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "MPI_Barrier", rc);
}

static int bcast_untimed(zf_comm *c, void *buf, size_t bytes, int root, zf_err *err)
{
    if (!c->mpi) return 0;
    if (root < 0 || root >= c->size) return zf_err_set(err, "comm: bcast root: expected 0..%d, got %d", c->size - 1, root);
    for (size_t done = 0; done < bytes;) { /* MPI counts are ints */
        size_t k = bytes - done < (size_t)INT_MAX ? bytes - done : (size_t)INT_MAX;
        int rc = MPI_Bcast((char *)buf + done, (int)k, MPI_BYTE, root, world(c));
        if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Bcast", rc);
        done += k;
    }
    return 0;
}

/* ------------------------------------------------------------ ranges */

static int allreduce_sum_untimed(zf_comm *c, float *buf, size_t n, zf_comm_req *req, zf_err *err)
{
    if (req) memset(req, 0, sizeof *req);
    return c->ops->allreduce_sum(c, buf, n, req, err);
}

static int reduce_scatter_untimed(zf_comm *c, const float *full, size_t off, size_t n, float *out, zf_comm_req *req,
                                  zf_err *err)
{
    if (req) memset(req, 0, sizeof *req);
    return c->ops->reduce_scatter(c, full, off, n, out, req, err);
}

static int allgather_untimed(zf_comm *c, float *full, size_t off, size_t n, const float *own, zf_comm_req *req, zf_err *err)
{
    if (req) memset(req, 0, sizeof *req);
    return c->ops->allgather(c, full, off, n, own, req, err);
}

static int wait_untimed(zf_comm *c, zf_comm_req *req, zf_err *err)
{
    (void)c;
    if (!req || !req->active) return 0;
    int rc = MPI_Wait((MPI_Request *)req->handle, MPI_STATUS_IGNORE);
    req_done(req);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "MPI_Wait", rc);
}

static int test_untimed(zf_comm *c, zf_comm_req *req, zf_err *err)
{
    (void)c;
    if (!req || !req->active) return 1;
    int flag = 0;
    int rc = MPI_Test((MPI_Request *)req->handle, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        req_done(req);
        return mpi_fail(err, "MPI_Test", rc);
    }
    if (flag) req_done(req);
    return flag;
}

/* ------------------------------------------ the public calls, timed */

/* The call's wall time added to c->busy_s under MPI (a world of one
 * communicates nothing), its result returned. */
#define TIMED(c, call)                          \
    do {                                        \
        if (!(c)->mpi) return (call);           \
        const double t0_ = zf_now();            \
        const int rc_ = (call);                 \
        (c)->busy_s += zf_now() - t0_;          \
        return rc_;                             \
    } while (0)

int zf_comm_allreduce_sum_f64(zf_comm *c, double *v, int n, zf_err *err)
{ TIMED(c, allreduce_sum_f64_untimed(c, v, n, err)); }

int zf_comm_allreduce_max_int(zf_comm *c, int *v, int n, zf_err *err)
{ TIMED(c, allreduce_max_int_untimed(c, v, n, err)); }

int zf_comm_barrier(zf_comm *c, zf_err *err)
{ TIMED(c, barrier_untimed(c, err)); }

int zf_comm_bcast(zf_comm *c, void *buf, size_t bytes, int root, zf_err *err)
{ TIMED(c, bcast_untimed(c, buf, bytes, root, err)); }

int zf_comm_allreduce_sum(zf_comm *c, float *buf, size_t n, zf_comm_req *req, zf_err *err)
{ TIMED(c, allreduce_sum_untimed(c, buf, n, req, err)); }

int zf_comm_reduce_scatter(zf_comm *c, const float *full, size_t off, size_t n, float *out, zf_comm_req *req,
                           zf_err *err)
{ TIMED(c, reduce_scatter_untimed(c, full, off, n, out, req, err)); }

int zf_comm_allgather(zf_comm *c, float *full, size_t off, size_t n, const float *own, zf_comm_req *req, zf_err *err)
{ TIMED(c, allgather_untimed(c, full, off, n, own, req, err)); }

int zf_comm_wait(zf_comm *c, zf_comm_req *req, zf_err *err)
{ TIMED(c, wait_untimed(c, req, err)); }

int zf_comm_test(zf_comm *c, zf_comm_req *req, zf_err *err)
{ TIMED(c, test_untimed(c, req, err)); }
