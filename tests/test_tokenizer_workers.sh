#!/usr/bin/env bash
# Tokenizer workers join and leave a running pipeline without changing a
# single token: the coordinator logs an FNV-1a hash of every split's token
# array, and every scenario must log the same lines as a run without joins
# or leaves.  Workers are slowed down with the test hooks
# ZF_TOK_TEST_DELAY_MS (per job) and ZF_TOK_TEST_JOB_BYTES (smaller jobs).
#   1. reference: 2 workers, nothing happens;
#   2. a 3rd worker started by hand joins and takes jobs, then worker 1 gets
#      SIGTERM mid-job: it hands its job back, the supervisor logs it and the
#      run goes on and succeeds;
#   3. lease expiry: a hand-started worker is killed -9 mid-job (its job is
#      re-leased after the lease timeout), another is frozen (SIGSTOP) past
#      the timeout and then resumed: its late result is dropped as a
#      duplicate and its shared-memory segment removed; a monitor shows the
#      coordinator's progress and the workers' load meanwhile;
#   4. take-over: a coordinator and two hand-started workers, one slow
#      (1.5 s a job): it is leased several jobs at once, and once nothing
#      else is pending the fast one takes over those still queued at it, so
#      the tokens are complete after about one slow job, not four.
#   5. a document larger than any job (a text with one of ~0.5 MB at the
#      end) is leased first (ZF_TOK_TEST_TRACE_LEASES logs each lease), with
#      1 and 2 workers; the tokens equal the one-thread library's.
source "$(dirname "$0")/pipeline_lib.sh"
FLAGS=(--model_name zf-tiny --dataset_config bytes=2000000 --vocab_size 1024 --batch_size 4 --max_length 64
       --max_eval_steps 2 --log_every 1)
PIPE=("$ROOT/scripts/run_pipeline.sh" zero-2 "${FLAGS[@]}")
# On failure nothing may be left running: resume frozen workers, stop the
# background pipeline and the hand-started workers.
BG=()
stop_bg() {
  local p
  for p in "${BG[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
  for p in "${BG[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "${ZF_TEST_DIRS[@]}"
}
trap stop_bg EXIT
TOKD=$ROOT/bin/tokenizerd

hashes() { sed -n 's/.*\(split [a-z]*: .* fnv1a64 [0-9a-f]*\)$/\1/p' "$1/logs/tokenizerd.log" | sort; }
# wait_line FILE REGEX SECONDS: until FILE has a line matching REGEX
wait_line() {
  local t=$SECONDS
  until grep -q -- "$2" "$1" 2>/dev/null; do
    [ $((SECONDS - t)) -lt "$3" ] || return 1
    sleep 0.05
  done
}
# wait_count FILE REGEX N SECONDS: until FILE has N lines matching REGEX
wait_count() {
  local t=$SECONDS
  until [ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "$3" ]; do
    [ $((SECONDS - t)) -lt "$4" ] || return 1
    sleep 0.05
  done
}
# jobs_of OUT WORKER: jobs the coordinator accepted from WORKER
jobs_of() { sed -n "s/.*worker $2: \([0-9]*\) jobs.*/\1/p" "$1/logs/tokenizerd.log"; }
# hand_worker ID DELAY_MS LOG OUT: a worker started by hand against OUT's run; sets HAND_PID
hand_worker() {
  ZF_TOK_TEST_DELAY_MS=$2 "$TOKD" worker --worker_id "$1" --run_dir "$(run_dir_of "$4")" --run_id "$(run_id_of "$4")" \
      --tokenizer "$TOK" 2>"$3" &
  HAND_PID=$!
  BG+=($HAND_PID)
}

note "reference run: 2 workers, default jobs"
ref=$(new_out)
"${PIPE[@]}" --tokenizer_workers 2 --max_train_steps 3 --output_dir "$ref" >"$ref/stdout" 2>&1 ||
  { cat "$ref/stdout" >&2; fail "reference run failed"; }
hashes "$ref" >"$ref/hashes"
cat "$ref/hashes" >&2
[ "$(wc -l <"$ref/hashes")" = 3 ] || fail "expected one hash line per split"
TOK=$("$TOKD" prepare "${FLAGS[@]}" 2>/dev/null) && [ -d "$TOK" ] || fail "no tokenizer directory from prepare"

