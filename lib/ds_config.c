/* ds_config.c - DeepSpeed JSON configs (see ds_config.h for the key policy).
 * Defaults are DeepSpeed's: runtime/constants.py (fp16, clipping, steps),
 * zero/config.py and zero/offload_config.py (ZeRO), lr_schedules.py (via
 * lr_schedule.h), and FusedAdam/DeepSpeedCPUAdam's constructor defaults for
 * the optimizer. */
#include "ds_config.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

void zf_ds_config_defaults(zf_ds_config *c)
{
    memset(c, 0, sizeof *c);
    c->gradient_clipping = 0.0;
    c->steps_per_print = 10;
    snprintf(c->optimizer_type, sizeof c->optimizer_type, "AdamW");
    c->adam_w_mode = 1;
    c->lr = 1e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.0;
    zf_lr_schedule_defaults(&c->scheduler, "", c->lr);
    c->fp16_loss_scale = 0;
    c->fp16_initial_scale_power = 16;
    c->fp16_loss_scale_window = 1000;
    c->fp16_hysteresis = 2;
    c->fp16_min_loss_scale = 1;
    c->zero_contiguous_gradients = 1;
    c->zero_reduce_scatter = 1;
    c->zero_reduce_bucket_size = 500000000;
    c->zero_allgather_bucket_size = 500000000;
    c->zero_stage3_prefetch_bucket_size = 50000000;
    c->zero_stage3_param_persistence_threshold = 100000;
    c->zero_stage3_max_live_parameters = 1000000000;
    c->zero_stage3_max_reuse_distance = 1000000000;
    snprintf(c->zero_offload_optimizer_device, sizeof c->zero_offload_optimizer_device, "none");
    snprintf(c->zero_offload_param_device, sizeof c->zero_offload_param_device, "none");
}

/* ---- helpers ------------------------------------------------------------ */

typedef struct {
    zf_ds_config *c;
    const char *path;
    zf_err *err;
} ctx;

