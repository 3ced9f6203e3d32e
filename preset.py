"""A loop preset (configs/*.json): its settings and their defaults, how a preset is read, and every
value checked before the loop writes anything.

    config = load_config("configs/tiny-llama.json")   # merged over DEFAULTS; "extends" another preset
    check_config(config, "configs/tiny-llama.json")    # types and ranges; one line naming a bad key

The optimizer's, the sampler's and distribution's settings are the fields of TrainConfig, DPOConfig,
SamplingConfig and DistributedConfig: their defaults and allowed ranges are written there, once, and
checked here by building them.
"""
import json
from dataclasses import asdict, fields
from pathlib import Path

from data import DATASET_NAMES
from data.selection import PAIRS_PER_QUESTION
from data.synthetic import DEFAULT_SIZES as SYNTHETIC_SIZES, SPLITS as SYNTHETIC_SPLITS
from data.world import DEFAULT_SIZES as WORLD_SIZES, SPLITS as WORLD_SPLITS
from distributed import DistributedConfig
from dpo import DPOConfig
from flags import DTYPES, KINDS, SettingError, check_device
from model import load_config as load_model_config  # a checkpoint's config.json (load_config here: a preset)
from model.config import config_from_dict
from sample import SamplingConfig
from trainer import TrainConfig

QUESTION_SETS = {"labeled": ["labeled"], "unlabeled": ["unlabeled"], "both": ["labeled", "unlabeled"]}
SOURCES = {"world": WORLD_SPLITS, "synthetic": SYNTHETIC_SPLITS, "gsm8k": ()}  # gsm8k: sizes are fixed
SOURCE_SIZES = {"world": WORLD_SIZES, "synthetic": SYNTHETIC_SIZES}
OOD_SETS = [name for name in DATASET_NAMES if not name.startswith("gsm8k")]  # GSM8K's own are the task
DEFAULTS = {
    "about": "",  # what the preset is, and where its numbers come from
    "seed": 0, "iterations": 3, "device": "cpu", "dtype": "float32",
    # source: "world" (data/world.py: many solution paths per question, a pretraining corpus),
    # "synthetic" (data/synthetic.py: one path per question) or "gsm8k" (`make data`; ood: the OOD test
    # sets). sizes: examples per split; a split not named keeps its source's DEFAULT_SIZES. seed: the
    # world's or synthetic data's seed; None draws it from the run's seed, a number keeps one dataset for
    # every run seed (as the paper keeps GSM8K), so that seeds differ only in training.
    "data": {"source": "world", "sizes": {}, "ood": ["svamp", "asdiv", "multiarith"], "seed": None},
    "model": {"checkpoint": None, "init": None, "tokenizer_vocab_size": 800,  # init: an HF config dict
              "copy_pretrain_steps": 0},
    "sft": asdict(TrainConfig()),
    "dpo": asdict(DPOConfig()),
    # The paper samples 5 answers per labeled question for pairs, 3 for pseudo-labels, at T = 0.7
    # (its code: top-k 50). questions: "labeled" (the paper, for both) or "unlabeled"/"both": their gold
    # final answers are enough to tell correct from incorrect samples, and they have no gold rationale to add.
    # Pseudo-labels of labeled questions include their gold rationale (make_rft_data), so sft-k trains
    # on the pseudo-labels plus the labeled rows not among them.
    "pairs": {**asdict(SamplingConfig(num_samples=5, temperature=0.7, top_k=50)),
              "pairs_per_question": PAIRS_PER_QUESTION, "questions": "labeled", "verify_calculations": False},
    "pseudo": {**asdict(SamplingConfig(num_samples=3, temperature=0.7, top_k=50)), "questions": "labeled",
               "verify_calculations": False},
    "eval": {"max_new_tokens": SamplingConfig.max_new_tokens, "batch_size": SamplingConfig.batch_size},  # greedy
    # Under torchrun: how SFT and DPO share the model over the processes (distributed.py).
    "distributed": asdict(DistributedConfig()),
}
VALUES = ("init", "sizes")  # dicts that are one value, not a section of settings


