#!/usr/bin/env bash
# Speculative decoding on trained models: trains (when absent) a target and a small draft on the
# shipped corpus with the quickstart's tokenizer and shards, then `meshlm bench decode` measures
# greedy decode with and without the draft on prompts from the held-out corpus, for lookahead
# 2, 4 and 6: acceptance rate, tokens per target forward, tok/s and the speed-up. Every
# speculative output is checked against the plain greedy output before it is timed.
#   tools/bench-speculative.sh                 # ~10 min on 2 quiet cores the first time (training)
#   FORCE_TRAIN=1 tools/bench-speculative.sh   # retrain both models
#   STEPS=900 TOKENS=128 REPEATS=3 THREADS=1 PROMPTS=6 tools/bench-speculative.sh  (the defaults)
# Models: target = configs/model/10m.yaml with the tokenizer's 2048-id vocabulary (8 layers,
# hidden 256, ~6.3M parameters); draft = configs/model/tiny.yaml cut to 2 layers (~0.8M).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
steps=${STEPS:-900}
tokens=${TOKENS:-128}
repeats=${REPEATS:-3}
threads=${THREADS:-1}
prompt_count=${PROMPTS:-6}

swift build -c release --product meshlm >/dev/null
meshlm=$(swift build -c release --show-bin-path)/meshlm
run() { echo "\$ $*" >&2; "$@"; }

work=data/work
echo "== data: the quickstart's clean → dedup → BPE tokenizer → token shards (if missing)"
bash tools/prepare-data.sh "$meshlm" >&2

# Both models see the same data, seed, schedule and steps; they differ only in size.
common=(--tokenizer-json "$work/tokenizer.json" --set train.steps="$steps" --set train.seq_len=128
        --set train.global_batch_size=16 --set train.micro_batch_size=4 --set train.eval_interval="$steps"
        --set train.log_interval=50 --set optimizer.warmup_steps=20 --set optimizer.lr=2.0e-3
        --set optimizer.min_lr=2.0e-4 --set checkpoint.interval="$steps" --set parallel.zero_stage=0)
train() { # name, config, extra --set arguments…
    local name=$1 config=$2
    shift 2
    if [ -n "${FORCE_TRAIN:-}" ] || ! ls "runs/spec-$name/checkpoints"/step_* >/dev/null 2>&1; then
        echo "== training the $name ($steps steps, 2 ranks data parallel)"
        rm -rf "runs/spec-$name"
        local start=$SECONDS
        run mpirun -np 2 "$meshlm" pretrain --config "$config" --set run.dir="runs/spec-$name" "${common[@]}" "$@"
        echo "trained the $name in $((SECONDS - start)) s"
    fi
}
train target configs/pretrain/10m.yaml --set model.vocab_size=2048
train draft configs/pretrain/tiny.yaml --set model.num_hidden_layers=2

# Prompts: the first words of held-out documents (the eval corpus is not in the training shards).
prompts=runs/spec-prompts.txt
zstd -dc data/corpus/eval.jsonl.zst | python3 -c '
import json, sys
count = int(sys.argv[1])
seen = 0
for line in sys.stdin:
    text = " ".join(json.loads(line)["text"].split())
    words = text.split(" ")
    if len(words) < 40: continue
    # Read to the end: stopping early would kill zstd with SIGPIPE (and pipefail the script).
    if seen < count:
        print(" ".join(words[12:24]))
        seen += 1
' "$prompt_count" > "$prompts"
echo "== prompts ($prompts)"
cat "$prompts"

echo "== generate: the same text with and without the draft"
first=$(head -n 1 "$prompts")
run "$meshlm" generate --checkpoint runs/spec-target --prompt "$first" --max-tokens 48 --ignore-eos --threads "$threads" > runs/spec-plain.txt
run "$meshlm" generate --checkpoint runs/spec-target --draft-checkpoint runs/spec-draft --lookahead 4 --prompt "$first" \
    --max-tokens 48 --ignore-eos --threads "$threads" > runs/spec-draft.txt
cat runs/spec-plain.txt
if cmp -s runs/spec-plain.txt runs/spec-draft.txt; then
    echo "identical output"
else
    echo "bench-speculative: generate printed different text with the draft (runs/spec-plain.txt, runs/spec-draft.txt)" >&2
    exit 1
fi

echo "== bench decode: plain vs speculative ($tokens tokens per prompt, $repeats repeats, $threads thread(s))"
run "$meshlm" bench decode --checkpoint runs/spec-target --draft-checkpoint runs/spec-draft --lookahead 2 4 6 \
    --prompt-file "$prompts" --tokens "$tokens" --concurrency 1 --repeats "$repeats" --threads "$threads"
