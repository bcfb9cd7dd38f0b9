/* dataset.c - dataset resolution and document iteration (see dataset.h).
 *
 * Owns: the name -> files rules (demo, glob, directory layouts, single file,
 * local copies of hub datasets), the three document formats, and the
 * deterministic carving of validation/test out of train. */
#include "dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "loaderd/demo_corpus.h"

const char *zf_split_name(zf_split s)
{
    switch (s) {
    case ZF_SPLIT_TRAIN: return "train";
    case ZF_SPLIT_VALIDATION: return "validation";
    case ZF_SPLIT_TEST: return "test";
    default: return "?";
    }
}

const char *zf_dataset_format_name(int fmt)
{
    switch (fmt) {
    case ZF_FMT_TEXT: return "text";
    case ZF_FMT_JSONL: return "jsonl";
    case ZF_FMT_WIKITEXT: return "wikitext";
    default: return "?";
    }
}

void zf_dataset_spec_default(zf_dataset_spec *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->text_field, sizeof s->text_field, "text");
    s->validation_split_percentage = 5;
}

void zf_dataset_files_free(zf_dataset_files *f)
{
    if (!f) return;
    for (int s = 0; s < ZF_SPLIT_COUNT; s++) {
        for (int i = 0; i < f->nfiles[s]; i++) free(f->files[s][i]);
        free(f->files[s]);
    }
    free(f->root);
    memset(f, 0, sizeof *f);
}

/* ---- small helpers ------------------------------------------------------ */

typedef struct { char **v; int n, cap; } strlist;

static void sl_push(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = zf_xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = zf_xstrdup(s);
}

