/* gpt2_cpu.c - GPT-2 forward/backward/KV inference in fp32 on the CPU.
 * See gpt2_cpu.h.
 *
 * Math (as HF GPT2LMHeadModel): x = drop(wte[tok] + wpe[pos]); per block
 *   a = c_attn(ln_1(x)) -> q,k,v split along the last dim, heads of size hd;
 *   att = softmax(q k^T / sqrt(hd), causal); y = drop(att) v; merged heads;
 *   x = x + drop(c_proj(y)); x = x + drop(c_proj(gelu_new(c_fc(ln_2(x)))));
 * then ln_f and logits = x wte^T; loss = mean cross-entropy over targets >= 0.
 *
 * Buffers are sized for (max_B, max_T) once; per layer they sit at fixed
 * strides of the maximal sizes.  Matrix products are sgemm calls made from
 * the calling thread (never inside OpenMP regions, OpenBLAS being the
 * pthread build); elementwise work and reductions are OpenMP loops whose
 * per-element arithmetic does not depend on the thread count. */
#include "gpt2_cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rng.h"

typedef struct layer_off {
    size_t ln1w, ln1b, qkvw, qkvb, attpw, attpb, ln2w, ln2b, fcw, fcb, fcpw, fcpb;
} layer_off;

struct zf_gpt2 {
    zf_gpt2_config c;
    float *p;
    int max_B, max_T;
    size_t o_wte, o_wpe, o_lnfw, o_lnfb;
    layer_off *lo;
    size_t sN, sAtt; /* max rows (B*T) and max attention elements (B*H*T*T) */
    /* forward activations */
    float *x0, *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *res2, *ln2, *ln2_mean, *ln2_rstd, *fch, *fchg, *res3;
    float *lnf, *lnf_mean, *lnf_rstd, *logits, *lse, *lossv, *tmp;
    /* backward scratch */
    float *dres, *dln, *dtmp, *datty, *dqkv, *dfch, *datt, *attd;
    int32_t *tok, *tgt;
    int B, T, training, count, has_targets, fwd_ok;
    uint64_t seed;
    uint64_t row0;       /* global index of row 0 (dropout masks of data-parallel ranks) */
    zf_gpt2_hooks hooks; /* ZeRO: parameter fetch/release, gradients final (all NULL: none) */
};

/* Hooks (no-ops when unset). */
static inline void h_fetch(zf_gpt2 *m, int unit, int phase)
{
    if (m->hooks.fetch) m->hooks.fetch(m->hooks.ctx, unit, phase);
}
static inline void h_release(zf_gpt2 *m, int unit, int phase)
{
    if (m->hooks.release) m->hooks.release(m->hooks.ctx, unit, phase);
}
static inline void h_grads(zf_gpt2 *m, int unit)
{
    if (m->hooks.grads_ready) m->hooks.grads_ready(m->hooks.ctx, unit);
}

/* ------------------------------------------------------------ helpers */

static void *amalloc(size_t nfloats)
{
    void *p = NULL;
    size_t bytes = (nfloats * sizeof(float) + 63) / 64 * 64;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0 || !p) zf_die("out of memory allocating %zu bytes", bytes);
    return p;
}

/* exp for fp32 with ~1 ulp error, branch-free so loops vectorise (no
 * floorf or float->int conversion: both block vectorisation without
 * -fno-trapping-math): x = k ln2 + r with k = round(x log2 e) obtained by
 * adding 1.5*2^23 (the integer then sits in the low mantissa bits, which
 * also give 2^k's exponent field), |r| <= ln2/2, exp(r) by its degree-7
 * Taylor polynomial (truncation < 6e-9 relative). */
static inline float fexp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    union { uint32_t i; float f; } t, s; /* C11 allows punning through a union */
    t.f = x * 1.44269504088896341f + 12582912.0f;
    const float k = t.f - 12582912.0f;
    float r = x - k * 0.693145751953125f; /* ln2 split in two: k*hi is exact */
    r = r - k * 1.428606765330187045e-06f;
    float q = 1.0f / 5040.0f;
    q = q * r + 1.0f / 720.0f;
    q = q * r + 1.0f / 120.0f;
    q = q * r + 1.0f / 24.0f;
    q = q * r + 1.0f / 6.0f;
    q = q * r + 0.5f;
    q = q * r + 1.0f;
    q = q * r + 1.0f;
    s.i = (t.i + 127u) << 23;
    return q * s.f;
}

/* tanh(u) = 1 - 2 / (exp(2u) + 1); absolute error ~1e-7, enough for GELU. */
static inline float ftanh(float u) { return 1.0f - 2.0f / (fexp(2.0f * u) + 1.0f); }

#define GELU_K0 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_K1 0.044715f

#define SITE_EMBD 0u
static inline uint64_t site(int layer, int kind) { return (uint64_t)layer * 4u + (uint64_t)kind + 1u; }
enum { K_ATTN = 0, K_ATTRES = 1, K_MLPRES = 2 };

static void layernorm_fwd(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                          int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j < C; j++) s += xr[j];
        const float m = s / (float)C;
        float v = 0.0f;
