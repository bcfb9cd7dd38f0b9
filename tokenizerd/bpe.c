/* bpe.c - GPT-2 byte-level BPE (see bpe.h): file loading and validation,
 * the PCRE2 pre-tokenizer, merge-rank encoding and decoding. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "bpe.h"

#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bpe_common.h"

#define MAX_ID (1 << 26) /* ids beyond this are surely a corrupt file (and would cost memory) */

/* ------------------------------------------------------------ id vector */

void zf_ids_push(zf_ids *v, int32_t id)
{
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 256;
        v->data = zf_xrealloc(v->data, v->cap * sizeof *v->data);
    }
    v->data[v->len++] = id;
}

void zf_ids_free(zf_ids *v)
{
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}

/* ------------------------------------------------------ byte-level alphabet */

static int byte_is_printable(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

uint32_t zf_byte_to_unicode(uint8_t b)
{
    if (byte_is_printable(b)) return b;
    unsigned n = 0; /* rank of b among the non-printable bytes */
    for (unsigned c = 0; c < b; c++) n += !byte_is_printable(c);
    return 256 + n;
}

int zf_unicode_to_byte(uint32_t cp)
{
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    unsigned n = cp - 256;
    for (unsigned c = 0; c < 256; c++)
        if (!byte_is_printable(c) && n-- == 0) return (int)c;
    return -1;
}

size_t zf_bytelevel_encode(const unsigned char *p, size_t n, char *out)
{
    char *o = out;
    for (size_t i = 0; i < n; i++) { /* code points are below U+0800: one or two UTF-8 bytes */
        uint32_t cp = zf_byte_to_unicode(p[i]);
        if (cp < 0x80) *o++ = (char)cp;
        else { *o++ = (char)(0xC0 | cp >> 6); *o++ = (char)(0x80 | (cp & 63)); }
    }
    return (size_t)(o - out);
}

/* Decode one UTF-8 code point of a string known to be valid (jansson checks
 * strings); returns the byte count. */
static int utf8_get(const unsigned char *s, uint32_t *cp)
{
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    if (s[0] < 0xE0) { *cp = (uint32_t)(s[0] & 31) << 6 | (s[1] & 63); return 2; }
    if (s[0] < 0xF0) { *cp = (uint32_t)(s[0] & 15) << 12 | (uint32_t)(s[1] & 63) << 6 | (s[2] & 63); return 3; }
    *cp = (uint32_t)(s[0] & 7) << 18 | (uint32_t)(s[1] & 63) << 12 | (uint32_t)(s[2] & 63) << 6 | (s[3] & 63);
    return 4;
}

/* Byte-level form -> bytes.  Returns the byte count, or -1 when some
 * character stands for no byte (then the string is not a byte-level token). */
static long bytelevel_decode(const char *s, size_t n, unsigned char *out)
{
    size_t i = 0;
    long k = 0;
    while (i < n) {
        uint32_t cp;
        i += (size_t)utf8_get((const unsigned char *)s + i, &cp);
        int b = zf_unicode_to_byte(cp);
        if (b < 0) return -1;
        out[k++] = (unsigned char)b;
    }
    return k;
}

/* ---------------------------------------------------------- pre-tokenizer */

/* The GPT-2 pattern with \s spelled out as Unicode White_Space: HF runs the
 * pattern with Oniguruma, whose \s is exactly that set, while PCRE2's \s also
 * takes U+180E.  \p{L} and \p{N} agree (both Unicode 14 here; the HF test
 * sweeps every code point). */
#define WS "\\t\\n\\x0b\\f\\r\\x20\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
static const char k_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static pcre2_code *g_re;
static int g_re_jit;
static char g_re_error[256];
static pthread_once_t g_re_once = PTHREAD_ONCE_INIT;

static void re_compile(void)
{
    int ec;
    PCRE2_SIZE eo;
    /* MATCH_INVALID_UTF: invalid sequences are never matched (instead of the
     * whole subject being rejected), so they fall between pieces. */
    g_re = pcre2_compile((PCRE2_SPTR)k_pattern, PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
    if (!g_re) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(ec, msg, sizeof msg);
        snprintf(g_re_error, sizeof g_re_error, "pre-tokenizer pattern at %zu: %s", (size_t)eo, (char *)msg);
        return;
    }
    g_re_jit = pcre2_jit_compile(g_re, PCRE2_JIT_COMPLETE) == 0;
}

static int re_ready(zf_err *err)
{
    pthread_once(&g_re_once, re_compile);
    if (!g_re) return zf_err_set(err, "PCRE2: %s", g_re_error);
    return 0;
}

int zf_pretok_init(zf_pretok *it, const char *text, size_t len, zf_err *err)
{
    it->text = text;
    it->len = len;
    it->pos = 0;
    it->md = NULL;
    if (re_ready(err) != 0) return -1;
    it->md = pcre2_match_data_create_from_pattern(g_re, NULL);
    if (!it->md) zf_die("out of memory allocating PCRE2 match data"); /* as zf_xmalloc does */
    return 0;
}

void zf_pretok_free(zf_pretok *it)
{
    if (it->md) pcre2_match_data_free(it->md);
    it->md = NULL;
}

/* Next piece [*start, *end); 0 at the end of the text.  Bytes the pattern
 * skips (invalid UTF-8) form a piece of their own. */
int zf_pretok_next(zf_pretok *it, size_t *start, size_t *end)
{
    if (it->pos >= it->len) return 0;
    pcre2_match_data *md = it->md;
    int rc = g_re_jit ? pcre2_jit_match(g_re, (PCRE2_SPTR)it->text, it->len, it->pos, 0, md, NULL)
                      : pcre2_match(g_re, (PCRE2_SPTR)it->text, it->len, it->pos, 0, md, NULL);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && g_re_jit) /* JIT stack exhausted: the interpreter uses the heap */
        rc = pcre2_match(g_re, (PCRE2_SPTR)it->text, it->len, it->pos, PCRE2_NO_JIT, md, NULL);
    size_t ms, me;
    if (rc > 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        ms = ov[0];
        me = ov[1];
    } else {
        ms = me = it->len; /* no match (or a matcher limit, not seen in practice): the rest is one piece */
    }
    *start = it->pos;
    if (ms > it->pos) { /* a skipped run: return it now, the match comes next call */
        *end = ms;
        it->pos = ms;
        return 1;
    }
    if (me <= ms) me = ms + 1; /* cannot happen (no empty alternatives); guards the loop */
    *end = me;
    it->pos = me;
    return 1;
}

