"""tests/gpu_check.py runs every check end to end: here on CPU with small shapes, so that on a GPU
machine it needs no editing (the GPU run itself is `scripts/gpu_check.sh`)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_check_and_they_pass_on_cpu():
    result = subprocess.run([sys.executable, "tests/gpu_check.py", "--device", "cpu", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    rows = [line.split(" | ") for line in result.stdout.splitlines()
            if line.startswith("| ") and line.split(" | ")[3:4] in (["pass"], ["FAIL"], ["n/a"])]
    names = [r[0].lstrip("| ") for r in rows]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for expected in ["llama logits float32", "t5 logits float32", "llama logits bfloat16", "t5 logits bfloat16",
                     "greedy = transformers", "tok/s bf16 B=1", "sft step", "dpo step", "fsdp step", "smoke loop"]:
        assert any(name.startswith(expected) for name in names), (expected, names)
    assert not [r for r in rows if r[3] == "FAIL"] and "passed in" in result.stdout
