#!/usr/bin/env bash
# Tokenizer throughput: the library on one thread, the pipeline's
# coordinator + N worker processes, Hugging Face tokenizers and tiktoken.
#
#   bench/run_tokenizer_bench.sh [--text FILE] [--tokenizer DIR] [--mb 64] [--vocab_size 8192]
#                                [--workers "1 2 4 8 16"] [--repeat 3] [--baselines 1]
#
# --text: a text file (documents separated by blank lines, as the pipeline
# reads --dataset_name FILE); default: the embedded demo corpus, --mb MB of
# it.  --tokenizer: vocab.json + merges.txt or tokenizer.json; default: the
# vocabulary zeroflow trains for that corpus (--vocab_size tokens, cached).
# Worker counts above nproc are skipped.  Measures, in MB of text per second:
#   (a) zf_bpe_encode on one thread (bin/bench/bench_tokenizer), and per N
#       on N threads with no messages and no copies (64 KiB chunks of
#       documents taken from a shared counter): the ceiling for N workers on
#       this machine; and N unrelated processes, each the one-thread
#       library over the whole text, started together ("N procs": summed
#       MB/s; only the machine is shared): what N workers could reach at best;
#   (b) tokenizerd serve + N tokenizerd worker processes: from the first job
#       leased to the last split assembled in shared memory (the workers are
#       started and ready first), best and median of --repeat runs, with the
#       per-split token hashes checked against (a); "% lin." is the MB/s over
#       N x the 1-worker figure (best over best, median over median);
#       "busy" is the workers' encoding time over N x that time, "wait" the
#       time they waited for a job between their first job and their last
#       result over the same, "coord. CPU" the coordinator's CPU time over
#       that time, "last join" when the last worker got its first job (all
#       of the best run);
#   (c) tiktoken on one thread (an Encoding of the same vocabulary and the
#       GPT-2 pattern) and, per N (unless --baselines 0), Hugging Face
#       tokenizers encode_batch on N threads and tiktoken
#       encode_ordinary_batch on N threads, their ids compared with (a);
#       --baselines none: no Python at all.
# ZF_TOKENIZERD=PATH runs (b) with another tokenizerd binary (to compare builds);
# ZF_BENCH_KEEP=1 keeps the work directory (every run's coordinator and worker logs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TEXT="" TOK="" MB=64 VOCAB=8192 WORKERS="1 2 4 8 16" REPEAT=3 BASELINES=1
while [ $# -gt 0 ]; do
  case "$1" in
    --text) TEXT=$2; shift 2 ;;
    --tokenizer) TOK=$2; shift 2 ;;
    --mb) MB=$2; shift 2 ;;
    --vocab_size) VOCAB=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --baselines) BASELINES=$2; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "${ZF_PREBUILT:-0}" != 1 ]; then
  make -s bin/tokenizerd bin/monitor bin/bench/bench_tokenizer
  tests/py_env.sh >/dev/null
