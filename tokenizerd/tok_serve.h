/* tok_serve.h - tokenizerd's pipeline roles.
 *
 * Owns: turning the dataset into token arrays in shared memory for loaderd.
 *   prepare   (before the daemons start) resolve the dataset (writing the
 *             embedded demo corpus when asked), find or train the tokenizer
 *             (cached by dataset and vocabulary size) and print its directory.
 *   serve     the coordinator: copies each split's documents into shared
 *             memory ("text-<split>" bytes + "docs-<split>" offsets), cuts
 *             them into jobs (ranges of documents; large first, small at the
 *             end: about 1/64 of the text left, 32..256 KiB), leases up to
 *             four jobs at a time to each worker on the ROUTER socket
 *             "tok-work" (the others wait at the worker while it encodes,
 *             so it does not wait for the coordinator between jobs; a
 *             (k+1)-th only while more than k jobs per worker are pending),
 *             concatenates the results in document order into
 *             "tokens-<split>" (int32, <|endoftext|> after every document)
 *             in place while the workers work: the segment is made at load
 *             with room for bytes + 2 * docs tokens (the most byte-level BPE
 *             can give), each result is copied in once every earlier job of
 *             its split is in (about 1 MB per turn of its loop, so that it
 *             answers workers meanwhile), and the complete split is shrunk
 *             to its real count (zf_shm_shrink) before anyone is told of it;
 *             logs an FNV-1a hash of each split's tokens and answers
 *             loaderd's `tokens_req` once a split is complete.  Publishes
 *             `tok_progress` about once a second.
 *   worker    DEALER to "tok-work": asks once (`tok_want`), then encodes
 *             each leased job, writes its ids into a slot of its own result
 *             arena ("tokout-<id>-<pid>", made once; a result too large for a
 *             slot, or finding none free, gets a fresh "tokres-*" segment)
 *             and answers with a `tok_result` naming the segment; each
 *             result stands for the next ask.  The coordinator copies a
 *             slot's ids into "tokens-<split>" when the job's turn comes and
 *             frees the slot through the arena's slot table (no message).  A
 *             job it cannot do (its text is gone) goes back as a tok_result
 *             with count -1.  A heartbeat thread sends
 *             `tok_heartbeat` every 0.5 s; SIGTERM/SIGINT hand the current
 *             job back (`tok_bye`) and exit 0.  Any number run at once and
 *             may join or leave at any time (by hand too:
 *             tokenizerd worker --worker_id N --run_dir D --run_id ID --tokenizer DIR).
 * Fault model: a worker silent for 3 s loses its leases (the jobs are
 * re-queued); the first result of a job wins and later ones are dropped
 * (their slot freed or their segment unlinked); so tokens never depend on
 * who did what.
 *
 * Test hooks (environment; for tests and benchmarks, not for production):
 *   ZF_TOK_TEST_DELAY_MS=N    a worker waits N ms at the start of every job
 *                             (a stop signal cuts the wait and hands the job back)
 *   ZF_TOK_TEST_JOB_BYTES=N   the coordinator cuts jobs of about N bytes
 *                             instead of the sizes above
 *   ZF_TOK_TEST_LEASE_DEPTH=N at most N jobs leased to a worker at once (not 4)
 *   ZF_TOK_WORKER_NICE=N      a worker's encoding thread runs at nice N (off) */
#ifndef ZF_TOK_SERVE_H
#define ZF_TOK_SERVE_H

int zf_tok_prepare_main(int argc, char **argv);
int zf_tok_serve_main(int argc, char **argv);
int zf_tok_worker_main(int argc, char **argv);

#endif
