"""Downloads into a cache, verified by sha256, written atomically (a partial file never looks complete)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import urllib.error
import urllib.request
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
