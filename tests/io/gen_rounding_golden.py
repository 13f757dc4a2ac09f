#!/usr/bin/python3
"""Write tests/fixtures/io/torch_rounding.safetensors: fp32 values and PyTorch's own conversions of
them to bfloat16 and float16 (Tensor.to), so that ftune's round-to-nearest-even conversions are
checked against PyTorch. The file is assembled by hand in the safetensors layout (8-byte length,
JSON header padded with spaces, data), which also checks that ftune reads files it did not write.

Usage: /usr/bin/python3 tests/io/gen_rounding_golden.py OUT.safetensors
"""
import json
import struct
import sys

import torch


def values():
    g = torch.Generator().manual_seed(1234)
    v = []
    # Ties and near-ties for bf16 (16 dropped bits) and f16 (13 dropped bits) around 1.0.
    for base in (0x3F800000, 0x3F810000, 0xBF800000, 0x47000000):
        for low in (0x0000, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x1000, 0x0FFF, 0x1001, 0x3000, 0x2000):
            v.append(struct.unpack("<f", struct.pack("<I", base | low))[0])
    # The fp16 range edges, subnormals and overflow.
    v += [65504.0, 65519.0, 65520.0, 65536.0, -65520.0, 2.0 ** -14, 2.0 ** -24, 2.0 ** -25,
          1.5 * 2.0 ** -25, 1.5 * 2.0 ** -24, 2.5 * 2.0 ** -24, 2.0 ** -26, 0.0, -0.0,
          3.4028234663852886e38, -3.4028234663852886e38, 1e-45, 1.1754942106924411e-38,
          float("inf"), float("-inf")]
    # Random values over many binades, plus normals like weights.
    u = torch.rand(2048, generator=g, dtype=torch.float64)
    e = torch.randint(-30, 18, (2048,), generator=g).to(torch.float64)
    s = torch.randint(0, 2, (2048,), generator=g).to(torch.float64) * 2 - 1
    v += (s * (1 + u) * torch.pow(2.0, e)).to(torch.float32).tolist()
    v += (torch.randn(2048, generator=g) * 0.02).tolist()
    return torch.tensor(v, dtype=torch.float32)


def main(out):
    x = values()
    tensors = [("x", "F32", x), ("x_bf16", "BF16", x.to(torch.bfloat16)), ("x_f16", "F16", x.to(torch.float16))]
    header, blobs, at = {"__metadata__": {"format": "pt", "source": "torch " + torch.__version__}}, [], 0
    for name, dt, t in tensors:
        raw = t.view(torch.int16).numpy().tobytes() if dt != "F32" else t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


if __name__ == "__main__":
    main(sys.argv[1])
