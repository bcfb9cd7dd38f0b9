/* attention.cu - fused causal attention, forward and backward.  See
 * attention.cuh for the semantics and the two paths.
 *
 * Fast path layout (mma.sync m16n8k16, fp32 accumulators in registers):
 *   forward    one block of 4 warps per (b*NH+h, 64-query block); each warp
 *              owns 16 query rows; K/V tiles of 64 keys stream through shared
 *              memory with cp.async, double buffered; tiles right of the
 *              diagonal are never visited.
 *   backward   (1) dQ: a block per 64-query block, key tiles stream past;
 *              its prologue also computes delta = rowsum(dO * O) for its
 *              rows, (2) dK/dV: a block per 64-key block, warps own 16 keys
 *              each, query tiles stream past (S^T and dP^T computed directly
 *              so that P^T and dS^T are already the A operands).  Both passes
 *              recompute P; the extra QK^T / dO V^T of the dQ pass is the
 *              price of having no atomics (bitwise reproducible dQ).
 * On sm_90a the QK^T, PV, dV, dK and dQ products are where wgmma (warpgroup
 * of 4 warps, B operand from shared memory, async) and TMA tile loads would
 * replace mma.sync/cp.async; the tiling and the softmax logic stay as here.
 *
 * Measured on an H100 (tests/gpu/run_attention_tests.sh, 2026-11), GPT-2 124M
 * size B=4 T=1024 NH=12 hd=64, bf16: forward 0.050 ms, backward 0.136 ms
 * (torch 2.11 scaled_dot_product_attention: 0.050 / 0.176 ms); the tensor
 * pipe is ~30% busy, occupancy 3-4 blocks of 4 warps per SM (registers,
 * shared memory).  Tried and slower (docs/PERFORMANCE.md): two m16 tiles a
 * warp (32 rows) in all three kernels, which halves the shared-memory reads
 * per product but leaves 2 blocks per SM (forward +16%, backward +20% at
 * B=32); wgmma is the next step.  Dropout: with p = 0.1 the forward draws
 * one zf_drop_pair (32-bit arithmetic; the 64-bit hash it replaced made the
 * forward 17% slower at B=32) per pair of adjacent keys (T even); with a
 * mask store (zf_attn_desc.dropout_mask) it keeps the masks as bits
 * (B*NH*T*T/8 bytes) and the backward reads them instead of drawing each
 * element again in both passes. */
#include "attention.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "rng.h"


#define LOG2E_F 1.4426950408889634f
#define LN2_F 0.6931471805599453f

/* ---------------------------------------------------------------- dropout */

struct DropArgs {
    float scale;  /* kept values are scaled by 1/(1-p) */
    uint64_t key; /* zf_drop_key(seed, site): element i kept when zf_drop_u16(key, i) >= thr */
    uint32_t thr; /* zf_drop_threshold(p) */
    /* optional bit store of the masks (zf_attn_desc.dropout_mask): word
     * (bh*nkw + key/64)*T + query, bit key%64; the forward writes it, the
     * fast backward reads it instead of hashing every element twice more */
    uint64_t *mask;
    int nkw; /* 64-key words per row: ceil(T/64) */
};

/* Index of the mask word holding (bh, query row, key). */
__device__ __forceinline__ size_t d_mask_word(const DropArgs &dr, int bh, int Tn, int row, int key)
{
    return ((size_t)bh * dr.nkw + (key >> 6)) * Tn + row;
}

/* 1.0f if element idx is kept, else 0.0f (the 1/(1-p) scale is applied by
 * the callers once per row/column, outside the inner products). */
__device__ __forceinline__ float d_keep(const DropArgs &dr, uint64_t idx)
{
    return zf_drop_keep(dr.key, idx, dr.thr, 1.0f);
}

/* ------------------------------------------------------------ type helpers */

/* The tensor-core helpers need sm_80+ (cp.async, ldmatrix, bf16 mma); for
 * older targets they compile to a trap and the host never picks the fast
 * path there (fast_path_device()). */
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define ZF_ATTN_SM80 1
#else
#define ZF_ATTN_SM80 0
#endif

template <typename T> struct Ty;
template <> struct Ty<float> {
    static __device__ __forceinline__ float to_f(float x) { return x; }
    static __device__ __forceinline__ float from_f(float x) { return x; }
};
template <> struct Ty<__nv_bfloat16> {
    static __device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
    static __device__ __forceinline__ __nv_bfloat16 from_f(float x) { return __float2bfloat16_rn(x); }
    static __device__ __forceinline__ uint32_t pack2(float a, float b)
    {
        __nv_bfloat162 v = __floats2bfloat162_rn(a, b); /* a in the low half */
        return *reinterpret_cast<uint32_t *>(&v);
    }
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
    {
#if ZF_ATTN_SM80
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
        __trap();
#endif
    }
};
template <> struct Ty<__half> {
    static __device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
    static __device__ __forceinline__ __half from_f(float x) { return __float2half_rn(x); }
    static __device__ __forceinline__ uint32_t pack2(float a, float b)
    {
        __half2 v = __floats2half2_rn(a, b);
        return *reinterpret_cast<uint32_t *>(&v);
    }
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
    {
#if ZF_ATTN_SM80
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
        __trap();
#endif
    }
};

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ------------------------------------------------- shared-memory primitives */

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i. */
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p)
{
#if ZF_ATTN_SM80
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
#else
    __trap();
#endif
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p)
{
#if ZF_ATTN_SM80
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
#else
    __trap();
#endif
}
/* 16-byte global->shared copy; zero-filled when !valid (src is then not read). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
#if ZF_ATTN_SM80
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
#else
    __trap();
#endif
}
__device__ __forceinline__ void cp_async_commit()
{
#if ZF_ATTN_SM80
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void cp_async_wait()
{
#if ZF_ATTN_SM80
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/* Rows row0 .. row0+ROWS-1 (zero past nvalid) of a D-wide slice of a row-major
 * matrix with leading dimension ld into shared memory rows of LDS elements. */
template <typename T, int D, int ROWS, int LDS>
__device__ __forceinline__ void load_tile(T *sm, const T *g, size_t ld, int row0, int nvalid)
{
    constexpr int CPR = D / 8; /* 16-byte chunks per row */
    for (int i = threadIdx.x; i < ROWS * CPR; i += blockDim.x) {
        const int r = i / CPR, c = (i % CPR) * 8, gr = row0 + r;
        const bool ok = gr < nvalid;
        cp_async16(sm + r * LDS + c, ok ? g + (size_t)gr * ld + c : g, ok);
    }
}

/* Fragment address helpers (m16n8k16 operand layouts, g = lane/4, c = lane%4):
 *  A 16x16 from row-major rows (non-trans): matrices (r0-7,k0-7) (r8-15,k0-7)
 *    (r0-7,k8-15) (r8-15,k8-15)  -> the a0..a3 registers.
 *  B for two n8 tiles from rows = n, cols = k (non-trans): matrices
 *    (n0-7,k0-7) (n0-7,k8-15) (n8-15,k0-7) (n8-15,k8-15) -> b0,b1 of tile 0
 *    then b0,b1 of tile 1.
 *  B for two n8 tiles from rows = k, cols = n (trans): matrices
 *    (k0-7,n0-7) (k8-15,n0-7) (k0-7,n8-15) (k8-15,n8-15). */
