"""The pages ``subsetsearch report`` writes: figures, tables and one self-contained report.html for a
run directory (finished or not) or a study directory, in ``DIR/report/``.

Everything comes from the directory itself (:mod:`subsetsearch.rundir`: the run's labels and class
names are in its ``dataset.npz``), so a run directory copied to a machine without the dataset
reports the same; the numbers come from :mod:`~subsetsearch.report.analyses` and
:mod:`~subsetsearch.report.studies`. Nothing here imports PyTorch or the trainer. Whatever the
directory lacks is listed at the top of the page and in the summary, never an error.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from subsetsearch.acquisition import ACQUISITION_FUNCTIONS, acquire
from subsetsearch.balance import class_shares, imbalance_line, imbalanced_classes
from subsetsearch.errors import InputError
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.report import figures
from subsetsearch.report.analyses import selected_accuracy
from subsetsearch.report.gallery import EXTREMES, NEAR_CUT, gallery_html
from subsetsearch.report.html import Section, write_html
from subsetsearch.report.paper import CITATION, PaperTable, paper_tables
from subsetsearch.report.studies import STUDY_FUNCTIONS, StudyResult, consensus, percent_text, run_curves
from subsetsearch.rundir import (
    DatasetRecord,
    RunDir,
    RunLayout,
    StudyLayout,
    Subset,
    read_run,
    split_variant,
    variant_scores,
)
from subsetsearch.selection import SelectionRule


@dataclass
class ReportResult:
    html: Path
    figures: list[Path]
    missing: list[str]
    summary: str


@dataclass
class _Page:
    folder: Path
    sections: list[Section] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def png(self, name: str) -> Path:
        path = self.folder / name
        self.figures.append(path)
        return path


# -- the run's data ---------------------------------------------------------------------------------


def _dataset_or_note(run: RunDir, page: _Page) -> DatasetRecord | None:
    dataset = run.dataset()
    if dataset is None:
        page.missing.append(
            "class balance, error counts and ensemble accuracies: the run directory has no dataset.npz (runs "
            "of subsetsearch 0.1.0 before it existed); run the same `subsetsearch run` command again to add it"
        )
    return dataset


# -- a run ------------------------------------------------------------------------------------------


def run_page(path: Path) -> ReportResult:
    """Write ``path/report/`` for the run directory ``path`` (finished or not)."""
    import yaml

    run = read_run(path)
    page = _Page(RunLayout(path).report)
    page.missing += run.missing
    dataset = _dataset_or_note(run, page)
    cfg = run.config
    pool_size = run.metrics["pool_size"] if run.metrics else (dataset.pool_size if dataset is not None else None)
    status = "finished" if run.metrics is not None else "partial (still running or stopped)"
    device, precision = _where(run)
    page.sections.append(
        Section("Run").table(
            ["", "value"],
            [
                ["run directory", str(path)],
                ["status", status],
                ["task", run.task],
                ["scheme", run.scheme],
                ["acquisition function", cfg.get("search", {}).get("function", "-")],
                ["ensemble", json.dumps(cfg.get("ensemble", {}))],
                ["dataset", dataset.name if dataset is not None else "-"],
                ["pool size", pool_size if pool_size is not None else "-"],
                ["selection", SelectionRule.from_json(cfg.get("search", {})).describe()],
                ["device", device],
                ["precision", precision],
            ],
        )
    )
    _subsets_section(run, page)
    if dataset is not None:
        _chosen_section(run, page, dataset)
    _results_section(run, page, dataset)
    if dataset is not None:
        _balance_section(run, page, dataset)
    _scores_section(run, page, dataset)
    _gallery_section(run, page, dataset)
    _consensus_section(run, page)
    _curves_section(run, page)
    _cost_section(run, page)
    if run.task == "detection":
        _detection_section(run, page)
    page.sections.append(
        Section("Studies across runs").text(
            "Schemes × budgets, acquisition functions × budgets, ensemble configurations, outliers and "
            "architecture shift compare several runs: `subsetsearch study configs/studies/NAME.yaml` runs one and "
            "`subsetsearch report STUDY_DIR` reports it."
        )
    )
    page.sections.append(Section("Config").pre(yaml.safe_dump(cfg, sort_keys=False)))
    html_path = page.folder / "report.html"
    write_html(html_path, f"subsetsearch report: {path.name}", page.sections, page.missing)
    return _result(html_path, page)


def _where(run: RunDir) -> tuple[str, str]:
    """The device and precision the run recorded ('unrecorded' for runs from before precision was)."""
    metrics = run.metrics or {}
    devices = (
        {metrics["device"]}
        if "device" in metrics
        else {s.metrics["device"] for s in run.steps if "device" in s.metrics}
    )
    precision = metrics.get("precision")
    if isinstance(precision, dict):
        text = ", ".join(f"{precision[k]} ({k.replace('_', ' ')})" for k in ("acquisition", "subset_model"))
        if precision["acquisition"] == precision["subset_model"]:
            text = precision["acquisition"]
    else:
        found = sorted({s.metrics["precision"] for s in run.steps if "precision" in s.metrics})
        text = ", ".join(found) or "unrecorded"
    return ", ".join(sorted(devices)) or "-", text


def _result(html_path: Path, page: _Page) -> ReportResult:
    lines = [f"report      {html_path}", f"figures     {len(page.figures)} PNG in {page.folder}"]
    if page.missing:
        lines.append("missing:")
        lines += [f"  - {m}" for m in page.missing]
    return ReportResult(html_path, page.figures, page.missing, "\n".join(lines))


#: Rows of the final subset the page lists with their identity in the user's data.
CHOSEN_ROWS = 20


def _chosen_section(run: RunDir, page: _Page, dataset: DatasetRecord) -> None:
    """The final subset's first rows, each with its identity in the user's data (its file, its row
    in the given arrays, its COCO image): what ``subset.parquet`` lists for every chosen sample."""
    subset = Subset.read(RunLayout(run.path).subset)
    if subset is None:
        return
    section = Section("The subset in your data")
    if not dataset.pool_source:
        section.text(
            "This run was made by an earlier version, which recorded no identity of its rows in your data: "
            "`subsetsearch run` with the same config and run directory adds it (nothing is recomputed)."
        )
        page.sections.append(section)
        return
    names = list(dataset.pool_source)
    shown = subset.index[:CHOSEN_ROWS]
    rows = []
    for j, row in enumerate(shown):
        score = subset.score[j]
        identity = [str(dataset.pool_source[name][row]) for name in names]
        rows.append([int(row), *identity, "-" if np.isnan(score) else f"{score:.4g}", int(subset.iteration[j])])
    section.text(
        f"The first {len(shown)} of the {len(subset.index)} samples the run chose, in the order it chose them: "
        f"`index` is the pool's row, {', '.join(f'`{n}`' for n in names)} the sample in your data. "
        "`subset.parquet` lists every one with these columns."
    )
    section.table(["index", *names, "score", "step"], rows)
    page.sections.append(section)


def _subsets_section(run: RunDir, page: _Page) -> None:
    header = [
        "step", "kind", "subset size", "unique", "added", "scored", "members", "train s", "score s", "device",
        "precision",
    ]  # fmt: skip
    rows = []
    for s in run.steps:
        m = s.metrics
        rows.append(
            [
                s.files.name,
                m.get("kind", "-"),
                m.get("subset_size", "-"),
                m.get("unique_samples", "-"),
                m.get("added", "-"),
                m.get("scored", "-"),
                m.get("members", "-"),
                f"{m.get('train_seconds', 0.0):.1f}",
                f"{m.get('score_seconds', 0.0):.1f}",
                m.get("device", "-"),
                m.get("precision", "-"),
            ]
        )
    section = Section("Subsets")
    if rows:
        section.table(header, rows)
    else:
        section.text("No step has finished yet.")
    page.sections.append(section)


def _results_section(run: RunDir, page: _Page, dataset: DatasetRecord | None) -> None:
    variants = run.variants(dataset.test_labels if dataset is not None else None)
    section = Section("Test results of the subset models")
    if not variants:
        section.text("No subset model has been trained yet.")
        page.missing.append("test results: no subset model has finished")
    else:
        rows = []
        for name, v in variants.items():
            metric, values = variant_scores(v)
            rows.append(
                [
                    name,
                    v.get("subset_size", "-"),
                    metric,
                    percent_text(values),
                    len(values),
                    f"{np.mean(v['train_seconds']):.1f}",
                ]
            )
        section.table(["variant", "samples", "metric", "test (%), mean ± sample sd", "models", "train s"], rows)
    page.sections.append(section)


def _step_subsets(run: RunDir) -> list[tuple[str, Subset]]:
    return [(s.files.name, subset) for s in run.steps if (subset := s.subset()) is not None]


def _balance_section(run: RunDir, page: _Page, dataset: DatasetRecord) -> None:
    names = dataset.class_names
    k = len(names)
    per_class, n = dataset.per_class, dataset.pool_size
    balance = {"full pool": class_shares(per_class, np.arange(n), num_classes=k)}
    for name, subset in _step_subsets(run):
        balance[f"{name} ({subset.size})"] = class_shares(
            per_class, subset.index, multiplicity=subset.multiplicity, num_classes=k
        )
    section = Section("Class balance of each subset against the full pool")
    unit = "boxes" if dataset.pool_boxes is not None else "samples"
    section.table(
        ["class", *balance],
        [[names[c], *(f"{100 * b[c]:.2f}%" for b in balance.values())] for c in range(k)],
    )
    for name, subset in _step_subsets(run):
        flags = imbalanced_classes(per_class, subset.index, multiplicity=subset.multiplicity)
        if flags:
            section.warning(f"{name}: {imbalance_line(flags, names)}")
    if len(balance) > 1:
        figures.class_balance_figure(page.png("class_balance.png"), balance, names)
        section.figure(page.figures[-1], f"share of {unit} per class")
    page.sections.append(section)


def _gallery_section(run: RunDir, page: _Page, dataset: DatasetRecord | None) -> None:
    """Each acquisition step's gallery (``gallery.npz``): what its selection took and left."""
    galleries = [(step, record) for step in run.steps if (record := step.gallery()) is not None]
    scored = [step for step in run.steps if step.files.stats.is_file() or step.files.scores.is_file()]
    if not galleries:
        if scored:
            page.missing.append(
                "gallery: the steps keep no thumbnails (runs of subsetsearch 0.2.0 and before); a new run keeps them"
            )
        return
    names = dataset.class_names if dataset is not None else None
    identity = dataset.pool_source if dataset is not None else None
    for step, record in galleries:
        section = Section(f"Gallery of {step.files.name}: what the selection took and left")
        by = "Per class" if (record.labels >= 0).any() else "Over all images, each with the ensemble's heatmap in red"
        section.text(
            f"{by}: the {EXTREMES} highest and lowest {record.function} scores, and the {NEAR_CUT} chosen samples "
            f"of lowest score and the {NEAR_CUT} left-out samples of highest score either side of the cut "
            "(blue frame: chosen by this step). The vote is the class most of the ensemble's members predict, "
            "with the share of members that predict it."
        )
        section.raw(gallery_html(record, class_names=names, identity=identity))
        page.sections.append(section)


