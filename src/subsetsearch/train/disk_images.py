"""Images that stay on disk and are read a batch of rows at a time: pools larger than memory.

:class:`LazyImages` reads rows of an array on disk (a memory-mapped ``.npy``, a Zarr array) in any
of the layouts :func:`image_layout` tells apart. :class:`ImageFiles` reads image files (an image
folder's, a COCO set's); nothing is decoded up front: :func:`scan` reads each file's header
(format, mode, size) so that a missing, unreadable or mismatched image stops a run before it
writes anything, and :class:`ImageFiles` decodes the rows it is asked for, a batch at a time.
Its ``stream`` decodes the batches ahead in worker processes (a standard
``torch.utils.data.DataLoader`` with a batch sampler; the batches come back in order), and a cache
of bounded size keeps decoded images for the next epoch. Decoding is deterministic, so a run reads
the same bits from files as from arrays, whatever the number of workers or the cache's size, and
resumes bit for bit.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subsetsearch.errors import InputError
from subsetsearch.train.images import read_picture

#: Files a worker decodes in one piece: a training batch is one piece, an inference batch several
#: (spread over the workers).
PIECE = 128
#: Pieces each worker decodes ahead of the one being used.
PREFETCH = 4


#: The layouts an ``arrays`` dataset's images may have, by the rank and shape that tell them apart.
LAYOUTS = "[N, H, W] (one channel), [N, H, W, C] (channels last) or [N, C, H, W] (channels first), C from 1 to 4"


def image_layout(shape: tuple[int, ...], what: str) -> tuple[str, tuple[int, int, int]]:
    """The layout of images of ``shape`` (``nhw``, ``nhwc`` or ``nchw``) and one image's (C, H, W).

    Channels are the axis of at most 4 next to images of at least 8 pixels a side, so no shape
    reads two ways: ``[N, 28, 28, 3]`` is channels-last, ``[N, 3, 28, 28]`` channels-first.

    >>> image_layout((5, 28, 28, 3), "x"), image_layout((5, 1, 28, 28), "x"), image_layout((5, 28, 28), "x")
    (('nhwc', (3, 28, 28)), ('nchw', (1, 28, 28)), ('nhw', (1, 28, 28)))
    """
    if len(shape) == 3:
        layout, (c, h, w) = "nhw", (1, *shape[1:])
    elif len(shape) == 4 and shape[-1] <= 4 and shape[1] > 4:
        layout, (h, w, c) = "nhwc", shape[1:]
    elif len(shape) == 4 and 1 <= shape[1] <= 4:
        layout, (c, h, w) = "nchw", shape[1:]
    else:
        raise InputError(f"{what} has shape {shape}; give images as {LAYOUTS}")
    if min(h, w) < 8:
        raise InputError(f"{what} images are {h}×{w} (shape {shape}); the models need at least 8×8 pixels")
    return layout, (int(c), int(h), int(w))


def pixel_dtype(dtype: np.dtype, what: str) -> np.dtype:
    """The dtype images of ``dtype`` are trained from: uint8 stays uint8; uint16 and floating point
    become float32 with their values (the trainer normalises each channel by the pool's mean and
    standard deviation, so no scale is assumed); anything else is refused."""
    if dtype == np.uint8:
        return np.dtype(np.uint8)
    if dtype == np.uint16 or np.issubdtype(dtype, np.floating):
        return np.dtype(np.float32)
    raise InputError(
        f"{what} has dtype {dtype}; give uint8, uint16 or floating-point pixels (numpy: x.astype(np.float32))"
    )


class DiskImages:
    """Images ``[N, channels, H, W]`` that stay on disk and are read a block of rows at a time: the
    common face of :class:`LazyImages` (arrays) and
    :class:`ImageFiles` (image files).

    ``take(rows)`` selects rows without reading them; ``x[rows]`` (an array of rows or a slice)
    reads them; ``stream(blocks)`` reads one block after another (a subclass may read ahead).
    """

    image_shape: tuple[int, int, int]
    dtype: np.dtype

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.image_shape)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        raise NotImplementedError

    def take(self, rows: np.ndarray) -> DiskImages:
        raise NotImplementedError

    def __getitem__(self, key: int | slice | np.ndarray | tuple) -> np.ndarray:
        """Rows of images as numpy indexes them: an array of rows or a slice ([n, C, H, W]), one row
        ([C, H, W]), or a tuple of rows and what to take of each image."""
        if isinstance(key, tuple):  # rows, then numpy's indexing of what they read
            rows, rest = key[0], key[1:]
            return self[rows][rest] if isinstance(rows, int | np.integer) else self[rows][(slice(None), *rest)]
        if isinstance(key, int | np.integer):  # one image, [C, H, W]
            return self._read(np.array([key]))[0]
        return self._read(key)

    def _read(self, key: slice | np.ndarray) -> np.ndarray:
        """The images of rows ``key`` (an array of rows or a slice), [n, C, H, W]."""
        raise NotImplementedError

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The images of each block of rows in turn."""
        for rows in blocks:
            yield self[rows]


