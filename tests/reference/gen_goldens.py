"""Write the reference files ftune's model tests compare with (see llama_ref.py for the model).

usage: /usr/bin/python3 tests/reference/gen_goldens.py OUTDIR

For each tiny config, OUTDIR/<name>/ gets a Hugging Face model folder (config.json,
model.safetensors with F32 weights) plus
  batch.json            {"input_ids", "targets", "position_ids", "sample_ids"}, as `ftune debug forward` reads
  expected.safetensors  logits (B, T, V); loss (1) mean CE; n_trainable (1); grad.<param> for every
                        parameter (gradient of the mean loss); traj_adamw (10) and traj_lion (10):
                        the loss before each of 10 optimizer steps on the same batch (global-norm
                        clipping, then DecoupledAdamW / DecoupledLionW with lr_k = peak * (1 - k/10));
                        the hyperparameters are in the file's __metadata__.
  expected_bf16.safetensors  the same batch and weights under the bf16 mixed-precision recipe
                        (llama_ref.py's module comment: GEMM operands rounded to bf16, activations
                        saved in bf16, residual/norms/softmax/loss unrounded): logits, loss,
                        n_trainable, grad.<param>; __metadata__ has loss_f64, the recipe, and how
                        far the plain float64 results lie from these (in units of the bf16 test's
                        tolerances), so a reader sees that the test tells bf16 from fp32.
Everything is computed in float64 from the F32 weights, and is deterministic (fixed seeds).

Mixture-of-experts configs (MOE_CONFIGS, MixtralForCausalLM) get no bf16 file; their
expected.safetensors also holds aux_loss (load_balancing_loss_func, without its coefficient),
routing.<layer> (B*T, K): each token's experts in ascending order, and the gradients are those of
CE + router_aux_loss_coef * aux; the trajectories record the CE before each step of training on
that sum. Padding rows have sample id -1 (as ftune's loader writes them) and attention mask 0 for
the aux loss. The weights are drawn again (next seed) until every token of every layer has a
routing margin (k-th minus (k+1)-th router probability) above 1e-3 at the start and at every
trajectory step, so fp32 and float64 pick the same experts; the smallest margin is in the
metadata.

DBRX configs (DBRX_CONFIGS, DbrxForCausalLM, computed by dbrx_ref.py from DBRX's own config.json and
names) are written like the Mixtral ones; their aux loss is load_balancing_loss_func over the router
probabilities (which it softmaxes again, as transformers 4.40's DBRX does); routing.<layer> is the
top-k of those probabilities; the margin rule is in the comment above DBRX_CONFIGS.

usage for the mixture-of-experts goldens alone: gen_goldens.py OUTDIR --moe-only (Mixtral and DBRX)
or OUTDIR --dbrx-only.
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as ref  # noqa: E402
import dbrx_ref  # noqa: E402

CONFIGS = {
    # GQA, untied head, llama3 rope scaling (one frequency of each kind: kept, smoothed, scaled),
    # packed rows with masked prompts.
    "gqa_llama3_untied": dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, rope_theta=10000.0,
                              rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                high_freq_factor=4.0, original_max_position_embeddings=64),
                              tie_word_embeddings=False, B=2, T=16, rows=[[6, 7, 3], [9, 5]]),
    # MQA, tied embeddings, head_dim != hidden / heads (12 vs 8).
    "mqa_tied_hd12": dict(vocab_size=80, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                          num_attention_heads=3, num_key_value_heads=1, head_dim=12, rope_theta=10000.0,
                          tie_word_embeddings=True, B=2, T=12, rows=[[5, 7], [4, 4, 2]]),
    # MHA, untied, theta 500000, three layers, one sample per row (default ids).
    "mha_untied": dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=4, head_dim=8, rope_theta=500000.0,
                       tie_word_embeddings=False, B=1, T=20, rows=[[20]]),
    # Mistral with a sliding window shorter than the row.
    "mistral_window": dict(architecture="MistralForCausalLM", vocab_size=72, hidden_size=32,
                           intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=8, rope_theta=10000.0, sliding_window=5,
                           tie_word_embeddings=False, B=1, T=14, rows=[[14]]),
}

ADAMW = dict(peak_lr=1e-2, weight_decay=0.1)
LION = dict(peak_lr=1e-3, weight_decay=0.1)
CLIP = 1.0
STEPS = 10


def hf_config(name, c):
    arch = c.get("architecture", "LlamaForCausalLM")
    cfg = {
        "architectures": [arch],
        "model_type": "mistral" if arch == "MistralForCausalLM" else "llama",
        "vocab_size": c["vocab_size"], "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"], "num_hidden_layers": c["num_hidden_layers"],
        "num_attention_heads": c["num_attention_heads"], "num_key_value_heads": c["num_key_value_heads"],
        "head_dim": c["head_dim"], "rms_norm_eps": 1e-5, "rope_theta": c["rope_theta"],
        "rope_scaling": c.get("rope_scaling"), "tie_word_embeddings": c["tie_word_embeddings"],
        "max_position_embeddings": 128, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "initializer_range": 0.02, "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
        "sliding_window": c.get("sliding_window"),
    }
    return cfg


def save_safetensors(path, tensors, metadata=None):
    """A plain safetensors writer (F32 only): header JSON, 8-byte aligned, then the data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make_batch(c, g):
    B, T, V = c["B"], c["T"], c["vocab_size"]
    ids = torch.randint(3, V, (B, T), generator=g)
    tgt = torch.full((B, T), -100, dtype=torch.int64)
    pos = torch.zeros(B, T, dtype=torch.int64)
    sid = torch.zeros(B, T, dtype=torch.int64)
    for b, lens in enumerate(c["rows"]):
        t0 = 0
        for s, n in enumerate(lens):
            prompt = n // 3  # the first third of each sample is prompt: no loss there
            for j in range(n):
                pos[b, t0 + j] = j
                sid[b, t0 + j] = s
                if j + 1 < n and j + 1 >= prompt:
                    tgt[b, t0 + j] = ids[b, t0 + j + 1]
            t0 += n
        for t in range(t0, T):  # padding: a sample of its own, no loss
            sid[b, t] = len(lens)
            pos[b, t] = t - t0
    return ids, tgt, pos, sid


