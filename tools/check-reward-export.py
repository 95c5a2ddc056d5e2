#!/usr/bin/env python3
"""The Python peer of the reward model's export test (Tests/MeshLMTests/RewardCommandTests.swift).

Loads a `meshlm ckpt export-hf` directory of a reward model (`meshlm reward`) as a user would,

    AutoModelForSequenceClassification.from_pretrained(MODEL)

fails (exit 1, saying what) unless it is a …ForSequenceClassification with one label, loaded
with no missing, unexpected or newly initialized weights, and writes each sequence's score as
transformers pools it (batch 1: no padding, so the last token's) as little-endian f32 [N].

The same sequences are then scored again as one right-padded batch, padded with the exported
tokenizer's pad token (which none of them holds) after setting config.pad_token_id to it, as
TRL's RewardTrainer does: transformers then pools the last non-pad token, and the scores must be
the unpadded ones (to 1e-5 relative; printed).

    /tmp/golden-venv/bin/python tools/check-reward-export.py --model OUT \
        --sequences "5,6,7;8,9,10,11" --output scores.bin
"""
import argparse
import logging
import sys
import warnings

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="the export-hf directory")
    parser.add_argument("--sequences", required=True, help="token ids: comma-separated, sequences separated by ;")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sequences = [[int(t) for t in sequence.split(",")] for sequence in args.sequences.split(";")]

    # transformers reports missing, unexpected and newly initialized weights as warnings or log
    # lines; keep them all.
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger().addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = AutoModelForSequenceClassification.from_pretrained(
            args.model, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    messages = [str(w.message) for w in caught] + records
    bad = [m for m in messages if any(word in m.lower() for word in ("missing", "unexpected", "newly initialized"))]
    problems = {key: value for key, value in info.items() if value}
    if bad or problems:
        sys.exit("check-reward-export: the load reported " + "; ".join(bad + [f"{k}: {v}" for k, v in problems.items()]))
    name = type(model).__name__
    if not name.endswith("ForSequenceClassification") or model.config.num_labels != 1:
        sys.exit(f"check-reward-export: loaded {name} with num_labels {model.config.num_labels}; a reward model is "
                 "…ForSequenceClassification with one label")
    if model.config.pad_token_id is not None and any(model.config.pad_token_id in s for s in sequences):
        sys.exit(f"check-reward-export: config.pad_token_id {model.config.pad_token_id} occurs in a sequence, "
                 "so transformers would not score it at its last token")
    configured = model.config.pad_token_id
    model.eval()

    with torch.no_grad():
        scores = torch.stack([model(input_ids=torch.tensor([s])).logits[0, 0] for s in sequences])
    np.ascontiguousarray(scores.float().numpy()).astype("<f4").tofile(args.output)

    # The padded batch, pooled at each sequence's last non-pad token.
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    pad = tokenizer.pad_token_id
    if pad is None or any(pad in s for s in sequences):
        sys.exit(f"check-reward-export: the exported tokenizer's pad token {pad} is missing or occurs in a sequence")
    model.config.pad_token_id = pad
    length = max(len(s) for s in sequences)
    ids = torch.tensor([s + [pad] * (length - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (length - len(s)) for s in sequences])
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits[:, 0]
    difference = ((batched - scores).abs() / scores.abs().clamp(min=1e-6)).max().item()
    print(f"check-reward-export: {name} (num_labels 1, config pad_token_id {configured}) "
          f"scored {len(sequences)} sequences: {[round(float(s), 6) for s in scores]}; as a right-padded batch "
          f"(pad {pad}) max relative difference {difference:.2e}", flush=True)
    if difference > 1e-5:
        sys.exit("check-reward-export: the padded batch's scores differ from the unpadded ones")


if __name__ == "__main__":
    main()
