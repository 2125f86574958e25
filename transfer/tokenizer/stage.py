"""Stage ``tokenizer``: the target tokenizer trained on the train split, with fertility."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from transfer.cache import StageOutput
from transfer.corpus.stage import eval_file, iter_lines, read_lines
from transfer.stages import BuildContext, StageSpec, builder, upstream_of, write_json

if TYPE_CHECKING:
    from transfer.config import AdaptConfig


def tokenizer_spec(cfg: AdaptConfig, corpus: StageOutput, source: StageOutput) -> StageSpec:
    inputs, upstream = upstream_of(corpus=corpus, source=source)
    return StageSpec(
        stage="tokenizer",
        params={"vocab_size": cfg.vocab_size, "min_frequency": cfg.min_frequency,
                "eval_split": cfg.eval_split, "eval_texts": cfg.eval_texts},
        inputs=inputs,
        upstream=upstream,
    )


@builder("tokenizer")
def build_tokenizer(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Train the target tokenizer on train texts only; report fertility on held-out texts."""
    from transformers import AutoTokenizer

    from tokenizer_builds.build import build_target_tokenizer, save_tokenizer
    from transfer.tokenizer.fertility import compare_fertility

    corpus = spec.upstream_path("corpus")
    source_tokenizer = AutoTokenizer.from_pretrained(spec.upstream_path("source") / "model")
    target = build_target_tokenizer(
        source_tokenizer,
        iter_lines(corpus / "train.txt"),
        spec.params["vocab_size"],
        min_frequency=spec.params["min_frequency"],
    )
    save_tokenizer(target, out / "tokenizer")
    texts = read_lines(corpus / eval_file(spec.params["eval_split"], "target"), spec.params["eval_texts"])
    fertility = compare_fertility(source_tokenizer, target, texts)
    write_json(out / "fertility.json", {k: v.to_dict() for k, v in fertility.items()})
