"""``subsetsearch run``: the whole subset search of one config, in a resumable run directory.

Layout (see DESIGN.md)::

    RUN_DIR/config.yaml                   resolved config, package version
    RUN_DIR/iter_NN/members/run_R/        the acquisition ensemble's training runs (checkpoints)
    RUN_DIR/iter_NN/stats.npz             ensemble statistics over the scored rows, with their members
    RUN_DIR/iter_NN/votes.npz             each member's predicted class of every scored row (consensus study)
    RUN_DIR/iter_NN/subset.parquet        the subset after step NN: index, multiplicity, score, iteration
    RUN_DIR/iter_NN/metrics.json          sizes, ensemble accuracy, seconds of the step
    RUN_DIR/models/VARIANT/model_K/       subset models (VARIANT: the scheme, random, full)
    RUN_DIR/subset.parquet                the final subset
    RUN_DIR/metrics.json                  test accuracy of every variant, cost of the search

Every file is written atomically and every step checks for its output first, so a run killed at
any moment and started again continues to the same final subset.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from subsetsearch import __version__
from subsetsearch.acquisition import acquire
from subsetsearch.executors import Executor, ScoreTask, ShardScore, TrainTask, score_shards
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.files import InputError
from subsetsearch.pipeline.config import PLACEMENT_KEYS, RunConfig, dump_config
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.selection import select
from subsetsearch.stats import EnsembleStats
from subsetsearch.train import data as datasets

#: Statistics of an iteration are saved after every member when they are this small
#: (elements N·C); larger ones at most every STATE_SAVE_INTERVAL_S seconds.
SAVE_EVERY_MEMBER_ELEMENTS = 1 << 24
STATE_SAVE_INTERVAL_S = 30.0

# Purposes of derived seeds: one stream per use, so no two uses share random numbers.
_SEED_DATA, _SEED_START, _SEED_ENSEMBLE, _SEED_SELECT, _SEED_SUBSET_MODEL, _SEED_BASELINE = range(6)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from the config seed and the purpose/iteration/run numbers."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class Subset:
    """A multiset of pool rows in the order they were chosen."""

    index: np.ndarray  # int64 [k] distinct rows
    multiplicity: np.ndarray  # int64 [k]
    score: np.ndarray  # float64 [k]; NaN where chosen at random
    iteration: np.ndarray  # int64 [k]

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
        """Rows repeated by their multiplicity: what the trainer samples from."""
        return np.repeat(self.index, self.multiplicity)

    def write(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {"index": self.index, "multiplicity": self.multiplicity, "score": self.score, "iteration": self.iteration}
        )
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)

    @classmethod
    def read(cls, path: Path) -> Subset:
        from subsetsearch.report.rundir import read_subset

        table = read_subset(path)
        if table is None:
            raise FileNotFoundError(path)
        return cls(table.index, table.multiplicity, table.score, table.iteration)


class MemberVotes:
    """Each member's predicted class (argmax) on the scored rows, in member order: what the
    checkpoint-consensus study reads (``iter_NN/votes.npz``: rows, names, votes [M, n]).

    Members arrive a shard at a time; rows a member has not scored yet hold ``UNSET``.
    """

    UNSET = np.iinfo(np.uint16).max

    def __init__(self, rows: np.ndarray, order: list[str]) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.order = {name: k for k, name in enumerate(order)}
        self.by_name: dict[str, np.ndarray] = {}

    def set(self, name: str, positions: slice, votes: np.ndarray) -> None:
        """Member ``name``'s votes for the scored rows at ``positions``."""
        if name not in self.by_name:
            self.by_name[name] = np.full(self.rows.size, self.UNSET, dtype=votes.dtype)
        self.by_name[name][positions] = votes

    def save(self, path: Path) -> None:
        names = sorted(self.by_name, key=self.order.__getitem__)
        stacked = np.stack([self.by_name[n] for n in names]) if names else np.zeros((0, self.rows.size), np.uint16)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, rows=self.rows, names=np.array(names, dtype=str), votes=stacked)

    @classmethod
    def load(cls, path: Path, rows: np.ndarray, order: list[str], keep: set[str]) -> MemberVotes:
        """The saved votes of the members in ``keep`` (an empty record when the file is missing or
        was written for other rows)."""
        votes = cls(rows, order)
        if not path.is_file():
            return votes
        with np.load(path) as saved:
            if not np.array_equal(saved["rows"], votes.rows):
                return votes
            for name, row in zip(saved["names"].tolist(), saved["votes"], strict=True):
                if name in keep:
                    votes.by_name[name] = row
        return votes


