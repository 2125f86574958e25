"""Does a model folder's tokenizer belong to its weights? A check of a well-formed source that lies.

A Hugging Face folder whose ``tokenizer.json`` came from another model loads without a word:
transformers never compares the two. If the tokenizer has more tokens than the embedding has
rows, the source model's own evaluation and every strategy that reads a source row index past
the matrix, after the corpus, tokenizer and vector stages have run; if it has as many or fewer,
the ids mean other strings than the rows were trained on, and the only visible sign is an end
token the config does not know. So, from ``config.json`` and the tokenizer alone (no weights):
a tokenizer larger than the embedding is refused, and an end-of-text id the config does not list
is warned.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


def _config_and_tokenizer(folder: Path):
    """The folder's config and tokenizer, read once per version of its files (the refusal and
    the warning read the same folder; a long-lived process sees an edited folder afresh)."""
    stamps = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.glob("*.json")))
    return _read(folder, stamps)


@lru_cache(maxsize=4)
def _read(folder: Path, stamps: tuple):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return (config.get_text_config() if hasattr(config, "get_text_config") else config), tokenizer


def _eos_ids(config) -> set[int]:
    value = getattr(config, "eos_token_id", None)
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple)) else {int(value)}


def tokenizer_fit_problem(folder: Path | str, label: str = "source model") -> str | None:
    """Why ``folder``'s tokenizer cannot drive its weights (None: it fits, or the folder's
    config or tokenizer cannot be read here: loading says why in its own words)."""
    try:
        config, tokenizer = _config_and_tokenizer(Path(folder))
    except (OSError, ValueError, KeyError):
        return None
    rows = getattr(config, "vocab_size", None)
    if isinstance(rows, int) and len(tokenizer) > rows:
        return (f"{label} {str(folder)!r}: its tokenizer has {len(tokenizer)} tokens but the model's embedding has "
                f"{rows} rows (config.json vocab_size): ids {rows}..{len(tokenizer) - 1} have no row. Is the "
                f"tokenizer from another model? Put the model's own tokenizer files in the folder")
    return None


def tokenizer_fit_warning(folder: Path | str, label: str = "source model") -> str | None:
    """A warning when ``folder``'s tokenizer ends text with an id the model's config does not
    list as an end id: often a tokenizer from another model of the same vocabulary size."""
    try:
        config, tokenizer = _config_and_tokenizer(Path(folder))
    except (OSError, ValueError, KeyError):
        return None
    eos = tokenizer.eos_token_id
    listed = _eos_ids(config)
    if eos is None or not listed or eos in listed:
        return None
    return (f"{label} {str(folder)!r}: its tokenizer ends text with {tokenizer.eos_token!r} (id {eos}), but "
            f"config.json lists end ids {sorted(listed)}: is the tokenizer the model's own? Generations may not "
            f"stop, and if it is another model's, every id means another string than the rows learned")
