#!/usr/bin/env python3
"""Writes Tests/ModelTests/Fixtures/qwen_golden.h5 (groups `qwen2/`, `qwen3/`: a tiny Hugging Face
Qwen2ForCausalLM and Qwen3ForCausalLM's config, weights, inputs, logits, loss and gradients) and the
same two models as Hugging Face directories, Tests/ModelTests/Fixtures/hf-qwen2/ and hf-qwen3/, for
`meshlm ckpt import-hf`. Run offline; see README.md beside this script.

    python3 tools/golden/make_qwen_fixture.py [--fixtures DIRECTORY]
"""
import argparse
import json
import os
import shutil

import h5py
import numpy as np
import torch
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from make_llama_fixture import randomize

BATCH, SEQUENCE = 2, 13
EOS = 2
# Row 1 packs two documents: 5 tokens (the last one EOS), then 8 tokens whose positions restart.
FIRST_DOCUMENT = 5

# Constructor arguments of each transformers config. rope_theta 1e6 (Qwen's own value) rather than
# the Llama fixture's 10000, so that a reader falling back to 10000 fails.
SHARED = {
    "vocab_size": 263, "hidden_size": 40, "intermediate_size": 72, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0}, "rms_norm_eps": 1e-6,
    "hidden_act": "silu", "use_sliding_window": False, "bos_token_id": 1, "eos_token_id": EOS,
}
VARIANTS = {
    # Qwen2Config has no head_dim field (the attention reads it with getattr, default
    # hidden_size / num_attention_heads) and no attention_bias: q/k/v always have biases.
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(SHARED, head_dim=10, tie_word_embeddings=False)),
    # head_dim 12 ≠ hidden_size / num_attention_heads = 10: q_proj is 40 → 48, o_proj 48 → 40.
    "qwen3": (Qwen3Config, Qwen3ForCausalLM,
              dict(SHARED, head_dim=12, attention_bias=False, tie_word_embeddings=True)),
}


def hf_model(config_class, model_class, arguments):
    hf_config = config_class(**arguments)
    hf_config._attn_implementation = "eager"
    model = model_class(hf_config).float()
    # The Llama fixture's weights: matrices and biases N(0, 0.15²), embeddings N(0, 0.5²), norm
    # weights (q_norm, k_norm included) 1 + N(0, 0.1²).
    randomize(model)
    return model


def inputs(vocab_size):
    """The Llama fixture's input scheme (same seed; ids drawn from this vocabulary)."""
    generator = torch.Generator().manual_seed(99)
    input_ids = torch.randint(3, vocab_size, (BATCH, SEQUENCE), generator=generator, dtype=torch.int64)
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


def run(model, input_ids, position_ids, labels=None):
    # An explicit all-ones attention mask keeps the plain causal mask across packed documents.
    return model(input_ids=input_ids, position_ids=position_ids, attention_mask=torch.ones_like(input_ids),
                 labels=labels, use_cache=False)


def reference_logits(config, weights, input_ids, position_ids):
    """The forward pass written out from README.md's description of the Qwen2/Qwen3 math, with
    plain torch ops, to check that description against transformers."""
    heads, kv_heads, head_dim = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    eps, theta = config["rms_norm_eps"], config["rope_theta"]
    batch, sequence = input_ids.shape

    def rms_norm(x, weight):  # over the last axis
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def linear(x, name):
        y = x @ weights[name + ".weight"].T
        return y + weights[name + ".bias"] if name + ".bias" in weights else y

    inverse_frequencies = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = position_ids[..., None].float() * inverse_frequencies      # [B, T, head_dim/2]
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()

    def rope(x):  # x: [B, T, heads, head_dim]; rotate-half pairs (i, i + head_dim/2)
        half = head_dim // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), -1)
        return x * cos[:, :, None] + rotated * sin[:, :, None]

    causal = torch.full((sequence, sequence), float("-inf")).triu(1)
    hidden = weights["model.embed_tokens.weight"][input_ids]
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        x = rms_norm(hidden, weights[prefix + "input_layernorm.weight"])
        q = linear(x, prefix + "self_attn.q_proj").view(batch, sequence, heads, head_dim)
        k = linear(x, prefix + "self_attn.k_proj").view(batch, sequence, kv_heads, head_dim)
        v = linear(x, prefix + "self_attn.v_proj").view(batch, sequence, kv_heads, head_dim)
        if prefix + "self_attn.q_norm.weight" in weights:  # Qwen3: per head, before RoPE
            q = rms_norm(q, weights[prefix + "self_attn.q_norm.weight"])
            k = rms_norm(k, weights[prefix + "self_attn.k_norm.weight"])
        q, k = rope(q), rope(k)
        group = heads // kv_heads  # query head h reads KV head h // group
        k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / head_dim ** 0.5 + causal
        attention = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(batch, sequence, heads * head_dim)
        hidden = hidden + linear(attention, prefix + "self_attn.o_proj")
        x = rms_norm(hidden, weights[prefix + "post_attention_layernorm.weight"])
        gate, up = linear(x, prefix + "mlp.gate_proj"), linear(x, prefix + "mlp.up_proj")
        hidden = hidden + linear(torch.nn.functional.silu(gate) * up, prefix + "mlp.down_proj")
    hidden = rms_norm(hidden, weights["model.norm.weight"])
    return hidden @ weights.get("lm_head.weight", weights["model.embed_tokens.weight"]).T


