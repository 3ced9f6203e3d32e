"""The GPU check: our models, sampler and training steps on one CUDA GPU against transformers, in one run.

    scripts/gpu_check.sh                            (= python tests/gpu_check.py --device cuda)
    python tests/gpu_check.py --device cpu --quick   (the same checks on small shapes: tests/test_gpu_check.py)

Prints one table row per check: what, the figure, its limit, pass/fail, and peak GPU memory.
  logits       our Llama and T5 against transformers on tiny random configs: fp32 <= 1e-4, bf16 <= 2e-2
               (max relative error)
  greedy       our generate() token for token equal to transformers' generate(), fp32
  tok/s        greedy decoding, ours and transformers', B = 1, 16, 64, bf16, SmolLM2-135M's shape
               (random weights); at B = 1 also the share of the memory-bandwidth bound (weight bytes
               per step over a copy bandwidth this script measures)
  sft, dpo     one optimizer step each (bf16 autocast on CUDA): finite loss, weights changed
  fsdp         two FSDP2 SFT steps on a process group of one rank, against two plain steps
  loop         the smoke preset end to end on the device (loop.py, every stage)
A check, kept with the tests: it needs the test packages (transformers, the reference), which `make setup`
installs. Exit status 1 if a check fails.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data import Example  # noqa: E402
from distributed import DistributedConfig  # noqa: E402
from dpo import DPOConfig, Pair, train_dpo  # noqa: E402
from model import load_pretrained  # noqa: E402
from sample import generate  # noqa: E402
from train_sft import train_sft  # noqa: E402
from trainer import TrainConfig  # noqa: E402

ASSETS = ROOT / "tests" / "assets"
TINY_LLAMA = dict(vocab_size=384, hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False)
TINY_T5 = dict(vocab_size=384, d_model=32, d_kv=8, d_ff=56, num_layers=2, num_decoder_layers=3, num_heads=4,
               relative_attention_num_buckets=8, relative_attention_max_distance=12, feed_forward_proj="gated-gelu")
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
                    max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=100000.0)
ROWS = []


class Ids:
    """Token ids only: EOS never matches, so every row decodes all its tokens (as transformers does)."""
    pad_id, bos_id, eos_id = 0, 1, -1

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size


def row(check, figure, limit, ok, device):
    peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if device.type == "cuda" else "–"
    result = "n/a" if ok is None else "pass" if ok else "FAIL"
    ROWS.append((check, figure, limit, result, peak))
    print(f"| {check} | {figure} | {limit} | {result} | {peak} |", flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def ours_from(hf, folder: Path, family: str, device, dtype):
    """Save the transformers model as a checkpoint folder with a real tokenizer file; load it with ours."""
    shutil.rmtree(folder, ignore_errors=True)
    hf.save_pretrained(folder)
    asset = ASSETS / ("mistral/tokenizer.model" if family == "llama" else "t5/spiece.model")
    shutil.copy(asset, folder / asset.name)
    return load_pretrained(folder, device=device, dtype=dtype)[0]


def rel_err(ours, ref):
    return ((ours.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


def check_logits(tmp: Path, device):
    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA)).eval()
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(**TINY_T5)).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 384, (3, 24), generator=g)
    enc, dec = torch.randint(2, 384, (3, 20), generator=g), torch.randint(2, 384, (3, 16), generator=g)
    dec[:, 0] = 0
    for dtype, limit in [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)]:
        name = str(dtype).removeprefix("torch.")
        ours = ours_from(llama, tmp / "llama", "llama", device, dtype)
        with torch.no_grad():
            ref = llama.to(device, dtype)(input_ids=ids.to(device)).logits
            err = rel_err(ours(ids.to(device)), ref)
        row(f"llama logits {name}", f"{err:.1e}", f"<= {limit:g}", err <= limit, device)
        ours = ours_from(t5, tmp / "t5", "t5", device, dtype)
        with torch.no_grad():
            ref = t5.to(device, dtype)(input_ids=enc.to(device), decoder_input_ids=dec.to(device)).logits
            err = rel_err(ours(enc.to(device), decoder_input_ids=dec.to(device)), ref)
        row(f"t5 logits {name}", f"{err:.1e}", f"<= {limit:g}", err <= limit, device)
        llama, t5 = llama.float().cpu(), t5.float().cpu()


def check_greedy(tmp: Path, device):
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA)).eval()
    ours = ours_from(hf, tmp / "greedy", "llama", device, torch.float32)
    hf = hf.to(device)
    prompts = torch.randint(3, 384, (4, 12), generator=torch.Generator().manual_seed(2))
    theirs = hf.generate(prompts.to(device), attention_mask=torch.ones_like(prompts).to(device), max_new_tokens=32,
                         min_new_tokens=32, do_sample=False, pad_token_id=0)[:, 12:].tolist()
    mine = generate(ours, Ids(384), prompts.tolist(), 32)
    same = sum(a == b for a, b in zip(mine, theirs))
    row("greedy = transformers (fp32, B=4, 32 tokens)", f"{same}/4 rows equal", "4/4", same == 4, device)


def copy_bandwidth(device) -> float:
    """Bytes per second of a large on-device copy (read + write): the memory-bandwidth bound we measure."""
    x = torch.empty(2**28 if device.type == "cuda" else 2**24, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    sync(device)
    start = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    sync(device)
    return 2 * x.numel() * 10 / (time.perf_counter() - start)


def check_speed(tmp: Path, device, quick: bool):
    shape = TINY_LLAMA if quick else SMOLLM2_135M
    dtype = torch.bfloat16
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape)).eval()
    ours = ours_from(hf, tmp / "speed", "llama", device, dtype)
    hf = hf.to(device, dtype)
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    bandwidth = copy_bandwidth(device)
    new, prompt_len = (16, 16) if quick else (128, 64)
    for batch in ([1, 4] if quick else [1, 16, 64]):
        prompts = torch.randint(3, shape["vocab_size"], (batch, prompt_len), generator=torch.Generator().manual_seed(batch))
        best = {"ours": float("inf"), "transformers": float("inf")}
        for _ in range(2):  # interleaved, best of each
            for who in best:
                sync(device)
                start = time.perf_counter()
                if who == "ours":
                    generate(ours, Ids(shape["vocab_size"]), prompts.tolist(), new)
                else:
                    hf.generate(prompts.to(device), attention_mask=torch.ones_like(prompts).to(device), max_new_tokens=new,
                                min_new_tokens=new, do_sample=False, pad_token_id=0)
                sync(device)
                best[who] = min(best[who], time.perf_counter() - start)
        ours_tps, hf_tps = batch * new / best["ours"], batch * new / best["transformers"]
        figure = f"ours {ours_tps:.0f}, transformers {hf_tps:.0f} ({ours_tps / hf_tps:.2f}x)"
        if batch == 1:  # each step streams every weight once: tokens/s <= bandwidth / weight bytes
            figure += f"; {100 * ours_tps * weight_bytes / bandwidth:.0f}% of the bandwidth bound"
        row(f"tok/s bf16 B={batch}", figure, "measured", True, device)


def check_training(tmp: Path, device):
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA))
    examples = [Example([1, 5, 6, 7], [8, 9, 2]), Example([1, 10, 11], [12, 13, 14, 2])] * 2
    for stage in ("sft", "dpo"):
        model = ours_from(hf, tmp / stage, "llama", device, torch.float32)
        before = [p.detach().clone() for p in model.parameters()]
        log = tmp / f"{stage}.jsonl"
        if stage == "sft":
            train_sft(model, Ids(384), examples, TrainConfig(lr=1e-3, steps=1, batch_size=4, micro_batch_size=4), log)
        else:
            pairs = [Pair([1, 5, 6], [8, 9, 2], [8, 10, 2]), Pair([1, 7], [11, 2], [12, 13, 2])]
            train_dpo(model, Ids(384), pairs, DPOConfig(lr=1e-3, steps=1, batch_size=2, micro_batch_size=2), log)
        loss = json.loads(log.read_text().splitlines()[-1])["loss"]
        changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        autocast = "bf16 autocast" if device.type == "cuda" else "fp32"
        row(f"{stage} step ({autocast})", f"loss {loss:.3f}", "finite, weights change",
            torch.isfinite(torch.tensor(loss)).item() and changed, device)
    # FSDP2 on a process group of one: the sharding code path (one shard), against a plain step
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29561")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    cfg, trained = TrainConfig(lr=1e-3, steps=2, batch_size=4, micro_batch_size=2), {}
    for strategy in ("ddp", "fsdp"):  # ddp on one process: the plain model
        log = tmp / f"{strategy}.jsonl"
        model = ours_from(hf, tmp / strategy, "llama", device, torch.float32)
        trained[strategy] = train_sft(model, Ids(384), examples, cfg, log, parallel=DistributedConfig(strategy))
    dist.destroy_process_group()
    err = max(rel_err(a, b) for a, b in zip(trained["fsdp"].parameters(), trained["ddp"].parameters()))
    limit = 2e-2 if device.type == "cuda" else 1e-5  # CUDA: FSDP gathers bf16 parameters, the plain step autocasts
    row("fsdp step (1 rank) vs plain, 2 SFT steps", f"weights {err:.1e}", f"<= {limit:g}", err <= limit, device)


def check_loop(tmp: Path, device):
    preset = tmp / "smoke-on-device.json"
    preset.write_text(json.dumps({"extends": str(ROOT / "configs" / "smoke.json"), "device": device.type}))
    start = time.time()
    result = subprocess.run([sys.executable, "loop.py", "--config", str(preset), "--out", str(tmp / "loop")], cwd=ROOT,
                            capture_output=True, text=True)
    ok = result.returncode == 0 and (tmp / "loop" / "metrics.json").is_file()
    figure = f"{time.time() - start:.0f} s" if ok else result.stderr.strip().splitlines()[-1][:120]
    row("smoke loop, every stage", figure, "finishes", ok, device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run of the script)")
    ap.add_argument("--quick", action="store_true", help="small shapes and batches (for the test on CPU)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: error: --device cuda, but this torch sees no CUDA GPU")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"GPU check on {name}, torch {torch.__version__}, transformers {transformers.__version__}\n")
    print("| check | figure | limit | result | peak GPU memory |\n|---|---|---|---|---|")
    start = time.time()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        check_logits(tmp, device)
        check_greedy(tmp, device)
        check_speed(tmp, device, args.quick)
        check_training(tmp, device)
        check_loop(tmp, device)
    failed = [r[0] for r in ROWS if r[3] == "FAIL"]
    checked = [r for r in ROWS if r[3] != "n/a"]
    print(f"\n{len(checked) - len(failed)}/{len(checked)} passed in {time.time() - start:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
