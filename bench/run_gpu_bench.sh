#!/usr/bin/env bash
# GPU benchmark: the REAL pipeline (scripts/run_pipeline.sh: tokenizerd,
# loaderd, offloadd, ckptd, trainer_cuda) in bf16, --num_gpus 1, T = 1024,
# with the optimizer on the GPU (config without offload_optimizer) and
# offloaded to offloadd (ZeRO-2 CPU offload), then the PyTorch baseline
# (bench/torch_gpt2_baseline.py, eager and torch.compile) at the same shapes,
# in the same invocation.  Prints per run: tokens/s and MFU over the steps
# after the warm-up, and the mean per-step phases from metrics.jsonl
# (data wait, forward, backward, optimizer, transfers; GPU phases are CUDA
# event times).
#
#   bench/run_gpu_bench.sh [--steps 30] [--warmup 5] [--runs "SPEC ..."] [--torch eager,compile|none]
#     SPEC = preset:micro_batch:grad_accum:offload(none|cpu|cpu-nopipe|param)[:gpus[:stage]],
#     default (cpu: offloadd's update pipelined with the next forward;
#     cpu-nopipe: the plain exchange, ZF_OFFLOAD_PIPELINE=0; param: cpu and
#     offload_param, stage 3; gpus: ranks, one
#     per GPU under mpirun, default 1; stage: ZeRO stage, default 2)
#     "gpt2-124m:32:1:none gpt2-124m:32:1:cpu gpt2-350m:16:4:none gpt2-350m:16:4:cpu"
#
# ZF_BENCH_ZERO='{"overlap_comm": false, ...}' merges keys into every run's
# zero_optimization, and ZF_BENCH_TAG=name is added to the runs' names (for
# A/B runs of one spec).  ZF_GPU_ZERO_ONE_RANK=1 makes one GPU take the
# ranks' ZeRO path (stages 2-3 through the layer store, NCCL over one rank).
#
# On a bare GPU machine run it from an unpacked bundle (tests/README);
# ZF_PYTHON must name a python3 with PyTorch + transformers for the baseline.
# MFU = tokens/s * (6 N + 6 L T d) / 989e12 (H100 SXM dense bf16 peak).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${ZF_PYTHON:-python3}
STEPS=30 WARMUP=5 TORCH=eager,compile
RUNS="gpt2-124m:32:1:none gpt2-124m:32:1:cpu gpt2-350m:16:4:none gpt2-350m:16:4:cpu"
while [ $# -gt 0 ]; do
  case $1 in
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --torch) TORCH=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
work=${ZF_BENCH_DIR:-$(mktemp -d /tmp/zf-gpubench.XXXXXX)}
mkdir -p "$work"
export ZF_CACHE_DIR=${ZF_CACHE_DIR:-$work/cache} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
echo "gpu bench: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n1), $(nproc) cores, $(date -u +%F)"
summary=$work/summary.txt
: >"$summary"
for spec in $RUNS; do
  IFS=: read -r model micro ga off gpus stage <<<"$spec"
  gpus=${gpus:-1} stage=${stage:-2}
  preset=$ROOT/config/models/$model.json   # or a config file of one's own (PATH.json)
  [[ "$model" == *.json ]] && { preset=$model; model=$(basename "$model" .json); }
  name="$model-b$micro-ga$ga-$off"
  [ "$gpus" = 1 ] && [ "$stage" = 2 ] && [ "${ZF_GPU_ZERO_ONE_RANK:-}" != 1 ] || name="$name-g$gpus-s$stage"
  name="$name${ZF_BENCH_TAG:+-$ZF_BENCH_TAG}"
  "$PY" - "$ROOT/config/zero-2.json" "$work/$name.json" "$ga" "$off" "$stage" <<'PY'
import json, os, sys
c = json.load(open(sys.argv[1]))
c["zero_optimization"].update(json.loads(os.environ.get("ZF_BENCH_ZERO") or "{}"))
c["fp16"] = {"enabled": False}
c["bf16"] = {"enabled": True}
c["gradient_accumulation_steps"] = int(sys.argv[3])
c["zero_optimization"]["stage"] = int(sys.argv[5])
if sys.argv[4] == "none":
    c["zero_optimization"].pop("offload_optimizer", None)
