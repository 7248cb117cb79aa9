"""``subsetsearch run``: run a config's search; the summary it prints.

The work is the driver's (:mod:`subsetsearch.pipeline.search`), which runs the config's scheme
(:mod:`~subsetsearch.pipeline.schemes`) over its task (:mod:`~subsetsearch.pipeline.classify`,
:mod:`~subsetsearch.pipeline.detect`); this module only starts it and words the result
(docs/architecture.md, "A search in three parts").
"""

from __future__ import annotations

from pathlib import Path

from subsetsearch.balance import imbalance_line, imbalanced_classes
from subsetsearch.executors import Executor
from subsetsearch.pipeline.classify import load_splits
from subsetsearch.pipeline.config import RunConfig
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.pipeline.schemes import SCHEMES
from subsetsearch.pipeline.search import Search, SharedWork
from subsetsearch.pipeline.task import RunResult
from subsetsearch.rundir import DatasetRecord, RunLayout


def search_for(
    config: RunConfig,
    run_dir: Path | None = None,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
    shared: SharedWork | None = None,
) -> Search:
    """The search a config describes, in ``run_dir``."""
    return Search(config, run_dir, reporter, executor, shared)


def run_config(config: RunConfig, run_dir: Path | None = None, reporter: Reporter | None = None) -> RunResult:
    """Run (or resume) the search a config describes."""
    return search_for(config, run_dir, reporter).run()


def pool_size(config: RunConfig) -> int:
    """How many samples the config's pool holds (loads the data of a classification config)."""
    if config.task == "detection":
        return config.detection_config().images
    return len(load_splits(config).pool)


def augmentation(config: RunConfig) -> str:
    """The augmentations the run's models trained with, in words (the subset models' apart where
    their own ``train`` differs)."""
    if config.task == "detection":
        return "none (a detector trains on its images as they are)"
    acquisition, subset = config.train.augment, config.subset_train_config().augment
    if acquisition == subset:
        return acquisition.describe()
    return f"{acquisition.describe()} (acquisition), {subset.describe()} (subset models)"


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
        f" -> {RunLayout(result.run_dir).subset}",
        f"search cost     {result.search_seconds:.1f} s (ensemble training + scoring)",
    ]
    if SCHEMES[config.search.scheme].ensemble:
        lines.append(f"selection       {config.search.rule().describe()}")
    dataset = DatasetRecord.load(RunLayout(result.run_dir).dataset)
    if dataset is not None:
        flags = imbalanced_classes(dataset.per_class, result.subset.index, multiplicity=result.subset.multiplicity)
        if flags:
            lines.append(f"class balance   {imbalance_line(flags, dataset.class_names)}")
    if result.info is not None:
        precision = result.info.precision
        models = (
            precision["acquisition"]
            if precision["acquisition"] == precision["subset_model"]
            else f"{precision['acquisition']} (acquisition), {precision['subset_model']} (subset models)"
        )
        lines.append(f"device          {result.info.device}, {models}")
    lines.append(f"augmentation    {augmentation(config)}")
    lines.append("")
    return "\n".join(lines + result.summary_lines())