@dataclass
class Variant:
    """Test results of the models trained on one subset."""

    name: str
    size: int
    unique: int
    accuracies: list[float]
    ensemble_accuracy: float
    train_seconds: list[float]

    def to_json(self) -> dict:
        return {
            "subset_size": self.size,
            "unique_samples": self.unique,
            "test_accuracy": self.accuracies,
            "test_accuracy_mean": float(np.mean(self.accuracies)),
            "test_accuracy_std": float(np.std(self.accuracies)),
            "ensemble_test_accuracy": self.ensemble_accuracy,
            "train_seconds": self.train_seconds,
        }


@dataclass
class RunResult:
    run_dir: Path
    subset: Subset
    pool_size: int
    variants: list[Variant]
    search_seconds: float
    steps: list[dict] = field(default_factory=list)


def _write_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")


def budget_counts(budgets: list[float], pool_size: int) -> list[int]:
    """Budgets (fractions <= 1 or counts > 1) as sample counts; InputError if one exceeds the pool or
    the counts do not grow."""
    counts = []
    for b in budgets:
        k = max(1, round(b * pool_size)) if b <= 1 else int(b)
        if k > pool_size:
            raise InputError(f"search.budgets: {int(b)} exceeds the pool ({pool_size} samples); lower it")
        counts.append(k)
    for a, b in itertools.pairwise(counts):
        if b <= a:
            raise InputError(
                f"search.budgets: on a pool of {pool_size} samples the schedule {budgets} gives {counts} samples, "
                "which does not grow; space the budgets further apart"
            )
    return counts


def load_splits(config: RunConfig) -> datasets.Splits:
    """The pool, validation and test sets a config asks for."""
    cfg = config.data
    seed = derive_seed(config.seed, _SEED_DATA)
    test: datasets.LabeledImages | None = None
    if cfg.dataset == "fashion_mnist":
        train, test = datasets.load_fashion_mnist(cfg.path)
        name = "fashion_mnist"
    elif cfg.dataset == "digits":
        train, name = datasets.load_digits_images(), "digits"
    elif cfg.dataset == "arrays":
        train, name = datasets.load_arrays(cfg.path, cfg.labels, lazy=cfg.on_disk), str(cfg.path)
        if cfg.test_path is not None:
            test = datasets.load_arrays(cfg.test_path, cfg.test_labels, lazy=cfg.on_disk)
    else:
        train, _ = datasets.load_image_folder(cfg.path, cfg.image_size)
        name = str(cfg.path)
        if cfg.test_path is not None:
            test, _ = datasets.load_image_folder(cfg.test_path, cfg.image_size)
    if test is None:
        rest, held = datasets.stratified_split(train.y, cfg.test_fraction, seed)
        train, test = train.take(rest), train.take(held)
    if test.x.shape[1:] != train.x.shape[1:]:
        raise InputError(f"test images are {test.x.shape[1:]} but training images {train.x.shape[1:]}; give one size")
    train = datasets.subsample(train, cfg.limit, seed + 1)
    test = datasets.subsample(test, cfg.test_limit, seed + 2)
    validation = datasets.LabeledImages(train.x[:0], train.y[:0])
    if cfg.validation_fraction > 0:
        rest, held = datasets.stratified_split(train.y, cfg.validation_fraction, seed + 3)
        train, validation = train.take(rest), train.take(held)
    num_classes = int(max(train.y.max(), test.y.max())) + 1
    if len(np.unique(train.y)) < 2:
        raise InputError(f"the pool of {name} holds a single class; give at least two")
    return datasets.Splits(name, train, validation, test, num_classes)


