/* test_kernels.cu - GPU test of trainer/cuda/gpt2_kernels.cu and matmul.cu.
 *
 * For each kernel, each element type (fp32, bf16, fp16) and C in {36, 100}
 * (V = 317, B*T = 3*29 = 87 rows: no size is a multiple of 32), C = 64 for
 * the eight-elements-per-access paths and C = 1600 for LayerNorm and the
 * embeddings (wide rows): random inputs, outputs poisoned with NaN (0xFF
 * bytes) before the launch, results
 * compared with a float64 reference written here from the math of the CPU
 * model (trainer/gpt2_cpu.c), and every launch run twice to check that the
 * outputs are bitwise equal.  Inputs are drawn, rounded to the element type,
 * and the reference uses the rounded values, so only the kernels' own
 * arithmetic is measured.  Accumulated outputs (+=) start from random values
 * of the size of the increment, so a missing or doubled increment fails.
 *
 * Error = max|out - ref| / max|ref| per tensor (tests/README); NaN fails.
 * Tolerances (u = unit roundoff: fp32 2^-24, bf16 2^-8, fp16 2^-11):
 *   outputs stored in fp32 from fp32 arithmetic:         1e-5 (all types)
 *   outputs stored in the element type, one rounding:    fp32 1e-5,
 *                                                        bf16 8e-3 (2u), fp16 1e-3 (2u)
 *   fp32 products of bf16/fp16 inputs on tensor cores:   5e-5 (fp32 accumulation of
 *                                                        exact products; 1e-5 for fp32)
 *   classifier losses from such products:                1e-4 (bf16/fp16)
 *   classifier gradients (dlogits rounded to the type,
 *   then summed over V):                                 bf16 2e-2, fp16 3e-3
 *   AdamW: bitwise equal to a float replica of torch's operation order
 *   (lib/adamw.h); moments within 1e-6 of float64, the new parameters within
 *   two fp32 ulps (roundings at p's scale) + 1e-6 of the step.
 * Exit 0 if every check passes, 1 otherwise, 77 without a GPU.
 * "test_kernels --bench" then also times each kernel at GPT-2 124M sizes. */
#include "gpt2_kernels.cuh"
#include "rng.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#define CK(call)                                                                                                      \
    do {                                                                                                              \
        cudaError_t e_ = (call);                                                                                      \
        if (e_ != cudaSuccess) {                                                                                      \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));                  \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

static zf_gk *G;
static zf_matmul_ctx *MM;
static cudaStream_t S;
static int nchecks, nfail;
static std::vector<std::string> failures;
/* worst error per check name and dtype, and the tolerance, for the table */
static std::map<std::string, double> worst[3], tolof[3];
static std::vector<std::string> order;

#define GK(call)                                                                                                      \
    do {                                                                                                              \
        if ((call) != 0) {                                                                                            \
            char b_[900];                                                                                             \
            snprintf(b_, sizeof b_, "%s:%d: %s failed: %s / %s", __FILE__, __LINE__, #call, zf_gk_error(G),          \
                     zf_matmul_error(MM));                                                                            \
            fprintf(stderr, "%s\n", b_);                                                                              \
            failures.push_back(b_);                                                                                   \
            nfail++;                                                                                                  \
        }                                                                                                             \
    } while (0)

/* ---------------------------------------------------------------- types */

template <typename T> struct Ty;
template <> struct Ty<float> {
    static constexpr zf_gpu_dtype dt = ZF_GPU_F32;
    static constexpr double tol = 1e-5, tc = 1e-5, loss = 1e-5, grad = 1e-5;
    static constexpr double sloss = 1e-5, sgrad = 1e-5; /* classifier_fwd_save: logits stay fp32 */
    static float to_f(float x) { return x; }
    static float from_f(float x) { return x; }
};
template <> struct Ty<__nv_bfloat16> {
    static constexpr zf_gpu_dtype dt = ZF_GPU_BF16;
    static constexpr double tol = 8e-3, tc = 5e-5, loss = 1e-4, grad = 2e-2;
    /* classifier_fwd_save rounds the logits to bf16 (|logit| up to ~30 here:
     * ~0.06 absolute, so probabilities move by up to ~6% relative).  Seen on
     * an H100: losses 1.7e-3, dsave/dh 8.8e-3 */
    static constexpr double sloss = 1e-2, sgrad = 6e-2;
    static float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
    static __nv_bfloat16 from_f(float x) { return __float2bfloat16_rn(x); }
};
template <> struct Ty<__half> {
    static constexpr zf_gpu_dtype dt = ZF_GPU_F16;
    static constexpr double tol = 1e-3, tc = 5e-5, loss = 1e-4, grad = 3e-3;
    /* logits rounded to fp16 (8x finer than bf16); seen: losses 2.4e-4, dsave 1.4e-3 */
    static constexpr double sloss = 2e-3, sgrad = 1e-2;
    static float to_f(__half x) { return __half2float(x); }
    static __half from_f(float x) { return __float2half_rn(x); }
};

/* ------------------------------------------------------------- buffers */

struct Dev {
    void *p = nullptr;
    size_t n = 0;
    explicit Dev(size_t bytes) : n(bytes) { CK(cudaMalloc(&p, bytes ? bytes : 1)); }
    ~Dev() { cudaFree(p); }
    Dev(const Dev &) = delete;
    Dev &operator=(const Dev &) = delete;
    void poison() { CK(cudaMemsetAsync(p, 0xFF, n, S)); }
    template <typename U> U *as() const { return (U *)p; }
    template <typename U> void up(const std::vector<U> &v)
    {
        CK(cudaStreamSynchronize(S));
        CK(cudaMemcpy(p, v.data(), v.size() * sizeof(U), cudaMemcpyHostToDevice));
    }
    template <typename U> std::vector<U> down(size_t count) const
    {
        CK(cudaStreamSynchronize(S));
        CK(cudaGetLastError());
        std::vector<U> v(count);
        CK(cudaMemcpy(v.data(), p, count * sizeof(U), cudaMemcpyDeviceToHost));
        return v;
    }
};

static std::vector<unsigned char> snap(std::initializer_list<const Dev *> bufs)
{
    std::vector<unsigned char> all;
    for (const Dev *d : bufs) {
        std::vector<unsigned char> b = d->down<unsigned char>(d->n);
        all.insert(all.end(), b.begin(), b.end());
    }
    return all;
}

/* ------------------------------------------------------------ randomness */

static zf_rng R;
static double urand() { return 2.0 * zf_rng_uniform(&R) - 1.0; }
static double urand01() { return zf_rng_uniform(&R); }

template <typename T> struct HArr {
    std::vector<T> t;      /* what is uploaded */
    std::vector<double> d; /* its exact values */
};

template <typename T> static HArr<T> rnd(size_t n, double scale, double offset = 0.0)
{
    HArr<T> a;
    a.t.resize(n);
    a.d.resize(n);
    for (size_t i = 0; i < n; i++) {
        a.t[i] = Ty<T>::from_f((float)(offset + scale * urand()));
        a.d[i] = Ty<T>::to_f(a.t[i]);
    }
    return a;
}

static double maxabs(const std::vector<double> &v)
{
    double m = 0.0;
    for (double x : v) m = std::max(m, std::fabs(x));
    return m > 0.0 ? m : 1.0;
}

/* An accumulator's start: random values of the size of the increment. */
template <typename T> static HArr<T> acc_start(const std::vector<double> &delta)
{
    return rnd<T>(delta.size(), maxabs(delta));
}

template <typename T> static std::vector<double> todbl(const std::vector<T> &v)
{
    std::vector<double> o(v.size());
    for (size_t i = 0; i < v.size(); i++) o[i] = Ty<T>::to_f(v[i]);
    return o;
}

/* ------------------------------------------------------------- checking */

/* table column: fp32, bf16, fp16 */
static int dti(zf_gpu_dtype dt) { return dt == ZF_GPU_F32 ? 0 : dt == ZF_GPU_BF16 ? 1 : 2; }

static void record(zf_gpu_dtype dt, const std::string &name, double err, double tol)
{
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
    const int t = dti(dt);
    if (!worst[t].count(name)) worst[t][name] = 0.0;
    if (!(err <= worst[t][name])) worst[t][name] = err; /* NaN sticks */
    tolof[t][name] = tol;
}

static double relerr(const std::vector<double> &out, const std::vector<double> &ref)
{
    double me = 0.0, mr = 0.0;
    for (size_t i = 0; i < out.size(); i++) {
        if (!std::isfinite(out[i])) return NAN;
        me = std::max(me, std::fabs(out[i] - ref[i]));
        mr = std::max(mr, std::fabs(ref[i]));
    }
    return mr > 0.0 ? me / mr : me;
}

static void check(zf_gpu_dtype dt, int C, const std::string &name, double err, double tol)
{
    nchecks++;
    const bool ok = err <= tol; /* false for NaN */
    char b[512];
    snprintf(b, sizeof b, "%s %-5s C=%-3d %-34s err=%.3g tol=%.3g", ok ? "PASS" : "FAIL", zf_gpu_dtype_name(dt), C,
             name.c_str(), err, tol);
    printf("%s\n", b);
    if (!ok) {
        nfail++;
        failures.push_back(b);
    }
    record(dt, name, err, tol);
}

