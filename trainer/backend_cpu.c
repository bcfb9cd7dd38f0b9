/* backend_cpu.c - the CPU model as a zf_backend (see backend.h): it computes
 * on the shared-memory parameters and accumulates into the shared-memory
 * gradients directly, so the host transfers are no-ops; the optimizer stays
 * in offloadd. */
#include "backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2_cpu.h"

typedef struct cpu_impl {
    zf_gpt2 *model;
    float *grads;
    size_t n;
    int zero;  /* a ZeRO engine zeroes (and partitions) the gradients */
} cpu_impl;

static float cpu_forward(zf_backend *b, const int32_t *tokens, const int32_t *targets, int B, int T, int training,
                         uint64_t seed, zf_err *err)
{
    cpu_impl *c = b->impl;
    float loss = zf_gpt2_forward(c->model, tokens, targets, B, T, training, seed);
    if (isnan(loss)) zf_err_set(err, "CPU forward failed (sizes or token ids out of range)");
    return loss;
}

static int cpu_target_count(zf_backend *b) { return zf_gpt2_target_count(((cpu_impl *)b->impl)->model); }

static int cpu_zero_grads(zf_backend *b, zf_err *err)
{
    cpu_impl *c = b->impl;
    (void)err;
    if (!c->zero) memset(c->grads, 0, c->n * sizeof(float));
    return 0;
}

static int cpu_backward(zf_backend *b, float scale, zf_err *err)
{
    cpu_impl *c = b->impl;
    (void)err;
    zf_gpt2_backward(c->model, c->grads, scale);
    return 0;
}

static int cpu_noop(zf_backend *b, zf_err *err)
{
    (void)b, (void)err;
    return 0;
}

/* test-only: an overflow the host check then finds (ZF_DEBUG_OVERFLOW_STEPS) */
static int cpu_poison_grads(zf_backend *b, zf_err *err)
{
    cpu_impl *c = b->impl;
    (void)err;
    if (c->n) c->grads[0] = INFINITY;
    return 0;
}

static void cpu_free(zf_backend *b)
{
    cpu_impl *c = b->impl;
    zf_gpt2_free(c->model);
    free(c);
    free(b);
}

int zf_backend_cpu_attach_zero(zf_backend *b, const struct zf_gpt2_hooks *hooks, uint64_t row0, zf_err *err)
{
    if (!b || b->zero_grads != cpu_zero_grads) return zf_err_set(err, "ZeRO engine: backend %s: expected the CPU backend",
                                                                b ? b->name : "(none)");
    cpu_impl *c = b->impl;
    zf_gpt2_set_hooks(c->model, hooks);
    zf_gpt2_set_row_offset(c->model, row0);
    c->zero = 1;
    return 0;
}

zf_backend *zf_backend_cpu_create(const zf_backend_spec *s, zf_err *err)
{
    (void)err;
    cpu_impl *c = zf_xcalloc(1, sizeof *c);
    c->model = zf_gpt2_create(s->cfg, s->table, s->params, s->max_B, s->max_T);
    c->grads = s->grads;
    c->n = s->table->total;
    zf_backend *b = zf_xcalloc(1, sizeof *b);
    b->name = "cpu (fp32)";
    b->impl = c;
    b->forward = cpu_forward;
    b->target_count = cpu_target_count;
    b->zero_grads = cpu_zero_grads;
    b->backward = cpu_backward;
    b->grads_to_host = cpu_noop;
    b->params_from_host = cpu_noop;
    b->poison_grads = cpu_poison_grads;
    b->free = cpu_free; /* optimizer ops NULL: offloadd updates the shared buffers */
    return b;
}
