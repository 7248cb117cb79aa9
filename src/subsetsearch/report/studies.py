"""The paper's studies over stored run directories: each function takes the runs of a study's cells
(cell name -> one :class:`RunDir` per trial) and returns a :class:`StudyResult` (a table, the
numbers behind it for ``study.json``, a figure, and what was missing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from subsetsearch.report.analyses import checkpoint_consensus, mean_sd, selected_accuracy, time_to_accuracy
from subsetsearch.rundir import RunDir, split_variant, variant_scores

Cells = dict[str, list[RunDir]]
#: pool labels of a run (the ensembles study compares the ensemble's predictions with them)
LabelsFn = Callable[[RunDir], np.ndarray]


@dataclass
class StudyResult:
    title: str
    header: list[str]
    rows: list[list[str]]
    data: dict
    figure: Callable[[Path], None] | None = None
    missing: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.header) + " |"]
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(self.header) - 1)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"


def percent_text(values: list[float]) -> str:
    """Accuracies as 'mean ± sample sd (n=k)' in percent ('-' for none; no ± for one value)."""
    mean, sd = mean_sd(values)
    if not values:
        return "-"
    return f"{100 * mean:.2f} ± {100 * sd:.2f} (n={len(values)})" if len(values) > 1 else f"{100 * mean:.2f}"


def _finished(cells: Cells) -> tuple[Cells, list[str]]:
    """Cells with the runs that finished, and a line per run that did not."""
    kept, missing = {}, []
    for cell, runs in cells.items():
        kept[cell] = [r for r in runs if r.metrics is not None]
        missing += [f"{cell}: {r.path.name} has not finished" for r in runs if r.metrics is None]
    return kept, missing


def _mean_scores(runs: list[RunDir], name: str) -> list[float]:
    """Per run that has variant ``name``: the mean score of its models."""
    out = []
    for run in runs:
        variants = run.variants()
        if name in variants:
            out.append(float(np.mean(variant_scores(variants[name])[1])))
    return out


def budget_points(run: RunDir, base: str) -> dict[int, list[float]]:
    """Test accuracies of the variants named ``base`` or ``base@iter_NN``, by subset size."""
    points: dict[int, list[float]] = {}
    for name, v in run.variants().items():
        if split_variant(name)[0] == base:
            points.setdefault(int(v["subset_size"]), []).extend(variant_scores(v)[1])
    return points


def _trials(runs: list[RunDir], base: str) -> dict[int, list[float]]:
    """Per subset size, the mean accuracy of each trial (run) for the variants ``base``."""
    out: dict[int, list[float]] = {}
    for run in runs:
        for size, accs in budget_points(run, base).items():
            out.setdefault(size, []).append(float(np.mean(accs)))
    return out


def _baseline(cells: Cells, base: str) -> dict[int, list[float]]:
    """A baseline (``random`` or ``full``) trained beside the cells: one value per trial (seed) and
    size (cells of a trial share their baselines, so the first cell that has one gives it)."""
    by_trial: dict[str, dict[int, float]] = {}
    for _cell, runs in cells.items():
        if base == "random" and any(r.scheme == "random" for r in runs):
            continue  # a random scheme's own variants are not the compare baseline
        for run in runs:
            for size, accs in budget_points(run, base).items():
                trial = str(run.config.get("seed", run.path.name))
                by_trial.setdefault(trial, {}).setdefault(size, float(np.mean(accs)))
    out: dict[int, list[float]] = {}
    for sizes in by_trial.values():
        for size, acc in sizes.items():
            out.setdefault(size, []).append(acc)
    return out


def _budget_study(title: str, cells: Cells) -> StudyResult:
    """A table of each cell's subset models (its scheme's variants) by subset size, with the baselines."""
    cells, missing = _finished(cells)
    pool = next((int(r.metrics["pool_size"]) for runs in cells.values() for r in runs), None)
    series: dict[str, dict[int, list[float]]] = {}
    for cell, runs in cells.items():
        if runs:
            series[cell] = _trials(runs, runs[0].scheme)
        else:
            missing.append(f"{cell}: no finished run")
    random = _baseline(cells, "random")
    if random and "random" not in series:
        series["random (baseline)"] = random
    full = _baseline(cells, "full")
    full_values = next(iter(full.values()), [])
    sizes = sorted({s for points in series.values() for s in points})
    header = ["", *[f"{100 * s / pool:.1f}%" if pool else str(s) for s in sizes]]
    rows = [[name, *[percent_text(points.get(s, [])) for s in sizes]] for name, points in series.items()]
    if full_values:
        rows.append(["full", *(["-"] * (len(sizes) - 1)), percent_text(full_values)])  # under the largest size
    data = {
        "pool_size": pool,
        "sizes": sizes,
        "series": {
            name: {
                str(s): {"mean": mean_sd(v)[0], "sd": mean_sd(v)[1], "n": len(v), "trials": v}
                for s, v in points.items()
            }
            for name, points in series.items()
        },
        "full": {
            "mean": mean_sd(full_values)[0],
            "sd": mean_sd(full_values)[1],
            "n": len(full_values),
            "trials": full_values,
        },
    }

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import budget_figure, grouped_bars

        if len(sizes) == 1:  # one budget: bars read better than single points
            groups = {name: {"test accuracy": points.get(sizes[0], [])} for name, points in series.items()}
            if full_values:
                groups["full"] = {"test accuracy": full_values}
            grouped_bars(path, title, groups)
        else:
            budget_figure(path, title, series, full_values, pool)

    return StudyResult(title, header, rows, data, figure if series else None, missing)


def schemes(cells: Cells) -> StudyResult:
    """Accuracy of each scheme at each subset size, mean ± std over trials, and the full-pool line
    (paper Figure 3). A cell's curve is its scheme's subset models (``steps: all`` gives one per budget)."""
    return _budget_study("Schemes × budgets: test accuracy (%)", cells)


def functions(cells: Cells) -> StudyResult:
    """Acquisition functions × budgets (paper Table I): one cell per function."""
    return _budget_study("Acquisition functions × budgets: test accuracy (%)", cells)


def outliers(cells: Cells) -> StudyResult:
    """Subset accuracy with the top fraction of scores set aside (paper Table IV): one cell per
    ``skip_top``; random and full beside them."""
    return _budget_study("Outliers: test accuracy (%) by the share of top scores set aside", cells)


def architecture(cells: Cells) -> StudyResult:
    """A subset chosen with the config's acquisition model, trained on with each cell's subset model,
    against a random subset and the full pool with that same model (paper Table V)."""
    cells, missing = _finished(cells)
    header = ["subset model", "acquired subset", "random subset", "full pool", "vs random", "vs full"]
    rows, data = [], {}
    for cell, runs in cells.items():
        if not runs:
            missing.append(f"{cell}: no finished run")
            continue
        model = runs[0].config.get("subset_model", {}).get("model") or runs[0].config.get("model", {})
        label = f"{cell} ({model.get('name')}, width {model.get('width')})"
        final = _mean_scores(runs, runs[0].scheme)
        rand, full = _mean_scores(runs, "random"), _mean_scores(runs, "full")

        def gap(a: list[float], b: list[float]) -> str:
            return f"{100 * (np.mean(a) - np.mean(b)):+.2f}" if a and b else "-"

        rows.append(
            [label, percent_text(final), percent_text(rand), percent_text(full), gap(final, rand), gap(final, full)]
        )
        data[cell] = {"model": model, "subset": final, "random": rand, "full": full}

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import grouped_bars

        groups = {c: {k: d[k] for k in ("subset", "random", "full")} for c, d in data.items()}
        grouped_bars(path, "Architecture shift: test accuracy (%)", groups)

    return StudyResult("Architecture shift: test accuracy (%)", header, rows, data, figure, missing)


def ensembles(cells: Cells, labels_of: LabelsFn) -> StudyResult:
    """Each ensemble configuration's accuracy on the samples it selected and on those it left
    (paper Table II), and the test accuracy of the subset model trained on its subset (Table III).
    Reads the first acquisition step that scored (its stats.npz) and the subset it chose."""
    cells, missing = _finished(cells)
    header = ["ensemble", "members", "accuracy on selected", "accuracy on unselected", "subset model"]
    rows, data = [], {}
    for cell, runs in cells.items():
        sel, unsel, model, members = [], [], [], None
        for run in runs:
            step = next((s for s in run.steps if (s.folder / "stats.npz").is_file()), None)
            if step is None:
                missing.append(f"{cell}: {run.path.name} has no scored step")
                continue
            stats, subset = step.stats(), step.subset()
            labels = labels_of(run)
            scored = np.flatnonzero(stats.member_counts > 0)
            predicted = np.argmax(stats.mean_probs(), axis=1)
            chosen = subset.index[subset.iteration == step.iteration]
            a, b = selected_accuracy(predicted, labels, scored, chosen)
            sel.append(a)
            unsel.append(b)
            members = step.metrics.get("members")
            model += _mean_scores([run], run.scheme)
        if not sel:
            continue
        rows.append([cell, str(members), percent_text(sel), percent_text(unsel), percent_text(model)])
        data[cell] = {"members": members, "selected": sel, "unselected": unsel, "subset_model": model}

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import grouped_bars

        groups = {
            c: {
                "ensemble on selected": d["selected"],
                "ensemble on unselected": d["unselected"],
                "subset model (test)": d["subset_model"],
            }
            for c, d in data.items()
        }
        grouped_bars(path, "Ensemble configurations: accuracy (%)", groups)

    title = "Ensemble configurations: accuracy (%) on the selected and unselected pool, and of the subset model"
    return StudyResult(title, header, rows, data, figure if data else None, missing)


def consensus(cells: Cells) -> StudyResult:
    """For the samples left unselected, how many each consecutive pair of checkpoints predicts
    alike and how many every checkpoint of the run agrees on (paper Figure 4); one cell per
    architecture. Reads the votes of the last scored step of each cell's first trial."""
    header = ["cell", "unselected", "consecutive pairs agree (min / mean / max %)", "all checkpoints agree (%)"]
    rows, data, missing = [], {}, []
    for cell, runs in cells.items():
        run = runs[0] if runs else None
        found = _consensus_of(run) if run is not None else None
        if found is None:
            missing.append(f"{cell}: no step with the votes of two or more checkpoints of one run")
            continue
        result = found
        fractions = result.pair_agree / max(result.samples, 1)
        rows.append(
            [
                cell,
                str(result.samples),
                f"{100 * fractions.min():.2f} / {100 * fractions.mean():.2f} / {100 * fractions.max():.2f}",
                f"{100 * result.all_agree / max(result.samples, 1):.2f}",
            ]
        )
        data[cell] = {
            "pairs": [list(p) for p in result.pairs],
            "pair_agree": result.pair_agree.tolist(),
            "all_agree": result.all_agree,
            "samples": result.samples,
        }

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import consensus_figure

        consensus_figure(path, data)

    title = "Checkpoint consensus on the unselected samples"
    return StudyResult(title, header, rows, data, figure if data else None, missing)


