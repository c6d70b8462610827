"""Helpers of the RNN-T tests: tiny LibriSpeech-format data (WAV + manifests, FLAC archives) and a local
HTTP server for the download tests. (A uniquely named module: ``import conftest`` is ambiguous.)"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np

from mlbench.benchmarks.rnnt import synthetic


def tiny_dataset(root: Path, train: int = 24, dev: int = 8) -> Path:
    """Generated tone 'speech' in the reference's format: ``root/librispeech-{train,dev}-wav.json`` + WAVs."""
    return synthetic.generate(root, "tones", train, dev, seed=0, say=lambda m: None)


def flac_bytes(seconds: float = 0.4, freq: float = 440.0, rate: int = 16000) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def librispeech_archive(split: str, utterances: dict[str, str], extra_member: str | None = None) -> bytes:
    """A ``<split>.tar.gz`` in LibriSpeech's layout: LibriSpeech/<split>/<spk>/<chap>/<id>.flac and
    <spk>-<chap>.trans.txt (``utterances``: id -> transcript, ids like 19-198-0001)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("LibriSpeech/LICENSE.TXT", b"CC BY 4.0\n")
        by_chapter: dict[tuple[str, str], list[str]] = {}
        for k, (uid, text) in enumerate(sorted(utterances.items())):
            spk, chap, _ = uid.split("-")
            add(f"LibriSpeech/{split}/{spk}/{chap}/{uid}.flac", flac_bytes(0.3 + 0.1 * k, 300 + 50 * k))
            by_chapter.setdefault((spk, chap), []).append(f"{uid} {text.upper()}")
        for (spk, chap), lines in by_chapter.items():
            add(f"LibriSpeech/{split}/{spk}/{chap}/{spk}-{chap}.trans.txt", ("\n".join(lines) + "\n").encode())
        if extra_member:
            add(extra_member, b"x")
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - LibriSpeech publishes md5


class Server:
    """A local HTTP server over ``directory`` (Range requests answered whole: the client handles a 200)."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        _QuietHandler.requests = self.requests = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        type(self).requests.append(self.path)
        super().do_GET()


def read_manifest(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text())
