"""Matplotlib figures of the report and the studies, each written atomically as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from subsetsearch.internal.atomic import atomic_path

_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def _sd(values: list[float]) -> float:
    """Sample standard deviation (ddof=1) of a list, 0 for fewer than two values (no error bar)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: object, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)


def _finish_axes(fig: object, ax: object, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    """Labels, title, grid and legend of a one-panel figure, then save it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def budget_figure(
    path: Path, title: str, series: dict[str, dict[int, list[float]]], full: list[float], pool: int | None
) -> None:
    """Accuracy (mean ± sample sd over trials) against subset size, one line per series, the
    full-pool accuracy as a horizontal band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    scale = 100 / pool if pool else 1
    for colour, (name, points) in zip(_PALETTE * 4, series.items(), strict=False):
        sizes = sorted(points)
        means = np.array([100 * np.mean(points[s]) for s in sizes])
        stds = np.array([100 * _sd(points[s]) for s in sizes])
        xs = np.array(sizes) * scale
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, color=colour, label=name)
    if full:
        mean, std = 100 * np.mean(full), 100 * _sd(full)
        ax.axhline(mean, color="black", ls="--", lw=1, label="full pool")
        ax.axhspan(mean - std, mean + std, color="black", alpha=0.08)
    xlabel = "subset size (% of pool)" if pool else "subset size (samples)"
    _finish_axes(fig, ax, path, xlabel, "test accuracy (%), mean ± sample sd", title)


def grouped_bars(path: Path, title: str, groups: dict[str, dict[str, list[float]]]) -> None:
    """Bars (mean, with the sample sd as an error bar) per group and series, in percent."""
    plt = pyplot()
    names = list(groups)
    series = list(dict.fromkeys(k for g in groups.values() for k in g))
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names) * max(1, len(series)) / 2), 3.8))
    width = 0.8 / max(len(series), 1)
    lows = []
    for j, (name, colour) in enumerate(zip(series, _PALETTE * 4, strict=False)):
        values = [groups[g].get(name, []) for g in names]
        means = np.array([100 * np.mean(v) if v else np.nan for v in values])
        stds = np.array([100 * _sd(v) for v in values])
        xs = np.arange(len(names)) + (j - (len(series) - 1) / 2) * width
        ax.bar(xs, means, width, yerr=stds, capsize=2, color=colour, label=name)
        lows += [m for m in means if np.isfinite(m)]
    if lows:
        ax.set_ylim(max(0.0, min(lows) - 5), min(100.0, max(lows) + 2))
    ax.set_xticks(np.arange(len(names)), names, rotation=15, fontsize=8)
    ax.set_ylabel("%, mean ± sample sd")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def consensus_figure(path: Path, data: dict[str, dict]) -> None:
    """Per cell: the share of unselected samples each consecutive checkpoint pair agrees on, and
    (dashed) the share all checkpoints agree on."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for colour, (cell, d) in zip(_PALETTE * 4, data.items(), strict=False):
        n = max(d["samples"], 1)
        agree = 100 * np.asarray(d["pair_agree"]) / n
        xs = np.arange(1, len(agree) + 1)
        ax.plot(xs, agree, marker="o", color=colour, label=f"{cell}: consecutive pair")
        ax.axhline(100 * d["all_agree"] / n, color=colour, ls="--", lw=1, label=f"{cell}: all agree (first run)")
        ax.set_xticks(xs, [_pair_label(a, b, d["pairs"]) for a, b in d["pairs"]], fontsize=7, rotation=45)
    title = "Checkpoint consensus on the unselected samples"
    _finish_axes(fig, ax, path, "checkpoint pair (epochs)", "unselected samples agreed on (%)", title)


def _pair_label(a: str, b: str, pairs: list) -> str:
    """``run_0/epoch_006``, ``run_0/epoch_008`` -> ``6→8`` (``r0 6→8`` when several runs are paired)."""

    def epoch(name: str) -> str:
        return str(int(name.split("epoch_")[-1])) if "epoch_" in name else name

    runs = {p[0].split("/")[0] for p in pairs}
    prefix = f"r{a.split('/')[0].removeprefix('run_')} " if len(runs) > 1 else ""
    return f"{prefix}{epoch(a)}→{epoch(b)}"


def curves_figure(path: Path, data: dict[str, dict]) -> None:
    """Validation accuracy over training seconds: subset model (solid) and full model (dashed)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for colour, (key, d) in zip(_PALETTE * 4, data.items(), strict=False):
        for name, style in ((d["subset"], "-"), ("full", "--")):
            c = d["curves"][name]
            ax.plot(
                c["seconds"],
                100 * np.asarray(c["val_accuracy"]),
                style,
                marker=".",
                color=colour,
                label=f"{key} {name}",
            )
        ax.axhline(100 * d["target"], color=colour, lw=0.6, alpha=0.5)
    title = "Validation accuracy over training time (thin line: full's best − 0.5)"
    _finish_axes(fig, ax, path, "training time (s)", "validation accuracy (%)", title)


