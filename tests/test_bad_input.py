"""Bad input is refused before any work starts, on one line that names the flag or key, the value and
what is allowed, and leaves nothing behind (issue 15). Each case is a value a user could type."""
import contextlib
import io
import json
import os
import runpy
import sys
from pathlib import Path
from unittest import mock

import pytest

from preset import check_config, load_config

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "bases" / "tiny-llama"
QUESTION = {"question": "Ann has 3 pens and buys 4 more. How many pens does she have?",
            "answer": "3+4=<<3+4=7>>7\n#### 7"}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "good.jsonl").write_text(json.dumps(QUESTION) + "\n")
    (tmp_path / "empty.jsonl").write_text("")
    pair = {"prompt": QUESTION["question"], "chosen": QUESTION["answer"], "rejected": "3*4=<<3*4=12>>12\n#### 12"}
    (tmp_path / "pairs.jsonl").write_text(json.dumps(pair) + "\n")
    (tmp_path / "same.jsonl").write_text(json.dumps(pair) + "\n" + json.dumps({**pair, "rejected": pair["chosen"]}) + "\n")
    (tmp_path / "no-rejected.jsonl").write_text(json.dumps({"prompt": "q", "chosen": "a"}) + "\n")
    (tmp_path / "a-file").write_text("not a folder\n")
    (tmp_path / "a-folder").mkdir()
    return tmp_path


@contextlib.contextmanager
def in_folder(folder):  # contextlib.chdir is Python 3.11+
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def refused(files, command, *args, names=()):
    """Run `command` with `args` ({d} is the test's folder) as `python command args` would, in this
    process (fast: torch is imported once); it must fail on one line naming `names` and write nothing."""
    args = [str(a).format(d=files) for a in args]
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exit, contextlib.redirect_stderr(stderr), \
            mock.patch.object(sys, "argv", [command, *args]), in_folder(ROOT):
        runpy.run_path(str(ROOT / command), run_name="__main__")
    # Our commands end with SystemExit("command: error: ..."), argparse's with a message on stderr.
    message = exit.value.code if isinstance(exit.value.code, str) else stderr.getvalue()
    lines = message.strip().splitlines()
    assert exit.value.code not in (0, None), message
    assert len(lines) == 1, message[-3000:]
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert not (files / "OUT").exists() and not (files / "OUT.jsonl").exists()
    assert not list(files.glob("OUT*")) and not list(files.glob(".tmp-*"))
    return lines[0]


SFT = ["--model", BASE, "--data", "{d}/good.jsonl", "--out", "{d}/OUT"]
SFT_CASES = [  # (flags, what the error line must name)
    (["--lr", "-1"], ["--lr", "-1.0", "> 0"]),
    (["--lr", "nan"], ["--lr", "nan"]),
    (["--lr", "inf"], ["--lr", "inf"]),
    (["--lr", "abc"], ["--lr", "abc"]),
    (["--steps", "-3"], ["--steps", "-3", ">= 0"]),
    (["--epochs", "0"], ["--epochs", "0"]),
    (["--batch-size", "0"], ["--batch-size", ">= 1"]),
    (["--micro-batch-size", "0"], ["--micro-batch-size"]),
    (["--warmup-ratio", "1.5"], ["--warmup-ratio", "< 1"]),
    (["--weight-decay", "-0.1"], ["--weight-decay"]),
    (["--min-lr-ratio", "2"], ["--min-lr-ratio", "<= 1"]),
    (["--max-grad-norm", "0"], ["--max-grad-norm"]),
    (["--device", "cuda"], ["--device", "cuda", "cpu"]),
    (["--device", "gpu"], ["--device", "gpu"]),
    (["--strategy", "zero3"], ["--strategy", "zero3"]),
]


@pytest.mark.parametrize("flags, names", SFT_CASES, ids=[" ".join(c[0]) for c in SFT_CASES])
def test_train_sft_refuses_a_bad_flag(files, flags, names):
    refused(files, "train_sft.py", *SFT, *flags, names=names)


@pytest.mark.parametrize("data, names", [("missing.jsonl", ["--data", "does not exist"]),
                                         ("empty.jsonl", ["empty.jsonl", "no examples"])])
def test_train_sft_refuses_missing_or_empty_data(files, data, names):
    refused(files, "train_sft.py", "--model", BASE, "--data", f"{{d}}/{data}", "--out", "{d}/OUT", names=names)


def test_train_sft_refuses_an_out_that_is_a_file(files):
    refused(files, "train_sft.py", "--model", BASE, "--data", "{d}/good.jsonl", "--out", "{d}/a-file",
            names=["--out", "a-file", "is a file"])


DPO = ["--model", BASE, "--pairs", "{d}/pairs.jsonl", "--out", "{d}/OUT"]
DPO_CASES = [
    (["--beta", "-1"], ["--beta", "-1.0", "> 0"]),  # would train toward the rejected answers
    (["--beta", "0"], ["--beta"]),
    (["--label-smoothing", "0.5"], ["--label-smoothing", "< 0.5"]),
    (["--loss-type", "hinge"], ["--loss-type", "hinge"]),
    (["--lr", "0"], ["--lr"]),
    (["--nll-alpha", "-1"], ["--nll-alpha"]),
    (["--steps", "-1"], ["--steps"]),
]


