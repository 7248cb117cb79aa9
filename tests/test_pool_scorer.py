"""Scoring inside the user's own training loop (subsetsearch.torch.PoolScorer) and the Lightning callback.

The reference is the path a user takes without us: save each chosen epoch's checkpoint, load it
later, compute its logits apart from subsetsearch (own_loop.pool_logits), and hand those files to
``subsetsearch score``.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from own_loop import EPOCHS, POOL_BATCH, SCORED, Tiny, digits, new_training, pool_logits, train_epoch
from reference import direct_scores
from torch.utils.data import DataLoader, TensorDataset

from subsetsearch import EnsembleStats, acquire
from subsetsearch.cli import main
from subsetsearch.internal.ledger import Ledger, parse_poolscorer_member
from subsetsearch.torch import IndexedDataset, PoolScorer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def pool() -> IndexedDataset:
    return IndexedDataset(TensorDataset(*digits()))


def assert_same_stats(a: EnsembleStats, b: EnsembleStats) -> None:
    assert a.equals(b)


def held(stats: EnsembleStats) -> list[list]:
    """The (run, epoch) members a PoolScorer's statistics hold, by their ledger."""
    return [[run, epoch] for run, epoch in map(parse_poolscorer_member, Ledger.of(stats.metadata).members)]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def scored_afterwards(folder: Path, checkpoints: dict[int, dict]) -> tuple[EnsembleStats, list[np.ndarray]]:
    """Save the checkpoints, load each into a fresh model, dump its logits, run ``subsetsearch score``."""
    logits = []
    for epoch, weights in checkpoints.items():
        torch.save(weights, folder / f"epoch_{epoch}.pt")
        model = Tiny()
        model.load_state_dict(torch.load(folder / f"epoch_{epoch}.pt"))
        logits.append(pool_logits(model))
        np.save(folder / f"epoch_{epoch}.npy", logits[-1])
    files = [str(folder / f"epoch_{epoch}.npy") for epoch in checkpoints]
    args = [
        *files,
        "--logits",
        "-f",
        "entropy",
        "-b",
        "0.5",
        "-o",
        str(folder / "s.csv"),
        "--state",
        str(folder / "r.npz"),
    ]
    assert main(["score", *args]) == 0
    return EnsembleStats.load(folder / "r.npz"), logits


def test_scorer_equals_checkpoints_scored_afterwards(tmp_path):
    # with the scorer: no checkpoint kept
    model, optimizer, loader = new_training(seed=0)
    scorer = PoolScorer(pool(), SCORED, tmp_path / "stats.npz", batch_size=POOL_BATCH)
    added = []
    for epoch in range(1, EPOCHS + 1):
        train_epoch(model, optimizer, loader)
        added.append(scorer.on_epoch_end(model, epoch))
    assert added == [epoch in SCORED for epoch in range(1, EPOCHS + 1)]
    assert model.training  # the scorer restores the model's mode
    with_scorer = EnsembleStats.load(tmp_path / "stats.npz")
    assert held(with_scorer) == [["0", epoch] for epoch in SCORED]

    # the same run without the scorer, saving the chosen epochs' checkpoints instead
    model, optimizer, loader = new_training(seed=0)
    checkpoints = {}
    for epoch in range(1, EPOCHS + 1):
        train_epoch(model, optimizer, loader)
        if epoch in SCORED:
            checkpoints[epoch] = copy.deepcopy(model.state_dict())
    (tmp_path / "after").mkdir()
    afterwards, logits = scored_afterwards(tmp_path / "after", checkpoints)

    assert_same_stats(with_scorer, afterwards)  # bit for bit: the scorer changed no random draw of training
    assert np.all(with_scorer.member_counts == len(SCORED))
    probs = [softmax(member) for member in logits]
    np.testing.assert_allclose(with_scorer.mean_probs(), np.mean(probs, axis=0), atol=1e-6)
    expected = direct_scores(np.stack(probs))
    for function in ("entropy", "mutual_information", "variation_ratios"):
        np.testing.assert_allclose(acquire(with_scorer, function), expected[function], atol=1e-6)


