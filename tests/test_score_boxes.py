"""``subsetsearch score --annotations``: COCO results files in, against the whole pool scored at once."""

import json

import numpy as np
import pytest
from scoring import read_table, run_cli

from subsetsearch.boxmaps import Boxes, box_image_scores
from subsetsearch.internal import coco
from subsetsearch.internal.ledger import Ledger
from subsetsearch.pipeline import score_boxes

N_IMAGES, MEMBERS = 40, 3
CATEGORIES = [{"id": 7, "name": "car"}, {"id": 3, "name": "person"}]  # classes: person (3) then car (7)


def make_pool(tmp_path, seed=0):
    """A COCO instances file and MEMBERS results files. Coordinates are multiples of 1/8 and scores of
    1/64, exact in float32, so the stored detections equal the JSON's."""
    rng = np.random.default_rng(seed)
    images = [
        {
            "id": 1000 + 3 * i,
            "file_name": f"{i:03d}.jpg",
            "width": int(rng.integers(16, 60)),
            "height": int(rng.integers(16, 60)),
        }
        for i in range(N_IMAGES)
    ]
    annotations = []
    for im in images:
        for _ in range(int(rng.integers(0, 3))):
            w, h = rng.integers(8, 8 * 12, 2) / 8
            x, y = rng.integers(0, 8 * (im["width"] - w)) / 8, rng.integers(0, 8 * (im["height"] - h)) / 8
            annotations.append({"image_id": im["id"], "category_id": int(rng.choice([3, 7])), "bbox": [x, y, w, h]})
    rng.shuffle(annotations)  # not grouped by image
    (tmp_path / "ann.json").write_text(
        json.dumps({"images": images, "categories": CATEGORIES, "annotations": annotations})
    )
    members = []
    for m in range(MEMBERS):
        dets = []
        for im in images[: N_IMAGES - 4]:  # the last 4 images have no detection
            for _ in range(int(rng.integers(0, 5))):
                w, h = rng.integers(0, 8 * 20, 2) / 8
                x, y = rng.integers(-16, 8 * im["width"]) / 8, rng.integers(-16, 8 * im["height"]) / 8
                score = int(rng.integers(0, 65)) / 64
                dets.append(
                    {"image_id": im["id"], "category_id": int(rng.choice([3, 7])), "bbox": [x, y, w, h], "score": score}
                )
        rng.shuffle(dets)  # not grouped by image
        path = tmp_path / f"m{m}.json"
        path.write_text(json.dumps(dets, indent=1))
        members.append(path)
    return tmp_path / "ann.json", members


def whole_pool_scores(annotations, members, function, stride=4.0):
    """The pool scored at once from json.load'ed files (no streaming, sorting or chunks)."""
    data = json.loads(annotations.read_text())
    row = {im["id"]: r for r, im in enumerate(data["images"])}
    cls = {c["id"]: k for k, c in enumerate(sorted(data["categories"], key=lambda c: c["id"]))}
    sizes = np.array([[im["width"], im["height"]] for im in data["images"]])

    def boxes(entries, scored):
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (e["bbox"] for e in entries)]).reshape(-1, 4)
        score = [e["score"] for e in entries] if scored else None
        return Boxes([row[e["image_id"]] for e in entries], [cls[e["category_id"]] for e in entries], xyxy, score)

    ensemble = [boxes(json.loads(m.read_text()), True) for m in members]
    truth = boxes(data["annotations"], False)
    return box_image_scores(ensemble, function, image_sizes=sizes, num_classes=2, stride=stride, truth=truth)


