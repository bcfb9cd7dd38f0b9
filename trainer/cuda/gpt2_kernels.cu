/* gpt2_kernels.cu - see gpt2_kernels.cuh.
 *
 * One section per concern, each kernel templated on the element type T
 * (float, __nv_bfloat16, __half) and reading/writing T through tof/fromf:
 * every arithmetic operation is fp32.  The C API at the end of each section
 * checks its arguments, dispatches on zf_gpu_dtype and checks the launch.
 *
 * Reductions are deterministic by construction: warp reductions are xor
 * butterflies (every lane ends with the same bits), block reductions go
 * through a fixed tree in shared memory, column sums are done per fixed
 * chunk of rows and the chunks added in order, and nothing uses atomics. */
#include "gpt2_kernels.cuh"

#include "rng.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ context */

#define GN_BLOCKS 1024   /* grad-norm partial sums: fixed, so the sum order never depends on the GPU */
#define COL_CHUNK 128    /* rows per partial column sum (bias grad) */
#define LN_ROWS 16       /* rows per block of the LayerNorm backward (up to 8 warps, 2 rows each) */
#define ADAMW_CHUNK 4096 /* elements per AdamW block */
#define MISC_BYTES (64 * 1024)

namespace {
struct adamw_work {
    long long start;
    int len, decay;
};
} // namespace

struct zf_gk {
    cudaStream_t s;
    zf_matmul_ctx *mm;
    size_t cls_bytes;
    void *scratch; /* grows; contents never live across calls */
    size_t scratch_bytes;
    void *misc; /* small fixed device area: classifier count, grad-norm partials */
    int64_t *rows;  /* AdamW layout rows last uploaded (host copy) */
    int nrows;
    adamw_work *work; /* device */
    int nwork;
    int smem_optin; /* shared memory a block may opt in to */
    char err[512];
};

static int gk_fail(zf_gk *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    return -1;
}

static int gk_launched(zf_gk *g, const char *what)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return gk_fail(g, "gpt2_kernels: %s: launch failed: %s", what, cudaGetErrorString(e));
    return 0;
}

extern "C" zf_gk *zf_gk_create(cudaStream_t stream, zf_matmul_ctx *mm, size_t classifier_bytes, zf_err *err)
{
    zf_gk *g = (zf_gk *)calloc(1, sizeof *g);
    if (!g) {
        if (err) snprintf(err->msg, sizeof err->msg, "gpt2_kernels: out of host memory");
        return NULL;
    }
    g->s = stream;
    g->mm = mm;
    g->cls_bytes = classifier_bytes ? classifier_bytes : (size_t)256 << 20;
    int dev = 0;
    g->smem_optin = 48 * 1024;
    if (cudaGetDevice(&dev) == cudaSuccess)
        cudaDeviceGetAttribute(&g->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    cudaError_t e = cudaMalloc(&g->misc, MISC_BYTES);
    if (e != cudaSuccess) {
        if (err) snprintf(err->msg, sizeof err->msg, "gpt2_kernels: cudaMalloc(%d): %s", MISC_BYTES, cudaGetErrorString(e));
        free(g);
        return NULL;
    }
    return g;
}

extern "C" void zf_gk_free(zf_gk *g)
{
    if (!g) return;
    cudaStreamSynchronize(g->s);
    cudaFree(g->scratch);
    cudaFree(g->misc);
    cudaFree(g->work);
    free(g->rows);
    free(g);
}

extern "C" const char *zf_gk_error(const zf_gk *g) { return g ? g->err : "gpt2_kernels: no context"; }
extern "C" cudaStream_t zf_gk_stream(const zf_gk *g) { return g->s; }

/* The scratch buffer, at least `bytes` long.  Growing frees the old buffer
 * after the stream drains.  New memory is filled with 0xFF bytes (NaN in
 * every float type) so that a kernel reading scratch it never wrote shows. */
static void *gk_scratch(zf_gk *g, size_t bytes)
{
    if (bytes <= g->scratch_bytes) return g->scratch;
    cudaStreamSynchronize(g->s);
    cudaFree(g->scratch);
    g->scratch = NULL;
    g->scratch_bytes = 0;
    bytes = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    cudaError_t e = cudaMalloc(&g->scratch, bytes);
    if (e != cudaSuccess) {
        gk_fail(g, "gpt2_kernels: scratch of %zu bytes: cudaMalloc failed: %s", bytes, cudaGetErrorString(e));
        cudaGetLastError();
        g->scratch = NULL;
        return NULL;
    }
    cudaMemsetAsync(g->scratch, 0xFF, bytes, g->s);
    g->scratch_bytes = bytes;
    return g->scratch;
}

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

/* ------------------------------------------------------ type helpers */

static __device__ __forceinline__ float tof(float x) { return x; }
static __device__ __forceinline__ float tof(__nv_bfloat16 x) { return __bfloat162float(x); }
static __device__ __forceinline__ float tof(__half x) { return __half2float(x); }

template <typename T> static __device__ __forceinline__ T fromf(float x);
template <> __device__ __forceinline__ float fromf<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 fromf<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half fromf<__half>(float x) { return __float2half_rn(x); }

/* Eight consecutive elements in one access (16 bytes for 2-byte types, two
 * 16-byte accesses for fp32); p must be aligned to 8 elements. */
template <typename T> static __device__ __forceinline__ void ld8(float (&f)[8], const T *p)
{
    if constexpr (sizeof(T) == 4) {
        const float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    } else {
        const int4 r = *(const int4 *)p;
        const T *e = reinterpret_cast<const T *>(&r);
#pragma unroll
        for (int k = 0; k < 8; k++) f[k] = tof(e[k]);
    }
}
template <typename T> static __device__ __forceinline__ void st8(T *p, const float (&f)[8])
{
    if constexpr (sizeof(T) == 4) {
        ((float4 *)p)[0] = make_float4(f[0], f[1], f[2], f[3]);
        ((float4 *)p)[1] = make_float4(f[4], f[5], f[6], f[7]);
    } else {
        int4 r;
        T *e = reinterpret_cast<T *>(&r);
#pragma unroll
        for (int k = 0; k < 8; k++) e[k] = fromf<T>(f[k]);
        *(int4 *)p = r;
    }
}
static bool al8(const void *p, size_t es) { return p && (uintptr_t)p % (8 * es) == 0; }

/* Runs the statements with T the element type of dt (returns -1 from the
 * caller on an invalid dt). */
#define GK_DISPATCH(g, dt, what, ...)                                                                                 \
    do {                                                                                                              \
        switch (dt) {                                                                                                 \
        case ZF_GPU_F32: { typedef float T; __VA_ARGS__; } break;                                                   \
        case ZF_GPU_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;                                          \
        case ZF_GPU_F16: { typedef __half T; __VA_ARGS__; } break;                                                  \
        default: return gk_fail(g, "gpt2_kernels: %s: dt: expected a zf_gpu_dtype, got %d", what, (int)(dt));             \
        }                                                                                                             \
    } while (0)

static unsigned grid_for(size_t n, int threads)
{
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    if (b > ((size_t)1 << 20)) b = (size_t)1 << 20; /* grid-stride loops do the rest */
    return (unsigned)(b ? b : 1);
}

/* ------------------------------------------------------ reductions */

namespace {
struct SumOp {
    template <typename U> __device__ __forceinline__ U operator()(U a, U b) const { return a + b; }
};
struct MaxOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
} // namespace

template <typename U, typename Op> static __device__ __forceinline__ U warp_reduce(U v, Op op)
{
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Every thread gets the block's reduction (blockDim.x a multiple of 32). */
template <typename U, typename Op> static __device__ U block_reduce(U v, Op op, U identity)
{
    __shared__ U sh[32];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_reduce(v, op);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : identity;
    return warp_reduce(v, op);
}

/* ------------------------------------------------------ dropout */


/* ====================================================== embeddings */

template <typename T>
static __global__ void embed_fwd_k(T *out, const int32_t *tok, const T *wte, const T *wpe, size_t N, int Tt, int C, int V,
                                   float p, float scale, uint64_t key, uint32_t thr)
{
    const size_t total = N * (size_t)C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t n = i / (size_t)C, j = i % (size_t)C;
        const int t = tok[n];
        float v;
        if (t < 0 || t >= V)
            v = __int_as_float(0x7fc00000); /* NaN: bad id, never read out of bounds */
        else
            v = tof(wte[(size_t)t * C + j]) + tof(wpe[(n % (size_t)Tt) * C + j]);
        if (p > 0.0f) v = v * zf_drop_keep(key, i, thr, scale);
        out[i] = fromf<T>(v);
    }
}

/* The same, eight channels per thread (C % 8 == 0, aligned rows). */
template <typename T>
static __global__ void embed_fwd8_k(T *out, const int32_t *tok, const T *wte, const T *wpe, size_t N, int Tt, int C,
                                    int V, float p, float scale, uint64_t key, uint32_t thr)
{
    const size_t C8 = (size_t)C / 8, total = N * C8;
    for (size_t q = blockIdx.x * (size_t)blockDim.x + threadIdx.x; q < total; q += (size_t)gridDim.x * blockDim.x) {
        const size_t n = q / C8, j = (q % C8) * 8, i = n * C + j;
        const int t = tok[n];
        float a[8], b[8];
        if (t < 0 || t >= V) {
#pragma unroll
            for (int k = 0; k < 8; k++) a[k] = __int_as_float(0x7fc00000), b[k] = 0.0f;
        } else {
            ld8(a, wte + (size_t)t * C + j);
            ld8(b, wpe + (n % (size_t)Tt) * C + j);
        }
#pragma unroll
        for (int k = 0; k < 8; k++) {
            a[k] = a[k] + b[k];
            if (p > 0.0f) a[k] = a[k] * zf_drop_keep(key, i + k, thr, scale);
        }
        st8(out + i, a);
    }
}

/* dwpe[t,j] += sum_b dout[b,t,j] (b in order) */
template <typename T> static __global__ void embed_bwd_wpe_k(float *dwpe, const T *dout, int B, int Tt, int C)
{
    const size_t total = (size_t)Tt * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int b = 0; b < B; b++) acc += tof(dout[(size_t)b * total + i]);
        dwpe[i] += acc;
    }
}