static void warn(ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(ctx *x, const char *fmt, ...)
{
    zf_ds_config *c = x->c;
    if (c->n_warnings >= ZF_DS_MAX_WARNINGS) return;
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    snprintf(c->warnings[c->n_warnings++], sizeof c->warnings[0], "%.500s: %s", x->path, line);
}

/* "sect.key" or "key" */
static void keypath(char *out, size_t n, const char *sect, const char *key)
{
    if (sect && sect[0]) snprintf(out, n, "%s.%s", sect, key);
    else snprintf(out, n, "%s", key);
}

/* A key for a message: control and non-ASCII bytes as '?', at most 80
 * bytes, so that a hostile key cannot break the one-line message. */
static const char *safe_key(char *out, size_t n, const char *key)
{
    size_t o = 0;
    for (size_t i = 0; key[i] && o + 1 < n && i < 80; i++)
        out[o++] = (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
    out[o] = 0;
    return out;
}

/* Short rendering of a JSON value for "got ..." */
static void describe(char *out, size_t n, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: snprintf(out, n, "an object"); break;
    case JSON_ARRAY: snprintf(out, n, "an array"); break;
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t o = 0;
        out[o++] = '"';
        for (size_t i = 0; s[i] && o + 6 < n && i < 40; i++)
            out[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        if (strlen(s) > 40 && o + 4 < n) { memcpy(out + o, "...", 3); o += 3; }
        out[o++] = '"';
        out[o] = 0;
        break;
    }
    case JSON_INTEGER: snprintf(out, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: snprintf(out, n, "%g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(out, n, "true"); break;
    case JSON_FALSE: snprintf(out, n, "false"); break;
    default: snprintf(out, n, "null"); break;
    }
}

static int bad(ctx *x, const char *sect, const char *key, const json_t *v, const char *expected)
{
    char kp[128], got[96];
    keypath(kp, sizeof kp, sect, key);
    describe(got, sizeof got, v);
    return zf_err_set(x->err, "%s: %s: expected %s, got %s", x->path, kp, expected, got);
}

/* Value of key, or NULL when absent or null ("not set"). */
static json_t *get(json_t *obj, const char *key)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return (v && json_is_null(v)) ? NULL : v;
}

static int get_bool(ctx *x, json_t *obj, const char *sect, const char *key, int *out)
{
    json_t *v = get(obj, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return bad(x, sect, key, v, "true or false");
    *out = json_is_true(v);
    return 0;
}

static int get_double(ctx *x, json_t *obj, const char *sect, const char *key, double lo, double hi,
                      const char *expected, double *out)
{
    json_t *v = get(obj, key);
    if (!v) return 0;
    if (!json_is_number(v)) return bad(x, sect, key, v, expected);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi) return bad(x, sect, key, v, expected);
    *out = d;
    return 0;
}

/* Integers may be written as integral reals (5e8), as DeepSpeed's pp_int allows. */
static int as_int64(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (isfinite(d) && d == floor(d) && fabs(d) < 9.0e18) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return -1;
}

static int get_int64(ctx *x, json_t *obj, const char *sect, const char *key, int64_t lo, int64_t hi,
                     const char *expected, int64_t *out)
{
    json_t *v = get(obj, key);
    if (!v) return 0;
    int64_t i;
    if (as_int64(v, &i) != 0 || i < lo || i > hi) return bad(x, sect, key, v, expected);
    *out = i;
    return 0;
}

static int get_int(ctx *x, json_t *obj, const char *sect, const char *key, int lo, int hi, const char *expected,
                   int *out)
{
    int64_t i = *out;
    if (get_int64(x, obj, sect, key, lo, hi, expected, &i) != 0) return -1;
    *out = (int)i;
    return 0;
}

static int get_object(ctx *x, json_t *obj, const char *sect, const char *key, json_t **out)
{
    json_t *v = get(obj, key);
    *out = NULL;
    if (!v) return 0;
    if (!json_is_object(v)) return bad(x, sect, key, v, "an object");
    *out = v;
    return 0;
}

static int in_list(const char *key, const char *const *list)
{
    for (int i = 0; list && list[i]; i++)
        if (!strcmp(key, list[i])) return 1;
    return 0;
}

/* Section key check: `used` are read by zeroflow, `inert` are DeepSpeed keys
 * without an effect here (warning), anything else is an error. */
static int check_keys(ctx *x, json_t *obj, const char *sect, const char *const *used, const char *const *inert)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (in_list(key, used)) continue;
        if (in_list(key, inert)) {
            warn(x, "%s.%s: has no effect in zeroflow, ignored", sect, key);
            continue;
        }
        char k[96];
        return zf_err_set(x->err, "%s: %s.%s: unknown key (not a DeepSpeed %s setting)", x->path, sect,
                          safe_key(k, sizeof k, key), sect);
    }
    return 0;
}

/* ---- sections ----------------------------------------------------------- */

static int batch_key(ctx *x, json_t *root, const char *key, int *out)
{
    json_t *v = get(root, key);
    if (!v) return 0;
    if (json_is_string(v) && !strcmp(json_string_value(v), "auto")) {
        *out = ZF_DS_AUTO;
        return 0;
    }
    int64_t i;
    if (as_int64(v, &i) != 0 || i < 1 || i > 1000000000) return bad(x, NULL, key, v, "a positive integer or \"auto\"");
    *out = (int)i;
    return 0;
}