def _assert_top(chosen: list[int], expected: np.ndarray, k: int) -> None:
    """``chosen`` is k distinct images, none scoring below one left out (equal scores, the same
    disagreement pattern in two images, may go either way)."""
    assert len(set(chosen)) == len(chosen) == k
    left = np.setdiff1d(np.arange(len(expected)), chosen)
    assert expected[chosen].min() >= expected[left].max()


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks, batches and chunks far smaller than the files, so every boundary is crossed."""
    monkeypatch.setattr(coco, "READ_BLOCK", 97)
    monkeypatch.setattr(score_boxes, "WRITE_BATCH", 5)
    monkeypatch.setattr(score_boxes, "CHUNK_IMAGES", 7)


@pytest.mark.parametrize("stride", [4.0, 2.5])
def test_scores_equal_the_whole_pool_scored_at_once(tmp_path, capsys, small_blocks, stride):
    annotations, members = make_pool(tmp_path)
    out, every = tmp_path / "subset.csv", tmp_path / "all.parquet"
    args = ["score", "--annotations", str(annotations), *map(str, members), "-f", "mutual_information,error_count"]
    args += ["--stride", str(stride), "-b", "10", "-o", str(out), "--scores-out", str(every)]
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    expected = {f: whole_pool_scores(annotations, members, f, stride) for f in ("mutual_information", "error_count")}
    table, all_scores = read_table(out), read_table(every)
    assert list(all_scores) == ["index", "image_id", "file_name", "mutual_information", "error_count"]
    for f, values in expected.items():
        np.testing.assert_allclose(all_scores[f], values, atol=1e-12)
    assert all_scores["image_id"] == [1000 + 3 * i for i in range(N_IMAGES)]
    _assert_top(table["index"], expected["mutual_information"], 10)
    np.testing.assert_allclose(table["score"], np.sort(expected["mutual_information"])[::-1][:10], atol=1e-12)
    assert table["image_id"] == [1000 + 3 * int(i) for i in table["index"]]
    assert expected["mutual_information"][-4:].tolist() == [0.0] * 4  # no detection: nothing to disagree on
    assert "selected 10 of 40 samples" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ann.json", "m0.json", "m1.json", "m2.json", "subset.csv", "all.parquet"]
    )


def test_a_killed_job_resumes_from_its_state_and_scores_each_chunk_once(tmp_path, capsys, small_blocks, monkeypatch):
    annotations, members = make_pool(tmp_path, seed=1)
    state, out = tmp_path / "state", tmp_path / "subset.csv"
    inputs = ["score", "--annotations", str(annotations), *map(str, members)]
    rest = ["-b", "25%", "-o", str(out), "--state", str(state)]
    args = [*inputs, "-f", "entropy", *rest]
    real, calls = score_boxes.BoxMaps, []  # one per chunk of images

    class Killed(Exception):
        """The job dying mid-way (a kill leaves the same files: every write is atomic)."""

    def dies_after_three_chunks(*a, **k):
        if len(calls) == 3:
            raise Killed
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(score_boxes, "BoxMaps", dies_after_three_chunks)
    with pytest.raises(Killed):
        run_cli(args, capsys)
    assert not out.exists()
    with np.load(state / "progress.npz") as saved:  # three chunks of 7 images, each by every member
        assert Ledger.from_json(json.loads(str(saved["ledger"]))).pairs == {("*", 0), ("*", 1), ("*", 2)}
    calls.clear()
    monkeypatch.setattr(score_boxes, "BoxMaps", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    assert len(calls) == 3  # images 21-39: chunks of 7, 7 and 5
    expected = whole_pool_scores(annotations, members, "entropy")
    _assert_top(read_table(out)["index"], expected, 10)
    # the same state with another function is refused, and nothing is written
    out.unlink()
    code, _, stderr = run_cli([*inputs, "-f", "variation_ratios", *rest], capsys)
    assert code == 2 and "was made for other inputs" in stderr and not out.exists()
    # a member file rewritten since (half its detections dropped) is read again, and scoring starts over
    detections = json.loads(members[0].read_text())
    members[0].write_text(json.dumps(detections[: len(detections) // 2]))
    calls.clear()
    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    assert len(calls) == 6  # every chunk again: 40 images in chunks of 7
    changed = whole_pool_scores(annotations, members, "entropy")
    assert not np.allclose(changed, expected)
    _assert_top(read_table(out)["index"], changed, 10)


def _write(path, value):
    path.write_text(json.dumps(value))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("box_outside", "image 1000 (000.jpg) has a box [10, 10, 100, 5] outside its"),
        ("unknown_category", "has category_id 99, which is not among"),
        ("unknown_image", "names image_id 5, which"),
        ("bad_score", "has score 2; scores must be in [0, 1]"),
        ("not_array", "is not a JSON array"),
        ("cut_short", "ends inside a detection, before its closing ']'"),
        ("no_bbox", "lacks an integer image_id and category_id or a bbox"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, change, message):
    annotations, members = make_pool(tmp_path)
    data = json.loads(annotations.read_text())
    if change == "box_outside":
        data["annotations"].insert(0, {"image_id": 1000, "category_id": 3, "bbox": [10, 10, 100, 5]})
        _write(annotations, data)
    bad = {
        "unknown_category": [{"image_id": 1000, "category_id": 99, "bbox": [1, 1, 2, 2], "score": 0.5}],
        "unknown_image": [{"image_id": 5, "category_id": 3, "bbox": [1, 1, 2, 2], "score": 0.5}],
        "bad_score": [{"image_id": 1000, "category_id": 3, "bbox": [1, 1, 2, 2], "score": 2}],
        "not_array": {"image_id": 1000},
        "no_bbox": [{"image_id": 1000, "category_id": 3, "score": 0.5}],
    }
    if change in bad:
        _write(members[1], bad[change])
    if change == "cut_short":
        members[1].write_text(members[1].read_text()[:-40])
    out = tmp_path / "subset.csv"
    args = ["score", "--annotations", str(annotations), *map(str, members), "-f", "entropy", "-b", "5", "-o", str(out)]
    for state in ([], ["--state", str(tmp_path / "state")]):
        code, _, stderr = run_cli([*args, *state], capsys)
        assert code == 2
        assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert "Traceback" not in stderr
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
        assert not (tmp_path / "state").exists()  # nor a state directory the call made


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--labels", "y.npy"], "--labels does not apply to --annotations"),
        (["--skip-disagreement"], "--skip-disagreement does not apply"),
        (["--stride", "0"], "--stride must be a positive number"),
        (["-f", "margin"], "choose from entropy"),
        (["--state", "s.npz"], "keeps its state in a directory"),
    ],
)
def test_options_that_do_not_apply_are_refused(tmp_path, capsys, extra, message):
    annotations, members = make_pool(tmp_path)
    args = ["score", "--annotations", str(annotations), *map(str, members), "-f", "entropy", "-b", "5"]
    code, _, stderr = run_cli([*args, "-o", str(tmp_path / "s.csv"), *extra], capsys)
    assert code == 2 and message in stderr, stderr


def test_stride_without_annotations_is_refused(tmp_path, capsys):
    code, _, stderr = run_cli(["score", "m.npy", "-f", "entropy", "-b", "5", "-o", "s.csv", "--stride", "8"], capsys)
    assert code == 2 and "--stride sets the centre maps of --annotations" in stderr
