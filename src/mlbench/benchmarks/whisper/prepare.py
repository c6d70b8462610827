"""``mlbench data prepare whisper``: LibriSpeech dev-clean + dev-other in the Whisper reference's layout.

What the reference's ``download_dataset.sh`` does (mlcommons/inference ``speech2text``): both splits downloaded
and converted to 16 kHz WAV with their manifests (shared with RNN-T: :mod:`mlbench.speech.librispeech`, verified
by md5, resumable), then every speaker-chapter's utterances packed, in order, into clips of at most 30 s with
0.5 s of silence between them (an utterance over 30 s left out), transcripts joined by a space::

    ROOT/dev-all-repack.json      ROOT/dev-all-repack/<speaker>-<chapter>_<k>.wav     (1,633 clips)
    ROOT/librispeech-dev-{clean,other}-wav.json, ROOT/dev-{clean,other}-wav/...        (the converted utterances)

``--root`` must be a new or empty folder, or one this command made (it resumes there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlbench.config import opt
from mlbench.data import folders
from mlbench.errors import ConfigError
from mlbench.speech.librispeech import BASE_URL, fetch_split

SPLITS = ("dev-clean", "dev-other")


@dataclass(kw_only=True)
class PrepareConfig:
    """Options of ``mlbench data prepare whisper``."""

    root: str = opt("", "where to build the data set (dev-all-repack.json, dev-all-repack/, the converted splits): "
                        "a new or empty folder, or one this command made (it resumes there)")
    base_url: str = opt(BASE_URL, "base address of the LibriSpeech archives (<split>.tar.gz)")
    retries: int = opt(3, "attempts per archive", min=1, max=100)
    keep_archives: bool = opt(True, "keep the downloaded .tar.gz archives (and the extracted FLAC files)")


def repack(manifests: list[Path], root: Path, say=print) -> Path:
    """The converted utterances of ``manifests`` packed into clips of at most 30 s (see the module's docstring)."""
    from mlbench.benchmarks.whisper import data as wdata
    from mlbench.speech import audio as audio_io

    chapters: dict[str, list[dict]] = {}
    for m in manifests:
        for e in json.loads(m.read_text()):
            stem = Path(e["files"][-1]["fname"]).stem  # <speaker>-<chapter>-<utterance>
            chapters.setdefault("-".join(stem.split("-")[:2]), []).append(e)
    groups: list[tuple[str, list[dict]]] = []  # (clip name, its utterances)
    left_out = 0
    for chapter, utts in chapters.items():
        packed: list[dict] = []
        length, k = 0.0, 0  # k: the chapter's clips so far
        for u in utts:
            d = float(u["original_duration"])
            if d > wdata.MAX_CLIP_S:
                left_out += 1
                continue
            if packed and length + wdata.PAD_S + d > wdata.MAX_CLIP_S:
                groups.append((f"{chapter}_{k}", packed))
                k += 1
                packed, length = [], 0.0
            length += d + (wdata.PAD_S if packed else 0.0)
            packed.append(u)
        if packed:
            groups.append((f"{chapter}_{k}", packed))
    gap = np.zeros(int(wdata.PAD_S * audio_io.SAMPLE_RATE), np.float32)

    def clips():  # one clip in memory at a time
        for name, packed in groups:
            parts: list[np.ndarray] = []
            for k, u in enumerate(packed):
                parts += ([gap] if k else []) + [audio_io.read_wav(root / u["files"][-1]["fname"])]
            yield name, np.concatenate(parts), " ".join(u["transcript"] for u in packed)

    manifest = wdata.write_set(root, clips())
    say(f"packed {sum(len(u) for u in chapters.values()) - left_out} utterances into {len(groups)} clips of at most "
        f"{wdata.MAX_CLIP_S:g} s ({left_out} longer utterances left out) -> {manifest.name}")
    return manifest


def prepare(cfg: PrepareConfig, say=print) -> list[Path]:
    if not cfg.root:
        raise ConfigError("--root is required", "mlbench data prepare whisper --root DIR")
    root = Path(cfg.root)
    with folders.writing(root, "LibriSpeech dev for Whisper", say=say):
        manifests = [fetch_split(s, root, base_url=cfg.base_url, retries=cfg.retries,
                                 keep_archives=cfg.keep_archives, say=say) for s in SPLITS]
        out = repack(manifests, root, say)
        return [*manifests, out]
