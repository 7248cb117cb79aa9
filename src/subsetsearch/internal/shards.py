"""Rows cut into consecutive shards: the unit every sharded job works in."""

from __future__ import annotations

__all__ = ["row_shards"]


def row_shards(num_rows: int, shard_rows: int) -> list[slice]:
    """Positions 0..num_rows-1 cut into consecutive shards of ``shard_rows`` (the last may be shorter)."""
    return [slice(start, min(num_rows, start + shard_rows)) for start in range(0, num_rows, shard_rows)]
