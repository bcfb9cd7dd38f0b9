#!/usr/bin/env bash
# Fault tolerance of the supervisor: for each daemon kind, kill -9 during
# training makes the run exit non-zero within 10 s naming that daemon, with
# no orphan process and no shared memory left; SIGTERM with checkpointing on
# leaves a loadable checkpoint (copied out or written in place) and a clean
# stop; a second SIGTERM stops every
# process at once even when a daemon hangs (ckptd under SIGSTOP).
source "$(dirname "$0")/pipeline_lib.sh"

start_run() { # start_run OUT [flags]: background pipeline; sets PIPE_PID
  local out=$1; shift
  "$ROOT/scripts/run_pipeline.sh" zero-2 "${TINY[@]}" --output_dir "$out" --max_train_steps 100000 "$@" \
      >"$out/stdout" 2>&1 &
  PIPE_PID=$!
  wait_for_steps "$out" 3 120 || { cat "$out/stdout" >&2; kill -TERM $PIPE_PID; fail "training did not start"; }
}

for victim in tokenizerd tokenizer-worker-1 loaderd offloadd ckptd trainer; do
  out=$(new_out)
  note "kill -9 $victim"
  start_run "$out"
  run=$(run_id_of "$out")
  run_dir=$(run_dir_of "$out")
  pid=$(cat "$run_dir/$victim.ready" 2>/dev/null)
  [ -n "$pid" ] || fail "no pid for $victim"
  kill -9 "$pid"
  t0=$SECONDS
  wait_bounded $PIPE_PID 60 "$out"
  rc=$?
  took=$((SECONDS - t0))
  [ $rc != 0 ] || fail "$victim killed but the run exited 0"
  [ $took -le 10 ] || fail "$victim killed: the run took ${took}s to stop (max 10)"
  grep -q "zeroflow: $victim was killed by signal 9" "$out/stdout" || { cat "$out/stdout" >&2; fail "the message does not name $victim"; }
  grep -q "Last lines of" "$out/stdout" || fail "no log tail for $victim"
  assert_clean "$run"
  [ ! -e "$run_dir" ] || fail "run directory $run_dir left behind"
  note "$victim: stopped in ${took}s, exit $rc"
done

for in_place in 0 1; do  # the checkpoint copied out, or written from the segments (ckptd/ckpt_server.h)
  out=$(new_out)
  note "SIGTERM with --save_checkpoint (ZF_CKPT_IN_PLACE=$in_place)"
  ZF_CKPT_IN_PLACE=$in_place start_run "$out" --save_checkpoint
  run=$(run_id_of "$out")
  kill -TERM $PIPE_PID
  wait_bounded $PIPE_PID 120 "$out"
  rc=$?
  cat "$out/stdout" >&2
  [ $rc = 143 ] || fail "SIGTERM: expected exit 143, got $rc"
  [ -f "$out/checkpoints/latest" ] || fail "SIGTERM: no checkpoint written"
  [ $in_place = 0 ] || grep -q "written in place" "$out/logs/ckptd.log" || fail "SIGTERM: the checkpoint was not written in place"
  "$ROOT/scripts/generate.sh" "$out" --prompt_ids "1 2 3" --max_new_tokens 4 --print_ids >/dev/null || fail "SIGTERM checkpoint does not load"
  assert_clean "$run"
done

out=$(new_out)
note "a second SIGTERM stops every process, here with ckptd hung (SIGSTOP)"
start_run "$out" --save_checkpoint
run=$(run_id_of "$out")
kill -STOP "$(cat "$(run_dir_of "$out")/ckptd.ready")"
kill -TERM $PIPE_PID
sleep 2
kill -0 $PIPE_PID 2>/dev/null || { cat "$out/stdout" >&2; fail "the run ended with ckptd stopped: the test's premise is wrong"; }
kill -TERM $PIPE_PID
t0=$SECONDS
wait_bounded $PIPE_PID 30 "$out"
rc=$?
[ $rc = 143 ] || { cat "$out/stdout" >&2; fail "two SIGTERMs: expected exit 143, got $rc"; }
grep -q "second signal" "$out/stdout" || { cat "$out/stdout" >&2; fail "two SIGTERMs: the second was not acknowledged"; }
[ $((SECONDS - t0)) -le 10 ] || fail "two SIGTERMs: stopping took $((SECONDS - t0))s (max 10)"
assert_clean "$run"
echo "faults ok"
