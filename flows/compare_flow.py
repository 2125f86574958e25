"""Compare flow: several initialization strategies on one language pair, from the UI.

A thin layer over ``transfer.publish.comparison``: each strategy runs as its own sub-run of the
single-pair flow (its stages, artifacts and state visible on its own; stages shared with
the other strategies come from the cache), then the comparison table and the overlaid
learning curves are published as artifacts of this run.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from flows.adapt_flow import adapt_flow
from flows.parameters import AdaptParameters, StrategyName, as_parameters
from flows.reports import artifact_key
from transfer.planning.plan import RunPlan
from transfer.publish.comparison import (
    Comparison,
    compare_strategies,
    comparison_folder,
    write_comparison,
)
from transfer.publish.result import AdaptResult

DEFAULT_STRATEGIES = ["mean", "overlap", "random"]


def _run_one(plan: RunPlan) -> AdaptResult:
    params = as_parameters(plan.config)
    return adapt_flow.with_options(flow_run_name=f"{params.target_language}-{params.strategy}")(params, plan)


@flow(name="compare-strategies", log_prints=True, flow_run_name="{config.target_language}-compare")
def compare_flow(
    config: AdaptParameters = AdaptParameters(),
    strategies: list[StrategyName] = DEFAULT_STRATEGIES,  # type: ignore[valid-type]
    plans: list[RunPlan] | None = None,
) -> Comparison:
    """Adapt with every strategy in ``strategies`` on the same pair and budget (``config``'s
    ``strategy`` is ignored; ``strategy_params`` may hold the parameters of all of them),
    then publish one table, best first, and one plot of every run's dev-BPB curve.
    ``plans``: each strategy's plan when the caller has made them (the CLI); from the UI
    they are left empty and made here, once each."""
    comparison = compare_strategies(config, list(strategies), run=_run_one, plans=plans)
    paths = write_comparison(comparison, comparison_folder(config, list(strategies)))
    name = f"compare-{config.target_language}-{'-'.join(strategies)}"
    table = paths["markdown"].read_text()
    create_markdown_artifact(markdown=table, key=artifact_key(name, "table"),
                             description="Strategies compared on the same texts and budget")
    if "plot" in paths:
        create_link_artifact(link=Path(paths["plot"]).resolve().as_uri(), link_text="dev BPB of every strategy",
                             key=artifact_key(name, "curves"), description="Learning curves overlaid (PNG)")
    print(table)
    return comparison
