"""benchmarks/rnnt_heldout.py: bad options get one line and exit 2 before anything trains; the voices it names
per utterance (recomputed from the generator's draws) keep the held-out split: no training voice speaks an
evaluation utterance."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlbench.benchmarks.rnnt import synthetic
from support import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import rnnt_heldout  # noqa: E402


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


@pytest.mark.parametrize(("args", "error"), [
    (("--hp", "bogus=1"), "--hp 'bogus=1': expected KEY=VALUE"),
    (("--hp", "speed"), "--hp 'speed': expected KEY=VALUE"),
    (("--hp", "speed=tru"), "the value is not JSON"),
    (("--hp", "enc_n_hid=true"), "enc_n_hid is int (192), not bool"),
    (("--epochs", "0"), "--epochs must be between 1 and 1000"),
    (("--train-eval-every", "-1"), "--train-eval-every must be 0 or more"),
    (("--workers", "-1"), "--workers must be between 0 and 64"),
])
def test_bad_options_get_one_line(args, error):
    proc = _script("rnnt_heldout.py", *args)
    assert proc.returncode == 2 and error in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_voice_names_keep_the_held_out_split():
    held = {rnnt_heldout.voice_name(i, "dev") for i in range(300)}
    seen = {rnnt_heldout.voice_name(i, "train") for i in range(600)}
    assert not held & seen
    for name in held:
        engine, _, rest = name.partition(" ")
        voice, _, variant = rest.partition("+")
        if engine == "flite":
            assert voice in synthetic.FLITE_TEST
        else:
            assert voice in synthetic.ESPEAK_TEST and variant in synthetic.ESPEAK_TEST_VARIANTS
    # the draws are the generator's: the same text as the utterance it writes
    _, text, _ = synthetic.speech_draw(5, "dev", 0)
    assert all(w in synthetic.VOCABULARY for w in text.split())


def test_word_classes():
    assert [rnnt_heldout.word_class(w) for w in ("seven", "q", "stop")] == ["digit", "letter", "command"]


@pytest.mark.parametrize(("args", "error"), [
    (("--low", "1.5", "--high", "1.2"), "need 0.5 <= --low <= --high <= 2.0"),
    (("--high", "nan"), "need 0.5 <= --low <= --high <= 2.0"),
    (("--source", "SOURCE"), "holds no generated mini data"),
    (("--out-exists",), "exists: name a new folder"),
])
def test_shift_flite_refuses_bad_options(tmp_path, args, error):
    out = tmp_path / "out"
    if args == ("--out-exists",):
        out.mkdir()
        args = ()
    args = tuple(str(tmp_path / "empty") if a == "SOURCE" else a for a in args)
    proc = _script("rnnt_shift_flite.py", str(out), *args)
    assert proc.returncode == 2 and error in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "train-wav").exists()


def test_mini_recipe_perturbs_speed_and_tiny_does_not():
    """Issue 26: mini trains with the reference's speed perturbation (its target set from runs with it); tiny,
    derived from mini, keeps cached features for fast tests."""
    from mlbench.benchmarks.rnnt.definition import MINI, TINY

    assert MINI.hparams["speed"] and (MINI.hparams["speed_min"], MINI.hparams["speed_max"]) == (0.85, 1.15)
    assert not TINY.hparams["speed"]
    assert MINI.target == 0.45 and MINI.inference_target == pytest.approx(1 - 0.99 * (1 - MINI.target))
