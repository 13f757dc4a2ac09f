#!/bin/sh
# Chat templates: regenerate the Jinja2 reference renders (Debian python3-jinja2, set up as
# transformers does) into a scratch folder, check they equal the committed goldens in
# tests/fixtures/tpl, then check ftune against them (tests/tpl).
set -e
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/templates"
cp tests/fixtures/tpl/templates/*.jinja "$tmp/templates/"
/usr/bin/python3 tools/reference/tpl_gen.py "$tmp"
status=0
for f in conversations.jsonl templates.json snippets.jsonl snippet_vars.json; do
    cmp -s "$tmp/$f" "tests/fixtures/tpl/$f" || { echo "tpl: $f differs from a fresh Jinja2 run"; status=1; }
done
for f in "$tmp"/golden/*.jsonl; do
    cmp -s "$f" "tests/fixtures/tpl/golden/$(basename "$f")" || { echo "tpl: golden/$(basename "$f") differs"; status=1; }
done
[ $status -eq 0 ] && echo "tpl: Jinja2 $(/usr/bin/python3 -c 'import jinja2; print(jinja2.__version__)') reproduces every golden"
./build/ftune_tests tests/tpl || status=1
exit $status
