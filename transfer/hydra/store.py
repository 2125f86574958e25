"""A Hydra model's folder, the body stored once, and its export as plain Hugging Face folders.

The run's folder holds::

    hydra.json                       the manifest: languages, the source language, tied or not
    body.safetensors                 the shared transformer body (every tensor but table and head)
    languages/<lang>/table.safetensors   the language's embedding table (and untied head)
    languages/<lang>/config.json ...     the language's model config and its tokenizer

``export_language`` writes one ordinary folder per language (body + that language's table and
head + its tokenizer), which ``AutoModelForCausalLM.from_pretrained`` loads with no remote code:
trans-tokenization's Hydra heads, each usable as a plain model. Weights are safetensors only;
every folder is written to a temporary sibling and renamed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from transfer.engine.cache import replacing_directory
from transfer.hydra.model import HydraError, HydraModel

MANIFEST = "hydra.json"
BODY = "body.safetensors"
TABLE = "table.safetensors"
FORMAT = 1


class HydraManifest(BaseModel):
    """What ``hydra.json`` says: the languages in order (the source's first), and the names of
    the table and head inside the body's model, so the export knows where they go."""

    format: int = FORMAT
    source_language: str
    languages: list[str]
    tied: bool
    table_name: str
    head_name: str


@dataclass
class LoadedHydra:
    """A Hydra model with each language's tokenizer and model config."""

    model: HydraModel
    tokenizers: dict[str, PreTrainedTokenizerBase]
    configs: dict[str, PretrainedConfig]

    @property
    def languages(self) -> list[str]:
        return self.model.languages


def language_folder(folder: Path, language: str) -> Path:
    return Path(folder) / "languages" / language


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_hydra(hydra: LoadedHydra, out: Path) -> Path:
    """Write the Hydra folder at ``out`` (atomically): the body once, a table per language."""
    model = hydra.model
    manifest = HydraManifest(source_language=model.source_language, languages=model.languages, tied=model.tied,
                             table_name=model.table_name, head_name=model.head_name)
    with replacing_directory(Path(out)) as tmp:
        save_file(_contiguous(model.body_state()), str(tmp / BODY))
        for language in model.languages:
            folder = language_folder(tmp, language)
            folder.mkdir(parents=True)
            save_file(_contiguous(model.language_state(language)), str(folder / TABLE))
            config = hydra.configs[language]
            config.vocab_size = model.tables[language].num_embeddings
            config.save_pretrained(folder)
            hydra.tokenizers[language].save_pretrained(folder)
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return Path(out)


def read_manifest(folder: Path) -> HydraManifest:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise HydraError(f"{folder}: not a Hydra model folder (no {MANIFEST}); give the folder a Hydra run "
                         "exported (artifacts/models/<name>), not one language's plain folder")
    manifest = HydraManifest.model_validate(json.loads(path.read_text()))
    if manifest.format != FORMAT:
        raise HydraError(f"{path}: Hydra folder format {manifest.format}, this version reads {FORMAT}")
    return manifest


def _table_modules(state: dict[str, torch.Tensor], tied: bool) -> tuple[nn.Embedding, nn.Module | None]:
    table = nn.Embedding.from_pretrained(state["embedding.weight"], freeze=False)
    if tied:
        return table, None
    weight = state["head.weight"]
    head = nn.Linear(weight.shape[1], weight.shape[0], bias="head.bias" in state)
    head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
    return table, head


def load_hydra(folder: Path | str) -> LoadedHydra:
    """The Hydra model of a folder ``save_hydra`` wrote (float32, eval mode)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    configs = {lang: AutoConfig.from_pretrained(language_folder(folder, lang), trust_remote_code=False)
               for lang in manifest.languages}
    tokenizers = {lang: AutoTokenizer.from_pretrained(language_folder(folder, lang), trust_remote_code=False)
                  for lang in manifest.languages}
    source = manifest.source_language
    # its own copy: ``use`` sets the body's vocab_size to the active language's
    lm = AutoModelForCausalLM.from_config(copy.deepcopy(configs[source]), trust_remote_code=False)
    model = HydraModel(lm, source)
    tables = {lang: _table_modules(load_file(str(language_folder(folder, lang) / TABLE)), manifest.tied)
              for lang in manifest.languages}
    model.tables[source].weight.data.copy_(tables[source][0].weight)
    if not manifest.tied:
        model.heads[source].load_state_dict(tables[source][1].state_dict())
    for lang in manifest.languages:
        if lang != source:
            model.add_language(lang, *tables[lang])
    missing, unexpected = lm.load_state_dict(load_file(str(folder / BODY)), strict=False)
    skip = (f"{manifest.table_name}.", f"{manifest.head_name}.")
    missing = [k for k in missing if not k.startswith(skip)]
    if missing or unexpected:
        raise HydraError(f"{folder / BODY}: does not fit the model of {source!r}'s config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    model.use(source)
    return LoadedHydra(model.eval(), tokenizers, configs)


def language_model(hydra: LoadedHydra, language: str) -> torch.nn.Module:
    """A fresh plain causal LM of ``language``: the body with that language's table and head."""
    model = hydra.model
    model.check_language(language)
    lm = AutoModelForCausalLM.from_config(copy.deepcopy(hydra.configs[language]), trust_remote_code=False)
    state = dict(model.body_state())
    state[f"{model.table_name}.weight"] = model.tables[language].weight
    head = model.heads[language]
    state.update({f"{model.head_name}.{k}": v for k, v in head.state_dict().items()})
    lm.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    if model.tied:
        lm.tie_weights()
    return lm.eval()


def export_language(hydra: LoadedHydra, language: str, out: Path) -> Path:
    """One ordinary Hugging Face folder of ``language`` at ``out`` (safetensors, its tokenizer,
    no code): ``AutoModelForCausalLM.from_pretrained(out)`` is the Hydra model with that
    language's table and head."""
    from transfer.source.loading import save_model

    save_model(language_model(hydra, language), hydra.tokenizers[language], Path(out))
    return Path(out)


def folder_languages(folder: Path) -> list[str]:
    """The languages a Hydra folder has tables for (its manifest's)."""
    return read_manifest(folder).languages

