"""The run directory and the study directory: every path in them, the files written by ``subsetsearch
run`` and ``study``, and their readers.

A run directory describes itself: whatever ``subsetsearch report`` or a study needs is in it, so
it can be read on a machine that has neither the dataset nor PyTorch (docs/architecture.md,
"Run directory")::

    subsetsearch.json             the marker, written first: a run directory of ours
                                  (internal/directories.py; 0.1.0 and 0.2.0 wrote none)
    subsetsearch.lock             held while a job works in the directory
    config.yaml                   the resolved config (every default filled in), package version
    dataset.npz                   what readers need of the data: class names, pool and test labels
                                  (detection: each pool image's boxes per class)
    work.json                     the fingerprint of each finished piece of work (a study shares by them)
    iter_NN/members/run_R/        the step's acquisition training runs (a training run's folder, below)
    iter_NN/stats.npz             ensemble statistics of the scored rows, with their resume ledger
    iter_NN/votes.npz             each member's predicted class of every scored row (consensus)
    iter_NN/dynamics.npz          label statistics (el2n, forgetting, ...), with their own ledger
    iter_NN/scores.npz            detection: the step's image scores, with their resume ledger
    iter_NN/heatmaps.npz          detection: a few images, their boxes and per-class heatmaps (figures)
    iter_NN/gallery.npz           the samples the report's gallery shows, with their thumbnails
    iter_NN/subset.parquet        the subset after step NN: index, multiplicity, score, iteration
    iter_NN/metrics.json          sizes, multiplicities, members, seconds, device and precision
    models/VARIANT/model_K/       a subset model: a training run's folder, test_probs.npy or test_metrics.json
    subset.parquet                the final subset
    metrics.json                  test results of every variant, cost of the search (written last)
    report/                       ``subsetsearch report``: PNG figures and report.html

A training run's folder (:class:`TrainingRunFiles`, written by ``train/trainer.py``)::

    state.safetensors             weights, momentum, schedule and history after the last finished epoch
    epoch_EEE.safetensors         a checkpoint an ensemble asked for
    best.safetensors              the best validation epoch (seeds ensembles)
    last.safetensors              the final weights (subset models)
    done.json                     written last: the run's history

Every path is composed here (:class:`RunLayout`, :class:`StepLayout`, :class:`TrainingRunFiles`,
:class:`StudyLayout`); every file is written atomically
(:func:`subsetsearch.internal.atomic.atomic_path`). Readers never fail on a missing file: each
returns None (or nothing) and :attr:`RunDir.missing` says what is not there yet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from subsetsearch.errors import InputError
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.directories import marker_kind
from subsetsearch.stats import EnsembleStats

CONFIG = "config.yaml"
DATASET = "dataset.npz"
METRICS = "metrics.json"
SUBSET = "subset.parquet"
WORK = "work.json"
STATS = "stats.npz"
#: A step's label statistics (el2n, forgetting, dyn_unc, ...), with their own ledger.
DYNAMICS = "dynamics.npz"
VOTES = "votes.npz"
SCORES = "scores.npz"
HEATMAPS = "heatmaps.npz"
GALLERY = "gallery.npz"
REPORT = "report"
STUDY_CONFIG = "study.yaml"

_VARIANT_STEP = re.compile(r"^(?P<base>.+)@iter_(?P<step>\d+)$")
_WORK_FORMAT = "subsetsearch-work/1"
#: Prefix of ``dataset.npz``'s arrays of the pool's identity columns.
_SOURCE = "pool_source_"


# -- where everything is ----------------------------------------------------------------------------


def step_name(iteration: int) -> str:
    """The folder of step ``iteration``: ``iter_NN``."""
    return f"iter_{iteration:02d}"


@dataclass(frozen=True)
class TrainingRunFiles:
    """The files of one training run's folder (``train/trainer.py`` writes them)."""

    folder: Path

    @property
    def state(self) -> Path:
        return self.folder / "state.safetensors"

    @property
    def done(self) -> Path:
        return self.folder / "done.json"

    @property
    def best(self) -> Path:
        return self.folder / "best.safetensors"

    @property
    def last(self) -> Path:
        return self.folder / "last.safetensors"

    def checkpoint(self, epoch: int) -> Path:
        return self.folder / f"epoch_{epoch:03d}.safetensors"

    @property
    def test_probs(self) -> Path:
        """A classifier's softmax on the test set (subset models)."""
        return self.folder / "test_probs.npy"

    @property
    def test_metrics(self) -> Path:
        """A detector's COCO metrics on the test set (subset models)."""
        return self.folder / "test_metrics.json"


