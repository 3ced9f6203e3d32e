"""make bench: the loop's costs, each ours against a reference measured in the same run (interleaved,
best of --repeats), with its share of this machine's own bounds, measured here too.

    make bench        (or: python scripts/bench.py [--repeats 3] [--quick])

  (a) the loop's sampling: the shipped base (bases/tiny-llama) on 256 of the world's questions at
      batch 256, T 0.7, top-k 50, 160 new tokens, calculator on. Reference: transformers' generate
      on the same weights with a calculator LogitsProcessor as the paper's code has it (every step it
      decodes every row's text and looks for an open call). Useful tokens: up to each row's EOS.
  (b) greedy decoding on SmolLM2-135M's shape (random weights), 64-token prompts, 64 new tokens,
      B 1 and 16, fp32 and bf16, against
      transformers' generate (its tokens must equal ours in fp32).
  (c) one SFT step (forward, backward, AdamW) on the same micro-batches (the trainer's: sorted by
      length): the tiny default (batch 32 of the world's labeled examples, in its preset's
      micro-batches and in one) and SmolLM2-135M's shape (batch 8 of 128 tokens), ours against
      transformers' LlamaForCausalLM.
  (d) make iterate's stage times, read from its two runs' metrics.json (runs/tiny-llama-200-pool2400-iter1-*-seed0).

Bounds: matmul FLOP/s (square GEMMs, fp32 for the fp32 rows, bf16 for the bf16 ones) and copy bytes/s (a 256 MB
tensor copy, read + write). A row's share of the bound is its useful FLOPs (2 per weight per token for
the linear layers, 4 x layers x hidden x keys for attention; training x3) over the FLOP bound; for
greedy B = 1 also the weight bytes streamed per token over the copy bandwidth.
Needs the test packages (transformers): `make setup` installs them.
"""
import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import torch
import transformers

transformers.utils.logging.disable_progress_bar()

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from bench_sample import SMOLLM2_135M, NoEOS, timed  # noqa: E402
from data import calculate, format_for, read_jsonl  # noqa: E402
from data.report import stage_times_line  # noqa: E402
from data.world import make_world  # noqa: E402
from model import load_pretrained  # noqa: E402
from model.logprobs import answer_logprobs  # noqa: E402
from preset import load_config  # noqa: E402
from sample import continuation_ids, generate  # noqa: E402
from trainer import TrainConfig, make_optimizer  # noqa: E402

ASSETS = ROOT / "tests" / "assets"
BASE = ROOT / "bases" / "tiny-llama"


# --- this machine's bounds ---------------------------------------------------------------------

def flops_bounds(repeats) -> dict:
    """Square 1024 GEMM FLOP/s per dtype: a row is measured against its own dtype's rate (a CPU with a
    bf16 unit multiplies bf16 several times faster than fp32 (4.8x on an AVX-512 EPYC); one without, several times slower)."""
    bounds = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
        bounds[dtype] = max(4 * 2 * 1024 ** 3 / timed(lambda: [a @ b for _ in range(4)], "cpu")[0]
                            for _ in range(repeats + 1))
    return bounds


def copy_bandwidth(repeats) -> float:
    src = torch.empty(64 * 2**20, dtype=torch.float32)  # 256 MB
    dst = torch.empty_like(src)
    best = min(timed(lambda: dst.copy_(src), "cpu")[0] for _ in range(repeats + 1))
    return 2 * src.numel() * 4 / best


def linear_weights(model) -> int:
    """Weights that every token multiplies (all matrices but the embedding lookup; a tied head counts)."""
    c = model.config
    layer = sum(p.numel() for p in model.model.layers.parameters() if p.dim() == 2)
    return layer + c.vocab_size * c.hidden_size


def token_flops(model, keys: float) -> float:
    """Forward FLOPs of one token that attends to `keys` cached keys."""
    c = model.config
    return 2 * linear_weights(model) + 4 * c.num_hidden_layers * c.num_attention_heads * c.head_dim * keys


# --- (a) the loop's sampling -------------------------------------------------------------------

class PaperCalculator(transformers.LogitsProcessor):
    """The paper's calculator as its code does it: each step, each row's whole answer is decoded and
    searched for an open call; a row inside a result is forced to its next token."""

    def __init__(self, tok, fmt, prompt_len):
        self.tok, self.fmt, self.prompt_len, self.queues = tok, fmt, prompt_len, {}

    def __call__(self, input_ids, scores):
        for row in range(input_ids.shape[0]):
            if not self.queues.get(row):
                text = self.tok.decode(input_ids[row, self.prompt_len:].tolist())
                expression = self.fmt.find_open_calculation(text)
                result = calculate(expression) if expression is not None else None
                if result is not None:
                    self.queues[row] = deque(continuation_ids(self.tok, text, self.fmt.close_calculation(result)))
            if self.queues.get(row):
                forced = self.queues[row].popleft()
                scores[row] = float("-inf")
                scores[row, forced] = 0.0
        return scores


def useful(rows, eos) -> list[list[int]]:
    """Each row's tokens up to and with its first EOS."""
    return [row[:row.index(eos) + 1] if eos in row else row for row in rows]


