/* matmul.cuh - row-major matrix products of the GPU trainer through cuBLASLt.
 *
 * Owns: the element types of the GPU trainer (zf_gpu_dtype), the cuBLASLt handle
 * and its workspace, the per-shape cache of heuristic results (the same
 * shape always runs the same algorithm, so results are bitwise repeatable
 * within a process and across runs on the same GPU/driver), and the fused
 * epilogues (bias, GELU with its input saved, bias gradient).
 *
 * Semantics are those of the CPU model (trainer/gpt2_cpu.c): all matrices
 * are ROW-major, linear layers are y = x W + b with W in HF Conv1D layout
 * [in,out].  Products accumulate in fp32 for every element type; the fp32
 * element type runs in exact fp32 (CUBLAS_COMPUTE_32F: no TF32), which is
 * the debug mode that should match the CPU to fp32 rounding.
 *
 * C-callable: the C trainer includes this header. */
#ifndef ZF_MATMUL_CUH
#define ZF_MATMUL_CUH

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element type of activations and of the compute copy of the parameters.
 * Master parameters, moments and gradients are always fp32.  The values
 * are those of lib/shm.h's zf_dtype for the same types, so a shared-memory
 * segment's dtype converts with a cast. */
typedef enum zf_gpu_dtype { ZF_GPU_F32 = 1, ZF_GPU_F16 = 2, ZF_GPU_BF16 = 3 } zf_gpu_dtype;

size_t zf_gpu_dtype_size(zf_gpu_dtype t);      /* 4, 2, 2; 0 for any other value */
const char *zf_gpu_dtype_name(zf_gpu_dtype t); /* "fp32", "fp16", "bf16", "?" */

typedef struct zf_matmul_ctx zf_matmul_ctx;

/* Epilogues fused into the product (see zf_matmul).  Vectors and the aux
 * matrix have the element type of D. */
typedef enum zf_mm_epilogue {
    ZF_MM_DEFAULT = 0,   /* D = alpha op(A) op(B) + beta D */
    ZF_MM_BIAS = 1,      /* ... + bias[j] on every row (bias: N elements) */
    ZF_MM_GELU_BIAS = 2, /* aux = alpha op(A)op(B) + beta D + bias; D = gelu(aux), cuBLASLt's GELU */
    ZF_MM_BGRAD_B = 3,   /* as DEFAULT, and bias[j] = sum_k op(B)[k,j] (WRITTEN, not added; N elements) */
    ZF_MM_DGELU = 4      /* D = gelu'(aux) * alpha op(A)op(B) (used with beta 0), aux [M,N] the GELU's
                          * input, type of D (cuBLASLt's tanh-form derivative); bias unused (NULL) */
} zf_mm_epilogue;

/* workspace_bytes 0: 32 MiB (what cuBLASLt suggests for Hopper).  NULL on
 * failure (err filled). */
zf_matmul_ctx *zf_matmul_create(size_t workspace_bytes, zf_err *err);
void zf_matmul_free(zf_matmul_ctx *h);
/* The reason of the last failed call ("" if none). */
const char *zf_matmul_error(const zf_matmul_ctx *h);
/* Number of cached shapes (each got one heuristic query). */
int zf_matmul_cached_plans(const zf_matmul_ctx *h);

/* D[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * D, all row-major, enqueued
 * on stream.  op(A) = A stored [M,K] (lda >= K), or A^T when trans_a with A
 * stored [K,M] (lda >= M); likewise op(B) = B stored [K,N] (ldb >= N) or B^T
 * with B stored [N,K] (ldb >= K).  A and B have type ab; D has type d_type,
 * which is ab or ZF_GPU_F32 (fp32 D: accumulate into fp32 gradients with
 * beta = 1).  ldd >= N.  bias/aux/ldaux as the epilogue needs (else NULL/0);
 * ldaux >= N and a multiple of 8.  beta = 0 never reads D (NaN in D is fine).
 * A shape/epilogue cuBLASLt has no algorithm for fails before anything is
 * enqueued (the caller may fall back to an unfused product).
 * Returns 0, or -1 (reason in zf_matmul_error) on invalid arguments, an
 * unsupported combination or a cuBLASLt error. */
int zf_matmul(zf_matmul_ctx *h, cudaStream_t stream, zf_gpu_dtype ab, zf_gpu_dtype d_type, int M, int N, int K, const void *A,
              int lda, int trans_a, const void *B, int ldb, int trans_b, void *D, int ldd, float alpha, float beta,
              zf_mm_epilogue ep, void *bias, void *aux, int ldaux);

/* Linear layer forward, y[N,out] = x[N,in] W[in,out] + b (b may be NULL),
 * all of type dt, bias through the epilogue. */
int zf_linear_fwd(zf_matmul_ctx *h, cudaStream_t stream, zf_gpu_dtype dt, void *y, const void *x, const void *W,
                  const void *b, int N, int in, int out);

/* Linear layer forward followed by GELU: pre = x W + b, y = gelu(pre), one
 * fused product (cuBLASLt's GELU; zf_gk_gelu_fwd is the CPU model's exact
 * tanh form, use that when bit-level agreement with the CPU matters). */
int zf_linear_fwd_gelu(zf_matmul_ctx *h, cudaStream_t stream, zf_gpu_dtype dt, void *y, void *pre, const void *x,
                       const void *W, const void *b, int N, int in, int out);

/* Linear layer backward without the bias (see zf_gk_bias_grad for that):
 * dW[in,out] (fp32) += x^T dy, and dx[N,in] (type dt) = dy W^T when dx is
 * not NULL (overwritten, as in the CPU model). */
int zf_linear_bwd(zf_matmul_ctx *h, cudaStream_t stream, zf_gpu_dtype dt, void *dx, float *dW, const void *dy, const void *x,
                  const void *W, int N, int in, int out);

#ifdef __cplusplus
}
#endif

#endif
