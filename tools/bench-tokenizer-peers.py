#!/usr/bin/env python3
"""The Python peers of tools/bench-tokenizer.sh, on one thread (RAYON_NUM_THREADS=1):
  train     Hugging Face tokenizers BpeTrainer, byte-level with the GPT-4/Llama-3 split pattern
  encode    HF tokenizers with a given tokenizer.json; tiktoken cl100k_base (TIKTOKEN_CACHE_DIR)
Prints one line per figure: NAME SECONDS_OR_MBPS (median of --repeats)."""
import argparse, json, os, statistics, subprocess, sys, time

PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def documents(path):
    data = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout if path.endswith(".zst") else open(path, "rb").read()
    return [json.loads(line)["text"] for line in data.decode("utf-8").split("\n") if line.strip()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["train", "encode"])
    parser.add_argument("--input", required=True)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--tokenizer", help="tokenizer.json for HF encode")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = documents(args.input)
    size = sum(len(t.encode("utf-8")) for t in texts)
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    if args.what == "train":
        samples = []
        for _ in range(args.repeats):
            tokenizer = Tokenizer(models.BPE())
            tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(PATTERN), behavior="isolated"),
                                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
            trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
            start = time.perf_counter()
            tokenizer.train_from_iterator(texts, trainer=trainer)
            samples.append(time.perf_counter() - start)
        print(f"hf-train-seconds {statistics.median(samples):.3f}  ({size / 1e6:.1f} MB, vocab {args.vocab_size})")
        return
    hf = Tokenizer.from_file(args.tokenizer)
    samples = []
    for _ in range(args.repeats):
        fresh = Tokenizer.from_file(args.tokenizer)
        start = time.perf_counter()
        for text in texts:
            fresh.encode(text, add_special_tokens=False)
        samples.append(time.perf_counter() - start)
    print(f"hf-encode-mbps {size / statistics.median(samples) / 1e6:.2f}")
    try:
        import tiktoken
        encoding = tiktoken.get_encoding("cl100k_base")
    except Exception as error:  # offline without TIKTOKEN_CACHE_DIR
        print(f"tiktoken-encode-mbps unavailable ({type(error).__name__}: {error})")
        return
    samples = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for text in texts:
            encoding.encode_ordinary(text)
        samples.append(time.perf_counter() - start)
    print(f"tiktoken-encode-mbps {size / statistics.median(samples) / 1e6:.2f}")


if __name__ == "__main__":
    sys.exit(main())
