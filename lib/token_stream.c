/* token_stream.c - see token_stream.h for the file layout. */
#include "token_stream.h"
#include "lz4_frame.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"

#define HDR ZF_TOKSTR_HEADER_BYTES
#define LOCATE_SLICE 512 /* input bytes per step when locating damage in a frame */
/* LZ4 expands at most ~255x (a match length byte stands for 255 bytes):
 * sizes a header claims beyond this are refused before any allocation. */
#define RAW_BOUND(comp) ((comp) > (UINT64_MAX - 4096) / 260 ? UINT64_MAX : (comp) * 260 + 4096)
#define MAX_CHUNK ((uint64_t)1 << 28)

static void put_u32(uint8_t *p, uint32_t x) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t x) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i)); }
static uint32_t get_u32(const uint8_t *p) { uint32_t x = 0; for (int i = 3; i >= 0; i--) x = (x << 8) | p[i]; return x; }
static uint64_t get_u64(const uint8_t *p) { uint64_t x = 0; for (int i = 7; i >= 0; i--) x = (x << 8) | p[i]; return x; }

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    char *p = buf;
    while (n) {
        ssize_t k = pread(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = 0;
            return -1;
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Allocation sized by a header's claim: a crafted header (or a sparse file)
 * can claim tables far beyond memory, so refuse what exceeds the physical
 * memory and return NULL instead of dying in zf_xmalloc. */
static void *claim_realloc(void *old, uint64_t n)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psz > 0 && n > (uint64_t)pages * (uint64_t)psz) return NULL;
    if (n >= SIZE_MAX) return NULL;
    return realloc(old, n ? (size_t)n : 1);
}

static const char *split_label(uint32_t s)
{
    static const char *names[ZF_TOKSTR_SPLITS] = { "train", "validation", "test" };
    return s < ZF_TOKSTR_SPLITS ? names[s] : "?";
}

uint32_t zf_tokstr_width(uint32_t vocab_size) { return vocab_size <= 65536u ? 2u : 4u; }

/* ================================================================ writer */

struct zf_tokstr_writer {
    char *path;
    int fd;
    uint64_t pos;             /* bytes written so far = start of the next segment */
    zf_tokstr_vocab vocab;
    uint32_t width, nsegments, written;
    uint64_t chunk;
    int failed;
};

int zf_tokstr_create(const char *path, const zf_tokstr_vocab *vocab, uint32_t nsegments, uint64_t chunk,
                     zf_tokstr_writer **out, zf_err *err)
{
    *out = NULL;
    if (!path || !path[0]) return zf_err_set(err, "token stream: path: expected a file name, got nothing");
    if (!vocab || vocab->size < 1 || vocab->eot >= (int64_t)vocab->size || vocab->eot < -1)
        return zf_err_set(err, "%s: vocabulary: expected size >= 1 and an end-of-text id in [-1, size)", path);
    if (nsegments < 1) return zf_err_set(err, "%s: segments: expected >= 1, got 0", path);
    if (chunk == 0) chunk = ZF_TOKSTR_CHUNK_TOKENS;
    if (chunk > MAX_CHUNK)
        return zf_err_set(err, "%s: chunk: expected 1..%llu tokens, got %llu", path, (unsigned long long)MAX_CHUNK,
                          (unsigned long long)chunk);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return zf_err_set(err, "%s: cannot create: %s", path, strerror(errno));
    zf_tokstr_writer *w = zf_xcalloc(1, sizeof *w);
    w->path = zf_xstrdup(path);
    w->fd = fd;
    w->vocab = *vocab;
    w->width = zf_tokstr_width(vocab->size);
    w->nsegments = nsegments;
    w->chunk = chunk;
    *out = w;
    return 0;
}

/* Compress raw[0..n) as one frame and append it; its size goes to *bytes. */
static int put_frame(zf_tokstr_writer *w, const uint8_t *raw, size_t n, uint8_t **buf, size_t *cap, uint64_t *bytes,
                     zf_err *err)
{
    LZ4F_preferences_t p = zf_lz4_frame_prefs(n);
    size_t need = LZ4F_compressFrameBound(n, &p);
    if (need > *cap) {
        *buf = zf_xrealloc(*buf, need);
        *cap = need;
    }
    size_t r = LZ4F_compressFrame(*buf, *cap, raw, n, &p);
    if (LZ4F_isError(r)) return zf_err_set(err, "%s: LZ4 compression failed: %s", w->path, LZ4F_getErrorName(r));
    if (write_all(w->fd, *buf, r) != 0) return zf_err_set(err, "%s: write failed: %s", w->path, strerror(errno));
    *bytes = r;
    return 0;
}

