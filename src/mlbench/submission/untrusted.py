"""What ``mlbench package`` reads is untrusted: run directories, their logs and the user's JSON files.

Each reader here fails with one line naming the file and what is wrong with it (never a traceback: the JSON
checks are :mod:`mlbench.untrusted`'s, raising :class:`BadInput`), and every
name that becomes part of a path is checked as a whole string and every path written is proven to stay under
the folder the user named.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlbench import untrusted
from mlbench.errors import ConfigError, MlbenchError

MAX_JSON_BYTES = 64 * 1024 * 1024  # a result.json or systems file is kilobytes; refuse what cannot be one
MAX_DEPTH = 32  # nesting deeper than any file mlbench writes
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")


class BadInput(MlbenchError):
    """A file or name handed to ``mlbench package`` that cannot be used (exit code 1)."""


FIX = "give the file mlbench wrote, unedited (in the run directory that mlbench printed)"


def parse_json(text: str, where: str) -> Any:
    """``text`` as JSON, or BadInput naming ``where`` (malformed, too deep, not finite numbers)."""
    return untrusted.parse_json(text, where, FIX, expect=None, max_depth=MAX_DEPTH, error=BadInput)


def read_object(path: Path, what: str, shape: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON object, bounded in size and depth, whose keys in ``shape`` (key -> type or tuple of types) have those
    types when present; BadInput in one line when it cannot be one."""
    data = untrusted.load_json(path, what, expect=dict, hint=FIX, max_depth=MAX_DEPTH, max_bytes=MAX_JSON_BYTES,
                               error=BadInput)
    check_shape(data, shape or {}, f"{what} {path}")
    return data


def check_shape(data: dict[str, Any], shape: dict[str, Any], where: str) -> None:
    for key, types in shape.items():
        if key in data and data[key] is not None and not isinstance(data[key], types):
            want = " or ".join(_kind_of_type(t) for t in (types if isinstance(types, tuple) else (types,)))
            raise BadInput(f"{where}: '{key}' is a JSON {_kind(data[key])}, not {want}",
                           "give the file mlbench wrote, unedited")


def _kind(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(v), type(v).__name__)


def _kind_of_type(t: type) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(t, t.__name__)


def mllog_events(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The ``:::MLLOG`` events of a log (each a JSON object with a string key) and the numbers of the lines that
    start with the marker but are not such an event."""
    events, bad = [], []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc.strerror or exc})", "check the run directory") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.startswith(":::MLLOG"):
            continue
        try:
            ev = parse_json(line[len(":::MLLOG"):].strip(), f"{path} line {n}")
        except BadInput:
            bad.append(n)
            continue
        if not isinstance(ev, dict) or not isinstance(ev.get("key"), str) \
                or not isinstance(ev.get("metadata", {}), dict):
            bad.append(n)
            continue
        events.append(ev)
    return events, bad


def read_results(run_dirs: list[Path], kind: str, shape: dict[str, Any]
                 ) -> tuple[list[tuple[Path, dict[str, Any]]], list[str]]:
    """Each run directory (once) with its result.json of ``kind`` ("train", "infer") and ``shape``; what cannot be
    read is a problem naming the directory."""
    found, problems, seen = [], [], set()
    for d in map(Path, run_dirs):
        if d.resolve() in seen:
            continue
        seen.add(d.resolve())
        if not d.is_dir():
            problems.append(f"{d}: not a folder: give the run directories that `mlbench {kind}` printed")
            continue
        if not (d / "result.json").is_file():
            problems.append(f"{d}: no result.json in it: not an mlbench run directory (mlbench {kind} writes one)")
            continue
        try:
            result = read_object(d / "result.json", "the run's result", shape)
        except BadInput as exc:
            problems.append(exc.message)
            continue
        if result.get("kind") != kind:
            problems.append(f"{d}: a {str(result.get('kind'))[:40]!r} run, not an `mlbench {kind}` run")
            continue
        found.append((d, result))
    return found, problems


def check_name(value: Any, what: str) -> str:
    """A name that becomes a folder or file name: letters, digits and ``. _ + -``, the whole string."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or value in (".", ".."):
        raise ConfigError(f"invalid value for '{what}': {value!r}: it becomes a folder and a file name",
                          "use letters, digits and . _ + - (no spaces, slashes or line breaks; at most 128), "
                          "e.g. MyOrg or 1xH100_pytorch")
    return value


def inside(root: Path, *parts: str) -> Path:
    """``root/parts...``, proven to stay under ``root`` (no absolute part, no ``..``, no link out)."""
    base = Path(root).resolve()
    for p in parts:
        if not isinstance(p, str) or not p or p in (".", "..") or "/" in p or "\\" in p or "\x00" in p:
            raise BadInput(f"refusing to write to {root}/{p!r}: not a plain folder or file name",
                           "the run directory names something that is not a benchmark or scenario; rerun it")
    path = base.joinpath(*parts)
    if not path.resolve().is_relative_to(base):
        raise BadInput(f"refusing to write {path}: it leads outside {root}", "remove the link that points out")
    return path
