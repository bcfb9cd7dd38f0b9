/* bench_tokenizer - one thread of the tokenizer library on a dataset.
 *
 *   bin/bench/bench_tokenizer --tokenizer DIR --text FILE [--repeat 3] [--dump PREFIX] [--threads N[,N...]]
 *
 * Reads FILE's documents exactly as the pipeline does (lib/dataset.h: a
 * text file is documents separated by blank lines; validation and test are
 * carved from it), encodes every document plus <|endoftext|> with
 * zf_bpe_encode on one thread, best of --repeat passes, and prints
 *   split S: D documents, N tokens, fnv1a64 H     (the coordinator's line)
 *   zeroflow 1 thread: X MB/s ...
 * so bench/run_tokenizer_bench.sh can check that the pipeline made the same
 * tokens.  --dump writes the documents in that order (PREFIX.text: their
 * bytes, PREFIX.ends: int64 end offsets) and their ids (PREFIX.tokens:
 * int32, <|endoftext|> after each) for bench/tokenizer_baselines.py, which
 * encodes the same documents and compares.
 *
 * --threads N (each N > 1 of a comma-separated list) also measures the
 * library on N threads with no messages and no copies: the documents cut
 * into chunks of about 64 KiB that the threads take in order from a shared
 * counter (fresh threads, so fresh piece caches, every pass, as in new
 * worker processes), best of --repeat:
 *   zeroflow N threads: X MB/s ...
 * the ceiling for N tokenizer workers on this machine (clock, memory), with
 * the ids checked identical to the one-thread run's. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "dataset.h"
#include "hash.h"
#include "log.h"

typedef struct docs {
    char *text;
    size_t bytes, cap;
    size_t *ends;            /* end offset of each document */
    size_t n, ncap;
} docs;

static int add_doc(void *ctx, const char *text, size_t len)
{
    docs *d = ctx;
    if (d->bytes + len > d->cap) {
        while (d->bytes + len > d->cap) d->cap = d->cap ? 2 * d->cap : (1u << 20);
        d->text = zf_xrealloc(d->text, d->cap);
    }
    memcpy(d->text + d->bytes, text, len);
    d->bytes += len;
    if (d->n == d->ncap) d->ends = zf_xrealloc(d->ends, (d->ncap = d->ncap ? 2 * d->ncap : 1024) * sizeof *d->ends);
    d->ends[d->n++] = d->bytes;
    return 0;
}

/* --threads: the documents (all splits, in order) cut into chunks of about
 * CHUNK_BYTES; threads take the next chunk from a shared counter, as
 * workers take jobs, but with no messages and no copies. */
#define CHUNK_BYTES (64u * 1024u)

typedef struct chunk {
    int sp;
    size_t first, last;      /* documents [first, last) of split sp */
    zf_ids ids;
} chunk;

typedef struct pool {
    const zf_bpe *bpe;
    const docs *d;
    int32_t eot;
    chunk *c;
    size_t nc;
    _Atomic size_t next;
} pool;

static void *pool_main(void *arg)
{
    pool *p = arg;
    zf_err err;
    for (;;) {
        size_t k = atomic_fetch_add(&p->next, 1);
        if (k >= p->nc) return NULL;
        chunk *c = &p->c[k];
        const docs *d = &p->d[c->sp];
        c->ids.len = 0;
        for (size_t i = c->first; i < c->last; i++) {
            size_t at = i ? d->ends[i - 1] : 0;
            if (zf_bpe_encode(p->bpe, d->text + at, d->ends[i] - at, 0, &c->ids, &err) != 0) zf_die("%s", err.msg);
            zf_ids_push(&c->ids, p->eot);
        }
    }
}

/* The library on nt threads (see the header); checks the ids against ref. */
static void bench_threads(const zf_bpe *bpe, int32_t eot, const docs *d, int nt, int repeat, const zf_ids *ref)
{
    pool p = { bpe, d, eot, NULL, 0, 0 };
    size_t cap = 0, total = 0;
    for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
        total += d[sp].bytes;
        for (size_t first = 0; first < d[sp].n;) {
            size_t last = first + 1, base = first ? d[sp].ends[first - 1] : 0;
            while (last < d[sp].n && d[sp].ends[last] - base <= CHUNK_BYTES) last++;
            if (p.nc == cap) p.c = zf_xrealloc(p.c, (cap = cap ? 2 * cap : 256) * sizeof *p.c);
            p.c[p.nc++] = (chunk){ sp, first, last, { 0 } };
            first = last;
        }
    }
    pthread_t *th = zf_xcalloc((size_t)nt, sizeof *th);
    double best = 1e300;
    for (int r = 0; r < repeat; r++) {
        atomic_store(&p.next, 0);
        double t0 = zf_now();
        for (int k = 0; k < nt; k++)
            if (pthread_create(&th[k], NULL, pool_main, &p) != 0) zf_die("cannot start thread %d", k);
        for (int k = 0; k < nt; k++) pthread_join(th[k], NULL);
        double dt = zf_now() - t0;
        if (dt < best) best = dt;
    }
    /* the chunks' ids, in order, are the one-thread run's, split by split */
    int same = 1;
    size_t at[ZF_SPLIT_COUNT] = { 0 };
    for (size_t k = 0; k < p.nc && same; k++) {
        const chunk *c = &p.c[k];
        same = at[c->sp] + c->ids.len <= ref[c->sp].len &&
               !memcmp(ref[c->sp].data + at[c->sp], c->ids.data, c->ids.len * sizeof(int32_t));
        at[c->sp] += c->ids.len;
    }
    for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) same &= at[sp] == ref[sp].len;
    if (!same) zf_die("--threads %d: the ids differ from the one-thread run's", nt);
    printf("zeroflow %d threads: %.2f MB/s (%.3f s, best of %d, %zu chunks of ~%u KiB taken from a shared counter, "
           "fresh threads each pass; ids identical)\n", nt, (double)total / 1e6 / best, best, repeat, p.nc,
           CHUNK_BYTES / 1024);
    for (size_t k = 0; k < p.nc; k++) zf_ids_free(&p.c[k].ids);
    free(p.c);
    free(th);
}

