"""Reading users' arrays and writing result tables, with one-line errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from subsetsearch.internal.atomic import atomic_path

TABLE_SUFFIXES = (".csv", ".parquet")


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix, in one line."""


def npy_header(path: str | os.PathLike, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file, read from its header; InputError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} '{path}' not found")
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, _, dtype = read_header[version](handle)
            data_start = handle.tell()
    except Exception:
        raise InputError(f"{what} '{path}' is not a valid .npy file (save it with numpy.save)") from None
    if dtype.hasobject:
        raise InputError(f"{what} '{path}' holds Python objects; save a numeric array")
    expected = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if path.stat().st_size < expected:
        raise InputError(f"{what} '{path}' is truncated ({path.stat().st_size} of {expected} bytes)")
    return tuple(shape), dtype


def load_npy(path: str | os.PathLike, what: str, *, mmap: bool = False) -> np.ndarray:
    """Load a checked ``.npy`` file (memory-mapped read-only with ``mmap=True``)."""
    npy_header(path, what)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as error:
        raise InputError(f"{what} '{path}' could not be read ({error})") from None


def available_memory() -> int:
    """Bytes of memory available to new work (MemAvailable), or a very large number where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def is_zarr(path: str | os.PathLike) -> bool:
    """True for a Zarr array store (a directory named *.zarr, or holding Zarr's metadata)."""
    path = Path(path)
    return path.suffix.lower() == ".zarr" or (
        path.is_dir() and any((path / name).is_file() for name in ("zarr.json", ".zarray"))
    )


def open_array(path: str | os.PathLike, what: str) -> np.ndarray:
    """A checked array read lazily: a ``.npy`` memory-mapped read-only, or a Zarr array (read in
    chunks when sliced); InputError if missing, unreadable or holding objects."""
    path = Path(path)
    if not is_zarr(path):
        return load_npy(path, what, mmap=True)
    if not path.exists():
        raise InputError(f"{what} '{path}' not found")
    try:
        import zarr
    except ImportError:
        raise InputError(f"{what} '{path}' is a Zarr store; install zarr (pip install 'subsetsearch[zarr]')") from None
    try:
        array = zarr.open_array(str(path), mode="r")
    except Exception as error:
        raise InputError(f"{what} '{path}' is not a readable Zarr array ({error})") from None
    if array.dtype.hasobject or array.dtype.kind not in "biuf":
        raise InputError(f"{what} '{path}' holds {array.dtype}; save a numeric array")
    return array


def array_header(path: str | os.PathLike, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file or Zarr array, read from its metadata only."""
    if not is_zarr(path):
        return npy_header(path, what)
    array = open_array(path, what)
    return tuple(array.shape), np.dtype(array.dtype)


def check_table_path(path: str | os.PathLike, option: str) -> Path:
    """InputError unless ``path`` ends in .csv or .parquet and is not a directory."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"{option} '{path}' must end in .csv or .parquet")
    if path.is_dir():
        raise InputError(f"{option} '{path}' is a directory; give a file name")
    return path


def write_tables(tables: Sequence[tuple[Path, dict[str, np.ndarray]]]) -> None:
    """Write each (path, columns) as CSV or Parquet by suffix; all appear or none."""
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    with contextlib.ExitStack() as stack:  # an error anywhere removes every temporary
        for path, columns in tables:
            tmp = stack.enter_context(atomic_path(path))
            table = pa.table(columns)
            if path.suffix.lower() == ".csv":
                pyarrow.csv.write_csv(table, tmp)
            else:
                pyarrow.parquet.write_table(table, tmp)
