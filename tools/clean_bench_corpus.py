"""Builds the cleaning benchmark corpus (not committed): the shipped corpus repeated COPIES
times (ids suffixed, so every document is distinct by id) with 5 % planted junk documents
(short, repeated lines, symbols, lorem ipsum, Cyrillic) and some personal data, as 8 JSONL
files.  usage: python3 tools/clean_bench_corpus.py OUT_DIR COPIES"""
import json, os, random, subprocess, sys

out, copies = sys.argv[1], int(sys.argv[2])
os.makedirs(out + "/in", exist_ok=True)
raw = subprocess.run(["zstd", "-dc", "data/corpus/train.jsonl.zst"], check=True, capture_output=True).stdout
documents = [json.loads(line) for line in raw.decode().splitlines()]
rng = random.Random(20261124)
junk = [
    "Too short.",
    "Buy cheap watches online now and save on every order today.\n" * 30,
    " ".join(f"#tag{i} and the" for i in range(60)),
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " + documents[0]["text"][:400],
    "Это предложение написано по-русски и не проходит фильтр письменности. " * 8,
]
rows = []
for copy in range(copies):
    for document in documents:
        row = dict(document, id=f"{document['id']}-{copy}")
        if rng.random() < 0.02:
            row["text"] += f"\nContact: user{copy}@example.com, +1-202-555-{rng.randint(1000, 9999)}, 10.0.{copy % 256}.{rng.randint(1, 254)}\n"
        rows.append(row)
        if rng.random() < 0.05:
            rows.append({"id": f"junk-{len(rows)}", "text": rng.choice(junk)})
parts = 8
for part in range(parts):
    with open(f"{out}/in/part-{part}.jsonl", "w") as handle:
        for row in rows[part::parts]:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
print(f"{len(rows)} documents, {sum(len(r['text'].encode()) for r in rows) / 1e6:.1f} MB of text in {out}/in")
