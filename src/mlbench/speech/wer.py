"""Word error counting shared by the speech benchmarks (each keeps its own text normalisation)."""

from __future__ import annotations


def edit_distance(a: list[str], b: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions and deletions cost 1 each)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]
