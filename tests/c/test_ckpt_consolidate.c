/* test_ckpt_consolidate.c - ckptd/ckpt_consolidate.c: a ZeRO checkpoint's
 * per-rank fp32 masters placed back into one model (uneven world of 3,
 * stage-0 style whole copies, empty partitions), written as one safetensors
 * file in fp32 and bf16 (read back tensor by tensor), and every kind of bad
 * checkpoint refused with an error naming what is wrong (gap, disagreeing
 * copies, missing or mis-sized shard file, world size, duplicate rank,
 * partition beyond the model, not a checkpoint). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "ckpt_consolidate.h"
#include "model.h"
#include "rng.h"
#include "safetensors.h"
#include "zf_check.h"

static char g_tmp[512];
static zf_gpt2_config g_cfg = { 2, 2, 20, 16, 37, 1e-5f, 0.1f, 0.1f, 0.1f }; /* d=20: alignment gaps */
static zf_param_table g_table;
static float *g_params;

typedef struct spec {
    int rank;
    size_t offset, numel;   /* written to meta.json */
    size_t file_numel;      /* floats in the tensor file (normally numel) */
    int write_file;
    int poison;             /* change one value of this rank's copy */
} spec;

/* A checkpoint under g_tmp/NAME with one master (and m, v) per spec. */
static void make_ckpt(const char *name, const spec *s, int n, int world, char *dir, size_t dn)
{
    char out[600], cfgp[700];
    zf_err err;
    snprintf(out, sizeof out, "%s/%s", g_tmp, name);
    zf_ckpt_writer *w;
    if (zf_ckpt_begin(out, 7, &w, &err) != 0) { CHECK(0, "begin: %s", err.msg); return; }
    snprintf(cfgp, sizeof cfgp, "%s/config-src.json", g_tmp);
    CHECK(zf_gpt2_config_save(cfgp, &g_cfg, &err) == 0, "%s", err.msg);
    CHECK(zf_ckpt_add_file(w, "config.json", cfgp, &err) == 0, "%s", err.msg);
    char meta[4096];
    int len = snprintf(meta, sizeof meta, "{\"world_size\": %d, \"optimizer\": {\"step\": 3, \"shards\": [", world);
    for (int i = 0; i < n; i++) {
        len += snprintf(meta + len, sizeof meta - (size_t)len, "%s{\"rank\": %d, \"offset\": %zu, \"numel\": %zu, \"step\": 3}",
                        i ? ", " : "", s[i].rank, s[i].offset, s[i].numel);
        if (!s[i].write_file) continue;
        float *data = zf_xcalloc(s[i].file_numel + 1, sizeof(float));
        for (size_t k = 0; k < s[i].file_numel && s[i].offset + k < g_table.total; k++) data[k] = g_params[s[i].offset + k];
        if (s[i].poison && s[i].file_numel > 3) data[3] += 1.0f;
        const char *what[3] = { "master", "adam_m", "adam_v" };
        for (int k = 0; k < 3; k++) {
            char tname[64];
            snprintf(tname, sizeof tname, "optim-r%d-%s", s[i].rank, what[k]);
            CHECK(zf_ckpt_add_tensor(w, tname, data, s[i].file_numel, &err) == 0, "%s", err.msg);
        }
        free(data);
    }
    snprintf(meta + len, sizeof meta - (size_t)len, "]}}");
    CHECK(zf_ckpt_set_meta(w, meta, &err) == 0, "%s", err.msg);
    CHECK(zf_ckpt_commit(w, 0, dir, dn, &err) == 0, "commit: %s", err.msg);
}

static void expect_ok(const char *name, const spec *s, int n, int world)
{
    char dir[1024], got_dir[1024], out[600];
    make_ckpt(name, s, n, world, dir, sizeof dir);
    zf_gpt2_config cfg;
    zf_param_table t;
    float *p = NULL;
    zf_err err = { "" };
    snprintf(out, sizeof out, "%s/%s", g_tmp, name);
    /* an output dir resolves through checkpoints/latest */
    int rc = zf_ckpt_consolidate(out, &cfg, &t, &p, got_dir, sizeof got_dir, &err);
    CHECK(rc == 0, "%s: %s", name, err.msg);
    if (rc) return;
    CHECK(!strcmp(got_dir, dir), "%s: resolved %s, expected %s", name, got_dir, dir);
    CHECK(t.total == g_table.total && cfg.n_embd == g_cfg.n_embd, "%s: table", name);
    CHECK(!memcmp(p, g_params, t.total * sizeof(float)), "%s: consolidated parameters differ", name);
    free(p);
    zf_param_table_free(&t);
}

