"""Memory per GPU that a preset's training stages need: an estimate from the model's shape, before renting GPUs.

    python scripts/memory_table.py --preset configs/llama-2-7b.json --gpus 1 8

For each GPU count, under DDP (every GPU holds everything) and under FSDP (weights, gradients and
AdamW state sharded over the GPUs), for SFT and for DPO (policy + a frozen reference):
  weights     fp32 master weights: 4 bytes a parameter (training keeps fp32, bf16 autocast on CUDA)
  gradients   fp32: 4 bytes a parameter
  AdamW       two fp32 moments: 8 bytes a parameter
  reference   DPO only: the frozen copy, 4 bytes a parameter (0 with dpo.precompute_ref, and under
              FSDP, which always precomputes it: a whole copy on every GPU would undo the sharding)
  activations one micro-batch at the preset's micro_batch_size and a sequence length, in bf16:
              without checkpointing every layer keeps its intermediate tensors; with activation
              checkpointing only each layer's input is kept, plus one layer's tensors for its backward
  gather      FSDP only, once training ends: the whole fp32 state dict is gathered on every GPU and
              loaded into a whole model (8 bytes a parameter, the optimizer freed first), which the
              loop samples with and rank 0 saves. Not at the same time as the activations.
The parameter count is exact (the model is built on the meta device from its config); activations
are an estimate (their per-token bytes per layer are written below) and leave out allocator slack.
The checkpoint's config.json is read when it is present, else the model's public shape below.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.checkpoint import build_model  # noqa: E402
from model.config import config_from_dict  # noqa: E402

# The public shapes of the paper's models (their Hugging Face config.json), for when no checkpoint is here.
SHAPES = {
    "hf_models/flan-t5-base": {"model_type": "t5", "vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 2048,
                               "num_layers": 12, "num_decoder_layers": 12, "num_heads": 12,
                               "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
    "hf_models/flan-t5-large": {"model_type": "t5", "vocab_size": 32128, "d_model": 1024, "d_kv": 64, "d_ff": 2816,
                                "num_layers": 24, "num_decoder_layers": 24, "num_heads": 16,
                                "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
    "hf_models/llama-2-7b": {"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
                             "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                             "num_key_value_heads": 32, "max_position_embeddings": 4096},
}
GB = 2**30


def model_config(preset: dict):
    checkpoint = preset["model"].get("checkpoint")
    if checkpoint and (Path(checkpoint) / "config.json").is_file():
        return config_from_dict(json.loads((Path(checkpoint) / "config.json").read_text()))
    if checkpoint in SHAPES:
        return config_from_dict(SHAPES[checkpoint])
    return config_from_dict(preset["model"]["init"])


def activation_bytes_per_token(c) -> tuple[int, int, int]:
    """(a layer's bf16 intermediates per token, a layer's kept input per token, number of layers).
    Llama layer: residual in (fp32, 4h), normed x 2h, q k v 2(h + 2kv), attention out 2h, o_proj in 2h,
    residual 4h, normed 2h, gate and up 4i, SiLU(gate)*up 2i, down in 2i: ~ 18h + 4kv + 8i.
    T5 (per decoder layer, encoder layers alike without cross-attention): the same pattern with
    d_ff for i, plus cross-attention ~ 8d."""
    if c.is_encoder_decoder:
        d, i = c.d_model, c.d_ff * (2 if c.is_gated else 1)
        per = 16 * d + 4 * i + 8 * d
        return per, 4 * d, c.num_layers + c.num_decoder_layers
    h, kv, i = c.hidden_size, c.num_key_value_heads * c.head_dim, c.intermediate_size
    return 18 * h + 4 * kv + 8 * i, 4 * h, c.num_hidden_layers


def table(preset: dict, gpus: list[int], seq_len: int) -> list[str]:
    c = model_config(preset)
    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(c).parameters())
    per_layer, kept, layers = activation_bytes_per_token(c)
    vocab = c.vocab_size
    lines = [f"{params / 1e9:.2f}B parameters; activations at sequence length {seq_len}, bf16", "",
             "| stage | GPUs | strategy | weights+grads+AdamW | reference | activations (ckpt off / on) | total (off / on) "
             "| gather at the end |",
             "|---|---|---|---|---|---|---|---|"]
    for stage in ("sft", "dpo"):
        micro = preset[stage]["micro_batch_size"] * (2 if stage == "dpo" else 1)  # DPO: chosen and rejected
        tokens = micro * seq_len
        logits = tokens * vocab * (2 + 4)  # bf16 logits and their fp32 log-softmax
        off = tokens * per_layer * layers + logits
        on = tokens * kept * layers + tokens * per_layer + logits
        for n in gpus:
            for strategy in ("ddp", "fsdp") if n > 1 else ("one GPU",):
                shard = n if strategy == "fsdp" else 1
                state = 16 * params / shard
                precomputed = strategy == "fsdp" or preset["dpo"]["precompute_ref"]
                reference = 4 * params if stage == "dpo" and not precomputed else 0
                gather = f"{(4 * params / shard + 8 * params) / GB:.1f} GB" if strategy == "fsdp" else "-"
                lines.append(f"| {stage} | {n} | {strategy} | {state / GB:.1f} GB | {reference / GB:.1f} GB | "
                             f"{off / GB:.1f} / {on / GB:.1f} GB | {(state + reference + off) / GB:.1f} / "
                             f"{(state + reference + on) / GB:.1f} GB | {gather} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, help="a loop preset (configs/*.json)")
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 8], help="GPU counts to show (default: 1 8)")
    ap.add_argument("--seq-len", type=int, default=512, help="tokens per example, prompt and answer (default: 512)")
    args = ap.parse_args()
    if min(args.gpus) < 1 or args.seq_len < 1:
        ap.error("--gpus and --seq-len must be whole numbers >= 1")
    from preset import load_config
    print("\n".join(table(load_config(args.preset), args.gpus, args.seq_len)))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"memory_table.py: error: {e}")
