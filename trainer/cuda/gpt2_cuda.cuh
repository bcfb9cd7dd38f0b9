/* gpt2_cuda.cuh - the GPT-2 model on the GPU (forward, backward), assembled
 * from the kernels of gpt2_kernels.cuh, matmul.cuh and attention.cuh; the
 * GPU counterpart of trainer/gpt2_cpu.h with the same semantics.
 *
 * Owns: the device compute copy of the parameters (element type dt: fp32,
 * bf16 or fp16; flat layout of lib/model.h), the fp32 gradient buffer (same
 * flat layout, padding stays zero), the activations of one batch up to
 * (max_B, max_T), the token/target buffers, the matmul and kernel contexts
 * and the stream everything runs on.  With a layer store (ZeRO stages 2-3) the
 * flat buffers hold only the embeddings and ln_f, and each layer's
 * parameters and gradients come from the store for each pass.
 *
 * Same math as the CPU model: dropout masks from lib/rng.h's zf_drop_* at
 * the same sites (embedding 0, layer l: attention l*4+1, attention residual
 * l*4+2, MLP residual l*4+3), so in fp32 the GPU model equals the CPU model
 * to rounding, with dropout too.  The LM head is the fused classifier (no
 * [N,V] logits are kept); attention is the fused flash kernel; products are
 * cuBLASLt's.  Deterministic: the same inputs give bitwise the same loss and
 * gradients run after run on one GPU model.
 *
 * C-callable; links without the C core (only lib/ headers are used).  */
#ifndef ZF_GPT2_CUDA_CUH
#define ZF_GPT2_CUDA_CUH

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "log.h"
#include "matmul.cuh"

