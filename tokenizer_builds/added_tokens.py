"""Which of the source's added tokens a target tokenizer keeps, and why.

Current model families carry from a few dozen to several thousand added tokens: Llama-3's
256 ``<|reserved_special_token_N|>``, Gemma-3's 6,242 ``<unusedN>`` plus HTML tags and
whitespace runs, DeepSeek-V3's ~800 ``<｜place▁holder▁no▁N｜>``, Mistral's ``[control_N]``.
Most are placeholders no one has trained; carried over, they would eat the target
vocabulary budget and get rows initialized for nothing. The target keeps an added token
only when something needs it:

- a special role: the tokenizer's bos/eos/pad/unk/mask/cls/sep, the post-processor's
  tokens, and the generation config's end-of-sequence ids;
- the chat template: the token appears when a few fixed conversations are rendered with
  the source's template (turn markers, end-of-turn, tool-call and thinking tags), or the
  template writes it literally in a branch those conversations do not reach;
- the user asks for it (``keep_tokens``).

Everything else is dropped. Whitespace-only added tokens (Gemma's ``\\n\\n`` runs) are
ordinary text the target spells with its own pieces, so the chat template never keeps them.

Why the template's text too: rendering finds the tokens a template builds from pieces
(``'<|' + role + '|>'``, ``bos_token``), but only on the branches the fixed conversations
take, and templates disagree on the shape of a tool call. DeepSeek-V3 writes its
``<｜tool▁calls▁begin｜>`` ... ``<｜tool▁sep｜>`` markers only for an assistant message whose
content is None, and ``apply_chat_template`` drops keys whose value is None before
rendering, so no conversation reaches that branch; Meta's Llama-3.1 template writes
``<|python_tag|>`` only for built-in tools. A user adapting a model for tool use needs every marker the template
can write as one token, so an added token found in the template's literal text (its raw
text and string constants, as ``transformers`` finds control tokens) is kept as well.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from transformers import PreTrainedTokenizerBase

from transfer.errors import TokenizerBuildError

SPECIAL_ROLE = "special role"
CHAT_TEMPLATE = "needed by the chat template"
#: Written literally by the chat template on a branch the fixed conversations do not take.
CHAT_TEMPLATE_TEXT = "in the chat template's text"
ASKED = "asked"

#: The roles a tokenizer names (the same as ``transfer.tokenizer.special_tokens.ROLES``;
#: repeated here because that module imports this package).
ROLES: tuple[str, ...] = ("bos", "eos", "pad", "unk", "mask", "cls", "sep")

_TOOL = {
    "type": "function",
    "function": {
        "name": "wetter",
        "description": "Das Wetter in einer Stadt.",
        "parameters": {
            "type": "object",
            "properties": {"stadt": {"type": "string"}},
            "required": ["stadt"],
        },
    },
}
_TOOL_CALL = {"type": "function", "function": {"name": "wetter", "arguments": {"stadt": "Bern"}}}

#: Fixed conversations rendered with the source's chat template: one user turn, a system
#: prompt, several turns, and a tool call with its answer (templates without tool or
#: system support raise on some of them; those are skipped).
CONVERSATIONS: tuple[tuple[list[dict[str, Any]], dict[str, Any]], ...] = (
    ([{"role": "user", "content": "Hallo!"}], {"add_generation_prompt": True}),
    (
        [
            {"role": "system", "content": "Du bist hilfsbereit."},
            {"role": "user", "content": "Wie heißt du?"},
            {"role": "assistant", "content": "Ich bin ein Modell."},
        ],
        {},
    ),
    (
        [
            {"role": "user", "content": "Eins?"},
            {"role": "assistant", "content": "Zwei."},
            {"role": "user", "content": "Drei?"},
        ],
        {"add_generation_prompt": True},
    ),
    (
        [
            {"role": "user", "content": "Wie ist das Wetter in Bern?"},
            {"role": "assistant", "content": "", "tool_calls": [_TOOL_CALL]},
            {"role": "tool", "name": "wetter", "content": "Sonnig."},
            {"role": "assistant", "content": "Sonnig."},
        ],
        {"tools": [_TOOL]},
    ),
)


@dataclass(frozen=True)
class AddedTokenSelection:
    """The source's added tokens split into kept (content -> reason) and dropped ones."""

    kept: dict[str, str]
    dropped: tuple[str, ...]
    #: Every added token of the source, in id order (kept and dropped).
    added: tuple[str, ...] = field(default=())

    def keeps(self, content: str) -> bool:
        return content in self.kept

    def report(self) -> dict[str, Any]:
        """The counts and reasons the tokenizer stage writes to ``special_tokens.json``."""
        by_reason: dict[str, int] = {}
        for reason in self.kept.values():
            by_reason[reason] = by_reason.get(reason, 0) + 1
        return {
            "source_added_tokens": len(self.added),
            "kept": len(self.kept),
            "dropped": len(self.dropped),
            "kept_by_reason": by_reason,
            "kept_tokens": dict(self.kept),
            # A sample: Gemma-3 drops several thousand placeholders.
            "dropped_examples": list(self.dropped[:20]),
        }


