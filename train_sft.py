"""Supervised fine-tuning (SFT): maximize log p(answer | question) on labeled (and pseudo-labeled) data.

The paper's Algorithm 1 runs SFT twice: the warm-up on the labeled set, and in every iteration again
FROM THE BASE MODEL on labeled ∪ pseudo-labeled data. The loss counts answer tokens (+EOS) only;
prompt and padding tokens are masked (model/logprobs.py). Optimizer as in the paper's code: AdamW,
linear warmup, then cosine decay to 0.1x the peak learning rate (HF's cosine_with_min_lr), gradient
clipping at 1.0, gradient accumulation; bf16 autocast on CUDA.

    python train_sft.py --model DIR --data labeled.jsonl [pseudo.jsonl ...] --out DIR [--epochs 3 --lr 3e-4]
    python train_sft.py --init-config configs/tiny-llama.json --tokenizer DIR ...   (random init)
    torchrun --nproc_per_node 2 train_sft.py ...                                    (DDP: gloo or NCCL)
"""
import argparse
import contextlib
import functools
import json
import math
import os
import random
from dataclasses import asdict, dataclass, fields

import torch
import torch.distributed as dist
from tqdm import tqdm

from data import format_answer, read_jsonl
from data.formats import encode_example
from model import init_from_config, load_pretrained, load_tokenizer, save_pretrained
from model.logprobs import answer_logprobs


@dataclass
class TrainConfig:
    lr: float = 3e-4
    epochs: float = 3.0          # or a fixed number of optimizer steps with `steps`
    steps: int = 0
    batch_size: int = 16         # examples per optimizer step, over all processes
    micro_batch_size: int = 16   # examples per forward pass (batch_size / micro_batch_size = accumulation)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.1    # cosine_with_min_lr: decay to 0.1x the peak
    max_grad_norm: float = 1.0
    seed: int = 0


def lr_at(step: int, total: int, cfg) -> float:
    """Linear warmup over warmup_ratio of the steps, then cosine from the peak down to min_lr_ratio x peak."""
    warmup = math.ceil(cfg.warmup_ratio * total)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model, cfg):
    """AdamW; weight decay on matrices only (not on norms, biases), as Hugging Face's Trainer does."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)


def distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when run under torchrun."""
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def global_batches(n_examples: int, cfg, total_steps: int):
    """Example indices of each optimizer step: seeded reshuffles, identical on every process."""
    rng, order = random.Random(cfg.seed), []
    for _ in range(total_steps):
        batch = []
        while len(batch) < cfg.batch_size:
            if not order:
                order = list(range(n_examples))
                rng.shuffle(order)
            batch.append(order.pop())
        yield batch


def total_steps(n_examples: int, cfg) -> int:
    return cfg.steps or max(1, math.ceil(cfg.epochs * n_examples / cfg.batch_size))


def autocast(device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def train_loop(model, examples, cfg, loss_fn, desc, log_path=None, dropout=True):
    """The optimizer loop shared by SFT and DPO.

    loss_fn(model, micro_batch, global_batch) returns (loss, metrics), each already divided by the
    size of the whole global batch (in tokens or pairs): summed over micro-batches and processes they
    give the global batch's mean, so accumulation and DDP give the same update as one big batch."""
    rank, world = distributed()
    if cfg.batch_size % world:  # else processes would run different numbers of micro-batches and hang
        raise ValueError(f"{desc}: batch_size {cfg.batch_size} is not a multiple of the {world} processes")
    core = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    model.train(dropout)  # DPO trains with dropout off: eval mode changes nothing else in our models
    optimizer = make_optimizer(core, cfg)
    steps = total_steps(len(examples), cfg)
    log = open(log_path, "w") if log_path and rank == 0 else None
    # Examples are SFT's (prompt, answer) or DPO's (prompt, chosen, rejected[, 2 reference log-probs]):
    # the first three entries at most are token lists.
    n_tokens = [sum(len(ids) for ids in example[:3]) for example in examples]
    bar = tqdm(global_batches(len(examples), cfg, steps), total=steps, desc=desc, disable=rank != 0)
    for step, batch in enumerate(bar):
        mine = batch[rank::world]  # this process's share of the global batch
        # Micro-batches of similar lengths pad less; the summed gradient is the same in any order.
        mine.sort(key=n_tokens.__getitem__)
        micro = [mine[i:i + cfg.micro_batch_size] for i in range(0, len(mine), cfg.micro_batch_size)]
        metrics = {}
        for i, part in enumerate(micro):
            sync = i == len(micro) - 1 or world == 1
            with (contextlib.nullcontext() if sync else model.no_sync()), autocast(core.lm_head.weight.device):
                loss, m = loss_fn(model, [examples[j] for j in part], [examples[j] for j in batch])
            (loss * world).backward()  # DDP averages gradients over processes; we want their sum
            for key, value in m.items():
                metrics[key] = metrics.get(key, 0.0) + value
        if world > 1:  # each process holds its share of the global mean: add them up
            values = torch.tensor([metrics[k] for k in sorted(metrics)], dtype=torch.float64)
            dist.all_reduce(values)
            metrics = dict(zip(sorted(metrics), values.tolist()))
        grad_norm = float(torch.nn.utils.clip_grad_norm_(core.parameters(), cfg.max_grad_norm))
        if not all(math.isfinite(v) for v in [*metrics.values(), grad_norm]):  # same verdict on every process
            raise FloatingPointError(f"{desc}: non-finite loss or gradient at step {step}: {metrics}")
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, cfg)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        metrics |= {"step": step + 1, "lr": optimizer.param_groups[0]["lr"], "grad_norm": grad_norm}
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        if log:
            log.write(json.dumps(metrics) + "\n")
    if log:
        log.close()
    return core.eval()