static void sl_free(strlist *l)
{
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Bytewise order: never strcoll, so the order is the same in every locale. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static int format_of_name(const char *path)
{
    if (ends_with(path, ".jsonl")) return ZF_FMT_JSONL;
    if (ends_with(path, ".raw")) return ZF_FMT_WIKITEXT;
    return ZF_FMT_TEXT;
}

/* Split of a file from the words of its base name (lowercased, split on
 * non-alphanumerics); -1 when no word names a split. */
static int split_of_name(const char *path)
{
    const char *b = base_name(path);
    char w[64];
    size_t wl = 0;
    for (const char *c = b;; c++) {
        if (*c && isalnum((unsigned char)*c)) {
            if (wl + 1 < sizeof w) w[wl++] = (char)tolower((unsigned char)*c);
            continue;
        }
        w[wl] = 0;
        if (wl) {
            if (!strcmp(w, "train") || !strcmp(w, "training")) return ZF_SPLIT_TRAIN;
            if (!strcmp(w, "validation") || !strcmp(w, "valid") || !strcmp(w, "val") || !strcmp(w, "dev") ||
                !strcmp(w, "eval"))
                return ZF_SPLIT_VALIDATION;
            if (!strcmp(w, "test")) return ZF_SPLIT_TEST;
        }
        wl = 0;
        if (!*c) break;
    }
    return -1;
}

static void set_split(zf_dataset_files *out, zf_split s, strlist *l)
{
    if (l->n > 1) qsort(l->v, (size_t)l->n, sizeof *l->v, cmp_str);
    out->nfiles[s] = l->n;
    out->files[s] = l->v;
    memset(l, 0, sizeof *l);
}

/* Assign files (all of one format) to splits by name; fills out. */
static int classify(const char *shown, strlist *all, int fmt, zf_dataset_files *out, zf_err *err)
{
    strlist per[ZF_SPLIT_COUNT] = {{0}};
    for (int i = 0; i < all->n; i++) {
        int s = split_of_name(all->v[i]);
        sl_push(&per[s < 0 ? ZF_SPLIT_TRAIN : s], all->v[i]);
    }
    if (per[ZF_SPLIT_TRAIN].n == 0) {
        for (int s = 0; s < ZF_SPLIT_COUNT; s++) sl_free(&per[s]);
        return zf_err_set(err, "--dataset_name: '%s': expected a training file (a name with 'train' or without a split "
                          "word), got only validation/test files", shown);
    }
    out->format = fmt;
    for (int s = 0; s < ZF_SPLIT_COUNT; s++) set_split(out, (zf_split)s, &per[s]);
    out->derived_splits = out->nfiles[ZF_SPLIT_VALIDATION] == 0;
    return 0;
}

/* ---- resolution --------------------------------------------------------- */

static int resolve_dir(const char *shown, const char *dir_in, const char *config, zf_dataset_files *out, zf_err *err)
{
    char dir[4096];
    int used_config = 0;
    snprintf(dir, sizeof dir, "%s", dir_in);
    if (config && *config) {
        char sub[4096];
        if (snprintf(sub, sizeof sub, "%s/%s", dir_in, config) < (int)sizeof sub && is_dir(sub)) {
            snprintf(dir, sizeof dir, "%s", sub);
            used_config = 1;
        }
    }
    DIR *d = opendir(dir);
    if (!d) return zf_err_set(err, "--dataset_name: '%s': cannot read directory %s: %s", shown, dir, strerror(errno));
    strlist txt = {0}, raw = {0}, jsonl = {0}, subdirs = {0};
    int has_train_txt = 0, has_wiki_train = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue; /* hidden, incl. temp files of atomic writes */
        char p[4096];
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p) continue;
        if (is_dir(p)) { sl_push(&subdirs, de->d_name); continue; }
        if (!is_file(p)) continue;
        if (ends_with(de->d_name, ".jsonl")) sl_push(&jsonl, p);
        else if (ends_with(de->d_name, ".raw")) sl_push(&raw, p);
        else if (ends_with(de->d_name, ".txt")) sl_push(&txt, p);
        if (!strcmp(de->d_name, "train.txt")) has_train_txt = 1;
        if (!strcmp(de->d_name, "wiki.train.raw")) has_wiki_train = 1;
    }
    closedir(d);

    int rc = 0;
    static const char *const text_names[3] = {"train.txt", "validation.txt", "test.txt"};
    static const char *const wiki_names[3] = {"wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"};
    if (has_train_txt || has_wiki_train) {
        /* A fixed layout: only its three names count (README.txt etc. do not). */
        const char *const *names = has_train_txt ? text_names : wiki_names;
        out->format = has_train_txt ? ZF_FMT_TEXT : ZF_FMT_WIKITEXT;
        for (int s = 0; s < ZF_SPLIT_COUNT; s++) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", dir, names[s]);
            strlist l = {0};
            if (is_file(p)) sl_push(&l, p);
            set_split(out, (zf_split)s, &l);
        }
        out->derived_splits = out->nfiles[ZF_SPLIT_VALIDATION] == 0;
    } else if (jsonl.n) {
        rc = classify(shown, &jsonl, ZF_FMT_JSONL, out, err);
    } else if (raw.n) {
        rc = classify(shown, &raw, ZF_FMT_WIKITEXT, out, err);
    } else if (txt.n) {
        rc = classify(shown, &txt, ZF_FMT_TEXT, out, err);
    } else {
        char subs[512] = "";
        size_t sl = 0;
        if (subdirs.n > 1) qsort(subdirs.v, (size_t)subdirs.n, sizeof *subdirs.v, cmp_str);
        for (int i = 0; i < subdirs.n && sl + 1 < sizeof subs; i++)
            sl += (size_t)snprintf(subs + sl, sizeof subs - sl, "%s%s", i ? ", " : "", subdirs.v[i]);
        if (sl >= sizeof subs) sl = sizeof subs - 1;
        char cfg[256] = "";
        if (config && *config && !used_config) snprintf(cfg, sizeof cfg, " (no subdirectory '%s')", config);
        if (subdirs.n)
            rc = zf_err_set(err, "--dataset_name: '%s': expected train.txt, wiki.train.raw, *.jsonl, *.raw or *.txt "
                            "files in %s%s, got only subdirectories %s (choose one with --dataset_config)",
                            shown, dir, cfg, subs);
        else
            rc = zf_err_set(err, "--dataset_name: '%s': expected train.txt, wiki.train.raw, *.jsonl, *.raw or *.txt "
                            "files in %s%s, got none", shown, dir, cfg);
    }
    sl_free(&txt);
    sl_free(&raw);
    sl_free(&jsonl);
    sl_free(&subdirs);
    if (rc == 0) out->root = zf_xstrdup(dir);
    return rc;
}

