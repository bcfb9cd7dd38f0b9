/* test_zero_memory.c - lib/zero_memory.c: ZeRO's per-rank accounting against
 * the issue's (and the ZeRO paper's) numbers for K = 2, its generalisation
 * to K = 4 with uneven partitions, the places, and the report line's format
 * and parser (incl. malformed lines). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "zero_memory.h"
#include "zf_check.h"

static uint64_t per_rank(int stage, int world, int rank, uint64_t psi, int k, int offload)
{
    zf_zero_setup s = { stage, world, rank, psi, k, offload, 0 };
    zf_zero_mem m;
    zf_err err;
    if (zf_zero_expected(&s, &m, &err) != 0) {
        CHECK(0, "%s", err.msg);
        return 0;
    }
    return m.params + m.grads + m.optimizer;
}

/* The issue's formulas (K = 2, mixed precision), Psi divisible by N. */
static void test_issue_numbers(void)
{
    uint64_t psi = 7500000000ull; /* the paper's 7.5B model on 64 GPUs */
    int n = 64;
    CHECK(per_rank(0, n, 5, psi, 2, 0) == 16 * psi, "stage 0: %" PRIu64, per_rank(0, n, 5, psi, 2, 0));
    CHECK(per_rank(1, n, 5, psi, 2, 0) == 4 * psi + 12 * psi / n, "stage 1");
    CHECK(per_rank(2, n, 5, psi, 2, 0) == 2 * psi + 14 * psi / n, "stage 2");
    CHECK(per_rank(3, n, 5, psi, 2, 0) == 16 * psi / n, "stage 3");
    /* the paper's table (GB = 1e9 bytes): 120, 31.4, 16.6, 1.9 */
    CHECK(per_rank(0, n, 0, psi, 2, 0) == 120000000000ull, "120 GB");
    CHECK(per_rank(1, n, 0, psi, 2, 0) == 31406250000ull, "31.4 GB: %" PRIu64, per_rank(1, n, 0, psi, 2, 0));
    CHECK(per_rank(2, n, 0, psi, 2, 0) == 16640625000ull, "16.6 GB: %" PRIu64, per_rank(2, n, 0, psi, 2, 0));
    CHECK(per_rank(3, n, 0, psi, 2, 0) == 1875000000ull, "1.9 GB: %" PRIu64, per_rank(3, n, 0, psi, 2, 0));
    /* every rank alike when N divides Psi; the job's total */
    for (int st = 0; st < 4; st++) {
        zf_zero_setup s = { st, 4, 0, 1200, 2, 0, 0 };
        uint64_t expect_total[4] = { 4 * 16 * 1200, 4 * 4 * 1200 + 12 * 1200, 4 * 2 * 1200 + 14 * 1200, 16 * 1200 };
        CHECK(zf_zero_expected_total(&s) == expect_total[st], "stage %d total %" PRIu64, st, zf_zero_expected_total(&s));
        for (int r = 1; r < 4; r++)
            CHECK(per_rank(st, 4, r, 1200, 2, 0) == per_rank(st, 4, 0, 1200, 2, 0), "stage %d rank %d", st, r);
    }
}

