"""BERT inference (``mlbench infer bert``): SQuAD v1.1 question answering, the task of :mod:`mlbench.inference.task`.

Samples are SQuAD *features* (:mod:`.squad`: a question with one window of its paragraph), as the MLPerf
reference's QSL holds them; ``store.batch(indices)`` returns the three named int64 inputs ``input_ids``,
``attention_mask`` and ``token_type_ids`` ``[N, L]``. The model (:class:`QAModel`, transformers'
``BertForQuestionAnswering`` built from ``bench.hparams["model"]``, never downloaded) returns start and end
logits ``[N, L]``; each sample's logged response is float32 ``[L, 2]`` (start, end per token: the layout the
reference's accuracy script reads). Accuracy decodes an answer per question from all of its features and
scores exact match and F1 (percent) with the official SQuAD v1.1 semantics; the metric is F1.

Data and weights per size:

* **reference**: ``--data-dir`` holding ``dev-v1.1.json`` and the model's ``vocab.txt`` (seq 384, query 64,
  stride 128: 10,833 features); ``--weights`` a ``BertForQuestionAnswering`` state dict (MLPerf's
  ``model.pytorch``, or ``.pt``/``.pth``/``.bin``, read with ``weights_only=True``) or, for the onnxruntime
  backend, an ``.onnx`` file whose interface is read from it (MLPerf's ``model.onnx`` with ``input_mask``/
  ``segment_ids``, its int8 file, mlbench's export: :mod:`.modelfiles`); ``--weights random`` measures
  throughput only.
* **mini / tiny**: the QA data of :mod:`.qa_data` (WordNet definitions / generated), and a QA model
  fine-tuned on its train split (:func:`finetune`), cached as ``cache_dir("models", "bert-<size>-qa.pt")``
  and trained when missing. Fine-tuning starts from the masked-LM encoder of ``mlbench train bert`` when
  :func:`pretrained_encoder` finds one, else from random initialisation.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlbench.benchmarks.bert import modelfiles, qa_data, squad
from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.errors import DataError, MlbenchError
from mlbench.finite import require_finite
from mlbench.inference import modelfile
from mlbench.inference.models import find_weights, load_state, pytorch_weights, read_weights, seeded_model
from mlbench.inference.task import TaskOptions

RANDOM_WEIGHTS_SEED = 0
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
DATA_HINT = ("put dev-v1.1.json (SQuAD v1.1 dev set, https://rajpurkar.github.io/SQuAD-explorer/dataset/"
             "dev-v1.1.json) and the BERT-large uncased vocab.txt (from the MLPerf reference model's archive, "
             "see the MLCommons inference language/bert README) into one folder and pass it as --data-dir")
# Fine-tuning of the mini/tiny QA model (a ``squad_finetune`` dict in the definition's hparams overrides these).
FINETUNE = {
    "mini": {"steps": 160, "batch_size": 32, "lr": 1e-3, "warmup": 16, "weight_decay": 0.01, "seed": 0},
    "tiny": {"steps": 80, "batch_size": 32, "lr": 3e-3, "warmup": 10, "weight_decay": 0.01, "seed": 0},
}


# ---------------------------------------------------------------------------------------------- model
class QAModel(nn.Module):
    """``BertForQuestionAnswering`` with a fixed-output forward: ``(start_logits, end_logits)``, each ``[N, L]``.

    ``self.qa`` holds the transformers model, so ``self.qa.state_dict()`` is a BertForQuestionAnswering state
    dict (``bert.*``, ``qa_outputs.*``), the format ``--weights`` takes and the cache stores.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        from transformers import BertConfig, BertForQuestionAnswering

        self.qa = BertForQuestionAnswering(BertConfig(**config))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.qa(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                      return_dict=True)
        return out.start_logits, out.end_logits


def qa_state_dict(state: Any, path: Path) -> dict[str, torch.Tensor]:
    """A BertForQuestionAnswering state dict from what a weights file holds (``{"model": ...}`` wrappers, a
    ``module.`` prefix, TF-style LayerNorm ``gamma``/``beta``; the pooler and pre-training heads are dropped)."""
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"weights {path} are not a state dict of tensors",
                        "pass a BertForQuestionAnswering state dict (torch.save(model.state_dict(), FILE))")
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        if k.startswith(("bert.pooler.", "cls.")) or k.endswith("position_ids"):
            continue
        if ".LayerNorm." in k:
            k = k.replace(".gamma", ".weight").replace(".beta", ".bias")
        out[k] = v
    return out


