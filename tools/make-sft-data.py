#!/usr/bin/env python3
"""Writes the shipped instruction set, data/sft/{train,eval}.jsonl (data/sft/README.md).

Short questions with exact integer answers in a fixed template, for measuring held-out answer
accuracy of a tiny model before and after SFT (tools/sft-answer-accuracy.py):

  add        "What is 17 plus 25?"               -> "17 plus 25 is 42."
  subtract   "Subtract 12 from 30."              -> "30 minus 12 is 18."
  convert    "How many minutes are in 3 hours?"  -> "3 hours is 180 minutes."
  follow-up  a second user turn that uses the first answer ("What is that plus 8?")

Some samples start with a system message. Every assistant turn is one sentence ending in "."
whose last integer is the answer; the script checks this, and the checker relies on it.

Held out by problem, not by phrasing: each problem (an unordered pair of addends, a pair for
subtraction, a unit conversion and its amount) belongs to train or to eval, never both, so no
eval question is a paraphrase of a train question. The script checks that no eval question
occurs in train. One line per sample, OpenAI `messages` format, compact JSON.

Deterministic: Python's `random.Random(SEED)` only, no hashing of strings, sorted iteration.
Python 3.11, standard library only.

Usage: tools/make-sft-data.py [OUTPUT_DIR]     (default: data/sft in this repository)
"""

import json
import random
import re
import sys
from pathlib import Path

SEED = 14
NUM_TRAIN = 3000
NUM_EVAL = 200
MAX_TRAIN_BYTES = 600_000

# Share of samples per kind (the rest is single-turn arithmetic), and of samples with a system
# message. The same mix for train and eval.
CONVERT_SHARE = 0.40
FOLLOW_UP_SHARE = 0.15
SYSTEM_SHARE = 0.20
SYSTEM_PROMPTS = [
    "You are a concise assistant.",
    "You are a concise assistant. Answer in one sentence.",
    "You are a helpful math tutor. Give the answer in one short sentence.",
]

# (large unit, its plural, small unit, its plural, small units per large unit)
CONVERSIONS = [
    ("hour", "hours", "minute", "minutes", 60),
    ("minute", "minutes", "second", "seconds", 60),
    ("day", "days", "hour", "hours", 24),
    ("week", "weeks", "day", "days", 7),
    ("meter", "meters", "centimeter", "centimeters", 100),
    ("kilometer", "kilometers", "meter", "meters", 1000),
    ("kilogram", "kilograms", "gram", "grams", 1000),
    ("foot", "feet", "inch", "inches", 12),
]
MAX_AMOUNT = 40  # conversions ask about 1 .. MAX_AMOUNT large units
DOZEN_ITEMS = ["eggs", "cookies", "roses", "pencils", "donuts", "apples"]

NAMES = [
    ("Anna", "she"), ("Ben", "he"), ("Carla", "she"), ("David", "he"), ("Emma", "she"),
    ("Farid", "he"), ("Grace", "she"), ("Hugo", "he"), ("Ines", "she"), ("Jack", "he"),
    ("Kofi", "he"), ("Lena", "she"), ("Maya", "she"), ("Noah", "he"), ("Omar", "he"),
    ("Priya", "she"), ("Sam", "he"), ("Tara", "she"),
]
THINGS = ["apples", "marbles", "stickers", "books", "coins", "cards", "shells", "stamps",
          "pencils", "oranges"]

MAX_ADDEND = 99


def plural(count, one, many):
    return one if count == 1 else many


# Problems. Each is a tuple whose first item names its kind; train and eval take disjoint sets.

def addition_problems():
    return [("add", a, b) for a in range(1, MAX_ADDEND + 1) for b in range(a, MAX_ADDEND + 1)]


def subtraction_problems():
    return [("sub", a, b) for a in range(2, MAX_ADDEND + 1) for b in range(1, a)]


def conversion_problems():
    problems = []
    for index in range(len(CONVERSIONS)):
        for amount in range(1, MAX_AMOUNT + 1):
            problems.append(("to-small", index, amount))  # 3 hours -> minutes
            problems.append(("to-large", index, amount))  # 180 minutes -> hours
    for amount in range(1, MAX_AMOUNT + 1):
        problems.append(("dozen-to-items", 0, amount))
        problems.append(("items-to-dozen", 0, amount))
    return problems


# Questions and answers. Each returns (question, answer, value).

