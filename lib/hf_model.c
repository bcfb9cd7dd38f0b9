/* hf_model.c - load/save GPT-2 in the Hugging Face directory format and
 * resolve model names.  See hf_model.h. */
#include "hf_model.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"
#include "safetensors.h"

static int is_dir(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISDIR(st.st_mode); }
static int is_file(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISREG(st.st_mode); }

/* snprintf for paths: -1 (instead of a silently cut path) when it does not fit. */
static int pathf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pathf(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    return k < 0 || (size_t)k >= n ? -1 : 0;
}

static int join(char *out, size_t n, const char *a, const char *b) { return pathf(out, n, "%s/%s", a, b); }

static const char *strip_prefix(const char *name)
{
    return strncmp(name, "transformer.", 12) == 0 ? name + 12 : name;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void fmt_shape(char *buf, size_t n, const int64_t *shape, int ndim)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* ------------------------------------------------------------------ load */

int zf_hf_load_params(const char *dir, const zf_gpt2_config *cfg, const zf_param_table *table, float *params, zf_err *err)
{
    char path[PATH_MAX], cpath[PATH_MAX];
    if (join(path, sizeof path, dir, "model.safetensors") || join(cpath, sizeof cpath, dir, "config.json"))
        return zf_err_set(err, "%s: path too long", dir);
    if (!is_file(path)) {
        char bin[PATH_MAX];
        if (join(bin, sizeof bin, dir, "pytorch_model.bin") == 0 && is_file(bin))
            return zf_err_set(err, "%s: expected model.safetensors, found only pytorch_model.bin (re-save it with "
                                   "save_pretrained(dir, safe_serialization=True))", dir);
        return zf_err_set(err, "%s: cannot open: %s", path, strerror(ENOENT));
    }
    zf_st_file f;
    if (zf_st_open(path, &f, err)) return -1;
    int rc = -1;
    /* map table index -> file tensor */
    const zf_st_tensor **src = zf_xcalloc((size_t)table->count, sizeof *src);
    const zf_st_tensor *lm_head = NULL;
    for (int i = 0; i < f.count; i++) {
        const zf_st_tensor *st = &f.t[i];
        const char *bare = strip_prefix(st->name);
        if (strcmp(bare, "lm_head.weight") == 0 || strcmp(st->name, "lm_head.weight") == 0) { lm_head = st; continue; }
        if (ends_with(bare, ".attn.bias") || ends_with(bare, ".attn.masked_bias")) continue; /* causal-mask buffers */
        int k = -1;
        for (int j = 0; j < table->count; j++)
            if (strcmp(strip_prefix(table->t[j].name), bare) == 0) { k = j; break; }
        if (k < 0) {
            zf_err_set(err, "%s: tensor '%s': unexpected (not a GPT-2 parameter; config: %s)", path,
                       st->name, cpath);
            goto out;
        }
        if (src[k]) {
            zf_err_set(err, "%s: tensor '%s': given twice (as '%s' and '%s')", path, table->t[k].name, src[k]->name,
                       st->name);
            goto out;
        }
        const zf_tensor_info *ti = &table->t[k];
        int ok = st->ndim == ti->ndim;
        for (int d = 0; ok && d < ti->ndim; d++) ok = st->shape[d] == ti->shape[d];
        if (!ok) {
            char want[64], got[160];
            fmt_shape(want, sizeof want, ti->shape, ti->ndim);
            fmt_shape(got, sizeof got, st->shape, st->ndim);
            zf_err_set(err, "%s: tensor '%s': shape: expected %s (from %s), got %s", path, st->name, want, cpath, got);
            goto out;
        }
        src[k] = st;
    }
    for (int j = 0; j < table->count; j++) {
        if (!src[j]) {
            zf_err_set(err, "%s: tensor '%s': missing (expected by %s)", path, table->t[j].name, cpath);
            goto out;
        }
    }
    for (int j = 0; j < table->count; j++) {
        const zf_tensor_info *ti = &table->t[j];
        if (zf_st_read_f32(&f, src[j], params + ti->offset, err)) goto out;
        size_t padded = (ti->numel + ZF_PARAM_ALIGN - 1) / ZF_PARAM_ALIGN * ZF_PARAM_ALIGN;
        memset(params + ti->offset + ti->numel, 0, (padded - ti->numel) * sizeof(float));
    }
    if (lm_head) {
        /* Tied head: accept it only if it really is wte. */
        const zf_tensor_info *wte = &table->t[0];
        if (lm_head->ndim != 2 || lm_head->shape[0] != wte->shape[0] || lm_head->shape[1] != wte->shape[1]) {
            char want[64], got[160];
            fmt_shape(want, sizeof want, wte->shape, 2);
            fmt_shape(got, sizeof got, lm_head->shape, lm_head->ndim);
            zf_err_set(err, "%s: tensor '%s': shape: expected %s (tied to wte), got %s", path, lm_head->name, want, got);
            goto out;
        }
        float *tmp = zf_xmalloc(lm_head->numel * sizeof(float));
        int bad = zf_st_read_f32(&f, lm_head, tmp, err);
        if (!bad && memcmp(tmp, params + wte->offset, lm_head->numel * sizeof(float)) != 0) {
            zf_err_set(err, "%s: tensor '%s': expected equal to transformer.wte.weight (GPT-2 ties the LM head), got "
                            "different values", path, lm_head->name);
            bad = 1;
        }
        free(tmp);
        if (bad) goto out;
    }
    (void)cfg;
    rc = 0;
out:
    free(src);
    zf_st_close(&f);
    return rc;
}

int zf_hf_load(const char *dir, zf_gpt2_config *cfg, zf_param_table *table, float **params, zf_err *err)
{
    char cpath[PATH_MAX];
    memset(table, 0, sizeof *table);
    *params = NULL;
    if (join(cpath, sizeof cpath, dir, "config.json")) return zf_err_set(err, "%s: path too long", dir);
    if (!is_dir(dir)) return zf_err_set(err, "%s: expected a model directory (config.json + model.safetensors)", dir);
    if (zf_gpt2_config_load(cpath, cfg, err)) return -1;
    zf_gpt2_param_table(cfg, table);
    /* config.json alone sizes the buffer: refuse a model the weights file
     * cannot hold (at least 2 bytes a parameter) before allocating it */
    char spath[PATH_MAX];
    zf_st_file f;
    if (join(spath, sizeof spath, dir, "model.safetensors") || !is_file(spath)) {
        zf_hf_load_params(dir, cfg, table, NULL, err); /* says what is missing */
        zf_param_table_free(table);
        return -1;
    }
    if (zf_st_open(spath, &f, err)) {
        zf_param_table_free(table);
        return -1;
    }
    size_t have = f.data_size;
    zf_st_close(&f);
    if (zf_param_count(table) > have / 2) {
        zf_err_set(err, "%s: n_layer/n_embd/n_positions/vocab_size: expected a model that %s (%zu bytes of tensors) "
                   "can hold, got %zu parameters", cpath, spath, have, zf_param_count(table));
        zf_param_table_free(table);
        return -1;
    }
    float *p = zf_params_alloc(table);
    if (zf_hf_load_params(dir, cfg, table, p, err)) {
        free(p);
        zf_param_table_free(table);
        return -1;
    }
    *params = p;
    return 0;
}

/* ------------------------------------------------------------------ save */

static int copy_file(const char *from, const char *to, zf_err *err)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return zf_err_set(err, "%s: cannot open: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) { close(in); return zf_err_set(err, "%s: cannot create: %s", to, strerror(errno)); }
    char buf[1 << 16];
    int rc = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { rc = zf_err_set(err, "%s: read failed: %s", from, strerror(errno)); break; }
        if (r == 0) break;
        for (ssize_t w = 0; w < r;) {
            ssize_t k = write(out, buf + w, (size_t)(r - w));
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) { rc = zf_err_set(err, "%s: write failed: %s", to, strerror(errno)); break; }
            w += k;
        }
        if (rc) break;
    }
    if (!rc && fsync(out) != 0) rc = zf_err_set(err, "%s: fsync failed: %s", to, strerror(errno));
    close(in);
    if (close(out) != 0 && !rc) rc = zf_err_set(err, "%s: write failed: %s", to, strerror(errno));
    return rc;
}

