"""Out of core: statistics in memory-mapped files, scoring shard by shard with a resumable ledger,
streaming top-k, member predictions and pool images read from .npy maps or Zarr chunks."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import direct_scores
from scoring import score_files
from test_run import BASE

import subsetsearch.internal.ledger as ledger_module
import subsetsearch.pipeline.score as score_module
from subsetsearch import EnsembleStats, select
from subsetsearch.errors import InputError
from subsetsearch.internal.members import MemberSource, member_sources
from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.search import Search
from subsetsearch.selection import select_chunks
from subsetsearch.stats import MappedStats
from subsetsearch.train.data import LazyImages, load_arrays, load_digits_images

zarr = pytest.importorskip("zarr")


def _members(rng: np.random.Generator, m: int, n: int, c: int, dtype=np.float32) -> np.ndarray:
    return rng.dirichlet(np.full(c, 0.3), size=(m, n)).astype(dtype)


# -------------------------------------------------------------------------- statistics by rows


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 60), cuts=st.lists(st.integers(1, 59), max_size=4), seed=st.integers(0, 2**16))
def test_shards_merged_by_index_hold_the_members_mean(n, cuts, seed):
    rng = np.random.default_rng(seed)
    members = _members(rng, 3, n, 4)
    bounds = sorted({0, n, *[c for c in cuts if c < n]})
    order = rng.permutation(n)  # shards of scattered rows, merged in any order
    stats = EnsembleStats(n, 4)
    for a, b in itertools.pairwise(bounds):
        rows = order[a:b]
        shard = EnsembleStats(len(rows), 4)
        for member in members:
            shard.update(member[rows])
        stats.merge(shard, index=rows)
    assert np.all(stats.member_counts == 3)
    np.testing.assert_allclose(stats.mean_probs(), members.astype(np.float64).mean(axis=0), atol=1e-6)
    votes = np.stack([np.bincount(np.argmax(members[:, i], axis=1), minlength=4) for i in range(n)])
    assert np.array_equal(stats.vote_counts, votes)
    part = stats.take(order[:2])
    np.testing.assert_allclose(part.mean_probs(), members[:, order[:2]].astype(np.float64).mean(axis=0), atol=1e-6)


def test_merge_by_index_checks_its_rows():
    stats = EnsembleStats(5, 2)
    shard = EnsembleStats(2, 2)
    with pytest.raises(ValueError, match="index selects 3 rows but the data has 2"):
        stats.merge(shard, index=[0, 1, 2])
    with pytest.raises(ValueError, match="repeats a row"):
        stats.merge(shard, index=[1, 1])
    with pytest.raises(ValueError, match="give index= the rows they hold"):
        stats.merge(shard)


def test_mapped_stats_keep_rows_on_disk(tmp_path):
    rng = np.random.default_rng(0)
    members = _members(rng, 2, 10, 3)
    store = MappedStats.create(tmp_path / "s", 10, 3)
    assert np.all(store.read(slice(0, 10)).member_counts == 0)
    shard = EnsembleStats(4, 3)
    for member in members:
        shard.update(member[3:7])
    store.write(slice(3, 7), shard)
    store.write(slice(3, 7), shard)  # an overwrite: writing twice changes nothing
    store.metadata["note"] = "kept"
    store.save_metadata()
    again = MappedStats(tmp_path / "s")
    assert again.metadata == {"note": "kept"} and (again.num_samples, again.num_classes) == (10, 3)
    whole = again.load()
    assert whole.member_counts.tolist() == [0, 0, 0, 2, 2, 2, 2, 0, 0, 0]
    np.testing.assert_allclose(whole.mean_probs(slice(3, 7)), members[:, 3:7].astype(np.float64).mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="not empty"):
        MappedStats.create(tmp_path / "s", 10, 3)
    with pytest.raises(ValueError, match="cannot write stats of 4 x 3 to rows 0:3"):
        store.write(slice(0, 3), shard)
    (tmp_path / "s" / "votes.npy").unlink()
    with pytest.raises(ValueError, match="is not a MappedStats directory"):
        MappedStats(tmp_path / "s")


# ------------------------------------------------------------------------------ streaming top-k


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=80),
    data=st.data(),
)
def test_select_chunks_is_select(scores, data):
    scores = np.array(scores)
    n = scores.size
    exclude = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    candidates = int((~exclude).sum())
    skip_top = data.draw(st.sampled_from([0.0, 0.125, 0.5]))
    k = data.draw(st.integers(0, candidates - int(skip_top * candidates)))
    seed = data.draw(st.integers(0, 1000))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, n - 1)), max_size=5))) - {n})
    bounds = [0, *cuts, n]
    chunks = [(a, scores[a:b]) for a, b in itertools.pairwise(bounds)]
    chunks = data.draw(st.permutations(chunks))
    expected = select(scores, k, exclude=exclude, skip_top=skip_top, seed=seed)
    got = select_chunks(chunks, k, num_samples=n, exclude=exclude, skip_top=skip_top, seed=seed)
    assert got.tolist() == expected.tolist()


def test_select_chunks_refuses_chunks_that_miss_or_repeat_rows():
    with pytest.raises(ValueError, match="leave out 2 of 4 rows"):
        select_chunks([(0, np.ones(2))], 1, num_samples=4)
    with pytest.raises(ValueError, match="repeats rows"):
        select_chunks([(0, np.ones(3)), (2, np.ones(2))], 1, num_samples=4)
    with pytest.raises(ValueError, match="NaN"):
        select_chunks([(0, np.array([np.nan, 1.0]))], 1, num_samples=2)


# ------------------------------------------------------------------------ score out of core


@pytest.fixture
def members_on_disk(tmp_path):
    rng = np.random.default_rng(3)
    n, c, m = 1000, 5, 6
    members = _members(rng, m, n, c)
    paths = []
    for j, member in enumerate(members):
        paths.append(tmp_path / f"m{j}.npy")
        np.save(paths[-1], member)
    labels = rng.integers(0, c, n)
    np.save(tmp_path / "y.npy", labels)
    return tmp_path, paths, members, labels


def _read_scores(path: Path) -> np.ndarray:
    table = pacsv.read_csv(path)
    return table["index"].to_numpy(), table["score"].to_numpy()


@pytest.mark.parametrize("function", ["mutual_information", "error_count"])
def test_state_directory_scores_shard_by_shard_like_memory(members_on_disk, monkeypatch, function):
    folder, paths, members, labels = members_on_disk
    monkeypatch.setattr(score_module, "SHARD_ELEMENTS", 300)  # 60 rows a shard: 17 shards
    monkeypatch.setattr(score_module, "MEMBERS_PER_PASS", 4)
    common = {"function": function, "budget": "0.3", "labels": folder / "y.npy", "skip_top": 0.1, "seed": 4}
    memory = score_files(paths, out=folder / "a.csv", **common)
    mapped = score_files(paths, out=folder / "b.csv", scores_out=folder / "all.csv", state=folder / "state", **common)
    assert mapped.indices.tolist() == memory.indices.tolist()
    reference = direct_scores(members, labels)[function]
    np.testing.assert_allclose(np.asarray(mapped.scores), reference, atol=1e-6)
    index, scores = _read_scores(folder / "all.csv")
    assert index.tolist() == list(range(1000))
    np.testing.assert_array_equal(scores, np.asarray(memory.scores))
    store = MappedStats(folder / "state")
    scored = store.metadata["scored"]  # the function each shard's scores came from (error_count: with its labels)
    assert sorted(scored, key=int) == [str(s) for s in range(17)] and len(set(scored.values())) == 1
    assert scored["0"].split("|")[0] == function
    assert sorted(ledger_module.Ledger.of(store.metadata).members) == sorted(s.key for s in member_sources(paths))
    assert np.all(store.load().member_counts == 6)
    # another function later: scored from the stored statistics, no member's predictions read again
    monkeypatch.setattr(MemberSource, "open", lambda *args: pytest.fail("a member was read again"))
    later = score_files(paths, function="entropy", budget="10", out=folder / "c.csv", state=folder / "state")
    np.testing.assert_allclose(np.asarray(later.scores), direct_scores(members)["entropy"], atol=1e-6)


def test_a_commit_cut_short_is_finished_from_its_redo_record(members_on_disk, monkeypatch):
    folder, paths, members, _ = members_on_disk
    monkeypatch.setattr(score_module, "SHARD_ELEMENTS", 2500)  # 500 rows a shard: 2 shards
    monkeypatch.setattr(score_module, "MEMBERS_PER_PASS", 2)  # 3 groups a shard
    monkeypatch.setattr(ledger_module, "SAVE_INTERVAL_S", 0.0)  # commit after every group
    writes = []
    real_write = MappedStats.write

    def failing_write(self, rows, stats):
        writes.append(rows)
        if len(writes) == 2:  # the second commit: the rows already hold 2 members on disk
            real_write(self, slice(rows.start, rows.start + 7), stats.take(slice(0, 7)))  # a torn write
            raise OSError("disk vanished")
        real_write(self, rows, stats)

    monkeypatch.setattr(MappedStats, "write", failing_write)
    with pytest.raises(OSError, match="disk vanished"):
        score_files(paths, function="entropy", budget="10", out=folder / "a.csv", state=folder / "s")
    assert (folder / "s" / "pending.npz").is_file()
    monkeypatch.setattr(MappedStats, "write", real_write)
    result = score_files(paths, function="entropy", budget="10", out=folder / "a.csv", state=folder / "s")
    assert not (folder / "s" / "pending.npz").exists()
    assert np.all(MappedStats(folder / "s").load().member_counts == 6)
    np.testing.assert_allclose(np.asarray(result.scores), direct_scores(members)["entropy"], atol=1e-6)


def test_score_killed_midway_resumes_from_its_committed_pairs(members_on_disk):
    """A real SIGKILL: the rerun adds each (member, shard) pair once and ends with the uninterrupted answer."""
    folder = members_on_disk[0]
    n, c = 20000, 5
    rng = np.random.default_rng(9)
    big = _members(rng, 6, n, c)
    big_paths = []
    for j, member in enumerate(big):
        big_paths.append(folder / f"big{j}.npy")
        np.save(big_paths[-1], member)
    code = (
        "import sys; import subsetsearch.pipeline.score as s; s.SHARD_ELEMENTS = 500; s.MEMBERS_PER_PASS = 2; "
        "import subsetsearch.internal.ledger as l; l.SAVE_INTERVAL_S = 0.0; "
        "from subsetsearch.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    args = ["score", *map(str, big_paths), "-f", "mutual_information", "-b", "0.25", "--state", str(folder / "st")]
    cut = subprocess.Popen([sys.executable, "-c", code, *args, "-o", str(folder / "cut.csv")])
    metadata = folder / "st" / "metadata.json"

    def committed() -> int:
        """(member, shard) pairs the store's ledger holds: 200 shards of 100 rows, 6 members."""
        try:
            return ledger_module.Ledger.of(json.loads(metadata.read_text())["metadata"]).units(200)
        except (OSError, ValueError, KeyError):
            return 0

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and committed() < 60:
        time.sleep(0.01)
    os.kill(cut.pid, signal.SIGKILL)
    cut.wait()
    assert 60 <= committed() < 1200 and not (folder / "cut.csv").exists()  # killed midway, nothing written
    again = subprocess.run([sys.executable, "-c", code, *args, "-o", str(folder / "cut.csv")], check=False)
    assert again.returncode == 0
    got_index, got_scores = _read_scores(folder / "cut.csv")
    whole = score_files(big_paths, function="mutual_information", budget="0.25", out=folder / "w.csv")
    assert got_index.tolist() == whole.indices.tolist()
    np.testing.assert_array_equal(got_scores, whole.scores[whole.indices])
    assert np.all(MappedStats(folder / "st").load().member_counts == 6)  # no member counted twice


