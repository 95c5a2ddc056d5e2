#!/usr/bin/env bash
# The quickstart's data stages on the shipped corpus, on 2 ranks: clean → dedup → BPE tokenizer
# (2048 ids) → token shards. Leaves data/work/tokenizer.json and data/shards/{train,eval}; does
# nothing when they exist already. Used by tools/quickstart.sh and tools/bench-speculative.sh.
#
#   bash tools/prepare-data.sh MESHLM_BINARY
set -euo pipefail
meshlm=${1:?usage: tools/prepare-data.sh MESHLM_BINARY}
cd "$(dirname "$0")/.."
run() { echo "\$ $*"; "$@"; }

work=data/work
if [ -f data/shards/train/manifest.json ] && [ -f data/shards/train/tokenizer.json ] && [ -f "$work/tokenizer.json" ]; then
    exit 0
fi
rm -rf "$work" data/shards
run mpirun -np 2 "$meshlm" data clean --input data/corpus/train.jsonl.zst data/html --output "$work/clean"
run mpirun -np 2 "$meshlm" data dedup --input "$work/clean/kept" --output "$work/dedup"
run mpirun -np 2 "$meshlm" tokenizer train --input "$work/dedup/kept" --vocab-size 2048 --output "$work/tokenizer.json"
run mpirun -np 2 "$meshlm" data tokenize --input "$work/dedup/kept" --tokenizer "$work/tokenizer.json" --output data/shards/train
run "$meshlm" data tokenize --input data/corpus/eval.jsonl.zst --tokenizer "$work/tokenizer.json" --output data/shards/eval
