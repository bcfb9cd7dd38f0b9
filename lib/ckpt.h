/* ckpt.h - the checkpoint format: atomic, compressed, verified.
 *
 * Owns: the on-disk layout of checkpoints, writing them so that a crash at
 * any point leaves the previous checkpoint and `latest` intact, finding them
 * again, and reading them back with every byte verified.
 *
 * Layout:
 *   OUTPUT_DIR/checkpoints/latest           text: the step dir name + "\n"
 *   OUTPUT_DIR/checkpoints/step_00000100/   one checkpoint:
 *       meta.json    the caller's JSON object, to which the writer adds
 *                    "format": "zeroflow-checkpoint", "format_version": 1,
 *                    "step": N and "tensors": {NAME: {"file", "dtype",
 *                    "numel", "bytes"}} and "files": {NAME: {"bytes"}}
 *                    (overwriting those keys if present)
 *       NAME.zft     one tensor blob (format below)
 *       other files  copied verbatim by zf_ckpt_add_file (config.json, ...)
 *
 * NAME.zft, all integers little-endian:
 *   offset size
 *    0     8   magic "ZFTENSOR"
 *    8     4   u32 version (1)
 *   12     4   u32 dtype (zf_dtype of shm.h: 1 = f32, 2 = f16, 3 = bf16, ...)
 *   16     8   u64 numel
 *   24     8   u64 raw_bytes (numel * dtype size)
 *   32     8   u64 chunk_bytes: raw bytes per frame (the last may be shorter)
 *   40     4   u32 nframes = ceil(raw_bytes / chunk_bytes) (0 when empty)
 *   44     4   u32 FNV-1a 32 of the frame index
 *   48     4   u32 FNV-1a 32 of bytes 0..47
 *   52     4   reserved, 0
 *   56     8*nframes  frame index: u64 compressed size of each frame
 *   then the frames back to back: each a complete standard LZ4 frame
 *   (lz4frame.h; content size, content checksum and block checksums on,
 *   256 KiB independent blocks) holding one chunk of the raw bytes.
 * Frames are compressed and decompressed in parallel.  The bytes after the
 * index are a valid concatenated LZ4 stream: `tail -c +$((57 + 8*nframes))
 * NAME.zft | lz4 -d` restores the raw tensor.
 *
 * Writing: into checkpoints/step_XXXXXXXX.tmp.PID/, each file fsynced, the
 * dir fsynced, renamed to its final name (atomically exchanged with
 * renameat2(RENAME_EXCHANGE) if that step already exists; on file systems
 * without it the old one is first moved aside to NAME.tmp.PID.old, which
 * readers follow and the next writer restores if the writer died in
 * between), the parent fsynced, then `latest` replaced by
 * write-temp + fsync + rename + fsync.  Older checkpoints beyond keep_last
 * are removed afterwards.  Stale *.tmp.PID entries whose process is dead
 * are removed by the next zf_ckpt_begin.
 *
 * Test hook: env ZF_CKPT_TEST_CRASH = "mid_tensor" (after the first frame of
 * a tensor file is written), "before_rename" or "before_latest" makes the
 * writing process SIGKILL itself at that point. */
#ifndef ZF_CKPT_H
#define ZF_CKPT_H

#include <stddef.h>
#include "log.h"
#include "shm.h"   /* zf_dtype */

#define ZF_CKPT_FORMAT "zeroflow-checkpoint"
#define ZF_CKPT_FORMAT_VERSION 1
#define ZF_CKPT_TENSOR_VERSION 1u

typedef struct zf_ckpt_writer zf_ckpt_writer;

/* Start checkpoint `step` (>= 0) under OUTPUT_DIR/checkpoints (created). */
int  zf_ckpt_begin(const char *output_dir, long step, zf_ckpt_writer **w, zf_err *err);
/* Compress and write now (the caller may reuse the buffer after).  Names:
 * 1..200 characters of [A-Za-z0-9._-], not starting with '.', unique. */
