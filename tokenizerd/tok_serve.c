/* tok_serve.c - see tok_serve.h. */
#include "tok_serve.h"

#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "bpe.h"
#include "bpe_train.h"
#include "daemon.h"
#include "dataset.h"
#include "hash.h"
#include "hf_model.h"
#include "options.h"
#include "paths.h"
#include "shm.h"
#include "tok_record.h"

/* Jobs are cut "guided": a job is about 1/JOB_GUIDE of the text still to
 * lease after it, within [JOB_BYTES_MIN, JOB_BYTES_MAX].  Early jobs are
 * large (few messages), the last ones small, so that when the work runs out
 * no worker is left with a long job while the others idle. */
#define JOB_BYTES_MAX (256u * 1024u)
#define JOB_BYTES_MIN (32u * 1024u)
#define JOB_GUIDE 64
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older C libraries lack the name */
#endif
#define TRAIN_TEXT_CAP (64u << 20) /* bytes of training text used to learn a vocabulary */

static void parse_or_die(int argc, char **argv, zf_options *o)
{
    zf_err err;
    zf_options_defaults(o);
    if (zf_options_parse(argc, argv, o, NULL, &err) != 0) zf_die("%s", err.msg);
}

static void dataset_spec(const zf_options *o, zf_dataset_spec *spec)
{
    zf_err err;
    if (zf_dataset_spec_set(spec, o->dataset_name, o->dataset_config, o->text_field, &err) != 0) zf_die("%s", err.msg);
}


/* ---------------------------------------------------------------- prepare */

typedef struct text_sink {
    FILE *f;
    size_t bytes, cap;
} text_sink;

static int sink_doc(void *ctx, const char *text, size_t len)
{
    text_sink *s = ctx;
    if (s->bytes >= s->cap) return 1; /* enough text to learn from: stop early */
    if (fwrite(text, 1, len, s->f) != len || fputc('\n', s->f) == EOF) return -1;
    s->bytes += len + 1;
    return 0;
}

static int dir_has(const char *dir, const char *file)
{
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return access(p, R_OK) == 0;
}

/* Train (once) a vocabulary on the train split; the cache key covers the
 * dataset's files (name, size, mtime) and the vocabulary size. */
static void train_cached_tokenizer(const zf_options *o, const zf_dataset_files *files, const zf_dataset_spec *spec,
                                   const char *cache, char *out, size_t n)
{
    uint64_t h = ZF_FNV1A64_INIT;
    for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++)
        for (int i = 0; i < files->nfiles[sp]; i++) {
            struct stat st;
            const char *f = files->files[sp][i];
            h = zf_fnv1a64(h, f, strlen(f) + 1);
            if (stat(f, &st) == 0) {
                h = zf_fnv1a64(h, &st.st_size, sizeof st.st_size);
                h = zf_fnv1a64(h, &st.st_mtime, sizeof st.st_mtime);
            }
        }
    h = zf_fnv1a64(h, spec->text_field, strlen(spec->text_field));
    snprintf(out, n, "%s/tokenizers/bpe-%d-%016llx", cache, o->vocab_size, (unsigned long long)h);
    if (dir_has(out, "vocab.json") && dir_has(out, "merges.txt")) return;

    char parent[1024], corpus[1100];
    snprintf(parent, sizeof parent, "%s/tokenizers", cache);
    mkdir(cache, 0755);
    if (mkdir(parent, 0755) != 0 && errno != EEXIST) zf_die("%s: cannot create: %s", parent, strerror(errno));
    if (snprintf(corpus, sizeof corpus, "%s.corpus.%d.txt", out, (int)getpid()) >= (int)sizeof corpus)
        zf_die("%s: cache path too long", out);
    text_sink s = { fopen(corpus, "wb"), 0, TRAIN_TEXT_CAP };
    if (!s.f) zf_die("%s: cannot create: %s", corpus, strerror(errno));
    zf_err err;
    int rc = zf_dataset_foreach_doc(files, ZF_SPLIT_TRAIN, spec, sink_doc, &s, &err);
    if (fclose(s.f) != 0 || rc < 0) {
        unlink(corpus);
        zf_die("%s", rc < 0 ? err.msg : "cannot write the tokenizer training text");
    }
    zf_info("training a %d-token BPE vocabulary on %.1f MB of the train split (once; cached in %s)",
            o->vocab_size, (double)s.bytes / 1e6, out);
    double t0 = zf_now();
    const char *inputs[1] = { corpus };
    rc = zf_bpe_train(inputs, 1, o->vocab_size, out, &err);
    unlink(corpus);
    if (rc != 0) zf_die("%s", err.msg);
    zf_info("tokenizer trained in %.1f s", zf_now() - t0);
}

int zf_tok_prepare_main(int argc, char **argv)
{
    zf_options o;
    parse_or_die(argc, argv, &o);
    if (o.replay[0]) return zf_tok_replay_prepare(&o); /* no dataset: the streams stand for it */
    zf_err err;
    char cache[900];
    zf_cache_dir(cache, sizeof cache);
    zf_dataset_spec spec;
    dataset_spec(&o, &spec);
    zf_dataset_files files;
    if (zf_dataset_resolve(&spec, cache, &files, &err) != 0) zf_die("%s", err.msg);

    char tok[1024];
    if (o.tokenizer[0]) {
        snprintf(tok, sizeof tok, "%s", o.tokenizer);
    } else {
        char model_path[1024];
        int is_preset = 0;
        if (zf_model_resolve(o.model_name, model_path, sizeof model_path, &is_preset, &err) != 0)
            zf_die("%s", err.msg);
        if (is_preset) train_cached_tokenizer(&o, &files, &spec, cache, tok, sizeof tok);
        else snprintf(tok, sizeof tok, "%s", model_path);
    }
    zf_bpe *bpe = NULL;
    if (zf_bpe_load(tok, &bpe, &err) != 0) zf_die("%s", err.msg);
    if (zf_bpe_eot_id(bpe) < 0) zf_die("%s: expected an <|endoftext|> token in the vocabulary", tok);
    zf_info("tokenizer %s: %d tokens", tok, zf_bpe_vocab_size(bpe));
    zf_bpe_free(bpe);
    zf_dataset_files_free(&files);
    printf("%s\n", tok);
    return 0;
}

/* ------------------------------------------------------------ coordinator */

/* Where an accepted result waits until its turn to be copied: a slot of a
 * worker's arena (arena >= 0), or a segment of its own (own). */
typedef struct result_ref {
    zf_shm own;
    int arena, slot;
    const int32_t *data;
    size_t count;
} result_ref;

typedef struct split_text {
    zf_shm text, docs;       /* documents' bytes and their offsets [ndocs+1] */
    size_t ndocs, bytes;
    int first_job, njobs;
    result_ref *results;     /* per job, until copied */
    zf_shm tokens;           /* created at load with room for the most tokens the split can have */
    size_t cap;              /* that room, in tokens */
    int next_copy;           /* jobs [0, next_copy) are copied into tokens ... */
    size_t filled;           /* ... as tokens [0, filled) */
    size_t ntokens;          /* the split's tokens, once ready */
    int ready;
} split_text;

typedef struct collect_ctx {
    split_text *st;
    int pass;                /* 0: count, 1: copy */
    size_t doc, off;
} collect_ctx;

static int collect_doc(void *ctx, const char *text, size_t len)
{
    collect_ctx *c = ctx;
    if (c->pass == 1) {
        memcpy((char *)c->st->text.data + c->off, text, len);
        ((int64_t *)c->st->docs.data)[c->doc] = (int64_t)c->off;
    }
    c->doc++;
    c->off += len;
    return 0;
}

static void load_split(const zf_options *o, const zf_dataset_files *files, const zf_dataset_spec *spec, int sp,
                       split_text *st)
{
    zf_err err;
    collect_ctx c = { st, 0, 0, 0 };
    if (zf_dataset_foreach_doc(files, (zf_split)sp, spec, collect_doc, &c, &err) < 0) zf_die("%s", err.msg);
    st->ndocs = c.doc;
    st->bytes = c.off;
    char name[64];
    int64_t shape[1] = { (int64_t)(st->bytes ? st->bytes : 1) };
    snprintf(name, sizeof name, "text-%s", zf_split_name((zf_split)sp));
    if (zf_shm_create(&st->text, o->run_id, name, ZF_DTYPE_U8, 1, shape, &err) != 0) zf_die("%s", err.msg);
    shape[0] = (int64_t)st->ndocs + 1;
    snprintf(name, sizeof name, "docs-%s", zf_split_name((zf_split)sp));
    if (zf_shm_create(&st->docs, o->run_id, name, ZF_DTYPE_I64, 1, shape, &err) != 0) zf_die("%s", err.msg);
    c = (collect_ctx){ st, 1, 0, 0 };
    if (zf_dataset_foreach_doc(files, (zf_split)sp, spec, collect_doc, &c, &err) < 0) zf_die("%s", err.msg);
    if (c.doc != st->ndocs || c.off != st->bytes) zf_die("dataset changed while it was being read");
    ((int64_t *)st->docs.data)[st->ndocs] = (int64_t)st->bytes;
    /* tokens-<split> is filled in place as results come in, so it is made
     * now, as large as the split's tokens can be: byte-level BPE gives at
     * most one token per byte, one more per document where the tokenizer
     * adds a prefix space (add_prefix_space), plus the <|endoftext|> of each
     * document.  Only the pages written are ever allocated; finish_split
     * shrinks it to the real count. */
    st->cap = st->bytes + 2 * st->ndocs;
    snprintf(name, sizeof name, "tokens-%s", zf_split_name((zf_split)sp));
    shape[0] = (int64_t)(st->cap ? st->cap : 1);
    if (zf_shm_create(&st->tokens, o->run_id, name, ZF_DTYPE_I32, 1, shape, &err) != 0) zf_die("%s", err.msg);
}

