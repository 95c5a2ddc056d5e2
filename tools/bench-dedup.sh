#!/usr/bin/env bash
# MinHash dedup: MeshLM against datatrove 0.10 on the same corpus with planted near-duplicates
# (docs/benchmarks.md, "Dedup"). Builds the corpus (tools/dedup_bench_corpus.py, not committed),
# runs datatrove's four MinHash stages on one worker and `meshlm data dedup` on 1 and 2 ranks,
# all with 5-grams and 14 bands × 8 rows, REPEATS times each, and prints docs/s per core (wall
# clock and CPU time), the ratio to datatrove, precision/recall against the planted truth, and
# peak RSS. The machine is shared and noisy: the CPU-time ratio is the steadier figure.
#
# usage: tools/bench-dedup.sh [DOCUMENTS (default 8000)] [REPEATS (default 3)]
# datatrove comes from a venv (DATATROVE_VENV, default /tmp/venv-dedup; created when missing
# with datatrove 0.10.1 and what its MinHash stages import: spacy, regex, tokenizers, orjson,
# and xxhash < 4 (xxhash 4 no longer hashes str, which datatrove 0.10.1 passes it)).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
documents=${1:-8000}
repeats=${2:-3}
work=/tmp/meshlm-bench-dedup-$documents
venv=${DATATROVE_VENV:-/tmp/venv-dedup}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import datatrove, spacy, regex, tokenizers, orjson, xxhash; assert int(xxhash.VERSION.split('.')[0]) < 4" 2>/dev/null; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q "datatrove==0.10.1" spacy regex tokenizers orjson "xxhash<4"
fi
swift build -c release --product meshlm >/dev/null
meshlm=$(swift build -c release --show-bin-path)/meshlm
[ -f "$work/truth.json" ] || python3 tools/dedup_bench_corpus.py "$work" "$documents"
for repeat in $(seq 0 $((repeats - 1))); do
    /usr/bin/time -f "%e %U %S %M" -o "$work/time-datatrove-$repeat" \
        "$venv/bin/python" tools/dedup_bench_datatrove.py "$work" > "$work/datatrove-$repeat.json" 2>"$work/datatrove.log"
    rm -rf "$work/out-meshlm-1-$repeat" "$work/out-meshlm-2-$repeat"
    /usr/bin/time -f "%e %U %S %M" -o "$work/time-meshlm-1-$repeat" \
        "$meshlm" data dedup --input "$work/in" --output "$work/out-meshlm-1-$repeat" --ngram 5 --bands 14 --rows 8 >/dev/null 2>&1
    # Under mpirun, time counts the CPU of every rank (and of mpirun itself).
    /usr/bin/time -f "%e %U %S %M" -o "$work/time-meshlm-2-$repeat" \
        mpirun -np 2 "$meshlm" data dedup --input "$work/in" --output "$work/out-meshlm-2-$repeat" --ngram 5 --bands 14 --rows 8 >/dev/null 2>&1
done
python3 tools/dedup_bench_report.py "$work" "$repeats"
