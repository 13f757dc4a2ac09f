"""An independent PyTorch implementation of the Llama-family decoder ftune implements, written
from the published architecture (Hugging Face LlamaForCausalLM / MistralForCausalLM semantics)
for reference checks. It runs in float64 so that its numbers are the "true" values the fp32 C
code is measured against. Plain torch ops only (Debian python3-torch 1.13; no transformers).

Semantics mirrored from transformers:
  * RMSNorm: w * x / sqrt(mean(x^2) + eps)
  * RoPE, rotate-half layout; inverse frequencies computed in fp32 exactly as transformers does
    (including llama3 scaling), then used in float64
  * attention: softmax(q k^T / sqrt(head_dim)) v, causal, grouped kv heads (repeat_interleave),
    packed rows (attention only between equal sample ids), optional sliding window
  * SwiGLU MLP down(silu(gate(x)) * up(x)); tied or untied LM head
  * loss: cross-entropy summed over targets != -100, divided by their count
  * Mixtral's sparse MoE block (transformers 4.40 MixtralSparseMoeBlock, written from its code):
    router logits = x gate^T; softmax (float64 here); torch.topk; the k weights divided by their
    sum; a loop over experts in ascending order, each taking its tokens (torch.where on the
    one-hot mask), computing w2(silu(w1 x) * w3 x) * weight and index_add_-ing it into the output
  * load_balancing_loss_func: router probabilities of all layers concatenated, the one-hot top-k
    mask, both averaged over the tokens the attention mask keeps, E * sum(f * P)
Optimizers: Composer's DecoupledAdamW and DecoupledLionW, torch's global-norm clipping.

bf16 mixed precision (forward(..., bf16=True)): the recipe of issue #10 item 2, which is PyTorch's
CPU autocast recipe, with every rounding placed explicitly (the arithmetic between roundings stays
float64, standing in for fp32 accumulation):
  * every matrix product of the linear layers (q/k/v/o, gate/up/down, LM head) in all three training
    forms takes operands rounded to bf16 (round-to-nearest-even, from fp32): forward x_b @ W_b^T;
    backward dY_b @ W_b and dY_b^T @ x_b, where dY_b is the incoming gradient rounded and x_b is the
    layer input as saved for backward (bf16);
  * attention: q, k, v after RoPE are saved for backward in bf16, so scores, softmax and the output
    product use the rounded q, k, v; scores, softmax and its backward stay fp32
    (attention="autocast" also rounds the probabilities and the gradients of the two attention
    products, as torch.matmul does under autocast);
  * SwiGLU: gate and up are saved for backward in bf16 (the forward uses them unrounded);
  * the residual stream, RMSNorm (input, statistics, weight), RoPE, the logits, softmax and the
    cross-entropy are fp32 (float64 here); the embedding lookup reads the fp32 master weights,
    while a tied LM head rounds them like any other GEMM operand.
The weights themselves stay fp32 masters; gradients come out in fp32 (float64 here).
"""
import math

import torch