def rendered_chat_texts(source: PreTrainedTokenizerBase) -> list[str]:
    """The fixed conversations rendered with the source's chat template (none without one)."""
    if not getattr(source, "chat_template", None):
        return []
    texts: list[str] = []
    for conversation, options in CONVERSATIONS:
        try:
            texts.append(source.apply_chat_template(conversation, tokenize=False, **options))
        except (TemplateError, ValueError, TypeError, KeyError, AttributeError):
            continue  # a template may reject a role or tools (raise_exception)
    return texts


def chat_template_text(source: PreTrainedTokenizerBase) -> str:
    """The literal text of the source's chat template(s): raw template text and string
    constants, joined with NUL so that a search cannot match across two of them ("" without
    a template, or for one Jinja cannot parse, where rendering alone decides)."""
    templates = getattr(source, "chat_template", None) or {}
    if isinstance(templates, str):
        templates = {"default": templates}
    literals: set[str] = set()
    for template in templates.values():
        try:
            tree = _template_environment(template).parse(template)
        except TemplateError:
            continue
        literals |= {node.data for node in tree.find_all(nodes.TemplateData)}
        literals |= {node.value for node in tree.find_all(nodes.Const) if isinstance(node.value, str)}
    return "\0".join(sorted(literals))


def _template_environment(template: str) -> Environment:
    """transformers' own Jinja environment (its extensions, ``{% generation %}``, parse),
    or a sandboxed one with loop controls where that private helper is missing."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        return _compile_jinja_template(template).environment
    except ImportError:
        return ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"])


def check_keep_tokens_form(keep_tokens: Sequence[str]) -> None:
    """``keep_tokens`` entries are non-empty strings, each given once."""
    if isinstance(keep_tokens, str):
        raise TokenizerBuildError(f"keep_tokens: give a list of tokens, not the string {keep_tokens!r}")
    bad = [token for token in keep_tokens if not isinstance(token, str) or not token]
    if bad:
        raise TokenizerBuildError(f"keep_tokens: {bad!r} are not tokens (each entry is a non-empty string)")
    repeated = sorted({token for token in keep_tokens if list(keep_tokens).count(token) > 1})
    if repeated:
        raise TokenizerBuildError(f"keep_tokens: {repeated!r} given more than once")


def check_keep_tokens_added(keep_tokens: Sequence[str], added: Sequence[str]) -> None:
    """Each asked token is an added token of the source (``added``, in id order); the error
    lists a few of them: the closest to what was asked, then the first ones."""
    present = set(added)
    missing = [token for token in keep_tokens if token not in present]
    if not missing:
        return
    examples: list[str] = []
    for token in missing:
        examples += difflib.get_close_matches(token, added, n=3, cutoff=0.6)
    examples += list(added[:8])
    examples = list(dict.fromkeys(examples))[:8]
    raise TokenizerBuildError(
        f"keep_tokens: {missing!r} are not added tokens of the source tokenizer (ordinary text needs "
        f"no keeping); it has {len(added)} added tokens, e.g. {examples!r}"
    )


def _role_tokens(source: PreTrainedTokenizerBase) -> list[str]:
    found = []
    for role in ROLES:
        value = getattr(source, f"{role}_token", None)
        if value is not None:
            found.append(str(value))
    return found


def _post_processor_tokens(spec: dict[str, Any]) -> list[str]:
    """Token strings the post-processor inserts (TemplateProcessing / Bert / Roberta)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if isinstance(node.get("tokens"), list):
                found.extend(str(token) for token in node["tokens"])
            for key in ("sep", "cls"):
                pair = node.get(key)
                if isinstance(pair, list) and pair and isinstance(pair[0], str):
                    found.append(pair[0])
            for value in node.values():
                walk(value)

    walk(spec.get("post_processor"))
    return found


