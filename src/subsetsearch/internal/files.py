"""Reading users' arrays and writing result tables, with one-line errors."""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from subsetsearch.errors import InputError
from subsetsearch.internal.atomic import atomic_path

TABLE_SUFFIXES = (".csv", ".parquet")
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
    (3, 0): np.lib.format.read_array_header_2_0,  # version 3 differs only in the header's text encoding
}


def npy_header(path: str | os.PathLike, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file, read from its header; InputError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} '{path}' not found")
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            shape, _, dtype = _HEADER_READERS[version](handle)
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
    """True for a Zarr store (a directory named *.zarr, or holding Zarr's metadata): an array or a group."""
    path = Path(path)
    return path.suffix.lower() == ".zarr" or (
        path.is_dir() and any((path / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup"))
    )


def open_zarr(path: str | os.PathLike, what: str):
    """A checked Zarr node (array or group), read lazily; InputError if missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} '{path}' not found")
    try:
        import zarr
    except ImportError:
        raise InputError(f"{what} '{path}' is a Zarr store; install zarr (pip install 'subsetsearch[zarr]')") from None
    try:
        return zarr.open(str(path), mode="r")
    except Exception as error:
        raise InputError(f"{what} '{path}' is not a readable Zarr store ({error})") from None


def open_array(path: str | os.PathLike, what: str) -> np.ndarray:
    """The one checked opener of users' arrays, read lazily.

    A ``.npy`` is memory-mapped read-only; a ``.npz`` holding one array is memory-mapped inside the
    archive when stored uncompressed (``numpy.savez``) and read whole when compressed; a Zarr array
    is read in chunks when sliced. InputError if missing, unreadable, or not one numeric array.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return _open_npz(path, what)
    if not is_zarr(path):
        return load_npy(path, what, mmap=True)
    array = open_zarr(path, what)
    if not hasattr(array, "dtype"):
        raise InputError(f"{what} '{path}' is a Zarr group; give one of its arrays, or the group as members")
    return checked_zarr_array(array, f"{what} '{path}'")


def checked_zarr_array(array, label: str):
    """``array`` (a Zarr array) if it holds numbers; InputError otherwise."""
    if array.dtype.hasobject or array.dtype.kind not in "biuf":
        raise InputError(f"{label} holds {array.dtype}; save a numeric array")
    return array


def _open_npz(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{what} '{path}' not found")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = [info for info in archive.infolist() if info.filename.endswith(".npy")]
            if len(entries) != 1:
                names = ", ".join(info.filename[:-4] for info in entries) or "none"
                raise InputError(f"{what} '{path}' holds arrays {names}; save one array per .npz (np.savez(f, probs))")
            entry = entries[0]
            if entry.compress_type != zipfile.ZIP_STORED:  # numpy.savez_compressed: read it whole
                with archive.open(entry) as handle:
                    array = np.lib.format.read_array(handle, allow_pickle=False)
                return array
        with open(path, "rb") as handle:  # stored: the .npy lies whole inside the archive; map it there
            handle.seek(entry.header_offset)
            local = handle.read(30)
            name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
            entry_start = entry.header_offset + 30 + name_length + extra_length
            handle.seek(entry_start)
            version = np.lib.format.read_magic(handle)
            shape, fortran_order, dtype = _HEADER_READERS[version](handle)
            offset = handle.tell()
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"{what} '{path}' is not a readable .npz file ({error})") from None
    if dtype.hasobject:
        raise InputError(f"{what} '{path}' holds Python objects; save a numeric array")
    end = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if end > min(entry_start + entry.file_size, path.stat().st_size):
        raise InputError(f"{what} '{path}' is truncated")
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.zeros(shape, dtype=dtype)
    order = "F" if fortran_order else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


def array_header(path: str | os.PathLike, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy``/``.npz`` file or Zarr array (of a ``.npy``, from its header only)."""
    if not is_zarr(path) and Path(path).suffix.lower() != ".npz":
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


def write_tables(
    tables: Sequence[tuple[Path, dict[str, np.ndarray]]], *, metadata: dict[str, str] | None = None
) -> None:
    """Write each (path, columns) as CSV or Parquet by suffix; all appear or none. ``metadata`` goes
    into every Parquet file's key-value metadata (CSV has no place for it)."""
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    with contextlib.ExitStack() as stack:  # an error anywhere removes every temporary
        for path, columns in tables:
            tmp = stack.enter_context(atomic_path(path))
            table = pa.table(columns)
            if metadata:
                table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
            if path.suffix.lower() == ".csv":
                pyarrow.csv.write_csv(table, tmp)
            else:
                pyarrow.parquet.write_table(table, tmp)


def read_table(path: str | os.PathLike, option: str) -> dict[str, np.ndarray]:
    """The columns of a CSV or Parquet table (by suffix), as arrays; InputError naming ``option`` when
    it is missing, of another kind, unreadable or holds an empty cell."""
    import pyarrow.csv
    import pyarrow.parquet

    path = check_table_path(path, option)
    if not path.is_file():
        raise InputError(f"{option} '{path}' not found")
    try:
        table = pyarrow.csv.read_csv(path) if path.suffix.lower() == ".csv" else pyarrow.parquet.read_table(path)
    except Exception as error:  # pyarrow's many errors of a file that is not a table: one line for all
        raise InputError(f"{option} '{path}' is not a readable table ({str(error).splitlines()[0]})") from None
    empty = [name for name, column in zip(table.column_names, table.columns, strict=True) if column.null_count]
    if empty:
        raise InputError(f"{option} '{path}' column '{empty[0]}' has empty cells; give a value in every row")
    return {name: column.to_numpy() for name, column in zip(table.column_names, table.columns, strict=True)}
