"""loop.py end to end on a minimal config: both methods, both families, resume after SIGKILL, bad config."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SMOKE = json.loads((ROOT / "configs" / "smoke.json").read_text())
T5_INIT = {"model_type": "t5", "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 2,
           "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "dropout_rate": 0.0}


def config_file(tmp_path, family="llama", **overrides):  # overrides replace whole sections
    config = json.loads(json.dumps(SMOKE))
    if family == "t5":
        config["model"]["init"] = T5_INIT
    config.update(overrides)
    path = tmp_path / f"config-{family}.json"
    path.write_text(json.dumps(config))
    return path


def loop(config, out, method="dpo-st", args=(), **popen):
    command = [sys.executable, str(ROOT / "loop.py"), "--config", str(config), "--method", method, "--out", str(out),
               *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(process):
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


@pytest.mark.parametrize("family", ["llama", "t5"])
@pytest.mark.parametrize("method", ["dpo-st", "st"])
def test_smoke_run_writes_every_stage_and_the_report(tmp_path, family, method):
    out = tmp_path / "run"
    stdout = finish(loop(config_file(tmp_path, family), out, method))
    stages = ["data", "base", "sft-0", "pseudo-1", "sft-1", "control"]
    stages += ["samples-1", "pairs-1", "dpo-1"] if method == "dpo-st" else []
    assert all((out / s / "DONE").is_file() for s in stages)
    assert not (out / "dpo-1").exists() if method == "st" else (out / "dpo-1" / "checkpoint").is_dir()
    everything = json.loads((out / "metrics.json").read_text())
    metrics = everything["accuracy"]
    evaluated = ["sft-0", "sft-1", "control"] + (["dpo-1"] if method == "dpo-st" else [])
    assert sorted(metrics) == sorted(evaluated)
    assert set(metrics["sft-0"]) == {"dev", "test", "ood-long", "ood-distractors"}
    assert set(metrics.get("dpo-1", {"dev": 0})) == {"dev"}  # the DPO step is judged on dev alone
    # The preconditions and the iteration's counts, from the run's own files.
    pre, counts = everything["preconditions"], everything["iterations"]["1"]
    assert pre["saturation"]["control_minus_sft_dev"] == pytest.approx(metrics["control"]["dev"] - metrics["sft-0"]["dev"], abs=0.01)
    assert pre["sft_pass_at_n"]["n"] == SMOKE["pairs" if method == "dpo-st" else "pseudo"]["num_samples"]
    assert ("fig6" in pre) == (method == "dpo-st") and "paths" in pre
    assert counts["sft_accuracy"] == metrics["sft-1"] and counts.get("dpo_accuracy") == metrics.get("dpo-1")
    assert set(counts["seconds"]) == {"pseudo", "sft"} | ({"samples", "pairs", "dpo"} if method == "dpo-st" else set())
    assert counts["seconds"]["sft"] == float((out / "sft-1" / "DONE").read_text())
    report = (out / "report.md").read_text()
    assert "| SFT |" in report and "step-matched control" in report
    sft_seconds = sum(float((out / s / "DONE").read_text()) for s in ["sft-0", "sft-1", "control"])
    assert f"sft {sft_seconds / 60:.1f} min (" in report  # the stage times, added up by kind
    # How it ran: one machine line (this one, its threads), and every finished stage's record of it.
    assert all((out / s / "how_it_ran.json").is_file() for s in stages)
    machine = everything["how_it_ran"]["machines"]
    assert len(machine) == 1 and f"{torch.get_num_threads()} torch thread" in machine[0] and f"How it ran: {machine[0]}." in report
    assert (out / "accuracy.svg").read_text().startswith("<svg")
    # The control trains for exactly as many optimizer steps as the last self-training SFT.
    assert (out / "control" / "steps").read_text() == (out / "sft-1" / "steps").read_text()
    # The progress lines count what the files hold.
    lines = lambda path: path.read_text().splitlines()  # noqa: E731
    samples = [json.loads(line) for line in lines(out / "pseudo-1" / "samples.jsonl")]
    pass_at_1 = 100 * sum(s["correct"] for s in samples) / len(samples)
    n_pseudo = len(lines(out / "pseudo-1" / "pseudo.jsonl"))
    assert f"pass@1 {pass_at_1:.1f}% on the labeled questions; {n_pseudo} pseudo-labels pooled" in stdout
    assert counts["pseudo_labels"] == n_pseudo and counts["pseudo_sampler_pass_at_1"] == pytest.approx(pass_at_1)
    # Pseudo-labels of labeled questions hold their gold rationale: at least one per labeled question.
    assert n_pseudo >= len(lines(out / "data" / "labeled.jsonl"))
    if method == "dpo-st":
        pairs = [json.loads(line) for line in lines(out / "pairs-1" / "pairs.jsonl")]
        n_labeled = len(lines(out / "data" / "labeled.jsonl"))
        assert f"   {len(pairs)} pairs from {len({p['id'] for p in pairs})} of {n_labeled} questions" in stdout


def kill_when(process, ready, timeout=120):
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None and time.time() < deadline, "the run ended before the kill point"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def without_seconds(metrics):
    """metrics.json without the stage times, peak memory and load beside it, which differ between any two runs."""
    assert metrics["seconds"] and all(row["seconds"] for row in metrics["iterations"].values())
    assert 0.05 < metrics["peak_memory_gb"] < 4  # a tiny run's process, in GB (not KB or bytes)
    beside = metrics["how_it_ran"]["cores_busy_beside_mean"]
    assert beside is None or 0 <= beside <= os.cpu_count()
    return {**{k: v for k, v in metrics.items() if k not in ("seconds", "peak_memory_gb", "how_it_ran")},
            "iterations": {k: {key: value for key, value in row.items() if key != "seconds"}
                           for k, row in metrics["iterations"].items()}}


def test_killed_runs_resume_to_the_same_metrics(tmp_path):
    config = config_file(tmp_path)
    finish(loop(config, tmp_path / "unbroken"))
    expected = without_seconds(json.loads((tmp_path / "unbroken" / "metrics.json").read_text()))
    # Killed as soon as a stage has finished (a boundary), and while a stage is half done.
    boundary, middle = tmp_path / "boundary", tmp_path / "middle"
    kill_when(loop(config, boundary), lambda: (boundary / "sft-0" / "DONE").is_file())
    kill_when(loop(config, middle), lambda: (middle / "dpo-1").is_dir() and not (middle / "dpo-1" / "DONE").exists())
    assert not (middle / "dpo-1" / "DONE").exists()
    for out in (boundary, middle):
        finish(loop(config, out))
        assert without_seconds(json.loads((out / "metrics.json").read_text())) == expected
        pairs = (out / "pairs-1" / "pairs.jsonl").read_text()
        assert pairs == (tmp_path / "unbroken" / "pairs-1" / "pairs.jsonl").read_text()


def test_unknown_config_key_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"sft": {"learning_rate": 1e-3}}))
    result = subprocess.run([sys.executable, str(ROOT / "loop.py"), "--config", str(path), "--out",
                             str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"loop.py: error: {path}: unknown key 'sft.learning_rate'")


def test_pairs_can_come_from_the_unlabeled_questions_too(tmp_path):
    config = config_file(tmp_path, pairs={**SMOKE["pairs"], "questions": "both"})
    out = tmp_path / "run"
    finish(loop(config, out))
    sampled = {json.loads(line)["id"].rsplit("-", 1)[0] for line in (out / "samples-1" / "samples.jsonl").open()}
    assert sampled == {"synthetic-train", "synthetic-unlabeled"}
    # The smoke model never answers correctly, and an unlabeled question has no gold rationale to be
    # the positive: so every pair comes from a labeled question, with its gold rationale as chosen.
    pairs = [json.loads(line) for line in (out / "pairs-1" / "pairs.jsonl").open()]
    labeled = {r["question"]: r for r in map(json.loads, (out / "data" / "labeled.jsonl").open())}
    assert pairs and all(p["prompt"] in labeled and p["chosen"] == labeled[p["prompt"]]["answer"] for p in pairs)


def test_copy_pretraining_trains_the_base_before_sft(tmp_path):
    sys.path.insert(0, str(ROOT))
    from loop import Run, load_config
    from model import init_from_config, load_pretrained

    config = config_file(tmp_path, model={**SMOKE["model"], "copy_pretrain_steps": 3})
    out = tmp_path / "run"
    finish(loop(config, out, method="st"))
    log = [json.loads(line) for line in (out / "base" / "copy_log.jsonl").open()]
    assert [row["step"] for row in log] == [1, 2, 3]
    # The saved base is the pretrained model, not the random init it started from.
    base, tok = load_pretrained(out / "base" / "checkpoint")
    init = init_from_config({**SMOKE["model"]["init"], "vocab_size": tok.vocab_size},
                            seed=Run(out, load_config(config), "st", []).seed("base"))
    differs = [not torch.equal(p, q) for p, q in zip(base.state_dict().values(), init.state_dict().values())]
    assert len(differs) == len(init.state_dict()) and all(differs)


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "configs").glob("*.json")))
def test_every_preset_loads_without_unknown_keys(preset):
    sys.path.insert(0, str(ROOT))
    from loop import load_config

    config = load_config(ROOT / "configs" / preset)  # raises on an unknown key
    assert config["iterations"] >= 1 and config["sft"]["lr"] > 0


def finished(folder, name, seconds, steps=None):
    """A stage as loop.py leaves it: DONE holds its duration; an SFT stage's `steps` file its step count."""
    (folder / name).mkdir(parents=True)
    (folder / name / "DONE").write_text(f"{seconds}\n")
    if steps is not None:
        (folder / name / "steps").write_text(f"{steps}\n")