def test_statistics_too_large_for_memory_ask_for_a_state_directory(members_on_disk, monkeypatch):
    folder, paths, _, _ = members_on_disk
    monkeypatch.setattr(score_module, "available_memory", lambda: 1000)
    with pytest.raises(InputError, match=r"need 0\.0 GB.*give --state DIR"):
        score_files(paths, function="entropy", budget="10", out=folder / "a.csv")
    assert not (folder / "a.csv").exists()
    result = score_files(paths, function="entropy", budget="10", out=folder / "a.csv", state=folder / "d")
    assert result.indices.size == 10


def test_zarr_members_score_like_npy_members(members_on_disk):
    folder, paths, members, _ = members_on_disk
    stores = []
    for j, member in enumerate(members):
        array = zarr.create_array(str(folder / f"m{j}.zarr"), shape=member.shape, dtype=member.dtype, chunks=(128, 5))
        array[:] = member
        stores.append(folder / f"m{j}.zarr")
    a = score_files(paths, function="variation_ratios", budget="50", out=folder / "a.csv")
    b = score_files(stores, function="variation_ratios", budget="50", out=folder / "b.csv")
    c = score_files(stores, function="variation_ratios", budget="50", out=folder / "c.csv", state=folder / "zs")
    assert a.indices.tolist() == b.indices.tolist() == c.indices.tolist()
    np.testing.assert_allclose(b.scores, direct_scores(members)["variation_ratios"], atol=1e-12)
    bad = zarr.create_array(str(folder / "bad.zarr"), shape=(1000,), dtype="f4")
    with pytest.raises(InputError, match=r"bad\.zarr' must be an \[N, C\] array"):
        score_files([folder / "bad.zarr"], function="entropy", budget="10", out=folder / "d.csv")
    assert bad is not None


