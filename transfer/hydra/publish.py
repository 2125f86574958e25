"""A Hydra run's language folders as published models: a model card in each, and one MLflow
registry version per language (``vocab-transfer-<lang>``, beside that language's single runs).

Each language's folder is an ordinary model (``transfer.hydra.store.export_language``), so it
is registered as one: its record's metrics use the registry's own labels (``bpb.source_model_on_target``,
``bpb.adapted_step0`` and, for the trained Hydra head, ``bpb.adapted_trained``), so the
``best`` alias compares it with the language's other versions on the same terms; its tags
say it is one head of a Hydra run and name the run's other languages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from transfer.engine.cache import atomic_write
from transfer.engine.stages import read_json
from transfer.publish.labels import ADAPTED_STEP0, ADAPTED_TRAINED, SOURCE_ON_TARGET
from transfer.publish.model_card import BIBLE_LICENCES, CARD_FILE, SAMPLE_TEXT, source_licence
from transfer.publish.registry_records import ModelRecord, Registration
from transfer.publish.summary import markdown_table

if TYPE_CHECKING:
    from transfer.hydra.run import HydraPlan, HydraResult

#: a Hydra score label -> the registry's label of the same model
REGISTRY_LABELS = {"source_model_on_target": SOURCE_ON_TARGET, "adapted_step0": ADAPTED_STEP0,
                   "hydra_trained": ADAPTED_TRAINED}
_TITLES = {"source_model_on_target": "source model, own tokenizer",
           "adapted_step0": "this language's table and head at step 0 (initialized)",
           "hydra_trained": "after the Hydra training (shared body)"}


def language_record(result: HydraResult, plan: HydraPlan, language: str) -> ModelRecord:
    """The registry record of one language's exported folder."""
    cfg = plan.languages[language].config
    language_plan = plan.languages[language]
    source_info = read_json(Path(language_plan.stage("source").path) / "source.json")
    prefix = result.metric
    metrics = {f"{prefix}.{REGISTRY_LABELS[label]}": float(value)
               for label, value in result.scores[language].items() if label in REGISTRY_LABELS}
    losses = result.train_log.get("losses") or []
    if losses:
        metrics["train.final_loss"] = float(losses[-1])
    metrics["train.steps"] = float(result.train_log.get("steps", len(losses)))
    metrics["seconds"] = float(result.seconds)
    stage_keys = {label.removeprefix(f"{language}:"): key for label, key in result.stage_keys.items()
                  if label.startswith(f"{language}:")}
    stage_keys["hydra"] = result.stage_keys["hydra"]
    return ModelRecord(
        model_name=Path(result.language_dirs[language]).name, target_language=language,
        target_languages=list(result.config.target_languages), source_model=cfg.source_model,
        source_fingerprint=source_info.get("fingerprint"), source_architecture=source_info.get("architecture"),
        strategy=f"hydra/{cfg.strategy}", strategy_params=cfg.strategy_params,
        tokenizer_family=source_info.get("tokenizer_family"), tokenizer_vocab_size=cfg.vocab_size,
        code_version=language_plan.code_version, stage_keys=stage_keys, eval_split=cfg.eval_split,
        eval_texts=cfg.eval_texts, metrics=metrics, config=result.config.model_dump(mode="json"),
        model_dir=result.language_dirs[language])


def render_language_card(result: HydraResult, plan: HydraPlan, language: str) -> str:
    """The model card of one language's folder: what the Hydra run did, its scores, its data."""
    cfg = plan.languages[language].config
    run_cfg = result.config
    source = source_licence(cfg.source_model)
    others = [lang for lang in run_cfg.target_languages if lang != language]
    scores = result.scores[language]
    meta: dict = {"language": [language], "license": source.licence, "library_name": "transformers",
                  "pipeline_tag": "text-generation",
                  "tags": ["vocab-transfer", "vocabulary-adaptation", "hydra", f"init-{cfg.strategy}"]}
    if source.base_model:
        meta["base_model"] = source.base_model
    rows = [[_TITLES[label], f"{scores[label]:.4f}"] for label in _TITLES if label in scores]
    data_rows = [[BIBLE_LICENCES.get(code, (f"Bible translation `{code}`", "licence not recorded here"))[0],
                  "training and held-out texts",
                  BIBLE_LICENCES.get(code, ("", "licence not recorded here; check before redistribution"))[1]]
                 for code in cfg.target_bible]
    data_rows += [[f"`{Path(path).name}`", "training text", "the user's file; licence not recorded"]
                  for path in cfg.target_files]
    data_rows.append(["source model weights", "the shared body", source.text])
    name = Path(result.language_dirs[language]).name
    steps = result.train_log.get("steps", 0)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()
    sections = [
        f"---\n{front}\n---",
        f"# {name}",
        (f"The **{language}** head of a Hydra run (trans-tokenization, Remy et al. 2024) of "
         f"`{cfg.source_model}` by vocab-transfer: one transformer body, shared by "
         + (f"{', '.join(others)} and {language}" if others else language)
         + f", with an embedding table and LM head per language. This language's rows were "
           f"initialized with the **{cfg.strategy}** strategy on its own {cfg.vocab_size}-token "
           f"tokenizer; the Hydra training ran {steps} steps, each batch in one language with "
           "that language's table and head. This folder is the body with this language's table "
           "and head: an ordinary model."),
        "## Metrics",
        f"Bits per byte on {cfg.eval_texts} held-out {cfg.eval_split} texts of {language} (lower is better):",
        markdown_table(["model", result.metric], rows),
        "## Data and licences",
        markdown_table(["data", "use", "licence"], data_rows),
        "## How to load",
        ("A plain Hugging Face folder (safetensors); no custom code:\n\n"
         "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
         f'tokenizer = AutoTokenizer.from_pretrained("path/to/{name}")\n'
         f'model = AutoModelForCausalLM.from_pretrained("path/to/{name}")\n'
         f'inputs = tokenizer("{SAMPLE_TEXT.get(language, "Hello")}", return_tensors="pt")\n'
         "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=20)[0]))\n```\n\n"
         f"Reading one language and writing another: `vocab-transfer translate {Path(result.model_dir).name} "
         f"--from {run_cfg.parallel_source_language} --to {language} --text-file F` on the Hydra folder."),
        "## Reproduce",
        "```bash\nvocab-transfer adapt --hydra " + " ".join(f"--target-language {lang}" for lang in
                                                           run_cfg.target_languages)
        + f" --strategy {run_cfg.strategy} --train-steps {run_cfg.train_steps}\n```\n\n"
        + "Stage keys: " + ", ".join(f"{k} `{v}`" for k, v in sorted(result.stage_keys.items())
                                     if k == "hydra" or k.startswith(f"{language}:")) + ".",
        "## Limitations",
        ("Only the tables and heads were trained, on a small budget; the body keeps the source "
         "model's knowledge and biases. A starting point for further training, not a finished model."),
    ]
    return "\n\n".join(sections) + "\n"


def publish_hydra(result: HydraResult, plan: HydraPlan) -> dict[str, Registration]:
    """Write each language folder's card and, where the config asks (``register_model``),
    register each folder; returns the registrations by language."""
    from transfer.publish.registry_store import Registry

    for language, folder in result.language_dirs.items():
        atomic_write(Path(folder) / CARD_FILE, render_language_card(result, plan, language))
    cfg = result.config
    if not cfg.register_model:
        return {}
    registry = Registry(cfg.tracking_uri, artifacts_root=Path(cfg.output_dir).parent,
                        prefix=cfg.registered_model_prefix)
    return {language: registry.register(language_record(result, plan, language))
            for language in result.language_dirs}

