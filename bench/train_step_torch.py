"""The PyTorch peer of `ftune bench train-step`: the same Llama model, batch and step (zero grads,
forward + backward, global-norm clipping at 1.0, AdamW betas 0.9/0.95) on the CPU, at its best
settings here: torch.set_num_threads(2), and (set by bench/train_step.bench.sh)
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776
OPENBLAS_CORETYPE=SkylakeX OPENBLAS_THREAD_TIMEOUT=4.

Mixture of experts (moe-small, issue #14): the MLP is written as transformers 4.40 writes
MixtralSparseMoeBlock (router, fp32 softmax, topk, renormalise, a loop over the experts taking
their tokens with torch.where on the one-hot mask and index_add_-ing the weighted outputs) and the
loss adds router_aux_loss_coef (0.001) times load_balancing_loss_func over all layers' router
logits, as MixtralForCausalLM does with output_router_logits. moe-dense is the dense model with
moe-small's active parameters (F 2048).

usage: /usr/bin/python3 bench/train_step_torch.py --config small|medium|1b|moe-small|moe-dense [--dtype fp32|bf16]
           [--checkpointing auto|on|off] [--steps N] [--memory-limit-gb G] [--layers L] [--json]
  --dtype bf16        forward and loss under torch.autocast('cpu', dtype=torch.bfloat16): fp32 master
                      weights, gradients and AdamW state; linear/matmul in bf16 (oneDNN), what
                      PyTorch's CPU autocast keeps in fp32 stays fp32
  --checkpointing     torch.utils.checkpoint around each decoder layer (auto: on for 1b only)
  --memory-limit-gb   a watchdog thread reads this process's VmRSS and the machine's MemAvailable
                      every 10 ms and stops the run (exit 3, {"fits": false, ...}) when the RSS passes
                      the limit (default 21, issue #10's budget) or MemAvailable drops under 1 GiB, so
                      a shape that does not fit is reported instead of taking a shared machine down
Prints tokens/s and GFLOP/s by the same formula as ftune (6 N_matmul + 6 L T d per token) and peak
RSS (VmHWM).
"""
import argparse
import json
import math
import os
import resource
import sys
import threading
import time

import torch
import torch.utils.checkpoint
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    "small": dict(V=32000, C=288, L=6, NH=6, KVH=6, F=768, T=256, B=8, tied=True),
    "medium": dict(V=32000, C=768, L=12, NH=12, KVH=4, F=2048, T=512, B=4, tied=False),
    # Llama-3.2-1B's shape (issue #10 item 5)
    "1b": dict(V=128256, C=2048, L=16, NH=32, KVH=8, F=8192, T=2048, B=1, tied=True),
    "moe-small": dict(V=32000, C=512, L=8, NH=8, KVH=8, F=1024, T=512, B=2, tied=False, E=8, K=2),
    "moe-dense": dict(V=32000, C=512, L=8, NH=8, KVH=8, F=2048, T=512, B=2, tied=False),
}
AUX_COEF = 0.001

PHASE = ["start"]  # what the step was doing, for the watchdog's report


def proc_kib(path, key):
    """A 'Key:   N kB' line of a /proc file, in KiB (0 when absent)."""
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def start_watchdog(limit_gib, floor_gib, out):
    """Stop the process before the machine runs out: RSS over the limit or MemAvailable under the
    floor ends it with exit 3 and a report. A thread is enough: torch's kernels release the GIL."""
    def run():
        while True:
            rss = proc_kib("/proc/self/status", "VmRSS") / 1048576.0
            avail = proc_kib("/proc/meminfo", "MemAvailable") / 1048576.0
            if rss > limit_gib or avail < floor_gib:
                why = (f"RSS {rss:.2f} GiB passed the {limit_gib:g} GiB limit" if rss > limit_gib else
                       f"the machine's MemAvailable fell to {avail:.2f} GiB (RSS {rss:.2f} GiB)")
                rep = dict(out, fits=False, stopped=why, phase=PHASE[0], rss_gib=round(rss, 2),
                           peak_rss_mb=round(proc_kib("/proc/self/status", "VmHWM") / 1024.0, 1))
                sys.stdout.write(json.dumps(rep) + "\n")
                sys.stdout.flush()
                os._exit(3)
            time.sleep(0.01)
    threading.Thread(target=run, daemon=True).start()


