"""Trainer pieces checked against hand-derived answers: models, augmentation, schedules, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from subsetsearch.errors import InputError
from subsetsearch.train import trainer
from subsetsearch.train.models import MODELS, build_model
from subsetsearch.train.settings import MODEL_NAMES, MilestoneSchedule, ModelConfig, PatienceSchedule, TrainConfig


def _conv(cin, cout, k):
    return cin * cout * k * k


def _bn(c):
    return 2 * c  # weight and bias (running stats are buffers, not parameters)


def _resnet_parameters(blocks, width, cin=3, classes=10):
    """Parameter count of the CIFAR ResNet written out layer by layer from the paper's description."""
    total = _conv(cin, width, 3) + _bn(width)
    c = width
    for stage, n in enumerate(blocks):
        out = width * 2**stage
        for _b in range(n):
            total += _conv(c, out, 3) + _bn(out) + _conv(out, out, 3) + _bn(out)
            if c != out:  # projection shortcut where the shape changes
                total += _conv(c, out, 1) + _bn(out)
            c = out
    return total + c * classes + classes


def test_resnet18_has_the_standard_cifar_parameter_count():
    model = build_model("resnet18", in_channels=3, num_classes=10)
    count = sum(p.numel() for p in model.parameters())
    assert count == 11_173_962  # the well-known count of the CIFAR ResNet-18
    assert count == _resnet_parameters((2, 2, 2, 2), 64)


@pytest.mark.parametrize("width", [4, 16])
def test_resnet10_is_resnet18_less_one_block_per_stage(width):
    model = build_model("resnet10", in_channels=1, num_classes=7, width=width)
    assert sum(p.numel() for p in model.parameters()) == _resnet_parameters((1, 1, 1, 1), width, cin=1, classes=7)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 4 * 2  # stem + two per stage (ResNet-18: 1 + 4 * 4)


def test_cnn_small_parameters_and_shapes():
    w = 16
    model = build_model("cnn_small", in_channels=1, num_classes=10, width=w)
    expected = _conv(1, w, 3) + _bn(w) + _conv(w, 2 * w, 3) + _bn(2 * w) + _conv(2 * w, 4 * w, 3) + _bn(4 * w)
    assert sum(p.numel() for p in model.parameters()) == expected + 4 * w * 9 * 10 + 10  # 3×3 pooled map
    for size in (8, 28, 32):
        assert model(torch.zeros(3, 1, size, size)).shape == (3, 10)


def test_config_model_names_are_the_built_models():
    # settings.py lists the names without importing torch (configs validate before torch loads)
    assert MODEL_NAMES == tuple(MODELS)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", 3, 10)


@settings(max_examples=30, deadline=None)
@given(padding=st.integers(0, 3), seed=st.integers(0, 2**31), flip=st.booleans())
def test_augment_returns_a_window_of_the_padded_image_maybe_flipped(padding, seed, flip):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(1, 255, size=(6, 2, 5, 7), dtype=np.uint8))
    out = trainer.augment(x, padding, flip, torch.Generator().manual_seed(seed))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    for i in range(len(x)):
        windows = [
            padded[i, :, dy : dy + 5, dx : dx + 7] for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
        ]
        candidates = windows + ([w[..., ::-1] for w in windows] if flip else [])
        assert any(np.array_equal(out[i].numpy(), w) for w in candidates)


def test_augment_flips_about_half():
    x = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).repeat(1000, 1, 1, 1)
    out = trainer.augment(x, 0, True, torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] == 3).sum().item()
    assert 430 < flipped < 570  # binomial(1000, 0.5): 4.4 standard deviations either side


def test_epoch_order_honours_multiplicities_and_seed():
    rows = np.repeat(np.array([3, 7, 9]), [1, 3, 2])
    order = trainer.epoch_order(rows, seed=5, epoch=1, batch_size=4)
    assert sorted(order.tolist()) == [3, 7, 7, 7, 9, 9]
    assert np.array_equal(order, trainer.epoch_order(rows, seed=5, epoch=1, batch_size=4))
    orders = {tuple(trainer.epoch_order(rows, seed=5, epoch=e, batch_size=4)) for e in range(1, 20)}
    assert len(orders) > 1  # each epoch shuffles anew
    assert len(trainer.epoch_order(np.arange(9), 0, 1, batch_size=4)) == 8  # a last batch of one is dropped


def test_default_milestones_are_half_and_three_quarters():
    assert TrainConfig(epochs=8).milestones() == [4, 6]
    assert TrainConfig(epochs=6).milestones() == [3, 5]  # 4.5 rounds up
    assert TrainConfig(epochs=1).milestones() == []
    assert TrainConfig(epochs=10, schedule=MilestoneSchedule(milestones=[3])).milestones() == [3]


