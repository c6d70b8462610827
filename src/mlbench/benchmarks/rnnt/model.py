"""The RNN-T of the MLPerf reference (``rnnt/model.py``), at any size, with batched greedy decoding.

Encoder: ``pre_rnn`` LSTM layers over the spliced features (240 = 80 mel x 3 stacked frames), a time
stacking that joins 2 consecutive outputs (halving the frame rate: 60 ms per step), ``post_rnn`` LSTM layers.
Prediction network: an embedding of the previous label (the "start" input is a zero vector) and LSTM layers.
Joint: the two projected to ``joint_n_hid``, added, ReLU, dropout, a linear layer to the classes (labels +
blank, the blank last). LSTM forget-gate biases start at ``forget_gate_bias`` (1.0) and weights are scaled
by ``weights_init_scale`` (0.5), as in the reference.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from mlbench.benchmarks.rnnt.features import FilterbankFeatures, stack_subsample


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast casts to on ``device_type`` now, or None when it is off."""
    try:
        on, dtype = torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError):  # torch < 2.4
        on, dtype = ((torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()) if device_type == "cuda" else
                     (torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()))
    return dtype if on else None


@functools.cache
def cpu_has_bf16_lstm() -> bool:
    """Whether this CPU's oneDNN builds a bf16 LSTM (it needs AVX-512; on an AVX2-only CPU building the
    primitive fails), probed once on a tiny LSTM."""
    probe = nn.LSTM(4, 4)
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            probe(torch.zeros(2, 1, 4))
    except RuntimeError:
        return False
    return True


def lstm_leaves_autocast(x: torch.Tensor) -> bool:
    """Whether an LSTM on ``x`` must run in fp32 outside autocast, because autocast would pick a precision that
    is not the run's: CUDA's autocast runs cuDNN's LSTM in fp16 whatever its dtype (ATen's AutocastRNN casts
    to half), so under bf16 it would train in fp16 with no loss scaling (the scaler is for fp16 runs), where
    small gradients underflow; a CPU's oneDNN has no fp16 LSTM (it fails to build the primitive), nor a bf16
    one without AVX-512 (``cpu_has_bf16_lstm``)."""
    dtype = _autocast_dtype(x.device.type) if x.device.type in ("cuda", "cpu") else None
    if x.device.type == "cpu" and dtype == torch.bfloat16:
        return not cpu_has_bf16_lstm()
    return (x.device.type, dtype) in (("cuda", torch.bfloat16), ("cpu", torch.float16))


class LSTM(nn.LSTM):
    """``nn.LSTM`` that runs in fp32 with autocast off where autocast would run it in another precision than
    the run's, or in none at all (``lstm_leaves_autocast``); elsewhere it is ``nn.LSTM``."""

    def forward(self, x, hx=None):  # noqa: D102
        if lstm_leaves_autocast(x):
            with torch.autocast(x.device.type, enabled=False):
                return super().forward(x.float(), None if hx is None else tuple(h.float() for h in hx))
        return super().forward(x, hx)