def test_time_left_ignores_the_one_off_stages_and_is_a_lower_bound_until_each_kind_has_run(tmp_path):
    sys.path.insert(0, str(ROOT))
    from loop import Run, load_config

    plan = ["data", "base", "sft-0", "samples-1", "pairs-1", "dpo-1", "sft-1", "control"]
    run = Run(tmp_path, load_config(ROOT / "configs" / "smoke.json"), "dpo-st", plan)

    finished(tmp_path, "data", 1.0)
    finished(tmp_path, "base", 600.0)  # a long copy pretraining must not inflate the guess for every later stage
    assert run.minutes_left(plan[2:]) == (None, False)
    finished(tmp_path, "sft-0", 120.0)
    finished(tmp_path, "samples-1", 60.0)
    # sft-1 and control take as long as sft-0; pairs-1 and dpo-1 (unseen) count nothing: a lower bound.
    assert run.minutes_left(plan[4:]) == (pytest.approx((120 + 120) / 60), False)
    finished(tmp_path, "pairs-1", 3.0)
    finished(tmp_path, "dpo-1", 30.0)
    assert run.minutes_left(plan[6:]) == (pytest.approx(4.0), True)
    assert run.minutes_left([]) == (0.0, True)


def test_time_left_counts_nothing_for_the_stages_reuse_will_copy(tmp_path):
    sys.path.insert(0, str(ROOT))
    from loop import Run, load_config

    source = tmp_path / "dpo-st"
    for name, seconds in [("data", 1.0), ("base", 1.0), ("sft-0", 300.0), ("control", 300.0)]:
        finished(source, name, seconds, steps=600)
    plan = ["data", "base", "sft-0", "pseudo-1", "sft-1", "control"]
    config = load_config(ROOT / "configs" / "tiny-llama-200-pool.json")  # every SFT 600 steps
    assert config["sft"]["steps"] == 600
    out = tmp_path / "st"
    run = Run(out, config, "st", plan, reuse=source)
    finished(out, "sft-0", 300.0)  # as take_reused leaves it: its own run's duration
    (out / "sft-0" / "REUSED").write_text(f"{source}\n")
    finished(out, "pseudo-1", 60.0)
    # sft-1 runs (as long as sft-0 took); the control will be copied from the DPO-ST run.
    assert run.minutes_left(plan[4:]) == (pytest.approx(300 / 60), True)
    # Where SFT runs by epochs, the control's steps are known only after sft-1: it counts.
    epochs = Run(out, {**config, "sft": {**config["sft"], "steps": 0}}, "st", plan, reuse=source)
    assert epochs.minutes_left(plan[4:]) == (pytest.approx(600 / 60), True)