@dataclass(frozen=True)
class StepLayout:
    """The files of one search step, ``iter_NN``."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def subset(self) -> Path:
        return self.folder / SUBSET

    @property
    def metrics(self) -> Path:
        return self.folder / METRICS

    @property
    def stats(self) -> Path:
        return self.folder / STATS

    @property
    def votes(self) -> Path:
        return self.folder / VOTES

    @property
    def dynamics(self) -> Path:
        return self.folder / DYNAMICS

    @property
    def scores(self) -> Path:
        return self.folder / SCORES

    @property
    def heatmaps(self) -> Path:
        return self.folder / HEATMAPS

    @property
    def gallery(self) -> Path:
        return self.folder / GALLERY

    @property
    def members(self) -> Path:
        return self.folder / "members"

    def member_run(self, run: int) -> TrainingRunFiles:
        """Acquisition training run ``run`` of the step."""
        return TrainingRunFiles(self.members / f"run_{run}")

    def member(self, name: str) -> Path:
        """The checkpoint of member ``name`` (``run_R/epoch_EEE`` or ``run_R/best``)."""
        return self.members / f"{name}.safetensors"

    @staticmethod
    def member_name(run: int, epoch: int | None) -> str:
        """A member's name: epoch ``epoch`` of run ``run``, or its best epoch (None)."""
        return f"run_{run}/best" if epoch is None else f"run_{run}/epoch_{epoch:03d}"


class RunLayout:
    """Every path of a run directory (the module's docstring lists them)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def dataset(self) -> Path:
        return self.root / DATASET

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def subset(self) -> Path:
        return self.root / SUBSET

    @property
    def work(self) -> Path:
        return self.root / WORK

    @property
    def report(self) -> Path:
        return self.root / REPORT

    def step(self, iteration: int) -> StepLayout:
        return StepLayout(self.root / step_name(iteration))

    def steps(self) -> list[StepLayout]:
        """Every ``iter_NN`` folder there is, in order (finished or not)."""
        return [StepLayout(p) for p in sorted(self.root.glob("iter_*")) if p.is_dir()]

    def model(self, variant: str, k: int) -> TrainingRunFiles:
        """Subset model ``k`` of ``variant`` (``build_up``, ``random@iter_01``, ``full``)."""
        return TrainingRunFiles(self.root / "models" / variant / f"model_{k}")

    def models(self) -> list[TrainingRunFiles]:
        """Every subset model's folder that holds a finished training run."""
        folders = (TrainingRunFiles(p) for p in sorted(self.root.glob("models/*/model_*")))
        return [files for files in folders if files.done.is_file()]

    def relative(self, path: Path) -> str:
        """``path`` relative to the run directory, as ``work.json`` names pieces."""
        return Path(path).relative_to(self.root).as_posix()


def directory_kind(path: str | Path) -> str | None:
    """What ``path`` is: ``run`` or ``study`` (a directory ``subsetsearch run`` / ``study`` wrote, by
    its marker, or by the version key its config carries for one of 0.1.0 and 0.2.0, which wrote no
    marker), another kind of ours (a state directory), or None for a directory that is not ours.
    InputError when its marker is unreadable."""
    path = Path(path)
    kind = marker_kind(path)
    if kind is not None or not path.is_dir():
        return kind
    if _carries_version(RunLayout(path).config):
        return "run"
    if _carries_version(StudyLayout(path).config, key="study"):
        return "study"
    return None


