#!/usr/bin/env python3
"""Writes Tests/ModelTests/Fixtures/nf4_golden.h5: matrices quantized by bitsandbytes to NF4 with
double-quantized scales (`quantize_4bit(quant_type="nf4", blocksize=64, compress_statistics=True)`,
what `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)`
does to each linear layer), for MeshLM's `NF4Matrix` parity tests. Run offline on CPU; see README.md.

    python3 tools/golden/make_nf4_fixture.py [--output PATH]
"""
import argparse
import os
import sys

import bitsandbytes
import bitsandbytes.functional as F
import h5py
import numpy as np
import torch

# name: (rows, columns, how the values are drawn). `tail` has 1000 elements: not a multiple of 64
# (a short last block) nor of 256 blocks. `wide` has more than 256 blocks (two scale groups).
# `zeros` has all-zero blocks and an exact tie on an NF4 decision bound.
MATRICES = {
    "normal": (48, 128, "normal"),
    "wide": (160, 192, "heavy"),
    "tail": (10, 100, "normal"),
    "zeros": (4, 128, "zeros"),
}


def values(rows, columns, kind, generator):
    if kind == "normal":
        return torch.randn(rows, columns, generator=generator) * 0.05
    if kind == "heavy":
        # Student-t-like tails and per-row scales, so block absmaxes spread widely.
        base = torch.randn(rows, columns, generator=generator)
        scale = torch.rand(rows, 1, generator=generator) * 0.2 + 0.01
        return base * scale / (torch.rand(rows, columns, generator=generator) + 0.3)
    w = torch.randn(rows, columns, generator=generator) * 0.1
    w[0, :] = 0  # two whole zero blocks
    w[1, :64] = 0.5
    w[1, 0] = 1.0  # the block's absmax: the others sit on codes 0.5 exactly
    w[1, 1] = (0.7229568362236023 + 1.0) / 2  # on a bound (f32 rounding decides)
    return w


def main():
    parser = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--output", default=os.path.join(here, "..", "..", "Tests", "ModelTests", "Fixtures", "nf4_golden.h5"))
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(2023)
    with h5py.File(args.output, "w") as file:
        file.attrs["versions"] = f"torch {torch.__version__}, bitsandbytes {bitsandbytes.__version__}, h5py {h5py.__version__}, numpy {np.__version__}, Python {sys.version.split()[0]}"
        file["nf4_code"] = F.get_4bit_type("nf4", device="cpu").numpy().astype(np.float32)
        file["dynamic_map"] = F.create_dynamic_map(signed=True).numpy().astype(np.float32)
        for name, (rows, columns, kind) in MATRICES.items():
            w = values(rows, columns, kind, generator).float().contiguous()
            packed, state = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
            dequantized = F.dequantize_4bit(packed, state)
            group = file.create_group(name)
            group["weight"] = w.numpy()
            group["packed"] = packed.reshape(-1).numpy()
            group["absmax_codes"] = state.absmax.reshape(-1).numpy()
            group["offset"] = np.array([state.offset.item()], dtype=np.float32)
            group["group_scales"] = state.state2.absmax.reshape(-1).numpy().astype(np.float32)
            group["dequantized"] = dequantized.reshape(rows, columns).numpy().astype(np.float32)
            print(f"{name}: {rows}x{columns}, max |w - dequant| {(w - dequantized).abs().max().item():.4g}")


if __name__ == "__main__":
    main()
