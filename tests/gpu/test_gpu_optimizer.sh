#!/usr/bin/env bash
# GPU machine only (see tests/README): the GPU-resident optimizer (a config
# without zero_optimization.offload_optimizer keeps fp32 master weights and
# the AdamW moments on the GPU) against offloadd's CPU optimizer.
# Checks, zf-tiny, --num_gpus 1:
#   - fp32 without clipping: 20 steps with the optimizer on the GPU give
#     BITWISE the losses and the final parameters/optimizer state of the run
#     with the optimizer offloaded (the same AdamW arithmetic, lib/adamw.h),
#     with gradient accumulation 1 and 3 (the offloaded runs copy each
#     layer's gradients to the host during the last backward: this checks
#     that every copied value is the final one);
#   - bf16 with clipping 1.0: losses within 1e-3 relative of the offloaded run
#     (the global norm is summed in another order: the clip factor may
#     differ in its last bit);
#   - resume: 10 steps, checkpoint, resume to 20 == 20 steps in one run
#     (losses, model, master, exp_avg, exp_avg_sq bitwise), optimizer on the GPU;
#   - the pipelined offload (offloadd updates chunk by chunk, the next
#     forward uploads each layer as it is announced) gives BITWISE the state
#     and losses of the plain exchange (ZF_OFFLOAD_PIPELINE=0), fp32 and bf16
#     with clipping;
#   - a checkpoint of a GPU-optimizer run records optimizer.step = the
#     applied steps, and resuming it with the optimizer offloaded continues
#     exactly as resuming the offloaded run's checkpoint;
#   - the step rows carry the phase times: forward, backward and optimizer
#     > 0 on every step; transfers 0 with the optimizer on the GPU and > 0
#     with it offloaded.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/tests/pipeline_lib.sh"
PY=${ZF_PYTHON:-python3}
# offloaded runs: the trainer dies if the GPU's exact gradient statistics
# (overflow, sum of squares) are not the host's bits
export ZF_DEBUG_CHECK_STATS=1
work=$(new_out)
for spec in fp32-noclip-cpu-1 fp32-noclip-none-1 bf16-clip-cpu-1 bf16-clip-none-1 fp32-noclip-cpu-3 fp32-noclip-none-3; do
  "$PY" - "$ROOT/config/zero-2.json" "$work/$spec.json" $(echo "$spec" | tr - ' ') <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); prec, clip, off, ga = sys.argv[3:7]
c["gradient_accumulation_steps"] = int(ga)
c["fp16"] = {"enabled": False}
c["bf16"] = {"enabled": prec == "bf16"}
c["gradient_clipping"] = 1.0 if clip == "clip" else 0.0
if off == "none":
    c["zero_optimization"].pop("offload_optimizer", None)
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
done
run() { # run NAME CONFIG STEPS [flags]
  local name=$1 cfg=$2 steps=$3; shift 3
  "$ROOT/scripts/run_pipeline.sh" "$work/$cfg.json" "${TINY[@]}" --num_gpus 1 --seed 4 --max_train_steps "$steps" \
      --generation_prompt "" --output_dir "$work/$name" "$@" >>"$work/$name.out" 2>&1 ||
    { tail -n 30 "$work/$name.out" >&2; fail "$name failed"; }
  grep -o "computing on .*" "$work/$name.out" | tail -n 1 >&2
}
run off-fp32 fp32-noclip-cpu-1 20 --save_checkpoint
run dev-fp32 fp32-noclip-none-1 20 --save_checkpoint
run off-bf16 bf16-clip-cpu-1 20
run dev-bf16 bf16-clip-none-1 20
run res-fp32 fp32-noclip-none-1 10 --save_checkpoint
run res-fp32 fp32-noclip-none-1 20 --save_checkpoint --resume
run off-ga3 fp32-noclip-cpu-3 10 --save_checkpoint
run dev-ga3 fp32-noclip-none-3 10 --save_checkpoint
ZF_OFFLOAD_PIPELINE=0 run off-fp32-np fp32-noclip-cpu-1 20 --save_checkpoint
ZF_OFFLOAD_PIPELINE=0 run off-bf16-np bf16-clip-cpu-1 20
grep -q "optimizer offloaded, pipelined" "$work/off-bf16.out" || fail "offload run was not pipelined"
grep -q "optimizer offloaded, pipelined" "$work/off-bf16-np.out" && fail "ZF_OFFLOAD_PIPELINE=0 run was pipelined"
for f in model.zft optim-r0-master.zft optim-r0-adam_m.zft optim-r0-adam_v.zft; do
  cmp "$work/off-fp32/checkpoints/step_00000020/$f" "$work/off-fp32-np/checkpoints/step_00000020/$f" ||
    fail "$f: pipelined offload differs from the plain exchange"
