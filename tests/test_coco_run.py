"""`subsetsearch run` with task: detection on a COCO-format set of the user's: letterboxing, class
names from the categories, COCO's size buckets in original pixels, and one-line errors that leave
nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from subsetsearch.cli import main
from subsetsearch.rundir import DatasetRecord
from subsetsearch.train.coco_data import load_coco
from subsetsearch.train.detection_metrics import COCO_BUCKETS, evaluate_detections

CATEGORIES = [{"id": 9, "name": "disc"}, {"id": 5, "name": "box"}]  # classes by id: box (5), disc (9)
COLOURS = {5: (230, 40, 40), 9: (40, 40, 230)}


def write_coco(folder: Path, name: str, count: int, seed: int) -> Path:
    """``count`` RGB images of random sizes, each with 0 to 2 filled rectangles of a category's colour."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        width, height = int(rng.integers(40, 97)), int(rng.integers(40, 97))
        pixels = np.full((height, width, 3), 20, dtype=np.uint8)
        for _ in range(int(rng.integers(0, 3))):  # some images have no box
            w, h = int(rng.integers(8, 30)), int(rng.integers(8, 30))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            category = int(rng.choice([5, 9]))
            pixels[y : y + h, x : x + w] = COLOURS[category]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 100 + i,
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        file_name = f"{name}_{i:03d}.png"
        Image.fromarray(pixels).save(folder / "images" / file_name)
        images.append({"id": 100 + i, "file_name": file_name, "width": width, "height": height})
    rng.shuffle(annotations)  # not grouped by image
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"images": images, "categories": CATEGORIES, "annotations": annotations}))
    return path


def test_letterboxing_scales_image_and_boxes_by_one_factor(tmp_path):
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[10:30, 20:40] = (255, 0, 0)  # a 20x20 box at x 20, y 10 of an 80x40 image
    Image.fromarray(pixels).save(tmp_path / "a.png")
    instances = {
        "images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 40}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [20, 10, 20, 20]}],
    }
    (tmp_path / "a.json").write_text(json.dumps(instances))
    loaded = load_coco(tmp_path / "a.json", tmp_path, size=32)
    assert loaded.scale.tolist() == [0.4]  # 32 / max(80, 40)
    np.testing.assert_allclose(loaded.images.boxes, [[8.0, 4.0, 16.0, 12.0]])
    x = loaded.images.x[0]
    assert x.shape == (3, 32, 32)
    assert (x[0, 5:11, 9:15] > 200).all() and (x[2, 5:11, 9:15] < 30).all()  # red inside the scaled box
    assert not x[:, 16:].any()  # the letterbox: 40 * 0.4 = 16 rows of image, then black
    assert not x[0, :16, 17:].any() and not x[0, :3].any()  # no red outside the box's rows and columns


def test_a_box_within_a_pixel_of_the_edge_is_clipped_and_one_further_out_refused(tmp_path):
    from subsetsearch.errors import InputError
    from subsetsearch.internal.coco import read_instances

    instances = {
        "images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 40}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [-0.5, 30.0, 80.75, 10.5]}],
    }
    (tmp_path / "a.json").write_text(json.dumps(instances))
    np.testing.assert_allclose(read_instances(tmp_path / "a.json").boxes, [[0.0, 30.0, 80.0, 40.0]])
    instances["annotations"][0]["bbox"] = [-1.5, 30.0, 10.0, 5.0]
    (tmp_path / "a.json").write_text(json.dumps(instances))
    with pytest.raises(InputError, match=r"has a box \[-1.5, 30.0, 10.0, 5.0\] outside its 80x40 pixels"):
        read_instances(tmp_path / "a.json")


def test_coco_size_buckets_are_judged_in_original_pixels():
    boxes = np.array([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 40.0, 40.0], [0.0, 0.0, 100.0, 100.0]])
    perfect = [np.array([[*b, 0.9, 0.0]]) for b in boxes]
    result = evaluate_detections(perfect, boxes, np.zeros(3, int), np.arange(3), 1, buckets=COCO_BUCKETS)
    # 20² < 32² is small, 40² is medium, 100² > 96² is large: each bucket holds one perfect detection
    assert result["AP_small"] == result["AP_medium"] == result["AP_large"] == pytest.approx(1.0)
    half = [perfect[0], np.zeros((0, 6)), perfect[2]]  # the medium object is missed
    result = evaluate_detections(half, boxes, np.zeros(3, int), np.arange(3), 1, buckets=COCO_BUCKETS)
    assert result["AP_medium"] == 0.0 and result["AP_small"] == pytest.approx(1.0)
    assert result["wMAP"] == pytest.approx((1 * 1.0 + 2 * 0.0 + 3 * 1.0) / 6)


