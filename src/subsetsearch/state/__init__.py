"""One resumable scoring state, for everything that scores members and may be killed midway.

``subsetsearch run`` (a classification step's statistics, a detection step's image scores),
``subsetsearch score`` (``--state x.npz``, ``--state DIR`` out of core, ``--annotations
--state DIR``) and :class:`~subsetsearch.torch.PoolScorer` all keep their work in a
:class:`ScoringState` and follow one protocol (``docs/architecture.md``, "The scoring state"):

1. **Open**: each part is resumed from its file with a compatibility check (the same shape,
   ``--logits``, labels and window; no member the given ones lack; ordered members in the order
   they were added), or made new. A state directory is claimed first
   (:class:`~subsetsearch.internal.directories.ClaimedDirectory`: the marker is written before
   anything else; a lock is held while the job runs).
2. **To do**: the units (a member, or a member on one shard of rows) some part lacks.
3. **Add**: the driver merges a unit's work into the parts that lack it and records it
   (:meth:`ScoringState.record`); :meth:`ScoringState.checkpoint` saves when the one policy
   (:class:`~subsetsearch.internal.ledger.Autosave`) says so.
4. **Save**: every changed part in one fixed order (label statistics, then votes, then the
   ensemble statistics or image scores), each with its ledger in the same atomic write.
5. **Scores**: the parts' accumulators are what :func:`~subsetsearch.acquisition.acquire` scores.
"""

from subsetsearch.state.mapped import MappedStatsPart
from subsetsearch.state.parts import DynamicsPart, ImageScoresPart, MemberVotes, Part, Resume, StatsPart, VotesPart
from subsetsearch.state.scoring import ScoringState, Unit

__all__ = [
    "DynamicsPart",
    "ImageScoresPart",
    "MappedStatsPart",
    "MemberVotes",
    "Part",
    "Resume",
    "ScoringState",
    "StatsPart",
    "Unit",
    "VotesPart",
]
