/* probe_gpt2_cuda.c - driver of the GPU GPT-2 model (trainer/cuda/gpt2_cuda.cu)
 * for tests/gpu/test_gpt2_cuda.py; the GPU twin of tests/c/probe_gpt2.c's
 * fwdbwd command, with the same files.  Built only in the CUDA build
 * (tests/gpu/NAME.c -> bin/gpu/NAME, linked with the core and CUDA objects).
 *
 *   probe_gpt2_cuda fwdbwd --model DIR --tokens F [--targets F] --B n --T n --out DIR
 *                   [--dtype fp32|bf16|fp16] [--train --seed S] [--scale X]
 *                   [--accum K] [--repeat K] [--logits]
 *       OUT/loss.txt ("%.9g %a"; a line GRADS-DIFFER if a repeat's gradients
 *       differ from the first), OUT/grads.f32 (flat layout, with --targets),
 *       OUT/logits.f32 [B,T,V] with --logits, OUT/table.txt.
 *   probe_gpt2_cuda bench --config JSON [--vocab n] --B n --T n [--dtype d] [--steps n] [--train]
 *       random-init model; prints mean milliseconds of forward and backward
 *   probe_gpt2_cuda ckptcmp --config JSON [--vocab n] --B n --T n [--dtype d]
 *       activation checkpointing: a random-init model with and without it,
 *       two accumulated training forward/backward passes (dropout on); prints
 *       one line "ckptcmp ... loss_equal L grads_equal G max_abs_diff X
 *       bytes_full F bytes_ckpt C ms_full a ms_ckpt b" (1 = bitwise equal) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "hf_model.h"
#include "log.h"
#include "model.h"
#include "rng.h"
#include "trainer/cuda/gpt2_cuda.cuh"
#include "tests/c/probe_util.h"

static zf_gpu_dtype parse_dtype(const char *s)
{
    if (!strcmp(s, "fp32")) return ZF_GPU_F32;
    if (!strcmp(s, "bf16")) return ZF_GPU_BF16;
    if (!strcmp(s, "fp16")) return ZF_GPU_F16;
    zf_die("--dtype: expected fp32, bf16 or fp16, got %s", s);
}

static int cmd_fwdbwd(int argc, char **argv)
{
    zf_gpt2_config cfg;
    zf_param_table t;
    float *params;
    zf_err err;
    if (zf_hf_load(need(argc, argv, "--model"), &cfg, &t, &params, &err)) zf_die("%s", err.msg);
    const int B = atoi(need(argc, argv, "--B")), T = atoi(need(argc, argv, "--T"));
    const char *out = need(argc, argv, "--out");
    size_t nt, ng = 0;
    int32_t *tok = read_i32(need(argc, argv, "--tokens"), &nt);
    const char *tp = opt(argc, argv, "--targets", NULL);
    int32_t *tgt = tp ? read_i32(tp, &ng) : NULL;
    if (nt != (size_t)B * T || (tgt && ng != nt)) zf_die("token files: expected %d values", B * T);
    const int train = flag(argc, argv, "--train");
    const uint64_t seed = strtoull(opt(argc, argv, "--seed", "0"), NULL, 0);
    const int repeat = atoi(opt(argc, argv, "--repeat", "1")), accum = atoi(opt(argc, argv, "--accum", "1"));
    const float scale = strtof(opt(argc, argv, "--scale", "1"), NULL);
    const zf_gpu_dtype dt = parse_dtype(opt(argc, argv, "--dtype", "fp32"));
    zf_gpt2c *m = zf_gpt2c_create(&cfg, &t, dt, B, T, &err);
    if (!m) zf_die("%s", err.msg);
    if (zf_gpt2c_set_params(m, params, &err)) zf_die("%s", err.msg);
    float *grads = zf_params_alloc(&t), *g2 = zf_params_alloc(&t);
    char path[4096];
    snprintf(path, sizeof path, "%s/loss.txt", out);
    FILE *lf = fopen(path, "w");
    if (!lf) zf_die("%s: cannot create", path);
    for (int r = 0; r < repeat; r++) {
        if (zf_gpt2c_zero_grads(m, &err)) zf_die("%s", err.msg);
        float loss = zf_gpt2c_forward(m, tok, tgt, B, T, train, seed);
        if (loss != loss) zf_die("%s", zf_gpt2c_error(m));
        fprintf(lf, "%.9g %a\n", loss, loss);
        if (r == 0 && flag(argc, argv, "--logits")) {
            float *lg = zf_xmalloc((size_t)B * T * cfg.vocab_size * sizeof(float));
            if (zf_gpt2c_logits(m, lg, &err)) zf_die("%s", err.msg);
            write_raw(out, "logits.f32", lg, (size_t)B * T * cfg.vocab_size * sizeof(float));
            free(lg);
        }
        if (!tgt) continue;
        if (zf_gpt2c_backward(m, scale, &err)) zf_die("%s", err.msg);
        /* --accum K: K forward/backward passes adding into one buffer */
        for (int a = 1; a < accum; a++) {
            if (zf_gpt2c_forward(m, tok, tgt, B, T, train, seed) != loss) fprintf(lf, "LOSS-DIFFERS\n");
            if (zf_gpt2c_backward(m, scale, &err)) zf_die("%s", err.msg);
        }
        if (zf_gpt2c_get_grads(m, r == 0 ? grads : g2, &err)) zf_die("%s", err.msg);
        if (r == 0) write_raw(out, "grads.f32", grads, t.total * sizeof(float));
        else if (memcmp(g2, grads, t.total * sizeof(float)) != 0) fprintf(lf, "GRADS-DIFFER\n");
    }
    fclose(lf);
    write_table(out, &t, 0);
    zf_gpt2c_free(m);
    free(grads);
    free(g2);
    free(params);
    free(tok);
    free(tgt);
    zf_param_table_free(&t);
    return 0;
}

