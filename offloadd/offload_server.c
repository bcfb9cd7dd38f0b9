/* offload_server.c - see offload_server.h. */
#include "offload_server.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "adamw.h"
#include "ckpt.h"
#include "ckpt_consolidate.h"
#include "daemon.h"
#include "ds_config.h"
#include "lr_schedule.h"
#include "shard_optimizer.h"
#include "shm.h"


typedef struct rank_state {
    int active;
    int rank;                         /* the global rank this slot serves */
    zf_shm params, grads, layout;     /* the trainer's (attached) */
    zf_shm master, m, v;              /* ours (created); master may be "params" attached again (master_in_params) */
    int master_in_params;             /* "params" is fp32 and exactly the shard: it is the master (offload_server.h) */
    zf_shm progress;                  /* ours: the update's progress word (offload_server.h) */
    int params_stale;                 /* "params" not written since the last (chunked) update */
    size_t shard_offset, shard_numel, numel;
    /* ZeRO: the trainer's params/grads segments may hold only part of the
     * flat buffer, [base, base + their numel) (stage 3 params, stage 2-3
     * grads: the rank's slice); 0 = the whole buffer */
    size_t params_base, grads_base;
    long step;                        /* applied optimizer steps */
    zf_shard_opt *opt;
} rank_state;

typedef struct offload_server {
    zf_daemon d;
    const zf_options *o;
    zf_ds_config cfg;
    zf_adamw_hparams hp;
    zf_lr_schedule sched;
    rank_state ranks[ZF_OFFLOAD_MAX_RANKS]; /* this node's ranks, by slot (a rank's global number in .rank) */
} offload_server;

/* The slot of an active global rank, NULL if none. */
static rank_state *find_rank(offload_server *s, int rank)
{
    for (int i = 0; i < ZF_OFFLOAD_MAX_RANKS; i++)
        if (s->ranks[i].active && s->ranks[i].rank == rank) return &s->ranks[i];
    return NULL;
}

static void free_rank(rank_state *r)
{
    if (r->opt) zf_shard_opt_free(r->opt);
    zf_shm_close(&r->params);
    zf_shm_close(&r->grads);
    zf_shm_close(&r->layout);
    zf_shm_close(&r->master);
    zf_shm_close(&r->m);
    zf_shm_close(&r->v);
    zf_shm_close(&r->progress);
    memset(r, 0, sizeof *r);
}

/* The progress word: (applied step << ZF_OFFLOAD_STEP_SHIFT) + elements of
 * that step's update done; release order, so a reader that sees it sees the
 * values. */
static void set_progress(rank_state *r, long step, size_t done)
{
    uint64_t w = ((uint64_t)step << ZF_OFFLOAD_STEP_SHIFT) | (uint64_t)done;
    __atomic_store_n((uint64_t *)r->progress.data, w, __ATOMIC_RELEASE);
}

typedef struct progress_ctx { rank_state *r; long step; } progress_ctx;
static void chunk_done(void *ctx, size_t upto)
{
    progress_ctx *p = ctx;
    set_progress(p->r, p->step, upto);
}

/* Copy the master shard into the trainer's working parameters, converting
 * to the dtype of its segment. */
static void publish_params(rank_state *r)
{
    r->params_stale = 0;
    if (r->master_in_params) { /* updated in place */
        zf_shm_bump(&r->params);
        return;
    }
    const float *src = r->master.data;
    size_t n = r->shard_numel;
    zf_dtype dt = (zf_dtype)r->params.hdr->dtype;
    if (dt == ZF_DTYPE_F32) {
        memcpy((float *)r->params.data + (r->shard_offset - r->params_base), src, n * sizeof(float));
    } else {
        uint16_t *dst = (uint16_t *)r->params.data + (r->shard_offset - r->params_base);
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            uint32_t bits;
            memcpy(&bits, &src[i], 4);
            if (dt == ZF_DTYPE_BF16) {
                /* round to nearest even; NaN stays NaN */
                if ((bits & 0x7fffffffu) > 0x7f800000u) dst[i] = (uint16_t)((bits >> 16) | 0x40);
                else dst[i] = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
            } else {
                _Float16 h = (_Float16)src[i];
                memcpy(&dst[i], &h, 2);
            }
        }
    }
    zf_shm_bump(&r->params);
}