__device__ __forceinline__ int a_row(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
__device__ __forceinline__ int a_col(int lane) { return (lane >> 4) * 8; }
__device__ __forceinline__ int bn_row(int lane) { return (lane & 7) + (lane >> 4) * 8; }
__device__ __forceinline__ int bn_col(int lane) { return ((lane >> 3) & 1) * 8; }
__device__ __forceinline__ int bt_row(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
__device__ __forceinline__ int bt_col(int lane) { return (lane >> 4) * 8; }

/* -------------------------------------------------------- fast: forward */

constexpr int FA_THREADS = 128; /* 4 warps x 16 rows */

constexpr int FA_BM = 64;       /* rows owned by a block (queries fwd/dQ, keys dK/dV) */

template <int D> __host__ __device__ constexpr int fwd_smem_bytes() { return (FA_BM + 4 * 64) * (D + 8) * 2; }

/* DROP: 0 no dropout, 1 one draw per element, 2 one zf_drop_pair per pair
 * of adjacent keys (T even: a lane's two keys are one pair) */
template <typename T, int D, int DROP>
__global__ void __launch_bounds__(FA_THREADS) fa_fwd_kernel(const T *__restrict__ qkv, T *__restrict__ out,
                                                            float *__restrict__ lse, int Tn, int NH, int C,
                                                            float scale_log2, DropArgs dr)
{
    constexpr int BK = 64, LDS = D + 8;
    extern __shared__ __align__(16) unsigned char smraw[];
    T *sQ = reinterpret_cast<T *>(smraw);
    T *sK = sQ + FA_BM * LDS; /* 2 stages */
    T *sV = sK + 2 * BK * LDS; /* 2 stages */

    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int nqb = (Tn + FA_BM - 1) / FA_BM;
    const int qb = nqb - 1 - (int)blockIdx.y; /* longest rows first */
    const int q0 = qb * FA_BM;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t ld = (size_t)3 * C;
    const T *gq = qkv + (size_t)b * Tn * ld + (size_t)h * D, *gk = gq + C, *gv = gq + 2 * C;

    load_tile<T, D, FA_BM, LDS>(sQ, gq, ld, q0, Tn);
    load_tile<T, D, BK, LDS>(sK, gk, ld, 0, Tn);
    load_tile<T, D, BK, LDS>(sV, gv, ld, 0, Tn);
    cp_async_commit();

    const int nkt = (q0 + FA_BM - 1) / BK + 1; /* key tiles holding a key <= the block's last row */
    const int row0 = q0 + warp * 16 + (lane >> 2), row1 = row0 + 8;
    uint32_t qf[D / 16][4];
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    for (int j = 0; j < nkt; j++) {
        if (j + 1 < nkt) {
            load_tile<T, D, BK, LDS>(sK + ((j + 1) & 1) * BK * LDS, gk, ld, (j + 1) * BK, Tn);
            load_tile<T, D, BK, LDS>(sV + ((j + 1) & 1) * BK * LDS, gv, ld, (j + 1) * BK, Tn);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (j == 0) {
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
                ldsm_x4(qf[kk], sQ + (warp * 16 + a_row(lane)) * LDS + kk * 16 + a_col(lane));
        }
        const T *k = sK + (j & 1) * BK * LDS, *v = sV + (j & 1) * BK * LDS;

        /* S = Q K^T for this warp's 16 rows x 64 keys */
        float s[BK / 8][4];
#pragma unroll
        for (int i = 0; i < BK / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
            for (int np = 0; np < BK / 16; np++) {
                uint32_t r[4];
                ldsm_x4(r, k + (np * 16 + bn_row(lane)) * LDS + kk * 16 + bn_col(lane));
                Ty<T>::mma(s[2 * np], qf[kk], r[0], r[1]);
                Ty<T>::mma(s[2 * np + 1], qf[kk], r[2], r[3]);
            }
        }
        /* scale into the log2 domain; mask keys right of the diagonal */
        const bool diag = (j + 1) * BK > q0;
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = j * BK + nt * 8 + (lane & 3) * 2 + (e & 1);
                const int row = e < 2 ? row0 : row1;
                const float x = s[nt][e] * scale_log2;
                s[nt][e] = (diag && key > row) ? -INFINITY : x;
            }
        /* online softmax: rows are shared by the 4 lanes of a quad */
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) {
            mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
            mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
        }
#pragma unroll
        for (int o2 = 1; o2 <= 2; o2 <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o2));
        }
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float ms0 = mn0 == -INFINITY ? 0.0f : mn0, ms1 = mn1 == -INFINITY ? 0.0f : mn1;
        const float al0 = exp2f(m0 - ms0), al1 = exp2f(m1 - ms1);
        m0 = mn0;
        m1 = mn1;
        float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] - ms0);
            s[nt][1] = exp2f(s[nt][1] - ms0);
            s[nt][2] = exp2f(s[nt][2] - ms1);
            s[nt][3] = exp2f(s[nt][3] - ms1);
            ps0 += s[nt][0] + s[nt][1];
            ps1 += s[nt][2] + s[nt][3];
        }
        l0 = l0 * al0 + ps0; /* per-lane partial sums; the quad is reduced at the end */
        l1 = l1 * al1 + ps1;
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            o[i][0] *= al0;
            o[i][1] *= al0;
            o[i][2] *= al1;
            o[i][3] *= al1;
        }
        if (DROP) { /* normaliser uses undropped P; the product uses the mask */
            const uint64_t base0 = ((uint64_t)bh * Tn + row0) * Tn, base1 = ((uint64_t)bh * Tn + row1) * Tn;
            uint64_t w0 = 0, w1 = 0; /* this lane's bits of the two rows' 64-key words */
            if (DROP == 2) { /* a lane's two adjacent keys are one pair: one hash for both */
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                    for (int r = 0; r < 2; r++) {
                        const int kk = nt * 8 + (lane & 3) * 2, key = j * BK + kk;
                        const uint32_t h = zf_drop_pair(dr.key, ((r ? base1 : base0) + key) >> 1);
                        const uint32_t ke = (h & 0xFFFFu) >= dr.thr, ko = (h >> 16) >= dr.thr;
                        s[nt][2 * r] *= ke ? 1.0f : 0.0f;
                        s[nt][2 * r + 1] *= ko ? 1.0f : 0.0f;
                        const uint64_t bits = (uint64_t)(ke | (ko << 1)) << kk;
                        if (r) w1 |= bits;
                        else w0 |= bits;
                    }
            } else {
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int kk = nt * 8 + (lane & 3) * 2 + (e & 1), key = j * BK + kk;
                        const float kp = d_keep(dr, (e < 2 ? base0 : base1) + key);
                        s[nt][e] *= kp;
                        if (e < 2) w0 |= (uint64_t)(kp != 0.0f) << kk;
                        else w1 |= (uint64_t)(kp != 0.0f) << kk;
                    }
            }
            if (dr.mask) { /* the quad's lanes hold disjoint bits of the same words */
#pragma unroll
                for (int o2 = 1; o2 <= 2; o2 <<= 1) {
                    w0 |= __shfl_xor_sync(0xffffffffu, w0, o2);
                    w1 |= __shfl_xor_sync(0xffffffffu, w1, o2);
                }
                if ((lane & 3) == 0) {
                    if (row0 < Tn) dr.mask[d_mask_word(dr, bh, Tn, row0, j * BK)] = w0;
                    if (row1 < Tn) dr.mask[d_mask_word(dr, bh, Tn, row1, j * BK)] = w1;
                }
            }
        }
        /* O += P V: the S accumulator layout is the A operand layout */
#pragma unroll
        for (int kt = 0; kt < BK / 16; kt++) {
            uint32_t a[4];
            a[0] = Ty<T>::pack2(s[2 * kt][0], s[2 * kt][1]);
            a[1] = Ty<T>::pack2(s[2 * kt][2], s[2 * kt][3]);
            a[2] = Ty<T>::pack2(s[2 * kt + 1][0], s[2 * kt + 1][1]);
            a[3] = Ty<T>::pack2(s[2 * kt + 1][2], s[2 * kt + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t r[4];
                ldsm_x4_t(r, v + (kt * 16 + bt_row(lane)) * LDS + dp * 16 + bt_col(lane));
                Ty<T>::mma(o[2 * dp], a, r[0], r[1]);
                Ty<T>::mma(o[2 * dp + 1], a, r[2], r[3]);
            }
        }
        __syncthreads(); /* the next iteration's loads overwrite this stage */
    }

#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, o2);
        l1 += __shfl_xor_sync(0xffffffffu, l1, o2);
    }
    const float sc = DROP ? dr.scale : 1.0f;
    const float inv0 = sc / l0, inv1 = sc / l1;
    const int col = h * D + (lane & 3) * 2;
    if (row0 < Tn) {
        T *op = out + ((size_t)b * Tn + row0) * C + col;
#pragma unroll
        for (int nt = 0; nt < D / 8; nt++)
            *reinterpret_cast<uint32_t *>(op + nt * 8) = Ty<T>::pack2(o[nt][0] * inv0, o[nt][1] * inv0);
        if ((lane & 3) == 0) lse[(size_t)bh * Tn + row0] = (m0 + log2f(l0)) * LN2_F;
    }
    if (row1 < Tn) {
        T *op = out + ((size_t)b * Tn + row1) * C + col;
#pragma unroll
        for (int nt = 0; nt < D / 8; nt++)
            *reinterpret_cast<uint32_t *>(op + nt * 8) = Ty<T>::pack2(o[nt][2] * inv1, o[nt][3] * inv1);
        if ((lane & 3) == 0) lse[(size_t)bh * Tn + row1] = (m1 + log2f(l1)) * LN2_F;
    }
}