/* Sort keys: the token, or V for an invalid id (sorted last, skipped). */
static __global__ void embed_keys_k(unsigned *keys, int *vals, const int32_t *tok, int N, int V)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x) {
        const int t = tok[i];
        keys[i] = (t >= 0 && t < V) ? (unsigned)t : (unsigned)V;
        vals[i] = i;
    }
}

/* One block per (run of equal sorted keys, 128 columns), the block at the
 * run's first position does it: dwte[key] += the run's rows, added in
 * increasing row order (the sort is stable); loads eight rows ahead so that
 * a frequent token's long run is not one load at a time. */
template <typename T>
static __global__ void embed_bwd_wte_k(float *dwte, const T *dout, const unsigned *skeys, const int *svals, int N, int C,
                                       int V)
{
    const int j = blockIdx.y * blockDim.x + threadIdx.x;
    for (int i = blockIdx.x; i < N; i += gridDim.x) {
        const unsigned key = skeys[i];
        if ((i > 0 && skeys[i - 1] == key) || key >= (unsigned)V || j >= C) continue;
        int end = i + 1;
        while (end < N && skeys[end] == key) end++;
        float acc = 0.0f;
        int k = i;
        for (; k + 8 <= end; k += 8) {
            float v[8];
#pragma unroll
            for (int u = 0; u < 8; u++) v[u] = tof(dout[(size_t)svals[k + u] * C + j]);
#pragma unroll
            for (int u = 0; u < 8; u++) acc += v[u];
        }
        for (; k < end; k++) acc += tof(dout[(size_t)svals[k] * C + j]);
        dwte[(size_t)key * C + j] += acc;
    }
}

static int key_bits(int V)
{
    int b = 1;
    while (b < 32 && ((unsigned)V >> b) != 0) b++;
    return b; /* enough bits for 0..V */
}

extern "C" int zf_gk_embed_fwd(zf_gk *g, zf_gpu_dtype dt, void *out, const int32_t *tokens, const void *wte,
                               const void *wpe, int B, int Tt, int C, int V, float p, uint64_t seed)
{
    if (B < 1 || Tt < 1 || C < 1 || V < 1)
        return gk_fail(g, "gpt2_kernels: embed_fwd: B, T, C, V: expected >= 1, got %d %d %d %d", B, Tt, C, V);
    if (!(p >= 0.0f && p < 1.0f)) return gk_fail(g, "gpt2_kernels: embed_fwd: p: expected [0, 1), got %g", p);
    if (!out || !tokens || !wte || !wpe) return gk_fail(g, "gpt2_kernels: embed_fwd: NULL pointer");
    const size_t N = (size_t)B * Tt;
    const float scale = 1.0f / (1.0f - p);
    const uint64_t key = zf_drop_key(seed, 0);
    const uint32_t thr = zf_drop_threshold(p);
    const size_t es = zf_gpu_dtype_size(dt);
    if (C % 8 == 0 && al8(out, es) && al8(wte, es) && al8(wpe, es))
        GK_DISPATCH(g, dt, "embed_fwd",
                    embed_fwd8_k<T><<<grid_for(N * C / 8, 256), 256, 0, g->s>>>((T *)out, tokens, (const T *)wte,
                                                                                 (const T *)wpe, N, Tt, C, V, p, scale,
                                                                                 key, thr));
    else
        GK_DISPATCH(g, dt, "embed_fwd",
                    embed_fwd_k<T><<<grid_for(N * C, 256), 256, 0, g->s>>>((T *)out, tokens, (const T *)wte,
                                                                             (const T *)wpe, N, Tt, C, V, p, scale,
                                                                             key, thr));
    return gk_launched(g, "embed_fwd");
}

extern "C" int zf_gk_embed_bwd(zf_gk *g, zf_gpu_dtype dt, float *dwte, float *dwpe, const void *dout,
                               const int32_t *tokens, int B, int Tt, int C, int V)
{
    if (B < 1 || Tt < 1 || C < 1 || V < 1)
        return gk_fail(g, "gpt2_kernels: embed_bwd: B, T, C, V: expected >= 1, got %d %d %d %d", B, Tt, C, V);
    if (!dwte || !dwpe || !dout || !tokens) return gk_fail(g, "gpt2_kernels: embed_bwd: NULL pointer");
    if ((long long)B * Tt > 0x7fffffffLL) return gk_fail(g, "gpt2_kernels: embed_bwd: B*T: expected < 2^31");
    const int N = B * Tt, bits = key_bits(V);
    size_t cub_bytes = 0;
    if (cub::DeviceRadixSort::SortPairs(NULL, cub_bytes, (const unsigned *)NULL, (unsigned *)NULL, (const int *)NULL,
                                        (int *)NULL, N, 0, bits, g->s) != cudaSuccess)
        return gk_fail(g, "gpt2_kernels: embed_bwd: cub temp-size query failed");
    const size_t nb = align256((size_t)N * 4);
    char *s = (char *)gk_scratch(g, 4 * nb + align256(cub_bytes));
    if (!s) return -1;
    unsigned *keys = (unsigned *)s, *skeys = (unsigned *)(s + nb);
    int *vals = (int *)(s + 2 * nb), *svals = (int *)(s + 3 * nb);
    void *tmp = s + 4 * nb;
    GK_DISPATCH(g, dt, "embed_bwd",
                embed_bwd_wpe_k<T><<<grid_for((size_t)Tt * C, 256), 256, 0, g->s>>>(dwpe, (const T *)dout, B, Tt, C));
    if (gk_launched(g, "embed_bwd (wpe)")) return -1;
    embed_keys_k<<<grid_for((size_t)N, 256), 256, 0, g->s>>>(keys, vals, tokens, N, V);
    if (gk_launched(g, "embed_bwd (keys)")) return -1;
    if (cub::DeviceRadixSort::SortPairs(tmp, cub_bytes, keys, skeys, vals, svals, N, 0, bits, g->s) != cudaSuccess)
        return gk_fail(g, "gpt2_kernels: embed_bwd: cub radix sort failed: %s", cudaGetErrorString(cudaGetLastError()));
    const dim3 grid((unsigned)(N < 65536 ? N : 65536), (unsigned)((C + 127) / 128));
    GK_DISPATCH(g, dt, "embed_bwd",
                embed_bwd_wte_k<T><<<grid, 128, 0, g->s>>>(dwte, (const T *)dout, skeys, svals, N, C, V));
    return gk_launched(g, "embed_bwd (wte)");
}

