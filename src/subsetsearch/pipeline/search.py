"""The search skeleton: one run of a config in a resumable run directory, whatever the task.

:class:`Search` owns what every task shares: the run directory (``subsetsearch.rundir`` says what
is in it), the schemes (build_up, auto_duplication, pretrain, compress, random, full), training
the acquisition ensembles and scoring the pool on the executor, resuming from the ledger, and the
run's metrics. A task (:mod:`~subsetsearch.pipeline.classify`, :mod:`~subsetsearch.pipeline.detect`)
supplies the rest through these hooks (docs/architecture.md, "The search skeleton"):

- ``prepare(threads)``: load the data and build the networks; returns a :class:`TaskInfo`
  (driver, and each worker once);
- ``dataset_record()``: what readers need of the data, ``dataset.npz`` (driver);
- ``train_model(spec, acquisition=, progress=)``: train one model with the task's data and loss,
  an acquisition run (workers) or a subset model (driver, from ``evaluate``);
- ``step_scoring(i, rows)``: the :class:`StepScoring` of step i, its units of work, how their
  results merge and the file it resumes from (driver);
- ``score_unit(task)``: one unit of scoring work (workers);
- ``evaluate(variant)``: train and test the subset models of one variant (driver);
- ``summary_lines(variants)``: the command-line summary's rows (driver);
- optional: ``after_scoring(i, rows, scores)`` keeps what a step's figures need,
  ``finish_run(result)`` runs after the run's metrics are written (driver).

Every file is written atomically and every step checks for its output first, so a run killed at
any moment and started again continues to the same final subset.
"""

from __future__ import annotations

import abc
import enum
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from subsetsearch import __version__
from subsetsearch.executors import Executor, ScoreTask, TrainTask
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.budgets import budget_counts
from subsetsearch.internal.files import InputError
from subsetsearch.internal.ledger import Autosave, Ledger
from subsetsearch.pipeline.config import PLACEMENT_KEYS, EnsembleConfig, RunConfig, dump_config
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.rundir import (
    CONFIG,
    DATASET,
    METRICS,
    STATS,
    SUBSET,
    DatasetRecord,
    Subset,
    step_dir,
    write_json,
)
from subsetsearch.selection import all_members_disagree, select
from subsetsearch.stats import EnsembleStats

if TYPE_CHECKING:
    from subsetsearch.train.trainer import Network, ProgressFn, RunRecord, TrainSpec


class Seed(enum.IntEnum):
    """Purposes of derived seeds: one stream per use, so no two uses share random numbers."""

    DATA = 0
    START = 1
    ENSEMBLE = 2
    SELECT = 3
    SUBSET_MODEL = 4
    BASELINE = 5


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from the config seed and the purpose/iteration/run numbers."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


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
    config: RunConfig, channels: int, num_classes: int, device: object
) -> tuple[Network, Network, Callable[..., TaskInfo]]:
    """The acquisition and subset-model networks a config describes, and a maker of the task's
    :class:`TaskInfo` (``info(data_name, pool_size, test_size)``) that records where and in which
    precision they run."""
    from subsetsearch.train.trainer import Network

    acquisition = Network(config.model, config.train, channels, num_classes, device)
    subset = Network(config.subset_model_config(), config.subset_train_config(), channels, num_classes, device)

    def info(data_name: str, pool_size: int, test_size: int) -> TaskInfo:
        precision = {"acquisition": acquisition.precision, "subset_model": subset.precision}
        return TaskInfo(data_name, pool_size, test_size, config.model.name, str(device), precision)

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


@dataclass
class RunResult:
    run_dir: Path
    subset: Subset
    pool_size: int
    variants: list[Any]
    search_seconds: float
    steps: list[dict] = field(default_factory=list)
    info: TaskInfo | None = None