def loss_and_grads(cfg, P, batch, bf16_mode=False, attention="saved", moe_out=None):
    for p in P.values():
        p.grad = None
        p.requires_grad_(True)
    ids, tgt, pos, sid = batch
    rl = []
    if cfg.get("model_type") == "dbrx":  # the router outputs are probabilities (dbrx_ref.py)
        d = dbrx_ref.internal(cfg)
        logits = dbrx_ref.forward(cfg, P, ids, pos, sid, router_out=rl)
        loss, n = ref.loss_fn(logits, tgt)
        total = loss
        if d["aux"]:
            aux = ref.load_balancing_loss(rl, d["E"], d["K"], (sid >= 0).long())
            total = loss + d["loss_weight"] * aux
            if moe_out is not None:
                moe_out["aux"] = float(aux)
        if moe_out is not None:
            moe_out["router_probs"] = [r.detach() for r in rl]
        total.backward()
        grads = {k: p.grad.detach().clone() for k, p in P.items()}
        for p in P.values():
            p.requires_grad_(False)
        return logits.detach(), float(loss), n, grads
    logits = ref.forward(cfg, P, ids, pos, sid, bf16_mode=bf16_mode, attention=attention, router_logits=rl)
    loss, n = ref.loss_fn(logits, tgt)
    total = loss
    if cfg.get("num_local_experts"):
        E, K = cfg["num_local_experts"], cfg["num_experts_per_tok"]
        aux = ref.load_balancing_loss(rl, E, K, (sid >= 0).long())
        total = loss + cfg["router_aux_loss_coef"] * aux
        if moe_out is not None:
            moe_out["aux"] = float(aux)
            moe_out["router_logits"] = [r.detach() for r in rl]
    total.backward()
    grads = {k: p.grad.detach().clone() for k, p in P.items()}
    for p in P.values():
        p.requires_grad_(False)
    return logits.detach(), float(loss), n, grads


def routing_margin(cfg, router_logits, sid, probs=False):
    """The smallest k-th minus (k+1)-th router probability over the tokens that are not padding
    (a padding token's route changes no loss: no target, attention only among padding, no aux).
    probs: router_logits are probabilities already (DBRX)."""
    K = cfg["num_experts_per_tok"] if not probs else dbrx_ref.internal(cfg)["K"]
    m = float("inf")
    keep = sid.reshape(-1) >= 0
    for rl in router_logits:
        p = (rl[keep] if probs else torch.softmax(rl[keep], dim=-1)).sort(dim=-1, descending=True).values
        if K < p.shape[1]:
            m = min(m, float((p[:, K - 1] - p[:, K]).min()))
    return m


