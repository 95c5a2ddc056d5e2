#!/usr/bin/env bash
# Fuzzes the parsers that read user bytes (docs/fuzzing.md), one harness at a time, each for a
# bounded time, with libFuzzer and address sanitizer.
#
#   bash tools/fuzz.sh [HARNESS...] [--seconds N] [--runs N] [--malloc-limit-mb N] [--build-only]
#
# HARNESS: jsonl html tokenizer-json config safetensors checkpoint-index manifest hdf5-metadata
# openai-request chat-template (default: all). --seconds: time per harness (default 60).
# --runs: stop a harness after N executions instead (whichever comes first). --malloc-limit-mb:
# the largest single allocation before libFuzzer calls it out-of-memory (default 2048; libhdf5
# allocates what a damaged object header declares before checking it: docs/fuzzing.md).
#
# The driver `meshlm-fuzz` is built in .build-fuzz (its own scratch path: the normal build and
# tools/test.sh never see it) with MESHLM_FUZZ=1, which adds its target to Package.swift. Each
# harness starts from its seeds (Fuzz/corpus/HARNESS, matching files of the repository, and the
# saved regression inputs) and keeps what it learns in .build-fuzz/corpus/HARNESS for the next
# run. A crash, hang (-timeout), leak or out-of-memory input is minimized and saved as
# Tests/FuzzRegressionTests/Inputs/HARNESS/KIND-SHA1, which `swift test` runs from then on. One
# line per harness goes to stdout and to .build-fuzz/results.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source tools/env.sh

all=(jsonl html tokenizer-json config safetensors checkpoint-index manifest hdf5-metadata openai-request chat-template)
harnesses=()
seconds=60
runs=-1
malloc_limit=2048
build_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --malloc-limit-mb) malloc_limit="$2"; shift 2 ;;
        --build-only) build_only=1; shift ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "tools/fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *)
            if [[ " ${all[*]} " != *" $1 "* ]]; then
                echo "tools/fuzz.sh: no harness '$1' (one of: ${all[*]})" >&2; exit 2
            fi
            harnesses+=("$1"); shift ;;
    esac
done
[ ${#harnesses[@]} -gt 0 ] || harnesses=("${all[@]}")

runtime_dir=$(dirname "$(command -v swift)")/../lib/swift/clang/lib/linux
fuzzer_lib=$(cd "$runtime_dir" 2>/dev/null && pwd)/libclang_rt.fuzzer_no_main-x86_64.a
if [ ! -f "$fuzzer_lib" ]; then
    echo "tools/fuzz.sh: libFuzzer is not in this toolchain (no $fuzzer_lib)" >&2; exit 1
fi

scratch="$root/.build-fuzz"
echo "== build meshlm-fuzz (address sanitizer, coverage) in $scratch"
log=$(mktemp)
# Coverage for Swift (ours and the packages' code, Yams included) and C targets; -O stays.
if ! MESHLM_FUZZ=1 MESHLM_FUZZER_LIB="$fuzzer_lib" nice -n 10 swift build --scratch-path "$scratch" --product meshlm-fuzz \
        --sanitize address \
        -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table \
        -Xcc -fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp >"$log" 2>&1; then
    grep -E "error" "$log" | head -30 || tail -30 "$log"
    echo "tools/fuzz.sh: build failed" >&2
    exit 1
fi
rm -f "$log"
driver="$scratch/debug/meshlm-fuzz"
[ "$build_only" -eq 0 ] || { echo "built $driver"; exit 0; }

# Repository files that make good seeds, per harness (besides Fuzz/corpus/HARNESS).
seed_files() {
    case "$1" in
        jsonl) find data/sft data/preference -name '*.jsonl' ;;
        html) find data/html -name '*.html' ;;
        config) find configs -name '*.yaml' ;;
        chat-template) find Tests/DataPipelineTests/Fixtures/chat_templates -name '*.jinja' ;;
        safetensors) find Tests/ModelTests/Fixtures -name '*.safetensors' -size -64k ;;
        *) ;;
    esac
}

# The final stats libFuzzer prints with -print_final_stats=1.
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

