/* gpt2_cuda.cu - GPT-2 forward/backward on the GPU.  See gpt2_cuda.cuh.
 *
 * The same sequence of operations as trainer/gpt2_cpu.c, each one a kernel
 * of gpt2_kernels.cuh / attention.cuh or a cuBLASLt product (matmul.cuh).
 * All device memory is one allocation carved up at create time (nothing is
 * allocated per step, except the kernels' scratch on first use of a size);
 * per-layer activations sit at fixed strides of the maximal sizes, rounded
 * to 64 elements so every buffer start stays 128-byte aligned for the
 * products and the vectorised kernels.
 *
 * Activation checkpointing keeps only each block's output (res3, which is
 * the next block's input) and one block's worth of the other activations;
 * the backward reruns a block's forward from its input right before that
 * block's backward.  The rerun is the same kernels on the same inputs with
 * the same dropout sites, so the gradients are bitwise those of the
 * non-checkpointed model.
 *
 * Kept from the forward for the backward besides the activations: each
 * layer's attention dropout masks as bits (bf16/fp16) and the classifier's
 * softmax - onehot [N, roundup(V,64)] (zf_gk_classifier_fwd_save), so the
 * backward neither hashes the masks again nor recomputes the logits. */
#include "gpt2_cuda.cuh"

#include <cuda_runtime.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.cuh"
#include "gpt2_kernels.cuh"

typedef struct layer_off {
    size_t ln1w, ln1b, qkvw, qkvb, attpw, attpb, ln2w, ln2b, fcw, fcb, fcpw, fcpb;
} layer_off;

struct zf_gpt2c {
    zf_gpt2_config c;
    zf_gpu_dtype dt;
    size_t es; /* element size of dt */
    size_t total;
    size_t cap; /* elements of the flat buffers (params, grads, stage): total and padding, or
                   with a layer store the persistent part only (see pidx) */
    int ext;    /* the layers' parameters and gradients come from store (ZeRO stages 2-3) */
    zf_gpt2c_layer_store store;
    int max_B, max_T;
    int ckpt;    /* activation checkpointing: one layer's activations, recomputed in backward */
    int Lb;      /* layers of activations kept: n_layer, or 1 with ckpt */
    size_t mem_bytes;
    size_t o_wte, o_wpe, o_lnfw, o_lnfb;
    layer_off *lo;
    cudaStream_t s;
    zf_matmul_ctx *mm;
    zf_gk *gk;
    void *mem; /* the one device allocation */
    void *params; /* dt, total */
    float *grads; /* fp32, total */
    float *stage; /* fp32 staging for set_params (total), NULL in fp32 mode */
    /* activations: per layer at stride sD (= padded sN*D) etc. */
    size_t sD, s3D, s4D, sNp, sLse;
    void *x0, *ln1, *qkv, *atty, *res2, *ln2, *fch, *fchg, *res3, *lnf;
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd, *lnf_mean, *lnf_rstd, *lse;
    void *tmp, *dres, *dln, *dtmp, *datty, *dqkv, *dfch;
    void *attn_ws;
    uint64_t *amask; /* attention dropout masks as bits, per layer slot (NULL: none kept) */
    size_t sMaskw;   /* 64-bit words per slot */
    void *dsave;     /* the classifier's softmax - onehot [N, roundup(V,64)] (dt), forward -> backward */
    float *losses, *loss_mean;
    int *count_dev;
    int32_t *tok, *tgt;
    int B, T, training, count, has_targets, fwd_ok;
    uint64_t seed;
    char err[512]; /* reason of the last failed forward */
    /* gradient streaming (zf_gpt2c_stream_grads_next): per layer [start,end)
     * of its tensors in the flat buffer, the copy stream, an event per layer */
    size_t (*lrange)[2], lay_lo, lay_hi;
    int can_stream;
    cudaStream_t cs;
    cudaEvent_t *lev, cs_done;
    float *sink, *streamed;
    /* pipelined parameter upload (zf_gpt2c_upload_params_next): the host
     * source, its producer's wait, the prefix already queued */
    const float *up_src;
    int (*up_ready)(void *ctx, size_t end);
    void *up_ctx;
    size_t up_done;
    cudaEvent_t up_ev;
};


#define SITE_EMBD 0u
static uint64_t site(int layer, int kind) { return (uint64_t)layer * 4u + (uint64_t)kind + 1u; }
enum { K_ATTN = 0, K_ATTRES = 1, K_MLPRES = 2 };

static size_t pad64(size_t n) { return (n + 63) / 64 * 64; }

/* element pointer into a dt buffer */
static void *ep(const zf_gpt2c *m, const void *base, size_t i) { return (char *)base + i * m->es; }
/* Index in the flat buffers of flat element off: the identity, or with a
 * layer store (which keeps only [0, lay_lo) and [lay_hi, total)) the
 * elements past the layers moved down to follow the embeddings. */
static size_t pidx(const zf_gpt2c *m, size_t off) { return m->ext && off >= m->lay_hi ? off - (m->lay_hi - m->lay_lo) : off; }
/* the embeddings' and ln_f's parameters and gradients (never a layer's) */
static const void *pp(const zf_gpt2c *m, size_t off) { return ep(m, m->params, pidx(m, off)); }
static float *gp(const zf_gpt2c *m, size_t off) { return m->grads + pidx(m, off); }

/* Where layer l's parameters and gradients are for one pass: the model's
 * flat buffers, or what the layer store fetched.  A tensor at flat offset
 * off is at p + (off - lo) elements. */
typedef struct layer_view {
    const char *p;
    float *g;
    size_t lo;
} layer_view;
static const void *vp(const zf_gpt2c *m, const layer_view *v, size_t off) { return v->p + (off - v->lo) * m->es; }
static float *vg(const layer_view *v, size_t off) { return v->g + (off - v->lo); }

