"""Bad configs: each one gets a one-line error naming the key, from the API and from the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from subsetsearch.errors import InputError
from subsetsearch.pipeline.config import PatienceSchedule, RunConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]

BAD = [
    ({"trian": {}}, "trian: unknown key"),
    ({"train": {"lrr": 0.1}}, "train.lrr: unknown key"),
    ({"train": {"epochs": "ten"}}, "train.epochs: Input should be a valid integer"),
    ({"train": {"epochs": 0}}, "train.epochs: Input should be greater than 0"),
    ({"train": {"lr": -0.1}}, "train.lr: Input should be greater than 0"),
    ({"train": {"schedule": {"kind": "cosine"}}}, "train.schedule.kind: must be 'milestones' or 'patience'"),
    ({"train": {"schedule": {"kind": "patience", "patiense": 2}}}, "train.schedule.patiense: unknown key"),
    ({"train": {"schedule": {"milestones": [6, 3]}}}, "train.schedule.milestones: must increase"),
    ({"train": {"epochs": 4, "schedule": {"milestones": [2, 6]}}}, "train.schedule.milestones: 6 is past train.epochs"),
    ({"train": {"schedule": {"kind": "patience"}}}, "train.schedule: the patience schedule needs a validation set"),
    ({"train": {"precision": "fp8"}}, "train.precision: Input should be 'auto', 'fp32' or 'bf16'"),
    ({"model": {"name": "vgg16"}}, "model.name: unknown model 'vgg16'; choose one of cnn_small, resnet18, resnet10"),
    ({"model": {"width": -4}}, "model.width: Input should be greater than 0"),
    ({"subset_model": {"model": {"name": "resnet50"}}}, "subset_model.model.name: unknown model 'resnet50'"),
    ({"search": {"budgets": [0.5, 0.25]}}, "search.budgets: the budget schedule must grow, but 0.25 follows 0.5"),
    ({"search": {"budgets": [0.25, 0.25]}}, "search.budgets: the budget schedule must grow"),
    ({"search": {"budgets": [0.25, 1.5]}}, "search.budgets '1.5' is a fraction (it has a decimal point or %) above 1"),
    ({"search": {"budgets": [0.5]}}, "search.budgets: build_up needs a random start and at least one"),
    ({"search": {"budgets": [0, 0.5]}}, "search.budgets must be positive, got '0'"),
    ({"search": {"budgets": ["lots", 0.5]}}, "search.budgets 'lots' is not a number"),
    # the two spellings whose meaning changed: 1 was the whole pool, 5000.0 a count
    ({"search": {"scheme": "full", "budgets": [1]}}, "search.budgets: 1 is now a count of one sample"),
    ({"search": {"budgets": [0.25, 5000.0]}}, "search.budgets: 5000.0 has a decimal point, so it is now a fraction"),
    ({"search": {"function": "bald"}}, "search.function: unknown acquisition function 'bald'"),
    ({"search": {"scheme": "greedy"}}, "search.scheme: Input should be"),
    ({"search": {"skip_top": 1.0}}, "search.skip_top: Input should be less than 1"),
    ({"ensemble": {"kind": "bagging"}}, "ensemble.kind: Input should be 'seeds', 'checkpoints' or 'combined'"),
    ({"ensemble": {"kind": "checkpoints", "runs": 3}}, "ensemble.runs: a 'checkpoints' ensemble uses one run"),
    ({"ensemble": {"start": 8, "stop": 4}}, "ensemble.start (8) is after ensemble.stop (4)"),
    ({"ensemble": {"stop": 30}}, "ensemble.stop: epoch 30 is past train.epochs (10)"),
    ({"data": {"dataset": "cifar10"}}, "data.dataset: Input should be"),
    ({"data": {"dataset": "arrays"}}, "data.path is required for dataset 'arrays'"),
    ({"data": {"validation_fraction": 0.7}}, "data.validation_fraction: Input should be less than 0.5"),
    ({"compare": ["random", "random"]}, "compare lists a baseline twice"),
    (
        {"ensemble": {"start": 10}},
        "search.function: mutual_information measures disagreement between members, and this ensemble has 1",
    ),
    (
        {"ensemble": {"kind": "seeds", "runs": 1}, "search": {"function": "variation_ratios"}},
        "search.function: variation_ratios measures disagreement",
    ),
    ({"compare": ["everything"]}, "compare[0]: Input should be 'random' or 'full'"),
    (
        {"search": {"scheme": "compress"}, "final_ensemble": {"start": 6}},
        "final_ensemble: scheme compress has no last acquisition step of its own",
    ),
    ({"final_ensemble": {"stop": 12}}, "final_ensemble.stop: epoch 12 is past train.epochs (10)"),
    (
        {"final_ensemble": {"start": 10}},
        "search.function: mutual_information measures disagreement between members, and final_ensemble has 1",
    ),
    (
        {"final_ensemble": {"kind": "combined", "runs": 2}, "search": {"function": "forgetting"}},
        "search.function: forgetting follows one training run's checkpoints in epoch order; use final_ensemble.kind",
    ),
    ({"search": {"scheme": "compress", "score_subset": True}}, "search.score_subset: only build_up leaves"),
    ({"search": {"scheme": "random", "skip_disagreement": True}}, "search.skip_disagreement: needs a classification"),
    (
        {"ensemble": {"start": 10}, "search": {"function": "entropy", "skip_disagreement": True}},
        "search.skip_disagreement: ensemble has 1 member, and every member disagreeing needs 2 or more",
    ),
    (["a", "list"], "the top level must be a mapping"),
]


@pytest.mark.parametrize(("config", "message"), BAD)
def test_bad_config_gets_one_line_naming_the_key(config, message):
    with pytest.raises(InputError) as error:
        parse_config(config, "c.yaml")
    text = str(error.value)
    assert text.startswith("c.yaml: ") and message in text
    assert "\n" not in text


def test_defaults_are_the_papers_training_settings():
    config = parse_config({})
    assert (config.train.lr, config.train.momentum, config.train.weight_decay) == (0.1, 0.9, 5e-4)
    assert config.search.budgets == [0.125, 0.25, 0.5]
    assert config.checkpoint_epochs() == [6, 7, 8, 9, 10]  # the second half of training: 5 members
    stop_early = parse_config({"ensemble": {"stop": 4}, "search": {"function": "entropy"}})
    assert stop_early.checkpoint_epochs() == [4]
    patience = parse_config({"data": {"validation_fraction": 0.1}, "train": {"schedule": {"kind": "patience"}}})
    assert isinstance(patience.train.schedule, PatienceSchedule)


def test_checkpoint_epochs_range_is_inclusive():
    config = parse_config(
        {"train": {"epochs": 12}, "ensemble": {"kind": "combined", "runs": 2, "start": 4, "stop": 12, "step": 4}}
    )
    assert config.checkpoint_epochs() == [4, 8, 12]


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: [1, 2\n")
    with pytest.raises(InputError, match=r"not valid YAML at line \d+"):
        load_config(path)
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_demo_config_is_valid():
    config = load_config(ROOT / "configs" / "demo.yaml")
    assert isinstance(config, RunConfig) and config.data.dataset == "fashion_mnist"
    assert config.compare == ["random", "full"]


def test_detection_config_is_valid_and_defaults_to_the_detector():
    config = load_config(ROOT / "configs" / "detection.yaml")
    assert config.task == "detection" and config.search.scheme == "auto_duplication"
    bare = parse_config({"task": "detection", "search": {"scheme": "random", "budgets": [0.5]}})
    assert bare.model.name == "centernet_unet" and bare.detection_config().images == 20000
    with pytest.raises(InputError, match="detection: only used with task: detection"):
        parse_config({"detection": {"images": 100}})
    with pytest.raises(InputError, match=r"data\.limit: task: detection sizes its set with detection\.images"):
        parse_config({"task": "detection", "data": {"limit": 100}})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nmodel: {name: vgg}\n", "model.name"),
        ("name: x\ndata: {dataset: digits}\nsearch: {budgets: [100, 5000]}\n", "exceeds the pool"),
        ("name: x\ndata: {dataset: arrays, path: /nonexistent.npz}\n", "'/nonexistent.npz' not found"),
        ("name: [x\n", "not valid YAML"),
    ],
)
def test_cli_bad_run_exits_2_with_one_line_and_writes_nothing(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "subsetsearch.cli", "run", str(path), "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("subsetsearch: error: ") and message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
