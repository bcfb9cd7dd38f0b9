/* bench_adamw - offloadd's host AdamW against the machine's memory bandwidth.
 *
 *   bin/bench/bench_adamw [--numel N] [--reps R] [--shm]   (default: GPT-2 350M, 5)
 *
 * --shm: the four buffers are POSIX shared memory (tmpfs pages), as
 * offloadd's are, instead of malloc'd memory (which may get huge pages).
 * Times, on N fp32 parameters (buffers first touched by the threads that use
 * them): a STREAM-style triad a = b + s c (12 bytes per element moved, the
 * reference for what memory allows), zf_shard_opt_step (the whole shard,
 * 28 bytes per element: read p, g, m, v; write p, m, v) and
 * zf_shard_opt_step_chunked (the pipelined update: same bytes, the finished
 * prefix announced per 1M elements, offloadd's ZF_OFFLOAD_CHUNK).  Prints ms and GB/s (best of R);
 * threads: OMP_NUM_THREADS. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "shard_optimizer.h"
#include "shm.h"

static void noop(void *ctx, size_t upto) { *(volatile size_t *)ctx = upto; }

int main(int argc, char **argv)
{
    size_t n = 354823168; /* GPT-2 350M with the 50,257-token embedding, padded */
    int reps = 5, use_shm = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shm")) use_shm = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--numel")) n = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
    }
    if (n < 1 || reps < 1) {
        fprintf(stderr, "bench_adamw: --numel and --reps: expected >= 1\n");
        return 2;
    }
    float *buf[4];
    zf_shm seg[4];
    memset(seg, 0, sizeof seg);
    char run[64];
    zf_run_id_new(run, sizeof run);
    for (int k = 0; k < 4; k++) {
        if (!use_shm) {
            buf[k] = zf_xmalloc(n * 4);
            continue;
        }
        char name[16];
        int64_t shape[1] = { (int64_t)n };
        zf_err err;
        snprintf(name, sizeof name, "bench%d", k);
        if (zf_shm_create(&seg[k], run, name, ZF_DTYPE_F32, 1, shape, &err) != 0) zf_die("bench_adamw: %s", err.msg);
        buf[k] = seg[k].data;
    }
    float *p = buf[0], *g = buf[1], *m = buf[2], *v = buf[3];
    /* first touch by the same static partition as the loops below */
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        p[i] = 0.01f * (float)(i % 97);
        g[i] = 1e-3f * (float)(i % 89) - 0.04f;
        m[i] = 0.0f;
        v[i] = 0.0f;
    }
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = zf_now();
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) m[i] = p[i] + 0.5f * g[i];
        double dt = zf_now() - t0;
        if (dt < best) best = dt;
    }
    printf("bench_adamw: %zu parameters, %d threads, %s\n", n, omp_get_max_threads(),
           use_shm ? "POSIX shared memory" : "malloc");
    printf("  triad a = b + s*c     %8.1f ms  %6.1f GB/s (12 B/element)\n", best * 1e3, 12.0 * (double)n / best / 1e9);
    memset(m, 0, n * 4);
    zf_decay_range ranges[2] = { { 0, n / 2, 1 }, { n / 2, n - n / 2, 0 } };
    zf_adamw_hparams h = { 3e-4, 0.9, 0.95, 1e-8, 0.1 };
    zf_shard_opt *o = zf_shard_opt_create(0, n, ranges, 2, &h, NULL, p, m, v);
    if (!o) zf_die("bench_adamw: optimizer creation failed");
    for (int mode = 0; mode < 2; mode++) {
        best = 1e30;
        for (int r = 0; r < reps; r++) {
            volatile size_t last = 0;
            double t0 = zf_now();
            if (mode == 0) zf_shard_opt_step(o, g, r + 1, 0.5f);
            else zf_shard_opt_step_chunked(o, g, r + 1, 0.5f, (size_t)1 << 20, noop, (void *)&last);
            double dt = zf_now() - t0;
            if (dt < best) best = dt;
        }
        printf("  AdamW %-16s %8.1f ms  %6.1f GB/s (28 B/element)\n", mode ? "chunked (1M)" : "whole shard", best * 1e3,
               28.0 * (double)n / best / 1e9);
    }
    zf_shard_opt_free(o);
    for (int k = 0; k < 4; k++) {
        if (use_shm) zf_shm_close(&seg[k]);
        else free(buf[k]);
    }
    return 0;
}