static int view_get(zf_gpt2c *m, int l, int phase, layer_view *v, zf_err *err)
{
    v->lo = m->lrange[l][0];
    if (!m->ext) {
        v->p = (const char *)m->params + v->lo * m->es;
        v->g = m->grads + v->lo;
        return 0;
    }
    void *p = NULL;
    float *g = NULL;
    if (m->store.fetch(m->store.ctx, l, phase, &p, phase ? &g : NULL, err)) return -1;
    v->p = (const char *)p;
    v->g = g;
    return 0;
}
static int view_done(zf_gpt2c *m, int l, int phase, zf_err *err)
{
    return m->ext ? m->store.done(m->store.ctx, l, phase, err) : 0;
}

#define CK(call)                                                                                               \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) return zf_err_set(err, "gpt2_cuda: %s: %s", #call, cudaGetErrorString(e_));     \
    } while (0)
#define GK(call)                                                                                               \
    do {                                                                                                       \
        if ((call) != 0) return zf_err_set(err, "gpt2_cuda: %s: %s", #call, zf_gk_error(m->gk));               \
    } while (0)
#define MM(call)                                                                                               \
    do {                                                                                                       \
        if ((call) != 0) return zf_err_set(err, "gpt2_cuda: %s: %s", #call, zf_matmul_error(m->mm));           \
    } while (0)

static int find_off(const zf_param_table *t, const char *name, size_t numel, size_t *off)
{
    const zf_tensor_info *ti = zf_param_find(t, name);
    if (!ti || ti->numel != numel) return -1;
    *off = ti->offset;
    return 0;
}

static zf_attn_dtype attn_dt(zf_gpu_dtype dt)
{
    return dt == ZF_GPU_BF16 ? ZF_ATTN_BF16 : dt == ZF_GPU_F16 ? ZF_ATTN_F16 : ZF_ATTN_F32;
}

/* bump allocator over the single allocation (pass 1 with base NULL sizes it) */
typedef struct carver {
    char *base;
    size_t off;
} carver;
static void *carve(carver *c, size_t bytes)
{
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + 255) / 256 * 256;
    return p;
}

static void layout(zf_gpt2c *m, carver *c)
{
    const size_t L = (size_t)m->c.n_layer, Lb = (size_t)m->Lb, es = m->es;
    m->params = carve(c, m->cap * es);
    m->grads = (float *)carve(c, m->cap * sizeof(float));
    m->stage = m->dt == ZF_GPU_F32 ? NULL : (float *)carve(c, m->cap * sizeof(float));
    m->x0 = carve(c, m->sD * es);
    m->ln1 = carve(c, Lb * m->sD * es);
    m->qkv = carve(c, Lb * m->s3D * es);
    m->atty = carve(c, Lb * m->sD * es);
    m->res2 = carve(c, Lb * m->sD * es);
    m->ln2 = carve(c, Lb * m->sD * es);
    m->fch = carve(c, Lb * m->s4D * es);
    m->fchg = carve(c, Lb * m->s4D * es);
    m->res3 = carve(c, L * m->sD * es); /* block outputs: always all layers */
    m->lnf = carve(c, m->sD * es);
    m->ln1_mean = (float *)carve(c, Lb * m->sNp * 4);
    m->ln1_rstd = (float *)carve(c, Lb * m->sNp * 4);
    m->ln2_mean = (float *)carve(c, Lb * m->sNp * 4);
    m->ln2_rstd = (float *)carve(c, Lb * m->sNp * 4);
    m->lnf_mean = (float *)carve(c, m->sNp * 4);
    m->lnf_rstd = (float *)carve(c, m->sNp * 4);
    m->lse = (float *)carve(c, Lb * m->sLse * 4);
    m->tmp = carve(c, m->sD * es);
    m->dres = carve(c, m->sD * es);
    m->dln = carve(c, m->sD * es);
    m->dtmp = carve(c, m->sD * es);
    m->datty = carve(c, m->sD * es);
    m->dqkv = carve(c, m->s3D * es);
    m->dfch = carve(c, m->s4D * es);
    zf_attn_desc d = {m->max_B, m->max_T, m->c.n_embd, m->c.n_head, attn_dt(m->dt), 0.0f, 0, 0, 0};
    m->attn_ws = carve(c, zf_attn_backward_workspace(&d));
    /* the forward's attention dropout masks, read back by the backward (bf16
     * and fp16 only: the fp32 debug path redraws them) */
    m->amask = m->sMaskw ? (uint64_t *)carve(c, Lb * m->sMaskw * 8) : NULL;
    m->dsave = carve(c, m->sNp * ((size_t)(m->c.vocab_size + 63) / 64 * 64) * es);
    m->losses = (float *)carve(c, m->sNp * 4);
    m->loss_mean = (float *)carve(c, 4);
    m->count_dev = (int *)carve(c, 4);
    m->tok = (int32_t *)carve(c, m->sNp * 4);
    m->tgt = (int32_t *)carve(c, m->sNp * 4);
}

zf_gpt2c *zf_gpt2c_create(const zf_gpt2_config *cfg, const zf_param_table *t, zf_gpu_dtype dt, int max_B, int max_T,
                          zf_err *err)
{
    return zf_gpt2c_create_ex(cfg, t, dt, max_B, max_T, NULL, err);
}

zf_gpt2c *zf_gpt2c_create_ex(const zf_gpt2_config *cfg, const zf_param_table *t, zf_gpu_dtype dt, int max_B, int max_T,
                             const zf_gpt2c_options *opt, zf_err *err)
{
    const zf_gpt2c_options none = {0, 0, NULL};
    if (!opt) opt = &none;
    const int act_checkpointing = opt->act_checkpointing;
    if (zf_gpu_dtype_size(dt) == 0) {
        zf_err_set(err, "gpt2_cuda: dtype: expected fp32, bf16 or fp16, got %d", (int)dt);
        return NULL;
    }
    if (max_B < 1 || max_T < 1 || max_T > cfg->n_positions || cfg->n_head < 1 || cfg->n_embd % cfg->n_head ||
        cfg->n_layer < 1 || cfg->vocab_size < 1) {
        zf_err_set(err, "gpt2_cuda: sizes: expected max_B >= 1, 1 <= max_T <= n_positions (%d) and n_embd %% n_head "
                   "== 0, got max_B %d max_T %d", cfg->n_positions, max_B, max_T);
        return NULL;
    }
    zf_gpt2c *m = (zf_gpt2c *)calloc(1, sizeof *m);
    if (!m) {
        zf_err_set(err, "gpt2_cuda: out of host memory");
        return NULL;
    }
    m->c = *cfg;
    m->dt = dt;
    m->es = zf_gpu_dtype_size(dt);
    m->total = t->total;
    m->cap = opt->flat_capacity > t->total ? opt->flat_capacity : t->total;
    m->max_B = max_B;
    m->max_T = max_T;
    m->ckpt = act_checkpointing != 0;
    m->Lb = m->ckpt ? 1 : cfg->n_layer;
    const size_t d = (size_t)cfg->n_embd, V = (size_t)cfg->vocab_size, P = (size_t)cfg->n_positions;
    const int L = cfg->n_layer;
    m->lo = (layer_off *)calloc((size_t)L, sizeof *m->lo);
    if (!m->lo) {
        free(m);
        zf_err_set(err, "gpt2_cuda: out of host memory");
        return NULL;
    }
    int bad = find_off(t, "transformer.wte.weight", V * d, &m->o_wte) | find_off(t, "transformer.wpe.weight", P * d, &m->o_wpe) |
              find_off(t, "transformer.ln_f.weight", d, &m->o_lnfw) | find_off(t, "transformer.ln_f.bias", d, &m->o_lnfb);
    for (int l = 0; l < L && !bad; l++) {
        char nm[128];
        layer_off *o = &m->lo[l];
#define F(field, suffix, n)                                                      \
    snprintf(nm, sizeof nm, "transformer.h.%d.%s", l, suffix);                   \
    bad |= find_off(t, nm, n, &o->field);
        F(ln1w, "ln_1.weight", d) F(ln1b, "ln_1.bias", d) F(qkvw, "attn.c_attn.weight", d * 3 * d)
        F(qkvb, "attn.c_attn.bias", 3 * d) F(attpw, "attn.c_proj.weight", d * d) F(attpb, "attn.c_proj.bias", d)
        F(ln2w, "ln_2.weight", d) F(ln2b, "ln_2.bias", d) F(fcw, "mlp.c_fc.weight", d * 4 * d)
        F(fcb, "mlp.c_fc.bias", 4 * d) F(fcpw, "mlp.c_proj.weight", 4 * d * d) F(fcpb, "mlp.c_proj.bias", d)
#undef F
    }
    if (bad) {
        zf_err_set(err, "gpt2_cuda: param table: expected every GPT-2 tensor with the config's shapes");
        free(m->lo);
        free(m);
        return NULL;
    }
    const size_t sN = (size_t)max_B * max_T;
    m->sNp = pad64(sN);
    m->sD = pad64(sN * d);
    m->s3D = pad64(sN * 3 * d);
    m->s4D = pad64(sN * 4 * d);
    m->sLse = pad64((size_t)max_B * cfg->n_head * max_T);
    if (dt != ZF_GPU_F32 && cfg->attn_pdrop > 0.0f) {
        zf_attn_desc md = {max_B, max_T, cfg->n_embd, cfg->n_head, attn_dt(dt), 0.0f, 0, 0, 0, NULL};
        m->sMaskw = zf_attn_dropout_mask_bytes(&md) / 8;
    }
    /* Gradient streaming needs each layer's tensors in one range of their
     * own, between the embeddings and ln_f (the HF order of lib/model.h). */
    m->lrange = (size_t(*)[2])calloc((size_t)L, sizeof *m->lrange);
    m->lev = (cudaEvent_t *)calloc((size_t)L, sizeof *m->lev);
    if (!m->lrange || !m->lev) {
        zf_err_set(err, "gpt2_cuda: out of host memory");
        zf_gpt2c_free(m);
        return NULL;
    }
    int ok = 1;
    for (int l = 0; l < L; l++) {
        const layer_off *o = &m->lo[l];
        const size_t off[12] = {o->ln1w, o->ln1b, o->qkvw, o->qkvb, o->attpw, o->attpb,
                                o->ln2w, o->ln2b, o->fcw, o->fcb, o->fcpw, o->fcpb};
        const size_t num[12] = {d, d, 3 * d * d, 3 * d, d * d, d, d, d, 4 * d * d, 4 * d, 4 * d * d, d};
        size_t lo = off[0], hi = off[0] + num[0];
        for (int k = 1; k < 12; k++) {
            lo = off[k] < lo ? off[k] : lo;
            hi = off[k] + num[k] > hi ? off[k] + num[k] : hi;
        }
        m->lrange[l][0] = lo;
        m->lrange[l][1] = hi;
        if (l > 0 && lo < m->lrange[l - 1][1]) ok = 0; /* layers in order, disjoint */
    }
    m->lay_lo = m->lrange[0][0];
    m->lay_hi = m->lrange[L - 1][1];
    const size_t outside[4][2] = {{m->o_wte, V * d}, {m->o_wpe, P * d}, {m->o_lnfw, d}, {m->o_lnfb, d}};
    for (int k = 0; k < 4; k++)
        if (outside[k][0] < m->lay_hi && outside[k][0] + outside[k][1] > m->lay_lo) ok = 0;
    m->can_stream = ok;
    if (opt->layer_store) {
        /* ZeRO stages 2-3: the model keeps the embeddings and ln_f only */
        if (!ok || !opt->layer_store->fetch || !opt->layer_store->done) {
            zf_err_set(err, "gpt2_cuda: layer store: expected fetch and done, and each layer's tensors in a range of "
                       "their own between the embeddings and ln_f");
            zf_gpt2c_free(m);
            return NULL;
        }
        m->ext = 1;
        m->store = *opt->layer_store;
        m->cap = m->lay_lo + (m->total - m->lay_hi);
    }
    carver c0 = {NULL, 0};
    layout(m, &c0);
    cudaError_t e = cudaStreamCreateWithFlags(&m->s, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMalloc(&m->mem, c0.off);
    if (e == cudaSuccess) e = cudaMemset(m->mem, 0, c0.off);
    if (e != cudaSuccess) {
        zf_err_set(err, "gpt2_cuda: allocating %zu bytes of device memory: %s", c0.off, cudaGetErrorString(e));
        zf_gpt2c_free(m);
        return NULL;
    }
    m->mem_bytes = c0.off;
    carver c1 = {(char *)m->mem, 0};
    layout(m, &c1);
    m->mm = zf_matmul_create(0, err);
    if (!m->mm) {
        zf_gpt2c_free(m);
        return NULL;
    }
    m->gk = zf_gk_create(m->s, m->mm, 0, err);
    if (!m->gk) {
        zf_gpt2c_free(m);
        return NULL;
    }
    return m;
}

void zf_gpt2c_free(zf_gpt2c *m)
{
    if (!m) return;
    if (m->s) cudaStreamSynchronize(m->s);
    if (m->cs) {
        cudaStreamSynchronize(m->cs);
        for (int l = 0; l < m->c.n_layer; l++)
            if (m->lev[l]) cudaEventDestroy(m->lev[l]);
        cudaEventDestroy(m->cs_done);
        if (m->up_ev) cudaEventDestroy(m->up_ev);
        cudaStreamDestroy(m->cs);
    }
    free(m->lrange);
    free(m->lev);
    if (m->gk) zf_gk_free(m->gk);
    if (m->mm) zf_matmul_free(m->mm);
    if (m->mem) cudaFree(m->mem);
    if (m->s) cudaStreamDestroy(m->s);
    free(m->lo);
    free(m);
}

const zf_gpt2_config *zf_gpt2c_get_config(const zf_gpt2c *m) { return &m->c; }
void zf_gpt2c_layer_range(const zf_gpt2c *m, int l, size_t *lo, size_t *hi)
{
    *lo = m->lrange[l][0];
    *hi = m->lrange[l][1];
}
void zf_gpt2c_layers_span(const zf_gpt2c *m, size_t *lo, size_t *hi)
{
    *lo = m->lay_lo;
    *hi = m->lay_hi;
}
zf_gpu_dtype zf_gpt2c_dtype(const zf_gpt2c *m) { return m->dt; }
int zf_gpt2c_target_count(const zf_gpt2c *m) { return m->count; }
const char *zf_gpt2c_error(const zf_gpt2c *m) { return m->err; }
float *zf_gpt2c_grads_dev(zf_gpt2c *m) { return m->grads; }
void *zf_gpt2c_params_dev(zf_gpt2c *m) { return m->params; }
cudaStream_t zf_gpt2c_stream(const zf_gpt2c *m) { return m->s; }
zf_gk *zf_gpt2c_gk(zf_gpt2c *m) { return m->gk; }
size_t zf_gpt2c_device_bytes(const zf_gpt2c *m) { return m->mem_bytes; }
size_t zf_gpt2c_flat_capacity(const zf_gpt2c *m) { return m->cap; }
int zf_gpt2c_act_checkpointing(const zf_gpt2c *m) { return m->ckpt; }

int zf_gpt2c_poison_grads(zf_gpt2c *m, zf_err *err)
{
    static const float inf = INFINITY; /* static: the async copy reads it later */
    CK(cudaMemcpyAsync(m->grads, &inf, sizeof inf, cudaMemcpyHostToDevice, m->s));
    return 0;
}

int zf_gpt2c_set_params(zf_gpt2c *m, const float *host, zf_err *err)
{
    return zf_gpt2c_set_params_range(m, host, 0, m->total, err);
}

int zf_gpt2c_set_params_range(zf_gpt2c *m, const float *host, size_t off, size_t n, zf_err *err)
{
    if (m->ext) return zf_err_set(err, "gpt2_cuda: set_params: the layers live in the layer store");
    if (off > m->total || n > m->total - off)
        return zf_err_set(err, "gpt2_cuda: set_params: range [%zu, +%zu): expected inside %zu parameters", off, n,
                          m->total);
    m->up_src = NULL; /* replaces an armed pipelined upload */
    if (m->dt == ZF_GPU_F32) {
        CK(cudaMemcpyAsync((float *)m->params + off, host + off, n * sizeof(float), cudaMemcpyHostToDevice, m->s));
    } else {
        CK(cudaMemcpyAsync(m->stage + off, host + off, n * sizeof(float), cudaMemcpyHostToDevice, m->s));
        GK(zf_gk_convert(m->gk, ep(m, m->params, off), m->dt, m->stage + off, ZF_GPU_F32, n));
    }
    CK(cudaStreamSynchronize(m->s));
    return 0;
}

int zf_gpt2c_zero_grads(zf_gpt2c *m, zf_err *err)
{
    m->sink = NULL;
    if (m->cs) { /* a streaming copy may still read the old gradients */
        CK(cudaEventRecord(m->cs_done, m->cs));
        CK(cudaStreamWaitEvent(m->s, m->cs_done, 0));
    }
    CK(cudaMemsetAsync(m->grads, 0, m->cap * sizeof(float), m->s));
    return 0;
}

int zf_gpt2c_stream_grads_next(zf_gpt2c *m, float *host, zf_err *err)
{
    if (!host) {
        m->sink = NULL;
        return 0;
    }
    if (m->ext) return zf_err_set(err, "gpt2_cuda: gradient streaming: the layers live in the layer store");
    if (!m->can_stream) return zf_err_set(err, "gpt2_cuda: stream_grads: the layers' tensors are not contiguous");
    if (!m->cs) {
        CK(cudaStreamCreateWithFlags(&m->cs, cudaStreamNonBlocking));
        for (int l = 0; l < m->c.n_layer; l++) CK(cudaEventCreateWithFlags(&m->lev[l], cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&m->cs_done, cudaEventDisableTiming));
    }
    m->sink = host;
    return 0;
}

int zf_gpt2c_upload_params_next(zf_gpt2c *m, const float *host, int (*ready)(void *ctx, size_t end), void *ctx,
                                zf_err *err)
{
    m->up_src = NULL;
    if (!host) return 0;
    if (m->ext) return zf_err_set(err, "gpt2_cuda: pipelined upload: the layers live in the layer store");
    if (!ready) return zf_err_set(err, "gpt2_cuda: upload_params_next: expected a ready function");
    if (!m->cs) {
        CK(cudaStreamCreateWithFlags(&m->cs, cudaStreamNonBlocking));
        for (int l = 0; l < m->c.n_layer; l++) CK(cudaEventCreateWithFlags(&m->lev[l], cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&m->cs_done, cudaEventDisableTiming));
    }
    if (!m->up_ev) CK(cudaEventCreateWithFlags(&m->up_ev, cudaEventDisableTiming));
    m->up_src = host;
    m->up_ready = ready;
    m->up_ctx = ctx;
    m->up_done = 0;
    return 0;
}

/* Pipelined upload: make parameters [0, need) current before the compute
 * stream uses them.  Pieces are copied on the copy stream as the producer
 * releases them (so a layer's copy overlaps the update of its rest); the
 * compute stream waits for the copies, then converts them to the compute
 * type (the same conversion as zf_gpt2c_set_params). */
#define UP_PIECE ((size_t)4 << 20)
static int up_ensure(zf_gpt2c *m, size_t need, zf_err *err)
{
    if (!m->up_src) return 0;
    if (need > m->total) need = m->total;
    const size_t a = m->up_done;
    while (m->up_done < need) {
        const size_t e = need - m->up_done > UP_PIECE ? m->up_done + UP_PIECE : need;
        if (m->up_ready(m->up_ctx, e) != 0) {
            m->up_src = NULL;
            return zf_err_set(err, "gpt2_cuda: parameter upload: the producer failed before element %zu", e);
        }
        void *dst = m->dt == ZF_GPU_F32 ? (void *)((float *)m->params + m->up_done) : (void *)(m->stage + m->up_done);
        CK(cudaMemcpyAsync(dst, m->up_src + m->up_done, (e - m->up_done) * sizeof(float), cudaMemcpyHostToDevice,
                           m->cs));
        m->up_done = e;
    }
    if (m->up_done > a) {
        CK(cudaEventRecord(m->up_ev, m->cs));
        CK(cudaStreamWaitEvent(m->s, m->up_ev, 0));
        if (m->dt != ZF_GPU_F32)
            GK(zf_gk_convert(m->gk, ep(m, m->params, a), m->dt, m->stage + a, ZF_GPU_F32, m->up_done - a));
    }
    if (m->up_done >= m->total) m->up_src = NULL;
    return 0;
}

int zf_gpt2c_get_grads(zf_gpt2c *m, float *host, zf_err *err)
{
    if (m->ext) return zf_err_set(err, "gpt2_cuda: get_grads: the layers live in the layer store");
    if (m->streamed == host) { /* the layers are on their way: the rest, after them */
        m->streamed = NULL;
        CK(cudaEventRecord(m->cs_done, m->cs));
        CK(cudaStreamWaitEvent(m->s, m->cs_done, 0));
        CK(cudaMemcpyAsync(host, m->grads, m->lay_lo * sizeof(float), cudaMemcpyDeviceToHost, m->s));
        CK(cudaMemcpyAsync(host + m->lay_hi, m->grads + m->lay_hi, (m->total - m->lay_hi) * sizeof(float),
                           cudaMemcpyDeviceToHost, m->s));
    } else {
        m->streamed = NULL;
        CK(cudaMemcpyAsync(host, m->grads, m->total * sizeof(float), cudaMemcpyDeviceToHost, m->s));
    }
    CK(cudaStreamSynchronize(m->s));
    return 0;
}

/* ----------------------------------------------------------- forward */

/* The attention mask store of activation slot sl (NULL when none is kept). */
static uint64_t *attn_mask(const zf_gpt2c *m, int sl) { return m->amask ? m->amask + (size_t)sl * m->sMaskw : NULL; }

/* One block's forward from its input x into out (res3 of the layer), its
 * other activations in slot l (slot 0 with checkpointing), its parameters
 * from v. */
static int layer_fwd(zf_gpt2c *m, int l, const layer_view *v, const void *x, void *res3, zf_err *err)
{
    const int B = m->B, T = m->T, d = m->c.n_embd, NH = m->c.n_head;
    const int N = B * T;
    const size_t ND = (size_t)N * d;
    const zf_gpu_dtype dt = m->dt;
    const float eps = m->c.layer_norm_epsilon;
    const uint64_t seed = m->seed;
    const float pa = m->training ? m->c.attn_pdrop : 0.0f, pr = m->training ? m->c.resid_pdrop : 0.0f;
    const int sl = m->ckpt ? 0 : l;
    const layer_off *o = &m->lo[l];
    void *ln1 = ep(m, m->ln1, sl * m->sD), *qkv = ep(m, m->qkv, sl * m->s3D), *atty = ep(m, m->atty, sl * m->sD);
    void *res2 = ep(m, m->res2, sl * m->sD), *ln2 = ep(m, m->ln2, sl * m->sD), *fch = ep(m, m->fch, sl * m->s4D);
    void *fchg = ep(m, m->fchg, sl * m->s4D);
    float *m1 = m->ln1_mean + sl * m->sNp, *r1 = m->ln1_rstd + sl * m->sNp;
    float *m2 = m->ln2_mean + sl * m->sNp, *r2 = m->ln2_rstd + sl * m->sNp;
    GK(zf_gk_layernorm_fwd(m->gk, dt, ln1, m1, r1, x, vp(m, v, o->ln1w), vp(m, v, o->ln1b), N, d, eps));
    MM(zf_linear_fwd(m->mm, m->s, dt, qkv, ln1, vp(m, v, o->qkvw), vp(m, v, o->qkvb), N, d, 3 * d));
    zf_attn_desc ad = {B, T, d, NH, attn_dt(dt), pa, seed, site(l, K_ATTN), 0, attn_mask(m, sl)};
    if (zf_attn_forward(&ad, atty, m->lse + sl * m->sLse, qkv, m->s, err)) return -1;
    MM(zf_linear_fwd(m->mm, m->s, dt, m->tmp, atty, vp(m, v, o->attpw), vp(m, v, o->attpb), N, d, d));
    GK(zf_gk_residual_fwd(m->gk, dt, res2, x, m->tmp, ND, pr, seed, site(l, K_ATTRES)));
    GK(zf_gk_layernorm_fwd(m->gk, dt, ln2, m2, r2, res2, vp(m, v, o->ln2w), vp(m, v, o->ln2b), N, d, eps));
    /* bf16/fp16: the GELU in the product's epilogue (aux = fch, the
     * pre-activation the backward's DGELU epilogue reads), one pass less over
     * [N,4d]; in fp32 (the debug mode that matches the CPU model) and where
     * cuBLASLt has no such algorithm (nothing enqueued then) the exact tanh
     * GELU as a separate pass */
    if (dt == ZF_GPU_F32 ||
        zf_linear_fwd_gelu(m->mm, m->s, dt, fchg, fch, ln2, vp(m, v, o->fcw), vp(m, v, o->fcb), N, d, 4 * d)) {
        MM(zf_linear_fwd(m->mm, m->s, dt, fch, ln2, vp(m, v, o->fcw), vp(m, v, o->fcb), N, d, 4 * d));
        GK(zf_gk_gelu_fwd(m->gk, dt, fchg, fch, (size_t)N * 4 * d));
    }
    MM(zf_linear_fwd(m->mm, m->s, dt, m->tmp, fchg, vp(m, v, o->fcpw), vp(m, v, o->fcpb), N, 4 * d, d));
    GK(zf_gk_residual_fwd(m->gk, dt, res3, res2, m->tmp, ND, pr, seed, site(l, K_MLPRES)));
    return 0;
}


static int forward_dev(zf_gpt2c *m, zf_err *err)
{
    const int B = m->B, T = m->T, d = m->c.n_embd, V = m->c.vocab_size, L = m->c.n_layer;
    const int N = B * T;
    const zf_gpu_dtype dt = m->dt;
    const float eps = m->c.layer_norm_epsilon;
    const uint64_t seed = m->seed;
    const float pe = m->training ? m->c.embd_pdrop : 0.0f;
    /* a pipelined upload: each range just before its first use */
    size_t need = m->o_wte + (size_t)V * d;
    if (m->o_wpe + (size_t)m->c.n_positions * d > need) need = m->o_wpe + (size_t)m->c.n_positions * d;
    if (up_ensure(m, need, err)) return -1;
    if (m->ext && m->store.kept && m->store.kept(m->store.ctx, 0, err)) return -1;
    GK(zf_gk_embed_fwd(m->gk, dt, m->x0, m->tok, pp(m, m->o_wte), pp(m, m->o_wpe), B, T, d, V, pe, seed));
    const void *x = m->x0;
    for (int l = 0; l < L; l++) {
        void *res3 = ep(m, m->res3, l * m->sD);
        if (m->lrange[l][1] > need) need = m->lrange[l][1];
        if (up_ensure(m, need, err)) return -1;
        layer_view v;
        if (view_get(m, l, 0, &v, err) || layer_fwd(m, l, &v, x, res3, err) || view_done(m, l, 0, err)) return -1;
        x = res3;
    }
    if (up_ensure(m, m->total, err)) return -1;
    if (m->ext && m->store.kept && m->store.kept(m->store.ctx, 1, err)) return -1;
    GK(zf_gk_layernorm_fwd(m->gk, dt, m->lnf, m->lnf_mean, m->lnf_rstd, x, pp(m, m->o_lnfw), pp(m, m->o_lnfb), N, d,
                           eps));
    /* the loss, keeping its gradient for the backward (no second pass over the logits) */
    if (m->has_targets)
        GK(zf_gk_classifier_fwd_save(m->gk, dt, m->lnf, pp(m, m->o_wte), m->tgt, N, d, V, m->losses, m->loss_mean,
                                     m->count_dev, m->dsave));
    return 0;
}

float zf_gpt2c_forward(zf_gpt2c *m, const int32_t *tokens, const int32_t *targets, int B, int T, int training,
                       uint64_t dropout_seed)
{
    m->fwd_ok = 0;
    if (B < 1 || T < 1 || B > m->max_B || T > m->max_T) {
        snprintf(m->err, sizeof m->err, "gpt2_cuda forward: batch %dx%d: expected at most %dx%d", B, T, m->max_B,
                 m->max_T);
        return NAN;
    }
    const int V = m->c.vocab_size;
    const size_t N = (size_t)B * T;
    for (size_t i = 0; i < N; i++) {
        if (tokens[i] < 0 || tokens[i] >= V) {
            snprintf(m->err, sizeof m->err, "gpt2_cuda forward: tokens[%zu]: expected an id in [0, %d), got %d", i, V,
                     (int)tokens[i]);
            return NAN;
        }
        if (targets && (targets[i] < -1 || targets[i] >= V)) {
            snprintf(m->err, sizeof m->err, "gpt2_cuda forward: targets[%zu]: expected -1 or an id in [0, %d), got %d",
                     i, V, (int)targets[i]);
            return NAN;
        }
    }
    m->B = B;
    m->T = T;
    m->training = training;
    m->seed = dropout_seed;
    m->has_targets = targets != NULL;
    m->count = 0;
    zf_err e;
    zf_err *err = &e;
    float loss = 0.0f;
    int count = 0;
    int rc = 0;
    if (cudaMemcpyAsync(m->tok, tokens, N * 4, cudaMemcpyHostToDevice, m->s) != cudaSuccess ||
        (targets && cudaMemcpyAsync(m->tgt, targets, N * 4, cudaMemcpyHostToDevice, m->s) != cudaSuccess))
        rc = zf_err_set(err, "gpt2_cuda forward: copying the tokens: %s", cudaGetErrorString(cudaGetLastError()));
    if (!rc) rc = forward_dev(m, err);
    if (!rc && targets) {
        cudaError_t ce = cudaMemcpyAsync(&loss, m->loss_mean, 4, cudaMemcpyDeviceToHost, m->s);
        if (ce == cudaSuccess) ce = cudaMemcpyAsync(&count, m->count_dev, 4, cudaMemcpyDeviceToHost, m->s);
        if (ce == cudaSuccess) ce = cudaStreamSynchronize(m->s);
        if (ce != cudaSuccess) rc = zf_err_set(err, "gpt2_cuda forward: %s", cudaGetErrorString(ce));
    }
    if (rc) {
        snprintf(m->err, sizeof m->err, "%s", e.msg);
        return NAN;
    }
    m->count = count;
    m->fwd_ok = 1;
    return targets ? loss : 0.0f;
}

int zf_gpt2c_logits(zf_gpt2c *m, float *host, zf_err *err)
{
    if (!m->fwd_ok) return zf_err_set(err, "gpt2_cuda logits: expected a forward first");
    const int N = m->B * m->T, V = m->c.vocab_size, d = m->c.n_embd;
    float *buf = NULL;
    const size_t bytes = (size_t)N * V * sizeof(float);
    CK(cudaMalloc(&buf, bytes));
    int rc = zf_matmul(m->mm, m->s, m->dt, ZF_GPU_F32, N, V, d, m->lnf, d, 0, pp(m, m->o_wte), d, 1, buf, V, 1.0f,
                       0.0f, ZF_MM_DEFAULT, NULL, NULL, 0);
    cudaError_t e = cudaSuccess;
    if (rc) zf_err_set(err, "gpt2_cuda logits: %s", zf_matmul_error(m->mm));
    else if ((e = cudaMemcpyAsync(host, buf, bytes, cudaMemcpyDeviceToHost, m->s)) == cudaSuccess)
        e = cudaStreamSynchronize(m->s);
    if (!rc && e != cudaSuccess) rc = zf_err_set(err, "gpt2_cuda logits: %s", cudaGetErrorString(e));
    cudaFree(buf);
    return rc;
}

/* ---------------------------------------------------------- backward */

int zf_gpt2c_backward(zf_gpt2c *m, float loss_scale, zf_err *err)
{
    if (!m->fwd_ok || !m->has_targets) return zf_err_set(err, "gpt2_cuda backward: expected a forward with targets");
    m->fwd_ok = 0;
    if (m->count == 0) return 0; /* every target ignored: constant loss */
    const int B = m->B, T = m->T, d = m->c.n_embd, V = m->c.vocab_size, L = m->c.n_layer, NH = m->c.n_head;
    const int N = B * T;
    const size_t ND = (size_t)N * d;
    const zf_gpu_dtype dt = m->dt;
    const uint64_t seed = m->seed;
    const float pe = m->training ? m->c.embd_pdrop : 0.0f, pa = m->training ? m->c.attn_pdrop : 0.0f,
                pr = m->training ? m->c.resid_pdrop : 0.0f;
    /* streaming armed for this backward: each layer's gradients go to the
     * host on the copy stream as soon as that layer is done */
    float *sink = m->sink;
    m->sink = NULL;
    m->streamed = sink;

    /* tied head: dlnf = dlogits wte (overwritten), dwte += dlogits^T lnf, with
     * dlogits = (softmax - onehot) loss_scale / count saved by the forward */
    GK(zf_gk_classifier_bwd_saved(m->gk, dt, m->dsave, m->lnf, pp(m, m->o_wte), N, d, V, loss_scale / (float)m->count,
                                  m->dln, gp(m, m->o_wte)));
    CK(cudaMemsetAsync(m->dres, 0, ND * m->es, m->s));
    GK(zf_gk_layernorm_bwd(m->gk, dt, m->dres, gp(m, m->o_lnfw), gp(m, m->o_lnfb), m->dln, ep(m, m->res3, (L - 1) * m->sD),
                           pp(m, m->o_lnfw), m->lnf_mean, m->lnf_rstd, N, d));
    for (int l = L - 1; l >= 0; l--) {
        const layer_off *o = &m->lo[l];
        const void *in = l == 0 ? m->x0 : ep(m, m->res3, (l - 1) * m->sD);
        const int sl = m->ckpt ? 0 : l;
        /* checkpointing: rerun the block (its output goes to scratch; res3[l]
         * already holds the same values) */
        layer_view v;
        if (view_get(m, l, 1, &v, err)) return -1;
        if (m->ckpt && layer_fwd(m, l, &v, in, m->dtmp, err)) return -1;
        void *ln1 = ep(m, m->ln1, sl * m->sD), *qkv = ep(m, m->qkv, sl * m->s3D), *atty = ep(m, m->atty, sl * m->sD);
        void *res2 = ep(m, m->res2, sl * m->sD), *ln2 = ep(m, m->ln2, sl * m->sD), *fch = ep(m, m->fch, sl * m->s4D);
        void *fchg = ep(m, m->fchg, sl * m->s4D);
        float *m1 = m->ln1_mean + sl * m->sNp, *r1 = m->ln1_rstd + sl * m->sNp;
        float *m2 = m->ln2_mean + sl * m->sNp, *r2 = m->ln2_rstd + sl * m->sNp;
        /* x3 = x2 + drop(mlp) */
        const void *dy = m->dres;
        if (pr > 0.0f) {
            GK(zf_gk_dropout_bwd(m->gk, dt, m->dtmp, m->dres, ND, pr, seed, site(l, K_MLPRES)));
            dy = m->dtmp;
        }
        MM(zf_linear_bwd(m->mm, m->s, dt, NULL, vg(&v, o->fcpw), dy, fchg, vp(m, &v, o->fcpw), N, 4 * d, d));
        GK(zf_gk_bias_grad(m->gk, dt, vg(&v, o->fcpb), dy, N, d));
        /* dfch = (dy Wp^T) * gelu'(fch): the GELU backward in the product's
         * epilogue (one pass less over the [N,4d] gradient) in bf16/fp16; in
         * fp32 (the debug mode that matches the CPU model) and where cuBLASLt
         * has no such algorithm (nothing enqueued then) the exact separate
         * pass: cuBLASLt's fp32 GELU derivative is off by ~1e-5 relative */
        if (dt == ZF_GPU_F32 ||
            zf_matmul(m->mm, m->s, dt, dt, N, 4 * d, d, dy, d, 0, vp(m, &v, o->fcpw), d, 1, m->dfch, 4 * d, 1.0f, 0.0f,
                      ZF_MM_DGELU, NULL, fch, 4 * d)) {
            MM(zf_matmul(m->mm, m->s, dt, dt, N, 4 * d, d, dy, d, 0, vp(m, &v, o->fcpw), d, 1, m->dfch, 4 * d, 1.0f, 0.0f,
                         ZF_MM_DEFAULT, NULL, NULL, 0));
            GK(zf_gk_gelu_bwd(m->gk, dt, m->dfch, m->dfch, fch, (size_t)N * 4 * d));
        }
        MM(zf_linear_bwd(m->mm, m->s, dt, m->dln, vg(&v, o->fcw), m->dfch, ln2, vp(m, &v, o->fcw), N, d, 4 * d));
        GK(zf_gk_bias_grad(m->gk, dt, vg(&v, o->fcb), m->dfch, N, 4 * d));
        GK(zf_gk_layernorm_bwd(m->gk, dt, m->dres, vg(&v, o->ln2w), vg(&v, o->ln2b), m->dln, res2, vp(m, &v, o->ln2w), m2, r2, N,
                               d));
        /* x2 = x1 + drop(attn) */
        dy = m->dres;
        if (pr > 0.0f) {
            GK(zf_gk_dropout_bwd(m->gk, dt, m->dtmp, m->dres, ND, pr, seed, site(l, K_ATTRES)));
            dy = m->dtmp;
        }
        MM(zf_linear_bwd(m->mm, m->s, dt, m->datty, vg(&v, o->attpw), dy, atty, vp(m, &v, o->attpw), N, d, d));
        GK(zf_gk_bias_grad(m->gk, dt, vg(&v, o->attpb), dy, N, d));
        zf_attn_desc ad = {B, T, d, NH, attn_dt(dt), pa, seed, site(l, K_ATTN), 0, attn_mask(m, sl)};
        if (zf_attn_backward(&ad, m->dqkv, m->datty, qkv, atty, m->lse + sl * m->sLse, m->attn_ws, m->s, err)) return -1;
        MM(zf_linear_bwd(m->mm, m->s, dt, m->dln, vg(&v, o->qkvw), m->dqkv, ln1, vp(m, &v, o->qkvw), N, d, 3 * d));
        GK(zf_gk_bias_grad(m->gk, dt, vg(&v, o->qkvb), m->dqkv, N, 3 * d));
        GK(zf_gk_layernorm_bwd(m->gk, dt, m->dres, vg(&v, o->ln1w), vg(&v, o->ln1b), m->dln, in, vp(m, &v, o->ln1w), m1, r1, N,
                               d));
        if (sink) {
            const size_t a = m->lrange[l][0], n = m->lrange[l][1] - a;
            CK(cudaEventRecord(m->lev[l], m->s));
            CK(cudaStreamWaitEvent(m->cs, m->lev[l], 0));
            CK(cudaMemcpyAsync(sink + a, m->grads + a, n * sizeof(float), cudaMemcpyDeviceToHost, m->cs));
        }
        if (view_done(m, l, 1, err)) return -1;
    }
    const void *dx = m->dres;
    if (pe > 0.0f) {
        GK(zf_gk_dropout_bwd(m->gk, dt, m->dtmp, m->dres, ND, pe, seed, SITE_EMBD));
        dx = m->dtmp;
    }
    GK(zf_gk_embed_bwd(m->gk, dt, gp(m, m->o_wte), gp(m, m->o_wpe), dx, m->tok, B, T, d, V));
    CK(cudaGetLastError());
    return 0;
}
