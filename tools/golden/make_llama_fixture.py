#!/usr/bin/env python3
"""Writes Tests/ModelTests/Fixtures/llama_golden.h5: a tiny Hugging Face LlamaForCausalLM's
weights, inputs, logits, loss, gradients and five AdamW steps, for MeshLM's golden parity test
(Tests/ModelTests/GoldenParityTests.swift). Run offline; see README.md beside this script.

    python3 tools/golden/make_llama_fixture.py [--output PATH]
"""
import argparse
import copy
import json
import os

import h5py
import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

BATCH, SEQUENCE = 2, 13
EOS = 2
# Row 1 packs two documents: 5 tokens (the last one EOS), then 8 tokens whose positions restart.
FIRST_DOCUMENT = 5
# AdamW as the Swift test runs it: one group with weight decay (every matrix, embeddings and
# lm_head included), one without (the RMSNorm weights, whose names contain "norm").
LEARNING_RATE, BETA1, BETA2, EPSILON, WEIGHT_DECAY = 1e-2, 0.9, 0.95, 1e-8, 0.1
ADAMW_STEPS = 5


def meshlm_config(tied):
    """The model config as MeshLM's LlamaConfig decodes it (HF config.json names, transformers 4.x
    style `rope_theta` + `rope_scaling`)."""
    return {
        "vocab_size": 67, "hidden_size": 40, "intermediate_size": 72, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 10,
        "max_position_embeddings": 256, "rope_theta": 10000.0,
        # original_max_position_embeddings 64 puts the head's five wavelengths (6.3 … 9934) in all
        # three llama3 bands: kept (< 16), smoothed (16 … 64) and stretched by `factor` (> 64).
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "rms_norm_eps": 1e-5, "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": EOS,
    }


def hf_model(config):
    scaling = dict(config["rope_scaling"], rope_theta=config["rope_theta"])
    hf_config = LlamaConfig(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"], num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"], num_key_value_heads=config["num_key_value_heads"],
        head_dim=config["head_dim"], max_position_embeddings=config["max_position_embeddings"],
        rope_parameters=scaling, rms_norm_eps=config["rms_norm_eps"],
        tie_word_embeddings=config["tie_word_embeddings"], bos_token_id=1, eos_token_id=EOS,
        attention_bias=False, mlp_bias=False, hidden_act="silu")
    hf_config._attn_implementation = "eager"
    model = LlamaForCausalLM(hf_config).float()
    randomize(model)
    return model


