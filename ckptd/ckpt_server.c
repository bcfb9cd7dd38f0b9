/* ckpt_server.c - see ckpt_server.h. */
#include "ckpt_server.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "bpe.h"
#include "ckpt.h"
#include "ckpt_consolidate.h"
#include "daemon.h"
#include "hf_model.h"
#include "model_source.h"
#include "shm.h"

#define KEEP_LAST 3      /* checkpoints kept in output_dir/checkpoints */
#define MAX_WAITERS 16

typedef struct blob {
    char name[64];
    float *data;         /* a copy, or (in place) the segment's own data; NULL for an adopted tensor not read */
    size_t numel;
    zf_shm seg;          /* in place: the segment, attached while the job lives */
    char from[1300];     /* another node's part holding the tensor: taken in as it is (zf_ckpt_adopt_tensor) */
} blob;

/* One checkpoint asked for.  On one node the job holds every rank's
 * partition.  Across nodes (the ranks of a node are consecutive), each
 * node's ckptd snapshots its own ranks: a node other than rank 0's writes
 * them as a "part" under OUTPUT_DIR/ckpt-parts/node-<first rank> (itself an
 * atomic checkpoint directory, marked with the run's nonce); rank 0's ckptd
 * waits for every other node's part of the step from this run, adds its
 * partitions, commits and then removes the parts, so `latest` never names a
 * checkpoint with a partition missing or taken from another run. */
typedef struct job {
    long step;
    json_t *meta;        /* the trainer's meta data; optimizer.shards added */
    blob *blobs;         /* optim-r<R>-{master,adam_m,adam_v} */
    int nblobs, cap;
    zf_ckpt_shard *shards; /* the masters, for placing the model */
    int nshards;
    int part_of;         /* > 0: this node's part, its first rank */
    int *remote;         /* rank 0's node: the first ranks of the other nodes */
    int nremote, world;
    char nonce[32];      /* the run's (ckpt_save run_nonce): parts of other runs are not taken */
    size_t numel;        /* the model's parameters */
    long opt_step;
    int in_place;        /* written from the shared segments; ckpt_save answered once on disk */
    zf_peer requester;   /* ... its ckpt_save */
    struct job *next;
} job;

#define PART_WAIT_S 600.0     /* how long rank 0's ckptd waits for another node's part */
#define PART_QUIT_WAIT_S 30.0 /* ... once it is stopping (the other nodes' ckptd finish theirs first) */
#define MAX_PENDING 2         /* snapshots queued at most: ckpt_save waits for the writer beyond */

typedef struct ckpt_server {
    zf_daemon d;
    const zf_options *o;
    char config_json[1100];       /* the model's config.json, written once */
    pthread_t writer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    int pending;                  /* queued or being written */
    int quit;
    /* results for the main thread to publish */
    long done_step;
    char done_path[1100];
    double done_seconds;
    long done_bytes;
    int done_ok, done_new;
    char done_err[1024];
    zf_peer waiters[MAX_WAITERS]; /* ckpt_wait requests not answered yet */
    int nwaiters;
    zf_peer in_place_peer;        /* an in-place job's ckpt_save, to answer now that it is written */
    long in_place_step;
    int in_place_done;
} ckpt_server;

static void free_job(job *j)
{
    for (int i = 0; i < j->nblobs; i++) {
        if (j->blobs[i].seg.hdr) zf_shm_close(&j->blobs[i].seg);
        else free(j->blobs[i].data);
    }
    free(j->blobs);
    free(j->shards);
    free(j->remote);
    json_decref(j->meta);
    free(j);
}

static blob *new_blob(job *j)
{
    if (j->nblobs == j->cap) {
        j->cap = j->cap ? 2 * j->cap : 8;
        j->blobs = zf_xrealloc(j->blobs, (size_t)j->cap * sizeof *j->blobs);
    }
    blob *b = &j->blobs[j->nblobs++];
    memset(b, 0, sizeof *b);
    return b;
}

