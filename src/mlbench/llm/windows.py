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

The batch iterators take any sample source with ``len()`` and ``batch(indices) -> dict of tensors`` (these
windows, or rows packed in memory), so that the fine-tuning benchmark shares them.
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


    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return to_batch(self.get(indices))

    def describe(self) -> str:
        return f"samples of {self.seq_len} tokens"


def to_batch(samples: np.ndarray) -> dict[str, torch.Tensor]:
    t = torch.from_numpy(samples)
    return {"input_ids": t[:, :-1].contiguous(), "labels": t[:, 1:].contiguous()}


class TrainWindows:
    """This rank's training batches, one epoch at a time (the harness's ``Batches``; resumable mid-epoch)."""

    def __init__(self, windows, batch_size: int, *, rank: int, world_size: int, seed: int):
        self.windows, self.batch_size = windows, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0
        if len(self) == 0:
            raise DataError(f"the training data holds {len(windows)} {windows.describe()}, fewer than one global "
                            f"batch of {batch_size * world_size}", "use more training data, or a smaller batch")

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
            yield self.windows.batch(order[lo:lo + self.batch_size])


class EvalWindows:
    """The first ``count`` samples of the evaluation source, in order; this rank's share in batches.

    Every rank runs the same number of batches of the same size (a sharded model needs every rank in every
    forward pass): a rank whose share is short repeats its last sample, marked ``weight`` 0 in the batch, and
    scores only the samples of weight 1."""

    def __init__(self, windows, count: int, batch_size: int, *, rank: int, world_size: int):
        if len(windows) < count:
            raise DataError(f"the evaluation data holds {len(windows)} {windows.describe()}; the benchmark "
                            f"evaluates on {count}", "use the complete evaluation file")
        self.windows, self.batch_size, self.total = windows, batch_size, count
        mine = np.arange(rank, count, world_size, dtype=np.int64)
        per_rank = -(-count // world_size)
        self.weight = np.zeros(per_rank, dtype=np.float32)
        self.weight[:len(mine)] = 1.0
        self.mine = np.concatenate([mine, np.full(per_rank - len(mine), mine[-1] if len(mine) else 0)])

    def set_epoch(self, epoch: int) -> None:
        return None

    def __len__(self) -> int:
        return -(-len(self.mine) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for lo in range(0, len(self.mine), self.batch_size):
            batch = self.windows.batch(self.mine[lo:lo + self.batch_size])
            batch["weight"] = torch.from_numpy(self.weight[lo:lo + self.batch_size])
            yield batch