fi
PY=${ZF_PYTHON:-$ROOT/.venv/bin/python}
TOKD=${ZF_TOKENIZERD:-bin/tokenizerd}
NPROC=$(nproc)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zf-tokbench.XXXXXX")
[ -n "${ZF_BENCH_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT

if [ -z "$TEXT" ]; then
  # the demo corpus and its trained vocabulary, through the pipeline's own prepare step
  CFG=(--dataset_name demo --dataset_config "bytes=$((MB * 1000000))" --vocab_size "$VOCAB")
  T=$(bin/tokenizerd prepare "${CFG[@]}") || { echo "prepare failed" >&2; exit 1; }
  [ -n "$TOK" ] || TOK=$T
  CACHE=${ZF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/zeroflow}
  # one file holding the three splits' documents, in the pipeline's format
  for s in train validation test; do
    f=$(ls -d "$CACHE"/demo-*-$((MB * 1000000))/$s.txt 2>/dev/null | head -n 1)
    [ -n "$f" ] && { cat "$f"; printf '\n\n'; }
  done > "$WORK/demo.txt"
  TEXT=$WORK/demo.txt
fi
[ -n "$TOK" ] || { echo "--tokenizer: expected a tokenizer directory with --text" >&2; exit 2; }
[ -f "$TEXT" ] || { echo "--text: '$TEXT' is not a file" >&2; exit 2; }
TEXT=$(cd "$(dirname "$TEXT")" && pwd)/$(basename "$TEXT")

echo "machine: $NPROC cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "text: $TEXT ($(du -h "$TEXT" | cut -f1)); tokenizer: $TOK"
echo
echo "(a) library, one thread (and N threads, no messages, no copies)"
NT=$(for n in $WORKERS; do if [ "$n" -le "$NPROC" ] && [ "$n" -gt 1 ]; then printf '%s,' "$n"; fi; done)
bin/bench/bench_tokenizer --tokenizer "$TOK" --text "$TEXT" --repeat "$REPEAT" --dump "$WORK/ref" \
  ${NT:+--threads "${NT%,}"} | tee "$WORK/a.txt"
grep '^split ' "$WORK/a.txt" | sort > "$WORK/ref.hashes"
ONE=$(sed -n 's/^zeroflow 1 thread: \([0-9.]*\) MB\/s.*/\1/p' "$WORK/a.txt")
if [ "$BASELINES" = none ]; then
  echo "tiktoken 1 thread: not measured (--baselines none)" > "$WORK/tt1.txt"
else
  "$PY" bench/tokenizer_baselines.py --dump "$WORK/ref" --tokenizer "$TOK" --repeat "$REPEAT" --tiktoken-single \
    | tee "$WORK/tt1.txt"
fi
echo

# coordinator + N workers, run outside any pipeline (own private run directory)
pipeline_run() { # pipeline_run N K: one run; leaves $WORK/coordN.K.log, $WORK/wN.K.log
  local n=$1 k=$2 rd rid i pids=() coord log t
  rd=$(mktemp -d "${XDG_RUNTIME_DIR:-/tmp}/zf-tb.XXXXXX"); chmod 700 "$rd"
  rid="$$-tb$n-$k"
  for ((i = 1; i <= n; i++)); do
    "$TOKD" worker --worker_id "$i" --run_dir "$rd" --run_id "$rid" --tokenizer "$TOK" 2>>"$WORK/w$n.$k.log" &
    pids+=($!)
  done
  t=$SECONDS
  for ((i = 1; i <= n; i++)); do
    until [ -e "$rd/tokenizer-worker-$i.ready" ]; do
      [ $((SECONDS - t)) -lt 60 ] || { echo "worker $i not ready" >&2; return 1; }
      sleep 0.02
    done
  done
  log=$WORK/coord$n.$k.log
  "$TOKD" serve --run_dir "$rd" --run_id "$rid" --tokenizer "$TOK" --dataset_name "$TEXT" 2>"$log" &
  coord=$!
  t=$SECONDS
  until grep -q 'tokenized .* MB/s' "$log" 2>/dev/null; do
    kill -0 $coord 2>/dev/null || { cat "$log" >&2; return 1; }
    [ $((SECONDS - t)) -lt 600 ] || { echo "timeout" >&2; return 1; }
    sleep 0.05
  done
  kill -TERM $coord; wait $coord || true
  for i in "${pids[@]}"; do wait "$i" || true; done   # the coordinator told them to stop
  bin/monitor cleanup "$rid" >/dev/null 2>&1 || true
  rm -rf "$rd"
  sed -n 's/.*\(split [a-z]*: .* fnv1a64 [0-9a-f]*\)$/\1/p' "$log" | sort > "$WORK/p$n.$k.hashes"
  cmp -s "$WORK/p$n.$k.hashes" "$WORK/ref.hashes" || { echo "N=$n: tokens differ from (a)" >&2; diff "$WORK/ref.hashes" "$WORK/p$n.$k.hashes" >&2; return 1; }
}
pipeline_mbps() { # pipeline_mbps N: REPEAT runs: "best-MB/s median-MB/s busy% wait% coordinator-cpu% last-join-ms"
  local n=$1 k best="" bk=0 z all=()
  for ((k = 1; k <= REPEAT; k++)); do
    pipeline_run "$n" "$k" || return 1
    z=$(sed -n 's/.*tokenized .* (\([0-9.]*\) MB\/s).*/\1/p' "$WORK/coord$n.$k.log")
    all+=("$z")
    if [ -z "$best" ] || awk -v a="$z" -v b="$best" 'BEGIN{exit !(a > b)}'; then best=$z; bk=$k; fi
  done
  local med secs busy wait join cpu
  med=$(printf '%s\n' "${all[@]}" | sort -g | awk '{v[NR] = $1} END {printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
  secs=$(sed -n 's/.*tokenized .* in \([0-9.]*\) s (.*/\1/p' "$WORK/coord$n.$bk.log")
  busy=$(sed -n 's/.*tokenized in \([0-9.]*\) s of work.*/\1/p' "$WORK/w$n.$bk.log" |
         awk -v n="$n" -v s="$secs" '{b += $1} END {printf "%.0f", (s > 0 ? 100 * b / (n * s) : 0)}')
  wait=$(sed -n 's/.* \([0-9.]*\) s of that waiting for a job.*/\1/p' "$WORK/w$n.$bk.log" |
         awk -v n="$n" -v s="$secs" '{b += $1} END {printf "%.0f", (s > 0 ? 100 * b / (n * s) : 0)}')
  cpu=$(sed -n 's/.*coordinator used \([0-9.]*\) s of CPU.*/\1/p' "$WORK/coord$n.$bk.log" |
        awk -v s="$secs" '{printf "%.0f", (s > 0 ? 100 * $1 / s : 0)}')
  join=$(sed -n 's/.*first lease at +\([0-9.]*\) ms.*/\1/p' "$WORK/coord$n.$bk.log" | sort -g | tail -n 1)
  echo "$best $med ${busy:-?} ${wait:-?} ${cpu:-?} ${join:-?}"
}

# N unrelated processes, each the one-thread library over the whole text,
# started together: nothing shared but the machine (clock, caches, memory),
# so their summed MB/s is what N workers could reach at best
indep_mbps() { # indep_mbps N: summed MB/s of N concurrent one-thread runs
  local n=$1 i
  for ((i = 1; i <= n; i++)); do
    bin/bench/bench_tokenizer --tokenizer "$TOK" --text "$TEXT" --repeat 2 >"$WORK/ind$n.$i.txt" 2>&1 &
  done
  wait
  cat "$WORK"/ind"$n".*.txt | sed -n 's/^zeroflow 1 thread: \([0-9.]*\) MB\/s.*/\1/p' | awk '{s += $1} END {printf "%.1f", s}'
}

echo "(b) coordinator + N workers (best and median of $REPEAT runs), (c) baselines with N threads"
hdr() {
  printf '%-4s %9s %9s %7s %7s %7s %18s %18s %5s %5s %7s %7s %16s %16s\n' "$@"
}
hdr N "MB/s best" median "x 1" "% lin." "% med." "lib N threads MB/s" "N procs MB/s" busy wait "coord." "last" \
  "HF tok. MB/s" "tiktoken MB/s"
hdr "" "" "" "worker" "(best)" "(med.)" "(% of 1 thread)" "(% of 1 thread)" "%" "%" "CPU %" "join ms" "" ""
first="" firstmed=""
for n in $WORKERS; do
  [ "$n" -le "$NPROC" ] || { echo "N=$n: skipped (only $NPROC cores)"; continue; }
  read -r z med busy wait cpu join < <(pipeline_mbps "$n") || exit 1
  [ -n "$z" ] || exit 1
  [ -n "$first" ] || { first=$z; firstmed=$med; }
  hf=- tt=-
  if [ "$BASELINES" = 1 ]; then
    base=$(RAYON_NUM_THREADS=$n "$PY" bench/tokenizer_baselines.py --dump "$WORK/ref" --tokenizer "$TOK" \
           --threads "$n" --repeat "$REPEAT")
    hf=$(sed -n 's/^hf_tokenizers .*: \([0-9.]*\) MB\/s (identical ids: \(.*\))/\1 (\2)/p' <<<"$base")
    tt=$(sed -n 's/^tiktoken .*: \([0-9.]*\) MB\/s (identical ids: \(.*\))/\1 (\2)/p' <<<"$base")
  fi
  if [ "$n" = 1 ]; then lib=$ONE; else lib=$(sed -n "s/^zeroflow $n threads: \([0-9.]*\) MB\/s.*/\1/p" "$WORK/a.txt"); fi
  lib=$(awk -v l="$lib" -v o="$ONE" -v n="$n" 'BEGIN{printf "%.1f (%.0f%%)", l, 100 * l / (o * n)}')
  if [ "$n" = 1 ]; then ind=$ONE; else ind=$(indep_mbps "$n"); fi
  ind=$(awk -v l="$ind" -v o="$ONE" -v n="$n" 'BEGIN{printf "%.1f (%.0f%%)", l, 100 * l / (o * n)}')
  sp=$(awk -v z="$z" -v f="$first" 'BEGIN{printf "%.2f", z / f}')
  lin=$(awk -v z="$z" -v f="$first" -v n="$n" 'BEGIN{printf "%.0f", 100 * z / (f * n)}')
  linm=$(awk -v z="$med" -v f="$firstmed" -v n="$n" 'BEGIN{printf "%.0f", 100 * z / (f * n)}')
  hdr "$n" "$z" "$med" "$sp" "$lin" "$linm" "$lib" "$ind" "$busy" "$wait" "$cpu" "$join" "$hf" "$tt"
done
echo
echo "zeroflow tokens identical to (a) for every N; (yes) = the baseline's ids are identical too."
echo "one thread: zeroflow $ONE MB/s, $(sed 's/ (identical.*//' "$WORK/tt1.txt")"