/* Remove a directory that holds only regular files (what we write). */
static int remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    char p[PATH_MAX];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (join(p, sizeof p, dir, e->d_name) == 0 && !is_dir(p)) unlink(p);
    }
    closedir(d);
    return rmdir(dir);
}

static int dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) { empty = 0; break; }
    closedir(d);
    return empty;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) { (void)fsync(fd); close(fd); }
}

int zf_hf_save(const char *out_dir, const zf_gpt2_config *cfg, const zf_param_table *t, const float *params,
               const char *tokenizer_dir, zf_err *err)
{
    char dir[PATH_MAX], tmp[PATH_MAX], old[PATH_MAX], p[PATH_MAX], parent[PATH_MAX];
    size_t L = strlen(out_dir);
    while (L > 1 && out_dir[L - 1] == '/') L--; /* "out/" -> "out" for the sibling names */
    if (L + 32 >= sizeof dir) return zf_err_set(err, "%s: path too long", out_dir);
    memcpy(dir, out_dir, L);
    dir[L] = 0;
    zf_path_parent(dir, parent, sizeof parent);
    if (!is_dir(parent)) return zf_err_set(err, "%s: parent directory %s does not exist", dir, parent);
    if (is_dir(dir)) {
        char c[PATH_MAX];
        if (join(c, sizeof c, dir, "config.json") || (!is_file(c) && !dir_is_empty(dir)))
            return zf_err_set(err, "%s: exists and is not a model directory (no config.json); refusing to replace it", dir);
    } else if (access(dir, F_OK) == 0) {
        return zf_err_set(err, "%s: exists and is not a directory", dir);
    }
    if (pathf(tmp, sizeof tmp, "%s.tmp-%ld", dir, (long)getpid()) ||
        pathf(old, sizeof old, "%s.old-%ld", dir, (long)getpid()))
        return zf_err_set(err, "%s: path too long", dir);
    if (is_dir(tmp)) remove_flat_dir(tmp); /* stale from a crashed save of this pid */
    if (mkdir(tmp, 0755) != 0) return zf_err_set(err, "%s: cannot create: %s", tmp, strerror(errno));

    zf_st_entry *e = zf_xcalloc((size_t)t->count, sizeof *e);
    for (int i = 0; i < t->count; i++) {
        e[i].name = t->t[i].name;
        e[i].dtype = ZF_ST_F32;
        e[i].ndim = t->t[i].ndim;
        e[i].shape[0] = t->t[i].shape[0];
        e[i].shape[1] = t->t[i].shape[1];
        e[i].data = params + t->t[i].offset;
    }
    int rc = -1;
    if (join(p, sizeof p, tmp, "config.json") || zf_gpt2_config_save(p, cfg, err)) goto fail;
    if (join(p, sizeof p, tmp, "model.safetensors") || zf_st_write(p, e, t->count, err)) goto fail;
    if (tokenizer_dir) {
        static const char *const names[] = {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                                            "special_tokens_map.json"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char from[PATH_MAX];
            if (join(from, sizeof from, tokenizer_dir, names[i]) || !is_file(from)) continue;
            if (join(p, sizeof p, tmp, names[i]) || copy_file(from, p, err)) goto fail;
        }
    }
    fsync_dir(tmp);
    if (is_dir(dir)) {
        if (rename(dir, old) != 0) { zf_err_set(err, "%s: cannot move aside: %s", dir, strerror(errno)); goto fail; }
        if (rename(tmp, dir) != 0) {
            zf_err_set(err, "%s: cannot rename %s into place: %s", dir, tmp, strerror(errno));
            (void)rename(old, dir);
            goto fail;
        }
        remove_flat_dir(old);
    } else if (rename(tmp, dir) != 0) {
        zf_err_set(err, "%s: cannot rename %s into place: %s", dir, tmp, strerror(errno));
        goto fail;
    }
    fsync_dir(parent);
    free(e);
    return 0;
fail:
    free(e);
    remove_flat_dir(tmp);
    return rc;
}