static void check_true(zf_gpu_dtype dt, int C, const std::string &name, bool ok, const char *what)
{
    nchecks++;
    char b[512];
    snprintf(b, sizeof b, "%s %-5s C=%-3d %-34s %s", ok ? "PASS" : "FAIL", zf_gpu_dtype_name(dt), C, name.c_str(), what);
    printf("%s\n", b);
    if (!ok) {
        nfail++;
        failures.push_back(b);
    }
}

/* Runs f twice (f resets its inputs and launches) and checks that the
 * outputs are bitwise the same; the buffers keep the second run's results. */
static void run2(zf_gpu_dtype dt, int C, const std::string &name, const std::function<void()> &f,
                 std::initializer_list<const Dev *> outs)
{
    f();
    std::vector<unsigned char> a = snap(outs);
    f();
    std::vector<unsigned char> b = snap(outs);
    check_true(dt, C, name + " (run twice)", a == b, a == b ? "bitwise equal" : "results differ between runs");
}

/* The CPU model's dropout keep(). */
static double keepf(uint64_t seed, uint64_t site, uint64_t idx, float p)
{
    const float sc = 1.0f / (1.0f - p);
    return zf_drop_keep(zf_drop_key(seed, site), idx, zf_drop_threshold(p), sc);
}

static double gelu_ref(double x)
{
    const double k0 = std::sqrt(2.0 / M_PI), k1 = 0.044715;
    return 0.5 * x * (1.0 + std::tanh(k0 * (x + k1 * x * x * x)));
}
static double gelu_grad_ref(double x)
{
    const double k0 = std::sqrt(2.0 / M_PI), k1 = 0.044715;
    const double t = std::tanh(k0 * (x + k1 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k0 * (1.0 + 3.0 * k1 * x * x);
}

/* ================================================================ tests */

static const int B = 3, TT = 29, N = B * TT, V = 317, P = 40;

template <typename T> static void test_embedding(int C)
{
    const zf_gpu_dtype dt = Ty<T>::dt;
    const size_t es = sizeof(T);
    std::vector<int32_t> tok(N);
    for (int i = 0; i < N; i++) tok[i] = i % 3 == 0 ? (int)(urand01() * 8) : (int)(urand01() * V); /* repeats */
    HArr<T> wte = rnd<T>((size_t)V * C, 1.0), wpe = rnd<T>((size_t)P * C, 0.5);
    Dev dtok(N * 4), dwte(V * C * es), dwpe(P * C * es), dout(N * C * es);
    dtok.up(tok);
    dwte.up(wte.t);
    dwpe.up(wpe.t);
    const uint64_t seed = 0x5eed1234ULL;
    for (float p : {0.0f, 0.1f}) {
        const std::string name = p > 0.0f ? "embed_fwd+dropout" : "embed_fwd";
        run2(dt, C, name, [&] {
            dout.poison();
            GK(zf_gk_embed_fwd(G, dt, dout.p, dtok.as<int32_t>(), dwte.p, dwpe.p, B, TT, C, V, p, seed));
        }, {&dout});
        std::vector<double> ref((size_t)N * C);
        for (int n = 0; n < N; n++)
            for (int j = 0; j < C; j++) {
                double v = wte.d[(size_t)tok[n] * C + j] + wpe.d[(size_t)(n % TT) * C + j];
                if (p > 0.0f) v *= keepf(seed, 0, (uint64_t)n * C + j, p);
                ref[(size_t)n * C + j] = v;
            }
        check(dt, C, name, relerr(todbl(dout.down<T>((size_t)N * C)), ref), Ty<T>::tol);
    }
    /* bad ids: NaN rows, nothing read out of bounds, the other rows right */
    {
        std::vector<int32_t> bad = tok;
        bad[5] = -7;
        bad[40] = V + 3;
        Dev dbad(N * 4);
        dbad.up(bad);
        dout.poison();
        GK(zf_gk_embed_fwd(G, dt, dout.p, dbad.as<int32_t>(), dwte.p, dwpe.p, B, TT, C, V, 0.0f, seed));
        std::vector<double> o = todbl(dout.down<T>((size_t)N * C));
        bool ok = true;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < C; j++) {
                const double x = o[(size_t)n * C + j];
                if (n == 5 || n == 40)
                    ok &= std::isnan(x);
                else
                    ok &= x == (double)Ty<T>::to_f(Ty<T>::from_f(
                                   (float)(wte.d[(size_t)tok[n] * C + j] + wpe.d[(size_t)(n % TT) * C + j])));
            }
        check_true(dt, C, "embed_fwd bad ids", ok, ok ? "NaN rows for bad ids, others exact" : "wrong");
    }
    /* backward */
    HArr<T> dy = rnd<T>((size_t)N * C, 1.0);
    std::vector<double> dte((size_t)V * C, 0.0), dpe((size_t)P * C, 0.0);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < C; j++) {
            dte[(size_t)tok[n] * C + j] += dy.d[(size_t)n * C + j];
            dpe[(size_t)(n % TT) * C + j] += dy.d[(size_t)n * C + j];
        }
    HArr<float> te0 = acc_start<float>(dte), pe0 = acc_start<float>(dpe);
    Dev ddy(N * C * es), gte(V * C * 4), gpe(P * C * 4);
    ddy.up(dy.t);
    run2(dt, C, "embed_bwd", [&] {
        gte.up(te0.t);
        gpe.up(pe0.t);
        GK(zf_gk_embed_bwd(G, dt, gte.as<float>(), gpe.as<float>(), ddy.p, dtok.as<int32_t>(), B, TT, C, V));
    }, {&gte, &gpe});
    std::vector<double> rte(dte.size()), rpe(dpe.size());
    for (size_t i = 0; i < rte.size(); i++) rte[i] = te0.d[i] + dte[i];
    for (size_t i = 0; i < rpe.size(); i++) rpe[i] = pe0.d[i] + dpe[i];
    check(dt, C, "embed_bwd.dwte", relerr(todbl(gte.down<float>(rte.size())), rte), 1e-5);
    check(dt, C, "embed_bwd.dwpe", relerr(todbl(gpe.down<float>(rpe.size())), rpe), 1e-5);
}

template <typename T> static void test_layernorm(int C)
{
    const zf_gpu_dtype dt = Ty<T>::dt;
    const size_t es = sizeof(T);
    const float eps = 1e-5f;
    HArr<T> x = rnd<T>((size_t)N * C, 1.0, 0.3), w = rnd<T>(C, 0.5, 1.0), b = rnd<T>(C, 0.2);
    Dev dx(N * C * es), dw(C * es), db(C * es), dout(N * C * es), dmean(N * 4), drstd(N * 4);
    dx.up(x.t);
    dw.up(w.t);
    db.up(b.t);
    run2(dt, C, "layernorm_fwd", [&] {
        dout.poison();
        dmean.poison();
        drstd.poison();
        GK(zf_gk_layernorm_fwd(G, dt, dout.p, dmean.as<float>(), drstd.as<float>(), dx.p, dw.p, db.p, N, C, eps));
    }, {&dout, &dmean, &drstd});
    std::vector<double> ro((size_t)N * C), rm(N), rr(N);
    for (int n = 0; n < N; n++) {
        double s = 0.0, v = 0.0;
        for (int j = 0; j < C; j++) s += x.d[(size_t)n * C + j];
        const double m = s / C;
        for (int j = 0; j < C; j++) v += (x.d[(size_t)n * C + j] - m) * (x.d[(size_t)n * C + j] - m);
        const double r = 1.0 / std::sqrt(v / C + (double)eps);
        for (int j = 0; j < C; j++) ro[(size_t)n * C + j] = (x.d[(size_t)n * C + j] - m) * r * w.d[j] + b.d[j];
        rm[n] = m;
        rr[n] = r;
    }
    check(dt, C, "layernorm_fwd.out", relerr(todbl(dout.down<T>(ro.size())), ro), Ty<T>::tol);
    check(dt, C, "layernorm_fwd.mean", relerr(todbl(dmean.down<float>(N)), rm), 1e-5);
    check(dt, C, "layernorm_fwd.rstd", relerr(todbl(drstd.down<float>(N)), rr), 1e-5);

    /* backward, from the float mean/rstd (as saved by the forward) */
    std::vector<float> mf(N), rf(N);
    for (int n = 0; n < N; n++) {
        mf[n] = (float)rm[n];
        rf[n] = (float)rr[n];
    }
    HArr<T> dy = rnd<T>((size_t)N * C, 1.0);
    std::vector<double> ddx((size_t)N * C), ddw(C, 0.0), ddb(C, 0.0);
    for (int n = 0; n < N; n++) {
        const double m = mf[n], r = rf[n];
        double a = 0.0, c = 0.0;
        for (int j = 0; j < C; j++) {
            const double g = dy.d[(size_t)n * C + j] * w.d[j];
            a += g;
            c += g * (x.d[(size_t)n * C + j] - m) * r;
        }
        a /= C;
        c /= C;
        for (int j = 0; j < C; j++) {
            const size_t o = (size_t)n * C + j;
            const double xh = (x.d[o] - m) * r;
            ddx[o] = r * (dy.d[o] * w.d[j] - a - xh * c);
            ddw[j] += dy.d[o] * xh;
            ddb[j] += dy.d[o];
        }
    }
    HArr<T> dx0 = acc_start<T>(ddx);
    HArr<float> dw0 = acc_start<float>(ddw), db0 = acc_start<float>(ddb);
    Dev ddy(N * C * es), gx(N * C * es), gw(C * 4), gb(C * 4), dm(N * 4), dr(N * 4);
    ddy.up(dy.t);
    dm.up(mf);
    dr.up(rf);
    run2(dt, C, "layernorm_bwd", [&] {
        gx.up(dx0.t);
        gw.up(dw0.t);
        gb.up(db0.t);
        GK(zf_gk_layernorm_bwd(G, dt, gx.p, gw.as<float>(), gb.as<float>(), ddy.p, dx.p, dw.p, dm.as<float>(),
                               dr.as<float>(), N, C));
    }, {&gx, &gw, &gb});
    for (size_t i = 0; i < ddx.size(); i++) ddx[i] += dx0.d[i];
    for (int j = 0; j < C; j++) {
        ddw[j] += dw0.d[j];
        ddb[j] += db0.d[j];
    }
    check(dt, C, "layernorm_bwd.dx", relerr(todbl(gx.down<T>(ddx.size())), ddx), Ty<T>::tol);
    check(dt, C, "layernorm_bwd.dw", relerr(todbl(gw.down<float>(C)), ddw), 1e-5);
    check(dt, C, "layernorm_bwd.db", relerr(todbl(gb.down<float>(C)), ddb), 1e-5);
}

