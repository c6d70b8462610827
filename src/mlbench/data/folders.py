"""Folders that mlbench writes data sets into: it never deletes, overwrites or writes into a folder it did not make.

A folder that mlbench makes for a data set (``mlbench data prepare``, or the generated mini/tiny data of a
``--data-dir``) gets a marker file, ``.mlbench-data``, naming what it holds. mlbench writes into a folder only
when it is new, empty, marked, or inside mlbench's own cache (``$MLBENCH_CACHE``, which holds nothing else); a
folder holding anything else, or a file where the folder should be, is refused before anything is written,
so the user's files stay as they were. A write that fails in a folder it had just claimed takes the marker
back (and the folder, when it made it), so a failed prepare leaves nothing behind either.

Writers hold the folder's lock (``.mlbench-lock``; several processes may build the same cache at once) and
re-check completeness under it. :func:`move_into` replaces a data set's parts inside a claimed folder;
:func:`replace_dir` swaps a whole folder, refusing to delete one that is not mlbench's; :func:`build_once`
builds a cache folder once (in a temporary sibling, renamed under a lock, complete when its marker exists).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mlbench.errors import DataError

MARKER = ".mlbench-data"
LOCK = ".mlbench-lock"
_OWN = (MARKER, LOCK)


def _cache_root() -> Path:
    from mlbench.data.download import cache_dir

    return cache_dir()


def in_cache(path: str | Path) -> bool:
    """Whether ``path`` lies inside mlbench's cache (a folder mlbench owns whole)."""
    try:
        Path(path).resolve().relative_to(_cache_root().resolve())
    except ValueError:
        return False
    return True


def is_ours(root: str | Path) -> bool:
    """Whether mlbench made ``root``: its marker is there (or in a folder above it), or it lies in the cache."""
    root = Path(root).absolute()
    return any((p / MARKER).is_file() for p in (root, *root.parents)) or in_cache(root)


def others(root: Path, limit: int = 3) -> list[str]:
    """Up to ``limit`` names in ``root`` that are not mlbench's own bookkeeping files."""
    found: list[str] = []
    with os.scandir(root) as it:
        for entry in it:
            if entry.name not in _OWN:
                found.append(entry.name + ("/" if entry.is_dir() else ""))
                if len(found) >= limit:
                    break
    return sorted(found)


def claim(root: str | Path, what: str, hint: str | None = None) -> bool:
    """Make sure mlbench may write ``what`` into ``root``; returns True when this call created the folder.

    New: created and marked. Empty: marked. Marked or in the cache: used. Anything else is a DataError and
    nothing is written: a file in the way, or a folder holding files mlbench did not make."""
    from mlbench.runs import make_dir

    root = Path(root)
    fix = hint or (f"name a new or empty folder for {what}, or move those files away; mlbench writes only into "
                   "folders it made")
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file, not a folder: mlbench will not write {what} there",
                        hint or f"name a new or empty folder for {what}")
    if root.is_dir():
        if is_ours(root):
            return False
        try:
            foreign = others(root)
        except OSError as exc:
            raise DataError(f"cannot read the folder {root}: {exc.strerror or exc}", fix) from None
        if foreign:
            raise DataError(f"{root} already holds files mlbench did not make ({', '.join(foreign)}"
                            f"{', ...' if len(foreign) == 3 else ''}): it will not write {what} into it", fix)
        _mark(root, what)
        return False
    make_dir(root, writing=root)
    _mark(root, what)
    return True


def _mark(root: Path, what: str) -> None:
    from mlbench import __version__

    try:
        (root / MARKER).write_text(json.dumps({"made_by": "mlbench", "version": __version__, "holds": what}) + "\n")
    except OSError as exc:
        raise DataError(f"cannot write into {root}: {exc.strerror or exc}", "choose a folder you can write to"
                        ) from None


def _unclaim(root: Path, created: bool) -> None:
    """Undo :func:`claim` after a failed write, when nothing but the marker, the lock and empty folders (made
    before the failure) is in ``root``."""
    try:
        for dirpath, _, _ in sorted(os.walk(root), key=lambda w: -w[0].count(os.sep)):
            if dirpath != str(root):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)  # only an empty one goes
        if others(root, limit=1):
            return
        for name in _OWN:
            (root / name).unlink(missing_ok=True)
        if created:
            root.rmdir()
    except OSError:
        pass


@contextlib.contextmanager
def writing(root: str | Path, what: str, *, hint: str | None = None,
            say: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Claim ``root`` (see :func:`claim`) and hold its lock while the body writes into it; a body that fails
    before writing anything leaves ``root`` as it found it."""
    root = Path(root)
    was_empty = root.is_dir() and not is_ours(root)
    created = claim(root, what, hint)
    try:
        with open(root / LOCK, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if say:
                    say(f"waiting for another process that is writing {root}")
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield root
    except BaseException:
        if created or was_empty:
            _unclaim(root, created)
        raise


def move_into(src: Path, root: Path, last: tuple[str, ...] = ()) -> None:
    """Move every entry of ``src`` into ``root`` (a folder mlbench claimed), replacing entries of the same name
    (mlbench's own, from an earlier build); the names in ``last`` move last (the completion marker), then
    ``src`` is removed."""
    entries = sorted(src.iterdir(), key=lambda p: (p.name in last, last.index(p.name) if p.name in last else 0))
    for entry in entries:
        dest = root / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        os.replace(entry, dest)
    src.rmdir()


def replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished folder ``tmp`` at ``dest``: ``dest`` absent, or mlbench's own (then deleted first).
    A ``dest`` that is not mlbench's is a DataError and is left as it is."""
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir() or dest.is_symlink() or not is_ours(dest):
            raise DataError(f"{dest} is in the way and was not made by mlbench: it is left as it is",
                            "move it away, or point mlbench at another folder")
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def build_once(root: Path, build: Callable[[Path], None], *, marker: str, say: Callable[[str], None] | None = None,
               what: str = "data") -> Path:
    """``root``, built by ``build(tmp)`` when ``root/marker`` is missing (``build`` writes the marker last).

    Built in a temporary sibling and renamed under a lock, so that processes started together (the ranks of one
    job) build it once and a killed build never leaves a folder that looks complete; a half-made ``root`` of an
    older build is replaced only when it is mlbench's (see :func:`replace_dir`)."""
    if (root / marker).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building it: wait, then find it complete
        if (root / marker).is_file():
            return root
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            t0 = time.perf_counter()
            build(tmp)
            if not (tmp / marker).is_file():
                raise RuntimeError(f"building {root} did not write {marker}")
            replace_dir(tmp, root)
            if say:
                say(f"built {what} in {time.perf_counter() - t0:.1f} s: {root}")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return root
