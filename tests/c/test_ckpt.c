/* test_ckpt.c - lib/ckpt.c: round trip (also of a tensor written from
 * pieces, the same file as written whole, and of one adopted from another
 * checkpoint), range reads, corruption and truncation detected
 * with the byte offset, crash safety (a writer killed at each stage leaves
 * the previous checkpoint and `latest` loadable), re-saving a step, and
 * keep_last pruning. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>

#include "ckpt.h"
#include "rng.h"
#include "zf_check.h"

static char g_out[512];

#define BIG_N ((size_t)5000003)   /* 20 MB: three LZ4 frames of 8 MiB */

static void fill(float *x, size_t n, uint64_t seed, int compressible)
{
    zf_rng r;
    zf_rng_seed(&r, seed, 7);
    for (size_t i = 0; i < n; i++)
        x[i] = compressible ? (float)(i % 97) * 0.5f : (float)zf_rng_normal(&r);
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) ? -1 : (long)st.st_size;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Write a checkpoint with tensors "a" (small), "big" (multi-frame) and
 * "empty", seeded by step. */
static int write_ckpt(long step, int keep_last, char *final, size_t n)
{
    zf_err err;
    zf_ckpt_writer *w;
    if (zf_ckpt_begin(g_out, step, &w, &err)) { printf("begin: %s\n", err.msg); return -1; }
    float a[1000];
    fill(a, 1000, (uint64_t)step, 0);
    float *big = malloc(BIG_N * sizeof *big);
    fill(big, BIG_N, (uint64_t)step + 1000, (step / 100) % 2);
    char meta[256];
    snprintf(meta, sizeof meta, "{\"trainer\": {\"step\": %ld, \"tokens\": %ld}, \"rng\": [1, 2, 3]}", step, step * 1024);
    int rc = zf_ckpt_add_tensor(w, "a", a, 1000, &err) || zf_ckpt_add_tensor(w, "big", big, BIG_N, &err) ||
             zf_ckpt_add_tensor(w, "empty", NULL, 0, &err) || zf_ckpt_set_meta(w, meta, &err) ||
             zf_ckpt_commit(w, keep_last, final, n, &err);
    free(big);
    if (rc) printf("write step %ld: %s\n", step, err.msg);
    return rc ? -1 : 0;
}

/* Everything in the checkpoint is what write_ckpt(step) wrote. */
static int verify_ckpt(const char *dir, long step)
{
    zf_err err;
    int ok = 1;
    float a[1000], a2[1000];
    fill(a, 1000, (uint64_t)step, 0);
    if (zf_ckpt_read_tensor(dir, "a", a2, 1000, &err)) { printf("read a: %s\n", err.msg); return 0; }
    ok &= memcmp(a, a2, sizeof a) == 0;
    float *big = malloc(BIG_N * sizeof *big), *big2 = malloc(BIG_N * sizeof *big2);
    fill(big, BIG_N, (uint64_t)step + 1000, (step / 100) % 2);
    if (zf_ckpt_read_tensor(dir, "big", big2, BIG_N, &err)) { printf("read big: %s\n", err.msg); ok = 0; }
    else ok &= memcmp(big, big2, BIG_N * sizeof *big) == 0;
    free(big); free(big2);
    if (zf_ckpt_read_tensor(dir, "empty", NULL, 0, &err)) { printf("read empty: %s\n", err.msg); ok = 0; }
    char *txt;
    if (zf_ckpt_read_meta(dir, &txt, &err)) { printf("meta: %s\n", err.msg); return 0; }
    json_t *j = json_loads(txt, 0, NULL);
    free(txt);
    ok &= j && json_integer_value(json_object_get(j, "step")) == step &&
          json_integer_value(json_object_get(json_object_get(j, "trainer"), "tokens")) == step * 1024 &&
          json_array_size(json_object_get(j, "rng")) == 3 &&
          json_integer_value(json_object_get(json_object_get(json_object_get(j, "tensors"), "big"), "numel")) ==
              (json_int_t)BIG_N;
    json_decref(j);
    return ok;
}

