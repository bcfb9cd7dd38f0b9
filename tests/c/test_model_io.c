/* test_model_io.c - the GPT-2 parameter table, config and preset files,
 * the safetensors reader/writer, parameter initialisation and model name
 * resolution (lib/model.c, lib/safetensors.c, lib/hf_model.c).
 *
 * Numerics of the model itself are checked against PyTorch by
 * tests/py/test_gpt2_reference.py; this file checks the invariants the rest
 * of zeroflow relies on: offsets/alignment/total of the flat buffer, the
 * parameter counts of the GPT-2 presets, exact fp16/bf16 conversions, a
 * writer/reader round trip, rejected corrupt files, init statistics that
 * depend only on the seed (also when a range is initialised alone), and
 * where model names resolve to. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf_model.h"
#include "log.h"
#include "model.h"
#include "safetensors.h"
#include "zf_check.h"

static char tmpdir[256];

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) { printf("cannot write %s\n", path); exit(1); }
    fputs(text, f);
    fclose(f);
}

static zf_gpt2_config small_cfg(void)
{
    zf_gpt2_config c = {.n_layer = 3, .n_head = 3, .n_embd = 36, .n_positions = 40, .vocab_size = 317,
                        .layer_norm_epsilon = 1e-5f, .embd_pdrop = 0.1f, .attn_pdrop = 0.1f, .resid_pdrop = 0.1f};
    return c;
}

/* ------------------------------------------------------------ param table */