static int resolve_glob(const char *shown, const char *pattern, zf_dataset_files *out, zf_err *err)
{
    glob_t g;
    memset(&g, 0, sizeof g);
    int grc = glob(pattern, GLOB_NOSORT, NULL, &g); /* sorted below, bytewise */
    strlist files = {0};
    if (grc == 0)
        for (size_t i = 0; i < g.gl_pathc; i++)
            if (is_file(g.gl_pathv[i]) && base_name(g.gl_pathv[i])[0] != '.') sl_push(&files, g.gl_pathv[i]);
    globfree(&g);
    if (files.n == 0) {
        sl_free(&files);
        return zf_err_set(err, "--dataset_name: '%s': expected a pattern matching files, got no match", shown);
    }
    qsort(files.v, (size_t)files.n, sizeof *files.v, cmp_str);
    int fmt = format_of_name(files.v[0]);
    for (int i = 1; i < files.n; i++) {
        if (format_of_name(files.v[i]) != fmt) {
            int rc = zf_err_set(err, "--dataset_name: '%s': expected files of one format, got %s (%s) and %s (%s)",
                                shown, files.v[0], zf_dataset_format_name(fmt), files.v[i],
                                zf_dataset_format_name(format_of_name(files.v[i])));
            sl_free(&files);
            return rc;
        }
    }
    int rc = classify(shown, &files, fmt, out, err);
    sl_free(&files);
    if (rc == 0) out->root = zf_xstrdup(pattern);
    return rc;
}

static void default_cache_dir(char *buf, size_t n)
{
    const char *e = getenv("ZF_CACHE_DIR");
    if (e && *e) { snprintf(buf, n, "%s", e); return; }
    e = getenv("XDG_CACHE_HOME");
    if (e && *e) { snprintf(buf, n, "%s/zeroflow", e); return; }
    e = getenv("HOME");
    snprintf(buf, n, "%s/.cache/zeroflow", e && *e ? e : "/tmp");
}

static int resolve_demo(const char *config, const char *cache_dir, zf_dataset_files *out, zf_err *err)
{
    uint64_t seed = ZF_DEMO_DEFAULT_SEED;
    uint64_t bytes = ZF_DEMO_DEFAULT_BYTES;
    /* config: "" or "seed=N,bytes=N" (either key optional). */
    const char *c = config ? config : "";
    while (*c) {
        uint64_t *dst;
        if (!strncmp(c, "seed=", 5)) { dst = &seed; c += 5; }
        else if (!strncmp(c, "bytes=", 6)) { dst = &bytes; c += 6; }
        else return zf_err_set(err, "--dataset_config: expected 'seed=N,bytes=N' for the demo dataset, got '%s'", config);
        if (!isdigit((unsigned char)*c))
            return zf_err_set(err, "--dataset_config: expected 'seed=N,bytes=N' for the demo dataset, got '%s'", config);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(c, &end, 10);
        if (errno || (*end && *end != ','))
            return zf_err_set(err, "--dataset_config: expected 'seed=N,bytes=N' for the demo dataset, got '%s'", config);
        *dst = v;
        c = *end ? end + 1 : end;
    }
    if (bytes < 1000 || bytes > ((uint64_t)1 << 32))
        return zf_err_set(err, "--dataset_config: bytes: expected 1000..4294967296, got %llu", (unsigned long long)bytes);
    char cache[4096], dir[4096];
    if (cache_dir && *cache_dir) snprintf(cache, sizeof cache, "%s", cache_dir);
    else default_cache_dir(cache, sizeof cache);
    if (zf_demo_corpus_ensure(cache, seed, (size_t)bytes, dir, sizeof dir, err)) return -1;
    return resolve_dir("demo", dir, NULL, out, err);
}

/* A name that is clearly meant as a path (so a missing one is reported as
 * such rather than looked up as a hub dataset). */