static int load_optimizer(ctx *x, json_t *opt)
{
    zf_ds_config *c = x->c;
    static const char *const used[] = {"type", "params", NULL};
    static const char *const inert[] = {"legacy_fusion", NULL};
    if (check_keys(x, opt, "optimizer", used, inert) != 0) return -1;
    c->optimizer_present = 1;
    json_t *t = get(opt, "type");
    if (!t) return zf_err_set(x->err, "%s: optimizer.type: missing (expected \"AdamW\")", x->path);
    if (!json_is_string(t)) return bad(x, "optimizer", "type", t, "\"AdamW\" or \"Adam\"");
    const char *name = json_string_value(t);
    int adamw_type;
    if (!strcasecmp(name, "AdamW")) adamw_type = 1;
    else if (!strcasecmp(name, "Adam")) adamw_type = 0;
    else return bad(x, "optimizer", "type", t, "\"AdamW\" or \"Adam\" (zeroflow implements AdamW)");
    snprintf(c->optimizer_type, sizeof c->optimizer_type, "%s", adamw_type ? "AdamW" : "Adam");

    json_t *p;
    if (get_object(x, opt, "optimizer", "params", &p) != 0) return -1;
    if (!p) return 0;
    static const char *const pused[] = {"lr", "betas", "eps", "weight_decay", "adam_w_mode", "bias_correction",
                                        "amsgrad", "torch_adam", NULL};
    static const char *const pinert[] = {"fp32_optimizer_states", "set_grad_none", NULL};
    if (check_keys(x, p, "optimizer.params", pused, pinert) != 0) return -1;
    const char *S = "optimizer.params";
    if (get_double(x, p, S, "lr", 0, 1e9, "a number >= 0", &c->lr) != 0) return -1;
    if (get_double(x, p, S, "eps", 0, 1, "a number in [0, 1]", &c->eps) != 0) return -1;
    if (get_double(x, p, S, "weight_decay", 0, 1e9, "a number >= 0", &c->weight_decay) != 0) return -1;
    json_t *b = get(p, "betas");
    if (b) {
        if (!json_is_array(b) || json_array_size(b) != 2 || !json_is_number(json_array_get(b, 0)) ||
            !json_is_number(json_array_get(b, 1)))
            return bad(x, S, "betas", b, "[beta1, beta2], two numbers in [0, 1)");
        double b1 = json_number_value(json_array_get(b, 0)), b2 = json_number_value(json_array_get(b, 1));
        if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1))
            return zf_err_set(x->err, "%s: %s.betas: expected two numbers in [0, 1), got [%g, %g]", x->path, S, b1, b2);
        c->beta1 = b1;
        c->beta2 = b2;
    }
    /* DeepSpeed: type Adam means AdamW unless adam_w_mode is false. */
    int adam_w_mode = 1, bias_correction = 1, amsgrad = 0, torch_adam = 0;
    if (get_bool(x, p, S, "adam_w_mode", &adam_w_mode) != 0 || get_bool(x, p, S, "bias_correction", &bias_correction) ||
        get_bool(x, p, S, "amsgrad", &amsgrad) || get_bool(x, p, S, "torch_adam", &torch_adam))
        return -1;
    if (!bias_correction)
        return zf_err_set(x->err, "%s: %s.bias_correction: expected true (zeroflow's AdamW always corrects bias), got false",
                          x->path, S);
    if (amsgrad) return zf_err_set(x->err, "%s: %s.amsgrad: expected false (AMSGrad is not implemented), got true", x->path, S);
    if (!adamw_type && !adam_w_mode && c->weight_decay != 0)
        return zf_err_set(x->err,
                          "%s: %s.adam_w_mode: expected true (Adam with L2 weight decay is not implemented; "
                          "it equals AdamW only when weight_decay is 0), got false",
                          x->path, S);
    c->adam_w_mode = 1;
    return 0;
}

