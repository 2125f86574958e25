"""Remote-code hooks in a model folder's JSON files, dropped from every folder we write.

A hub model that ships its own modelling code names it in ``config.json``'s ``auto_map``
(and a custom tokenizer class in ``tokenizer_config.json``'s). We never run that code
(``trust_remote_code`` stays off) and never copy its ``.py`` files, so a folder we write
that kept the entry would advertise a module it does not ship: loading it with remote code
allowed would then fail, or fetch code from the hub that the weights were not adapted with. The saved folder drops the hooks; the source stage records which ones,
and the model card says so.
"""

from __future__ import annotations

import json
from pathlib import Path

#: JSON files of a Hugging Face folder that can name remote code, and the keys that do
HOOK_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")
HOOK_KEYS = ("auto_map", "custom_pipelines")


def drop_remote_code_hooks(folder: Path) -> dict[str, list[str]]:
    """Remove every remote-code hook from the JSON files of ``folder`` in place; return
    ``{"config.json": ["auto_map"], ...}`` for the entries that were there (empty: none)."""
    dropped: dict[str, list[str]] = {}
    for name in HOOK_FILES:
        path = Path(folder) / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            continue
        found = [key for key in HOOK_KEYS if key in data]
        if found:
            for key in found:
                del data[key]
            path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
            dropped[name] = found
    return dropped
