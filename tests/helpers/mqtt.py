"""A dispatch-side subscriber for tests: collects what the broker really delivers.

The collector lives in `hil.dispatch`: the rig and the benchmarks use it too."""

from hil.dispatch import Collector, Received, publish, unique_by_seq

__all__ = ["Collector", "Received", "is_merge_of_two_increasing", "publish", "unique_by_seq"]


def is_merge_of_two_increasing(values: list[int]) -> bool:
    """True when `values` splits into two increasing runs (backlog lane and live lane)."""
    tops = [-1, -1]
    for v in values:
        candidates = [i for i, t in enumerate(tops) if t < v]
        if not candidates:
            return False
        best = max(candidates, key=lambda i: tops[i])
        tops[best] = v
    return True