export ZF_TOK_TEST_JOB_BYTES=32768   # ~60 jobs instead of 8

note "a worker joins by hand, worker 1 leaves with SIGTERM"
out=$(new_out)
ZF_TOK_TEST_DELAY_MS=150 "${PIPE[@]}" --tokenizer_workers 2 --max_train_steps 3 --output_dir "$out" \
    >"$out/stdout" 2>&1 &
pipe=$!; BG+=($pipe)
wait_line "$out/logs/tokenizerd.log" "joined" 60 || { cat "$out/stdout" >&2; fail "the coordinator never leased"; }
run=$(run_id_of "$out"); run_dir=$(run_dir_of "$out")
hand_worker 3 150 "$out/worker3.log" "$out"; w3=$HAND_PID
wait_line "$out/logs/tokenizerd.log" "worker tokenizer-worker-3 (pid $w3) joined" 20 || fail "worker 3 did not join"
# its second job started: the first is done
wait_count "$out/worker3.log" "job [0-9]*: test delay" 2 10 || fail "worker 3 did not take jobs"
w1=$(cat "$run_dir/tokenizer-worker-1.ready")
# SIGTERM just after worker 1 starts a job (each takes 150 ms): it is mid-job
w1log=$out/logs/tokenizer-worker-1.log
n1=$(grep -c "job [0-9]*: test delay" "$w1log")
wait_count "$w1log" "job [0-9]*: test delay" $((n1 + 1)) 10 || fail "worker 1 takes no jobs"
kill -TERM "$w1"
grep -q "split train:" "$out/logs/tokenizerd.log" && fail "the train split was done before worker 1 left: test too fast"
wait $pipe || { cat "$out/stdout" >&2; fail "the run failed after a worker left"; }
wait $w3 || fail "the hand-started worker did not exit cleanly when the run ended"
grep -q "zeroflow: tokenizer-worker-1 stopped gracefully" "$out/stdout" || { cat "$out/stdout" >&2; fail "supervisor did not log the leave"; }
grep -q "worker tokenizer-worker-1 left after [0-9]* jobs; job [0-9]* handed back" "$out/logs/tokenizerd.log" ||
  { cat "$out/logs/tokenizerd.log" >&2; fail "worker 1 did not hand its job back"; }
grep -q "the current job was handed back" "$out/logs/tokenizer-worker-1.log" || fail "worker 1 log: no hand-back"
n3=$(jobs_of "$out" tokenizer-worker-3)
note "worker 3 did ${n3:-0} jobs; worker 1 $(jobs_of "$out" tokenizer-worker-1), worker 2 $(jobs_of "$out" tokenizer-worker-2)"
[ "${n3:-0}" -ge 1 ] || { cat "$out/logs/tokenizerd.log" >&2; fail "worker 3 did no job"; }
hashes "$out" | diff "$ref/hashes" - || fail "tokens differ after joins and leaves"
grep -q '"step": *3' "$out/metrics.jsonl" || fail "training did not run"
cat "$out/logs/tokenizerd.log" >&2; assert_clean "$run"

note "lease expiry: a hand-started worker killed -9 mid-job, another frozen past its lease"
out=$(new_out)
ZF_TOK_TEST_DELAY_MS=100 "${PIPE[@]}" --tokenizer_workers 1 --max_train_steps 100000 --output_dir "$out" \
    >"$out/stdout" 2>&1 &