def test_a_preset_that_extends_another_holds_only_its_changes(tmp_path):
    sys.path.insert(0, str(ROOT))
    from loop import load_config

    default, full = load_config(ROOT / "configs" / "scratch-llama.json"), load_config(ROOT / "configs" / "tiny-full.json")
    changed = {(section, key) for section in default if isinstance(default[section], dict)
               for key in default[section] if default[section][key] != full[section][key]}
    assert changed == {("model", "copy_pretrain_steps"), ("pairs", "verify_calculations"),
                       ("pseudo", "verify_calculations")}
    assert full["model"]["init"] == default["model"]["init"]  # sections merge key by key
    t5 = load_config(ROOT / "configs" / "tiny-t5.json")
    assert t5["model"]["init"]["model_type"] == "t5" and t5["sft"] == default["sft"]  # init is replaced whole
    (tmp_path / "a.json").write_text(json.dumps({"extends": "b.json"}))
    (tmp_path / "b.json").write_text(json.dumps({"extends": "a.json"}))
    with pytest.raises(ValueError, match="'extends' makes a cycle"):
        load_config(tmp_path / "a.json")
    (tmp_path / "c.json").write_text(json.dumps({"extends": "tiny-llama.json", "sft": {"lr": 1e-3}}))
    with pytest.raises(FileNotFoundError, match="tiny-llama.json"):  # extends is relative to the preset's folder
        load_config(tmp_path / "c.json")