static void test_round_trip(void)
{
    char final[1024], dir[1024], expect[1024];
    zf_err err;
    CHECK(write_ckpt(100, 0, final, sizeof final) == 0, "write step 100");
    snprintf(expect, sizeof expect, "%s/checkpoints/step_00000100", g_out);
    CHECK(!strcmp(final, expect), "final path %s", final);
    CHECK(zf_ckpt_resolve(g_out, dir, sizeof dir, &err) == 0 && !strcmp(dir, expect), "resolve output dir: %s", err.msg);
    char cdir[1024];
    snprintf(cdir, sizeof cdir, "%s/checkpoints/", g_out);
    CHECK(zf_ckpt_resolve(cdir, dir, sizeof dir, &err) == 0 && !strcmp(dir, expect), "resolve checkpoints dir");
    CHECK(zf_ckpt_resolve(expect, dir, sizeof dir, &err) == 0 && !strcmp(dir, expect), "resolve step dir");
    CHECK(verify_ckpt(expect, 100), "round trip of step 100");
    zf_dtype dt; size_t n;
    CHECK(zf_ckpt_tensor_info(expect, "big", &dt, &n, &err) == 0 && dt == ZF_DTYPE_F32 && n == BIG_N, "tensor info");
    /* The compressible tensor really is compressed. */
    char p[1200];
    snprintf(p, sizeof p, "%s/big.zft", expect);
    CHECK(file_size(p) > 0 && file_size(p) < (long)(BIG_N * 4), "big.zft %ld bytes", file_size(p));
    /* wrong expectations */
    float a[10];
    CHECK(zf_ckpt_read_tensor(expect, "a", a, 10, &err) == -1 && strstr(err.msg, "numel: expected 10, got 1000"),
          "numel mismatch: %s", err.msg);
    CHECK(zf_ckpt_read_tensor(expect, "nope", a, 10, &err) == -1 && strstr(err.msg, "nope.zft"), "missing: %s", err.msg);
    CHECK(zf_ckpt_read_tensor(expect, "../x", a, 10, &err) == -1, "bad name rejected");
    /* raw dtypes */
    zf_ckpt_writer *w;
    uint16_t h[33];
    for (int i = 0; i < 33; i++) h[i] = (uint16_t)(i * 977);
    CHECK(zf_ckpt_begin(g_out, 101, &w, &err) == 0, "begin 101");
    CHECK(zf_ckpt_add_raw(w, "half.w", ZF_DTYPE_BF16, h, 33, &err) == 0, "add bf16: %s", err.msg);
    CHECK(zf_ckpt_add_tensor(w, "half.w", (float *)h, 1, &err) == -1 && strstr(err.msg, "twice"), "duplicate name");
    CHECK(zf_ckpt_add_tensor(w, ".hidden", (float *)h, 1, &err) == -1 && strstr(err.msg, "tensor name"), "dot name");
    CHECK(zf_ckpt_add_tensor(w, "a/b", (float *)h, 1, &err) == -1, "slash name");
    CHECK(zf_ckpt_set_meta(w, "{\"x\": ", &err) == -1 && strstr(err.msg, "meta.json"), "bad JSON: %s", err.msg);
    CHECK(zf_ckpt_set_meta(w, "[1, 2]", &err) == -1 && strstr(err.msg, "object"), "non-object JSON");
    char src[1100];
    snprintf(src, sizeof src, "%s/config.src", g_out);
    FILE *cf = fopen(src, "w");
    fputs("{\"n_layer\": 2}\n", cf);
    fclose(cf);
    CHECK(zf_ckpt_add_file(w, "config.json", src, &err) == 0, "add file: %s", err.msg);
    CHECK(zf_ckpt_add_file(w, "config.json", src, &err) == -1 && strstr(err.msg, "twice"), "file added twice");
    CHECK(zf_ckpt_add_file(w, "meta.json", src, &err) == -1, "meta.json is reserved");
    CHECK(zf_ckpt_add_file(w, "x.zft", src, &err) == -1, "*.zft is reserved");
    CHECK(zf_ckpt_add_file(w, "other.txt", "/nonexistent/file", &err) == -1 && strstr(err.msg, "/nonexistent/file"),
          "missing source: %s", err.msg);
    CHECK(zf_ckpt_commit(w, 0, final, sizeof final, &err) == 0, "commit 101 without meta: %s", err.msg);
    char cpath[1200], cbuf[64] = "";
    snprintf(cpath, sizeof cpath, "%s/config.json", final);
    cf = fopen(cpath, "r");
    if (cf) { if (!fgets(cbuf, sizeof cbuf, cf)) cbuf[0] = 0; fclose(cf); }
    CHECK(!strcmp(cbuf, "{\"n_layer\": 2}\n"), "copied file content '%s'", cbuf);
    uint16_t h2[33];
    CHECK(zf_ckpt_read_raw(final, "half.w", ZF_DTYPE_BF16, h2, 33, &err) == 0 && !memcmp(h, h2, sizeof h), "bf16 back");
    CHECK(zf_ckpt_read_tensor(final, "half.w", (float *)h2, 33, &err) == -1 && strstr(err.msg, "dtype"), "dtype checked");
    char *txt;
    CHECK(zf_ckpt_read_meta(final, &txt, &err) == 0 && strstr(txt, "\"format\": \"zeroflow-checkpoint\"") &&
          strstr(txt, "\"config.json\": {"), "minimal meta lists the file");
    free(txt);
    CHECK(zf_ckpt_resolve(g_out, dir, sizeof dir, &err) == 0 && !strcmp(dir, final), "latest -> 101");
}

