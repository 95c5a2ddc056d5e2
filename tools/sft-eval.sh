#!/usr/bin/env bash
# Held-out answer accuracy of a checkpoint on the shipped instruction set: renders each eval
# sample's prompt (every message before its last assistant turn) with the ChatML template that
# `meshlm sft` uses for tokenizers without their own, generates the answer greedily with
# `meshlm generate` (stopping at <|im_end|>), and scores the answers with
# tools/sft-answer-accuracy.py. Prints its JSON line.
#
#   tools/sft-eval.sh MESHLM CHECKPOINT [EVAL_JSONL] [FIRST_N]
#
# FIRST_N scores only the first N samples (about 0.5 s each: one `generate` process apiece).
set -euo pipefail
meshlm=$1 checkpoint=$2 source=${3:-data/sft/eval.jsonl} first=${4:-0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
eval="$work/eval.jsonl"
if [ "$first" -gt 0 ]; then head -n "$first" "$source" > "$eval"; else cp "$source" "$eval"; fi
python3 - "$eval" "$work" <<'PYTHON'
import json, sys
eval_path, work = sys.argv[1], sys.argv[2]
for index, line in enumerate(open(eval_path)):
    messages = json.loads(line)["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages[:last]) + "<|im_start|>assistant\n"
    open(f"{work}/prompt-{index:04d}.txt", "w").write(prompt)
PYTHON
for prompt in "$work"/prompt-*.txt; do
    index=$((10#$(basename "$prompt" .txt | cut -d- -f2)))
    output=$("$meshlm" generate --checkpoint "$checkpoint" --prompt "$(cat "$prompt")" --max-tokens 24 --stop '<|im_end|>' --threads 1 2>/dev/null || true)
    python3 -c 'import json, sys; print(json.dumps({"index": int(sys.argv[1]), "output": sys.argv[2]}))' "$index" "$output" >> "$work/outputs.jsonl"
done
python3 tools/sft-answer-accuracy.py "$eval" "$work/outputs.jsonl"