def rope_inv_freq(cfg):
    """fp32, as transformers' _compute_default_rope_parameters / _compute_llama3_parameters."""
    dim = cfg["head_dim"]
    base = cfg["rope_theta"]
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        factor = rs["factor"]
        low_freq_factor = rs["low_freq_factor"]
        high_freq_factor = rs["high_freq_factor"]
        old_context_len = rs["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq = torch.where(is_medium, smoothed, inv_freq_llama)
    return inv_freq


def param_names(cfg):
    names = ["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        names += [p + "input_layernorm.weight", p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                  p + "self_attn.v_proj.weight", p + "self_attn.o_proj.weight",
                  p + "post_attention_layernorm.weight"]
        if cfg.get("num_local_experts"):
            names.append(p + "block_sparse_moe.gate.weight")
            for e in range(cfg["num_local_experts"]):
                names += [p + f"block_sparse_moe.experts.{e}.{w}.weight" for w in ("w1", "w2", "w3")]
        else:
            names += [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight"]
    names.append("model.norm.weight")
    if not cfg["tie_word_embeddings"]:
        names.append("lm_head.weight")
    return names


def param_shapes(cfg):
    C, V, F = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    Q = cfg["num_attention_heads"] * cfg["head_dim"]
    KV = cfg["num_key_value_heads"] * cfg["head_dim"]
    shapes = {}
    for n in param_names(cfg):
        if n.endswith("norm.weight") or n.endswith("layernorm.weight"):
            shapes[n] = (C,)
        elif "q_proj" in n:
            shapes[n] = (Q, C)
        elif "k_proj" in n or "v_proj" in n:
            shapes[n] = (KV, C)
        elif "o_proj" in n:
            shapes[n] = (C, Q)
        elif "gate_proj" in n or "up_proj" in n or n.endswith(".w1.weight") or n.endswith(".w3.weight"):
            shapes[n] = (F, C)
        elif "down_proj" in n or n.endswith(".w2.weight"):
            shapes[n] = (C, F)
        elif "block_sparse_moe.gate" in n:
            shapes[n] = (cfg["num_local_experts"], C)
        else:
            shapes[n] = (V, C)
    return shapes


def bf16(x):
    """Round to bfloat16, nearest-even, from the fp32 value (as the C code rounds its fp32 numbers);
    returned in x's dtype."""
    return x.to(torch.float32).to(torch.bfloat16).to(x.dtype)


class _RoundValue(torch.autograd.Function):
    """Forward: the value rounded to bf16 (an operand or a saved activation). Backward: the gradient
    passes unchanged (the rounding is a storage format, not part of the function)."""

    @staticmethod
    def forward(ctx, x):
        return bf16(x)

    @staticmethod
    def backward(ctx, g):
        return g


class _RoundGrad(torch.autograd.Function):
    """Forward: identity. Backward: the incoming gradient rounded to bf16, because it is an operand
    of the two backward matrix products of the op that produced this value."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return bf16(g)


class _SwiGLUSavedBf16(torch.autograd.Function):
    """silu(g) * u from the unrounded g, u; the backward reads g and u as saved, in bf16."""

    @staticmethod
    def forward(ctx, g, u):
        ctx.save_for_backward(bf16(g), bf16(u))
        return torch.nn.functional.silu(g) * u

    @staticmethod
    def backward(ctx, dy):
        g, u = ctx.saved_tensors
        sig = torch.sigmoid(g)
        silu = g * sig
        return dy * u * sig * (1 + g * (1 - sig)), dy * silu


def linear(x, w, bf16_mode):
    """x @ w^T; in bf16 mode with operands rounded in the forward and both backward products."""
    if not bf16_mode:
        return x @ w.T
    return _RoundGrad.apply(_RoundValue.apply(x) @ _RoundValue.apply(w).T)


def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def moe_block(cfg, P, p, h):
    """MixtralSparseMoeBlock.forward on h (B, T, C): (output, router_logits (B*T, E))."""
    B, T, C = h.shape
    E, K = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    x = h.reshape(-1, C)
    router_logits = x @ P[p + "block_sparse_moe.gate.weight"].T
    routing_weights = torch.softmax(router_logits, dim=1)
    routing_weights, selected = torch.topk(routing_weights, K, dim=-1)
    routing_weights = routing_weights / routing_weights.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(x)
    expert_mask = torch.nn.functional.one_hot(selected, num_classes=E).permute(2, 1, 0)
    for e in range(E):
        idx, top_x = torch.where(expert_mask[e])
        cur = x[top_x]
        w1, w2, w3 = (P[p + f"block_sparse_moe.experts.{e}.{w}.weight"] for w in ("w1", "w2", "w3"))
        y = (torch.nn.functional.silu(cur @ w1.T) * (cur @ w3.T)) @ w2.T
        out = out.index_add(0, top_x, y * routing_weights[top_x, idx, None])
    return out.reshape(B, T, C), router_logits


def load_balancing_loss(router_logits, E, K, attention_mask):
    """transformers' load_balancing_loss_func; router_logits: one (B*T, E) tensor per layer,
    attention_mask (B, T) of 0/1."""
    cat = torch.cat(router_logits, dim=0)
    rw = torch.softmax(cat, dim=-1)
    _, selected = torch.topk(rw, K, dim=-1)
    expert_mask = torch.nn.functional.one_hot(selected, E).double()  # (L*N, K, E)
    B, T = attention_mask.shape
    L = cat.shape[0] // (B * T)
    am = attention_mask.double()
    em = am[None, :, :, None, None].expand(L, B, T, K, E).reshape(-1, K, E)
    tokens_per_expert = (expert_mask * em).sum(0) / em.sum(0)
    rm = am[None, :, :, None].expand(L, B, T, E).reshape(-1, E)
    router_prob_per_expert = (rw * rm).sum(0) / rm.sum(0)
    return (tokens_per_expert * router_prob_per_expert.unsqueeze(0)).sum() * E


def forward(cfg, P, input_ids, position_ids, sample_ids, bf16_mode=False, attention="saved", router_logits=None):
    """Returns logits (B, T, V). P: dict name -> float64 tensor. bf16_mode: the mixed-precision
    recipe in the module comment (attention: "saved" or "autocast", see there). A mixture of
    experts appends each layer's router logits (B*T, E) to the list router_logits."""
    rv = _RoundValue.apply if bf16_mode else (lambda t: t)
    ac = bf16_mode and attention == "autocast"
    B, T = input_ids.shape
    NH, KVH, HD = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    inv_freq = rope_inv_freq(cfg).double()
    ang = position_ids.double()[..., None] * inv_freq  # (B, T, HD/2)
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # (B, 1, T, HD)
    i = torch.arange(T)
    allowed = (i[None, :] <= i[:, None])[None]  # (1, T, T) key <= query
    allowed = allowed & (sample_ids[:, :, None] == sample_ids[:, None, :])
    win = cfg.get("sliding_window") or 0
    if win:
        allowed = allowed & ((i[:, None] - i[None, :]) < win)[None]
    mask = torch.zeros(B, 1, T, T, dtype=torch.float64).masked_fill(~allowed[:, None], float("-inf"))
    x = P["model.embed_tokens.weight"][input_ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, P[p + "input_layernorm.weight"], eps)
        q = linear(h, P[p + "self_attn.q_proj.weight"], bf16_mode).view(B, T, NH, HD).transpose(1, 2)
        k = linear(h, P[p + "self_attn.k_proj.weight"], bf16_mode).view(B, T, KVH, HD).transpose(1, 2)
        v = linear(h, P[p + "self_attn.v_proj.weight"], bf16_mode).view(B, T, KVH, HD).transpose(1, 2)
        q = rv(q * cos + rotate_half(q) * sin)  # (B, NH, T, HD), saved in bf16
        k = rv(k * cos + rotate_half(k) * sin)
        v = rv(v)
        k = k.repeat_interleave(NH // KVH, dim=1)
        v = v.repeat_interleave(NH // KVH, dim=1)
        s = q @ k.transpose(2, 3)
        if ac:
            s = _RoundGrad.apply(s)
        s = s / math.sqrt(HD) + mask
        pr = torch.softmax(s, dim=-1)
        a = rv(pr) @ v if ac else pr @ v  # (B, NH, T, HD)
        if ac:
            a = _RoundGrad.apply(a)
        a = a.transpose(1, 2).reshape(B, T, NH * HD)
        x = x + linear(a, P[p + "self_attn.o_proj.weight"], bf16_mode)
        h = rmsnorm(x, P[p + "post_attention_layernorm.weight"], eps)
        if cfg.get("num_local_experts"):
            assert not bf16_mode
            y, rl = moe_block(cfg, P, p, h)
            if router_logits is not None:
                router_logits.append(rl)
            x = x + y
            continue
        g = linear(h, P[p + "mlp.gate_proj.weight"], bf16_mode)
        u = linear(h, P[p + "mlp.up_proj.weight"], bf16_mode)
        y = _SwiGLUSavedBf16.apply(g, u) if bf16_mode else torch.nn.functional.silu(g) * u
        x = x + linear(y, P[p + "mlp.down_proj.weight"], bf16_mode)
    x = rmsnorm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return linear(x, head, bf16_mode)


def loss_fn(logits, targets):
    """Mean cross-entropy over targets != -100 (and its count)."""
    V = logits.shape[-1]
    lf = logits.reshape(-1, V)
    t = targets.reshape(-1)
    n = int((t != -100).sum())
    return torch.nn.functional.cross_entropy(lf, t, ignore_index=-100, reduction="sum") / n, n


def clip_grad_norm(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_: one global L2 norm, scale by max_norm / (norm + 1e-6)."""
    total = math.sqrt(sum(float((g * g).sum()) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g.mul_(coef)
    return total


def adamw_step(params, grads, state, lr, peak_lr, wd, betas=(0.9, 0.95), eps=1e-8):
    """Composer's DecoupledAdamW (one step)."""
    b1, b2 = betas
    state["step"] = state.get("step", 0) + 1
    t = state["step"]
    for name, p in params.items():
        g = grads[name]
        m = state.setdefault("m." + name, torch.zeros_like(p))
        v = state.setdefault("v." + name, torch.zeros_like(p))
        if wd != 0:
            p.mul_(1 - (lr / peak_lr) * wd)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        bc1 = 1 - b1 ** t
        bc2 = 1 - b2 ** t
        denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
        p.addcdiv_(m, denom, value=-lr / bc1)


def lion_step(params, grads, state, lr, peak_lr, wd, betas=(0.99, 0.95)):
    """Composer/llm-foundry's DecoupledLionW (one step)."""
    b1, b2 = betas
    for name, p in params.items():
        g = grads[name]
        m = state.setdefault("m." + name, torch.zeros_like(p))
        if wd != 0:
            p.mul_(1 - (lr / peak_lr) * wd)
        p.add_(m.lerp(g, 1 - b1).sign_(), alpha=-lr)
        m.lerp_(g, 1 - b2)
