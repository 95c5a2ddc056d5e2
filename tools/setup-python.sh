#!/usr/bin/env bash
# The Python peers of the tokenizer checks and benchmarks, in a venv (default /tmp/venv-tokenizer):
# Hugging Face `tokenizers` (parity, tools/check-tokenizer-parity.py; ~3 MB wheel, a few seconds)
# and, with --bench, tiktoken + the litellm wheel whose files hold tiktoken's vocabularies
# (tools/bench-tokenizer.sh; tiktoken cannot download them offline).
set -euo pipefail
venv=${MESHLM_TOKENIZER_VENV:-/tmp/venv-tokenizer}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "tokenizers==0.23.*"
if [ "${1:-}" = "--bench" ]; then
    "$venv/bin/pip" install --quiet tiktoken
    "$venv/bin/pip" download --quiet --no-deps litellm -d "$venv/wheels"
fi
echo "ready: $venv/bin/python"
