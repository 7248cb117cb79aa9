"""``subsetsearch study CONFIG.yaml``: one of the paper's studies as a grid of runs.

A study config names the analysis (``study:``), a base run config (``base:``), the cells that
change it (``cells:``, name -> the keys that differ) and how many trials (seeds 0..trials-1)
each cell runs. The study directory::

    STUDY_DIR/study.yaml                 the study config
    STUDY_DIR/runs/CELL/trial_T/         one ordinary run directory per cell and trial (seed T)
    STUDY_DIR/report/                    the study's table (study.json, study.md), figure, report.html

Runs go one after the other and each resumes like ``subsetsearch run``, so a killed study started
again continues where it stopped. Work that two cells of a trial would repeat exactly (the same
random start, the same acquisition ensemble, the same baseline models) is trained once and
hard-linked into the later cell's run directory (see :func:`shared_paths`).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.files import InputError
from subsetsearch.pipeline.config import (
    JSON_SCHEMA_DIALECT,
    PLACEMENT_KEYS,
    EnsembleConfig,
    RunConfig,
    config_schema,
    executor_changes,
    format_validation_error,
    read_yaml,
)
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.train.settings import _Strict

#: The analyses a study can name (functions of subsetsearch.report.studies).
STUDIES = ("schemes", "functions", "ensembles", "consensus", "outliers", "architecture", "curves")
_CELL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class StudyConfig(_Strict):
    """A ``subsetsearch study`` config: one of the paper's studies as a grid of runs."""

    study: Literal[STUDIES]  # type: ignore[valid-type]
    """The analysis that reads the cells."""
    name: str = "study"
    trials: int = Field(1, gt=0)
    """Seeds 0..trials-1 of every cell."""
    study_dir: Path | None = None
    """Default: runs/<name>."""
    base: dict = Field(default_factory=dict)
    """A run config shared by the cells."""
    cells: dict[str, dict]
    """Cell name -> the run-config keys it changes (nested, merged into base)."""

    @field_validator("cells")
    @classmethod
    def _cells(cls, cells: dict[str, dict]) -> dict[str, dict]:
        if not cells:
            raise ValueError("give at least one cell")
        for name in cells:
            if not _CELL_NAME.match(name):
                raise ValueError(f"cell name '{name}' must be letters, digits, '_', '-' or '.' (it names a folder)")
        return cells

    def cell_config(self, cell: str, trial: int) -> RunConfig:
        merged = _merge(copy.deepcopy(self.base), self.cells[cell] or {})
        for key in ("seed", "run_dir", "name"):
            merged.pop(key, None)
        merged.update(seed=trial, name=f"{self.name}-{cell}")
        return RunConfig.model_validate(merged)

    def resolved_dir(self) -> Path:
        return self.study_dir if self.study_dir is not None else Path("runs") / self.name