results="$scratch/results.tsv"
[ -f "$results" ] || printf 'date\tharness\tseconds\texecutions\texec_per_s\tcorpus_files\tpeak_rss_mb\tfindings\n' >"$results"
status=0
for harness in "${harnesses[@]}"; do
    corpus="$scratch/corpus/$harness"
    seeds="$scratch/seeds/$harness"
    findings="$scratch/findings/$harness"
    saved="$root/Tests/FuzzRegressionTests/Inputs/$harness"
    rm -rf "$seeds" "$findings"
    mkdir -p "$corpus" "$seeds" "$findings" "$saved"
    cp -f Fuzz/corpus/"$harness"/* "$seeds"/ 2>/dev/null || true
    cp -f "$saved"/* "$seeds"/ 2>/dev/null || true
    while read -r file; do
        [ -n "$file" ] && head -c 65536 "$file" >"$seeds/$(echo "$file" | tr '/' '_')"
    done < <(seed_files "$harness")
    limit="$seconds s"; [ "$runs" -lt 0 ] || limit="$limit or $runs runs"
    echo "== $harness: $limit from $(ls "$corpus" | wc -l) corpus files and $(ls "$seeds" | wc -l) seeds"
    out="$findings/fuzz.log"
    started=$(date +%s)
    # -rss_limit_mb and -malloc_limit_mb: an input may not make a parser take more than 2 GB.
    # -timeout: 10 s for one input is a hang. The scratch directory is the working directory, so
    # a config's include of a relative path reads nothing of the repository's.
    # SWIFT_BACKTRACE: libFuzzer reports a trap itself; Swift's backtracer, run under ASan, adds
    # a second, false report from its own memory reader. Fuzz/lsan.supp: leaks inside libhdf5.
    (cd "$findings" && MESHLM_FUZZ_HARNESS="$harness" SWIFT_BACKTRACE=enable=no \
        ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" LSAN_OPTIONS="suppressions=$root/Fuzz/lsan.supp:print_suppressions=0" \
        nice -n 10 "$driver" -max_total_time="$seconds" -runs="$runs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb="$malloc_limit" \
        -max_len=8192 -len_control=100 -use_value_profile=1 -print_final_stats=1 -artifact_prefix="$findings/" \
        "$corpus" "$seeds") >"$out" 2>&1 || true
    elapsed=$(( $(date +%s) - started ))
    artifacts=$(find "$findings" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'leak-*' -o -name 'oom-*' -o -name 'slow-unit-*' \) | sort)
    count=0
    for artifact in $artifacts; do
        kind=$(basename "$artifact" | cut -d- -f1)
        [ "$kind" = slow ] && continue
        count=$((count + 1))
        minimized="$artifact.min"
        (cd "$findings" && MESHLM_FUZZ_HARNESS="$harness" SWIFT_BACKTRACE=enable=no \
            LSAN_OPTIONS="suppressions=$root/Fuzz/lsan.supp:print_suppressions=0" nice -n 10 "$driver" -minimize_crash=1 -max_total_time=30 \
            -timeout=10 -rss_limit_mb=2048 -exact_artifact_path="$minimized" "$artifact") >"$artifact.minimize.log" 2>&1 || true
        [ -s "$minimized" ] || cp "$artifact" "$minimized"
        name="$kind-$(sha1sum "$minimized" | cut -c1-12)"
        cp "$minimized" "$saved/$name"
        echo "   $kind: saved as Tests/FuzzRegressionTests/Inputs/$harness/$name ($(wc -c <"$minimized") bytes); log $out"
        grep -m3 -E "ERROR: |Fatal error|meshlm-fuzz: .* threw" "$out" | sed 's/^/     /' || true
    done
    executions=$(stat number_of_executed_units "$out")
    rate=$(stat average_exec_per_sec "$out")
    rss=$(stat peak_rss_mb "$out")
    files=$(ls "$corpus" | wc -l)
    if [ -z "$executions" ]; then
        echo "   no final stats (the driver failed to start?); see $out"
        tail -5 "$out" | sed 's/^/     /'
        status=1
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$harness" "$elapsed" "${executions:-?}" "${rate:-?}" "$files" "${rss:-?}" "$count" >>"$results"
    printf '   %-17s %5s s %12s execs  %8s exec/s  %6s corpus files  %6s MB peak  %d findings\n' \
        "$harness" "$elapsed" "${executions:-?}" "${rate:-?}" "$files" "${rss:-?}" "$count"
    [ "$count" -eq 0 ] || status=1
done
exit "$status"
