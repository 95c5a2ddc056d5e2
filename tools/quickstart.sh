#!/usr/bin/env bash
# The first command of the README: installs what is missing, builds MeshLM (release), and runs
# its main job end to end under mpirun -np 2 on the corpus that ships in data/corpus:
# device-mesh check → clean → dedup → BPE tokenizer → token shards → pretraining of the tiny model
# (loss falling, checkpoints) → the curve drawn to runs/tiny/plot.svg → eval of the checkpoint on
# the held-out shards → generation from the trained model → a mixture-of-experts variant of it
# pretrained, evaluated and sampled → the shipped instruction set (data/sft)
# tokenized into sample shards → LoRA supervised fine-tuning on them with held-out answer
# accuracy before and after → a chat
# answer from the fine-tuned model → DPO of it on the shipped preference pairs with the preference
# accuracy before and after → the benchmarks. Each capability that
# lands extends this script.
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

echo "== data: clean → dedup → BPE tokenizer → token shards, on 2 ranks, from the shipped corpus"
work=data/work
bash tools/prepare-data.sh "$meshlm"

echo "== pretraining the tiny model on 2 ranks (data parallel), then tensor × pipeline parallel from its checkpoint"
rm -rf runs/tiny
# No tokenizer flag: `data tokenize` left the tokenizer.json beside the shards and pretraining
# copies it into every checkpoint (docs/checkpoints.md, "Tokenizer identity").
run mpirun -np 2 "$meshlm" pretrain --config configs/pretrain/tiny.yaml --set checkpoint.interval=100
run "$meshlm" plot runs/tiny
run mpirun -np 2 "$meshlm" eval --checkpoint runs/tiny --tokens data/shards/eval --seq-len 128
run mpirun -np 2 "$meshlm" mesh --config configs/pretrain/tiny.yaml --set parallel.pp=2

echo "== generating from the model just trained (the tokenizer travels in its checkpoint)"
run "$meshlm" generate --checkpoint runs/tiny --prompt "In the beginning" --max-tokens 48 --temperature 0.8 --top-p 0.95 --seed 1

echo "== a mixture of experts: the tiny model with 8 experts of half its MLP width, top-2 (docs/moe.md), 2 ranks, ZeRO-1;"
echo "   its routing figures (balancing and z losses, expert loads) are logged beside the loss; then eval and generation"
rm -rf runs/tiny-moe
run mpirun -np 2 "$meshlm" pretrain --config configs/pretrain/tiny-moe.yaml --set train.steps=150 --set train.eval_interval=50 \
    --set parallel.zero_stage=1 --set checkpoint.interval=150
grep moe_aux_loss runs/tiny-moe/metrics.jsonl | tail -1
run mpirun -np 2 "$meshlm" eval --checkpoint runs/tiny-moe --tokens data/shards/eval --seq-len 128
run "$meshlm" generate --checkpoint runs/tiny-moe --prompt "In the beginning" --max-tokens 32 --temperature 0.8 --top-p 0.95 --seed 1

echo "== supervised fine-tuning: LoRA on the shipped instruction set (data/sft), 2 ranks, from the pretrained checkpoint"
echo "   (samples rendered with the checkpoint's tokenizer and chat template into sample shards once; sft packs from them"
echo "    and trains exactly as from the JSONL)"
run mpirun -np 2 "$meshlm" data sft-tokenize --config configs/sft/tiny-lora.yaml --output data/shards/sft-train --overwrite
rm -rf runs/tiny-sft
run mpirun -np 2 "$meshlm" sft --config configs/sft/tiny-lora.yaml --set data.train=data/shards/sft-train
# The base model has no chat template: it is asked in the one SFT trained with (ChatML, saved
# in the fine-tuned checkpoint), so the two figures differ only by the fine-tuning.
template=$(ls -d runs/tiny-sft/checkpoints/step_* | sort -V | tail -1)/chat_template.jinja
echo "held-out answer accuracy (the 200 questions of data/sft/eval.jsonl, answered in one batched generate) before SFT:"
bash tools/sft-eval.sh "$meshlm" runs/tiny data/sft/eval.jsonl 0 "$template"
echo "and after SFT:"
bash tools/sft-eval.sh "$meshlm" runs/tiny-sft data/sft/eval.jsonl
echo "== a chat answer from the fine-tuned model (its chat template from its checkpoint, its adapters merged at load)"
run "$meshlm" generate --checkpoint runs/tiny-sft --chat --prompt "What is 17 plus 25?" --max-tokens 24 --echo
echo "== preference alignment: DPO (with an NLL term: RPO) of the fine-tuned model on the shipped pairs (data/preference:"
echo "   each question's right answer against a near miss), 2 ranks, its LoRA adapters trained further; the reference (the SFT"
echo "   checkpoint) scored once before the first step and cached in runs/tiny-dpo/reference"
rm -rf runs/tiny-dpo
run mpirun -np 2 "$meshlm" dpo --config configs/dpo/tiny-lora.yaml
echo "preference accuracy — the share of pairs whose right answer the model finds likelier — on the 63 held-out pairs before and after DPO,"
echo "and on the training batches (a 5 MB model does not learn arithmetic from 383 pairs: expect the training share to rise, the held-out one to move by noise):"
python3 tools/preference-accuracy.py runs/tiny-dpo/metrics.jsonl

echo "== benchmarks (one rank; each figure next to this machine's ceiling measured in the same run)"
run "$meshlm" bench gemm --quick
run "$meshlm" bench kernels --quick
echo "== allreduce between 2 ranks"
run mpirun -np 2 "$meshlm" bench allreduce --quick
echo "quickstart: done — the loss curve is in runs/tiny/plot.svg, the metrics in runs/tiny/metrics.jsonl, checkpoints in runs/tiny/checkpoints"