def study_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a study config; ``base`` and each cell are run configs.

    Every run-config key has a default, so the schema of a whole run config also describes the
    partial ones a cell gives (the merged config is checked when the study is loaded).
    """
    run = config_schema()
    schema = StudyConfig.model_json_schema(mode="validation")
    definitions = {**run.pop("$defs", {}), **schema.pop("$defs", {})}
    run.pop("$schema")
    definitions["RunConfig"] = run
    properties = schema["properties"]
    properties["base"] = {**properties["base"], "$ref": "#/$defs/RunConfig"}
    properties["cells"] = {**properties["cells"], "additionalProperties": {"$ref": "#/$defs/RunConfig"}}
    return {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": "subsetsearch study config", "$defs": definitions}


def _merge(base: dict, change: dict) -> dict:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_study_config(path: Path, executor: str | None = None, ray_address: str | None = None) -> StudyConfig:
    """Parse and check a study config and every cell's run config; InputError (one line) if bad.

    ``executor`` and ``ray_address`` (the command line's) set the base's ``executor:`` keys.
    """
    raw = read_yaml(path, "study config")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a study config is a mapping with study, base and cells; see configs/studies/")
    changes = executor_changes(executor, ray_address)
    if changes and isinstance(raw.get("base", {}), dict):
        raw = {**raw, "base": _merge(raw.get("base", {}), {"executor": changes})}
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as error:
        raise InputError(f"{path}: {format_validation_error(error)}") from None
    for cell in config.cells:
        try:
            config.cell_config(cell, 0)
        except ValidationError as error:
            raise InputError(f"{path}: cell '{cell}': {format_validation_error(error)}") from None
    return config


def run_dir_of(study_dir: Path, cell: str, trial: int) -> Path:
    return Path(study_dir) / "runs" / cell / f"trial_{trial}"


def shared_paths(donor: RunConfig, config: RunConfig) -> list[str]:
    """Paths (relative to the run directory) that a run of ``donor`` writes exactly as a run of
    ``config`` would, so a study trains them once. Only classification runs of the same data and
    seed share anything; every rule below follows from how
    :class:`~subsetsearch.pipeline.search.Search` derives its seeds."""
    if donor.task != "classification" or config.task != "classification":
        return []
    if donor.seed != config.seed or donor.data != config.data:
        return []
    same_training = (donor.model, donor.train) == (config.model, config.train)
    same_early = same_training and donor.ensemble == config.ensemble
    same_acquisition = same_early and donor.final_ensemble == config.final_ensemble
    a, b = donor.search, config.search
    paths: list[str] = []
    if a == b and (same_acquisition or a.scheme in ("random", "full")):
        paths += [f"iter_{i:02d}" for i in range(len(a.budgets))] + ["subset.parquet"]
    elif a == b and same_early and a.scheme in ("build_up", "auto_duplication"):
        last = len(a.budgets) - 1  # only the last step's ensemble differs: the steps before it are the same
        paths += [f"iter_{i:02d}" for i in range(last)] + _shared_member_runs(donor, config, last)
    elif a.scheme in ("pretrain", "compress") and b.scheme in ("pretrain", "compress"):
        if same_acquisition:  # the full-pool ensemble and its scores
            paths += ["iter_00/members", "iter_00/stats.npz", "iter_00/votes.npz"]
        else:  # another ensemble over the same training runs
            paths += _shared_member_runs(donor, config, 0)
    elif a.scheme == b.scheme and a.scheme in ("build_up", "auto_duplication") and a.budgets[0] == b.budgets[0]:
        paths.append("iter_00")  # the random start
        same_first = same_training and _ensemble_of(donor, 1) == _ensemble_of(config, 1)
        if same_first and a.score_subset == b.score_subset:  # the first ensemble, trained on the start, scoring
            paths += ["iter_01/members", "iter_01/stats.npz", "iter_01/votes.npz"]
        else:
            paths += _shared_member_runs(donor, config, 1)
    same_models = (
        donor.subset_model_config(),
        donor.subset_train_config(),
        donor.subset_model.models,
    ) == (config.subset_model_config(), config.subset_train_config(), config.subset_model.models)
    if same_models:
        if "full" in donor.compare and "full" in config.compare:
            paths.append("models/full")
        if (
            "random" in donor.compare
            and "random" in config.compare
            and "random" not in (a.scheme, b.scheme)  # a random scheme's own models are named random too
            and a.budgets == b.budgets
        ):
            paths += [f"models/random@iter_{i:02d}" for i in range(len(a.budgets))] + ["models/random"]
    return paths


def _ensemble_of(config: RunConfig, i: int) -> EnsembleConfig:
    return config.ensemble_at(i, len(config.search.budgets))


def _shared_member_runs(donor: RunConfig, config: RunConfig, i: int) -> list[str]:
    """Training runs of step i's ensemble that two ensemble configurations over the same training
    have in common: run r is the same run when the model and training are, and it serves when the
    donor saved every checkpoint epoch the other needs (``seeds`` ensembles keep a best epoch instead)."""
    theirs, ours = _ensemble_of(donor, i), _ensemble_of(config, i)
    if (donor.model, donor.train) != (config.model, config.train) or "seeds" in (theirs.kind, ours.kind):
        return []
    if not set(config.checkpoint_epochs(ours)) <= set(donor.checkpoint_epochs(theirs)):
        return []
    return [f"iter_{i:02d}/members/run_{r}" for r in range(min(theirs.runs, ours.runs))]


def link_shared(donor_dir: Path, run_dir: Path, paths: list[str]) -> int:
    """Hard-link the finished parts of ``paths`` from ``donor_dir`` into ``run_dir`` where
    ``run_dir`` has nothing yet; the number of files linked. Files are only ever replaced by rename,
    so a link never sees another run's later writes."""
    linked = 0
    for relative in paths:
        source, target = donor_dir / relative, run_dir / relative
        if not source.exists() or target.exists():
            continue
        if source.is_file():
            files = [source]
        elif source.name.startswith("iter_") and not (source / "metrics.json").is_file():
            continue  # an unfinished step
        else:
            # training runs only when finished; statistics as they are (scoring resumes from them)
            files = [
                f
                for f in sorted(source.rglob("*"))
                if f.is_file() and not f.name.startswith(".") and _finished_run(f, source)
            ]
        for f in files:
            destination = target / f.relative_to(source) if f != source else target
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, destination)
            except OSError:
                shutil.copy2(f, destination)
            linked += 1
    return linked