static void check_table(const zf_gpt2_config *c)
{
    zf_param_table t;
    zf_gpt2_param_table(c, &t);
    const size_t d = (size_t)c->n_embd;
    CHECK(t.count == 2 + 12 * c->n_layer + 2, "count %d", t.count);
    size_t expect_params = (size_t)c->vocab_size * d + (size_t)c->n_positions * d +
                           (size_t)c->n_layer * (12 * d * d + 13 * d) + 2 * d;
    CHECK(zf_param_count(&t) == expect_params, "param count %zu, expected %zu", zf_param_count(&t), expect_params);
    size_t end = 0;
    for (int i = 0; i < t.count; i++) {
        const zf_tensor_info *x = &t.t[i];
        CHECK(x->offset % ZF_PARAM_ALIGN == 0, "%s offset %zu not aligned", x->name, x->offset);
        CHECK(x->offset >= end && x->offset - end < ZF_PARAM_ALIGN, "%s offset %zu after end %zu", x->name, x->offset, end);
        size_t numel = (size_t)x->shape[0] * (x->ndim == 2 ? (size_t)x->shape[1] : 1);
        CHECK(x->numel == numel, "%s numel", x->name);
        CHECK(x->decay == (x->ndim == 2), "%s decay flag", x->name);
        CHECK(strncmp(x->name, "transformer.", 12) == 0, "%s prefix", x->name);
        CHECK(zf_param_find(&t, x->name) == x, "%s lookup", x->name);
        end = x->offset + x->numel;
    }
    CHECK(t.total == (end + ZF_PARAM_ALIGN - 1) / ZF_PARAM_ALIGN * ZF_PARAM_ALIGN, "total %zu, end %zu", t.total, end);
    /* HF order and shapes */
    CHECK(!strcmp(t.t[0].name, "transformer.wte.weight") && t.t[0].shape[0] == c->vocab_size && t.t[0].shape[1] == (int64_t)d,
          "wte first");
    CHECK(!strcmp(t.t[1].name, "transformer.wpe.weight") && t.t[1].shape[0] == c->n_positions, "wpe second");
    static const char *const order[12] = {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                          "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                          "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
    for (int l = 0; l < c->n_layer; l++)
        for (int k = 0; k < 12; k++) {
            char n[96];
            snprintf(n, sizeof n, "transformer.h.%d.%s", l, order[k]);
            CHECK(!strcmp(t.t[2 + 12 * l + k].name, n), "position of %s", n);
        }
    const zf_tensor_info *qkv = zf_param_find(&t, "transformer.h.0.attn.c_attn.weight");
    CHECK(qkv && qkv->shape[0] == (int64_t)d && qkv->shape[1] == 3 * (int64_t)d, "c_attn.weight is [d,3d] (Conv1D)");
    const zf_tensor_info *fcp = zf_param_find(&t, "transformer.h.0.mlp.c_proj.weight");
    CHECK(fcp && fcp->shape[0] == 4 * (int64_t)d && fcp->shape[1] == (int64_t)d, "mlp.c_proj.weight is [4d,d]");
    CHECK(!strcmp(t.t[t.count - 1].name, "transformer.ln_f.bias"), "ln_f.bias last");
    CHECK(zf_param_find(&t, "lm_head.weight") == NULL, "no lm_head (tied)");
    zf_param_table_free(&t);
}

static void test_tables_and_presets(void)
{
    zf_gpt2_config c = small_cfg();
    check_table(&c);
    c.n_layer = 1; c.n_embd = 5; c.n_head = 1; c.vocab_size = 3; c.n_positions = 1;
    check_table(&c);
    /* presets: HF's published parameter counts (tied head) */
    static const struct { const char *name; size_t params; int L, H, D; } presets[] = {
        {"gpt2-124m", 124439808, 12, 12, 768},
        {"gpt2-350m", 354823168, 24, 16, 1024},
        {"gpt2-774m", 774030080, 36, 20, 1280},
        {"gpt2-1558m", 1557611200, 48, 25, 1600},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        char path[4096];
        int is_preset = 0;
        zf_err err = {{0}};
        int rc = zf_model_resolve(presets[i].name, path, sizeof path, &is_preset, &err);
        CHECK(rc == 0 && is_preset, "preset %s resolves (%s)", presets[i].name, err.msg);
        if (rc) continue;
        zf_gpt2_config pc;
        rc = zf_gpt2_preset_load(path, 0, &pc, &err);
        CHECK(rc == 0, "preset %s loads: %s", presets[i].name, err.msg);
        if (rc) continue;
        CHECK(pc.n_layer == presets[i].L && pc.n_head == presets[i].H && pc.n_embd == presets[i].D &&
              pc.n_positions == 1024 && pc.vocab_size == 50257, "preset %s shape", presets[i].name);
        zf_param_table t;
        zf_gpt2_param_table(&pc, &t);
        CHECK(zf_param_count(&t) == presets[i].params, "preset %s: %zu params, expected %zu", presets[i].name,
              zf_param_count(&t), presets[i].params);
        zf_param_table_free(&t);
    }
    char path[4096];
    int is_preset = 0;
    zf_err err = {{0}};
    CHECK(zf_model_resolve("zf-demo", path, sizeof path, &is_preset, &err) == 0 && is_preset, "zf-demo resolves: %s",
          err.msg);
    zf_gpt2_config dc;
    CHECK(zf_gpt2_preset_load(path, 0, &dc, &err) != 0 && strstr(err.msg, "auto"), "zf-demo needs the tokenizer size");
    CHECK(zf_gpt2_preset_load(path, 4000, &dc, &err) == 0 && dc.vocab_size == 4000 && dc.n_layer <= 6 && dc.n_embd <= 256,
          "zf-demo is small and takes the tokenizer's vocab size");
    CHECK(zf_gpt2_config_load(path, &dc, &err) != 0 && strstr(err.msg, "vocab_size"),
          "config.json loading does not accept vocab_size auto");
}

/* ----------------------------------------------------------------- config */

static void test_config_io(void)
{
    char p[512];
    zf_err err = {{0}};
    zf_gpt2_config c = small_cfg(), r;
    c.embd_pdrop = 0.0f;
    c.layer_norm_epsilon = 1e-6f;
    snprintf(p, sizeof p, "%s/config.json", tmpdir);
    CHECK(zf_gpt2_config_save(p, &c, &err) == 0, "save: %s", err.msg);
    CHECK(zf_gpt2_config_load(p, &r, &err) == 0, "load: %s", err.msg);
    CHECK(memcmp(&c, &r, sizeof c) == 0, "config round trip");
    static const struct { const char *json, *phrase; } bad[] = {
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_positions\":4,\"vocab_size\":4}",
         "unknown architecture"},
        {"{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_head\":3,\"n_embd\":4,\"n_positions\":4,\"vocab_size\":4}", "n_head"},
        {"{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"vocab_size\":4}", "n_positions"},
        {"{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_positions\":4,\"vocab_size\":-4}", "vocab_size"},
        {"{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_positions\":4,\"vocab_size\":4,\"n_inner\":7}",
         "n_inner"},
        {"{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_positions\":4,\"vocab_size\":4,"
         "\"resid_pdrop\":1.0}", "resid_pdrop"},
        {"{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_positions\":4,\"vocab_size\":4,"
         "\"tie_word_embeddings\":false}", "tie_word_embeddings"},
        {"{\"model_type\":\"gpt2\", \"n_layer\":1,", "invalid JSON"},
        {"{\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_positions\":4,\"vocab_size\":4}", "unknown architecture"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(p, bad[i].json);
        err.msg[0] = 0;
        int rc = zf_gpt2_config_load(p, &r, &err);
        CHECK(rc != 0 && strstr(err.msg, bad[i].phrase) && strstr(err.msg, p) && !strchr(err.msg, '\n'),
              "bad config %zu rejected naming '%s': got '%s'", i, bad[i].phrase, err.msg);
    }
}

/* ------------------------------------------------------------ safetensors */

static void test_half_conversions(void)
{
    CHECK(zf_f32_to_f16(1.0f) == 0x3C00 && zf_f32_to_f16(-2.0f) == 0xC000, "f16 of 1, -2");
    CHECK(zf_f32_to_f16(65504.0f) == 0x7BFF && zf_f32_to_f16(65520.0f) == 0x7C00, "f16 max and overflow");
    CHECK(zf_f32_to_f16(0x1.0p-24f) == 0x0001 && zf_f32_to_f16(0x1.0p-26f) == 0x0000, "f16 subnormals");
    CHECK(zf_f32_to_f16(0.1f) == 0x2E66, "f16 of 0.1 rounds to nearest");
    CHECK(zf_f32_to_f16(1.0f + 0x1.0p-11f) == 0x3C00 && zf_f32_to_f16(1.0f + 3 * 0x1.0p-11f) == 0x3C02,
          "f16 ties to even");
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = zf_f16_to_f32((uint16_t)h);
        if (isnan(f)) { if (!isnan(zf_f16_to_f32(zf_f32_to_f16(f)))) bad16++; }
        else if (zf_f32_to_f16(f) != h) bad16++;
        float g = zf_bf16_to_f32((uint16_t)h);
        if (isnan(g)) { if (!isnan(zf_bf16_to_f32(zf_f32_to_bf16(g)))) badbf++; }
        else if (zf_f32_to_bf16(g) != h) badbf++;
    }
    CHECK(bad16 == 0, "all 65536 f16 values round-trip (%d bad)", bad16);
    CHECK(badbf == 0, "all 65536 bf16 values round-trip (%d bad)", badbf);
    CHECK(zf_f16_to_f32(0x0001) == 0x1.0p-24f && zf_f16_to_f32(0x7C00) == INFINITY, "f16 decode");
    CHECK(zf_f32_to_bf16(1.0f + 0x1.0p-8f) == 0x3F80 && zf_f32_to_bf16(1.0f + 3 * 0x1.0p-8f) == 0x3F82,
          "bf16 ties to even");
}

