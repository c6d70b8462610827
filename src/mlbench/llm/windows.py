"""Fixed-length training samples cut from indexed token files, as Megatron's GPT dataset makes them.

The documents of a ``.bin`` lie back to back; sample ``i`` is the ``seq_len + 1`` tokens starting at token
``i x seq_len`` (inputs are its first ``seq_len`` tokens, labels its last ``seq_len``: consecutive samples share
one token). Documents are neither padded nor separated beyond what the tokenizer put in them, as in the
reference (``preprocess_data_for_megatron`` without ``--append-eod``, ``reset_attention_mask=False``).

Training visits the samples of all files in an order shuffled per epoch from the seed; each global batch is
``world_size`` consecutive slices of that order, one per rank. Megatron's own index (which also shuffles the
documents before cutting) is not reproduced bit for bit: the statistics are the same, the exact samples are not.
Evaluation reads the first ``n`` samples of its file in order (MLPerf's Llama 3.1 8B: the first 1,024 sequences,
unshuffled), each rank a disjoint share.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mlbench.data.indexed_tokens import IndexedTokens, check_ids
from mlbench.errors import DataError


class Windows:
    """The samples of one or more token files, addressed by one index."""

    def __init__(self, files: list[IndexedTokens], seq_len: int, *, vocab_size: int):
        self.files, self.seq_len, self.vocab_size = files, seq_len, vocab_size
        counts = [max(0, (f.n_tokens - 1) // seq_len) for f in files]
        self.offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self.count = int(self.offsets[-1])

    def __len__(self) -> int:
        return self.count

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Samples ``indices`` as an int64 array (len(indices), seq_len + 1); token ids checked."""
        out = np.empty((len(indices), self.seq_len + 1), dtype=np.int64)
        which = np.searchsorted(self.offsets, indices, side="right") - 1
        for row, (i, f) in enumerate(zip(indices.tolist(), which.tolist())):
            start = (i - int(self.offsets[f])) * self.seq_len
            out[row] = self.files[f].tokens[start:start + self.seq_len + 1]
        check_ids(out, self.vocab_size, f"{self.files[0].what} {self.files[0].bin_path.parent}")
        return out


def to_batch(samples: np.ndarray) -> dict[str, torch.Tensor]:
    t = torch.from_numpy(samples)
    return {"input_ids": t[:, :-1].contiguous(), "labels": t[:, 1:].contiguous()}


class TrainWindows:
    """This rank's training batches, one epoch at a time (the harness's ``Batches``; resumable mid-epoch)."""

    def __init__(self, windows: Windows, batch_size: int, *, rank: int, world_size: int, seed: int):
        self.windows, self.batch_size = windows, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0
        if len(self) == 0:
            need = (batch_size * world_size) * (windows.seq_len + 1)
            raise DataError(f"the training data holds {len(windows)} samples of {windows.seq_len} tokens, fewer than "
                            f"one global batch of {batch_size * world_size} (about {need} tokens)",
                            "use more training data, or a smaller batch")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.windows) // (self.batch_size * self.world_size)

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch, 0x11A]).permutation(len(self.windows))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self.iter_from(0)

    def iter_from(self, k: int) -> Iterator[dict[str, torch.Tensor]]:
        order = self._order()
        step = self.batch_size * self.world_size
        for b in range(k, len(self)):
            lo = b * step + self.rank * self.batch_size
            yield to_batch(self.windows.get(order[lo:lo + self.batch_size]))


class EvalWindows:
    """The first ``count`` samples of the evaluation file, in order; this rank's share in batches."""

    def __init__(self, windows: Windows, count: int, batch_size: int, *, rank: int, world_size: int):
        if len(windows) < count:
            raise DataError(f"the evaluation data holds {len(windows)} samples of {windows.seq_len} tokens; the "
                            f"benchmark evaluates on {count}", "use the complete evaluation file")
        self.windows, self.batch_size, self.total = windows, batch_size, count
        self.mine = np.arange(rank, count, world_size, dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        return None

    def __len__(self) -> int:
        return -(-len(self.mine) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for lo in range(0, len(self.mine), self.batch_size):
            yield to_batch(self.windows.get(self.mine[lo:lo + self.batch_size]))
