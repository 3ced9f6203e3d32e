"""Every command-line entry point answers --help, and its docstring's usage lines use only flags it has."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# (how it is run, the file whose docstring shows its usage, the name its usage lines call it by)
COMMANDS = [
    (["train_sft.py"], "train_sft.py", "train_sft.py"),
    (["dpo.py"], "dpo.py", "dpo.py"),
    (["sample.py"], "sample.py", "sample.py"),
    (["loop.py"], "loop.py", "loop.py"),
    (["scripts/bench_sample.py"], "scripts/bench_sample.py", "bench_sample.py"),
    (["scripts/bench.py"], "scripts/bench.py", "bench.py"),
    (["scripts/seed_table.py"], "scripts/seed_table.py", "seed_table.py"),
    (["scripts/template_table.py"], "scripts/template_table.py", "template_table.py"),
    (["scripts/load_memory.py"], "scripts/load_memory.py", "load_memory.py"),
    (["scripts/memory_table.py"], "scripts/memory_table.py", "memory_table.py"),
    (["tests/gpu_check.py"], "tests/gpu_check.py", "gpu_check.py"),
    (["scripts/sft_epochs.py"], "scripts/sft_epochs.py", "sft_epochs.py"),
    (["scripts/sft_order.py"], "scripts/sft_order.py", "sft_order.py"),
    (["-m", "data.synthetic"], "data/synthetic.py", "data.synthetic"),
    (["-m", "data.fetch"], "data/fetch.py", "data.fetch"),
    (["-m", "data.world"], "data/world.py", "data.world"),
    (["pretrain.py"], "pretrain.py", "pretrain.py"),
]


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command, source, name", COMMANDS, ids=[c[1] for c in COMMANDS])
def test_help_works_and_knows_every_flag_of_the_usage_lines(command, source, name):
    result = run(*command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr[-2000:]
    assert result.stderr == ""  # no warning, no traceback
    docstring = ast.get_docstring(ast.parse((ROOT / source).read_text()))
    usage = [line.split(name, 1)[1] for line in docstring.splitlines() if name in line]
    flags = {flag for line in usage for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line)}
    unknown = sorted(flag for flag in flags if not re.search(rf"{flag}\b", result.stdout))
    assert not unknown, f"{source}'s usage lines use flags its --help does not list: {unknown}"


def test_init_config_of_a_loop_preset_is_one_clear_error(tmp_path):
    """--init-config takes a model's config.json; a loop preset is not one (it crashed with KeyError)."""
    (tmp_path / "none.jsonl").write_text("")
    result = run("train_sft.py", "--init-config", "configs/tiny-llama.json", "--tokenizer", tmp_path,
                 "--data", tmp_path / "none.jsonl", "--out", tmp_path / "out")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("train_sft.py: error: configs/tiny-llama.json: unsupported model_type None")
    assert not (tmp_path / "out").exists()


def test_readme_names_only_make_targets_and_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`make ([a-z]+)", readme)) | set(re.findall(r"^make ([a-z]+)", readme, re.M))
    assert named and named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"
    links = re.findall(r"\]\(((?:docs|configs|data|scripts)/[^)#]+)\)", readme)
    paths = re.findall(r"`((?:configs|docs|scripts|bases)/[\w./-]+)`", readme)
    missing = [p for p in links + paths if not (ROOT / p).exists()]
    assert links and not missing, f"README points at files that do not exist: {missing}"


@pytest.mark.parametrize("script, settings", [("train_sft.py", "TrainConfig"), ("dpo.py", "DPOConfig"),
                                              ("sample.py", "SamplingConfig"), ("loop.py", None), ("pretrain.py", "TrainConfig")])
def test_every_flag_has_a_help_line_and_settings_show_default_and_range(script, settings):
    from dataclasses import fields

    from dpo import DPOConfig
    from sample import SamplingConfig
    from trainer import TrainConfig
    text = run(script, "--help").stdout
    options = text.split("options:", 1)[1]
    blocks = re.split(r"\n(?=  -)", options.strip("\n"))
    for block in blocks:
        flag_and_metavar = re.match(r"\s*(-[^\s,]+(?:,? -[^\s,]+)*(?: [A-Z_{},.a-z-]+)?)", block).group(1)
        assert len(block.replace(flag_and_metavar, "").split()) >= 2, f"{script}: no help line for {block!r}"
    if settings:
        cls = {"TrainConfig": TrainConfig, "DPOConfig": DPOConfig, "SamplingConfig": SamplingConfig}[settings]
        flat_text = " ".join(text.split())
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            assert re.search(rf"{flag}\b.*?\(default: [^;]+; allowed: ", flat_text), f"{script} {flag}"
