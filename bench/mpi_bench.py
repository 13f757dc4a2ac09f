#!/usr/bin/python3
"""bench/mpi_bench.py: data-parallel scaling of one real run (bench/mpi.bench.sh runs it).

`ftune create` trains the medium configuration (V 32000, C 768, L 12, 12/4 heads, F 2048, untied;
T 512, global batch 4 sequences of 512 tokens in micro-batches of 2, AdamW) on continued-pretraining
text, once as one ordinary process and once as `mpirun -np 2` (one thread per process,
OMP_NUM_THREADS=1, --bind-to none, shared memory), ROUNDS times, alternating which goes first. The
global batch is the same, so two ranks do the same work per step, each half of it.

Per run, from the store: the wall time of each step (the trainer's elapsed_s metric, first step left
out as warm-up), the trainable tokens per step, and on two ranks rank 0's time in the step's
collectives and the bytes it sent (comm_s, comm_bytes metrics). CPU time: this script samples the
user+system CPU seconds of every process of the run (/proc) whenever a new step's loss appears in
the store, so the CPU seconds per step exclude model loading, data validation, checkpoint and
export. On a shared machine the wall-time ratio measures the neighbours too; the CPU-time figure
(tokens per CPU-second of the run's processes together) says what the run would do with its cores
to itself: ideal data parallelism keeps it equal to one process's (the same work, shared out), so
2 x (2-rank tokens per CPU-s) / (1-rank tokens per CPU-s) is the speed-up on two free cores.
Each run's line is followed by its own `memory: peak resident ...` event: every process's peak
resident memory (VmHWM, after training and the final checkpoint) beside the memory planner's
per-process prediction (docs/distributed.md, "Memory per process").
Prints one line per run and a summary; --json FILE writes every figure.
"""
import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

CLK = os.sysconf("SC_CLK_TCK")


def proc_tree(root):
    """pids of root and its descendants"""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError):
            pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_of(pids, seen):
    """Total user+system seconds of pids; `seen` keeps each pid's last value, so processes that
    ended still count with what they had used when last sampled."""
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            seen[p] = (int(fields[11]) + int(fields[12])) / CLK
        except (OSError, ValueError, IndexError):
            pass
    return sum(seen.values())


def latest_step(db):
    if not os.path.exists(db):
        return 0
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
        r = c.execute("SELECT max(step) FROM metrics WHERE name = 'loss'").fetchone()
        c.close()
        return r[0] or 0
    except sqlite3.Error:
        return None


def metrics(db):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = c.execute("SELECT step, name, value FROM metrics").fetchall()
    c.close()
    m = {}
    for step, name, value in rows:
        m.setdefault(name, {})[step] = value
    return m


