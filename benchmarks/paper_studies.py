"""The paper's studies on Fashion-MNIST (configs/studies/*.yaml): run each (resumable), write its
report, and copy the table, numbers, figure and page into benchmarks/results/studies/.

    .venv/bin/python benchmarks/paper_studies.py                 # all seven
    .venv/bin/python benchmarks/paper_studies.py schemes curves  # some of them
    .venv/bin/python benchmarks/paper_studies.py --tables        # the tables of paper_studies.md, from the JSON

Each study is also one command of its own, which is what benchmarks/paper_studies.md quotes:

    subsetsearch study configs/studies/NAME.yaml --study-dir benchmarks/.data/studies/NAME

Run directories (checkpoints included) stay in benchmarks/.data/studies/ (not committed); a second
run of this script finds every run finished and only rebuilds the reports.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary_stats import paired

from subsetsearch.internal.malloc import tune_malloc

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "studies"
STUDIES = ("schemes", "functions", "outliers", "ensembles", "consensus", "architecture", "curves")


def tables() -> str:
    """Every table of benchmarks/paper_studies.md, from the committed study JSON: means with the
    sample sd (ddof=1) and n trials; each cell against the random baseline of the same trials,
    paired by trial, with a 95% interval."""
    from subsetsearch.report.studies import percent_text

    out = []
    for name in ("schemes", "functions", "outliers"):
        data = json.loads((RESULTS / f"{name}.json").read_text())["data"]
        pool, sizes = data["pool_size"], data["sizes"]
        out += [f"### {name}", "", "| | " + " | ".join(f"{100 * k / pool:.1f}%" for k in sizes) + " |"]
        out.append("|---" * (len(sizes) + 1) + "|")
        for series, points in data["series"].items():
            out.append(
                f"| {series} | "
                + " | ".join(percent_text(points.get(str(k), {}).get("trials", [])) for k in sizes)
                + " |"
            )
        out.append("| full | " + " | ".join(["-"] * (len(sizes) - 1) + [percent_text(data["full"]["trials"])]) + " |")
        random = next((v for key, v in data["series"].items() if key.startswith("random")), {})
        out += ["", "paired by trial against random, points (mean [95% interval], n):", ""]
        for series, points in data["series"].items():
            if series.startswith("random"):
                continue
            cells = []
            for k in sizes:
                a, b = points.get(str(k), {}).get("trials", []), random.get(str(k), {}).get("trials", [])
                if not a or len(a) != len(b):
                    cells.append("-")
                    continue
                d = paired(dict(enumerate(a)), dict(enumerate(b)))
                interval = f" [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]" if d["ci95"] else ""
                cells.append(f"{100 * d['mean']:+.2f}{interval} (n={d['n']})")
            out.append(
                f"- {series}: " + "; ".join(f"{100 * k / pool:.1f}% {c}" for k, c in zip(sizes, cells, strict=True))
            )
        out.append("")
    for name in ("ensembles", "architecture", "consensus", "curves"):
        table = json.loads((RESULTS / f"{name}.json").read_text())["table"]
        out += [f"### {name} (one value per trial)", "", "| " + " | ".join(table["header"]) + " |"]
        out.append("|---" * len(table["header"]) + "|")
        out += ["| " + " | ".join(row) + " |" for row in table["rows"]]
        out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="*", metavar="STUDY", help=f"some of: {', '.join(STUDIES)}")
    parser.add_argument("--tables", action="store_true", help="print the tables of paper_studies.md from the JSON")
    args = parser.parse_args()
    if args.tables:
        print(tables())
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
    for name in args.studies or STUDIES:
        config = load_study_config(ROOT / "configs" / "studies" / f"{name}.yaml")
        study_dir = ROOT / "benchmarks" / ".data" / "studies" / name
        with Reporter(quiet=False) as reporter:
            run_study(config, study_dir, reporter)
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
        (results / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