int zf_tokstr_append(zf_tokstr_writer *w, int split, const int32_t *tokens, uint64_t ntokens,
                     const uint64_t *doc_ends, uint64_t ndocs, zf_err *err)
{
    if (!w) return zf_err_set(err, "token stream: append: no writer");
    if (w->failed) return zf_err_set(err, "%s: an earlier write failed", w->path);
    if (w->written >= w->nsegments)
        return zf_err_set(err, "%s: append: expected at most %u segments (as declared), got one more", w->path,
                          w->nsegments);
    if (split < 0 || split >= ZF_TOKSTR_SPLITS)
        return zf_err_set(err, "%s: split: expected 0..%d, got %d", w->path, ZF_TOKSTR_SPLITS - 1, split);
    if ((ntokens && !tokens) || (ndocs && !doc_ends))
        return zf_err_set(err, "%s: append: expected token and document buffers", w->path);
    if (ntokens > ((uint64_t)1 << 56))
        return zf_err_set(err, "%s: append: %llu tokens is too many", w->path, (unsigned long long)ntokens);
    /* Refuse now what a reader would refuse later. */
    for (uint64_t i = 0; i < ntokens; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= w->vocab.size)
            return zf_err_set(err, "%s: %s token %llu: expected an id in [0, %u), got %d", w->path,
                              split_label((uint32_t)split), (unsigned long long)i, w->vocab.size, tokens[i]);
    if ((ndocs == 0) != (ntokens == 0) || (ndocs && doc_ends[ndocs - 1] != ntokens))
        return zf_err_set(err, "%s: %s: documents: expected the last document to end at token %llu", w->path,
                          split_label((uint32_t)split), (unsigned long long)ntokens);
    for (uint64_t d = 0; d < ndocs; d++) {
        uint64_t prev = d ? doc_ends[d - 1] : 0;
        if (doc_ends[d] <= prev || doc_ends[d] > ntokens)
            return zf_err_set(err, "%s: %s document %llu: end offset %llu: expected more than %llu and at most %llu",
                              w->path, split_label((uint32_t)split), (unsigned long long)d,
                              (unsigned long long)doc_ends[d], (unsigned long long)prev, (unsigned long long)ntokens);
        if (w->vocab.eot >= 0 && tokens[doc_ends[d] - 1] != w->vocab.eot)
            return zf_err_set(err, "%s: %s document %llu: expected <|endoftext|> (id %d) as its last token, got %d",
                              w->path, split_label((uint32_t)split), (unsigned long long)d, w->vocab.eot,
                              tokens[doc_ends[d] - 1]);
    }

    uint64_t start = w->pos;
    uint64_t nframes = (ntokens + w->chunk - 1) / w->chunk;
    uint8_t hdr[HDR];
    memset(hdr, 0, sizeof hdr);
    uint8_t *buf = NULL, *raw = NULL, *index = zf_xcalloc((size_t)nframes + 1, ZF_TOKSTR_INDEX_ENTRY);
    size_t cap = 0;
    uint64_t dbytes = 0, bbytes = 0;
    int rc = 0;
    if (write_all(w->fd, hdr, HDR) != 0) rc = zf_err_set(err, "%s: write failed: %s", w->path, strerror(errno));
    if (rc == 0) { /* document table */
        raw = zf_xmalloc((size_t)ndocs * 8 + 1);
        for (uint64_t d = 0; d < ndocs; d++) put_u64(raw + d * 8, doc_ends[d]);
        rc = put_frame(w, raw, (size_t)ndocs * 8, &buf, &cap, &dbytes, err);
        free(raw);
        raw = NULL;
    }
    if (rc == 0 && nframes) raw = zf_xmalloc((size_t)(w->chunk < ntokens ? w->chunk : ntokens) * w->width);
    for (uint64_t f = 0; f < nframes && rc == 0; f++) { /* token frames */
        uint64_t first = f * w->chunk, n = ntokens - first < w->chunk ? ntokens - first : w->chunk;
        for (uint64_t i = 0; i < n; i++) {
            uint32_t id = (uint32_t)tokens[first + i];
            if (w->width == 2) raw[i * 2] = (uint8_t)id, raw[i * 2 + 1] = (uint8_t)(id >> 8);
            else put_u32(raw + i * 4, id);
        }
        uint64_t fb = 0;
        rc = put_frame(w, raw, (size_t)(n * w->width), &buf, &cap, &fb, err);
        put_u64(index + f * ZF_TOKSTR_INDEX_ENTRY, first);
        put_u64(index + f * ZF_TOKSTR_INDEX_ENTRY + 8, HDR + dbytes + bbytes);
        put_u64(index + f * ZF_TOKSTR_INDEX_ENTRY + 16, fb);
        bbytes += fb;
    }
    free(raw);
    free(buf);
    uint64_t ibytes = nframes * ZF_TOKSTR_INDEX_ENTRY;
    if (rc == 0 && write_all(w->fd, index, (size_t)ibytes) != 0)
        rc = zf_err_set(err, "%s: write failed: %s", w->path, strerror(errno));
    if (rc == 0) {
        memcpy(hdr, ZF_TOKSTR_MAGIC, 8);
        put_u32(hdr + 8, ZF_TOKSTR_VERSION);
        put_u32(hdr + 12, HDR);
        put_u64(hdr + 16, w->vocab.hash);
        put_u32(hdr + 24, w->vocab.size);
        put_u32(hdr + 28, (uint32_t)w->vocab.eot);
        put_u32(hdr + 32, w->width);
        put_u32(hdr + 36, (uint32_t)split);
        put_u32(hdr + 40, w->written);
        put_u32(hdr + 44, w->nsegments);
        put_u64(hdr + 48, ndocs);
        put_u64(hdr + 56, ntokens);
        put_u64(hdr + 64, w->chunk);
        put_u64(hdr + 72, dbytes);
        put_u64(hdr + 80, bbytes);
        put_u64(hdr + 88, ibytes);
        put_u32(hdr + 96, zf_fnv1a32(index, (size_t)ibytes));
        put_u32(hdr + 100, zf_fnv1a32(hdr, 100));
        size_t done = 0;
        while (done < HDR && rc == 0) {
            ssize_t k = pwrite(w->fd, hdr + done, HDR - done, (off_t)(start + done));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) rc = zf_err_set(err, "%s: write failed: %s", w->path, strerror(errno));
            else done += (size_t)k;
        }
    }
    free(index);
    if (rc) {
        w->failed = 1;
        return -1;
    }
    w->pos = start + HDR + dbytes + bbytes + ibytes;
    w->written++;
    return 0;
}

