#!/usr/bin/env bash
# Builds the corpus that ships in data/corpus/ from Debian packages of public-domain text:
#   data/corpus/train.jsonl.zst   the training documents
#   data/corpus/eval.jsonl.zst    held-out documents (about 3 %, chosen by a hash of the id)
# One JSON object per line: id, source, title, license, package, path, text (data/README.md).
#
# Sources: the King James Bible (bible-kjv-text, read with bible-kjv's `bible`), the Jargon File
# 4.4.7 (jargon-text) and the SQLite documentation (sqlite3-doc, HTML converted to text with the
# navigation, scripts and syntax diagrams dropped). Nothing is installed: the packages are
# downloaded with `apt-get download` and unpacked into a temporary directory. Needs apt's package
# lists (`apt-get update` once), dpkg-deb, python3 and zstd.
#
# The output is deterministic: the same package versions and zstd version give the same bytes
# (data/README.md records both, and the SHA-256 of each file).
#
# Usage: tools/make-corpus.sh [OUTPUT_DIR]     (default: data/corpus in this repository)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
output=${1:-$repo/data/corpus}
python=/usr/bin/python3
[ -x "$python" ] || python=python3
for tool in apt-get dpkg-deb zstd "$python"; do
    command -v "$tool" >/dev/null || { echo "make-corpus: $tool is missing" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
packages=(bible-kjv bible-kjv-text jargon-text sqlite3-doc)
if ! (cd "$work" && apt-get download "${packages[@]}" >"$work/download.log" 2>&1); then
    cat "$work/download.log" >&2
    echo "make-corpus: apt-get download failed; run 'apt-get update' first" >&2
    exit 1
fi
versions="{"
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$work/root"
    name=$(dpkg-deb -f "$deb" Package)
    version=$(dpkg-deb -f "$deb" Version)
    versions+="\"$name\": \"$version\", "
    echo "make-corpus: $name $version"
done
versions="${versions%, }}"

"$work/root/usr/bin/bible" -p "$work/root/usr/lib" -l100000 'Gen1:1-Rev22:21' </dev/null >"$work/kjv.txt"
gzip -dc "$work/root/usr/share/doc/jargon-text/jargon.txt.gz" >"$work/jargon.txt"

"$python" - "$work/root" "$work/kjv.txt" "$work/jargon.txt" "$work/out" "$versions" <<'PYTHON'
import hashlib, html, html.parser, json, os, re, sys, unicodedata

root, kjv_text, jargon_text, out_dir, versions_json = sys.argv[1:6]
versions = json.loads(versions_json)
LICENSE = "public-domain"

def tidy(text):
    """Normalizes line ends and runs of blank lines; strips trailing spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n") + "\n"

def slug(text):
    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()
    return s or "x"

documents = []
def add(id, source, package, path, title, text):
    documents.append({"id": id, "source": source, "license": LICENSE, "package": package,
                      "path": path, "title": title, "text": tidy(text)})

# --- King James Bible: one document per chapter, from `bible Gen1:1-Rev22:21`. ---------------
# Parallel passages (2 Kings / 2 Chronicles, the synoptic gospels, Psalms 14 / 53 and 18 /
# 2 Samuel 22) are natural near-duplicates, kept on purpose.
KJV_BOOKS = ["Genesis", "Ruth", "2 Kings", "2 Chronicles", "Psalms", "Jonah", "Matthew", "Mark", "Luke"]
kjv_package = "bible-kjv-text " + versions["bible-kjv-text"]
chapters = []
current = None
for line in open(kjv_text, encoding="utf-8"):
    line = line.rstrip("\n")
    m = re.fullmatch(r"((?:[1-3] )?[A-Z][A-Za-z ]*?) (\d+)", line)
    if m:
        current = [m.group(1), int(m.group(2)), []]
        chapters.append(current)
    elif current is not None and line.strip():
        v = re.fullmatch(r"\s*(\d+) (.*)", line)
        if not v:
            sys.exit(f"unexpected KJV line: {line!r}")
        current[2].append(f"{v.group(1)} {v.group(2).strip()}")
for book, number, verses in chapters:
    if book not in KJV_BOOKS:
        continue
    title = f"{book} {number}"
    add(f"kjv-{slug(book)}-{number:03d}", "kjv-bible", kjv_package, title, title,
        title + "\n\n" + "\n".join(verses))

# --- Jargon File 4.4.7: chapters, appendix sections and lexicon entries. ----------------------
jargon_package = "jargon-text " + versions["jargon-text"]
lines = open(jargon_text, encoding="utf-8").read().split("\n")
lines = [l.replace("\u00a0", " ") if not l.startswith(" ") else l for l in lines]  # NBSP in headings
def dedent(block):
    return "\n".join(l[3:] if l.startswith("   ") else l for l in block)
heading = re.compile(r"^[^\s│├┌└].*$")
entry = re.compile(r"^   :([^:]+(?::[^:]+)*?):(.*)$")
glossary_start = next(i for i, l in enumerate(lines) if l == "Glossary")
first_entry = next(i for i, l in enumerate(lines) if entry.match(l))
appendix_a = next(i for i, l in enumerate(lines) if l.startswith("Appendix A."))
# Front matter: Chapter 1..12 as documents (up to "Part II").
part2 = next(i for i, l in enumerate(lines) if l.replace("\u00a0", " ").strip() == "Part II. The Jargon Lexicon")
starts = [i for i in range(0, part2) if lines[i].startswith("Chapter ")]
for k, s in enumerate(starts):
    e = starts[k + 1] if k + 1 < len(starts) else part2
    title = lines[s].strip()
    body = dedent(lines[s + 1:e])
    if "┌" in body or "│" in body:     # the revision-history table: box drawing, not prose
        body = "\n".join(l for l in body.split("\n") if not re.search(r"[┌│├└┬┼┴─]", l))
    add(f"jargon-{slug(title)}", "jargon-file", jargon_package, "jargon.txt", title, title + "\n\n" + body)
# Lexicon entries between the first ":term:" line and Appendix A.
starts = [i for i in range(first_entry, appendix_a) if entry.match(lines[i])]
seen = {}
for k, s in enumerate(starts):
    e = starts[k + 1] if k + 1 < len(starts) else appendix_a
    block = lines[s:e]
    # Drop interleaved letter headings and cartoon captions that are not part of the entry.
    while block and (not block[-1].strip() or re.fullmatch(r"\s*= [A-Z0-9] =\s*", block[-1]) or block[-1].strip() in {"Glossary", "Table of Contents"}):
        block.pop()
    m = entry.match(block[0])
    term = m.group(1)
    body = dedent(block)
    text = body.lstrip()
    key = slug(term)
    seen[key] = seen.get(key, 0) + 1
    id = f"jargon-{key}" if seen[key] == 1 else f"jargon-{key}-{seen[key]}"
    documents.append({"id": id, "source": "jargon-file", "license": LICENSE, "package": jargon_package,
                      "path": "jargon.txt", "title": term, "text": tidy(text)})
# Appendices: each section (a heading line at column 0) a document.
starts = [i for i in range(appendix_a, len(lines)) if heading.match(lines[i]) and not lines[i].startswith("Bibliography")]
bibliography = next(i for i, l in enumerate(lines) if l.startswith("Bibliography"))
for k, s in enumerate(starts):
    e = starts[k + 1] if k + 1 < len(starts) else bibliography
    if s >= bibliography:
        break
    title = lines[s].strip()
    body = dedent(lines[s + 1:e]).strip()
    if len(body) < 200:
        continue
    add(f"jargon-{slug(title)}", "jargon-file", jargon_package, "jargon.txt", title, title + "\n\n" + body)

# --- SQLite documentation: HTML pages to text (navigation, scripts and diagrams dropped). ------
class Extract(html.parser.HTMLParser):
    BLOCK = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "pre", "br", "tr", "blockquote",
             "dt", "dd", "table", "ul", "ol", "dl", "hr"}
    SKIP = {"script", "style", "svg", "head", "form", "select", "button"}
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip_depth, self.nosearch_depth, self.div_depth, self.pre = [], 0, None, 0, 0
        self.title, self.in_title, self.small = "", False, 0
    def skipping(self):
        return self.skip_depth or self.nosearch_depth is not None or self.small
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "title": self.in_title = True
        if tag == "div":
            self.div_depth += 1
            if self.nosearch_depth is None and a.get("class") in ("nosearch", "fancy_toc", "menu mainmenu"):
                self.nosearch_depth = self.div_depth
        if tag in self.SKIP: self.skip_depth += 1
        if tag == "small": self.small += 1
        if tag == "pre": self.pre += 1
        if self.skipping(): return
        if tag in self.BLOCK: self.out.append("\n\n" if tag in ("p", "pre", "h1", "h2", "h3", "h4", "table", "blockquote") else "\n")
        if tag == "li": self.out.append("- ")
        if tag in ("td", "th"): self.out.append(" ")
    def handle_endtag(self, tag):
        if tag == "title": self.in_title = False
        if tag in self.SKIP: self.skip_depth = max(0, self.skip_depth - 1)
        if tag == "small": self.small = max(0, self.small - 1)
        if tag == "pre": self.pre = max(0, self.pre - 1)
        if tag == "div":
            if self.nosearch_depth == self.div_depth: self.nosearch_depth = None
            self.div_depth -= 1
        if self.skipping(): return
        if tag in self.BLOCK: self.out.append("\n\n" if tag == "pre" else "\n")
    def handle_data(self, data):
        if self.in_title: self.title += data; return
        if self.skipping(): return
        if self.pre: self.out.append(data)
        else: self.out.append(re.sub(r"\s+", " ", data))
    def text(self):
        raw = "".join(self.out)
        lines = [l.strip() if not l.startswith("    ") else l.rstrip() for l in raw.split("\n")]
        return "\n".join(lines)

def sqlite_text(path):
    parser = Extract()
    parser.feed(open(path, encoding="utf-8", errors="replace").read())
    title = re.sub(r"\s+", " ", parser.title).strip()
    body = parser.text()
    body = re.sub(r"\n[ \t]+\n", "\n\n", body)
    body = re.sub(r"(?m)^-[ \t]*\n+(?=\S)", "- ", body)   # "<li><p>text" as one bullet line
    # Syntax-diagram captions ("create-table-stmt:") whose diagram (SVG) was dropped.
    body = "\n".join(l for l in body.split("\n") if not re.fullmatch(r"[a-z0-9-]+:", l.strip()))
    body = body.strip()
    if body.startswith(title):
        body = body[len(title):]
    return title, body

sqlite_package = "sqlite3-doc " + versions["sqlite3-doc"]
sqlite_root = os.path.join(root, "usr/share/doc/sqlite3")
SQLITE_SKIP = {"changes.html", "chronology.html", "docs.html", "sitemap.html", "keyword_index.html",
               "toc.html", "capi3ref.html", "index.html", "news.html", "doclist.html", "c3ref/objlist.html",
               "c3ref/funclist.html", "c3ref/constlist.html", "session/objlist.html",
               "session/funclist.html", "session/constlist.html", "fileformat.html", "fileformat2.html",
               "testing.html", "cves.html", "pragma.html", "lang_select.html"}
pages = []
for dirpath, dirnames, filenames in os.walk(sqlite_root):
    dirnames.sort()
    for name in sorted(filenames):
        if name.endswith(".html"):
            rel = os.path.relpath(os.path.join(dirpath, name), sqlite_root)
            if rel.split("/")[0] in ("syntax", "search.d"):
                continue
            pages.append(rel)
for rel in sorted(pages):
    if rel in SQLITE_SKIP:
        continue
    title, body = sqlite_text(os.path.join(sqlite_root, rel))
    if len(body) < 300:
        continue
    add("sqlite-" + slug(rel[:-5].replace("/", "-")), "sqlite-docs", sqlite_package, rel, title,
        title + "\n\n" + body.strip())

# --- Select, split and write. -------------------------------------------------------------------
JARGON_MIN_BYTES = 800      # most lexicon entries are a line or two; keep the ones with prose
SQLITE_MAX_BYTES = 10000    # the long pages (requirements, cross references, fts5) would dominate
def keep(d):
    size = len(d["text"].encode())
    if d["source"] == "jargon-file":
        return size >= JARGON_MIN_BYTES
    if d["source"] == "sqlite-docs":
        return size <= SQLITE_MAX_BYTES
    return True
documents = [d for d in documents if keep(d)]
ids = [d["id"] for d in documents]
assert len(ids) == len(set(ids)), "duplicate document ids"

def is_eval(d):   # about 3 % of the documents, chosen by a hash of the id (stable, order-free)
    return int(hashlib.sha256(d["id"].encode()).hexdigest()[:8], 16) % 100 < 3
KEYS = ["id", "source", "title", "license", "package", "path", "text"]
os.makedirs(out_dir, exist_ok=True)
summary = {}
for split in ("train", "eval"):
    chosen = [d for d in documents if is_eval(d) == (split == "eval")]
    with open(os.path.join(out_dir, split + ".jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for d in chosen:
            f.write(json.dumps({k: d[k] for k in KEYS}, ensure_ascii=False, separators=(",", ":")) + "\n")
    for d in chosen:
        s = summary.setdefault(split, {}).setdefault(d["source"], [0, 0])
        s[0] += 1
        s[1] += len(d["text"].encode())
for split, sources in summary.items():
    for source, (count, size) in sorted(sources.items()):
        print(f"{split:5} {source:11} {count:5} documents {size:9} bytes of text")
PYTHON

mkdir -p "$output"
for split in train eval; do
    zstd -19 -q -f "$work/out/$split.jsonl" -o "$output/$split.jsonl.zst"
done
echo "make-corpus: $(zstd --version)"
(cd "$output" && sha256sum train.jsonl.zst eval.jsonl.zst && ls -l train.jsonl.zst eval.jsonl.zst)
wc -c "$work/out/train.jsonl" "$work/out/eval.jsonl"
