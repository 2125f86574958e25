"""Stage ``srb``: SR-B sentence retrieval (``transfer.evaluate.srb``) of one model, the
pipeline's opt-in setting ``srb`` (issue #30).

A run with ``srb`` set scores the source model, the adapted model at step 0 and after
training on the same verses: up to ``srb_verses`` (500) held-out test verses (the run's own split
fractions, in its Unicode normalization) present in both the target language's first
translation and the English one (the first of ``source_bible``), each model encoding both
languages with its own tokenizer. Top-1 and top-10 accuracy both ways land in
``scores.json`` (flat, ``srb.to_en.top1``...), which the run reads into
``AdaptResult.task_scores`` beside bits per byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from transfer.engine.cache import StageOutput
from transfer.engine.stages import BuildContext, StageSpec, builder, upstream_of, write_json
from transfer.errors import CorpusError

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig

#: the file every task-score stage writes: metric name -> value (higher is better)
SCORES_FILE = "scores.json"
#: English, when a run names no source_bible
DEFAULT_ENGLISH = "k"


def srb_bibles(cfg: AdaptConfig) -> tuple[str, str]:
    """(target translation, English translation) SR-B retrieves between: the run's first
    ``target_bible``, else the target language's first packaged translation (a run on its
    own files); the first ``source_bible``. CorpusError naming the language when it has none."""
    from transfer.corpus.bible_languages import bibles_of, describe_language

    own = cfg.target_bible or bibles_of(cfg.target_language)
    if not own:
        raise CorpusError(f"srb: the packaged Bible has no translation in {describe_language(cfg.target_language)}, "
                          "so SR-B has no verses to retrieve (turn srb off, or give target_bible codes of a close "
                          "language)")
    return own[0], (cfg.source_bible[0] if cfg.source_bible else DEFAULT_ENGLISH)


def _fractions(cfg_or_params):
    from transfer.corpus.splits import SplitFractions

    get = cfg_or_params.get if isinstance(cfg_or_params, dict) else lambda k: getattr(cfg_or_params, k)
    return SplitFractions(dev=get("dev_fraction"), test=get("test_fraction"))


def check_srb(cfg: AdaptConfig) -> None:
    """Before the first stage: SR-B has a translation of the target language and test verses
    it shares with the English one (validation calls this when ``srb`` is set)."""
    from transfer.corpus.bible import translation_codes, verse_pairs
    from transfer.corpus.bible_languages import describe_language

    if not cfg.srb:
        return
    target, english = srb_bibles(cfg)
    unknown = [code for code in (target, english) if code not in translation_codes()]
    if unknown:
        raise CorpusError(f"srb: Bible translation codes {unknown} are unknown")
    if not verse_pairs(english, target, "test", fractions=_fractions(cfg)):
        raise CorpusError(f"srb: translation {target!r} ({describe_language(cfg.target_language)}) has no test "
                          f"verses in common with the English translation {english!r}")


def srb_spec(cfg: AdaptConfig, model: StageOutput) -> StageSpec:
    """SR-B of the model stage ``model`` on the run's verses."""
    from transfer.corpus.bible import bible_content_hash

    target, english = srb_bibles(cfg)
    inputs, upstream = upstream_of(model=model)
    inputs["bible"] = bible_content_hash([english, target])
    return StageSpec(
        stage="srb",
        params={"target_bible": target, "english_bible": english, "split": "test", "max_verses": cfg.srb_verses,
                "dev_fraction": cfg.dev_fraction, "test_fraction": cfg.test_fraction,
                "normalization": cfg.normalization, "layer": cfg.srb_layer},
        inputs=inputs,
        upstream=upstream,
        runtime={"device": cfg.device, "batch_size": cfg.eval_batch_size},
    )


def flat_scores(result) -> dict[str, float]:
    """A ``RetrievalResult`` as the run's task metrics (``srb.to_en.top1``, ``srb.from_en.top10``...)."""
    scores = {f"srb.to_en.{k}": v for k, v in result.target_to_english.items()}
    scores.update({f"srb.from_en.{k}": v for k, v in result.english_to_target.items()})
    return scores


@builder("srb")
def build_srb(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Encode the verses of both languages with the model and retrieve each one's
    translation; ``srb.json`` keeps the whole result, ``scores.json`` the flat metrics."""
    from transfer.corpus.bible import verse_pairs
    from transfer.corpus.bible_languages import BIBLE_LANGUAGES
    from transfer.corpus.normalization import normalizer
    from transfer.evaluate.srb import sentence_retrieval
    from transfer.source.loading import load_source

    p = spec.params
    norm = normalizer(p["normalization"])
    pairs = verse_pairs(p["english_bible"], p["target_bible"], p["split"], fractions=_fractions(p))[:p["max_verses"]]
    if not pairs:
        raise CorpusError(f"srb: translation {p['target_bible']!r} ({BIBLE_LANGUAGES.get(p['target_bible'], '?')}) "
                          f"has no {p['split']} verses in common with {p['english_bible']!r}")
    model, tokenizer = load_source(str(spec.upstream_path("model") / "model"))
    result = sentence_retrieval(model, tokenizer, [norm(t) for _, _, t in pairs], [norm(e) for _, e, _ in pairs],
                                layer=p["layer"], batch_size=spec.runtime.get("batch_size", 16),
                                device=spec.runtime.get("device"))
    write_json(out / "srb.json", {**result.to_dict(), "target_bible": p["target_bible"],
                                  "english_bible": p["english_bible"], "split": p["split"]})
    write_json(out / SCORES_FILE, flat_scores(result))