static void add_shard(job *j, int rank, size_t offset, size_t numel, const float *master)
{
    j->shards = zf_xrealloc(j->shards, (size_t)(j->nshards + 1) * sizeof *j->shards);
    j->shards[j->nshards++] = (zf_ckpt_shard){ rank, offset, numel, master };
}

static json_t *meta_shards(job *j)
{
    json_t *opt = json_object_get(j->meta, "optimizer");
    return json_object_get(opt, "shards");
}

static int parts_root(const zf_options *o, int first_rank, char *out, size_t n, zf_err *err)
{
    if ((size_t)snprintf(out, n, "%s/ckpt-parts/node-%d", o->output_dir, first_rank) >= n)
        return zf_err_set(err, "--output_dir: '%s' is too long", o->output_dir);
    return 0;
}

static int quitting(ckpt_server *s)
{
    pthread_mutex_lock(&s->mu);
    int q = s->quit;
    pthread_mutex_unlock(&s->mu);
    return q;
}

/* The part's meta.json once it is there and of this run (its run_nonce);
 * NULL after the wait (err says why). */
static json_t *wait_part(ckpt_server *s, const job *j, const char *dir, int first, zf_err *err)
{
    char meta_path[1400];
    snprintf(meta_path, sizeof meta_path, "%s/meta.json", dir);
    double t0 = zf_now(), quit_at = 0;
    for (;;) {
        if (access(meta_path, R_OK) == 0) { /* meta.json is the part's last file: its commit */
            char *text = NULL;
            if (zf_ckpt_read_meta(dir, &text, err) != 0) return NULL;
            json_error_t je;
            json_t *pm = json_loads(text, 0, &je);
            free(text);
            const char *nonce = json_string_value(json_object_get(pm, "run_nonce"));
            if (nonce && !strcmp(nonce, j->nonce)) return pm;
            json_decref(pm); /* another run's part of the same step: this run's replaces it */
        }
        double now = zf_now();
        if (!quit_at && quitting(s)) quit_at = now;
        if (now - t0 > PART_WAIT_S || (quit_at && now - quit_at > PART_QUIT_WAIT_S)) {
            zf_err_set(err, "%s: the node of rank %d did not write its part of step %ld within %.0f s", dir, first,
                       j->step, now - t0);
            return NULL;
        }
        usleep(50000);
    }
}

/* Rank 0's node: wait for the part of another node (ranks [first, next))
 * and take its partitions into the job. */
static int take_part(ckpt_server *s, job *j, int first, int next, zf_err *err)
{
    char root[1100], dir[1300];
    if (parts_root(s->o, first, root, sizeof root, err) != 0) return -1;
    snprintf(dir, sizeof dir, "%s/checkpoints/step_%08ld", root, j->step);
    json_t *pm = wait_part(s, j, dir, first, err);
    if (!pm) return -1;
    json_t *list = json_object_get(json_object_get(pm, "optimizer"), "shards");
    if (!json_is_array(list) || json_array_size(list) != (size_t)(next - first)) {
        json_decref(pm);
        return zf_err_set(err, "%s/meta.json: optimizer.shards: expected the partitions of ranks %d..%d", dir, first,
                          next - 1);
    }
    int rc = 0;
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        json_t *jr = json_object_get(e, "rank"), *jo = json_object_get(e, "offset"), *jn = json_object_get(e, "numel"),
               *js = json_object_get(e, "step");
        if (!json_is_integer(jr) || json_integer_value(jr) != first + (json_int_t)i || !json_is_integer(jo) ||
            !json_is_integer(jn) || !json_is_integer(js) || json_integer_value(jo) < 0 || json_integer_value(jn) < 0 ||
            (size_t)json_integer_value(jo) + (size_t)json_integer_value(jn) > j->numel) {
            rc = zf_err_set(err, "%s/meta.json: optimizer.shards[%zu]: expected rank %d with offset, numel and step "
                            "within the %zu parameters", dir, i, first + (int)i, j->numel);
            break;
        }
        if (json_integer_value(js) != j->opt_step) {
            rc = zf_err_set(err, "%s/meta.json: optimizer.shards[%zu].step: expected %ld (rank 0's node), got %lld", dir,
                            i, j->opt_step, (long long)json_integer_value(js));
            break;
        }
        int r = (int)json_integer_value(jr);
        size_t n = (size_t)json_integer_value(jn);
        /* the files are taken in as they are; only the master is read (the
         * model is placed from it) */
        const char *what[3] = { "master", "adam_m", "adam_v" };
        for (int k = 0; k < 3 && rc == 0; k++) {
            blob *b = new_blob(j);
            snprintf(b->name, sizeof b->name, "optim-r%d-%s", r, what[k]);
            snprintf(b->from, sizeof b->from, "%s", dir);
            b->numel = n;
            if (k > 0) continue;
            b->data = zf_xmalloc(n * sizeof(float) + 1);
            rc = zf_ckpt_read_tensor(dir, b->name, b->data, n, err);
            if (rc == 0) add_shard(j, r, (size_t)json_integer_value(jo), n, b->data);
        }
        if (rc != 0) break;
        json_array_append(meta_shards(j), e);
    }
    json_decref(pm);
    return rc;
}