/* ====================================================== LayerNorm */

/* One warp per row. */
template <typename T>
static __global__ void ln_fwd_k(T *out, float *mean, float *rstd, const T *x, const T *w, const T *b, int N, int C, float eps)
{
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    const T *xr = x + (size_t)row * C;
    T *o = out + (size_t)row * C;
    float s = 0.0f;
    for (int j = lane; j < C; j += 32) s += tof(xr[j]);
    const float m = warp_reduce(s, SumOp()) / (float)C;
    float v = 0.0f;
    for (int j = lane; j < C; j += 32) {
        const float d = tof(xr[j]) - m;
        v += d * d;
    }
    const float r = 1.0f / sqrtf(warp_reduce(v, SumOp()) / (float)C + eps);
    for (int j = lane; j < C; j += 32) o[j] = fromf<T>((tof(xr[j]) - m) * r * tof(w[j]) + tof(b[j]));
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

/* The LayerNorm backward blocks' end: the warps' dw, db column sums in
 * shared memory ([warps][dw C, db C]) added in warp order into the block's
 * row of the partials pw, pb. */
static __device__ void ln_bwd_block_sums(const float *sm, float *pw, float *pb, int C)
{
    const int nw = blockDim.x >> 5;
    __syncthreads();
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
        float aw = 0.0f, ab = 0.0f;
        for (int k = 0; k < nw; k++) {
            aw += sm[(size_t)k * 2 * C + j];
            ab += sm[(size_t)k * 2 * C + C + j];
        }
        pw[(size_t)blockIdx.x * C + j] = aw;
        pb[(size_t)blockIdx.x * C + j] = ab;
    }
}

/* V floats from / to V elements of type T (V = 1 or 8, 16-byte aligned). */
template <int V, typename T> static __device__ __forceinline__ void ldv(float (&f)[V], const T *p)
{
    if constexpr (V == 8) ld8(f, p);
    else f[0] = tof(p[0]);
}
template <int V, typename T> static __device__ __forceinline__ void stv(T *p, const float (&f)[V])
{
    if constexpr (V == 8) st8(p, f);
    else p[0] = fromf<T>(f[0]);
}

/* Fused backward over LN_ROWS rows per block, a warp per row (8 warps, or
 * as many as the shared memory holds rows of column sums for: 7 at C 4096):
 * dx += rstd (g - a - xhat c) as the CPU model, and each warp adds dy*xhat
 * and dy of its rows into its own shared-memory row of column sums (each
 * lane its own columns: no atomics); the block then adds its 8 warps'
 * rows in order into its partial sums pw/pb[block, C].
 * V channels per lane access: 1 (any C) or 8 (C % 8 == 0, 16-byte aligned
 * rows: 16-byte loads and stores; measured in the model, 0.6 ms less per d12
 * B32 step and 1.7 ms per d24 B16 step than one element a lane). */
template <typename T, int V>
static __global__ void ln_bwd_k(T *dx, float *pw, float *pb, const T *dy, const T *x, const T *w, const float *mean,
                                const float *rstd, int N, int C)
{
    extern __shared__ float sm[]; /* [warps][dw C, db C] */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    float *sw = sm + (size_t)warp * 2 * C, *sb = sw + C;
    for (int j = lane; j < C; j += 32) sw[j] = sb[j] = 0.0f;
    __syncwarp(); /* with V > 1 a lane's columns below are not the ones it zeroed */
    for (int rr = warp; rr < LN_ROWS; rr += nw) {
        const int row = blockIdx.x * LN_ROWS + rr;
        if (row >= N) break;
        const size_t o = (size_t)row * C;
        const float m = mean[row], r = rstd[row];
        float a = 0.0f, c = 0.0f;
        for (int j = lane * V; j < C; j += 32 * V) {
            float dyv[V], xv[V], wv[V];
            ldv<V>(dyv, dy + o + j);
            ldv<V>(xv, x + o + j);
            ldv<V>(wv, w + j);
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float gj = dyv[k] * wv[k];
                a += gj;
                c += gj * (xv[k] - m) * r;
            }
        }
        a = warp_reduce(a, SumOp()) / (float)C;
        c = warp_reduce(c, SumOp()) / (float)C;
        for (int j = lane * V; j < C; j += 32 * V) {
            float dyv[V], xv[V], wv[V], dxv[V];
            ldv<V>(dyv, dy + o + j);
            ldv<V>(xv, x + o + j);
            ldv<V>(wv, w + j);
            ldv<V>(dxv, dx + o + j);
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float xm = xv[k] - m;
                dxv[k] += r * (dyv[k] * wv[k] - a - xm * r * c);
                sw[j + k] += dyv[k] * (xm * r);
                sb[j + k] += dyv[k];
            }
            stv<V>(dx + o + j, dxv);
        }
    }
    ln_bwd_block_sums(sm, pw, pb, C);
}

/* Partial column sums of dy over one chunk of COL_CHUNK rows:
 * pb[chunk,j] = sum dy[n,j].  Block (32 columns, 8 row lanes); the lanes'
 * sums are added in order. */
template <typename T> static __global__ void col_partial_k(float *pb, const T *dy, int N, int C)
{
    __shared__ float sb[8][33];
    const int tx = threadIdx.x, ty = threadIdx.y, col = blockIdx.x * 32 + tx, chunk = blockIdx.y;
    const int r0 = chunk * COL_CHUNK, r1 = min(N, r0 + COL_CHUNK);
    float ab = 0.0f;
    if (col < C)
        for (int r = r0 + ty; r < r1; r += 8) ab += tof(dy[(size_t)r * C + col]);
    sb[ty][tx] = ab;
    __syncthreads();
    if (ty == 0 && col < C) {
        float b = 0.0f;
        for (int k = 0; k < 8; k++) b += sb[k][tx];
        pb[(size_t)chunk * C + col] = b;
    }
}

/* dst[j] += sum over chunks of part[chunk,j] (and dst2/part2 if given):
 * block (32 columns, 32 lanes), lane ty adds chunks ty, ty+32, ... in
 * order, then the 32 lanes are added in order. */
static __global__ void col_final_k(float *dst, const float *part, float *dst2, const float *part2, int nchunks, int C)
{
    __shared__ float sa[32][33], sb[32][33];
    const int tx = threadIdx.x, ty = threadIdx.y, col = blockIdx.x * 32 + tx;
    float a = 0.0f, b = 0.0f;
    if (col < C)
        for (int k = ty; k < nchunks; k += 32) {
            a += part[(size_t)k * C + col];
            if (dst2) b += part2[(size_t)k * C + col];
        }
    sa[ty][tx] = a;
    sb[ty][tx] = b;
    __syncthreads();
    if (ty == 0 && col < C) {
        float ta = 0.0f, tb = 0.0f;
        for (int k = 0; k < 32; k++) {
            ta += sa[k][tx];
            tb += sb[k][tx];
        }
        dst[col] += ta;
        if (dst2) dst2[col] += tb;
    }
}

extern "C" int zf_gk_layernorm_fwd(zf_gk *g, zf_gpu_dtype dt, void *out, float *mean, float *rstd, const void *x,
                                   const void *w, const void *b, int N, int C, float eps)
{
    if (N < 1 || C < 1) return gk_fail(g, "gpt2_kernels: layernorm_fwd: N, C: expected >= 1, got %d %d", N, C);
    if (!out || !mean || !rstd || !x || !w || !b) return gk_fail(g, "gpt2_kernels: layernorm_fwd: NULL pointer");
    const unsigned blocks = (unsigned)((N + 7) / 8);
    GK_DISPATCH(g, dt, "layernorm_fwd",
                ln_fwd_k<T><<<blocks, 256, 0, g->s>>>((T *)out, mean, rstd, (const T *)x, (const T *)w, (const T *)b,
                                                        N, C, eps));
    return gk_launched(g, "layernorm_fwd");
}

