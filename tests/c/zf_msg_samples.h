/* zf_msg_samples.h - valid bus messages of every catalogued type for the C
 * tests (test_proto's round trips, the mutation seeds of test_proto and
 * test_fuzz_decoders).
 *
 * zf_sample_msg(type, all, seed): a message of `type` with its required
 * fields (all != 0: every field) set to values derived from (seed, field
 * index): signed integers far from zero, fractions, both booleans, and
 * strings holding UTF-8, a quote, a backslash and a newline.  The caller
 * frees it.  Header-only (static): include it once per test program. */
#ifndef ZF_MSG_SAMPLES_H
#define ZF_MSG_SAMPLES_H

#include <stdint.h>
#include <stdio.h>

#include "msg.h"

static void zf_sample_field(zf_msg *m, const char *name, zf_msg_kind kind, int j, int seed)
{
    char s[64];
    switch (kind) {
    case ZF_MSG_INT: zf_msg_set_int(m, name, (int64_t)(seed * 1000 + j) * (j % 2 ? -1 : 1) * 123456789LL); break;
    case ZF_MSG_F64: zf_msg_set_f64(m, name, (seed + 1) * 0.1 + j / 3.0); break;
    case ZF_MSG_BOOL: zf_msg_set_bool(m, name, (seed + j) % 2); break;
    default:
        snprintf(s, sizeof s, "%s-%d-\xc3\xa9\"q\\\n", name, seed + j); /* UTF-8, quote, backslash, newline */
        zf_msg_set_str(m, name, s);
        break;
    }
}

static zf_msg *zf_sample_msg(const char *type, int all, int seed)
{
    zf_msg *m = zf_msg_new(type);
    int n = zf_msg_field_count(type);
    for (int j = 0; j < n; j++) {
        const char *name;
        zf_msg_kind kind;
        int req;
        zf_msg_field_info(type, j, &name, &kind, &req);
        if (req || all) zf_sample_field(m, name, kind, j, seed);
    }
    return m;
}

#endif
