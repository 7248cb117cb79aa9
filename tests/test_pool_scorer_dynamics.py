"""PoolScorer and the Lightning callback with labels (EL2N, forgetting, ...), and training-pass
members: the outputs of the training batches themselves, with no inference pass.

The reference records the same outputs in the test's own loop (or scores saved checkpoints) and
computes the scores from the stacked [M, N, C] array (tests/reference.py).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from own_loop import POOL_BATCH, Tiny, digits, new_training, pool_logits, train_epoch
from reference import other_scores
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from subsetsearch.cli import main
from subsetsearch.dynamics import TrainingDynamics, dynamics_path
from subsetsearch.torch import IndexedDataset, PoolScorer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

EPOCHS = (1, 2, 3, 4)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def indexed_loader(seed: int) -> tuple[Tiny, torch.optim.Optimizer, DataLoader]:
    model, optimizer, _ = new_training(seed)
    x, y = digits()
    loader = DataLoader(TensorDataset(x, y, torch.arange(len(y))), batch_size=64, shuffle=True)
    return model, optimizer, loader


def train_recording(scorer: PoolScorer | None, epochs=EPOCHS) -> tuple[Tiny, dict[int, np.ndarray]]:
    """Train, handing each batch's logits to the scorer; also keep them per epoch ([N, C] by row)."""
    model, optimizer, loader = indexed_loader(0)
    recorded = {}
    for epoch in range(1, max(epochs) + 1):
        outputs = np.zeros((1797, 10), dtype=np.float32)
        model.train()
        for x, y, index in loader:
            optimizer.zero_grad()
            logits = model(x)
            nn.functional.cross_entropy(logits, y).backward()
            optimizer.step()
            outputs[index.numpy()] = logits.detach().numpy()
            if scorer is not None:
                scorer.on_train_batch(logits, index, epoch)
        if scorer is not None:
            scorer.on_epoch_end(None, epoch)
        recorded[epoch] = outputs
    return model, recorded


