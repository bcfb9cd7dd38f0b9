#!/usr/bin/env bash
# fp16 dynamic loss scaling through the whole pipeline, on forced overflows.
# The trainer's test-only knob ZF_DEBUG_OVERFLOW_STEPS makes the gradients of
# the listed iterations non-finite where they live (host "grads" for the CPU
# trainer, device gradients for the GPU one), so the real overflow check and
# the real scaler run.  Checked per step against a Python transcription of
# DeepSpeed's DynamicLossScaler.update_scale (written below, not imported):
#   - metrics.jsonl (skipped, loss_scale) equals the transcription's step by
#     step, with loss_scale_window 3, hysteresis 2, min_loss_scale 16, for
#     consecutive_hysteresis false and true;
#   - a skipped step leaves the parameters and the optimizer state bitwise
#     unchanged, an applied step changes them (with the knob set the trainer
#     adds to each metrics row "state_hash", FNV-1a 64 of the parameters and
#     of offloadd's master/exp_avg/exp_avg_sq, which a device optimizer
#     copies there first);
#   - the lr schedule does not advance on skipped steps (DeepSpeed skips the
#     scheduler step too): the lr of applied step j is the same as in a run
#     without overflows.
#
#   tests/test_fp16_overflow.sh          CPU trainer (CI)
#   tests/test_fp16_overflow.sh --gpu    GPU trainer (--num_gpus 1), both with
#                                        the optimizer offloaded (offloadd) and
#                                        on the GPU (no offload in the config)
#   ... [--stage N]                      zero_optimization.stage N (default 2;
#                                        tests/gpu/test_zero_gpus.sh runs 2 and 3
#                                        through the GPU ZeRO path)
source "$(dirname "$0")/pipeline_lib.sh"
PY=${ZF_PYTHON:-python3}
gpu=0 stage=2
while [ $# -gt 0 ]; do
  case $1 in
    --gpu) gpu=1; shift ;;
    --stage) stage=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
work=$(new_out)
STEPS=16
OVERFLOWS="2,3,4,7,8,9,10,15"

# configs: fp16 dynamic scaling, small window; offloaded optimizer or not
for ch in false true; do
  for off in cpu none; do
    "$PY" - "$ROOT/config/zero-2.json" "$work/c-$ch-$off.json" "$ch" "$off" "$stage" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 10, "loss_scale_window": 3,
             "hysteresis": 2, "consecutive_hysteresis": sys.argv[3] == "true", "min_loss_scale": 16}
c["bf16"] = {"enabled": False}
c["scheduler"]["params"]["warmup_num_steps"] = 5
c["scheduler"]["params"]["total_num_steps"] = 40
z = c["zero_optimization"]
z["stage"] = int(sys.argv[5])
if sys.argv[4] == "none":
    z.pop("offload_optimizer", None)
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
  done
done

runs=()
if [ $gpu = 1 ]; then
  for ch in false true; do runs+=("gpu-off-$ch:c-$ch-cpu" "gpu-dev-$ch:c-$ch-none"); done
  dev=(--num_gpus 1)
else
  for ch in false true; do runs+=("cpu-$ch:c-$ch-cpu"); done
  dev=(--num_gpus 0)
