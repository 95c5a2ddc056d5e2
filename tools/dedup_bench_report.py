#!/usr/bin/env python3
"""Summarizes tools/bench-dedup.sh runs in WORK: docs/s per core (wall clock and CPU time,
median of the repeats) for datatrove and MeshLM, the ratio, precision/recall of both against
the planted truth, and peak RSS. Prints a markdown table and one JSON line.

A removed document is a true positive when it belongs to a planted group (an original with its
copies at 0-20 % word edits); recall counts, per group, min(removed members, members - 1) over
the copies planted. Both tools are scored the same way.

usage: dedup_bench_report.py WORK REPEATS"""
import glob, json, os, statistics, sys

work, repeats = sys.argv[1], int(sys.argv[2])
truth = json.load(open(os.path.join(work, "truth.json")))
group_of = {member: group for group, members in truth.items() for member in members}
documents = sum(1 for path in glob.glob(os.path.join(work, "in", "*.jsonl")) for _ in open(path))
text_mb = sum(len(json.loads(line)["text"].encode()) for path in glob.glob(os.path.join(work, "in", "*.jsonl"))
              for line in open(path)) / 1e6

def score(removed):
    per_group = {}
    false_positives = 0
    for doc in removed:
        if doc in group_of:
            per_group[group_of[doc]] = per_group.get(group_of[doc], 0) + 1
        else:
            false_positives += 1
    true_positives = sum(min(count, len(truth[group]) - 1) for group, count in per_group.items())
    planted = sum(len(members) - 1 for members in truth.values())
    precision = (len(removed) - false_positives) / max(len(removed), 1)
    return precision, true_positives / planted

def times(name):
    rows = []
    for repeat in range(repeats):
        wall, user, system, rss = open(os.path.join(work, f"time-{name}-{repeat}")).read().split()[-4:]
        rows.append((float(wall), float(user) + float(system), int(rss) / 1024))
    return rows

results = {}
for name, cores in [("datatrove", 1), ("meshlm-1", 1), ("meshlm-2", 2)]:
    rows = times(name)
    wall = statistics.median(r[0] for r in rows)
    cpu = statistics.median(r[1] for r in rows)
    if name == "datatrove":
        removed = json.load(open(os.path.join(work, "datatrove-0.json")))["removed"]
        rss = max(r[2] for r in rows)
    else:
        out = os.path.join(work, f"out-{name}-0")
        removed = [json.loads(line)["id"] for line in open(os.path.join(out, "removed.jsonl"))]
        stats = json.load(open(os.path.join(out, "stats.json")))
        rss = max(json.load(open(os.path.join(work, f"out-{name}-{r}", "stats.json")))["timing"]["peak_rss_mb"]
                  for r in range(repeats))
    precision, recall = score(removed)
    results[name] = dict(wall_s=wall, cpu_s=cpu, docs_per_s_per_core_wall=documents / wall / cores,
                         docs_per_s_per_core_cpu=documents / cpu, removed=len(removed), precision=precision,
                         recall=recall, peak_rss_mb=rss, cores=cores)

peer = results["datatrove"]
print(f"corpus: {documents} documents, {text_mb:.1f} MB of text, {len(truth)} planted groups; median of {repeats} runs")
print("| tool | cores | wall s | docs/s per core (wall) | docs/s per core (CPU time) | × datatrove (wall) | × datatrove (CPU) | removed | precision | recall | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name, row in results.items():
    print(f"| {name} | {row['cores']} | {row['wall_s']:.2f} | {row['docs_per_s_per_core_wall']:.0f} | {row['docs_per_s_per_core_cpu']:.0f} "
          f"| {row['docs_per_s_per_core_wall'] / peer['docs_per_s_per_core_wall']:.1f} "
          f"| {row['docs_per_s_per_core_cpu'] / peer['docs_per_s_per_core_cpu']:.1f} | {row['removed']} "
          f"| {row['precision']:.3f} | {row['recall']:.3f} | {row['peak_rss_mb']:.0f} |")
print(json.dumps({"documents": documents, "text_mb": text_mb, **{name: row for name, row in results.items()}}))