def trajectory(cfg, W, batch, kind, margins=None, hps=None):
    P = {k: v.clone() for k, v in W.items()}
    state, losses = {}, []
    hp = (hps or {}).get(kind) or (ADAMW if kind == "adamw" else LION)
    for k in range(STEPS):
        mo = {}
        _, loss, _, grads = loss_and_grads(cfg, P, batch, moe_out=mo)
        if margins is not None and "router_probs" in mo:
            margins.append(routing_margin(cfg, mo["router_probs"], batch[3], probs=True))
        elif margins is not None:
            margins.append(routing_margin(cfg, mo["router_logits"], batch[3]))
        losses.append(loss)
        ref.clip_grad_norm(list(grads.values()), CLIP)
        lr = hp["peak_lr"] * (1 - k / STEPS)
        with torch.no_grad():
            if kind == "adamw":
                ref.adamw_step(P, grads, state, lr, hp["peak_lr"], hp["weight_decay"])
            else:
                ref.lion_step(P, grads, state, lr, hp["peak_lr"], hp["weight_decay"])
    return torch.tensor(losses, dtype=torch.float64)


# The bf16 test's tolerances (issue #10 item 4), used here only to describe the goldens.
BF16_TOL = dict(loss=1e-3, logits=1e-2, grad=2e-2, cosine=0.999)


def distance(a, b):
    """How far result set b lies from a, each figure as a fraction of the bf16 tolerance (> 1: the
    test would fail): loss rel error, logits max err / max|logit|, worst gradient max err / its max,
    worst 1 - cosine."""
    la, lo_a, ga = a
    lb, lo_b, gb = b
    out = {"loss": abs(lb - la) / abs(la) / BF16_TOL["loss"],
           "logits": float((lo_b - lo_a).abs().max() / lo_a.abs().max()) / BF16_TOL["logits"], "grad": 0.0,
           "cosine": 0.0}
    for k in ga:
        x, y = ga[k].flatten(), gb[k].flatten()
        out["grad"] = max(out["grad"], float((y - x).abs().max() / x.abs().max()) / BF16_TOL["grad"])
        cos = float(x @ y / (x.norm() * y.norm()))
        out["cosine"] = max(out["cosine"], (1 - cos) / (1 - BF16_TOL["cosine"]))
    return out