int zf_tokstr_finish(zf_tokstr_writer *w, zf_err *err)
{
    if (!w) return zf_err_set(err, "token stream: finish: no writer");
    int rc = 0;
    if (w->failed) rc = zf_err_set(err, "%s: an earlier write failed", w->path);
    else if (w->written != w->nsegments)
        rc = zf_err_set(err, "%s: expected %u segments (as declared), got %u", w->path, w->nsegments, w->written);
    else if (fsync(w->fd) != 0)
        rc = zf_err_set(err, "%s: fsync failed: %s", w->path, strerror(errno));
    if (close(w->fd) != 0 && rc == 0) rc = zf_err_set(err, "%s: close failed: %s", w->path, strerror(errno));
    if (rc) unlink(w->path);
    free(w->path);
    free(w);
    return rc;
}

void zf_tokstr_abort(zf_tokstr_writer *w)
{
    if (!w) return;
    close(w->fd);
    unlink(w->path);
    free(w->path);
    free(w);
}

/* ================================================================ reader */

typedef struct seg {
    int file;
    uint64_t off;             /* segment start in its file */
    uint32_t split, width;
    uint64_t ndocs, ntokens, chunk, dbytes, bbytes, nframes;
    uint64_t *frame_off, *frame_bytes; /* per frame, from the segment start */
    uint64_t first;           /* its first token within the split's concatenation */
} seg;

struct zf_tokstr {
    int nfiles;
    char **paths;
    int *fds;
    uint64_t *sizes;
    seg *segs;
    int nsegs, capsegs;
    int have_vocab;
    zf_tokstr_vocab vocab;
    int vocab_file;           /* where the vocabulary was first seen */
    uint64_t vocab_off;
    uint64_t ntokens[ZF_TOKSTR_SPLITS], ndocs[ZF_TOKSTR_SPLITS];
    int nsplit_segs[ZF_TOKSTR_SPLITS];
    uint8_t *cbuf, *rbuf;     /* scratch: one compressed frame, its raw content */
    size_t ccap, rcap;
};

/* Printable rendering of bytes for messages. */
static const char *show(char *out, const uint8_t *p, size_t n)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') out[o++] = (char)p[i];
        else o += (size_t)sprintf(out + o, "\\x%02x", p[i]);
    }
    out[o++] = '"';
    out[o] = 0;
    return out;
}

static void add_file(zf_tokstr *ts, const char *path, int fd, uint64_t size)
{
    ts->paths = zf_xrealloc(ts->paths, (size_t)(ts->nfiles + 1) * sizeof *ts->paths);
    ts->fds = zf_xrealloc(ts->fds, (size_t)(ts->nfiles + 1) * sizeof *ts->fds);
    ts->sizes = zf_xrealloc(ts->sizes, (size_t)(ts->nfiles + 1) * sizeof *ts->sizes);
    ts->paths[ts->nfiles] = zf_xstrdup(path);
    ts->fds[ts->nfiles] = fd;
    ts->sizes[ts->nfiles] = size;
    ts->nfiles++;
}

static int open_one(zf_tokstr *ts, const char *path, zf_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return zf_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return zf_err_set(err, "%s: expected a regular file (a token stream)", path);
    }
    add_file(ts, path, fd, (uint64_t)st.st_size);
    return 0;
}

static int expand(zf_tokstr *ts, const char *spec, zf_err *err)
{
    if (!spec || !spec[0]) return zf_err_set(err, "token stream: expected PATH[,PATH...], got nothing");
    char *copy = zf_xstrdup(spec), *save = NULL;
    int rc = 0;
    size_t len = strlen(spec);
    if (spec[0] == ',' || spec[len - 1] == ',' || strstr(spec, ",,"))
        rc = zf_err_set(err, "%s: expected PATH[,PATH...], got an empty path in the list", spec);
    for (char *p = strtok_r(copy, ",", &save); p && rc == 0; p = strtok_r(NULL, ",", &save)) {
        if (!strpbrk(p, "*?[")) {
            rc = open_one(ts, p, err);
            continue;
        }
        glob_t g;
        int gr = glob(p, 0, NULL, &g);
        if (gr == GLOB_NOMATCH || (gr == 0 && g.gl_pathc == 0)) rc = zf_err_set(err, "%s: no file matches", p);
        else if (gr != 0) rc = zf_err_set(err, "%s: cannot expand the pattern", p);
        for (size_t i = 0; gr == 0 && i < g.gl_pathc && rc == 0; i++) rc = open_one(ts, g.gl_pathv[i], err);
        if (gr == 0) globfree(&g);
    }
    free(copy);
    return rc;
}

