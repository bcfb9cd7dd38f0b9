/* shm.c - see shm.h. */
#include "shm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

size_t zf_dtype_size(zf_dtype dt)
{
    switch (dt) {
    case ZF_DTYPE_F32: case ZF_DTYPE_I32: return 4;
    case ZF_DTYPE_F16: case ZF_DTYPE_BF16: case ZF_DTYPE_U16: return 2;
    case ZF_DTYPE_U8: return 1;
    case ZF_DTYPE_I64: return 8;
    }
    return 0;
}

const char *zf_dtype_name(zf_dtype dt)
{
    switch (dt) {
    case ZF_DTYPE_F32: return "f32";
    case ZF_DTYPE_F16: return "f16";
    case ZF_DTYPE_BF16: return "bf16";
    case ZF_DTYPE_I32: return "i32";
    case ZF_DTYPE_U16: return "u16";
    case ZF_DTYPE_U8: return "u8";
    case ZF_DTYPE_I64: return "i64";
    }
    return "?";
}

void zf_run_id_new(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long mix = (unsigned long)ts.tv_nsec ^ ((unsigned long)ts.tv_sec << 20);
    snprintf(out, n, "%d-%06lx", (int)getpid(), mix & 0xffffffUL);
}

void zf_shm_name(char *out, size_t n, const char *run_id, const char *name)
{
    snprintf(out, n, "/zf.%u.%s.%s", (unsigned)getuid(), run_id, name);
}

static size_t map_size(size_t data_bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t total = ZF_SHM_HEADER_BYTES + data_bytes;
    return (total + (size_t)page - 1) / (size_t)page * (size_t)page;
}

int zf_shm_create(zf_shm *s, const char *run_id, const char *name, zf_dtype dt,
                  int ndim, const int64_t *shape, zf_err *err)
{
    memset(s, 0, sizeof *s);
    if (ndim < 1 || ndim > ZF_SHM_MAX_DIMS)
        return zf_err_set(err, "shm %s: expected 1..%d dimensions, got %d", name, ZF_SHM_MAX_DIMS, ndim);
    size_t esize = zf_dtype_size(dt);
    if (!esize) return zf_err_set(err, "shm %s: unknown dtype %d", name, (int)dt);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return zf_err_set(err, "shm %s: negative dimension %d", name, i);
        numel *= (uint64_t)shape[i];
    }
    uint64_t data_bytes = numel * esize;
    zf_shm_name(s->name, sizeof s->name, run_id, name);
    int fd = shm_open(s->name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return zf_err_set(err, "shm %s: cannot create: %s", s->name, strerror(errno));
    size_t bytes = map_size(data_bytes);
    if (ftruncate(fd, (off_t)bytes) != 0) {
        int e = errno;
        close(fd); shm_unlink(s->name);
        return zf_err_set(err, "shm %s: cannot size to %zu bytes: %s", s->name, bytes, strerror(e));
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        int e = errno;
        shm_unlink(s->name);
        return zf_err_set(err, "shm %s: cannot map %zu bytes: %s", s->name, bytes, strerror(e));
    }
    zf_shm_header *h = p;
    memcpy(h->magic, ZF_SHM_MAGIC, 8);
    h->version = ZF_SHM_VERSION;
    h->dtype = (uint32_t)dt;
    h->ndim = (uint32_t)ndim;
    h->header_bytes = ZF_SHM_HEADER_BYTES;
    for (int i = 0; i < ndim; i++) h->shape[i] = shape[i];
    h->data_bytes = data_bytes;
    atomic_store(&h->generation, 0);
    h->creator_pid = (int32_t)getpid();
    snprintf(h->name, sizeof h->name, "%s", s->name);
    s->hdr = h;
    s->data = (char *)p + ZF_SHM_HEADER_BYTES;
    s->map_bytes = bytes;
    s->owner = 1;
    return 0;
}

