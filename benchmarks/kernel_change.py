"""Does a change to the compiled kernel cost time? The kernel of another git revision against the
working tree's, in one process, interleaved.

    .venv/bin/python benchmarks/kernel_change.py                  # against b7990dc (before integer row sums)
    .venv/bin/python benchmarks/kernel_change.py --base REV
    .venv/bin/python benchmarks/kernel_change.py --replot

``internal/kernels.py`` of ``--base`` is read from git into a temporary module, so both kernels run
on the same machine, data and thread pool; each round times both (which one goes first
alternates), and the ratio new / old is taken per round (the machine is shared and noisy): the
median ratio and a 95% interval of the mean of the per-round ratios. Members are N = 100,000
samples of C = 100 classes, 4 members a call, float16, float32 and float64.

Numba's code for a ``parallel=True`` kernel differs between a fresh compile and its cache (and so
does its speed), so both kernels are measured both ways, each in a child process sharing one new
cache directory: ``fresh`` compiles them (and fills the cache), ``cached`` loads them from it.

It also reports how the two kernels' statistics differ, and how far each one's member entropies
lie from float64 arithmetic: ``accumulate`` at ``b7990dc`` summed each row's terms as float32 (or
float64) values, whose rounding depends on the order the vector code adds them in, so a fresh
compile and numba's cached code of that kernel could differ in the last bits.

Results: ``benchmarks/results/kernel_change.{json,png}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary_stats import mean_sd, paired

from subsetsearch.internal.atomic import atomic_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "kernel_change.json"
N, C, MEMBERS = 100_000, 100, 4


def load(path: Path):
    """The module at ``path``, imported by its name (numba's cache finds a module by name)."""
    sys.path.insert(0, str(path.parent))
    return importlib.import_module(path.stem)


def write_base(base: str, folder: Path) -> Path:
    """A copy of the kernels module of git revision ``base`` in ``folder``."""
    source = subprocess.run(
        ["git", "show", f"{base}:src/subsetsearch/internal/kernels.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    path = folder / "base_kernels.py"
    path.write_bytes(source)
    return path


def accumulate_all(kernels, members: list[np.ndarray], tolerance: float) -> tuple[float, tuple]:
    rows = np.arange(N, dtype=np.int64)
    arrays = (
        np.zeros((N, C), np.int64),
        np.zeros(N, np.int64),
        np.zeros((N, C), np.uint16),
        np.zeros(N, np.int64),
        np.zeros(N, np.bool_),
    )
    started = time.perf_counter()
    for member in members:
        kernels.accumulate(member, rows, np.float32(2.0**30), tolerance, *arrays)
    return time.perf_counter() - started, arrays


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Each row's entropy in float64 after dividing it by its sum, 0 log 0 = 0."""
    p = probs / probs.sum(axis=1, keepdims=True)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)


def measure(base_path: Path, rounds: int) -> dict:
    """Both kernels timed in this process (its NUMBA_CACHE_DIR says whether they compile or load)."""
    from subsetsearch.internal import kernels as new_kernels

    old = load(base_path)
    rng = np.random.default_rng(0)
    out: dict = {"dtypes": {}}
    for dtype in (np.float16, np.float32, np.float64):
        probs = rng.dirichlet(np.full(C, 0.3), size=(MEMBERS, N)).astype(dtype)
        members = [np.ascontiguousarray(p).view(np.uint16) if dtype == np.float16 else p for p in probs]
        tolerance = 1e-2 if dtype == np.float16 else 1e-3
        kernels = {"base": old, "working_tree": new_kernels}
        for module in kernels.values():  # compile before timing
            accumulate_all(module, members[:1], tolerance)
        seconds: dict[str, list[float]] = {name: [] for name in kernels}
        for r in range(rounds):
            names = list(kernels) if r % 2 == 0 else list(reversed(kernels))
            for name in names:
                seconds[name].append(accumulate_all(kernels[name], members, tolerance)[0])
        _, a = accumulate_all(old, members, tolerance)
        _, b = accumulate_all(new_kernels, members, tolerance)
        exact = sum(_entropy(np.asarray(p, dtype=np.float64)) for p in probs)  # the members' entropies, float64
        ratio = {r: seconds["working_tree"][r] / seconds["base"][r] for r in range(rounds)}
        out["dtypes"][np.dtype(dtype).name] = {
            "seconds": seconds,
            "median_seconds": {name: float(np.median(v)) for name, v in seconds.items()},
            "ratio_new_over_base": {
                **paired(ratio, dict.fromkeys(ratio, 0.0)),
                "median": float(np.median(list(ratio.values()))),
            },
            "ratio_new_over_base_values": list(ratio.values()),
            "ns_per_element_new": float(np.median(seconds["working_tree"])) / (MEMBERS * N * C) * 1e9,
            "probability_sums_equal": bool(np.array_equal(a[0], b[0])),
            "entropy_sums_max_difference_nats": float(np.abs(a[1] - b[1]).max() / 2.0**32),
            "entropy_sums_max_error_vs_float64_nats": {
                "base": float(np.abs(a[1] / 2.0**32 - exact).max()),
                "working_tree": float(np.abs(b[1] / 2.0**32 - exact).max()),
            },
            "votes_equal": bool(np.array_equal(a[2], b[2])),
        }
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = list(result["fresh"]["dtypes"])
    for k, regime in enumerate(("fresh", "cached")):
        for j, name in enumerate(names):
            d = result[regime]["dtypes"][name]["ratio_new_over_base"]
            low, high = d["ci95"] if d["ci95"] else (d["mean"], d["mean"])
            x = j + (k - 0.5) * 0.25
            ax.errorbar([x], [d["mean"]], yerr=[[d["mean"] - low], [high - d["mean"]]], marker="o", capsize=4,
                        color=f"C{k}", label=regime if j == 0 else None)  # fmt: skip
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.legend(fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("seconds, working tree / base (mean, 95% interval)")
    ax.set_title(f"accumulate: working tree against {result['base']}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="b7990dc")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--replot", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # the base kernels' path; prints JSON
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.rounds)))
        return
    if args.replot:
        plot(json.loads(RESULTS.read_text()), RESULTS.with_suffix(".png"))
        return
    suffix = "" if args.base == "b7990dc" else f" --base {args.base}"
    result: dict = {"command": "python benchmarks/kernel_change.py" + suffix, "base": args.base}
    result.update(num_samples=N, num_classes=C, members_per_call=MEMBERS)
    with tempfile.TemporaryDirectory() as tmp:
        base_path = write_base(args.base, Path(tmp))
        env = {**os.environ, "NUMBA_CACHE_DIR": str(Path(tmp) / "numba_cache")}
        for regime in ("fresh", "cached"):  # the first child compiles both kernels, the second loads them
            child = [sys.executable, __file__, "--child", str(base_path), "--rounds", str(args.rounds)]
            done = subprocess.run(child, env=env, check=True, capture_output=True, text=True)
            result[regime] = json.loads(done.stdout)
            for name, d in result[regime]["dtypes"].items():
                r = mean_sd(d["ratio_new_over_base_values"])
                print(f"{regime} {name}: new / base {r['mean']:.3f} ± {r['sd']:.3f} (n={r['n']})", flush=True)
    with atomic_path(RESULTS) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, RESULTS.with_suffix(".png"))


if __name__ == "__main__":
    main()