def write_variant(file, group_name, fixtures):
    config_class, model_class, arguments = VARIANTS[group_name]
    torch.manual_seed(0)
    model = hf_model(config_class, model_class, arguments)
    input_ids, position_ids, labels, targets = inputs(arguments["vocab_size"])

    directory = os.path.join(fixtures, "hf-" + group_name)
    shutil.rmtree(directory, ignore_errors=True)
    model.save_pretrained(directory, safe_serialization=True)
    # config_json: the config.json transformers just wrote, plus rope_theta flattened to the top
    # level (transformers 5 writes it only inside rope_parameters; 4.x and the Hub checkpoints
    # write it only at the top level).
    with open(os.path.join(directory, "config.json")) as stream:
        config = json.load(stream)
    assert config["rope_parameters"]["rope_type"] == "default", config["rope_parameters"]
    config["rope_theta"] = config["rope_parameters"]["rope_theta"]
    config = dict(sorted(config.items()))

    group = file.create_group(group_name)
    group.create_dataset("config_json", data=np.frombuffer(json.dumps(config, indent=1).encode(), dtype=np.uint8))
    group.create_dataset("input_ids", data=input_ids.numpy().astype(np.int32))
    group.create_dataset("position_ids", data=position_ids.numpy().astype(np.int32))
    group.create_dataset("labels", data=labels.numpy().astype(np.int32))
    group.create_dataset("targets", data=targets.numpy().astype(np.int32))
    # Tied: named parameters list lm_head.weight once, as model.embed_tokens.weight.
    weights = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    for name, parameter in weights.items():
        group.create_dataset("weights/" + name, data=parameter.numpy())

    model.zero_grad()
    output = run(model, input_ids, position_ids, labels)
    output.loss.backward()
    logits = output.logits.detach()
    # The shift, checked: HF's loss is the mean over counted targets of the explicit form.
    counted = targets != -100
    explicit = torch.nn.functional.cross_entropy(logits[counted], targets[counted])
    assert abs(explicit.item() - output.loss.item()) < 1e-6, (explicit.item(), output.loss.item())
    group.create_dataset("logits", data=logits.numpy())
    group.create_dataset("loss", data=np.array([output.loss.item()], dtype=np.float64))
    for name, parameter in model.named_parameters():
        group.create_dataset("grad/" + name, data=parameter.grad.numpy())

    # README.md's math, written out, gives the same logits.
    with torch.no_grad():
        reference = reference_logits(config, weights, input_ids, position_ids)
    difference = (reference - logits).abs().max().item()
    assert difference < 1e-5, f"{group_name}: reference forward differs from transformers by {difference}"

    # The Hugging Face directory holds the same model: from_pretrained gives the same logits, bit for bit.
    with torch.no_grad():
        loaded = model_class.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32)
        reloaded = run(loaded, input_ids, position_ids).logits
    assert torch.equal(reloaded, logits), f"{group_name}: from_pretrained logits differ from the h5's"
    files = {name: os.path.getsize(os.path.join(directory, name)) for name in sorted(os.listdir(directory))}
    print(f"{group_name}: {len(weights)} tensors, loss {output.loss.item():.6f}, "
          f"reference max abs diff {difference:.2e}, {directory}: {files}")


def main():
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "ModelTests", "Fixtures")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", default=os.path.normpath(default),
                        help="directory to write qwen_golden.h5, hf-qwen2/ and hf-qwen3/ into")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    output = os.path.join(arguments.fixtures, "qwen_golden.h5")
    temporary = output + ".tmp"
    with h5py.File(temporary, "w") as file:
        file.attrs["generator"] = "tools/golden/make_qwen_fixture.py"
        file.attrs["versions"] = f"torch {torch.__version__}, transformers {transformers.__version__}, h5py {h5py.__version__}"
        for group_name in VARIANTS:
            write_variant(file, group_name, arguments.fixtures)
    os.replace(temporary, output)
    print(f"wrote {output} ({os.path.getsize(output)} bytes)")


if __name__ == "__main__":
    main()