static int by_offset(const void *a, const void *b)
{
    const zf_ckpt_shard *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The rank's optimizer partition [shard_offset, +shard_numel) from a
 * checkpoint's partitions, whatever world size saved them: each saved
 * partition that overlaps it is read (master, adam_m, adam_v) and the
 * overlap copied, in offset order, the first partition holding an element
 * giving it (stage 0-1 partitions overlap and are equal).  Every element must
 * be covered.  Saved with the same world, this is the rank's own partition. */
static int restore_rank(offload_server *s, rank_state *r, int rank, const char *dir, zf_err *err)
{
    (void)s, (void)rank;
    const char *what[3] = { "master", "adam_m", "adam_v" };
    float *dst[3] = { r->master.data, r->m.data, r->v.data };
    zf_ckpt_shard *sh = NULL;
    int count = 0;
    if (zf_ckpt_read_shards(dir, r->numel, &sh, &count, err) != 0) return -1;
    qsort(sh, (size_t)count, sizeof *sh, by_offset);
    size_t done = r->shard_offset, end = r->shard_offset + r->shard_numel;
    int rc = 0;
    for (int i = 0; i < count && rc == 0 && done < end; i++) {
        size_t lo = sh[i].offset, hi = sh[i].offset + sh[i].numel;
        if (lo > done || hi <= done) continue; /* a gap is reported below */
        size_t upto = hi < end ? hi : end;
        float *buf = zf_xmalloc(sh[i].numel * sizeof(float) + 1);
        for (int k = 0; k < 3 && rc == 0; k++) {
            char name[64];
            snprintf(name, sizeof name, "optim-r%d-%s", sh[i].rank, what[k]);
            rc = zf_ckpt_read_tensor(dir, name, buf, sh[i].numel, err);
            if (rc == 0)
                memcpy(dst[k] + (done - r->shard_offset), buf + (done - lo), (upto - done) * sizeof(float));
        }
        free(buf);
        done = upto;
    }
    free(sh);
    if (rc != 0) return -1;
    if (done < end)
        return zf_err_set(err, "%s/meta.json: optimizer.shards: no saved partition holds parameters [%zu, %zu): "
                          "expected the partitions to cover the model", dir, done, end);
    char *meta = NULL;
    if (zf_ckpt_read_meta(dir, &meta, err) != 0) return -1;
    json_error_t je;
    json_t *root = json_loads(meta, 0, &je);
    free(meta);
    json_t *step = root ? json_object_get(json_object_get(root, "optimizer"), "step") : NULL;
    if (!json_is_integer(step)) {
        json_decref(root);
        return zf_err_set(err, "%s/meta.json: optimizer.step: expected an integer", dir);
    }
    r->step = (long)json_integer_value(step);
    json_decref(root);
    return 0;
}

static int handle_init(offload_server *s, const zf_msg *m, zf_err *err)
{
    int rank = (int)zf_msg_int(m, "rank");
    if (rank < 0 || rank >= 1 << 20) return zf_err_set(err, "opt_init: rank %d out of range", rank);
    /* a rank starting again (its trainer restarted) gets its slot back */
    rank_state *r = find_rank(s, rank);
    for (int i = 0; i < ZF_OFFLOAD_MAX_RANKS && !r; i++)
        if (!s->ranks[i].active) r = &s->ranks[i];
    if (!r)
        return zf_err_set(err, "opt_init: rank %d: this offloadd already serves %d ranks, the most one node's offloadd serves",
                          rank, ZF_OFFLOAD_MAX_RANKS);
    free_rank(r);
    r->rank = rank;
    r->numel = (size_t)zf_msg_int(m, "numel");
    r->shard_offset = (size_t)zf_msg_int(m, "shard_offset");
    r->shard_numel = (size_t)zf_msg_int(m, "shard_numel");
    if (r->shard_offset + r->shard_numel > r->numel)
        return zf_err_set(err, "opt_init: shard [%zu, +%zu) beyond %zu parameters", r->shard_offset, r->shard_numel, r->numel);
    if (zf_shm_attach(&r->params, zf_msg_str(m, "params_shm"), err) != 0 ||
        zf_shm_attach(&r->grads, zf_msg_str(m, "grads_shm"), err) != 0 ||
        zf_shm_attach(&r->layout, zf_msg_str(m, "layout_shm"), err) != 0)
        goto fail;
    r->params_base = zf_msg_has(m, "params_base") ? (size_t)zf_msg_int(m, "params_base") : 0;
    r->grads_base = zf_msg_has(m, "grads_base") ? (size_t)zf_msg_int(m, "grads_base") : 0;
    /* each segment must cover the shard from its base, and stay inside the buffer */
    size_t pn = zf_shm_numel(&r->params), gn = zf_shm_numel(&r->grads);
    if (r->params_base > r->shard_offset || r->params_base + pn < r->shard_offset + r->shard_numel ||
        r->params_base + pn > r->numel || r->grads_base > r->shard_offset ||
        r->grads_base + gn < r->shard_offset + r->shard_numel || r->grads_base + gn > r->numel ||
        r->grads.hdr->dtype != ZF_DTYPE_F32 || r->layout.hdr->dtype != ZF_DTYPE_I64 ||
        r->layout.hdr->ndim != 2 || r->layout.hdr->shape[1] != 3) {
        zf_err_set(err, "opt_init: params [%zu, +%zu) / grads [%zu, +%zu) segments: expected to cover the shard "
                   "[%zu, +%zu) of %zu parameters, fp32 grads and an int64 [rows, 3] layout",
                   r->params_base, pn, r->grads_base, gn, r->shard_offset, r->shard_numel, r->numel);
        goto fail;
    }
    int64_t shape[1] = { (int64_t)r->shard_numel };
    char name[64];
    r->master_in_params = r->params.hdr->dtype == ZF_DTYPE_F32 && r->params_base == r->shard_offset &&
                          pn == r->shard_numel;
    snprintf(name, sizeof name, "master-r%d", rank);
    if (r->master_in_params ? zf_shm_attach(&r->master, r->params.name, err) != 0
                            : zf_shm_create(&r->master, s->o->run_id, name, ZF_DTYPE_F32, 1, shape, err) != 0)
        goto fail;
    snprintf(name, sizeof name, "adam_m-r%d", rank);
    if (zf_shm_create(&r->m, s->o->run_id, name, ZF_DTYPE_F32, 1, shape, err) != 0) goto fail;
    snprintf(name, sizeof name, "adam_v-r%d", rank);
    if (zf_shm_create(&r->v, s->o->run_id, name, ZF_DTYPE_F32, 1, shape, err) != 0) goto fail;
    if (r->shard_numel >= ((size_t)1 << ZF_OFFLOAD_STEP_SHIFT)) {
        zf_err_set(err, "opt_init: shard_numel %zu: expected fewer than 2^%d", r->shard_numel, ZF_OFFLOAD_STEP_SHIFT);
        goto fail;
    }
    int64_t pshape[1] = { 8 };
    snprintf(name, sizeof name, "progress-r%d", rank);
    if (zf_shm_create(&r->progress, s->o->run_id, name, ZF_DTYPE_I64, 1, pshape, err) != 0) goto fail;

    /* Decay ranges from the trainer's layout table: rows of (offset, numel, decay). */
    int nrows = (int)r->layout.hdr->shape[0];
    const int64_t *rows = r->layout.data;
    zf_decay_range *ranges = zf_xcalloc((size_t)nrows, sizeof *ranges);
    for (int i = 0; i < nrows; i++) {
        ranges[i].offset = (size_t)rows[3 * i];
        ranges[i].numel = (size_t)rows[3 * i + 1];
        ranges[i].decay = (int)rows[3 * i + 2];
    }
    r->opt = zf_shard_opt_create_checked(r->shard_offset, r->shard_numel, ranges, nrows, &s->hp, &s->sched,
                                         r->master.data, r->m.data, r->v.data, err);
    free(ranges);
    if (!r->opt) goto fail;

    const char *resume = zf_msg_str(m, "resume_dir");
    if (resume[0]) {
        if (restore_rank(s, r, rank, resume, err) != 0) goto fail;
        publish_params(r);
        zf_daemon_log(&s->d, "info", "rank %d: optimizer state restored from %s at step %ld", rank, resume, r->step);
    } else {
        /* fp32 master = the trainer's initial parameters (fp32 on the CPU build). */
        if (r->params.hdr->dtype != ZF_DTYPE_F32) {
            zf_err_set(err, "opt_init: initial parameters must be fp32 (got %s) unless resuming",
                       zf_dtype_name((zf_dtype)r->params.hdr->dtype));
            goto fail;
        }
        if (!r->master_in_params)
            memcpy(r->master.data, (float *)r->params.data + (r->shard_offset - r->params_base),
                   r->shard_numel * sizeof(float));
        r->step = 0;
    }
    set_progress(r, r->step, r->shard_numel);
    r->active = 1;
    zf_daemon_log(&s->d, "info", "rank %d: shard of %zu parameters at offset %zu (%.1f MB of optimizer state%s)",
                  rank, r->shard_numel, r->shard_offset, 12.0 * (double)r->shard_numel / 1e6,
                  r->master_in_params ? "; the fp32 master is the rank's parameters segment itself" : "");
    return 0;
fail:
    free_rank(r);
    return -1;
}

static zf_msg *handle_grads(offload_server *s, const zf_msg *m, zf_err *err)
{
    int rank = (int)zf_msg_int(m, "rank");
    rank_state *r = find_rank(s, rank);
    if (!r) {
        zf_err_set(err, "grads_ready: rank %d has no optimizer (send opt_init first)", rank);
        return NULL;
    }
    long step = (long)zf_msg_int(m, "step");
    if (step != r->step + 1) {
        zf_err_set(err, "grads_ready: rank %d: expected step %ld, got %ld", rank, r->step + 1, step);
        return NULL;
    }
    double t0 = zf_now();
    const float *g = (const float *)r->grads.data + (r->shard_offset - r->grads_base);
    const float gs = (float)zf_msg_f64(m, "grad_scale");
    double lr;
    if (zf_msg_has(m, "pipelined") && zf_msg_bool(m, "pipelined")) {
        /* the trainer uploads the master chunk by chunk as the progress word
         * announces it, and refreshes "params" itself when it reads them */
        progress_ctx pc = { r, step };
        lr = zf_shard_opt_step_chunked(r->opt, g, step, gs, ZF_OFFLOAD_CHUNK, chunk_done, &pc);
        r->step = step;
        r->params_stale = 1;
    } else {
        lr = zf_shard_opt_step(r->opt, g, step, gs);
        r->step = step;
        publish_params(r);
        set_progress(r, step, r->shard_numel);
    }
    zf_msg *reply = zf_msg_new("params_updated");
    zf_msg_set_int(reply, "rank", rank);
    zf_msg_set_int(reply, "step", step);
    zf_msg_set_f64(reply, "lr", lr);
    zf_msg_set_f64(reply, "seconds", zf_now() - t0);
    return reply;
}

static zf_msg *handle_state_req(offload_server *s, const zf_msg *m, zf_err *err)
{
    int rank = (int)zf_msg_int(m, "rank");
    rank_state *r = find_rank(s, rank);
    if (!r) {
        zf_err_set(err, "opt_state_req: rank %d has no optimizer", rank);
        return NULL;
    }
    if (zf_msg_has(m, "step")) {
        /* the trainer applied the steps itself (optimizer on the GPU) and has
         * just written the state into our segments: adopt its step count */
        long st = (long)zf_msg_int(m, "step");
        if (st < 0) {
            zf_err_set(err, "opt_state_req: step: expected >= 0, got %ld", st);
            return NULL;
        }
        r->step = st;
        set_progress(r, st, r->shard_numel);
    }
    zf_msg *reply = zf_msg_new("opt_state");
    zf_msg_set_str(reply, "master_shm", r->master.name);
    zf_msg_set_str(reply, "m_shm", r->m.name);
    zf_msg_set_str(reply, "v_shm", r->v.name);
    zf_msg_set_int(reply, "shard_offset", (int64_t)r->shard_offset);
    zf_msg_set_int(reply, "shard_numel", (int64_t)r->shard_numel);
    zf_msg_set_int(reply, "step", r->step);
    zf_msg_set_str(reply, "progress_shm", r->progress.name);
    return reply;
}

static zf_msg *handle_request(void *ctx, const zf_peer *peer, const zf_msg *m, zf_err *err)
{
    offload_server *s = ctx;
    (void)peer;
    if (zf_msg_is(m, "opt_init")) return handle_init(s, m, err) == 0 ? zf_msg_new("ok") : NULL;
    if (zf_msg_is(m, "grads_ready")) return handle_grads(s, m, err);
    if (zf_msg_is(m, "opt_state_req")) return handle_state_req(s, m, err);
    zf_err_set(err, "offloadd does not handle '%s'", zf_msg_type(m));
    return NULL;
}

int zf_offload_serve(const zf_options *o)
{
    static offload_server s;
    zf_err err;
    s.o = o;
    if (zf_ds_config_load(o->deepspeed_config, &s.cfg, &err) != 0) zf_die("%s", err.msg);
    zf_ds_config_optimizer(&s.cfg, &s.hp, &s.sched);
    if (zf_daemon_start(&s.d, "offloadd", o->run_dir, 1, &err) != 0) zf_die("%s", err.msg);
    zf_daemon_log(&s.d, "info", "AdamW lr %g betas (%g, %g) eps %g weight_decay %g, schedule %s",
                  s.hp.lr, s.hp.beta1, s.hp.beta2, s.hp.eps, s.hp.weight_decay,
                  s.sched.type[0] ? s.sched.type : "constant");
    zf_daemon_set_state(&s.d, "ready", NULL);
    int stop = 0;
    while (!stop && !zf_stop_signal) zf_daemon_serve_one(&s.d, 200, handle_request, &s, &stop);
    zf_daemon_set_state(&s.d, "stopping", NULL);
    for (int i = 0; i < ZF_OFFLOAD_MAX_RANKS; i++) free_rank(&s.ranks[i]);
    zf_daemon_finish(&s.d);
    return 0;
}