/* ------------------------------------------------------------ the model */

typedef struct merge_slot {
    uint64_t key;  /* (left << 32 | right) + 1; 0 = empty */
    int32_t rank, id;
} merge_slot;

typedef struct special {
    char *content;
    size_t len;
    int32_t id;
    int lstrip, rstrip, normalized;
} special;

struct zf_bpe {
    int nvocab;            /* max id + 1 */
    char **str;            /* id -> byte-level string (NULL = hole) */
    uint32_t *dec_off;     /* id -> decoded bytes in dec (nvocab + 1 offsets) */
    unsigned char *dec;
    zf_bpe_idtab str_tab;  /* ids keyed by str */
    merge_slot *merges;    /* (left, right) -> (rank, result id) */
    size_t merge_mask;
    int32_t *merge_list;   /* 2 * nmerges ids in rank order (for the hash) */
    size_t nmerges;
    int32_t byte_id[256];  /* id of each byte's symbol, -1 if not in the vocabulary */
    special *specials;
    int nspecials;
    int32_t eot;
    int32_t unk;           /* HF unk_token id or -1 */
    int fuse_unk, ignore_merges, add_prefix_space;
    uint64_t hash, uid;
};

static atomic_uint_fast64_t g_next_uid = 1;

static const void *str_key(const void *ctx, int32_t id, size_t *len)
{
    const char *s = ((const zf_bpe *)ctx)->str[id];
    *len = strlen(s);
    return s;
}

static int32_t str_lookup(const zf_bpe *b, const char *s, size_t n) { return zf_bpe_idtab_find(&b->str_tab, s, n, str_key, b); }

/* (Re)builds the table of every id's string (after the vocabulary grew). */
static void build_str_table(zf_bpe *b)
{
    zf_bpe_idtab_free(&b->str_tab);
    zf_bpe_idtab_init(&b->str_tab, (size_t)b->nvocab);
    for (int id = 0; id < b->nvocab; id++)
        if (b->str[id]) zf_bpe_idtab_add(&b->str_tab, b->str[id], strlen(b->str[id]), id);
}

static inline const merge_slot *merge_find(const zf_bpe *b, int32_t a, int32_t c)
{
    uint64_t k = zf_bpe_pair_key(a, c);
    for (size_t i = zf_mix64(k) & b->merge_mask;; i = (i + 1) & b->merge_mask) {
        const merge_slot *s = &b->merges[i];
        if (s->key == k) return s;
        if (!s->key) return NULL;
    }
}

/* Insert or overwrite (HF keeps the last rank of a repeated merge line). */
static void merge_put(zf_bpe *b, int32_t a, int32_t c, int32_t rank, int32_t id)
{
    uint64_t k = zf_bpe_pair_key(a, c);
    size_t i = zf_mix64(k) & b->merge_mask;
    while (b->merges[i].key && b->merges[i].key != k) i = (i + 1) & b->merge_mask;
    b->merges[i] = (merge_slot){ k, rank, id };
}

void zf_bpe_free(zf_bpe *b)
{
    if (!b) return;
    for (int i = 0; i < b->nvocab; i++) free(b->str[i]);
    free(b->str);
    free(b->dec_off);
    free(b->dec);
    zf_bpe_idtab_free(&b->str_tab);
    free(b->merges);
    free(b->merge_list);
    for (int i = 0; i < b->nspecials; i++) free(b->specials[i].content);
    free(b->specials);
    free(b);
}

int zf_bpe_vocab_size(const zf_bpe *b) { return b->nvocab; }
int32_t zf_bpe_eot_id(const zf_bpe *b) { return b->eot; }
uint64_t zf_bpe_hash(const zf_bpe *b) { return b->hash; }

const char *zf_bpe_token_str(const zf_bpe *b, int32_t id)
{
    if (id < 0 || id >= b->nvocab) return NULL;
    return b->str[id];
}

