#!/bin/sh
# Single-stream inference against llama.cpp (issue #13 item 5): the same random model as an HF
# folder for ftune and exported by `ftune export --format gguf --dtype f32` for llama.cpp (npm
# node-llama-cpp, prebuilt CPU binaries, bench/decode_peer.mjs), both fp32 weights, fp32 KV cache,
# the same threads; alternating the memory-bandwidth probe (bench/bw_probe.c), ftune
# (`ftune bench decode`) and llama.cpp ROUNDS times in this one invocation, then per config the best
# of each: decode tokens/s (goal >= 1.0x llama.cpp), time to first token for a PROMPT-token prompt
# (goal <= 1.0x), and decode tokens/s as a share of the bandwidth ceiling (measured GB/s over the
# weight bytes one decode step reads). llama.cpp also runs on one thread, and its best figure over
# both thread counts is the one compared (its spinning threads lose much on a busy machine).
#   CONFIGS="medium 1b" ROUNDS=3 PROMPT=512 GEN=64 sh bench/decode.bench.sh
# Configs: medium (the train-step bench's: V 32000, C 768, L 12, 12/4 heads, F 2048, untied) and
# 1b (Llama-3.2-1B's shape: V 128256, C 2048, L 16, 32/8 heads, F 8192, tied; 5 GB in fp32, twice
# on disk while it runs).
set -e
CONFIGS=${CONFIGS:-"medium 1b"}
ROUNDS=${ROUNDS:-3}
PROMPT=${PROMPT:-512}
GEN=${GEN:-64}
FTUNE=${FTUNE:-./build/ftune}
THREADS=${THREADS:-$(nproc)}
if [ ! -d tools/npm-llama/node_modules/node-llama-cpp ]; then
    echo "decode.bench: npm node-llama-cpp is missing: run make deps" >&2
    exit 1
fi
tmp=${BENCH_TMP:-$(mktemp -d)}
trap 'rm -rf "$tmp"' EXIT
${CC:-gcc} -O2 -std=c11 -D_GNU_SOURCE -march=native -fopenmp bench/bw_probe.c -o "$tmp/bw_probe"
echo "load average before: $(cat /proc/loadavg)"
for cfg in $CONFIGS; do
    case $cfg in
    medium) shape="--tokenizer tests/fixtures/tok/mistral-7b-v0.1 --vocab-size 32000 --hidden-size 768 --intermediate-size 2048 --layers 12 --heads 12 --kv-heads 4" ;;
    1b) shape="--tokenizer tests/fixtures/tok/llama3-instruct-rev2 --vocab-size 128256 --hidden-size 2048 --intermediate-size 8192 --layers 16 --heads 32 --kv-heads 8 --tie-embeddings --rope-theta 500000" ;;
    *) echo "unknown config $cfg" >&2; exit 2 ;;
    esac
    $FTUNE init-model --out "$tmp/$cfg" $shape --max-position-embeddings 4096 --seed 1 >/dev/null
    $FTUNE export --format gguf --dtype f32 "$tmp/$cfg" "$tmp/$cfg.gguf" >/dev/null
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        bw=$("$tmp/bw_probe" 1024 "$THREADS" 2>/dev/null)
        echo "bw $cfg $bw" >>"$tmp/results"
        f=$($FTUNE bench decode --model "$tmp/$cfg" --prompt-tokens "$PROMPT" --gen "$GEN" --threads "$THREADS" --json)
        echo "ftune $cfg $f" >>"$tmp/results"
        l=$(node bench/decode_peer.mjs "$tmp/$cfg.gguf" "$PROMPT" "$GEN" "$THREADS")
        echo "llama $cfg $l" >>"$tmp/results"
        echo "$cfg round $r: bandwidth $bw GB/s; ftune $f; llama.cpp $l"
        if [ "$THREADS" -gt 1 ]; then
            # llama.cpp's threads spin at their barriers: on a busy machine one thread can beat
            # two, so it also runs on one and the summary takes its better figure.
            l1=$(node bench/decode_peer.mjs "$tmp/$cfg.gguf" "$PROMPT" "$GEN" 1)
            echo "llama $cfg $l1" >>"$tmp/results"
            echo "$cfg round $r: llama.cpp on 1 thread $l1"
        fi
        r=$((r + 1))
    done
    rm -rf "$tmp/$cfg" "$tmp/$cfg.gguf"
done
echo "load average after: $(cat /proc/loadavg)"
/usr/bin/python3 - "$tmp/results" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    who, cfg, rest = line.split(" ", 2)
    rows.setdefault(cfg, {}).setdefault(who, []).append(float(rest) if who == "bw" else json.loads(rest))
for cfg, r in rows.items():
    bw = max(r["bw"])
    f_tps = max(x["decode_tok_s"] for x in r["ftune"]); l_tps = max(x["decode_tok_s"] for x in r["llama"])
    f_ttft = min(x["ttft_s"] for x in r["ftune"]); l_ttft = min(x["ttft_s"] for x in r["llama"])
    wb = r["ftune"][0]["weight_bytes_per_token"]
    ceil = bw * 1e9 / wb
    print(f"{cfg}: decode ftune {f_tps:.2f} tok/s, llama.cpp {l_tps:.2f} tok/s: {f_tps / l_tps:.2f}x (goal >= 1.0x); "
          f"time to first token ({r['ftune'][0]['prompt_tokens']} tokens) ftune {f_ttft:.3f} s, llama.cpp {l_ttft:.3f} s: "
          f"{f_ttft / l_ttft:.2f}x (goal <= 1.0x); bandwidth {bw:.1f} GB/s, {wb / 1e6:.0f} MB of weights per token: "
          f"ceiling {ceil:.1f} tok/s, ftune at {100 * f_tps / ceil:.0f}%, llama.cpp at {100 * l_tps / ceil:.0f}%")
PY
