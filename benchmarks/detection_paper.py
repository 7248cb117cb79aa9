"""The paper's detection protocol (Table VI): automatic duplication against build up and random,
on clips of near-copy frames (the paper's driving video) and on independent canvases.

    .venv/bin/python benchmarks/detection_paper.py             # every part not yet done (~80 min, 2 cores)
    .venv/bin/python benchmarks/detection_paper.py --commit    # and git-commit the results after each part
    .venv/bin/python benchmarks/detection_paper.py --quick     # a smoke run on 600 images (~3 min)
    .venv/bin/python benchmarks/detection_paper.py --tables    # print the tables from the JSON

The protocol, scaled from the paper's 847k images to a pool of 4,000: a random start of 11.8%
(the paper's 100k), then three steps by mutual information to 35.4%, 59.0% and 82.6% (its 300k,
500k and 700k), an ensemble of six members (epochs 10-15 of the detector trained on the step's
subset), 15 epochs for every detector. Automatic duplication scores the whole pool each step, so
its subset is a multiset; build up scores only the unchosen images. At each step a detector is
trained on each scheme's subset and on a random subset of the same size, and once on the full
pool; all are judged on 1,000 test images of the same setting by COCO mAP and this project's
wMAP (train/detection_metrics.py). Loss weights are the inverse box frequency of each model's own
training set, as the paper says; the ``weights`` parts train both schemes again with the pool's
weights, to measure which is better.

Parts, each resumable (run directories in benchmarks/.data/detection_paper/) and recorded in
benchmarks/results/detection_paper.json as it finishes: ``sequences`` and ``canvases`` for seeds
0, 1, 2, then ``weights`` (sequences, pool weights) for seeds 0, 1, 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection_subsets import SCHEMES, grouped, records_of, shared_with_first
from summary_stats import difference, mean_sd, paired, text

from subsetsearch.internal.atomic import atomic_path
from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.pipeline.run import search_for

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "detection_paper.json"
#: The paper's 100k, 300k, 500k and 700k of 847k training images.
BUDGETS = [0.118, 0.354, 0.59, 0.826]
SEEDS = (0, 1, 2)
PARTS = [(setting, seed) for setting in ("sequences", "canvases") for seed in SEEDS] + [("weights", s) for s in SEEDS]
SEQUENCE = {"clip_length": 8, "speed": 1.5, "background_change": 0.05}
CLASS_NAMES = ("car", "pedestrian", "bicycle", "traffic_sign", "traffic_light")


def search_config(setting: str, scheme: str, seed: int, quick: bool) -> dict:
    epochs = 6 if quick else 15
    detection: dict = {"images": 600 if quick else 4000, "test_images": 200 if quick else 1000}
    if setting in ("sequences", "weights"):
        detection["sequence"] = SEQUENCE
    if setting == "weights":
        detection["class_weights"] = "pool"
    return {
        "name": f"{setting}-{scheme}",
        "task": "detection",
        "seed": seed,  # the images, the random start and every initialisation
        "detection": detection,
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.02},
        "ensemble": {"kind": "checkpoints", "start": epochs - 5, "stop": epochs},  # six members
        "search": {"scheme": scheme, "function": "mutual_information", "budgets": BUDGETS},
        "subset_model": {"models": 1, "steps": "all"},
        # the baselines do not depend on the scheme, nor (for weights) on a rerun: train them once
        "compare": ["random", "full"] if scheme == SCHEMES[0] and setting != "weights" else [],
    }


def run_part(setting: str, seed: int, quick: bool) -> tuple[list[dict], int, float]:
    data = ROOT / ".data" / ("detection_paper_quick" if quick else "detection_paper") / setting / f"seed{seed}"
    started = time.perf_counter()
    records, pool = [], 0
    for scheme in SCHEMES:
        run_dir = data / scheme
        config = parse_config(search_config(setting, scheme, seed, quick))
        shared = shared_with_first(data) if scheme != SCHEMES[0] else None
        result = search_for(config, run_dir, Reporter(), shared=shared).run()
        pool = result.pool_size
        records += [{**r, "setting": setting} for r in records_of(run_dir, scheme, seed)]
    return records, pool, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="600 images, 6 epochs, one seed: a smoke run")
    parser.add_argument("--commit", action="store_true", help="git-commit the results after each part")
    parser.add_argument("--tables", action="store_true", help="print the tables from the JSON")
    args = parser.parse_args()
    results = RESULTS.with_name("detection_paper_quick.json") if args.quick else RESULTS
    if args.tables:
        print(tables(json.loads(results.read_text())))
        return
    parts = [(s, seed) for s, seed in PARTS if seed == 0] if args.quick else PARTS
    for setting, seed in parts:
        payload = json.loads(results.read_text()) if results.is_file() else {"records": [], "wall_seconds": {}}
        key = f"{setting}/{seed}"
        if key in payload["wall_seconds"]:
            continue
        print(f"part {key}", flush=True)
        records, pool, seconds = run_part(setting, seed, args.quick)
        payload.update(
            command="python benchmarks/detection_paper.py" + (" --quick" if args.quick else ""),
            machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
            pool_size=pool,
            budgets=BUDGETS,
            configs={
                f"{s}/{scheme}": search_config(s, scheme, 0, args.quick)
                for s in ("sequences", "canvases", "weights")
                for scheme in SCHEMES
            },
        )
        payload["wall_seconds"][key] = seconds
        kept = [r for r in payload["records"] if (r["setting"], r["seed"]) != (setting, seed)]
        payload["records"] = sorted(
            kept + records, key=lambda r: (r["setting"], r["seed"], r["method"], r["subset_size"])
        )
        with atomic_path(results) as tmp:
            tmp.write_text(json.dumps(payload, indent=1) + "\n")
        plot(payload, results.with_suffix(".png"))
        print(tables(payload), flush=True)
        if args.commit:
            subprocess.run(["git", "add", str(results), str(results.with_suffix(".png"))], check=True)
            message = f"benchmarks: detection_paper part {key} ({seconds / 60:.0f} min)"
            subprocess.run(["git", "commit", "-q", "-m", message], check=True)


def tables(payload: dict) -> str:
    """Table VI per setting (wMAP mean ± sd, n, unique images), paired differences by seed, mAP
    and per-class AP, Table VII duplication counts, and the class-weight comparison."""
    pool = payload["pool_size"]
    out = []
    for setting in ("sequences", "canvases"):
        records = [r for r in payload["records"] if r["setting"] == setting]
        if not records:
            continue
        groups = grouped({"records": records})
        sizes = sorted({size for method, size in groups if method == "build_up"})
        full = groups.get(("full", pool), [])
        out.append(f"## {setting}: wMAP (%), mean ± sd (n); auto duplication's unique images in brackets")
        out.append("| step | train images | automatic duplication | build up | random |")
        out.append("|---|---:|---:|---:|---:|")
        for step, size in enumerate(sizes, start=1):
            cells = []
            for method in ("auto_duplication", "build_up", "random"):
                rows = groups.get((method, size), [])
                cell = text(mean_sd([r["wMAP"] for r in rows]), 100) if rows else "-"
                if method == "auto_duplication" and rows:
                    cell += f" ({np.mean([r['unique_images'] for r in rows]):.0f})"
                cells.append(cell)
            out.append(f"| {step} | {size} ({100 * size / pool:.1f}%) | " + " | ".join(cells) + " |")
        if full:
            out.append(f"| full | {pool} | {text(mean_sd([r['wMAP'] for r in full]), 100)} | | |")
        out.append("")
        out.append("wMAP differences paired by seed, points: mean [95% interval] (n)")
        comparisons = [("auto_duplication", "build_up"), ("auto_duplication", "random"), ("build_up", "random")]
        for size in sizes:
            parts = []
            for a, b in comparisons:
                if (a, size) in groups and (b, size) in groups:
                    parts.append(f"{a} − {b} {_paired(groups[a, size], groups[b, size])}")
            for method in ("auto_duplication", "build_up"):
                if (method, size) in groups and full:
                    parts.append(f"{method} − full {_paired(groups[method, size], full)}")
            out.append(f"- {size}: " + "; ".join(parts))
        out.append("")
        out.append("mAP and per-class AP (%), means over seeds")
        out.append("| method | images | mAP | " + " | ".join(CLASS_NAMES) + " |")
        out.append("|---|---:|---:|" + "---:|" * len(CLASS_NAMES))
        for (method, size), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            per_class = np.mean([r["per_class_AP"] for r in rows], axis=0)
            cells = " | ".join(f"{100 * v:.2f}" for v in per_class)
            out.append(f"| {method} | {size} | {100 * np.mean([r['mAP'] for r in rows]):.2f} | {cells} |")
        out.append("")
        out.append("Table VII: automatic duplication's images by how often the subset holds them (mean over seeds)")
        out.append("| step | unique | 1× | 2× | 3× | 4+× |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for step, size in enumerate(sizes, start=1):
            rows = groups.get(("auto_duplication", size), [])
            if rows:
                counts = [np.mean([r["multiplicity_counts"][k] for r in rows]) for k in ("1", "2", "3", "4+")]
                unique = np.mean([r["unique_images"] for r in rows])
                out.append(f"| {step} | {unique:.0f} | " + " | ".join(f"{c:.0f}" for c in counts) + " |")
        out.append("")
    weights = [r for r in payload["records"] if r["setting"] == "weights"]
    if weights:
        subset = grouped({"records": [r for r in payload["records"] if r["setting"] == "sequences"]})
        pooled = grouped({"records": weights})
        out.append("Loss weights (sequences): the pool's minus each subset's own, wMAP points, paired by seed")
        for (method, size), rows in sorted(pooled.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            if (method, size) in subset:
                out.append(f"- {method} at {size}: {_paired(rows, subset[method, size])}")
        out.append("")
    return "\n".join(out)


def _paired(a: list[dict], b: list[dict]) -> str:
    d = paired({r["seed"]: r["wMAP"] for r in a}, {r["seed"]: r["wMAP"] for r in b})
    return f"{difference(d)} (n={d['n']})"


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pool = payload["pool_size"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    style = {"auto_duplication": ("tab:red", "o"), "build_up": ("tab:blue", "s"), "random": ("tab:gray", "^")}
    for ax, setting in zip(axes, ("sequences", "canvases"), strict=True):
        groups = grouped({"records": [r for r in payload["records"] if r["setting"] == setting]})
        for method, (colour, marker) in style.items():
            keys = sorted(size for m, size in groups if m == method)
            if not keys:
                continue
            wmap = [100 * np.array([r["wMAP"] for r in groups[method, size]]) for size in keys]
            sd = [w.std(ddof=1) if len(w) > 1 else 0.0 for w in wmap]
            x = [100 * size / pool for size in keys]
            ax.errorbar(x, [w.mean() for w in wmap], yerr=sd, marker=marker, color=colour, capsize=3, label=method)
        full = [r["wMAP"] for r in groups.get(("full", pool), [])]
        if full:
            ax.axhline(100 * np.mean(full), color="black", ls="--", label="full pool")
        seeds = len({r["seed"] for rows in groups.values() for r in rows})
        ax.set_title(f"{setting} (mean ± sample sd, n={seeds} seeds)")
        ax.set_xlabel("subset size (% of the pool, counting repeats)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test wMAP (%)")
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
