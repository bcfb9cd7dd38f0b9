/* zero_memory.c - see zero_memory.h. */
#include "zero_memory.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void zf_zero_partition(uint64_t psi, int world, int rank, uint64_t *offset, uint64_t *numel)
{
    uint64_t w = world < 1 ? 1 : (uint64_t)world;
    uint64_t per = (psi + w - 1) / w, off = per * (uint64_t)(rank < 0 ? 0 : rank);
    *offset = off >= psi ? psi : off;
    *numel = off >= psi ? 0 : (psi - off < per ? psi - off : per);
}

const char *zf_mem_where_name(zf_mem_where w)
{
    switch (w) {
    case ZF_MEM_RANK: return "rank";
    case ZF_MEM_OFFLOADD: return "offloadd";
    case ZF_MEM_HOST: return "host";
    }
    return "?";
}

static int where_of(const char *s, size_t len, zf_mem_where *w)
{
    for (int i = 0; i <= (int)ZF_MEM_HOST; i++) {
        const char *name = zf_mem_where_name((zf_mem_where)i);
        if (strlen(name) == len && !strncmp(s, name, len)) {
            *w = (zf_mem_where)i;
            return 0;
        }
    }
    return -1;
}

static int check_setup(const zf_zero_setup *s, zf_err *err)
{
    if (s->stage < 0 || s->stage > 3)
        return zf_err_set(err, "zero memory: stage: expected 0, 1, 2 or 3, got %d", s->stage);
    if (s->world < 1) return zf_err_set(err, "zero memory: world: expected >= 1, got %d", s->world);
    if (s->rank < 0 || s->rank >= s->world)
        return zf_err_set(err, "zero memory: rank: expected 0..%d, got %d", s->world - 1, s->rank);
    if (s->k != 2 && s->k != 4) return zf_err_set(err, "zero memory: K: expected 2 or 4 bytes, got %d", s->k);
    return 0;
}

int zf_zero_expected(const zf_zero_setup *s, zf_zero_mem *out, zf_err *err)
{
    if (check_setup(s, err) != 0) return -1;
    uint64_t off, part, K = (uint64_t)s->k;
    zf_zero_partition(s->psi, s->world, s->rank, &off, &part);
    memset(out, 0, sizeof *out);
    out->params = K * (s->stage >= 3 ? part : s->psi);
    out->grads = K * (s->stage >= 2 ? part : s->psi);
    out->optimizer = 12 * (s->stage >= 1 ? part : s->psi);
    out->params_where = s->stage == 3 && s->offload_param ? ZF_MEM_HOST : ZF_MEM_RANK;
    out->grads_where = ZF_MEM_RANK;
    out->optimizer_where = s->offload_optimizer ? ZF_MEM_OFFLOADD : ZF_MEM_RANK;
    return 0;
}

uint64_t zf_zero_expected_total(const zf_zero_setup *s)
{
    uint64_t sum = 0;
    zf_zero_setup r = *s;
    for (r.rank = 0; r.rank < s->world; r.rank++) {
        zf_zero_mem m;
        if (zf_zero_expected(&r, &m, NULL) != 0) return 0;
        sum += m.params + m.grads + m.optimizer;
    }
    return sum;
}

uint64_t zf_zero_on_rank(const zf_zero_mem *m)
{
    return (m->params_where == ZF_MEM_RANK ? m->params : 0) + (m->grads_where == ZF_MEM_RANK ? m->grads : 0) +
           (m->optimizer_where == ZF_MEM_RANK ? m->optimizer : 0);
}

int zf_zero_mem_check(const zf_zero_mem *m, const zf_zero_mem *e, zf_err *err)
{
    const char *names[3] = { "params", "grads", "optimizer" };
    uint64_t mv[3] = { m->params, m->grads, m->optimizer }, ev[3] = { e->params, e->grads, e->optimizer };
    zf_mem_where mw[3] = { m->params_where, m->grads_where, m->optimizer_where };
    zf_mem_where ew[3] = { e->params_where, e->grads_where, e->optimizer_where };
    for (int i = 0; i < 3; i++) {
        if (mv[i] != ev[i])
            return zf_err_set(err, "zero memory: %s: expected %" PRIu64 " bytes, measured %" PRIu64, names[i], ev[i],
                              mv[i]);
        if (mw[i] != ew[i])
            return zf_err_set(err, "zero memory: %s: expected in %s, measured in %s", names[i],
                              zf_mem_where_name(ew[i]), zf_mem_where_name(mw[i]));
    }
    return 0;
}