static int load_scheduler(ctx *x, json_t *sch)
{
    zf_ds_config *c = x->c;
    static const char *const used[] = {"type", "params", NULL};
    if (check_keys(x, sch, "scheduler", used, NULL) != 0) return -1;
    json_t *t = get(sch, "type");
    static const char *const expect = "\"WarmupLR\", \"WarmupDecayLR\" or \"WarmupCosineLR\"";
    if (!t) return zf_err_set(x->err, "%s: scheduler.type: missing (expected %s)", x->path, expect);
    if (!json_is_string(t)) return bad(x, "scheduler", "type", t, expect);
    const char *type = json_string_value(t);
    int warm = !strcmp(type, "WarmupLR"), decay = !strcmp(type, "WarmupDecayLR"), cosine = !strcmp(type, "WarmupCosineLR");
    if (!warm && !decay && !cosine) return bad(x, "scheduler", "type", t, expect);
    zf_lr_schedule *s = &c->scheduler;
    zf_lr_schedule_defaults(s, type, c->lr);

    json_t *p;
    if (get_object(x, sch, "scheduler", "params", &p) != 0) return -1;
    const char *S = "scheduler.params";
    static const char *const warm_keys[] = {"warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "warmup_type",
                                            "last_batch_iteration", NULL};
    static const char *const decay_keys[] = {"warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "warmup_type",
                                             "last_batch_iteration", "total_num_steps", NULL};
    static const char *const cos_keys[] = {"total_num_steps", "warmup_min_ratio", "warmup_num_steps", "cos_min_ratio",
                                           "warmup_type", "last_batch_iteration", NULL};
    const char *const *keys = warm ? warm_keys : decay ? decay_keys : cos_keys;
    if (p) {
        const char *key;
        json_t *v;
        json_object_foreach(p, key, v) {
            char k[96];
            if (!in_list(key, keys))
                return zf_err_set(x->err, "%s: %s.%s: unknown key (not a parameter of %s)", x->path, S,
                                  safe_key(k, sizeof k, key), type);
        }
        int64_t i;
        if (!cosine) {
            if (get_double(x, p, S, "warmup_min_lr", 0, 1e9, "a number >= 0", &s->warmup_min_lr) != 0 ||
                get_double(x, p, S, "warmup_max_lr", 0, 1e9, "a number >= 0", &s->warmup_max_lr) != 0)
                return -1;
        } else {
            if (get_double(x, p, S, "warmup_min_ratio", 0, 1, "a number in [0, 1]", &s->warmup_min_ratio) != 0 ||
                get_double(x, p, S, "cos_min_ratio", 0, 1, "a number in [0, 1]", &s->cos_min_ratio) != 0)
                return -1;
        }
        i = s->warmup_num_steps;
        if (get_int64(x, p, S, "warmup_num_steps", 0, INT32_MAX, "an integer >= 0", &i) != 0) return -1;
        s->warmup_num_steps = (long)i;
        if (!warm) {
            i = s->total_num_steps;
            if (get_int64(x, p, S, "total_num_steps", 1, INT32_MAX, "a positive integer", &i) != 0) return -1;
            s->total_num_steps = (long)i;
        }
        i = -1;
        if (get_int64(x, p, S, "last_batch_iteration", -1, -1, "-1 (resuming restores the schedule from checkpoints)",
                      &i) != 0)
            return -1;
        json_t *wt = get(p, "warmup_type");
        if (wt) {
            if (!json_is_string(wt) || (strcmp(json_string_value(wt), "log") && strcmp(json_string_value(wt), "linear")))
                return bad(x, S, "warmup_type", wt, "\"log\" or \"linear\"");
            snprintf(s->warmup_type, sizeof s->warmup_type, "%s", json_string_value(wt));
        }
    }
    if (!warm && (!p || !get(p, "total_num_steps")))
        return zf_err_set(x->err, "%s: %s.total_num_steps: missing (required by %s)", x->path, S, type);
    /* DeepSpeed clamps warmup to at least 2 steps (max(2, warmup_num_steps)). */
    if (s->warmup_num_steps < 2) s->warmup_num_steps = 2;
    zf_err e2;
    if (zf_lr_schedule_check(s, &e2) != 0) return zf_err_set(x->err, "%s: %s", x->path, e2.msg);
    return 0;
}

static int load_fp16(ctx *x, json_t *f)
{
    zf_ds_config *c = x->c;
    static const char *const used[] = {"enabled", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis",
                                       "consecutive_hysteresis", "min_loss_scale", NULL};
    static const char *const inert[] = {"auto_cast", "fp16_master_weights_and_grads", "raise_error_at_min_scale", NULL};
    const char *S = "fp16";
    if (check_keys(x, f, S, used, inert) != 0) return -1;
    int64_t i;
    if (get_bool(x, f, S, "enabled", &c->fp16_enabled) != 0) return -1;
    if (get_double(x, f, S, "loss_scale", 0, 1e30, "a number >= 0 (0 = dynamic)", &c->fp16_loss_scale) != 0) return -1;
    if (get_int(x, f, S, "initial_scale_power", 0, 62, "an integer in [0, 62]", &c->fp16_initial_scale_power) != 0)
        return -1;
    i = c->fp16_loss_scale_window;
    if (get_int64(x, f, S, "loss_scale_window", 1, INT32_MAX, "a positive integer", &i) != 0) return -1;
    c->fp16_loss_scale_window = (long)i;
    if (get_int(x, f, S, "hysteresis", 1, INT32_MAX, "a positive integer", &c->fp16_hysteresis) != 0) return -1;
    if (get_bool(x, f, S, "consecutive_hysteresis", &c->fp16_consecutive_hysteresis) != 0) return -1;
    if (get_double(x, f, S, "min_loss_scale", 1e-30, 1e30, "a number > 0", &c->fp16_min_loss_scale) != 0) return -1;
    return 0;
}