def _added_rows(subset: Subset | None, previous: Subset | None) -> np.ndarray:
    """Rows a step acquired: those whose multiplicity grew since the previous step (with automatic
    duplication, a row chosen again keeps the iteration it first came in)."""
    if subset is None:
        return np.empty(0, np.int64)
    before = dict(zip(previous.index.tolist(), previous.multiplicity.tolist(), strict=True)) if previous else {}
    grew = [before.get(int(r), 0) < int(m) for r, m in zip(subset.index, subset.multiplicity, strict=True)]
    return subset.index[np.asarray(grew, dtype=bool)]


def _scores_section(run: RunDir, page: _Page, dataset: DatasetRecord | None) -> None:
    section = Section("Acquisition scores")
    table_rows = []
    found = False
    previous: Subset | None = None
    labels = dataset.pool_labels if dataset is not None else None
    for step in run.steps:
        subset = step.subset()
        chosen_rows = _added_rows(subset, previous)
        previous = subset
        if run.task == "detection":
            scores = step.image_scores()
            if scores is None:
                continue
            function = run.config.get("search", {}).get("function", "score")
            scored = np.isfinite(scores)
            by_function = {function: scores[scored]}
        else:
            stats = step.stats()
            if stats is None:
                continue
            scored = stats.member_counts > 0
            by_function = {}
            for fn in ACQUISITION_FUNCTIONS:
                if fn == "error_count" and labels is None:
                    continue
                by_function[fn] = acquire(stats, fn, labels=labels if fn == "error_count" else None)[scored]
            if labels is not None:
                predicted = np.argmax(stats.mean_probs(), axis=1)
                a, b = selected_accuracy(predicted, labels, np.flatnonzero(scored), chosen_rows)
                table_rows.append(
                    [
                        step.files.name,
                        step.metrics.get("members", "-"),
                        percent_text([a]),
                        percent_text([b]),
                    ]
                )
        found = True
        chosen = np.isin(np.flatnonzero(scored), chosen_rows)
        png = page.png(f"scores_{step.files.name}.png")
        figures.score_histograms_figure(
            png, f"{step.files.name}: scores of the {int(scored.sum())} scored samples", by_function, chosen
        )
        section.figure(png, f"step {step.iteration}: score histograms per acquisition function (red: selected)")
    if table_rows:
        section.text("Accuracy of each step's acquisition ensemble on the samples it selected and on the rest (%):")
        section.table(["step", "members", "selected", "unselected"], table_rows)
    if not found:
        section.text("No step has scored samples yet.")
        if run.scheme not in ("random", "full"):
            page.missing.append("score histograms: no step has ensemble statistics yet")
    page.sections.append(section)


