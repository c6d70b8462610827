"""The hostile-input catalogue (issue 10): each case is a command a user might type with bad input, the
exit code it must give, the first words of its error, and the promise that no result.json says success.

Cases live in the ``test_*.py`` files beside this one, one file a topic; each builds its inputs in a
temporary folder and calls :func:`check`. New commands add their cases here.
"""

from __future__ import annotations

import hashlib
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
    keep: tuple[str, ...] = ()  # paths under tmp (the user's files and folders) that must be left exactly as they were


def check(case: Case, tmp: Path, timeout: float = 300) -> str:
    """Run ``case`` as a user would and assert: exit code, a clear message, no traceback, no valid result.
    Returns what the command printed."""
    if case.setup:
        case.setup(tmp)
    args = [a.replace("{tmp}", str(tmp)) for a in case.args]
    cwd = tmp / case.cwd if case.cwd else tmp
    before = {k: snapshot(tmp / k) for k in case.keep}
    proc = mlbench(*args, env={k: v.replace("{tmp}", str(tmp)) for k, v in case.env.items()}, timeout=timeout,
                   cwd=cwd)
    out = proc.stdout + proc.stderr
    for k, was in before.items():
        assert snapshot(tmp / k) == was, f"{case.id}: {k} was changed\n{out[-3000:]}"
    assert "Traceback (most recent call last)" not in out, f"{case.id}: traceback\n{out[-3000:]}"
    assert proc.returncode == case.exit_code, f"{case.id}: exit {proc.returncode}\n{out[-3000:]}"
    assert case.error.lower() in out.lower(), f"{case.id}: message lacks {case.error!r}\n{out[-3000:]}"
    assert_no_valid_result(tmp)
    return out


def snapshot(path: Path) -> object:
    """What a user would notice changing: a file's bytes, a folder's names (hidden ones too) and files' bytes."""
    if path.is_symlink() or not path.exists():
        return ("link", str(path.readlink())) if path.is_symlink() else None
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return sorted((str(p.relative_to(path)), snapshot(p) if p.is_file() else "dir") for p in path.rglob("*"))


def assert_no_valid_result(root: Path) -> None:
    """No result.json under ``root`` claims success or validity."""
    for path in root.rglob("result.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        assert data.get("status") != "success", f"{path} says success"
        assert not data.get("valid"), f"{path} says valid"
