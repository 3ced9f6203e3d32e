"""Peak memory of load_pretrained on a ~100M-parameter checkpoint, relative to the checkpoint's size.

    python scripts/load_memory.py [--dtype float32|bfloat16]

Writes a random Llama (hidden 768, 12 layers, vocab 32000: 134M parameters) once, then loads it in a
fresh process and reports that process's peak resident memory above what it used before loading.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048,
          "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 12}


def status_mb(key):
    """VmRSS (resident now) or VmHWM (peak resident since exec) of this process, in MB."""
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024


def child(folder, dtype):
    import torch
    from model import load_pretrained
    before = status_mb("VmRSS")
    model, _ = load_pretrained(folder, dtype=getattr(torch, dtype))
    peak = status_mb("VmHWM")  # not ru_maxrss: that one keeps the forked parent's peak across exec
    files = sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) / 2**20
    params = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    print(f"checkpoint files {files:.0f} MB, model in {dtype} {params:.0f} MB, "
          f"peak RSS above baseline {peak - before:.0f} MB = {(peak - before) / files:.2f}x the file size")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.dtype)
    from model import init_from_config, save_pretrained
    from model.tokenizer import load_tokenizer
    assets = Path(__file__).resolve().parents[1] / "tests" / "assets" / "mistral"
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(init_from_config(CONFIG, seed=0), load_tokenizer(assets, "llama"), Path(tmp) / "ckpt")
        subprocess.run([sys.executable, __file__, "--child", str(Path(tmp) / "ckpt"), "--dtype", args.dtype],
                       check=True)


if __name__ == "__main__":
    main()
