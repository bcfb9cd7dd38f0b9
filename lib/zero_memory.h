/* zero_memory.h - ZeRO's memory accounting and the per-rank memory report.
 *
 * Owns: the bytes of parameters, gradients and optimizer state that one
 * data-parallel rank is expected to hold for a ZeRO stage (0-3), a world
 * size and the offload settings, and where each lives; and the one-line
 * report each rank prints at start with its MEASURED numbers (actual
 * allocation sizes, never computed from this formula) next to the expected
 * ones.
 *
 * The accounting generalises ZeRO's (paper, mixed precision, K = 2 bytes
 * per working element, 12 bytes of fp32 master + Adam m + v per element) to
 * K bytes per working element (K = 4 on the CPU ranks: fp32 params/grads):
 *   stage 0: params K*Psi,   grads K*Psi,   optimizer 12*Psi    (2K + 12) Psi
 *   stage 1: params K*Psi,   grads K*Psi,   optimizer 12*Psi/N  2K Psi + 12 Psi/N
 *   stage 2: params K*Psi,   grads K*Psi/N, optimizer 12*Psi/N  K Psi + (K+12) Psi/N
 *   stage 3: params K*Psi/N, grads K*Psi/N, optimizer 12*Psi/N  (2K + 12) Psi/N
 * "Psi/N" is exact per rank: rank r owns the contiguous slice
 * [r*per, min((r+1)*per, Psi)) of the flat buffer, per = ceil(Psi/N), so
 * uneven world sizes (N = 3) give the last rank fewer elements (possibly 0).
 * Transient memory (gradient buckets, stage-3 live layers, parameters kept
 * whole under stage3_param_persistence_threshold) is reported separately and
 * is not part of the expected figures.
 *
 * Where: "rank" = the rank's compute memory (GPU memory, or the trainer
 * process's own memory on a CPU rank); "offloadd" = host memory of the node's
 * offloadd (offload_optimizer.device = cpu: the optimizer partition);
 * "host" = pinned host memory that is the parameters' home under
 * offload_param.device = cpu with stage 3.  Offloaded bytes are not on the
 * rank ("less what is offloaded").  A CPU rank has no separate device: its
 * optimizer always lives in offloadd (offload_optimizer = 1) and its stage-3
 * partition in its own memory (offload_param = 0), whatever the config says.
 *
 * Report line (one per rank, space-separated key=value, stable order):
 *   zero-memory rank=R world=N stage=S K=K psi=PSI
 *     params=B@WHERE grads=B@WHERE optimizer=B@WHERE transient=B
 *     expected_params=B expected_grads=B expected_optimizer=B on_rank=B match=yes|no
 * (on one line; on_rank = measured bytes whose WHERE is "rank"). */
#ifndef ZF_ZERO_MEMORY_H
#define ZF_ZERO_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef enum zf_mem_where { ZF_MEM_RANK = 0, ZF_MEM_OFFLOADD = 1, ZF_MEM_HOST = 2 } zf_mem_where;

/* The inputs of the accounting. */
typedef struct zf_zero_setup {
    int stage;              /* 0..3 */
    int world, rank;        /* world >= 1, 0 <= rank < world */
    uint64_t psi;           /* parameters (elements of the flat buffer) */
    int k;                  /* bytes per working element: 2 (fp16/bf16) or 4 (fp32) */
    int offload_optimizer;  /* offload_optimizer.device == cpu */
    int offload_param;      /* offload_param.device == cpu (meaningful at stage 3 only) */
} zf_zero_setup;

/* Bytes of one rank, and where each part lives. */
typedef struct zf_zero_mem {
    uint64_t params, grads, optimizer;
    zf_mem_where params_where, grads_where, optimizer_where;
    uint64_t transient;     /* buckets, live layers, persistent params (reported, not accounted) */
} zf_zero_mem;

/* The slice of the flat buffer rank r owns: [*offset, *offset + *numel). */
void zf_zero_partition(uint64_t psi, int world, int rank, uint64_t *offset, uint64_t *numel);

/* Expected bytes for the setup (transient = 0).  -1 on an invalid setup
 * (stage outside 0..3, world < 1, rank outside 0..world-1, k not 2 or 4). */
int zf_zero_expected(const zf_zero_setup *s, zf_zero_mem *out, zf_err *err);

/* Sum over all ranks of the expected bytes (params + grads + optimizer):
 * the whole job's model-state memory, e.g. 16 Psi for stage 3 with K = 2. */
uint64_t zf_zero_expected_total(const zf_zero_setup *s);

/* Bytes of `m` whose place is the rank's compute memory. */
uint64_t zf_zero_on_rank(const zf_zero_mem *m);

const char *zf_mem_where_name(zf_mem_where w);

/* 0 if measured equals expected in every byte count and place (transient is
 * not compared), else -1 naming the first field that differs. */
int zf_zero_mem_check(const zf_zero_mem *measured, const zf_zero_mem *expected, zf_err *err);

/* The report line (no newline) into buf; returns its length (snprintf's). */
int zf_zero_memory_format(char *buf, size_t n, const zf_zero_setup *s, const zf_zero_mem *measured);

/* Parse a report line (as written by zf_zero_memory_format; leading text
 * before "zero-memory " is skipped, e.g. a log prefix) back into setup and
 * measured bytes.  -1 on any missing or malformed field. */
int zf_zero_memory_parse(const char *line, zf_zero_setup *s, zf_zero_mem *measured, zf_err *err);

#endif
