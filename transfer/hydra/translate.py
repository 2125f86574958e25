"""Translation with a Hydra model (trans-tokenization, Remy et al. 2024: zero-shot English->Tatar):
the model reads the source text with the source language's table and writes with the target
language's head; each id its head writes is fed back through the target language's table.

The prompt is plain text, kept simple::

    English: <source text>
    Swahili:

read with the source language's tokenizer and table after its context token (the token every
text is scored after). Few-shot examples, when given, come before it, each as the same two
lines with the example's translation after ``Swahili:``, and that translation is read with the
*target* language's tokenizer and table (the Hydra model reads mixed ids). Decoding is greedy and
stops at the first line end, the end-of-text token or ``max_new_tokens``; the text before the
line end is the translation. The baseline is the same prompt through the source model on its
own tokenizer (a Hydra model with the source language alone: read and write both the source's).
chrF (sacrebleu's ``corpus_chrf``, character 6-grams, beta 2) scores translations against
references.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from transfer.hydra.model import HydraError, HydraModel


def language_name(tag: str) -> str:
    """The English name of a language tag for the prompt (``sw`` -> ``Swahili``; the tag itself
    for a language outside the table)."""
    from transfer.corpus.bible_languages import LANGUAGE_NAMES, primary_language

    return LANGUAGE_NAMES.get(primary_language(tag), tag)


@dataclass(frozen=True)
class Segment:
    """A piece of the prompt and the language whose tokenizer and table read it."""

    language: str
    text: str


def prompt_segments(text: str, source: str, target: str, examples: Sequence[tuple[str, str]] = ()) -> list[Segment]:
    """The prompt of one translation (module doc), with optional (source, target) examples."""
    src, tgt = language_name(source), language_name(target)
    segments: list[Segment] = []
    for example_source, example_target in examples:
        segments.append(Segment(source, f"{src}: {example_source}\n{tgt}:"))
        segments.append(Segment(target, f" {example_target}\n"))
    segments.append(Segment(source, f"{src}: {text}\n{tgt}:"))
    return segments


def _embedded(hydra: HydraModel, tokenizers: dict[str, PreTrainedTokenizerBase],
              segments: list[Segment]) -> torch.Tensor:
    """(1, length, width) embeddings of the prompt: the context token, then each segment's ids
    through its language's table."""
    from transfer.evaluate.bpb import context_token_id

    first = segments[0].language
    parts = [hydra.tables[first](torch.tensor([context_token_id(tokenizers[first])]))]
    for segment in segments:
        ids = tokenizers[segment.language](segment.text, add_special_tokens=False)["input_ids"]
        if ids:
            parts.append(hydra.tables[segment.language](torch.tensor(ids)))
    return torch.cat(parts)[None]


def _stop_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    from transfer.evaluate.bpb import context_token_id

    ids = {context_token_id(tokenizer)}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


@torch.no_grad()
def translate_one(hydra: HydraModel, tokenizers: dict[str, PreTrainedTokenizerBase], text: str, source: str,
                  target: str, *, examples: Sequence[tuple[str, str]] = (), max_new_tokens: int = 64) -> str:
    """Greedy translation of ``text`` (module doc)."""
    from transfer.evaluate.bpb import max_positions

    tokenizer = tokenizers[target]
    embeds = _embedded(hydra, tokenizers, prompt_segments(text, source, target, examples))
    lm = hydra.use(target)
    limit = max_positions(lm)
    if limit is not None:
        if embeds.shape[1] >= limit:
            raise HydraError(f"the prompt has {embeds.shape[1]} tokens; the model reads at most {limit}")
        max_new_tokens = min(max_new_tokens, limit - embeds.shape[1])
    device = next(hydra.parameters()).device
    out = lm(inputs_embeds=embeds.to(device), use_cache=True, logits_to_keep=1)
    stops = _stop_ids(tokenizer)
    new: list[int] = []
    for _ in range(max_new_tokens):
        next_id = int(out.logits[0, -1].argmax())
        if next_id in stops:
            break
        new.append(next_id)
        if len(new) == max_new_tokens or "\n" in tokenizer.decode([next_id]):
            break
        step = hydra.tables[target](torch.tensor([[next_id]], device=device))
        out = lm(inputs_embeds=step, use_cache=True, logits_to_keep=1, **_cache_of(lm, out))
    return tokenizer.decode(new).split("\n", 1)[0].strip()


def _cache_of(lm: torch.nn.Module, out: object) -> dict[str, object]:
    """The key-value cache of ``out`` as the keyword ``lm`` takes it (``cache`` in transformers 5,
    ``past_key_values`` before)."""
    if "cache" in inspect.signature(lm.forward).parameters:
        return {"cache": out.cache}
    return {"past_key_values": out.past_key_values}


def check_pair(hydra: HydraModel, source: str, target: str) -> None:
    """Refuse a pair the model has no table (``--from``) or head (``--to``) for, naming it."""
    hydra.check_language(source, "--from language")
    hydra.check_language(target, "--to language")


def translate_lines(hydra: HydraModel, tokenizers: dict[str, PreTrainedTokenizerBase], lines: Sequence[str],
                    source: str, target: str, *, examples: Sequence[tuple[str, str]] = (),
                    max_new_tokens: int = 64) -> list[str]:
    """Each line translated (an empty line stays empty)."""
    check_pair(hydra, source, target)
    hydra.eval()
    return [translate_one(hydra, tokenizers, line, source, target, examples=examples, max_new_tokens=max_new_tokens)
            if line.strip() else "" for line in lines]


def source_model_translator(lm: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, source: str,
                            target: str) -> tuple[HydraModel, dict[str, PreTrainedTokenizerBase]]:
    """The baseline: the source model on its own tokenizer, reading and writing both languages
    with its own table and head (so the same prompt and decoding apply)."""
    hydra = HydraModel(lm, source)
    hydra.tables[target] = hydra.tables[source]
    hydra.heads[target] = hydra.heads[source]
    return hydra, {source: tokenizer, target: tokenizer}


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu, 0-100) of ``hypotheses`` against one reference each."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise HydraError(f"chrF: {len(hypotheses)} translations but {len(references)} references; give one "
                         "reference line per source line")
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)
