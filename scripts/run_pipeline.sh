#!/usr/bin/env bash
# run_pipeline.sh - start and supervise one zeroflow training run.
#
#   scripts/run_pipeline.sh zero-2|zero-3|PATH.json [flags]     (--help: all flags)
#
# Steps: install/check dependencies, build if needed, validate every input
# (nothing starts on bad input), prepare data and tokenizer, start the
# daemons (tokenizerd + workers, loaderd, offloadd, ckptd) in a private run
# directory, wait until each is ready, start the trainer, supervise.
# If any process dies, the run stops within seconds naming it with the tail
# of its log, exit code 1; no process or shared-memory segment is left.
# Exception: a tokenizer worker that exits with code 0 stopped gracefully
# (SIGTERM/SIGINT: it handed its job back) and the run goes on; workers may
# also join by hand: bin/tokenizerd worker --worker_id N --run_dir RUN_DIR
# --run_id RUN_ID --tokenizer DIR (the values are in the tokenizerd log).
# Ctrl-C / SIGTERM: the trainer checkpoints first (with --save_checkpoint),
# then everything stops cleanly (exit 128+signal).
# Data-parallel ranks (ZeRO): --world_size N (CPU, --num_gpus 0) or
# --num_gpus N (N > 1 GPUs, one rank each) start N trainer ranks under
# mpirun (scripts/zf_rank.sh; logs trainer-R.log); the daemons serve all of
# them; any rank dying stops the run naming it; SIGTERM reaches every rank
# (each checkpoints its partition).  ZF_LAUNCHER replaces the local
# "mpirun -np N --oversubscribe --bind-to none" (README: across nodes).
# --record PATH: tokenizerd also writes what it tokenized to a stream file;
# --replay PATH[,PATH...]: no tokenizerd or workers start, loaderd reads the
# splits from such files (lib/token_stream.h) and the dataset is not needed.
set -uo pipefail
# Idle OpenMP threads must sleep, not spin: on few cores spinning threads
# steal the CPU from OpenBLAS's and slow a step by up to 2.5x.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
say() { echo "zeroflow: $*" >&2; }

usage() {
  cat <<USAGE
usage: scripts/run_pipeline.sh zero-2|zero-3|PATH.json [flags]

  zero-2 / zero-3   DeepSpeed-style configs config/zero-2.json / config/zero-3.json
  PATH.json         any DeepSpeed-style config file (--deepspeed_config PATH also works)

Flags (same for every process; defaults shown):
USAGE
  "$BIN/trainer" --help 2>/dev/null | sed -n '/^ *--/,$p' || echo "  (build first to list the flags: make)"
}

[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in
  -h|--help) "$ROOT/scripts/install_deps.sh" --check >/dev/null 2>&1 && make -C "$ROOT" -s build >/dev/null 2>&1; usage; exit 0 ;;
  zero-2|zero-3) CONFIG=$ROOT/config/$1.json ;;
  -*) CONFIG="" ;;
  *) CONFIG=$1 ;;
esac
[[ "$1" == -* ]] || shift
ARGS=("$@")
[ -n "$CONFIG" ] && ARGS=(--deepspeed_config "$CONFIG" "${ARGS[@]}")

# Flags the supervisor itself needs (the C parser validates them all).
declare -A PID_OF NAME_OF
source "$ROOT/scripts/zf_daemons.sh"
OUTPUT_DIR=$(flag output_dir out)
NUM_GPUS=$(flag num_gpus 0)
WORLD=$(flag world_size 1)

# 1. dependencies and build (ZF_PREBUILT=1: use bin/ as it is, e.g. a
#    bundle from scripts/gpu_bundle.sh on a machine without the -dev packages)
if [ "${ZF_PREBUILT:-0}" = 1 ]; then
  [ -x "$BIN/trainer" ] || { say "ZF_PREBUILT=1 but $BIN/trainer is missing"; exit 1; }
else
"$ROOT/scripts/install_deps.sh" --ensure || exit 1
if ! make -C "$ROOT" -s --no-print-directory build >/tmp/zeroflow-build.$$.log 2>&1; then
  say "build failed:"; tail -n 30 /tmp/zeroflow-build.$$.log >&2; rm -f /tmp/zeroflow-build.$$.log; exit 1
