"""Labeled image data for the trainer: built-in sets that need no network, and users' own.

Every loader returns images as ``[N, channels, H, W]`` arrays (uint8 when the source is
8-bit, float32 otherwise) and labels as int64 ``[N]``. Bad input raises ``InputError`` with
one line that names the file and the fix.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from subsetsearch.errors import InputError
from subsetsearch.train.disk_images import DiskImages, LazyImages, image_layout, pixel_dtype

if TYPE_CHECKING:
    from subsetsearch.train.disk_images import ImageCache

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


@dataclass(frozen=True)
class LabeledImages:
    """Images ``x`` [N, channels, H, W] (in memory, or :class:`DiskImages` on disk), integer labels
    ``y`` [N], and ``source``: the user's own identity of each image, one array [N] per column
    (``source_row``: its row in the given arrays file, Fashion-MNIST's training set or scikit-learn's
    digits; ``path``: its file, relative to the image folder), carried through every split."""

    x: np.ndarray | DiskImages
    y: np.ndarray
    source: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> LabeledImages:
        x = self.x.take(rows) if isinstance(self.x, DiskImages) else self.x[rows]
        return LabeledImages(x, self.y[rows], {name: column[rows] for name, column in self.source.items()})


def with_rows(images: LabeledImages) -> LabeledImages:
    """``images`` identified by their row in the file or set they came from (``source_row``)."""
    return LabeledImages(images.x, images.y, {"source_row": np.arange(len(images.y), dtype=np.int64)})


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
    """Images as [N, channels, H, W] (:func:`image_layout`) of :func:`pixel_dtype`; InputError naming
    the shape or dtype and the fix otherwise."""
    layout, _ = image_layout(x.shape, what)
    dtype = pixel_dtype(x.dtype, what)
    if len(x) == 0:
        raise InputError(f"{what} holds no image; give one with images")
    x = x[:, None] if layout == "nhw" else x.transpose(0, 3, 1, 2) if layout == "nhwc" else x
    x = np.ascontiguousarray(x, dtype=dtype)
    if dtype != np.uint8 and not np.isfinite(x).all():
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


#: Decoded images an image folder or COCO set keeps for the next epoch, by default (``data.cache_mb``).
DEFAULT_CACHE_MB = 512


def load_image_folder(
    path: str | os.PathLike,
    image_size: tuple[int, int] | None = None,
    *,
    cache: ImageCache | None = None,
    workers: int | None = None,
) -> tuple[LabeledImages, list[str]]:
    """An image folder: one subfolder per class (sorted names are classes 0, 1, ...), its images left
    in their files (:class:`~subsetsearch.train.disk_images.ImageFiles`: decoded a batch at a time,
    by ``workers`` processes, into ``cache``).

    Every file's header is read here (nothing decoded), so an unreadable image, mixed bit depths or
    mixed sizes stop a run before it writes anything. Images are read at their bit depth
    (:mod:`subsetsearch.train.images`: 8-bit as uint8, 16- and 32-bit greyscale as float32 values;
    one depth a folder), as greyscale when every one is greyscale, else RGB; they must share one
    size unless ``image_size`` (height, width) asks for a resize.
    """
    from subsetsearch.train.disk_images import Decoding, ImageCache, ImageFiles, default_workers, scan_all
    from subsetsearch.train.images import stack_depth

    given = Path(path)
    if not given.is_dir():
        raise InputError(f"image folder '{given}' not found")
    root = given.resolve()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise InputError(
            f"image folder '{given}' has {len(classes)} class subfolders; give one subfolder per class (at least 2)"
        )
    workers = default_workers() if workers is None else workers
    files: list[tuple[str, int]] = []  # (path relative to the folder, label)
    for label, name in enumerate(classes):
        prefix = len(str(root)) + 1
        found = sorted(  # by path components, as pathlib orders paths
            (
                str(p)[prefix:].replace(os.sep, "/")
                for p in (root / name).rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES
            ),
            key=lambda relative: relative.split("/"),
        )
        if not found:
            raise InputError(f"class folder '{given / name}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += [(relative, label) for relative in found]
    absolute = [f"{root}/{relative}" for relative, _ in files]
    headers = scan_all(
        [(p, f"image '{given / r}'") for p, (r, _) in zip(absolute, files, strict=True)], os.cpu_count() or 1
    )
    depths = [(given / relative, header.depth) for (relative, _), header in zip(files, headers, strict=True)]
    depth = stack_depth(depths, f"image folder '{given}'")
    if image_size is None:
        for (relative, _), header in zip(files, headers, strict=True):
            if header.size != headers[0].size:
                size, first = (header.size[1], header.size[0]), (headers[0].size[1], headers[0].size[0])
                raise InputError(
                    f"image '{given / relative}' is {size} but '{given / files[0][0]}' is {first} (height, width); "
                    "set data.image_size: [height, width] to resize them all"
                )
    height, width = image_size if image_size is not None else (headers[0].size[1], headers[0].size[0])
    if min(height, width) < 8:
        raise InputError(f"images in '{given}' are {height}×{width}; the models need at least 8×8 pixels")
    rgb = not all(header.grey for header in headers)
    how = Decoding(
        rgb=rgb,
        dtype=np.dtype(np.uint8 if depth == "8-bit" else np.float32),
        size=None if image_size is None else (image_size[1], image_size[0]),
    )
    x = ImageFiles(
        np.array(absolute),
        how,
        (3 if rgb else 1, height, width),
        cache=cache if cache is not None else ImageCache(DEFAULT_CACHE_MB << 20),
        workers=workers,
    )
    if depth == "32-bit float":  # the one depth whose pixels may be NaN: looked at before a run starts
        x.check_values()
    labels = np.array([label for _, label in files], dtype=np.int64)
    paths = np.array([relative for relative, _ in files], dtype=str)
    return LabeledImages(x, labels, {"path": paths}), classes


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
    return Loaded(with_rows(train), with_rows(test), "fashion_mnist", FASHION_MNIST_CLASSES)


def _digits(cfg: Any) -> Loaded:
    return Loaded(with_rows(load_digits_images()), None, "digits")


def _arrays(cfg: Any) -> Loaded:
    train = load_arrays(cfg.path, cfg.labels, lazy=cfg.on_disk)
    test = None if cfg.test_path is None else load_arrays(cfg.test_path, cfg.test_labels, lazy=cfg.on_disk)
    return Loaded(with_rows(train), None if test is None else with_rows(test), str(cfg.path))


def _image_folder(cfg: Any) -> Loaded:
    from subsetsearch.train.disk_images import ImageCache

    cache = ImageCache(cfg.cache_mb << 20)  # one cache for the pool's and the test set's images
    train, classes = load_image_folder(cfg.path, cfg.image_size, cache=cache, workers=cfg.workers)
    test = None
    if cfg.test_path is not None:
        test = load_image_folder(cfg.test_path, cfg.image_size, cache=cache, workers=cfg.workers)[0]
    return Loaded(train, test, str(cfg.path), tuple(classes))


#: The classification datasets, by the name ``data.dataset`` gives (the config's schema lists them in
#: this order). To add one: a loader returning :class:`Loaded`, and an entry here.
DATASETS: dict[str, DatasetSource] = {
    "fashion_mnist": DatasetSource(_fashion_mnist, "optional"),  # its own test set: no test_fraction
    "digits": DatasetSource(_digits, "refused", frozenset({"test_fraction"})),
    "arrays": DatasetSource(
        _arrays, "required", frozenset({"labels", "test_path", "test_labels", "test_fraction", "on_disk"})
    ),
    "image_folder": DatasetSource(
        _image_folder, "required", frozenset({"test_path", "test_fraction", "image_size", "cache_mb", "workers"})
    ),
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
