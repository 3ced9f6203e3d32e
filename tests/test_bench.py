"""scripts/bench.py's reference is a fair one: transformers' generate with the paper-style calculator
processor writes, greedily, exactly what our sampler writes; and the stage-time summary adds up."""
import importlib.util
import json
from pathlib import Path

import torch
import transformers

from data import format_for
from data.world import make_world
from model import load_pretrained
from sample import generate

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_paper_style_calculator_reference_writes_what_our_sampler_writes():
    ours, tok = load_pretrained(bench.BASE)
    hf = transformers.LlamaForCausalLM.from_pretrained(bench.BASE).eval()
    fmt = format_for("llama")
    sizes = {split: 1 for split in ("dev", "test", "ood-changed", "ood-distractors", "ood-long")}
    questions = make_world(0, {"labeled": 6, **sizes})["labeled"]
    prompts = [fmt.encode_prompt(tok, q["question"]) for q in questions]
    width = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_id] * (width - len(p)) + p for p in prompts])
    mask = (ids != tok.pad_id).long()
    with torch.no_grad():
        theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=60, do_sample=False, pad_token_id=tok.pad_id,
                             eos_token_id=tok.eos_id, logits_processor=[bench.PaperCalculator(tok, fmt, width)])
        mine = generate(ours, tok, prompts, 60, calculator=True)
    theirs = bench.useful(theirs[:, width:].tolist(), tok.eos_id)
    assert bench.useful(mine, tok.eos_id) == theirs
    assert sum(tok.decode(row).count(">>") for row in theirs) >= 3  # calls happened and were completed


def test_stage_times_add_the_stages_of_each_kind(tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({
        "seconds": {"data": 0.0, "base": 0.0, "sft-0": 120.0, "control": 60.0},
        "iterations": {"1": {"seconds": {"samples": 30.0, "pairs": 0.0, "dpo": 30.0, "pseudo": 30.0, "sft": 90.0}}}}))
    bench.ROOT = tmp_path
    [line] = bench.stage_times(run)
    assert "6.0 min in all" in line and "sft 4.5 min (75%)" in line and "dpo 0.5 min (8%)" in line
