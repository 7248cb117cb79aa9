"""The paper's studies over stored run directories: each function takes the runs of a study's cells
(cell name -> one :class:`RunDir` per trial) and returns a :class:`StudyResult` (a table, the
numbers behind it for ``study.json``, a figure, and what was missing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from subsetsearch.report.analyses import (
    checkpoint_consensus,
    mean_sd,
    paired_difference,
    selected_accuracy,
    time_to_accuracy,
)
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
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    """Further tables under the first: (title, header, rows)."""

    def markdown(self) -> str:
        parts = [_markdown_table(f"**{self.title}**", self.header, self.rows)]
        parts += [_markdown_table(f"**{title}**", header, rows) for title, header, rows in self.tables]
        return "\n".join(parts)


def _markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [title, "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def percent_text(values: list[float]) -> str:
    """Accuracies as 'mean ± sample sd (n=k)' in percent ('-' for none; no ± for one value)."""
    mean, sd = mean_sd(values)
    if not values:
        return "-"
    return f"{100 * mean:.2f} ± {100 * sd:.2f} (n={len(values)})" if len(values) > 1 else f"{100 * mean:.2f}"


def difference_text(d: dict | None) -> str:
    """A :func:`~subsetsearch.report.analyses.paired_difference` of fractions in percentage points:
    '+1.23 [+0.50, +1.96] (n=3)' ('-' for none)."""
    if d is None or d["mean"] is None:
        return "-"
    interval = f" [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]" if d["ci95"] else ""
    return f"{100 * d['mean']:+.2f}{interval} (n={d['n']})"


def _finished(cells: Cells) -> tuple[Cells, list[str]]:
    """Cells with the runs that finished, and a line per run that did not."""
    kept, missing = {}, []
    for cell, runs in cells.items():
        kept[cell] = [r for r in runs if r.metrics is not None]
        missing += [f"{cell}: {r.path.name} has not finished" for r in runs if r.metrics is None]
    return kept, missing


def trial_of(run: RunDir) -> str:
    """The trial a run belongs to: its seed (its folder's name for a config without one)."""
    return str(run.config.get("seed", run.path.name))


def _variant_by_trial(runs: list[RunDir], name: str) -> dict[str, float]:
    """Trial -> the mean score of variant ``name``'s models, for the runs that have it."""
    out = {}
    for run in runs:
        variants = run.variants()
        if name in variants and variant_scores(variants[name])[1]:
            out[trial_of(run)] = float(np.mean(variant_scores(variants[name])[1]))
    return out


def _final_size(runs: list[RunDir]) -> int | None:
    for run in runs:
        variant = run.variants().get(run.scheme)
        if variant and "subset_size" in variant:
            return int(variant["subset_size"])
    return None


def budget_points(run: RunDir, base: str) -> dict[int, list[float]]:
    """Test accuracies of the variants named ``base`` or ``base@iter_NN``, by subset size."""
    points: dict[int, list[float]] = {}
    for name, v in run.variants().items():
        if split_variant(name)[0] == base:
            points.setdefault(int(v["subset_size"]), []).extend(variant_scores(v)[1])
    return points


def _trials(runs: list[RunDir], base: str) -> dict[int, dict[str, float]]:
    """Per subset size, trial -> the mean accuracy of the variants ``base``."""
    out: dict[int, dict[str, float]] = {}
    for run in runs:
        for size, accs in budget_points(run, base).items():
            out.setdefault(size, {})[trial_of(run)] = float(np.mean(accs))
    return out


def _baseline(cells: Cells, base: str) -> dict[int, dict[str, float]]:
    """A baseline (``random`` or ``full``) trained beside the cells, per size: trial -> accuracy
    (cells of a trial share their baselines, so the first cell that has one gives it)."""
    out: dict[int, dict[str, float]] = {}
    for _cell, runs in cells.items():
        if base == "random" and any(r.scheme == "random" for r in runs):
            continue  # a random scheme's own variants are not the compare baseline
        for run in runs:
            for size, accs in budget_points(run, base).items():
                out.setdefault(size, {}).setdefault(trial_of(run), float(np.mean(accs)))
    return out


def _summary(values: dict[str, float]) -> dict:
    mean, sd = mean_sd(list(values.values()))
    return {"mean": mean, "sd": sd, "n": len(values), "trials": list(values.values()), "seeds": list(values)}


def _budget_study(title: str, cells: Cells) -> StudyResult:
    """A table of each cell's subset models (its scheme's variants) by subset size, with the
    baselines, and each against random and full paired by trial."""
    cells, missing = _finished(cells)
    pool = next((int(r.metrics["pool_size"]) for runs in cells.values() for r in runs), None)
    series: dict[str, dict[int, dict[str, float]]] = {}
    for cell, runs in cells.items():
        if runs:
            series[cell] = _trials(runs, runs[0].scheme)
        else:
            missing.append(f"{cell}: no finished run")
    random = _baseline(cells, "random")
    if random and "random" not in series:
        series["random (baseline)"] = random
    full_by_size = _baseline(cells, "full")
    full = next(iter(full_by_size.values()), {})
    random = series.get("random", random)
    sizes = sorted({s for points in series.values() for s in points})

    def size_text(s: int) -> str:
        return f"{100 * s / pool:.1f}%" if pool else str(s)

    header = ["", *[size_text(s) for s in sizes]]
    rows = [[name, *[percent_text(list(points.get(s, {}).values())) for s in sizes]] for name, points in series.items()]
    if full:
        rows.append(["full", *(["-"] * (len(sizes) - 1)), percent_text(list(full.values()))])  # under the largest
    versus: dict[str, dict[str, dict[str, dict]]] = {"random": {}, "full": {}}
    for name, points in series.items():
        for against, base in (("random", None), ("full", full)):
            if against == "random" and name.startswith("random"):
                continue
            versus[against][name] = {
                str(s): paired_difference(points[s], base if base is not None else random.get(s, {}))
                for s in sizes
                if s in points
            }
    tables = [
        (
            f"Paired by trial against {against}, percentage points: mean [95% interval] (n)",
            ["", *[size_text(s) for s in sizes]],
            [
                [name, *[difference_text(by_size.get(str(s))) for s in sizes]]
                for name, by_size in versus[against].items()
            ],
        )
        for against in ("random", "full")
        if versus[against]
    ]
    data = {
        "pool_size": pool,
        "sizes": sizes,
        "series": {name: {str(s): _summary(v) for s, v in points.items()} for name, points in series.items()},
        "full": _summary(full),
        "versus": versus,
    }

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import budget_figure, grouped_bars

        lists = {name: {s: list(v.values()) for s, v in points.items()} for name, points in series.items()}
        if len(sizes) == 1:  # one budget: bars read better than single points
            groups = {name: {"test accuracy": points.get(sizes[0], [])} for name, points in lists.items()}
            if full:
                groups["full"] = {"test accuracy": list(full.values())}
            grouped_bars(path, title, groups)
        else:
            budget_figure(path, title, lists, list(full.values()), pool)

    return StudyResult(title, header, rows, data, figure if series else None, missing, tables)


def schemes(cells: Cells) -> StudyResult:
    """Accuracy of each scheme at each subset size, mean ± std over trials, and the full-pool line
    (paper Figure 3). A cell's curve is its scheme's subset models (``steps: all`` gives one per budget)."""
    return _budget_study("Schemes × budgets: test accuracy (%)", cells)


def functions(cells: Cells) -> StudyResult:
    """Acquisition functions × budgets (paper Table I): one cell per function."""
    return _budget_study("Acquisition functions × budgets: test accuracy (%)", cells)


def _baselines(runs: list[RunDir]) -> tuple[dict[str, float], dict[str, float]]:
    """The random and full baselines the runs trained beside their subset models (trial -> accuracy)."""
    return _variant_by_trial(runs, "random"), _variant_by_trial(runs, "full")


def _final_against_baselines(runs: list[RunDir]) -> tuple[dict, list[str]]:
    """The runs' final subset models against the random subset and the full pool of the same trials,
    paired by trial: the numbers for ``study.json`` and the table cells (size, subset, random, full,
    vs random, vs full)."""
    ours = _variant_by_trial(runs, runs[0].scheme)
    random, full = _baselines(runs)
    pool, size = runs[0].metrics.get("pool_size"), _final_size(runs)
    d_random, d_full = paired_difference(ours, random), paired_difference(ours, full)
    data = {
        "subset_size": size,
        "pool_size": pool,
        "subset": _summary(ours),
        "random": _summary(random),
        "full": _summary(full),
        "vs_random": d_random,
        "vs_full": d_full,
    }
    cells = [
        f"{100 * size / pool:.1f}%" if size and pool else "-",
        *(percent_text(list(v.values())) for v in (ours, random, full)),
        difference_text(d_random),
        difference_text(d_full),
    ]
    return data, cells


def _last_step_metrics(run: RunDir) -> dict:
    steps = [s for s in run.steps if s.metrics.get("kind") == "acquisition"]
    return steps[-1].metrics if steps else {}


def outliers(cells: Cells) -> StudyResult:
    """Subset accuracy with outliers left out (paper Table IV and its ImageNet rule): one cell per
    rule (``search.skip_top``: the top share of the ranked candidates; ``search.skip_disagreement``:
    rows on which every member predicts a different class), each against the random subset and the
    full pool of its own trials, paired by trial."""
    cells, missing = _finished(cells)
    header = ["cell", "scheme", "subset", "rule", "left out (last step)", "subset model", "vs random", "vs full"]
    rows, data = [], {}
    for cell, runs in cells.items():
        if not runs:
            missing.append(f"{cell}: no finished run")
            continue
        search = runs[0].config.get("search", {})
        rules = []
        if search.get("skip_top"):
            rules.append(f"top {100 * search['skip_top']:g}% of the ranking set aside")
        if search.get("skip_disagreement"):
            rules.append("rows every member disagrees on left out")
        left = [
            float(m.get("skipped_top", 0) + m.get("disagreement_outliers", 0))
            for m in (_last_step_metrics(r) for r in runs)
        ]
        numbers, (size, subset, _random, _full, vs_random, vs_full) = _final_against_baselines(runs)
        rule = "; ".join(rules) or "none"
        left_text = f"{np.mean(left):.0f}" if left else "-"
        rows.append([cell, runs[0].scheme, size, rule, left_text, subset, vs_random, vs_full])
        data[cell] = {"scheme": runs[0].scheme, "rules": rules, "left_out": left, **numbers}

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import grouped_bars

        groups = {c: {k: d[k]["trials"] for k in ("subset", "random", "full")} for c, d in data.items()}
        grouped_bars(path, "Outliers left out: test accuracy (%)", groups)

    title = "Outliers left out: test accuracy (%) of the subset model"
    return StudyResult(title, header, rows, data, figure if data else None, missing)


def architecture(cells: Cells) -> StudyResult:
    """A subset chosen with the config's acquisition model, trained on with each cell's subset model,
    against a random subset and the full pool with that same model (paper Table V), paired by trial."""
    cells, missing = _finished(cells)
    header = ["subset model", "subset", "acquired subset", "random subset", "full pool", "vs random", "vs full"]
    rows, data = [], {}
    for cell, runs in cells.items():
        if not runs:
            missing.append(f"{cell}: no finished run")
            continue
        model = runs[0].config.get("subset_model", {}).get("model") or runs[0].config.get("model", {})
        label = f"{cell} ({model.get('name')}, width {model.get('width')})"
        numbers, table_cells = _final_against_baselines(runs)
        rows.append([label, *table_cells])
        data[cell] = {"model": model, **numbers}

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import grouped_bars

        groups = {c: {k: d[k]["trials"] for k in ("subset", "random", "full")} for c, d in data.items()}
        grouped_bars(path, "Architecture shift: test accuracy (%)", groups)

    return StudyResult("Architecture shift: test accuracy (%)", header, rows, data, figure if data else None, missing)


def _pool_size(run: RunDir) -> int | None:
    if run.metrics is not None:
        return int(run.metrics["pool_size"])
    dataset = run.dataset()
    return None if dataset is None else dataset.pool_size


def _trained_rows(run: RunDir, iteration: int) -> np.ndarray:
    """Pool rows step ``iteration``'s ensemble trained on: the whole pool where the step says it
    trained on as many rows as the pool holds (pretrain, compress), else the subset the steps before
    it built."""
    step = next((s for s in run.steps if s.iteration == iteration), None)
    pool_size = _pool_size(run)
    if step is not None and pool_size is not None and step.metrics.get("trained_on") == pool_size:
        return np.arange(pool_size)
    subset = step.subset() if step is not None else None
    if subset is None:
        return np.empty(0, np.int64)
    return subset.index[subset.iteration < iteration]


def ensembles(cells: Cells, labels_of: LabelsFn) -> StudyResult:
    """Each ensemble configuration's accuracy on the rows it trained on and on the rows it never saw
    (paper Table II), and the test accuracy of the subset model trained on the subset it completed
    (Table III), against a random subset of the same size paired by trial.

    Reads each run's last acquisition step: its statistics (``search.score_subset`` makes them cover
    the training rows too) and its subset. A "single" row gives one member's accuracy (the last
    checkpoint of run 0 of the first cell that has it), from that step's votes."""
    cells, missing = _finished(cells)
    header = ["ensemble", "members", "on its training rows", "on rows it never saw", "subset model", "vs random"]
    rows, data = [], {}
    single: dict[str, tuple[float, float]] = {}
    single_name = None
    randoms: dict[str, float] = {}
    for cell, runs in cells.items():
        if not runs:
            missing.append(f"{cell}: no finished run")
            continue
        trained_acc, unseen_acc, members = {}, {}, None
        for run in runs:
            step = next((s for s in reversed(run.steps) if s.files.stats.is_file()), None)
            if step is None:
                missing.append(f"{cell}: {run.path.name} has no scored step")
                continue
            labels, stats = labels_of(run), step.stats()
            trained = _trained_rows(run, step.iteration)
            scored = np.flatnonzero(stats.member_counts > 0)
            predicted = np.argmax(stats.mean_probs(), axis=1)
            on_trained, unseen = selected_accuracy(predicted, labels, scored, trained)
            if np.isnan(on_trained):
                missing.append(f"{cell}: {run.path.name} did not score its own training rows (set search.score_subset)")
            else:
                trained_acc[trial_of(run)] = on_trained
            unseen_acc[trial_of(run)] = unseen
            members = step.metrics.get("members")
            found = step.votes()
            if found is not None and (single_name is None or single_name[0] == cell):
                vote_rows, names, votes = found
                last = _last_checkpoint(names, "run_0")
                if last is not None:
                    single_name = (cell, names[last])
                    correct = votes[last] == labels[vote_rows]
                    seen = np.isin(vote_rows, trained)
                    single[trial_of(run)] = (
                        float(correct[seen].mean()) if seen.any() else float("nan"),
                        float(correct[~seen].mean()) if (~seen).any() else float("nan"),
                    )
        ours = _variant_by_trial(runs, runs[0].scheme)
        random = _variant_by_trial(runs, "random")
        for trial, value in random.items():
            randoms.setdefault(trial, value)
        d_random = paired_difference(ours, random)
        rows.append(
            [
                cell,
                str(members),
                percent_text(list(trained_acc.values())),
                percent_text(list(unseen_acc.values())),
                percent_text(list(ours.values())),
                difference_text(d_random),
            ]
        )
        data[cell] = {
            "members": members,
            "on_training_rows": _summary(trained_acc),
            "on_unseen_rows": _summary(unseen_acc),
            "subset_model": _summary(ours),
            "vs_random": d_random,
        }
    if single_name is not None:
        on_trained = {t: v[0] for t, v in single.items() if not np.isnan(v[0])}
        unseen = {t: v[1] for t, v in single.items()}
        label = f"single ({single_name[1]} of {single_name[0]})"
        rows.insert(
            0, [label, "1", percent_text(list(on_trained.values())), percent_text(list(unseen.values())), "-", "-"]
        )
        data["single"] = {
            "member": single_name[1],
            "of": single_name[0],
            "on_training_rows": _summary(on_trained),
            "on_unseen_rows": _summary(unseen),
        }
    if randoms:
        rows.append(["random (baseline)", "-", "-", "-", percent_text(list(randoms.values())), "-"])
        data["random"] = _summary(randoms)

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import grouped_bars

        groups = {
            c: {
                "ensemble on its training rows": d["on_training_rows"]["trials"],
                "ensemble on rows it never saw": d["on_unseen_rows"]["trials"],
                **({"subset model (test)": d["subset_model"]["trials"]} if "subset_model" in d else {}),
            }
            for c, d in data.items()
            if c != "random"
        }
        grouped_bars(path, "Ensemble configurations: accuracy (%)", groups)

    title = (
        "Ensemble configurations: accuracy (%) on the rows it trained on and on those it never saw, "
        "and of the subset model"
    )
    return StudyResult(title, header, rows, data, figure if data else None, missing)


def _last_checkpoint(names: list[str], run: str) -> int | None:
    """Position of ``run``'s latest ``epoch_EEE`` member in ``names``, or None."""
    epochs = [(int(n.split("epoch_")[1]), k) for k, n in enumerate(names) if n.startswith(f"{run}/epoch_")]
    return max(epochs)[1] if epochs else None


def consensus(cells: Cells, labels_of: LabelsFn | None = None) -> StudyResult:
    """How alike the checkpoints of one training run predict the rows their ensemble never trained on
    (paper Figure 4): the share each consecutive pair agrees on, the share all of them agree on and,
    with ``labels_of``, each checkpoint's accuracy there. One cell per architecture; mean ± sample sd
    over trials. Reads each run's last step whose votes cover rows outside its training subset."""
    header = [
        "cell",
        "rows never trained on",
        "checkpoints",
        "consecutive pairs agree (%)",
        "all agree (%)",
        "each checkpoint's accuracy there, min / max (%)",
    ]
    rows, data, missing = [], {}, []
    for cell, runs in cells.items():
        per_trial = []
        for run in runs:
            found = _consensus_of(run, labels_of)
            if found is None:
                missing.append(
                    f"{cell}/{run.path.name}: no step whose votes of two or more checkpoints of one run "
                    "cover rows it never trained on"
                )
                continue
            per_trial.append(found)
        if not per_trial:
            continue
        pair_mean = [100 * np.mean(t["pair_agree"]) / t["samples"] for t in per_trial]
        all_agree = [100 * t["all_agree"] / t["samples"] for t in per_trial]
        low = [100 * min(t["member_accuracy"]) for t in per_trial if t["member_accuracy"]]
        high = [100 * max(t["member_accuracy"]) for t in per_trial if t["member_accuracy"]]
        rows.append(
            [
                cell,
                f"{np.mean([t['samples'] for t in per_trial]):.0f}",
                str(per_trial[0]["checkpoints"]),
                _plain(pair_mean),
                _plain(all_agree),
                f"{_plain(low)} / {_plain(high)}" if low else "-",
            ]
        )
        data[cell] = {
            **per_trial[0],
            "trials": per_trial,
            "pair_agree_mean_percent": _summary(dict(enumerate(pair_mean))),
            "all_agree_percent": _summary(dict(enumerate(all_agree))),
        }

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import consensus_figure

        consensus_figure(path, data)

    title = "Checkpoint consensus on the rows the ensemble never trained on"
    return StudyResult(title, header, rows, data, figure if data else None, missing)


def _plain(values: list[float]) -> str:
    """Percentages as 'mean ± sample sd (n=k)' ('-' for none)."""
    return percent_text([v / 100 for v in values])


def _consensus_of(run: RunDir, labels_of: LabelsFn | None) -> dict | None:
    """Checkpoint consensus on the rows the last scoring step's ensemble never trained on (none for
    an ensemble trained on the whole pool: pretrain, compress)."""
    for step in reversed(run.steps):
        found = step.votes()
        if found is None:
            continue
        vote_rows, names, votes = found
        unseen = np.flatnonzero(~np.isin(vote_rows, _trained_rows(run, step.iteration)))
        result = checkpoint_consensus(votes, names, unseen)
        if not unseen.size or not len(result.pairs):
            continue
        first = [m for m, n in enumerate(names) if n.split("/")[0] == names[0].split("/")[0]]
        accuracy = []
        if labels_of is not None:
            labels = labels_of(run)[vote_rows[unseen]]
            accuracy = [float(np.mean(votes[m, unseen] == labels)) for m in first]
        return {
            "step": step.iteration,
            "checkpoints": len(first),
            "pairs": [list(p) for p in result.pairs],
            "pair_agree": result.pair_agree.tolist(),
            "all_agree": result.all_agree,
            "samples": result.samples,
            "member_accuracy": accuracy,
        }
    return None


def curves(cells: Cells) -> StudyResult:
    """Validation accuracy of the final subset model and the full-pool model over training (paper
    Figure 5), and how much less training the subset model needs to reach the full model's best
    validation accuracy, exactly and within 0.5 points: the share of the full model's seconds, and
    of its samples seen (epochs × training rows, which the machine's load does not change), saved.
    One row per cell, mean ± sample sd over trials; with a ``random`` cell (the control), each
    cell's saving less random's, paired by trial; the per-run curves under it."""
    header = [
        "cell",
        "subset",
        "reached full's best",
        "saved: seconds",
        "saved: samples seen",
        "reached full's best − 0.5",
        "saved: seconds",
        "saved: samples seen",
    ]
    rows, data, missing, runs_rows = [], {}, [], []
    for cell, runs in cells.items():
        found_runs = []
        for run in runs:
            found = run_curves(run)
            if found is None:
                missing.append(f"{cell}/{run.path.name}: no validation history of a subset model and a full model")
                continue
            key = f"{cell}/{run.path.name}"
            data[key] = {**found, "trial": trial_of(run)}
            found_runs.append(found)
            for name in (found["subset"], "full"):
                c = found["curves"][name]
                runs_rows.append(
                    [
                        key,
                        name,
                        str(len(c["epochs"])),
                        f"{c['seconds'][-1]:.1f}",
                        f"{100 * max(c['val_accuracy']):.2f}",
                        _seconds_text(c["seconds_to_best"]),
                        _seconds_text(c["seconds_to_target"]),
                    ]
                )
        if not found_runs:
            continue
        cell_row = [cell, f"{100 * found_runs[0]['fraction']:.0f}%" if found_runs[0]["fraction"] else "-"]
        summary = {}
        for goal in ("best", "target"):
            reached = [f for f in found_runs if f["saved"][goal] is not None]
            seconds = [100 * f["saved"][goal]["seconds"] for f in reached]
            samples = [100 * f["saved"][goal]["samples"] for f in reached]
            cell_row += [f"{len(reached)} of {len(found_runs)}", _points(seconds), _points(samples)]
            summary[goal] = {
                "reached": len(reached),
                "runs": len(found_runs),
                "saved_seconds_percent": seconds,
                "saved_samples_percent": samples,
            }
        rows.append(cell_row)
        data.setdefault("cells", {})[cell] = summary
    tables = []
    control = _curves_control(data)
    if control:
        tables.append(control)
    if runs_rows:
        tables.append(
            (
                "Each run: training seconds to the full model's best validation accuracy, and to within 0.5 points",
                ["run", "model", "epochs", "train s", "best val %", "s to full's best", "s to full's best − 0.5"],
                runs_rows,
            )
        )

    def figure(path: Path) -> None:
        from subsetsearch.report.figures import curves_figure

        curves_figure(path, {k: v for k, v in data.items() if k != "cells"})

    title = "Validation curves: training the subset model saves (%) against the full model"
    return StudyResult(title, header, rows, data, figure if data else None, missing, tables)


#: The cell of a curves study that is the control: a random subset of the same size.
CURVES_CONTROL = "random"


def _curves_control(data: dict) -> tuple[str, list[str], list[list[str]]] | None:
    """Each cell's saving less the random cell's (the saving a subset of that size gets without any
    choice), paired by trial with a 95% interval, in percentage points of the full model's training;
    None without a random cell. A trial in which one of the two never reaches the target is left
    out of that comparison, and the rows say how many trials each holds."""
    saved: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for key, found in data.items():
        if key == "cells":
            continue
        cell, _, run_name = key.partition("/")
        trial = found.get("trial", run_name)
        for goal in ("best", "target"):
            value = found["saved"][goal]
            if value is not None:
                for unit in ("seconds", "samples"):
                    saved.setdefault(cell, {}).setdefault(f"{goal} {unit}", {})[trial] = value[unit]
    if CURVES_CONTROL not in saved:
        return None
    rows = []
    for cell in sorted(set(saved) - {CURVES_CONTROL}):
        row = [cell]
        for column in ("best seconds", "best samples", "target seconds", "target samples"):
            d = paired_difference(saved[cell].get(column, {}), saved[CURVES_CONTROL].get(column, {}))
            row.append(difference_text(d) if d["n"] else "-")
        rows.append(row)
    header = [
        "cell",
        "full's best: seconds",
        "samples seen",
        "full's best − 0.5: seconds",
        "samples seen",
    ]
    title = (
        "Saving less the random subset's of the same size (points of the full model's training), paired by "
        "trial, mean [95% interval] (n trials where both reach the target)"
    )
    return title, header, rows


def _seconds_text(seconds: float | None) -> str:
    return f"{seconds:.1f}" if seconds is not None else "never"


def _points(values: list[float]) -> str:
    """Percentages as 'mean ± sd (n=k)', without scaling ('-' for none)."""
    if not values:
        return "-"
    mean, sd = mean_sd(values)
    return f"{mean:.1f} ± {sd:.1f} (n={len(values)})" if len(values) > 1 else f"{mean:.1f}"


def run_curves(run: RunDir, margin: float = 0.005) -> dict | None:
    """The validation curves of a run's final subset model and its full model (model_0 of each), or
    None; with the seconds each takes to reach the full model's best validation accuracy (``best``)
    and that less ``margin`` (``target``), and the share of the full model's training the subset
    model saves to get there (seconds, and samples seen: epochs × training rows)."""
    histories = {m.variant: m.history for m in run.models if m.k == 0}
    subset_name = run.scheme
    if subset_name not in histories or "full" not in histories:
        return None
    if any("val_accuracy" not in e for name in (subset_name, "full") for e in histories[name]):
        return None
    best = max(e["val_accuracy"] for e in histories["full"])
    target = best - margin
    variants = run.variants()
    sizes = {name: variants.get(name, {}).get("subset_size") for name in (subset_name, "full")}
    out = {"subset": subset_name, "best": best, "target": target, "curves": {}, "saved": {}}
    out["fraction"] = sizes[subset_name] / sizes["full"] if sizes[subset_name] and sizes["full"] else None
    for name in (subset_name, "full"):
        h = histories[name]
        out["curves"][name] = {
            "epochs": [e["epoch"] for e in h],
            "seconds": [e["seconds"] for e in h],
            "val_accuracy": [e["val_accuracy"] for e in h],
            "seconds_to_best": time_to_accuracy(h, best),
            "seconds_to_target": time_to_accuracy(h, target),
            "epoch_to_best": _epoch_reaching(h, best),
            "epoch_to_target": _epoch_reaching(h, target),
        }
    ours, full = out["curves"][subset_name], out["curves"]["full"]
    for goal in ("best", "target"):
        a, b = ours[f"seconds_to_{goal}"], full[f"seconds_to_{goal}"]
        ea, eb = ours[f"epoch_to_{goal}"], full[f"epoch_to_{goal}"]
        if a is None or not b or out["fraction"] is None:
            out["saved"][goal] = None
            continue
        out["saved"][goal] = {"seconds": 1 - a / b, "samples": 1 - (ea * out["fraction"]) / eb}
    return out


def _epoch_reaching(history: list[dict], target: float) -> int | None:
    return next((int(e["epoch"]) for e in history if e.get("val_accuracy", -1) >= target), None)


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
