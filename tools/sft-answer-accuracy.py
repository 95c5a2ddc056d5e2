#!/usr/bin/env python3
"""Exact-answer accuracy of model outputs on the SFT eval set (data/sft/eval.jsonl).

Usage: tools/sft-answer-accuracy.py EVAL_JSONL OUTPUTS_JSONL

EVAL_JSONL: the eval set, one {"messages": [...]} conversation per line (OpenAI format, as
tools/make-sft-data.py writes it). Sample i is line i, counted from 0. The model is asked for
the last assistant turn: its prompt is every message before that turn (system message, user
question, and for a follow-up sample the first question and its reference answer, then the
follow-up question), rendered with the model's chat template and the generation prompt.

OUTPUTS_JSONL: one JSON object per line, {"index": i, "output": "..."}, where "output" is the
model's generated text for sample i (the assistant turn only, without the prompt; special
tokens such as EOS may be left in or removed). Lines may come in any order; an index may occur
only once and must be a sample of EVAL_JSONL. A sample without an output counts as wrong.

An output is correct when its answer equals the reference's. The answer of a text is the last
integer in its first sentence: the text up to the first newline or the first "." not followed
by a digit (so "42." ends a sentence, "4.5" does not), with commas inside numbers removed
("1,600" reads as 1600). The references are one sentence whose last integer is the answer
("17 plus 25 is 42.", "3 hours is 180 minutes."); an output with no integer is wrong.

Prints one JSON line: {"accuracy": correct / total, "correct": …, "total": samples in
EVAL_JSONL}. Python 3.11, standard library only.
"""

import json
import re
import sys

FIRST_SENTENCE = re.compile(r"\.(?!\d)|\n")
INTEGER = re.compile(r"-?\d+")
THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def answer(text):
    """The last integer of the first sentence of `text`, or None."""
    sentence = FIRST_SENTENCE.split(text.strip(), maxsplit=1)[0]
    numbers = INTEGER.findall(THOUSANDS_COMMA.sub("", sentence))
    return int(numbers[-1]) if numbers else None


def read_jsonl(path):
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as error:
                raise SystemExit(f"{path}:{line_number}: not JSON: {error}")


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: sft-answer-accuracy.py EVAL_JSONL OUTPUTS_JSONL")
    eval_path, outputs_path = sys.argv[1:]
    references = []
    for line_number, sample in read_jsonl(eval_path):
        messages = sample.get("messages") if isinstance(sample, dict) else None
        if not messages or messages[-1].get("role") != "assistant":
            raise SystemExit(f"{eval_path}:{line_number}: expected \"messages\" ending with an "
                             "assistant turn")
        reference = answer(messages[-1]["content"])
        if reference is None:
            raise SystemExit(f"{eval_path}:{line_number}: the reference answer has no integer")
        references.append(reference)

    outputs = {}
    for line_number, record in read_jsonl(outputs_path):
        if not isinstance(record, dict) or not isinstance(record.get("output"), str):
            raise SystemExit(f"{outputs_path}:{line_number}: expected "
                             '{"index": i, "output": "..."}')
        index = record.get("index")
        if type(index) is not int or not 0 <= index < len(references):
            raise SystemExit(f"{outputs_path}:{line_number}: index {index!r} is not a sample of "
                             f"{eval_path} (0 ..< {len(references)})")
        if index in outputs:
            raise SystemExit(f"{outputs_path}:{line_number}: index {index} occurs twice")
        outputs[index] = record["output"]

    correct = sum(1 for index, output in outputs.items() if answer(output) == references[index])
    total = len(references)
    print(json.dumps({"accuracy": correct / total if total else 0.0, "correct": correct,
                      "total": total}))


if __name__ == "__main__":
    main()
