/* matmul.cu - see matmul.cuh.
 *
 * Row-major through a column-major library: a row-major [R,C] matrix with
 * leading dimension ld is, read column-major, its transpose [C,R] with the
 * same ld.  So row-major D = op(A) op(B) is computed as column-major
 * D^T = op(B)^T op(A)^T: cuBLASLt's "A" is our B, its "B" is our A, and its
 * (m, n, k) are our (N, M, K).  A bias over cuBLASLt's rows is then a bias
 * over our columns (output features), as y = x W + b needs, and cuBLASLt's
 * BGRADA (reduction of its A over k) is the column sum of our B.
 *
 * Each distinct (types, transposes, sizes, leading dimensions, epilogue,
 * pointer alignments) gets one heuristic query; the descriptors and the
 * chosen algorithm are kept, so a shape always runs the same algorithm. */
#include "matmul.cuh"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace {

struct mm_key {
    int ab, dt, ta, tb, M, N, K, lda, ldb, ldd, ep, ldaux;
    int al_a, al_b, al_d, al_bias, al_aux;
};

struct mm_plan {
    mm_key key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
};

} // namespace

struct zf_matmul_ctx {
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
    mm_plan *plans;
    int nplans, cap;
    char err[512];
};

static int mm_fail(zf_matmul_ctx *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->err, sizeof h->err, fmt, ap);
    va_end(ap);
    return -1;
}


extern "C" size_t zf_gpu_dtype_size(zf_gpu_dtype t)
{
    switch (t) {
    case ZF_GPU_F32: return 4;
    case ZF_GPU_BF16: return 2;
    case ZF_GPU_F16: return 2;
    }
    return 0;
}

extern "C" const char *zf_gpu_dtype_name(zf_gpu_dtype t)
{
    switch (t) {
    case ZF_GPU_F32: return "fp32";
    case ZF_GPU_BF16: return "bf16";
    case ZF_GPU_F16: return "fp16";
    }
    return "?";
}

static cudaDataType_t cuda_type(zf_gpu_dtype t)
{
    switch (t) {
    case ZF_GPU_BF16: return CUDA_R_16BF;
    case ZF_GPU_F16: return CUDA_R_16F;
    default: return CUDA_R_32F;
    }
}

/* Largest power of two (<= 256) dividing the address: the alignment the
 * heuristics may assume. */
static int ptr_align(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    if (!a) return 256;
    int al = 1;
    while (al < 256 && (a % (uintptr_t)(al * 2)) == 0) al *= 2;
    return al;
}

extern "C" zf_matmul_ctx *zf_matmul_create(size_t workspace_bytes, zf_err *err)
{
    zf_matmul_ctx *h = (zf_matmul_ctx *)calloc(1, sizeof *h);
    if (!h) {
        zf_err_set(err, "matmul: out of host memory");
        return NULL;
    }
    h->ws_bytes = workspace_bytes ? workspace_bytes : (size_t)32 << 20;
    cublasStatus_t st = cublasLtCreate(&h->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        zf_err_set(err, "matmul: cublasLtCreate: expected success, got status %d", (int)st);
        free(h);
        return NULL;
    }
    cudaError_t ce = cudaMalloc(&h->ws, h->ws_bytes);
    if (ce != cudaSuccess) {
        zf_err_set(err, "matmul: workspace of %zu bytes: cudaMalloc failed: %s", h->ws_bytes, cudaGetErrorString(ce));
        cublasLtDestroy(h->lt);
        free(h);
        return NULL;
    }
    return h;
}

extern "C" void zf_matmul_free(zf_matmul_ctx *h)
{
    if (!h) return;
    for (int i = 0; i < h->nplans; i++) {
        cublasLtMatrixLayoutDestroy(h->plans[i].la);
        cublasLtMatrixLayoutDestroy(h->plans[i].lb);
        cublasLtMatrixLayoutDestroy(h->plans[i].ld);
        cublasLtMatmulDescDestroy(h->plans[i].op);
    }
    free(h->plans);
    cudaFree(h->ws);
    cublasLtDestroy(h->lt);
    free(h);
}