fi
rm -f /tmp/zeroflow-build.$$.log
fi

# --num_gpus N > 1: one rank per GPU (rank R computes on GPU R % count)
if [[ "$NUM_GPUS" =~ ^[0-9]+$ ]] && [ "$NUM_GPUS" -gt 1 ]; then
  if [ "$WORLD" != 1 ] && [ "$WORLD" != "$NUM_GPUS" ]; then
    say "--num_gpus $NUM_GPUS with --world_size $WORLD: expected the same number (one rank per GPU) or no --world_size"; exit 1
  fi
  WORLD=$NUM_GPUS
  ARGS+=(--world_size "$WORLD")
fi

TRAINER=$BIN/trainer
if [ "$NUM_GPUS" != 0 ]; then
  if [ -x "$BIN/trainer_cuda" ] && gpus_here=$("$BIN/trainer_cuda" gpu-count 2>/dev/null); then
    TRAINER=$BIN/trainer_cuda
    # one rank per GPU: two ranks on one GPU would stop in NCCL's setup (a
    # launcher of one's own, ZF_LAUNCHER, may place the ranks on other nodes)
    if [ -z "${ZF_LAUNCHER:-}" ] && [[ "$NUM_GPUS" =~ ^[0-9]+$ ]] && [ "$NUM_GPUS" -gt "$gpus_here" ]; then
      say "--num_gpus $NUM_GPUS: this machine has $gpus_here usable GPU(s): expected at most $gpus_here (one rank per GPU)"
      exit 1
    fi
  else
    say "--num_gpus $NUM_GPUS: no usable GPU (or no CUDA build) on this machine; falling back to the CPU trainer"
    ARGS+=(--num_gpus 0)
  fi
fi

# 2. validate everything before anything starts
"$TRAINER" check "${ARGS[@]}" || exit 1