static void flip_byte(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    if (pread(fd, &c, 1, off) != 1) printf("pread failed\n");
    c ^= 0x10;
    if (pwrite(fd, &c, 1, off) != 1) printf("pwrite failed\n");
    close(fd);
}

/* Parse "byte offset N" out of an error message. */
static long err_offset(const char *msg)
{
    const char *p = strstr(msg, "byte offset ");
    return p ? atol(p + 12) : -1;
}

/* A whole file's bytes (free them); NULL if unreadable. */
static unsigned char *file_bytes(const char *p, long *n)
{
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)*n + 1);
    if (fread(b, 1, (size_t)*n, f) != (size_t)*n) { free(b); b = NULL; }
    fclose(f);
    return b;
}

/* A tensor written from pieces is the same file as the concatenation
 * written whole: pieces of every size, frames that span several of them
 * (8 MiB frames: the 1.5M-float piece ends inside the first), empty ones;
 * pieces of partial elements refused. */
static void test_pieces(void)
{
    zf_err err;
    float *big = malloc(BIG_N * sizeof *big);
    fill(big, BIG_N, 77, 0);
    const size_t cut[] = { 0, 1500000, 1500000, 1500001, 2600000, 4194304, BIG_N };
    zf_ckpt_piece p[6];
    for (int i = 0; i < 6; i++) p[i] = (zf_ckpt_piece){ big + cut[i], (cut[i + 1] - cut[i]) * sizeof(float) };
    zf_ckpt_writer *w;
    char final[1024];
    CHECK(zf_ckpt_begin(g_out, 300, &w, &err) == 0, "begin 300");
    CHECK(zf_ckpt_add_raw(w, "whole", ZF_DTYPE_F32, big, BIG_N, &err) == 0, "add whole: %s", err.msg);
    CHECK(zf_ckpt_add_pieces(w, "pieces", ZF_DTYPE_F32, p, 6, &err) == 0, "add pieces: %s", err.msg);
    CHECK(zf_ckpt_add_pieces(w, "one", ZF_DTYPE_F32, p + 5, 1, &err) == 0, "add one piece: %s", err.msg);
    zf_ckpt_piece odd = { big, 6 };
    CHECK(zf_ckpt_add_pieces(w, "odd", ZF_DTYPE_F32, &odd, 1, &err) == -1 && strstr(err.msg, "whole 4-byte elements"),
          "partial element refused: %s", err.msg);
    CHECK(zf_ckpt_set_meta(w, "{}", &err) == 0 && zf_ckpt_commit(w, 0, final, sizeof final, &err) == 0, "commit: %s",
          err.msg);
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/whole.zft", final);
    snprintf(pb, sizeof pb, "%s/pieces.zft", final);
    long na = 0, nb = 0;
    unsigned char *a = file_bytes(pa, &na), *b = file_bytes(pb, &nb);
    CHECK(a && b && na == nb && memcmp(a, b, (size_t)na) == 0, "pieces.zft equals whole.zft (%ld / %ld bytes)", na, nb);
    free(a);
    free(b);
    float *back = malloc(BIG_N * sizeof *back);
    CHECK(zf_ckpt_read_tensor(final, "pieces", back, BIG_N, &err) == 0 && !memcmp(back, big, BIG_N * sizeof *big),
          "pieces read back: %s", err.msg);
    /* ranges: inside one frame, across frames, at the ends, empty */
    const size_t rg[][2] = { { 5, 100 }, { 2000000, 1000000 }, { 0, BIG_N }, { BIG_N - 7, 7 }, { 123, 0 } };
    for (size_t k = 0; k < sizeof rg / sizeof rg[0]; k++) {
        memset(back, 0, BIG_N * sizeof *back);
        CHECK(zf_ckpt_read_tensor_range(final, "pieces", back, BIG_N, rg[k][0], rg[k][1], &err) == 0 &&
                  !memcmp(back, big + rg[k][0], rg[k][1] * sizeof *big),
              "range [%zu, +%zu) read: %s", rg[k][0], rg[k][1], err.msg);
    }
    CHECK(zf_ckpt_read_tensor_range(final, "pieces", back, BIG_N, BIG_N - 2, 3, &err) == -1 &&
              strstr(err.msg, "expected within"), "range beyond the tensor refused: %s", err.msg);
    CHECK(zf_ckpt_read_tensor_range(final, "pieces", back, BIG_N + 1, 0, 3, &err) == -1 && strstr(err.msg, "numel"),
          "range of a tensor of another size refused: %s", err.msg);
    size_t n1 = BIG_N - cut[5];
    CHECK(zf_ckpt_read_tensor(final, "one", back, n1, &err) == 0 && !memcmp(back, big + cut[5], n1 * sizeof *big),
          "one piece read back: %s", err.msg);
    free(back);
    /* adopted into another checkpoint as it is: the same file, readable
     * after the source is gone; a damaged header refused at once */
    zf_ckpt_writer *w2;
    char final2[1024];
    CHECK(zf_ckpt_begin(g_out, 301, &w2, &err) == 0, "begin 301");
    CHECK(zf_ckpt_adopt_tensor(w2, "pieces", final, &err) == 0, "adopt: %s", err.msg);
    CHECK(zf_ckpt_adopt_tensor(w2, "pieces", final, &err) == -1 && strstr(err.msg, "twice"), "adopt twice refused");
    CHECK(zf_ckpt_adopt_tensor(w2, "nope", final, &err) == -1 && strstr(err.msg, "nope.zft"), "adopt missing: %s",
          err.msg);
    CHECK(zf_ckpt_set_meta(w2, "{}", &err) == 0 && zf_ckpt_commit(w2, 0, final2, sizeof final2, &err) == 0,
          "commit 301: %s", err.msg);
    snprintf(pb, sizeof pb, "%s/pieces.zft", final2);
    b = file_bytes(pb, &nb);
    a = file_bytes(pa, &na);
    CHECK(a && b && na == nb && memcmp(a, b, (size_t)na) == 0, "adopted file equals the source");
    free(a);
    free(b);
    CHECK(zf_ckpt_remove_dir(final, &err) == 0, "remove the source: %s", err.msg);
    back = malloc(BIG_N * sizeof *back);
    CHECK(zf_ckpt_read_tensor(final2, "pieces", back, BIG_N, &err) == 0 && !memcmp(back, big, BIG_N * sizeof *big),
          "adopted tensor read back without its source: %s", err.msg);
    free(back);
    int fd = open(pb, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "X", 1, 20) == 1, "damage the header");
    if (fd >= 0) close(fd);
    CHECK(zf_ckpt_begin(g_out, 302, &w2, &err) == 0, "begin 302");
    CHECK(zf_ckpt_adopt_tensor(w2, "pieces", final2, &err) == -1 && strstr(err.msg, "header checksum"),
          "adopting a damaged tensor refused: %s", err.msg);
    zf_ckpt_abort(w2);
    free(big);
}