#pragma omp simd reduction(+ : v)
        for (int j = 0; j < C; j++) v += (xr[j] - m) * (xr[j] - m);
        const float r = 1.0f / sqrtf(v / (float)C + eps);
#pragma omp simd
        for (int j = 0; j < C; j++) o[j] = (xr[j] - m) * r * w[j] + b[j];
        mean[n] = m;
        rstd[n] = r;
    }
}

/* dx += d LN/dx . dy (rows in parallel); dw += sum_n dy*xhat, db += sum_n dy
 * (column blocks in parallel, rows summed in order). */
#define CB 64
static void layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          const float *mean, const float *rstd, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *dyr = dy + (size_t)n * C, *xr = x + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        const float m = mean[n], r = rstd[n];
        float a = 0.0f, bsum = 0.0f;
#pragma omp simd reduction(+ : a, bsum)
        for (int j = 0; j < C; j++) {
            float g = dyr[j] * w[j];
            a += g;
            bsum += g * (xr[j] - m) * r;
        }
        a /= (float)C;
        bsum /= (float)C;
#pragma omp simd
        for (int j = 0; j < C; j++) dxr[j] += r * (dyr[j] * w[j] - a - (xr[j] - m) * r * bsum);
    }
    const int nb = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nb; blk++) {
        const int j0 = blk * CB, j1 = j0 + CB < C ? j0 + CB : C, w_ = j1 - j0;
        float aw[CB] = {0}, ab[CB] = {0};
        for (int n = 0; n < N; n++) {
            const float *dyr = dy + (size_t)n * C + j0, *xr = x + (size_t)n * C + j0;
            const float m = mean[n], r = rstd[n];
#pragma omp simd
            for (int j = 0; j < w_; j++) {
                aw[j] += dyr[j] * ((xr[j] - m) * r);
                ab[j] += dyr[j];
            }
        }
        for (int j = 0; j < w_; j++) {
            dw[j0 + j] += aw[j];
            db[j0 + j] += ab[j];
        }
    }
}

/* db[j] += sum_n dy[n,j], fixed order per column. */
static void colsum_acc(float *db, const float *dy, int N, int C)
{
    const int nb = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nb; blk++) {
        const int j0 = blk * CB, j1 = j0 + CB < C ? j0 + CB : C, w_ = j1 - j0;
        float acc[CB] = {0};
        for (int n = 0; n < N; n++) {
            const float *r = dy + (size_t)n * C + j0;
#pragma omp simd
            for (int j = 0; j < w_; j++) acc[j] += r[j];
        }
        for (int j = 0; j < w_; j++) db[j0 + j] += acc[j];
    }
}

/* y[N,out] = x[N,in] W[in,out] + b (HF Conv1D layout). */
static void linear_fwd(float *y, const float *x, const float *W, const float *bias, int N, int in, int out)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) memcpy(y + (size_t)n * out, bias, (size_t)out * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, out, in, 1.0f, x, in, W, out, 1.0f, y, out);
}

/* dW += x^T dy, db += colsum(dy), dx = dy W^T (overwritten). */
static void linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W, int N, int in,
                       int out)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, out, N, 1.0f, x, in, dy, out, 1.0f, dW, out);
    colsum_acc(db, dy, N, out);
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, in, out, 1.0f, dy, out, W, out, 0.0f, dx, in);
}

/* out = in + drop(y) */
static void residual_fwd(float *out, const float *in, const float *y, size_t n, int drop, float p, uint64_t seed,
                         uint64_t st, uint64_t ib)
{
    if (!drop) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) out[i] = in[i] + y[i];
        return;
    }
    const float sc = 1.0f / (1.0f - p);
    const uint64_t key = zf_drop_key(seed, st);
    const uint32_t thr = zf_drop_threshold(p);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = in[i] + y[i] * zf_drop_keep(key, ib + i, thr, sc);
}

/* dy = dout * mask (returns dout itself when no dropout); ib: the mask
 * index of element 0 (the global row's, see zf_gpt2_set_row_offset). */
static const float *dropout_bwd(float *dy, const float *dout, size_t n, int drop, float p, uint64_t seed, uint64_t st,
                                uint64_t ib)
{
    if (!drop) return dout;
    const float sc = 1.0f / (1.0f - p);
    const uint64_t key = zf_drop_key(seed, st);
    const uint32_t thr = zf_drop_threshold(p);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dy[i] = dout[i] * zf_drop_keep(key, ib + i, thr, sc);
    return dy;
}

/* Causal attention over all (b,h): P (pre-dropout probabilities) is kept
 * for the backward; attd receives drop(P) when dropout is on. */