def lstm(input_size: int, hidden: int, layers: int, dropout: float, forget_gate_bias: float,
         weights_init_scale: float) -> nn.LSTM:
    m = LSTM(input_size, hidden, layers, dropout=dropout if layers > 1 else 0.0)
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
                 weights_init_scale: float = 0.5, ctc_weight: float = 0.0, **_: object):
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
        # mlbench's auxiliary CTC head (not the reference's; mini only): the encoder's outputs to the classes, the
        # blank shared with the joint's; trained beside the RNN-T loss and unused by decoding
        self.ctc_head = nn.Linear(enc_n_hid, num_classes) if ctc_weight > 0 else None
        self.ctc_weight = float(ctc_weight)

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
        """Joint logits ``[B, T, U+1, classes]`` and encoder lengths; with a CTC head, its logits ``[B, T,
        classes]`` third."""
        f, f_lens = self.encode(feats, feat_lens)
        g, _ = self.predict(tokens)
        if self.ctc_head is not None:
            return self.joint(f, g), f_lens, self.ctc_head(f)
        return self.joint(f, g), f_lens

    # ------------------------------------------------------------------ greedy decoding
    @torch.no_grad()
    def greedy(self, feats: torch.Tensor, feat_lens: torch.Tensor, max_symbols_per_step: int = 30,
               max_symbols: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched greedy decoding: at each encoder step emit the joint's best label until it is the blank
        (or ``max_symbols_per_step``), feeding each emitted label to the prediction network; an utterance
        stops emitting after ``max_symbols``. Returns the labels ``[B, max_symbols]`` (padded with -1) and
        their counts. Each utterance's labels are those of decoding it alone (the reference's decoder).

        The loop is what costs at small sizes (a few small tensor ops per symbol step), so it does little:
        the batch is sorted longest first, so that the utterances still running at step ``t`` are a prefix
        (a view: finished ones drop out of every op); the prediction network's joint projection is kept
        and recomputed only when a label is emitted; the prediction LSTM runs as cells (no module
        dispatch); each step's best labels and emit mask are only recorded, and the label matrix is built
        once at the end."""
        f, f_lens = self.encode(feats, feat_lens)
        B, T, _ = f.shape
        device = f.device
        lens = f_lens.clamp(0, T)
        order = torch.argsort(lens, descending=True, stable=True)
        sorted_lens = lens[order].tolist()  # one host sync per batch
        fe = self.joint_enc(f[order])  # [B, T, J], longest utterance first
        out = torch.full((B, max_symbols), -1, dtype=torch.long, device=device)
        count = torch.zeros(B, dtype=torch.long, device=device)
        if B == 0 or sorted_lens[0] <= 0 or max_symbols <= 0:
            return out, count
        lin = self.joint_net[-1]
        jw, jb = lin.weight, lin.bias
        pw, pb = self.joint_pred.weight, self.joint_pred.bias
        cells = [(getattr(self.dec_rnn, f"weight_ih_l{i}"), getattr(self.dec_rnn, f"weight_hh_l{i}"),
                  getattr(self.dec_rnn, f"bias_ih_l{i}"), getattr(self.dec_rnn, f"bias_hh_l{i}"))
                 for i in range(self.dec_rnn.num_layers)]
        # the prediction network's first output (zero "start" input, zero state) is the same for every row
        y0 = fe.new_zeros(1, self.pred_n_hid, dtype=self.embed.weight.dtype)
        hs, cs = [], []
        x = y0
        for w_ih, w_hh, b_ih, b_hh in cells:
            z = x.new_zeros(1, w_hh.shape[1])
            h, c = torch.lstm_cell(x, (z, z), w_ih, w_hh, b_ih, b_hh)
            hs.append(h.expand(B, -1).contiguous())
            cs.append(c.expand(B, -1).contiguous())
            x = h
        pg = F.linear(hs[-1], pw, pb)  # [B, J]
        blank = self.blank
        emb = self.embed.weight
        steps: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (rows, best labels, emit mask) per step
        n = B
        capped = False
        for t in range(sorted_lens[0]):
            while sorted_lens[n - 1] <= t:  # utterances shorter than t leave the batch (a prefix view)
                n -= 1
            if n < pg.shape[0]:
                pg, count = pg[:n], count[:n]
                hs, cs = [h[:n] for h in hs], [c[:n] for c in cs]
            fe_t = fe[:n, t]
            for _ in range(max_symbols_per_step):
                k = F.linear(torch.relu(fe_t + pg), jw, jb).argmax(-1)
                emit = k != blank
                if capped or len(steps) >= max_symbols:  # only then can an utterance reach the cap
                    capped = True
                    emit &= count < max_symbols
                if not bool(emit.any()):
                    break
                steps.append((n, k, emit))
                count = count + emit
                x = F.embedding(torch.where(emit, k, 0), emb)
                new_h, new_c = [], []
                for (w_ih, w_hh, b_ih, b_hh), h, c in zip(cells, hs, cs, strict=True):
                    h, c = torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
                    new_h.append(h)
                    new_c.append(c)
                    x = h
                m = emit[:, None]
                pg = torch.where(m, F.linear(x, pw, pb), pg)
                hs = [torch.where(m, a, b) for a, b in zip(new_h, hs, strict=True)]
                cs = [torch.where(m, a, b) for a, b in zip(new_c, cs, strict=True)]
        return self._gather_labels(steps, order, B, max_symbols, device)

    @staticmethod
    def _gather_labels(steps, order: torch.Tensor, B: int, max_symbols: int, device) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
        """The recorded steps -> labels ``[B, max_symbols]`` (-1 padded) and counts, in the caller's order."""
        out = torch.full((B, max_symbols), -1, dtype=torch.long, device=device)
        if not steps:
            return out, torch.zeros(B, dtype=torch.long, device=device)
        S = len(steps)
        K = torch.zeros(S, B, dtype=torch.long, device=device)
        E = torch.zeros(S, B, dtype=torch.bool, device=device)
        i = 0
        while i < S:  # runs of steps over the same rows: one copy each
            j = i
            while j < S and steps[j][0] == steps[i][0]:
                j += 1
            n = steps[i][0]
            K[i:j, :n] = torch.stack([s[1] for s in steps[i:j]])
            E[i:j, :n] = torch.stack([s[2] for s in steps[i:j]])
            i = j
        pos = E.long().cumsum(0) - 1  # [S, B]: each emitted label's place in its utterance
        s_idx, b_idx = E.nonzero(as_tuple=True)
        sorted_out = torch.full((B, max_symbols), -1, dtype=torch.long, device=device)
        sorted_out[b_idx, pos[s_idx, b_idx]] = K[s_idx, b_idx]
        out[order] = sorted_out
        count = torch.zeros(B, dtype=torch.long, device=device)
        count[order] = E.sum(0)
        return out, count

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
        if torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
            from mlbench.errors import MlbenchError

            # a trace would freeze one batch's decoding path (its step and label counts) into the graph
            raise MlbenchError("RNN-T inference has no ONNX export: greedy decoding is a loop whose length "
                               "depends on the audio", "use --backend pytorch for rnnt")
        mel, flen = self.features(audio, audio_len)
        x, xl = stack_subsample(mel, flen, self.stacking, self.subsampling)
        labels, counts = self.rnnt.greedy(x.transpose(1, 2), xl, max_symbols=self.max_symbols)
        return labels.to(torch.int32), counts.to(torch.int32)
