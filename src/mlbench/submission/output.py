"""The folder ``mlbench package -o DIR`` writes: empty, or a previous package of the same submitter and system.

A package is written into a staging folder inside DIR, then put in place of the previous one as a whole (its
NOT_FOR_SUBMISSION marker, results and checker logs included), so no file of an earlier package survives beside
the new one. ``DIR/.mlbench-package.json`` says whose package the folder holds; a folder with anything else in
it is refused, so mlbench never deletes or overwrites what it did not write.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mlbench.errors import ConfigError
from mlbench.submission.untrusted import BadInput, read_object

MANIFEST = ".mlbench-package.json"
TEMPLATE = "system-fields-to-fill.json"
MARKER = "NOT_FOR_SUBMISSION.txt"
STAGING = ".mlbench-staging"


class Output:
    def __init__(self, out: Path, kind: str, submitter: str, system: str):
        self.out = Path(out)
        self.owner = {"kind": kind, "submitter": submitter, "system": system}
        self.previous: list[str] = []  # top-level entries of the package this one replaces

    def claim(self) -> None:
        """Refuse DIR unless it is empty, missing, or a package of the same kind, submitter and system."""
        out = self.out
        if out.is_symlink() and not out.exists():
            raise ConfigError(f"invalid value for 'output': {out} is a broken link", "give a folder")
        if out.exists() and not out.is_dir():
            raise ConfigError(f"invalid value for 'output': {out} is a file, not a folder",
                              "give an empty folder or a new path for the package")
        if not out.exists():
            return
        entries = sorted(p.name for p in out.iterdir())
        if not entries:
            return
        owner, listed = self._manifest()
        if owner is None:
            if entries == [TEMPLATE]:  # only the template an earlier attempt wrote
                self.previous = entries
                return
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise ConfigError(f"invalid value for 'output': {out} is not empty and holds no mlbench package "
                              f"({shown})", "give an empty folder or a new path: mlbench never overwrites files "
                                            "it did not write")
        if owner != self.owner:
            raise ConfigError(f"invalid value for 'output': {out} holds the {owner.get('kind')} package of "
                              f"{owner.get('submitter')} / {owner.get('system')}, not of {self.owner['submitter']} "
                              f"/ {self.owner['system']}",
                              "give an empty folder, or the same --submitter and --system to replace it")
        ours = set(listed) | {MANIFEST, TEMPLATE}
        foreign = [e for e in entries if e not in ours and not e.startswith(STAGING)]
        if foreign:
            raise ConfigError(f"invalid value for 'output': {out} holds files the earlier package did not write "
                              f"({', '.join(foreign[:5])})", "move them away or give a new folder")
        self.previous = [e for e in entries if e != MANIFEST]

    def _manifest(self) -> tuple[dict | None, list[str]]:
        path = self.out / MANIFEST
        if not path.is_file() or path.is_symlink():
            return None, []
        try:
            data = read_object(path, "package manifest")
        except BadInput:
            return None, []
        if not isinstance(data.get("entries"), list):
            return None, []
        owner = {k: data.get(k) for k in ("kind", "submitter", "system")}
        return owner, [e for e in data["entries"] if isinstance(e, str)]

    def write_template(self, template: dict) -> Path:
        """The system-fields template for the user to fill (the only file written when fields are missing)."""
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / TEMPLATE
        path.unlink(missing_ok=True)
        path.write_text(json.dumps(template, indent=2) + "\n")
        if not (self.out / MANIFEST).is_file():
            self._write_manifest()
        return path

    def staging(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        stage = self.out / f"{STAGING}-{os.getpid()}"
        _remove(stage)
        stage.mkdir()
        return stage

    def commit(self, stage: Path) -> None:
        """Remove the previous package, whole, and move the staged one in its place."""
        for name in self.previous + [n.name for n in self.out.iterdir() if n.name.startswith(STAGING)
                                     and n != stage]:
            _remove(self.out / name)
        for entry in stage.iterdir():
            os.replace(entry, self.out / entry.name)
        stage.rmdir()
        self._write_manifest()

    def abandon(self, stage: Path) -> None:
        _remove(stage)

    def build(self, fill, forced: list[str]) -> None:
        """``fill(stage)`` writes the package into a staging folder; with ``forced`` reasons (--force) the
        NOT_FOR_SUBMISSION marker lists them; then the package replaces the previous one whole. A failure
        leaves the previous package as it was."""
        stage = self.staging()
        try:
            fill(stage)
            if forced:
                (stage / MARKER).write_text("Written with --force despite these reasons; this package is not a "
                                            "valid submission:\n" + "".join(f"- {p}\n" for p in forced))
        except BaseException:
            self.abandon(stage)
            raise
        self.commit(stage)

    def _write_manifest(self) -> None:
        entries = sorted(p.name for p in self.out.iterdir() if p.name != MANIFEST)
        (self.out / MANIFEST).write_text(json.dumps({**self.owner, "entries": entries}, indent=2) + "\n")

    def finish(self) -> None:
        """Record what the folder holds now (the checkers' logs included)."""
        self._write_manifest()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
