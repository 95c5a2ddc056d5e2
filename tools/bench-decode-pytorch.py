#!/usr/bin/env python3
"""PyTorch peer for `meshlm bench decode`: transformers LlamaForCausalLM `generate`, fp32, greedy,
batch 1, random weights, the model config YAML MeshLM uses (Hugging Face field names).

Decode tok/s excludes the prefill: (T - 1) / (time(generate T tokens) - time(generate 1 token)),
median over --repeats. Prints one JSON line. Run with /tmp/golden-venv/bin/python.
"""
import argparse
import json
import statistics
import time

import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="configs/model/124m.yaml")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    with open(arguments.model) as file:
        fields = yaml.safe_load(file)
    config = LlamaConfig(**fields)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    prompt = torch.randint(0, config.vocab_size, (1, arguments.prompt_tokens))

    def timed(count: int) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(prompt, max_new_tokens=count, min_new_tokens=count, do_sample=False,
                           attention_mask=torch.ones_like(prompt), pad_token_id=0)
        return time.perf_counter() - start

    timed(4)  # warm-up
    rates = []
    for _ in range(arguments.repeats):
        first = timed(1)
        full = timed(arguments.tokens)
        rates.append((arguments.tokens - 1) / (full - first))
    print(json.dumps({"bench": "decode-pytorch", "threads": arguments.threads, "tokens_per_s": statistics.median(rates),
                      "tokens_per_s_min": min(rates), "tokens_per_s_max": max(rates), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
