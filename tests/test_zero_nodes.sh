#!/usr/bin/env bash
# Ranks spread over several nodes, tried on one machine with zf_rank.sh's
# test hook ZF_TEST_RANKS_PER_NODE=2 (4 CPU ranks: ranks 0-1 on the
# supervisor's node, 2-3 on a second node whose first rank starts its own
# daemons in their own run directory and run id).  Checks: both nodes' daemons
# run and serve their ranks; the loss sequence and the checkpoint's model are
# bitwise those of the same 4 ranks on one node (ZeRO-3, dropout on);
# the checkpoint holds every rank's partition (rank 0's ckptd commits it once
# the second node's part is in) and a run resumed from it continues exactly;
# kill -9 of the second node's offloadd stops the run naming it; nothing of
# either node (process, shared memory, run directory) is left in any case.
source "$(dirname "$0")/pipeline_lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not installed (openmpi-bin)"; exit 77; }
work=$(new_out)
flags=(zero-3 "${TINY[@]}" --batch_size 2 --world_size 4 --seed 7 --generation_prompt "" --max_eval_steps 2
       --save_checkpoint)

# node_clean RUN: nothing of the second node of RUN is left (its run id is
# "<pid>-<RUN without dashes>n2")
node_clean() {
  local tag="${1//-/}n2"
  if pgrep -f -- "--run_id [0-9]*-$tag" >/dev/null; then pgrep -af -- "$tag" >&2; fail "processes of node 2 of $1 left"; fi
  ! ls /dev/shm | grep -q -- "$tag" || fail "shared memory of node 2 of $1 left"
  ! ls -d "${XDG_RUNTIME_DIR:-/tmp}/zeroflow-$(id -u)/"*"$tag"* 2>/dev/null | grep -q . || fail "run directory of node 2 of $1 left"
}

run() { # run NAME [flags]: one pipeline run into $work/NAME (env passed through)
  local name=$1; shift
  mkdir -p "$work/$name"
  "$ROOT/scripts/run_pipeline.sh" "${flags[@]}" --output_dir "$work/$name" "$@" >"$work/$name/stdout" 2>&1 ||
    { cat "$work/$name/stdout" >&2; tail -n 20 "$work/$name"/logs/*-n2.log >&2 2>/dev/null; fail "run $name failed"; }
  assert_clean "$(run_id_in "$work/$name/stdout")"
  node_clean "$(run_id_in "$work/$name/stdout")"
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

note "kill -9 of node 2's offloadd"
out=$work/kill
mkdir -p "$out"
ZF_TEST_RANKS_PER_NODE=2 "$ROOT/scripts/run_pipeline.sh" "${flags[@]}" --max_train_steps 100000 --output_dir "$out" \
  >"$out/stdout" 2>&1 &
PIPE_PID=$!
wait_for_steps "$out" 3 120 || { cat "$out/stdout" >&2; kill -TERM $PIPE_PID; fail "training did not start"; }
run=$(run_id_of "$out")
pid=$(pgrep -f -- "bin/offloadd .*--run_id [0-9]*-${run//-/}n2" | head -n 1)
[ -n "$pid" ] || fail "no offloadd of node 2"
kill -9 "$pid"
t0=$SECONDS
wait_bounded $PIPE_PID 60 "$out"
rc=$?
[ $rc != 0 ] || fail "node 2's offloadd killed but the run exited 0"
grep -q "zeroflow: offloadd-n2 was killed by signal 9" "$out/stdout" || { cat "$out/stdout" >&2; fail "the message does not name offloadd-n2"; }
[ $((SECONDS - t0)) -le 20 ] || fail "the run took $((SECONDS - t0))s to stop (max 20)"
assert_clean "$run"
node_clean "$run"
echo "zero nodes ok"