/* A job is a range of documents of one split.  It is PENDING until leased to
 * a worker, LEASED while one works on it, DONE once a result is accepted; a
 * lease that comes back unfinished (worker left, went silent, or could not
 * do it) makes it PENDING again. */
enum { JOB_PENDING, JOB_LEASED, JOB_DONE };

typedef struct job {
    int split;
    size_t first_doc, ndocs, bytes;
    int state;
    int holder;              /* worker index while LEASED, else -1 */
    int skips;               /* leases handed back by a worker that could not do the job */
    uint64_t lease_seq;      /* order of leasing: a worker does its jobs in this order */
} job;

/* A single document larger than any cut job: leased first, nothing behind it. */
static int job_is_large(const job *jb) { return jb->bytes > JOB_BYTES_MAX; }

typedef struct waiter {
    zf_peer peer;
    int split;
} waiter;

static zf_msg *tokens_ready_msg(int sp, const split_text *st, int vocab)
{
    zf_msg *r = zf_msg_new("tokens_ready");
    zf_msg_set_str(r, "split", zf_split_name((zf_split)sp));
    zf_msg_set_str(r, "shm", st->tokens.name);
    zf_msg_set_int(r, "count", (int64_t)st->ntokens);
    zf_msg_set_int(r, "docs", (int64_t)st->ndocs);
    zf_msg_set_int(r, "vocab_size", vocab);
    return r;
}

/* Control requests of the coordinator: `tokens_req` is answered at once
 * when the split is tokenized, else kept until it is. */
typedef struct coordinator {
    split_text *st;
    int vocab;
    waiter waiters[16];
    int nwaiters;
} coordinator;

static zf_msg *handle_request(void *ctx, const zf_peer *peer, const zf_msg *m, zf_err *err)
{
    coordinator *C = ctx;
    if (!zf_msg_is(m, "tokens_req")) {
        zf_err_set(err, "tokenizerd does not handle '%s'", zf_msg_type(m));
        return NULL;
    }
    int sp = -1;
    for (int k = 0; k < ZF_SPLIT_COUNT; k++)
        if (!strcmp(zf_msg_str(m, "split"), zf_split_name((zf_split)k))) sp = k;
    if (sp < 0) {
        zf_err_set(err, "tokens_req: unknown split '%s'", zf_msg_str(m, "split"));
        return NULL;
    }
    if (C->st[sp].ready) return tokens_ready_msg(sp, &C->st[sp], C->vocab);
    if (C->nwaiters >= 16) {
        zf_err_set(err, "tokens_req: too many waiting clients");
        return NULL;
    }
    C->waiters[C->nwaiters++] = (waiter){ *peer, sp };
    return ZF_REPLY_LATER;
}

/* Called once every job's result is copied into tokens-<split>: cuts the
 * segment to the real count (the shape loaderd sees when it attaches after
 * tokens_ready; a 1-element array for an empty split, as before). */
static void finish_split(const zf_options *o, int sp, split_text *st)
{
    zf_err err;
    size_t total = st->filled;
    if (zf_shm_shrink(&st->tokens, (int64_t)(total ? total : 1), &err) != 0) zf_die("%s", err.msg);
    st->ntokens = total;
    /* --record: the stream gets exactly what loaderd gets */
    if (o->record[0] && zf_tok_record_split(o, sp, st->tokens.data, total, st->ndocs, &err) != 0)
        zf_die("%s", err.msg);
    st->ready = 1;
    /* the text (no longer needed) is freed once every split is done: freeing
     * its pages here took ~2 ms off the end of a 60 ms run */
}

/* ----------------------------------------------------- work distribution */

#define LEASE_S 3.0          /* a worker silent this long is gone: its jobs are re-queued */
#define HEARTBEAT_S 0.5      /* workers' heartbeat period */
#define MAX_SKIPS 8          /* a job handed back unfinished this often is a bug: stop */
/* Jobs leased to a worker at once: the next ones wait at the worker while it
 * encodes, so it does not wait for the coordinator between jobs (on a busy
 * machine a message takes a while to be answered, and the last jobs are
 * short).  Test hook ZF_TOK_TEST_LEASE_DEPTH=N. */
#define LEASE_DEPTH 4
static int g_lease_depth = LEASE_DEPTH;
static int g_trace_leases; /* test hook ZF_TOK_TEST_TRACE_LEASES=1: a log line per lease */

/* Result arenas.  Each worker owns one segment "tokout-<id>-<pid>", made at
 * its first result and kept for its life: a table of ARENA_SLOTS slots
 * (ARENA_TABLE_BYTES), then ARENA_SLOTS regions of SLOT_TOKENS int32.  A
 * worker writes a job's ids into the region of a FREE slot, fills the slot
 * (job, offset, count), marks it FULL and names the arena in tok_result; the
 * coordinator copies the region into tokens-<split> when the job's turn
 * comes and marks the slot FREE again.  So no segment is made, mapped and
 * removed per job, and pages are faulted in once per worker, not per job.
 * A result larger than a region, or one that finds every slot FULL (results
 * waiting behind a late job), gets a "tokres-*" segment of its own. */
#define ARENA_SLOTS 16
#define SLOT_TOKENS (1u << 17)
#define ARENA_TABLE_BYTES 4096u
#define ARENA_TABLE_WORDS (ARENA_TABLE_BYTES / sizeof(int32_t))
enum { SLOT_FREE = 0, SLOT_FULL = 1 };

typedef struct arena_slot {
    _Atomic int32_t state;   /* FULL: set by the worker after the ids; FREE: by the coordinator after the copy */
    int32_t pad;
    int64_t job, offset, count; /* offset in int32 from the start of the segment's data */
} arena_slot;
_Static_assert(ARENA_SLOTS * sizeof(arena_slot) <= ARENA_TABLE_BYTES, "arena table too small");

/* The coordinator's mapping of a worker's arena. */
typedef struct arena_ref {
    zf_shm seg;
    uint8_t claimed[ARENA_SLOTS]; /* slot holds an accepted result not yet copied */
} arena_ref;

typedef struct worker {
    char name[64];
    int64_t pid;
    zf_peer peer;            /* its work socket: where tok_job goes */
    double last_seen, joined;
    int active;              /* heard from within LEASE_S and has not said bye */
    int held;                /* jobs leased to it now (at most g_lease_depth) */
    int held_big;            /* of which jobs above JOB_BYTES_MAX: no job is leased behind one */
    uint64_t want_seq;       /* when it last asked or reported: first come, first served */
    int64_t jobs, docs, bytes;
    double first_lease, last_result; /* for the end-of-run summary */
} worker;

/* The coordinator's view of the work: jobs, workers, leases, totals. */
typedef struct dist {
    zf_daemon *d;
    const zf_options *o;
    void *sock;              /* ROUTER "tok-work" */
    split_text *st;
    job *jobs;
    int njobs;
    worker *w;
    int nw, wcap;
    arena_ref *arenas;
    int narenas, acap;
    char tok_hash[17];       /* the run's tokenizer (zf_bpe_hash): workers must match */
    char res_prefix[200];    /* one-off result segments must be this run's "tokres-*" ... */
    char arena_prefix[200];  /* ... and arenas its "tokout-*" */
    int *order;              /* lease order: a permutation of the job indices (lease_order) */
    int *order_pos;          /* job index -> its position in order */
    int scan_from;           /* no PENDING job before this position of order */
    int done, leased, requeued, duplicates, taken_over;
    uint64_t lease_counter;
    uint64_t want_counter;
    int64_t docs_done, bytes_done, docs_total, bytes_total;
    double t_first, t_done, last_progress, last_idle_warn;
    double t_last_result;    /* the last accepted result */
    double copy_final_s, finish_s; /* the end of the run: last copies, completing the splits */
    double cpu_first;        /* this process's CPU seconds at t_first */
    int progress_due;
    struct split_hash *hash;  /* [ZF_SPLIT_COUNT] */
} dist;

static int find_worker(const dist *D, const char *name)
{
    for (int i = 0; i < D->nw; i++)
        if (!strcmp(D->w[i].name, name)) return i;
    return -1;
}

static int active_workers(const dist *D)
{
    int n = 0;
    for (int i = 0; i < D->nw; i++) n += D->w[i].active;
    return n;
}

