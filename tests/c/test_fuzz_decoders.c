/* test_fuzz_decoders.c - seeded mutation fuzzing of every decoder of
 * untrusted bytes.
 *
 * Checks: for each decoder (bus messages zf_msg_decode; token stream files
 * zf_tokstr_open/read/read_split/verify; checkpoint tensors and meta.json
 * zf_ckpt_tensor_info/read_tensor/read_raw/read_meta; safetensors
 * zf_st_open/read_f32; DeepSpeed configs zf_ds_config_load; BPE vocab.json and
 * merges.txt zf_bpe_load, also tokenizer.json and added_tokens.json;
 * checkpoints' `latest` through zf_ckpt_resolve and meta.json's
 * optimizer.shards zf_ckpt_read_shards; Hugging Face model directories
 * zf_hf_load, config.json and the safetensors header mutated; dataset files
 * zf_dataset_resolve/foreach_doc, JSON Lines and plain text), N deterministic mutations (fixed seed, zf_rng) of
 * valid inputs made with the module's own writer: bit flips, random bytes,
 * "interesting" bytes (0, 0xff, 0x7f, 0x80, JSON punctuation), words set to
 * extremes (length fields), truncation, extension with garbage, duplicated
 * and removed ranges, stacked 1..4 deep; for the binary formats with
 * checksums (token streams, .zft) most mutants get their checksums
 * recomputed, as a crafted file would, so the field checks are reached.
 * Every call must either succeed or fail with a one-line, non-empty reason;
 * what succeeds must be usable (a decoded message re-encodes; tokens are
 * below the vocabulary size; an accepted header claims no more data than
 * LZ4 can expand its bytes to; tensors read back either exactly or not at
 * all; a loaded tokenizer round-trips a text).  Out-of-bounds reads and undefined behaviour are caught when the
 * test runs under AddressSanitizer + UBSan (tests/test_sanitizers.sh).
 *
 * Env: ZF_FUZZ_ITERS=N iterations per decoder (default: a per-decoder count
 * that keeps the test near a few seconds); ZF_FUZZ_SEED=S another seed;
 * ZF_FUZZ_ONLY=NAME one decoder (msg, tokstr, ckpt, st, ds, bpe, bpejson,
 * ckptmeta, hf, dataset);
 * ZF_FUZZ_TRACE=1 prints each iteration before running it (to find the
 * input behind a sanitizer report: the mutated file is left in the scratch
 * directory when the process dies). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "bpe.h"
#include "ckpt.h"
#include "ckpt_consolidate.h"
#include "dataset.h"
#include "ds_config.h"
#include "hash.h"
#include "hf_model.h"
#include "model.h"
#include "msg.h"
#include "rng.h"
#include "safetensors.h"
#include "token_stream.h"
#include "zf_check.h"
#include "zf_msg_samples.h"

static char g_dir[512];
static uint64_t g_seed = 0x5EEDF0220ULL;
static long g_iters_override = 0;
static int g_trace = 0;
static const char *g_only = NULL;

/* ---- helpers ------------------------------------------------------------ */

typedef struct bytes {
    uint8_t *p;
    size_t n;
} bytes;

