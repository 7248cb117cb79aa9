"""``subsetsearch score``: member files in, a subset table out.

The command builds its request, checks everything that needs no pass over the members
(:func:`check_request`), drives the members' pass into a scoring state
(:mod:`~subsetsearch.pipeline.member_pass`, :mod:`subsetsearch.state`), selects, and writes. A bad
input costs seconds and leaves no partial output: nothing is written until the subset is known.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from subsetsearch.acquisition import FUNCTIONS, NEEDS_LABELS, NEEDS_ORDER, acquire
from subsetsearch.balance import class_shares, imbalance_line, imbalanced_classes
from subsetsearch.dynamics import DEFAULT_WINDOW, DYNAMICS_FUNCTIONS, TrainingDynamics
from subsetsearch.errors import InputError
from subsetsearch.internal.budgets import parse_budget
from subsetsearch.internal.files import available_memory, check_table_path, write_tables
from subsetsearch.internal.members import MemberSource, member_sources, order_problem, read_column
from subsetsearch.internal.validation import check_fraction, check_integer, check_labels
from subsetsearch.pipeline.member_pass import (
    MEMBERS_PER_PASS,
    SHARD_ELEMENTS,
    DynamicsRequest,
    accumulate,
    accumulate_mapped,
    member_shape,
    row_blocks,
)
from subsetsearch.pipeline.saved_stats import load_saved_dynamics, load_saved_stats, saved_window
from subsetsearch.selection import (
    BALANCES,
    DIRECTIONS,
    Coverage,
    SelectionRule,
    all_members_disagree,
    exclusion_mask,
    select,
    select_chunks,
)
from subsetsearch.state import MappedStatsPart
from subsetsearch.stats import EnsembleStats, MappedStats

#: Statistics in memory may take at most this share of the memory the machine has available;
#: larger ones need ``--state DIR`` (memory-mapped on disk).
MEMORY_SHARE = 0.5
#: Bytes of statistics per (sample, class): int64 sums and uint16 votes.
STATS_BYTES_PER_ELEMENT = 10

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ScoreResult:
    """What ``score_files`` chose and from what."""

    indices: np.ndarray  # (k,) int64, best first
    scores: np.ndarray  # (N,) float64, every sample's score by the function that chose
    pool_size: int  # candidates: N minus excluded
    num_members: int
    labels: np.ndarray | None
    function: str = ""  # the function that chose
    all_scores: dict[str, np.ndarray] | None = None  # every function's scores, in --scores-out order
    disagreement_outliers: int | None = None  # candidates --skip-disagreement left out (None: not asked)
    rule: SelectionRule = field(default_factory=SelectionRule)  # how the scores became the subset


@dataclass(frozen=True)
class FunctionPlan:
    """The functions one pass computes: ``functions[0]`` chooses the subset; all go to --scores-out."""

    functions: tuple[str, ...]
    window: int = DEFAULT_WINDOW

    @property
    def stats_functions(self) -> tuple[str, ...]:
        """Computed from the ensemble statistics (EnsembleStats)."""
        return tuple(f for f in self.functions if f not in DYNAMICS_FUNCTIONS)

    @property
    def dynamics_functions(self) -> tuple[str, ...]:
        """Computed from the label's probability per member (TrainingDynamics)."""
        return tuple(f for f in self.functions if f in DYNAMICS_FUNCTIONS)

    @property
    def ordered(self) -> bool:
        return any(f in NEEDS_ORDER for f in self.functions)


#: What ``--function all`` puts first (it chooses the subset): the paper's default.
ALL_FIRST = "mutual_information"


