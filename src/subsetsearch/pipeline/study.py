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
hard-linked into the later cell's run directory, found by the fingerprint of its inputs
(:class:`StudyWork`).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator

from subsetsearch.errors import InputError
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.directories import marker_kind, write_marker
from subsetsearch.pipeline.config import (
    JSON_SCHEMA_DIALECT,
    PLACEMENT_KEYS,
    RunConfig,
    config_schema,
    executor_changes,
    format_validation_error,
    read_yaml,
)
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.rundir import RunLayout, StudyLayout, TrainingRunFiles, WorkLog, directory_kind
from subsetsearch.train.settings import StrictModel

#: The analyses a study can name (functions of subsetsearch.report.studies).
STUDIES = ("schemes", "functions", "ensembles", "consensus", "outliers", "architecture", "curves")
_CELL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class StudyConfig(StrictModel):
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

    _config_dir: Path | None = PrivateAttr(None)  # where a model.factory script's relative path starts

    def cell_config(self, cell: str, trial: int) -> RunConfig:
        merged = _merge(copy.deepcopy(self.base), self.cells[cell] or {})
        for key in ("seed", "run_dir", "name"):
            merged.pop(key, None)
        merged.update(seed=trial, name=f"{self.name}-{cell}")
        return RunConfig.model_validate(merged, context={"config_dir": self._config_dir})

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
    config._config_dir = Path(path).parent
    for cell in config.cells:
        try:
            config.cell_config(cell, 0)
        except ValidationError as error:
            raise InputError(f"{path}: cell '{cell}': {format_validation_error(error)}") from None
    return config


class StudyWork:
    """The finished work of a study's runs, found by fingerprint: a run takes a piece another run
    finished from the same inputs (:class:`~subsetsearch.pipeline.search.SharedWork`).

    Each run directory records the fingerprint of every finished piece (``work.json``: a step,
    an acquisition training run, a step's statistics, a subset model); a fingerprint covers the
    data, the config sections, the seeds and the rows that determine the piece, so work is shared
    exactly when it would come out the same, and a change of seeding shares nothing it should not.
    Pieces are hard-linked (copied where links fail): files are only ever replaced by rename, so a
    link never sees another run's later writes.
    """

    def __init__(self) -> None:
        self.runs: list[RunLayout] = []
        self.linked = 0

    def add(self, layout: RunLayout) -> None:
        """A run whose finished work later runs may take."""
        if all(run.root != layout.root for run in self.runs):
            self.runs.append(layout)

    def fetch(self, layout: RunLayout, path: Path, fingerprint: str, accepts: Callable[[dict], bool] | None) -> bool:
        for donor in self.runs:
            if donor.root == layout.root:
                continue
            pieces = WorkLog(donor).pieces()
            for relative, entry in pieces.items():
                source = donor.root / relative
                if entry.get("fingerprint") != fingerprint or (accepts is not None and not accepts(entry)):
                    continue
                if not source.exists():
                    continue
                self.linked += _link(source, path)
                inside = {
                    layout.relative(path / key[len(relative) + 1 :]): value
                    for key, value in pieces.items()
                    if key.startswith(relative + "/")
                }
                WorkLog(layout).record_many({layout.relative(path): entry, **inside})
                return True
        return False


def _link(source: Path, target: Path) -> int:
    """Hard-link ``source`` (a file, or a folder's finished files) to ``target``; files linked."""
    if source.is_file():
        files = [source]
    else:  # training runs only when finished; temporaries never
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
    return len(files)


def _finished_run(path: Path, root: Path) -> bool:
    """True unless ``path`` lies in a training-run folder (one with a state) that is not done."""
    for folder in [path.parent, *path.parent.parents]:
        files = TrainingRunFiles(folder)
        if files.state.is_file() or files.done.is_file():
            return files.done.is_file()
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
    path = StudyLayout(study_dir).config
    kind = directory_kind(study_dir) if Path(study_dir).is_dir() else None
    if kind not in (None, "study") or (kind is None and Path(study_dir).exists() and any(Path(study_dir).iterdir())):
        raise InputError(f"'{study_dir}' exists and is not a study directory; give another --study-dir")
    if kind == "study" and marker_kind(study_dir) is None:  # a study of 0.1.0 or 0.2.0: marked ours from now on
        write_marker(study_dir, "study")
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
    write_marker(study_dir, "study")  # first: the directory is recognisably ours before anything else
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))


def run_study(config: StudyConfig, study_dir: Path | None = None, reporter: Reporter | None = None) -> Path:
    """Run (or resume) every cell and trial of a study; the study directory."""
    from subsetsearch.internal.budgets import budget_counts
    from subsetsearch.pipeline.run import pool_size, search_for

    reporter = reporter or Reporter(quiet=True)
    study_dir = Path(study_dir) if study_dir is not None else config.resolved_dir()
    layout = StudyLayout(study_dir)
    configs = {(cell, t): config.cell_config(cell, t) for t in range(config.trials) for cell in config.cells}
    checked: list[object] = []
    for run_config in configs.values():  # data and budgets checked before anything is written
        key = (run_config.data, run_config.search.budgets)
        if key not in checked:
            budget_counts(run_config.search.budgets, pool_size(run_config))
            checked.append(key)
    for (cell, t), run_config in configs.items():  # a changed cell's old runs are refused before any work
        search_for(run_config, layout.run(cell, t).root).check_run_dir()
    claim_study_dir(config, study_dir)
    shared = StudyWork()
    for cell, t in configs:  # runs of an earlier session: their work is there to take
        if layout.run(cell, t).work.is_file():
            shared.add(layout.run(cell, t))
    with configs[next(iter(configs))].executor.make() as executor:  # one executor (one Ray) for every run
        for t in range(config.trials):
            for cell in config.cells:
                run = layout.run(cell, t)
                search = search_for(configs[(cell, t)], run.root, reporter, executor, shared)
                search.claim_run_dir()
                reporter.line(f"study {config.name}: cell {cell}, trial {t + 1}/{config.trials}")
                before = shared.linked
                search.run()
                if shared.linked > before:
                    reporter.line(
                        f"study {config.name}: cell {cell} took {shared.linked - before} files of earlier cells"
                    )
                shared.add(run)
    return study_dir
