"""Summary of bench/train_step.bench.sh: reads its results file (one line per run:
"<peak|ftune|pytorch> <config> <dtype> <json>") and prints, per config and dtype, the best
tokens/s of ftune and PyTorch across the alternated rounds, their ratio, ftune's GFLOP/s as a share
of the best measured fp32 FMA peak, peak RSS (ftune's beside the memory planner's prediction), and
the issue #10 targets where there is one.

usage: /usr/bin/python3 bench/train_step_summary.py RESULTS
"""
import json
import sys

TARGETS = {("medium", "fp32"): 2.0, ("medium", "bf16"): 1.5, ("moe-small", "fp32"): 2.0}  # ftune / PyTorch tokens/s
MOE_OVER_DENSE = 1.3  # issue #14: ftune's moe-small step at most 1.3x moe-dense's (same active parameters)
SHARE_TARGET = {("medium", "fp32"): 0.65}
GIB = 1024.0


def main():
    peak, runs, order = 0.0, {}, []
    with open(sys.argv[1]) as f:
        for line in f:
            who, cfg, dt, js = line.rstrip("\n").split(" ", 3)
            try:
                d = json.loads(js)
            except ValueError:
                d = {"error": "unreadable output: " + js[:200]}
            if who == "peak":
                peak = max(peak, d.get("fma_peak_gflops", 0.0))
                continue
            if (cfg, dt) not in order:
                order.append((cfg, dt))
            runs.setdefault((who, cfg, dt), []).append(d)
    print(f"train-step: measured fp32 FMA peak {peak:.0f} GFLOP/s (best over the rounds)")
    for cfg, dt in order:
        best = {}
        for who in ("ftune", "pytorch"):
            ok = [d for d in runs.get((who, cfg, dt), []) if "tokens_per_s" in d]
            best[who] = max(ok, key=lambda d: d["tokens_per_s"]) if ok else None
        f, t = best["ftune"], best["pytorch"]
        line = f"train-step {cfg} {dt}:"
        if f:
            share = f["gflops"] / peak if peak else 0.0
            line += (f" ftune {f['tokens_per_s']:.1f} tokens/s, {f['gflops']:.0f} GFLOP/s = {100 * share:.0f}% of "
                     f"peak")
            # The same by CPU time (FLOPs per CPU-second x threads): what the step reaches while it
            # has the cores, comparable with the peak (measured the same way) on a shared machine.
            if f.get("cpu_s_per_step") and f.get("flops_per_token") and f.get("tokens_per_step") and peak:
                cpu_rate = f["flops_per_token"] * f["tokens_per_step"] / f["cpu_s_per_step"] * f.get("threads", 1)
                line += f" ({100 * cpu_rate / 1e9 / peak:.0f}% by CPU time)"
            line += f", peak RSS {f['peak_rss_mb'] / GIB:.2f} GiB"
            if f.get("predicted_peak_mb"):
                err = (f["predicted_peak_mb"] - f["peak_rss_mb"]) / f["peak_rss_mb"]
                line += f" (planner predicted {f['predicted_peak_mb'] / GIB:.2f} GiB, {100 * err:+.1f}%)"
            line += ";"
            if (cfg, dt) in SHARE_TARGET:
                line += f" (target >= {100 * SHARE_TARGET[(cfg, dt)]:.0f}% of peak)"
        else:
            errs = [d.get("error", "") for d in runs.get(("ftune", cfg, dt), [])]
            line += f" ftune did not run ({errs[-1] if errs else 'no result'});"
        if t:
            line += f" pytorch {t['tokens_per_s']:.1f} tokens/s, peak RSS {t['peak_rss_mb'] / GIB:.2f} GiB"
            if t.get("checkpointing"):
                line += " (checkpointed)"
            line += ";"
        else:
            last = (runs.get(("pytorch", cfg, dt)) or [{}])[-1]
            if last.get("fits") is False:
                line += (f" pytorch does not fit: stopped in {last.get('phase')} as {last.get('stopped')} "
                         f"(peak RSS {last.get('peak_rss_mb', 0) / GIB:.2f} GiB);")
            else:
                line += f" pytorch did not run ({last.get('error', 'no result')});"
        if f and t:
            ratio = f["tokens_per_s"] / t["tokens_per_s"]
            line += f" ratio {ratio:.2f}x"
            if (cfg, dt) in TARGETS:
                line += f" (target >= {TARGETS[(cfg, dt)]:.1f}x)"
        if cfg == "1b" and f:
            line += (f" [1b targets: peak RSS <= 21 GiB: {'met' if f['peak_rss_mb'] <= 21 * GIB else 'NOT met'}; "
                     f">= 20 tokens/s: {'met' if f['tokens_per_s'] >= 20 else 'NOT met'}]")
        print(line)
    # issue #14: the MoE step against the dense model with its active parameters, by wall time and
    # by CPU time (steadier on a shared machine)
    for dt in sorted({d for _, d in order}):
        mo = [d for d in runs.get(("ftune", "moe-small", dt), []) if "tokens_per_s" in d]
        de = [d for d in runs.get(("ftune", "moe-dense", dt), []) if "tokens_per_s" in d]
        if mo and de:
            m, d = max(mo, key=lambda x: x["tokens_per_s"]), max(de, key=lambda x: x["tokens_per_s"])
            wall = d["tokens_per_s"] / m["tokens_per_s"]
            cpu = min(x["cpu_s_per_step"] for x in mo) / min(x["cpu_s_per_step"] for x in de)
            print(f"train-step moe-small / moe-dense {dt} (same active parameters): step time {wall:.2f}x by wall "
                  f"time, {cpu:.2f}x by CPU time (target <= {MOE_OVER_DENSE}x)")


if __name__ == "__main__":
    main()
