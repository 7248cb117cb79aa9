"""A directory a scoring state claims: recognisably ours before anything is written into it.

The first file written into a state directory is its marker, ``subsetsearch-state.json`` (the
format and the kind of state); every later use checks it, so a directory of someone else's is
refused with one line instead of being written into. While a job works in the directory it holds
a lock (``subsetsearch-state.lock``, an advisory ``flock`` that the operating system releases
when the process ends, however it ends), so a second job on the same directory is refused with a
line naming the process and host that hold it.
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

__all__ = ["LOCK", "MARKER", "StateDirectory"]

MARKER = "subsetsearch-state.json"
LOCK = "subsetsearch-state.lock"
FORMAT = "subsetsearch-state/1"


class StateDirectory:
    """Claim ``path`` for a state of ``kind`` (a context manager: the lock is held inside).

    Parameters
    ----------
    path : path
        The directory (made if absent).
    kind : str
        What the state is (``statistics``, ``box-lists``): a directory claimed for one kind is refused
        for another.
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
        self._lock = None

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
            raise InputError(f"{self.option} '{path}' is a file; give a directory for the state")
        marker = path / MARKER
        if marker.is_file():
            self._check_marker(marker)
        elif path.is_dir() and any(path.iterdir()):
            if self.adopt is None or not self.adopt(path):
                found = sorted(entry.name for entry in path.iterdir())
                raise InputError(
                    f"{self.option} '{path}' exists and is not a subsetsearch state directory (it holds "
                    f"{', '.join(found[:3])}{', ...' if len(found) > 3 else ''}); give a new or empty directory"
                )
            self._write_marker(marker)
        else:
            self.made = not path.exists()
            path.mkdir(parents=True, exist_ok=True)
            self._write_marker(marker)
        self._take_lock()

    def _check_marker(self, marker: Path) -> None:
        try:
            found = json.loads(marker.read_text())
            kind = found["kind"] if found.get("format") == FORMAT else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            kind = None
        if kind is None:
            raise InputError(
                f"{self.option} '{self.path}': its marker {MARKER} is unreadable; remove the directory to start over"
            )
        if kind != self.kind:
            raise InputError(
                f"{self.option} '{self.path}' holds a state of {kind}, not of {self.kind}; give another {self.option}"
            )

    def _write_marker(self, marker: Path) -> None:
        with atomic_path(marker) as tmp:
            tmp.write_text(json.dumps({"format": FORMAT, "kind": self.kind}) + "\n")

    def _take_lock(self) -> None:
        if fcntl is None:
            return
        handle = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise InputError(
                f"{self.option} '{self.path}' is in use by {holder}; wait for that job to end, or give another "
                f"{self.option}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        """Release the lock (the marker stays: the directory remains ours)."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
