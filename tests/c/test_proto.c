/* test_proto.c - the bus message protocol (proto/msg.c, proto/schema.h).
 *
 * Checks: the schema table is consistent and holds the documented catalogue;
 * every type round-trips (all fields, and required fields only) through
 * encode/decode and JSON; every truncation of every valid encoding is
 * rejected; 200k random byte strings and 200k mutations of valid encodings
 * never crash and either decode to a message that re-encodes identically or
 * fail with a one-line reason; hand-built invalid messages are rejected with
 * the expected reason; programming errors abort. */
#include <math.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "msg.h"
#include "rng.h"
#include "schema.h"
#include "zf_check.h"
#include "zf_msg_samples.h"

/* Field-by-field equality (doubles bitwise: msgpack carries float64 exactly). */
static int msg_equal(const zf_msg *a, const zf_msg *b)
{
    if (strcmp(zf_msg_type(a), zf_msg_type(b)) != 0) return 0;
    const char *type = zf_msg_type(a);
    int n = zf_msg_field_count(type);
    for (int j = 0; j < n; j++) {
        const char *name;
        zf_msg_kind kind;
        zf_msg_field_info(type, j, &name, &kind, NULL);
        if (zf_msg_has(a, name) != zf_msg_has(b, name)) return 0;
        switch (kind) {
        case ZF_MSG_INT:
            if (zf_msg_int(a, name) != zf_msg_int(b, name)) return 0;
            break;
        case ZF_MSG_F64: {
            double x = zf_msg_f64(a, name), y = zf_msg_f64(b, name);
            if (memcmp(&x, &y, sizeof x) != 0) return 0;
            break;
        }
        case ZF_MSG_BOOL:
            if (zf_msg_bool(a, name) != zf_msg_bool(b, name)) return 0;
            break;
        default:
            if (strcmp(zf_msg_str(a, name), zf_msg_str(b, name)) != 0) return 0;
        }
    }
    return 1;
}

static int one_line_reason(const zf_err *e)
{
    return e->msg[0] && !strchr(e->msg, '\n') && strncmp(e->msg, "msg", 3) == 0;
}

/* A raw msgpack map built key by key, for invalid messages. */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} raw;

static void raw_begin(raw *r, uint32_t nkeys)
{
    msgpack_sbuffer_init(&r->sb);
    msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&r->pk, nkeys);
}
static void raw_str(raw *r, const char *s) { msgpack_pack_str(&r->pk, strlen(s)); msgpack_pack_str_body(&r->pk, s, strlen(s)); }
static void raw_kstr(raw *r, const char *k, const char *v) { raw_str(r, k); raw_str(r, v); }
static void raw_kint(raw *r, const char *k, int64_t v) { raw_str(r, k); msgpack_pack_int64(&r->pk, v); }
static void raw_kf64(raw *r, const char *k, double v) { raw_str(r, k); msgpack_pack_double(&r->pk, v); }

/* The header of a `log` message: type, v, level (3 keys of nkeys). */
static void raw_log_head(raw *r, uint32_t nkeys)
{
    raw_begin(r, nkeys);
    raw_kstr(r, "type", "log");
    raw_kint(r, "v", 1);
    raw_kstr(r, "level", "info");
}

/* Decode r's bytes, expect failure whose reason contains `want`. */
static void expect_reject(raw *r, const char *want, const char *what)
{
    zf_msg *m = (zf_msg *)1;
    zf_err e = {{0}};
    int rc = zf_msg_decode(r->sb.data, r->sb.size, &m, &e);
    CHECK(rc == -1 && m == NULL, "%s: accepted", what);
    CHECK(strstr(e.msg, want) != NULL, "%s: reason \"%s\" lacks \"%s\"", what, e.msg, want);
    CHECK(one_line_reason(&e), "%s: reason not one line starting with msg: \"%s\"", what, e.msg);
    if (rc == 0) zf_msg_free(m);
    msgpack_sbuffer_destroy(&r->sb);
}

static zf_msg *expect_accept(raw *r, const char *what)
{
    zf_msg *m = NULL;
    zf_err e = {{0}};
    int rc = zf_msg_decode(r->sb.data, r->sb.size, &m, &e);
    CHECK(rc == 0 && m, "%s: rejected: %s", what, e.msg);
    msgpack_sbuffer_destroy(&r->sb);
    return rc == 0 ? m : NULL;
}

