#!/usr/bin/env bash
# zf_rank.sh - one data-parallel trainer rank, as the launcher (mpirun, srun)
# starts it for scripts/run_pipeline.sh:
#
#   zf_rank.sh RUN_DIR LOG_DIR TRAINER train ARGS...
#
# The rank comes from the launcher's environment (OMPI_COMM_WORLD_RANK of
# Open MPI, PMI_RANK, or SLURM_PROCID) and is passed on as --rank; the
# rank's index on its node likewise (OMPI_COMM_WORLD_LOCAL_RANK,
# MPI_LOCALRANKID, SLURM_LOCALID) as --local_rank.  Rank 0 keeps the
# launcher's stdout/stderr (the progress bar) and also logs to
# LOG_DIR/trainer-0.log; rank R > 0 logs only to LOG_DIR/trainer-R.log.
# The wrapper stays the trainer's parent so that the supervisor learns each
# rank's fate: RUN_DIR/trainer-R.pid holds "WRAPPER_PID TRAINER_PID" while it
# runs (the supervisor sends SIGTERM straight to the trainer to stop it), and
# LOG_DIR/trainer-R.exit "EXIT_CODE SECONDS_SINCE_EPOCH" once it ended (the
# logs directory is shared by every node), so the first rank to fail can be
# named.  SIGTERM/SIGINT reaching the wrapper (the launcher stopping the
# job) are passed on to the trainer.
#
# Several nodes: run_pipeline.sh starts the daemons of its own node, which
# hold rank 0.  On every other node the first rank's wrapper (local rank 0)
# starts that node's daemons (scripts/zf_daemons.sh) in a run directory and
# run id of their own ($XDG_RUNTIME_DIR or /tmp, then
# zeroflow-<uid>/<pid>-<run id>n<first rank>, as run_pipeline.sh picks it), logging
# to LOG_DIR/NAME-n<first rank>.log, and its other ranks wait for them.  If
# one of them dies, the wrapper writes LOG_DIR/NAME-n<first rank>.exit and
# kills the node's trainers, so the launcher ends the job and the supervisor
# names that daemon.  The node's cleanup (its processes of the run, shared
# memory, run directory) is done by a janitor, this script run again with
# --janitor in a session of its own, which waits for the wrapper to end:
# launchers kill a rank's whole process group (Open MPI: SIGTERM, then
# SIGKILL a second later), which would cut a cleanup in the wrapper short.
# After a rank that ended well it lets the node's other trainers finish
# first (up to 30 s); after a failure it stops them at once.  Every node must
# see LOG_DIR, the output directory, the tokenizer and the data at the same
# paths (a shared file system).
# Test hook ZF_TEST_RANKS_PER_NODE=K: ranks are placed K to a node (ranks
# 0..K-1 on the first), so several nodes can be tried on one machine.
set -u
# ${EPOCHREALTIME/,/.}: a point, whatever the locale's decimal separator
now() { echo "${EPOCHREALTIME/,/.}"; }