def randomize(model, seed=1234, matrix_scale=lambda name: 0.15):
    """Random weights large enough that every gradient is far from zero: matrices (and biases)
    N(0, 0.15²) (q·k logits of order 1 at hidden size 40; `matrix_scale(name)` may choose
    another deviation per tensor), embeddings N(0, 0.5²), norm weights 1 + N(0, 0.1²), drawn in
    `named_parameters()` order from one seeded generator. The other fixture scripts use it too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
            if "norm" in name:
                parameter.copy_(1 + 0.1 * noise)
            elif "embed_tokens" in name:
                parameter.copy_(0.5 * noise)
            else:
                parameter.copy_(matrix_scale(name) * noise)


def inputs():
    generator = torch.Generator().manual_seed(99)
    input_ids = torch.randint(3, 67, (BATCH, SEQUENCE), generator=generator, dtype=torch.int64)
    input_ids[1, FIRST_DOCUMENT - 1] = EOS
    position_ids = torch.arange(SEQUENCE).repeat(BATCH, 1)
    position_ids[1, FIRST_DOCUMENT:] = torch.arange(SEQUENCE - FIRST_DOCUMENT)
    labels = input_ids.clone()
    labels[0, 3] = -100
    labels[0, 9] = -100
    # The target that crosses the document boundary (second document's first token, predicted
    # from the first document's EOS) does not count.
    labels[1, FIRST_DOCUMENT] = -100
    # MeshLM's explicit targets: HF shifts inside the loss (position t predicts labels[t + 1]);
    # MeshLM takes targets[t] = labels[t + 1] and -100 at the last position.
    targets = torch.full_like(labels, -100)
    targets[:, :-1] = labels[:, 1:]
    return input_ids, position_ids, labels, targets


def run(model, input_ids, position_ids, labels, document_masked):
    # An explicit all-ones attention mask keeps the plain causal mask; with none, transformers
    # reads packed documents from positions that restart and masks attention per document (only
    # without a KV cache, hence use_cache=False).
    mask = None if document_masked else torch.ones_like(input_ids)
    return model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, labels=labels, use_cache=False)


def parameter_groups(model):
    decay = [p for n, p in model.named_parameters() if "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if "norm" in n]
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]


def write_variant(file, group_name, tied):
    config = meshlm_config(tied)
    torch.manual_seed(0)
    model = hf_model(config)
    input_ids, position_ids, labels, targets = inputs()
    group = file.create_group(group_name)
    group.create_dataset("config_json", data=np.frombuffer(json.dumps(config, indent=1).encode(), dtype=np.uint8))
    group.create_dataset("input_ids", data=input_ids.numpy().astype(np.int32))
    group.create_dataset("position_ids", data=position_ids.numpy().astype(np.int32))
    group.create_dataset("labels", data=labels.numpy().astype(np.int32))
    group.create_dataset("targets", data=targets.numpy().astype(np.int32))
    # Tied: the state dict also lists lm_head.weight, the same tensor as embed_tokens; named
    # parameters list it once, as MeshLM's layout does.
    names = [n for n, _ in model.named_parameters()]
    for name, parameter in model.named_parameters():
        group.create_dataset("weights/" + name, data=parameter.detach().numpy())

    def record(prefix, document_masked):
        model.zero_grad()
        output = run(model, input_ids, position_ids, labels, document_masked)
        output.loss.backward()
        # The shift, checked: HF's loss is the mean over counted targets of the explicit form.
        logits = output.logits.detach()
        counted = targets != -100
        explicit = torch.nn.functional.cross_entropy(logits[counted], targets[counted])
        assert abs(explicit.item() - output.loss.item()) < 1e-6, (explicit.item(), output.loss.item())
        group.create_dataset(prefix + "logits", data=logits.numpy())
        group.create_dataset(prefix + "loss", data=np.array([output.loss.item()], dtype=np.float64))
        for name, parameter in model.named_parameters():
            group.create_dataset(prefix + "grad/" + name, data=parameter.grad.numpy())

    record("", document_masked=False)
    if not tied:
        record("document_masked/", document_masked=True)

    trained = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(parameter_groups(trained), lr=LEARNING_RATE, betas=(BETA1, BETA2), eps=EPSILON)
    losses = []
    for _ in range(ADAMW_STEPS):
        optimizer.zero_grad()
        output = run(trained, input_ids, position_ids, labels, document_masked=False)
        output.loss.backward()
        losses.append(output.loss.item())
        optimizer.step()
    adamw = group.create_group("adamw")
    adamw.create_dataset("losses", data=np.array(losses, dtype=np.float64))
    adamw.create_dataset("hyperparameters",
                         data=np.array([LEARNING_RATE, BETA1, BETA2, EPSILON, WEIGHT_DECAY], dtype=np.float64))
    adamw.attrs["hyperparameters"] = "lr, beta1, beta2, eps, weight_decay (decay group; the no-decay group uses 0)"
    adamw.attrs["groups"] = "weight decay on every parameter except those whose name contains 'norm'"
    print(f"{group_name}: {len(names)} tensors, loss {losses[0]:.6f}, AdamW losses {[round(x, 6) for x in losses]}")


def main():
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                           "Tests", "ModelTests", "Fixtures", "llama_golden.h5")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.path.normpath(default))
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    temporary = arguments.output + ".tmp"
    with h5py.File(temporary, "w") as file:
        file.attrs["generator"] = "tools/golden/make_llama_fixture.py"
        file.attrs["versions"] = f"torch {torch.__version__}, transformers {transformers.__version__}, h5py {h5py.__version__}"
        write_variant(file, "untied", tied=False)
        write_variant(file, "tied", tied=True)
    os.replace(temporary, arguments.output)
    print(f"wrote {arguments.output} ({os.path.getsize(arguments.output)} bytes)")


if __name__ == "__main__":
    main()