def bf16_goldens(cfg, W, batch, fp64):
    """expected_bf16 tensors and metadata; fp64 = (loss, logits, grads) of the float64 reference."""
    logits, loss, n, grads = loss_and_grads(cfg, {k: v.clone() for k, v in W.items()}, batch, bf16_mode=True)
    exp = {"logits": logits, "loss": torch.tensor([loss]), "n_trainable": torch.tensor([float(n)])}
    for k, gr in grads.items():
        exp["grad." + k] = gr
    mine = (loss, logits, grads)
    alt = loss_and_grads(cfg, {k: v.clone() for k, v in W.items()}, batch, bf16_mode=True, attention="autocast")
    d64 = distance(mine, fp64)
    dac = distance(mine, (alt[1], alt[0], alt[3]))
    fmt = lambda d: " ".join(f"{k} {v:.3f}" for k, v in d.items())  # noqa: E731
    meta = {"loss_f64": repr(loss), "recipe": "issue #10 bf16: GEMM operands bf16 RNE (forward, dX, dW), q/k/v and "
            "gate/up saved in bf16, residual/norms/softmax/loss unrounded; float64 arithmetic",
            "fp64_distance_in_tolerances": fmt(d64), "autocast_attention_distance_in_tolerances": fmt(dac)}
    return exp, meta


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    for idx, (name, c) in enumerate(CONFIGS.items()):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        hf = hf_config(name, c)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(hf, f, indent=2)
        cfg = dict(hf)
        g = torch.Generator().manual_seed(1000 + idx)
        shapes = ref.param_shapes(cfg)
        W32 = {}
        for n, shp in shapes.items():
            if len(shp) == 1:
                W32[n] = 1.0 + 0.1 * torch.randn(shp, generator=g)
            else:
                W32[n] = 0.2 * torch.randn(shp, generator=g)
        save_safetensors(os.path.join(d, "model.safetensors"), W32)
        W = {k: v.to(torch.float32).double() for k, v in W32.items()}
        batch = make_batch(c, g)
        bj = {"input_ids": batch[0].tolist(), "targets": batch[1].tolist()}
        if any(len(r) > 1 or r[0] != c["T"] for r in c["rows"]):
            bj["position_ids"] = batch[2].tolist()  # else the defaults (0..T-1, one sample) hold
            bj["sample_ids"] = batch[3].tolist()
        with open(os.path.join(d, "batch.json"), "w") as f:
            json.dump(bj, f)
        logits, loss, n, grads = loss_and_grads(cfg, {k: v.clone() for k, v in W.items()}, batch)
        fp64 = (loss, logits, grads)
        exp = {"logits": logits, "loss": torch.tensor([loss]), "n_trainable": torch.tensor([float(n)])}
        for k, gr in grads.items():
            exp["grad." + k] = gr
        exp["traj_adamw"] = trajectory(cfg, W, batch, "adamw")
        exp["traj_lion"] = trajectory(cfg, W, batch, "lion")
        meta = {"adamw_peak_lr": ADAMW["peak_lr"], "adamw_weight_decay": ADAMW["weight_decay"],
                "lion_peak_lr": LION["peak_lr"], "lion_weight_decay": LION["weight_decay"],
                "grad_clip": CLIP, "steps": STEPS, "loss_f64": repr(loss)}
        save_safetensors(os.path.join(d, "expected.safetensors"), exp, meta)
        print(f"{name}: loss {loss:.6f} over {n} tokens; adamw {exp['traj_adamw'][0]:.4f} -> "
              f"{exp['traj_adamw'][-1]:.4f}; lion {exp['traj_lion'][0]:.4f} -> {exp['traj_lion'][-1]:.4f}")
        exp16, meta16 = bf16_goldens(cfg, W, batch, fp64)
        save_safetensors(os.path.join(d, "expected_bf16.safetensors"), exp16, meta16)
        print(f"{name} bf16: loss {float(exp16['loss']):.6f}; float64 lies at {meta16['fp64_distance_in_tolerances']}; "
              f"autocast attention at {meta16['autocast_attention_distance_in_tolerances']} (x the bf16 tolerances)")


# A Mixtral-shaped config: GQA + a sliding window shorter than the rows + packed rows with masked
# prompts and padding + aux loss on (a coefficient large enough that its gradient is well above
# the test's tolerance). first_seed: where the search for a routing margin starts (the seeds
# before it were tried and failed the margin; starting there saves minutes).
MOE_CONFIGS = {
    "mixtral_gqa_window": dict(architecture="MixtralForCausalLM", vocab_size=64, hidden_size=32,
                               intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=8, rope_theta=1e6, sliding_window=6,
                               num_local_experts=4, num_experts_per_tok=2, router_aux_loss_coef=0.05,
                               output_router_logits=True, tie_word_embeddings=False, B=2, T=16,
                               rows=[[6, 7], [9, 4]], first_seed=5516),
    # top-3 of 5 experts (issue #14's top-k >= 3), MQA, a window; the margin rule and the small
    # steps of the DBRX goldens (traj_margin, hp; see DBRX_CONFIGS)
    "mixtral_top3": dict(architecture="MixtralForCausalLM", vocab_size=48, hidden_size=24,
                         intermediate_size=16, num_hidden_layers=2, num_attention_heads=3,
                         num_key_value_heads=1, head_dim=8, rope_theta=1e6, sliding_window=5,
                         num_local_experts=5, num_experts_per_tok=3, router_aux_loss_coef=0.05,
                         output_router_logits=True, tie_word_embeddings=False, B=2, T=12,
                         rows=[[5, 6], [8]], first_seed=1, traj_margin=1e-5, hp="dbrx"),
}
MARGIN = 1e-3
# Smaller steps than the dense configs' so that ten of them move the routers without crossing a
# route boundary (a crossing within 1e-3 of a step would let fp32 and float64 route apart).
MOE_HP = {"adamw": dict(peak_lr=2e-3, weight_decay=0.1), "lion": dict(peak_lr=2e-4, weight_decay=0.1)}