/* ---------------------------------------------------------------- loading */

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Short printable rendering of a token for messages (cut on a character
 * boundary when long). */
static const char *quote_tok(const char *s, size_t n, char *buf, size_t cap)
{
    if (n + 1 > cap) {
        size_t k = cap - 4;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        snprintf(buf, cap, "%.*s...", (int)k, s);
    } else {
        snprintf(buf, cap, "%.*s", (int)n, s);
    }
    for (char *c = buf; *c; c++) /* for one-line messages */
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return buf;
}

static json_t *load_json(const char *path, zf_err *err)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        if (!file_exists(path)) return zf_err_set(err, "%s: cannot open: %s", path, strerror(errno)), NULL;
        for (char *c = je.text; *c; c++) /* jansson quotes the bad token raw: keep one line */
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
        zf_err_set(err, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    }
    return j;
}

/* Set id -> str, growing the table; rejects two strings for one id. */
static int vocab_set(zf_bpe *b, int *cap, int64_t id, const char *s, const char *path, zf_err *err)
{
    char q1[80], q2[80];
    if (id < 0 || id >= MAX_ID)
        return zf_err_set(err, "%s: '%s': expected an id in 0..%d, got %lld", path, quote_tok(s, strlen(s), q1, sizeof q1),
                          MAX_ID - 1, (long long)id);
    if (id >= *cap) {
        int nc = *cap ? *cap : 1024;
        while (nc <= id) nc *= 2;
        b->str = zf_xrealloc(b->str, (size_t)nc * sizeof *b->str);
        memset(b->str + *cap, 0, (size_t)(nc - *cap) * sizeof *b->str);
        *cap = nc;
    }
    if (b->str[id]) {
        if (!strcmp(b->str[id], s)) return 0;
        return zf_err_set(err, "%s: id %lld is given to both '%s' and '%s'", path, (long long)id,
                          quote_tok(b->str[id], strlen(b->str[id]), q1, sizeof q1), quote_tok(s, strlen(s), q2, sizeof q2));
    }
    b->str[id] = zf_xstrdup(s);
    if (id >= b->nvocab) b->nvocab = (int)id + 1;
    return 0;
}

static int load_vocab_obj(zf_bpe *b, int *cap, json_t *vocab, const char *path, const char *field, zf_err *err)
{
    if (!json_is_object(vocab)) return zf_err_set(err, "%s: %s: expected an object of token -> id", path, field);
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) {
        char q[80];
        if (!json_is_integer(v))
            return zf_err_set(err, "%s: %s: '%s': expected an integer id", path, field, quote_tok(k, strlen(k), q, sizeof q));
        if (vocab_set(b, cap, json_integer_value(v), k, path, err) != 0) return -1;
    }
    if (b->nvocab == 0) return zf_err_set(err, "%s: %s: expected a non-empty vocabulary", path, field);
    return 0;
}

static void merges_alloc(zf_bpe *b, size_t n)
{
    size_t cap = zf_bpe_table_cap(n * 2 + 2);
    b->merges = zf_xcalloc(cap, sizeof *b->merges);
    b->merge_mask = cap - 1;
    b->merge_list = zf_xmalloc((n ? n : 1) * 2 * sizeof *b->merge_list);
    b->nmerges = 0;
}

/* Register merge "l r" (the where string locates it in messages). */
static int add_merge(zf_bpe *b, const char *l, size_t ln, const char *r, size_t rn, const char *where,
                     const char *vocab_path, zf_err *err)
{
    char q1[100], q2[100], q3[200];
    int32_t a = str_lookup(b, l, ln), c = str_lookup(b, r, rn);
    if (a < 0) return zf_err_set(err, "%s: '%s' is not in %s", where, quote_tok(l, ln, q1, sizeof q1), vocab_path);
    if (c < 0) return zf_err_set(err, "%s: '%s' is not in %s", where, quote_tok(r, rn, q1, sizeof q1), vocab_path);
    char stack[256];
    char *cat = ln + rn < sizeof stack ? stack : zf_xmalloc(ln + rn + 1);
    memcpy(cat, l, ln);
    memcpy(cat + ln, r, rn);
    int32_t id = str_lookup(b, cat, ln + rn);
    if (id < 0) {
        zf_err_set(err, "%s: merge '%s %s' produces '%s' which is not in %s", where, quote_tok(l, ln, q1, sizeof q1),
                   quote_tok(r, rn, q2, sizeof q2), quote_tok(cat, ln + rn, q3, sizeof q3), vocab_path);
        if (cat != stack) free(cat);
        return -1;
    }
    if (cat != stack) free(cat);
    merge_put(b, a, c, (int32_t)b->nmerges, id);
    b->merge_list[2 * b->nmerges] = a;
    b->merge_list[2 * b->nmerges + 1] = c;
    b->nmerges++;
    return 0;
}

