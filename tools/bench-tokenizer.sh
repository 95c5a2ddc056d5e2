#!/usr/bin/env bash
# Tokenizer speed against its peers on one thread, same input, same run (docs/benchmarks.md):
#   training   meshlm tokenizer train  vs  Hugging Face tokenizers BpeTrainer (RAYON_NUM_THREADS=1)
#   encode     meshlm bench tokenizer  vs  HF tokenizers (same 8k tokenizer.json), and vs tiktoken
#              cl100k_base with that very vocabulary (tools/tiktoken-to-tokenizer-json.py)
# Needs a release build (swift build -c release), tools/setup-python.sh --bench, and the corpus
# of tools/make-bench-corpus.sh (built when missing; never committed).
#
# Usage: tools/bench-tokenizer.sh [CORPUS.jsonl] [VOCAB_SIZE] [REPEATS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
corpus=${1:-/tmp/meshlm-bench-corpus.jsonl}
vocab=${2:-8192}
repeats=${3:-3}
meshlm=${MESHLM:-$repo/.build/release/meshlm}
venv=${MESHLM_TOKENIZER_VENV:-/tmp/venv-tokenizer}
python=$venv/bin/python
[ -x "$meshlm" ] || { echo "bench-tokenizer: $meshlm missing (swift build -c release)" >&2; exit 1; }
[ -x "$python" ] || { echo "bench-tokenizer: $python missing (tools/setup-python.sh --bench)" >&2; exit 1; }
[ -f "$corpus" ] || "$repo/tools/make-bench-corpus.sh" "$corpus"
export RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 TIKTOKEN_CACHE_DIR=$venv/tiktoken-cache
unset OPENBLAS_CORETYPE
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "corpus $corpus ($(du -m "$corpus" | cut -f1) MB JSONL), vocab $vocab, one thread, median of $repeats; the machine is shared, figures are noisy"
for _ in $(seq "$repeats"); do
    start=$(date +%s.%N)
    "$meshlm" tokenizer train --threads 1 --input "$corpus" --vocab-size "$vocab" --output "$work/meshlm.json" --overwrite >/dev/null 2>"$work/train.log"
    echo "$(date +%s.%N) - $start" | bc
done | median >"$work/meshlm-train"
hf_train=$("$python" "$repo/tools/bench-tokenizer-peers.py" train --input "$corpus" --vocab-size "$vocab" --repeats "$repeats")
ours=$(cat "$work/meshlm-train")
theirs=$(echo "$hf_train" | awk '{print $2}')
printf 'train   meshlm %.2f s (whole command: read, count, merge, write)   HF tokenizers %.2f s (in-memory texts)   speed-up %.2fx\n' \
    "$ours" "$theirs" "$(echo "$theirs / $ours" | bc -l)"

encode=$("$meshlm" bench tokenizer --threads 1 --tokenizer "$work/meshlm.json" --input "$corpus" --repeats "$repeats")
peers=$("$python" "$repo/tools/bench-tokenizer-peers.py" encode --input "$corpus" --tokenizer "$work/meshlm.json" --repeats "$repeats")
ours=$(echo "$encode" | awk '/^encode/ {print $2}')
split=$(echo "$encode" | awk '/^pre-tokenize/ {print $2}')
hf=$(echo "$peers" | awk '/^hf-encode/ {print $2}')
tiktoken=$(echo "$peers" | awk '/^tiktoken-encode/ {print $2}')
printf 'encode  meshlm %.2f MB/s (pre-tokenizer alone %.2f MB/s)   HF tokenizers %.2f MB/s (same tokenizer.json)   ratio %.2fx\n' "$ours" "$split" "$hf" "$(echo "$ours / $hf" | bc -l)"
if [[ "$tiktoken" =~ ^[0-9.]+$ ]]; then
    # The same 100k vocabulary on both sides: cl100k_base converted to a tokenizer.json.
    "$python" "$repo/tools/tiktoken-to-tokenizer-json.py" "$work/cl100k.json" >/dev/null
    cl100k=$("$meshlm" bench tokenizer --threads 1 --tokenizer "$work/cl100k.json" --input "$corpus" --repeats "$repeats" | awk '/^encode/ {print $2}')
    printf 'encode  tiktoken cl100k_base %.2f MB/s   meshlm with cl100k_base as tokenizer.json %.2f MB/s   meshlm/tiktoken %.2fx (same vocabulary)\n' \
        "$tiktoken" "$cl100k" "$(echo "$cl100k / $tiktoken" | bc -l)"
else
    echo "encode  tiktoken: $(echo "$peers" | grep tiktoken)"
fi
