/* model_source.h - where the trainer's starting parameters come from.
 *
 * Owns: turning a --model_name (preset, Hugging Face directory, hub id in
 * the local HF cache) or a zeroflow checkpoint directory into a GPT-2
 * config, its parameter table and an fp32 parameter buffer.  Presets are
 * initialised from the seed; their "auto" vocabulary takes the tokenizer's
 * size. */
#ifndef ZF_MODEL_SOURCE_H
#define ZF_MODEL_SOURCE_H

#include <stdint.h>
#include "model.h"

typedef struct zf_model_source {
    zf_gpt2_config cfg;
    zf_param_table table;
    float *params;          /* table.total floats, 64-byte aligned, caller frees */
    char path[1024];        /* what was loaded */
    int kind;               /* ZF_MODEL_PRESET, ZF_MODEL_HF, ZF_MODEL_CHECKPOINT */
    uint64_t seed;          /* a preset's initialisation */
} zf_model_source;

enum { ZF_MODEL_PRESET = 1, ZF_MODEL_HF = 2, ZF_MODEL_CHECKPOINT = 3 };

/* Is `path` a zeroflow checkpoint (a step directory, or an output directory
 * whose checkpoints/latest points to one)?  Fills ckpt_dir when so. */
int zf_is_checkpoint(const char *path, char *ckpt_dir, size_t n);

/* Resolve and load. Presets need tokenizer_vocab (> 0) and are initialised
 * with `seed`; with load_params = 0 only the config and table are filled. */
int zf_model_source_open(const char *name, int tokenizer_vocab, uint64_t seed, int load_params,
                         zf_model_source *out, zf_err *err);
void zf_model_source_free(zf_model_source *s);
/* Flat elements [lo, lo + n) of the source's parameters into dst, without
 * the whole model in memory where the source allows: a preset initialised
 * for that range only, a checkpoint's "model" read for it only (the frames
 * holding it); a Hugging Face directory is loaded whole and cut.  Copied
 * from params when they are loaded. */
int zf_model_source_read_range(const zf_model_source *s, float *dst, size_t lo, size_t n, zf_err *err);

#endif
