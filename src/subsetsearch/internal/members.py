"""What other pipelines write, as ensemble members: one per ``.npy``/``.npz``/Zarr array, every member
file of a directory, every array of a Zarr group, every list column of a Parquet file.

Each member is a :class:`MemberSource`, opened through :func:`~subsetsearch.internal.files.open_array`
(arrays) or :class:`ParquetColumn` (columns), both read a block of rows at a time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from subsetsearch.errors import InputError
from subsetsearch.internal.files import (
    array_header,
    checked_zarr_array,
    is_zarr,
    load_npy,
    open_array,
    open_zarr,
)

#: Files of a directory taken as members (one per checkpoint), in natural name order (``natural_key``).
MEMBER_SUFFIXES = (".npy", ".npz", ".parquet", ".zarr")
#: Values a Parquet column is decoded in at a time (4 MB of float32): a reader keeps about one batch.
PARQUET_BATCH_ELEMENTS = 1 << 20
#: Columns ``--labels x.parquet`` takes without ``--labels-column``, besides a file's only column.
LABEL_COLUMNS = ("label", "labels", "y", "target")


@dataclass(eq=False)
class MemberSource:
    """One ensemble member: a whole array file, or one array (``name``) of a Zarr group or column of a
    Parquet file."""

    path: Path
    name: str | None = None
    _reader: ParquetColumn | None = field(default=None, repr=False)
    #: The directory or Zarr group whose names ordered this member (None: given on its own).
    ordered_by: Path | None = None

    @property
    def label(self) -> str:
        """How messages name the member."""
        if self.name is None:
            return f"member file '{self.path}'"
        return f"member '{self.name}' of '{self.path}'"

    @property
    def key(self) -> str:
        """Identity of the member's content for resuming: path (and name), size and modification time."""
        stat = self.path.stat()
        where = str(self.path.resolve()) + ("" if self.name is None else f"#{self.name}")
        return f"{where}|{stat.st_size}|{stat.st_mtime_ns}"

    def open(self):
        """The member's values, sliceable by rows (``member[rows]`` gives an ndarray [n, C]).

        Files are opened anew at each call (a memory map dropped after use frees its pages); a Parquet
        column keeps one reader, which streams forward through the rows.
        """
        if self.path.suffix.lower() == ".parquet":
            if self._reader is None:
                self._reader = ParquetColumn(self.path, self.name)
            return self._reader
        if self.name is not None:
            return checked_zarr_array(open_zarr(self.path, "member file")[self.name], self.label)
        return open_array(self.path, "member file")

    def close(self) -> None:
        """Drop a Parquet column's reader and the rows it holds (a later ``open`` starts over)."""
        self._reader = None

    def header(self) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype, read from metadata (a ``.npy`` header, Zarr or Parquet metadata), not values."""
        if self.name is None and self.path.suffix.lower() != ".parquet":
            return array_header(self.path, "member file")
        member = ParquetColumn(self.path, self.name) if self.path.suffix.lower() == ".parquet" else self.open()
        return tuple(member.shape), np.dtype(member.dtype)


def member_sources(paths: Sequence[str | os.PathLike]) -> list[MemberSource]:
    """Every member the given paths hold, in order; InputError for a path that holds none, or a
    member given twice (say, a directory and a file in it)."""
    sources = _expand(paths)
    seen: set[tuple[Path, str | None]] = set()
    for source in sources:
        identity = (source.path.resolve(), source.name)
        if identity in seen:
            raise InputError(f"{source.label} is given twice; each member may be counted once")
        seen.add(identity)
    return sources


def _expand(paths: Sequence[str | os.PathLike]) -> list[MemberSource]:
    sources: list[MemberSource] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"member file '{path}' not found")
        if path.suffix.lower() == ".parquet":
            sources += [MemberSource(path, column) for column in _member_columns(path)]
        elif is_zarr(path):
            node = open_zarr(path, "member file")
            if hasattr(node, "dtype"):
                sources.append(MemberSource(path))
            else:
                names = sorted(node.array_keys(), key=natural_key)
                if not names:
                    raise InputError(f"Zarr group '{path}' holds no array; write one [N, C] array per member")
                sources += [MemberSource(path, name, ordered_by=path) for name in names]
        elif path.is_dir():
            inside = sorted(
                (entry for entry in path.iterdir() if entry.suffix.lower() in MEMBER_SUFFIXES),
                key=lambda entry: natural_key(entry.name),
            )
            if not inside:
                raise InputError(
                    f"directory '{path}' holds no member file ({', '.join(MEMBER_SUFFIXES)}); "
                    "write one [N, C] array per checkpoint there"
                )
            sources += [
                MemberSource(s.path, s.name, ordered_by=path if s.ordered_by is None else s.ordered_by)
                for s in _expand(inside)
            ]
        else:
            sources.append(MemberSource(path))
    return sources


def natural_key(name: str) -> tuple:
    """Sort key of natural order: the digit runs of ``name`` compare as numbers, so ``epoch_2``
    comes before ``epoch_10``.

    >>> sorted(["epoch_10.npy", "epoch_2.npy", "epoch_1.npy"], key=natural_key)
    ['epoch_1.npy', 'epoch_2.npy', 'epoch_10.npy']
    """
    return tuple((0, int(part), part) if part.isdigit() else (1, part, part) for part in re.split(r"(\d+)", name))


def order_problem(sources: Sequence[MemberSource]) -> str | None:
    """Why the order that names gave some of ``sources`` may not be the order they were trained in
    (a directory's files, a Zarr group's arrays), or None when it is clear: their names must be one
    pattern in which exactly one number changes (``epoch_1`` ... ``epoch_12``, ``run0_epoch_5`` ...).
    What the functions that follow the members' order (forgetting, dyn_unc) need."""
    groups: dict[Path, list[str]] = {}
    for source in sources:
        if source.ordered_by is not None:
            groups.setdefault(source.ordered_by, []).append(source.name or source.path.name)
    for where, names in groups.items():
        if len(names) < 2:
            continue
        stems = [Path(name).stem if source_suffix(name) else name for name in names]
        patterns = {re.sub(r"\d+", "#", stem) for stem in stems}
        numbers = [tuple(int(n) for n in re.findall(r"\d+", stem)) for stem in stems]
        varying = (
            {i for i in range(len(numbers[0])) if len({n[i] for n in numbers}) > 1} if len(patterns) == 1 else set()
        )
        if len(patterns) > 1 or len(varying) != 1 or len(set(numbers)) != len(numbers):
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            return (
                f"the members of '{where}' ({shown}) have names whose order is not clearly their training order "
                "(one pattern with one changing number, such as epoch_1 ... epoch_12); give the member files one "
                "by one, in training order"
            )
    return None


