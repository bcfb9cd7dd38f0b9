# zf_daemons.sh - starting one node's daemons (sourced by run_pipeline.sh for
# the node it runs on, and by zf_rank.sh for every other node of a run whose
# ranks span several nodes).
#
# The caller sets BIN, LOG_DIR, ARGS (the run's flags), declares the
# associative arrays PID_OF and NAME_OF (name <-> pid of what it supervises)
# and sources this file.

# flag NAME DEFAULT: the last value of --NAME in ARGS (the C parser validates)
flag() {
  local name=$1 val=$2 i
  for ((i = 0; i < ${#ARGS[@]}; i++)); do
    case "${ARGS[$i]}" in
      --$name=*) val=${ARGS[$i]#--$name=} ;;
      --$name) if ((i + 1 < ${#ARGS[@]})) && [[ "${ARGS[$((i+1))]}" != --* ]]; then val=${ARGS[$((i+1))]}; else val=true; fi ;;
    esac
  done
  echo "$val"
}

# start NAME CMD...: own session (no terminal signals), log LOG_DIR/NAME.log, tracked
start() {
  local name=$1; shift
  # only the trainer multiplies matrices: one OpenBLAS thread keeps the
  # library's spinning thread pool out of every other daemon
  OPENBLAS_NUM_THREADS=1 setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 &
  PID_OF[$name]=$!; NAME_OF[$!]=$name
}

# start_daemons SUFFIX DAEMON_ARGS...: tokenizerd and its workers (not when
# the run replays recorded streams), loaderd, offloadd and ckptd, each logging
# to LOG_DIR/NAME<SUFFIX>.log.  DAEMONS gets their names in start order
# (without the suffix): each writes RUN_DIR/NAME.ready once it serves.
start_daemons() {
  local sfx=$1 w workers replay
  shift
  workers=$(flag tokenizer_workers 2)
  replay=$(flag replay "")
  DAEMONS=(loaderd offloadd ckptd)
  if [ -z "$replay" ]; then
    DAEMONS=(tokenizerd "${DAEMONS[@]}")
    : > "$LOG_DIR/tokenizerd$sfx.log"
    start "tokenizerd$sfx" "$BIN/tokenizerd" serve "$@"
    for ((w = 1; w <= workers; w++)); do
      start "tokenizer-worker-$w$sfx" "$BIN/tokenizerd" worker --worker_id "$w" "$@"
    done
  fi
  start "loaderd$sfx" "$BIN/loaderd" "$@"
  start "offloadd$sfx" "$BIN/offloadd" "$@"
  start "ckptd$sfx" "$BIN/ckptd" "$@"
}