pipe=$!; BG+=($pipe)
wait_line "$out/logs/tokenizerd.log" "joined" 60 || { cat "$out/stdout" >&2; fail "the coordinator never leased"; }
run=$(run_id_of "$out"); log=$out/logs/tokenizerd.log
# a monitor attached meanwhile sees the coordinator's progress and the workers' load
"$ROOT/bin/monitor" --output_dir "$out" --timeout 4 >"$out/monitor" 2>&1 &
mon=$!
hand_worker 7 5000 "$out/worker7.log" "$out"; w7=$HAND_PID
hand_worker 8 1500 "$out/worker8.log" "$out"; w8=$HAND_PID
# freeze / kill each one as soon as its first job starts: both are mid-job
wait_line "$out/worker8.log" "job [0-9]*: test delay" 20 || fail "worker 8 got no job"
kill -STOP $w8
wait_line "$out/worker7.log" "job [0-9]*: test delay" 20 || { kill -CONT $w8; fail "worker 7 got no job"; }
kill -9 $w7
wait $w7 2>/dev/null
j7=$(sed -n 's/.*job \([0-9]*\): test delay.*/\1/p' "$out/worker7.log")
j8=$(sed -n 's/.*job \([0-9]*\): test delay.*/\1/p' "$out/worker8.log")
wait_line "$log" "worker tokenizer-worker-7 (pid $w7) silent for .* considered gone; job $j7 re-queued" 10 ||
  { kill -CONT $w8; cat "$log" >&2; fail "the killed worker's job $j7 was not re-queued"; }
wait_line "$log" "worker tokenizer-worker-8 (pid $w8) silent for .* considered gone; job $j8 re-queued" 10 ||
  { kill -CONT $w8; fail "the frozen worker's job $j8 was not re-queued"; }
wait $mon || fail "monitor failed"
grep -q '^\[tokenizer\] [0-9]*/63 jobs .* MB/s .* [0-9]* workers' "$out/monitor" || { cat "$out/monitor" >&2; fail "monitor: no tok_progress"; }
grep -q '^\[tokenizer\] tokenizer-worker-1 .* MB/s' "$out/monitor" || { cat "$out/monitor" >&2; fail "monitor: no tok_stats"; }
wait_line "$log" "split test:" 60 || { kill -CONT $w8; cat "$log" >&2; fail "tokenization did not complete"; }
kill -CONT $w8
wait_line "$log" "worker tokenizer-worker-8 is back" 10 || fail "the resumed worker was not heard again"
wait_line "$log" "job $j8: late duplicate result from tokenizer-worker-8 dropped" 20 ||
  { cat "$log" >&2; fail "the late result of job $j8 was not dropped as a duplicate"; }
sleep 0.3
if ls /dev/shm | grep -q "^zf\.$(id -u)\.$run\.tokres-"; then
  ls /dev/shm | grep "^zf\.$(id -u)\.$run\.tokres-" >&2; fail "result segments left after tokenization"
fi
hashes "$out" | diff "$ref/hashes" - || fail "tokens differ after a lease expired"
wait_for_steps "$out" 2 60 || fail "training did not start"
kill -TERM $pipe
wait $pipe
rc=$?
[ $rc = 143 ] || { cat "$out/stdout" >&2; fail "expected exit 143 after SIGTERM, got $rc"; }
wait $w8 || fail "the resumed worker did not exit cleanly when the run ended"
cat "$out/logs/tokenizerd.log" >&2; assert_clean "$run"
note "take-over: an idle worker takes the jobs queued at a slow one"
rd=$(mktemp -d "${TMPDIR:-/tmp}/zf-tw.XXXXXX"); chmod 700 "$rd"; ZF_TEST_DIRS+=("$rd")
rid="$$-takeover"; log=$rd/serve.log
ZF_TOK_TEST_DELAY_MS=1500 "$TOKD" worker --worker_id 1 --run_dir "$rd" --run_id "$rid" --tokenizer "$TOK" \
    2>"$rd/w1.log" &
slow=$!; BG+=($slow)
"$TOKD" worker --worker_id 2 --run_dir "$rd" --run_id "$rid" --tokenizer "$TOK" 2>"$rd/w2.log" &
fast=$!; BG+=($fast)
wait_line "$rd/tokenizer-worker-1.ready" . 20 && wait_line "$rd/tokenizer-worker-2.ready" . 20 || fail "workers not ready"
"$TOKD" serve --run_dir "$rd" --run_id "$rid" --tokenizer "$TOK" "${FLAGS[@]}" 2>"$log" &
srv=$!; BG+=($srv)
wait_count "$log" "fnv1a64" 3 30 || { cat "$log" >&2; fail "take-over run did not complete"; }
cat "$log" >&2
secs=$(sed -n 's/.*tokenized .* in \([0-9.]*\) s (.*/\1/p' "$log")
awk -v s="$secs" 'BEGIN{exit !(s > 0 && s < 4)}' ||
  fail "took ${secs:-?} s: the jobs queued at the slow worker waited for it (4 x 1.5 s)"