def select_added_tokens(
    source: PreTrainedTokenizerBase,
    spec: dict[str, Any],
    *,
    keep_tokens: Iterable[str] = (),
    eos_token_ids: Sequence[int] = (),
) -> AddedTokenSelection:
    """Decide which of the source's added tokens (``spec["added_tokens"]``) the target keeps.

    ``keep_tokens`` are strings the user asks for (each must be an added token of the
    source); ``eos_token_ids`` are the generation config's end-of-sequence ids.
    """
    added = [token["content"] for token in sorted(spec.get("added_tokens") or [], key=lambda t: t["id"])]
    present = set(added)
    kept: dict[str, str] = {}

    asked = list(keep_tokens)
    check_keep_tokens_form(asked)
    check_keep_tokens_added(asked, added)
    id_to_token = {token["id"]: token["content"] for token in spec.get("added_tokens") or []}
    eos = [id_to_token[i] for i in eos_token_ids if i in id_to_token]
    for content in [*_role_tokens(source), *_post_processor_tokens(spec), *eos]:
        if content in present:
            kept.setdefault(content, SPECIAL_ROLE)
    rendered = rendered_chat_texts(source)
    template_text = chat_template_text(source)
    for content in added:
        if not content.strip() or content in kept:
            continue
        if any(content in text for text in rendered):
            kept[content] = CHAT_TEMPLATE
        elif content in template_text:
            kept[content] = CHAT_TEMPLATE_TEXT
    for content in asked:
        kept.setdefault(content, ASKED)
    # Id order, so the target keeps the source's relative order of its added tokens.
    ordered = {content: kept[content] for content in added if content in kept}
    dropped = tuple(content for content in added if content not in kept)
    return AddedTokenSelection(kept=ordered, dropped=dropped, added=tuple(added))


def added_token_spec(source: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The parts of the source's backend JSON that :func:`select_added_tokens` reads (its
    added tokens and post-processor), without serializing the whole vocabulary: for
    Gemma-3's 262k tokens that takes seconds. A tokenizer without a ``tokenizers`` backend
    gets the full serialization's error."""
    backend = getattr(source, "backend_tokenizer", None)
    post_processor = getattr(backend, "post_processor", None)
    try:
        decoder = backend.get_added_tokens_decoder()
        processor = json.loads(post_processor.__getstate__()) if post_processor is not None else None
    except (AttributeError, TypeError, ValueError):
        from tokenizer_builds.families import backend_json

        return backend_json(source)
    added = [{"id": index, "content": token.content, "special": token.special}
             for index, token in sorted(decoder.items())]
    return {"added_tokens": added, "post_processor": processor}


def generation_eos_ids(generation_config: dict[str, Any] | None) -> list[int]:
    """``eos_token_id`` of a generation config (an int or a list), as a list."""
    value = (generation_config or {}).get("eos_token_id")
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list) else [value])]


def read_generation_config(path: Any) -> dict[str, Any] | None:
    """A ``generation_config.json`` as a dict, or None where there is none."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        return None
    return json.loads(file.read_text(encoding="utf-8"))
