/* train_loop.c - see train_loop.h. */
#include "train_loop.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bpe.h"
#include "ckpt.h"
#include "daemon.h"
#include "dataset.h"
#include "ds_config.h"
#include "generate.h"
#include "gpt2_cpu.h"
#include "hash.h"
#include "hf_model.h"
#include "loss_scaler.h"
#include "lr_schedule.h"
#include "offload_server.h"
#include "model_source.h"
#include "preflight.h"
#include "progress.h"
#include "rng.h"
#include "utf8.h"
#include "shard_optimizer.h"
#include "shm.h"
#include "zero_engine.h"
#include "zero_rank.h"

#define REQ_TIMEOUT_MS (30 * 60 * 1000)

typedef struct trainer {
    const zf_options *o;
    zf_ds_config cfg;
    zf_daemon d;
    zf_bpe *bpe;
    zf_model_source src;
    zf_shm params, grads, layout;
    zf_shm ring;                     /* loaderd's batch slots, attached on first use */
    zf_gpt2 *model;                  /* CPU model on "params": generation */
    zf_backend *backend;             /* where training and evaluation compute */
    zf_loss_scaler scaler;
    void *loader, *offload, *ckpt;   /* REQ sockets */
    int rank, world, micro, ga, T;
    long step;                       /* completed iterations (the data position) */
    long applied;                    /* optimizer steps applied (skipped overflow steps excluded) */
    long total_steps, steps_per_epoch;
    int32_t *inputs, *targets;
    double data_wait;                /* seconds waiting for batches in the current step */
    zf_phase_times phase;            /* the current step's phases (forward, backward, optimizer, transfers) */
    zf_shm opt_master, opt_m, opt_v; /* offloadd's optimizer state: the host home of a device optimizer's */
    float *master;                   /* the shard's fp32 master: opt_master's data, or "params" itself when
                                        offloadd keeps the master there (offload_server.h; opt_master unused) */
    /* pipelined offload (GPU backend, one rank): offloadd updates the master
     * in order, announcing the finished prefix (its progress word), and the next forward uploads each
     * range as it is announced; "params" is refreshed from the master only
     * when something on the host reads it */
    zf_shm opt_progress;
    uint64_t opt_bytes;              /* offloadd's optimizer segments of this rank, for the memory report */
    int pipe_on, pipe_pending, params_stale;
    int gpu_grads;                   /* a GPU backend: the host gradients are only its copy (of the shard) */
    int gpu_zero;                    /* ZeRO in the GPU backend (ranks, or one GPU with stage 3's full offload):
                                        it reduces and gathers over NCCL; the host "params" are refreshed
                                        only when read (params_stale) */
    long pipe_step;                  /* the applied step being updated */
    double pipe_wait;                /* host seconds waiting for offloadd in the current step */
    zf_progress progress;
    zf_comm comm;                    /* the data-parallel ranks (MPI under mpirun) */
    zf_zero_plan zplan;              /* this rank's ZeRO partition */
    zf_zero_options zopts;           /* the config's zero_optimization in elements */
    zf_zero *zero;                   /* the ZeRO engine: collectives, stage-3 gather/release */
    zf_node_layout node;             /* this rank's node: its first rank speaks to the node's ckptd */
} trainer;

static void req_or_die(trainer *t, void *sock, const zf_msg *m, zf_msg **reply)
{
    zf_err err;
    int rc = zf_bus_request(sock, m, reply, REQ_TIMEOUT_MS, &err);
    if (rc != 0) zf_die("%s: %s", zf_msg_type(m), err.msg);
    (void)t;
}

/* ------------------------------------------------------------------ data */

/* Fetch the batch at a position into t->inputs/t->targets. */
static void get_batch(trainer *t, const char *split, long epoch, long step, int micro)
{
    double t0 = zf_now();
    zf_msg *m = zf_msg_new("batch_req"), *r = NULL;
    zf_msg_set_int(m, "rank", t->rank);
    zf_msg_set_str(m, "split", split);
    zf_msg_set_int(m, "epoch", epoch);
    zf_msg_set_int(m, "step", step);
    zf_msg_set_int(m, "micro", micro);
    req_or_die(t, t->loader, m, &r);
    zf_msg_free(m);
    zf_err err;
    if (!t->ring.hdr && zf_shm_attach(&t->ring, zf_msg_str(r, "shm"), &err) != 0) zf_die("%s", err.msg);
    int slot = (int)zf_msg_int(r, "slot"), rows = (int)zf_msg_int(r, "rows"), cols = (int)zf_msg_int(r, "cols");
    if (rows != t->micro || cols != t->T + 1 || slot < 0 || slot >= t->ring.hdr->shape[0])
        zf_die("batch_ready: slot %d of %dx%d does not match micro batch %d x %d", slot, rows, cols, t->micro, t->T + 1);
    const int32_t *src = (const int32_t *)t->ring.data + (size_t)slot * (size_t)rows * (size_t)cols;
    int V = t->src.cfg.vocab_size;
    for (int b = 0; b < rows; b++) {
        for (int i = 0; i < t->T; i++) {
            int32_t x = src[b * cols + i], y = src[b * cols + i + 1];
            if (x < 0 || x >= V || y < 0 || y >= V)
                zf_die("batch %s/%ld/%ld: token id %d outside the model's vocabulary of %d", split, epoch, step,
                       x < 0 || x >= V ? x : y, V);
            t->inputs[b * t->T + i] = x;
            t->targets[b * t->T + i] = y;
        }
    }
    zf_msg *rel = zf_msg_new("batch_release"), *ok = NULL;
    zf_msg_set_int(rel, "slot", slot);
    zf_msg_set_int(rel, "generation", zf_msg_int(r, "generation"));
    req_or_die(t, t->loader, rel, &ok);
    zf_msg_free(rel);
    zf_msg_free(ok);
    zf_msg_free(r);
    t->data_wait += zf_now() - t0;
}

static long split_steps(trainer *t, const char *split)
{
    zf_msg *m = zf_msg_new("split_info_req"), *r = NULL;
    zf_msg_set_str(m, "split", split);
    req_or_die(t, t->loader, m, &r);
    long n = (long)zf_msg_int(r, "steps_per_epoch");
    zf_msg_free(m);
    zf_msg_free(r);
    return n;
}

/* ---------------------------------------------- pipelined offload (GPU) */

/* offloadd's reply to the pipelined grads_ready (it comes when the whole
 * shard is updated); timeout_ms 0 polls.  1 once it is in. */
static int offload_reply(trainer *t, int timeout_ms)
{
    if (!t->pipe_pending) return 1;
    zf_msg *r = NULL;
    zf_err err;
    int rc = zf_bus_recv(t->offload, &r, timeout_ms, &err);
    if (rc < 0) zf_die("grads_ready: %s", err.msg);
    if (rc == 1) {
        if (timeout_ms > 0) zf_die("grads_ready: no reply from offloadd within %d ms", timeout_ms);
        return 0;
    }
    if (zf_msg_is(r, "error")) zf_die("grads_ready: %s", zf_msg_str(r, "message"));
    if (!zf_msg_is(r, "params_updated") || zf_msg_int(r, "step") != t->pipe_step)
        zf_die("grads_ready: expected params_updated for step %ld, got %s", t->pipe_step, zf_msg_type(r));
    if (t->pipe_step <= 2 || t->pipe_step % 10 == 0)
        zf_daemon_log(&t->d, "info", "offloadd: pipelined update of step %ld in %.1f ms", t->pipe_step,
                      1e3 * zf_msg_f64(r, "seconds"));
    zf_msg_free(r);
    t->pipe_pending = 0;
    return 1;
}

