"""Writes ``torchaudio_rnnt_reference.pt`` beside this file: torchaudio's RNN-T loss and its gradients, frozen.

torchaudio's compiled ``rnnt_loss`` is the reference the pure-PyTorch loss (``mlbench.benchmarks.rnnt.loss``) is
held to, but torchaudio only loads beside the torch it was built for, which is rarely the project's. This script
runs once, in a throwaway environment where a matching pair loads, and stores for a few seeded cases the
logits, targets, lengths, blank index, torchaudio's per-sample losses (``reduction="none"``) and the gradient of
their sum with respect to the logits. ``test_rnnt_loss.py`` compares the pure-PyTorch loss with the file on
every run, whether torchaudio loads there or not.

To rerun (any torch/torchaudio pair that loads together; the file was made with torch 2.9.1, torchaudio 2.9.1):

    python3.11 -m venv /tmp/ta && /tmp/ta/bin/pip install torch==2.9.1 torchaudio==2.9.1
    /tmp/ta/bin/python tests/rnnt/make_torchaudio_reference.py

It imports nothing from mlbench (the project need not be installed there). The file stays small (float32, a few
tens of KB) and loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchaudio
import torchaudio.functional as F  # noqa: N812

OUT = Path(__file__).with_name("torchaudio_rnnt_reference.pt")

# (seed, B, T, U, V, blank, logit scale, time lengths, label lengths): the largest lengths fill the logits
# (torchaudio requires T == max time length and U + 1 == max label length + 1).
CASES = [
    (0, 1, 1, 0, 3, 2, 1.0, [1], [0]),  # one frame, no labels: only the final blank
    (1, 1, 4, 2, 5, 4, 1.0, [4], [2]),  # one sample, blank last (the RNN-T models' convention)
    (2, 3, 5, 3, 6, 0, 1.0, [5, 3, 4], [3, 1, 0]),  # blank first; padding in both directions
    (3, 4, 12, 5, 10, 9, 3.0, [12, 7, 12, 1], [5, 5, 2, 0]),  # peaky logits; a one-frame sample
    (4, 2, 20, 8, 16, 3, 1.0, [20, 13], [6, 8]),  # blank in the middle; the longest label not the longest T
    (5, 5, 9, 4, 7, 6, 6.0, [9, 9, 2, 5, 8], [4, 0, 4, 1, 3]),  # very peaky; more labels than frames in one
]


def make_case(seed, B, T, U, V, blank, scale, tl, ul) -> dict:
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(B, T, U + 1, V, generator=g)).float()
    labels = [v for v in range(V) if v != blank]  # targets never hold the blank
    targets = torch.tensor(labels)[torch.randint(0, len(labels), (B, max(U, 1)), generator=g)].int()
    tl, ul = torch.tensor(tl, dtype=torch.int32), torch.tensor(ul, dtype=torch.int32)
    assert int(tl.max()) == T and int(ul.max()) == U
    x = logits.clone().requires_grad_()
    loss = F.rnnt_loss(x, targets[:, :U].contiguous(), tl, ul, blank=blank, reduction="none")
    grad, = torch.autograd.grad(loss.sum(), x)
    return {"seed": seed, "blank": blank, "logits": logits, "targets": targets[:, :U].contiguous(),
            "logit_lengths": tl, "target_lengths": ul, "loss": loss.detach(), "grad": grad}


def main() -> None:
    cases = [make_case(*c) for c in CASES]
    torch.save({"torch": str(torch.__version__), "torchaudio": str(torchaudio.__version__),
                "function": "torchaudio.functional.rnnt_loss(reduction='none', fused_log_softmax=True, clamp=-1)",
                "cases": cases}, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases; torch {torch.__version__}, "
          f"torchaudio {torchaudio.__version__})", file=sys.stderr)


if __name__ == "__main__":
    main()
