"""A search task: the data and models of one kind of search, everything a worker rebuilds.

:class:`Task` is what :class:`~subsetsearch.pipeline.search.Search` (the driver) runs a scheme
over, and what a Ray worker rebuilds from the config (:class:`TaskWorkload`) to train acquisition
runs and score units of pool rows. A task (:mod:`~subsetsearch.pipeline.classify`,
:mod:`~subsetsearch.pipeline.detect`) implements these hooks (docs/architecture.md, "A search in
three parts"):

- ``prepare(threads)``: load the data and build the networks; sets and returns :attr:`Task.info`
  (driver, and each worker once);
- ``dataset_record()``: what readers need of the data, ``dataset.npz`` (driver);
- ``train_model(spec, acquisition=, progress=)``: train one model with the task's data and loss;
- ``step_scoring(i, rows)``: the :class:`StepScoring` of step i: its units of work and how their
  results merge into the step's scoring state (driver);
- ``scoring_pieces(i)``: the step's state files and what each depends on beyond the ensemble
  (driver: a study shares them by fingerprint);
- ``score_unit(task)``: one unit of scoring work (workers);
- ``evaluate(variant)``: train and test the subset models of one variant (driver);
- optional: ``after_scoring(i, rows, scores, score)`` keeps what a step's figures need,
  ``finish_run(result)`` runs after the run's metrics are written (driver).

Besides the hooks, a task knows its ensembles: which members step i has
(:meth:`Task.member_files`) and how an acquisition run is trained (:meth:`Task.train_member_run`).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from subsetsearch.errors import InputError
from subsetsearch.executors import ScoreTask, TrainTask
from subsetsearch.pipeline.config import EnsembleConfig, RunConfig
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.pipeline.seeds import Seed, derive_seed
from subsetsearch.rundir import DatasetRecord, GalleryRecord, RunLayout, StepLayout, Subset, read_json
from subsetsearch.state import Part, ScoringState

if TYPE_CHECKING:
    from subsetsearch.train.trainer import Network, ProgressFn, RunRecord, TrainSpec


@dataclass(frozen=True)
class TaskInfo:
    """What ``prepare`` found: the data's name and sizes, where and in which precision models run."""

    data_name: str
    pool_size: int
    test_size: int
    model_name: str
    device: str
    precision: dict[str, str]  # {"acquisition": "fp32" | "bf16", "subset_model": ...}


def build_networks(
    config: RunConfig, image_shape: tuple[int, int, int], num_classes: int, device: object
) -> tuple[Network, Network, Callable[..., TaskInfo]]:
    """The acquisition and subset-model networks a config describes for images of ``image_shape``
    (channels, height, width), each checked (a ``model.factory`` builds a network of the right
    output), and a maker of the task's :class:`TaskInfo` (``info(data_name, pool_size,
    test_size)``) that records where and in which precision they run."""
    from subsetsearch.train.trainer import Network

    channels, size = image_shape[0], (image_shape[1], image_shape[2])
    acquisition = Network(config.model, config.train, channels, num_classes, device, size)
    subset = Network(config.subset_model_config(), config.subset_train_config(), channels, num_classes, device, size)
    for network in (acquisition, subset):
        network.check()

    def info(data_name: str, pool_size: int, test_size: int) -> TaskInfo:
        precision = {"acquisition": acquisition.precision, "subset_model": subset.precision}
        return TaskInfo(data_name, pool_size, test_size, config.model.label, str(device), precision)

    return acquisition, subset, info


@dataclass(frozen=True)
class Member:
    """One acquisition member of a step: its name (``run_R/epoch_EEE`` or ``run_R/best``), its
    checkpoint, and the training run it comes from."""

    name: str
    path: Path
    run: int


@dataclass(frozen=True)
class VariantSpec:
    """The subset models of one variant: a name (``build_up``, ``random@iter_01``, ``full``), the
    subset they train on, and for ``pretrain`` the weights model k starts from and its rate."""

    name: str
    subset: Subset
    init_from: tuple[Path, ...] | None = None
    lr: float | None = None


class Variant(Protocol):
    """Test results of the subset models of one variant (a task's own dataclass)."""

    name: str
    size: int
    unique: int

    def to_json(self) -> dict: ...

    @classmethod
    def summary_lines(cls, variants: list[Any]) -> list[str]: ...


@dataclass
class RunResult:
    """What a run found: its subset, the test results of every variant, the search's cost."""

    run_dir: Path
    subset: Subset
    pool_size: int
    variants: list[Any]
    search_seconds: float
    steps: list[dict] = field(default_factory=list)
    info: TaskInfo | None = None

    def summary_lines(self) -> list[str]:
        """A header and one row per variant (the variants' own table)."""
        return type(self.variants[0]).summary_lines(self.variants) if self.variants else []


