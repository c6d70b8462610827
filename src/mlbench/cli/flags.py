"""Command-line flags generated from the configuration dataclasses, so that --help and the config agree."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from mlbench import config as cfgmod


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                     more_help: dict[str, str] | None = None) -> None:
    """One ``--flag`` per field of ``cls``; defaults are None so only given flags override lower layers.
    ``more_help`` adds text to some fields' help (facts read from the registry)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "") + (more_help or {}).get(f.name, "").replace("%", "%%")
        choices = f.metadata.get("choices")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text += f" (default: {default})"
        tp = hints[f.name]
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        base = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
        kind = base if base in (int, float) else str
        parser.add_argument(flag, dest=f.name, type=kind, choices=choices, default=None, help=help_text,
                            metavar=None if choices else f.name.upper())


def add_layer_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", dest="config_file", metavar="FILE",
                        help="YAML or JSON file of options (lower priority than flags)")
    parser.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE",
                        help="set any option, e.g. --set log_every=50 (repeatable)")


def resolve(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """defaults < --config file < --set < flags < ``fixed``; validated (ConfigError, exit code 2)."""
    names = {f.name for f in dataclasses.fields(cls)}
    file_layer = cfgmod.load_file(args.config_file) if getattr(args, "config_file", None) else {}
    flags = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return cfgmod.build(cls, file_layer, cfgmod.parse_sets(getattr(args, "sets", None)), flags, fixed)