@pytest.mark.parametrize("flags, names", DPO_CASES, ids=[" ".join(c[0]) for c in DPO_CASES])
def test_dpo_refuses_a_bad_flag(files, flags, names):
    refused(files, "dpo.py", *DPO, *flags, names=names)


@pytest.mark.parametrize("pairs, names", [("same.jsonl", ["same.jsonl line 2", "same answer"]),
                                          ("empty.jsonl", ["empty.jsonl", "no preference pairs"]),
                                          ("no-rejected.jsonl", ["line 1", "rejected"]),
                                          ("missing.jsonl", ["--pairs", "does not exist"])])
def test_dpo_refuses_bad_pairs(files, pairs, names):
    refused(files, "dpo.py", "--model", BASE, "--pairs", f"{{d}}/{pairs}", "--out", "{d}/OUT", names=names)


def test_dpo_lr_defaults_to_the_papers_not_sfts():
    from dpo import DPOConfig
    from trainer import TrainConfig
    assert DPOConfig().lr == 3e-7 and DPOConfig().steps == 100 and TrainConfig().lr == 3e-4


SAMPLE = ["--model", BASE, "--data", "{d}/good.jsonl", "--out", "{d}/OUT.jsonl"]
SAMPLE_CASES = [
    (["--temperature", "-1"], ["--temperature", "-1.0", ">= 0"]),  # would sample the least likely tokens
    (["--temperature", "nan"], ["--temperature", "nan"]),
    (["--top-p", "0"], ["--top-p", "> 0"]),
    (["--top-p", "1.5"], ["--top-p", "<= 1"]),
    (["--top-k", "-1"], ["--top-k", ">= 0"]),
    (["--num-samples", "0"], ["--num-samples", ">= 1"]),
    (["--num-samples", "3"], ["--num-samples", "temperature is 0"]),
    (["--limit", "-1"], ["--limit", "-1"]),  # would drop the last question
    (["--limit", "0"], ["--limit"]),
    (["--dtype", "float8"], ["--dtype", "float8"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--device", "cuda"], ["--device", "cuda"]),
]


@pytest.mark.parametrize("flags, names", SAMPLE_CASES, ids=[" ".join(c[0]) for c in SAMPLE_CASES])
def test_sample_refuses_a_bad_flag(files, flags, names):
    refused(files, "sample.py", *SAMPLE, *flags, names=names)


def test_sample_never_overwrites_its_input(files):
    before = (files / "good.jsonl").read_text()
    refused(files, "sample.py", "--model", BASE, "--data", "{d}/good.jsonl", "--out", "{d}/good.jsonl",
            names=["--out", "other than the input"])
    assert (files / "good.jsonl").read_text() == before


@pytest.mark.parametrize("args, names", [(["--data", "{d}/empty.jsonl", "--out", "{d}/OUT.jsonl"], ["no questions"]),
                                         (["--data", "{d}/good.jsonl", "--out", "{d}/a-folder"], ["--out", "folder"])])
def test_sample_refuses_empty_data_and_a_folder_as_out(files, args, names):
    refused(files, "sample.py", "--model", BASE, *args, names=names)


def test_loop_refuses_bad_flags_before_writing(files):
    refused(files, "loop.py", "--config", "configs/smoke.json", "--iterations", "0", "--out", "{d}/OUT",
            names=["iterations", "0", ">= 1"])
    refused(files, "loop.py", "--config", "configs/smoke.json", "--out", "{d}/a-file", names=["--out", "a file"])


def test_pretrain_refuses_an_out_that_is_not_a_base_before_training(files):
    refused(files, "pretrain.py", "--init", "configs/scratch-llama.json", "--out", "{d}/a-file",
            names=["--out", "a-file", "not a checkpoint folder"])
    assert (files / "a-file").read_text() == "not a folder\n"


def test_loop_refuses_a_bad_config_before_any_stage(files):
    (files / "bad.json").write_text(json.dumps({"extends": str(ROOT / "configs" / "smoke.json"), "sft": {"lr": "3e-3"}}))
    refused(files, "loop.py", "--config", "{d}/bad.json", "--out", "{d}/OUT", names=["bad.json", "sft.lr", "'3e-3'"])


CONFIG_CASES = [  # (what the preset says, what the error line must name)
    ({"sft": {"lr": "3e-3"}}, ["sft.lr", "'3e-3'", "a number"]),
    ({"sft": 5}, ["'sft'", "section"]),
    ({"sft": {"lr": -1}}, ["sft.lr", "> 0"]),
    ({"sft": {"epochs": 0}}, ["sft.epochs"]),
    ({"sft": {"batch_size": 2.5}}, ["sft.batch_size", "whole number"]),
    ({"dpo": {"beta": -1}}, ["dpo.beta", "> 0"]),
    ({"dpo": {"label_smoothing": 0.7}}, ["dpo.label_smoothing", "< 0.5"]),
    ({"dpo": {"loss_type": "hinge"}}, ["dpo.loss_type", "sigmoid or ipo"]),
    ({"pairs": {"temperature": -1}}, ["pairs.temperature", ">= 0"]),
    ({"pairs": {"temperature": 0}}, ["pairs.num_samples", "temperature is 0"]),
    ({"pairs": {"pairs_per_question": 0}}, ["pairs.pairs_per_question"]),
    ({"pairs": {"questions": "some"}}, ["pairs.questions", "'some'", "labeled"]),
    ({"pseudo": {"top_p": 0}}, ["pseudo.top_p", "> 0"]),
    ({"pseudo": {"verify_calculations": "yes"}}, ["pseudo.verify_calculations", "true or false"]),
    ({"eval": {"max_new_tokens": 0}}, ["eval.max_new_tokens", ">= 1"]),
    ({"iterations": 0}, ["iterations", ">= 1"]),
    ({"distributed": {"strategy": "zero3"}}, ["distributed.strategy", "'zero3'", "ddp or fsdp"]),
    ({"distributed": {"activation_checkpointing": 1}}, ["distributed.activation_checkpointing", "true or false"]),
    ({"seed": "zero"}, ["seed", "whole number"]),
    ({"dtype": "float8"}, ["dtype", "float8", "bfloat16"]),
    ({"device": "cuda"}, ["device", "'cuda'", "cpu"]),
    ({"data": {"source": "gsm8"}}, ["data.source", "'gsm8'", "world"]),  # a typo once ran real GSM8K
    ({"data": {"sizes": {"labeled": 0}}}, ["data.sizes.labeled", ">= 1"]),
    ({"data": {"sizes": {"train": 10}}}, ["data.sizes", "'train'", "labeled"]),
    ({"data": {"ood": ["svamp2"]}}, ["data.ood", "svamp2"]),
    ({"data": {"seed": 1.5}}, ["data.seed", "1.5", "whole number"]),
    ({"model": {"checkpoint": "no/such/folder"}}, ["model.checkpoint", "no/such/folder"]),
    ({"model": {"tokenizer_vocab_size": 0}}, ["model.tokenizer_vocab_size"]),
    ({"model": {"checkpoint": 5}}, ["model.checkpoint", "5"]),
    ({"model": {"init": "llama"}}, ["model.init", "'llama'"]),
    ({"model": {"init": {"model_type": "llama", "hidden_size": 32}}}, ["model.init", "missing key"]),
    ({"model": {"init": {"model_type": "llama", "hidden_size": 30, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 4, "num_key_value_heads": 4}}}, ["model.init", "divide"]),
    ({"model": {"init": {"model_type": "gpt2"}}}, ["model.init", "gpt2"]),
    ({"nonsense": 1}, ["unknown key 'nonsense'"]),
    ({"iterations": None}, ["iterations", "None"]),
    ({"pairs": {"pairs_per_question": None}}, ["pairs.pairs_per_question", "None"]),
    ({"data": {"sizes": None}}, ["data.sizes", "None"]),
    ({"extends": 5}, ["extends", "5"]),
    ({"data": {"sizes": {"ood-long": 0}}}, ["data.sizes.ood-long", ">= 1"]),  # once a ZeroDivisionError after sft-0
    ({"data": {"sizes": {"unlabeled": 0}}, "pseudo": {"questions": "unlabeled"}}, ["data.sizes.unlabeled", "pseudo.questions"]),
    ({"data": {"source": "gsm8k", "sizes": {}, "ood": ["gsm8k-test"]}}, ["data.ood", "'gsm8k-test'", "svamp"]),
]


@pytest.mark.parametrize("preset, names", CONFIG_CASES, ids=[json.dumps(c[0]) for c in CONFIG_CASES])
def test_a_bad_config_value_is_one_line_naming_the_key(tmp_path, preset, names):
    path = tmp_path / "preset.json"
    path.write_text(json.dumps({"extends": str(ROOT / "configs" / "smoke.json"), **preset}))
    with pytest.raises(ValueError) as error:  # not a TypeError or KeyError: a ValueError is one clear line
        check_config(load_config(path), path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for name in names:
        assert name in message, (name, message)


@pytest.mark.parametrize("text, names", [("{not json", ["not valid JSON"]), ("[1, 2]", ["JSON object", "list"])])
def test_a_preset_that_is_not_a_json_object_is_one_line(tmp_path, text, names):
    path = tmp_path / "preset.json"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_config(path)
    assert all(name in str(error.value) for name in names), str(error.value)


def test_every_shipped_cpu_preset_passes_the_checks():
    for name in ["smoke", "tiny-llama", "scratch-llama", "tiny-full", "tiny-t5"]:
        path = ROOT / "configs" / f"{name}.json"
        check_config(load_config(path), path)  # raises if a shipped preset broke its own rules
