"""Files a user hands in, read as untrusted: every problem is one line naming the file and the fix.

* :func:`load_json` (and :func:`parse_json` for text already in hand: a log line) reads a JSON document (a manifest, a COCO file, a SQuAD file, a system description, a
  result.json) and refuses, with a :class:`~mlbench.errors.DataError` (or the error class the caller names),
  a file that is missing, unreadable, not UTF-8, not valid JSON, nested deeper than any real data set nests
  (``max_depth``), or whose top level is not the expected kind (``expect``: ``dict``, ``list`` or both).
  Nothing it refuses ever reaches the caller's code as a half-parsed value or a traceback (RecursionError,
  MemoryError, a 5,000-digit integer).
* :func:`inside` turns a file name read from such a file (COCO ``file_name``, a manifest's ``fname``) into a
  path under the data folder, refusing names that are absolute, climb out with ``..``, or are not plain text.

Field values are still the caller's to check (types, ranges, finiteness): JSON shapes differ per format, and
each format's reader names the entry and the fix better than a generic schema could.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from mlbench.errors import DataError, MlbenchError

#: Deeper than any JSON mlbench reads (COCO polygons nest 4 levels, a SQuAD answer 7); ``[[[[...`` beyond this is
#: refused before Python's recursion limits are reached.
MAX_DEPTH = 64

_KIND = {dict: "object", list: "list", str: "string", int: "number", float: "number", bool: "true/false",
         type(None): "null"}
# Everything but the characters that open or close a value: deleted before the depth is counted.
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'[]{}"')
_QUOTE = np.zeros(256, np.uint8)
_QUOTE[ord('"')] = 1
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def depth(raw: bytes) -> int:
    """How deeply the arrays and objects of the JSON text ``raw`` nest (0 for a bare scalar).

    Linear and vectorised (C-speed byte operations, then numpy over what is left), a few percent of the
    parse itself: escaped backslashes and quotes are dropped first, so every remaining ``"`` opens or closes
    a string, and brackets inside strings are not counted."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    s = np.frombuffer(raw.translate(None, _NOT_STRUCTURE), dtype=np.uint8)
    if not len(s):
        return 0
    in_string = np.bitwise_xor.accumulate(_QUOTE[s])  # 1 from an opening quote to its closing one
    step = _STEP[s] * (1 - in_string).view(np.int8)  # +1 opens, -1 closes, 0 inside a string
    return int(np.cumsum(step, dtype=np.int32).max(initial=0))


def read_bytes(path: str | Path, what: str, hint: str | None, *, limit: int | None = None,
               error: type[MlbenchError] = DataError) -> bytes:
    """The bytes of ``path`` (the first ``limit`` when given), or ``error`` naming ``what``: not found, a folder,
    unreadable."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except FileNotFoundError:
        raise error(f"{what} not found: {p}", hint) from None
    except IsADirectoryError:
        raise error(f"{what} {p} is a folder, not a file", hint) from None
    except OSError as exc:
        raise error(f"cannot read the {what} {p}: {exc.strerror or exc}", "check the file and its permissions"
                    ) from None


def load_json(path: str | Path, what: str, *, expect: type | tuple[type, ...] | None = (dict, list), hint: str,
              max_depth: int = MAX_DEPTH, max_bytes: int | None = None, allow_nan: bool = False,
              error: type[MlbenchError] = DataError) -> Any:
    """The parsed JSON document at ``path``, or ``error`` (one line: ``what`` and the problem, ``hint`` as the fix).

    ``what`` names the document in the message (e.g. "manifest", "COCO annotation file"); ``expect`` is the
    kind of its top level (None: any). ``NaN``/``Infinity`` (not JSON, but Python writes them) are refused unless
    ``allow_nan`` (a result.json of a failed run may hold a NaN loss). A file over ``max_bytes`` is refused
    unread."""
    p = Path(path)
    raw = read_bytes(p, what, hint, limit=None if max_bytes is None else max_bytes + 1, error=error)
    if max_bytes is not None and len(raw) > max_bytes:
        raise error(f"{what} {p} is over {max_bytes:,} bytes, more than any real {what} holds", hint)
    return parse_json(raw, f"{what} {p}", hint, expect=expect, max_depth=max_depth, allow_nan=allow_nan,
                      error=error)


def parse_json(raw: bytes | str, label: str, hint: str, *, expect: type | tuple[type, ...] | None = (dict, list),
               max_depth: int = MAX_DEPTH, allow_nan: bool = False, error: type[MlbenchError] = DataError) -> Any:
    """The JSON text ``raw`` parsed, or ``error`` naming ``label`` (the document and where it is, e.g.
    "manifest /data/m.json" or "/runs/x/mlperf_log.txt line 3"); the checks of :func:`load_json`."""
    if isinstance(raw, str):
        text, raw = raw, raw.encode("utf-8", "surrogatepass")
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise error(f"{label} is not UTF-8 text ({exc.reason} at byte {exc.start})", hint) from None
    levels = depth(raw)
    if levels > max_depth:
        raise error(f"{label} nests {levels} levels deep, more than the {max_depth} any real file has "
                    "(damaged or hostile file)", hint)
    try:
        obj = json.loads(text, parse_constant=None if allow_nan else _refuse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{label} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}; truncated?)",
                    hint) from None
    except _Constant as exc:
        raise error(f"{label} holds {exc.args[0]}, which JSON does not allow (a number must be finite)",
                    hint) from None
    except ValueError as exc:  # an integer of more than 4,300 digits (Python's limit), or the like
        problem = ("an integer of more than 4,300 digits" if "digits" in str(exc) else
                   f"a value Python cannot read ({' '.join(str(exc).split())[:120]})")
        raise error(f"{label} holds {problem}: not a real file of its kind", hint) from None
    except (RecursionError, MemoryError):
        raise error(f"{label} is too deeply nested or too large to read", hint) from None
    kinds = expect if isinstance(expect, tuple) or expect is None else (expect,)
    if kinds is not None and not isinstance(obj, kinds):
        wanted = " or ".join(f"a JSON {_KIND[k]}" for k in kinds)
        raise error(f"{label} holds a JSON {_KIND.get(type(obj), type(obj).__name__)}, not {wanted}", hint)
    return obj


class _Constant(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Constant(name)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def inside(root: str | Path, name: Any, where: str, *, what: str = "file name", hint: str | None = None,
           error: type[MlbenchError] = DataError) -> Path:
    """``root / name`` for a relative ``name`` read from an untrusted file, proven to stay under ``root``.

    Refused (``error`` naming ``where``): a name that is not a non-empty string, holds a control character,
    is absolute (``/x``, ``C:\\x``, ``\\\\server``), or has a ``..`` part. Nothing is resolved on disk: a link
    inside the data folder is the folder owner's business, a name from a file is not."""
    fix = hint or f"a {what} is a path relative to {root}, e.g. 'images/0001.jpg'; fix the entry"
    if not isinstance(name, str) or not name:
        raise error(f"{where}: {what} {name!r} is not a file name", fix)
    if _CONTROL.search(name):
        raise error(f"{where}: {what} {name[:80]!r} holds a control character", fix)
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("/", "\\")):
        raise error(f"{where}: {what} {name[:80]!r} is an absolute path; it must lie inside {root}", fix)
    if ".." in posix.parts or ".." in windows.parts:
        raise error(f"{where}: {what} {name[:80]!r} climbs out of {root} with '..'", fix)
    return Path(root) / name
