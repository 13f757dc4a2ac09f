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
# The writer against an independent reader: init-model folders (fp32 single file; bf16 sharded,
# tied, GQA with head_dim != hidden/heads) parsed by tests/io/check_hf_folder.py.
./build/ftune init-model --out "$out/m32" --vocab-size 512 --hidden-size 64 --intermediate-size 160 --layers 2 \
    --heads 4 --kv-heads 2 --seed 1 >/dev/null || status=1
/usr/bin/python3 tests/io/check_hf_folder.py "$out/m32" || status=1
./build/ftune init-model --out "$out/m16" --vocab-size 512 --hidden-size 64 --intermediate-size 160 --layers 3 \
    --heads 4 --kv-heads 1 --head-dim 32 --tie-embeddings --dtype bfloat16 --shard-size 40000 --seed 2 \
    >/dev/null || status=1
/usr/bin/python3 tests/io/check_hf_folder.py "$out/m16" || status=1
[ $status = 0 ] && echo "io.sh: PyTorch conversions reproduce, ftune matches them, and its HF folders read back independently"
exit $status