fi
for r in "${runs[@]}"; do
  name=${r%%:*} cfg=${r#*:}
  note "$name: $STEPS steps, overflows forced at $OVERFLOWS"
  ZF_DEBUG_OVERFLOW_STEPS=$OVERFLOWS "$ROOT/scripts/run_pipeline.sh" "$work/$cfg.json" "${TINY[@]}" "${dev[@]}" \
      --seed 7 --max_train_steps $STEPS --save_checkpoint --generation_prompt "" \
      --output_dir "$work/$name" >"$work/$name.out" 2>&1 || { tail -n 30 "$work/$name.out" >&2; fail "$name failed"; }
  grep -o "computing on .*" "$work/$name.out" | head -n 1 >&2
done
# the lr reference: the same schedule without overflows
ref=${runs[0]#*:}
"$ROOT/scripts/run_pipeline.sh" "$work/$ref.json" "${TINY[@]}" "${dev[@]}" --seed 7 --max_train_steps $STEPS \
    --generation_prompt "" --output_dir "$work/noovf" >"$work/noovf.out" 2>&1 ||
  { tail -n 30 "$work/noovf.out" >&2; fail "run without overflows failed"; }
if [ $gpu = 1 ]; then
  grep -q "computing on cuda (fp16)" "$work/gpu-off-false.out" || fail "offload run did not compute on the GPU in fp16"
  grep -q "computing on cuda (fp16, optimizer on the GPU)" "$work/gpu-dev-false.out" ||
    fail "no-offload run did not keep the optimizer on the GPU"
fi

names=()
for r in "${runs[@]}"; do names+=("${r%%:*}"); done
zf_py - "$work" "$OVERFLOWS" "$STEPS" "${names[@]}" <<'PY' || fail "loss scaler sequence differs from DeepSpeed's rules"
import json, sys
from zf_testlib import step_rows

class DynamicLossScaler:
    """DeepSpeed's deepspeed/runtime/fp16/loss_scaler.py DynamicLossScaler
    (update_scale), transcribed: delayed_shift is the config's hysteresis."""
    def __init__(self, init_scale, scale_factor, scale_window, min_scale, delayed_shift, consecutive_hysteresis):
        self.cur_scale = init_scale
        self.cur_iter = 0
        self.last_overflow_iter = -1
        self.scale_factor = scale_factor
        self.scale_window = scale_window
        self.min_scale = min_scale
        self.delayed_shift = delayed_shift
        self.cur_hysteresis = delayed_shift
        self.consecutive_hysteresis = consecutive_hysteresis
        self.raise_error_at_min_scale = True

    def update_scale(self, overflow):
        if overflow:
            if self.delayed_shift == 1 or self.cur_hysteresis == 1:
                if self.cur_scale == self.min_scale and self.raise_error_at_min_scale:
                    raise Exception("Current loss scale already at minimum - cannot decrease scale anymore.")
                self.cur_scale = max(self.cur_scale / self.scale_factor, self.min_scale)
            else:
                self.cur_hysteresis -= 1
            self.last_overflow_iter = self.cur_iter
        else:
            if self.consecutive_hysteresis:
                self.cur_hysteresis = self.delayed_shift
            if (self.cur_iter - self.last_overflow_iter) % self.scale_window == 0:
                if not self.consecutive_hysteresis:
                    self.cur_hysteresis = self.delayed_shift
                self.cur_scale *= self.scale_factor
        self.cur_iter += 1

work, ovf, steps, names = sys.argv[1], {int(x) for x in sys.argv[2].split(",")}, int(sys.argv[3]), sys.argv[4:]

def rows(name):
    return step_rows(f"{work}/{name}")

def ckpt(name, step, f):
    return f"{work}/{name}/checkpoints/step_{step:08d}/{f}"

ok = True
ref_lr = [rows("noovf")[s]["lr"] for s in range(1, steps + 1)]
for name in names:
    cons = name.endswith("true")
    sc = DynamicLossScaler(2.0 ** 10, 2.0, 3, 16.0, 2, cons)
    got = rows(name)
    applied = 0
    for s in range(1, steps + 1):
        sc.update_scale(s in ovf)
        r = got.get(s)
        if r is None:
            print(f"{name}: no metrics row for step {s}"); ok = False; continue
        exp = (s in ovf, sc.cur_scale)
        if (bool(r["skipped"]), r["loss_scale"]) != exp:
            print(f"{name} step {s}: (skipped, loss_scale) = ({r['skipped']}, {r['loss_scale']}), DeepSpeed: {exp}")
            ok = False
        if s in ovf:
            if r["lr"] != 0:
                print(f"{name} step {s}: skipped step reports lr {r['lr']}"); ok = False
        else:
            if r["lr"] != ref_lr[applied]:
                print(f"{name} step {s}: lr {r['lr']} != lr of applied step {applied + 1} without overflows {ref_lr[applied]}")
                ok = False
            applied += 1
        if s > 1 and s - 1 in got:
            same = r.get("state_hash") == got[s - 1].get("state_hash") and "state_hash" in r
            if same != (s in ovf):
                print(f"{name} step {s}: parameters/optimizer state {'unchanged' if same else 'changed'} on a step "
                      f"that was {'skipped' if s in ovf else 'applied'}")
                ok = False
    meta = json.load(open(ckpt(name, steps, "meta.json")))
    if meta["applied_steps"] != applied:
        print(f"{name}: checkpoint applied_steps {meta['applied_steps']}, expected {applied}"); ok = False
    print(f"{name}: {steps} steps, {applied} applied, final loss scale {sc.cur_scale:g}: "
          f"{'matches' if ok else 'DIFFERS from'} DeepSpeed's rules")
sys.exit(0 if ok else 1)
PY
echo "fp16 overflow ok"