def _consensus_section(run: RunDir, page: _Page) -> None:
    if run.task == "detection":
        return
    dataset = run.dataset()
    labels = dataset.pool_labels if dataset is not None else None
    result = consensus({run.path.name: [run]}, (lambda _run: labels) if labels is not None else None)
    section = Section(result.title)
    if result.figure is None:
        if run.scheme not in ("random", "full"):
            page.missing.append(
                "checkpoint consensus: needs a step whose votes.npz holds two or more checkpoints of one run on "
                "rows its ensemble never trained on (build_up; pretrain and compress train on the whole pool)"
            )
        return
    result.figure(page.png("consensus.png"))
    section.table(result.header, result.rows).figure(page.figures[-1], result.title)
    page.sections.append(section)


def _curves_section(run: RunDir, page: _Page) -> None:
    found = run_curves(run)
    if found is None and run.task == "detection":
        page.missing.append("validation curves: detection runs train without a validation set")
        return
    if found is None:
        has_validation = run.config.get("data", {}).get("validation_fraction", 0) > 0
        page.missing.append(
            "validation curves: needs the final subset model and the full model"
            + ("" if has_validation else ", and a validation set (set data.validation_fraction, compare: [full])")
        )
        return
    figures.curves_figure(page.png("curves.png"), {run.path.name: found})
    rows = []
    for name in (found["subset"], "full"):
        c = found["curves"][name]
        reach = c["seconds_to_target"]
        rows.append(
            [
                name,
                len(c["epochs"]),
                f"{c['seconds'][-1]:.1f}",
                f"{100 * max(c['val_accuracy']):.2f}",
                f"{reach:.1f}" if reach is not None else "never",
            ]
        )
    section = Section("Validation curves: subset model vs full model")
    section.table(["model", "epochs", "train s", "best val %", "s to full's best - 0.5"], rows)
    section.figure(page.figures[-1], "validation accuracy over training time")
    page.sections.append(section)


