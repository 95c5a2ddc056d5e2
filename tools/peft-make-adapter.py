#!/usr/bin/env python3
"""Makes a PEFT LoRA adapter for MeshLM's import test (Tests/MeshLMTests/PeftInteropTests.swift).

Wraps a transformers base directory with `get_peft_model(model, LoraConfig(...))`, gives every
lora_A, lora_B and modules_to_save copy seeded random values (PEFT starts lora_B at zero, which
would make the adapter a no-op), saves it with `save_pretrained` (adapter_config.json +
adapter_model.safetensors, PEFT's own keys and settings), and writes the adapted model's logits
for one sequence (positions 0..T-1) as little-endian f32: [T, V], or the pooled scores
[num_labels] with --sequence-classification. `meshlm ckpt import-hf BASE --adapter OUTPUT` must
then give these logits.

    /tmp/golden-venv/bin/python tools/peft-make-adapter.py --base DIR --output DIR \
        --target-modules q_proj,v_proj [--regex] [--modules-to-save embed_tokens] \
        [--ensure-weight-tying] [--r 8 --alpha 16 --rslora] --tokens 5,6,7 --logits FILE
"""
import argparse
import os
import sys

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--target-modules", required=True, help="comma-separated names, or with --regex one expression")
    parser.add_argument("--regex", action="store_true", help="pass --target-modules to PEFT as a string")
    parser.add_argument("--modules-to-save", default="")
    parser.add_argument("--ensure-weight-tying", action="store_true")
    parser.add_argument("--r", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=8)
    parser.add_argument("--rslora", action="store_true")
    parser.add_argument("--sequence-classification", action="store_true")
    parser.add_argument("--seed", type=int, default=4321)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--logits", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)

    auto = AutoModelForSequenceClassification if args.sequence_classification else AutoModelForCausalLM
    model = auto.from_pretrained(args.base, dtype=torch.float32, attn_implementation="eager")
    targets = args.target_modules if args.regex else args.target_modules.split(",")
    config = LoraConfig(r=args.r, lora_alpha=args.alpha, target_modules=targets, use_rslora=args.rslora,
                        modules_to_save=[m for m in args.modules_to_save.split(",") if m] or None,
                        ensure_weight_tying=args.ensure_weight_tying, lora_dropout=0.0, bias="none",
                        task_type="SEQ_CLS" if args.sequence_classification else "CAUSAL_LM")
    model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
            elif "modules_to_save" in name:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(args.output)
    readme = os.path.join(args.output, "README.md")
    if os.path.exists(readme):
        os.remove(readme)

    model.eval()
    ids = torch.tensor([[int(t) for t in args.tokens.split(",")]])
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None]).logits[0]
    np.ascontiguousarray(logits.float().numpy()).astype("<f4").tofile(args.logits)
    print(f"peft-make-adapter: {type(model).__name__} saved to {args.output}; logits {tuple(logits.shape)} written to {args.logits}")


if __name__ == "__main__":
    sys.exit(main())
