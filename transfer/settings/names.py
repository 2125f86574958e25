"""Names that become parts of paths, folder names, Prefect names or MLflow registry names.

A language code is a language tag (the shape of BCP 47: ``de``, ``gsw``, ``pt-BR``,
``zh-Hant``, ``sr-Latn-RS``), never a path; a model name or registry prefix is one safe path
component (letters, digits, ``.``, ``_``, ``-``; no leading dot or dash; bounded length).
Checked on the shape only, so a code need not be registered to be accepted, but ``../x``,
``a/b``, a space, a NUL or a leading ``-`` can never reach a folder or a command line.
"""

from __future__ import annotations

import re

from transfer.errors import VocabTransferError

# BCP 47's shape: primary language (2-3 letters with up to three extlang subtags, or 4-8
# letters), optional script (4 letters), region (2 letters or 3 digits), variants.
_LANGUAGE_TAG = re.compile(
    r"(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}|[A-Za-z]{4,8})"
    r"(?:-[A-Za-z]{4})?"
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
)
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
MAX_LANGUAGE_TAG = 35  # RFC 5646's longest useful tag
MAX_COMPONENT = 200  # below every file system's 255-byte name limit, room for suffixes
# registered model name = prefix + target language (``vocab-transfer-de``): the config's,
# the CLI's and the registry's default, so they always name the same models
REGISTERED_MODEL_PREFIX = "vocab-transfer-"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UnsafeNameError(VocabTransferError):
    """A language code, model name or prefix that could escape its folder or registry name
    (a ValueError, so pydantic validators report it against the field)."""


def check_language_tag(value: object, field: str = "language code") -> str:
    """``value`` if it has the shape of a BCP 47 language tag, else UnsafeNameError naming ``field``."""
    if not isinstance(value, str) or len(value) > MAX_LANGUAGE_TAG or not _LANGUAGE_TAG.fullmatch(value):
        raise UnsafeNameError(
            f"{field} {value!r} is not a language tag (BCP 47 shape: e.g. 'de', 'sw', 'gsw', "
            f"'pt-BR', 'zh-Hant'); it becomes part of folder and registry names"
        )
    return value


def canonical_language_tag(tag: str) -> str:
    """BCP 47's conventional case (tags are case-insensitive): ``SW`` -> ``sw``,
    ``pt-br`` -> ``pt-BR``, ``ZH-hant`` -> ``zh-Hant``; so one language gets one model name,
    one registry entry and one set of cache keys however it is typed."""
    first, *rest = tag.split("-")
    parts = [first.lower()]
    for part in rest:
        if len(part) == 4 and part.isalpha():
            parts.append(part.title())  # script
        elif len(part) == 2 and part.isalpha():
            parts.append(part.upper())  # region
        else:
            parts.append(part.lower())  # extlang, numeric region, variant
    return "-".join(parts)


def check_path_component(value: object, field: str = "name") -> str:
    """``value`` if it is one safe path component, else UnsafeNameError naming ``field``."""
    if not isinstance(value, str) or len(value) > MAX_COMPONENT or not _COMPONENT.fullmatch(value):
        raise UnsafeNameError(
            f"{field} {value!r} is not a safe name: use letters, digits, '.', '_' and '-', "
            f"no leading dot or dash, at most {MAX_COMPONENT} characters (it becomes a folder or "
            f"registry name)"
        )
    return value


def safe_component(text: str, fallback: str = "model", max_length: int = 100) -> str:
    """``text`` with every run of unsafe characters replaced by ``-``, leading dots and
    dashes dropped and cut to ``max_length``: a name derived from user input (a folder's
    name, a hub id) that is safe as a path component. Safe names pass unchanged."""
    cleaned = _UNSAFE.sub("-", text).lstrip(".-")[:max_length]
    return cleaned or fallback
