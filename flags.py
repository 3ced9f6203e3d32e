"""Settings: dataclass fields that know their help line and their allowed values, and the command-line
flags and checks made from them (TrainConfig, DPOConfig, SamplingConfig).

One flag per field, named after it (micro_batch_size -> --micro-batch-size), with the field's type,
default, help and range, so each setting's default and range are written once: in its dataclass.

    @dataclass
    class TrainConfig:
        lr: float = setting(3e-4, "peak learning rate", above=0)
        def __post_init__(self): check_settings(self)     # every TrainConfig(...) is checked
    add_flags(parser, TrainConfig);  cfg = from_flags(parser, parser.parse_args(), TrainConfig)

A bad value stops with one line naming the setting, the value and what is allowed, before any work:
    train_sft.py: error: argument --lr: -1.0 is not allowed (allowed: a number > 0)
    loop.py: error: configs/x.json: sft.lr: '3e-3' is not allowed (allowed: a number > 0)
"""
import argparse
import math
import os
from dataclasses import field, fields

import torch

DTYPES = ("float32", "bfloat16", "float16")
KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list", dict: "{...}"}


class SettingError(ValueError):
    """A setting's value is outside what it allows. Callers name it their way (--lr, sft.lr)."""
    def __init__(self, name: str, value, allowed: str):
        super().__init__(f"{name}: {value!r} is not allowed (allowed: {allowed})")
        self.name, self.value, self.allowed = name, value, allowed


def setting(default, help: str, choices=None, at_least=None, above=None, at_most=None, below=None):
    """A dataclass field with the help line its flag shows and the range its value must lie in."""
    bounds = {"at_least": at_least, "above": above, "at_most": at_most, "below": below}
    return field(default=default, metadata={"help": help, "choices": choices, **bounds})


def allowed_values(f) -> str:
    """In words: what field `f` allows ("a number > 0", "a whole number >= 1", "sigmoid or ipo")."""
    m = f.metadata
    if m.get("choices"):
        return " or ".join(map(str, m["choices"]))
    kind = KINDS[type(f.default)]
    limits = [f"{sign} {m[key]}" for key, sign in [("at_least", ">="), ("above", ">"), ("at_most", "<="),
                                                   ("below", "<")] if m.get(key) is not None]
    return kind + (" " + " and ".join(limits) if limits else "")


def check_settings(obj):
    """Raise SettingError for the first field of dataclass `obj` whose value has the wrong type or range.
    Floats must be finite; an int is a fine float; a bool is not a number."""
    for f in fields(obj):
        value, m, kind = getattr(obj, f.name), f.metadata, type(f.default)
        if kind is bool:
            right_type = isinstance(value, bool)
        elif kind is float:  # an int is a fine float
            right_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            right_type = isinstance(value, kind) and not isinstance(value, bool)
        ok = right_type and (kind is not float or math.isfinite(value))
        ok = ok and (not m.get("choices") or value in m["choices"])
        ok = ok and all(limit is None or test(value, limit) for limit, test in [
            (m.get("at_least"), lambda v, x: v >= x), (m.get("above"), lambda v, x: v > x),
            (m.get("at_most"), lambda v, x: v <= x), (m.get("below"), lambda v, x: v < x)])
        if not ok:
            raise SettingError(f.name, value, allowed_values(f))


def add_flags(parser: argparse.ArgumentParser, cls):
    """--name for every field of `cls`; booleans get --name / --no-name. Help shows the default and range."""
    for f in fields(cls):
        flag, choices = f"--{f.name.replace('_', '-')}", f.metadata.get("choices")
        help = f"{f.metadata.get('help', f.name)} (default: %(default)s; allowed: {allowed_values(f)})"
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, choices=choices, help=help)


def from_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, cls):
    """The `cls` the parsed flags describe; a value out of range ends the command with parser.error."""
    try:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
    except SettingError as e:
        parser.error(f"argument {SettingError('--' + e.name.replace('_', '-'), e.value, e.allowed)}")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default, except where there is none (a required flag, an unset one)."""
    def _get_help_string(self, action):
        if action.default is None or action.required or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with the defaults in --help and a bad flag reported on one line, without the usage."""
    def __init__(self, description: str, **kwargs):
        super().__init__(description=description, formatter_class=DefaultsFormatter, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# --- flags that are not settings of a dataclass ---------------------------------------------------

def check_device(name: str, device: str):
    """A device this machine has: cpu, cuda or cuda:N (when torch sees GPUs), mps (on a Mac)."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    usable = ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(gpus)] if gpus else [])
    usable += ["mps"] if torch.backends.mps.is_available() else []
    if device not in usable:
        build = " (this torch is a CPU-only build)" if torch.version.cuda is None and not gpus else ""
        raise SettingError(name, device, "a device this machine has: " + ", ".join(usable) + build)


def check_output_file(name: str, out: str, inputs=()):
    """An output file that is not a folder and is none of the inputs (which it would overwrite)."""
    if os.path.isdir(out):
        raise SettingError(name, out, "a file name; this is a folder")
    for given in inputs:
        if given and os.path.exists(given) and os.path.exists(out) and os.path.samefile(given, out):
            raise SettingError(name, out, f"a file other than the input {given}")


def check_flags(ap, args):
    """A training command's --device, --out and input paths, checked before a model is loaded or anything
    is written (train_sft.py, dpo.py)."""
    try:
        check_device("--device", args.device)
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise SettingError("--out", args.out, "a folder (or a name not yet taken); this is a file")
    except SettingError as e:
        ap.error(f"argument {e}")
    inputs = [("--model", getattr(args, "model", None)), ("--init-config", getattr(args, "init_config", None)),
              ("--tokenizer", getattr(args, "tokenizer", None)), ("--pairs", getattr(args, "pairs", None))]
    inputs += [("--data", path) for path in getattr(args, "data", [])]
    for flag, path in inputs:
        if path is not None and not os.path.exists(path):
            ap.error(f"argument {flag}: {path} does not exist")
