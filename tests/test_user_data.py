"""Users' data and models in ``subsetsearch run``: a subset traceable to the user's own files and rows,
a network of the user's own (``model.factory``), and image folders read lazily."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from scoring import run_cli

from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.run import run_config
from subsetsearch.rundir import DatasetRecord, RunLayout
from subsetsearch.train.data import load_digits_images

SMALL = {
    "seed": 4,
    "model": {"name": "cnn_small", "width": 4},
    "train": {"epochs": 2, "batch_size": 32, "augment": {"crop_padding": 0, "flip": False}, "threads": 1},
    "ensemble": {"kind": "checkpoints", "start": 1, "stop": 2},
    "search": {"scheme": "build_up", "budgets": [0.25, 0.5], "function": "entropy"},
}


def _digits_folder(root: Path, per_class: int = 30, classes: int = 3) -> dict[str, int]:
    """scikit-learn's digits of ``classes`` classes as PNG files, one subfolder per class; the class
    each file holds, by its path relative to ``root``."""
    digits = load_digits_images()
    truth = {}
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True)
        for k, row in enumerate(np.flatnonzero(digits.y == c)[:per_class]):
            name = f"class_{c}/img_{k:03d}.png"
            Image.fromarray(np.kron(digits.x[row, 0], np.ones((2, 2), np.uint8))).save(root / name)
            truth[name] = c
    return truth


def _tables(run_dir: Path) -> list[dict]:
    layout = RunLayout(run_dir)
    return [pq.read_table(p).to_pydict() for p in [layout.subset, *(s.subset for s in layout.steps())]]


def test_an_image_folders_subset_names_its_files_and_their_class_folder_is_their_label(tmp_path):
    truth = _digits_folder(tmp_path / "images")
    result = run_config(
        parse_config({**SMALL, "data": {"dataset": "image_folder", "path": str(tmp_path / "images")}}), tmp_path / "run"
    )
    record = DatasetRecord.load(RunLayout(tmp_path / "run").dataset)
    for table in _tables(tmp_path / "run"):
        assert table["path"], "no path column"
        for index, path in zip(table["index"], table["path"], strict=True):
            assert (tmp_path / "images" / path).is_file()
            assert truth[path] == record.pool_labels[index]  # the class folder is the label the run trained on
    assert len(set(_tables(tmp_path / "run")[0]["path"])) == result.subset.size


def test_an_arrays_subset_names_its_rows_in_the_given_file_before_any_split(tmp_path):
    digits = load_digits_images()
    x, y = digits.x[:400, 0], digits.y[:400]
    np.savez(tmp_path / "data.npz", x=x, y=y)
    config = {
        **SMALL,
        "data": {"dataset": "arrays", "path": str(tmp_path / "data.npz"), "limit": 200, "validation_fraction": 0.1},
    }
    run_config(parse_config(config), tmp_path / "run")
    record = DatasetRecord.load(RunLayout(tmp_path / "run").dataset)
    rows = record.pool_source["source_row"]
    assert len(rows) == len(record.pool_labels) < 400 and len(set(rows.tolist())) == len(rows)
    np.testing.assert_array_equal(y[rows], record.pool_labels)  # each pool row is that row of the file
    final = _tables(tmp_path / "run")[0]
    np.testing.assert_array_equal(final["source_row"], rows[final["index"]])


def test_a_coco_subset_names_its_image_ids_and_files(tmp_path):
    rng = np.random.default_rng(1)
    images, annotations = [], []
    (tmp_path / "images").mkdir()
    for i in range(24):
        name = f"shot_{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "images" / name)
        images.append({"id": 500 + 7 * i, "file_name": name, "width": 32, "height": 32})
        annotations.append({"image_id": 500 + 7 * i, "category_id": 1, "bbox": [4, 4, 10, 10]})
    (tmp_path / "pool.json").write_text(
        json.dumps({"images": images, "categories": [{"id": 1, "name": "x"}], "annotations": annotations})
    )
    config = {
        "task": "detection",
        "seed": 1,
        "data": {"dataset": "coco", "path": str(tmp_path / "pool.json"), "image_dir": str(tmp_path / "images")},
        "detection": {"size": 32},
        "train": {"epochs": 2, "batch_size": 8, "threads": 1, "augment": {"crop_padding": 0, "flip": False}},
        "ensemble": {"kind": "checkpoints", "start": 1, "stop": 2},
        "search": {"scheme": "build_up", "budgets": [0.25, 0.5], "function": "entropy"},
    }  # fmt: skip
    run_config(parse_config(config), tmp_path / "run")
    by_id = {im["id"]: im["file_name"] for im in images}
    for table in _tables(tmp_path / "run"):
        assert table["image_id"] and all(
            by_id[i] == f for i, f in zip(table["image_id"], table["file_name"], strict=True)
        )


def test_the_report_lists_the_chosen_samples_in_the_users_data(tmp_path):
    from subsetsearch.pipeline.report import build_report

    _digits_folder(tmp_path / "images", per_class=20, classes=2)
    run_config(
        parse_config({**SMALL, "data": {"dataset": "image_folder", "path": str(tmp_path / "images")}}), tmp_path / "run"
    )
    page = build_report(tmp_path / "run").html.read_text()
    first = _tables(tmp_path / "run")[0]["path"][0]
    assert "The subset in your data" in page and first in page


# -- image folders read lazily ------------------------------------------------------------------------------------


def _same_tables(expected: list[dict], got: list[dict]) -> None:
    assert len(expected) == len(got)
    for a, b in zip(expected, got, strict=True):
        for column in ("index", "multiplicity", "score", "iteration"):  # NaN scores (the random start's) equal NaN
            np.testing.assert_array_equal(np.asarray(b[column]), np.asarray(a[column]), err_msg=column)


def test_an_image_folder_run_is_the_run_on_its_pixels_as_arrays_whatever_its_workers_and_cache(tmp_path):
    truth = _digits_folder(tmp_path / "images")
    names = sorted(truth)  # the folder's rows: class folders in sorted order, files sorted in each
    x = np.stack([np.asarray(Image.open(tmp_path / "images" / name)) for name in names])  # read by PIL alone
    np.savez(tmp_path / "same.npz", x=x, y=np.array([truth[name] for name in names]))
    folder = {"dataset": "image_folder", "path": str(tmp_path / "images")}
    runs = {
        "arrays": {"dataset": "arrays", "path": str(tmp_path / "same.npz")},
        "two workers, no cache": {**folder, "workers": 2, "cache_mb": 0},
        "in process, cached": {**folder, "workers": 0},
    }
    tables, stats = {}, {}
    for name, data in runs.items():
        run_config(parse_config({**SMALL, "data": data}), tmp_path / name)
        tables[name] = _tables(tmp_path / name)
        stats[name] = np.load(tmp_path / name / "iter_01" / "stats.npz")
    numeric = [key for key in stats["arrays"].files if stats["arrays"][key].dtype.kind in "biuf"]  # not the ledger
    assert {"sum_fixed", "entropy_fixed", "votes", "counts"} <= set(numeric)
    for name in runs:
        _same_tables(tables["arrays"], tables[name])
        for key in numeric:
            np.testing.assert_array_equal(stats[name][key], stats["arrays"][key], err_msg=f"{name}: {key}")


def test_an_image_folder_run_killed_while_its_workers_decode_resumes_bit_for_bit(tmp_path):
    _digits_folder(tmp_path / "images")
    config = {
        **SMALL,
        "data": {"dataset": "image_folder", "path": str(tmp_path / "images"), "workers": 2, "cache_mb": 0},
    }
    run_config(parse_config(config), tmp_path / "whole")
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(config))
    process = _cli_run(tmp_path / "search.yaml", tmp_path / "cut", tmp_path)
    assert _wait_for(tmp_path / "cut", "iter_01/members/run_0/state.safetensors", process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=300)
    final = _cli_run(tmp_path / "search.yaml", tmp_path / "cut", tmp_path)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()
    _same_tables(_tables(tmp_path / "whole"), _tables(tmp_path / "cut"))


def test_the_image_cache_holds_at_most_its_bytes_and_drops_the_least_recently_used_first():
    from subsetsearch.train.disk_images import ImageCache

    cache = ImageCache(max_bytes=300)
    images = {k: np.full(100, i, np.uint8) for i, k in enumerate("abcd")}
    for key in "abc":
        cache.put(key, images[key])
    assert cache.bytes == 300 and len(cache) == 3
    assert cache.get("a") is images["a"]  # a is now the most recently used: b goes first
    cache.put("d", images["d"])
    assert cache.bytes == 300 and "b" not in cache and all(k in cache for k in "acd")
    cache.put("big", np.zeros(301, np.uint8))  # larger than the whole cache: not kept, nothing dropped
    assert "big" not in cache and all(k in cache for k in "acd")
    nothing = ImageCache(max_bytes=0)
    nothing.put("a", images["a"])
    assert len(nothing) == 0 and nothing.bytes == 0


# -- your own network: model.factory ------------------------------------------------------------------------------

FACTORY_RUN = {
    **SMALL,
    "data": {"dataset": "digits", "limit": 400, "test_limit": 200},
    "model": {"factory": "nets/user_models.py:tiny_net"},  # relative: starts at the config's folder
    "train": {**SMALL["train"], "epochs": 3, "precision": "fp32"},
    "ensemble": {"kind": "combined", "runs": 2, "start": 2, "stop": 3},
    "compare": ["random"],
}


def _factory_config(folder: Path) -> Path:
    """FACTORY_RUN as ``folder/search.yaml``, with tests/user_models.py copied to ``folder/nets/``."""
    (folder / "nets").mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("user_models.py"), folder / "nets" / "user_models.py")
    (folder / "search.yaml").write_text(yaml.safe_dump(FACTORY_RUN))
    return folder / "search.yaml"


def _cli_run(config: Path, run_dir: Path, cwd: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "subsetsearch.cli", "run", str(config), "--run-dir", str(run_dir), "-q"]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(folder: Path, pattern: str, process: subprocess.Popen) -> bool:
    """Wait until a file matching ``pattern`` exists under ``folder``; False if the process ended first."""
    while process.poll() is None:
        if folder.is_dir() and any(folder.glob(pattern)):
            return True
        time.sleep(0.02)
    return False


def test_a_factory_network_is_trained_and_a_run_killed_three_times_resumes_to_the_same_subset(tmp_path):
    config = _factory_config(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"  # the working directory is not the config's folder
    elsewhere.mkdir()
    whole = _cli_run(config, tmp_path / "whole", elsewhere)
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err.decode()

    cut = tmp_path / "cut"
    kills = 0
    # killed while the acquisition members train (the first run, then the second), then while a subset model does
    patterns = ("iter_01/members/run_0/state.safetensors", "iter_01/members/run_1/epoch_002.safetensors")
    for pattern in (*patterns, "models/**/state.safetensors"):
        process = _cli_run(config, cut, elsewhere)
        if _wait_for(cut, pattern, process):
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate(timeout=300)
    final = _cli_run(config, cut, elsewhere)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()
    assert kills == 3

    expected, got = _tables(tmp_path / "whole"), _tables(cut)
    assert len(expected) == len(got) == 3  # the final subset, iter_00's and iter_01's
    for a, b in zip(expected, got, strict=True):
        assert a.keys() == b.keys()
        for column in a:  # NaN scores (the random start's) equal NaN here
            np.testing.assert_array_equal(np.asarray(b[column]), np.asarray(a[column]), err_msg=column)
    accuracy = {
        name: {
            v: entry["test_accuracy"] for v, entry in json.loads((run / "metrics.json").read_text())["variants"].items()
        }
        for name, run in (("whole", tmp_path / "whole"), ("cut", cut))
    }
    assert accuracy["whole"] == accuracy["cut"] and set(accuracy["cut"]) == {"build_up", "random"}
    # the checkpoints are the user's network: TinyNet's layers, with its shapes for 1 channel, 10 classes
    from safetensors.numpy import load_file

    weights = load_file(str(cut / "iter_01" / "members" / "run_0" / "epoch_003.safetensors"))
    assert weights["body.0.weight"].shape == (6, 1, 3, 3) and weights["head.weight"].shape == (10, 24)
    assert not any(key.startswith("features") for key in weights)


def test_a_module_factory_is_imported_and_called_with_the_datas_shape(tmp_path, monkeypatch):
    import torch

    from subsetsearch.pipeline.task import build_networks

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    config = parse_config({**SMALL, "model": {"factory": "user_models:tiny_net"}})
    acquisition, subset, _ = build_networks(config, (3, 20, 24), 7, torch.device("cpu"))
    net, again = acquisition.build(seed=5), subset.build(seed=5)
    assert type(net).__name__ == "TinyNet" and net.input_size == (20, 24)
    # the subset model defaults to the same network, and the seed makes its initial weights
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))
    other = acquisition.build(seed=6)
    assert not torch.equal(other.state_dict()["head.weight"], net.state_dict()["head.weight"])
    assert tuple(net(torch.zeros(4, 3, 20, 24)).shape) == (4, 7)


FACTORY_FAILURES = [
    ("user_models.py:tiny_nett", "has no 'tiny_nett'"),
    ("user_models.py:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a function or class"),
    ("missing.py:tiny_net", "not found; a relative path starts at the config's folder"),
    ("no_such_package.models:build", "importing no_such_package.models failed (ModuleNotFoundError"),
    ("broken.py:build", "loading"),
    ("user_models.py:not_a_module", "returned a dict, not a torch.nn.Module"),
    ("user_models.py:wrong_width", "is [2, 11]; it must return float logits [batch, num_classes] = [2, 10]"),
    ("user_models.py:maps_out", "is [2, 10, 8, 8]; it must return float logits"),
    ("user_models.py:fixed_input", "the network failed on a batch of shape [2, 1, 8, 8] (RuntimeError"),
    ("user_models.py:positional_only", "failed when called with num_classes=10, in_channels=1, input_size=(8, 8)"),
    ("user_models.py:frozen", "returned a network with no trainable parameters"),
]


@pytest.mark.parametrize(("factory", "message"), FACTORY_FAILURES)
def test_a_factory_that_cannot_give_a_classifier_is_one_line_naming_it_and_nothing_is_written(
    tmp_path, capsys, factory, message
):
    shutil.copy(Path(__file__).with_name("user_models.py"), tmp_path / "user_models.py")
    (tmp_path / "broken.py").write_text("import torch\nraise ValueError('unfinished edit')\n")
    config = tmp_path / "search.yaml"
    config.write_text(
        yaml.safe_dump({**SMALL, "data": {"dataset": "digits", "limit": 200}, "model": {"factory": factory}})
    )
    code, _, err = run_cli(["run", str(config), "--run-dir", str(tmp_path / "run"), "-q"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "model.factory '" in lines[0] and factory.rpartition(":")[2] in lines[0] and message in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def test_weights_saved_by_another_network_are_one_line(tmp_path):
    import torch
    from torch import nn

    from subsetsearch.errors import InputError
    from subsetsearch.train import trainer

    path = tmp_path / "w.safetensors"
    trainer._save_model(nn.Linear(3, 2), path, {})
    with pytest.raises(InputError, match=r"w.safetensors: the saved weights do not fit the network \(.*\): the model"):
        trainer.load_weights(nn.Linear(4, 2), path)
    net = nn.Linear(3, 2)
    trainer.load_weights(net, path)  # the same network loads
    assert net.weight.shape == torch.Size([2, 3])


# -- augmentation: flips only where they were measured -------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "flip", "said"),
    [
        ({}, True, "random crop (padding 2 px), horizontal flip"),  # the built-in Fashion-MNIST
        ({"data": {"dataset": "digits"}}, False, "random crop (padding 2 px)"),
        ({"data": {"dataset": "arrays", "path": "x.npz"}}, False, "random crop (padding 2 px)"),
        ({"data": {"dataset": "image_folder", "path": "x"}, "train": {"augment": {"crop_padding": 0}}}, False, "none"),
        (
            {"data": {"dataset": "digits"}, "train": {"augment": {"flip": True}}},
            True,
            "random crop (padding 2 px), horizontal",
        ),
        ({"data": {"dataset": "fashion_mnist"}, "train": {"augment": {"flip": False}}}, False, "random crop"),
        ({"task": "detection"}, False, "none (a detector trains on its images as they are)"),
    ],
)
def test_flips_are_on_for_fashion_mnist_only_unless_asked_and_the_summary_says_what_ran(config, flip, said):
    from subsetsearch.pipeline.run import augmentation

    parsed = parse_config(config)
    assert parsed.train.augment.flip is flip and parsed.subset_train_config().augment.flip is flip
    assert augmentation(parsed).startswith(said) and (flip or "flip" not in augmentation(parsed))


def test_subset_models_of_their_own_training_get_the_datasets_flip_and_are_named_apart():
    from subsetsearch.pipeline.run import augmentation

    parsed = parse_config(
        {"data": {"dataset": "digits"}, "train": {"augment": {"flip": True}}, "subset_model": {"train": {"epochs": 3}}}
    )
    assert parsed.train.augment.flip is True and parsed.subset_train_config().augment.flip is False
    assert augmentation(parsed) == (
        "random crop (padding 2 px), horizontal flip (acquisition), random crop (padding 2 px) (subset models)"
    )


def _marking_worker(folder: str) -> None:
    """A stand-in for ``die_with_parent`` that leaves a file named by its process."""
    import os

    Path(folder, f"started_{os.getpid()}").touch()


def test_the_header_scan_workers_are_set_to_die_with_the_job(tmp_path, monkeypatch):
    from subsetsearch.train import disk_images

    for i in range(3):
        Image.fromarray(np.full((4, 4), 50 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setattr(disk_images, "SCAN_CHUNK", 1)  # three chunks: a pool of workers reads them
    monkeypatch.setattr(disk_images, "die_with_parent", lambda: _marking_worker(str(marks)))
    headers = disk_images.scan_all([(str(tmp_path / f"{i}.png"), f"image {i}") for i in range(3)], workers=2)
    assert len(headers) == 3
    assert len(list(marks.iterdir())) == 2  # each of the two workers ran the hook as it started


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_that_dies_with_its_parent_does_not_outlive_a_killed_job():
    """A job starts a worker that calls die_with_parent and sleeps, then is killed with SIGKILL: the
    worker is gone within seconds instead of waiting on."""
    import textwrap

    script = textwrap.dedent(
        """
        import multiprocessing, os, signal, sys, time
        from subsetsearch.train.disk_images import die_with_parent

        def work():
            die_with_parent()
            time.sleep(60)

        worker = multiprocessing.get_context("fork").Process(target=work)
        worker.start()
        time.sleep(0.5)  # the worker has set its death signal
        print(worker.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    worker = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:  # gone, or dead and waiting to be reaped (a zombie: State Z)
            if Path(f"/proc/{worker}/status").read_text().split("State:")[1].split()[0] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail(f"worker {worker} outlived its killed parent")