def pretrained_encoder(bench: Benchmark) -> dict[str, torch.Tensor] | None:
    """The masked-LM encoder of ``mlbench train bert --size <size>`` as ``bert.*`` weights, or None.

    It reads the model that ``mlbench.inference.models.trained_checkpoint`` caches for the benchmark and size
    (``cache_dir("models", "bert-<size>.pt")``, ``{"model": state dict}``) and keeps its ``bert.*`` tensors;
    it is used only together with the vocabulary of :func:`pretrained_vocab` (the encoder's embeddings index
    that vocabulary). The training workload keeps transformers' names, so only ``qa_outputs.*`` start new.
    """
    path = download.cache_dir("models", f"{bench.name}-{bench.size}.pt")
    if bench.is_reference or not path.is_file() or pretrained_vocab(bench) is None:
        return None
    from mlbench.training import checkpoint

    state = checkpoint.read(path, what="BERT pre-training checkpoint", hint=f"delete {path} to train it again")
    state = state.get("model", state) if isinstance(state, dict) else {}
    encoder = {k.removeprefix("module."): v for k, v in state.items() if k.removeprefix("module.").startswith("bert.")}
    return encoder or None


def pretrained_vocab(bench: Benchmark) -> Path | None:
    """The vocab.txt the pre-trained encoder uses (``pretrain_data.data_root(bench) / "vocab.txt"``, written with the
    pre-training shards), or None when there is no pre-trained encoder."""
    if bench.is_reference or not download.cache_dir("models", f"{bench.name}-{bench.size}.pt").is_file():
        return None
    try:
        from mlbench.benchmarks.bert import pretrain_data
    except ImportError:
        return None
    vocab = pretrain_data.data_root(bench) / "vocab.txt"
    return vocab if vocab.is_file() else None


# ---------------------------------------------------------------------------------------------- store
class FeatureStore:
    """The QSL store of SQuAD features: every feature's inputs are computed once at construction (tokenising
    is the pre-processing, and counting features needs it); ``load``/``unload`` track what LoadGen holds;
    ``batch`` is a gather of three int64 arrays."""

    def __init__(self, features: squad.Features, examples: list[squad.Example], *, total_count: int,
                 performance_count: int, names: dict[str, str] | None = None):
        self.features, self.examples = features, examples
        self.total_count = int(total_count)
        self.performance_count = int(min(performance_count, total_count))
        names = names or {}  # a model file's own input names (e.g. input_mask, segment_ids)
        self._arrays = {names.get(name, name): np.ascontiguousarray(getattr(features, name)[:self.total_count])
                        for name in INPUT_NAMES}
        self._loaded = np.zeros(self.total_count, dtype=bool)

    def load(self, indices: Sequence[int]) -> None:
        self._loaded[np.asarray(indices, dtype=np.int64)] = True

    def unload(self, indices: Sequence[int]) -> None:
        self._loaded[np.asarray(indices, dtype=np.int64)] = False

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        if not self._loaded[idx].all():
            raise KeyError("batch() asked for samples that were not loaded")
        return {name: a[idx] for name, a in self._arrays.items()}

    def label(self, index: int) -> str:
        """The question id of feature ``index``."""
        return self.examples[int(self.features.example_index[int(index)])].qid

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self._arrays["input_ids"].shape[1:])


# ---------------------------------------------------------------------------------------------- task
def build_task(bench: Benchmark, opts: TaskOptions) -> BertTask:
    return BertTask(bench, opts)