/* --config PRESET.json [--vocab N]: the preset's config, its parameter
 * table and freshly initialised parameters (seed 1). */
static float *preset_model(int argc, char **argv, zf_gpt2_config *cfg, zf_param_table *t)
{
    zf_err err;
    if (zf_gpt2_preset_load(need(argc, argv, "--config"), atoi(opt(argc, argv, "--vocab", "0")), cfg, &err))
        zf_die("%s", err.msg);
    zf_gpt2_param_table(cfg, t);
    float *p = zf_params_alloc(t);
    zf_gpt2_init_params(cfg, t, p, 1);
    return p;
}

static int cmd_bench(int argc, char **argv)
{
    zf_gpt2_config cfg;
    zf_err err;
    zf_param_table t;
    float *p = preset_model(argc, argv, &cfg, &t);
    const int B = atoi(need(argc, argv, "--B")), T = atoi(need(argc, argv, "--T"));
    const int steps = atoi(opt(argc, argv, "--steps", "10")), train = flag(argc, argv, "--train");
    const zf_gpu_dtype dt = parse_dtype(opt(argc, argv, "--dtype", "bf16"));
    zf_gpt2c *m = zf_gpt2c_create(&cfg, &t, dt, B, T, &err);
    if (!m || zf_gpt2c_set_params(m, p, &err)) zf_die("%s", err.msg);
    int32_t *tok = zf_xmalloc((size_t)B * T * sizeof *tok), *tgt = zf_xmalloc((size_t)B * T * sizeof *tgt);
    zf_rng r;
    zf_rng_seed(&r, 5, 0);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)zf_rng_below(&r, (uint64_t)cfg.vocab_size);
        tgt[i] = (int32_t)zf_rng_below(&r, (uint64_t)cfg.vocab_size);
    }
    double tf = 0, tb = 0;
    float loss = 0;
    for (int s = -2; s < steps; s++) { /* two warm-up steps (plans, scratch) */
        double t0 = zf_now();
        loss = zf_gpt2c_forward(m, tok, tgt, B, T, train, (uint64_t)(s + 2));
        if (loss != loss) zf_die("%s", zf_gpt2c_error(m));
        double t1 = zf_now();
        if (zf_gpt2c_backward(m, 1.0f, &err)) zf_die("%s", err.msg);
        if (cudaStreamSynchronize(zf_gpt2c_stream(m)) != cudaSuccess) zf_die("backward failed on the device");
        double t2 = zf_now();
        if (s >= 0) { tf += t1 - t0; tb += t2 - t1; }
    }
    const double tok_s = (double)B * T * steps / (tf + tb);
    printf("%s params %zu B %d T %d loss %.4f forward %.2f ms backward %.2f ms step %.2f ms (%.0f tokens/s)\n",
           zf_gpu_dtype_name(dt), zf_param_count(&t), B, T, loss, 1e3 * tf / steps, 1e3 * tb / steps,
           1e3 * (tf + tb) / steps, tok_s);
    zf_gpt2c_free(m);
    free(p);
    free(tok);
    free(tgt);
    zf_param_table_free(&t);
    return 0;
}

