#!/usr/bin/env python3
"""The Python peer of MeshLM's PEFT interop test (Tests/MeshLMTests/PeftInteropTests.swift).

Loads a base model directory with transformers and a LoRA adapter directory with PEFT,
exactly as a user would:

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), ADAPTER)

fails (exit 1, naming the keys) when the adapter's keys are not exactly the ones PEFT's model
expects (missing or unexpected keys, or any load warning that says so), and writes the logits
of one sequence (positions 0..T-1) as little-endian f32 [T, V] for the test to compare with
`meshlm eval --logits`. With --sequence-classification the base is loaded with
AutoModelForSequenceClassification (the adapter's task_type SEQ_CLS) and the pooled scores
[num_labels] (the last token's) are written.

    /tmp/golden-venv/bin/python tools/peft-adapter-logits.py --base OUT --adapter OUT/adapter \
        --tokens 5,6,7 --output logits.bin
"""
import argparse
import logging
import sys
import warnings

import numpy as np
import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--tokens", required=True, help="comma-separated token ids")
    parser.add_argument("--output", required=True)
    parser.add_argument("--sequence-classification", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)

    # PEFT reports missing/unexpected adapter keys as a warning (or a log line); keep them all.
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger().addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auto = AutoModelForSequenceClassification if args.sequence_classification else AutoModelForCausalLM
        base = auto.from_pretrained(args.base, dtype=torch.float32, attn_implementation="eager")
        model = PeftModel.from_pretrained(base, args.adapter)
    messages = [str(w.message) for w in caught] + records
    bad = [m for m in messages if "missing" in m.lower() or "unexpected" in m.lower()]
    if bad:
        sys.exit("PEFT load warned about keys:\n" + "\n".join(bad))

    saved = set(load_file(args.adapter + "/adapter_model.safetensors").keys())
    expected = set(get_peft_model_state_dict(model).keys())
    if saved != expected:
        sys.exit(f"adapter keys differ from PEFT's: missing {sorted(expected - saved)}, unexpected {sorted(saved - expected)}")

    model.eval()
    ids = torch.tensor([[int(t) for t in args.tokens.split(",")]])
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None]).logits[0]
    if args.sequence_classification and type(model).__name__ != "PeftModelForSequenceClassification":
        sys.exit(f"the adapter's task_type gave {type(model).__name__}, not PeftModelForSequenceClassification")
    np.ascontiguousarray(logits.float().numpy()).astype("<f4").tofile(args.output)
    print(f"peft-adapter-logits: {len(saved)} adapter tensors loaded with no missing or unexpected keys; "
          f"logits {tuple(logits.shape)} written to {args.output}")


if __name__ == "__main__":
    main()