static int load_bf16(ctx *x, json_t *b, const char *S)
{
    static const char *const used[] = {"enabled", NULL};
    static const char *const inert[] = {"immediate_grad_update", "check_overflow", "check_grad_overflow",
                                        "bf16_master_weights_and_grads", "bf16_optimizer_states", NULL};
    if (check_keys(x, b, S, used, inert) != 0) return -1;
    return get_bool(x, b, S, "enabled", &x->c->bf16_enabled);
}

static int load_offload(ctx *x, json_t *o, const char *S, int is_param, char *device, size_t dn, int *pin)
{
    static const char *const used[] = {"device", "pin_memory", NULL};
    static const char *const inert_opt[] = {"nvme_path", "buffer_count", "pipeline_read", "pipeline_write",
                                            "fast_init", "ratio", NULL};
    static const char *const inert_par[] = {"nvme_path", "buffer_count", "buffer_size", "max_in_cpu", NULL};
    if (check_keys(x, o, S, used, is_param ? inert_par : inert_opt) != 0) return -1;
    json_t *d = get(o, "device");
    if (d) {
        if (!json_is_string(d) || (strcmp(json_string_value(d), "none") && strcmp(json_string_value(d), "cpu")))
            return bad(x, S, "device", d, "\"none\" or \"cpu\" (no NVMe offload in zeroflow)");
        snprintf(device, dn, "%s", json_string_value(d));
    }
    return get_bool(x, o, S, "pin_memory", pin);
}

