"""One model of several languages against one model per language (issue #29, item 5).

SmolLM2-135M-Instruct -> languages with packaged Bibles (default Swahili, Indonesian,
Turkish, Vietnamese, Polish), through the product's own path (``run_adaptation``):

- ``joint``: one run of every language (``target_language`` a list), one tokenizer of
  ``--vocab-size`` tokens, ``--train-steps`` x (number of languages) training steps;
- ``joint, ofa rank R``: the same with OFA's factorized embeddings at rank ``--rank``;
- ``single <lang>``: one run per language, each ``--train-steps`` steps and a tokenizer of
  the same size: the single models together train on as many tokens as the joint one.

Each row: BPB per language after training (the joint runs' ``adapted_trained_on_<lang>``;
a single run's ``adapted_trained``), the joint runs' byte-weighted mean, and the parameter
count of the exported model (the single models summed).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/many_languages.py [--languages sw id] [--vocab-size 16000]
    .venv/bin/python benchmarks/many_languages.py --smoke     # two languages, tiny budget, temporary folder

Results: ``results/many_languages.json`` (rows appended as runs finish; a row already there
is skipped, so a killed run resumes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transfer.publish.labels import (
    ADAPTED_STEP0,
    ADAPTED_TRAINED,
    SOURCE_ON_TARGET,
    final_language_scores,
    final_metric,
    language_scores,
)
from transfer.settings.config import AdaptConfig

RESULTS = ROOT / "benchmarks" / "results"


def _tensor_sizes(path: Path) -> dict[str, int]:
    """Each tensor's element count, from a safetensors header (no weights loaded)."""
    from safetensors import safe_open

    sizes = {}
    with safe_open(str(path), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
            n = 1
            for dim in handle.get_slice(name).get_shape():
                n *= dim
            sizes[name] = n
    return sizes


def parameter_count(model_dir: Path) -> int:
    """Parameters of an exported model (its ``model*.safetensors``; OFA's factorized file beside
    them is the same embedding in another form, counted apart)."""
    return sum(sum(_tensor_sizes(path).values()) for path in sorted(Path(model_dir).glob("model*.safetensors")))


def embedding_parameters(model_dir: Path) -> int:
    """The trained embedding's parameters: OFA's factors (coordinates V x r and primitives
    r x d), else the input embedding and an untied head."""
    factors = Path(model_dir) / "factorized_embedding.safetensors"
    if factors.is_file():
        return sum(_tensor_sizes(factors).values())
    sizes: dict[str, int] = {}
    for path in sorted(Path(model_dir).glob("model*.safetensors")):
        sizes.update(_tensor_sizes(path))
    return sum(n for name, n in sizes.items() if name.endswith(("embed_tokens.weight", "lm_head.weight")))


def run(cfg: AdaptConfig) -> dict[str, Any]:
    from transfer.pipeline import run_adaptation

    started = time.perf_counter()
    result = run_adaptation(cfg)
    langs = cfg.target_languages
    scores = result.scores
    if len(langs) > 1:
        per_language = final_language_scores(scores, langs)
        step0, source = language_scores(scores, ADAPTED_STEP0, langs), language_scores(scores, SOURCE_ON_TARGET, langs)
    else:
        per_language = {langs[0]: final_metric(scores)}
        step0, source = {langs[0]: scores.get(ADAPTED_STEP0)}, {langs[0]: scores.get(SOURCE_ON_TARGET)}
    return {"languages": per_language, "step0": step0, "source": source, "mean": scores.get(ADAPTED_TRAINED),
            "parameters": parameter_count(Path(result.model_dir)),
            "embedding_parameters": embedding_parameters(Path(result.model_dir)),
            "seconds": round(time.perf_counter() - started, 1),
            "model_dir": result.model_dir}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--languages", nargs="+", default=["sw", "id", "tr", "vi", "pl"])
    parser.add_argument("--vocab-size", type=int, default=64000)
    parser.add_argument("--train-steps", type=int, default=20, help="steps per language")
    parser.add_argument("--eval-texts", type=int, default=300)
    parser.add_argument("--strategy", default="fvt")
    parser.add_argument("--rank", type=int, default=100)
    parser.add_argument("--no-ofa", action="store_true", help="skip the OFA-factorized joint run")
    parser.add_argument("--ofa-parallel-pairs", type=int, default=5000,
                        help="OFA's eflomal dictionary from the first N train verse pairs of each "
                             "section (parallel_max_pairs; 0: all): all five Bibles' pairs take eflomal "
                             "over 20 minutes on 2 cores")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--report", action="store_true", help="only rebuild the table from the JSON")
    parser.add_argument("--output", type=Path, default=RESULTS / "many_languages.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp()) if args.smoke else None
    if args.smoke:
        args.languages, args.vocab_size, args.train_steps, args.eval_texts = args.languages[:2], 2000, 2, 20
        args.ofa_parallel_pairs = min(args.ofa_parallel_pairs or 500, 500)
        args.output = tmp / "many_languages.json"
    common: dict[str, Any] = {"vocab_size": args.vocab_size, "eval_texts": args.eval_texts, "register_model": False,
                              "card_samples": 0, "source_bible": ["k"], "seed": 0}
    if tmp is not None:
        common.update(cache_dir=tmp / "cache", output_dir=tmp / "models")
    n = len(args.languages)
    # the joint model and the single ones first: OFA's joint run (fastText on every language,
    # an induced dictionary) is the slowest, so it comes last
    cases: list[tuple[str, dict[str, Any]]] = [
        ("joint", {"target_language": args.languages, "strategy": args.strategy, "train_steps": args.train_steps * n})]
    cases += [(f"single {lang}", {"target_language": lang, "strategy": args.strategy,
                                  "train_steps": args.train_steps}) for lang in args.languages]
    if not args.no_ofa:
        cases.append((f"joint, ofa rank {args.rank}", {"target_language": args.languages, "strategy": "ofa",
                                                        "strategy_params": {"rank": args.rank},
                                                        "parallel_max_pairs": args.ofa_parallel_pairs or None,
                                                        "train_steps": args.train_steps * n}))
    rows: list[dict[str, Any]] = json.loads(args.output.read_text()) if args.output.is_file() else []
    for row in rows:  # counted again from the folders (an earlier count took OFA's factor file in)
        if Path(row["model_dir"]).is_dir():
            row["parameters"] = parameter_count(Path(row["model_dir"]))
            row["embedding_parameters"] = embedding_parameters(Path(row["model_dir"]))
    if args.report:
        args.output.write_text(json.dumps(rows, indent=1) + "\n")
        write_table(rows, args.output.with_suffix(".md"))
        return
    done = {(row["case"], tuple(row["settings"]["languages"]), row["settings"]["vocab_size"],
             row["settings"]["train_steps"]) for row in rows}
    settings = {"languages": args.languages, "vocab_size": args.vocab_size, "train_steps": args.train_steps,
                "eval_texts": args.eval_texts, "strategy": args.strategy}
    if not args.no_ofa:
        settings["ofa_parallel_pairs"] = args.ofa_parallel_pairs
    for name, fields in cases:
        if (name, tuple(args.languages), args.vocab_size, args.train_steps) in done:
            continue
        measured = run(AdaptConfig(**common, **fields))
        rows.append({"case": name, "settings": settings, **measured})
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=1) + "\n")
        print(name, json.dumps({k: v for k, v in measured.items() if k != "model_dir"}), flush=True)
        write_table(rows, args.output.with_suffix(".md"))
    singles = [row for row in rows if row["case"].startswith("single ") and row["settings"] == settings]
    if singles:
        print("single models together:", sum(row["parameters"] for row in singles), "parameters")


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """One markdown table per settings: a row per model, BPB per language after training, the
    byte-weighted mean of the joint runs, parameters (the single models also summed)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(json.dumps(row["settings"], sort_keys=True), []).append(row)
    lines = ["# One model of several languages against one per language (benchmarks/many_languages.py)", ""]
    for key, group in groups.items():
        settings = json.loads(key)
        langs = settings["languages"]
        lines += [(f"SmolLM2-135M-Instruct, strategy `{settings['strategy']}` (OFA: `ofa`), one tokenizer of up to "
                  f"{settings['vocab_size']} tokens per model (BPE keeps what the text supports: one Bible supports "
                  "fewer, and the embedding column counts each model's rows), "
                  f"{settings['train_steps']} embeddings-only steps per language "
                  f"(the joint runs {settings['train_steps'] * len(langs)}), test-split bits per byte of "
                  f"{settings['eval_texts']} verses per language (lower is better)."
                  + (f" OFA's eflomal dictionary from the first {settings['ofa_parallel_pairs']} train verse pairs of each "
                     "English translation with each language (`parallel_max_pairs`)." if settings.get("ofa_parallel_pairs") else "")), "",
                  "| model | " + " | ".join(langs) + " | mean | parameters | embedding parameters | seconds |",
                  "|---|" + "---|" * (len(langs) + 4)]
        singles = {row["case"].removeprefix("single "): row for row in group if row["case"].startswith("single ")}
        source = {lang: value for row in group for lang, value in row.get("source", {}).items() if value is not None}
        if source:  # the same texts in every run: the source model on its own tokenizer, once
            lines.append("| source model, own tokenizer | " + " | ".join(
                f"{source[lang]:.3f}" if lang in source else "" for lang in langs) + " | | | | |")
        for row in group:
            if row["case"].startswith("single "):
                continue
            cells = [f"{row['languages'].get(lang, float('nan')):.3f}" for lang in langs]
            lines.append(f"| {row['case']} | " + " | ".join(cells) + f" | {row['mean']:.3f} | "
                         f"{row['parameters'] / 1e6:.1f}M | {row.get('embedding_parameters', 0) / 1e6:.1f}M | "
                         f"{row['seconds']:.0f} |")
        if singles:
            cells = [f"{singles[lang]['languages'][lang]:.3f}" if lang in singles else "" for lang in langs]
            total = sum(row["parameters"] for row in singles.values())
            embedding = sum(row.get("embedding_parameters", 0) for row in singles.values())
            seconds = sum(row["seconds"] for row in singles.values())
            lines.append(f"| one model per language ({len(singles)}) | " + " | ".join(cells)
                         + f" | | {total / 1e6:.1f}M together | {embedding / 1e6:.1f}M together | {seconds:.0f} |")
        lines.append("")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
