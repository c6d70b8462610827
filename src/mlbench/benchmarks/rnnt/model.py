"""The RNN-T of the MLPerf reference (``rnnt/model.py``), at any size, with batched greedy decoding.

Encoder: ``pre_rnn`` LSTM layers over the spliced features (240 = 80 mel x 3 stacked frames), a time
stacking that joins 2 consecutive outputs (halving the frame rate: 60 ms per step), ``post_rnn`` LSTM layers.
Prediction network: an embedding of the previous label (the "start" input is a zero vector) and LSTM layers.
Joint: the two projected to ``joint_n_hid``, added, ReLU, dropout, a linear layer to the classes (labels +
blank, the blank last). LSTM forget-gate biases start at ``forget_gate_bias`` (1.0) and weights are scaled
by ``weights_init_scale`` (0.5), as in the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from mlbench.benchmarks.rnnt.features import FilterbankFeatures, stack_subsample


def lstm(input_size: int, hidden: int, layers: int, dropout: float, forget_gate_bias: float,
         weights_init_scale: float) -> nn.LSTM:
    m = nn.LSTM(input_size, hidden, layers, dropout=dropout if layers > 1 else 0.0)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.mul_(weights_init_scale)
            if name.startswith("bias_ih"):
                p[hidden:2 * hidden].fill_(forget_gate_bias)  # PyTorch's gate order: input, forget, cell, output
            elif name.startswith("bias_hh"):
                p[hidden:2 * hidden].zero_()
    return m


class StackTime(nn.Module):
    """[T, B, H] -> [ceil(T / f), B, H * f]; lengths -> ceil(length / f)."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = int(factor)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T, B, H = x.shape
        pad = (-T) % self.factor
        if pad:
            x = torch.cat([x, x.new_zeros(pad, B, H)], 0)
        x = x.transpose(0, 1).reshape(B, (T + pad) // self.factor, H * self.factor).transpose(0, 1)
        return x, torch.div(lengths + self.factor - 1, self.factor, rounding_mode="floor")


class RNNT(nn.Module):
    def __init__(self, num_classes: int, in_feats: int = 240, enc_n_hid: int = 1024, enc_pre_rnn_layers: int = 2,
                 enc_post_rnn_layers: int = 3, enc_stack_time_factor: int = 2, enc_dropout: float = 0.1,
                 pred_n_hid: int = 512, pred_rnn_layers: int = 2, pred_dropout: float = 0.3,
                 joint_n_hid: int = 512, joint_dropout: float = 0.3, forget_gate_bias: float = 1.0,
                 weights_init_scale: float = 0.5, **_: object):
        super().__init__()
        self.num_classes, self.blank = num_classes, num_classes - 1
        self.pred_n_hid = pred_n_hid
        rnn = dict(forget_gate_bias=forget_gate_bias, weights_init_scale=weights_init_scale)
        self.pre_rnn = lstm(in_feats, enc_n_hid, enc_pre_rnn_layers, enc_dropout, **rnn)
        self.stack_time = StackTime(enc_stack_time_factor)
        self.post_rnn = lstm(enc_stack_time_factor * enc_n_hid, enc_n_hid, enc_post_rnn_layers, enc_dropout, **rnn)
        self.enc_dropout = nn.Dropout(enc_dropout)
        self.embed = nn.Embedding(num_classes - 1, pred_n_hid)  # no embedding for the blank
        self.dec_rnn = lstm(pred_n_hid, pred_n_hid, pred_rnn_layers, pred_dropout, **rnn)
        self.joint_enc = nn.Linear(enc_n_hid, joint_n_hid)
        self.joint_pred = nn.Linear(pred_n_hid, joint_n_hid)
        self.joint_net = nn.Sequential(nn.ReLU(), nn.Dropout(joint_dropout), nn.Linear(joint_n_hid, num_classes))

    # ------------------------------------------------------------------ training
    def encode(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, in_feats] -> encoder output [B, T', H] and its lengths."""
        x, _ = self.pre_rnn(feats.transpose(0, 1))
        x, lengths = self.stack_time(self.enc_dropout(x), lengths)
        x, _ = self.post_rnn(x)
        return self.enc_dropout(x).transpose(0, 1), lengths

    def predict(self, tokens: torch.Tensor, state=None, add_start: bool = True):
        """tokens [B, U] -> [B, U+1, H] (a zero "start" step first) and the LSTM state."""
        y = self.embed(tokens.clamp(max=self.num_classes - 2))
        if add_start:
            y = torch.cat([y.new_zeros(y.shape[0], 1, y.shape[2]), y], 1)
        g, state = self.dec_rnn(y.transpose(0, 1), state)
        return g.transpose(0, 1), state

    def joint(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """f [B, T, H], g [B, U+1, H] -> logits [B, T, U+1, classes]."""
        return self.joint_net(self.joint_enc(f).unsqueeze(2) + self.joint_pred(g).unsqueeze(1))

    def forward(self, feats, feat_lens, tokens):
        f, f_lens = self.encode(feats, feat_lens)
        g, _ = self.predict(tokens)
        return self.joint(f, g), f_lens

    # ------------------------------------------------------------------ greedy decoding
    @torch.no_grad()
    def greedy(self, feats: torch.Tensor, feat_lens: torch.Tensor, max_symbols_per_step: int = 30,
               max_symbols: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched greedy decoding: at each encoder step emit the joint's best label until it is the blank
        (or ``max_symbols_per_step``), feeding each emitted label to the prediction network. Returns the
        labels ``[B, max_symbols]`` (padded with -1) and their counts."""
        f, f_lens = self.encode(feats, feat_lens)
        B, T, _ = f.shape
        fe = self.joint_enc(f)
        out = torch.full((B, max_symbols), -1, dtype=torch.long, device=f.device)
        count = torch.zeros(B, dtype=torch.long, device=f.device)
        start = torch.ones(B, dtype=torch.bool, device=f.device)
        g, state = self._pred_step(torch.zeros(B, 1, dtype=torch.long, device=f.device), None, start)
        not_start = torch.zeros_like(start)
        for t in range(T):
            active_t = f_lens > t
            for _ in range(max_symbols_per_step):
                logits = self.joint_net(fe[:, t] + self.joint_pred(g[:, 0]))
                k = logits.argmax(-1)
                emit = active_t & (k != self.blank) & (count < max_symbols)
                if not bool(emit.any()):
                    break
                out[emit, count[emit]] = k[emit]
                count += emit.long()
                g_new, state_new = self._pred_step(k[:, None], state, not_start)
                m = emit[:, None]
                g = torch.where(m[:, :, None], g_new, g)
                state = (torch.where(m[None], state_new[0], state[0]), torch.where(m[None], state_new[1], state[1]))
        return out, count

    def _pred_step(self, label: torch.Tensor, state, is_start: torch.Tensor):
        y = self.embed(label.clamp(0, self.num_classes - 2))
        y = torch.where(is_start[:, None, None], torch.zeros_like(y), y)
        g, state = self.dec_rnn(y.transpose(0, 1), state)
        return g.transpose(0, 1), state


class RNNTInference(nn.Module):
    """Raw audio to labels in one module (what inference serves): features, splicing, greedy decoding.
    ``forward(audio [N, S] float32, audio_len [N] int64) -> (labels [N, max_symbols] int32 padded with -1,
    counts [N] int32)``."""

    def __init__(self, rnnt: RNNT, stacking: int = 3, subsampling: int = 3, max_symbols: int = 300):
        super().__init__()
        self.rnnt = rnnt
        self.features = FilterbankFeatures(dither=0.0)
        self.stacking, self.subsampling, self.max_symbols = stacking, subsampling, max_symbols

    def forward(self, audio: torch.Tensor, audio_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel, flen = self.features(audio, audio_len)
        x, xl = stack_subsample(mel, flen, self.stacking, self.subsampling)
        labels, counts = self.rnnt.greedy(x.transpose(1, 2), xl, max_symbols=self.max_symbols)
        return labels.to(torch.int32), counts.to(torch.int32)