/* db[j] += column sums of dy, deterministic (fixed chunks, fixed order). */
template <typename T> static int col_sums(zf_gk *g, float *db, const T *dy, int N, int C, const char *what)
{
    const int nchunks = (N + COL_CHUNK - 1) / COL_CHUNK;
    if (nchunks > 65535) return gk_fail(g, "gpt2_kernels: %s: N: expected <= %d, got %d", what, 65535 * COL_CHUNK, N);
    float *pb = (float *)gk_scratch(g, (size_t)nchunks * C * sizeof(float));
    if (!pb) return -1;
    col_partial_k<T><<<dim3((unsigned)((C + 31) / 32), (unsigned)nchunks), dim3(32, 8), 0, g->s>>>(pb, dy, N, C);
    if (gk_launched(g, what)) return -1;
    col_final_k<<<(unsigned)((C + 31) / 32), dim3(32, 32), 0, g->s>>>(db, pb, NULL, NULL, nchunks, C);
    return gk_launched(g, what);
}

extern "C" int zf_gk_layernorm_bwd(zf_gk *g, zf_gpu_dtype dt, void *dx, float *dw, float *db, const void *dy,
                                   const void *x, const void *w, const float *mean, const float *rstd, int N, int C)
{
    if (N < 1 || C < 1) return gk_fail(g, "gpt2_kernels: layernorm_bwd: N, C: expected >= 1, got %d %d", N, C);
    if (!dx || !dw || !db || !dy || !x || !w || !mean || !rstd)
        return gk_fail(g, "gpt2_kernels: layernorm_bwd: NULL pointer");
    /* a warp's two rows of column sums each: 8 warps while they fit (any C
     * up to 3632 on Hopper), fewer above, one at least */
    const size_t per_warp = (size_t)2 * C * sizeof(float);
    const int nw = per_warp * 8 <= (size_t)g->smem_optin ? 8 : (int)((size_t)g->smem_optin / per_warp);
    if (nw < 1)
        return gk_fail(g, "gpt2_kernels: layernorm_bwd: C: expected <= %d, got %d", g->smem_optin / 8, C);
    const size_t smem = per_warp * (size_t)nw;
    const int nblocks = (N + LN_ROWS - 1) / LN_ROWS;
    const size_t pbytes = align256((size_t)nblocks * C * sizeof(float));
    char *s = (char *)gk_scratch(g, 2 * pbytes);
    if (!s) return -1;
    float *pw = (float *)s, *pb = (float *)(s + pbytes);
    const size_t es = zf_gpu_dtype_size(dt);
    const bool by8 = C % 8 == 0 && al8(dx, es) && al8(dy, es) && al8(x, es) && al8(w, es);
    GK_DISPATCH(g, dt, "layernorm_bwd", {
        auto kern = by8 ? ln_bwd_k<T, 8> : ln_bwd_k<T, 1>;
        if (smem > 48 * 1024 &&
            cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
            return gk_fail(g, "gpt2_kernels: layernorm_bwd: %zu bytes of shared memory refused", smem);
        kern<<<nblocks, 32 * nw, smem, g->s>>>((T *)dx, pw, pb, (const T *)dy, (const T *)x, (const T *)w, mean, rstd,
                                               N, C);
    });
    if (gk_launched(g, "layernorm_bwd")) return -1;
    col_final_k<<<(unsigned)((C + 31) / 32), dim3(32, 32), 0, g->s>>>(dw, pw, db, pb, nblocks, C);
    return gk_launched(g, "layernorm_bwd (dw, db)");
}

/* ====================================================== elementwise */

#define GELU_K0 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_K1 0.044715f

/* out[i] = f(i, a[i], b[i]) (b NULL: 0), eight elements per access when all
 * pointers are aligned (vec), one at a time for the rest.  The arithmetic
 * per element is the same either way. */
template <typename T, typename F>
static __global__ void map_k(T *out, const T *a, const T *b, size_t n, int vec, F f)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x, tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    size_t done = 0;
    if (vec) {
        const size_t nv = n / 8;
        for (size_t v = tid; v < nv; v += stride) {
            float fa[8], fb[8], o[8];
            ld8(fa, a + 8 * v);
            if (b)
                ld8(fb, b + 8 * v);
            else
#pragma unroll
                for (int k = 0; k < 8; k++) fb[k] = 0.0f;
#pragma unroll
            for (int k = 0; k < 8; k++) o[k] = f(8 * v + k, fa[k], fb[k]);
            st8(out + 8 * v, o);
        }
        done = nv * 8;
    }
    for (size_t i = done + tid; i < n; i += stride) out[i] = fromf<T>(f(i, tof(a[i]), b ? tof(b[i]) : 0.0f));
}

template <typename T, typename F>
static int map_launch(zf_gk *g, T *out, const T *a, const T *b, size_t n, F f, const char *what)
{
    const int vec = al8(out, sizeof(T)) && al8(a, sizeof(T)) && (!b || al8(b, sizeof(T)));
    map_k<T, F><<<grid_for(vec ? n / 8 + 8 : n, 256), 256, 0, g->s>>>(out, a, b, n, vec, f);
    return gk_launched(g, what);
}

namespace {
/* y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
struct GeluF {
    __device__ float operator()(size_t, float v, float) const
    {
        return 0.5f * v * (1.0f + tanhf(GELU_K0 * (v + GELU_K1 * v * v * v)));
    }
};
/* dy * gelu'(x), the CPU model's expression */
struct GeluBwdF {
    __device__ float operator()(size_t, float dy, float v) const
    {
        const float t = tanhf(GELU_K0 * (v + GELU_K1 * v * v * v));
        return dy * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K0 * (1.0f + 3.0f * GELU_K1 * v * v));
    }
};
/* in + y * keep (keep = 1 without dropout) */
struct ResidF {
    float p, scale;
    uint64_t key;
    uint32_t thr;
    __device__ float operator()(size_t i, float in, float y) const
    {
        return in + (p > 0.0f ? y * zf_drop_keep(key, i, thr, scale) : y);
    }
};
struct DropF {
    float scale;
    uint64_t key;
    uint32_t thr;
    __device__ float operator()(size_t i, float x, float) const { return x * zf_drop_keep(key, i, thr, scale); }
};
template <typename T> struct BiasF {
    const T *bias;
    size_t OC;
    __device__ float operator()(size_t i, float y, float) const { return y + tof(bias[i % OC]); }
};
} // namespace

extern "C" int zf_gk_gelu_fwd(zf_gk *g, zf_gpu_dtype dt, void *y, const void *x, size_t n)
{
    if (!n) return 0;
    if (!y || !x) return gk_fail(g, "gpt2_kernels: gelu_fwd: NULL pointer");
    GK_DISPATCH(g, dt, "gelu_fwd", return map_launch<T>(g, (T *)y, (const T *)x, NULL, n, GeluF(), "gelu_fwd"));
    return 0;
}

extern "C" int zf_gk_gelu_bwd(zf_gk *g, zf_gpu_dtype dt, void *dx, const void *dy, const void *x, size_t n)
{
    if (!n) return 0;
    if (!dx || !dy || !x) return gk_fail(g, "gpt2_kernels: gelu_bwd: NULL pointer");
    GK_DISPATCH(g, dt, "gelu_bwd",
                return map_launch<T>(g, (T *)dx, (const T *)dy, (const T *)x, n, GeluBwdF(), "gelu_bwd"));
    return 0;
}

extern "C" int zf_gk_residual_fwd(zf_gk *g, zf_gpu_dtype dt, void *out, const void *in, const void *y, size_t n,
                                  float p, uint64_t seed, uint64_t site)
{
    if (!n) return 0;
    if (!out || !in || !y) return gk_fail(g, "gpt2_kernels: residual_fwd: NULL pointer");
    if (!(p >= 0.0f && p < 1.0f)) return gk_fail(g, "gpt2_kernels: residual_fwd: p: expected [0, 1), got %g", p);
    const ResidF f = {p, 1.0f / (1.0f - p), zf_drop_key(seed, site), zf_drop_threshold(p)};
    GK_DISPATCH(g, dt, "residual_fwd",
                return map_launch<T>(g, (T *)out, (const T *)in, (const T *)y, n, f, "residual_fwd"));
    return 0;
}

