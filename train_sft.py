"""Supervised fine-tuning (SFT): maximize log p(answer | question) on labeled (and pseudo-labeled) data.

The paper's Algorithm 1 runs SFT twice: the warm-up on the labeled set, and in every iteration again
FROM THE BASE MODEL on labeled ∪ pseudo-labeled data. The loss counts answer tokens (+EOS) only;
prompt and padding tokens are masked (model/logprobs.py). The optimizer loop is trainer.py's.

    python train_sft.py --model DIR --data labeled.jsonl [pseudo.jsonl ...] --out DIR [--epochs 3 --lr 3e-4]
    python train_sft.py --init-config config.json --tokenizer DIR ...   (random init of an HF-style config.json)
    torchrun --nproc_per_node 2 train_sft.py ...                        (DDP: gloo or NCCL)
"""
import functools
import json
import os
from dataclasses import asdict

import torch

from data import Format, format_for, read_jsonl, write_atomically
from distributed import DistributedConfig, finish, process_device, rank_and_world
from flags import Parser, add_flags, check_flags, from_flags
from model import config_from_dict, init_from_config, load_pretrained, load_tokenizer, save_pretrained
from model.logprobs import answer_logprobs
from trainer import TrainConfig, train_loop


def sft_loss(model, part, batch, pad_id):
    """Negative log-likelihood of the answer tokens, divided by the global batch's answer tokens."""
    n_tokens = sum(len(example.answer) for example in batch)
    logps, _ = answer_logprobs(model, [e.prompt for e in part], [e.answer for e in part], pad_id)
    loss = -logps.sum() / n_tokens
    return loss, {"loss": loss.item()}


def train_sft(model, tok, examples, cfg: TrainConfig, log_path=None, parallel: DistributedConfig = DistributedConfig()):
    """Train on Examples (prompt ids, answer ids); returns the model in eval mode."""
    return train_loop(model, examples, cfg, functools.partial(sft_loss, pad_id=tok.pad_id), "sft", log_path,
                      parallel=parallel)


def encode_rows(tok, fmt: Format, rows, where):
    """Labeled rows {question, answer} -> Examples in the model's format."""
    examples = []
    for i, row in enumerate(rows, 1):
        if not row.get("answer"):
            raise ValueError(f"{where} line {i}: no 'answer' to train on")
        examples.append(fmt.encode_example(tok, row["question"], fmt.format_answer(row["answer"])))
    return examples


def main():
    ap = Parser(__doc__.split("\n\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="start from this checkpoint folder")
    source.add_argument("--init-config", help="start from a random init of this HF-style config.json")
    ap.add_argument("--tokenizer", help="tokenizer folder (with --init-config)")
    ap.add_argument("--data", nargs="+", required=True, help="JSONL files of {question, answer}")
    ap.add_argument("--out", required=True, help="folder for checkpoint/, train_log.jsonl, train_config.json")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:N, mps")
    add_flags(ap, TrainConfig)
    add_flags(ap, DistributedConfig)
    args = ap.parse_args()
    cfg = from_flags(ap, args, TrainConfig)
    parallel = from_flags(ap, args, DistributedConfig)
    check_flags(ap, args)
    device = process_device(args.device)
    if args.model:
        model, tok = load_pretrained(args.model, device=device)
    else:
        with open(args.init_config) as f:
            config = config_from_dict(json.load(f), args.init_config)
        if args.tokenizer is None:
            raise ValueError("--init-config needs --tokenizer DIR")
        tok = load_tokenizer(args.tokenizer, config.model_type)
        model = init_from_config(config, seed=cfg.seed).to(device)
    fmt = format_for(model.config.model_type)
    examples = [e for path in args.data for e in encode_rows(tok, fmt, read_jsonl(path), path)]
    if not examples:
        raise ValueError(f"{', '.join(args.data)}: no examples to train on")
    os.makedirs(args.out, exist_ok=True)
    model = train_sft(model, tok, examples, cfg, log_path=os.path.join(args.out, "train_log.jsonl"), parallel=parallel)
    if rank_and_world()[0] == 0:
        save_pretrained(model, tok, args.out + "/checkpoint")
        write_atomically(os.path.join(args.out, "train_config.json"), (json.dumps(asdict(cfg), indent=2) + "\n").encode())
    finish()


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"train_sft.py: error: {e}")