/* ---- tests -------------------------------------------------------------- */

static void test_schema(void)
{
    zf_err e = {{0}};
    CHECK(zf_msg_schema_check(&e) == 0, "%s", e.msg);
    static const char *const catalogue[] = {
        "ping", "pong", "shutdown", "ok", "error", "state", "step", "eval", "sample", "log", "tok_stats",
        "tok_progress", "ckpt_saved", "tok_want", "tok_job", "tok_result", "tok_heartbeat", "tok_bye",
        "tokens_req", "tokens_ready", "split_info_req", "split_info",
        "batch_req", "batch_ready", "batch_release", "opt_init", "grads_ready", "params_updated", "opt_state_req",
        "opt_state", "ckpt_save", "ckpt_snapshot", "ckpt_wait"};
    int n = (int)(sizeof catalogue / sizeof catalogue[0]);
    CHECK(zf_msg_type_count() == n, "%d types, expected %d", zf_msg_type_count(), n);
    for (int i = 0; i < n; i++) {
        CHECK(zf_msg_type_version(catalogue[i]) == 1, "%s version %d", catalogue[i], zf_msg_type_version(catalogue[i]));
        CHECK(zf_msg_type_name(i) && !strcmp(zf_msg_type_name(i), catalogue[i]), "type %d", i);
    }
    CHECK(zf_msg_type_version("nope") == -1, "unknown version");
    CHECK(zf_msg_field_count("nope") == -1, "unknown count");
    CHECK(zf_msg_type_name(n) == NULL, "type past end");
    /* A few fields straight from the brief. */
    const char *name;
    zf_msg_kind kind;
    int req;
    CHECK(zf_msg_field_count("step") >= 11, "step fields");
    CHECK(zf_msg_field_info("step", 3, &name, &kind, &req) == 0 && !strcmp(name, "loss") && kind == ZF_MSG_F64 && req,
          "step.loss");
    CHECK(zf_msg_field_info("step", 10, &name, &kind, &req) == 0 && !strcmp(name, "skipped") && kind == ZF_MSG_BOOL &&
              !req,
          "step.skipped");
    CHECK(zf_msg_field_info("ping", 0, &name, &kind, &req) == -1, "ping has no fields");
    CHECK(zf_msg_field_count("batch_ready") == 9, "batch_ready fields");
    CHECK(zf_msg_field_info("opt_init", 8, &name, &kind, &req) == 0 && !strcmp(name, "resume_dir") && !req, "resume_dir");
    /* The tokenizer's pull protocol: who asks, who holds which job. */
    CHECK(zf_msg_field_count("tok_want") == 3, "tok_want fields");
    CHECK(zf_msg_field_info("tok_want", 2, &name, &kind, &req) == 0 && !strcmp(name, "tokenizer") &&
              kind == ZF_MSG_STR && req,
          "tok_want.tokenizer");
    CHECK(zf_msg_field_info("tok_bye", 2, &name, &kind, &req) == 0 && !strcmp(name, "job") && kind == ZF_MSG_INT && req,
          "tok_bye.job");
    CHECK(zf_msg_field_info("tok_heartbeat", 2, &name, &kind, &req) == 0 && !strcmp(name, "job") && req,
          "tok_heartbeat.job");
    CHECK(zf_msg_field_count("tok_progress") == 12, "tok_progress fields");
}

