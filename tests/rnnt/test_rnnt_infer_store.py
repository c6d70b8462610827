"""The RNN-T sample store: padding of a batch and the longest-first order offered for batching by length."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlbench.benchmarks.rnnt.data import Utterance
from mlbench.benchmarks.rnnt.inference import PAD_TO, SpeechStore


def store(lengths: list[int]) -> SpeechStore:
    utts = [Utterance(Path(f"u{i}.wav"), n / 16000, n, "a", (0,)) for i, n in enumerate(lengths)]
    s = SpeechStore(utts, performance_count=len(utts))
    s._audio = {i: np.full(n, i + 1, np.float32) for i, n in enumerate(lengths)}  # as load() leaves them
    return s


def test_order_is_longest_first_and_stable():
    s = store([1600, 8000, 3200, 8000, 100])
    assert s.order([0, 1, 2, 3, 4]) == [1, 3, 2, 0, 4]  # positions; the two 8000s keep their order
    assert s.order([4, 2, 3]) == [2, 1, 0]  # positions within the given indices, not dataset indices
    assert s.order([]) == []


def test_batch_pads_to_the_longest_rounded_up_and_keeps_lengths():
    s = store([1600, 2000, 100])
    x = s.batch([2, 1])
    assert x["audio"].shape == (2, 2 * PAD_TO) and x["audio_len"].tolist() == [100, 2000]
    assert (x["audio"][0, :100] == 3).all() and (x["audio"][0, 100:] == 0).all() and (x["audio"][1, :2000] == 2).all()
