"""Which subset trains the detector best: automatic duplication, build-up, or random?

    .venv/bin/python benchmarks/detection_subsets.py            # 16k canvases, 2k test (~40 min, 2 cores)
    .venv/bin/python benchmarks/detection_subsets.py --seed 1   # another trial, added to the same JSON
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

The second search takes the first acquisition step's ensemble from the first, found by its
fingerprint (same start, same derived seeds: the files would come out bit for bit the same). Run
directories are kept in
benchmarks/.data/detection_subsets/, so an interrupted benchmark resumes where it stopped.
Results: benchmarks/results/detection_subsets.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary_stats import difference, mean_sd, paired, text

from subsetsearch.internal.atomic import atomic_path
from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.pipeline.run import search_for
from subsetsearch.pipeline.study import StudyWork
from subsetsearch.rundir import RunLayout

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "detection_subsets.json"
SCHEMES = ("auto_duplication", "build_up")
BUDGETS = [0.1, 0.2, 0.3, 0.4]


def search_config(scheme: str, quick: bool, seed: int = 0) -> dict:
    epochs = 8 if quick else 18
    return {
        "name": scheme,
        "task": "detection",
        "seed": seed,  # the canvases, the random start and every initialisation
        "detection": {"images": 2000 if quick else 16000, "test_images": 500 if quick else 2000},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.02},
        "ensemble": {"kind": "checkpoints", "start": epochs - 6, "stop": epochs, "step": 2},
        "search": {"scheme": scheme, "function": "mutual_information", "budgets": BUDGETS},
        "subset_model": {"models": 1, "steps": "all"},
        # the baselines do not depend on the scheme: train them once, beside the first
        "compare": ["random", "full"] if scheme == SCHEMES[0] else [],
    }


def shared_with_first(data: Path) -> StudyWork:
    """The first scheme's run as a donor: later schemes take its finished work where theirs has the
    same fingerprint (the same start and seeds give the same step-1 ensemble)."""
    shared = StudyWork()
    shared.add(RunLayout(data / SCHEMES[0]))
    return shared


def records_of(run_dir: Path, scheme: str, seed: int) -> list[dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    steps = {s["subset_size"]: s for s in metrics["steps"]}
    records = []
    for name, variant in metrics["variants"].items():
        base = name.split("@")[0]
        size = variant["subset_size"]
        record = {
            "seed": seed,
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

    pool = payload["pool_size"]
    groups = grouped(payload)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    style = {"auto_duplication": ("tab:red", "o"), "build_up": ("tab:blue", "s"), "random": ("tab:gray", "^")}
    for method, (colour, marker) in style.items():
        keys = sorted(size for m, size in groups if m == method)
        sizes = [100 * size / pool for size in keys]
        wmap = [100 * np.array([r["wMAP"] for r in groups[method, size]]) for size in keys]
        sd = [w.std(ddof=1) if len(w) > 1 else 0.0 for w in wmap]
        ax.errorbar(sizes, [w.mean() for w in wmap], yerr=sd, marker=marker, color=colour, capsize=3, label=method)
        if method != "random":
            unique = [100 * np.mean([r["unique_images"] for r in groups[method, size]]) / pool for size in keys]
            bx.plot(sizes, unique, marker=marker, color=colour, label=method)
    full = [r["wMAP"] for (m, _), rows in groups.items() if m == "full" for r in rows]
    if full:
        ax.axhline(100 * np.mean(full), color="black", ls="--", label="full set")
    ax.set_title(f"Detector trained on the subset (mean ± sample sd, n={len(seeds_of(payload))} seeds)")
    ax.set_xlabel("subset size (% of the pool, counting repeats)")
    ax.set_ylabel("test wMAP (%)")
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
    parser.add_argument("--seed", type=int, default=0, help="the trial; its records replace that seed's in the JSON")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON")
    args = parser.parse_args()
    results = RESULTS.with_name("detection_subsets_quick.json") if args.quick else RESULTS
    if args.replot:
        payload = json.loads(results.read_text())
        plot(payload, results.with_suffix(".png"))
        print(table(payload))
        return
    data = ROOT / ".data" / ("detection_subsets_quick" if args.quick else "detection_subsets") / f"seed{args.seed}"
    started = time.perf_counter()
    records, pool = [], 0
    for scheme in SCHEMES:
        run_dir = data / scheme
        config = parse_config(search_config(scheme, args.quick, args.seed))
        shared = shared_with_first(data) if scheme != SCHEMES[0] else None
        t0 = time.perf_counter()
        result = search_for(config, run_dir, Reporter(), shared=shared).run()
        print(f"{scheme}: {time.perf_counter() - t0:.0f} s", flush=True)
        pool = result.pool_size
        records += records_of(run_dir, scheme, args.seed)
    previous = json.loads(results.read_text()) if results.is_file() else {}
    kept = [r for r in previous.get("records", []) if r["seed"] != args.seed]
    command = "python benchmarks/detection_subsets.py" + (" --quick" if args.quick else "")
    payload = {
        "commands": sorted({*previous.get("commands", []), command + (f" --seed {args.seed}" if args.seed else "")}),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "pool_size": pool,
        "budgets": BUDGETS,
        "configs": {s: search_config(s, args.quick, 0) for s in SCHEMES},
        "wall_seconds": {**previous.get("wall_seconds", {}), str(args.seed): time.perf_counter() - started},
        "records": sorted(kept + records, key=lambda r: (r["seed"], r["method"], r["subset_size"])),
    }
    with atomic_path(results) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    plot(payload, results.with_suffix(".png"))
    print(table(payload))


def table(payload: dict) -> str:
    """Means ± sample sd (n seeds) per method and size, then paired differences (by seed) of wMAP."""
    lines = [f"{'method':<18}{'size':>7}{'unique':>9}{'wMAP':>22}{'mAP':>22}"]
    groups = grouped(payload)
    for (method, size), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = [f"{np.mean([r['unique_images'] for r in rows]):>9.0f}"]
        for key in ("wMAP", "mAP"):
            cells.append(f"{text(mean_sd([r[key] for r in rows]), 100):>22}")
        lines.append(f"{method:<18}{size:>7}" + "".join(cells))
    lines.append("wMAP differences paired by seed, points (mean [95% interval], n):")
    for a, b in (("auto_duplication", "build_up"), ("auto_duplication", "random"), ("build_up", "random")):
        for size in sorted({size for method, size in groups if method == a}):
            if (b, size) not in groups:
                continue
            d = paired(*({r["seed"]: r["wMAP"] for r in groups[m, size]} for m in (a, b)))
            lines.append(f"  {a} - {b} at {size}: {difference(d)} (n={d['n']})")
    return "\n".join(lines)


def seeds_of(payload: dict) -> list[int]:
    return sorted({r["seed"] for r in payload["records"]})


def grouped(payload: dict) -> dict[tuple[str, int], list[dict]]:
    """Records by (method, subset size), one per seed."""
    out: dict[tuple[str, int], list[dict]] = {}
    for r in payload["records"]:
        out.setdefault((r["method"], r["subset_size"]), []).append(r)
    return out


if __name__ == "__main__":
    main()