def ask_addition(rng, problem):
    _, a, b = problem
    if rng.random() < 0.5:
        a, b = b, a
    total = a + b
    name, pronoun = rng.choice(NAMES)
    thing = rng.choice(THINGS)
    return rng.choice([
        (f"What is {a} plus {b}?", f"{a} plus {b} is {total}."),
        (f"What is {a} + {b}?", f"{a} plus {b} is {total}."),
        (f"Add {a} and {b}.", f"{a} plus {b} is {total}."),
        (f"What is the sum of {a} and {b}?", f"The sum of {a} and {b} is {total}."),
        (f"{name} has {a} {thing} and gets {b} more. How many {thing} does {pronoun} have now?",
         f"{name} has {total} {thing} now."),
    ]) + (total,)


def ask_subtraction(rng, problem):
    _, a, b = problem
    difference = a - b
    name, pronoun = rng.choice(NAMES)
    thing = rng.choice(THINGS)
    return rng.choice([
        (f"What is {a} minus {b}?", f"{a} minus {b} is {difference}."),
        (f"What is {a} - {b}?", f"{a} minus {b} is {difference}."),
        (f"Subtract {b} from {a}.", f"{a} minus {b} is {difference}."),
        (f"What is the difference between {a} and {b}?",
         f"The difference between {a} and {b} is {difference}."),
        (f"{name} had {a} {thing} and gave away {b}. How many {thing} does {pronoun} have left?",
         f"{name} has {difference} {thing} left."),
    ]) + (difference,)


def ask_conversion(rng, problem):
    kind, index, amount = problem
    if kind in ("dozen-to-items", "items-to-dozen"):
        item = rng.choice(DOZEN_ITEMS)
        count = 12 * amount
        if kind == "dozen-to-items":
            return rng.choice([
                (f"How many {item} are in {amount} dozen?", f"{amount} dozen is {count} {item}."),
                (f"{amount} dozen {item} is how many {item}?",
                 f"{amount} dozen is {count} {item}."),
                (f"If you buy {amount} dozen {item}, how many {item} do you have?",
                 f"{amount} dozen is {count} {item}."),
            ]) + (count,)
        return rng.choice([
            (f"How many dozen is {count} {item}?", f"{count} {item} is {amount} dozen."),
            (f"{count} {item} make how many dozen?", f"{count} {item} is {amount} dozen."),
        ]) + (amount,)
    large_one, large_many, small_one, small_many, factor = CONVERSIONS[index]
    large = f"{amount} {plural(amount, large_one, large_many)}"
    small = f"{amount * factor} {small_many}"
    if kind == "to-small":
        source, target_unit, target, value = large, small_many, small, amount * factor
    else:  # "How many hours are in 60 minutes?" -> "60 minutes is 1 hour."
        source, target_unit, target, value = small, large_many, large, amount
    return rng.choice([
        (f"How many {target_unit} are in {source}?", f"{source} is {target}."),
        (f"Convert {source} to {target_unit}.", f"{source} is {target}."),
        (f"{source[0].upper()}{source[1:]} is how many {target_unit}?", f"{source} is {target}."),
    ]) + (value,)


def ask(rng, problem):
    if problem[0] == "add":
        return ask_addition(rng, problem)
    if problem[0] == "sub":
        return ask_subtraction(rng, problem)
    return ask_conversion(rng, problem)


def ask_follow_up(rng, problem, previous):
    """A second question about the first answer: a conversion onward, or arithmetic on it."""
    kind, index, _ = problem
    if kind == "to-small" and rng.random() < 0.6:
        # "3 hours is 180 minutes." -> "And how many seconds is that?", where a next unit exists.
        small_one, small_many = CONVERSIONS[index][2:4]
        for large_one, _, _, next_many, next_factor in CONVERSIONS:
            if large_one == small_one:
                value = previous * next_factor
                return (rng.choice([f"And how many {next_many} is that?",
                                    f"How many {next_many} is that?"]),
                        f"{previous} {small_many} is {value} {next_many}.", value)
    if previous < 2 or rng.random() < 0.5:
        step = rng.randint(1, MAX_ADDEND)
        value = previous + step
        return (rng.choice([f"What is that plus {step}?", f"Now add {step} to that."]),
                f"{previous} plus {step} is {value}.", value)
    step = rng.randint(1, min(previous - 1, MAX_ADDEND))
    value = previous - step
    return (rng.choice([f"What is that minus {step}?", f"Now subtract {step} from that."]),
            f"{previous} minus {step} is {value}.", value)


