/* options.h - the run flags shared by every zeroflow process.
 *
 * Owns: the one command-line parser of a run.  The supervisor starts every
 * daemon and the trainer with the same flags, so each process parses them
 * here and sees the same values.  The flags mirror the DeepSpeed / Hugging
 * Face training template; ZF_OPTIONS_TABLE below is the single list from
 * which the struct, the defaults, the parser, --help and the JSON dump are
 * all generated.
 *
 * Syntax: `--flag value` and `--flag=value`; booleans also as a bare
 * `--flag` (true) or `--flag true|false`; --resume is a boolean or a path
 * (`--resume`, `--resume PATH`, `--resume=PATH`).  `--` ends the flags.  A
 * flag given twice keeps the last value.  Errors are one line naming the
 * flag and what was expected. */
#ifndef ZF_OPTIONS_H
#define ZF_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

#include "log.h"

#define ZF_OPT_STR_MAX 1024

/* X(KIND, name, default, min, max, metavar, help)
 * KIND: STR (char[]), INT (int), I64 (int64_t), F64 (double), BOOL (int 0/1),
 * RESUME (int resume + char resume_path[]).  min/max bound numbers. */
#define ZF_OPTIONS_TABLE(X)                                                                                         \
    X(STR, model_name, "zf-demo", 0, 0, "NAME",                                                                    \
      "model: a preset (zf-demo, zf-tiny, ...), a Hugging Face GPT-2 directory or a zeroflow checkpoint")          \
    X(STR, dataset_name, "demo", 0, 0, "NAME", "dataset: demo (embedded generator), a directory, file, glob or fetched hub name")  \
    X(STR, dataset_config, "", 0, 0, "TEXT", "dataset config / subdirectory; for demo: seed=N,bytes=N")            \
    X(STR, text_field, "text", 0, 0, "NAME", "field holding the text in .jsonl datasets")                     \
    X(INT, batch_size, "8", 1, 65536, "N", "micro batch per GPU/rank (fills train_micro_batch_size_per_gpu \"auto\")") \
    X(INT, max_length, "128", 1, 1048576, "N", "tokens per training sequence")                                    \
    X(INT, num_epochs, "1", 0, 1000000, "N", "epochs over the training split")                                    \
    X(I64, seed, "42", 0, INT64_MAX, "N", "seed of initialisation, shuffling, dropout and sampling")              \
    X(STR, deepspeed_config, "", 0, 0, "PATH", "DeepSpeed JSON config (run_pipeline.sh also takes zero-2 / zero-3)") \
    X(BOOL, save_checkpoint, "false", 0, 0, "", "save checkpoints (at --save_every steps and at the end)")         \
    X(STR, output_dir, "out", 0, 0, "DIR", "checkpoints, metrics.jsonl and logs")                                 \
    X(STR, generation_prompt, "Once upon a time", 0, 0, "TEXT", "prompt of the samples generated during training") \
    X(I64, max_train_steps, "0", 0, INT64_MAX, "N", "optimizer steps to run (0 = --num_epochs full epochs)")       \
    X(INT, max_eval_steps, "20", 0, INT32_MAX, "N", "batches per evaluation (0 = the whole split)")               \
    X(INT, tokenizer_workers, "2", 1, 64, "N", "tokenizer worker processes")                                      \
    X(INT, prefetch_depth, "2", 1, 64, "N", "optimizer steps of batches loaderd fills ahead of each rank")          \
    X(RESUME, resume, "false", 0, 0, "[PATH]", "resume from PATH, or from the latest checkpoint in --output_dir") \
    X(INT, save_every, "0", 0, INT32_MAX, "N", "checkpoint every N steps with --save_checkpoint (0 = end only)")  \
    X(INT, num_gpus, "0", 0, 64, "N", "GPUs to train on (0 = CPU)")                                               \
    X(BOOL, gradient_checkpointing, "false", 0, 0, "", "GPU: keep each block's input only, recompute it in backward (less memory)") \
    X(INT, world_size, "1", 1, 1024, "N", "data-parallel ranks")                                                  \
    X(INT, max_new_tokens, "64", 0, 1048576, "N", "tokens generated per sample")                                  \
    X(F64, temperature, "0.8", 0, 100, "X", "sampling temperature (0 = greedy)")                                  \
    X(INT, top_k, "40", 0, INT32_MAX, "N", "sample from the k most likely tokens (0 = all)")                      \
    X(F64, top_p, "0.95", 0, 1, "X", "nucleus sampling mass (1 = off)")                                           \
    X(INT, eval_every, "0", 0, INT32_MAX, "N", "evaluate every N steps (0 = at the end only)")                    \
    X(INT, log_every, "10", 1, INT32_MAX, "N", "progress line every N steps")                                     \
    X(INT, vocab_size, "4096", 256, 1048576, "N", "vocabulary of the tokenizer trained for a preset model")        \
    X(STR, tokenizer, "", 0, 0, "PATH", "tokenizer directory (default: the model's, or the cached trained one)")  \
    X(STR, record, "", 0, 0, "PATH", "also write the tokenized splits to this stream file (for --replay)")        \
    X(STR, replay, "", 0, 0, "PATH[,PATH...]", "train from recorded stream files (globs too) with no tokenizer running") \
    X(STR, export_hf, "", 0, 0, "DIR", "at the end, also write a Hugging Face GPT-2 directory here")             \
    X(STR, run_dir, "", 0, 0, "DIR", "(internal, set by the pipeline) bus socket directory")                      \
    X(STR, run_id, "", 0, 0, "ID", "(internal, set by the pipeline) run id, names shared memory")                \
    X(INT, rank, "0", 0, 1023, "N", "(internal, set by the pipeline) this process's rank")                      \
    X(INT, local_rank, "-1", -1, 1023, "N", "(internal, set by the pipeline) the rank's index on its node (-1: one node)")

