"""``subsetsearch score --stats``: statistics saved by ``PoolScorer`` (or ``score --state x.npz``), read
and merged, each member counted once; the label statistics saved beside them (``x.dynamics.npz``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from subsetsearch.dynamics import TrainingDynamics, dynamics_path
from subsetsearch.errors import InputError
from subsetsearch.internal.ledger import Ledger
from subsetsearch.stats import EnsembleStats


def load_saved_stats(paths: Sequence[str | os.PathLike]) -> EnsembleStats:
    """Statistics saved by ``PoolScorer`` (or ``score --state x.npz``), merged into one ensemble.

    InputError if one is unreadable, the pools differ, holds members on some rows only, or two hold
    the same member (the same (run, epoch) or member file): each member is counted once.
    """
    merged, first, holder = None, None, {}
    for path in paths:
        try:
            stats = EnsembleStats.load(path)
        except ValueError as error:
            raise InputError(f"--stats: {error}") from None
        if merged is None:
            merged, first = stats, path
        elif (stats.num_samples, stats.num_classes) != (merged.num_samples, merged.num_classes):
            raise InputError(
                f"--stats '{path}' holds {stats.num_samples} x {stats.num_classes} statistics but '{first}' holds "
                f"{merged.num_samples} x {merged.num_classes}; merge statistics of one pool"
            )
        else:
            merged.merge(stats)
        held = Ledger.of(stats.metadata)
        if held.pairs:
            raise InputError(f"--stats '{path}' holds members on some rows only; finish the job that wrote it")
        for member in held.members:
            if member in holder:
                name, other = member.split("|")[0], holder[member]
                raise InputError(
                    f"--stats '{path}' and '{other}' both hold member '{name}'; each member may be counted once"
                )
            holder[member] = path
    return merged


def saved_window(paths: Sequence[str | os.PathLike]) -> int | None:
    """The Dyn-Unc window the label statistics beside the first ``--stats`` file were kept with (None
    when there are none: the PoolScorer had no labels)."""
    try:
        return TrainingDynamics.load(dynamics_path(paths[0])).window
    except ValueError:
        return None


def load_saved_dynamics(
    paths: Sequence[str | os.PathLike], labels: np.ndarray, *, functions: Sequence[str], ordered: bool, window: int
) -> TrainingDynamics:
    """The label statistics saved beside each ``--stats`` file (``x.dynamics.npz``), merged, for the
    label-based ``functions`` (``ordered``: forgetting or dyn_unc among them; ``window``: dyn_unc's).

    InputError if one is missing (the PoolScorer had no labels), if they were made with other
    labels or another window than asked for, or if ordered statistics of several runs would have to
    be joined (forgetting and dyn_unc follow one run's members in order).
    """
    merged = None
    for path in paths:
        sibling = dynamics_path(path)
        try:
            dynamics = TrainingDynamics.load(sibling)
        except ValueError:
            raise InputError(
                f"--stats '{path}' has no label statistics beside it ('{sibling}') for "
                f"{', '.join(functions)}: give the PoolScorer labels (labels= or (x, y, index) batches)"
            ) from None
        if not np.array_equal(dynamics.labels, labels):
            raise InputError(f"--stats '{path}': its label statistics were made with other labels than --labels")
        if ordered and not dynamics.ordered:
            raise InputError(f"--stats '{path}': its label statistics were kept without the members' order")
        if "dyn_unc" in functions and dynamics.window != window:
            raise InputError(
                f"--stats '{path}' kept dyn_unc with window {dynamics.window}; give --window {dynamics.window}"
            )
        if not ordered:  # order-free functions: several runs' members merge in any order
            dynamics = dynamics.order_free()
        if merged is None:
            merged = dynamics
            continue
        try:
            merged.merge(dynamics)
        except ValueError:
            raise InputError(
                f"--stats '{path}' and '{paths[0]}' hold members of several runs; forgetting and dyn_unc follow one "
                "run in order: score each run's file on its own"
            ) from None
    return merged