/* After rank 0's commit: the parts taken in are not needed any more. */
static void drop_parts(ckpt_server *s, const job *j)
{
    for (int i = 0; i < j->nremote; i++) {
        char root[1100], dir[1300];
        zf_err err;
        if (parts_root(s->o, j->remote[i], root, sizeof root, &err) != 0) continue;
        snprintf(dir, sizeof dir, "%s/checkpoints/step_%08ld", root, j->step);
        if (zf_ckpt_remove_dir(dir, &err) != 0) zf_daemon_log(&s->d, "warning", "%s", err.msg);
    }
}

static int add_dir_file(zf_ckpt_writer *w, const char *dir, const char *name, zf_err *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, R_OK) != 0) return 0;
    return zf_ckpt_add_file(w, name, path, err);
}

static int write_blobs(zf_ckpt_writer *w, const job *j, long *bytes, zf_err *err)
{
    for (int i = 0; i < j->nblobs; i++) {
        const blob *b = &j->blobs[i];
        if ((b->from[0] ? zf_ckpt_adopt_tensor(w, b->name, b->from, err)
                        : zf_ckpt_add_tensor(w, b->name, b->data, b->numel, err)) != 0)
            return -1;
        *bytes += (long)(b->numel * sizeof(float));
    }
    return 0;
}

static int commit_meta(zf_ckpt_writer *w, const job *j, int keep, char *final_path, size_t n, zf_err *err)
{
    char *text = json_dumps(j->meta, JSON_INDENT(2) | JSON_SORT_KEYS);
    int rc = zf_ckpt_set_meta(w, text, err);
    free(text);
    if (rc != 0) {
        zf_ckpt_abort(w);
        return -1;
    }
    return zf_ckpt_commit(w, keep, final_path, n, err);
}