static void expect_error(const char *name, const spec *s, int n, int world, const char *needle)
{
    char dir[1024], out[600];
    make_ckpt(name, s, n, world, dir, sizeof dir);
    zf_gpt2_config cfg;
    zf_param_table t;
    float *p = (float *)1;
    zf_err err = { "" };
    snprintf(out, sizeof out, "%s/%s", g_tmp, name);
    int rc = zf_ckpt_consolidate(out, &cfg, &t, &p, NULL, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, needle) && p == NULL, "%s: expected an error with '%s', got rc %d '%s'", name, needle,
          rc, err.msg);
}

static void test_layouts(void)
{
    size_t T = g_table.total, per3 = (T + 2) / 3, per2 = (T + 1) / 2;
    spec three[3] = { { 0, 0, per3, per3, 1, 0 }, { 1, per3, per3, per3, 1, 0 },
                      { 2, 2 * per3, T - 2 * per3, T - 2 * per3, 1, 0 } };
    CHECK(T % 3 != 0, "the test model must split unevenly over 3 ranks (total %zu)", T);
    expect_ok("world3", three, 3, 3);
    spec shuffled[3] = { three[2], three[0], three[1] }; /* meta order does not matter */
    expect_ok("world3-order", shuffled, 3, 3);
    spec whole[2] = { { 0, 0, T, T, 1, 0 }, { 1, 0, T, T, 1, 0 } }; /* stage 0: whole copies */
    expect_ok("stage0", whole, 2, 2);
    spec empty[3] = { { 0, 0, T, T, 1, 0 }, { 1, T, 0, 0, 1, 0 }, { 2, T, 0, 0, 1, 0 } };
    expect_ok("empty-partitions", empty, 3, 3);

    spec gap[2] = { { 0, 0, per2, per2, 1, 0 }, { 1, per2 + 5, T - per2 - 5, T - per2 - 5, 1, 0 } };
    expect_error("gap", gap, 2, 2, "no rank holds parameters");
    spec shortend[2] = { { 0, 0, per2, per2, 1, 0 }, { 1, per2, T - per2 - 1, T - per2 - 1, 1, 0 } };
    expect_error("short", shortend, 2, 2, "no rank holds parameters");
    spec disagree[2] = { { 0, 0, T, T, 1, 0 }, { 1, 0, T, T, 1, 1 } };
    expect_error("disagree", disagree, 2, 2, "disagrees");
    spec missing[2] = { { 0, 0, per2, per2, 1, 0 }, { 1, per2, T - per2, T - per2, 0, 0 } };
    expect_error("missing-file", missing, 2, 2, "optim-r1-master");
    spec sized[2] = { { 0, 0, per2, per2, 1, 0 }, { 1, per2, T - per2, T - per2 + 4, 1, 0 } };
    expect_error("mis-sized", sized, 2, 2, "optim-r1-master");
    expect_error("world-size", three, 3, 2, "world_size");
    spec dup[2] = { { 0, 0, per2, per2, 1, 0 }, { 0, per2, T - per2, T - per2, 0, 0 } };
    expect_error("duplicate-rank", dup, 2, 2, "each once");
    spec beyond[2] = { { 0, 0, per2, per2, 1, 0 }, { 1, per2, T - per2 + 8, T - per2 + 8, 1, 0 } };
    expect_error("beyond", beyond, 2, 2, "beyond the model");

    zf_gpt2_config cfg;
    zf_param_table t;
    float *p;
    zf_err err = { "" };
    CHECK(zf_ckpt_consolidate(g_tmp, &cfg, &t, &p, NULL, 0, &err) == -1 && strstr(err.msg, "expected a zeroflow checkpoint"),
          "not a checkpoint: %s", err.msg);
    CHECK(zf_ckpt_place_shards(NULL, 0, g_params, T, "x", &err) == -1 && strstr(err.msg, "at least one"), "%s", err.msg);

    /* the placement as pieces (ckptd writes its model from them): each
     * element from the first shard holding it, overlaps checked against
     * every piece they span */
    float *copy = malloc(T * sizeof *copy);
    memcpy(copy, g_params, T * sizeof *copy);
    zf_ckpt_shard sh[3] = { { 0, 0, per3, g_params }, { 1, per3 / 4, 2 * per3 - per3 / 4, g_params + per3 / 4 },
                            { 2, per3 / 2, T - per3 / 2, copy + per3 / 2 } };
    zf_ckpt_piece *pc = NULL;
    int np = 0;
    CHECK(zf_ckpt_shard_pieces(sh, 3, T, "x", &pc, &np, &err) == 0 && np == 3, "pieces: %s (%d)", err.msg, np);
    if (np == 3) {
        CHECK(pc[0].data == g_params && pc[0].bytes == per3 * 4 && pc[1].data == g_params + per3 &&
                  pc[2].data == copy + 2 * per3 && pc[2].bytes == (T - 2 * per3) * 4,
              "pieces: the first shard holding each element, in order");
    }
    free(pc);
    copy[per3 + 1] += 1.0f; /* the third shard disagrees inside the second piece it overlaps */
    CHECK(zf_ckpt_shard_pieces(sh, 3, T, "x", &pc, &np, &err) == -1 && strstr(err.msg, "rank 2's partition disagrees"),
          "overlap over two pieces checked: %s", err.msg);
    free(copy);
}

