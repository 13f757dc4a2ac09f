#!/bin/sh
# Serving throughput (issue #13 item 5): `ftune bench serve` on the medium bench model (random
# weights, fp32), in this one invocation: single-stream decode tokens/s, aggregate tokens/s of 8
# concurrent streams through the continuous-batching engine and their ratio (goal >= 3x), and
# the time to first token of a 512-token prompt. Rounds alternate single / batched / TTFT and the
# best of each is kept. (bench/decode.bench.sh compares single-stream decoding with llama.cpp.)
#   CONFIGS="medium 1b" ROUNDS=3 sh bench/serve.bench.sh
set -e
CONFIGS=${CONFIGS:-"medium"}
ROUNDS=${ROUNDS:-2}
STREAMS=${STREAMS:-8}
FTUNE=${FTUNE:-./build/ftune}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); threads: $(nproc)"
for cfg in $CONFIGS; do
    "$FTUNE" bench serve --config "$cfg" --streams "$STREAMS" --rounds "$ROUNDS" --new-tokens 64 --prompt-tokens 32 \
        --ttft-prompt 512 --json | tee /dev/stderr | /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
ok = "meets" if r["ratio"] >= 3.0 else "BELOW"
print("serve %s: 1 stream %.1f tokens/s, %d streams %.1f tokens/s: %.2fx (goal >= 3x: %s); TTFT %d-token prompt %.0f ms"
      % (r["model"], r["single_tokens_per_s"], r["streams"], r["aggregate_tokens_per_s"], r["ratio"], ok,
         r["ttft_prompt_tokens"], r["ttft_s"] * 1e3))'
done