class Search:
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

    # -- set-up ---------------------------------------------------------------------------------

    def check_run_dir(self) -> bool:
        """True if the run directory holds a run of this config, False if it holds none;
        InputError if it holds something else. Writes nothing."""
        import yaml

        path = self.run_dir / "config.yaml"
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
        with atomic_path(self.run_dir / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump({**resolved, "subsetsearch_version": __version__}, sort_keys=False))

    def _prepare(self, threads: int | None = None) -> None:
        """Load the data and build the networks; ``threads``: torch's threads where the config sets none."""
        from subsetsearch.internal.malloc import tune_malloc

        tune_malloc()
        from subsetsearch.train import trainer

        trainer.set_threads(self.config.train.threads or threads)
        self.splits = load_splits(self.config)
        self.data_name = self.splits.name
        pool = self.splits.pool
        self.device = trainer.resolve_device(self.config.train.device)
        mean, std = trainer.channel_stats(pool.x)
        build = trainer.TensorData.build
        self.pool = build(pool.x, pool.y, mean, std, self.device)
        self.validation = (
            build(self.splits.validation.x, self.splits.validation.y, mean, std, self.device)
            if len(self.splits.validation)
            else None
        )
        self.test = build(self.splits.test.x, self.splits.test.y, mean, std, self.device)
        c = pool.x.shape[1]
        self.acq_net = trainer.Network(self.config.model, self.config.train, c, self.splits.num_classes, self.device)
        self.subset_net = trainer.Network(
            self.config.subset_model_config(),
            self.config.subset_train_config(),
            c,
            self.splits.num_classes,
            self.device,
        )
        self.counts = budget_counts(self.config.search.budgets, len(pool))

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> RunResult:
        self._prepare()  # data and budgets checked before anything is written
        self.claim_run_dir()
        own = self._given_executor is None
        self.executor = self.config.executor.make() if own else self._given_executor
        self.workload = SearchWorkload(self)
        try:
            return self._run()
        finally:
            if own:
                self.executor.close()

    def _run(self) -> RunResult:
        n = len(self.pool)
        cfg = self.config
        self.reporter.line(
            f"{cfg.search.scheme} on {self.data_name}: pool {n}, test {len(self.test)}, "
            f"budgets {self.counts}, {cfg.model.name} on {self.device}"
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
        final.write(self.run_dir / "subset.parquet")
        last = len(subsets) - 1
        if cfg.subset_model.steps == "all":  # every acquired subset (a random start is a baseline)
            starts_random = scheme in ("build_up", "auto_duplication")
            evaluated = [i for i in range(len(subsets)) if not starts_random or i > 0]
        else:
            evaluated = [last]
        variants = []
        for i in evaluated:
            suffix = "" if i == last else f"@iter_{i:02d}"
            variants.append(self._evaluate(scheme + suffix, subsets[i], pretrained=scheme == "pretrain"))
            if "random" in cfg.compare and scheme != "random":
                variants.append(self._evaluate("random" + suffix, self._baseline_subset("random", subsets[i].size)))
        if "full" in cfg.compare and scheme != "full":
            variants.append(self._evaluate("full", self._baseline_subset("full", len(self.pool))))
        steps = [json.loads((d / "metrics.json").read_text()) for d in self._iteration_dirs()]
        result = RunResult(self.run_dir, final, n, variants, search_seconds, steps)
        _write_json(
            self.run_dir / "metrics.json",
            {
                "scheme": scheme,
                "function": cfg.search.function,
                "pool_size": n,
                "test_size": len(self.test),
                "subset_size": final.size,
                "unique_samples": len(final.index),
                "search_seconds": search_seconds,
                "wall_seconds_this_session": time.perf_counter() - started,
                "variants": {v.name: v.to_json() for v in variants},
                "steps": steps,
            },
        )
        return result

    def _iteration_dirs(self) -> list[Path]:
        return sorted(p for p in self.run_dir.glob("iter_*") if (p / "metrics.json").is_file())

    def _search_seconds(self) -> float:
        total = 0.0
        for d in self._iteration_dirs():
            metrics = json.loads((d / "metrics.json").read_text())
            total += metrics.get("train_seconds", 0.0) + metrics.get("score_seconds", 0.0)
        return total

    def _iter_dir(self, i: int) -> Path:
        return self.run_dir / f"iter_{i:02d}"

    def _finish_step(self, i: int, subset: Subset, extra: dict, added: int | None = None) -> Subset:
        folder = self._iter_dir(i)
        subset.write(folder / "subset.parquet")
        added = int(np.sum(subset.iteration == i)) if added is None else added
        _write_json(
            folder / "metrics.json",
            {
                "iteration": i,
                "subset_size": subset.size,
                "unique_samples": len(subset.index),
                "multiplicity_counts": subset.multiplicity_counts(),
                "added": added,
                "device": str(self.device),
                **extra,
            },
        )
        self.reporter.line(f"step {i}: subset {subset.size} samples ({added} added)")
        return subset

    def _done_step(self, i: int) -> Subset | None:
        folder = self._iter_dir(i)
        if (folder / "metrics.json").is_file() and (folder / "subset.parquet").is_file():
            return Subset.read(folder / "subset.parquet")
        return None

    def _permutation(self, purpose: int) -> np.ndarray:
        return np.random.default_rng(derive_seed(self.config.seed, purpose)).permutation(len(self.pool))

    def _random(self) -> list[Subset]:
        order = self._permutation(_SEED_START)
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
            n = len(self.pool)
            done = self._finish_step(0, Subset.empty().add_unscored(np.arange(n), 0), {"kind": "full"})
        return [done]

    def _build_up(self, duplicate: bool = False) -> list[Subset]:
        """Random start, then each step an ensemble trained on the subset scores the unselected rows
        (``duplicate``: every row, chosen ones included, so the subset becomes a multiset)."""
        order = self._permutation(_SEED_START)
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
                selected = np.zeros(len(self.pool), bool)
                if not duplicate:
                    selected[subset.index] = True
                candidates = np.flatnonzero(~selected)
                train_s, scores, ens = self._acquisition_scores(i, subset.training_rows(), candidates)
                chosen = select(
                    scores,
                    self.counts[i] - subset.size,
                    exclude=selected,  # nothing excluded when duplicating
                    skip_top=self.config.search.skip_top,
                    seed=derive_seed(self.config.seed, _SEED_SELECT, i),
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
                        **ens,
                    },
                    added=len(chosen),
                )
            subsets.append(subset)
        return subsets

    def _from_full_ensemble(self) -> list[Subset]:
        n = len(self.pool)
        subsets: list[Subset] = []
        scores = None
        extra: dict = {}
        for i, k in enumerate(self.counts):
            done = self._done_step(i)
            if done is not None:
                subsets.append(done)
                continue
            if scores is None:
                train_s, scores, ens = self._acquisition_scores(0, np.arange(n), np.arange(n))
                extra = {"train_seconds": train_s, **ens}
            chosen = select(
                scores, k, skip_top=self.config.search.skip_top, seed=derive_seed(self.config.seed, _SEED_SELECT, 0)
            )
            step_extra = {"kind": "acquisition", "trained_on": n, "scored": n}
            if i == 0:
                step_extra.update(extra)  # the ensemble's cost is counted once
            else:
                step_extra["score_seconds"] = 0.0
            subsets.append(self._finish_step(i, Subset.empty().add(chosen, scores[chosen], i), step_extra))
        return subsets

    def _acquisition_scores(
        self, i: int, train_rows: np.ndarray, score_rows: np.ndarray
    ) -> tuple[float, np.ndarray, dict]:
        """Train iteration i's ensemble on ``train_rows`` and score ``score_rows``: (training seconds,
        scores [N] with NaN for rows not scored, summary for metrics.json)."""
        train_s, stats, ens = self._ensemble(i, train_rows, score_rows)
        labels = self.splits.pool.y if self.config.search.function == "error_count" else None
        return train_s, acquire(stats, self.config.search.function, labels=labels), ens

    # -- ensembles ------------------------------------------------------------------------------

    def _member_files(self, i: int) -> list[tuple[str, Path, int]]:
        """(member name, checkpoint path, run) of iteration i's acquisition ensemble."""
        ens = self.config.ensemble
        members_dir = self._iter_dir(i) / "members"
        files = []
        for r in range(ens.runs):
            run_dir = members_dir / f"run_{r}"
            if ens.kind == "seeds":
                files.append((f"run_{r}/best", run_dir / "best.safetensors", r))
                continue
            record = json.loads((run_dir / "done.json").read_text())
            last = record["history"][-1]["epoch"]
            epochs = [e for e in self.config.checkpoint_epochs() if e <= last]
            if not epochs:
                raise InputError(
                    f"ensemble: run {r} of step {i} stopped at epoch {last} (patience schedule), before the first "
                    f"checkpoint epoch {self.config.checkpoint_epochs()[0]}; lower ensemble.start"
                )
            files += [(f"run_{r}/epoch_{e:03d}", run_dir / f"epoch_{e:03d}.safetensors", r) for e in epochs]
        return files

    def _train_ensemble(self, i: int, train_rows: np.ndarray) -> float:
        """Train iteration i's acquisition runs on ``train_rows`` (on the executor); their training seconds."""
        runs = self.config.ensemble.runs
        tasks = [TrainTask(i, r, train_rows) for r in range(runs)]
        if self.executor.name != "local":
            plural = "s" if runs > 1 else ""
            self.reporter.line(f"step {i}: training {runs} acquisition run{plural} on {self.executor.describe()}")
        done = self.executor.train(
            self.workload,
            tasks,
            on_done=None
            if self.executor.name == "local"
            else lambda task, seconds: self.reporter.line(f"step {i}: run {task.run + 1}/{runs} trained"),
        )
        return float(sum(done.values()))

    def _train_run(self, i: int, r: int, train_rows: np.ndarray) -> float:
        """Train (or finish) acquisition run r of iteration i; its training seconds."""
        from subsetsearch.train import trainer

        cfg = self.config
        ens = cfg.ensemble
        save_epochs = frozenset(cfg.checkpoint_epochs()) if ens.kind != "seeds" else frozenset()
        self.reporter.line(f"step {i}: training acquisition run {r + 1}/{ens.runs} on {len(train_rows)} samples")
        record = trainer.train_run(
            self._iter_dir(i) / "members" / f"run_{r}",
            self.acq_net,
            self.pool,
            train_rows,
            seed=derive_seed(cfg.seed, _SEED_ENSEMBLE, i, r),
            validation=self.validation,
            save_epochs=save_epochs,
            keep_best=ens.kind == "seeds",
            progress=self.reporter.bar(f"step {i} run {r + 1}/{ens.runs}"),
            batch_loss=self._batch_loss(self.acq_net, train_rows),
        )
        return record.seconds

    def _batch_loss(self, network: object, train_rows: np.ndarray) -> object:
        """The trainer's loss for this task (None: its default, cross-entropy)."""
        return None

    def _ensemble(self, i: int, train_rows: np.ndarray, score_rows: np.ndarray) -> tuple[float, EnsembleStats, dict]:
        """Train iteration i's acquisition ensemble on ``train_rows``; score ``score_rows`` into EnsembleStats.

        Scoring is one task per (member, shard of ``score_rows``) on the executor. ``stats.npz``
        records the members it holds whole and the (member, shard) pairs of members it holds in
        part, so a killed run resumes from its last saved pair, never counting one twice.
        """
        ens = self.config.ensemble
        train_seconds = self._train_ensemble(i, train_rows)
        members = self._member_files(i)
        names = [name for name, _, _ in members]
        shards = score_shards(len(score_rows))
        stats_path = self._iter_dir(i) / "stats.npz"
        n, c = len(self.pool), self.splits.num_classes
        stats = EnsembleStats.load(stats_path) if stats_path.is_file() else EnsembleStats(n, c)
        whole = set(stats.metadata.get("members", []))
        units = set(stats.metadata.get("units", []))
        score_seconds = float(stats.metadata.get("seconds", 0.0))
        tasks = [
            ScoreTask(name, str(path), s, score_rows[shard])
            for name, path, _ in members
            if name not in whole
            for s, shard in enumerate(shards)
            if f"{name}#{s}" not in units
        ]
        if tasks:
            where = "" if self.executor.name == "local" else f" on {self.executor.describe()}"
            self.reporter.line(f"step {i}: scoring {len(score_rows)} samples with {len(members)} members{where}")
        votes_path = self._iter_dir(i) / "votes.npz"
        started = whole | {unit.split("#")[0] for unit in units}
        votes = MemberVotes.load(votes_path, score_rows, names, started)
        every_unit = n * c <= SAVE_EVERY_MEMBER_ELEMENTS
        last_save = time.perf_counter()
        bar = self.reporter.bar(f"step {i} scoring")

        def on_done(task: ScoreTask, result: ShardScore) -> None:
            nonlocal score_seconds, last_save
            votes.set(task.member, shards[task.shard], result.votes)
            units.add(task.name)
            if all(f"{task.member}#{s}" in units for s in range(len(shards))):
                whole.add(task.member)
                units.difference_update(f"{task.member}#{s}" for s in range(len(shards)))
            score_seconds += result.seconds
            stats.metadata = {
                "members": [name for name in names if name in whole],
                "units": sorted(units),
                "seconds": score_seconds,
            }
            if bar is not None:
                bar("(member, shard) pairs", len(whole) * len(shards) + len(units), len(names) * len(shards))
            if every_unit or time.perf_counter() - last_save > STATE_SAVE_INTERVAL_S:
                votes.save(votes_path)  # first: the votes always hold every member the statistics hold
                stats.save(stats_path)
                last_save = time.perf_counter()

        self.executor.score(self.workload, tasks, stats, on_done)
        if tasks or not stats_path.is_file():
            votes.save(votes_path)
            stats.save(stats_path)
        summary = {"ensemble": ens.kind, "members": len(members), "score_seconds": score_seconds}
        if self.executor.name != "local":
            summary["executor"] = self.executor.describe()
        return train_seconds, stats, summary

    def _score_shard(self, task: ScoreTask) -> ShardScore:
        """One member's statistics and votes on one shard of pool rows."""
        from subsetsearch.train import trainer

        started = time.perf_counter()
        if getattr(self, "_shard_member", None) != task.path:  # a worker keeps its last member loaded
            self._shard_net = getattr(self, "_shard_net", None) or self.acq_net.build(0)
            trainer.load_weights(self._shard_net, Path(task.path))
            self._shard_member = task.path
        probs = trainer.predict(self.acq_net, self._shard_net, self.pool, task.rows)
        stats = EnsembleStats(len(task.rows), self.splits.num_classes)
        stats.update(probs)
        dtype = np.uint16 if probs.shape[1] < MemberVotes.UNSET else np.uint32
        return ShardScore(stats, np.argmax(probs, axis=1).astype(dtype), time.perf_counter() - started)

    # -- subset models --------------------------------------------------------------------------

    def _baseline_subset(self, name: str, size: int) -> Subset:
        n = len(self.pool)
        rows = np.arange(n) if name == "full" else self._permutation(_SEED_BASELINE)[:size]
        return Subset.empty().add_unscored(rows, 0)

    def _evaluate(self, name: str, subset: Subset, pretrained: bool = False) -> Variant:
        from subsetsearch.train import trainer

        cfg = self.config
        folder = self.run_dir / "models" / name
        accuracies, seconds, probs_sum = [], [], None
        test_y = self.splits.test.y
        net = self.subset_net
        for k in range(cfg.subset_model.models):
            model_dir = folder / f"model_{k}"
            init, lr = None, None
            if pretrained:
                member_files = self._member_files(0)
                runs = sorted({r for _, _, r in member_files})
                run = runs[k % len(runs)]
                init = [p for _, p, r in member_files if r == run][-1]
                lr = cfg.search.finetune_lr or net.train.lr / 10
            self.reporter.line(
                f"{name}: training subset model {k + 1}/{cfg.subset_model.models} on {subset.size} samples"
            )
            record = trainer.train_run(
                model_dir,
                net,
                self.pool,
                subset.training_rows(),
                seed=derive_seed(cfg.seed, _SEED_SUBSET_MODEL, k),
                validation=self.validation,
                init_from=init,
                lr=lr,
                save_last=True,
                progress=self.reporter.bar(f"{name} model {k + 1}"),
            )
            probs_path = model_dir / "test_probs.npy"
            if probs_path.is_file():
                probs = np.load(probs_path)
            else:
                model = net.build(0)
                trainer.load_weights(model, model_dir / "last.safetensors")
                probs = trainer.predict(net, model, self.test)
                with atomic_path(probs_path) as tmp, open(tmp, "wb") as handle:
                    np.save(handle, probs)
            accuracies.append(trainer.accuracy(probs, test_y))
            seconds.append(record.seconds)
            probs_sum = probs.astype(np.float64) if probs_sum is None else probs_sum + probs
        ensemble = trainer.accuracy(probs_sum, test_y)
        variant = Variant(name, subset.size, len(subset.index), accuracies, ensemble, seconds)
        self.reporter.line(
            f"{name}: test accuracy {100 * np.mean(accuracies):.2f}%"
            + (f" (ensemble of {len(accuracies)}: {100 * ensemble:.2f}%)" if len(accuracies) > 1 else "")
        )
        return variant


