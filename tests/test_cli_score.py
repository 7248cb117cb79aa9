import subprocess
import sys

import numpy as np
import pytest
from reference import direct_scores
from scoring import member_pool, read_table, run_cli

N, C, M = 120, 4, 5


@pytest.fixture
def pool(tmp_path):
    return member_pool(tmp_path, seed=0, shape=(M, N, C), name="member_{}.npy")


run = run_cli


def expected_top(scores, k):
    """Independent top-k for distinct scores: a stable argsort of the negated scores."""
    return np.argsort(-scores, kind="stable")[:k]


@pytest.mark.parametrize("function", ["entropy", "mutual_information", "error_count"])
def test_score_writes_the_top_of_the_direct_computation(pool, capsys, function):
    tmp_path, paths, members, labels = pool
    out = tmp_path / "subset.csv"
    args = ["score", *paths, "--labels", str(tmp_path / "y.npy"), "--function", function]
    code, stdout, _ = run([*args, "--budget", "0.25", "--out", str(out)], capsys)
    assert code == 0
    table = read_table(out)
    assert list(table) == ["index", "score"]
    reference = direct_scores(members, labels)[function]
    assert len(table["index"]) == 30  # 25% of 120
    # error_count has ties (multiples of 1/5): compare the chosen scores, not the order of equals
    np.testing.assert_allclose(table["score"], np.sort(reference)[::-1][:30], atol=1e-5)
    if function != "error_count":
        np.testing.assert_array_equal(table["index"], expected_top(reference, 30))
    assert "selected 30 of 120 samples" in stdout


def test_score_parquet_and_all_scores(pool, capsys):
    tmp_path, paths, members, _ = pool
    out, every = tmp_path / "subset.parquet", tmp_path / "all.parquet"
    args = ["score", *paths, "-f", "entropy", "--budget", "10", "--out", str(out), "--scores-out", str(every)]
    assert run(args, capsys)[0] == 0
    table, all_scores = read_table(out), read_table(every)
    assert len(table["index"]) == 10
    np.testing.assert_array_equal(all_scores["index"], np.arange(N))
    np.testing.assert_allclose(all_scores["score"], direct_scores(members)["entropy"], atol=1e-5)


def test_exclude_and_skip_top(pool, capsys):
    tmp_path, paths, members, _ = pool
    excluded = np.arange(0, N, 2)
    np.save(tmp_path / "exclude.npy", excluded)
    out = tmp_path / "subset.csv"
    args = ["score", *paths, "-f", "entropy", "--budget", "0.5", "--exclude", str(tmp_path / "exclude.npy")]
    assert run([*args, "--skip-top", "0.25", "--out", str(out)], capsys)[0] == 0
    reference = direct_scores(members)["entropy"]
    odd = np.arange(1, N, 2)
    ranked = odd[np.argsort(-reference[odd], kind="stable")]
    # pool of 60 candidates: skip 15, take 30
    np.testing.assert_array_equal(read_table(out)["index"], ranked[15:45])


def test_logits_members(tmp_path, capsys):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 50, 5)).astype(np.float32) * 4
    paths = []
    for i, member in enumerate(logits):
        paths.append(str(tmp_path / f"logits_{i}.npy"))
        np.save(paths[-1], member)
    out = tmp_path / "subset.csv"
    assert run(["score", *paths, "-f", "mutual_information", "-b", "5", "-o", str(out), "--logits"], capsys)[0] == 0
    e = np.exp(logits.astype(np.float64) - logits.max(axis=2, keepdims=True))
    probs = e / e.sum(axis=2, keepdims=True)
    reference = direct_scores(probs)["mutual_information"]
    np.testing.assert_array_equal(read_table(out)["index"], expected_top(reference, 5))


def test_state_resumes_without_double_counting(pool, capsys):
    tmp_path, paths, members, _ = pool
    state = tmp_path / "state.npz"
    first = ["score", *paths[:2], "-f", "mutual_information", "-b", "10", "--state", str(state)]
    assert run([*first, "-o", str(tmp_path / "a.csv")], capsys)[0] == 0
    resumed = ["score", *paths, "-f", "mutual_information", "-b", "10", "--state", str(state)]
    assert run([*resumed, "-o", str(tmp_path / "b.csv"), "--scores-out", str(tmp_path / "b_all.csv")], capsys)[0] == 0
    fresh = ["score", *paths, "-f", "mutual_information", "-b", "10"]
    assert run([*fresh, "-o", str(tmp_path / "c.csv"), "--scores-out", str(tmp_path / "c_all.csv")], capsys)[0] == 0
    assert read_table(tmp_path / "b_all.csv") == read_table(tmp_path / "c_all.csv")
    np.testing.assert_allclose(
        read_table(tmp_path / "c_all.csv")["score"], direct_scores(members)["mutual_information"], atol=1e-5
    )
    # a state that holds a member not given now is refused
    code, _, err = run(["score", paths[0], "-f", "entropy", "-b", "3", "--state", str(state), "-o", "x.csv"], capsys)
    assert code == 2 and "not among the given files" in err


