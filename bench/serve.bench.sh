#!/bin/sh
# Serving throughput (issue #13 item 5): `ftune bench serve` on the medium bench model (random
# weights, fp32), in this one invocation: single-stream decode tokens/s, aggregate tokens/s of 8
# concurrent streams through the continuous-batching engine and their ratio (goal >= 3x), and
# the time to first token of a 512-token prompt. Rounds alternate single / batched / TTFT and the
# best of each is kept. Then, for the single and the batched measurement (all rounds), where a
# decoding step's time goes (the layers' weight products, attention, the LM head, the rest of the
# model, the logits processing after it), the prefill steps, and the CPU seconds beside the wall
# time (on a shared machine: how much of the cores the run had). (bench/decode.bench.sh compares
# single-stream decoding with llama.cpp.)
#   CONFIGS="medium 1b" ROUNDS=3 sh bench/serve.bench.sh
set -e
CONFIGS=${CONFIGS:-"medium"}
ROUNDS=${ROUNDS:-2}
STREAMS=${STREAMS:-8}
FTUNE=${FTUNE:-./build/ftune}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); threads: $(nproc)"
for cfg in $CONFIGS; do
    "$FTUNE" bench serve --config "$cfg" --streams "$STREAMS" --rounds "$ROUNDS" --new-tokens 64 --prompt-tokens 32 \
        --ttft-prompt 512 --json | /usr/bin/python3 -c '
import json, sys
line = sys.stdin.read()
print(line.strip())
r = json.loads(line)
ok = "meets" if r["ratio"] >= 3.0 else "BELOW"
print("serve %s: 1 stream %.1f tokens/s, %d streams %.1f tokens/s: %.2fx (goal >= 3x: %s); TTFT %d-token prompt %.0f ms"
      % (r["model"], r["single_tokens_per_s"], r["streams"], r["aggregate_tokens_per_s"], r["ratio"], ok,
         r["ttft_prompt_tokens"], r["ttft_s"] * 1e3))
for name in ("single", "batched"):
    p = r[name]
    print("  %s: %d decoding steps of %.1f rows, %.1f ms/step, %.1f CPU-ms/step (products %.1f, attention %.1f, LM head "
          "%.1f, rest of the model %.1f, logits processing %.1f ms); %d prefill steps %.2f s; %.1f CPU-s in %.1f s wall "
          "(%.2f cores)"
          % (name, p["decode_steps"], p["decode_rows"] / max(p["decode_steps"], 1), p["step_ms"], p["step_cpu_ms"],
             p["matmul_ms"], p["attention_ms"], p["head_ms"], p["other_model_ms"], p["logits_ms"], p["prefill_steps"],
             p["prefill_s"], p["cpu_s"], p["wall_s"], p["cpu_s"] / max(p["wall_s"], 1e-9)))
s, b = r["single"], r["batched"]
if s["step_cpu_ms"] > 0 and b["step_cpu_ms"] > 0:
    print("  decoding tokens per CPU-second: 1 stream %.2f, %d streams %.2f: %.2fx (the ratio with the waits for a "
          "shared machine taken out)" % (1e3 / s["step_cpu_ms"], r["streams"], 1e3 * b["decode_rows"] / b["decode_steps"]
          / b["step_cpu_ms"], (b["decode_rows"] / b["decode_steps"]) * s["step_cpu_ms"] / b["step_cpu_ms"]))'
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
