"""The gallery: which samples it shows (against a direct reading of the rule), its thumbnails (by
hand), a run's gallery checked against the step's own files, ``report --scores`` for scores from
anywhere, and the class-balance flags of the run and score summaries."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scoring import run_cli

from subsetsearch.report.gallery import gallery_rows, thumbnails


def _reference_rows(scores, chosen, labels, extremes, near_cut):
    """The rule read directly: per class in increasing order, its scored rows sorted by (score
    descending, row); the first ``extremes``; the chosen of lowest score (``near_cut``); the left-out
    of highest score; the last ``extremes``; each row once, the first group that names it."""
    out = []
    chosen = set(chosen)
    classes = sorted({labels[r] for r in range(len(scores)) if np.isfinite(scores[r])})
    for c in classes:
        ranked = sorted((r for r in range(len(scores)) if np.isfinite(scores[r]) and labels[r] == c),
                        key=lambda r: (-scores[r], r))  # fmt: skip
        inside = [r for r in ranked if r in chosen]
        outside = [r for r in ranked if r not in chosen]
        groups = [ranked[:extremes], inside[len(inside) - min(near_cut, len(inside)) :], outside[:near_cut],
                  ranked[len(ranked) - min(extremes, len(ranked)) :]]  # fmt: skip
        seen = set()
        for g, rows in enumerate(groups):
            for r in rows:
                if r not in seen:
                    seen.add(r)
                    out.append((r, g))
    return out


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.one_of(st.floats(-3, 3), st.just(float("nan")), st.sampled_from([0.0, 1.0])), min_size=1, max_size=40),
    st.data(),
)
def test_the_rows_shown_are_the_rule_read_directly(values, data):
    scores = np.array(values)
    n = len(scores)
    labels = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    chosen = sorted(data.draw(st.sets(st.integers(0, n - 1))))
    extremes, near_cut = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 3))
    rows, groups = gallery_rows(scores, chosen, labels=labels, extremes=extremes, near_cut=near_cut)
    assert list(zip(rows.tolist(), groups.tolist(), strict=True)) == _reference_rows(
        scores, chosen, labels, extremes, near_cut
    )
    unlabeled, _ = gallery_rows(scores, chosen, extremes=extremes, near_cut=near_cut)
    assert [r for r, _ in _reference_rows(scores, chosen, np.zeros(n, int), extremes, near_cut)] == unlabeled.tolist()


def test_of_many_classes_the_gallery_shows_those_furthest_off_their_pool_share():
    labels = np.repeat(np.arange(30), 10)  # 30 classes of 10 rows: 1/30 of the pool each
    scores = np.linspace(1, 0, 300)
    # chosen: class 3 whole (10 rows), class 7 five rows, classes 0..2 one row each, nothing else
    chosen = np.concatenate([np.arange(30, 40), np.arange(70, 75), [0, 10, 20]])
    rows, _ = gallery_rows(scores, chosen, labels=labels, max_classes=4)
    shown = sorted(set(labels[rows].tolist()))
    # shares of the 18 chosen: class 3 10/18, class 7 5/18, classes 0-2 1/18 (ratio to 1/30: 10, 5, 1.67), the
    # other 25 classes 0 (ratio 0, furthest of all by log): the four lowest of those, 4, 5, 6, 8
    assert shown == [4, 5, 6, 8]
    assert len(rows) == 4 * 6  # each class: 3 highest, 3 lowest (the 2 just outside the cut are its 2 highest)


def test_thumbnails_by_hand():
    grey = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(thumbnails(grey, side=4), grey)  # small enough: unchanged
    # 2×2 blocks averaged: (0+1+4+5)/4 = 2.5 -> 2 (round half to even), (2+3+6+7)/4 = 4.5 -> 4, ...
    assert thumbnails(grey, side=2)[0, 0].tolist() == [[2, 4], [10, 12]]
    # 16-bit values stretched from the image's lowest to its highest: 1000 -> 0, 3000 -> 255, 2000 -> 128
    deep = np.array([1000, 2000, 3000, 3000], np.float32).reshape(1, 1, 2, 2)
    assert thumbnails(deep, side=8)[0, 0].tolist() == [[0, 128], [255, 255]]
    assert thumbnails(np.full((1, 1, 2, 2), 7.5), side=8).tolist() == [[[[0, 0], [0, 0]]]]  # flat: black
    rgba = np.zeros((1, 4, 2, 2), np.uint8)
    rgba[0, 0], rgba[0, 3] = 200, 9
    out = thumbnails(rgba, side=8)
    assert out.shape == (1, 3, 2, 2) and out[0, 0].max() == 200  # alpha dropped
    assert thumbnails(np.zeros((2, 2, 130, 70), np.uint8), side=64).shape == (2, 1, 43, 23)  # factor 3, grey kept
    with pytest.raises(ValueError, match=r"\[n, C, H, W\]"):
        thumbnails(np.zeros((4, 4)))


# -- a run's gallery ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    from test_user_data import SMALL, _digits_folder

    from subsetsearch.pipeline.config import parse_config
    from subsetsearch.pipeline.run import run_config

    root = tmp_path_factory.mktemp("gallery")
    _digits_folder(root / "images", per_class=24, classes=3)
    config = {**SMALL, "data": {"dataset": "image_folder", "path": str(root / "images")}}
    run_config(parse_config(config), root / "run")
    return root


def test_a_steps_gallery_is_its_selection_read_from_its_own_files(folder_run):
    from subsetsearch.acquisition import acquire
    from subsetsearch.rundir import DatasetRecord, GalleryRecord, RunLayout
    from subsetsearch.stats import EnsembleStats

    run = folder_run / "run"
    step = RunLayout(run).step(1)
    record = GalleryRecord.load(step.gallery)
    assert GalleryRecord.load(RunLayout(run).step(0).gallery) is None  # the random start selects by no score
    dataset = DatasetRecord.load(RunLayout(run).dataset)
    labels = dataset.pool_labels
    before = pq.read_table(RunLayout(run).step(0).subset)["index"].to_numpy()
    after = pq.read_table(step.subset).to_pydict()
    chosen = np.array([r for r, i in zip(after["index"], after["iteration"], strict=True) if i == 1])
    scores = acquire(EnsembleStats.load(step.stats), "entropy")
    scores[before] = np.nan  # build-up scores only the rows not yet chosen
    expected = _reference_rows(scores, chosen, labels, 3, 2)
    assert list(zip(record.index.tolist(), record.group.tolist(), strict=True)) == expected
    np.testing.assert_array_equal(record.scores, scores[record.index])
    np.testing.assert_array_equal(record.chosen, np.isin(record.index, chosen))
    np.testing.assert_array_equal(record.labels, labels[record.index])
    # the vote: the class most members predict, from the statistics' own vote counts (stats.npz; the
    # gallery reads each member's votes in votes.npz)
    stats = EnsembleStats.load(step.stats)
    for k, row in enumerate(record.index):
        counts = stats.vote_counts[row]
        assert counts[record.votes[k]] == counts.max()
        assert record.vote_share[k] == pytest.approx(counts.max() / stats.member_counts[row])
    # thumbnails: the 16×16 PNG files themselves, read by PIL
    paths = dataset.pool_source["path"]
    for k, row in enumerate(record.index):
        pixels = np.asarray(Image.open(folder_run / "images" / paths[row]))
        np.testing.assert_array_equal(record.thumbnails[k, 0], pixels)


def test_the_report_shows_the_gallery_with_each_samples_file(folder_run, tmp_path):
    import shutil

    from subsetsearch.pipeline.report import build_report
    from subsetsearch.rundir import DatasetRecord, GalleryRecord, RunLayout

    run = shutil.copytree(folder_run / "run", tmp_path / "run", ignore=shutil.ignore_patterns("report"))
    page = build_report(run).html.read_text()
    assert "<h2>Gallery of iter_01: what the selection took and left</h2>" in page
    record = GalleryRecord.load(RunLayout(run).step(1).gallery)
    paths = DatasetRecord.load(RunLayout(run).dataset).pool_source["path"]
    for row in record.index:
        assert f"path {paths[row]}" in page and f'data-figure="thumb-{row}"' in page
    frames = re.findall(r'<figure class="thumb (chosen|left)">', page)  # iter_01 is the one acquisition step
    assert frames.count("chosen") == int(record.chosen.sum()) and frames.count("left") == int((~record.chosen).sum())
    assert len(page.encode()) < 5 * 2**20


# -- a gallery of scores from anywhere ---------------------------------------------------------------------


def _scored_files(tmp_path: Path, capsys) -> dict[str, Path]:
    """Three members over 60 digit images whose entropy is highest on class 1 (a skewed subset), their
    images as an .npy, the labels, and `score`'s outputs."""
    from subsetsearch.train.data import load_digits_images

    digits = load_digits_images()
    keep = np.flatnonzero(digits.y < 3)[:60]
    x, y = digits.x[keep, 0], digits.y[keep]
    rng = np.random.default_rng(0)
    for m in range(3):
        probs = np.full((60, 3), 0.02)
        probs[np.arange(60), y] = 0.96
        probs[y == 1] = rng.dirichlet(np.ones(3), int((y == 1).sum()))  # uncertain on class 1
        np.save(tmp_path / f"m{m}.npy", probs / probs.sum(1, keepdims=True))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["score", *(str(tmp_path / f"m{m}.npy") for m in range(3)), "--labels", str(tmp_path / "y.npy"),
            "--function", "entropy", "-b", "0.25", "-o", str(tmp_path / "subset.parquet"),
            "--scores-out", str(tmp_path / "scores.parquet")]  # fmt: skip
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    return {"x": tmp_path / "x.npy", "y": tmp_path / "y.npy", "summary": out, "labels": y}