static int load_merges_txt(zf_bpe *b, const char *path, const char *vocab_path, zf_err *err)
{
    char *buf;
    size_t n;
    if (zf_tok_read_file(path, &buf, &n, err) != 0) return -1;
    size_t lines = 1;
    for (size_t i = 0; i < n; i++) lines += buf[i] == '\n';
    merges_alloc(b, lines);
    size_t pos = 0;
    int rc = 0;
    for (size_t lineno = 1; pos < n && rc == 0; lineno++) {
        char *line = buf + pos;
        char *nl = memchr(line, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - line) : n - pos;
        pos += len + 1;
        if (len && line[len - 1] == '\r') len--;
        if (len >= 8 && !memcmp(line, "#version", 8)) continue;
        char where[1200];
        snprintf(where, sizeof where, "%s:%zu", path, lineno);
        if (len == 0) {
            /* only trailing empty lines are allowed */
            size_t k = pos;
            while (k < n && (buf[k] == '\n' || buf[k] == '\r')) k++;
            if (k >= n) break;
            rc = zf_err_set(err, "%s: expected 'LEFT RIGHT' (two tokens separated by one space), got an empty line", where);
            break;
        }
        char *sp = memchr(line, ' ', len);
        if (!sp || sp == line || sp == line + len - 1 || memchr(sp + 1, ' ', (size_t)(line + len - sp - 1))) {
            char q[120];
            rc = zf_err_set(err, "%s: expected 'LEFT RIGHT' (two tokens separated by one space), got '%s'", where,
                            quote_tok(line, len, q, sizeof q));
            break;
        }
        if (memchr(line, 0, len)) {
            rc = zf_err_set(err, "%s: expected text, got a NUL byte", where);
            break;
        }
        rc = add_merge(b, line, (size_t)(sp - line), sp + 1, (size_t)(line + len - sp - 1), where, vocab_path, err);
    }
    free(buf);
    return rc;
}

static int add_special(zf_bpe *b, const char *content, int32_t id, int lstrip, int rstrip, int normalized)
{
    for (int i = 0; i < b->nspecials; i++)
        if (!strcmp(b->specials[i].content, content)) return 0;
    b->specials = zf_xrealloc(b->specials, (size_t)(b->nspecials + 1) * sizeof *b->specials);
    b->specials[b->nspecials++] = (special){ zf_xstrdup(content), strlen(content), id, lstrip, rstrip, normalized };
    return 0;
}

static int json_flag(json_t *o, const char *k, int dflt)
{
    json_t *v = json_object_get(o, k);
    return v ? json_is_true(v) : dflt;
}

/* tokenizer.json "added_tokens": ids may extend the vocabulary.  Like HF, a
 * token whose content is already in the model's vocabulary keeps the model's
 * id. */
static int load_added_tokens(zf_bpe *b, int *cap, json_t *arr, const char *path, zf_err *err)
{
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) return zf_err_set(err, "%s: added_tokens: expected an array", path);
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t) {
        json_t *id = json_object_get(t, "id"), *content = json_object_get(t, "content");
        if (!json_is_integer(id) || !json_is_string(content))
            return zf_err_set(err, "%s: added_tokens[%zu]: expected an object with integer \"id\" and string \"content\"",
                              path, i);
        if (json_flag(t, "single_word", 0))
            return zf_err_set(err, "%s: added_tokens[%zu]: single_word: expected false (not supported), got true", path, i);
        const char *c = json_string_value(content);
        if (!c[0]) return zf_err_set(err, "%s: added_tokens[%zu]: content: expected a non-empty string", path, i);
        int32_t tid = str_lookup(b, c, strlen(c));
        if (tid < 0) {
            if (vocab_set(b, cap, json_integer_value(id), c, path, err) != 0) return -1;
            tid = (int32_t)json_integer_value(id);
        }
        add_special(b, c, tid, json_flag(t, "lstrip", 0), json_flag(t, "rstrip", 0), json_flag(t, "normalized", 0));
    }
    return 0;
}

