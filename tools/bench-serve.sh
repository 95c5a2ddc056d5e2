#!/usr/bin/env bash
# Decode and serving benchmark: `meshlm bench decode` (batch 1 vs the STREAM bound; 8 and 32
# concurrent requests vs batch 1, TTFT and inter-token latency) and the PyTorch `generate` peer
# on the same model config and thread count, then the ratio. Figures go to docs/benchmarks.md.
#
#   tools/bench-serve.sh [THREADS] [MODEL_YAML]
#
# Needs a release build (swift build -c release) and /tmp/golden-venv (torch + transformers).
# The machine is shared: run it when nothing else builds, and read the ranges.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh >/dev/null
threads=${1:-1}
model=${2:-configs/model/124m.yaml}
python=${PYTHON:-/tmp/golden-venv/bin/python}
export OPENBLAS_NUM_THREADS=1

meshlm_json=$(.build/release/meshlm bench decode --json --threads "$threads" --model "$model" --concurrency 8 32 2>/dev/null)
echo "$meshlm_json"
peer_json=$("$python" tools/bench-decode-pytorch.py --threads "$threads" --model "$model")
echo "$peer_json"
"$python" - "$meshlm_json" "$peer_json" <<'PY'
import json, sys
rows = [json.loads(line) for line in sys.argv[1].splitlines() if line.startswith("{")]
peer = json.loads(sys.argv[2])
single = next(row for row in rows if row["concurrency"] == 1)
print(f"batch 1: meshlm {single['tokens_per_s']:.1f} tok/s = {single['fraction_of_stream']:.0%} of the STREAM bound "
      f"({single['stream_bound_tokens_per_s']:.1f}); PyTorch generate {peer['tokens_per_s']:.1f} tok/s; "
      f"ratio {single['tokens_per_s'] / peer['tokens_per_s']:.2f}x")
for row in rows:
    if row["concurrency"] > 1:
        print(f"{row['concurrency']} concurrent: {row['tokens_per_s']:.1f} tok/s = {row['speedup_vs_batch1']:.2f}x batch 1; "
              f"TTFT p50/p99 {row['ttft_p50_ms']:.0f}/{row['ttft_p99_ms']:.0f} ms; ITL p50/p99 {row['itl_p50_ms']:.1f}/{row['itl_p99_ms']:.1f} ms")
PY