def make_sample(rng, draw, kind):
    """One conversation of `kind` ("arithmetic", "convert" or "follow-up").

    `draw(pool)` gives a problem from the pool "add", "sub" or "convert". Returns the sample,
    its first problem, and the answer of its last assistant turn.
    """
    pools = {"arithmetic": ["add", "sub"], "convert": ["convert"],
             "follow-up": ["add", "sub", "convert"]}[kind]
    problem = draw(rng.choice(pools))
    messages = []
    if rng.random() < SYSTEM_SHARE:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    question, answer, value = ask(rng, problem)
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if kind == "follow-up":
        question, answer, value = ask_follow_up(rng, problem, value)
        messages += [{"role": "user", "content": question},
                     {"role": "assistant", "content": answer}]
    return {"messages": messages}, problem, value


def make_split(rng, draw, count):
    """`count` distinct samples in the fixed mix of kinds, in a shuffled order."""
    num_convert = round(count * CONVERT_SHARE)
    num_follow_up = round(count * FOLLOW_UP_SHARE)
    kinds = (["convert"] * num_convert + ["follow-up"] * num_follow_up
             + ["arithmetic"] * (count - num_convert - num_follow_up))
    rng.shuffle(kinds)
    samples, seen = [], set()
    for kind in kinds:
        while True:  # a repeated conversation is drawn again
            sample = make_sample(rng, draw, kind)
            key = json.dumps(sample[0])
            if key not in seen:
                break
        seen.add(key)
        samples.append(sample)
    return samples


def shuffled_pools(rng):
    """Every problem of each pool, in a shuffled order."""
    pools = {"add": addition_problems(), "sub": subtraction_problems(),
             "convert": conversion_problems()}
    for name in sorted(pools):
        rng.shuffle(pools[name])
    return pools


ANSWER = re.compile(r"-?\d+")


def require(condition, message):
    if not condition:
        raise SystemExit(f"make-sft-data: {message}")


def check(train, eval_):
    """The properties the accuracy checker and the SFT reader rely on; exits on a violation."""
    for split, samples in [("train", train), ("eval", eval_)]:
        for line, (sample, _, value) in enumerate(samples, 1):
            messages = sample["messages"]
            roles = [m["role"] for m in messages]
            body = roles[1:] if roles[0] == "system" else roles
            require(len(body) >= 2 and len(body) % 2 == 0, f"{split}:{line}: {roles}")
            require(body == ["user", "assistant"] * (len(body) // 2), f"{split}:{line}: {roles}")
            for m in messages:
                require(m["content"] and m["content"] == m["content"].strip(), f"{split}:{line}")
                if m["role"] == "assistant":
                    text = m["content"]
                    require(text.endswith(".") and text.count(".") == 1, f"{split}:{line}: {text}")
                    require(len(text.split()) < 20, f"{split}:{line}: {text}")
            last = ANSWER.findall(messages[-1]["content"])[-1]
            require(int(last) == value, f"{split}:{line}: answer {last}, expected {value}")
    train_problems = {problem for _, problem, _ in train}
    eval_problems = {problem for _, problem, _ in eval_}
    require(not train_problems & eval_problems, "a problem is in both train and eval")
    train_questions = {m["content"] for sample, _, _ in train for m in sample["messages"]
                       if m["role"] == "user"}
    for line, (sample, _, _) in enumerate(eval_, 1):
        first = next(m["content"] for m in sample["messages"] if m["role"] == "user")
        require(first not in train_questions, f"eval:{line}: question also in train: {first}")
    for split, samples in [("train", train), ("eval", eval_)]:
        lines = [json.dumps(sample) for sample, _, _ in samples]
        require(len(set(lines)) == len(lines), f"duplicate {split} samples")


def write_jsonl(path, samples):
    text = "".join(json.dumps(sample, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for sample, _, _ in samples)
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def main():
    repo = Path(__file__).resolve().parent.parent
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else repo / "data" / "sft"
    rng = random.Random(SEED)
    pools = shuffled_pools(rng)
    # Eval takes its problems off the pools, each asked once; train draws from what is left,
    # where a problem may recur in another phrasing (there are fewer conversions than samples).
    eval_ = make_split(rng, lambda pool: pools[pool].pop(), NUM_EVAL)
    train = make_split(rng, lambda pool: rng.choice(pools[pool]), NUM_TRAIN)
    check(train, eval_)
    output.mkdir(parents=True, exist_ok=True)
    train_bytes = write_jsonl(output / "train.jsonl", train)
    eval_bytes = write_jsonl(output / "eval.jsonl", eval_)
    if train_bytes > MAX_TRAIN_BYTES:
        raise SystemExit(f"make-sft-data: train.jsonl is {train_bytes} bytes, "
                         f"over {MAX_TRAIN_BYTES}")
    print(f"train.jsonl {len(train)} samples {train_bytes} bytes; "
          f"eval.jsonl {len(eval_)} samples {eval_bytes} bytes")


if __name__ == "__main__":
    main()