static int check_vocab(zf_tokstr *ts, int fi, uint64_t off, const zf_tokstr_vocab *v, const uint64_t *expected,
                       const char *who, zf_err *err)
{
    const char *p = ts->paths[fi];
    if (expected && v->hash != *expected)
        return zf_err_set(err, "%s: byte %llu: vocabulary hash: expected %016llx (%s), got %016llx: the stream was "
                          "recorded with another vocabulary", p, (unsigned long long)(off + 16),
                          (unsigned long long)*expected, who ? who : "the tokenizer", (unsigned long long)v->hash);
    if (!ts->have_vocab) {
        ts->have_vocab = 1;
        ts->vocab = *v;
        ts->vocab_file = fi;
        ts->vocab_off = off;
        return 0;
    }
    if (v->hash != ts->vocab.hash || v->size != ts->vocab.size || v->eot != ts->vocab.eot)
        return zf_err_set(err, "%s: byte %llu: vocabulary: expected hash %016llx, size %u, end-of-text %d (as in %s at "
                          "byte %llu), got %016llx, %u, %d: streams of different vocabularies cannot be mixed", p,
                          (unsigned long long)(off + 16), (unsigned long long)ts->vocab.hash, ts->vocab.size,
                          ts->vocab.eot, ts->paths[ts->vocab_file], (unsigned long long)ts->vocab_off,
                          (unsigned long long)v->hash, v->size, v->eot);
    return 0;
}

/* Verify the header and the seek index of the segment at `off` of file fi
 * and record it; *next = the byte after it. */
