#!/usr/bin/env bash
# Ranks spread over several nodes, tried on one machine with zf_rank.sh's
# test hook ZF_TEST_RANKS_PER_NODE=2 (4 CPU ranks: ranks 0-1 on the
# supervisor's node, 2-3 on a second node whose first rank starts its own
# daemons in their own run directory and run id).  Checks: both nodes' daemons
# run and serve their ranks; the loss sequence and the checkpoint's model are
# bitwise those of the same 4 ranks on one node (ZeRO-3, dropout on);
# the checkpoint holds every rank's partition (rank 0's ckptd commits it once
# the second node's part is in) and a run resumed from it continues exactly;
# with a checkpoint every step every one is complete and parts are removed
# once taken in; a part of the same step left by another run is not taken
# (planted, with node 2's ckptd stopped while rank 0's waits);
# kill -9 of the second node's offloadd, of its first rank (which started
# its daemons) or of its other rank stops the run within 20 s naming it;
# nothing of either node (process, shared memory, run directory) is left in
# any case.
source "$(dirname "$0")/pipeline_lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not installed (openmpi-bin)"; exit 77; }
work=$(new_out)
flags=(zero-3 "${TINY[@]}" --batch_size 2 --world_size 4 --seed 7 --generation_prompt "" --max_eval_steps 2
       --save_checkpoint)

# node_clean RUN: nothing of the second node of RUN is left (its run id is
# "<pid>-<RUN without dashes>n2"; its janitor may take a few seconds)
node_clean() {
  local tag="${1//-/}n2" t0=$SECONDS left
  while :; do
    left=$( { pgrep -af -- "--run_id [0-9]*-$tag"; ls /dev/shm | grep -- "$tag";
              ls -d "${XDG_RUNTIME_DIR:-/tmp}/zeroflow-$(id -u)/"*"$tag"* "${XDG_RUNTIME_DIR:-/tmp}/zeroflow-$(id -u)/$1.node"* 2>/dev/null; } )
    [ -z "$left" ] && return 0
    [ $((SECONDS - t0)) -lt 15 ] || { echo "$left" >&2; fail "node 2 of $1 left processes, shared memory or its run directory"; }
    sleep 0.2
  done
}