def load_config(path, extended_by=()) -> dict:
    """A preset merged over DEFAULTS. An unknown key, or a value of another type than its default's
    ("3e-3" for a number), is an error naming it. A preset with "extends": "other.json" (beside it)
    holds only what it changes from that preset."""
    def merge(defaults, given, where):
        merged = dict(defaults)
        for key, value in given.items():
            if key not in defaults:
                raise ValueError(f"{path}: unknown key '{where}{key}' (known: {', '.join(defaults)})")
            default = DEFAULTS_AT.get(where + key, defaults[key])
            is_section = isinstance(default, dict) and key not in VALUES
            if is_section and not isinstance(value, dict):
                raise ValueError(f"{path}: '{where}{key}' must be a section {{...}}, not {value!r}")
            if not is_section and not same_type(value, default):
                raise ValueError(f"{path}: {SettingError(where + key, value, KINDS[type(default)])}")
            merged[key] = merge(defaults[key], value, f"{where}{key}.") if is_section else value
        return merged
    path = Path(path)
    try:
        given = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(given, dict):
        raise ValueError(f"{path}: a preset is a JSON object {{...}}, not {type(given).__name__}")
    base = DEFAULTS
    if "extends" in given:
        if not isinstance(given["extends"], str):
            raise ValueError(f"{path}: {SettingError('extends', given['extends'], 'the file name of another preset')}")
        parent = path.parent / given.pop("extends")
        if parent.resolve() in extended_by + (path.resolve(),):
            raise ValueError(f"{path}: 'extends' makes a cycle through {parent}")
        base = load_config(parent, extended_by + (path.resolve(),))
    return merge(base, given, "")


def flat(config, where=""):
    """{"sft.lr": 3e-4, ...}: every setting's dotted key and its value."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and key not in VALUES:
            out.update(flat(value, f"{where}{key}."))
        else:
            out[where + key] = value
    return out


DEFAULTS_AT = flat(DEFAULTS)  # "sft.lr" -> 3e-4: what a key's value must look like, whatever a parent preset set


def same_type(value, default) -> bool:
    """JSON's types, as the default's: an int is a fine float, a bool is not a number. A setting whose
    default is None (model.checkpoint, model.init, data.seed) takes null or anything else; others never
    take null (check_config checks what those take)."""
    if default is None:
        return True
    if value is None:
        return False
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def run_settings(config: dict) -> dict:
    """What decides a resolved config's run, as {"sft.lr": ...}: a saved run resumes only if these are
    equal. Not "about" (words). A setting that a run saved by an older version lacks takes its default,
    which is what that version did; data.seed null means the run's seed, so it counts as that number."""
    settings = {**DEFAULTS_AT, **flat(config)}
    settings.pop("about")
    if settings["data.seed"] is None:
        settings["data.seed"] = settings["seed"]
    return settings


