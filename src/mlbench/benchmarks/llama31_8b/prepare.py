"""``mlbench data prepare llama31_8b``: build the mini/tiny token files and tokenizer offline (and, with
``--model``, the trained mini/tiny model as a Hugging Face directory), or check a folder of the reference's
preprocessed C4 files.

The reference data cannot be downloaded by mlbench: MLCommons distributes it (``llama3_1_8b_preprocessed_c4_dataset``
through its R2 downloader), or the reference's ``utils/preprocess.sh`` makes it from C4. This command checks such
a folder (both pairs present, every index consistent with its data) before a long run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlbench.config import opt


@dataclass(kw_only=True)
class PrepareConfig:
    """Options of ``mlbench data prepare llama31_8b``."""

    size: str = opt("mini", "which size's data: mini/tiny are built, reference is checked",
                    choices=("reference", "mini", "tiny"))
    root: str = opt("", "the folder of reference data to check (reference only)")
    model: bool = opt(False, "also make the trained model directory (mini/tiny: trains one when none is cached)")


def prepare(cfg: PrepareConfig, say) -> list[Path]:
    from mlbench import registry
    from mlbench.benchmarks.llama31_8b import data
    from mlbench.data.indexed_tokens import IndexedTokens
    from mlbench.errors import ConfigError, DataError
    from mlbench.llm import pretrained

    bench = registry.get("llama31_8b", cfg.size).definition
    if bench.is_reference:
        if not cfg.root:
            raise DataError("llama31_8b reference data cannot be downloaded by mlbench", data._reference_fix()
                            .replace("pass --data-dir DIR", "pass --root DIR"))
        if cfg.model:
            raise ConfigError("--model is for mini and tiny (the reference trains from a random initialisation)",
                              "leave out --model")
        train, ev = data.reference_prefixes(bench, Path(cfg.root))
        files = [IndexedTokens(p, what="training data") for p in train] + [IndexedTokens(ev, what="evaluation data")]
        for f in files:
            say(f"{f.bin_path}: {f.n_documents:,} documents, {f.n_tokens:,} tokens ({f.dtype}); index consistent")
        return [Path(cfg.root)]
    if cfg.root:
        raise ConfigError("--root is for reference data; mini and tiny are built into the cache",
                          "leave out --root")
    root = data.ensure_data(bench, say=say)
    info = data.info(root)
    say(f"llama31_8b {cfg.size} data in {root}: {info['train_tokens']:,} training and {info['eval_tokens']:,} "
        f"evaluation tokens; a unigram model scores log perplexity {info['unigram_log_perplexity']:.3f}")
    written = [root]
    if cfg.model:
        written.append(pretrained.trained_hf_dir("llama31_8b", cfg.size, say=say))
    return written
