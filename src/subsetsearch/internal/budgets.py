"""The one budget parser: ``subsetsearch score --budget`` and a config's ``search.budgets``.

A budget is a count or a fraction of the pool, by how it is written: an integer (``5000``) is a
count of samples; a number with a decimal point or an exponent (``0.4``, ``1.0``, ``4e-1``) or a
percentage (``"40%"``) is a fraction in (0, 1]. A fraction f of a pool of N samples is
``floor(f * N + 0.5)`` samples (half rounds up), and a budget that comes to zero samples or to
more than the pool is refused.

Configs written before this rule read ``1`` as the whole pool and ``5000.0`` as a count; both are
refused with a line that says what changed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from subsetsearch.errors import InputError


@dataclass(frozen=True)
class Budget:
    """A parsed budget: a count, or a fraction of the pool."""

    value: float
    is_fraction: bool
    text: str

    @classmethod
    def parse(cls, raw: int | float | str, *, name: str) -> Budget:
        """The budget ``raw`` means; InputError (naming ``name``) when it is neither a count nor a fraction.

        >>> Budget.parse(0.4, name="b").is_fraction, Budget.parse("40%", name="b").value
        (True, 0.4)
        >>> Budget.parse(500, name="b").is_fraction, Budget.parse("500", name="b").value
        (False, 500)
        """
        if isinstance(raw, bool):
            raise InputError(f"{name} {raw!r} is not a number; give a fraction like 0.4 or 40%, or a count")
        if isinstance(raw, int):
            value, is_fraction, text = raw, False, str(raw)
        elif isinstance(raw, float):
            value, is_fraction, text = raw, True, repr(raw)
        else:
            text = str(raw).strip()
            try:
                if text.endswith("%"):
                    value, is_fraction = float(text[:-1]) / 100.0, True
                elif any(mark in text.lower() for mark in (".", "e", "n")):  # decimals, exponents, nan, inf
                    value, is_fraction = float(text), True
                else:
                    value, is_fraction = int(text), False
            except ValueError:
                raise InputError(
                    f"{name} {text!r} is not a number; give a fraction like 0.4 or 40%, or a count"
                ) from None
        if not math.isfinite(value) or value <= 0:
            raise InputError(f"{name} must be positive, got {text!r}")
        if is_fraction and value > 1:
            raise InputError(
                f"{name} {text!r} is a fraction (it has a decimal point or %) above 1; give a fraction in (0, 1] "
                "or a whole count without a decimal point"
            )
        return cls(value, is_fraction, text)

    def count(self, pool_size: int, *, name: str) -> int:
        """Samples this budget takes of a pool of ``pool_size``; InputError if none or more than the pool.

        >>> Budget.parse(0.125, name="b").count(20, name="b")  # 2.5 rounds up
        3
        """
        if self.is_fraction:
            count = math.floor(self.value * pool_size + 0.5)
            if count == 0:
                raise InputError(f"{name} {self.text} of a pool of {pool_size} selects no sample; give a larger budget")
            return count
        count = int(self.value)
        if count > pool_size:
            raise InputError(f"{name} {count} exceeds the pool ({pool_size} samples); lower it")
        return count


def parse_budget(raw: int | float | str, pool_size: int, *, name: str = "--budget") -> int:
    """Samples a budget asks for of a pool of ``pool_size`` (see the module docstring)."""
    return Budget.parse(raw, name=name).count(pool_size, name=name)


def check_config_budget(raw: int | float | str, *, name: str = "search.budgets") -> Budget:
    """A config's budget, refusing the two spellings whose meaning changed (``1``, whole floats above 1)."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw == 1:
        raise InputError(
            f"{name}: 1 is now a count of one sample (integers are counts, numbers with a decimal point or % are "
            "fractions); write 1.0 or 100% for the whole pool"
        )
    if isinstance(raw, float) and raw > 1 and raw == int(raw):
        raise InputError(
            f"{name}: {raw!r} has a decimal point, so it is now a fraction, and fractions are at most 1; "
            f"write {int(raw)} for a count of samples"
        )
    return Budget.parse(raw, name=name)


def budget_counts(budgets: list[int | float | str], pool_size: int, *, name: str = "search.budgets") -> list[int]:
    """Sample counts of a growing budget schedule; InputError if one is refused or they do not grow."""
    counts = [parse_budget(b, pool_size, name=name) for b in budgets]
    for a, b in itertools.pairwise(counts):
        if b <= a:
            shown = ", ".join(Budget.parse(x, name=name).text for x in budgets)
            raise InputError(
                f"{name}: on a pool of {pool_size} samples the schedule [{shown}] gives {counts} samples, "
                "which does not grow; space the budgets further apart"
            )
    return counts
