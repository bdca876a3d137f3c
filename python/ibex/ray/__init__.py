"""ibex past one machine: distributed indexing on Ray Data, sharded serving on Ray Serve.

A sharded index is a directory of shards, each an ordinary ibex index (the CLI, ``ibex serve``
and :class:`ibex.Index` open any of them), and a cluster manifest, ``ibex-cluster.json``,
written last. Ray schedules, retries and routes; ibex provides the shards and the ranking logic
that makes a sharded search equal to a single-index search.

- :func:`build_sharded_index` indexes a corpus on a Ray cluster (needs ``ray[data]``);
- :class:`ShardedIndex` opens the shards in this process and searches and updates them as one
  index (no Ray needed);
- :mod:`ibex.ray.serve` serves them on Ray Serve behind the REST API of ``ibex serve`` (needs
  ``ray[serve]``).

Install with ``pip install "ibex-search[ray]"``.
"""

from ._sharded import (
    MANIFEST_NAME,
    ScatterGather,
    SearchOutcome,
    ShardedIndex,
    ShardUnavailableError,
    read_manifest,
    reshard,
    shard_of,
)

__all__ = [
    "build_sharded_index",
    "ShardedIndex",
    "ScatterGather",
    "SearchOutcome",
    "ShardUnavailableError",
    "shard_of",
    "read_manifest",
    "reshard",
    "MANIFEST_NAME",
]


def build_sharded_index(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Indexes a corpus into shards on Ray Data; see :func:`ibex.ray._build.build_sharded_index`
    (imported here on first use, so that ``ibex.ray`` works without Ray installed)."""
    from ._build import build_sharded_index as build

    return build(*args, **kwargs)