static void attention_fwd(zf_gpt2 *m, float *out, float *P, const float *qkv, int B, int T, int l, int drop)
{
    const int d = m->c.n_embd, H = m->c.n_head, hd = d / H, d3 = 3 * d;
    const float alpha = 1.0f / sqrtf((float)hd);
    const size_t TT = (size_t)T * T;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (size_t)b * T * d3 + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, alpha, q, d3, q + d, d3, 0.0f,
                        P + (size_t)(b * H + h) * TT, T);
        }
    const long rows = (long)B * H * T;
    const float p = m->c.attn_pdrop, sc = 1.0f / (1.0f - p);
    const uint64_t key = zf_drop_key(m->seed, site(l, K_ATTN)), ib = m->row0 * (uint64_t)H * TT;
    const uint32_t thr = zf_drop_threshold(p);
    float *attd = m->attd;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const int t = (int)(r % T);
        float *row = P + (size_t)r * T;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j <= t; j++) {
            row[j] = fexp(row[j] - mx);
            s += row[j];
        }
        const float inv = 1.0f / s;
#pragma omp simd
        for (int j = 0; j <= t; j++) row[j] *= inv;
        for (int j = t + 1; j < T; j++) row[j] = 0.0f;
        if (drop) {
            float *pd = attd + (size_t)r * T;
#pragma omp simd
            for (int j = 0; j <= t; j++) pd[j] = row[j] * zf_drop_keep(key, ib + (uint64_t)r * T + j, thr, sc);
            for (int j = t + 1; j < T; j++) pd[j] = 0.0f;
        }
    }
    const float *src = drop ? attd : P;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *v = qkv + (size_t)b * T * d3 + (size_t)h * hd + 2 * d;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, src + (size_t)(b * H + h) * TT, T, v,
                        d3, 0.0f, out + (size_t)b * T * d + (size_t)h * hd, d);
        }
}

static void attention_bwd(zf_gpt2 *m, float *dqkv, const float *dout, const float *P, const float *qkv, int B, int T,
                          int l, int drop)
{
    const int d = m->c.n_embd, H = m->c.n_head, hd = d / H, d3 = 3 * d;
    const float alpha = 1.0f / sqrtf((float)hd);
    const size_t TT = (size_t)T * T;
    float *dP = m->datt, *attd = m->attd;
    /* dPd = dO V^T */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *v = qkv + (size_t)b * T * d3 + (size_t)h * hd + 2 * d;
            const float *dO = dout + (size_t)b * T * d + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dO, d, v, d3, 0.0f,
                        dP + (size_t)(b * H + h) * TT, T);
        }
    /* through dropout and softmax: dS = alpha * P * (dP - sum(P dP)) */
    const long rows = (long)B * H * T;
    const float p = m->c.attn_pdrop, sc = 1.0f / (1.0f - p);
    const uint64_t key = zf_drop_key(m->seed, site(l, K_ATTN)), ib = m->row0 * (uint64_t)H * TT;
    const uint32_t thr = zf_drop_threshold(p);
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const int t = (int)(r % T);
        const float *pr = P + (size_t)r * T;
        float *g = dP + (size_t)r * T;
        if (drop) {
            float *pd = attd + (size_t)r * T;
#pragma omp simd
            for (int j = 0; j <= t; j++) {
                float k = zf_drop_keep(key, ib + (uint64_t)r * T + j, thr, sc);
                pd[j] = pr[j] * k;
                g[j] *= k;
            }
            for (int j = t + 1; j < T; j++) pd[j] = 0.0f;
        }
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j <= t; j++) s += pr[j] * g[j];
#pragma omp simd
        for (int j = 0; j <= t; j++) g[j] = alpha * pr[j] * (g[j] - s);
        for (int j = t + 1; j < T; j++) g[j] = 0.0f;
    }
    const float *Pd = drop ? attd : P;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const size_t bh = (size_t)(b * H + h) * TT;
            const float *q = qkv + (size_t)b * T * d3 + (size_t)h * hd, *k = q + d;
            const float *dO = dout + (size_t)b * T * d + (size_t)h * hd;
            float *dq = dqkv + (size_t)b * T * d3 + (size_t)h * hd, *dk = dq + d, *dv = dq + 2 * d;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, Pd + bh, T, dO, d, 0.0f, dv, d3);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, dP + bh, T, k, d3, 0.0f, dq, d3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, dP + bh, T, q, d3, 0.0f, dk, d3);
        }
}

static void gelu_fwd(float *y, const float *x, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + ftanh(GELU_K0 * (v + GELU_K1 * v * v * v)));
    }
}

/* dy *= gelu'(x), in place */
static void gelu_bwd(float *dy, const float *x, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float t = ftanh(GELU_K0 * (v + GELU_K1 * v * v * v));
        float g = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K0 * (1.0f + 3.0f * GELU_K1 * v * v);
        dy[i] *= g;
    }
}

/* ------------------------------------------------------------ create */

static int find_off(const zf_param_table *t, const char *name, size_t numel, size_t *off)
{
    const zf_tensor_info *x = zf_param_find(t, name);
    if (!x || x->numel != numel) return -1;
    *off = x->offset;
    return 0;
}

