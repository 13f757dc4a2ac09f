#!/usr/bin/python3
"""Check an HF model folder written by ftune with an independent reader (this file: the
safetensors layout parsed by hand, values through PyTorch). Used by tools/reference/io.sh.

Checks: config.json has what transformers needs; the weights (single file or index + shards) hold
exactly the LlamaForCausalLM parameter names with the shapes the config implies, the dtype the
config names, contiguous 8-byte-aligned data with {"format": "pt"} metadata; RMSNorm weights are 1
and the matrices look like normal(0, initializer_range).

Usage: /usr/bin/python3 tests/io/check_hf_folder.py DIR
"""
import json
import os
import struct
import sys

import torch

DT = {"F32": (torch.float32, 4), "BF16": (torch.bfloat16, 2), "F16": (torch.float16, 2)}


def read_file(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0, f"{path}: data not 8-byte aligned"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    assert meta.get("format") == "pt", f"{path}: metadata {meta}"
    data = raw[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    at = 0
    for b, e, k in spans:
        assert b == at, f"{path}: {k} starts at {b}, expected {at}"
        at = e
    assert at == len(data), f"{path}: data {len(data)} bytes, tensors cover {at}"
    out = {}
    for k, v in header.items():
        dt, size = DT[v["dtype"]]
        b, e = v["data_offsets"]
        buf = bytearray(data[b:e])
        t = torch.frombuffer(buf, dtype=torch.int16 if size == 2 else torch.float32) if e > b else torch.empty(0)
        if size == 2 and e > b:
            t = t.view(dt)
        out[k] = (v["dtype"], v["shape"], t.reshape(v["shape"]).to(torch.float32))
    return out


def main(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    for key in ("architectures", "model_type", "hidden_size", "num_hidden_layers", "vocab_size", "torch_dtype"):
        assert key in cfg, f"config.json lacks {key}"
    assert cfg["architectures"][0] in ("LlamaForCausalLM", "MistralForCausalLM")
    tensors = {}
    idx = os.path.join(d, "model.safetensors.index.json")
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        tensors = read_file(single)
        nfiles = 1
    else:
        index = json.load(open(idx))
        files = sorted(set(index["weight_map"].values()))
        for f in files:
            part = read_file(os.path.join(d, f))
            for k in part:
                assert index["weight_map"][k] == f, f"{k} is in {f}, the index says {index['weight_map'][k]}"
            tensors.update(part)
        total = sum(t.numel() * (4 if dt == "F32" else 2) for dt, _, t in tensors.values())
        assert index["metadata"]["total_size"] == total, (index["metadata"]["total_size"], total)
        nfiles = len(files)
    C, V, F, L = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    NH, KVH = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    HD = cfg.get("head_dim") or C // NH
    want = {"model.embed_tokens.weight": [V, C], "model.norm.weight": [C]}
    for i in range(L):
        p = f"model.layers.{i}."
        want.update({p + "input_layernorm.weight": [C], p + "post_attention_layernorm.weight": [C],
                     p + "self_attn.q_proj.weight": [NH * HD, C], p + "self_attn.k_proj.weight": [KVH * HD, C],
                     p + "self_attn.v_proj.weight": [KVH * HD, C], p + "self_attn.o_proj.weight": [C, NH * HD],
                     p + "mlp.gate_proj.weight": [F, C], p + "mlp.up_proj.weight": [F, C],
                     p + "mlp.down_proj.weight": [C, F]})
    if not cfg.get("tie_word_embeddings", False):
        want["lm_head.weight"] = [V, C]
    assert set(tensors) == set(want), f"names differ: {set(tensors) ^ set(want)}"
    dtype = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[cfg["torch_dtype"]]
    mats = []
    for k, (dt, shape, t) in tensors.items():
        assert shape == want[k], f"{k}: {shape} != {want[k]}"
        assert dt == dtype, f"{k}: {dt}, config says {cfg['torch_dtype']}"
        if len(shape) == 1:
            assert bool((t == 1).all()), f"{k} is not all ones"
        else:
            mats.append(t.flatten())
    allm = torch.cat(mats).double()
    std = float(allm.std())
    rng = cfg.get("initializer_range", 0.02)
    assert abs(float(allm.mean())) < 0.05 * rng and abs(std - rng) < 0.05 * rng, (float(allm.mean()), std)
    n = sum(t.numel() for _, _, t in tensors.values())
    print(f"{d}: {len(tensors)} tensors in {nfiles} file(s), {n} parameters, {dtype}, std {std:.5f}: ok")


if __name__ == "__main__":
    main(sys.argv[1])
