"""Special tokens by role and byte tokens by byte value, across tokenizer families.

DESIGN ("Adding a strategy"): special tokens (bos, eos, pad, unk, mask, chat markers) are mapped
by *role*, not by string, because two tokenizers rarely spell them alike (``<s>`` vs
``<|im_start|>``) but a model has learned what each role does. Byte-level and
byte-fallback tokens stand for one byte whatever their spelling (GPT-2's ``Ċ`` and
SentencePiece's ``<0x0A>`` are both the newline byte), so they map by byte value.

This module also knows how each tokenizer family writes a token's surface form
(``tokenizer_family``, ``token_surface``), which the overlap strategy reuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from transformers import PreTrainedTokenizerBase

from tokenizer_builds.families import TokenizerFamily, family_of_json, pipeline_json, word_marker
from transfer.errors import TokenizerBuildError

# Role order doubles as priority when one token plays several roles (eos and pad, ...).
ROLES: tuple[str, ...] = ("bos", "eos", "pad", "unk", "mask", "cls", "sep")
ADDED_PREFIX = "added:"
# Stand-ins when the other side lacks a role: BERT's [CLS]/[SEP] open/close a sequence.
ROLE_ALIASES: dict[str, tuple[str, ...]] = {
    "bos": ("cls",),
    "cls": ("bos",),
    "eos": ("sep",),
    "sep": ("eos",),
}

BYTE_LEVEL = "byte_level"
SENTENCEPIECE = "sentencepiece"
WORDPIECE = "wordpiece"
OTHER = "other"

_FALLBACK_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character alphabet.

    Printable Latin-1 bytes stand for themselves; the remaining 68 bytes (control
    characters, space, ...) are shifted to code points 256, 257, ... in byte order.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping: dict[int, str] = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


@lru_cache(maxsize=1)
def unicode_to_byte() -> dict[str, int]:
    return {char: b for b, char in byte_to_unicode().items()}


# ---------------------------------------------------------------------------------------
# roles


def _extra_special_strings(tok: PreTrainedTokenizerBase) -> list[str]:
    """Additional special tokens: the named list (``additional_special_tokens`` in
    transformers 4, ``extra_special_tokens`` in 5) plus added tokens flagged special."""
    found: list[str] = []
    for attr in ("additional_special_tokens", "extra_special_tokens"):
        value = getattr(tok, attr, None)
        if isinstance(value, dict):
            value = list(value.values())
        for item in value or []:
            found.append(str(item))
    for added in getattr(tok, "added_tokens_decoder", {}).values():
        if getattr(added, "special", False):
            found.append(added.content)
    return list(dict.fromkeys(found))


def special_token_roles(tok: PreTrainedTokenizerBase) -> dict[str, str]:
    """Role -> token string: ``bos`` ... ``sep`` where set, and ``added:<content>`` for
    every other special token (chat markers and the like)."""
    roles: dict[str, str] = {}
    for role in ROLES:
        value = getattr(tok, f"{role}_token", None)
        if value is not None:
            roles[role] = str(value)
    named = set(roles.values())
    for content in _extra_special_strings(tok):
        if content not in named:
            roles[f"{ADDED_PREFIX}{content}"] = content
    return roles


class _Lookup:
    """``content in vocab`` and ``vocab[content]`` for a tokenizer, through the backend's
    own lookup where there is one: ``get_vocab()`` builds a Python dict of the whole
    vocabulary (a quarter second for Gemma-3's 262k) on every call."""

    def __init__(self, tok: PreTrainedTokenizerBase) -> None:
        backend = getattr(tok, "backend_tokenizer", None)
        self._token_to_id = backend.token_to_id if backend is not None else tok.get_vocab().get

    def get(self, content: str | None) -> int | None:
        return None if content is None else self._token_to_id(content)

    def __contains__(self, content: object) -> bool:
        return isinstance(content, str) and self._token_to_id(content) is not None

    def __getitem__(self, content: str) -> int:
        found = self._token_to_id(content)
        if found is None:
            raise KeyError(content)
        return found


def special_token_ids(tok: PreTrainedTokenizerBase) -> set[int]:
    """Ids of every special token of ``tok`` (all roles)."""
    vocab = _Lookup(tok)
    return {vocab[s] for s in special_token_roles(tok).values() if s in vocab}


def _role_priority(role: str) -> int:
    return ROLES.index(role) if role in ROLES else len(ROLES)


def map_special_tokens(
    source_tok: PreTrainedTokenizerBase, target_tok: PreTrainedTokenizerBase
) -> dict[int, int]:
    """Target id -> source id for special tokens: by role first, then by identical string;
    and for the added tokens both tokenizers hold (special or not), by identical string.

    A target token with several roles (eos that is also pad) prefers the role whose
    source token has the same string, else the highest-priority role in ``ROLES`` order.
    Roles the source lacks fall back to ``ROLE_ALIASES`` (cls <-> bos, sep <-> eos).
    """
    source_roles = special_token_roles(source_tok)
    target_roles = special_token_roles(target_tok)
    source_vocab = _Lookup(source_tok)
    target_vocab = _Lookup(target_tok)

    roles_by_token: dict[str, list[str]] = {}
    for role, content in target_roles.items():
        roles_by_token.setdefault(content, []).append(role)

    mapping: dict[int, int] = {}
    for content, roles in roles_by_token.items():
        if content not in target_vocab:
            continue
        roles.sort(key=_role_priority)
        candidates = [source_roles[r] for r in roles if source_roles.get(r) in source_vocab]
        if not candidates:
            aliases = [a for r in roles for a in ROLE_ALIASES.get(r, ())]
            candidates = [source_roles[a] for a in aliases if source_roles.get(a) in source_vocab]
        if content in candidates:
            chosen = content
        elif candidates:
            chosen = candidates[0]
        elif content in source_vocab:
            chosen = content  # no shared role: an identically spelled source token
        else:
            continue
        mapping[target_vocab[content]] = source_vocab[chosen]
    # Non-special added tokens the target kept from the source (Qwen3's <think>,
    # DeepSeek-V3's <｜User｜> chat markers): the same string is the same token.
    source_added = {token.content for token in source_tok.added_tokens_decoder.values()}
    for token in target_tok.added_tokens_decoder.values():
        target_id = target_vocab.get(token.content)
        if target_id is not None and target_id not in mapping and token.content in source_added:
            mapping[target_id] = source_vocab[token.content]
    return mapping


# ---------------------------------------------------------------------------------------
# tokenizer families and surface forms


@dataclass(frozen=True)
class FamilyInfo:
    """How a tokenizer writes word boundaries: its family and its marker."""

    family: str
    marker: str = ""


# How each family of ``tokenizer_builds.families`` spells tokens: byte-fallback BPE and
# Unigram both mark word starts SentencePiece's way.
SURFACE_STYLE: dict[TokenizerFamily, str] = {
    TokenizerFamily.BYTE_LEVEL_BPE: BYTE_LEVEL,
    TokenizerFamily.BPE_BYTE_FALLBACK: SENTENCEPIECE,
    TokenizerFamily.UNIGRAM: SENTENCEPIECE,
    TokenizerFamily.WORDPIECE: WORDPIECE,
}


def tokenizer_family(tok: PreTrainedTokenizerBase) -> FamilyInfo:
    """Byte-level BPE, SentencePiece-style (``▁``) or WordPiece (``##``), as
    ``tokenizer_builds.families`` (the one detection) names the tokenizer's family, with its
    word marker; a tokenizer of no supported family (or a slow one) is ``other``."""
    try:
        spec = pipeline_json(tok)  # not backend_json: no vocabulary dump per call
        family = family_of_json(spec)
    except TokenizerBuildError:
        return FamilyInfo(OTHER)
    style = SURFACE_STYLE[family]
    if style == BYTE_LEVEL:
        return FamilyInfo(BYTE_LEVEL, byte_to_unicode()[ord(" ")])
    if style == WORDPIECE:
        return FamilyInfo(WORDPIECE, (spec.get("model") or {}).get("continuing_subword_prefix") or "##")
    return FamilyInfo(SENTENCEPIECE, word_marker(spec))


def fallback_byte(token: str) -> int | None:
    """The byte a byte-fallback token like ``<0x0A>`` stands for, else None."""
    match = _FALLBACK_BYTE.match(token)
    return int(match.group(1), 16) if match else None


def token_surface(token: str, info: FamilyInfo) -> tuple[bytes, bool]:
    """(surface bytes, starts a word) of a model-vocabulary token.

    Word-boundary markers (``Ġ``, ``▁``, ``##``) are stripped and turned into the flag, so
    ``Ġhaus``, ``▁haus`` and WordPiece ``haus`` all give ``(b"haus", True)``. A token that
    is only a marker keeps it as a plain space: ``(b" ", False)``.
    """
    if info.family == BYTE_LEVEL:
        decoder = unicode_to_byte()
        if all(ch in decoder for ch in token):
            raw = bytes(decoder[ch] for ch in token)
        else:
            raw = token.encode("utf-8")
        return _split_space(raw)
    if info.family == SENTENCEPIECE:
        value = fallback_byte(token)
        if value is not None:
            return bytes([value]), False
        return _split_space(token.replace(info.marker, " ").encode("utf-8"))
    if info.family == WORDPIECE:
        if token.startswith(info.marker) and len(token) > len(info.marker):
            return token[len(info.marker) :].encode("utf-8"), False
        return token.encode("utf-8"), True
    return _split_space(token.encode("utf-8"))


def _split_space(raw: bytes) -> tuple[bytes, bool]:
    if len(raw) > 1 and raw.startswith(b" "):
        return raw[1:], True
    return raw, False


def model_vocab(tok: PreTrainedTokenizerBase) -> dict[str, int]:
    """The model's own vocabulary, without added tokens (whose strings are raw text)."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        return backend.get_vocab(with_added_tokens=False)
    added = {t.content for t in getattr(tok, "added_tokens_decoder", {}).values()}
    return {t: i for t, i in tok.get_vocab().items() if t not in added}


# ---------------------------------------------------------------------------------------
# byte tokens

_KIND_BYTE_LEVEL = "byte_level"  # GPT-2 alphabet character
_KIND_FALLBACK = "fallback"  # <0xNN>
_KIND_CHAR = "char"  # printable ASCII character in a non-byte-level vocabulary

# Which source spelling of a byte to prefer for each target spelling: same kind first.
_PREFERENCE = {
    _KIND_BYTE_LEVEL: (_KIND_BYTE_LEVEL, _KIND_CHAR, _KIND_FALLBACK),
    _KIND_FALLBACK: (_KIND_FALLBACK, _KIND_BYTE_LEVEL, _KIND_CHAR),
}


def _byte_tokens(tok: PreTrainedTokenizerBase, *, with_chars: bool) -> dict[int, dict[str, int]]:
    """byte value -> {kind: token id} for the tokens of ``tok`` that stand for one byte."""
    info = tokenizer_family(tok)
    alphabet = unicode_to_byte()
    excluded = special_token_ids(tok)
    found: dict[int, dict[str, int]] = {}
    # Only one-character tokens and <0xNN> can stand for one byte: filter before sorting
    # (a 262k vocabulary holds a few hundred of them).
    candidates = [
        (token, idx) for token, idx in model_vocab(tok).items()
        if len(token) == 1 or (len(token) == 6 and token.startswith("<0x"))
    ]
    for token, idx in sorted(candidates, key=lambda kv: kv[1]):
        if idx in excluded:
            continue
        value = fallback_byte(token)
        if value is not None:
            found.setdefault(value, {}).setdefault(_KIND_FALLBACK, idx)
        elif info.family == BYTE_LEVEL:
            if len(token) == 1 and token in alphabet:
                found.setdefault(alphabet[token], {}).setdefault(_KIND_BYTE_LEVEL, idx)
        elif with_chars and len(token) == 1 and 0x21 <= ord(token) <= 0x7E:
            found.setdefault(ord(token), {}).setdefault(_KIND_CHAR, idx)
    return found


def map_byte_tokens(
    source_tok: PreTrainedTokenizerBase, target_tok: PreTrainedTokenizerBase
) -> dict[int, int]:
    """Target id -> source id for target tokens that stand for one byte.

    Target byte tokens are GPT-2 byte-level single characters (in a byte-level tokenizer)
    and byte-fallback tokens ``<0xNN>``. Each maps to the source token for the same byte,
    preferring the same spelling kind; a byte-level source's ``Ċ`` serves a target
    ``<0x0A>`` and vice versa. Special tokens on either side are never byte tokens.
    """
    target_bytes = _byte_tokens(target_tok, with_chars=False)
    source_bytes = _byte_tokens(source_tok, with_chars=True)
    target_special = special_token_ids(target_tok) | set(map_special_tokens(source_tok, target_tok))
    mapping: dict[int, int] = {}
    for value, kinds in target_bytes.items():
        options = source_bytes.get(value, {})
        for kind, target_id in kinds.items():
            if target_id in target_special:
                continue
            for preferred in _PREFERENCE[kind]:
                if preferred in options:
                    mapping[target_id] = options[preferred]
                    break
    return mapping