class LazyImages(DiskImages):
    """Images left on disk (a memory-mapped ``.npy`` or a Zarr array) and read a block of rows at a
    time, as [n, channels, H, W]: pools larger than memory.

    Indexing reads the rows asked for (uint8 stays uint8, uint16 and floats become float32; NaN or
    inf is an InputError).
    """

    def __init__(self, source: object, what: str, rows: np.ndarray | None = None) -> None:
        self.source, self.what, self.rows = source, what, rows
        self.layout, self.image_shape = image_layout(tuple(source.shape), what)
        self.dtype = pixel_dtype(np.dtype(source.dtype), what)

    def __len__(self) -> int:
        return int(self.source.shape[0]) if self.rows is None else len(self.rows)

    def take(self, rows: np.ndarray) -> LazyImages:
        rows = np.asarray(rows, dtype=np.int64)
        return LazyImages(self.source, self.what, rows if self.rows is None else self.rows[rows])

    def _read(self, key: slice | np.ndarray) -> np.ndarray:
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


def default_workers() -> int:
    """Worker processes that decode images: one core of every two, leaving the rest to training
    (at most 4; none on a single core, where the trainer decodes them itself)."""
    return min(4, (os.cpu_count() or 1) // 2)


@dataclass(frozen=True)
class Decoding:
    """How a file becomes an image ``[C, H, W]`` of ``dtype``: as RGB or as it is (greyscale stays one
    channel), resized to ``size`` (width, height) where given, or letterboxed into a square of
    ``letterbox`` pixels (scaled by ``letterbox / max(width, height)``, bilinear, at the top-left
    corner of a black square: COCO sets)."""

    rgb: bool
    dtype: np.dtype
    size: tuple[int, int] | None = None
    letterbox: int | None = None


def decode(path: str | os.PathLike, how: Decoding) -> np.ndarray:
    """The image at ``path`` as ``how`` says; InputError naming it when it cannot be read."""
    picture = read_picture(path, f"image '{path}'")
    if how.letterbox is not None:
        side = how.letterbox
        width, height = picture.size
        scale = side / max(width, height)
        resized = (max(1, round(width * scale)), max(1, round(height * scale)))
        out = np.zeros((3, side, side), dtype=how.dtype)
        out[:, : resized[1], : resized[0]] = picture.array(rgb=True, size=resized).transpose(2, 0, 1)
        return out
    array = picture.array(rgb=how.rgb, size=how.size)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array, dtype=how.dtype)


@dataclass(frozen=True)
class Header:
    """What an image file's header says: its depth (``8-bit``, ``16-bit``, ...), whether it has one
    channel, and its (width, height)."""

    depth: str
    grey: bool
    size: tuple[int, int]


def scan(path: Path, what: str) -> Header:
    """The header of the image at ``path`` (nothing decoded); InputError naming it (``what``) when it
    is not an image Pillow reads."""
    from PIL import Image, UnidentifiedImageError

    from subsetsearch.train.images import depth_of

    try:
        with Image.open(path) as opened:
            mode, size = opened.mode, opened.size
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"{what} cannot be read as an image ({error}); remove or replace it") from None
    depth, grey = depth_of(mode)
    return Header(depth, grey, size)


def _scan_chunk(chunk: list[tuple[str, str]]) -> list[Header | str]:
    """The headers of (path, what) pairs; a file that is not an image gives its one-line message."""
    out: list[Header | str] = []
    for path, what in chunk:
        try:
            out.append(scan(Path(path), what))
        except InputError as error:
            out.append(str(error))
    return out