def bench_loop_sampling(repeats, quick, bound):
    ours, tok = load_pretrained(BASE)
    hf = transformers.LlamaForCausalLM.from_pretrained(BASE).eval()
    fmt = format_for("llama")
    n, new = (32, 48) if quick else (256, 160)
    questions = make_world(0, {"labeled": n, "dev": 1, "test": 1, "ood-changed": 1, "ood-distractors": 1,
                               "ood-long": 1})["labeled"]
    prompts = [fmt.encode_prompt(tok, q["question"]) for q in questions]
    width = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_id] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()

    def theirs():
        torch.manual_seed(0)
        out = hf.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=True, temperature=0.7, top_k=50,
                          pad_token_id=tok.pad_id, eos_token_id=tok.eos_id,
                          logits_processor=[PaperCalculator(tok, fmt, width)])
        return useful(out[:, width:].tolist(), tok.eos_id)

    mine = lambda: useful(generate(ours, tok, prompts, new, 0.7, 50, 1.0, True, seed=0), tok.eos_id)  # noqa: E731
    ref, our = best_of(theirs, mine, repeats)
    (ref_s, ref_rows), (our_s, our_rows) = ref, our
    tokens = lambda rows: sum(map(len, rows))  # noqa: E731
    keys = sum(map(len, prompts)) / len(prompts) + tokens(our_rows) / len(our_rows) / 2
    our_tps, ref_tps = tokens(our_rows) / our_s, tokens(ref_rows) / ref_s
    share = our_tps * token_flops(ours, keys) / bound
    return [f"| (a) loop sampling, tiny base, B={n}, T 0.7, top-k 50, {new} new, calculator | "
            f"{ref_tps:,.0f} useful tok/s | {our_tps:,.0f} | {our_tps / ref_tps:.2f}x | {100 * share:.0f}% of float32 FLOP/s |"]


def best_of(reference, ours, repeats):
    """Interleaved runs, the fastest of each: both see the same machine conditions."""
    ref = our = (float("inf"), None)
    for _ in range(repeats):
        ref = min(ref, timed(reference, "cpu"), key=lambda r: r[0])
        our = min(our, timed(ours, "cpu"), key=lambda r: r[0])
    return ref, our


# --- (b) greedy on SmolLM2-135M's shape ----------------------------------------------------------

def smollm2(folder: Path, quick: bool):
    shape = dict(SMOLLM2_135M, num_hidden_layers=4) if quick else SMOLLM2_135M
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape)).eval()
    hf.save_pretrained(folder)
    shutil.copy(ASSETS / "mistral" / "tokenizer.model", folder / "tokenizer.model")
    return hf


def bench_greedy(folder, hf, repeats, quick, bounds, bandwidth):
    lines, prompt_len, new = [], 64, (16 if quick else 64)  # 64 new tokens: bf16 without a bf16 unit is slow
    for dtype in (torch.float32, torch.bfloat16):
        ours, _ = load_pretrained(folder, dtype=dtype)
        theirs_model = hf.to(dtype)
        for batch in (1, 16):
            g = torch.Generator().manual_seed(batch)
            prompts = torch.randint(3, SMOLLM2_135M["vocab_size"], (batch, prompt_len), generator=g)
            theirs = lambda: theirs_model.generate(prompts, attention_mask=torch.ones_like(prompts),  # noqa: E731
                                                   max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                                   pad_token_id=0)[:, prompt_len:].tolist()
            mine = lambda: generate(ours, NoEOS(), prompts.tolist(), new)  # noqa: E731
            (ref_s, ref_out), (our_s, our_out) = best_of(theirs, mine, repeats)
            tps, ref_tps = batch * new / our_s, batch * new / ref_s
            share = f"{100 * tps * token_flops(ours, prompt_len + new / 2) / bounds[dtype]:.0f}% of {str(dtype)[6:]} FLOP/s"
            if batch == 1:
                weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
                share += f", {100 * tps * weight_bytes / bandwidth:.0f}% of bytes/s"
            same = "same tokens" if ref_out == our_out else "tokens differ"
            lines.append(f"| (b) greedy SmolLM2-135M shape, {str(dtype)[6:]}, B={batch} ({same}) | {ref_tps:.1f} tok/s | "
                         f"{tps:.1f} | {tps / ref_tps:.2f}x | {share} |")
    hf.float()
    return lines


# --- (c) an SFT step -----------------------------------------------------------------------------

