/* model.c - GPT-2 config (HF config.json / presets), flat parameter table
 * and initialisation.  See model.h. */
#include "model.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* ---------------------------------------------------------------- config */

static int get_int(json_t *root, const char *path, const char *key, const char *alt, int lo, int hi,
                   int allow_auto, int *out, int *is_auto, zf_err *err)
{
    json_t *v = json_object_get(root, key);
    const char *used = key;
    if (!v && alt) { v = json_object_get(root, alt); used = alt; }
    if (is_auto) *is_auto = 0;
    if (!v) return zf_err_set(err, "%s: %s: expected an integer, got nothing (missing key)", path, key);
    if (allow_auto && json_is_string(v) && strcmp(json_string_value(v), "auto") == 0) {
        *is_auto = 1;
        return 0;
    }
    if (!json_is_integer(v))
        return zf_err_set(err, "%s: %s: expected an integer%s, got a %s", path, used,
                          allow_auto ? " or \"auto\"" : "",
                          json_is_string(v) ? "string" : json_is_real(v) ? "real number" : "non-number");
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return zf_err_set(err, "%s: %s: expected an integer in [%d, %d], got %lld", path, used, lo, hi, (long long)x);
    *out = (int)x;
    return 0;
}

static int get_float(json_t *root, const char *path, const char *key, double def, double lo, double hi,
                     int hi_open, float *out, zf_err *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = (float)def; return 0; }
    if (!json_is_number(v)) return zf_err_set(err, "%s: %s: expected a number, got a non-number", path, key);
    double x = json_number_value(v);
    if (!(x >= lo) || (hi_open ? !(x < hi) : !(x <= hi)))
        return zf_err_set(err, "%s: %s: expected a number in [%g, %g%s, got %g", path, key, lo, hi,
                          hi_open ? ")" : "]", x);
    *out = (float)x;
    return 0;
}

/* An optional boolean that must have one value for this implementation. */
static int want_bool(json_t *root, const char *path, const char *key, int want, const char *why, zf_err *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return zf_err_set(err, "%s: %s: expected true or false, got a non-boolean", path, key);
    if (json_is_true(v) != want)
        return zf_err_set(err, "%s: %s: expected %s (%s), got %s", path, key, want ? "true" : "false", why,
                          want ? "false" : "true");
    return 0;
}