/* CPU seconds (user + system, every thread) this process has used. */
static double cpu_seconds(void)
{
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

static int has_prefix(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* A LEASED job stops being leased (done, or back to PENDING by the caller). */
static void unlease(dist *D, job *jb)
{
    if (jb->state != JOB_LEASED) return;
    D->leased--;
    if (jb->holder >= 0 && jb->holder < D->nw && D->w[jb->holder].held > 0) {
        D->w[jb->holder].held--;
        if (job_is_large(jb) && D->w[jb->holder].held_big > 0) D->w[jb->holder].held_big--;
    }
    jb->holder = -1;
}

/* Job j (LEASED) is now held by worker wi, after its other leases. */
static void hold(dist *D, int wi, int j)
{
    job *jb = &D->jobs[j];
    jb->holder = wi;
    jb->lease_seq = ++D->lease_counter;
    D->leased++;
    D->w[wi].held++;
    if (job_is_large(jb)) D->w[wi].held_big++;
}

static void requeue(dist *D, int j)
{
    unlease(D, &D->jobs[j]);
    D->jobs[j].state = JOB_PENDING;
    D->requeued++;
    if (D->order_pos[j] < D->scan_from) D->scan_from = D->order_pos[j];
}

/* Takes back every lease of worker wi (its jobs become PENDING); returns how
 * many, and the first job's index in *first. */
static int release_leases(dist *D, int wi, int *first)
{
    int n = 0;
    *first = -1;
    for (int j = 0; j < D->njobs; j++) {
        job *jb = &D->jobs[j];
        if (jb->state != JOB_LEASED || jb->holder != wi) continue;
        requeue(D, j);
        if (n++ == 0) *first = j;
    }
    D->w[wi].held = 0;
    return n;
}

static void send_job(dist *D, int wi, int j)
{
    job *jb = &D->jobs[j];
    split_text *s = &D->st[jb->split];
    zf_msg *m = zf_msg_new("tok_job");
    zf_msg_set_int(m, "job", j);
    zf_msg_set_str(m, "split", zf_split_name((zf_split)jb->split));
    zf_msg_set_str(m, "text_shm", s->text.name);
    zf_msg_set_str(m, "docs_shm", s->docs.name);
    zf_msg_set_int(m, "offset", (int64_t)jb->first_doc);
    zf_msg_set_int(m, "docs", (int64_t)jb->ndocs);
    zf_msg_set_int(m, "length", (int64_t)jb->bytes);
    zf_err err;
    /* a worker that vanished meanwhile loses the message; its lease expires */
    if (zf_bus_reply(D->sock, &D->w[wi].peer, m, &err) != 0)
        zf_daemon_log(D->d, "warning", "job %d -> %s: %s", j, D->w[wi].name, err.msg);
    zf_msg_free(m);
}

/* Leases pending jobs, lowest index first (so splits complete in order):
 * first to workers that hold none, longest-waiting first; then more to the
 * workers that hold the fewest (up to g_lease_depth), a (k+1)-th job only
 * while more than k jobs per active worker are pending: as the work runs
 * out, fewer jobs wait at workers, and at the very end none waits at one
 * worker while another idles. */
/* When no job is pending and a worker idles while jobs wait at other workers
 * behind the one they are encoding (leased ahead), the idle worker takes over
 * the job that would start last, as long as there is one: so at the end no
 * worker sits idle while another has a queue (a slow or descheduled worker,
 * or one that got the larger jobs).  The first result wins, as always; the
 * other worker's copy of the job is dropped as a duplicate, or skipped when
 * its split is complete (its text is gone). */
static void take_over(dist *D)
{
    uint64_t *oldest = zf_xmalloc((size_t)(D->nw ? D->nw : 1) * sizeof *oldest);
    for (;;) {
        int wi = -1, best = -1;
        for (int i = 0; i < D->nw; i++)
            if (D->w[i].active && D->w[i].held == 0 && (wi < 0 || D->w[i].want_seq < D->w[wi].want_seq)) wi = i;
        if (wi < 0) break;
        for (int i = 0; i < D->nw; i++) oldest[i] = UINT64_MAX;
        for (int j = 0; j < D->njobs; j++) {
            const job *jb = &D->jobs[j];
            if (jb->state == JOB_LEASED && jb->holder >= 0 && jb->lease_seq < oldest[jb->holder])
                oldest[jb->holder] = jb->lease_seq;
        }
        for (int j = 0; j < D->njobs; j++) {
            const job *jb = &D->jobs[j];
            if (jb->state == JOB_LEASED && jb->holder >= 0 && jb->holder != wi && jb->lease_seq > oldest[jb->holder] &&
                (best < 0 || jb->lease_seq > D->jobs[best].lease_seq))
                best = j;
        }
        if (best < 0) break;
        unlease(D, &D->jobs[best]);
        hold(D, wi, best);
        D->taken_over++;
        send_job(D, wi, best);
    }
    free(oldest);
}

static void dispatch(dist *D)
{
    for (;;) {
        int pending = D->njobs - D->done - D->leased, wi = -1;
        if (pending <= 0) {
            take_over(D);
            return;
        }
        for (int i = 0; i < D->nw; i++)
            if (D->w[i].active && D->w[i].held == 0 && (wi < 0 || D->w[i].want_seq < D->w[wi].want_seq)) wi = i;
        if (wi < 0) {
            for (int i = 0; i < D->nw; i++) {
                worker *w = &D->w[i];
                /* a job queued behind a large one would hold up the in-order
                 * assembly of every later result until the large one is done */
                if (!w->active || w->held >= g_lease_depth || w->held_big) continue;
                if (wi < 0 || w->held < D->w[wi].held || (w->held == D->w[wi].held && w->want_seq < D->w[wi].want_seq))
                    wi = i;
            }
            if (wi < 0 || pending <= D->w[wi].held * active_workers(D)) return;
        }
        while (D->scan_from < D->njobs && D->jobs[D->order[D->scan_from]].state != JOB_PENDING) D->scan_from++;
        if (D->scan_from >= D->njobs) return;
        int j = D->order[D->scan_from++];
        D->jobs[j].state = JOB_LEASED;
        hold(D, wi, j);
        double now = zf_now();
        if (D->t_first == 0) {
            D->t_first = now;
            D->cpu_first = cpu_seconds();
        }
        if (D->w[wi].first_lease == 0) D->w[wi].first_lease = now;
        if (g_trace_leases)
            zf_daemon_log(D->d, "info", "lease: job %d (%zu bytes) to %s", j, D->jobs[j].bytes, D->w[wi].name);
        send_job(D, wi, j);
    }
}

/* Removes a result segment nobody will use (a late duplicate, a bad result):
 * only this run's result segments, so a bad message cannot unlink others. */
static void drop_segment(dist *D, const char *name)
{
    if (!has_prefix(name, D->res_prefix)) {
        zf_daemon_log(D->d, "warning", "result segment '%s' is not a result of this run: left alone", name);
        return;
    }
    zf_shm s;
    zf_err err;
    if (zf_shm_attach(&s, name, &err) != 0) return;
    zf_shm_set_owner(&s, 1);
    zf_shm_close(&s);
}

/* The arena named `name`, attached on first sight (-1 and *why if it cannot
 * be).  The coordinator unlinks it when it stops (the worker does too when
 * it leaves with every slot FREE): whoever is last. */
static int arena_get(dist *D, const char *name, const char **why)
{
    for (int a = 0; a < D->narenas; a++)
        if (!strcmp(D->arenas[a].seg.name, name)) return a;
    static char buf[1100]; /* the coordinator is one thread */
    zf_err err;
    zf_shm seg;
    if (zf_shm_attach(&seg, name, &err) != 0) {
        snprintf(buf, sizeof buf, "%s", err.msg);
        *why = buf;
        return -1;
    }
    if (seg.hdr->dtype != ZF_DTYPE_I32 || seg.hdr->ndim != 1 || zf_shm_numel(&seg) < ARENA_TABLE_WORDS) {
        zf_shm_close(&seg);
        *why = "shm: expected a worker's int32 result arena";
        return -1;
    }
    zf_shm_set_owner(&seg, 1);
    if (D->narenas == D->acap)
        D->arenas = zf_xrealloc(D->arenas, (size_t)(D->acap = D->acap ? 2 * D->acap : 16) * sizeof *D->arenas);
    arena_ref *r = &D->arenas[D->narenas];
    memset(r, 0, sizeof *r);
    r->seg = seg;
    return D->narenas++;
}

/* The FULL slot of arena a that holds a result of job j with count tokens
 * and is not claimed yet, or -1.  Two such slots (the same job done twice by
 * one worker) hold the same ids, so either will do. */
static int arena_find(dist *D, int a, int64_t j, int64_t count)
{
    arena_ref *r = &D->arenas[a];
    arena_slot *t = r->seg.data;
    int64_t numel = (int64_t)zf_shm_numel(&r->seg);
    for (int k = 0; k < ARENA_SLOTS; k++) {
        if (r->claimed[k] || atomic_load_explicit(&t[k].state, memory_order_acquire) != SLOT_FULL) continue;
        int64_t off = t[k].offset, n = t[k].count;
        if (t[k].job != j || n != count || off < (int64_t)ARENA_TABLE_WORDS || off > numel || n > numel - off) continue;
        return k;
    }
    return -1;
}

static void arena_free(dist *D, int a, int k)
{
    arena_ref *r = &D->arenas[a];
    r->claimed[k] = 0;
    atomic_store_explicit(&((arena_slot *)r->seg.data)[k].state, SLOT_FREE, memory_order_release);
}

/* Gives back what a result holds: its slot, or its own segment (unlinked). */
static void result_release(dist *D, result_ref *r)
{
    if (r->arena >= 0) arena_free(D, r->arena, r->slot);
    zf_shm_close(&r->own);
    memset(r, 0, sizeof *r);
    r->arena = -1;
}

/* A result that will not be used (late duplicate, unknown job): frees what
 * it occupies. */
static void drop_result(dist *D, const char *seg, int64_t j, int64_t count)
{
    if (has_prefix(seg, D->arena_prefix)) {
        const char *why = NULL;
        int a = arena_get(D, seg, &why);
        int k = a >= 0 ? arena_find(D, a, j, count) : -1;
        if (k >= 0) arena_free(D, a, k);
    } else if (seg[0]) {
        drop_segment(D, seg);
    }
}

/* Locates the result of job j (count tokens) named by `seg` and claims it
 * into *r; NULL, or why it cannot be used. */
static const char *claim_result(dist *D, const char *seg, int64_t j, int64_t count, result_ref *r, char *why,
                                size_t n)
{
    memset(r, 0, sizeof *r);
    r->arena = -1;
    zf_err err;
    if (has_prefix(seg, D->arena_prefix)) {
        const char *bad = NULL;
        int a = arena_get(D, seg, &bad);
        if (a < 0) return bad;
        int k = arena_find(D, a, j, count);
        if (k < 0) return "shm: expected a FULL arena slot holding the job's count tokens";
        arena_ref *ar = &D->arenas[a];
        ar->claimed[k] = 1;
        r->arena = a;
        r->slot = k;
        r->data = (const int32_t *)ar->seg.data + ((arena_slot *)ar->seg.data)[k].offset;
        r->count = (size_t)count;
        return NULL;
    }
    if (!has_prefix(seg, D->res_prefix)) return "shm: expected a tokres-* or tokout-* segment of this run";
    if (zf_shm_attach(&r->own, seg, &err) != 0) {
        snprintf(why, n, "%s", err.msg);
        return why;
    }
    zf_shm_set_owner(&r->own, 1);
    if (r->own.hdr->dtype != ZF_DTYPE_I32 || r->own.hdr->ndim != 1 || (int64_t)zf_shm_numel(&r->own) != count)
        return "shm: expected int32 [count] tokens";
    r->data = r->own.data;
    r->count = (size_t)count;
    return NULL;
}

/* The FNV-1a hash of each split's tokens, logged as one line that tests
 * compare across runs (the tokens must not depend on which worker did which
 * job, or on joins and leaves).  FNV-1a is serial, about a byte per cycle,
 * so it runs in a thread of its own, off the path to `tokens_ready`, and
 * only once every split is complete, so that it takes no core from workers
 * still encoding. */
typedef struct split_hash {
    const split_text *s;
    pthread_t thread;
    int started, logged;
    _Atomic int done;
    uint64_t h;
} split_hash;

static void *hash_main(void *arg)
{
    split_hash *sh = arg;
    sh->h = zf_fnv1a64(ZF_FNV1A64_INIT, sh->s->tokens.data, sh->s->ntokens * sizeof(int32_t));
    atomic_store(&sh->done, 1);
    return NULL;
}

static void hash_start(split_hash *sh, const split_text *s)
{
    sh->s = s;
    if (pthread_create(&sh->thread, NULL, hash_main, sh) == 0) sh->started = 1;
    else hash_main(sh);
}

/* Logs the hashes that are ready (wait=1: waits for all started ones). */
static void hash_log(zf_daemon *d, split_hash *sh, int wait)
{
    for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
        if (!sh[sp].s || sh[sp].logged || (!wait && !atomic_load(&sh[sp].done))) continue;
        if (sh[sp].started) pthread_join(sh[sp].thread, NULL);
        sh[sp].logged = 1;
        zf_daemon_log(d, "info", "split %s: %zu documents, %zu tokens, fnv1a64 %016llx", zf_split_name((zf_split)sp),
                      sh[sp].s->ndocs, sh[sp].s->ntokens, (unsigned long long)sh[sp].h);
    }
}

static int pid_alive(int64_t pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

static void on_want(dist *D, const zf_peer *peer, const zf_msg *m)
{
    const char *name = zf_msg_str(m, "worker");
    int64_t pid = zf_msg_int(m, "pid");
    if (strcmp(zf_msg_str(m, "tokenizer"), D->tok_hash) != 0) {
        char why[1200];
        snprintf(why, sizeof why, "tok_want: tokenizer: expected %s (--tokenizer %s), got %s from %s", D->tok_hash,
                 D->o->tokenizer, zf_msg_str(m, "tokenizer"), name);
        zf_daemon_log(D->d, "warning", "%s: refused", why);
        zf_bus_reply_error(D->sock, peer, why);
        return;
    }
    if (!*name || strlen(name) >= sizeof D->w[0].name) {
        zf_bus_reply_error(D->sock, peer, "tok_want: worker: expected a name of 1..63 bytes");
        return;
    }
    int wi = find_worker(D, name);
    /* A live process keeps its name; one that died (kill -9, then started
     * again under the same id) need not wait for its lease to expire. */
    if (wi >= 0 && D->w[wi].active && D->w[wi].pid != pid && pid_alive(D->w[wi].pid)) {
        char why[256];
        snprintf(why, sizeof why, "tok_want: worker: '%s' is taken by pid %lld; pick another --worker_id", name,
                 (long long)D->w[wi].pid);
        zf_daemon_log(D->d, "warning", "%s (asked by pid %lld): refused", why, (long long)pid);
        zf_bus_reply_error(D->sock, peer, why);
        return;
    }
    if (wi < 0) {
        if (D->nw == D->wcap) D->w = zf_xrealloc(D->w, (size_t)(D->wcap = D->wcap ? 2 * D->wcap : 16) * sizeof *D->w);
        wi = D->nw++;
        memset(&D->w[wi], 0, sizeof D->w[wi]);
        snprintf(D->w[wi].name, sizeof D->w[wi].name, "%s", name);
    }
    worker *w = &D->w[wi];
    double now = zf_now();
    int first;
    if (!w->active || w->pid != pid) {
        /* A new process under this name: the previous one is gone, so are its leases. */
        int n = release_leases(D, wi, &first);
        if (n) zf_daemon_log(D->d, "warning", "%s: previous process gone: job %d re-queued", name, first);
        w->pid = pid;
        w->active = 1;
        w->joined = now;
        D->progress_due = 1;
        zf_daemon_log(D->d, "info", "worker %s (pid %lld) joined: %d active", name, (long long)pid, active_workers(D));
    } else if (release_leases(D, wi, &first) > 0) {
        /* A worker asks (tok_want) only when it holds nothing: asking while
         * holding jobs means it could not do them. */
        zf_daemon_log(D->d, "warning", "%s handed job %d back unfinished: re-queued", name, first);
        if (++D->jobs[first].skips >= MAX_SKIPS)
            zf_die("job %d was handed back unfinished %d times (see the tokenizer workers' logs)", first, MAX_SKIPS);
    }
    w->peer = *peer;
    w->last_seen = now;
    w->want_seq = ++D->want_counter;
    dispatch(D);
}

static void on_heartbeat(dist *D, const zf_msg *m)
{
    int wi = find_worker(D, zf_msg_str(m, "worker"));
    if (wi < 0 || D->w[wi].pid != zf_msg_int(m, "pid")) return; /* not (yet) known: its tok_want registers it */
    worker *w = &D->w[wi];
    double now = zf_now();
    if (!w->active) {
        /* stopped, not dead (e.g. SIGSTOP): it works again; whatever it
         * finishes still counts if nobody finished it first */
        w->active = 1;
        D->progress_due = 1;
        zf_daemon_log(D->d, "info", "worker %s is back after %.1f s of silence", w->name, now - w->last_seen);
        dispatch(D);
    }
    w->last_seen = now;
}

/* tok_result: a job's ids (count >= 0), or (count -1, shm "") the job
 * handed back unfinished, e.g. its text was gone.  Each result is also the
 * worker's ask for the next job. */
static void on_result(dist *D, const zf_msg *m)
{
    int64_t jl = zf_msg_int(m, "job"), count = zf_msg_int(m, "count");
    const char *seg = zf_msg_str(m, "shm");
    int wi = find_worker(D, zf_msg_str(m, "worker"));
    double now = zf_now();
    if (wi >= 0 && D->w[wi].active) {
        D->w[wi].last_seen = now;
        D->w[wi].want_seq = ++D->want_counter;
    }
    if (jl < 0 || jl >= D->njobs) {
        zf_daemon_log(D->d, "warning", "tok_result for unknown job %lld from %s", (long long)jl, zf_msg_str(m, "worker"));
        drop_result(D, seg, jl, count);
        dispatch(D);
        return;
    }
    int j = (int)jl;
    job *jb = &D->jobs[j];
    if (count < 0) {
        if (jb->state == JOB_LEASED && jb->holder == wi && wi >= 0) {
            zf_daemon_log(D->d, "warning", "%s handed job %d back unfinished: re-queued", D->w[wi].name, j);
            requeue(D, j);
            if (++jb->skips >= MAX_SKIPS)
                zf_die("job %d was handed back unfinished %d times (see the tokenizer workers' logs)", j, MAX_SKIPS);
        }
        dispatch(D);
        return;
    }
    if (jb->state == JOB_DONE) {
        /* first result wins; the loser's tokens are identical anyway */
        D->duplicates++;
        zf_daemon_log(D->d, "info", "job %d: late duplicate result from %s dropped", j, zf_msg_str(m, "worker"));
        drop_result(D, seg, j, count);
        dispatch(D);
        return;
    }
    split_text *s = &D->st[jb->split];
    result_ref *res = &s->results[j - s->first_job];
    char why[1200];
    const char *bad = NULL;
    if (zf_msg_int(m, "docs") != (int64_t)jb->ndocs || zf_msg_int(m, "bytes") != (int64_t)jb->bytes ||
        count < (int64_t)jb->ndocs || count > (int64_t)(jb->bytes + 2 * jb->ndocs))
        /* the upper bound is the room load_split reserved: it keeps the
         * in-place copy inside tokens-<split> */
        bad = "expected int32 [count] tokens for the job's docs and bytes (docs <= count <= bytes + 2 * docs)";
    else
        bad = claim_result(D, seg, j, count, res, why, sizeof why);
    if (bad) {
        zf_daemon_log(D->d, "warning", "job %d: bad result from %s (%s): dropped", j, zf_msg_str(m, "worker"), bad);
        if (res->arena >= 0 || res->own.hdr) result_release(D, res);
        else drop_result(D, seg, j, count);
        memset(res, 0, sizeof *res);
        res->arena = -1;
        if (jb->state == JOB_LEASED && jb->holder == wi) {
            requeue(D, j);
            if (++jb->skips >= MAX_SKIPS) zf_die("job %d failed %d times", j, MAX_SKIPS);
        }
        dispatch(D);
        return;
    }
    unlease(D, jb);
    jb->state = JOB_DONE;
    D->done++;
    D->docs_done += (int64_t)jb->ndocs;
    D->bytes_done += (int64_t)jb->bytes;
    if (wi >= 0) {
        D->w[wi].jobs++;
        D->w[wi].docs += (int64_t)jb->ndocs;
        D->w[wi].bytes += (int64_t)jb->bytes;
        D->w[wi].last_result = now;
        D->t_last_result = now;
    }
    /* assemble() copies it once the jobs before it are in */
    dispatch(D);
}

/* Tokens copied into tokens-<split> per turn of the coordinator's loop (about
 * 1 MB, a fraction of a millisecond): a backlog behind a late job is copied
 * over several turns, with the workers' messages answered in between, so
 * that no worker runs out of jobs while the coordinator copies. */
#define COPY_BUDGET (256u * 1024u)

/* The pages of dst[0, n) are new: one madvise faults them all in (much
 * cheaper than a fault per page; kernels before 5.14 refuse it, and the copy
 * faults them as before). */
static void prefault(int32_t *dst, size_t n)
{
    uintptr_t lo = (uintptr_t)dst & ~(uintptr_t)4095, hi = ((uintptr_t)(dst + n) + 4095) & ~(uintptr_t)4095;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
}

/* Threads of the last copy: once every job is in, the workers idle and the
 * copy is all that is left (in a balanced run 16 workers' last results come
 * in one burst, and one thread copying them took ~15 ms of a 60 ms run). */
#define FINAL_COPY_THREADS 8

/* The last copy, every job in: results a..b-1 of split s in parallel, each
 * to its offset (their pages fault in in parallel too). */
static void copy_final(split_text *s, int a, int b)
{
    size_t *off = zf_xmalloc((size_t)(b - a) * sizeof *off), at = s->filled;
    for (int k = a; k < b; k++) {
        off[k - a] = at;
        at += s->results[k].count;
    }
    int32_t *dst = s->tokens.data;
    const int nt = omp_get_num_procs() < FINAL_COPY_THREADS ? omp_get_num_procs() : FINAL_COPY_THREADS;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int k = a; k < b; k++) {
        prefault(dst + off[k - a], s->results[k].count);
        memcpy(dst + off[k - a], s->results[k].data, s->results[k].count * sizeof(int32_t));
    }
    free(off);
}

/* Copies into tokens-<split> the results whose earlier jobs are all in, in
 * job order, while later jobs are still being worked on; results that come
 * early wait where the worker put them.  So when the last job comes in only
 * the results since the last gap are left to copy.  Completes the split then.
 * Copies about COPY_BUDGET tokens at most while jobs are out (returns 1 if
 * more are ready to copy), everything at once with threads when none is. */
static int assemble(dist *D, int sp)
{
    split_text *s = &D->st[sp];
    if (s->ready) return 0;
    const int final = D->done == D->njobs;
    int a = s->next_copy, b = a;
    size_t end = s->filled;
    while (b < s->njobs && D->jobs[s->first_job + b].state == JOB_DONE &&
           (final || b == a || end - s->filled < COPY_BUDGET))
        end += s->results[b++].count;
    if (end > s->cap) /* on_result keeps every result within its job's share: a bug */
        zf_die("split %s: %zu tokens do not fit the %zu reserved", zf_split_name((zf_split)sp), end, s->cap);
    if (b > a && final && b - a > 1) {
        const double t0 = zf_now();
        copy_final(s, a, b);
        for (int k = a; k < b; k++) result_release(D, &s->results[k]);
        D->copy_final_s += zf_now() - t0;
        s->filled = end;
        s->next_copy = b;
    } else if (b > a) {
        /* One thread: threads woken here would take cores from the workers. */
        prefault((int32_t *)s->tokens.data + s->filled, end - s->filled);
        for (int k = a; k < b; k++) {
            memcpy((int32_t *)s->tokens.data + s->filled, s->results[k].data, s->results[k].count * sizeof(int32_t));
            s->filled += s->results[k].count;
            result_release(D, &s->results[k]);
        }
        s->next_copy = b;
    }
    if (s->next_copy == s->njobs) {
        const double t0 = zf_now();
        finish_split(D->o, sp, s);
        D->finish_s += zf_now() - t0;
        return 0;
    }
    return D->jobs[s->first_job + s->next_copy].state == JOB_DONE;
}

static void on_bye(dist *D, const zf_msg *m)
{
    int wi = find_worker(D, zf_msg_str(m, "worker"));
    if (wi < 0 || D->w[wi].pid != zf_msg_int(m, "pid")) return;
    worker *w = &D->w[wi];
    int first, n = release_leases(D, wi, &first);
    w->active = 0;
    D->progress_due = 1;
    char back[64] = "";
    if (n) snprintf(back, sizeof back, "; job %d handed back", first);
    zf_daemon_log(D->d, "info", "worker %s left after %lld jobs%s: %d active", w->name, (long long)w->jobs, back,
                  active_workers(D));
    dispatch(D);
}

/* Workers silent for longer than the lease are gone: their jobs go back. */
static void expire(dist *D)
{
    double now = zf_now();
    int changed = 0;
    for (int i = 0; i < D->nw; i++) {
        worker *w = &D->w[i];
        if (!w->active || now - w->last_seen <= LEASE_S) continue;
        int first, n = release_leases(D, i, &first);
        w->active = 0;
        changed = D->progress_due = 1;
        char back[64] = "";
        if (n) snprintf(back, sizeof back, "; job %d re-queued", first);
        zf_daemon_log(D->d, "warning", "worker %s (pid %lld) silent for %.1f s: considered gone%s", w->name,
                      (long long)w->pid, now - w->last_seen, back);
    }
    if (changed) dispatch(D);
}

static void handle_work(dist *D, const zf_peer *peer, const zf_msg *m)
{
    if (zf_msg_is(m, "tok_want")) on_want(D, peer, m);
    else if (zf_msg_is(m, "tok_heartbeat")) on_heartbeat(D, m);
    else if (zf_msg_is(m, "tok_result")) on_result(D, m);
    else if (zf_msg_is(m, "tok_bye")) on_bye(D, m);
    else zf_daemon_log(D->d, "warning", "tok-work: unexpected '%s' ignored", zf_msg_type(m));
}

static void publish_progress(dist *D)
{
    double now = zf_now(), secs = D->t_first > 0 ? (D->t_done > 0 ? D->t_done : now) - D->t_first : 0;
    zf_msg *p = zf_msg_new("tok_progress");
    zf_msg_set_int(p, "jobs_done", D->done);
    zf_msg_set_int(p, "jobs_total", D->njobs);
    zf_msg_set_int(p, "jobs_leased", D->leased);
    zf_msg_set_int(p, "docs_done", D->docs_done);
    zf_msg_set_int(p, "docs_total", D->docs_total);
    zf_msg_set_int(p, "bytes_done", D->bytes_done);
    zf_msg_set_int(p, "bytes_total", D->bytes_total);
    zf_msg_set_f64(p, "mb_per_s", secs > 0 ? (double)D->bytes_done / 1e6 / secs : 0.0);
    zf_msg_set_f64(p, "seconds", secs);
    zf_msg_set_int(p, "workers", active_workers(D));
    zf_msg_set_int(p, "requeued", D->requeued);
    zf_msg_set_int(p, "duplicates", D->duplicates);
    zf_daemon_publish(D->d, p);
    zf_msg_free(p);
    D->last_progress = now;
    D->progress_due = 0;
}

/* Test hook: ZF_TOK_TEST_JOB_BYTES=N cuts jobs of about N bytes (instead
 * of the guided sizes) so that short test corpora still make many jobs. */
static size_t job_bytes_fixed(void)
{
    const char *e = getenv("ZF_TOK_TEST_JOB_BYTES");
    long v = e ? atol(e) : 0;
    return v >= 1 ? (size_t)v : 0;
}

/* Test hooks ZF_TOK_TEST_LEASE_DEPTH=N (1..16): at most N jobs per worker;
 * ZF_TOK_TEST_TRACE_LEASES=1: log each lease. */
static void lease_depth_from_env(void)
{
    const char *e = getenv("ZF_TOK_TEST_LEASE_DEPTH");
    long v = e ? atol(e) : 0;
    if (v >= 1 && v <= 16) g_lease_depth = (int)v;
    e = getenv("ZF_TOK_TEST_TRACE_LEASES");
    g_trace_leases = e && atoi(e) == 1;
}

/* The size of the job that starts when `left` bytes of text (of every split,
 * in lease order) are still to be leased. */
static size_t job_bytes_guided(size_t left)
{
    size_t t = left / JOB_GUIDE;
    return t < JOB_BYTES_MIN ? JOB_BYTES_MIN : t > JOB_BYTES_MAX ? JOB_BYTES_MAX : t;
}

/* The order jobs are leased in: jobs above JOB_BYTES_MAX (single documents
 * larger than any cut job) first, largest first, then the rest in text
 * order.  One such document leased late kept one worker busy ~17 ms after
 * the 15 others had finished, in a 65 ms run of 16 workers on 20 MB: a long
 * job must start early.  Results are still assembled in text order. */
static int cmp_job_desc(const void *a, const void *b, void *ctx)
{
    const job *jobs = ctx;
    const int i = *(const int *)a, j = *(const int *)b;
    if (jobs[i].bytes != jobs[j].bytes) return jobs[i].bytes > jobs[j].bytes ? -1 : 1;
    return (i > j) - (i < j);
}

static void lease_order(dist *D)
{
    D->order = zf_xmalloc((size_t)(D->njobs ? D->njobs : 1) * sizeof *D->order);
    D->order_pos = zf_xmalloc((size_t)(D->njobs ? D->njobs : 1) * sizeof *D->order_pos);
    int n = 0;
    for (int j = 0; j < D->njobs; j++)
        if (job_is_large(&D->jobs[j])) D->order[n++] = j;
    const int big = n;
    qsort_r(D->order, (size_t)n, sizeof *D->order, cmp_job_desc, D->jobs);
    for (int j = 0; j < D->njobs; j++)
        if (!job_is_large(&D->jobs[j])) D->order[n++] = j;
    for (int k = 0; k < D->njobs; k++) D->order_pos[D->order[k]] = k;
    if (big)
        zf_daemon_log(D->d, "info", "%d jobs of one document above %u KiB are leased first (largest %.2f MB, job %d)",
                      big, JOB_BYTES_MAX / 1024u, (double)D->jobs[D->order[0]].bytes / 1e6, D->order[0]);
}

int zf_tok_serve_main(int argc, char **argv)
{
    zf_options o;
    parse_or_die(argc, argv, &o);
    zf_err err;
    zf_daemon d;
    if (zf_daemon_start(&d, "tokenizerd", o.run_dir, 1, &err) != 0) zf_die("%s", err.msg);
    void *work = zf_bus_socket(&d.bus, ZMQ_ROUTER, "tok-work", 1, &err);
    if (!work) zf_die("%s", err.msg);
    zf_bpe *bpe = NULL;
    if (zf_bpe_load(o.tokenizer, &bpe, &err) != 0) zf_die("%s", err.msg);
    int vocab = zf_bpe_vocab_size(bpe);
    dist D;
    memset(&D, 0, sizeof D);
    D.d = &d;
    D.o = &o;
    D.sock = work;
    snprintf(D.tok_hash, sizeof D.tok_hash, "%016llx", (unsigned long long)zf_bpe_hash(bpe));
    zf_shm_name(D.res_prefix, sizeof D.res_prefix, o.run_id, "tokres-");
    zf_shm_name(D.arena_prefix, sizeof D.arena_prefix, o.run_id, "tokout-");
    zf_bpe_free(bpe);
    /* Ready to take requests; tokenization goes on in the loop below. */
    zf_daemon_set_state(&d, "ready", NULL);

    char cache[900];
    zf_cache_dir(cache, sizeof cache);
    zf_dataset_spec spec;
    dataset_spec(&o, &spec);
    zf_dataset_files files;
    if (zf_dataset_resolve(&spec, cache, &files, &err) != 0) zf_die("%s", err.msg);
    static split_text st[ZF_SPLIT_COUNT];
    static split_hash hashes[ZF_SPLIT_COUNT];
    D.hash = hashes;
    job *jobs = NULL;
    int njobs = 0, cap = 0;
    size_t fixed = job_bytes_fixed(), left = 0;
    lease_depth_from_env();
    double t_load = zf_now();
    for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
        load_split(&o, &files, &spec, sp, &st[sp]);
        left += st[sp].bytes;
    }
    for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
        st[sp].first_job = njobs;
        const int64_t *offs = st[sp].docs.data;
        size_t first = 0;
        while (first < st[sp].ndocs) {
            size_t target = fixed ? fixed : job_bytes_guided(left), last = first + 1;
            while (last < st[sp].ndocs && (size_t)(offs[last + 1] - offs[first]) <= target) last++;
            if (njobs == cap) jobs = zf_xrealloc(jobs, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *jobs);
            size_t bytes = (size_t)(offs[last] - offs[first]);
            jobs[njobs++] = (job){ sp, first, last - first, bytes, JOB_PENDING, -1, 0, 0 };
            left -= bytes;
            first = last;
        }
        st[sp].njobs = njobs - st[sp].first_job;
        st[sp].results = zf_xcalloc((size_t)(st[sp].njobs ? st[sp].njobs : 1), sizeof(result_ref));
        for (int k = 0; k < st[sp].njobs; k++) st[sp].results[k].arena = -1;
        if (st[sp].njobs == 0) finish_split(&o, sp, &st[sp]);
        zf_daemon_log(&d, "info", "%s: %zu documents, %.2f MB, %d jobs", zf_split_name((zf_split)sp),
                      st[sp].ndocs, (double)st[sp].bytes / 1e6, st[sp].njobs);
        D.docs_total += (int64_t)st[sp].ndocs;
        D.bytes_total += (int64_t)st[sp].bytes;
    }
    zf_dataset_files_free(&files);
    zf_daemon_log(&d, "info", "splits loaded in %.2f s; leasing jobs to workers as they ask", zf_now() - t_load);
    zf_daemon_log(&d, "info", "more workers can join: bin/tokenizerd worker --worker_id N --run_dir %s --run_id %s "
                  "--tokenizer %s", o.run_dir, o.run_id, o.tokenizer);
    D.st = st;
    D.jobs = jobs;
    D.njobs = njobs;
    lease_order(&D);
    D.last_idle_warn = zf_now();

    coordinator C;
    memset(&C, 0, sizeof C);
    C.st = st;
    C.vocab = vocab;
    int stop = 0, announced = 0, copy_left = 0;
    while (!stop && !zf_stop_signal) {
        zmq_pollitem_t items[2] = { { d.ctl, 0, ZMQ_POLLIN, 0 }, { work, 0, ZMQ_POLLIN, 0 } };
        if (zmq_poll(items, 2, copy_left ? 0 : 100) < 0) continue;
        /* Everything queued is handled before leases are judged, so a pause
         * of this process never makes live workers look silent. */
        int drained = 1;
        for (int k = 0; (items[1].revents & ZMQ_POLLIN) && k < 4096; k++) {
            zf_peer peer;
            zf_msg *m = NULL;
            int rc = zf_bus_recv_from(work, &peer, &m, 0, &err);
            if (rc == 1) break;
            if (rc < 0) zf_daemon_log(&d, "warning", "tok-work: %s", err.msg);
            else handle_work(&D, &peer, m);
            zf_msg_free(m);
            if (k == 4095) drained = 0;
        }
        /* after the drain, so that the workers' next asks are served first */
        int all_ready = 1;
        copy_left = 0;
        for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
            copy_left |= assemble(&D, sp);
            all_ready &= st[sp].ready;
        }
        if (all_ready && !hashes[0].s)
            for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) hash_start(&hashes[sp], &st[sp]);
        if (items[0].revents & ZMQ_POLLIN) zf_daemon_serve_one(&d, 0, handle_request, &C, &stop);
        for (int i = 0; i < C.nwaiters;) {
            int sp = C.waiters[i].split;
            if (st[sp].ready) {
                zf_msg *r = tokens_ready_msg(sp, &st[sp], vocab);
                zf_bus_reply(d.ctl, &C.waiters[i].peer, r, NULL);
                zf_msg_free(r);
                C.waiters[i] = C.waiters[--C.nwaiters];
            } else {
                i++;
            }
        }
        if (drained) expire(&D);
        hash_log(&d, hashes, 0);
        double now = zf_now();
        if (D.done < njobs && active_workers(&D) == 0 && now - D.last_idle_warn > 10) {
            D.last_idle_warn = now;
            zf_daemon_log(&d, "warning", "%d of %d jobs wait and no tokenizer worker is active; start one with: "
                          "bin/tokenizerd worker --worker_id N --run_dir %s --run_id %s --tokenizer %s",
                          njobs - D.done, njobs, o.run_dir, o.run_id, o.tokenizer);
        }
        if (!announced && D.done == njobs && all_ready) {
            announced = 1;
            D.t_done = now;
            for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
                zf_shm_close(&st[sp].text);
                zf_shm_close(&st[sp].docs);
            }
            D.progress_due = 1;
            size_t tokens = 0;
            for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) tokens += st[sp].ntokens;
            double secs = D.t_first > 0 ? D.t_done - D.t_first : 0;
            zf_daemon_log(&d, "info", "tokenized %.2f MB into %zu tokens in %.3f s (%.2f MB/s); %d jobs; the "
                          "coordinator used %.3f s of CPU meanwhile",
                          (double)D.bytes_total / 1e6, tokens, secs,
                          (double)D.bytes_total / 1e6 / (secs > 0 ? secs : 1e-9), njobs, cpu_seconds() - D.cpu_first);
            /* when each worker started and stopped contributing: a late
             * join or an early finish shows here */
            for (int i = 0; i < D.nw; i++) {
                worker *w = &D.w[i];
                zf_daemon_log(&d, "info", "worker %s: %lld jobs, %lld documents, %.2f MB; first lease at %+.1f ms, "
                              "last result at %+.1f ms", w->name, (long long)w->jobs, (long long)w->docs,
                              (double)w->bytes / 1e6, w->first_lease > 0 ? 1e3 * (w->first_lease - D.t_first) : -1.0,
                              w->last_result > 0 ? 1e3 * (w->last_result - D.t_first) : -1.0);
            }
            zf_daemon_log(&d, "info", "leases re-queued: %d, jobs taken over from a worker's queue: %d, duplicate "
                          "results dropped: %d", D.requeued, D.taken_over, D.duplicates);
            zf_daemon_log(&d, "info", "the end: %.1f ms from the last result to done, of which %.1f ms the last "
                          "copies and %.1f ms completing the splits", 1e3 * (D.t_done - D.t_last_result),
                          1e3 * D.copy_final_s, 1e3 * D.finish_s);
        }
        if (D.progress_due || (D.done < njobs && now - D.last_progress >= 1.0)) publish_progress(&D);
    }
    zf_daemon_set_state(&d, "stopping", NULL);
    /* Workers started by hand are not the supervisor's: tell them to go. */
    for (int i = 0; i < D.nw; i++) {
        if (!D.w[i].active) continue;
        zf_msg *m = zf_msg_new("shutdown");
        zf_msg_set_str(m, "reason", "tokenizerd is stopping");
        zf_bus_reply(work, &D.w[i].peer, m, NULL);
        zf_msg_free(m);
    }
    int linger = 500;
    zmq_setsockopt(work, ZMQ_LINGER, &linger, sizeof linger);
    hash_log(&d, hashes, 1); /* the threads read the segments closed below */
    for (int sp = 0; sp < ZF_SPLIT_COUNT; sp++) {
        for (int j = 0; j < st[sp].njobs; j++) zf_shm_close(&st[sp].results[j].own);
        free(st[sp].results);
        zf_shm_close(&st[sp].text);
        zf_shm_close(&st[sp].docs);
        zf_shm_close(&st[sp].tokens);
    }
    for (int a = 0; a < D.narenas; a++) zf_shm_close(&D.arenas[a].seg);
    free(D.arenas);
    free(jobs);
    free(D.order);
    free(D.order_pos);
    free(D.w);
    zf_bus_close_socket(work);
    zf_daemon_finish(&d);
    return 0;
}