static int load_from_tokenizer_json(zf_bpe *b, const char *path, zf_err *err)
{
    json_t *root = load_json(path, err);
    if (!root) return -1;
    int rc = -1, cap = 0;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        zf_err_set(err, "%s: model: expected an object", path);
        goto out;
    }
    json_t *type = json_object_get(model, "type");
    if (type && !(json_is_string(type) && !strcmp(json_string_value(type), "BPE"))) {
        char q[80];
        zf_err_set(err, "%s: model.type: expected \"BPE\", got %s", path,
                   json_is_string(type) ? quote_tok(json_string_value(type), strlen(json_string_value(type)), q, sizeof q)
                                        : "a non-string");
        goto out;
    }
    static const char *const must_be_null[] = { "dropout", "continuing_subword_prefix", "end_of_word_suffix" };
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(model, must_be_null[i]);
        if (v && !json_is_null(v)) {
            zf_err_set(err, "%s: model.%s: expected null (not supported)", path, must_be_null[i]);
            goto out;
        }
    }
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        zf_err_set(err, "%s: normalizer: expected null (byte-level BPE needs none)", path);
        goto out;
    }
    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *pt = json_object_get(pre, "type");
    if (!json_is_string(pt) || strcmp(json_string_value(pt), "ByteLevel") != 0) {
        zf_err_set(err, "%s: pre_tokenizer: expected {\"type\": \"ByteLevel\", ...}", path);
        goto out;
    }
    if (!json_flag(pre, "use_regex", 1)) {
        zf_err_set(err, "%s: pre_tokenizer.use_regex: expected true", path);
        goto out;
    }
    b->add_prefix_space = json_flag(pre, "add_prefix_space", 0);
    b->ignore_merges = json_flag(model, "ignore_merges", 0);
    b->fuse_unk = json_flag(model, "fuse_unk", 0);
    if (load_vocab_obj(b, &cap, json_object_get(model, "vocab"), path, "model.vocab", err) != 0) goto out;
    build_str_table(b);
    if (load_added_tokens(b, &cap, json_object_get(root, "added_tokens"), path, err) != 0) goto out;
    build_str_table(b); /* now with the added tokens */
    json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk)) b->unk = str_lookup(b, json_string_value(unk), strlen(json_string_value(unk)));
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) {
        zf_err_set(err, "%s: model.merges: expected an array", path);
        goto out;
    }
    merges_alloc(b, json_array_size(merges));
    char vocab_where[1200];
    snprintf(vocab_where, sizeof vocab_where, "%s model.vocab", path);
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        char where[1300];
        snprintf(where, sizeof where, "%s: model.merges[%zu]", path, i);
        const char *l, *r;
        size_t ln, rn;
        if (json_is_string(m)) { /* "left right" (tokenizers < 0.20) */
            const char *s = json_string_value(m);
            const char *sp = strchr(s, ' ');
            if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
                char q[80];
                zf_err_set(err, "%s: expected 'LEFT RIGHT', got '%s'", where, quote_tok(s, strlen(s), q, sizeof q));
                goto out;
            }
            l = s, ln = (size_t)(sp - s), r = sp + 1, rn = strlen(sp + 1);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) { /* ["left", "right"] */
            l = json_string_value(json_array_get(m, 0)), ln = strlen(l);
            r = json_string_value(json_array_get(m, 1)), rn = strlen(r);
        } else {
            zf_err_set(err, "%s: expected \"LEFT RIGHT\" or [\"LEFT\", \"RIGHT\"]", where);
            goto out;
        }
        if (add_merge(b, l, ln, r, rn, where, vocab_where, err) != 0) goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* DIR/added_tokens.json (HF "slow" format: {"token": id}) if present. */
static int load_added_tokens_json(zf_bpe *b, int *cap, const char *path, zf_err *err)
{
    if (!file_exists(path)) return 0;
    json_t *root = load_json(path, err);
    if (!root) return -1;
    int rc = 0;
    if (!json_is_object(root)) {
        rc = zf_err_set(err, "%s: expected an object of token -> id", path);
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(root, k, v) {
            if (!json_is_integer(v) || !k[0]) {
                char q[80];
                rc = zf_err_set(err, "%s: '%s': expected a non-empty token with an integer id", path,
                                quote_tok(k, strlen(k), q, sizeof q));
                break;
            }
            int32_t tid = str_lookup(b, k, strlen(k));
            if (tid < 0) {
                if ((rc = vocab_set(b, cap, json_integer_value(v), k, path, err)) != 0) break;
                tid = (int32_t)json_integer_value(v);
            }
            add_special(b, k, tid, 0, 0, 0);
        }
    }
    json_decref(root);
    return rc;
}

static int load_from_vocab_merges(zf_bpe *b, const char *dir, zf_err *err)
{
    char vpath[1100], mpath[1100], apath[1100];
    snprintf(vpath, sizeof vpath, "%s/vocab.json", dir);
    snprintf(mpath, sizeof mpath, "%s/merges.txt", dir);
    snprintf(apath, sizeof apath, "%s/added_tokens.json", dir);
    json_t *root = load_json(vpath, err);
    if (!root) return -1;
    int cap = 0;
    int rc = load_vocab_obj(b, &cap, root, vpath, "top level", err);
    json_decref(root);
    if (rc != 0) return -1;
    build_str_table(b);
    if (load_added_tokens_json(b, &cap, apath, err) != 0) return -1;
    build_str_table(b);
    int32_t eot = str_lookup(b, ZF_BPE_EOT, strlen(ZF_BPE_EOT));
    if (eot >= 0) add_special(b, ZF_BPE_EOT, eot, 0, 0, 0);
    return load_merges_txt(b, mpath, vpath, err);
}

static int is_special_id(const zf_bpe *b, int32_t id)
{
    for (int i = 0; i < b->nspecials; i++)
        if (b->specials[i].id == id) return 1;
    return 0;
}

