"""The light install: the core and ``score`` need no extra; every other part names the extra it needs.

Here the extras' packages are hidden from a child process (its import system cannot find them);
``tests/test_package.py`` checks the same with the real wheel in a venv that never had them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from subsetsearch import cli
from subsetsearch.internal.extras import EXTRAS, MissingExtraError, extra_of, missing_modules, require_extra

ROOT = Path(__file__).resolve().parents[1]

HIDE = """
import importlib.machinery, sys
HIDDEN = set(sys.argv[1].split(","))
class Hide(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)
sys.meta_path = [Hide if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
del sys.argv[1]
"""


def run_hiding(hidden: list[str], code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python that cannot import the modules ``hidden``."""
    return subprocess.run(
        [sys.executable, "-c", HIDE + code, ",".join(hidden)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def cli_hiding(hidden: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = f"import sys\nfrom subsetsearch.cli import main\nsys.exit(main({args!r}))"
    return run_hiding(hidden, code, cwd)


def requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        name = requirement.split(";")[0].split("[")[0]
        for sign in "<>=!~ ":
            name = name.split(sign)[0]
        names.add(name.strip().lower())
    return names


def test_extras_table_matches_pyproject():
    """The module table behind the error messages lists exactly the packages pyproject.toml installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        assert requirement_names(optional[extra]) - {"subsetsearch"} == set(modules.values()), extra
    core = requirement_names(project["dependencies"])
    assert core == {"numpy", "numba", "pyarrow", "typer", "rich"}
    assert not core & {package for modules in EXTRAS.values() for package in modules.values()}
    assert set(optional["all"][0].partition("[")[2].rstrip("]").split(",")) == set(EXTRAS)


def test_extra_of_maps_submodules_to_their_extra():
    assert extra_of("torch.nn.functional") == "train"
    assert extra_of("PIL.Image") == "train"
    assert extra_of("sklearn") == "train"
    assert extra_of("lightning.pytorch") == "lightning"
    assert extra_of("transformers.trainer") == "hf"
    assert extra_of("zarr") == "zarr"
    assert extra_of("numpy") is None
    assert extra_of("torchvision") is None  # a prefix of a name is not the name


def test_require_extra_passes_here_and_names_what_is_missing(monkeypatch):
    require_extra("train", what="x")  # the test environment has every extra
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None if name in ("torch", "PIL") else object())
    assert missing_modules("train") == ["torch", "pillow"]
    with pytest.raises(
        MissingExtraError,
        match=r"^subsetsearch run needs torch, pillow, not installed here; run: "
        r"pip install 'subsetsearch\[train\]'$",
    ):
        require_extra("train", what="subsetsearch run")


@pytest.mark.parametrize(
    ("command", "hidden", "missing"),
    [
        ("run", ["torch"], "torch"),
        ("study", ["torch", "sklearn"], "torch, scikit-learn"),
        ("report", ["matplotlib"], "matplotlib"),  # report reads run directories: no torch needed
    ],
)
def test_commands_without_train_say_which_extra_and_write_nothing(tmp_path, command, hidden, missing):
    args = {
        "run": ["run", str(ROOT / "configs" / "demo.yaml"), "--run-dir", "out"],
        "study": ["study", str(ROOT / "configs" / "studies" / "schemes.yaml"), "--study-dir", "out"],
        "report": ["report", "out"],
    }[command]
    if command == "report":
        (tmp_path / "out").mkdir()
    before = sorted(tmp_path.rglob("*"))
    done = cli_hiding(hidden, args, tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"subsetsearch: error: subsetsearch {command} needs {missing}, not installed here; "
        "run: pip install 'subsetsearch[train]'\n"
    )
    assert sorted(tmp_path.rglob("*")) == before


def test_schema_needs_no_extra(tmp_path):
    """The schema comes from pydantic, which the core's CLI library brings: no train extra needed."""
    hidden = sorted({module for modules in EXTRAS.values() for module in modules} - {"pydantic"})
    done = cli_hiding(hidden, ["schema"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads((ROOT / "docs" / "schemas" / "run-config.schema.json").read_text())


def test_score_needs_no_extra(tmp_path):
    """score with every extra's package hidden: the subset of a hand-computed example, and no torch loaded."""
    # three members, two classes; entropy of p̄ by hand: row 2: p̄ = (0.5, 0.5), ln 2; row 0: (0.7, 0.3);
    # row 3: (0.9, 0.1); rows 1 and 4: (1, 0), 0.
    members = [
        [[0.7, 0.3], [1, 0], [0.2, 0.8], [0.9, 0.1], [1, 0]],
        [[0.7, 0.3], [1, 0], [0.8, 0.2], [0.9, 0.1], [1, 0]],
        [[0.7, 0.3], [1, 0], [0.5, 0.5], [0.9, 0.1], [1, 0]],
    ]
    for m, member in enumerate(members):
        np.save(tmp_path / f"m{m}.npy", np.array(member, dtype=np.float32))
    # pydantic stays: typer, the CLI library of the core, requires it
    hidden = sorted({module for modules in EXTRAS.values() for module in modules} - {"pydantic"})
    args = ["score", "m0.npy", "m1.npy", "m2.npy", "-f", "entropy", "-b", "3", "-o", "subset.csv"]
    code = (
        f"import sys\nfrom subsetsearch.cli import main\ncode = main({args!r})\n"
        f"assert not set(sys.modules) & {set(hidden)!r}, 'an extra was imported'\n"
        "sys.exit(code)"
    )
    done = run_hiding(hidden, code, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [line.split(",") for line in (tmp_path / "subset.csv").read_text().splitlines()[1:]]
    assert [int(index) for index, _ in rows] == [2, 0, 3]

    def entropy(p):
        return -sum(q * np.log(q) for q in p if q > 0)

    expected = [np.log(2), entropy([0.7, 0.3]), entropy([0.9, 0.1])]
    np.testing.assert_allclose([float(score) for _, score in rows], expected, atol=1e-6)


def test_torch_subpackage_without_torch_names_the_extra(tmp_path):
    done = run_hiding(["torch"], "import subsetsearch.torch", tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "subsetsearch.internal.extras.MissingExtraError: subsetsearch.torch needs torch, not installed here; "
        "run: pip install 'subsetsearch[train]'"
    )


def test_lightning_callback_without_lightning_names_the_extra(tmp_path):
    done = run_hiding(["lightning", "pytorch_lightning"], "import subsetsearch.torch.lightning", tmp_path)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("needs PyTorch Lightning, not installed; run: pip install 'subsetsearch[lightning]'")
    )


def test_hugging_face_callback_without_transformers_names_the_extra(tmp_path):
    done = run_hiding(["transformers"], "import subsetsearch.hf", tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "subsetsearch.internal.extras.MissingExtraError: subsetsearch.hf needs Hugging Face transformers, not "
        "installed; run: pip install 'subsetsearch[hf]'"
    )


def test_main_names_the_extra_of_a_package_missing_deep_inside(monkeypatch, capsys):
    """A lazy import that fails past the up-front checks still ends in one line naming the extra."""

    def app(**kwargs):
        raise ModuleNotFoundError("No module named 'pycocotools'", name="pycocotools.coco")

    monkeypatch.setattr(cli, "app", app)
    assert cli.main(["report", "x"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "subsetsearch: error: pycocotools is not installed here; run: pip install 'subsetsearch[train]'\n"
    )

    def other(**kwargs):
        raise ModuleNotFoundError("No module named 'nothing_of_ours'", name="nothing_of_ours")

    monkeypatch.setattr(cli, "app", other)
    with pytest.raises(ModuleNotFoundError):  # not an extra's: a real bug, shown as one
        cli.main(["report", "x"])
