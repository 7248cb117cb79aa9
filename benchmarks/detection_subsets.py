"""Which subset trains the detector best: automatic duplication, build-up, or random?

    .venv/bin/python benchmarks/detection_subsets.py            # 16k canvases, 2k test (~40 min, 2 cores)
    .venv/bin/python benchmarks/detection_subsets.py --quick    # 2k canvases: a smoke run (~3 min)
    .venv/bin/python benchmarks/detection_subsets.py --replot   # redraw the PNG from the JSON

Two `subsetsearch run` searches (task: detection) on the built-in long-tailed detection set
(Fashion-MNIST objects on 64×64 canvases, 5 classes, commonest/rarest ≈ 25): a random 10% start,
then three acquisition steps of 10% each (to 20%, 30%, 40%) by mutual information over a
checkpoint ensemble (epochs 12, 14, 16, 18 of one run of the detector trained on the current
subset). `auto_duplication` scores every image each step, already-chosen ones included, so the
subset is a multiset; `build_up` scores only the unchosen. At each step a detector is trained on
the subset, on a random subset of the same size, and once on the full set, all with the same
schedule (18 epochs over their subset), and judged on the test canvases by COCO mAP and wMAP.

The second search copies the first acquisition step's ensemble from the first (same start, same
derived seeds: the files would come out bit for bit the same). Run directories are kept in
benchmarks/.data/detection_subsets/, so an interrupted benchmark resumes where it stopped.
Results: benchmarks/results/detection_subsets.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

from subsetsearch.internal.atomic import atomic_path
from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.detect import DetectionSearch
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.pipeline.run import run_config

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "detection_subsets.json"
SCHEMES = ("auto_duplication", "build_up")
BUDGETS = [0.1, 0.2, 0.3, 0.4]


def search_config(scheme: str, quick: bool) -> dict:
    epochs = 8 if quick else 18
    return {
        "name": scheme,
        "task": "detection",
        "seed": 0,
        "detection": {"images": 2000 if quick else 16000, "test_images": 500 if quick else 2000},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.02},
        "ensemble": {"kind": "checkpoints", "start": epochs - 6, "stop": epochs, "step": 2},
        "search": {"scheme": scheme, "function": "mutual_information", "budgets": BUDGETS},
        "subset_model": {"models": 1, "steps": "all"},
        # the baselines do not depend on the scheme: train them once, beside the first
        "compare": ["random", "full"] if scheme == SCHEMES[0] else [],
    }


def share_first_step(source: Path, search: DetectionSearch) -> None:
    """Give the second search the first search's step-1 ensemble (same start, same seeds)."""
    members = source / "iter_01" / "members"
    target = search.run_dir
    if (target / "iter_01" / "members").exists() or not (members / "run_0" / "done.json").is_file():
        return
    if not (target / "config.yaml").is_file():
        search.claim_run_dir()
    staging = target / "iter_01" / ".members.copying"  # whole copies or none
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(members, staging)
    staging.rename(target / "iter_01" / "members")


def records_of(run_dir: Path, scheme: str) -> list[dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    steps = {s["subset_size"]: s for s in metrics["steps"]}
    records = []
    for name, variant in metrics["variants"].items():
        base = name.split("@")[0]
        size = variant["subset_size"]
        record = {
            "method": base if base != "auto_duplication" and base != "build_up" else scheme,
            "subset_size": size,
            "unique_images": variant["unique_samples"],
            "train_seconds": variant["train_seconds"][0],
            **{k: variant["test_metrics"][0][k] for k in ("wMAP", "mAP", "AP50", "AP_small", "AP_medium", "AP_large")},
            "per_class_AP": [variant["test_metrics"][0][f"AP_{k}"] for k in range(5)],
        }
        if base == scheme and size in steps:
            step = steps[size]
            record.update(
                step=step["iteration"],
                multiplicity_counts=step["multiplicity_counts"],
                score_seconds=step.get("score_seconds"),
                ensemble_train_seconds=step.get("train_seconds"),
            )
        records.append(record)
    return records


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = payload["records"]
    pool = payload["pool_size"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    style = {"auto_duplication": ("tab:red", "o"), "build_up": ("tab:blue", "s"), "random": ("tab:gray", "^")}
    for method, (colour, marker) in style.items():
        rows = sorted((r for r in records if r["method"] == method), key=lambda r: r["subset_size"])
        sizes = [100 * r["subset_size"] / pool for r in rows]
        ax.plot(sizes, [100 * r["wMAP"] for r in rows], marker=marker, color=colour, label=method)
        if method != "random":
            bx.plot(sizes, [100 * r["unique_images"] / pool for r in rows], marker=marker, color=colour, label=method)
    full = [r for r in records if r["method"] == "full"]
    if full:
        ax.axhline(100 * full[0]["wMAP"], color="black", ls="--", label="full set")
    ax.set_xlabel("subset size (% of the pool, counting repeats)")
    ax.set_ylabel("test wMAP (%)")
    ax.set_title("Detector trained on the subset")
    ax.legend(fontsize=8)
    bx.plot([10, 40], [10, 40], color="tab:gray", ls=":", label="all distinct")
    bx.set_xlabel("subset size (% of the pool)")
    bx.set_ylabel("unique images (% of the pool)")
    bx.set_title("Unique images in the subset")
    bx.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2k canvases, 8 epochs: a smoke run")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON")
    args = parser.parse_args()
    results = RESULTS.with_name("detection_subsets_quick.json") if args.quick else RESULTS
    if args.replot:
        plot(json.loads(results.read_text()), results.with_suffix(".png"))
        return
    data = ROOT / ".data" / ("detection_subsets_quick" if args.quick else "detection_subsets")
    started = time.perf_counter()
    records, pool = [], 0
    for scheme in SCHEMES:
        run_dir = data / scheme
        config = parse_config(search_config(scheme, args.quick))
        if scheme != SCHEMES[0]:
            share_first_step(data / SCHEMES[0], DetectionSearch(config, run_dir, Reporter()))
        t0 = time.perf_counter()
        result = run_config(config, run_dir, Reporter())
        print(f"{scheme}: {time.perf_counter() - t0:.0f} s", flush=True)
        pool = result.pool_size
        records += records_of(run_dir, scheme)
    payload = {
        "command": "python benchmarks/detection_subsets.py" + (" --quick" if args.quick else ""),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
        "pool_size": pool,
        "budgets": BUDGETS,
        "configs": {s: search_config(s, args.quick) for s in SCHEMES},
        "wall_seconds_this_session": time.perf_counter() - started,
        "records": records,
    }
    with atomic_path(results) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    plot(payload, results.with_suffix(".png"))
    by = {(r["method"], r["subset_size"]): r for r in records}
    print(f"{'method':<18}{'size':>7}{'unique':>8}{'wMAP':>8}{'mAP':>8}")
    for (method, size), r in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"{method:<18}{size:>7}{r['unique_images']:>8}{100 * r['wMAP']:>8.2f}{100 * r['mAP']:>8.2f}")


if __name__ == "__main__":
    main()
