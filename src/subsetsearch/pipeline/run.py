"""``subsetsearch run``: pick the task a config names and run its search; the summary it prints.

The work is the search skeleton's (:mod:`subsetsearch.pipeline.search`) and the task's
(:mod:`~subsetsearch.pipeline.classify`, :mod:`~subsetsearch.pipeline.detect`); this module only
dispatches (docs/architecture.md, "The search skeleton").
"""

from __future__ import annotations

from pathlib import Path

from subsetsearch.executors import Executor
from subsetsearch.pipeline.classify import ClassificationSearch, load_splits
from subsetsearch.pipeline.config import RunConfig
from subsetsearch.pipeline.detect import DetectionSearch
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.pipeline.search import RunResult, Search

TASKS: dict[str, type[Search]] = {"classification": ClassificationSearch, "detection": DetectionSearch}


def search_for(
    config: RunConfig, run_dir: Path | None = None, reporter: Reporter | None = None, executor: Executor | None = None
) -> Search:
    """The search of a config's task (classification or detection)."""
    return TASKS[config.task](config, run_dir, reporter, executor)


def run_config(config: RunConfig, run_dir: Path | None = None, reporter: Reporter | None = None) -> RunResult:
    """Run (or resume) the search a config describes."""
    return search_for(config, run_dir, reporter).run()


def pool_size(config: RunConfig) -> int:
    """How many samples the config's pool holds (loads the data of a classification config)."""
    if config.task == "detection":
        return config.detection_config().images
    return len(load_splits(config).pool)


def summary(result: RunResult, config: RunConfig) -> str:
    """One screen: what was searched, the subset, and the test result of every variant."""
    ensemble = config.ensemble.kind
    if config.final_ensemble is not None:
        ensemble += f", last step {config.final_ensemble.kind}"
    lines = [
        f"run directory   {result.run_dir}",
        f"scheme          {config.search.scheme} ({config.search.function}, ensemble {ensemble})",
        f"subset          {result.subset.size} of {result.pool_size} samples "
        f"({100 * result.subset.size / result.pool_size:.1f}%, {len(result.subset.index)} unique)"
        f" -> {result.run_dir / 'subset.parquet'}",
        f"search cost     {result.search_seconds:.1f} s (ensemble training + scoring)",
    ]
    if result.info is not None:
        precision = result.info.precision
        models = (
            precision["acquisition"]
            if precision["acquisition"] == precision["subset_model"]
            else f"{precision['acquisition']} (acquisition), {precision['subset_model']} (subset models)"
        )
        lines.append(f"device          {result.info.device}, {models}")
    lines.append("")
    return "\n".join(lines + search_for(config, result.run_dir).summary_lines(result.variants))
