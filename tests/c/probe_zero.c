/* probe_zero.c - the ZeRO engine (trainer/zero_engine.h) on a tiny GPT-2,
 * one process per rank under mpirun, for tests/test_zero_engine.sh.
 *
 * Owns nothing but the plumbing of one training run per rank, doing what
 * trainer/train_loop.c and offloadd do minus the messages: each step GA
 * micro-batches (forward + backward of loss * scale / (GA * world)) through
 * the engine's hooks, zf_zero_reduce (one overflow flag, one global norm),
 * clipping, AdamW on the rank's optimizer shard (zf_shard_opt, master/m/v in
 * this process where offloadd would hold them), the shard copied into the
 * kept params, zf_zero_params_updated.  Data: global row g of micro step k of
 * step s holds tokens zf_hash3(seed, (s*GA + k)*G + g, t) % V, G = micro *
 * world, and rank r computes rows r*micro .. r*micro + micro - 1 (dropout
 * on: masks follow the global row), so any world size with micro = G/world
 * sees the same global batch.
 *
 *   probe_zero --stage S --micro m --ga G --steps K --out DIR [--clip c]
 *              [--lr x] [--bucket n] [--overlap 0|1] [--prefetch n]
 *              [--persist n] [--max_live n] [--T t] [--seed s] [--eps x]
 *              [--poison R:S]
 *   --poison R:S: rank R puts +inf into the first gradient of its slice
 *   before the reduction of step S (1-based): every rank must then skip that
 *   step's update (one overflow decision for all), as the trainer does.
 *   rank 0 writes DIR/losses.txt (the mean loss over ranks, %.17g per step),
 *   DIR/params.f32 (the final whole flat buffer), DIR/stats.txt; every rank
 *   prints its zero-memory line (lib/zero_memory.h) and checks it against
 *   the accounting (exit 1 on a mismatch). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "log.h"
#include "loss_scaler.h"
#include "model.h"
#include "rng.h"
#include "zero_memory.h"
#include "offloadd/shard_optimizer.h"
#include "trainer/gpt2_cpu.h"
#include "trainer/zero_engine.h"
#include "trainer/zero_plan.h"
#include "tests/c/probe_util.h"

int main(int argc, char **argv)
{
    zf_comm comm;
    zf_err err;
    if (zf_comm_init(&comm, &err) != 0) zf_die("%s", err.msg);
    char who[32];
    snprintf(who, sizeof who, "probe_zero-%d", comm.rank);
    zf_log_init(who);
    const int stage = atoi(need(argc, argv, "--stage")), micro = atoi(need(argc, argv, "--micro"));
    const int ga = atoi(need(argc, argv, "--ga")), steps = atoi(need(argc, argv, "--steps"));
    const int T = atoi(opt(argc, argv, "--T", "16"));
    const char *out = need(argc, argv, "--out");
    const double clip = strtod(opt(argc, argv, "--clip", "0"), NULL);
    int poison_rank = -1, poison_step = -1;
    if (sscanf(opt(argc, argv, "--poison", "-1:-1"), "%d:%d", &poison_rank, &poison_step) != 2) zf_die("bad --poison");
    const uint64_t seed = strtoull(opt(argc, argv, "--seed", "7"), NULL, 0);
    if (micro < 1 || ga < 1 || steps < 1 || T < 1 || T > 32) zf_die("bad --micro/--ga/--steps/--T");

    zf_gpt2_config cfg = { .n_layer = 2, .n_head = 2, .n_embd = 32, .n_positions = 32, .vocab_size = 97,
                           .layer_norm_epsilon = 1e-5f, .embd_pdrop = 0.1f, .attn_pdrop = 0.1f, .resid_pdrop = 0.1f };
    zf_param_table table;
    zf_gpt2_param_table(&cfg, &table);
    float *init = zf_params_alloc(&table);
    zf_gpt2_init_params(&cfg, &table, init, seed);

    zf_zero_options zo = { .stage = stage,
                           .reduce_bucket_size = strtoull(opt(argc, argv, "--bucket", "500000000"), NULL, 0),
                           .allgather_bucket_size = strtoull(opt(argc, argv, "--bucket", "500000000"), NULL, 0),
                           .overlap_comm = atoi(opt(argc, argv, "--overlap", "0")),
                           .prefetch_bucket_size = strtoull(opt(argc, argv, "--prefetch", "50000000"), NULL, 0),
                           .param_persistence_threshold = strtoull(opt(argc, argv, "--persist", "100000"), NULL, 0),
                           .max_live_parameters = strtoull(opt(argc, argv, "--max_live", "1000000000"), NULL, 0) };
    zf_zero_plan plan;
    if (zf_zero_plan_init(&plan, &table, cfg.n_layer, &zo, comm.rank, comm.size, &err) != 0) zf_die("%s", err.msg);
    /* the kept buffers (shared-memory segments in the pipeline) */
    float *pkeep = zf_xcalloc(plan.params_numel ? plan.params_numel : 1, sizeof(float));
    float *gkeep = zf_xcalloc(plan.grads_numel ? plan.grads_numel : 1, sizeof(float));
    memcpy(pkeep, init + plan.params_base, plan.params_numel * sizeof(float));
    /* the optimizer shard (offloadd's master/m/v) */
    float *master = zf_xcalloc(plan.opt_n ? plan.opt_n : 1, sizeof(float));
    float *am = zf_xcalloc(plan.opt_n ? plan.opt_n : 1, sizeof(float));
    float *av = zf_xcalloc(plan.opt_n ? plan.opt_n : 1, sizeof(float));
    memcpy(master, init + plan.opt_off, plan.opt_n * sizeof(float));
    int nrows = zf_param_layout(&table, NULL);
    int64_t *rows = zf_xcalloc((size_t)nrows * 3, sizeof *rows);
    zf_param_layout(&table, rows);
    zf_decay_range *ranges = zf_xcalloc((size_t)nrows, sizeof *ranges);
    for (int i = 0; i < nrows; i++)
        ranges[i] = (zf_decay_range){ (size_t)rows[3 * i], (size_t)rows[3 * i + 1], (int)rows[3 * i + 2] };
    zf_adamw_hparams h = { .lr = strtod(opt(argc, argv, "--lr", "3e-3"), NULL), .beta1 = 0.9, .beta2 = 0.999,
                           .eps = strtod(opt(argc, argv, "--eps", "1e-8"), NULL), .weight_decay = 0.01 };
    zf_shard_opt *opt_ = zf_shard_opt_create_checked(plan.opt_off, plan.opt_n, ranges, nrows, &h, NULL, master, am, av,
                                                     &err);
    if (!opt_) zf_die("%s", err.msg);

    zf_zero *z = zf_zero_create(&comm, &plan, &zo, pkeep, gkeep, &err);
    if (!z) zf_die("%s", err.msg);
    zf_gpt2 *model = zf_gpt2_create(&cfg, &table, zf_zero_work_params(z), micro, T);
    if (!model) zf_die("model create failed");
    zf_gpt2_set_hooks(model, zf_zero_hooks(z));
    zf_gpt2_set_row_offset(model, (uint64_t)comm.rank * (uint64_t)micro);

    /* measured memory: the allocations above (the optimizer arrays stand in
     * for offloadd's segments) against the accounting */
    zf_zero_setup su = { stage, comm.size, comm.rank, table.total, 4, 1, 0 };
    zf_zero_mem meas = { plan.params_numel * 4, plan.grads_numel * 4, 3 * plan.opt_n * 4, ZF_MEM_RANK, ZF_MEM_RANK,
                         ZF_MEM_OFFLOADD, zf_zero_transient_bytes(z) };
    zf_zero_mem expect;
    if (zf_zero_expected(&su, &expect, &err) != 0) zf_die("%s", err.msg);
    char line[512];
    zf_zero_memory_format(line, sizeof line, &su, &meas);
    printf("%s\n", line);
    fflush(stdout);
    int mem_bad = zf_zero_mem_check(&meas, &expect, &err) != 0;
    if (mem_bad) zf_error("rank %d: %s", comm.rank, err.msg);

    const int G = micro * comm.size;
    int32_t *tok = zf_xcalloc((size_t)micro * T, sizeof(int32_t)), *tgt = zf_xcalloc((size_t)micro * T, sizeof(int32_t));
    double *losses = zf_xcalloc((size_t)steps, sizeof(double));
    const float loss_scale = 1.0f;
    long applied = 0;
    for (int s = 0; s < steps; s++) {
        if (zf_zero_zero_grads(z, &err) != 0) zf_die("%s", err.msg);
        double lsum = 0;
        for (int k = 0; k < ga; k++) {
            for (int r = 0; r < micro; r++) {
                uint64_t g = (uint64_t)(s * ga + k) * (uint64_t)G + (uint64_t)(comm.rank * micro + r);
                for (int t = 0; t <= T; t++) {
                    int32_t v = (int32_t)(zf_hash3(seed, g, (uint64_t)t) % (uint64_t)cfg.vocab_size);
                    if (t < T) tok[r * T + t] = v;
                    if (t > 0) tgt[r * T + t - 1] = v;
                }
            }
            uint64_t dseed = zf_hash3(seed, (uint64_t)s, (uint64_t)k);
            float loss = zf_gpt2_forward(model, tok, tgt, micro, T, 1, dseed);
            if (isnan(loss) || zf_zero_failed(z, &err)) zf_die("forward: %s", isnan(loss) ? "nan" : err.msg);
            lsum += loss;
            zf_gpt2_backward(model, zf_zero_work_grads(z), zf_zero_backward_scale(z, loss_scale, ga));
            if (zf_zero_failed(z, &err)) zf_die("backward: %s", err.msg);
        }
        if (comm.rank == poison_rank && s + 1 == poison_step && plan.own_n)
            gkeep[plan.own_off - plan.grads_base] = INFINITY; /* the kept grads the reduction reads */
        int overflow;
        double sumsq;
        if (zf_zero_reduce(z, &overflow, &sumsq, &err) != 0) zf_die("%s", err.msg);
        if ((s + 1 == poison_step) != (overflow != 0))
            zf_die("step %d: overflow %d, expected %d", s + 1, overflow, s + 1 == poison_step);
        if (!overflow) {
            double norm = sqrt(sumsq) / loss_scale;
            float grad_scale = zf_clip_coef(norm, clip) / loss_scale;
            zf_shard_opt_step(opt_, gkeep + (plan.opt_off - plan.grads_base), ++applied, grad_scale);
            memcpy(pkeep + (plan.opt_off - plan.params_base), master, plan.opt_n * sizeof(float));
            if (zf_zero_params_updated(z, &err) != 0) zf_die("%s", err.msg);
        }
        double l = lsum / ga;
        if (zf_zero_mean(z, &l, 1, &err) != 0) zf_die("%s", err.msg);
        losses[s] = l;
    }
    zf_zero_stats st; /* of the training steps (before the final gather) */
    zf_zero_get_stats(z, &st);
    /* the whole final parameters */
    if (zf_zero_gather_all(z, &err) != 0) zf_die("%s", err.msg);
    if (comm.rank == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/losses.txt", out);
        FILE *f = fopen(path, "w");
        if (!f) zf_die("%s: cannot write", path);
        for (int s = 0; s < steps; s++) fprintf(f, "%.17g\n", losses[s]);
        fclose(f);
        write_raw(out, "params.f32", zf_zero_work_params(z), table.total * sizeof(float));
        snprintf(path, sizeof path, "%s/stats.txt", out);
        f = fopen(path, "w");
        if (!f) zf_die("%s: cannot write", path);
        size_t maxunit = 0;
        for (int u = 0; u < plan.n_units; u++)
            if (plan.units[u].gathered > maxunit) maxunit = plan.units[u].gathered;
        fprintf(f, "gathers %ld\nprefetches %ld\nreleases %ld\nbuckets %ld\nlive_peak %zu\nbucket_peak %zu\n"
                   "persistent %zu\nmax_unit %zu\ntotal %zu\n",
                st.gathers, st.prefetches, st.releases, st.buckets, st.live_peak, st.bucket_peak, plan.persistent,
                maxunit, table.total);
        fclose(f);
    }
    zf_zero_release_all(z, &err);
    zf_gpt2_free(model);
    zf_zero_free(z);
    zf_shard_opt_free(opt_);
    zf_zero_plan_free(&plan);
    free(pkeep), free(gkeep), free(master), free(am), free(av), free(ranges), free(rows), free(init);
    free(tok), free(tgt), free(losses);
    zf_param_table_free(&table);
    zf_comm_finalize(&comm);
    return mem_bad ? 1 : 0;
}