static void test_safetensors(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/t.safetensors", tmpdir);
    float a[15];
    for (int i = 0; i < 15; i++) a[i] = (float)i * 0.25f - 1.0f;
    uint16_t h[7], bf[4];
    const float hv[7] = {0.5f, -1.5f, 3.0f, 0.0f, 65504.0f, -0.125f, 1024.0f};
    for (int i = 0; i < 7; i++) h[i] = zf_f32_to_f16(hv[i]);
    const float bv[4] = {1.0f, -2.0f, 0.5f, 3.0e38f};
    for (int i = 0; i < 4; i++) bf[i] = zf_f32_to_bf16(bv[i]);
    int64_t ints[2] = {7, -7};
    zf_st_entry e[5] = {
        {.name = "a", .dtype = ZF_ST_F32, .ndim = 2, .shape = {3, 5}, .data = a},
        {.name = "h", .dtype = ZF_ST_F16, .ndim = 1, .shape = {7}, .data = h},
        {.name = "weird \"name\"", .dtype = ZF_ST_BF16, .ndim = 2, .shape = {2, 2}, .data = bf},
        {.name = "ints", .dtype = ZF_ST_I64, .ndim = 1, .shape = {2}, .data = ints},
        {.name = "empty", .dtype = ZF_ST_F32, .ndim = 2, .shape = {0, 4}, .data = NULL},
    };
    zf_err err = {{0}};
    CHECK(zf_st_write(p, e, 5, &err) == 0, "write: %s", err.msg);
    zf_st_file f;
    CHECK(zf_st_open(p, &f, &err) == 0, "open: %s", err.msg);
    if (f.count != 5) { CHECK(0, "5 tensors read back, got %d", f.count); return; }
    CHECK((f.data - (const unsigned char *)f.map) % 8 == 0, "data section 8-byte aligned");
    CHECK(f.data_size == 60 + 14 + 8 + 16, "data size %zu", f.data_size);
    for (int i = 0; i < 5; i++) CHECK(!strcmp(f.t[i].name, e[i].name), "order/name %d: %s", i, f.t[i].name);
    const zf_st_tensor *ta = zf_st_find(&f, "a");
    CHECK(ta && ta->dtype == ZF_ST_F32 && ta->ndim == 2 && ta->shape[0] == 3 && ta->shape[1] == 5 && ta->begin == 0 &&
          ta->end == 60, "tensor a header");
    float out[15];
    CHECK(ta && zf_st_read_f32(&f, ta, out, &err) == 0 && memcmp(out, a, sizeof a) == 0, "tensor a data");
    const zf_st_tensor *th = zf_st_find(&f, "h");
    CHECK(th && zf_st_read_f32(&f, th, out, &err) == 0 && memcmp(out, hv, sizeof hv) == 0, "F16 converted exactly");
    const zf_st_tensor *tb = zf_st_find(&f, "weird \"name\"");
    CHECK(tb && zf_st_read_f32(&f, tb, out, &err) == 0 && out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.5f &&
          fabsf(out[3] - 3.0e38f) < 3.0e36f, "BF16 converted, JSON escaping of names");
    const zf_st_tensor *ti = zf_st_find(&f, "ints");
    err.msg[0] = 0;
    CHECK(ti && zf_st_read_f32(&f, ti, out, &err) != 0 && strstr(err.msg, "got I64"), "I64 refused: %s", err.msg);
    const zf_st_tensor *t0 = zf_st_find(&f, "empty");
    CHECK(t0 && t0->numel == 0 && t0->begin == t0->end, "zero-size tensor");
    CHECK(zf_st_find(&f, "nope") == NULL, "unknown name not found");
    size_t size = f.file_size;
    zf_st_close(&f);

    /* corrupt copies: every one must fail with a one-line message naming the file */
    FILE *in = fopen(p, "rb");
    unsigned char *raw = zf_xmalloc(size);
    CHECK(fread(raw, 1, size, in) == size, "reread");
    fclose(in);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];
    char q[600];
    snprintf(q, sizeof q, "%s/bad.safetensors", tmpdir);
    struct { size_t cut; int poke_at; unsigned char poke; const char *phrase; } cases[] = {
        {size - 1, -1, 0, "beyond the file's"},            /* last tensor cut short */
        {7, -1, 0, "expected at least 8"},                  /* no header length */
        {size, 7, 0x40, "beyond the file's size"},          /* huge header length */
        {size, 8, '[', "expected a JSON object"},           /* header not an object */
        {size, 9, '{', "invalid JSON"},                     /* broken JSON */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char saved = 0;
        if (cases[i].poke_at >= 0) { saved = raw[cases[i].poke_at]; raw[cases[i].poke_at] = cases[i].poke; }
        FILE *o = fopen(q, "wb");
        fwrite(raw, 1, cases[i].cut, o);
        fclose(o);
        if (cases[i].poke_at >= 0) raw[cases[i].poke_at] = saved;
        err.msg[0] = 0;
        int rc = zf_st_open(q, &f, &err);
        CHECK(rc != 0 && strstr(err.msg, cases[i].phrase) && strstr(err.msg, q) && !strchr(err.msg, '\n'),
              "corrupt case %zu: expected '%s', got '%s'", i, cases[i].phrase, err.msg);
        if (rc == 0) zf_st_close(&f);
    }
    free(raw);
    (void)hlen;
}

