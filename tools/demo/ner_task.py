#!/usr/bin/env python3
"""The demo's task (tools/demo.sh): named-entity extraction in chat form, in the spirit of the
original service's NER tutorial. Each example is a generated sentence with one person and one
city; the assistant answers "person: <name>; city: <city>".

  ner_task.py make OUTDIR [--train N] [--eval N] [--seed S]
      OUTDIR/train.jsonl and OUTDIR/eval.jsonl (chat format, SPEC §3). The eval split is held
      out: no (person, city, template) triple of it appears in the training split, and 1 of the
      templates is used only for evaluation, so a correct answer needs the rule, not a memory.
  ner_task.py score FTUNE MODEL EVAL.jsonl [--limit N]
      greedy answers from `ftune generate` for each eval prompt; prints the exact-match accuracy
      (and the first few answers). The answer is compared after trimming whitespace.

Why this shape: the answers are short and regular (a fixed frame around two entities from
closed lists), so a tiny randomly initialised model can learn to locate and copy the entities
within minutes on two CPU cores, while the sentences vary enough (templates, order of the
entities, filler words) that a model must read the sentence to answer.
"""
import json
import random
import subprocess
import sys

PEOPLE = ["Maria", "John", "Aisha", "Kenji", "Olga", "Pedro", "Fatima", "Liam", "Sofia", "Ahmed",
          "Chen", "Emma", "Ivan", "Priya", "Lucas", "Noor", "Hans", "Elena", "Omar", "Yuki",
          "Carlos", "Grace", "Mateo", "Lena"]
CITIES = ["Paris", "Lisbon", "Tokyo", "Cairo", "Berlin", "Madrid", "Lima", "Oslo", "Seoul",
          "Dublin", "Rome", "Vienna", "Nairobi", "Boston", "Sydney", "Prague", "Quito", "Delhi",
          "Athens", "Warsaw", "Havana", "Toronto", "Manila", "Zurich"]
WHEN = ["last year", "in May", "on Monday", "yesterday", "in 2019", "this spring", "after the war",
        "for a week"]
TEMPLATES = [
    "{p} moved to {c} {w}.",
    "{p} flew to {c} {w}.",
    "In {c}, {p} opened a small bakery {w}.",
    "{p} gave a talk in {c} {w}.",
    "The mayor of {c} met {p} {w}.",
    "{w}, {p} visited {c} with friends.",
    "A letter from {c} reached {p} {w}.",
    "{p} was born in {c}.",
    "Tourists in {c} photographed {p} {w}.",
    "{p} studied music in {c} {w}.",
    "Rain fell on {c} while {p} waited {w}.",
    "{p} sold a painting in {c} {w}.",
]
EVAL_ONLY_TEMPLATE = "Reporters in {c} interviewed {p} {w}."
INSTRUCTION = "Extract the person and the city from this sentence: "


def answer(p, c):
    return "person: %s; city: %s" % (p, c)


def example(p, c, t, w):
    text = t.format(p=p, c=c, w=w)
    text = text[0].upper() + text[1:]
    return {"messages": [{"role": "user", "content": INSTRUCTION + text},
                         {"role": "assistant", "content": answer(p, c)}]}


def make(outdir, n_train, n_eval, seed):
    rng = random.Random(seed)
    all_t = list(range(len(TEMPLATES)))
    # The eval split: a fixed set of triples, a third of them with a template never trained on.
    eval_set, eval_rows = set(), []
    while len(eval_rows) < n_eval:
        p, c, w = rng.choice(PEOPLE), rng.choice(CITIES), rng.choice(WHEN)
        if len(eval_rows) % 3 == 0:
            key, t = (p, c, -1), EVAL_ONLY_TEMPLATE
        else:
            ti = rng.choice(all_t)
            key, t = (p, c, ti), TEMPLATES[ti]
        if key in eval_set:
            continue
        eval_set.add(key)
        eval_rows.append(example(p, c, t, w))
    train_rows = []
    while len(train_rows) < n_train:
        p, c, ti, w = rng.choice(PEOPLE), rng.choice(CITIES), rng.choice(all_t), rng.choice(WHEN)
        if (p, c, ti) in eval_set:
            continue
        train_rows.append(example(p, c, TEMPLATES[ti], w))
    for name, rows in (("train.jsonl", train_rows), ("eval.jsonl", eval_rows)):
        with open("%s/%s" % (outdir, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    print("wrote %d training and %d held-out eval conversations to %s" % (n_train, n_eval, outdir))


def score(ftune, model, eval_path, limit, show):
    rows = [json.loads(l) for l in open(eval_path) if l.strip()]
    if limit:
        rows = rows[:limit]
    right = 0
    for i, r in enumerate(rows):
        prompt = r["messages"][0]["content"]
        want = r["messages"][1]["content"].strip()
        out = subprocess.run([ftune, "generate", "--model", model, "--prompt", prompt, "--chat",
                              "--temperature", "0", "--max-new-tokens", "16"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            sys.exit("ftune generate failed (exit %d)" % out.returncode)
        got = out.stdout.strip()
        ok = got == want
        right += ok
        if i < show:
            print("  %s\n    -> %r %s" % (prompt[len(INSTRUCTION):], got, "ok" if ok else "(want %r)" % want))
    pct = 100.0 * right / max(1, len(rows))
    return right, len(rows), pct


def main(argv):
    if len(argv) >= 2 and argv[1] == "make":
        args = argv[2:]
        outdir = args[0]
        opt = {"--train": 2000, "--eval": 60, "--seed": 7}
        for i in range(1, len(args) - 1, 2):
            opt[args[i]] = int(args[i + 1])
        make(outdir, opt["--train"], opt["--eval"], opt["--seed"])
        return 0
    if len(argv) >= 5 and argv[1] == "score":
        ftune, model, ev = argv[2], argv[3], argv[4]
        limit, label, show = 0, "accuracy", 3
        rest = argv[5:]
        for i in range(0, len(rest) - 1, 2):
            if rest[i] == "--limit":
                limit = int(rest[i + 1])
            elif rest[i] == "--label":
                label = rest[i + 1]
            elif rest[i] == "--show":
                show = int(rest[i + 1])
        right, n, pct = score(ftune, model, ev, limit, show)
        print("%s: %.0f%% (%d of %d exact)" % (label, pct, right, n))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