static int write_job(ckpt_server *s, job *j, char *final_path, size_t n, long *bytes, zf_err *err)
{
    zf_ckpt_writer *w = NULL;
    *bytes = 0;
    json_object_set_new(j->meta, "run_nonce", json_string(j->nonce));
    if (j->part_of > 0) {
        /* another node's part: rank 0's ckptd takes it in and removes it,
         * so parts are never pruned here (keep_last 0) */
        char root[1100];
        if (parts_root(s->o, j->part_of, root, sizeof root, err) != 0 || zf_ckpt_begin(root, j->step, &w, err) != 0)
            return -1;
        if (write_blobs(w, j, bytes, err) != 0) goto fail;
        return commit_meta(w, j, 0, final_path, n, err);
    }
    for (int i = 0; i < j->nremote; i++)
        if (take_part(s, j, j->remote[i], i + 1 < j->nremote ? j->remote[i + 1] : j->world, err) != 0) return -1;
    /* the model, placed from every rank's master: written from the masters
     * themselves (no whole-model buffer) */
    zf_ckpt_piece *model = NULL;
    int npieces = 0;
    if (zf_ckpt_shard_pieces(j->shards, j->nshards, j->numel, "ckpt_save", &model, &npieces, err) != 0) return -1;
    if (zf_ckpt_begin(s->o->output_dir, j->step, &w, err) != 0) {
        free(model);
        return -1;
    }
    int rc = write_blobs(w, j, bytes, err);
    if (rc == 0) rc = zf_ckpt_add_pieces(w, "model", ZF_DTYPE_F32, model, npieces, err);
    free(model);
    if (rc != 0) goto fail;
    *bytes += (long)(j->numel * sizeof(float));
    /* a checkpoint is also a model directory: config + tokenizer */
    if (zf_ckpt_add_file(w, "config.json", s->config_json, err) != 0 ||
        add_dir_file(w, s->o->tokenizer, "vocab.json", err) != 0 ||
        add_dir_file(w, s->o->tokenizer, "merges.txt", err) != 0 ||
        add_dir_file(w, s->o->tokenizer, "tokenizer.json", err) != 0)
        goto fail;
    if (commit_meta(w, j, KEEP_LAST, final_path, n, err) != 0) return -1;
    drop_parts(s, j);
    return 0;
fail:
    zf_ckpt_abort(w);
    return -1;
}

static void *writer_main(void *arg)
{
    ckpt_server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->quit) pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head) break;
        job *j = s->head;
        s->head = j->next;
        if (!s->head) s->tail = NULL;
        pthread_mutex_unlock(&s->mu);

        double t0 = zf_now();
        char path[1100] = "";
        long bytes = 0;
        zf_err err = { "" };
        int rc = write_job(s, j, path, sizeof path, &bytes, &err);

        pthread_mutex_lock(&s->mu);
        s->done_step = j->step;
        s->done_ok = rc == 0;
        s->done_new = 1;
        s->done_seconds = zf_now() - t0;
        s->done_bytes = bytes;
        snprintf(s->done_path, sizeof s->done_path, "%s", path);
        snprintf(s->done_err, sizeof s->done_err, "%s", err.msg);
        if (j->in_place) { /* the main thread answers its ckpt_save (report_done) */
            s->in_place_peer = j->requester;
            s->in_place_step = j->step;
            s->in_place_done = 1;
        }
        s->pending--;
        free_job(j);
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Copy a float tensor out of shared memory (converting 16-bit types), or
 * in place (fp32): keep the segment attached and write from it. */
static int snapshot(const char *shm_name, size_t expect, blob *b, const char *name, int in_place, zf_err *err)
{
    zf_shm seg;
    if (zf_shm_attach(&seg, shm_name, err) != 0) return -1;
    size_t n = zf_shm_numel(&seg);
    if (expect && n != expect) {
        zf_shm_close(&seg);
        return zf_err_set(err, "ckpt_save: %s has %zu elements, expected %zu", shm_name, n, expect);
    }
    snprintf(b->name, sizeof b->name, "%s", name);
    b->numel = n;
    zf_dtype dt = (zf_dtype)seg.hdr->dtype;
    if (in_place && dt == ZF_DTYPE_F32) {
        b->seg = seg;
        b->data = seg.data;
        return 0;
    }
    b->data = zf_xmalloc(n * sizeof(float) + 1);
    if (dt == ZF_DTYPE_F32) {
        memcpy(b->data, seg.data, n * sizeof(float));
    } else if (dt == ZF_DTYPE_BF16 || dt == ZF_DTYPE_F16) {
        const uint16_t *src = seg.data;
        for (size_t i = 0; i < n; i++) {
            if (dt == ZF_DTYPE_BF16) {
                uint32_t bits = (uint32_t)src[i] << 16;
                memcpy(&b->data[i], &bits, 4);
            } else {
                _Float16 h;
                memcpy(&h, &src[i], 2);
                b->data[i] = (float)h;
            }
        }
    } else {
        zf_shm_close(&seg);
        return zf_err_set(err, "ckpt_save: %s has dtype %s, expected a float tensor", shm_name, zf_dtype_name(dt));
    }
    zf_shm_close(&seg);
    return 0;
}