def check_config(config: dict, path):
    """Every value's range, before anything is written: a bad one is a ValueError naming path and key."""
    def refuse(key, value, allowed):
        raise ValueError(f"{path}: {SettingError(key, value, allowed)}")
    # the optimizer's and sampler's settings: their dataclasses know their ranges
    for section, cls in [("sft", TrainConfig), ("dpo", DPOConfig), ("pairs", SamplingConfig),
                         ("pseudo", SamplingConfig), ("eval", SamplingConfig), ("distributed", DistributedConfig)]:
        try:
            cls(**{f.name: config[section][f.name] for f in fields(cls) if f.name in config[section]})
        except SettingError as e:
            refuse(f"{section}.{e.name}", e.value, e.allowed)
    if config["iterations"] < 1:
        refuse("iterations", config["iterations"], "a whole number >= 1")
    try:
        check_device("device", config["device"])
    except SettingError as e:
        refuse(e.name, e.value, e.allowed)
    if config["dtype"] not in DTYPES:
        refuse("dtype", config["dtype"], " or ".join(DTYPES))
    for section in ("pairs", "pseudo"):
        if config[section]["questions"] not in QUESTION_SETS:
            refuse(f"{section}.questions", config[section]["questions"], " or ".join(QUESTION_SETS))
    if config["pairs"]["pairs_per_question"] < 1:
        refuse("pairs.pairs_per_question", config["pairs"]["pairs_per_question"], "a whole number >= 1")
    data = config["data"]
    if data["source"] not in SOURCES:
        refuse("data.source", data["source"], " or ".join(SOURCES))
    for split, size in data["sizes"].items():
        if split not in SOURCES[data["source"]]:
            refuse("data.sizes", split, f"a split of source {data['source']!r}: "
                                        f"{', '.join(SOURCES[data['source']]) or 'none (its sizes are fixed)'}")
        smallest = 0 if split == "unlabeled" else 1  # every other split is trained or evaluated on
        if not isinstance(size, int) or isinstance(size, bool) or size < smallest:
            refuse(f"data.sizes.{split}", size, f"a whole number >= {smallest}")
    uses_unlabeled = [s for s in ("pairs", "pseudo") if config[s]["questions"] in ("unlabeled", "both")]
    default_sizes = SOURCE_SIZES.get(data["source"], {})
    if uses_unlabeled and data["sizes"].get("unlabeled", default_sizes.get("unlabeled", 1)) < 1:
        refuse("data.sizes.unlabeled", data["sizes"].get("unlabeled", default_sizes.get("unlabeled")),
               f"a whole number >= 1, as {uses_unlabeled[0]}.questions samples the unlabeled questions")
    if data["seed"] is not None and (not isinstance(data["seed"], int) or isinstance(data["seed"], bool)):
        refuse("data.seed", data["seed"], "a whole number, or null for the run's seed")
    for name in data["ood"]:
        if name not in OOD_SETS:
            refuse("data.ood", name, " or ".join(OOD_SETS))
    model = config["model"]
    checkpoint = model["checkpoint"]
    if checkpoint is not None and not (isinstance(checkpoint, str) and (Path(checkpoint) / "config.json").is_file()):
        refuse("model.checkpoint", checkpoint, "a checkpoint folder (with config.json)")
    if model["init"] is not None and not isinstance(model["init"], dict):
        refuse("model.init", model["init"], "an HF config {...} with a model_type")
    if isinstance(model["init"], dict) and not model["checkpoint"]:  # the model it describes must be buildable
        shape = config_from_dict({**model["init"], "vocab_size": 32}, f"{path}: model.init")
        heads = shape.num_heads if shape.is_encoder_decoder else shape.num_attention_heads
        kv_heads = heads if shape.is_encoder_decoder else shape.num_key_value_heads
        if heads % kv_heads or (not shape.is_encoder_decoder and "head_dim" not in model["init"]
                                and shape.hidden_size % heads):
            refuse("model.init", {k: model["init"][k] for k in model["init"] if "head" in k or "size" in k},
                   "attention heads that divide hidden_size, and key/value heads that divide the heads")
    if model["tokenizer_vocab_size"] < 32:
        refuse("model.tokenizer_vocab_size", model["tokenizer_vocab_size"], "a whole number >= 32")
    if model["copy_pretrain_steps"] < 0:
        refuse("model.copy_pretrain_steps", model["copy_pretrain_steps"], "a whole number >= 0")


def base_model_type(config: dict) -> str:
    """The model_type of the run's base model: from its checkpoint's config.json, or from model.init."""
    c = config["model"]
    if c["checkpoint"]:
        return load_model_config(c["checkpoint"]).model_type
    if not isinstance(c["init"], dict) or "model_type" not in c["init"]:
        raise ValueError("model: set 'checkpoint' (a checkpoint folder) or 'init' (an HF config with a model_type)")
    return c["init"]["model_type"]