extern "C" const char *zf_matmul_error(const zf_matmul_ctx *h) { return h ? h->err : "matmul: no handle"; }
extern "C" int zf_matmul_cached_plans(const zf_matmul_ctx *h) { return h ? h->nplans : 0; }

#define LT_TRY(call, what)                                                                                            \
    do {                                                                                                              \
        cublasStatus_t st_ = (call);                                                                                  \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                                           \
            mm_fail(h, "matmul: %s: expected success, got cuBLAS status %d", what, (int)st_);                       \
            goto fail;                                                                                                \
        }                                                                                                             \
    } while (0)

/* Build the descriptors of one key and ask the heuristics for an algorithm. */
static mm_plan *plan_get(zf_matmul_ctx *h, const mm_key *k)
{
    for (int i = 0; i < h->nplans; i++)
        if (!memcmp(&h->plans[i].key, k, sizeof *k)) return &h->plans[i];
    mm_plan p;
    memset(&p, 0, sizeof p);
    p.key = *k;
    const cudaDataType_t tab = cuda_type((zf_gpu_dtype)k->ab), td = cuda_type((zf_gpu_dtype)k->dt);
    /* cuBLASLt's view: m = N, n = M, its A = our B, its B = our A */
    const cublasOperation_t opA = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N, opB = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    uint32_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    uint32_t al;
    uint64_t wsb = h->ws_bytes;
    LT_TRY(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA), "TRANSA");
    LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB), "TRANSB");
    switch ((zf_mm_epilogue)k->ep) {
    case ZF_MM_BIAS: epi = CUBLASLT_EPILOGUE_BIAS; break;
    case ZF_MM_GELU_BIAS: epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS; break;
    case ZF_MM_BGRAD_B: epi = CUBLASLT_EPILOGUE_BGRADA; break;
    case ZF_MM_DGELU: epi = CUBLASLT_EPILOGUE_DGELU; break;
    default: epi = CUBLASLT_EPILOGUE_DEFAULT; break;
    }
    LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "EPILOGUE");
    if (k->ep == ZF_MM_GELU_BIAS || k->ep == ZF_MM_DGELU) {
        int64_t ldaux = k->ldaux;
        LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ldaux, sizeof ldaux),
               "EPILOGUE_AUX_LD");
    }
    if (k->tb)
        LT_TRY(cublasLtMatrixLayoutCreate(&p.la, tab, k->K, k->N, k->ldb), "layout A");
    else
        LT_TRY(cublasLtMatrixLayoutCreate(&p.la, tab, k->N, k->K, k->ldb), "layout A");
    if (k->ta)
        LT_TRY(cublasLtMatrixLayoutCreate(&p.lb, tab, k->M, k->K, k->lda), "layout B");
    else
        LT_TRY(cublasLtMatrixLayoutCreate(&p.lb, tab, k->K, k->M, k->lda), "layout B");
    LT_TRY(cublasLtMatrixLayoutCreate(&p.ld, td, k->N, k->M, k->ldd), "layout D");

    LT_TRY(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb),
           "MAX_WORKSPACE_BYTES");
    al = (uint32_t)k->al_b; /* cuBLASLt's A is our B */
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al),
           "MIN_ALIGNMENT_A");
    al = (uint32_t)k->al_a;
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al),
           "MIN_ALIGNMENT_B");
    al = (uint32_t)k->al_d;
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al),
           "MIN_ALIGNMENT_C");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al),
           "MIN_ALIGNMENT_D");
    {
        /* the heuristics read the epilogue pointers' alignment from the
         * descriptor: give them addresses of the cached alignment */
        void *bp = (void *)(uintptr_t)k->al_bias, *xp = (void *)(uintptr_t)k->al_aux;
        if (k->ep != ZF_MM_DEFAULT && k->ep != ZF_MM_DGELU)
            LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp),
                   "BIAS_POINTER");
        if (k->ep == ZF_MM_GELU_BIAS || k->ep == ZF_MM_DGELU)
            LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &xp, sizeof xp),
                   "EPILOGUE_AUX_POINTER");
    }
    LT_TRY(cublasLtMatmulAlgoGetHeuristic(h->lt, p.op, p.la, p.lb, p.ld, p.ld, pref, 1, &res, &found),
           "cublasLtMatmulAlgoGetHeuristic");
    if (found < 1) {
        mm_fail(h, "matmul: no cuBLASLt algorithm for %s x %s -> %s, M=%d N=%d K=%d, trans %d%d, epilogue %d",
                zf_gpu_dtype_name((zf_gpu_dtype)k->ab), zf_gpu_dtype_name((zf_gpu_dtype)k->ab), zf_gpu_dtype_name((zf_gpu_dtype)k->dt), k->M,
                k->N, k->K, k->ta, k->tb, k->ep);
        goto fail;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    p.algo = res.algo;
    if (h->nplans == h->cap) {
        int nc = h->cap ? 2 * h->cap : 32;
        mm_plan *np = (mm_plan *)realloc(h->plans, (size_t)nc * sizeof *np);
        if (!np) {
            mm_fail(h, "matmul: out of host memory");
            pref = NULL;
            goto fail;
        }
        h->plans = np;
        h->cap = nc;
    }
    h->plans[h->nplans] = p;
    return &h->plans[h->nplans++];
fail:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (p.la) cublasLtMatrixLayoutDestroy(p.la);
    if (p.lb) cublasLtMatrixLayoutDestroy(p.lb);
    if (p.ld) cublasLtMatrixLayoutDestroy(p.ld);
    if (p.op) cublasLtMatmulDescDestroy(p.op);
    return NULL;
}