class RMSNorm(nn.Module):
    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Expert(nn.Module):
    def __init__(self, C, Fw):
        super().__init__()
        self.w1 = nn.Linear(C, Fw, bias=False)
        self.w2 = nn.Linear(Fw, C, bias=False)
        self.w3 = nn.Linear(C, Fw, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoe(nn.Module):
    """As transformers' MixtralSparseMoeBlock (4.40) computes it."""

    def __init__(self, c):
        super().__init__()
        self.E, self.K = c["E"], c["K"]
        self.gate = nn.Linear(c["C"], self.E, bias=False)
        self.experts = nn.ModuleList([Expert(c["C"], c["F"]) for _ in range(self.E)])

    def forward(self, h):
        B, T, C = h.shape
        h = h.view(-1, C)
        router_logits = self.gate(h)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected_experts = torch.topk(routing_weights, self.K, dim=-1)
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
        routing_weights = routing_weights.to(h.dtype)
        final = torch.zeros((B * T, C), dtype=h.dtype)
        expert_mask = F.one_hot(selected_experts, num_classes=self.E).permute(2, 1, 0)
        for e in range(self.E):
            idx, top_x = torch.where(expert_mask[e])
            cur = h[None, top_x].reshape(-1, C)
            y = self.experts[e](cur) * routing_weights[top_x, idx, None]
            final.index_add_(0, top_x, y.to(h.dtype))
        return final.view(B, T, C), router_logits


def load_balancing_loss(gate_logits, E, K):
    """transformers' load_balancing_loss_func without an attention mask."""
    cat = torch.cat(gate_logits, dim=0)
    rw = F.softmax(cat, dim=-1)
    _, selected = torch.topk(rw, K, dim=-1)
    expert_mask = F.one_hot(selected, E)
    tokens_per_expert = torch.mean(expert_mask.float(), dim=0)
    router_prob_per_expert = torch.mean(rw, dim=0)
    return torch.sum(tokens_per_expert * router_prob_per_expert.unsqueeze(0)) * E


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, NH, KVH, HD = c["C"], c["NH"], c["KVH"], c["C"] // c["NH"]
        self.NH, self.KVH, self.HD = NH, KVH, HD
        self.input_layernorm = RMSNorm(C)
        self.q_proj = nn.Linear(C, NH * HD, bias=False)
        self.k_proj = nn.Linear(C, KVH * HD, bias=False)
        self.v_proj = nn.Linear(C, KVH * HD, bias=False)
        self.o_proj = nn.Linear(NH * HD, C, bias=False)
        self.post_attention_layernorm = RMSNorm(C)
        self.moe = SparseMoe(c) if c.get("E") else None
        if not self.moe:
            self.gate_proj = nn.Linear(C, c["F"], bias=False)
            self.up_proj = nn.Linear(C, c["F"], bias=False)
            self.down_proj = nn.Linear(c["F"], C, bias=False)
        self.router_logits = None

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.NH, self.HD).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.KVH, self.HD).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.KVH, self.HD).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.NH // self.KVH, dim=1)
        v = v.repeat_interleave(self.NH // self.KVH, dim=1)
        s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.HD) + mask
        a = torch.matmul(torch.softmax(s, dim=-1), v).transpose(1, 2).reshape(B, T, -1)
        x = x + self.o_proj(a)
        h = self.post_attention_layernorm(x)
        if self.moe:
            y, self.router_logits = self.moe(h)
            return x + y
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["V"], c["C"])
        self.layers = nn.ModuleList([Block(c) for _ in range(c["L"])])
        self.norm = RMSNorm(c["C"])
        self.lm_head = nn.Linear(c["C"], c["V"], bias=False)
        if c["tied"]:
            self.lm_head.weight = self.embed_tokens.weight
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
        HD = c["C"] // c["NH"]
        inv = 1.0 / (10000.0 ** (torch.arange(0, HD, 2, dtype=torch.int64).float() / HD))
        ang = torch.arange(c["T"]).float()[:, None] * inv
        emb = torch.cat((ang, ang), dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()
        T = c["T"]
        self.mask = torch.full((T, T), float("-inf")).triu(1)

    def forward(self, ids, checkpointing=False):
        x = self.embed_tokens(ids)
        for layer in self.layers:
            if checkpointing:  # keep only the layer's input; recompute its inside in backward
                x = torch.utils.checkpoint.checkpoint(layer, x, self.cos, self.sin, self.mask, use_reentrant=False)
            else:
                x = layer(x, self.cos, self.sin, self.mask)
        return self.lm_head(self.norm(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=CONFIGS, required=True)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--checkpointing", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--memory-limit-gb", type=float, default=21.0)
    ap.add_argument("--layers", type=int, default=0,
                    help="override the config's layer count (to extrapolate a shape that does not fit)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    c = dict(CONFIGS[a.config])
    if a.layers > 0:
        c["L"] = a.layers
    steps = a.steps or {"small": 10, "medium": 4}.get(a.config, 1)
    ckpt = a.checkpointing == "on" or (a.checkpointing == "auto" and a.config == "1b")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = {"config": a.config, "layers": c["L"], "dtype": a.dtype, "checkpointing": ckpt, "threads": a.threads,
           "torch": torch.__version__}
    start_watchdog(a.memory_limit_gb, 1.0, out)
    PHASE[0] = "init"
    model = Llama(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    B, T, V = c["B"], c["T"], c["V"]
    ids = torch.randint(0, V, (B, T))
    tgt = torch.cat((ids[:, 1:], torch.randint(0, V, (B, 1))), dim=1)
    total = cpu = 0.0
    for k in range(a.warmup + steps):
        t0 = time.perf_counter()
        c0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        PHASE[0] = f"step {k + 1} forward"
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            logits = model(ids, ckpt)
            loss = F.cross_entropy(logits.view(-1, V), tgt.view(-1))
            if c.get("E"):  # MixtralForCausalLM with output_router_logits
                loss = loss + AUX_COEF * load_balancing_loss([l.router_logits for l in model.layers], c["E"], c["K"])
        PHASE[0] = f"step {k + 1} backward"
        loss.backward()
        logits_dtype = logits.dtype
        del logits
        PHASE[0] = f"step {k + 1} optimizer"
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if not a.json:
            print(f"step {k + 1}/{a.warmup + steps}: loss {float(loss):.4f}, {time.perf_counter() - t0:.2f} s",
                  file=sys.stderr)
        dt = time.perf_counter() - t0
        if k >= a.warmup:
            total += dt
            cpu += time.process_time() - c0
    Q, KV = c["C"], c["KVH"] * (c["C"] // c["NH"])
    mlp = 3 * c["C"] * c["F"] * c["K"] + c["E"] * c["C"] if c.get("E") else 3 * c["C"] * c["F"]
    n_matmul = c["L"] * (c["C"] * (Q + 2 * KV) + Q * c["C"] + mlp) + V * c["C"]
    flops_tok = 6 * n_matmul + 6 * c["L"] * T * Q
    tps = B * T * steps / total
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out.update({"fits": True, "tokens_per_s": round(tps, 2), "gflops": round(tps * flops_tok / 1e9, 2),
                "peak_rss_mb": round(rss, 1), "step_s": total / steps, "steps": steps,
                "cpu_s_per_step": round(cpu / steps, 3), "logits_dtype": str(logits_dtype).replace("torch.", "")})
    if a.json:
        print(json.dumps(out))
    else:
        print(f"pytorch train-step {a.config} {a.dtype}{' checkpointed' if ckpt else ''}: {tps:.1f} tokens/s, "
              f"{out['gflops']:.1f} GFLOP/s, {total / steps:.3f} s/step ({cpu / steps:.2f} CPU-s/step), "
              f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
