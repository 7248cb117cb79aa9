"""``subsetsearch score``'s work called from tests: member files and the command line's options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.csv
import pyarrow.parquet
from reference import random_members

import subsetsearch.pipeline.score as score_module
from subsetsearch.cli import main


def score_files(members, **options) -> score_module.ScoreResult:
    """``score_files`` of a ``ScoreRequest`` for ``members`` with the given options (its field names)."""
    return score_module.score_files(score_module.ScoreRequest(members=members, **options))


def member_pool(folder: Path, *, seed: int, shape: tuple[int, int, int], name: str):
    """``shape`` = (M, N, C) random members (distinct scores) saved as ``name.format(m)`` .npy files
    in ``folder``, and random labels as ``y.npy``: (folder, paths, members, labels)."""
    m, n, c = shape
    rng = np.random.default_rng(seed)
    members = random_members(rng, m, n, c, one_hot=False)  # distinct scores: order is defined
    paths = []
    for i, member in enumerate(members):
        paths.append(str(folder / name.format(i)))
        np.save(paths[-1], member)
    labels = rng.integers(0, c, size=n)
    np.save(folder / "y.npy", labels)
    return folder, paths, members, labels


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """The command line in this process: exit code, stdout, stderr."""
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_table(path) -> dict:
    """A .csv or .parquet table as {column: list}."""
    reader = pyarrow.csv.read_csv if str(path).endswith(".csv") else pyarrow.parquet.read_table
    return reader(path).to_pydict()
