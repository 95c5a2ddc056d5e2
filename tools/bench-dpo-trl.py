#!/usr/bin/env python3
"""The TRL side of tools/bench-dpo.sh (see there), in two commands:

    bench-dpo-trl.py make DIR   a ~11M-parameter Llama (transformers, torch seed 0, vocab 263 for the
                                byte tokenizer) saved to DIR/hf, and the pairs: DIR/dpo.jsonl
                                ({prompt, chosen, rejected}, plain ASCII of fixed lengths, so every
                                sequence is PROMPT + COMPLETION bytes + EOS tokens and nothing is
                                padded), DIR/sft-both.jsonl (every chosen and rejected sequence as an
                                SFT sample {prompt, completion}) and DIR/sft-chosen.jsonl (the chosen
                                ones only)
    bench-dpo-trl.py train DIR  TRL's DPOTrainer on them, full fine-tuning, float32 (bf16 off),
                                precompute_ref_log_probs=True, PAIRS pairs per step, THREADS torch
                                threads; prints {"tokens_per_s", "step_seconds", ...} as one JSON line:
                                tokens per step over the median step time after WARMUP steps

The byte tokenizer is the one tools/golden/make_dpo_step_fixture.py builds (byte b is id b, EOS
256), so TRL trains on the same ids as `meshlm dpo --tokenizer bytes`.
"""
import argparse
import json
import os
import random
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden"))

MODEL = dict(vocab_size=263, hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
             num_key_value_heads=6, max_position_embeddings=1024, rope_theta=10000.0, rms_norm_eps=1e-5,
             tie_word_embeddings=False, bos_token_id=257, eos_token_id=256, pad_token_id=258)


def shape(arguments):
    """MODEL with the sizes given on the command line (--hidden, --intermediate, --layers, --heads, --kv-heads, --vocab:
    a vocabulary wider than the byte tokenizer's 263 ids gives the head a real model's width; the text still uses ids < 263)."""
    return dict(MODEL, hidden_size=arguments.hidden, intermediate_size=arguments.intermediate, num_hidden_layers=arguments.layers,
                num_attention_heads=arguments.heads, num_key_value_heads=arguments.kv_heads, vocab_size=arguments.vocab)


def text(rng, length):
    """`length` random printable ASCII bytes."""
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ,.0123456789") for _ in range(length))


def make(arguments):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**shape(arguments)))
    model.save_pretrained(os.path.join(arguments.dir, "hf"))
    rng = random.Random(0)
    with open(os.path.join(arguments.dir, "dpo.jsonl"), "w") as dpo, \
            open(os.path.join(arguments.dir, "sft-both.jsonl"), "w") as both, \
            open(os.path.join(arguments.dir, "sft-chosen.jsonl"), "w") as chosen_only:
        for _ in range(arguments.count):
            prompt = text(rng, arguments.prompt_length)
            chosen, rejected = text(rng, arguments.completion_length), text(rng, arguments.completion_length)
            dpo.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n")
            both.write(json.dumps({"prompt": prompt, "completion": chosen}) + "\n")
            both.write(json.dumps({"prompt": prompt, "completion": rejected}) + "\n")
            chosen_only.write(json.dumps({"prompt": prompt, "completion": chosen}) + "\n")
    parameters = sum(p.numel() for p in model.parameters())
    print(json.dumps({"parameters": parameters, "config": shape(arguments)}))


def train(arguments):
    import transformers
    from datasets import load_dataset
    from transformers import LlamaForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer
    from make_dpo_step_fixture import byte_tokenizer

    torch.set_num_threads(arguments.threads)
    transformers.logging.set_verbosity_error()
    work = os.path.join(arguments.dir, "trl")
    dataset = load_dataset("json", data_files=os.path.join(arguments.dir, "dpo.jsonl"), split="train",
                           cache_dir=os.path.join(work, "cache"))
    model = LlamaForCausalLM.from_pretrained(os.path.join(arguments.dir, "hf"), dtype=torch.float32,
                                             attn_implementation="sdpa")
    steps = arguments.warmup + arguments.steps
    config = DPOConfig(output_dir=work, per_device_train_batch_size=arguments.pairs, max_steps=steps,
                       learning_rate=1e-6, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                       report_to=[], use_cpu=True, bf16=False, gradient_checkpointing=False, seed=0,
                       precompute_ref_log_probs=True, max_length=None, disable_tqdm=True, max_grad_norm=1.0,
                       dataloader_num_workers=0)

    class Clock(TrainerCallback):
        def __init__(self):
            self.seconds = []
            self.start = None

        def on_step_begin(self, args, state, control, **keywords):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **keywords):
            self.seconds.append(time.perf_counter() - self.start)

    clock = Clock()
    trainer = DPOTrainer(model=model, args=config, processing_class=byte_tokenizer(), train_dataset=dataset,
                         callbacks=[clock])
    first = trainer.train_dataset[0]
    tokens_per_pair = 2 * len(first["prompt_ids"]) + len(first["chosen_ids"]) + len(first["rejected_ids"])
    trainer.train()
    timed = clock.seconds[arguments.warmup:]
    step = statistics.median(timed)
    tokens = tokens_per_pair * arguments.pairs
    print(json.dumps({"tokens_per_s": tokens / step, "step_seconds": step, "tokens_per_step": tokens,
                      "timed_steps": len(timed), "step_seconds_all": [round(s, 3) for s in clock.seconds], "threads": torch.get_num_threads()}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["make", "train"])
    parser.add_argument("dir")
    parser.add_argument("--count", type=int, default=64, help="pairs written (make)")
    parser.add_argument("--prompt-length", type=int, default=63)
    parser.add_argument("--completion-length", type=int, default=192)
    parser.add_argument("--pairs", type=int, default=4, help="pairs per step (train)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="timed steps after the warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=MODEL["hidden_size"])
    parser.add_argument("--intermediate", type=int, default=MODEL["intermediate_size"])
    parser.add_argument("--layers", type=int, default=MODEL["num_hidden_layers"])
    parser.add_argument("--heads", type=int, default=MODEL["num_attention_heads"])
    parser.add_argument("--kv-heads", type=int, default=MODEL["num_key_value_heads"])
    parser.add_argument("--vocab", type=int, default=MODEL["vocab_size"])
    arguments = parser.parse_args()
    make(arguments) if arguments.command == "make" else train(arguments)


if __name__ == "__main__":
    main()