static void test_corruption(void)
{
    char dir[1024], path[1200], bak[1200], cmd[2600];
    zf_err err;
    snprintf(dir, sizeof dir, "%s/checkpoints/step_00000100", g_out);
    snprintf(path, sizeof path, "%s/big.zft", dir);
    snprintf(bak, sizeof bak, "%s/big.bak", g_out);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, bak);
    CHECK(system(cmd) == 0, "backup");
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", bak, path);
    float *dst = malloc(BIG_N * sizeof *dst);
    long size = file_size(path);
    long head = 56 + 3 * 8;

    /* a flipped byte inside each frame's data, in the header and in the index */
    long offs[] = {head + 1000, size / 2, size - 3, 20, 60};
    for (int k = 0; k < 5; k++) {
        flip_byte(path, offs[k]);
        int rc = zf_ckpt_read_tensor(dir, "big", dst, BIG_N, &err);
        long at = err_offset(err.msg);
        CHECK(rc == -1 && strstr(err.msg, "big.zft") && at >= 0, "flip at %ld: rc %d '%s'", offs[k], rc, err.msg);
        if (offs[k] >= head)
            CHECK(at >= offs[k] && at <= offs[k] + 300 * 1024 && strstr(err.msg, "corrupt"),
                  "flip at %ld reported at %ld: %s", offs[k], at, err.msg);
        else
            CHECK(strstr(err.msg, "checksum mismatch") != NULL, "header/index flip: %s", err.msg);
        printf("flip at %ld -> %s\n", offs[k], err.msg);
        CHECK(system(cmd) == 0, "restore");
    }
    /* truncations: inside the last frame, inside the index, inside the header */
    long cuts[] = {size - 1, size - 5000, 70, 30, 0};
    for (int k = 0; k < 5; k++) {
        CHECK(truncate(path, cuts[k]) == 0, "truncate");
        int rc = zf_ckpt_read_tensor(dir, "big", dst, BIG_N, &err);
        CHECK(rc == -1 && strstr(err.msg, "big.zft") && strstr(err.msg, "truncated") && err_offset(err.msg) == cuts[k],
              "truncated to %ld: '%s'", cuts[k], err.msg);
        printf("truncated to %ld -> %s\n", cuts[k], err.msg);
        CHECK(system(cmd) == 0, "restore");
    }
    /* trailing garbage */
    FILE *f = fopen(path, "ab");
    fputs("junk", f);
    fclose(f);
    CHECK(zf_ckpt_read_tensor(dir, "big", dst, BIG_N, &err) == -1 && strstr(err.msg, "trailing") &&
          err_offset(err.msg) == size, "trailing bytes: %s", err.msg);
    CHECK(system(cmd) == 0, "restore");
    CHECK(zf_ckpt_read_tensor(dir, "big", dst, BIG_N, &err) == 0, "restored file reads: %s", err.msg);
    /* corrupt meta.json */
    char mp[1200];
    snprintf(mp, sizeof mp, "%s/checkpoints/step_00000101/meta.json", g_out);
    f = fopen(mp, "r+");
    fputs("{{", f);
    fclose(f);
    char *txt;
    snprintf(dir, sizeof dir, "%s/checkpoints/step_00000101", g_out);
    CHECK(zf_ckpt_read_meta(dir, &txt, &err) == -1 && strstr(err.msg, "meta.json"), "corrupt meta: %s", err.msg);
    unlink(bak);
    free(dst);
}

