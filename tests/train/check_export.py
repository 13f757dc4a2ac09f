"""Check an HF folder exported by ftune's trainer with an independent reader and model: the files
transformers' from_pretrained reads are there, config.json has the keys LlamaConfig needs, the
safetensors hold exactly the HF parameter names and shapes (F32), the logits of the independent
PyTorch reference (tests/reference/llama_ref.py, float64) match `ftune debug forward` on the
exported folder, and greedy decoding with the reference answers the synthetic task's prompts.

usage: /usr/bin/python3 tests/train/check_export.py EXPORT_DIR FTUNE_BIN
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import llama_ref as ref  # noqa: E402

FACTS = {"capital of France?": " Paris", "color of grass?": " green", "3+4=": "7", "opposite of up?": " down"}
BOS, EOS = 256, 257


def fail(msg):
    print("export check: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            fail(f"{name}: dtype {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(t["shape"]).double()
    return out


def main():
    d, ftune = sys.argv[1], sys.argv[2]
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        if not os.path.exists(os.path.join(d, f)):
            fail(f"missing {f}")
    cfg = json.load(open(os.path.join(d, "config.json")))
    for k in ["architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
              "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings",
              "tie_word_embeddings", "torch_dtype", "hidden_act"]:
        if k not in cfg:
            fail(f"config.json lacks {k}")
    if cfg["architectures"] != ["LlamaForCausalLM"] or cfg["model_type"] != "llama" or cfg["hidden_act"] != "silu":
        fail("config.json: unexpected architecture fields")
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    P = read_safetensors(os.path.join(d, "model.safetensors"))
    want = ref.param_shapes(cfg)
    if set(P) != set(want):
        fail(f"tensor names differ from HF's: extra {sorted(set(P) - set(want))}, missing {sorted(set(want) - set(P))}")
    for n, s in want.items():
        if tuple(P[n].shape) != tuple(s):
            fail(f"{n}: shape {tuple(P[n].shape)}, expected {s}")
    # Logits of one sequence: the reference against ftune debug forward.
    ids = [BOS] + list("capital of France? Paris".encode())
    T = len(ids)
    inp = torch.tensor([ids])
    pos = torch.arange(T)[None]
    sid = torch.zeros(1, T, dtype=torch.int64)
    logits = ref.forward(cfg, P, inp, pos, sid)[0]
    with tempfile.TemporaryDirectory() as tmp:
        bf = os.path.join(tmp, "batch.json")
        lf = os.path.join(tmp, "logits.safetensors")
        json.dump({"input_ids": [ids], "targets": [ids[1:] + [-100]]}, open(bf, "w"))
        subprocess.run([ftune, "debug", "forward", "--model", d, "--batch", bf, "--logits-out", lf], check=True,
                       stdout=subprocess.DEVNULL)
        mine = read_safetensors(lf)["logits"][0]
    err = (mine - logits).abs().max().item() / logits.abs().max().item()
    if not err <= 1e-4:
        fail(f"logits differ: max abs error {err:.3g} of max |logit|")
    # Greedy answers through the reference model.
    right = 0
    for prompt, answer in FACTS.items():
        seq = [BOS] + list(prompt.encode())
        out = []
        for _ in range(12):
            t = len(seq)
            lg = ref.forward(cfg, P, torch.tensor([seq]), torch.arange(t)[None], torch.zeros(1, t, dtype=torch.int64))
            nxt = int(lg[0, -1].argmax())
            if nxt == EOS:
                break
            out.append(nxt)
            seq.append(nxt)
        text = bytes(b for b in out if b < 256).decode("utf-8", "replace")
        right += text == answer
        print(f"  reference greedy: {prompt!r} -> {text!r}")
    print(f"export check: files, config, {len(P)} HF-named F32 tensors ok; logits vs PyTorch reference: "
          f"max error {err:.2e} of max |logit|; reference greedy answers {right}/{len(FACTS)} correct")
    if right < len(FACTS) - 1:
        fail("the reference model does not answer the trained facts")


main()