static bytes slurp(const char *path)
{
    bytes b = {NULL, 0};
    FILE *f = fopen(path, "rb");
    if (!f) return b;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.p = malloc((size_t)len + 1);
    b.n = fread(b.p, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void spit(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    if (n && fwrite(p, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

static long iters(long dflt) { return g_iters_override > 0 ? g_iters_override : dflt; }

static int want(const char *name) { return !g_only || strcmp(g_only, name) == 0; }

/* A refusal must say why, on one line. */
static void check_reason(const char *what, long it, const zf_err *err)
{
    CHECK(err->msg[0] != 0, "%s iteration %ld: failed without a reason", what, it);
    CHECK(strchr(err->msg, '\n') == NULL, "%s iteration %ld: reason spans lines: %s", what, it, err->msg);
}

static void trace(const char *what, long it, const char *ops)
{
    if (g_trace) fprintf(stderr, "fuzz %s %ld: %s\n", what, it, ops);
}

/* Mutate a copy of src (1..4 stacked operations, each appended to ops).
 * The result is at most max_len bytes; caller frees. */
static bytes mutate(zf_rng *r, const bytes *src, size_t max_len, char *ops, size_t opsn)
{
    static const uint8_t interesting[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, '"', '{', '}', '[', ']', ',', ':',
                                          '\\', '\n', ' ', '0', '9', '-', 'e'};
    size_t cap = src->n * 2 + 4096;
    bytes b = {malloc(cap), src->n};
    memcpy(b.p, src->p, src->n);
    int nops = 1 + (int)zf_rng_below(r, 4);
    size_t ol = 0;
    ops[0] = 0;
    for (int k = 0; k < nops; k++) {
        int op = (int)zf_rng_below(r, 8);
        size_t at = b.n ? (size_t)zf_rng_below(r, b.n) : 0;
        switch (op) {
        case 0: /* flip 1..8 bits */
            if (b.n) {
                int nb = 1 + (int)zf_rng_below(r, 8);
                for (int i = 0; i < nb; i++) b.p[zf_rng_below(r, b.n)] ^= (uint8_t)(1u << zf_rng_below(r, 8));
            }
            break;
        case 1: /* 1..8 random bytes */
            if (b.n) {
                size_t len = 1 + zf_rng_below(r, 8);
                for (size_t i = 0; i < len && at + i < b.n; i++) b.p[at + i] = (uint8_t)zf_rng_u64(r);
            }
            break;
        case 2: /* an interesting byte */
            if (b.n) b.p[at] = interesting[zf_rng_below(r, sizeof interesting)];
            break;
        case 3: /* truncate */
            b.n = b.n ? (size_t)zf_rng_below(r, b.n) : 0;
            break;
        case 4: { /* extend with garbage */
            size_t len = 1 + zf_rng_below(r, 64);
            if (b.n + len > cap) break;
            for (size_t i = 0; i < len; i++) b.p[b.n + i] = (uint8_t)zf_rng_u64(r);
            b.n += len;
            break;
        }
        case 5: { /* duplicate a range in place */
            if (!b.n) break;
            size_t len = 1 + zf_rng_below(r, b.n - at < 64 ? b.n - at : 64);
            if (b.n + len > cap) break;
            memmove(b.p + at + len, b.p + at, b.n - at);
            b.n += len;
            break;
        }
        case 6: { /* remove a range */
            if (!b.n) break;
            size_t len = 1 + zf_rng_below(r, b.n - at < 64 ? b.n - at : 64);
            memmove(b.p + at, b.p + at + len, b.n - at - len);
            b.n -= len;
            break;
        }
        default: /* a little-endian word set to an extreme (length fields) */
            if (b.n >= 8) {
                /* half the time an aligned word of the first 128 bytes:
                 * where the binary formats keep their sizes */
                size_t lim = b.n - 7 < 128 ? b.n - 7 : 128;
                size_t w = zf_rng_below(r, 2) ? zf_rng_below(r, lim) & ~(size_t)3 : zf_rng_below(r, b.n - 7);
                static const uint64_t vals[] = {0, 1, 0x7f, 0xff, 0xffff, 0x7fffffff, 0xffffffff, 0x100000000ULL,
                                                UINT64_MAX, INT64_MAX, 0x8000000000000000ULL};
                uint64_t v = vals[zf_rng_below(r, sizeof vals / sizeof *vals)];
                int width = zf_rng_below(r, 2) ? 8 : 4;
                for (int i = 0; i < width; i++) b.p[w + i] = (uint8_t)(v >> (8 * i));
                at = w;
            }
            break;
        }
        if (ol < opsn) ol += (size_t)snprintf(ops + ol, opsn - ol, "%sop%d@%zu", k ? "," : "", op, at);
    }
    if (b.n > max_len) b.n = max_len;
    return b;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the checksums of every token stream segment header (and its
 * seek index, where it lies inside the file), as a crafted file would, so
 * that the field checks behind them are reached. */
static void fix_tokstr_sums(bytes *b)
{
    uint64_t off = 0;
    while (off + ZF_TOKSTR_HEADER_BYTES <= b->n) {
        uint8_t *h = b->p + off;
        uint64_t d = le64(h + 72), bb = le64(h + 80), ib = le64(h + 88), left = b->n - off - ZF_TOKSTR_HEADER_BYTES;
        int fits = d <= left && bb <= left - d && ib <= left - d - bb;
        if (fits) put_le32(h + 96, zf_fnv1a32(h + ZF_TOKSTR_HEADER_BYTES + d + bb, (size_t)ib));
        put_le32(h + 100, zf_fnv1a32(h, 100));
        if (!fits) break;
        off += ZF_TOKSTR_HEADER_BYTES + d + bb + ib;
    }
}

/* The same for a checkpoint tensor file (.zft): header and frame index. */
static void fix_zft_sums(bytes *b)
{
    if (b->n < 56) return;
    uint64_t nf = b->p[40] | (uint64_t)b->p[41] << 8 | (uint64_t)b->p[42] << 16 | (uint64_t)b->p[43] << 24;
    if (56 + nf * 8 <= b->n) put_le32(b->p + 44, zf_fnv1a32(b->p + 56, (size_t)nf * 8));
    put_le32(b->p + 48, zf_fnv1a32(b->p, 48));
}

/* ---- bus messages ------------------------------------------------------- */

static void fuzz_msg(void)
{
    int ntypes = zf_msg_type_count();
    bytes *seeds = calloc((size_t)ntypes * 2, sizeof *seeds);
    int nseeds = 0;
    zf_err err;
    for (int t = 0; t < ntypes; t++)
        for (int all = 0; all < 2; all++) {
            zf_msg *m = zf_sample_msg(zf_msg_type_name(t), all, t);
            void *buf;
            size_t len;
            if (zf_msg_encode(m, &buf, &len, &err) == 0) seeds[nseeds++] = (bytes){buf, len};
            else CHECK(0, "encode %s: %s", zf_msg_type_name(t), err.msg);
            zf_msg_free(m);
        }
    CHECK(nseeds >= 4, "only %d message seeds", nseeds);
    zf_rng r;
    zf_rng_seed(&r, g_seed, 1);
    long n = iters(100000), ok = 0;
    char ops[256];
    double t0 = zf_now();
    for (long it = 0; it < n && nseeds; it++) {
        bytes in = mutate(&r, &seeds[zf_rng_below(&r, (uint64_t)nseeds)], ZF_MSG_MAX_BYTES, ops, sizeof ops);
        trace("msg", it, ops);
        /* an exact-size copy, so ASan sees any read past the end */
        uint8_t *exact = malloc(in.n ? in.n : 1);
        memcpy(exact, in.p, in.n);
        zf_msg *m = NULL;
        err.msg[0] = 0;
        if (zf_msg_decode(exact, in.n, &m, &err) == 0) {
            ok++;
            void *buf = NULL;
            size_t len;
            CHECK(zf_msg_encode(m, &buf, &len, &err) == 0, "msg %ld: decoded message does not re-encode: %s", it,
                  err.msg);
            char *js = zf_msg_to_json(m);
            CHECK(js && js[0] == '{', "msg %ld: json", it);
            free(js);
            free(buf);
            zf_msg_free(m);
        } else {
            CHECK(m == NULL, "msg %ld: failure left a message", it);
            check_reason("msg", it, &err);
        }
        free(exact);
        free(in.p);
    }
    printf("msg: %ld mutations (%ld decoded) in %.2f s\n", n, ok, zf_now() - t0);
    for (int i = 0; i < nseeds; i++) free(seeds[i].p);
    free(seeds);
}

/* ---- token streams ------------------------------------------------------ */

static void fuzz_tokstr(void)
{
    zf_tokstr_vocab v = {0x1234abcdULL, 300, 299};
    char path[600], fz[600];
    path_of(path, sizeof path, "orig.tokstr");
    path_of(fz, sizeof fz, "fuzz.tokstr");
    zf_err err;
    zf_tokstr_writer *w;
    zf_rng r;
    zf_rng_seed(&r, g_seed, 2);
    /* three splits (validation empty), several frames each (chunk 16) */
    int32_t tok[200];
    uint64_t ends[40];
    if (zf_tokstr_create(path, &v, 3, 16, &w, &err) != 0) {
        CHECK(0, "create: %s", err.msg);
        return;
    }
    int rc = 0;
    for (int s = 0; s < 3 && rc == 0; s++) {
        uint64_t nt = 0, nd = 0;
        int ndocs = s == 1 ? 0 : 5 + 3 * s;
        for (int d = 0; d < ndocs; d++) {
            int len = 1 + (int)zf_rng_below(&r, 12);
            for (int i = 0; i < len - 1; i++) tok[nt++] = (int32_t)zf_rng_below(&r, 299);
            tok[nt++] = 299;
            ends[nd++] = nt;
        }
        rc = zf_tokstr_append(w, s, tok, nt, ends, nd, &err);
    }
    if (rc != 0 || zf_tokstr_finish(w, &err) != 0) {
        if (rc) zf_tokstr_abort(w);
        CHECK(0, "write stream: %s", err.msg);
        return;
    }
    bytes orig = slurp(path);
    long n = iters(6000), ok = 0;
    char ops[256];
    double t0 = zf_now();
    for (long it = 0; it < n; it++) {
        bytes in = mutate(&r, &orig, (size_t)1 << 20, ops, sizeof ops);
        if (zf_rng_below(&r, 4)) fix_tokstr_sums(&in);
        trace("tokstr", it, ops);
        spit(fz, in.p, in.n);
        size_t in_n = in.n;
        free(in.p);
        zf_tokstr *ts = NULL;
        err.msg[0] = 0;
        if (zf_tokstr_open(fz, NULL, "fuzz", &ts, &err) != 0) {
            check_reason("tokstr open", it, &err);
            continue;
        }
        ok++;
        uint32_t vsize = zf_tokstr_vocab_of(ts)->size;
        for (int s = 0; s < ZF_TOKSTR_SPLITS; s++)
            CHECK((double)zf_tokstr_ntokens(ts, s) * 2.0 <= (double)in_n * 300.0 + 4096,
                  "tokstr %ld: %zu-byte file accepted with %" PRIu64 " tokens", it, in_n, zf_tokstr_ntokens(ts, s));
        for (int s = 0; s < ZF_TOKSTR_SPLITS; s++) {
            uint64_t nt = zf_tokstr_ntokens(ts, s), nd = zf_tokstr_ndocs(ts, s);
            if (nt > (1u << 20) || nd > (1u << 20)) continue; /* headers may claim much; do not allocate it */
            int32_t *t = malloc((nt + 1) * sizeof *t);
            uint64_t *e = malloc((nd + 1) * sizeof *e);
            err.msg[0] = 0;
            if (zf_tokstr_read_split(ts, s, t, e, &err) == 0) {
                for (uint64_t i = 0; i < nt; i++)
                    CHECK(t[i] >= 0 && (uint32_t)t[i] < vsize, "tokstr %ld: id %d beyond vocab %u", it, t[i], vsize);
            } else {
                check_reason("tokstr read_split", it, &err);
            }
            if (nt) {
                uint64_t first = zf_rng_below(&r, nt), cnt = 1 + zf_rng_below(&r, nt - first);
                err.msg[0] = 0;
                if (zf_tokstr_read(ts, s, first, cnt, t, &err) == 0) {
                    for (uint64_t i = 0; i < cnt; i++)
                        CHECK(t[i] >= 0 && (uint32_t)t[i] < vsize, "tokstr %ld: seek id %d", it, t[i]);
                } else {
                    check_reason("tokstr read", it, &err);
                }
            }
            free(t);
            free(e);
        }
        err.msg[0] = 0;
        if (zf_tokstr_verify(ts, &err) != 0) check_reason("tokstr verify", it, &err);
        zf_tokstr_close(ts);
    }
    printf("tokstr: %ld mutations (%ld opened) in %.2f s\n", n, ok, zf_now() - t0);
    /* Regression: a sparse file (a few KiB on disk) whose one consistent
     * segment claims a 2^28-byte document table frame holding 2^33
     * documents (64 GiB decoded, within LZ4's 260x): verify allocated the
     * claim with zf_xmalloc and the process died; now a one-line error. */
    {
        const uint64_t D = (uint64_t)1 << 28, FB = (uint64_t)1 << 21, NF = 32, CH = (uint64_t)1 << 28;
        uint8_t h[ZF_TOKSTR_HEADER_BYTES], idx[32 * 24];
        memset(h, 0, sizeof h);
        memcpy(h, ZF_TOKSTR_MAGIC, 8);
        put_le32(h + 8, ZF_TOKSTR_VERSION);
        put_le32(h + 12, ZF_TOKSTR_HEADER_BYTES);
        put_le64(h + 16, v.hash);
        put_le32(h + 24, v.size);
        put_le32(h + 28, (uint32_t)v.eot);
        put_le32(h + 32, 2);
        put_le32(h + 44, 1);
        put_le64(h + 48, NF * CH);
        put_le64(h + 56, NF * CH);
        put_le64(h + 64, CH);
        put_le64(h + 72, D);
        put_le64(h + 80, NF * FB);
        put_le64(h + 88, sizeof idx);
        for (uint64_t f = 0; f < NF; f++) {
            put_le64(idx + f * 24, f * CH);
            put_le64(idx + f * 24 + 8, ZF_TOKSTR_HEADER_BYTES + D + f * FB);
            put_le64(idx + f * 24 + 16, FB);
        }
        put_le32(h + 96, zf_fnv1a32(idx, sizeof idx));
        put_le32(h + 100, zf_fnv1a32(h, 100));
        int fd = open(fz, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0 && pwrite(fd, h, sizeof h, 0) == (ssize_t)sizeof h &&
                  pwrite(fd, idx, sizeof idx, (off_t)(sizeof h + D + NF * FB)) == (ssize_t)sizeof idx,
              "write sparse %s", fz);
        if (fd >= 0) close(fd);
        zf_tokstr *ts = NULL;
        err.msg[0] = 0;
        if (zf_tokstr_open(fz, NULL, "fuzz", &ts, &err) == 0) {
            err.msg[0] = 0;
            CHECK(zf_tokstr_verify(ts, &err) == -1 && strstr(err.msg, "document table") && !strchr(err.msg, '\n'),
                  "tokstr claiming a 64 GiB document table: verify gave '%s'", err.msg);
            zf_tokstr_close(ts);
        } else {
            check_reason("tokstr sparse open", -1, &err);
        }
    }
    free(orig.p);
    unlink(path);
    unlink(fz);
}

/* ---- checkpoints -------------------------------------------------------- */

static void fuzz_ckpt(void)
{
    char out[600], step[700];
    path_of(out, sizeof out, "ckpt");
    zf_err err;
    zf_ckpt_writer *w;
    float a[257];
    uint16_t h[100];
    for (int i = 0; i < 257; i++) a[i] = (float)(i % 17) * 0.5f - 3.0f;
    for (int i = 0; i < 100; i++) h[i] = (uint16_t)(i * 7);
    if (zf_ckpt_begin(out, 5, &w, &err) != 0) {
        CHECK(0, "begin: %s", err.msg);
        return;
    }
    if (zf_ckpt_add_tensor(w, "a", a, 257, &err) || zf_ckpt_add_raw(w, "h", ZF_DTYPE_F16, h, 100, &err) ||
        zf_ckpt_add_tensor(w, "empty", NULL, 0, &err) ||
        zf_ckpt_set_meta(w, "{\"trainer\": {\"step\": 5, \"tokens\": 640}, \"rng\": [1, 2, 3], \"s\": \"x\\u00e9\"}",
                         &err) ||
        zf_ckpt_commit(w, 0, step, sizeof step, &err)) {
        CHECK(0, "write checkpoint: %s", err.msg);
        return;
    }
    static const char *const files[] = {"a.zft", "h.zft", "empty.zft", "meta.json"};
    bytes orig[4];
    char paths[4][800];
    for (int i = 0; i < 4; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", step, files[i]);
        orig[i] = slurp(paths[i]);
        CHECK(orig[i].p != NULL, "read %s", paths[i]);
        if (!orig[i].p) return;
    }
    zf_rng r;
    zf_rng_seed(&r, g_seed, 3);
    long n = iters(8000), ok = 0;
    char ops[256];
    float dst[257];
    uint16_t hd[100];
    double t0 = zf_now();
    for (long it = 0; it < n; it++) {
        int fi = (int)zf_rng_below(&r, 4);
        bytes in = mutate(&r, &orig[fi], (size_t)1 << 20, ops, sizeof ops);
        if (fi < 3 && zf_rng_below(&r, 4)) fix_zft_sums(&in);
        trace(files[fi], it, ops);
        spit(paths[fi], in.p, in.n);
        size_t in_n = in.n;
        free(in.p);
        int good = 0;
        if (fi == 3) {
            char *js = NULL;
            err.msg[0] = 0;
            if (zf_ckpt_read_meta(step, &js, &err) == 0) good = js != NULL;
            else check_reason("ckpt read_meta", it, &err);
            free(js);
        } else {
            const char *name = fi == 0 ? "a" : fi == 1 ? "h" : "empty";
            zf_dtype dt;
            size_t numel = 0;
            err.msg[0] = 0;
            if (zf_ckpt_tensor_info(step, name, &dt, &numel, &err) == 0) {
                good = 1;
                /* LZ4 expands at most ~255x: a header claiming more raw
                 * bytes than its frames can hold must be refused */
                double raw = (double)numel * (double)zf_dtype_size(dt);
                CHECK(raw <= (double)in_n * 300.0 + 4096, "ckpt %ld: %s.zft of %zu bytes accepted with %zu elements",
                      it, name, in_n, numel);
            } else {
                check_reason("ckpt tensor_info", it, &err);
            }
            err.msg[0] = 0;
            int rc = fi == 1 ? zf_ckpt_read_raw(step, name, ZF_DTYPE_F16, hd, 100, &err)
                             : zf_ckpt_read_tensor(step, name, dst, fi == 0 ? 257 : 0, &err);
            if (rc != 0) check_reason("ckpt read_tensor", it, &err);
            else if (fi == 0) CHECK(memcmp(dst, a, sizeof a) == 0, "ckpt %ld: a.zft read wrong values silently", it);
            else if (fi == 1) CHECK(memcmp(hd, h, sizeof h) == 0, "ckpt %ld: h.zft read wrong values silently", it);
            /* a differently sized reader must not write past its buffer */
            if (fi == 0 && numel > 0 && numel <= 257) {
                err.msg[0] = 0;
                if (zf_ckpt_read_tensor(step, name, dst, numel, &err) != 0) check_reason("ckpt read n", it, &err);
            }
        }
        ok += good;
        spit(paths[fi], orig[fi].p, orig[fi].n);
    }
    printf("ckpt: %ld mutations (%ld accepted headers/meta) in %.2f s\n", n, ok, zf_now() - t0);
    /* Regression: f32, numel 2^62-1 (raw 2^64-4), chunk 8: ceil(raw / chunk)
     * computed as (raw + chunk - 1) / chunk wrapped to 0 frames, so a 56-byte
     * file passed as a tensor of 2^62-1 elements. */
    {
        uint8_t h[56] = "ZFTENSOR";
        put_le32(h + 8, 1);
        put_le32(h + 12, ZF_DTYPE_F32);
        for (int i = 0; i < 8; i++) {
            h[16 + i] = (uint8_t)((((uint64_t)1 << 62) - 1) >> (8 * i));
            h[24 + i] = (uint8_t)((UINT64_MAX - 3) >> (8 * i));
        }
        h[32] = 8;
        bytes b = {h, sizeof h};
        fix_zft_sums(&b);
        spit(paths[0], h, sizeof h);
        zf_dtype dt;
        size_t numel = 0;
        err.msg[0] = 0;
        CHECK(zf_ckpt_tensor_info(step, "a", &dt, &numel, &err) == -1 && strstr(err.msg, "nframes"),
              "zft with 0 frames for 2^64-4 raw bytes: numel %zu, %s", numel, err.msg);
        spit(paths[0], orig[0].p, orig[0].n);
    }
    for (int i = 0; i < 4; i++) free(orig[i].p);
}

/* ---- safetensors -------------------------------------------------------- */

static void fuzz_st(void)
{
    char path[600], fz[600];
    path_of(path, sizeof path, "orig.safetensors");
    path_of(fz, sizeof fz, "fuzz.safetensors");
    float f[24];
    uint16_t hf[6], bf[5];
    int64_t i64[3] = {1, -2, 3};
    for (int i = 0; i < 24; i++) f[i] = (float)i * 0.125f;
    for (int i = 0; i < 6; i++) hf[i] = zf_f32_to_f16((float)i);
    for (int i = 0; i < 5; i++) bf[i] = zf_f32_to_bf16((float)-i);
    zf_st_entry e[4] = {
        {"w.weight", ZF_ST_F32, 3, {2, 3, 4}, f},
        {"h.bias", ZF_ST_F16, 2, {2, 3}, hf},
        {"b", ZF_ST_BF16, 1, {5}, bf},
        {"ids", ZF_ST_I64, 1, {3}, i64},
    };
    zf_err err;
    if (zf_st_write(path, e, 4, &err) != 0) {
        CHECK(0, "st write: %s", err.msg);
        return;
    }
    bytes orig = slurp(path);
    zf_rng r;
    zf_rng_seed(&r, g_seed, 4);
    long n = iters(15000), ok = 0;
    char ops[256];
    double t0 = zf_now();
    for (long it = 0; it < n; it++) {
        bytes in = mutate(&r, &orig, (size_t)1 << 20, ops, sizeof ops);
        trace("st", it, ops);
        spit(fz, in.p, in.n);
        free(in.p);
        zf_st_file sf;
        err.msg[0] = 0;
        if (zf_st_open(fz, &sf, &err) != 0) {
            check_reason("st open", it, &err);
            zf_st_close(&sf);
            continue;
        }
        ok++;
        for (int i = 0; i < sf.count; i++) {
            const zf_st_tensor *t = &sf.t[i];
            CHECK(t->begin <= t->end && t->end <= sf.data_size, "st %ld: tensor %d range [%zu, %zu) beyond %zu", it, i,
                  t->begin, t->end, sf.data_size);
            CHECK(zf_st_find(&sf, t->name) != NULL, "st %ld: find %s", it, t->name);
            if (t->numel > (1u << 20)) continue;
            float *dst = malloc((t->numel + 1) * sizeof *dst);
            err.msg[0] = 0;
            if (zf_st_read_f32(&sf, t, dst, &err) != 0) check_reason("st read_f32", it, &err);
            free(dst);
        }
        zf_st_close(&sf);
    }
    printf("st: %ld mutations (%ld opened) in %.2f s\n", n, ok, zf_now() - t0);
    free(orig.p);
    unlink(path);
    unlink(fz);
}

/* ---- DeepSpeed configs -------------------------------------------------- */

static const char g_ds_text[] =
    "{\n"
    "  \"train_batch_size\": 16,\n"
    "  \"train_micro_batch_size_per_gpu\": \"auto\",\n"
    "  \"gradient_accumulation_steps\": 2,\n"
    "  \"gradient_clipping\": 1.0,\n"
    "  \"steps_per_print\": 5,\n"
    "  \"wall_clock_breakdown\": false,\n"
    "  \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 3e-4, \"betas\": [0.9, 0.95], \"eps\": 1e-8,"
    " \"weight_decay\": 0.1}},\n"
    "  \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"warmup_min_lr\": 0, \"warmup_max_lr\": 3e-4,"
    " \"warmup_num_steps\": 10, \"total_num_steps\": 100}},\n"
    "  \"fp16\": {\"enabled\": true, \"loss_scale\": 0, \"initial_scale_power\": 12, \"loss_scale_window\": 500,"
    " \"hysteresis\": 2, \"min_loss_scale\": 1},\n"
    "  \"zero_optimization\": {\"stage\": 3, \"overlap_comm\": true, \"contiguous_gradients\": true,"
    " \"reduce_bucket_size\": 5e8, \"stage3_prefetch_bucket_size\": 5e7,"
    " \"stage3_param_persistence_threshold\": 1e5, \"stage3_max_live_parameters\": 1e9,"
    " \"stage3_gather_16bit_weights_on_model_save\": true,"
    " \"offload_optimizer\": {\"device\": \"cpu\", \"pin_memory\": true},"
    " \"offload_param\": {\"device\": \"cpu\", \"pin_memory\": false}},\n"
    "  \"activation_checkpointing\": {\"partition_activations\": false, \"cpu_checkpointing\": false},\n"
    "  \"tensorboard\": {\"enabled\": false}\n"
    "}\n";

static void fuzz_ds(void)
{
    char fz[600];
    path_of(fz, sizeof fz, "ds.json");
    zf_err err;
    zf_ds_config *c = malloc(sizeof *c);
    spit(fz, (const uint8_t *)g_ds_text, strlen(g_ds_text));
    if (zf_ds_config_load(fz, c, &err) != 0) {
        CHECK(0, "ds seed config does not load: %s", err.msg);
        free(c);
        return;
    }
    bytes orig = {(uint8_t *)g_ds_text, strlen(g_ds_text)};
    zf_rng r;
    zf_rng_seed(&r, g_seed, 5);
    long n = iters(15000), ok = 0;
    char ops[256];
    double t0 = zf_now();
    for (long it = 0; it < n; it++) {
        bytes in = mutate(&r, &orig, (size_t)1 << 20, ops, sizeof ops);
        trace("ds", it, ops);
        spit(fz, in.p, in.n);
        free(in.p);
        err.msg[0] = 0;
        if (zf_ds_config_load(fz, c, &err) != 0) {
            check_reason("ds load", it, &err);
            continue;
        }
        ok++;
        CHECK(c->n_warnings >= 0 && c->n_warnings <= ZF_DS_MAX_WARNINGS, "ds %ld: %d warnings", it, c->n_warnings);
        err.msg[0] = 0;
        if (zf_ds_config_resolve_batch(c, 4, 2, &err) != 0) check_reason("ds resolve", it, &err);
    }
    printf("ds: %ld mutations (%ld loaded) in %.2f s\n", n, ok, zf_now() - t0);
    free(c);
    unlink(fz);
}

/* ---- BPE vocabularies --------------------------------------------------- */

/* Byte-level string of text (each byte as its alphabet character, UTF-8). */
static void bl(const char *text, char *out)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        uint32_t cp = zf_byte_to_unicode(*p);
        if (cp < 0x80) *out++ = (char)cp;
        else {
            *out++ = (char)(0xC0 | cp >> 6);
            *out++ = (char)(0x80 | (cp & 63));
        }
    }
    *out = 0;
}


/* "{" and the 256 byte symbols of a GPT-2 vocab.json ("SYM": BYTE, ...),
 * written at o; returns the end. */
static char *byte_symbols(char *o)
{
    o += sprintf(o, "{");
    for (int c = 0; c < 256; c++) {
        char one[2] = {(char)c, 0}, b[8];
        if (c == 0) strcpy(b, "\xc4\x80");
        else bl(one, b);
        if (!strcmp(b, "\"") || !strcmp(b, "\\")) o += sprintf(o, "\"\\%s\": %d, ", b, c);
        else o += sprintf(o, "\"%s\": %d, ", b, c);
    }
    return o;
}

/* Loads dir, round-trips the text when the tokenizer has every byte. */
static void bpe_use(const char *what, long it, const char *dir, long *ok)
{
    static const char text[] = "hello there<|endoftext|> the\xff\xfe ll\xc3\xa9o \n\n";
    zf_err err;
    zf_bpe *b = NULL;
    err.msg[0] = 0;
    if (zf_bpe_load(dir, &b, &err) != 0) {
        CHECK(b == NULL, "%s %ld: failure left a tokenizer", what, it);
        check_reason(what, it, &err);
        return;
    }
    ++*ok;
    zf_ids ids = {0};
    int all_bytes = 1;
    for (int c = 0; c < 256 && all_bytes; c++) {
        char ch = (char)c;
        ids.len = 0;
        all_bytes = zf_bpe_encode(b, &ch, 1, 0, &ids, &err) == 0 && ids.len == 1;
    }
    ids.len = 0;
    err.msg[0] = 0;
    if (zf_bpe_encode(b, text, sizeof text - 1, 1, &ids, &err) == 0) {
        for (size_t i = 0; i < ids.len; i++)
            CHECK(ids.data[i] >= 0 && ids.data[i] < zf_bpe_vocab_size(b), "%s %ld: id %d beyond vocab %d", what, it,
                  ids.data[i], zf_bpe_vocab_size(b));
        char *back = NULL;
        size_t blen = 0;
        err.msg[0] = 0;
        if (zf_bpe_decode(b, ids.data, ids.len, &back, &blen, &err) == 0)
            CHECK(!all_bytes || (blen == sizeof text - 1 && memcmp(back, text, blen) == 0),
                  "%s %ld: decode(encode(x)) != x (%zu bytes)", what, it, blen);
        else check_reason("bpe decode", it, &err);
        free(back);
    } else {
        check_reason("bpe encode", it, &err);
    }
    zf_ids_free(&ids);
    zf_bpe_free(b);
}

static void fuzz_bpe(void)
{
    char dir[600], vp[700], mp[700];
    path_of(dir, sizeof dir, "bpe");
    snprintf(vp, sizeof vp, "%s/vocab.json", dir);
    snprintf(mp, sizeof mp, "%s/merges.txt", dir);
    if (mkdir(dir, 0700) != 0) {
        CHECK(0, "mkdir %s", dir);
        return;
    }
    /* the 256 byte symbols, a few merges, <|endoftext|> */
    static const char *const merges[][2] = {{"h", "e"}, {" ", "t"}, {" t", "he"}, {"l", "l"}, {"o", " "}, {"ll", "o "}};
    const int nm = (int)(sizeof merges / sizeof *merges);
    char *v = malloc(1 << 15), *o = v, *m = malloc(4096), *mo = m;
    o = byte_symbols(o);
    mo += sprintf(mo, "#version: 0.2\n");
    for (int i = 0; i < nm; i++) {
        char l[16], rr[16];
        bl(merges[i][0], l);
        bl(merges[i][1], rr);
        o += sprintf(o, "\"%s%s\": %d, ", l, rr, 256 + i);
        mo += sprintf(mo, "%s %s\n", l, rr);
    }
    sprintf(o, "\"<|endoftext|>\": %d}", 256 + nm);
    bytes orig[2] = {{(uint8_t *)v, strlen(v)}, {(uint8_t *)m, strlen(m)}};
    const char *paths[2] = {vp, mp};
    spit(vp, orig[0].p, orig[0].n);
    spit(mp, orig[1].p, orig[1].n);
    zf_err err;
    zf_bpe *b = NULL;
    if (zf_bpe_load(dir, &b, &err) != 0) {
        CHECK(0, "bpe seed vocabulary does not load: %s", err.msg);
        return;
    }
    zf_bpe_free(b);
    zf_rng r;
    zf_rng_seed(&r, g_seed, 6);
    long n = iters(1500), ok = 0;
    char ops[256];
    double t0 = zf_now();
    for (long it = 0; it < n; it++) {
        int fi = (int)zf_rng_below(&r, 2);
        bytes in = mutate(&r, &orig[fi], (size_t)1 << 20, ops, sizeof ops);
        trace(fi ? "merges.txt" : "vocab.json", it, ops);
        spit(paths[fi], in.p, in.n);
        free(in.p);
        bpe_use("bpe", it, dir, &ok);
        spit(paths[fi], orig[fi].p, orig[fi].n);
    }
    printf("bpe: %ld mutations (%ld loaded) in %.2f s\n", n, ok, zf_now() - t0);
    free(v);
    free(m);
    unlink(vp);
    unlink(mp);
    rmdir(dir);
}

/* ---- BPE tokenizer.json and added_tokens.json -------------------------- */

static void fuzz_bpe_json(void)
{
    char dir[600], tp[700], dir2[600], vp[700], mp[700], ap[700];
    path_of(dir, sizeof dir, "bpej");
    path_of(dir2, sizeof dir2, "bpea");
    snprintf(tp, sizeof tp, "%s/tokenizer.json", dir);
    snprintf(vp, sizeof vp, "%s/vocab.json", dir2);
    snprintf(mp, sizeof mp, "%s/merges.txt", dir2);
    snprintf(ap, sizeof ap, "%s/added_tokens.json", dir2);
    if (mkdir(dir, 0700) != 0 || mkdir(dir2, 0700) != 0) {
        CHECK(0, "mkdir %s", dir);
        return;
    }
    static const char *const merges[][2] = {{"h", "e"}, {" ", "t"}, {" t", "he"}, {"l", "l"}, {"o", " "}, {"ll", "o "}};
    const int nm = (int)(sizeof merges / sizeof *merges);
    char *vocab = malloc(1 << 15), *o = vocab, *mj = malloc(4096), *mjo = mj, *mt = malloc(4096), *mto = mt;
    o = byte_symbols(o);
    mto += sprintf(mto, "#version: 0.2\n");
    for (int i = 0; i < nm; i++) {
        char l[16], rr[16];
        bl(merges[i][0], l);
        bl(merges[i][1], rr);
        o += sprintf(o, "\"%s%s\": %d%s", l, rr, 256 + i, i + 1 < nm ? ", " : "}");
        /* both merge spellings: "l r" and ["l", "r"] */
        mjo += sprintf(mjo, i % 2 ? "%s[\"%s\", \"%s\"]" : "%s\"%s %s\"", i ? ", " : "", l, rr);
        mto += sprintf(mto, "%s %s\n", l, rr);
    }
    char *tj = malloc(1 << 16);
    snprintf(tj, 1 << 16,
             "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [{\"id\": %d, "
             "\"content\": \"<|endoftext|>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
             "\"normalized\": true, \"special\": true}, {\"id\": %d, \"content\": \"<|pad|>\", \"single_word\": false, "
             "\"lstrip\": true, \"rstrip\": false, \"normalized\": false, \"special\": true}], \"normalizer\": null, "
             "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
             "\"use_regex\": true}, \"post_processor\": null, \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": "
             "{\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, "
             "\"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false, "
             "\"vocab\": %s, \"merges\": [%s]}}",
             256 + nm, 257 + nm, vocab, mj);
    char vj[1 << 15];
    snprintf(vj, sizeof vj, "%.*s, \"<|endoftext|>\": %d}", (int)strlen(vocab) - 1, vocab, 256 + nm);
    static const char added[] = "{\"<|pad|>\": 263, \"<|sep|>\": 264, \"\\u00e9t\\u00e9\": 265}";
    spit(tp, (const uint8_t *)tj, strlen(tj));
    spit(vp, (const uint8_t *)vj, strlen(vj));
    spit(mp, (const uint8_t *)mt, strlen(mt));
    spit(ap, (const uint8_t *)added, strlen(added));
    zf_err err;
    zf_bpe *b = NULL;
    for (int k = 0; k < 2; k++) {
        if (zf_bpe_load(k ? dir2 : dir, &b, &err) != 0) {
            CHECK(0, "bpe seed %s does not load: %s", k ? ap : tp, err.msg);
            return;
        }
        CHECK(zf_bpe_vocab_size(b) == (k ? 266 : 264), "seed %d: vocab size %d", k, zf_bpe_vocab_size(b));
        zf_bpe_free(b);
    }
    bytes orig[2] = {{(uint8_t *)tj, strlen(tj)}, {(uint8_t *)added, strlen(added)}};
    zf_rng r;
    zf_rng_seed(&r, g_seed, 7);
    long n = iters(1500), ok = 0;
    char ops[256];
    double t0 = zf_now();
    for (long it = 0; it < n; it++) {
        int fi = (int)zf_rng_below(&r, 2);
        bytes in = mutate(&r, &orig[fi], (size_t)1 << 20, ops, sizeof ops);
        trace(fi ? "added_tokens.json" : "tokenizer.json", it, ops);
        spit(fi ? ap : tp, in.p, in.n);
        free(in.p);
        bpe_use(fi ? "bpe added_tokens.json" : "bpe tokenizer.json", it, fi ? dir2 : dir, &ok);
        spit(fi ? ap : tp, orig[fi].p, orig[fi].n);
    }
    printf("bpe json: %ld mutations (%ld loaded) in %.2f s\n", n, ok, zf_now() - t0);
    free(vocab);
    free(mj);
    free(mt);
    free(tj);
    unlink(tp);
    unlink(vp);
    unlink(mp);
    unlink(ap);
    rmdir(dir);
    rmdir(dir2);
}

/* ---- checkpoints: latest, zf_ckpt_resolve, optimizer.shards ----------- */

static void fuzz_ckpt_meta(void)
{
    char out[600], step[700], root[700], latest[800], meta[800];
    path_of(out, sizeof out, "ckptm");
    snprintf(root, sizeof root, "%s/checkpoints", out);
    snprintf(latest, sizeof latest, "%s/latest", root);
    zf_err err;
    zf_ckpt_writer *w;
    if (zf_ckpt_begin(out, 7, &w, &err) != 0 ||
        zf_ckpt_set_meta(w,
                         "{\"world_size\": 3, \"optimizer\": {\"shards\": [{\"rank\": 0, \"offset\": 0, \"numel\": 40},"
                         " {\"rank\": 2, \"offset\": 80, \"numel\": 20}, {\"rank\": 1, \"offset\": 40, \"numel\": 40}]},"
                         " \"trainer\": {\"step\": 7}}",
                         &err) ||
        zf_ckpt_commit(w, 0, step, sizeof step, &err)) {
        CHECK(0, "write checkpoint: %s", err.msg);
        return;
    }
    snprintf(meta, sizeof meta, "%s/meta.json", step);
    bytes orig[2] = {slurp(latest), slurp(meta)};
    CHECK(orig[0].p && orig[1].p, "read %s, %s", latest, meta);
    if (!orig[0].p || !orig[1].p) return;
    const char *paths[2] = {latest, meta};
    zf_rng r;
    zf_rng_seed(&r, g_seed, 8);
    long n = iters(2500), ok = 0;
    char ops[256], got[1024];
    double t0 = zf_now();
    for (long it = 0; it < n; it++) {
        int fi = (int)zf_rng_below(&r, 2);
        bytes in = mutate(&r, &orig[fi], (size_t)1 << 16, ops, sizeof ops);
        trace(fi ? "ckpt meta.json shards" : "ckpt latest", it, ops);
        spit(paths[fi], in.p, in.n);
        free(in.p);
        /* resolving the output dir, the checkpoints dir, the step dir */
        const char *from[3] = {out, root, step};
        for (int k = 0; k < 3; k++) {
            err.msg[0] = 0;
            got[0] = 0;
            if (zf_ckpt_resolve(from[k], got, sizeof got, &err) == 0) {
                if (k == 2) CHECK(strcmp(got, step) == 0, "ckpt resolve %ld: %s", it, got);
                struct stat st;
                char mp[1100];
                snprintf(mp, sizeof mp, "%s/meta.json", got);
                CHECK(stat(mp, &st) == 0, "ckpt resolve %ld: %s has no meta.json", it, got);
                ok += k == 0;
            } else {
                check_reason("ckpt resolve", it, &err);
            }
        }
        if (fi == 1) {
            zf_ckpt_shard *sh = NULL;
            int count = 0;
            err.msg[0] = 0;
            size_t total = 100;
            if (zf_ckpt_read_shards(step, total, &sh, &count, &err) == 0) {
                CHECK(count >= 1 && sh, "ckpt shards %ld: %d shards", it, count);
                for (int i = 0; i < count; i++)
                    CHECK(sh[i].rank >= 0 && sh[i].rank < count && sh[i].offset <= total &&
                              sh[i].numel <= total - sh[i].offset,
                          "ckpt shards %ld: shard %d rank %d [%zu, +%zu)", it, i, sh[i].rank, sh[i].offset,
                          sh[i].numel);
                free(sh);
            } else {
                CHECK(sh == NULL && count == 0, "ckpt shards %ld: failure left shards", it);
                check_reason("ckpt shards", it, &err);
            }
        }
        spit(paths[fi], orig[fi].p, orig[fi].n);
    }
    printf("ckpt latest/shards: %ld mutations (%ld resolved) in %.2f s\n", n, ok, zf_now() - t0);
    free(orig[0].p);
    free(orig[1].p);
}

/* ---- Hugging Face model directories ------------------------------------ */

static void fuzz_hf(void)
{
    char dir[600], cp[700], sp[700];
    path_of(dir, sizeof dir, "hf");
    snprintf(cp, sizeof cp, "%s/config.json", dir);
    snprintf(sp, sizeof sp, "%s/model.safetensors", dir);
    zf_gpt2_config cfg = {2, 2, 8, 16, 20, 1e-5f, 0.1f, 0.1f, 0.1f};
    zf_param_table t;
    zf_gpt2_param_table(&cfg, &t);
    float *params = zf_params_alloc(&t);
    zf_gpt2_init_params(&cfg, &t, params, 11);
    zf_err err;
    if (zf_hf_save(dir, &cfg, &t, params, NULL, &err) != 0) {
        CHECK(0, "hf save: %s", err.msg);
        return;
    }
    bytes orig[2] = {slurp(cp), slurp(sp)};
    CHECK(orig[0].p && orig[1].p, "read %s", dir);
    if (!orig[0].p || !orig[1].p) return;
    const char *paths[2] = {cp, sp};
    size_t hlen = orig[1].n >= 8 ? (size_t)le64(orig[1].p) + 8 : 0;
    zf_rng r;
    zf_rng_seed(&r, g_seed, 9);
    long n = iters(1500), ok = 0;
    char ops[256];
    double t0 = zf_now();
    for (long it = 0; it < n; it++) {
        int fi = (int)zf_rng_below(&r, 2);
        bytes in;
        if (fi == 1 && hlen && hlen <= orig[1].n && zf_rng_below(&r, 4)) {
            /* mostly the header (length word + JSON), the data kept */
            bytes hdr = {orig[1].p, hlen};
            bytes m = mutate(&r, &hdr, (size_t)1 << 20, ops, sizeof ops);
            in.n = m.n + orig[1].n - hlen;
            in.p = malloc(in.n + 1);
            memcpy(in.p, m.p, m.n);
            memcpy(in.p + m.n, orig[1].p + hlen, orig[1].n - hlen);
            free(m.p);
        } else {
            in = mutate(&r, &orig[fi], (size_t)1 << 20, ops, sizeof ops);
        }
        trace(fi ? "hf model.safetensors" : "hf config.json", it, ops);
        spit(paths[fi], in.p, in.n);
        free(in.p);
        zf_gpt2_config c2;
        zf_param_table t2;
        float *p2 = NULL;
        err.msg[0] = 0;
        if (zf_hf_load(dir, &c2, &t2, &p2, &err) == 0) {
            ok++;
            CHECK(p2 && zf_gpt2_config_check(&c2, "loaded", &err) == 0, "hf %ld: loaded an unusable model", it);
            /* what loads is the saved model, or (values mutated) the same shape */
            CHECK(t2.total == t.total && c2.n_embd == cfg.n_embd && c2.n_layer == cfg.n_layer &&
                      c2.vocab_size == cfg.vocab_size,
                  "hf %ld: loaded %zu floats (n_embd %d), saved %zu", it, t2.total, c2.n_embd, t.total);
            if (fi == 0 && p2 && t2.total == t.total)
                CHECK(memcmp(p2, params, t.total * sizeof *params) == 0, "hf %ld: config change altered weights", it);
            free(p2);
            zf_param_table_free(&t2);
        } else {
            CHECK(p2 == NULL, "hf %ld: failure left parameters", it);
            check_reason("hf load", it, &err);
        }
        spit(paths[fi], orig[fi].p, orig[fi].n);
    }
    printf("hf: %ld mutations (%ld loaded) in %.2f s\n", n, ok, zf_now() - t0);
    /* Regression: config.json alone sized the parameter buffer, so one
     * claiming 2^44 parameters beside a small model.safetensors died in
     * zf_params_alloc; now refused against the weights file's size. */
    {
        zf_gpt2_config huge = {1024, 64, 65536, 1024, 50257, 1e-5f, 0.1f, 0.1f, 0.1f};
        CHECK(zf_gpt2_config_save(cp, &huge, &err) == 0, "hf save config: %s", err.msg);
        zf_gpt2_config c2;
        zf_param_table t2;
        float *p2 = NULL;
        err.msg[0] = 0;
        CHECK(zf_hf_load(dir, &c2, &t2, &p2, &err) == -1 && strstr(err.msg, "parameters"),
              "hf config claiming 2^45 parameters: %s", err.msg);
        spit(cp, orig[0].p, orig[0].n);
    }
    free(orig[0].p);
    free(orig[1].p);
    free(params);
    zf_param_table_free(&t);
}

/* ---- dataset readers ---------------------------------------------------- */

typedef struct doc_stats {
    long docs;
    size_t bytes;
    int bad;
} doc_stats;

static int count_doc(void *ctx, const char *text, size_t len)
{
    doc_stats *d = ctx;
    if (len == 0 || !text) d->bad = 1;
    d->docs++;
    d->bytes += len;
    /* touch every byte (ASan sees a read past the document) */
    volatile char c = 0;
    for (size_t i = 0; i < len; i++) c ^= text[i];
    (void)c;
    return 0;
}

static void fuzz_dataset(void)
{
    char jp[600], tp[600];
    path_of(jp, sizeof jp, "data.jsonl");
    path_of(tp, sizeof tp, "data.txt");
    static const char jsonl[] =
        "{\"text\": \"first document\\nwith two lines\", \"id\": 1}\n"
        "{\"id\": 2, \"text\": \"caf\\u00e9 \\ud83d\\ude00 tab\\there\"}\n"
        "\n"
        "{\"text\": \"\", \"meta\": {\"x\": [1, 2]}}\n"
        "{\"text\": \"third\"}\r\n"
        "{\"text\": \"escaped \\\"quote\\\" and \\\\ backslash\"}\n";
    static const char txt[] = "Alpha beta\ngamma\n\n\n  \t\nSecond doc\r\nline two\n\nthird\n";
    spit(jp, (const uint8_t *)jsonl, strlen(jsonl));
    spit(tp, (const uint8_t *)txt, strlen(txt));
    bytes orig[2] = {{(uint8_t *)jsonl, strlen(jsonl)}, {(uint8_t *)txt, strlen(txt)}};
    const char *paths[2] = {jp, tp};
    zf_err err;
    zf_dataset_spec spec;
    for (int k = 0; k < 2; k++) {
        zf_dataset_spec_default(&spec);
        zf_dataset_files f;
        doc_stats d = {0, 0, 0};
        CHECK(zf_dataset_spec_set(&spec, paths[k], "", "text", &err) == 0 &&
                  zf_dataset_resolve(&spec, g_dir, &f, &err) == 0,
              "dataset seed %s: %s", paths[k], err.msg);
        for (int s = 0; s < ZF_SPLIT_COUNT; s++)
            CHECK(zf_dataset_foreach_doc(&f, (zf_split)s, &spec, count_doc, &d, &err) == 0, "seed %s: %s",
                  paths[k], err.msg);
        CHECK(d.docs == (k ? 3 : 4) && !d.bad, "dataset seed %s: %ld documents", paths[k], d.docs);
        zf_dataset_files_free(&f);
    }
    zf_rng r;
    zf_rng_seed(&r, g_seed, 10);
    long n = iters(4000), ok = 0;
    char ops[256];
    double t0 = zf_now();
    for (long it = 0; it < n; it++) {
        int fi = (int)zf_rng_below(&r, 2);
        bytes in = mutate(&r, &orig[fi], (size_t)1 << 16, ops, sizeof ops);
        trace(fi ? "dataset txt" : "dataset jsonl", it, ops);
        spit(paths[fi], in.p, in.n);
        size_t in_n = in.n;
        free(in.p);
        zf_dataset_spec_default(&spec);
        zf_dataset_files f;
        err.msg[0] = 0;
        if (zf_dataset_spec_set(&spec, paths[fi], "", "text", &err) != 0 ||
            zf_dataset_resolve(&spec, g_dir, &f, &err) != 0) {
            CHECK(0, "dataset %ld: resolve: %s", it, err.msg);
            continue;
        }
        doc_stats d = {0, 0, 0};
        int good = 1;
        for (int s = 0; s < ZF_SPLIT_COUNT; s++) {
            err.msg[0] = 0;
            int rc = zf_dataset_foreach_doc(&f, (zf_split)s, &spec, count_doc, &d, &err);
            if (rc != 0) {
                CHECK(rc == -1, "dataset %ld: foreach returned %d", it, rc);
                check_reason("dataset foreach", it, &err);
                good = 0;
                break;
            }
        }
        CHECK(!d.bad, "dataset %ld: an empty document was passed", it);
        /* text: documents are slices of the file; JSONL unescaping of
         * \uXXXX gives at most 3 bytes for 6 */
        if (good) CHECK(d.bytes <= in_n * 3, "dataset %ld: %zu document bytes from a %zu-byte file", it, d.bytes, in_n);
        ok += good;
        zf_dataset_files_free(&f);
    }
    printf("dataset: %ld mutations (%ld read) in %.2f s\n", n, ok, zf_now() - t0);
    unlink(jp);
    unlink(tp);
}

int main(void)
{
    const char *s = getenv("ZF_FUZZ_ITERS");
    if (s && *s) g_iters_override = strtol(s, NULL, 10);
    s = getenv("ZF_FUZZ_SEED");
    if (s && *s) g_seed = strtoull(s, NULL, 0);
    s = getenv("ZF_FUZZ_TRACE");
    g_trace = s && *s && strcmp(s, "0") != 0;
    s = getenv("ZF_FUZZ_ONLY");
    if (s && *s) g_only = s;
    zf_check_tmpdir(g_dir, sizeof g_dir, "fuzz_decoders");
    printf("seed 0x%" PRIx64 "\n", g_seed);
    if (want("msg")) fuzz_msg();
    if (want("tokstr")) fuzz_tokstr();
    if (want("ckpt")) fuzz_ckpt();
    if (want("st")) fuzz_st();
    if (want("ds")) fuzz_ds();
    if (want("bpe")) fuzz_bpe();
    if (want("bpejson")) fuzz_bpe_json();
    if (want("ckptmeta")) fuzz_ckpt_meta();
    if (want("hf")) fuzz_hf();
    if (want("dataset")) fuzz_dataset();
    zf_check_rm_rf(g_dir);
    return zf_check_summary("test_fuzz_decoders");
}
