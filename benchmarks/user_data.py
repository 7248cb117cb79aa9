"""An image folder against the same images as arrays: `subsetsearch run`'s memory, time and subset.

    .venv/bin/python benchmarks/user_data.py            # resumes; about 30 minutes on 2 cores
    .venv/bin/python benchmarks/user_data.py --quick    # a smoke run (*_quick.*, not committed)

The 60,000 Fashion-MNIST training images are written once as PNG files, one folder per class
(benchmarks/.data/fashion_png/train/<class>/<row>.png), and the 10,000 test images beside them
(.../test/); the same pixels are saved as arrays (an .npz each). Two parts:

- **default**: `subsetsearch run` with the default search (every search and training key at its
  default) on the folder (`image_folder`, the default decoding workers and cache) and on the
  arrays, for each seed, in alternating order. Measured: the peak memory of the run's process
  tree (the sum of PSS, sampled every 200 ms: decoding workers share their parent's pages, and PSS
  counts a shared page once), the seconds of every training epoch (each training run's own
  history, paired run by run between the two), and whether the subsets are identical.
- **scaling**: the folder resized to 112×112 (`data.image_size`; 12.5 KB a decoded image, a
  16 MiB cache) and arrays of the same decoded images, with a short search (one epoch, one member,
  budgets of 256 and 512 images: full training batches at both sizes),
  at 15,000 and at 60,000 pool images (the folder's `limit`; arrays holding that many images, evenly
  spaced through the classes): how the peak memory grows with the number of images.

Goals (issue 33): the folder's peak memory at most the arrays' + 1 GiB; the folder's time per
epoch at most 1.2x the arrays' (the mean of the paired ratios, with its 95% interval); the subset
identical to the arrays' (same seed); and a peak memory independent of the number of images
beyond the cache, taken as: growing by less than a tenth of a decoded image per image
(1,254 bytes) from 15,000 to 60,000 images.

Results: benchmarks/results/user_data.json (every finished part, written as it finishes: an
interrupted run resumes where it stopped) and user_data.png. Ratios are between runs of the same
session on the same machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary_stats import mean_sd, paired

from subsetsearch.internal.atomic import atomic_path
from subsetsearch.train.data import FASHION_MNIST_CLASSES, load_fashion_mnist

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data" / "fashion_png"
WORK = HERE.parent / "runs" / "bench_user_data"
SEEDS = (0, 1, 2)
SCALING_SIZES = (15000, 60000)
SCALING_SIDE = 112
SCALING_CACHE_MB = 16
MEMORY_GOAL_BYTES = 1 << 30
TIME_GOAL = 1.2
GROWTH_GOAL = SCALING_SIDE * SCALING_SIDE / 10  # bytes per image: a tenth of a decoded image


# -- the data, written once ----------------------------------------------------------------------------


def folder_name(label: int) -> str:
    return f"{label}_{FASHION_MNIST_CLASSES[label].replace('/', '-').replace(' ', '_')}"


def write_data(root: Path) -> None:
    """The training and test images as PNG folders and as .npz arrays (skipped when present)."""
    from PIL import Image

    done = root / "written"
    if done.is_file():
        return
    train, test = load_fashion_mnist()
    for part, images in (("train", train), ("test", test)):
        for label in range(len(FASHION_MNIST_CLASSES)):
            (root / part / folder_name(label)).mkdir(parents=True, exist_ok=True)
        for row, (pixels, label) in enumerate(zip(images.x[:, 0], images.y, strict=True)):
            Image.fromarray(pixels).save(root / part / folder_name(int(label)) / f"{row:05d}.png")
        # the folder's row order: class folders in sorted order, files sorted by name in each
        order = np.lexsort((np.arange(len(images.y)), images.y))
        np.savez(root / f"{part}.npz", x=images.x[order, 0], y=images.y[order])
    done.write_text("ok\n")


# -- one run, measured ---------------------------------------------------------------------------------


def tree_pss(pid: int) -> int:
    """PSS bytes of a process and all its descendants (0 for any that ended meanwhile)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def measured_run(config: dict, run_dir: Path) -> dict:
    """`subsetsearch run` of ``config`` into ``run_dir`` (started afresh): peak tree PSS and seconds."""
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    config_path = run_dir.with_suffix(".yaml")
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "subsetsearch.cli", "run", str(config_path), "--run-dir", str(run_dir), "-q"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_pss(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    started = time.perf_counter()
    sampler.start()
    _, err = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"run {run_dir} failed: {err.decode().strip()}")
    return {"peak_pss_bytes": peak, "seconds": seconds}