zf_gpt2 *zf_gpt2_create(const zf_gpt2_config *cfg, const zf_param_table *t, float *params, int max_B, int max_T)
{
    if (max_B < 1 || max_T < 1 || max_T > cfg->n_positions || cfg->n_head < 1 || cfg->n_embd % cfg->n_head) return NULL;
    zf_gpt2 *m = zf_xcalloc(1, sizeof *m);
    m->c = *cfg;
    m->p = params;
    m->max_B = max_B;
    m->max_T = max_T;
    const size_t d = (size_t)cfg->n_embd, V = (size_t)cfg->vocab_size, P = (size_t)cfg->n_positions;
    const int L = cfg->n_layer;
    m->lo = zf_xcalloc((size_t)L, sizeof *m->lo);
    int bad = find_off(t, "transformer.wte.weight", V * d, &m->o_wte) | find_off(t, "transformer.wpe.weight", P * d, &m->o_wpe) |
              find_off(t, "transformer.ln_f.weight", d, &m->o_lnfw) | find_off(t, "transformer.ln_f.bias", d, &m->o_lnfb);
    for (int l = 0; l < L && !bad; l++) {
        char n[96];
        layer_off *o = &m->lo[l];
/* one statement each: the name buffer is shared, so no unsequenced "|" chains */
#define F(field, suffix, numel)                                     \
    do {                                                            \
        snprintf(n, sizeof n, "transformer.h.%d." suffix, l);       \
        if (find_off(t, n, numel, &o->field)) bad = 1;              \
    } while (0)
        F(ln1w, "ln_1.weight", d);
        F(ln1b, "ln_1.bias", d);
        F(qkvw, "attn.c_attn.weight", d * 3 * d);
        F(qkvb, "attn.c_attn.bias", 3 * d);
        F(attpw, "attn.c_proj.weight", d * d);
        F(attpb, "attn.c_proj.bias", d);
        F(ln2w, "ln_2.weight", d);
        F(ln2b, "ln_2.bias", d);
        F(fcw, "mlp.c_fc.weight", d * 4 * d);
        F(fcb, "mlp.c_fc.bias", 4 * d);
        F(fcpw, "mlp.c_proj.weight", 4 * d * d);
        F(fcpb, "mlp.c_proj.bias", d);
#undef F
    }
    if (bad) {
        free(m->lo);
        free(m);
        return NULL;
    }
    const size_t N = (size_t)max_B * max_T;
    m->sN = N;
    m->sAtt = (size_t)max_B * cfg->n_head * max_T * max_T;
    m->x0 = amalloc(N * d);
    m->ln1 = amalloc(L * N * d);
    m->ln1_mean = amalloc(L * N);
    m->ln1_rstd = amalloc(L * N);
    m->qkv = amalloc(L * N * 3 * d);
    m->att = amalloc(L * m->sAtt);
    m->atty = amalloc(L * N * d);
    m->res2 = amalloc(L * N * d);
    m->ln2 = amalloc(L * N * d);
    m->ln2_mean = amalloc(L * N);
    m->ln2_rstd = amalloc(L * N);
    m->fch = amalloc(L * N * 4 * d);
    m->fchg = amalloc(L * N * 4 * d);
    m->res3 = amalloc(L * N * d);
    m->lnf = amalloc(N * d);
    m->lnf_mean = amalloc(N);
    m->lnf_rstd = amalloc(N);
    m->logits = amalloc(N * V);
    m->lse = amalloc(N);
    m->lossv = amalloc(N);
    m->tmp = amalloc(N * d);
    m->dres = amalloc(N * d);
    m->dln = amalloc(N * d);
    m->dtmp = amalloc(N * d);
    m->datty = amalloc(N * d);
    m->dqkv = amalloc(N * 3 * d);
    m->dfch = amalloc(N * 4 * d);
    m->datt = amalloc(m->sAtt);
    m->attd = cfg->attn_pdrop > 0.0f ? amalloc(m->sAtt) : NULL;
    m->tok = zf_xmalloc(N * sizeof(int32_t));
    m->tgt = zf_xmalloc(N * sizeof(int32_t));
    return m;
}

void zf_gpt2_set_params(zf_gpt2 *m, float *params) { m->p = params; }
void zf_gpt2_set_row_offset(zf_gpt2 *m, uint64_t row0) { m->row0 = row0; }
int zf_gpt2_unit_count(const zf_gpt2 *m) { return m->c.n_layer + 2; }
void zf_gpt2_set_hooks(zf_gpt2 *m, const zf_gpt2_hooks *h)
{
    if (h) m->hooks = *h;
    else memset(&m->hooks, 0, sizeof m->hooks);
}
const zf_gpt2_config *zf_gpt2_get_config(const zf_gpt2 *m) { return &m->c; }

void zf_gpt2_free(zf_gpt2 *m)
{
    if (!m) return;
    float *bufs[] = {m->x0, m->ln1, m->ln1_mean, m->ln1_rstd, m->qkv, m->att, m->atty, m->res2, m->ln2, m->ln2_mean,
                     m->ln2_rstd, m->fch, m->fchg, m->res3, m->lnf, m->lnf_mean, m->lnf_rstd, m->logits, m->lse,
                     m->lossv, m->tmp, m->dres, m->dln, m->dtmp, m->datty, m->dqkv, m->dfch, m->datt, m->attd};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(m->tok);
    free(m->tgt);
    free(m->lo);
    free(m);
}

