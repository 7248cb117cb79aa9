"""`subsetsearch report` and `subsetsearch study` end to end on digits: the report of a finished
run, of a partial run (it says what is missing), of a study; the HTML opened in headless Chromium
with every figure decoded; a study's shared work giving what unshared runs give."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from report_helpers import report_elsewhere

from subsetsearch.errors import InputError
from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.report import build_report
from subsetsearch.pipeline.run import run_config
from subsetsearch.pipeline.study import load_study_config, run_study
from subsetsearch.rundir import StudyLayout

BASE = {
    "seed": 2,
    "data": {"dataset": "digits", "limit": 600, "test_limit": 300, "validation_fraction": 0.1},
    "model": {"name": "cnn_small", "width": 4},
    "train": {
        "epochs": 4,
        "batch_size": 64,
        "augment": {"crop_padding": 1, "flip": False},
        "threads": 1,
        "precision": "fp32",
    },
    "ensemble": {"kind": "checkpoints", "start": 1, "stop": 4},
    "search": {"scheme": "build_up", "budgets": [0.2, 0.4, 0.6]},
    "compare": ["random", "full"],
}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("report") / "run"
    run_config(parse_config({**BASE, "name": "r"}), run_dir)
    return run_dir


def _report_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("report"))
    return target


def test_report_of_a_finished_run(finished_run, tmp_path):
    run_dir = _report_copy(finished_run, tmp_path / "run")
    result = build_report(run_dir)
    names = sorted(p.name for p in result.figures)
    assert names == [
        "class_balance.png",
        "consensus.png",
        "cost.png",
        "curves.png",
        "scores_iter_01.png",
        "scores_iter_02.png",
    ]
    for png in result.figures:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.missing == []
    page = result.html.read_text()
    for title in (
        "Subsets",
        "Test results of the subset models",
        "Class balance of each subset against the full pool",
        "Acquisition scores",
        "Checkpoint consensus on the rows the ensemble never trained on",
        "Validation curves: subset model vs full model",
        "Cost",
        "Config",
    ):
        assert f"<h2>{title}</h2>" in page
    assert len(re.findall(r'data-figure="(?!thumb-)', page)) == len(names)
    for step in ("iter_01", "iter_02"):  # each acquisition step's gallery, thumbnails embedded
        assert f"<h2>Gallery of {step}: what the selection took and left</h2>" in page
    assert page.count('data-figure="thumb-') > 0
    assert 'src="data:image/png;base64,' in page and 'src="http' not in page  # self-contained
    # class balance of the final subset, checked against the subset file and the pool labels
    from subsetsearch.pipeline.classify import load_splits

    labels = load_splits(parse_config({**BASE, "name": "r"})).pool.y
    final = pq.read_table(run_dir / "iter_02" / "subset.parquet")["index"].to_numpy()
    share = np.bincount(labels[final], minlength=10) / len(final)
    row = re.search(r"<tr><td>3</td>(.*?)</tr>", page).group(1)
    assert re.findall(r"<td>([\d.]+)%</td>", row)[-1] == f"{100 * share[3]:.2f}"


def test_report_of_a_partial_run_says_what_is_missing(finished_run, tmp_path):
    run_dir = _report_copy(finished_run, tmp_path / "partial")
    (run_dir / "metrics.json").unlink()
    (run_dir / "subset.parquet").unlink()
    shutil.rmtree(run_dir / "iter_02")
    shutil.rmtree(run_dir / "models")
    result = build_report(run_dir)
    text = " | ".join(result.missing)
    assert "steps: 2 of 3 finished (iter_00, iter_01)" in text
    assert "metrics.json: the run has not finished" in text
    assert "no subset model has finished" in text
    assert "validation curves" in text
    page = result.html.read_text()
    assert 'id="missing"' in page and "steps: 2 of 3 finished" in page
    assert sorted(p.name for p in result.figures) == [
        "class_balance.png",
        "consensus.png",
        "cost.png",
        "scores_iter_01.png",
    ]
    only_config = tmp_path / "fresh"
    only_config.mkdir()
    shutil.copy(finished_run / "config.yaml", only_config / "config.yaml")
    result = build_report(only_config)
    assert result.html.is_file() and "steps: 0 of 3 finished (none)" in " ".join(result.missing)


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ink(png: Path) -> float:
    """Share of the screenshot's pixels that are not near-white."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.int16)
    return float(np.mean(pixels < 235))


