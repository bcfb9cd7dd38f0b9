/* preflight.c - see preflight.h. */
#include "preflight.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpe.h"
#include "ckpt.h"
#include "dataset.h"
#include "ds_config.h"
#include "model_source.h"
#include "paths.h"
#include "tok_record.h"

/* --record PATH: tokenizerd writes PATH.tmp next to it, then renames. */
static int check_record_path(const char *path, zf_err *err)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return zf_err_set(err, "--record %s: expected a file name, got a directory", path);
    char dir[1100];
    zf_path_parent(path, dir, sizeof dir);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return zf_err_set(err, "--record %s: directory %s: expected an existing directory", path, dir);
    if (access(dir, W_OK) != 0)
        return zf_err_set(err, "--record %s: directory %s: expected write permission", path, dir);
    return 0;
}

int zf_resume_check_world(const char *dir, int world, int micro, int ga, int *saved_world, zf_err *err)
{
    long long global_batch = (long long)micro * ga * world;
    char *text = NULL;
    if (zf_ckpt_read_meta(dir, &text, err) != 0) return -1;
    json_error_t je;
    json_t *meta = json_loads(text, 0, &je);
    free(text);
    json_t *w = json_object_get(meta, "world_size");
    json_t *gb = json_object_get(json_object_get(meta, "loader"), "global_batch");
    long long saved = json_is_integer(w) ? (long long)json_integer_value(w) : 1;
    long long saved_gb = json_is_integer(gb) ? (long long)json_integer_value(gb) : -1;
    json_decref(meta);
    if (saved_world) *saved_world = (int)saved;
    if (saved == world) return 0;
    if (saved_gb < 0)
        return zf_err_set(err, "--resume %s: saved with world size %lld, resuming with --world_size %d: this checkpoint "
                          "does not record its global batch (older format), so it resumes into world size %lld only",
                          dir, saved, world, saved);
    if (saved_gb != global_batch) {
        char hint[96] = "";
        if (saved_gb % ((long long)world * ga) == 0)
            snprintf(hint, sizeof hint, " (here: --batch_size %lld)", saved_gb / ((long long)world * ga));
        return zf_err_set(err, "--resume %s: saved with world size %lld and a global batch of %lld sequences per step; "
                          "with --world_size %d the global batch is %lld: expected the same (micro batch x gradient "
                          "accumulation x world size)%s", dir, saved, saved_gb, world, global_batch, hint);
    }
    return 0;
}

int zf_preflight(const zf_options *o, zf_err *err)
{
    zf_ds_config cfg;
    if (!o->deepspeed_config[0])
        return zf_err_set(err, "--deepspeed_config: expected a DeepSpeed JSON config (or zero-2 / zero-3)");
    if (zf_ds_config_load(o->deepspeed_config, &cfg, err) != 0) return -1;
    if (zf_ds_config_resolve_batch(&cfg, o->batch_size, o->world_size, err) != 0) return -1;
    if (o->num_gpus > 1 && cfg.zero_stage == 3 && strcmp(cfg.zero_offload_param_device, "cpu") == 0 &&
        strcmp(cfg.zero_offload_optimizer_device, "cpu") != 0)
        return zf_err_set(err, "%s: zero_optimization.offload_param.device cpu with --num_gpus %d: GPU ranks offload "
                          "the parameters only with the optimizer: expected offload_optimizer.device cpu too",
                          o->deepspeed_config, o->num_gpus);

    /* The tokenizer: given, or the model directory's; a preset gets one
     * trained on the dataset (size --vocab_size). */
    int vocab = o->vocab_size;
    zf_bpe *bpe = NULL;
    zf_model_source src;
    char ckpt[1024];
    const char *tok = o->tokenizer[0] ? o->tokenizer : NULL;
    if (!tok && zf_is_checkpoint(o->model_name, ckpt, sizeof ckpt)) tok = ckpt;
    if (tok) {
        if (zf_bpe_load(tok, &bpe, err) != 0) return -1;
        vocab = zf_bpe_vocab_size(bpe);
        zf_bpe_free(bpe);
    }
    if (zf_model_source_open(o->model_name, vocab, 0, 0, &src, err) != 0) return -1;
    if (!tok && src.kind == ZF_MODEL_HF) {
        if (zf_bpe_load(src.path, &bpe, err) != 0) {
            zf_model_source_free(&src);
            return -1;
        }
        vocab = zf_bpe_vocab_size(bpe);
        zf_bpe_free(bpe);
    }
    int rc = 0;
    if (src.cfg.vocab_size < vocab)
        rc = zf_err_set(err, "--model_name %s: vocab_size %d is smaller than the tokenizer's %d tokens", o->model_name,
                        src.cfg.vocab_size, vocab);
    else if (o->max_length < 1 || o->max_length > src.cfg.n_positions)
        rc = zf_err_set(err, "--max_length: expected 1..%d (the model's n_positions), got %d", src.cfg.n_positions,
                        o->max_length);
    zf_model_source_free(&src);
    if (rc) return rc;

    if (o->replay[0]) {
        /* replaying: the streams stand for the dataset; they must match the
         * tokenizer the run will use, byte for byte intact */
        char tokdir[1024];
        if (zf_tok_replay_tokenizer(o, tokdir, sizeof tokdir, err) != 0) return -1;
        if (zf_tok_replay_check(o, tokdir, err) != 0) return -1;
    } else {
        zf_dataset_spec spec;
        if (zf_dataset_spec_set(&spec, o->dataset_name, o->dataset_config, o->text_field, err) != 0) return -1;
        char cache[900];
        zf_cache_dir(cache, sizeof cache);
        zf_dataset_files files;
        if (zf_dataset_resolve(&spec, cache, &files, err) != 0) return -1;
        zf_dataset_files_free(&files);
    }
    if (o->record[0] && check_record_path(o->record, err) != 0) return -1;

    if (o->resume) {
        const char *where = o->resume_path[0] ? o->resume_path : o->output_dir;
        char dir[1024];
        if (zf_ckpt_resolve(where, dir, sizeof dir, err) != 0) return -1;
        if (zf_resume_check_world(dir, o->world_size, cfg.train_micro_batch_size_per_gpu,
                                  cfg.gradient_accumulation_steps, NULL, err) != 0)
            return -1;
    }
    if (o->num_epochs < 1 && o->max_train_steps < 1)
        return zf_err_set(err, "--num_epochs: expected >= 1 (or --max_train_steps > 0)");
    return 0;
}
