#!/usr/bin/env bash
# Builds llama.cpp's `llama-bench`, the decode peer of
# docs/benchmarks.md, from the source that PyPI's llama-cpp-python sdist vendors (llama.cpp is
# not packaged in Debian 12). Installs cmake from Debian if missing; ~7 minutes on 2 cores.
#
#   bash tools/setup-llama-cpp.sh [PREFIX]     (default PREFIX: /tmp/llama-cpp)
#
# Leaves PREFIX/bin/llama-bench (linked to the libraries in PREFIX/build/bin), the llama.cpp
# sources in PREFIX/src (gguf-py, models/ggml-vocab-*.gguf) and a Python venv for
# tools/bench-decode-llamacpp.py in PREFIX/venv. Reruns reuse what is already built.
set -euo pipefail
prefix=${1:-/tmp/llama-cpp}
version=0.3.36
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
mkdir -p "$prefix"
cd "$prefix"

if [ -x bin/llama-bench ] && [ -d src/gguf-py ] && venv/bin/python -c "import numpy, yaml, safetensors" 2>/dev/null; then
    echo "llama.cpp already built in $prefix"
    exit 0
fi

if ! command -v cmake >/dev/null; then
    apt-get install -y cmake >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y cmake >/dev/null; }
fi

archive=llama_cpp_python-$version.tar.gz
if [ ! -f "$archive" ]; then
    # The simple index names the file with its hash; pip download would try to build the sdist.
    url=$(curl -fsSL https://pypi.org/simple/llama-cpp-python/ | grep -o "https://[^\"#]*$archive" | head -1)
    [ -n "$url" ] || { echo "error: llama-cpp-python $version is not on the PyPI index" >&2; exit 1; }
    curl -fsSL -o "$archive.partial" "$url"
    echo "$sha256  $archive.partial" | sha256sum -c --quiet - || { echo "error: $archive checksum mismatch" >&2; exit 1; }
    mv "$archive.partial" "$archive"
fi

rm -rf src && mkdir src
tar -xzf "$archive" --strip-components=3 -C src "llama_cpp_python-$version/vendor/llama.cpp"

cmake -S src -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build build -j "$(nproc)" --target llama-bench >/dev/null
mkdir -p bin && cp build/bin/llama-bench bin/

# tools/bench-decode-llamacpp.py writes the GGUF itself with the gguf-py that llama.cpp vendors
# (src/gguf-py), so the venv needs only these (not the converter's torch).
rm -rf venv
python3 -m venv venv
venv/bin/pip install -q numpy pyyaml safetensors >/dev/null
echo "llama.cpp $version built: $prefix/bin/llama-bench"