/* ----------------------------------------------------------- forward */

float zf_gpt2_forward(zf_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B, int T, int training,
                      uint64_t dropout_seed)
{
    m->fwd_ok = 0;
    if (B < 1 || T < 1 || B > m->max_B || T > m->max_T) {
        zf_error("gpt2 forward: batch %dx%d: expected at most %dx%d", B, T, m->max_B, m->max_T);
        return NAN;
    }
    const int d = m->c.n_embd, V = m->c.vocab_size, L = m->c.n_layer;
    const size_t N = (size_t)B * T, sN = m->sN, D = (size_t)d;
    for (size_t i = 0; i < N; i++) {
        if (tokens[i] < 0 || tokens[i] >= V) {
            zf_error("gpt2 forward: tokens[%zu]: expected an id in [0, %d), got %d", i, V, (int)tokens[i]);
            return NAN;
        }
        if (targets && (targets[i] < -1 || targets[i] >= V)) {
            zf_error("gpt2 forward: targets[%zu]: expected -1 or an id in [0, %d), got %d", i, V, (int)targets[i]);
            return NAN;
        }
    }
    memcpy(m->tok, tokens, N * sizeof(int32_t));
    if (targets) memcpy(m->tgt, targets, N * sizeof(int32_t));
    m->B = B;
    m->T = T;
    m->training = training;
    m->seed = dropout_seed;
    m->has_targets = targets != NULL;
    const float *p = m->p;
    const int de = training && m->c.embd_pdrop > 0.0f, da = training && m->c.attn_pdrop > 0.0f,
              dr = training && m->c.resid_pdrop > 0.0f;

    /* index of this batch's first element in the global batch's masks */
    const uint64_t ib = m->row0 * (uint64_t)T * D;

    /* embeddings */
    h_fetch(m, 0, ZF_GPT2_FORWARD);
    {
        const float *wte = p + m->o_wte, *wpe = p + m->o_wpe;
        const float pe = m->c.embd_pdrop, sc = 1.0f / (1.0f - pe);
        const uint64_t ekey = zf_drop_key(dropout_seed, SITE_EMBD);
        const uint32_t ethr = zf_drop_threshold(pe);
        float *x0 = m->x0;
        const int32_t *tok = m->tok;
#pragma omp parallel for schedule(static)
        for (size_t n = 0; n < N; n++) {
            const float *a = wte + (size_t)tok[n] * D, *b = wpe + (size_t)(n % (size_t)T) * D;
            float *o = x0 + n * D;
            if (de) {
#pragma omp simd
                for (size_t j = 0; j < D; j++) o[j] = (a[j] + b[j]) * zf_drop_keep(ekey, ib + n * D + j, ethr, sc);
            } else {
#pragma omp simd
                for (size_t j = 0; j < D; j++) o[j] = a[j] + b[j];
            }
        }
    }
    h_release(m, 0, ZF_GPT2_FORWARD);
    const float *x = m->x0;
    for (int l = 0; l < L; l++) {
        const layer_off *o = &m->lo[l];
        h_fetch(m, l + 1, ZF_GPT2_FORWARD);
        float *ln1 = m->ln1 + l * sN * D, *qkv = m->qkv + l * sN * 3 * D, *att = m->att + l * m->sAtt;
        float *atty = m->atty + l * sN * D, *res2 = m->res2 + l * sN * D, *ln2 = m->ln2 + l * sN * D;
        float *fch = m->fch + l * sN * 4 * D, *fchg = m->fchg + l * sN * 4 * D, *res3 = m->res3 + l * sN * D;
        layernorm_fwd(ln1, m->ln1_mean + l * sN, m->ln1_rstd + l * sN, x, p + o->ln1w, p + o->ln1b, (int)N, d,
                      m->c.layer_norm_epsilon);
        linear_fwd(qkv, ln1, p + o->qkvw, p + o->qkvb, (int)N, d, 3 * d);
        attention_fwd(m, atty, att, qkv, B, T, l, da);
        linear_fwd(m->tmp, atty, p + o->attpw, p + o->attpb, (int)N, d, d);
        residual_fwd(res2, x, m->tmp, N * D, dr, m->c.resid_pdrop, dropout_seed, site(l, K_ATTRES), ib);
        layernorm_fwd(ln2, m->ln2_mean + l * sN, m->ln2_rstd + l * sN, res2, p + o->ln2w, p + o->ln2b, (int)N, d,
                      m->c.layer_norm_epsilon);
        linear_fwd(fch, ln2, p + o->fcw, p + o->fcb, (int)N, d, 4 * d);
        gelu_fwd(fchg, fch, N * 4 * D);
        linear_fwd(m->tmp, fchg, p + o->fcpw, p + o->fcpb, (int)N, 4 * d, d);
        residual_fwd(res3, res2, m->tmp, N * D, dr, m->c.resid_pdrop, dropout_seed, site(l, K_MLPRES), ib);
        x = res3;
        h_release(m, l + 1, ZF_GPT2_FORWARD);
    }
    h_fetch(m, L + 1, ZF_GPT2_FORWARD);
    layernorm_fwd(m->lnf, m->lnf_mean, m->lnf_rstd, x, p + m->o_lnfw, p + m->o_lnfb, (int)N, d,
                  m->c.layer_norm_epsilon);
    h_release(m, L + 1, ZF_GPT2_FORWARD);
    h_fetch(m, 0, ZF_GPT2_FORWARD);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, V, d, 1.0f, m->lnf, d, p + m->o_wte, d, 0.0f,
                m->logits, V);
    h_release(m, 0, ZF_GPT2_FORWARD);
    m->fwd_ok = 1;
    m->count = 0;
    if (!targets) return 0.0f;

    /* fused log-softmax + NLL per row */
    float *logits = m->logits, *lse = m->lse, *lossv = m->lossv;
    const int32_t *tgt = m->tgt;
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        if (tgt[n] < 0) { lossv[n] = 0.0f; continue; }
        const float *row = logits + n * (size_t)V;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < V; j++) mx = row[j] > mx ? row[j] : mx;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j < V; j++) s += fexp(row[j] - mx);
        lse[n] = mx + logf(s);
        lossv[n] = lse[n] - row[tgt[n]];
    }
    double total = 0.0;
    int count = 0;
    for (size_t n = 0; n < N; n++)
        if (tgt[n] >= 0) { total += lossv[n]; count++; }
    m->count = count;
    return count ? (float)(total / count) : 0.0f;
}