/* Field `key` of a ckpt_save, `def` if absent. */
static int64_t int_or(const zf_msg *m, const char *key, int64_t def) { return zf_msg_has(m, key) ? zf_msg_int(m, key) : def; }

/* "2,4" -> the first ranks of the other nodes, each after this node's ranks
 * and below the world, ascending. */
static int parse_remote(const char *txt, int after, int world, job *j, zf_err *err)
{
    const char *p = txt;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        int prev = j->nremote ? j->remote[j->nremote - 1] : after - 1;
        if (end == p || v <= prev || v >= world || (*end && *end != ','))
            return zf_err_set(err, "ckpt_save: node_first_ranks: expected ascending ranks in [%d, %d) separated by ',', "
                              "got '%.64s'", after, world, txt);
        j->remote = zf_xrealloc(j->remote, (size_t)(j->nremote + 1) * sizeof *j->remote);
        j->remote[j->nremote++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* Bytes of memory the host can still give (MemAvailable), 0 if unknown. */
static uint64_t host_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    if (f) fclose(f);
    return (uint64_t)kb * 1024;
}

/* Copies of `need` bytes, or the checkpoint written in place (ckpt_server.h):
 * in place when the copies would leave less than a tenth of the available
 * memory (2 GiB at least); ZF_CKPT_IN_PLACE=1 or 0 decides instead. */
static int choose_in_place(ckpt_server *s, long step, uint64_t need)
{
    const char *env = getenv("ZF_CKPT_IN_PLACE");
    const uint64_t avail = host_available(), reserve = avail / 10 > (2ull << 30) ? avail / 10 : (2ull << 30);
    if (env && (!strcmp(env, "0") || !strcmp(env, "1"))) {
        if (env[0] == '0') return 0;
        zf_daemon_log(&s->d, "info", "checkpoint of step %ld: written in place (ZF_CKPT_IN_PLACE=1), the trainer "
                      "waits until it is on disk", step);
        return 1;
    }
    if (!avail || need + reserve <= avail) return 0;
    zf_daemon_log(&s->d, "warning", "checkpoint of step %ld: a snapshot of %.1f GB does not fit the host's %.1f GB "
                  "available: written in place, the trainer waits until it is on disk", step, (double)need / 1e9,
                  (double)avail / 1e9);
    return 1;
}

/* The snapshot of a ckpt_save: the optimizer partition (master, adam_m,
 * adam_v) of each of this node's ranks, copied out of offloadd's shared
 * memory.  The "model" tensor is placed later, in the writer, from every
 * rank's master (ckpt_consolidate.h's rules), so no rank needs to hold the
 * whole parameters (ZeRO stage 3) and the model is the fp32 master, as
 * DeepSpeed's zero_to_fp32 gives it.  The request's params_shm is not read.
 * In place (choose_in_place), the segments stay attached instead of copied
 * and the trainer is answered once the checkpoint is on disk. */
static int take_snapshot(ckpt_server *s, const zf_msg *m, job *j, zf_err *err)
{
    int world = (int)zf_msg_int(m, "opt_rank_count");
    if (world < 1 || world > 4096) return zf_err_set(err, "ckpt_save: opt_rank_count %d out of range", world);
    int64_t first = int_or(m, "rank_first", 0), count = int_or(m, "rank_count", world);
    if (first < 0 || count < 1 || first + count > world)
        return zf_err_set(err, "ckpt_save: rank_first %lld, rank_count %lld: expected ranks within the world of %d",
                          (long long)first, (long long)count, world);
    int64_t numel = zf_msg_int(m, "numel");
    if (numel < 1) return zf_err_set(err, "ckpt_save: numel: expected > 0, got %lld", (long long)numel);
    j->numel = (size_t)numel;
    j->step = (long)zf_msg_int(m, "step");
    j->part_of = (int)first;
    j->world = world;
    snprintf(j->nonce, sizeof j->nonce, "%s", zf_msg_has(m, "run_nonce") ? zf_msg_str(m, "run_nonce") : "");
    if (first == 0 && zf_msg_has(m, "node_first_ranks") &&
        parse_remote(zf_msg_str(m, "node_first_ranks"), (int)count, world, j, err) != 0)
        return -1;
    json_error_t je;
    j->meta = json_loads(zf_msg_str(m, "meta_json"), 0, &je);
    if (!json_is_object(j->meta)) return zf_err_set(err, "ckpt_save: meta_json: expected a JSON object (%s)", je.text);
    json_t *shards = json_array();
    j->opt_step = -1;
    int rc = 0;
    /* the node's ranks' optimizer segments, as offloadd names them */
    zf_msg **states = zf_xcalloc((size_t)count, sizeof *states);
    uint64_t need = 0;
    for (int r = (int)first; r < first + count && rc == 0; r++) {
        zf_msg *req = zf_msg_new("opt_state_req");
        zf_msg_set_int(req, "rank", r);
        rc = zf_bus_call(&s->d.bus, "offloadd", req, &states[r - first], 60000, err);
        zf_msg_free(req);
        if (rc == 0) need += 3 * sizeof(float) * (uint64_t)zf_msg_int(states[r - first], "shard_numel");
    }
    if (rc == 0) j->in_place = choose_in_place(s, j->step, need);
    for (int r = (int)first; r < first + count && rc == 0; r++) {
        const zf_msg *st = states[r - first];
        const char *keys[3] = { "master_shm", "m_shm", "v_shm" }, *what[3] = { "master", "adam_m", "adam_v" };
        int64_t off = zf_msg_int(st, "shard_offset"), n = zf_msg_int(st, "shard_numel");
        if (off < 0 || n < 0 || off > numel || n > numel - off)
            rc = zf_err_set(err, "ckpt_save: rank %d: shard [%lld, +%lld) outside the %lld parameters", r,
                            (long long)off, (long long)n, (long long)numel);
        for (int k = 0; k < 3 && rc == 0; k++) {
            char name[64];
            snprintf(name, sizeof name, "optim-r%d-%s", r, what[k]);
            blob *b = new_blob(j);
            rc = snapshot(zf_msg_str(st, keys[k]), (size_t)n, b, name, j->in_place, err);
            if (k == 0 && rc == 0) add_shard(j, r, (size_t)off, (size_t)n, b->data);
        }
        json_array_append_new(shards, json_pack("{s:i, s:I, s:I, s:I}", "rank", r, "offset", (json_int_t)off, "numel",
                                                (json_int_t)n, "step", (json_int_t)zf_msg_int(st, "step")));
        j->opt_step = (long)zf_msg_int(st, "step");
    }
    for (int i = 0; i < count; i++) zf_msg_free(states[i]);
    free(states);
    json_object_set_new(j->meta, "optimizer", json_pack("{s:I, s:o}", "step", (json_int_t)j->opt_step, "shards", shards));
    return rc;
}

/* Publish what the writer finished, and answer `ckpt_wait` once idle. */
static void report_done(ckpt_server *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->done_new) {
        s->done_new = 0;
        if (s->done_ok) {
            zf_msg *ev = zf_msg_new("ckpt_saved");
            zf_msg_set_int(ev, "step", s->done_step);
            zf_msg_set_str(ev, "path", s->done_path);
            zf_msg_set_int(ev, "bytes", s->done_bytes);
            zf_msg_set_f64(ev, "seconds", s->done_seconds);
            zf_daemon_publish(&s->d, ev);
            zf_msg_free(ev);
            zf_daemon_log(&s->d, "info", "step %ld saved to %s (%.1f MB of tensors in %.2f s)", s->done_step,
                          s->done_path, (double)s->done_bytes / 1e6, s->done_seconds);
        } else {
            zf_daemon_log(&s->d, "error", "checkpoint of step %ld failed: %s (the previous one stays latest)",
                          s->done_step, s->done_err);
        }
    }
    int idle = s->pending == 0, answer = s->in_place_done;
    zf_peer peer = s->in_place_peer;
    long step = s->in_place_step;
    s->in_place_done = 0;
    pthread_mutex_unlock(&s->mu);
    if (answer) { /* an in-place checkpoint is on disk (or failed, reported above): the trainer goes on */
        zf_msg *r = zf_msg_new("ckpt_snapshot");
        zf_msg_set_int(r, "step", step);
        zf_bus_reply(s->d.ctl, &peer, r, NULL);
        zf_msg_free(r);
    }
    if (!idle) return;
    for (int i = 0; i < s->nwaiters; i++) {
        zf_msg *ok = zf_msg_new("ok");
        zf_bus_reply(s->d.ctl, &s->waiters[i], ok, NULL);
        zf_msg_free(ok);
    }
    s->nwaiters = 0;
}

