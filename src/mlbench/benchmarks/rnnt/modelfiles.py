"""MLPerf Inference's RNN-T model file (retired after v3.1; mlcommons/inference
``retired_benchmarks/speech_recognition/rnnt``: README, ``pytorch/configs/rnnt.toml``, ``pytorch_SUT.py``,
``pytorch/model_separable_rnnt.py``, ``pytorch/parts/features.py``, ``pytorch/decoders.py``).

``rnnt.pt`` (WER 7.452% on dev-clean up to 15 s): a DistributedDataParallel training checkpoint, a dict holding
``state_dict``. Its network is not the training benchmark's (which mlbench's reference size trains): characters
(the 28 labels `` abcdefghijklmnopqrstuvwxyz'`` plus the blank, last), a 320-wide prediction network, and one
joint layer over the concatenated encoder and prediction outputs. mlbench reads the sizes from the file's
tensors, renames them into its own RNN-T (the joint layer split into its encoder and prediction halves, which
computes the same sum) and serves it as the reference does:

- features (``FilterbankFeatures`` of ``input_eval``): per utterance, unpadded: pre-emphasis 0.97, STFT (512,
  20 ms Hann window, 10 ms hop, centred), power plus the deterministic dither 1e-5 squared, 80 Slaney mel
  filters, natural log; frames spliced by 3 and subsampled by 3; then each of the 240 features normalised over
  the utterance's frames (unbiased std + 1e-5);
- greedy decoding with at most 30 symbols per encoder step and no cap per utterance (mlbench caps at
  :data:`MAX_SYMBOLS`, far above dev-clean's longest transcript), the prediction network started from zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mlbench.benchmarks.rnnt.features import mel_filterbank

MAX_SYMBOLS = 1000  # labels per utterance: characters of 15 s of speech stay far below
DITHER = 1e-5  # input_eval's dither; the reference adds its square to the power spectrum (deterministic dithering)
SPLICING = 3  # input_eval's frame_splicing: 3 frames side by side, every 3rd kept


@dataclass(frozen=True)
class Interface:
    """The sizes read from an MLPerf inference RNN-T checkpoint."""

    num_classes: int
    in_feats: int
    enc_n_hid: int
    enc_pre_rnn_layers: int
    enc_post_rnn_layers: int
    enc_stack_time_factor: int
    pred_n_hid: int
    pred_rnn_layers: int
    joint_n_hid: int

    name = "MLPerf Inference rnnt.pt (characters, joint over concatenated encoder and prediction outputs)"

    def info(self) -> dict:
        return {"interface": self.name, "classes": self.num_classes, "pred_n_hid": self.pred_n_hid,
                "pre_processing": "the MLPerf inference reference's (per utterance: log-mel, frames spliced by 3 "
                                  "and subsampled, 240 features normalised per utterance)"}


def _layers(state: dict, prefix: str) -> int:
    return sum(1 for k in state if k.startswith(f"{prefix}.weight_ih_l"))


def recognise(state: Any) -> Interface | None:
    """The interface of a checkpoint when it is MLPerf's inference RNN-T (None: another layout)."""
    if not isinstance(state, dict):
        return None
    state = _plain(state)
    need = ("encoder.pre_rnn.lstm.weight_ih_l0", "encoder.post_rnn.lstm.weight_hh_l0", "prediction.embed.weight",
            "prediction.dec_rnn.lstm.weight_ih_l0", "joint_net.0.weight")
    if not all(k in state for k in need):
        return None
    last = max((k for k in state if k.startswith("joint_net.") and k.endswith(".weight")),
               key=lambda k: int(k.split(".")[1]))
    pre_ih, post_ih = state["encoder.pre_rnn.lstm.weight_ih_l0"], state["encoder.post_rnn.lstm.weight_ih_l0"]
    enc = state["encoder.pre_rnn.lstm.weight_hh_l0"].shape[1]
    return Interface(num_classes=state[last].shape[0], in_feats=pre_ih.shape[1], enc_n_hid=enc,
                     enc_pre_rnn_layers=_layers(state, "encoder.pre_rnn.lstm"),
                     enc_post_rnn_layers=_layers(state, "encoder.post_rnn.lstm"),
                     enc_stack_time_factor=post_ih.shape[1] // enc,
                     pred_n_hid=state["prediction.embed.weight"].shape[1],
                     pred_rnn_layers=_layers(state, "prediction.dec_rnn.lstm"),
                     joint_n_hid=state["joint_net.0.weight"].shape[0])