def test_a_run_resumes_only_with_the_same_settings(tmp_path):
    out = tmp_path / "run"
    finish(loop(config_file(tmp_path), out, method="st"))
    # Words about the preset are not settings: the finished run is found finished.
    stdout = finish(loop(config_file(tmp_path, about="the same run, described anew"), out, method="st"))
    assert "done in" not in stdout
    # A run saved before a setting existed (here data.seed) resumes: the setting's default is what it did;
    # and data.seed set to the run's own seed is the same data as null.
    saved = json.loads((out / "config.json").read_text())
    del saved["data"]["seed"]
    (out / "config.json").write_text(json.dumps(saved))
    stdout = finish(loop(config_file(tmp_path, data={**SMOKE["data"], "seed": SMOKE["seed"]}), out, method="st"))
    assert "done in" not in stdout
    changed = loop(config_file(tmp_path, data={**SMOKE["data"], "seed": SMOKE["seed"] + 1}), out, method="st")
    _, stderr = changed.communicate(timeout=120)
    assert changed.returncode != 0 and "holds a run with another config or method" in stderr
    changed = loop(config_file(tmp_path, sft={**SMOKE["sft"], "lr": 1e-3}), out, method="st")
    _, stderr = changed.communicate(timeout=120)
    assert changed.returncode != 0 and "holds a run with another config or method" in stderr


def test_a_fixed_data_seed_keeps_one_world_for_every_run_seed(tmp_path):
    sys.path.insert(0, str(ROOT))
    from loop import Run, load_config, prepare_data

    def world(run_seed, data_seed):
        config = load_config(ROOT / "configs" / "smoke.json")
        config["seed"], config["data"]["seed"] = run_seed, data_seed
        folder = tmp_path / f"data-{run_seed}-{data_seed}"
        folder.mkdir()
        prepare_data(Run(tmp_path, config, "st", []), folder)
        return {path.name: path.read_text() for path in folder.glob("*.jsonl")}

    assert world(1, 0) == world(2, 0) == world(0, None)  # data.seed 0 is the world run seed 0 draws
    assert world(1, None)["labeled.jsonl"] != world(2, None)["labeled.jsonl"]