static void offload_drain(trainer *t) { (void)offload_reply(t, REQ_TIMEOUT_MS); }

/* The model's wait before it uploads master[0, end): until offloadd's
 * progress word covers it (polling, so offloadd keeps the cores). */
static int offload_ready(void *ctx, size_t end)
{
    trainer *t = ctx;
    const uint64_t want = ((uint64_t)t->pipe_step << ZF_OFFLOAD_STEP_SHIFT) | (uint64_t)end;
    const uint64_t *word = t->opt_progress.data;
    if (__atomic_load_n(word, __ATOMIC_ACQUIRE) < want) {
        double t0 = zf_now();
        while (__atomic_load_n(word, __ATOMIC_ACQUIRE) < want) {
            /* an error reply (or a finished update that never reached end) ends the wait */
            if (offload_reply(t, 0) && __atomic_load_n(word, __ATOMIC_ACQUIRE) < want)
                zf_die("offloadd finished step %ld without updating parameters up to %zu", t->pipe_step, end);
            if (zf_now() - t0 > REQ_TIMEOUT_MS / 1000.0) zf_die("offloadd: no progress on step %ld", t->pipe_step);
            struct timespec ts = { 0, 20000 };
            nanosleep(&ts, NULL);
        }
        t->pipe_wait += zf_now() - t0;
    }
    if (end >= t->zplan.opt_n) offload_drain(t); /* the whole update is in: take the reply */
    return 0;
}

/* offloadd's description of this rank's optimizer segments (opt_state);
 * set_step >= 0 also tells it the applied step count its segments hold. */
static zf_msg *opt_state(trainer *t, long set_step)
{
    zf_msg *m = zf_msg_new("opt_state_req"), *r = NULL;
    zf_msg_set_int(m, "rank", t->rank);
    if (set_step >= 0) zf_msg_set_int(m, "step", set_step);
    req_or_die(t, t->offload, m, &r);
    zf_msg_free(m);
    return r;
}

/* Pipelined offload possible: optimizer on the CPU, fp32 "params", a
 * backend that uploads per range (one GPU; GPU ZeRO stages 2-3, whose
 * layers are gathered as they are used).  ZF_OFFLOAD_PIPELINE=0 keeps the
 * plain exchange (for comparisons). */
static void pipe_setup(trainer *t)
{
    const char *env = getenv("ZF_OFFLOAD_PIPELINE");
    zf_backend *be = t->backend;
    /* ranks (stages 2-3: each layer's gather waits for the rank's own part)
     * only with ZF_OFFLOAD_PIPELINE=ranks until that has run on two GPUs */
    const int ranks_ok = env && strcmp(env, "ranks") == 0;
    if ((env && strcmp(env, "0") == 0) || !be->upload_params_next || be->optimizer_step || (t->world != 1 && !ranks_ok) ||
        t->params.hdr->dtype != ZF_DTYPE_F32 || strcmp(t->cfg.zero_offload_optimizer_device, "cpu") != 0)
        return;
    /* the master is the upload's source (attach_opt_segments) */
    if (!t->master || !t->opt_progress.hdr) return;
    t->pipe_on = 1;
    zf_info("optimizer offloaded, pipelined: the next forward uploads each layer as offloadd updates it");
}

/* The host's wait for offloadd during the first forward is optimizer time
 * (that forward's GPU time, timed by events, includes the same stall: the
 * phases of a pipelined step overlap and may add up to more than the step). */
static void pipe_fold_wait(trainer *t)
{
    t->phase.optimizer_s += t->pipe_wait;
    t->pipe_wait = 0;
}

/* ------------------------------------------------- device optimizer (GPU) */

/* With the optimizer on the device, "params" (and offloadd's master/m/v
 * segments, with_opt) are refreshed only here, before something reads them.
 * Pipelined offload: the update in flight is finished and "params" copied
 * from offloadd's master (which it equals: fp32).  GPU ranks: a collective,
 * every rank calls it at the same point. */
static void host_params_current(trainer *t, int with_opt)
{
    zf_backend *be = t->backend;
    zf_err err;
    if (t->pipe_on) {
        /* the shard from offloadd's master into its place in "params" (the
         * rank keeps the whole buffer or, at stage 3, the shard itself) */
        offload_drain(t);
        if (t->params_stale) {
            float *dst = (float *)t->params.data + (t->zplan.opt_off - t->zplan.params_base);
            if (dst != t->master) memcpy(dst, t->master, t->zplan.opt_n * sizeof(float));
            /* GPU ranks: the host engine's view of the other shards too */
            if (t->gpu_zero && zf_zero_params_updated(t->zero, &err) != 0) zf_die("%s", err.msg);
        }
        t->params_stale = 0;
        return;
    }
    if (t->gpu_zero && !be->optimizer_step) {
        /* offloadd wrote each rank's shard of "params": the other shards
         * from their ranks (a collective, like the device one below) */
        if (t->params_stale && zf_zero_params_updated(t->zero, &err) != 0) zf_die("%s", err.msg);
        t->params_stale = 0;
        return;
    }
    if (!be || !be->optimizer_step) return;
    if ((with_opt ? be->opt_to_host(be, &err) : be->params_to_host(be, &err)) != 0) zf_die("%s", err.msg);
    if (with_opt) {
        /* offloadd's segments now hold the device state: its step count too
         * (a checkpoint's optimizer.step; a resume with the optimizer offloaded) */
        zf_msg_free(opt_state(t, t->applied));
    }
}

/* offloadd's optimizer segments of this rank, asked once after opt_init
 * (the initial or resumed state): their bytes for the memory report, and
 * the segments of the rank's shard attached (the GPU optimizer's home, the
 * pipelined offload's source and progress word, the debug state hash). */
static void attach_opt_segments(trainer *t)
{
    zf_msg *r = opt_state(t, -1);
    zf_err err;
    size_t n = (size_t)zf_msg_int(r, "shard_numel");
    if (zf_zero_rank_opt_bytes(r, &t->opt_bytes, &err) != 0) zf_die("opt_state: %s", err.msg);
    if ((size_t)zf_msg_int(r, "shard_offset") != t->zplan.opt_off || n != t->zplan.opt_n)
        zf_die("opt_state: offloadd's shard [%lld, +%zu): expected this rank's [%zu, +%zu)",
               (long long)zf_msg_int(r, "shard_offset"), n, t->zplan.opt_off, t->zplan.opt_n);
    /* offloadd keeps the master in "params" when that holds exactly the shard */
    const int in_params = strcmp(zf_msg_str(r, "master_shm"), t->params.name) == 0;
    if (in_params && (t->zplan.params_base != t->zplan.opt_off || t->zplan.params_numel != n))
        zf_die("opt_state: master_shm is this rank's \"params\", which does not hold exactly its shard");
    if ((!in_params && zf_shm_attach(&t->opt_master, zf_msg_str(r, "master_shm"), &err) != 0) ||
        zf_shm_attach(&t->opt_m, zf_msg_str(r, "m_shm"), &err) != 0 ||
        zf_shm_attach(&t->opt_v, zf_msg_str(r, "v_shm"), &err) != 0 ||
        (zf_msg_has(r, "progress_shm") && zf_shm_attach(&t->opt_progress, zf_msg_str(r, "progress_shm"), &err) != 0))
        zf_die("opt_state: %s", err.msg);
    if ((!in_params && zf_shm_numel(&t->opt_master) != n) || zf_shm_numel(&t->opt_m) != n || zf_shm_numel(&t->opt_v) != n ||
        (t->opt_progress.hdr && zf_shm_numel(&t->opt_progress) < 1))
        zf_die("opt_state: optimizer segments: expected %zu floats each and a progress word", n);
    t->master = in_params ? (float *)t->params.data : t->opt_master.data;
    zf_msg_free(r);
}

