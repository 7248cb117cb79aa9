"""Streaming ensemble scoring against holding all members in one [M, N, C] array.

    .venv/bin/python benchmarks/acquisition_scaling.py            # N=100k, C=100, M=10,50,100
    .venv/bin/python benchmarks/acquisition_scaling.py --quick    # N=20k, M=4,8: a smoke run
    .venv/bin/python benchmarks/acquisition_scaling.py --functions  # every function in one pass, M=20
    .venv/bin/python benchmarks/acquisition_scaling.py --selection  # balance and coverage, N=10^6 and 10^7

Every method runs in a fresh process that reads the same member .npy files
(float32 and float16, written once, then in the page cache) and computes
entropy, mutual information and variation ratios:

- ``floor``: reading the members' bytes and summing them once (viewed as
  float32 words, so float16 members have half the floor of float32 ones);
  ``floor_native`` sums them in their own dtype with ``ndarray.sum``.
- ``stacked``: the usual approach, ``np.stack`` of every member, then the
  formulas over the [M, N, C] array.
- ``numpy_stream``: a plain NumPy loop, one memory-mapped member at a time.
- ``one_by_one``: ``EnsembleStats.update`` once per member, then ``acquire``.
- ``subsetsearch``: ``accumulate`` + ``acquire`` (what ``score`` runs:
  ``EnsembleStats.update_members`` over 16 members at a time).

``--functions`` compares, at N=100k, C=100, M=20 float32 members, what ``score`` does for one
function (``one_function``: the ensemble statistics, mutual information) with what it does for all
eleven at once (``all_functions``: the statistics and the ordered label statistics, window 10,
each member read once, every function computed), beside the floor; results in
``benchmarks/results/acquisition_functions.{json,png}``.

``--selection`` times ``select`` on N random scores (N = 10⁶ and 10⁷, k = N/4, 10 classes)
under each selection rule against the plain top-k of the same scores (``top_k``): ``balance``
(``balance="class"``), ``coverage`` (``Coverage(50, 0.1)``), ``balance_coverage`` (both) and
``lowest`` (``direction="lowest"``); the goal is at most 2× the top-k's time and O(N) extra memory
(the same bytes per row at both N). The scores and labels are made in the child before its
memory baseline. Results in ``benchmarks/results/acquisition_selection.{json,png}``.

Time is the best of ``--repeats`` runs; memory is the peak of anonymous
resident memory (RssAnon, sampled every 2 ms) above the process's start, so
file pages of memory maps, which the kernel can drop, do not count. Results:
``benchmarks/results/acquisition_scaling.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
METHODS = ("floor", "floor_native", "stacked", "numpy_stream", "one_by_one", "subsetsearch")
FUNCTION_METHODS = ("floor", "one_function", "all_functions")
SELECTION_METHODS = ("top_k", "balance", "coverage", "balance_coverage", "lowest")
SELECTION_SIZES = (1_000_000, 10_000_000)
SELECTION_GOAL = 2.0
NOTES = [
    "max_abs_diff_vs_stacked: subsetsearch divides each stored row by its sum, the stacked reference does not; "
    "float16 rows sum to 1 only within ~1e-3, hence differences of ~1e-4 in mutual information there.",
    "paper_scale: accumulator bytes are int64 probability sums and uint16 votes per (sample, class) plus int64 "
    "entropy sum and count per sample; seconds scale the best measured ns per (member, sample, class) on this "
    "machine, with the members in the page cache.",
]
PAPER_SCALE = {"num_samples": 1_281_167, "num_classes": 1000, "num_members": 100}


# ---------------------------------------------------------------- the methods
def method_floor(paths):
    total = 0.0
    for path in paths:
        member = np.load(path, mmap_mode="r")
        total += float(member.reshape(-1).view(np.float32).sum(dtype=np.float32))
    return None


def method_floor_native(paths):
    for path in paths:
        np.load(path, mmap_mode="r").sum()
    return None


def _entropy(p, axis=-1):
    return -(p * np.log(np.where(p > 0, p, 1))).sum(axis=axis)


def method_stacked(paths):
    probs = np.stack([np.load(path) for path in paths]).astype(np.float32)  # [M, N, C]
    m, n, c = probs.shape
    mean = probs.mean(axis=0)
    entropy = _entropy(mean)
    mutual_information = entropy - _entropy(probs).mean(axis=0)
    votes = np.zeros((n, c), dtype=np.int64)
    for member_votes in probs.argmax(axis=2):
        votes[np.arange(n), member_votes] += 1
    return mutual_information, 1 - votes.max(axis=1) / m


def method_numpy_stream(paths):
    n, c = np.load(paths[0], mmap_mode="r").shape
    sum_probs = np.zeros((n, c))
    sum_entropy = np.zeros(n)
    votes = np.zeros(n * c, dtype=np.int64)
    offsets = np.arange(n) * c
    for path in paths:
        member = np.load(path, mmap_mode="r").astype(np.float32)
        sum_probs += member
        sum_entropy += _entropy(member)
        votes[offsets + member.argmax(axis=1)] += 1  # flat increments: 10x np.add.at
    m = len(paths)
    mutual_information = _entropy(sum_probs / m) - sum_entropy / m
    return mutual_information, 1 - votes.reshape(n, c).max(axis=1) / m


def method_one_by_one(paths):
    from subsetsearch import EnsembleStats, acquire

    stats = EnsembleStats(*np.load(paths[0], mmap_mode="r").shape)
    for path in paths:
        stats.update(np.load(path, mmap_mode="r"))
    return acquire(stats, "mutual_information"), acquire(stats, "variation_ratios")


def method_subsetsearch(paths):
    from subsetsearch import acquire
    from subsetsearch.pipeline.score import accumulate

    stats, _ = accumulate(paths)
    return acquire(stats, "mutual_information"), acquire(stats, "variation_ratios")


def _labels(paths) -> np.ndarray:
    n, c = np.load(paths[0], mmap_mode="r").shape
    return np.random.default_rng(1).integers(0, c, size=n)


def method_one_function(paths):
    from subsetsearch import acquire
    from subsetsearch.pipeline.score import accumulate

    stats, _ = accumulate(paths)
    return (acquire(stats, "mutual_information"),)


def method_all_functions(paths):
    from subsetsearch.acquisition import DYNAMICS_FUNCTIONS, FUNCTIONS, acquire
    from subsetsearch.pipeline.score import DynamicsRequest, accumulate

    labels = _labels(paths)
    stats, dynamics = accumulate(paths, dynamics=DynamicsRequest(labels, window=10, ordered=True))
    functions = [f for f in FUNCTIONS if f != "dyn_unc" or len(paths) >= 10]  # the warm-up reads one member
    return tuple(acquire(dynamics if f in DYNAMICS_FUNCTIONS else stats, f, labels=labels) for f in functions)


# ------------------------------------------------------------ measuring a run
def selection_child(method: str, num_samples: int, repeats: int) -> None:
    """Time one selection rule in this (fresh) process on seeded random scores; print JSON."""
    from subsetsearch.selection import Coverage, select

    rng = np.random.default_rng(0)
    scores, labels = rng.random(num_samples), rng.integers(0, 10, num_samples)
    options = {
        "top_k": {},
        "balance": {"balance": "class", "labels": labels},
        "coverage": {"coverage": Coverage(50, 0.1)},
        "balance_coverage": {"balance": "class", "labels": labels, "coverage": Coverage(50, 0.1)},
        "lowest": {"direction": "lowest"},
    }[method]
    select(scores[:1000], 250, **{**options, **({"labels": labels[:1000]} if "labels" in options else {})})
    measured = _measured(lambda: select(scores, num_samples // 4, seed=0, **options), repeats)
    print(json.dumps(measured))


def _measured(work, repeats: int, keep=None) -> dict:
    """Run ``work()`` ``repeats`` times in this process: the best and every time, and the peak of
    anonymous RSS above the start (sampled every 2 ms); ``keep(result)`` sees each result first."""
    baseline = _rss_anon()
    peak, running = [baseline], True

    def sample():
        while running:
            peak[0] = max(peak[0], _rss_anon())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
        peak[0] = max(peak[0], _rss_anon())
        if keep is not None:
            keep(result)
        del result
    running = False
    sampler.join()
    return {"seconds": min(times), "all_seconds": times, "peak_bytes": peak[0] - baseline}


def selection_part(args) -> None:
    """Each selection rule against the plain top-k on the same scores, each in a fresh process."""
    rows = []
    for n in SELECTION_SIZES:
        row = {"num_samples": n, "k": n // 4, "num_classes": 10}
        for method in SELECTION_METHODS:
            command = [sys.executable, __file__, "--selection-child", method, "--num-samples", str(n),
                       "--repeats", str(args.repeats)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{method} failed:\n{done.stderr}")
            row[method] = json.loads(done.stdout.strip().splitlines()[-1])
            row[method]["bytes_per_row"] = row[method]["peak_bytes"] / n
            print(f"N={n:>10,} {method:17s} {row[method]['seconds']:7.3f} s "
                  f"{row[method]['bytes_per_row']:6.1f} B/row", flush=True)  # fmt: skip
        for method in SELECTION_METHODS[1:]:
            row[f"{method}_over_top_k"] = row[method]["seconds"] / row["top_k"]["seconds"]
        rows.append(row)
    worst = max(r[f"{m}_over_top_k"] for r in rows for m in SELECTION_METHODS[1:])
    growth = {m: rows[-1][m]["bytes_per_row"] / rows[0][m]["bytes_per_row"] for m in SELECTION_METHODS}
    report = {
        "command": "python benchmarks/acquisition_scaling.py --selection",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "results": rows,
        "summary": {
            "worst_time_over_top_k": worst,
            "time_goal": f"at most {SELECTION_GOAL:g}x the top-k's time: "
            + ("met" if worst <= SELECTION_GOAL else "not met"),
            "bytes_per_row_growth_1e6_to_1e7": growth,
        },
        "note": "time: best of repeats of select(scores, N/4) in a fresh process; memory: peak anonymous RSS above "
        "the child's start, scores (8 B/row) and labels (8 B/row) made before it",
    }
    out = args.out.with_name("acquisition_selection")
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    plot_selection(rows, out.with_suffix(".png"))
    print(json.dumps(report["summary"], indent=2))


def plot_selection(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(rows)
    x = np.arange(len(SELECTION_METHODS))
    for i, row in enumerate(rows):
        label = f"N = {row['num_samples']:,}"
        ax_time.bar(x + i * width, [row[m]["seconds"] / row["top_k"]["seconds"] for m in SELECTION_METHODS], width,
                    label=label)  # fmt: skip
        ax_mem.bar(x + i * width, [row[m]["bytes_per_row"] for m in SELECTION_METHODS], width, label=label)
    ax_time.axhline(SELECTION_GOAL, color="grey", linestyle="--", linewidth=1, label=f"goal {SELECTION_GOAL:g}x")
    ax_time.set_ylabel("seconds / top-k's seconds")
    ax_mem.set_ylabel("peak extra bytes per row")
    for ax in (ax_time, ax_mem):
        ax.set_xticks(x + width * (len(rows) - 1) / 2, SELECTION_METHODS, rotation=20, fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle("select(scores, N/4) under each rule, 10 classes (best of repeats, fresh process each)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _rss_anon() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def child(method: str, paths: list[str], repeats: int, scores_path: str) -> None:
    """Run one method in this (fresh) process; print time and peak memory as JSON."""
    function = globals()[f"method_{method}"]
    if method in ("subsetsearch", "one_by_one", "one_function", "all_functions"):  # compile outside the timing
        function(paths[:1])

    def keep(result) -> None:
        if result is not None:
            np.save(scores_path, np.stack(result))

    print(json.dumps(_measured(lambda: function(paths), repeats, keep)))


def run_child(method, paths, repeats, scores_path):
    command = [sys.executable, __file__, "--child", method, "--repeats", str(repeats), "--scores", scores_path, *paths]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the members
def write_members(directory: Path, num_samples: int, num_classes: int, num_members: int) -> dict[str, list[str]]:
    """Member files of peaked softmax outputs, float32 and float16, made chunk by chunk."""
    paths = {"float32": [], "float16": []}
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for m in range(num_members):
        for dtype in paths:
            paths[dtype].append(str(directory / f"{dtype}_{num_samples}x{num_classes}_{m:03d}.npy"))
        if all(Path(p[-1]).exists() for p in paths.values()):
            continue
        logits = rng.standard_normal((num_samples, num_classes), dtype=np.float32) * 3
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        np.save(paths["float32"][-1], probs)
        np.save(paths["float16"][-1], probs.astype(np.float16))
    return paths


# ----------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=100_000)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--members", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".data")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "acquisition_scaling")
    parser.add_argument("--quick", action="store_true", help="N=20k, M=4,8, into results/quick_*")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON of an earlier run")
    parser.add_argument("--functions", action="store_true", help="every function in one pass against one, M=20")
    parser.add_argument("--selection", action="store_true", help="balance and coverage against top-k, N=1e6, 1e7")
    parser.add_argument("--child", choices=METHODS + FUNCTION_METHODS[1:], help=argparse.SUPPRESS)
    parser.add_argument("--selection-child", choices=SELECTION_METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--scores", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.paths, args.repeats, args.scores)
        return
    if args.selection_child:
        selection_child(args.selection_child, args.num_samples, args.repeats)
        return
    if args.selection:
        selection_part(args)
        return
    if args.replot:
        plot(json.loads(args.out.with_suffix(".json").read_text())["results"], args.out.with_suffix(".png"))
        return
    if args.functions:
        functions_part(args)
        return
    if args.quick:
        args.num_samples, args.members, args.repeats = 20_000, [4, 8], 1
        args.out = args.out.with_name("quick_" + args.out.name)

    n, c = args.num_samples, args.num_classes
    members = write_members(args.data_dir, n, c, max(args.members))
    results = []
    for dtype, paths in members.items():
        method_floor(paths)  # bring every file into the page cache once
        for m in args.members:
            row = {"dtype": dtype, "num_members": m, "num_samples": n, "num_classes": c}
            scores = {}
            for method in METHODS:
                scores_path = str(args.data_dir / f"scores_{method}.npy")
                measured = run_child(method, paths[:m], args.repeats, scores_path)
                row[method] = measured
                if method not in ("floor", "floor_native"):
                    scores[method] = np.load(scores_path)
                print(
                    f"{dtype} M={m:3d} {method:13s} {measured['seconds']:8.3f} s "
                    f"{measured['peak_bytes'] / 2**30:7.3f} GiB",
                    flush=True,
                )
            ours = row["subsetsearch"]
            row["time_vs_floor"] = ours["seconds"] / row["floor"]["seconds"]
            row["time_vs_floor_native"] = ours["seconds"] / row["floor_native"]["seconds"]
            row["speedup_vs_stacked"] = row["stacked"]["seconds"] / ours["seconds"]
            row["speedup_vs_numpy_stream"] = row["numpy_stream"]["seconds"] / ours["seconds"]
            row["speedup_blocked_vs_one_by_one"] = row["one_by_one"]["seconds"] / ours["seconds"]
            row["memory_stacked_over_ours"] = row["stacked"]["peak_bytes"] / ours["peak_bytes"]
            row["ns_per_element"] = ours["seconds"] / (m * n * c) * 1e9
            row["max_abs_diff_vs_stacked"] = {
                "mutual_information": float(np.abs(scores["subsetsearch"][0] - scores["stacked"][0]).max()),
                "variation_ratios": float(np.abs(scores["subsetsearch"][1] - scores["stacked"][1]).max()),
            }
            print(
                f"  ours/floor {row['time_vs_floor']:.2f}x, ours/native-floor {row['time_vs_floor_native']:.2f}x, "
                f"{row['speedup_vs_stacked']:.1f}x faster and {row['memory_stacked_over_ours']:.0f}x less memory "
                f"than stacked, {row['speedup_vs_numpy_stream']:.1f}x faster than the NumPy loop",
                flush=True,
            )
            results.append(row)

    summary = summarise(results, args.members)
    report = {
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT.parent), *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "results": results,
        "summary": summary,
        "paper_scale": paper_scale(results),
        "notes": NOTES,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps({"summary": summary, "paper_scale": report["paper_scale"]}, indent=2))


def functions_part(args) -> None:
    """Every function in one pass against one function: time and peak memory, each in a fresh process."""
    n, c, m = args.num_samples, args.num_classes, 20
    paths = write_members(args.data_dir, n, c, m)["float32"][:m]
    method_floor(paths)  # into the page cache
    row = {"num_samples": n, "num_classes": c, "num_members": m, "dtype": "float32", "window": 10}
    for method in FUNCTION_METHODS:
        row[method] = run_child(method, paths, args.repeats, str(args.data_dir / f"scores_{method}.npy"))
        print(f"{method:14s} {row[method]['seconds']:8.3f} s {row[method]['peak_bytes'] / 2**30:7.3f} GiB", flush=True)
    row["all_over_one_time"] = row["all_functions"]["seconds"] / row["one_function"]["seconds"]
    row["all_over_one_memory"] = row["all_functions"]["peak_bytes"] / row["one_function"]["peak_bytes"]
    row["one_function_vs_floor"] = row["one_function"]["seconds"] / row["floor"]["seconds"]
    row["all_functions_vs_floor"] = row["all_functions"]["seconds"] / row["floor"]["seconds"]
    report = {
        "command": "python benchmarks/acquisition_scaling.py --functions",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "result": row,
        "note": "all_functions: EnsembleStats and an ordered TrainingDynamics (window 10) fed from one read of "
        "each member, then all eleven functions; one_function: EnsembleStats, then mutual_information. "
        "Peak memory is anonymous RSS above the child's start.",
    }
    out = args.out.with_name("acquisition_functions")
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    plot_functions(row, out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}, indent=2))


def plot_functions(row, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = ["floor", "one_function", "all_functions"]
    ax_time.bar(names, [row[n]["seconds"] for n in names], color=["grey", "C0", "C1"])
    ax_time.set_ylabel("seconds (best of repeats)")
    ax_time.set_title(f"all / one: {row['all_over_one_time']:.2f}× time", fontsize=9)
    ax_mem.bar(names[1:], [row[n]["peak_bytes"] / 2**30 for n in names[1:]], color=["C0", "C1"])
    ax_mem.set_ylabel("peak extra memory (GiB)")
    ax_mem.set_title(f"all / one: {row['all_over_one_memory']:.2f}× memory", fontsize=9)
    fig.suptitle(f"N={row['num_samples']:,}, C={row['num_classes']}, M={row['num_members']} float32", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summarise(results, member_counts):
    summary = {}
    for dtype in ("float32", "float16"):
        rows = {r["num_members"]: r for r in results if r["dtype"] == dtype}
        low, high = rows[min(member_counts)], rows[max(member_counts)]
        summary[dtype] = {
            f"memory_M{high['num_members']}_over_M{low['num_members']}": high["subsetsearch"]["peak_bytes"]
            / low["subsetsearch"]["peak_bytes"],
            f"memory_stacked_over_ours_M{high['num_members']}": high["memory_stacked_over_ours"],
            "time_vs_floor_worst": max(r["time_vs_floor"] for r in rows.values()),
            "time_vs_floor_native_worst": max(r["time_vs_floor_native"] for r in rows.values()),
        }
    return summary


def paper_scale(results):
    """The paper's ImageNet scoring, on paper: accumulator memory and time from measured throughput."""
    n, c, m = PAPER_SCALE["num_samples"], PAPER_SCALE["num_classes"], PAPER_SCALE["num_members"]
    accumulator = n * c * (8 + 2) + n * (8 + 8)  # int64 sums + uint16 votes; int64 entropy + count per row
    estimate = {}
    for dtype in ("float32", "float16"):
        best = min(r["ns_per_element"] for r in results if r["dtype"] == dtype)
        estimate[f"{dtype}_seconds_at_measured_rate"] = best * 1e-9 * n * c * m
        estimate[f"{dtype}_member_bytes_on_disk"] = n * c * m * np.dtype(dtype).itemsize
    return {
        **PAPER_SCALE,
        "accumulator_bytes": accumulator,
        "accumulator_gib": accumulator / 2**30,
        "stacked_float32_bytes": n * c * m * 4,
        **estimate,
    }


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"float32": "-", "float16": "--"}
    for method, color in zip(
        ("floor", "stacked", "numpy_stream", "one_by_one", "subsetsearch"),
        ("grey", "C3", "C1", "C2", "C0"),
        strict=True,
    ):
        for dtype, style in styles.items():
            rows = sorted((r for r in results if r["dtype"] == dtype), key=lambda r: r["num_members"])
            ms = [r["num_members"] for r in rows]
            ax_time.plot(
                ms, [r[method]["seconds"] for r in rows], style, color=color, marker="o", label=f"{method} {dtype}"
            )
            if method != "floor":
                ax_mem.plot(
                    ms,
                    [r[method]["peak_bytes"] / 2**30 for r in rows],
                    style,
                    color=color,
                    marker="o",
                    label=f"{method} {dtype}",
                )
    n, c = results[0]["num_samples"], results[0]["num_classes"]
    for ax, label in ((ax_time, "seconds (best of repeats)"), (ax_mem, "peak extra memory (GiB, RssAnon)")):
        ax.set_xlabel("ensemble members M")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    ax_time.set_title(f"Scoring N={n:,}, C={c} (2-core CPU)")
    ax_mem.set_title("Memory")
    ax_time.legend(fontsize=7, ncol=2)
    ax_mem.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
