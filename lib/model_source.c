/* model_source.c - see model_source.h. */
#include "model_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "hf_model.h"

int zf_is_checkpoint(const char *path, char *ckpt_dir, size_t n)
{
    char meta[1200];
    snprintf(meta, sizeof meta, "%s/meta.json", path);
    struct stat st;
    if (stat(meta, &st) == 0) {
        snprintf(ckpt_dir, n, "%s", path);
        return 1;
    }
    char latest[1200];
    snprintf(latest, sizeof latest, "%s/checkpoints/latest", path);
    if (stat(latest, &st) != 0) return 0;
    zf_err err;
    return zf_ckpt_resolve(path, ckpt_dir, n, &err) == 0;
}

int zf_model_source_open(const char *name, int tokenizer_vocab, uint64_t seed, int load_params,
                         zf_model_source *out, zf_err *err)
{
    memset(out, 0, sizeof *out);
    out->seed = seed;
    char ckpt[1024];
    if (zf_is_checkpoint(name, ckpt, sizeof ckpt)) {
        char cfg_path[1100];
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", ckpt);
        if (zf_gpt2_config_load(cfg_path, &out->cfg, err) != 0) return -1;
        zf_gpt2_param_table(&out->cfg, &out->table);
        out->kind = ZF_MODEL_CHECKPOINT;
        snprintf(out->path, sizeof out->path, "%s", ckpt);
        if (load_params) {
            out->params = zf_params_alloc(&out->table);
            if (zf_ckpt_read_tensor(ckpt, "model", out->params, out->table.total, err) != 0) {
                zf_model_source_free(out);
                return -1;
            }
        }
        return 0;
    }
    int is_preset = 0;
    if (zf_model_resolve(name, out->path, sizeof out->path, &is_preset, err) != 0) return -1;
    if (is_preset) {
        out->kind = ZF_MODEL_PRESET;
        if (zf_gpt2_preset_load(out->path, tokenizer_vocab, &out->cfg, err) != 0) return -1;
        zf_gpt2_param_table(&out->cfg, &out->table);
        if (load_params) {
            out->params = zf_params_alloc(&out->table);
            zf_gpt2_init_params(&out->cfg, &out->table, out->params, seed);
        }
        return 0;
    }
    out->kind = ZF_MODEL_HF;
    if (load_params) return zf_hf_load(out->path, &out->cfg, &out->table, &out->params, err);
    char cfg_path[1100];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", out->path);
    if (zf_gpt2_config_load(cfg_path, &out->cfg, err) != 0) return -1;
    zf_gpt2_param_table(&out->cfg, &out->table);
    return 0;
}

void zf_model_source_free(zf_model_source *s)
{
    free(s->params);
    zf_param_table_free(&s->table);
    memset(s, 0, sizeof *s);
}

int zf_model_source_read_range(const zf_model_source *s, float *dst, size_t lo, size_t n, zf_err *err)
{
    if (lo > s->table.total || n > s->table.total - lo)
        return zf_err_set(err, "%s: parameters [%zu, +%zu): expected within the model's %zu", s->path, lo, n,
                          s->table.total);
    if (s->params) {
        memcpy(dst, s->params + lo, n * sizeof(float));
        return 0;
    }
    if (s->kind == ZF_MODEL_PRESET) {
        zf_gpt2_init_params_range(&s->cfg, &s->table, dst, lo, n, s->seed);
        return 0;
    }
    if (s->kind == ZF_MODEL_CHECKPOINT) return zf_ckpt_read_tensor_range(s->path, "model", dst, s->table.total, lo, n, err);
    zf_gpt2_config cfg;
    zf_param_table table;
    float *all = NULL;
    if (zf_hf_load(s->path, &cfg, &table, &all, err) != 0) return -1;
    if (table.total != s->table.total) {
        free(all);
        return zf_err_set(err, "%s: %zu parameters, expected %zu", s->path, table.total, s->table.total);
    }
    memcpy(dst, all + lo, n * sizeof(float));
    free(all);
    return 0;
}
