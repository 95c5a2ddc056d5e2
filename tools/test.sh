#!/usr/bin/env bash
# The second command of the README: installs what is missing, builds, and runs every test
# (unit tests, and multi-rank tests that launch the built binaries under mpirun -np 2…8).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# Python peers for the parity checks (tokenizers); without PyPI those tests skip and say why.
bash tools/setup-python.sh >/dev/null 2>&1 || echo "tools/test.sh: Python peers unavailable; the tokenizer parity test will skip"
bash tools/setup-openai-client.sh >/dev/null 2>&1 || echo "tools/test.sh: the openai client is unavailable; its server test will skip"
source tools/env.sh
start=$(date +%s)
log=$(mktemp)
echo "== build (debug, with tests)"
if ! swift build --build-tests >"$log" 2>&1; then
    grep -E 'error|warning' "$log" | head -50 || tail -50 "$log"
    echo "tools/test.sh: build failed" >&2
    exit 1
fi
echo "build took $(( $(date +%s) - start )) s"
echo "== swift test"
status=0
swift test --skip-build || status=$?
echo "tools/test.sh: build and tests took $(( $(date +%s) - start )) s"
rm -f "$log"
exit "$status"
