/* schema.h - the catalogue of every message on the zeroflow bus.
 *
 * Owns: the single source of truth for message types, their schema version
 * and their fields.  proto/msg.c builds its tables from this list and
 * proto/README.md documents each entry (who sends it, on which socket, what
 * it means); keep the three in step.
 *
 * On the wire a message is one msgpack map {"type": str, "v": int, ...fields}.
 * Each entry below is
 *     ZF_MSG(name, version)                 a message type
 *         ZF_F(field, KIND, REQ|OPT)        its fields, in encoding order
 * KIND is INT (int64), F64 (double), STR (UTF-8 text, no NUL) or BOOL.
 * There is deliberately no binary kind: tensors never travel on the bus,
 * messages carry shared-memory names instead.
 *
 * Any change to a type's fields (added, removed, renamed, different kind,
 * requiredness or meaning) bumps the type's version: every process of a run
 * is built from one tree, so a version mismatch means a stale binary and is
 * rejected with a clear reason.
 *
 * Usage: define the two macros, expand ZF_MSG_SCHEMA(ZF_MSG, ZF_F), undefine.
 * Comments inside the table are fine (they vanish before macro expansion). */
#ifndef ZF_SCHEMA_H
#define ZF_SCHEMA_H

#define ZF_MSG_SCHEMA(MSG, F)                                                   \
    /* ---- control: every daemon's ROUTER socket "ctl-<daemon>" ---- */        \
    MSG(ping, 1)                                                                \
    MSG(pong, 1)                                                                \
        F(daemon, STR, REQ)                                                     \
        F(state, STR, REQ)                                                      \
        F(pid, INT, REQ)                                                        \
    MSG(shutdown, 1)                                                            \
        F(reason, STR, OPT)                                                     \
    MSG(ok, 1)                                                                  \
        F(detail, STR, OPT)                                                     \
    MSG(error, 1)                                                               \
        F(message, STR, REQ)                                                    \
                                                                                \
    /* ---- events: each process's PUB socket "events-<proc>" ---- */           \
    MSG(state, 1)                                                               \
        F(daemon, STR, REQ)                                                     \
        F(state, STR, REQ) /* starting|ready|running|stopping|stopped|failed */ \
        F(pid, INT, REQ)                                                        \
        F(detail, STR, OPT)                                                     \
    MSG(step, 1)                                                                \
        F(step, INT, REQ)                                                       \
        F(total, INT, REQ)                                                      \
        F(epoch, INT, REQ)                                                      \
        F(loss, F64, REQ)                                                       \
        F(lr, F64, REQ)                                                         \
        F(loss_scale, F64, REQ)                                                 \
        F(tokens_per_s, F64, REQ)                                               \
        F(eta_s, F64, REQ)                                                      \
        F(step_s, F64, OPT)                                                     \
        F(data_wait_s, F64, OPT)                                                \
        F(skipped, BOOL, OPT)                                                   \
        F(grad_norm, F64, OPT)                                                  \
        F(forward_s, F64, OPT)                                                  \
        F(backward_s, F64, OPT)                                                 \
        F(optimizer_s, F64, OPT)                                                \
        F(transfer_s, F64, OPT)                                                 \
        F(comm_s, F64, OPT)                                                     \
    MSG(eval, 1)                                                                \
        F(step, INT, REQ)                                                       \
        F(split, STR, REQ)                                                      \
        F(loss, F64, REQ)                                                       \
        F(ppl, F64, REQ)                                                        \
        F(tokens, INT, REQ)                                                     \
    MSG(sample, 1)                                                              \
        F(step, INT, REQ)                                                       \
        F(prompt, STR, REQ)                                                     \
        F(text, STR, REQ)                                                       \
    MSG(log, 1)                                                                 \
        F(level, STR, REQ)                                                      \
        F(message, STR, REQ)                                                    \
    MSG(tok_stats, 1)                                                           \
        F(worker, STR, REQ)                                                     \
        F(docs, INT, REQ)                                                       \
        F(bytes, INT, REQ)                                                      \
        F(mb_per_s, F64, REQ)                                                   \
    MSG(tok_progress, 1) /* tokenizerd coordinator, about once a second */     \
        F(jobs_done, INT, REQ)                                                  \
        F(jobs_total, INT, REQ)                                                 \
        F(jobs_leased, INT, REQ)                                                \
        F(docs_done, INT, REQ)                                                  \
        F(docs_total, INT, REQ)                                                 \
        F(bytes_done, INT, REQ)                                                 \
        F(bytes_total, INT, REQ)                                                \
        F(mb_per_s, F64, REQ) /* bytes_done over seconds */                     \
        F(seconds, F64, REQ)  /* since the first job was leased */              \
        F(workers, INT, REQ)  /* workers heard from within the lease timeout */ \
        F(requeued, INT, REQ) /* leases taken back (worker left or went silent) */\
        F(duplicates, INT, REQ) /* late results of already finished jobs */     \
    MSG(ckpt_saved, 1)                                                          \
        F(step, INT, REQ)                                                       \
        F(path, STR, REQ)                                                       \
        F(bytes, INT, REQ)                                                      \
        F(seconds, F64, REQ)                                                    \
                                                                                \
    /* ---- tokenizer work: ROUTER "tok-work" (coordinator) / DEALER (workers) */\
    MSG(tok_want, 1)      /* worker: lease me one job */                        \
        F(worker, STR, REQ)                                                     \
        F(pid, INT, REQ)                                                        \
        F(tokenizer, STR, REQ) /* zf_bpe_hash, 16 hex digits */                 \
    MSG(tok_job, 1)                                                             \
        F(job, INT, REQ)                                                        \
        F(split, STR, REQ)                                                      \
        F(text_shm, STR, REQ)                                                   \
        F(docs_shm, STR, REQ) /* int64 document start offsets into text_shm */  \
        F(offset, INT, REQ)   /* index of the job's first document */           \
        F(length, INT, REQ)   /* bytes of text in the job */                    \
        F(docs, INT, REQ)     /* documents in the job */                        \
    MSG(tok_result, 1)                                                          \
        F(job, INT, REQ)                                                        \
        F(worker, STR, REQ)                                                     \
        F(shm, STR, REQ)                                                        \
        F(count, INT, REQ)                                                      \
        F(docs, INT, REQ)                                                       \
        F(bytes, INT, REQ)                                                      \
    MSG(tok_heartbeat, 1) /* worker, every 0.5 s, busy or idle */               \
        F(worker, STR, REQ)                                                     \
        F(pid, INT, REQ)                                                        \
        F(job, INT, REQ)      /* job being worked on, -1 when idle */           \
    MSG(tok_bye, 1)       /* worker leaving (SIGTERM/SIGINT) */                 \
        F(worker, STR, REQ)                                                     \
        F(pid, INT, REQ)                                                        \
        F(job, INT, REQ)      /* job handed back unfinished, -1 if none */      \
    /* tokenizerd control */                                                    \
    MSG(tokens_req, 1)                                                          \
        F(split, STR, REQ)                                                      \
    MSG(tokens_ready, 1)                                                        \
        F(split, STR, REQ)                                                      \
        F(shm, STR, REQ)                                                        \
        F(count, INT, REQ)                                                      \
        F(docs, INT, REQ)                                                       \
        F(vocab_size, INT, REQ)                                                 \
                                                                                \
    /* ---- loaderd control ---- */                                             \
    MSG(split_info_req, 1)                                                      \
        F(split, STR, REQ)                                                      \
    MSG(split_info, 1)                                                          \
        F(split, STR, REQ)                                                      \
        F(sequences, INT, REQ)                                                  \
        F(steps_per_epoch, INT, REQ)                                            \
        F(tokens, INT, REQ)                                                     \
    MSG(batch_req, 1)                                                           \
        F(rank, INT, REQ)                                                       \
        F(split, STR, REQ)                                                      \
        F(epoch, INT, REQ)                                                      \
        F(step, INT, REQ)                                                       \
        F(micro, INT, REQ)                                                      \
    MSG(batch_ready, 1)                                                         \
        F(slot, INT, REQ)                                                       \
        F(shm, STR, REQ)                                                        \
        F(generation, INT, REQ)                                                 \
        F(split, STR, REQ)                                                      \
        F(epoch, INT, REQ)                                                      \
        F(step, INT, REQ)                                                       \
        F(micro, INT, REQ)                                                      \
        F(rows, INT, REQ)                                                       \
        F(cols, INT, REQ)                                                       \
    MSG(batch_release, 1)                                                       \
        F(slot, INT, REQ)                                                       \
        F(generation, INT, REQ)                                                 \
                                                                                \
    /* ---- offloadd control ---- */                                            \
    MSG(opt_init, 1)                                                            \
        F(rank, INT, REQ)                                                       \
        F(world, INT, REQ)                                                      \
        F(params_shm, STR, REQ)                                                 \
        F(grads_shm, STR, REQ)                                                  \
        F(layout_shm, STR, REQ) /* int64 rows (offset, numel, decay) per tensor */\
        F(numel, INT, REQ)                                                      \
        F(shard_offset, INT, REQ)                                               \
        F(shard_numel, INT, REQ)                                                \
        F(resume_dir, STR, OPT)                                                 \
        F(params_base, INT, OPT) /* ZeRO: params_shm holds [base, base+len) */  \
        F(grads_base, INT, OPT)  /* ZeRO: grads_shm holds [base, base+len) */   \
    MSG(grads_ready, 1)                                                         \
        F(rank, INT, REQ)                                                       \
        F(step, INT, REQ)                                                       \
        F(grad_scale, F64, REQ)                                                 \
        F(grad_norm, F64, OPT) /* global norm of the unscaled grads */          \
        F(pipelined, BOOL, OPT) /* chunked update, progress word, no params */  \
    MSG(params_updated, 1)                                                      \
        F(rank, INT, REQ)                                                       \
        F(step, INT, REQ)                                                       \
        F(lr, F64, REQ)                                                         \
        F(seconds, F64, REQ)                                                    \
        F(grad_norm, F64, OPT)                                                  \
        F(overflow, BOOL, OPT) /* non-finite grads: update skipped */           \
    MSG(opt_state_req, 1)                                                       \
        F(rank, INT, REQ)                                                       \
        F(step, INT, OPT) /* GPU optimizer: adopt this applied-step count */    \
    MSG(opt_state, 1)                                                           \
        F(master_shm, STR, REQ)                                                 \
        F(m_shm, STR, REQ)                                                      \
        F(v_shm, STR, REQ)                                                      \
        F(shard_offset, INT, REQ)                                               \
        F(shard_numel, INT, REQ)                                                \
        F(step, INT, REQ)                                                       \
        F(progress_shm, STR, OPT) /* the update's progress word */              \
                                                                                \
    /* ---- ckptd control ---- */                                               \
    MSG(ckpt_save, 1)                                                           \
        F(step, INT, REQ)                                                       \
        F(meta_json, STR, REQ)                                                  \
        F(numel, INT, REQ)                                                      \
        F(opt_rank_count, INT, REQ)                                             \
        F(final, BOOL, OPT)                                                     \
        F(rank_first, INT, OPT)                                                 \
        F(rank_count, INT, OPT)                                                 \
        F(node_first_ranks, STR, OPT)                                           \
        F(run_nonce, STR, OPT)                                                  \
    MSG(ckpt_snapshot, 1)                                                       \
        F(step, INT, REQ)                                                       \
    MSG(ckpt_wait, 1)

#endif
