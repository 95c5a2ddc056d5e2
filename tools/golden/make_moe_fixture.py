#!/usr/bin/env python3
"""Writes tiny transformers mixture-of-experts models as Hugging Face directories for
`meshlm ckpt import-hf` and their logits for MeshLM to match (docs/moe.md, "Hugging Face"):

    Tests/ModelTests/Fixtures/hf-mixtral/          MixtralForCausalLM, save_pretrained (per-expert w1/w2/w3)
    Tests/ModelTests/Fixtures/hf-qwen2-moe/        Qwen2MoeForCausalLM, save_pretrained (q/k/v biases, 4 routed
                                                   experts top-2 renormalized, a shared expert of width 32
                                                   with its sigmoid gate)
    Tests/ModelTests/Fixtures/hf-qwen3-moe/        Qwen3MoeForCausalLM, save_pretrained (per-expert
                                                   gate/up/down_proj; layer 0 dense via mlp_only_layers,
                                                   norm_topk_prob false)
    Tests/ModelTests/Fixtures/hf-qwen3-moe-fused/  the same Qwen3-MoE weights as transformers 5 holds
                                                   them in memory (its state dict saved directly):
                                                   experts fused into mlp.experts.gate_up_proj
                                                   [E, 2·I, C] and mlp.experts.down_proj [E, C, I]
    Tests/ModelTests/Fixtures/moe_golden.json      per model: input ids [13] and logits [13, vocab]

Run offline (torch, transformers ≥ 5, safetensors); see README.md beside this script.

    python3 tools/golden/make_moe_fixture.py [--fixtures DIRECTORY]
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from safetensors.torch import save_file
from make_llama_fixture import randomize
from transformers import (MixtralConfig, MixtralForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3MoeConfig,
                          Qwen3MoeForCausalLM)

SEQUENCE = 13

# vocab_size 263 ≥ the byte tokenizer's 259 ids, so `meshlm generate --prompt-ids` runs the models.
SHARED = {
    "vocab_size": 263, "hidden_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "hidden_act": "silu",
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
}
VARIANTS = {
    # 4 experts of width 24, top-2 (Mixtral renormalizes the top-k weights).
    "mixtral": (MixtralConfig, MixtralForCausalLM,
                dict(SHARED, intermediate_size=24, num_local_experts=4, num_experts_per_tok=2,
                     rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})),
    # Every layer sparse, with Qwen2's q/k/v biases and a shared expert.
    "qwen2_moe": (Qwen2MoeConfig, Qwen2MoeForCausalLM,
                  dict(SHARED, intermediate_size=56, moe_intermediate_size=24, shared_expert_intermediate_size=32,
                       num_experts=4, num_experts_per_tok=2, norm_topk_prob=True, use_sliding_window=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 10_000.0})),
    # Layer 0 dense (width 56), layer 1 sparse: 4 experts of width 24, top-2, weights not
    # renormalized; head_dim 12 ≠ 40 / 4.
    "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM,
                  dict(SHARED, intermediate_size=56, moe_intermediate_size=24, num_experts=4, num_experts_per_tok=2,
                       mlp_only_layers=[0], decoder_sparse_step=1, norm_topk_prob=False, head_dim=12,
                       use_sliding_window=False, rope_parameters={"rope_type": "default", "rope_theta": 10_000.0})),
}


def randomize_moe(model):
    """The Llama fixture's weights, but routers N(0, 1), so routing is far from ties."""
    randomize(model, seed=4321, matrix_scale=lambda name: 1.0 if name.endswith("mlp.gate.weight") else 0.15)


def main():
    parser = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--fixtures", default=os.path.join(here, "../../Tests/ModelTests/Fixtures"))
    fixtures = parser.parse_args().fixtures
    golden = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
    for variant, (config_class, model_class, arguments) in VARIANTS.items():
        config = config_class(**arguments)
        config._attn_implementation = "eager"
        model = model_class(config).float().eval()
        randomize_moe(model)
        directory = os.path.join(fixtures, "hf-" + variant.replace("_", "-"))
        shutil.rmtree(directory, ignore_errors=True)
        model.save_pretrained(directory)
        if variant == "qwen3_moe":
            fused = directory + "-fused"
            shutil.rmtree(fused, ignore_errors=True)
            os.makedirs(fused)
            shutil.copy(os.path.join(directory, "config.json"), fused)
            state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
            assert any(name.endswith("mlp.experts.gate_up_proj") for name in state), "transformers no longer fuses experts"
            save_file(state, os.path.join(fused, "model.safetensors"), metadata={"format": "pt"})
        generator = torch.Generator().manual_seed(77)
        input_ids = torch.randint(3, config.vocab_size, (1, SEQUENCE), generator=generator)
        with torch.no_grad():
            logits = model(input_ids=input_ids).logits[0]
        golden[variant] = {"input_ids": input_ids[0].tolist(), "logits": [float(x) for x in logits.flatten()]}
    with open(os.path.join(fixtures, "moe_golden.json"), "w") as file:
        json.dump(golden, file)


if __name__ == "__main__":
    main()
