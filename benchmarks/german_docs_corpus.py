"""A German prose corpus beyond the Bible's domain (issue #30, item 5), from Debian's German
documentation and text packages: the LibreOffice help (``libreoffice-help-de``, HTML), the
Debian Reference (``debian-reference-de``, HTML) and the German fortunes (``fortunes-de``,
plain text). ``make german-docs`` installs them (opt-in: CI does not need them) and runs
this script.

HTML -> paragraphs with the standard library's ``html.parser``: the text of each block
element (p, li, dd, td-free headings are dropped), nothing inside script, style, pre,
code-like, table, navigation or header elements; a paragraph that is mostly inline code,
short (under 8 words or 60 characters), not mostly letters, or not German (py3langid, a
project dependency) is dropped; exact duplicates (whitespace and case folded) are dropped.
A fortune is one paragraph (its lines joined), the ASCII-art file skipped.

Held-out by source page: every paragraph of one HTML page goes to the same side (``test``
for ~10% of pages by the sha256 of their path), so near-copies of a page's text never
straddle train and test; a fortune is its own page. Each file is written in the sha256
order of its texts, so its first N lines (an evaluation set scores the first
``eval_texts``) mix the three sources. Writes ``artifacts/german_docs/train.txt`` and
``test.txt`` (a paragraph a line) and ``stats.json``.

    .venv/bin/python benchmarks/german_docs_corpus.py [--out artifacts/german_docs]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

SOURCES = {
    "libreoffice-help-de": (Path("/usr/share/libreoffice/help/de"), "**/*.html"),
    "debian-reference-de": (Path("/usr/share/debian-reference"), "*.de.html"),
    "fortunes-de": (Path("/usr/share/games/fortunes/de"), "*"),
}
BLOCKS = {"p", "li", "dd", "blockquote", "div"}
SKIP = {"script", "style", "pre", "table", "nav", "header", "aside", "head", "noscript", "title", "button",
        "h1", "h2", "h3", "h4", "h5", "h6", "dt", "code", "kbd", "samp", "var"}
# inline elements whose text is a command, file name or key, not prose
CODE_CLASSES = re.compile(r"\b(literal|command|filename|userinput|computeroutput|code|keycap|option|replaceable)\b")
MIN_WORDS, MIN_CHARS = 8, 60
TEST_SHARE = 0.10
SKIP_FORTUNES = {"asciiart"}


class _Paragraphs(HTMLParser):
    """Collects the text of block elements, outside skipped ones; counts inline code."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[tuple[str, int]] = []  # (text, characters inside inline code)
        self._skip = 0
        self._code = 0
        self._parts: list[str] = []
        self._code_chars = 0
        self._stack: list[tuple[str, bool, bool]] = []  # (tag, skipping, code)

    def _flush(self) -> None:
        text = " ".join("".join(self._parts).split())
        if text:
            self.paragraphs.append((text, self._code_chars))
        self._parts, self._code_chars = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "hr", "meta", "link", "input"):
            return
        classes = dict(attrs).get("class") or ""
        skipping = tag in SKIP
        code = bool(CODE_CLASSES.search(classes)) or tag in ("tt",)
        if tag in BLOCKS and not self._skip:
            self._flush()
        self._stack.append((tag, skipping, code))
        self._skip += skipping
        self._code += code

    def handle_endtag(self, tag):
        while self._stack:  # HTML need not close what it opens: pop to the matching tag
            open_tag, skipping, code = self._stack.pop()
            self._skip -= skipping
            self._code -= code
            if open_tag == tag:
                break
        if tag in BLOCKS and not self._skip:
            self._flush()

    def handle_data(self, data):
        if self._skip:
            return
        self._parts.append(data)
        if self._code:
            self._code_chars += len(data.strip())

    def close(self):
        super().close()
        self._flush()


def html_paragraphs(path: Path) -> Iterator[str]:
    parser = _Paragraphs()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    for text, code_chars in parser.paragraphs:
        if code_chars <= 0.2 * len(text):
            yield text


def fortunes(path: Path) -> Iterator[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        # a fortune's quoted attribution line ("-- Name") is not prose of its own
        lines = [line for line in entry.splitlines() if not line.strip().startswith("--")]
        joined = " ".join(" ".join(lines).split())
        if joined:
            yield joined


def prose(text: str) -> bool:
    """Long enough, mostly letters, no code-like symbols."""
    if len(text) < MIN_CHARS or len(text.split()) < MIN_WORDS:
        return False
    letters = sum(ch.isalpha() for ch in text)
    symbols = sum(ch in "{}[]<>=;$|\\_#@" for ch in text)
    return letters >= 0.7 * len(text.replace(" ", "")) and symbols <= 0.02 * len(text)


def documents() -> Iterator[tuple[str, str, str]]:
    """(source package, paragraph, page) for every paragraph of every source page (a
    fortune is a page of its own)."""
    for name, (root, pattern) in SOURCES.items():
        if not root.is_dir():
            raise SystemExit(f"{root} is missing: install the Debian package {name} (make german-docs)")
        for path in sorted(root.glob(pattern)):
            if not path.is_file() or path.is_symlink() or path.suffix in (".dat", ".u8", ".js"):
                continue
            if name == "fortunes-de":
                if path.name in SKIP_FORTUNES:
                    continue
                texts = fortunes(path)
            else:
                texts = html_paragraphs(path)
            for text in texts:
                yield name, text, f"{path}:{text}" if name == "fortunes-de" else str(path)


def _unit(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def is_test_page(page: str) -> bool:
    return _unit(page) < TEST_SHARE


def build(out: Path) -> dict:
    import py3langid

    seen: set[str] = set()
    kept: dict[str, list[str]] = {"train": [], "test": []}
    stats: dict = {"sources": {}, "dropped": {"short_or_not_prose": 0, "duplicate": 0, "not_german": 0}}
    for name, text, path in documents():
        source = stats["sources"].setdefault(name, {"paragraphs": 0, "kept": 0, "bytes": 0})
        source["paragraphs"] += 1
        if not prose(text):
            stats["dropped"]["short_or_not_prose"] += 1
            continue
        folded = " ".join(text.casefold().split())
        if folded in seen:
            stats["dropped"]["duplicate"] += 1
            continue
        seen.add(folded)
        if py3langid.classify(text)[0] != "de":
            stats["dropped"]["not_german"] += 1
            continue
        source["kept"] += 1
        source["bytes"] += len(text.encode())
        kept["test" if is_test_page(path) else "train"].append(text)
    out.mkdir(parents=True, exist_ok=True)
    for split, texts in kept.items():
        texts.sort(key=_unit)
        tmp = out / f".{split}.txt.tmp"
        tmp.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        tmp.replace(out / f"{split}.txt")
        stats[split] = {"paragraphs": len(texts), "bytes": sum(len(t.encode()) + 1 for t in texts)}
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/german_docs"))
    args = parser.parse_args()
    print(json.dumps(build(args.out), indent=2))


if __name__ == "__main__":
    main()