template <typename T> static void test_elementwise(int C)
{
    const zf_gpu_dtype dt = Ty<T>::dt;
    const size_t es = sizeof(T), n = (size_t)N * 4 * C;
    /* GELU */
    HArr<T> x = rnd<T>(n, 4.0), dy = rnd<T>(n, 1.0);
    Dev dx(n * es), dout(n * es), ddy(n * es), dgrad(n * es), dinpl(n * es);
    dx.up(x.t);
    ddy.up(dy.t);
    run2(dt, C, "gelu_fwd", [&] {
        dout.poison();
        GK(zf_gk_gelu_fwd(G, dt, dout.p, dx.p, n));
    }, {&dout});
    std::vector<double> ref(n);
    for (size_t i = 0; i < n; i++) ref[i] = gelu_ref(x.d[i]);
    check(dt, C, "gelu_fwd", relerr(todbl(dout.down<T>(n)), ref), Ty<T>::tol);
    run2(dt, C, "gelu_bwd", [&] {
        dgrad.poison();
        GK(zf_gk_gelu_bwd(G, dt, dgrad.p, ddy.p, dx.p, n));
    }, {&dgrad});
    for (size_t i = 0; i < n; i++) ref[i] = dy.d[i] * gelu_grad_ref(x.d[i]);
    check(dt, C, "gelu_bwd", relerr(todbl(dgrad.down<T>(n)), ref), Ty<T>::tol);
    dinpl.up(dy.t);
    GK(zf_gk_gelu_bwd(G, dt, dinpl.p, dinpl.p, dx.p, n));
    check_true(dt, C, "gelu_bwd in place", snap({&dinpl}) == snap({&dgrad}), "same bits as out of place");

    /* residual and dropout */
    HArr<T> in = rnd<T>(n, 1.0), y = rnd<T>(n, 1.0);
    Dev din(n * es), dyv(n * es);
    din.up(in.t);
    dyv.up(y.t);
    const uint64_t seed = 99, site = 7;
    for (float p : {0.0f, 0.1f}) {
        const std::string name = p > 0.0f ? "residual_fwd+dropout" : "residual_fwd";
        run2(dt, C, name, [&] {
            dout.poison();
            GK(zf_gk_residual_fwd(G, dt, dout.p, din.p, dyv.p, n, p, seed, site));
        }, {&dout});
        for (size_t i = 0; i < n; i++) ref[i] = in.d[i] + y.d[i] * (p > 0.0f ? keepf(seed, site, i, p) : 1.0);
        check(dt, C, name, relerr(todbl(dout.down<T>(n)), ref), Ty<T>::tol);
    }
    run2(dt, C, "dropout_bwd", [&] {
        dout.poison();
        GK(zf_gk_dropout_bwd(G, dt, dout.p, dyv.p, n, 0.1f, seed, site));
    }, {&dout});
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        const double k = keepf(seed, site, i, 0.1f);
        dropped += k == 0.0;
        ref[i] = y.d[i] * k;
    }
    check(dt, C, "dropout_bwd", relerr(todbl(dout.down<T>(n)), ref), Ty<T>::tol);
    check_true(dt, C, "dropout mask rate", dropped > n / 20 && dropped < n / 5, "about 10% dropped");
    dinpl.up(y.t);
    GK(zf_gk_dropout_bwd(G, dt, dinpl.p, dinpl.p, n, 0.1f, seed, site));
    check_true(dt, C, "dropout_bwd in place", snap({&dinpl}) == snap({&dout}), "same bits as out of place");

    /* bias add and bias grad, OC = 3C */
    const int OC = 3 * C;
    HArr<T> y0 = rnd<T>((size_t)N * OC, 1.0), bias = rnd<T>(OC, 1.0), g = rnd<T>((size_t)N * OC, 1.0);
    Dev dy0((size_t)N * OC * es), dbias(OC * es), dg((size_t)N * OC * es), ddb(OC * 4);
    dbias.up(bias.t);
    dg.up(g.t);
    run2(dt, C, "bias_add", [&] {
        dy0.up(y0.t);
        GK(zf_gk_bias_add(G, dt, dy0.p, dbias.p, N, OC));
    }, {&dy0});
    std::vector<double> rb((size_t)N * OC), rdb(OC, 0.0);
    for (int r = 0; r < N; r++)
        for (int j = 0; j < OC; j++) {
            rb[(size_t)r * OC + j] = y0.d[(size_t)r * OC + j] + bias.d[j];
            rdb[j] += g.d[(size_t)r * OC + j];
        }
    check(dt, C, "bias_add", relerr(todbl(dy0.down<T>(rb.size())), rb), Ty<T>::tol);
    HArr<float> db0 = acc_start<float>(rdb);
    run2(dt, C, "bias_grad", [&] {
        ddb.up(db0.t);
        GK(zf_gk_bias_grad(G, dt, ddb.as<float>(), dg.p, N, OC));
    }, {&ddb});
    for (int j = 0; j < OC; j++) rdb[j] += db0.d[j];
    check(dt, C, "bias_grad", relerr(todbl(ddb.down<float>(OC)), rdb), 1e-5);
}

/* Row-major reference D = alpha op(A) op(B) + beta D0 at the valid entries. */
static std::vector<double> mm_ref(int M, int Nn, int K, const std::vector<double> &A, int lda, int ta,
                                  const std::vector<double> &Bm, int ldb, int tb, const std::vector<double> &D0,
                                  int ldd, double alpha, double beta)
{
    std::vector<double> D(D0);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < Nn; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                     (tb ? Bm[(size_t)j * ldb + k] : Bm[(size_t)k * ldb + j]);
            D[(size_t)i * ldd + j] = alpha * s + beta * D0[(size_t)i * ldd + j];
        }
    return D;
}