extern "C" int zf_matmul(zf_matmul_ctx *h, cudaStream_t stream, zf_gpu_dtype ab, zf_gpu_dtype d_type, int M, int N, int K,
                         const void *A, int lda, int trans_a, const void *B, int ldb, int trans_b, void *D, int ldd,
                         float alpha, float beta, zf_mm_epilogue ep, void *bias, void *aux, int ldaux)
{
    if (!h) return -1;
    h->err[0] = 0;
    if (!zf_gpu_dtype_size(ab)) return mm_fail(h, "matmul: ab: expected a zf_gpu_dtype, got %d", (int)ab);
    if (d_type != ab && d_type != ZF_GPU_F32)
        return mm_fail(h, "matmul: d_type: expected %s or fp32, got %d", zf_gpu_dtype_name(ab), (int)d_type);
    if (M < 1 || N < 1 || K < 1) return mm_fail(h, "matmul: sizes: expected M, N, K >= 1, got %d %d %d", M, N, K);
    if (!A || !B || !D) return mm_fail(h, "matmul: A, B, D: expected device pointers, got NULL");
    if (lda < (trans_a ? M : K)) return mm_fail(h, "matmul: lda: expected >= %d, got %d", trans_a ? M : K, lda);
    if (ldb < (trans_b ? K : N)) return mm_fail(h, "matmul: ldb: expected >= %d, got %d", trans_b ? K : N, ldb);
    if (ldd < N) return mm_fail(h, "matmul: ldd: expected >= %d, got %d", N, ldd);
    if ((int)ep < ZF_MM_DEFAULT || (int)ep > ZF_MM_DGELU)
        return mm_fail(h, "matmul: ep: expected a zf_mm_epilogue, got %d", (int)ep);
    const int has_bias = ep != ZF_MM_DEFAULT && ep != ZF_MM_DGELU, has_aux = ep == ZF_MM_GELU_BIAS || ep == ZF_MM_DGELU;
    if (has_bias && !bias) return mm_fail(h, "matmul: bias: expected a device pointer, got NULL");
    if (has_aux && (!aux || ldaux < N || ldaux % 8))
        return mm_fail(h, "matmul: aux/ldaux: expected a pointer and ldaux >= %d, multiple of 8, got %d", N, ldaux);
    mm_key k;
    memset(&k, 0, sizeof k);
    k.ab = ab;
    k.dt = d_type;
    k.ta = !!trans_a;
    k.tb = !!trans_b;
    k.M = M;
    k.N = N;
    k.K = K;
    k.lda = lda;
    k.ldb = ldb;
    k.ldd = ldd;
    k.ep = ep;
    k.ldaux = has_aux ? ldaux : 0;
    k.al_a = ptr_align(A);
    k.al_b = ptr_align(B);
    k.al_d = ptr_align(D);
    k.al_bias = has_bias ? ptr_align(bias) : 0;
    k.al_aux = has_aux ? ptr_align(aux) : 0;
    mm_plan *p = plan_get(h, &k);
    if (!p) return -1;
    if (has_bias) {
        cublasStatus_t st = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        if (st != CUBLAS_STATUS_SUCCESS) return mm_fail(h, "matmul: BIAS_POINTER: cuBLAS status %d", (int)st);
    }
    if (has_aux) {
        cublasStatus_t st =
            cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux);
        if (st != CUBLAS_STATUS_SUCCESS) return mm_fail(h, "matmul: EPILOGUE_AUX_POINTER: cuBLAS status %d", (int)st);
    }
    cublasStatus_t st = cublasLtMatmul(h->lt, p->op, &alpha, B, p->la, A, p->lb, &beta, D, p->ld, D, p->ld, &p->algo,
                                       h->ws, h->ws_bytes, stream);
    if (st != CUBLAS_STATUS_SUCCESS)
        return mm_fail(h, "matmul: cublasLtMatmul (%s, M=%d N=%d K=%d, epilogue %d): cuBLAS status %d",
                       zf_gpu_dtype_name(ab), M, N, K, (int)ep, (int)st);
    return 0;
}

