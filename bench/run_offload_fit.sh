#!/usr/bin/env bash
# ZeRO-3 with parameter offload trains a model that does not fit one GPU
# without it (issue #6's acceptance, meant for two H200s):
#   1. the model on one GPU without offload (ZeRO-2, optimizer and
#      parameters on the GPU) must stop at the start with the trainer's
#      "does not fit this GPU" error;
#   2. the same model with zero-3 (offload_param + offload_optimizer) on
#      --gpus N GPUs trains --steps steps with a finite loss.
# Prints both outcomes, the ranks' device-memory lines and tokens/s.
#
#   bench/run_offload_fit.sh [--model bench/models/gpt2-8b.json] [--gpus 2] [--micro 4] [--steps 5]
#
# gpt2-8b (8.27B parameters) needs 18 bytes a parameter without offload
# (149 GB: more than an H200's 141 GB before any activation) and 16 bytes
# a parameter of host memory with full offload (132 GB, plus the other
# processes': the 2-GPU machine has 256 GiB).  Run from an unpacked bundle
# (tests/README).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODEL=bench/models/gpt2-8b.json GPUS=2 MICRO=4 STEPS=5
while [ $# -gt 0 ]; do
  case $1 in
    --model) MODEL=$2; shift 2 ;;
    --gpus) GPUS=$2; shift 2 ;;
    --micro) MICRO=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
work=${ZF_BENCH_DIR:-$(mktemp -d /tmp/zf-fit.XXXXXX)}
mkdir -p "$work"
echo "offload fit: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -n1) x $(nvidia-smi -L 2>/dev/null | grep -c '^GPU'), host $(free -g | awk '/Mem/{print $2}') GiB, model $MODEL, $(date -u +%F)"
# 1. one GPU, nothing offloaded: the trainer must refuse before training
ZF_BENCH_DIR="$work/plain" bench/run_gpu_bench.sh --torch none --steps 2 --warmup 1 \
  --runs "$MODEL:$MICRO:1:none:1:2" >"$work/plain.out" 2>&1
why=$(grep -rhoa "does not fit this GPU[^;]*" "$work/plain" 2>/dev/null | head -n 1)
if [ -n "$why" ]; then
  echo "one GPU without offload: refused ($why)"
else
  echo "one GPU without offload: NOT refused as expected (see $work/plain.out)"; grep "^zeroflow\|failed" "$work/plain.out"
  tail -n 3 "$work"/plain/*/logs/trainer.log 2>/dev/null
fi
# 2. zero-3 with everything offloaded on GPUS GPUs
ZF_BENCH_DIR="$work/z3" bench/run_gpu_bench.sh --torch none --steps "$STEPS" --warmup 2 \
  --runs "$MODEL:$MICRO:1:param:$GPUS:3" >"$work/z3.out" 2>&1
grep "^zeroflow\|failed" "$work/z3.out"
grep -h "device memory" "$work"/z3/*/logs/trainer*.log | cut -c1-300
