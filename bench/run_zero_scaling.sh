#!/usr/bin/env bash
# ZeRO scaling table (issue #7): GPT-2 350M and 774M, ZeRO-2 and ZeRO-3,
# optimizer on the GPUs and offloaded to offloadd, on each GPU count given,
# through bench/run_gpu_bench.sh (bf16, T 1024; micro batch per GPU, so the
# global batch grows with the GPUs).  One GPU takes the ranks' path
# (ZF_GPU_ZERO_ONE_RANK=1) so that every count runs the same code.  Prints a
# table: tokens/s, scaling efficiency against one GPU (tokens/s over
# N x one GPU's), rank 0's device memory line, and the GPU time in the
# collectives (comm_s) per step.
#
#   bench/run_zero_scaling.sh [--gpus "1 2 4 8"] [--models "gpt2-350m:16:4 gpt2-774m:8:4"]
#                             [--stages "2 3"] [--offload "none cpu"] [--steps 20] [--warmup 5]
#
# Counts above the machine's GPUs are skipped.  Run from an unpacked bundle
# (tests/README).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${ZF_PYTHON:-python3}
GPUS="1 2 4 8" MODELS="gpt2-350m:16:4 gpt2-774m:8:4" STAGES="2 3" OFFLOAD="none cpu" STEPS=20 WARMUP=5
while [ $# -gt 0 ]; do
  case $1 in
    --gpus) GPUS=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --stages) STAGES=$2; shift 2 ;;
    --offload) OFFLOAD=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
have=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
work=${ZF_BENCH_DIR:-$(mktemp -d /tmp/zf-scaling.XXXXXX)}
mkdir -p "$work"
for g in $GPUS; do
  [ "$g" -le "$have" ] || { echo "skipped: $g GPUs (this machine has $have)"; continue; }
  runs=""
  for m in $MODELS; do for s in $STAGES; do for o in $OFFLOAD; do runs+=" $m:$o:$g:$s"; done; done; done
  one=0; [ "$g" = 1 ] && one=1
  ZF_GPU_ZERO_ONE_RANK=$one ZF_BENCH_DIR="$work/g$g" bench/run_gpu_bench.sh --torch none --steps "$STEPS" \
      --warmup "$WARMUP" --runs "$runs" >"$work/g$g.out" 2>&1
  grep "^zeroflow\|failed" "$work/g$g.out"
done
"$PY" - "$work" <<'PY'
import glob, json, os, re, sys
work = sys.argv[1]
rows = {}
for path in glob.glob(f"{work}/g*/summary.txt"):
    g = int(re.search(r"/g(\d+)/summary.txt$", path).group(1))
    for line in open(path):
        if not line.startswith("JSON "):
            continue
        r = json.loads(line[5:])
        if r.get("impl") != "zeroflow":
            continue
        name = r["run"]
        m = re.match(r"(.+)-b(\d+)-ga(\d+)-(\w+?)(?:-g\d+-s(\d))?$", name)
        model, off, stage = m.group(1), m.group(4), int(m.group(5) or 2)
        mem = ""
        for log in sorted(glob.glob(f"{work}/g{g}/{name}/logs/trainer*.log"))[:1]:
            for l in open(log):
                if "device memory:" in l:
                    mem = l.split("device memory:", 1)[1].split(";")[0].strip()
        rows[(model, stage, off, g)] = (r["tok_s"], r.get("comm_s", 0.0), mem)
print("| model | stage | optimizer | GPUs | tokens/s | efficiency | collectives ms/step | rank 0 device memory |")
print("|---|---|---|---:|---:|---:|---:|---|")
for (model, stage, off, g), (tok, comm, mem) in sorted(rows.items()):
    base = rows.get((model, stage, off, 1))
    eff = f"{100 * tok / (g * base[0]):.1f}%" if base else "-"
    print(f"| {model} | {stage} | {'offloadd' if off == 'cpu' else 'GPU'} | {g} | {tok:,.0f} | {eff} | {comm:.1f} | {mem} |")
PY
