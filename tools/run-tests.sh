#!/bin/sh
# Run the whole suite on the optimized build, then the unit tests under ASan+UBSan, and print one
# combined "N passed, N failed, N skipped" line. Exit non-zero when any test failed, when a test
# binary exits non-zero or dies by a signal, or when its output has no summary line (a crash of the
# runner itself). Output is shown live and kept to read the summary; the exit
# status of each binary is taken from the binary, not from the pipeline (POSIX sh has no pipefail).
set -u
out=$(mktemp)
st=$(mktemp)
trap 'rm -f "$out" "$st"' EXIT
rc=0
p=0
f=0
s=0

# run LABEL ENV... BINARY: runs the binary with the environment assignments, adds its counts.
run() {
    label=$1
    shift
    echo "== $label"
    ( env "$@" 2>&1; echo "$?" >"$st" ) | tee "$out"
    status=$(cat "$st")
    counts=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 \3/p' "$out" | tail -n 1)
    if [ -z "$counts" ]; then
        echo "run-tests: $label: the test binary ended without its summary line (exit status $status)" >&2
        counts="0 1 0"
        rc=1
    fi
    if [ "$status" != 0 ]; then
        echo "run-tests: $label: the test binary exited with status $status" >&2
        rc=1
    fi
    set -- $counts
    p=$((p + $1))
    f=$((f + $2))
    s=$((s + $3))
    if [ "$2" -gt 0 ]; then
        rc=1
    fi
}

run "tests (optimized build)" FTUNE_BIN=build/ftune ./build/ftune_tests
run "unit tests under ASan+UBSan" FT_TEST_SAN=1 ASAN_OPTIONS=detect_leaks=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 FTUNE_BIN=build-san/ftune ./build-san/ftune_tests
# The data-parallel tests (tests/comm/) under mpirun on the MPI=1 build: the runs above skip the
# ones that need MPI (counted as skipped), this one runs them.
if [ -x build-mpi/ftune_tests ]; then
    run "data-parallel tests (MPI=1 build)" FTUNE_BIN=build-mpi/ftune ./build-mpi/ftune_tests comm/
else
    echo "run-tests: build-mpi/ftune_tests is missing (make MPI=1): the MPI tests were not run" >&2
    rc=1
fi
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1 # a binary failed without counting a failed test: never print "0 failed" then
fi
echo "$p passed, $f failed, $s skipped"
exit $rc
