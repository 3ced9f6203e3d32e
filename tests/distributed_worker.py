"""Run by tests/test_distributed.py under torchrun (2 processes, gloo): the same SFT and DPO steps of a
tiny random model under each strategy; rank 0 saves each result as a sharded checkpoint folder.

    torchrun --nproc_per_node 2 tests/distributed_worker.py OUT '{"model_type": "llama", ...}'
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data import Example  # noqa: E402
from distributed import DistributedConfig, finish, rank_and_world  # noqa: E402
from dpo import DPOConfig, Pair, train_dpo  # noqa: E402
from model import init_from_config, save_pretrained  # noqa: E402
from train_sft import train_sft  # noqa: E402
from trainer import TrainConfig  # noqa: E402

STRATEGIES = {"ddp": DistributedConfig("ddp"), "fsdp": DistributedConfig("fsdp"),
              "fsdp-checkpointed": DistributedConfig("fsdp", activation_checkpointing=True)}


class Tok:
    pad_id, eos_id, bos_id = 0, 2, 1


def random_ids(g, shortest, longest):
    return torch.randint(3, 50, (int(torch.randint(shortest, longest, (1,), generator=g)),), generator=g).tolist()


def main():
    out, config = Path(sys.argv[1]), json.loads(sys.argv[2])
    rank, _ = rank_and_world()
    g = torch.Generator().manual_seed(0)
    examples = [Example(random_ids(g, 2, 7), random_ids(g, 1, 6) + [2]) for _ in range(24)]
    pairs = [Pair(random_ids(g, 2, 7), random_ids(g, 1, 6) + [2], random_ids(g, 1, 6) + [2]) for _ in range(16)]
    for name, parallel in STRATEGIES.items():
        model = init_from_config(config, seed=0)
        model = train_sft(model, Tok(), examples, TrainConfig(lr=1e-2, steps=3, batch_size=8, micro_batch_size=2,
                                                                warmup_ratio=0.0), parallel=parallel)
        model = train_dpo(model, Tok(), pairs, DPOConfig(lr=1e-3, steps=2, batch_size=4, micro_batch_size=1,
                                                         warmup_ratio=0.0), parallel=parallel)
        if rank == 0:  # small shards, so that the index file is written and read too
            save_pretrained(model, None, out / name, max_shard_bytes=40_000)
    finish()


if __name__ == "__main__":
    main()
