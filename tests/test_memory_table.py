"""scripts/memory_table.py: exact parameter counts of the paper's models (their published sizes) and
the bytes per parameter of each part."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("memory_table", ROOT / "scripts" / "memory_table.py")
memory_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory_table)


@pytest.mark.parametrize("preset, params", [("flan-t5-base", 247_577_856), ("flan-t5-large", 783_150_080),
                                            ("llama-2-7b", 6_738_415_616)])
def test_parameter_count_is_the_published_one_and_fsdp_shards_the_state(preset, params):
    from preset import load_config
    lines = memory_table.table(load_config(ROOT / "configs" / f"{preset}.json"), [1, 8], 512)
    assert lines[0].startswith(f"{params / 1e9:.2f}B parameters")
    rows = [line.split(" | ") for line in lines if line.startswith("| sft") or line.startswith("| dpo")]
    one = next(r for r in rows if r[0] == "| sft" and r[1] == "1")
    assert float(one[3].split()[0]) == pytest.approx(16 * params / 2**30, abs=0.06)  # 4 + 4 + 8 bytes a parameter
    sharded = next(r for r in rows if r[0] == "| dpo" and r[1] == "8" and r[2] == "fsdp")
    assert float(sharded[3].split()[0]) == pytest.approx(16 * params / 8 / 2**30, abs=0.06)
    assert float(sharded[4].split()[0]) == 0  # FSDP precomputes the reference
    ddp = next(r for r in rows if r[0] == "| dpo" and r[1] == "8" and r[2] == "ddp")
    assert float(ddp[4].split()[0]) == pytest.approx(4 * params / 2**30, abs=0.06)  # a whole frozen copy