def run_job(workdir: Path, kill: str | None = None, seed: int = 0) -> int:
    args = [sys.executable, str(Path(__file__).with_name("own_loop.py")), str(workdir), "--seed", str(seed)]
    return subprocess.run(args + ([] if kill is None else ["--kill", kill]), timeout=300).returncode


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> EnsembleStats:
    workdir = tmp_path_factory.mktemp("whole")
    assert run_job(workdir) == 0
    return EnsembleStats.load(workdir / "stats.npz")


@pytest.mark.parametrize("kill", ["after:3", "during:3"])
def test_a_job_killed_and_restarted_adds_no_epoch_twice(tmp_path, kill, uninterrupted):
    """SIGKILL after epoch 3's member is saved but before the job's own checkpoint (the restart trains
    epoch 3 again and must not add it again), or in the middle of epoch 3's pass over the pool."""
    assert run_job(tmp_path, kill) == -9  # SIGKILL: no cleanup ran
    saved = held(EnsembleStats.load(tmp_path / "stats.npz"))
    expected = [["seed0", 2], ["seed0", 3]] if kill == "after:3" else [["seed0", 2]]
    assert saved == expected
    assert run_job(tmp_path) == 0  # restarted: resumes from its last training checkpoint (epoch 2)
    resumed = EnsembleStats.load(tmp_path / "stats.npz")
    assert held(resumed) == [["seed0", e] for e in SCORED]
    assert np.all(resumed.member_counts == len(SCORED))
    assert_same_stats(resumed, uninterrupted)


def test_runs_of_several_seeds_merge(tmp_path):
    """Two seeds adding to one file equal two files merged by score --stats, and the mean of all six members."""
    logits = []
    for seed in (0, 1):
        model, optimizer, loader = new_training(seed)
        together = PoolScorer(pool(), SCORED, tmp_path / "together.npz", run=f"seed{seed}")
        own = PoolScorer(pool(), SCORED, tmp_path / f"seed{seed}.npz", run=f"seed{seed}")
        for epoch in range(1, EPOCHS + 1):
            train_epoch(model, optimizer, loader)
            together.on_epoch_end(model, epoch)
            own.on_epoch_end(model, epoch)
            if epoch in SCORED:
                logits.append(pool_logits(model))
                model.train()
    together = EnsembleStats.load(tmp_path / "together.npz")
    assert len(held(together)) == 6 and np.all(together.member_counts == 6)
    np.testing.assert_allclose(together.mean_probs(), np.mean([softmax(m) for m in logits], axis=0), atol=1e-6)
    common = ["-f", "mutual_information", "-b", "300", "--scores-out"]
    assert (
        main(
            [
                "score",
                "--stats",
                str(tmp_path / "together.npz"),
                *common,
                str(tmp_path / "a.csv"),
                "-o",
                str(tmp_path / "a_subset.csv"),
            ]
        )
        == 0
    )
    merged = ["--stats", str(tmp_path / "seed0.npz"), "--stats", str(tmp_path / "seed1.npz")]
    assert main(["score", *merged, *common, str(tmp_path / "b.csv"), "-o", str(tmp_path / "b_subset.csv")]) == 0
    assert (tmp_path / "a_subset.csv").read_text() == (tmp_path / "b_subset.csv").read_text()
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_score_stats_refuses_a_member_counted_twice_and_other_pools(tmp_path, capsys):
    stats = EnsembleStats(4, 3)
    stats.update(np.full((4, 3), 1 / 3))
    stats.metadata = {"epochs": [["0", 1]]}  # as PoolScorer saved its members before the ledger: still read
    stats.save(tmp_path / "a.npz")
    out = ["-f", "entropy", "-b", "2", "-o", str(tmp_path / "s.csv")]
    assert main(["score", "--stats", str(tmp_path / "a.npz"), "--stats", str(tmp_path / "a.npz"), *out]) == 2
    assert "both hold member '0/epoch_1'; each member may be counted once" in capsys.readouterr().err
    EnsembleStats(5, 3).save(tmp_path / "b.npz")
    assert main(["score", "--stats", str(tmp_path / "a.npz"), "--stats", str(tmp_path / "b.npz"), *out]) == 2
    assert "holds 5 x 3 statistics but" in capsys.readouterr().err
    np.save(tmp_path / "m.npy", np.full((4, 3), 1 / 3))
    assert main(["score", str(tmp_path / "m.npy"), "--stats", str(tmp_path / "a.npz"), *out]) == 2
    assert "give one or the other" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_rows_the_pool_did_not_yield_are_not_candidates(tmp_path):
    """A pool of only the unselected rows (build-up): the other rows hold no member and are never chosen."""
    x, y = digits()
    unselected = np.arange(0, len(x), 2)
    subset = torch.utils.data.Subset(TensorDataset(x, y, torch.arange(len(x))), unselected.tolist())
    scorer = PoolScorer(subset, [1, 2], tmp_path / "s.npz", num_samples=len(x))
    model, optimizer, loader = new_training(0)
    for epoch in (1, 2):
        train_epoch(model, optimizer, loader)
        scorer.on_epoch_end(model, epoch)
    counts = EnsembleStats.load(tmp_path / "s.npz").member_counts
    assert counts[unselected].tolist() == [2] * unselected.size and counts.sum() == 2 * unselected.size
    args = ["score", "--stats", str(tmp_path / "s.npz"), "-f", "entropy", "-b", "0.5", "-o", str(tmp_path / "o.csv")]
    assert main(args) == 0
    chosen = np.loadtxt(tmp_path / "o.csv", delimiter=",", skiprows=1)[:, 0].astype(int)
    assert chosen.size == round(0.5 * unselected.size) and np.all(chosen % 2 == 0)


