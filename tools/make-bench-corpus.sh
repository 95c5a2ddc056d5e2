#!/usr/bin/env bash
# A larger real corpus for tokenizer benchmarks (~45 MB of text as JSONL), never committed:
# the shipped corpus (data/corpus) plus the Python 3.11 documentation sources (reST), the
# PostgreSQL 15 and Django documentation (HTML → text) from Debian packages
# (docs/benchmarks.md). Downloads with `apt-get download` (run `apt-get update` once).
#
# Usage: tools/make-bench-corpus.sh [OUTPUT.jsonl]    (default /tmp/meshlm-bench-corpus.jsonl)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
output=${1:-/tmp/meshlm-bench-corpus.jsonl}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
packages=(python3.11-doc postgresql-doc-15 python-django-doc)
(cd "$work" && apt-get download "${packages[@]}" >"$work/download.log" 2>&1) || {
    cat "$work/download.log" >&2; echo "make-bench-corpus: apt-get download failed; run 'apt-get update' first" >&2; exit 1; }
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
for split in train eval; do zstd -dc "$repo/data/corpus/$split.jsonl.zst"; done >"$work/out.jsonl"
python3 - "$work/root" >>"$work/out.jsonl" <<'PYTHON'
import html.parser, json, os, re, sys
root = sys.argv[1]

class Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0
    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "nav"): self.skip += 1
        if tag in ("p", "div", "br", "li", "h1", "h2", "h3", "pre", "tr"): self.parts.append("\n")
    def handle_endtag(self, tag):
        if tag in ("script", "style", "nav"): self.skip = max(0, self.skip - 1)
    def handle_data(self, data):
        if not self.skip: self.parts.append(data)

for base, suffix in (("usr/share/doc/python3.11/html/_sources", ".txt"), ("usr/share/doc/postgresql-doc-15/html", ".html"),
                     ("usr/share/doc/python-django-doc/html", ".html")):
    for directory, _, names in sorted(os.walk(os.path.join(root, base))):
        for name in sorted(names):
            if not name.endswith(suffix): continue
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as handle:
                text = handle.read()
            if suffix == ".html":
                parser = Text(); parser.feed(text); text = re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()
            if text: print(json.dumps({"text": text}, ensure_ascii=False))
PYTHON
mv "$work/out.jsonl" "$output"
echo "make-bench-corpus: $(wc -l <"$output") documents, $(du -m "$output" | cut -f1) MB in $output"