/* K = 4 (the CPU ranks) and N = 3 with an uneven split. */
static void test_uneven_k4(void)
{
    uint64_t psi = 1000; /* per = 334: 334, 334, 332 */
    uint64_t off, num, sum = 0, parts[3] = { 334, 334, 332 };
    for (int r = 0; r < 3; r++) {
        zf_zero_partition(psi, 3, r, &off, &num);
        CHECK(off == 334u * (uint64_t)r && num == parts[r], "rank %d: [%" PRIu64 ", +%" PRIu64 ")", r, off, num);
        sum += num;
        zf_zero_setup s = { 0, 3, r, psi, 4, 1, 0 };
        zf_zero_mem m;
        zf_err err;
        for (s.stage = 0; s.stage < 4; s.stage++) {
            CHECK(zf_zero_expected(&s, &m, &err) == 0, "%s", err.msg);
            uint64_t p = parts[r];
            uint64_t ep[4] = { 4 * psi, 4 * psi, 4 * psi, 4 * p }, eg[4] = { 4 * psi, 4 * psi, 4 * p, 4 * p };
            uint64_t eo[4] = { 12 * psi, 12 * p, 12 * p, 12 * p };
            CHECK(m.params == ep[s.stage] && m.grads == eg[s.stage] && m.optimizer == eo[s.stage],
                  "stage %d rank %d: %" PRIu64 " %" PRIu64 " %" PRIu64, s.stage, r, m.params, m.grads, m.optimizer);
            /* offloaded optimizer: on offloadd, not on the rank */
            CHECK(m.optimizer_where == ZF_MEM_OFFLOADD && zf_zero_on_rank(&m) == m.params + m.grads, "offload place");
        }
    }
    CHECK(sum == psi, "partitions cover psi: %" PRIu64, sum);
    /* more ranks than elements: the last ranks own nothing */
    zf_zero_partition(2, 3, 2, &off, &num);
    CHECK(num == 0 && off == 2, "empty partition: off %" PRIu64 " numel %" PRIu64, off, num);
    CHECK(per_rank(3, 3, 2, 2, 4, 0) == 0, "stage 3 empty rank holds nothing");
    /* (2K + 12) Psi / N in total at stage 3, whatever the split */
    zf_zero_setup s3 = { 3, 3, 0, psi, 4, 0, 0 };
    CHECK(zf_zero_expected_total(&s3) == 20 * psi, "stage 3 total %" PRIu64, zf_zero_expected_total(&s3));
    zf_zero_setup s2 = { 2, 3, 0, psi, 4, 0, 0 };
    CHECK(zf_zero_expected_total(&s2) == 3 * 4 * psi + 16 * psi, "stage 2 total");
}

static void test_places(void)
{
    zf_zero_setup s = { 3, 2, 1, 100, 2, 1, 1 };
    zf_zero_mem m;
    zf_err err;
    CHECK(zf_zero_expected(&s, &m, &err) == 0, "%s", err.msg);
    CHECK(m.params_where == ZF_MEM_HOST && m.grads_where == ZF_MEM_RANK && m.optimizer_where == ZF_MEM_OFFLOADD,
          "stage 3 + offload_param: %d %d %d", m.params_where, m.grads_where, m.optimizer_where);
    CHECK(zf_zero_on_rank(&m) == m.grads, "only grads on the device");
    s.stage = 2; /* offload_param means nothing below stage 3 */
    CHECK(zf_zero_expected(&s, &m, &err) == 0 && m.params_where == ZF_MEM_RANK, "stage 2 params on the rank");
    s.offload_optimizer = 0;
    CHECK(zf_zero_expected(&s, &m, &err) == 0 && m.optimizer_where == ZF_MEM_RANK && zf_zero_on_rank(&m) == 200 + 100 + 600,
          "no offload: all on the rank (%" PRIu64 ")", zf_zero_on_rank(&m));
}

static void expect_setup_error(zf_zero_setup s, const char *needle)
{
    zf_zero_mem m;
    zf_err err = { "" };
    CHECK(zf_zero_expected(&s, &m, &err) == -1 && strstr(err.msg, needle), "'%s' -> '%s'", needle, err.msg);
}

static void test_bad_setup(void)
{
    expect_setup_error((zf_zero_setup){ 4, 1, 0, 10, 2, 0, 0 }, "stage");
    expect_setup_error((zf_zero_setup){ -1, 1, 0, 10, 2, 0, 0 }, "stage");
    expect_setup_error((zf_zero_setup){ 1, 0, 0, 10, 2, 0, 0 }, "world");
    expect_setup_error((zf_zero_setup){ 1, 2, 2, 10, 2, 0, 0 }, "rank");
    expect_setup_error((zf_zero_setup){ 1, 2, -1, 10, 2, 0, 0 }, "rank");
    expect_setup_error((zf_zero_setup){ 1, 2, 0, 10, 3, 0, 0 }, "K");
}