def moe_hf_config(c):
    cfg = {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
        "vocab_size": c["vocab_size"], "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"], "num_hidden_layers": c["num_hidden_layers"],
        "num_attention_heads": c["num_attention_heads"], "num_key_value_heads": c["num_key_value_heads"],
        "head_dim": c["head_dim"], "rms_norm_eps": 1e-5, "rope_theta": c["rope_theta"],
        "tie_word_embeddings": c["tie_word_embeddings"], "max_position_embeddings": 128, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "initializer_range": 0.02, "torch_dtype": "float32",
        "sliding_window": c.get("sliding_window"), "num_local_experts": c["num_local_experts"],
        "num_experts_per_tok": c["num_experts_per_tok"], "router_aux_loss_coef": c["router_aux_loss_coef"],
        "output_router_logits": c["output_router_logits"], "router_jitter_noise": 0.0,
    }
    return cfg


def write_moe_golden(d, hf, W32, batch, result, aux, probs, K, trajs, hp):
    """A mixture-of-experts golden folder: config.json, model.safetensors (the F32 weights),
    batch.json; returns the metadata of expected.safetensors with its tensors under "_exp" (logits,
    loss, n_trainable, aux_loss, routing.<layer> (the top K of each layer's probabilities in
    ascending expert order), grad.<param>, the trajectories)."""
    logits, loss, n, grads = result
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
    save_safetensors(os.path.join(d, "model.safetensors"), W32)
    bj = {"input_ids": batch[0].tolist(), "targets": batch[1].tolist(),
          "position_ids": batch[2].tolist(), "sample_ids": batch[3].tolist()}
    with open(os.path.join(d, "batch.json"), "w") as f:
        json.dump(bj, f)
    exp = {"logits": logits, "loss": torch.tensor([loss]), "n_trainable": torch.tensor([float(n)]),
           "aux_loss": torch.tensor([aux])}
    for l, pr in enumerate(probs):
        exp[f"routing.{l}"] = torch.topk(pr, K, dim=-1).indices.sort(dim=-1).values.double()
    for k, gr in grads.items():
        exp["grad." + k] = gr
    exp["traj_adamw"] = trajs["adamw"]
    exp["traj_lion"] = trajs["lion"]
    return {"adamw_peak_lr": hp["adamw"]["peak_lr"], "adamw_weight_decay": hp["adamw"]["weight_decay"],
            "lion_peak_lr": hp["lion"]["peak_lr"], "lion_weight_decay": hp["lion"]["weight_decay"],
            "grad_clip": CLIP, "steps": STEPS, "loss_f64": repr(loss), "aux_f64": repr(aux), "_exp": exp}


def moe_main(out):
    for idx, (name, c) in enumerate(MOE_CONFIGS.items()):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        hf = moe_hf_config(c)
        cfg = dict(hf)
        seed = c["first_seed"]
        hp = DBRX_HP if c.get("hp") == "dbrx" else MOE_HP
        while True:  # draw until the routing margin holds everywhere
            g = torch.Generator().manual_seed(seed)
            W32 = {}
            for n, shp in ref.param_shapes(cfg).items():
                if len(shp) == 1:
                    W32[n] = 1.0 + 0.1 * torch.randn(shp, generator=g)
                elif "block_sparse_moe.gate" in n:
                    W32[n] = 0.15 * torch.randn(shp, generator=g)  # router logits of order 1
                else:
                    W32[n] = 0.2 * torch.randn(shp, generator=g)
            W = {k: v.to(torch.float32).double() for k, v in W32.items()}
            batch = make_batch(c, g)
            batch[3][batch[3] >= torch.tensor([len(r) for r in c["rows"]])[:, None]] = -1  # padding
            mo = {}
            logits, loss, n, grads = loss_and_grads(cfg, {k: v.clone() for k, v in W.items()}, batch, moe_out=mo)
            margins = [routing_margin(cfg, mo["router_logits"], batch[3])]
            if margins[0] > MARGIN:  # then along both trajectories
                trajs = {k: trajectory(cfg, W, batch, k, margins, hp) for k in ("adamw", "lion")}
                if min(margins[1:]) > c.get("traj_margin", MARGIN):
                    break
            seed += 1
        routing = [torch.softmax(rl, dim=-1) for rl in mo["router_logits"]]
        meta = write_moe_golden(d, hf, W32, batch, (logits, loss, n, grads), mo["aux"], routing,
                                c["num_experts_per_tok"], trajs, hp)
        meta.update({"min_routing_margin": repr(min(margins)), "seed": seed})
        if "traj_margin" in c:
            meta["min_routing_margin"] = repr(margins[0])
            meta["min_trajectory_routing_margin"] = repr(min(margins[1:]))
        save_safetensors(os.path.join(d, "expected.safetensors"), meta.pop("_exp"), meta)
        print(f"{name}: loss {loss:.6f} aux {mo['aux']:.6f} over {n} tokens; min routing margin "
              f"{margins[0]:.2e}, {min(margins):.2e} with the trajectories (seed {seed}); "
              f"adamw {trajs['adamw'][0]:.4f} -> {trajs['adamw'][-1]:.4f}")