static int load_zero(ctx *x, json_t *z)
{
    zf_ds_config *c = x->c;
    const char *S = "zero_optimization";
    static const char *const used[] = {"stage", "overlap_comm", "contiguous_gradients", "reduce_scatter",
                                       "reduce_bucket_size", "allgather_bucket_size", "stage3_prefetch_bucket_size",
                                       "stage3_param_persistence_threshold", "stage3_max_live_parameters",
                                       "stage3_max_reuse_distance", "stage3_gather_16bit_weights_on_model_save",
                                       "stage3_gather_fp16_weights_on_model_save", "offload_optimizer",
                                       "offload_param", NULL};
    static const char *const inert[] = {
        "allgather_partitions", "load_from_fp32_weights", "elastic_checkpoint", "sub_group_size",
        "stage3_model_persistence_threshold", "stage3_module_granularity_threshold",
        "stage3_use_all_reduce_for_fetch_params", "ignore_unused_parameters", "legacy_stage1",
        "round_robin_gradients", "zero_hpz_partition_size", "zero_quantized_weights",
        "zero_quantized_nontrainable_weights", "zero_quantized_gradients", "zeropp_loco_param", "mics_shard_size",
        "mics_hierarchical_params_gather", "memory_efficient_linear", "pipeline_loading_checkpoint",
        "override_module_apply", "use_multi_rank_bucket_allreduce", "cpu_offload", "cpu_offload_param",
        "cpu_offload_use_pin_memory", "log_trace_cache_warnings", NULL};
    if (check_keys(x, z, S, used, inert) != 0) return -1;
    json_t *st = get(z, "stage");
    if (st) {
        int64_t i;
        if (as_int64(st, &i) != 0 || i < 0 || i > 3) return bad(x, S, "stage", st, "0, 1, 2 or 3");
        c->zero_stage = (int)i;
    }
    int overlap = c->zero_stage == 3; /* DeepSpeed: None -> stage == 3 */
    if (get_bool(x, z, S, "overlap_comm", &overlap) != 0) return -1;
    c->zero_overlap_comm = overlap;
    if (get_bool(x, z, S, "contiguous_gradients", &c->zero_contiguous_gradients) != 0 ||
        get_bool(x, z, S, "reduce_scatter", &c->zero_reduce_scatter) != 0)
        return -1;
    static const char *const nonneg = "an integer >= 0 (e.g. 5e8)";
    const int64_t big = INT64_C(1) << 62;
    if (get_int64(x, z, S, "reduce_bucket_size", 0, big, nonneg, &c->zero_reduce_bucket_size) != 0 ||
        get_int64(x, z, S, "allgather_bucket_size", 0, big, nonneg, &c->zero_allgather_bucket_size) != 0 ||
        get_int64(x, z, S, "stage3_prefetch_bucket_size", 0, big, nonneg, &c->zero_stage3_prefetch_bucket_size) != 0 ||
        get_int64(x, z, S, "stage3_param_persistence_threshold", 0, big, nonneg,
                  &c->zero_stage3_param_persistence_threshold) != 0 ||
        get_int64(x, z, S, "stage3_max_live_parameters", 0, big, nonneg, &c->zero_stage3_max_live_parameters) != 0 ||
        get_int64(x, z, S, "stage3_max_reuse_distance", 0, big, nonneg, &c->zero_stage3_max_reuse_distance) != 0)
        return -1;
    /* The fp16 name is DeepSpeed's deprecated alias of the 16bit one. */
    if (get_bool(x, z, S, "stage3_gather_fp16_weights_on_model_save", &c->zero_stage3_gather_16bit_weights_on_model_save) ||
        get_bool(x, z, S, "stage3_gather_16bit_weights_on_model_save", &c->zero_stage3_gather_16bit_weights_on_model_save))
        return -1;
    json_t *o;
    if (get_object(x, z, S, "offload_optimizer", &o) != 0) return -1;
    if (o && load_offload(x, o, "zero_optimization.offload_optimizer", 0, c->zero_offload_optimizer_device,
                          sizeof c->zero_offload_optimizer_device, &c->zero_offload_optimizer_pin_memory) != 0)
        return -1;
    if (get_object(x, z, S, "offload_param", &o) != 0) return -1;
    if (o && load_offload(x, o, "zero_optimization.offload_param", 1, c->zero_offload_param_device,
                          sizeof c->zero_offload_param_device, &c->zero_offload_param_pin_memory) != 0)
        return -1;
    if (c->zero_stage != 3 && strcmp(c->zero_offload_param_device, "none") != 0) {
        warn(x, "zero_optimization.offload_param: only used by ZeRO stage 3 (stage is %d), ignored", c->zero_stage);
        snprintf(c->zero_offload_param_device, sizeof c->zero_offload_param_device, "none");
    }
    return 0;
}

static int load_activation_checkpointing(ctx *x, json_t *a)
{
    zf_ds_config *c = x->c;
    const char *S = "activation_checkpointing";
    static const char *const used[] = {"partition_activations", "cpu_checkpointing", "contiguous_memory_optimization",
                                       "number_checkpoints", "synchronize_checkpoint_boundary", "profile", NULL};
    if (check_keys(x, a, S, used, NULL) != 0) return -1;
    c->activation_checkpointing = 1;
    json_t *n = get(a, "number_checkpoints");
    int64_t i;
    if (n && (as_int64(n, &i) != 0 || i < 0)) return bad(x, S, "number_checkpoints", n, "an integer >= 0 or null");
    if (get_bool(x, a, S, "partition_activations", &c->ac_partition_activations) ||
        get_bool(x, a, S, "cpu_checkpointing", &c->ac_cpu_checkpointing) ||
        get_bool(x, a, S, "contiguous_memory_optimization", &c->ac_contiguous_memory_optimization) ||
        get_bool(x, a, S, "synchronize_checkpoint_boundary", &c->ac_synchronize_checkpoint_boundary) ||
        get_bool(x, a, S, "profile", &c->ac_profile))
        return -1;
    return 0;
}