/* ------------------------------------------------ backward: delta = dO.O */

/* delta[bh*T+t] = sum_e dout[b,t,h*hd+e] * out[b,t,h*hd+e]; one warp a row.
 * (Equal to sum_j P*dP*mask even with dropout, since out already holds the
 * dropped, rescaled P.) */
template <typename T>
__global__ void attn_delta_kernel(const T *__restrict__ dout, const T *__restrict__ out, float *__restrict__ delta,
                                  int B, int Tn, int NH, int C, int hd)
{
    const long w = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (w >= (long)B * Tn * NH) return;
    const int h = (int)(w % NH);
    const long bt = w / NH;
    const size_t off = (size_t)bt * C + (size_t)h * hd;
    float s = 0.0f;
    for (int e = lane; e < hd; e += 32) s += Ty<T>::to_f(dout[off + e]) * Ty<T>::to_f(out[off + e]);
    s = warp_sum(s);
    if (lane == 0) {
        const int b = (int)(bt / Tn), t = (int)(bt % Tn);
        delta[((size_t)b * NH + h) * Tn + t] = s;
    }
}

/* ---------------------------------------------------- fast: backward dK dV */

/* Query (or, for dQ, key) tile streamed past the block's 64 owned rows;
 * 32 for head dim 128 keeps S, dP, dK, dV within the register file. */
template <int D> __host__ __device__ constexpr int bwd_bn() { return D == 128 ? 32 : 64; }
/* Blocks per SM the backward kernels are register-capped for: head dim 64
 * fits 3 (<= 168 registers, no spills without dropout); 128 needs more. */
template <int D> __host__ __device__ constexpr int bwd_minb() { return D == 64 ? 3 : 1; }
template <int D> __host__ __device__ constexpr int dkdv_smem_bytes()
{
    return (2 * FA_BM + 4 * bwd_bn<D>()) * (D + 8) * 2 + 4 * bwd_bn<D>() * 4 + 2 * bwd_bn<D>() * 8;
}

