"""Nothing a user owns is overwritten, and no answer that may be wrong is silent: each class of defect
of issue 32 tried against the command line and the Python API, with the answer worked out here."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from reference import other_scores, random_members
from scoring import read_table, run_cli

from subsetsearch import EnsembleStats, acquire
from subsetsearch.dynamics import TrainingDynamics
from subsetsearch.errors import InputError, SubsetsearchWarning
from subsetsearch.internal.directories import MARKER
from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.search import Search


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def _one_line(code: int, stderr: str, exit_code: int = 2) -> str:
    assert code == exit_code and "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


SMALL = {
    "seed": 3,
    "data": {"dataset": "digits", "limit": 300, "test_limit": 200},
    "model": {"name": "cnn_small", "width": 4},
    "train": {"epochs": 2, "batch_size": 64, "augment": {"crop_padding": 0, "flip": False}, "threads": 1},
    "ensemble": {"kind": "checkpoints", "start": 1, "stop": 2},
    "search": {"scheme": "build_up", "budgets": [0.2, 0.4]},
}


# -- 2: only our own directories are written into ---------------------------------------------------------------


@pytest.mark.parametrize("config_text", ["name: mine\nepochs: 3\n", "key: [unclosed\n", "- a list\n"])
def test_report_refuses_a_folder_with_someone_elses_config_and_writes_nothing(tmp_path, capsys, config_text):
    (tmp_path / "config.yaml").write_text(config_text)
    before = _digest(tmp_path)
    line = _one_line(*run_cli(["report", str(tmp_path)], capsys)[::2])
    assert "is neither a run directory (config.yaml) nor a study directory" in line
    assert _digest(tmp_path) == before


def test_run_refuses_a_folder_that_is_not_a_run_and_leaves_it_as_it_was(tmp_path, capsys):
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    marker = json.dumps({"format": "subsetsearch-directory/1", "kind": "statistics"})
    for k, contents in enumerate(({"config.yaml": "name: mine\n"}, {MARKER: marker})):
        folder = tmp_path / f"theirs{k}"
        folder.mkdir()
        for name, text in contents.items():
            (folder / name).write_text(text)
        before = _digest(folder)
        line = _one_line(*run_cli(["run", str(config), "--run-dir", str(folder), "-q"], capsys)[::2])
        assert "is not a subsetsearch run directory; give another --run-dir" in line
        assert _digest(folder) == before


HOLD = """
import sys, time
from subsetsearch.internal.directories import DirectoryLock
with DirectoryLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_in_one_run_directory_is_refused_naming_the_first(tmp_path):
    config = parse_config(SMALL)
    Search(config, tmp_path / "run").claim_run_dir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=rf"--run-dir '.*run' is in use by process {holder.pid} on "):
            Search(config, tmp_path / "run").run()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not (tmp_path / "run" / "iter_00").exists()


# -- 5: images at their bit depth ---------------------------------------------------------------------------------


def _png16(path: Path, values: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)


def test_an_image_folder_of_16_bit_and_float_images_keeps_their_values(tmp_path):
    from PIL import Image

    from subsetsearch.train.data import load_image_folder

    rng = np.random.default_rng(0)
    deep = {c: [rng.integers(1000, 61000, (12, 10)) for _ in range(3)] for c in ("a", "b")}
    for c, images in deep.items():
        for i, values in enumerate(images):
            _png16(tmp_path / "deep" / c / f"{i}.png", values)
    loaded, classes = load_image_folder(tmp_path / "deep")
    assert classes == ["a", "b"] and loaded.x.dtype == np.float32 and loaded.x.shape == (6, 1, 12, 10)
    expected = np.stack([v for c in ("a", "b") for v in deep[c]]).astype(np.float32)
    np.testing.assert_array_equal(loaded.x[:, 0], expected)  # 1,000..61,000, not all 255
    floats = {c: [rng.normal(size=(9, 9)).astype(np.float32) for _ in range(2)] for c in ("a", "b")}
    for c, images in floats.items():
        (tmp_path / "float" / c).mkdir(parents=True)
        for i, values in enumerate(images):
            Image.fromarray(values, mode="F").save(tmp_path / "float" / c / f"{i}.tif")
    loaded, _ = load_image_folder(tmp_path / "float")
    np.testing.assert_array_equal(loaded.x[:, 0], np.stack([v for c in ("a", "b") for v in floats[c]]))
    shutil.copy(tmp_path / "float" / "a" / "0.tif", tmp_path / "deep" / "a" / "9.tif")
    with pytest.raises(InputError, match=r"mixes bit depths: .* is 16-bit, .*9\.tif' is 32-bit float"):
        load_image_folder(tmp_path / "deep")
    bad = np.full((9, 9), np.nan, np.float32)
    Image.fromarray(bad, mode="F").save(tmp_path / "float" / "b" / "nan.tif")
    with pytest.raises(InputError, match=r"nan\.tif' holds NaN or infinite pixels"):
        load_image_folder(tmp_path / "float")


