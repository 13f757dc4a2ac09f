#!/bin/sh
# Regenerate the data goldens (samples with HF tokenizers, packing layout with Python) and
# compare them with the committed ones in tests/fixtures/data.
set -e
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 tools/reference/chat_golden.py "$tmp/chat_render.json"
node tools/reference/data_golden.js "$tmp"
/usr/bin/python3 tools/reference/pack_golden.py "$tmp"
for f in chat_render.json golden_samples.json golden_pack.json; do
    if ! cmp -s "$tmp/$f" "tests/fixtures/data/$f"; then
        echo "data: $f differs from the regenerated reference" >&2
        exit 1
    fi
done
echo "data: goldens match (samples: HF tokenizers, packing: Python)"