grep -q "jobs taken over from a worker's queue: [1-9]" "$log" || fail "no job was taken over"
sed -n 's/.*\(split [a-z]*: .* fnv1a64 [0-9a-f]*\)$/\1/p' "$log" | sort | diff "$ref/hashes" - ||
  fail "tokens differ after a take-over"
kill -TERM $srv $slow $fast
wait $srv; wait $slow || fail "the slow worker did not stop cleanly"; wait $fast || fail "the fast worker did not stop cleanly"
assert_clean "$rid"   # segments too: the coordinator and the workers remove their own

note "a document larger than any job is leased first, its tokens still in text order"
rd=$(mktemp -d "${TMPDIR:-/tmp}/zf-tw.XXXXXX"); chmod 700 "$rd"; ZF_TEST_DIRS+=("$rd")
# 300 small documents, then one of ~0.5 MB (no blank line inside) at the end
zf_py - "$rd/big.txt" <<'PY'
import random, sys
r = random.Random(5)
words = ["alpha", "beta", "gamma", "delta", "zeroflow", "token", "12345", "émigré", "日本語", "😀"]
def doc(n):
    return "\n".join(" ".join(r.choice(words) for _ in range(12)) for _ in range(n))
with open(sys.argv[1], "w", encoding="utf-8") as f:
    f.write("\n\n".join([doc(r.randint(5, 30)) for _ in range(300)] + [doc(6000)]) + "\n")
PY
for n in 1 2; do
  rid="$$-big$n"; log=$rd/serve$n.log; ws=()
  for ((i = 1; i <= n; i++)); do
    "$TOKD" worker --worker_id "$i" --run_dir "$rd" --run_id "$rid" --tokenizer "$TOK" 2>"$rd/w$n.$i.log" &
    ws+=($!); BG+=($!)
  done
  for ((i = 1; i <= n; i++)); do wait_line "$rd/tokenizer-worker-$i.ready" . 20 || fail "worker $i not ready"; done
  ZF_TOK_TEST_TRACE_LEASES=1 "$TOKD" serve --run_dir "$rd" --run_id "$rid" --tokenizer "$TOK" \
      --dataset_name "$rd/big.txt" 2>"$log" &
  srv=$!; BG+=($srv)
  wait_count "$log" "fnv1a64" 3 30 || { cat "$log" >&2; fail "run with $n workers did not complete"; }
  kill -TERM $srv "${ws[@]}"; wait $srv; for w in "${ws[@]}"; do wait "$w" || fail "a worker did not stop cleanly"; done
  sed -n 's/.*\(split [a-z]*: .* fnv1a64 [0-9a-f]*\)$/\1/p' "$log" | sort >"$rd/hashes$n"
  grep -q "1 jobs of one document above 256 KiB are leased first (largest 0\.[3-9][0-9] MB" "$log" ||
    { cat "$log" >&2; fail "the large document was not put first"; }
  first=$(sed -n 's/.*lease: job \([0-9]*\) .*/\1/p' "$log" | head -n 1)
  big=$(sed -n 's/.*leased first (largest .* MB, job \([0-9]*\)).*/\1/p' "$log")
  [ -n "$first" ] && [ "$first" = "$big" ] || fail "first lease: job ${first:-?}, expected the large document's job ${big:-?}"
  [ "$(grep -c 'lease: job' "$log")" -ge 15 ] || fail "expected a lease line per job"
  assert_clean "$rid"
done
[ "$(wc -l <"$rd/hashes1")" = 3 ] || fail "expected one hash line per split"
diff "$rd/hashes1" "$rd/hashes2" || fail "tokens differ between 1 and 2 workers with the large document leased first"
# and equal to the library on one thread over the same text (bench_tokenizer's split hashes)
"$ROOT/bin/bench/bench_tokenizer" --tokenizer "$TOK" --text "$rd/big.txt" --repeat 1 2>/dev/null | grep '^split ' |
  sort | diff - "$rd/hashes1" || fail "tokens differ from the one-thread library's"

echo "tokenizer workers ok"