/* ----------------------------------------------------------------- worker */

/* The workers' DEALER, as zf_bus_socket makes it but retrying a refused
 * connection every 10 ms instead of ZeroMQ's 100: workers often start
 * before the coordinator binds, and one that connects late starts late. */
static void *work_socket(zf_bus *bus, zf_err *err)
{
    void *s = zmq_socket(bus->ctx, ZMQ_DEALER);
    if (!s) {
        zf_err_set(err, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int linger = 0, ivl = 10;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    char ep[512];
    zf_bus_endpoint(bus, "tok-work", ep, sizeof ep);
    if (zmq_connect(s, ep) != 0) {
        zf_err_set(err, "connect %s: %s", ep, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* The heartbeat runs in its own thread with its own socket so that a long
 * job (one huge document) never looks like silence. */
typedef struct heartbeat {
    zf_bus *bus;
    const char *name;
    _Atomic int stop;
    _Atomic int64_t job;     /* the job being worked on, -1 when idle */
    pthread_t thread;
    int started;
} heartbeat;

static void *heartbeat_main(void *arg)
{
    heartbeat *h = arg;
    zf_err err;
    void *s = work_socket(h->bus, &err);
    if (!s) {
        zf_warn("heartbeat: %s", err.msg);
        return NULL;
    }
    while (!atomic_load(&h->stop)) {
        zf_msg *m = zf_msg_new("tok_heartbeat");
        zf_msg_set_str(m, "worker", h->name);
        zf_msg_set_int(m, "pid", getpid());
        zf_msg_set_int(m, "job", atomic_load(&h->job));
        zf_bus_dealer_send(s, m, 1, NULL); /* never block: a full queue means nobody listens */
        zf_msg_free(m);
        for (int i = 0; i < 10 && !atomic_load(&h->stop); i++) usleep((useconds_t)(HEARTBEAT_S * 1e6 / 10));
    }
    zf_bus_close_socket(s);
    return NULL;
}

static void heartbeat_start(heartbeat *h)
{
    /* Stop signals go to the main thread, whose waits they cut short. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    h->started = pthread_create(&h->thread, NULL, heartbeat_main, h) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!h->started) zf_die("cannot start the heartbeat thread");
}

static void heartbeat_stop(heartbeat *h)
{
    if (!h->started) return;
    atomic_store(&h->stop, 1);
    pthread_join(h->thread, NULL);
    h->started = 0;
}

typedef struct worker_state {
    const zf_options *o;
    zf_daemon *d;
    const char *name;
    zf_bpe *bpe;
    int32_t eot;
    void *sock;
    int delay_ms;            /* test hook ZF_TOK_TEST_DELAY_MS */
    unsigned seq;            /* result segments made so far (their names must be unique) */
    zf_shm arena;            /* its result arena (see ARENA_SLOTS), made at the first result */
    int arena_failed;        /* could not be made: every result gets a segment of its own */
    zf_ids ids;
    int64_t jobs, docs, bytes;
    double busy, last_stats;
    double idle_since, waited; /* since when it holds no job; time so spent after its first job */
    double first_job, last_sent;
    int stats_due;
} worker_state;

/* A FREE slot of the worker's arena with room for n tokens (the arena is
 * made on first use), or NULL: then the result gets a segment of its own. */
static arena_slot *arena_take(worker_state *W, size_t n)
{
    if (n > SLOT_TOKENS || W->arena_failed) return NULL;
    if (!W->arena.hdr) {
        char name[96];
        zf_err err;
        snprintf(name, sizeof name, "tokout-%s-%d", W->name + strlen("tokenizer-worker-"), (int)getpid());
        int64_t shape[1] = { (int64_t)(ARENA_TABLE_WORDS + (size_t)ARENA_SLOTS * SLOT_TOKENS) };
        if (zf_shm_create(&W->arena, W->o->run_id, name, ZF_DTYPE_I32, 1, shape, &err) != 0) {
            zf_warn("%s: results go into segments of their own", err.msg);
            W->arena_failed = 1;
            return NULL;
        }
    }
    arena_slot *t = W->arena.data;
    for (int k = 0; k < ARENA_SLOTS; k++)
        if (atomic_load_explicit(&t[k].state, memory_order_acquire) == SLOT_FREE) {
            t[k].offset = (int64_t)(ARENA_TABLE_WORDS + (size_t)k * SLOT_TOKENS);
            return &t[k];
        }
    return NULL;
}

/* The arena goes when the worker does, unless the coordinator has not taken
 * every result out of it yet: then the coordinator removes it (it owns its
 * mapping of it) or, if it is gone too, the run's cleanup. */
static void arena_close(worker_state *W)
{
    if (!W->arena.hdr) return;
    arena_slot *t = W->arena.data;
    int busy = 0;
    for (int k = 0; k < ARENA_SLOTS; k++) busy |= atomic_load_explicit(&t[k].state, memory_order_acquire) != SLOT_FREE;
    zf_shm_set_owner(&W->arena, !busy);
    zf_shm_close(&W->arena);
}

static void publish_worker_stats(worker_state *W)
{
    zf_msg *stats = zf_msg_new("tok_stats");
    zf_msg_set_str(stats, "worker", W->name);
    zf_msg_set_int(stats, "docs", W->docs);
    zf_msg_set_int(stats, "bytes", W->bytes);
    zf_msg_set_f64(stats, "mb_per_s", (double)W->bytes / 1e6 / (W->busy > 0 ? W->busy : 1e-9));
    zf_daemon_publish(W->d, stats);
    zf_msg_free(stats);
    W->last_stats = zf_now();
    W->stats_due = 0;
}

enum { JOB_SENT, JOB_STOPPED, JOB_SKIPPED };

/* Does one job: JOB_SENT (result sent), JOB_STOPPED (a stop signal came
 * first: the job goes back) or JOB_SKIPPED (its text is gone, e.g. the
 * split was finished by another worker meanwhile). */
static int do_job(worker_state *W, const zf_msg *m)
{
    long long jid = (long long)zf_msg_int(m, "job");
    zf_shm text, docs;
    zf_err err;
    if (zf_shm_attach(&text, zf_msg_str(m, "text_shm"), &err) != 0) {
        zf_warn("job %lld: %s: skipped", jid, err.msg);
        return JOB_SKIPPED;
    }
    if (zf_shm_attach(&docs, zf_msg_str(m, "docs_shm"), &err) != 0) {
        zf_warn("job %lld: %s: skipped", jid, err.msg);
        zf_shm_close(&text);
        return JOB_SKIPPED;
    }
    int64_t first = zf_msg_int(m, "offset"), n = zf_msg_int(m, "docs");
    const int64_t *offs = docs.data;
    int rc = JOB_SKIPPED;
    if (first < 0 || n < 0 || (uint64_t)(first + n + 1) > zf_shm_numel(&docs)) {
        zf_warn("job %lld: documents %lld..%lld out of range: skipped", jid, (long long)first, (long long)(first + n));
        goto out;
    }
    if (W->delay_ms > 0) {
        zf_info("job %lld: test delay %d ms", jid, W->delay_ms);
        for (int t = 0; t < W->delay_ms && !zf_stop_signal; t += 10) usleep(10000);
    }
    double t0 = zf_now();
    W->ids.len = 0;
    for (int64_t i = first; i < first + n; i++) {
        if (zf_stop_signal) {
            rc = JOB_STOPPED;
            goto out;
        }
        int64_t a = offs[i], b = offs[i + 1];
        if (a < 0 || b < a || (uint64_t)b > text.hdr->data_bytes) {
            zf_warn("job %lld: bad document offsets: skipped", jid);
            goto out;
        }
        if (zf_bpe_encode(W->bpe, (const char *)text.data + a, (size_t)(b - a), 0, &W->ids, &err) != 0)
            zf_die("job %lld: %s", jid, err.msg);
        zf_ids_push(&W->ids, W->eot);
    }
    int64_t job_bytes = offs[first + n] - offs[first];
    zf_msg *r = zf_msg_new("tok_result");
    zf_msg_set_int(r, "job", jid);
    zf_msg_set_str(r, "worker", W->name);
    zf_msg_set_int(r, "count", (int64_t)W->ids.len);
    zf_msg_set_int(r, "docs", n);
    zf_msg_set_int(r, "bytes", job_bytes);
    arena_slot *slot = arena_take(W, W->ids.len);
    if (slot) {
        memcpy((int32_t *)W->arena.data + slot->offset, W->ids.data, W->ids.len * sizeof(int32_t));
        slot->job = jid;
        slot->count = (int64_t)W->ids.len;
        atomic_store_explicit(&slot->state, SLOT_FULL, memory_order_release); /* after the ids */
        zf_msg_set_str(r, "shm", W->arena.name);
    } else {
        char seg[96];
        snprintf(seg, sizeof seg, "tokres-%lld-%d-%u", jid, (int)getpid(), W->seq++);
        zf_shm res;
        int64_t shape[1] = { (int64_t)(W->ids.len ? W->ids.len : 1) };
        if (zf_shm_create(&res, W->o->run_id, seg, ZF_DTYPE_I32, 1, shape, &err) != 0) zf_die("%s", err.msg);
        memcpy(res.data, W->ids.data, W->ids.len * sizeof(int32_t));
        zf_msg_set_str(r, "shm", res.name);
        zf_shm_set_owner(&res, 0); /* the coordinator unlinks it */
        zf_shm_close(&res);
    }
    if (zf_bus_dealer_send(W->sock, r, 0, &err) != 0) zf_die("%s", err.msg);
    zf_msg_free(r);
    W->last_sent = zf_now();
    W->busy += W->last_sent - t0;
    W->jobs++;
    W->docs += n;
    W->bytes += job_bytes;
    W->stats_due = 1;
    rc = JOB_SENT;
out:
    zf_shm_close(&text);
    zf_shm_close(&docs);
    return rc;
}

static void send_want(worker_state *W, const char *tok_hash)
{
    zf_err err;
    zf_msg *m = zf_msg_new("tok_want");
    zf_msg_set_str(m, "worker", W->name);
    zf_msg_set_int(m, "pid", getpid());
    zf_msg_set_str(m, "tokenizer", tok_hash);
    if (zf_bus_dealer_send(W->sock, m, 0, &err) != 0) zf_die("%s", err.msg);
    zf_msg_free(m);
}

/* A job it could not do goes back (count -1): only that one, so the job
 * queued behind it stays leased. */
static void send_handback(worker_state *W, int64_t job)
{
    zf_err err;
    zf_msg *r = zf_msg_new("tok_result");
    zf_msg_set_int(r, "job", job);
    zf_msg_set_str(r, "worker", W->name);
    zf_msg_set_str(r, "shm", "");
    zf_msg_set_int(r, "count", -1);
    zf_msg_set_int(r, "docs", 0);
    zf_msg_set_int(r, "bytes", 0);
    if (zf_bus_dealer_send(W->sock, r, 0, &err) != 0) zf_die("%s", err.msg);
    zf_msg_free(r);
}

/* ZF_TOK_WORKER_NICE=N (1..19) runs the encoding (main) thread alone at
 * nice N (nice is per thread on Linux; the ZeroMQ I/O and heartbeat threads,
 * made before, keep theirs), meant to let message hops run first when every
 * core encodes.  Off by default: on the 16-core host, 16 workers at nice 5
 * were slower (281 vs 330 MB/s, mean of 5 and 3 runs), the machine's own
 * daemons at nice 0 then taking more from them. */
static void worker_nice(void)
{
    const char *e = getenv("ZF_TOK_WORKER_NICE");
    long v = e && *e ? atol(e) : 0;
    if (v <= 0) return;
    if (v > 19) v = 19;
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), (int)v) != 0) zf_warn("nice %ld: %s", v, strerror(errno));
}

static int dir_exists(const char *p)
{
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

int zf_tok_worker_main(int argc, char **argv)
{
    /* --worker_id N is the worker's own flag; the rest are the run's flags. */
    long worker_id = 0;
    char **rest = zf_xcalloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--worker_id") && i + 1 < argc) {
            char *end;
            worker_id = strtol(argv[++i], &end, 10);
            if (!*argv[i] || *end || worker_id < 0 || worker_id > 1000000)
                zf_die("--worker_id: expected an integer in [0, 1000000], got \"%s\"", argv[i]);
        } else {
            rest[nrest++] = argv[i];
        }
    }
    zf_options o;
    parse_or_die(nrest, rest, &o);
    free(rest);
    char name[64];
    snprintf(name, sizeof name, "tokenizer-worker-%ld", worker_id);
    zf_log_init(name);
    /* A worker may be started by hand against a running pipeline: refuse a
     * run directory that does not exist (the bus would create it) and a
     * name that a live worker of the run already has. */
    if (!o.run_dir[0] || !dir_exists(o.run_dir))
        zf_die("--run_dir: expected the run directory of a running pipeline (\"run_dir\" in OUTPUT_DIR/run.json), "
               "got '%s'", o.run_dir);
    char ready[1400];
    snprintf(ready, sizeof ready, "%s/%s.ready", o.run_dir, name);
    FILE *rf = fopen(ready, "r");
    if (rf) {
        int other = 0;
        if (fscanf(rf, "%d", &other) == 1 && other > 0 && other != (int)getpid() &&
            (kill(other, 0) == 0 || errno == EPERM))
            zf_die("--worker_id: %s is already running (pid %d); pick another id", name, other);
        fclose(rf);
    }
    zf_err err;
    zf_daemon d;
    if (zf_daemon_start(&d, name, o.run_dir, 0, &err) != 0) zf_die("%s", err.msg);
    worker_state W;
    memset(&W, 0, sizeof W);
    W.o = &o;
    W.d = &d;
    W.name = name;
    if (zf_bpe_load(o.tokenizer, &W.bpe, &err) != 0) zf_die("%s", err.msg);
    W.eot = zf_bpe_eot_id(W.bpe);
    if (W.eot < 0) zf_die("%s: expected an <|endoftext|> token in the vocabulary", o.tokenizer);
    char tok_hash[17];
    snprintf(tok_hash, sizeof tok_hash, "%016llx", (unsigned long long)zf_bpe_hash(W.bpe));
    const char *delay = getenv("ZF_TOK_TEST_DELAY_MS");
    W.delay_ms = delay ? atoi(delay) : 0;
    if (W.delay_ms > 0) zf_warn("test hook ZF_TOK_TEST_DELAY_MS: every job waits %d ms", W.delay_ms);
    W.sock = work_socket(&d.bus, &err);
    if (!W.sock) zf_die("%s", err.msg);
    heartbeat hb;
    memset(&hb, 0, sizeof hb);
    hb.bus = &d.bus;
    hb.name = name;
    atomic_store(&hb.job, -1);
    heartbeat_start(&hb);
    worker_nice();
    zf_daemon_set_state(&d, "ready", NULL);
    send_want(&W, tok_hash); /* once: after that, each result asks for the next job */
    W.idle_since = zf_now();

    int64_t handed_back = -1;
    double last_dir_check = zf_now();
    const char *why = "stop signal";
    while (!zf_stop_signal) {
        zf_msg *m = NULL;
        int rc = zf_bus_dealer_recv(W.sock, &m, 200, &err);
        double now = zf_now();
        if (W.stats_due && (rc == 1 || now - W.last_stats >= 1.0)) publish_worker_stats(&W);
        if (now - last_dir_check >= 1.0) {
            last_dir_check = now;
            if (!dir_exists(o.run_dir)) {
                why = "the run has ended";
                zf_msg_free(m);
                break;
            }
        }
        if (rc == 1) continue;
        if (rc != 0) {
            zf_warn("tok-work: %s", err.msg);
            continue;
        }
        if (zf_msg_is(m, "tok_job")) {
            if (W.first_job > 0) W.waited += now - W.idle_since;
            else W.first_job = now;
            atomic_store(&hb.job, zf_msg_int(m, "job"));
            int r = do_job(&W, m);
            atomic_store(&hb.job, -1);
            if (r == JOB_STOPPED) {
                handed_back = zf_msg_int(m, "job");
                zf_msg_free(m);
                break;
            }
            if (r == JOB_SKIPPED) send_handback(&W, zf_msg_int(m, "job"));
            W.idle_since = zf_now();
        } else if (zf_msg_is(m, "error")) {
            zf_die("tokenizerd refused this worker: %s", zf_msg_str(m, "message"));
        } else if (zf_msg_is(m, "shutdown")) {
            why = zf_msg_str(m, "reason")[0] ? "tokenizerd asked to stop" : "shutdown";
            zf_msg_free(m);
            break;
        } else {
            zf_warn("tok-work: unexpected '%s' ignored", zf_msg_type(m));
        }
        zf_msg_free(m);
    }
    zf_daemon_set_state(&d, "stopping", why);
    /* The heartbeat goes first, so that nothing says "alive" after the bye. */
    heartbeat_stop(&hb);
    zf_msg *bye = zf_msg_new("tok_bye");
    zf_msg_set_str(bye, "worker", name);
    zf_msg_set_int(bye, "pid", getpid());
    zf_msg_set_int(bye, "job", handed_back);
    zf_bus_dealer_send(W.sock, bye, 1, NULL);
    zf_msg_free(bye);
    /* give the bye time to leave (the coordinator may be gone: bounded) */
    int linger = 1000;
    zmq_setsockopt(W.sock, ZMQ_LINGER, &linger, sizeof linger);
    publish_worker_stats(&W);
    zf_info("stopping (%s): %lld jobs, %lld documents, %.2f MB tokenized in %.3f s of work, %.3f s from its first "
            "job to its last result, %.3f s of that waiting for a job%s", why, (long long)W.jobs, (long long)W.docs,
            (double)W.bytes / 1e6, W.busy, W.first_job > 0 && W.last_sent > W.first_job ? W.last_sent - W.first_job : 0.0,
            W.waited, handed_back >= 0 ? "; the current job was handed back" : "");
    arena_close(&W);
    zf_ids_free(&W.ids);
    zf_bpe_free(W.bpe);
    zf_bus_close_socket(W.sock);
    zf_daemon_finish(&d);
    return 0;
}
