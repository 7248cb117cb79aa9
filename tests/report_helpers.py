"""Reporting a run directory on a 'machine' without its data: a process that cannot import PyTorch,
the trainer or scikit-learn."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

BLOCKER = """
import sys, importlib.abc

class Blocked(importlib.abc.MetaPathFinder):
    # this 'machine' has neither the dataset nor PyTorch: loading either fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "sklearn") or name.startswith("subsetsearch.train"):
            raise ImportError(f"{name} is not on this machine")
        return None

sys.meta_path.insert(0, Blocked())
from subsetsearch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def report_elsewhere(run_dir: Path, copy: Path) -> str:
    """``subsetsearch report`` on a copy of ``run_dir`` in a process that cannot import PyTorch, the
    trainer or scikit-learn (where the digits come from): the report.html text."""
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report"))
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER, "report", str(copy)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return (copy / "report" / "report.html").read_text()
