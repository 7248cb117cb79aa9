"""The statistics every benchmark reports: means with the sample std (ddof=1) and n, and
comparisons between methods paired by seed with a 95% Student-t interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from subsetsearch.report import analyses


def mean_sd(values: Sequence[float]) -> dict:
    """``{"mean", "sd", "n"}`` of :func:`subsetsearch.report.analyses.mean_sd` (the sample standard
    deviation, ddof=1), with None where it gives NaN (no value; one value for the sd)."""
    mean, sd = analyses.mean_sd(list(values))
    return {
        "mean": None if np.isnan(mean) else mean,
        "sd": None if np.isnan(sd) else sd,
        "n": len(values),
    }


def paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """``a - b`` over the seeds both hold (:func:`subsetsearch.report.analyses.paired_difference`):
    mean, sample sd, n, the 95% t-interval of the mean difference (None for n < 2), and the seeds used."""
    d = analyses.paired_difference(a, b)
    return {**{k: v for k, v in d.items() if k != "keys"}, "seeds": d["keys"]}


def text(summary: dict, scale: float = 1.0, digits: int = 2) -> str:
    """'mean ± sd (n=…)' of a :func:`mean_sd` result, values times ``scale``."""
    if summary["mean"] is None:
        return "-"
    mean = f"{scale * summary['mean']:.{digits}f}"
    sd = f" ± {scale * summary['sd']:.{digits}f}" if summary["sd"] is not None else ""
    return f"{mean}{sd} (n={summary['n']})"


def difference(d: dict) -> str:
    """A :func:`paired` difference in points: mean and its 95% interval ("-" without seeds; no
    interval for n < 2)."""
    if not d["n"]:
        return "-"
    ci = f" [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]" if d["ci95"] else ""
    return f"{100 * d['mean']:+.2f}{ci}"


def p_value(d: dict) -> float | None:
    """Two-sided p-value of a :func:`paired` difference's paired t-test (mean difference 0); None
    for n < 2. With no spread (sd 0) it is 1 for a zero mean and 0 otherwise."""
    if d["ci95"] is None:
        return None
    if d["sd"] == 0:
        return 1.0 if d["mean"] == 0 else 0.0
    t = d["mean"] / (d["sd"] / math.sqrt(d["n"]))
    return min(1.0, 2 * analyses.student_t_sf(abs(t), d["n"] - 1))


def noninferiority_p(d: dict, margin: float) -> float | None:
    """One-sided p-value of "``a`` is worse than ``b`` by ``margin`` or more" (H0: mean difference
    <= -margin) for a :func:`paired` difference; None for n < 2. Below 0.025 exactly when the 95%
    interval's lower end is above -margin."""
    if d["ci95"] is None:
        return None
    if d["sd"] == 0:
        return 0.0 if d["mean"] > -margin else 1.0
    return analyses.student_t_sf((d["mean"] + margin) / (d["sd"] / math.sqrt(d["n"])), d["n"] - 1)


def holm_adjusted(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's adjustment over the values that exist (the family); None stays None."""
    present = [i for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    for i, a in zip(present, analyses.holm([p_values[i] for i in present]), strict=True):
        adjusted[i] = a
    return adjusted