static int looks_like_path(const char *name)
{
    if (name[0] == '/' || name[0] == '.' || name[0] == '~') return 1;
    const char *slash = strchr(name, '/');
    if (slash && strchr(slash + 1, '/')) return 1; /* hub names are NAME or ORG/NAME */
    if (strchr(base_name(name), '.')) return 1;    /* has an extension */
    if (slash) {
        char first[512];
        size_t n = (size_t)(slash - name);
        if (n < sizeof first) {
            memcpy(first, name, n);
            first[n] = 0;
            if (is_dir(first)) return 1;
        }
    }
    return 0;
}

static int resolve_hub(const char *name, const char *config, zf_dataset_files *out, zf_err *err)
{
    const char *cfg = config && *config ? config : "default";
    char cand[2][4096];
    int nc = 0;
    const char *dd = getenv("ZF_DATA_DIR");
    if (dd && *dd) snprintf(cand[nc++], sizeof cand[0], "%s/%s/%s", dd, name, cfg);
    const char *home = getenv("HOME");
    snprintf(cand[nc++], sizeof cand[0], "%s/.cache/zeroflow/datasets/%s/%s", home && *home ? home : "", name, cfg);
    for (int i = 0; i < nc; i++)
        if (is_dir(cand[i])) return resolve_dir(name, cand[i], NULL, out, err);
    return zf_err_set(err, "--dataset_name: '%s' (config '%s'): not a local path and no local copy in %s%s%s; "
                      "fetch it with: scripts/fetch_dataset.sh %s%s%s",
                      name, cfg, cand[0], nc > 1 ? " or " : "", nc > 1 ? cand[1] : "", name,
                      config && *config ? " " : "", config && *config ? config : "");
}

int zf_dataset_resolve(const zf_dataset_spec *spec, const char *cache_dir, zf_dataset_files *out, zf_err *err)
{
    memset(out, 0, sizeof *out);
    const char *name = spec->name;
    if (!name[0]) return zf_err_set(err, "--dataset_name: expected a dataset name or path, got ''");
    if (!strcmp(name, "demo")) return resolve_demo(spec->config, cache_dir, out, err);

    char path[4096];
    if (name[0] == '~' && (name[1] == '/' || name[1] == 0)) {
        const char *home = getenv("HOME");
        snprintf(path, sizeof path, "%s%s", home ? home : "", name + 1);
    } else {
        snprintf(path, sizeof path, "%s", name);
    }
    if (strpbrk(name, "*?[")) return resolve_glob(name, path, out, err);

    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return resolve_dir(name, path, spec->config, out, err);
        if (!S_ISREG(st.st_mode))
            return zf_err_set(err, "--dataset_name: '%s': expected a regular file or directory", name);
        strlist l = {0}, none = {0};
        sl_push(&l, path);
        out->format = format_of_name(path);
        set_split(out, ZF_SPLIT_TRAIN, &l);
        set_split(out, ZF_SPLIT_VALIDATION, &none);
        set_split(out, ZF_SPLIT_TEST, &none);
        out->derived_splits = 1;
        out->root = zf_xstrdup(path);
        return 0;
    }
    if (looks_like_path(name)) return zf_err_set(err, "--dataset_name: '%s': no such file or directory", name);
    return resolve_hub(name, spec->config, out, err);
}

/* ---- iteration ---------------------------------------------------------- */

/* Routes each document to its split (derived splits) and to fn. */
typedef struct {
    zf_split want;
    int carve, carve_test; /* derived: hold out validation (and test) from train */
    uint64_t q;            /* held-out percentage (p or 2p) */
    uint64_t idx;          /* train document counter */
    zf_doc_fn fn;
    void *ctx;
} router;

static int route(router *r, const char *text, size_t len)
{
    if (len == 0) return 0;
    zf_split s = ZF_SPLIT_TRAIN;
    if (r->carve) {
        uint64_t i = r->idx++;
        uint64_t before = (i * r->q + 50) / 100, after = ((i + 1) * r->q + 50) / 100;
        if (after > before)
            s = (!r->carve_test || (after & 1)) ? ZF_SPLIT_VALIDATION : ZF_SPLIT_TEST;
    }
    if (s != r->want) return 0;
    return r->fn(r->ctx, text, len);
}

