"""Detection figures: per-class uncertainty heatmaps over images (the paper's Figure 2) and the
duplication table of automatic duplication (its Table VII), drawn from the run directory alone
(``iter_NN/heatmaps.npz`` carries the images and boxes it shows, ``dataset.npz`` the class names)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from subsetsearch.internal.atomic import atomic_path
from subsetsearch.report.figures import pyplot, save_figure
from subsetsearch.rundir import DatasetRecord, HeatmapRecord, RunLayout, read_json

BUCKETS = ("1", "2", "3", "4+")
_COLOURS = ("tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple")


def duplication_rows(run_dir: Path) -> list[dict]:
    """Per step: subset size, unique images and how many appear 1, 2, 3, 4+ times."""
    rows = []
    for step in RunLayout(run_dir).steps():
        if not step.metrics.is_file():
            continue
        m = read_json(step.metrics)
        counts = m.get("multiplicity_counts", {})
        rows.append({"step": m["iteration"], "size": m["subset_size"], "unique": m["unique_samples"], **counts})
    return rows


def duplication_markdown(rows: list[dict]) -> str:
    lines = [
        "| step | subset size | unique images | x1 | x2 | x3 | x4+ |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [r["step"], r["size"], r["unique"], *(r.get(b, 0) for b in BUCKETS)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def duplication_figure(rows: list[dict], path: Path) -> None:
    """Stacked bars: images appearing 1, 2, 3, 4+ times at each step."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bottom = np.zeros(len(rows))
    steps = [r["step"] for r in rows]
    for bucket, colour in zip(BUCKETS, ("#bbbbbb", "#f4a261", "#e76f51", "#9d0208"), strict=True):
        values = np.array([r.get(bucket, 0) for r in rows], dtype=float)
        ax.bar(steps, values, bottom=bottom, color=colour, label=f"x{bucket}")
        bottom += values
    ax.set_xlabel("step")
    ax.set_ylabel("unique images")
    ax.set_xticks(steps)
    ax.legend(title="appears", fontsize=8)
    ax.set_title("Multiplicity of the subset's images")
    save_figure(fig, path)


def heatmap_figure(record: HeatmapRecord, class_names: list[str], path: Path, title: str) -> None:
    """One row per image: the image with its boxes, then each class's heatmap over the image."""
    plt = pyplot()
    heatmaps = record.heatmaps
    n, k = heatmaps.shape[:2]
    fig, axes = plt.subplots(n, k + 1, figsize=(1.7 * (k + 1), 1.8 * n), squeeze=False)
    top = float(np.nanmax(heatmaps)) or 1.0
    size = record.images.shape[-1]
    for row, image in enumerate(record.index):
        picture = record.images[row, 0] if record.images.shape[1] == 1 else record.images[row].transpose(1, 2, 0)
        mine = record.box_image == row
        for col in range(k + 1):
            ax = axes[row, col]
            ax.imshow(picture, cmap="gray", vmin=0, vmax=255)  # cmap and range apply to one channel only
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                for (x0, y0, x1, y1), label in zip(record.boxes[mine], record.box_labels[mine], strict=True):
                    rect = plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.2)
                    rect.set_edgecolor(_COLOURS[label % len(_COLOURS)])
                    ax.add_patch(rect)
                ax.set_ylabel(f"#{image}\nscore {record.image_scores[row]:.3f}", fontsize=7)
                continue
            ax.imshow(heatmaps[row, col - 1], cmap="inferno", alpha=0.6, vmin=0, vmax=top, extent=(0, size, size, 0))
            if row == 0:
                ax.set_title(class_names[col - 1] if col - 1 < len(class_names) else str(col - 1), fontsize=8)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def write_detection_figures(run_dir: Path) -> list[Path]:
    """The figures of a detection run directory into ``run_dir/report/``; the paths written (a
    step whose ``heatmaps.npz`` predates its images is skipped)."""
    layout = RunLayout(run_dir)
    report = layout.report
    written = []
    config = {}
    if layout.config.is_file():
        import yaml

        config = yaml.safe_load(layout.config.read_text()) or {}
    function = config.get("search", {}).get("function", "acquisition")
    dataset = DatasetRecord.load(layout.dataset)
    class_names = dataset.class_names if dataset is not None else []
    for step in layout.steps():
        record = HeatmapRecord.load(step.heatmaps)
        if record is None:
            continue
        path = report / f"heatmaps_{step.name}.png"
        title = f"{step.name}: per-class {function} heatmaps (top-scored rows first, then random)"
        heatmap_figure(record, class_names, path, title)
        written.append(path)
    rows = duplication_rows(run_dir)
    if rows:
        with atomic_path(report / "duplication.md") as tmp:
            tmp.write_text(duplication_markdown(rows))
        duplication_figure(rows, report / "duplication.png")
        written += [report / "duplication.md", report / "duplication.png"]
    return written