template <typename T> static void test_matmul(int C)
{
    const zf_gpu_dtype dt = Ty<T>::dt;
    const size_t es = sizeof(T);
    /* general: every transpose pair, padded leading dimensions, alpha/beta,
     * D of the element type; the padding must stay untouched */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            const int M = N, Nn = 50, K = C, lda = (ta ? M : K) + 3, ldb = (tb ? K : Nn) + 5, ldd = Nn + 7;
            HArr<T> A = rnd<T>((size_t)(ta ? K : M) * lda, 1.0), Bm = rnd<T>((size_t)(tb ? Nn : K) * ldb, 1.0),
                    D0 = rnd<T>((size_t)M * ldd, 1.0);
            Dev dA(A.t.size() * es), dB(Bm.t.size() * es), dD(D0.t.size() * es);
            dA.up(A.t);
            dB.up(Bm.t);
            const std::string name = std::string("matmul T") + (ta ? "t" : "n") + (tb ? "t" : "n") + " a,b,ld";
            run2(dt, C, name, [&] {
                dD.up(D0.t);
                GK(zf_matmul(MM, S, dt, dt, M, Nn, K, dA.p, lda, ta, dB.p, ldb, tb, dD.p, ldd, 0.5f, 0.25f,
                             ZF_MM_DEFAULT, NULL, NULL, 0));
            }, {&dD});
            std::vector<double> ref = mm_ref(M, Nn, K, A.d, lda, ta, Bm.d, ldb, tb, D0.d, ldd, 0.5, 0.25);
            std::vector<T> got = dD.down<T>(D0.t.size());
            std::vector<double> o, r;
            bool pad_ok = true;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < ldd; j++) {
                    const size_t k = (size_t)i * ldd + j;
                    if (j < Nn) {
                        o.push_back(Ty<T>::to_f(got[k]));
                        r.push_back(ref[k]);
                    } else
                        pad_ok &= !memcmp(&got[k], &D0.t[k], es);
                }
            check(dt, C, name, relerr(o, r), Ty<T>::tol);
            check_true(dt, C, name + " padding", pad_ok, pad_ok ? "untouched" : "written");
        }

    /* linear layer: y = x W + b (bias epilogue); backward dW += x^T dy (fp32), dx = dy W^T */
    const int in = C, out = 3 * C;
    HArr<T> x = rnd<T>((size_t)N * in, 1.0), W = rnd<T>((size_t)in * out, 0.5), b = rnd<T>(out, 1.0),
            dy = rnd<T>((size_t)N * out, 1.0);
    Dev dx(N * in * es), dW(in * out * es), db(out * es), dyb(N * out * es), dydev(N * out * es), gx(N * in * es),
        gW(in * out * 4), gbias(out * 4);
    dx.up(x.t);
    dW.up(W.t);
    db.up(b.t);
    dydev.up(dy.t);
    run2(dt, C, "linear_fwd (bias epilogue)", [&] {
        dyb.poison();
        GK(zf_linear_fwd(MM, S, dt, dyb.p, dx.p, dW.p, db.p, N, in, out));
    }, {&dyb});
    std::vector<double> zero((size_t)N * out, 0.0), ry;
    ry = mm_ref(N, out, in, x.d, in, 0, W.d, out, 0, zero, out, 1.0, 0.0);
    for (int r = 0; r < N; r++)
        for (int j = 0; j < out; j++) ry[(size_t)r * out + j] += b.d[j];
    check(dt, C, "linear_fwd (bias epilogue)", relerr(todbl(dyb.down<T>(ry.size())), ry), Ty<T>::tol);

    std::vector<double> zW((size_t)in * out, 0.0), zx((size_t)N * in, 0.0);
    std::vector<double> rdW = mm_ref(in, out, N, x.d, in, 1, dy.d, out, 0, zW, out, 1.0, 0.0);
    std::vector<double> rdx = mm_ref(N, in, out, dy.d, out, 0, W.d, out, 1, zx, in, 1.0, 0.0);
    HArr<float> W0 = acc_start<float>(rdW);
    run2(dt, C, "linear_bwd", [&] {
        gW.up(W0.t);
        gx.poison();
        GK(zf_linear_bwd(MM, S, dt, gx.p, gW.as<float>(), dydev.p, dx.p, dW.p, N, in, out));
    }, {&gW, &gx});
    std::vector<double> rdWa(rdW);
    for (size_t i = 0; i < rdWa.size(); i++) rdWa[i] += W0.d[i];
    check(dt, C, "linear_bwd.dW (fp32 +=)", relerr(todbl(gW.down<float>(rdWa.size())), rdWa), Ty<T>::tc);
    check(dt, C, "linear_bwd.dx", relerr(todbl(gx.down<T>(rdx.size())), rdx), Ty<T>::tol);

    /* bias-gradient epilogue: dW = x^T dy (fp32, beta 0), dbias = colsum(dy) */
    std::vector<double> rdb(out, 0.0);
    for (int r = 0; r < N; r++)
        for (int j = 0; j < out; j++) rdb[j] += dy.d[(size_t)r * out + j];
    run2(dt, C, "matmul BGRAD_B epilogue", [&] {
        gW.poison();
        gbias.poison();
        GK(zf_matmul(MM, S, dt, ZF_GPU_F32, in, out, N, dx.p, in, 1, dydev.p, out, 0, gW.p, out, 1.0f, 0.0f,
                     ZF_MM_BGRAD_B, gbias.p, NULL, 0));
    }, {&gW, &gbias});
    check(dt, C, "matmul BGRAD_B.D", relerr(todbl(gW.down<float>(rdW.size())), rdW), Ty<T>::tc);
    check(dt, C, "matmul BGRAD_B.bias", relerr(todbl(gbias.down<float>(out)), rdb), Ty<T>::tc);

    /* GELU epilogue: pre = x W + b, y = gelu(pre), out = 4C (ldaux % 8 == 0) */
    const int o4 = 4 * C;
    HArr<T> W4 = rnd<T>((size_t)in * o4, 0.5), b4 = rnd<T>(o4, 1.0);
    Dev dW4(in * o4 * es), db4(o4 * es), dpre(N * o4 * es), dgy(N * o4 * es);
    dW4.up(W4.t);
    db4.up(b4.t);
    run2(dt, C, "linear_fwd_gelu (epilogue)", [&] {
        dpre.poison();
        dgy.poison();
        GK(zf_linear_fwd_gelu(MM, S, dt, dgy.p, dpre.p, dx.p, dW4.p, db4.p, N, in, o4));
    }, {&dpre, &dgy});
    std::vector<double> z4((size_t)N * o4, 0.0);
    std::vector<double> rpre = mm_ref(N, o4, in, x.d, in, 0, W4.d, o4, 0, z4, o4, 1.0, 0.0), rg(rpre.size());
    for (int r = 0; r < N; r++)
        for (int j = 0; j < o4; j++) rpre[(size_t)r * o4 + j] += b4.d[j];
    /* GELU of the stored (rounded) pre-activation, as the unfused path computes it */
    std::vector<double> gpre = todbl(dpre.down<T>(rpre.size()));
    for (size_t i = 0; i < rg.size(); i++) rg[i] = gelu_ref(gpre[i]);
    check(dt, C, "linear_fwd_gelu.pre", relerr(gpre, rpre), Ty<T>::tol);
    check(dt, C, "linear_fwd_gelu.y (cuBLASLt GELU)", relerr(todbl(dgy.down<T>(rg.size())), rg), Ty<T>::tol);

    /* DGELU epilogue (the MLP's backward): D = (x W4) * gelu'(pre), pre the
     * stored pre-activation above; where cuBLASLt has no such algorithm the
     * call fails before enqueuing and the model uses product + gelu_bwd */
    std::vector<double> rdg = mm_ref(N, o4, in, x.d, in, 0, W4.d, o4, 0, z4, o4, 1.0, 0.0);
    for (size_t i = 0; i < rdg.size(); i++) rdg[i] *= gelu_grad_ref(gpre[i]);
    Dev ddg(N * o4 * es);
    bool fused = true;
    run2(dt, C, "matmul DGELU epilogue", [&] {
        ddg.poison();
        fused &= zf_matmul(MM, S, dt, dt, N, o4, in, dx.p, in, 0, dW4.p, o4, 0, ddg.p, o4, 1.0f, 0.0f, ZF_MM_DGELU, NULL,
                           dpre.p, o4) == 0;
    }, {&ddg});
    /* fp32: cuBLASLt's GELU derivative is ~1e-5 relative off (1.09e-5 seen
     * on an H100), so the model keeps the exact unfused pass in fp32 */
    if (fused)
        check(dt, C, "matmul DGELU epilogue", relerr(todbl(ddg.down<T>(rdg.size())), rdg),
              dt == ZF_GPU_F32 ? 3e-5 : Ty<T>::tol);
    else
        printf("note: %s C=%d: no fused DGELU algorithm (%s): the model falls back to product + gelu_bwd\n",
               zf_gpu_dtype_name(dt), C, zf_matmul_error(MM));
}

