/* test_shm.c - shared-memory tensors (lib/shm): zf_shm_shrink.
 *
 * Checks: a created, written 1-D and 2-D tensor shrunk in its first
 * dimension is seen by a later attach with the new shape and data_bytes, the
 * segment's size is cut to the page-rounded new size, the kept data and the
 * generation are intact; a process that only attached is refused, as are
 * growing and negative sizes (nothing changes then); shrinking to 0 rows
 * and to the same size work; a segment of the run is unlinked on close.
 * Removing a run also removes its directory entry in /dev/shm (Open MPI's
 * files, run_pipeline.sh) with the files in it, but never follows a link
 * of the run's name to another directory. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm.h"
#include "zf_check.h"

static size_t page_round(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (n + page - 1) / page * page;
}

/* Size of the segment's file, -1 when it does not exist. */
static long long segment_size(const char *name)
{
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0) return -1;
    struct stat st;
    long long n = fstat(fd, &st) == 0 ? (long long)st.st_size : -2;
    close(fd);
    return n;
}

static void test_1d(const char *run)
{
    zf_err err;
    zf_shm s, r;
    int64_t shape[1] = { 100000 };
    CHECK(zf_shm_create(&s, run, "shrink1d", ZF_DTYPE_I32, 1, shape, &err) == 0, "create: %s", err.msg);
    if (!s.hdr) return;
    int32_t *p = s.data;
    for (int i = 0; i < 100000; i++) p[i] = i * 7 - 3;
    zf_shm_bump(&s);
    zf_shm_bump(&s);
    CHECK(segment_size(s.name) == (long long)page_round(4096 + 400000), "size before %lld", segment_size(s.name));

    /* a reader cannot shrink, and its refusal changes nothing */
    CHECK(zf_shm_attach(&r, s.name, &err) == 0, "attach: %s", err.msg);
    CHECK(zf_shm_shrink(&r, 10, &err) == -1, "non-owner shrink accepted");
    CHECK(strstr(err.msg, "owner") != NULL, "error: %s", err.msg);
    CHECK(r.hdr->shape[0] == 100000 && r.hdr->data_bytes == 400000, "shape %lld", (long long)r.hdr->shape[0]);
    zf_shm_close(&r);

    /* growing and negative sizes are refused */
    CHECK(zf_shm_shrink(&s, 100001, &err) == -1, "growing accepted");
    CHECK(strstr(err.msg, "shape[0]") != NULL && strstr(err.msg, "100001") != NULL, "error: %s", err.msg);
    CHECK(zf_shm_shrink(&s, -1, &err) == -1, "negative size accepted");
    CHECK(s.hdr->shape[0] == 100000 && segment_size(s.name) == (long long)page_round(4096 + 400000),
          "refusals changed the segment");

    /* same size: a no-op that succeeds */
    CHECK(zf_shm_shrink(&s, 100000, &err) == 0, "same size: %s", err.msg);

    CHECK(zf_shm_shrink(&s, 12345, &err) == 0, "shrink: %s", err.msg);
    CHECK(s.hdr->shape[0] == 12345 && s.hdr->data_bytes == 12345u * 4, "owner's header %lld %llu",
          (long long)s.hdr->shape[0], (unsigned long long)s.hdr->data_bytes);
    CHECK(zf_shm_numel(&s) == 12345, "owner's numel %zu", zf_shm_numel(&s));
    CHECK(s.map_bytes == page_round(4096 + 12345 * 4), "map_bytes %zu", s.map_bytes);
    CHECK(segment_size(s.name) == (long long)page_round(4096 + 12345 * 4), "size after %lld", segment_size(s.name));

    CHECK(zf_shm_attach(&r, s.name, &err) == 0, "attach after shrink: %s", err.msg);
    if (r.hdr) {
        CHECK(r.hdr->ndim == 1 && r.hdr->shape[0] == 12345 && zf_shm_numel(&r) == 12345, "reader sees %lld",
              (long long)r.hdr->shape[0]);
        CHECK(r.map_bytes == page_round(4096 + 12345 * 4), "reader maps %zu", r.map_bytes);
        CHECK(zf_shm_generation(&r) == 2, "generation %llu", (unsigned long long)zf_shm_generation(&r));
        const int32_t *q = r.data;
        int bad = 0;
        for (int i = 0; i < 12345; i++) bad += q[i] != i * 7 - 3;
        CHECK(bad == 0, "%d values changed", bad);
        zf_shm_close(&r);
    }

    /* down to no rows: the header alone is left */
    CHECK(zf_shm_shrink(&s, 0, &err) == 0, "shrink to 0: %s", err.msg);
    CHECK(segment_size(s.name) == 4096, "size %lld", segment_size(s.name));
    CHECK(zf_shm_attach(&r, s.name, &err) == 0, "attach empty: %s", err.msg);
    if (r.hdr) {
        CHECK(r.hdr->shape[0] == 0 && r.hdr->data_bytes == 0, "reader sees %lld", (long long)r.hdr->shape[0]);
        zf_shm_close(&r);
    }
    char name[sizeof s.name];
    snprintf(name, sizeof name, "%s", s.name);
    zf_shm_close(&s);
    CHECK(segment_size(name) == -1, "segment left after the owner closed it");
}

