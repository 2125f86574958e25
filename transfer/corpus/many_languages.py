"""The corpus stage of a run of several target languages (issue #29; ``languages.py``).

Each language is split on its own, exactly as a run of that language alone would split it
(by verse key or document hash), into ``{train,dev,test}.<lang>.txt`` and its evaluation
files ``<split>.target.<lang>.txt`` (``<split>.source.<lang>.txt``: the same verses in the
source language). The run's ``train.txt``, which the tokenizer, the target vectors and the
trainer read, is sampled from the languages' train lines with the exponent of XLM-R and
Glot500: language i's share of the bytes is

    q_i = n_i^alpha / sum_j n_j^alpha      (n_i: its train bytes, alpha = language_sampling_alpha)

at the same total size: each line of language i is written ``floor(r_i)`` times plus once
more when ``key_unit(seed:lang:index) < frac(r_i)``, with ``r_i = q_i * N / n_i``, so a
small language is repeated and a large one thinned, deterministically. ``dev.txt`` and
``test.txt`` hold every language's held-out text as split; ``<split>.target.txt`` takes the
languages' evaluation texts in turn (the learning curve's first texts cover every language)
and ``<split>.source.txt`` is the first language with a Bible's. The train sentence pairs of
each language (its parallel files, else its first Bible with each ``source_train_bible``)
go into the one ``parallel.train.tsv``, so a token the languages share collects the links
of each. ``languages.json`` records each language's sizes and its natural, target and
written shares.
"""

from __future__ import annotations

import bisect
import itertools
import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from transfer.corpus.splits import SPLITS, SplitFractions, key_unit
from transfer.engine.stages import write_json

LANGUAGES_FILE = "languages.json"
PARALLEL_TRAIN = "parallel.train.tsv"  # the corpus stage's


def sampling_shares(sizes: dict[str, int], alpha: float) -> dict[str, float]:
    """q_i = n_i^alpha / sum_j n_j^alpha (languages without text get none)."""
    weights = {lang: float(n) ** alpha if n > 0 else 0.0 for lang, n in sizes.items()}
    total = sum(weights.values())
    return {lang: (w / total if total else 0.0) for lang, w in weights.items()}


def repeat_rates(sizes: dict[str, int], alpha: float) -> dict[str, float]:
    """r_i = q_i * N / n_i: how many times each line of language i is written, on average."""
    shares = sampling_shares(sizes, alpha)
    total = sum(sizes.values())
    return {lang: (shares[lang] * total / n if n else 0.0) for lang, n in sizes.items()}


def _sampled(lines: Callable[[], Iterator[str]], rate: float, salt: str) -> Iterator[tuple[int, int, str]]:
    """(copy, line number, line) of every line written: ``floor(rate)`` full copies, then the
    lines whose ``key_unit`` falls below the fraction (one pass over the file per copy)."""
    whole, frac = math.floor(rate), rate - math.floor(rate)
    for copy in range(whole):
        for i, line in enumerate(lines()):
            yield copy, i, line
    if frac > 0:
        for i, line in enumerate(lines()):
            if key_unit(f"{salt}:{i}") < frac:
                yield whole, i, line


def _lines(path: Path) -> Callable[[], Iterator[str]]:
    def read() -> Iterator[str]:
        with open(path, encoding="utf-8", newline="\n") as handle:
            for line in handle:
                yield line.removesuffix("\n")
    return read


def _language_params(p: dict[str, Any], corpus: dict[str, Any]) -> dict[str, Any]:
    return {**p, "target_bible": corpus["bible"], "target_files": corpus["files"],
            "parallel": [p["parallel"][i] for i in corpus["parallel"]]}