const float *zf_gpt2_logits(const zf_gpt2 *m) { return m->logits; }
int zf_gpt2_target_count(const zf_gpt2 *m) { return m->count; }

/* ---------------------------------------------------------- backward */

/* Every unit's gradients are final (the backward that adds nothing still
 * tells the hooks: data-parallel ranks must issue the same collectives). */
static void grads_all_final(zf_gpt2 *m)
{
    for (int u = m->c.n_layer + 1; u >= 0; u--) h_grads(m, u);
}

void zf_gpt2_backward(zf_gpt2 *m, float *g, float loss_scale)
{
    if (!m->fwd_ok || !m->has_targets) {
        zf_warn("gpt2 backward: no forward with targets to differentiate; gradients unchanged");
        grads_all_final(m);
        return;
    }
    m->fwd_ok = 0; /* logits become their gradient below */
    if (m->count == 0) { /* every target ignored: the loss is constant */
        grads_all_final(m);
        return;
    }
    const int B = m->B, T = m->T, d = m->c.n_embd, V = m->c.vocab_size, L = m->c.n_layer;
    const size_t N = (size_t)B * T, sN = m->sN, D = (size_t)d;
    const float *p = m->p;
    const int de = m->training && m->c.embd_pdrop > 0.0f, da = m->training && m->c.attn_pdrop > 0.0f,
              dr = m->training && m->c.resid_pdrop > 0.0f;
    const uint64_t seed = m->seed, ib = m->row0 * (uint64_t)T * D;

    /* d loss / d logits = (softmax - onehot) * scale / count, in place */
    {
        const float s = loss_scale / (float)m->count;
        float *logits = m->logits;
        const float *lse = m->lse;
        const int32_t *tgt = m->tgt;
#pragma omp parallel for schedule(static)
        for (size_t n = 0; n < N; n++) {
            float *row = logits + n * (size_t)V;
            if (tgt[n] < 0) { memset(row, 0, (size_t)V * sizeof(float)); continue; }
            const float z = lse[n];
#pragma omp simd
            for (int j = 0; j < V; j++) row[j] = fexp(row[j] - z) * s;
            row[tgt[n]] -= s;
        }
    }
    /* tied LM head (wte's gradient is final only after the embeddings) */
    h_fetch(m, 0, ZF_GPT2_BACKWARD);
    h_fetch(m, L + 1, ZF_GPT2_BACKWARD);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, d, (int)N, 1.0f, m->logits, V, m->lnf, d, 1.0f, g + m->o_wte,
                d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, d, V, 1.0f, m->logits, V, p + m->o_wte, d, 0.0f,
                m->dln, d);
    h_release(m, 0, ZF_GPT2_BACKWARD);
    memset(m->dres, 0, N * D * sizeof(float));
    layernorm_bwd(m->dres, g + m->o_lnfw, g + m->o_lnfb, m->dln, m->res3 + (L - 1) * sN * D, p + m->o_lnfw,
                  m->lnf_mean, m->lnf_rstd, (int)N, d);
    h_grads(m, L + 1);
    h_release(m, L + 1, ZF_GPT2_BACKWARD);

    for (int l = L - 1; l >= 0; l--) {
        const layer_off *o = &m->lo[l];
        h_fetch(m, l + 1, ZF_GPT2_BACKWARD);
        const float *in = l == 0 ? m->x0 : m->res3 + (l - 1) * sN * D;
        const float *ln1 = m->ln1 + l * sN * D, *qkv = m->qkv + l * sN * 3 * D, *att = m->att + l * m->sAtt;
        const float *atty = m->atty + l * sN * D, *res2 = m->res2 + l * sN * D, *ln2 = m->ln2 + l * sN * D;
        const float *fch = m->fch + l * sN * 4 * D, *fchg = m->fchg + l * sN * 4 * D;
        /* x3 = x2 + drop(mlp) */
        const float *dy = dropout_bwd(m->dtmp, m->dres, N * D, dr, m->c.resid_pdrop, seed, site(l, K_MLPRES), ib);
        linear_bwd(m->dfch, g + o->fcpw, g + o->fcpb, dy, fchg, p + o->fcpw, (int)N, 4 * d, d);
        gelu_bwd(m->dfch, fch, N * 4 * D);
        linear_bwd(m->dln, g + o->fcw, g + o->fcb, m->dfch, ln2, p + o->fcw, (int)N, d, 4 * d);
        layernorm_bwd(m->dres, g + o->ln2w, g + o->ln2b, m->dln, res2, p + o->ln2w, m->ln2_mean + l * sN,
                      m->ln2_rstd + l * sN, (int)N, d);
        /* x2 = x1 + drop(attn) */
        dy = dropout_bwd(m->dtmp, m->dres, N * D, dr, m->c.resid_pdrop, seed, site(l, K_ATTRES), ib);
        linear_bwd(m->datty, g + o->attpw, g + o->attpb, dy, atty, p + o->attpw, (int)N, d, d);
        attention_bwd(m, m->dqkv, m->datty, att, qkv, B, T, l, da);
        linear_bwd(m->dln, g + o->qkvw, g + o->qkvb, m->dqkv, ln1, p + o->qkvw, (int)N, d, 3 * d);
        layernorm_bwd(m->dres, g + o->ln1w, g + o->ln1b, m->dln, in, p + o->ln1w, m->ln1_mean + l * sN,
                      m->ln1_rstd + l * sN, (int)N, d);
        h_grads(m, l + 1);
        h_release(m, l + 1, ZF_GPT2_BACKWARD);
    }

    /* embeddings: wpe rows by position, wte rows by token (column slices
     * per thread so repeated tokens add up in row order) */
    const float *dx = dropout_bwd(m->dtmp, m->dres, N * D, de, m->c.embd_pdrop, seed, SITE_EMBD, ib);
    float *gwpe = g + m->o_wpe, *gwte = g + m->o_wte;
    const int32_t *tok = m->tok;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            const float *src = dx + ((size_t)b * T + t) * D;
            float *dst = gwpe + (size_t)t * D;