/* Top-level DeepSpeed keys that zeroflow reads, and the ones it knows but
 * ignores (warning either way for anything not read). */
static const char *const g_top_used[] = {"train_batch_size", "train_micro_batch_size_per_gpu",
                                         "gradient_accumulation_steps", "gradient_clipping", "steps_per_print",
                                         "wall_clock_breakdown", "optimizer", "scheduler", "fp16", "bf16", "bfloat16",
                                         "zero_optimization", "activation_checkpointing", NULL};
static const char *const g_top_known[] = {
    "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer", "prescale_gradients", "gradient_predivide_factor",
    "sparse_gradients", "amp", "torch_autocast", "communication_data_type", "seq_parallel_communication_data_type",
    "fp32_allreduce", "disable_allgather", "dump_state", "memory_breakdown", "tensorboard", "wandb", "csv_monitor",
    "comet", "comms_logger", "flops_profiler", "autotuning", "elasticity", "checkpoint", "data_types",
    "dataloader_drop_last", "sparse_attention", "pipeline", "compression_training", "data_efficiency", "aio",
    "eigenvalue", "progressive_layer_drop", "curriculum_learning", "quantize_training", "graph_harvesting",
    "use_data_before_expert_parallelism", "hybrid_engine", "nebula", "weight_quantization", "compile",
    "timers", "mics_shard_size", "vocabulary_size", NULL};

static int load_root(ctx *x, json_t *root)
{
    zf_ds_config *c = x->c;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (in_list(key, g_top_used)) continue;
        if (in_list(key, g_top_known)) warn(x, "%s: DeepSpeed setting not supported by zeroflow, ignored", key);
        else {
            char k[96];
            warn(x, "%s: unknown key, ignored (DeepSpeed ignores unknown top-level keys too)", safe_key(k, sizeof k, key));
        }
    }
    if (batch_key(x, root, "train_batch_size", &c->train_batch_size) != 0 ||
        batch_key(x, root, "train_micro_batch_size_per_gpu", &c->train_micro_batch_size_per_gpu) != 0 ||
        batch_key(x, root, "gradient_accumulation_steps", &c->gradient_accumulation_steps) != 0)
        return -1;
    if (get_double(x, root, NULL, "gradient_clipping", 0, 1e30, "a number >= 0 (0 = off)", &c->gradient_clipping) != 0)
        return -1;
    if (get_int(x, root, NULL, "steps_per_print", 1, INT32_MAX, "a positive integer", &c->steps_per_print) != 0) return -1;
    if (get_bool(x, root, NULL, "wall_clock_breakdown", &c->wall_clock_breakdown) != 0) return -1;

    json_t *s;
    if (get_object(x, root, NULL, "optimizer", &s) != 0 || (s && load_optimizer(x, s) != 0)) return -1;
    zf_lr_schedule_defaults(&c->scheduler, "", c->lr);
    if (get_object(x, root, NULL, "scheduler", &s) != 0 || (s && load_scheduler(x, s) != 0)) return -1;
    if (get_object(x, root, NULL, "fp16", &s) != 0 || (s && load_fp16(x, s) != 0)) return -1;
    if (json_object_get(root, "bf16") && json_object_get(root, "bfloat16"))
        return zf_err_set(x->err, "%s: bfloat16: expected only one of \"bf16\" and its old name \"bfloat16\", got both",
                          x->path);
    if (get_object(x, root, NULL, "bf16", &s) != 0 || (s && load_bf16(x, s, "bf16") != 0)) return -1;
    if (get_object(x, root, NULL, "bfloat16", &s) != 0 || (s && load_bf16(x, s, "bfloat16") != 0)) return -1;
    if (c->fp16_enabled && c->bf16_enabled)
        return zf_err_set(x->err, "%s: bf16.enabled: expected fp16 and bf16 not both enabled, got both true", x->path);
    json_t *z = get(root, "zero_optimization");
    if (z && json_is_boolean(z))
        return bad(x, NULL, "zero_optimization", z, "an object such as {\"stage\": 2} (the boolean form is deprecated)");
    if (get_object(x, root, NULL, "zero_optimization", &s) != 0 || (s && load_zero(x, s) != 0)) return -1;
    if (get_object(x, root, NULL, "activation_checkpointing", &s) != 0 ||
        (s && load_activation_checkpointing(x, s) != 0))
        return -1;
    return 0;
}