def test_a_coco_set_of_16_bit_images_keeps_their_values(tmp_path):
    from subsetsearch.train.coco_data import load_coco

    values = np.arange(16 * 8).reshape(8, 16) * 400 + 1000  # 1,000 .. 51,800
    _png16(tmp_path / "images" / "a.png", values)
    pool = {
        "images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 8}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}],
    }
    (tmp_path / "pool.json").write_text(json.dumps(pool))
    loaded = load_coco(tmp_path / "pool.json", tmp_path / "images", size=16)
    x = loaded.images.x
    assert x.dtype == np.float32 and x.shape == (1, 3, 16, 16)
    np.testing.assert_array_equal(x[0, :, :8, :], np.repeat(values[None].astype(np.float32), 3, axis=0))


# -- 6: members in natural order, or refused where the order is unclear ------------------------------------------


def test_a_directory_of_unpadded_epochs_is_read_in_natural_order(tmp_path, capsys):
    rng = np.random.default_rng(4)
    members = random_members(rng, 12, 40, 3, one_hot=False)
    labels = rng.integers(0, 3, 40)
    (tmp_path / "d").mkdir()
    for e, member in enumerate(members, start=1):
        np.save(tmp_path / "d" / f"epoch_{e}.npy", member)  # plain name order: 1, 10, 11, 12, 2, ...
    np.save(tmp_path / "y.npy", labels)
    args = ["score", str(tmp_path / "d"), "--labels", str(tmp_path / "y.npy"), "-f", "forgetting", "-b", "5"]
    code, _, err = run_cli([*args, "-o", str(tmp_path / "s.csv"), "--scores-out", str(tmp_path / "all.csv")], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(
        read_table(tmp_path / "all.csv")["score"], other_scores(members, labels, "forgetting")
    )


@pytest.mark.parametrize(
    "names", [["a.npy", "b.npy"], ["run0_epoch_5.npy", "run1_epoch_2.npy"], ["c_01.npy", "c_1.npy"]]
)
def test_names_whose_order_is_unclear_are_refused_for_ordered_functions_only(tmp_path, capsys, names):
    rng = np.random.default_rng(5)
    (tmp_path / "d").mkdir()
    for name, member in zip(names, random_members(rng, len(names), 20, 3), strict=True):
        np.save(tmp_path / "d" / name, member)
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 20))
    base = ["score", str(tmp_path / "d"), "--labels", str(tmp_path / "y.npy"), "-b", "5", "-o", str(tmp_path / "s.csv")]
    line = _one_line(*run_cli([*base, "-f", "dyn_unc", "--window", "2"], capsys)[::2])
    assert "dyn_unc follow the members' order: the members of" in line and "give the member files one by one" in line
    assert not (tmp_path / "s.csv").exists()
    assert run_cli([*base, "-f", "el2n"], capsys)[0] == 0  # order-free: any order gives the same scores


# -- 7, 8, 9: the Python API refuses what it would ignore, and says when an answer is empty -------------------------


def test_acquire_refuses_a_window_or_labels_the_label_statistics_were_not_kept_with():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 3, 10)
    dynamics = TrainingDynamics(labels, num_classes=3, window=2)
    for member in random_members(rng, 3, 10, 3):
        dynamics.update(member)
    np.testing.assert_array_equal(acquire(dynamics, "dyn_unc", window=2), acquire(dynamics, "dyn_unc"))
    with pytest.raises(ValueError, match="window=3, but the TrainingDynamics were kept with window 2"):
        acquire(dynamics, "dyn_unc", window=3)
    with pytest.raises(ValueError, match="labels differ from the ones the TrainingDynamics were kept with"):
        acquire(dynamics, "el2n", labels=(labels + 1) % 3)
    np.testing.assert_array_equal(acquire(dynamics, "el2n", labels=labels), acquire(dynamics, "el2n"))


