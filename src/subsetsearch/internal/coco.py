"""COCO files: an instances (annotation) file read and checked whole, a results file streamed.

An instances file is a JSON object with ``images`` (``id``, ``file_name``, ``width``,
``height``), ``categories`` (``id``, ``name``) and ``annotations`` (``image_id``,
``category_id``, ``bbox`` as ``[x, y, width, height]`` in pixels). A results file is a JSON array
of detections (``image_id``, ``category_id``, ``bbox``, ``score``), as detectors write for COCO's
evaluation server. Rows are the images in the instances file's order; classes are its categories
in increasing ``id`` order. Every problem is an :class:`InputError` naming the file and the image.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subsetsearch.errors import InputError

#: Characters read from a results file at a time.
READ_BLOCK = 1 << 20
#: Pixels a ground-truth box may reach past its image's edge (annotation tools round): clipped to
#: the image; further out, the box is refused.
BOX_SLACK = 1.0


@dataclass(frozen=True)
class CocoPool:
    """The images, classes and ground-truth boxes of an instances file.

    ``sizes`` [N, 2] is each image's (width, height); ``boxes`` [B, 4] are ``[x0, y0, x1, y1]``
    pixels, ``labels`` [B] class indices, ``box_image`` [B] image rows, sorted by image (in file
    order within an image).
    """

    path: Path
    image_ids: np.ndarray
    file_names: list[str]
    sizes: np.ndarray
    category_ids: np.ndarray
    class_names: list[str]
    boxes: np.ndarray
    labels: np.ndarray
    box_image: np.ndarray

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def lookups(self) -> tuple[dict[int, int], dict[int, int]]:
        """Image id -> row and category id -> class."""
        rows = {int(i): r for r, i in enumerate(self.image_ids)}
        return rows, {int(c): k for k, c in enumerate(self.category_ids)}


def read_instances(path: str | Path, *, option: str = "--annotations") -> CocoPool:
    """Read and check a COCO instances file; InputError (one line) on any problem."""
    path = Path(path)
    where = f"{option} {path}"
    if not path.is_file():
        raise InputError(f"{where}: no such file; give a COCO instances (annotation) JSON file")
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark (Windows tools write one) is skipped
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{where} is not a readable JSON file ({error}); give a COCO instances file") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{where} has no 'images' list; give a COCO instances file (images, categories, annotations)")
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories:
        raise InputError(f"{where} has no 'categories'; a COCO instances file lists its classes there")
    try:
        cats = sorted((whole_number(c["id"]), str(c["name"])) for c in categories)
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: every category needs an integer 'id' and a 'name'") from None
    category_ids = np.array([c for c, _ in cats], dtype=np.int64)
    if len(np.unique(category_ids)) != len(category_ids):
        raise InputError(f"{where}: category ids repeat; give each category its own id")
    images = data["images"]
    if not images:
        raise InputError(f"{where} lists no image; the pool needs at least one")
    ids, names, sizes = [], [], []
    for entry in images:
        try:
            ids.append(whole_number(entry["id"]))
            names.append(str(entry.get("file_name", "")))
            sizes.append((whole_number(entry["width"]), whole_number(entry["height"])))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError(
                f"{where}: every image needs an integer 'id', 'width' and 'height' (got {entry!r:.80})"
            ) from None
        if sizes[-1][0] < 1 or sizes[-1][1] < 1:
            raise InputError(f"{where}: image {ids[-1]} ({names[-1]}) has width or height below 1 pixel")
    image_ids = np.array(ids, dtype=np.int64)
    if len(np.unique(image_ids)) != len(image_ids):
        raise InputError(f"{where}: image ids repeat; give each image its own id")
    pool = CocoPool(
        path,
        image_ids,
        names,
        np.array(sizes, dtype=np.int64).reshape(-1, 2),
        category_ids,
        [n for _, n in cats],
        np.zeros((0, 4)),
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=np.int64),
    )
    boxes, labels, rows = [], [], []
    lookups = pool.lookups()
    for entry in data.get("annotations") or []:
        image, category, xyxy = _box_fields(entry, where, "annotation")
        row, label = _place(pool, lookups, image, category, where, "annotation")
        width, height = (int(v) for v in pool.sizes[row])
        slack = BOX_SLACK
        if xyxy[0] < -slack or xyxy[1] < -slack or xyxy[2] > width + slack or xyxy[3] > height + slack:
            raise InputError(
                f"{where}: image {image} ({pool.file_names[row]}) has a box {entry['bbox']} outside its "
                f"{width}x{height} pixels; clip or fix the box"
            )
        x0, y0, x1, y1 = xyxy  # within the slack: clipped to the image
        boxes.append((max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))))
        labels.append(label)
        rows.append(row)
    order = np.argsort(np.array(rows, dtype=np.int64), kind="stable")  # by image, file order within one
    return CocoPool(
        path,
        image_ids,
        names,
        pool.sizes,
        category_ids,
        pool.class_names,
        np.array(boxes, dtype=np.float64).reshape(-1, 4)[order],
        np.array(labels, dtype=np.int64)[order],
        np.array(rows, dtype=np.int64)[order],
    )


def iter_results(
    path: str | Path, pool: CocoPool
) -> Iterator[tuple[int, int, tuple[float, float, float, float], float]]:
    """Each detection of a COCO results file as (row, class, (x0, y0, x1, y1), score), read a block
    at a time, so memory does not grow with the file; InputError (one line) on any problem."""
    path = Path(path)
    where = f"member {path}"
    lookups = pool.lookups()
    for entry in _json_array(path, where):
        image, category, xyxy = _box_fields(entry, where, "detection")
        score = entry.get("score") if isinstance(entry, dict) else None
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
            raise InputError(f"{where}: a detection of image {image} has score {score!r}; scores must be in [0, 1]")
        row, label = _place(pool, lookups, image, category, where, "detection")
        yield row, label, xyxy, float(score)


def _box_fields(entry: object, where: str, what: str) -> tuple[int, int, tuple[float, float, float, float]]:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: a {what} is {entry!r:.60}, not an object with image_id, category_id and bbox")
    try:
        image, category = whole_number(entry["image_id"]), whole_number(entry["category_id"])
        x, y, w, h = (real_number(v) for v in entry["bbox"])
    except (KeyError, TypeError, ValueError):
        raise InputError(
            f"{where}: a {what} lacks an integer image_id and category_id or a bbox [x, y, width, height] "
            f"(got {entry!r:.80})"
        ) from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
        raise InputError(
            f"{where}: image {image} has a {what} bbox {entry['bbox']}; give finite x, y and width, height >= 0"
        )
    return image, category, (x, y, x + w, y + h)


def whole_number(value: object) -> int:
    """A JSON integer (an integral float too, as some writers give 3.0); ValueError for a fraction, a
    bool, a string or anything else: ``1.5`` is no image id."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


