"""The DPO step of DPO-ST (paper section 3.2): train the SFT model on preference pairs built from its own
samples (correct = chosen, incorrect = rejected), against a frozen copy of itself as the reference.

    python dpo.py --model SFT_DIR --pairs pairs.jsonl --out DIR [--beta 0.1 --lr 3e-7 --steps 100]
    python dpo.py ... --precompute-ref      # reference log-probs in one pass first, then free the reference

Paper values (section 4, Table 5; exp_config/*/dpo-1.yaml in its code): beta 0.1; T5 batch 96,
150 steps, lr 7e-7; Llama batch 128, 100 steps, lr 3e-7; warmup 10%, cosine to 0.1x, weight decay
0.01. Dropout is off in both models. The optimizer loop is trainer.py's.
"""
import copy
import functools
import os
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from data import Format, format_for, read_jsonl
from distributed import DistributedConfig, finish, gather_json, process_device, rank_and_world, shards
from flags import Parser, add_flags, check_flags, from_flags, setting
from model import load_pretrained, save_pretrained
from model.logprobs import answer_logprobs
from trainer import TrainConfig, autocast, train_loop

LOSS_TYPES = ("sigmoid", "ipo")


@dataclass
class DPOConfig(TrainConfig):
    """The optimizer's settings (TrainConfig's, with the paper's Llama DPO values as defaults: see the
    module docstring; the T5 presets set T5's) and the DPO loss's."""
    lr: float = setting(3e-7, "peak learning rate (paper: 3e-7 Llama, 7e-7 T5)", above=0)
    weight_decay: float = setting(0.01, "AdamW weight decay, on matrices only (paper: 0.01)", at_least=0)
    warmup_ratio: float = setting(0.1, "fraction of the steps spent warming up linearly (paper: 0.1)",
                                  at_least=0, below=1)
    steps: int = setting(100, "optimizer steps (paper: 100 Llama, 150 T5); 0 = as many as --epochs make",
                         at_least=0)
    beta: float = setting(0.1, "strength of the KL penalty towards the reference (paper: 0.1)", above=0)
    loss_type: str = setting("sigmoid", "sigmoid: DPO (the paper's); ipo: IPO", choices=LOSS_TYPES)
    label_smoothing: float = setting(0.0, "conservative DPO's epsilon: how often a pair's label is taken as flipped",
                                     at_least=0, below=0.5)
    reference_free: bool = setting(False, "take the reference as uniform (its log-ratios are 0)")
    nll_alpha: float = setting(0.0, "weight of an NLL term on the chosen answer (0 = the paper's plain DPO)",
                               at_least=0)
    precompute_ref: bool = setting(False, "score the pairs with the reference once, then free it")

class Pair(NamedTuple):
    """A preference pair as token ids, and the reference's summed log-probs once precomputed."""
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    ref_chosen: float | None = None
    ref_rejected: float | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.prompt) + len(self.chosen) + len(self.rejected)


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta=DPOConfig.beta, loss_type=DPOConfig.loss_type, label_smoothing=DPOConfig.label_smoothing,
             reference_free=DPOConfig.reference_free):
    """Per-pair losses and the implicit rewards of chosen and rejected answers.

    With log-ratios r(y) = log pi_theta(y|x) - log pi_ref(y|x) of whole answers (summed over tokens),
    h = r(y_chosen) - r(y_rejected), and sigma the logistic function:
      sigmoid  DPO (Rafailov et al. 2023, eq. 7):   L = -log sigma(beta h)
               with label_smoothing eps, conservative DPO (Mitchell 2023):
                                                    L = -(1 - eps) log sigma(beta h) - eps log sigma(-beta h)
      ipo      IPO (Azar et al. 2023, eq. 17):      L = (h - 1 / (2 beta))^2
    reference_free: pi_ref is taken as uniform, i.e. the reference log-ratios are 0.
    rewards: beta * r(y), the DPO paper's implicit reward (detached: for logging).
    """
    if reference_free:
        ref_chosen_logps = ref_rejected_logps = torch.zeros_like(policy_chosen_logps)
    h = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown loss_type {loss_type!r} ({' or '.join(LOSS_TYPES)})")
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def pair_logps(model, pairs, pad_id):
    """Summed log-probs of chosen and rejected answers, and the chosen answers' lengths.
    Chosen and rejected go through the model in one concatenated forward pass."""
    prompts = [p.prompt for p in pairs] * 2
    answers = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    logps, mask = answer_logprobs(model, prompts, answers, pad_id)
    n = len(pairs)
    return logps[:n].sum(-1), logps[n:].sum(-1), mask[:n].sum(-1)