# zf_rank.sh --janitor WRAPPER_PID NODE_DIR NODE_FLAG NODE_ID EXIT_RECORD BIN SUPERVISOR_RUN_DIR [MPI_SHM]
if [ "${1:-}" = --janitor ]; then
  wrapper=$2 node_dir=$3 node_flag=$4 node_id=$5 exit_record=$6 bin=$7 supervisor_dir=$8 mpi_shm=${9:-}
  trap '' TERM INT HUP
  while kill -0 "$wrapper" 2>/dev/null; do sleep 0.2; done
  read -r rc _ < "$exit_record" 2>/dev/null || rc=1
  procs() { pgrep -f -- "--run_id $node_id( |\$)"; }
  if [ "$rc" = 0 ]; then   # the node's other ranks may still be finishing with the daemons
    deadline=$((SECONDS + 30))
    for f in "$node_dir"/trainer-*.pid; do
      [ -e "$f" ] || continue
      pid=$(cut -d' ' -f2 "$f")
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    done
  fi
  pids=$(procs)
  [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
  deadline=$((SECONDS + 5))
  while [ -n "$(procs)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  pids=$(procs)
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  "$bin/monitor" cleanup "$node_id" >/dev/null 2>&1
  rm -rf "$node_dir" "$node_flag"
  # Open MPI's files of the run on this node, unless this is also the
  # supervisor's machine (ZF_TEST_RANKS_PER_NODE), whose cleanup removes them
  [ -n "$mpi_shm" ] && [ ! -d "$supervisor_dir" ] && rm -rf "$mpi_shm"
  exit 0
fi

[ $# -ge 4 ] || { echo "usage: zf_rank.sh RUN_DIR LOG_DIR TRAINER train ARGS..." >&2; exit 2; }
run_dir=$1 log_dir=$2 trainer=$3
shift 3
rank=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${SLURM_PROCID:-}}}
if ! [[ "$rank" =~ ^[0-9]+$ ]]; then
  echo "zf_rank.sh: expected the rank in OMPI_COMM_WORLD_RANK, PMI_RANK or SLURM_PROCID (start it with mpirun or srun)" >&2
  exit 2
fi
local_rank=${OMPI_COMM_WORLD_LOCAL_RANK:-${MPI_LOCALRANKID:-${SLURM_LOCALID:-}}}
[ -n "${ZF_TEST_RANKS_PER_NODE:-}" ] && local_rank=$((rank % ZF_TEST_RANKS_PER_NODE))
[[ "$local_rank" =~ ^[0-9]+$ ]] || local_rank=$rank   # no node information: one node
node_first=$((rank - local_rank))
log=$log_dir/trainer-$rank.log
# the directory run_pipeline.sh names for Open MPI's shared memory exists on
# its own node only: each rank makes it on its node before MPI starts
vader=${OMPI_MCA_btl_vader_backing_directory:-}
[ -n "$vader" ] && { mkdir -p "$vader" && chmod 700 "$vader"; } 2>/dev/null
say() { echo "zeroflow: $*" >&2; }

# ---- the daemons of a node other than the supervisor's
declare -A PID_OF=() NAME_OF=()
if [ "$node_first" -gt 0 ]; then
  ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  BIN=$ROOT/bin LOG_DIR=$log_dir
  ARGS=("${@:2}")
  source "$ROOT/scripts/zf_daemons.sh"
  run_id=$(flag run_id "")
  sfx=-n$node_first
  # this node's own base for run directories (as run_pipeline.sh picks it)
  node_base=${XDG_RUNTIME_DIR:-/tmp}/zeroflow-$(id -u)
  node_flag=$node_base/$run_id.node$node_first   # the node's run directory and run id, for its ranks
  if [ "$local_rank" = 0 ]; then
    node_id="$$-${run_id//-/}n$node_first"  # leads with a live pid: 'monitor sweep' keeps it
    node_dir=$node_base/$node_id
    mkdir -p "$node_base" && chmod 700 "$node_base" && mkdir -m 700 "$node_dir" ||
      { say "node of rank $node_first: cannot create $node_dir"; exit 1; }
    setsid -f "$BASH" "${BASH_SOURCE[0]}" --janitor $$ "$node_dir" "$node_flag" "$node_id" \
      "$log_dir/trainer-$rank.exit" "$BIN" "$run_dir" "${OMPI_MCA_btl_vader_backing_directory:-}" </dev/null >/dev/null 2>&1
    start_daemons "$sfx" "${ARGS[@]}" --run_dir "$node_dir" --run_id "$node_id"
    deadline=$((SECONDS + 120))
    for name in "${DAEMONS[@]}"; do
      until [ -e "$node_dir/$name.ready" ]; do
        kill -0 "${PID_OF[$name$sfx]}" 2>/dev/null || { say "node of rank $node_first: $name$sfx did not start (log: $LOG_DIR/$name$sfx.log)"; exit 1; }
        [ $SECONDS -lt $deadline ] || { say "node of rank $node_first: $name$sfx not ready within 120 s"; exit 1; }
        sleep 0.05
      done
    done
    echo "$node_id $node_dir" > "$node_flag.tmp" && mv "$node_flag.tmp" "$node_flag"
  else
    deadline=$((SECONDS + 180))
    until [ -e "$node_flag" ]; do
      [ $SECONDS -lt $deadline ] || { say "rank $rank: the daemons of its node (first rank $node_first) not ready within 180 s (are a node's ranks consecutive? mpirun --map-by slot, srun --distribution=block)"; exit 1; }
      sleep 0.1
    done
    read -r node_id node_dir < "$node_flag"
  fi
  set -- "$@" --run_dir "$node_dir" --run_id "$node_id"
  run_dir=$node_dir
fi

# a signal before the trainer runs stops it as soon as it does
pid="" stop_asked=0
trap 'stop_asked=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' TERM INT
if [ "$rank" = 0 ]; then
  ZF_LOG_FILE=$log "$trainer" "$@" --rank "$rank" --local_rank "$local_rank" &
else
  unset ZF_LOG_FILE
  "$trainer" "$@" --rank "$rank" --local_rank "$local_rank" >>"$log" 2>&1 </dev/null &
fi
pid=$!
echo "$$ $pid" > "$run_dir/trainer-$rank.pid"
[ $stop_asked = 1 ] && kill -TERM "$pid" 2>/dev/null
# bash's own job reports ("Killed ...") would only repeat what the run's
# messages say: the wrapper's stderr goes to fd 3, its own shell stderr away
exec 3>&2 2>/dev/null
say() { echo "zeroflow: $*" >&3; }
rc=""
# this node's daemons, if the wrapper started them: the first to end with an
# error stops the node's ranks
while [ ${#NAME_OF[@]} -gt 0 ] && [ -z "$rc" ]; do
  done_pid=""
  wait -n -p done_pid "$pid" "${!NAME_OF[@]}"
  drc=$?
  [ -n "${done_pid:-}" ] || continue   # a trapped signal interrupted wait (and unset done_pid)
  if [ "$done_pid" = "$pid" ]; then rc=$drc; break; fi
  name=${NAME_OF[$done_pid]}
  unset "NAME_OF[$done_pid]"
  [[ "$name" == tokenizer-worker-* && $drc == 0 ]] && continue   # a worker that left gracefully
  echo "$drc $(now)" > "$log_dir/$name.exit"
  say "node of rank $node_first: $name ended with code $drc; stopping the node's ranks"
  for f in "$run_dir"/trainer-*.pid; do [ -e "$f" ] && kill -KILL "$(cut -d' ' -f2 "$f")" 2>/dev/null; done
done
if [ -z "$rc" ]; then
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
  wait "$pid"
  rc=$?
fi
echo "$rc $(now)" > "$log_dir/trainer-$rank.exit"
exit "$rc"