def real_number(value: object) -> float:
    """A JSON number (never a bool or a string) as a float; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _place(
    pool: CocoPool, lookups: tuple[dict[int, int], dict[int, int]], image: int, category: int, where: str, what: str
) -> tuple[int, int]:
    row = lookups[0].get(image, -1)
    if row < 0:
        raise InputError(
            f"{where}: a {what} names image_id {image}, which {pool.path} does not list; score the pool's images"
        )
    label = lookups[1].get(category, -1)
    if label < 0:
        raise InputError(
            f"{where}: image {image} ({pool.file_names[row]}) has category_id {category}, which is not among "
            f"{pool.path}'s categories; map it to one of them"
        )
    return row, label


def _json_array(path: Path, where: str) -> Iterator[object]:
    """The elements of a JSON array file, decoded one at a time from blocks of READ_BLOCK characters."""
    decoder = json.JSONDecoder()
    try:
        f = open(path, encoding="utf-8-sig")  # a byte-order mark (Windows tools write one) is skipped
    except OSError as error:
        raise InputError(f"{where}: cannot be read ({error.strerror}); give a COCO results JSON file") from None
    with f:
        buffer, pos, eof, consumed = "", 0, False, 0

        def fill() -> bool:
            nonlocal buffer, pos, eof, consumed
            block = f.read(READ_BLOCK)
            consumed += pos
            buffer, pos = buffer[pos:] + block, 0
            eof = not block
            return bool(block)

        def skip_space() -> None:
            nonlocal pos
            while True:
                while pos < len(buffer) and buffer[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buffer) or not fill():
                    return

        try:
            skip_space()
            if pos >= len(buffer) or buffer[pos] != "[":
                raise InputError(f"{where} is not a JSON array; a COCO results file is a list of detections")
            pos += 1
            first = True
            while True:
                skip_space()
                if pos >= len(buffer):
                    raise InputError(f"{where} ends before its closing ']'; the file is cut short, write it again")
                if buffer[pos] == "]":
                    pos += 1
                    skip_space()
                    if pos < len(buffer):
                        raise InputError(f"{where} has text after its closing ']'; give one JSON array")
                    return
                if not first:
                    if buffer[pos] != ",":
                        raise InputError(
                            f"{where} is not valid JSON at character {consumed + pos}; expected ',' or ']'"
                        )
                    pos += 1
                    skip_space()
                first = False
                while True:
                    try:
                        entry, end = decoder.raw_decode(buffer, pos)
                    except json.JSONDecodeError as error:
                        if eof or not fill():
                            if error.pos >= len(buffer.rstrip()):
                                raise InputError(
                                    f"{where} ends inside a detection, before its closing ']'; the file is cut short, "
                                    "write it again"
                                ) from None
                            raise InputError(
                                f"{where} is not valid JSON at character {consumed + error.pos}: {error.msg}"
                            ) from None
                        continue
                    if end == len(buffer) and not eof and not isinstance(entry, (dict, list, str)):
                        fill()  # a number cut at the block's end: read on and decode it again
                        continue
                    pos = end
                    break
                yield entry
        except UnicodeDecodeError:
            raise InputError(f"{where} is not UTF-8 text; give a COCO results JSON file") from None
