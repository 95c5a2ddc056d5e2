#!/usr/bin/env bash
# DPO's speed against TRL and against SFT, full fine-tuning, one rank × THREADS threads:
# an ~11M-parameter Llama made by transformers (torch seed 0; tools/bench-dpo-trl.py make) and
# imported with meshlm ckpt import-hf, plain-text pairs of fixed length through the byte tokenizer
# (63-byte prompt, 192-byte completions: every sequence 256 tokens with its EOS, a pair 512, no
# padding anywhere), PAIRS pairs a step. Each round runs, in this order:
#   trl-dpo       TRL's DPOTrainer, precompute_ref_log_probs=True, float32, THREADS torch threads
#   meshlm-dpo    meshlm dpo (seq_len 512: a pair a row; micro-batches of 2 rows; reference cached)
#   meshlm-sft-2x meshlm sft on every chosen and rejected sequence as an SFT sample: a DPO step's tokens
#   meshlm-sft    meshlm sft on the chosen sequences only: one sequence a pair, half a DPO step's tokens
# tokens/s is a run's median over its steps after WARMUP (MeshLM's metrics.jsonl tokens_per_s, TRL's
# step clock); the table gives each one's median over ROUNDS rounds with the range, step times, and
# the DPO step against an SFT step over one sequence a pair (the issue's target: ≤ 2.2×).
#   PYTHON=/tmp/golden-venv/bin/python tools/bench-dpo.sh   # a python with torch, transformers, trl
# Run it on a quiet machine (no build running): the ratios are only as good as the idle cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
pairs=${PAIRS:-4} warmup=${WARMUP:-2} steps=${STEPS:-4} rounds=${ROUNDS:-3} threads=${THREADS:-2}
# The model's layer sizes (default ~11M; HIDDEN=768 INTERMEDIATE=2048 LAYERS=12 HEADS=12 KV_HEADS=4 is the
# 124M config's shape with the byte vocabulary, ~76M parameters).
# VOCAB=32000 gives the head a real vocabulary's width (the pairs still use the byte tokenizer's ids).
hidden=${HIDDEN:-384} intermediate=${INTERMEDIATE:-1024} layers=${LAYERS:-6} heads=${HEADS:-6} kv_heads=${KV_HEADS:-6} vocab=${VOCAB:-263}
sizes=(--hidden "$hidden" --intermediate "$intermediate" --layers "$layers" --heads "$heads" --kv-heads "$kv_heads" --vocab "$vocab")
python=${PYTHON:-/tmp/golden-venv/bin/python}
swift build -c release --product meshlm >/dev/null
meshlm=$(swift build -c release --show-bin-path)/meshlm
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
total=$((warmup + steps))
"$python" tools/bench-dpo-trl.py make "$work" --count $((pairs * total)) "${sizes[@]}" 2>/dev/null | tail -1 > "$work/model.json"
"$meshlm" ckpt import-hf "$work/hf" --output "$work/base" >/dev/null
model="{model_type: llama, vocab_size: $vocab, hidden_size: $hidden, intermediate_size: $intermediate, num_hidden_layers: $layers,
        num_attention_heads: $heads, num_key_value_heads: $kv_heads, max_position_embeddings: 1024, rope_theta: 10000.0,
        rms_norm_eps: 1.0e-5, tie_word_embeddings: false}"
config() {  # name, data, global batch rows, extra section → a config path
    cat > "$work/$1.yaml" <<EOF
model: $model
run: {dir: $work/run-$1}
train: {steps: $total, seed: 1234, seq_len: 512, global_batch_size: $3, micro_batch_size: 2, log_interval: 1, eval_interval: 0}
optimizer: {lr: 1.0e-6, warmup_steps: 0, schedule: constant, weight_decay: 0.0, grad_clip: 1.0}
data: {train: $2, shuffle: false}
checkpoint: {interval: 0}
$4
EOF
    echo "$work/$1.yaml"
}
dpo_config=$(config dpo "$work/dpo.jsonl" "$pairs" "preference: {template: auto}
dpo: {loss_type: sigmoid, beta: 0.1}")
sft2_config=$(config sft-2x "$work/sft-both.jsonl" "$pairs" "sft: {template: auto}")
sft_config=$(config sft "$work/sft-chosen.jsonl" $((pairs / 2)) "sft: {template: auto}")
meshlm_rate() {  # command, config → median tokens/s of the steps after the warm-up
    rm -rf "$work/run-"*
    OPENBLAS_NUM_THREADS=1 "$meshlm" "$1" --config "$2" --init-from "$work/base" --tokenizer bytes --threads "$threads" \
        > "$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
    [ "$round" != 1 ] || grep -o "packed into [0-9]* rows of [0-9]*" "$work/log" | sed "s|^|$(basename "$2" .yaml): |" >&2
    python3 -c "
import json, statistics, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if 'tokens_per_s' in r and r['step'] >= $warmup]
print(statistics.median(r['tokens_per_s'] for r in rows))" "$(ls "$work"/run-*/metrics.jsonl)"
}
for round in $(seq "$rounds"); do
    "$python" tools/bench-dpo-trl.py train "$work" "${sizes[@]}" --pairs "$pairs" --warmup "$warmup" --steps "$steps" --threads "$threads" \
        2>/dev/null | tail -1 | python3 -c "import json, sys; print(json.load(sys.stdin)['tokens_per_s'])" >> "$work/trl-dpo"
    rm -rf "$work/trl"
    meshlm_rate dpo "$dpo_config" >> "$work/meshlm-dpo"
    meshlm_rate sft "$sft2_config" >> "$work/meshlm-sft-2x"
    meshlm_rate sft "$sft_config" >> "$work/meshlm-sft"
    echo "round $round done" >&2
done
python3 - "$work" "$threads" "$pairs" <<'PYTHON'
import json, statistics, sys
work, threads, pairs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
parameters = json.load(open(f"{work}/model.json"))["parameters"]
tokens = {"trl-dpo": 512 * pairs, "meshlm-dpo": 512 * pairs, "meshlm-sft-2x": 512 * pairs, "meshlm-sft": 256 * pairs}
rates = {name: [float(line) for line in open(f"{work}/{name}")] for name in tokens}
median = {name: statistics.median(values) for name, values in rates.items()}
step = {name: tokens[name] / median[name] for name in tokens}
print(f"| run (Llama {parameters / 1e6:.1f}M, full fine-tuning, 1 rank × {threads} threads, {pairs} pairs a step, 256 tokens a sequence) "
      "| tokens a step | tokens/s median (range) | step s |")
print("|---|---|---|---|")
for name, values in rates.items():
    print(f"| {name} | {tokens[name]} | {median[name]:.0f} ({min(values):.0f}–{max(values):.0f}) | {step[name]:.2f} |")
print(f"meshlm dpo / TRL DPOTrainer (tokens/s): {median['meshlm-dpo'] / median['trl-dpo']:.2f}x")
print(f"DPO step / SFT step over one sequence a pair (meshlm-dpo / meshlm-sft step time; target <= 2.2): "
      f"{step['meshlm-dpo'] / step['meshlm-sft']:.2f}x")
print(f"DPO step / SFT step on the same tokens (meshlm-dpo / meshlm-sft-2x): {step['meshlm-dpo'] / step['meshlm-sft-2x']:.2f}x")
PYTHON
