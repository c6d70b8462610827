"""The hostile-input catalogue (issue 10): each case is a command a user might type with bad input, the
exit code it must give, the first words of its error, and the promise that no result.json says success.

Cases live in the ``test_*.py`` files beside this one, one file a topic; each builds its inputs in a
temporary folder and calls :func:`check`. New commands add their cases here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from support import mlbench


@dataclass(frozen=True)
class Case:
    """One hostile input. ``args`` may hold ``{tmp}``, replaced by the test's temporary folder."""

    id: str
    args: tuple[str, ...]
    exit_code: int
    error: str  # what the message must contain (case-insensitive), ideally its first words
    setup: Callable[[Path], None] | None = None  # builds the bad input under tmp
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None  # relative to tmp


def check(case: Case, tmp: Path, timeout: float = 300) -> str:
    """Run ``case`` as a user would and assert: exit code, a clear message, no traceback, no valid result.
    Returns what the command printed."""
    if case.setup:
        case.setup(tmp)
    args = [a.replace("{tmp}", str(tmp)) for a in case.args]
    cwd = tmp / case.cwd if case.cwd else tmp
    proc = mlbench(*args, env=case.env, timeout=timeout, cwd=cwd)
    out = proc.stdout + proc.stderr
    assert "Traceback (most recent call last)" not in out, f"{case.id}: traceback\n{out[-3000:]}"
    assert proc.returncode == case.exit_code, f"{case.id}: exit {proc.returncode}\n{out[-3000:]}"
    assert case.error.lower() in out.lower(), f"{case.id}: message lacks {case.error!r}\n{out[-3000:]}"
    assert_no_valid_result(tmp)
    return out


def assert_no_valid_result(root: Path) -> None:
    """No result.json under ``root`` claims success or validity."""
    for path in root.rglob("result.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        assert data.get("status") != "success", f"{path} says success"
        assert not data.get("valid"), f"{path} says valid"
