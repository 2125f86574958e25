"""A Hydra run (trans-tokenization, Remy et al. 2024): every target language prepared as a run of
it alone, then one body trained with all their tables and heads.

``plan_hydra`` plans each language as a run of that language alone without training
(``language_config``; ``plan_adaptation`` validates it and walks its stages: corpus, source,
tokenizer, the strategy's data, init, and the source model's and the initialized model's
scores), so a language's folders are the very folders a single-language run builds and shares,
and adds the one ``hydra`` stage over their init and corpus stages (``transfer.hydra.stage``).
``run_hydra`` executes the plan through the stage cache and exports the run: the Hydra folder
(the body once) at ``output_dir/<name>``, and one plain Hugging Face folder per target language
at ``output_dir/<name>-<lang>`` (each with a model card, and registered in MLflow when the
config says: ``transfer.hydra.publish``), with ``hydra_result.json`` holding every language's scores.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from transfer.engine.cache import StageCache, StageOutput, replacing_directory
from transfer.engine.stages import BuildContext, StageSpec, execute, read_json
from transfer.errors import TrainingError
from transfer.planning.plan import PlannedStage, RunPlan, plan_adaptation
from transfer.publish.registry_records import Registration
from transfer.settings.config import AdaptConfig

#: (stage label, "cached" | "built" | "running")
Listener = Callable[[str, str], None]
RESULT_FILE = "hydra_result.json"
#: each language's scores in a HydraResult, in report order
SCORE_LABELS = ("source_model_on_target", "adapted_step0", "hydra_trained")


def hydra_model_name(cfg: AdaptConfig) -> str:
    """The Hydra folder's name: ``<source>-hydra-<langs>-<strategy>``."""
    source, _, rest = cfg.model_name().partition(f"-{cfg.target_language}-")
    return f"{source}-hydra-{cfg.target_language}-{rest}"


def language_config(cfg: AdaptConfig, language: str) -> AdaptConfig:
    """The run of ``language`` alone that prepares its tokenizer and rows: its own corpus (part
    A's ``language_corpora``), the run's settings, no training (the hydra stage trains), not
    registered. A strategy the run left to ``auto`` is chosen again for the language's own data."""
    from transfer.corpus.languages import language_corpora
    from transfer.settings.strategy_choice import AUTO

    corpus = next(c for c in language_corpora(cfg) if c.language == language)
    values = cfg.model_dump(exclude={"strategy_choice", "target_file_languages", "parallel_file_languages"})
    values.update(target_language=language, target_bible=corpus.bible, target_files=corpus.files,
                  parallel_files=corpus.parallel, hydra=False, train_steps=0, full_steps=0, register_model=False,
                  card_samples=0)
    if cfg.strategy_choice is not None:
        values.update(strategy=AUTO, strategy_params={})
    return AdaptConfig.model_validate(values)


class HydraPlan(BaseModel):
    """A validated Hydra run: each language's plan (a run of it alone, without training), the
    hydra stage over them, and the notes to show before it starts."""

    config: AdaptConfig
    languages: dict[str, RunPlan]
    hydra: PlannedStage
    notes: list[str] = Field(default_factory=list)

    @property
    def stages(self) -> list[PlannedStage]:
        """Every stage to execute, in order, each once (the source is every language's)."""
        seen: set[tuple[str, str]] = set()
        out = []
        for lang, plan in self.languages.items():
            for stage in plan.stages:
                if (stage.stage, stage.key) not in seen:
                    seen.add((stage.stage, stage.key))
                    out.append(stage.model_copy(update={"label": f"{lang}:{stage.label}"}))
        return [*out, self.hydra]


def _output(planned: PlannedStage) -> StageOutput:
    return StageOutput(planned.stage, planned.key, Path(planned.path))


def source_config(cfg: AdaptConfig, plan: RunPlan):
    """The source model's config (weights unread), from the cached copy of ``plan``'s source
    stage when there is one."""
    from transfer.settings.memory_budget import source_model_config

    source = plan.stage("source")
    return source_model_config(cfg, Path(source.path) if source.cached else None)


