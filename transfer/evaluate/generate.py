"""Text generation from an adapted model: the check that an instruct model stays a chat
model after its vocabulary was replaced (issue #17, "The instruct model stays a chat model").

A prompt is either plain text to continue, preceded by the same unscored context token the
metric puts before every text (``context_token_id``: what the model saw before each text in
training and scoring), or, with ``chat``, one user turn rendered by the tokenizer's own chat
template with the assistant's turn opened (``add_generation_prompt``). Generation stops at the
model's end-of-turn token: the generation config's eos ids (SmolLM2: ``<|im_end|>``), which
the adapted model carries with the target tokenizer's ids.

Greedy by default. Sampling draws from a generator seeded with ``seed`` inside a forked RNG
state, so the same seed gives the same text and the caller's random state is left as it was
(publishing samples after a run must not move any later draw).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from transfer.engine.devices import place_model
from transfer.errors import VocabTransferError


class GenerationError(VocabTransferError):
    """A generation request the model or tokenizer cannot serve (no chat template, no room)."""


@dataclass(frozen=True)
class Generation:
    """The generated continuation (prompt excluded): its text (without the final end-of-turn
    token), its token ids, and whether it ended on an end-of-turn token rather than the
    length limit."""

    text: str
    token_ids: tuple[int, ...]
    stopped_at_eos: bool


def end_of_turn_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The ids that end a turn: the generation config's eos ids, else the model config's,
    else the tokenizer's eos token."""
    for value in (getattr(model.generation_config, "eos_token_id", None),
                  getattr(model.config, "eos_token_id", None), tokenizer.eos_token_id):
        if value is None:
            continue
        ids = tuple(int(i) for i in (value if isinstance(value, (list, tuple)) else [value]))
        if ids:
            return ids
    return ()


def render_chat(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    """``prompt`` as one user turn in the tokenizer's chat template, the assistant's turn
    opened; refused when the tokenizer has no template."""
    if not getattr(tokenizer, "chat_template", None):
        raise GenerationError("this tokenizer has no chat template, so --chat cannot render a "
                              "user turn; generate without --chat to continue plain text")
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str, *, chat: bool) -> list[int]:
    """The prompt's token ids: the rendered chat turn (its own special tokens, nothing
    added), or the context token followed by the plain text."""
    from transfer.evaluate.bpb import context_token_id

    if chat:
        return list(tokenizer(render_chat(tokenizer, prompt), add_special_tokens=False)["input_ids"])
    return [context_token_id(tokenizer), *tokenizer(prompt, add_special_tokens=False)["input_ids"]]


def _generation_config(model: PreTrainedModel, *, max_new_tokens: int, sample: bool, temperature: float,
                       top_p: float, eos: tuple[int, ...], pad: int) -> GenerationConfig:
    # Only what is asked: the model's own sampling defaults (top_k, repetition penalty...)
    # would make --sample mean something different per model.
    options: dict = {"max_new_tokens": max_new_tokens, "do_sample": sample, "eos_token_id": list(eos) or None,
                     "pad_token_id": pad, "bos_token_id": model.generation_config.bos_token_id}
    if sample:
        options.update(temperature=temperature, top_p=top_p, top_k=0)
    return GenerationConfig(**options)


def generate_text(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    *,
    chat: bool = False,
    max_new_tokens: int = 50,
    sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> Generation:
    """Continue ``prompt`` (or answer it as a user turn, ``chat``) for at most
    ``max_new_tokens`` tokens, stopping at the end-of-turn token; greedy unless ``sample``
    (temperature and nucleus ``top_p``, drawn with ``seed``)."""
    if max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if sample and not (temperature > 0 and 0 < top_p <= 1):
        raise GenerationError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    from transfer.evaluate.bpb import context_token_id, max_positions

    ids = prompt_ids(tokenizer, prompt, chat=chat)
    limit = max_positions(model)
    if limit is not None and len(ids) >= limit:
        raise GenerationError(f"the prompt has {len(ids)} tokens; the model reads at most {limit}")
    if limit is not None:
        max_new_tokens = min(max_new_tokens, limit - len(ids))
    eos = end_of_turn_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else context_token_id(tokenizer)
    config = _generation_config(model, max_new_tokens=max_new_tokens, sample=sample,
                                temperature=temperature, top_p=top_p, eos=eos, pad=pad)
    target = place_model(model, device)
    inputs = torch.tensor([ids], device=target)
    cuda = [target] if target.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        output = model.generate(inputs, attention_mask=torch.ones_like(inputs), generation_config=config)
    new = tuple(int(i) for i in output[0, len(ids):].tolist())
    stopped = bool(new) and new[-1] in eos
    # the end-of-turn token is dropped; any other special token the model wrote is shown
    text = tokenizer.decode(list(new[:-1] if stopped else new), skip_special_tokens=False)
    return Generation(text=text, token_ids=new, stopped_at_eos=stopped)