class StepScoring(abc.ABC):
    """Scoring one step's rows: its units of work and how their results merge into the step's
    :class:`~subsetsearch.state.ScoringState`, which keeps the ledgers and saves (so a killed run
    resumes from the last saved unit and never counts one twice).

    Parameters
    ----------
    state : ScoringState
        The step's state, every part resumed from its file.
    main : Part
        The part whose ledger says what the step has done: progress and seconds are read there.
    """

    #: How progress bars name a unit of work.
    unit_label = "units"

    def __init__(self, state: ScoringState, main: Part) -> None:
        self.state, self.main = state, main
        self.progress: Callable[[str, int, int], None] | None = None

    @abc.abstractmethod
    def tasks(self) -> list[ScoreTask]:
        """Every unit of the step, done or not."""

    @abc.abstractmethod
    def merge(self, task: ScoreTask, result: Any) -> None:
        """Add one unit's result to the parts that lack it and record it in the state."""

    @abc.abstractmethod
    def scores(self) -> np.ndarray:
        """Every pool row's score, float64 [N]; NaN for rows not scored."""

    @functools.cached_property
    def total_units(self) -> int:
        """How many units the step has, done or not."""
        return len(self.tasks())

    def todo(self) -> list[ScoreTask]:
        """The units some part lacks."""
        return self.state.todo(self.tasks())

    def add(self, task: ScoreTask, result: Any) -> None:
        """Merge a finished unit, and save when the state's policy says so."""
        self.merge(task, result)
        if self.progress is not None:
            self.progress(self.unit_label, self.state.units(self.main), self.total_units)
        self.state.checkpoint()

    def save(self) -> None:
        """Write every changed part, in the state's order."""
        self.state.save()

    @property
    def saved(self) -> bool:
        """True once the step's main file exists."""
        return self.main.saved

    @property
    def seconds(self) -> float:
        """Work time of the units done, summed over sessions."""
        return self.main.ledger.seconds