static int parse_config(const char *path, int allow_auto, int tok_vocab, zf_gpt2_config *cfg, zf_err *err)
{
    json_error_t je;
    FILE *probe = fopen(path, "r");
    if (!probe) return zf_err_set(err, "%s: cannot read: %s", path, strerror(errno));
    fclose(probe);
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (je.line <= 0) return zf_err_set(err, "%s: cannot read: %s", path, je.text);
        return zf_err_set(err, "%s: line %d: invalid JSON: %s", path, je.line, je.text);
    }
    int rc = -1;
    if (!json_is_object(root)) { zf_err_set(err, "%s: expected a JSON object at the top level", path); goto out; }

    /* Architecture: whatever is stated must be GPT-2; something must be stated. */
    json_t *arch = json_object_get(root, "architectures");
    json_t *mt = json_object_get(root, "model_type");
    if (!arch && !mt) {
        zf_err_set(err, "%s: model_type: expected \"gpt2\", got nothing (unknown architecture)", path);
        goto out;
    }
    if (arch && !json_is_null(arch)) {
        if (!json_is_array(arch)) { zf_err_set(err, "%s: architectures: expected an array of strings", path); goto out; }
        size_t i; json_t *a;
        json_array_foreach(arch, i, a) {
            const char *s = json_is_string(a) ? json_string_value(a) : "(not a string)";
            if (strcmp(s, "GPT2LMHeadModel") != 0 && strcmp(s, "GPT2Model") != 0) {
                zf_err_set(err, "%s: architectures: expected \"GPT2LMHeadModel\", got \"%s\" (unknown architecture)",
                           path, s);
                goto out;
            }
        }
    }

    if (mt && !json_is_null(mt)) {
        if (!json_is_string(mt) || strcmp(json_string_value(mt), "gpt2") != 0) {
            zf_err_set(err, "%s: model_type: expected \"gpt2\", got \"%s\" (unknown architecture)", path,
                       json_is_string(mt) ? json_string_value(mt) : "(not a string)");
            goto out;
        }
    }
    memset(cfg, 0, sizeof *cfg);
    int is_auto = 0;
    if (get_int(root, path, "n_layer", NULL, 1, 1024, 0, &cfg->n_layer, NULL, err) ||
        get_int(root, path, "n_head", NULL, 1, 1024, 0, &cfg->n_head, NULL, err) ||
        get_int(root, path, "n_embd", NULL, 1, 65536, 0, &cfg->n_embd, NULL, err) ||
        get_int(root, path, "n_positions", "n_ctx", 1, 1 << 20, 0, &cfg->n_positions, NULL, err) ||
        get_int(root, path, "vocab_size", NULL, 1, 1 << 24, allow_auto, &cfg->vocab_size, &is_auto, err))
        goto out;
    if (is_auto) {
        if (tok_vocab <= 0) {
            zf_err_set(err, "%s: vocab_size: \"auto\" needs the tokenizer's vocabulary size, none was given", path);
            goto out;
        }
        cfg->vocab_size = tok_vocab;
    }
    if (get_float(root, path, "layer_norm_epsilon", 1e-5, 0.0, 1.0, 0, &cfg->layer_norm_epsilon, err) ||
        get_float(root, path, "embd_pdrop", 0.1, 0.0, 1.0, 1, &cfg->embd_pdrop, err) ||
        get_float(root, path, "attn_pdrop", 0.1, 0.0, 1.0, 1, &cfg->attn_pdrop, err) ||
        get_float(root, path, "resid_pdrop", 0.1, 0.0, 1.0, 1, &cfg->resid_pdrop, err))
        goto out;

    json_t *act = json_object_get(root, "activation_function");
    if (act && !json_is_null(act)) {
        const char *s = json_is_string(act) ? json_string_value(act) : "(not a string)";
        /* gelu_pytorch_tanh is the same tanh approximation as gelu_new. */
        if (strcmp(s, "gelu_new") != 0 && strcmp(s, "gelu_pytorch_tanh") != 0) {
            zf_err_set(err, "%s: activation_function: expected \"gelu_new\", got \"%s\"", path, s);
            goto out;
        }
    }
    json_t *inner = json_object_get(root, "n_inner");
    if (inner && !json_is_null(inner)) {
        if (!json_is_integer(inner) || json_integer_value(inner) != 4LL * cfg->n_embd) {
            zf_err_set(err, "%s: n_inner: expected null or %d (4*n_embd), got %s", path, 4 * cfg->n_embd,
                       json_is_integer(inner) ? "another value" : "a non-integer");
            goto out;
        }
    }
    if (want_bool(root, path, "tie_word_embeddings", 1, "the LM head is tied to wte", err) ||
        want_bool(root, path, "scale_attn_weights", 1, "attention is scaled by 1/sqrt(head_dim)", err) ||
        want_bool(root, path, "scale_attn_by_inverse_layer_idx", 0, "not implemented", err) ||
        want_bool(root, path, "add_cross_attention", 0, "not implemented", err))
        goto out;
    rc = zf_gpt2_config_check(cfg, path, err);
out:
    json_decref(root);
    return rc;
}