#pragma omp simd
            for (size_t j = 0; j < D; j++) dst[j] += src[j];
        }
    const int nb = (d + CB - 1) / CB;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nb; blk++) {
        const size_t j0 = (size_t)blk * CB, j1 = j0 + CB < D ? j0 + CB : D;
        for (size_t n = 0; n < N; n++) {
            const float *src = dx + n * D;
            float *dst = gwte + (size_t)tok[n] * D;
            for (size_t j = j0; j < j1; j++) dst[j] += src[j];
        }
    }
    h_grads(m, 0);
}

/* ------------------------------------------------------------ KV cache */

#define KV_CHUNK 64 /* prompt rows processed per pass (bounds the scratch) */

struct zf_gpt2_kv {
    int max_T, pos, L, d;
    float *k, *v; /* [L, max_T, d] */
    float *x, *ln, *qkv, *atty, *tmp, *fch, *fchg, *sc, *mean, *rstd, *logits;
};

zf_gpt2_kv *zf_gpt2_kv_create(const zf_gpt2 *m, int max_T)
{
    if (max_T < 1) return NULL;
    if (max_T > m->c.n_positions) max_T = m->c.n_positions;
    zf_gpt2_kv *kv = zf_xcalloc(1, sizeof *kv);
    const size_t d = (size_t)m->c.n_embd, L = (size_t)m->c.n_layer, C = KV_CHUNK;
    kv->max_T = max_T;
    kv->L = (int)L;
    kv->d = (int)d;
    kv->k = amalloc(L * (size_t)max_T * d);
    kv->v = amalloc(L * (size_t)max_T * d);
    kv->x = amalloc(C * d);
    kv->ln = amalloc(C * d);
    kv->qkv = amalloc(C * 3 * d);
    kv->atty = amalloc(C * d);
    kv->tmp = amalloc(C * d);
    kv->fch = amalloc(C * 4 * d);
    kv->fchg = amalloc(C * 4 * d);
    kv->sc = amalloc((size_t)m->c.n_head * C * (size_t)max_T);
    kv->mean = amalloc(C);
    kv->rstd = amalloc(C);
    kv->logits = amalloc((size_t)m->c.vocab_size);
    return kv;
}

