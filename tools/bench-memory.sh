#!/usr/bin/env bash
# Memory per rank of data parallelism and ZeRO: parameters, gradients, optimizer state and peak
# RSS for ZeRO 0-3 at DP 1, 2, 4 (docs/benchmarks.md, "Memory"). Runs a few steps of
# configs/pretrain/10m.yaml (or the config given) on the shipped corpus and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
config=${1:-configs/pretrain/10m.yaml}
swift build -c release --product meshlm >/dev/null
meshlm=$(swift build -c release --show-bin-path)/meshlm
for split in train eval; do
    [ -f "data/shards/$split/manifest.json" ] || "$meshlm" data shard-text --input "data/corpus/$split.jsonl.zst" --output "data/shards/$split" >/dev/null
done
echo "| DP | ZeRO | parameters MB | gradients MB | optimizer state MB | block buffers peak MB | peak RSS MB (per rank) |"
echo "|---|---|---|---|---|---|---|"
for dp in 1 2 4; do
    for zero in 0 1 2 3; do
        line=$(mpirun -np "$dp" "$meshlm" pretrain --config "$config" --set train.steps=3 --set train.eval_interval=0 \
            --set parallel.zero_stage="$zero" --set run.dir="/tmp/meshlm-memory-$dp-$zero" 2>/dev/null | grep '^memory per rank')
        echo "$line" | sed -E "s/memory per rank: parameters ([0-9.]+) MB, gradients ([0-9.]+) MB, optimizer state ([0-9.]+) MB, block buffers \(peak\) ([0-9.]+) MB; peak RSS per rank (.*) MB/| $dp | $zero | \1 | \2 | \3 | \4 | \5 |/"
    done
done
