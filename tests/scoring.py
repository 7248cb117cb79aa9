"""``subsetsearch score``'s work called from tests: member files and the command line's options."""

from __future__ import annotations

import subsetsearch.pipeline.score as score_module


def score_files(members, **options) -> score_module.ScoreResult:
    """``score_files`` of a ``ScoreRequest`` for ``members`` with the given options (its field names)."""
    return score_module.score_files(score_module.ScoreRequest(members=members, **options))
