"""Typed, validated configuration.

Configurations are keyword-only dataclasses. Each field may carry ``choices``, ``min``, ``max`` or ``check``
(a function returning what is wrong with a value, or None) in its metadata;
:func:`validate` checks every field against its type and these constraints (every number must also be finite)
and raises :class:`~mlbench.errors.ConfigError` naming the field and what is allowed, before anything runs.
Every numeric field has a ``max``, so that absurd magnitudes are refused as such.
Values come, in increasing priority, from the defaults, a YAML/JSON file (``--config``), ``--set key=value``
and the explicit command-line flags. The resolved tree is saved whole with every result.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbench import registry
from mlbench.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
PEAK_TFLOPS_HELP = ("the peak of one device (GPU, or the CPU cores used) in TFLOP/s at the run's precision, dense "
                    "(an accelerator's datasheet figure), for MFU where no datasheet or theoretical CPU peak is "
                    "known, or to replace it; recorded as user-given")


SEED_MAX = 2**32 - 1  # numpy and torch take seeds below 2^32


def opt(default: Any, help: str, **constraints: Any) -> Any:
    """A dataclass field with a help text and optional ``choices``/``min``/``max``/``check`` constraints."""
    return field(default=default, metadata={"help": help, **constraints})


def _host_port(value: str) -> str | None:
    """What is wrong with a ``HOST:PORT`` address, or None."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return "use HOST:PORT with a port from 1 to 65535, e.g. node01:29500"
    return None


def data_dir_problem(value: str) -> str | None:
    """A ``--data-dir`` naming a file is refused before anything runs (a folder that does not exist is each
    benchmark's to report, or to generate its data into)."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        return "it is a file, not a folder: pass the folder that holds the data set"
    return None


@dataclass(kw_only=True)
class TrainConfig:
    """Everything ``mlbench train`` needs; saved as config.json in the run directory."""

    benchmark: str = opt(registry.names()[0], "benchmark name (see `mlbench list`)")
    size: str = opt("mini", "benchmark size", choices=("reference", "mini", "tiny"))
    data_dir: str | None = opt(None, "dataset root; default: the size's built-in or standard location",
                               check=data_dir_problem)
    model_dir: str | None = opt(None, "pretrained model a benchmark starts from (a Hugging Face directory: config.json "
                                      "and safetensors), e.g. the base model of a fine-tuning benchmark")
    output_dir: str = opt("runs", "where run directories are created")
    run_dir: str | None = opt(None, "use exactly this run directory (set by launchers)")
    device: str = opt("auto", "auto (cuda when available), cpu, cuda or cuda:N")
    precision: str = opt("fp32", "numeric precision (bf16/fp16 use autocast)", choices=PRECISIONS)
    channels_last: bool = opt(False, "use the channels_last memory format for conv nets")
    compile: bool = opt(False, "torch.compile the model (compiled during init, before run_start)")
    batch_size: int | None = opt(None, "per-process batch size; default: the benchmark's", min=1, max=65536)
    grad_accum: int = opt(1, "gradient accumulation steps", min=1, max=1024)
    workers: int | None = opt(None, "data-loader worker processes; default: automatic", min=0, max=256)
    epochs: int | None = opt(None, "epoch budget; default: the benchmark's", min=1, max=100_000)
    lr: float | None = opt(None, "override the base learning rate (makes the run open division)", min=0.0,
                           max=100.0)
    hparams: dict | None = opt(None, "overrides of the benchmark's tunable hyper-parameters, KEY=VALUE (--hparam, "
                                     "repeatable; makes the run open division; `mlbench list` names them)")
    seed: int | None = opt(None, "seed of the first run (later runs add 1 each); default: random", min=0,
                           max=SEED_MAX)
    runs: int = opt(1, "number of runs, scored like MLPerf (olympic mean) when >= 3", min=1, max=100)
    resume: str | None = opt(None, "checkpoint to resume from (the result is marked resumed)")
    checkpoint: bool = opt(True, "write a checkpoint after each evaluation")
    nproc: int = opt(1, "processes on this machine; > 1 starts torchrun", min=1, max=1024)
    nnodes: int = opt(1, "nodes in the job; > 1 starts torchrun on each node with c10d rendezvous", min=1,
                      max=10_000)
    rdzv_endpoint: str | None = opt(None, "host:port of the c10d rendezvous for --nnodes > 1 (the first node)",
                                    check=_host_port)
    rdzv_id: str = opt("mlbench", "rendezvous id: the same on every node of one job, distinct between jobs")
    node_rank: int | None = opt(None, "this node's rank 0..nnodes-1 (node 0 hosts the rendezvous endpoint); "
                                      "default: assigned by torchrun's c10d rendezvous", min=0, max=9_999)
    log_every: int = opt(20, "steps between progress lines", min=1, max=1_000_000)
    dist_timeout_s: int = opt(600, "timeout of collective operations, in seconds", min=10, max=7 * 86400)
    peak_tflops: float | None = opt(None, PEAK_TFLOPS_HELP, min=1e-6, max=1e6)
    submission_org: str = opt("mlbench", "submission_org logged in the MLPerf log")
    submission_platform: str | None = opt(None, "submission_platform; default: derived from the system")
    submission_status: str = opt(
        "research", "submission_status", choices=("cloud", "onprem", "preview", "research")
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def cross_check(self) -> None:
        """Limits that involve two fields (called by :func:`validate`)."""
        if self.seed is not None and self.seed + self.runs - 1 > SEED_MAX:
            raise ConfigError(f"invalid value for 'seed': {self.seed} with --runs {self.runs} (run N uses seed + N-1)",
                              f"seeds must stay below 2^32: give a seed <= {SEED_MAX - self.runs + 1}")
        if self.node_rank is not None and self.node_rank >= self.nnodes:
            raise ConfigError(f"invalid value for 'node_rank': {self.node_rank} with --nnodes {self.nnodes}",
                              f"node ranks are 0..{self.nnodes - 1}")


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if args:
        return " or ".join(_type_name(a) for a in args)
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def number_problem(value: float, meta: dict[str, Any]) -> str | None:
    """What is wrong with the number ``value`` under the constraints ``meta`` (min, max), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    low, high = meta.get("min"), meta.get("max")
    if low is not None and value < low:
        return f"must be >= {_show(low)}" + (f" and <= {_show(high)}" if high is not None else "")
    if high is not None and value > high:
        return f"must be <= {_show(high)}"
    return None