#: Files each scanning process reads at a time.
SCAN_CHUNK = 2048


def scan_all(files: list[tuple[str, str]], workers: int) -> list[Header]:
    """The headers of (path, what) pairs, in order, read by ``workers`` processes when there are many;
    InputError for the first file (in order) that is not an image."""
    chunks = [files[i : i + SCAN_CHUNK] for i in range(0, len(files), SCAN_CHUNK)]
    if workers < 2 or len(chunks) < 2:
        results = [_scan_chunk(chunk) for chunk in chunks]
    else:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers, initializer=die_with_parent) as pool:
            results = pool.map(_scan_chunk, chunks)
    headers = [header for result in results for header in result]
    for header in headers:
        if isinstance(header, str):
            raise InputError(header)
    return headers


class ImageCache:
    """Decoded images by their file's path (one cache may serve several sets of files: a pool's and
    its test set's), the least recently used dropped first once they hold more than ``max_bytes``
    (0: nothing kept)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, key: str) -> np.ndarray | None:
        image = self._images.get(key)
        if image is not None:
            self._images.move_to_end(key)
        return image

    def put(self, key: str, image: np.ndarray) -> None:
        if image.nbytes > self.max_bytes or key in self._images:
            return
        self._images[key] = image
        self.bytes += image.nbytes
        while self.bytes > self.max_bytes:
            _, dropped = self._images.popitem(last=False)
            self.bytes -= dropped.nbytes

    def __len__(self) -> int:
        return len(self._images)

    def __contains__(self, key: str) -> bool:
        return key in self._images


class _Failed:
    """A decoding error that happened in a worker, carried back as a value (one line, not a traceback)."""

    def __init__(self, message: str) -> None:
        self.message = message


class _Decoder:
    """The DataLoader's dataset: file ``i`` decoded (or the error it raised, as :class:`_Failed`)."""

    def __init__(self, paths: np.ndarray, how: Decoding) -> None:
        self.paths, self.how = paths, how

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray | _Failed:
        try:
            return decode(self.paths[i], self.how)
        except InputError as error:
            return _Failed(str(error))


def _as_list(items: list) -> list:
    """The DataLoader's collate function: the decoded images of a piece, as they are."""
    return items


def _start_worker(_: int) -> None:
    """A decoding worker leaves the cores to training: torch in it uses one thread. It dies with the
    process that started it (:func:`die_with_parent`: PyTorch's own check misses a parent killed
    while the worker starts, and the worker then waits forever)."""
    import torch

    torch.set_num_threads(1)
    die_with_parent()


def die_with_parent() -> None:
    """Make this worker process die with the process that started it (Linux: ``PR_SET_PDEATHSIG``),
    and exit now if that process is gone already; elsewhere nothing. A job killed with SIGKILL then
    leaves no worker behind waiting for work that will never come."""
    import multiprocessing
    import sys

    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: killed with the parent
        parent = multiprocessing.parent_process()
        if parent is not None and os.getppid() != parent.pid:  # the parent died before the line above
            os._exit(0)


