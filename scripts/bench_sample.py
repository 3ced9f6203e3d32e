"""Benchmark: our generate() against transformers' generate() on the same weights, in the same run.

    make bench        (or: python scripts/bench_sample.py [--device cuda --dtype bfloat16])

A random Llama with SmolLM2-135M's shape (30 layers, hidden 576, 9 heads / 3 KV heads, FFN 1536,
vocab 49152, tied), 64-token prompts, 128 new tokens, greedy, at B=1 and B=16. Then our sampler with
the calculator on vs off at B=32, on text full of <<a*b=c>> calls (the model runs for real; its
logits are replaced by a script of GSM8K-style text so that calls happen on every row).
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model import load_pretrained  # noqa: E402
import sample  # noqa: E402
from sample import generate  # noqa: E402

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
                    max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=100000.0)
ASSETS = Path(__file__).resolve().parents[1] / "tests" / "assets"  # a real tokenizer file, kept in the repository
PROMPT_LEN, NEW_TOKENS = 64, 128


class NoEOS:
    """Token ids only; EOS never matches, so every row generates all NEW_TOKENS (as transformers does)."""
    pad_id, bos_id, eos_id, vocab_size = 0, 1, -1, SMOLLM2_135M["vocab_size"]


def timed(fn, device):
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def bench_against_transformers(hf, ours, batch, device, repeats):
    g = torch.Generator().manual_seed(batch)
    prompts = torch.randint(3, SMOLLM2_135M["vocab_size"], (batch, PROMPT_LEN), generator=g)
    hf_run = lambda: hf.generate(prompts.to(device), attention_mask=torch.ones_like(prompts).to(device),  # noqa: E731
                                 max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                                 pad_token_id=0)[:, PROMPT_LEN:].tolist()
    our_run = lambda: generate(ours, NoEOS(), prompts.tolist(), NEW_TOKENS)  # noqa: E731
    hf_time = our_time = float("inf")
    for _ in range(repeats):  # interleaved, best of each: both see the same machine conditions
        hf_seconds, hf_tokens = timed(hf_run, device)
        our_seconds, our_tokens = timed(our_run, device)
        hf_time, our_time = min(hf_time, hf_seconds), min(our_time, our_seconds)
    same = hf_tokens == our_tokens
    return batch * NEW_TOKENS / hf_time, batch * NEW_TOKENS / our_time, same


class ScriptedLogits(torch.nn.Module):
    """Runs the real model (full cost), then replaces its logits by the next token of a text script."""

    def __init__(self, model, scripts, vocab):
        super().__init__()
        self.model, self.scripts, self.vocab = model, scripts, vocab
        self.config, self.lm_head = model.config, model.lm_head

    def script_logits(self, logits, cache):
        out = torch.full_like(logits, -1e9)
        for pos, row in enumerate(cache.rows.tolist()):
            out[pos, self.scripts[row][min(cache.step, len(self.scripts[row]) - 1)]] = 0.0
        return out

    def prefill(self, ids, mask, max_new_tokens):
        logits, cache = self.model.prefill(ids, mask, max_new_tokens)
        cache.rows, cache.step = torch.arange(ids.shape[0]), 0
        keep_rows = cache.keep_rows
        cache.keep_rows = lambda keep: (keep_rows(keep), setattr(cache, "rows", cache.rows[keep.cpu()]))
        return self.script_logits(logits, cache), cache

    def decode_step(self, tokens, cache):
        cache.step += 1
        return self.script_logits(self.model.decode_step(tokens, cache), cache)


def time_calculator_work():
    """Wrap the Calculator's two methods to add up the seconds spent in them."""
    spent = [0.0]
    for name in ("may_open", "forced_tokens"):
        method = getattr(sample.Calculator, name)

        def timed_method(self, *args, method=method):
            start = time.perf_counter()
            try:
                return method(self, *args)
            finally:
                spent[0] += time.perf_counter() - start
        setattr(sample.Calculator, name, timed_method)
    return spent


def bench_calculator(ours, tok, device, repeats):
    batch = 32
    lines = [f"She buys {a} packs of {b} so {a}*{b} = <<{a}*{b}={a * b}>>{a * b} in all, "
             f"and {a * b}-{c} = <<{a * b}-{c}={a * b - c}>>{a * b - c} are left." for a, b, c in
             [(3 + i, 4 + i % 5, 2 + i % 3) for i in range(batch)]]
    scripts = [tok.encode(" ".join([line] * 8))[:NEW_TOKENS] for line in lines]
    model = ScriptedLogits(ours, scripts, tok.vocab_size)
    prompts = [[tok.bos_id] + tok.encode(f"Question {i}: how many are left?")[:PROMPT_LEN] for i in range(batch)]
    times = {}
    spent = time_calculator_work()
    for calculator in (False, True) * repeats:  # interleaved, best of each
        elapsed, out = timed(lambda: generate(model, tok, prompts, NEW_TOKENS, calculator=calculator), device)
        times[calculator] = min(times.get(calculator, elapsed), elapsed)
        if calculator:
            calls = sum(tok.decode(row).count(">>") for row in out)
    return times[False], times[True], calls, spent[0] / repeats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMOLLM2_135M)).eval()
    folder = Path(tempfile.mkdtemp())
    try:
        hf.save_pretrained(folder)
        shutil.copy(ASSETS / "mistral" / "tokenizer.model", folder / "tokenizer.model")
        ours, tok = load_pretrained(folder, device=args.device, dtype=dtype)
    finally:
        shutil.rmtree(folder)
    hf = hf.to(args.device, dtype)
    print(f"device {args.device}, {args.dtype}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} threads; SmolLM2-135M shape, {PROMPT_LEN}-token prompts, "
          f"{NEW_TOKENS} new tokens, greedy")
    print("| batch | transformers tok/s | ours tok/s | ours / transformers | same tokens |")
    print("|---|---|---|---|---|")
    for batch in (1, 16):
        hf_speed, our_speed, same = bench_against_transformers(hf, ours, batch, args.device, args.repeats)
        print(f"| {batch} | {hf_speed:.1f} | {our_speed:.1f} | {our_speed / hf_speed:.2f}x | {same} |", flush=True)
    off, on, calls, work = bench_calculator(ours, tok, args.device, args.repeats)
    print(f"\ncalculator at B=32, {calls} calls completed: off {32 * NEW_TOKENS / off:.1f} tok/s, "
          f"on {32 * NEW_TOKENS / on:.1f} tok/s ({100 * (on / off - 1):+.1f}%, best of {args.repeats} each); "
          f"time inside the calculator {1000 * work:.0f} ms per run = {100 * work / on:.2f}% of the run")


if __name__ == "__main__":
    with torch.no_grad():
        main()
