/* zero_plan.c - see zero_plan.h. */
#include "zero_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

static size_t clamp_elems(int64_t v) { return v < 0 ? 0 : (size_t)v; }

void zf_zero_options_from_config(zf_zero_options *z, const zf_ds_config *c)
{
    memset(z, 0, sizeof *z);
    z->stage = c->zero_stage;
    z->reduce_bucket_size = clamp_elems(c->zero_reduce_bucket_size);
    z->allgather_bucket_size = clamp_elems(c->zero_allgather_bucket_size);
    z->overlap_comm = c->zero_overlap_comm;
    z->prefetch_bucket_size = clamp_elems(c->zero_stage3_prefetch_bucket_size);
    z->param_persistence_threshold = clamp_elems(c->zero_stage3_param_persistence_threshold);
    z->max_live_parameters = clamp_elems(c->zero_stage3_max_live_parameters);
}

/* Unit of a tensor name: 0 embeddings, 1 + i block i, L + 1 ln_f; -1 unknown. */
static int unit_of(const char *name, int n_layer)
{
    if (!strcmp(name, "transformer.wte.weight") || !strcmp(name, "transformer.wpe.weight")) return 0;
    if (!strncmp(name, "transformer.ln_f.", 17)) return n_layer + 1;
    int i = -1, k = 0;
    if (sscanf(name, "transformer.h.%d.%n", &i, &k) == 1 && k > 0 && i >= 0 && i < n_layer) return i + 1;
    return -1;
}

int zf_zero_plan_init(zf_zero_plan *p, const zf_param_table *t, int n_layer, const zf_zero_options *o, int rank,
                      int world, zf_err *err)
{
    memset(p, 0, sizeof *p);
    if (o->stage < 0 || o->stage > 3)
        return zf_err_set(err, "zero plan: zero_optimization.stage: expected 0..3, got %d", o->stage);
    if (world < 1 || rank < 0 || rank >= world)
        return zf_err_set(err, "zero plan: rank %d of world %d: expected 0 <= rank < world", rank, world);
    if (t->count < 1 || n_layer < 0) return zf_err_set(err, "zero plan: parameter table: expected tensors, got none");
    p->stage = o->stage;
    p->rank = rank;
    p->world = world;
    p->total = t->total;
    zf_comm_slice(t->total, world, rank, &p->own_off, &p->own_n);
    p->opt_off = o->stage == 0 ? 0 : p->own_off;
    p->opt_n = o->stage == 0 ? t->total : p->own_n;
    p->params_base = o->stage == 3 ? p->own_off : 0;
    p->params_numel = o->stage == 3 ? p->own_n : t->total;
    p->grads_base = o->stage >= 2 ? p->own_off : 0;
    p->grads_numel = o->stage >= 2 ? p->own_n : t->total;

    p->n_units = n_layer + 2;
    p->units = zf_xcalloc((size_t)p->n_units, sizeof *p->units);
    for (int u = 0; u < p->n_units; u++) p->units[u].seg = zf_xcalloc((size_t)t->count, sizeof(zf_zero_seg));
    int prev = -1;
    for (int i = 0; i < t->count; i++) {
        const zf_tensor_info *x = &t->t[i];
        int u = unit_of(x->name, n_layer);
        if (u < 0 || u < prev || (u > prev + 1 && prev >= 0) || (prev < 0 && u != 0)) {
            zf_zero_plan_free(p);
            return zf_err_set(err, "zero plan: tensor %s: expected the layout order wte, wpe, h.0..h.%d, ln_f",
                              x->name, n_layer - 1);
        }
        size_t end = i + 1 < t->count ? t->t[i + 1].offset : t->total; /* gaps go with the tensor before */
        zf_zero_unit *un = &p->units[u];
        if (u != prev) un->start = x->offset;
        un->end = end;
        int pers = o->stage == 3 && x->numel < o->param_persistence_threshold;
        if (un->nseg > 0 && un->seg[un->nseg - 1].persistent == pers) {
            un->seg[un->nseg - 1].end = end;
        } else {
            un->seg[un->nseg++] = (zf_zero_seg){ x->offset, end, pers };
        }
        if (pers) p->persistent += end - x->offset;
        else un->gathered += end - x->offset;
        prev = u;
    }
    if (prev != n_layer + 1 || p->units[0].start != 0) {
        zf_zero_plan_free(p);
        return zf_err_set(err, "zero plan: parameter table: expected %d blocks and ln_f, got units up to %d", n_layer,
                          prev);
    }
    return 0;
}

void zf_zero_plan_free(zf_zero_plan *p)
{
    for (int u = 0; u < p->n_units && p->units; u++) free(p->units[u].seg);
    free(p->units);
    memset(p, 0, sizeof *p);
}
