#!/usr/bin/env python3
"""Held-out preference accuracy before and after a preference run, from its metrics.jsonl.

Usage: tools/preference-accuracy.py RUN/metrics.jsonl

Reads the evaluation lines `meshlm dpo` writes: the one before the first step
("eval_on_start": true) and the last one. Prints, for each, eval_policy/accuracies (the share
of held-out pairs whose chosen answer the model finds likelier than the rejected one, no
reference) and, after training, eval_rewards/accuracies and eval_rewards/margins (TRL's, against
the reference); and the same share on the training batches, over the first and last four logged
steps. Python 3, standard library only.
"""

import json
import sys


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    evaluations, steps = [], []
    with open(sys.argv[1], encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if "eval_loss" in row:
                evaluations.append(row)
            elif "policy/accuracies" in row:
                steps.append(row)
    start = next((row for row in evaluations if row.get("eval_on_start")), None)
    if start is None or len(evaluations) < 2:
        sys.exit(f"{sys.argv[1]}: no evaluation before the first step and after it (set train.eval_interval)")
    end = evaluations[-1]
    print(f"before: {start['eval_policy/accuracies']:.3f} of the held-out pairs ranked right (eval loss {start['eval_loss']:.4f})")
    if len(steps) >= 8:
        def mean(rows):
            return sum(row["policy/accuracies"] for row in rows) / len(rows)
        print(f"on the training batches: {mean(steps[:4]):.3f} over the first 4 logged steps, {mean(steps[-4:]):.3f} over the last 4")
    print(f"after:  {end['eval_policy/accuracies']:.3f} (eval loss {end['eval_loss']:.4f}, step {end['step']}; "
          f"rewards/accuracies {end['eval_rewards/accuracies']:.3f}, rewards/margins {end['eval_rewards/margins']:.4f})")


if __name__ == "__main__":
    main()
