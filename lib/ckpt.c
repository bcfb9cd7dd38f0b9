/* ckpt.c - see ckpt.h for the layout and the crash-safety protocol. */
#include "ckpt.h"
#include "lz4_frame.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <lz4frame.h>
#include <omp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "hash.h"

#define ZFT_MAGIC "ZFTENSOR"
#define ZFT_HEADER_BYTES 56u
#define ZFT_CHUNK_BYTES ((uint64_t)8 << 20)     /* raw bytes per LZ4 frame */
#define ZFT_MAX_CHUNK_BYTES ((uint64_t)1 << 30)
#define ZFT_LOCATE_SLICE 4096                    /* input slice when locating corruption */
#define META_MAX_BYTES ((size_t)256 << 20)

struct zf_ckpt_writer {
    char root[PATH_MAX];      /* OUTPUT_DIR/checkpoints */
    char tmp_dir[PATH_MAX];
    char final_name[64];      /* step_00000100 */
    long step;
    json_t *meta;             /* caller's object, or NULL */
    json_t *tensors;          /* manifest: name -> {file, dtype, numel, bytes} */
    json_t *files;            /* name -> {bytes} */
    int failed;
};

/* ---------- small helpers ---------- */

static void crash_hook(const char *point)
{
    const char *e = getenv("ZF_CKPT_TEST_CRASH");
    if (e && !strcmp(e, point)) raise(SIGKILL);
}

static void put_u32(uint8_t *p, uint32_t x) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t x) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i)); }
static uint32_t get_u32(const uint8_t *p) { uint32_t x = 0; for (int i = 3; i >= 0; i--) x = (x << 8) | p[i]; return x; }
static uint64_t get_u64(const uint8_t *p) { uint64_t x = 0; for (int i = 7; i >= 0; i--) x = (x << 8) | p[i]; return x; }

static int path_join(char *out, size_t n, const char *a, const char *b, zf_err *err)
{
    int k = snprintf(out, n, "%s/%s", a, b);
    if (k < 0 || (size_t)k >= n) return zf_err_set(err, "%s/%s: path too long", a, b);
    return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (k < 0) { if (errno == EINTR) continue; return -1; }
        p += k; n -= (size_t)k;
    }
    return 0;
}

static int pread_all(int fd, void *buf, size_t n, off_t off)
{
    char *p = buf;
    while (n) {
        ssize_t k = pread(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n, off);
        if (k < 0) { if (errno == EINTR) continue; return -1; }
        if (k == 0) { errno = 0; return -1; }
        p += k; n -= (size_t)k; off += k;
    }
    return 0;
}

static int fsync_dir(const char *dir, zf_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return zf_err_set(err, "%s: cannot open directory to fsync: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc) return zf_err_set(err, "%s: fsync failed: %s", dir, strerror(e));
    return 0;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path) ? -1 : 0;
}

static int rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    return nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int zf_ckpt_remove_dir(const char *dir, zf_err *err)
{
    if (rm_rf(dir) != 0) return zf_err_set(err, "%s: cannot remove: %s", dir, strerror(errno));
    return 0;
}

static int mkdir_p(const char *path, zf_err *err)
{
    char buf[PATH_MAX];
    int k = snprintf(buf, sizeof buf, "%s", path);
    if (k < 0 || (size_t)k >= sizeof buf) return zf_err_set(err, "%s: path too long", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST)
                return zf_err_set(err, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return zf_err_set(err, "%s: expected a directory", path);
    return 0;
}

static int valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 200 || name[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(isalnum(c) || c == '_' || c == '-' || c == '.')) return 0;
    }
    return 1;
}

