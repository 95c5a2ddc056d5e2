#!/usr/bin/env python3
"""Writes Tests/ModelTests/Fixtures/dpo-step/: one DPO training step of TRL's own DPOTrainer on
the tiny Qwen2 model (Tests/ModelTests/Fixtures/hf-qwen2) as the policy, full fine-tuning, against
a perturbed copy of it as the reference, for Tests/MeshLMTests/DPOParityTests.swift, which runs
`meshlm dpo` for one step on the same pairs and compares the step's loss, gradient norm and
metrics. See README.md beside this script.

    /tmp/golden-venv/bin/python tools/golden/make_dpo_step_fixture.py

Files written:
  reference/config.json, reference/model.safetensors   the reference model (policy weights plus
      seeded noise), a transformers checkpoint that `meshlm ckpt import-hf` reads
  pairs.jsonl   the pairs as plain text {prompt, chosen, rejected} (ASCII)
  dpo_step.json the step's figures per loss setting, in float64 and (for comparison) float32

The pairs go through TRL's own pipeline: its prompt extraction, its EOS appended to each
completion, its tokenization through a byte tokenizer made here that gives MeshLM's
`--tokenizer bytes` ids (byte b is id b, EOS 256, PAD 258; the script checks the ids), its
collator (chosen and rejected padded into one batch), `DPOTrainer._compute_loss` on the real model
and the reference, and transformers' Trainer step (the logged loss, grad_norm — the total norm
of every parameter's gradient before clipping — and TRL's rewards/* and logps/*). One batch holds
every pair, so the step's figures are the whole set's.

The figures are computed with the models in float64 (the truth MeshLM's float32 is compared
with) and again in float32 (what the same computation in float32 gives: how far float32 alone
moves each figure).
"""
import argparse
import json
import math
import os
import shutil
import tempfile

import numpy as np
import safetensors.torch
import torch
import transformers
import trl
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM
from trl import DPOConfig, DPOTrainer
from trl.trainer import utils as trl_utils

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POLICY = os.path.join(ROOT, "Tests", "ModelTests", "Fixtures", "hf-qwen2")
OUTPUT = os.path.join(ROOT, "Tests", "ModelTests", "Fixtures", "dpo-step")
METRICS = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
           "logps/chosen", "logps/rejected"]
EOS, BOS, PAD = 256, 257, 258
# Rows of 96 tokens; every pair's two sequences (prompt + completion + EOS each) total 33…48
# tokens, so any packing puts exactly two pairs in a row: 8 pairs, 4 rows.
SEQUENCE_LENGTH = 96
PAIRS = [
    {"prompt": "Q: 12+7=", "chosen": " 19, since 12+7 is 19.", "rejected": " 18"},
    {"prompt": "Q: 3*4=", "chosen": " 12", "rejected": " 7, adding them up"},
    {"prompt": "Name a colour:", "chosen": " blue", "rejected": " the nine"},
    {"prompt": "Translate 'chat':", "chosen": " cat", "rejected": " dog"},
    {"prompt": "Q: 9-5=", "chosen": " 4", "rejected": " 14, a wild guess"},
    {"prompt": "France's capital?", "chosen": " Paris", "rejected": " Lyon"},
    {"prompt": "Say hi:", "chosen": " Hello there!", "rejected": " No."},
    {"prompt": "Q: 100/4=", "chosen": " 25", "rejected": " 40, or maybe 4"},
]
SETTINGS = [
    {"name": "sigmoid", "lossTypes": ["sigmoid"], "lossWeights": [1.0], "beta": 0.1},
    {"name": "ipo", "lossTypes": ["ipo"], "lossWeights": [1.0], "beta": 0.1},
    {"name": "sigmoid_sft", "lossTypes": ["sigmoid", "sft"], "lossWeights": [1.0, 0.5], "beta": 0.1},
]
TRL_LOG_PROBS = trl_utils._ChunkedLogProbFunction
NOISE_SEED = 1234
NOISE_SCALE = 0.3   # the reference's noise, per tensor, in units of the tensor's standard deviation


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: byte b as a printable character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    characters, extra = {}, 0
    for b in range(256):
        if b in printable:
            characters[b] = chr(b)
        else:
            characters[b] = chr(256 + extra)
            extra += 1
    return characters


