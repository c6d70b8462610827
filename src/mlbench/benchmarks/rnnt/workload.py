"""The RNN-T workload (``mlbench train rnnt``): dict batches of spliced log-mel features and tokens, the
RNN-T loss, LAMB with the reference's warm-up/hold/exponential-decay schedule, optional EMA weights for
evaluation, and WER (lower is better) by greedy decoding over the evaluation set. See ``definition.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mlbench.benchmarks.rnnt import data as sdata
from mlbench.benchmarks.rnnt.loss import implementation, rnnt_loss
from mlbench.benchmarks.rnnt.model import RNNT
from mlbench.benchmarks.rnnt.text import SENTENCEPIECE_VOCAB, Tokenizer, word_errors
from mlbench.errors import DataError
from mlbench.finite import HINT, NonFinite, nonfinite_weights
from mlbench.speech.librispeech import manifest_name
from mlbench.training import checkpoint, distributed
from mlbench.training.batches import DataBundle, DataSpec, default_workers
from mlbench.training.optimizers import Lamb
from mlbench.training.recipe import OptimArgs, StepContext, StepSchedule
from mlbench.training.workload import Workload

SENTENCEPIECE_MODEL = "sentencepieces/librispeech1023.model"  # where the reference keeps it under the data dir


class ReferenceSchedule(StepSchedule):
    """The reference's ``lr_policy``: linear warm-up over ``warmup_epochs``, ``hold_epochs`` at the peak, then
    ``lr * gamma ** (epoch - warmup - hold)``, never below ``min_lr``."""

    def __init__(self, optimizer, lr: float, steps_per_epoch: int, warmup_epochs: float, hold_epochs: float,
                 gamma: float, min_lr: float):
        super().__init__(optimizer)
        self.lr, self.spe = lr, max(1, steps_per_epoch)
        self.warmup, self.hold = int(warmup_epochs * self.spe), int(hold_epochs * self.spe)
        self.gamma, self.min_lr = gamma, min_lr
        self._apply()

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            a = (step + 1) / (self.warmup + 1)
        elif step < self.warmup + self.hold:
            a = 1.0
        else:
            a = self.gamma ** ((step - self.warmup - self.hold) // self.spe + 1)
        return max(a * self.lr, self.min_lr)


class EmaLamb(Lamb):
    """LAMB that also keeps an exponential moving average of the weights (the reference evaluates it)."""

    def __init__(self, params, model: torch.nn.Module, ema: float, **kw: Any):
        super().__init__(params, **kw)
        self.ema, self.model = ema, model
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()} if ema > 0 else {}

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        if self.shadow:
            for k, v in self.model.state_dict().items():
                if v.dtype.is_floating_point:
                    self.shadow[k].mul_(self.ema).add_(v, alpha=1 - self.ema)
                else:
                    self.shadow[k].copy_(v)
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["ema_shadow"] = self.shadow
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shadow = state.pop("ema_shadow", None)
        super().load_state_dict(state)
        if shadow:  # read onto the CPU (checkpoint.read): back beside the weights it averages
            weights = self.model.state_dict()
            self.shadow = {k: v.to(weights[k].device).clone() for k, v in shadow.items()}


def tokenizer_for(bench, data_dir: str | Path | None) -> Tokenizer:
    if bench.hparams.get("sentencepiece"):
        tok = Tokenizer(Path(data_dir or ".") / SENTENCEPIECE_MODEL)
        if tok.num_labels != SENTENCEPIECE_VOCAB:
            raise DataError(f"the SentencePiece model has {tok.num_labels} pieces; the reference uses "
                            f"{SENTENCEPIECE_VOCAB}", "rebuild it with mlbench data prepare rnnt")
        return tok
    return Tokenizer()


def num_classes(bench) -> int:
    return (SENTENCEPIECE_VOCAB if bench.hparams.get("sentencepiece") else len(Tokenizer().labels)) + 1


GENERATE_HINT = ("for RNN-T {size}, --data-dir names a folder holding librispeech-train-wav.json and "
                 "librispeech-dev-wav.json (used as they are), or a new or empty folder to generate the {size} data "
                 "into; without --data-dir it is generated in mlbench's cache. LibriSpeech made by `mlbench data "
                 "prepare rnnt` trains with --size reference")


def data_root(bench, data_dir: str | None, say=print) -> Path:
    """Where the manifests are: --data-dir for the reference (real data); for the sizes of generated data
    (``hparams["synth"]``: mini, tiny) a --data-dir holding both manifests, else the generated data, in --data-dir
    (a new or empty folder, or one mlbench generated) or the cache."""
    hp = bench.hparams
    if not hp.get("synth"):
        if not data_dir:
            raise DataError("RNN-T reference training needs LibriSpeech in the reference's layout",
                            "run `mlbench data prepare rnnt --root DIR` and pass --data-dir DIR")
        return Path(data_dir)
    from mlbench.benchmarks.rnnt import synthetic
    from mlbench.data.download import cache_dir

    root = Path(data_dir) if data_dir else cache_dir(f"rnnt-{bench.size}")
    if data_dir and all((root / manifest_name(s)).is_file() for s in ("train", "dev")):
        return root  # given data: used as it is
    return synthetic.generate(root, hp["synth"], hp["train_samples"], hp["eval_samples"], seed=0, say=say,
                              hint=GENERATE_HINT.format(size=bench.size))


class RNNTWorkload(Workload):
    def __init__(self, bench):
        super().__init__(bench)
        self._optimizer: EmaLamb | None = None
        self.tokenizer: Tokenizer | None = None

    def build_model(self) -> torch.nn.Module:
        hp = self.bench.hparams
        return RNNT(num_classes(self.bench), in_feats=hp["n_mels"] * hp["stacking"], **{
            k: hp[k] for k in ("enc_n_hid", "enc_pre_rnn_layers", "enc_post_rnn_layers", "enc_stack_time_factor",
                               "enc_dropout", "pred_n_hid", "pred_rnn_layers", "pred_dropout", "joint_n_hid",
                               "joint_dropout", "forget_gate_bias", "weights_init_scale")},
            ctc_weight=hp.get("ctc_weight", 0.0))

    def build_data(self, spec: DataSpec) -> DataBundle:
        hp, b = self.bench.hparams, self.bench
        root = data_root(b, spec.data_dir)
        self.tokenizer = tok = tokenizer_for(b, root)
        train_files = [root / manifest_name(s) for s in hp["train_splits"]]
        eval_file = root / manifest_name(hp["eval_split"])
        train = [u for f in train_files for u in sdata.read_manifest(f, root, tok, hp["max_duration"])]
        ev = sdata.read_manifest(eval_file, root, tok)
        cache = bool(hp.get("cache_features"))
        workers = spec.workers if spec.workers is not None else default_workers()
        tb = sdata.SpeechBatches(train, spec.batch_size, train=True, rank=spec.rank, world=spec.world_size,
                                 seed=spec.seed, hp=hp, cache=cache, workers=workers)
        eb = sdata.SpeechBatches(ev, spec.eval_batch_size, train=False, rank=spec.rank, world=spec.world_size,
                                 seed=0, hp=hp, cache=cache, workers=workers)
        return DataBundle(train=tb, eval=eb, train_samples=len(train), eval_samples=len(ev))

    def to_device(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        return {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}

    def synthetic_batch(self, batch_size: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        hp = self.bench.hparams
        g = torch.Generator().manual_seed(3)
        T, U = 60, 12
        batch = {"feats": torch.randn(batch_size, T, hp["n_mels"] * hp["stacking"], generator=g),
                 "feat_lens": torch.full((batch_size,), T), "token_lens": torch.full((batch_size,), U),
                 "tokens": torch.randint(0, num_classes(self.bench) - 1, (batch_size, U), generator=g)}
        return self.to_device(batch, ctx)

    def build_optimizer(self, model: torch.nn.Module, args: OptimArgs):
        hp = self.bench.hparams
        lr = args.base_lr if args.base_lr is not None else hp["lr"]
        net = checkpoint.unwrap(model)
        params = [{"params": [p for p in net.parameters() if p.requires_grad], "weight_decay": hp["weight_decay"],
                   "adapt": True}]
        opt = EmaLamb(params, net, hp["ema"], lr=lr, betas=(hp["beta1"], hp["beta2"]), eps=hp["epsilon"],
                      weight_decay=hp["weight_decay"], max_grad_norm=hp["clip_norm"])
        self._optimizer = opt
        args.extra.update(base_lr=lr)
        return opt, ReferenceSchedule(opt, lr, args.steps_per_epoch, hp["warmup_epochs"], hp["hold_epochs"],
                                      hp["lr_exp_gamma"], hp["min_lr"])

    def speed_record(self) -> dict[str, Any]:
        """Which RNN-T loss runs: torchaudio's kernel where it loads beside this torch, else the pure-PyTorch one
        (same values; a different speed)."""
        return {"rnnt_loss": implementation()}

    def loss(self, model, batch, ctx: StepContext):
        with ctx.amp():
            out = model(batch["feats"], batch["feat_lens"], batch["tokens"])
        logits, f_lens = out[0], out[1]
        blank = num_classes(self.bench) - 1
        loss = rnnt_loss(logits.float(), batch["tokens"], f_lens, batch["token_lens"], blank=blank)
        if len(out) > 2:  # mini's auxiliary CTC loss on the encoder (mlbench's, not the reference's), per utterance
            ctc = torch.nn.functional.ctc_loss(out[2].float().log_softmax(-1).transpose(0, 1), batch["tokens"],
                                               f_lens, batch["token_lens"], blank=blank, reduction="none",
                                               zero_infinity=True).mean()
            return loss + self.bench.hparams["ctc_weight"] * ctc, {"rnnt": loss.detach(), "ctc": ctc.detach()}
        return loss, {}

    @torch.no_grad()
    def transcripts(self, net, batches, ctx: StepContext, tok):
        """(hypothesis, reference) text of each utterance of ``batches``, in order: ``net``'s greedy decoding."""
        for batch in batches:
            batch = self.to_device(batch, ctx)
            with ctx.amp():
                labels, counts = net.greedy(batch["feats"], batch["feat_lens"],
                                            max_symbols=self.bench.hparams["max_symbols"])
            for j in range(len(counts)):
                yield (tok.decode(labels[j, : int(counts[j])].tolist()),
                       tok.decode(batch["tokens"][j, : int(batch["token_lens"][j])].tolist()))

    def evaluate(self, model, batches, ctx: StepContext) -> tuple[dict[str, float], int]:
        net = checkpoint.unwrap(model)  # the shadow's keys are the plain model's (no DDP or compile prefix)
        net.eval()
        saved = None
        opt = self._optimizer
        if opt is not None and opt.shadow:  # evaluate the EMA weights, as the reference does
            saved = {k: v.clone() for k, v in net.state_dict().items()}
            net.load_state_dict(opt.shadow)
        errors = words = count = 0
        tok = self.tokenizer or Tokenizer()
        try:
            bad = nonfinite_weights(net.state_dict())  # the same on every rank (replicas): all of them stop
            if bad:  # greedy decoding turns NaN scores into labels: the WER would look like a result
                raise NonFinite(f"the weights being evaluated hold NaN or infinity ({', '.join(bad[:3])}"
                                f"{', ...' if len(bad) > 3 else ''}): the predictions are not scored, and the run has "
                                "no result", HINT)
            for hyp, ref in self.transcripts(net, batches, ctx, tok):
                e, n = word_errors(hyp, ref)
                errors, words, count = errors + e, words + n, count + 1
        finally:
            if saved is not None:
                net.load_state_dict(saved)
        errors, words, count = distributed.all_reduce_sum([float(errors), float(words), float(count)], ctx.device)
        return {"wer": errors / words if words else float("inf"), "word_errors": errors, "words": words}, int(count)

    def mllog_hparams(self, args: OptimArgs, optimizer: Any) -> dict[str, Any]:
        hp = self.bench.hparams
        speed = hp.get("speed", False)
        return {
            "opt_name": "lamb", "opt_base_learning_rate": args.extra["base_lr"], "opt_lamb_epsilon": hp["epsilon"],
            "opt_lamb_learning_rate_decay_poly_power": hp["lr_exp_gamma"],
            "opt_lamb_learning_rate_hold_epochs": hp["hold_epochs"],
            "opt_learning_rate_warmup_epochs": hp["warmup_epochs"], "opt_weight_decay": hp["weight_decay"],
            "opt_lamb_beta_1": hp["beta1"], "opt_lamb_beta_2": hp["beta2"],
            "opt_gradient_clip_norm": hp["clip_norm"], "opt_learning_rate_alt_decay_func": True,
            "opt_learning_rate_alt_warmup_func": True, "opt_lamb_learning_rate_min": hp["min_lr"],
            "data_train_max_duration": hp["max_duration"], "data_train_num_buckets": int(hp["num_buckets"]),
            "data_speed_perturbaton_min": hp["speed_min"] if speed else 1.0,
            "data_speed_perturbaton_max": hp["speed_max"] if speed else 1.0,
            "data_spec_augment_freq_n": hp["freq_masks"], "data_spec_augment_freq_min": hp["min_freq"],
            "data_spec_augment_freq_max": hp["max_freq"], "data_spec_augment_time_n": hp["time_masks"],
            "data_spec_augment_time_min": hp["min_time"], "data_spec_augment_time_max": hp["max_time"],
            "model_eval_ema_factor": hp["ema"], "eval_max_prediction_symbols": hp["max_symbols"],
        }


WORKLOAD = RNNTWorkload
