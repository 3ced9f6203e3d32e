"""SFT: the loss sees answer tokens only, padding changes nothing, the schedule, accumulation and DDP."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import init_from_config, load_pretrained
from model.logprobs import answer_logprobs
from data import Example
from train_sft import train_sft
from trainer import TrainConfig, lr_at

ROOT = Path(__file__).resolve().parents[1]
LLAMA = {"model_type": "llama", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
T5 = {"model_type": "t5", "vocab_size": 50, "d_model": 32, "d_kv": 8, "d_ff": 48, "num_layers": 2,
      "num_heads": 4, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "dropout_rate": 0.0}
PROMPTS = [[1, 7, 8, 9, 10], [1, 11, 12]]
ANSWERS = [[20, 21, 2], [22, 23, 24, 25, 26, 2]]


class Tok:
    pad_id, eos_id, bos_id = 0, 2, 1


def test_llama_logprobs_are_the_answer_tokens_of_a_plain_forward():
    model = init_from_config(LLAMA, seed=0).eval()
    logps, mask = answer_logprobs(model, PROMPTS, ANSWERS, pad_id=0)
    for row, (prompt, answer) in enumerate(zip(PROMPTS, ANSWERS)):
        with torch.no_grad():
            log_probs = model(torch.tensor([prompt + answer]))[0].log_softmax(-1)
        for i, token in enumerate(answer):  # token i of the answer is predicted at position len(prompt)+i-1
            assert torch.isclose(logps[row, i], log_probs[len(prompt) + i - 1, token], atol=1e-5)
        assert mask[row].tolist() == [1] * len(answer) + [0] * (mask.shape[1] - len(answer))
        assert torch.all(logps[row, len(answer):] == 0)


def test_t5_logprobs_are_the_answer_tokens_of_a_plain_forward():
    model = init_from_config(T5, seed=0).eval()
    logps, _ = answer_logprobs(model, PROMPTS, ANSWERS, pad_id=0)
    for row, (prompt, answer) in enumerate(zip(PROMPTS, ANSWERS)):
        with torch.no_grad():
            log_probs = model(torch.tensor([prompt]), decoder_input_ids=torch.tensor([[0] + answer[:-1]]))[0]
        log_probs = log_probs.log_softmax(-1)
        for i, token in enumerate(answer):
            assert torch.isclose(logps[row, i], log_probs[i, token], atol=1e-5)


@pytest.mark.parametrize("config", [LLAMA, T5], ids=["llama", "t5"])
def test_padding_and_batch_neighbours_do_not_change_an_example(config):
    model = init_from_config(config, seed=1).eval()
    together, _ = answer_logprobs(model, PROMPTS, ANSWERS, pad_id=0)
    for row in range(2):
        alone, _ = answer_logprobs(model, PROMPTS[row:row + 1], ANSWERS[row:row + 1], pad_id=0)
        n = len(ANSWERS[row])
        assert torch.allclose(alone[0, :n], together[row, :n], atol=1e-5)


def test_learning_rate_schedule():
    cfg = TrainConfig(lr=1.0, warmup_ratio=0.1, min_lr_ratio=0.1)
    # 100 steps: 10 warmup steps climbing to the peak, then cosine from 1.0 down to 0.1.
    assert lr_at(0, 100, cfg) == pytest.approx(0.1)
    assert lr_at(9, 100, cfg) == pytest.approx(1.0)
    assert lr_at(10, 100, cfg) == pytest.approx(1.0)
    assert lr_at(55, 100, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert lr_at(100, 100, cfg) == pytest.approx(0.1)


def make_examples(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Example(torch.randint(3, 50, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist(),
             torch.randint(3, 50, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist() + [2])
            for _ in range(n)]


def test_sft_lowers_the_loss_and_accumulation_equals_one_big_batch(tmp_path):
    examples = make_examples()
    cfg = TrainConfig(lr=1e-2, steps=12, batch_size=8, micro_batch_size=8, warmup_ratio=0.0)
    big = train_sft(init_from_config(LLAMA, seed=0), Tok(), examples, cfg, log_path=tmp_path / "log.jsonl")
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 12 and log[-1]["loss"] < 0.8 * log[0]["loss"]
    cfg.micro_batch_size = 3  # 3 + 3 + 2 examples per step, gradients accumulated
    accumulated = train_sft(init_from_config(LLAMA, seed=0), Tok(), examples, cfg)
    for a, b in zip(big.parameters(), accumulated.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_two_process_gloo_run_equals_one_process(tmp_path):
    from test_calculator_decoding import tiny_sentencepiece
    tok = tiny_sentencepiece(tmp_path)
    config = {**LLAMA, "vocab_size": tok.vocab_size}
    (tmp_path / "config.json").write_text(json.dumps(config))
    rows = [{"question": f"What is {a} plus {b}?", "answer": f"{a}+{b} = <<{a}+{b}={a + b}>>{a + b}\n#### {a + b}"}
            for a in range(3, 9) for b in range(2, 5)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["train_sft.py", "--init-config", tmp_path / "config.json", "--tokenizer", tmp_path,
              "--data", tmp_path / "data.jsonl", "--steps", 4, "--batch-size", 8, "--micro-batch-size", 4,
              "--lr", 1e-2, "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, launcher in [("one", [sys.executable]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                    "--master_port", "29517"])]:
        result = subprocess.run([*launcher, *map(str, common), "--out", str(tmp_path / name)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    one, _ = load_pretrained(tmp_path / "one" / "checkpoint")
    two, _ = load_pretrained(tmp_path / "two" / "checkpoint")
    assert max((a - b).abs().max().item() for a, b in zip(one.parameters(), two.parameters())) <= 1e-5
    losses = [json.loads(line)["loss"] for line in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
    losses2 = [json.loads(line)["loss"] for line in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(losses, losses2))


def test_a_run_that_fails_leaves_no_train_log(tmp_path):
    """The log grows under a temporary name: a crash at step 3 leaves no train_log.jsonl."""
    from trainer import train_loop
    steps = []

    def failing_loss(model, part, batch):
        steps.append(len(steps))
        if len(steps) == 3:
            raise FloatingPointError("a non-finite loss")
        loss = model(torch.tensor([[1, 2, 3]])).float().pow(2).mean()
        return loss, {"loss": loss.item()}

    cfg = TrainConfig(lr=1e-3, steps=5, batch_size=2, micro_batch_size=2)
    with pytest.raises(FloatingPointError):
        train_loop(init_from_config(LLAMA, seed=0), make_examples(), cfg, failing_loss, "sft", tmp_path / "train_log.jsonl")
    assert not (tmp_path / "train_log.jsonl").exists()
    assert len((tmp_path / "train_log.jsonl.part").read_text().splitlines()) == 2  # the steps it finished
