/* ckpt_consolidate.h - a ZeRO checkpoint as one model (zero_to_fp32).
 *
 * Owns: rebuilding the whole fp32 parameter buffer of a checkpoint from its
 * per-rank partitions (the fp32 masters "optim-r<R>-master" that offloadd
 * kept for each rank, placed by meta.json's optimizer.shards), with every
 * shard checked against the meta data and the model's size, the shards'
 * union checked to cover the buffer exactly and overlapping shards (stage 0:
 * every rank holds the whole buffer) checked to agree; and the command
 *   ckptd consolidate CKPT OUT [--dtype fp32|bf16] [--hf]
 * which writes OUT as one safetensors file (HF GPT-2 names,
 * "transformer.*", tied head omitted; fp32 or bf16), the equivalent of
 * DeepSpeed's zero_to_fp32, or with --hf a Hugging Face model directory
 * (`ckptd export CKPT OUT` is the same as `consolidate CKPT OUT --hf`).
 * ckptd's own "model" tensor is built by the same placement rules. */
#ifndef ZF_CKPT_CONSOLIDATE_H
#define ZF_CKPT_CONSOLIDATE_H

#include <stddef.h>

#include "ckpt.h" /* zf_ckpt_piece */
#include "log.h"
#include "model.h"

/* One rank's partition: [offset, offset + numel) of the flat buffer. */
typedef struct zf_ckpt_shard {
    int rank;
    size_t offset, numel;
    const float *data;       /* numel floats */
} zf_ckpt_shard;

/* Place shards into dst (total floats): the union of the shards must be
 * exactly [0, total) and overlapping parts must be bitwise equal.  `what`
 * names the source in errors (a checkpoint dir). */
int zf_ckpt_place_shards(const zf_ckpt_shard *shards, int n, float *dst, size_t total, const char *what, zf_err *err);
/* The same placement without copying: the model as pieces of the shards'
 * data, in order (zf_ckpt_add_pieces writes it).  *pieces: free() it. */
int zf_ckpt_shard_pieces(const zf_ckpt_shard *shards, int n, size_t total, const char *what, zf_ckpt_piece **pieces,
                         int *npieces, zf_err *err);

/* The partitions listed in a checkpoint dir's meta.json (optimizer.shards):
 * rank, offset and numel of each (data NULL), every rank once, each inside
 * the model's total floats.  *shards: free() it. */
int zf_ckpt_read_shards(const char *dir, size_t total, zf_ckpt_shard **shards, int *n, zf_err *err);

/* A checkpoint (step dir, or an output dir through its `latest`) -> its
 * config, parameter table and whole fp32 buffer (zf_params_alloc'd; the
 * caller frees it and zf_param_table_free's the table).  ckpt_dir (may be
 * NULL) receives the resolved step dir. */
int zf_ckpt_consolidate(const char *ckpt, zf_gpt2_config *cfg, zf_param_table *table, float **params, char *ckpt_dir,
                        size_t n, zf_err *err);

/* Write the buffer as one safetensors file (atomically: temp + rename);
 * bf16 = 1 rounds to bf16 (nearest even), else fp32. */
int zf_ckpt_write_safetensors(const char *path, const zf_param_table *table, const float *params, int bf16,
                              zf_err *err);

#endif
