"""Several processes (torchrun, gloo, on CPU) give what one gives: the whole loop, FSDP2 against DDP,
and a checkpoint saved under FSDP loads in transformers with the same logits."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from model import init_from_config, load_pretrained
from test_model_parity import add_tokenizer

ROOT = Path(__file__).resolve().parents[1]
LLAMA = {"model_type": "llama", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True}
T5 = {"model_type": "t5", "vocab_size": 50, "d_model": 32, "d_kv": 8, "d_ff": 48, "num_layers": 2,
      "num_heads": 4, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "dropout_rate": 0.0}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args, port):
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", str(port), *map(str, args)], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def weights(folder):
    """Every tensor of a checkpoint folder, single-file or sharded."""
    files = sorted(folder.glob("*.safetensors"))
    return {name: t for f in files for name, t in load_file(f).items()}


@pytest.fixture(scope="module", params=[LLAMA, T5], ids=["llama", "t5"])
def trained(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param["model_type"])
    torchrun("tests/distributed_worker.py", out, json.dumps(request.param),
             port=29531 + (request.param["model_type"] == "t5"))
    return out, request.param


@pytest.mark.parametrize("strategy", ["fsdp", "fsdp-checkpointed"])
def test_fsdp_steps_equal_ddp_steps(trained, strategy):
    """3 SFT steps and 2 DPO steps (the reference precomputed under FSDP, a frozen copy under DDP)."""
    out, config = trained
    ddp, fsdp = weights(out / "ddp"), weights(out / strategy)
    assert ddp.keys() == fsdp.keys()
    start = dict(init_from_config(config, seed=0).named_parameters())  # the steps moved the weights
    assert min((ddp[k] - start[k]).abs().max().item() for k in ddp) > 1e-4
    assert max((ddp[k] - fsdp[k]).abs().max().item() for k in ddp) <= 1e-5


def test_an_fsdp_checkpoint_is_sharded_and_loads_in_transformers(trained):
    out, config = trained
    folder = out / "fsdp"
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # written as several shards and an index
    add_tokenizer(folder, config["model_type"])  # the worker saved weights only
    ours, _ = load_pretrained(folder)
    if config["model_type"] == "llama":
        hf = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
        ids = torch.randint(3, 50, (2, 9), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            got, want = ours(ids), hf(input_ids=ids).logits
    else:
        hf = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()
        ids = torch.randint(3, 50, (2, 9), generator=torch.Generator().manual_seed(0))
        dec = torch.randint(3, 50, (2, 5), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            got, want = ours(ids, decoder_input_ids=dec), hf(input_ids=ids, decoder_input_ids=dec).logits
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-4


def without_seconds(metrics):
    """metrics.json less its stage durations, peak memory and how it ran (threads, load beside it), which
    no two runs share."""
    if isinstance(metrics, dict):
        return {k: without_seconds(v) for k, v in metrics.items()
                if k not in ("seconds", "peak_memory_gb", "how_it_ran")}
    return metrics


def children(pid) -> list[int]:
    """The processes whose parent is `pid` (torchrun's ranks), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_the_loop_on_two_processes_equals_one_and_resumes_after_a_rank_is_killed(tmp_path):
    loop = ["loop.py", "--config", "configs/smoke.json"]
    one = subprocess.run([sys.executable, *loop, "--out", tmp_path / "one"], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           *loop, "--out", str(tmp_path / "two")]
    first = subprocess.Popen(two, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (tmp_path / "two" / "sft-0" / "DONE").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    ranks = children(first.pid)
    assert len(ranks) == 2 and first.poll() is None
    os.kill(max(ranks), signal.SIGKILL)  # rank 1 (started second) dies mid-run; torchrun stops rank 0
    assert first.wait(timeout=120) != 0
    assert not (tmp_path / "two" / "control" / "DONE").exists()
    finished = (tmp_path / "two" / "sft-0" / "DONE").stat().st_mtime_ns
    again = subprocess.run(two, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "two" / "sft-0" / "DONE").stat().st_mtime_ns == finished  # resumed after it, not redone
    a, b = tmp_path / "one", tmp_path / "two"
    assert without_seconds(json.loads((a / "metrics.json").read_text())) == \
        without_seconds(json.loads((b / "metrics.json").read_text()))
    for stage in ("sft-0", "dpo-1", "sft-1", "control"):
        wa, wb = weights(a / stage / "checkpoint"), weights(b / stage / "checkpoint")
        assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-5, stage
    for f in ("samples-1/samples.jsonl", "pairs-1/pairs.jsonl", "pseudo-1/pseudo.jsonl", "sft-1/eval-test.jsonl"):
        assert (a / f).read_text() == (b / f).read_text(), f


@pytest.mark.parametrize("config", [LLAMA, T5], ids=["llama", "t5"])
def test_activation_checkpointing_keeps_fewer_activations_and_the_same_gradients(config):
    from distributed import checkpoint_activations
    from model.logprobs import answer_logprobs
    prompts, answers = [[5, 6, 7, 8, 9, 10, 11, 12]] * 4, [[13, 14, 15, 16, 17, 18, 2]] * 4

    def saved_bytes_and_grads(model):
        saved = []

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logps, _ = answer_logprobs(model, prompts, answers, pad_id=0)
        logps.sum().backward()
        return sum(saved), {n: p.grad.clone() for n, p in model.named_parameters()}

    plain, plain_grads = saved_bytes_and_grads(init_from_config(config, seed=0).train())
    model = init_from_config(config, seed=0).train()
    checkpoint_activations(model)
    kept, grads = saved_bytes_and_grads(model)
    assert kept < 0.6 * plain
    assert max((grads[n] - plain_grads[n]).abs().max().item() for n in grads) <= 1e-6
