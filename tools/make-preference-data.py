#!/usr/bin/env python3
"""Writes the shipped preference set, data/preference/{train,eval,kto}.jsonl, from the shipped
instruction set data/sft/{train,eval}.jsonl (tools/make-sft-data.py).

Each pair is one SFT conversation cut before its last assistant turn: the turns before it are
the prompt, the assistant's correct answer is chosen, and the same sentence with a plausible
wrong answer is rejected. The answer is the last integer of the sentence (make-sft-data.py
guarantees it); the wrong one is, half the time each:

  off by a little   the answer plus or minus 1, 2 or 10        "17 plus 25 is 43."
  a digit error     one digit one up or down, or the last two digits swapped  "... is 24."

always a positive integer other than the answer. Train pairs come from data/sft/train.jsonl,
eval pairs from data/sft/eval.jsonl, so eval keeps the SFT set's held-out problems. Prompts are
OpenAI messages (a system message on some, a first exchange before the question on the
follow-ups), in TRL's explicit-prompt form, compact JSON, one pair per line:

  {"prompt":[{"role":"user","content":"What is 17 plus 25?"}],
   "chosen":[{"role":"assistant","content":"17 plus 25 is 42."}],
   "rejected":[{"role":"assistant","content":"17 plus 25 is 43."}]}

kto.jsonl is KTO's unpaired form of the first NUM_KTO_PAIRS train pairs: each gives a
desirable sample (label true) and an undesirable one (label false), in a shuffled order:

  {"prompt":[...],"completion":[{"role":"assistant","content":"..."}],"label":true}

Deterministic: Python's `random.Random(SEED)` only, sorted iteration. Python 3.11, standard
library only.

Usage: tools/make-preference-data.py [OUTPUT_DIR]    (default: data/preference in this repository)
"""

import json
import random
import re
import sys
from pathlib import Path

SEED = 23
NUM_TRAIN = 400
NUM_EVAL = 64
NUM_KTO_PAIRS = 64
MAX_FILE_BYTES = 200_000

INTEGER = re.compile(r"\d+")


def require(condition, message):
    if not condition:
        raise SystemExit(f"make-preference-data: {message}")


def off_by_a_little(value):
    return [value + step for step in (-10, -2, -1, 1, 2, 10)]


def digit_errors(value):
    digits = str(value)
    wrong = []
    for index, digit in enumerate(digits):
        for changed in (int(digit) - 1, int(digit) + 1):
            if 0 <= changed <= 9 and not (index == 0 and changed == 0 and len(digits) > 1):
                wrong.append(int(digits[:index] + str(changed) + digits[index + 1:]))
    if len(digits) >= 2:
        wrong.append(int(digits[:-2] + digits[-1] + digits[-2]))
    return wrong


def wrong_answer(rng, value):
    """A positive integer other than `value`: off by a little, or with a digit error."""
    kinds = [off_by_a_little, digit_errors]
    if rng.random() < 0.5:
        kinds.reverse()
    for kind in kinds:
        candidates = sorted({wrong for wrong in kind(value) if wrong > 0 and wrong != value})
        if candidates:
            return rng.choice(candidates)
    raise SystemExit(f"make-preference-data: no wrong answer for {value}")


def make_pair(rng, sample):
    """The pair of one SFT conversation: its last answer chosen, a wrong one rejected."""
    messages = sample["messages"]
    answer = messages[-1]["content"]
    last = list(INTEGER.finditer(answer))[-1]
    wrong = wrong_answer(rng, int(last.group()))
    rejected = answer[:last.start()] + str(wrong) + answer[last.end():]
    return {"prompt": messages[:-1],
            "chosen": [{"role": "assistant", "content": answer}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def read_jsonl(path):
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def check(pairs, split):
    """What the preference reader and the accuracy checks rely on; exits on a violation."""
    prompts = set()
    for line, pair in enumerate(pairs, 1):
        roles = [m["role"] for m in pair["prompt"]]
        require(roles[-1] == "user", f"{split}:{line}: the prompt ends with {roles[-1]}")
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        require(chosen != rejected, f"{split}:{line}: chosen = rejected")
        chosen_answer = int(INTEGER.findall(chosen)[-1])
        rejected_answer = int(INTEGER.findall(rejected)[-1])
        require(rejected_answer != chosen_answer and rejected_answer > 0, f"{split}:{line}: {rejected}")
        require(INTEGER.sub("#", chosen) == INTEGER.sub("#", rejected), f"{split}:{line}: {rejected}")
        key = json.dumps(pair["prompt"])
        require(key not in prompts, f"{split}:{line}: a prompt occurs twice")
        prompts.add(key)
    return prompts


def unpaired(rng, pairs):
    samples = []
    for pair in pairs:
        for side, label in (("chosen", True), ("rejected", False)):
            samples.append({"prompt": pair["prompt"], "completion": pair[side], "label": label})
    rng.shuffle(samples)
    return samples


def write_jsonl(path, rows):
    text = "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows)
    path.write_text(text, encoding="utf-8")
    size = len(text.encode("utf-8"))
    require(size < MAX_FILE_BYTES, f"{path.name} is {size} bytes, over {MAX_FILE_BYTES}")
    return size


def main():
    repo = Path(__file__).resolve().parent.parent
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else repo / "data" / "preference"
    rng = random.Random(SEED)
    sft_train = read_jsonl(repo / "data" / "sft" / "train.jsonl")
    sft_eval = read_jsonl(repo / "data" / "sft" / "eval.jsonl")
    train = [make_pair(rng, sample) for sample in rng.sample(sft_train, NUM_TRAIN)]
    eval_ = [make_pair(rng, sample) for sample in rng.sample(sft_eval, NUM_EVAL)]
    train_prompts = check(train, "train")
    eval_prompts = check(eval_, "eval")
    require(not train_prompts & eval_prompts, "a prompt is in both train and eval")
    kto = unpaired(rng, train[:NUM_KTO_PAIRS])
    output.mkdir(parents=True, exist_ok=True)
    sizes = [write_jsonl(output / name, rows)
             for name, rows in (("train.jsonl", train), ("eval.jsonl", eval_), ("kto.jsonl", kto))]
    print(f"train.jsonl {len(train)} pairs {sizes[0]} bytes; eval.jsonl {len(eval_)} pairs "
          f"{sizes[1]} bytes; kto.jsonl {len(kto)} samples {sizes[2]} bytes")


if __name__ == "__main__":
    main()
