"""Sampling: our KV-cached batched generator with the calculator tool, and a CLI that evaluates datasets.

    from sample import generate
    new_tokens = generate(model, tok, prompts, max_new_tokens=300, temperature=0.7, top_k=50, calculator=True)

How one call works (gpt-fast style, one code path for CPU and CUDA, and for Llama and T5):
  1. prompts are left-padded into one batch and run once (prefill), filling a preallocated cache;
     a prompt that several rows share (samples of one question) is run once and its cache rows copied;
  2. then every step picks one token per row (greedy, or temperature/top-k/top-p sampling) and runs
     only those tokens through the model;
  3. rows stop at EOS; once a quarter of the batch has stopped, finished rows are dropped (the
     cache is compacted) so no compute is spent on them;
  4. calculator (paper section 3.3, Fig. 7): when a row has just written "<<48/2=" (T5: "[ 48 / 2 ="),
     the calculator computes 24 and the row's next tokens are forced to "24>>", one per step, so
     no extra forward passes are needed. Only rows whose new token contains "=" are checked.

    python sample.py --model DIR --data gsm8k-test --out samples.jsonl [--num-samples K ...]
"""
import functools
import json
import os
from collections import deque
from dataclasses import dataclass

import torch
from tqdm import tqdm

from data import (Format, calculate, extract_answer, format_for, is_correct, load_dataset, write_atomically,
                  write_jsonl)
from distributed import finish, gather_json, process_device, rank_and_world
from flags import (DTYPES, Parser, SettingError, add_flags, check_device, check_output_file,
                   check_settings, from_flags, setting)
from model import load_pretrained

CALC_WINDOW = 48     # tokens of a row's tail decoded when it may have opened a calculator call
COMPACT_AT = 0.25    # drop finished rows once this fraction of the batch has finished


@dataclass
class SamplingConfig:
    """How evaluate_rows samples: greedy, one answer per question, calculator on, unless told otherwise.
    The loop's stages set the paper's values (loop.py: 5 samples for pairs, 3 for pseudo-labels, T 0.7)."""
    num_samples: int = setting(1, "answers per question (more than 1 needs temperature > 0)", at_least=1)
    # how each token is picked
    temperature: float = setting(0.0, "0 = greedy", at_least=0)
    top_k: int = setting(0, "sample among the k most likely tokens; 0 = all", at_least=0)
    top_p: float = setting(1.0, "sample among the most likely tokens that hold this much probability",
                           above=0, at_most=1)
    # how long, and how many rows at once
    max_new_tokens: int = setting(300, "longest answer, in tokens (paper: 300)", at_least=1)
    batch_size: int = setting(32, "rows per generate call", at_least=1)
    calculator: bool = setting(True, "compute each <<a*b= call and write its result (paper section 3.3)")

    def __post_init__(self):
        check_settings(self)
        if self.temperature == 0 and self.num_samples > 1:  # greedy decoding would repeat itself
            raise SettingError("num_samples", self.num_samples, "1 when temperature is 0 (greedy)")

