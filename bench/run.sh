#!/bin/sh
# Every benchmark: each bench/*.bench.sh runs ftune and its peer in one invocation and prints
# the ratio.
set -e
for s in bench/*.bench.sh; do
    [ -f "$s" ] || continue
    echo "== $s"
    sh "$s"
done
