"""An independent float64 PyTorch implementation of DbrxForCausalLM, written from transformers
4.40's modeling_dbrx.py (DbrxNormAttentionNorm, DbrxAttention, DbrxRouter, DbrxExperts,
DbrxExpertGLU, DbrxForCausalLM's loss) for ftune's reference checks. Plain torch ops (Debian
python3-torch 1.13; no transformers). It takes DBRX's own config.json (nested attn_config and
ffn_config) and DBRX's parameter names.

Semantics mirrored from the 4.40 code:
  * norm_1, norm_2, norm_f: nn.LayerNorm(d_model, bias=False), eps 1e-5 (the module's default)
  * attention: Wqkv (d_model + 2 kv_n_heads head_dim, d_model), its output clamped to
    [-clip_qkv, clip_qkv] (when clip_qkv is set), split into q | k | v, RoPE rotate-half (inverse
    frequencies in fp32 as DbrxRotaryEmbedding computes them), softmax(q k^T / sqrt(head_dim)) v
    over grouped kv heads, causal, packed rows (attention only within a sample id), out_proj
  * router: weights = softmax(x layer^T) (float64 here), top_weights, top_experts = torch.topk,
    top_weights divided by torch.norm(top_weights, p=moe_normalize_expert_weights) unless that is
    None; it returns the probabilities `weights` as the block's "router logits"
  * experts: w1, v1, w2 each (E F, C), viewed (E, F, C); per expert in ascending order, the tokens
    that chose it (torch.where over the one-hot mask permuted (E, K, N)), y = (silu(x w1_e^T) *
    (x v1_e^T)) @ w2_e (w2 not transposed) times the token's top weight, index_add_ into the output
  * DbrxForCausalLM: untied lm_head; with output_router_logits the aux loss is
    load_balancing_loss_func(router outputs, E, top_k, attention_mask): the router outputs are the
    probabilities, which that function softmaxes again; added as moe_loss_weight * aux.
"""
import math

import torch

import llama_ref as ref


def internal(cfg):
    """The sizes the forward needs from DBRX's config.json (with DbrxConfig's defaults)."""
    a = cfg.get("attn_config") or {}
    f = cfg.get("ffn_config") or {}
    C, NH = cfg.get("d_model", 2048), cfg.get("n_heads", 16)
    return dict(C=C, NH=NH, HD=C // NH, KVH=a.get("kv_n_heads", 1), L=cfg.get("n_layers", 24),
                V=cfg.get("vocab_size", 32000), F=f.get("ffn_hidden_size", 3584), E=f.get("moe_num_experts", 4),
                K=f.get("moe_top_k", 1), clip=a.get("clip_qkv"), theta=a.get("rope_theta", 10000.0),
                p=f.get("moe_normalize_expert_weights", 1.0), loss_weight=f.get("moe_loss_weight", 0.01),
                aux=bool(cfg.get("output_router_logits", False)))


def param_shapes(cfg):
    d = internal(cfg)
    C, V, F, E = d["C"], d["V"], d["F"], d["E"]
    QKV = C + 2 * d["KVH"] * d["HD"]
    s = {"transformer.wte.weight": (V, C)}
    for i in range(d["L"]):
        p = f"transformer.blocks.{i}."
        s[p + "norm_attn_norm.norm_1.weight"] = (C,)
        s[p + "norm_attn_norm.attn.Wqkv.weight"] = (QKV, C)
        s[p + "norm_attn_norm.attn.out_proj.weight"] = (C, C)
        s[p + "norm_attn_norm.norm_2.weight"] = (C,)
        s[p + "ffn.router.layer.weight"] = (E, C)
        for w in ("w1", "v1", "w2"):
            s[p + "ffn.experts.mlp." + w] = (E * F, C)
    s["transformer.norm_f.weight"] = (C,)
    s["lm_head.weight"] = (V, C)
    return s


def layer_norm(x, w):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, None, 1e-5)


def router(d, P, p, x):
    """DbrxRouter.forward on x (N, C): (weights (N, E), top_weights (N, K), top_experts (N, K))."""
    weights = torch.softmax(x @ P[p + "ffn.router.layer.weight"].T, dim=-1)
    top_weights, top_experts = torch.topk(weights, d["K"], dim=-1)
    if d["p"] is not None:
        top_weights = top_weights / torch.norm(top_weights, p=d["p"], dim=-1, keepdim=True)
    return weights, top_weights, top_experts


def experts(d, P, p, x, top_weights, top_experts):
    """DbrxExperts.forward on x (N, C)."""
    E, F, C = d["E"], d["F"], d["C"]
    out = torch.zeros_like(x)
    mask = torch.nn.functional.one_hot(top_experts, num_classes=E).permute(2, 1, 0)  # (E, K, N)
    w1, v1, w2 = (P[p + "ffn.experts.mlp." + w].view(E, F, C) for w in ("w1", "v1", "w2"))
    for e in range(E):
        topk_idx, token_idx = torch.where(mask[e])
        if token_idx.shape[0] == 0:
            continue
        xe = x[token_idx]
        y = (torch.nn.functional.silu(xe @ w1[e].T) * (xe @ v1[e].T)) @ w2[e]
        out = out.index_add(0, token_idx, y * top_weights[token_idx, topk_idx, None])
    return out


def forward(cfg, P, input_ids, position_ids, sample_ids, router_out=None):
    """Logits (B, T, V); each layer's router probabilities (B*T, E) appended to router_out."""
    d = internal(cfg)
    B, T = input_ids.shape
    C, NH, KVH, HD = d["C"], d["NH"], d["KVH"], d["HD"]
    inv_freq = ref.rope_inv_freq({"head_dim": HD, "rope_theta": d["theta"]}).double()
    ang = position_ids.double()[..., None] * inv_freq
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]
    i = torch.arange(T)
    allowed = (i[None, :] <= i[:, None])[None] & (sample_ids[:, :, None] == sample_ids[:, None, :])
    mask = torch.zeros(B, 1, T, T, dtype=torch.float64).masked_fill(~allowed[:, None], float("-inf"))
    x = P["transformer.wte.weight"][input_ids]
    for l in range(d["L"]):
        p = f"transformer.blocks.{l}."
        h = layer_norm(x, P[p + "norm_attn_norm.norm_1.weight"])
        qkv = h @ P[p + "norm_attn_norm.attn.Wqkv.weight"].T
        if d["clip"] is not None:
            qkv = qkv.clamp(min=-d["clip"], max=d["clip"])
        q, k, v = qkv.split([C, KVH * HD, KVH * HD], dim=2)
        q = q.reshape(B, T, NH, HD).transpose(1, 2)
        k = k.reshape(B, T, KVH, HD).transpose(1, 2)
        v = v.reshape(B, T, KVH, HD).transpose(1, 2)
        q = q * cos + ref.rotate_half(q) * sin
        k = k * cos + ref.rotate_half(k) * sin
        k = k.repeat_interleave(NH // KVH, dim=1)
        v = v.repeat_interleave(NH // KVH, dim=1)
        s = q @ k.transpose(2, 3) / math.sqrt(HD) + mask
        a = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + a @ P[p + "norm_attn_norm.attn.out_proj.weight"].T
        h = layer_norm(x, P[p + "norm_attn_norm.norm_2.weight"]).reshape(-1, C)
        weights, top_weights, top_experts = router(d, P, p, h)
        if router_out is not None:
            router_out.append(weights)
        x = x + experts(d, P, p, h, top_weights, top_experts).reshape(B, T, C)
    x = layer_norm(x, P["transformer.norm_f.weight"])
    return x @ P["lm_head.weight"].T