static zf_msg *handle_request(void *ctx, const zf_peer *peer, const zf_msg *m, zf_err *err)
{
    ckpt_server *s = ctx;
    if (zf_msg_is(m, "ckpt_save")) {
        /* at most MAX_PENDING snapshots held: the trainer waits for the
         * writer rather than ckptd's memory growing without bound */
        pthread_mutex_lock(&s->mu);
        while (s->pending >= MAX_PENDING) pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        job *j = zf_xcalloc(1, sizeof *j);
        if (take_snapshot(s, m, j, err) != 0) {
            free_job(j);
            return NULL;
        }
        if (j->in_place) j->requester = *peer;
        const long step = j->step;
        const int in_place = j->in_place;
        pthread_mutex_lock(&s->mu);
        if (s->tail) s->tail->next = j;
        else s->head = j;
        s->tail = j;
        s->pending++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        if (in_place) return ZF_REPLY_LATER; /* answered by report_done once written */
        zf_msg *r = zf_msg_new("ckpt_snapshot");
        zf_msg_set_int(r, "step", step);
        return r;
    }
    if (zf_msg_is(m, "ckpt_wait")) {
        if (s->nwaiters >= MAX_WAITERS) {
            zf_err_set(err, "ckpt_wait: too many waiting clients");
            return NULL;
        }
        s->waiters[s->nwaiters++] = *peer; /* answered by report_done */
        return ZF_REPLY_LATER;
    }
    zf_err_set(err, "ckptd does not handle '%s'", zf_msg_type(m));
    return NULL;
}