template <typename T> static void test_classifier(int C)
{
    const zf_gpu_dtype dt = Ty<T>::dt;
    const size_t es = sizeof(T);
    HArr<T> h = rnd<T>((size_t)N * C, 1.0), wte = rnd<T>((size_t)V * C, 1.0);
    std::vector<int32_t> tgt(N);
    int count = 0;
    for (int i = 0; i < N; i++) {
        tgt[i] = i % 7 == 3 ? -1 : (int)(urand01() * V);
        count += tgt[i] >= 0;
    }
    const float ls = 8.0f;
    /* reference */
    std::vector<double> rloss(N, 0.0), dl((size_t)N * V, 0.0);
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        if (tgt[n] < 0) continue;
        std::vector<double> lg(V);
        double mx = -INFINITY;
        for (int v = 0; v < V; v++) {
            double s = 0.0;
            for (int j = 0; j < C; j++) s += h.d[(size_t)n * C + j] * wte.d[(size_t)v * C + j];
            lg[v] = s;
            mx = std::max(mx, s);
        }
        double se = 0.0;
        for (int v = 0; v < V; v++) se += std::exp(lg[v] - mx);
        const double lse = mx + std::log(se);
        rloss[n] = lse - lg[tgt[n]];
        total += rloss[n];
        const double sc = (double)ls / count;
        for (int v = 0; v < V; v++) dl[(size_t)n * V + v] = (std::exp(lg[v] - lse) - (v == tgt[n])) * sc;
    }
    const double rmean = total / count;
    std::vector<double> zh((size_t)N * C, 0.0), zw((size_t)V * C, 0.0);
    std::vector<double> rdh = mm_ref(N, C, V, dl, V, 0, wte.d, C, 0, zh, C, 1.0, 0.0);
    std::vector<double> rdw = mm_ref(V, C, N, dl, V, 1, h.d, C, 0, zw, C, 1.0, 0.0);
    HArr<float> dw0 = acc_start<float>(rdw);
    for (size_t i = 0; i < rdw.size(); i++) rdw[i] += dw0.d[i];

    Dev dh(N * C * es), dwte(V * C * es), dtgt(N * 4), dloss(N * 4), dmean(4), dcount(4), gdh(N * C * es),
        gdw(V * C * 4);
    dh.up(h.t);
    dwte.up(wte.t);
    dtgt.up(tgt);
    /* default context (one chunk) and one with 16-row chunks (6 chunks, the last of 7 rows) */
    zf_err err;
    const size_t small = (size_t)16 * ((V + 63) / 64 * 64) * (4 + es); /* Vp = V rounded up to 64 */
    zf_gk *Gs = zf_gk_create(S, MM, small, &err);
    if (!Gs) {
        fprintf(stderr, "zf_gk_create: %s\n", err.msg);
        exit(1);
    }
    for (int pass = 0; pass < 2; pass++) {
        zf_gk *ctx = pass ? Gs : G;
        const int R = zf_gk_classifier_chunk_rows(ctx, dt, N, V);
        const std::string sfx = pass ? " (16-row chunks)" : "";
        check_true(dt, C, "classifier chunk rows" + sfx, pass ? R == 16 : R == N, pass ? "16" : "all rows");
        run2(dt, C, "classifier" + sfx, [&] {
            dloss.poison();
            dmean.poison();
            dcount.poison();
            gdh.poison();
            gdw.up(dw0.t);
            if (zf_gk_classifier(ctx, dt, dh.p, dwte.p, dtgt.as<int32_t>(), N, C, V, ls, dloss.as<float>(),
                                 dmean.as<float>(), dcount.as<int>(), gdh.p, gdw.as<float>())) {
                nfail++;
                failures.push_back(std::string("classifier: ") + zf_gk_error(ctx));
                fprintf(stderr, "classifier: %s\n", zf_gk_error(ctx));
            }
        }, {&dloss, &dmean, &dcount, &gdh, &gdw});
        check(dt, C, "classifier.losses" + sfx, relerr(todbl(dloss.down<float>(N)), rloss), Ty<T>::loss);
        check(dt, C, "classifier.mean" + sfx, relerr(todbl(dmean.down<float>(1)), {rmean}), Ty<T>::loss);
        const int gc = dcount.down<int>(1)[0];
        check_true(dt, C, "classifier.count" + sfx, gc == count, gc == count ? "exact" : "wrong");
        check(dt, C, "classifier.dh" + sfx, relerr(todbl(gdh.down<T>(rdh.size())), rdh), Ty<T>::grad);
        check(dt, C, "classifier.dwte (fp32 +=)" + sfx, relerr(todbl(gdw.down<float>(rdw.size())), rdw), Ty<T>::grad);
    }
    /* the saving forward (no chunks: the context's chunk size must not
     * matter) and its backward from the saved gradient */
    const int Vp = (V + 63) / 64 * 64;
    Dev dsave((size_t)N * Vp * es);
    for (int pass = 0; pass < 2; pass++) {
        zf_gk *ctx = pass ? Gs : G;
        const std::string sfx = pass ? " (small chunks)" : "";
        run2(dt, C, "classifier save" + sfx, [&] {
            dloss.poison();
            dmean.poison();
            dcount.poison();
            dsave.poison();
            gdh.poison();
            gdw.up(dw0.t);
            if (zf_gk_classifier_fwd_save(ctx, dt, dh.p, dwte.p, dtgt.as<int32_t>(), N, C, V, dloss.as<float>(),
                                          dmean.as<float>(), dcount.as<int>(), dsave.p) ||
                zf_gk_classifier_bwd_saved(ctx, dt, dsave.p, dh.p, dwte.p, N, C, V, ls / (float)count, gdh.p,
                                           gdw.as<float>())) {
                nfail++;
                failures.push_back(std::string("classifier save: ") + zf_gk_error(ctx));
                fprintf(stderr, "classifier save: %s\n", zf_gk_error(ctx));
            }
        }, {&dloss, &dmean, &dcount, &dsave, &gdh, &gdw});
        check(dt, C, "classifier save.losses" + sfx, relerr(todbl(dloss.down<float>(N)), rloss), Ty<T>::sloss);
        check(dt, C, "classifier save.mean" + sfx, relerr(todbl(dmean.down<float>(1)), {rmean}), Ty<T>::sloss);
        const int gc = dcount.down<int>(1)[0];
        check_true(dt, C, "classifier save.count" + sfx, gc == count, gc == count ? "exact" : "wrong");
        /* the saved rows: softmax - onehot (reference dl / sc), padding columns 0 */
        const std::vector<double> gs = todbl(dsave.down<T>((size_t)N * Vp));
        std::vector<double> gsv((size_t)N * V), rsv((size_t)N * V);
        bool pad0 = true;
        for (int n = 0; n < N; n++) {
            for (int v = 0; v < V; v++) {
                gsv[(size_t)n * V + v] = gs[(size_t)n * Vp + v];
                rsv[(size_t)n * V + v] = dl[(size_t)n * V + v] * count / ls;
            }
            for (int v = V; v < Vp; v++) pad0 = pad0 && gs[(size_t)n * Vp + v] == 0.0;
        }
        check(dt, C, "classifier save.dsave" + sfx, relerr(gsv, rsv), Ty<T>::sgrad);
        check_true(dt, C, "classifier save.padding" + sfx, pad0, pad0 ? "zero" : "NOT ZERO");
        check(dt, C, "classifier save.dh" + sfx, relerr(todbl(gdh.down<T>(rdh.size())), rdh), Ty<T>::sgrad);
        check(dt, C, "classifier save.dwte (fp32 +=)" + sfx, relerr(todbl(gdw.down<float>(rdw.size())), rdw),
              Ty<T>::sgrad);
    }
    /* forward only */
    dloss.poison();
    dmean.poison();
    GK(zf_gk_classifier(G, dt, dh.p, dwte.p, dtgt.as<int32_t>(), N, C, V, ls, dloss.as<float>(), dmean.as<float>(),
                        NULL, NULL, NULL));
    check(dt, C, "classifier fwd-only.losses", relerr(todbl(dloss.down<float>(N)), rloss), Ty<T>::loss);
    check(dt, C, "classifier fwd-only.mean", relerr(todbl(dmean.down<float>(1)), {rmean}), Ty<T>::loss);
    zf_gk_free(Gs);
}


/* Elementwise kernels and conversions on pointers one element off their
 * alignment and odd lengths (the one-element-at-a-time paths): the same
 * bits as the aligned launch on the same values. */
template <typename T> static void test_misaligned()
{
    const zf_gpu_dtype dt = Ty<T>::dt;
    const size_t es = sizeof(T), n = 1003;
    HArr<T> x = rnd<T>(n + 1, 3.0), y = rnd<T>(n + 1, 1.0);
    Dev dx((n + 1) * es), dy((n + 1) * es), o1((n + 1) * es), o2((n + 1) * es), f1((n + 1) * 4), f2((n + 1) * 4);
    dx.up(x.t);
    dy.up(y.t);
    const char *b0 = (const char *)dx.p, *b1 = (const char *)dy.p;
    bool ok = true;
    for (int k = 0; k < 4; k++) {
        /* aligned reference: values x[1..n] copied to offset 0 */
        Dev ax(n * es), ay(n * es);
        CK(cudaMemcpy(ax.p, b0 + es, n * es, cudaMemcpyDeviceToDevice));
        CK(cudaMemcpy(ay.p, b1 + es, n * es, cudaMemcpyDeviceToDevice));
        o1.poison();
        o2.poison();
        void *mo = (char *)o1.p + es;
        switch (k) {
        case 0:
            GK(zf_gk_gelu_fwd(G, dt, mo, b0 + es, n));
            GK(zf_gk_gelu_fwd(G, dt, o2.p, ax.p, n));
            break;
        case 1:
            GK(zf_gk_gelu_bwd(G, dt, mo, b1 + es, b0 + es, n));
            GK(zf_gk_gelu_bwd(G, dt, o2.p, ay.p, ax.p, n));
            break;
        case 2: /* dropout indices follow the element index: compare like with like */
            GK(zf_gk_residual_fwd(G, dt, mo, b0 + es, b1 + es, n, 0.1f, 3, 4));
            GK(zf_gk_residual_fwd(G, dt, o2.p, ax.p, ay.p, n, 0.1f, 3, 4));
            break;
        case 3:
            GK(zf_gk_convert(G, (char *)f1.p + 4, ZF_GPU_F32, b0 + es, dt, n));
            GK(zf_gk_convert(G, f2.p, ZF_GPU_F32, ax.p, dt, n));
            break;
        }
        std::vector<unsigned char> a, b;
        if (k < 3) {
            a = o1.down<unsigned char>((n + 1) * es);
            b = o2.down<unsigned char>(n * es);
            a.erase(a.begin(), a.begin() + es);
        } else {
            a = f1.down<unsigned char>((n + 1) * 4);
            b = f2.down<unsigned char>(n * 4);
            a.erase(a.begin(), a.begin() + 4);
        }
        ok &= a == b;
    }
    check_true(dt, 0, "misaligned/odd-length paths", ok, ok ? "same bits as aligned" : "differ");
}

/* ------------------------------------------------------------- AdamW */