/* MASK: the dropout masks come from the store (dr.mask), not drawn again */
template <typename T, int D, bool DROP, bool MASK>
__global__ void __launch_bounds__(FA_THREADS, bwd_minb<D>()) fa_bwd_dkdv_kernel(const T *__restrict__ qkv,
                                                                 const T *__restrict__ dout,
                                                                 const float *__restrict__ lse,
                                                                 const float *__restrict__ delta,
                                                                 T *__restrict__ dqkv, int Tn, int NH, int C,
                                                                 float scale_log2, float scale, DropArgs dr)
{
    constexpr int BN = bwd_bn<D>(), LDS = D + 8;
    extern __shared__ __align__(16) unsigned char smraw[];
    T *sK = reinterpret_cast<T *>(smraw);
    T *sV = sK + FA_BM * LDS;
    T *sQ = sV + FA_BM * LDS;   /* 2 stages */
    T *sdO = sQ + 2 * BN * LDS; /* 2 stages */
    float *sL = reinterpret_cast<float *>(sdO + 2 * BN * LDS); /* 2 stages: lse * log2(e) */
    float *sD = sL + 2 * BN;                                   /* 2 stages: delta */
    uint64_t *sM = reinterpret_cast<uint64_t *>(sD + 2 * BN);  /* 2 stages: the queries' mask words */

    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int kb = blockIdx.y; /* block 0 has the most query tiles: first */
    const int k0 = kb * FA_BM;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t ld = (size_t)3 * C;
    const T *gq = qkv + (size_t)b * Tn * ld + (size_t)h * D, *gk = gq + C, *gv = gq + 2 * C;
    const T *gdo = dout + (size_t)b * Tn * C + (size_t)h * D;
    const float *gl = lse + (size_t)bh * Tn, *gd = delta + (size_t)bh * Tn;

    const int ntile = (Tn + BN - 1) / BN, t0 = k0 / BN;
    load_tile<T, D, FA_BM, LDS>(sK, gk, ld, k0, Tn);
    load_tile<T, D, FA_BM, LDS>(sV, gv, ld, k0, Tn);
    load_tile<T, D, BN, LDS>(sQ, gq, ld, t0 * BN, Tn);
    load_tile<T, D, BN, LDS>(sdO, gdo, (size_t)C, t0 * BN, Tn);
    /* the mask words of this block's 64 keys (one word per query row) */
    const uint64_t *gm = DROP && MASK ? dr.mask + d_mask_word(dr, bh, Tn, 0, k0) : nullptr;
    for (int i = threadIdx.x; i < BN; i += blockDim.x) {
        const int q = t0 * BN + i;
        sL[i] = q < Tn ? gl[q] * LOG2E_F : 0.0f;
        sD[i] = q < Tn ? gd[q] : 0.0f;
        if (DROP && MASK) sM[i] = q < Tn ? gm[q] : 0;
    }
    cp_async_commit();

    const int key0 = k0 + warp * 16 + (lane >> 2), key1 = key0 + 8;
    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.0f;

    for (int t = t0; t < ntile; t++) {
        const int st = (t - t0) & 1;
        if (t + 1 < ntile) {
            const int ns = st ^ 1, nq0 = (t + 1) * BN;
            load_tile<T, D, BN, LDS>(sQ + ns * BN * LDS, gq, ld, nq0, Tn);
            load_tile<T, D, BN, LDS>(sdO + ns * BN * LDS, gdo, (size_t)C, nq0, Tn);
            for (int i = threadIdx.x; i < BN; i += blockDim.x) {
                const int q = nq0 + i;
                sL[ns * BN + i] = q < Tn ? gl[q] * LOG2E_F : 0.0f;
                sD[ns * BN + i] = q < Tn ? gd[q] : 0.0f;
                if (DROP && MASK) sM[ns * BN + i] = q < Tn ? gm[q] : 0;
            }
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T *q = sQ + st * BN * LDS, *dO = sdO + st * BN * LDS;
        const float *Ls = sL + st * BN, *Ds = sD + st * BN;
        const uint32_t *Ms = reinterpret_cast<const uint32_t *>(sM + st * BN); /* 32-bit halves */
        const int q0 = t * BN;

        /* S^T = K Q^T and dP^T = V dO^T: 16 keys x BN queries per warp */
        float s[BN / 8][4], dp[BN / 8][4];
#pragma unroll
        for (int i = 0; i < BN / 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[i][e] = dp[i][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t ka[4], va[4];
            ldsm_x4(ka, sK + (warp * 16 + a_row(lane)) * LDS + kk * 16 + a_col(lane));
            ldsm_x4(va, sV + (warp * 16 + a_row(lane)) * LDS + kk * 16 + a_col(lane));
#pragma unroll
            for (int np = 0; np < BN / 16; np++) {
                uint32_t r[4];
                ldsm_x4(r, q + (np * 16 + bn_row(lane)) * LDS + kk * 16 + bn_col(lane));
                Ty<T>::mma(s[2 * np], ka, r[0], r[1]);
                Ty<T>::mma(s[2 * np + 1], ka, r[2], r[3]);
                ldsm_x4(r, dO + (np * 16 + bn_row(lane)) * LDS + kk * 16 + bn_col(lane));
                Ty<T>::mma(dp[2 * np], va, r[0], r[1]);
                Ty<T>::mma(dp[2 * np + 1], va, r[2], r[3]);
            }
        }
        /* P^T (masked), dropout mask, dS^T = P (dP*mask*scale_d - delta); the
         * softmax scale goes on dK at the end, 1/(1-p) on dV */
        float pd[BN / 8][4];
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int qi = nt * 8 + (lane & 3) * 2 + (e & 1), qq = q0 + qi;
                const int key = e < 2 ? key0 : key1;
                const bool valid = qq >= key && qq < Tn;
                const float p = valid ? exp2f(s[nt][e] * scale_log2 - Ls[qi]) : 0.0f;
                float keep = 1.0f;
                if (DROP)
                    keep = MASK ? (float)((Ms[2 * qi + ((key >> 5) & 1)] >> (key & 31)) & 1u)
                                : d_keep(dr, ((uint64_t)bh * Tn + qq) * Tn + key);
                pd[nt][e] = p * keep;
                s[nt][e] = p * (dp[nt][e] * (DROP ? keep * dr.scale : 1.0f) - Ds[qi]);
            }
        /* dV += Pd^T dO and dK += dS^T Q: k runs over queries */
#pragma unroll
        for (int kt = 0; kt < BN / 16; kt++) {
            uint32_t a[4], g[4];
            a[0] = Ty<T>::pack2(pd[2 * kt][0], pd[2 * kt][1]);
            a[1] = Ty<T>::pack2(pd[2 * kt][2], pd[2 * kt][3]);
            a[2] = Ty<T>::pack2(pd[2 * kt + 1][0], pd[2 * kt + 1][1]);
            a[3] = Ty<T>::pack2(pd[2 * kt + 1][2], pd[2 * kt + 1][3]);
            g[0] = Ty<T>::pack2(s[2 * kt][0], s[2 * kt][1]);
            g[1] = Ty<T>::pack2(s[2 * kt][2], s[2 * kt][3]);
            g[2] = Ty<T>::pack2(s[2 * kt + 1][0], s[2 * kt + 1][1]);
            g[3] = Ty<T>::pack2(s[2 * kt + 1][2], s[2 * kt + 1][3]);
#pragma unroll
            for (int dd = 0; dd < D / 16; dd++) {
                uint32_t r[4];
                ldsm_x4_t(r, dO + (kt * 16 + bt_row(lane)) * LDS + dd * 16 + bt_col(lane));
                Ty<T>::mma(dv[2 * dd], a, r[0], r[1]);
                Ty<T>::mma(dv[2 * dd + 1], a, r[2], r[3]);
                ldsm_x4_t(r, q + (kt * 16 + bt_row(lane)) * LDS + dd * 16 + bt_col(lane));
                Ty<T>::mma(dk[2 * dd], g, r[0], r[1]);
                Ty<T>::mma(dk[2 * dd + 1], g, r[2], r[3]);
            }
        }
        __syncthreads();
    }

    const float vs = DROP ? dr.scale : 1.0f;
    const int col = h * D + (lane & 3) * 2;
    if (key0 < Tn) {
        T *kp = dqkv + ((size_t)b * Tn + key0) * ld + C + col, *vp = kp + C;
#pragma unroll
        for (int nt = 0; nt < D / 8; nt++) {
            *reinterpret_cast<uint32_t *>(kp + nt * 8) = Ty<T>::pack2(dk[nt][0] * scale, dk[nt][1] * scale);
            *reinterpret_cast<uint32_t *>(vp + nt * 8) = Ty<T>::pack2(dv[nt][0] * vs, dv[nt][1] * vs);
        }
    }
    if (key1 < Tn) {
        T *kp = dqkv + ((size_t)b * Tn + key1) * ld + C + col, *vp = kp + C;
#pragma unroll
        for (int nt = 0; nt < D / 8; nt++) {
            *reinterpret_cast<uint32_t *>(kp + nt * 8) = Ty<T>::pack2(dk[nt][2] * scale, dk[nt][3] * scale);
            *reinterpret_cast<uint32_t *>(vp + nt * 8) = Ty<T>::pack2(dv[nt][2] * vs, dv[nt][3] * vs);
        }
    }
}

/* -------------------------------------------------------- fast: backward dQ */

template <int D> __host__ __device__ constexpr int dq_smem_bytes() { return (2 * FA_BM + 4 * bwd_bn<D>()) * (D + 8) * 2; }

template <typename T, int D, bool DROP, bool MASK>
__global__ void __launch_bounds__(FA_THREADS, bwd_minb<D>())
    fa_bwd_dq_kernel(const T *__restrict__ qkv, const T *__restrict__ dout, const T *__restrict__ out,
                     const float *__restrict__ lse, float *__restrict__ delta, T *__restrict__ dqkv, int Tn, int NH,
                     int C, float scale_log2, float scale, DropArgs dr)
{
    constexpr int BN = bwd_bn<D>(), LDS = D + 8;
    extern __shared__ __align__(16) unsigned char smraw[];
    T *sQ = reinterpret_cast<T *>(smraw);
    T *sdO = sQ + FA_BM * LDS;
    T *sK = sdO + FA_BM * LDS;  /* 2 stages */
    T *sV = sK + 2 * BN * LDS;  /* 2 stages */

    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int nqb = (Tn + FA_BM - 1) / FA_BM;
    const int qb = nqb - 1 - (int)blockIdx.y;
    const int q0 = qb * FA_BM;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t ld = (size_t)3 * C;
    const T *gq = qkv + (size_t)b * Tn * ld + (size_t)h * D, *gk = gq + C, *gv = gq + 2 * C;
    const T *gdo = dout + (size_t)b * Tn * C + (size_t)h * D, *go = out + (size_t)b * Tn * C + (size_t)h * D;

    load_tile<T, D, FA_BM, LDS>(sQ, gq, ld, q0, Tn);
    load_tile<T, D, FA_BM, LDS>(sdO, gdo, (size_t)C, q0, Tn);
    load_tile<T, D, BN, LDS>(sK, gk, ld, 0, Tn);
    load_tile<T, D, BN, LDS>(sV, gv, ld, 0, Tn);
    cp_async_commit();

    /* delta = rowsum(dO * O) for this block's 64 rows, two threads a row,
     * 16-byte loads, while the tiles arrive; written out for the dK/dV pass,
     * which runs after this one.  (Equal to sum_j P dP mask even with
     * dropout, since O already holds the dropped, rescaled P.) */
    __shared__ float sDelta[FA_BM];
    {
        static_assert(FA_THREADS == 2 * FA_BM, "two threads a row");
        const int r = threadIdx.x >> 1, half = threadIdx.x & 1, row = q0 + r;
        float acc = 0.0f;
        if (row < Tn) {
            const T *a = gdo + (size_t)row * C + half * (D / 2), *o = go + (size_t)row * C + half * (D / 2);
#pragma unroll
            for (int i = 0; i < D / 2; i += 8) {
                const uint4 va = *reinterpret_cast<const uint4 *>(a + i), vo = *reinterpret_cast<const uint4 *>(o + i);
                const T *ea = reinterpret_cast<const T *>(&va), *eo = reinterpret_cast<const T *>(&vo);
#pragma unroll
                for (int k = 0; k < 8; k++) acc += Ty<T>::to_f(ea[k]) * Ty<T>::to_f(eo[k]);
            }
        }
        acc += __shfl_xor_sync(0xffffffffu, acc, 1);
        if (!half) {
            sDelta[r] = acc;
            if (row < Tn) delta[(size_t)bh * Tn + row] = acc;
        }
    }
    __syncthreads();

    const int row0 = q0 + warp * 16 + (lane >> 2), row1 = row0 + 8;
    const float L0 = row0 < Tn ? lse[(size_t)bh * Tn + row0] * LOG2E_F : 0.0f;
    const float L1 = row1 < Tn ? lse[(size_t)bh * Tn + row1] * LOG2E_F : 0.0f;
    const float D0 = sDelta[row0 - q0], D1 = sDelta[row1 - q0];
    const int last = min(q0 + FA_BM, Tn) - 1;
    const int nkt = last / BN + 1;
    float dq[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.0f;

    for (int j = 0; j < nkt; j++) {
        if (j + 1 < nkt) {
            load_tile<T, D, BN, LDS>(sK + ((j + 1) & 1) * BN * LDS, gk, ld, (j + 1) * BN, Tn);
            load_tile<T, D, BN, LDS>(sV + ((j + 1) & 1) * BN * LDS, gv, ld, (j + 1) * BN, Tn);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T *k = sK + (j & 1) * BN * LDS, *v = sV + (j & 1) * BN * LDS;
        /* the two rows' mask words for this key tile (read early: the
         * products below hide the load) */
        uint64_t mw0 = 0, mw1 = 0;
        if (DROP && MASK) {
            if (row0 < Tn) mw0 = dr.mask[d_mask_word(dr, bh, Tn, row0, j * BN)];
            if (row1 < Tn) mw1 = dr.mask[d_mask_word(dr, bh, Tn, row1, j * BN)];
        }

        /* S = Q K^T, dP = dO V^T: 16 queries x BN keys per warp */
        float s[BN / 8][4], dp[BN / 8][4];
#pragma unroll
        for (int i = 0; i < BN / 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[i][e] = dp[i][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t qa[4], oa[4];
            ldsm_x4(qa, sQ + (warp * 16 + a_row(lane)) * LDS + kk * 16 + a_col(lane));
            ldsm_x4(oa, sdO + (warp * 16 + a_row(lane)) * LDS + kk * 16 + a_col(lane));
#pragma unroll
            for (int np = 0; np < BN / 16; np++) {
                uint32_t r[4];
                ldsm_x4(r, k + (np * 16 + bn_row(lane)) * LDS + kk * 16 + bn_col(lane));
                Ty<T>::mma(s[2 * np], qa, r[0], r[1]);
                Ty<T>::mma(s[2 * np + 1], qa, r[2], r[3]);
                ldsm_x4(r, v + (np * 16 + bn_row(lane)) * LDS + kk * 16 + bn_col(lane));
                Ty<T>::mma(dp[2 * np], oa, r[0], r[1]);
                Ty<T>::mma(dp[2 * np + 1], oa, r[2], r[3]);
            }
        }
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = j * BN + nt * 8 + (lane & 3) * 2 + (e & 1);
                const int row = e < 2 ? row0 : row1;
                const bool valid = key <= row;
                const float p = valid ? exp2f(s[nt][e] * scale_log2 - (e < 2 ? L0 : L1)) : 0.0f;
                float g = dp[nt][e];
                if (DROP) {
                    const float kp = MASK ? (float)((((e < 2) ? mw0 : mw1) >> (key & 63)) & 1u)
                                             : d_keep(dr, ((uint64_t)bh * Tn + row) * Tn + key);
                    g *= kp * dr.scale;
                }
                s[nt][e] = p * (g - (e < 2 ? D0 : D1));
            }
        /* dQ += dS K: k runs over keys */
#pragma unroll
        for (int kt = 0; kt < BN / 16; kt++) {
            uint32_t g[4];
            g[0] = Ty<T>::pack2(s[2 * kt][0], s[2 * kt][1]);
            g[1] = Ty<T>::pack2(s[2 * kt][2], s[2 * kt][3]);
            g[2] = Ty<T>::pack2(s[2 * kt + 1][0], s[2 * kt + 1][1]);
            g[3] = Ty<T>::pack2(s[2 * kt + 1][2], s[2 * kt + 1][3]);
#pragma unroll
            for (int dd = 0; dd < D / 16; dd++) {
                uint32_t r[4];
                ldsm_x4_t(r, k + (kt * 16 + bt_row(lane)) * LDS + dd * 16 + bt_col(lane));
                Ty<T>::mma(dq[2 * dd], g, r[0], r[1]);
                Ty<T>::mma(dq[2 * dd + 1], g, r[2], r[3]);
            }
        }
        __syncthreads();
    }

    const int col = h * D + (lane & 3) * 2;
    if (row0 < Tn) {
        T *qp = dqkv + ((size_t)b * Tn + row0) * ld + col;
#pragma unroll
        for (int nt = 0; nt < D / 8; nt++)
            *reinterpret_cast<uint32_t *>(qp + nt * 8) = Ty<T>::pack2(dq[nt][0] * scale, dq[nt][1] * scale);
    }
    if (row1 < Tn) {
        T *qp = dqkv + ((size_t)b * Tn + row1) * ld + col;
#pragma unroll
        for (int nt = 0; nt < D / 8; nt++)
            *reinterpret_cast<uint32_t *>(qp + nt * 8) = Ty<T>::pack2(dq[nt][2] * scale, dq[nt][3] * scale);
    }
}

/* ------------------------------------------------------ generic path */

/* CUDA-core kernels for any dtype and head dim <= 256.  A block of 4 warps
 * owns 16 rows (4 per warp); the other side streams through shared memory as
 * fp32 in chunks of 32 rows.  Scores: lane = the chunk row, dot products over
 * a shared-memory row of odd stride (conflict-free); accumulation: lane = the
 * head-dim element (8 slots of 32 cover 256). */
constexpr int GR = 4;        /* rows per warp */
constexpr int GROWS = 16;    /* rows per block */
constexpr int GCH = 32;      /* streamed chunk */
constexpr int GMAXD = 256;
constexpr int GSLOT = GMAXD / 32;

static inline int gen_stride(int hd) { return hd | 1; }
static size_t gen_smem_bytes(int hd) { return (size_t)(2 * GCH * gen_stride(hd) + 2 * GROWS * hd + 2 * GCH) * 4; }

template <typename T>
__device__ __forceinline__ void gen_load_rows(float *dst, int stride, const T *src, size_t ld, int row0, int nrows,
                                              int nvalid, int hd, float mul)
{
    for (int i = threadIdx.x; i < nrows * hd; i += blockDim.x) {
        const int r = i / hd, e = i % hd, gr = row0 + r;
        dst[r * stride + e] = gr < nvalid ? Ty<T>::to_f(src[(size_t)gr * ld + e]) * mul : 0.0f;
    }
}

template <typename T, bool DROP>
__global__ void __launch_bounds__(128) gen_fwd_kernel(const T *__restrict__ qkv, T *__restrict__ out,
                                                      float *__restrict__ lse, int Tn, int NH, int C, int hd,
                                                      float scale, DropArgs dr)
{
    extern __shared__ float gsm[];
    const int ks = hd | 1;
    float *sK = gsm, *sV = sK + GCH * ks, *sQ = sV + GCH * ks;
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int q0 = ((int)gridDim.y - 1 - (int)blockIdx.y) * GROWS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t ld = (size_t)3 * C;
    const T *gq = qkv + (size_t)b * Tn * ld + (size_t)h * hd, *gk = gq + C, *gv = gq + 2 * C;
    gen_load_rows(sQ, hd, gq, ld, q0, GROWS, Tn, hd, scale);

    float acc[GR][GSLOT], m[GR], l[GR];
#pragma unroll
    for (int r = 0; r < GR; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int i = 0; i < GSLOT; i++) acc[r][i] = 0.0f;
    }
    const int last = min(q0 + GROWS, Tn) - 1;
    for (int c0 = 0; c0 <= last; c0 += GCH) {
        __syncthreads();
        gen_load_rows(sK, ks, gk, ld, c0, GCH, Tn, hd, 1.0f);
        gen_load_rows(sV, ks, gv, ld, c0, GCH, Tn, hd, 1.0f);
        __syncthreads();
        const int key = c0 + lane;
#pragma unroll
        for (int r = 0; r < GR; r++) {
            const int lr = warp * GR + r, row = q0 + lr;
            const float *qr = sQ + lr * hd, *kr = sK + lane * ks;
            float s = 0.0f;
            for (int e = 0; e < hd; e++) s += qr[e] * kr[e];
            const bool valid = key <= row;
            s = valid ? s : -INFINITY;
            const float mn = fmaxf(m[r], warp_max(s));
            if (mn == -INFINITY) continue; /* warp-uniform */
            const float al = expf(m[r] - mn);
            float p = valid ? expf(s - mn) : 0.0f;
            l[r] = l[r] * al + warp_sum(p);
            m[r] = mn;
            if (DROP) p *= d_keep(dr, ((uint64_t)bh * Tn + row) * Tn + key);
#pragma unroll
            for (int i = 0; i < GSLOT; i++) acc[r][i] *= al;
            for (int jj = 0; jj < GCH; jj++) {
                const float pj = __shfl_sync(0xffffffffu, p, jj);
                const float *vr = sV + jj * ks;
#pragma unroll
                for (int i = 0; i < GSLOT; i++) {
                    const int e = lane + 32 * i;
                    if (e < hd) acc[r][i] += pj * vr[e];
                }
            }
        }
    }
    const float sc = DROP ? dr.scale : 1.0f;
#pragma unroll
    for (int r = 0; r < GR; r++) {
        const int row = q0 + warp * GR + r;
        if (row >= Tn) continue;
        const float inv = sc / l[r];
        T *op = out + ((size_t)b * Tn + row) * C + (size_t)h * hd;
#pragma unroll
        for (int i = 0; i < GSLOT; i++) {
            const int e = lane + 32 * i;
            if (e < hd) op[e] = Ty<T>::from_f(acc[r][i] * inv);
        }
        if (lane == 0) lse[(size_t)bh * Tn + row] = m[r] + logf(l[r]);
    }
}

template <typename T, bool DROP>
__global__ void __launch_bounds__(128) gen_bwd_dq_kernel(const T *__restrict__ qkv, const T *__restrict__ dout,
                                                         const float *__restrict__ lse,
                                                         const float *__restrict__ delta, T *__restrict__ dqkv,
                                                         int Tn, int NH, int C, int hd, float scale, DropArgs dr)
{
    extern __shared__ float gsm[];
    const int ks = hd | 1;
    float *sK = gsm, *sV = sK + GCH * ks, *sQ = sV + GCH * ks, *sdO = sQ + GROWS * hd;
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int q0 = ((int)gridDim.y - 1 - (int)blockIdx.y) * GROWS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t ld = (size_t)3 * C;
    const T *gq = qkv + (size_t)b * Tn * ld + (size_t)h * hd, *gk = gq + C, *gv = gq + 2 * C;
    const T *gdo = dout + (size_t)b * Tn * C + (size_t)h * hd;
    gen_load_rows(sQ, hd, gq, ld, q0, GROWS, Tn, hd, scale);
    gen_load_rows(sdO, hd, gdo, (size_t)C, q0, GROWS, Tn, hd, 1.0f);

    float acc[GR][GSLOT], L[GR], Dl[GR];
#pragma unroll
    for (int r = 0; r < GR; r++) {
        const int row = q0 + warp * GR + r;
        L[r] = row < Tn ? lse[(size_t)bh * Tn + row] : 0.0f;
        Dl[r] = row < Tn ? delta[(size_t)bh * Tn + row] : 0.0f;
#pragma unroll
        for (int i = 0; i < GSLOT; i++) acc[r][i] = 0.0f;
    }
    const int last = min(q0 + GROWS, Tn) - 1;
    for (int c0 = 0; c0 <= last; c0 += GCH) {
        __syncthreads();
        gen_load_rows(sK, ks, gk, ld, c0, GCH, Tn, hd, 1.0f);
        gen_load_rows(sV, ks, gv, ld, c0, GCH, Tn, hd, 1.0f);
        __syncthreads();
        const int key = c0 + lane;
#pragma unroll
        for (int r = 0; r < GR; r++) {
            const int lr = warp * GR + r, row = q0 + lr;
            if (row > last) continue; /* warp-uniform */
            const float *qr = sQ + lr * hd, *dor = sdO + lr * hd, *kr = sK + lane * ks, *vr = sV + lane * ks;
            float s = 0.0f, dp = 0.0f;
            for (int e = 0; e < hd; e++) {
                s += qr[e] * kr[e];
                dp += dor[e] * vr[e];
            }
            const bool valid = key <= row;
            const float p = valid ? expf(s - L[r]) : 0.0f;
            if (DROP) dp *= d_keep(dr, ((uint64_t)bh * Tn + row) * Tn + key) * dr.scale;
            const float ds = p * (dp - Dl[r]);
            for (int jj = 0; jj < GCH; jj++) {
                const float dj = __shfl_sync(0xffffffffu, ds, jj);
                const float *kj = sK + jj * ks;
#pragma unroll
                for (int i = 0; i < GSLOT; i++) {
                    const int e = lane + 32 * i;
                    if (e < hd) acc[r][i] += dj * kj[e];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < GR; r++) {
        const int row = q0 + warp * GR + r;
        if (row >= Tn) continue;
        T *qp = dqkv + ((size_t)b * Tn + row) * ld + (size_t)h * hd;
#pragma unroll
        for (int i = 0; i < GSLOT; i++) {
            const int e = lane + 32 * i;
            if (e < hd) qp[e] = Ty<T>::from_f(acc[r][i] * scale);
        }
    }
}

template <typename T, bool DROP>
__global__ void __launch_bounds__(128) gen_bwd_dkdv_kernel(const T *__restrict__ qkv, const T *__restrict__ dout,
                                                           const float *__restrict__ lse,
                                                           const float *__restrict__ delta, T *__restrict__ dqkv,
                                                           int Tn, int NH, int C, int hd, float scale, DropArgs dr)
{
    extern __shared__ float gsm[];
    const int ks = hd | 1;
    float *sQ = gsm, *sdO = sQ + GCH * ks, *sK = sdO + GCH * ks, *sV = sK + GROWS * hd, *sL = sV + GROWS * hd,
          *sD = sL + GCH;
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int k0 = (int)blockIdx.y * GROWS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t ld = (size_t)3 * C;
    const T *gq = qkv + (size_t)b * Tn * ld + (size_t)h * hd, *gk = gq + C, *gv = gq + 2 * C;
    const T *gdo = dout + (size_t)b * Tn * C + (size_t)h * hd;
    gen_load_rows(sK, hd, gk, ld, k0, GROWS, Tn, hd, scale); /* k pre-scaled: s = q.k*scale */
    gen_load_rows(sV, hd, gv, ld, k0, GROWS, Tn, hd, 1.0f);

    float dk[GR][GSLOT], dv[GR][GSLOT];
#pragma unroll
    for (int r = 0; r < GR; r++)
#pragma unroll
        for (int i = 0; i < GSLOT; i++) dk[r][i] = dv[r][i] = 0.0f;
    for (int c0 = (k0 / GCH) * GCH; c0 < Tn; c0 += GCH) {
        __syncthreads();
        gen_load_rows(sQ, ks, gq, ld, c0, GCH, Tn, hd, 1.0f);
        gen_load_rows(sdO, ks, gdo, (size_t)C, c0, GCH, Tn, hd, 1.0f);
        for (int i = threadIdx.x; i < GCH; i += blockDim.x) {
            const int q = c0 + i;
            sL[i] = q < Tn ? lse[(size_t)bh * Tn + q] : 0.0f;
            sD[i] = q < Tn ? delta[(size_t)bh * Tn + q] : 0.0f;
        }
        __syncthreads();
        const int q = c0 + lane;
#pragma unroll
        for (int r = 0; r < GR; r++) {
            const int lr = warp * GR + r, key = k0 + lr;
            if (key >= Tn) continue; /* warp-uniform */
            const float *kr = sK + lr * hd, *vr = sV + lr * hd, *qr = sQ + lane * ks, *dor = sdO + lane * ks;
            float s = 0.0f, dp = 0.0f;
            for (int e = 0; e < hd; e++) {
                s += qr[e] * kr[e];
                dp += dor[e] * vr[e];
            }
            const bool valid = q >= key && q < Tn;
            const float p = valid ? expf(s - sL[lane]) : 0.0f;
            float keep = 1.0f;
            if (DROP && valid) keep = d_keep(dr, ((uint64_t)bh * Tn + q) * Tn + key);
            const float pd = p * keep;
            const float ds = p * (dp * (DROP ? keep * dr.scale : 1.0f) - sD[lane]);
            for (int jj = 0; jj < GCH; jj++) {
                const float pj = __shfl_sync(0xffffffffu, pd, jj), dj = __shfl_sync(0xffffffffu, ds, jj);
                const float *qj = sQ + jj * ks, *doj = sdO + jj * ks;
#pragma unroll
                for (int i = 0; i < GSLOT; i++) {
                    const int e = lane + 32 * i;
                    if (e < hd) {
                        dv[r][i] += pj * doj[e];
                        dk[r][i] += dj * qj[e];
                    }
                }
            }
        }
    }
    const float vs = DROP ? dr.scale : 1.0f;
#pragma unroll
    for (int r = 0; r < GR; r++) {
        const int key = k0 + warp * GR + r;
        if (key >= Tn) continue;
        T *kp = dqkv + ((size_t)b * Tn + key) * ld + C + (size_t)h * hd, *vp = kp + C;
#pragma unroll
        for (int i = 0; i < GSLOT; i++) {
            const int e = lane + 32 * i;
            if (e < hd) {
                kp[e] = Ty<T>::from_f(dk[r][i] * scale);
                vp[e] = Ty<T>::from_f(dv[r][i] * vs);
            }
        }
    }
}

/* ------------------------------------------------ generic: mask store */

/* The generic forward draws its masks inline; when the caller keeps a mask
 * store this fills it afterwards (one thread a 64-key word), so that a fast
 * backward can read it whichever path the forward took. */
__global__ void mask_fill_kernel(DropArgs dr, int Tn, size_t nwords)
{
    const size_t w = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= nwords) return;
    const int row = (int)(w % (size_t)Tn);
    const size_t r2 = w / (size_t)Tn;
    const int kw = (int)(r2 % (size_t)dr.nkw);
    const size_t bh = r2 / (size_t)dr.nkw;
    uint64_t bits = 0;
    const int k0 = kw * 64;
    if (k0 <= row) {
        const int kend = min(row, Tn - 1) - k0; /* keys k0..k0+kend are visible */
        const uint64_t base = ((uint64_t)bh * Tn + row) * Tn + k0;
        for (int k = 0; k <= kend && k < 64; k++) bits |= (uint64_t)(d_keep(dr, base + k) != 0.0f) << k;
    }
    dr.mask[w] = bits;
}

/* ------------------------------------------------------------------ host */

static int check_desc(const zf_attn_desc *d, zf_err *err)
{
    if (!d) return zf_err_set(err, "attention: desc: expected a descriptor, got NULL");
    if (d->B < 0 || d->T < 0 || d->NH <= 0 || d->C <= 0)
        return zf_err_set(err, "attention: B/T/C/NH: expected B,T >= 0 and C,NH > 0, got B=%d T=%d C=%d NH=%d", d->B,
                        d->T, d->C, d->NH);
    if (d->C % d->NH)
        return zf_err_set(err, "attention: C: expected a multiple of NH=%d, got %d", d->NH, d->C);
    if (d->C / d->NH > GMAXD)
        return zf_err_set(err, "attention: head dim: expected at most %d, got %d", GMAXD, d->C / d->NH);
    if (d->dtype != ZF_ATTN_F32 && d->dtype != ZF_ATTN_BF16 && d->dtype != ZF_ATTN_F16)
        return zf_err_set(err, "attention: dtype: expected ZF_ATTN_F32, _BF16 or _F16, got %d", (int)d->dtype);
    if (!(d->dropout_p >= 0.0f && d->dropout_p < 1.0f))
        return zf_err_set(err, "attention: dropout_p: expected a value in [0, 1), got %g", (double)d->dropout_p);
    if ((long long)d->B * d->NH > 0x7fffffffLL)
        return zf_err_set(err, "attention: B*NH: expected at most 2^31-1, got %lld", (long long)d->B * d->NH);
    if ((d->T + 15) / 16 > 65535)
        return zf_err_set(err, "attention: T: expected at most %d, got %d", 65535 * 16, d->T);
    return 0;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* The tensor-core kernels need compute capability 8.0+ (the current device). */
static bool fast_path_device(void)
{
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 8;
}

extern "C" int zf_attn_uses_fast_path(const zf_attn_desc *d, const void *p0, const void *p1, const void *p2,
                                      const void *p3)
{
    if (!d || d->force_generic || d->dtype == ZF_ATTN_F32 || d->NH <= 0 || d->C % d->NH) return 0;
    const int hd = d->C / d->NH;
    if (hd != 64 && hd != 128) return 0;
    if (d->C % 8) return 0;
    const void *ps[4] = {p0, p1, p2, p3};
    for (int i = 0; i < 4; i++)
        if (ps[i] && !aligned16(ps[i])) return 0;
    return fast_path_device() ? 1 : 0;
}

static DropArgs drop_args(const zf_attn_desc *d)
{
    DropArgs dr;
    dr.scale = d->dropout_p > 0.0f ? 1.0f / (1.0f - d->dropout_p) : 1.0f;
    dr.key = zf_drop_key(d->dropout_seed, d->dropout_site);
    dr.thr = zf_drop_threshold(d->dropout_p);
    dr.mask = d->dropout_p > 0.0f ? d->dropout_mask : nullptr;
    dr.nkw = (d->T + 63) / 64;
    return dr;
}

static int launch_status(zf_err *err, const char *what)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return zf_err_set(err, "attention: %s: launch failed: %s", what, cudaGetErrorString(e));
    return 0;
}

/* Dynamic shared memory above 48 KB must be opted into per kernel. */
template <typename K> static int set_smem(K kernel, size_t bytes, zf_err *err)
{
    if (bytes <= 48 * 1024) return 0;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess)
        return zf_err_set(err, "attention: shared memory: expected %zu bytes per block to be allowed, got %s", bytes,
                        cudaGetErrorString(e));
    return 0;
}

template <typename T, int D, bool DROP>
static int fast_fwd(const zf_attn_desc *d, void *out, float *lse, const void *qkv, cudaStream_t st, zf_err *err)
{
    auto kern = fa_fwd_kernel<T, D, DROP ? 1 : 0>;
    if (DROP && d->T % 2 == 0) kern = fa_fwd_kernel<T, D, 2>;
    const size_t sm = fwd_smem_bytes<D>();
    if (set_smem(kern, sm, err)) return -1;
    dim3 grid((unsigned)(d->B * d->NH), (unsigned)((d->T + FA_BM - 1) / FA_BM));
    const float scale_log2 = LOG2E_F / sqrtf((float)D);
    kern<<<grid, FA_THREADS, sm, st>>>((const T *)qkv, (T *)out, lse, d->T, d->NH, d->C, scale_log2, drop_args(d));
    return launch_status(err, "forward (tensor cores)");
}

template <typename T, bool DROP>
static int gen_fwd(const zf_attn_desc *d, void *out, float *lse, const void *qkv, cudaStream_t st, zf_err *err)
{
    const int hd = d->C / d->NH;
    auto kern = gen_fwd_kernel<T, DROP>;
    const size_t sm = gen_smem_bytes(hd);
    if (set_smem(kern, sm, err)) return -1;
    dim3 grid((unsigned)(d->B * d->NH), (unsigned)((d->T + GROWS - 1) / GROWS));
    const DropArgs dr = drop_args(d);
    kern<<<grid, 128, sm, st>>>((const T *)qkv, (T *)out, lse, d->T, d->NH, d->C, hd, 1.0f / sqrtf((float)hd), dr);
    if (launch_status(err, "forward (generic)")) return -1;
    if (DROP && dr.mask) {
        const size_t nwords = (size_t)d->B * d->NH * dr.nkw * d->T;
        mask_fill_kernel<<<(unsigned)((nwords + 255) / 256), 256, 0, st>>>(dr, d->T, nwords);
        return launch_status(err, "forward (mask store)");
    }
    return 0;
}

template <typename T, int D, bool DROP, bool MASK = false>
static int fast_bwd(const zf_attn_desc *d, void *dqkv, const void *dout, const void *qkv, const void *out,
                    const float *lse, float *delta, cudaStream_t st, zf_err *err)
{
    if (DROP && !MASK && d->dropout_mask) return fast_bwd<T, D, true, true>(d, dqkv, dout, qkv, out, lse, delta, st, err);
    const float scale = 1.0f / sqrtf((float)D), scale_log2 = scale * LOG2E_F;
    auto k1 = fa_bwd_dkdv_kernel<T, D, DROP, MASK>;
    auto k2 = fa_bwd_dq_kernel<T, D, DROP, MASK>;
    const size_t sm1 = dkdv_smem_bytes<D>(), sm2 = dq_smem_bytes<D>();
    if (set_smem(k1, sm1, err) || set_smem(k2, sm2, err)) return -1;
    dim3 grid((unsigned)(d->B * d->NH), (unsigned)((d->T + FA_BM - 1) / FA_BM));
    /* dQ first: it also computes delta, which the dK/dV pass reads */
    k2<<<grid, FA_THREADS, sm2, st>>>((const T *)qkv, (const T *)dout, (const T *)out, lse, delta, (T *)dqkv, d->T,
                                      d->NH, d->C, scale_log2, scale, drop_args(d));
    if (launch_status(err, "backward dQ (tensor cores)")) return -1;
    k1<<<grid, FA_THREADS, sm1, st>>>((const T *)qkv, (const T *)dout, lse, delta, (T *)dqkv, d->T, d->NH, d->C,
                                      scale_log2, scale, drop_args(d));
    return launch_status(err, "backward dK/dV (tensor cores)");
}

template <typename T, bool DROP>
static int gen_bwd(const zf_attn_desc *d, void *dqkv, const void *dout, const void *qkv, const float *lse,
                   const float *delta, cudaStream_t st, zf_err *err)
{
    const int hd = d->C / d->NH;
    const float scale = 1.0f / sqrtf((float)hd);
    auto k1 = gen_bwd_dkdv_kernel<T, DROP>;
    auto k2 = gen_bwd_dq_kernel<T, DROP>;
    const size_t sm = gen_smem_bytes(hd);
    if (set_smem(k1, sm, err) || set_smem(k2, sm, err)) return -1;
    dim3 grid((unsigned)(d->B * d->NH), (unsigned)((d->T + GROWS - 1) / GROWS));
    k1<<<grid, 128, sm, st>>>((const T *)qkv, (const T *)dout, lse, delta, (T *)dqkv, d->T, d->NH, d->C, hd, scale,
                              drop_args(d));
    if (launch_status(err, "backward dK/dV (generic)")) return -1;
    k2<<<grid, 128, sm, st>>>((const T *)qkv, (const T *)dout, lse, delta, (T *)dqkv, d->T, d->NH, d->C, hd, scale,
                              drop_args(d));
    return launch_status(err, "backward dQ (generic)");
}

template <typename T>
static int fwd_t(const zf_attn_desc *d, void *out, float *lse, const void *qkv, cudaStream_t st, zf_err *err)
{
    const bool drop = d->dropout_p > 0.0f;
    const int hd = d->C / d->NH;
    if (zf_attn_uses_fast_path(d, out, qkv, NULL, NULL)) {
        if (hd == 64) return drop ? fast_fwd<T, 64, true>(d, out, lse, qkv, st, err)
                                  : fast_fwd<T, 64, false>(d, out, lse, qkv, st, err);
        return drop ? fast_fwd<T, 128, true>(d, out, lse, qkv, st, err)
                    : fast_fwd<T, 128, false>(d, out, lse, qkv, st, err);
    }
    return drop ? gen_fwd<T, true>(d, out, lse, qkv, st, err) : gen_fwd<T, false>(d, out, lse, qkv, st, err);
}

/* fp32 never takes the fast path; this keeps the dispatch below uniform. */
template <>
int fwd_t<float>(const zf_attn_desc *d, void *out, float *lse, const void *qkv, cudaStream_t st, zf_err *err)
{
    return d->dropout_p > 0.0f ? gen_fwd<float, true>(d, out, lse, qkv, st, err)
                               : gen_fwd<float, false>(d, out, lse, qkv, st, err);
}

template <typename T>
static int bwd_t(const zf_attn_desc *d, void *dqkv, const void *dout, const void *qkv, const void *out,
                 const float *lse, float *delta, cudaStream_t st, zf_err *err)
{
    const bool drop = d->dropout_p > 0.0f;
    const int hd = d->C / d->NH;
    if (zf_attn_uses_fast_path(d, dqkv, dout, qkv, out)) {
        if (hd == 64) return drop ? fast_bwd<T, 64, true>(d, dqkv, dout, qkv, out, lse, delta, st, err)
                                  : fast_bwd<T, 64, false>(d, dqkv, dout, qkv, out, lse, delta, st, err);
        return drop ? fast_bwd<T, 128, true>(d, dqkv, dout, qkv, out, lse, delta, st, err)
                    : fast_bwd<T, 128, false>(d, dqkv, dout, qkv, out, lse, delta, st, err);
    }
    const long rows = (long)d->B * d->T * d->NH;
    const long blocks = (rows * 32 + 255) / 256;
    attn_delta_kernel<T><<<(unsigned)blocks, 256, 0, st>>>((const T *)dout, (const T *)out, delta, d->B, d->T,
                                                            d->NH, d->C, hd);
    if (launch_status(err, "backward delta")) return -1;
    return drop ? gen_bwd<T, true>(d, dqkv, dout, qkv, lse, delta, st, err)
                : gen_bwd<T, false>(d, dqkv, dout, qkv, lse, delta, st, err);
}

template <>
int bwd_t<float>(const zf_attn_desc *d, void *dqkv, const void *dout, const void *qkv, const void *out,
                 const float *lse, float *delta, cudaStream_t st, zf_err *err)
{
    const long rows = (long)d->B * d->T * d->NH;
    const long blocks = (rows * 32 + 255) / 256;
    attn_delta_kernel<float><<<(unsigned)blocks, 256, 0, st>>>((const float *)dout, (const float *)out, delta, d->B,
                                                                d->T, d->NH, d->C, d->C / d->NH);
    if (launch_status(err, "backward delta")) return -1;
    return d->dropout_p > 0.0f ? gen_bwd<float, true>(d, dqkv, dout, qkv, lse, delta, st, err)
                               : gen_bwd<float, false>(d, dqkv, dout, qkv, lse, delta, st, err);
}

extern "C" int zf_attn_forward(const zf_attn_desc *d, void *out, float *lse, const void *qkv, cudaStream_t stream,
                               zf_err *err)
{
    if (check_desc(d, err)) return -1;
    if ((long long)d->B * d->T == 0) return 0;
    if (!out || !lse || !qkv) return zf_err_set(err, "attention: forward: expected out, lse and qkv pointers, got NULL");
    if ((uintptr_t)d->dropout_mask & 7u)
        return zf_err_set(err, "attention: forward: dropout_mask: expected 8-byte alignment, got %p", (void *)d->dropout_mask);
    switch (d->dtype) {
    case ZF_ATTN_F32: return fwd_t<float>(d, out, lse, qkv, stream, err);
    case ZF_ATTN_BF16: return fwd_t<__nv_bfloat16>(d, out, lse, qkv, stream, err);
    default: return fwd_t<__half>(d, out, lse, qkv, stream, err);
    }
}

extern "C" size_t zf_attn_dropout_mask_bytes(const zf_attn_desc *d)
{
    if (!d || d->B <= 0 || d->T <= 0 || d->NH <= 0) return 0;
    return (size_t)d->B * d->NH * ((d->T + 63) / 64) * d->T * sizeof(uint64_t);
}

extern "C" size_t zf_attn_backward_workspace(const zf_attn_desc *d)
{
    if (!d || d->B <= 0 || d->T <= 0 || d->NH <= 0) return 0;
    return (size_t)d->B * d->NH * d->T * sizeof(float);
}

extern "C" int zf_attn_backward(const zf_attn_desc *d, void *dqkv, const void *dout, const void *qkv, const void *out,
                                const float *lse, void *workspace, cudaStream_t stream, zf_err *err)
{
    if (check_desc(d, err)) return -1;
    if ((long long)d->B * d->T == 0) return 0;
    if (!dqkv || !dout || !qkv || !out || !lse || !workspace)
        return zf_err_set(err, "attention: backward: expected dqkv, dout, qkv, out, lse and workspace pointers, got NULL");
    if ((uintptr_t)workspace & 3u)
        return zf_err_set(err, "attention: backward: workspace: expected 4-byte alignment, got %p", workspace);
    if ((uintptr_t)d->dropout_mask & 7u)
        return zf_err_set(err, "attention: backward: dropout_mask: expected 8-byte alignment, got %p", (void *)d->dropout_mask);
    float *delta = (float *)workspace;
    switch (d->dtype) {
    case ZF_ATTN_F32: return bwd_t<float>(d, dqkv, dout, qkv, out, lse, delta, stream, err);
    case ZF_ATTN_BF16: return bwd_t<__nv_bfloat16>(d, dqkv, dout, qkv, out, lse, delta, stream, err);
    default: return bwd_t<__half>(d, dqkv, dout, qkv, out, lse, delta, stream, err);
    }
}