/* The child's body: a writer for `step` that dies at `point`.  Run in a
 * freshly exec'd copy of this program: libgomp's thread pool does not
 * survive fork, so a forked child must not enter OpenMP regions. */
static int crash_child_main(long step, const char *point)
{
    zf_err err;
    zf_ckpt_writer *w;
    if (point[0] != '-') setenv("ZF_CKPT_TEST_CRASH", point, 1);
    if (zf_ckpt_begin(g_out, step, &w, &err)) return 3;
    float a[1000];
    fill(a, 1000, 999, 0);
    if (zf_ckpt_add_tensor(w, "a", a, 1000, &err)) return 4;
    if (!strcmp(point, "-between_tensors")) raise(SIGKILL);
    if (!strcmp(point, "-exit_between_tensors")) _exit(0);
    float *big = calloc(BIG_N, sizeof *big);
    if (zf_ckpt_add_tensor(w, "big", big, BIG_N, &err)) return 5;
    zf_ckpt_commit(w, 0, NULL, 0, &err);
    return 6;   /* should not get here */
}

/* fork + exec ourselves as the writer that crashes at `point`. */
static void crash_child(long step, const char *point)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char st[32];
        snprintf(st, sizeof st, "%ld", step);
        execl("/proc/self/exe", "test_ckpt", "crash-child", g_out, point, st, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    int killed = WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
    int exited = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    CHECK(killed || (exited && !strcmp(point, "-exit_between_tensors")), "child for %s: status %d", point, st);
}

static int count_tmp(void)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/checkpoints", g_out);
    DIR *d = opendir(p);
    struct dirent *e;
    int found = 0;
    while (d && (e = readdir(d))) found += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return found;
}

