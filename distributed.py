"""One process or many: every stage runs the same code alone or under torchrun.

    rank, world = distributed.rank_and_world()   # (0, 1) alone; starts the process group under torchrun
    device = distributed.process_device("cuda", rank)

Under torchrun each process computes its share (DDP for training, a slice of the questions for
sampling) and rank 0 writes the files. Distribution is PyTorch's own (torch.distributed), not ours.
"""
import os

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); starts the process group when run under torchrun (NCCL on GPUs, else gloo)."""
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def process_device(device: str, rank: int) -> torch.device:
    """This process's device: each process gets its own GPU."""
    return torch.device(f"cuda:{rank}" if device == "cuda" else device)


def finish():
    """Wait for every process, then close the process group. A process that just exits while others
    still use the group can abort (SIGABRT) in gloo's teardown."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