#ifdef __cplusplus
extern "C" {
#endif

#include "model.h" /* a C header without its own extern "C" */

typedef struct zf_gpt2c zf_gpt2c;

/* Allocates everything for batches up to (max_B, max_T) on the current
 * device (parameters zeroed, gradients zeroed).  The table is copied.  NULL
 * with err filled on invalid sizes or a CUDA/cuBLASLt failure. */
zf_gpt2c *zf_gpt2c_create(const zf_gpt2_config *cfg, const zf_param_table *t, zf_gpu_dtype dt, int max_B, int max_T,
                          zf_err *err);
/* ZeRO stages 2-3: where the layers' parameters and gradients come from, per
 * pass.  fetch: layer l is about to run (phase 0 forward, 1 backward); set
 * *params to the device address of the layer's first flat element (its
 * range [lo, hi), zf_gpt2c_layer_range) in the compute type, each tensor at
 * params + (offset - lo), and in backward *grads likewise for fp32
 * gradients, which the model ADDS to.  What fills them must be queued on
 * the model's stream (or waited by it) before fetch returns.  done: the
 * layer's work of that pass is queued; the buffers may be reused by work
 * queued after it, and after a backward its gradients are this
 * micro-batch's.  kept (may be NULL): a forward is about to read the
 * tensors the model keeps whole, part 0 the embeddings (before the first
 * layer), part 1 ln_f (after the last); the store may rewrite them in
 * zf_gpt2c_params_dev first (queued likewise).  All return 0 or -1 (err). */
typedef struct zf_gpt2c_layer_store {
    void *ctx;
    int (*fetch)(void *ctx, int layer, int phase, void **params, float **grads, zf_err *err);
    int (*done)(void *ctx, int layer, int phase, zf_err *err);
    int (*kept)(void *ctx, int part, zf_err *err);
} zf_gpt2c_layer_store;

typedef struct zf_gpt2c_options {
    /* only each block's output kept per layer, the other activations of one
     * block once; backward recomputes each block (same gradients, bitwise) */
    int act_checkpointing;
    /* the flat buffers (compute copy, gradients) hold this many elements when
     * it exceeds t->total (padding for the in-place collectives of
     * nccl_comm.cuh, zeroed: the model never reads it); 0: t->total */
    size_t flat_capacity;
    /* NULL, or the layers live outside the model: the flat buffers then hold
     * the embeddings and ln_f only, [0, lay_lo) followed by [lay_hi, total)
     * (zf_gpt2c_layers_span); set_params, get_grads and the streaming calls
     * refuse, and flat_capacity is ignored */
    const zf_gpt2c_layer_store *layer_store;
} zf_gpt2c_options;

/* The same with options (NULL: none). */
zf_gpt2c *zf_gpt2c_create_ex(const zf_gpt2_config *cfg, const zf_param_table *t, zf_gpu_dtype dt, int max_B, int max_T,
                             const zf_gpt2c_options *opt, zf_err *err);
/* Layer l's flat range [lo, hi), and all the layers' [lo, hi). */
void zf_gpt2c_layer_range(const zf_gpt2c *m, int l, size_t *lo, size_t *hi);
void zf_gpt2c_layers_span(const zf_gpt2c *m, size_t *lo, size_t *hi);
void zf_gpt2c_free(zf_gpt2c *m);
size_t zf_gpt2c_device_bytes(const zf_gpt2c *m); /* the model's one allocation */
size_t zf_gpt2c_flat_capacity(const zf_gpt2c *m); /* elements of its flat parameter and gradient buffers */
int zf_gpt2c_act_checkpointing(const zf_gpt2c *m);
const zf_gpt2_config *zf_gpt2c_get_config(const zf_gpt2c *m);
zf_gpu_dtype zf_gpt2c_dtype(const zf_gpt2c *m);

/* Parameters from a host fp32 flat buffer of t->total floats (converted to
 * the compute type, round to nearest even).  Synchronous. */
int zf_gpt2c_set_params(zf_gpt2c *m, const float *host_params, zf_err *err);
/* Only [off, off + n) of the flat buffer, from host_params + off. */
int zf_gpt2c_set_params_range(zf_gpt2c *m, const float *host_params, size_t off, size_t n, zf_err *err);

/* Forward as zf_gpt2_forward: tokens/targets are HOST [B,T] int32 arrays
 * (targets NULL or -1 entries ignored), ids validated on the host.  Returns
 * the mean loss (0 without targets); NAN on bad sizes, bad ids or a GPU
 * failure, the reason then in zf_gpt2c_error().  Synchronizes (to return
 * the loss). */
float zf_gpt2c_forward(zf_gpt2c *m, const int32_t *tokens, const int32_t *targets, int B, int T, int training,
                       uint64_t dropout_seed);
int zf_gpt2c_target_count(const zf_gpt2c *m);
const char *zf_gpt2c_error(const zf_gpt2c *m); /* "" if none yet */

/* [B,T,V] fp32 logits of the last forward into host memory (a debug/test
 * helper: one product into a temporary device buffer).  0 or -1 (err). */
int zf_gpt2c_logits(zf_gpt2c *m, float *host_logits, zf_err *err);

/* Backward of the last forward's mean loss times loss_scale, ACCUMULATED
 * (+=) into the device fp32 gradients.  The classifier's logits are
 * recomputed (the forward keeps none).  0, or -1 (err) when there was no
 * forward with targets or a GPU call failed.  Asynchronous. */
int zf_gpt2c_backward(zf_gpt2c *m, float loss_scale, zf_err *err);

/* Gradient buffer: zero it, copy it to host (t->total floats, synchronous),
 * or borrow the device pointers (for the optimizer / collectives). */
int zf_gpt2c_zero_grads(zf_gpt2c *m, zf_err *err);
int zf_gpt2c_get_grads(zf_gpt2c *m, float *host_grads, zf_err *err);
/* Overlap the gradients' copy to the host with the next backward: each
 * layer's gradients (final once that layer's backward is done, so arm this
 * before the LAST accumulated backward only) go to host_grads (t->total
 * floats, pinned for the overlap) on a copy stream; zf_gpt2c_get_grads with
 * the same pointer then copies only the rest (embeddings, ln_f) and waits.
 * NULL disarms; zero_grads disarms too.  -1 (err) if the layout has the
 * layers' tensors interleaved. */
int zf_gpt2c_stream_grads_next(zf_gpt2c *m, float *host_grads, zf_err *err);
/* Pipelined parameter upload (optimizer offloaded): the NEXT forward takes
 * its parameters from host (t->total fp32 floats, the optimizer's master,
 * ideally pinned) range by range in the order it uses them: before each
 * range it calls ready(ctx, end), which returns 0 once host[0, end) holds the
 * new values (-1: failed; the forward then fails), copies that range on the
 * copy stream and makes the compute stream wait for it (no whole-buffer
 * barrier).  NULL disarms; set_params disarms too.  0 or -1 (err). */
int zf_gpt2c_upload_params_next(zf_gpt2c *m, const float *host, int (*ready)(void *ctx, size_t end), void *ctx,
                                zf_err *err);
float *zf_gpt2c_grads_dev(zf_gpt2c *m);
void *zf_gpt2c_params_dev(zf_gpt2c *m); /* compute copy, type zf_gpt2c_dtype() */
cudaStream_t zf_gpt2c_stream(const zf_gpt2c *m);
/* The kernel context on the model's stream (AdamW, grad stats, conversions). */
struct zf_gk *zf_gpt2c_gk(zf_gpt2c *m);
/* Test-only: gradient element 0 = +inf on the device (asynchronous). */
int zf_gpt2c_poison_grads(zf_gpt2c *m, zf_err *err);

#ifdef __cplusplus
}
#endif

#endif
