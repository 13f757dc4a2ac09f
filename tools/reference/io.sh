#!/bin/sh
# tools/reference/io.sh: regenerate PyTorch's fp32 -> bf16/fp16 conversions
# (tests/io/gen_rounding_golden.py), compare with the committed fixture, and run ftune's
# conversion test against the fresh file. Part of `make check-reference`.
set -e
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/root/tests/fixtures/io"
/usr/bin/python3 tests/io/gen_rounding_golden.py "$out/root/tests/fixtures/io/torch_rounding.safetensors"
status=0
if ! cmp -s "$out/root/tests/fixtures/io/torch_rounding.safetensors" tests/fixtures/io/torch_rounding.safetensors; then
    echo "io.sh: tests/fixtures/io/torch_rounding.safetensors differs from a fresh PyTorch run"
    status=1
fi
FT_TEST_ROOT="$out/root" ./build/ftune_tests io_rounding_matches_torch || status=1
[ $status = 0 ] && echo "io.sh: PyTorch conversions reproduce and ftune matches them"
exit $status