/* Test-only knob ZF_DEBUG_OVERFLOW_STEPS="3,4,9": the gradients of those
 * iterations (1-based) are made non-finite where they are (on the GPU for
 * the GPU backend), so that the real overflow detection and loss-scaler path
 * runs. */
static int debug_overflow_at(long iteration)
{
    const char *s = getenv("ZF_DEBUG_OVERFLOW_STEPS");
    while (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) break;
        if (v == iteration) return 1;
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

/* Test-only, with ZF_DEBUG_OVERFLOW_STEPS set: FNV-1a 64 of the parameters
 * and the optimizer state (master, exp_avg, exp_avg_sq) after the step, for
 * the metrics row, so a test can see that a skipped step changed nothing. */
static uint64_t debug_state_hash(trainer *t)
{
    host_params_current(t, 1);
    /* the params this rank keeps (its slice under ZeRO stage 3) and its shard's state */
    uint64_t h = zf_fnv1a64(ZF_FNV1A64_INIT, t->params.data, t->zplan.params_numel * sizeof(float));
    if (t->master) h = zf_fnv1a64(h, t->master, t->zplan.opt_n * sizeof(float));
    const zf_shm *st[2] = { &t->opt_m, &t->opt_v };
    for (int i = 0; i < 2; i++)
        if (st[i]->hdr) h = zf_fnv1a64(h, st[i]->data, zf_shm_numel(st[i]) * sizeof(float));
    return h;
}

/* Overflow (non-finite count > 0) and sum of squares of the accumulated
 * scaled gradients: on the device when the backend keeps the optimizer
 * (scalars only cross), else on the host copy the backend hands over. */
static void grad_stats(trainer *t, int check_overflow, int *overflow, double *sumsq)
{
    zf_backend *be = t->backend;
    zf_err err;
    if (be->grad_stats) {
        if (be->grad_stats(be, overflow, sumsq, &err) != 0) zf_die("%s", err.msg);
        *overflow = check_overflow && *overflow;
        return;
    }
    if (t->pipe_on && be->grad_stats_exact) {
        /* offloadd needs the gradients on the host; the decision is taken
         * on the GPU's copy (the same bits as the host's zf_zero_reduce) */
        if (be->grads_to_host(be, &err) != 0 || be->grad_stats_exact(be, overflow, sumsq, &err) != 0)
            zf_die("%s", err.msg);
        if (*overflow) *sumsq = 0.0; /* as zf_zero_reduce */
        if (getenv("ZF_DEBUG_CHECK_STATS")) { /* test-only: the host's verdict must be the same bits */
            int o2 = 0;
            double s2 = 0;
            if (zf_zero_reduce(t->zero, &o2, &s2, &err) != 0) zf_die("%s", err.msg);
            if (o2 != *overflow || memcmp(&s2, sumsq, sizeof s2) != 0)
                zf_die("step %ld: GPU gradient statistics (overflow %d, sum of squares %.17g) differ from the "
                       "host's (%d, %.17g)", t->step + 1, *overflow, *sumsq, o2, s2);
        }
        *overflow = check_overflow && *overflow;
        return;
    }
    double t0 = zf_now();
    if (be->grads_to_host(be, &err) != 0) zf_die("%s", err.msg);
    double t1 = zf_now();
    if (!be->phase_times) t->phase.transfer_s += t1 - t0;
    /* gradients reduced into their owners, then one overflow flag and one
     * global norm for all ranks */
    if (zf_zero_reduce(t->zero, overflow, sumsq, &err) != 0) zf_die("%s", err.msg);
    *overflow = check_overflow && *overflow;
    t->phase.optimizer_s += zf_now() - t1;
}

/* ------------------------------------------------------------- evaluation */

static void append_metrics(trainer *t, json_t *row)
{
    if (t->rank != 0) return; /* one metrics file per run */
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->o->output_dir);
    FILE *f = fopen(path, "a");
    if (!f) {
        zf_warn("%s: cannot append: metrics not recorded", path);
        return;
    }
    char *line = row ? json_dumps(row, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!line) {
        zf_warn("%s: a metrics row could not be encoded", path);
        fclose(f);
        return;
    }
    fprintf(f, "%s\n", line);
    free(line);
    fclose(f);
}

static void evaluate(trainer *t, const char *split)
{
    long steps = split_steps(t, split);
    if (t->o->max_eval_steps > 0 && steps > t->o->max_eval_steps) steps = t->o->max_eval_steps;
    if (steps <= 0) {
        zf_daemon_log(&t->d, "warning", "%s split has no full batch: not evaluated", split);
        return;
    }
    double sum = 0;
    long tokens = 0;
    for (long s = 0; s < steps; s++) {
        get_batch(t, split, 0, s, 0);
        zf_err err;
        float loss = t->backend->forward(t->backend, t->inputs, t->targets, t->micro, t->T, 0, 0, &err);
        if (isnan(loss)) zf_die("evaluation: %s", err.msg);
        int n = t->backend->target_count(t->backend);
        sum += (double)loss * n;
        tokens += n;
    }
    /* each rank evaluated its shard of every batch: sums over ranks */
    double agg[2] = { sum, (double)tokens };
    zf_err cerr;
    if (zf_comm_allreduce_sum_f64(&t->comm, agg, 2, &cerr) != 0) zf_die("evaluation: %s", cerr.msg);
    sum = agg[0];
    tokens = (long)agg[1];
    if (t->rank != 0) return;
    double loss = sum / (double)tokens, ppl = exp(loss);
    zf_progress_clear(&t->progress);
    zf_info("eval %-10s step %ld: loss %.4f, perplexity %.2f (%ld batches, %ld tokens)", split, t->step, loss, ppl,
            steps, tokens);
    zf_msg *m = zf_msg_new("eval");
    zf_msg_set_int(m, "step", t->step);
    zf_msg_set_str(m, "split", split);
    zf_msg_set_f64(m, "loss", loss);
    zf_msg_set_f64(m, "ppl", ppl);
    zf_msg_set_int(m, "tokens", tokens);
    zf_daemon_publish(&t->d, m);
    zf_msg_free(m);
    json_t *row = json_pack("{s:s, s:I, s:s, s:f, s:f, s:I}", "event", "eval", "step", (json_int_t)t->step, "split",
                            split, "loss", loss, "ppl", ppl, "tokens", (json_int_t)tokens);
    append_metrics(t, row);
    json_decref(row);
}