def write_languages(p: dict[str, Any], out: Path, fractions: SplitFractions, norm: Callable[[str], str],
                    max_chars: int | None, *, write_target: Callable[..., Any],
                    write_parallel: Callable[..., Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Every language's files, the sampled ``train.txt`` and the pairs (see the module doc);
    the sections, counts and files used, as the corpus stage records them. ``write_target``
    and ``write_parallel``: the corpus stage's writers of one language (passed in, so this
    module does not import the stage's)."""
    languages = [corpus["language"] for corpus in p["languages"]]
    sections: dict[str, Any] = {}
    stats: dict[str, Any] = {split: {"documents": 0, "bytes": 0} for split in SPLITS}
    files_used: dict[str, Any] = {}
    per_language: dict[str, dict[str, Any]] = {}
    pair_parts: list[tuple[str, int]] = []
    pair_counts: dict[str, int] = {}
    with open(out / PARALLEL_TRAIN, "w", encoding="utf-8") as pairs:
        for corpus in p["languages"]:
            lang = corpus["language"]
            lp = _language_params(p, corpus)
            lang_sections, lang_stats, lang_files = write_target(lp, out, fractions, norm, lang)
            sections.update(lang_sections)
            files_used[lang] = lang_files
            per_language[lang] = {"stats": lang_stats, "bible": corpus["bible"], "files": corpus["files"]}
            for split in SPLITS:
                for key in ("documents", "bytes"):
                    stats[split][key] += lang_stats[split][key]
            own = out / f"parallel.train.{lang}.tsv"
            parts, counts = write_parallel(lp, fractions, own, max_chars, norm)
            with open(own, encoding="utf-8") as handle:
                shutil.copyfileobj(handle, pairs)
            own.unlink()
            pair_parts += [(f"{name}@{lang}", n) for name, n in parts]
            for split, n in counts.items():
                pair_counts[split] = pair_counts.get(split, 0) + n
    sections[PARALLEL_TRAIN] = pair_parts
    stats["parallel"] = pair_counts
    for split in ("dev", "test"):  # every language's held-out text, as split
        with open(out / split_file(split), "w", encoding="utf-8") as handle:
            for lang in languages:
                with open(out / split_file(split, lang), encoding="utf-8") as part:
                    shutil.copyfileobj(part, handle)
        _interleave([out / eval_file(split, f"target:{lang}") for lang in languages], out / eval_file(split, "target"))
        first = next((lang for lang in languages if (out / eval_file(split, f"source:{lang}")).is_file()), None)
        if first is not None:
            shutil.copyfile(out / eval_file(split, f"source:{first}"), out / eval_file(split, "source"))
    sizes = {lang: int(per_language[lang]["stats"]["train"]["bytes"]) for lang in languages}
    rates = repeat_rates(sizes, p["sampling_alpha"])
    shares = sampling_shares(sizes, p["sampling_alpha"])
    written: dict[str, int] = {}
    train_parts: list[tuple[str, int]] = []
    with open(out / split_file("train"), "w", encoding="utf-8") as handle:
        for lang in languages:
            written[lang] = 0
            source = out / split_file("train", lang)
            # the sections of the language's own train file, in its order: which part a line is from
            parts = sections[split_file("train", lang)]
            bounds = list(itertools.accumulate(n for _, n in parts))
            counts: dict[tuple[int, int], int] = {}
            for copy, i, line in _sampled(_lines(source), rates[lang], f"{p['sampling_seed']}:{lang}"):
                handle.write(line + "\n")
                written[lang] += len(line.encode()) + 1
                key = (copy, bisect.bisect_right(bounds, i))  # the section (of this pass) the line is from
                counts[key] = counts.get(key, 0) + 1
            for (_, part), n in sorted(counts.items()):
                train_parts.append((parts[part][0], n))
    sections[split_file("train")] = train_parts
    total_written = sum(written.values()) or 1
    total = sum(sizes.values()) or 1
    record = {"alpha": p["sampling_alpha"], "seed": p["sampling_seed"], "languages": {
        lang: {"train_bytes": sizes[lang], "natural_share": sizes[lang] / total, "target_share": shares[lang],
               "repeat_rate": rates[lang], "sampled_bytes": written[lang], "sampled_share": written[lang] / total_written,
               "bible": per_language[lang]["bible"], "files": per_language[lang]["files"],
               "eval_texts": {split: per_language[lang]["stats"][split].get("target_eval_texts", 0)
                              for split in ("dev", "test")}}
        for lang in languages}}
    write_json(out / LANGUAGES_FILE, record)
    stats["languages"] = {lang: record["languages"][lang]["sampled_share"] for lang in languages}
    return sections, stats, files_used


def several_languages_note(languages: list[str] | None, *, links: bool, vectors: bool) -> str | None:
    """The init report's note on a run of several languages: how the evidence of a token
    seen in several of them was combined (None: a run of one language)."""
    if not languages:
        return None
    if links:
        how = ("its token links c(t, s) are counted over the train pairs of every language at once (each "
               "language's Bible or parallel files, English on the source side), so a token several languages "
               "share combines their links, each language weighing by how often the token links in its pairs")
    elif vectors:
        how = ("the target vectors are trained on the sampled train text of all of them, so a token several "
               "languages share has one vector from their mixed contexts")
    else:
        how = "this strategy reads no per-language evidence: every token is set the same way whatever its language"
    return f"several target languages {languages}, one vocabulary: {how}"


def _interleave(paths: list[Path], target: Path) -> None:
    """The files' lines in turn (the first of each, then the second ...), into ``target``."""
    with ExitStack() as stack:
        handles = [stack.enter_context(open(path, encoding="utf-8")) for path in paths if path.is_file()]
        with open(target, "w", encoding="utf-8") as out:
            for row in itertools.zip_longest(*handles):
                for line in row:
                    if line is not None:
                        out.write(line)


def split_file(split: str, language: str | None = None) -> str:
    """The corpus stage's file of a split's target text: ``<split>.txt`` (in a run of several
    languages: every language's, ``train.txt`` sampled), or one language's ``<split>.<lang>.txt``."""
    return f"{split}.txt" if language is None else f"{split}.{language}.txt"


def eval_file(split: str, texts: str) -> str:
    """``<split>.<target|source>.txt``, or one language's: ``target:<lang>`` ->
    ``<split>.target.<lang>.txt`` (the corpus stage's ``eval_file`` for these)."""
    return f"{split}.{texts.replace(':', '.')}.txt"
