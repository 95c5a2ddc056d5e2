#!/usr/bin/env python3
"""Writes Tests/ModelTests/Fixtures/hf-llama-score/ (a tiny transformers
LlamaForSequenceClassification, as save_pretrained writes it) and score_golden.h5 (its scores at
every position of one sequence, and the pooled score transformers returns), for MeshLM's scalar
head tests (Tests/MeshLMTests/QwenModelTests.swift). Run offline; see README.md beside this script.

    /tmp/golden-venv/bin/python tools/golden/make_score_fixture.py
"""
import argparse
import os

import h5py
import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForSequenceClassification

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "ModelTests", "Fixtures")
LABELS, SEQUENCE, PAD = 2, 13, 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default=FIXTURES)
    arguments = parser.parse_args()
    config = LlamaConfig(vocab_size=263, hidden_size=40, intermediate_size=72, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=10, max_position_embeddings=256,
                         rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, rms_norm_eps=1e-5,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=PAD,
                         num_labels=LABELS, attention_bias=False, mlp_bias=False, hidden_act="silu")
    config._attn_implementation = "eager"
    model = LlamaForSequenceClassification(config).float().eval()
    # Random weights far from the initialization (as the other fixtures): matrices N(0, 0.15²),
    # embeddings N(0, 0.5²), norm weights 1 + N(0, 0.1²); score N(0, 0.3²).
    generator = torch.Generator().manual_seed(4321)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "norm" in name:
                parameter.copy_(1 + 0.1 * noise)
            elif "embed_tokens" in name:
                parameter.copy_(0.5 * noise)
            elif name == "score.weight":
                parameter.copy_(0.3 * noise)
            else:
                parameter.copy_(0.15 * noise)
    input_ids = torch.randint(3, config.vocab_size, (1, SEQUENCE), generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        hidden = model.model(input_ids=input_ids).last_hidden_state
        scores = model.score(hidden)[0]                   # [T, labels]: every position
        pooled = model(input_ids=input_ids).logits[0]     # [labels]: the last non-pad token
    assert torch.equal(pooled, scores[-1]), (pooled, scores[-1])

    directory = os.path.join(arguments.output, "hf-llama-score")
    model.save_pretrained(directory, safe_serialization=True)
    reloaded = LlamaForSequenceClassification.from_pretrained(directory, attn_implementation="eager").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=input_ids).logits[0], pooled)
    path = os.path.join(arguments.output, "score_golden.h5")
    with h5py.File(path, "w") as out:
        out.attrs["versions"] = f"torch {torch.__version__}, transformers {transformers.__version__}, h5py {h5py.__version__}, numpy {np.__version__}"
        out["input_ids"] = input_ids[0].numpy().astype(np.int32)
        out["scores"] = scores.numpy().astype(np.float32)
        out["pooled"] = pooled.numpy().astype(np.float32)
    print(f"wrote {directory} and {path}: scores {tuple(scores.shape)}, pooled {pooled.tolist()}")


if __name__ == "__main__":
    main()