struct HostCoefs {
    float wd_mul, b1, omb1, b2, omb2, bc2s, eps, nss;
};
static HostCoefs host_coefs(const zf_adamw_hparams &h, int64_t step)
{
    HostCoefs c;
    c.wd_mul = (float)(1.0 - h.lr * h.weight_decay);
    c.b1 = (float)h.beta1;
    c.omb1 = (float)(1.0 - h.beta1);
    c.b2 = (float)h.beta2;
    c.omb2 = (float)(1.0 - h.beta2);
    c.bc2s = (float)std::sqrt(1.0 - std::pow(h.beta2, (double)step));
    c.eps = (float)h.eps;
    c.nss = (float)(-(h.lr / (1.0 - std::pow(h.beta1, (double)step))));
    return c;
}
/* torch's order (lib/adamw.h), in float, fused where torch fuses */
static void host_adamw(float &p, float g, float &m, float &v, const HostCoefs &c, float gs, int decay)
{
    const float gi = g * gs;
    if (decay) p = p * c.wd_mul;
    m = std::fmaf(gi, c.omb1, m * c.b1);
    v = std::fmaf(c.omb2 * gi, gi, v * c.b2);
    float denom = std::sqrt(v) / c.bc2s;
    denom = denom + c.eps;
    p = p + (c.nss * m) / denom;
}

template <typename T> static void test_adamw()
{
    const zf_gpu_dtype dt = Ty<T>::dt;
    const int C = 0;
    const size_t n = 1000;
    zf_adamw_hparams hp = {1e-3, 0.9, 0.999, 1e-8, 0.1};
    const int64_t step = 3;
    const float gs = 0.5f;
    std::vector<float> p(n), g(n), m(n), v(n);
    for (size_t i = 0; i < n; i++) {
        p[i] = (float)urand();
        g[i] = (float)(urand() * 0.1);
        m[i] = (float)(urand() * 0.05);
        v[i] = (float)(urand01() * 0.01);
    }
    Dev dp(n * 4), dg(n * 4), dm(n * 4), dv(n * 4), dlp(n * sizeof(T));
    dg.up(g);
    const HostCoefs hc = host_coefs(hp, step);
    /* contiguous range with decay, compute copy written */
    run2(dt, C, "adamw", [&] {
        dp.up(p);
        dm.up(m);
        dv.up(v);
        dlp.poison();
        GK(zf_gk_adamw(G, dp.as<float>(), dg.as<float>(), dm.as<float>(), dv.as<float>(), dlp.p, dt, n, &hp, step, gs,
                       1));
    }, {&dp, &dm, &dv, &dlp});
    std::vector<float> hp_(p), hm(m), hv(v);
    for (size_t i = 0; i < n; i++) host_adamw(hp_[i], g[i], hm[i], hv[i], hc, gs, 1);
    std::vector<float> op = dp.down<float>(n), om = dm.down<float>(n), ov = dv.down<float>(n);
    std::vector<T> olp = dlp.down<T>(n);
    const bool bit = !memcmp(op.data(), hp_.data(), n * 4) && !memcmp(om.data(), hm.data(), n * 4) &&
                     !memcmp(ov.data(), hv.data(), n * 4);
    check_true(dt, C, "adamw p,m,v vs torch-order replica", bit, bit ? "bitwise equal" : "differ");
    bool lpok = true;
    for (size_t i = 0; i < n; i++) {
        const T e = Ty<T>::from_f(op[i]);
        lpok &= !memcmp(&e, &olp[i], sizeof(T));
    }
    check_true(dt, C, "adamw compute copy", lpok, lpok ? "round-to-nearest of p, bitwise" : "differs");
    /* float64 view of the same step */
    std::vector<double> rm(n), rv(n), gm(n), gv(n);
    double ulps = 0.0;
    const double bc1 = 1.0 - std::pow(hp.beta1, (double)step), bc2 = 1.0 - std::pow(hp.beta2, (double)step);
    for (size_t i = 0; i < n; i++) {
        const double gi = (double)g[i] * gs;
        rm[i] = hp.beta1 * m[i] + (1.0 - hp.beta1) * gi;
        rv[i] = hp.beta2 * v[i] + (1.0 - hp.beta2) * gi * gi;
        const double pn = p[i] * (1.0 - hp.lr * hp.weight_decay) -
                          hp.lr / bc1 * rm[i] / (std::sqrt(rv[i]) / std::sqrt(bc2) + hp.eps);
        /* bound: two ulps of p (the float decay factor 1-lr*wd, which torch
         * rounds to float too, the decay product and the final add) plus
         * 1e-6 of the step for the fp32 arithmetic of the update itself */
        const float pf = (float)pn;
        const double ulp = (double)std::nextafter(std::fabs(pf), INFINITY) - std::fabs(pf);
        ulps = std::max(ulps, std::fabs((double)op[i] - pn) / (2.0 * ulp + 1e-6 * std::fabs(pn - p[i])));
        gm[i] = om[i];
        gv[i] = ov[i];
    }
    check(dt, C, "adamw.m vs float64", relerr(gm, rm), 1e-6);
    check(dt, C, "adamw.v vs float64", relerr(gv, rv), 1e-6);
    check(dt, C, "adamw.p vs float64 (err/bound)", ulps, 1.0);

    /* layout rows: decay / no decay / a gap that must stay untouched;
     * then other rows (the cached work list must be rebuilt) */
    const int64_t rowsA[] = {0, 300, 1, 300, 13, 0, 320, 500, 1, 820, 180, 0};
    const int64_t rowsB[] = {0, 10, 0, 10, 990, 1};
    for (int which = 0; which < 2; which++) {
        const int64_t *rows = which ? rowsB : rowsA;
        const int nrows = which ? 2 : 4;
        const std::string name = which ? "adamw_rows (new layout)" : "adamw_rows";
        run2(dt, C, name, [&] {
            dp.up(p);
            dm.up(m);
            dv.up(v);
            GK(zf_gk_adamw_rows(G, dp.as<float>(), dg.as<float>(), dm.as<float>(), dv.as<float>(), NULL, dt, rows,
                                nrows, &hp, step, gs));
        }, {&dp, &dm, &dv});
        std::vector<float> ep(p), em(m), ev(v);
        for (int r = 0; r < nrows; r++)
            for (int64_t i = rows[3 * r]; i < rows[3 * r] + rows[3 * r + 1]; i++)
                host_adamw(ep[i], g[i], em[i], ev[i], hc, gs, (int)rows[3 * r + 2]);
        std::vector<float> ap = dp.down<float>(n), am = dm.down<float>(n), av = dv.down<float>(n);
        const bool ok = !memcmp(ap.data(), ep.data(), n * 4) && !memcmp(am.data(), em.data(), n * 4) &&
                        !memcmp(av.data(), ev.data(), n * 4);
        check_true(dt, C, name + " vs replica", ok, ok ? "bitwise equal (gap untouched)" : "differ");
    }
}

static void test_grad_stats()
{
    const zf_gpu_dtype dt = ZF_GPU_F32;
    const size_t n = 100003;
    std::vector<float> g(n);
    double ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        g[i] = (float)(urand() * 3.0);
        ref += (double)g[i] * g[i];
    }
    Dev dg(n * 4);
    dg.up(g);
    double s1 = NAN, s2 = NAN;
    long long b1 = -1, b2 = -1;
    GK(zf_gk_grad_stats(G, dg.as<float>(), n, &s1, &b1));
    GK(zf_gk_grad_stats(G, dg.as<float>(), n, &s2, &b2));
    check(dt, 0, "grad_stats.sumsq", std::fabs(s1 - ref) / ref, 1e-12);
    check_true(dt, 0, "grad_stats.nonfinite", b1 == 0, b1 == 0 ? "0" : "wrong");
    check_true(dt, 0, "grad_stats (run twice)", !memcmp(&s1, &s2, 8) && b1 == b2, "bitwise equal");
    g[5] = INFINITY;
    g[77777] = NAN;
    g[n - 1] = -INFINITY;
    dg.up(g);
    GK(zf_gk_grad_stats(G, dg.as<float>(), n, &s1, &b1));
    check_true(dt, 0, "grad_stats overflow", b1 == 3 && !std::isfinite(s1), b1 == 3 ? "3 non-finite found" : "wrong");
}

template <typename T> static void test_convert()
{
    const zf_gpu_dtype dt = Ty<T>::dt;
    const size_t n = 1001;
    std::vector<float> f(n);
    for (size_t i = 0; i < n; i++) f[i] = (float)(urand() * std::pow(10.0, (int)(urand01() * 10) - 5));
    f[0] = 70000.0f; /* fp16 overflow -> inf */
    f[1] = NAN;
    f[2] = -0.0f;
    f[3] = 1e-30f;
    Dev df(n * 4), dt_(n * sizeof(T)), dback(n * 4);
    df.up(f);
    run2(dt, 0, "convert fp32->type->fp32", [&] {
        dt_.poison();
        dback.poison();
        GK(zf_gk_convert(G, dt_.p, dt, df.p, ZF_GPU_F32, n));
        GK(zf_gk_convert(G, dback.p, ZF_GPU_F32, dt_.p, dt, n));
    }, {&dt_, &dback});
    std::vector<T> got = dt_.down<T>(n);
    std::vector<float> back = dback.down<float>(n);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        const T e = Ty<T>::from_f(f[i]);
        const float eb = Ty<T>::to_f(e);
        if (std::isnan(f[i])) { /* NaN payloads may differ */
            ok &= std::isnan(Ty<T>::to_f(got[i])) && std::isnan(back[i]);
            continue;
        }
        ok &= !memcmp(&e, &got[i], sizeof(T));
        ok &= !memcmp(&eb, &back[i], 4);
    }
    check_true(dt, 0, "convert fp32<->type", ok, ok ? "bitwise = host round-to-nearest-even" : "differs");
    /* between the two 16-bit types (through fp32: exact widening, one rounding) */
    if (dt != ZF_GPU_F32) {
        const zf_gpu_dtype other = dt == ZF_GPU_BF16 ? ZF_GPU_F16 : ZF_GPU_BF16;
        Dev d2(n * 2);
        GK(zf_gk_convert(G, d2.p, other, dt_.p, dt, n));
        std::vector<unsigned short> o = d2.down<unsigned short>(n);
        bool ok2 = true;
        for (size_t i = 0; i < n; i++) {
            const float w = Ty<T>::to_f(got[i]);
            unsigned short e;
            if (other == ZF_GPU_F16) {
                __half hh = __float2half_rn(w);
                memcpy(&e, &hh, 2);
            } else {
                __nv_bfloat16 bb = __float2bfloat16_rn(w);
                memcpy(&e, &bb, 2);
            }
            ok2 &= e == o[i] || (std::isnan(w));
        }
        check_true(dt, 0, std::string("convert ->") + zf_gpu_dtype_name(other), ok2, ok2 ? "bitwise" : "differs");
    }
}