/* Everything derived from the tables: byte ids, decode bytes, the hash. */
static void finish_load(zf_bpe *b)
{
    for (int c = 0; c < 256; c++) {
        unsigned char byte = (unsigned char)c;
        char s[2];
        b->byte_id[c] = str_lookup(b, s, zf_bytelevel_encode(&byte, 1, s));
    }
    b->eot = -1;
    for (int i = 0; i < b->nspecials; i++)
        if (!strcmp(b->specials[i].content, ZF_BPE_EOT)) b->eot = b->specials[i].id;
    if (b->eot < 0) b->eot = str_lookup(b, ZF_BPE_EOT, strlen(ZF_BPE_EOT));

    size_t total = 0;
    for (int id = 0; id < b->nvocab; id++) total += b->str[id] ? strlen(b->str[id]) : 0;
    b->dec = zf_xmalloc(total + 1);
    b->dec_off = zf_xmalloc(((size_t)b->nvocab + 1) * sizeof *b->dec_off);
    uint32_t at = 0;
    for (int id = 0; id < b->nvocab; id++) {
        b->dec_off[id] = at;
        const char *s = b->str[id];
        if (!s) continue;
        size_t n = strlen(s);
        long k = is_special_id(b, id) ? -1 : bytelevel_decode(s, n, b->dec + at);
        if (k < 0) { /* a special token, or not byte-level: its text as is */
            memcpy(b->dec + at, s, n);
            k = (long)n;
        }
        at += (uint32_t)k;
    }
    b->dec_off[b->nvocab] = at;

    uint64_t h = ZF_FNV1A64_INIT;
    uint32_t nv = (uint32_t)b->nvocab;
    h = zf_fnv1a64(h, &nv, 4);
    for (int id = 0; id < b->nvocab; id++) {
        if (!b->str[id]) continue;
        uint32_t v[2] = { (uint32_t)id, (uint32_t)strlen(b->str[id]) };
        h = zf_fnv1a64(h, v, 8);
        h = zf_fnv1a64(h, b->str[id], v[1]);
    }
    uint64_t nm = b->nmerges;
    h = zf_fnv1a64(h, &nm, 8);
    h = zf_fnv1a64(h, b->merge_list, b->nmerges * 2 * sizeof(int32_t));
    b->hash = h;
    b->uid = atomic_fetch_add(&g_next_uid, 1);
}

int zf_bpe_load(const char *dir, zf_bpe **out, zf_err *err)
{
    *out = NULL;
    if (!dir || !dir[0]) return zf_err_set(err, "tokenizer: expected a directory, got an empty path");
    if (re_ready(err) != 0) return -1;
    zf_bpe *b = zf_xcalloc(1, sizeof *b);
    b->unk = -1;
    char vpath[1100], mpath[1100], tpath[1100];
    snprintf(vpath, sizeof vpath, "%s/vocab.json", dir);
    snprintf(mpath, sizeof mpath, "%s/merges.txt", dir);
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", dir);
    int rc;
    if (file_exists(vpath) || file_exists(mpath)) rc = load_from_vocab_merges(b, dir, err);
    else if (file_exists(tpath)) rc = load_from_tokenizer_json(b, tpath, err);
    else rc = zf_err_set(err, "%s: expected vocab.json + merges.txt or tokenizer.json in this directory", dir);
    if (rc != 0) {
        zf_bpe_free(b);
        return -1;
    }
    finish_load(b);
    *out = b;
    return 0;
}

/* --------------------------------------------------------------- encoding */

/* Per-thread cache of piece -> ids.  Pieces repeat a lot in text (Zipf), and
 * the cache turns most pieces into one hash probe.  Keyed by the model's uid
 * so that a freed and reloaded model never sees stale entries. */
#define CACHE_SLOTS 8192
#define CACHE_MAX_BYTES 24
#define CACHE_MAX_IDS 12

typedef struct cache_slot {
    uint64_t uid;
    uint8_t nbytes, nids;
    char bytes[CACHE_MAX_BYTES];
    int32_t ids[CACHE_MAX_IDS];
} cache_slot;

typedef struct thread_cache {
    cache_slot slot[CACHE_SLOTS];
} thread_cache;

static pthread_key_t g_cache_key;
static pthread_once_t g_cache_once = PTHREAD_ONCE_INIT;
static void cache_destroy(void *p) { free(p); }
static void cache_key_init(void) { pthread_key_create(&g_cache_key, cache_destroy); }

static thread_cache *get_cache(void)
{
    pthread_once(&g_cache_once, cache_key_init);
    thread_cache *c = pthread_getspecific(g_cache_key);
    if (!c) {
        c = zf_xcalloc(1, sizeof *c);
        pthread_setspecific(g_cache_key, c);
    }
    return c;
}

typedef struct heap_item {
    int32_t rank;
    uint32_t pos; /* pieces are cut below 2^32 bytes (see encode_piece) */
} heap_item;

static inline int heap_less(heap_item x, heap_item y) { return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos); }

