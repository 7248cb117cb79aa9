"""`subsetsearch run` with task: detection, end to end on the Fashion-MNIST canvases: the schemes pick
the top image scores, recomputed here from the stored checkpoints with the per-location formulas of
tests/reference.py; automatic duplication makes a multiset; resume after SIGKILL; figures."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from reference import direct_heatmaps

from subsetsearch.internal.budgets import budget_counts
from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.detect import SCORE_CHUNK
from subsetsearch.pipeline.search import Search
from subsetsearch.train import detector, trainer
from subsetsearch.train.data import FASHION_MNIST_DIR

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Fashion-MNIST missing (make test installs it)")

BASE = {
    "name": "d",
    "task": "detection",
    "seed": 3,
    "detection": {"images": 240, "test_images": 60},
    "model": {"width": 8},
    "train": {"epochs": 3, "batch_size": 32, "lr": 0.02, "threads": 1, "precision": "fp32"},
    "ensemble": {"kind": "checkpoints", "start": 2, "stop": 3},
    "search": {"scheme": "auto_duplication", "budgets": [0.2, 0.4, 0.6]},
}


def _config(**changes) -> dict:
    config = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def _table(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {name: table[name].to_numpy() for name in table.column_names}


def _reference_scores(search: Search, iteration: int, rows: np.ndarray) -> np.ndarray:
    """Image scores of pool ``rows`` (the rows the step scored, in its order) from the stored
    checkpoints, by the direct per-location formulas (float64). The maps are computed in the run's
    own precision (``Network.forward``: bf16 autocast where the run used it) and on the same
    batches as the run's scoring (chunks of SCORE_CHUNK of the scored rows), so both sides see the
    same probabilities and only the scoring arithmetic differs."""
    maps = []
    for member in search.task.member_files(iteration):
        net = search.task.acq_net.build(0)
        trainer.load_weights(net, member.path)
        net.eval()
        parts = []
        with torch.inference_mode():
            for start in range(0, len(rows), SCORE_CHUNK):
                x = search.task.pool.x[torch.from_numpy(rows[start : start + SCORE_CHUNK])]
                parts.append(torch.sigmoid(search.task.acq_net.forward(net, search.task.pool, x)[:, :5]).numpy())
        maps.append(np.concatenate(parts))
    function = search.config.search.function
    gt = None
    if function == "error_count":
        part = search.task.images.take(rows)
        gt = detector.centre_maps(part.boxes, part.labels, part.image_index, len(rows), 5, 64)
    heat = direct_heatmaps(np.stack(maps), function, gt)
    return heat.reshape(len(heat), -1).max(axis=1)


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory) -> tuple[Search, object]:
    config = parse_config(_config(compare=["random", "full"], subset_model={"steps": "all"}))
    search = Search(config, tmp_path_factory.mktemp("auto") / "run")
    return search, search.run()


def test_auto_duplication_takes_the_top_scores_of_the_whole_pool(auto_run):
    search, result = auto_run
    n = result.pool_size
    counts = budget_counts(search.config.search.budgets, n)
    previous = _table(search.run_dir / "iter_00" / "subset.parquet")
    assert len(previous["index"]) == counts[0] and np.all(previous["multiplicity"] == 1)
    for i in range(1, len(counts)):
        table = _table(search.run_dir / f"iter_{i:02d}" / "subset.parquet")
        before = np.bincount(previous["index"], weights=previous["multiplicity"], minlength=n)
        after = np.bincount(table["index"], weights=table["multiplicity"], minlength=n)
        chosen = np.flatnonzero(after - before)
        assert np.all((after - before)[chosen] == 1)  # each step picks distinct images
        with np.load(search.run_dir / f"iter_{i:02d}" / "scores.npz") as saved:
            scores = saved["scores"]
        # fixed-point sums and float32 logs against float64: under 1e-6 nats (tests/test_stats.py)
        np.testing.assert_allclose(scores, _reference_scores(search, i, np.arange(n)), atol=1e-6)
        k = counts[i] - counts[i - 1]
        assert len(chosen) == k
        # the top k over the whole pool, chosen images included (ties at the boundary: either side)
        others = np.setdiff1d(np.arange(n), chosen)
        assert scores[chosen].min() >= scores[others].max()
        metrics = json.loads((search.run_dir / f"iter_{i:02d}" / "metrics.json").read_text())
        assert metrics["chosen_again"] == int(np.sum(before[chosen] > 0))
        assert metrics["scored"] == n and metrics["subset_size"] == counts[i] == int(after.sum())
        m = metrics["multiplicity_counts"]
        assert m["1"] + m["2"] + m["3"] + m["4+"] == metrics["unique_samples"] == int(np.sum(after > 0))
        assert m["1"] + 2 * m["2"] + 3 * m["3"] + int(after[after >= 4].sum()) == counts[i]
        previous = table


def test_variants_report_wmap_and_unique_images(auto_run):
    search, result = auto_run
    names = [v.name for v in result.variants]
    assert names == ["auto_duplication@iter_01", "random@iter_01", "auto_duplication", "random", "full"]
    metrics = json.loads((search.run_dir / "metrics.json").read_text())
    final = metrics["variants"]["auto_duplication"]
    table = _table(search.run_dir / "subset.parquet")
    assert final["subset_size"] == int(table["multiplicity"].sum())
    assert final["unique_samples"] == len(table["index"])
    for variant in metrics["variants"].values():
        (test,) = variant["test_metrics"]
        weights = {"AP_small": 1, "AP_medium": 2, "AP_large": 3}
        present = {k: w for k, w in weights.items() if np.isfinite(test[k])}
        expected = sum(w * test[k] for k, w in present.items()) / sum(present.values())
        assert test["wMAP"] == pytest.approx(expected) and variant["wMAP_mean"] == test["wMAP"]
        assert 0 <= test["mAP"] <= 1
    assert metrics["variants"]["full"]["unique_samples"] == result.pool_size


def test_figures_and_duplication_table(auto_run):
    search, _ = auto_run
    report = search.run_dir / "report"
    for name in ("heatmaps_iter_01.png", "heatmaps_iter_02.png", "duplication.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (report / "duplication.md").read_text().splitlines()[2:]
    for i, line in enumerate(lines):
        metrics = json.loads((search.run_dir / f"iter_{i:02d}" / "metrics.json").read_text())
        m = metrics["multiplicity_counts"]
        expected = [i, metrics["subset_size"], metrics["unique_samples"], m["1"], m["2"], m["3"], m["4+"]]
        assert [int(c) for c in line.strip("| ").split(" | ")] == expected
    with np.load(search.run_dir / "iter_01" / "heatmaps.npz") as saved:
        index, heat = saved["index"], saved["heatmaps"]
        with np.load(search.run_dir / "iter_01" / "scores.npz") as scored:
            scores = scored["scores"]
    assert heat.shape == (len(index), 5, 16, 16)
    assert index[:3].tolist() == np.argsort(-scores, kind="stable")[:3].tolist()  # the top-scored first
    np.testing.assert_allclose(heat.reshape(len(index), -1).max(axis=1), scores[index], atol=1e-5)


@pytest.mark.parametrize(("function", "precision"), [("error_count", "fp32"), ("mutual_information", "bf16")])
def test_build_up_scores_only_the_unselected(tmp_path, function, precision):
    """bf16 is forced on every CPU (emulated where it has no bf16 instructions): the run trains and
    scores in bf16, and the reference computes its maps in the run's precision."""
    changes = {"search": {"scheme": "build_up", "function": function, "budgets": [0.2, 0.4]}}
    config = parse_config(_config(**changes, train={**BASE["train"], "precision": precision}))
    search = Search(config, tmp_path / "run")
    search.run()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["precision"] == {"acquisition": precision, "subset_model": precision}
    start = _table(tmp_path / "run" / "iter_00" / "subset.parquet")["index"]
    table = _table(tmp_path / "run" / "iter_01" / "subset.parquet")
    assert np.all(table["multiplicity"] == 1) and len(set(table["index"].tolist())) == len(table["index"])
    with np.load(tmp_path / "run" / "iter_01" / "scores.npz") as saved:
        scores = saved["scores"]
    assert np.all(np.isnan(scores[start]))  # chosen images are not scored
    unselected = np.setdiff1d(np.arange(240), start)
    reference = _reference_scores(search, 1, unselected)
    np.testing.assert_allclose(scores[unselected], reference, atol=1e-6)
    added = table["index"][table["iteration"] == 1]
    assert scores[added].min() >= scores[np.setdiff1d(unselected, added)].max()  # the top of the unselected
    by_row = dict(zip(unselected.tolist(), reference, strict=True))
    rest = [by_row[r] for r in np.setdiff1d(unselected, added)]
    assert min(by_row[r] for r in added) >= max(rest) - 1e-6  # by the reference too, either side of a near-tie


