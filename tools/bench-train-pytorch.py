#!/usr/bin/env python3
"""The PyTorch peer of `meshlm bench train`: the same Llama model (transformers
LlamaForCausalLM built from a MeshLM model config), the same batch shape, fp32, one step =
forward + backward + AdamW, on the same number of threads. Prints tokens/s and, given MeshLM's
`--json` output, the ratio MeshLM / PyTorch measured in the same session.

    pip install torch transformers pyyaml   # the CPU wheel is enough
    python3 tools/bench-train-pytorch.py --model configs/model/124m.yaml --threads 1 \
        [--meshlm-json out.jsonl]           # out.jsonl from: meshlm bench train --json --threads 1

Nothing here runs in CI (torch is ~1 GB); docs/benchmarks.md records the figures.
"""
import argparse
import json
import statistics
import time

import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="configs/model/124m.yaml")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lora-rank", type=int, help="train peft LoRA adapters of this rank (alpha 2r, every "
                        "linear projection, the base frozen) instead of every parameter; needs `pip install peft`")
    parser.add_argument("--meshlm-json", help="MeshLM's `bench train --json` output, for the ratio")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.model) as f:
        fields = yaml.safe_load(f)
    config = LlamaConfig(**fields, attention_bias=False, mlp_bias=False, use_cache=False)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).float()
    parameters = sum(p.numel() for p in model.parameters())
    if args.lora_rank:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=args.lora_rank, lora_alpha=2 * args.lora_rank, lora_dropout=0.0,
                                                 target_modules="all-linear", bias="none", task_type="CAUSAL_LM"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = args.micro_batch * args.seq_len
    flops_per_token = 6 * parameters + 12 * config.num_hidden_layers * config.hidden_size * args.seq_len

    def step():
        ids = torch.randint(0, config.vocab_size, (args.micro_batch, args.seq_len + 1))
        start = time.perf_counter()
        loss = model(input_ids=ids[:, :-1], labels=ids[:, :-1]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step()  # warm-up
    times = sorted(step() for _ in range(args.steps))
    median = statistics.median(times)
    rate = tokens / median
    lora = f", peft LoRA r {args.lora_rank}" if args.lora_rank else ""
    print(f"pytorch {torch.__version__}: {parameters / 1e6:.2f}M parameters{lora}, {args.threads} thread(s), "
          f"batch {args.micro_batch} x {args.seq_len}: {rate:.1f} tokens/s "
          f"(step {median * 1e3:.0f} ms median, range {times[0] * 1e3:.0f}-{times[-1] * 1e3:.0f} ms over {args.steps} steps), "
          f"{rate * flops_per_token / 1e9:.1f} GFLOP/s by 6N+12LHT")
    result = {"bench": "train_pytorch", "lora_rank": args.lora_rank, "tokens_per_s": rate, "step_ms": median * 1e3, "threads": args.threads,
              "parameters": parameters}
    if args.meshlm_json:
        with open(args.meshlm_json) as f:
            rows = [json.loads(line) for line in f if line.startswith("{")]
        meshlm = next(row for row in rows if row.get("part") == "step")
        result["meshlm_tokens_per_s"] = meshlm["tokens_per_s"]
        result["ratio"] = meshlm["tokens_per_s"] / rate
        print(f"meshlm: {meshlm['tokens_per_s']:.1f} tokens/s, MFU {100 * meshlm['mfu']:.1f}% -> {result['ratio']:.2f}x PyTorch")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
