#!/usr/bin/env bash
# Supervision of N trainer ranks (scripts/run_pipeline.sh --world_size N,
# mpirun + scripts/zf_rank.sh): a rank killed with -9 stops the run within
# 10 s naming that rank (trainer-R) with its log tail; a daemon killed
# likewise stops the ranks; SIGTERM makes every rank checkpoint its partition
# and the run stop cleanly (exit 143, a checkpoint of the step reached with
# one partition per rank that consolidates); no process or shared memory is
# left in any case.  Also the launch flags' errors and the --num_gpus N
# fallback to N CPU ranks on a machine without a GPU.
source "$(dirname "$0")/pipeline_lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not installed (openmpi-bin)"; exit 77; }

start_run() { # start_run OUT WORLD [flags]: background pipeline; sets PIPE_PID
  local out=$1 world=$2; shift 2
  "$ROOT/scripts/run_pipeline.sh" zero-2 "${TINY[@]}" --batch_size 2 --world_size "$world" --output_dir "$out" \
      --max_train_steps 100000 --generation_prompt "" "$@" >"$out/stdout" 2>&1 &
  PIPE_PID=$!
  wait_for_steps "$out" 3 120 || { cat "$out/stdout" >&2; kill -TERM $PIPE_PID; fail "training did not start"; }
}

# stops OUT RC_EXPECTED NAME: the run ends within 10 s, naming NAME
stops() {
  local out=$1 name=$2 t0=$SECONDS rc
  wait_bounded $PIPE_PID 60 "$out"
  rc=$?
  local took=$((SECONDS - t0))
  [ $rc != 0 ] || fail "$name killed but the run exited 0"
  [ $took -le 10 ] || fail "$name killed: the run took ${took}s to stop (max 10)"
  grep -q "zeroflow: $name was killed by signal 9" "$out/stdout" || { cat "$out/stdout" >&2; fail "the message does not name $name"; }
  grep -q "Last lines of .*/$name.log" "$out/stdout" || fail "no log tail for $name"
  note "$name: stopped in ${took}s, exit $rc"
}

# Open MPI's shared-memory files of killed ranks: in the run's own directory
mpi_files() { ls /dev/shm 2>/dev/null | grep -c '^vader_segment'; }
mpi_before=$(mpi_files)

for victim in trainer-1 trainer-0 offloadd; do
  out=$(new_out)
  note "2 ranks, kill -9 $victim"
  start_run "$out" 2
  run=$(run_id_of "$out")
  run_dir=$(run_dir_of "$out")
  if [[ $victim == trainer-* ]]; then pid=$(cut -d' ' -f2 "$run_dir/$victim.pid" 2>/dev/null)
  else pid=$(cat "$run_dir/$victim.ready" 2>/dev/null); fi
  [ -n "$pid" ] || fail "no pid for $victim"
  kill -9 "$pid"
  stops "$out" "$victim"
  assert_clean "$run"
  [ ! -e "$run_dir" ] || fail "run directory $run_dir left behind"
done

out=$(new_out)
note "3 ranks, SIGTERM with --save_checkpoint"
start_run "$out" 3 --save_checkpoint
run=$(run_id_of "$out")
kill -TERM $PIPE_PID
wait_bounded $PIPE_PID 120 "$out"
rc=$?
[ $rc = 143 ] || { cat "$out/stdout" >&2; fail "SIGTERM: expected exit 143, got $rc"; }
grep -q "stopping the 3 ranks" "$out/stdout" || fail "SIGTERM: the supervisor did not stop the ranks"
ck=$(sed -n 1p "$out/checkpoints/latest" 2>/dev/null)
[ -n "$ck" ] || fail "SIGTERM: no checkpoint written"
for r in 0 1 2; do
  [ -f "$out/checkpoints/$ck/optim-r$r-master.zft" ] || fail "SIGTERM: rank $r's partition missing"
  grep -q "stop requested" "$out/logs/trainer-$r.log" || fail "rank $r did not stop on the request"
done
last=$(sed -n 's/.*"step":\([0-9]*\),.*/\1/p' "$out/metrics.jsonl" | tail -n 1)
[ "$ck" = "$(printf 'step_%08d' "$last")" ] || fail "SIGTERM: checkpoint $ck is not the last step $last"
"$ROOT/bin/ckptd" consolidate "$out" "$out/final.safetensors" >/dev/null || fail "SIGTERM checkpoint does not consolidate"
assert_clean "$run"

[ "$(mpi_files)" = "$mpi_before" ] || { ls /dev/shm >&2; fail "killed ranks left Open MPI segments in /dev/shm"; }

note "flag errors"
out=$(new_out)
if "$ROOT/scripts/run_pipeline.sh" zero-2 "${TINY[@]}" --num_gpus 2 --world_size 3 --output_dir "$out" >"$out/stdout" 2>&1; then
  fail "--num_gpus 2 --world_size 3 accepted"
fi
grep -q "expected the same number" "$out/stdout" || { cat "$out/stdout" >&2; fail "no clear error for --num_gpus 2 --world_size 3"; }
# GPU ranks offload the parameters only with the optimizer (trainer check,
# which the CPU build runs the same way)
"$ZF_PYTHON" - "$ROOT/config/zero-3.json" "$out/param-only.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
del c["zero_optimization"]["offload_optimizer"]
json.dump(c, open(sys.argv[2], "w"))
PY
if "$ROOT/bin/trainer" check --deepspeed_config "$out/param-only.json" "${TINY[@]}" --num_gpus 2 --world_size 2 \
     --output_dir "$out" >"$out/check.out" 2>&1; then
  fail "offload_param without offload_optimizer on 2 GPU ranks accepted"
fi
grep -q "param-only.json: zero_optimization.offload_param.device cpu with --num_gpus 2: GPU ranks offload the parameters only with the optimizer" \
  "$out/check.out" || { cat "$out/check.out" >&2; fail "no clear error for offload_param without offload_optimizer"; }
if ! { [ -x "$ROOT/bin/trainer_cuda" ] && "$ROOT/bin/trainer_cuda" gpu-count >/dev/null 2>&1; }; then
  note "--num_gpus 2 without a GPU: 2 CPU ranks"
  "$ROOT/scripts/run_pipeline.sh" zero-2 "${TINY[@]}" --num_gpus 2 --batch_size 2 --max_train_steps 2 \
      --generation_prompt "" --output_dir "$out" >"$out/stdout" 2>&1 || { cat "$out/stdout" >&2; fail "--num_gpus 2 fallback run failed"; }
  grep -q "starting 2 trainer ranks" "$out/stdout" || fail "--num_gpus 2 did not start 2 ranks"
  [ -f "$out/logs/trainer-1.log" ] || fail "no log of rank 1"
  assert_clean "$(run_id_in "$out/stdout")"
fi
echo "zero launch ok"
