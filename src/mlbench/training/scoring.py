"""MLPerf training scoring: the olympic mean of several runs' times to train."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    minutes: float | None  # the score, or None when there is none
    runs: int
    converged: int
    method: str  # how the score was computed, in words
    reason: str = ""  # why there is no score, or why it is not an MLPerf score


def olympic_score(minutes: list[float | None], runs_required: int = 5) -> Score:
    """Drop the fastest and slowest run, average the rest.

    ``None`` is a run that did not reach the target; MLPerf allows at most one, counted as the slowest
    (so it is the one dropped). With fewer than 3 runs there is nothing to drop: the plain mean is given
    and labelled as such.
    """
    n = len(minutes)
    done = sorted(m for m in minutes if m is not None)
    failed = n - len(done)
    if n == 0:
        return Score(None, 0, 0, "none", "no runs")
    if failed > 1:
        return Score(None, n, len(done), "none",
                     f"{failed} of {n} runs did not reach the target; MLPerf allows at most one")
    note = "" if n >= runs_required else f"{n} run(s) of the {runs_required} MLPerf requires"
    if n < 3:
        if failed:
            return Score(None, n, len(done), "none", "the only runs include one that did not converge")
        return Score(sum(done) / n, n, n, "mean (fewer than 3 runs: nothing to drop)", note)
    # Drop the fastest; drop the slowest, which is the non-converged run if there is one.
    kept = done[1:] if failed else done[1:-1]
    return Score(sum(kept) / len(kept), n, len(done), "olympic mean (fastest and slowest dropped)", note)
