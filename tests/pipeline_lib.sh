# pipeline_lib.sh - shared helpers of the shell tests that run whole pipelines
# (sourced, not run).  Runs are small: the zf-tiny preset on a 600 kB demo
# corpus, with caches under build/test-cache so the tokenizer is trained once.
set -u
ROOT=${ZF_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export ZF_CACHE_DIR=$ROOT/build/test-cache
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
TINY=(--model_name zf-tiny --dataset_config bytes=600000 --vocab_size 1024 --batch_size 4 --max_length 64
      --max_eval_steps 4 --tokenizer_workers 2 --log_every 1)

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*" >&2; }

# new_out: a fresh output directory, inside the test's one temporary
# directory.  That one is made here, in the test's own shell: `x=$(new_out)`
# runs in a subshell, which could not add to a list the exit trap reads.
ZF_TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/zf-test.XXXXXX")
ZF_TEST_DIRS=("$ZF_TEST_TMP")   # removed at exit (a test may add its own)
new_out() {
  mktemp -d "$ZF_TEST_TMP/out.XXXXXX"
}
trap 'rm -rf "${ZF_TEST_DIRS[@]}"' EXIT

# run_id_of OUT: the run id of the pipeline writing to OUT (empty if none)
run_id_of() { sed -n 's/.*"run_id": "\([^"]*\)".*/\1/p' "$1/run.json" 2>/dev/null; }
# run_id_in FILE: the run id announced in a pipeline's output
run_id_in() { sed -n 's/^zeroflow: run \([0-9a-f-]*\):.*/\1/p' "$1" | head -n 1; }
run_dir_of() { sed -n 's/.*"run_dir": "\([^"]*\)".*/\1/p' "$1/run.json" 2>/dev/null; }

# wait_for_steps OUT N TIMEOUT: until the trainer has logged step N
wait_for_steps() {
  local out=$1 n=$2 limit=$3 start=$SECONDS
  while [ $((SECONDS - start)) -lt "$limit" ]; do
    if grep -q "\"step\": *$n[,}]" "$out/metrics.jsonl" 2>/dev/null || grep -q "\"step\":$n," "$out/metrics.jsonl" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

# wait_bounded PID LIMIT OUT: wait for a background pipeline and return its
# exit code; one still running after LIMIT seconds has hung: the last lines of
# its logs are shown, it gets a second SIGTERM (which stops everything) and
# the test fails instead of waiting for the suite's timeout
wait_bounded() {
  local pid=$1 limit=$2 out=$3 start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    if [ $((SECONDS - start)) -ge "$limit" ]; then
      tail -n 8 "$out/stdout" "$out"/logs/*.log >&2 2>/dev/null
      kill -TERM "$pid" 2>/dev/null; sleep 0.5; kill -TERM "$pid" 2>/dev/null
      wait "$pid"
      fail "the run had not stopped ${limit}s after the signal"
    fi
    sleep 0.1
  done
  wait "$pid"
}

# assert_clean RUN_ID: no process and no shared memory of that run remain
assert_clean() {
  local run=$1
  [ -n "$run" ] || fail "no run id"
  if pgrep -f -- "--run_id $run" >/dev/null; then
    pgrep -af -- "--run_id $run" >&2
    fail "processes of run $run are still alive"
  fi
  if ls /dev/shm/ 2>/dev/null | grep -q "^zf\.$(id -u)\.$run\."; then
    ls /dev/shm | grep "^zf\.$(id -u)\.$run\." >&2
    fail "shared memory of run $run was left behind"
  fi
}

# zf_py ARGS...: the tests' Python with tests/py on its path (zf_testlib)
zf_py() { PYTHONPATH="$ROOT/tests/py${PYTHONPATH:+:$PYTHONPATH}" "${ZF_PYTHON:-python3}" "$@"; }

# step_losses FILE: "step loss" lines from metrics.jsonl step events
step_losses() {
  zf_py -c 'import sys, zf_testlib as t
for s, r in sorted(t.step_rows(sys.argv[1]).items()): print(s, repr(r["loss"]))' "$1"
}