static void test_check_and_line(void)
{
    zf_zero_setup s = { 2, 3, 2, 1000, 4, 1, 0 };
    zf_zero_mem e, m, m2;
    zf_zero_setup s2;
    zf_err err;
    CHECK(zf_zero_expected(&s, &e, &err) == 0, "%s", err.msg);
    m = e;
    m.transient = 4096;
    CHECK(zf_zero_mem_check(&m, &e, &err) == 0, "equal (transient not compared): %s", err.msg);
    char line[512];
    zf_zero_memory_format(line, sizeof line, &s, &m);
    const char *want = "zero-memory rank=2 world=3 stage=2 K=4 psi=1000 params=4000@rank grads=1328@rank "
                       "optimizer=3984@offloadd transient=4096 expected_params=4000 expected_grads=1328 "
                       "expected_optimizer=3984 on_rank=5328 match=yes";
    CHECK(!strcmp(line, want), "line:\n  %s\nexpected\n  %s", line, want);
    char prefixed[600];
    snprintf(prefixed, sizeof prefixed, "trainer-2: %s\n", line);
    CHECK(zf_zero_memory_parse(prefixed, &s2, &m2, &err) == 0, "parse: %s", err.msg);
    CHECK(s2.rank == 2 && s2.world == 3 && s2.stage == 2 && s2.k == 4 && s2.psi == 1000 && s2.offload_optimizer == 1,
          "parsed setup");
    CHECK(m2.params == 4000 && m2.grads == 1328 && m2.optimizer == 3984 && m2.transient == 4096 &&
          m2.optimizer_where == ZF_MEM_OFFLOADD && m2.params_where == ZF_MEM_RANK, "parsed bytes");

    m.grads += 4; /* a mismatch is named and reported as match=no */
    CHECK(zf_zero_mem_check(&m, &e, &err) == -1 && strstr(err.msg, "grads") && strstr(err.msg, "1328"), "%s", err.msg);
    zf_zero_memory_format(line, sizeof line, &s, &m);
    CHECK(strstr(line, " match=no") != NULL, "%s", line);
    m = e;
    m.optimizer_where = ZF_MEM_RANK;
    CHECK(zf_zero_mem_check(&m, &e, &err) == -1 && strstr(err.msg, "optimizer") && strstr(err.msg, "offloadd"), "%s",
          err.msg);

    const char *bad[] = {
        NULL, "", "no marker here", "zero-memory rank=0",
        "zero-memory rank=0 world=1 stage=1 K=4 psi=10 params=40 grads=40@rank optimizer=120@offloadd transient=0",
        "zero-memory rank=0 world=1 stage=1 K=4 psi=10 params=40@gpu grads=40@rank optimizer=120@offloadd transient=0",
        "zero-memory rank=0 world=1 stage=1 K=4 psi=x10 params=40@rank grads=40@rank optimizer=120@offloadd transient=0",
        "zero-memory rank=0 world=1 stage=1 K=4 psi=-10 params=40@rank grads=40@rank optimizer=120@offloadd transient=0",
        "zero-memory rank=1 world=1 stage=1 K=4 psi=10 params=40@rank grads=40@rank optimizer=120@offloadd transient=0",
        "zero-memory rank=0 world=1 stage=5 K=4 psi=10 params=40@rank grads=40@rank optimizer=120@offloadd transient=0",
        "zero-memory rank=0 world=1 stage=1 K=3 psi=10 params=40@rank grads=40@rank optimizer=120@offloadd transient=0",
        "zero-memory rank=0 world=1 stage=1 K=4 psi=10 params=40@rank grads=40@rank optimizer=120@offloadd transient=1@rank",
        "zero-memory rank=0 world=1 stage=1 K=4 psi=99999999999999999999999999 params=40@rank grads=40@rank "
        "optimizer=120@offloadd transient=0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        zf_err e2 = { "" };
        CHECK(zf_zero_memory_parse(bad[i], &s2, &m2, &e2) == -1 && e2.msg[0], "bad line %zu accepted", i);
    }
    const char *good = "zero-memory rank=0 world=1 stage=1 K=4 psi=10 params=40@rank grads=40@rank "
                       "optimizer=120@offloadd transient=0";
    CHECK(zf_zero_memory_parse(good, &s2, &m2, &err) == 0, "minimal line: %s", err.msg);
}

int main(void)
{
    test_issue_numbers();
    test_uneven_k4();
    test_places();
    test_bad_setup();
    test_check_and_line();
    return zf_check_summary("test_zero_memory");
}
