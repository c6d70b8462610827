"""An experiment's data for RNN-T mini (issue 26): mini's generated data copied to OUT with half of the training
utterances spoken by flite (every flite voice that trains is male: awb, rms, kal, kal16) shifted up in pitch and
formants, resampled as if recorded at 16 kHz x r with r drawn in [LO, HI] (a shorter vocal tract, towards the
held-out flite voice slt, the only female one); the held-out utterances are unchanged. Train on it with
``benchmarks/rnnt_heldout.py --data-dir OUT``.

    python benchmarks/rnnt_shift_flite.py OUT --low 1.1 --high 1.35
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from mlbench.benchmarks.rnnt import synthetic  # noqa: E402
from mlbench.data.download import cache_dir  # noqa: E402
from mlbench.speech import audio  # noqa: E402
from mlbench.speech.librispeech import manifest_name  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="a new folder")
    p.add_argument("--source", type=Path, default=cache_dir("rnnt-mini"), help="mini's generated data")
    p.add_argument("--low", type=float, default=1.1)
    p.add_argument("--high", type=float, default=1.35)
    a = p.parse_args()
    if not 0.5 <= a.low <= a.high <= 2.0:
        p.error("need 0.5 <= --low <= --high <= 2.0")
    if a.out.exists():
        p.error(f"{a.out} exists: name a new folder")
    if not (a.source / manifest_name("train")).is_file():
        p.error(f"{a.source} holds no generated mini data: run `mlbench train rnnt --size mini` once first")
    shutil.copytree(a.source, a.out, ignore=shutil.ignore_patterns(".mlbench-lock"))
    manifest = a.out / manifest_name("train")
    entries = json.loads(manifest.read_text())
    rng = np.random.default_rng(7)
    shifted = 0
    for i, e in enumerate(entries):
        if synthetic.speech_draw(i, "train", 0)[2][0] != "flite" or rng.random() >= 0.5:
            continue
        f = e["files"][-1]
        r = rng.uniform(a.low, a.high)
        y = audio.resample(audio.read_wav(a.out / f["fname"]), int(round(audio.SAMPLE_RATE * r / 50)) * 50)
        audio.write_wav(a.out / f["fname"], y)
        f["num_samples"], f["duration"] = len(y), len(y) / audio.SAMPLE_RATE
        e["original_num_samples"], e["original_duration"] = f["num_samples"], f["duration"]
        shifted += 1
    manifest.write_text(json.dumps(entries, indent=1))
    print(f"{shifted} flite training utterances shifted by {a.low}-{a.high}x into {a.out}")


if __name__ == "__main__":
    main()
