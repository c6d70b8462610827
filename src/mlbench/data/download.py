"""Downloads, written atomically (a partial file never looks complete): into the cache, verified by sha256
(``fetch``), or resumed and retried, verified by the caller (``fetch_resumable``, data preparation)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mlbench.errors import DataError
from mlbench.runs import make_dir


def cache_dir(*parts: str) -> Path:
    """``$MLBENCH_CACHE`` or ``~/.cache/mlbench``, plus ``parts``."""
    root = Path(os.environ.get("MLBENCH_CACHE", Path.home() / ".cache" / "mlbench"))
    return root.joinpath(*parts)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, dest: Path, *, sha256: str | None = None, timeout: float = 30.0,
          verify=None) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    ``sha256`` checks the file's bytes; ``verify(path)`` can check something else (e.g. the decompressed
    content) and raises DataError on a mismatch.
    """
    if dest.is_file():
        try:
            _check(dest, sha256, verify)
            return dest
        except DataError:
            dest.unlink()
    make_dir(dest.parent)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
            shutil.copyfileobj(resp, f, length=1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"cannot write {dest}: {exc.strerror}",
                            f"free some space on the disk holding {dest.parent}, or point MLBENCH_CACHE at "
                            "another disk") from exc
        raise DataError(f"cannot download {url}: {getattr(exc, 'reason', exc)}", None) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        _check(tmp, sha256, verify)
    except DataError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    return dest


def _check(path: Path, sha256: str | None, verify) -> None:
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256:
            raise DataError(f"{path.name}: sha256 mismatch (got {got[:16]}..., expected {sha256[:16]}...)",
                            "the download is corrupt or the file changed upstream; delete it and retry")
    if verify is not None:
        verify(path)


class _Retryable(Exception):
    pass


def fetch_resumable(url: str, dest: Path, verify: Callable[[Path], None], retries: int = 3,
                    timeout: float = 60.0, hint: str = "check the address and the network; run again to resume"
                    ) -> Path:
    """``url`` to ``dest`` through ``dest.part`` (resumed with a Range request when the server allows), with
    ``retries`` attempts; ``hint`` is the DataError's hint when every attempt failed.

    A file already at ``dest`` counts as done only when ``verify`` accepts it; else it is fetched again."""
    if dest.is_file():
        try:
            verify(dest)
            return dest
        except (DataError, OSError):
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last = ""
    for attempt in range(retries):
        try:
            _get(url, part, timeout)
            verify(part)
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as exc:
            part.unlink(missing_ok=True)
            last = f"HTTP {exc.code} {exc.reason}"
            if exc.code in (403, 404, 410):  # not there: retrying will not help
                break
        except (_Retryable, DataError, OSError, urllib.error.URLError, TimeoutError) as exc:
            part.unlink(missing_ok=True)
            last = str(getattr(exc, "message", None) or getattr(exc, "reason", None) or exc)
        time.sleep(min(2.0, 0.2 * 2 ** attempt))
    raise DataError(f"cannot download {url}: {last}", hint)


def _get(url: str, part: Path, timeout: float) -> None:
    if part.is_symlink():  # never write through a link planted under the root
        part.unlink()
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resumed = resp.status == 206
        expected = resp.headers.get("Content-Length")
        got = 0
        with open(part, "ab" if resumed else "wb") as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                got += len(chunk)
    if expected is not None and got != int(expected):
        raise _Retryable(f"truncated transfer: {got} of {expected} bytes")
