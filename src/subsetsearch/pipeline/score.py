"""The bring-your-own-predictions path: member files in, a subset table out.

Every check that can fail runs before the long pass over the members, and
nothing is written until the subset is known, so a bad input costs seconds and
leaves no partial output.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subsetsearch.acquisition import ACQUISITION_FUNCTIONS, acquire, check_labels
from subsetsearch.internal.files import (
    InputError,
    check_table_path,
    load_npy,
    npy_header,
    write_tables,
)
from subsetsearch.selection import exclusion_mask, select
from subsetsearch.stats import EnsembleStats, InvalidMemberError

#: A resumable scoring job saves its statistics at most this often (seconds):
#: a save writes ~10 bytes per (sample, class), more than scoring one member.
STATE_SAVE_INTERVAL_S = 30.0
#: Members added in one pass over the accumulators (EnsembleStats.update_members).
MEMBERS_PER_PASS = 16


@dataclass(frozen=True)
class ScoreResult:
    """What ``score_files`` chose and from what."""

    indices: np.ndarray  # (k,) int64, best first
    scores: np.ndarray  # (N,) float64, every sample's score
    pool_size: int  # candidates: N minus excluded
    num_members: int
    labels: np.ndarray | None


def parse_budget(text: str, pool_size: int) -> int:
    """Number of samples a budget asks for.

    ``"0.4"`` or ``"40%"`` is a fraction of the pool, in (0, 1]; ``"500"`` (no
    decimal point) is a count. InputError when zero, negative, not a number,
    or larger than the pool.
    """
    raw = text.strip()
    try:
        if raw.endswith("%"):
            value, is_fraction = float(raw[:-1]) / 100.0, True
        elif any(mark in raw.lower() for mark in (".", "e")):
            value, is_fraction = float(raw), True
        else:
            value, is_fraction = int(raw), False
    except ValueError:
        raise InputError(f"--budget {text!r} is not a number; give a fraction like 0.4 or 40%, or a count") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"--budget must be positive, got {text!r}")
    if is_fraction:
        if value > 1:
            raise InputError(f"--budget fraction {text!r} is above 1; give a fraction in (0, 1] or a whole count")
        count = int(value * pool_size + 0.5)
        if count == 0:
            raise InputError(f"--budget {text!r} of a pool of {pool_size} selects no sample; give a larger budget")
        return count
    if value > pool_size:
        raise InputError(f"--budget {value} is larger than the pool of {pool_size} samples")
    return value


def member_shape(paths: Sequence[str | os.PathLike]) -> tuple[int, int]:
    """(N, C) shared by every member file; InputError naming the first that differs."""
    if not paths:
        raise InputError("give at least one member file (one [N, C] .npy per checkpoint)")
    shape = None
    for path in paths:
        member, dtype = npy_header(path, "member file")
        if len(member) != 2 or member[1] < 2:
            raise InputError(f"member file '{path}' must be an [N, C] array with C >= 2 classes, got shape {member}")
        if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
            raise InputError(f"member file '{path}' must hold float16/32/64 probabilities, got {dtype}")
        if shape is None:
            shape, first = member, path
        elif member != shape:
            raise InputError(f"member file '{path}' has shape {member} but '{first}' has {shape}; all must match")
    return shape


def accumulate_members(
    paths: Sequence[str | os.PathLike],
    *,
    shape: tuple[int, int] | None = None,
    from_logits: bool = False,
    state_path: str | os.PathLike | None = None,
    on_member: Callable[[], None] | None = None,
) -> EnsembleStats:
    """Stream member files, memory-mapped, into an EnsembleStats.

    Members are added ``MEMBERS_PER_PASS`` at a time (never more than that
    many mapped at once; memory maps cost address space, not memory). With
    ``state_path`` the statistics are saved there atomically, at most every
    ``STATE_SAVE_INTERVAL_S`` and after the last member, with the list of
    members they hold, and a rerun skips those members. ``shape`` is
    ``member_shape(paths)`` where the caller has it already.
    """
    num_samples, num_classes = member_shape(paths) if shape is None else shape
    stats, done = _resume(state_path, num_samples, num_classes, from_logits, paths)
    todo = [path for path in paths if _member_key(path) not in done]
    for _ in range(len(paths) - len(todo)):
        if on_member is not None:
            on_member()
    last_save = time.monotonic()
    for start in range(0, len(todo), MEMBERS_PER_PASS):
        group = todo[start : start + MEMBERS_PER_PASS]
        members = [load_npy(path, "member file", mmap=True) for path in group]
        try:
            stats.update_members(members, from_logits=from_logits)
        except InvalidMemberError as error:
            raise InputError(f"member file '{group[error.member]}': {error}") from None
        del members  # unmap before the next group
        done.extend(_member_key(path) for path in group)
        stats.metadata["members"] = done
        if state_path is not None and time.monotonic() - last_save >= STATE_SAVE_INTERVAL_S:
            stats.save(state_path)
            last_save = time.monotonic()
        for _ in group:
            if on_member is not None:
                on_member()
    if state_path is not None:
        stats.save(state_path)
    return stats


def _member_key(path: str | os.PathLike) -> str:
    stat = Path(path).stat()
    return f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _resume(state_path, num_samples, num_classes, from_logits, paths) -> tuple[EnsembleStats, list[str]]:
    if state_path is None or not Path(state_path).exists():
        stats = EnsembleStats(num_samples, num_classes)
        stats.metadata = {"from_logits": from_logits, "members": []}
        return stats, []
    try:
        stats = EnsembleStats.load(state_path)
    except ValueError as error:
        raise InputError(f"--state: {error}; remove it to start over") from None
    if (stats.num_samples, stats.num_classes) != (num_samples, num_classes):
        raise InputError(
            f"--state '{state_path}' holds {stats.num_samples} x {stats.num_classes} stats but the members are "
            f"{num_samples} x {num_classes}; use another --state file"
        )
    if stats.metadata.get("from_logits") != from_logits:
        raise InputError(f"--state '{state_path}' was made {'with' if not from_logits else 'without'} --logits")
    given = {_member_key(path) for path in paths}
    done = list(stats.metadata.get("members", []))
    foreign = [key.split("|")[0] for key in done if key not in given]
    if foreign:
        raise InputError(
            f"--state '{state_path}' holds member '{foreign[0]}', which is not among the given files "
            "(or changed since); use another --state file"
        )
    return stats, done


def score_files(
    paths: Sequence[str | os.PathLike],
    *,
    function: str,
    budget: str,
    labels_path: str | os.PathLike | None = None,
    exclude_path: str | os.PathLike | None = None,
    from_logits: bool = False,
    skip_top: float = 0.0,
    seed: int = 0,
    out: str | os.PathLike,
    scores_out: str | os.PathLike | None = None,
    state_path: str | os.PathLike | None = None,
    on_member: Callable[[], None] | None = None,
) -> ScoreResult:
    """Score member files and write the chosen subset (columns ``index``, ``score``, best first)."""
    if function not in ACQUISITION_FUNCTIONS:
        raise InputError(f"unknown --function {function!r}; choose one of: {', '.join(ACQUISITION_FUNCTIONS)}")
    if not 0.0 <= skip_top < 1.0:
        raise InputError(f"--skip-top must be a fraction in [0, 1), got {skip_top}")
    out = check_table_path(out, "--out")
    scores_out = None if scores_out is None else check_table_path(scores_out, "--scores-out")
    if scores_out is not None and scores_out.resolve() == out.resolve():
        raise InputError(f"--out and --scores-out are both '{out}'; give them different files")
    num_samples, num_classes = member_shape(paths)
    labels = None
    if labels_path is not None:
        labels = load_npy(labels_path, "labels file")
        try:
            labels = check_labels(labels, num_samples, num_classes)
        except ValueError as error:
            raise InputError(f"labels file '{labels_path}': {error}") from None
    elif function == "error_count":
        raise InputError("--function error_count needs --labels y.npy (the pool's classes)")
    exclude = np.zeros(num_samples, dtype=bool)
    if exclude_path is not None:
        indices = load_npy(exclude_path, "exclude file")
        try:
            exclude = exclusion_mask(indices, num_samples)
        except ValueError as error:
            raise InputError(f"exclude file '{exclude_path}': {error}") from None
    pool_size = num_samples - int(exclude.sum())
    k = parse_budget(budget, pool_size)
    if k > pool_size - int(skip_top * pool_size):
        raise InputError(
            f"--budget {budget} with --skip-top {skip_top} asks for more than the pool of {pool_size} holds"
        )

    stats = accumulate_members(
        paths,
        shape=(num_samples, num_classes),
        from_logits=from_logits,
        state_path=state_path,
        on_member=on_member,
    )
    scores = acquire(stats, function, labels=labels)
    chosen = select(scores, k, exclude=exclude, skip_top=skip_top, seed=seed)
    tables = [(out, {"index": chosen, "score": scores[chosen]})]
    if scores_out is not None:
        tables.append((scores_out, {"index": np.arange(num_samples, dtype=np.int64), "score": scores}))
    write_tables(tables)
    return ScoreResult(chosen, scores, pool_size, len(paths), labels)


def summary(result: ScoreResult, function: str) -> str:
    """A few lines a person reads after ``subsetsearch score``."""
    k = result.indices.size
    chosen = result.scores[result.indices]
    lines = [
        f"selected {k} of {result.pool_size} samples ({100 * k / result.pool_size:.1f}%) "
        f"by {function} over {result.num_members} members",
        f"{function}: chosen {chosen.min():.4g} to {chosen.max():.4g} (mean {chosen.mean():.4g}); "
        f"whole pool mean {np.nanmean(result.scores):.4g}",
    ]
    if result.labels is not None:
        num_classes = int(result.labels.max()) + 1
        share = np.bincount(result.labels[result.indices], minlength=num_classes) / k
        pool = np.bincount(result.labels, minlength=num_classes) / result.labels.size
        lines.append(
            "class share, subset vs pool: "
            + ", ".join(f"{c}: {100 * share[c]:.0f}%/{100 * pool[c]:.0f}%" for c in range(num_classes))
        )
    return "\n".join(lines)
