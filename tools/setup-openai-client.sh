#!/usr/bin/env bash
# Installs the official `openai` Python client into a venv for ServerTests'
# officialOpenAIClientAndLoad test (which is skipped, saying why, when no such python exists).
#
#   tools/setup-openai-client.sh [VENV]        # default /tmp/venv-openai (where the test looks)
#
# Another location works too: export MESHLM_OPENAI_PYTHON=VENV/bin/python before swift test.
set -euo pipefail
venv=${1:-/tmp/venv-openai}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q openai
"$venv/bin/python" -c 'import openai; print("setup-openai-client: openai", openai.__version__, "in '"$venv"'")'