def dpo_batch_loss(model, part, batch, ref_model, cfg: DPOConfig, pad_id):
    """DPO loss (+ optional NLL on the chosen answer) of a micro-batch, divided by the global batch size."""
    chosen, rejected, chosen_len = pair_logps(model, part, pad_id)
    if ref_model is None:  # precomputed: the pairs carry the reference's log-probs
        ref_chosen = torch.tensor([p.ref_chosen for p in part], device=chosen.device)
        ref_rejected = torch.tensor([p.ref_rejected for p in part], device=chosen.device)
    else:
        with torch.no_grad():
            ref_chosen, ref_rejected, _ = pair_logps(ref_model, part, pad_id)
    losses, chosen_rewards, rejected_rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, cfg.beta,
                                                        cfg.loss_type, cfg.label_smoothing, cfg.reference_free)
    n = len(batch)
    loss = losses.sum() / n
    # Optional NLL on the chosen answer, per token (as TRL's rpo_alpha; iterative RPO, Pang et al. 2024):
    # keeps the chosen answers' likelihood from falling with the rejected ones. 0 = the paper's plain DPO.
    nll = (-chosen / chosen_len).sum() / n
    if cfg.nll_alpha:
        loss = loss + cfg.nll_alpha * nll
    return loss, {"loss": loss.item(), "dpo_loss": losses.sum().item() / n, "nll": nll.item(),
                  "rewards_chosen": chosen_rewards.sum().item() / n,
                  "rewards_rejected": rejected_rewards.sum().item() / n,
                  "reward_accuracy": (chosen_rewards > rejected_rewards).float().sum().item() / n,
                  "reward_margin": (chosen_rewards - rejected_rewards).sum().item() / n}


@torch.no_grad()
def precompute_reference(ref_model, pairs, pad_id, batch_size=16):
    """The pairs, each with the reference's summed log-probs of its chosen and rejected answers.
    Under torchrun each process scores every world-th batch and all of them get every score."""
    rank, world = rank_and_world()
    scores = []  # [[index of the pair, chosen, rejected], ...] of this process's batches
    for i in range(rank * batch_size, len(pairs), world * batch_size):
        ref_chosen, ref_rejected, _ = pair_logps(ref_model, pairs[i:i + batch_size], pad_id)
        scores += [[i + j, c, r] for j, (c, r) in enumerate(zip(ref_chosen.tolist(), ref_rejected.tolist()))]
    out = list(pairs)
    for i, c, r in (s for shard in gather_json(scores) for s in shard):
        out[i] = out[i]._replace(ref_chosen=c, ref_rejected=r)
    return out


def train_dpo(model, tok, pairs, cfg: DPOConfig, log_path=None, ref_model=None,
              parallel: DistributedConfig = DistributedConfig()):
    """Train on Pairs; returns the trained policy (eval mode).
    The reference is a frozen copy of the policy as it starts (or the given ref_model). When FSDP
    shards the policy the reference is always precomputed: a whole frozen copy would undo the sharding."""
    if cfg.precompute_ref or shards(parallel):
        # Before its first step the policy is the reference: without a given one, score the pairs with
        # the policy itself (no copy), in the precision training computes in (bf16 autocast on CUDA).
        scorer = model if ref_model is None else ref_model
        with autocast(model.lm_head.weight.device, DistributedConfig()):
            pairs = precompute_reference(scorer.eval(), pairs, tok.pad_id)
        ref_model = None  # training needs only the numbers
    elif ref_model is None:
        ref_model = copy.deepcopy(model)
    if ref_model is not None:
        ref_model.eval().requires_grad_(False)
    loss_fn = functools.partial(dpo_batch_loss, ref_model=ref_model, cfg=cfg, pad_id=tok.pad_id)
    return train_loop(model, pairs, cfg, loss_fn, "dpo", log_path, dropout=False, parallel=parallel)


def read_pairs(path, tok, fmt: Format) -> list[Pair]:
    rows = read_jsonl(path)
    if not rows:
        raise ValueError(f"{path}: no preference pairs")
    pairs = []
    for line, row in enumerate(rows, 1):
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{path} line {line}: missing or non-text field '{key}'")
        if row["chosen"].strip() == row["rejected"].strip():
            raise ValueError(f"{path} line {line}: chosen and rejected are the same answer (a pair must differ)")
        prompt, chosen = fmt.encode_example(tok, row["prompt"], row["chosen"])
        pairs.append(Pair(prompt, chosen, fmt.encode_example(tok, row["prompt"], row["rejected"]).answer))
    return pairs


def main():
    ap = Parser(__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the SFT checkpoint: policy and frozen reference")
    ap.add_argument("--pairs", required=True, help="JSONL of {prompt, chosen, rejected}")
    ap.add_argument("--out", required=True, help="folder for checkpoint/ and train_log.jsonl")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:N, mps")
    add_flags(ap, DPOConfig)
    add_flags(ap, DistributedConfig)
    args = ap.parse_args()
    cfg = from_flags(ap, args, DPOConfig)
    parallel = from_flags(ap, args, DistributedConfig)
    check_flags(ap, args)
    model, tok = load_pretrained(args.model, device=process_device(args.device))
    pairs = read_pairs(args.pairs, tok, format_for(model.config.model_type))
    os.makedirs(args.out, exist_ok=True)
    model = train_dpo(model, tok, pairs, cfg, log_path=os.path.join(args.out, "train_log.jsonl"), parallel=parallel)
    if rank_and_world()[0] == 0:
        save_pretrained(model, tok, os.path.join(args.out, "checkpoint"))
    finish()


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        # A NaN stops training before any step with it is saved: the input checkpoint stays the last good one.
        raise SystemExit(f"dpo.py: error: {e}")