def micro_batches(prompts, answers, micro):
    """The trainer's split of a batch: sorted by length, then `micro` examples at a time."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(answers[i]))
    return [([prompts[i] for i in order[j:j + micro]], [answers[i] for i in order[j:j + micro]])
            for j in range(0, len(order), micro)]


def sft_step_ours(model, optimizer, parts, pad_id, n_answer_tokens):
    for prompts, answers in parts:
        logps, _ = answer_logprobs(model, prompts, answers, pad_id)
        (-logps.sum() / n_answer_tokens).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def sft_step_theirs(model, optimizer, parts, pad_id, n_answer_tokens):
    for prompts, answers in parts:
        width = max(len(p) + len(a) for p, a in zip(prompts, answers))
        ids = torch.full((len(prompts), width), pad_id)
        labels = torch.full((len(prompts), width), -100)
        for row, (p, a) in enumerate(zip(prompts, answers)):
            ids[row, :len(p) + len(a)] = torch.tensor(p + a)
            labels[row, len(p):len(p) + len(a)] = torch.tensor(a)
        attention = (torch.arange(width)[None] < torch.tensor([len(p) + len(a) for p, a in zip(prompts, answers)])[:, None])
        logits = model(input_ids=ids, attention_mask=attention.long()).logits
        # the same sum over answer tokens as ours (HF's own .loss averages each micro-batch instead)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                                 ignore_index=-100, reduction="sum")
        (loss / n_answer_tokens).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def bench_sft(name, folder, batch_examples, micro, repeats, bound):
    ours, tok = load_pretrained(folder)
    ours.train()
    hf = transformers.LlamaForCausalLM.from_pretrained(folder).train()
    cfg = TrainConfig(lr=1e-5)
    our_opt, hf_opt = make_optimizer(ours, cfg), make_optimizer(hf, cfg)
    prompts, answers = batch_examples(tok)
    parts, n_answer = micro_batches(prompts, answers, micro), sum(map(len, answers))
    theirs = lambda: sft_step_theirs(hf, hf_opt, parts, tok.pad_id, n_answer)  # noqa: E731
    mine = lambda: sft_step_ours(ours, our_opt, parts, tok.pad_id, n_answer)  # noqa: E731
    mine(), theirs()  # the optimizers' state is allocated on the first step
    (ref_s, _), (our_s, _) = best_of(theirs, mine, repeats)
    tokens = sum(len(p) + len(a) for p, a in zip(prompts, answers))
    keys = tokens / len(prompts) / 2
    share = 3 * tokens * token_flops(ours, keys) / our_s / bound
    return [f"| (c) SFT step, {name}, {len(prompts)} examples ({micro} a micro-batch), {tokens} tokens | {ref_s * 1000:.0f} ms | "
            f"{our_s * 1000:.0f} ms | {ref_s / our_s:.2f}x | {100 * share:.0f}% of float32 FLOP/s |"]


def world_batch(tok):
    fmt = format_for("llama")
    rows = make_world(0, {"labeled": 32, "dev": 1, "test": 1, "ood-changed": 1, "ood-distractors": 1,
                          "ood-long": 1})["labeled"]
    examples = [fmt.encode_example(tok, r["question"], fmt.format_answer(r["answer"])) for r in rows]
    return [e.prompt for e in examples], [e.answer for e in examples]


def random_batch(tok, n=8, length=128):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, SMOLLM2_135M["vocab_size"], (n, length), generator=g).tolist()
    return [row[:length // 2] for row in ids], [row[length // 2:] for row in ids]


# --- (d) make iterate's stage times -------------------------------------------------------------

def stage_times(run: Path) -> list[str]:
    if not (run / "metrics.json").is_file():
        return [f"(d) no finished run at {run.relative_to(ROOT)}: run `make iterate` first"]
    metrics = json.loads((run / "metrics.json").read_text())
    return [f"(d) {run.relative_to(ROOT)}: {stage_times_line(metrics)}"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each; the best counts")
    ap.add_argument("--quick", action="store_true", help="small shapes (a check of the script, not a measurement)")
    args = ap.parse_args()
    bounds, bandwidth = flops_bounds(args.repeats), copy_bandwidth(args.repeats)
    bound = bounds[torch.float32]  # the fp32 rows': (a), (c), (b) in fp32
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), transformers "
          f"{transformers.__version__}, {torch.get_num_threads()} threads; bounds measured here: "
          f"{bound / 1e9:.0f} GFLOP/s fp32 GEMM, {bounds[torch.bfloat16] / 1e9:.0f} bf16, "
          f"{bandwidth / 1e9:.1f} GB/s (copy)\n")
    print("| what | reference | ours | ours / reference | share of the bound |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        for line in bench_loop_sampling(args.repeats, args.quick, bound):
            print(line, flush=True)
    folder = Path(tempfile.mkdtemp())
    try:
        hf = smollm2(folder, args.quick)
        with torch.no_grad():
            for line in bench_greedy(folder, hf, args.repeats, args.quick, bounds, bandwidth):
                print(line, flush=True)
        preset = load_config(ROOT / "configs" / "tiny-llama.json")["sft"]
        for micro in sorted({preset["micro_batch_size"], preset["batch_size"]}):
            for line in bench_sft("tiny default", BASE, world_batch, micro, args.repeats, bound):
                print(line, flush=True)
        for line in bench_sft("SmolLM2-135M shape", folder, random_batch, 8, args.repeats, bound):
            print(line, flush=True)
    finally:
        shutil.rmtree(folder)
    print()
    for method in ("dpo-st", "st"):  # ST's copied stages count 0 (loop.py --reuse)
        for line in stage_times(ROOT / "runs" / f"tiny-llama-200-pool2400-iter1-{method}-seed0"):
            print(line)


if __name__ == "__main__":
    main()
