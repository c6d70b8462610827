"""RNN-T mini past its target: how low does the WER on held-out voices go, and where does it stop?

Trains the mini recipe (``RNNTWorkload``: the model, the generated data, LAMB and its schedule, the RNN-T + CTC
loss, greedy decoding) in a plain loop for ``--epochs`` epochs with no stop at the target, and prints after
every epoch the WER on the held-out voices (the benchmark's metric), every ``--train-eval-every`` epochs the WER
on 300 training utterances (voices the model trains on: the gap between the two is what generalisation
costs), and at the end the held-out WER per voice (espeak-ng accent and variant, flite voice, recomputed from
the generator's draws) and the share of each word class (digits, letters, commands) that the hypotheses miss.
``--hp KEY=VALUE`` (repeatable; the value as JSON) changes one of mini's hyper-parameters, e.g. ``--hp
speed=false`` (no speed perturbation: mini's recipe before issue 26), ``--hp freq_warp=0.15``, ``--hp
enc_n_hid=256``.

    OMP_NUM_THREADS=1 python benchmarks/rnnt_heldout.py --seed 1 --epochs 12 --train-eval-every 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from mlbench import registry  # noqa: E402
from mlbench.benchmarks.rnnt import data as sdata  # noqa: E402
from mlbench.benchmarks.rnnt import synthetic  # noqa: E402
from mlbench.benchmarks.rnnt.text import word_errors  # noqa: E402
from mlbench.benchmarks.rnnt.workload import RNNTWorkload  # noqa: E402
from mlbench.training.batches import DataSpec  # noqa: E402
from mlbench.training.recipe import OptimArgs, StepContext  # noqa: E402

TRAIN_VOICE_UTTERANCES = 300


def voice_name(i: int, split: str = "dev") -> str:
    """Who spoke utterance ``i`` of the generated ``split`` (data seed 0, as mini generates it)."""
    _, _, voice = synthetic.speech_draw(i, split, 0)
    return f"{voice[0]} {voice[1]}+{voice[2]}" if voice[0] == "espeak-ng" else f"flite {voice[1]}"


def word_class(word: str) -> str:
    return "digit" if word in synthetic.DIGITS else "letter" if word in synthetic.LETTERS else "command"


@torch.no_grad()
def breakdown(workload, net, batches, ctx) -> dict[str, dict[str, float]]:
    """Held-out WER per voice and per speaker group (accent or flite voice), and per word class the share of
    reference words absent from the hypothesis."""
    net.eval()
    counts: dict[str, dict[str, list[int]]] = {k: defaultdict(lambda: [0, 0]) for k in ("voice", "group", "missed")}
    for i, (hyp, ref) in enumerate(workload.transcripts(net, batches, ctx, workload.tokenizer)):
        e, w = word_errors(hyp, ref)
        voice = voice_name(i)
        for key, name in (("voice", voice), ("group", voice.split("+")[0])):
            counts[key][name][0] += e
            counts[key][name][1] += w
        for word in ref.split():
            c = counts["missed"][word_class(word)]
            c[0] += word not in hyp.split()
            c[1] += 1
    return {k: {name: e / w for name, (e, w) in sorted(v.items()) if w} for k, v in counts.items()}


def parse_hparams(p: argparse.ArgumentParser, pairs: list[str], known: dict) -> dict:
    out = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep or key not in known:
            p.error(f"--hp {kv!r}: expected KEY=VALUE with KEY one of mini's hyper-parameters "
                    f"({', '.join(sorted(known)[:8])}, ...)")
        try:
            out[key] = json.loads(value)
        except ValueError:
            p.error(f"--hp {kv!r}: the value is not JSON (a number, true/false, or a quoted string)")
        was = known[key]
        if was is not None and (isinstance(was, bool) != isinstance(out[key], bool)
                                or isinstance(was, (int, float)) != isinstance(out[key], (int, float))):
            p.error(f"--hp {kv!r}: {key} is {type(was).__name__} ({was!r}), not {type(out[key]).__name__}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=12, help="epochs to train (no stop at the target)")
    p.add_argument("--train-eval-every", type=int, default=0,
                   help="evaluate on 300 training utterances every N epochs too (0: at the end only)")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="change a mini hyper-parameter")
    p.add_argument("--data-dir", default=None, help="mini's data (default: generated in mlbench's cache)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader worker processes that read, speed-perturb and featurise the batches (default: "
                        "mlbench's automatic count, as `mlbench train`; the batches do not depend on it)")
    a = p.parse_args()
    if not 1 <= a.epochs <= 1000:
        p.error("--epochs must be between 1 and 1000")
    if a.train_eval_every < 0:
        p.error("--train-eval-every must be 0 or more")
    if a.workers is not None and not 0 <= a.workers <= 64:
        p.error("--workers must be between 0 and 64")
    mini = registry.sizes("rnnt")["mini"]
    hp = parse_hparams(p, a.hp, mini.hparams)
    bench = mini.derive(hparams=hp) if hp else mini

    torch.manual_seed(a.seed)
    wl = RNNTWorkload(bench)
    model = wl.build_model()
    data = wl.build_data(DataSpec(batch_size=bench.batch_size, eval_batch_size=64, seed=a.seed, data_dir=a.data_dir,
                                  workers=a.workers))
    steps = len(data.train)
    opt, sched = wl.build_optimizer(model, OptimArgs(global_batch_size=bench.batch_size, steps_per_epoch=steps,
                                                     epochs=a.epochs))
    ctx = StepContext(device=torch.device("cpu"))
    seen = sdata.SpeechBatches(data.train.utts[:TRAIN_VOICE_UTTERANCES], 64, train=False, rank=0, world=1, seed=0,
                               hp=bench.hparams, cache=True, workers=data.train.workers)
    print(f"seed {a.seed}, {sum(x.numel() for x in model.parameters()):,} parameters, {steps} steps per epoch, "
          f"changes {hp or 'none'}; load average {os.getloadavg()[0]:.1f}", flush=True)
    start, held = time.time(), []
    for epoch in range(1, a.epochs + 1):
        t = time.time()
        model.train()
        data.train.set_epoch(epoch - 1)
        for batch in data.train:
            loss, _ = wl.loss(model, batch, ctx)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
        held.append(wl.evaluate(model, data.eval, ctx)[0]["wer"])
        line = f"epoch {epoch}: held-out WER {held[-1]:.4f}"
        if a.train_eval_every and epoch % a.train_eval_every == 0:
            line += f", training voices {wl.evaluate(model, seen, ctx)[0]['wer']:.4f}"
        print(f"{line} ({(time.time() - t) / 60:.2f} min; load average {os.getloadavg()[0]:.1f})", flush=True)
    trained = wl.evaluate(model, seen, ctx)[0]["wer"]
    parts = breakdown(wl, model, data.eval, ctx)
    for key, title in (("group", "held-out WER by accent / voice"), ("voice", "held-out WER by voice"),
                       ("missed", "share of words missed by class")):
        print(f"{title}: " + ", ".join(f"{k} {v:.2f}" for k, v in parts[key].items()))
    print(f"seed {a.seed}: held-out WER by epoch {' / '.join(f'{w:.3f}' for w in held)}; best {min(held):.3f} at "
          f"epoch {held.index(min(held)) + 1}; training voices {trained:.3f}; {(time.time() - start) / 60:.1f} min",
          flush=True)


if __name__ == "__main__":
    main()
