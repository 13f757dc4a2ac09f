#!/bin/sh
# Regenerate every reference file with the independent implementations (PyTorch, HF tokenizers,
# Jinja2) and check ftune against them: runs each tools/reference/*.sh in turn.
set -e
fail=0
for s in tools/reference/*.sh; do
    [ -f "$s" ] || continue
    echo "== $s"
    sh "$s" || fail=1
done
exit $fail