int  zf_ckpt_add_tensor(zf_ckpt_writer *w, const char *name, const float *data, size_t numel, zf_err *err);
/* Any dtype of shm.h (bytes = numel * zf_dtype_size(dtype)). */
int  zf_ckpt_add_raw(zf_ckpt_writer *w, const char *name, zf_dtype dtype, const void *data, size_t numel,
                     zf_err *err);
/* One tensor whose bytes lie in several buffers, in order (a model placed
 * from the ranks' partitions without assembling it: the file is the same as
 * zf_ckpt_add_raw's of their concatenation).  Each piece's bytes a multiple
 * of the dtype's size. */
typedef struct zf_ckpt_piece {
    const void *data;
    size_t bytes;
} zf_ckpt_piece;
int  zf_ckpt_add_pieces(zf_ckpt_writer *w, const char *name, zf_dtype dtype, const zf_ckpt_piece *pieces,
                        int npieces, zf_err *err);
/* Take tensor `name` of another checkpoint directory (a node's part of a
 * checkpoint) into this one as it is: its header, frame index and size
 * checked now, the file hard-linked (copied across file systems); its
 * frames are verified when read, as any tensor's. */
int  zf_ckpt_adopt_tensor(zf_ckpt_writer *w, const char *name, const char *src_dir, zf_err *err);
/* Copy the file at src_path verbatim into the checkpoint as `name` (same
 * name rules; not "meta.json" nor ending in ".zft"), e.g. config.json and
 * the tokenizer files, so that a checkpoint is also a model directory.
 * Listed in meta.json under "files": {NAME: {"bytes": N}}. */
int  zf_ckpt_add_file(zf_ckpt_writer *w, const char *name, const char *src_path, zf_err *err);
/* Whole meta.json content: must be a JSON object (validated now). */
int  zf_ckpt_set_meta(zf_ckpt_writer *w, const char *json_text, zf_err *err);
/* Write meta.json, fsync, rename, update `latest`, prune to the newest
 * keep_last step dirs (0 = keep all; the new one is always kept).  final_path
 * (may be NULL) receives the step dir.  Always consumes the writer: on
 * failure the temp dir is removed and the previous checkpoint stays latest.
 * A writer on which an add failed can only fail to commit. */
int  zf_ckpt_commit(zf_ckpt_writer *w, int keep_last, char *final_path, size_t n, zf_err *err);
/* Remove the temp dir and free the writer (NULL is fine). */
void zf_ckpt_abort(zf_ckpt_writer *w);
/* Remove a directory this module wrote (a step dir that is not `latest`'s,
 * a part of a checkpoint once taken in) and everything in it; links are
 * removed, not followed.  0, or -1 with err. */
int  zf_ckpt_remove_dir(const char *dir, zf_err *err);

/* A step dir (has meta.json), or a checkpoints dir / an output dir: follow
 * its `latest`. */
int  zf_ckpt_resolve(const char *path_or_output_dir, char *ckpt_dir, size_t n, zf_err *err);
/* meta.json text (malloc'd, caller frees), checked to be JSON of this format. */
int  zf_ckpt_read_meta(const char *ckpt_dir, char **json_text, zf_err *err);
/* dtype and numel of NAME.zft (header checked). */
int  zf_ckpt_tensor_info(const char *ckpt_dir, const char *name, zf_dtype *dtype, size_t *numel, zf_err *err);
/* Verifies header, sizes, every block and content checksum; a truncated or
 * corrupt file gives an error naming the file and the byte offset. */
int  zf_ckpt_read_tensor(const char *ckpt_dir, const char *name, float *dst, size_t expected_numel, zf_err *err);
int  zf_ckpt_read_raw(const char *ckpt_dir, const char *name, zf_dtype dtype, void *dst, size_t expected_numel,
                      zf_err *err);
/* Elements [lo, lo + n) of an fp32 tensor of expected_numel elements: only
 * the frames holding them are read and verified (a rank's slice of a model,
 * without the whole in memory). */
int  zf_ckpt_read_tensor_range(const char *ckpt_dir, const char *name, float *dst, size_t expected_numel, size_t lo,
                               size_t n, zf_err *err);

#endif
