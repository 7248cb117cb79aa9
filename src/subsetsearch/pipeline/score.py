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
from subsetsearch.executors.base import score_shards
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.files import InputError, available_memory, check_table_path, write_tables
from subsetsearch.internal.members import MemberSource, member_sources, read_column
from subsetsearch.selection import exclusion_mask, select, select_chunks
from subsetsearch.stats import EnsembleStats, InvalidMemberError, MappedStats

#: A resumable scoring job saves its statistics at most this often (seconds):
#: a save writes ~10 bytes per (sample, class), more than scoring one member.
STATE_SAVE_INTERVAL_S = 30.0
#: Members added in one pass over the accumulators (EnsembleStats.update_members).
MEMBERS_PER_PASS = 16
#: A shard of rows holds about this many (sample, class) elements: 80 MB of statistics, and 16 MB
#: of each float16 member, in memory at a time.
SHARD_ELEMENTS = 1 << 23
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


Members = Sequence[str | os.PathLike] | Sequence[MemberSource]


def _sources(members: Members) -> list[MemberSource]:
    if all(isinstance(member, MemberSource) for member in members):
        return list(members)
    return member_sources(members)


def member_shape(members: Members) -> tuple[int, int]:
    """(N, C) shared by every member; InputError naming the first that differs."""
    sources = _sources(members)
    if not sources:
        raise InputError("give member files (one [N, C] array per checkpoint, see --help) or --stats saved.npz")
    shape = None
    for source in sources:
        member, dtype = source.header()
        if len(member) != 2 or member[1] < 2:
            raise InputError(f"{source.label} must be an [N, C] array with C >= 2 classes, got shape {member}")
        if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
            raise InputError(f"{source.label} must hold float16/32/64 probabilities, got {dtype}")
        if shape is None:
            shape, first = member, source
        elif member != shape:
            raise InputError(f"{source.label} has shape {member} but {first.label} has {shape}; all must match")
    return shape