# 3. run directory, stale segments of dead runs, logs
"$BIN/monitor" sweep >/dev/null 2>&1 || true
RUN_ID="$$-$(printf '%06x' $((RANDOM * 32768 + RANDOM)))"
RUN_BASE=${XDG_RUNTIME_DIR:-/tmp}/zeroflow-$(id -u)
mkdir -p "$RUN_BASE" && chmod 700 "$RUN_BASE"
# run directories of dead runs (a supervisor or a node's janitor killed
# with SIGKILL): each name leads with the pid of the process that owns it
for d in "$RUN_BASE"/*/; do
  p=$(basename "$d"); p=${p%%-*}
  [[ "$p" =~ ^[0-9]+$ ]] && ! kill -0 "$p" 2>/dev/null && rm -rf "$d"
done
RUN_DIR=$RUN_BASE/$RUN_ID
mkdir -m 700 "$RUN_DIR" || { say "cannot create run directory $RUN_DIR"; exit 1; }
mkdir -p "$OUTPUT_DIR/logs" || { say "--output_dir: cannot create '$OUTPUT_DIR'"; exit 1; }
LOG_DIR=$(cd "$OUTPUT_DIR/logs" && pwd)
rm -f "$LOG_DIR"/*.exit   # a killed supervisor's; this run's ranks write theirs here
printf '{"run_id": "%s", "run_dir": "%s", "pid": %d}\n' "$RUN_ID" "$RUN_DIR" $$ > "$OUTPUT_DIR/run.json"
say "run $RUN_ID: logs in $LOG_DIR; watch it with: bin/monitor --output_dir $OUTPUT_DIR"

STATUS=0
STOPPING=0
MPI_SHM=""

# rank_pids: the pids of the ranks' wrappers and trainers still listed in the run dir
rank_pids() {
  local f
  for f in "$RUN_DIR"/trainer-*.pid; do [ -e "$f" ] && cat "$f"; done 2>/dev/null | tr ' ' '\n'
}

cleanup() {
  local pid ranks
  trap '' INT TERM   # a signal now would end the shell before the cleanup is done
  # the ranks, and every child (a launcher started just before a signal
  # came, whose pid was not recorded yet, too)
  ranks="$(rank_pids) $(pgrep -P $$ 2>/dev/null)"
  for pid in "${!NAME_OF[@]}" $ranks; do kill -TERM "$pid" 2>/dev/null; done
  local deadline=$((SECONDS + 5))
  for pid in "${!NAME_OF[@]}" $ranks; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  "$BIN/monitor" cleanup "$RUN_ID" >/dev/null 2>&1
  rm -rf "$RUN_DIR" ${MPI_SHM:+"$MPI_SHM"}
  rm -f "$LOG_DIR"/*.exit
  rm -f "$OUTPUT_DIR/run.json"
}
trap cleanup EXIT

on_signal() {
  local sig=$1
  # a second Ctrl-C / SIGTERM does not wait for the checkpoint: every
  # process gets SIGTERM, then SIGKILL after 5 s (the EXIT trap)
  [ $STOPPING = 1 ] && { say "second signal: stopping every process now"; exit "$STATUS"; }
  STOPPING=1; STATUS=$((128 + sig))
  if [ -n "${PID_OF[trainer]:-}" ] && [ "$WORLD" -gt 1 ]; then
    say "signal received: stopping the $WORLD ranks (each checkpoints its partition first when --save_checkpoint is on)"
    stop_ranks
  elif [ -n "${PID_OF[trainer]:-}" ]; then
    say "signal received: stopping the trainer (it checkpoints first when --save_checkpoint is on)"
    kill -TERM "${PID_OF[trainer]}" 2>/dev/null
  else
    exit "$STATUS"
  fi
}
# stop_ranks: SIGTERM straight to every rank's trainer (they agree on the
# step to stop after); the launcher itself if no rank has started yet
stop_ranks() {
  local r f n=0
  for ((r = 0; r < WORLD; r++)); do
    f=$RUN_DIR/trainer-$r.pid
    [ -e "$f" ] && { kill -TERM "$(cut -d' ' -f2 "$f")" 2>/dev/null; n=$((n + 1)); }
  done
  [ $n -gt 0 ] || kill -TERM "${PID_OF[trainer]}" 2>/dev/null
}

# failed_rank: "NAME RC" of the first rank (trainer-R), or daemon of another
# node (offloadd-n4, ...), that ended with a non-zero code, from the exit
# records the rank wrappers leave in the logs directory; empty if none did
failed_rank() {
  local f rc t best="" best_t=""
  for f in "$LOG_DIR"/*.exit; do
    [ -e "$f" ] || continue
    read -r rc t < "$f" || continue
    # a rank that ended with 0 did not fail; a daemon of another node is
    # recorded only when it ended while the run needed it
    [ "$rc" != 0 ] || [[ "$(basename "$f")" != trainer-* ]] || continue
    if [ -z "$best_t" ] || awk -v a="$t" -v b="$best_t" 'BEGIN{exit !(a < b)}'; then
      best="$(basename "$f" .exit) $rc"; best_t=$t
    fi
  done
  echo "$best"
}

trap 'on_signal 2' INT
trap 'on_signal 15' TERM

COMMON=(--run_dir "$RUN_DIR" --run_id "$RUN_ID" "${ARGS[@]}")

# A tokenizer worker that stopped gracefully (exit 0) returned its job to
# the coordinator, which leases it to another worker: the run goes on.
worker_left() { # worker_left NAME RC: 0 (and says so) if that is such an exit
  [[ "$1" == tokenizer-worker-* && "$2" == 0 ]] || return 1
  say "$1 stopped gracefully (exit 0); the run goes on with the other tokenizer workers"
}

fail_with() { # fail_with NAME RC
  local name=$1 rc=$2 how
  if [ "$rc" -gt 128 ]; then how="was killed by signal $((rc - 128))"; else how="exited with code $rc"; fi
  say "$name $how; stopping the run. Last lines of $LOG_DIR/$name.log:"
  tail -n 15 "$LOG_DIR/$name.log" 2>/dev/null | sed 's/^/  | /' >&2
  exit 1
}

# 4. prepare data and tokenizer (demo corpus, tokenizer training: cached)
TOKENIZER=$(ZF_LOG_FILE="$LOG_DIR/prepare.log" "$BIN/tokenizerd" prepare "${COMMON[@]}") || {
  say "data preparation failed (log: $LOG_DIR/prepare.log)"; exit 1; }
COMMON+=(--tokenizer "$TOKENIZER")

# 5. daemons (a replayed run has no tokenizer processes: loaderd reads the streams)
start_daemons "" "${COMMON[@]}"

deadline=$((SECONDS + 120))
for name in "${DAEMONS[@]}"; do
  until [ -e "$RUN_DIR/$name.ready" ]; do
    for pid in "${!NAME_OF[@]}"; do
      kill -0 "$pid" 2>/dev/null || {
        wait "$pid"; rc=$?
        worker_left "${NAME_OF[$pid]}" $rc && { unset "NAME_OF[$pid]"; continue; }
        fail_with "${NAME_OF[$pid]}" $rc; }
    done
    [ $SECONDS -lt $deadline ] || { say "$name did not become ready within 120 s"; fail_with "$name" 1; }
    [ $STOPPING = 1 ] && exit "$STATUS"
    sleep 0.05
  done
done

# 6. trainer: keeps the terminal for its progress bar; the others log to files.
#    N ranks: under the launcher, rank 0 on the terminal (and in trainer-0.log),
#    the launcher's own messages also in launcher.log.
if [ "$WORLD" -gt 1 ]; then
  if [ -n "${ZF_LAUNCHER:-}" ]; then
    read -r -a LAUNCH <<< "$ZF_LAUNCHER"
  else
    command -v mpirun >/dev/null || { say "--world_size $WORLD: mpirun not found (Debian: apt-get install openmpi-bin)"; exit 1; }
    LAUNCH=(mpirun -np "$WORLD" --oversubscribe --bind-to none)
    [ "$(id -u)" = 0 ] && LAUNCH+=(--allow-run-as-root)
    # Open MPI's shared-memory files go in a directory of this run, removed
    # at exit: a rank killed by a signal would leave them in /dev/shm.  As
    # an OMPI_MCA_ variable it reaches every node mpirun starts ranks on
    # (an allocation or default hostfile), where zf_rank.sh makes it.
    MPI_SHM=/dev/shm/zf.$(id -u).$RUN_ID.mpi
    if [ -d /dev/shm ] && mkdir -m 700 "$MPI_SHM" 2>/dev/null; then
      export OMPI_MCA_btl_vader_backing_directory=$MPI_SHM
    else
      MPI_SHM=""
    fi
  fi
  # threads: the cores (or the OMP_NUM_THREADS given) shared by the ranks, >= 1 each
  threads=$(( ${OMP_NUM_THREADS:-$(nproc)} / WORLD )); [ "$threads" -ge 1 ] || threads=1
  export OMP_NUM_THREADS=$threads OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  say "starting $WORLD trainer ranks ($threads OpenMP threads each): ${LAUNCH[*]}"
  setsid "${LAUNCH[@]}" "$ROOT/scripts/zf_rank.sh" "$RUN_DIR" "$LOG_DIR" "$TRAINER" train "${COMMON[@]}" \
    2> >(tee -a "$LOG_DIR/launcher.log" >&2) &
else
  ZF_LOG_FILE="$LOG_DIR/trainer.log" setsid "$TRAINER" train "${COMMON[@]}" &
fi
PID_OF[trainer]=$!; NAME_OF[$!]=trainer

# 7. supervise: the first process to end decides
while :; do
  done_pid=""
  wait -n -p done_pid "${!NAME_OF[@]}"
  rc=$?
  if [ -z "${done_pid:-}" ]; then continue; fi   # a trapped signal interrupted wait
  name=${NAME_OF[$done_pid]}
  unset "NAME_OF[$done_pid]"
  if [ "$name" = trainer ]; then
    if [ $rc != 0 ] && [ "$WORLD" -gt 1 ]; then
      read -r rank_name rank_rc <<< "$(failed_rank)"
      [ -n "${rank_name:-}" ] && fail_with "$rank_name" "$rank_rc"
      say "the launcher ended with code $rc before any rank reported its exit"
      fail_with launcher "$rc"
    fi
    [ $rc = 0 ] || fail_with trainer "$rc"
    exit "$STATUS"
  fi
  worker_left "$name" "$rc" && continue
  fail_with "$name" "$rc"
done