run() { # run NAME [flags]: one pipeline run into $work/NAME (env passed through)
  local name=$1; shift
  mkdir -p "$work/$name"
  "$ROOT/scripts/run_pipeline.sh" "${flags[@]}" --output_dir "$work/$name" "$@" >"$work/$name/stdout" 2>&1 ||
    { cat "$work/$name/stdout" >&2; tail -n 20 "$work/$name"/logs/*-n2.log >&2 2>/dev/null; fail "run $name failed"; }
  node_clean "$(run_id_in "$work/$name/stdout")"   # first: node 2's janitor may still be at work
  assert_clean "$(run_id_in "$work/$name/stdout")"
}

note "4 ranks on one node"
run one --max_train_steps 6
note "4 ranks on two nodes"
ZF_TEST_RANKS_PER_NODE=2 run two --max_train_steps 6
for d in tokenizerd loaderd offloadd ckptd; do
  [ -s "$work/two/logs/$d-n2.log" ] || fail "node 2 has no $d log"
done
grep -q "rank 2: shard" "$work/two/logs/offloadd-n2.log" || fail "node 2's offloadd did not hold rank 2's partition"
! grep -q "rank 2: shard" "$work/two/logs/offloadd.log" || fail "rank 2's partition went to node 1's offloadd"

[ "$(step_losses "$work/one/metrics.jsonl")" = "$(step_losses "$work/two/metrics.jsonl")" ] ||
  { paste <(step_losses "$work/one/metrics.jsonl") <(step_losses "$work/two/metrics.jsonl") >&2; fail "losses differ between one and two nodes"; }
ck=$work/two/checkpoints/step_00000006
for r in 0 1 2 3; do
  for k in master adam_m adam_v; do [ -f "$ck/optim-r$r-$k.zft" ] || fail "checkpoint lacks rank $r's $k"; done
done
"$ROOT/bin/ckptd" consolidate "$work/one" "$work/one.safetensors" >/dev/null || fail "consolidate (one node)"
"$ROOT/bin/ckptd" consolidate "$work/two" "$work/two.safetensors" >/dev/null || fail "consolidate (two nodes)"
cmp -s "$work/one.safetensors" "$work/two.safetensors" || fail "the two-node checkpoint's model differs from one node's"
note "two nodes: losses and model equal to one node; every partition in the checkpoint"

note "two nodes: stop at step 3, resume to 6"
ZF_TEST_RANKS_PER_NODE=2 run half --max_train_steps 3
ZF_TEST_RANKS_PER_NODE=2 run half --max_train_steps 6 --resume
[ "$(step_losses "$work/two/metrics.jsonl" | tail -n 3)" = "$(step_losses "$work/half/metrics.jsonl" | tail -n 3)" ] ||
  fail "the resumed two-node run differs from the uninterrupted one"
"$ROOT/bin/ckptd" consolidate "$work/half" "$work/half.safetensors" >/dev/null || fail "consolidate (resumed)"
cmp -s "$work/two.safetensors" "$work/half.safetensors" || fail "the resumed run's model differs"

note "two nodes, a checkpoint every step"
ZF_TEST_RANKS_PER_NODE=2 run every --max_train_steps 6 --save_every 1
[ "$(step_losses "$work/two/metrics.jsonl")" = "$(step_losses "$work/every/metrics.jsonl")" ] ||
  fail "checkpointing every step changed the losses"
[ "$(cat "$work/every/checkpoints/latest")" = step_00000006 ] || fail "latest is not step 6"
for ck in "$work/every/checkpoints"/step_0000000{4,5,6}; do
  for r in 0 1 2 3; do [ -f "$ck/optim-r$r-adam_v.zft" ] || fail "$ck lacks rank $r's partition"; done
done
"$ROOT/bin/ckptd" consolidate "$work/every" "$work/every.safetensors" >/dev/null || fail "consolidate (every step)"
cmp -s "$work/two.safetensors" "$work/every.safetensors" || fail "step 6 differs from the run saved once"
[ -z "$(ls "$work/every/ckpt-parts/node-2/checkpoints" | grep '^step_')" ] ||
  { ls "$work/every/ckpt-parts/node-2/checkpoints" >&2; fail "parts were not removed once taken in"; }

note "a part of step 6 left by another run is not taken (node 2's ckptd held back meanwhile)"
# the planted part: ranks 2-3 of step 6 of the run "every" (its step-5
# state, so other values), under another run's nonce
plant=$work/stale/ckpt-parts/node-2/checkpoints/step_00000006
mkdir -p "$plant"
cp "$work/every/checkpoints/step_00000005"/optim-r[23]-*.zft "$plant/"
zf_py - "$work/every/checkpoints/step_00000005/meta.json" "$plant/meta.json" <<'PY' || fail "planting a part"
import json, sys
m = json.load(open(sys.argv[1]))
m["optimizer"]["shards"] = [s for s in m["optimizer"]["shards"] if s["rank"] in (2, 3)]
for s in m["optimizer"]["shards"]: s["step"] = 6
m["optimizer"]["step"] = 6
m["run_nonce"] = "0123456789abcdef"
m["tensors"] = {k: v for k, v in m["tensors"].items() if k.startswith(("optim-r2-", "optim-r3-"))}
m["step"] = 6
json.dump(m, open(sys.argv[2], "w"))
PY
out=$work/stale
ZF_TEST_RANKS_PER_NODE=2 "$ROOT/scripts/run_pipeline.sh" "${flags[@]}" --max_train_steps 6 --output_dir "$out" \
  >"$out/stdout" 2>&1 &
PIPE_PID=$!
wait_for_steps "$out" 4 120 || { cat "$out/stdout" >&2; kill -TERM $PIPE_PID; fail "training did not start"; }
run=$(run_id_of "$out")
ck2=$(pgrep -af -- "--run_id [0-9]*-${run//-/}n2" | grep "bin/ckptd " | cut -d' ' -f1)
[ -n "$ck2" ] || { kill -TERM $PIPE_PID; sleep 0.5; kill -TERM $PIPE_PID; wait $PIPE_PID; fail "no ckptd on node 2"; }
kill -STOP "$ck2"
sleep 3   # rank 0's ckptd meanwhile finds only the planted part of step 6
kill -CONT "$ck2"
wait_bounded $PIPE_PID 120 "$out" || { cat "$out/stdout" >&2; fail "the run with a planted part failed"; }
"$ROOT/bin/ckptd" consolidate "$out" "$work/stale.safetensors" >/dev/null || fail "consolidate (planted part)"
cmp -s "$work/two.safetensors" "$work/stale.safetensors" || fail "the planted part of another run was taken"
node_clean "$run"
assert_clean "$run"

# kill_one VICTIM PATTERN: a run on two nodes; kill -9 of the process of
# node 2 matching PATTERN stops it within 20 s naming VICTIM, nothing left
kill_one() {
  local victim=$1 pattern=$2 out=$work/kill-$1 run pid rc t0
  note "kill -9 of $victim (node 2)"
  mkdir -p "$out"
  ZF_TEST_RANKS_PER_NODE=2 "$ROOT/scripts/run_pipeline.sh" "${flags[@]}" --max_train_steps 100000 --output_dir "$out" \
    >"$out/stdout" 2>&1 &
  PIPE_PID=$!
  wait_for_steps "$out" 3 120 || { cat "$out/stdout" >&2; kill -TERM $PIPE_PID; fail "training did not start"; }
  run=$(run_id_of "$out")
  pid=$(pgrep -af -- "--run_id [0-9]*-${run//-/}n2" | grep -E -- "$pattern" | head -n 1 | cut -d' ' -f1)
  [ -n "$pid" ] || { kill -TERM $PIPE_PID; sleep 0.5; kill -TERM $PIPE_PID; wait $PIPE_PID; fail "no $victim on node 2"; }
  kill -9 "$pid"
  t0=$SECONDS
  wait_bounded $PIPE_PID 60 "$out"
  rc=$?
  [ $rc != 0 ] || fail "$victim killed but the run exited 0"
  grep -q "zeroflow: $victim was killed by signal 9" "$out/stdout" || { cat "$out/stdout" >&2; fail "the message does not name $victim"; }
  [ $((SECONDS - t0)) -le 20 ] || fail "$victim killed: the run took $((SECONDS - t0))s to stop (max 20)"
  node_clean "$run"
  assert_clean "$run"
}
kill_one offloadd-n2 "bin/offloadd "
kill_one trainer-2 "bin/trainer train .* --rank 2 "
kill_one trainer-3 "bin/trainer train .* --rank 3 "
echo "zero nodes ok"