def run_one(args, work, ranks, label):
    home = os.path.join(work, f"home-{label}")
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ, FTUNE_HOME=home, OMP_NUM_THREADS="1",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    create = [args.ftune, "create", "--model", os.path.join(work, "model"),
              "--train-data-path", os.path.join(work, "text"), "--task-type", "CONTINUED_PRETRAIN",
              "--register-to", f"main.bench.{label.replace('-', '_')}", "--name", label,
              "--context-length", "512", "--global-batch-size", "4", "--micro-batch-size", "2",
              "--threads", "1", "--training-duration", f"{args.steps}ba", "--seed", "3",
              "--learning-rate", "1e-4", "--export-dtype", "fp32", "--quiet"]
    if ranks > 1:
        cmd = [args.mpirun, "-np", str(ranks), "--bind-to", "none", "--mca", "btl", "self,vader",
               "-x", "FTUNE_HOME", "-x", "OMP_NUM_THREADS"] + create
    else:
        cmd = create
    db = os.path.join(home, "ftune.db")
    t0 = time.time()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen, at_step = {}, {}
    last = 0
    while p.poll() is None:
        s = latest_step(db)
        cpu = cpu_of(proc_tree(p.pid), seen)
        if s is not None and s > last:
            last = s
            at_step[s] = cpu
        time.sleep(0.2)
    out = p.stdout.read().decode(errors="replace")
    wall = time.time() - t0
    if p.returncode != 0:
        sys.exit(f"mpi_bench: {label} failed ({p.returncode}):\n{out[-3000:]}")
    m = metrics(db)
    steps = sorted(m.get("elapsed_s", {}))
    if len(steps) < 2:
        sys.exit(f"mpi_bench: {label}: fewer than 2 steps recorded")
    timed = steps[1:]  # the first step warms up (allocation, first touch)
    el = m["elapsed_s"]
    step_s = [el[k] - el[k - 1] for k in timed]
    tokens = [m["trainable_tokens"][k] for k in timed]
    r = {"label": label, "ranks": ranks, "steps_timed": len(timed), "wall_run_s": wall,
         "step_s": step_s, "tokens_per_step": tokens[0],
         "tokens_per_s": sum(tokens) / sum(step_s),
         "losses": [m["loss"][k] for k in sorted(m["loss"])]}
    if steps[0] in at_step and steps[-1] in at_step:
        cpu = at_step[steps[-1]] - at_step[steps[0]]
        r["cpu_s_per_step"] = cpu / len(timed)
        r["tokens_per_cpu_s"] = sum(tokens) / cpu if cpu > 0 else None
    # the run's own report of each process's peak resident memory (VmHWM) against the memory
    # planner's per-process prediction (docs/distributed.md, "Memory per process")
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    mem = c.execute("SELECT message FROM events WHERE message LIKE 'memory: peak resident%'").fetchall()
    c.close()
    if mem:
        r["memory"] = mem[-1][0]
    if "comm_s" in m:
        r["comm_s_per_step"] = sum(m["comm_s"][k] for k in timed) / len(timed)
        r["comm_bytes_per_step"] = sum(m["comm_bytes"][k] for k in timed) / len(timed)
    shutil.rmtree(home, ignore_errors=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ftune", default="./build-mpi/ftune")
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--tokenizer", default="tests/fixtures/tok/mistral-7b-v0.1")
    ap.add_argument("--json")
    ap.add_argument("--shape", choices=["medium", "tiny"], default="medium",
                    help="tiny: a quick check of this script, not a figure")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ftune-mpi-bench.")
    try:
        tok = os.path.join(work, "tok")
        os.makedirs(tok)
        shutil.copy(os.path.join(args.tokenizer, "tokenizer.json"), tok)
        with open(os.path.join(tok, "tokenizer_config.json"), "w") as f:
            json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                       "add_bos_token": True, "add_eos_token": False}, f)
        shape = (["--hidden-size", "768", "--intermediate-size", "2048", "--layers", "12", "--heads", "12",
                  "--kv-heads", "4"] if args.shape == "medium" else
                 ["--hidden-size", "64", "--intermediate-size", "128", "--layers", "2", "--heads", "4", "--kv-heads", "2"])
        subprocess.run([args.ftune, "init-model", "--out", os.path.join(work, "model"), "--vocab-size", "32000"] + shape +
                       ["--max-position-embeddings", "1024", "--tokenizer", tok, "--seed", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        # continued-pretraining text: enough for (steps + 2) x 4 x 512 tokens and more
        rng = random.Random(7)
        words = ["river", "market", "stone", "window", "garden", "engine", "letter", "winter", "silver", "harbor",
                 "forest", "ladder", "copper", "signal", "candle", "meadow", "anchor", "pepper", "rocket", "velvet"]
        os.makedirs(os.path.join(work, "text"))
        for d in range(8):
            with open(os.path.join(work, "text", f"doc{d}.txt"), "w") as f:
                f.write(" ".join(rng.choice(words) for _ in range(1500 * args.steps)) + ".\n")
        load0 = open("/proc/loadavg").read().split()[:3]
        results = []
        for rnd in range(args.rounds):
            order = (1, 2) if rnd % 2 == 0 else (2, 1)
            for ranks in order:
                r = run_one(args, work, ranks, f"r{rnd + 1}-np{ranks}")
                r["round"] = rnd + 1
                r["loadavg"] = open("/proc/loadavg").read().split()[:3]
                results.append(r)
                line = (f"round {rnd + 1} ranks {ranks}: {r['tokens_per_s']:.1f} tokens/s "
                        f"({r['tokens_per_step']:.0f} tokens/step, steps {', '.join(f'{s:.1f}' for s in r['step_s'])} s)")
                if r.get("tokens_per_cpu_s"):
                    line += f", {r['tokens_per_cpu_s']:.1f} tokens per CPU-s ({r['cpu_s_per_step']:.1f} CPU-s/step)"
                if "comm_s_per_step" in r:
                    line += (f", comm {r['comm_s_per_step']:.3f} s/step, "
                             f"{r['comm_bytes_per_step'] / 1e6:.1f} MB sent by rank 0 per step")
                line += f"; load {' '.join(r['loadavg'])}"
                if "memory" in r:
                    line += f"\n  {r['memory']}"
                print(line, flush=True)
        one = [r for r in results if r["ranks"] == 1]
        two = [r for r in results if r["ranks"] == 2]
        best1 = max(r["tokens_per_s"] for r in one)
        best2 = max(r["tokens_per_s"] for r in two)
        summary = {"tokens_per_s_1": best1, "tokens_per_s_2": best2, "wall_ratio": best2 / best1,
                   "loadavg_start": load0, "loadavg_end": open("/proc/loadavg").read().split()[:3]}
        c1 = [r["tokens_per_cpu_s"] for r in one if r.get("tokens_per_cpu_s")]
        c2 = [r["tokens_per_cpu_s"] for r in two if r.get("tokens_per_cpu_s")]
        if c1 and c2:
            summary["tokens_per_cpu_s_1"] = max(c1)
            summary["tokens_per_cpu_s_2"] = max(c2)
            summary["cpu_efficiency"] = max(c2) / max(c1)
            summary["speedup_on_free_cores"] = 2 * max(c2) / max(c1)
        comm = [r for r in two if "comm_s_per_step" in r]
        if comm:
            summary["comm_s_per_step"] = min(r["comm_s_per_step"] for r in comm)
            summary["comm_bytes_per_step"] = comm[0]["comm_bytes_per_step"]
            summary["step_s_2"] = min(min(r["step_s"]) for r in comm)
        same = all(r["losses"] == one[0]["losses"] for r in one) and all(r["losses"] == two[0]["losses"] for r in two)
        rel = max(abs(a - b) / abs(b) for a, b in zip(two[0]["losses"], one[0]["losses"]))
        summary["losses_repeatable"] = same
        summary["loss_rel_diff_1_vs_2"] = rel
        print(f"{args.shape}, one thread per process, best of {args.rounds}: 1 rank {best1:.1f} tokens/s, 2 ranks "
              f"{best2:.1f} tokens/s: {best2 / best1:.2f}x wall (goal >= 1.8x)")
        if "cpu_efficiency" in summary:
            print(f"  by CPU time: {summary['tokens_per_cpu_s_1']:.1f} vs {summary['tokens_per_cpu_s_2']:.1f} tokens per "
                  f"CPU-second ({summary['cpu_efficiency']:.3f} of one process's), so "
                  f"{summary['speedup_on_free_cores']:.2f}x on two free cores")
        if comm:
            print(f"  communication: {summary['comm_s_per_step']:.3f} s per step of {summary['step_s_2']:.1f} s, "
                  f"{summary['comm_bytes_per_step'] / 1e6:.1f} MB sent by rank 0 per step")
        print(f"  losses: 2 ranks vs 1 within {rel:.2g} relative; every round repeats its losses exactly: {same}")
        print(f"  load average {' '.join(summary['loadavg_start'])} at the start, "
              f"{' '.join(summary['loadavg_end'])} at the end ({os.cpu_count()} CPUs)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"runs": results, "summary": summary}, f, indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
