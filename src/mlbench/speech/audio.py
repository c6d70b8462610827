"""Reading and writing the WAV files of the reference's LibriSpeech layout (16 kHz, mono, 16-bit PCM).

``soundfile`` (libsndfile) reads any WAV and FLAC when it is installed; without it, 16-bit PCM WAV (what the
reference's conversion and mlbench's synthesis write) is read with the standard library. Every failure is a
:class:`~mlbench.errors.DataError` naming the file.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mlbench.errors import DataError

SAMPLE_RATE = 16_000  # the reference's audio_dataset.sample_rate


def have_soundfile() -> bool:
    try:
        import soundfile  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def read_wav(path: str | Path, expect_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples in [-1, 1]. Missing, unreadable, empty, multi-channel or another rate: DataError."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"audio file not found: {p}", "check the manifest's files[].fname and --data-dir")
    try:
        if have_soundfile():
            import soundfile as sf

            data, rate = sf.read(str(p), dtype="float32", always_2d=True)
        else:
            with wave.open(str(p), "rb") as w:
                rate, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
                raw = w.readframes(n)
            if width != 2:
                raise DataError(f"{p}: {8 * width}-bit WAV; without soundfile only 16-bit PCM is read",
                                "install soundfile (pip install soundfile) or convert the file to 16-bit PCM")
            if len(raw) != n * ch * width:
                raise DataError(f"{p}: truncated WAV ({len(raw)} of {n * ch * width} data bytes)",
                                "re-create the file (`mlbench data prepare` converts again)")
            data = (np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0).reshape(-1, ch)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - wave/libsndfile raise several types for broken files
        raise DataError(f"cannot read audio file {p}: {exc}", "the file is corrupt or not a WAV; re-create it"
                        ) from exc
    if data.shape[1] != 1:
        raise DataError(f"{p}: {data.shape[1]} channels, the pipeline expects mono", "convert it to mono")
    if rate != expect_rate:
        raise DataError(f"{p}: sample rate {rate} Hz, the pipeline expects {expect_rate} Hz",
                        f"resample it to {expect_rate} Hz (`mlbench data prepare` does)")
    if len(data) == 0:
        raise DataError(f"{p}: the audio file is empty (0 samples)", "re-create the file or drop it from the manifest")
    return np.ascontiguousarray(data[:, 0])


def write_wav(path: str | Path | BinaryIO, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono WAV (the standard library's writer), to a file or a binary file object."""
    pcm = np.clip(np.asarray(samples, np.float32), -1.0, 1.0 - 1 / 32768)
    with wave.open(path if hasattr(path, "write") else str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((pcm * 32768).astype("<i2").tobytes())


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """The WAV file ``write_wav`` writes, as bytes (what a transcription server is sent)."""
    buf = io.BytesIO()
    write_wav(buf, samples, rate)
    return buf.getvalue()


def resample(x: np.ndarray, src: int, dst: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (scipy) from ``src`` to ``dst`` Hz."""
    if src == dst:
        return x.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(src, dst)
    return resample_poly(x, dst // g, src // g).astype(np.float32)


class WaveStore:
    """A sample store of waveforms (LoadGen's QSL side): ``read(i)`` gives sample ``i``'s samples, kept in memory
    between ``load`` and ``unload``; ``waves`` hands loaded ones to a subclass's ``batch``, ``pad`` lays them out."""

    def __init__(self, read: Callable[[int], np.ndarray], total_count: int, performance_count: int):
        self._read = read
        self.total_count = total_count
        self.performance_count = min(performance_count, total_count)
        self._audio: dict[int, np.ndarray] = {}

    def load(self, indices: Sequence[int]) -> None:
        for i in map(int, indices):
            if i not in self._audio:
                self._audio[i] = self._read(i)

    def unload(self, indices: Sequence[int]) -> None:
        for i in indices:
            self._audio.pop(int(i), None)

    def waves(self, indices: Sequence[int]) -> list[np.ndarray]:
        try:
            return [self._audio[int(i)] for i in indices]
        except KeyError as exc:
            raise KeyError("batch() asked for samples that were not loaded") from exc

    @staticmethod
    def pad(waves: list[np.ndarray], width: int) -> np.ndarray:
        """The waveforms as rows of a zero-padded float32 array ``width`` samples wide."""
        out = np.zeros((len(waves), width), np.float32)
        for j, w in enumerate(waves):
            out[j, : len(w)] = w
        return out
