#!/usr/bin/python3
"""bench/data_gen.py OUT.jsonl MIB: deterministic synthetic chat data (CHAT_COMPLETION
records with a system prompt sometimes, 1-4 user/assistant exchanges, English-like words with
some punctuation, numbers and non-ASCII) for the data preparation benchmark."""
import json
import random
import sys

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no what up out who them some "
         "could more into do time two only new like other then than now first any may these people our over "
         "model training data token layer gradient batch epoch loss value function matrix vector kernel cache "
         "café naïve über 東京 données größe 42 3.14 2026 x86_64 GPU CPU").split()


def sentence(r):
    n = r.randint(4, 24)
    s = " ".join(r.choice(WORDS) for _ in range(n))
    return s[0].upper() + s[1:] + r.choice([".", ".", ".", "?", "!", ":"])


def main():
    out, mb = sys.argv[1], float(sys.argv[2])
    r = random.Random(1234)
    limit = int(mb * (1 << 20))
    written = 0
    with open(out, "w", encoding="utf-8") as f:
        while written < limit:
            msgs = []
            if r.random() < 0.3:
                msgs.append({"role": "system", "content": sentence(r)})
            for _ in range(r.randint(1, 4)):
                msgs.append({"role": "user", "content": " ".join(sentence(r) for _ in range(r.randint(1, 3)))})
                msgs.append({"role": "assistant", "content": " ".join(sentence(r) for _ in range(r.randint(1, 8)))})
            line = json.dumps({"messages": msgs}, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode("utf-8"))


if __name__ == "__main__":
    main()
