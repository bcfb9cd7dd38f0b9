/* ckpt_consolidate.c - see ckpt_consolidate.h. */
#include "ckpt_consolidate.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "model_source.h"
#include "paths.h"
#include "safetensors.h"

static int by_offset(const void *a, const void *b)
{
    const zf_ckpt_shard *x = *(const zf_ckpt_shard *const *)a, *y = *(const zf_ckpt_shard *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->rank - y->rank;
}

/* Does [off, off + n) of the model placed so far (pieces with their flat
 * starts) equal data bitwise? */
static int placed_equal(const zf_ckpt_piece *p, const size_t *at, int np, size_t off, const float *data, size_t n)
{
    for (int i = 0; i < np && n; i++) {
        const size_t lo = at[i], hi = at[i] + p[i].bytes / sizeof(float);
        if (hi <= off || lo >= off + n) continue;
        const size_t a = off > lo ? off : lo, e = off + n < hi ? off + n : hi;
        if (memcmp((const float *)p[i].data + (a - lo), data + (a - off), (e - a) * sizeof(float)) != 0) return 0;
    }
    return 1;
}

int zf_ckpt_shard_pieces(const zf_ckpt_shard *shards, int n, size_t total, const char *what, zf_ckpt_piece **pieces,
                         int *npieces, zf_err *err)
{
    *pieces = NULL;
    *npieces = 0;
    if (n < 1) return zf_err_set(err, "%s: optimizer.shards: expected at least one rank's partition", what);
    const zf_ckpt_shard **order = zf_xcalloc((size_t)n, sizeof *order);
    for (int i = 0; i < n; i++) {
        const zf_ckpt_shard *s = &shards[i];
        if (s->offset > total || s->numel > total - s->offset) {
            free(order);
            return zf_err_set(err, "%s: optimizer.shards: rank %d's partition [%zu, +%zu) goes beyond the model's %zu parameters",
                              what, s->rank, s->offset, s->numel, total);
        }
        order[i] = s;
    }
    qsort(order, (size_t)n, sizeof *order, by_offset);
    zf_ckpt_piece *p = zf_xcalloc((size_t)n, sizeof *p);
    size_t *at = zf_xcalloc((size_t)n, sizeof *at);
    int np = 0, rc = 0;
    size_t covered = 0; /* [0, covered) is placed */
    for (int i = 0; i < n && rc == 0; i++) {
        const zf_ckpt_shard *s = order[i];
        if (s->numel == 0) continue;
        if (s->offset > covered) {
            rc = zf_err_set(err, "%s: optimizer.shards: no rank holds parameters [%zu, %zu): expected the partitions to cover the model",
                            what, covered, s->offset);
            break;
        }
        size_t end = s->offset + s->numel, overlap = (covered < end ? covered : end) - s->offset;
        /* stage 0 keeps the whole buffer on every rank: the copies must agree */
        if (overlap && !placed_equal(p, at, np, s->offset, s->data, overlap)) {
            rc = zf_err_set(err, "%s: optimizer.shards: rank %d's partition disagrees with another rank's on [%zu, %zu): expected equal copies",
                            what, s->rank, s->offset, s->offset + overlap);
            break;
        }
        if (end > covered) {
            p[np] = (zf_ckpt_piece){ s->data + (covered - s->offset), (end - covered) * sizeof(float) };
            at[np++] = covered;
            covered = end;
        }
    }
    free(order);
    free(at);
    if (rc == 0 && covered != total)
        rc = zf_err_set(err, "%s: optimizer.shards: no rank holds parameters [%zu, %zu): expected the partitions to cover the model",
                        what, covered, total);
    if (rc != 0) {
        free(p);
        return -1;
    }
    *pieces = p;
    *npieces = np;
    return 0;
}

int zf_ckpt_place_shards(const zf_ckpt_shard *shards, int n, float *dst, size_t total, const char *what, zf_err *err)
{
    zf_ckpt_piece *p;
    int np;
    if (zf_ckpt_shard_pieces(shards, n, total, what, &p, &np, err) != 0) return -1;
    char *out = (char *)dst;
    for (int i = 0; i < np; i++) {
        memcpy(out, p[i].data, p[i].bytes);
        out += p[i].bytes;
    }
    free(p);
    return 0;
}

static int json_size(json_t *o, const char *key, size_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (size_t)json_integer_value(v);
    return 0;
}

int zf_ckpt_read_shards(const char *dir, size_t total, zf_ckpt_shard **out, int *n, zf_err *err)
{
    *out = NULL;
    *n = 0;
    char *text = NULL;
    if (zf_ckpt_read_meta(dir, &text, err) != 0) return -1;
    json_error_t je;
    json_t *meta = json_loads(text, 0, &je);
    free(text);
    json_t *shards = json_object_get(json_object_get(meta, "optimizer"), "shards");
    int count = json_is_array(shards) ? (int)json_array_size(shards) : 0;
    if (count < 1 || count > 65536) {
        json_decref(meta);
        return zf_err_set(err, "%s/meta.json: optimizer.shards: expected an array of the ranks' partitions", dir);
    }
    json_t *world = json_object_get(meta, "world_size");
    if (world && (!json_is_integer(world) || json_integer_value(world) != count)) {
        const char *got = json_is_integer(world) ? "another number" : "no integer";
        json_decref(meta);
        return zf_err_set(err, "%s/meta.json: world_size: expected %d (one partition per rank), got %s", dir, count, got);
    }
    zf_ckpt_shard *sh = zf_xcalloc((size_t)count, sizeof *sh);
    char *seen = zf_xcalloc((size_t)count, 1);
    int rc = 0;
    for (int i = 0; i < count; i++) {
        json_t *s = json_array_get(shards, (size_t)i);
        json_t *r = json_object_get(s, "rank");
        if (!json_is_integer(r) || json_integer_value(r) < 0 || json_integer_value(r) >= count ||
            seen[json_integer_value(r)] || json_size(s, "offset", &sh[i].offset) || json_size(s, "numel", &sh[i].numel)) {
            rc = zf_err_set(err, "%s/meta.json: optimizer.shards[%d]: expected {rank: 0..%d (each once), offset, numel}",
                            dir, i, count - 1);
            break;
        }
        sh[i].rank = (int)json_integer_value(r);
        seen[sh[i].rank] = 1;
        if (sh[i].offset > total || sh[i].numel > total - sh[i].offset) {
            rc = zf_err_set(err, "%s/meta.json: optimizer.shards[%d]: partition [%zu, +%zu) beyond the model's %zu parameters",
                            dir, i, sh[i].offset, sh[i].numel, total);
            break;
        }
    }
    json_decref(meta);
    free(seen);
    if (rc != 0) {
        free(sh);
        return -1;
    }
    *out = sh;
    *n = count;
    return 0;
}

int zf_ckpt_consolidate(const char *ckpt, zf_gpt2_config *cfg, zf_param_table *table, float **params, char *ckpt_dir,
                        size_t n, zf_err *err)
{
    char dir[1024], path[1100];
    *params = NULL;
    memset(table, 0, sizeof *table);
    if (!zf_is_checkpoint(ckpt, dir, sizeof dir))
        return zf_err_set(err, "%s: expected a zeroflow checkpoint (meta.json, or an output dir with checkpoints/latest)", ckpt);
    if (ckpt_dir) snprintf(ckpt_dir, n, "%s", dir);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (zf_gpt2_config_load(path, cfg, err) != 0) return -1;
    zf_gpt2_param_table(cfg, table);
    zf_ckpt_shard *sh = NULL;
    int count = 0;
    int rc = zf_ckpt_read_shards(dir, table->total, &sh, &count, err);
    for (int i = 0; i < count && rc == 0; i++) {
        char name[64];
        snprintf(name, sizeof name, "optim-r%d-master", sh[i].rank);
        float *data = zf_xmalloc(sh[i].numel * sizeof(float) + 1);
        sh[i].data = data;
        rc = zf_ckpt_read_tensor(dir, name, data, sh[i].numel, err);
    }
    if (rc == 0) {
        *params = zf_params_alloc(table);
        rc = zf_ckpt_place_shards(sh, count, *params, table->total, dir, err);
    }
    for (int i = 0; i < count; i++) free((void *)sh[i].data);
    free(sh);
    if (rc != 0) {
        free(*params);
        *params = NULL;
        zf_param_table_free(table);
    }
    return rc;
}

int zf_ckpt_write_safetensors(const char *path, const zf_param_table *t, const float *params, int bf16, zf_err *err)
{
    char tmp[1100];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return zf_err_set(err, "%s: path too long", path);
    char parent[1100];
    zf_path_parent(path, parent, sizeof parent);
    struct stat st;
    if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
        return zf_err_set(err, "%s: parent directory %s does not exist", path, parent);
    uint16_t *half = NULL;
    if (bf16) {
        half = zf_xmalloc(t->total * sizeof(uint16_t) + 1);
        for (size_t i = 0; i < t->total; i++) half[i] = zf_f32_to_bf16(params[i]);
    }
    zf_st_entry *e = zf_xcalloc((size_t)t->count, sizeof *e);
    for (int i = 0; i < t->count; i++) {
        e[i].name = t->t[i].name;
        e[i].dtype = bf16 ? ZF_ST_BF16 : ZF_ST_F32;
        e[i].ndim = t->t[i].ndim;
        e[i].shape[0] = t->t[i].shape[0];
        e[i].shape[1] = t->t[i].shape[1];
        e[i].data = bf16 ? (const void *)(half + t->t[i].offset) : (const void *)(params + t->t[i].offset);
    }
    int rc = zf_st_write(tmp, e, t->count, err);
    if (rc == 0 && rename(tmp, path) != 0) rc = zf_err_set(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    if (rc != 0) unlink(tmp);
    free(e);
    free(half);
    return rc;
}