typedef struct {
    const char *data;
    size_t len;
    int mapped;
} filebuf;

static int file_open(const char *path, filebuf *fb, zf_err *err)
{
    memset(fb, 0, sizeof *fb);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return zf_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        fb->len = (size_t)st.st_size;
        if (fb->len == 0) { close(fd); fb->data = ""; return 0; }
        void *p = mmap(NULL, fb->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            close(fd);
            madvise(p, fb->len, MADV_SEQUENTIAL);
            fb->data = p;
            fb->mapped = 1;
            return 0;
        }
    }
    /* Not mappable (pipe, odd filesystem): read it whole. */
    size_t cap = 1 << 16, n = 0;
    char *buf = zf_xmalloc(cap);
    for (;;) {
        if (n == cap) buf = zf_xrealloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return zf_err_set(err, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    fb->data = buf;
    fb->len = n;
    return 0;
}

static void file_close(filebuf *fb)
{
    if (fb->mapped) munmap((void *)fb->data, fb->len);
    else if (fb->len) free((void *)fb->data);
    memset(fb, 0, sizeof *fb);
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v' || s[i] == '\n')) return 0;
    return 1;
}

/* Next line [*pos, end) including its '\n' if any; returns its length. */
static size_t next_line(const filebuf *fb, size_t pos)
{
    const char *nl = memchr(fb->data + pos, '\n', fb->len - pos);
    return nl ? (size_t)(nl - (fb->data + pos)) + 1 : fb->len - pos;
}

static int docs_text(const filebuf *fb, router *r)
{
    size_t pos = 0, start = 0, end = 0;
    int in_doc = 0;
    while (pos < fb->len) {
        size_t ll = next_line(fb, pos);
        if (blank(fb->data + pos, ll)) {
            if (in_doc) {
                int rc = route(r, fb->data + start, end - start);
                if (rc) return rc;
                in_doc = 0;
            }
        } else {
            if (!in_doc) { start = pos; in_doc = 1; }
            end = pos + ll;
            if (fb->data[end - 1] == '\n') end--; /* the doc's final newline is a separator */
        }
        pos += ll;
    }
    if (in_doc) return route(r, fb->data + start, end - start);
    return 0;
}

static int docs_jsonl(const char *path, const filebuf *fb, const char *field, router *r, zf_err *err)
{
    size_t pos = 0;
    unsigned long lineno = 0;
    while (pos < fb->len) {
        size_t ll = next_line(fb, pos);
        const char *line = fb->data + pos;
        pos += ll;
        lineno++;
        if (blank(line, ll)) continue;
        json_error_t je;
        json_t *root = json_loadb(line, ll, JSON_ALLOW_NUL, &je);
        const char *got = NULL;
        char gotbuf[256];
        if (!root) {
            snprintf(gotbuf, sizeof gotbuf, "invalid JSON (%s)", je.text);
            /* jansson quotes the bad token raw: keep the message one line */
            for (char *c = gotbuf; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
            got = gotbuf;
        } else if (!json_is_object(root)) {
            got = json_is_array(root) ? "an array" : "a non-object value";
        } else {
            json_t *v = json_object_get(root, field);
            if (!v) {
                snprintf(gotbuf, sizeof gotbuf, "no field '%s'", field);
                got = gotbuf;
            } else if (!json_is_string(v)) {
                snprintf(gotbuf, sizeof gotbuf, "field '%s' that is not a string", field);
                got = gotbuf;
            } else {
                int rc = route(r, json_string_value(v), json_string_length(v));
                json_decref(root);
                if (rc) return rc;
                continue;
            }
        }
        if (root) json_decref(root);
        return zf_err_set(err, "%s:%lu: expected a JSON object with string field '%s', got %s", path, lineno, field, got);
    }
    return 0;
}

/* " = Title = " (after trimming whitespace: "= X =" with X not starting or
 * ending with '='). */
static int wiki_top_heading(const char *s, size_t n)
{
    while (n && (s[0] == ' ' || s[0] == '\t')) { s++; n--; }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    if (n < 5) return 0;
    return s[0] == '=' && s[1] == ' ' && s[2] != '=' && s[n - 1] == '=' && s[n - 2] == ' ' && s[n - 3] != '=';
}

static int docs_wikitext(const filebuf *fb, router *r)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    size_t pos = 0;
    int rc = 0;
    while (pos < fb->len) {
        size_t ll = next_line(fb, pos);
        const char *line = fb->data + pos;
        pos += ll;
        if (blank(line, ll)) continue;
        if (wiki_top_heading(line, ll) && len) {
            rc = route(r, buf, len);
            len = 0;
            if (rc) break;
        }
        if (len + ll > cap) {
            cap = (len + ll) * 2 + 4096;
            buf = zf_xrealloc(buf, cap);
        }
        memcpy(buf + len, line, ll);
        len += ll;
    }
    if (!rc && len) rc = route(r, buf, len);
    free(buf);
    return rc;
}

static int foreach_file(const char *path, int fmt, const char *field, router *r, zf_err *err)
{
    filebuf fb;
    if (file_open(path, &fb, err)) return -1;
    int rc;
    switch (fmt) {
    case ZF_FMT_JSONL: rc = docs_jsonl(path, &fb, field, r, err); break;
    case ZF_FMT_WIKITEXT: rc = docs_wikitext(&fb, r); break;
    default: rc = docs_text(&fb, r); break;
    }
    file_close(&fb);
    return rc;
}

int zf_dataset_foreach_doc(const zf_dataset_files *f, zf_split split, const zf_dataset_spec *spec,
                           zf_doc_fn fn, void *ctx, zf_err *err)
{
    if ((int)split < 0 || split >= ZF_SPLIT_COUNT) return zf_err_set(err, "dataset: split: expected 0..2, got %d", (int)split);
    if (f->format < ZF_FMT_TEXT || f->format > ZF_FMT_WIKITEXT)
        return zf_err_set(err, "dataset: format: expected 0..2, got %d", f->format);
    const char *field = spec && spec->text_field[0] ? spec->text_field : "text";
    int pct = spec && spec->validation_split_percentage ? spec->validation_split_percentage : 5;

    router r;
    memset(&r, 0, sizeof r);
    r.want = split;
    r.fn = fn;
    r.ctx = ctx;
    zf_split source = split;
    if (f->derived_splits) {
        r.carve = 1;
        r.carve_test = f->nfiles[ZF_SPLIT_TEST] == 0;
        if (pct < 1 || pct > 49)
            return zf_err_set(err, "--validation_split_percentage: expected 1..49, got %d", pct);
        r.q = (uint64_t)(r.carve_test ? 2 * pct : pct);
        if (split == ZF_SPLIT_VALIDATION || (split == ZF_SPLIT_TEST && r.carve_test)) source = ZF_SPLIT_TRAIN;
        if (split == ZF_SPLIT_TEST && !r.carve_test) r.carve = 0, r.want = ZF_SPLIT_TRAIN; /* real test files */
    } else {
        r.want = ZF_SPLIT_TRAIN; /* no carving: every document of the source files counts */
    }
    for (int i = 0; i < f->nfiles[source]; i++) {
        int rc = foreach_file(f->files[source][i], f->format, field, &r, err);
        if (rc) return rc;
    }
    return 0;
}

int zf_dataset_spec_set(zf_dataset_spec *s, const char *name, const char *config, const char *text_field, zf_err *err)
{
    zf_dataset_spec_default(s);
    if (strlen(name) >= sizeof s->name) return zf_err_set(err, "--dataset_name: longer than %zu bytes", sizeof s->name - 1);
    if (strlen(config) >= sizeof s->config)
        return zf_err_set(err, "--dataset_config: longer than %zu bytes", sizeof s->config - 1);
    if (strlen(text_field) >= sizeof s->text_field)
        return zf_err_set(err, "--text_field: longer than %zu bytes", sizeof s->text_field - 1);
    memcpy(s->name, name, strlen(name) + 1);
    memcpy(s->config, config, strlen(config) + 1);
    memcpy(s->text_field, text_field, strlen(text_field) + 1);
    return 0;
}