static int parse_segment(zf_tokstr *ts, int fi, uint64_t off, const uint64_t *expected, const char *who,
                         uint32_t *rec_seq, uint32_t *rec_count, uint64_t *rec_start, uint64_t *next, zf_err *err)
{
    const char *p = ts->paths[fi];
    uint64_t size = ts->sizes[fi];
    uint8_t h[HDR];
    char q[64];
    typedef unsigned long long ull;
    if (size - off < HDR) {
        if (size - off >= 8 && pread_all(ts->fds[fi], h, 8, off) == 0 && memcmp(h, ZF_TOKSTR_MAGIC, 8) != 0)
            return zf_err_set(err, "%s: byte %llu: expected a segment header (magic \"ZFTOKSTR\"), got %s", p, (ull)off,
                              show(q, h, 8));
        return zf_err_set(err, "%s: byte %llu: truncated: expected a %u-byte segment header, the file ends at byte %llu",
                          p, (ull)off, HDR, (ull)size);
    }
    if (pread_all(ts->fds[fi], h, HDR, off) != 0)
        return zf_err_set(err, "%s: byte %llu: read failed: %s", p, (ull)off, errno ? strerror(errno) : "file shrank");
    if (memcmp(h, ZF_TOKSTR_MAGIC, 8) != 0)
        return zf_err_set(err, "%s: byte %llu: expected a segment header (magic \"ZFTOKSTR\"), got %s", p, (ull)off,
                          show(q, h, 8));
    if (get_u32(h + 8) != ZF_TOKSTR_VERSION)
        return zf_err_set(err, "%s: byte %llu: format version: expected %u, got %u", p, (ull)(off + 8),
                          ZF_TOKSTR_VERSION, get_u32(h + 8));
    if (get_u32(h + 100) != zf_fnv1a32(h, 100))
        return zf_err_set(err, "%s: byte %llu: header checksum: expected %08x (of bytes %llu..%llu), got %08x: corrupt "
                          "segment header", p, (ull)(off + 100), zf_fnv1a32(h, 100), (ull)off, (ull)(off + 99),
                          get_u32(h + 100));
    zf_tokstr_vocab v = { get_u64(h + 16), get_u32(h + 24), (int32_t)get_u32(h + 28) };
    seg s;
    memset(&s, 0, sizeof s);
    s.file = fi;
    s.off = off;
    s.width = get_u32(h + 32);
    s.split = get_u32(h + 36);
    uint32_t seq = get_u32(h + 40), count = get_u32(h + 44);
    s.ndocs = get_u64(h + 48);
    s.ntokens = get_u64(h + 56);
    s.chunk = get_u64(h + 64);
    s.dbytes = get_u64(h + 72);
    s.bbytes = get_u64(h + 80);
    uint64_t ibytes = get_u64(h + 88);
    /* Field checks (a header can pass its checksum and still lie: a writer
     * bug or a crafted file). */
    if (get_u32(h + 12) != HDR)
        return zf_err_set(err, "%s: byte %llu: header bytes: expected %u, got %u", p, (ull)(off + 12), HDR,
                          get_u32(h + 12));
    if (v.size < 1 || v.eot < -1 || v.eot >= (int64_t)v.size)
        return zf_err_set(err, "%s: byte %llu: vocabulary: expected size >= 1 and end-of-text id in [-1, size), got "
                          "size %u, end-of-text %d", p, (ull)(off + 24), v.size, v.eot);
    if (s.width != zf_tokstr_width(v.size))
        return zf_err_set(err, "%s: byte %llu: token width: expected %u (vocabulary of %u), got %u", p, (ull)(off + 32),
                          zf_tokstr_width(v.size), v.size, s.width);
    if (s.split >= ZF_TOKSTR_SPLITS)
        return zf_err_set(err, "%s: byte %llu: split: expected 0..%d, got %u", p, (ull)(off + 36), ZF_TOKSTR_SPLITS - 1,
                          s.split);
    if (*rec_count == 0) { /* a recording starts here */
        if (seq != 0 || count < 1)
            return zf_err_set(err, "%s: byte %llu: segment number: expected segment 1 of a recording, got %u of %u", p,
                              (ull)(off + 40), seq + 1, count);
        *rec_count = count;
        *rec_seq = 0;
        *rec_start = off;
    } else if (seq != *rec_seq || count != *rec_count) {
        return zf_err_set(err, "%s: byte %llu: segment number: expected segment %u of %u of the recording at byte %llu, "
                          "got %u of %u", p, (ull)(off + 40), *rec_seq + 1, *rec_count, (ull)*rec_start, seq + 1, count);
    }
    if (s.chunk < 1 || s.chunk > MAX_CHUNK)
        return zf_err_set(err, "%s: byte %llu: chunk: expected 1..%llu tokens, got %llu", p, (ull)(off + 64),
                          (ull)MAX_CHUNK, (ull)s.chunk);
    if ((s.ndocs == 0) != (s.ntokens == 0) || s.ndocs > s.ntokens)
        return zf_err_set(err, "%s: byte %llu: documents: expected 1..%llu (every document holds a token), got %llu", p,
                          (ull)(off + 48), (ull)s.ntokens, (ull)s.ndocs);
    s.nframes = s.ntokens / s.chunk + (s.ntokens % s.chunk != 0);
    uint64_t left = size - off - HDR;
    if (s.dbytes > left || s.bbytes > left - s.dbytes || ibytes > left - s.dbytes - s.bbytes)
        return zf_err_set(err, "%s: byte %llu: truncated: the segment at byte %llu needs %llu + %llu + %llu + %llu bytes "
                          "(header, documents, tokens, index), the file ends at byte %llu", p, (ull)size, (ull)off,
                          (ull)HDR, (ull)s.dbytes, (ull)s.bbytes, (ull)ibytes, (ull)size);
    if (s.nframes > ibytes / ZF_TOKSTR_INDEX_ENTRY || ibytes != s.nframes * ZF_TOKSTR_INDEX_ENTRY)
        return zf_err_set(err, "%s: byte %llu: index bytes: expected %llu (%llu frames of %u), got %llu", p,
                          (ull)(off + 88), (ull)(s.nframes * ZF_TOKSTR_INDEX_ENTRY), (ull)s.nframes,
                          ZF_TOKSTR_INDEX_ENTRY, (ull)ibytes);
    if (s.ndocs > RAW_BOUND(s.dbytes) / 8 || s.ntokens > RAW_BOUND(s.bbytes) / s.width)
        return zf_err_set(err, "%s: byte %llu: sizes: %llu documents in %llu bytes and %llu tokens in %llu bytes exceed "
                          "what LZ4 can hold", p, (ull)(off + 48), (ull)s.ndocs, (ull)s.dbytes, (ull)s.ntokens,
                          (ull)s.bbytes);
    if (check_vocab(ts, fi, off, &v, expected, who, err) != 0) return -1;

    /* the seek index: checksum, then every entry against the layout */
    uint64_t ioff = off + HDR + s.dbytes + s.bbytes;
    uint8_t *idx = claim_realloc(NULL, ibytes + 1);
    if (!idx)
        return zf_err_set(err, "%s: byte %llu: index bytes: expected a seek index that fits in memory, got %llu bytes",
                          p, (ull)(off + 88), (ull)ibytes);
    if (pread_all(ts->fds[fi], idx, (size_t)ibytes, ioff) != 0) {
        free(idx);
        return zf_err_set(err, "%s: byte %llu: read failed: %s", p, (ull)ioff, errno ? strerror(errno) : "file shrank");
    }
    uint32_t isum = zf_fnv1a32(idx, (size_t)ibytes);
    if (get_u32(h + 96) != isum) {
        free(idx);
        return zf_err_set(err, "%s: byte %llu: seek index checksum: expected %08x (stored at byte %llu), got %08x: corrupt "
                          "index", p, (ull)ioff, get_u32(h + 96), (ull)(off + 96), isum);
    }
    s.frame_off = claim_realloc(NULL, (s.nframes + 1) * sizeof(uint64_t));
    s.frame_bytes = claim_realloc(NULL, (s.nframes + 1) * sizeof(uint64_t));
    if (!s.frame_off || !s.frame_bytes) {
        free(idx);
        free(s.frame_off);
        free(s.frame_bytes);
        return zf_err_set(err, "%s: byte %llu: tokens: expected a frame table that fits in memory, got %llu frames", p,
                          (ull)(off + 56), (ull)s.nframes);
    }
    uint64_t pos = HDR + s.dbytes;
    int rc = 0;
    for (uint64_t f = 0; f < s.nframes && rc == 0; f++) {
        const uint8_t *e = idx + f * ZF_TOKSTR_INDEX_ENTRY;
        uint64_t first = get_u64(e), fo = get_u64(e + 8), fb = get_u64(e + 16);
        uint64_t n = s.ntokens - f * s.chunk < s.chunk ? s.ntokens - f * s.chunk : s.chunk;
        if (first != f * s.chunk || fo != pos || fb < 1 || fb > HDR + s.dbytes + s.bbytes - pos ||
            n > RAW_BOUND(fb) / s.width)
            rc = zf_err_set(err, "%s: byte %llu: seek index entry %llu: expected first token %llu at segment byte %llu "
                            "with a size that fits, got token %llu at byte %llu, %llu bytes", p,
                            (ull)(ioff + f * ZF_TOKSTR_INDEX_ENTRY), (ull)f, (ull)(f * s.chunk), (ull)pos, (ull)first,
                            (ull)fo, (ull)fb);
        s.frame_off[f] = fo;
        s.frame_bytes[f] = fb;
        pos += fb;
    }
    free(idx);
    if (rc == 0 && pos != HDR + s.dbytes + s.bbytes)
        rc = zf_err_set(err, "%s: byte %llu: seek index: expected frames totalling %llu bytes, got %llu", p, (ull)ioff,
                        (ull)s.bbytes, (ull)(pos - HDR - s.dbytes));
    if (rc == 0 && (s.ntokens > UINT64_MAX / 4 || ts->ntokens[s.split] > UINT64_MAX / 2 - s.ntokens))
        rc = zf_err_set(err, "%s: byte %llu: tokens: too many in total", p, (ull)(off + 56));
    if (rc) {
        free(s.frame_off);
        free(s.frame_bytes);
        return -1;
    }
    s.first = ts->ntokens[s.split];
    ts->ntokens[s.split] += s.ntokens;
    ts->ndocs[s.split] += s.ndocs;
    ts->nsplit_segs[s.split]++;
    if (ts->nsegs == ts->capsegs)
        ts->segs = zf_xrealloc(ts->segs, (size_t)(ts->capsegs = ts->capsegs ? 2 * ts->capsegs : 8) * sizeof *ts->segs);
    ts->segs[ts->nsegs++] = s;
    if (++*rec_seq == *rec_count) *rec_count = 0; /* the recording is complete */
    *next = ioff + ibytes;
    return 0;
}

