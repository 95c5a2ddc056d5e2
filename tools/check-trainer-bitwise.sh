#!/usr/bin/env bash
# Shows that a change to the training code keeps pretraining bitwise: runs the same short
# pretraining with two builds of meshlm on four layouts (1 rank; dp 2 ZeRO-3; tp 2 with sequence
# parallelism; pp 2) and compares every logged loss, gradient norm and eval loss exactly.
#
#   tools/check-trainer-bitwise.sh OLD_MESHLM NEW_MESHLM [STEPS]
#
# Build the old one from the commit before the change, e.g.
#   git worktree add /tmp/old HEAD~1 && (cd /tmp/old && swift build -c release)
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
old=$1 new=$2 steps=${3:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$new" data shard-text --input data/corpus/eval.jsonl.zst --output "$work/shards" >/dev/null
layouts=("1|" "2|--set parallel.zero_stage=3" "2|--set parallel.tp=2 --set parallel.sequence_parallel=true" "2|--set parallel.pp=2")
status=0
for layout in "${layouts[@]}"; do
    ranks=${layout%%|*} extra=${layout#*|}
    for which in old new; do
        binary=$old; [ "$which" = new ] && binary=$new
        # shellcheck disable=SC2086
        mpirun -np "$ranks" -x OPENBLAS_NUM_THREADS=1 "$binary" pretrain --config configs/pretrain/tiny.yaml \
            --set data.train="$work/shards" --set data.eval="$work/shards" --set run.dir="$work/run-$which" \
            --set train.steps="$steps" --set train.log_interval=1 --set train.eval_interval=10 --set checkpoint.interval=0 \
            $extra >"$work/log-$which" 2>&1 || { cat "$work/log-$which"; exit 1; }
        python3 -c '
import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line)
    print(row["step"], *(repr(row[k]) for k in ("loss", "grad_norm", "eval_loss") if k in row))' \
            "$work/run-$which/metrics.jsonl" >"$work/figures-$which"
        rm -rf "$work/run-$which"
    done
    rows=$(wc -l <"$work/figures-new")
    if cmp -s "$work/figures-old" "$work/figures-new"; then
        echo "np $ranks ${extra:-(one rank)}: $rows rows of loss/grad_norm/eval_loss bitwise equal"
    else
        echo "np $ranks ${extra:-(one rank)}: DIFFERENT"; diff "$work/figures-old" "$work/figures-new" | head -5
        status=1
    fi
done
exit $status
