/* tok_record.c - see tok_record.h. */
#include "tok_record.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpe.h"
#include "dataset.h"
#include "hf_model.h"
#include "model_source.h"
#include "paths.h"
#include "token_stream.h"

/* ------------------------------------------------------------- recording */

/* One recording per coordinator process. */
static struct {
    zf_tokstr_writer *w;
    char tmp[ZF_OPT_STR_MAX + 8];
    int written;
    int32_t eot;
    uint64_t tokens;
} g_rec;

static int fsync_parent(const char *path, zf_err *err)
{
    char dir[ZF_OPT_STR_MAX + 8];
    zf_path_parent(path, dir, sizeof dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return zf_err_set(err, "%s: cannot open the directory to fsync it: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? 0 : zf_err_set(err, "%s: fsync failed: %s", dir, strerror(errno));
}

int zf_tok_record_split(const zf_options *o, int sp, const int32_t *tokens, size_t n, size_t ndocs, zf_err *err)
{
    if (!g_rec.w) {
        if (g_rec.written) return zf_err_set(err, "--record %s: every split is already recorded", o->record);
        zf_bpe *bpe = NULL;
        if (zf_bpe_load(o->tokenizer, &bpe, err) != 0) return -1;
        zf_tokstr_vocab v = { zf_bpe_hash(bpe), (uint32_t)zf_bpe_vocab_size(bpe), zf_bpe_eot_id(bpe) };
        zf_bpe_free(bpe);
        if (v.eot < 0) return zf_err_set(err, "--record: %s: expected an <|endoftext|> token", o->tokenizer);
        g_rec.eot = v.eot;
        snprintf(g_rec.tmp, sizeof g_rec.tmp, "%s.tmp", o->record);
        if (zf_tokstr_create(g_rec.tmp, &v, ZF_SPLIT_COUNT, 0, &g_rec.w, err) != 0) return -1;
    }
    /* Documents end at their <|endoftext|> (workers append one to each and
     * encode text with special tokens off, so there is no other). */
    uint64_t *ends = zf_xmalloc((ndocs + 1) * sizeof *ends);
    size_t nd = 0;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] == g_rec.eot) {
            if (nd == ndocs) break;
            ends[nd++] = (uint64_t)i + 1;
        }
    int rc = 0;
    if (nd != ndocs || (nd && ends[nd - 1] != n))
        rc = zf_err_set(err, "--record %s: %s split: expected %zu documents each ending with <|endoftext|>, found %zu",
                        o->record, zf_split_name((zf_split)sp), ndocs, nd);
    if (rc == 0) rc = zf_tokstr_append(g_rec.w, sp, tokens, n, ends, ndocs, err);
    free(ends);
    if (rc != 0) {
        zf_tokstr_abort(g_rec.w);
        g_rec.w = NULL;
        return -1;
    }
    g_rec.tokens += n;
    if (++g_rec.written < ZF_SPLIT_COUNT) return 0;
    zf_tokstr_writer *w = g_rec.w;
    g_rec.w = NULL;
    if (zf_tokstr_finish(w, err) != 0) return -1;
    if (rename(g_rec.tmp, o->record) != 0) {
        int e = errno;
        unlink(g_rec.tmp);
        return zf_err_set(err, "--record: cannot rename %s to %s: %s", g_rec.tmp, o->record, strerror(e));
    }
    if (fsync_parent(o->record, err) != 0) return -1;
    zf_info("recorded %llu tokens of %d splits to %s", (unsigned long long)g_rec.tokens, ZF_SPLIT_COUNT, o->record);
    return 0;
}

/* ------------------------------------------------------------- replaying */