def _cli(config_path: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "subsetsearch.cli", "run", str(config_path), "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkill_resumes_to_the_same_subset_and_metrics(tmp_path):
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump(_config(compare=["random"])))
    whole = _cli(config_path, tmp_path / "whole")
    started = time.perf_counter()
    out, err = whole.communicate(timeout=300)
    duration = time.perf_counter() - started
    assert whole.returncode == 0, err.decode()
    assert "wMAP" in out.decode() and "auto_duplication" in out.decode()
    kills = 0
    for fraction in (0.35, 0.6, 0.85):
        process = _cli(config_path, tmp_path / "cut")
        time.sleep(fraction * duration)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate(timeout=300)
    final = _cli(config_path, tmp_path / "cut")
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()
    assert kills >= 2
    expected, got = _table(tmp_path / "whole" / "subset.parquet"), _table(tmp_path / "cut" / "subset.parquet")
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    want = json.loads((tmp_path / "whole" / "metrics.json").read_text())["variants"]
    have = json.loads((tmp_path / "cut" / "metrics.json").read_text())["variants"]
    assert {k: v["test_metrics"] for k, v in have.items()} == {k: v["test_metrics"] for k, v in want.items()}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"search": {"scheme": "pretrain"}}, "search.scheme: 'pretrain' is not available for detection"),
        ({"model": {"name": "cnn_small"}}, "model.name: task: detection needs a detector"),
        (
            {"data": {"dataset": "digits"}},
            "data.dataset: task: detection takes the built-in canvases (fashion_mnist) or a COCO",
        ),
        ({"detection": {"scale": [30, 20]}}, "detection.scale"),
        ({"detection": {"images": 5}}, "detection.images"),
        ({"data": {"validation_fraction": 0.1}}, "data.validation_fraction: task: detection trains without"),
    ],
)
def test_bad_detection_configs_are_one_line_errors(tmp_path, changes, message):
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump(_config(**changes)))
    done = subprocess.run(
        [sys.executable, "-m", "subsetsearch.cli", "run", str(config_path), "--run-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


def test_class_weights_are_inverse_box_frequency_of_the_training_multiset(auto_run):
    search, _ = auto_run
    images = search.task.images
    rows = np.array([0, 0, 0, 1, 2, 5])  # image 0 three times
    counts = np.zeros(5)
    for row in rows:  # the boxes the model sees in an epoch, counted one by one
        counts += np.bincount(images.labels[images.image_index == row], minlength=5)
    seen = counts > 0
    # w_k ∝ 1 / n_k with sum_k n_k w_k = number of boxes; an absent class gets the largest weight
    inverse = np.where(seen, 1 / np.maximum(counts, 1), (1 / counts[seen]).max())
    expected = inverse * counts.sum() / (counts * inverse).sum()
    np.testing.assert_allclose(search.task.class_weights(rows), expected, rtol=1e-6)


def test_sequence_mode_pools_are_clips_of_frames():
    from subsetsearch.pipeline.detect import detection_sets

    config = parse_config(_config(detection={**BASE["detection"], "sequence": {"clip_length": 6}}))
    sets = detection_sets(config)
    assert sets.name == "fashion_mnist_detection_sequences" and sets.class_names[0] == "car"
    assert sets.pool.clip.tolist() == [i // 6 for i in range(240)]
    assert sets.test.clip.tolist() == [i // 6 for i in range(60)]
    # frames of a clip hold the same objects
    for frame in range(1, 6):
        assert sets.pool.boxes_of(frame)[1].tolist() == sets.pool.boxes_of(0)[1].tolist()


def test_pool_class_weights_are_the_same_for_every_training_set(auto_run, tmp_path):
    search, _ = auto_run
    config = parse_config(_config(detection={**BASE["detection"], "class_weights": "pool"}))
    pooled = Search(config, tmp_path / "run").task
    pooled.images, pooled.num_classes = search.task.images, 5  # the same canvases, without preparing the run
    counts = np.bincount(search.task.images.labels, minlength=5).astype(float)  # every box of the pool once
    expected = (1 / counts) * counts.sum() / 5  # sum_k n_k w_k = boxes: w_k = B / (K n_k)
    for rows in (np.array([0, 0, 0, 1, 2, 5]), np.arange(len(search.task.images))):
        np.testing.assert_allclose(pooled.class_weights(rows), expected, rtol=1e-6)


def test_report_of_a_detection_run_counts_boxes_and_embeds_the_heatmaps(auto_run):
    from subsetsearch.pipeline.report import build_report

    search, _ = auto_run
    result = build_report(search.run_dir)
    names = sorted(p.name for p in result.figures)
    assert {"class_balance.png", "heatmaps_iter_01.png", "heatmaps_iter_02.png", "duplication.png"} <= set(names)
    assert result.missing == ["validation curves: detection runs train without a validation set"]
    # class balance: the final multiset's boxes per class, counted here from the canvases
    images = search.task.images
    table = _table(search.run_dir / "iter_02" / "subset.parquet")
    per_image = np.zeros(len(images), np.int64)
    per_image[table["index"]] = table["multiplicity"]
    boxes = np.bincount(images.labels, weights=per_image[images.image_index], minlength=5)
    page = result.html.read_text()
    from subsetsearch.train.canvas import CLASS_NAMES

    for c, name in enumerate(CLASS_NAMES):
        row = page.split(f"<tr><td>{name}</td>")[1].split("</tr>")[0]
        assert row.split("<td>")[-1].startswith(f"{100 * boxes[c] / boxes.sum():.2f}%")
    assert len(re.findall(r'data-figure="(?!thumb-)', page)) == len(names)
    assert "<h2>Gallery of iter_01: what the selection took and left</h2>" in page


def test_a_detection_steps_gallery_is_its_selection_with_the_ensembles_heatmaps(auto_run):
    from test_gallery import _reference_rows

    from subsetsearch.rundir import GalleryRecord

    search, _ = auto_run
    for i in (1, 2):
        record = GalleryRecord.load(search.run_dir / f"iter_{i:02d}" / "gallery.npz")
        with np.load(search.run_dir / f"iter_{i:02d}" / "scores.npz") as saved:
            scores = saved["scores"]
        before = _table(search.run_dir / f"iter_{i - 1:02d}" / "subset.parquet")
        after = _table(search.run_dir / f"iter_{i:02d}" / "subset.parquet")
        grew = np.bincount(after["index"], weights=after["multiplicity"], minlength=len(scores)) - np.bincount(
            before["index"], weights=before["multiplicity"], minlength=len(scores)
        )
        chosen = np.flatnonzero(grew)
        expected = _reference_rows(scores, chosen, np.zeros(len(scores), int), 3, 2)  # over all images
        assert list(zip(record.index.tolist(), record.group.tolist(), strict=True)) == expected
        assert (record.labels == -1).all() and (record.votes == -1).all()
        assert record.thumbnails.shape == (len(record.index), 3, 64, 64) and record.thumbnails.dtype == np.uint8
        # the heatmap is laid over in red: where it is strongest the red channel is at its brightest
        for k in range(len(record.index)):
            red, green = record.thumbnails[k, 0].astype(int), record.thumbnails[k, 1].astype(int)
            assert (red >= green).all() and red.max() == 255


def test_report_of_a_partial_detection_run_reads_the_detectors_it_has(auto_run, tmp_path):
    import shutil

    from subsetsearch.pipeline.report import build_report

    search, _ = auto_run
    copy = tmp_path / "partial"
    shutil.copytree(search.run_dir, copy, ignore=shutil.ignore_patterns("report"))
    finished = json.loads((copy / "metrics.json").read_text())["variants"]["full"]
    (copy / "metrics.json").unlink()
    result = build_report(copy)
    assert any("metrics.json: the run has not finished" in m for m in result.missing)
    page = result.html.read_text()
    row = page.split("<tr><td>full</td>")[1].split("</tr>")[0]
    assert f"<td>wMAP</td><td>{100 * finished['wMAP_mean']:.2f}</td>" in row


def test_report_of_a_copied_detection_run_without_the_data_is_the_same(auto_run, tmp_path):
    """The heatmap figures come from the run directory alone (the images and boxes they show are in
    heatmaps.npz): a copy reported where Fashion-MNIST and PyTorch cannot be loaded is the same."""
    import shutil

    from report_helpers import report_elsewhere

    from subsetsearch.pipeline.report import build_report

    search, _ = auto_run
    here = tmp_path / "here" / "run"
    shutil.copytree(search.run_dir, here, ignore=shutil.ignore_patterns("report"))
    page = build_report(here).html.read_text()
    there = report_elsewhere(search.run_dir, tmp_path / "there" / "run")
    assert there.replace(str(tmp_path / "there"), str(tmp_path / "here")) == page
    assert "heatmaps_iter_01" in page and "heatmaps_iter_02" in page
