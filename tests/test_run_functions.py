"""``subsetsearch run`` with the functions users compare ours with: compress scores the whole pool
once with one run's checkpoints, as the data-pruning literature does; ordered functions merge
each shard's members in epoch order however the executor returns them."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from reference import other_scores
from test_run import BASE, _member_probs

from subsetsearch.dynamics import TrainingDynamics
from subsetsearch.errors import InputError
from subsetsearch.executors import LocalExecutor
from subsetsearch.internal.ledger import Ledger
from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.search import Search

CONFIG = {
    **BASE,
    "search": {"scheme": "compress", "budgets": [0.3]},
    "ensemble": {"kind": "checkpoints", "start": 1, "stop": 3},
}


def config(function: str, window: int = 2):
    return parse_config({**CONFIG, "search": {**CONFIG["search"], "function": function, "window": window}})


class ReversedExecutor(LocalExecutor):
    """In this process, the tasks in reverse order: the last member's units arrive first."""

    def run(self, workload, method, tasks):
        yield from super().run(workload, method, list(tasks)[::-1])


@pytest.mark.parametrize("function", ["forgetting", "dyn_unc", "el2n", "margin"])
def test_compress_selects_the_top_of_the_direct_computation(tmp_path, function):
    search = Search(config(function), tmp_path / "run")
    result = search.run()
    rows = np.arange(result.pool_size)
    members = _member_probs(search, 0, rows).astype(np.float64)
    reference = other_scores(members, search.task.splits.pool.y, function, window=2)
    table = pq.read_table(tmp_path / "run" / "iter_00" / "subset.parquet").to_pydict()
    k = len(table["index"])
    np.testing.assert_allclose(table["score"], reference[table["index"]], atol=1e-6)
    # the k best by the reference (integer forgetting counts tie: either side of the k-th score)
    threshold = np.sort(reference)[::-1][k - 1]
    assert np.all(np.asarray(table["score"]) >= threshold - 1e-6)
    if function != "margin":
        dynamics = TrainingDynamics.load(tmp_path / "run" / "iter_00" / "dynamics.npz")
        assert Ledger.of(dynamics.metadata).members == ["run_0/epoch_001", "run_0/epoch_002", "run_0/epoch_003"]
        assert dynamics.ordered == (function in ("forgetting", "dyn_unc"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"][0]["members"] == 3


def test_units_arriving_in_reverse_order_give_the_same_bits(tmp_path):
    local = Search(config("dyn_unc"), tmp_path / "local")
    local.run()
    reversed_ = Search(config("dyn_unc"), tmp_path / "reversed", executor=ReversedExecutor())
    reversed_.run()
    a = TrainingDynamics.load(tmp_path / "local" / "iter_00" / "dynamics.npz")
    b = TrainingDynamics.load(tmp_path / "reversed" / "iter_00" / "dynamics.npz")
    b.metadata = a.metadata  # the ledgers list the units in arrival order
    assert a.equals(b)
    for name in ("subset.parquet",):
        assert pq.read_table(tmp_path / "local" / name).equals(pq.read_table(tmp_path / "reversed" / name))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {
                "search": {"scheme": "compress", "budgets": [0.3], "function": "forgetting"},
                "ensemble": {"kind": "seeds", "runs": 2},
            },
            "search.function: forgetting follows one training run's checkpoints in epoch order; use ensemble.kind",
        ),
        (
            {"search": {"scheme": "compress", "budgets": [0.3], "function": "dyn_unc", "window": 5}},
            "search.window: dyn_unc's window 5 is larger than the ensemble's 3 checkpoints",
        ),
        ({"search": {"function": "el3n"}}, "search.function: unknown acquisition function 'el3n'"),
        ({"search": {"window": 1}}, "search.window: Input should be greater than or equal to 2"),
    ],
)
def test_bad_function_settings_name_the_key(changes, message):
    with pytest.raises(InputError, match=re.escape(message)):
        parse_config({**CONFIG, **changes})


def test_detection_takes_the_papers_functions_only():
    with pytest.raises(InputError, match=r"search\.function: detection scores centre maps with the paper's functions"):
        parse_config({"task": "detection", "search": {"scheme": "build_up", "budgets": [0.1, 0.2], "function": "el2n"}})