static int parse_file(zf_tokstr *ts, int fi, const uint64_t *expected, const char *who, zf_err *err)
{
    const char *p = ts->paths[fi];
    uint64_t size = ts->sizes[fi], off = 0, rec_start = 0;
    uint32_t rec_seq = 0, rec_count = 0;
    if (size == 0)
        return zf_err_set(err, "%s: byte 0: expected a token stream segment (magic \"ZFTOKSTR\"), got an empty file", p);
    while (off < size)
        if (parse_segment(ts, fi, off, expected, who, &rec_seq, &rec_count, &rec_start, &off, err) != 0) return -1;
    if (rec_count)
        return zf_err_set(err, "%s: byte %llu: truncated: expected segment %u of %u of the recording at byte %llu, the "
                          "file ends", p, (unsigned long long)size, rec_seq + 1, rec_count,
                          (unsigned long long)rec_start);
    return 0;
}

int zf_tokstr_open(const char *spec, const uint64_t *expected_hash, const char *who, zf_tokstr **out, zf_err *err)
{
    *out = NULL;
    zf_tokstr *ts = zf_xcalloc(1, sizeof *ts);
    int rc = expand(ts, spec, err);
    for (int i = 0; i < ts->nfiles && rc == 0; i++) rc = parse_file(ts, i, expected_hash, who, err);
    if (rc) {
        zf_tokstr_close(ts);
        return -1;
    }
    *out = ts;
    return 0;
}

void zf_tokstr_close(zf_tokstr *ts)
{
    if (!ts) return;
    for (int i = 0; i < ts->nfiles; i++) {
        close(ts->fds[i]);
        free(ts->paths[i]);
    }
    for (int i = 0; i < ts->nsegs; i++) {
        free(ts->segs[i].frame_off);
        free(ts->segs[i].frame_bytes);
    }
    free(ts->paths);
    free(ts->fds);
    free(ts->sizes);
    free(ts->segs);
    free(ts->cbuf);
    free(ts->rbuf);
    free(ts);
}

const zf_tokstr_vocab *zf_tokstr_vocab_of(const zf_tokstr *ts) { return &ts->vocab; }
int zf_tokstr_nfiles(const zf_tokstr *ts) { return ts->nfiles; }
const char *zf_tokstr_file(const zf_tokstr *ts, int i) { return i >= 0 && i < ts->nfiles ? ts->paths[i] : NULL; }
int zf_tokstr_nsegments(const zf_tokstr *ts, int split)
{
    return split >= 0 && split < ZF_TOKSTR_SPLITS ? ts->nsplit_segs[split] : 0;
}
uint64_t zf_tokstr_ntokens(const zf_tokstr *ts, int split)
{
    return split >= 0 && split < ZF_TOKSTR_SPLITS ? ts->ntokens[split] : 0;
}
uint64_t zf_tokstr_ndocs(const zf_tokstr *ts, int split)
{
    return split >= 0 && split < ZF_TOKSTR_SPLITS ? ts->ndocs[split] : 0;
}