def test_report_html_opens_in_headless_chromium_with_every_figure(finished_run, tmp_path):
    assert CHROMIUM is not None, "chromium is missing: `make test` installs it (apt-get install chromium)"
    run_dir = _report_copy(finished_run, tmp_path / "run")
    result = build_report(run_dir)
    total = result.html.read_text().count('data-figure="')  # figures and the gallery's thumbnails
    assert total > len(result.figures)
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", result.html.as_uri())
    assert f'data-figures-loaded="{total}/{total}"' in dom.stdout, dom.stderr[-2000:]
    # the screenshot: the same page with its figures' data cut off must show far less ink
    broken = result.html.with_name("broken.html")
    broken.write_text(re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,AAAA", result.html.read_text()))
    shots = {}
    for name, page in (("report", result.html), ("broken", broken)):
        shot = tmp_path / f"{name}.png"
        _chromium("--window-size=1200,6000", f"--screenshot={shot}", page.as_uri())
        shots[name] = _ink(shot)
    # (the gallery's captions and frames are ink either way: the figures must add 3% of the page)
    assert shots["report"] > shots["broken"] + 0.03, shots
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", broken.as_uri())
    assert f'data-figures-loaded="0/{total}"' in dom.stdout


# -- studies ------------------------------------------------------------------------------------------

STUDY = {
    "study": "schemes",
    "name": "s",
    "trials": 1,
    "base": {**{k: v for k, v in BASE.items() if k != "seed"}, "subset_model": {"models": 1, "steps": "all"}},
    "cells": {
        "build_up": {"search": {"scheme": "build_up"}},
        "compress": {"search": {"scheme": "compress"}},
        "pretrain": {"search": {"scheme": "pretrain"}, "ensemble": {"start": 3}},
    },
}


def _shared(donor: Path, run: Path) -> list[str]:
    """The pieces of ``run`` whose every file is the same file (one inode) as ``donor``'s at the same
    path, outermost first: a finished step, a training run, a subset model's folder."""
    pieces = [
        *sorted(p for p in run.glob("iter_*") if p.is_dir()),
        *sorted(run.glob("iter_*/members/run_*")),
        *sorted(run.glob("models/*")),
    ]
    shared = []
    for piece in pieces:
        if any(piece.is_relative_to(run / s) for s in shared):
            continue
        files = [f for f in piece.rglob("*") if f.is_file()]
        twins = [donor / f.relative_to(run) for f in files]
        if files and all(t.is_file() and t.stat().st_ino == f.stat().st_ino for f, t in zip(files, twins, strict=True)):
            shared.append(piece.relative_to(run).as_posix())
    return sorted(shared)


def test_study_shares_work_and_matches_unshared_runs(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    config = load_study_config(path)
    study_dir = run_study(config, tmp_path / "study")
    pretrain = StudyLayout(study_dir).run("pretrain", 0).root
    compress = StudyLayout(study_dir).run("compress", 0).root
    # pretrain (epochs 3-4) reuses compress's training run (epochs 1-4) and both baselines (steps: all,
    # so the random subsets of iter_00 and iter_01, and of the last step, named plainly "random")
    assert _shared(compress, pretrain) == sorted(
        [
            "iter_00/members/run_0",
            "models/full",
            *[f"models/random@iter_{i:02d}" for i in range(2)],
            "models/random",
        ]
    )
    shared = compress / "iter_00" / "members" / "run_0" / "epoch_004.safetensors"
    assert (pretrain / "iter_00" / "members" / "run_0" / "epoch_004.safetensors").stat().st_ino == shared.stat().st_ino
    # the same cell run alone, without sharing, reaches the same subset and test accuracies
    alone = run_config(config.cell_config("pretrain", 0), tmp_path / "alone")
    for name in ("subset.parquet", "iter_01/subset.parquet"):
        assert pq.read_table(pretrain / name).equals(pq.read_table(tmp_path / "alone" / name))
    shared_metrics = json.loads((pretrain / "metrics.json").read_text())["variants"]
    assert {k: v["test_accuracy"] for k, v in shared_metrics.items()} == {v.name: v.accuracies for v in alone.variants}
    result = build_report(study_dir)
    assert result.missing == []
    table = json.loads((study_dir / "report" / "study.json").read_text())
    pool = json.loads((pretrain / "metrics.json").read_text())["pool_size"]
    sizes = [round(b * pool) for b in (0.2, 0.4, 0.6)]
    assert table["table"]["header"] == ["", *(f"{100 * k / pool:.1f}%" for k in sizes)]
    assert [row[0] for row in table["table"]["rows"]] == [
        "build_up",
        "compress",
        "pretrain",
        "random (baseline)",
        "full",
    ]
    full_acc = shared_metrics["full"]["test_accuracy"][0]
    assert table["table"]["rows"][-1][-1] == f"{100 * full_acc:.2f}"
    assert (study_dir / "report" / "schemes.png").is_file()


def test_study_report_of_an_unstarted_study_lists_every_run(tmp_path):
    from subsetsearch.pipeline.study import claim_study_dir

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    claim_study_dir(load_study_config(path), tmp_path / "s")
    result = build_report(tmp_path / "s")
    assert result.missing == [
        *(f"{cell} trial 0: not started (`subsetsearch study` resumes it)" for cell in STUDY["cells"]),
        *(f"{cell}: no finished run" for cell in STUDY["cells"]),
    ]
    assert result.html.is_file()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "subsetsearch.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"study": "nope"}, "study: Input should be"),
        ({"cells": {}}, "cells: give at least one cell"),
        ({"cells": {"a/b": {}}}, "cell name 'a/b' must be"),
        ({"cells": {"x": {"search": {"scheme": "bogus"}}}}, "cell 'x': search.scheme"),
        ({"cells": {"x": {"model": {"depth": 3}}}}, "cell 'x': model.depth: unknown key"),
        ({"trials": 0}, "trials: Input should be greater than 0"),
        ({"base": {**STUDY["base"], "search": {"budgets": [0.5, 2000]}}}, "search.budgets 2000 exceeds the pool"),
    ],
)
def test_bad_study_configs_are_one_line_and_write_nothing(tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**STUDY, **change}))
    done = _cli("study", str(path), "--study-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


def test_report_of_a_folder_that_is_no_run_is_one_line(tmp_path):
    done = _cli("report", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"subsetsearch: error: '{tmp_path}' is neither a run directory (config.yaml) nor a study directory "
        "(study.yaml); give the folder that `subsetsearch run` or `subsetsearch study` wrote"
    ]
    assert not (tmp_path / "report").exists()


def test_a_study_takes_new_cells_and_refuses_a_changed_one_before_any_work(tmp_path):
    small = {
        **STUDY,
        "base": {**STUDY["base"], "search": {"budgets": [0.2, 0.4]}, "compare": ["full"]},
        "cells": {"random": {"search": {"scheme": "random"}}},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(small))
    study_dir = run_study(load_study_config(path), tmp_path / "s")
    trained = StudyLayout(study_dir).run("random", 0).root / "models" / "random" / "model_0" / "done.json"
    first = trained.stat().st_mtime_ns
    grown = {**small, "cells": {**small["cells"], "full": {"search": {"scheme": "full", "budgets": [1.0]}}}}
    path.write_text(yaml.safe_dump(grown))
    run_study(load_study_config(path), study_dir)
    assert trained.stat().st_mtime_ns == first  # not trained again
    assert (StudyLayout(study_dir).run("full", 0).root / "metrics.json").is_file()
    assert yaml.safe_load((study_dir / "study.yaml").read_text())["cells"] == grown["cells"]
    changed = {**grown, "cells": {**grown["cells"], "full": {"search": {"scheme": "full", "budgets": [0.9]}}}}
    path.write_text(yaml.safe_dump(changed))
    before = sorted(p.relative_to(study_dir) for p in study_dir.rglob("*"))
    done = _cli("study", str(path), "--study-dir", str(study_dir), cwd=tmp_path)
    assert done.returncode == 2
    assert "holds a run of another config (search.budgets differs)" in done.stderr
    assert sorted(p.relative_to(study_dir) for p in study_dir.rglob("*")) == before
    assert yaml.safe_load((study_dir / "study.yaml").read_text())["cells"] == grown["cells"]


def test_report_of_a_damaged_study_yaml_is_one_line(tmp_path):
    from subsetsearch.internal.directories import write_marker

    write_marker(tmp_path, "study")  # a study directory `subsetsearch study` made, whose config was damaged
    (tmp_path / "study.yaml").write_text("study: [unclosed\n")
    done = _cli("report", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"subsetsearch: error: '{tmp_path / 'study.yaml'}' is not a study config `subsetsearch study` wrote; "
        "rerun the study to rewrite it"
    ]


def test_report_of_a_run_directory_copied_to_a_machine_without_the_data_is_the_same(finished_run, tmp_path):
    here = build_report(_report_copy(finished_run, tmp_path / "here" / "run"))
    page = here.html.read_text()
    there = report_elsewhere(finished_run, tmp_path / "there" / "run")
    assert there.replace(str(tmp_path / "there"), str(tmp_path / "here")) == page
    assert here.missing == [] and len(re.findall(r'data-figure="(?!thumb-)', page)) == 6
    assert page.count('data-figure="thumb-') > 0  # the gallery, from the run directory alone


# -- the ensembles study's options: a last step's own ensemble, scoring the subset, outliers left out ---------

ENSEMBLES = {
    "study": "ensembles",
    "name": "e",
    "trials": 1,
    "base": {
        **{k: v for k, v in BASE.items() if k != "seed"},
        "search": {
            "scheme": "build_up",
            "budgets": [0.2, 0.4, 0.6],
            "function": "variation_ratios",
            "score_subset": True,
            "skip_disagreement": True,
        },
        "compare": ["random"],
    },
    "cells": {
        "wide": {"final_ensemble": {"kind": "combined", "runs": 2, "start": 1, "stop": 4}},
        "narrow": {"final_ensemble": {"kind": "checkpoints", "start": 1, "stop": 2}},
    },
}


def test_a_last_step_ensemble_shares_the_steps_before_it_and_leaves_out_disagreement(tmp_path):
    from subsetsearch.stats import EnsembleStats

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(ENSEMBLES, sort_keys=False))  # wide first: it trains what narrow reads
    config = load_study_config(path)
    study_dir = run_study(config, tmp_path / "study")
    wide, narrow = (StudyLayout(study_dir).run(cell, 0).root for cell in ("wide", "narrow"))
    # only the last step's ensemble differs: the steps before it, the run the last one shares, and the
    # random baseline of the final subset (steps: final)
    assert _shared(wide, narrow) == sorted(["iter_00", "iter_01", "iter_02/members/run_0", "models/random"])
    member = "iter_02/members/run_0/epoch_002.safetensors"
    assert (narrow / member).stat().st_ino == (wide / member).stat().st_ino
    steps = {
        cell: [json.loads((d / f"iter_{i:02d}" / "metrics.json").read_text()) for i in (1, 2)]
        for cell, d in (("wide", wide), ("narrow", narrow))
    }
    assert [m["members"] for m in steps["wide"]] == [4, 8]  # checkpoints 1-4; then 2 runs x 4
    assert [m["members"] for m in steps["narrow"]] == [4, 2]
    # the narrow cell alone, sharing nothing, reaches the same subset and test accuracy
    alone = run_config(config.cell_config("narrow", 0), tmp_path / "alone")
    shared_table = pq.read_table(narrow / "subset.parquet").to_pydict()
    alone_table = pq.read_table(tmp_path / "alone" / "subset.parquet").to_pydict()
    for column in ("index", "multiplicity", "score", "iteration"):  # the random start's scores are NaN
        np.testing.assert_array_equal(shared_table[column], alone_table[column])
    shared_metrics = json.loads((narrow / "metrics.json").read_text())["variants"]
    assert {k: v["test_accuracy"] for k, v in shared_metrics.items()} == {v.name: v.accuracies for v in alone.variants}
    # score_subset: the last step scored every pool row, the ones it trained on included
    pool = json.loads((narrow / "metrics.json").read_text())["pool_size"]
    stats = EnsembleStats.load(narrow / "iter_02" / "stats.npz")
    assert stats.member_counts.tolist() == [2] * pool
    # skip_disagreement: no row on which the 2 members vote differently is acquired at the last step
    with np.load(narrow / "iter_02" / "votes.npz") as saved:
        rows, votes = saved["rows"], saved["votes"]
    assert rows.tolist() == list(range(pool))
    table = pq.read_table(narrow / "subset.parquet").to_pydict()
    before = {r for r, i in zip(table["index"], table["iteration"], strict=True) if i < 2}
    chosen = {r for r, i in zip(table["index"], table["iteration"], strict=True) if i == 2}
    disagree = {int(r) for r, column in zip(rows, votes.T, strict=True) if len(set(column.tolist())) == len(column)}
    assert not chosen & disagree
    assert steps["narrow"][1]["disagreement_outliers"] == len(disagree - before) > 0
    # the report: a single checkpoint's row from the first cell, one row per ensemble, the random
    # baseline, and the paper's Tables II and III beside them
    build_report(study_dir)
    rows_out = json.loads((study_dir / "report" / "study.json").read_text())["table"]["rows"]
    assert [r[0] for r in rows_out] == ["single (run_0/epoch_004 of wide)", "wide", "narrow", "random (baseline)"]
    page = (study_dir / "report" / "study.md").read_text()
    assert "| Selected (trained on) | 58.10 | 74.98 | 72.59 | 79.60 | 83.78 |" in page
    assert "| 69.24 | 69.97 | 70.10 | 70.18 | 70.34 |" in page


def test_a_run_from_before_a_config_key_existed_resumes_with_its_default(finished_run, tmp_path):
    from subsetsearch.pipeline.search import Search

    old = _report_copy(finished_run, tmp_path / "old")
    written = yaml.safe_load((old / "config.yaml").read_text())
    del written["final_ensemble"], written["search"]["score_subset"], written["search"]["skip_disagreement"]
    (old / "config.yaml").write_text(yaml.safe_dump(written))
    config = parse_config({**BASE, "name": "r"})
    assert Search(config, old).check_run_dir()  # the keys' defaults are what it ran
    changed = parse_config({**BASE, "name": "r", "final_ensemble": {"start": 3}})
    with pytest.raises(InputError, match=r"holds a run of another config \(final_ensemble differs\)"):
        Search(changed, old).check_run_dir()
