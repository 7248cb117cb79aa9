"""The one place for argument checks (``internal/validation.py``) and the fingerprint of a piece of
work (``internal/fingerprint.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from subsetsearch.errors import InputError
from subsetsearch.internal.fingerprint import fingerprint
from subsetsearch.internal.validation import check_fraction, check_integer, check_labels, check_positive


@given(st.integers(-1000, 1000), st.integers(-5, 5))
def test_an_integer_at_or_above_its_minimum_passes_and_below_is_named(value, minimum):
    if value >= minimum:
        assert check_integer(value, "k", minimum=minimum) == value
        assert check_integer(np.int64(value), "k", minimum=minimum) == value
    else:
        with pytest.raises(ValueError, match=rf"^k must be .*integer.*, got {value}$"):
            check_integer(value, "k", minimum=minimum)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1.0, 2.5, "3", None, np.float64(2)])
def test_a_bool_a_float_or_text_is_never_an_integer(value):
    with pytest.raises(ValueError, match="must be an integer"):
        check_integer(value, "k")


def test_the_error_type_is_the_callers():
    with pytest.raises(InputError, match=r"^--window must be an integer >= 2, got 1$"):
        check_integer(1, "--window", minimum=2, error=InputError)
    assert check_integer(0, "k", minimum=0) == 0
    with pytest.raises(ValueError, match=r"^k must be a non-negative integer, got -1$"):
        check_integer(-1, "k", minimum=0)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_fraction_lies_in_zero_to_one(value):
    inside = 0.0 <= value < 1.0
    if inside:
        assert check_fraction(value, "f") == value
    else:
        with pytest.raises(ValueError, match=r"^f must be a fraction in \[0, 1\)"):
            check_fraction(value, "f")
    assert (0.0 <= value <= 1.0) == _passes(lambda: check_fraction(value, "f", upper_inclusive=True))


@pytest.mark.parametrize("value", [0, -1.0, math.inf, -math.inf, math.nan, True, "4"])
def test_a_positive_number_is_finite_and_above_zero(value):
    with pytest.raises(InputError, match=r"^--stride must be a positive number of pixels, got"):
        check_positive(value, "--stride", what="number of pixels", error=InputError)
    assert check_positive(0.5, "x") == 0.5


def test_labels_are_integers_of_the_pool_in_range():
    assert check_labels([0, 2, 1], 3, 3).dtype == np.int64
    for labels, message in [(None, "needs the labels"), ([0, 1], r"shape \(3,\)"), ([0.0, 1, 2], "integers"),
                            ([0, 3, 1], r"lie in \[0, 3\)")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            check_labels(labels, 3, 3)


def _passes(call) -> bool:
    try:
        call()
    except ValueError:
        return False
    return True


def test_a_fingerprint_is_of_the_values_not_of_their_order_or_type_of_container():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint((1, 2)) == fingerprint([1, 2])
    assert fingerprint(np.arange(4)) == fingerprint(np.arange(4).copy())
    assert fingerprint(np.arange(4)) != fingerprint(np.arange(4, dtype=np.int32))
    assert fingerprint(np.arange(4)) != fingerprint(np.arange(4).reshape(2, 2))
    assert fingerprint(np.arange(4)) != fingerprint(np.array([0, 1, 2, 4]))
    assert fingerprint("seed", 1) != fingerprint("seed", 2)
    with pytest.raises(TypeError, match="cannot fingerprint a object"):
        fingerprint(object())
