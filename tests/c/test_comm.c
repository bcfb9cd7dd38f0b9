/* test_comm.c - lib/comm.h in a world of one (no MPI call is made: the
 * launcher's variables are absent) and the ZeRO partition plan
 * (trainer/zero_plan.h): slices for uneven world sizes, the intersection of
 * a range with every owner, units and persistent segments, what each stage
 * keeps.  The collectives across ranks are tested under mpirun by
 * tests/test_zero_engine.sh. */
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "model.h"
#include "trainer/zero_plan.h"
#include "tests/c/zf_check.h"

static void test_slices(void)
{
    /* every element owned exactly once, contiguous, in rank order */
    size_t totals[] = { 0, 1, 2, 7, 100, 29600, 173825 };
    for (size_t k = 0; k < sizeof totals / sizeof totals[0]; k++)
        for (int n = 1; n <= 7; n++) {
            size_t next = 0, per = (totals[k] + (size_t)n - 1) / (size_t)n;
            for (int r = 0; r < n; r++) {
                size_t off, cnt;
                zf_comm_slice(totals[k], n, r, &off, &cnt);
                CHECK(cnt == 0 || off == next, "total %zu n %d rank %d: off %zu, expected %zu", totals[k], n, r, off, next);
                CHECK(cnt <= per, "rank %d count %zu > per %zu", r, cnt, per);
                next += cnt;
            }
            CHECK(next == totals[k], "total %zu n %d: owned %zu", totals[k], n, next);
        }
    size_t off, cnt;
    zf_comm_slice(10, 3, 2, &off, &cnt); /* per 4: 0-3, 4-7, 8-9 */
    CHECK(off == 8 && cnt == 2, "uneven last slice %zu +%zu", off, cnt);
    zf_comm_slice(2, 3, 2, &off, &cnt); /* more ranks than elements */
    CHECK(cnt == 0, "empty slice count %zu", cnt);
}

static void test_range_parts(void)
{
    zf_comm c;
    zf_comm_init_single(&c);
    c.size = 3; /* only the arithmetic: no collective is called */
    zf_comm_set_layout(&c, 10);
    size_t po, pn;
    zf_comm_range_part(&c, 0, 2, 5, &po, &pn); /* [2,7) & [0,4) */
    CHECK(po == 2 && pn == 2, "r0 %zu +%zu", po, pn);
    zf_comm_range_part(&c, 1, 2, 5, &po, &pn); /* & [4,8) */
    CHECK(po == 4 && pn == 3, "r1 %zu +%zu", po, pn);
    zf_comm_range_part(&c, 2, 2, 5, &po, &pn); /* & [8,10): empty */
    CHECK(pn == 0, "r2 %zu", pn);
}

