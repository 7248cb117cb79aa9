"""The command line against generated inputs, good and bad (hypothesis): every call either scores
correctly, against the scores computed here from the files' own values, or fails with one line and
exit 2 (1 for an OS error); never a traceback; nothing written outside the paths it was given to
write; no input changed. Inputs made valid by construction must score."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from reference import direct_scores, other_scores
from scoring import read_table

from subsetsearch.boxmaps import Boxes, box_image_scores
from subsetsearch.cli import main
from subsetsearch.internal.budgets import parse_budget
from subsetsearch.internal.coco import read_instances

FUNCTIONS = ["entropy", "mutual_information", "variation_ratios", "error_count", "margin", "el2n", "forgetting"]


def _call(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def _check_call(folder: Path, args: list[str], outputs: list[Path], expect_ok: bool) -> tuple[int, str]:
    """Run ``args`` in ``folder``; check the promises that hold whatever the outcome."""
    inputs = _files(folder)
    code, stdout, stderr = _call(args)
    event(f"exit {code}, {'valid' if expect_ok else 'some input bad'}")
    assert "Traceback" not in stderr, stderr
    after = _files(folder)
    changed = [name for name, digest in inputs.items() if after.get(name) != digest]
    assert changed == [], f"inputs changed: {changed}"
    written = {name for name in after if name not in inputs}
    allowed = tuple(str(p.relative_to(folder)) for p in outputs)
    assert all(name.startswith(allowed) for name in written), f"written outside the outputs: {written - set(allowed)}"
    if code == 0:
        assert all(p.exists() for p in outputs[:1])
    else:
        assert (
            code in (1, 2) and len(stderr.strip().splitlines()) == 1 and stderr.startswith("subsetsearch: error: ")
        ), stderr
        assert not outputs[0].exists()
        assert not expect_ok, f"valid inputs failed: {stderr}"
    return code, stdout


TOLERANCE = 1e-5


def _top_k_holds(chosen: np.ndarray, reference: np.ndarray, skipped: int) -> None:
    """``chosen`` is distinct rows, after the ``skipped`` highest are set aside: none scores above the
    lowest of those set aside, and none below a row left out that scores under them (ties either way)."""
    assert len(chosen) == len(set(chosen.tolist()))
    ranked = np.sort(reference)[::-1]
    ceiling = ranked[skipped - 1] if skipped else np.inf
    assert (reference[chosen] <= ceiling + TOLERANCE).all()
    left = np.setdiff1d(np.flatnonzero(reference < ceiling - TOLERANCE), chosen)
    if left.size and len(chosen):
        assert reference[chosen].min() >= reference[left].max() - TOLERANCE


@st.composite
def member_inputs(draw):
    m, n, c = draw(st.integers(1, 4)), draw(st.integers(4, 24)), draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**16))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    logits = draw(st.booleans())
    defect = draw(st.sampled_from(["none"] * 12 + ["nan", "negative", "shape", "truncated", "text", "int"]))
    labels = draw(st.sampled_from(["good"] * 8 + ["none", "range", "length", "float"]))
    functions = draw(st.lists(st.sampled_from([*FUNCTIONS, "bogus"]), min_size=1, max_size=3, unique=True))
    budget = draw(st.sampled_from(["0.5", "25%", "3", "1.5", "0", "x", str(n + 5)]))
    skip_top = draw(st.sampled_from([0.0, 0.0, 0.2, 1.0, -0.1]))
    scores_out = draw(st.sampled_from([None, "all.csv", "all.parquet", "out.csv"]))
    state = draw(st.sampled_from([None, None, "s.npz", "sdir", "out.csv"]))
    return m, n, c, seed, dtype, logits, defect, labels, functions, budget, skip_top, scores_out, state


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(member_inputs())
# one member, one row short, no labels: a valid 3-row pool, not a defect (found by hypothesis)
@example((1, 4, 2, 4, np.float16, False, "shape", "none", ["entropy"], "0.5", 0.0, "all.csv", None))
def test_score_on_generated_members_scores_right_or_fails_cleanly(case):
    m, n, c, seed, dtype, logits, defect, labels_kind, functions, budget, skip_top, scores_out, state = case
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        raw = rng.normal(size=(m, n, c)) * 3 if logits else rng.dirichlet(np.full(c, 0.5), size=(m, n))
        members = raw.astype(dtype)
        if not logits:
            members = members.astype(np.float64)
            members /= members.sum(axis=2, keepdims=True)
            members = members.astype(dtype)
        if defect == "shape" and m == 1 and labels_kind == "none":
            # a lone member one row short has nothing to disagree with: a valid pool of n - 1 rows
            members, n, defect = members[:, :-1], n - 1, "none"
        paths = []
        for j, member in enumerate(members):
            paths.append(folder / f"epoch_{j + 1}.npy")
            np.save(paths[-1], member)
        if defect != "none":
            bad = paths[-1]
            if defect == "nan":
                np.save(bad, np.where(np.arange(n)[:, None] == 0, np.nan, members[-1]).astype(dtype))
            elif defect == "negative" and not logits:
                np.save(bad, -np.abs(members[-1]))
            elif defect == "shape":
                np.save(bad, members[-1][:-1])
            elif defect == "truncated":
                bad.write_bytes(bad.read_bytes()[:-7])
            elif defect == "text":
                bad.write_text("not an array")
            elif defect == "int":
                np.save(bad, np.ones((n, c), dtype=np.int64))
        labels = rng.integers(0, c, n)
        label_args = []
        if labels_kind != "none":
            stored = {"good": labels, "range": labels + c, "length": labels[:-1], "float": labels + 0.5}[labels_kind]
            np.save(folder / "y.npy", stored)
            label_args = ["--labels", str(folder / "y.npy")]
        out = folder / "out.csv"
        args = ["score", *map(str, paths), "-f", ",".join(functions), "-b", budget, "-o", str(out)]
        args += label_args + (["--logits"] if logits else []) + ["--skip-top", str(skip_top)]
        outputs = [out]
        if scores_out is not None:
            args += ["--scores-out", str(folder / scores_out)]
            outputs.append(folder / scores_out)
        if state is not None:
            args += ["--state", str(folder / state)]
            outputs += [folder / state, folder / (Path(state).stem + ".dynamics.npz")]
        pool_k = parse_budget(budget, n) if budget in ("0.5", "25%", "3") else None
        expect_ok = (
            defect == "none"
            and labels_kind in ("good", "none")
            and "bogus" not in functions
            and (labels_kind == "good" or not {"error_count", "el2n", "forgetting"} & set(functions))
            and pool_k is not None
            and 1 <= pool_k <= n - int(skip_top * n)
            and 0 <= skip_top < 1
            and scores_out != "out.csv"
            and state != "out.csv"
        )
        code, _ = _check_call(folder, args, outputs, expect_ok)
        if code != 0:
            return
        probs = members.astype(np.float64)
        if logits:
            probs = np.exp(probs - probs.max(axis=2, keepdims=True))
        probs /= probs.sum(axis=2, keepdims=True)
        first = functions[0]
        given = labels if labels_kind == "good" else None
        reference = direct_scores(probs, given) if first in direct_scores(probs, given) else None
        reference = reference[first] if reference is not None else other_scores(probs, given, first)
        chosen = np.asarray(read_table(out)["index"])
        assert len(chosen) == pool_k
        _top_k_holds(chosen, reference, int(skip_top * n))
        if scores_out is not None:
            every = read_table(folder / scores_out)
            column = every["score"] if len(functions) == 1 else every[first]
            np.testing.assert_allclose(column, reference, atol=TOLERANCE)


@st.composite
def box_inputs(draw):
    seed = draw(st.integers(0, 2**16))
    images, members = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    defect = draw(
        st.sampled_from(
            ["none"] * 6 + ["image_id", "float_id", "score", "bool_score", "bbox", "cut", "bom", "category"]
        )
    )
    names = ["entropy", "mutual_information", "variation_ratios", "error_count"] * 3 + ["margin"]
    functions = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    stride = draw(st.sampled_from(["4"] * 4 + ["2.5"] * 3 + ["0", "inf", "nan"]))
    state = draw(st.sampled_from([None, None, "st", "st", "out.csv"]))
    return seed, images, members, defect, functions, stride, state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(box_inputs())
def test_score_on_generated_box_lists_scores_right_or_fails_cleanly(case):
    seed, n, m, defect, functions, stride, state = case
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        sizes = rng.integers(8, 40, (n, 2))
        images = [
            {"id": 10 + i, "file_name": f"{i}.jpg", "width": int(w), "height": int(h)} for i, (w, h) in enumerate(sizes)
        ]
        truth = []
        for im in images:
            for _ in range(int(rng.integers(0, 3))):
                w, h = rng.integers(1, 8, 2)
                truth.append(
                    {"image_id": im["id"], "category_id": int(rng.choice([1, 2])), "bbox": [0, 0, int(w), int(h)]}
                )
        pool = {"images": images, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "annotations": truth}
        (folder / "pool.json").write_text(json.dumps(pool))
        paths = []
        for j in range(m):
            dets = []
            for im in images:
                for _ in range(int(rng.integers(0, 4))):
                    x, y, w, h = (float(v) for v in (*rng.integers(-4, 30, 2), *rng.integers(0, 20, 2)))
                    category, score = int(rng.choice([1, 2])), float(rng.integers(0, 65)) / 64
                    dets.append({"image_id": im["id"], "category_id": category, "bbox": [x, y, w, h], "score": score})
            paths.append(folder / f"m{j}.json")
            paths[-1].write_text(json.dumps(dets))
        bad = paths[-1]
        bad_entry = {"image_id": images[0]["id"], "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.5}
        changes = {
            "image_id": {"image_id": 999}, "float_id": {"image_id": images[0]["id"] + 0.5}, "score": {"score": 1.5},
            "bool_score": {"score": True}, "bbox": {"bbox": [0, 0, 2]}, "category": {"category_id": 7},
        }  # fmt: skip
        if defect in changes:
            bad.write_text(json.dumps([*json.loads(bad.read_text()), {**bad_entry, **changes[defect]}]))
        elif defect == "cut":
            bad.write_text(json.dumps([bad_entry, bad_entry])[:-12])
        elif defect == "bom":
            bad.write_bytes(b"\xef\xbb\xbf" + bad.read_bytes())
        out = folder / "out.csv"
        every = folder / "all.csv"
        args = ["score", "--annotations", str(folder / "pool.json"), *map(str, paths), "-f", ",".join(functions)]
        args += ["-b", "1", "-o", str(out), "--scores-out", str(every), "--stride", stride]
        outputs = [out, every]
        if state is not None:
            args += ["--state", str(folder / state)]
            outputs.append(folder / state)
        expect_ok = (
            defect in ("none", "bom") and "margin" not in functions and stride in ("4", "2.5") and state != "out.csv"
        )
        code, _ = _check_call(folder, args, outputs, expect_ok)
        if code != 0:
            return
        coco = read_instances(folder / "pool.json")
        row = {int(i): r for r, i in enumerate(coco.image_ids)}
        label = {1: 0, 2: 1}

        def boxes(entries, scored):
            xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (e["bbox"] for e in entries)]).reshape(-1, 4)
            return Boxes([row[e["image_id"]] for e in entries], [label[e["category_id"]] for e in entries], xyxy,
                         [e["score"] for e in entries] if scored else None)  # fmt: skip

        ensemble = [boxes(json.loads(p.read_bytes().decode("utf-8-sig")), True) for p in paths]
        table = read_table(every)
        for f in functions:
            expected = box_image_scores(ensemble, f, image_sizes=coco.sizes, num_classes=2, stride=float(stride),
                                        truth=boxes(truth, False))  # fmt: skip
            got = table["score"] if len(functions) == 1 else table[f]
            np.testing.assert_allclose(got, expected, atol=1e-12)