class StepScoring(abc.ABC):
    """Scoring one step's rows: its units of work, merging their results as they arrive, and
    saving the state with its :class:`~subsetsearch.internal.ledger.Ledger` in one file, so a
    killed run resumes from the last saved unit and never counts one twice.

    Subclasses set ``ledger`` (loaded from their file) and implement the four methods.
    """

    #: How progress bars name a unit of work.
    unit_label = "units"

    def __init__(self, num_shards: int, state_elements: int) -> None:
        self.num_shards = num_shards
        self.ledger = Ledger()
        self.autosave = Autosave(state_elements)
        self.progress: Callable[[str, int, int], None] | None = None

    @abc.abstractmethod
    def tasks(self) -> list[ScoreTask]:
        """Every unit of the step, done or not."""

    @abc.abstractmethod
    def merge(self, task: ScoreTask, result: Any) -> None:
        """Add one unit's result to the state (the ledger is :meth:`add`'s job)."""

    @abc.abstractmethod
    def save(self) -> None:
        """Write the state and its ledger atomically."""

    @abc.abstractmethod
    def scores(self) -> np.ndarray:
        """Every pool row's score, float64 [N]; NaN for rows not scored."""

    @property
    @abc.abstractmethod
    def saved(self) -> bool:
        """True once the state's file exists."""

    def record(self, task: ScoreTask, result: Any) -> None:
        """Enter a merged unit in the ledger (and its seconds)."""
        self.ledger.add(task.member, task.shard, num_shards=self.num_shards)
        self.ledger.seconds += result.seconds

    @functools.cached_property
    def total_units(self) -> int:
        """How many units the step has, done or not."""
        return len(self.tasks())

    def todo(self) -> list[ScoreTask]:
        """The units not held yet."""
        return [task for task in self.tasks() if not self.ledger.holds(task.member, task.shard)]

    def add(self, task: ScoreTask, result: Any) -> None:
        """Merge a finished unit, record it, and save when :class:`Autosave` says so."""
        self.merge(task, result)
        self.record(task, result)
        if self.progress is not None:
            self.progress(self.unit_label, self.ledger.units(self.num_shards), self.total_units)
        if self.autosave.due():
            self.save()
            self.autosave.saved()


