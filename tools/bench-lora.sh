#!/usr/bin/env bash
# LoRA's speed against full fine-tuning and against PyTorch + peft (docs/benchmarks.md, "LoRA"):
# the ~124M config, one rank, the same batch (4 × 512 tokens) and threads for every run, each
# configuration run ROUNDS times in alternation (MeshLM full, MeshLM LoRA, MeshLM QLoRA, PyTorch
# full, PyTorch + peft LoRA), STEPS timed steps each; prints each one's median tokens/s with its range and the
# ratios of medians. LoRA: r 16, alpha 32, every linear projection, the base frozen.
#   PYTHON=/tmp/golden-venv/bin/python tools/bench-lora.sh      # a python with torch, transformers, peft, pyyaml
# Run it on a quiet machine: the ratios are only as good as the idle cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
model=${MODEL:-configs/model/124m.yaml}
steps=${STEPS:-3} rounds=${ROUNDS:-3} threads=${THREADS:-2} rank=${RANK:-16}
python=${PYTHON:-/tmp/golden-venv/bin/python}
swift build -c release --product meshlm >/dev/null
meshlm=$(swift build -c release --show-bin-path)/meshlm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
meshlm_rate() {  # extra bench train options → tokens/s
    OPENBLAS_NUM_THREADS=1 "$meshlm" bench train --json --model "$model" --seq-len 512 --micro-batch 4 --steps "$steps" \
        --threads "$threads" "$@" 2>/dev/null \
        | python3 -c "import json, sys; print(next(r for r in map(json.loads, filter(lambda l: l.startswith('{'), sys.stdin)) if r.get('part') == 'step')['tokens_per_s'])"
}
torch_rate() {  # extra bench-train-pytorch options → tokens/s
    "$python" tools/bench-train-pytorch.py --model "$model" --seq-len 512 --micro-batch 4 --steps "$steps" --threads "$threads" "$@" \
        2>/dev/null | tail -1 | python3 -c "import json, sys; print(json.load(sys.stdin)['tokens_per_s'])"
}
for round in $(seq "$rounds"); do
    meshlm_rate >> "$work/meshlm-full"
    meshlm_rate --lora "{r: $rank, lora_alpha: $((2 * rank)), target_modules: [all-linear]}" >> "$work/meshlm-lora"
    meshlm_rate --lora "{r: $rank, lora_alpha: $((2 * rank)), target_modules: [all-linear], quantize_base: nf4}" >> "$work/meshlm-qlora"
    torch_rate >> "$work/torch-full"
    torch_rate --lora-rank "$rank" >> "$work/torch-lora"
    echo "round $round done" >&2
done
python3 - "$work" "$threads" "$rank" "$model" <<'PYTHON'
import statistics, sys
work, threads, rank, model = sys.argv[1:5]
rates = {name: [float(line) for line in open(f"{work}/{name}")] for name in ["meshlm-full", "meshlm-lora", "meshlm-qlora", "torch-full", "torch-lora"]}
median = {name: statistics.median(values) for name, values in rates.items()}
print(f"| run ({model}, 1 rank × {threads} threads, 4 × 512 tokens, LoRA r {rank}) | tokens/s median (range) |")
print("|---|---|")
for name, values in rates.items():
    print(f"| {name} | {median[name]:.0f} ({min(values):.0f}–{max(values):.0f}) |")
print(f"MeshLM LoRA / MeshLM full: {median['meshlm-lora'] / median['meshlm-full']:.2f}x")
print(f"MeshLM QLoRA / MeshLM LoRA: {median['meshlm-qlora'] / median['meshlm-lora']:.2f}x")
print(f"MeshLM LoRA / PyTorch + peft LoRA: {median['meshlm-lora'] / median['torch-lora']:.2f}x")
print(f"MeshLM full / PyTorch full: {median['meshlm-full'] / median['torch-full']:.2f}x")
print(f"PyTorch + peft LoRA / PyTorch full: {median['torch-lora'] / median['torch-full']:.2f}x")
PYTHON
