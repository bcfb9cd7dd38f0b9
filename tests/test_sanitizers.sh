#!/usr/bin/env bash
# The C unit tests again, built with AddressSanitizer and
# UndefinedBehaviorSanitizer: an out-of-bounds access, a use after free or
# undefined arithmetic anywhere they reach fails the test with the sanitizer's
# report (leak checking off: daemons keep some allocations for their life).
# The build is a copy of the tracked tree under build/sanitize (the normal
# build/ and bin/ are not touched).  ZF_SANITIZE_TESTS="test_ckpt test_bpe"
# limits the run to those tests.
source "$(dirname "$0")/pipeline_lib.sh"
command -v gcc >/dev/null || { echo "gcc not found"; exit 77; }
echo 'int main(void){return 0;}' > "${TMPDIR:-/tmp}/zf-asan-probe.$$.c"
if ! gcc -fsanitize=address,undefined "${TMPDIR:-/tmp}/zf-asan-probe.$$.c" -o "${TMPDIR:-/tmp}/zf-asan-probe.$$" 2>/dev/null; then
  rm -f "${TMPDIR:-/tmp}/zf-asan-probe.$$"*
  echo "this gcc cannot build with -fsanitize=address,undefined (libasan/libubsan missing)"; exit 77
fi
rm -f "${TMPDIR:-/tmp}/zf-asan-probe.$$"*

src=$ROOT/build/sanitize
mkdir -p "$src"
# the tracked sources (or, outside a git checkout, the tree without builds)
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar xf - -C "$src"
else
  (cd "$ROOT" && tar --exclude=./build --exclude=./bin --exclude=./.venv -cf - .) | tar xf - -C "$src"
fi
tests=${ZF_SANITIZE_TESTS:-$(cd "$src/tests/c" && ls test_*.c | sed 's/\.c$//')}
targets=()
for t in $tests; do targets+=("bin/tests/$t"); done
note "building ${#targets[@]} C tests with -fsanitize=address,undefined"
CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
LDFLAGS="-fsanitize=address,undefined" \
  make -C "$src" -s -j2 NVCC= "${targets[@]}" >"$src/build.log" 2>&1 || { tail -n 30 "$src/build.log" >&2; fail "sanitizer build failed"; }

failed=0
for t in $tests; do
  log=$src/$t.log
  if ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
     timeout 600 "$src/bin/tests/$t" >"$log" 2>&1; then
    note "$t: clean"
  else
    rc=$?
    [ $rc = 77 ] && { note "$t: skipped"; continue; }
    grep -A12 -E "ERROR: AddressSanitizer|runtime error" "$log" | head -n 30 >&2 || tail -n 20 "$log" >&2
    note "$t: FAILED (exit $rc, log $log)"
    failed=1
  fi
done
[ $failed = 0 ] || fail "a C test failed under the sanitizers"
echo "sanitizers ok"