class Search(abc.ABC):
    """One run of a config in a run directory (see the module docstring)."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path | None = None,
        reporter: Reporter | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else config.resolved_run_dir()
        self.reporter = reporter or Reporter(quiet=True)
        self._given_executor = executor  # shared by a study's runs; the run closes only its own
        self.info: TaskInfo | None = None

    # -- hooks ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def prepare(self, threads: int | None = None) -> TaskInfo:
        """Load the data and build the networks (``threads``: torch's threads where the config
        sets none). Called once on the driver, before anything is written, and once per worker."""

    @abc.abstractmethod
    def dataset_record(self) -> DatasetRecord:
        """What the report and the studies need of the data, written to ``dataset.npz``."""

    @abc.abstractmethod
    def train_model(self, spec: TrainSpec, *, acquisition: bool, progress: ProgressFn | None) -> RunRecord:
        """Train (or finish) one model as ``spec`` says, with the task's data and loss: an
        acquisition run (``acquisition``) or a subset model."""

    @abc.abstractmethod
    def step_scoring(self, iteration: int, score_rows: np.ndarray) -> StepScoring:
        """The scoring of step ``iteration``'s ``score_rows``, resumed from its file."""

    @abc.abstractmethod
    def score_unit(self, task: ScoreTask) -> Any:
        """One unit of scoring work (on a worker); its result has ``seconds``."""

    @abc.abstractmethod
    def evaluate(self, variant: VariantSpec) -> Variant:
        """Train (or resume) and test the subset models of one variant."""

    @abc.abstractmethod
    def summary_lines(self, variants: list[Any]) -> list[str]:
        """A header and one row per variant for the command-line summary."""

    def after_scoring(self, iteration: int, score_rows: np.ndarray, scores: np.ndarray) -> None:  # noqa: B027
        """Keep what the step's figures need (optional)."""

    def finish_run(self, result: RunResult) -> None:  # noqa: B027
        """After the run's metrics.json is written (optional)."""

    #: How progress lines name the pool's samples.
    sample_word = "samples"

    # -- the run directory ----------------------------------------------------------------------

    def check_run_dir(self) -> bool:
        """True if the run directory holds a run of this config, False if it holds none;
        InputError if it holds something else. Writes nothing."""
        import yaml

        path = self.run_dir / CONFIG
        if not path.is_file():
            if self.run_dir.exists() and any(self.run_dir.iterdir()):
                raise InputError(
                    f"'{self.run_dir}' exists and is not a subsetsearch run directory; give another --run-dir"
                )
            return False
        resolved = dump_config(self.config)
        try:
            previous = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            previous = {}
        previous.pop("subsetsearch_version", None)
        previous = _with_new_defaults(previous, resolved, dump_config(type(self.config)()))
        for key in PLACEMENT_KEYS:
            resolved.pop(key, None)
            previous.pop(key, None)
        if previous != resolved:
            key = _first_difference(previous, resolved)
            raise InputError(
                f"run directory '{self.run_dir}' holds a run of another config ({key} differs); "
                "give another --run-dir, or delete that directory to start over"
            )
        return True

    def claim_run_dir(self) -> None:
        """Write config.yaml to a new run directory, or check that an existing one ran this config."""
        import yaml

        if self.check_run_dir():
            for stale in self.run_dir.rglob(".*.tmp"):  # half-written files of a killed run
                stale.unlink(missing_ok=True)
            self.reporter.line(f"resuming {self.run_dir}")
            return
        resolved = dump_config(self.config)
        resolved.pop("run_dir", None)
        with atomic_path(self.run_dir / CONFIG) as tmp:
            tmp.write_text(yaml.safe_dump({**resolved, "subsetsearch_version": __version__}, sort_keys=False))

    def step_dir(self, i: int) -> Path:
        return step_dir(self.run_dir, i)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> RunResult:
        self.info = self.prepare()  # data and budgets checked before anything is written
        self.counts = budget_counts(self.config.search.budgets, self.info.pool_size)
        self.claim_run_dir()
        if not (self.run_dir / DATASET).is_file():
            self.dataset_record().save(self.run_dir / DATASET)
        own = self._given_executor is None
        self.executor = self.config.executor.make() if own else self._given_executor
        self.workload = SearchWorkload(self)
        try:
            result = self._run()
        finally:
            if own:
                self.executor.close()
        self.finish_run(result)
        return result

    def _run(self) -> RunResult:
        cfg, info = self.config, self.info
        n = info.pool_size
        self.reporter.line(
            f"{cfg.search.scheme} on {info.data_name}: pool {n}, test {info.test_size}, "
            f"budgets {self.counts}, {info.model_name} on {info.device} ({info.precision['acquisition']})"
        )
        started = time.perf_counter()
        scheme = cfg.search.scheme
        subsets = {
            "build_up": self._build_up,
            "auto_duplication": lambda: self._build_up(duplicate=True),
            "pretrain": self._from_full_ensemble,
            "compress": self._from_full_ensemble,
            "random": self._random,
            "full": self._full,
        }[scheme]()
        search_seconds = self._search_seconds()
        final = subsets[-1]
        final.write(self.run_dir / SUBSET)
        variants = self._evaluate_all(subsets)
        steps = [json.loads((d / METRICS).read_text()) for d in self._iteration_dirs()]
        result = RunResult(self.run_dir, final, n, variants, search_seconds, steps, info)
        write_json(
            self.run_dir / METRICS,
            {
                "scheme": scheme,
                "function": cfg.search.function,
                "pool_size": n,
                "test_size": info.test_size,
                "subset_size": final.size,
                "unique_samples": len(final.index),
                "search_seconds": search_seconds,
                "wall_seconds_this_session": time.perf_counter() - started,
                "device": info.device,
                "precision": info.precision,
                "variants": {v.name: v.to_json() for v in variants},
                "steps": steps,
            },
        )
        return result

    def _evaluate_all(self, subsets: list[Subset]) -> list[Any]:
        """The subset models of the final subset (``steps: all``: of every acquired one), with the
        baselines of ``compare``."""
        cfg = self.config
        scheme = cfg.search.scheme
        last = len(subsets) - 1
        if cfg.subset_model.steps == "all":  # every acquired subset (a random start is a baseline)
            starts_random = scheme in ("build_up", "auto_duplication")
            evaluated = [i for i in range(len(subsets)) if not starts_random or i > 0]
        else:
            evaluated = [last]
        variants = []
        for i in evaluated:
            suffix = "" if i == last else f"@iter_{i:02d}"
            init, lr = self._pretrained() if scheme == "pretrain" else (None, None)
            variants.append(self.evaluate(VariantSpec(scheme + suffix, subsets[i], init, lr)))
            if "random" in cfg.compare and scheme != "random":
                rows = self._permutation(Seed.BASELINE)[: subsets[i].size]
                variants.append(self.evaluate(VariantSpec("random" + suffix, Subset.empty().add_unscored(rows, 0))))
        if "full" in cfg.compare and scheme != "full":
            every = Subset.empty().add_unscored(np.arange(self.info.pool_size), 0)
            variants.append(self.evaluate(VariantSpec("full", every)))
        return variants

    def _pretrained(self) -> tuple[tuple[Path, ...], float]:
        """``pretrain``: subset model k starts from the last checkpoint of acquisition run k mod R,
        at ``search.finetune_lr`` (default: a tenth of the subset model's rate)."""
        members = self.member_files(0)
        runs = sorted({m.run for m in members})
        last = {run: [m.path for m in members if m.run == run][-1] for run in runs}
        init = tuple(last[runs[k % len(runs)]] for k in range(self.config.subset_model.models))
        return init, self.config.search.finetune_lr or self.config.subset_train_config().lr / 10

    def _iteration_dirs(self) -> list[Path]:
        return sorted(p for p in self.run_dir.glob("iter_*") if (p / METRICS).is_file())

    def _search_seconds(self) -> float:
        total = 0.0
        for d in self._iteration_dirs():
            metrics = json.loads((d / METRICS).read_text())
            total += metrics.get("train_seconds", 0.0) + metrics.get("score_seconds", 0.0)
        return total

    def _finish_step(self, i: int, subset: Subset, extra: dict, added: int | None = None) -> Subset:
        folder = self.step_dir(i)
        subset.write(folder / SUBSET)
        added = int(np.sum(subset.iteration == i)) if added is None else added
        write_json(
            folder / METRICS,
            {
                "iteration": i,
                "subset_size": subset.size,
                "unique_samples": len(subset.index),
                "multiplicity_counts": subset.multiplicity_counts(),
                "added": added,
                "device": self.info.device,
                "precision": self.info.precision["acquisition"],
                **extra,
            },
        )
        self.reporter.line(f"step {i}: subset {subset.size} samples ({added} added)")
        return subset

    def _done_step(self, i: int) -> Subset | None:
        folder = self.step_dir(i)
        if (folder / METRICS).is_file():
            return Subset.read(folder / SUBSET)
        return None

    def _permutation(self, purpose: Seed) -> np.ndarray:
        return np.random.default_rng(derive_seed(self.config.seed, purpose)).permutation(self.info.pool_size)

    # -- schemes --------------------------------------------------------------------------------

    def _random(self) -> list[Subset]:
        order = self._permutation(Seed.START)
        subsets: list[Subset] = []
        previous = 0
        subset = Subset.empty()
        for i, k in enumerate(self.counts):
            done = self._done_step(i)
            subset = (
                done
                if done is not None
                else self._finish_step(i, subset.add_unscored(order[previous:k], i), {"kind": "random"})
            )
            subsets.append(subset)
            previous = k
        return subsets

    def _full(self) -> list[Subset]:
        done = self._done_step(0)
        if done is None:
            every = Subset.empty().add_unscored(np.arange(self.info.pool_size), 0)
            done = self._finish_step(0, every, {"kind": "full"})
        return [done]

    def _build_up(self, duplicate: bool = False) -> list[Subset]:
        """Random start, then each step an ensemble trained on the subset scores the unselected rows
        (``duplicate``: every row, chosen ones included, so the subset becomes a multiset)."""
        order = self._permutation(Seed.START)
        subsets: list[Subset] = []
        subset = self._done_step(0) or self._finish_step(
            0, Subset.empty().add_unscored(order[: self.counts[0]], 0), {"kind": "random start"}
        )
        subsets.append(subset)
        for i in range(1, len(self.counts)):
            done = self._done_step(i)
            if done is not None:
                subset = done
            else:
                selected = np.zeros(self.info.pool_size, bool)
                if not duplicate:
                    selected[subset.index] = True
                score_all = duplicate or self.config.search.score_subset
                candidates = np.arange(self.info.pool_size) if score_all else np.flatnonzero(~selected)
                train_s, scores, ens = self._acquisition_scores(i, subset.training_rows(), candidates)
                outliers = self._disagreement_outliers(i)
                chosen = select(
                    scores,
                    self.counts[i] - subset.size,
                    exclude=selected | outliers,  # only the outliers when duplicating
                    skip_top=self.config.search.skip_top,
                    seed=derive_seed(self.config.seed, Seed.SELECT, i),
                )
                subset = self._finish_step(
                    i,
                    subset.add(chosen, scores[chosen], i),
                    {
                        "kind": "acquisition",
                        "trained_on": subset.size,
                        "scored": len(candidates),
                        "train_seconds": train_s,
                        "chosen_again": int(np.isin(chosen, subset.index).sum()),
                        **self._outlier_summary(outliers, selected),
                        **ens,
                    },
                    added=len(chosen),
                )
            subsets.append(subset)
        return subsets

    def _from_full_ensemble(self) -> list[Subset]:
        n = self.info.pool_size
        subsets: list[Subset] = []
        scores, outliers = None, np.zeros(n, bool)
        extra: dict = {}
        for i, k in enumerate(self.counts):
            done = self._done_step(i)
            if done is not None:
                subsets.append(done)
                continue
            if scores is None:
                train_s, scores, ens = self._acquisition_scores(0, np.arange(n), np.arange(n))
                outliers = self._disagreement_outliers(0)
                extra = {"train_seconds": train_s, **ens}
            chosen = select(
                scores,
                k,
                exclude=outliers,
                skip_top=self.config.search.skip_top,
                seed=derive_seed(self.config.seed, Seed.SELECT, 0),
            )
            step_extra = {
                "kind": "acquisition",
                "trained_on": n,
                "scored": n,
                **self._outlier_summary(outliers, np.zeros(n, bool)),
            }
            if i == 0:
                step_extra.update(extra)  # the ensemble's cost is counted once
            else:
                step_extra["score_seconds"] = 0.0
            subsets.append(self._finish_step(i, Subset.empty().add(chosen, scores[chosen], i), step_extra))
        return subsets

    def _disagreement_outliers(self, i: int) -> np.ndarray:
        """Pool mask of the rows step i's ensemble leaves out under ``search.skip_disagreement``
        (every member predicts a different class, from the step's statistics), else none."""
        if not self.config.search.skip_disagreement:
            return np.zeros(self.info.pool_size, bool)
        stats = EnsembleStats.load(self.step_dir(i) / STATS)
        return all_members_disagree(stats.vote_counts, stats.member_counts)

    def _outlier_summary(self, outliers: np.ndarray, excluded: np.ndarray) -> dict:
        """metrics.json's counts of the candidates (rows not ``excluded``) that the outlier rules
        left out: ``disagreement_outliers`` (every member disagrees) and ``skipped_top`` (the top
        ``search.skip_top`` share of the rest, as :func:`~subsetsearch.selection.select` counts it)."""
        out = {}
        if self.config.search.skip_disagreement:
            out["disagreement_outliers"] = int((outliers & ~excluded).sum())
        if self.config.search.skip_top:
            out["skipped_top"] = int(self.config.search.skip_top * int((~(excluded | outliers)).sum()))
        return out

    # -- ensembles ------------------------------------------------------------------------------

    def _acquisition_scores(
        self, i: int, train_rows: np.ndarray, score_rows: np.ndarray
    ) -> tuple[float, np.ndarray, dict]:
        """Train step i's ensemble on ``train_rows`` and score ``score_rows``: (training seconds,
        scores [N] with NaN for rows not scored, summary for metrics.json)."""
        train_seconds = self._train_ensemble(i, train_rows)
        scores, summary = self._score_step(i, score_rows)
        self.after_scoring(i, score_rows, scores)
        return train_seconds, scores, summary

    def member_path(self, i: int, name: str) -> Path:
        """The checkpoint of step i's member ``name``."""
        return self.step_dir(i) / "members" / f"{name}.safetensors"

    def ensemble(self, i: int) -> EnsembleConfig:
        """Step i's acquisition ensemble (``final_ensemble`` for the last step, where set)."""
        return self.config.ensemble_at(i, len(self.config.search.budgets))

    def member_files(self, i: int) -> list[Member]:
        """Step i's acquisition members, in ensemble order (runs, then epochs)."""
        ens = self.ensemble(i)
        members = []
        for r in range(ens.runs):
            if ens.kind == "seeds":
                members.append(Member(f"run_{r}/best", self.member_path(i, f"run_{r}/best"), r))
                continue
            record = json.loads((self.step_dir(i) / "members" / f"run_{r}" / "done.json").read_text())
            last = record["history"][-1]["epoch"]
            epochs = [e for e in self.config.checkpoint_epochs(ens) if e <= last]
            if not epochs:
                raise InputError(
                    f"ensemble: run {r} of step {i} stopped at epoch {last} (patience schedule), before the first "
                    f"checkpoint epoch {self.config.checkpoint_epochs(ens)[0]}; lower ensemble.start"
                )
            names = [f"run_{r}/epoch_{e:03d}" for e in epochs]
            members += [Member(name, self.member_path(i, name), r) for name in names]
        return members

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
            self.step_dir(i) / "members" / f"run_{task.run}",
            task.train_rows,
            seed=derive_seed(self.config.seed, Seed.ENSEMBLE, i, task.run),
            save_epochs=frozenset(self.config.checkpoint_epochs(ens)) if ens.kind != "seeds" else frozenset(),
            keep_best=ens.kind == "seeds",
        )
        progress = self.reporter.bar(f"step {i} run {task.run + 1}/{ens.runs}")
        return self.train_model(spec, acquisition=True, progress=progress).seconds

    def subset_model_seed(self, k: int) -> int:
        return derive_seed(self.config.seed, Seed.SUBSET_MODEL, k)

    def _train_ensemble(self, i: int, train_rows: np.ndarray) -> float:
        """Train step i's acquisition runs on ``train_rows`` (on the executor); their training seconds."""
        runs = self.ensemble(i).runs
        tasks = [TrainTask(i, r, train_rows) for r in range(runs)]
        local = self.executor.name == "local"
        if not local:
            plural = "s" if runs > 1 else ""
            self.reporter.line(f"step {i}: training {runs} acquisition run{plural} on {self.executor.describe()}")
        done = self.executor.train(
            self.workload,
            tasks,
            on_done=None
            if local
            else lambda task, _: self.reporter.line(f"step {i}: run {task.run + 1}/{runs} trained"),
        )
        return float(sum(done.values()))

    def _score_step(self, i: int, score_rows: np.ndarray) -> tuple[np.ndarray, dict]:
        """Score ``score_rows`` with step i's ensemble, one task per unit on the executor, resuming
        from the units the step's file already holds."""
        scoring = self.step_scoring(i, score_rows)
        todo = scoring.todo()
        members = len(self.member_files(i))
        if todo:
            where = "" if self.executor.name == "local" else f" on {self.executor.describe()}"
            self.reporter.line(f"step {i}: scoring {len(score_rows)} samples with {members} members{where}")
        scoring.progress = self.reporter.bar(f"step {i} scoring")
        self.executor.score(self.workload, todo, scoring.add)
        if todo or not scoring.saved:
            scoring.save()
        summary = {"ensemble": self.ensemble(i).kind, "members": members, "score_seconds": scoring.ledger.seconds}
        if self.executor.name != "local":
            summary["executor"] = self.executor.describe()
        return scoring.scores(), summary


