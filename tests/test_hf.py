"""The Hugging Face Trainer's callback (subsetsearch.hf) on a small ViT built from its config (no
download) and scikit-learn's digits.

The references are the paths a user takes without us: the same training run keeping each chosen
epoch's weights, scored afterwards by hand and handed to ``subsetsearch score``; and, for the
training-pass members, a ``Trainer`` whose ``compute_loss`` (the Trainer's own extension point)
keeps each training batch's logits.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from subsetsearch import EnsembleStats
from subsetsearch.cli import main
from subsetsearch.dynamics import TrainingDynamics

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

EPOCHS = 4
CHOSEN = (2, 3, 4)  # the Trainer counts epochs from 1
POOL_BATCH = 256


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None], torch.tensor(digits.target)


X, Y = _digits()


class Items(Dataset):
    """Digits as a Hugging Face image model takes them, each with its pool index."""

    def __len__(self) -> int:
        return len(Y)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": X[i], "labels": Y[i], "pool_index": i}


def _vit() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=8,
        patch_size=2,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=10,
    )
    return transformers.ViTForImageClassification(config)


def _arguments(tmp_path, **changes) -> transformers.TrainingArguments:
    settings = {
        "output_dir": str(tmp_path / "out"),
        "num_train_epochs": EPOCHS,
        "per_device_train_batch_size": 64,
        "learning_rate": 1e-3,
        "seed": 0,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "logging_strategy": "no",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        **changes,
    }
    return transformers.TrainingArguments(**settings)


def _train(tmp_path, callbacks, trainer_class=None, **changes) -> torch.nn.Module:
    model = _vit()
    trainer_class = trainer_class or transformers.Trainer
    trainer_class(model=model, args=_arguments(tmp_path, **changes), train_dataset=Items(), callbacks=callbacks).train()
    return model


class KeepWeights(transformers.TrainerCallback):
    """The reference run: the chosen epochs' weights, copied at their end."""

    def __init__(self) -> None:
        self.saved: dict[int, dict] = {}

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if round(state.epoch) in CHOSEN:
            self.saved[round(state.epoch)] = copy.deepcopy(model.state_dict())


class KeepTrainingLogits(transformers.Trainer):
    """The reference of a training-pass member: each training batch's logits and pool index, kept by
    ``compute_loss``."""

    kept: ClassVar[list[tuple[int, np.ndarray, np.ndarray]]] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        index = inputs.pop("pool_index")
        outputs = model(**inputs)
        self.kept.append((int(self.state.epoch) + 1, outputs.logits.detach().numpy().copy(), index.numpy()))
        return (outputs.loss, outputs) if return_outputs else outputs.loss


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@torch.inference_mode()
def _pool_logits(weights: dict) -> np.ndarray:
    model = _vit()
    model.load_state_dict(weights)
    model.eval()
    return np.concatenate(
        [model(pixel_values=X[s : s + POOL_BATCH]).logits.numpy() for s in range(0, len(X), POOL_BATCH)]
    )


def test_the_callback_equals_the_chosen_epochs_scored_afterwards_and_leaves_training_alone(tmp_path):
    from subsetsearch.hf import PoolScoringCallback

    callback = PoolScoringCallback(Items(), CHOSEN, tmp_path / "hf.npz", labels=Y.numpy(), batch_size=POOL_BATCH)
    scored = _train(tmp_path, [callback])
    keeper = KeepWeights()
    plain = _train(tmp_path, [keeper])  # the same run without the callback, keeping weights instead
    assert _same_weights(scored, plain)  # bit for bit: the callback changed nothing of the training
    assert callback.scorer.held == [("0", e) for e in CHOSEN]

    files = []
    for epoch, weights in sorted(keeper.saved.items()):
        files.append(str(tmp_path / f"epoch_{epoch}.npy"))
        np.save(files[-1], _pool_logits(weights))
    state = tmp_path / "after.npz"
    scores = ["score", *files, "--logits", "-f", "entropy", "-b", "0.5", "-o", str(tmp_path / "s.csv")]
    assert main([*scores, "--state", str(state)]) == 0
    assert EnsembleStats.load(tmp_path / "hf.npz").equals(EnsembleStats.load(state))
    assert np.all(EnsembleStats.load(tmp_path / "hf.npz").member_counts == len(CHOSEN))
    # the label statistics (EL2N, forgetting, Dyn-Unc) follow the same members, in epoch order
    dynamics = TrainingDynamics.load(tmp_path / "hf.dynamics.npz")
    reference = TrainingDynamics(Y.numpy(), num_classes=10)
    for epoch, weights in sorted(keeper.saved.items()):
        reference.update(_pool_logits(weights), index=np.arange(len(Y)), position=epoch, from_logits=True)
    np.testing.assert_array_equal(dynamics.scores("el2n"), reference.scores("el2n"))
    np.testing.assert_array_equal(dynamics.scores("forgetting"), reference.scores("forgetting"))


