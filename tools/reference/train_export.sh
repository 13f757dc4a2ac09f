#!/bin/sh
# Train the tiny synthetic task (the trainer's own test), then check the exported HF folder with
# an independent reader and the PyTorch reference model (tests/train/check_export.py).
set -e
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
FT_TEST_KEEP=1 TMPDIR="$tmp" build/ftune_tests train_learns_synthetic_task >/dev/null
model=$(ls -d "$tmp"/ftune-tests-*/train_learns_synthetic_task/learn/model)
/usr/bin/python3 tests/train/check_export.py "$model" build/ftune