extern "C" int zf_gk_dropout_bwd(zf_gk *g, zf_gpu_dtype dt, void *dst, const void *src, size_t n, float p,
                                 uint64_t seed, uint64_t site)
{
    if (!n) return 0;
    if (!dst || !src) return gk_fail(g, "gpt2_kernels: dropout_bwd: NULL pointer");
    if (!(p >= 0.0f && p < 1.0f)) return gk_fail(g, "gpt2_kernels: dropout_bwd: p: expected [0, 1), got %g", p);
    if (!zf_gpu_dtype_size(dt))
        return gk_fail(g, "gpt2_kernels: dropout_bwd: dt: expected a zf_gpu_dtype, got %d", (int)dt);
    if (p == 0.0f) {
        if (dst == src) return 0;
        cudaError_t e = cudaMemcpyAsync(dst, src, n * zf_gpu_dtype_size(dt), cudaMemcpyDeviceToDevice, g->s);
        if (e != cudaSuccess) return gk_fail(g, "gpt2_kernels: dropout_bwd: copy failed: %s", cudaGetErrorString(e));
        return 0;
    }
    const DropF f = {1.0f / (1.0f - p), zf_drop_key(seed, site), zf_drop_threshold(p)};
    GK_DISPATCH(g, dt, "dropout_bwd", return map_launch<T>(g, (T *)dst, (const T *)src, NULL, n, f, "dropout_bwd"));
    return 0;
}

extern "C" int zf_gk_bias_add(zf_gk *g, zf_gpu_dtype dt, void *y, const void *bias, int N, int OC)
{
    if (N < 1 || OC < 1) return gk_fail(g, "gpt2_kernels: bias_add: N, OC: expected >= 1, got %d %d", N, OC);
    if (!y || !bias) return gk_fail(g, "gpt2_kernels: bias_add: NULL pointer");
    GK_DISPATCH(g, dt, "bias_add", {
        const BiasF<T> f = {(const T *)bias, (size_t)OC};
        return map_launch<T>(g, (T *)y, (const T *)y, NULL, (size_t)N * OC, f, "bias_add");
    });
    return 0;
}

extern "C" int zf_gk_bias_grad(zf_gk *g, zf_gpu_dtype dt, float *db, const void *dy, int N, int OC)
{
    if (N < 1 || OC < 1) return gk_fail(g, "gpt2_kernels: bias_grad: N, OC: expected >= 1, got %d %d", N, OC);
    if (!db || !dy) return gk_fail(g, "gpt2_kernels: bias_grad: NULL pointer");
    GK_DISPATCH(g, dt, "bias_grad", {
        if (col_sums<T>(g, db, (const T *)dy, N, OC, "bias_grad")) return -1;
    });
    return 0;
}

/* ====================================================== classifier */

static __global__ void count_targets_k(int *count, const int32_t *tgt, int N)
{
    int c = 0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) c += tgt[i] != -1;
    c = block_reduce(c, SumOp(), 0);
    if (threadIdx.x == 0) *count = c;
}

/* One block per row of the chunk: loss, and dlogits if dl != NULL (pass 2),
 * scaled by loss_scale / *count.
 * lse = max + log(sum exp(x - max)) as the CPU model; the sum is gathered
 * online (rescaled when the running max grows), so the row is read twice. */
template <typename T>
static __global__ void xent_k(float *losses, T *dl, const float *logits, int ld, const int32_t *tgt, int V, float loss_scale,
                       const int *count)
{
    const int r = blockIdx.x;
    const float *L = logits + (size_t)r * ld;
    T *D = dl ? dl + (size_t)r * ld : NULL;
    const int t = tgt[r];
    if (D) /* the padding columns [V, ld) are zero: the dh product runs over ld */
        for (int j = V + threadIdx.x; j < ld; j += blockDim.x) D[j] = fromf<T>(0.0f);
    if (t == -1 || t < -1 || t >= V) { /* ignored (0) or invalid (NaN) */
        const float fill = t == -1 ? 0.0f : __int_as_float(0x7fc00000);
        if (threadIdx.x == 0) losses[r] = fill;
        if (D)
            for (int j = threadIdx.x; j < V; j += blockDim.x) D[j] = fromf<T>(fill);
        return;
    }
    /* pass 1: each thread's running max and sum of exp(x - max) (online
     * softmax), then the block's max and the rescaled sums */
    float m = -INFINITY, s = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        const float xj = L[j];
        if (xj > m) {
            s = s * expf(m - xj) + 1.0f;
            m = xj;
        } else {
            s += expf(xj - m); /* a NaN logit makes the row's loss NaN, as on the CPU */
        }
    }
    const float mx = block_reduce(m, MaxOp(), -INFINITY);
    s = block_reduce(m > -INFINITY ? s * expf(m - mx) : 0.0f, SumOp(), 0.0f);
    const float lse = mx + logf(s);
    if (threadIdx.x == 0) losses[r] = lse - L[t];
    if (D) {
        const float sc = loss_scale / (float)(*count);
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            float d = expf(L[j] - lse) * sc;
            if (j == t) d -= sc;
            D[j] = fromf<T>(d);
        }
    }
}

/* The saving forward's softmax, in place: row r of X [N,ld] holds the row's
 * logits (type T, columns >= V zero) and is overwritten with softmax - onehot
 * (unscaled; 0 for an ignored row and in the padding, NaN for an invalid
 * target).  One block a row, 8 elements an access (ld is a multiple of 64,
 * rows 16-byte aligned); the second read mostly hits L2 (a few hundred rows
 * of 100 KB in flight). */
template <typename T>
static __global__ void __launch_bounds__(1024) xent_inplace_k(float *losses, T *X, int ld, const int32_t *tgt, int V)
{
    const int r = blockIdx.x;
    T *L = X + (size_t)r * ld;
    const int t = tgt[r];
    if (t == -1 || t < -1 || t >= V) {
        const float fill = t == -1 ? 0.0f : __int_as_float(0x7fc00000);
        if (threadIdx.x == 0) losses[r] = fill;
        for (int j = threadIdx.x * 8; j < ld; j += blockDim.x * 8) {
            float f[8];
#pragma unroll
            for (int k = 0; k < 8; k++) f[k] = j + k < V ? fill : 0.0f;
            st8(L + j, f);
        }
        return;
    }
    float m = -INFINITY, s = 0.0f;
    for (int j = threadIdx.x * 8; j < V; j += blockDim.x * 8) {
        float f[8];
        ld8(f, L + j);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            if (j + k >= V) break;
            const float xj = f[k];
            if (xj > m) {
                s = s * expf(m - xj) + 1.0f;
                m = xj;
            } else {
                s += expf(xj - m);
            }
        }
    }
    const float lt = tof(L[t]); /* read before any thread overwrites the row (barriers below) */
    const float mx = block_reduce(m, MaxOp(), -INFINITY);
    s = block_reduce(m > -INFINITY ? s * expf(m - mx) : 0.0f, SumOp(), 0.0f);
    const float lse = mx + logf(s);
    if (threadIdx.x == 0) losses[r] = lse - lt;
    __syncthreads(); /* every thread has read L[t] */
    for (int j = threadIdx.x * 8; j < ld; j += blockDim.x * 8) {
        float f[8];
        ld8(f, L + j);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int c = j + k;
            f[k] = c < V ? expf(f[k] - lse) - (c == t ? 1.0f : 0.0f) : 0.0f;
        }
        st8(L + j, f);
    }
}

static __global__ void loss_mean_k(float *mean, const float *losses, const int *count, int N)
{
    double s = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) s += (double)losses[i];
    s = block_reduce(s, SumOp(), 0.0);
    if (threadIdx.x == 0) *mean = *count > 0 ? (float)(s / (double)*count) : 0.0f;
}

