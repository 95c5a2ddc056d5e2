#!/usr/bin/env python3
"""Hugging Face round trip of MeshLM checkpoints (docs/checkpoints.md, "Hugging Face").

(a) transformers saves a tiny random Llama (sharded safetensors, small max_shard_size; f32 and
    bf16, untied and tied) -> `meshlm ckpt import-hf` -> `meshlm ckpt export-hf` -> every tensor
    identical bit for bit.
(b) a tiny MeshLM training run (configs/pretrain/tiny.yaml) -> `export-hf` ->
    `LlamaForCausalLM.from_pretrained` gives the logits of `meshlm eval --logits` (<= 1e-4
    relative to the largest logit), and the exported byte tokenizer encodes text to MeshLM's ids.

Prints PASS/FAIL per check with the max differences; exit status 1 on any FAIL.
Needs torch + transformers + tokenizers (tools/golden/README.md: /tmp/golden-venv) and a built
meshlm (default .build/debug/meshlm; --meshlm PATH).

    /tmp/golden-venv/bin/python tools/check-hf-roundtrip.py [--meshlm .build/release/meshlm]
"""
import argparse, json, os, subprocess, sys, tempfile

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
failures = []


def report(name, ok, detail):
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def run(meshlm, *args):
    result = subprocess.run([meshlm, *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"meshlm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def tensors_of(directory):
    out = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".safetensors"):
            out.update(load_file(os.path.join(directory, name)))
    return out


def hf_round_trip(meshlm, work, dtype, tied):
    torch.manual_seed(7)
    config = LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=tied,
                         bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config).to(dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    tag = f"{str(dtype).split('.')[-1]}-{'tied' if tied else 'untied'}"
    source = os.path.join(work, f"hf-{tag}")
    model.save_pretrained(source, max_shard_size="20KB", safe_serialization=True)
    imported = os.path.join(work, f"imported-{tag}")
    run(meshlm, "ckpt", "import-hf", source, "--output", imported)
    exported = os.path.join(work, f"exported-{tag}")
    run(meshlm, "ckpt", "export-hf", imported, "--output", exported, "--max-shard-size", "20kB",
        "--dtype", "bf16" if dtype == torch.bfloat16 else "f32")
    before, after = tensors_of(source), tensors_of(exported)
    if tied:
        before.pop("lm_head.weight", None)
    mismatched = [name for name in before if name not in after or before[name].dtype != after[name].dtype
                  or not torch.equal(before[name].view(torch.uint8) if before[name].dtype != torch.bfloat16 else before[name].view(torch.int16),
                                     after[name].view(torch.uint8) if after[name].dtype != torch.bfloat16 else after[name].view(torch.int16))]
    extra = sorted(set(after) - set(before))
    sharded = sum(name.endswith(".safetensors") for name in os.listdir(source))
    report(f"import-export bitwise ({tag}, {sharded} source shards)", not mismatched and not extra,
           f"{len(before)} tensors, {len(mismatched)} differ {mismatched[:3]}, {len(extra)} extra {extra[:3]}")
    reloaded = LlamaForCausalLM.from_pretrained(exported, dtype=dtype)
    # The reference is the source directory loaded the same way (a model cast with .to(bf16) keeps
    # its RoPE buffer in bf16, one loaded with dtype=bf16 does not).
    reference = LlamaForCausalLM.from_pretrained(source, dtype=dtype)
    ids = torch.tensor([[3, 5, 8, 13, 21, 34, 55]])
    with torch.no_grad():
        difference = (reloaded(ids).logits.float() - reference(ids).logits.float()).abs().max().item()
    report(f"export loads in transformers ({tag})", difference == 0, f"max |logit difference| {difference}")


def meshlm_to_hf(meshlm, work):
    shards = os.path.join(work, "shards")
    run(meshlm, "data", "shard-text", "--input", os.path.join(ROOT, "data/corpus/eval.jsonl.zst"), "--output", shards)
    run_dir = os.path.join(work, "run")
    sets = ["data.train=" + shards, "data.eval=" + shards, "run.dir=" + run_dir, "train.steps=8", "train.seq_len=64", "train.global_batch_size=4",
            "train.micro_batch_size=2", "train.eval_interval=0", "checkpoint.interval=4", "train.log_interval=4", "model.vocab_size=263"]
    run(meshlm, "pretrain", "--config", os.path.join(ROOT, "configs/pretrain/tiny.yaml"), *sum([["--set", s] for s in sets], []))
    checkpoints = os.path.join(run_dir, "checkpoints")
    exported = os.path.join(work, "meshlm-export")
    run(meshlm, "ckpt", "export-hf", checkpoints, "--output", exported)
    text = "MeshLM and Hugging Face agree, byte for byte: ünïcödé ✓ 123."
    ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
    tokens = os.path.join(work, "tokens.bin")
    ids.tofile(tokens)
    logits_path = os.path.join(work, "logits.f32")
    line = json.loads(run(meshlm, "eval", "--checkpoint", checkpoints, "--tokens", tokens, "--logits", logits_path).strip().splitlines()[-1])
    model = LlamaForCausalLM.from_pretrained(exported, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        output = model(torch.tensor(ids.astype(np.int64))[None], labels=torch.tensor(ids.astype(np.int64))[None])
    theirs = output.logits[0].numpy()
    ours = np.fromfile(logits_path, dtype="<f4").reshape(theirs.shape)
    relative = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    report("MeshLM-trained checkpoint: transformers logits", relative <= 1e-4,
           f"max |difference| / max |logit| = {relative:.3e} over {theirs.shape}")
    loss_difference = abs(line["loss"] - output.loss.item()) / output.loss.item()
    report("MeshLM-trained checkpoint: loss", loss_difference <= 1e-4,
           f"meshlm eval {line['loss']:.6f}, transformers {output.loss.item():.6f}, relative {loss_difference:.2e}")
    tokenizer = AutoTokenizer.from_pretrained(exported)
    encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
    report("byte tokenizer ids", encoded == [int(i) for i in ids],
           f"{len(encoded)} ids; eos {tokenizer.eos_token_id} bos {tokenizer.bos_token_id} pad {tokenizer.pad_token_id}; decode round trip {tokenizer.decode(encoded) == text}")
    report("byte tokenizer specials", (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id) == (256, 257, 258),
           f"{(tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshlm", default=os.path.join(ROOT, ".build/debug/meshlm"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="meshlm-hf-")
    for dtype in (torch.float32, torch.bfloat16):
        for tied in (False, True):
            hf_round_trip(args.meshlm, work, dtype, tied)
    meshlm_to_hf(args.meshlm, work)
    if not args.keep:
        subprocess.run(["rm", "-rf", work])
    print("FAIL" if failures else "PASS", f"({len(failures)} failed)" if failures else "(all checks)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
