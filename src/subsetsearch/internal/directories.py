"""Directories we write into, recognisable as ours before anything is written into them.

The first file written into a run directory, a study directory or a state directory is its
marker, ``subsetsearch.json`` (the format and the kind of directory); every later use checks it, so
a directory of someone else's, or of another kind, is refused with one line instead of being
written into. While a job works in the directory it holds a lock (``subsetsearch.lock``, an
advisory ``flock`` that the operating system releases when the process ends, however it ends), so
a second job on the same directory is refused with a line naming the process and host that hold it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from subsetsearch.errors import InputError
from subsetsearch.internal.atomic import atomic_path

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks
    fcntl = None

__all__ = ["LOCK", "MARKER", "ClaimedDirectory", "DirectoryLock", "marker_kind", "write_marker"]

MARKER = "subsetsearch.json"
LOCK = "subsetsearch.lock"
FORMAT = "subsetsearch-directory/1"


def marker_kind(directory: str | os.PathLike, option: str = "the directory") -> str | None:
    """The kind of directory the marker names (``run``, ``study``, ``statistics``, ``box-lists``), None
    when there is no marker; InputError naming ``option`` when the marker is unreadable."""
    marker = Path(directory) / MARKER
    if not marker.is_file():
        return None
    try:
        found = json.loads(marker.read_text())
        kind = found["kind"] if found.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        kind = None
    if not isinstance(kind, str):
        raise InputError(
            f"{option} '{directory}': its marker {MARKER} is unreadable; remove the directory to start over"
        )
    return kind


def write_marker(directory: str | os.PathLike, kind: str) -> None:
    """Mark ``directory`` (made if absent) as ours, of ``kind``."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(directory) / MARKER) as tmp:
        tmp.write_text(json.dumps({"format": FORMAT, "kind": kind}) + "\n")


#: File descriptors of the directory locks this process holds. A forked child (a DataLoader
#: worker, a pool worker) points its copies at /dev/null at once, so a child that outlives a killed
#: job never keeps that job's directory locked (``flock`` holds while any copy stays open).
_HELD_LOCKS: set[int] = set()


def _release_in_child() -> None:
    if not _HELD_LOCKS:
        return
    null = os.open(os.devnull, os.O_RDWR)
    for fd in _HELD_LOCKS:
        os.dup2(null, fd)
    os.close(null)
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_in_child)


class DirectoryLock:
    """Hold the lock of one of our directories while a job works in it (a context manager).

    Raises
    ------
    InputError
        On entering, when another process holds it: the line names that process and its host.
    """

    def __init__(self, directory: str | os.PathLike, *, option: str = "the directory") -> None:
        self.directory, self.option = Path(directory), option
        self._handle = None

    def __enter__(self) -> DirectoryLock:
        if fcntl is None:
            return self
        handle = open(self.directory / LOCK, "a+")  # held open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise InputError(
                f"{self.option} '{self.directory}' is in use by {holder}; wait for that job to end, or give another "
                f"{self.option}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle
        _HELD_LOCKS.add(handle.fileno())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            _HELD_LOCKS.discard(self._handle.fileno())
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


class ClaimedDirectory:
    """Claim ``path`` for a directory of ``kind`` (a context manager: the lock is held inside).

    Parameters
    ----------
    path : path
        The directory (made if absent).
    kind : str
        What the directory holds (``statistics``, ``box-lists``, ``run``, ``study``): a directory
        claimed for one kind is refused for another.
    option : str, default "--state"
        How messages name the directory's option.
    adopt : callable (Path) -> bool, optional
        True for a directory of this kind written before the marker existed (subsetsearch 0.1.0 and
        0.2.0): it is claimed, and the marker written, instead of being refused.
    remove_on_input_error : bool, default False
        Remove the directory again when this claim made it and the work inside ends in an
        :class:`~subsetsearch.errors.InputError` (a bad input leaves nothing behind).

    Raises
    ------
    InputError
        On entering: ``path`` is a file; a directory that is neither empty nor marked as ours
        (nor adopted); marked for another kind; or locked by another process.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        kind: str,
        option: str = "--state",
        adopt: Callable[[Path], bool] | None = None,
        remove_on_input_error: bool = False,
    ) -> None:
        self.path, self.kind, self.option = Path(path), kind, option
        self.adopt = adopt
        self.remove_on_input_error = remove_on_input_error
        self.made = False
        self._lock: DirectoryLock | None = None

    def __enter__(self) -> Path:
        self.claim()
        return self.path

    def __exit__(self, kind: type | None, *exc_info: object) -> None:
        self.release()
        if self.made and self.remove_on_input_error and kind is not None and issubclass(kind, InputError):
            shutil.rmtree(self.path, ignore_errors=True)

    def claim(self) -> None:
        """Check the directory is ours (or new), write the marker first, and take the lock."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise InputError(f"{self.option} '{path}' is a file; give a directory")
        kind = marker_kind(path, self.option)
        if kind is not None and kind != self.kind:
            held, wanted = _kind_words(kind), _kind_words(self.kind)
            raise InputError(f"{self.option} '{path}' holds {held}, not {wanted}; give another {self.option}")
        if kind is None and path.is_dir() and any(path.iterdir()):
            if self.adopt is None or not self.adopt(path):
                raise InputError(refusal(path, self.option))
        if kind is None:
            self.made = not path.exists()
            write_marker(path, self.kind)
        self._lock = DirectoryLock(path, option=self.option).__enter__()

    def release(self) -> None:
        """Release the lock (the marker stays: the directory remains ours)."""
        if self._lock is not None:
            self._lock.__exit__()
            self._lock = None


def refusal(path: Path, option: str) -> str:
    """The one line that refuses a directory that is neither empty nor ours."""
    found = sorted(entry.name for entry in path.iterdir())
    shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
    return (
        f"{option} '{path}' exists and is not a subsetsearch directory (it holds {shown}); "
        "give a new or empty directory"
    )


def _kind_words(kind: str) -> str:
    return {
        "run": "a run",
        "study": "a study",
        "statistics": "a state of statistics",
        "box-lists": "a state of box lists",
    }.get(kind, f"a {kind} directory")