class SearchWorkload:
    """The acquisition members of one run, as an executor's work: trains runs and scores units of
    pool rows through the task's hooks.

    In this process it works through the run's own :class:`Search`; pickled to a Ray worker it
    carries only the config and run directory, and the worker prepares the data itself, once.
    """

    def __init__(self, search: Search) -> None:
        self.task = type(search)  # pickled by reference: the worker builds the same task
        self.config = search.config
        self.run_dir = search.run_dir
        self._search: Search | None = search

    def __getstate__(self) -> dict:
        return {"task": self.task, "config": self.config, "run_dir": self.run_dir, "_search": None}

    def setup(self, threads: int | None) -> None:
        if self._search is not None:
            return
        search = self.task(self.config, self.run_dir)
        search.info = search.prepare(threads)
        self._search = search

    def train(self, task: TrainTask) -> float:
        return self._search.train_member_run(task)

    def score(self, task: ScoreTask) -> Any:
        return self._search.score_unit(task)


def _with_new_defaults(previous: dict, resolved: dict, defaults: dict) -> dict:
    """``previous`` (an older config.yaml) with the keys it lacks filled in from ``resolved`` where
    ``resolved`` holds their default: a version without a key ran as its default does, so its runs
    resume after an upgrade that adds the key."""
    out = dict(previous)
    for key, value in resolved.items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if key not in out:
            if isinstance(defaults, dict) and key in defaults and value == default:
                out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict) and isinstance(default, dict):
            out[key] = _with_new_defaults(out[key], value, default)
    return out


def _first_difference(a: object, b: object, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
    return prefix or "the config"