class ImageFiles(DiskImages):
    """Images in files, ``[N, C, H, W]``: rows ``rows`` of ``paths`` (all of them by default), each
    decoded as ``how`` says into ``image_shape``.

    Parameters
    ----------
    paths : ndarray of str
        Every file, by absolute path.
    how : Decoding
        How each file is decoded.
    image_shape : tuple of int
        (C, H, W) of every decoded image (checked as each is decoded).
    cache : ImageCache
        Decoded images by file; shared by every ``take`` of these files.
    workers : int
        Processes that decode ahead in ``stream`` (0: decoded in this process as they are needed).
    rows : ndarray of int, optional
        The files these rows are.
    """

    def __init__(
        self,
        paths: np.ndarray,
        how: Decoding,
        image_shape: tuple[int, int, int],
        *,
        cache: ImageCache,
        workers: int,
        rows: np.ndarray | None = None,
    ) -> None:
        self.paths, self.how, self.image_shape = paths, how, tuple(image_shape)
        self.cache, self.workers = cache, workers
        self.rows = np.arange(len(paths), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        self.dtype = np.dtype(how.dtype)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, rows: np.ndarray) -> ImageFiles:
        return ImageFiles(
            self.paths, self.how, self.image_shape, cache=self.cache, workers=self.workers, rows=self.rows[rows]
        )

    def _files(self, key: slice | np.ndarray) -> np.ndarray:
        return self.rows[key] if isinstance(key, slice) else self.rows[np.asarray(key, dtype=np.int64)]

    def _read(self, key: slice | np.ndarray) -> np.ndarray:
        files = self._files(key)
        hits = self._hits(files)
        for file in np.unique(files):
            if int(file) not in hits:
                hits[int(file)] = self._keep(int(file), self._checked(decode(self.paths[file], self.how), file))
        return self._assemble(files, hits)

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The images of each block of rows in turn, the blocks ahead decoded by ``workers`` processes
        (a DataLoader) while the caller uses the current one; cached images are not decoded again."""
        blocks = list(blocks)
        if self.workers == 0 or self._all_cached(blocks):  # nothing to decode ahead: no worker to start
            for rows in blocks:
                yield self[rows]
            return
        from torch.utils.data import DataLoader

        plan: list[tuple[int, list[int]]] = []  # per piece, in order: its block, the files it decodes
        ahead: list[list] = []  # per block: its files, their images so far, its pieces not yet back

        def pieces() -> Iterator[list[int]]:  # run by the DataLoader as it hands out work, ahead of use
            for rows in blocks:
                files = self._files(rows)
                hits = self._hits(files)  # held from here on: the cache may drop them before the block is used
                missing = [int(f) for f in np.unique(files) if int(f) not in hits]
                chunks = [missing[i : i + PIECE] for i in range(0, len(missing), PIECE)] or [[]]
                ahead.append([files, hits, len(chunks)])
                for chunk in chunks:
                    plan.append((len(ahead) - 1, chunk))
                    yield chunk

        loader = DataLoader(
            _Decoder(self.paths, self.how),
            batch_sampler=pieces(),
            num_workers=self.workers,
            collate_fn=_as_list,
            prefetch_factor=PREFETCH,
            worker_init_fn=_start_worker,
        )
        for k, images in enumerate(loader):  # pieces come back in the order they were handed out
            block, files = plan[k]
            entry = ahead[block]
            for file, image in zip(files, images, strict=True):
                if isinstance(image, _Failed):
                    raise InputError(image.message)
                entry[1][file] = self._keep(file, self._checked(image, file))
            entry[2] -= 1
            if entry[2] == 0:  # the block's last piece: blocks finish in order too
                yield self._assemble(entry[0], entry[1])
                ahead[block] = [None, None, 0]  # used: let its images go

    def check_values(self) -> None:
        """Decode every image once (into the cache, as far as it holds them): InputError naming the
        first that holds NaN or infinite pixels. Only 32-bit float images can; the loaders call this
        for those, so such an image stops a run before it writes anything."""
        blocks = [np.arange(start, min(len(self), start + PIECE)) for start in range(0, len(self), PIECE)]
        for _ in self.stream(blocks):
            pass

    def _all_cached(self, blocks: list[np.ndarray]) -> bool:
        files = np.unique(np.concatenate([self._files(rows) for rows in blocks])) if blocks else []
        return all(str(self.paths[file]) in self.cache for file in files)

    def _hits(self, files: np.ndarray) -> dict[int, np.ndarray]:
        hits = {}
        for file in np.unique(files):
            image = self.cache.get(str(self.paths[file]))
            if image is not None:
                hits[int(file)] = image
        return hits

    def _keep(self, file: int, image: np.ndarray) -> np.ndarray:
        self.cache.put(str(self.paths[file]), image)
        return image

    def _checked(self, image: np.ndarray, file: int) -> np.ndarray:
        if image.shape != self.image_shape:
            raise InputError(
                f"image '{self.paths[file]}' decodes to {image.shape} but the set's images are {self.image_shape}; "
                "it changed since the run started: restore it"
            )
        if image.dtype != np.uint8 and not np.isfinite(image).all():
            raise InputError(f"image '{self.paths[file]}' holds NaN or infinite pixels; clean or drop it")
        return image

    def _assemble(self, files: np.ndarray, images: dict[int, np.ndarray]) -> np.ndarray:
        out = np.empty((len(files), *self.image_shape), dtype=self.dtype)
        for i, file in enumerate(files):
            out[i] = images[int(file)]
        return out
