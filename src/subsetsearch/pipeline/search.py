"""The driver: one run of a config's scheme over its task, in a resumable run directory.

A search has three parts (docs/architecture.md, "A search in three parts"): the **task**
(:mod:`~subsetsearch.pipeline.task`: data, models, scoring; what a worker rebuilds), the
**scheme** (:mod:`~subsetsearch.pipeline.schemes`: how the subset is found, step by step) and this
**driver**, which owns the run directory (claim, resume, config check), runs the scheme with the
services it asks for (acquisition scores on the executor, finished steps, outlier rules), trains
the subset models of every variant, and writes the run's metrics.

Every file is written atomically and every step checks for its output first, so a run killed at
any moment and started again continues to the same final subset. Each finished piece of work is
recorded with the fingerprint of its inputs (``work.json``); a study hands the driver the work
other cells did (:class:`SharedWork`), found by those fingerprints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from subsetsearch import __version__
from subsetsearch.errors import InputError
from subsetsearch.executors import Executor, ScoreTask, TrainTask
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.budgets import budget_counts
from subsetsearch.internal.directories import DirectoryLock, marker_kind, write_marker
from subsetsearch.internal.fingerprint import fingerprint
from subsetsearch.pipeline.classify import ClassificationTask
from subsetsearch.pipeline.config import PLACEMENT_KEYS, RunConfig, dump_config
from subsetsearch.pipeline.detect import DetectionTask
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.pipeline.schemes import SCHEMES, Scored
from subsetsearch.pipeline.seeds import Seed, derive_seed
from subsetsearch.pipeline.task import RunResult, Task, TaskInfo, TaskWorkload, VariantSpec
from subsetsearch.rundir import (
    DatasetRecord,
    RunLayout,
    Step,
    Subset,
    WorkLog,
    damaged,
    directory_kind,
    read_json,
    variant_name,
    write_json,
)
from subsetsearch.selection import all_members_disagree, select

#: The task of each ``task:`` a config may name.
TASKS: dict[str, type[Task]] = {"classification": ClassificationTask, "detection": DetectionTask}


class SharedWork(Protocol):
    """Finished work of other runs a driver may take instead of doing it (a study's cells)."""

    def fetch(self, layout: RunLayout, path: Path, fingerprint: str, accepts: Callable[[dict], bool] | None) -> bool:
        """Link a finished piece with ``fingerprint`` (whose record ``accepts`` takes) to ``path`` of
        ``layout``, with its records; True if one was found. Nothing happens where ``path`` exists."""


class Search:
    """One run of a config in a run directory (see the module docstring).

    Parameters
    ----------
    config : RunConfig
    run_dir : Path, optional
        Default: the config's ``run_dir``, else ``runs/<name>``.
    reporter : Reporter, optional
        Progress lines and bars (quiet by default).
    executor : Executor, optional
        Where members train and score; default: the config's (made and closed by the run).
    shared : SharedWork, optional
        Work other runs finished, taken by fingerprint (a study's).
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path | None = None,
        reporter: Reporter | None = None,
        executor: Executor | None = None,
        shared: SharedWork | None = None,
    ) -> None:
        self.config = config
        self.layout = RunLayout(run_dir if run_dir is not None else config.resolved_run_dir())
        self.run_dir = self.layout.root
        self.reporter = reporter or Reporter(quiet=True)
        self.task: Task = TASKS[config.task](config, self.layout, self.reporter)
        self.scheme = SCHEMES[config.search.scheme]()
        self.work = WorkLog(self.layout)
        self.shared = shared
        self._given_executor = executor  # shared by a study's runs; the run closes only its own
        self.info: TaskInfo | None = None
        self.counts: list[int] = []

    # -- the run directory ----------------------------------------------------------------------

    def check_run_dir(self) -> bool:
        """True if the run directory holds a run of this config, False if it holds none;
        InputError if it holds something else. Writes nothing."""
        import yaml

        path = self.layout.config
        kind = directory_kind(self.run_dir) if self.run_dir.is_dir() else None
        if kind not in (None, "run") or (kind is None and self.run_dir.exists() and any(self.run_dir.iterdir())):
            raise InputError(f"'{self.run_dir}' exists and is not a subsetsearch run directory; give another --run-dir")
        if not path.is_file():
            return False
        resolved = dump_config(self.config)
        try:
            previous = yaml.safe_load(path.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise damaged(path, error) from None
        if not isinstance(previous, dict):
            raise damaged(path, "not a mapping of keys")
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
            if marker_kind(self.run_dir) is None:  # a run of 0.1.0 or 0.2.0: marked ours from now on
                write_marker(self.run_dir, "run")
            for stale in self.run_dir.rglob(".*.tmp"):  # half-written files of a killed run
                stale.unlink(missing_ok=True)
            self.reporter.line(f"resuming {self.run_dir}")
            return
        write_marker(self.run_dir, "run")  # first: the directory is recognisably ours before anything else
        resolved = dump_config(self.config)
        resolved.pop("run_dir", None)
        with atomic_path(self.layout.config) as tmp:
            tmp.write_text(yaml.safe_dump({**resolved, "subsetsearch_version": __version__}, sort_keys=False))

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run (or resume) the search; its result once every variant is trained and tested."""
        self.info = self.task.prepare()  # data and budgets checked before anything is written
        self.counts = budget_counts(self.config.search.budgets, self.info.pool_size)
        self._check_counts()
        self.claim_run_dir()
        with DirectoryLock(self.run_dir, option="--run-dir"):  # one job at a time in a run directory
            record = self.task.dataset_record()
            saved = DatasetRecord.load(self.layout.dataset)
            if saved is None or (record.pool_source and not saved.pool_source):  # new, or from before the source
                record.save(self.layout.dataset)
            self._source = record.pool_source  # each row's identity in the user's data: beside every subset
            self._data = self._data_fingerprint()
            own = self._given_executor is None
            self.executor = self.config.executor.make() if own else self._given_executor
            self.workload = TaskWorkload(self.task)
            try:
                result = self._run()
            finally:
                if own:
                    self.executor.close()
        self.task.finish_run(result)
        return result

    def _check_counts(self) -> None:
        """InputError naming the budget whose subset is too small to train a model on (a model trains
        on every step's subset), or whose selection the rule cannot make (``search.balance: class``
        with fewer rows than classes; outliers set aside leaving too few), before anything is written."""
        if not self.scheme.uses_budgets:
            return
        for budget, count in zip(self.config.search.budgets, self.counts, strict=True):
            if count < 2:
                raise InputError(
                    f"search.budgets: {budget} is {count} sample(s) of the pool of {self.info.pool_size}; a model "
                    "trains on at least 2: raise it"
                )
        rule = self.config.search.rule()
        classes = int(np.unique(self.task.pool_labels()).size) if rule.balance == "class" else 0
        for size, candidates in self.scheme.selections(self.counts, self.info.pool_size):
            if 0 < size < classes:
                raise InputError(
                    f"search.balance: class gives each of the {classes} classes a sample in every selection, and "
                    f"the budgets {self.counts} make one of {size}; widen the steps between budgets"
                )
            if rule.balance == "none" and size > rule.capacity(candidates):
                raise InputError(
                    f"search.budgets: a selection of {size} samples from {candidates} candidates, but the outliers "
                    f"set aside (search.skip_top, search.coverage.prune_hardest) leave {rule.capacity(candidates)}; "
                    "lower the budgets or the shares"
                )

    def _run(self) -> RunResult:
        cfg, info = self.config, self.info
        n = info.pool_size
        self.reporter.line(
            f"{cfg.search.scheme} on {info.data_name}: pool {n}, test {info.test_size}, "
            f"budgets {self.counts}, {info.model_name} on {info.device} ({info.precision['acquisition']})"
        )
        started = time.perf_counter()
        subsets = self.scheme.subsets(self)
        search_seconds = self._search_seconds()
        final = subsets[-1]
        final.write(self.layout.subset, self._source)
        variants = self._evaluate_all(subsets)
        steps = [read_json(step.metrics) for step in self._finished_steps()]
        result = RunResult(self.run_dir, final, n, variants, search_seconds, steps, info)
        write_json(
            self.layout.metrics,
            {
                "scheme": cfg.search.scheme,
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

    def _finished_steps(self) -> list:
        return [step for step in self.layout.steps() if step.metrics.is_file()]

    def _search_seconds(self) -> float:
        total = 0.0
        for step in self._finished_steps():
            metrics = read_json(step.metrics)
            total += metrics.get("train_seconds", 0.0) + metrics.get("score_seconds", 0.0)
        return total

    # -- subset models --------------------------------------------------------------------------

    def _evaluate_all(self, subsets: list[Subset]) -> list[Any]:
        """The subset models of the final subset (``steps: all``: of every acquired one), with the
        baselines of ``compare``."""
        cfg = self.config
        scheme = cfg.search.scheme
        last = len(subsets) - 1
        if cfg.subset_model.steps == "all":  # every acquired subset (a random start is a baseline)
            evaluated = [i for i in range(len(subsets)) if not self.scheme.random_start or i > 0]
        else:
            evaluated = [last]
        variants = []
        for i in evaluated:
            step = None if i == last else i
            init, lr = self.scheme.init_from(self)
            variants.append(self._evaluate(VariantSpec(variant_name(scheme, step), subsets[i], init, lr)))
            if "random" in cfg.compare and scheme != "random":
                rows = self.permutation(Seed.BASELINE)[: subsets[i].size]
                random = Subset.empty().add_unscored(rows, 0)
                variants.append(self._evaluate(VariantSpec(variant_name("random", step), random)))
        if "full" in cfg.compare and scheme != "full":
            every = Subset.empty().add_unscored(np.arange(self.info.pool_size), 0)
            variants.append(self._evaluate(VariantSpec("full", every)))
        return variants

    def _evaluate(self, variant: VariantSpec) -> Any:
        """The task's subset models of ``variant``, each taken from a study's other runs where one
        was trained from the same inputs."""
        prints = [self._model_fingerprint(variant, k) for k in range(self.config.subset_model.models)]
        for k, print_k in enumerate(prints):
            self._fetch(self.layout.model(variant.name, k).folder, print_k)
        result = self.task.evaluate(variant)
        for k, print_k in enumerate(prints):
            self.work.record(self.layout.model(variant.name, k).folder, print_k)
        return result

    def _model_fingerprint(self, variant: VariantSpec, k: int) -> str:
        init = None
        if variant.init_from is not None:
            path = Path(variant.init_from[k])
            init = {"run": self.work.pieces().get(self.layout.relative(path.parent), {}).get("fingerprint"),
                    "checkpoint": path.name}  # fmt: skip
        return fingerprint(
            "subset model",
            self._data,
            self.config.subset_model_config().model_dump(mode="json"),
            self.config.subset_train_config().model_dump(mode="json"),
            variant.subset.training_rows(),
            self.task.subset_model_seed(k),
            init,
            variant.lr,
        )

    # -- services for the schemes (pipeline/schemes.py, SchemeRun) ------------------------------

    def permutation(self, purpose: Seed) -> np.ndarray:
        """The pool's rows in an order seeded by the config seed and ``purpose``."""
        return np.random.default_rng(derive_seed(self.config.seed, purpose)).permutation(self.info.pool_size)

    def step_fingerprint(self, i: int, previous: Subset | None, **inputs: object) -> str:
        """What step i's subset and metrics are computed from: the data, the budget, the subset
        before it, and what the scheme says (``inputs``)."""
        before = None if previous is None else [previous.index, previous.multiplicity, previous.iteration]
        return fingerprint("step", self._data, i, self.counts[: i + 1], before, inputs)

    def acquisition_inputs(self, i: int) -> dict:
        """What step i's scores and selection depend on besides its rows: the ensemble's training,
        the function and the outlier rules, the selection's seed."""
        search = self.config.search
        return {
            "ensemble": self._ensemble_inputs(i),
            "scoring": [self.task.scoring_pieces(i)[path] for path in sorted(self.task.scoring_pieces(i))],
            "search": {key: getattr(search, key) for key in ("function", "window", "skip_top", "skip_disagreement")}
            | self._rule_inputs(),
            "score_subset": search.score_subset,
            "select_seed": derive_seed(self.config.seed, Seed.SELECT, i),
        }

    def _rule_inputs(self) -> dict:
        """The selection rule's options where they are not the defaults (so that a run of before
        them keeps its fingerprints and resumes)."""
        rule = self.config.search.rule()
        return {} if rule.plain else {"rule": rule.to_json()}

    def select(self, i: int, scores: np.ndarray, k: int, exclude: np.ndarray) -> np.ndarray:
        """Step i's ``k`` rows of ``scores`` (not in ``exclude``) by the config's selection rule,
        seeded by step; InputError where the rule cannot make them (outliers leave too few)."""
        try:
            return select(
                scores,
                k,
                exclude=exclude,
                seed=derive_seed(self.config.seed, Seed.SELECT, i),
                labels=self.task.pool_labels() if self.config.search.balance == "class" else None,
                **self.config.search.rule().options(),
            )
        except ValueError as error:
            raise InputError(f"step {i}'s selection: {error}; lower search.budgets or the outlier shares") from None

    def _ensemble_inputs(self, i: int) -> dict:
        return {
            "model": self.config.model.model_dump(mode="json"),
            "train": self.config.train.model_dump(mode="json"),
            "ensemble": self.task.ensemble(i).model_dump(mode="json"),
            "epochs": sorted(self.task.member_run_epochs(i)),
            "seeds": [self.task.member_run_seed(i, r) for r in range(self.task.ensemble(i).runs)],
        }

    def done_step(self, i: int, fingerprint: str) -> Subset | None:
        """Step i's subset when the step is finished (here, or another run of the study finished the
        same step), else None."""
        step = self.layout.step(i)
        if not step.metrics.is_file():
            self._fetch(step.folder, fingerprint)
        return Subset.read(step.subset) if step.metrics.is_file() else None

    def finish_step(
        self,
        i: int,
        subset: Subset,
        extra: dict,
        fingerprint: str,
        added: int | None = None,
        scored: Scored | None = None,
    ) -> Subset:
        """Write step i's subset and its metrics (``extra`` added to the sizes), and record it done; an
        acquisition step (``scored``) keeps its gallery first."""
        step = self.layout.step(i)
        if scored is not None:
            self.task.keep_gallery(i, scored.scores, scored.chosen, scored.scored_at, self._score_units)
        subset.write(step.subset, self._source)
        added = int(np.sum(subset.iteration == i)) if added is None else added
        write_json(
            step.metrics,
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
        self.work.record(step.folder, fingerprint)
        self.reporter.line(f"step {i}: subset {subset.size} samples ({added} added)")
        return subset

    def acquisition_scores(
        self, i: int, train_rows: np.ndarray, score_rows: np.ndarray
    ) -> tuple[float, np.ndarray, dict]:
        """Train step i's ensemble on ``train_rows`` and score ``score_rows``: (training seconds,
        scores [N] with NaN for rows not scored, summary for metrics.json)."""
        runs = self._train_ensemble(i, train_rows)
        scores, summary = self._score_step(i, score_rows, runs)
        self.task.after_scoring(i, score_rows, scores, self._score_units)
        return runs["seconds"], scores, summary

    def disagreement_outliers(self, i: int) -> np.ndarray:
        """Pool mask of the rows step i's ensemble leaves out under ``search.skip_disagreement``
        (every member predicts a different class, from the step's statistics), else none."""
        if not self.config.search.skip_disagreement:
            return np.zeros(self.info.pool_size, bool)
        stats = Step(i, self.layout.step(i).folder, {}).stats()
        return all_members_disagree(stats.vote_counts, stats.member_counts)

    def outlier_summary(self, outliers: np.ndarray, excluded: np.ndarray) -> dict:
        """metrics.json's counts of the candidates (rows not ``excluded``) that the outlier rules
        left out: ``disagreement_outliers`` (every member disagrees) and ``skipped_top`` (the top
        ``search.skip_top`` share of the rest, as :func:`~subsetsearch.selection.select` counts it)."""
        out: dict = {}
        rule = self.config.search.rule()
        if not rule.plain:
            out["selection"] = rule.to_json()
        if self.config.search.skip_disagreement:
            out["disagreement_outliers"] = int((outliers & ~excluded).sum())
        if self.config.search.skip_top:
            out["skipped_top"] = int(self.config.search.skip_top * int((~(excluded | outliers)).sum()))
        return out

    # -- ensembles ------------------------------------------------------------------------------

    def _train_ensemble(self, i: int, train_rows: np.ndarray) -> dict:
        """Train step i's acquisition runs on ``train_rows`` (on the executor), each taken from a
        study's other runs where one trained from the same inputs with the checkpoints this one
        needs; their fingerprints and training seconds."""
        runs = self.task.ensemble(i).runs
        epochs = sorted(self.task.member_run_epochs(i))
        ensemble = self._ensemble_inputs(i)
        prints = [
            fingerprint("training run", self._data, ensemble["model"], ensemble["train"], train_rows,
                        self.task.member_run_seed(i, r), self.task.ensemble(i).kind == "seeds")
            for r in range(runs)
        ]  # fmt: skip
        step = self.layout.step(i)
        for r, print_r in enumerate(prints):
            self._fetch(step.member_run(r).folder, print_r, lambda entry: set(epochs) <= set(entry.get("epochs", [])))
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
        for r, print_r in enumerate(prints):
            self.work.record(step.member_run(r).folder, print_r, epochs=epochs)
        return {"seconds": float(sum(done.values())), "fingerprints": prints}

    def _score_step(self, i: int, score_rows: np.ndarray, runs: dict) -> tuple[np.ndarray, dict]:
        """Score ``score_rows`` with step i's ensemble, one task per unit on the executor, resuming
        from the units the step's state already holds (or from a study's other run that scored the
        same rows with the same members)."""
        members = [member.name for member in self.task.member_files(i)]
        scoring = fingerprint("scoring", runs["fingerprints"], members, score_rows)
        pieces = {path: fingerprint(scoring, inputs) for path, inputs in self.task.scoring_pieces(i).items()}
        for path, print_ in pieces.items():
            self._fetch(path, print_)
        try:
            scoring_state = self.task.step_scoring(i, score_rows)
        except InputError:
            raise
        except ValueError as error:  # a state file of the step that cannot be read
            raise InputError(f"{error}; delete it and run the same command again: the step is scored anew") from None
        todo = scoring_state.todo()
        if todo:
            where = "" if self.executor.name == "local" else f" on {self.executor.describe()}"
            self.reporter.line(f"step {i}: scoring {len(score_rows)} samples with {len(members)} members{where}")
        scoring_state.progress = self.reporter.bar(f"step {i} scoring")
        self.executor.score(self.workload, todo, scoring_state.add)
        if todo or not scoring_state.saved:
            scoring_state.save()
        for path, print_ in pieces.items():
            self.work.record(path, print_)
        summary = {
            "ensemble": self.task.ensemble(i).kind,
            "members": len(members),
            "score_seconds": scoring_state.seconds,
        }
        if self.executor.name != "local":
            summary["executor"] = self.executor.describe()
        return scoring_state.scores(), summary

    def _score_units(self, tasks: list[ScoreTask]) -> list[Any]:
        """Results of scoring ``tasks`` on the executor, in their order."""
        results = {id(task): result for task, result in self.executor.run(self.workload, "score", tasks)}
        return [results[id(task)] for task in tasks]

    # -- shared work ----------------------------------------------------------------------------

    def _fetch(self, path: Path, print_: str, accepts: Callable[[dict], bool] | None = None) -> bool:
        """Take the piece at ``path`` from the study's other runs, where one has the same fingerprint."""
        if self.shared is None or path.exists():
            return False
        return self.shared.fetch(self.layout, path, print_, accepts)

    def _data_fingerprint(self) -> str:
        """What the pool and the test set are: the data's config, the seed that splits them, and what
        the run recorded of them (labels, class names)."""
        record = self.task.dataset_record()
        arrays = [getattr(record, key) for key in ("pool_labels", "pool_boxes", "test_labels")]
        config = dump_config(self.config)
        return fingerprint(
            "data", config["task"], config["data"], config.get("detection"), derive_seed(self.config.seed, Seed.DATA),
            record.name, record.class_names, arrays,
        )  # fmt: skip


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
