#!/usr/bin/env bash
# Cleaning throughput: `meshlm data clean` against datatrove 0.10's filters on the same corpus
# (docs/benchmarks.md, "Cleaning"). Builds the corpus (tools/clean_bench_corpus.py: the shipped
# corpus repeated COPIES times plus planted junk, not committed), then REPEATS times runs
#  - datatrove: GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter (settings matching
#    the recipe below) in one process over documents already in memory (only filters timed);
#  - meshlm with the same three operators (configs in the generated peer recipe), 1 rank,
#    reading and writing .jsonl.zst included;
#  - meshlm with the full shipped recipe (configs/data/clean.yaml) on 1 and 2 ranks.
# Prints MB/s per core (median) and the ratio to datatrove. The machine is shared and noisy.
#
# usage: tools/bench-clean.sh [COPIES (default 10)] [REPEATS (default 3)]
# datatrove comes from a venv (DATATROVE_VENV, default /tmp/venv-dedup; created with
# `pip install datatrove spacy` when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
copies=${1:-10}
repeats=${2:-3}
work=/tmp/meshlm-bench-clean-$copies
venv=${DATATROVE_VENV:-/tmp/venv-dedup}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import datatrove, spacy" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q datatrove spacy
fi
swift build -c release --product meshlm >/dev/null
meshlm=$(swift build -c release --show-bin-path)/meshlm
[ -d "$work/in" ] || python3 tools/clean_bench_corpus.py "$work" "$copies"
cat > "$work/peer-recipe.yaml" <<'YAML'
operators:
  - gopher_quality: {min_words: 20}
  - gopher_repetition: {}
  - c4: {require_terminal_punctuation: false, min_words_per_line: 0, drop_curly_brace: false, min_sentences: 2}
YAML
for repeat in $(seq 1 "$repeats"); do
    "$venv/bin/python" tools/clean_bench_datatrove.py "$work" > "$work/datatrove-$repeat.json" 2>"$work/datatrove.log"
    rm -rf "$work/out-peer" "$work/out-1" "$work/out-2"
    "$meshlm" data clean --input "$work/in" --output "$work/out-peer" --recipe "$work/peer-recipe.yaml" >/dev/null 2>&1
    cp "$work/out-peer/stats.json" "$work/meshlm-peer-$repeat.json"
    "$meshlm" data clean --input "$work/in" --output "$work/out-1" >/dev/null 2>&1
    cp "$work/out-1/stats.json" "$work/meshlm-1-$repeat.json"
    mpirun --allow-run-as-root --oversubscribe -np 2 -x OPENBLAS_NUM_THREADS=1 \
        "$meshlm" data clean --input "$work/in" --output "$work/out-2" >/dev/null 2>&1
    cp "$work/out-2/stats.json" "$work/meshlm-2-$repeat.json"
done
python3 - "$work" "$repeats" <<'PY'
import json, statistics, sys
work, repeats = sys.argv[1], int(sys.argv[2])
def load(name): return [json.load(open(f"{work}/{name}-{r}.json")) for r in range(1, repeats + 1)]
peer = load("datatrove")
same, full1, full2 = load("meshlm-peer"), load("meshlm-1"), load("meshlm-2")
peer_rate = statistics.median(p["mb_per_s"] for p in peer)
peer_cpu_rate = statistics.median(p["mb_per_cpu_s"] for p in peer)
def rate(runs): return statistics.median(r["timing"]["mb_per_s_per_rank"] for r in runs)
mb = peer[0]["text_bytes"] / 1e6
print(f"corpus: {peer[0]['documents']} documents, {mb:.1f} MB of text; median of {repeats} runs; noisy shared 2-core machine")
print(f"{'run':58} {'MB/s per core':>13} {'vs datatrove':>12}")
print(f"{'datatrove 0.10 Gopher quality + repetition + C4 (filters only)':58} {peer_rate:13.2f} {1.0:12.1f}")
print(f"{'  (its CPU-time rate)':58} {peer_cpu_rate:13.2f}")
print(f"{'meshlm same three operators, 1 rank (with file I/O)':58} {rate(same):13.2f} {rate(same) / peer_rate:12.1f}")
print(f"{'meshlm configs/data/clean.yaml (7 operators), 1 rank':58} {rate(full1):13.2f} {rate(full1) / peer_rate:12.1f}")
print(f"{'meshlm configs/data/clean.yaml (7 operators), 2 ranks':58} {rate(full2):13.2f} {rate(full2) / peer_rate:12.1f}")
print(f"kept: datatrove {peer[0]['kept']}, meshlm same operators {same[0]['counts']['kept']}")
print(json.dumps({"datatrove_mb_per_s": peer_rate, "meshlm_same_mb_per_s": rate(same), "meshlm_full_1_mb_per_s_per_rank": rate(full1),
                  "meshlm_full_2_mb_per_s_per_rank": rate(full2), "ratio_same": rate(same) / peer_rate}))
PY