def _stats_arrays(members: int = 3) -> list[np.ndarray]:
    stats = EnsembleStats.from_members(random_members(np.random.default_rng(7), members, 6, 4, one_hot=False))
    return [np.array(a) for a in (stats.probability_sums, stats.entropy_sums, stats.vote_counts, stats.member_counts)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a[0].__imul__(-1), "row 0 holds a negative probability sum"),
        (lambda a: a[2].__imul__(3), "row 0 holds votes adding up to 9, but 3 members"),
        (lambda a: a[3].__imul__(0), "row 0 holds votes adding up to 3, but 0 members"),
        (lambda a: a[1].__imul__(-1), "row 0 holds an entropy sum of -"),
        (lambda a: a[1].__imul__(100), r"outside \[0, 3 log 4\]"),
        (lambda a: a[0].__imul__(2), "probabilities adding up to 6 members' worth, but 3 members"),
    ],
)
def test_from_arrays_refuses_sums_no_members_could_give(change, message):
    arrays = _stats_arrays()
    EnsembleStats.from_arrays(*arrays)  # as they are: statistics of three members
    change(arrays)
    with pytest.raises(ValueError, match=message):
        EnsembleStats.from_arrays(*arrays)


def test_one_members_disagreement_is_zero_and_said(tmp_path, capsys):
    member = random_members(np.random.default_rng(8), 1, 30, 4)
    for function in ("mutual_information", "variation_ratios"):
        with pytest.warns(SubsetsearchWarning, match=f"{function} is 0 for every sample: one member"):
            assert acquire(member, function).tolist() == [0.0] * 30  # exactly: no rounding noise to rank
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acquire(member, "entropy")  # says nothing
        acquire(random_members(np.random.default_rng(8), 2, 30, 4), "mutual_information")
    np.save(tmp_path / "m.npy", member[0])
    code, out, err = run_cli(
        ["score", str(tmp_path / "m.npy"), "-f", "mutual_information", "-b", "5", "-o", str(tmp_path / "s.csv")], capsys
    )
    assert code == 0 and "selected 5 of 30" in out
    assert err.strip().splitlines() == [
        "subsetsearch: warning: mutual_information is 0 for every sample: one member cannot disagree with itself, "
        "so a subset chosen by it is a seeded random choice; give two or more members, or use entropy"
    ]


# -- 10, 11: options that would be ignored, and config errors found before anything is written --------------------

IGNORED = [
    (
        {"dataset": "arrays", "path": "x.npy", "labels": "y.npy", "test_labels": "t.npy"},
        "data.test_labels: there is no data.test_path",
    ),
    ({"dataset": "arrays", "path": "x.npz", "labels": "y.npy"}, "data.labels: the .npz of data.path holds its labels"),
    ({"dataset": "arrays", "path": "x.npz", "on_disk": True}, "data.on_disk: the images of an .npz are read whole"),
    ({"dataset": "fashion_mnist", "test_fraction": 0.3}, "data.test_fraction: dataset fashion_mnist does not read it"),
    ({"dataset": "arrays", "path": "x.npz", "image_size": [8, 8]}, "data.image_size: dataset arrays does not read it"),
    ({"dataset": "digits", "on_disk": True}, "data.on_disk: dataset digits does not read it"),
    (
        {"dataset": "arrays", "path": "x.npz", "test_path": "t.npz", "test_fraction": 0.3},
        "data.test_fraction: data.test_path gives",
    ),
]


@pytest.mark.parametrize(("data", "message"), IGNORED)
def test_a_data_option_the_dataset_would_ignore_is_refused(data, message):
    with pytest.raises(InputError, match=message):
        parse_config({"data": data})


def test_test_classes_the_pool_lacks_and_budgets_too_small_stop_before_anything_is_written(tmp_path, capsys):
    rng = np.random.default_rng(9)
    np.savez(tmp_path / "pool.npz", x=rng.integers(0, 255, (40, 8, 8), dtype=np.uint8), y=np.arange(40) % 2)
    np.savez(tmp_path / "test.npz", x=rng.integers(0, 255, (10, 8, 8), dtype=np.uint8), y=np.arange(10) % 3)
    cases = [
        ({"data": {"dataset": "arrays", "path": str(tmp_path / "pool.npz"), "test_path": str(tmp_path / "test.npz")}},
         "the test set holds class 2, which no pool image has"),
        ({"search": {"scheme": "random", "budgets": [0.003, 0.5]}}, "search.budgets: 0.003 is 1 sample(s) of the pool"),
        ({"data": {"dataset": "arrays", "path": str(tmp_path / "one.npz")}}, "holds one image per class"),
    ]  # fmt: skip
    np.savez(tmp_path / "one.npz", x=rng.integers(0, 255, (2, 8, 8), dtype=np.uint8), y=np.array([0, 1]))
    for change, message in cases:
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump({**SMALL, **change}))
        line = _one_line(*run_cli(["run", str(config), "--run-dir", str(tmp_path / "run"), "-q"], capsys)[::2])
        assert message in line
        assert not (tmp_path / "run").exists()


