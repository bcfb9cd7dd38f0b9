/* zero_rank.c - see zero_rank.h. */
#include "zero_rank.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "zero_memory.h"

void zf_zero_rank_seg_name(char *out, size_t n, const char *what, int rank, int world)
{
    if (world > 1) snprintf(out, n, "%s-r%d", what, rank);
    else snprintf(out, n, "%s", what);
}

int zf_zero_rank_segments(const zf_zero_plan *p, const char *run_id, const zf_model_source *src, zf_shm *params,
                          zf_shm *grads, zf_err *err)
{
    char name[64];
    int64_t np[1] = { (int64_t)p->params_numel }, ng[1] = { (int64_t)p->grads_numel };
    zf_zero_rank_seg_name(name, sizeof name, "params", p->rank, p->world);
    if (zf_shm_create(params, run_id, name, ZF_DTYPE_F32, 1, np, err) != 0) return -1;
    zf_zero_rank_seg_name(name, sizeof name, "grads", p->rank, p->world);
    if (zf_shm_create(grads, run_id, name, ZF_DTYPE_F32, 1, ng, err) != 0) {
        zf_shm_close(params);
        return -1;
    }
    if (zf_model_source_read_range(src, params->data, p->params_base, p->params_numel, err) != 0) {
        zf_shm_close(params);
        zf_shm_close(grads);
        return -1;
    }
    return 0;
}

void zf_zero_rank_opt_init(const zf_zero_plan *p, zf_msg *m)
{
    zf_msg_set_int(m, "shard_offset", (int64_t)p->opt_off);
    zf_msg_set_int(m, "shard_numel", (int64_t)p->opt_n);
    zf_msg_set_int(m, "params_base", (int64_t)p->params_base);
    zf_msg_set_int(m, "grads_base", (int64_t)p->grads_base);
}

int zf_zero_rank_opt_bytes(const zf_msg *r, uint64_t *bytes, zf_err *err)
{
    const char *keys[3] = { "master_shm", "m_shm", "v_shm" };
    *bytes = 0;
    for (int i = 0; i < 3; i++) {
        zf_shm s = { 0 };
        if (zf_shm_attach(&s, zf_msg_str(r, keys[i]), err) != 0) return -1;
        *bytes += s.hdr->data_bytes;
        zf_shm_close(&s);
    }
    return 0;
}

int zf_zero_rank_memory_line(zf_zero *z, const zf_zero_plan *p, const zf_shm *params, const zf_shm *grads,
                             uint64_t optimizer_bytes, char *line, size_t n, int *match, zf_err *err)
{
    zf_zero_setup su = { p->stage, p->world, p->rank, p->total, 4, 1, 0 };
    zf_zero_mem meas = { params->hdr->data_bytes, grads->hdr->data_bytes,
                         optimizer_bytes, ZF_MEM_RANK, ZF_MEM_RANK, ZF_MEM_OFFLOADD, zf_zero_transient_bytes(z) };
    zf_zero_mem expect;
    if (zf_zero_expected(&su, &expect, err) != 0) return -1;
    zf_err why;
    *match = zf_zero_mem_check(&meas, &expect, &why) == 0;
    zf_zero_memory_format(line, n, &su, &meas);
    return 0;
}

void zf_zero_rank_summary(zf_zero *z, int rank, char *line, size_t n)
{
    long hwm_kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    char buf[256];
    while (f && fgets(buf, sizeof buf, f))
        if (sscanf(buf, "VmHWM: %ld kB", &hwm_kb) == 1) break;
    if (f) fclose(f);
    zf_zero_stats st;
    zf_zero_get_stats(z, &st);
    snprintf(line, n, "zero rank %d: peak resident %.1f MB; %ld gathers + %ld prefetches, %ld releases, live peak %zu "
             "parameters; %ld gradient buckets, in flight at most %zu elements",
             rank, hwm_kb >= 0 ? (double)hwm_kb / 1024.0 : -1.0, st.gathers, st.prefetches, st.releases, st.live_peak,
             st.buckets, st.bucket_peak);
}

int zf_zero_rank_nodes(zf_comm *c, const char *run_id, int rank, int world, int local_rank, zf_node_layout *out,
                       zf_err *err)
{
    memset(out, 0, sizeof *out);
    /* rank 0's run id and clock, hashed, for all */
    uint64_t nonce = zf_fnv1a64(ZF_FNV1A64_INIT, run_id, strlen(run_id));
    double now = zf_now();
    nonce = zf_fnv1a64(nonce, &now, sizeof now);
    if (world > 1 && zf_comm_bcast(c, &nonce, sizeof nonce, 0, err) != 0) return -1;
    snprintf(out->nonce, sizeof out->nonce, "%016llx", (unsigned long long)nonce);
    if (local_rank < 0 || world == 1) { /* one node */
        out->first = 0;
        out->count = world;
        out->nodes = 1;
        return 0;
    }
    if (local_rank > rank)
        return zf_err_set(err, "--local_rank %d of rank %d: expected at most the rank (a node's ranks are consecutive)",
                          local_rank, rank);
    /* each node's first rank marks itself; every rank learns them all */
    int *first = zf_xcalloc((size_t)world, sizeof *first);
    first[rank] = local_rank == 0;
    int rc = zf_comm_allreduce_max_int(c, first, world, err);
    if (rc == 0) {
        int mine = rank - local_rank, next = world;
        for (int r = mine + 1; r < world; r++)
            if (first[r]) { next = r; break; }
        if (!first[mine] || rank >= next) {
            rc = zf_err_set(err, "rank %d (local rank %d on its node): expected the ranks of a node to be consecutive "
                            "(mpirun --map-by slot, srun --distribution=block)", rank, local_rank);
        } else {
            out->first = mine;
            out->count = next - mine;
            size_t len = 0;
            for (int r = 0; r < world; r++) {
                if (!first[r]) continue;
                out->nodes++;
                if (r == 0) continue;
                len += (size_t)snprintf(out->others + len, sizeof out->others - len, "%s%d", len ? "," : "", r);
            }
        }
    }
    free(first);
    return rc;
}

int zf_zero_rank_agree_stop(zf_comm *c, int stop_here)
{
    int v = stop_here != 0;
    zf_err err;
    if (zf_comm_allreduce_max_int(c, &v, 1, &err) != 0) return 1; /* cannot agree: stop */
    return v;
}
