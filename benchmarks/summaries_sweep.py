"""llama3.1-8b mini: the fine-tuned summariser over random seeds, against the trivial answers.

For each seed: fine-tune the cached llama31_8b mini model on the WordNet summaries
(``mlbench.benchmarks.llama31_8b.summaries``; the seed draws the examples' order), generate greedy summaries of the
evaluation rows (the rows ``mlbench infer llama3.1-8b --size mini`` scores) and score ROUGE-1/2/L/Lsum with
rouge-score; then the trivial answers on the same rows: lead-N (the first N words of the document) and one
constant answer. Results go to ``OUT/sweep.json`` after every seed (resumable: seeds already there are skipped).

    nice -n 10 python benchmarks/summaries_sweep.py --seeds 10 --out runs/sweep-summaries
    python benchmarks/summaries_sweep.py --seeds 1 --steps 100 --batch 8 --lr 1e-2 --rows 40 --out runs/s100
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mlbench.benchmarks.llama31_8b import summaries  # noqa: E402
from mlbench.llm import pretrained  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help="random seeds to draw (beside those already done)")
    ap.add_argument("--out", default="runs/sweep-summaries")
    ap.add_argument("--rows", type=int, default=None, help="score only the first N evaluation rows")
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: summaries.TUNE's)")
    ap.add_argument("--batch", type=int, default=None, help="examples per step (default: summaries.TUNE's)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: summaries.TUNE's)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state_file = out / "sweep.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"seeds": [], "runs": {}}
    while len(state["seeds"]) < args.seeds:
        state["seeds"].append(secrets.randbelow(2**31))
    tune = {**summaries.TUNE, **{k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("lr", args.lr))
                                  if v is not None}}
    state.setdefault("tune", tune)
    if state["tune"] != tune:
        raise SystemExit(f"{state_file} was made with {state['tune']}; use another --out for {tune}")
    base = pretrained.trained_hf_dir("llama31_8b", "mini")
    for seed in state["seeds"]:
        if str(seed) in state["runs"]:
            continue
        work = out / f"seed-{seed}"
        shutil.rmtree(work, ignore_errors=True)
        t0 = time.perf_counter()
        info = summaries.build(base, work, seed=seed, tune=tune)
        rows = json.loads((work / summaries.FILE).read_text())[:args.rows]
        scores, preds = summaries.evaluate(work / "model", rows, summaries.TASK["max_answer"])
        state["runs"][str(seed)] = {"rouge": scores, "fine_tune": info["fine_tune"], "rows": len(rows),
                                    "minutes": round((time.perf_counter() - t0) / 60, 2), "examples": preds[:3]}
        if "baselines" not in state:
            state["baselines"] = summaries.baselines(rows, summaries.rouge_scores)
        shutil.rmtree(work / "model", ignore_errors=True)
        state_file.write_text(json.dumps(state, indent=1))
        print(f"seed {seed}: {scores} ({state['runs'][str(seed)]['minutes']} min)", flush=True)
    runs = state["runs"].values()
    for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        vals = [r["rouge"][k] for r in runs]
        b = state["baselines"]
        print(f"{k}: min {min(vals):.2f} max {max(vals):.2f} over {len(vals)} seeds; best lead-N "
              f"({b['best_lead']}) {b[b['best_lead']][k]:.2f}, constant {b['constant'][k]:.2f}")


if __name__ == "__main__":
    main()