def plan_functions(
    text: str, *, has_labels: bool, num_members: int, window: int = DEFAULT_WINDOW, saved: bool = False
) -> FunctionPlan:
    """``--function``: one name, names joined by commas, or ``all`` (every function the inputs allow).

    InputError for an unknown name, a label-based function without --labels (naming it), or a
    --window outside 2..members where dyn_unc is asked for by name.
    """
    check_integer(window, "--window", minimum=2, error=InputError)
    if text.strip() == "all":
        names = [f for f in FUNCTIONS if has_labels or f not in NEEDS_LABELS]
        if num_members < window and "dyn_unc" in names:
            names.remove("dyn_unc")  # not allowed by these inputs: fewer members than the window
        names.sort(key=lambda f: f != ALL_FIRST)
        return FunctionPlan(tuple(names), window)
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise InputError("--function is empty; give a function, several joined by commas, or all")
    for name in names:
        if name not in FUNCTIONS:
            raise InputError(f"unknown --function {name!r}; choose one of: {', '.join(FUNCTIONS)}, or all")
    if len(set(names)) != len(names):
        raise InputError(f"--function names a function twice: {text}")
    for name in names:
        if name in NEEDS_LABELS and not has_labels:
            raise InputError(f"--function {name} needs --labels y.npy (the pool's classes)")
    if "dyn_unc" in names and not 2 <= window <= num_members:
        if saved:  # the window was fixed when the statistics were kept
            raise InputError(
                f"dyn_unc: the saved statistics were kept with window {window} and hold {num_members} members, fewer "
                f"than the window; keep them with PoolScorer(window=J), J from 2 to {num_members}, or leave dyn_unc out"
            )
        raise InputError(
            f"dyn_unc: --window {window} must lie from 2 to the number of members ({num_members}); give --window J"
        )
    return FunctionPlan(tuple(names), window)


@dataclass(frozen=True)
class ScoreRequest:
    """What ``subsetsearch score`` is asked to do: one field per command-line option (same names).

    ``members`` are member files, directories of them, Parquet files (a member per list column) or
    Zarr arrays and groups (``member_sources``); ``saved_stats`` instead are statistics saved by
    ``subsetsearch.torch.PoolScorer`` (or ``--state x.npz``), merged, whose rows no member scored
    are not candidates. ``state`` ending in ``.npz`` keeps the statistics in memory and saves them
    there; any other path is a directory of memory-mapped statistics (``accumulate_mapped``: out of
    core, for statistics larger than memory). Without it the statistics live in memory, if they fit.
    """

    function: str
    budget: str
    out: Path
    members: Sequence[str | os.PathLike] = ()
    labels: Path | None = None
    labels_column: str | None = None
    logits: bool = False
    exclude: Path | None = None
    skip_top: float = 0.0
    skip_disagreement: bool = False
    seed: int = 0
    scores_out: Path | None = None
    state: Path | None = None
    saved_stats: Sequence[str | os.PathLike] = ()
    window: int | None = None  # None: the one the --stats were kept with, else DEFAULT_WINDOW
    balance: str = "none"
    coverage: int | None = None  # K strata; None: no coverage
    prune_hardest: float | None = None  # beta; None: not given (0 with --coverage)
    direction: str = "highest"


@dataclass
class _Inputs:
    """A request's inputs, every check passed: what remains is the pass over the members."""

    out: Path
    scores_out: Path | None
    sources: list[MemberSource]
    saved: EnsembleStats | None
    shape: tuple[int, int]
    labels: np.ndarray | None
    exclude: np.ndarray  # bool [N]
    pool_size: int
    k: int
    mapped: bool
    plan: FunctionPlan
    rule: SelectionRule
    saved_dynamics: TrainingDynamics | None = None