int zf_gpt2_config_check(const zf_gpt2_config *c, const char *what, zf_err *err)
{
    if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->n_positions < 1 || c->vocab_size < 1)
        return zf_err_set(err, "%s: n_layer/n_head/n_embd/n_positions/vocab_size: expected positive values, got %d/%d/%d/%d/%d",
                          what, c->n_layer, c->n_head, c->n_embd, c->n_positions, c->vocab_size);
    if (c->n_embd % c->n_head != 0)
        return zf_err_set(err, "%s: n_head: expected a divisor of n_embd=%d, got %d", what, c->n_embd, c->n_head);
    if (!(c->layer_norm_epsilon > 0.0f))
        return zf_err_set(err, "%s: layer_norm_epsilon: expected > 0, got %g", what, c->layer_norm_epsilon);
    const float p[3] = {c->embd_pdrop, c->attn_pdrop, c->resid_pdrop};
    const char *pn[3] = {"embd_pdrop", "attn_pdrop", "resid_pdrop"};
    for (int i = 0; i < 3; i++)
        if (!(p[i] >= 0.0f && p[i] < 1.0f))
            return zf_err_set(err, "%s: %s: expected a number in [0, 1), got %g", what, pn[i], p[i]);
    return 0;
}

int zf_gpt2_config_load(const char *path, zf_gpt2_config *cfg, zf_err *err)
{
    return parse_config(path, 0, 0, cfg, err);
}

int zf_gpt2_preset_load(const char *path, int tokenizer_vocab_size, zf_gpt2_config *cfg, zf_err *err)
{
    return parse_config(path, 1, tokenizer_vocab_size, cfg, err);
}

/* Shortest decimal that reads back as the same float (0.1f -> "0.1"). */
static void fmt_float(char *buf, size_t n, float f)
{
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, n, "%.*g", p, (double)f);
        if ((float)strtod(buf, NULL) == f) break;
    }
    /* JSON needs a digit after "1e-05"-like output as is; plain integers
     * (e.g. "0") stay valid JSON numbers. */
}