static void test_roundtrip(void)
{
    for (int t = 0; t < zf_msg_type_count(); t++) {
        const char *type = zf_msg_type_name(t);
        for (int all = 0; all <= 1; all++) {
            zf_msg *m = zf_sample_msg(type, all, t);
            void *buf = NULL;
            size_t len = 0;
            zf_err e = {{0}};
            CHECK(zf_msg_encode(m, &buf, &len, &e) == 0, "%s: encode: %s", type, e.msg);
            zf_msg *d = NULL;
            CHECK(zf_msg_decode(buf, len, &d, &e) == 0, "%s: decode: %s", type, e.msg);
            if (d) {
                CHECK(zf_msg_is(d, type), "%s: type %s", type, zf_msg_type(d));
                CHECK(msg_equal(m, d), "%s (all=%d): fields differ after round trip", type, all);
                char *j1 = zf_msg_to_json(m), *j2 = zf_msg_to_json(d);
                CHECK(!strcmp(j1, j2), "%s: json %s vs %s", type, j1, j2);
                CHECK(!strchr(j1, '\n'), "%s: json has a raw newline: %s", type, j1);
                free(j1);
                free(j2);
                /* Absent optional fields read as zero values. */
                int n = zf_msg_field_count(type);
                for (int j = 0; j < n && !all; j++) {
                    const char *name;
                    zf_msg_kind kind;
                    int req;
                    zf_msg_field_info(type, j, &name, &kind, &req);
                    if (req) continue;
                    CHECK(!zf_msg_has(d, name), "%s.%s present", type, name);
                    if (kind == ZF_MSG_INT) CHECK(zf_msg_int(d, name) == 0, "%s.%s", type, name);
                    if (kind == ZF_MSG_F64) CHECK(zf_msg_f64(d, name) == 0.0, "%s.%s", type, name);
                    if (kind == ZF_MSG_STR) CHECK(!strcmp(zf_msg_str(d, name), ""), "%s.%s", type, name);
                    if (kind == ZF_MSG_BOOL) CHECK(zf_msg_bool(d, name) == 0, "%s.%s", type, name);
                }
            }
            /* Every proper prefix is rejected. */
            for (size_t cut = 0; cut < len; cut++) {
                zf_msg *p = (zf_msg *)1;
                zf_err pe = {{0}};
                int rc = zf_msg_decode(buf, cut, &p, &pe);
                CHECK(rc == -1 && p == NULL, "%s: prefix %zu of %zu accepted", type, cut, len);
                CHECK(one_line_reason(&pe), "%s: prefix %zu: reason \"%s\"", type, cut, pe.msg);
                if (cut > 0) CHECK(strstr(pe.msg, "truncated") != NULL, "%s: prefix %zu: \"%s\"", type, cut, pe.msg);
            }
            free(buf);
            zf_msg_free(d);
            zf_msg_free(m);
        }
    }
    /* Known values survive exactly, including extremes. */
    zf_msg *m = zf_msg_new("step");
    zf_msg_set_int(m, "step", INT64_MAX);
    zf_msg_set_int(m, "total", INT64_MIN);
    zf_msg_set_int(m, "epoch", -1);
    zf_msg_set_f64(m, "loss", NAN);
    zf_msg_set_f64(m, "lr", 1e-300);
    zf_msg_set_f64(m, "loss_scale", 65536.0);
    zf_msg_set_f64(m, "tokens_per_s", INFINITY);
    zf_msg_set_f64(m, "eta_s", -0.0);
    zf_msg_set_bool(m, "skipped", 7);
    void *buf;
    size_t len;
    zf_err e;
    CHECK(zf_msg_encode(m, &buf, &len, &e) == 0, "%s", e.msg);
    zf_msg *d = NULL;
    CHECK(zf_msg_decode(buf, len, &d, &e) == 0, "%s", e.msg);
    if (d) {
        CHECK(zf_msg_int(d, "step") == INT64_MAX && zf_msg_int(d, "total") == INT64_MIN && zf_msg_int(d, "epoch") == -1,
              "ints");
        CHECK(isnan(zf_msg_f64(d, "loss")) && zf_msg_f64(d, "lr") == 1e-300 && isinf(zf_msg_f64(d, "tokens_per_s")),
              "doubles");
        CHECK(signbit(zf_msg_f64(d, "eta_s")), "negative zero");
        CHECK(zf_msg_bool(d, "skipped") == 1, "bool normalised");
        char *j = zf_msg_to_json(d);
        CHECK(strstr(j, "\"loss\":null") && strstr(j, "\"tokens_per_s\":null") && strstr(j, "\"lr\":1e-300") &&
                  strstr(j, "\"loss_scale\":65536") && strstr(j, "\"skipped\":true") &&
                  strstr(j, "\"step\":9223372036854775807") && !strncmp(j, "{\"type\":\"step\",\"v\":1,", 21),
              "json: %s", j);
        free(j);
    }
    free(buf);
    zf_msg_free(d);
    zf_msg_free(m);
}