def byte_tokenizer():
    """A transformers tokenizer giving MeshLM's byte ids: UTF-8 byte b is id b (GPT-2's byte-level
    alphabet with no merges), then <eos> 256, <bos> 257, <pad> 258; nothing added around a text."""
    alphabet = bytes_to_unicode()
    model = models.BPE(vocab={alphabet[b]: b for b in range(256)}, merges=[])
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<eos>", "<bos>", "<pad>"])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", bos_token="<bos>",
                                      pad_token="<pad>")
    for text in ["Q: 12+7= 19", "caf\u00e9 <eos>"]:
        expected = list(text.replace("<eos>", "").encode()) + ([EOS] if "<eos>" in text else [])
        assert wrapped(text)["input_ids"] == expected, (text, wrapped(text)["input_ids"])
    assert (wrapped.eos_token_id, wrapped.bos_token_id, wrapped.pad_token_id) == (EOS, BOS, PAD)
    return wrapped


def write_reference(directory):
    """The policy's weights plus seeded Gaussian noise (NOISE_SCALE × each tensor's std; norm
    weights, whose std is ~0, get NOISE_SCALE × 0.1 absolute) as a transformers checkpoint."""
    weights = safetensors.torch.load_file(os.path.join(POLICY, "model.safetensors"))
    generator = torch.Generator().manual_seed(NOISE_SEED)
    perturbed = {}
    for name in sorted(weights):
        tensor = weights[name]
        scale = NOISE_SCALE * max(tensor.float().std().item() if tensor.numel() > 1 else 0.0, 0.1)
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64) * scale
        perturbed[name] = (tensor.double() + noise).to(tensor.dtype).contiguous()
    os.makedirs(directory, exist_ok=True)
    shutil.copy(os.path.join(POLICY, "config.json"), os.path.join(directory, "config.json"))
    safetensors.torch.save_file(perturbed, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})


class Float64LogProbs:
    """TRL's fused LM head kernel (`ChunkedLogProbFunction`: per-token log-probabilities of
    hidden @ weightᵀ, with the entropy, log Σp², mean logit and top-1 flag) written with plain torch
    ops in the inputs' dtype. TRL's kernel accumulates in float32 whatever the model's dtype; this
    stands in for it in the float64 run only, so that run is float64 throughout."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
              logit_scale=1.0, outputs=("log_probs",)):
        assert final_logit_softcapping is None
        logits = (hidden @ weight.t() + (0 if bias is None else bias)) * logit_scale / temperature
        log_softmax = torch.log_softmax(logits, dim=-1)
        log_probs = log_softmax.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        detached = log_softmax.detach()
        return (log_probs,
                -(detached.exp() * detached).sum(-1) if "entropy" in outputs else None,
                torch.logsumexp(2 * detached, dim=-1) if "log_sum_sq_probs" in outputs else None,
                logits.detach().mean(-1) if "mean_logits" in outputs else None,
                logits.detach().argmax(-1) == targets if "is_top1" in outputs else None)


def check_float64_log_probs():
    """The stand-in agrees with TRL's kernel (float32) on random inputs."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 40, generator=generator, dtype=torch.float64)
    weight = torch.randn(263, 40, generator=generator, dtype=torch.float64) * 0.3
    targets = torch.randint(0, 263, (37,), generator=generator)
    names = ("log_probs", "entropy", "mean_logits")
    ours = Float64LogProbs.apply(hidden, weight, None, targets, 1.0, 64, None, 1.0, names)
    theirs = trl_utils._ChunkedLogProbFunction.apply(hidden.float(), weight.float(), None, targets, 1.0, 64, None, 1.0, names)
    for index in [0, 1, 3]:
        assert torch.allclose(ours[index], theirs[index].double(), rtol=1e-5, atol=1e-5), index