int zf_gpt2_config_save(const char *path, const zf_gpt2_config *c, zf_err *err)
{
    if (zf_gpt2_config_check(c, path, err)) return -1;
    FILE *f = fopen(path, "w");
    if (!f) return zf_err_set(err, "%s: cannot create: %s", path, strerror(errno));
    char e[32], ep[32], ap[32], rp[32];
    fmt_float(e, sizeof e, c->layer_norm_epsilon);
    fmt_float(ep, sizeof ep, c->embd_pdrop);
    fmt_float(ap, sizeof ap, c->attn_pdrop);
    fmt_float(rp, sizeof rp, c->resid_pdrop);
    /* Keys as transformers' GPT2Config writes them (sorted). bos/eos default
     * to 50256 in GPT2Config; only stated when that id exists. */
    fprintf(f, "{\n");
    fprintf(f, "  \"activation_function\": \"gelu_new\",\n");
    fprintf(f, "  \"architectures\": [\n    \"GPT2LMHeadModel\"\n  ],\n");
    fprintf(f, "  \"attn_pdrop\": %s,\n", ap);
    if (c->vocab_size > 50256) fprintf(f, "  \"bos_token_id\": 50256,\n");
    fprintf(f, "  \"embd_pdrop\": %s,\n", ep);
    if (c->vocab_size > 50256) fprintf(f, "  \"eos_token_id\": 50256,\n");
    fprintf(f, "  \"initializer_range\": 0.02,\n");
    fprintf(f, "  \"layer_norm_epsilon\": %s,\n", e);
    fprintf(f, "  \"model_type\": \"gpt2\",\n");
    fprintf(f, "  \"n_ctx\": %d,\n", c->n_positions);
    fprintf(f, "  \"n_embd\": %d,\n", c->n_embd);
    fprintf(f, "  \"n_head\": %d,\n", c->n_head);
    fprintf(f, "  \"n_inner\": null,\n");
    fprintf(f, "  \"n_layer\": %d,\n", c->n_layer);
    fprintf(f, "  \"n_positions\": %d,\n", c->n_positions);
    fprintf(f, "  \"reorder_and_upcast_attn\": false,\n");
    fprintf(f, "  \"resid_pdrop\": %s,\n", rp);
    fprintf(f, "  \"scale_attn_by_inverse_layer_idx\": false,\n");
    fprintf(f, "  \"scale_attn_weights\": true,\n");
    fprintf(f, "  \"summary_activation\": null,\n");
    fprintf(f, "  \"summary_first_dropout\": 0.1,\n");
    fprintf(f, "  \"summary_proj_to_labels\": true,\n");
    fprintf(f, "  \"summary_type\": \"cls_index\",\n");
    fprintf(f, "  \"summary_use_proj\": true,\n");
    fprintf(f, "  \"tie_word_embeddings\": true,\n");
    fprintf(f, "  \"torch_dtype\": \"float32\",\n");
    fprintf(f, "  \"use_cache\": true,\n");
    fprintf(f, "  \"vocab_size\": %d\n", c->vocab_size);
    fprintf(f, "}\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return zf_err_set(err, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

/* ---------------------------------------------------------- param table */

static void add_tensor(zf_param_table *t, int *cap, size_t *off, const char *name, int ndim, int64_t d0, int64_t d1)
{
    if (t->count == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        t->t = zf_xrealloc(t->t, (size_t)*cap * sizeof *t->t);
    }
    zf_tensor_info *x = &t->t[t->count++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->ndim = ndim;
    x->shape[0] = d0;
    x->shape[1] = ndim == 2 ? d1 : 0;
    x->numel = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
    x->decay = ndim == 2;
    x->offset = *off;
    *off += (x->numel + ZF_PARAM_ALIGN - 1) / ZF_PARAM_ALIGN * ZF_PARAM_ALIGN;
}

void zf_gpt2_param_table(const zf_gpt2_config *c, zf_param_table *out)
{
    memset(out, 0, sizeof *out);
    int cap = 0;
    size_t off = 0;
    const int64_t d = c->n_embd;
    char n[96];
    add_tensor(out, &cap, &off, "transformer.wte.weight", 2, c->vocab_size, d);
    add_tensor(out, &cap, &off, "transformer.wpe.weight", 2, c->n_positions, d);
    for (int i = 0; i < c->n_layer; i++) {
#define T1(suffix, a) (snprintf(n, sizeof n, "transformer.h.%d." suffix, i), add_tensor(out, &cap, &off, n, 1, a, 0))
#define T2(suffix, a, b) (snprintf(n, sizeof n, "transformer.h.%d." suffix, i), add_tensor(out, &cap, &off, n, 2, a, b))
        T1("ln_1.weight", d);
        T1("ln_1.bias", d);
        T2("attn.c_attn.weight", d, 3 * d);
        T1("attn.c_attn.bias", 3 * d);
        T2("attn.c_proj.weight", d, d);
        T1("attn.c_proj.bias", d);
        T1("ln_2.weight", d);
        T1("ln_2.bias", d);
        T2("mlp.c_fc.weight", d, 4 * d);
        T1("mlp.c_fc.bias", 4 * d);
        T2("mlp.c_proj.weight", 4 * d, d);
        T1("mlp.c_proj.bias", d);
#undef T1
#undef T2
    }
    add_tensor(out, &cap, &off, "transformer.ln_f.weight", 1, d, 0);
    add_tensor(out, &cap, &off, "transformer.ln_f.bias", 1, d, 0);
    out->total = off;
}

void zf_param_table_free(zf_param_table *t)
{
    if (!t) return;
    free(t->t);
    memset(t, 0, sizeof *t);
}

const zf_tensor_info *zf_param_find(const zf_param_table *t, const char *name)
{
    for (int i = 0; i < t->count; i++)
        if (strcmp(t->t[i].name, name) == 0) return &t->t[i];
    return NULL;
}

size_t zf_param_count(const zf_param_table *t)
{
    size_t s = 0;
    for (int i = 0; i < t->count; i++) s += t->t[i].numel;
    return s;
}

float *zf_params_alloc(const zf_param_table *t)
{
    size_t bytes = (t->total * sizeof(float) + 63) / 64 * 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0 || !p)
        zf_die("out of memory allocating %zu bytes of parameters", bytes);
    memset(p, 0, bytes);
    return p;
}

/* --------------------------------------------------------------- init */

#define INIT_CHUNK 65536

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

void zf_gpt2_init_params_range(const zf_gpt2_config *cfg, const zf_param_table *t, float *dst, size_t lo, size_t n,
                               uint64_t seed)
{
    /* Work items: (tensor, chunk) overlapping [lo, hi); each chunk draws
     * from its own stream, so any schedule and any range give the same
     * numbers (a chunk cut by the range is drawn from its start). */
    const size_t hi = lo + n;
    size_t nitems = 0;
    for (int i = 0; i < t->count; i++) nitems += (t->t[i].numel + INIT_CHUNK - 1) / INIT_CHUNK;
    int *item_t = zf_xmalloc(nitems * sizeof *item_t + 1);
    size_t *item_c = zf_xmalloc(nitems * sizeof *item_c + 1);
    size_t k = 0;
    for (int i = 0; i < t->count; i++) {
        const zf_tensor_info *x = &t->t[i];
        size_t nc = (x->numel + INIT_CHUNK - 1) / INIT_CHUNK;
        for (size_t c = 0; c < nc; c++) {
            const size_t a = x->offset + c * INIT_CHUNK, end = x->offset + x->numel;
            const size_t e = a + INIT_CHUNK < end ? a + INIT_CHUNK : end;
            if (e <= lo || a >= hi) continue;
            item_t[k] = i;
            item_c[k] = c;
            k++;
        }
    }
    nitems = k;
    const double std_w = 0.02, std_proj = 0.02 / sqrt(2.0 * cfg->n_layer);
    memset(dst, 0, n * sizeof(float)); /* the alignment gaps */
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t it = 0; it < nitems; it++) {
        const zf_tensor_info *x = &t->t[item_t[it]];
        size_t c = item_c[it];
        /* the chunk [a, e) of the tensor, its part in the range [from, to) */
        const size_t a = c * INIT_CHUNK, e = a + INIT_CHUNK < x->numel ? a + INIT_CHUNK : x->numel;
        const size_t from = x->offset + a > lo ? a : lo - x->offset, to = x->offset + e < hi ? e : hi - x->offset;
        float *p = dst + (x->offset + from - lo); /* the tensor's element j at p[j - from] */
        if (x->ndim == 1) {
            /* LayerNorm weights are 1, every bias and LN bias 0. */
            float v = (ends_with(x->name, ".weight")) ? 1.0f : 0.0f;
            for (size_t j = from; j < to; j++) p[j - from] = v;
            continue;
        }
        double sd = ends_with(x->name, "c_proj.weight") ? std_proj : std_w;
        zf_rng r;
        zf_rng_seed(&r, seed, ((uint64_t)(item_t[it] + 1) << 32) | (uint64_t)c);
        for (size_t j = a; j < from; j++) (void)zf_rng_normal(&r);
        for (size_t j = from; j < to; j++) p[j - from] = (float)(zf_rng_normal(&r) * sd);
    }
    free(item_t);
    free(item_c);
}

void zf_gpt2_init_params(const zf_gpt2_config *cfg, const zf_param_table *t, float *params, uint64_t seed)
{
    zf_gpt2_init_params_range(cfg, t, params, 0, t->total, seed);
}

int zf_param_layout(const zf_param_table *t, int64_t *rows)
{
    int n = 0;
    size_t pos = 0;
    for (int i = 0; i <= t->count; i++) {
        size_t start = i < t->count ? t->t[i].offset : t->total;
        if (start > pos) { /* alignment gap */
            if (rows) {
                rows[3 * n] = (int64_t)pos;
                rows[3 * n + 1] = (int64_t)(start - pos);
                rows[3 * n + 2] = 0;
            }
            n++;
        }
        if (i == t->count) break;
        if (rows) {
            rows[3 * n] = (int64_t)t->t[i].offset;
            rows[3 * n + 1] = (int64_t)t->t[i].numel;
            rows[3 * n + 2] = t->t[i].decay;
        }
        n++;
        pos = t->t[i].offset + t->t[i].numel;
    }
    return n;
}