def test_patience_schedule_drops_and_stops_as_specified():
    config = TrainConfig(epochs=50, schedule=PatienceSchedule(kind="patience", patience=2))
    meta = trainer.new_run_state(0.1)
    # epoch: 1    2    3    4    5    6    7    8    9    10   11
    curve = [0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    lrs, stopped_at = [], None
    for epoch, acc in enumerate(curve, start=1):
        trainer._advance_schedule(meta, {"val_accuracy": acc}, epoch, config)
        lrs.append(round(meta["lr"], 6))
        if meta["stopped"]:
            stopped_at = epoch
            break
    # no gain at epochs 3 and 4 -> drop after epoch 4; the drop gains at 5; no gain 6, 7 -> drop after 7;
    # that drop brings no gain for 2P = 4 epochs (8..11) -> stop after epoch 11.
    assert lrs == [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001, 0.001]
    assert stopped_at == 11
    assert meta["best_epoch"] == 5


def test_stopped_on_patience_replays_the_schedule_by_hand():
    config = TrainConfig(epochs=50, schedule=PatienceSchedule(kind="patience", patience=2))
    # the hand-derived curve above stops after epoch 11 (2P = 4 epochs after a drop without gain)
    curve = [0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    history = [{"epoch": e, "val_accuracy": a} for e, a in enumerate(curve, start=1)]
    assert trainer.stopped_on_patience(history, config)
    # cut after epoch 10 (a cap of 10 epochs): the stop had not come yet
    assert not trainer.stopped_on_patience(history[:10], config)
    # a gain at epoch 11 restarts the count: not stopped
    assert not trainer.stopped_on_patience([*history[:10], {"epoch": 11, "val_accuracy": 0.8}], config)
    # a milestone schedule never stops on patience
    assert not trainer.stopped_on_patience(history, TrainConfig(epochs=11))


def test_stopped_on_patience_agrees_with_what_a_run_did(tmp_path):
    # a run capped far above its stop ends on patience; the same run capped one epoch short of that
    # stop ends on the cap: the replay tells the two apart from their histories alone
    data, y = _tiny_problem()
    validation, _ = _tiny_problem(n=48, seed=1)
    schedule = PatienceSchedule(kind="patience", patience=1)
    long = _network(epochs=60, schedule=schedule)
    record = trainer.train_run(
        trainer.TrainSpec(tmp_path / "long", np.arange(len(y)), seed=0), long, data, validation=validation
    )
    stopped_after = len(record.history)
    # patience 1: a drop needs one epoch without gain and the stop two more, so at least 3 epochs
    assert 3 <= stopped_after < 60 and trainer.stopped_on_patience(record.history, long.train)
    short = _network(epochs=stopped_after - 1, schedule=schedule)
    capped = trainer.train_run(
        trainer.TrainSpec(tmp_path / "short", np.arange(len(y)), seed=0), short, data, validation=validation
    )
    assert len(capped.history) == stopped_after - 1
    assert not trainer.stopped_on_patience(capped.history, short.train)


def _tiny_problem(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.integers(0, 60, size=(n, 1, 8, 8)) + 60 * y[:, None, None, None]).astype(np.uint8)
    mean, std = trainer.channel_stats(x)
    return trainer.TensorData.build(x, y, mean, std, torch.device("cpu")), y


def _network(epochs=4, **train):
    config = TrainConfig(epochs=epochs, batch_size=16, **train)
    return trainer.Network(ModelConfig(name="cnn_small", width=4), config, 1, 3, torch.device("cpu"))


def test_channel_stats_match_numpy():
    x = np.random.default_rng(1).integers(0, 256, size=(50, 3, 4, 5), dtype=np.uint8)
    mean, std = trainer.channel_stats(x)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=(0, 2, 3)), rtol=1e-5)


def test_training_learns_a_separable_problem(tmp_path):
    data, y = _tiny_problem()
    network = _network(epochs=6)
    spec = trainer.TrainSpec(tmp_path / "run", np.arange(len(y)), seed=0, save_last=True)
    record = trainer.train_run(spec, network, data)
    net = network.build(0)
    trainer.load_weights(net, tmp_path / "run" / "last.safetensors")
    probs = trainer.predict(network, net, data)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert trainer.accuracy(probs, y) > 0.9  # chance is 1/3
    assert record.history[-1]["train_loss"] < record.history[0]["train_loss"]
    assert [h["lr"] for h in record.history] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001])