def _config(tmp_path: Path, epochs: int = 2, **data) -> Path:
    config = {
        "name": "coco",
        "task": "detection",
        "seed": 1,
        "data": {"dataset": "coco", "path": str(tmp_path / "pool.json"), "image_dir": str(tmp_path / "images"), **data},
        "detection": {"size": 32},
        "model": {"width": 8},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 0.02, "threads": 1, "precision": "fp32"},
        "ensemble": {"kind": "checkpoints", "start": epochs - 1, "stop": epochs},
        "search": {"scheme": "build_up", "budgets": [0.25, 0.5]},
        "compare": ["random"],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_run_on_a_coco_set_names_its_classes_and_judges_by_coco_map(tmp_path, capsys):
    write_coco(tmp_path, "pool", 48, seed=0)
    write_coco(tmp_path, "test", 12, seed=1)
    config = _config(tmp_path, epochs=12, test_path=str(tmp_path / "test.json"))
    code = main(["run", str(config), "--run-dir", str(tmp_path / "run"), "-q"])
    assert code == 0, capsys.readouterr().err
    record = DatasetRecord.load(tmp_path / "run" / "dataset.npz")
    assert record.name == "coco:pool.json" and record.class_names == ["box", "disc"]
    boxes = json.loads((tmp_path / "pool.json").read_text())["annotations"]
    per_class = record.pool_boxes.sum(axis=0)
    assert per_class.tolist() == [sum(b["category_id"] == 5 for b in boxes), sum(b["category_id"] == 9 for b in boxes)]
    saved = json.loads((tmp_path / "run" / "models" / "build_up" / "model_0" / "test_metrics.json").read_text())
    assert saved["mAP"] > 0
    # independently: the saved detector's boxes scaled back to original pixels, judged by pycocotools
    # against the test file itself (its own ids, categories, areas and COCO's default size buckets)
    assert saved["mAP"] == pytest.approx(_coco_map(tmp_path, config), abs=1e-12)


def _coco_map(tmp_path: Path, config: Path) -> float:
    import contextlib
    import io

    import torch
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from subsetsearch.pipeline.config import load_config
    from subsetsearch.pipeline.detect import DetectionTask
    from subsetsearch.rundir import RunLayout
    from subsetsearch.train import detector, trainer

    search = DetectionTask(load_config(config), RunLayout(tmp_path / "run"))
    search.prepare()
    net = search.subset_net.build(0)
    trainer.load_weights(net, tmp_path / "run" / "models" / "build_up" / "model_0" / "last.safetensors")
    net.eval()
    test = json.loads((tmp_path / "test.json").read_text())
    loaded = load_coco(tmp_path / "test.json", tmp_path / "images", size=32, workers=0)
    images = torch.from_numpy(loaded.images.x[np.arange(len(loaded.scale))])  # every test image, read here
    with torch.inference_mode():
        found = detector.decode(search.subset_net.forward(net, search.test, images), 2)
    category = [5, 9]
    results = [
        {
            "image_id": image["id"],
            "category_id": category[int(c)],
            "score": float(p),
            "bbox": [x0 / s, y0 / s, (x1 - x0) / s, (y1 - y0) / s],
        }
        for image, rows, s in zip(test["images"], found, loaded.scale, strict=True)
        for x0, y0, x1, y1, p, c in rows
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(tmp_path / "test.json"))
        evaluator = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


def test_without_a_test_file_a_seeded_share_is_held_out(tmp_path, capsys):
    write_coco(tmp_path, "pool", 40, seed=2)
    config = _config(tmp_path, test_fraction=0.25)
    code = main(["run", str(config), "--run-dir", str(tmp_path / "run"), "-q"])
    assert code == 0, capsys.readouterr().err
    assert DatasetRecord.load(tmp_path / "run" / "dataset.npz").pool_size == 30  # 40 less 10 held out


def _break(tmp_path: Path, what: str) -> None:
    instances = json.loads((tmp_path / "pool.json").read_text())
    first = instances["images"][0]
    if what == "box_outside":
        instances["annotations"].append(
            {"image_id": first["id"], "category_id": 5, "bbox": [first["width"] - 2, 0, 5, 5]}
        )
    elif what == "unknown_category":
        instances["annotations"].append({"image_id": first["id"], "category_id": 77, "bbox": [0, 0, 5, 5]})
    elif what == "missing_image":
        (tmp_path / "images" / first["file_name"]).unlink()
    elif what == "unreadable_image":
        (tmp_path / "images" / first["file_name"]).write_text("not a picture")
    elif what == "wrong_size":
        first["width"] += 1
    (tmp_path / "pool.json").write_text(json.dumps(instances))


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("box_outside", "image 100 (pool_000.png) has a box"),
        ("unknown_category", "image 100 (pool_000.png) has category_id 77"),
        ("missing_image", "image 100 (pool_000.png) of"),
        ("unreadable_image", "cannot be read as an image"),
        ("wrong_size", "correct its width and height there"),
    ],
)
def test_a_bad_coco_set_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, what, message):
    write_coco(tmp_path, "pool", 12, seed=3)
    _break(tmp_path, what)
    config = _config(tmp_path)
    code = main(["run", str(config), "--run-dir", str(tmp_path / "run"), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"detection": {"size": 32, "images": 100}}, "detection.images: sets the built-in canvases"),
        ({"task": "classification", "model": None, "detection": None}, "coco is a detection set"),
        ({"data": {"dataset": "coco", "path": "x.json"}}, "data.image_dir is required"),
    ],
)
def test_coco_config_errors_are_one_line(tmp_path, capsys, changes, message):
    path = _config(tmp_path)
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config))
    code = main(["run", str(path), "--run-dir", str(tmp_path / "run"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