def _consensus_of(run: RunDir):  # -> Consensus | None
    for step in reversed(run.steps):
        found = step.votes()
        subset = step.subset()
        if found is None or subset is None:
            continue
        rows, names, votes = found
        unselected = np.flatnonzero(~np.isin(rows, subset.index))
        result = checkpoint_consensus(votes, names, unselected)
        if len(result.pairs):
            return result
    return None


def curves(cells: Cells) -> StudyResult:
    """Validation accuracy of the final subset model and the full-pool model over training time
    (paper Figure 5), and how much sooner the subset model reaches the full model's best
    validation accuracy (within 0.5 points)."""
    header = ["run", "model", "epochs", "train s", "best val %", "s to full's best - 0.5", "speed-up"]
    rows, data, missing = [], {}, []
    for cell, runs in cells.items():
        for run in runs:
            found = run_curves(run)
            if found is None:
                missing.append(f"{cell}/{run.path.name}: no validation history of a subset model and a full model")
                continue
            key = f"{cell}/{run.path.name}"
            data[key] = found
            for name in (found["subset"], "full"):
                c = found["curves"][name]
                reach = c["seconds_to_target"]
                speed = (
                    f"{found['curves']['full']['seconds_to_target'] / reach:.2f}x"
                    if name != "full" and reach and found["curves"]["full"]["seconds_to_target"]
                    else "-"
                )
                rows.append(
                    [
                        key,
                        name,
                        str(len(c["epochs"])),
                        f"{c['seconds'][-1]:.1f}",
                        f"{100 * max(c['val_accuracy']):.2f}",
                        f"{reach:.1f}" if reach is not None else "never",
                        speed,
                    ]
                )

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import curves_figure

        curves_figure(path, data)

    title = "Validation curves: subset model vs full model"
    return StudyResult(title, header, rows, data, figure if data else None, missing)


def run_curves(run: RunDir, margin: float = 0.005) -> dict | None:
    """The validation curves of a run's final subset model and its full model (model_0 of each), or None."""
    histories = {m.variant: m.history for m in run.models if m.k == 0}
    subset_name = run.scheme
    if subset_name not in histories or "full" not in histories:
        return None
    if any("val_accuracy" not in e for name in (subset_name, "full") for e in histories[name]):
        return None
    target = max(e["val_accuracy"] for e in histories["full"]) - margin
    out = {"subset": subset_name, "target": target, "curves": {}}
    for name in (subset_name, "full"):
        h = histories[name]
        out["curves"][name] = {
            "epochs": [e["epoch"] for e in h],
            "seconds": [e["seconds"] for e in h],
            "val_accuracy": [e["val_accuracy"] for e in h],
            "seconds_to_target": time_to_accuracy(h, target),
        }
    return out


#: study name -> its analysis (``ensembles`` also takes a function giving a run's pool labels)
STUDY_FUNCTIONS: dict[str, Callable[..., StudyResult]] = {
    "schemes": schemes,
    "functions": functions,
    "ensembles": ensembles,
    "consensus": consensus,
    "outliers": outliers,
    "architecture": architecture,
    "curves": curves,
}