extern "C" int zf_linear_fwd(zf_matmul_ctx *h, cudaStream_t stream, zf_gpu_dtype dt, void *y, const void *x, const void *W,
                             const void *b, int N, int in, int out)
{
    return zf_matmul(h, stream, dt, dt, N, out, in, x, in, 0, W, out, 0, y, out, 1.0f, 0.0f,
                     b ? ZF_MM_BIAS : ZF_MM_DEFAULT, (void *)b, NULL, 0);
}

extern "C" int zf_linear_fwd_gelu(zf_matmul_ctx *h, cudaStream_t stream, zf_gpu_dtype dt, void *y, void *pre, const void *x,
                                  const void *W, const void *b, int N, int in, int out)
{
    return zf_matmul(h, stream, dt, dt, N, out, in, x, in, 0, W, out, 0, y, out, 1.0f, 0.0f, ZF_MM_GELU_BIAS, (void *)b,
                     pre, out);
}

extern "C" int zf_linear_bwd(zf_matmul_ctx *h, cudaStream_t stream, zf_gpu_dtype dt, void *dx, float *dW, const void *dy,
                             const void *x, const void *W, int N, int in, int out)
{
    /* dW[in,out] += x^T[in,N] dy[N,out] */
    if (zf_matmul(h, stream, dt, ZF_GPU_F32, in, out, N, x, in, 1, dy, out, 0, dW, out, 1.0f, 1.0f, ZF_MM_DEFAULT,
                  NULL, NULL, 0))
        return -1;
    /* dx[N,in] = dy[N,out] W^T[out,in] */
    if (dx && zf_matmul(h, stream, dt, dt, N, in, out, dy, out, 0, W, out, 1, dx, in, 1.0f, 0.0f, ZF_MM_DEFAULT, NULL,
                        NULL, 0))
        return -1;
    return 0;
}