def _cost_section(run: RunDir, page: _Page) -> None:
    section = Section("Cost")
    steps = [s.metrics for s in run.steps]
    variants = run.variants()
    models = {name: float(np.mean(v["train_seconds"])) for name, v in variants.items() if v.get("train_seconds")}
    search = sum(m.get("train_seconds", 0.0) + m.get("score_seconds", 0.0) for m in steps)
    rows = [["search (ensemble training + scoring)", f"{search:.1f}"]]
    final = run.scheme if run.scheme in models else None
    if final is not None:
        rows.append([f"subset model ({final})", f"{models[final]:.1f}"])
    if "full" in models:
        rows.append(["full-pool model", f"{models['full']:.1f}"])
        if final is not None and models["full"] > 0:
            rows.append(["subset / full training time", f"{models[final] / models['full']:.2f}"])
            rows.append(["(search + subset) / full", f"{(search + models[final]) / models['full']:.2f}"])
    device = ", ".join(sorted({str(m.get("device", "unrecorded")) for m in steps})) or "-"
    section.text(f"Wall-clock seconds (device: {device}).")
    section.table(["", "seconds"], rows)
    if steps:
        ordered = {n: models[n] for n in sorted(models, key=lambda n: (split_variant(n)[0], n))}
        figures.cost_figure(page.png("cost.png"), steps, ordered)
        section.figure(page.figures[-1], "seconds per step, and per subset model")
    page.sections.append(section)


