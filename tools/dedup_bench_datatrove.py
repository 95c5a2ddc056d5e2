#!/usr/bin/env python3
"""Runs datatrove's MinHash dedup (the four stages: signatures, buckets, clusters, filter) on
OUT/in with one task and one worker, 5-grams, 14 bands x 8 rows, 64-bit xxhash (the peer
configuration of ../shared/notes/data-anchors.md). Prints one JSON line: seconds, documents,
removed ids file.

usage: dedup_bench_datatrove.py OUT"""
import json, os, shutil, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                             MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig

out = sys.argv[1]
work = os.path.join(out, "datatrove")
shutil.rmtree(work, ignore_errors=True)
config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8,
                       hash_config=HashConfig(precision=64, hash_fc="xxhash"))
reader = lambda: JsonlReader(os.path.join(out, "in"), glob_pattern="*.jsonl", id_key="id")
stages = [
    [reader(), MinhashDedupSignature(output_folder=f"{work}/signatures", config=config)],
    [MinhashDedupBuckets(input_folder=f"{work}/signatures", output_folder=f"{work}/buckets", config=config)],
    [MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids", config=config)],
    [reader(), MinhashDedupFilter(input_folder=f"{work}/remove_ids",
                                  exclusion_writer=JsonlWriter(f"{work}/removed", compression=None)),
     JsonlWriter(f"{work}/kept", compression=None)],
]
start = time.perf_counter()
for index, pipeline in enumerate(stages):
    tasks = config.num_buckets if index == 1 else 1
    LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=f"{work}/logs/{index}").run()
seconds = time.perf_counter() - start
removed = []
for root, _, files in os.walk(f"{work}/removed"):
    for name in files:
        with open(os.path.join(root, name)) as handle:
            removed += [json.loads(line)["id"] for line in handle]
print(json.dumps({"seconds": seconds, "removed": removed}))
