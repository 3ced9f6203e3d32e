"""The optimizer loop SFT and DPO share: settings, schedule, optimizer, batches, accumulation and DDP.

    model = train_loop(model, examples, cfg, loss_fn, "sft", log_path)

As in the paper's code (Hugging Face's Trainer): AdamW, linear warmup, then cosine decay to 0.1x the
peak learning rate (HF's cosine_with_min_lr), gradient clipping at 1.0, gradient accumulation; bf16
autocast on CUDA. train_sft.py and dpo.py each bring their loss; this file knows no loss.
"""
import contextlib
import json
import math
import os
import random
from dataclasses import dataclass

import torch
import torch.distributed as dist
from tqdm import tqdm

from distributed import DistributedConfig, gradient_sync, rank_and_world, shards, unwrapped, wrap_for_training
from flags import check_settings, setting
from model.checkpoint import build_model


@dataclass
class TrainConfig:
    # AdamW and its schedule
    lr: float = setting(3e-4, "peak learning rate, reached after the warmup", above=0)
    weight_decay: float = setting(0.0, "AdamW weight decay, on matrices only", at_least=0)
    warmup_ratio: float = setting(0.03, "fraction of the steps spent warming up linearly", at_least=0, below=1)
    min_lr_ratio: float = setting(0.1, "cosine_with_min_lr: decay to this times the peak", at_least=0, at_most=1)
    max_grad_norm: float = setting(1.0, "gradient clipping", above=0)
    # how long, and in what batches
    epochs: float = setting(3.0, "passes over the examples (unless --steps is set)", above=0)
    steps: int = setting(0, "optimizer steps; 0 = as many as --epochs make", at_least=0)
    batch_size: int = setting(16, "examples per optimizer step, over all processes", at_least=1)
    micro_batch_size: int = setting(16, "examples per forward pass (batch_size / micro_batch_size = accumulation)",
                                    at_least=1)
    seed: int = setting(0, "order of the examples")

    def __post_init__(self):
        check_settings(self)

def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup over warmup_ratio of the steps, then cosine from the peak down to min_lr_ratio x peak."""
    warmup = math.ceil(cfg.warmup_ratio * total)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model, cfg: TrainConfig):
    """AdamW; weight decay on matrices only (not on norms, biases), as Hugging Face's Trainer does."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)


def global_batches(n_examples: int, cfg: TrainConfig, total_steps: int):
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


def total_steps(n_examples: int, cfg: TrainConfig) -> int:
    return cfg.steps or max(1, math.ceil(cfg.epochs * n_examples / cfg.batch_size))


def autocast(device, parallel: DistributedConfig):
    """bf16 autocast on CUDA; not when FSDP shards, as its MixedPrecisionPolicy gathers bf16 parameters itself."""
    if device.type != "cuda" or shards(parallel):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def train_loop(model, examples, cfg: TrainConfig, loss_fn, desc, log_path=None, dropout=True,
               parallel: DistributedConfig = DistributedConfig()):
    """Train on `examples` (records with an n_tokens property: SFT's Example, DPO's Pair); returns
    the trained model, whole and in eval mode, on every process.

    loss_fn(model, micro_batch, global_batch) returns (loss, metrics), each already divided by the
    size of the whole global batch (in tokens or pairs): summed over micro-batches and processes they
    give the global batch's mean, so accumulation, DDP and FSDP give the same update as one big batch."""
    rank, world = rank_and_world()
    if cfg.batch_size % world:  # else processes would run different numbers of micro-batches and hang
        raise ValueError(f"{desc}: batch_size {cfg.batch_size} is not a multiple of the {world} processes")
    device, config = model.lm_head.weight.device, model.config
    model = wrap_for_training(model, parallel, world)  # plain, DDP, or FSDP2 (sharded in place)
    core = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    model.train(dropout)  # DPO trains with dropout off: eval mode changes nothing else in our models
    optimizer = make_optimizer(core, cfg)  # under FSDP: over this process's shards only
    steps = total_steps(len(examples), cfg)
    # The log grows under a temporary name (tail it to watch) and takes its own name when training ends,
    # so a crash never leaves a train_log.jsonl that looks like a finished run's.
    log = open(f"{log_path}.part", "w") if log_path and rank == 0 else None
    n_tokens = [example.n_tokens for example in examples]
    bar = tqdm(global_batches(len(examples), cfg, steps), total=steps, desc=desc, disable=rank != 0)
    for step, batch in enumerate(bar):
        mine = batch[rank::world]  # this process's share of the global batch
        # Micro-batches of similar lengths pad less; the summed gradient is the same in any order.
        mine.sort(key=n_tokens.__getitem__)
        micro = [mine[i:i + cfg.micro_batch_size] for i in range(0, len(mine), cfg.micro_batch_size)]
        metrics = {}
        for i, part in enumerate(micro):
            with gradient_sync(model, i == len(micro) - 1), autocast(device, parallel):
                loss, m = loss_fn(model, [examples[j] for j in part], [examples[j] for j in batch])
            (loss * world).backward()  # DDP and FSDP average gradients over processes; we want their sum
            for key, value in m.items():
                metrics[key] = metrics.get(key, 0.0) + value
        if world > 1:  # each process holds its share of the global mean: add them up
            values = torch.tensor([metrics[k] for k in sorted(metrics)], dtype=torch.float64, device=device)  # NCCL: on the GPU
            dist.all_reduce(values)
            metrics = dict(zip(sorted(metrics), values.tolist()))
        grad_norm = torch.nn.utils.clip_grad_norm_(core.parameters(), cfg.max_grad_norm)
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)  # FSDP: a DTensor
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
        os.replace(f"{log_path}.part", log_path)
    del optimizer  # its state is the largest part: free it before FSDP gathers the whole model
    # FSDP: gather the shards into a whole model (every process samples with it; rank 0 saves it)
    return unwrapped(core, lambda: build_model(config)).eval()