def test_score_flags_a_class_far_off_its_pool_share(tmp_path, capsys):
    files = _scored_files(tmp_path, capsys)
    y = files["labels"]
    chosen = pq.read_table(tmp_path / "subset.parquet")["index"].to_numpy()
    share = np.bincount(y[chosen], minlength=3) / len(chosen)
    pool = np.bincount(y, minlength=3) / len(y)
    assert share[1] > 2 * pool[1]  # the members make class 1 the uncertain one
    line = next(line for line in files["summary"].splitlines() if line.startswith("class balance: "))
    assert f"class 1 {100 * share[1]:.1f}% of the subset against {100 * pool[1]:.1f}% of the pool (above twice)" in line
    for c in (0, 2):
        if share[c] < 0.5 * pool[c]:
            assert f"class {c} {100 * share[c]:.1f}% of the subset" in line


def test_a_gallery_of_scores_from_anywhere(tmp_path, capsys):
    files = _scored_files(tmp_path, capsys)
    out = tmp_path / "gallery"
    args = ["report", "--scores", str(tmp_path / "scores.parquet"), "--images", str(files["x"]),
            "--subset", str(tmp_path / "subset.parquet"), "--labels", str(files["y"]), "--out", str(out)]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    page = (out / "gallery.html").read_text()
    scores = pq.read_table(tmp_path / "scores.parquet")["score"].to_numpy()
    chosen = pq.read_table(tmp_path / "subset.parquet")["index"].to_numpy()
    expected = _reference_rows(scores, chosen, files["labels"], 3, 2)
    shown = [int(r) for r in re.findall(r'data-figure="thumb-(\d+)"', page)]
    assert shown == [r for r, _ in expected]
    assert "above twice" in page  # the skew the members made, flagged on the page too
    assert "entropy, budget 0.25, seed 0: highest scores first" in page  # as score recorded it in the file
    assert (out / "subsetsearch.json").is_file() and "gallery.html" in stdout
    # again into the same directory (ours): fine; into a user's folder: refused, nothing written
    assert run_cli(args, capsys)[0] == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, _, err = run_cli([*args[:-1], str(mine)], capsys)
    assert (
        code == 2
        and "is not a subsetsearch directory" in err
        and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--images", "{tmp}/nope.npy"], "--images '{tmp}/nope.npy' not found"),
        (["--function", "margin"], "has no column 'margin' (it has score)"),
        (["--images", "{tmp}/few.npy"], "names row 59, but --images holds 10 images"),
        (["{tmp}"], "give RUN_DIR"),
        (["--subset", "{tmp}/y.npy"], "must end in .csv or .parquet"),
    ],
)
def test_a_gallery_that_cannot_be_made_is_one_line_and_writes_nothing(tmp_path, capsys, change, message):
    files = _scored_files(tmp_path, capsys)
    np.save(tmp_path / "few.npy", np.load(files["x"])[:10])
    out = tmp_path / "gallery"
    options = {"--scores": str(tmp_path / "scores.parquet"), "--images": str(files["x"]), "--out": str(out)}
    args = ["report"]
    if change[0].startswith("--"):
        options[change[0]] = change[1].format(tmp=tmp_path)
    else:
        args.append(change[0].format(tmp=tmp_path))
    for key, value in options.items():
        args += [key, value]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