# -- 12: a damaged run directory is one line, never a traceback -----------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("damaged")
    config = folder / "c.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "compare": ["random"]}))
    args = [sys.executable, "-m", "subsetsearch.cli", "run", str(config), "--run-dir", str(folder / "run"), "-q"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return config, folder / "run"


DAMAGED = [
    "config.yaml", "dataset.npz", "metrics.json", "iter_00/metrics.json", "iter_00/subset.parquet",
    "iter_01/stats.npz", "iter_01/votes.npz", "iter_01/members/run_0/done.json",
    "iter_01/members/run_0/epoch_002.safetensors", "models/build_up/model_0/done.json",
    "models/build_up/model_0/test_probs.npy", "models/random/model_0/last.safetensors",
]  # fmt: skip


@pytest.mark.parametrize("damaged", DAMAGED)
def test_every_run_directory_file_cut_short_is_one_line_or_harmless(small_run, tmp_path, capsys, damaged):
    config, finished = small_run
    run = tmp_path / "run"
    shutil.copytree(finished, run, ignore=shutil.ignore_patterns("report", "subsetsearch.lock"))
    path = run / damaged
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    for args in (["report", str(run)], ["run", str(config), "--run-dir", str(run), "-q"]):
        code, _, err = run_cli(args, capsys)
        assert "Traceback" not in err, err
        if code != 0:
            line = _one_line(code, err)
            # the file named; or, for a config cut short that still reads as YAML, the keys it lost
            assert damaged.split("/")[-1] in line or "holds a run of another config" in line, line


# -- 13, 15: detection inputs read strictly, and messages that say the true reason ----------------------------------


def _boxes(tmp_path: Path, detections: list[dict], *, bom: bool = False) -> list[str]:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 8, "height": 8} for i in (1, 2)]
    pool = {"images": images, "categories": [{"id": 1, "name": "car"}], "annotations": []}
    (tmp_path / "pool.json").write_text(json.dumps(pool))
    text = json.dumps(detections)
    (tmp_path / "m.json").write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    (tmp_path / "n.json").write_text(json.dumps([{**d, "score": 0.5} for d in detections]))
    return ["score", "--annotations", str(tmp_path / "pool.json"), str(tmp_path / "m.json"), str(tmp_path / "n.json")]


@pytest.mark.parametrize(
    ("detection", "message"),
    [
        ({"image_id": 1.5, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.9}, "lacks an integer image_id"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": True}, "has score True"),
        ({"image_id": True, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.9}, "lacks an integer image_id"),
        ({"image_id": 1, "category_id": 1, "bbox": ["0", 0, 4, 4], "score": 0.9}, "lacks an integer image_id"),
    ],
)
def test_detections_are_read_strictly(tmp_path, capsys, detection, message):
    args = _boxes(tmp_path, [detection])
    line = _one_line(*run_cli([*args, "-f", "entropy", "-b", "1", "-o", str(tmp_path / "s.csv")], capsys)[::2])
    assert message in line and not (tmp_path / "s.csv").exists()


def test_a_results_file_with_a_byte_order_mark_scores_as_without(tmp_path, capsys):
    detection = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.9}]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain, marked = _boxes(tmp_path / "a", detection), _boxes(tmp_path / "b", detection, bom=True)
    for args, out in ((plain, tmp_path / "a.csv"), (marked, tmp_path / "b.csv")):
        code, _, err = run_cli(
            [*args, "-f", "entropy", "-b", "1", "-o", str(out), "--scores-out", str(out.with_suffix(".parquet"))],
            capsys,
        )
        assert code == 0, err
    assert read_table(tmp_path / "a.parquet") == read_table(tmp_path / "b.parquet")


