#!/usr/bin/env bash
# The first command of the README: installs what is missing, builds MeshLM (release), and runs
# its main job end to end under mpirun -np 2 on what ships in the repo. Today that job is the
# device-mesh check and the benchmarks; each capability that lands extends this script.
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
echo "== benchmarks (one rank; each figure next to this machine's ceiling measured in the same run)"
run "$meshlm" bench gemm --quick
run "$meshlm" bench kernels --quick
echo "== allreduce between 2 ranks"
run mpirun -np 2 "$meshlm" bench allreduce --quick
echo "quickstart: done"
