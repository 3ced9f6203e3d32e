"""sample.py's command line: one JSON line per sample, a summary, clear errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model import init_from_config, save_pretrained
from test_calculator_decoding import tiny_sentencepiece

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [{"question": f"Ann has {a} apples and buys {b} more. How many apples does she have?",
              "answer": f"Ann has {a}+{b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}"}
             for a, b in [(3, 4), (10, 5), (7, 7), (20, 1)]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    tok = tiny_sentencepiece(folder)
    config = {"model_type": "llama", "vocab_size": tok.vocab_size, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 256}
    save_pretrained(init_from_config(config, seed=0), tok, folder / "ckpt")
    data = folder / "questions.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return folder / "ckpt", data


def run(*args, launcher=(sys.executable,)):
    return subprocess.run([*launcher, str(ROOT / "sample.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_writes_one_record_per_sample_and_a_summary(checkpoint, tmp_path):
    model, data = checkpoint
    out = tmp_path / "samples.jsonl"
    result = run("--model", model, "--data", data, "--out", out, "--num-samples", 2, "--temperature", 0.7,
                 "--top-k", 50, "--max-new-tokens", 12, "--limit", 3, "--batch-size", 4)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 6
    assert sorted((r["id"], r["sample"]) for r in records) == sorted({(r["id"], k) for r in records for k in (0, 1)})
    assert {r["gold"] for r in records} == {7.0, 15.0, 14.0}
    for r in records:
        assert set(r) == {"id", "question", "sample", "completion", "prediction", "gold", "correct"}
        assert r["correct"] == (r["prediction"] is not None and abs(r["prediction"] - r["gold"]) < 1e-4)
    summary = json.loads((tmp_path / "samples.summary.json").read_text())
    assert summary["questions"] == 3 and summary["samples_per_question"] == 2 and "pass@2" in summary


def test_cli_bad_dataset_is_one_clear_line(checkpoint, tmp_path):
    model, _ = checkpoint
    result = run("--model", model, "--data", "gsm9k-test", "--out", tmp_path / "x.jsonl")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "gsm9k-test" in lines[0] and lines[0].startswith("sample.py: error:")
    assert not (tmp_path / "x.jsonl").exists()


def test_two_processes_shard_the_questions_and_gather_the_same_records(checkpoint, tmp_path):
    model, data = checkpoint
    common = ["--model", model, "--data", data, "--max-new-tokens", 12, "--batch-size", 2]
    one = run(*common, "--out", tmp_path / "one.jsonl")
    two = run(*common, "--out", tmp_path / "two.jsonl",
              launcher=(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", "29518"))
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert (tmp_path / "one.jsonl").read_text() == (tmp_path / "two.jsonl").read_text()  # greedy: identical
    assert len((tmp_path / "two.jsonl").read_text().splitlines()) == len(QUESTIONS)
