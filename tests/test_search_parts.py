"""The three parts of a search: the scheme table drives the config's checks, the dataset table drives
the data section, and work is shared by fingerprint, so a change of seeding shares nothing."""

from __future__ import annotations

import json
import typing

import pyarrow.parquet as pq
import pytest
from test_run import BASE

from subsetsearch.errors import InputError
from subsetsearch.pipeline.config import DataConfig, SearchConfig, parse_config
from subsetsearch.pipeline.schemes import DETECTION_SCHEMES, SCHEMES
from subsetsearch.pipeline.search import Search
from subsetsearch.pipeline.study import StudyWork
from subsetsearch.pipeline.task import Task
from subsetsearch.rundir import RunLayout
from subsetsearch.train.data import DATASETS


def test_the_config_offers_exactly_the_registered_schemes_and_datasets():
    assert typing.get_args(SearchConfig.model_fields["scheme"].annotation) == tuple(SCHEMES)
    assert typing.get_args(DataConfig.model_fields["dataset"].annotation) == (*DATASETS, "coco")
    assert DETECTION_SCHEMES == ("build_up", "auto_duplication", "random", "full")


def _config(scheme: str, **changes) -> dict:
    budgets = [0.2, 0.4] if SCHEMES[scheme].min_budgets[0] > 1 else [0.4]
    return {**json.loads(json.dumps(BASE)), "search": {"scheme": scheme, "budgets": budgets}, **changes}


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_each_schemes_attributes_are_what_the_config_allows(scheme):
    """What a scheme's class says decides the config's checks: a last step of its own for
    final_ensemble, an unscored subset for score_subset, an ensemble for the outlier rule, the
    detection task, the fewest budgets."""
    cls = SCHEMES[scheme]
    allowed = {
        "final_ensemble": ({"final_ensemble": {"kind": "checkpoints", "start": 2, "stop": 3}}, cls.last_step),
        "score_subset": ({"search": {**_config(scheme)["search"], "score_subset": True}}, cls.leaves_subset_unscored),
        "skip_disagreement": ({"search": {**_config(scheme)["search"], "skip_disagreement": True}}, cls.ensemble),
    }
    for key, (change, expected) in allowed.items():
        if expected:
            parse_config(_config(scheme, **change))
        else:
            with pytest.raises(InputError, match=key):
                parse_config(_config(scheme, **change))
    detection = {"task": "detection", "data": {"dataset": "fashion_mnist"}, "train": {"epochs": 3}}
    if cls.detection:
        parse_config({**_config(scheme), **detection, "model": {"name": "centernet_unet"}})
    else:
        with pytest.raises(InputError, match=f"'{scheme}' is not available for detection"):
            parse_config({**_config(scheme), **detection, "model": {"name": "centernet_unet"}})
    fewest, why = cls.min_budgets
    if fewest > 1:
        with pytest.raises(InputError, match=f"{scheme} needs {why.split(',')[0]}"):
            parse_config({**_config(scheme), "search": {"scheme": scheme, "budgets": [0.2]}})


@pytest.mark.parametrize("name", list(DATASETS))
def test_each_datasets_path_rule_is_what_the_config_checks(name):
    rule = DATASETS[name].path
    without = {"dataset": name}
    if rule == "required":
        with pytest.raises(InputError, match=f"data.path is required for dataset '{name}'"):
            parse_config({"data": without})
    else:
        parse_config({"data": without})
    if rule == "refused":
        with pytest.raises(InputError, match=f"data.path is not used by the built-in {name}"):
            parse_config({"data": {**without, "path": "x"}})


# -- work shared by fingerprint ------------------------------------------------------------------------------

RUN = {**BASE, "search": {"scheme": "build_up", "budgets": [0.2, 0.4]}, "compare": ["random"]}


def _inodes(layout: RunLayout) -> dict[str, int]:
    skip = (
        "metrics.json",
        "work.json",
        "config.yaml",
        "dataset.npz",
        "subset.parquet",
        "subsetsearch.json",
        "subsetsearch.lock",
    )
    return {
        str(p.relative_to(layout.root)): p.stat().st_ino
        for p in layout.root.rglob("*")
        if p.is_file() and str(p.relative_to(layout.root)) not in skip
    }


def test_a_run_takes_only_work_whose_fingerprint_it_shares(tmp_path, monkeypatch):
    """The same config in a second directory takes every piece of the first (hard links) and
    reaches the same subset; a change of the ensembles' seeding (the same config, the same paths)
    takes the random start and the baseline, never a training run or what it scored."""
    config = parse_config(RUN)
    donor = RunLayout(tmp_path / "donor")
    Search(config, donor.root).run()
    shared = StudyWork()
    shared.add(donor)
    same = RunLayout(tmp_path / "same")
    Search(config, same.root, shared=shared).run()
    theirs, ours = _inodes(donor), _inodes(same)
    assert ours == theirs  # every piece: the steps, the training runs, the statistics, the subset models
    a, b = pq.read_table(same.subset).to_pydict(), pq.read_table(donor.subset).to_pydict()
    assert all(a[key] == b[key] for key in ("index", "multiplicity", "iteration"))
    original = Task.member_run_seed
    monkeypatch.setattr(Task, "member_run_seed", lambda self, i, r: original(self, i, r) + 1)  # seeding changed
    reseeded = RunLayout(tmp_path / "reseeded")
    Search(config, reseeded.root, shared=shared).run()
    other = _inodes(reseeded)
    taken = {path for path, inode in other.items() if theirs.get(path) == inode}
    assert taken == {path for path in other if path.startswith(("iter_00/", "models/random/"))}
    assert any(path.startswith("iter_01/members/") for path in other)
    pieces = json.loads(reseeded.work.read_text())["pieces"]
    assert pieces["iter_01/members/run_0"] != json.loads(donor.work.read_text())["pieces"]["iter_01/members/run_0"]