def source_suffix(name: str) -> bool:
    """True for a member file's name (it ends in one of ``MEMBER_SUFFIXES``)."""
    return Path(name).suffix.lower() in MEMBER_SUFFIXES


def _parquet_file(path: Path, what: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as error:
        raise InputError(f"{what} '{path}' is not a readable Parquet file ({error})") from None


def _list_value_type(column_type):
    """The element type of a list or fixed-size list column, else None."""
    import pyarrow as pa

    if pa.types.is_list(column_type) or pa.types.is_large_list(column_type) or pa.types.is_fixed_size_list(column_type):
        return column_type.value_type
    return None


def _member_columns(path: Path) -> list[str]:
    schema = _parquet_file(path, "member file").schema_arrow
    columns = [f.name for f in schema if _list_value_type(f.type) is not None]
    if not columns:
        raise InputError(
            f"member file '{path}' has no list column; write each member as a column of [C] "
            "probability lists (one row per sample)"
        )
    return columns


class ParquetColumn:
    """A Parquet column of per-sample lists of C floats, read as an [N, C] array a block of rows at a time.

    Rows are decoded in batches as they are asked for; reading forward (shard after shard) reads
    the file once, and a request behind the current position starts over from the first row.

    Parameters
    ----------
    path : path
        The Parquet file.
    column : str
        A list (or fixed-size list) column of float16/32/64, no nulls, every list of length C.
    """

    def __init__(self, path: str | os.PathLike, column: str) -> None:
        import pyarrow as pa

        self.path, self.column = Path(path), column
        self._file = _parquet_file(self.path, "member file")
        self.label = f"member '{column}' of '{self.path}'"
        field_type = self._file.schema_arrow.field(column).type
        value_type = _list_value_type(field_type)
        if value_type is None or not pa.types.is_floating(value_type):
            raise InputError(f"{self.label} must be lists of float16/32/64 probabilities, got {field_type}")
        self.dtype = np.dtype(value_type.to_pandas_dtype())
        num_rows = self._file.metadata.num_rows
        if pa.types.is_fixed_size_list(field_type):
            num_classes = field_type.list_size
        else:
            first = self._file.read_row_group(0, columns=[column]).column(0) if num_rows else None
            num_classes = len(first[0].values) if first is not None and first[0].is_valid else 0
        self.shape = (num_rows, num_classes)
        self.ndim = 2
        self._restart()

    def _restart(self) -> None:
        rows_per_batch = max(1, PARQUET_BATCH_ELEMENTS // max(1, self.shape[1]))
        self._batches = self._file.iter_batches(batch_size=rows_per_batch, columns=[self.column])
        self._start, self._buffer = 0, np.empty((0, self.shape[1]), dtype=self.dtype)

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("a Parquet column is read by a slice of consecutive rows")
        start, stop, _ = rows.indices(self.shape[0])
        stop = max(start, stop)
        if start < self._start:
            self._restart()
        while True:
            drop = min(max(0, start - self._start), len(self._buffer))  # rows before the request: done with
            self._buffer, self._start = self._buffer[drop:], self._start + drop
            if self._start + len(self._buffer) >= stop:
                return self._buffer[start - self._start : stop - self._start]
            batch = next(self._batches, None)
            if batch is None:
                raise InputError(f"{self.label} ended before row {stop}; the file is truncated")
            self._buffer = np.concatenate([self._buffer, self._values(batch.column(0))])

    def _values(self, lists) -> np.ndarray:
        import pyarrow.compute as pc

        if lists.null_count:
            raise InputError(f"{self.label} has a null row; every sample needs C probabilities")
        lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
        if lengths.size and (lengths != self.shape[1]).any():
            bad = int(np.flatnonzero(lengths != self.shape[1])[0])
            raise InputError(f"{self.label} has a row of {lengths[bad]} values, not {self.shape[1]}; all must match")
        values = lists.flatten()
        if values.null_count:
            raise InputError(f"{self.label} holds null values; every sample needs C probabilities")
        return values.to_numpy(zero_copy_only=False).astype(self.dtype, copy=False).reshape(-1, self.shape[1])


def read_column(
    path: str | os.PathLike, what: str, column: str | None = None, *, names: Sequence[str] = LABEL_COLUMNS
) -> np.ndarray:
    """A 1-D array from a ``.npy`` file, or from a Parquet file's ``column``.

    Without ``column`` a Parquet file's only column is taken, or the one with a name in ``names``
    (case-insensitive). InputError when missing, null, or not one column.
    """
    path = Path(path)
    if path.suffix.lower() != ".parquet":
        if column is not None:
            raise InputError(f"a column name was given for {what} '{path}', which is not a Parquet file")
        return load_npy(path, what)
    if not path.is_file():
        raise InputError(f"{what} '{path}' not found")
    parquet = _parquet_file(path, what)
    columns = parquet.schema_arrow.names
    if column is None:
        found = [name for name in columns if name.lower() in names]
        if len(columns) != 1 and len(found) != 1:
            raise InputError(
                f"{what} '{path}' has columns {', '.join(columns)}; keep one column, or name it "
                f"{' or '.join(names)} (labels: --labels-column NAME)"
            )
        column = columns[0] if len(columns) == 1 else found[0]
    if column not in columns:
        raise InputError(f"{what} '{path}' has no column '{column}' (it has {', '.join(columns)})")
    values = parquet.read(columns=[column]).column(0)
    if values.null_count:
        raise InputError(f"{what} '{path}' column '{column}' has null rows")
    try:
        return values.to_numpy()
    except Exception as error:
        raise InputError(f"{what} '{path}' column '{column}' is not a column of numbers ({error})") from None