/* The vocabulary padded to a multiple of 64: the products run on aligned
 * sizes (an odd V sends cuBLASLt to slow unaligned kernels). */
static int vocab_ld(int V) { return (V + 63) / 64 * 64; }

extern "C" int zf_gk_classifier_chunk_rows(const zf_gk *g, zf_gpu_dtype dt, int N, int V)
{
    const size_t per_row = (size_t)vocab_ld(V) * (4 + zf_gpu_dtype_size(dt));
    size_t R = g->cls_bytes / (per_row ? per_row : 1);
    if (R < 1) R = 1;
    if (R >= (size_t)N) return N;
    if (R >= 64) R -= R % 64; /* chunks of aligned rows */
    return (int)R;
}

static int classifier_impl(zf_gk *g, zf_gpu_dtype dt, const void *h, const void *wte, const int32_t *targets, int N,
                           int C, int V, float loss_scale, float *losses, float *loss_mean, int *count_out, void *dh,
                           float *dwte, void *dsave);

extern "C" int zf_gk_classifier(zf_gk *g, zf_gpu_dtype dt, const void *h, const void *wte, const int32_t *targets, int N,
                                int C, int V, float loss_scale, float *losses, float *loss_mean, int *count_out,
                                void *dh, float *dwte)
{
    return classifier_impl(g, dt, h, wte, targets, N, C, V, loss_scale, losses, loss_mean, count_out, dh, dwte, NULL);
}

extern "C" int zf_gk_classifier_fwd_save(zf_gk *g, zf_gpu_dtype dt, const void *h, const void *wte,
                                         const int32_t *targets, int N, int C, int V, float *losses, float *loss_mean,
                                         int *count_out, void *dsave)
{
    if (!dsave || (uintptr_t)dsave % 16)
        return gk_fail(g, "gpt2_kernels: classifier_fwd_save: dsave: expected a 16-byte aligned pointer, got %p", dsave);
    return classifier_impl(g, dt, h, wte, targets, N, C, V, 1.0f, losses, loss_mean, count_out, NULL, NULL, dsave);
}

/* wte padded with zero rows to [ld, C] at wp */
static int pad_wte(zf_gk *g, void *wp, const void *wte, int V, int C, int ld, size_t es)
{
    cudaError_t ce = cudaMemcpyAsync(wp, wte, (size_t)V * C * es, cudaMemcpyDeviceToDevice, g->s);
    if (ce == cudaSuccess && ld > V)
        ce = cudaMemsetAsync((char *)wp + (size_t)V * C * es, 0, (size_t)(ld - V) * C * es, g->s);
    if (ce != cudaSuccess) return gk_fail(g, "gpt2_kernels: classifier: padded wte: %s", cudaGetErrorString(ce));
    return 0;
}

extern "C" int zf_gk_classifier_bwd_saved(zf_gk *g, zf_gpu_dtype dt, const void *dsave, const void *h, const void *wte,
                                          int N, int C, int V, float alpha, void *dh, float *dwte)
{
    if (N < 1 || C < 1 || V < 1)
        return gk_fail(g, "gpt2_kernels: classifier_bwd_saved: N, C, V: expected >= 1, got %d %d %d", N, C, V);
    if (!dsave || !h || !wte || !dh || !dwte) return gk_fail(g, "gpt2_kernels: classifier_bwd_saved: NULL pointer");
    if (!g->mm) return gk_fail(g, "gpt2_kernels: classifier_bwd_saved: the context has no zf_matmul");
    const size_t es = zf_gpu_dtype_size(dt);
    if (!es) return gk_fail(g, "gpt2_kernels: classifier_bwd_saved: dt: expected a zf_gpu_dtype, got %d", (int)dt);
    const int ld = vocab_ld(V);
    void *wp = gk_scratch(g, (size_t)ld * C * es);
    if (!wp || pad_wte(g, wp, wte, V, C, ld, es)) return -1;
    /* all rows at once: dh[N,C] = alpha dsave[N,ld] wte_pad[ld,C] (the padding is 0 on both sides),
     * dwte[V,C] (fp32) += alpha dsave^T[V,N] h[N,C] */
    if (zf_matmul(g->mm, g->s, dt, dt, N, C, ld, dsave, ld, 0, wp, C, 0, dh, C, alpha, 0.0f, ZF_MM_DEFAULT, NULL,
                  NULL, 0) ||
        zf_matmul(g->mm, g->s, dt, ZF_GPU_F32, V, C, N, dsave, ld, 1, h, C, 0, dwte, C, alpha, 1.0f, ZF_MM_DEFAULT,
                  NULL, NULL, 0))
        return gk_fail(g, "gpt2_kernels: classifier_bwd_saved: %s", zf_matmul_error(g->mm));
    return 0;
}

static int classifier_impl(zf_gk *g, zf_gpu_dtype dt, const void *h, const void *wte, const int32_t *targets, int N,
                           int C, int V, float loss_scale, float *losses, float *loss_mean, int *count_out, void *dh,
                           float *dwte, void *dsave)
{
    if (N < 1 || C < 1 || V < 1)
        return gk_fail(g, "gpt2_kernels: classifier: N, C, V: expected >= 1, got %d %d %d", N, C, V);
    if (!h || !wte || !targets || !losses) return gk_fail(g, "gpt2_kernels: classifier: NULL pointer");
    if (dh && !dwte) return gk_fail(g, "gpt2_kernels: classifier: dwte: expected a pointer with dh, got NULL");
    if (!g->mm) return gk_fail(g, "gpt2_kernels: classifier: the context has no zf_matmul");
    const size_t es = zf_gpu_dtype_size(dt);
    if (!es) return gk_fail(g, "gpt2_kernels: classifier: dt: expected a zf_gpu_dtype, got %d", (int)dt);
    const int ld = vocab_ld(V);
    if (dsave) { /* all rows at once: logits (type dt) straight into dsave, softmax in place */
        void *wpad = gk_scratch(g, (size_t)ld * C * es);
        if (!wpad || pad_wte(g, wpad, wte, V, C, ld, es)) return -1;
        int *cnt = (int *)g->misc;
        count_targets_k<<<1, 1024, 0, g->s>>>(cnt, targets, N);
        if (gk_launched(g, "classifier (count)")) return -1;
        if (zf_matmul(g->mm, g->s, dt, dt, N, ld, C, h, C, 0, wpad, C, 1, dsave, ld, 1.0f, 0.0f, ZF_MM_DEFAULT, NULL,
                      NULL, 0))
            return gk_fail(g, "gpt2_kernels: classifier: %s", zf_matmul_error(g->mm));
        GK_DISPATCH(g, dt, "classifier",
                    xent_inplace_k<T><<<N, 1024, 0, g->s>>>(losses, (T *)dsave, ld, targets, V));
        if (gk_launched(g, "classifier (softmax)")) return -1;
        if (loss_mean) {
            loss_mean_k<<<1, 1024, 0, g->s>>>(loss_mean, losses, cnt, N);
            if (gk_launched(g, "classifier (mean)")) return -1;
        }
        if (count_out) {
            cudaError_t e = cudaMemcpyAsync(count_out, cnt, sizeof(int), cudaMemcpyDeviceToDevice, g->s);
            if (e != cudaSuccess) return gk_fail(g, "gpt2_kernels: classifier: count copy: %s", cudaGetErrorString(e));
        }
        return 0;
    }
    const int R = zf_gk_classifier_chunk_rows(g, dt, N, V);
    const size_t lbytes = align256((size_t)R * ld * sizeof(float)), dbytes = dh ? align256((size_t)R * ld * es) : 0;
    char *s = (char *)gk_scratch(g, lbytes + dbytes + (size_t)ld * C * es);
    if (!s) return -1;
    float *logits = (float *)s;
    void *dl = dh ? (void *)(s + lbytes) : NULL;
    /* wte padded with zero rows to [ld, C] */
    char *wp = s + lbytes + dbytes;
    if (pad_wte(g, wp, wte, V, C, ld, es)) return -1;
    int *count = (int *)g->misc;
    count_targets_k<<<1, 1024, 0, g->s>>>(count, targets, N);
    if (gk_launched(g, "classifier (count)")) return -1;
    for (int r0 = 0; r0 < N; r0 += R) {
        const int rc = N - r0 < R ? N - r0 : R;
        const char *hc = (const char *)h + (size_t)r0 * C * es;
        /* logits[rc,ld] (fp32) = h[rc,C] wte_pad^T (columns >= V are 0) */
        if (zf_matmul(g->mm, g->s, dt, ZF_GPU_F32, rc, ld, C, hc, C, 0, wp, C, 1, logits, ld, 1.0f, 0.0f,
                      ZF_MM_DEFAULT, NULL, NULL, 0))
            return gk_fail(g, "gpt2_kernels: classifier: %s", zf_matmul_error(g->mm));
        GK_DISPATCH(g, dt, "classifier",
                    xent_k<T><<<rc, 512, 0, g->s>>>(losses + r0, (T *)dl, logits, ld, targets + r0, V, loss_scale,
                                                     count));
        if (gk_launched(g, "classifier (softmax)")) return -1;
        if (!dh) continue;
        /* dh[rc,C] = dlogits[rc,ld] wte_pad[ld,C] (the padding is 0 on both sides) */
        if (zf_matmul(g->mm, g->s, dt, dt, rc, C, ld, dl, ld, 0, wp, C, 0, (char *)dh + (size_t)r0 * C * es, C, 1.0f,
                      0.0f, ZF_MM_DEFAULT, NULL, NULL, 0))
            return gk_fail(g, "gpt2_kernels: classifier: %s", zf_matmul_error(g->mm));
        /* dwte[V,C] (fp32) += dlogits^T[V,rc] h[rc,C] */
        if (zf_matmul(g->mm, g->s, dt, ZF_GPU_F32, V, C, rc, dl, ld, 1, hc, C, 0, dwte, C, 1.0f, 1.0f,
                      ZF_MM_DEFAULT, NULL, NULL, 0))
            return gk_fail(g, "gpt2_kernels: classifier: %s", zf_matmul_error(g->mm));
    }
    if (loss_mean) {
        loss_mean_k<<<1, 1024, 0, g->s>>>(loss_mean, losses, count, N);
        if (gk_launched(g, "classifier (mean)")) return -1;
    }
    if (count_out) {
        cudaError_t e = cudaMemcpyAsync(count_out, count, sizeof(int), cudaMemcpyDeviceToDevice, g->s);
        if (e != cudaSuccess) return gk_fail(g, "gpt2_kernels: classifier: count copy: %s", cudaGetErrorString(e));
    }
    return 0;
}

