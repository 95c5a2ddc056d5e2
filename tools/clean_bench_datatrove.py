"""datatrove's Gopher quality, Gopher repetition and C4 filters on the benchmark corpus, one
process, documents read in advance (so only the filters are timed). Prints one JSON line.
usage: python clean_bench_datatrove.py CORPUS_DIR"""
import glob, json, sys, time

from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter

rows = []
for path in sorted(glob.glob(sys.argv[1] + "/in/*.jsonl")):
    with open(path) as handle:
        rows += [json.loads(line) for line in handle]
documents = [Document(text=row["text"], id=row["id"]) for row in rows]
text_bytes = sum(len(d.text.encode()) for d in documents)
filters = [GopherQualityFilter(min_doc_words=20), GopherRepetitionFilter(),
           C4QualityFilter(filter_no_terminal_punct=False, min_words_per_line=-1, filter_curly_bracket=False,
                           min_num_sentences=2)]
start_cpu, start = time.process_time(), time.perf_counter()
kept = 0
for document in documents:
    ok = True
    for step in filters:
        result = step.filter(document)
        if result is False or (isinstance(result, tuple) and result[0] is False):
            ok = False
            break
    kept += ok
seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
print(json.dumps({"documents": len(documents), "kept": kept, "text_bytes": text_bytes, "seconds": seconds, "cpu_seconds": cpu,
                  "mb_per_s": text_bytes / 1e6 / seconds, "mb_per_cpu_s": text_bytes / 1e6 / cpu}))