# --------------------------------------------------------------------------------- pool images


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_lazy_images_read_the_rows_asked_for(tmp_path, layout):
    rng = np.random.default_rng(0)
    nchw = rng.integers(0, 255, (50, 3 if layout != "nhw" else 1, 9, 10), dtype=np.uint8)
    stored = {"nhw": nchw[:, 0], "nhwc": nchw.transpose(0, 2, 3, 1), "nchw": nchw}[layout]
    np.save(tmp_path / "x.npy", stored)
    np.save(tmp_path / "y.npy", np.arange(50) % 3)
    images = load_arrays(tmp_path / "x.npy", tmp_path / "y.npy", lazy=True)
    assert isinstance(images.x, LazyImages) and images.x.shape == nchw.shape
    rows = np.array([40, 3, 17, 3])
    assert np.array_equal(images.x[rows], nchw[rows])
    assert np.array_equal(images.x[5:9], nchw[5:9])
    part = images.take(np.array([10, 20, 30]))  # nothing read yet
    assert isinstance(part.x, LazyImages) and part.y.tolist() == [1, 2, 0]
    assert np.array_equal(part.x[np.array([2, 0])], nchw[[30, 10]])
    assert np.array_equal(part.x[0:2], nchw[[10, 20]])
    z = zarr.create_array(
        str(tmp_path / "x.zarr"), shape=stored.shape, dtype=stored.dtype, chunks=(8, *stored.shape[1:])
    )
    z[:] = stored
    from_zarr = load_arrays(tmp_path / "x.zarr", tmp_path / "y.npy")
    assert isinstance(from_zarr.x, LazyImages)
    assert np.array_equal(from_zarr.x[rows], nchw[rows])


