/* gpt2_cpu.h - GPT-2 forward, backward, loss and KV-cached inference on the
 * CPU in fp32, computing what Hugging Face GPT2LMHeadModel computes.
 *
 * Owns: the activation buffers of one model instance for batches up to
 * (max_B, max_T), the fused cross-entropy, dropout masks drawn with
 * lib/rng.h's zf_drop_* (same seed -> same masks on any thread count), and the KV cache
 * used by generation.  Parameters are borrowed (flat layout of model.h), so
 * they can live in shared memory and be swapped between steps.
 *
 * Matrix products go through OpenBLAS (cblas_sgemm, called only from
 * outside OpenMP regions: the library is the pthread build); everything else
 * is OpenMP over rows with reductions in a fixed order, so results are
 * bitwise reproducible run after run for a fixed BLAS thread count. */
#ifndef ZF_GPT2_CPU_H
#define ZF_GPT2_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct zf_gpt2 zf_gpt2;

/* NULL if the sizes are invalid (max_B < 1, max_T < 1 or > n_positions).
 * Activation memory is reserved for (max_B, max_T) up front (pages are only
 * touched when used); nothing is allocated per step. */
zf_gpt2 *zf_gpt2_create(const zf_gpt2_config *cfg, const zf_param_table *t, float *params, int max_B, int max_T);
void zf_gpt2_set_params(zf_gpt2 *m, float *params);
void zf_gpt2_free(zf_gpt2 *m);
const zf_gpt2_config *zf_gpt2_get_config(const zf_gpt2 *m);

/* Forward.  tokens [B,T] int32; targets [B,T] int32 or NULL (-1 = ignore).
 * If training, dropout (embd/attn/resid pdrop of the config) is applied with
 * masks from zf_drop_u16(zf_drop_key(dropout_seed, site), element): the caller folds step and
 * micro-step into dropout_seed.  Returns the mean loss over non-ignored
 * targets (0 if targets is NULL or all are ignored); NAN (with a logged
 * error) on out-of-range sizes or token ids. */
float zf_gpt2_forward(zf_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B, int T, int training,
                      uint64_t dropout_seed);

/* [B,T,V] logits of the last forward (valid until the next backward, which
 * turns them into their gradient in place). */
const float *zf_gpt2_logits(const zf_gpt2 *m);

/* Number of non-ignored targets of the last forward (the loss denominator). */
int zf_gpt2_target_count(const zf_gpt2 *m);

/* Backward of the last forward's mean loss times loss_scale, ACCUMULATED
 * (+=) into grads (same flat layout as params; padding untouched). */
void zf_gpt2_backward(zf_gpt2 *m, float *grads, float loss_scale);

/* Data parallelism: row0 is the index, in the global batch, of this
 * model's batch row 0 (rank * micro batch), so dropout masks, drawn from the
 * global element index, equal those of one rank running the whole global
 * batch.  Default 0. */
void zf_gpt2_set_row_offset(zf_gpt2 *m, uint64_t row0);

/* ZeRO hooks.  The flat buffer is cut into units, each a contiguous range
 * of model.h's layout: unit 0 = wte + wpe, unit 1 + l = block l, unit
 * n_layer + 1 = ln_f.  Forward fetches/releases, in order: 0 (embedding),
 * 1..L, L+1, 0 (the tied classifier); backward: 0 and L+1 (classifier and
 * ln_f; 0 released once the classifier's input gradient is computed), L..1,
 * with grads_ready(u) once unit u's gradients are final for this backward:
 * L+1, L, ..., 1, then 0 last (wte gets the classifier's and the embedding's
 * gradient).  A backward that adds nothing (no targets) still reports every
 * unit's gradients final, in the same order, so all ranks communicate
 * alike.  Parameters of a unit are read only between its fetch and its
 * release.  Generation (zf_gpt2_kv_step) calls no hooks: the caller makes
 * every parameter present first. */
enum { ZF_GPT2_FORWARD = 0, ZF_GPT2_BACKWARD = 1 };
typedef struct zf_gpt2_hooks {
    void *ctx;
    void (*fetch)(void *ctx, int unit, int phase);
    void (*release)(void *ctx, int unit, int phase);
    void (*grads_ready)(void *ctx, int unit);
} zf_gpt2_hooks;
int zf_gpt2_unit_count(const zf_gpt2 *m); /* n_layer + 2 */
void zf_gpt2_set_hooks(zf_gpt2 *m, const zf_gpt2_hooks *h); /* NULL: none */

/* KV-cached incremental inference (batch 1). */
typedef struct zf_gpt2_kv zf_gpt2_kv;
zf_gpt2_kv *zf_gpt2_kv_create(const zf_gpt2 *m, int max_T); /* max_T clipped to n_positions */
void zf_gpt2_kv_free(zf_gpt2_kv *kv);
void zf_gpt2_kv_reset(zf_gpt2_kv *kv);
int zf_gpt2_kv_pos(const zf_gpt2_kv *kv);     /* tokens fed so far */
int zf_gpt2_kv_max_T(const zf_gpt2_kv *kv);
/* Feed n new tokens (a prompt or one), return the logits [V] after the last
 * one (owned by kv, valid until the next step); NULL if the cache would
 * overflow, n < 1 or a token id is out of range. */
const float *zf_gpt2_kv_step(zf_gpt2 *m, zf_gpt2_kv *kv, const int32_t *tokens, int n);

#endif