def score_files(request: ScoreRequest, *, on_progress: ProgressFn | None = None) -> ScoreResult:
    """Score members by one or several functions in one pass and write the subset the first chose
    (columns ``index``, ``score``, best first) and, with ``--scores-out``, every function's scores.

    Every check runs first (:func:`check_request`), so a bad input costs seconds and writes nothing.
    """
    inputs = check_request(request)
    plan = inputs.plan
    stats, store, scores = _score(request, inputs, on_progress)
    first = plan.functions[0]
    chosen_by = scores[first]
    exclude, left_out = inputs.exclude, None
    if request.skip_disagreement:
        outliers = _disagreement(store if store is not None else stats) & ~exclude
        exclude, left_out = exclude | outliers, int(outliers.sum())
        check_budget(
            inputs.rule,
            inputs.k,
            request.budget,
            exclude,
            inputs.labels,
            because=f"--skip-disagreement left out {left_out} on which every member predicts a different class",
        )
    chosen = _select(chosen_by, inputs, exclude, request, streamed=store is not None and first in plan.stats_functions)
    num_samples = inputs.shape[0]
    tables = [(inputs.out, {"index": chosen, "score": chosen_by[chosen]})]
    if inputs.scores_out is not None:
        index = np.arange(num_samples, dtype=np.int64)
        columns = {"score": scores[first]} if len(plan.functions) == 1 else {f: scores[f] for f in plan.functions}
        tables.append((inputs.scores_out, {"index": index, **columns}))
    write_tables(
        tables, metadata=selection_metadata(inputs.rule, function=first, budget=request.budget, seed=request.seed)
    )
    if inputs.saved is not None:
        num_members = int(inputs.saved.member_counts.max())
    elif inputs.saved_dynamics is not None:
        num_members = int(inputs.saved_dynamics.member_counts.max())
    else:
        num_members = len(inputs.sources)
    return ScoreResult(
        chosen, chosen_by, inputs.pool_size, num_members, inputs.labels, first, scores, left_out, inputs.rule
    )


def _score(
    request: ScoreRequest, inputs: _Inputs, on_progress: ProgressFn | None
) -> tuple[EnsembleStats | None, MappedStatsPart | None, dict[str, np.ndarray]]:
    """The members' pass into the state the request names (or the saved statistics), and every
    function's scores: (statistics in memory, statistics on disk, scores)."""
    plan = inputs.plan
    dynamics_request = None
    if plan.dynamics_functions and inputs.saved_dynamics is None:
        dynamics_request = DynamicsRequest(inputs.labels, plan.window, plan.ordered)
    stats_first = plan.stats_functions[0] if plan.stats_functions else None
    scores: dict[str, np.ndarray] = {}
    stats = store = None
    passes = {"members_per_pass": MEMBERS_PER_PASS, "shard_elements": SHARD_ELEMENTS}  # read now: tests shrink them
    if inputs.mapped:
        store, dynamics = accumulate_mapped(
            inputs.sources,
            request.state,
            shape=inputs.shape,
            function=stats_first,
            labels=inputs.labels,
            from_logits=request.logits,
            on_progress=on_progress,
            dynamics=dynamics_request,
            **passes,
        )
        for function in plan.stats_functions:
            if function == stats_first:
                scores[function] = store.scores()
            else:  # another pass over the statistics on disk, a shard at a time
                scores[function] = _mapped_scores(store.store, function, inputs.labels)
    else:
        stats, dynamics = inputs.saved, inputs.saved_dynamics
        if inputs.saved is None:
            stats, dynamics = accumulate(
                inputs.sources,
                shape=inputs.shape,
                from_logits=request.logits,
                state_path=request.state,
                on_progress=on_progress,
                stats=bool(plan.stats_functions),
                dynamics=dynamics_request,
                **passes,
            )
        for function in plan.stats_functions:
            scores[function] = acquire(stats, function, labels=inputs.labels)
    for function in plan.dynamics_functions:
        try:
            scores[function] = acquire(dynamics, function)
        except ValueError as error:  # dyn_unc over rows with fewer members than the window
            raise InputError(str(error)) from None
    return stats, store, scores


