/* gpt2_kernels.cuh - the GPU kernels of the GPT-2 trainer, attention aside
 * (trainer/cuda/attention.cuh).
 *
 * Owns: embeddings, LayerNorm, GELU, residual/dropout, bias add and bias
 * gradient, the fused classifier (tied LM head + softmax cross-entropy +
 * its gradient), AdamW, the global gradient norm / overflow check and the
 * fp32 <-> bf16/fp16 conversions, each forward and backward as the CPU
 * model (trainer/gpt2_cpu.c) computes it: same formulas, same epsilon
 * placement, tanh-form GELU, same dropout masks (zf_hash3, lib/rng.h).
 *
 * Types: activations and the compute copy of the parameters have the
 * element type dt (fp32, bf16 or fp16); every kernel accumulates in fp32.
 * Master parameters, AdamW moments, gradients, LayerNorm mean/rstd and
 * losses are fp32.  Shapes are row-major as in the CPU model: N = B*T rows
 * of C channels.
 *
 * Determinism: no floating-point atomics anywhere.  Every reduction here has
 * a fixed shape that does not depend on the GPU (column sums in fixed row
 * chunks, the embedding gradient by a stable sort of the tokens), so the
 * same inputs give bitwise the same outputs run after run; the products are
 * cuBLASLt's, repeatable for one GPU model and library version (matmul.cuh).
 *
 * Errors: every launching call returns 0, or -1 with the reason in
 * zf_gk_error() (invalid sizes or pointers, a CUDA launch error, a failed
 * product).  Token and target ids are read on the device: an id outside
 * [0, V) never causes an out-of-bounds read; it yields a NaN row / a NaN
 * loss so that the step is visibly wrong (validate ids on the host first,
 * as the CPU model does).
 *
 * All work is enqueued on the context's stream; calls that return values to
 * the host (zf_gk_grad_stats) synchronize it.  C-callable. */
#ifndef ZF_GPT2_KERNELS_CUH
#define ZF_GPT2_KERNELS_CUH

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "matmul.cuh"
#include "adamw.h"
#include "log.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zf_gk zf_gk;

/* A context: the stream, the product handle (borrowed, used by the
 * classifier) and a scratch buffer that grows on first use of a size
 * (cudaMalloc then; run one step before capturing a CUDA graph).
 * classifier_bytes bounds the classifier's per-chunk buffers (fp32 logits
 * + dt dlogits of a chunk of rows, Vp*(4 + element size) bytes per row,
 * Vp = V rounded up to 64); 0 means 256 MiB.  NULL on failure. */
zf_gk *zf_gk_create(cudaStream_t stream, zf_matmul_ctx *mm, size_t classifier_bytes, zf_err *err);
void zf_gk_free(zf_gk *g);
const char *zf_gk_error(const zf_gk *g);
cudaStream_t zf_gk_stream(const zf_gk *g);

/* ---- embeddings (x0 = drop(wte[tok] + wpe[pos])) ----
 * out[N,C] = (wte[tokens[n]] + wpe[n % T]) * keep, N = B*T, where with
 * p > 0 keep = 1/(1-p) if zf_drop_u16(zf_drop_key(seed, 0), n*C + j) >=
 * zf_drop_threshold(p) else 0 (lib/rng.h: the CPU model's embedding dropout,
 * site 0); p = 0: no dropout. */
int zf_gk_embed_fwd(zf_gk *g, zf_gpu_dtype dt, void *out, const int32_t *tokens, const void *wte, const void *wpe, int B,
                    int T, int C, int V, float p, uint64_t seed);
/* dwpe[t] += sum_b dout[b,t]; dwte[v] += sum over rows n with tokens[n] = v
 * of dout[n], summed in increasing n (a stable sort groups the rows of each
 * token; no atomics).  dwte [V,C], dwpe [>=T,C] fp32; dout [N,C] type dt
 * (already through the dropout backward). */