static void test_crash(void)
{
    char dir[1024], latest_before[1024];
    zf_err err;
    /* make step 100 the latest again */
    CHECK(write_ckpt(100, 0, latest_before, sizeof latest_before) == 0, "rewrite 100 (exchange with existing)");
    CHECK(verify_ckpt(latest_before, 100), "re-saved step 100 is the new content");
    const char *points[] = {"-between_tensors", "-exit_between_tensors", "mid_tensor", "before_rename", "before_latest"};
    for (int k = 0; k < 5; k++) {
        crash_child(200, points[k]);
        CHECK(zf_ckpt_resolve(g_out, dir, sizeof dir, &err) == 0 && !strcmp(dir, latest_before),
              "after crash at %s: latest still step 100 (%s)", points[k], err.msg);
        CHECK(verify_ckpt(dir, 100), "after crash at %s: step 100 loads", points[k]);
        /* a temp dir of the dead writer is left, except when it died after the rename */
        int want = strcmp(points[k], "before_latest") ? 1 : 0;
        CHECK(count_tmp() == want, "crash at %s: %d temp entries, expected %d", points[k], count_tmp(), want);
    }
    /* the next writer removes the stale temp dirs and completes step 200 */
    char final[1024];
    CHECK(write_ckpt(200, 0, final, sizeof final) == 0, "write 200 after crashes");
    CHECK(count_tmp() == 0, "stale temp dirs removed: %d left", count_tmp());
    CHECK(zf_ckpt_resolve(g_out, final, sizeof final, &err) == 0 && strstr(final, "step_00000200") &&
          verify_ckpt(final, 200), "step 200 is latest and complete");
}

static void test_keep_last(void)
{
    char final[1024], p[1200];
    zf_err err;
    for (long s = 300; s <= 500; s += 100) CHECK(write_ckpt(s, 2, final, sizeof final) == 0, "write %ld", s);
    long present[] = {100, 101, 200, 300, 400, 500};
    int want[] = {0, 0, 0, 0, 1, 1};
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/checkpoints/step_%08ld", g_out, present[i]);
        CHECK(exists(p) == want[i], "keep_last 2: step %ld present=%d", present[i], exists(p));
    }
    CHECK(zf_ckpt_resolve(g_out, final, sizeof final, &err) == 0 && verify_ckpt(final, 500), "latest 500");
    /* keep_last 1 keeps only the new one */
    CHECK(write_ckpt(600, 1, final, sizeof final) == 0, "write 600");
    snprintf(p, sizeof p, "%s/checkpoints/step_%08ld", g_out, 500L);
    CHECK(!exists(p) && exists(final), "keep_last 1");
}

/* The state a writer without RENAME_EXCHANGE leaves if it dies between moving
 * the old step aside and renaming the new one in: readers use the old one,
 * the next writer puts it back. */
static void test_moved_aside(void)
{
    char fin[1024], aside[1200], dir[1024];
    zf_err err;
    CHECK(zf_ckpt_resolve(g_out, fin, sizeof fin, &err) == 0, "resolve: %s", err.msg);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);   /* a dead pid */
    snprintf(aside, sizeof aside, "%s.tmp.%ld.old", fin, (long)pid);
    CHECK(rename(fin, aside) == 0, "move aside");
    CHECK(zf_ckpt_resolve(g_out, dir, sizeof dir, &err) == 0 && !strcmp(dir, aside) && verify_ckpt(dir, 600),
          "reader follows the moved-aside step: %s", err.msg);
    zf_ckpt_writer *w;
    CHECK(zf_ckpt_begin(g_out, 700, &w, &err) == 0, "begin 700");
    zf_ckpt_abort(w);
    CHECK(exists(fin) && !exists(aside) && count_tmp() == 0, "next writer restored the step");
    CHECK(zf_ckpt_resolve(g_out, dir, sizeof dir, &err) == 0 && !strcmp(dir, fin) && verify_ckpt(dir, 600), "restored");
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "crash-child")) {
        snprintf(g_out, sizeof g_out, "%s", argv[2]);
        return crash_child_main(atol(argv[4]), argv[3]);
    }
    char tmpl[256];
    zf_check_tmpdir(tmpl, sizeof tmpl, "ckpt");
    snprintf(g_out, sizeof g_out, "%s/out", tmpl);
    test_round_trip();
    test_pieces();
    test_corruption();
    test_crash();
    test_keep_last();
    test_moved_aside();
    zf_check_rm_rf(tmpl);
    return zf_check_summary("test_ckpt");
}
