"""The DPO step of DPO-ST (paper section 3.2): train the SFT model on preference pairs built from its own
samples (correct = chosen, incorrect = rejected), against a frozen copy of itself as the reference.

    python dpo.py --model SFT_DIR --pairs pairs.jsonl --out DIR [--beta 0.1 --lr 3e-7 --steps 100]
    python dpo.py ... --precompute-ref      # reference log-probs in one pass first, then free the reference

Paper defaults (section 4, Table 5): beta 0.1; T5 batch 96, 150 steps, lr 7e-7; Llama batch 128,
100 steps, lr 3e-7; warmup 10%, cosine to 0.1x. Dropout is off in both models.
"""
import argparse
import copy
import functools
import os

import torch
import torch.nn.functional as F

from data import read_jsonl
from data.formats import encode_example
from model import load_pretrained, save_pretrained
from model.logprobs import answer_logprobs
from train_sft import TrainConfig, add_train_arguments, distributed, parse_train_arguments, train_loop


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta=0.1, loss_type="sigmoid", label_smoothing=0.0, reference_free=False):
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
        raise ValueError(f"unknown loss_type {loss_type!r} (sigmoid or ipo)")
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def pair_logps(model, pairs, pad_id):
    """Summed log-probs of chosen and rejected answers, and the chosen answers' lengths.
    Chosen and rejected go through the model in one concatenated forward pass."""
    prompts = [p[0] for p in pairs] * 2
    answers = [p[1] for p in pairs] + [p[2] for p in pairs]
    logps, mask = answer_logprobs(model, prompts, answers, pad_id)
    n = len(pairs)
    return logps[:n].sum(-1), logps[n:].sum(-1), mask[:n].sum(-1)


def dpo_batch_loss(model, part, batch, ref_model, args, pad_id):
    """DPO loss (+ optional NLL on the chosen answer) of a micro-batch, divided by the global batch size."""
    chosen, rejected, chosen_len = pair_logps(model, part, pad_id)
    if ref_model is None:  # precomputed: examples carry (ref_chosen, ref_rejected)
        ref_chosen = torch.tensor([p[3] for p in part], device=chosen.device)
        ref_rejected = torch.tensor([p[4] for p in part], device=chosen.device)
    else:
        with torch.no_grad():
            ref_chosen, ref_rejected, _ = pair_logps(ref_model, part, pad_id)
    losses, chosen_rewards, rejected_rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, args.beta,
                                                        args.loss_type, args.label_smoothing, args.reference_free)
    n = len(batch)
    loss = losses.sum() / n
    # Optional NLL on the chosen answer, per token (as TRL's rpo_alpha): keeps the chosen answers'
    # likelihood from falling with the rejected ones (PROBE.md). 0 = the paper's plain DPO.
    nll = (-chosen / chosen_len).sum() / n
    if args.nll_alpha:
        loss = loss + args.nll_alpha * nll
    return loss, {"loss": loss.item(), "dpo_loss": losses.sum().item() / n, "nll": nll.item(),
                  "rewards_chosen": chosen_rewards.sum().item() / n,
                  "rewards_rejected": rejected_rewards.sum().item() / n,
                  "reward_accuracy": (chosen_rewards > rejected_rewards).float().sum().item() / n,
                  "reward_margin": (chosen_rewards - rejected_rewards).sum().item() / n}


@torch.no_grad()
def precompute_reference(ref_model, pairs, pad_id, batch_size=16):
    """(prompt, chosen, rejected) -> (prompt, chosen, rejected, ref_chosen_logp, ref_rejected_logp)."""
    out = []
    for i in range(0, len(pairs), batch_size):
        part = pairs[i:i + batch_size]
        ref_chosen, ref_rejected, _ = pair_logps(ref_model, part, pad_id)
        out += [(*p[:3], c, r) for p, c, r in zip(part, ref_chosen.tolist(), ref_rejected.tolist())]
    return out


def train_dpo(model, tok, pairs, cfg: TrainConfig, args, log_path=None, ref_model=None):
    """pairs: (prompt_ids, chosen_ids, rejected_ids). Returns the trained policy (eval mode).
    The reference is a frozen copy of the policy as it starts (or the given ref_model)."""
    if ref_model is None:
        ref_model = copy.deepcopy(model)
    ref_model.eval().requires_grad_(False)
    if args.precompute_ref:
        pairs = precompute_reference(ref_model, pairs, tok.pad_id)
        ref_model = None  # freed: training needs only the numbers
    loss_fn = functools.partial(dpo_batch_loss, ref_model=ref_model, args=args, pad_id=tok.pad_id)
    return train_loop(model, pairs, cfg, loss_fn, "dpo", log_path, dropout=False)


def read_pairs(path, tok, family):
    rows = read_jsonl(path)
    if not rows:
        raise ValueError(f"{path}: no preference pairs")
    pairs = []
    for line, row in enumerate(rows, 1):
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{path} line {line}: missing or non-text field '{key}'")
        prompt, chosen = encode_example(tok, family, row["prompt"], row["chosen"])
        pairs.append((prompt, chosen, encode_example(tok, family, row["prompt"], row["rejected"])[1]))
    return pairs


def add_dpo_arguments(ap):
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--loss-type", choices=["sigmoid", "ipo"], default="sigmoid")
    ap.add_argument("--label-smoothing", type=float, default=0.0, help="conservative DPO's epsilon")
    ap.add_argument("--reference-free", action="store_true")
    ap.add_argument("--nll-alpha", type=float, default=0.0, help="weight of an NLL term on the chosen answer")
    ap.add_argument("--precompute-ref", action="store_true")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="the SFT checkpoint: policy and frozen reference")
    ap.add_argument("--pairs", required=True, help="JSONL of {prompt, chosen, rejected}")
    ap.add_argument("--out", required=True)
    add_dpo_arguments(ap)
    add_train_arguments(ap)
    args, cfg, device = parse_train_arguments(ap)
    model, tok = load_pretrained(args.model, device=device)
    pairs = read_pairs(args.pairs, tok, "t5" if model.config.is_encoder_decoder else "llama")
    os.makedirs(args.out, exist_ok=True)
    model = train_dpo(model, tok, pairs, cfg, args, log_path=os.path.join(args.out, "train_log.jsonl"))
    if distributed()[0] == 0:
        save_pretrained(model, tok, os.path.join(args.out, "checkpoint"))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        # A NaN stops training before any step with it is saved: the input checkpoint stays the last good one.
        raise SystemExit(f"dpo.py: error: {e}")