int zf_gk_embed_bwd(zf_gk *g, zf_gpu_dtype dt, float *dwte, float *dwpe, const void *dout, const int32_t *tokens, int B,
                    int T, int C, int V);

/* ---- LayerNorm ----
 * mean = sum(x)/C, var = sum((x-mean)^2)/C, rstd = 1/sqrt(var + eps),
 * out = (x - mean) * rstd * w + b; mean/rstd [N] fp32 saved. */
int zf_gk_layernorm_fwd(zf_gk *g, zf_gpu_dtype dt, void *out, float *mean, float *rstd, const void *x, const void *w,
                        const void *b, int N, int C, float eps);
/* With g = dy*w, a = mean_j(g), c = mean_j(g * xhat), xhat = (x-mean)*rstd:
 * dx += rstd * (g - a - xhat*c)  (ACCUMULATED into dx, type dt),
 * dw += sum_n dy*xhat, db += sum_n dy  (fp32, ACCUMULATED). */
int zf_gk_layernorm_bwd(zf_gk *g, zf_gpu_dtype dt, void *dx, float *dw, float *db, const void *dy, const void *x,
                        const void *w, const float *mean, const float *rstd, int N, int C);

/* ---- GELU (tanh form, HF gelu_new) ----
 * y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
int zf_gk_gelu_fwd(zf_gk *g, zf_gpu_dtype dt, void *y, const void *x, size_t n);
/* dx = dy * gelu'(x), gelu'(x) = 0.5(1+t) + 0.5 x (1-t^2) sqrt(2/pi)(1 + 3*0.044715 x^2);
 * dx may be dy (in place, as the CPU model does). */
int zf_gk_gelu_bwd(zf_gk *g, zf_gpu_dtype dt, void *dx, const void *dy, const void *x, size_t n);

/* ---- residual and dropout ----
 * out = in + y * keep, keep as above from element i's draw under
 * zf_drop_key(seed, site) (site = layer*4 + kind + 1 in the CPU model);
 * p = 0: out = in + y. */
int zf_gk_residual_fwd(zf_gk *g, zf_gpu_dtype dt, void *out, const void *in, const void *y, size_t n, float p,
                       uint64_t seed, uint64_t site);
/* dst = src * keep (the backward of any dropout site above); dst may be src. */
int zf_gk_dropout_bwd(zf_gk *g, zf_gpu_dtype dt, void *dst, const void *src, size_t n, float p, uint64_t seed,
                      uint64_t site);

/* ---- bias ----
 * y[n,j] += bias[j] (y [N,OC], bias [OC], type dt) */
int zf_gk_bias_add(zf_gk *g, zf_gpu_dtype dt, void *y, const void *bias, int N, int OC);
/* db[j] += sum_n dy[n,j] (db fp32, ACCUMULATED; dy type dt) */
int zf_gk_bias_grad(zf_gk *g, zf_gpu_dtype dt, float *db, const void *dy, int N, int OC);

/* ---- fused classifier (tied LM head) ----
 * For rows h[N,C] (the ln_f output) and wte[V,C]: logits = h wte^T,
 * lse = max + log(sum exp(logits - max)), losses[n] = lse - logits[n,tgt]
 * for targets[n] >= 0 and 0 for targets[n] = -1; *loss_mean (device, may be
 * NULL) = mean over the count of non-ignored targets (0 if none);
 * *count_out (device, may be NULL) = that count.
 * With dh != NULL also the backward of loss_mean * loss_scale:
 * dlogits = (softmax - onehot) * loss_scale / count (0 for ignored rows),
 * dh[N,C] (type dt) = dlogits wte (OVERWRITTEN) and dwte[V,C] (fp32) +=
 * dlogits^T h.  Rows go in chunks: per chunk the fp32 logits and the dt
 * dlogits of that chunk only (never [N,V] at once).  The vocabulary is
 * padded to Vp = roundup(V, 64) for the products (a zero-padded copy of wte
 * in scratch, Vp*C elements, besides the chunk buffers). */
