/* model.h - the GPT-2 configuration and the flat parameter layout.
 *
 * Owns: zf_gpt2_config (read from and written as a Hugging Face config.json,
 * or from a zeroflow preset in config/models/), the order, shapes, offsets
 * and weight-decay flags of every parameter tensor inside ONE flat fp32
 * buffer (the unit that ZeRO partitions, the optimizer updates and the
 * checkpoints store), and the GPT-2 initialisation of that buffer.
 *
 * Layout: HF names with the "transformer." prefix, in HF state_dict order:
 *   transformer.wte.weight [V,d], transformer.wpe.weight [P,d], then per layer i
 *   transformer.h.i.{ln_1.weight, ln_1.bias [d], attn.c_attn.weight [d,3d],
 *   attn.c_attn.bias [3d], attn.c_proj.weight [d,d], attn.c_proj.bias [d],
 *   ln_2.weight, ln_2.bias [d], mlp.c_fc.weight [d,4d], mlp.c_fc.bias [4d],
 *   mlp.c_proj.weight [4d,d], mlp.c_proj.bias [d]}, then transformer.ln_f.weight/bias.
 * Linear weights use HF Conv1D layout [in,out] (y = x W + b).  The LM head
 * is tied to wte.  Every tensor starts at a multiple of ZF_PARAM_ALIGN floats
 * (64 bytes) so SIMD loads are aligned; the gaps stay zero and `total`
 * counts them. */
#ifndef ZF_MODEL_H
#define ZF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define ZF_PARAM_ALIGN 16 /* floats */

typedef struct zf_gpt2_config {
    int n_layer, n_head, n_embd, n_positions, vocab_size;
    float layer_norm_epsilon, embd_pdrop, attn_pdrop, resid_pdrop;
} zf_gpt2_config;

typedef struct zf_tensor_info {
    char name[96];
    size_t offset, numel; /* in floats, into the flat buffer */
    int ndim;
    int64_t shape[2];
    int decay; /* 1: weight decay applies (2-D), 0: biases and LayerNorm */
} zf_tensor_info;

typedef struct zf_param_table {
    int count;
    zf_tensor_info *t;
    size_t total; /* floats, including alignment padding */
} zf_param_table;

/* HF config.json.  "architectures"/"model_type" must say GPT-2 (else an
 * "unknown architecture" error); options this implementation does not
 * compute (other activations, n_inner != 4*n_embd, untied head, layer-idx
 * attention scaling) are rejected rather than silently ignored. */
int zf_gpt2_config_load(const char *config_json_path, zf_gpt2_config *cfg, zf_err *err);

/* A zeroflow preset (config/models/NAME.json): the same keys as config.json,
 * but "vocab_size" may be the string "auto", replaced by tokenizer_vocab_size
 * (which must then be > 0). */
int zf_gpt2_preset_load(const char *path, int tokenizer_vocab_size, zf_gpt2_config *cfg, zf_err *err);

/* Check the values themselves (positive sizes, n_embd % n_head, dropout in [0,1)). */
int zf_gpt2_config_check(const zf_gpt2_config *cfg, const char *what, zf_err *err);

/* HF-compatible config.json (model_type gpt2, architectures [GPT2LMHeadModel],
 * activation_function gelu_new, n_inner null, tie_word_embeddings true). */
int zf_gpt2_config_save(const char *path, const zf_gpt2_config *cfg, zf_err *err);

void zf_gpt2_param_table(const zf_gpt2_config *cfg, zf_param_table *out);
void zf_param_table_free(zf_param_table *t);
const zf_tensor_info *zf_param_find(const zf_param_table *t, const char *name);

/* The layout rows that describe the whole flat buffer to the optimizer:
 * (offset, numel, decay) triples covering [0, total) in order, one per
 * tensor and one with decay 0 per alignment gap (gaps hold zeros, get zero
 * gradients, and so stay zero).  rows may be NULL to only count; returns
 * the number of rows. */
int zf_param_layout(const zf_param_table *t, int64_t *rows);

/* Total count of real parameters (without padding). */
size_t zf_param_count(const zf_param_table *t);

/* A zeroed, 64-byte aligned buffer of t->total floats (free with free()). */
float *zf_params_alloc(const zf_param_table *t);

/* GPT-2 init: normal(0, 0.02) for wte/wpe/weights, c_proj weights
 * normal(0, 0.02/sqrt(2*n_layer)), biases 0, LayerNorm weight 1 bias 0.
 * Each tensor is drawn in chunks with their own zf_rng stream, so the
 * result depends only on the seed and the config (not on thread count).
 * Padding is set to zero. */
void zf_gpt2_init_params(const zf_gpt2_config *cfg, const zf_param_table *t, float *params, uint64_t seed);
/* The same numbers for flat elements [lo, lo + n) only, into dst[0, n): a
 * rank initialises what it keeps without the whole model in memory. */
void zf_gpt2_init_params_range(const zf_gpt2_config *cfg, const zf_param_table *t, float *dst, size_t lo, size_t n,
                               uint64_t seed);

#endif