class SearchWorkload:
    """The acquisition members of one run, as an executor's work: trains runs and scores
    checkpoints over shards of pool rows.

    In this process it works through the run's own :class:`Search`; pickled to a Ray worker it
    carries only the config and run directory, and the worker loads the data itself, once.
    """

    def __init__(self, search: Search) -> None:
        self.config = search.config
        self.run_dir = search.run_dir
        self._search: Search | None = search

    def __getstate__(self) -> dict:
        return {"config": self.config, "run_dir": self.run_dir, "_search": None}

    def setup(self, threads: int | None) -> None:
        if self._search is not None:
            return
        search = search_for(self.config, self.run_dir)
        search._prepare(threads)
        self._search = search

    def train(self, task: TrainTask) -> float:
        return self._search._train_run(task.iteration, task.run, task.train_rows)

    def score(self, task: ScoreTask) -> ShardScore:
        return self._search._score_shard(task)


def _first_difference(a: object, b: object, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
    return prefix or "the config"


def summary(result: RunResult, config: RunConfig) -> str:
    """One screen: what was searched, the subset, and the test result of every variant."""
    lines = [
        f"run directory   {result.run_dir}",
        f"scheme          {config.search.scheme} ({config.search.function}, ensemble {config.ensemble.kind})",
        f"subset          {result.subset.size} of {result.pool_size} samples "
        f"({100 * result.subset.size / result.pool_size:.1f}%, {len(result.subset.index)} unique)"
        f" -> {result.run_dir / 'subset.parquet'}",
        f"search cost     {result.search_seconds:.1f} s (ensemble training + scoring)",
        "",
    ]
    if config.task == "detection":
        from subsetsearch.pipeline.detect import summary_rows

        return "\n".join(lines + summary_rows(result.variants))
    lines.append(f"{'subset model':<14}{'samples':>9}{'test accuracy':>22}{'ensemble':>10}{'train s':>9}")
    for v in result.variants:
        mean, std = 100 * np.mean(v.accuracies), 100 * np.std(v.accuracies)
        spread = f"{mean:.2f}% ± {std:.2f}" if len(v.accuracies) > 1 else f"{mean:.2f}%"
        ensemble = f"{100 * v.ensemble_accuracy:.2f}%" if len(v.accuracies) > 1 else "-"
        lines.append(f"{v.name:<14}{v.size:>9}{spread:>22}{ensemble:>10}{np.mean(v.train_seconds):>9.1f}")
    return "\n".join(lines)


def search_for(
    config: RunConfig, run_dir: Path | None = None, reporter: Reporter | None = None, executor: Executor | None = None
) -> Search:
    """The Search of a config's task (classification or detection)."""
    if config.task == "detection":
        from subsetsearch.pipeline.detect import DetectionSearch

        return DetectionSearch(config, run_dir, reporter, executor)
    return Search(config, run_dir, reporter, executor)


def run_config(config: RunConfig, run_dir: Path | None = None, reporter: Reporter | None = None) -> RunResult:
    """Run (or resume) the search a config describes."""
    return search_for(config, run_dir, reporter).run()