def bad_member(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return str(path)


BAD_INPUTS = {
    "missing file": (lambda t, p: [*p, str(t / "nope.npy")], "'.*nope.npy' not found"),
    "corrupt file": (lambda t, p: [*p, _write(t / "junk.npy", b"\x93NUMPY garbage")], "not a valid .npy"),
    "truncated file": (lambda t, p: [*p, _truncated(t, p[0])], "truncated"),
    "NaN": (lambda t, p: [*p, bad_member(t, "nan.npy", _with(p[0], 7, np.nan))], "sample 7 contain NaN"),
    "negative": (
        lambda t, p: [*p, bad_member(t, "neg.npy", _negative(p[0]))],
        r"negative value \(-0.5\); if these are logits, .*--logits",
    ),
    "rows not summing to 1": (lambda t, p: [*p, bad_member(t, "half.npy", np.load(p[0]) / 2)], "--logits"),
    "different shapes": (lambda t, p: [*p, bad_member(t, "short.npy", np.load(p[0])[:-1])], "has shape"),
    "integer member": (lambda t, p: [*p, bad_member(t, "int.npy", np.ones((N, C), int))], "float16/32/64"),
    "one-dimensional member": (lambda t, p: [bad_member(t, "flat.npy", np.ones(N) / N)], r"\[N, C\]"),
}


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def _truncated(tmp_path, source):
    data = open(source, "rb").read()
    return _write(tmp_path / "cut.npy", data[: len(data) // 2])


def _with(path, row, value):
    array = np.load(path).copy()
    array[row, 1] = value
    return array


def _negative(path):
    array = np.load(path).copy()
    array[3, :2] = [1.5, -0.5]
    array[3, 2:] = 0
    return array


def assert_clean_failure(code, stdout, stderr, tmp_path, pattern):
    import re

    assert code == 2
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    assert re.search(pattern, stderr), stderr
    assert not (tmp_path / "out.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_member_files(pool, capsys, case):
    tmp_path, paths, _, _ = pool
    make, pattern = BAD_INPUTS[case]
    members = make(tmp_path, paths)
    args = ["score", *members, "-f", "entropy", "-b", "0.1", "-o", str(tmp_path / "out.csv")]
    assert_clean_failure(*run(args, capsys), tmp_path, pattern)


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (
            ["-f", "bald", "-b", "0.1"],
            "unknown --function 'bald'; choose one of: entropy, mutual_information, variation_ratios, error_count",
        ),
        (["-f", "error_count", "-b", "0.1"], "needs --labels"),
        (["-f", "entropy", "-b", "0"], "must be positive"),
        (["-f", "entropy", "-b", "-3"], "must be positive"),
        (["-f", "entropy", "-b", "-0.5"], "must be positive"),
        (["-f", "entropy", "-b", "121"], r"--budget 121 exceeds the pool \(120 samples\)"),
        (["-f", "entropy", "-b", "1.5"], "above 1"),
        (["-f", "entropy", "-b", "lots"], "not a number"),
        (["-f", "entropy", "-b", "0.001"], "selects no sample"),
        (
            ["-f", "entropy", "-b", "0.9", "--skip-top", "0.2"],
            "asks for 108 samples, but 96 of the 120 candidates are left after --skip-top 0.2",
        ),
        (["-f", "entropy", "-b", "0.1", "--skip-top", "1"], "skip-top"),
    ],
)
def test_bad_options(pool, capsys, extra, pattern):
    tmp_path, paths, _, _ = pool
    args = ["score", *paths, *extra, "-o", str(tmp_path / "out.csv")]
    assert_clean_failure(*run(args, capsys), tmp_path, pattern)


@pytest.mark.parametrize(
    ("labels", "pattern"),
    [
        (np.zeros(N - 1, dtype=int), r"shape \(120,\)"),
        (np.full(N, C, dtype=int), r"in \[0, 4\)"),
        (np.full(N, -1, dtype=int), r"in \[0, 4\)"),
        (np.zeros(N), "integers"),
    ],
)
def test_bad_labels(pool, capsys, labels, pattern):
    tmp_path, paths, _, _ = pool
    np.save(tmp_path / "bad_y.npy", labels)
    args = ["score", *paths, "-f", "error_count", "-b", "0.1", "--labels", str(tmp_path / "bad_y.npy")]
    assert_clean_failure(*run([*args, "-o", str(tmp_path / "out.csv")], capsys), tmp_path, pattern)


def test_bad_exclude_and_outputs(pool, capsys):
    tmp_path, paths, _, _ = pool
    np.save(tmp_path / "ex.npy", np.array([0, N]))
    base = ["score", *paths, "-f", "entropy", "-b", "0.1"]
    assert_clean_failure(
        *run([*base, "--exclude", str(tmp_path / "ex.npy"), "-o", str(tmp_path / "out.csv")], capsys),
        tmp_path,
        r"outside \[0, 120\)",
    )
    assert_clean_failure(*run([*base, "-o", str(tmp_path / "out.txt")], capsys), tmp_path, r"\.csv or \.parquet")
    same = ["-o", str(tmp_path / "out.csv"), "--scores-out", str(tmp_path / "out.csv")]
    assert_clean_failure(*run([*base, *same], capsys), tmp_path, "different files")


def test_console_script_exit_code_and_quiet_pipe(pool):
    tmp_path, paths, _, _ = pool
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "subsetsearch.cli",
            "score",
            *paths,
            "-f",
            "entropy",
            "-b",
            "5",
            "-o",
            str(tmp_path / "s.csv"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and ok.stderr == ""  # no progress bar in a pipe
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "subsetsearch.cli",
            "score",
            *paths,
            "-f",
            "nope",
            "-b",
            "5",
            "-o",
            str(tmp_path / "t.csv"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_progress_bar_on_a_terminal(pool):
    import os

    tmp_path, paths, _, _ = pool
    leader, follower = os.openpty()  # stderr is a terminal, as for a person at a shell
    try:
        done = subprocess.run(
            [sys.executable, "-m", "subsetsearch.cli", "score", *paths, "-f", "entropy", "-b", "5",
             "-o", str(tmp_path / "s.csv")],
            stdout=subprocess.PIPE, stderr=follower, text=True, check=False,
        )  # fmt: skip
        os.close(follower)
        follower = None
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: everything has been read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower is not None:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    assert b"scoring members" in shown


def test_skip_disagreement_leaves_out_rows_every_member_votes_apart(tmp_path, capsys):
    _, paths, members, _ = member_pool(tmp_path, seed=3, shape=(3, N, C), name="m{}.npy")
    votes = np.argmax(np.stack(members), axis=2)  # [3, N]: each member's class
    apart = np.array([len(set(votes[:, j].tolist())) == 3 for j in range(N)])
    assert 0 < apart.sum() < N - 30  # three members over four classes: some rows, not all
    reference = direct_scores(members)["entropy"]
    kept = np.flatnonzero(~apart)
    expected = kept[np.argsort(-reference[kept], kind="stable")][:30]
    for state in ([], ["--state", str(tmp_path / "on_disk")]):  # in memory, and out of core
        out = tmp_path / f"subset{len(state)}.csv"
        args = ["score", *paths, "-f", "entropy", "-b", "30", "--skip-disagreement", "-o", str(out), *state]
        code, stdout, _ = run(args, capsys)
        assert code == 0
        np.testing.assert_array_equal(read_table(out)["index"], expected)
        assert f"left out {int(apart.sum())} samples on which every member predicts a different class" in stdout
    # more than what is left: one line, nothing written
    too_many = ["score", *paths, "-f", "entropy", "-b", str(int(N - apart.sum()) + 1), "--skip-disagreement"]
    assert_clean_failure(*run([*too_many, "-o", str(tmp_path / "out.csv")], capsys), tmp_path, "disagreement left out")


@pytest.mark.parametrize(
    ("extra", "members", "pattern"),
    [
        (["-f", "el2n", "--labels", "y.npy"], M, "--skip-disagreement counts the members' votes"),
        (["-f", "entropy"], 1, "--skip-disagreement needs 2 or more members to disagree; got 1"),
    ],
)
def test_skip_disagreement_refuses(pool, capsys, extra, members, pattern):
    tmp_path, paths, _, _ = pool
    extra = [str(tmp_path / e) if e == "y.npy" else e for e in extra]
    args = ["score", *paths[:members], *extra, "-b", "0.1", "--skip-disagreement", "-o", str(tmp_path / "out.csv")]
    assert_clean_failure(*run(args, capsys), tmp_path, pattern)
