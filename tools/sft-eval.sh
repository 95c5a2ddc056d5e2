#!/usr/bin/env bash
# Held-out answer accuracy of a checkpoint on the shipped instruction set: each eval sample's
# prompt (every message before its last assistant turn) goes through the checkpoint's chat
# template (or TEMPLATE, a .jinja file: for a base model that has none, the template SFT trains
# with), `meshlm generate --input` answers all of them greedily in one batched run (stopping at
# the template's end of turn), and tools/sft-answer-accuracy.py scores the answers. Prints its
# JSON line.
#
#   tools/sft-eval.sh MESHLM CHECKPOINT [EVAL_JSONL] [FIRST_N] [TEMPLATE]
#
# FIRST_N > 0 scores only the first N samples.
set -euo pipefail
meshlm=$1 checkpoint=$2 source=${3:-data/sft/eval.jsonl} first=${4:-0} template=${5:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
eval="$work/eval.jsonl"
if [ "$first" -gt 0 ]; then head -n "$first" "$source" > "$eval"; else cp "$source" "$eval"; fi
python3 - "$eval" "$work/prompts.jsonl" <<'PYTHON'
import json, sys
with open(sys.argv[2], "w") as out:
    for index, line in enumerate(open(sys.argv[1])):
        messages = json.loads(line)["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        out.write(json.dumps({"id": index, "messages": messages[:last]}) + "\n")
PYTHON
"$meshlm" generate --checkpoint "$checkpoint" ${template:+--chat-template "$template"} --input "$work/prompts.jsonl" \
    --output "$work/generated.jsonl" --max-tokens 24
python3 -c '
import json, sys
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        row = json.loads(line)
        out.write(json.dumps({"index": int(row["id"]), "output": row["text"]}) + "\n")' "$work/generated.jsonl" "$work/outputs.jsonl"
python3 tools/sft-answer-accuracy.py "$eval" "$work/outputs.jsonl"