int zf_shm_attach(zf_shm *s, const char *full_name, zf_err *err)
{
    memset(s, 0, sizeof *s);
    if (!full_name || full_name[0] != '/' || strlen(full_name) >= sizeof s->name)
        return zf_err_set(err, "shm '%s': expected a name starting with '/'", full_name ? full_name : "");
    snprintf(s->name, sizeof s->name, "%s", full_name);
    int fd = shm_open(s->name, O_RDWR, 0);
    if (fd < 0) return zf_err_set(err, "shm %s: cannot open: %s", s->name, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < ZF_SHM_HEADER_BYTES) {
        close(fd);
        return zf_err_set(err, "shm %s: smaller than its %u-byte header", s->name, ZF_SHM_HEADER_BYTES);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return zf_err_set(err, "shm %s: cannot map: %s", s->name, strerror(errno));
    zf_shm_header *h = p;
    const char *why = NULL;
    if (memcmp(h->magic, ZF_SHM_MAGIC, 8) != 0) why = "bad magic";
    else if (h->version != ZF_SHM_VERSION) why = "unsupported version";
    else if (h->header_bytes != ZF_SHM_HEADER_BYTES) why = "unexpected header size";
    else if (h->ndim < 1 || h->ndim > ZF_SHM_MAX_DIMS) why = "bad ndim";
    else if (!zf_dtype_size((zf_dtype)h->dtype)) why = "unknown dtype";
    else if (h->data_bytes > (uint64_t)st.st_size - ZF_SHM_HEADER_BYTES) why = "data larger than the segment";
    else {
        uint64_t numel = 1;
        for (uint32_t i = 0; i < h->ndim; i++) numel *= (uint64_t)h->shape[i];
        if (numel * zf_dtype_size((zf_dtype)h->dtype) != h->data_bytes) why = "shape does not match size";
    }
    if (why) {
        munmap(p, (size_t)st.st_size);
        return zf_err_set(err, "shm %s: %s", s->name, why);
    }
    s->hdr = h;
    s->data = (char *)p + ZF_SHM_HEADER_BYTES;
    s->map_bytes = (size_t)st.st_size;
    s->owner = 0;
    return 0;
}

int zf_shm_shrink(zf_shm *s, int64_t new_dim0, zf_err *err)
{
    if (!s || !s->hdr) return zf_err_set(err, "shm: shrink: expected an open segment, got none");
    if (!s->owner)
        return zf_err_set(err, "shm %s: shrink: expected the owner of the segment, got a process that attached to it",
                          s->name);
    zf_shm_header *h = s->hdr;
    if (new_dim0 < 0 || new_dim0 > h->shape[0])
        return zf_err_set(err, "shm %s: shrink: shape[0]: expected 0..%lld (shrinking only), got %lld", s->name,
                          (long long)h->shape[0], (long long)new_dim0);
    uint64_t row = zf_dtype_size((zf_dtype)h->dtype);
    for (uint32_t i = 1; i < h->ndim; i++) row *= (uint64_t)h->shape[i];
    uint64_t data_bytes = (uint64_t)new_dim0 * row;
    size_t bytes = map_size(data_bytes);
    if (bytes < s->map_bytes) {
        /* Truncate first: if that fails nothing has changed. */
        int fd = shm_open(s->name, O_RDWR, 0);
        if (fd < 0) return zf_err_set(err, "shm %s: shrink: cannot open: %s", s->name, strerror(errno));
        if (ftruncate(fd, (off_t)bytes) != 0) {
            int e = errno;
            close(fd);
            return zf_err_set(err, "shm %s: shrink: cannot truncate to %zu bytes: %s", s->name, bytes, strerror(e));
        }
        close(fd);
        munmap((char *)s->hdr + bytes, s->map_bytes - bytes); /* page aligned: cannot fail */
        s->map_bytes = bytes;
    }
    h->shape[0] = new_dim0;
    h->data_bytes = data_bytes;
    return 0;
}

void zf_shm_close(zf_shm *s)
{
    if (!s || !s->hdr) return;
    munmap(s->hdr, s->map_bytes);
    if (s->owner) shm_unlink(s->name);
    memset(s, 0, sizeof *s);
}

size_t zf_shm_numel(const zf_shm *s)
{
    return (size_t)(s->hdr->data_bytes / zf_dtype_size((zf_dtype)s->hdr->dtype));
}

/* Calls fn on every /dev/shm entry of this user's zeroflow segments, with the
 * run id part split out. */
static int for_each_segment(int (*fn)(const char *entry, const char *run_id, void *ctx), void *ctx)
{
    DIR *d = opendir("/dev/shm");
    if (!d) return 0;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "zf.%u.", (unsigned)getuid());
    size_t plen = strlen(prefix);
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, plen) != 0) continue;
        char run[96];
        const char *r = e->d_name + plen, *dot = strchr(r, '.');
        if (!dot || (size_t)(dot - r) >= sizeof run) continue;
        memcpy(run, r, (size_t)(dot - r));
        run[dot - r] = 0;
        removed += fn(e->d_name, run, ctx);
    }
    closedir(d);
    return removed;
}

/* A run's entry: a segment, or the directory in which run_pipeline.sh has
 * Open MPI keep its ranks' shared-memory files (plain files, no subdirs).
 * The directory is opened without following a link and must belong to this
 * user, so a name planted by someone else cannot redirect the removal. */
static int unlink_entry(const char *entry)
{
    char full[300];
    snprintf(full, sizeof full, "/%s", entry);
    if (shm_unlink(full) == 0) return 1;
    if (errno != EISDIR) return 0;
    int shm = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (shm < 0) return 0;
    int removed = 0, fd = openat(shm, entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    DIR *d = NULL;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == getuid() && (d = fdopendir(fd))) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(d), e->d_name, 0);
        closedir(d); /* closes fd */
        removed = unlinkat(shm, entry, AT_REMOVEDIR) == 0;
    } else if (fd >= 0) {
        close(fd);
    }
    close(shm);
    return removed;
}

static int remove_if_run(const char *entry, const char *run_id, void *ctx)
{
    return strcmp(run_id, (const char *)ctx) == 0 ? unlink_entry(entry) : 0;
}

static int remove_if_dead(const char *entry, const char *run_id, void *ctx)
{
    (void)ctx;
    long pid = strtol(run_id, NULL, 10);
    if (pid <= 0) return 0;
    if (kill((pid_t)pid, 0) == 0 || errno == EPERM) return 0;
    return unlink_entry(entry);
}

int zf_shm_remove_run(const char *run_id) { return for_each_segment(remove_if_run, (void *)run_id); }
int zf_shm_sweep_stale(void) { return for_each_segment(remove_if_dead, NULL); }