void zf_gpt2_kv_free(zf_gpt2_kv *kv)
{
    if (!kv) return;
    float *bufs[] = {kv->k, kv->v, kv->x, kv->ln, kv->qkv, kv->atty, kv->tmp, kv->fch, kv->fchg, kv->sc,
                     kv->mean, kv->rstd, kv->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(kv);
}

void zf_gpt2_kv_reset(zf_gpt2_kv *kv) { kv->pos = 0; }
int zf_gpt2_kv_pos(const zf_gpt2_kv *kv) { return kv->pos; }
int zf_gpt2_kv_max_T(const zf_gpt2_kv *kv) { return kv->max_T; }

/* c new rows at positions kv->pos .. kv->pos+c-1 through all layers. */
static void kv_chunk(zf_gpt2 *m, zf_gpt2_kv *kv, const int32_t *tokens, int c)
{
    const int d = m->c.n_embd, H = m->c.n_head, hd = d / H, d3 = 3 * d, L = m->c.n_layer;
    const size_t D = (size_t)d, MT = (size_t)kv->max_T;
    const float *p = m->p, *wte = p + m->o_wte, *wpe = p + m->o_wpe;
    const int pos = kv->pos, S = pos + c;
    const float alpha = 1.0f / sqrtf((float)hd), eps = m->c.layer_norm_epsilon;
    for (int i = 0; i < c; i++)
        for (int j = 0; j < d; j++)
            kv->x[(size_t)i * D + j] = wte[(size_t)tokens[i] * D + j] + wpe[(size_t)(pos + i) * D + j];
    for (int l = 0; l < L; l++) {
        const layer_off *o = &m->lo[l];
        float *K = kv->k + (size_t)l * MT * D, *Vc = kv->v + (size_t)l * MT * D;
        layernorm_fwd(kv->ln, kv->mean, kv->rstd, kv->x, p + o->ln1w, p + o->ln1b, c, d, eps);
        linear_fwd(kv->qkv, kv->ln, p + o->qkvw, p + o->qkvb, c, d, d3);
        for (int i = 0; i < c; i++) {
            memcpy(K + (size_t)(pos + i) * D, kv->qkv + (size_t)i * d3 + d, D * sizeof(float));
            memcpy(Vc + (size_t)(pos + i) * D, kv->qkv + (size_t)i * d3 + 2 * d, D * sizeof(float));
        }
        for (int h = 0; h < H; h++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c, S, hd, alpha, kv->qkv + (size_t)h * hd, d3,
                        K + (size_t)h * hd, d, 0.0f, kv->sc + (size_t)h * c * S, S);
        float *sc = kv->sc;
#pragma omp parallel for schedule(static)
        for (int r = 0; r < H * c; r++) {
            const int last = pos + r % c; /* causal: keys 0..pos+i */
            float *row = sc + (size_t)r * S;
            float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
            for (int j = 0; j <= last; j++) mx = row[j] > mx ? row[j] : mx;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int j = 0; j <= last; j++) { row[j] = fexp(row[j] - mx); s += row[j]; }
            const float inv = 1.0f / s;
            for (int j = 0; j <= last; j++) row[j] *= inv;
            for (int j = last + 1; j < S; j++) row[j] = 0.0f;
        }
        for (int h = 0; h < H; h++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c, hd, S, 1.0f, kv->sc + (size_t)h * c * S, S,
                        Vc + (size_t)h * hd, d, 0.0f, kv->atty + (size_t)h * hd, d);
        linear_fwd(kv->tmp, kv->atty, p + o->attpw, p + o->attpb, c, d, d);
        for (size_t i = 0; i < (size_t)c * D; i++) kv->x[i] += kv->tmp[i];
        layernorm_fwd(kv->ln, kv->mean, kv->rstd, kv->x, p + o->ln2w, p + o->ln2b, c, d, eps);
        linear_fwd(kv->fch, kv->ln, p + o->fcw, p + o->fcb, c, d, 4 * d);
        gelu_fwd(kv->fchg, kv->fch, (size_t)c * 4 * D);
        linear_fwd(kv->tmp, kv->fchg, p + o->fcpw, p + o->fcpb, c, 4 * d, d);
        for (size_t i = 0; i < (size_t)c * D; i++) kv->x[i] += kv->tmp[i];
    }
    kv->pos += c;
}

const float *zf_gpt2_kv_step(zf_gpt2 *m, zf_gpt2_kv *kv, const int32_t *tokens, int n)
{
    if (n < 1 || kv->pos + n > kv->max_T) return NULL;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->c.vocab_size) return NULL;
    int c = 0;
    for (int i = 0; i < n; i += c) {
        c = n - i < KV_CHUNK ? n - i : KV_CHUNK;
        kv_chunk(m, kv, tokens + i, c);
    }
    /* final LayerNorm of the last row, then logits = wte x */
    const int d = m->c.n_embd;
    const float *last = kv->x + (size_t)(c - 1) * d;
    layernorm_fwd(kv->ln, kv->mean, kv->rstd, last, m->p + m->o_lnfw, m->p + m->o_lnfb, 1, d, m->c.layer_norm_epsilon);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, m->c.vocab_size, d, 1.0f, m->p + m->o_wte, d, kv->ln, 1, 0.0f, kv->logits,
                1);
    return kv->logits;
}