done
"$PY" - "$work/dev-fp32/checkpoints/step_00000020/meta.json" <<'PY' || fail "GPU-optimizer checkpoint: optimizer.step"
import json, sys
m = json.load(open(sys.argv[1]))
print(f"GPU-optimizer checkpoint: applied_steps {m['applied_steps']}, optimizer.step {m['optimizer']['step']}")
sys.exit(0 if m["optimizer"]["step"] == m["applied_steps"] == 20 else 1)
PY
# resume both step-20 checkpoints (bitwise equal above) with the optimizer offloaded
run dev-fp32 fp32-noclip-cpu-1 25 --resume
run off-fp32 fp32-noclip-cpu-1 25 --resume
grep -q "resuming from .*step_00000020 at step 20" "$work/dev-fp32.out" || fail "GPU-optimizer checkpoint not resumed offloaded"
grep -q "optimizer on the GPU" "$work/dev-fp32.out" || fail "no-offload run did not keep the optimizer on the GPU"
grep -q "optimizer on the GPU" "$work/off-fp32.out" && fail "offload run kept the optimizer on the GPU"
grep -q "resuming from .*step_00000010 at step 10" "$work/res-fp32.out" || fail "did not resume from step 10"
for f in model.zft optim-r0-master.zft optim-r0-adam_m.zft optim-r0-adam_v.zft; do
  cmp "$work/off-fp32/checkpoints/step_00000020/$f" "$work/dev-fp32/checkpoints/step_00000020/$f" ||
    fail "$f: GPU optimizer differs from offloadd's (fp32, no clipping)"
  cmp "$work/dev-fp32/checkpoints/step_00000020/$f" "$work/res-fp32/checkpoints/step_00000020/$f" ||
    fail "$f differs after resume (GPU optimizer)"
  cmp "$work/off-ga3/checkpoints/step_00000010/$f" "$work/dev-ga3/checkpoints/step_00000010/$f" ||
    fail "$f: GPU optimizer differs from offloadd's (fp32, accumulation 3)"
done
zf_py - "$work" <<'PY' || fail "losses or phase times wrong"
import json, sys
from zf_testlib import step_rows
w = sys.argv[1]
def rows(name):
    return step_rows(f"{w}/{name}")
ok = True
a, b, r = rows("off-fp32"), rows("dev-fp32"), rows("res-fp32")
for s in range(21, 26):
    if a[s]["loss"] != b[s]["loss"]:
        print(f"step {s} after resuming offloaded: from the offloaded run {a[s]['loss']!r}, from the GPU-optimizer run {b[s]['loss']!r}")
        ok = False
for name in ("fp32", "bf16"):
    p, q = rows(f"off-{name}"), rows(f"off-{name}-np")
    for s in range(1, 21):
        if p[s]["loss"] != q[s]["loss"]:
            print(f"{name} step {s}: pipelined offload {p[s]['loss']!r}, plain {q[s]['loss']!r}"); ok = False
for s in range(1, 21):
    if a[s]["loss"] != b[s]["loss"] or b[s]["loss"] != r[s]["loss"]:
        print(f"fp32 step {s}: offloaded {a[s]['loss']!r}, GPU {b[s]['loss']!r}, resumed {r[s]['loss']!r}")
        ok = False
x, y = rows("off-bf16"), rows("dev-bf16")
worst = max(abs(x[s]["loss"] - y[s]["loss"]) / abs(x[s]["loss"]) for s in range(1, 21))
print(f"bf16 with clipping: worst relative loss difference GPU vs offloaded optimizer {worst:.2e}")
ok &= worst <= 1e-3
for name, xfer in (("dev-bf16", False), ("off-bf16", True)):
    for s, row in rows(name).items():
        ph = {k: row.get(k) for k in ("forward_s", "backward_s", "optimizer_s", "transfer_s")}
        if any(v is None for v in ph.values()) or min(ph["forward_s"], ph["backward_s"], ph["optimizer_s"]) <= 0 \
                or (ph["transfer_s"] > 0) != xfer:
            print(f"{name} step {s}: phase times {ph}"); ok = False
    last = rows(name)[20]
    print(f"{name} step 20: " + ", ".join(f"{k} {1e3 * last[k]:.2f} ms" for k in
          ("step_s", "data_wait_s", "forward_s", "backward_s", "optimizer_s", "transfer_s")))
print("fp32 losses bitwise equal (offloaded, GPU, resumed)" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
echo "gpu optimizer ok"
