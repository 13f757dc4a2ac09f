#!/bin/sh
# The built-in demo (`make demo`, which first installs the Debian packages and builds ftune).
#
# A newcomer sees a model learn a task on a laptop-class CPU, through the same commands a user
# runs: a small randomly initialised Llama-architecture model with Mistral's real 32k tokenizer
# (tests/fixtures/tok/) is fine-tuned on a synthetic named-entity task (extract the person and
# the city from a sentence, chat format), measured on a held-out split before and after, then
# registered and asked about a sentence it has never seen. See docs/demo.md for the figures.
#
# Settings (environment): DEMO_DIR (work folder, default a fresh /tmp/ftune-demo.XXXXXX),
# DEMO_THREADS (2), DEMO_STEPS (training steps), DEMO_DTYPE (fp32 | bf16 | auto: the run's --dtype,
# default fp32), FTUNE (the binary, default build/ftune).
set -e
cd "$(dirname "$0")/.."
FTUNE=${FTUNE:-$PWD/build/ftune}
PY=/usr/bin/python3
THREADS=${DEMO_THREADS:-2}
STEPS=${DEMO_STEPS:-200}
DTYPE=${DEMO_DTYPE:-fp32}
WORK=${DEMO_DIR:-$(mktemp -d /tmp/ftune-demo.XXXXXX)}
mkdir -p "$WORK"
export FTUNE_HOME="$WORK/home"
export OMP_NUM_THREADS="$THREADS"
T0=$(date +%s)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. A small model with a real tokenizer"
# Mistral-7B-v0.1's tokenizer (32k vocabulary; Llama 3's 128k would make the output layer 4x
# dearer). The base tokenizer has no chat template, so the demo gives it the Mistral-instruct
# format ([INST] user [/INST] answer</s>) in tools/demo/chat_template.jinja.
mkdir -p "$WORK/tok"
cp tests/fixtures/tok/mistral-7b-v0.1/tokenizer.json "$WORK/tok/"
$PY - "$WORK/tok/tokenizer_config.json" tools/demo/chat_template.jinja <<'EOF'
import json, sys
cfg = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
       "add_eos_token": False, "model_max_length": 512, "tokenizer_class": "LlamaTokenizer",
       "chat_template": open(sys.argv[2]).read().strip()}
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
EOF
"$FTUNE" init-model --force --out "$WORK/base-model" --vocab-size 32000 --hidden-size 64 --intermediate-size 192 \
    --layers 2 --heads 4 --max-position-embeddings 512 --tokenizer "$WORK/tok" --seed 1

step "2. The task: extract the person and the city (held-out eval split)"
$PY tools/demo/ner_task.py make "$WORK" --train 2000 --eval 60 --seed 7
echo "example:"
head -1 "$WORK/train.jsonl"

step "3. Accuracy before fine-tuning (greedy, exact match on the held-out split)"
$PY tools/demo/ner_task.py score "$FTUNE" "$WORK/base-model" "$WORK/eval.jsonl" --label "accuracy before" \
    --show 2 > "$WORK/before.txt"
cat "$WORK/before.txt"

step "4. Fine-tune: ftune create (on $THREADS CPU threads)"
# The learning rate is passed explicitly: the 5e-7 default is meant for pretrained 7B+ models;
# a tiny model trained from random weights needs a far larger one.
T1=$(date +%s)
"$FTUNE" create --model "$WORK/base-model" --train-data-path "$WORK/train.jsonl" \
    --eval-data-path "$WORK/eval.jsonl" --register-to main.demo.ner --name demo-ner \
    --training-duration "${STEPS}ba" --learning-rate 3e-3 --warmup 5% --global-batch-size 8 \
    --context-length 256 --save-interval 50ba --threads "$THREADS" --seed 3 --dtype "$DTYPE" \
    --eval-prompt "Extract the person and the city from this sentence: Grace opened a bookshop in Oslo." \
    --eval-max-new-tokens 16 --json > "$WORK/run.json"
T2=$(date +%s)
echo "training took $((T2 - T1)) s"

step "5. The run's events and the registry entry"
"$FTUNE" events demo-ner
"$FTUNE" metrics demo-ner --name loss | awk 'NR == 2 || /^ *[0-9]+ / { last = $0 } NR == 2 { print } END { print last }'
"$FTUNE" registry show main.demo.ner

step "6. Accuracy after fine-tuning (the registered model, by name)"
$PY tools/demo/ner_task.py score "$FTUNE" main.demo.ner "$WORK/eval.jsonl" --label "accuracy after" \
    --show 3 > "$WORK/after.txt"
cat "$WORK/after.txt"

step "7. An unseen sentence"
PROMPT="Extract the person and the city from this sentence: Yesterday, Lena bought a bicycle in Quito."
echo "prompt: $PROMPT"
printf 'answer: '
"$FTUNE" generate --model main.demo.ner --prompt "$PROMPT" --chat --temperature 0 --max-new-tokens 16
echo

T3=$(date +%s)
step "Summary"
cat "$WORK/before.txt" "$WORK/after.txt" | grep '^accuracy'
echo "fine-tuning: $((T2 - T1)) s on $THREADS threads; whole demo: $((T3 - T0)) s; files in $WORK"
echo
echo "Next: serve the registered model (OpenAI-compatible /v1 and the web UI's playground):"
echo "  FTUNE_HOME=$WORK/home $FTUNE serve --model main.demo.ner"
echo "  then open http://127.0.0.1:8080/ or point the openai client at http://127.0.0.1:8080/v1 (docs/serve.md)"
AFTER=$(sed -n 's/^accuracy after: \([0-9]*\)%.*/\1/p' "$WORK/after.txt")
if [ "${AFTER:-0}" -lt 80 ]; then
    echo "demo: accuracy after fine-tuning is below 80%" >&2
    exit 1
fi