int zf_ckpt_serve(const zf_options *o)
{
    static ckpt_server s;
    zf_err err;
    s.o = o;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    if (zf_daemon_start(&s.d, "ckptd", o->run_dir, 1, &err) != 0) zf_die("%s", err.msg);
    /* config.json of the run's model, written once into the run dir */
    zf_bpe *bpe = NULL;
    if (zf_bpe_load(o->tokenizer, &bpe, &err) != 0) zf_die("%s", err.msg);
    zf_model_source src;
    if (zf_model_source_open(o->model_name, zf_bpe_vocab_size(bpe), 0, 0, &src, &err) != 0) zf_die("%s", err.msg);
    zf_bpe_free(bpe);
    snprintf(s.config_json, sizeof s.config_json, "%s/model-config.json", o->run_dir);
    if (zf_gpt2_config_save(s.config_json, &src.cfg, &err) != 0) zf_die("%s", err.msg);
    zf_model_source_free(&src);
    pthread_create(&s.writer, NULL, writer_main, &s);
    zf_daemon_set_state(&s.d, "ready", NULL);

    int stop = 0;
    while (!stop && !zf_stop_signal) {
        zf_daemon_serve_one(&s.d, 100, handle_request, &s, &stop);
        report_done(&s);
    }
    zf_daemon_set_state(&s.d, "stopping", NULL);
    /* Never drop a checkpoint that was asked for: finish the queue first. */
    pthread_mutex_lock(&s.mu);
    s.quit = 1;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    pthread_join(s.writer, NULL);
    report_done(&s);
    unlink(s.config_json);
    zf_daemon_finish(&s.d);
    return 0;
}
