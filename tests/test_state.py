"""The one scoring state (``subsetsearch.state``): its save order, its save policy, a kill between two
parts, and the directory it claims (the marker written first and checked always, the lock)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from reference import random_members

import subsetsearch.internal.ledger as ledger_module
from subsetsearch.dynamics import TrainingDynamics
from subsetsearch.errors import InputError
from subsetsearch.internal.directories import LOCK, MARKER, ClaimedDirectory
from subsetsearch.internal.ledger import Ledger
from subsetsearch.state import (
    DynamicsPart,
    ImageScoresPart,
    MemberVotes,
    ScoringState,
    StatsPart,
    VotesPart,
)
from subsetsearch.stats import EnsembleStats

N, C = 12, 3


def _parts(folder: Path) -> tuple[StatsPart, VotesPart, DynamicsPart]:
    labels = np.arange(N) % C
    stats = StatsPart.open(folder / "stats.npz", num_samples=N, num_classes=C)
    votes = VotesPart.open(folder / "votes.npz", rows=np.arange(N), order=["a", "b"], held=stats)
    dynamics = DynamicsPart.open(folder / "dynamics.npz", labels=labels, num_classes=C, window=2, ordered=True)
    return stats, votes, dynamics


def _add(state: ScoringState, parts, name: str, member: np.ndarray, position: int) -> None:
    """A whole member into every part that lacks it, as a driver adds a unit."""
    stats, votes, dynamics = parts
    lacking = state.lacking(name)
    if stats in lacking:
        stats.stats.update(member)
        votes.set(name, slice(None), np.argmax(member, axis=1).astype(np.uint16))
        state.record(stats, name)
    if dynamics in lacking:
        dynamics.dynamics.update(member, position=position)
        state.record(dynamics, name)


@pytest.mark.parametrize("given", [(0, 1, 2), (2, 1, 0), (1, 0, 2)])
def test_a_save_writes_label_statistics_then_votes_then_statistics(tmp_path, monkeypatch, given):
    written = []
    for kind in (StatsPart, VotesPart, DynamicsPart):
        original = kind._write
        monkeypatch.setattr(kind, "_write", lambda self, o=original, k=kind: (written.append(k.__name__), o(self)))
    parts = _parts(tmp_path)
    state = ScoringState(*(parts[i] for i in given), state_elements=N * C)
    _add(state, parts, "a", random_members(np.random.default_rng(0), 1, N, C)[0], 0)
    state.save()
    assert written == ["DynamicsPart", "VotesPart", "StatsPart"]
    written.clear()
    state.save()  # nothing changed since: nothing is written again
    assert written == []


def test_a_kill_between_two_parts_is_resumed_for_the_lacking_part_only(tmp_path, monkeypatch):
    members = random_members(np.random.default_rng(1), 2, N, C)
    parts = _parts(tmp_path)
    state = ScoringState(*parts, state_elements=N * C)
    _add(state, parts, "a", members[0], 0)
    state.save()
    _add(state, parts, "b", members[1], 1)

    def killed(self):
        raise KeyboardInterrupt  # the job dies after the label statistics and votes are written

    monkeypatch.setattr(StatsPart, "_write", killed)
    with pytest.raises(KeyboardInterrupt):
        state.save()
    monkeypatch.undo()
    parts = _parts(tmp_path)  # a new job resumes from the files
    state = ScoringState(*parts, state_elements=N * C)
    stats, votes, _dynamics = parts
    assert state.lacking("a") == [] and state.lacking("b") == [stats]  # only the statistics lack b
    assert sorted(votes.votes.by_name) == ["a"]  # votes kept only for what the statistics hold
    _add(state, parts, "b", members[1], 1)
    state.save()
    again = _parts(tmp_path)
    assert again[0].stats.equals(EnsembleStats.from_members(members))
    assert Ledger.of(again[2].dynamics.metadata).members == ["a", "b"]
    whole = TrainingDynamics(np.arange(N) % C, num_classes=C, window=2, ordered=True)
    for position, member in enumerate(members):
        whole.update(member, position=position)
    assert again[2].dynamics.equals(whole)
    with np.load(tmp_path / "votes.npz") as saved:
        assert saved["names"].tolist() == ["a", "b"]
        assert np.array_equal(saved["votes"], np.argmax(members, axis=2))


def test_a_unit_is_never_counted_twice(tmp_path):
    parts = _parts(tmp_path)
    state = ScoringState(*parts, state_elements=N * C)
    state.record(parts[0], "a")
    with pytest.raises(ValueError, match="the ledger holds 'a'"):
        state.record(parts[0], "a")


def test_the_save_policy_saves_small_states_after_every_unit_and_large_ones_on_a_clock(tmp_path, monkeypatch):
    small = ScoringState(StatsPart.open(tmp_path / "s.npz", num_samples=N, num_classes=C), state_elements=1 << 24)
    assert small.checkpoint() and small.checkpoint()
    large = ScoringState(StatsPart.open(tmp_path / "l.npz", num_samples=N, num_classes=C), state_elements=(1 << 24) + 1)
    assert not large.checkpoint()  # 30 s have not passed
    assert not (tmp_path / "l.npz").exists()
    started = large.autosave.last
    large.save(large.parts[:0])  # a save of some parts only (a shard leaving memory) keeps the clock
    assert large.autosave.last == started
    large.save()
    assert large.autosave.last > started and (tmp_path / "l.npz").is_file()
    monkeypatch.setattr(ledger_module, "SAVE_INTERVAL_S", 0.0)
    clocked = ScoringState(StatsPart.open(tmp_path / "c.npz", num_samples=N, num_classes=C), state_elements=1 << 30)
    assert clocked.checkpoint() and (tmp_path / "c.npz").is_file()


def test_image_scores_start_over_when_made_from_other_inputs_and_name_an_unreadable_file(tmp_path):
    path = tmp_path / "progress.npz"
    part = ImageScoresPart.open(path, names=("entropy",), num_images=5, metadata={"members": [1]})
    state = ScoringState(part, state_elements=5, num_shards=2)
    part.set(slice(0, 3), {"entropy": np.arange(3.0)})
    state.record(part, "*", 0)
    state.save()
    same = ImageScoresPart.open(path, names=("entropy",), num_images=5, metadata={"members": [1]})
    assert same.ledger.pairs == {("*", 0)} and same.columns["entropy"][:3].tolist() == [0.0, 1.0, 2.0]
    other = ImageScoresPart.open(path, names=("entropy",), num_images=5, metadata={"members": [2]})
    assert other.ledger.pairs == set() and np.isnan(other.columns["entropy"]).all()
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(
        InputError, match=r"^--state d: '.*progress\.npz' is not a saved image-scores file .*start over"
    ):
        ImageScoresPart.open(path, names=("entropy",), num_images=5, label="--state d")


# -- the directory a state claims ------------------------------------------------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


FOREIGN = {
    "a user's file": {"notes.txt": b"mine"},
    "a member named like ours": {"member_000.json": b'[{"image_id": 1}]'},
    "a state file name of ours": {"progress.npz": b"not ours", "metadata.json": b"{}"},
}


@pytest.mark.parametrize("contents", FOREIGN.values(), ids=FOREIGN.keys())
def test_a_directory_that_is_not_ours_is_refused_and_left_as_it_was(tmp_path, contents):
    folder = tmp_path / "theirs"
    folder.mkdir()
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    before = _digest(folder)
    with pytest.raises(InputError, match=r"^--state '.*theirs' exists and is not a subsetsearch directory"):
        with ClaimedDirectory(folder, kind="statistics"):
            pytest.fail("claimed")
    assert _digest(folder) == before


def test_a_state_directory_is_marked_first_kept_for_its_kind_and_adopted_only_by_rule(tmp_path):
    folder = tmp_path / "s"
    with ClaimedDirectory(folder, kind="statistics") as claimed:
        assert claimed == folder and sorted(p.name for p in folder.iterdir()) == sorted([MARKER, LOCK])
    (folder / "metadata.json").write_text("{}")
    with ClaimedDirectory(folder, kind="statistics"):  # ours: claimed again whatever it holds
        pass
    with pytest.raises(InputError, match="holds a state of statistics, not a state of box lists"):
        with ClaimedDirectory(folder, kind="box-lists"):
            pass
    (folder / MARKER).write_text("garbage")
    with pytest.raises(InputError, match=r"marker subsetsearch\.json is unreadable"):
        with ClaimedDirectory(folder, kind="statistics"):
            pass
    old = tmp_path / "old"  # written before the marker existed
    old.mkdir()
    (old / "metadata.json").write_text("{}")
    with ClaimedDirectory(old, kind="statistics", adopt=lambda path: (path / "metadata.json").is_file()):
        pass
    assert (old / MARKER).is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file; give a directory"):
        ClaimedDirectory(tmp_path / "file", kind="statistics").claim()


def test_a_bad_input_removes_only_a_directory_the_claim_made(tmp_path):
    made = tmp_path / "new"
    with pytest.raises(InputError):
        with ClaimedDirectory(made, kind="box-lists", remove_on_input_error=True):
            raise InputError("bad")
    assert not made.exists()
    kept = tmp_path / "kept"
    ClaimedDirectory(kept, kind="box-lists").claim()
    with pytest.raises(InputError):
        with ClaimedDirectory(kept, kind="box-lists", remove_on_input_error=True):
            raise InputError("bad")
    assert (kept / MARKER).is_file()


HOLD = """
import sys, time
from subsetsearch.internal.directories import ClaimedDirectory
with ClaimedDirectory(sys.argv[1], kind="statistics"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_job_on_a_state_directory_is_refused_naming_the_holder_until_it_dies(tmp_path):
    folder = tmp_path / "s"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        expected = f"is in use by process {holder.pid} on {socket.gethostname()}; wait for that job to end"
        with pytest.raises(InputError, match=expected):
            ClaimedDirectory(folder, kind="statistics").claim()
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # no cleanup runs: the system drops the lock with the process
        holder.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            with ClaimedDirectory(folder, kind="statistics"):
                break
        except InputError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_member_votes_hold_what_was_set_and_unset_elsewhere(tmp_path):
    votes = MemberVotes(np.arange(4), ["b", "a"])
    votes.set("a", slice(0, 2), np.array([1, 2], np.uint16))
    votes.save(tmp_path / "v.npz")
    with np.load(tmp_path / "v.npz") as saved:
        assert saved["names"].tolist() == ["a"]
        assert saved["votes"].tolist() == [[1, 2, MemberVotes.UNSET, MemberVotes.UNSET]]