/* fwd+bwd of two micro-batches (different dropout seeds) into zeroed grads;
 * returns the milliseconds of the second pass */
static double two_passes(zf_gpt2c *m, const int32_t *tok, const int32_t *tgt, int B, int T, float *loss, float *grads)
{
    zf_err err;
    if (zf_gpt2c_zero_grads(m, &err)) zf_die("%s", err.msg);
    double t0 = 0;
    for (int k = 0; k < 2; k++) {
        if (k == 1) {
            if (cudaStreamSynchronize(zf_gpt2c_stream(m)) != cudaSuccess) zf_die("device failure");
            t0 = zf_now();
        }
        loss[k] = zf_gpt2c_forward(m, tok, tgt, B, T, 1, 11u + (uint64_t)k);
        if (loss[k] != loss[k]) zf_die("%s", zf_gpt2c_error(m));
        if (zf_gpt2c_backward(m, 1.0f, &err)) zf_die("%s", err.msg);
    }
    if (cudaStreamSynchronize(zf_gpt2c_stream(m)) != cudaSuccess) zf_die("device failure");
    double ms = 1e3 * (zf_now() - t0);
    if (zf_gpt2c_get_grads(m, grads, &err)) zf_die("%s", err.msg);
    return ms;
}

static int cmd_ckptcmp(int argc, char **argv)
{
    zf_gpt2_config cfg;
    zf_err err;
    zf_param_table t;
    float *p = preset_model(argc, argv, &cfg, &t), *ga = zf_params_alloc(&t), *gb = zf_params_alloc(&t);
    const int B = atoi(need(argc, argv, "--B")), T = atoi(need(argc, argv, "--T"));
    const zf_gpu_dtype dt = parse_dtype(opt(argc, argv, "--dtype", "bf16"));
    int32_t *tok = zf_xmalloc((size_t)B * T * sizeof *tok), *tgt = zf_xmalloc((size_t)B * T * sizeof *tgt);
    zf_rng r;
    zf_rng_seed(&r, 9, 0);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)zf_rng_below(&r, (uint64_t)cfg.vocab_size);
        tgt[i] = (int32_t)zf_rng_below(&r, (uint64_t)cfg.vocab_size);
    }
    float la[2], lb[2];
    size_t bytes[2];
    double ms[2];
    for (int ck = 0; ck < 2; ck++) {
        zf_gpt2c *m = zf_gpt2c_create_ex(&cfg, &t, dt, B, T, &(zf_gpt2c_options){.act_checkpointing = ck}, &err);
        if (!m || zf_gpt2c_set_params(m, p, &err)) zf_die("%s", err.msg);
        if (zf_gpt2c_act_checkpointing(m) != ck) zf_die("act_checkpointing flag not kept");
        two_passes(m, tok, tgt, B, T, ck ? lb : la, ck ? gb : ga); /* warm-up: plans, scratch */
        ms[ck] = two_passes(m, tok, tgt, B, T, ck ? lb : la, ck ? gb : ga);
        bytes[ck] = zf_gpt2c_device_bytes(m);
        zf_gpt2c_free(m);
    }
    double maxd = 0;
    for (size_t i = 0; i < t.total; i++) {
        double d = ga[i] > gb[i] ? (double)ga[i] - gb[i] : (double)gb[i] - ga[i];
        if (!(d <= maxd)) maxd = d; /* NaN propagates */
    }
    printf("ckptcmp %s params %zu B %d T %d loss %.6f %.6f loss_equal %d grads_equal %d max_abs_diff %g "
           "bytes_full %zu bytes_ckpt %zu ms_full %.2f ms_ckpt %.2f\n",
           zf_gpu_dtype_name(dt), zf_param_count(&t), B, T, la[0], la[1],
           memcmp(la, lb, sizeof la) == 0, memcmp(ga, gb, t.total * sizeof(float)) == 0, maxd, bytes[0], bytes[1],
           ms[0], ms[1]);
    free(p);
    free(ga);
    free(gb);
    free(tok);
    free(tgt);
    zf_param_table_free(&t);
    return 0;
}

int main(int argc, char **argv)
{
    zf_log_init("probe_gpt2_cuda");
    if (argc >= 2 && !strcmp(argv[1], "fwdbwd")) return cmd_fwdbwd(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "bench")) return cmd_bench(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "ckptcmp")) return cmd_ckptcmp(argc, argv);
    zf_die("usage: probe_gpt2_cuda fwdbwd|bench|ckptcmp ...");
}
