/* attention.cuh - fused causal self-attention on the GPU (forward and
 * backward), flash-style: no T x T matrix ever reaches device memory.
 *
 * Owns: GPT-2's attention core between c_attn and c_proj, with the CPU
 * model's semantics (trainer/gpt2_cpu.c):
 *   qkv [B,T,3C] from c_attn, q|k|v along the last dim, head h of q at
 *   columns h*hd .. h*hd+hd-1 (hd = C/NH), k at +C, v at +2C;
 *   P = softmax(q k^T / sqrt(hd)) with the causal mask (key <= query);
 *   out[b,t,h*hd+e] = sum_j drop(P)[t,j] v[j,e] (heads re-interleaved, as the
 *   CPU model and HF expect), lse[b,h,t] = log sum_j exp(q_t.k_j/sqrt(hd)).
 * Attention dropout keeps element (b,h,t,j) when (lib/rng.h)
 *   zf_drop_u16(zf_drop_key(seed, site), ((b*NH+h)*T+t)*T+j) >= zf_drop_threshold(p)
 * and scales kept ones by 1/(1-p): the same masks as the CPU model draws, so
 * GPU and CPU agree in training mode (site = layer*4+1 there).
 *
 * Two paths, chosen per call:
 *   fast:    bf16/fp16, head dim 64 or 128, 16-byte aligned pointers and
 *            C % 8 == 0: tensor cores (mma.sync m16n8k16, sm_80+), fp32
 *            accumulation, online softmax over 64-key tiles, causal tiles
 *            skipped.  Backward is FlashAttention-2 style, recomputing P
 *            tile by tile, with a separate dQ pass so that no atomics are
 *            used: results are bitwise reproducible run to run.
 *   generic: any dtype (fp32 is the debug mode), any head dim up to 256:
 *            CUDA cores, fp32 arithmetic, also deterministic.
 * All outputs are written (not accumulated into).  Calls are asynchronous on
 * the given stream; launch errors are reported, execution errors surface at
 * the caller's next synchronisation. */
#ifndef ZF_ATTENTION_CUH
#define ZF_ATTENTION_CUH

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zf_err;                 /* lib/log.h */
typedef struct zf_err zf_err;

/* Element type of qkv, out, dout and dqkv (lse and the workspace are fp32). */
typedef enum zf_attn_dtype {
    ZF_ATTN_F32 = 0,  /* debug mode: generic path, fp32 throughout */
    ZF_ATTN_BF16 = 1,
    ZF_ATTN_F16 = 2
} zf_attn_dtype;

typedef struct zf_attn_desc {
    int B, T, C, NH;        /* batch, sequence length, channels, heads (C % NH == 0) */
    zf_attn_dtype dtype;
    float dropout_p;        /* attention dropout in [0, 1); 0 = off (eval) */
    uint64_t dropout_seed;  /* zf_hash3 seed (the CPU model's dropout_seed) */
    uint64_t dropout_site;  /* zf_hash3 site (the CPU model's layer*4+1) */
    int force_generic;      /* 1: always the generic path (tests, debugging) */
    /* Optional store of the dropout masks as bits, zf_attn_dropout_mask_bytes()
     * of device memory, 8-byte aligned; NULL (or dropout_p = 0): unused.  The
     * forward writes it (the same bits the hash gives, only for keys <= query);
     * a backward with the same desc and store reads it instead of drawing the
     * masks again (the fast path hashes each element once per pass otherwise:
     * 3x in all).  Between the two, leave the store alone. */
    uint64_t *dropout_mask;
} zf_attn_desc;

/* Forward: out [B,T,C] (dtype), lse [B,NH,T] (fp32, natural log, kept for the
 * backward).  qkv [B,T,3C] (dtype).  Returns 0, or -1 with err filled. */
int zf_attn_forward(const zf_attn_desc *d, void *out, float *lse, const void *qkv, cudaStream_t stream,
                    zf_err *err);

/* Bytes of a dropout mask store for these sizes: B*NH*ceil(T/64)*T 64-bit
 * words (word (b*NH+h)*ceil(T/64)*T + (key/64)*T + query, bit key%64). */
size_t zf_attn_dropout_mask_bytes(const zf_attn_desc *d);

/* Bytes of device workspace zf_attn_backward needs (B*NH*T floats). */
size_t zf_attn_backward_workspace(const zf_attn_desc *d);

/* Backward: dqkv [B,T,3C] (dtype, fully written) from dout [B,T,C], the
 * forward's inputs qkv and outputs out and lse, with the same desc (same
 * dropout seed/site) as the forward.  workspace: zf_attn_backward_workspace()
 * bytes of device memory, 4-byte aligned.  Returns 0, or -1 with err filled. */
int zf_attn_backward(const zf_attn_desc *d, void *dqkv, const void *dout, const void *qkv, const void *out,
                     const float *lse, void *workspace, cudaStream_t stream, zf_err *err);

/* 1 when the call would take the tensor-core path for these pointers. */
int zf_attn_uses_fast_path(const zf_attn_desc *d, const void *p0, const void *p1, const void *p2, const void *p3);

#ifdef __cplusplus
}
#endif

#endif