def check_value(f: dataclasses.Field, value: Any) -> None:
    """ConfigError when ``value`` breaks the constraints of field ``f`` (its type is already checked)."""
    if value is None:
        return
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"invalid value for '{f.name}': {value!r}", f"allowed: {', '.join(map(str, choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        problem = number_problem(value, f.metadata)
        if problem:
            raise ConfigError(f"invalid value for '{f.name}': {_show(value)}",
                              f"{problem} ({f.metadata.get('help', f.name)})")
    check = f.metadata.get("check")
    if check is not None:
        problem = check(value)
        if problem:
            raise ConfigError(f"invalid value for '{f.name}': {value!r}", problem)


def _show(value: float) -> str:
    """A number as a person reads it: 65536, 4294967295, 0.001, 1e+300, nan."""
    return f"{value:g}" if isinstance(value, float) or abs(value) > 10**15 else str(value)


def validate(cfg: Any) -> Any:
    """Check every field of the dataclass ``cfg``, then its ``cross_check()`` if it has one; raise ConfigError
    naming the first bad one."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        tp = hints[f.name]
        if not _type_ok(value, tp):
            raise ConfigError(
                f"invalid value for '{f.name}': {value!r} is not a {_type_name(tp)}",
                f"{f.metadata.get('help', f.name)}",
            )
        check_value(f, value)
    cross_check = getattr(cfg, "cross_check", None)
    if cross_check is not None:
        cross_check()
    return cfg


def field_of(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def bounded(kind: type, *, min: float | None = None, max: float | None = None):
    """An argparse ``type=`` for a plain option: ``kind`` (int or float), finite, within the bounds."""
    import argparse

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        problem = number_problem(value, {"min": min, "max": max})
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


# ``--since`` of results, compare and report: an ISO date or time, or a few plain words.
_AGO = re.compile(r"^(\d{1,5})\s*(d|h|w|days?|hours?|weeks?)(\s+ago)?$")
_UNITS = {"d": "days", "h": "hours", "w": "weeks"}
SINCE_FORMS = "an ISO date or time (2026-01-31, 2026-01-31T18:00, ...+00:00), today, yesterday, 7d, 24h or 2w"


def parse_since(text: str, now: datetime.datetime | None = None) -> str:
    """``text`` as the ISO UTC time that run start times (``started_at``) compare with; ConfigError when it is
    none of :data:`SINCE_FORMS`. Dates and times without an offset are local time."""
    now = now or datetime.datetime.now().astimezone()
    word = text.strip().lower()
    local_midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        if word == "today":
            when = local_midnight
        elif word == "yesterday":
            when = local_midnight - datetime.timedelta(days=1)
        elif m := _AGO.match(word):
            when = now - datetime.timedelta(**{_UNITS[m.group(2)[0]]: int(m.group(1))})
        else:
            when = datetime.datetime.fromisoformat(word.upper().replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.astimezone()  # naive: local time
        return when.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")
    except (ValueError, OverflowError):
        raise ConfigError(f"invalid value for 'since': {text!r}", f"give {SINCE_FORMS}") from None


def since_arg(text: str) -> str:
    """argparse ``type=`` for ``--since``."""
    import argparse

    try:
        return parse_since(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: give {SINCE_FORMS}") from exc


def parse_value(text: str, tp: Any) -> Any:
    """Turn a command-line string into a value of type ``tp`` (best effort; validate() checks)."""
    if text.lower() in ("none", "null"):
        return None
    for candidate in typing.get_args(tp) or (tp,):
        if candidate is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
        elif candidate is int:
            try:
                return int(text)
            except ValueError:
                pass
        elif candidate is float:
            try:
                return float(text)
            except ValueError:
                pass
    return text


def load_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON configuration file as a flat dict of field -> value."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}", "pass an existing YAML or JSON file to --config")
    try:
        text = p.read_text()
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise ConfigError(f"cannot parse config file {p}: {exc}", "fix the file's syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of option: value", None)
    return data


def build(cls: type, *layers: dict[str, Any]) -> Any:
    """An instance of ``cls`` from the defaults updated by each layer, validated; unknown keys fail."""
    names = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            k = key.replace("-", "_")
            if k not in names:
                from mlbench.registry import did_you_mean

                raise did_you_mean(k, sorted(names), "option")
            if isinstance(value, str) and hints[k] is not str:
                value = parse_value(value, hints[k])
            values[k] = value
    return validate(cls(**values))


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``["a=1", "b=x"]`` from repeated ``--set`` flags as a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}", "for example: --set batch_size=64")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out