template <typename T> static void test_type()
{
    /* 36, 100: odd sizes (scalar paths of the row kernels); 64: C % 8 == 0
     * (the eight-per-access paths) */
    for (int C : {36, 64, 100}) {
        test_embedding<T>(C);
        test_layernorm<T>(C);
        test_elementwise<T>(C);
        test_matmul<T>(C);
        test_classifier<T>(C);
    }
    test_layernorm<T>(1600); /* GPT-2 XL width: the LayerNorm backward's shared memory above 48 KiB */
    test_layernorm<T>(4096); /* 6.7B width: fewer warps a block in the backward (7 on Hopper, whose blocks hold 227 KiB) */
    test_layernorm<T>(8191); /* 3 warps, odd width (one element a lane access) */
    test_embedding<T>(1600); /* several column blocks per token in the embedding backward */
    test_misaligned<T>();
    test_adamw<T>();
    test_convert<T>();
}

/* Bad arguments are refused with a message, nothing launched. */
static void test_bad_args()
{
    const zf_gpu_dtype dt = ZF_GPU_F32;
    Dev a(1024);
    bool ok = zf_gk_layernorm_fwd(G, dt, a.p, a.as<float>(), a.as<float>(), a.p, a.p, a.p, 0, 8, 1e-5f) == -1 &&
              strstr(zf_gk_error(G), "layernorm_fwd") != NULL;
    ok &= zf_gk_gelu_fwd(G, (zf_gpu_dtype)7, a.p, a.p, 4) == -1 && strstr(zf_gk_error(G), "dt") != NULL;
    ok &= zf_matmul(MM, S, dt, ZF_GPU_BF16, 4, 4, 4, a.p, 4, 0, a.p, 4, 0, a.p, 4, 1.0f, 0.0f, ZF_MM_DEFAULT, NULL,
                    NULL, 0) == -1 &&
          strstr(zf_matmul_error(MM), "d_type") != NULL;
    ok &= zf_matmul(MM, S, dt, dt, 4, 4, 4, a.p, 2, 0, a.p, 4, 0, a.p, 4, 1.0f, 0.0f, ZF_MM_DEFAULT, NULL, NULL, 0) ==
              -1 &&
          strstr(zf_matmul_error(MM), "lda") != NULL;
    ok &= zf_gk_residual_fwd(G, dt, a.p, a.p, a.p, 4, 1.0f, 0, 0) == -1;
    check_true(dt, 0, "bad arguments refused", ok, ok ? "-1 with a message naming the field" : "accepted");
}


/* ============================================================= bench */

/* Random values in [-a, a) from a hash of the index (never time zeros). */
static __global__ void fill_k(float *x, size_t n, float a, uint32_t salt)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ salt;
        h ^= h >> 16;
        h *= 0x7feb352du;
        h ^= h >> 15;
        h *= 0x846ca68bu;
        h ^= h >> 16;
        x[i] = a * ((float)(h >> 8) * (1.0f / 8388608.0f) - 1.0f);
    }
}

static void fill(void *p, zf_gpu_dtype dt, size_t n, float a)
{
    static uint32_t salt = 1;
    float *tmp;
    if (dt == ZF_GPU_F32) {
        fill_k<<<1024, 256, 0, S>>>((float *)p, n, a, salt++);
        return;
    }
    CK(cudaMalloc(&tmp, n * 4));
    fill_k<<<1024, 256, 0, S>>>(tmp, n, a, salt++);
    GK(zf_gk_convert(G, p, dt, tmp, ZF_GPU_F32, n));
    CK(cudaStreamSynchronize(S));
    cudaFree(tmp);
}

/* Median time of f over 20 runs after 3 warm-ups, in microseconds. */
static int bench_reps = 20, bench_warm = 3;
static double time_us(const std::function<void()> &f)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < bench_warm; i++) f();
    std::vector<double> t;
    for (int i = 0; i < bench_reps; i++) {
        CK(cudaEventRecord(a, S));
        f();
        CK(cudaEventRecord(b, S));
        CK(cudaEventSynchronize(b));
        float ms = 0.0f;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms * 1000.0);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

static void report(const char *what, double us, double bytes, double flops)
{
    printf("%-44s %10.1f us", what, us);
    if (bytes > 0) printf("  %7.0f GB/s", bytes / us * 1e-3);
    if (flops > 0) printf("  %7.0f TFLOP/s", flops / us * 1e-6);
    printf("\n");
}

