"""One process or many: every stage runs the same code alone or under torchrun.

    rank, world = distributed.rank_and_world()   # (0, 1) alone; starts the process group under torchrun
    device = distributed.process_device("cuda")
    model = distributed.wrap_for_training(model, DistributedConfig(strategy="fsdp"), world)

Under torchrun each process computes its share -- DDP or FSDP2 for training, every world-th batch of
questions for sampling -- and rank 0 writes the files. Distribution is PyTorch's own
(torch.distributed: DistributedDataParallel, FSDP2's fully_shard, torch.utils.checkpoint), not ours.

  ddp   every process holds the whole model and optimizer; gradients are averaged. Fits when
        16 bytes a parameter (fp32 weights, gradients, Adam's two moments) fit one GPU.
  fsdp  FSDP2: each block's parameters, gradients and optimizer state are split over the processes
        and gathered block by block for the forward and backward (ZeRO-3). A 7B model's ~112 GB of
        training state becomes ~112/N GB a GPU. On CUDA the gathered parameters are bf16 and the
        gradients are reduced in fp32 (MixedPrecisionPolicy).

An error on one process ends that process; on one node torchrun then stops the others. On several
nodes the others wait in their next collective until its timeout (NCCL's default: 10 minutes).
"""
import contextlib
import functools
import json
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.checkpoint import checkpoint

from flags import check_settings, setting
from model.checkpoint import tie_output_head

STRATEGIES = ("ddp", "fsdp")


@dataclass
class DistributedConfig:
    strategy: str = setting("ddp", "how training uses several processes: ddp (whole model each) or fsdp "
                                   "(FSDP2, parameters sharded by block)", choices=STRATEGIES)
    activation_checkpointing: bool = setting(False, "recompute each block's activations in the backward "
                                                    "instead of keeping them (less memory, ~1/3 more compute)")

    def __post_init__(self):
        check_settings(self)


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); starts the process group when run under torchrun (NCCL on GPUs, else gloo)."""
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())  # NCCL's collectives use the current device
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def local_rank() -> int:
    """This process's number on its node (torchrun sets LOCAL_RANK); its GPU's index."""
    return int(os.environ.get("LOCAL_RANK", 0))


def process_device(device: str) -> torch.device:
    """This process's device: under torchrun each process gets its own GPU of its node."""
    return torch.device(f"cuda:{local_rank()}" if device == "cuda" else device)


def barrier():
    if dist.is_initialized():
        dist.barrier()


def gather_json(value) -> list:
    """Every process's `value` (anything JSON can write), as a list in rank order, on every process.
    JSON, not all_gather_object, whose wire format is Python object serialization, which this project never reads."""
    if not dist.is_initialized():
        return [value]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    data = torch.frombuffer(bytearray(json.dumps(value).encode()), dtype=torch.uint8).to(device)
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([len(data)], device=device))
    longest = max(int(s) for s in sizes)
    parts = [torch.zeros(longest, dtype=torch.uint8, device=device) for _ in sizes]
    dist.all_gather(parts, torch.cat([data, data.new_zeros(longest - len(data))]))
    return [json.loads(bytes(p[:int(s)].cpu().tolist()).decode()) for p, s in zip(parts, sizes)]


def agree(value):
    """Rank 0's `value` on every process: one decision (is this stage done?) that all of them follow."""
    return gather_json(value)[0]


def finish():
    """Wait for every process, then close the process group. A process that just exits while others
    still use the group can abort (SIGABRT) in gloo's teardown."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# --- training on several processes ------------------------------------------------------------

def blocks(model) -> list[torch.nn.Module]:
    """The units that FSDP shards and activation checkpointing recomputes: the modules the forward
    pass calls one after another. Llama: its decoder layers; T5: each block's sub-layers (attention,
    cross-attention, feed-forward), which T5.encode/decode call one by one."""
    if model.config.is_encoder_decoder:
        return [sub for stack in (model.encoder, model.decoder) for block in stack.block for sub in block.layer]
    return list(model.model.layers)


def checkpoint_activations(model):
    """Each block keeps only its input in the forward and recomputes the rest in the backward. Only
    while gradients are on: sampling with the trained model runs the plain forward."""
    for block in blocks(model):
        def forward(*args, plain=block.forward, **kwargs):
            if not torch.is_grad_enabled():
                return plain(*args, **kwargs)
            return checkpoint(plain, *args, use_reentrant=False, **kwargs)
        block.forward = forward


def wrap_for_training(model, parallel: DistributedConfig, world: int):
    """The model as the optimizer loop trains it: plain (one process), DDP, or FSDP2 sharded by block.
    Called once per training run, on a model loaded for this run (FSDP changes it in place)."""
    if parallel.activation_checkpointing:
        checkpoint_activations(model)
    if not shards(parallel):
        return torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    on_cuda = model.lm_head.weight.is_cuda
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if on_cuda else MixedPrecisionPolicy()
    for block in blocks(model):
        # T5's relative position bias is read outside its sub-layer (T5.encode/decode compute it once
        # for all layers), so the sub-layer that owns it stays with the root, whose parameters are whole
        # for the whole forward.
        if not any("relative_attention_bias" in name for name, _ in block.named_parameters()):
            fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)  # the rest: embeddings, final norm, head (tied weights stay one tensor)
    return model


def shards(parallel: DistributedConfig) -> bool:
    """Does training shard the model? Under FSDP with a process group (torchrun, even of one process)."""
    return parallel.strategy == "fsdp" and dist.is_initialized()


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def gradient_sync(model, sync: bool):
    """DDP: reduce gradients on this micro-batch's backward (the last of a step) or keep accumulating
    locally. FSDP reduce-scatters every micro-batch's: accumulating locally would keep the whole,
    unsharded gradients on every GPU (in fp32), which is what sharding is there to avoid."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel) and not sync:
        return model.no_sync()
    return contextlib.nullcontext()


def unwrapped(model, build):
    """A plain, whole model with the trained weights, on every process: `model` itself unless FSDP
    sharded it; then its full state dict, gathered on the shards' device, becomes the weights of
    `build()`, a model of the same config made on the meta device. So the whole weights exist once,
    not twice (the gathered dict and a fresh model's own copy: for Llama-2-7B, 27 GB more a GPU)."""
    if not is_sharded(model):
        return model
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    with torch.device("meta"):
        whole = build()
    whole.load_state_dict(state, assign=True)  # the model takes the gathered tensors as its own
    tie_output_head(whole)  # the state dict holds a tied head under both names: one tensor again
    return whole
