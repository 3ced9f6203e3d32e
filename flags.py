"""Command-line flags made from a settings dataclass (TrainConfig, DPOConfig, SamplingConfig).

One flag per field, named after it (micro_batch_size -> --micro-batch-size), with the field's type,
default and help, so each setting's default is written once: in its dataclass.

    @dataclass
    class TrainConfig:
        lr: float = setting(3e-4, "peak learning rate")
    add_flags(parser, TrainConfig);  cfg = from_flags(parser.parse_args(), TrainConfig)
"""
import argparse
from dataclasses import field, fields


def setting(default, help: str, choices=None):
    """A dataclass field with the help line (and allowed values) its flag shows."""
    return field(default=default, metadata={"help": help, "choices": choices})


def add_flags(parser: argparse.ArgumentParser, cls):
    """--name for every field of `cls`; booleans get --name / --no-name."""
    for f in fields(cls):
        flag, choices = f"--{f.name.replace('_', '-')}", f.metadata.get("choices")
        help = f"{f.metadata.get('help', f.name)} (default: %(default)s)"
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, choices=choices, help=help)


def from_flags(args: argparse.Namespace, cls):
    """The `cls` the parsed flags describe."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