def _carries_version(path: Path, key: str = "subsetsearch_version") -> bool:
    """True for a YAML mapping at ``path`` that holds ``key`` (what our runs' and studies' configs hold)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and key in data


class StudyLayout:
    """Every path of a study directory::

    study.yaml                the study config
    runs/CELL/trial_T/        one run directory per cell and trial (seed T)
    report/                   study.json, study.md, the figure, report.html
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / STUDY_CONFIG

    @property
    def report(self) -> Path:
        return self.root / REPORT

    def run(self, cell: str, trial: int) -> RunLayout:
        return RunLayout(self.root / "runs" / cell / f"trial_{trial}")


class WorkLog:
    """``work.json``: the fingerprint of each finished piece of a run's work (a step, a training run,
    a step's statistics, a subset model), by its path in the run directory. A study finds work
    another cell already did by these fingerprints (``pipeline/study.py``)."""

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout

    def pieces(self) -> dict[str, dict]:
        """Path -> {"fingerprint": ..., and what else was recorded}; empty when there is no log."""
        try:
            data = json.loads(self.layout.work.read_text())
        except (OSError, ValueError):
            return {}
        return dict(data.get("pieces", {})) if isinstance(data, dict) and data.get("format") == _WORK_FORMAT else {}

    def record(self, path: Path, fingerprint: str, **extra: object) -> None:
        """Note that the piece at ``path`` is finished and what it was computed from."""
        self.record_many({self.layout.relative(path): {"fingerprint": fingerprint, **extra}})

    def record_many(self, entries: dict[str, dict]) -> None:
        pieces = self.pieces()
        if all(pieces.get(key) == value for key, value in entries.items()):
            return
        pieces.update(entries)
        write_json(self.layout.work, {"format": _WORK_FORMAT, "pieces": dict(sorted(pieces.items()))})


def damaged(path: Path, error: object) -> InputError:
    """The one line for a file of ours that cannot be read: which file, why, and the fix."""
    reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return InputError(f"'{path}' is damaged ({reason}); delete it and run the same command again to write it anew")


def read_json(path: Path) -> dict:
    """A JSON file of ours; :func:`damaged` when it cannot be read."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise damaged(path, error) from None


def read_npz(path: Path, *keys: str) -> dict[str, np.ndarray]:
    """Arrays ``keys`` of an ``.npz`` of ours (all of them without ``keys``); :func:`damaged` when it
    cannot be read or lacks one."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {key: saved[key] for key in (keys or saved.files)}
    except Exception as error:  # zipfile, format and key errors: one line for all
        raise damaged(path, error) from None


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Arrays in an uncompressed ``.npz``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


# -- subsets --------------------------------------------------------------------------------------


