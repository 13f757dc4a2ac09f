#!/bin/sh
# The model against PyTorch: regenerate the goldens with the independent float64 PyTorch
# implementation (tests/reference/) into a temporary folder; check that every regenerated golden
# matches the committed one in tests/fixtures/reference/ (bitwise, or within the tolerances stated
# in tools/reference/compare_goldens.py), and that the comparison catches a perturbed copy; then
# run ftune's model tests on the fresh goldens (logits, loss, every gradient, AdamW and Lion
# trajectories; issue #2 item 8 tolerances) and the `ftune debug forward` end-to-end check.
set -e
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 tests/reference/gen_goldens.py "$tmp"
/usr/bin/python3 tools/reference/compare_goldens.py tests/fixtures/reference "$tmp"
/usr/bin/python3 tools/reference/compare_goldens.py --self-check tests/fixtures/reference
FT_REFERENCE_DIR="$tmp" FTUNE_BIN=build/ftune ./build/ftune_tests model_reference
FT_REFERENCE_DIR="$tmp" FTUNE_BIN=build/ftune ./build/ftune_tests debug_forward
