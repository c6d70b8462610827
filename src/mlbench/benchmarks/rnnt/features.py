"""Audio features as the RNN-T reference computes them (``common/data/features.py`` and its config).

Log-mel filterbank: dither 1e-5, pre-emphasis 0.97, STFT (n_fft 512, 20 ms Hann window, 10 ms hop at 16 kHz),
power spectrum, 80 mel filters (Slaney scale and area normalisation, librosa's default), natural log, then
per-feature normalisation over each utterance's valid frames. Frame splicing stacks 3 consecutive frames
(240 features) and keeps every 3rd (30 ms per step). SpecAugment (training only): 2 frequency masks of 0-20
bins and 10 time masks of up to 3% of the utterance (the adaptive form), filled with 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _hz_to_mel(f: np.ndarray) -> np.ndarray:  # Slaney: linear below 1 kHz, logarithmic above
    f = np.asarray(f, np.float64)
    lin = f / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    lin = m * (200.0 / 3)
    log_part = 1000.0 * np.exp((math.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log_part, lin)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
                   ) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters on the Slaney mel scale, area-normalised (librosa's
    ``filters.mel`` defaults, which the reference calls)."""
    fmax = fmax or sample_rate / 2
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


class FilterbankFeatures(torch.nn.Module):
    """Waveforms ``[B, S]`` with lengths -> normalised log-mel ``[B, n_mels, frames]`` with frame lengths."""

    def __init__(self, sample_rate: int = 16_000, window_size: float = 0.02, window_stride: float = 0.01,
                 n_fft: int = 512, n_mels: int = 80, dither: float = 1e-5, preemph: float = 0.97):
        super().__init__()
        self.win_length = int(sample_rate * window_size)
        self.hop_length = int(sample_rate * window_stride)
        self.n_fft, self.dither, self.preemph = n_fft, dither, preemph
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=False), persistent=False)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor")

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # fp32 whatever the caller's autocast: in fp16 the filterbank product overflows (power above 65504) and
        # its 1e-20 floor rounds to 0, so silent (padding) frames give log(0) and NaN features
        with torch.autocast(audio.device.type, enabled=False):
            x = audio.float()
            if self.dither > 0 and self.training:
                x = x + self.dither * torch.randn_like(x)
            if self.preemph:
                x = torch.cat([x[:, :1], x[:, 1:] - self.preemph * x[:, :-1]], 1)
            spec = torch.stft(x, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                              window=self.window, center=True, return_complex=True)
            power = spec.real.square() + spec.imag.square()  # [B, F, frames]
            mel = torch.log(torch.matmul(self.fb, power) + 1e-20)
            flen = self.frames(lengths).clamp(min=1, max=mel.shape[2])
            return normalize_per_feature(mel, flen), flen


def normalize_per_feature(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each feature to zero mean, unit std over the utterance's valid frames; padding becomes 0."""
    mask = (torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
    n = lengths.to(x.dtype)[:, None, None]
    mean = (x * mask).sum(2, keepdim=True) / n
    var = ((x - mean).square() * mask).sum(2, keepdim=True) / (n - 1).clamp(min=1)
    return (x - mean) / (var.sqrt() + 1e-5) * mask


def stack_subsample(x: torch.Tensor, lengths: torch.Tensor, stacking: int = 3, subsampling: int = 3
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, F, T] -> [B, F * stacking, ceil(T / subsampling)]: frame t holds frames t .. t+stacking-1."""
    T = x.shape[2]
    seq = [x] + [torch.nn.functional.pad(x[:, :, n:], (0, n)) for n in range(1, stacking)]
    out = torch.cat(seq, 1)[:, :, ::subsampling]
    new_len = torch.div(lengths + subsampling - 1, subsampling, rounding_mode="floor")
    return out[:, :, : max(1, -(-T // subsampling))], new_len


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, g: torch.Generator, freq_masks: int = 2,
                 max_freq: int = 20, time_masks: int = 10, max_time: float = 0.03) -> torch.Tensor:
    """SpecAugment without time warping (the reference's adaptive form: time mask width <= max_time x length)."""
    B, F, T = x.shape
    mask = torch.zeros(B, F, T, dtype=torch.bool)
    for b in range(B):
        for _ in range(freq_masks):
            w = int(torch.randint(0, max_freq + 1, (1,), generator=g))
            f0 = int(torch.randint(0, max(1, F - w), (1,), generator=g))
            mask[b, f0:f0 + w] = True
        mt = int(round(float(lengths[b]) * max_time)) if 0 < max_time < 1 else int(max_time)
        for _ in range(time_masks):
            w = int(torch.randint(0, mt + 1, (1,), generator=g))
            t0 = int(torch.randint(0, max(1, T - w), (1,), generator=g))
            mask[b, :, t0:t0 + w] = True
    return x.masked_fill(mask.to(x.device), 0.0)


def warp(mel: torch.Tensor, g: torch.Generator, time_stretch: float = 0.0, freq_warp: float = 0.0) -> torch.Tensor:
    """Augmentation of one cached log-mel [F, T] (mlbench's, not the reference's): the time axis stretched by a
    factor drawn in 1 +- ``time_stretch`` (tempo, as a feature-level speed perturbation) and the mel axis by one
    in 1 +- ``freq_warp`` (vocal tract length, a speaker change), both by linear interpolation; 0 leaves an axis
    as it is."""
    F, T = mel.shape
    if freq_warp:
        a = 1.0 + freq_warp * (2 * float(torch.rand((), generator=g)) - 1)
        src = (torch.arange(F, dtype=mel.dtype) * a).clamp(max=F - 1)
        lo = src.floor().long().clamp(max=F - 2) if F > 1 else src.long()
        w = (src - lo.to(mel.dtype))[:, None]
        mel = mel[lo] * (1 - w) + mel[(lo + 1).clamp(max=F - 1)] * w
    if time_stretch:
        r = 1.0 + time_stretch * (2 * float(torch.rand((), generator=g)) - 1)
        n = max(1, int(round(T / r)))
        if n != T:
            mel = torch.nn.functional.interpolate(mel[None], size=n, mode="linear", align_corners=True)[0]
    return mel
