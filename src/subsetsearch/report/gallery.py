"""The gallery: the samples behind a selection, as thumbnails with their score, label, the ensemble's
vote and their identity in the user's data.

Per class (or over all samples, for detection and unlabeled scores), it shows the highest-scored, the
chosen ones just inside the cut, the left-out ones just outside it, and the lowest-scored. What to
show (:func:`gallery_rows`) and the thumbnails (:func:`thumbnails`) are decided when a step is
scored and kept in the run directory (:class:`~subsetsearch.rundir.GalleryRecord`); this module
also renders them as HTML (:func:`gallery_html`), each thumbnail a PNG data URI, so the page needs
nothing beside itself. NumPy and Pillow only.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np

from subsetsearch.balance import class_shares, how_far_off
from subsetsearch.rundir import GALLERY_GROUPS, GalleryRecord

__all__ = ["EXTREMES", "MAX_CLASSES", "NEAR_CUT", "THUMBNAIL_SIDE", "gallery_html", "gallery_rows", "thumbnails"]

#: Highest- and lowest-scored samples shown per class.
EXTREMES = 3
#: Samples shown per class on each side of the cut.
NEAR_CUT = 2
#: Thumbnails are at most this many pixels on a side (larger images are averaged down).
THUMBNAIL_SIDE = 64
#: Classes a gallery shows at most (those whose share of the subset is furthest from the pool's).
MAX_CLASSES = 20


def gallery_rows(
    scores: np.ndarray,
    chosen: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    extremes: int = EXTREMES,
    near_cut: int = NEAR_CUT,
    max_classes: int = MAX_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """The rows a gallery shows and the group of each (0 highest, 1 just inside the cut, 2 just
    outside it, 3 lowest), class by class.

    Among the scored rows (finite scores) of each class (all rows when ``labels`` is None): the
    ``extremes`` highest scores, the ``near_cut`` chosen rows of lowest score, the ``near_cut``
    rows left out of highest score, and the ``extremes`` lowest scores. A row is shown once, in
    the first of those groups that takes it. Equal scores go by row. Of more than ``max_classes``
    classes, those whose share of ``chosen`` is furthest from their share of the labels (by ratio)
    are shown, so the page stays small at a thousand classes.

    Parameters
    ----------
    scores : ndarray of shape (N,)
        NaN where a row was not scored.
    chosen : array-like of int
        Rows the selection chose.
    labels : ndarray of shape (N,), optional

    Returns
    -------
    rows, groups : ndarray of shape (n,), int64 and int8
        Ordered by class, then group, then score (highest first).

    Examples
    --------
    >>> import numpy as np
    >>> scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, np.nan])
    >>> rows, groups = gallery_rows(scores, [0, 1, 2], extremes=1, near_cut=1)
    >>> rows.tolist(), groups.tolist()
    ([0, 2, 3, 5], [0, 1, 2, 3])
    """
    scores = np.asarray(scores, dtype=np.float64)
    chosen = np.asarray(chosen, dtype=np.int64)
    is_chosen = np.zeros(len(scores), bool)
    is_chosen[chosen] = True
    scored = np.flatnonzero(np.isfinite(scores))
    label_of = np.zeros(len(scores), np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    order = np.lexsort((scored, -scores[scored], label_of[scored]))  # by class, highest first, ties by row
    ranked_all, classes = scored[order], label_of[scored[order]]
    per_class = np.split(ranked_all, np.flatnonzero(np.diff(classes)) + 1) if len(ranked_all) else []
    if len(per_class) > max_classes:
        per_class = [per_class[k] for k in sorted(_most_off(label_of, chosen, per_class, max_classes))]
    rows_out: list[int] = []
    groups_out: list[int] = []
    for ranked in per_class:
        inside = ranked[is_chosen[ranked]]
        outside = ranked[~is_chosen[ranked]]
        picks = (
            ranked[:extremes],
            inside[len(inside) - min(near_cut, len(inside)) :],  # the chosen of lowest score
            outside[:near_cut],
            ranked[len(ranked) - min(extremes, len(ranked)) :],
        )
        taken: set[int] = set()
        for group, rows in enumerate(picks):
            for row in rows.tolist():
                if row not in taken:
                    taken.add(row)
                    rows_out.append(row)
                    groups_out.append(group)
    return np.asarray(rows_out, dtype=np.int64), np.asarray(groups_out, dtype=np.int8)


def _most_off(labels: np.ndarray, chosen: np.ndarray, per_class: list[np.ndarray], keep: int) -> list[int]:
    """Positions in ``per_class`` of the ``keep`` classes whose share of ``chosen`` is furthest, by
    ratio, from their share of ``labels`` (ties: the lower class first)."""
    pool = class_shares(labels, np.arange(len(labels)))
    distance = how_far_off(class_shares(labels, chosen, num_classes=len(pool)), pool)
    off = [(-float(distance[int(labels[ranked[0]])]), int(labels[ranked[0]]), k) for k, ranked in enumerate(per_class)]
    return [k for _, _, k in sorted(off)[:keep]]


def thumbnails(images: np.ndarray, *, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """Images ``[n, C, H, W]`` as uint8 thumbnails ``[n, C', h, w]`` of at most ``side`` pixels a side.

    8-bit images keep their values; other depths are stretched per image from its lowest to its
    highest value (a flat image is black). A larger image is averaged over square blocks of the
    smallest whole factor that fits. Grey-and-alpha keeps its grey, RGBA its RGB (C' is 1 or 3).

    Examples
    --------
    >>> import numpy as np
    >>> thumbnails(np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4), side=2)[0, 0].tolist()
    [[2, 4], [10, 12]]
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [n, C, H, W], not {list(images.shape)}")
    images = images[:, :1] if images.shape[1] in (1, 2) else images[:, :3]
    if images.dtype != np.uint8:
        values = images.astype(np.float64)
        low = values.min(axis=(1, 2, 3), keepdims=True)
        span = values.max(axis=(1, 2, 3), keepdims=True) - low
        images = np.where(span > 0, (values - low) / np.where(span > 0, span, 1) * 255, 0).round().astype(np.uint8)
    n, c, h, w = images.shape
    factor = max(1, -(-max(h, w) // side))
    if factor > 1:
        h2, w2 = h // factor, w // factor
        blocks = images[:, :, : h2 * factor, : w2 * factor].reshape(n, c, h2, factor, w2, factor)
        images = blocks.mean(axis=(3, 5)).round().astype(np.uint8)
    return images


def png_uri(image: np.ndarray) -> str:
    """A ``[C, h, w]`` uint8 image as a PNG data URI."""
    from PIL import Image

    pixels = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _class_name(c: int, class_names: Sequence[str] | None) -> str:
    return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)


def gallery_html(
    record: GalleryRecord,
    *,
    class_names: Sequence[str] | None = None,
    identity: dict[str, np.ndarray] | None = None,
) -> str:
    """The gallery as HTML: one block per class (one in all without labels), its groups side by
    side, each thumbnail captioned by its score, whether it was chosen, its label, the ensemble's
    vote (with the share of members that cast it) and its identity (``identity``: columns by pool
    row, as ``dataset.npz`` keeps them)."""
    parts = []
    classes = sorted(set(record.labels.tolist()))
    for c in classes:
        in_class = record.labels == c
        title = "all samples" if c < 0 else f"class {_class_name(c, class_names)}"
        parts.append(f'<div class="gallery-class"><h3>{html.escape(title)}</h3><div class="gallery-groups">')
        for g, group_name in enumerate(GALLERY_GROUPS):
            where = np.flatnonzero(in_class & (record.group == g))
            if not len(where):
                continue
            cells = "".join(_cell(record, k, class_names, identity) for k in where)
            parts.append(
                f'<div class="gallery-group"><div class="gallery-label">{html.escape(group_name)}</div>{cells}</div>'
            )
        parts.append("</div></div>")
    return "".join(parts)


def _cell(
    record: GalleryRecord, k: int, class_names: Sequence[str] | None, identity: dict[str, np.ndarray] | None
) -> str:
    row = int(record.index[k])
    lines = [f"{record.function} {record.scores[k]:.4g}", "chosen" if record.chosen[k] else "left out"]
    if record.labels[k] >= 0:
        lines.append(f"label {_class_name(int(record.labels[k]), class_names)}")
    if record.votes[k] >= 0:
        share = record.vote_share[k]
        vote = _class_name(int(record.votes[k]), class_names)
        lines.append(f"vote {vote} ({100 * share:.0f}%)" if np.isfinite(share) else f"vote {vote}")
    lines.append(f"index {row}")
    for name, values in (identity or {}).items():
        lines.append(f"{name} {values[row]}")
    caption = "<br>".join(html.escape(line) for line in lines)
    kind = "chosen" if record.chosen[k] else "left"
    alt = html.escape(f"pool row {row}")
    return (
        f'<figure class="thumb {kind}"><img data-figure="thumb-{row}" alt="{alt}" '
        f'src="{png_uri(record.thumbnails[k])}"><figcaption>{caption}</figcaption></figure>'
    )
