#!/usr/bin/env python3
"""Writes tiktoken's cl100k_base as a Hugging Face tokenizer.json that MeshLM loads, to compare
MeshLM with tiktoken on the same 100k vocabulary (ids and speed; tools/bench-tokenizer.sh).

tiktoken stores ranks, not merges: the merge of each multi-byte token is recovered by running
BPE on its bytes with only lower ranks allowed, which leaves exactly two parts (the usual
conversion, as for Llama-3). `ignore_merges` is set, as Llama-3's file does. Ids tiktoken leaves
unused between its vocabulary and its special tokens become `<|reserved_N|>` special tokens so
that ids stay contiguous. Needs tiktoken and its vocabulary (tools/setup-python.sh --bench sets
TIKTOKEN_CACHE_DIR's files up; export TIKTOKEN_CACHE_DIR=/tmp/venv-tokenizer/tiktoken-cache).

    python tools/tiktoken-to-tokenizer-json.py OUTPUT.json
"""
import json, sys

import tiktoken

PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def byte_level_alphabet():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def main():
    encoding = tiktoken.get_encoding("cl100k_base")
    ranks = encoding._mergeable_ranks
    alphabet = byte_level_alphabet()
    text = lambda token: "".join(alphabet[b] for b in token)

    def split(token, limit):
        parts = [bytes([b]) for b in token]
        while len(parts) > 1:
            best = None
            for index in range(len(parts) - 1):
                rank = ranks.get(parts[index] + parts[index + 1])
                if rank is not None and rank < limit and (best is None or rank < best[0]):
                    best = (rank, index)
            if best is None:
                break
            index = best[1]
            parts[index:index + 2] = [parts[index] + parts[index + 1]]
        return parts

    vocab, merges = {}, []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        vocab[text(token)] = rank
        if len(token) > 1:
            parts = split(token, rank)
            assert len(parts) == 2, (token, parts)
            merges.append([text(parts[0]), text(parts[1])])
    specials = dict(encoding._special_tokens)
    top = max(list(specials.values()) + [len(ranks) - 1])
    used = set(ranks.values()) | set(specials.values())
    for id in range(top + 1):
        if id not in used:
            specials[f"<|reserved_{id}|>"] = id
    added = [{"id": id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for content, id in sorted(specials.items(), key=lambda item: item[1])]
    document = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": merges},
    }
    with open(sys.argv[1], "w", encoding="utf-8") as handle:
        json.dump(document, handle, ensure_ascii=False)
    print(f"wrote {sys.argv[1]}: {len(vocab)} tokens, {len(merges)} merges, {len(specials)} special tokens; tiktoken pattern {encoding._pat_str!r}")


if __name__ == "__main__":
    main()
