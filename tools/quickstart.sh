#!/usr/bin/env bash
# The first command of the README: installs what is missing, builds MeshLM (release), and runs
# its main job end to end under mpirun -np 2 on the corpus that ships in data/corpus:
# device-mesh check → token shards → pretraining of the tiny model (loss falling) → the curve
# drawn to runs/tiny/plot.svg → the benchmarks. Each capability that lands extends this script.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
source tools/env.sh
echo "== build (release)"
swift build -c release --product meshlm 2>&1 | grep -E 'error|warning: unre|Compiling meshlm|Build' || true
swift build -c release --product meshlm >/dev/null
meshlm=$(swift build -c release --show-bin-path)/meshlm
run() { echo "\$ $*"; "$@"; }

echo "== device mesh: 2 ranks, tp 2, checked against the tiny model"
run mpirun -np 2 "$meshlm" mesh --tp 2 --model configs/model/tiny.yaml

echo "== token shards from the shipped corpus (byte tokenizer until the BPE tokenizer lands)"
for split in train eval; do
    if [ ! -f "data/shards/$split/manifest.json" ]; then
        run "$meshlm" data shard-text --input "data/corpus/$split.jsonl.zst" --output "data/shards/$split"
    fi
done

echo "== pretraining the tiny model on 2 ranks (data parallel)"
run mpirun -np 2 "$meshlm" pretrain --config configs/pretrain/tiny.yaml
run "$meshlm" plot runs/tiny

echo "== benchmarks (one rank; each figure next to this machine's ceiling measured in the same run)"
run "$meshlm" bench gemm --quick
run "$meshlm" bench kernels --quick
echo "== allreduce between 2 ranks"
run mpirun -np 2 "$meshlm" bench allreduce --quick
echo "quickstart: done — the loss curve is in runs/tiny/plot.svg, the metrics in runs/tiny/metrics.jsonl"
