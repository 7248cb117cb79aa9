"""``subsetsearch report --scores FILE --images DIR|X.npy``: the gallery of a selection made from
anywhere (``subsetsearch score``'s scores, or any table of scores by row), as a self-contained page.

The same gallery as a run's report (:mod:`subsetsearch.report.gallery`): per class (with labels) the
highest- and lowest-scored samples and those either side of the cut (with ``--subset``, the rows
chosen), each with its score, label and identity. It writes only into ``--out``, a directory of its
own (marked as ours first; a directory of someone else's is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subsetsearch.balance import imbalance_line, imbalanced_classes
from subsetsearch.errors import InputError
from subsetsearch.internal.directories import ClaimedDirectory
from subsetsearch.internal.files import read_table
from subsetsearch.internal.members import read_column
from subsetsearch.pipeline.score import recorded_selection
from subsetsearch.report.gallery import EXTREMES, NEAR_CUT, gallery_html, gallery_rows, thumbnails
from subsetsearch.report.html import Section, write_html
from subsetsearch.rundir import GalleryRecord

__all__ = ["GalleryRequest", "GalleryResult", "gallery_page"]

#: The kind of directory ``--out`` is (its marker).
KIND = "gallery"


@dataclass(frozen=True)
class GalleryRequest:
    """What ``report --scores`` was given (see the command's help)."""

    scores: Path
    images: Path
    out: Path
    subset: Path | None = None
    labels: Path | None = None
    function: str | None = None


@dataclass(frozen=True)
class GalleryResult:
    html: Path
    summary: str


@dataclass(frozen=True)
class _Images:
    x: object  # rows of [C, H, W] images, indexable by an array of rows
    count: int
    labels: np.ndarray | None
    class_names: list[str] | None
    identity: dict[str, np.ndarray]


def gallery_page(request: GalleryRequest) -> GalleryResult:
    """Write ``request.out/gallery.html``; InputError (nothing written) for any input that does not fit."""
    images = _read_images(request.images)
    column, scores = _read_scores(request.scores, request.function, images.count)
    chosen = _read_subset(request.subset, images.count)
    labels = images.labels
    if request.labels is not None:
        from subsetsearch.train.data import as_labels

        labels = as_labels(read_column(request.labels, "labels file"), images.count, f"labels file '{request.labels}'")
    rows, groups = gallery_rows(scores, chosen, labels=labels)
    if not len(rows):
        raise InputError(f"--scores '{request.scores}' column '{column}' scores no row (all NaN)")
    n = len(rows)
    record = GalleryRecord(
        rows,
        groups,
        scores[rows],
        np.isin(rows, chosen),
        np.full(n, -1, np.int64) if labels is None else labels[rows].astype(np.int64),
        np.full(n, -1, np.int64),
        np.full(n, np.nan),
        thumbnails(np.asarray(images.x[rows])),
        column,
    )
    with ClaimedDirectory(request.out, kind=KIND, option="--out", remove_on_input_error=True) as out:
        page = out / "gallery.html"
        sections = _sections(request, record, images, labels, chosen)
        write_html(page, f"subsetsearch gallery: {request.scores.name}", sections, [])
    lines = [f"gallery     {page}", f"shown       {n} samples ({column})"]
    return GalleryResult(page, "\n".join(lines))


def _sections(
    request: GalleryRequest, record: GalleryRecord, images: _Images, labels: np.ndarray | None, chosen: np.ndarray
) -> list[Section]:
    about = Section("Scores").table(
        ["", "value"],
        [
            ["scores", str(request.scores)],
            ["score column", record.function],
            ["images", str(request.images)],
            ["samples", images.count],
            ["chosen (--subset)", len(chosen) if request.subset is not None else "- (no --subset: no cut shown)"],
            ["labels", "from the image folder" if request.labels is None and labels is not None else
             str(request.labels) if request.labels is not None else "-"],
            ["selection", _recorded(request)],
        ],
    )  # fmt: skip
    if labels is not None and len(chosen):
        flags = imbalanced_classes(labels, chosen)
        if flags:
            about.warning(imbalance_line(flags, images.class_names))
    by = "Per class" if labels is not None else "Over all samples (no labels)"
    gallery = Section("Gallery").text(
        f"{by}: the {EXTREMES} highest and lowest scores, and the {NEAR_CUT} chosen samples of lowest score and "
        f"the {NEAR_CUT} left-out samples of highest score either side of the cut (blue frame: chosen)."
    )
    gallery.raw(gallery_html(record, class_names=images.class_names, identity=images.identity))
    return [about, gallery]


def _recorded(request: GalleryRequest) -> str:
    """How the subset (else the scores) was chosen, as ``subsetsearch score`` recorded it in a
    Parquet file; a dash where neither says."""
    for path in (request.subset, request.scores):
        if path is not None and (words := recorded_selection(path)) is not None:
            return words
    return "- (not recorded: a CSV, or not written by subsetsearch score)"


def _read_images(path: Path) -> _Images:
    """An image folder (as ``data: image_folder`` reads it: rows in its order, labels from its class
    folders) or the images of an ``.npy`` / ``.npz`` (``x``, with ``y`` as labels when present)."""
    from subsetsearch.train.data import as_labels, load_image_folder
    from subsetsearch.train.disk_images import image_layout

    if path.is_dir():
        images, classes = load_image_folder(path)
        return _Images(images.x, len(images), images.y, list(classes), dict(images.source))
    if not path.is_file():
        raise InputError(f"--images '{path}' not found; give an image folder or an .npy / .npz of images")
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as error:
        raise InputError(f"--images '{path}' is not a readable .npy / .npz file ({error})") from None
    labels = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if "x" not in loaded.files:
                raise InputError(f"--images '{path}' holds no 'x'; save it with numpy.savez(path, x=images)")
            x = loaded["x"]
            labels = as_labels(loaded["y"], len(x), f"'y' of '{path}'") if "y" in loaded.files else None
    else:
        x = loaded
    image_layout(x.shape, f"--images '{path}'")  # the layout is checked before any row is read
    return _Images(_FileRows(x, f"--images '{path}'"), len(x), labels, None, {})


class _FileRows:
    """Rows of a memory-mapped array of images, read when asked for, as [n, C, H, W]."""

    def __init__(self, x: np.ndarray, what: str) -> None:
        self.x, self.what = x, what

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        from subsetsearch.train.data import as_nchw

        return as_nchw(np.asarray(self.x[np.asarray(rows)]), self.what)


def _read_scores(path: Path, function: str | None, count: int) -> tuple[str, np.ndarray]:
    """The column of scores (``function``, else ``score``, else the first besides ``index``) as an
    array over the images' rows, NaN for rows the file does not score."""
    table = read_table(path, "--scores")
    names = [name for name in table if name != "index"]
    if "index" not in table or not names:
        raise InputError(
            f"--scores '{path}' needs an 'index' column and a column of scores (as `subsetsearch score "
            "--scores-out` writes); it has " + ", ".join(table)
        )
    column = function or ("score" if "score" in names else names[0])
    if column not in names:
        raise InputError(f"--scores '{path}' has no column '{column}' (it has {', '.join(names)})")
    index = _rows(table["index"], count, f"--scores '{path}'")
    values = np.asarray(table[column], dtype=np.float64)
    scores = np.full(count, np.nan)
    scores[index] = values
    return column, scores


def _read_subset(path: Path | None, count: int) -> np.ndarray:
    if path is None:
        return np.empty(0, np.int64)
    table = read_table(path, "--subset")
    if "index" not in table:
        raise InputError(f"--subset '{path}' has no 'index' column (as `subsetsearch score -o` writes)")
    return _rows(table["index"], count, f"--subset '{path}'")


def _rows(values: np.ndarray, count: int, what: str) -> np.ndarray:
    rows = np.asarray(values)
    if not np.issubdtype(rows.dtype, np.integer):
        raise InputError(f"{what}: its 'index' column must hold integer rows, not {rows.dtype}")
    if len(rows) and (rows.min() < 0 or rows.max() >= count):
        raise InputError(
            f"{what} names row {int(rows.max() if rows.max() >= count else rows.min())}, but --images holds "
            f"{count} images (rows 0 to {count - 1}); give the images the scores were computed for"
        )
    if len(np.unique(rows)) != len(rows):
        raise InputError(f"{what} names a row twice; give each row once")
    return rows.astype(np.int64)
