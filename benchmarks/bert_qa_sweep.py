"""BERT mini question answering: the fine-tuning recipe's dev F1 as it trains, per seed, against the lexical
reader and the question-blind answers of the same dev questions.

    OMP_NUM_THREADS=1 python benchmarks/bert_qa_sweep.py --seeds 0,1 --steps 600 --every 150

Fine-tunes with ``mlbench.benchmarks.bert.inference.finetune`` (the recipe ``mlbench infer bert --size mini``
uses, any setting overridable here) and scores the first ``--dev-questions`` dev questions every ``--every``
steps, decoded as the inference task decodes them. ``--scratch`` starts from random initialisation with the QA
data's own vocabulary instead of the cached masked-LM encoder (``mlbench train bert --size mini``);
``--layers``/``--heads`` change the model (from scratch only); ``--tie-qk`` starts every attention layer's key
projection equal to its query projection (a token then attends to copies of itself, e.g. the asked word in the
context). Nothing is cached: the fine-tuned weights go to a temporary file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mlbench.benchmarks.bert import inference, qa_data, squad  # noqa: E402
from mlbench.benchmarks.bert.definition import MINI  # noqa: E402


def dev_f1(model, feats, examples, *, seq_len: int, max_answer_len: int) -> float:
    was_training = model.training
    model.eval()
    starts, ends = [], []
    with torch.no_grad():
        for i in range(0, len(feats), 256):
            inp = feats.inputs(slice(i, i + 256))
            width = int(inp["attention_mask"].sum(1).max())
            s, e = model(*(torch.from_numpy(inp[k][:, :width]) for k in inference.INPUT_NAMES))
            pad = ((0, 0), (0, seq_len - width))
            starts.append(np.pad(s.numpy(), pad, constant_values=-1e4))
            ends.append(np.pad(e.numpy(), pad, constant_values=-1e4))
    model.train(was_training)
    preds = squad.decode(feats, range(len(feats)), np.concatenate(starts), np.concatenate(ends), examples,
                         max_answer_length=max_answer_len)
    return squad.evaluate(examples, preds)["f1"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0", help="comma-separated fine-tuning seeds (default 0)")
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: the recipe's)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--every", type=int, default=100, help="evaluate every N steps (default 100)")
    ap.add_argument("--dev-questions", type=int, default=qa_data.MINI_DEV_QUESTIONS,
                    help="score the first N dev questions (default: all 2,000)")
    ap.add_argument("--scratch", action="store_true", help="random initialisation, the QA data's vocabulary")
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--heads", type=int, default=None)
    ap.add_argument("--tie-qk", action="store_true")
    args = ap.parse_args()
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        ap.error(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2")
    for name in ("steps", "batch_size", "every", "dev_questions", "layers", "heads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.lr is not None and not 0 < args.lr < 1:
        ap.error("--lr must be between 0 and 1")
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    if not threads.isdigit() or int(threads) < 1:
        ap.error(f"OMP_NUM_THREADS={threads!r}: set a positive whole number of threads")
    torch.set_num_threads(int(threads))

    hp = dict(MINI.hparams)
    model_cfg = dict(hp["model"])
    if args.layers or args.heads:
        if not args.scratch:
            ap.error("--layers/--heads need --scratch (the cached encoder has the mini's shape)")
        model_cfg.update({k: v for k, v in (("num_hidden_layers", args.layers),
                                             ("num_attention_heads", args.heads)) if v})
    hp["model"] = model_cfg
    bench = dataclasses.replace(MINI, hparams=hp)
    data = qa_data.dataset_dir("mini")
    vocab = (None if args.scratch else inference.pretrained_vocab(bench)) or data / "vocab.txt"
    if not args.scratch and inference.pretrained_vocab(bench) is None:
        print("no cached masked-LM encoder (mlbench train bert --size mini): starting from scratch")
    tok = squad.load_tokenizer(vocab)
    examples = squad.read_squad(data / "dev-v1.1.json")[:args.dev_questions]
    doc = json.loads((data / "dev-v1.1.json").read_text(encoding="utf-8"))
    lexical = squad.evaluate(examples, qa_data.lexical_baseline(doc))["f1"]
    trivial = {k: squad.evaluate(examples, v)["f1"] for k, v in qa_data.trivial_answers(doc).items()}
    print(f"F1 on the first {len(examples)} dev questions: lexical reader {lexical:.2f}; question-blind answers "
          + ", ".join(f"{k} {v:.2f}" for k, v in trivial.items()))
    feats = squad.convert(examples, tok, max_seq_length=hp["squad_seq_len"], doc_stride=hp["squad_stride"],
                          max_query_length=hp["squad_query_len"])
    settings = {k: v for k, v in (("steps", args.steps), ("lr", args.lr), ("batch_size", args.batch_size),
                                  ("warmup", args.warmup)) if v is not None}
    finals = []
    for seed in seeds:
        curve: list[tuple[int, float]] = []
        cpu0 = time.process_time()

        total = {**inference.finetune_settings(bench), **settings}["steps"]

        def on_step(step: int, model, seed=seed, curve=curve, cpu0=cpu0, total=total) -> None:
            if step == 0:
                if args.tie_qk:
                    with torch.no_grad():
                        for layer in model.qa.bert.encoder.layer:
                            layer.attention.self.key.weight.copy_(layer.attention.self.query.weight)
                            layer.attention.self.key.bias.copy_(layer.attention.self.query.bias)
                return
            if step % args.every == 0 or step == total:
                f1 = dev_f1(model, feats, examples, seq_len=hp["squad_seq_len"],
                            max_answer_len=hp.get("squad_max_answer_len", 30))
                curve.append((step, f1))
                print(f"seed {seed} step {step}: dev F1 {f1:.2f} ({time.process_time() - cpu0:.0f} CPU-s)",
                      flush=True)

        with tempfile.TemporaryDirectory() as tmp:
            done = inference.finetune(bench, data / "train-v1.1.json", vocab, Path(tmp) / "qa.pt",
                                      say=lambda _m: None, settings={**settings, "seed": seed},
                                      pretrained=not args.scratch, on_step=on_step)
        finals.append(curve[-1][1])
        print(f"seed {seed}: final dev F1 {curve[-1][1]:.2f} from {done['start_from']}, settings {done['settings']}, "
              f"{done['seconds']:.0f} s wall", flush=True)
    print(f"final dev F1 over {len(finals)} seed(s): " + ", ".join(f"{f:.2f}" for f in finals)
          + f" (best question-blind answer {max(trivial.values()):.2f}, lexical reader {lexical:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