def test_on_logits_sees_every_training_row_once_per_epoch_and_leaves_training_alone(tmp_path):
    data, y = _tiny_problem()
    rows = np.arange(0, len(y), 2)  # a subset: the callback's index is rows of ``data``
    network = _network(epochs=2)
    seen = []

    def on_logits(logits, index):
        assert not logits.requires_grad and logits.shape == (len(index), 3)
        seen.append((logits.clone(), index.clone()))

    loss = trainer.classification_loss(network, data, on_logits=on_logits)
    for folder, batch_loss in (("plain", None), ("watched", loss)):
        spec = trainer.TrainSpec(tmp_path / folder, rows, seed=3, save_last=True)
        trainer.train_run(spec, network, data, batch_loss=batch_loss)
    per_epoch = len(seen) // 2
    assert len(seen) == 2 * per_epoch == 2 * -(-len(rows) // 16)
    for epoch in range(2):
        index = torch.cat([i for _, i in seen[epoch * per_epoch : (epoch + 1) * per_epoch]])
        assert sorted(index.tolist()) == rows.tolist()
    # the loss the trainer used is the cross-entropy of the logits the callback saw
    net = network.build(0)
    logits_seen = []
    index = torch.as_tensor(rows[:16])
    value = trainer.classification_loss(network, data, on_logits=lambda lo, i: logits_seen.append(lo))(
        net, data.images(index), index, torch.Generator().manual_seed(0)
    )
    labels = torch.as_tensor(y[rows[:16]])
    expected = -torch.log_softmax(logits_seen[0].double(), 1)[torch.arange(16), labels].mean()
    assert float(value.detach()) == pytest.approx(float(expected), rel=1e-5)
    # watching changes nothing: the same seed gives the same weights
    plain, watched = network.build(0), network.build(0)
    trainer.load_weights(plain, tmp_path / "plain" / "last.safetensors")
    trainer.load_weights(watched, tmp_path / "watched" / "last.safetensors")
    for a, b in zip(plain.state_dict().values(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_run_stopped_mid_epoch_resumes_to_the_same_weights(tmp_path, precision):
    """On the same machine a resumed run is bit for bit the uninterrupted one, in both precisions
    (bf16 is forced: emulated where the CPU lacks bf16 instructions)."""
    data, y = _tiny_problem()
    network = _network(epochs=5, augment={"crop_padding": 1, "flip": True}, precision=precision)
    assert network.precision == precision
    rows = np.repeat(np.arange(len(y)), 1 + np.arange(len(y)) % 2)  # a multiset

    def spec(name: str) -> trainer.TrainSpec:
        return trainer.TrainSpec(tmp_path / name, rows, seed=3, save_epochs=frozenset({2, 4}), save_last=True)

    whole = trainer.train_run(spec("whole"), network, data)

    def die(what, done, total):
        if what.startswith("epoch 3/") and done == 2:
            raise _Killed

    with pytest.raises(_Killed):
        trainer.train_run(spec("cut"), network, data, progress=die)
    assert not (tmp_path / "cut" / "done.json").exists()
    resumed = trainer.train_run(spec("cut"), network, data)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    for name in ("epoch_002", "epoch_004", "last"):
        a = trainer.load_file(str(tmp_path / "whole" / f"{name}.safetensors"))
        b = trainer.load_file(str(tmp_path / "cut" / f"{name}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    # a finished run is not trained again
    again = trainer.train_run(spec("cut"), network, data, progress=die)
    assert again.history == resumed.history


def test_keep_best_stores_the_best_validation_epoch(tmp_path):
    data, _y = _tiny_problem()
    network = _network(epochs=4)
    spec = trainer.TrainSpec(tmp_path / "r", np.arange(64), seed=0, keep_best=True, save_epochs=frozenset(range(1, 5)))
    record = trainer.train_run(spec, network, data, validation=data)
    accs = [h["val_accuracy"] for h in record.history]
    assert record.best_epoch == 1 + int(np.argmax(accs))  # first of equal bests
    best = trainer.load_file(str(tmp_path / "r" / "best.safetensors"))
    same = trainer.load_file(str(tmp_path / "r" / f"epoch_{record.best_epoch:03d}.safetensors"))
    assert all(torch.equal(best[k], same[k]) for k in best)


def test_training_on_one_sample_is_refused(tmp_path):
    data, _ = _tiny_problem()
    with pytest.raises(InputError, match="raise the budget"):
        trainer.train_run(trainer.TrainSpec(tmp_path / "r", np.array([1]), seed=0), _network(), data)


def test_bf16_only_where_asked_or_on_cuda():
    cpu = torch.device("cpu")
    assert trainer.use_bf16(TrainConfig(precision="bf16"), cpu)
    assert not trainer.use_bf16(TrainConfig(precision="fp32"), cpu)
    assert not trainer.use_bf16(TrainConfig(), cpu)  # auto: fp32 on every CPU, whatever its instructions
    assert trainer.Network(ModelConfig(), TrainConfig(), 1, 3, cpu).precision == "fp32"
    assert trainer.Network(ModelConfig(), TrainConfig(precision="bf16"), 1, 3, cpu).precision == "bf16"


def test_channels_last_is_kept_off_where_torch_corrupts_memory():
    cpu = torch.device("cpu")
    narrow = trainer.Network(ModelConfig(name="resnet10", width=4), TrainConfig(), 1, 10, cpu)
    wide = trainer.Network(ModelConfig(name="resnet10", width=8), TrainConfig(), 1, 10, cpu)
    small = trainer.Network(ModelConfig(name="cnn_small", width=2), TrainConfig(), 1, 10, cpu)
    assert not narrow.channels_last and wide.channels_last and small.channels_last
    off = trainer.Network(ModelConfig(name="cnn_small"), TrainConfig(channels_last=False), 1, 10, cpu)
    assert not off.channels_last