def test_training_pass_members_are_the_training_outputs_and_change_no_training(tmp_path):
    labels = digits()[1].numpy()
    scorer = PoolScorer(
        IndexedDataset(TensorDataset(*digits())), EPOCHS, tmp_path / "s.npz", labels=labels, window=3, members="train"
    )
    model, recorded = train_recording(scorer)
    plain, _ = train_recording(None)
    for a, b in zip(model.state_dict().values(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # recording the outputs changed nothing in the training
    members = np.stack([softmax(recorded[e]) for e in EPOCHS])
    dynamics = TrainingDynamics.load(dynamics_path(tmp_path / "s.npz"))
    for function in ("el2n", "forgetting", "dyn_unc", "variability", "hard_to_learn"):
        np.testing.assert_allclose(
            dynamics.scores(function), other_scores(members, labels, function, 3), atol=1e-6, err_msg=function
        )
    assert scorer.held == [("0", e) for e in EPOCHS]
    # and the command line reads them beside the statistics
    np.save(tmp_path / "y.npy", labels)
    args = ["score", "--stats", str(tmp_path / "s.npz"), "--labels", str(tmp_path / "y.npy"), "-f", "forgetting,el2n"]
    assert main([*args, "--window", "3", "-b", "100", "-o", str(tmp_path / "subset.csv")]) == 0


def test_eval_members_with_labels_equal_checkpoints_scored_afterwards(tmp_path):
    labels = digits()[1].numpy()
    scorer = PoolScorer(
        IndexedDataset(TensorDataset(*digits())), (2, 3, 5), tmp_path / "s.npz", labels=labels, window=2,
        batch_size=POOL_BATCH,
    )  # fmt: skip
    model, optimizer, loader = new_training(0)
    logits = []
    for epoch in range(1, 6):
        train_epoch(model, optimizer, loader)
        scorer.on_epoch_end(model, epoch)
        if epoch in (2, 3, 5):
            logits.append(pool_logits(copy.deepcopy(model)))
    members = np.stack([softmax(member) for member in logits])
    dynamics = TrainingDynamics.load(dynamics_path(tmp_path / "s.npz"))
    for function in ("el2n", "forgetting", "dyn_unc"):
        np.testing.assert_allclose(dynamics.scores(function), other_scores(members, labels, function, 2), atol=1e-6)


def test_several_runs_merge_for_order_free_functions_and_not_for_ordered_ones(tmp_path, capsys):
    labels = digits()[1].numpy()
    np.save(tmp_path / "y.npy", labels)
    pool = IndexedDataset(TensorDataset(*digits()))
    logits = []
    for seed in (0, 1):
        scorer = PoolScorer(
            pool, (1, 2), tmp_path / f"seed{seed}.npz", run=f"seed{seed}", labels=labels, batch_size=POOL_BATCH
        )
        model, optimizer, loader = new_training(seed)
        for epoch in (1, 2):
            train_epoch(model, optimizer, loader)
            scorer.on_epoch_end(model, epoch)
            logits.append(pool_logits(copy.deepcopy(model)))
    stats = ["--stats", str(tmp_path / "seed0.npz"), "--stats", str(tmp_path / "seed1.npz")]
    common = [*stats, "--labels", str(tmp_path / "y.npy"), "-b", "10", "-o", str(tmp_path / "s.csv")]
    assert main(["score", *common, "-f", "el2n", "--scores-out", str(tmp_path / "all.csv")]) == 0
    import pyarrow.csv

    scores = pyarrow.csv.read_csv(tmp_path / "all.csv").to_pydict()["score"]
    members = np.stack([softmax(member) for member in logits])
    np.testing.assert_allclose(scores, other_scores(members, labels, "el2n"), atol=1e-6)
    capsys.readouterr()
    assert main(["score", *common, "-f", "forgetting"]) == 2
    assert "hold members of several runs; forgetting and dyn_unc follow one run" in capsys.readouterr().err


def test_a_restarted_scorer_completes_what_the_label_statistics_lack(tmp_path):
    """Statistics saved without label statistics (an older job): a restart with labels adds them."""
    labels = digits()[1].numpy()
    pool = IndexedDataset(TensorDataset(*digits()))
    model, optimizer, loader = new_training(0)
    first = PoolScorer(pool, (1, 2), tmp_path / "s.npz", batch_size=POOL_BATCH)
    train_epoch(model, optimizer, loader)
    first.on_epoch_end(model, 1)
    again = PoolScorer(pool, (1, 2), tmp_path / "s.npz", batch_size=POOL_BATCH, labels=labels, window=2)
    assert again.on_epoch_end(model, 1)  # the statistics hold epoch 1; the label statistics did not
    assert again.held == [("0", 1)]
    dynamics = TrainingDynamics.load(dynamics_path(tmp_path / "s.npz"))
    assert dynamics.member_counts.tolist() == [1] * 1797


def test_training_pass_misuse_is_a_clear_error(tmp_path):
    labels = digits()[1].numpy()
    pool = IndexedDataset(TensorDataset(*digits()))
    eval_scorer = PoolScorer(pool, (1,), tmp_path / "e.npz")
    with pytest.raises(ValueError, match="make the PoolScorer with members='train'"):
        eval_scorer.on_train_batch(torch.zeros(2, 10), torch.tensor([0, 1]), 1)
    scorer = PoolScorer(pool, (1,), tmp_path / "t.npz", labels=labels, members="train")
    with pytest.raises(ValueError, match="epoch 1: no training batch was recorded"):
        scorer.on_epoch_end(None, 1)
    scorer.on_train_batch(torch.zeros(2, 10), torch.tensor([0, 1]), 1)
    with pytest.raises(ValueError, match="yielded a sample twice in one pass"):
        scorer.on_train_batch(torch.zeros(2, 10), torch.tensor([1, 2]), 1)
    with pytest.raises(ValueError, match=r"labels must have shape \(1797,\)"):
        PoolScorer(pool, (1,), tmp_path / "x.npz", labels=labels[:5])
    with pytest.raises(ValueError, match="members must be 'eval' or 'train'"):
        PoolScorer(pool, (1,), tmp_path / "x.npz", members="checkpoints")
    scorer.on_train_batch(torch.zeros(1795, 10), torch.arange(2, 1797), 1)
    assert scorer.on_epoch_end(None, 1)
    with pytest.raises(ValueError, match="the statistics hold members='train' members"):
        PoolScorer(pool, (1,), tmp_path / "t.npz")


lightning = pytest.importorskip("lightning.pytorch")


class LitTinyLogits(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = Tiny()
        self.recorded: dict[int, np.ndarray] = {}

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y, index = batch
        logits = self(x)
        outputs = self.recorded.setdefault(self.current_epoch, np.zeros((1797, 10), dtype=np.float32))
        outputs[index.numpy()] = logits.detach().numpy()
        return {"loss": nn.functional.cross_entropy(logits, y), "logits": logits}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def test_the_lightning_callback_records_training_pass_members(tmp_path):
    from subsetsearch.torch.lightning import PoolScoringCallback

    labels = digits()[1].numpy()
    x, y = digits()
    callback = PoolScoringCallback(
        IndexedDataset(TensorDataset(x, y)), (1, 2, 3), tmp_path / "lit.npz", labels=labels, window=2, members="train"
    )
    lightning.seed_everything(0, verbose=False)
    module = LitTinyLogits()
    loader = DataLoader(TensorDataset(x, y, torch.arange(len(y))), batch_size=64, shuffle=True)
    trainer = lightning.Trainer(
        max_epochs=4, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, deterministic=True, callbacks=[callback],
    )  # fmt: skip
    trainer.fit(module, loader)
    members = np.stack([softmax(module.recorded[e]) for e in (1, 2, 3)])
    dynamics = TrainingDynamics.load(dynamics_path(tmp_path / "lit.npz"))
    np.testing.assert_allclose(dynamics.scores("forgetting"), other_scores(members, labels, "forgetting"), atol=0)
    np.testing.assert_allclose(dynamics.scores("el2n"), other_scores(members, labels, "el2n"), atol=1e-6)