/* "step_<digits>" exactly -> step number, else -1. */
static long parse_step_name(const char *s)
{
    if (strncmp(s, "step_", 5) || !s[5]) return -1;
    long v = 0;
    for (const char *p = s + 5; *p; p++) {
        if (*p < '0' || *p > '9' || v > (LONG_MAX - 9) / 10) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* Entries named "<anything>.tmp.<pid>[.<anything>]": pid, else 0. */
static long tmp_entry_pid(const char *s)
{
    const char *t = strstr(s, ".tmp.");
    if (!t) return 0;
    t += 5;
    long pid = 0;
    const char *p = t;
    while (*p >= '0' && *p <= '9' && pid < 100000000) pid = pid * 10 + (*p++ - '0');
    if (p == t || (*p && *p != '.')) return 0;
    return pid;
}

static void remove_stale_tmp(const char *root)
{
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = tmp_entry_pid(e->d_name);
        if (pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;   /* still alive (or not ours to judge) */
        char p[PATH_MAX];
        if (path_join(p, sizeof p, root, e->d_name, NULL)) continue;
        /* A step moved aside by a writer that died before putting the new one
         * in place (fallback without RENAME_EXCHANGE): put it back. */
        size_t len = strlen(e->d_name);
        if (len > 4 && !strcmp(e->d_name + len - 4, ".old")) {
            char orig[PATH_MAX], nm[256];
            snprintf(nm, sizeof nm, "%.*s", (int)(strstr(e->d_name, ".tmp.") - e->d_name), e->d_name);
            struct stat st;
            if (parse_step_name(nm) >= 0 && !path_join(orig, sizeof orig, root, nm, NULL) && stat(orig, &st) != 0 &&
                rename(p, orig) == 0)
                continue;
        }
        if (rm_rf(p)) zf_warn("%s: cannot remove stale checkpoint temp: %s", p, strerror(errno));
    }
    closedir(d);
}

/* Write a whole small file durably: temp in the same dir, fsync, rename, fsync dir. */
static int write_file_atomic(const char *dir, const char *name, const char *content, size_t len, zf_err *err)
{
    char tmp[PATH_MAX], fin[PATH_MAX], tname[128];
    snprintf(tname, sizeof tname, "%s.tmp.%ld", name, (long)getpid());
    if (path_join(tmp, sizeof tmp, dir, tname, err) || path_join(fin, sizeof fin, dir, name, err)) return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return zf_err_set(err, "%s: cannot create: %s", tmp, strerror(errno));
    if (write_all(fd, content, len) || fsync(fd)) {
        int e = errno;
        close(fd); unlink(tmp);
        return zf_err_set(err, "%s: write failed: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, fin)) {
        int e = errno;
        unlink(tmp);
        return zf_err_set(err, "%s: cannot rename to %s: %s", tmp, fin, strerror(e));
    }
    return fsync_dir(dir, err);
}

static int read_small_file(const char *path, size_t max, char **out, size_t *len, zf_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return zf_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) { int e = errno; close(fd); return zf_err_set(err, "%s: cannot stat: %s", path, strerror(e)); }
    if (!S_ISREG(st.st_mode)) { close(fd); return zf_err_set(err, "%s: expected a regular file", path); }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return zf_err_set(err, "%s: size: expected at most %zu bytes, got %lld", path, max, (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    char *buf = zf_xmalloc(n + 1);
    if (n && pread_all(fd, buf, n, 0)) {
        int e = errno;
        close(fd); free(buf);
        return zf_err_set(err, "%s: read failed at byte offset 0..%zu: %s", path, n, e ? strerror(e) : "file shrank");
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

static const char *dtype_str(zf_dtype dt)
{
    const char *s = zf_dtype_name(dt);
    return s ? s : "?";
}

/* ---------- writer ---------- */

int zf_ckpt_begin(const char *output_dir, long step, zf_ckpt_writer **wp, zf_err *err)
{
    *wp = NULL;
    if (!output_dir || !output_dir[0]) return zf_err_set(err, "checkpoint: output_dir: expected a path, got nothing");
    if (step < 0) return zf_err_set(err, "checkpoint: step: expected >= 0, got %ld", step);
    zf_ckpt_writer *w = zf_xcalloc(1, sizeof *w);
    w->step = step;
    if (path_join(w->root, sizeof w->root, output_dir, "checkpoints", err) || mkdir_p(w->root, err)) {
        free(w);
        return -1;
    }
    remove_stale_tmp(w->root);
    snprintf(w->final_name, sizeof w->final_name, "step_%08ld", step);
    char tname[128];
    snprintf(tname, sizeof tname, "%s.tmp.%ld", w->final_name, (long)getpid());
    if (path_join(w->tmp_dir, sizeof w->tmp_dir, w->root, tname, err)) { free(w); return -1; }
    rm_rf(w->tmp_dir);   /* our own leftover from an earlier failed attempt */
    if (mkdir(w->tmp_dir, 0755)) {
        int e = errno;
        zf_err_set(err, "%s: cannot create temp directory: %s", w->tmp_dir, strerror(e));
        free(w);
        return -1;
    }
    w->tensors = json_object();
    w->files = json_object();
    *wp = w;
    return 0;
}

/* A tensor may be added: a writer that has not failed, a valid name not
 * added yet. */
static int new_tensor_check(zf_ckpt_writer *w, const char *name, zf_err *err)
{
    if (!w) return zf_err_set(err, "checkpoint: add tensor: no writer");
    if (w->failed) return zf_err_set(err, "checkpoint %s: an earlier write failed", w->final_name);
    if (!valid_name(name))
        return zf_err_set(err, "checkpoint %s: tensor name: expected 1..200 of [A-Za-z0-9._-] not starting with '.', got '%.64s'",
                          w->final_name, name ? name : "(null)");
    if (json_object_get(w->tensors, name))
        return zf_err_set(err, "checkpoint %s: tensor name: '%s' added twice", w->final_name, name);
    return 0;
}

/* meta.json's entry of a tensor written into the checkpoint. */
static void record_tensor(zf_ckpt_writer *w, const char *name, const char *fname, zf_dtype dtype, size_t numel,
                          long long bytes)
{
    json_t *t = json_object();
    json_object_set_new(t, "file", json_string(fname));
    json_object_set_new(t, "dtype", json_string(dtype_str(dtype)));
    json_object_set_new(t, "numel", json_integer((json_int_t)numel));
    json_object_set_new(t, "bytes", json_integer((json_int_t)bytes));
    json_object_set_new(w->tensors, name, t);
}

/* The source bytes of one frame [off, off + len) of a tensor in pieces
 * (ordered, starting at starts[i] of the whole): a pointer into
 * the piece when one holds the whole frame, else the frame gathered into
 * stage (len bytes). */
static const uint8_t *frame_src(const zf_ckpt_piece *pieces, int npieces, const uint64_t *starts, uint64_t off,
                                size_t len, uint8_t *stage)
{
    int i = 0;
    while (i + 1 < npieces && starts[i + 1] <= off) i++;
    if (off + len <= starts[i] + pieces[i].bytes) return (const uint8_t *)pieces[i].data + (off - starts[i]);
    size_t done = 0;
    for (; done < len && i < npieces; i++) {
        uint64_t a = off + done - starts[i];
        size_t k = pieces[i].bytes - (size_t)a < len - done ? pieces[i].bytes - (size_t)a : len - done;
        memcpy(stage + done, (const uint8_t *)pieces[i].data + a, k);
        done += k;
    }
    return stage;
}

/* The tensor file of the pieces' concatenation (name and writer checked). */
static int write_pieces(zf_ckpt_writer *w, const char *name, zf_dtype dtype, const zf_ckpt_piece *pieces,
                        int npieces, zf_err *err)
{
    size_t dsz = zf_dtype_size(dtype);
    if (dsz == 0) return zf_err_set(err, "checkpoint %s: %s: dtype: expected a zf_dtype, got %d", w->final_name, name, (int)dtype);
    if (npieces < 1 || !pieces) return zf_err_set(err, "checkpoint %s: %s: expected at least one piece", w->final_name, name);
    uint64_t *starts = zf_xcalloc((size_t)npieces, sizeof *starts);
    uint64_t raw = 0;
    for (int i = 0; i < npieces; i++) {
        if (pieces[i].bytes % dsz || (pieces[i].bytes && !pieces[i].data)) {
            free(starts);
            return zf_err_set(err, "checkpoint %s: %s: piece %d: expected a buffer of whole %zu-byte elements",
                              w->final_name, name, i, dsz);
        }
        starts[i] = raw;
        raw += pieces[i].bytes;
    }
    const size_t numel = (size_t)(raw / dsz);
    uint64_t chunk = ZFT_CHUNK_BYTES;
    uint64_t nframes64 = (raw + chunk - 1) / chunk;
    if (nframes64 > UINT32_MAX) {
        free(starts);
        return zf_err_set(err, "checkpoint %s: %s: too large", w->final_name, name);
    }
    uint32_t nframes = (uint32_t)nframes64;

    char fname[256], path[PATH_MAX];
    snprintf(fname, sizeof fname, "%s.zft", name);
    if (path_join(path, sizeof path, w->tmp_dir, fname, err)) { free(starts); w->failed = 1; return -1; }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) { free(starts); w->failed = 1; return zf_err_set(err, "%s: cannot create: %s", path, strerror(errno)); }

    size_t head = ZFT_HEADER_BYTES + (size_t)nframes * 8;
    uint8_t *hdr = zf_xcalloc(1, head);
    int rc = 0;
    if (write_all(fd, hdr, head)) rc = zf_err_set(err, "%s: write failed: %s", path, strerror(errno));

    /* Compress batches of frames in parallel, write them in order. */
    int batch = omp_get_max_threads();
    if (batch < 1) batch = 1;
    if (batch > 16) batch = 16;
    if ((uint64_t)batch > nframes64) batch = nframes ? (int)nframes : 1;
    LZ4F_preferences_t bp = zf_lz4_frame_prefs((size_t)chunk);
    size_t cap = LZ4F_compressFrameBound((size_t)chunk, &bp);
    uint8_t **bufs = zf_xcalloc((size_t)batch, sizeof *bufs);
    uint8_t **stage = zf_xcalloc((size_t)batch, sizeof *stage); /* frames spanning pieces, gathered */
    size_t *csz = zf_xcalloc((size_t)batch, sizeof *csz);
    for (int j = 0; j < batch && nframes; j++) bufs[j] = zf_xmalloc(cap);
    for (int j = 0; j < batch && nframes && npieces > 1; j++) stage[j] = zf_xmalloc((size_t)chunk);
    uint64_t total = head;
    for (uint32_t f0 = 0; f0 < nframes && rc == 0; f0 += (uint32_t)batch) {
        int nb = (int)((nframes - f0) < (uint32_t)batch ? (nframes - f0) : (uint32_t)batch);
        int bad = -1;
        #pragma omp parallel for schedule(static, 1) if (nb > 1)
        for (int j = 0; j < nb; j++) {
            uint64_t off = (uint64_t)(f0 + (uint32_t)j) * chunk;
            size_t len = (size_t)(raw - off < chunk ? raw - off : chunk);
            LZ4F_preferences_t p = zf_lz4_frame_prefs(len);
            const uint8_t *src = frame_src(pieces, npieces, starts, off, len, stage[j]);
            size_t r = LZ4F_compressFrame(bufs[j], cap, src, len, &p);
            if (LZ4F_isError(r)) {
                #pragma omp critical(zf_ckpt_lz4err)
                bad = j;
                csz[j] = 0;
            } else {
                csz[j] = r;
            }
        }
        if (bad >= 0) { rc = zf_err_set(err, "%s: LZ4 compression failed on frame %u", path, f0 + (uint32_t)bad); break; }
        for (int j = 0; j < nb && rc == 0; j++) {
            if (write_all(fd, bufs[j], csz[j])) { rc = zf_err_set(err, "%s: write failed: %s", path, strerror(errno)); break; }
            put_u64(hdr + ZFT_HEADER_BYTES + (size_t)(f0 + (uint32_t)j) * 8, csz[j]);
            total += csz[j];
            if (f0 == 0 && j == 0) crash_hook("mid_tensor");
        }
    }
    for (int j = 0; j < batch; j++) {
        free(bufs[j]);
        free(stage[j]);
    }
    free(bufs); free(stage); free(csz); free(starts);

    if (rc == 0) {
        memcpy(hdr, ZFT_MAGIC, 8);
        put_u32(hdr + 8, ZF_CKPT_TENSOR_VERSION);
        put_u32(hdr + 12, (uint32_t)dtype);
        put_u64(hdr + 16, numel);
        put_u64(hdr + 24, raw);
        put_u64(hdr + 32, chunk);
        put_u32(hdr + 40, nframes);
        put_u32(hdr + 44, zf_fnv1a32(hdr + ZFT_HEADER_BYTES, (size_t)nframes * 8));
        put_u32(hdr + 48, zf_fnv1a32(hdr, 48));
        put_u32(hdr + 52, 0);
        size_t done = 0;
        while (done < head) {
            ssize_t k = pwrite(fd, hdr + done, head - done, (off_t)done);
            if (k < 0) { if (errno == EINTR) continue; rc = zf_err_set(err, "%s: write failed: %s", path, strerror(errno)); break; }
            done += (size_t)k;
        }
    }
    if (rc == 0 && fsync(fd)) rc = zf_err_set(err, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) && rc == 0) rc = zf_err_set(err, "%s: close failed: %s", path, strerror(errno));
    free(hdr);
    if (rc) { w->failed = 1; return -1; }

    record_tensor(w, name, fname, dtype, numel, (long long)total);
    return 0;
}

int zf_ckpt_add_raw(zf_ckpt_writer *w, const char *name, zf_dtype dtype, const void *data, size_t numel,
                    zf_err *err)
{
    if (new_tensor_check(w, name, err) != 0) return -1;
    size_t dsz = zf_dtype_size(dtype);
    if (dsz && numel > SIZE_MAX / dsz)
        return zf_err_set(err, "checkpoint %s: %s: numel %zu too large", w->final_name, name, numel);
    if (numel && !data) return zf_err_set(err, "checkpoint %s: %s: data: expected a buffer", w->final_name, name);
    zf_ckpt_piece one = { data, numel * dsz };
    return write_pieces(w, name, dtype, &one, 1, err);
}

int zf_ckpt_add_pieces(zf_ckpt_writer *w, const char *name, zf_dtype dtype, const zf_ckpt_piece *pieces,
                       int npieces, zf_err *err)
{
    if (new_tensor_check(w, name, err) != 0) return -1;
    return write_pieces(w, name, dtype, pieces, npieces, err);
}

int zf_ckpt_add_tensor(zf_ckpt_writer *w, const char *name, const float *data, size_t numel, zf_err *err)
{
    return zf_ckpt_add_raw(w, name, ZF_DTYPE_F32, data, numel, err);
}

/* src_path copied to a new file path (fsynced); *bytes its size.  -1: the
 * source cannot be read (nothing created), -2: writing failed. */
static int copy_file(const char *src_path, const char *path, long long *bytes, zf_err *err)
{
    int in = open(src_path ? src_path : "", O_RDONLY | O_CLOEXEC);
    if (in < 0) return zf_err_set(err, "%s: cannot open: %s", src_path ? src_path : "(null)", strerror(errno));
    struct stat st;
    if (fstat(in, &st) || !S_ISREG(st.st_mode)) {
        close(in);
        return zf_err_set(err, "%s: expected a regular file", src_path);
    }
    int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        zf_err_set(err, "%s: cannot create: %s", path, strerror(e));
        return -2;
    }
    char buf[1 << 16];
    long long total = 0;
    int rc = 0;
    for (;;) {
        ssize_t k = read(in, buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) { rc = zf_err_set(err, "%s: read failed at byte offset %lld: %s", src_path, total, strerror(errno)); break; }
        if (k == 0) break;
        if (write_all(out, buf, (size_t)k)) { rc = zf_err_set(err, "%s: write failed: %s", path, strerror(errno)); break; }
        total += k;
    }
    if (rc == 0 && fsync(out)) rc = zf_err_set(err, "%s: fsync failed: %s", path, strerror(errno));
    if (close(out) && rc == 0) rc = zf_err_set(err, "%s: close failed: %s", path, strerror(errno));
    close(in);
    *bytes = total;
    return rc ? -2 : 0;
}

int zf_ckpt_add_file(zf_ckpt_writer *w, const char *name, const char *src_path, zf_err *err)
{
    if (!w) return zf_err_set(err, "checkpoint: add file: no writer");
    if (w->failed) return zf_err_set(err, "checkpoint %s: an earlier write failed", w->final_name);
    size_t len = name ? strlen(name) : 0;
    if (!valid_name(name) || !strcmp(name, "meta.json") || (len >= 4 && !strcmp(name + len - 4, ".zft")))
        return zf_err_set(err, "checkpoint %s: file name: expected 1..200 of [A-Za-z0-9._-] not starting with '.', "
                          "not meta.json nor *.zft, got '%.64s'", w->final_name, name ? name : "(null)");
    if (json_object_get(w->files, name))
        return zf_err_set(err, "checkpoint %s: file name: '%s' added twice", w->final_name, name);
    char path[PATH_MAX];
    if (path_join(path, sizeof path, w->tmp_dir, name, err)) return -1;
    long long total = 0;
    const int rc = copy_file(src_path, path, &total, err);
    if (rc != 0) {
        if (rc == -2) w->failed = 1; /* a source that cannot be read leaves the writer usable */
        return -1;
    }
    json_t *f = json_object();
    json_object_set_new(f, "bytes", json_integer((json_int_t)total));
    json_object_set_new(w->files, name, f);
    return 0;
}

int zf_ckpt_set_meta(zf_ckpt_writer *w, const char *json_text, zf_err *err)
{
    if (!w) return zf_err_set(err, "checkpoint: set meta: no writer");
    json_error_t je;
    json_t *j = json_loads(json_text ? json_text : "", JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return zf_err_set(err, "checkpoint %s: meta.json: expected JSON, line %d column %d: %s",
                          w->final_name, je.line, je.column, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return zf_err_set(err, "checkpoint %s: meta.json: expected a JSON object at top level", w->final_name);
    }
    if (w->meta) json_decref(w->meta);
    w->meta = j;
    return 0;
}

static void writer_free(zf_ckpt_writer *w)
{
    if (w->meta) json_decref(w->meta);
    if (w->tensors) json_decref(w->tensors);
    if (w->files) json_decref(w->files);
    free(w);
}

void zf_ckpt_abort(zf_ckpt_writer *w)
{
    if (!w) return;
    rm_rf(w->tmp_dir);
    writer_free(w);
}

typedef struct step_ent { long step; char name[64]; } step_ent;

static int cmp_step_desc(const void *a, const void *b)
{
    const step_ent *x = a, *y = b;
    return x->step < y->step ? 1 : x->step > y->step ? -1 : 0;
}

static void prune(const char *root, const char *keep_name, int keep_last)
{
    if (keep_last <= 0) return;
    DIR *d = opendir(root);
    if (!d) return;
    step_ent *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long s = parse_step_name(e->d_name);
        if (s < 0 || !strcmp(e->d_name, keep_name) || strlen(e->d_name) >= sizeof v->name) continue;
        char p[PATH_MAX];
        struct stat st;
        if (path_join(p, sizeof p, root, e->d_name, NULL) || lstat(p, &st) || !S_ISDIR(st.st_mode)) continue;
        if (n == cap) { cap = cap ? 2 * cap : 16; v = zf_xrealloc(v, cap * sizeof *v); }
        v[n].step = s;
        memcpy(v[n].name, e->d_name, strlen(e->d_name) + 1);   /* length checked above */
        n++;
    }
    closedir(d);
    if (n) qsort(v, n, sizeof *v, cmp_step_desc);
    for (size_t i = (size_t)keep_last - 1; i < n; i++) {
        char p[PATH_MAX];
        if (path_join(p, sizeof p, root, v[i].name, NULL)) continue;
        if (rm_rf(p)) zf_warn("%s: cannot remove old checkpoint: %s", p, strerror(errno));
    }
    if (n) fsync_dir(root, NULL);
    free(v);
}

int zf_ckpt_commit(zf_ckpt_writer *w, int keep_last, char *final_path, size_t n, zf_err *err)
{
    if (!w) return zf_err_set(err, "checkpoint: commit: no writer");
    if (w->failed) {
        zf_err_set(err, "checkpoint %s: not committed: an earlier tensor write failed", w->final_name);
        zf_ckpt_abort(w);
        return -1;
    }
    char fin[PATH_MAX], path[PATH_MAX];
    if (path_join(fin, sizeof fin, w->root, w->final_name, err) ||
        path_join(path, sizeof path, w->tmp_dir, "meta.json", err)) {
        zf_ckpt_abort(w);
        return -1;
    }
    /* meta.json: the caller's object plus the format fields and the manifest. */
    json_t *meta = w->meta ? json_incref(w->meta) : json_object();
    json_object_set_new(meta, "format", json_string(ZF_CKPT_FORMAT));
    json_object_set_new(meta, "format_version", json_integer(ZF_CKPT_FORMAT_VERSION));
    json_object_set_new(meta, "step", json_integer(w->step));
    json_object_set(meta, "tensors", w->tensors);
    json_object_set(meta, "files", w->files);
    char *text = json_dumps(meta, JSON_INDENT(2));
    json_decref(meta);
    if (!text) { zf_err_set(err, "%s: cannot serialise meta.json", path); zf_ckpt_abort(w); return -1; }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0) rc = zf_err_set(err, "%s: cannot create: %s", path, strerror(errno));
    else {
        if (write_all(fd, text, strlen(text)) || write_all(fd, "\n", 1) || fsync(fd))
            rc = zf_err_set(err, "%s: write failed: %s", path, strerror(errno));
        if (close(fd) && rc == 0) rc = zf_err_set(err, "%s: close failed: %s", path, strerror(errno));
    }
    free(text);
    if (rc || fsync_dir(w->tmp_dir, err)) { zf_ckpt_abort(w); return -1; }

    crash_hook("before_rename");
    /* Publish the directory.  If this step already exists (saved again after
     * a resume), swap atomically so that the name never disappears. */
    struct stat st;
    if (stat(fin, &st) == 0) {
        if (renameat2(AT_FDCWD, w->tmp_dir, AT_FDCWD, fin, RENAME_EXCHANGE) == 0) {
            rm_rf(w->tmp_dir);      /* now holds the old contents */
        } else {
            /* No RENAME_EXCHANGE on this file system: move the old one aside
             * under a *.tmp.PID name (removed later if we die here). */
            char old[PATH_MAX], oname[160];
            snprintf(oname, sizeof oname, "%s.tmp.%ld.old", w->final_name, (long)getpid());
            if (path_join(old, sizeof old, w->root, oname, err)) { zf_ckpt_abort(w); return -1; }
            rm_rf(old);
            if (rename(fin, old)) {
                zf_err_set(err, "%s: cannot move existing checkpoint aside: %s", fin, strerror(errno));
                zf_ckpt_abort(w);
                return -1;
            }
            if (rename(w->tmp_dir, fin)) {
                int e = errno;
                if (rename(old, fin)) zf_warn("%s: cannot restore the previous checkpoint from %s", fin, old);
                zf_err_set(err, "%s: cannot rename to %s: %s", w->tmp_dir, fin, strerror(e));
                zf_ckpt_abort(w);
                return -1;
            }
            rm_rf(old);
        }
    } else if (rename(w->tmp_dir, fin)) {
        zf_err_set(err, "%s: cannot rename to %s: %s", w->tmp_dir, fin, strerror(errno));
        zf_ckpt_abort(w);
        return -1;
    }
    if (fsync_dir(w->root, err)) { writer_free(w); return -1; }

    crash_hook("before_latest");
    char line[80];
    int len = snprintf(line, sizeof line, "%s\n", w->final_name);
    if (write_file_atomic(w->root, "latest", line, (size_t)len, err)) { writer_free(w); return -1; }

    prune(w->root, w->final_name, keep_last);
    if (final_path && n) snprintf(final_path, n, "%s", fin);
    writer_free(w);
    return 0;
}

/* ---------- reader ---------- */

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int follow_latest(const char *root, char *out, size_t n, zf_err *err)
{
    char lp[PATH_MAX];
    if (path_join(lp, sizeof lp, root, "latest", err)) return -1;
    char *txt;
    if (read_small_file(lp, 4096, &txt, NULL, err)) return -1;
    size_t k = strlen(txt);
    while (k && (txt[k - 1] == '\n' || txt[k - 1] == '\r' || txt[k - 1] == ' ')) txt[--k] = 0;
    if (parse_step_name(txt) < 0) {
        for (char *c = txt; *c; c++) /* shown in a one-line message */
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
        zf_err_set(err, "%s: expected a step directory name like step_00000100, got '%.64s'", lp, txt);
        free(txt);
        return -1;
    }
    char dir[PATH_MAX], meta[PATH_MAX];
    int rc = path_join(dir, sizeof dir, root, txt, err);
    struct stat st;
    if (rc == 0 && stat(dir, &st) != 0) {
        /* A writer replacing this step without RENAME_EXCHANGE died between
         * its two renames: the complete old one is NAME.tmp.PID.old. */
        DIR *d = opendir(root);
        struct dirent *e;
        size_t tl = strlen(txt);
        while (d && (e = readdir(d))) {
            size_t len = strlen(e->d_name);
            if (!strncmp(e->d_name, txt, tl) && !strncmp(e->d_name + tl, ".tmp.", 5) && len > 4 &&
                !strcmp(e->d_name + len - 4, ".old")) {
                rc = path_join(dir, sizeof dir, root, e->d_name, err);
                break;
            }
        }
        if (d) closedir(d);
    }
    if (rc == 0) rc = path_join(meta, sizeof meta, dir, "meta.json", err);
    if (rc == 0 && !is_file(meta)) rc = zf_err_set(err, "%s: names %s, which has no meta.json", lp, txt);
    free(txt);
    if (rc) return -1;
    if (strlen(dir) >= n) return zf_err_set(err, "%s: path too long", dir);
    snprintf(out, n, "%s", dir);
    return 0;
}

int zf_ckpt_resolve(const char *path, char *ckpt_dir, size_t n, zf_err *err)
{
    if (!path || !path[0]) return zf_err_set(err, "checkpoint path: expected a directory, got nothing");
    char p[PATH_MAX], q[PATH_MAX];
    int k = snprintf(p, sizeof p, "%s", path);
    if (k < 0 || (size_t)k >= sizeof p) return zf_err_set(err, "%s: path too long", path);
    while (k > 1 && p[k - 1] == '/') p[--k] = 0;
    if (path_join(q, sizeof q, p, "meta.json", err)) return -1;
    if (is_file(q)) {
        if ((size_t)k >= n) return zf_err_set(err, "%s: path too long", p);
        snprintf(ckpt_dir, n, "%s", p);
        return 0;
    }
    if (path_join(q, sizeof q, p, "latest", err)) return -1;
    if (is_file(q)) return follow_latest(p, ckpt_dir, n, err);
    char root[PATH_MAX];
    if (path_join(root, sizeof root, p, "checkpoints", err) || path_join(q, sizeof q, root, "latest", err)) return -1;
    if (is_file(q)) return follow_latest(root, ckpt_dir, n, err);
    return zf_err_set(err, "%s: expected a checkpoint directory (with meta.json), a checkpoints directory or an "
                      "output directory with checkpoints/latest", p);
}

int zf_ckpt_read_meta(const char *ckpt_dir, char **json_text, zf_err *err)
{
    *json_text = NULL;
    char path[PATH_MAX];
    if (path_join(path, sizeof path, ckpt_dir, "meta.json", err)) return -1;
    char *txt;
    if (read_small_file(path, META_MAX_BYTES, &txt, NULL, err)) return -1;
    json_error_t je;
    json_t *j = json_loads(txt, 0, &je);
    int rc = 0;
    if (!j) rc = zf_err_set(err, "%s: expected JSON, line %d column %d (byte offset %d): %s", path, je.line, je.column,
                            je.position, je.text);
    else if (!json_is_object(j)) rc = zf_err_set(err, "%s: expected a JSON object at top level", path);
    else {
        const char *fmt = json_string_value(json_object_get(j, "format"));
        json_t *ver = json_object_get(j, "format_version");
        if (!fmt || strcmp(fmt, ZF_CKPT_FORMAT))
            rc = zf_err_set(err, "%s: format: expected \"%s\", got %s", path, ZF_CKPT_FORMAT, fmt ? fmt : "nothing");
        else if (!json_is_integer(ver) || json_integer_value(ver) != ZF_CKPT_FORMAT_VERSION)
            rc = zf_err_set(err, "%s: format_version: expected %d, got %lld", path, ZF_CKPT_FORMAT_VERSION,
                            json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL);
    }
    if (j) json_decref(j);
    if (rc && err) /* the format string and jansson's token come raw from the file: keep one line */
        for (char *c = err->msg; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    if (rc) { free(txt); return -1; }
    *json_text = txt;
    return 0;
}

typedef struct zft_file {
    char path[PATH_MAX];
    int fd;
    zf_dtype dtype;
    uint64_t numel, raw, chunk;
    uint32_t nframes;
    uint64_t *fsize, *foff;   /* per frame: compressed size, absolute offset */
} zft_file;

static void zft_close(zft_file *f)
{
    if (f->fd >= 0) close(f->fd);
    free(f->fsize); free(f->foff);
    f->fd = -1; f->fsize = f->foff = NULL;
}

static int zft_open(const char *dir, const char *name, zft_file *f, zf_err *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    char fname[256];
    if (!valid_name(name))
        return zf_err_set(err, "%s: tensor name: expected 1..200 of [A-Za-z0-9._-] not starting with '.', got '%.64s'",
                          dir, name ? name : "(null)");
    snprintf(fname, sizeof fname, "%s.zft", name);
    if (path_join(f->path, sizeof f->path, dir, fname, err)) return -1;
    const char *p = f->path;
    f->fd = open(p, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) return zf_err_set(err, "%s: cannot open: %s", p, strerror(errno));
    struct stat st;
    if (fstat(f->fd, &st)) { zf_err_set(err, "%s: cannot stat: %s", p, strerror(errno)); zft_close(f); return -1; }
    uint64_t size = (uint64_t)st.st_size;
    uint8_t h[ZFT_HEADER_BYTES];
    if (size < ZFT_HEADER_BYTES) {
        zf_err_set(err, "%s: truncated at byte offset %llu: the header needs %u bytes", p, (unsigned long long)size,
                   ZFT_HEADER_BYTES);
        zft_close(f);
        return -1;
    }
    if (pread_all(f->fd, h, ZFT_HEADER_BYTES, 0)) {
        zf_err_set(err, "%s: read failed at byte offset 0: %s", p, errno ? strerror(errno) : "file shrank");
        zft_close(f);
        return -1;
    }
    int rc = 0;
    if (memcmp(h, ZFT_MAGIC, 8))
        rc = zf_err_set(err, "%s: byte offset 0: magic: expected \"ZFTENSOR\"", p);
    else if (get_u32(h + 48) != zf_fnv1a32(h, 48))
        rc = zf_err_set(err, "%s: byte offset 0..47: header checksum mismatch (corrupt header)", p);
    else if (get_u32(h + 8) != ZF_CKPT_TENSOR_VERSION)
        rc = zf_err_set(err, "%s: byte offset 8: version: expected %u, got %u", p, ZF_CKPT_TENSOR_VERSION, get_u32(h + 8));
    if (rc) { zft_close(f); return -1; }
    f->dtype = (zf_dtype)get_u32(h + 12);
    f->numel = get_u64(h + 16);
    f->raw = get_u64(h + 24);
    f->chunk = get_u64(h + 32);
    f->nframes = get_u32(h + 40);
    size_t dsz = zf_dtype_size(f->dtype);
    if (dsz == 0)
        rc = zf_err_set(err, "%s: byte offset 12: dtype: expected a known dtype, got %u", p, (unsigned)f->dtype);
    else if (f->numel > UINT64_MAX / dsz || f->raw != f->numel * dsz)
        rc = zf_err_set(err, "%s: byte offset 24: raw_bytes: expected numel*%zu = %llu, got %llu", p, dsz,
                        (unsigned long long)(f->numel * dsz), (unsigned long long)f->raw);
    else if (f->chunk == 0 || f->chunk > ZFT_MAX_CHUNK_BYTES || f->chunk % dsz)
        rc = zf_err_set(err, "%s: byte offset 32: chunk_bytes: expected a multiple of %zu in (0, 1 GiB], got %llu", p,
                        dsz, (unsigned long long)f->chunk);
    else if ((uint64_t)f->nframes != f->raw / f->chunk + (f->raw % f->chunk != 0)) /* no wrap near 2^64 */
        rc = zf_err_set(err, "%s: byte offset 40: nframes: expected %llu, got %u", p,
                        (unsigned long long)(f->raw / f->chunk + (f->raw % f->chunk != 0)), f->nframes);
    if (rc) { zft_close(f); return -1; }
    uint64_t head = ZFT_HEADER_BYTES + (uint64_t)f->nframes * 8;
    if (size < head) {
        zf_err_set(err, "%s: truncated at byte offset %llu: header and frame index need %llu bytes", p,
                   (unsigned long long)size, (unsigned long long)head);
        zft_close(f);
        return -1;
    }
    uint8_t *idx = zf_xmalloc((size_t)f->nframes * 8 + 1);
    if (f->nframes && pread_all(f->fd, idx, (size_t)f->nframes * 8, ZFT_HEADER_BYTES)) {
        zf_err_set(err, "%s: read failed at byte offset %u: %s", p, ZFT_HEADER_BYTES, errno ? strerror(errno) : "file shrank");
        free(idx); zft_close(f);
        return -1;
    }
    if (get_u32(h + 44) != zf_fnv1a32(idx, (size_t)f->nframes * 8)) {
        zf_err_set(err, "%s: byte offset %u..%llu: frame index checksum mismatch (corrupt index)", p, ZFT_HEADER_BYTES,
                   (unsigned long long)head - 1);
        free(idx); zft_close(f);
        return -1;
    }
    f->fsize = zf_xmalloc(((size_t)f->nframes + 1) * sizeof *f->fsize);
    f->foff = zf_xmalloc(((size_t)f->nframes + 1) * sizeof *f->foff);
    uint64_t pos = head;
    for (uint32_t i = 0; i < f->nframes && rc == 0; i++) {
        uint64_t len = f->raw - (uint64_t)i * f->chunk < f->chunk ? f->raw - (uint64_t)i * f->chunk : f->chunk;
        LZ4F_preferences_t bp = zf_lz4_frame_prefs((size_t)len);
        uint64_t bound = LZ4F_compressFrameBound((size_t)len, &bp) + 64;
        f->fsize[i] = get_u64(idx + (size_t)i * 8);
        f->foff[i] = pos;
        if (f->fsize[i] == 0 || f->fsize[i] > bound)
            rc = zf_err_set(err, "%s: byte offset %llu: frame %u size: expected 1..%llu, got %llu", p,
                            (unsigned long long)(ZFT_HEADER_BYTES + (uint64_t)i * 8), i, (unsigned long long)bound,
                            (unsigned long long)f->fsize[i]);
        pos += f->fsize[i];
    }
    free(idx);
    if (rc == 0 && size < pos)
        rc = zf_err_set(err, "%s: truncated at byte offset %llu: expected %llu bytes", p, (unsigned long long)size,
                        (unsigned long long)pos);
    else if (rc == 0 && size > pos)
        rc = zf_err_set(err, "%s: byte offset %llu: %llu unexpected trailing bytes", p, (unsigned long long)pos,
                        (unsigned long long)(size - pos));
    if (rc) { zft_close(f); return -1; }
    return 0;
}

/* Raw bytes [lo, hi) of the tensor into dst: the frames that hold them
 * decoded (in parallel), each whole one straight into dst, a partial one
 * through a buffer of its own. */
static int zft_read(zft_file *f, void *dst, uint64_t lo, uint64_t hi, zf_err *err)
{
    long bad = -1;
    char badmsg[1024] = "";
    if (hi <= lo) return 0;
    const long f0 = (long)(lo / f->chunk), nf = (long)((hi - 1) / f->chunk) + 1;
    #pragma omp parallel for schedule(dynamic, 1) if (nf - f0 > 1)
    for (long i = f0; i < nf; i++) {
        const uint64_t start = (uint64_t)i * f->chunk;
        uint64_t len = f->raw - start < f->chunk ? f->raw - start : f->chunk;
        const int whole = start >= lo && start + len <= hi;
        uint8_t *part = whole ? NULL : zf_xmalloc((size_t)len);
        uint8_t *out = whole ? (uint8_t *)dst + (start - lo) : part;
        uint8_t *buf = zf_xmalloc((size_t)f->fsize[i]);
        char msg[1024] = "";
        if (pread_all(f->fd, buf, (size_t)f->fsize[i], (off_t)f->foff[i])) {
            snprintf(msg, sizeof msg, "%.700s: read failed at byte offset %llu: %s", f->path,
                     (unsigned long long)f->foff[i], errno ? strerror(errno) : "file shrank");
        } else {
            size_t where = 0;
            const char *e = zf_lz4_frame_decode(buf, (size_t)f->fsize[i], out, (size_t)len, 0, &where);
            if (e) {
                /* Locate: replay in small slices so the offset is close to the damage. */
                const char *e2 = zf_lz4_frame_decode(buf, (size_t)f->fsize[i], out, (size_t)len, ZFT_LOCATE_SLICE, &where);
                if (e2) e = e2;
                snprintf(msg, sizeof msg, "%.700s: corrupt data detected at byte offset %llu (%s) in frame %ld at bytes %llu..%llu",
                         f->path, (unsigned long long)(f->foff[i] + where), e, i, (unsigned long long)f->foff[i],
                         (unsigned long long)(f->foff[i] + f->fsize[i] - 1));
            }
        }
        free(buf);
        if (part) {
            const uint64_t a = start > lo ? start : lo, e = start + len < hi ? start + len : hi;
            if (!msg[0]) memcpy((uint8_t *)dst + (a - lo), part + (a - start), (size_t)(e - a));
            free(part);
        }
        if (msg[0]) {
            #pragma omp critical(zf_ckpt_readerr)
            if (bad < 0 || i < bad) { bad = i; snprintf(badmsg, sizeof badmsg, "%s", msg); }
        }
    }
    if (bad >= 0) return zf_err_set(err, "%s", badmsg);
    return 0;
}

int zf_ckpt_tensor_info(const char *ckpt_dir, const char *name, zf_dtype *dtype, size_t *numel, zf_err *err)
{
    zft_file f;
    if (zft_open(ckpt_dir, name, &f, err)) return -1;
    if (dtype) *dtype = f.dtype;
    if (numel) *numel = (size_t)f.numel;
    zft_close(&f);
    return 0;
}

/* Elements [lo, lo + n) of NAME.zft, checked to be of dtype and
 * expected_numel elements, into dst. */
static int read_checked(const char *ckpt_dir, const char *name, zf_dtype dtype, void *dst, size_t expected_numel,
                        size_t lo, size_t n, zf_err *err)
{
    zft_file f;
    if (zft_open(ckpt_dir, name, &f, err)) return -1;
    const size_t dsz = zf_dtype_size(dtype);
    int rc = 0;
    if (f.dtype != dtype)
        rc = zf_err_set(err, "%s: dtype: expected %s, got %s", f.path, dtype_str(dtype), dtype_str(f.dtype));
    else if (f.numel != (uint64_t)expected_numel)
        rc = zf_err_set(err, "%s: numel: expected %zu, got %llu", f.path, expected_numel, (unsigned long long)f.numel);
    else if (lo > expected_numel || n > expected_numel - lo)
        rc = zf_err_set(err, "%s: range [%zu, +%zu): expected within %zu elements", f.path, lo, n, expected_numel);
    else if (n && !dst)
        rc = zf_err_set(err, "%s: no destination buffer", f.path);
    else
        rc = zft_read(&f, dst, (uint64_t)lo * dsz, (uint64_t)(lo + n) * dsz, err);
    zft_close(&f);
    return rc;
}

int zf_ckpt_read_raw(const char *ckpt_dir, const char *name, zf_dtype dtype, void *dst, size_t expected_numel,
                     zf_err *err)
{
    return read_checked(ckpt_dir, name, dtype, dst, expected_numel, 0, expected_numel, err);
}

int zf_ckpt_read_tensor(const char *ckpt_dir, const char *name, float *dst, size_t expected_numel, zf_err *err)
{
    return read_checked(ckpt_dir, name, ZF_DTYPE_F32, dst, expected_numel, 0, expected_numel, err);
}

int zf_ckpt_read_tensor_range(const char *ckpt_dir, const char *name, float *dst, size_t expected_numel, size_t lo,
                              size_t n, zf_err *err)
{
    return read_checked(ckpt_dir, name, ZF_DTYPE_F32, dst, expected_numel, lo, n, err);
}

int zf_ckpt_adopt_tensor(zf_ckpt_writer *w, const char *name, const char *src_dir, zf_err *err)
{
    if (new_tensor_check(w, name, err) != 0) return -1;
    zft_file f;
    if (zft_open(src_dir, name, &f, err)) return -1; /* header, index and size checked; frames when read */
    const zf_dtype dtype = f.dtype;
    const size_t numel = (size_t)f.numel;
    struct stat st;
    const int stat_rc = fstat(f.fd, &st);
    char src[PATH_MAX];
    snprintf(src, sizeof src, "%s", f.path);
    zft_close(&f);
    if (stat_rc) return zf_err_set(err, "%s: cannot stat: %s", src, strerror(errno));
    char fname[256], path[PATH_MAX];
    snprintf(fname, sizeof fname, "%s.zft", name);
    if (path_join(path, sizeof path, w->tmp_dir, fname, err)) { w->failed = 1; return -1; }
    long long total = (long long)st.st_size;
    if (link(src, path) != 0) { /* another file system: a copy */
        const int rc = copy_file(src, path, &total, err);
        if (rc != 0) {
            if (rc == -2) w->failed = 1;
            return -1;
        }
    }
    record_tensor(w, name, fname, dtype, numel, (long long)total);
    return 0;
}