def _detection_section(run: RunDir, page: _Page) -> None:
    from subsetsearch.report.detection import write_detection_figures

    section = Section("Detection: heatmaps and duplication")
    pngs = [p for p in write_detection_figures(run.path) if p.suffix == ".png"]
    for png in pngs:
        page.figures.append(png)
        section.figure(png, png.stem.replace("_", " "))
    scored = [s for s in run.steps if s.image_scores() is not None]
    if len([p for p in pngs if p.name.startswith("heatmaps_")]) < len(scored):
        page.missing.append(
            "detection heatmaps: a scored step has no heatmaps.npz with its images (steps scored before this "
            "version kept none)"
        )
    page.sections.append(section)


# -- a study ----------------------------------------------------------------------------------------


def paper_markdown(tables: tuple[PaperTable, ...]) -> str:
    """The paper's tables as Markdown, under a heading naming the paper ('' for none)."""
    if not tables:
        return ""
    lines = ["", f"**The paper's numbers** ({CITATION})", ""]
    for table in tables:
        lines += [f"{table.source}: {table.title}", "", "| " + " | ".join(table.header) + " |"]
        lines.append("|" + "|".join(["---"] * len(table.header)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in table.rows]
        lines += ["", table.note, ""] if table.note else [""]
    return "\n".join(lines)


def study_page(path: Path, *, study: str, name: str, trials: int, cells: list[str], config: dict) -> ReportResult:
    """Write ``path/report/`` for the study directory ``path``: the ``study`` analysis over the runs
    of ``cells`` x ``trials``, the paper's numbers beside ours; ``config`` is the study config as
    plain data (shown on the page)."""
    import yaml

    layout = StudyLayout(path)
    page = _Page(layout.report)
    cells_runs: dict[str, list[RunDir]] = {}
    rows = []
    for cell in cells:
        cells_runs[cell] = []
        for t in range(trials):
            run_dir = layout.run(cell, t)
            if not run_dir.config.is_file():
                page.missing.append(f"{cell} trial {t}: not started (`subsetsearch study` resumes it)")
                continue
            run = read_run(run_dir.root)
            cells_runs[cell].append(run)
            variants = run.variants()
            _metric, values = variant_scores(variants.get(run.scheme, {}))
            rows.append([cell, t, "finished" if run.metrics else "partial", percent_text(values)])

    def labels_of(run: RunDir) -> np.ndarray:
        dataset = run.dataset()
        if dataset is None or dataset.pool_labels is None:
            raise InputError(
                f"'{run.path}' has no dataset.npz with pool labels; run `subsetsearch study` again to add it"
            )
        return dataset.pool_labels

    analysis = STUDY_FUNCTIONS[study]
    with_labels = study in ("ensembles", "consensus")
    result: StudyResult = analysis(cells_runs, labels_of) if with_labels else analysis(cells_runs)
    page.missing += result.missing
    section = Section(result.title).table(result.header, result.rows)
    for title, header, table_rows in result.tables:
        section.text(title).table(header, table_rows)
    if result.figure is not None:
        png = page.png(f"{study}.png")
        result.figure(png)
        section.figure(png, result.title)
    page.sections.append(section)
    paper = paper_tables(study)
    if paper:
        beside = Section(f"The paper's numbers ({CITATION})")
        for table in paper:
            beside.text(f"{table.source}: {table.title}").table(list(table.header), [list(r) for r in table.rows])
            if table.note:
                beside.text(table.note)
        page.sections.append(beside)
    page.sections.append(Section("Runs").table(["cell", "trial", "status", "final subset model, test (%)"], rows))
    page.sections.append(Section("Study config").pre(yaml.safe_dump(config, sort_keys=False)))
    with atomic_path(page.folder / "study.json") as tmp:
        tmp.write_text(
            json.dumps(
                {
                    "study": study,
                    "name": name,
                    "trials": trials,
                    "table": {"header": result.header, "rows": result.rows},
                    "data": result.data,
                    "tables": [{"title": t, "header": h, "rows": r} for t, h, r in result.tables],
                    "paper": [asdict(table) for table in paper],
                    "missing": page.missing,
                },
                indent=1,
            )
            + "\n"
        )
    with atomic_path(page.folder / "study.md") as tmp:
        tmp.write_text(result.markdown() + paper_markdown(paper))
    html_path = page.folder / "report.html"
    write_html(html_path, f"subsetsearch study: {name} ({study})", page.sections, page.missing)
    out = _result(html_path, page)
    out.summary = result.markdown() + "\n" + out.summary
    return out