@dataclass
class Subset:
    """A multiset of pool rows in the order they were chosen (``subset.parquet``)."""

    index: np.ndarray  # int64 [k] distinct rows
    multiplicity: np.ndarray  # int64 [k]
    score: np.ndarray  # float64 [k]; NaN where chosen at random
    iteration: np.ndarray  # int64 [k]: the step at which the row came in

    @classmethod
    def empty(cls) -> Subset:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))

    def add_unscored(self, rows: np.ndarray, iteration: int) -> Subset:
        """Add rows chosen without a score (at random, or all of them): score NaN."""
        return self.add(rows, np.full(len(rows), np.nan), iteration)

    def add(self, rows: np.ndarray, scores: np.ndarray, iteration: int) -> Subset:
        """Add distinct ``rows`` with their scores. A row already in the subset (automatic
        duplication) gains one multiplicity and takes the new score; it keeps its first iteration."""
        rows = np.asarray(rows, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        position = {int(r): j for j, r in enumerate(self.index)}
        old = np.array([position.get(int(r), -1) for r in rows], dtype=np.int64)
        repeat = old >= 0
        multiplicity, score = self.multiplicity.copy(), self.score.copy()
        multiplicity[old[repeat]] += 1
        score[old[repeat]] = scores[repeat]
        new = ~repeat
        return Subset(
            np.concatenate([self.index, rows[new]]),
            np.concatenate([multiplicity, np.ones(int(new.sum()), np.int64)]),
            np.concatenate([score, scores[new]]),
            np.concatenate([self.iteration, np.full(int(new.sum()), iteration, np.int64)]),
        )

    def multiplicity_counts(self) -> dict[str, int]:
        """How many distinct samples appear once, twice, three times, four or more (paper Table VII)."""
        m = self.multiplicity
        return {"1": int(np.sum(m == 1)), "2": int(np.sum(m == 2)), "3": int(np.sum(m == 3)), "4+": int(np.sum(m >= 4))}

    @property
    def size(self) -> int:
        return int(self.multiplicity.sum())

    def training_rows(self) -> np.ndarray:
        """Rows repeated by their multiplicity, in ascending row order: what the trainer samples from.

        The order rows were chosen in does not reach training: scores that differ in their last
        bits (another machine, another build of the kernels) can reorder equally chosen rows, and
        the trainer's seeded epoch order would then visit the same multiset in another order.
        """
        order = np.argsort(self.index, kind="stable")
        return np.repeat(self.index[order], self.multiplicity[order])

    def write(self, path: Path, source: dict[str, np.ndarray] | None = None) -> None:
        """Write the subset (``index``, ``multiplicity``, ``score``, ``iteration``) and, from ``source``
        (:attr:`DatasetRecord.pool_source`), each chosen row's identity in the user's own data."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {
            "index": self.index,
            "multiplicity": self.multiplicity,
            "score": self.score,
            "iteration": self.iteration,
        }
        columns.update({name: np.asarray(values)[self.index] for name, values in (source or {}).items()})
        with atomic_path(path) as tmp:
            pq.write_table(pa.table(columns), tmp)

    @classmethod
    def read(cls, path: Path) -> Subset | None:
        """The subset stored at ``path``, or None when there is none."""
        if not Path(path).is_file():
            return None
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as error:  # Arrow's errors: one line for all
            raise damaged(path, error) from None
        return cls(*(table[name].to_numpy() for name in ("index", "multiplicity", "score", "iteration")))


# -- what readers need of the data ----------------------------------------------------------------


@dataclass
class DatasetRecord:
    """What the report and the studies need of a run's data, kept in the run directory
    (``dataset.npz``) so they never load the dataset.

    Attributes
    ----------
    name : str
    class_names : list of str
    pool_labels : ndarray of shape (N,), int64, or None
        Classification: the class of every pool row.
    pool_boxes : ndarray of shape (N, K), int64, or None
        Detection: how many boxes of each class every pool image holds.
    test_labels : ndarray of shape (n,), int64, or None
        Classification: the class of every test row.
    pool_source : dict of str to ndarray of shape (N,)
        Each pool row's identity in the user's own data, by column: ``source_row`` (its row in
        the given arrays file, in Fashion-MNIST's training set, in scikit-learn's digits, or the
        built-in canvas), ``path`` (its file, relative to the image folder), ``image_id`` and
        ``file_name`` (a COCO set's). Runs made before the columns existed recorded none (a resume adds them).
    """

    name: str
    class_names: list[str]
    pool_labels: np.ndarray | None = None
    pool_boxes: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    pool_source: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def pool_size(self) -> int:
        return len(self.pool_labels if self.pool_labels is not None else self.pool_boxes)

    @property
    def per_class(self) -> np.ndarray:
        """What class balance counts: each row's class [N], or each image's boxes per class [N, K]."""
        return self.pool_labels if self.pool_labels is not None else self.pool_boxes

    def save(self, path: Path) -> None:
        arrays = {"name": np.array(self.name), "class_names": np.array(self.class_names, dtype=str)}
        for key in ("pool_labels", "pool_boxes", "test_labels"):
            if getattr(self, key) is not None:
                arrays[key] = np.asarray(getattr(self, key), dtype=np.int64)
        arrays.update({f"{_SOURCE}{name}": np.asarray(values) for name, values in self.pool_source.items()})
        write_npz(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> DatasetRecord | None:
        if not Path(path).is_file():
            return None
        arrays = read_npz(path)
        if "name" not in arrays or "class_names" not in arrays:
            raise damaged(path, "no name or class names")
        return cls(
            str(arrays["name"]),
            arrays["class_names"].tolist(),
            arrays.get("pool_labels"),
            arrays.get("pool_boxes"),
            arrays.get("test_labels"),
            {key[len(_SOURCE) :]: value for key, value in arrays.items() if key.startswith(_SOURCE)},
        )


class _ArrayRecord:
    """A dataclass of arrays kept as one ``.npz`` of its fields."""

    def save(self, path: Path) -> None:
        write_npz(path, **{key: np.asarray(value) for key, value in self.__dict__.items()})

    @classmethod
    def _read(cls, path: Path, *, since: str | None = None) -> dict[str, np.ndarray] | None:
        """The fields' arrays; None when the file is missing (or was written before array ``since``
        existed); :func:`damaged` when it lacks one."""
        if not Path(path).is_file():
            return None
        arrays = read_npz(path)
        if since is not None and since not in arrays:
            return None
        if any(key not in arrays for key in cls.__dataclass_fields__):
            raise damaged(path, "arrays missing")
        return {key: arrays[key] for key in cls.__dataclass_fields__}


@dataclass
class HeatmapRecord(_ArrayRecord):
    """A detection step's figure: a few pool images (the top-scored, then some at random), their
    boxes, and each class's uncertainty heatmap over them (``iter_NN/heatmaps.npz``).

    Attributes
    ----------
    index : ndarray of shape (n,), int64          pool rows of the images
    image_scores : ndarray of shape (n,)          their acquisition scores
    heatmaps : ndarray of shape (n, K, h, w)      per-class, per-location scores
    mean_maps : ndarray of shape (n, K, h, w)     the members' mean centre maps
    images : ndarray of shape (n, 1, S, S), uint8
    boxes : ndarray of shape (B, 4)               ``[x0, y0, x1, y1]``, ends exclusive (float for COCO sets)
    box_labels : ndarray of shape (B,), int64
    box_image : ndarray of shape (B,), int64      position in ``index`` of each box's image
    """

    index: np.ndarray
    image_scores: np.ndarray
    heatmaps: np.ndarray
    mean_maps: np.ndarray
    images: np.ndarray
    boxes: np.ndarray
    box_labels: np.ndarray
    box_image: np.ndarray

    @classmethod
    def load(cls, path: Path) -> HeatmapRecord | None:
        """The record at ``path``; None when missing or written before it carried its images."""
        values = cls._read(path, since="images")
        return None if values is None else cls(**values)


@dataclass
class GalleryRecord(_ArrayRecord):
    """The samples a step's gallery shows, with what the report prints beside each
    (``iter_NN/gallery.npz``, written when the step is scored, so the report needs no images).

    Attributes
    ----------
    index : ndarray of shape (n,), int64          pool rows
    group : ndarray of shape (n,), int8           0 highest-scored, 1 chosen just inside the cut,
                                                  2 left just outside it, 3 lowest-scored (GALLERY_GROUPS)
    scores : ndarray of shape (n,), float64       their acquisition scores
    chosen : ndarray of shape (n,), bool          chosen by this step
    labels : ndarray of shape (n,), int64         their classes (-1: detection)
    votes : ndarray of shape (n,), int64          the class most of the ensemble's members predict (-1: detection)
    vote_share : ndarray of shape (n,), float64   the share of members that predict it (NaN: detection)
    thumbnails : ndarray of shape (n, C, h, w), uint8   C is 1 (grey) or 3 (RGB; detection: heatmap in red)
    function : str                                the acquisition function that scored
    """

    index: np.ndarray
    group: np.ndarray
    scores: np.ndarray
    chosen: np.ndarray
    labels: np.ndarray
    votes: np.ndarray
    vote_share: np.ndarray
    thumbnails: np.ndarray
    function: str

    @classmethod
    def load(cls, path: Path) -> GalleryRecord | None:
        """The record at ``path``; None when missing (steps of runs from before galleries)."""
        values = cls._read(path)
        if values is None:
            return None
        return cls(**{**values, "function": str(values["function"])})


#: What each of a gallery's groups is (GalleryRecord.group).
GALLERY_GROUPS = ("highest scores", "chosen, just inside the cut", "left out, just outside the cut", "lowest scores")


# -- reading a run --------------------------------------------------------------------------------


@dataclass
class Step:
    """One ``iter_NN`` folder."""

    iteration: int
    folder: Path
    metrics: dict

    @property
    def files(self) -> StepLayout:
        return StepLayout(self.folder)

    def subset(self) -> Subset | None:
        return Subset.read(self.files.subset)

    def stats(self) -> EnsembleStats | None:
        path = self.files.stats
        if not path.is_file():
            return None
        try:
            return EnsembleStats.load(path)
        except ValueError as error:
            raise damaged(path, error) from None

    def votes(self) -> tuple[np.ndarray, list[str], np.ndarray] | None:
        """(scored rows, member names, votes [M, n]) of ``votes.npz``, or None."""
        path = self.files.votes
        if not path.is_file():
            return None
        saved = read_npz(path, "rows", "names", "votes")
        return saved["rows"], saved["names"].tolist(), saved["votes"]

    def image_scores(self) -> np.ndarray | None:
        """Detection: the step's image scores [N] (NaN where not scored), or None."""
        path = self.files.scores
        if not path.is_file():
            return None
        return read_npz(path, "scores")["scores"]

    def heatmaps(self) -> HeatmapRecord | None:
        return HeatmapRecord.load(self.files.heatmaps)

    def gallery(self) -> GalleryRecord | None:
        return GalleryRecord.load(self.files.gallery)


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

    def dataset(self) -> DatasetRecord | None:
        """What the run recorded of its data (``dataset.npz``), or None for a run that has not."""
        return DatasetRecord.load(RunLayout(self.path).dataset)

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
                try:
                    probs = np.load(model.test_probs, allow_pickle=False)
                except Exception as error:
                    raise damaged(model.test_probs, error) from None
                entry["test_accuracy"].append(float(np.mean(np.argmax(probs, axis=1) == test_labels)))
            detections = TrainingRunFiles(model.folder).test_metrics  # a detector's COCO metrics
            if detections.is_file():
                entry.setdefault("test_metrics", []).append(read_json(detections))
        return out


def variant_scores(variant: dict) -> tuple[str, list[float]]:
    """(metric, one value per model) of a variant: test accuracy, or a detector's test wMAP."""
    if "test_metrics" in variant:
        return "wMAP", [m["wMAP"] for m in variant["test_metrics"]]
    return "accuracy", list(variant.get("test_accuracy", []))


def variant_name(base: str, step: int | None) -> str:
    """A variant's name: ``base`` for the final subset (``step`` None), ``base@iter_NN`` for step NN's."""
    return base if step is None else f"{base}@{step_name(step)}"


def split_variant(name: str) -> tuple[str, int | None]:
    """``build_up@iter_01`` -> (``build_up``, 1); ``build_up`` -> (``build_up``, None): the final subset."""
    match = _VARIANT_STEP.match(name)
    return (match["base"], int(match["step"])) if match else (name, None)


def read_run(path: Path) -> RunDir:
    """What ``path`` holds; InputError when it is not a run directory (``directory_kind``), or its
    config is not one."""
    import yaml

    path = Path(path)
    layout = RunLayout(path)
    if directory_kind(path) != "run" or not layout.config.is_file():
        raise InputError(f"'{path}' is not a run directory; give the folder `subsetsearch run` wrote")
    try:
        config = yaml.safe_load(layout.config.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        config = None
    if not isinstance(config, dict):
        raise InputError(f"'{layout.config}' is not a run config; run the same `subsetsearch run` again to rewrite it")
    metrics = read_json(layout.metrics) if layout.metrics.is_file() else None
    steps = []
    for step in layout.steps():
        if step.metrics.is_file():
            m = read_json(step.metrics)
            steps.append(Step(int(m["iteration"]), step.folder, m))
    models = []
    for files in layout.models():
        record = read_json(files.done)
        models.append(
            ModelRun(
                files.folder.parent.name,
                int(files.folder.name.split("_")[1]),
                files.folder,
                record["history"],
                float(record["seconds"]),
                files.test_probs if files.test_probs.is_file() else None,
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