def _select(
    chosen_by: np.ndarray, inputs: _Inputs, exclude: np.ndarray, request: ScoreRequest, *, streamed: bool
) -> np.ndarray:
    """The ``k`` rows ``chosen_by`` and the rule choose: out-of-core scores (``streamed``, memory-mapped)
    a chunk at a time under the plain rule; balance, coverage and direction read the N scores at once."""
    num_samples = inputs.shape[0]
    if not inputs.rule.plain:
        return select(
            np.asarray(chosen_by), inputs.k, exclude=exclude, seed=request.seed, labels=inputs.labels,
            **inputs.rule.options(),
        )  # fmt: skip
    if streamed:
        step = max(1, SHARD_ELEMENTS // 8)
        chunks = ((start, np.array(chosen_by[start : start + step])) for start in range(0, num_samples, step))
        return select_chunks(
            chunks, inputs.k, num_samples=num_samples, exclude=exclude, skip_top=request.skip_top, seed=request.seed
        )
    return select(chosen_by, inputs.k, exclude=exclude, skip_top=request.skip_top, seed=request.seed)


def _disagreement(stats: EnsembleStats | MappedStatsPart) -> np.ndarray:
    """Rows on which every member predicts a different class (``--skip-disagreement``), from the
    statistics' vote counts; statistics on disk are read a shard of rows at a time."""
    if isinstance(stats, EnsembleStats):
        return all_members_disagree(stats.vote_counts, stats.member_counts)
    store = stats.store
    mask = np.empty(store.num_samples, dtype=bool)
    for rows in row_blocks(store.num_samples, store.num_classes, SHARD_ELEMENTS):
        part = store.read(rows)
        mask[rows] = all_members_disagree(part.vote_counts, part.member_counts)
    return mask


def _mapped_scores(store: MappedStats, function: str, labels: np.ndarray | None) -> np.ndarray:
    """``function`` of statistics kept on disk, read a shard of rows at a time."""
    scores = np.empty(store.num_samples, dtype=np.float64)
    for rows in row_blocks(store.num_samples, store.num_classes, SHARD_ELEMENTS):
        scores[rows] = acquire(store.read(rows), function, labels=None if labels is None else labels[rows])
    return scores


def check_request(request: ScoreRequest) -> _Inputs:
    """Every check of a request that needs no pass over the members' values; InputError (one line)."""
    out, scores_out = output_paths(request.out, request.scores_out, request.skip_top, state=request.state)
    rule = selection_rule(request.skip_top, request.balance, request.coverage, request.prune_hardest, request.direction)
    if request.saved_stats and (request.members or request.state is not None):
        raise InputError("--stats takes saved statistics instead of member files and --state; give one or the other")
    saved = load_saved_stats(request.saved_stats) if request.saved_stats else None
    sources = [] if saved is not None else member_sources(request.members)
    shape = (saved.num_samples, saved.num_classes) if saved is not None else member_shape(sources)
    labels = _labels(request, shape)
    if rule.balance == "class" and labels is None:
        raise InputError("--balance class needs --labels y.npy (the pool's classes), to give each class its share")
    num_members = int(saved.member_counts.max()) if saved is not None else len(sources)
    window = request.window
    if window is None and saved is not None:
        window = saved_window(request.saved_stats)
    plan = plan_functions(
        request.function,
        has_labels=labels is not None,
        num_members=num_members,
        window=DEFAULT_WINDOW if window is None else window,
        saved=saved is not None,
    )
    if plan.ordered and (problem := order_problem(sources)) is not None:
        raise InputError(
            f"{', '.join(f for f in plan.functions if f in NEEDS_ORDER)} follow the members' order: {problem}"
        )
    if request.skip_disagreement and not plan.stats_functions:
        raise InputError(
            "--skip-disagreement counts the members' votes, which only the functions of predictions gather; "
            f"add one after the function that chooses (e.g. --function {request.function},entropy)"
        )
    if request.skip_disagreement and num_members < 2:
        raise InputError(f"--skip-disagreement needs 2 or more members to disagree; got {num_members}")
    saved_dynamics = None
    if saved is not None and plan.dynamics_functions:
        saved_dynamics = load_saved_dynamics(
            request.saved_stats, labels, functions=plan.dynamics_functions, ordered=plan.ordered, window=plan.window
        )
    unscored = None if saved is None else saved.member_counts == 0  # rows the user's pool loader did not yield
    exclude, pool_size, k = candidates(
        request.exclude, shape[0], request.budget, rule, labels=labels, unscored=unscored
    )
    mapped = request.state is not None and Path(request.state).suffix.lower() != ".npz"
    needed = shape[0] * shape[1] * STATS_BYTES_PER_ELEMENT
    if saved is None and not mapped and plan.stats_functions and needed > MEMORY_SHARE * available_memory():
        raise InputError(
            f"the ensemble statistics of {shape[0]} x {shape[1]} need {needed / 1e9:.1f} GB, more than "
            f"{MEMORY_SHARE:.0%} of the memory available; give --state DIR (a directory) to keep them on disk"
        )
    return _Inputs(
        out, scores_out, sources, saved, shape, labels, exclude, pool_size, k, mapped, plan, rule, saved_dynamics
    )


def output_paths(
    out: Path, scores_out: Path | None, skip_top: float, *, state: Path | None = None
) -> tuple[Path, Path | None]:
    """``--out`` and ``--scores-out`` checked (table suffixes, not one file, not the ``--state``),
    and ``--skip-top``."""
    check_fraction(skip_top, "--skip-top", error=InputError)
    out = check_table_path(out, "--out")
    scores_out = None if scores_out is None else check_table_path(scores_out, "--scores-out")
    if scores_out is not None and scores_out.resolve() == out.resolve():
        raise InputError(f"--out and --scores-out are both '{out}'; give them different files")
    for option, path in (("--out", out), ("--scores-out", scores_out)):
        if state is not None and path is not None and Path(state).resolve() == path.resolve():
            raise InputError(f"--state and {option} are both '{path}'; give the state its own path")
    return out, scores_out


def selection_rule(
    skip_top: float, balance: str, coverage: int | None, prune_hardest: float | None, direction: str
) -> SelectionRule:
    """The selection options of ``score`` (``--skip-top``, ``--balance``, ``--coverage``,
    ``--prune-hardest``, ``--direction``) as a rule; InputError naming the option that is wrong."""
    check_fraction(skip_top, "--skip-top", error=InputError)
    if balance not in BALANCES:
        raise InputError(f"unknown --balance {balance!r}; choose one of: {', '.join(BALANCES)}")
    if direction not in DIRECTIONS:
        raise InputError(f"unknown --direction {direction!r}; choose one of: {', '.join(DIRECTIONS)}")
    if prune_hardest is not None and coverage is None:
        raise InputError("--prune-hardest sets aside the hardest before coverage's strata; give --coverage K too")
    strata = None
    if coverage is not None:
        check_integer(coverage, "--coverage (the number of strata)", minimum=1, error=InputError)
        check_fraction(prune_hardest or 0.0, "--prune-hardest", error=InputError)
        strata = Coverage(coverage, prune_hardest or 0.0)
        if direction == "lowest":
            raise InputError(
                "--direction lowest changes nothing with --coverage, which samples every stratum at random; drop one"
            )
    return SelectionRule(skip_top=skip_top, balance=balance, coverage=strata, direction=direction)


def candidates(
    exclude_path: Path | None,
    num_rows: int,
    budget: str,
    rule: SelectionRule,
    *,
    labels: np.ndarray | None = None,
    unscored: np.ndarray | None = None,
) -> tuple[np.ndarray, int, int]:
    """The rows that cannot be chosen (``--exclude``, and ``unscored``), how many can, and how many
    ``--budget`` asks for; InputError when the budget does not fit (:func:`check_budget`)."""
    exclude = np.zeros(num_rows, dtype=bool)
    if exclude_path is not None:
        indices = read_column(exclude_path, "exclude file", names=("index",))
        try:
            exclude = exclusion_mask(indices, num_rows)
        except ValueError as error:
            raise InputError(f"exclude file '{exclude_path}': {error}") from None
    if unscored is not None:
        exclude |= unscored
    pool_size = num_rows - int(exclude.sum())
    if pool_size == 0:
        raise InputError("no row is left to select: every row is excluded or unscored")
    k = parse_budget(budget, pool_size)
    check_budget(rule, k, budget, exclude, labels)
    return exclude, pool_size, k


def check_budget(
    rule: SelectionRule,
    k: int,
    budget: str,
    exclude: np.ndarray,
    labels: np.ndarray | None,
    *,
    because: str | None = None,
) -> None:
    """InputError unless the rule can take ``k`` of the rows not in ``exclude``: with ``--balance
    class`` every class present gets a row, and the outliers the rule sets aside (``--skip-top``,
    ``--prune-hardest``, per class with balance) leave enough. ``because`` names what else left rows out."""
    candidates = int((~exclude).sum())
    counts = np.array([candidates])
    if rule.balance == "class":
        counts = np.bincount(labels[~exclude])
        counts = counts[counts > 0]
        if 0 < k < counts.size:
            raise InputError(
                f"--balance class gives each of the {counts.size} classes at least one sample, but --budget "
                f"{budget} is {k}; raise the budget to {counts.size} or more"
            )
    capacity = rule.capacity(counts)
    if k > capacity:
        reasons = [because] if because else []
        if rule.skip_top:
            reasons.append(f"--skip-top {rule.skip_top:g}")
        if rule.coverage is not None and rule.coverage.prune_hardest:
            reasons.append(f"--prune-hardest {rule.coverage.prune_hardest:g}")
        why = f" after {' and '.join(reasons)}" if reasons else ""
        raise InputError(
            f"--budget {budget} asks for {k} samples, but {capacity} of the {candidates} candidates are left"
            f"{why}; lower the budget"
        )


def recorded_selection(path: Path) -> str | None:
    """How the subset or scores in a Parquet file were chosen, in words, from the metadata
    :func:`selection_metadata` wrote (``entropy, budget 0.3, seed 0: highest scores first``); None
    for a CSV, or a file without it."""
    import pyarrow.parquet

    if Path(path).suffix.lower() != ".parquet":
        return None
    metadata = pyarrow.parquet.read_schema(path).metadata or {}
    text = metadata.get(SELECTION_KEY.encode())
    if text is None:
        return None
    values = json.loads(text)
    return f"{values['function']}, budget {values['budget']}, seed {values['seed']}: " + (
        SelectionRule.from_json(values).describe()
    )


#: The Parquet metadata key of :func:`selection_metadata`.
SELECTION_KEY = "subsetsearch.selection"


def selection_metadata(rule: SelectionRule, **what: object) -> dict[str, str]:
    """The Parquet key-value metadata that records how a subset was chosen: ``subsetsearch.selection``,
    a JSON object of the rule (:meth:`~subsetsearch.selection.SelectionRule.to_json`) and ``what``
    (function, budget, seed)."""
    return {SELECTION_KEY: json.dumps({**what, **rule.to_json()})}


def _labels(request: ScoreRequest, shape: tuple[int, int]) -> np.ndarray | None:
    if request.labels is None:
        return None  # plan_functions names a function that needs them
    labels = read_column(request.labels, "labels file", request.labels_column)
    try:
        return check_labels(labels, *shape)
    except ValueError as error:
        raise InputError(f"labels file '{request.labels}': {error}") from None


def summary(result: ScoreResult, function: str) -> str:
    """A few lines a person reads after ``subsetsearch score``."""
    function = result.function or function
    k = result.indices.size
    chosen = result.scores[result.indices]
    lines = [
        f"selected {k} of {result.pool_size} samples ({100 * k / result.pool_size:.1f}%) "
        f"by {function} over {result.num_members} members",
        f"{function}: chosen {chosen.min():.4g} to {chosen.max():.4g} (mean {chosen.mean():.4g}); "
        f"whole pool mean {np.nanmean(result.scores):.4g}",
    ]
    if not result.rule.plain:
        lines.append(f"selection: {result.rule.describe()}")
    if result.disagreement_outliers is not None:
        lines.append(
            f"left out {result.disagreement_outliers} samples on which every member predicts a different class "
            "(--skip-disagreement)"
        )
    others = [f for f in (result.all_scores or {}) if f != function]
    if others:
        lines.append(f"also scored (--scores-out): {', '.join(others)}")
    if result.labels is not None:
        num_classes = int(result.labels.max()) + 1
        share = class_shares(result.labels, result.indices, num_classes=num_classes)
        pool = class_shares(result.labels, np.arange(result.labels.size), num_classes=num_classes)
        lines.append(
            "class share, subset vs pool: "
            + ", ".join(f"{c}: {100 * share[c]:.0f}%/{100 * pool[c]:.0f}%" for c in range(num_classes))
        )
        flags = imbalanced_classes(result.labels, result.indices)
        if flags:
            lines.append(f"class balance: {imbalance_line(flags)}")
    return "\n".join(lines)
