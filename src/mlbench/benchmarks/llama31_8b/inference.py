"""``mlbench infer llama3.1-8b``: Llama 3.1 8B summarising CNN/DailyMail under LoadGen's token latencies
(MLPerf Inference's ``llama3.1-8b``), through a generation engine (``mlbench.inference.generate_run``).

Sizes:
- reference: the user's Hugging Face directory (``--model-dir``: config.json, safetensors, tokenizer files; safe
  loaders only, never remote code) and the reference's ``cnn_eval.json`` (``--data-dir``), 128 new tokens at most
  (the reference SUT's ``max_tokens``), greedy.
- mini: not yet here. The task is (:mod:`.summaries`: WordNet entries summarised into ``lemma: definition``, in
  the cnn_eval.json format, with the llama31_8b mini model fine-tuned on it); the fine-tuned model does not yet
  beat the lead-N answer within the budget measured, so the size is refused.
- tiny: a random 2-layer Llama built from the definition's config, with a byte-level BPE trained here on a
  generated set of "articles" whose summary is their first sentence, written as a cnn_eval.json (tests).

Accuracy: ROUGE-1/2/L/Lsum and ``gen_len`` as the reference's evaluation computes them (``mlbench.llm.rouge``),
each checked against its bound from the definition; ``accuracy.txt`` holds the reference evaluation's printed
dict, which the official submission checker reads.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from mlbench.benchmarks.llama31_8b import cnn_eval
from mlbench.errors import ConfigError, DataError, MlbenchError

GENERATION = True  # runs through mlbench.inference.generate_run
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
MAX_NEW_TOKENS_LIMIT = 1 << 20


def build_task(bench, opts) -> LlamaSummaries:
    return LlamaSummaries(bench, opts)


class Store:
    """The evaluation rows in memory (prompts are token ids already: nothing to pre-process)."""

    def __init__(self, rows: list[cnn_eval.Row], performance_count: int):
        self.rows = rows
        self.total_count = len(rows)
        self.performance_count = min(performance_count or len(rows), len(rows))

    def load(self, indices) -> None:
        pass

    def unload(self, indices) -> None:
        pass

    def prompt(self, index: int) -> list[int]:
        return self.rows[index].prompt

    def label(self, index: int) -> str:
        return self.rows[index].reference


class LlamaSummaries:
    options = ("model_dir", "max_new_tokens")
    metric = "rouge1"
    response_dtype = "int32"

    def __init__(self, bench, opts):
        self.bench, self.opts = bench, opts
        self.spec = bench.hparams["inference"]
        self.max_new_tokens = parse_max_new_tokens(opts.extra.get("max_new_tokens"), self.spec["max_new_tokens"])
        self.deviations: list[str] = []
        if self.max_new_tokens != self.spec["max_new_tokens"]:
            self.deviations.append(f"--max-new-tokens {self.max_new_tokens} instead of the reference's "
                                   f"{self.spec['max_new_tokens']}")
        self._model_dir: Path | None = None
        self._data: Path | None = None
        self._tokenizer: Any = None
        self._prepare()

    # ------------------------------------------------------------------ files
    def _prepare(self) -> None:
        size, extra = self.bench.size, self.opts.extra
        if extra.get("model_dir"):
            self._model_dir = check_model_dir(Path(extra["model_dir"]))
        if size == "reference":
            if self._model_dir is None:
                raise MlbenchError("llama3.1-8b --size reference needs the model's weights",
                                   "pass --model-dir DIR: a Hugging Face directory of Llama 3.1 8B Instruct "
                                   "(config.json, *.safetensors, tokenizer files)")
            if not self.opts.data_dir:
                raise MlbenchError("llama3.1-8b --size reference needs the evaluation set",
                                   f"pass --data-dir DIR holding {cnn_eval.FILE} (the reference's 13,368 rows)")
            self._data = cnn_eval.locate(self.opts.data_dir)
        elif size == "tiny":
            root = tiny_files(self.bench, self.opts.say)
            self._model_dir = self._model_dir or root / "model"
            self._data = cnn_eval.locate(self.opts.data_dir) if self.opts.data_dir else root / cnn_eval.FILE
        else:  # mini: the task and its fine-tune exist (.summaries), a model that beats lead-N does not yet
            raise MlbenchError(f"llama3.1-8b --size {size} inference is not available yet: the mini model fine-tuned "
                               "on WordNet summaries does not yet beat the trivial lead-N answer (README: Measured)",
                               "use --size tiny, or --size reference with --model-dir and --data-dir")

    def model_dir(self) -> Path:
        return self._model_dir

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        """The model directory's config.json, read once."""
        from mlbench.llm import llama

        return llama.read_config(self._model_dir)

    @property
    def context_length(self) -> int:
        return int(self.config.get("max_position_embeddings") or 2048)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        gen = self._model_dir / "generation_config.json"
        eos = None
        if gen.is_file():
            import json

            try:
                eos = json.loads(gen.read_text()).get("eos_token_id")
            except ValueError:
                eos = None
        eos = self.config.get("eos_token_id") if eos is None else eos
        return tuple(eos) if isinstance(eos, list) else ((eos,) if eos is not None else ())

    def dataset(self) -> Store:
        rows = cnn_eval.load(self._data, vocab_size=int(self.config["vocab_size"]),
                             context_length=self.context_length, max_new_tokens=self.max_new_tokens,
                             max_rows=self.opts.max_samples)
        self.opts.say(f"evaluation set: {len(rows)} rows from {self._data}")
        return Store(rows, self.bench.performance_sample_count)

    def info(self) -> dict[str, Any]:
        return {"model_dir": str(self._model_dir), "data_file": str(self._data),
                "max_new_tokens": self.max_new_tokens, "decoding": "greedy", "deviations": self.deviations}

    # ------------------------------------------------------------------ accuracy
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self._model_dir), trust_remote_code=False,
                                                            local_files_only=True)
        return self._tokenizer

    def accuracy(self, responses: dict[int, bytes], store: Store) -> dict[str, float]:
        import numpy as np

        from mlbench.llm import rouge

        idx = sorted(responses)
        ids = [np.frombuffer(responses[i], dtype=np.int32).tolist() for i in idx]
        preds = self.tokenizer().batch_decode(ids, skip_special_tokens=True)
        scores = rouge.score(preds, [store.label(i) for i in idx])
        scores["generated_tokens"] = float(sum(len(x) for x in ids))
        scores["samples"] = float(len(idx))
        return scores

    def accuracy_checks(self, scores: dict[str, float], store: Store) -> list[dict[str, Any]]:
        """Each ROUGE at or above 99% of the reference's, and gen_len within 90-110% of the reference's, scaled to
        the samples scored when they are a subset (then labelled so)."""
        checks = [{"name": k, "value": scores[k], "op": ">=", "bound": 0.99 * v, "ok": scores[k] >= 0.99 * v}
                  for k, v in self.spec["rouge"].items()]
        full = self.spec["samples"]
        ref_len = self.spec.get("gen_len")
        if ref_len:
            n = scores["gen_num"]
            scale = n / full
            label = "gen_len (characters)" + ("" if n == full else f" (subset: {int(n)} of {full} samples, bound "
                                                                      "scaled; not valid for submission)")
            lo, hi = 0.9 * ref_len * scale, 1.1 * ref_len * scale
            checks.append({"name": label, "value": scores["gen_len"], "op": ">=", "bound": lo,
                           "ok": scores["gen_len"] >= lo})
            checks.append({"name": label, "value": scores["gen_len"], "op": "<=", "bound": hi,
                           "ok": scores["gen_len"] <= hi})
        return checks

    def accuracy_report(self, scores: dict[str, float]) -> str:
        from mlbench.llm import rouge

        return rouge.checker_text(scores)


