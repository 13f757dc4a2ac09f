#!/bin/sh
# A Llama-3.2-1B-shaped model fine-tuned end to end by `ftune create` (issue #10 item 4): the model
# written by `ftune init-model` at the 1B shape (vocab 128256, hidden 2048, 16 layers, 32 heads, 8
# KV heads, intermediate 8192, tied embeddings, llama3 RoPE, bf16 weights) with the Llama 3
# tokenizer of tests/fixtures, generated chat data, STEPS optimizer steps of one 2048-token row
# (AdamW), within the memory planner's limit. Prints the planner's prediction, the measured peak
# RSS (VmHWM of the training process, from /usr/bin/time), tokens/s and the run's dtype and GEMM
# route. Takes minutes (and ~20 GiB) on a 2-core machine: not a `make test`.
#   DTYPE=bf16 STEPS=3 sh bench/create_1b.sh
#   DTYPE=fp32 MEMORY_LIMIT=22G sh bench/create_1b.sh
# HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS shrink the shape for a quick try of the script.
set -e
DTYPE=${DTYPE:-bf16}
STEPS=${STEPS:-3}
T=${T:-2048}
FTUNE=${FTUNE:-$(pwd)/build/ftune}
MEMORY_LIMIT=${MEMORY_LIMIT:-}
TOK=${TOK:-$(pwd)/tests/fixtures/tok/llama3-instruct-rev2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export FTUNE_HOME="$tmp/home"

"$FTUNE" init-model --out "$tmp/llama-1b" --vocab-size 128256 --hidden-size "${HIDDEN:-2048}" \
    --intermediate-size "${INTERMEDIATE:-8192}" --layers "${LAYERS:-16}" --heads "${HEADS:-32}" \
    --kv-heads "${KV_HEADS:-8}" --tie-embeddings --rope-theta 500000 --max-position-embeddings 131072 \
    --rope-scaling-llama3 32 --rope-original-max-position-embeddings 8192 --tokenizer "$TOK" --dtype bfloat16 \
    --seed 1 >/dev/null

# Chat rows long enough that packing fills T-token rows: STEPS rows of T tokens and some spare.
/usr/bin/python3 - "$tmp/train.jsonl" "$T" "$STEPS" <<'EOF'
import json, random, sys
path, T, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(3)
words = "the a model data train step memory token layer weight gradient matrix value loss".split()
with open(path, "w") as f:
    # about 1.3 tokens a word: ~T/8 tokens per conversation, 8 per packed row, rows for every step
    for _ in range(10 * steps + 10):
        q = " ".join(random.choice(words) for _ in range(T // 40))
        a = " ".join(random.choice(words) for _ in range(T // 16))
        f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
EOF

limit=""
[ -n "$MEMORY_LIMIT" ] && limit="--memory-limit $MEMORY_LIMIT"
echo "load average before: $(cat /proc/loadavg)"
start=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$tmp/maxrss" "$FTUNE" create --model "$tmp/llama-1b" --train-data-path "$tmp/train.jsonl" \
    --register-to main.bench --name llama1b --context-length "$T" --global-batch-size 1 --micro-batch-size 1 \
    --training-duration "${STEPS}ba" --save-interval 1000ba --eval-max-new-tokens 1 --learning-rate 1e-5 \
    --dtype "$DTYPE" $limit >"$tmp/create.out" 2>&1 || { cat "$tmp/create.out"; exit 1; }
end=$(date +%s.%N)
echo "load average after: $(cat /proc/loadavg)"
grep -i -E "predicted|memory|dtype|COMPLETED|FAILED" "$tmp/create.out" | head -20
"$FTUNE" events llama1b | grep -E "MODEL_INITIALIZED|COMPLETED" | cut -c1-600
"$FTUNE" get llama1b | grep -E "status|dtype|loss"
# step times from the metrics (train_step_time when recorded) and the whole run's wall time
"$FTUNE" metrics llama1b --json >"$tmp/metrics.json" || true
/usr/bin/python3 - "$tmp/metrics.json" "$tmp/maxrss" "$T" "$STEPS" "$start" "$end" <<'EOF'
import json, sys
mpath, rss_path, T, steps, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
rss_kib = int(open(rss_path).read().split()[-1])
try:
    ms = json.load(open(mpath))
except Exception:
    ms = []
names = sorted({m.get("name") for m in ms})
tps = [m["value"] for m in ms if m.get("name") in ("tokens_per_s", "throughput_tokens_per_s")]
print(f"measured peak RSS {rss_kib / 1048576:.2f} GiB; whole create {end - start:.0f} s for {steps} steps of {T} tokens")
if tps:
    print(f"tokens/s per step: {', '.join(f'{v:.1f}' for v in tps)} (best {max(tps):.1f})")
else:
    print(f"metrics recorded: {names}")
EOF
