#!/usr/bin/env bash
# zf_rank.sh - one data-parallel trainer rank, as the launcher (mpirun, srun)
# starts it for scripts/run_pipeline.sh:
#
#   zf_rank.sh RUN_DIR LOG_DIR TRAINER ARGS...
#
# The rank comes from the launcher's environment (OMPI_COMM_WORLD_RANK of
# Open MPI, PMI_RANK, or SLURM_PROCID) and is passed on as --rank.  Rank 0
# keeps the launcher's stdout/stderr (the progress bar) and also logs to
# LOG_DIR/trainer-0.log; rank R > 0 logs only to LOG_DIR/trainer-R.log.
# The wrapper stays the trainer's parent so that the supervisor learns each
# rank's fate: RUN_DIR/trainer-R.pid holds "WRAPPER_PID TRAINER_PID" while it
# runs (the supervisor sends SIGTERM straight to the trainer to stop it), and
# RUN_DIR/trainer-R.exit "EXIT_CODE SECONDS_SINCE_EPOCH" once it ended, so the
# first rank to fail can be named.  SIGTERM/SIGINT reaching the wrapper (the
# launcher stopping the job) are passed on to the trainer.
set -u
[ $# -ge 3 ] || { echo "usage: zf_rank.sh RUN_DIR LOG_DIR TRAINER ARGS..." >&2; exit 2; }
run_dir=$1 log_dir=$2
shift 2
rank=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${SLURM_PROCID:-}}}
if ! [[ "$rank" =~ ^[0-9]+$ ]]; then
  echo "zf_rank.sh: expected the rank in OMPI_COMM_WORLD_RANK, PMI_RANK or SLURM_PROCID (start it with mpirun or srun)" >&2
  exit 2
fi
log=$log_dir/trainer-$rank.log
if [ "$rank" = 0 ]; then
  ZF_LOG_FILE=$log "$@" --rank "$rank" &
else
  unset ZF_LOG_FILE
  "$@" --rank "$rank" >>"$log" 2>&1 </dev/null &
fi
pid=$!
echo "$$ $pid" > "$run_dir/trainer-$rank.pid"
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
wait "$pid"
rc=$?
echo "$rc $EPOCHREALTIME" > "$run_dir/trainer-$rank.exit"
exit "$rc"
