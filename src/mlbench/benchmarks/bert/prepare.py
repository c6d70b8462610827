"""``mlbench data prepare bert``: build the mini/tiny pre-training shards and SQuAD-format QA set offline, or
check a folder of real MLPerf BERT data (shards, 10,000-sample eval set, phase-1 checkpoint).

The real data cannot be downloaded by mlbench: the MLPerf reference builds it from a Wikipedia dump with its
own scripts (mlcommons/training, language_model). This command checks such a folder before a long run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlbench.config import opt


@dataclass(kw_only=True)
class PrepareConfig:
    """Options of ``mlbench data prepare bert``."""

    size: str = opt("mini", "which size's data: mini/tiny are built, reference is checked",
                    choices=("reference", "mini", "tiny"))
    root: str = opt("", "where to build (mini/tiny: a new or empty folder, or one this command made; default: the "
                        "cache that `mlbench train bert` reads) or the folder of real data to check (reference)")


def prepare(cfg: PrepareConfig, say) -> list[Path]:
    from mlbench import registry
    from mlbench.benchmarks.bert import pretrain_data, qa_data

    bench = registry.get("bert", cfg.size).definition
    root = cfg.root or None
    report = pretrain_data.prepare(bench, root, say=say)
    written = [Path(report["root"])]
    if not bench.is_reference:
        qa = qa_data.dataset_dir(cfg.size)
        say(f"BERT {cfg.size} question answering set (SQuAD v1.1 format) in {qa}")
        base = qa_data.baseline(cfg.size)
        say(f"  dev F1 to read a model's against: lexical reader {base['f1']:.1f}, best question-blind answer "
            f"{base['best_trivial_f1']:.1f} (baseline.json)")
        written.append(qa)
    return written
