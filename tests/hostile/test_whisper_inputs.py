"""Hostile input for Whisper inference (issue 31): a WAV that is not audio, another sample rate, an empty or an
over-long clip, a transcript the scored labels cannot carry, a model directory without its processor, truncated
weights. Each is one line naming the problem and the fix, exit 1, no traceback, nothing valid (all are found
before LoadGen starts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from catalogue import Case, check

TINY = ("infer", "whisper", "--size", "tiny", "--data-dir", "{tmp}/d", "--quick", "--duration-s", "0.1",
        "--threads", "1", "--output-dir", "{tmp}/runs")
REF = ("infer", "whisper", "--size", "reference", "--model-dir", "{tmp}/m", "--data-dir", "{tmp}/d", "--quick",
       "--duration-s", "0.1", "--threads", "1", "--output-dir", "{tmp}/runs")


def _clips(change=None):
    """Three tone clips in the reference's layout, then ``change(folder, manifest entries)``."""
    def setup(tmp: Path) -> None:
        from mlbench.benchmarks.whisper import data as wdata

        d = tmp / "d"
        wdata.tone_set(d, 3, seed=0)
        entries = json.loads((d / wdata.MANIFEST).read_text())
        if change:
            change(d, entries)
        (d / wdata.MANIFEST).write_text(json.dumps(entries))
    return setup


def _wav(d: Path, e: dict) -> Path:
    return d / e["files"][0]["fname"]


def _not_audio(d: Path, entries: list) -> None:
    _wav(d, entries[1]).write_text("this is a transcript, not audio\n" * 20)


def _rate_8k(d: Path, entries: list) -> None:
    from mlbench.speech import audio

    audio.write_wav(_wav(d, entries[0]), np.zeros(8000, np.float32), rate=8000)


def _empty(d: Path, entries: list) -> None:
    from mlbench.speech import audio

    audio.write_wav(_wav(d, entries[2]), np.zeros(0, np.float32))


def _too_long(d: Path, entries: list) -> None:
    from mlbench.speech import audio

    audio.write_wav(_wav(d, entries[0]), np.zeros(16000 * 3, np.float32))  # tiny's window: 2 s


def _accents(d: Path, entries: list) -> None:
    entries[1]["transcript"] = "a naïve café"


def _model_dir(change):
    def setup(tmp: Path) -> None:
        from mlbench.benchmarks.whisper import model as wmodel

        _clips()(tmp)
        tok = wmodel.char_tokenizer()
        spec = {"d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "n_mels": 80, "source_positions": 100,
                "target_positions": 12}
        wmodel.save_dir(wmodel.WhisperRunner(wmodel.build(spec, tok, seed=0), tok, max_new_tokens=4), tmp / "m")
        change(tmp / "m")
    return setup


def _no_processor(m: Path) -> None:
    (m / "preprocessor_config.json").unlink()


def _truncated(m: Path) -> None:
    p = m / "model.safetensors"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


CASES = [  # through the CLI: exit code, one line, no traceback, nothing valid
    Case("wav-not-audio", TINY, 1, "cannot read audio file", setup=_clips(_not_audio)),
    Case("model-dir-without-processor", REF, 1, "has no preprocessor_config.json",
         setup=_model_dir(_no_processor)),
    Case("size-mini-not-trained", ("infer", "whisper", "--size", "mini", "--quick", "--output-dir", "{tmp}/runs"), 1,
         "whisper --size mini is not available yet"),
    Case("backend-onnxruntime", TINY + ("--backend", "onnxruntime"), 2, "whisper has no ONNX Runtime backend",
         setup=_clips()),
]
# the same checks, in-process (each CLI run costs a Python start with torch): the message of the DataError
DATA = [("wav-8khz", _rate_8k, "sample rate 8000 Hz, Whisper reads 16000 Hz"),
        ("wav-empty", _empty, "the audio file is empty"),
        ("wav-over-long", _too_long, "longer than the model's 2 s window"),
        ("transcript-outside-labels", _accents, "has characters outside the scored labels")]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_whisper_hostile_inputs(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


@pytest.mark.parametrize("change, message", [d[1:] for d in DATA], ids=[d[0] for d in DATA])
def test_whisper_bad_clips_fail_before_anything_runs(change, message: str, tmp_path: Path) -> None:
    from mlbench import registry
    from mlbench.errors import DataError
    from mlbench.inference.task import TaskOptions, build

    _clips(change)(tmp_path)
    task = build(registry.get("whisper", "tiny"), TaskOptions(data_dir=str(tmp_path / "d"), say=lambda m: None))
    with pytest.raises(DataError, match=message) as err:
        task.dataset()
    assert "\n" not in err.value.message and err.value.hint
    assert task._runner is None  # found before the model was built


def test_truncated_weights_fail_before_transformers_reads_them(tmp_path: Path) -> None:
    from mlbench.benchmarks.whisper import model as wmodel
    from mlbench.errors import DataError

    _model_dir(_truncated)(tmp_path)
    with pytest.raises(DataError, match="is truncated"):
        wmodel.load_dir(tmp_path / "m", max_new_tokens=4)
