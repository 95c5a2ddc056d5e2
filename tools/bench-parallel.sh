#!/usr/bin/env bash
# Data, tensor and pipeline parallelism side by side on 2 ranks (docs/benchmarks.md, "Model
# parallelism"): the ~124M config, the same global batch of 8 × 512 tokens per step, each layout's
# throughput and what its communication (or pipeline bubble) costs, then the pipeline bubble
# measured against the theoretical (p − 1) / (v·m + p − 1) for 1F1B and interleaved 1F1B.
# Run it on a quiet machine: every figure is a median over steps, and the other core must be idle.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
model=${MODEL:-configs/model/124m.yaml}
steps=${STEPS:-3}
swift build -c release --product meshlm >/dev/null
meshlm=$(swift build -c release --show-bin-path)/meshlm
run() {  # label, then bench train options
    local label=$1; shift
    mpirun --allow-run-as-root -np 2 -x OPENBLAS_NUM_THREADS=1 "$meshlm" bench train --json --model "$model" --seq-len 512 \
        --steps "$steps" "$@" 2>/dev/null | python3 -c "
import json, sys
rows = [json.loads(line) for line in sys.stdin if line.startswith('{')]
step = next(r for r in rows if r.get('part') == 'step')
share = lambda part: next((r['fraction_of_step'] for r in rows if r.get('part') == part), 0.0)
pipeline = next((r for r in rows if r.get('part') == 'pipeline_wait'), None)
communication = share('reduction_wait') + share('tensor_parallel_allreduce')
bubble = f\"{100 * pipeline['bubble_measured']:.1f}% (theory {100 * pipeline['bubble_theoretical']:.1f}%)\" if pipeline else '—'
print(f\"| $label | {step['tokens_per_s']:.1f} | {step['ms']:.0f} ({step['step_ms_min']:.0f}–{step['step_ms_max']:.0f}) | {100 * communication:.1f}% | {bubble} | {100 * step['mfu']:.1f}% |\")
"
}
echo "| layout (2 ranks, global batch 8 × 512) | tokens/s | step ms median (range) | communication wait share | pipeline bubble measured | MFU |"
echo "|---|---|---|---|---|---|"
run "dp 2 (micro-batch 2 × 2 per rank)" --micro-batch 2 --micro-batches 2
run "tp 2 (micro-batch 2 × 4)" --micro-batch 2 --micro-batches 4 --tp 2
run "pp 2, 1F1B (micro-batch 2 × 4)" --micro-batch 2 --micro-batches 4 --pp 2
run "pp 2, interleaved v 2 (micro-batch 2 × 4)" --micro-batch 2 --micro-batches 4 --pp 2 --virtual-stages 2
run "pp 2, 1F1B (micro-batch 1 × 8)" --micro-batch 1 --micro-batches 8 --pp 2
run "pp 2, interleaved v 2 (micro-batch 1 × 8)" --micro-batch 1 --micro-batches 8 --pp 2 --virtual-stages 2
