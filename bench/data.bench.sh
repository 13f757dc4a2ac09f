#!/bin/sh
# Data preparation throughput (issue #4): validation and one loader epoch over >= 100 MB of
# generated chat JSONL with the Llama 3 Instruct tokenizer and chat template, in tokens/s,
# against the rate at which a training step of the medium config consumes tokens
# (build/ftune bench train-step --config medium --json), measured in the same run.
# Env: DATA_MB (default 100), DATA_T (context length, default 2048), DATA_THREADS (default: all).
set -e
MB=${DATA_MB:-100}
T=${DATA_T:-2048}
TH=${DATA_THREADS:-0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
BUILD=${BUILD:-build}
[ -f "$BUILD/libftune.a" ] || make -s all
LIBS=$(sed -n 's/^LDLIBS *+= *//p' Makefile | head -1)
${CC:-gcc} -O2 -std=c11 -D_GNU_SOURCE -fopenmp -Iinclude bench/data_bench.c "$BUILD/libftune.a" $LIBS -o "$tmp/data_bench"
# The fixture's tokenizer_config.json has model_max_length 1e30, which jansson cannot hold as an
# integer; the benchmark only needs the tokenizer and the template.
mkdir -p "$tmp/tok"
cp tests/fixtures/tok/llama3-instruct-rev2/tokenizer.json "$tmp/tok/"
sed 's/"model_max_length": *[0-9]\{20,\}/"model_max_length": 8192/' \
    tests/fixtures/tok/llama3-instruct-rev2/tokenizer_config.json > "$tmp/tok/tokenizer_config.json"
/usr/bin/python3 bench/data_gen.py "$tmp/chat.jsonl" "$MB"
echo "data: $(du -m "$tmp/chat.jsonl" | cut -f1) MB of chat JSONL, context length $T"
out=$("$tmp/data_bench" "$tmp/tok" "$tmp/chat.jsonl" "$T" 8 "$TH")
echo "data: $out"
prep=$(echo "$out" | sed -n 's/.*"loader_tokens_per_s": \([0-9.]*\).*/\1/p')
step=""
if "$BUILD/ftune" bench train-step --help >/dev/null 2>&1; then
    js=$("$BUILD/ftune" bench train-step --config medium --steps 1 --warmup 0 --json 2>/dev/null || true)
    step=$(echo "$js" | tr -d '\n ' | sed -n 's/.*"tokens_per_s":\([0-9.eE+]*\).*/\1/p')
fi
if [ -n "$step" ]; then
    echo "data: loader $prep tokens/s vs medium training step $step tokens/s: ratio $(awk "BEGIN{printf \"%.1f\", $prep/$step}")x (>1: the trainer never waits)"
else
    echo "data: loader $prep tokens/s; training-step rate unavailable (build/ftune bench train-step not present)"
fi
