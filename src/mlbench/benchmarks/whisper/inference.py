"""Whisper inference (``mlbench infer whisper``): the task of :mod:`mlbench.inference.task`.

Samples are raw 16 kHz waveforms (read when LoadGen loads them); a batch is ``{"audio": [N, window]}``, each clip
padded with silence to the model's window (30 s for large-v3), as Whisper's feature extractor pads. The model
(:class:`.model.WhisperRunner`) computes the log-mel features, runs the encoder once for the batch and decodes
greedily inside ``forward`` (timed, as the reference's vLLM does from the raw audio). The response LoadGen logs
is the reference's: the lower-cased text as int64 character labels, with the generated token count as LoadGen's
``n_tokens`` (Offline's metric is tokens/s). Accuracy is the reference's WER (:mod:`.text`), lower is better.

``--backend openai``: an OpenAI-compatible server already running transcribes (``/v1/audio/transcriptions``; the
harness of language models runs it, see :mod:`mlbench.inference.generate_run`). Each sample is sent as the WAV file
of its waveform (16 kHz mono 16-bit PCM, encoded when LoadGen loads it, untimed), the returned text is logged as the
same character labels and scored the same way; ``--model-dir`` then only gives the tokenizer that counts the text's
tokens (without it no tokens/s is reported) and the window the clips are checked against.

Models: reference, ``--model-dir``: the user's Hugging Face Whisper directory (large-v3), or ``--weights random``
(large-v3's shape, random weights, tokenizer made here: throughput only); tiny, random weights of a very small
Whisper; mini refuses to run (mlbench has no trained mini model yet). Data: reference, ``--data-dir`` in the
reference's layout (:mod:`.data`); tiny, generated tone clips (``--data-dir`` to use another set).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlbench.benchmarks.whisper import data as wdata
from mlbench.benchmarks.whisper import model as wmodel
from mlbench.benchmarks.whisper.text import from_labels, to_labels, word_errors
from mlbench.definition import Benchmark
from mlbench.errors import ConfigError, DataError, MlbenchError
from mlbench.inference import inputs
from mlbench.inference.task import TaskOptions
from mlbench.speech.audio import WaveStore, wav_bytes

SEED = 0  # random weights: the same model every run
#: backends that send each sample to a server instead of running the model here (generate_run runs them)
REQUEST_BACKENDS = ("openai",)


class ClipStore(WaveStore):
    """Waveforms kept in memory between ``load`` and ``unload``; ``batch`` pads them to the model's window.
    ``wav_files``: each loaded clip is kept as a WAV file instead (``prompt(i)``: what a server is sent)."""

    def __init__(self, clips: list[wdata.Clip], performance_count: int, window: int, wav_files: bool = False):
        super().__init__(self._read_wav if wav_files else self._read_clip, len(clips), performance_count)
        self.clips = clips
        self.window = window

    def _read_clip(self, index: int) -> np.ndarray:
        return wdata.read_clip(self.clips[index], self.window)

    def _read_wav(self, index: int) -> bytes:
        return wav_bytes(self._read_clip(index))

    def prompt(self, index: int) -> bytes:
        return self._audio[index]

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        return {"audio": self.pad(self.waves(indices), self.window)}

    def label(self, index: int) -> str:
        return self.clips[index].transcript


class WhisperTask:
    metric = "wer"
    higher_is_better = False
    response_dtype = "int64"  # the reference's accuracy_eval.py default (--output_dtype int64)
    options = ("model_dir",)
    host_postprocess = False
    cuda_graphs_unsupported = "greedy decoding is a loop whose length depends on the audio"

    def __init__(self, bench: Benchmark, opts: TaskOptions):
        self.bench, self.opts = bench, opts
        self.model_path = opts.extra.get("model_dir")
        self.remote = opts.backend in REQUEST_BACKENDS  # a server transcribes; no model runs here
        self._runner: wmodel.WhisperRunner | None = None
        self._store: ClipStore | None = None
        if self.remote:
            self.engine_kind = "transcription"
            self.max_new_tokens = bench.hparams["max_new_tokens"]  # not sent: the API has no such field
            if opts.weights:
                raise ConfigError(f"--weights {opts.weights} with --backend {opts.backend}: the server holds the model",
                                  "drop --weights; give --model-dir only for the tokenizer that counts tokens")
            if self.model_path and not (Path(self.model_path) / "tokenizer.json").is_file():
                raise ConfigError(f"--model-dir {self.model_path} has no tokenizer.json",
                                  f"with --backend {opts.backend}, --model-dir gives the served model's tokenizer "
                                  "(to count tokens): pass its Hugging Face folder, or drop --model-dir (no tokens/s)")
        if bench.size == "mini":  # the definition holds mini's shape; the model trained here does not exist yet
            raise MlbenchError("whisper --size mini is not available yet: no small Whisper has been trained here on "
                               "RNN-T mini's speech, so mini has no model and no measured target",
                               "use --size tiny, or --size reference with --model-dir and --data-dir")
        if opts.backend == "onnxruntime":
            raise ConfigError("whisper has no ONNX Runtime backend: its generation is a loop whose length depends "
                              "on the audio, which one exported graph cannot hold",
                              "use --backend pytorch (in-process) or --backend openai (a transcription server)")
        if opts.weights and opts.weights != "random":
            raise ConfigError(f"--weights {opts.weights}: whisper reads a model directory",
                              "pass --model-dir DIR (a Hugging Face Whisper directory), or --weights random")
        if self.model_path and opts.weights == "random":
            raise ConfigError("--model-dir and --weights random both given", "give one of them")

    # ------------------------------------------------------------------ model
    def runner(self) -> wmodel.WhisperRunner:
        if self._runner is None:
            hp = self.bench.hparams
            if self.model_path:
                self.opts.say(f"loading the Whisper model of {self.model_path}")
                self._runner = wmodel.load_dir(self.model_path, max_new_tokens=hp["max_new_tokens"])
            elif self.opts.weights == "random" or hp["data"] == "tones":
                tok = wmodel.char_tokenizer()
                self._runner = wmodel.WhisperRunner(wmodel.build(hp, tok, seed=SEED), tok,
                                                    max_new_tokens=hp["max_new_tokens"])
            else:
                raise ConfigError(f"whisper {self.bench.size} needs a model: --model-dir DIR",
                                  "pass the Hugging Face Whisper directory (openai/whisper-large-v3's files) with "
                                  "--model-dir, or --weights random to measure throughput")
        return self._runner

    def model(self):
        return self.runner()

    def model_dir(self) -> str | None:
        """The Hugging Face directory given (request backends: its tokenizer counts the returned text's tokens)."""
        return self.model_path

    def response(self, text: str | None, token_ids: Sequence[int]) -> np.ndarray:
        """What LoadGen logs of a server's transcription: the reference's labels of the text (int64)."""
        return np.asarray(to_labels(text or ""), dtype=np.int64)

    def model_id(self) -> str:
        if self.model_path:
            p = Path(self.model_path)
            stamp = max((f.stat().st_mtime_ns for f in p.glob("*.safetensors")), default=0)
            # a digest, not hash(): Python salts str hashes per process, and the id names cache files across runs
            return "dir-" + hashlib.sha256(f"{p.resolve()}:{stamp}".encode()).hexdigest()[:12]
        return f"random-{SEED}"

    def info(self) -> dict:
        if self.remote:
            return {"model": {"served_by": "the server at --endpoint (--api-model)", "tokenizer": self.model_path,
                              "window_s": self.window() / wmodel.SAMPLE_RATE},
                    "request": "each sample's waveform as a WAV file (16 kHz mono 16-bit PCM)",
                    "response": "the returned text, lower-cased as the reference's 42 character labels (int64); "
                                "n_tokens: the text's tokens with --model-dir's tokenizer, else not counted"}
        r = self.runner()
        cfg = r.model.config
        return {"model": {"dir": self.model_path, "weights": "random" if not self.model_path else "model dir",
                          "d_model": cfg.d_model, "layers": cfg.encoder_layers, "n_mels": r.n_mels,
                          "window_s": r.chunk_samples / wmodel.SAMPLE_RATE, "max_new_tokens": r.max_new_tokens,
                          "vocab": len(r.tokenizer)},
                "response": "lower-cased text as the reference's 42 character labels (int64), n_tokens: the "
                            "generated tokens, the end token included"}

    # ------------------------------------------------------------------ data
    def _data_dir(self) -> Path:
        hp = self.bench.hparams
        if self.opts.data_dir:
            return Path(self.opts.data_dir)
        if hp["data"] != "tones":
            raise DataError(f"whisper {self.bench.size} needs LibriSpeech in the reference's layout",
                            wdata.PREPARE_HINT)
        from mlbench.data import folders
        from mlbench.data.download import cache_dir

        def build(tmp: Path) -> None:
            wdata.tone_set(tmp, hp["clips"], seed=0)
            (tmp / ".complete").write_text("ok\n")

        return folders.build_once(cache_dir(f"whisper-{self.bench.size}-v1"), build, marker=".complete",
                                  say=self.opts.say, what=f"the generated whisper {self.bench.size} clips")

    def window(self) -> int:
        """Samples in the model's window (two convolutions over frames every 10 ms), from config.json or the
        size's shape: known before the model is built, so that the data are checked first."""
        if self._runner is not None:
            return self._runner.chunk_samples
        # a request backend reads only the tokenizer of --model-dir: its config.json, when there, gives the window
        if self.model_path and (not self.remote or (Path(self.model_path) / "config.json").is_file()):
            positions = wmodel.read_dir_config(Path(self.model_path)).get("max_source_positions", 1500)
        else:
            positions = self.bench.hparams["source_positions"]
        if not isinstance(positions, int) or not 0 < positions <= 1 << 20:
            raise DataError(f"{self.model_path}/config.json: max_source_positions {str(positions)[:20]!r} is not a "
                            "positive whole number", "pass a Hugging Face Whisper directory")
        return positions * 2 * wmodel.HOP

    def dataset(self) -> ClipStore:
        if self._store is None:
            window = self.window()
            clips = wdata.read_manifest(self._data_dir(), max_clip_s=window / wmodel.SAMPLE_RATE)
            if self.opts.max_samples:
                clips = clips[: self.opts.max_samples]
            wdata.check_files(clips, max_clip_s=window / wmodel.SAMPLE_RATE)
            self._store = ClipStore(clips, self.bench.performance_sample_count, window, wav_files=self.remote)
        return self._store

    # ------------------------------------------------------------------ responses
    def postprocess(self, outputs: Sequence[np.ndarray], indices: Sequence[int]) -> inputs.RaggedArray:
        ids, counts = outputs[0], outputs[1]
        texts = self.runner().decode(ids)
        labels = [to_labels(t) for t in texts]
        offsets = np.zeros(len(labels) + 1, np.int64)
        np.cumsum([len(x) for x in labels], out=offsets[1:])
        flat = np.fromiter((c for x in labels for c in x), dtype=np.int64, count=int(offsets[-1]))
        return inputs.RaggedArray(flat, offsets, tokens=np.asarray(counts, np.int64).reshape(-1))

    def accuracy(self, responses: dict[int, bytes], store: ClipStore) -> dict[str, float]:
        """The reference's WER of the logged responses (an empty response is an empty hypothesis)."""
        errors = words = 0
        for i, raw in responses.items():
            hyp = from_labels(np.frombuffer(raw[: len(raw) // 8 * 8], dtype=np.int64))
            e, n = word_errors(hyp, store.label(int(i)))
            errors, words = errors + e, words + n
        wer = errors / words if words else float("inf")
        return {"wer": wer, "word_accuracy_percent": 100 * (1 - wer), "word_errors": errors, "words": words,
                "samples": len(responses)}


def build_task(bench: Benchmark, opts: TaskOptions) -> WhisperTask:
    return WhisperTask(bench, opts)
