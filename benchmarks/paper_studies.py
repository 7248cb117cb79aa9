"""The paper's studies on Fashion-MNIST (configs/studies/*.yaml): run each (resumable), write its
report, and copy the table, numbers, figure and page into benchmarks/results/studies/.

    .venv/bin/python benchmarks/paper_studies.py                 # all seven
    .venv/bin/python benchmarks/paper_studies.py schemes curves  # some of them
    .venv/bin/python benchmarks/paper_studies.py --tables        # the tables of paper_studies.md, from the JSON
                                                                 # (and the functions' pairs with Holm's correction)

Each study is also one command of its own, which is what benchmarks/paper_studies.md quotes:

    subsetsearch study configs/studies/NAME.yaml --study-dir benchmarks/.data/studies/NAME

Run directories (checkpoints included) stay in benchmarks/.data/studies/ (not committed). A second
run of this script resumes an interrupted study and skips one whose committed results file already
holds its config (``--again`` reruns it). Each results file records the study's config, its wall
seconds (summed over interrupted attempts on one machine) and the machine's CPU count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from subsetsearch.internal.malloc import tune_malloc

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "studies"
STUDIES = ("schemes", "functions", "outliers", "ensembles", "consensus", "architecture", "curves")


def tables() -> str:
    """Every table of benchmarks/paper_studies.md, from the committed study JSON: means with the
    sample sd (ddof=1) and n trials, and the comparisons paired by trial with a 95% interval (the
    study reports' own tables; ``NAME.md`` adds the paper's beside them)."""

    def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
        return [
            "| " + " | ".join(header) + " |",
            "|---" * len(header) + "|",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]

    out = []
    for name in STUDIES:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            out += [f"### {name}: not run yet", ""]
            continue
        payload = json.loads(path.read_text())
        out += [f"### {name} (`{path.relative_to(ROOT)}`)", ""]
        out += [*markdown(payload["table"]["header"], payload["table"]["rows"]), ""]
        for table in payload.get("tables", []):
            out += [table["title"], "", *markdown(table["header"], table["rows"]), ""]
    return "\n".join(out)


#: The functions study's sizes of a 10,000-image pool that the paper's CIFAR-10 columns match.
PAIR_SIZES = {"1250": "12.5%", "2500": "25%", "5000": "50%"}
UNCERTAINTY = ("entropy", "mutual_information", "variation_ratios")


def function_pairs() -> str:
    """The functions study's uncertainty functions against each other, paired by trial: the mean
    difference with its 95% interval, the paired t-test's p-value, and Holm's correction over every
    pair and size (the family)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary_stats import difference, holm_adjusted, p_value, paired

    series = json.loads((RESULTS / "functions.json").read_text())["data"]["series"]
    rows = []
    for size, label in PAIR_SIZES.items():
        for i, a in enumerate(UNCERTAINTY):
            for b in UNCERTAINTY[i + 1 :]:
                by_trial = [dict(zip(series[f][size]["seeds"], series[f][size]["trials"], strict=True)) for f in (a, b)]
                rows.append((f"{a} − {b}".replace("_", " "), label, paired(*by_trial)))
    adjusted = holm_adjusted([p_value(d) for _, _, d in rows])
    lines = ["| pair | size | difference | p | Holm p |", "|---|---|---:|---:|---:|"]
    for (pair, label, d), holm_p in zip(rows, adjusted, strict=True):
        lines.append(f"| {pair} | {label} | {difference(d)} | {p_value(d):.3f} | {holm_p:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="*", metavar="STUDY", help=f"some of: {', '.join(STUDIES)}")
    parser.add_argument("--tables", action="store_true", help="print the tables of paper_studies.md from the JSON")
    parser.add_argument(
        "--again", action="store_true", help="rerun a study whose committed results already hold its config"
    )
    args = parser.parse_args()
    if args.tables:
        print(tables())
        print(f"### functions: the uncertainty functions against each other\n\n{function_pairs()}")
        return 0
    unknown = sorted(set(args.studies) - set(STUDIES))
    if unknown:
        parser.error(f"unknown study {', '.join(unknown)}; choose from {', '.join(STUDIES)}")
    tune_malloc()
    from subsetsearch.pipeline.progress import Reporter
    from subsetsearch.pipeline.report import build_report
    from subsetsearch.pipeline.study import load_study_config, run_study

    results = ROOT / "benchmarks" / "results" / "studies"
    results.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still records the time spent
    for name in args.studies or STUDIES:
        config = load_study_config(ROOT / "configs" / "studies" / f"{name}.yaml")
        resolved = config.model_dump(mode="json", exclude={"study_dir"})
        committed = results / f"{name}.json"
        if not args.again and committed.is_file() and json.loads(committed.read_text()).get("config") == resolved:
            print(f"{name}: {committed.relative_to(ROOT)} holds this config's results; skipped", flush=True)
            continue
        study_dir = ROOT / "benchmarks" / ".data" / "studies" / name
        spent = study_dir / "wall_seconds.json"  # summed over interrupted attempts on this machine
        before = json.loads(spent.read_text())["seconds"] if spent.is_file() else 0.0
        started = time.perf_counter()
        try:
            with Reporter(quiet=False) as reporter:
                run_study(config, study_dir, reporter)
        finally:
            if (study_dir / "study.yaml").is_file():
                spent.write_text(json.dumps({"seconds": before + time.perf_counter() - started}) + "\n")
        report = build_report(study_dir)
        print(report.summary, flush=True)
        folder = study_dir / "report"
        shutil.copy(folder / "study.md", results / f"{name}.md")
        shutil.copy(folder / "report.html", results / f"{name}.html")
        if (folder / f"{config.study}.png").is_file():
            shutil.copy(folder / f"{config.study}.png", results / f"{name}.png")
        payload = json.loads((folder / "study.json").read_text())
        payload["command"] = (
            f"subsetsearch study configs/studies/{name}.yaml --study-dir benchmarks/.data/studies/{name}"
        )
        payload["config"] = resolved
        payload["wall_seconds"] = json.loads(spent.read_text())["seconds"]
        payload["cpu_count"] = os.cpu_count()
        (results / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
