"""What ``subsetsearch score`` does with a ``--state``, for every command that takes one: a directory
that is not its own is refused and left as it was, a state never shares a path with an output, an
ordered state refuses members in another order, and an annotation state says which input changed
(keyed on content, not modification time) and names a damaged file instead of a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from reference import other_scores
from scoring import member_pool, read_table, run_cli
from test_score_boxes import make_pool

N, C, M = 60, 4, 5


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture
def inputs(tmp_path):
    """Members of both kinds in one folder: .npy arrays and COCO results files, with their pool."""
    _, paths, members, labels = member_pool(tmp_path, seed=2, shape=(M, N, C), name="m{}.npy")
    annotations, results = make_pool(tmp_path)
    return tmp_path, paths, members, labels, annotations, results


def _commands(folder: Path, paths, annotations, results, state: Path, out: Path) -> dict[str, list[str]]:
    common = ["-b", "5", "-o", str(out), "--state", str(state)]
    return {
        "arrays": ["score", *paths, "-f", "entropy", *common],
        "annotations": ["score", "--annotations", str(annotations), *map(str, results), "-f", "entropy", *common],
    }


FOREIGN = {
    "a user's file": {"notes.txt": b"mine"},
    "files named like ours": {"member_000.json": b'{"mine": 1}', "progress.npz": b"mine", "metadata.json": b"{}"},
}


@pytest.mark.parametrize("command", ["arrays", "annotations"])
@pytest.mark.parametrize("contents", FOREIGN.values(), ids=FOREIGN.keys())
def test_every_state_directory_option_refuses_a_directory_that_is_not_its_own(inputs, capsys, command, contents):
    folder, paths, _, _, annotations, results = inputs
    theirs = folder / "theirs"
    theirs.mkdir()
    for name, data in contents.items():
        (theirs / name).write_bytes(data)
    before, inputs_before = _digest(theirs), _digest(folder)
    out = folder / "out.csv"
    code, stdout, stderr = run_cli(_commands(folder, paths, annotations, results, theirs, out)[command], capsys)
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    assert stderr.startswith(f"subsetsearch: error: --state '{theirs}' exists and is not a subsetsearch directory")
    assert len(stderr.strip().splitlines()) == 1
    assert _digest(theirs) == before and _digest(folder) == inputs_before and not out.exists()


def test_the_readmes_example_with_the_state_in_the_inputs_folder_touches_no_input(inputs, capsys, monkeypatch):
    """``cp m1.json member_000.json; ... --state .``: the folder holds the inputs, so it is refused."""
    folder, _, _, _, _annotations, results = inputs
    shutil.copy(results[0], folder / "member_000.json")
    shutil.copy(results[1], folder / "member_001.json")
    monkeypatch.chdir(folder)
    before = _digest(folder)
    args = ["score", "--annotations", "ann.json", "member_000.json", "member_001.json", "-f", "entropy", "-b", "1"]
    code, _, stderr = run_cli([*args, "-o", "out.csv", "--state", "."], capsys)
    assert code == 2 and "is not a subsetsearch directory" in stderr
    assert _digest(folder) == before


@pytest.mark.parametrize("command", ["arrays", "annotations"])
@pytest.mark.parametrize("option", ["-o", "--scores-out"])
def test_a_state_that_is_an_output_path_is_refused_before_any_work(inputs, capsys, command, option):
    folder, paths, _, _, annotations, results = inputs
    same = folder / "same.csv"
    args = _commands(folder, paths, annotations, results, same, folder / "out.csv")[command]
    if option == "--scores-out":
        args += ["--scores-out", str(same)]
    else:
        args[args.index("-o") + 1] = str(same)
    code, _, stderr = run_cli(args, capsys)
    named = "--out" if option == "-o" else option
    assert code == 2 and f"--state and {named} are both '{same}'" in stderr
    assert not same.exists() and not (folder / "out.csv").exists()


@pytest.mark.parametrize("state", ["s.npz", "dir"])
def test_an_ordered_state_refuses_its_members_in_another_order(inputs, capsys, state):
    """Scoring m0..m4 into a state, then the same members with m0 and m1 swapped: the old order's
    forgetting would come back; the state names the member that moved instead."""
    folder, paths, members, labels, _, _ = inputs
    args = ["--labels", str(folder / "y.npy"), "-f", "forgetting", "-b", "5", "--state", str(folder / state)]
    code, _, err = run_cli(
        ["score", *paths, *args, "-o", str(folder / "a.csv"), "--scores-out", str(folder / "all.csv")], capsys
    )
    assert code == 0, err
    np.testing.assert_allclose(read_table(folder / "all.csv")["score"], other_scores(members, labels, "forgetting"))
    swapped = [paths[1], paths[0], *paths[2:]]
    code, _, err = run_cli(["score", *swapped, *args, "-o", str(folder / "b.csv")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"member '{Path(paths[0]).resolve()}' was member 1 of the state's order and is member 2 now" in err
    assert "give the members in the order of the --state" in err and not (folder / "b.csv").exists()
    code, _, err = run_cli(["score", *paths, *args, "-o", str(folder / "c.csv")], capsys)  # the same order resumes
    assert code == 0, err


def test_an_annotation_state_keys_on_content_and_names_what_differs(inputs, capsys):
    folder, _, _, _, annotations, results = inputs
    state, out = folder / "state", folder / "out.csv"
    args = ["score", "--annotations", str(annotations), *map(str, results), "-b", "5", "-o", str(out)]
    assert run_cli([*args, "-f", "entropy", "--state", str(state)], capsys)[0] == 0
    first = read_table(out)
    stat = annotations.stat()
    os.utime(annotations, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: the same content
    out.unlink()
    code, _, err = run_cli([*args, "-f", "entropy", "--state", str(state)], capsys)
    assert code == 0, err
    assert read_table(out) == first
    code, _, err = run_cli([*args, "-f", "variation_ratios", "--state", str(state)], capsys)
    assert code == 2 and "was made for other inputs (functions entropy, not variation_ratios)" in err
    data = json.loads(annotations.read_text())
    data["images"][0]["width"] += 1
    annotations.write_text(json.dumps(data))
    code, _, err = run_cli([*args, "-f", "entropy", "--state", str(state)], capsys)
    assert code == 2 and "another annotation file (its content differs)" in err


@pytest.mark.parametrize("damage", ["progress.npz", "inputs.json"])
def test_a_damaged_annotation_state_is_one_line(inputs, capsys, damage):
    folder, _, _, _, annotations, results = inputs
    state, out = folder / "state", folder / "out.csv"
    args = ["score", "--annotations", str(annotations), *map(str, results), "-f", "entropy", "-b", "5"]
    assert run_cli([*args, "-o", str(out), "--state", str(state)], capsys)[0] == 0
    path = state / damage
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    code, stdout, err = run_cli([*args, "-o", str(folder / "again.csv"), "--state", str(state)], capsys)
    assert code == 2 and stdout == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert damage in err and not (folder / "again.csv").exists()