@pytest.mark.parametrize(
    ("stride", "message"), [("inf", "--stride must be a positive number"), ("1e-9", "give a larger --stride")]
)
def test_a_stride_that_would_make_endless_maps_is_refused(tmp_path, capsys, stride, message):
    args = _boxes(tmp_path, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.9}])
    line = _one_line(
        *run_cli([*args, "-f", "entropy", "-b", "1", "-o", str(tmp_path / "s.csv"), "--stride", stride], capsys)[::2]
    )
    assert message in line


def test_a_huge_box_is_scored_within_its_image(tmp_path, capsys):
    """A 20,000-pixel box on an 8x8 image (and one at 1e12): the work is its image's cells, and the
    score is what the rendering rule gives there (each member's probability about its score)."""
    huge = [{"image_id": 1, "category_id": 1, "bbox": [-10000, -10000, 20000, 20000], "score": 0.9},
            {"image_id": 2, "category_id": 1, "bbox": [1e12, 1e12, 1e12, 1e12], "score": 0.9}]  # fmt: skip
    args = _boxes(tmp_path, huge)
    code, _, err = run_cli(
        [
            *args,
            "-f",
            "variation_ratios",
            "-b",
            "1",
            "-o",
            str(tmp_path / "s.csv"),
            "--scores-out",
            str(tmp_path / "all.csv"),
        ],
        capsys,
    )
    assert code == 0, err
    # image 1: member m says 0.9 (> 0.5: object), member n 0.5 (not above 0.5): the votes split 1-1
    assert read_table(tmp_path / "all.csv")["score"] == [0.5, 0.0]


def test_detection_with_a_function_of_class_distributions_says_why_not(tmp_path):
    with pytest.raises(InputError, match="'margin' scores a distribution over classes"):
        parse_config({"task": "detection", "search": {"scheme": "build_up", "function": "margin"}})
    with pytest.raises(InputError, match="'el2n' needs each image's class labels"):
        parse_config({"task": "detection", "search": {"scheme": "build_up", "function": "el2n"}})


# -- issue 33: dead ends say the way out --------------------------------------------------------------------------


def test_dyn_unc_over_fewer_members_than_its_window_names_the_windows_that_work_and_one_of_them_does(tmp_path, capsys):
    import torch
    from torch.utils.data import TensorDataset

    from subsetsearch.torch import IndexedDataset, PoolScorer

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 4, generator=generator), torch.randint(0, 3, (40,), generator=generator)
    np.save(tmp_path / "y.npy", y.numpy())
    pool = IndexedDataset(TensorDataset(x, y))

    def keep(window: int | None) -> Path:
        stats = tmp_path / f"w{window}.npz"
        scorer = PoolScorer(
            pool, range(1, 6), stats, labels=y.numpy(), **({} if window is None else {"window": window})
        )
        torch.manual_seed(1)
        for epoch in range(1, 6):  # five members
            scorer.on_epoch_end(torch.nn.Linear(4, 3), epoch)
        return stats

    score = [
        "score",
        "--labels",
        str(tmp_path / "y.npy"),
        "-f",
        "el2n,dyn_unc",
        "-b",
        "0.5",
        "-o",
        str(tmp_path / "o.csv"),
    ]
    line = _one_line(*run_cli([*score, "--stats", str(keep(None))], capsys)[::2])
    assert (
        "kept with window 10 and hold 5 members, fewer than the window; "
        "keep them with PoolScorer(window=J), J from 2 to 5" in line
    )
    assert not (tmp_path / "o.csv").exists()
    code, _, err = run_cli([*score, "--stats", str(keep(5)), "--scores-out", str(tmp_path / "s.csv")], capsys)
    assert code == 0, err
    assert read_table(tmp_path / "s.csv")["dyn_unc"]  # the advice works: every sample scored


def test_a_child_that_outlives_a_killed_job_does_not_keep_its_directory_locked(tmp_path):
    """A job holding a directory's lock forks a child (as DataLoader workers are) and is killed with
    SIGKILL: the child lives on, and the directory is free for the job's resume all the same."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    from subsetsearch.internal.directories import DirectoryLock

    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from subsetsearch.internal.directories import DirectoryLock
        lock = DirectoryLock({str(tmp_path)!r}).__enter__()
        child = os.fork()
        if child == 0:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 1)
            os.dup2(null, 2)  # the test's pipes closed: only the job's other files stay open
            time.sleep(60)
            os._exit(0)
        print(child, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    child = int(done.stdout.split()[0])
    try:
        os.kill(child, 0)  # the child is alive, holding its copies of the job's files
        with DirectoryLock(tmp_path):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
