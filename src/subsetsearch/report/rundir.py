"""Read what a run directory holds, finished or not (see :mod:`subsetsearch.pipeline.run` for the
layout). Nothing here fails on a missing file: each reader returns None or an empty list, and
:attr:`RunDir.missing` lists what was not there."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from subsetsearch.stats import EnsembleStats

_VARIANT_STEP = re.compile(r"^(?P<base>.+)@iter_(?P<step>\d+)$")


@dataclass
class SubsetTable:
    """A subset as stored in ``subset.parquet``."""

    index: np.ndarray
    multiplicity: np.ndarray
    score: np.ndarray
    iteration: np.ndarray

    @property
    def size(self) -> int:
        return int(self.multiplicity.sum())


@dataclass
class Step:
    """One ``iter_NN`` folder."""

    iteration: int
    folder: Path
    metrics: dict

    def subset(self) -> SubsetTable | None:
        return read_subset(self.folder / "subset.parquet")

    def stats(self) -> EnsembleStats | None:
        path = self.folder / "stats.npz"
        return EnsembleStats.load(path) if path.is_file() else None

    def votes(self) -> tuple[np.ndarray, list[str], np.ndarray] | None:
        """(scored rows, member names, votes [M, n]) of ``votes.npz``, or None."""
        path = self.folder / "votes.npz"
        if not path.is_file():
            return None
        with np.load(path) as saved:
            return saved["rows"], saved["names"].tolist(), saved["votes"]


@dataclass
class ModelRun:
    """A trained subset model (``models/VARIANT/model_K``)."""

    variant: str
    k: int
    folder: Path
    history: list[dict]
    seconds: float
    test_probs: Path | None


@dataclass
class RunDir:
    path: Path
    config: dict
    metrics: dict | None
    steps: list[Step]
    models: list[ModelRun]
    missing: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.config.get("task", "classification")

    @property
    def scheme(self) -> str:
        return self.config.get("search", {}).get("scheme", "build_up")

    def variants(self, test_labels: np.ndarray | None = None) -> dict[str, dict]:
        """Subset models by variant: ``subset_size``, ``test_accuracy`` (list), ``train_seconds`` (list).

        From the run's metrics.json when it finished; otherwise from the models trained so far
        (their test accuracy needs ``test_labels``)."""
        if self.metrics is not None:
            return {name: dict(v) for name, v in self.metrics.get("variants", {}).items()}
        out: dict[str, dict] = {}
        for model in self.models:
            entry = out.setdefault(model.variant, {"test_accuracy": [], "train_seconds": [], "partial": True})
            entry["train_seconds"].append(model.seconds)
            if model.test_probs is not None and test_labels is not None:
                probs = np.load(model.test_probs)
                entry["test_accuracy"].append(float(np.mean(np.argmax(probs, axis=1) == test_labels)))
            detections = model.folder / "test_metrics.json"  # a detector's COCO metrics
            if detections.is_file():
                entry.setdefault("test_metrics", []).append(json.loads(detections.read_text()))
        return out


def variant_scores(variant: dict) -> tuple[str, list[float]]:
    """(metric, one value per model) of a variant: test accuracy, or a detector's test wMAP."""
    if "test_metrics" in variant:
        return "wMAP", [m["wMAP"] for m in variant["test_metrics"]]
    return "accuracy", list(variant.get("test_accuracy", []))


def read_subset(path: Path) -> SubsetTable | None:
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return SubsetTable(*(table[name].to_numpy() for name in ("index", "multiplicity", "score", "iteration")))


def split_variant(name: str) -> tuple[str, int | None]:
    """``build_up@iter_01`` -> (``build_up``, 1); ``build_up`` -> (``build_up``, None): the final subset."""
    match = _VARIANT_STEP.match(name)
    return (match["base"], int(match["step"])) if match else (name, None)


def read_run(path: Path) -> RunDir:
    """What ``path`` holds; ValueError when it is not a run directory (no config.yaml)."""
    import yaml

    path = Path(path)
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise ValueError(f"'{path}' is not a run directory (no config.yaml); give the folder `subsetsearch run` wrote")
    config = yaml.safe_load(config_path.read_text()) or {}
    metrics_path = path / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    steps = []
    for folder in sorted(path.glob("iter_*")):
        metrics_file = folder / "metrics.json"
        if metrics_file.is_file():
            m = json.loads(metrics_file.read_text())
            steps.append(Step(int(m["iteration"]), folder, m))
    models = []
    for done in sorted(path.glob("models/*/model_*/done.json")):
        record = json.loads(done.read_text())
        probs = done.parent / "test_probs.npy"
        models.append(
            ModelRun(
                done.parent.parent.name,
                int(done.parent.name.split("_")[1]),
                done.parent,
                record["history"],
                float(record["seconds"]),
                probs if probs.is_file() else None,
            )
        )
    run = RunDir(path, config, metrics, steps, models)
    budgets = config.get("search", {}).get("budgets", [])
    expected = 1 if run.scheme == "full" else len(budgets)
    if len(steps) < expected:
        done = [s.iteration for s in steps]
        run.missing.append(
            f"steps: {len(steps)} of {expected} finished ({', '.join(f'iter_{i:02d}' for i in done) or 'none'}); "
            "resume the run with the same `subsetsearch run` command to finish it"
        )
    if metrics is None:
        run.missing.append("metrics.json: the run has not finished, so subset-model results are those trained so far")
    return run