def epoch_seconds(run_dir: Path) -> dict[str, list[float]]:
    """Each training run's seconds per epoch (its history's cumulative seconds, differenced), by folder."""
    out = {}
    for done in sorted(run_dir.rglob("done.json")):
        cumulative = [entry["seconds"] for entry in json.loads(done.read_text())["history"]]
        out[str(done.parent.relative_to(run_dir))] = np.diff([0.0, *cumulative]).tolist()
    return out


def subset_digest(run_dir: Path) -> dict:
    """The subset's rows and multiplicities, in order, as a SHA-256 (two runs chose the same subset
    when their digests are equal)."""
    import pyarrow.parquet as pq

    table = pq.read_table(run_dir / "subset.parquet").to_pydict()
    return digest(table["index"], table["multiplicity"])


def digest(index: list[int], multiplicity: list[int]) -> dict:
    import hashlib

    data = np.asarray(index, dtype=np.int64).tobytes() + np.asarray(multiplicity, dtype=np.int64).tobytes()
    return {"rows": len(index), "sha256": hashlib.sha256(data).hexdigest()}


# -- the parts ---------------------------------------------------------------------------------------------


def data_config(kind: str, root: Path, **extra: object) -> dict:
    if kind == "folder":
        return {"dataset": "image_folder", "path": str(root / "train"), "test_path": str(root / "test"), **extra}
    return {"dataset": "arrays", "path": str(root / "train.npz"), "test_path": str(root / "test.npz"), **extra}


def default_part(seed: int, kind: str, root: Path, work: Path, limit: int | None) -> dict:
    data = data_config(kind, root, **({"limit": limit} if limit else {}))
    run_dir = work / "default" / f"seed{seed}_{kind}"
    measured = measured_run({"name": f"user-data-{kind}", "seed": seed, "data": data}, run_dir)
    return {**measured, "epochs": epoch_seconds(run_dir), "subset": subset_digest(run_dir)}


def scaling_part(size: int, kind: str, root: Path, work: Path) -> dict:
    """The short search at 112×112 on ``size`` pool images: the folder (``limit``) or arrays that hold
    ``size`` images."""
    if kind == "folder":
        data = data_config(kind, root, image_size=[SCALING_SIDE, SCALING_SIDE], limit=size, cache_mb=SCALING_CACHE_MB)
    else:
        data = {"dataset": "arrays", "path": str(resized_arrays(root, "train", size))}
        data["test_path"] = str(resized_arrays(root, "test", None))
    config = {
        "name": f"user-data-scaling-{kind}",
        "seed": 0,
        "data": data,
        "model": {"name": "cnn_small", "width": 8},
        "train": {"epochs": 1},
        "ensemble": {"kind": "checkpoints", "start": 1, "stop": 1},
        "search": {"budgets": [256, 512], "function": "entropy"},  # counts: full training batches at any size
    }
    return measured_run(config, work / "scaling" / f"{kind}_{size}")


