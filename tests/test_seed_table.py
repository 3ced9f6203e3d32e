"""scripts/seed_table.py: the README's tables must average the right numbers."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fake_run(folder: Path, method, seed, accuracies):
    """A finished 1-iteration run: {stage: test accuracy} written as the loop writes them."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"method": method, "seed": seed, "iterations": 1}))
    for stage, accuracy in accuracies.items():
        (folder / stage).mkdir()
        (folder / stage / "eval.json").write_text(json.dumps({"test": accuracy, "dev": 0.0}))
        (folder / stage / "DONE").write_text("1.0\n")
    (folder / "pseudo-1").mkdir()
    samples = [{"id": f"q{i}", "correct": i < 3} for i in range(8)]  # 3 of 8 right: pass@1 37.5%
    (folder / "pseudo-1" / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (folder / "pseudo-1" / "pseudo.jsonl").write_text('{"id": "q0"}\n{"id": "q1"}\n')  # a pool of 2


def test_seed_table_means_and_differences(tmp_path):
    fake_run(tmp_path / "a", "dpo-st", 0, {"sft-0": 10.0, "sft-1": 20.0, "control": 12.0})
    fake_run(tmp_path / "b", "dpo-st", 1, {"sft-0": 14.0, "sft-1": 16.0, "control": 12.0})
    fake_run(tmp_path / "c", "st", 0, {"sft-0": 10.0, "sft-1": 15.0, "control": 11.0})
    (tmp_path / "c" / "metrics.json").write_text(json.dumps(  # what loop.py wrote: 60 + 120 + 60 seconds
        {"seconds": {"sft-0": 60.0, "control": 60.0}, "iterations": {"1": {"seconds": {"pseudo": 30.0, "sft": 90.0}}},
         "peak_memory_gb": 1.234, "how_it_ran": {"machines": ["CPU X (AVX2), 2 cores, 1 torch thread"],
                                                  "cores_busy_beside_mean": 0.96, "cores_busy_beside_most": 1.04}}))
    out = subprocess.run([sys.executable, "scripts/seed_table.py", str(tmp_path / "a"), str(tmp_path / "b"),
                          str(tmp_path / "c"), "--split", "test"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "| DPO-ST seed 1 | 14.0 | 16.0 | 12.0 |" in out
    # mean and sample standard deviation of (10, 14), (20, 16), (12, 12)
    assert "| **DPO-ST mean ± sd (2 seeds)** | 12.0 ± 2.8 | 18.0 ± 2.8 | 12.0 ± 0.0 |" in out
    assert "per seed [0]: +5.0\n" in out  # only seed 0 ran both methods: its difference is the mean
    assert "**ST mean" not in out  # ST has one seed: its row is its mean
    assert "| ST seed 0 | 37.5 / 2 |" in out  # pass@1 of the pseudo-label samples / pooled labels
    assert "| ST seed 0 | 4.0 | 1.23 | CPU X (AVX2), 2 cores, 1 torch thread | 1.0, 1.0 |" in out  # how it ran


def test_seed_table_refuses_an_unfinished_run(tmp_path):
    fake_run(tmp_path / "a", "dpo-st", 0, {"sft-0": 10.0, "sft-1": 20.0})
    result = subprocess.run([sys.executable, "scripts/seed_table.py", str(tmp_path / "a")], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "not finished" in result.stderr


def test_seed_table_gives_a_95_percent_interval_for_the_paired_difference(tmp_path):
    for name, method, seed, last in [("a", "dpo-st", 0, 20.0), ("b", "dpo-st", 1, 16.0), ("c", "st", 0, 15.0),
                                     ("d", "st", 1, 15.0)]:
        fake_run(tmp_path / name, method, seed, {"sft-0": 10.0, "sft-1": last, "control": 11.0})
    out = subprocess.run([sys.executable, "scripts/seed_table.py", *(str(tmp_path / n) for n in "abcd"),
                          "--split", "test"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    # differences +5 and +1: mean 3, sd 2.83, t(0.975, 1) = 12.706, half-width 12.706 * 2.83 / sqrt(2) = 25.4
    assert "per seed [0, 1]: +5.0, +1.0 (mean +3.0); 95% interval -22.4 to +28.4" in out


def test_seed_table_plots_each_methods_mean_over_seeds(tmp_path):
    fake_run(tmp_path / "a", "dpo-st", 0, {"sft-0": 10.0, "sft-1": 20.0, "control": 12.0})
    fake_run(tmp_path / "b", "dpo-st", 1, {"sft-0": 14.0, "sft-1": 16.0, "control": 12.0})
    fake_run(tmp_path / "c", "st", 0, {"sft-0": 10.0, "sft-1": 15.0, "control": 11.0})
    subprocess.run([sys.executable, "scripts/seed_table.py", *(str(tmp_path / n) for n in "abc"), "--split", "test",
                    "--svg", str(tmp_path / "means.svg")], cwd=REPO, capture_output=True, text=True, check=True)
    svg = (tmp_path / "means.svg").read_text()
    # means DPO-ST 12 -> 18, ST 10 -> 15; the axis runs to 20, so y(v) = 40 + 250 (1 - v / 20), x = 60 and 470
    assert 'points="60.0,140.0 470.0,65.0"' in svg and 'points="60.0,165.0 470.0,102.5"' in svg
    assert 'y1="140.0"' in svg and 'y1="152.5"' in svg  # the controls, 12 and 11, dashed
    assert ">DPO-ST (2 seeds)</text>" in svg and ">ST (1 seed)</text>" in svg
    refused = subprocess.run([sys.executable, "scripts/seed_table.py", str(tmp_path / "a"), "--svg",
                              str(tmp_path / "no-such-folder" / "means.svg")], cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 2 and "--svg" in refused.stderr and "no-such-folder" in refused.stderr


def test_seed_table_puts_the_ood_sets_in_one_table_of_sft_last_iteration_and_control(tmp_path):
    for name, method, seed, ood in [("a", "dpo-st", 0, (2.0, 5.0, 3.0)), ("b", "dpo-st", 1, (4.0, 8.0, 2.0)),
                                    ("c", "st", 0, (2.0, 4.0, 3.0))]:
        fake_run(tmp_path / name, method, seed, {"sft-0": 10.0, "sft-1": 20.0, "control": 12.0})
        for stage, accuracy in zip(("sft-0", "sft-1", "control"), ood):
            path = tmp_path / name / stage / "eval.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), "ood-x": accuracy}))
    out = subprocess.run([sys.executable, "scripts/seed_table.py", *(str(tmp_path / n) for n in "abc")], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "### test" in out and "### dev" in out and "### ood-x" not in out
    assert "| DPO-ST seed 1 | 4.0 -> 8.0 (2.0) |" in out and "| ST seed 0 | 2.0 -> 4.0 (3.0) |" in out
    assert "| **DPO-ST mean (2 seeds)** | 3.0 -> 6.5 (2.5) |" in out
    asked = subprocess.run([sys.executable, "scripts/seed_table.py", str(tmp_path / "a"), "--split", "ood-x"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "### ood-x" in asked and "| DPO-ST seed 0 | 2.0 | 5.0 | 3.0 |" in asked  # asked for: its own table