def pick_next(logits, temperature, top_k, top_p, generator):
    """Greedy when temperature == 0; else sample from softmax(logits / T) restricted by top-k and top-p."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k == 0 and top_p == 1.0:  # the whole vocabulary: nothing to sort
        return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
    # Candidates, most likely first: the top k (cheap: only k of them are sorted), or the whole vocabulary.
    k = min(top_k, logits.shape[-1]) if top_k > 0 else logits.shape[-1]
    candidate_logits, candidates = logits.topk(k, dim=-1)
    if top_p < 1.0:
        # Keep the smallest set of most likely tokens whose probability reaches top_p.
        probs = candidate_logits.softmax(-1)
        mass_before = probs.cumsum(-1) - probs
        candidate_logits = candidate_logits.masked_fill(mass_before >= top_p, float("-inf"))
    choice = torch.multinomial(candidate_logits.softmax(-1), 1, generator=generator)
    return candidates.gather(-1, choice).squeeze(-1)


@functools.cache
def token_texts(tok) -> list[str]:
    """The text each token id adds in the middle of a sentence (computed once per tokenizer).

    Decoding a single id is not enough (sentencepiece drops a leading space at the start of a text),
    so each id is decoded after an anchor token and the anchor's text is cut off.
    """
    anchor = tok.encode("a")
    base = tok.decode(anchor)
    return [tok.decode(anchor + [i])[len(base):] for i in range(tok.vocab_size)]


class Calculator:
    """Finds rows that have just opened a calculator call and queues the tokens of its result."""

    def __init__(self, tok, fmt: Format):
        self.tok, self.fmt = tok, fmt
        # Only a new token containing "=" can open a call, so most steps decode nothing.
        self.has_equals = torch.tensor(["=" in text for text in token_texts(tok)])

    def may_open(self, tokens: torch.Tensor) -> list[int]:
        """Batch positions whose new token contains '='."""
        return self.has_equals[tokens.cpu()].nonzero().flatten().tolist()

    def forced_tokens(self, tail_ids: list[int]) -> list[int]:
        """The tokens that write the result and closing marker after the tail, or [] if none apply."""
        text = self.tok.decode(tail_ids)
        expression = self.fmt.find_open_calculation(text)
        result = calculate(expression) if expression is not None else None
        if result is None:
            return []
        return continuation_ids(self.tok, text, self.fmt.close_calculation(result))


def continuation_ids(tok, context: str, addition: str) -> list[int]:
    """Token ids that append exactly `addition` to text ending in `context`, for any tokenizer.

    Preferred: the tokenizer's own split of context + addition, when it keeps the context's tokens
    (so the forced tokens look like training data). When the tokenizer would merge across the
    boundary (Mistral has a token "=-"), the addition is covered by the longest tokens whose
    mid-sentence text matches. Every candidate is checked by decoding.
    """
    context_ids = tok.encode(context)
    joint = tok.encode(context + addition)
    candidates = [joint[len(context_ids):]] if joint[:len(context_ids)] == context_ids else []
    texts = token_texts(tok)
    ids, pos = [], 0
    while pos < len(addition):
        match = next((i for n in range(min(16, len(addition) - pos), 0, -1)
                      for i in [_text_to_id(tok).get(addition[pos:pos + n])] if i is not None), None)
        if match is None:
            break
        ids.append(match)
        pos += len(texts[match])
    candidates.append(ids)
    for candidate in candidates:
        if candidate and tok.decode(context_ids + candidate) == tok.decode(context_ids) + addition:
            return candidate
    return []


@functools.cache
def _text_to_id(tok) -> dict[str, int]:
    table = {}
    for i, text in enumerate(token_texts(tok)):
        if text and "\ufffd" not in text:  # skip control tokens and partial UTF-8 bytes
            table.setdefault(text, i)
    return table


@torch.no_grad()
def generate(model, tok, prompts, max_new_tokens, temperature=0.0, top_k=0, top_p=1.0,
             calculator=False, seed=0) -> list[list[int]]:
    """New tokens for each prompt (EOS included when reached). Same seed and batch -> same output."""
    if len(prompts) == 0:
        raise ValueError("generate: the list of prompts is empty")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("generate: a prompt is empty (0 tokens)")
    device = model.lm_head.weight.device
    B, T = len(prompts), max(len(p) for p in prompts)
    pad = tok.pad_id if tok.pad_id is not None else tok.eos_id
    # The loop samples each question 3-5 times: each distinct prompt is run once, and its logits and
    # cache rows are copied to its samples (the same numbers as running every copy; less work).
    distinct = {}
    copy_of = torch.tensor([distinct.setdefault(tuple(p), len(distinct)) for p in prompts], device=device)
    ids = torch.full((len(distinct), T), pad, dtype=torch.long)
    mask = torch.zeros(len(distinct), T, dtype=torch.long)
    for row, prompt in enumerate(distinct):
        ids[row, T - len(prompt):] = torch.tensor(prompt)
        mask[row, T - len(prompt):] = 1
    logits, cache = model.prefill(ids.to(device), mask.to(device), max_new_tokens)  # (distinct prompts, V)
    if len(distinct) < B:
        logits = logits[copy_of]                                                      # (B, V)
        cache.keep_rows(copy_of)

    generator = torch.Generator(device=device).manual_seed(seed)
    calc = Calculator(tok, format_for(model.config.model_type)) if calculator else None
    forced = {}                                        # original row -> queue of forced token ids
    out = torch.full((B, max_new_tokens), pad, dtype=torch.long, device=device)
    lengths = torch.full((B,), max_new_tokens, dtype=torch.long)
    rows = torch.arange(B, device=device)              # original row of each batch position
    running = torch.ones(B, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        # Only ids the tokenizer can write (T5 has 32128 logits for 32100 ids; the rest were never trained).
        next_tokens = pick_next(logits[:, :tok.vocab_size], temperature, top_k, top_p, generator)
        if forced:  # a calculator result overrides what the model picked
            for pos, row in enumerate(rows.tolist()):
                if row in forced:
                    next_tokens[pos] = forced[row].popleft()
                    if not forced[row]:
                        del forced[row]
        next_tokens = torch.where(running, next_tokens, pad)
        out[rows, step] = next_tokens
        if calc is not None:
            for pos in calc.may_open(next_tokens):
                row = rows[pos].item()
                if running[pos] and row not in forced:
                    queue = calc.forced_tokens(out[row, max(0, step + 1 - CALC_WINDOW):step + 1].tolist())
                    if queue:
                        forced[row] = deque(queue)
        stopped = running & (next_tokens == tok.eos_id)
        if stopped.any():
            lengths[rows[stopped].cpu()] = step + 1
            running &= ~stopped
        n_running = int(running.sum())
        if n_running == 0 or step == max_new_tokens - 1:
            break
        if n_running <= (1 - COMPACT_AT) * len(rows):
            keep = running.nonzero().flatten()
            cache.keep_rows(keep)
            rows, running, next_tokens = rows[keep], running[keep], next_tokens[keep]
        logits = model.decode_step(next_tokens, cache)
    out = out.cpu()
    return [out[row, :lengths[row]].tolist() for row in range(B)]


def evaluate_rows(model, tok, rows, sampling: SamplingConfig, seed=0) -> list[dict]:
    """Sample sampling.num_samples answers for every question and score them; one record per sample.

    Under torchrun each process samples every world-th batch -- the same batches, with the same
    seeds, as one process would -- and every process gets all the records, in order."""
    fmt = format_for(model.config.model_type)
    rank, world = rank_and_world()
    prompts = [fmt.encode_prompt(tok, row["question"]) for row in rows]
    jobs = [(i, k) for i in range(len(rows)) for k in range(sampling.num_samples)]  # (question, sample)
    # Batches of prompts of about the same length: a left-padded slot costs as much as a real one.
    jobs.sort(key=lambda job: len(prompts[job[0]]))
    batches = []  # [start, records] of this process's batches
    for start in tqdm(range(0, len(jobs), sampling.batch_size)[rank::world], desc="sampling", unit="batch",
                      leave=False, disable=rank != 0):
        batch = jobs[start:start + sampling.batch_size]
        outputs = generate(model, tok, [prompts[i] for i, _ in batch], sampling.max_new_tokens,
                           sampling.temperature, sampling.top_k, sampling.top_p, sampling.calculator, seed=seed + start)
        records = []
        for (i, k), new_tokens in zip(batch, outputs):
            row, completion = rows[i], tok.decode(new_tokens)
            prediction = extract_answer(completion)
            records.append({"id": row["id"], "question": row["question"], "sample": k, "completion": completion,
                            "prediction": prediction, "gold": row["gold"],
                            "correct": is_correct(prediction, row["gold"])})
        batches.append([start, records])
    if world > 1:  # every process's batches, back in their order
        batches = sorted((b for shard in gather_json(batches) for b in shard), key=lambda b: b[0])
    by_job = dict(zip(jobs, (record for _, records in batches for record in records)))
    return [by_job[i, k] for i in range(len(rows)) for k in range(sampling.num_samples)]  # the questions' order


def summarize(records, num_samples) -> dict:
    """Accuracy of sample 0 (the greedy answer when temperature is 0) and pass@k over all samples."""
    by_question = {}
    for r in records:
        by_question.setdefault(r["id"], []).append(r["correct"])
    n = len(by_question)
    return {"questions": n, "samples_per_question": num_samples,
            "accuracy": sum(c[0] for c in by_question.values()) / n,
            f"pass@{num_samples}": sum(any(c) for c in by_question.values()) / n}


def main():
    ap = Parser("Sample solutions with our KV-cached sampler and score them.")
    ap.add_argument("--model", required=True, help="a Hugging Face checkpoint folder (Llama or T5)")
    ap.add_argument("--data", required=True, help="gsm8k-test, gsm8k-dev, svamp, asdiv, multiarith, or FILE.jsonl")
    ap.add_argument("--out", required=True, help="JSONL: one line per sample (and OUT.summary.json beside it)")
    add_flags(ap, SamplingConfig)
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (greedy decoding ignores it)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions (N >= 1; default: all)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:N, mps")
    ap.add_argument("--dtype", default="bfloat16" if torch.cuda.is_available() else "float32", choices=DTYPES,
                    help="weights' dtype while sampling")
    args = ap.parse_args()
    sampling = from_flags(ap, args, SamplingConfig)
    try:  # every flag is checked before the model is loaded or anything is written
        check_device("--device", args.device)
        if args.limit is not None and args.limit < 1:
            raise SettingError("--limit", args.limit, "a whole number >= 1")
        summary_path = args.out.removesuffix(".jsonl") + ".summary.json"
        for out in (args.out, summary_path):
            check_output_file("--out", out, inputs=[args.data, os.path.join(args.model, "config.json")])
    except SettingError as e:
        ap.error(f"argument {e}")
    rank = rank_and_world()[0]  # under torchrun: each process samples every world-th batch
    rows = load_dataset(args.data)[: args.limit]
    if not rows:
        raise ValueError(f"{args.data}: no questions to sample")
    model, tok = load_pretrained(args.model, device=process_device(args.device), dtype=getattr(torch, args.dtype))
    records = evaluate_rows(model, tok, rows, sampling, args.seed)  # under torchrun: shared out and gathered
    if rank == 0:
        summary = summarize(records, sampling.num_samples)
        write_jsonl(args.out, records)  # each file appears whole (a temporary name, then a rename)
        write_atomically(summary_path, (json.dumps({**summary, "data": args.data, "model": args.model,
                                                    "seed": args.seed}, indent=2) + "\n").encode())
        print(json.dumps(summary))
    finish()

if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear line, no traceback
        raise SystemExit(f"sample.py: error: {e}")
