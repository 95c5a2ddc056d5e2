#!/usr/bin/env python3
"""MeshLM's BPE tokenizer against Hugging Face `tokenizers`, both ways, on real text.

1. MeshLM trains a tokenizer.json; `tokenizers` loads it; both encode every document of the
   corpus; the ids must be identical. Again with Llama-3's `ignore_merges: true` set in it.
2. `tokenizers` trains a byte-level BPE with the same GPT-4/Llama-3 split pattern; MeshLM loads
   that tokenizer.json; both encode every document; the ids must be identical.

3. With --tiktoken: tiktoken's cl100k_base converted to a tokenizer.json
   (tools/tiktoken-to-tokenizer-json.py), loaded by MeshLM, against tiktoken's own ids
   (the corpus documents; tiktoken's newer pattern splits trailing white space differently).

Prints one PASS or FAIL line (with document and token counts) and exits 0 or 1.
Needs the `tokenizers` wheel (tools/setup-python.sh installs it into /tmp/venv-tokenizer) and
the `zstd` command for .jsonl.zst inputs.

    /tmp/venv-tokenizer/bin/python tools/check-tokenizer-parity.py --meshlm .build/debug/meshlm
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def documents(paths):
    for path in paths:
        if path.endswith(".zst"):
            data = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout.decode("utf-8")
        else:
            with open(path, encoding="utf-8") as handle:
                data = handle.read()
        if path.endswith(".txt"):
            yield data
            continue
        for line in data.split("\n"):
            if line.strip():
                yield json.loads(line)["text"]


def odd_documents(count=2000, seed=5):
    """Random strings over every character class the split pattern tells apart, including the
    white space and letter edge cases (VT, NEL, NBSP, U+2028, long s, astral letters/digits)."""
    import random
    alphabet = list("aZé日ſ'sSltLdrevm0١½Ⅻ \t\n\r\x0b\x0c\x85\xa0\u2028\u3000\u1680\u180e\u200b.,!?-_()\"$€\u0301🧪𝐀𝟙\U00010400")
    generator = random.Random(seed)
    return ["".join(generator.choice(alphabet) for _ in range(generator.randrange(1, 40))) for _ in range(count)]


def meshlm_ids(meshlm, tokenizer, inputs, workdir, name):
    out = os.path.join(workdir, name)
    subprocess.run([meshlm, "tokenizer", "encode", "--tokenizer", tokenizer, "--input", *inputs, "--output", out],
                   check=True, capture_output=True)
    with open(out) as handle:
        return [json.loads(line) for line in handle]


def compare(label, ours, theirs, texts):
    if len(ours) != len(theirs):
        return f"{label}: {len(ours)} documents from MeshLM, {len(theirs)} from tokenizers"
    for index, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            return (f"{label}: document {index} differs at token {first}: MeshLM {a[first:first + 8]} "
                    f"tokenizers {b[first:first + 8]} (text {texts[index][:80]!r})")
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meshlm", required=True, help="the meshlm binary")
    parser.add_argument("--input", nargs="+", default=["data/corpus/train.jsonl.zst", "data/corpus/eval.jsonl.zst"])
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--tiktoken", action="store_true",
                        help="also compare with tiktoken cl100k_base (needs tiktoken and TIKTOKEN_CACHE_DIR; tools/setup-python.sh --bench)")
    args = parser.parse_args()
    texts = list(documents(args.input))
    failures = []
    odd = odd_documents()
    tokens = 0
    with tempfile.TemporaryDirectory(prefix="meshlm-parity-") as workdir:
        # Odd Unicode is encoded (not trained on) by both tokenizers after the corpus.
        odd_path = os.path.join(workdir, "odd.jsonl")
        with open(odd_path, "w", encoding="utf-8") as handle:
            for text in odd:
                handle.write(json.dumps({"text": text}) + "\n")
        encode_inputs = args.input + [odd_path]
        all_texts = texts + odd
        # 1. MeshLM-trained, loaded by tokenizers.
        ours_json = os.path.join(workdir, "meshlm.json")
        subprocess.run([args.meshlm, "tokenizer", "train", "--input", *args.input, "--vocab-size", str(args.vocab_size),
                        "--output", ours_json], check=True, capture_output=True)
        hf = Tokenizer.from_file(ours_json)
        theirs = [hf.encode(text, add_special_tokens=False).ids for text in all_texts]
        ours = meshlm_ids(args.meshlm, ours_json, encode_inputs, workdir, "meshlm-ids.txt")
        tokens += sum(len(ids) for ids in ours)
        failure = compare("MeshLM-trained tokenizer", ours, theirs, all_texts)
        if failure:
            failures.append(failure)

        # 1b. The same with Llama-3's "ignore_merges": true (a piece that is a token is taken whole).
        with open(ours_json) as handle:
            ignoring = handle.read().replace('"ignore_merges": false', '"ignore_merges": true')
        ignoring_json = os.path.join(workdir, "meshlm-ignore-merges.json")
        with open(ignoring_json, "w") as handle:
            handle.write(ignoring)
        hf = Tokenizer.from_file(ignoring_json)
        theirs = [hf.encode(text, add_special_tokens=False).ids for text in all_texts]
        ours = meshlm_ids(args.meshlm, ignoring_json, encode_inputs, workdir, "meshlm-ignore-ids.txt")
        tokens += sum(len(ids) for ids in ours)
        failure = compare("MeshLM-trained tokenizer with ignore_merges", ours, theirs, all_texts)
        if failure:
            failures.append(failure)

        # 2. tokenizers-trained, loaded by MeshLM.
        trained = Tokenizer(models.BPE())
        trained.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        trained.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        trained.train_from_iterator(texts, trainer=trainer)
        hf_json = os.path.join(workdir, "hf.json")
        trained.save(hf_json)
        theirs = [trained.encode(text, add_special_tokens=False).ids for text in all_texts]
        ours = meshlm_ids(args.meshlm, hf_json, encode_inputs, workdir, "hf-ids.txt")
        tokens += sum(len(ids) for ids in ours)
        failure = compare("tokenizers-trained tokenizer", ours, theirs, all_texts)
        if failure:
            failures.append(failure)

        # 3. Optional: tiktoken's cl100k_base as a tokenizer.json, loaded by MeshLM, against tiktoken.
        if args.tiktoken:
            import tiktoken
            cl100k_json = os.path.join(workdir, "cl100k.json")
            subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "tiktoken-to-tokenizer-json.py"), cl100k_json],
                           check=True, capture_output=True)
            encoding = tiktoken.get_encoding("cl100k_base")
            theirs = [encoding.encode_ordinary(text) for text in texts]
            ours = meshlm_ids(args.meshlm, cl100k_json, args.input, workdir, "cl100k-ids.txt")
            tokens += sum(len(ids) for ids in ours)
            failure = compare("tiktoken cl100k_base", ours, theirs, texts)
            if failure:
                failures.append(failure)

    if failures:
        print("FAIL tokenizer parity: " + "; ".join(failures))
        return 1
    tiktoken_note = ", and cl100k_base against tiktoken" if args.tiktoken else ""
    print(f"PASS tokenizer parity: {len(texts)} documents + {len(odd)} odd-Unicode strings x {4 if args.tiktoken else 3} tokenizers (vocab {args.vocab_size}{tiktoken_note}), {tokens} tokens identical "
          f"to Hugging Face tokenizers {__import__('tokenizers').__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