int zf_ds_config_load(const char *path, zf_ds_config *c, zf_err *err)
{
    zf_ds_config_defaults(c);
    if (!path || !path[0]) return 0;
    snprintf(c->path, sizeof c->path, "%s", path);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return zf_err_set(err, "%s: cannot read the DeepSpeed config: is a directory", path);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_cannot_open_file || je.line <= 0)
            return zf_err_set(err, "%s: cannot read the DeepSpeed config: %s", path, je.text);
        return zf_err_set(err, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    }
    ctx x = {c, path, err};
    int rc;
    if (!json_is_object(root)) {
        char got[96];
        describe(got, sizeof got, root);
        rc = zf_err_set(err, "%s: expected a JSON object at the top level, got %s", path, got);
    } else {
        rc = load_root(&x, root);
    }
    json_decref(root);
    return rc;
}

/* ---- batch sizes -------------------------------------------------------- */

int zf_ds_config_resolve_batch(zf_ds_config *c, int cli_micro_batch, int world_size, zf_err *err)
{
    const char *path = c->path[0] ? c->path : "(no DeepSpeed config)";
    if (world_size < 1) return zf_err_set(err, "%s: world_size: expected >= 1, got %d", path, world_size);
    long tb = c->train_batch_size > 0 ? c->train_batch_size : 0;
    long mb = c->train_micro_batch_size_per_gpu > 0 ? c->train_micro_batch_size_per_gpu : 0;
    long ga = c->gradient_accumulation_steps > 0 ? c->gradient_accumulation_steps : 0;
    long w = world_size;
    if (mb && cli_micro_batch > 0 && mb != cli_micro_batch && c->n_warnings < ZF_DS_MAX_WARNINGS)
        snprintf(c->warnings[c->n_warnings++], sizeof c->warnings[0],
                 "%.500s: train_micro_batch_size_per_gpu %ld from the config overrides --batch_size %d", path, mb,
                 cli_micro_batch);
    if (!mb && cli_micro_batch > 0) mb = cli_micro_batch;

    /* DeepSpeed's _set_batch_related_parameters, case by case. */
    if (tb && mb && ga) {
    } else if (tb && mb) {
        ga = tb / mb / w;
    } else if (tb && ga) {
        mb = tb / w / ga;
    } else if (mb && ga) {
        tb = mb * ga * w;
    } else if (tb) {
        ga = 1;
        mb = tb / w;
    } else if (mb) {
        ga = 1;
        tb = mb * w;
    } else {
        return zf_err_set(err,
                          "%s: train_micro_batch_size_per_gpu: expected train_batch_size or "
                          "train_micro_batch_size_per_gpu in the config, or --batch_size",
                          path);
    }
    if (tb < 1 || mb < 1 || ga < 1 || tb != mb * ga * w)
        return zf_err_set(err,
                          "%s: train_batch_size: %ld != train_micro_batch_size_per_gpu %ld * "
                          "gradient_accumulation_steps %ld * world_size %ld",
                          path, tb, mb, ga, w);
    c->train_batch_size = (int)tb;
    c->train_micro_batch_size_per_gpu = (int)mb;
    c->gradient_accumulation_steps = (int)ga;
    return 0;
}

void zf_ds_config_optimizer(const zf_ds_config *c, zf_adamw_hparams *h, zf_lr_schedule *s)
{
    h->lr = c->lr;
    h->beta1 = c->beta1;
    h->beta2 = c->beta2;
    h->eps = c->eps;
    h->weight_decay = c->weight_decay;
    *s = c->scheduler;
    s->base_lr = c->lr;
}

void zf_ds_config_log_warnings(const zf_ds_config *c)
{
    for (int i = 0; i < c->n_warnings; i++) zf_warn("%s", c->warnings[i]);
}