static void test_setters(void)
{
    zf_msg *m = zf_msg_new("error");
    CHECK(zf_msg_is(m, "error") && !zf_msg_is(m, "ok") && !zf_msg_is(m, NULL), "is");
    CHECK(!zf_msg_has(m, "message") && !strcmp(zf_msg_str(m, "message"), ""), "absent");
    zf_msg_set_str(m, "message", "first");
    zf_msg_set_str(m, "message", zf_msg_str(m, "message")); /* set from its own value */
    CHECK(!strcmp(zf_msg_str(m, "message"), "first"), "self-set");
    zf_msg_set_str(m, "message", "second");
    CHECK(zf_msg_has(m, "message") && !strcmp(zf_msg_str(m, "message"), "second"), "replace");
    zf_msg_free(m);
    zf_msg_free(NULL);

    /* Encoding refuses a missing required field and over-long strings. */
    zf_err e = {{0}};
    void *buf = (void *)1;
    size_t len = 1;
    m = zf_msg_new("pong");
    zf_msg_set_str(m, "daemon", "loaderd");
    zf_msg_set_int(m, "pid", 12);
    CHECK(zf_msg_encode(m, &buf, &len, &e) == -1 && buf == NULL && strstr(e.msg, "msg pong: state: missing required"),
          "encode missing: %s", e.msg);
    char *big = malloc(ZF_MSG_MAX_STR + 2);
    memset(big, 'x', ZF_MSG_MAX_STR + 1);
    big[ZF_MSG_MAX_STR + 1] = 0;
    zf_msg_set_str(m, "state", big);
    CHECK(zf_msg_encode(m, &buf, &len, &e) == -1 && strstr(e.msg, "msg pong: state: string of"), "encode big: %s", e.msg);
    big[ZF_MSG_MAX_STR] = 0; /* exactly at the limit: fine */
    zf_msg_set_str(m, "state", big);
    CHECK(zf_msg_encode(m, &buf, &len, &e) == 0, "encode at limit: %s", e.msg);
    zf_msg *d = NULL;
    CHECK(zf_msg_decode(buf, len, &d, &e) == 0 && d && strlen(zf_msg_str(d, "state")) == ZF_MSG_MAX_STR,
          "decode at limit: %s", e.msg);
    zf_msg_free(d);
    free(buf);
    /* Two strings at the limit exceed the whole-message limit. */
    zf_msg_set_str(m, "daemon", big);
    CHECK(zf_msg_encode(m, &buf, &len, &e) == -1 && strstr(e.msg, "exceeds the limit"), "encode total: %s", e.msg);
    free(big);
    zf_msg_free(m);
}

