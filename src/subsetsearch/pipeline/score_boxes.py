"""The box-list path of ``subsetsearch score``: a COCO instances file and one COCO results file per
member in, a subset table out.

Each member's detections are rendered into per-class centre maps and scored by the paper's
per-location acquisition, an image scoring the maximum (:mod:`subsetsearch.boxmaps`). The work:

1. Every check that needs no pass over the detections: the instances file, the options, the
   budget. Nothing is written if one fails.
2. Each member's results file is read a block at a time and its detections are sorted by image
   into ``member_NNN.npy`` (a record per detection: class, box, score, float32) with
   ``member_NNN.offsets.npy`` (where each image's detections start), through an unsorted
   ``member_NNN.raw`` that is removed afterwards. A bad detection anywhere (unknown image or
   category, a score outside [0, 1], a malformed box) stops the job with one line naming it.
3. Chunks of ``CHUNK_IMAGES`` images are scored with every member's detections of that chunk, so
   memory grows with a chunk, never with the pool or the ensemble (beyond an int64 per image).
4. The subset is chosen and the tables are written, atomically, together.

With ``--state DIR`` (a state directory of box lists, :class:`~subsetsearch.internal.directories.ClaimedDirectory`)
the sorted members and the scores of the chunks done (``progress.npz``, a
:class:`~subsetsearch.state.ImageScoresPart` with its ledger of chunks) stay in DIR, so a rerun
after a kill skips what is done. DIR remembers the annotation file (its content), functions and
stride it was made for (``inputs.json``) and refuses others, naming what differs; a member file
that changed since it was sorted (``member_NNN.json`` holds its size and time) is read again, and
the scores start over. A bad input leaves no DIR behind that this call made. Without ``--state``
the files live in a temporary directory beside ``--out``, removed at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from subsetsearch.acquisition import ACQUISITION_FUNCTIONS
from subsetsearch.boxmaps import MAX_IMAGE_CELLS, Boxes, BoxMaps, map_cells
from subsetsearch.errors import InputError
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.coco import CocoPool, iter_results, read_instances
from subsetsearch.internal.directories import ClaimedDirectory
from subsetsearch.internal.files import write_tables
from subsetsearch.internal.ledger import ALL_MEMBERS
from subsetsearch.internal.shards import row_shards
from subsetsearch.internal.validation import check_positive
from subsetsearch.pipeline.score import ScoreResult, candidates, output_paths, selection_metadata, selection_rule
from subsetsearch.selection import select
from subsetsearch.state import ImageScoresPart, ScoringState

#: Images scored together: their detections by every member are all that is held.
CHUNK_IMAGES = 256
#: Detections parsed before they are appended to a member's unsorted file.
WRITE_BATCH = 1 << 16
#: One detection as kept on disk, sorted by image.
RECORD = np.dtype([("label", "<i4"), ("xyxy", "<f4", (4,)), ("score", "<f4")])
_RAW = np.dtype([("row", "<i8"), ("label", "<i4"), ("xyxy", "<f4", (4,)), ("score", "<f4")])

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class BoxScoreRequest:
    """What ``subsetsearch score --annotations`` is asked to do (the command's option names)."""

    annotations: Path
    members: Sequence[str | os.PathLike]
    function: str
    budget: str
    out: Path
    scores_out: Path | None = None
    exclude: Path | None = None
    skip_top: float = 0.0
    seed: int = 0
    state: Path | None = None
    stride: float = 4.0
    coverage: int | None = None
    prune_hardest: float | None = None
    direction: str = "highest"

    #: Options of ``subsetsearch score`` that do not apply to box lists, and why.
    NOT_FOR_BOXES: ClassVar[dict[str, str]] = {
        "--labels": "the classes and the ground truth are the annotation file's",
        "--labels-column": "the classes and the ground truth are the annotation file's",
        "--logits": "a detection's score is a probability in [0, 1]",
        "--skip-disagreement": "box lists give no per-image votes to count",
        "--stats": "box lists are scored from the members' results files",
        "--window": "dyn_unc and the other label-based functions do not score box lists",
        "--balance": "an image holds boxes of many classes, so it has no one class to balance by",
    }

    @classmethod
    def refuse(cls, given: dict[str, bool]) -> None:
        """InputError naming the first option ``given`` (option -> given) that box lists do not take."""
        for option, used in given.items():
            if used:
                raise InputError(f"{option} does not apply to --annotations ({cls.NOT_FOR_BOXES[option]}); drop it")


def box_functions(function: str) -> tuple[str, ...]:
    """The functions ``--function`` names for box lists (``all``: the four, mutual information first)."""
    if function == "all":
        return ("mutual_information", "entropy", "variation_ratios", "error_count")
    names = tuple(f.strip() for f in function.split(",") if f.strip())
    unknown = [f for f in names if f not in ACQUISITION_FUNCTIONS]
    if not names or unknown:
        raise InputError(
            f"--function {function}: detections are scored with the paper's functions per location; choose from "
            f"{', '.join(ACQUISITION_FUNCTIONS)}"
        )
    if len(set(names)) != len(names):
        raise InputError(f"--function {function} names a function twice; give each once")
    return names


def score_box_files(request: BoxScoreRequest, *, on_progress: ProgressFn | None = None) -> ScoreResult:
    """Score the members' detections of the pool and write the subset (``index``, the image's row in
    the instances file; ``image_id`` and ``file_name``, its identity there; ``score``; best first)
    and, with ``scores_out``, every image's scores."""
    functions = box_functions(request.function)
    stride = check_positive(request.stride, "--stride", what="number of pixels per map cell", error=InputError)
    out, scores_out = output_paths(request.out, request.scores_out, request.skip_top, state=request.state)
    rule = selection_rule(request.skip_top, "none", request.coverage, request.prune_hardest, request.direction)
    members = [Path(m) for m in request.members]
    if not members:
        raise InputError("--annotations needs the members' COCO results files (one JSON file per member)")
    for member in members:
        if not member.is_file():
            raise InputError(f"member {member}: no such file; give one COCO results JSON file per member")
    if len({m.resolve() for m in members}) != len(members):
        raise InputError("a member file is given twice; each member is one detector's results")
    if request.state is not None and (Path(request.state).suffix.lower() == ".npz" or Path(request.state).is_file()):
        raise InputError(f"--state {request.state}: box-list scoring keeps its state in a directory; give a directory")
    pool = read_instances(request.annotations)
    cells = map_cells(pool.sizes, stride)
    if cells.max() > MAX_IMAGE_CELLS:  # the work of a box is bounded by its image's cells: bound those
        row = int(np.argmax(cells))
        width, height = (int(v) for v in pool.sizes[row])
        raise InputError(
            f"--annotations {request.annotations}: image {pool.image_ids[row]} ({pool.file_names[row]}) is "
            f"{width}x{height} pixels, a map of {int(cells[row])} cells at --stride {stride}, more than "
            f"{MAX_IMAGE_CELLS}; give a larger --stride (or correct its width and height)"
        )
    exclude, pool_size, k = candidates(request.exclude, len(pool), request.budget, rule)
    with _work_dir(request.state, out) as work:
        _check_inputs(work, request, functions, stride)
        sorted_members = [_sorted_member(work, m, member, pool) for m, member in enumerate(members)]
        signature = [_file_key(member) for member in members]
        scores = _score_chunks(work, pool, sorted_members, functions, stride, signature, on_progress)
    first = functions[0]
    chosen = select(scores[first], k, exclude=exclude, seed=request.seed, **rule.options())
    names = np.array(pool.file_names, dtype=str)
    identity = {"image_id": pool.image_ids[chosen], "file_name": names[chosen]}
    tables = [(out, {"index": chosen, **identity, "score": scores[first][chosen]})]
    if scores_out is not None:
        columns = {"score": scores[first]} if len(functions) == 1 else dict(scores)
        every = {"index": np.arange(len(pool)), "image_id": pool.image_ids, "file_name": names}
        tables.append((scores_out, {**every, **columns}))
    write_tables(tables, metadata=selection_metadata(rule, function=first, budget=request.budget, seed=request.seed))
    return ScoreResult(chosen, scores[first], pool_size, len(members), None, first, scores, rule=rule)


@contextlib.contextmanager
def _work_dir(state: Path | None, out: Path) -> Iterator[Path]:
    """``--state DIR`` claimed as a state of box lists (removed again if this call made it and an
    input turns out bad), or a temporary directory beside ``out`` removed at the end."""
    if state is not None:
        with ClaimedDirectory(state, kind="box-lists", remove_on_input_error=True) as work:
            yield work
        return
    temp = tempfile.mkdtemp(prefix=".subsetsearch-", dir=out.resolve().parent)
    try:
        yield Path(temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _check_inputs(work: Path, request: BoxScoreRequest, functions: tuple[str, ...], stride: float) -> None:
    """Record what a state directory's scores mean; refuse a directory made for other inputs, naming
    what differs. (Member files are checked one by one: a changed one is read again, see
    :func:`_sorted_member`.)"""
    inputs = {
        "annotations": _content_key(Path(request.annotations)),
        "functions": list(functions),
        "stride": stride,
        "chunk_images": CHUNK_IMAGES,
    }
    path = work / "inputs.json"
    if path.is_file():
        try:
            held = json.loads(path.read_text())
            differs = [key for key in inputs if held.get(key) != inputs[key]]
        except (OSError, ValueError, AttributeError):
            raise InputError(f"--state {work}: its inputs.json is unreadable; give a new directory") from None
        if differs:
            what = {
                "annotations": "another annotation file (its content differs)",
                "functions": f"functions {','.join(held.get('functions') or [])}, not {','.join(functions)}",
                "stride": f"stride {held.get('stride')}, not {stride}",
                "chunk_images": "another version of subsetsearch",
            }
            raise InputError(
                f"--state {work} was made for other inputs ({'; '.join(what[key] for key in differs)}); "
                "give a new directory, or the inputs it was made for"
            )
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(inputs, indent=1) + "\n")


def _content_key(path: Path) -> dict:
    """What a file holds: its size and SHA-256 (a touched file with the same content is the same)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _file_key(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _sorted_member(work: Path, m: int, member: Path, pool: CocoPool) -> tuple[np.ndarray, np.ndarray]:
    """Member ``m``'s detections sorted by image (memory-mapped) and where each image's start."""
    records_path, offsets_path = work / f"member_{m:03d}.npy", work / f"member_{m:03d}.offsets.npy"
    key_path, key = work / f"member_{m:03d}.json", _file_key(member)
    if offsets_path.is_file() and (not key_path.is_file() or json.loads(key_path.read_text()) != key):
        offsets_path.unlink()  # another file than the one sorted here: read it again
    if not offsets_path.is_file():
        raw_path = work / f"member_{m:03d}.raw"
        with atomic_path(raw_path) as tmp, open(tmp, "wb") as raw:
            batch: list[tuple] = []
            for row, label, xyxy, score in iter_results(member, pool):
                batch.append((row, label, xyxy, score))
                if len(batch) == WRITE_BATCH:
                    np.array(batch, dtype=_RAW).tofile(raw)
                    batch = []
            np.array(batch, dtype=_RAW).tofile(raw)
        unsorted = np.memmap(raw_path, dtype=_RAW, mode="r") if raw_path.stat().st_size else np.zeros(0, _RAW)
        counts = np.zeros(len(pool), dtype=np.int64)
        for start in range(0, len(unsorted), WRITE_BATCH):
            counts += np.bincount(unsorted["row"][start : start + WRITE_BATCH], minlength=len(pool))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        with atomic_path(records_path) as tmp:
            records = np.lib.format.open_memmap(tmp, mode="w+", dtype=RECORD, shape=(int(offsets[-1]),))
            fill = offsets[:-1].copy()
            for start in range(0, len(unsorted), WRITE_BATCH):
                part = np.asarray(unsorted[start : start + WRITE_BATCH])
                order = np.argsort(part["row"], kind="stable")
                rows = part["row"][order]
                first = np.r_[0, np.flatnonzero(rows[1:] != rows[:-1]) + 1]
                rank = np.arange(len(rows)) - np.repeat(first, np.diff(np.r_[first, len(rows)]))
                at = fill[rows] + rank
                for field in ("label", "xyxy", "score"):
                    records[field][at] = part[field][order]
                fill += np.bincount(rows, minlength=len(pool))
            records.flush()
            del records
        del unsorted
        with atomic_path(key_path) as tmp:
            tmp.write_text(json.dumps(key) + "\n")
        with atomic_path(offsets_path) as tmp, open(tmp, "wb") as f:
            np.save(f, offsets)
        raw_path.unlink()
    offsets = np.load(offsets_path)
    records = np.load(records_path, mmap_mode="r") if offsets[-1] else np.zeros(0, RECORD)
    return records, offsets


def _score_chunks(
    work: Path,
    pool: CocoPool,
    members: list[tuple[np.ndarray, np.ndarray]],
    functions: tuple[str, ...],
    stride: float,
    signature: list[dict],
    on_progress: ProgressFn | None,
) -> dict[str, np.ndarray]:
    """Every image's score by each function, a chunk of images at a time: a scoring state of one
    part (:class:`~subsetsearch.state.ImageScoresPart`, ``progress.npz``), whose units are chunks of
    images scored by every member, resumed when it was made from the same member files
    (``signature``)."""
    n = len(pool)
    chunks = row_shards(n, CHUNK_IMAGES)
    progress = ImageScoresPart.open(
        work / "progress.npz", names=functions, num_images=n, metadata={"members": signature}, label=f"--state {work}"
    )
    state = ScoringState(progress, state_elements=n * len(functions), num_shards=len(chunks))
    box_start = np.searchsorted(pool.box_image, [c.start for c in chunks] + [n]) if len(pool.box_image) else None
    for c, rows in enumerate(chunks):
        if state.holds(ALL_MEMBERS, c):
            continue
        start, stop = rows.start, rows.stop
        chunk = []
        for records, offsets in members:
            part = np.asarray(records[offsets[start] : offsets[stop]])
            image = np.repeat(np.arange(stop - start), np.diff(offsets[start : stop + 1]))
            chunk.append(Boxes(image, part["label"], part["xyxy"], np.clip(part["score"], 0, 1)))
        truth = None
        if "error_count" in functions:
            lo, hi = (0, 0) if box_start is None else (box_start[c], box_start[c + 1])
            truth = Boxes(pool.box_image[lo:hi] - start, pool.labels[lo:hi], pool.boxes[lo:hi])
        maps = BoxMaps(
            chunk, image_sizes=pool.sizes[start:stop], num_classes=pool.num_classes, stride=stride, truth=truth
        )
        progress.set(rows, {f: maps.scores(f) for f in functions})  # the chunk is rendered once for every function
        state.record(progress, ALL_MEMBERS, c)
        state.checkpoint()
        if on_progress is not None:
            on_progress(stop, n)
    state.save()
    return progress.columns