class BertTask:
    """BERT-large on SQuAD v1.1 (reference) or the small BERT on mini/tiny QA data, as an inference task."""

    metric = "f1"
    response_dtype = "float32"
    input_names = INPUT_NAMES
    host_postprocess = False  # postprocess only stacks logits; decoding happens once, in accuracy()

    def __init__(self, bench: Benchmark, opts: TaskOptions):
        self.bench, self.opts = bench, opts
        hp = bench.hparams
        self.seq_len, self.query_len, self.stride = hp["squad_seq_len"], hp["squad_query_len"], hp["squad_stride"]
        self.n_best, self.max_answer_len = hp.get("squad_n_best", 20), hp.get("squad_max_answer_len", 30)
        self._store: FeatureStore | None = None
        self._weights_file: Path | None = None
        self._interface: modelfiles.Interface | None = None

    # ------------------------------------------------------------------ model file
    def interface(self) -> modelfiles.Interface:
        """How the model file is fed and read, recognised from the file (ConfigError when unknown)."""
        if self._interface is None:
            w = self.opts.weights
            if w and str(w).endswith(".onnx"):
                self._interface = modelfiles.recognise_onnx(modelfile.signature(w), f"BERT {self.bench.size}",
                                                            self.seq_len)
            else:
                self._interface = modelfiles.PYTORCH
        return self._interface

    @property
    def onnx_outputs(self) -> list[str] | None:
        """The ONNX outputs the onnxruntime backend fetches: the file's start and end logits, in that order."""
        return list(self.interface().outputs) or None

    def info(self) -> dict:
        pre = (f"SQuAD v1.1 features as the reference's create_squad_data.py (WordPiece, seq {self.seq_len}, query "
               f"{self.query_len}, stride {self.stride})")
        return {"model_file": {**self.interface().info(), "pre_processing": pre, "file": self.opts.weights}}

    # ------------------------------------------------------------------ data
    def files(self) -> tuple[Path, Path]:
        """(dev JSON, vocab.txt) of this size."""
        if self.bench.is_reference:
            if not self.opts.data_dir:
                raise DataError("BERT reference inference needs the SQuAD v1.1 dev set and the model's vocab.txt",
                                DATA_HINT)
            root = Path(self.opts.data_dir)
            for name in ("dev-v1.1.json", "vocab.txt"):
                if not (root / name).is_file():
                    raise DataError(f"{name} not found in {root}", DATA_HINT)
            return root / "dev-v1.1.json", root / "vocab.txt"
        root = qa_data.dataset_dir(self.bench.size, self.opts.data_dir)
        return root / "dev-v1.1.json", pretrained_vocab(self.bench) or root / "vocab.txt"

    def dataset(self) -> FeatureStore:
        if self._store is None:
            self.interface()  # an unknown model file fails here, before SQuAD is tokenised
            dev, vocab = self.files()
            tokenizer = squad.load_tokenizer(vocab)
            self._check_vocab(tokenizer, vocab)
            examples = squad.read_squad(dev)
            t = time.perf_counter()
            features = squad.convert(examples, tokenizer, max_seq_length=self.seq_len, doc_stride=self.stride,
                                     max_query_length=self.query_len)
            self.opts.say(f"SQuAD: {len(examples)} questions -> {len(features)} features "
                          f"(seq {self.seq_len}, query {self.query_len}, stride {self.stride}) in "
                          f"{time.perf_counter() - t:.1f} s")
            n = len(features) if self.opts.max_samples is None else min(self.opts.max_samples, len(features))
            self._store = FeatureStore(features, examples, total_count=n,
                                       performance_count=self.bench.performance_sample_count,
                                       names=self.interface().feeds)
        return self._store

    def _check_vocab(self, tokenizer, vocab: Path) -> None:
        n, model_n = squad.vocab_size(tokenizer), self.bench.hparams["model"]["vocab_size"]
        if n > model_n:
            raise DataError(f"vocabulary {vocab} gives token ids up to {n - 1} but the {self.bench.size} model "
                            f"embeds {model_n} tokens", "pass the vocab.txt that belongs to the model (one token a "
                            "line, none repeated)")

    # ------------------------------------------------------------------ outputs
    def postprocess(self, outputs: Sequence[np.ndarray], indices: Sequence[int]) -> np.ndarray:
        """(start, end) logits ``[N, L]`` each -> ``[N, L, 2]`` float32 (row i is sample i's response)."""
        start, end = (np.asarray(o, dtype=np.float32) for o in outputs[:2])
        return np.ascontiguousarray(np.stack([start, end], axis=-1))

    def accuracy(self, responses: dict[int, bytes], store: FeatureStore) -> dict[str, float]:
        """Decode an answer per question from its features' logged logits; exact match and F1 in percent over
        the questions with at least one response (an empty response counts as no answer)."""
        if not responses:
            return {"f1": 0.0, "exact_match": 0.0, "samples": 0, "questions": 0}
        rows = np.fromiter(responses, dtype=np.int64, count=len(responses))
        L = self.seq_len
        logits = np.full((len(rows), L, 2), -10000.0, dtype=np.float32)  # as the reference pads short outputs
        for k, i in enumerate(rows.tolist()):
            got = np.frombuffer(responses[i], dtype=np.float32)
            got = got[:(len(got) // 2) * 2].reshape(-1, 2)[:L]
            logits[k, :len(got)] = got
        require_finite(logits, "logged start/end logits")
        predictions = squad.decode(store.features, rows, logits[..., 0], logits[..., 1], store.examples,
                                   n_best=self.n_best, max_answer_length=self.max_answer_len)
        scores = squad.evaluate(store.examples, predictions)
        return {"f1": scores["f1"], "exact_match": scores["exact_match"], "samples": len(rows),
                "questions": scores["questions"]}

    # ------------------------------------------------------------------ model
    def model(self) -> nn.Module:
        if self.bench.is_reference and self.opts.weights == "random":
            return seeded_model(lambda: QAModel(self.bench.hparams["model"]), RANDOM_WEIGHTS_SEED)
        return load_model(self.bench, pytorch_weights(self._weights(), ".pt/.pth/.bin"))

    def model_id(self) -> str:
        if self.bench.is_reference and self.opts.weights == "random":
            return f"random{RANDOM_WEIGHTS_SEED}"
        return download.sha256_file(self._weights())[:12]

    def _weights(self) -> Path:
        if self._weights_file is None:
            self._weights_file = find_weights(self.bench, self.opts, files=".pt/.pth/.bin (or .onnx)",
                                              reference=self._reference_weights, trained=qa_checkpoint)
        return self._weights_file

    def _reference_weights(self) -> Path:
        raise MlbenchError("BERT reference inference needs fine-tuned SQuAD weights",
                           "pass --weights FILE: a BertForQuestionAnswering state dict (the MLPerf reference "
                           "PyTorch model, see the MLCommons inference language/bert README) or its .onnx "
                           "with --backend onnxruntime; --weights random measures throughput only")


def load_model(bench: Benchmark, path: Path) -> QAModel:
    """The QA model of ``bench`` with the weights of ``path``; ConfigError when they do not fit (DataError when
    the vocabulary differs)."""
    model = QAModel(bench.hparams["model"])
    state = qa_state_dict(read_weights(path), path)
    emb = state.get("bert.embeddings.word_embeddings.weight")
    want = bench.hparams["model"]["vocab_size"]
    if emb is not None and emb.shape[0] != want:
        raise DataError(f"weights {path} embed a vocabulary of {emb.shape[0]} tokens; BERT {bench.size} uses "
                        f"{want}", "pass weights trained with the same vocab.txt and model size")
    load_state(model.qa, state, path, what=f"BERT {bench.size}",
               hint="pass a BertForQuestionAnswering state dict of the same model size (MLPerf's model.pytorch "
                    "for the reference)")
    return model.eval()


# ---------------------------------------------------------------------------------------------- fine-tuning
def qa_checkpoint(bench: Benchmark, opts: TaskOptions) -> Path:
    """The cached mini/tiny QA model; fine-tuned first when missing (or made for another vocabulary)."""
    dest = download.cache_dir("models", f"bert-{bench.size}-qa.pt")
    data = qa_data.dataset_dir(bench.size, opts.data_dir)
    vocab = pretrained_vocab(bench) or data / "vocab.txt"
    vocab_sha = download.sha256_file(vocab)
    encoder = download.cache_dir("models", f"{bench.name}-{bench.size}.pt")
    encoder_sha = download.sha256_file(encoder) if pretrained_vocab(bench) is not None else None
    meta = dest.with_suffix(".result.json")
    if dest.is_file() and meta.is_file():
        done = json.loads(meta.read_text())
        # reuse unless the vocabulary, the recipe or the masked-LM encoder it started from (appeared, replaced or
        # gone) changed since it was fine-tuned
        if (done.get("vocab_sha256") == vocab_sha and done.get("settings") == finetune_settings(bench)
                and done.get("encoder_sha256") == encoder_sha):
            return dest
    if not opts.train_if_missing:
        raise MlbenchError(f"no fine-tuned BERT {bench.size} QA model in {dest}",
                           "drop --no-train-if-missing so that it is fine-tuned first, or pass --weights")
    opts.say(f"no cached BERT {bench.size} QA model: fine-tuning one on the {bench.size} QA train split")
    result = finetune(bench, data / "train-v1.1.json", vocab, dest, say=opts.say)
    result["vocab_sha256"], result["encoder_sha256"] = vocab_sha, encoder_sha
    meta.write_text(json.dumps(result, indent=1))
    return dest


def finetune_settings(bench: Benchmark) -> dict:
    """The fine-tuning recipe of ``bench`` (:data:`FINETUNE`, overridden by a ``squad_finetune`` hparams dict); a
    cached QA model made with other settings is fine-tuned again."""
    return {**FINETUNE.get(bench.size, FINETUNE["mini"]), **bench.hparams.get("squad_finetune", {})}


def finetune(bench: Benchmark, train_file: Path, vocab: Path, dest: Path, *, say=print,
             settings: dict | None = None, pretrained: bool = True,
             on_step: Callable[[int, QAModel], None] | None = None) -> dict:
    """Fine-tune the QA model on a SQuAD v1.1 train file (AdamW, linear warm-up then linear decay, cross
    entropy on start and end positions) and save its state dict to ``dest``; returns what was done.

    ``pretrained=False`` starts from random initialisation even where a masked-LM encoder is cached;
    ``on_step(step, model)`` (experiments: ``benchmarks/bert_qa_sweep.py``) is called before the first step
    (0) and after every step (1, 2, ...)."""
    s = {**finetune_settings(bench), **(settings or {})}
    hp = bench.hparams
    tokenizer = squad.load_tokenizer(vocab)
    examples = squad.read_squad(train_file)
    feats = squad.convert(examples, tokenizer, max_seq_length=hp["squad_seq_len"], doc_stride=hp["squad_stride"],
                          max_query_length=hp["squad_query_len"], training=True)
    g = torch.Generator().manual_seed(s["seed"])
    with torch.random.fork_rng():
        torch.manual_seed(s["seed"])
        model = QAModel(hp["model"])
    encoder = pretrained_encoder(bench) if pretrained else None
    start_from = "random initialisation"
    if encoder is not None:
        try:
            missing = model.qa.load_state_dict(encoder, strict=False)
        except RuntimeError as exc:
            raise DataError(f"the cached BERT {bench.size} pre-training checkpoint does not fit the QA model: "
                            f"{' '.join(str(exc).split())[:300]}",
                            f"delete {download.cache_dir('models', f'{bench.name}-{bench.size}.pt')} and run "
                            f"`mlbench train bert --size {bench.size}` again") from exc
        start_from = f"the masked-LM encoder ({len(missing.missing_keys)} QA weights new)"
    # dropout draws from torch's global generator: seeded here, so that a seed gives one model, and the caller's
    # generator is left as it was
    with torch.random.fork_rng():
        torch.manual_seed(s["seed"] + 1)
        model.train()
        decay = [p for n, p in model.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": s["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=s["lr"])
        steps, bs, warm = s["steps"], s["batch_size"], s["warmup"]
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: min((i + 1) / max(1, warm), max(0.0, (steps - i) / max(1, steps - warm))))
        ids, mask, types = (torch.from_numpy(getattr(feats, n)) for n in INPUT_NAMES)
        sp, ep = torch.from_numpy(feats.start_positions), torch.from_numpy(feats.end_positions)
        say(f"fine-tuning BERT {bench.size} QA from {start_from}: {len(examples)} questions, {len(feats)} features, "
            f"{steps} steps of {bs}")
        t0 = time.perf_counter()
        order = torch.randperm(len(feats), generator=g)
        pos, loss_avg = 0, None
        if on_step is not None:
            on_step(0, model)
        for step in range(steps):
            if pos + bs > len(order):
                order, pos = torch.randperm(len(feats), generator=g), 0
            b = order[pos:pos + bs]
            pos += bs
            width = int(mask[b].sum(1).max())  # trim padding: training cost follows the real lengths
            start, end = model(ids[b, :width], mask[b, :width], types[b, :width])
            loss = (nn.functional.cross_entropy(start, sp[b].clamp(max=width - 1))
                    + nn.functional.cross_entropy(end, ep[b].clamp(max=width - 1))) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            value = float(loss.detach())
            loss_avg = value if loss_avg is None else 0.9 * loss_avg + 0.1 * value
            if (step + 1) % max(1, steps // 5) == 0 or step + 1 == steps:
                say(f"  step {step + 1}/{steps}  loss {loss_avg:.3f}  ({time.perf_counter() - t0:.0f} s)")
            if on_step is not None:
                on_step(step + 1, model)
    seconds = time.perf_counter() - t0
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    torch.save({"model": model.qa.state_dict(), "finetuned_on": str(train_file), "steps": steps}, tmp)
    os.replace(tmp, dest)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()[:12]
    say(f"QA model cached at {dest} (sha256 {digest}, {seconds:.0f} s of fine-tuning)")
    return {"benchmark": bench.name, "size": bench.size, "start_from": start_from, "settings": s,
            "train_questions": len(examples), "train_features": len(feats), "seconds": round(seconds, 1),
            "final_loss": loss_avg}