def _plain(state: dict) -> dict:
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return {k.removeprefix("module.").replace("joint.net.", "joint_net."): v for k, v in state.items()}


RENAMES = (("encoder.pre_rnn.lstm.", "pre_rnn."), ("encoder.post_rnn.lstm.", "post_rnn."),
           ("prediction.dec_rnn.lstm.", "dec_rnn."), ("prediction.embed.", "embed."))


def convert(state: dict, iface: Interface) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under mlbench's RNNT names (the reference's featurizer buffers dropped, as its
    ``load_and_migrate_checkpoint`` drops them). Its joint layer ``W [J, E + P]`` on ``cat(f, g)`` becomes
    ``joint_enc`` (``W[:, :E]``, the bias) and ``joint_pred`` (``W[:, E:]``, no bias): the same sum. A tensor of
    another name is kept as it is (the load then names it)."""
    state = _plain(state)
    last = max(int(k.split(".")[1]) for k in state if k.startswith("joint_net.") and k.endswith(".weight"))
    e = iface.enc_n_hid
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("audio_preprocessor."):
            continue
        new = next((k.replace(a, b, 1) for a, b in RENAMES if k.startswith(a)), k)
        if k == "joint_net.0.weight":
            out["joint_enc.weight"], out["joint_pred.weight"] = v[:, :e], v[:, e:]
        elif k == "joint_net.0.bias":
            out["joint_enc.bias"], out["joint_pred.bias"] = v, torch.zeros_like(v)
        elif k in (f"joint_net.{last}.weight", f"joint_net.{last}.bias"):
            out["joint_net.2." + k.rsplit(".", 1)[1]] = v  # mlbench's joint_net: ReLU, Dropout, Linear
        else:
            out[new] = v
    return out


class ReferenceFeatures(nn.Module):
    """The inference reference's features of one utterance: ``[S]`` float32 -> ``[240, T]`` (see the module)."""

    def __init__(self, sample_rate: int = 16_000, n_mels: int = 80, n_fft: int = 512):
        super().__init__()
        self.win, self.hop, self.n_fft = int(sample_rate * 0.02), int(sample_rate * 0.01), n_fft
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win, periodic=False), persistent=False)

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio.float()[None]
        frames = (x.shape[1] + self.hop - 1) // self.hop
        frames = (frames + SPLICING - 1) // SPLICING
        x = torch.cat([x[:, :1], x[:, 1:] - 0.97 * x[:, :-1]], 1)
        spec = torch.view_as_real(torch.stft(x, self.n_fft, hop_length=self.hop, win_length=self.win,
                                             window=self.window, center=True, return_complex=True))
        power = spec.pow(2).sum(-1) + DITHER ** 2
        mel = torch.log(torch.matmul(self.fb, power) + 1e-20)  # [1, 80, T]
        seq = [mel]
        for n in range(1, SPLICING):
            shifted = torch.zeros_like(mel)
            shifted[:, :, :-n] = mel[:, :, n:]
            seq.append(shifted)
        x = torch.cat(seq, 1)[:, :, ::SPLICING]
        valid = x[:, :, :frames]
        x = (x - valid.mean(2, keepdim=True)) / (valid.std(2, keepdim=True) + 1e-5)
        return x[0, :, :frames]


class ReferenceRNNTInference(nn.Module):
    """Raw audio to labels as MLPerf's inference reference: ``forward(audio [N, S], audio_len [N]) -> (labels
    [N, MAX_SYMBOLS] int32 padded with -1, counts [N] int32)``, each utterance's features computed alone."""

    def __init__(self, rnnt: nn.Module):
        super().__init__()
        self.rnnt, self.features = rnnt, ReferenceFeatures()

    def forward(self, audio: torch.Tensor, audio_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = [self.features(audio[i, :int(n)]) for i, n in enumerate(audio_len.tolist())]
        lens = torch.tensor([f.shape[1] for f in feats], dtype=torch.long)
        x = torch.zeros(len(feats), int(lens.max()), feats[0].shape[0])
        for i, f in enumerate(feats):
            x[i, :f.shape[1]] = f.T
        labels, counts = self.rnnt.greedy(x, lens, max_symbols=MAX_SYMBOLS)
        return labels.to(torch.int32), counts.to(torch.int32)
