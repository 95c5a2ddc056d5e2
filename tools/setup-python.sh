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
    # tiktoken's cache files are named by the SHA-1 of their download URL; litellm ships them so.
    "$venv/bin/python" - "$venv" <<'PYTHON'
import glob, os, sys, zipfile
venv = sys.argv[1]
os.makedirs(os.path.join(venv, "tiktoken-cache"), exist_ok=True)
with zipfile.ZipFile(sorted(glob.glob(os.path.join(venv, "wheels", "litellm-*.whl")))[-1]) as wheel:
    for name in wheel.namelist():
        base = os.path.basename(name)
        if "/tokenizers/" in name and len(base) == 40 and all(c in "0123456789abcdef" for c in base):
            with open(os.path.join(venv, "tiktoken-cache", base), "wb") as out:
                out.write(wheel.read(name))
PYTHON
    echo "tiktoken vocabularies: TIKTOKEN_CACHE_DIR=$venv/tiktoken-cache"
fi
echo "ready: $venv/bin/python"