int main(int argc, char **argv)
{
    zf_log_init("bench_tokenizer");
    const char *tok = NULL, *text = NULL, *dump = NULL;
    int repeat = 3;
    const char *threads = "";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tokenizer")) tok = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = argv[i + 1];
        else if (!strcmp(argv[i], "--text")) text = argv[i + 1];
        else if (!strcmp(argv[i], "--repeat")) repeat = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dump")) dump = argv[i + 1];
        else zf_die("unknown flag %s (expected --tokenizer, --text, --repeat, --dump, --threads)", argv[i]);
    }
    if (!tok || !text) zf_die("usage: bench_tokenizer --tokenizer DIR --text FILE [--repeat N] [--dump OUT]");
    if (repeat < 1) repeat = 1;
    zf_err err;
    zf_bpe *bpe;
    if (zf_bpe_load(tok, &bpe, &err) != 0) zf_die("%s", err.msg);
    int32_t eot = zf_bpe_eot_id(bpe);
    if (eot < 0) zf_die("%s: expected an <|endoftext|> token", tok);
    zf_dataset_spec spec;
    zf_dataset_files files;
    if (zf_dataset_spec_set(&spec, text, "", "text", &err) != 0 || zf_dataset_resolve(&spec, NULL, &files, &err) != 0)
        zf_die("%s", err.msg);
    docs d[ZF_SPLIT_COUNT];
    memset(d, 0, sizeof d);
    size_t total_bytes = 0, total_docs = 0;
    for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
        if (zf_dataset_foreach_doc(&files, (zf_split)sp, &spec, add_doc, &d[sp], &err) < 0) zf_die("%s", err.msg);
        total_bytes += d[sp].bytes;
        total_docs += d[sp].n;
    }
    zf_dataset_files_free(&files);

    zf_ids ids[ZF_SPLIT_COUNT];
    memset(ids, 0, sizeof ids);
    double best = 1e300;
    for (int r = 0; r < repeat; r++) {
        double t0 = zf_now();
        for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
            ids[sp].len = 0;
            size_t at = 0;
            for (size_t i = 0; i < d[sp].n; i++) {
                if (zf_bpe_encode(bpe, d[sp].text + at, d[sp].ends[i] - at, 0, &ids[sp], &err) != 0)
                    zf_die("%s", err.msg);
                zf_ids_push(&ids[sp], eot);
                at = d[sp].ends[i];
            }
        }
        double t = zf_now() - t0;
        if (t < best) best = t;
    }
    size_t total_tokens = 0;
    for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
        uint64_t h = zf_fnv1a64(ZF_FNV1A64_INIT, ids[sp].data, ids[sp].len * sizeof(int32_t));
        printf("split %s: %zu documents, %zu tokens, fnv1a64 %016llx\n", zf_split_name((zf_split)sp), d[sp].n,
               ids[sp].len, (unsigned long long)h);
        total_tokens += ids[sp].len;
    }
    printf("zeroflow 1 thread: %.2f MB/s (%.2f MB, %zu documents, %zu tokens in %.3f s, best of %d)\n",
           (double)total_bytes / 1e6 / best, (double)total_bytes / 1e6, total_docs, total_tokens, best, repeat);
    for (const char *p = threads; *p;) {
        char *end;
        long nt = strtol(p, &end, 10);
        if (end == p || nt < 1 || nt > 1024 || (*end && *end != ','))
            zf_die("--threads: expected thread counts in [1, 1024] separated by commas, got '%s'", threads);
        if (nt > 1) bench_threads(bpe, eot, d, (int)nt, repeat, ids);
        p = *end ? end + 1 : end;
    }
    if (dump) {
        char path[4096];
        FILE *f[3];
        const char *ext[3] = { "tokens", "text", "ends" };
        for (int k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "%s.%s", dump, ext[k]);
            if (!(f[k] = fopen(path, "wb"))) zf_die("%s: cannot create", path);
        }
        int64_t base = 0;
        for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
            int ok = fwrite(ids[sp].data, sizeof(int32_t), ids[sp].len, f[0]) == ids[sp].len &&
                     fwrite(d[sp].text, 1, d[sp].bytes, f[1]) == d[sp].bytes;
            for (size_t i = 0; ok && i < d[sp].n; i++) {
                int64_t e = base + (int64_t)d[sp].ends[i];
                ok = fwrite(&e, sizeof e, 1, f[2]) == 1;
            }
            if (!ok) zf_die("%s.*: write error", dump);
            base += (int64_t)d[sp].bytes;
        }
        for (int k = 0; k < 3; k++)
            if (fclose(f[k]) != 0) zf_die("%s.%s: write error", dump, ext[k]);
    }
    for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
        zf_ids_free(&ids[sp]);
        free(d[sp].text);
        free(d[sp].ends);
    }
    zf_bpe_free(bpe);
    return 0;
}