# DBRX-shaped configs (DbrxForCausalLM's own config.json): top-3 of 6 experts, GQA, Wqkv clamped at
# a bound that cuts about a third of the values, untied head, packed rows with masked prompts and
# padding, aux loss on (output_router_logits, moe_loss_weight 0.05). dbrx_pnorm2 divides the top-k
# weights by their 2-norm (moe_normalize_expert_weights 2) with top-4 of 6, MQA. Weights are drawn
# until every non-padding token's routing margin exceeds MARGIN (1e-3) at the start (the golden's
# logits, loss, aux loss, gradients, routing) and DBRX_TRAJ_MARGIN (1e-5, still 100x fp32's
# rounding of a probability) at every trajectory step: the load-balancing loss pulls the router
# probabilities together step by step, so a 1e-3 margin along ten steps would take thousands of
# draws. The clamp's inputs stay at least CLIP_MARGIN from the bound at the start, so that fp32 and
# float64 clamp the same values (the clamp is continuous: a value crossing later moves the loss
# only by its distance to the bound).
DBRX_CONFIGS = {
    "dbrx_top3_clip": dict(d_model=32, n_heads=4, n_layers=2, vocab_size=64, kv_n_heads=2, clip_qkv=1.0,
                           rope_theta=500000.0, ffn_hidden_size=24, moe_num_experts=6, moe_top_k=3,
                           moe_normalize_expert_weights=1.0, moe_loss_weight=0.05, B=2, T=16,
                           rows=[[6, 7], [9, 4]], first_seed=1),
    "dbrx_pnorm2": dict(d_model=32, n_heads=4, n_layers=2, vocab_size=64, kv_n_heads=1, clip_qkv=1.2,
                        rope_theta=10000.0, ffn_hidden_size=16, moe_num_experts=6, moe_top_k=4,
                        moe_normalize_expert_weights=2.0, moe_loss_weight=0.05, B=2, T=12,
                        rows=[[5, 7], [8]], first_seed=1),
}
CLIP_MARGIN = 1e-4
DBRX_TRAJ_MARGIN = 1e-5
# Small steps with a small decoupled weight decay (Composer's decay is relative to the peak rate:
# 0.1 would shrink every weight, the router's too, by 10% a step).
DBRX_HP = {"adamw": dict(peak_lr=2e-4, weight_decay=0.01), "lion": dict(peak_lr=2e-5, weight_decay=0.01)}


def dbrx_hf_config(c):
    return {
        "architectures": ["DbrxForCausalLM"], "model_type": "dbrx", "d_model": c["d_model"],
        "n_heads": c["n_heads"], "n_layers": c["n_layers"], "max_seq_len": 128, "vocab_size": c["vocab_size"],
        "attn_config": {"attn_pdrop": 0.0, "clip_qkv": c["clip_qkv"], "kv_n_heads": c["kv_n_heads"],
                        "rope_theta": c["rope_theta"]},
        "ffn_config": {"ffn_act_fn": {"name": "silu"}, "ffn_hidden_size": c["ffn_hidden_size"],
                       "moe_jitter_eps": None, "moe_loss_weight": c["moe_loss_weight"],
                       "moe_normalize_expert_weights": c["moe_normalize_expert_weights"],
                       "moe_num_experts": c["moe_num_experts"], "moe_top_k": c["moe_top_k"]},
        "emb_pdrop": 0.0, "resid_pdrop": 0.0, "initializer_range": 0.02, "output_router_logits": True,
        "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
    }


