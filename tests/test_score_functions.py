"""``subsetsearch score`` with the functions users compare ours with: several in one pass,
``--function all``, ``--window``, resume, out of core, and every bad input they bring."""

from __future__ import annotations

import numpy as np
import pytest
from reference import direct_scores, other_scores
from scoring import member_pool, read_table, run_cli

from subsetsearch.acquisition import FUNCTIONS, NEEDS_LABELS

N, C, M = 90, 4, 6
ATOL = 1e-6


@pytest.fixture
def pool(tmp_path):
    return member_pool(tmp_path, seed=3, shape=(M, N, C), name="epoch_{:02d}.npy")


run, table = run_cli, read_table


def expected(members, labels, function, window=10):
    if function in direct_scores(members, labels):
        return direct_scores(members, labels)[function]
    return other_scores(members, labels, function, window)


def test_all_functions_in_one_pass_match_their_formulas(pool, capsys):
    folder, paths, members, labels = pool
    args = ["score", *paths, "--labels", str(folder / "y.npy"), "--function", "all", "--window", "4"]
    code, stdout, _ = run(
        [*args, "--budget", "10", "--out", str(folder / "s.csv"), "--scores-out", str(folder / "all.csv")], capsys
    )
    assert code == 0
    scores = table(folder / "all.csv")
    assert list(scores) == ["index", "mutual_information", *[f for f in FUNCTIONS if f != "mutual_information"]]
    for function in FUNCTIONS:
        np.testing.assert_allclose(
            scores[function], expected(members, labels, function, 4), atol=ATOL, err_msg=function
        )
    chosen = table(folder / "s.csv")
    top = np.argsort(-direct_scores(members, labels)["mutual_information"], kind="stable")[:10]
    assert chosen["index"] == top.tolist()  # mutual_information chooses under all
    assert "by mutual_information over 6 members" in stdout and "also scored (--scores-out): entropy" in stdout


def test_all_without_labels_is_every_label_free_function(pool, capsys):
    folder, paths, _members, _labels = pool
    code, _, _ = run(
        ["score", *paths, "-f", "all", "-b", "5", "-o", str(folder / "s.csv"), "--scores-out", str(folder / "a.csv")],
        capsys,
    )
    assert code == 0
    assert list(table(folder / "a.csv")) == [
        "index",
        "mutual_information",
        "entropy",
        "variation_ratios",
        "least_confidence",
        "margin",
    ]


def test_all_leaves_out_dyn_unc_when_the_window_exceeds_the_members(pool, capsys):
    folder, paths, _members, _labels = pool
    args = ["score", *paths, "--labels", str(folder / "y.npy"), "-f", "all", "-b", "5", "-o", str(folder / "s.csv")]
    code, _, _ = run([*args, "--scores-out", str(folder / "a.csv")], capsys)  # window 10 > 6 members
    assert code == 0
    assert "dyn_unc" not in table(folder / "a.csv") and "forgetting" in table(folder / "a.csv")


def test_a_list_of_functions_the_first_chooses(pool, capsys):
    folder, paths, members, labels = pool
    args = ["score", *paths, "--labels", str(folder / "y.npy"), "-f", "forgetting,el2n", "-b", "20"]
    code, _, _ = run([*args, "-o", str(folder / "s.csv"), "--scores-out", str(folder / "a.csv")], capsys)
    assert code == 0
    forgetting = other_scores(members, labels, "forgetting")
    chosen = table(folder / "s.csv")
    # forgetting counts are integers: compare the chosen scores (ties broken by the seeded order)
    assert sorted(chosen["score"], reverse=True) == sorted(forgetting, reverse=True)[:20]
    assert list(table(folder / "a.csv")) == ["index", "forgetting", "el2n"]


def test_order_is_the_command_line_order_and_a_directory_is_name_order(pool, capsys):
    folder, paths, members, labels = pool
    common = ["--labels", str(folder / "y.npy"), "-f", "forgetting", "-b", "5"]
    run(["score", *paths[::-1], *common, "-o", str(folder / "r.csv"), "--scores-out", str(folder / "rev.csv")], capsys)
    np.testing.assert_array_equal(table(folder / "rev.csv")["score"], other_scores(members[::-1], labels, "forgetting"))
    (folder / "d").mkdir()
    for i, member in enumerate(members):
        np.save(folder / "d" / f"epoch_{i + 1:02d}.npy", member)
    run(
        ["score", str(folder / "d"), *common, "-o", str(folder / "d.csv"), "--scores-out", str(folder / "dir.csv")],
        capsys,
    )
    np.testing.assert_array_equal(table(folder / "dir.csv")["score"], other_scores(members, labels, "forgetting"))