/* Read and decode the frame at segment byte fo (fb bytes) of s into
 * ts->rbuf (dn bytes); what = "token frame 3" for messages. */
static int load_frame(zf_tokstr *ts, const seg *s, uint64_t fo, uint64_t fb, size_t dn, const char *what, zf_err *err)
{
    const char *p = ts->paths[s->file];
    uint64_t at = s->off + fo;
    uint8_t *nb;
    if (fb + 1 > ts->ccap) {
        if (!(nb = claim_realloc(ts->cbuf, fb + 1)))
            return zf_err_set(err, "%s: byte %llu: %s of the %s segment at byte %llu: expected a frame that fits in "
                              "memory, got %llu bytes", p, (unsigned long long)at, what, split_label(s->split),
                              (unsigned long long)s->off, (unsigned long long)fb);
        ts->cbuf = nb;
        ts->ccap = (size_t)fb + 1;
    }
    if (dn + 1 > ts->rcap) {
        if (!(nb = claim_realloc(ts->rbuf, (uint64_t)dn + 1)))
            return zf_err_set(err, "%s: byte %llu: %s of the %s segment at byte %llu: expected content that fits in "
                              "memory, got a claim of %zu bytes", p, (unsigned long long)at, what,
                              split_label(s->split), (unsigned long long)s->off, dn);
        ts->rbuf = nb;
        ts->rcap = dn + 1;
    }
    if (pread_all(ts->fds[s->file], ts->cbuf, (size_t)fb, at) != 0)
        return zf_err_set(err, "%s: byte %llu: read failed: %s", p, (unsigned long long)at,
                          errno ? strerror(errno) : "file shrank");
    size_t where;
    const char *e = zf_lz4_frame_decode(ts->cbuf, (size_t)fb, ts->rbuf, dn, 0, &where);
    if (!e) return 0;
    /* locate the damage: replay in small slices */
    const char *e2 = zf_lz4_frame_decode(ts->cbuf, (size_t)fb, ts->rbuf, dn, LOCATE_SLICE, &where);
    if (e2) e = e2;
    if (where > 0) where--; /* the last byte read when the problem showed */
    return zf_err_set(err, "%s: byte %llu: %s of the %s segment at byte %llu (bytes %llu..%llu): expected a valid LZ4 "
                      "frame of %zu bytes: %s", p, (unsigned long long)(at + where), what, split_label(s->split),
                      (unsigned long long)s->off, (unsigned long long)at, (unsigned long long)(at + fb - 1), dn, e);
}

/* Frame f of s: decode, check the ids, convert the tokens [a, b) of it
 * (frame-relative) into dst. */
static int frame_tokens(zf_tokstr *ts, const seg *s, uint64_t f, uint64_t a, uint64_t b, int32_t *dst, zf_err *err)
{
    uint64_t first = f * s->chunk, n = s->ntokens - first < s->chunk ? s->ntokens - first : s->chunk;
    char what[64];
    snprintf(what, sizeof what, "token frame %llu", (unsigned long long)f);
    if (load_frame(ts, s, s->frame_off[f], s->frame_bytes[f], (size_t)(n * s->width), what, err) != 0) return -1;
    const uint8_t *r = ts->rbuf;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t id = s->width == 2 ? (uint32_t)r[2 * i] | (uint32_t)r[2 * i + 1] << 8 : get_u32(r + 4 * i);
        if (id >= ts->vocab.size)
            return zf_err_set(err, "%s: byte %llu: token %llu of the %s segment at byte %llu: expected an id below the "
                              "vocabulary size %u, got %u", ts->paths[s->file],
                              (unsigned long long)(s->off + s->frame_off[f]), (unsigned long long)(first + i),
                              split_label(s->split), (unsigned long long)s->off, ts->vocab.size, id);
        if (i >= a && i < b && dst) dst[i - a] = (int32_t)id;
    }
    return 0;
}

/* Every token of s (into dst if not NULL) with the document table checked
 * (ends into doc_dst + base if not NULL). */