static void sample_here(trainer *t, const char *label, int max_new);

/* Rank 0 generates; under ZeRO stage 3 every rank first takes part in
 * gathering the whole parameters (released again after). */
static void sample(trainer *t, const char *label, int max_new)
{
    zf_err err;
    host_params_current(t, 0);
    if (zf_zero_gather_all(t->zero, &err) != 0) zf_die("generation: %s", err.msg);
    if (t->rank == 0) sample_here(t, label, max_new);
    if (zf_zero_release_all(t->zero, &err) != 0) zf_die("generation: %s", err.msg);
}

static void sample_here(trainer *t, const char *label, int max_new)
{
    const zf_options *o = t->o;
    zf_ids ids = { 0 };
    zf_err err;
    if (zf_bpe_encode(t->bpe, o->generation_prompt, strlen(o->generation_prompt), 1, &ids, &err) != 0)
        zf_die("--generation_prompt: %s", err.msg);
    if (ids.len == 0) zf_ids_push(&ids, zf_bpe_eot_id(t->bpe));
    int cap = (int)ids.len + max_new, n_out = 0;
    int32_t *out = zf_xcalloc((size_t)cap, sizeof(int32_t));
    if (zf_generate(t->model, ids.data, (int)ids.len, max_new, o->temperature, o->top_k, o->top_p,
                    (uint64_t)o->seed, zf_bpe_eot_id(t->bpe), out, &n_out, &err) != 0)
        zf_die("generation: %s", err.msg);
    char *text = NULL;
    size_t len = 0;
    if (zf_bpe_decode(t->bpe, out, (size_t)n_out, &text, &len, &err) != 0) zf_die("%s", err.msg);
    zf_progress_clear(&t->progress);
    zf_info("%s: %s%.*s", label, o->generation_prompt, (int)len, text);
    zf_msg *m = zf_msg_new("sample");
    char *z = zf_utf8_sanitize(text, len); /* a sample may end inside a character */
    zf_msg_set_int(m, "step", t->step);
    zf_msg_set_str(m, "prompt", o->generation_prompt);
    zf_msg_set_str(m, "text", z);
    zf_daemon_publish(&t->d, m);
    zf_msg_free(m);
    json_t *row = json_pack("{s:s, s:I, s:s, s:s}", "event", "sample", "step", (json_int_t)t->step, "prompt",
                            o->generation_prompt, "text", z);
    append_metrics(t, row);
    json_decref(row);
    free(z);
    free(text);
    free(out);
    zf_ids_free(&ids);
}

/* ------------------------------------------------------------ checkpoints */

static char *checkpoint_meta(trainer *t)
{
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("zeroflow-checkpoint"));
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "step", json_integer(t->step));
    json_object_set_new(root, "applied_steps", json_integer(t->applied));
    json_object_set_new(root, "total_steps", json_integer(t->total_steps));
    json_object_set_new(root, "world_size", json_integer(t->world));
    json_t *loader = json_object();
    json_object_set_new(loader, "epoch", json_integer(t->step / t->steps_per_epoch));
    json_object_set_new(loader, "step_in_epoch", json_integer(t->step % t->steps_per_epoch));
    json_object_set_new(loader, "seed", json_integer(t->o->seed));
    /* sequences per optimizer step: another world size resumes with the same */
    json_object_set_new(loader, "global_batch", json_integer((json_int_t)t->micro * t->ga * t->world));
    json_object_set_new(root, "loader", loader);
    /* Dropout masks and sampling are counter-based (seed, step, micro), so the
     * seed and the step are the whole RNG state. */
    json_t *rng = json_object();
    json_object_set_new(rng, "seed", json_integer(t->o->seed));
    json_object_set_new(rng, "scheme", json_string("counter(seed, step, micro)"));
    json_object_set_new(root, "rng", rng);
    const zf_loss_scaler *s = &t->scaler;
    json_object_set_new(root, "loss_scaler",
                        json_pack("{s:f, s:b, s:f, s:I, s:i, s:i, s:f, s:I, s:I, s:b}", "scale", s->scale, "dynamic",
                                  s->dynamic, "scale_factor", s->scale_factor, "scale_window", (json_int_t)s->scale_window,
                                  "hysteresis", s->hysteresis, "cur_hysteresis", s->cur_hysteresis, "min_scale",
                                  s->min_scale, "last_overflow_iter", (json_int_t)s->last_overflow_iter, "cur_iter",
                                  (json_int_t)s->cur_iter, "consecutive_hysteresis", s->consecutive_hysteresis));
    char *opts = zf_options_to_json(t->o);
    json_error_t je;
    json_t *oj = json_loads(opts, 0, &je);
    free(opts);
    if (oj) json_object_set_new(root, "options", oj);
    json_t *ds = json_load_file(t->o->deepspeed_config, 0, &je);
    if (ds) json_object_set_new(root, "deepspeed_config", ds);
    json_object_set_new(root, "tokenizer_dir", json_string(t->o->tokenizer));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    return text;
}

static void restore_scaler(trainer *t, json_t *s)
{
    zf_loss_scaler *x = &t->scaler;
    x->scale = json_real_value(json_object_get(s, "scale"));
    x->cur_hysteresis = (int)json_integer_value(json_object_get(s, "cur_hysteresis"));
    x->last_overflow_iter = (long)json_integer_value(json_object_get(s, "last_overflow_iter"));
    x->cur_iter = (long)json_integer_value(json_object_get(s, "cur_iter"));
}

/* The node's snapshot from its ckptd (save_checkpoint, on the node's first rank). */
static void request_checkpoint(trainer *t, int final)
{
    char *meta = t->rank == 0 ? checkpoint_meta(t) : zf_xstrdup("{}");
    zf_msg *m = zf_msg_new("ckpt_save"), *r = NULL;
    zf_msg_set_int(m, "step", t->step);
    zf_msg_set_str(m, "meta_json", meta);
    zf_msg_set_int(m, "numel", (int64_t)t->src.table.total);
    zf_msg_set_int(m, "opt_rank_count", t->world);
    zf_msg_set_bool(m, "final", final);
    zf_msg_set_int(m, "rank_first", t->node.first);
    zf_msg_set_int(m, "rank_count", t->node.count);
    if (t->rank == 0 && t->node.nodes > 1) zf_msg_set_str(m, "node_first_ranks", t->node.others);
    zf_msg_set_str(m, "run_nonce", t->node.nonce);
    double t0 = zf_now();
    req_or_die(t, t->ckpt, m, &r); /* returns once ckptd has its snapshot */
    zf_progress_clear(&t->progress);
    if (t->rank == 0)
        zf_info("checkpoint of step %ld: snapshot taken in %.3f s, writing in the background", t->step, zf_now() - t0);
    else
        zf_info("checkpoint of step %ld: the part of ranks %d..%d taken in %.3f s", t->step, t->node.first,
                t->node.first + t->node.count - 1, zf_now() - t0);
    zf_msg_free(m);
    zf_msg_free(r);
    free(meta);
}