static int alpha(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

/* A preset's tokenizer was trained on the dataset and cached as
 * CACHE/tokenizers/bpe-VOCAB-KEY: find the one the streams were made with. */
static int cached_by_hash(const zf_options *o, char *out, size_t n, zf_err *err)
{
    zf_tokstr *ts = NULL;
    if (zf_tokstr_open(o->replay, NULL, NULL, &ts, err) != 0) return -1;
    uint64_t want = zf_tokstr_vocab_of(ts)->hash;
    zf_tokstr_close(ts);
    char cache[900], dir[1000];
    zf_cache_dir(cache, sizeof cache);
    snprintf(dir, sizeof dir, "%s/tokenizers", cache);
    struct dirent **ents = NULL;
    int k = scandir(dir, &ents, NULL, alpha);
    int found = 0;
    for (int i = 0; i < k; i++) {
        char p[2048];
        if (!found && !strncmp(ents[i]->d_name, "bpe-", 4) && !strstr(ents[i]->d_name, ".corpus.")) {
            snprintf(p, sizeof p, "%s/%s", dir, ents[i]->d_name);
            zf_bpe *bpe = NULL;
            zf_err ignore;
            if (zf_bpe_load(p, &bpe, &ignore) == 0) {
                if (zf_bpe_hash(bpe) == want && strlen(p) < n) {
                    snprintf(out, n, "%s", p);
                    found = 1;
                }
                zf_bpe_free(bpe);
            }
        }
        free(ents[i]);
    }
    free(ents);
    if (found) return 0;
    return zf_err_set(err, "--replay %s: no cached tokenizer in %s has the streams' vocabulary hash %016llx; pass "
                      "--tokenizer DIR (the tokenizer they were recorded with)", o->replay, dir,
                      (unsigned long long)want);
}

int zf_tok_replay_tokenizer(const zf_options *o, char *out, size_t n, zf_err *err)
{
    char path[1024];
    int is_preset = 0;
    if (o->tokenizer[0]) snprintf(path, sizeof path, "%s", o->tokenizer);
    else if (!zf_is_checkpoint(o->model_name, path, sizeof path)) {
        if (zf_model_resolve(o->model_name, path, sizeof path, &is_preset, err) != 0) return -1;
        if (is_preset) return cached_by_hash(o, out, n, err);
    }
    if (strlen(path) >= n) return zf_err_set(err, "%s: path too long", path);
    snprintf(out, n, "%s", path);
    return 0;
}

int zf_tok_replay_check(const zf_options *o, const char *tok_dir, zf_err *err)
{
    zf_bpe *bpe = NULL;
    if (zf_bpe_load(tok_dir, &bpe, err) != 0) return -1;
    uint64_t hash = zf_bpe_hash(bpe);
    int vocab = zf_bpe_vocab_size(bpe), eot = zf_bpe_eot_id(bpe);
    zf_bpe_free(bpe);
    char who[1100];
    snprintf(who, sizeof who, "tokenizer %.1000s", tok_dir);
    zf_tokstr *ts = NULL;
    if (zf_tokstr_open(o->replay, &hash, who, &ts, err) != 0) return -1;
    const zf_tokstr_vocab *v = zf_tokstr_vocab_of(ts);
    int rc = 0;
    if ((int64_t)v->size != vocab || v->eot != eot)
        rc = zf_err_set(err, "--replay %s: vocabulary: expected %d ids with <|endoftext|> = %d (%s), got %u and %d",
                        o->replay, vocab, eot, who, v->size, v->eot);
    for (int sp = 0; sp < ZF_SPLIT_COUNT && rc == 0; sp++)
        if (zf_tokstr_nsegments(ts, sp) == 0)
            rc = zf_err_set(err, "--replay %s: expected a segment of every split, found none of the %s split", o->replay,
                            zf_split_name((zf_split)sp));
    if (rc == 0) rc = zf_tokstr_verify(ts, err);
    zf_tokstr_close(ts);
    return rc;
}

int zf_tok_replay_prepare(const zf_options *o)
{
    zf_err err;
    char tok[1024];
    if (zf_tok_replay_tokenizer(o, tok, sizeof tok, &err) != 0) zf_die("%s", err.msg);
    zf_bpe *bpe = NULL;
    if (zf_bpe_load(tok, &bpe, &err) != 0) zf_die("%s", err.msg);
    if (zf_bpe_eot_id(bpe) < 0) zf_die("%s: expected an <|endoftext|> token in the vocabulary", tok);
    uint64_t hash = zf_bpe_hash(bpe);
    zf_info("replaying %s with tokenizer %s: %d tokens (no dataset, no tokenizer workers)", o->replay, tok,
            zf_bpe_vocab_size(bpe));
    zf_bpe_free(bpe);
    zf_tokstr *ts = NULL; /* headers only: `trainer check` verified the frames */
    if (zf_tokstr_open(o->replay, &hash, tok, &ts, &err) != 0) zf_die("%s", err.msg);
    zf_tokstr_close(ts);
    printf("%s\n", tok);
    return 0;
}
