"""``strategy: auto``: the measured best strategy, or the best one whose data the run has.

The order is the measured one (README "Which strategy", benchmarks/README.md "Strategies
on three languages": ``benchmarks/strategy_languages.py``, every strategy through the
product's comparison, ranked on dev after the 20-step budget by the mean ratio to ``mean``
over the measured languages); ``tests/test_strategy_default.py`` checks that it agrees with
the recorded results. A strategy is skipped only when the run lacks its data (a
parallel corpus for the alignment-based strategies, vectors or the text to train them for
WECHSEL/OFA); the config then records which strategy ran and why, and the plan, the CLI,
the Prefect report and the model card say so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig

AUTO = "auto"

#: Best first, as measured (dev BPB after 20 steps relative to ``mean``'s, averaged over
#: German, French and Swahili: combined -16.7%, trans_tokenization -13.5%, fvt -6.9%, focus
#: -6.5%), up to the first strategy that needs no data beyond the two tokenizers (``fvt``),
#: so the walk always ends in one that can run.
MEASURED_ORDER: tuple[str, ...] = ("combined", "trans_tokenization", "fvt")

#: What ``auto`` stands for when the run has a helper model (``helper_model`` or
#: ``progressive``): the paper's own method, CLP-Transfer; the best measured with a pretrained
#: helper (Gemma-3-270M given SmolLM2's tokenizer: clp 4.381 BPB, fvt 4.425, omp 4.428), not
#: with the small adapted helper of a progressive run, where ``combined`` without the helper
#: came out ahead (benchmarks/results/helper_transfer.md): auto keeps clp there, since the
#: helper was made for it, and its reason says so.
HELPER_DEFAULT = "clp"


def has_helper(cfg: AdaptConfig) -> bool:
    """The run has a helper model: the user's ``helper_model``, or the small model a
    progressive run adapts first."""
    return bool(cfg.helper_model) or cfg.progressive


def has_parallel_text(cfg: AdaptConfig) -> bool:
    """The run has train sentence pairs: the user's parallel files, or Bible translations of
    both languages (verse-aligned)."""
    return bool(cfg.parallel_files) or bool(cfg.target_bible and cfg.source_train_bible)


def needs_induced_dictionary(cfg: AdaptConfig) -> bool:
    """WECHSEL/OFA's vectors are aligned on a dictionary induced from parallel text (no
    dictionary file, not German's Ding, vectors not given as already aligned)."""
    induced = cfg.dictionary == "induced" or (cfg.dictionary == "auto" and cfg.target_language != "de")
    return induced and not cfg.vectors_aligned


def missing_data(cfg: AdaptConfig, strategy: str) -> str | None:
    """What ``strategy`` needs that this run does not have (None: it can run). Only the
    presence of inputs is judged here; their content is validated before the first stage."""
    from transfer.init.registry import needs

    kinds = needs(strategy)
    has_parallel = has_parallel_text(cfg)
    if "helper" in kinds and not has_helper(cfg):
        return "a helper model (helper_model, or progressive)"
    if "parallel" in kinds and not has_parallel:
        return "a parallel corpus (parallel_files, or target_bible with source_train_bible)"
    if "vectors" in kinds:
        if not (cfg.source_vectors or cfg.source_train_bible):
            return "source-language vectors (source_vectors, or source_train_bible to train them)"
        if needs_induced_dictionary(cfg) and not has_parallel:
            return ("a dictionary file or parallel text to align the vectors on (an induced dictionary: "
                    "parallel_files, or target_bible verse-aligned with source_train_bible)")
    return None


def choose_strategy(cfg: AdaptConfig) -> tuple[str, str]:
    """The strategy ``auto`` stands for in this run, and the sentence that says why."""
    if has_helper(cfg):
        reason = f"auto: {HELPER_DEFAULT}, the strategy (CLP-Transfer) a helper model is given for"
        if cfg.progressive:
            reason += ("; on Gemma-3-270M -> German, 'combined' without the helper measured better than clp "
                       "after 20 steps (1.944 against 2.091 BPB, benchmarks/results/helper_transfer.md)")
        return HELPER_DEFAULT, reason
    skipped = []
    for strategy in MEASURED_ORDER:
        lacking = missing_data(cfg, strategy)
        if lacking is None:
            if not skipped:
                return strategy, f"auto: {strategy}, the measured best strategy"
            return strategy, (f"auto: {strategy}, the best measured strategy whose data this run has ("
                              + "; ".join(skipped) + ")")
        skipped.append(f"{strategy} needs {lacking}")
    raise AssertionError("MEASURED_ORDER ends in a strategy that needs no data")  # pragma: no cover
