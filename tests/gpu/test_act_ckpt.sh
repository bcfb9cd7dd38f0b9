#!/usr/bin/env bash
# GPU machine only (see tests/README): activation checkpointing of the GPU
# model (zf_gpt2c_create_ex(..., act_checkpointing = 1), the trainer's
# --gradient_checkpointing / DeepSpeed "activation_checkpointing").
# Checks:
#   - bin/gpu/probe_gpt2_cuda ckptcmp: two accumulated training passes with
#     dropout 0.1, with and without checkpointing: losses and gradients
#     BITWISE equal (the recomputed block runs the same kernels on the same
#     inputs with the same dropout sites), in fp32 on zf-demo and bf16 on
#     gpt2-124m (B 8, T 1024), and the model's device allocation smaller;
#   - the pipeline with --gradient_checkpointing trains with bitwise the same
#     losses as without (GPU optimizer, bf16, 8 steps).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/tests/pipeline_lib.sh"
probe=$ROOT/bin/gpu/probe_gpt2_cuda
[ -x "$probe" ] || fail "no $probe (make, or the GPU bundle)"
for args in "--config $ROOT/config/models/zf-demo.json --vocab 512 --B 4 --T 128 --dtype fp32" \
            "--config $ROOT/config/models/gpt2-124m.json --B 8 --T 1024 --dtype bf16"; do
  # shellcheck disable=SC2086
  line=$("$probe" ckptcmp $args) || fail "probe failed: $args"
  echo "$line"
  echo "$line" | grep -q "loss_equal 1 grads_equal 1 " || fail "checkpointed model differs: $line"
  full=$(echo "$line" | sed -n 's/.*bytes_full \([0-9]*\).*/\1/p')
  ck=$(echo "$line" | sed -n 's/.*bytes_ckpt \([0-9]*\).*/\1/p')
  [ -n "$full" ] && [ -n "$ck" ] && [ "$ck" -lt "$full" ] || fail "no memory saved: $line"
  note "device allocation $((full / 1048576)) MiB -> $((ck / 1048576)) MiB with checkpointing"
done

work=$(new_out)
"${ZF_PYTHON:-python3}" - "$ROOT/config/zero-2.json" "$work/c.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["fp16"] = {"enabled": False}
c["bf16"] = {"enabled": True}
c["zero_optimization"].pop("offload_optimizer", None)
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
for v in plain ckpt; do
  extra=()
  [ $v = ckpt ] && extra=(--gradient_checkpointing)
  "$ROOT/scripts/run_pipeline.sh" "$work/c.json" "${TINY[@]}" --num_gpus 1 --seed 3 --max_train_steps 8 \
      --generation_prompt "" --output_dir "$work/$v" "${extra[@]}" >"$work/$v.out" 2>&1 ||
    { tail -n 30 "$work/$v.out" >&2; fail "$v run failed"; }
  grep -o "computing on .*" "$work/$v.out" | head -n 1 >&2
  step_losses "$work/$v/metrics.jsonl" >"$work/$v.losses"
done
grep -q "optimizer on the GPU" "$work/plain.out" || fail "the run did not use the GPU optimizer"
[ "$(wc -l <"$work/plain.losses")" = 8 ] || fail "expected 8 step losses"
cmp "$work/plain.losses" "$work/ckpt.losses" || { paste "$work/plain.losses" "$work/ckpt.losses" >&2; fail "losses differ with --gradient_checkpointing"; }
echo "activation checkpointing ok"
