#!/bin/sh
# Run the whole suite on the optimized build, then the unit tests under ASan+UBSan, and print one
# combined "N passed, N failed" line. Exit non-zero on any failure.
set -u
out=$(mktemp)
rc=0
echo "== tests (optimized build)"
FTUNE_BIN=build/ftune ./build/ftune_tests 2>&1 | tee "$out" || rc=1
p1=$(tail -n 1 "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1/p')
f1=$(tail -n 1 "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\2/p')
echo "== unit tests under ASan+UBSan"
FT_TEST_SAN=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    FTUNE_BIN=build-san/ftune ./build-san/ftune_tests 2>&1 | tee "$out" || rc=1
p2=$(tail -n 1 "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1/p')
f2=$(tail -n 1 "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\2/p')
rm -f "$out"
p=$(( ${p1:-0} + ${p2:-0} ))
f=$(( ${f1:-1} + ${f2:-1} ))
[ "$f" -eq 0 ] || rc=1
echo "$p passed, $f failed"
exit $rc
