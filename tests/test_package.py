"""The package as a user installs it: the wheel and the sdist build, and the wheel without extras
works for ``subsetsearch score`` in a fresh venv where PyTorch cannot be imported.

The venv is made once per test session (a minute with pip's cache; the first time on a machine
it downloads NumPy, Numba and pyarrow from PyPI).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

import subsetsearch

ROOT = Path(__file__).resolve().parents[1]
VERSION = subsetsearch.__version__


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


@pytest.fixture(scope="module")
def light_venv(dist, tmp_path_factory) -> Path:
    """A venv holding the wheel and its core dependencies only (no extras), at the tested versions."""
    home = tmp_path_factory.mktemp("light-venv")
    venv.create(home, with_pip=True)
    wheel = next(dist.glob("*.whl"))
    done = subprocess.run(
        [str(home / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return home


def test_wheel_and_sdist_hold_what_users_need(dist):
    wheel = zipfile.ZipFile(next(dist.glob(f"subsetsearch-{VERSION}-py3-none-any.whl")))
    names = set(wheel.namelist())
    assert "subsetsearch/py.typed" in names
    assert "subsetsearch/internal/kernels.py" in names and "subsetsearch/torch/scorer.py" in names
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)
    entry_points = wheel.read(f"subsetsearch-{VERSION}.dist-info/entry_points.txt").decode()
    assert "subsetsearch = subsetsearch.cli:main" in entry_points
    metadata = wheel.read(f"subsetsearch-{VERSION}.dist-info/METADATA").decode()
    required = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = [line for line in required if "extra ==" not in line]
    assert sorted(line.split()[1].split(">")[0] for line in core) == ["numba", "numpy", "pyarrow", "rich", "typer"]
    assert any("torch" in line and 'extra == "train"' in line for line in required)

    with tarfile.open(next(dist.glob(f"subsetsearch-{VERSION}.tar.gz"))) as sdist:
        members = {name.partition("/")[2] for name in sdist.getnames()}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "CITATION.cff", "src/subsetsearch/py.typed"} <= members


def test_light_install_has_no_torch(light_venv):
    python = str(light_venv / "bin" / "python")
    for module in ("torch", "matplotlib", "sklearn", "pycocotools", "safetensors", "ray", "zarr", "lightning"):
        done = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
        assert done.returncode == 1 and f"No module named '{module}'" in done.stderr, module
    version = subprocess.run([str(light_venv / "bin" / "subsetsearch"), "--version"], capture_output=True, text=True)
    assert version.stdout == f"subsetsearch {VERSION}\n"


def test_light_install_scores_files(light_venv, tmp_path):
    """score in the light venv: mutual information of a hand-made ensemble, and the top rows by hand."""
    # two members, two classes; MI = H[p̄] - mean H[pₘ]:
    # row 0: (1, 0) and (0, 1): ln 2 - 0 = ln 2; row 1: both (0.5, 0.5): 0;
    # row 2: (0.9, 0.1) and (0.5, 0.5): H(0.7, 0.3) - (H(0.9, 0.1) + ln 2) / 2; row 3: both (1, 0): 0.
    first = np.array([[1, 0], [0.5, 0.5], [0.9, 0.1], [1, 0]], dtype=np.float32)
    second = np.array([[0, 1], [0.5, 0.5], [0.5, 0.5], [1, 0]], dtype=np.float32)
    (tmp_path / "members").mkdir()
    np.save(tmp_path / "members" / "epoch1.npy", first)
    np.save(tmp_path / "members" / "epoch2.npy", second)
    done = subprocess.run(
        [str(light_venv / "bin" / "subsetsearch"), "score", "members", "--function", "mutual_information",
         "--budget", "2", "--out", "subset.csv", "--scores-out", "scores.csv"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    def entropy(*p):
        return -sum(q * np.log(q) for q in p if q > 0)

    expected = [np.log(2), 0.0, entropy(0.7, 0.3) - (entropy(0.9, 0.1) + np.log(2)) / 2, 0.0]
    scores = [line.split(",") for line in (tmp_path / "scores.csv").read_text().splitlines()[1:]]
    np.testing.assert_allclose([float(s) for _, s in sorted(scores, key=lambda r: int(r[0]))], expected, atol=1e-6)
    chosen = [int(line.split(",")[0]) for line in (tmp_path / "subset.csv").read_text().splitlines()[1:]]
    assert chosen == [0, 2]


def test_light_install_scores_a_detectors_boxes(light_venv, tmp_path):
    """score --annotations in the light venv (no PyTorch, no Pillow), against values by hand."""
    instances = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8},
                   {"id": 2, "file_name": "b.jpg", "width": 8, "height": 8}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [],
    }  # fmt: skip
    (tmp_path / "pool.json").write_text(json.dumps(instances))
    # a 4x4 box: one cell at stride 4, whose probability is the box's score. Image 1: the members say
    # 1.0 and 0.5 there, mean (0.25, 0.75) for (no object, object); image 2: both say 0.5, mean 0.5.
    first = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 1.0},
             {"image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.5}]  # fmt: skip
    second = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.5},
              {"image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.5}]  # fmt: skip
    (tmp_path / "m1.json").write_text(json.dumps(first))
    (tmp_path / "m2.json").write_text(json.dumps(second))
    done = subprocess.run(
        [str(light_venv / "bin" / "subsetsearch"), "score", "--annotations", "pool.json", "m1.json", "m2.json",
         "-f", "entropy", "-b", "1", "-o", "subset.csv", "--scores-out", "scores.csv"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split(",") for line in (tmp_path / "scores.csv").read_text().splitlines()[1:]]
    assert [(int(r[1]), r[2]) for r in rows] == [(1, '"a.jpg"'), (2, '"b.jpg"')]  # index, image_id, file_name, score
    h = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose([float(r[3]) for r in rows], [h, np.log(2)], atol=1e-6)
    assert [line.split(",")[1] for line in (tmp_path / "subset.csv").read_text().splitlines()[1:]] == ["2"]


def test_light_install_names_the_extra_of_every_other_command(light_venv, tmp_path):
    """run and subsetsearch.torch: one line naming the extra, nothing written; schema works."""
    cli = str(light_venv / "bin" / "subsetsearch")
    done = subprocess.run(
        [cli, "run", str(ROOT / "configs" / "demo.yaml"), "--run-dir", "out"], capture_output=True, text=True,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("subsetsearch: error: subsetsearch run needs torch, ")
    assert done.stderr.endswith("not installed here; run: pip install 'subsetsearch[train]'\n")
    assert list(tmp_path.iterdir()) == []
    done = subprocess.run([str(light_venv / "bin" / "python"), "-c", "import subsetsearch.torch"], capture_output=True,
                          text=True)  # fmt: skip
    assert "run: pip install 'subsetsearch[train]'" in done.stderr.splitlines()[-1]
    schema = subprocess.run([cli, "schema"], capture_output=True, text=True, cwd=tmp_path)
    assert schema.returncode == 0
    assert json.loads(schema.stdout) == json.loads((ROOT / "docs" / "schemas" / "run-config.schema.json").read_text())
    zarr_member = tmp_path / "member.zarr"
    zarr_member.mkdir()
    done = subprocess.run([cli, "score", str(zarr_member), "-f", "entropy", "-b", "1", "-o", "s.csv"],
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'subsetsearch[zarr]'" in done.stderr and len(done.stderr.splitlines()) == 1


def test_version_is_one_everywhere():
    """The package, CITATION.cff and the changelog's newest release name the same version (an
    "Unreleased" section above it collects what comes next, as Keep a Changelog has it)."""
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == VERSION
    assert citation["preferred-citation"]["identifiers"][0]["value"] == "arXiv:1905.12737"
    headings = [line for line in (ROOT / "CHANGELOG.md").read_text().splitlines() if line.startswith("## ")]
    newest = next(line for line in headings if line != "## Unreleased")
    assert headings.index(newest) <= 1  # at most the one Unreleased section above it
    assert newest.startswith(f"## {VERSION} - ")