#define ZF_OPT_FIELD_STR(name) char name[ZF_OPT_STR_MAX];
#define ZF_OPT_FIELD_INT(name) int name;
#define ZF_OPT_FIELD_I64(name) int64_t name;
#define ZF_OPT_FIELD_F64(name) double name;
#define ZF_OPT_FIELD_BOOL(name) int name;
#define ZF_OPT_FIELD_RESUME(name) int name; char name##_path[ZF_OPT_STR_MAX];

typedef struct zf_options {
#define ZF_OPT_X(kind, name, def, lo, hi, meta, help) ZF_OPT_FIELD_##kind(name)
    ZF_OPTIONS_TABLE(ZF_OPT_X)
#undef ZF_OPT_X
    int help;        /* --help / -h was given */
    uint64_t given;  /* bit i: flag i of the table was on the command line */
} zf_options;

void zf_options_defaults(zf_options *o);

/* Parse argv[1..argc-1] over o (call zf_options_defaults first).  Parsing
 * stops at the first argument that is not a flag (or after "--"); its index
 * (or argc) goes to *first_positional.  With first_positional NULL such an
 * argument is an error.  0, or -1 with one line in err, e.g.
 *   "--batch_size: expected an integer in [1, 65536], got \"many\"". */
int zf_options_parse(int argc, char **argv, zf_options *o, int *first_positional, zf_err *err);

/* 1 if --flag was given on the command line (flag without the dashes). */
int zf_options_given(const zf_options *o, const char *flag);

/* Every flag with its default and meaning, one per line ("  --flag ..."),
 * aligned as a table. */
void zf_options_print_help(FILE *f, const char *program);
/* The same as a Markdown table (for README files). */
void zf_options_print_markdown(FILE *f);

/* All values as one JSON object (checkpoint metadata); malloc'd. */
char *zf_options_to_json(const zf_options *o);

#endif
