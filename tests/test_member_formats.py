"""What other pipelines write, scored by ``subsetsearch score``: .npz per checkpoint, a directory of
them, Parquet with a list column per member, a Zarr group of arrays, labels from a Parquet column.

Each format holds the same member arrays as a set of .npy files, so it must give the same scores
(the same statistics, bit for bit) and the same subset; the .npy path itself is checked against
the textbook formulas in tests/test_cli_score.py.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import direct_scores
from scoring import score_files

import subsetsearch.internal.members as members_module
import subsetsearch.pipeline.score as score_module
from subsetsearch.cli import main
from subsetsearch.errors import InputError
from subsetsearch.internal.files import open_array
from subsetsearch.internal.members import MemberSource, ParquetColumn, member_sources, read_column

N, C, M = 300, 5, 4


@pytest.fixture
def pool(tmp_path):
    rng = np.random.default_rng(7)
    members = [rng.dirichlet(np.ones(C) * 0.5, size=N).astype(np.float32) for _ in range(M)]
    labels = rng.integers(0, C, size=N)
    paths = []
    for j, member in enumerate(members):
        paths.append(tmp_path / f"m{j}.npy")
        np.save(paths[-1], member)
    np.save(tmp_path / "y.npy", labels)
    return tmp_path, paths, members, labels


def score(paths, folder, **options):
    common = {"function": "error_count", "budget": "60", "labels": folder / "y.npy"} | options
    return score_files(paths, out=folder / "out.csv", **common)


def write_parquet(path, members, *, variable=False, row_group_size=64, extra=None):
    columns = {} if extra is None else dict(extra)
    for j, member in enumerate(members):
        columns[f"ckpt_{j}"] = pa.array(member.tolist()) if variable else fixed_size_lists_of(member)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)


def test_npz_per_checkpoint_stored_and_compressed(pool):
    folder, paths, members, labels = pool
    expected = score(paths, folder)
    np.testing.assert_allclose(expected.scores, direct_scores(np.stack(members), labels)["error_count"], atol=1e-12)
    stored, compressed = [], []
    for j, member in enumerate(members):
        np.savez(folder / f"s{j}.npz", probs=member)
        np.savez_compressed(folder / f"c{j}.npz", member)
        stored.append(folder / f"s{j}.npz")
        compressed.append(folder / f"c{j}.npz")
    mapped = open_array(stored[0], "member file")
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, members[0])  # mapped inside the archive
    for files in (stored, compressed):
        result = score(files, folder)
        assert result.indices.tolist() == expected.indices.tolist()
        np.testing.assert_array_equal(result.scores, expected.scores)


def test_a_directory_of_member_files(pool):
    folder, paths, members, _ = pool
    expected = score(paths, folder, function="mutual_information")
    (folder / "ckpts").mkdir()
    for j, member in enumerate(members):  # mixed formats, as different pipelines write them
        if j % 2:
            np.savez(folder / "ckpts" / f"epoch_{j}.npz", member)
        else:
            np.save(folder / "ckpts" / f"epoch_{j}.npy", member)
    (folder / "ckpts" / "notes.txt").write_text("not a member")
    sources = member_sources([folder / "ckpts"])
    assert [s.path.name for s in sources] == ["epoch_0.npy", "epoch_1.npz", "epoch_2.npy", "epoch_3.npz"]
    result = score([folder / "ckpts"], folder, function="mutual_information")
    assert result.num_members == M
    np.testing.assert_array_equal(result.scores, expected.scores)
    with pytest.raises(InputError, match=r"epoch_1\.npz' is given twice; each member may be counted once"):
        score([folder / "ckpts", folder / "ckpts" / "epoch_1.npz"], folder)
    (folder / "empty").mkdir()
    with pytest.raises(InputError, match="holds no member file"):
        score([folder / "empty"], folder)


@pytest.mark.parametrize("variable", [False, True], ids=["fixed_size_list", "list"])
def test_parquet_with_a_column_per_member_and_labels_from_a_column(pool, variable, monkeypatch):
    folder, paths, members, labels = pool
    expected = score(paths, folder)
    extra = {"index": np.arange(N), "label": labels}  # non-list columns are not members
    write_parquet(folder / "preds.parquet", members, variable=variable, extra=extra)
    sources = member_sources([folder / "preds.parquet"])
    assert [s.name for s in sources] == [f"ckpt_{j}" for j in range(M)]
    monkeypatch.setattr(members_module, "PARQUET_BATCH_ELEMENTS", 7 * C)  # 7 rows a batch: reads cross batches
    result = score([folder / "preds.parquet"], folder, labels=folder / "preds.parquet", labels_column="label")
    assert result.indices.tolist() == expected.indices.tolist()
    np.testing.assert_array_equal(result.scores, expected.scores)
    # out of core, shard by shard (a reader per member streams forward through the shards)
    monkeypatch.setattr(score_module, "SHARD_ELEMENTS", 50 * C)
    mapped = score([folder / "preds.parquet"], folder, state=folder / "state")
    np.testing.assert_array_equal(np.asarray(mapped.scores), expected.scores)


def test_parquet_members_resume_by_column(pool, monkeypatch):
    folder, paths, members, _ = pool
    write_parquet(folder / "a.parquet", members[:2])
    write_parquet(folder / "b.parquet", members[2:])
    first = score([folder / "a.parquet"], folder, state=folder / "s.npz")
    assert first.num_members == 2
    opened = []
    original = MemberSource.open
    monkeypatch.setattr(MemberSource, "open", lambda self: opened.append(self.path.name) or original(self))
    both = score([folder / "a.parquet", folder / "b.parquet"], folder, state=folder / "s.npz")
    assert set(opened) == {"b.parquet"}  # a.parquet's columns are held already
    np.testing.assert_array_equal(both.scores, score(paths, folder).scores)


def test_a_zarr_group_of_member_arrays(pool):
    folder, paths, members, _ = pool
    expected = score(paths, folder, function="variation_ratios")
    group = zarr.open_group(str(folder / "members.zarr"), mode="w")
    for j, member in enumerate(members):
        group.create_array(f"epoch_{j:02d}", shape=member.shape, dtype=member.dtype, chunks=(64, C))[:] = member
    result = score([folder / "members.zarr"], folder, function="variation_ratios")
    assert result.num_members == M
    np.testing.assert_array_equal(result.scores, expected.scores)
    zarr.open_group(str(folder / "empty.zarr"), mode="w")
    with pytest.raises(InputError, match="holds no array"):
        score([folder / "empty.zarr"], folder)


def test_the_command_line_takes_a_parquet_file_and_its_label_column(pool, capsys):
    folder, paths, members, labels = pool
    write_parquet(folder / "preds.parquet", members, extra={"label": labels})
    args = ["-f", "error_count", "-b", "60", "--labels", str(folder / "preds.parquet")]
    assert main(["score", str(folder / "preds.parquet"), *args, "-o", str(folder / "a.csv")]) == 0
    assert f"over {M} members" in capsys.readouterr().out
    assert main(["score", *map(str, paths), *args, "-o", str(folder / "b.csv")]) == 0  # 'label' found by name
    assert (folder / "a.csv").read_text() == (folder / "b.csv").read_text()


def test_bad_files_are_one_line_errors(pool, capsys):
    folder, _, members, labels = pool
    np.savez(folder / "two.npz", a=members[0], b=members[1])
    pq.write_table(pa.table({"x": np.arange(N)}), folder / "flat.parquet")
    lists = [row.tolist() for row in members[0]]
    pq.write_table(pa.table({"m": pa.array([*lists[:-1], None])}), folder / "null.parquet")
    pq.write_table(pa.table({"m": pa.array([*lists[:-1], [0.5, 0.5]])}), folder / "short.parquet")
    pq.write_table(pa.table({"m": pa.array([[str(v) for v in r] for r in lists])}), folder / "text.parquet")
    (folder / "broken.parquet").write_bytes(b"PAR1 not really")
    pq.write_table(pa.table({"a": labels, "b": labels}), folder / "two_columns.parquet")
    cases = [
        (["two.npz"], "holds arrays a, b; save one array per .npz"),
        (["flat.parquet"], "has no list column"),
        (["null.parquet"], "has a null row"),
        (["short.parquet"], "has a row of 2 values, not 5"),
        (["text.parquet"], "must be lists of float16/32/64 probabilities"),
        (["broken.parquet"], "is not a readable Parquet file"),
        (["missing.npz"], "not found"),
    ]
    for files, message in cases:
        out = folder / "o.csv"
        assert main(["score", *[str(folder / f) for f in files], "-f", "entropy", "-b", "5", "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and not out.exists(), (files, err)
    assert main(["score", "-f", "entropy", "-b", "5", "-o", str(folder / "o.csv")]) == 2  # nothing to score
    assert "give member files" in capsys.readouterr().err
    np.save(folder / "m.npy", members[0])
    for labels_args, message in [
        (["--labels", str(folder / "two_columns.parquet")], "has columns a, b; keep one column, or name it label"),
        (["--labels", str(folder / "two_columns.parquet"), "--labels-column", "c"], "has no column 'c'"),
        (["--labels", str(folder / "y.npy"), "--labels-column", "c"], "is not a Parquet file"),
    ]:
        args = ["score", str(folder / "m.npy"), "-f", "error_count", "-b", "5", "-o", str(folder / "o.csv")]
        assert main(args + labels_args) == 2
        assert message in capsys.readouterr().err


@settings(max_examples=40, deadline=None)
@given(
    row_group=st.integers(1, 40),
    batch_rows=st.integers(1, 30),
    cuts=st.lists(st.tuples(st.integers(0, 90), st.integers(0, 30)), min_size=1, max_size=12),
)
def test_a_parquet_column_reads_any_row_slices_like_the_array(tmp_path_factory, row_group, batch_rows, cuts):
    folder = tmp_path_factory.mktemp("pq")
    values = np.arange(90 * 3, dtype=np.float64).reshape(90, 3)
    pq.write_table(pa.table({"m": fixed_size_lists_of(values)}), folder / "p.parquet", row_group_size=row_group)
    column = ParquetColumn(folder / "p.parquet", "m")
    column_batch = members_module.PARQUET_BATCH_ELEMENTS
    try:
        members_module.PARQUET_BATCH_ELEMENTS = batch_rows * 3
        column._restart()
        for start, length in cuts:  # forward, backward, overlapping, empty
            np.testing.assert_array_equal(column[start : start + length], values[start : start + length])
    finally:
        members_module.PARQUET_BATCH_ELEMENTS = column_batch


def fixed_size_lists_of(values: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


def test_labels_and_exclusions_from_npy_or_a_parquet_column(tmp_path):
    labels = np.array([2, 0, 1, 1])
    np.save(tmp_path / "y.npy", labels)
    pq.write_table(pa.table({"target": labels, "score": np.ones(4)}), tmp_path / "y.parquet")
    pq.write_table(pa.table({"only": labels}), tmp_path / "only.parquet")
    assert read_column(tmp_path / "y.npy", "labels file").tolist() == [2, 0, 1, 1]
    assert read_column(tmp_path / "y.parquet", "labels file").tolist() == [2, 0, 1, 1]  # 'target' by name
    assert read_column(tmp_path / "only.parquet", "labels file").tolist() == [2, 0, 1, 1]
    assert read_column(tmp_path / "y.parquet", "labels file", "score").tolist() == [1.0] * 4


def test_exclusions_from_a_subset_table(pool):
    """``--exclude`` takes the subset table of an earlier step (its ``index`` column)."""
    folder, paths, _, _ = pool
    first = score(paths, folder, function="entropy", budget="100")
    pq.write_table(pa.table({"index": first.indices, "score": first.scores[first.indices]}), folder / "step1.parquet")
    second = score(paths, folder, function="entropy", budget="50", exclude=folder / "step1.parquet")
    ranked = [int(i) for i in np.argsort(-first.scores, kind="stable") if i not in set(first.indices.tolist())]
    assert second.pool_size == N - 100 and not set(second.indices.tolist()) & set(first.indices.tolist())
    np.testing.assert_array_equal(np.sort(second.scores[second.indices]), np.sort(first.scores[ranked[:50]]))