def plan_hydra(cfg: AdaptConfig, *, measure: bool = False) -> HydraPlan:
    """Validate a Hydra config and plan its stages; bad input raises here, before any stage."""
    from transfer.hydra.checks import hydra_notes, hydra_problem
    from transfer.hydra.memory import check_hydra_memory
    from transfer.hydra.stage import hydra_spec

    if not cfg.hydra:
        raise TrainingError("plan_hydra: the config does not set hydra")
    problem = hydra_problem(cfg)
    if problem:
        raise TrainingError(problem)
    if cfg.nproc_per_node > 1 or cfg.nnodes > 1:  # each language's plan does not train: checked here
        from transfer.settings.validate import check_processes

        check_processes(cfg, other_hardware=measure and cfg.device_memory is not None)
    plans = {lang: plan_adaptation(language_config(cfg, lang), measure=measure) for lang in cfg.target_languages}
    first = next(iter(plans.values()))
    check_hydra_memory(cfg, source_config(cfg, first), planning_only=measure)
    source = _output(first.stage("source"))
    spec = hydra_spec(cfg, source, {lang: (_output(plan.stage("init")), _output(plan.stage("corpus")))
                                    for lang, plan in plans.items()})
    cache = StageCache(cfg.cache_dir)
    hydra = PlannedStage(label="hydra", spec=spec, path=str(cache.path(spec.stage, spec.key)),
                         cached=cache.is_complete(spec.stage, spec.key))
    if measure and not hydra.cached and first.flops_per_second:
        from transfer.planning.estimates import stage_seconds

        # the training of one model of the target vocabulary, then each language's test texts scored
        hydra.seconds = stage_seconds("hydra", cfg, first.source, first.flops_per_second, 0) + len(plans) * (
            stage_seconds("evaluate", cfg, first.source, first.flops_per_second, 0))
    notes = hydra_notes(cfg) + [f"{lang}: {note}" for lang, plan in plans.items() for note in plan.notes]
    return HydraPlan(config=cfg, languages=plans, hydra=hydra, notes=notes)


class HydraResult(BaseModel):
    """What a Hydra run produced: the Hydra folder, each language's plain folder, and each
    language's scores (the source model on its texts, the initialized rows, the trained Hydra)."""

    config: AdaptConfig
    model_dir: str
    language_dirs: dict[str, str]
    scores: dict[str, dict[str, float]]  # language -> label -> value of ``metric``
    metric: str = "bpb"
    stage_keys: dict[str, str]  # label -> stage:key
    stages_cached: dict[str, bool]
    train_log: dict
    seconds: float
    registrations: dict[str, Registration] = Field(default_factory=dict)  # language -> registry version


def run_hydra(plan: HydraPlan | AdaptConfig, *, listener: Listener | None = None,
              context: BuildContext = BuildContext(),
              execute_stage: Callable[[StageSpec, BuildContext], StageOutput] | None = None) -> HydraResult:
    """Execute a Hydra plan (a config is planned first) and export it (see the module doc).
    ``execute_stage`` runs one stage instead of the local cache (the Prefect flow wraps each
    in a task, as ``run_adaptation``'s)."""
    from transfer.hydra.publish import publish_hydra
    from transfer.hydra.store import export_language, load_hydra

    started = time.perf_counter()
    if isinstance(plan, AdaptConfig):
        plan = plan_hydra(plan)
    cfg = plan.config
    cache = StageCache(cfg.cache_dir)
    built: dict[str, StageOutput] = {}
    cached: dict[str, bool] = {}
    for planned in plan.stages:
        if listener:
            listener(planned.label, "running")
        if execute_stage is None:
            built[planned.label], cached[planned.label] = execute(planned.spec, cache, context)
        else:
            cached[planned.label] = cache.is_complete(planned.spec.stage, planned.spec.key)
            built[planned.label] = execute_stage(planned.spec, context)
        if listener:
            listener(planned.label, "cached" if cached[planned.label] else "built")
    scores: dict[str, dict[str, float]] = {}
    metric = "bpb"
    for lang, language_plan in plan.languages.items():
        scores[lang] = {}
        for label in ("source_model_on_target", "adapted_step0"):
            stage = language_plan.stage(f"evaluate.{label}")
            metrics = read_json(Path(stage.path) / "metrics.json")
            scores[lang][label] = metrics["value"]
    hydra_out = built["hydra"]
    for lang, metrics in read_json(hydra_out.file("metrics.json")).items():
        scores[lang]["hydra_trained"] = metrics["value"]
        metric = metrics["metric"]
    name = hydra_model_name(cfg)
    model_dir = Path(cfg.output_dir) / name
    with replacing_directory(model_dir) as tmp:
        shutil.copytree(hydra_out.path / "model", tmp, dirs_exist_ok=True)
    loaded = load_hydra(model_dir)
    language_dirs = {lang: str(export_language(loaded, lang, Path(cfg.output_dir) / f"{name}-{lang}"))
                     for lang in cfg.target_languages}
    result = HydraResult(
        config=cfg, model_dir=str(model_dir), language_dirs=language_dirs, scores=scores, metric=metric,
        stage_keys={p.label: f"{p.stage}:{p.key}" for p in plan.stages}, stages_cached=cached,
        train_log=read_json(hydra_out.file("train_log.json")), seconds=time.perf_counter() - started)
    # each language folder is an ordinary model: a card in it, and a registry version
    result.registrations = publish_hydra(result, plan)
    tmp_file = model_dir / f".{RESULT_FILE}.tmp"
    tmp_file.write_text(result.model_dump_json(indent=2) + "\n")
    tmp_file.replace(model_dir / RESULT_FILE)
    return result