static void save_checkpoint(trainer *t, int final)
{
    /* the first rank of each node asks its node's ckptd, which takes the
     * node's ranks' optimizer partitions from offloadd; rank 0's request
     * also carries the meta data and the other nodes to wait for */
    zf_err err;
    /* the device optimizers' state into offloadd's segments, on every rank
     * before any asks ckptd for the partitions */
    host_params_current(t, 1);
    if (t->gpu_zero && t->backend->optimizer_step && zf_comm_barrier(&t->comm, &err) != 0)
        zf_die("checkpoint: %s", err.msg);
    if (t->rank == t->node.first) request_checkpoint(t, final);
    /* no rank leaves (the final one) before its partition is in the
     * snapshot: offloadd may keep a rank's master in the rank's own "params"
     * segment, which goes with the rank (offload_server.h) */
    if (t->world > 1 && zf_comm_barrier(&t->comm, &err) != 0) zf_die("checkpoint: %s", err.msg);
}

static void wait_checkpoints(trainer *t)
{
    if (t->rank != t->node.first) return;
    zf_msg *m = zf_msg_new("ckpt_wait"), *r = NULL;
    req_or_die(t, t->ckpt, m, &r);
    zf_msg_free(m);
    zf_msg_free(r);
}

/* Resume: parameters here, optimizer shard in offloadd (opt_init names the dir). */
static void resume_from(trainer *t, const char *dir)
{
    zf_err err;
    /* what this rank keeps of the model (only the frames holding it are read) */
    if (zf_ckpt_read_tensor_range(dir, "model", t->params.data, t->src.table.total, t->zplan.params_base,
                                  t->zplan.params_numel, &err) != 0)
        zf_die("%s", err.msg);
    char *meta = NULL;
    if (zf_ckpt_read_meta(dir, &meta, &err) != 0) zf_die("%s", err.msg);
    json_error_t je;
    json_t *root = json_loads(meta, 0, &je);
    free(meta);
    if (!root) zf_die("%s/meta.json:%d:%d: %s", dir, je.line, je.column, je.text);
    json_t *step = json_object_get(root, "step"), *applied = json_object_get(root, "applied_steps");
    if (!json_is_integer(step) || !json_is_integer(applied))
        zf_die("%s/meta.json: step: expected an integer", dir);
    int saved_world = 1;
    if (zf_resume_check_world(dir, t->world, t->micro, t->ga, &saved_world, &err) != 0)
        zf_die("%s", err.msg);
    if (saved_world != t->world && t->rank == 0)
        zf_info("resuming a checkpoint of %d ranks with %d: same global batch, optimizer partitions re-sliced by offloadd",
                saved_world, t->world);
    t->step = (long)json_integer_value(step);
    t->applied = (long)json_integer_value(applied);
    json_t *sc = json_object_get(root, "loss_scaler");
    if (json_is_object(sc)) restore_scaler(t, sc);
    json_decref(root);
}

/* ------------------------------------------------------------------ setup */

/* The rank's ZeRO plan, its "params"/"grads" segments as its stage keeps
 * them (whole or its slice; named per rank when there are several) and the
 * ZeRO engine on them.  A collective at stage 3 (the persistent gather). */
static void create_segments(trainer *t)
{
    zf_err err;
    const zf_param_table *pt = &t->src.table;
    zf_zero_options *zo = &t->zopts;
    zf_zero_options_from_config(zo, &t->cfg);
    if (zf_zero_plan_init(&t->zplan, pt, t->src.cfg.n_layer, zo, t->rank, t->world, &err) != 0 ||
        zf_zero_rank_segments(&t->zplan, t->o->run_id, &t->src, &t->params, &t->grads, &err) != 0)
        zf_die("%s", err.msg);
    char lname[64];
    zf_zero_rank_seg_name(lname, sizeof lname, "layout", t->rank, t->world);
    int64_t shape[2] = { zf_param_layout(pt, NULL), 3 };
    if (zf_shm_create(&t->layout, t->o->run_id, lname, ZF_DTYPE_I64, 2, shape, &err) != 0) zf_die("%s", err.msg);
    zf_param_layout(pt, t->layout.data);
    if (!(t->zero = zf_zero_create(&t->comm, &t->zplan, zo, t->params.data, t->grads.data, &err)))
        zf_die("%s", err.msg);
}

/* At start, each rank's bytes of parameters, gradients and optimizer state
 * as allocated (zero_rank.h), next to ZeRO's accounting. */
static void report_memory(trainer *t)
{
    zf_err err;
    char line[512];
    int match = 0;
    if (zf_zero_rank_memory_line(t->zero, &t->zplan, &t->params, &t->grads, t->opt_bytes, line, sizeof line, &match,
                                 &err) != 0)
        zf_die("memory report: %s", err.msg);
    zf_info("%s", line);
    if (!match) zf_daemon_log(&t->d, "warning", "rank %d: memory differs from the ZeRO accounting: %s", t->rank, line);
}

static void *connect_ctl(trainer *t, const char *daemon)
{
    char name[64];
    zf_err err;
    snprintf(name, sizeof name, "ctl-%s", daemon);
    void *s = zf_bus_socket(&t->d.bus, ZMQ_REQ, name, 0, &err);
    if (!s) zf_die("%s", err.msg);
    return s;
}

static void init_optimizer(trainer *t, const char *resume_dir)
{
    /* The rank's optimizer shard (the whole buffer at ZeRO stage 0, its
     * slice above) and what its segments hold (zero_plan.h). */
    size_t total = t->src.table.total;
    zf_msg *m = zf_msg_new("opt_init"), *r = NULL;
    zf_msg_set_int(m, "rank", t->rank);
    zf_msg_set_int(m, "world", t->world);
    zf_msg_set_str(m, "params_shm", t->params.name);
    zf_msg_set_str(m, "grads_shm", t->grads.name);
    zf_msg_set_str(m, "layout_shm", t->layout.name);
    zf_msg_set_int(m, "numel", (int64_t)total);
    zf_zero_rank_opt_init(&t->zplan, m);
    if (resume_dir) zf_msg_set_str(m, "resume_dir", resume_dir);
    req_or_die(t, t->offload, m, &r);
    zf_msg_free(m);
    zf_msg_free(r);
}

/* ------------------------------------------------------------------- step */

/* One iteration: GA micro-batches, the overflow/clip decisions, the update.
 * Returns the mean loss of the micro-batches. */