static int segment_all(zf_tokstr *ts, const seg *s, int32_t *dst, uint64_t *doc_dst, uint64_t base, zf_err *err)
{
    const char *p = ts->paths[s->file];
    typedef unsigned long long ull;
    if (load_frame(ts, s, HDR, s->dbytes, (size_t)(s->ndocs * 8), "document table", err) != 0) return -1;
    uint64_t *ends = claim_realloc(NULL, s->ndocs * sizeof *ends + 1);
    if (!ends)
        return zf_err_set(err, "%s: byte %llu: documents of the %s segment at byte %llu: expected a table that fits in "
                          "memory, got %llu documents", p, (ull)(s->off + 48), split_label(s->split), (ull)s->off,
                          (ull)s->ndocs);
    for (uint64_t d = 0; d < s->ndocs; d++) ends[d] = get_u64(ts->rbuf + d * 8);
    int rc = 0;
    for (uint64_t d = 0; d < s->ndocs && rc == 0; d++) {
        uint64_t prev = d ? ends[d - 1] : 0;
        if (ends[d] <= prev || ends[d] > s->ntokens || (d == s->ndocs - 1 && ends[d] != s->ntokens))
            rc = zf_err_set(err, "%s: byte %llu: document table of the %s segment at byte %llu: document %llu: expected "
                            "an end offset in (%llu, %llu]%s, got %llu", p, (ull)(s->off + HDR), split_label(s->split),
                            (ull)s->off, (ull)d, (ull)prev, (ull)s->ntokens, d == s->ndocs - 1 ? " = the tokens" : "",
                            (ull)ends[d]);
    }
    int32_t *scratch = dst ? NULL : claim_realloc(NULL, (s->chunk < s->ntokens ? s->chunk : s->ntokens) * 4 + 4);
    if (!dst && !scratch && rc == 0)
        rc = zf_err_set(err, "%s: byte %llu: chunk of the %s segment at byte %llu: expected frames that fit in memory, "
                        "got %llu tokens", p, (ull)(s->off + 64), split_label(s->split), (ull)s->off,
                        (ull)s->chunk);
    uint64_t d = 0;
    for (uint64_t f = 0; f < s->nframes && rc == 0; f++) {
        uint64_t first = f * s->chunk, n = s->ntokens - first < s->chunk ? s->ntokens - first : s->chunk;
        int32_t *out = dst ? dst + first : scratch;
        rc = frame_tokens(ts, s, f, 0, n, out, err);
        /* documents ending in this frame end with <|endoftext|> */
        for (; rc == 0 && d < s->ndocs && ends[d] <= first + n; d++)
            if (ts->vocab.eot >= 0 && out[ends[d] - 1 - first] != ts->vocab.eot)
                rc = zf_err_set(err, "%s: byte %llu: token %llu of the %s segment at byte %llu: expected <|endoftext|> "
                                "(id %d) ending document %llu, got %d", p, (ull)(s->off + s->frame_off[f]),
                                (ull)(ends[d] - 1), split_label(s->split), (ull)s->off, ts->vocab.eot, (ull)d,
                                out[ends[d] - 1 - first]);
    }
    if (rc == 0 && doc_dst)
        for (uint64_t k = 0; k < s->ndocs; k++) doc_dst[k] = base + ends[k];
    free(scratch);
    free(ends);
    return rc;
}

int zf_tokstr_read(zf_tokstr *ts, int split, uint64_t first, uint64_t n, int32_t *dst, zf_err *err)
{
    if (split < 0 || split >= ZF_TOKSTR_SPLITS) return zf_err_set(err, "token stream: split: expected 0..2, got %d", split);
    if (first > ts->ntokens[split] || n > ts->ntokens[split] - first)
        return zf_err_set(err, "token stream: %s tokens [%llu, %llu): expected a range within the %llu tokens",
                          split_label((uint32_t)split), (unsigned long long)first, (unsigned long long)(first + n),
                          (unsigned long long)ts->ntokens[split]);
    if (n == 0) return 0;
    uint64_t end = first + n;
    for (int i = 0; i < ts->nsegs; i++) {
        const seg *s = &ts->segs[i];
        if ((int)s->split != split || s->first + s->ntokens <= first || s->first >= end) continue;
        /* [a, b): the wanted tokens within this segment; the index gives
         * the frames holding them */
        uint64_t a = first > s->first ? first - s->first : 0;
        uint64_t b = end - s->first < s->ntokens ? end - s->first : s->ntokens;
        for (uint64_t f = a / s->chunk; f * s->chunk < b; f++) {
            uint64_t f0 = f * s->chunk, fa = a > f0 ? a - f0 : 0, fb = b - f0 < s->chunk ? b - f0 : s->chunk;
            if (frame_tokens(ts, s, f, fa, fb, dst + (s->first + f0 + fa - first), err) != 0) return -1;
        }
    }
    return 0;
}

int zf_tokstr_read_split(zf_tokstr *ts, int split, int32_t *tokens, uint64_t *doc_ends, zf_err *err)
{
    if (split < 0 || split >= ZF_TOKSTR_SPLITS) return zf_err_set(err, "token stream: split: expected 0..2, got %d", split);
    if (!tokens) return zf_err_set(err, "token stream: read split: expected a token buffer");
    uint64_t docs = 0;
    for (int i = 0; i < ts->nsegs; i++) {
        const seg *s = &ts->segs[i];
        if ((int)s->split != split) continue;
        if (segment_all(ts, s, tokens + s->first, doc_ends ? doc_ends + docs : NULL, s->first, err) != 0) return -1;
        docs += s->ndocs;
    }
    return 0;
}

int zf_tokstr_verify(zf_tokstr *ts, zf_err *err)
{
    for (int i = 0; i < ts->nsegs; i++)
        if (segment_all(ts, &ts->segs[i], NULL, NULL, 0, err) != 0) return -1;
    return 0;
}