def test_bad_pools_and_models_are_clear_errors_and_leave_the_statistics_unchanged(tmp_path):
    x, y = digits()
    model = Tiny()
    good = PoolScorer(pool(), [1, 2], tmp_path / "s.npz")
    assert good.on_epoch_end(model, 1)
    before = EnsembleStats.load(tmp_path / "s.npz")
    assert not good.on_epoch_end(model, 1)  # held already
    assert not good.on_epoch_end(model, 7)  # not chosen

    def fails(scorer: PoolScorer, match: str, target=model) -> None:
        with pytest.raises(ValueError, match=match):
            scorer.on_epoch_end(target, 2)
        assert_same_stats(EnsembleStats.load(tmp_path / "s.npz"), before)

    twice = TensorDataset(torch.cat([x, x[:5]]), torch.cat([torch.arange(len(x)), torch.arange(5)]))
    fails(PoolScorer(twice, [2], tmp_path / "s.npz"), "yielded a sample twice")
    fails(PoolScorer(TensorDataset(x[:100], torch.arange(100)), [2], tmp_path / "s.npz"), "earlier members scored")
    outside = TensorDataset(x, torch.arange(len(x)) + 1)
    fails(PoolScorer(outside, [2], tmp_path / "s.npz"), r"index outside \[0, 1797\)")
    nan = copy.deepcopy(model)
    with torch.no_grad():
        nan.head.bias.fill_(float("nan"))
    fails(PoolScorer(pool(), [2], tmp_path / "s.npz"), "epoch 2: logits of sample 0 are not finite", nan)
    fails(PoolScorer(pool(), [2], tmp_path / "s.npz", forward=lambda m, v: m(v)[:, :5]), "gave 5 classes")
    fails(PoolScorer(pool(), [2], tmp_path / "s.npz", forward=lambda m, v: m(v)[0]), r"outputs of shape \(10,\)")
    labels_only = TensorDataset(x, y.float())
    fails(PoolScorer(labels_only, [2], tmp_path / "s.npz"), "index must be a 1-D batch of integers")
    with pytest.raises(ValueError, match=r"must end in \.npz"):
        PoolScorer(pool(), [2], tmp_path / "s.pt")
    with pytest.raises(ValueError, match="the saved statistics hold 1797 samples but the pool has 100"):
        PoolScorer(pool(), [2], tmp_path / "s.npz", num_samples=100)
    with pytest.raises(ValueError, match="epochs is empty"):
        PoolScorer(pool(), [], tmp_path / "t.npz")
    with pytest.raises(ValueError, match="must be a torch Dataset or DataLoader"):
        PoolScorer(x.numpy(), [1], tmp_path / "t.npz")
    with pytest.raises(ValueError, match="each pool batch must be a tuple"):
        PoolScorer(DataLoader(x, batch_size=64), [1], tmp_path / "t.npz").on_epoch_end(model, 1)
    assert not (tmp_path / "t.npz").exists()