static void test_rejections(void)
{
    raw r;
    /* Baseline: a valid hand-built log decodes. */
    raw_log_head(&r, 4);
    raw_kstr(&r, "message", "hello");
    zf_msg *m = expect_accept(&r, "valid log");
    if (m) CHECK(!strcmp(zf_msg_str(m, "message"), "hello"), "log message");
    zf_msg_free(m);

    /* Key order does not matter. */
    raw_begin(&r, 4);
    raw_kstr(&r, "message", "x");
    raw_kstr(&r, "level", "warn");
    raw_kint(&r, "v", 1);
    raw_kstr(&r, "type", "log");
    zf_msg_free(expect_accept(&r, "reordered log"));

    /* mistyped */
    raw_log_head(&r, 4);
    raw_kint(&r, "message", 5);
    expect_reject(&r, "msg log: message: expected str, got int", "int for str");

    raw_begin(&r, 10);
    raw_kstr(&r, "type", "step");
    raw_kint(&r, "v", 1);
    raw_kf64(&r, "step", 1.0); /* int given as float */
    raw_kint(&r, "total", 10);
    raw_kint(&r, "epoch", 0);
    raw_kf64(&r, "loss", 1);
    raw_kf64(&r, "lr", 1);
    raw_kf64(&r, "loss_scale", 1);
    raw_kf64(&r, "tokens_per_s", 1);
    raw_kf64(&r, "eta_s", 1);
    expect_reject(&r, "msg step: step: expected int, got float", "float for int");

    raw_begin(&r, 10);
    raw_kstr(&r, "type", "step");
    raw_kint(&r, "v", 1);
    raw_kint(&r, "step", 1);
    raw_kint(&r, "total", 10);
    raw_kint(&r, "epoch", 0);
    raw_kstr(&r, "loss", "2.5");
    raw_kf64(&r, "lr", 1);
    raw_kf64(&r, "loss_scale", 1);
    raw_kf64(&r, "tokens_per_s", 1);
    raw_kf64(&r, "eta_s", 1);
    expect_reject(&r, "msg step: loss: expected f64 (float or int), got str", "str for f64");

    /* F64 accepts integers and float32; INT accepts negatives. */
    raw_begin(&r, 10);
    raw_kstr(&r, "type", "step");
    raw_kint(&r, "v", 1);
    raw_kint(&r, "step", 1);
    raw_kint(&r, "total", 10);
    raw_kint(&r, "epoch", -3);
    raw_kint(&r, "loss", -7);
    raw_str(&r, "lr");
    msgpack_pack_float(&r.pk, 0.5f);
    raw_kint(&r, "loss_scale", 65536);
    raw_kf64(&r, "tokens_per_s", 1.5);
    raw_kf64(&r, "eta_s", 2.5);
    m = expect_accept(&r, "ints for f64, float32");
    if (m)
        CHECK(zf_msg_f64(m, "loss") == -7.0 && zf_msg_f64(m, "lr") == 0.5 && zf_msg_f64(m, "loss_scale") == 65536.0 &&
                  zf_msg_int(m, "epoch") == -3,
              "converted values");
    zf_msg_free(m);

    raw_begin(&r, 4);
    raw_kstr(&r, "type", "ckpt_save");
    raw_kint(&r, "v", 1);
    raw_str(&r, "final");
    msgpack_pack_int(&r.pk, 1);
    raw_kint(&r, "step", 1);
    expect_reject(&r, "msg ckpt_save: final: expected bool, got int", "int for bool");

    raw_log_head(&r, 4);
    raw_str(&r, "message");
    msgpack_pack_bin(&r.pk, 3);
    msgpack_pack_bin_body(&r.pk, "abc", 3);
    expect_reject(&r, "msg log: message: expected str, got bin", "bin for str");

    raw_log_head(&r, 4);
    raw_str(&r, "message");
    msgpack_pack_nil(&r.pk);
    expect_reject(&r, "msg log: message: expected str, got nil", "nil for str");

    raw_log_head(&r, 4);
    raw_str(&r, "message");
    msgpack_pack_str(&r.pk, 3);
    msgpack_pack_str_body(&r.pk, "a\0b", 3);
    expect_reject(&r, "msg log: message: string contains a NUL byte", "NUL in str");

    raw_begin(&r, 3);
    raw_kstr(&r, "type", "batch_release");
    raw_kint(&r, "v", 1);
    raw_str(&r, "slot");
    msgpack_pack_uint64(&r.pk, UINT64_MAX);
    expect_reject(&r, "msg batch_release: slot: expected int, got 18446744073709551615 (beyond int64)", "uint64 max");

    raw_log_head(&r, 4);
    raw_str(&r, "message");
    msgpack_pack_array(&r.pk, 1);
    msgpack_pack_int(&r.pk, 1);
    expect_reject(&r, "msg log: \"message\": expected a scalar value, got array", "nested array");

    /* missing required */
    raw_log_head(&r, 3);
    expect_reject(&r, "msg log: message: missing required field", "missing required");

    /* unknown type, missing type, type not a string */
    raw_begin(&r, 2);
    raw_kstr(&r, "type", "bogus");
    raw_kint(&r, "v", 1);
    expect_reject(&r, "msg: type: unknown message type \"bogus\"", "unknown type");
    raw_begin(&r, 1);
    raw_kint(&r, "v", 1);
    expect_reject(&r, "msg: type: missing", "missing type");
    raw_begin(&r, 2);
    raw_kint(&r, "type", 3);
    raw_kint(&r, "v", 1);
    expect_reject(&r, "msg: type: expected str, got int", "int type");

    /* version */
    raw_begin(&r, 2);
    raw_kstr(&r, "type", "ping");
    raw_kint(&r, "v", 2);
    expect_reject(&r, "msg ping: v: expected schema version 1, got 2", "wrong version");
    raw_begin(&r, 1);
    raw_kstr(&r, "type", "ping");
    expect_reject(&r, "msg ping: v: missing", "missing version");
    raw_begin(&r, 2);
    raw_kstr(&r, "type", "ping");
    raw_kf64(&r, "v", 1.0);
    expect_reject(&r, "msg ping: v: expected int 1, got float", "float version");

    /* unknown extra key, duplicate keys */
    raw_begin(&r, 3);
    raw_kstr(&r, "type", "ping");
    raw_kint(&r, "v", 1);
    raw_kint(&r, "extra", 1);
    expect_reject(&r, "msg ping: \"extra\": unknown field", "unknown field");
    raw_log_head(&r, 5);
    raw_kstr(&r, "message", "a");
    raw_kstr(&r, "message", "b");
    expect_reject(&r, "msg log: \"message\": duplicate key", "duplicate");
    raw_begin(&r, 3);
    raw_kstr(&r, "type", "ping");
    raw_kint(&r, "v", 1);
    raw_kstr(&r, "type", "ping");
    expect_reject(&r, "duplicate key", "duplicate type");

    /* structure */
    raw_begin(&r, 1);
    raw_kint(&r, "v", 1);
    msgpack_sbuffer_destroy(&r.sb);
    msgpack_sbuffer_init(&r.sb);
    msgpack_packer_init(&r.pk, &r.sb, msgpack_sbuffer_write);
    msgpack_pack_array(&r.pk, 2);
    raw_str(&r, "type");
    raw_str(&r, "ping");
    expect_reject(&r, "msg: expected a map at top level, got array", "array top");

    raw_begin(&r, 2);
    raw_kstr(&r, "type", "ping");
    raw_kint(&r, "v", 1);
    msgpack_pack_int(&r.pk, 0); /* one trailing byte */
    expect_reject(&r, "msg ping: 1 trailing bytes after the message", "trailing");

    raw_begin(&r, 3);
    raw_kstr(&r, "type", "ping");
    raw_kint(&r, "v", 1);
    msgpack_pack_int(&r.pk, 5); /* an integer key */
    msgpack_pack_int(&r.pk, 5);
    expect_reject(&r, "msg ping: key 3: expected a string key, got int", "int key");

    raw_begin(&r, ZF_MSG_MAX_KEYS + 1);
    for (unsigned i = 0; i <= ZF_MSG_MAX_KEYS; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%u", i);
        raw_kint(&r, k, i);
    }
    expect_reject(&r, "msg: map of 33 keys exceeds the limit of 32", "too many keys");

    char *big = malloc(ZF_MSG_MAX_STR + 2);
    memset(big, 'y', ZF_MSG_MAX_STR + 1);
    big[ZF_MSG_MAX_STR + 1] = 0;
    raw_log_head(&r, 4);
    raw_kstr(&r, "message", big);
    expect_reject(&r, "msg log: \"message\": str of 131073 bytes exceeds the limit of 131072", "oversized string");
    free(big);

    char key[100];
    memset(key, 'k', 99);
    key[99] = 0;
    raw_log_head(&r, 4);
    raw_kstr(&r, key, "x");
    expect_reject(&r, "key 4: key of 99 bytes exceeds the limit of 64", "oversized key");

    /* Oversized whole message (checked before anything is parsed). */
    unsigned char *huge = calloc(ZF_MSG_MAX_BYTES + 1, 1);
    zf_msg *out = (zf_msg *)1;
    zf_err e = {{0}};
    CHECK(zf_msg_decode(huge, ZF_MSG_MAX_BYTES + 1, &out, &e) == -1 && out == NULL &&
              strstr(e.msg, "msg: 262145 bytes exceeds the message limit of 262144"),
          "oversized message: %s", e.msg);
    free(huge);
    CHECK(zf_msg_decode("", 0, &out, &e) == -1 && strstr(e.msg, "msg: empty message"), "empty: %s", e.msg);

    /* Hostile container headers: huge declared counts fail fast, no allocation. */
    static const unsigned char arr32[] = {0x81, 0xa4, 't', 'y', 'p', 'e', 0xdd, 0xff, 0xff, 0xff, 0xff};
    CHECK(zf_msg_decode(arr32, sizeof arr32, &out, &e) == -1 && strstr(e.msg, "expected a scalar value, got array"),
          "array32: %s", e.msg);
    static const unsigned char map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    CHECK(zf_msg_decode(map32, sizeof map32, &out, &e) == -1 && strstr(e.msg, "exceeds the limit of 32"), "map32: %s",
          e.msg);
    static const unsigned char str32[] = {0x81, 0xa4, 't', 'y', 'p', 'e', 0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'};
    CHECK(zf_msg_decode(str32, sizeof str32, &out, &e) == -1 && strstr(e.msg, "truncated"), "str32: %s", e.msg);
    static const unsigned char c1[] = {0x81, 0xc1, 0x00};
    CHECK(zf_msg_decode(c1, sizeof c1, &out, &e) == -1 && strstr(e.msg, "0xc1"), "0xc1: %s", e.msg);
    static const unsigned char ext[] = {0x83, 0xa4, 't', 'y', 'p', 'e', 0xa3, 'l', 'o', 'g', 0xa1, 'v', 0x01,
                                        0xa5, 'l', 'e', 'v', 'e', 'l', 0xd4, 0x01, 0x02};
    CHECK(zf_msg_decode(ext, sizeof ext, &out, &e) == -1 && strstr(e.msg, "msg log: level: expected str, got ext"),
          "ext: %s", e.msg);
}

static void test_json(void)
{
    zf_msg *m = zf_msg_new("sample");
    zf_msg_set_int(m, "step", 3);
    zf_msg_set_str(m, "prompt", "a\"b\\c\n\t\x01");
    zf_msg_set_str(m, "text", "ok \xe2\x82\xac bad \xff\xc3 end"); /* euro sign, then invalid bytes */
    char *j = zf_msg_to_json(m);
    CHECK(!strcmp(j, "{\"type\":\"sample\",\"v\":1,\"step\":3,\"prompt\":\"a\\\"b\\\\c\\n\\t\\u0001\","
                     "\"text\":\"ok \xe2\x82\xac bad \\ufffd\\ufffd end\"}"),
          "json: %s", j);
    free(j);
    zf_msg_set_str(m, "text", "\xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf"); /* surrogate, > U+10FFFF, overlong */
    j = zf_msg_to_json(m);
    CHECK(!strstr(j, "\xed") && !strstr(j, "\xf4") && !strstr(j, "\xc0"), "invalid utf-8 replaced: %s", j);
    free(j);
    zf_msg_free(m);
    m = zf_msg_new("ping");
    j = zf_msg_to_json(m);
    CHECK(!strcmp(j, "{\"type\":\"ping\",\"v\":1}"), "ping json: %s", j);
    free(j);
    zf_msg_free(m);
}

/* Decode arbitrary bytes; a success must be a complete message that
 * re-encodes and decodes to the same thing. */
static long fuzz_ok = 0, fuzz_bad = 0;
static void fuzz_one(const unsigned char *p, size_t n)
{
    zf_msg *m = NULL;
    zf_err e = {{0}};
    if (zf_msg_decode(p, n, &m, &e) != 0) {
        fuzz_bad++;
        CHECK(m == NULL && one_line_reason(&e), "bad reason \"%s\"", e.msg);
        return;
    }
    fuzz_ok++;
    void *buf;
    size_t len;
    zf_msg *d = NULL;
    CHECK(zf_msg_encode(m, &buf, &len, &e) == 0, "decoded message does not re-encode: %s", e.msg);
    if (e.msg[0] == 0 || buf) {
        CHECK(zf_msg_decode(buf, len, &d, &e) == 0 && d && msg_equal(m, d), "re-decode differs: %s", e.msg);
        free(buf);
    }
    char *j = zf_msg_to_json(m);
    free(j);
    zf_msg_free(d);
    zf_msg_free(m);
}

static void test_fuzz(void)
{
    zf_rng rng;
    zf_rng_seed(&rng, 12345, 7);
    unsigned char tmp[512];
    /* 200k random byte strings; half start like a small map so the scan goes deeper. */
    for (int it = 0; it < 200000; it++) {
        size_t n = (size_t)zf_rng_below(&rng, 64);
        for (size_t i = 0; i < n; i++) tmp[i] = (unsigned char)zf_rng_u64(&rng);
        if (n && (it & 1)) tmp[0] = (unsigned char)(0x80 | zf_rng_below(&rng, 16));
        if (n > 2 && (it & 2)) {
            tmp[1] = 0xa4;
            if (n > 6) memcpy(tmp + 2, "type", 4);
        }
        fuzz_one(tmp, n);
    }
    /* Valid encodings of every type, as mutation seeds. */
    int nt = zf_msg_type_count();
    void **seeds = calloc((size_t)nt * 2, sizeof *seeds);
    size_t *lens = calloc((size_t)nt * 2, sizeof *lens);
    for (int t = 0; t < nt * 2; t++) {
        zf_msg *m = zf_sample_msg(zf_msg_type_name(t / 2), t % 2, t);
        zf_err e;
        CHECK(zf_msg_encode(m, &seeds[t], &lens[t], &e) == 0, "%s", e.msg);
        zf_msg_free(m);
    }
    long ok_before = fuzz_ok;
    for (int it = 0; it < 200000; it++) {
        int s = (int)zf_rng_below(&rng, (uint64_t)nt * 2);
        size_t n = lens[s];
        if (n + 8 > sizeof tmp) continue;
        memcpy(tmp, seeds[s], n);
        int muts = 1 + (int)zf_rng_below(&rng, 3);
        for (int k = 0; k < muts; k++) {
            int op = (int)zf_rng_below(&rng, 4);
            size_t at = n ? (size_t)zf_rng_below(&rng, n) : 0;
            if (op == 0 && n) tmp[at] ^= (unsigned char)(1u << zf_rng_below(&rng, 8)); /* bit flip */
            else if (op == 1 && n) tmp[at] = (unsigned char)zf_rng_u64(&rng);          /* byte overwrite */
            else if (op == 2 && n + 1 < sizeof tmp) {                                  /* byte insert */
                memmove(tmp + at + 1, tmp + at, n - at);
                tmp[at] = (unsigned char)zf_rng_u64(&rng);
                n++;
            } else if (n) { /* byte delete */
                memmove(tmp + at, tmp + at + 1, n - at - 1);
                n--;
            }
        }
        fuzz_one(tmp, n);
    }
    /* Some mutations must survive (e.g. a flipped bit in a value), or the
     * check above would prove nothing about accepted messages. */
    CHECK(fuzz_ok - ok_before > 1000, "only %ld mutated messages decoded", fuzz_ok - ok_before);
    for (int t = 0; t < nt * 2; t++) free(seeds[t]);
    free(seeds);
    free(lens);
    printf("fuzz: %ld decoded, %ld rejected\n", fuzz_ok, fuzz_bad);
}

/* Programming errors abort (in a child process). */
static int aborts(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", 1);
        if (devnull >= 0) dup2(devnull, 2);
        fn();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}
static void bad_new(void) { zf_msg_free(zf_msg_new("no_such_type")); }
static void bad_key(void) { zf_msg *m = zf_msg_new("log"); zf_msg_set_str(m, "mesage", "x"); }
static void bad_kind(void) { zf_msg *m = zf_msg_new("log"); zf_msg_set_int(m, "message", 1); }
static void bad_get(void) { zf_msg *m = zf_msg_new("step"); (void)zf_msg_int(m, "loss"); }
static void bad_has(void) { zf_msg *m = zf_msg_new("ping"); (void)zf_msg_has(m, "x"); }

static void test_aborts(void)
{
    CHECK(aborts(bad_new), "unknown type must abort");
    CHECK(aborts(bad_key), "unknown key must abort");
    CHECK(aborts(bad_kind), "wrong kind must abort");
    CHECK(aborts(bad_get), "wrong getter kind must abort");
    CHECK(aborts(bad_has), "has() on a non-field must abort");
}

int main(void)
{
    test_schema();
    test_setters();
    test_roundtrip();
    test_rejections();
    test_json();
    test_fuzz();
    test_aborts();
    return zf_check_summary("test_proto");
}
