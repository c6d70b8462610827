"""RNN-T inference (``mlbench infer rnnt``): the task of :mod:`mlbench.inference.task`.

Samples are raw 16 kHz waveforms (read and kept in memory when LoadGen loads them); a batch is the named
inputs ``{"audio" [N, S] float32, "audio_len" [N] int64}``, padded by the store to the longest sample of the
batch rounded up to 0.1 s (so that batches of similar lengths share shapes). The model (:class:`RNNTInference`)
computes the features, runs the encoder and decodes greedily inside ``forward``; its outputs are the labels
``[N, 300]`` (padded with -1) and their counts. The response LoadGen logs is the sample's label ids as int32;
accuracy is the WER of the decoded transcripts (lower is better), as MLPerf's ``accuracy_eval.py`` for rnnt.

Data: reference, LibriSpeech dev-clean from ``--data-dir`` (``librispeech-dev-clean-wav.json``, utterances up
to 15 s: MLPerf's 2,513); mini/tiny, the generated evaluation set. Models: mini/tiny, the checkpoint of
``mlbench train rnnt --size mini|tiny`` (cached, trained first when missing) or ``--weights``; reference,
``--weights``: MLPerf Inference's ``rnnt.pt`` (characters; recognised from its tensors and served with the
inference reference's features and decoding, :mod:`.modelfiles`), or a state dict of mlbench's training model
with the SentencePiece vocabulary; ``random`` measures throughput.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mlbench.benchmarks.rnnt import data as sdata
from mlbench.benchmarks.rnnt import modelfiles
from mlbench.benchmarks.rnnt.model import RNNTInference
from mlbench.benchmarks.rnnt.text import Tokenizer, word_errors
from mlbench.benchmarks.rnnt.workload import RNNTWorkload, data_root, tokenizer_for
from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.errors import ConfigError, MlbenchError
from mlbench.inference.models import find_weights, load_state, read_weights, seeded_model
from mlbench.inference.task import TaskOptions
from mlbench.speech import audio as audio_io
from mlbench.speech.librispeech import manifest_name

PAD_TO = 1600  # samples (0.1 s): batch lengths are rounded up to a multiple


class SpeechStore(audio_io.WaveStore):
    """Waveforms kept in memory between ``load`` and ``unload``; ``batch`` pads them (named inputs)."""

    def __init__(self, utts: list[sdata.Utterance], performance_count: int):
        super().__init__(lambda i: audio_io.read_wav(utts[i].path), len(utts), performance_count)
        self.utts = utts

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        waves = self.waves(indices)
        lens = np.array([len(w) for w in waves], dtype=np.int64)
        width = int(-(-int(lens.max()) // PAD_TO) * PAD_TO)
        return {"audio": self.pad(waves, width), "audio_len": lens}

    def order(self, indices: Sequence[int]) -> list[int]:
        """Positions of ``indices`` longest utterance first (stable): batches cut from a query in this order hold
        utterances of similar lengths, so padding wastes little (Offline: a third of the audio in unsorted
        batches of 32 on mini). For a harness that may reorder a large query before batching it."""
        lens = [self.utts[int(i)].num_samples for i in indices]
        return sorted(range(len(lens)), key=lens.__getitem__, reverse=True)

    def label(self, index: int) -> str:
        return self.utts[index].transcript


class RNNTTask:
    metric = "wer"
    higher_is_better = False
    response_dtype = "int32"
    # see task.InferenceTask
    cuda_graphs_unsupported = "greedy decoding is a loop whose length depends on the audio (read on the host)"

    def __init__(self, bench: Benchmark, opts: TaskOptions):
        self.bench, self.opts = bench, opts
        self._store: SpeechStore | None = None
        self._tokenizer = None
        self._weights_file: Path | None = None
        self._state = None  # the weights file's content, read once
        self._official: modelfiles.Interface | None = None

    # ------------------------------------------------------------------ model file
    def interface(self) -> modelfiles.Interface | None:
        """MLPerf's inference rnnt.pt, recognised from its tensors (None: mlbench's own model)."""
        if self._state is None and self.opts.weights and self.opts.weights != "random":
            self._state = read_weights(self._weights(), key="state_dict")
            self._official = modelfiles.recognise(self._state)
            if self._official is not None and self._official.num_classes != len(Tokenizer().labels) + 1:
                raise ConfigError(f"{self._weights()}: MLPerf's inference RNN-T layout with "
                                  f"{self._official.num_classes} classes; its 28 characters and the blank make 29",
                                  "pass MLPerf's rnnt.pt (zenodo record 3662521) or a state dict of mlbench's model")
        return self._official

    def info(self) -> dict:
        iface = self.interface()
        return {"model_file": {**(iface.info() if iface else {}), "file": self.opts.weights}}

    def _root(self) -> Path:
        return data_root(self.bench, self.opts.data_dir, say=self.opts.say)

    @property
    def tokenizer(self):
        if self._tokenizer is None:  # the official inference model reads characters, whatever the size says
            self._tokenizer = Tokenizer() if self.interface() else tokenizer_for(self.bench, self._root())
        return self._tokenizer

    def dataset(self) -> SpeechStore:
        if self._store is None:
            self.interface()  # the weights decide the labels (characters for MLPerf's inference model)
            root = self._root()
            hp = self.bench.hparams
            utts = sdata.read_manifest(root / manifest_name(hp["eval_split"]), root, self.tokenizer,
                                       hp["inference_max_duration"])
            if self.opts.max_samples:
                utts = utts[: self.opts.max_samples]
            self._store = SpeechStore(utts, self.bench.performance_sample_count)
        return self._store

    def model(self) -> torch.nn.Module:
        hp = self.bench.hparams
        if self.opts.weights == "random":
            net = seeded_model(RNNTWorkload(self.bench).build_model, 0)
        else:
            iface, state, path = self.interface(), self._state, self._weights()
            hint = ("pass MLPerf's rnnt.pt, or weights of the same model and size (a state dict from mlbench train "
                    "rnnt)")
            if iface is not None:  # MLPerf's inference model: its sizes, the reference's features and decoding
                from mlbench.benchmarks.rnnt.model import RNNT

                net = RNNT(iface.num_classes, in_feats=iface.in_feats, enc_n_hid=iface.enc_n_hid,
                           enc_pre_rnn_layers=iface.enc_pre_rnn_layers, enc_post_rnn_layers=iface.enc_post_rnn_layers,
                           enc_stack_time_factor=iface.enc_stack_time_factor, pred_n_hid=iface.pred_n_hid,
                           pred_rnn_layers=iface.pred_rnn_layers, joint_n_hid=iface.joint_n_hid)
                load_state(net, modelfiles.convert(state, iface), path, what="MLPerf's inference RNN-T", hint=hint)
                return modelfiles.ReferenceRNNTInference(net.eval()).eval()
            net = RNNTWorkload(self.bench).build_model()
            if state is None:  # no --weights: the cached model of mlbench train (interface() read no file)
                state = read_weights(path)
            for key in ("model", "state_dict"):
                if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                    state = state[key]
            if not isinstance(state, dict):
                raise ConfigError(f"weights {path} do not fit the RNN-T {self.bench.size}: the file holds a "
                                  f"{type(state).__name__}, not a state dict", hint)
            load_state(net, {k.removeprefix("module."): v for k, v in state.items()}, path,
                       what=f"the RNN-T {self.bench.size}", hint=hint)
        return RNNTInference(net, hp["stacking"], hp["subsampling"], hp["max_symbols"]).eval()

    def model_id(self) -> str:
        return "random0" if self.opts.weights == "random" else download.sha256_file(self._weights())[:12]

    def _weights(self) -> Path:
        if self._weights_file is None:
            self._weights_file = find_weights(self.bench, self.opts, files=".pt", reference=self._reference_weights)
        return self._weights_file

    def _reference_weights(self) -> Path:
        raise MlbenchError("RNN-T reference inference needs --weights",
                           "pass MLPerf's rnnt.pt (zenodo record 3662521), or the model of mlbench train rnnt "
                           "--size reference, or --weights random to measure throughput only")

    def postprocess(self, outputs: Sequence[np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
        """Labels [N, 300] and counts [N] -> each sample's label ids (int32, variable length)."""
        labels, counts = np.asarray(outputs[0]), np.asarray(outputs[1]).reshape(-1)
        return [np.ascontiguousarray(labels[j, : int(counts[j])].astype(np.int32)) for j in range(len(indices))]

    def accuracy(self, responses: dict[int, bytes], store: SpeechStore) -> dict[str, float]:
        """Corpus WER of the decoded responses against the transcripts (an empty response is an empty
        hypothesis: every reference word counts as deleted)."""
        errors = words = 0
        for i, raw in responses.items():
            hyp = self.tokenizer.decode(np.frombuffer(raw[: len(raw) // 4 * 4], dtype=np.int32).tolist())
            e, n = word_errors(hyp, store.label(int(i)))
            errors, words = errors + e, words + n
        return {"wer": errors / words if words else float("inf"), "word_errors": errors, "words": words,
                "samples": len(responses)}


def build_task(bench: Benchmark, opts: TaskOptions) -> RNNTTask:
    return RNNTTask(bench, opts)
