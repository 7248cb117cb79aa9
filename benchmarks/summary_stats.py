"""The statistics every benchmark reports: means with the sample std (ddof=1) and n, and
comparisons between methods paired by seed with a 95% Student-t interval."""

from __future__ import annotations

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
