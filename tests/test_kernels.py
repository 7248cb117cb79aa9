"""The compiled logarithms against NumPy's own (accuracy claims in kernels.py), and the kernel's
results on another CPU's instruction set."""

import os

import numpy as np
import pytest
from numba import njit

from subsetsearch.internal.kernels import _log


@njit
def _log_each(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = _log(x[i])  # float32 -> _log_float32, float64 -> _log_float64
    return out


def test_float32_log_is_within_its_stated_error():
    x = np.concatenate([np.geomspace(1.2e-38, 1.0, 200_001), np.random.default_rng(0).random(100_000)])
    x = x.astype(np.float32)
    exact = np.log(x.astype(np.float64))
    error = np.abs(_log_each(x).astype(np.float64) - exact)
    assert (error <= 3e-7 * np.maximum(np.abs(exact), 1.0)).all()
    assert (error * x <= 5e-8).all()  # what one p log p term of an entropy can be off by


def test_float64_log_is_within_its_stated_error():
    x = np.concatenate([np.geomspace(1e-300, 1e300, 200_001), np.random.default_rng(1).random(100_000)])
    exact = np.log(x)
    error = np.abs(_log_each(x) - exact)
    assert (error <= 1e-15 * np.maximum(np.abs(exact), 1.0)).all()
    assert _log_each(np.array([1.0]))[0] == 0.0


def _cpu_flags() -> set[str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def save_members_of_each_dtype(folder, rng, num_members: int) -> None:
    """float16, float32 and float64 members of 2,000 rows and 37 classes, as ``folder/<dtype>.npy``."""
    from reference import random_members

    for dtype in (np.float16, np.float32, np.float64):
        np.save(folder / f"{np.dtype(dtype).name}.npy", random_members(rng, num_members, 2000, 37, dtype))


def run_compiled_for_haswell(code: str, folder) -> None:
    """``python -c code folder`` in a child whose Numba compiles, with an empty cache, for an AVX2-only CPU."""
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CACHE_DIR": str(folder / "cache")}
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, env=env)


@pytest.mark.skipif(not {"avx2", "fma", "f16c"} <= _cpu_flags(), reason="needs a CPU that runs AVX2 code")
def test_statistics_from_given_predictions_are_the_same_compiled_for_an_avx2_cpu(tmp_path):
    """Scores of given predictions do not depend on the CPU: the kernel compiled for an AVX2-only
    CPU (haswell) gives the very integers, and so the very scores, of the kernel compiled for this one."""

    from subsetsearch import EnsembleStats, acquire

    save_members_of_each_dtype(tmp_path, np.random.default_rng(0), 5)
    code = (
        "import sys, numpy as np; from subsetsearch import EnsembleStats\n"
        "for name in ('float16', 'float32', 'float64'):\n"
        "    s = EnsembleStats.from_members(np.load(f'{sys.argv[1]}/{name}.npy'))\n"
        "    np.savez(f'{sys.argv[1]}/{name}_avx2.npz', p=s.probability_sums, e=s.entropy_sums, v=s.vote_counts)\n"
    )
    run_compiled_for_haswell(code, tmp_path)
    for name in ("float16", "float32", "float64"):
        here = EnsembleStats.from_members(np.load(tmp_path / f"{name}.npy"))
        with np.load(tmp_path / f"{name}_avx2.npz") as saved:
            there = EnsembleStats.from_arrays(saved["p"], saved["e"], saved["v"], here.member_counts.copy())
        assert there.equals(here), name
        np.testing.assert_array_equal(acquire(there, "mutual_information"), acquire(here, "mutual_information"))


@pytest.mark.skipif(not {"avx2", "fma", "f16c"} <= _cpu_flags(), reason="needs a CPU that runs AVX2 code")
def test_label_statistics_are_the_same_compiled_for_an_avx2_cpu(tmp_path):
    """The label statistics' kernels (member terms, windows) compiled for an AVX2-only CPU give the
    very statistics of the kernels compiled for this one."""

    from subsetsearch.dynamics import TrainingDynamics

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 37, size=2000)
    np.save(tmp_path / "labels.npy", labels)
    save_members_of_each_dtype(tmp_path, rng, 6)
    code = (
        "import sys, numpy as np; from subsetsearch.dynamics import TrainingDynamics\n"
        "labels = np.load(f'{sys.argv[1]}/labels.npy')\n"
        "for name in ('float16', 'float32', 'float64'):\n"
        "    d = TrainingDynamics(labels, num_classes=37, window=3)\n"
        "    for member in np.load(f'{sys.argv[1]}/{name}.npy'):\n"
        "        d.update(member)\n"
        "    d.save(f'{sys.argv[1]}/{name}_avx2.npz')\n"
    )
    run_compiled_for_haswell(code, tmp_path)
    for name in ("float16", "float32", "float64"):
        here = TrainingDynamics(labels, num_classes=37, window=3)
        for member in np.load(tmp_path / f"{name}.npy"):
            here.update(member)
        assert TrainingDynamics.load(tmp_path / f"{name}_avx2.npz").equals(here), name
