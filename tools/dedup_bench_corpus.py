#!/usr/bin/env python3
"""Builds the dedup benchmark corpus (not committed): documents of real sentences from the
shipped corpus (data/corpus/train.jsonl.zst), each a random draw of 15-60 sentences, so two
documents share little; then, for a tenth of them, planted copies at known word-edit rates
(0 %, 1 %, 2 %, 5 %, 10 %, 20 % of words substituted). Writes OUT/in/part-NN.jsonl (id, text,
group) and OUT/truth.json (group -> member ids). Deterministic for a given seed.

usage: dedup_bench_corpus.py OUT DOCUMENTS [SEED]"""
import json, os, random, re, subprocess, sys

out, documents = sys.argv[1], int(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1124
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
raw = subprocess.run(["zstd", "-dc", os.path.join(root, "data/corpus/train.jsonl.zst")], check=True,
                     capture_output=True).stdout.decode()
sentences = []
for line in raw.splitlines():
    text = json.loads(line)["text"]
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        words = sentence.split()
        if 6 <= len(words) <= 80:
            sentences.append(" ".join(words))
vocabulary = sorted({w for s in sentences[:5000] for w in s.split()})
rng = random.Random(seed)
rates = [0.0, 0.01, 0.02, 0.05, 0.10, 0.20]
originals = int(documents / (1 + 0.1 * len(rates)))
docs, truth = [], {}
for index in range(originals):
    text = " ".join(rng.choice(sentences) for _ in range(rng.randint(15, 60)))
    docs.append({"id": f"doc-{index}", "text": text})
    if index % 10 == 0:
        group = [f"doc-{index}"]
        for rate in rates:
            words = text.split()
            for _ in range(round(rate * len(words))):
                words[rng.randrange(len(words))] = rng.choice(vocabulary)
            copy_id = f"copy-{index}-{int(rate * 100)}"
            docs.append({"id": copy_id, "text": " ".join(words)})
            group.append(copy_id)
        truth[f"doc-{index}"] = group
rng.shuffle(docs)
os.makedirs(os.path.join(out, "in"), exist_ok=True)
parts = 16
for part in range(parts):
    with open(os.path.join(out, "in", f"part-{part:02d}.jsonl"), "w") as handle:
        for doc in docs[part::parts]:
            handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
with open(os.path.join(out, "truth.json"), "w") as handle:
    json.dump(truth, handle)
size = sum(len(d["text"].encode()) for d in docs)
print(f"corpus: {len(docs)} documents, {size / 1e6:.1f} MB of text, {len(truth)} planted groups of {len(rates) + 1}")
