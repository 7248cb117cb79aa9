"""One budget parser with one meaning in ``score --budget`` and in a config's ``search.budgets``:
integers are counts, numbers with a decimal point or a % are fractions, rounded half up."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subsetsearch.errors import InputError
from subsetsearch.internal.budgets import Budget, budget_counts, check_config_budget, parse_budget
from subsetsearch.pipeline.config import parse_config


def test_by_hand():
    assert parse_budget("0.4", 1000) == 400
    assert parse_budget("40%", 1000) == 400
    assert parse_budget("4e-1", 1000) == 400
    assert parse_budget("400", 1000) == 400
    assert parse_budget(0.4, 1000) == parse_budget(400, 1000) == 400
    assert parse_budget("1.0", 37) == parse_budget("100%", 37) == 37  # the whole pool
    assert parse_budget("1", 37) == 1  # a count of one, in score and in configs alike
    # half rounds up, in both places (0.125 of 20 is 2.5 -> 3; 0.5 of 5 is 2.5 -> 3)
    assert parse_budget("0.125", 20) == 3 and parse_budget(0.5, 5) == 3
    assert budget_counts([0.125, 0.25, 0.5], 1000) == [125, 250, 500]
    assert budget_counts([100, 0.5], 1000) == [100, 500]


@pytest.mark.parametrize(
    ("raw", "pool", "message"),
    [
        ("0", 10, "must be positive"),
        ("-3", 10, "must be positive"),
        ("-0.5", 10, "must be positive"),
        ("nan", 10, "must be positive"),
        ("1.5", 10, "is a fraction (it has a decimal point or %) above 1"),
        ("150%", 10, "above 1"),
        ("lots", 10, "is not a number"),
        ("11", 10, "11 exceeds the pool (10 samples)"),
        ("0.01", 10, "selects no sample"),
        (True, 10, "is not a number"),
    ],
)
def test_bad_budgets_are_one_line(raw, pool, message):
    with pytest.raises(InputError) as error:
        parse_budget(raw, pool)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_schedules_that_do_not_grow_or_exceed_the_pool():
    with pytest.raises(InputError, match="exceeds the pool"):
        budget_counts([0.1, 2000], 1000)
    with pytest.raises(InputError, match=r"schedule \[0.1, 0.11\] gives \[2, 2\] samples, which does not grow"):
        budget_counts([0.1, 0.11], 20)


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 10**7), extra=st.integers(0, 10**7))
def test_an_integer_is_a_count_written_either_way(count, extra):
    pool = count + extra
    assert parse_budget(count, pool) == parse_budget(str(count), pool) == count
    assert not Budget.parse(count, name="b").is_fraction


@settings(max_examples=300, deadline=None)
@given(fraction=st.floats(1e-6, 1.0), pool=st.integers(1, 10**8))
def test_a_fraction_rounds_half_up_in_score_and_in_configs(fraction, pool):
    exact = Fraction(fraction) * pool  # the exact product of the float given and the pool
    expected = math.floor(exact + Fraction(1, 2))
    if expected == 0:
        with pytest.raises(InputError, match="selects no sample"):
            parse_budget(fraction, pool)
        return
    # computed in float64: equal to the exact rounding unless the product lies within an ulp of a half
    near_half = abs((exact - math.floor(exact)) - Fraction(1, 2)) < Fraction(pool, 2**50)
    if not near_half:
        assert parse_budget(fraction, pool) == expected
    assert parse_budget(repr(fraction), pool) == parse_budget(fraction, pool)  # the CLI's text, the config's float
    assert budget_counts([fraction], pool, name="b") == [parse_budget(fraction, pool)]


def test_a_config_and_score_count_the_same_samples(tmp_path):
    config = parse_config({"data": {"dataset": "digits"}, "search": {"budgets": [0.125, "25%", 600]}})
    assert (
        budget_counts(config.search.budgets, 1437)
        == [
            parse_budget("0.125", 1437),
            parse_budget("25%", 1437),
            parse_budget("600", 1437),
        ]
        == [180, 359, 600]
    )  # 179.625 -> 180, 359.25 -> 359


def test_the_old_meanings_are_refused_with_what_changed():
    with pytest.raises(InputError, match=r"1 is now a count of one sample.*write 1\.0 or 100%"):
        check_config_budget(1)
    with pytest.raises(InputError, match=r"5000.0 has a decimal point.*write 5000 for a count"):
        check_config_budget(5000.0)
    assert check_config_budget(1.0).is_fraction and check_config_budget(2).value == 2