# -- the run's summary --------------------------------------------------------------------------------------


def test_the_run_summary_flags_a_class_far_off_its_pool_share(tmp_path):
    from test_user_data import SMALL

    from subsetsearch.pipeline.config import parse_config
    from subsetsearch.pipeline.run import summary
    from subsetsearch.pipeline.task import RunResult
    from subsetsearch.rundir import DatasetRecord, RunLayout, Subset

    labels = np.repeat([0, 1, 2, 3], 25)  # 25% each
    run = tmp_path / "run"
    run.mkdir()
    DatasetRecord("mine", ["ant", "bee", "cat", "dog"], pool_labels=labels).save(RunLayout(run).dataset)
    # 40 rows: 20 ants (50%: above twice 25%? no, exactly twice: not flagged), 18 bees (45%), 2 cats (5%), 0 dogs
    rows = np.concatenate([np.arange(0, 20), np.arange(25, 43), np.arange(50, 52)])
    subset = Subset.empty().add(rows, np.zeros(len(rows)), 1)
    config = parse_config({**SMALL, "data": {"dataset": "digits"}})
    text = summary(RunResult(run, subset, 100, [], 1.0), config)
    line = next(line for line in text.splitlines() if line.startswith("class balance   "))
    assert line == (
        "class balance   'dog' 0.0% of the subset against 25.0% of the pool (below half); "
        "'cat' 5.0% of the subset against 25.0% of the pool (below half). " + line.split(". ", 1)[1]
    )
    assert "'ant'" not in line and "'bee'" not in line