@pytest.mark.parametrize("mapped", [False, True], ids=["npz", "dir"])
def test_state_resumes_the_label_statistics_in_order(pool, capsys, mapped):
    folder, paths, members, labels = pool
    state = folder / ("s.npz" if mapped is False else "state")
    common = ["--labels", str(folder / "y.npy"), "-f", "dyn_unc,entropy,forgetting", "--window", "3", "-b", "5"]
    common += ["--state", str(state)]
    code, _, err = run(["score", *paths[:4], *common, "-o", str(folder / "a.csv")], capsys)
    assert code == 0, err
    code, _, err = run(
        ["score", *paths, *common, "-o", str(folder / "b.csv"), "--scores-out", str(folder / "all.csv")], capsys
    )
    assert code == 0, err
    scores = table(folder / "all.csv")
    for function in ("dyn_unc", "forgetting"):
        np.testing.assert_allclose(scores[function], other_scores(members, labels, function, 3), atol=ATOL)
    np.testing.assert_allclose(scores["entropy"], direct_scores(members, labels)["entropy"], atol=ATOL)
    # a member put before the ones the state holds is refused, and nothing is written
    (folder / "late.npy").write_bytes((folder / "epoch_01.npy").read_bytes())
    code, _, err = run(["score", str(folder / "late.npy"), *paths, *common, "-o", str(folder / "c.csv")], capsys)
    assert code == 2 and "give the members in the order of the --state" in err and len(err.splitlines()) == 1
    assert not (folder / "c.csv").exists()


def test_label_statistics_added_to_a_state_made_without_them(pool, capsys):
    folder, paths, members, labels = pool
    state = ["--state", str(folder / "s.npz")]
    assert run(["score", *paths, "-f", "entropy", "-b", "5", "-o", str(folder / "a.csv"), *state], capsys)[0] == 0
    args = ["score", *paths, "--labels", str(folder / "y.npy"), "-f", "el2n,entropy", "-b", "5", *state]
    assert run([*args, "-o", str(folder / "b.csv"), "--scores-out", str(folder / "all.csv")], capsys)[0] == 0
    scores = table(folder / "all.csv")
    np.testing.assert_allclose(scores["el2n"], other_scores(members, labels, "el2n"), atol=ATOL)
    assert (folder / "s.dynamics.npz").is_file()


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        (["-f", "el2n"], r"--function el2n needs --labels y\.npy"),
        (["-f", "entropy,variability"], r"--function variability needs --labels"),
        (["-f", "el3n"], r"unknown --function 'el3n'; choose one of: entropy, .*, hard_to_learn, or all"),
        (["-f", "entropy,entropy"], "names a function twice"),
        (
            ["-f", "dyn_unc", "--labels", "{y}", "--window", "7"],
            r"--window 7 must lie from 2 to the number of members \(6\)",
        ),
        (["-f", "dyn_unc", "--labels", "{y}", "--window", "1"], "--window must be an integer >= 2"),
    ],
)
def test_bad_function_options_are_one_line_and_write_nothing(pool, capsys, options, pattern):
    import re

    folder, paths, _members, _labels = pool
    options = [o.replace("{y}", str(folder / "y.npy")) for o in options]
    code, stdout, err = run(["score", *paths, *options, "-b", "5", "-o", str(folder / "s.csv")], capsys)
    assert code == 2 and stdout == ""
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err
    assert not (folder / "s.csv").exists()


def test_every_function_that_needs_labels_is_named_without_them(pool, capsys):
    folder, paths, _, _ = pool
    for function in NEEDS_LABELS:
        code, _, err = run(["score", *paths, "-f", function, "-b", "5", "-o", str(folder / "s.csv")], capsys)
        assert code == 2 and f"--function {function} needs --labels" in err