def test_lazy_images_check_their_values(tmp_path):
    x = np.ones((20, 9, 9), np.float32)
    x[7, 2, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.zeros(20, np.int64))
    images = load_arrays(tmp_path / "x.npy", tmp_path / "y.npy", lazy=True)
    assert images.x[:5].dtype == np.float32
    with pytest.raises(InputError, match="NaN or infinite"):
        images.x[5:10]
    np.save(tmp_path / "small.npy", np.ones((20, 4, 4), np.float32))
    with pytest.raises(InputError, match="at least 8×8"):
        load_arrays(tmp_path / "small.npy", tmp_path / "y.npy", lazy=True)


def test_a_run_on_images_left_on_disk_equals_the_run_in_memory(tmp_path):
    digits = load_digits_images()
    np.save(tmp_path / "x.npy", digits.x[:, 0])
    np.save(tmp_path / "y.npy", digits.y)
    z = zarr.create_array(
        str(tmp_path / "x.zarr"), shape=digits.x[:, 0].shape, dtype=digits.x.dtype, chunks=(100, 8, 8)
    )
    z[:] = digits.x[:, 0]
    results = {}
    for name, path, on_disk in [("memory", "x.npy", False), ("npy", "x.npy", True), ("zarr", "x.zarr", None)]:
        config = json.loads(json.dumps(BASE))
        config["data"] = {
            "dataset": "arrays",
            "path": str(tmp_path / path),
            "labels": str(tmp_path / "y.npy"),
            "limit": 600,
            "test_limit": 300,
            "on_disk": on_disk,
        }
        search = Search(parse_config(config), tmp_path / name)
        results[name] = search.run()
        assert isinstance(search.task.splits.pool.x, LazyImages) == (name != "memory")
    for name in ("npy", "zarr"):
        assert results[name].subset.index.tolist() == results["memory"].subset.index.tolist()
        assert [v.accuracies for v in results[name].variants] == [v.accuracies for v in results["memory"].variants]
