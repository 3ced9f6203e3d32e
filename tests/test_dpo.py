"""DPO: the loss against hand-computed values, its gradient, one step's effect, the frozen reference."""
import copy
import json
import math

import pytest
import torch

from data import LLAMA
from dpo import DPOConfig, Pair, dpo_loss, pair_logps, read_pairs, train_dpo
from model import init_from_config

LLAMA_CONFIG = {"model_type": "llama", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}


def softplus(x):  # -log sigmoid(-x), written out independently of torch
    return math.log1p(math.exp(x))


def t(x):
    return torch.tensor([x], dtype=torch.float64)


# policy chosen -10, rejected -12; reference chosen -9, rejected -13; beta 0.1.
# log-ratios: chosen -1, rejected +1, so h = -2 (the policy prefers the rejected answer more than the reference).
CASES = {
    "sigmoid": (dict(), softplus(0.2)),                                   # -log sigma(-0.2)
    "cdpo": (dict(label_smoothing=0.1), 0.9 * softplus(0.2) + 0.1 * softplus(-0.2)),
    "ipo": (dict(loss_type="ipo"), (-2 - 1 / 0.2) ** 2),                  # (h - 1/(2 beta))^2 = 49
    "reference_free": (dict(reference_free=True), softplus(-0.2)),        # h = -10 - (-12) = 2
}


@pytest.mark.parametrize("case", CASES)
def test_loss_equals_hand_computed_values(case):
    kwargs, expected = CASES[case]
    losses, chosen_rewards, rejected_rewards = dpo_loss(t(-10.0), t(-12.0), t(-9.0), t(-13.0), beta=0.1, **kwargs)
    assert abs(losses.item() - expected) <= 1e-6
    if not kwargs.get("reference_free"):
        assert chosen_rewards.item() == pytest.approx(-0.1) and rejected_rewards.item() == pytest.approx(0.1)


@pytest.mark.parametrize("case", CASES)
def test_gradient_raises_chosen_and_lowers_rejected(case):
    chosen, rejected = t(-10.0).requires_grad_(), t(-12.0).requires_grad_()
    losses, _, _ = dpo_loss(chosen, rejected, t(-9.0), t(-13.0), beta=0.1, **CASES[case][0])
    losses.sum().backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()  # descent raises chosen, lowers rejected


class Tok:
    pad_id, eos_id, bos_id = 0, 2, 1


def make_pairs(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    rand = lambda lo, hi: torch.randint(3, 50, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g).tolist()  # noqa: E731
    return [Pair(rand(2, 6), rand(2, 6) + [2], rand(2, 6) + [2]) for _ in range(n)]


def margin(model, ref, pairs):
    with torch.no_grad():
        c, r, _ = pair_logps(model, pairs, 0)
        rc, rr, _ = pair_logps(ref, pairs, 0)
    return ((c - rc) - (r - rr)).mean().item()


def test_one_step_raises_the_margin_and_the_reference_is_untouched():
    pairs = make_pairs()
    policy = init_from_config(LLAMA_CONFIG, seed=0)
    ref = copy.deepcopy(policy)
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    assert margin(policy, ref, pairs) == 0.0  # policy == reference at the start
    train_dpo(policy, Tok(), pairs, DPOConfig(lr=1e-3, steps=1, batch_size=8, warmup_ratio=0.0), ref_model=ref)
    assert margin(policy, ref, pairs) > 0
    assert all(torch.equal(before[k], v) for k, v in ref.state_dict().items())  # bitwise


def test_precomputed_reference_gives_the_same_losses(tmp_path):
    pairs = make_pairs(12)
    logs = []
    for precompute_ref in (False, True):
        cfg = DPOConfig(lr=1e-3, steps=3, batch_size=6, micro_batch_size=4, warmup_ratio=0.0, nll_alpha=0.5,
                        precompute_ref=precompute_ref)
        train_dpo(init_from_config(LLAMA_CONFIG, seed=0), Tok(), pairs, cfg, log_path=tmp_path / "log.jsonl")
        logs.append([json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()])
    for frozen, precomputed in zip(*logs):
        for key in ("loss", "dpo_loss", "rewards_chosen", "rewards_rejected", "reward_margin"):
            assert frozen[key] == pytest.approx(precomputed[key], rel=1e-5, abs=1e-7), key


def test_nan_loss_stops_with_a_message():
    policy = init_from_config(LLAMA_CONFIG, seed=0)
    with torch.no_grad():
        policy.model.norm.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite loss or gradient at step 0"):
        train_dpo(policy, Tok(), make_pairs(), DPOConfig(steps=2, batch_size=8))


class TextTok(Tok):
    def encode(self, text):
        return [3 + ord(c) % 40 for c in text]


def test_bad_pairs_files(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("")
    with pytest.raises(ValueError, match="pairs.jsonl: no preference pairs"):
        read_pairs(path, TextTok(), LLAMA)
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "a"\n')
    with pytest.raises(ValueError, match="pairs.jsonl line 2"):
        read_pairs(path, TextTok(), LLAMA)
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "a"}\n')
    with pytest.raises(ValueError, match="pairs.jsonl line 2: missing or non-text field 'rejected'"):
        read_pairs(path, TextTok(), LLAMA)
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    (prompt, chosen, rejected, _, _), = read_pairs(path, TextTok(), LLAMA)
    assert chosen[-1] == rejected[-1] == 2 and prompt[0] == 1  # eos ends answers, bos starts the prompt