static void test_safetensors(void)
{
    char path[700];
    zf_err err = { "" };
    for (int bf16 = 0; bf16 < 2; bf16++) {
        snprintf(path, sizeof path, "%s/model-%d.safetensors", g_tmp, bf16);
        CHECK(zf_ckpt_write_safetensors(path, &g_table, g_params, bf16, &err) == 0, "%s", err.msg);
        zf_st_file f;
        if (zf_st_open(path, &f, &err) != 0) {
            CHECK(0, "%s", err.msg);
            continue;
        }
        CHECK(f.count == g_table.count, "%d tensors, expected %d", f.count, g_table.count);
        for (int i = 0; i < g_table.count; i++) {
            const zf_tensor_info *ti = &g_table.t[i];
            const zf_st_tensor *st = zf_st_find(&f, ti->name);
            CHECK(st && st->dtype == (bf16 ? ZF_ST_BF16 : ZF_ST_F32) && st->numel == ti->numel, "%s", ti->name);
            if (!st) continue;
            const unsigned char *raw = f.data + st->begin;
            for (size_t k = 0; k < ti->numel; k++) {
                float want = g_params[ti->offset + k];
                if (bf16) {
                    uint16_t h;
                    memcpy(&h, raw + 2 * k, 2);
                    if (h != zf_f32_to_bf16(want)) { CHECK(0, "%s[%zu] bf16 %04x", ti->name, k, h); break; }
                } else if (memcmp(raw + 4 * k, &want, 4)) {
                    CHECK(0, "%s[%zu] differs", ti->name, k);
                    break;
                }
            }
        }
        CHECK(!zf_st_find(&f, "lm_head.weight"), "tied head not written");
        zf_st_close(&f);
    }
    snprintf(path, sizeof path, "%s/no-such-dir/model.safetensors", g_tmp);
    CHECK(zf_ckpt_write_safetensors(path, &g_table, g_params, 0, &err) == -1 && err.msg[0], "unwritable path accepted");
}

int main(void)
{
    zf_check_tmpdir(g_tmp, sizeof g_tmp, "consolidate");
    zf_gpt2_param_table(&g_cfg, &g_table);
    g_params = zf_params_alloc(&g_table);
    zf_gpt2_init_params(&g_cfg, &g_table, g_params, 5);
    test_layouts();
    test_safetensors();
    free(g_params);
    zf_param_table_free(&g_table);
    zf_check_rm_rf(g_tmp);
    return zf_check_summary("test_ckpt_consolidate");
}