static void heap_push(heap_item *h, size_t *n, heap_item x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(x, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static heap_item heap_pop(heap_item *h, size_t *n)
{
    heap_item top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < *n && heap_less(h[l], x)) m = l;
        if (l + 1 < *n && heap_less(h[l + 1], m == i ? x : h[l])) m = l + 1;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = x;
    return top;
}

/* Long pieces: symbols in a linked list, candidate merges in a heap ordered
 * by (rank, position) - the lowest rank first, leftmost on ties, as HF does.
 * O(n log n) instead of the O(n^2) of the simple loop. */
static size_t merge_long(const zf_bpe *b, int32_t *sym, size_t m)
{
    int32_t *nxt = zf_xmalloc(m * sizeof *nxt), *prv = zf_xmalloc(m * sizeof *prv);
    heap_item *h = zf_xmalloc((3 * m + 1) * sizeof *h); /* m - 1 initial pairs + at most 2 per merge */
    size_t nh = 0;
    for (size_t i = 0; i < m; i++) {
        nxt[i] = i + 1 < m ? (int32_t)(i + 1) : -1;
        prv[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < m; i++) {
        const merge_slot *s = merge_find(b, sym[i], sym[i + 1]);
        if (s) heap_push(h, &nh, (heap_item){ s->rank, (uint32_t)i });
    }
    while (nh) {
        heap_item t = heap_pop(h, &nh);
        size_t p = t.pos;
        if (sym[p] < 0 || nxt[p] < 0) continue; /* merged away since */
        size_t q = (size_t)nxt[p];
        const merge_slot *s = merge_find(b, sym[p], sym[q]);
        if (!s || s->rank != t.rank) continue; /* the pair changed since */
        sym[p] = s->id;
        sym[q] = -1;
        nxt[p] = nxt[q];
        if (nxt[q] >= 0) prv[nxt[q]] = (int32_t)p;
        if (prv[p] >= 0) {
            const merge_slot *l = merge_find(b, sym[prv[p]], sym[p]);
            if (l) heap_push(h, &nh, (heap_item){ l->rank, (uint32_t)prv[p] });
        }
        if (nxt[p] >= 0) {
            const merge_slot *r = merge_find(b, sym[p], sym[nxt[p]]);
            if (r) heap_push(h, &nh, (heap_item){ r->rank, (uint32_t)p });
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        if (sym[i] >= 0) sym[k++] = sym[i];
    free(nxt);
    free(prv);
    free(h);
    return k;
}

/* Short pieces: find the lowest-rank pair, merge it everywhere left to
 * right, repeat.  Same result as the heap: a merge only creates pairs that
 * contain the new (later) token, so no lower rank can appear. */
static size_t merge_short(const zf_bpe *b, int32_t *sym, size_t m)
{
    int32_t rank[64];
    for (size_t i = 0; i + 1 < m; i++) {
        const merge_slot *s = merge_find(b, sym[i], sym[i + 1]);
        rank[i] = s ? s->rank : INT32_MAX;
    }
    while (m > 1) {
        int32_t best = INT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] < best) best = rank[i], bi = i;
        if (best == INT32_MAX) break;
        int32_t A = sym[bi], B = sym[bi + 1];
        int32_t id = merge_find(b, A, B)->id;
        size_t w = bi;
        for (size_t i = bi; i < m;) {
            if (i + 1 < m && sym[i] == A && sym[i + 1] == B) {
                sym[w++] = id;
                i += 2;
            } else {
                sym[w++] = sym[i++];
            }
        }
        m = w;
        /* ranks change only around merged symbols; recomputing all is cheap at this size */
        for (size_t i = (bi ? bi - 1 : 0); i + 1 < m; i++) {
            const merge_slot *s = merge_find(b, sym[i], sym[i + 1]);
            rank[i] = s ? s->rank : INT32_MAX;
        }
    }
    return m;
}

#define SHORT_PIECE 64
#define MAX_PIECE ((size_t)1 << 30)

static void encode_piece(const zf_bpe *b, const unsigned char *p, size_t n, zf_ids *out, thread_cache *tc)
{
    if (n == 1 && b->byte_id[p[0]] >= 0) {
        zf_ids_push(out, b->byte_id[p[0]]);
        return;
    }
    cache_slot *cs = NULL;
    if (n <= CACHE_MAX_BYTES && tc) {
        uint64_t h = zf_mix64(zf_fnv1a64(b->uid, p, n));
        cs = &tc->slot[h & (CACHE_SLOTS - 1)];
        if (cs->uid == b->uid && cs->nbytes == n && memcmp(cs->bytes, p, n) == 0) {
            for (int i = 0; i < cs->nids; i++) zf_ids_push(out, cs->ids[i]);
            return;
        }
    }
    size_t start = out->len;
    if (b->ignore_merges) { /* HF: a piece that is a whole vocabulary entry is taken as is */
        char stack[2 * 64] = "", *s = n <= 64 ? stack : zf_xmalloc(2 * n);
        size_t k = zf_bytelevel_encode(p, n, s);
        int32_t id = str_lookup(b, s, k);
        if (s != stack) free(s);
        if (id >= 0) {
            zf_ids_push(out, id);
            goto cache;
        }
    }
    int32_t stack_sym[SHORT_PIECE];
    int32_t *sym = n <= SHORT_PIECE ? stack_sym : zf_xmalloc(n * sizeof *sym);
    size_t m = 0;
    int last_unk = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_id[p[i]];
        if (id < 0) { /* HF drops a character missing from the vocabulary unless there is an unk token */
            if (b->unk < 0 || (b->fuse_unk && last_unk)) continue;
            id = b->unk;
        }
        last_unk = id == b->unk && id >= 0;
        sym[m++] = id;
    }
    m = m <= SHORT_PIECE ? merge_short(b, sym, m) : merge_long(b, sym, m);
    for (size_t i = 0; i < m; i++) zf_ids_push(out, sym[i]);
    if (sym != stack_sym) free(sym);
cache:
    if (cs && out->len - start <= CACHE_MAX_IDS) {
        cs->uid = b->uid;
        cs->nbytes = (uint8_t)n;
        memcpy(cs->bytes, p, n);
        cs->nids = (uint8_t)(out->len - start);
        if (cs->nids) memcpy(cs->ids, out->data + start, cs->nids * sizeof(int32_t)); /* data is NULL while empty */
    }
}

static void encode_plain(const zf_bpe *b, const char *text, size_t len, zf_ids *out, thread_cache *tc)
{
    if (!len) return;
    char *tmp = NULL;
    if (b->add_prefix_space && text[0] != ' ') { /* HF prepends one space to each segment */
        tmp = zf_xmalloc(len + 1);
        tmp[0] = ' ';
        memcpy(tmp + 1, text, len);
        text = tmp;
        len++;
    }
    zf_pretok it;
    zf_pretok_init(&it, text, len, NULL); /* cannot fail: zf_bpe_load compiled the pattern */
    size_t a, e;
    while (zf_pretok_next(&it, &a, &e)) {
        /* a piece over 1 GiB (never seen in text) is merged in 1 GiB parts to
         * keep merge_long's 32-bit positions; decoding stays exact */
        for (; e - a > MAX_PIECE; a += MAX_PIECE) encode_piece(b, (const unsigned char *)text + a, MAX_PIECE, out, tc);
        encode_piece(b, (const unsigned char *)text + a, e - a, out, tc);
    }
    zf_pretok_free(&it);
    free(tmp);
}

/* Is the code point starting at s[i] (before i for the left side) White_Space? */
static size_t ws_len_at(const char *s, size_t n, size_t i)
{
    const unsigned char *u = (const unsigned char *)s + i;
    size_t left = n - i;
    if (left >= 1 && (u[0] == ' ' || (u[0] >= 9 && u[0] <= 13))) return 1;
    if (left >= 2 && u[0] == 0xC2 && (u[1] == 0x85 || u[1] == 0xA0)) return 2;
    if (left >= 3) {
        uint32_t cp = (uint32_t)(u[0] & 15) << 12 | (uint32_t)(u[1] & 63) << 6 | (u[2] & 63);
        if ((u[0] & 0xF0) == 0xE0 && (u[1] & 0xC0) == 0x80 && (u[2] & 0xC0) == 0x80 &&
            (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
             cp == 0x205F || cp == 0x3000))
            return 3;
    }
    return 0;
}

static size_t ws_len_before(const char *s, size_t n, size_t i)
{
    for (size_t k = 1; k <= 3 && k <= i; k++)
        if (ws_len_at(s, n, i - k) == k) return k;
    return 0;
}

/* Split on the specials of one kind (normalized or not, as HF does in two
 * passes), leftmost match first, the longest on ties. */
static void encode_specials(const zf_bpe *b, const char *text, size_t len, int pass, zf_ids *out, thread_cache *tc)
{
    size_t pos = 0;
    while (pos < len) {
        size_t best = len, blen = 0;
        int bi = -1;
        for (int i = 0; i < b->nspecials; i++) {
            const special *sp = &b->specials[i];
            if (sp->normalized != pass || sp->len > len - pos) continue;
            const char *hit = memmem(text + pos, len - pos, sp->content, sp->len);
            if (!hit) continue;
            size_t at = (size_t)(hit - text);
            if (at < best || (at == best && sp->len > blen)) best = at, blen = sp->len, bi = i;
        }
        if (bi < 0) break;
        size_t a = best, e = best + blen;
        if (b->specials[bi].lstrip)
            for (size_t k; a > pos && (k = ws_len_before(text, len, a)) > 0;) a -= k;
        if (b->specials[bi].rstrip)
            for (size_t k; e < len && (k = ws_len_at(text, len, e)) > 0;) e += k;
        if (pass == 0) encode_specials(b, text + pos, a - pos, 1, out, tc);
        else encode_plain(b, text + pos, a - pos, out, tc);
        zf_ids_push(out, b->specials[bi].id);
        pos = e;
    }
    if (pass == 0) encode_specials(b, text + pos, len - pos, 1, out, tc);
    else encode_plain(b, text + pos, len - pos, out, tc);
}

int zf_bpe_encode(const zf_bpe *b, const char *text, size_t len, int allow_special, zf_ids *out, zf_err *err)
{
    if (!b) return zf_err_set(err, "encode: expected a loaded tokenizer, got NULL");
    if (!text && len) return zf_err_set(err, "encode: expected text, got NULL with length %zu", len);
    thread_cache *tc = get_cache();
    if (allow_special && b->nspecials) encode_specials(b, text, len, 0, out, tc);
    else encode_plain(b, text, len, out, tc);
    return 0;
}

/* --------------------------------------------------------------- decoding */

int zf_bpe_decode(const zf_bpe *b, const int32_t *ids, size_t n, char **out, size_t *out_len, zf_err *err)
{
    *out = NULL;
    *out_len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= b->nvocab || !b->str[id])
            return zf_err_set(err, "decode: ids[%zu]: expected a token id in 0..%d, got %d%s", i, b->nvocab - 1, id,
                              id >= 0 && id < b->nvocab ? " (no token has this id)" : "");
        total += b->dec_off[id + 1] - b->dec_off[id];
    }
    char *buf = zf_xmalloc(total + 1);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t o = b->dec_off[ids[i]], k = b->dec_off[ids[i] + 1] - o;
        memcpy(buf + at, b->dec + o, k);
        at += k;
    }
    buf[at] = 0;
    *out = buf;
    *out_len = at;
    return 0;
}