static void test_2d(const char *run)
{
    zf_err err;
    zf_shm s, r;
    int64_t shape[2] = { 3000, 3 };
    CHECK(zf_shm_create(&s, run, "shrink2d", ZF_DTYPE_F16, 2, shape, &err) == 0, "create: %s", err.msg);
    if (!s.hdr) return;
    uint16_t *p = s.data;
    for (int i = 0; i < 9000; i++) p[i] = (uint16_t)(i * 31 + 1);
    CHECK(zf_shm_shrink(&s, 1001, &err) == 0, "shrink: %s", err.msg);
    CHECK(zf_shm_attach(&r, s.name, &err) == 0, "attach: %s", err.msg);
    if (r.hdr) {
        CHECK(r.hdr->ndim == 2 && r.hdr->shape[0] == 1001 && r.hdr->shape[1] == 3, "shape %lld x %lld",
              (long long)r.hdr->shape[0], (long long)r.hdr->shape[1]);
        CHECK(r.hdr->data_bytes == 1001u * 3 * 2, "data_bytes %llu", (unsigned long long)r.hdr->data_bytes);
        const uint16_t *q = r.data;
        int bad = 0;
        for (int i = 0; i < 3003; i++) bad += q[i] != (uint16_t)(i * 31 + 1);
        CHECK(bad == 0, "%d values changed", bad);
        zf_shm_close(&r);
    }
    zf_shm_close(&s);
}

/* A run's directory in /dev/shm goes with the run; a link named like one is
 * removed itself, the directory it points to is left alone. */
static void test_run_dirs(void)
{
    char run[64], dir[160], file[200], target[64], link[160], kept[200];
    zf_run_id_new(run, sizeof run);
    snprintf(dir, sizeof dir, "/dev/shm/zf.%u.%s.mpi", (unsigned)getuid(), run);
    snprintf(file, sizeof file, "%s/vader_segment.0", dir);
    if (mkdir(dir, 0700) != 0) {
        printf("skip run dirs: cannot create %s\n", dir);
        return;
    }
    FILE *f = fopen(file, "w");
    CHECK(f != NULL, "create %s", file);
    if (f) fclose(f);
    snprintf(target, sizeof target, "/tmp/zf-test-shm.XXXXXX");
    CHECK(mkdtemp(target) != NULL, "mkdtemp");
    snprintf(kept, sizeof kept, "%s/keep", target);
    f = fopen(kept, "w");
    if (f) fclose(f);
    snprintf(link, sizeof link, "/dev/shm/zf.%u.%s.link", (unsigned)getuid(), run);
    CHECK(symlink(target, link) == 0, "symlink %s", link);
    CHECK(zf_shm_remove_run(run) == 2, "the run's directory and link removed");
    CHECK(access(dir, F_OK) != 0 && access(link, F_OK) != 0, "%s or %s still there", dir, link);
    CHECK(access(kept, F_OK) == 0, "the file behind the link was removed");
    unlink(kept);
    rmdir(target);
}

int main(void)
{
    char run[64];
    zf_run_id_new(run, sizeof run);
    test_1d(run);
    test_2d(run);
    zf_err err;
    zf_shm none;
    memset(&none, 0, sizeof none);
    CHECK(zf_shm_shrink(&none, 0, &err) == -1, "shrink of a closed segment accepted");
    CHECK(zf_shm_remove_run(run) == 0, "segments left by the test");
    test_run_dirs();
    return zf_check_summary("test_shm");
}