def parse_max_new_tokens(text: str | None, default: int) -> int:
    """``--max-new-tokens``: a whole number from 1 to 2**20; ConfigError (one line) otherwise."""
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value) or not 1 <= value <= MAX_NEW_TOKENS_LIMIT:
        raise ConfigError(f"invalid --max-new-tokens {text!r}: it must be a whole number from 1 to "
                          f"{MAX_NEW_TOKENS_LIMIT}", f"give e.g. --max-new-tokens {default} (the reference's)")
    return int(value)


def check_model_dir(d: Path) -> Path:
    """A Llama Hugging Face directory with whole safetensors and a tokenizer; DataError (one line) otherwise."""
    from mlbench.llm import llama

    llama.weight_files(d)  # missing directory, config.json or weights; truncated safetensors
    llama.read_config(d)
    if not any((d / f).is_file() for f in TOKENIZER_FILES):
        raise DataError(f"model directory {d} has no tokenizer ({' or '.join(TOKENIZER_FILES)})",
                        "copy the tokenizer files of the model (tokenizer.json, tokenizer_config.json) into it")
    return d


# ---------------------------------------------------------------------- tiny: generated model and data
TINY_WORDS = ("the cat dog bird fish sun moon tree river stone house road city king queen child farmer ship storm "
              "rain wind fire snow light night day sees finds takes builds loves follows carries watches").split()


def tiny_files(bench, say) -> Path:
    """The tiny size's model directory and cnn_eval.json, made once and cached (a few seconds)."""
    from mlbench.data import download, folders

    root = download.cache_dir("models", f"{bench.name}-tiny-infer-v2")
    return folders.build_once(root, lambda tmp: _build_tiny(bench, tmp), marker=".complete", say=say,
                              what="the tiny summarisation model and data")


def _build_tiny(bench, dest: Path) -> None:
    import random

    import torch

    from mlbench.llm import llama, tokenizer

    rng = random.Random(0)
    spec = {**bench.hparams["model"], "max_position_embeddings": 128}  # room for a prompt and its summary
    n = bench.hparams["inference"]["samples"]

    def sentence() -> str:
        words = [rng.choice(TINY_WORDS) for _ in range(rng.randint(3, 5))]
        return " ".join(words).capitalize() + "."

    articles = [" ".join(sentence() for _ in range(2)) for _ in range(n)]
    tokenizer.train(articles * 4, int(spec["vocab_size"]), dest / "tok")
    enc = tokenizer.Encoder(dest / "tok")
    torch.manual_seed(0)
    model = llama.build(spec, init_std=float(bench.hparams["init_std"]))
    llama.save_hf_dir(model, dest / "model", enc.files())
    rows = []
    for a in articles:
        prompt = f"Summarize: {a}\nSummary:"
        rows.append({"input": prompt, "tok_input": [enc.bos, *enc.encode(prompt)], "output": a.split(".")[0] + "."})
    cnn_eval.write(dest / cnn_eval.FILE, rows)
    (dest / ".complete").write_text("1\n")