int zf_zero_memory_format(char *buf, size_t n, const zf_zero_setup *s, const zf_zero_mem *m)
{
    zf_zero_mem e;
    int ok = zf_zero_expected(s, &e, NULL) == 0;
    if (!ok) memset(&e, 0, sizeof e);
    int match = ok && zf_zero_mem_check(m, &e, NULL) == 0;
    return snprintf(buf, n,
                    "zero-memory rank=%d world=%d stage=%d K=%d psi=%" PRIu64 " params=%" PRIu64 "@%s grads=%" PRIu64
                    "@%s optimizer=%" PRIu64 "@%s transient=%" PRIu64 " expected_params=%" PRIu64
                    " expected_grads=%" PRIu64 " expected_optimizer=%" PRIu64 " on_rank=%" PRIu64 " match=%s",
                    s->rank, s->world, s->stage, s->k, s->psi, m->params, zf_mem_where_name(m->params_where), m->grads,
                    zf_mem_where_name(m->grads_where), m->optimizer, zf_mem_where_name(m->optimizer_where),
                    m->transient, e.params, e.grads, e.optimizer, zf_zero_on_rank(m), match ? "yes" : "no");
}

/* The value of " KEY=" in line (token up to the next space): *v, *len. */
static int field(const char *line, const char *key, const char **v, size_t *len, zf_err *err)
{
    char pat[40];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    if (!p) return zf_err_set(err, "zero-memory line: %s: expected a %s=VALUE field", key, key);
    p += strlen(pat);
    *v = p;
    *len = strcspn(p, " \n");
    return 0;
}

static int field_u64(const char *line, const char *key, uint64_t *out, zf_mem_where *where, zf_err *err)
{
    const char *v = NULL;
    size_t len = 0;
    if (field(line, key, &v, &len, err) != 0) return -1;
    char tmp[64];
    if (len == 0 || len >= sizeof tmp) return zf_err_set(err, "zero-memory line: %s: expected a number", key);
    memcpy(tmp, v, len);
    tmp[len] = 0;
    char *at = strchr(tmp, '@');
    if (where) {
        if (!at || where_of(at + 1, strlen(at + 1), where) != 0)
            return zf_err_set(err, "zero-memory line: %s: expected BYTES@rank|offloadd|host, got '%s'", key, tmp);
        *at = 0;
    } else if (at) {
        return zf_err_set(err, "zero-memory line: %s: expected a number, got '%s'", key, tmp);
    }
    char *end;
    if (tmp[0] < '0' || tmp[0] > '9') return zf_err_set(err, "zero-memory line: %s: expected a number, got '%s'", key, tmp);
    errno = 0;
    unsigned long long x = strtoull(tmp, &end, 10);
    if (*end || errno == ERANGE) return zf_err_set(err, "zero-memory line: %s: expected a number, got '%s'", key, tmp);
    *out = x;
    return 0;
}

int zf_zero_memory_parse(const char *line, zf_zero_setup *s, zf_zero_mem *m, zf_err *err)
{
    const char *p = line ? strstr(line, "zero-memory ") : NULL;
    if (!p) return zf_err_set(err, "zero-memory line: expected the 'zero-memory ' marker");
    p += strlen("zero-memory") - 1; /* keep a leading space for field() */
    char *copy = zf_xstrdup(p);
    memset(s, 0, sizeof *s);
    memset(m, 0, sizeof *m);
    uint64_t rank, world, stage, k;
    int rc = 0;
    if (field_u64(copy, "rank", &rank, NULL, err) || field_u64(copy, "world", &world, NULL, err) ||
        field_u64(copy, "stage", &stage, NULL, err) || field_u64(copy, "K", &k, NULL, err) ||
        field_u64(copy, "psi", &s->psi, NULL, err) || field_u64(copy, "params", &m->params, &m->params_where, err) ||
        field_u64(copy, "grads", &m->grads, &m->grads_where, err) ||
        field_u64(copy, "optimizer", &m->optimizer, &m->optimizer_where, err) ||
        field_u64(copy, "transient", &m->transient, NULL, err))
        rc = -1;
    free(copy);
    if (rc) return -1;
    if (world < 1 || world > 1 << 20 || rank >= world || stage > 3 || (k != 2 && k != 4))
        return zf_err_set(err, "zero-memory line: rank/world/stage/K: expected rank < world, stage 0..3, K 2|4");
    s->rank = (int)rank;
    s->world = (int)world;
    s->stage = (int)stage;
    s->k = (int)k;
    s->offload_optimizer = m->optimizer_where == ZF_MEM_OFFLOADD;
    s->offload_param = m->params_where == ZF_MEM_HOST;
    return 0;
}