def shard_slices(num_samples: int, num_classes: int) -> list[slice]:
    """Consecutive row blocks of about ``SHARD_ELEMENTS`` elements: the unit of out-of-core work."""
    return score_shards(num_samples, max(1, SHARD_ELEMENTS // num_classes))


def accumulate_members(
    paths: Members,
    *,
    shape: tuple[int, int] | None = None,
    from_logits: bool = False,
    state_path: str | os.PathLike | None = None,
    on_progress: ProgressFn | None = None,
) -> EnsembleStats:
    """Stream members (memory-mapped ``.npy``/``.npz``, Zarr arrays, Parquet columns: any
    ``member_sources``, read a shard of rows at a time) into an in-memory EnsembleStats.

    Members are added ``MEMBERS_PER_PASS`` at a time. With ``state_path`` the statistics are saved
    there atomically, at most every ``STATE_SAVE_INTERVAL_S`` and after the last member, with the
    list of members they hold, and a rerun skips those members. ``shape`` is
    ``member_shape(paths)`` where the caller has it already.
    """
    sources = _sources(paths)
    num_samples, num_classes = member_shape(sources) if shape is None else shape
    stats, done = _resume(state_path, num_samples, num_classes, from_logits, sources)
    todo = [source for source in sources if source.key not in done]
    progress = on_progress or (lambda done, total: None)
    progress(len(sources) - len(todo), len(sources))
    last_save = time.monotonic()
    for start in range(0, len(todo), MEMBERS_PER_PASS):
        group = todo[start : start + MEMBERS_PER_PASS]
        members = [source.open() for source in group]
        for rows in shard_slices(num_samples, num_classes):
            _add_members(stats, [member[rows] for member in members], group, rows, from_logits)
        del members  # unmap before the next group
        for source in group:
            source.close()
        done.extend(source.key for source in group)
        stats.metadata["members"] = done
        if state_path is not None and time.monotonic() - last_save >= STATE_SAVE_INTERVAL_S:
            stats.save(state_path)
            last_save = time.monotonic()
        progress(len(sources) - len(todo) + start + len(group), len(sources))
    if state_path is not None:
        stats.save(state_path)
    return stats


def _add_members(stats: EnsembleStats, values: list, sources: Sequence, index: slice | None, from_logits: bool) -> None:
    try:
        stats.update_members([np.asarray(v) for v in values], index, from_logits=from_logits)
    except InvalidMemberError as error:
        raise InputError(f"{sources[error.member].label}: {error}") from None


def accumulate_mapped(
    paths: Members,
    state_dir: str | os.PathLike,
    *,
    shape: tuple[int, int],
    function: str,
    labels: np.ndarray | None = None,
    from_logits: bool = False,
    on_progress: ProgressFn | None = None,
) -> tuple[MappedStats, Path]:
    """Score members whose statistics do not fit in memory: out of core, one shard of rows at a time.

    For each shard (``shard_slices``) every member's rows are read (memory-mapped ``.npy`` or Zarr
    chunks, unmapped after the shard), added to the shard's in-memory statistics, and the shard is
    committed: its statistics are written to the memory-mapped store ``state_dir``
    (:class:`~subsetsearch.stats.MappedStats`), its scores to ``state_dir/scores.npy``, and the
    (member, shard) pairs it now holds to the store's ledger. A commit also happens mid-shard when a
    shard takes longer than ``STATE_SAVE_INTERVAL_S``. A job killed at any moment and run again
    continues from its last committed (member, shard) pairs, never adding a member to a shard twice:
    rows are overwritten, not added, and a shard that already held members on disk is first saved
    to ``pending.npz`` (a redo record) so a commit cut short is finished on the next start.

    Returns the store and the path of the scores (float64 [N], by ``function``).
    """
    num_samples, num_classes = shape
    sources = _sources(paths)
    store = _open_store(state_dir, num_samples, num_classes, from_logits, sources)
    scores_path = store.directory / "scores.npy"
    if not scores_path.is_file():
        with atomic_path(scores_path) as tmp:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(num_samples,)).flush()
    _redo_pending(store)
    keys = [source.key for source in sources]
    scored_as = function if function != "error_count" else f"{function}|{_labels_key(labels)}"
    ledger: dict = store.metadata.setdefault("shards", {})
    shards = shard_slices(num_samples, num_classes)
    total = len(shards) * len(sources)
    progress = on_progress or (lambda done, total: None)
    done_units = sum(len(set(ledger.get(str(s), {}).get("members", [])) & set(keys)) for s in range(len(shards)))
    progress(done_units, total)
    for s, rows in enumerate(shards):
        entry = ledger.get(str(s), {"members": [], "scored": None})
        held = list(entry["members"])
        todo = [(source, key) for source, key in zip(sources, keys, strict=True) if key not in held]
        if not todo and entry["scored"] == scored_as:
            continue
        on_disk = bool(held)
        shard = store.read(rows) if on_disk else EnsembleStats(rows.stop - rows.start, num_classes)
        last_commit = time.monotonic()
        for start in range(0, len(todo), MEMBERS_PER_PASS):
            group = todo[start : start + MEMBERS_PER_PASS]
            members = [source.open() for source, _ in group]
            values = [member[rows] for member in members]
            _add_members(shard, values, [source for source, _ in group], None, from_logits)
            del members  # unmap: the shard's pages leave this process
            held += [key for _, key in group]
            done_units += len(group)
            if start + len(group) < len(todo) and time.monotonic() - last_commit >= STATE_SAVE_INTERVAL_S:
                _commit(store, s, rows, shard, held, None, on_disk)
                on_disk, last_commit = True, time.monotonic()
            progress(done_units, total)
        mapped_scores = np.lib.format.open_memmap(scores_path, mode="r+")
        mapped_scores[rows] = acquire(shard, function, labels=None if labels is None else labels[rows])
        mapped_scores.flush()
        del mapped_scores
        if todo:
            _commit(store, s, rows, shard, held, scored_as, on_disk)
        else:  # the statistics on disk are unchanged: only their scores are new
            store.metadata["shards"][str(s)] = {"members": held, "scored": scored_as}
            store.save_metadata()
    for source in sources:
        source.close()
    return store, scores_path


def _commit(store: MappedStats, s: int, rows: slice, shard: EnsembleStats, held: list, scored, on_disk: bool) -> None:
    pending = store.directory / "pending.npz"
    if on_disk:  # the rows hold committed members: record the new state before overwriting them
        shard.metadata = {"shard": s, "members": held, "scored": scored}
        shard.save(pending)
    store.write(rows, shard)
    store.metadata["shards"][str(s)] = {"members": list(held), "scored": scored}
    store.save_metadata()
    pending.unlink(missing_ok=True)


def _redo_pending(store: MappedStats) -> None:
    """Finish a commit a killed job left half done (its redo record is complete or absent)."""
    pending = store.directory / "pending.npz"
    if not pending.is_file():
        return
    shard = EnsembleStats.load(pending)
    s = int(shard.metadata["shard"])
    rows = shard_slices(store.num_samples, store.num_classes)[s]
    _commit(store, s, rows, shard, shard.metadata["members"], shard.metadata["scored"], False)
    pending.unlink(missing_ok=True)


def _open_store(state_dir, num_samples, num_classes, from_logits, sources) -> MappedStats:
    state_dir = Path(state_dir)
    if not (state_dir / "metadata.json").is_file():
        if state_dir.exists() and (not state_dir.is_dir() or any(state_dir.iterdir())):
            raise InputError(f"--state '{state_dir}' exists and is not a statistics directory; give a new directory")
        store = MappedStats.create(state_dir, num_samples, num_classes)
        store.metadata = {"from_logits": from_logits, "shards": {}}
        store.save_metadata()
        return store
    try:
        store = MappedStats(state_dir)
    except ValueError as error:
        raise InputError(f"--state: {error}; remove it to start over") from None
    held = [key for entry in store.metadata.get("shards", {}).values() for key in entry["members"]]
    shapes = ((store.num_samples, store.num_classes), (num_samples, num_classes))
    _check_state(state_dir, "directory", shapes, store.metadata, held, sources, from_logits)
    return store


def _check_state(path, kind: str, shapes, metadata: dict, held: list, sources, from_logits: bool) -> None:
    """InputError unless saved statistics fit these members: ``shapes`` (saved, members' (N, C))
    equal, the same --logits, and no member the given files do not include (or that changed since)."""
    held_shape, (num_samples, num_classes) = shapes
    if held_shape != (num_samples, num_classes):
        raise InputError(
            f"--state '{path}' holds {held_shape[0]} x {held_shape[1]} stats but the members are "
            f"{num_samples} x {num_classes}; use another --state {kind}"
        )
    if metadata.get("from_logits") != from_logits:
        raise InputError(f"--state '{path}' was made {'with' if not from_logits else 'without'} --logits")
    given = {source.key for source in sources}
    foreign = [key.split("|")[0] for key in held if key not in given]
    if foreign:
        raise InputError(
            f"--state '{path}' holds member '{foreign[0]}', which is not among the given files "
            f"(or changed since); use another --state {kind}"
        )


def _labels_key(labels: np.ndarray | None) -> str:
    import hashlib

    return "none" if labels is None else hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()[:16]


def _resume(state_path, num_samples, num_classes, from_logits, sources) -> tuple[EnsembleStats, list[str]]:
    if state_path is None or not Path(state_path).exists():
        stats = EnsembleStats(num_samples, num_classes)
        stats.metadata = {"from_logits": from_logits, "members": []}
        return stats, []
    try:
        stats = EnsembleStats.load(state_path)
    except ValueError as error:
        raise InputError(f"--state: {error}; remove it to start over") from None
    done = list(stats.metadata.get("members", []))
    shapes = ((stats.num_samples, stats.num_classes), (num_samples, num_classes))
    _check_state(state_path, "file", shapes, stats.metadata, done, sources, from_logits)
    return stats, done


def score_files(
    paths: Sequence[str | os.PathLike],
    *,
    function: str,
    budget: str,
    labels_path: str | os.PathLike | None = None,
    labels_column: str | None = None,
    exclude_path: str | os.PathLike | None = None,
    from_logits: bool = False,
    skip_top: float = 0.0,
    seed: int = 0,
    out: str | os.PathLike,
    scores_out: str | os.PathLike | None = None,
    state_path: str | os.PathLike | None = None,
    saved_stats: Sequence[str | os.PathLike] = (),
    on_progress: ProgressFn | None = None,
) -> ScoreResult:
    """Score members and write the chosen subset (columns ``index``, ``score``, best first).

    ``paths`` are member files, directories of them, Parquet files (a member per list column) or
    Zarr arrays and groups (``member_sources``). ``saved_stats`` instead are statistics saved by
    ``subsetsearch.torch.PoolScorer`` (or ``--state x.npz``), merged; rows no member scored are
    not candidates. ``state_path`` ending in ``.npz`` keeps the statistics in memory and saves them
    there; any other path is a directory of memory-mapped statistics (``accumulate_mapped``: out of
    core, for statistics larger than memory). Without it the statistics live in memory, if they fit.
    """
    if function not in ACQUISITION_FUNCTIONS:
        raise InputError(f"unknown --function {function!r}; choose one of: {', '.join(ACQUISITION_FUNCTIONS)}")
    if not 0.0 <= skip_top < 1.0:
        raise InputError(f"--skip-top must be a fraction in [0, 1), got {skip_top}")
    out = check_table_path(out, "--out")
    scores_out = None if scores_out is None else check_table_path(scores_out, "--scores-out")
    if scores_out is not None and scores_out.resolve() == out.resolve():
        raise InputError(f"--out and --scores-out are both '{out}'; give them different files")
    if saved_stats and (paths or state_path is not None):
        raise InputError("--stats takes saved statistics instead of member files and --state; give one or the other")
    saved = load_saved_stats(saved_stats) if saved_stats else None
    sources = [] if saved is not None else member_sources(paths)
    num_samples, num_classes = (saved.num_samples, saved.num_classes) if saved is not None else member_shape(sources)
    labels = None
    if labels_path is not None:
        labels = read_column(labels_path, "labels file", labels_column)
        try:
            labels = check_labels(labels, num_samples, num_classes)
        except ValueError as error:
            raise InputError(f"labels file '{labels_path}': {error}") from None
    elif function == "error_count":
        raise InputError("--function error_count needs --labels y.npy (the pool's classes)")
    exclude = np.zeros(num_samples, dtype=bool)
    if exclude_path is not None:
        indices = read_column(exclude_path, "exclude file", names=("index",))
        try:
            exclude = exclusion_mask(indices, num_samples)
        except ValueError as error:
            raise InputError(f"exclude file '{exclude_path}': {error}") from None
    if saved is not None:
        exclude |= saved.member_counts == 0  # rows the user's pool loader did not yield
    pool_size = num_samples - int(exclude.sum())
    if pool_size == 0:
        raise InputError("no row is left to select: every row is excluded or unscored")
    k = parse_budget(budget, pool_size)
    if k > pool_size - int(skip_top * pool_size):
        raise InputError(
            f"--budget {budget} with --skip-top {skip_top} asks for more than the pool of {pool_size} holds"
        )

    mapped = state_path is not None and Path(state_path).suffix.lower() != ".npz"
    needed = num_samples * num_classes * STATS_BYTES_PER_ELEMENT
    if saved is None and not mapped and needed > MEMORY_SHARE * available_memory():
        raise InputError(
            f"the ensemble statistics of {num_samples} x {num_classes} need {needed / 1e9:.1f} GB, more than "
            f"{MEMORY_SHARE:.0%} of the memory available; give --state DIR (a directory) to keep them on disk"
        )
    shape = (num_samples, num_classes)
    if mapped:
        _, scores_path = accumulate_mapped(
            sources,
            state_path,
            shape=shape,
            function=function,
            labels=labels,
            from_logits=from_logits,
            on_progress=on_progress,
        )
        scores = np.load(scores_path, mmap_mode="r")
        step = max(1, SHARD_ELEMENTS // 8)
        chunks = ((start, np.array(scores[start : start + step])) for start in range(0, num_samples, step))
        chosen = select_chunks(chunks, k, num_samples=num_samples, exclude=exclude, skip_top=skip_top, seed=seed)
    else:
        stats = saved or accumulate_members(
            sources, shape=shape, from_logits=from_logits, state_path=state_path, on_progress=on_progress
        )
        scores = acquire(stats, function, labels=labels)
        chosen = select(scores, k, exclude=exclude, skip_top=skip_top, seed=seed)
    tables = [(out, {"index": chosen, "score": scores[chosen]})]
    if scores_out is not None:
        tables.append((scores_out, {"index": np.arange(num_samples, dtype=np.int64), "score": scores}))
    write_tables(tables)
    num_members = len(sources) if saved is None else int(saved.member_counts.max())
    return ScoreResult(chosen, scores, pool_size, num_members, labels)


def load_saved_stats(paths: Sequence[str | os.PathLike]) -> EnsembleStats:
    """Statistics saved by ``PoolScorer`` (or ``score --state x.npz``), merged into one ensemble.

    InputError if one is unreadable, the pools differ, or two hold the same member (the same
    (run, epoch) or member file): each member is counted once.
    """
    merged, first, holder = None, None, {}
    for path in paths:
        try:
            stats = EnsembleStats.load(path)
        except ValueError as error:
            raise InputError(f"--stats: {error}") from None
        shape, metadata = (stats.num_samples, stats.num_classes), stats.metadata
        if merged is None:
            merged, first = stats, path
            merged.metadata = {"epochs": [], "members": []}
        elif shape != (merged.num_samples, merged.num_classes):
            raise InputError(
                f"--stats '{path}' holds {shape[0]} x {shape[1]} statistics but '{first}' holds "
                f"{merged.num_samples} x {merged.num_classes}; merge statistics of one pool"
            )
        else:
            merged.merge(stats)
        for kind in ("epochs", "members"):
            for member in metadata.get(kind, []):
                name = _member_name(kind, member)
                if name in holder:
                    raise InputError(
                        f"--stats '{path}' and '{holder[name]}' both hold {name}; each member may be counted once"
                    )
                holder[name] = path
                merged.metadata[kind].append(member)
    return merged


def _member_name(kind: str, member) -> str:
    if kind == "epochs":
        run, epoch = member
        return f"run {run!r} epoch {epoch}"
    return f"member '{str(member).split('|')[0]}'"


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
