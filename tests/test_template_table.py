"""scripts/template_table.py: per-template accuracies and pseudo-label counts, counted by hand here."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def fake_world_run(folder: Path, test_templates=("a", "a", "a", "a", "b", "b")):
    """A finished 1-iteration run on a world of templates a and b."""
    (folder / "data").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"method": "st", "seed": 3, "iterations": 1}))
    write(folder / "data" / "test.jsonl", [{"id": f"t{i}", "template": t} for i, t in enumerate(test_templates)])
    write(folder / "data" / "labeled.jsonl", [{"id": "l0", "template": "a"}, {"id": "l1", "template": "b"}])
    write(folder / "data" / "unlabeled.jsonl", [{"id": f"u{i}", "template": "b"} for i in range(3)])
    # sft-0 solves t0 (1 of 4 a's) and none of b; sft-1 solves t0-t2 (3 of 4 a's) and t4 (1 of 2 b's)
    write(folder / "sft-0" / "eval-test.jsonl", [{"id": f"t{i}", "correct": i == 0} for i in range(6)])
    write(folder / "sft-1" / "eval-test.jsonl", [{"id": f"t{i}", "correct": i in (0, 1, 2, 4)} for i in range(6)])
    write(folder / "pseudo-1" / "pseudo.jsonl", [{"id": "l0"}, {"id": "l1"}, {"id": "u0"}, {"id": "u2"}])


def run(*args):
    return subprocess.run([sys.executable, "scripts/template_table.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True)


def test_template_table_counts_per_template(tmp_path):
    fake_world_run(tmp_path / "r")
    out = run(tmp_path / "r").stdout
    assert "| ST seed 3 sft-0 | 25 | 0 |" in out
    assert "| ST seed 3 sft-1 | 75 | 50 |" in out
    # a: l0 of its 1 labeled question; b: l1, u0, u2 of its 1 labeled + 3 pool questions
    assert "| ST seed 3 iter 1 | 1 / 1 | 3 / 4 |" in out


def test_template_table_refuses_data_without_templates(tmp_path):
    fake_world_run(tmp_path / "r")
    write(tmp_path / "r" / "data" / "test.jsonl", [{"id": "t0", "template": "a"}, {"id": "t1"}])
    result = run(tmp_path / "r")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith("test.jsonl line 2 has no 'template' "
                                                             "(only data.source 'world' has templates)")


def test_template_table_names_a_missing_file(tmp_path):
    fake_world_run(tmp_path / "r")
    (tmp_path / "r" / "sft-1" / "eval-test.jsonl").unlink()
    result = run(tmp_path / "r")
    assert result.returncode != 0 and "sft-1/eval-test.jsonl is missing" in result.stderr