def test_sft_order_retrains_a_stage_and_its_own_seed_gives_its_dev_accuracy_again(tmp_path):
    out = tmp_path / "run"
    finish(loop(config_file(tmp_path), out, method="st"))
    script = [sys.executable, str(ROOT / "scripts" / "sft_order.py"), str(out), "sft-1"]
    run = lambda *flags: subprocess.run(script + list(flags), cwd=ROOT, capture_output=True, text=True, timeout=300)  # noqa: E731
    same = run("--out", str(tmp_path / "same"))
    assert same.returncode == 0, same.stderr[-2000:]
    result = json.loads(same.stdout.strip().splitlines()[-1])
    assert result["dev"] == json.loads((out / "sft-1" / "eval.json").read_text())["dev"] == result["run_dev"]
    assert (tmp_path / "same" / "train_log.jsonl").read_text() == (out / "sft-1" / "train_log.jsonl").read_text()
    other = run("--seed", "12345", "--out", str(tmp_path / "other"))
    assert other.returncode == 0, other.stderr[-2000:]
    assert (tmp_path / "other" / "train_log.jsonl").read_text() != (out / "sft-1" / "train_log.jsonl").read_text()
    bad = run("--out", str(tmp_path / "other"))  # exists
    assert bad.returncode != 0 and "--out" in bad.stderr and "exists" in bad.stderr
    bad = run("--lr", "-1", "--out", str(tmp_path / "third"))
    assert bad.returncode != 0 and "lr: -1.0 is not allowed" in bad.stderr and not (tmp_path / "third").exists()


def test_st_copies_the_stages_that_do_not_depend_on_the_method_from_a_dpo_st_run(tmp_path):
    config = config_file(tmp_path)
    dpo_st, reusing, alone = tmp_path / "dpo-st", tmp_path / "st-reusing", tmp_path / "st-alone"
    finish(loop(config, dpo_st))
    stdout = finish(loop(config, reusing, method="st", args=["--reuse", str(dpo_st)]))
    finish(loop(config, alone, method="st"))
    for stage in ("data", "base", "sft-0", "control"):  # the smoke model answers nothing: equal steps, so the control too
        assert f"] {stage} copied from {dpo_st / stage}" in stdout and f"] {stage} done in" not in stdout
        assert (reusing / stage / "REUSED").read_text().strip() == str((dpo_st / stage).resolve())
    assert "] pseudo-1 done in" in stdout and "] sft-1 done in" in stdout
    # The time left counts the copied SFT's own duration: an estimate, not "at least" (no SFT seen).
    assert "about" in next(line for line in stdout.splitlines() if "] pseudo-1 done in" in line)
    # Copying changes no number: ST run alone trains the very same sft-0 (stages are seeded by their names).
    weights = "sft-0/checkpoint/model.safetensors"
    assert (reusing / weights).read_bytes() == (alone / weights).read_bytes()
    metrics = lambda out: json.loads((out / "metrics.json").read_text())  # noqa: E731
    assert without_seconds(metrics(reusing)) == without_seconds(metrics(alone))
    # The copies take no time of this run, and the report says where they came from.
    assert metrics(reusing)["seconds"] == {"data": 0.0, "base": 0.0, "sft-0": 0.0, "control": 0.0}
    assert f"Copied from {dpo_st.resolve()} (loop.py --reuse; not counted above): base, control, data, sft-0." in (
        reusing / "report.md").read_text()
    # A control of another number of steps is trained again, not copied.
    (dpo_st / "control" / "steps").write_text("999\n")
    again = tmp_path / "st-again"
    stdout = finish(loop(config, again, method="st", args=["--reuse", str(dpo_st)]))
    assert "] control done in" in stdout and not (again / "control" / "REUSED").exists()
    # --reuse of something that is not a run of this config and seed: one line, before any work.
    new = tmp_path / "st-new"
    for out, target, extra, problem in [(new, tmp_path / "nothing", [], "is not a run folder (it has no config.json)"),
                                        (new, dpo_st, ["--seed", "7"], "is a run of another config or seed"),
                                        (reusing, reusing, [], "is this run's own folder")]:
        bad = loop(config, out, method="st", args=["--reuse", str(target), *extra])
        _, stderr = bad.communicate(timeout=120)
        lines = stderr.strip().splitlines()
        assert bad.returncode != 0 and lines[-1].startswith(f"loop.py: error: argument --reuse: {target} {problem}")
    assert not new.exists()
