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
. bench/data_common.sh
data_bench_setup data_bench "$MB"
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