def clip_margin(cfg, W, batch):
    """The smallest distance of a non-padding token's pre-clamp q|k|v value from +-clip_qkv, and
    the fraction of those values the clamp cuts (over both layers, at W)."""
    d = dbrx_ref.internal(cfg)
    ids, tgt, pos, sid = batch
    seen = []
    orig = dbrx_ref.layer_norm

    def probe_norm(x, w):  # norm_1's output feeds Wqkv: record its product
        y = orig(x, w)
        seen.append(y)
        return y

    dbrx_ref.layer_norm = probe_norm
    try:
        with torch.no_grad():
            dbrx_ref.forward(cfg, W, ids, pos, sid)
    finally:
        dbrx_ref.layer_norm = orig
    keep = (sid.reshape(-1) >= 0)
    m, cut, tot = float("inf"), 0, 0
    for l in range(d["L"]):
        h = seen[2 * l].reshape(-1, d["C"])[keep]
        qkv = h @ W[f"transformer.blocks.{l}.norm_attn_norm.attn.Wqkv.weight"].T
        m = min(m, float((qkv.abs() - d["clip"]).abs().min()))
        cut += int((qkv.abs() > d["clip"]).sum())
        tot += qkv.numel()
    return m, cut / tot


def dbrx_main(out):
    for name, c in DBRX_CONFIGS.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        hf = dbrx_hf_config(c)
        cfg = dict(hf)
        seed = c["first_seed"]
        tried = 0
        while True:
            tried += 1
            g = torch.Generator().manual_seed(seed)
            W32 = {}
            for n, shp in dbrx_ref.param_shapes(cfg).items():
                if len(shp) == 1:
                    W32[n] = 1.0 + 0.1 * torch.randn(shp, generator=g)
                elif "router" in n:
                    W32[n] = 0.3 * torch.randn(shp, generator=g)
                else:
                    W32[n] = 0.2 * torch.randn(shp, generator=g)
            W = {k: v.to(torch.float32).double() for k, v in W32.items()}
            batch = make_batch(c, g)
            batch[3][batch[3] >= torch.tensor([len(r) for r in c["rows"]])[:, None]] = -1  # padding
            cm, cut = clip_margin(cfg, W, batch)
            if cm > CLIP_MARGIN:
                mo = {}
                logits, loss, n, grads = loss_and_grads(cfg, {k: v.clone() for k, v in W.items()}, batch, moe_out=mo)
                margins = [routing_margin(cfg, mo["router_probs"], batch[3], probs=True)]
                if margins[0] > MARGIN:
                    trajs = {k: trajectory(cfg, W, batch, k, margins, DBRX_HP) for k in ("adamw", "lion")}
                    if min(margins[1:]) > DBRX_TRAJ_MARGIN:
                        break
            seed += 1
        meta = write_moe_golden(d, hf, W32, batch, (logits, loss, n, grads), mo["aux"], mo["router_probs"],
                                c["moe_top_k"], trajs, DBRX_HP)
        meta.update({"min_routing_margin": repr(margins[0]), "min_trajectory_routing_margin": repr(min(margins[1:])),
                     "seed": seed, "clip_margin": repr(cm), "clipped_fraction": repr(cut)})
        save_safetensors(os.path.join(d, "expected.safetensors"), meta.pop("_exp"), meta)
        print(f"{name}: loss {loss:.6f} aux {mo['aux']:.6f} over {n} tokens; min routing margin "
              f"{margins[0]:.2e}, along the trajectories {min(margins[1:]):.2e} (seed {seed}, {tried} tried); clamp cuts {cut:.0%} (margin {cm:.1e}); "
              f"adamw {trajs['adamw'][0]:.4f} -> {trajs['adamw'][-1]:.4f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "--moe-only":
        moe_main(sys.argv[1])
        dbrx_main(sys.argv[1])
    elif len(sys.argv) > 2 and sys.argv[2] == "--dbrx-only":
        dbrx_main(sys.argv[1])
    else:
        main()
        moe_main(sys.argv[1])
        dbrx_main(sys.argv[1])