def test_an_in_memory_accumulator_and_a_dataloader_with_its_own_order(tmp_path):
    """A shuffled DataLoader and an EnsembleStats object: rows land by their index, not their order."""
    model = Tiny()
    stats = EnsembleStats(1797, 10)
    loader = DataLoader(pool(), batch_size=100, shuffle=True, generator=torch.Generator().manual_seed(3))
    scorer = PoolScorer(loader, [4], stats)
    assert scorer.on_epoch_end(model, 4) and scorer.held == [("0", 4)] and held(stats) == [["0", 4]]
    np.testing.assert_allclose(stats.mean_probs(), softmax(pool_logits(model)), atol=1e-6)


def test_indexed_dataset_appends_the_position():
    x, y = digits()
    assert len(IndexedDataset(TensorDataset(x, y))) == 1797
    item = IndexedDataset(TensorDataset(x, y))[5]
    assert len(item) == 3 and torch.equal(item[0], x[5]) and item[1] == y[5] and item[2] == 5
    single = IndexedDataset(x)[7]  # a dataset of bare inputs
    assert len(single) == 2 and torch.equal(single[0], x[7]) and single[1] == 7


lightning = pytest.importorskip("lightning.pytorch")


class LitTiny(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = Tiny()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class SaveCheckpoints(lightning.Callback):
    def __init__(self, epochs) -> None:
        self.epochs, self.saved = epochs, {}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch in self.epochs:
            self.saved[trainer.current_epoch] = copy.deepcopy(pl_module.net.state_dict())


def fit_lightning(callback) -> None:
    lightning.seed_everything(0, verbose=False)
    module = LitTiny()
    loader = DataLoader(TensorDataset(*digits()), batch_size=64, shuffle=True)
    trainer = lightning.Trainer(
        max_epochs=4,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        callbacks=[callback],
    )
    trainer.fit(module, loader)


def test_the_lightning_callback_equals_checkpoints_scored_afterwards(tmp_path):
    from subsetsearch.torch.lightning import PoolScoringCallback

    epochs = (1, 2, 3)  # Lightning counts epochs from 0
    callback = PoolScoringCallback(pool(), epochs, tmp_path / "lit.npz", batch_size=POOL_BATCH)
    fit_lightning(callback)
    saver = SaveCheckpoints(epochs)
    fit_lightning(saver)  # the same run, keeping checkpoints instead
    (tmp_path / "after").mkdir()
    afterwards, _ = scored_afterwards(tmp_path / "after", saver.saved)
    with_callback = EnsembleStats.load(tmp_path / "lit.npz")
    assert held(with_callback) == [["0", e] for e in epochs]
    assert_same_stats(with_callback, afterwards)
    assert np.all(with_callback.member_counts == 3)