/* ====================================================== AdamW */

namespace {
struct adamw_coefs {
    float wd_mul, beta1, omb1, beta2, omb2, bc2_sqrt, eps, nss;
};
} // namespace

/* As zf_adamw_coefs_init (lib/adamw.c; kept here because the GPU tests link
 * the CUDA objects alone): scalars in double, rounded once to float. */
static adamw_coefs adamw_coefs_make(const zf_adamw_hparams *h, int64_t step)
{
    adamw_coefs c;
    c.wd_mul = h->weight_decay != 0.0 ? (float)(1.0 - h->lr * h->weight_decay) : 1.0f;
    c.beta1 = (float)h->beta1;
    c.omb1 = (float)(1.0 - h->beta1);
    c.beta2 = (float)h->beta2;
    c.omb2 = (float)(1.0 - h->beta2);
    const double st = (double)step, bc1 = 1.0 - pow(h->beta1, st), bc2 = 1.0 - pow(h->beta2, st);
    c.bc2_sqrt = (float)sqrt(bc2);
    c.eps = (float)h->eps;
    c.nss = (float)(-(h->lr / bc1));
    return c;
}

/* One element, torch's operation order (lib/adamw.h), each operation
 * correctly rounded: explicit _rn intrinsics so that the compiler cannot
 * contract a multiply and an add into an FMA the CPU does not do. */
template <typename L>
static __device__ __forceinline__ void adamw_elem(float *p, const float *g, float *m, float *v, L *lp, size_t k,
                                           const adamw_coefs &c, float gs, int decay)
{
    const float gi = __fmul_rn(g[k], gs);
    float pi = p[k];
    if (decay) pi = __fmul_rn(pi, c.wd_mul);
    const float mi = __fmaf_rn(gi, c.omb1, __fmul_rn(m[k], c.beta1));
    const float vi = __fmaf_rn(__fmul_rn(c.omb2, gi), gi, __fmul_rn(v[k], c.beta2));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bc2_sqrt), c.eps);
    pi = __fadd_rn(pi, __fdiv_rn(__fmul_rn(c.nss, mi), denom));
    p[k] = pi;
    m[k] = mi;
    v[k] = vi;
    if (lp) lp[k] = fromf<L>(pi);
}

template <typename L>
static __global__ void adamw_range_k(float *p, const float *g, float *m, float *v, L *lp, size_t n, adamw_coefs c, float gs,
                              int decay)
{
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n; k += (size_t)gridDim.x * blockDim.x)
        adamw_elem<L>(p, g, m, v, lp, k, c, gs, decay);
}

template <typename L>
static __global__ void adamw_rows_k(float *p, const float *g, float *m, float *v, L *lp, const adamw_work *work,
                             adamw_coefs c, float gs)
{
    const adamw_work w = work[blockIdx.x];
    for (int i = threadIdx.x; i < w.len; i += blockDim.x) adamw_elem<L>(p, g, m, v, lp, (size_t)(w.start + i), c, gs, w.decay);
}

static int adamw_check(zf_gk *g, const float *params, const float *grads, const float *m, const float *v, void *lp,
                       zf_gpu_dtype lp_dt, const zf_adamw_hparams *hp, int64_t step, const char *what)
{
    if (!params || !grads || !m || !v || !hp) return gk_fail(g, "gpt2_kernels: %s: NULL pointer", what);
    if (step < 1) return gk_fail(g, "gpt2_kernels: %s: step: expected >= 1, got %lld", what, (long long)step);
    if (lp && !zf_gpu_dtype_size(lp_dt))
        return gk_fail(g, "gpt2_kernels: %s: lp_dt: expected a zf_gpu_dtype, got %d", what, (int)lp_dt);
    return 0;
}

#define LP_DISPATCH(lp, lp_dt, ...)                                                                                   \
    do {                                                                                                              \
        if (!(lp) || (lp_dt) == ZF_GPU_F32) { typedef float L; __VA_ARGS__; }                                       \
        else if ((lp_dt) == ZF_GPU_BF16) { typedef __nv_bfloat16 L; __VA_ARGS__; }                                   \
        else { typedef __half L; __VA_ARGS__; }                                                                       \
    } while (0)

extern "C" int zf_gk_adamw(zf_gk *g, float *params, const float *grads, float *m, float *v, void *lp, zf_gpu_dtype lp_dt,
                           size_t n, const zf_adamw_hparams *hp, int64_t step, float grad_scale, int apply_decay)
{
    if (adamw_check(g, params, grads, m, v, lp, lp_dt, hp, step, "adamw")) return -1;
    if (!n) return 0;
    const adamw_coefs c = adamw_coefs_make(hp, step);
    const int decay = apply_decay && hp->weight_decay != 0.0;
    LP_DISPATCH(lp, lp_dt,
                adamw_range_k<L><<<grid_for(n, 256), 256, 0, g->s>>>(params, grads, m, v, (L *)lp, n, c, grad_scale,
                                                                       decay));
    return gk_launched(g, "adamw");
}

