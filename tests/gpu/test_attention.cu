/* test_attention.cu - GPU test of trainer/cuda/attention.cu (fused causal
 * attention forward/backward) against a float64 host reference written from
 * the math (the T x T matrices are materialised on the host only).
 *
 * Checks, per case: every output element written (outputs are poisoned with
 * NaN bytes before each launch), out / lse / dq / dk / dv within the stated
 * tolerance of the reference, two runs bitwise equal (determinism), and that
 * bf16/fp16 with head dim 64/128 really took the tensor-core path.  Dropout
 * cases use the CPU model's masks (lib/rng.h's dropout draws on the host),
 * so they also check that the GPU draws the same masks; with a mask store
 * (zf_attn_desc.dropout_mask) the stored bits are compared with the host's
 * hash and the backward from the store with the hashing backward (bitwise).
 * Last, a timing table
 * at the GPT-2 size.  Exit 0 pass, 1 fail, 77 no GPU.
 *
 *   tests/gpu/run_attention_tests.sh  (builds with nvcc and runs this)
 *   bin/gpu/test_attention [--no-timing | --quick | --sanitize | --timing-only | --dropout-timing] */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "attention.cuh"
#include "rng.h"

#include "log.h"

#define CK(call)                                                                                                  \
    do {                                                                                                           \
        cudaError_t e_ = (call);                                                                                   \
        if (e_ != cudaSuccess) {                                                                                   \
            fprintf(stderr, "test_attention: %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                                               \
        }                                                                                                          \
    } while (0)

static const char *dt_name(zf_attn_dtype dt)
{
    return dt == ZF_ATTN_F32 ? "fp32" : dt == ZF_ATTN_BF16 ? "bf16" : "fp16";
}
static size_t dt_size(zf_attn_dtype dt) { return dt == ZF_ATTN_F32 ? 4 : 2; }

/* Tolerances on max|gpu - ref| / max|ref| per tensor (the reference gets the
 * inputs already rounded to the dtype).  fp32 runs the generic path in fp32
 * arithmetic; bf16 (8-bit mantissa) and fp16 (11-bit) round P and dS to the
 * dtype before the tensor-core products and round every output once.  lse is
 * fp32 arithmetic in every dtype.  Seen on an H100 (2026-11, all cases here):
 * fp32 out <= 2.5e-6, grads <= 2.6e-6; fp16 out <= 3.5e-4, grads <= 7.1e-4;
 * bf16 out <= 3.0e-3, grads <= 4.8e-3; lse <= 2.8e-7.  The limits are about
 * 3x those, so a real indexing or masking error (errors of order 1) or a
 * lost rescale (order 1e-2 and up) cannot pass. */
struct Tol {
    double fwd, lse, bwd;
};
static Tol tol_for(zf_attn_dtype dt)
{
    if (dt == ZF_ATTN_F32) return {1e-5, 2e-6, 1e-5};
    if (dt == ZF_ATTN_F16) return {1.5e-3, 2e-6, 2.5e-3};
    return {1e-2, 2e-6, 1.5e-2};
}

static float round_to(float x, zf_attn_dtype dt)
{
    if (dt == ZF_ATTN_BF16) return __bfloat162float(__float2bfloat16_rn(x));
    if (dt == ZF_ATTN_F16) return __half2float(__float2half_rn(x));
    return x;
}

static void *upload(const std::vector<float> &v, zf_attn_dtype dt)
{
    const size_t n = v.size(), es = dt_size(dt);
    std::vector<unsigned char> buf(n * es);
    for (size_t i = 0; i < n; i++) {
        if (dt == ZF_ATTN_F32) memcpy(&buf[i * 4], &v[i], 4);
        else if (dt == ZF_ATTN_BF16) {
            __nv_bfloat16 h = __float2bfloat16_rn(v[i]);
            memcpy(&buf[i * 2], &h, 2);
        } else {
            __half h = __float2half_rn(v[i]);
            memcpy(&buf[i * 2], &h, 2);
        }
    }
    void *d = NULL;
    CK(cudaMalloc(&d, n * es));
    CK(cudaMemcpy(d, buf.data(), n * es, cudaMemcpyHostToDevice));
    return d;
}

static std::vector<double> download(const void *d, size_t n, zf_attn_dtype dt)
{
    const size_t es = dt_size(dt);
    std::vector<unsigned char> buf(n * es);
    CK(cudaMemcpy(buf.data(), d, n * es, cudaMemcpyDeviceToHost));
    std::vector<double> r(n);
    for (size_t i = 0; i < n; i++) {
        if (dt == ZF_ATTN_F32) {
            float f;
            memcpy(&f, &buf[i * 4], 4);
            r[i] = f;
        } else if (dt == ZF_ATTN_BF16) {
            __nv_bfloat16 h;
            memcpy(&h, &buf[i * 2], 2);
            r[i] = __bfloat162float(h);
        } else {
            __half h;
            memcpy(&h, &buf[i * 2], 2);
            r[i] = __half2float(h);
        }
    }
    return r;
}

static std::vector<unsigned char> bytes_of(const void *d, size_t nbytes)
{
    std::vector<unsigned char> b(nbytes);
    CK(cudaMemcpy(b.data(), d, nbytes, cudaMemcpyDeviceToHost));
    return b;
}

static double normal(zf_rng *r)
{
    double u1 = zf_rng_uniform(r), u2 = zf_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ------------------------------------------------------- host reference */

struct Ref {
    std::vector<double> out, lse, dqkv;
};

static void ref_head(const std::vector<float> &qkv, const std::vector<float> &dout, int B, int T, int C, int NH,
                     float p, uint64_t seed, uint64_t site, int b, int h, Ref &R)
{
    (void)B;
    const int hd = C / NH, C3 = 3 * C;
    const double scale = 1.0 / sqrt((double)hd);
    const double psc = p > 0.0f ? 1.0 / (1.0 - (double)p) : 1.0;
    std::vector<double> P((size_t)T * T, 0.0), K((size_t)T * T, 0.0), G((size_t)T * T, 0.0);
    auto q = [&](int t, int e) { return (double)qkv[((size_t)b * T + t) * C3 + (size_t)h * hd + e]; };
    auto k = [&](int t, int e) { return (double)qkv[((size_t)b * T + t) * C3 + C + (size_t)h * hd + e]; };
    auto v = [&](int t, int e) { return (double)qkv[((size_t)b * T + t) * C3 + 2 * C + (size_t)h * hd + e]; };
    auto dO = [&](int t, int e) { return (double)dout[((size_t)b * T + t) * C + (size_t)h * hd + e]; };
    const uint64_t r0 = (uint64_t)(b * NH + h) * T;
    for (int i = 0; i < T; i++) {
        double mx = -INFINITY;
        for (int j = 0; j <= i; j++) {
            double s = 0.0;
            for (int e = 0; e < hd; e++) s += q(i, e) * k(j, e);
            s *= scale;
            P[(size_t)i * T + j] = s;
            mx = std::max(mx, s);
        }
        double sum = 0.0;
        for (int j = 0; j <= i; j++) sum += exp(P[(size_t)i * T + j] - mx);
        R.lse[((size_t)b * NH + h) * T + i] = mx + log(sum);
        for (int j = 0; j <= i; j++) {
            P[(size_t)i * T + j] = exp(P[(size_t)i * T + j] - mx) / sum;
            K[(size_t)i * T + j] =
                p > 0.0f ? (zf_drop_u16(zf_drop_key(seed, site), (r0 + i) * (uint64_t)T + j) >= zf_drop_threshold(p) ? psc : 0.0) : 1.0;
        }
        for (int e = 0; e < hd; e++) {
            double o = 0.0;
            for (int j = 0; j <= i; j++) o += P[(size_t)i * T + j] * K[(size_t)i * T + j] * v(j, e);
            R.out[((size_t)b * T + i) * C + (size_t)h * hd + e] = o;
        }
        /* g = dP * mask; dS = P (g - sum_j P g) * scale */
        double Dsum = 0.0;
        for (int j = 0; j <= i; j++) {
            double dp = 0.0;
            for (int e = 0; e < hd; e++) dp += dO(i, e) * v(j, e);
            const double g = dp * K[(size_t)i * T + j];
            G[(size_t)i * T + j] = g;
            Dsum += P[(size_t)i * T + j] * g;
        }
        for (int j = 0; j <= i; j++)
            G[(size_t)i * T + j] = P[(size_t)i * T + j] * (G[(size_t)i * T + j] - Dsum) * scale;
    }
    for (int t = 0; t < T; t++)
        for (int e = 0; e < hd; e++) {
            double dq = 0.0, dk = 0.0, dv = 0.0;
            for (int j = 0; j <= t; j++) dq += G[(size_t)t * T + j] * k(j, e);
            for (int i = t; i < T; i++) {
                dk += G[(size_t)i * T + t] * q(i, e);
                dv += P[(size_t)i * T + t] * K[(size_t)i * T + t] * dO(i, e);
            }
            const size_t base = ((size_t)b * T + t) * C3 + (size_t)h * hd + e;
            R.dqkv[base] = dq;
            R.dqkv[base + C] = dk;
            R.dqkv[base + 2 * C] = dv;
        }
}

static Ref reference(const std::vector<float> &qkv, const std::vector<float> &dout, int B, int T, int C, int NH,
                     float p, uint64_t seed, uint64_t site)
{
    Ref R;
    R.out.assign((size_t)B * T * C, 0.0);
    R.lse.assign((size_t)B * NH * T, 0.0);
    R.dqkv.assign((size_t)B * T * 3 * C, 0.0);
    std::atomic<int> next(0);
    unsigned nth = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> th;
    for (unsigned w = 0; w < nth; w++)
        th.emplace_back([&]() {
            for (int bh; (bh = next++) < B * NH;) ref_head(qkv, dout, B, T, C, NH, p, seed, site, bh / NH, bh % NH, R);
        });
    for (auto &t : th) t.join();
    return R;
}

/* max|a-r| / max|r| over the elements selected by sel(i); -1 if a NaN/Inf */
template <typename S>
static double maxrel(const std::vector<double> &a, const std::vector<double> &r, S sel, double *frob)
{
    double me = 0.0, mr = 0.0, se = 0.0, sr = 0.0;
    for (size_t i = 0; i < r.size(); i++) {
        if (!sel(i)) continue;
        if (!std::isfinite(a[i])) return -1.0;
        const double d = fabs(a[i] - r[i]);
        me = std::max(me, d);
        mr = std::max(mr, fabs(r[i]));
        se += d * d;
        sr += r[i] * r[i];
    }
    if (frob) *frob = sr > 0 ? sqrt(se / sr) : sqrt(se);
    return mr > 0 ? me / mr : me;
}

/* ------------------------------------------------------------- one case */

struct Case {
    int B, T, NH, hd;
    zf_attn_dtype dt;
    int force_generic;
    float p;
    double amp; /* std of q and k (logit spread) */
    /* dropout mask store (zf_attn_desc.dropout_mask): 0 none, 1 kept by the
     * forward and read by the backward, 2 the same with the forward forced
     * onto the generic path (its store is filled by a separate kernel) */
    int mask;
};

static int g_fail = 0;

static void run_case(const Case &c, uint64_t data_seed)
{
    const int B = c.B, T = c.T, NH = c.NH, hd = c.hd, C = NH * hd;
    const size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, nlse = (size_t)B * NH * T;
    zf_rng rng;
    zf_rng_seed(&rng, data_seed, 7);
    std::vector<float> qkv(nqkv), dout(nout);
    for (size_t i = 0; i < nqkv; i++) {
        const int col = (int)(i % (3 * C));
        const double a = col < 2 * C ? c.amp : 1.0;
        qkv[i] = round_to((float)(a * normal(&rng)), c.dt);
    }
    for (size_t i = 0; i < nout; i++) dout[i] = round_to((float)normal(&rng), c.dt);

    zf_attn_desc d;
    memset(&d, 0, sizeof d);
    d.B = B;
    d.T = T;
    d.C = C;
    d.NH = NH;
    d.dtype = c.dt;
    d.dropout_p = c.p;
    d.dropout_seed = 0x5eed0000ULL + data_seed;
    d.dropout_site = 5; /* the CPU model's site(1, K_ATTN) */
    d.force_generic = c.force_generic;

    void *dqkv_in = upload(qkv, c.dt), *ddout = upload(dout, c.dt);
    void *dout_o = NULL, *ddqkv = NULL, *ws = NULL;
    float *dlse = NULL;
    const size_t es = dt_size(c.dt);
    CK(cudaMalloc(&dout_o, nout * es));
    CK(cudaMalloc(&ddqkv, nqkv * es));
    CK(cudaMalloc(&dlse, nlse * 4));
    CK(cudaMalloc(&ws, std::max<size_t>(zf_attn_backward_workspace(&d), 4)));
    uint64_t *dmask = NULL;
    const size_t mbytes = zf_attn_dropout_mask_bytes(&d);
    if (c.mask) {
        CK(cudaMalloc(&dmask, mbytes));
        d.dropout_mask = dmask;
    }
    zf_attn_desc dfw = d; /* the forward's desc */
    if (c.mask == 2) dfw.force_generic = 1;
    const int fast = zf_attn_uses_fast_path(&d, dqkv_in, ddout, dout_o, ddqkv);
    const int want_fast = !c.force_generic && c.dt != ZF_ATTN_F32 && (hd == 64 || hd == 128);

    std::vector<unsigned char> b_out[2], b_lse[2], b_dqkv[2];
    zf_err err;
    bool ok = true;
    for (int run = 0; run < 2; run++) {
        CK(cudaMemset(dout_o, 0xFF, nout * es)); /* NaN in every dtype */
        CK(cudaMemset(dlse, 0xFF, nlse * 4));
        CK(cudaMemset(ddqkv, 0xFF, nqkv * es));
        CK(cudaMemset(ws, 0xFF, std::max<size_t>(zf_attn_backward_workspace(&d), 4)));
        if (dmask) CK(cudaMemset(dmask, 0xFF, mbytes)); /* all-kept: a word the forward missed shows */
        if (zf_attn_forward(&dfw, dout_o, dlse, dqkv_in, 0, &err)) {
            printf("FAIL forward returned -1: %s\n", err.msg);
            ok = false;
            break;
        }
        CK(cudaDeviceSynchronize());
        if (zf_attn_backward(&d, ddqkv, ddout, dqkv_in, dout_o, dlse, ws, 0, &err)) {
            printf("FAIL backward returned -1: %s\n", err.msg);
            ok = false;
            break;
        }
        CK(cudaDeviceSynchronize());
        b_out[run] = bytes_of(dout_o, nout * es);
        b_lse[run] = bytes_of(dlse, nlse * 4);
        b_dqkv[run] = bytes_of(ddqkv, nqkv * es);
    }
    /* the store: the forward's bits are the hash's for every key <= query,
     * and the backward reading them is bitwise the backward hashing again */
    bool mask_ok = true;
    if (ok && c.mask) {
        const int nkw = (T + 63) / 64;
        std::vector<uint64_t> hm(mbytes / 8);
        CK(cudaMemcpy(hm.data(), dmask, mbytes, cudaMemcpyDeviceToHost));
        long long wrong = 0;
        const uint64_t key = zf_drop_key(d.dropout_seed, d.dropout_site);
        for (int bh = 0; bh < B * NH; bh++)
            for (int t = 0; t < T; t++)
                for (int k = 0; k <= t; k++) {
                    const uint64_t w = hm[((size_t)bh * nkw + k / 64) * T + t];
                    const int bit = (int)((w >> (k % 64)) & 1u);
                    const uint64_t idx = ((uint64_t)bh * T + t) * T + k;
                    wrong += bit != (zf_drop_u16(key, idx) >= zf_drop_threshold(c.p) ? 1 : 0);
                }
        zf_attn_desc dh = d;
        dh.dropout_mask = NULL;
        CK(cudaMemset(ddqkv, 0xFF, nqkv * es));
        if (zf_attn_backward(&dh, ddqkv, ddout, dqkv_in, dout_o, dlse, ws, 0, &err)) {
            printf("FAIL backward (hash) returned -1: %s\n", err.msg);
            mask_ok = false;
        }
        CK(cudaDeviceSynchronize());
        const bool same = bytes_of(ddqkv, nqkv * es) == b_dqkv[1];
        if (wrong || !same) {
            printf("FAIL mask store: %lld wrong bits; backward from the store %s the hashing one\n", wrong,
                   same ? "equals" : "DIFFERS FROM");
            mask_ok = false;
        }
        CK(cudaMemcpy(ddqkv, b_dqkv[1].data(), nqkv * es, cudaMemcpyHostToDevice)); /* what is checked below */
    }
    char line[1024];
    int n = snprintf(line, sizeof line, "%-4s %-7s B=%d T=%-4d NH=%-2d hd=%-3d p=%.2f amp=%.0f%s |", dt_name(c.dt),
                     fast ? "fast" : "generic", B, T, NH, hd, (double)c.p, c.amp,
                     c.mask == 1 ? " mask" : c.mask == 2 ? " mask(generic fwd)" : "");
    if (ok) {
        const Ref R = reference(qkv, dout, B, T, C, NH, c.p, d.dropout_seed, d.dropout_site);
        const std::vector<double> go = download(dout_o, nout, c.dt), gd = download(ddqkv, nqkv, c.dt);
        std::vector<double> gl(nlse);
        {
            std::vector<float> f(nlse);
            memcpy(f.data(), b_lse[1].data(), nlse * 4);
            for (size_t i = 0; i < nlse; i++) gl[i] = f[i];
        }
        const Tol tol = tol_for(c.dt);
        double fo, fl, fq, fk, fv;
        const double eo = maxrel(go, R.out, [](size_t) { return true; }, &fo);
        const double el = maxrel(gl, R.lse, [](size_t) { return true; }, &fl);
        const double eq = maxrel(gd, R.dqkv, [&](size_t i) { return (int)(i % (3 * C)) < C; }, &fq);
        const double ek = maxrel(gd, R.dqkv, [&](size_t i) { int k = (int)(i % (3 * C)); return k >= C && k < 2 * C; }, &fk);
        const double ev = maxrel(gd, R.dqkv, [&](size_t i) { return (int)(i % (3 * C)) >= 2 * C; }, &fv);
        const bool det = b_out[0] == b_out[1] && b_lse[0] == b_lse[1] && b_dqkv[0] == b_dqkv[1];
        auto bad = [](double e, double t) { return e < 0 || e > t; };
        const bool pass_fwd = !bad(eo, tol.fwd) && !bad(el, tol.lse);
        const bool pass_bwd = !bad(eq, tol.bwd) && !bad(ek, tol.bwd) && !bad(ev, tol.bwd);
        const bool pass_path = fast == want_fast;
        ok = pass_fwd && pass_bwd && det && pass_path && mask_ok;
        n += snprintf(line + n, sizeof line - n,
                      " out %.1e lse %.1e dq %.1e dk %.1e dv %.1e | frob out %.1e dq %.1e dk %.1e dv %.1e | %s%s",
                      eo, el, eq, ek, ev, fo, fq, fk, fv, det ? "det" : "NONDETERMINISTIC",
                      pass_path ? "" : " WRONG-PATH");
        (void)fl;
    }
    printf("%s %s\n", ok ? "PASS" : "FAIL", line);
    fflush(stdout);
    if (!ok) g_fail++;
    CK(cudaFree(dqkv_in));
    CK(cudaFree(ddout));
    CK(cudaFree(dout_o));
    CK(cudaFree(ddqkv));
    CK(cudaFree(dlse));
    CK(cudaFree(ws));
    if (dmask) CK(cudaFree(dmask));
}

/* ---------------------------------------------------------------- timing */

static double median(std::vector<float> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static void time_case(int B, int T, int NH, int hd, zf_attn_dtype dt, int force_generic, float p, int mask = 0)
{
    const int C = NH * hd, SETS = 4, REPS = 30;
    const size_t es = dt_size(dt), nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, nlse = (size_t)B * NH * T;
    zf_attn_desc d;
    memset(&d, 0, sizeof d);
    d.B = B;
    d.T = T;
    d.C = C;
    d.NH = NH;
    d.dtype = dt;
    d.dropout_p = p;
    d.dropout_seed = 99;
    d.dropout_site = 1;
    d.force_generic = force_generic;
    /* several input sets, rotated, so repeated runs do not all hit in L2 */
    void *qkv[SETS], *dout[SETS], *out[SETS], *dqkv[SETS];
    float *lse[SETS];
    zf_rng rng;
    zf_rng_seed(&rng, 4242, 1);
    for (int s = 0; s < SETS; s++) {
        std::vector<float> a(nqkv), g(nout);
        for (auto &x : a) x = (float)normal(&rng);
        for (auto &x : g) x = (float)normal(&rng);
        qkv[s] = upload(a, dt);
        dout[s] = upload(g, dt);
        CK(cudaMalloc(&out[s], nout * es));
        CK(cudaMalloc(&dqkv[s], nqkv * es));
        CK(cudaMalloc(&lse[s], nlse * 4));
    }
    void *ws;
    CK(cudaMalloc(&ws, zf_attn_backward_workspace(&d)));
    uint64_t *dmask = NULL;
    if (mask) {
        CK(cudaMalloc(&dmask, zf_attn_dropout_mask_bytes(&d)));
        d.dropout_mask = dmask;
    }
    zf_err err;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> tf, tb;
    for (int it = 0; it < 5 + REPS; it++) {
        const int s = it % SETS;
        float ms;
        CK(cudaEventRecord(e0));
        if (zf_attn_forward(&d, out[s], lse[s], qkv[s], 0, &err)) {
            printf("FAIL timing forward: %s\n", err.msg);
            g_fail++;
            return;
        }
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (it >= 5) tf.push_back(ms);
        CK(cudaEventRecord(e0));
        if (zf_attn_backward(&d, dqkv[s], dout[s], qkv[s], out[s], lse[s], ws, 0, &err)) {
            printf("FAIL timing backward: %s\n", err.msg);
            g_fail++;
            return;
        }
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (it >= 5) tb.push_back(ms);
    }
    CK(cudaGetLastError());
    /* causal: half of the 4*B*NH*T^2*hd of two full products; backward 5 products */
    const double ffl = 2.0 * B * NH * (double)T * T * hd, bfl = 2.5 * ffl;
    const double mf = median(tf), mb = median(tb);
    printf("TIME %-4s %-7s B=%d T=%d NH=%d hd=%d p=%.2f%s: forward %.3f ms (%.1f TFLOP/s)  backward %.3f ms (%.1f TFLOP/s)\n",
           dt_name(dt), zf_attn_uses_fast_path(&d, qkv[0], out[0], NULL, NULL) ? "fast" : "generic", B, T, NH, hd,
           (double)p, mask ? " mask store" : "", mf, ffl / mf * 1e-9, mb, bfl / mb * 1e-9);
    fflush(stdout);
    for (int s = 0; s < SETS; s++) {
        CK(cudaFree(qkv[s]));
        CK(cudaFree(dout[s]));
        CK(cudaFree(out[s]));
        CK(cudaFree(dqkv[s]));
        CK(cudaFree(lse[s]));
    }
    CK(cudaFree(ws));
    if (dmask) CK(cudaFree(dmask));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
}

/* Bad descriptors are refused with a message, not launched. */
static void check_errors(void)
{
    zf_attn_desc d;
    memset(&d, 0, sizeof d);
    d.B = 1;
    d.T = 4;
    d.C = 10;
    d.NH = 3;
    d.dtype = ZF_ATTN_BF16;
    zf_err err;
    err.msg[0] = 0;
    int bad = 0;
    void *dummy = (void *)0x1000;
    if (zf_attn_forward(&d, dummy, (float *)dummy, dummy, 0, &err) != -1 || !strstr(err.msg, "C")) bad++;
    d.C = 12;
    d.dropout_p = 1.0f;
    if (zf_attn_forward(&d, dummy, (float *)dummy, dummy, 0, &err) != -1 || !strstr(err.msg, "dropout_p")) bad++;
    d.dropout_p = 0.0f;
    d.C = 3 * 300;
    if (zf_attn_forward(&d, dummy, (float *)dummy, dummy, 0, &err) != -1 || !strstr(err.msg, "head dim")) bad++;
    printf("%s bad descriptors refused with a message (last: %s)\n", bad ? "FAIL" : "PASS", err.msg);
    if (bad) g_fail++;
}

/* A few small cases that reach every kernel, for compute-sanitizer's
 * slower tools (racecheck). */
static void run_sanitize_cases(void)
{
    run_case({2, 100, 2, 64, ZF_ATTN_BF16, 0, 0.0f, 1.0}, 101);
    run_case({2, 100, 2, 128, ZF_ATTN_BF16, 0, 0.0f, 1.0}, 102);
    run_case({1, 150, 2, 64, ZF_ATTN_F16, 0, 0.1f, 1.0}, 103);
    run_case({1, 70, 2, 128, ZF_ATTN_F16, 0, 0.1f, 1.0}, 104);
    run_case({2, 50, 2, 12, ZF_ATTN_F32, 0, 0.1f, 1.0}, 105);
    run_case({1, 50, 2, 48, ZF_ATTN_BF16, 0, 0.0f, 1.0}, 106);
}

/* The correctness cases; quick: the small ones only. */
static void run_checks(int quick)
{
    uint64_t seed = 1;
    check_errors();
    const zf_attn_dtype dts[3] = {ZF_ATTN_F32, ZF_ATTN_BF16, ZF_ATTN_F16};
    const int Ts[3] = {17, 100, 257}, hds[3] = {12, 64, 128};
    for (int di = 0; di < 3; di++)
        for (int hi = 0; hi < 3; hi++)
            for (int ti = 0; ti < 3; ti++) run_case({3, Ts[ti], 3, hds[hi], dts[di], 0, 0.0f, 1.0}, seed++);
    /* generic path in the half types; edge sizes; large logits; head dim 48 */
    run_case({3, 100, 3, 64, ZF_ATTN_BF16, 1, 0.0f, 1.0}, seed++);
    run_case({3, 257, 3, 128, ZF_ATTN_F16, 1, 0.0f, 1.0}, seed++);
    run_case({2, 100, 4, 48, ZF_ATTN_BF16, 0, 0.0f, 1.0}, seed++);
    run_case({1, 1, 2, 64, ZF_ATTN_BF16, 0, 0.0f, 1.0}, seed++);
    run_case({2, 128, 2, 64, ZF_ATTN_F16, 0, 0.0f, 1.0}, seed++);
    run_case({2, 200, 2, 64, ZF_ATTN_BF16, 0, 0.0f, 3.0}, seed++);
    run_case({2, 200, 2, 128, ZF_ATTN_F16, 0, 0.0f, 3.0}, seed++);
    run_case({2, 200, 2, 64, ZF_ATTN_F32, 0, 0.0f, 3.0}, seed++);
    /* attention dropout: the CPU model's masks */
    run_case({3, 100, 3, 12, ZF_ATTN_F32, 0, 0.1f, 1.0}, seed++);
    run_case({3, 257, 3, 64, ZF_ATTN_F32, 0, 0.1f, 1.0}, seed++);
    run_case({3, 257, 3, 64, ZF_ATTN_BF16, 0, 0.1f, 1.0}, seed++);
    run_case({3, 100, 3, 128, ZF_ATTN_F16, 0, 0.3f, 1.0}, seed++);
    run_case({3, 100, 3, 64, ZF_ATTN_BF16, 1, 0.1f, 1.0}, seed++);
    /* the mask store: T not a multiple of 64, both head dims, generic forward */
    run_case({3, 257, 3, 64, ZF_ATTN_BF16, 0, 0.1f, 1.0, 1}, seed++);
    run_case({2, 130, 3, 128, ZF_ATTN_F16, 0, 0.3f, 1.0, 1}, seed++);
    run_case({2, 100, 2, 64, ZF_ATTN_BF16, 0, 0.1f, 1.0, 2}, seed++);
    run_case({2, 64, 2, 128, ZF_ATTN_BF16, 0, 0.5f, 1.0, 1}, seed++);
    if (quick) return;
    /* GPT-2 124M size */
    run_case({4, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.0f, 1.0}, seed++);
    run_case({4, 1024, 12, 64, ZF_ATTN_F16, 0, 0.0f, 1.0}, seed++);
    run_case({4, 1024, 12, 64, ZF_ATTN_F32, 0, 0.0f, 1.0}, seed++);
    run_case({4, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.1f, 1.0}, seed++);
    run_case({4, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.1f, 1.0, 1}, seed++);
}

int main(int argc, char **argv)
{
    /* --no-timing: checks only; --quick: the small checks only; --sanitize:
     * six small cases (under compute-sanitizer); --timing-only: the timing
     * table only (for ncu) */
    int timing = 1, quick = 0, checks = 1, sanitize = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-timing")) timing = 0;
        else if (!strcmp(argv[i], "--quick")) quick = 1, timing = 0;
        else if (!strcmp(argv[i], "--sanitize")) sanitize = 1, checks = 0, timing = 0;
        else if (!strcmp(argv[i], "--timing-only")) checks = 0;
        else if (!strcmp(argv[i], "--dropout-timing")) checks = 0, timing = 2;
        else {
            fprintf(stderr, "usage: %s [--no-timing | --quick | --sanitize | --timing-only | --dropout-timing]\n", argv[0]);
            return 2;
        }
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("SKIP test_attention: no CUDA device\n");
        return 77;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    printf("tolerances (max|err|/max|ref|): fp32 fwd %.1e bwd %.1e; fp16 fwd %.1e bwd %.1e; bf16 fwd %.1e bwd %.1e; "
           "lse %.1e\n",
           tol_for(ZF_ATTN_F32).fwd, tol_for(ZF_ATTN_F32).bwd, tol_for(ZF_ATTN_F16).fwd, tol_for(ZF_ATTN_F16).bwd,
           tol_for(ZF_ATTN_BF16).fwd, tol_for(ZF_ATTN_BF16).bwd, tol_for(ZF_ATTN_BF16).lse);

    if (checks) run_checks(quick);
    if (sanitize) run_sanitize_cases();
    if (timing == 2) { /* the dropout rows only */
        time_case(4, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.0f);
        time_case(4, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.1f);
        time_case(4, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.1f, 1);
    } else if (timing) {
        time_case(4, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.0f);
        time_case(4, 1024, 12, 64, ZF_ATTN_F16, 0, 0.0f);
        time_case(4, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.1f);
        time_case(4, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.1f, 1);
        time_case(4, 1024, 16, 128, ZF_ATTN_BF16, 0, 0.0f);
        /* the training sizes of the GPU bench (GPT-2 124M B32, 350M B16) */
        time_case(32, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.0f);
        time_case(32, 1024, 12, 64, ZF_ATTN_BF16, 0, 0.1f, 1);
        time_case(16, 1024, 16, 64, ZF_ATTN_BF16, 0, 0.1f, 1);
        time_case(4, 1024, 12, 64, ZF_ATTN_BF16, 1, 0.0f);
        time_case(4, 1024, 12, 64, ZF_ATTN_F32, 0, 0.0f);
    }
    if (g_fail) {
        printf("test_attention: %d FAILED\n", g_fail);
        return 1;
    }
    printf("test_attention: all passed\n");
    return 0;
}