/* --------------------------------------------------------------- resolve */

static int valid_name(const char *s, int allow_slash)
{
    if (!*s || *s == '.' || *s == '-') return 0;
    int slashes = 0;
    for (const char *c = s; *c; c++) {
        if (*c == '/') {
            if (!allow_slash || ++slashes > 1 || c[1] == 0 || c[1] == '.') return 0;
            continue;
        }
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
              *c == '_' || *c == '-'))
            return 0;
    }
    return strstr(s, "..") == NULL;
}

static int find_preset(const char *name, char *out, size_t n)
{
    char cand[PATH_MAX];
    const char *root = getenv("ZF_ROOT");
    if (root && *root) {
        if (pathf(cand, sizeof cand, "%s/config/models/%s.json", root, name) == 0 && is_file(cand)) goto found;
    }
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *s = strrchr(exe, '/');
        if (s) *s = 0;
        if (pathf(cand, sizeof cand, "%s/../config/models/%s.json", exe, name) == 0 && is_file(cand)) goto found;
        if (pathf(cand, sizeof cand, "%s/../../config/models/%s.json", exe, name) == 0 && is_file(cand)) goto found;
    }
    return -1;
found:
    char real[PATH_MAX];
    if (realpath(cand, real) && pathf(out, n, "%s", real) == 0) return 0;
    return pathf(out, n, "%s", cand);
}