static double train_step(trainer *t, double *lr_out, int *skipped)
{
    long epoch = t->step / t->steps_per_epoch, in_epoch = t->step % t->steps_per_epoch;
    zf_backend *be = t->backend;
    zf_err err;
    memset(&t->phase, 0, sizeof t->phase);
    /* A GPU backend never reads the host gradients and its grads_to_host
     * overwrites all that offloadd reads (a rank: its shard): no 1.4 GB
     * memset per step (d24), and a pipelined offloadd may still be reading
     * them. */
    if ((!t->gpu_grads && zf_zero_zero_grads(t->zero, &err) != 0) || be->zero_grads(be, &err) != 0)
        zf_die("%s", err.msg);
    double loss_sum = 0;
    float scale = (float)t->scaler.scale;
    for (int micro = 0; micro < t->ga; micro++) {
        get_batch(t, "train", epoch, in_epoch, micro);
        uint64_t dropout_seed = zf_hash3((uint64_t)t->o->seed, (uint64_t)t->step, (uint64_t)micro);
        double t0 = zf_now();
        float loss = be->forward(be, t->inputs, t->targets, t->micro, t->T, 1, dropout_seed, &err);
        if (isnan(loss)) zf_die("step %ld: %s", t->step + 1, err.msg);
        loss_sum += loss;
        double t1 = zf_now();
        /* DeepSpeed divides the loss by the accumulation steps before backward. */
        /* ... and by the world size: the sum over ranks is their mean (zero_engine.h) */
        if (be->backward(be, zf_zero_backward_scale(t->zero, scale, t->ga), &err) != 0 ||
            zf_zero_failed(t->zero, &err))
            zf_die("%s", err.msg);
        if (!be->phase_times) { /* synchronous backend: the host clock measures it */
            t->phase.forward_s += t1 - t0;
            t->phase.backward_s += zf_now() - t1;
        }
    }
    if (debug_overflow_at(t->step + 1) && be->poison_grads && be->poison_grads(be, &err) != 0) zf_die("%s", err.msg);
    int overflow = 0;
    double sumsq = 0;
    grad_stats(t, t->scaler.dynamic || t->cfg.fp16_enabled, &overflow, &sumsq);
    int verdict = zf_loss_scaler_update(&t->scaler, overflow);
    if (verdict < 0) /* as DeepSpeed: overflowing at min_loss_scale ends the run */
        zf_die("step %ld: gradient overflow with the loss scale already at fp16.min_loss_scale %g: cannot lower it further",
               t->step + 1, t->scaler.min_scale);
    *skipped = verdict;
    if (*skipped) {
        *lr_out = 0;
        if (be->phase_times) be->phase_times(be, &t->phase);
        pipe_fold_wait(t);
        return loss_sum / t->ga;
    }
    double norm = sqrt(sumsq) / (double)scale;
    float grad_scale = zf_clip_coef(norm, t->cfg.gradient_clipping) / scale;
    if (be->optimizer_step) { /* the optimizer is on the device: no exchange with offloadd */
        if (be->optimizer_step(be, t->applied + 1, grad_scale, lr_out, &err) != 0) zf_die("%s", err.msg);
        t->applied++;
        be->phase_times(be, &t->phase);
        return loss_sum / t->ga;
    }
    if (t->pipe_on) {
        /* offloadd updates the master in order and announces the finished
         * prefix; the next forward uploads each range as soon as it is
         * covered (offload_ready) */
        offload_drain(t);
        zf_msg *m = zf_msg_new("grads_ready");
        zf_msg_set_int(m, "rank", t->rank);
        zf_msg_set_int(m, "step", t->applied + 1);
        zf_msg_set_f64(m, "grad_scale", grad_scale);
        zf_msg_set_bool(m, "pipelined", 1);
        if (zf_bus_send(t->offload, m, &err) != 0) zf_die("grads_ready: %s", err.msg);
        zf_msg_free(m);
        t->pipe_pending = 1;
        t->pipe_step = t->applied + 1;
        t->params_stale = 1;
        zf_adamw_hparams hp;
        zf_lr_schedule sched;
        zf_ds_config_optimizer(&t->cfg, &hp, &sched);
        *lr_out = zf_lr_at(&sched, t->pipe_step); /* offloadd's lr (zf_shard_opt_lr) */
        t->applied++;
        if (be->upload_params_next(be, t->master, offload_ready, t, &err) != 0) zf_die("%s", err.msg);
        if (be->phase_times) be->phase_times(be, &t->phase);
        pipe_fold_wait(t);
        return loss_sum / t->ga;
    }
    double t_opt = zf_now();
    zf_msg *m = zf_msg_new("grads_ready"), *r = NULL;
    zf_msg_set_int(m, "rank", t->rank);
    zf_msg_set_int(m, "step", t->applied + 1);
    zf_msg_set_f64(m, "grad_scale", grad_scale);
    req_or_die(t, t->offload, m, &r);
    *lr_out = zf_msg_f64(r, "lr");
    t->applied++;
    if (t->applied <= 2 || t->applied % 10 == 0)
        zf_daemon_log(&t->d, "info", "offloadd: update of step %ld in %.1f ms", t->applied,
                      1e3 * zf_msg_f64(r, "seconds"));
    double t_up = zf_now();
    t->phase.optimizer_s += t_up - t_opt; /* offloadd's update and its write of "params" */
    /* the other ranks' updated slices (stage 1-2) or a fresh start of the
     * stage-3 gathers; GPU ranks gather on the device (params_from_host) */
    if (t->gpu_zero) t->params_stale = 1;
    else if (zf_zero_params_updated(t->zero, &err) != 0) zf_die("%s", err.msg);
    if (be->params_from_host(be, &err) != 0) zf_die("%s", err.msg);
    if (be->phase_times) be->phase_times(be, &t->phase);
    else t->phase.transfer_s += zf_now() - t_up;
    zf_msg_free(m);
    zf_msg_free(r);
    return loss_sum / t->ga;
}

static zf_msg *refuse_request(void *ctx, const zf_peer *peer, const zf_msg *m, zf_err *err)
{
    (void)ctx, (void)peer;
    zf_err_set(err, "the trainer answers only ping and shutdown, not '%s'", zf_msg_type(m));
    return NULL;
}

/* Answer control requests (ping from a monitor) between steps; a
 * `shutdown` request stops like SIGTERM. */
static void serve_control(trainer *t)
{
    int stop = 0;
    while (zf_daemon_serve_one(&t->d, 0, refuse_request, t, &stop)) {}
    if (stop) zf_stop_signal = SIGTERM;
}

static void publish_step(trainer *t, double loss, double lr, int skipped, double step_s, double tok_s, double eta)
{
    zf_msg *m = zf_msg_new("step");
    zf_msg_set_int(m, "step", t->step);
    zf_msg_set_int(m, "total", t->total_steps);
    zf_msg_set_int(m, "epoch", (t->step - 1) / t->steps_per_epoch);
    zf_msg_set_f64(m, "loss", loss);
    zf_msg_set_f64(m, "lr", lr);
    zf_msg_set_f64(m, "loss_scale", t->scaler.scale);
    zf_msg_set_f64(m, "tokens_per_s", tok_s);
    zf_msg_set_f64(m, "eta_s", eta);
    zf_msg_set_f64(m, "step_s", step_s);
    zf_msg_set_f64(m, "data_wait_s", t->data_wait);
    zf_msg_set_f64(m, "forward_s", t->phase.forward_s);
    zf_msg_set_f64(m, "backward_s", t->phase.backward_s);
    zf_msg_set_f64(m, "optimizer_s", t->phase.optimizer_s);
    zf_msg_set_f64(m, "transfer_s", t->phase.transfer_s);
    zf_msg_set_f64(m, "comm_s", t->phase.comm_s);
    zf_msg_set_bool(m, "skipped", skipped);
    zf_daemon_publish(&t->d, m);
    zf_msg_free(m);
}