def resized_arrays(root: Path, part: str, size: int | None) -> Path:
    """``size`` of the folder's images (evenly spaced through its class folders; all for None) as
    the folder path decodes them at 112×112, in an .npz."""
    path = root / f"{part}_{SCALING_SIDE}_{size or 'all'}.npz"
    if path.is_file():
        return path
    from subsetsearch.train.data import load_image_folder

    images, _ = load_image_folder(root / part, (SCALING_SIDE, SCALING_SIDE), workers=1)
    rows = np.arange(len(images)) if size is None else np.linspace(0, len(images) - 1, size).round().astype(int)
    x = np.concatenate(
        list(images.x.take(rows).stream(np.array_split(np.arange(len(rows)), max(1, len(rows) // 2048))))
    )
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, x=x[:, 0], y=images.y[rows])
    return path


# -- the summary ---------------------------------------------------------------------------------------------


def summarise(results: dict) -> dict:
    default = results.get("default", {})
    seeds = [s for s in SEEDS if f"seed{s}_folder" in default and f"seed{s}_arrays" in default]
    ratio, whole, memory, identical, over = {}, {}, {}, {}, {}
    for s in seeds:
        folder, arrays = default[f"seed{s}_folder"], default[f"seed{s}_arrays"]
        pairs = [
            (np.mean(folder["epochs"][run]), np.mean(arrays["epochs"][run]))
            for run in arrays["epochs"]
            if run in folder["epochs"]
        ]
        ratio[s] = float(np.sum([f for f, _ in pairs]) / np.sum([a for _, a in pairs]))
        whole[s] = folder["seconds"] / arrays["seconds"]  # the header scan and workers' start included
        memory[s] = (folder["peak_pss_bytes"], arrays["peak_pss_bytes"])
        over[s] = folder["peak_pss_bytes"] - arrays["peak_pss_bytes"]
        identical[s] = folder["subset"] == arrays["subset"]
    summary: dict = {"seeds": seeds}
    if seeds:
        ones = dict.fromkeys(seeds, 1.0)
        summary["time_ratio"] = {**mean_sd(list(ratio.values())), "by_seed": ratio, "vs_1": paired(ratio, ones)}
        summary["run_seconds_ratio"] = {**mean_sd(list(whole.values())), "by_seed": whole}
        summary["folder_minus_arrays_peak_bytes"] = {**mean_sd(list(over.values())), "by_seed": over}
        summary["subset_identical"] = identical
        upper = summary["time_ratio"]["vs_1"]["ci95"]
        summary["goals"] = {
            "memory": "met" if max(over.values()) <= MEMORY_GOAL_BYTES else "not met",
            "time": "met" if summary["time_ratio"]["mean"] <= TIME_GOAL else "not met",
            "time_upper_95": None if upper is None else 1 + upper[1],
            "subset": "met" if all(identical.values()) else "not met",
        }
    scaling = results.get("scaling", {})
    growth = {}
    for kind in ("folder", "arrays"):
        sizes = sorted(int(key.split("_")[1]) for key in scaling if key.startswith(f"{kind}_"))
        if len(sizes) >= 2:
            small, large = scaling[f"{kind}_{sizes[0]}"], scaling[f"{kind}_{sizes[-1]}"]
            growth[kind] = (large["peak_pss_bytes"] - small["peak_pss_bytes"]) / (sizes[-1] - sizes[0])
    if growth:
        summary["growth_bytes_per_image"] = growth
        if "folder" in growth:
            summary.setdefault("goals", {})["independent_of_size"] = (
                "met" if growth["folder"] < GROWTH_GOAL else "not met"
            )
    return summary


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    seeds = summary.get("seeds", [])
    default = results.get("default", {})
    width = 0.38
    for k, kind in enumerate(("arrays", "folder")):
        peaks = [default[f"seed{s}_{kind}"]["peak_pss_bytes"] / 2**20 for s in seeds]
        axes[0].bar(np.arange(len(seeds)) + (k - 0.5) * width, peaks, width, label=kind)
    axes[0].set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    axes[0].set_ylabel("peak memory of the run (PSS, MiB)")
    axes[0].set_title("default search, 60,000 images")
    axes[0].legend()
    ratios = [summary["time_ratio"]["by_seed"][s] for s in seeds] if seeds else []
    axes[1].bar(range(len(seeds)), ratios, color="tab:orange")
    axes[1].axhline(TIME_GOAL, color="k", ls="--", lw=1, label=f"goal {TIME_GOAL}x")
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    axes[1].set_ylabel("seconds per epoch, folder / arrays")
    axes[1].legend()
    scaling = results.get("scaling", {})
    for kind in ("arrays", "folder"):
        sizes = sorted(int(key.split("_")[1]) for key in scaling if key.startswith(f"{kind}_"))
        points = [(n, scaling[f"{kind}_{n}"]["peak_pss_bytes"] / 2**20) for n in sizes]
        if points:
            axes[2].plot(*zip(*points, strict=True), marker="o", label=kind)
    axes[2].set_xlabel(f"pool images ({SCALING_SIDE}×{SCALING_SIDE})")
    axes[2].set_ylabel("peak memory (PSS, MiB)")
    axes[2].set_title("growth with the number of images")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3,000 images, one seed")
    quick = parser.parse_args().quick
    suffix = "_quick" if quick else ""
    out = HERE / "results" / f"user_data{suffix}.json"
    work = WORK.with_name(WORK.name + suffix)
    results = json.loads(out.read_text()) if out.is_file() else {}

    def save() -> None:
        results["summary"] = summarise(results)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(results, indent=1) + "\n")

    write_data(DATA)
    seeds, sizes = ((0,), (1500, 3000)) if quick else (SEEDS, SCALING_SIZES)
    for seed in seeds:
        order = ("folder", "arrays") if seed % 2 == 0 else ("arrays", "folder")  # alternate who goes first
        for kind in order:
            key = f"seed{seed}_{kind}"
            if key not in results.setdefault("default", {}):
                print(f"default search, seed {seed}, {kind} ...", flush=True)
                results["default"][key] = default_part(seed, kind, DATA, work, 3000 if quick else None)
                save()
    for size in sizes:
        for kind in ("folder", "arrays"):
            key = f"{kind}_{size}"
            if key not in results.setdefault("scaling", {}):
                print(f"scaling, {size} images, {kind} ...", flush=True)
                results["scaling"][key] = scaling_part(size, kind, DATA, work)
                save()
    save()
    plot(results, out.with_suffix(".png"))
    print(json.dumps(results["summary"], indent=1))


if __name__ == "__main__":
    main()