class Task(abc.ABC):
    """The data and models of one kind of search (see the module docstring).

    Parameters
    ----------
    config : RunConfig
    layout : RunLayout
        The run directory it reads and writes.
    reporter : Reporter, optional
        Where progress goes (quiet by default).
    """

    #: How progress lines name the pool's samples.
    sample_word: ClassVar[str] = "samples"

    def __init__(self, config: RunConfig, layout: RunLayout, reporter: Reporter | None = None) -> None:
        self.config = config
        self.layout = layout
        self.reporter = reporter or Reporter(quiet=True)
        self.info: TaskInfo | None = None

    # -- hooks ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def prepare(self, threads: int | None = None) -> TaskInfo:
        """Load the data and build the networks (``threads``: torch's threads where the config sets
        none); set and return :attr:`info`. Called once on the driver, before anything is written,
        and once per worker."""

    @abc.abstractmethod
    def dataset_record(self) -> DatasetRecord:
        """What the report and the studies need of the data, written to ``dataset.npz``."""

    def pool_labels(self) -> np.ndarray | None:
        """Every pool row's class, for ``search.balance: class`` (None where a row has no one class:
        detection). Valid after :meth:`prepare`."""
        return None

    @abc.abstractmethod
    def train_model(self, spec: TrainSpec, *, acquisition: bool, progress: ProgressFn | None) -> RunRecord:
        """Train (or finish) one model as ``spec`` says, with the task's data and loss: an
        acquisition run (``acquisition``) or a subset model."""

    @abc.abstractmethod
    def step_scoring(self, iteration: int, score_rows: np.ndarray) -> StepScoring:
        """The scoring of step ``iteration``'s ``score_rows``, resumed from its files."""

    @abc.abstractmethod
    def scoring_pieces(self, iteration: int) -> dict[Path, dict]:
        """The files of step ``iteration``'s scoring state, each with what it depends on besides the
        ensemble and the scored rows (a function, a window): a study shares them by fingerprint."""

    @abc.abstractmethod
    def score_unit(self, task: ScoreTask) -> Any:
        """One unit of scoring work (on a worker); its result has ``seconds``."""

    @abc.abstractmethod
    def evaluate(self, variant: VariantSpec) -> Variant:
        """Train (or resume) and test the subset models of one variant."""

    def after_scoring(  # noqa: B027 (optional hook)
        self,
        iteration: int,
        score_rows: np.ndarray,
        scores: np.ndarray,
        score: Callable[[list[ScoreTask]], list[Any]],
    ) -> None:
        """Keep what the step's figures need (optional); ``score`` runs units on the executor."""

    def keep_gallery(
        self,
        iteration: int,
        scores: np.ndarray,
        chosen: np.ndarray,
        scored_at: int,
        score: Callable[[list[ScoreTask]], list[Any]],
    ) -> None:
        """Keep step ``iteration``'s gallery (``gallery.npz``): the samples the report shows of its
        selection (``chosen`` by ``scores``, from step ``scored_at``'s ensemble), with their thumbnails."""
        path = self.step(iteration).gallery
        if not path.is_file():
            self.gallery_record(scores, chosen, scored_at, score).save(path)

    @abc.abstractmethod
    def gallery_record(
        self, scores: np.ndarray, chosen: np.ndarray, scored_at: int, score: Callable[[list[ScoreTask]], list[Any]]
    ) -> GalleryRecord:
        """The gallery of a selection (see :meth:`keep_gallery`)."""

    def finish_run(self, result: RunResult) -> None:  # noqa: B027 (optional hook)
        """After the run's metrics.json is written (optional)."""

    # -- ensembles ------------------------------------------------------------------------------

    def step(self, iteration: int) -> StepLayout:
        return self.layout.step(iteration)

    def ensemble(self, iteration: int) -> EnsembleConfig:
        """Step i's acquisition ensemble (``final_ensemble`` for the last step, where set)."""
        return self.config.ensemble_at(iteration, len(self.config.search.budgets))

    def member_files(self, iteration: int) -> list[Member]:
        """Step i's acquisition members, in ensemble order (runs, then epochs)."""
        ens = self.ensemble(iteration)
        step = self.step(iteration)
        members = []
        for r in range(ens.runs):
            if ens.kind == "seeds":
                name = StepLayout.member_name(r, None)
                members.append(Member(name, step.member(name), r))
                continue
            record = read_json(step.member_run(r).done)
            last = record["history"][-1]["epoch"]
            epochs = [e for e in self.config.checkpoint_epochs(ens) if e <= last]
            if not epochs:
                raise InputError(
                    f"ensemble: run {r} of step {iteration} stopped at epoch {last} (patience schedule), before the "
                    f"first checkpoint epoch {self.config.checkpoint_epochs(ens)[0]}; lower ensemble.start"
                )
            names = [StepLayout.member_name(r, e) for e in epochs]
            members += [Member(name, step.member(name), r) for name in names]
        return members

    def member_run_seed(self, iteration: int, run: int) -> int:
        return derive_seed(self.config.seed, Seed.ENSEMBLE, iteration, run)

    def member_run_epochs(self, iteration: int) -> frozenset[int]:
        """The checkpoint epochs step i's training runs keep (none for a seeds ensemble: its best)."""
        ens = self.ensemble(iteration)
        return frozenset(self.config.checkpoint_epochs(ens)) if ens.kind != "seeds" else frozenset()

    def train_member_run(self, task: TrainTask) -> float:
        """Train (or finish) acquisition run ``task.run`` of step ``task.iteration`` on its rows,
        keeping the checkpoints the ensemble needs; its training seconds."""
        from subsetsearch.train.trainer import TrainSpec

        i = task.iteration
        ens = self.ensemble(i)
        self.reporter.line(
            f"step {i}: training acquisition run {task.run + 1}/{ens.runs} on {len(task.train_rows)} {self.sample_word}"
        )
        spec = TrainSpec(
            self.step(i).member_run(task.run).folder,
            task.train_rows,
            seed=self.member_run_seed(i, task.run),
            save_epochs=self.member_run_epochs(i),
            keep_best=ens.kind == "seeds",
        )
        progress = self.reporter.bar(f"step {i} run {task.run + 1}/{ens.runs}")
        return self.train_model(spec, acquisition=True, progress=progress).seconds

    def subset_model_seed(self, k: int) -> int:
        return derive_seed(self.config.seed, Seed.SUBSET_MODEL, k)


class TaskWorkload:
    """The acquisition members of one run, as an executor's work: trains runs and scores units of
    pool rows through the task's hooks.

    In this process it works through the run's own :class:`Task`; pickled to a Ray worker it carries
    only the task's class, config and run directory, and the worker prepares the data itself, once.
    """

    def __init__(self, task: Task) -> None:
        self.kind = type(task)  # pickled by reference: the worker builds the same task
        self.config = task.config
        self.run_dir = task.layout.root
        self._task: Task | None = task

    def __getstate__(self) -> dict:
        return {"kind": self.kind, "config": self.config, "run_dir": self.run_dir, "_task": None}

    def setup(self, threads: int | None) -> None:
        if self._task is not None:
            return
        task = self.kind(self.config, RunLayout(self.run_dir))
        task.prepare(threads)
        self._task = task

    def train(self, task: TrainTask) -> float:
        return self._task.train_member_run(task)

    def score(self, task: ScoreTask) -> Any:
        return self._task.score_unit(task)