int zf_train_main(const zf_options *o, zf_backend_factory gpu)
{
    static trainer t;
    zf_err err;
    t.o = o;
    t.rank = o->rank;
    t.world = o->world_size;
    /* the data-parallel ranks: MPI when mpirun/srun started us */
    if (zf_comm_init(&t.comm, &err) != 0) zf_die("%s", err.msg);
    if (t.comm.mpi) {
        if (o->world_size != t.comm.size)
            zf_die("--world_size %d: the launcher started %d ranks: expected the same number", o->world_size,
                   t.comm.size);
        t.rank = t.comm.rank;
    } else if (t.world > 1) {
        zf_die("--world_size %d: expected the trainer ranks to be started by mpirun or srun (one process per rank)",
               t.world);
    }
    if (zf_zero_rank_nodes(&t.comm, o->run_id, t.rank, t.world, o->local_rank, &t.node, &err) != 0)
        zf_die("%s", err.msg);
    if (zf_ds_config_load(o->deepspeed_config, &t.cfg, &err) != 0 ||
        zf_ds_config_resolve_batch(&t.cfg, o->batch_size, o->world_size, &err) != 0)
        zf_die("%s", err.msg);
    t.micro = t.cfg.train_micro_batch_size_per_gpu;
    t.ga = t.cfg.gradient_accumulation_steps;
    t.T = o->max_length;
    char name[32];
    if (t.world > 1) snprintf(name, sizeof name, "trainer-%d", t.rank);
    else snprintf(name, sizeof name, "trainer");
    if (zf_daemon_start(&t.d, name, o->run_dir, 1, &err) != 0) zf_die("%s", err.msg);

    if (zf_bpe_load(o->tokenizer, &t.bpe, &err) != 0) zf_die("%s", err.msg);
    /* the parameters are read per rank for what it keeps (create_segments) */
    if (zf_model_source_open(o->model_name, zf_bpe_vocab_size(t.bpe), (uint64_t)o->seed, 0, &t.src, &err) != 0)
        zf_die("%s", err.msg);
    if (t.src.cfg.vocab_size < zf_bpe_vocab_size(t.bpe))
        zf_die("--model_name %s: vocab_size %d is smaller than the tokenizer's %d tokens", o->model_name,
               t.src.cfg.vocab_size, zf_bpe_vocab_size(t.bpe));
    if (t.T > t.src.cfg.n_positions)
        zf_die("--max_length: %d exceeds the model's n_positions %d", t.T, t.src.cfg.n_positions);
    zf_info("model %s: %d layers, %d heads, d=%d, vocab %d, %.2fM parameters; micro batch %d x %d tokens, "
            "gradient accumulation %d, ZeRO stage %d, %s",
            o->model_name, t.src.cfg.n_layer, t.src.cfg.n_head, t.src.cfg.n_embd, t.src.cfg.vocab_size,
            (double)zf_param_count(&t.src.table) / 1e6, t.micro, t.T, t.ga, t.cfg.zero_stage,
            t.cfg.fp16_enabled ? "fp16 with dynamic loss scaling" : t.cfg.bf16_enabled ? "bf16" : "fp32");
    create_segments(&t);
    /* generation reads the working params (gathered whole first under stage 3) */
    t.model = zf_gpt2_create(&t.src.cfg, &t.src.table, zf_zero_work_params(t.zero), 1, t.src.cfg.n_positions);
    t.inputs = zf_xcalloc((size_t)t.micro * (size_t)t.T, sizeof(int32_t));
    t.targets = zf_xcalloc((size_t)t.micro * (size_t)t.T, sizeof(int32_t));
    zf_loss_scaler_init(&t.scaler, t.cfg.fp16_enabled, t.cfg.fp16_loss_scale, t.cfg.fp16_initial_scale_power,
                        t.cfg.fp16_loss_scale_window, t.cfg.fp16_hysteresis, t.cfg.fp16_min_loss_scale,
                        t.cfg.fp16_consecutive_hysteresis);

    char resume_dir[1024] = "";
    if (o->resume) {
        const char *where = o->resume_path[0] ? o->resume_path : o->output_dir;
        if (zf_ckpt_resolve(where, resume_dir, sizeof resume_dir, &err) != 0) zf_die("--resume: %s", err.msg);
        resume_from(&t, resume_dir);
        zf_info("resuming from %s at step %ld", resume_dir, t.step);
    }
    t.loader = connect_ctl(&t, "loaderd");
    t.offload = connect_ctl(&t, "offloadd");
    t.ckpt = connect_ctl(&t, "ckptd");
    init_optimizer(&t, resume_dir[0] ? resume_dir : NULL);
    if (resume_dir[0] && zf_zero_params_updated(t.zero, &err) != 0) zf_die("%s", err.msg);
    attach_opt_segments(&t);
    report_memory(&t);

    zf_backend_spec spec = { .cfg = &t.src.cfg, .table = &t.src.table, .params = zf_zero_work_params(t.zero),
                             .grads = zf_zero_work_grads(t.zero), .max_B = t.micro, .max_T = t.T, .rank = t.rank,
                             .fp16 = t.cfg.fp16_enabled, .bf16 = t.cfg.bf16_enabled };
    spec.act_checkpointing = o->gradient_checkpointing || t.cfg.activation_checkpointing;
    spec.grad_accum = t.ga;
    /* GPU ranks, or one GPU at stage 3 with parameters and optimizer
     * offloaded (the layers streamed from the host): ZeRO on the device (backend.h) */
    const int offload_param = t.cfg.zero_stage == 3 && strcmp(t.cfg.zero_offload_param_device, "cpu") == 0;
    /* ZF_GPU_ZERO_ONE_RANK=1 (tests): one GPU through the ranks' path too,
     * so that its stages run on a one-GPU machine (NCCL over one rank) */
    const char *one_rank = getenv("ZF_GPU_ZERO_ONE_RANK");
    if (t.world > 1 || (offload_param && strcmp(t.cfg.zero_offload_optimizer_device, "cpu") == 0) ||
        (one_rank && strcmp(one_rank, "1") == 0)) {
        spec.comm = &t.comm;
        spec.zplan = &t.zplan;
        spec.zopts = &t.zopts;
        spec.params_kept = t.params.data;
        spec.grads_kept = t.grads.data;
        spec.offload_param = offload_param;
    }
    /* No optimizer offload in the config: the GPU keeps the optimizer (one
     * rank's whole buffer; offloadd then only holds the state for checkpoints). */
    if (o->num_gpus > 0 && gpu && strcmp(t.cfg.zero_offload_optimizer_device, "cpu") != 0 && t.master) {
        spec.ds = &t.cfg;
        spec.layout_rows = t.layout.data;
        spec.layout_nrows = (int)t.layout.hdr->shape[0];
        spec.opt_master = t.master;
        spec.opt_m = t.opt_m.data;
        spec.opt_v = t.opt_v.data;
    }
    if (o->num_gpus > 0 && gpu) {
        int no_device = 0;
        t.backend = gpu(&spec, &no_device, &err);
        /* only a machine without a usable GPU trains on the CPU instead: a
         * model that does not fit (or ranks, whose others already wait in
         * NCCL) must not silently become a CPU run */
        if (!t.backend && (!no_device || t.world > 1))
            zf_die("--num_gpus %d%s: %s", o->num_gpus, t.world > 1 ? ", a rank" : "", err.msg);
        if (!t.backend) zf_warn("--num_gpus %d: %s; training on the CPU", o->num_gpus, err.msg);
    } else if (o->num_gpus > 0) {
        zf_warn("--num_gpus %d: this trainer is the CPU build; training on the CPU", o->num_gpus);
    }
    t.gpu_grads = t.backend != NULL;
    t.gpu_zero = t.backend != NULL && spec.comm != NULL;
    if (!t.backend && !(t.backend = zf_backend_cpu_create(&spec, &err))) zf_die("%s", err.msg);
    if (t.world > 1 && !t.gpu_zero &&
        zf_backend_cpu_attach_zero(t.backend, zf_zero_hooks(t.zero), (uint64_t)t.rank * (uint64_t)t.micro, &err) != 0)
        zf_die("--world_size %d: %s", t.world, err.msg);
    zf_info("computing on %s", t.backend->name);
    pipe_setup(&t);

    t.steps_per_epoch = split_steps(&t, "train");
    t.total_steps = (long)o->num_epochs * t.steps_per_epoch;
    if (o->max_train_steps > 0 && o->max_train_steps < t.total_steps) t.total_steps = o->max_train_steps;
    if (o->max_train_steps > t.total_steps) t.total_steps = o->max_train_steps; /* more epochs */
    zf_daemon_set_state(&t.d, "ready", NULL);
    zf_daemon_set_state(&t.d, "running", NULL);
    zf_info("training %ld steps (%ld per epoch), %d tokens per step", t.total_steps, t.steps_per_epoch,
            t.micro * t.ga * t.T * t.world);
    if (t.step == 0 && o->generation_prompt[0]) sample(&t, "sample before training", 24);

    long tokens_per_step = (long)t.micro * t.ga * t.T * t.world;
    zf_progress_init(&t.progress, t.total_steps, o->log_every);
    double start = zf_now(), avg_step = 0;
    long first_step = t.step;
    /* The stop decision: with N ranks only the agreed value counts, since a
     * signal can reach one rank after the others have voted and a rank that
     * left the loop on its own would leave the rest waiting in a collective. */
    int stop = 0;
    while (t.step < t.total_steps && !stop) {
        double t0 = zf_now();
        t.data_wait = 0;
        double lr = 0;
        int skipped = 0;
        const double comm0 = t.comm.busy_s;
        double loss = train_step(&t, &lr, &skipped);
        if (zf_zero_mean(t.zero, &loss, 1, &err) != 0) zf_die("%s", err.msg); /* the mean over ranks */
        /* time in communication: CPU ranks' in the host engine (GPU ranks
         * report their device collectives through phase_times) */
        if (!t.gpu_zero) t.phase.comm_s += t.comm.busy_s - comm0;
        t.step++;
        double dt = zf_now() - t0;
        avg_step = t.step - first_step == 1 ? dt : 0.9 * avg_step + 0.1 * dt;
        double tok_s = (double)tokens_per_step / avg_step, eta = avg_step * (double)(t.total_steps - t.step);
        if (t.rank == 0) publish_step(&t, loss, lr, skipped, dt, tok_s, eta); /* one step event per run */
        if (t.step % (o->log_every > 0 ? o->log_every : 10) == 0 || t.step == t.total_steps || t.step == first_step + 1) {
            json_t *row = json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:b, s:f, s:f, s:f, s:f, s:f, s:f}",
                                    "event", "step", "step", (json_int_t)t.step, "loss", loss, "lr", lr, "loss_scale",
                                    t.scaler.scale, "tokens_per_s", tok_s, "data_wait_s", t.data_wait, "skipped",
                                    skipped, "step_s", dt, "forward_s", t.phase.forward_s, "backward_s",
                                    t.phase.backward_s, "optimizer_s", t.phase.optimizer_s, "transfer_s",
                                    t.phase.transfer_s, "comm_s", t.phase.comm_s);
            if (getenv("ZF_DEBUG_OVERFLOW_STEPS")) {
                char hx[17];
                snprintf(hx, sizeof hx, "%016llx", (unsigned long long)debug_state_hash(&t));
                json_object_set_new(row, "state_hash", json_string(hx));
            }
            append_metrics(&t, row);
            json_decref(row);
        }
        if (t.rank == 0) zf_progress_update(&t.progress, t.step, (t.step - 1) / t.steps_per_epoch, loss, lr, t.scaler.scale, tok_s, eta,
                           skipped);
        if (skipped) zf_info("step %ld: gradient overflow, step skipped; loss scale now %g", t.step, t.scaler.scale);
        if (o->eval_every > 0 && t.step % o->eval_every == 0 && t.step < t.total_steps) evaluate(&t, "validation");
        if (o->save_checkpoint && o->save_every > 0 && t.step % o->save_every == 0 && t.step < t.total_steps)
            save_checkpoint(&t, 0);
        serve_control(&t);
        /* SIGINT/SIGTERM is honoured here, between steps, by every rank at once */
        stop = t.world > 1 ? zf_zero_rank_agree_stop(&t.comm, zf_stop_signal != 0) : zf_stop_signal != 0;
    }
    zf_progress_finish(&t.progress);
    double elapsed = zf_now() - start;
    if (stop) {
        zf_info("stop requested (signal %d) after step %ld", zf_stop_signal ? (int)zf_stop_signal : SIGTERM, t.step);
        if (o->save_checkpoint) {
            save_checkpoint(&t, 1);
            wait_checkpoints(&t);
        }
    } else {
        zf_info("trained %ld steps in %.1f s (%.0f tokens/s)", t.step - first_step, elapsed,
                (double)(t.step - first_step) * (double)tokens_per_step / (elapsed > 0 ? elapsed : 1e-9));
        evaluate(&t, "validation");
        evaluate(&t, "test");
        if (o->generation_prompt[0]) sample(&t, "sample", o->max_new_tokens);
        if (o->save_checkpoint) save_checkpoint(&t, 1);
        if (o->export_hf[0]) {
            host_params_current(&t, 0);
            if (zf_zero_gather_all(t.zero, &err) != 0) zf_die("--export_hf: %s", err.msg);
            if (t.rank == 0 && zf_hf_save(o->export_hf, &t.src.cfg, &t.src.table, zf_zero_work_params(t.zero),
                                          o->tokenizer, &err) != 0)
                zf_die("--export_hf: %s", err.msg);
            if (zf_zero_release_all(t.zero, &err) != 0) zf_die("--export_hf: %s", err.msg);
            if (t.rank == 0) zf_info("exported a Hugging Face model directory to %s", o->export_hf);
        }
        wait_checkpoints(&t);
    }
    if (t.pipe_on) offload_drain(&t);
    zf_daemon_set_state(&t.d, "stopping", NULL);
    if (t.world > 1) {
        char zline[512];
        zf_zero_rank_summary(t.zero, t.rank, zline, sizeof zline);
        zf_info("%s", zline);
    }
    t.backend->free(t.backend);
    zf_zero_free(t.zero);
    zf_zero_plan_free(&t.zplan);
    zf_gpt2_free(t.model);
    free(t.inputs);
    free(t.targets);
    zf_bus_close_socket(t.loader);
    zf_bus_close_socket(t.offload);
    zf_bus_close_socket(t.ckpt);
    zf_shm_close(&t.ring);
    zf_shm_close(&t.params);
    zf_shm_close(&t.grads);
    zf_shm_close(&t.layout);
    zf_shm_close(&t.opt_master);
    zf_shm_close(&t.opt_m);
    zf_shm_close(&t.opt_v);
    zf_shm_close(&t.opt_progress);
    zf_model_source_free(&t.src);
    zf_bpe_free(t.bpe);
    zf_daemon_finish(&t.d);
    zf_comm_finalize(&t.comm);
    return 0;
}
