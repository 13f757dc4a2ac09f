"""The PyTorch peer of `ftune bench train-step`: the same Llama model, batch and step (zero grads,
forward + backward, global-norm clipping at 1.0, AdamW betas 0.9/0.95), fp32 on the CPU, at its
best settings here: torch.set_num_threads(2), and (set by bench/train_step.bench.sh)
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776
OPENBLAS_CORETYPE=SkylakeX OPENBLAS_THREAD_TIMEOUT=4.

usage: /usr/bin/python3 bench/train_step_torch.py --config small|medium [--steps N] [--json]
Prints tokens/s and GFLOP/s by the same formula as ftune (6 N_matmul + 6 L T d per token).
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    "small": dict(V=32000, C=288, L=6, NH=6, KVH=6, F=768, T=256, B=8, tied=True),
    "medium": dict(V=32000, C=768, L=12, NH=12, KVH=4, F=2048, T=512, B=4, tied=False),
}


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
        self.gate_proj = nn.Linear(C, c["F"], bias=False)
        self.up_proj = nn.Linear(C, c["F"], bias=False)
        self.down_proj = nn.Linear(c["F"], C, bias=False)

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

    def forward(self, ids):
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        return self.lm_head(self.norm(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=CONFIGS, required=True)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    c = CONFIGS[a.config]
    steps = a.steps or (10 if a.config == "small" else 4)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
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
        logits = model(ids)
        loss = F.cross_entropy(logits.view(-1, V), tgt.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if k >= a.warmup:
            total += dt
            cpu += time.process_time() - c0
    Q, KV = c["C"], c["KVH"] * (c["C"] // c["NH"])
    n_matmul = c["L"] * (c["C"] * (Q + 2 * KV) + Q * c["C"] + 3 * c["C"] * c["F"]) + V * c["C"]
    flops_tok = 6 * n_matmul + 6 * c["L"] * T * Q
    tps = B * T * steps / total
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {"config": a.config, "dtype": "fp32", "tokens_per_s": round(tps, 2),
           "gflops": round(tps * flops_tok / 1e9, 2), "peak_rss_mb": round(rss, 1), "step_s": total / steps,
           "steps": steps, "threads": a.threads, "torch": torch.__version__, "cpu_s_per_step": round(cpu / steps, 3)}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"pytorch train-step {a.config} fp32: {tps:.1f} tokens/s, {out['gflops']:.1f} GFLOP/s, "
              f"{total / steps:.3f} s/step ({cpu / steps:.2f} CPU-s/step), peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