/* GPT-2 124M sizes, bf16 activations: B=8, T=1024, C=768, V=50257. */
static void bench(void)
{
    const zf_gpu_dtype dt = ZF_GPU_BF16;
    const int Bb = 8, Tb = 1024, C = 768, Vb = 50257, Nb = Bb * Tb;
    const size_t es = 2, nd = (size_t)Nb * C, n4 = nd * 4, np = 124439808;
    printf("\nbench: bf16, B=%d T=%d C=%d V=%d (median of 20)\n", Bb, Tb, C, Vb);
    Dev x(nd * es), y(nd * es), z(nd * es), h4(n4 * es), g4(n4 * es), wte((size_t)Vb * C * es), wpe((size_t)1024 * C * es),
        w(C * es), b(C * es), mean(Nb * 4), rstd(Nb * 4), tok(Nb * 4), tgt(Nb * 4), gte((size_t)Vb * C * 4),
        gpe((size_t)1024 * C * 4), gw(4 * C * 4), gb(4 * C * 4), loss(Nb * 4), lmean(4), W((size_t)C * 3 * C * es),
        q((size_t)Nb * 3 * C * es), gW((size_t)C * 3 * C * 4), bias3(3 * C * es);
    for (const Dev *d : {&x, &y, &z, &h4, &g4, &wte, &wpe, &w, &b, &W, &q, &bias3}) fill(d->p, dt, d->n / es, 1.0f);
    for (const Dev *d : {&gte, &gpe, &gw, &gb, &gW, &mean, &rstd}) fill(d->p, ZF_GPU_F32, d->n / 4, 1.0f);
    std::vector<int32_t> ht(Nb), hg(Nb);
    for (int i = 0; i < Nb; i++) {
        ht[i] = (int)(urand01() * Vb);
        hg[i] = (int)(urand01() * Vb);
    }
    tok.up(ht);
    tgt.up(hg);
    report("embed_fwd", time_us([&] { GK(zf_gk_embed_fwd(G, dt, x.p, tok.as<int32_t>(), wte.p, wpe.p, Bb, Tb, C, Vb, 0.1f, 1)); }),
           3.0 * nd * es, 0);
    report("embed_bwd", time_us([&] { GK(zf_gk_embed_bwd(G, dt, gte.as<float>(), gpe.as<float>(), x.p, tok.as<int32_t>(), Bb, Tb, C, Vb)); }),
           2.0 * nd * es + 2.0 * nd * 4, 0);
    {
        std::vector<int32_t> sk(ht); /* a third of the batch is one token */
        for (int i = 0; i < Nb; i += 3) sk[i] = 13;
        Dev stok(Nb * 4);
        stok.up(sk);
        report("embed_bwd (1/3 of tokens equal)", time_us([&] { GK(zf_gk_embed_bwd(G, dt, gte.as<float>(), gpe.as<float>(), x.p, stok.as<int32_t>(), Bb, Tb, C, Vb)); }),
               2.0 * nd * es + 2.0 * nd * 4, 0);
    }
    report("layernorm_fwd", time_us([&] { GK(zf_gk_layernorm_fwd(G, dt, y.p, mean.as<float>(), rstd.as<float>(), x.p, w.p, b.p, Nb, C, 1e-5f)); }),
           2.0 * nd * es, 0);
    report("layernorm_bwd", time_us([&] { GK(zf_gk_layernorm_bwd(G, dt, z.p, gw.as<float>(), gb.as<float>(), y.p, x.p, w.p, mean.as<float>(), rstd.as<float>(), Nb, C)); }),
           4.0 * nd * es, 0);
    report("gelu_fwd (N x 4C)", time_us([&] { GK(zf_gk_gelu_fwd(G, dt, g4.p, h4.p, n4)); }), 2.0 * n4 * es, 0);
    report("gelu_bwd (N x 4C)", time_us([&] { GK(zf_gk_gelu_bwd(G, dt, g4.p, g4.p, h4.p, n4)); }), 3.0 * n4 * es, 0);
    report("residual_fwd (dropout 0.1)", time_us([&] { GK(zf_gk_residual_fwd(G, dt, z.p, x.p, y.p, nd, 0.1f, 1, 2)); }),
           3.0 * nd * es, 0);
    report("bias_grad (N x 4C)", time_us([&] { GK(zf_gk_bias_grad(G, dt, gb.as<float>(), h4.p, Nb, 4 * C)); }), 1.0 * n4 * es, 0);
    report("linear_fwd qkv (N x C -> 3C, bias)", time_us([&] { GK(zf_linear_fwd(MM, S, dt, q.p, x.p, W.p, bias3.p, Nb, C, 3 * C)); }),
           0, 2.0 * Nb * C * 3 * C);
    report("linear_bwd qkv (dW fp32 +=, dx)", time_us([&] { GK(zf_linear_bwd(MM, S, dt, y.p, gW.as<float>(), q.p, x.p, W.p, Nb, C, 3 * C)); }),
           0, 4.0 * Nb * C * 3 * C);
    report("classifier fwd+bwd", time_us([&] { GK(zf_gk_classifier(G, dt, x.p, wte.p, tgt.as<int32_t>(), Nb, C, Vb, 1.0f, loss.as<float>(), lmean.as<float>(), NULL, y.p, gte.as<float>())); }),
           0, 6.0 * Nb * Vb * C);
    printf("  (classifier chunk rows: %d)\n", zf_gk_classifier_chunk_rows(G, dt, Nb, Vb));
    {
        /* what the model runs: the forward keeps softmax - onehot, the backward is two products */
        Dev ds((size_t)Nb * ((Vb + 63) / 64 * 64) * es);
        report("classifier fwd_save + bwd_saved", time_us([&] {
                   GK(zf_gk_classifier_fwd_save(G, dt, x.p, wte.p, tgt.as<int32_t>(), Nb, C, Vb, loss.as<float>(),
                                                lmean.as<float>(), NULL, ds.p));
                   GK(zf_gk_classifier_bwd_saved(G, dt, ds.p, x.p, wte.p, Nb, C, Vb, 1.0f / Nb, y.p, gte.as<float>()));
               }),
               0, 6.0 * Nb * Vb * C);
        report("classifier fwd_save", time_us([&] {
                   GK(zf_gk_classifier_fwd_save(G, dt, x.p, wte.p, tgt.as<int32_t>(), Nb, C, Vb, loss.as<float>(),
                                                lmean.as<float>(), NULL, ds.p));
               }),
               0, 2.0 * Nb * Vb * C);
    }
    report("classifier fwd only", time_us([&] { GK(zf_gk_classifier(G, dt, x.p, wte.p, tgt.as<int32_t>(), Nb, C, Vb, 1.0f, loss.as<float>(), lmean.as<float>(), NULL, NULL, NULL)); }),
           0, 2.0 * Nb * Vb * C);
    {
        const int R = zf_gk_classifier_chunk_rows(G, dt, Nb, Vb), ld = (Vb + 63) / 64 * 64;
        Dev lg((size_t)R * ld * 4), dl((size_t)R * ld * es), wtp((size_t)ld * C * es);
        fill(lg.p, ZF_GPU_F32, (size_t)R * ld, 1.0f);
        fill(dl.p, dt, (size_t)R * ld, 1e-3f);
        fill(wtp.p, dt, (size_t)ld * C, 1.0f);
        const double f = 2.0 * R * Vb * C;
        printf("  classifier products per chunk of %d rows (vocabulary padded to %d):\n", R, ld);
        report("  chunk logits  [R,Vp] fp32 = h wte^T", time_us([&] { GK(zf_matmul(MM, S, dt, ZF_GPU_F32, R, ld, C, x.p, C, 0, wtp.p, C, 1, lg.p, ld, 1.0f, 0.0f, ZF_MM_DEFAULT, NULL, NULL, 0)); }), 0, f);
        report("  chunk dh      [R,C] = dl wte (K=Vp)", time_us([&] { GK(zf_matmul(MM, S, dt, dt, R, C, ld, dl.p, ld, 0, wtp.p, C, 0, y.p, C, 1.0f, 0.0f, ZF_MM_DEFAULT, NULL, NULL, 0)); }), 0, f);
        report("  (unpadded) logits [R,V]", time_us([&] { GK(zf_matmul(MM, S, dt, ZF_GPU_F32, R, Vb, C, x.p, C, 0, wte.p, C, 1, lg.p, ld, 1.0f, 0.0f, ZF_MM_DEFAULT, NULL, NULL, 0)); }), 0, f);
        report("  chunk dwte    [V,C] fp32 += dl^T h", time_us([&] { GK(zf_matmul(MM, S, dt, ZF_GPU_F32, Vb, C, R, dl.p, ld, 1, x.p, C, 0, gte.p, C, 1.0f, 1.0f, ZF_MM_DEFAULT, NULL, NULL, 0)); }), 0, f);
    }
    {
        zf_err e;
        zf_gk *G1 = zf_gk_create(S, MM, (size_t)1 << 30, &e);
        report("classifier fwd+bwd, 1 GiB chunks", time_us([&] { if (zf_gk_classifier(G1, dt, x.p, wte.p, tgt.as<int32_t>(), Nb, C, Vb, 1.0f, loss.as<float>(), lmean.as<float>(), NULL, y.p, gte.as<float>())) nfail++; }),
               0, 6.0 * Nb * Vb * C);
        printf("  (chunk rows: %d)\n", zf_gk_classifier_chunk_rows(G1, dt, Nb, Vb));
        zf_gk_free(G1);
    }
    {
        Dev p(np * 4), gr(np * 4), m(np * 4), v(np * 4), lp(np * es);
        for (const Dev *d : {&p, &gr, &m, &v}) fill(d->p, ZF_GPU_F32, np, 0.5f);
        CK(cudaMemsetAsync(v.p, 0, np * 4, S)); /* v >= 0 */
        zf_adamw_hparams hp = {6e-4, 0.9, 0.95, 1e-8, 0.1};
        report("adamw 124M (fp32 master, bf16 copy)", time_us([&] { GK(zf_gk_adamw(G, p.as<float>(), gr.as<float>(), m.as<float>(), v.as<float>(), lp.p, dt, np, &hp, 1, 1.0f, 1)); }),
               (double)np * (4 * 7 + es), 0);
        double ss;
        long long nf;
        report("grad_stats 124M (syncs)", time_us([&] { GK(zf_gk_grad_stats(G, gr.as<float>(), np, &ss, &nf)); }),
               (double)np * 4, 0);
        report("convert fp32 -> bf16 124M", time_us([&] { GK(zf_gk_convert(G, lp.p, dt, p.p, ZF_GPU_F32, np)); }),
               (double)np * (4 + es), 0);
    }
}

int main(int argc, char **argv)
{
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        fprintf(stderr, "no CUDA device: skipped\n");
        return 77;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    CK(cudaStreamCreate(&S));
    zf_err err;
    MM = zf_matmul_create(0, &err);
    if (!MM) {
        fprintf(stderr, "zf_matmul_create: %s\n", err.msg);
        return 1;
    }
    G = zf_gk_create(S, MM, 0, &err);
    if (!G) {
        fprintf(stderr, "zf_gk_create: %s\n", err.msg);
        return 1;
    }
    zf_rng_seed(&R, 20240611, 0);
    if (getenv("ZF_BENCH_REPS")) { /* e.g. 1 under ncu */
        bench_reps = atoi(getenv("ZF_BENCH_REPS"));
        bench_warm = 1;
        if (bench_reps < 1) bench_reps = 1;
    }
    if (argc > 1 && !strcmp(argv[1], "--bench-only")) {
        bench();
        printf("%d failed\n", nfail);
        return nfail ? 1 : 0;
    }
    test_bad_args();
    test_grad_stats();
    test_type<float>();
    test_type<__nv_bfloat16>();
    test_type<__half>();
    CK(cudaStreamSynchronize(S));
    CK(cudaGetLastError());

    /* worst error per check over C, by type */
    printf("\nworst error over C = 36, 64, 100 (1600 for LayerNorm, embeddings) (tolerance)\n%-38s %-18s %-18s %-18s\n", "check", "fp32", "bf16", "fp16");
    for (const std::string &name : order) {
        printf("%-38s", name.c_str());
        for (int t = 0; t < 3; t++) {
            char cell[64] = "-";
            if (worst[t].count(name)) snprintf(cell, sizeof cell, "%.2e (%.0e)", worst[t][name], tolof[t][name]);
            printf(" %-18s", cell);
        }
        printf("\n");
    }
    printf("\nmatmul plans cached: %d\n", zf_matmul_cached_plans(MM));
    if (argc > 1 && !strcmp(argv[1], "--bench")) bench();
    for (const std::string &f : failures) printf("FAILED: %s\n", f.c_str());
    printf("%d checks, %d failed\n", nchecks, nfail);
    zf_gk_free(G);
    zf_matmul_free(MM);
    cudaStreamDestroy(S);
    return nfail ? 1 : 0;
}
