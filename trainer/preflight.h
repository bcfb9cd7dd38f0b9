/* preflight.h - `trainer check`: validate every input of a run before any
 * process starts.
 *
 * Owns: the checks that turn bad input into one line naming the file and
 * field (config JSON syntax with line:column, ZeRO stage, batch-size
 * arithmetic, model and dataset paths, tokenizer files that do not match,
 * max_length against the model, resume checkpoint presence and world size, --replay
 * streams against the tokenizer, the --record directory). */
#ifndef ZF_PREFLIGHT_H
#define ZF_PREFLIGHT_H

#include "options.h"

/* 0 if the run can start; else -1 with the first problem in err. */
int zf_preflight(const zf_options *o, zf_err *err);

/* A checkpoint dir resumes into `world` ranks: the world that saved it, or
 * another with the same global batch (sequences per optimizer step, micro x
 * GA x world, recorded in meta.json's loader.global_batch): the data
 * position, the schedule and the loss scaler count optimizer steps, the
 * model tensor is whole, and offloadd re-slices the saved optimizer
 * partitions for the new ranks.  *saved_world (may be NULL) receives the
 * saving world size. */
int zf_resume_check_world(const char *dir, int world, int micro, int ga, int *saved_world, zf_err *err);

#endif