extern "C" int zf_gk_adamw_rows(zf_gk *g, float *params, const float *grads, float *m, float *v, void *lp,
                                zf_gpu_dtype lp_dt, const int64_t *rows, int nrows, const zf_adamw_hparams *hp,
                                int64_t step, float grad_scale)
{
    if (adamw_check(g, params, grads, m, v, lp, lp_dt, hp, step, "adamw_rows")) return -1;
    if (nrows < 1 || !rows) return gk_fail(g, "gpt2_kernels: adamw_rows: rows: expected >= 1 rows, got %d", nrows);
    if (nrows != g->nrows || memcmp(rows, g->rows, (size_t)nrows * 3 * sizeof(int64_t))) {
        long long nw = 0;
        for (int r = 0; r < nrows; r++) {
            if (rows[3 * r] < 0 || rows[3 * r + 1] < 0)
                return gk_fail(g, "gpt2_kernels: adamw_rows: row %d: expected offset, numel >= 0, got %lld %lld", r,
                               (long long)rows[3 * r], (long long)rows[3 * r + 1]);
            nw += (rows[3 * r + 1] + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
        }
        if (nw > 0x7fffffffLL) return gk_fail(g, "gpt2_kernels: adamw_rows: too many elements");
        adamw_work *hw = (adamw_work *)malloc((size_t)(nw ? nw : 1) * sizeof *hw);
        int64_t *hr = (int64_t *)malloc((size_t)nrows * 3 * sizeof(int64_t));
        if (!hw || !hr) {
            free(hw);
            free(hr);
            return gk_fail(g, "gpt2_kernels: adamw_rows: out of host memory");
        }
        long long k = 0;
        for (int r = 0; r < nrows; r++)
            for (int64_t o = 0; o < rows[3 * r + 1]; o += ADAMW_CHUNK, k++) {
                hw[k].start = (long long)(rows[3 * r] + o);
                hw[k].len = (int)(rows[3 * r + 1] - o < ADAMW_CHUNK ? rows[3 * r + 1] - o : ADAMW_CHUNK);
                hw[k].decay = rows[3 * r + 2] != 0;
            }
        cudaStreamSynchronize(g->s);
        cudaFree(g->work);
        g->work = NULL;
        g->nwork = 0;
        free(g->rows);
        g->rows = NULL;
        g->nrows = 0;
        cudaError_t e = cudaMalloc(&g->work, (size_t)(nw ? nw : 1) * sizeof *hw);
        if (e == cudaSuccess) e = cudaMemcpyAsync(g->work, hw, (size_t)nw * sizeof *hw, cudaMemcpyHostToDevice, g->s);
        if (e == cudaSuccess) e = cudaStreamSynchronize(g->s); /* hw is freed next */
        free(hw);
        if (e != cudaSuccess) {
            free(hr);
            return gk_fail(g, "gpt2_kernels: adamw_rows: upload of the layout: %s", cudaGetErrorString(e));
        }
        memcpy(hr, rows, (size_t)nrows * 3 * sizeof(int64_t));
        g->rows = hr;
        g->nrows = nrows;
        g->nwork = (int)nw;
    }
    if (!g->nwork) return 0;
    adamw_coefs c = adamw_coefs_make(hp, step);
    if (hp->weight_decay == 0.0) c.wd_mul = 1.0f; /* decay rows then multiply by 1: exact */
    LP_DISPATCH(lp, lp_dt,
                adamw_rows_k<L><<<(unsigned)g->nwork, 256, 0, g->s>>>(params, grads, m, v, (L *)lp, g->work, c,
                                                                        grad_scale));
    return gk_launched(g, "adamw_rows");
}

/* ====================================================== gradient stats */

static __global__ void sumsq_partial_k(double *part, unsigned long long *bad, const float *gr, size_t n, int vec)
{
    const size_t stride = (size_t)GN_BLOCKS * blockDim.x, tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    double acc = 0.0;
    unsigned long long nb = 0;
    size_t done = 0;
    if (vec) { /* four per access; the same terms, in a fixed order */
        const size_t nv = n / 4;
        for (size_t v = tid; v < nv; v += stride) {
            const float4 x = ((const float4 *)gr)[v];
            acc += (double)x.x * (double)x.x + (double)x.y * (double)x.y + (double)x.z * (double)x.z +
                   (double)x.w * (double)x.w;
            nb += !isfinite(x.x) + !isfinite(x.y) + !isfinite(x.z) + !isfinite(x.w);
        }
        done = nv * 4;
    }
    for (size_t i = done + tid; i < n; i += stride) {
        const float x = gr[i];
        acc += (double)x * (double)x;
        nb += !isfinite(x);
    }
    acc = block_reduce(acc, SumOp(), 0.0);
    nb = block_reduce(nb, SumOp(), 0ull);
    if (threadIdx.x == 0) {
        part[blockIdx.x] = acc;
        bad[blockIdx.x] = nb;
    }
}

static __global__ void sumsq_final_k(double *part, unsigned long long *bad)
{
    double a = 0.0;
    unsigned long long b = 0;
    for (int i = threadIdx.x; i < GN_BLOCKS; i += blockDim.x) {
        a += part[i];
        b += bad[i];
    }
    a = block_reduce(a, SumOp(), 0.0);
    b = block_reduce(b, SumOp(), 0ull);
    if (threadIdx.x == 0) {
        part[GN_BLOCKS] = a;
        bad[GN_BLOCKS] = b;
    }
}

extern "C" int zf_gk_grad_stats(zf_gk *g, const float *grads, size_t n, double *sumsq, long long *nonfinite)
{
    if (!grads || !sumsq || !nonfinite) return gk_fail(g, "gpt2_kernels: grad_stats: NULL pointer");
    double *part = (double *)g->misc + 64; /* after the classifier's words */
    unsigned long long *bad = (unsigned long long *)(part + GN_BLOCKS + 1);
    sumsq_partial_k<<<GN_BLOCKS, 256, 0, g->s>>>(part, bad, grads, n, (uintptr_t)grads % 16 == 0);
    if (gk_launched(g, "grad_stats")) return -1;
    sumsq_final_k<<<1, GN_BLOCKS, 0, g->s>>>(part, bad);
    if (gk_launched(g, "grad_stats (final)")) return -1;
    unsigned long long b = 0;
    cudaError_t e = cudaMemcpyAsync(sumsq, part + GN_BLOCKS, sizeof(double), cudaMemcpyDeviceToHost, g->s);
    if (e == cudaSuccess) e = cudaMemcpyAsync(&b, bad + GN_BLOCKS, sizeof b, cudaMemcpyDeviceToHost, g->s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(g->s);
    if (e != cudaSuccess) return gk_fail(g, "gpt2_kernels: grad_stats: %s", cudaGetErrorString(e));
    *nonfinite = (long long)b;
    return 0;
}

/* ====================================================== conversions */

template <typename D, typename S> static __global__ void convert_k(D *dst, const S *src, size_t n, int vec)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x, tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    size_t done = 0;
    if (vec) {
        const size_t nv = n / 8;
        for (size_t v = tid; v < nv; v += stride) {
            float f[8];
            ld8(f, src + 8 * v);
            st8(dst + 8 * v, f);
        }
        done = nv * 8;
    }
    for (size_t i = done + tid; i < n; i += stride) dst[i] = fromf<D>(tof(src[i]));
}

extern "C" int zf_gk_convert(zf_gk *g, void *dst, zf_gpu_dtype dst_dt, const void *src, zf_gpu_dtype src_dt, size_t n)
{
    if (!n) return 0;
    if (!dst || !src) return gk_fail(g, "gpt2_kernels: convert: NULL pointer");
    if (!zf_gpu_dtype_size(dst_dt) || !zf_gpu_dtype_size(src_dt))
        return gk_fail(g, "gpt2_kernels: convert: types: expected zf_gpu_dtype values, got %d %d", (int)dst_dt, (int)src_dt);
    if (dst_dt == src_dt) {
        cudaError_t e = cudaMemcpyAsync(dst, src, n * zf_gpu_dtype_size(dst_dt), cudaMemcpyDeviceToDevice, g->s);
        if (e != cudaSuccess) return gk_fail(g, "gpt2_kernels: convert: copy failed: %s", cudaGetErrorString(e));
        return 0;
    }
    const int vec = al8(dst, zf_gpu_dtype_size(dst_dt)) && al8(src, zf_gpu_dtype_size(src_dt));
    const unsigned blocks = grid_for(vec ? n / 8 + 8 : n, 256);
    GK_DISPATCH(g, src_dt, "convert", {
        typedef T S;
        GK_DISPATCH(g, dst_dt, "convert", convert_k<T, S><<<blocks, 256, 0, g->s>>>((T *)dst, (const S *)src, n, vec));
    });
    return gk_launched(g, "convert");
}