int zf_gk_classifier(zf_gk *g, zf_gpu_dtype dt, const void *h, const void *wte, const int32_t *targets, int N, int C,
                     int V, float loss_scale, float *losses, float *loss_mean, int *count_out, void *dh, float *dwte);
/* The same forward keeping its gradient for the backward, so that the
 * backward needs no second pass over the logits: as zf_gk_classifier without
 * dh, and dsave[N,Vp] (type dt, Vp = roundup(V, 64)) = softmax - onehot,
 * unscaled (0 for ignored rows and in the padding columns; dsave 16-byte
 * aligned).  Unlike
 * zf_gk_classifier, no chunks and no fp32 logits: one product writes the
 * logits of all rows in type dt into dsave and the softmax runs in place
 * (6 bytes of traffic per bf16 logit instead of 14).  So in bf16/fp16 the
 * loss comes from logits rounded to dt, as in PyTorch's autocast (the
 * softmax itself is fp32); fp32 is unchanged. */
int zf_gk_classifier_fwd_save(zf_gk *g, zf_gpu_dtype dt, const void *h, const void *wte, const int32_t *targets, int N,
                              int C, int V, float *losses, float *loss_mean, int *count_out, void *dsave);
/* Its backward: dh[N,C] = alpha dsave wte (OVERWRITTEN) and dwte[V,C] (fp32)
 * += alpha dsave^T h, one product each over all N rows; alpha = loss_scale /
 * count (the count of non-ignored targets, which the forward returned). */
int zf_gk_classifier_bwd_saved(zf_gk *g, zf_gpu_dtype dt, const void *dsave, const void *h, const void *wte, int N,
                               int C, int V, float alpha, void *dh, float *dwte);
/* Rows per chunk the classifier uses for these sizes (for tests/planning). */
int zf_gk_classifier_chunk_rows(const zf_gk *g, zf_gpu_dtype dt, int N, int V);

/* ---- AdamW (lib/adamw.h semantics, bit for bit with torch 1.13) ----
 * On n fp32 elements: params, m, v updated in place from grads * grad_scale;
 * if lp != NULL the updated params are also written to lp in type lp_dt
 * (round to nearest even; the compute copy).  step is 1-based. */
int zf_gk_adamw(zf_gk *g, float *params, const float *grads, float *m, float *v, void *lp, zf_gpu_dtype lp_dt, size_t n,
                const zf_adamw_hparams *hp, int64_t step, float grad_scale, int apply_decay);
/* The same over a whole flat buffer described by layout rows (offset,
 * numel, decay) triples (zf_param_layout), offsets relative to the
 * pointers; one launch.  The rows are uploaded when they change. */
int zf_gk_adamw_rows(zf_gk *g, float *params, const float *grads, float *m, float *v, void *lp, zf_gpu_dtype lp_dt,
                     const int64_t *rows, int nrows, const zf_adamw_hparams *hp, int64_t step, float grad_scale);

/* ---- gradient statistics ----
 * *sumsq = sum of grads[i]^2 (accumulated in double, in an order fixed by
 * n and the pointer's 16-byte alignment, never by the GPU),
 * *nonfinite = number of inf/nan elements (the fp16 overflow check).
 * Synchronizes the stream. */
int zf_gk_grad_stats(zf_gk *g, const float *grads, size_t n, double *sumsq, long long *nonfinite);

/* ---- conversions ----
 * dst[i] = src[i] converted (round to nearest even; fp32 -> fp16 overflows
 * to inf); any pair of types, equal types copy. */
int zf_gk_convert(zf_gk *g, void *dst, zf_gpu_dtype dst_dt, const void *src, zf_gpu_dtype src_dt, size_t n);

#ifdef __cplusplus
}
#endif


#endif