def sft_loss(model, part, batch, pad_id):
    """Negative log-likelihood of the answer tokens, divided by the global batch's answer tokens."""
    n_tokens = sum(len(answer) for _, answer in batch)
    logps, _ = answer_logprobs(model, [p for p, _ in part], [a for _, a in part], pad_id)
    loss = -logps.sum() / n_tokens
    return loss, {"loss": loss.item()}


def train_sft(model, tok, examples, cfg: TrainConfig, log_path=None):
    """Train on (prompt_ids, answer_ids) pairs; returns the model in eval mode."""
    return train_loop(model, examples, cfg, functools.partial(sft_loss, pad_id=tok.pad_id), "sft", log_path)


def encode_rows(tok, family, rows, where):
    """Labeled rows {question, answer} -> (prompt_ids, answer_ids) in the family's format."""
    examples = []
    for i, row in enumerate(rows, 1):
        if not row.get("answer"):
            raise ValueError(f"{where} line {i}: no 'answer' to train on")
        examples.append(encode_example(tok, family, row["question"], format_answer(row["answer"], family)))
    return examples


def add_train_arguments(ap):
    """--lr, --epochs, ... (every TrainConfig field) and --device; shared with dpo.py."""
    for f in fields(TrainConfig):
        ap.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def parse_train_arguments(ap) -> tuple[argparse.Namespace, TrainConfig, torch.device]:
    """Parse; start the process group under torchrun; each process gets its own GPU."""
    args = ap.parse_args()
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    rank, _ = distributed()
    return args, cfg, torch.device(f"cuda:{rank}" if args.device == "cuda" else args.device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="start from this checkpoint folder")
    source.add_argument("--init-config", help="start from a random init of this HF-style config.json")
    ap.add_argument("--tokenizer", help="tokenizer folder (with --init-config)")
    ap.add_argument("--data", nargs="+", required=True, help="JSONL files of {question, answer}")
    ap.add_argument("--out", required=True)
    add_train_arguments(ap)
    args, cfg, device = parse_train_arguments(ap)
    if args.model:
        model, tok = load_pretrained(args.model, device=device)
    else:
        with open(args.init_config) as f:
            config = json.load(f)
        tok = load_tokenizer(args.tokenizer, config["model_type"])
        model = init_from_config(config, seed=cfg.seed).to(device)
    family = "t5" if model.config.is_encoder_decoder else "llama"
    examples = [e for path in args.data for e in encode_rows(tok, family, read_jsonl(path), path)]
    os.makedirs(args.out, exist_ok=True)
    model = train_sft(model, tok, examples, cfg, log_path=os.path.join(args.out, "train_log.jsonl"))
    if distributed()[0] == 0:
        save_pretrained(model, tok, args.out + "/checkpoint")
        with open(os.path.join(args.out, "train_config.json"), "w") as f:
            json.dump(asdict(cfg), f, indent=2)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"train_sft.py: error: {e}")