static void test_world_of_one(void)
{
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMI_SIZE");
    zf_comm c;
    zf_err err;
    CHECK(zf_comm_init(&c, &err) == 0, "%s", err.msg);
    CHECK(c.size == 1 && c.rank == 0 && !c.mpi, "size %d rank %d mpi %d", c.size, c.rank, c.mpi);
    zf_comm_set_layout(&c, 8);
    float full[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, out[8] = { 0 };
    double d[2] = { 1.5, 2.5 };
    int iv = 3;
    CHECK(zf_comm_allreduce_sum_f64(&c, d, 2, &err) == 0 && d[0] == 1.5 && d[1] == 2.5, "sum of one");
    CHECK(zf_comm_allreduce_max_int(&c, &iv, 1, &err) == 0 && iv == 3, "max of one");
    CHECK(zf_comm_allreduce_sum(&c, full, 8, NULL, &err) == 0 && full[7] == 8, "float sum of one");
    /* reduce-scatter of a range: the range itself is this rank's part */
    zf_comm_req req;
    CHECK(zf_comm_reduce_scatter(&c, full, 2, 3, out, &req, &err) == 0, "%s", err.msg);
    CHECK(zf_comm_wait(&c, &req, &err) == 0 && zf_comm_test(&c, &req, &err) == 1, "inactive request is done");
    CHECK(out[0] == 3 && out[1] == 4 && out[2] == 5, "reduce_scatter copy %g %g %g", out[0], out[1], out[2]);
    CHECK(zf_comm_reduce_scatter(&c, full, 2, 3, NULL, NULL, &err) == 0 && full[2] == 3 && full[4] == 5,
          "in-place reduce_scatter of one leaves the range");
    float own[2] = { -1, -2 };
    CHECK(zf_comm_allgather(&c, full, 6, 2, own, NULL, &err) == 0 && full[6] == -1 && full[7] == -2, "allgather");
    /* bad ranges are errors naming the buffer, not reads past it */
    CHECK(zf_comm_reduce_scatter(&c, full, 6, 3, out, NULL, &err) == -1 && strstr(err.msg, "flat buffer"), "%s",
          err.msg);
    CHECK(zf_comm_allgather(&c, full, 9, 1, own, NULL, &err) == -1, "allgather past the end");
    zf_comm_finalize(&c);
    /* a launcher environment that contradicts itself */
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    setenv("OMPI_COMM_WORLD_RANK", "5", 1);
    CHECK(zf_comm_init(&c, &err) == -1 && strstr(err.msg, "OMPI_COMM_WORLD_SIZE"), "%s", err.msg);
    setenv("OMPI_COMM_WORLD_SIZE", "x", 1);
    CHECK(zf_comm_init(&c, &err) == -1, "non-numeric size accepted");
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("OMPI_COMM_WORLD_RANK");
}

static void test_plan(void)
{
    zf_gpt2_config cfg = { .n_layer = 3, .n_head = 2, .n_embd = 16, .n_positions = 8, .vocab_size = 50,
                           .layer_norm_epsilon = 1e-5f };
    zf_param_table t;
    zf_gpt2_param_table(&cfg, &t);
    zf_err err;
    for (int stage = 0; stage <= 3; stage++)
        for (int n = 1; n <= 3; n++)
            for (int r = 0; r < n; r++) {
                zf_zero_options o = { .stage = stage, .param_persistence_threshold = 100 };
                zf_zero_plan p;
                CHECK(zf_zero_plan_init(&p, &t, cfg.n_layer, &o, r, n, &err) == 0, "%s", err.msg);
                CHECK(p.n_units == cfg.n_layer + 2, "units %d", p.n_units);
                /* units tile the buffer in order; segments tile each unit */
                size_t at = 0, persistent = 0;
                for (int u = 0; u < p.n_units; u++) {
                    CHECK(p.units[u].start == at, "unit %d starts at %zu, expected %zu", u, p.units[u].start, at);
                    size_t s_at = p.units[u].start;
                    for (int s = 0; s < p.units[u].nseg; s++) {
                        CHECK(p.units[u].seg[s].start == s_at, "unit %d seg %d", u, s);
                        s_at = p.units[u].seg[s].end;
                        if (p.units[u].seg[s].persistent) persistent += s_at - p.units[u].seg[s].start;
                    }
                    CHECK(s_at == p.units[u].end, "unit %d segments end at %zu, unit at %zu", u, s_at, p.units[u].end);
                    at = p.units[u].end;
                }
                CHECK(at == t.total, "units end at %zu of %zu", at, t.total);
                CHECK(persistent == p.persistent, "persistent %zu vs %zu", persistent, p.persistent);
                CHECK(stage == 3 ? p.persistent > 0 && p.persistent < t.total : p.persistent == 0, "stage %d persistent %zu",
                      stage, p.persistent);
                /* what the stage keeps */
                size_t off, cnt;
                zf_comm_slice(t.total, n, r, &off, &cnt);
                CHECK(p.own_off == off && p.own_n == cnt, "slice");
                CHECK(p.opt_n == (stage == 0 ? t.total : cnt), "stage %d optimizer shard %zu", stage, p.opt_n);
                CHECK(p.grads_numel == (stage >= 2 ? cnt : t.total), "stage %d grads %zu", stage, p.grads_numel);
                CHECK(p.params_numel == (stage == 3 ? cnt : t.total), "stage %d params %zu", stage, p.params_numel);
                CHECK(p.params_base + p.params_numel <= t.total && p.grads_base + p.grads_numel <= t.total, "bases");
                zf_zero_plan_free(&p);
            }
    zf_zero_options bad = { .stage = 4 };
    zf_zero_plan p;
    CHECK(zf_zero_plan_init(&p, &t, cfg.n_layer, &bad, 0, 1, &err) == -1 && strstr(err.msg, "stage"), "%s", err.msg);
    bad.stage = 1;
    CHECK(zf_zero_plan_init(&p, &t, cfg.n_layer, &bad, 3, 3, &err) == -1, "rank 3 of 3 accepted");
    /* a table that is not GPT-2's layout order */
    zf_tensor_info tmp = t.t[0];
    t.t[0] = t.t[2];
    t.t[2] = tmp;
    CHECK(zf_zero_plan_init(&p, &t, cfg.n_layer, &bad, 0, 1, &err) == -1 && strstr(err.msg, "layout order"), "%s",
          err.msg);
    zf_param_table_free(&t);
}

int main(void)
{
    test_slices();
    test_range_parts();
    test_world_of_one();
    test_plan();
    return zf_check_summary("test_comm");
}