def _finished_run(path: Path, root: Path) -> bool:
    """True unless ``path`` lies in a training-run folder (one with state.safetensors) without done.json."""
    for folder in [path.parent, *path.parent.parents]:
        if (folder / "state.safetensors").is_file() or (folder / "done.json").is_file():
            return (folder / "done.json").is_file()
        if folder == root:
            break
    return True


def _what_it_computes(study: dict) -> dict:
    """A dumped study config without its cells and without where it runs (``PLACEMENT_KEYS``)."""
    base = {k: v for k, v in (study.get("base") or {}).items() if k not in PLACEMENT_KEYS}
    return {**{k: v for k, v in study.items() if k != "cells"}, "base": base}


def claim_study_dir(config: StudyConfig, study_dir: Path) -> None:
    import yaml

    resolved = config.model_dump(mode="json", exclude={"study_dir"})
    path = study_dir / "study.yaml"
    if path.is_file():
        previous = yaml.safe_load(path.read_text()) or {}
        if _what_it_computes(previous) != _what_it_computes(resolved):
            raise InputError(
                f"study directory '{study_dir}' holds another study; give another --study-dir, "
                "or delete that directory to start over"
            )
        if previous.get("cells") != resolved["cells"]:  # cells added or changed: each run dir guards itself
            with atomic_path(path) as tmp:
                tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))
        return
    if study_dir.exists() and any(study_dir.iterdir()):
        raise InputError(f"'{study_dir}' exists and is not a study directory; give another --study-dir")
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))


def run_study(config: StudyConfig, study_dir: Path | None = None, reporter: Reporter | None = None) -> Path:
    """Run (or resume) every cell and trial of a study; the study directory."""
    from subsetsearch.internal.budgets import budget_counts
    from subsetsearch.pipeline.run import pool_size, search_for

    reporter = reporter or Reporter(quiet=True)
    study_dir = Path(study_dir) if study_dir is not None else config.resolved_dir()
    configs = {(cell, t): config.cell_config(cell, t) for t in range(config.trials) for cell in config.cells}
    checked: list[object] = []
    for run_config in configs.values():  # data and budgets checked before anything is written
        key = (run_config.data, run_config.search.budgets)
        if key not in checked:
            budget_counts(run_config.search.budgets, pool_size(run_config))
            checked.append(key)
    for (cell, t), run_config in configs.items():  # a changed cell's old runs are refused before any work
        search_for(run_config, run_dir_of(study_dir, cell, t)).check_run_dir()
    claim_study_dir(config, study_dir)
    with configs[next(iter(configs))].executor.make() as executor:  # one executor (one Ray) for every run
        for t in range(config.trials):
            done: list[tuple[RunConfig, Path]] = []
            for cell in config.cells:
                run_config, run_dir = configs[(cell, t)], run_dir_of(study_dir, cell, t)
                search = search_for(run_config, run_dir, reporter, executor)
                search.claim_run_dir()
                linked = sum(link_shared(d, run_dir, shared_paths(c, run_config)) for c, d in done)
                reporter.line(
                    f"study {config.name}: cell {cell}, trial {t + 1}/{config.trials}"
                    + (f" ({linked} files shared with earlier cells)" if linked else "")
                )
                search.run()
                done.append((run_config, run_dir))
    return study_dir