def test_training_pass_members_are_the_logits_of_the_training_batches_themselves(tmp_path):
    from subsetsearch.hf import PoolScoringCallback

    callback = PoolScoringCallback(Items(), CHOSEN, tmp_path / "train.npz", members="train", labels=Y.numpy())
    scored = _train(tmp_path, [callback])
    KeepTrainingLogits.kept = []
    reference = _train(tmp_path, [], trainer_class=KeepTrainingLogits)
    assert _same_weights(scored, reference) and _same_weights(scored, _train(tmp_path, []))

    expected = EnsembleStats(len(Y), 10)
    for epoch in CHOSEN:
        batches = [(logits, index) for e, logits, index in KeepTrainingLogits.kept if e == epoch]
        index = np.concatenate([i for _, i in batches])
        assert np.array_equal(np.sort(index), np.arange(len(Y)))  # every row once an epoch
        member = EnsembleStats(len(Y), 10)
        member.update(np.concatenate([lo for lo, _ in batches]), index=index, from_logits=True)
        expected.merge(member)
    got = EnsembleStats.load(tmp_path / "train.npz")
    np.testing.assert_array_equal(got.member_counts, expected.member_counts)
    np.testing.assert_array_equal(got.mean_probs(), expected.mean_probs())  # each row: the same sums, in epoch order


def test_a_job_resumed_from_a_checkpoint_adds_no_epoch_twice(tmp_path):
    from subsetsearch.hf import PoolScoringCallback

    def callback() -> PoolScoringCallback:
        return PoolScoringCallback(Items(), CHOSEN, tmp_path / "hf.npz", batch_size=POOL_BATCH)

    _train(tmp_path, [callback()], save_strategy="epoch")
    whole = EnsembleStats.load(tmp_path / "hf.npz")
    checkpoint = sorted((tmp_path / "out").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[2]
    resumed = callback()
    model = _vit()
    trainer = transformers.Trainer(
        model=model, args=_arguments(tmp_path, save_strategy="no"), train_dataset=Items(), callbacks=[resumed]
    )
    trainer.train(resume_from_checkpoint=str(checkpoint))  # epochs 4 again: held already
    assert resumed.scorer.held == [("0", e) for e in CHOSEN]
    assert EnsembleStats.load(tmp_path / "hf.npz").equals(whole)


@pytest.mark.parametrize(
    ("changes", "options", "message"),
    [
        (
            {"remove_unused_columns": True},
            {"members": "train"},
            "set TrainingArguments\\(remove_unused_columns=False\\)",
        ),
        ({}, {"members": "train", "index_key": "row"}, "a training batch has no 'row'"),
    ],
)
def test_a_training_pass_without_the_pool_index_says_how_to_keep_it(tmp_path, changes, options, message):
    from subsetsearch.hf import PoolScoringCallback

    callback = PoolScoringCallback(Items(), CHOSEN, tmp_path / "x.npz", **options)
    with pytest.raises(ValueError, match=message):
        _train(tmp_path, [callback], num_train_epochs=2, **changes)
    assert not (tmp_path / "x.npz").exists()