def class_balance_figure(path: Path, balance: dict[str, np.ndarray], class_names: list[str] | None = None) -> None:
    """Share of each class in the full pool and in each subset."""
    plt = pyplot()
    names = list(balance)
    num_classes = len(next(iter(balance.values())))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * num_classes * max(1, len(names)) / 2), 3.6))
    width = 0.8 / len(names)
    for j, (name, colour) in enumerate(zip(names, ("black", *_PALETTE * 4), strict=False)):
        xs = np.arange(num_classes) + (j - (len(names) - 1) / 2) * width
        ax.bar(xs, 100 * balance[name], width, color=colour, alpha=0.85 if j else 0.5, label=name)
    labels = class_names or [str(c) for c in range(num_classes)]
    ax.set_xticks(np.arange(num_classes), labels, fontsize=8, rotation=30 if class_names else 0)
    ax.set_ylabel("share of the set (%)")
    ax.set_title("Class balance: each subset against the full pool", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


#: Panels per row of the score histograms.
HISTOGRAM_COLUMNS = 4


def score_histograms_figure(path: Path, title: str, scores: dict[str, np.ndarray], chosen: np.ndarray) -> None:
    """One panel per acquisition function: its scores of the scored rows, selected rows stacked
    over the rest."""
    plt = pyplot()
    from matplotlib.ticker import LogLocator, NullFormatter

    columns = min(HISTOGRAM_COLUMNS, len(scores))
    rows = -(-len(scores) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.6 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(scores) :]:
        ax.set_visible(False)
    for ax, (name, values) in zip(axes.flat, scores.items(), strict=False):
        finite = np.isfinite(values)
        bins = np.linspace(np.nanmin(values[finite]), np.nanmax(values[finite]) + 1e-12, 31) if finite.any() else 30
        ax.hist(
            [values[finite & ~chosen], values[finite & chosen]],
            bins=bins,
            stacked=True,
            color=("#9ecae1", "#de2d26"),
            label=("not selected", "selected"),
        )
        ax.set_title(name, fontsize=9)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, numticks=5))
        ax.yaxis.set_minor_formatter(NullFormatter())  # 2×10², 6×10², ... labels collide with their neighbours
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
    for ax in axes[:, 0]:
        ax.set_ylabel("samples")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def cost_figure(path: Path, steps: list[dict], models: dict[str, float]) -> None:
    """Left: training and scoring seconds of each step; right: mean training seconds of each subset
    model variant (the final subset against the full pool)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), squeeze=True)
    xs = np.arange(len(steps))
    train = np.array([s.get("train_seconds", 0.0) for s in steps])
    score = np.array([s.get("score_seconds", 0.0) for s in steps])
    left.bar(xs, train, color="tab:blue", label="ensemble training")
    left.bar(xs, score, bottom=train, color="tab:orange", label="scoring")
    left.set_xticks(xs, [f"iter_{s['iteration']:02d}" for s in steps], fontsize=8)
    device = ", ".join(sorted({str(s.get("device", "?")) for s in steps}))
    left.set_ylabel(f"seconds ({device})")
    left.set_title("Search cost per step", fontsize=10)
    left.legend(fontsize=7)
    names = list(models)
    right.barh(np.arange(len(names)), [models[n] for n in names], color="tab:green")
    right.set_yticks(np.arange(len(names)), names, fontsize=8)
    right.set_xlabel("training seconds per subset model")
    right.set_title("Subset models vs the full pool", fontsize=10)
    save_figure(fig, path)
