"""Labeled image data for the trainer: built-in sets that need no network, and users' own.

Every loader returns images as ``[N, channels, H, W]`` arrays (uint8 when the source is
8-bit, float32 otherwise) and labels as int64 ``[N]``. Bad input raises ``InputError`` with
one line that names the file and the fix.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from subsetsearch.errors import InputError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class LazyImages:
    """Images left on disk (a memory-mapped ``.npy`` or a Zarr array) and read a block of rows at a
    time, as [n, channels, H, W]: pools larger than memory.

    ``take`` selects rows without reading them; indexing with a slice or an array of rows reads
    those rows (uint8 stays uint8, anything else becomes float32; NaN or inf is an InputError).
    """

    def __init__(self, source: object, what: str, rows: np.ndarray | None = None) -> None:
        self.source, self.what, self.rows = source, what, rows
        shape = tuple(source.shape)
        if len(shape) == 3:
            self.layout, (c, h, w) = "nhw", (1, *shape[1:])
        elif len(shape) == 4 and shape[-1] <= 4 and shape[1] > 4:
            self.layout, (h, w, c) = "nhwc", shape[1:]
        elif len(shape) == 4 and shape[1] <= 4:
            self.layout, (c, h, w) = "nchw", shape[1:]
        else:
            raise InputError(f"{what} has shape {shape}; give [N, H, W], [N, H, W, channels] or [N, channels, H, W]")
        if min(h, w) < 8:
            raise InputError(f"{what} images are {h}×{w}; the models need at least 8×8 pixels")
        kind = np.dtype(source.dtype)
        if kind != np.uint8 and not (np.issubdtype(kind, np.floating) or np.issubdtype(kind, np.integer)):
            raise InputError(f"{what} has dtype {kind}; give uint8 or floating-point images")
        self.dtype = np.dtype(np.uint8) if kind == np.uint8 else np.dtype(np.float32)
        self.image_shape = (c, h, w)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.image_shape)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return int(self.source.shape[0]) if self.rows is None else len(self.rows)

    def take(self, rows: np.ndarray) -> LazyImages:
        rows = np.asarray(rows, dtype=np.int64)
        return LazyImages(self.source, self.what, rows if self.rows is None else self.rows[rows])

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice) and self.rows is None:
            block = np.asarray(self.source[key])
        else:
            wanted = np.arange(*key.indices(len(self))) if isinstance(key, slice) else np.asarray(key, dtype=np.int64)
            source_rows = wanted if self.rows is None else self.rows[wanted]
            order = np.argsort(source_rows, kind="stable")  # read in file order, then put back
            block = np.empty((len(source_rows), *tuple(self.source.shape)[1:]), dtype=self.source.dtype)
            if len(source_rows):
                sorted_rows = source_rows[order]
                if hasattr(self.source, "get_orthogonal_selection"):  # Zarr: one read per chunk touched
                    block[order] = self.source.get_orthogonal_selection((sorted_rows,))
                else:
                    block[order] = self.source[sorted_rows]
        if self.layout == "nhw":
            block = block[:, None]
        elif self.layout == "nhwc":
            block = block.transpose(0, 3, 1, 2)
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if self.dtype != np.uint8 and not np.isfinite(block).all():
            raise InputError(f"{self.what} holds NaN or infinite values; clean or drop those images")
        return block


@dataclass(frozen=True)
class LabeledImages:
    """Images ``x`` [N, channels, H, W] (in memory, or :class:`LazyImages` on disk) and integer labels ``y`` [N]."""

    x: np.ndarray | LazyImages
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> LabeledImages:
        x = self.x.take(rows) if isinstance(self.x, LazyImages) else self.x[rows]
        return LabeledImages(x, self.y[rows])


@dataclass(frozen=True)
class Splits:
    """What a search works on: the pool (the labeled set L), a validation set (may be empty), a
    test set, and the names of the classes."""

    name: str
    pool: LabeledImages
    validation: LabeledImages
    test: LabeledImages
    num_classes: int
    class_names: tuple[str, ...] = ()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.pool.x.shape[1:])  # type: ignore[return-value]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "a.idx"
    ...     _ = p.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
    ...     read_idx(p).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise InputError(f"IDX file '{path}' could not be read ({error})") from None
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise InputError(f"'{path}' is not an IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[raw[2]])
    start = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - start != expected:
        raise InputError(
            f"IDX file '{path}' is truncated or padded ({len(raw) - start} data bytes, expected {expected})"
        )
    return np.frombuffer(raw, dtype=dtype, offset=start).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise InputError(
        f"Fashion-MNIST file '{stem}' not found in {directory}; install Debian's package "
        f"'{FASHION_MNIST_PACKAGE}' (sudo apt-get install {FASHION_MNIST_PACKAGE}) "
        "or set data.path to a folder of IDX files"
    )


def load_fashion_mnist(directory: str | os.PathLike | None = None) -> tuple[LabeledImages, LabeledImages]:
    """Fashion-MNIST's 60k train and 10k test images ([N, 1, 28, 28] uint8) from its IDX files."""
    directory = Path(directory) if directory is not None else FASHION_MNIST_DIR
    if not directory.is_dir():
        raise InputError(
            f"Fashion-MNIST not found: {directory} does not exist; install Debian's package "
            f"'{FASHION_MNIST_PACKAGE}' (sudo apt-get install {FASHION_MNIST_PACKAGE}) or set data.path"
        )
    parts = []
    for prefix in ("train", "t10k"):
        x = read_idx(_idx_file(directory, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(_idx_file(directory, f"{prefix}-labels-idx1-ubyte"))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise InputError(f"Fashion-MNIST files in {directory} do not match (images {x.shape}, labels {y.shape})")
        parts.append(LabeledImages(np.ascontiguousarray(x[:, None]), y.astype(np.int64)))
    return parts[0], parts[1]


def load_digits_images() -> LabeledImages:
    """scikit-learn's 1,797 8×8 digits as [N, 1, 8, 8] uint8 (values 0..16 scaled to 0..255)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    return LabeledImages(x, digits.target.astype(np.int64))


def as_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """Images as [N, channels, H, W]: accepts [N, H, W], [N, H, W, c] and [N, c, H, W] with c in 1..4."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] <= 4 and x.shape[1] > 4:
            x = x.transpose(0, 3, 1, 2)
        elif x.shape[1] > 4:
            raise InputError(f"{what} has shape {x.shape}; give [N, H, W], [N, H, W, channels] or [N, channels, H, W]")
    else:
        raise InputError(f"{what} has shape {x.shape}; give [N, H, W], [N, H, W, channels] or [N, channels, H, W]")
    if min(x.shape[2:]) < 8:
        raise InputError(f"{what} images are {x.shape[2]}×{x.shape[3]}; the models need at least 8×8 pixels")
    if len(x) == 0:
        raise InputError(f"{what} holds no image; give one with images")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise InputError(f"{what} has dtype {x.dtype}; give uint8 or floating-point images")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InputError(f"{what} holds NaN or infinite values; clean or drop those images")
    return x


def as_labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    """Labels as int64 [n] in 0..; InputError naming the problem otherwise."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{what} has shape {y.shape}; expected one integer label per image ({n})")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise InputError(f"{what} has dtype {y.dtype}; give integer class labels 0..C-1")
    if n and y.min() < 0:
        raise InputError(f"{what} holds a negative label ({int(y.min())}); give class labels 0..C-1")
    return y.astype(np.int64)


#: A pool's ``.npy`` images larger than this share of the available memory stay on disk (LazyImages).
LAZY_MEMORY_SHARE = 0.25


def load_arrays(
    path: str | os.PathLike, labels: str | os.PathLike | None = None, *, lazy: bool | None = None
) -> LabeledImages:
    """User arrays: an ``.npz`` holding ``x`` and ``y``, or images as an ``.npy`` or a Zarr array
    with ``labels`` an ``.npy``.

    Images in a Zarr array, or in an ``.npy`` with ``lazy=True`` (default: when the file is larger
    than ``LAZY_MEMORY_SHARE`` of the available memory), stay on disk as :class:`LazyImages`.
    """
    from subsetsearch.internal.files import is_zarr, open_array

    path = Path(path)
    if not path.exists() or (path.is_dir() and not is_zarr(path)):
        raise InputError(f"data file '{path}' not found")
    if is_zarr(path) or (path.suffix.lower() == ".npy" and _stays_on_disk(path, lazy)):
        if labels is None:
            raise InputError(f"'{path}' holds images only; set data.labels to an .npy of their labels")
        x = LazyImages(open_array(path, "data file"), f"'{path}'")
        return LabeledImages(x, as_labels(_read_labels(labels), len(x), f"labels of '{path}'"))
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:
        raise InputError(f"data file '{path}' is not a readable .npy/.npz file ({error})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            missing = {"x", "y"} - set(loaded.files)
            if missing:
                raise InputError(
                    f"'{path}' lacks {', '.join(sorted(missing))}; save it with numpy.savez(path, x=images, y=labels)"
                )
            x, y = loaded["x"], loaded["y"]
    else:
        if labels is None:
            raise InputError(
                f"'{path}' holds images only; set data.labels to an .npy of their labels (or use an .npz with x and y)"
            )
        x, y = loaded, _read_labels(labels)
    x = as_nchw(np.asarray(x), f"'{path}'")
    return LabeledImages(x, as_labels(y, len(x), f"labels of '{path}'"))


def _read_labels(labels: str | os.PathLike) -> np.ndarray:
    try:
        return np.load(labels, allow_pickle=False)
    except Exception as error:
        raise InputError(f"labels file '{labels}' could not be read ({error})") from None


def _stays_on_disk(path: Path, lazy: bool | None) -> bool:
    if lazy is not None:
        return lazy
    from subsetsearch.internal.files import available_memory

    return path.stat().st_size > LAZY_MEMORY_SHARE * available_memory()


def load_image_folder(
    path: str | os.PathLike, image_size: tuple[int, int] | None = None
) -> tuple[LabeledImages, list[str]]:
    """An image folder: one subfolder per class (sorted names are classes 0, 1, ...).

    Images are read with Pillow at their bit depth (:mod:`subsetsearch.train.images`: 8-bit as
    uint8, 16- and 32-bit greyscale as float32 values; one depth a folder), as greyscale when every
    one is greyscale, else RGB; they must share one size unless ``image_size`` (height, width) asks
    for a resize.
    """
    from subsetsearch.train.images import read_picture, stack_depth

    root = Path(path)
    if not root.is_dir():
        raise InputError(f"image folder '{root}' not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise InputError(
            f"image folder '{root}' has {len(classes)} class subfolders; give one subfolder per class (at least 2)"
        )
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InputError(f"class folder '{root / name}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += [(p, label) for p in found]
    pictures = [read_picture(file, f"image '{file}'") for file, _ in files]
    stack_depth(pictures, f"image folder '{root}'")
    rgb = not all(picture.grey for picture in pictures)
    size = None if image_size is None else (image_size[1], image_size[0])
    arrays = []
    for (file, _), picture in zip(files, pictures, strict=True):
        array = picture.array(rgb=rgb, size=size)
        if arrays and array.shape != arrays[0].shape:
            raise InputError(
                f"image '{file}' is {array.shape[:2]} but '{files[0][0]}' is {arrays[0].shape[:2]}; "
                "set data.image_size: [height, width] to resize them all"
            )
        arrays.append(array)
    x = np.stack(arrays)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    if min(x.shape[2:]) < 8:
        raise InputError(f"images in '{root}' are {x.shape[2]}×{x.shape[3]}; the models need at least 8×8 pixels")
    return LabeledImages(np.ascontiguousarray(x), np.array([label for _, label in files], dtype=np.int64)), classes


@dataclass(frozen=True)
class Loaded:
    """What a dataset gives: the training images (the pool before splits), its own test images (None:
    a seeded ``data.test_fraction`` of the training images is held out), a name for messages and
    records, and its class names (None: the class numbers)."""

    train: LabeledImages
    test: LabeledImages | None
    name: str
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DatasetSource:
    """A classification dataset ``data.dataset`` may name: how it loads from the config's ``data``
    section, whether ``data.path`` is required, optional or refused, and which other keys of
    ``data`` it reads (besides ``limit``, ``test_limit`` and ``validation_fraction``, which every
    dataset takes): a key it does not read is refused, never ignored."""

    load: Callable[[Any], Loaded]
    path: Literal["required", "optional", "refused"]
    keys: frozenset[str] = frozenset()


def _fashion_mnist(cfg: Any) -> Loaded:
    train, test = load_fashion_mnist(cfg.path)
    return Loaded(train, test, "fashion_mnist", FASHION_MNIST_CLASSES)


def _digits(cfg: Any) -> Loaded:
    return Loaded(load_digits_images(), None, "digits")


def _arrays(cfg: Any) -> Loaded:
    train = load_arrays(cfg.path, cfg.labels, lazy=cfg.on_disk)
    test = None if cfg.test_path is None else load_arrays(cfg.test_path, cfg.test_labels, lazy=cfg.on_disk)
    return Loaded(train, test, str(cfg.path))


def _image_folder(cfg: Any) -> Loaded:
    train, classes = load_image_folder(cfg.path, cfg.image_size)
    test = None if cfg.test_path is None else load_image_folder(cfg.test_path, cfg.image_size)[0]
    return Loaded(train, test, str(cfg.path), tuple(classes))


#: The classification datasets, by the name ``data.dataset`` gives (the config's schema lists them in
#: this order). To add one: a loader returning :class:`Loaded`, and an entry here.
DATASETS: dict[str, DatasetSource] = {
    "fashion_mnist": DatasetSource(_fashion_mnist, "optional"),  # its own test set: no test_fraction
    "digits": DatasetSource(_digits, "refused", frozenset({"test_fraction"})),
    "arrays": DatasetSource(
        _arrays, "required", frozenset({"labels", "test_path", "test_labels", "test_fraction", "on_disk"})
    ),
    "image_folder": DatasetSource(_image_folder, "required", frozenset({"test_path", "test_fraction", "image_size"})),
}


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into (rest, held) with ``fraction`` of every class held out (at least one per class
    when a class has two or more rows); both sorted.

    >>> rest, held = stratified_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)
    >>> len(held), sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[held].tolist())
    (2, [0, 1])
    """
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        take = round(fraction * len(rows))
        if len(rows) >= 2:
            take = min(max(take, 1), len(rows) - 1)
        else:
            take = 0
        held.append(rng.permutation(rows)[:take])
    held_rows = np.sort(np.concatenate(held)) if held else np.empty(0, np.int64)
    mask = np.ones(len(y), bool)
    mask[held_rows] = False
    return np.flatnonzero(mask), held_rows


def subsample(data: LabeledImages, limit: int | None, seed: int) -> LabeledImages:
    """A seeded random sample of ``limit`` rows (in their original order); all rows when limit is None."""
    if limit is None or limit >= len(data):
        return data
    rows = np.sort(np.random.default_rng(seed).permutation(len(data))[:limit])
    return data.take(rows)
