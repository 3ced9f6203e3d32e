"""The shipped base (bases/tiny-llama) is the one its recipe.json describes, and it loads."""
import hashlib
import json
from pathlib import Path

from data import LLAMA
from data.world import pretraining_corpus
from model import load_pretrained
from sample import generate

BASE = Path(__file__).resolve().parents[1] / "bases" / "tiny-llama"


def test_the_shipped_base_matches_its_recorded_sha256s():
    recipe = json.loads((BASE / "recipe.json").read_text())
    shipped = sorted(p.name for p in BASE.iterdir() if p.name not in ("recipe.json", "pretrain_log.jsonl"))
    assert sorted(recipe["sha256"]) == shipped
    for name, sha256 in recipe["sha256"].items():
        assert hashlib.sha256((BASE / name).read_bytes()).hexdigest() == sha256, name
    assert sum((BASE / name).stat().st_size for name in shipped) < 25 * 2**20


def test_the_shipped_base_can_copy_and_add_on_text_it_never_read():
    """Pretrained, not random: on corpus-style prompts of another seed (never trained on), greedy decoding
    writes the exact continuation (worked sums, a question written again) for most of them. A random
    model writes none; the base wrote 6 of these 8 when shipped."""
    model, tok = load_pretrained(BASE)
    rows = [r for r in pretraining_corpus(7, 40, 10, 10) if r["question"].startswith(("Write", "What is"))][:8]
    prompts = [[tok.bos_id] + tok.encode(LLAMA.format_prompt(r["question"])) for r in rows]
    outputs = generate(model, tok, prompts, max_new_tokens=120)
    exact = [tok.decode(o).strip() == LLAMA.format_answer(r["answer"]).strip() for r, o in zip(rows, outputs)]
    assert sum(exact) >= 5, exact