static int hub_cache_dir(char *out, size_t n)
{
    const char *v;
    if ((v = getenv("HF_HUB_CACHE")) && *v) return pathf(out, n, "%s", v);
    if ((v = getenv("HF_HOME")) && *v) return pathf(out, n, "%s/hub", v);
    if ((v = getenv("XDG_CACHE_HOME")) && *v) return pathf(out, n, "%s/huggingface/hub", v);
    if ((v = getenv("HOME")) && *v) return pathf(out, n, "%s/.cache/huggingface/hub", v);
    return -1;
}

static int find_hub(const char *id, char *out, size_t n)
{
    char cache[PATH_MAX / 2], repo[PATH_MAX], p[PATH_MAX];
    if (hub_cache_dir(cache, sizeof cache)) return -1;
    char flat[256];
    snprintf(flat, sizeof flat, "%s", id);
    for (char *c = flat; *c; c++)
        if (*c == '/') {
            memmove(c + 2, c + 1, strlen(c + 1) + 1); /* "/" -> "--" */
            c[0] = '-';
            c[1] = '-';
            c++;
        }
    if (pathf(repo, sizeof repo, "%s/models--%s", cache, flat)) return -1;
    if (!is_dir(repo)) return -1;
    char rev[128] = "";
    if (pathf(p, sizeof p, "%s/refs/main", repo)) return -1;
    FILE *f = fopen(p, "r");
    if (f) {
        if (!fgets(rev, sizeof rev, f)) rev[0] = 0;
        fclose(f);
        rev[strcspn(rev, " \t\r\n")] = 0;
        if (!valid_name(rev, 0)) rev[0] = 0;
    }
    if (!rev[0]) { /* no ref: accept a single snapshot */
        if (pathf(p, sizeof p, "%s/snapshots", repo)) return -1;
        DIR *d = opendir(p);
        if (!d) return -1;
        struct dirent *e;
        int found = 0;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') { found++; if (pathf(rev, sizeof rev, "%s", e->d_name)) found = 2; }
        closedir(d);
        if (found != 1) return -1;
    }
    if (pathf(p, sizeof p, "%s/snapshots/%s/config.json", repo, rev) || !is_file(p)) return -1;
    return pathf(out, n, "%s/snapshots/%s", repo, rev);
}

int zf_model_resolve(const char *name, char *out, size_t n, int *is_preset, zf_err *err)
{
    char cfgp[PATH_MAX];
    int force_hub = 0, force_preset = 0;
    *is_preset = 0;
    if (!name || !*name) return zf_err_set(err, "model: expected a directory, preset name or hub id, got an empty name");
    if (strncmp(name, "hf:", 3) == 0) { force_hub = 1; name += 3; }
    else if (strncmp(name, "preset:", 7) == 0) { force_preset = 1; name += 7; }

    if (!force_hub && !force_preset) {
        if (is_dir(name)) {
            if (join(cfgp, sizeof cfgp, name, "config.json") || !is_file(cfgp))
                return zf_err_set(err, "%s: expected a model directory with config.json, found none", name);
            if (strlen(name) >= n) return zf_err_set(err, "%s: path too long", name);
            snprintf(out, n, "%s", name);
            return 0;
        }
        if (ends_with(name, ".json") && is_file(name)) {
            if (strlen(name) >= n) return zf_err_set(err, "%s: path too long", name);
            snprintf(out, n, "%s", name);
            *is_preset = 1;
            return 0;
        }
    }
    if (!force_hub && valid_name(name, 0) && find_preset(name, out, n) == 0) {
        *is_preset = 1;
        return 0;
    }
    if (force_preset)
        return zf_err_set(err, "%s: no preset config/models/%s.json (looked under $ZF_ROOT and next to the executable)",
                          name, name);
    if (valid_name(name, 1) && strlen(name) < 200 && find_hub(name, out, n) == 0) return 0;
    if (force_hub) {
        char cache[PATH_MAX];
        if (hub_cache_dir(cache, sizeof cache)) snprintf(cache, sizeof cache, "no cache directory: HOME unset");
        return zf_err_set(err, "hf:%s: not in the Hugging Face cache (%s); fetch it with: scripts/fetch_model.sh %s",
                          name, cache, name);
    }
    return zf_err_set(err, "%s: not a model directory, preset (config/models/%s.json) or model in the Hugging Face "
                           "cache; fetch it with: scripts/fetch_model.sh %s", name, name, name);
}