/* ------------------------------------------------------------------- init */

static void stats(const float *x, size_t n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) { s += x[i]; s2 += (double)x[i] * x[i]; }
    *mean = s / n;
    *sd = sqrt(s2 / n - *mean * *mean);
}

static void test_init(void)
{
    zf_gpt2_config c = {.n_layer = 4, .n_head = 4, .n_embd = 128, .n_positions = 256, .vocab_size = 1000,
                        .layer_norm_epsilon = 1e-5f};
    zf_param_table t;
    zf_gpt2_param_table(&c, &t);
    float *p1 = zf_params_alloc(&t), *p2 = zf_params_alloc(&t), *p3 = zf_params_alloc(&t);
    for (size_t i = 0; i < t.total; i++) p1[i] = p2[i] = 7.0f; /* padding must come back zero */
    omp_set_num_threads(1);
    zf_gpt2_init_params(&c, &t, p1, 42);
    omp_set_num_threads(2);
    zf_gpt2_init_params(&c, &t, p2, 42);
    zf_gpt2_init_params(&c, &t, p3, 43);
    CHECK(memcmp(p1, p2, t.total * sizeof(float)) == 0, "init depends only on the seed (1 vs 2 threads)");
    CHECK(memcmp(p1, p3, t.total * sizeof(float)) != 0, "another seed gives other values");
    const double proj_sd = 0.02 / sqrt(2.0 * c.n_layer);
    size_t end = 0;
    for (int i = 0; i < t.count; i++) {
        const zf_tensor_info *x = &t.t[i];
        for (size_t j = end; j < x->offset; j++) CHECK(p1[j] == 0.0f, "padding before %s is zero", x->name);
        end = x->offset + x->numel;
        const float *v = p1 + x->offset;
        if (x->ndim == 1) {
            const float want = strstr(x->name, "ln_") && strstr(x->name, ".weight") ? 1.0f : 0.0f;
            int ok = 1;
            for (size_t j = 0; j < x->numel; j++) ok &= v[j] == want;
            CHECK(ok, "%s is all %g", x->name, want);
            continue;
        }
        double m, sd;
        stats(v, x->numel, &m, &sd);
        double want = strstr(x->name, "c_proj.weight") ? proj_sd : 0.02;
        /* sampling error of the sd ~ sd/sqrt(2n); allow 5 sigma + margin */
        double tol = 5.0 / sqrt(2.0 * x->numel) + 0.01;
        CHECK(fabs(sd / want - 1.0) < tol, "%s sd %.5f, expected %.5f", x->name, sd, want);
        CHECK(fabs(m) < 5.0 * want / sqrt((double)x->numel), "%s mean %.6f", x->name, m);
    }
    /* normality: fraction within one sd of wte ~ 68.3% */
    const zf_tensor_info *wte = zf_param_find(&t, "transformer.wte.weight");
    size_t in1 = 0;
    for (size_t j = 0; j < wte->numel; j++) in1 += fabsf(p1[wte->offset + j]) < 0.02f;
    double frac = (double)in1 / wte->numel;
    CHECK(fabs(frac - 0.6827) < 0.01, "wte within 1 sd: %.4f", frac);
    /* a rank's range alone gives the same numbers: ranges cutting chunks
     * (64 Ki floats), tensors and alignment gaps, empty and whole */
    const size_t T = t.total, cuts[][2] = { { 0, T }, { 0, 0 }, { 1, 70000 }, { 65535, 65538 }, { T / 3, T / 3 },
                                            { T - 5, 5 }, { wte->offset + wte->numel - 3, 40 } };
    float *r = malloc((T + 1) * sizeof *r);
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        const size_t lo = cuts[k][0], n = cuts[k][1];
        for (size_t i = 0; i <= n && i <= T; i++) r[i] = 7.0f;
        zf_gpt2_init_params_range(&c, &t, r, lo, n, 42);
        CHECK(memcmp(r, p1 + lo, n * sizeof *r) == 0 && (n == T || r[n] == 7.0f),
              "init of [%zu, +%zu) alone equals the whole init there, and writes nothing past it", lo, n);
    }
    free(r);
    free(p1);
    free(p2);
    free(p3);
    zf_param_table_free(&t);
}