def one_step(setting, dtype, reference_directory, tokenizer, work):
    """TRL's DPOTrainer for one step; the logged loss, grad_norm and metrics."""
    trl_utils._ChunkedLogProbFunction = Float64LogProbs if dtype == torch.float64 else TRL_LOG_PROBS
    policy = Qwen2ForCausalLM.from_pretrained(POLICY, dtype=dtype, attn_implementation="eager")
    reference = Qwen2ForCausalLM.from_pretrained(reference_directory, dtype=dtype, attn_implementation="eager")
    arguments = DPOConfig(
        output_dir=os.path.join(work, setting["name"]), per_device_train_batch_size=len(PAIRS), max_steps=1,
        learning_rate=1e-6, lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, bf16=False, seed=0, loss_type=setting["lossTypes"], loss_weights=setting["lossWeights"],
        beta=setting["beta"], precompute_ref_log_probs=False, max_length=None, max_grad_norm=1.0,
        dataset_num_proc=None, disable_tqdm=True)
    trainer = DPOTrainer(model=policy, ref_model=reference, args=arguments, processing_class=tokenizer,
                         train_dataset=Dataset.from_list(PAIRS))
    # TRL's own token ids are MeshLM's: prompt bytes, completion bytes, EOS.
    for example, pair in zip(trainer.train_dataset, PAIRS):
        assert example["prompt_ids"] == list(pair["prompt"].encode()), example
        assert example["chosen_ids"] == list(pair["chosen"].encode()) + [EOS], example
        assert example["rejected_ids"] == list(pair["rejected"].encode()) + [EOS], example
    # Trainer accumulates the logged loss in a float32 tensor; the float64 run reads it where
    # DPOTrainer returns it.
    losses, compute_loss = [], trainer.compute_loss

    def capture(*positional, **keywords):
        loss = compute_loss(*positional, **keywords)
        losses.append((loss[0] if isinstance(loss, tuple) else loss).item())
        return loss

    trainer.compute_loss = capture
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "loss" in entry)
    assert len(losses) == 1 and abs(losses[0] - logged["loss"]) <= 1e-6 * abs(losses[0]), (losses, logged["loss"])
    return {"loss": losses[0], **{key: float(logged[key]) for key in ["grad_norm"] + METRICS}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default=OUTPUT)
    arguments = parser.parse_args()
    for pair in PAIRS:
        total = sum(len(pair["prompt"].encode()) + len(pair[side].encode()) + 1 for side in ["chosen", "rejected"])
        assert 33 <= total <= SEQUENCE_LENGTH // 2, (pair, total)
    transformers.set_seed(0)
    check_float64_log_probs()
    reference_directory = os.path.join(arguments.output, "reference")
    write_reference(reference_directory)
    with open(os.path.join(arguments.output, "pairs.jsonl"), "w") as file:
        for pair in PAIRS:
            file.write(json.dumps(pair) + "\n")
    tokenizer = byte_tokenizer()
    cases = []
    with tempfile.TemporaryDirectory() as work:
        for setting in SETTINGS:
            exact = one_step(setting, torch.float64, reference_directory, tokenizer, work)
            single = one_step(setting, torch.float32, reference_directory, tokenizer, work)
            worst = max(abs(single[key] - exact[key]) / max(abs(exact[key]), 1e-12) for key in exact)
            print(f"{setting['name']:>12}: loss {exact['loss']:.9g} grad_norm {exact['grad_norm']:.9g} "
                  f"rewards/margins {exact['rewards/margins']:.6g}; float32 vs float64: max relative {worst:.2e}")
            cases.append({**setting, "float64": exact, "float32": single})
    document = {
        "versions": {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
        "sequenceLength": SEQUENCE_LENGTH, "pairsPerRow": 2, "noise": {"seed": NOISE_SEED, "scale": NOISE_SCALE},
        "cases": cases,
    }
    with open(os.path.join(arguments.output, "dpo_step.json"), "w") as file:
        json.dump(document, file, indent=1)
        file.write("\n")


if __name__ == "__main__":
    main()
