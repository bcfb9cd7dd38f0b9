#!/usr/bin/env bash
# Resume: training 2N steps equals training N, checkpointing, resuming and
# training N more: identical losses and identical final parameters (bitwise,
# compared through the exported model files) on the CPU; the resumed run's
# checkpoints are written in place (ZF_CKPT_IN_PLACE=1) and their files
# equal the copied snapshots' byte for byte.
source "$(dirname "$0")/pipeline_lib.sh"
flags=(--seed 3 --save_checkpoint)
a=$(new_out); b=$(new_out)
note "20 steps in one run"
"$ROOT/scripts/run_pipeline.sh" zero-2 "${TINY[@]}" "${flags[@]}" --max_train_steps 20 --output_dir "$a" >"$a/stdout" 2>&1 || { cat "$a/stdout" >&2; fail "run A failed"; }
note "10 steps, then resume to 20 (these checkpoints written in place: from the shared segments, the trainer waiting)"
export ZF_CKPT_IN_PLACE=1
"$ROOT/scripts/run_pipeline.sh" zero-2 "${TINY[@]}" "${flags[@]}" --max_train_steps 10 --output_dir "$b" >"$b/stdout1" 2>&1 || { cat "$b/stdout1" >&2; fail "run B1 failed"; }
grep -q "checkpoint of step 10: written in place" "$b/logs/ckptd.log" || fail "B1's checkpoint was not written in place"
"$ROOT/scripts/run_pipeline.sh" zero-2 "${TINY[@]}" "${flags[@]}" --max_train_steps 20 --output_dir "$b" --resume >"$b/stdout2" 2>&1 || { cat "$b/stdout2" >&2; fail "run B2 failed"; }
unset ZF_CKPT_IN_PLACE
grep -q "resuming from .*step_00000010 at step 10" "$b/stdout2" || { cat "$b/stdout2" >&2; fail "B2 did not resume from step 10"; }
step_losses "$a/metrics.jsonl" > "$a/losses"
step_losses "$b/metrics.jsonl" > "$b/losses"
[ "$(wc -l < "$a/losses")" = 20 ] || fail "run A logged $(wc -l < "$a/losses") steps, expected 20"
cmp "$a/losses" "$b/losses" || { paste "$a/losses" "$b/losses" >&2; fail "losses differ after resume"; }
"$ROOT/bin/ckptd" export "$a" "$a/hf" >/dev/null && "$ROOT/bin/ckptd" export "$b" "$b/hf" >/dev/null || fail "export failed"
cmp "$a/hf/model.safetensors" "$b/hf/model.safetensors" || fail "final parameters differ after resume"
# the optimizer state must match too
"$ZF_PYTHON" - "$a" "$b" <<'PY' || fail "checkpoint meta differs"
import json, sys
ma, mb = (json.load(open(f"{d}/checkpoints/step_00000020/meta.json")) for d in sys.argv[1:])
for k in ("step", "applied_steps", "loss_scaler"):
    assert ma[k] == mb[k], (k, ma[k], mb[k])
assert ma["optimizer"]["step"] == mb["optimizer"]["step"] == 20, (ma["optimizer"], mb["optimizer"])
PY
for f in optim-r0-master.zft optim-r0-adam_m.zft optim-r0-adam_v.zft model.zft; do
  cmp "$a/checkpoints/step_00000020/$f" "$b/checkpoints/step_00000020/$f" || fail "$f differs after resume"
done
echo "resume ok"