if sys.argv[4] == "param":  # stage 3: the parameters' home on the host too
    c["zero_optimization"]["offload_param"] = {"device": "cpu", "pin_memory": True}
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
  t0=$SECONDS
  pipe=1; [ "$off" = cpu-nopipe ] && pipe=0
  ZF_OFFLOAD_PIPELINE=$pipe scripts/run_pipeline.sh "$work/$name.json" --model_name "$preset" --batch_size "$micro" --max_length 1024 \
      --num_gpus "$gpus" --dataset_config bytes=${ZF_BENCH_BYTES:-8000000} --tokenizer_workers 8 --max_train_steps "$STEPS" \
      --max_eval_steps 1 --log_every 1 --generation_prompt "" --output_dir "$work/$name" >"$work/$name.out" 2>&1
  rc=$?
  if [ $rc != 0 ]; then
    echo "$name: pipeline failed (exit $rc)"; tail -n 15 "$work/$name.out"; continue
  fi
  echo "$name: pipeline wall $((SECONDS - t0)) s; $(grep -o 'computing on .*' "$work/$name.out" | head -n1)"
  "$PY" - "$work/$name/metrics.jsonl" "$preset" "$micro" "$ga" "$WARMUP" "$name" "$gpus" <<'PY' | tee -a "$summary"
import json, sys, statistics
path, preset, micro, ga, warm, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
gpus = int(sys.argv[7])
c = json.load(open(preset))
V = c["vocab_size"] if isinstance(c["vocab_size"], int) else 50257
L, d, P, T = c["n_layer"], c["n_embd"], c["n_positions"], 1024
N = V * d + P * d + L * (12 * d * d + 13 * d) + 2 * d  # GPT-2 parameters, tied head
rows = [json.loads(l) for l in open(path)]
rows = [r for r in rows if r.get("event") == "step" and r["step"] > warm]
if not rows:
    print(f"{name}: no timed steps"); sys.exit(0)
tok = micro * ga * T * gpus  # the global batch: every rank's
total = sum(r["step_s"] for r in rows)
tok_s = tok * len(rows) / total
mfu = tok_s * (6 * N + 6 * L * T * d) / 989e12 / gpus  # per GPU
ph = {k: 1e3 * statistics.mean(r.get(k, 0.0) for r in rows)
      for k in ("step_s", "data_wait_s", "forward_s", "backward_s", "optimizer_s", "transfer_s", "comm_s")}
other = ph["step_s"] - sum(v for k, v in ph.items() if k not in ("step_s", "comm_s"))
print(f"zeroflow {name}: {tok_s:,.0f} tok/s, MFU {100 * mfu:.1f}% over {len(rows)} steps; per step {ph['step_s']:.1f} ms = "
      f"data wait {ph['data_wait_s']:.1f} + forward {ph['forward_s']:.1f} + backward {ph['backward_s']:.1f} + "
      f"optimizer {ph['optimizer_s']:.1f} + transfers {ph['transfer_s']:.1f} + other {other:.1f} ms"
      + (f" (ZeRO collectives {ph['comm_s']:.1f} ms of GPU time, overlapped)" if ph["comm_s"] > 0 else "")
      + f"; loss {rows[-1]['loss']:.3f}")
print("JSON " + json.dumps(dict(impl="zeroflow", run=name, params=N, tok_s=tok_s, mfu=mfu, steps=len(rows), **ph)))
PY
done
if [ "$TORCH" != none ]; then
  declare -A seen
  for spec in $RUNS; do
    IFS=: read -r model micro _ <<<"$spec"
    [ -n "${seen[$model:$micro]:-}" ] && continue
    seen[$model:$micro]=1
    ZF_ROOT=$ROOT PYTHONUNBUFFERED=1 "$PY" bench/torch_gpt2_baseline.py --model "$model" --batch "$micro" --seq 1024 \
        --steps "$((STEPS - WARMUP > 10 ? STEPS - WARMUP : 10))" --warmup "$WARMUP" --modes "$TORCH" 2>&1 |
      grep -v "^JSON" | tee -a "$summary"
  done
fi
echo "=== summary ($work)"
cat "$summary" | grep -v "^JSON"
[ -n "${OUT:-}" ] && cp "$summary" "$OUT/gpu_bench_summary.txt" 2>/dev/null
exit 0