/* ---------------------------------------------------------------- resolve */

static void test_resolve(void)
{
    char path[4096], d[600], e[700];
    int is_preset = -1;
    zf_err err = {{0}};
    /* a local model directory */
    snprintf(d, sizeof d, "%s/localmodel", tmpdir);
    mkdir(d, 0755);
    snprintf(e, sizeof e, "%s/config.json", d);
    write_text(e, "{}");
    CHECK(zf_model_resolve(d, path, sizeof path, &is_preset, &err) == 0 && !strcmp(path, d) && is_preset == 0,
          "local dir: %s", err.msg);
    /* a directory without config.json is an error, not a fallthrough */
    snprintf(d, sizeof d, "%s/emptydir", tmpdir);
    mkdir(d, 0755);
    CHECK(zf_model_resolve(d, path, sizeof path, &is_preset, &err) != 0 && strstr(err.msg, "config.json"),
          "dir without config.json: %s", err.msg);
    /* a fake Hugging Face cache */
    snprintf(d, sizeof d, "%s/hfhome/hub/models--someorg--tiny-model/snapshots/abc123", tmpdir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/hfhome/hub/models--someorg--tiny-model/refs'", d, tmpdir);
    CHECK(system(cmd) == 0, "mkdir");
    snprintf(e, sizeof e, "%s/config.json", d);
    write_text(e, "{}");
    snprintf(e, sizeof e, "%s/hfhome/hub/models--someorg--tiny-model/refs/main", tmpdir);
    write_text(e, "abc123\n");
    snprintf(e, sizeof e, "%s/hfhome", tmpdir);
    unsetenv("HF_HUB_CACHE");
    setenv("HF_HOME", e, 1);
    CHECK(zf_model_resolve("someorg/tiny-model", path, sizeof path, &is_preset, &err) == 0 && !strcmp(path, d) &&
          is_preset == 0, "hub id in cache: %s -> %s", err.msg, path);
    CHECK(zf_model_resolve("hf:someorg/tiny-model", path, sizeof path, &is_preset, &err) == 0 && !strcmp(path, d),
          "hf: prefix: %s", err.msg);
    err.msg[0] = 0;
    CHECK(zf_model_resolve("otherorg/missing", path, sizeof path, &is_preset, &err) != 0 &&
          strstr(err.msg, "scripts/fetch_model.sh otherorg/missing") && !strchr(err.msg, '\n'),
          "missing hub model says how to fetch it: %s", err.msg);
    err.msg[0] = 0;
    CHECK(zf_model_resolve("hf:gpt2", path, sizeof path, &is_preset, &err) != 0 &&
          strstr(err.msg, "scripts/fetch_model.sh gpt2"), "hf:gpt2 not cached: %s", err.msg);
    /* the template's --model_name gpt2 means the pretrained hub model, never a random preset */
    CHECK(zf_model_resolve("gpt2", path, sizeof path, &is_preset, &err) != 0 &&
          strstr(err.msg, "scripts/fetch_model.sh gpt2"), "plain gpt2 is the hub id: %s", err.msg);
    CHECK(zf_model_resolve("gpt2-124m", path, sizeof path, &is_preset, &err) == 0 && is_preset == 1 &&
          strstr(path, "config/models/gpt2-124m.json"), "gpt2-124m is the preset: %s", path);
    CHECK(zf_model_resolve("../../etc/passwd", path, sizeof path, &is_preset, &err) != 0, "path-like names refused");
    CHECK(zf_model_resolve("preset:nonexistent", path, sizeof path, &is_preset, &err) != 0 && strstr(err.msg, "preset"),
          "missing preset: %s", err.msg);
    snprintf(e, sizeof e, "%s/custom.json", tmpdir);
    write_text(e, "{}");
    CHECK(zf_model_resolve(e, path, sizeof path, &is_preset, &err) == 0 && is_preset == 1, "a .json file is a preset");
}

int main(void)
{
    zf_log_init("test_model_io");
    zf_check_tmpdir(tmpdir, sizeof tmpdir, "model-io");
    test_tables_and_presets();
    test_config_io();
    test_half_conversions();
    test_safetensors();
    test_init();
    test_resolve();
    zf_check_rm_rf(tmpdir);
    return zf_check_summary("test_model_io");
}
