"""Hugging Face checkpoint folders: build a model from config.json, load and save its safetensors weights.

A checkpoint folder holds config.json, the weights as model.safetensors (or shards named in
model.safetensors.index.json) and the tokenizer files. Our module names equal Hugging Face's tensor
names, so the name mapping is the identity except for tied weights and a few derived tensors.
"""
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from data.jsonl import file_mode

from .config import LlamaConfig, T5Config, config_from_dict, load_config
from .llama import Llama
from .t5 import T5
from .tokenizer import load_tokenizer

SINGLE_FILE, INDEX_FILE = "model.safetensors", "model.safetensors.index.json"
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
# Tensors some checkpoints carry that we derive instead: RoPE frequencies, and T5's copies of `shared`.
DERIVED = ("rotary_emb.inv_freq", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def build_model(config: LlamaConfig | T5Config):
    return T5(config) if config.is_encoder_decoder else Llama(config)


def init_from_config(config, seed: int = 0):
    """A randomly initialised model (each family's usual init) from our config or an HF config dict."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    model = build_model(config)
    model.init_weights(seed)
    return model


def tie_output_head(model):
    """Make lm_head use the embedding's weight (one tensor) where the config ties them."""
    if model.config.tie_word_embeddings:
        embedding = model.shared if model.config.is_encoder_decoder else model.model.embed_tokens
        model.lm_head.weight = embedding.weight


def load_pretrained(path, device="cpu", dtype=torch.float32):
    """(model, tokenizer) from a Hugging Face checkpoint folder; the model is in eval mode.

    The model is first built on the "meta" device (shapes only, no memory), then allocated once in
    the target dtype and device, then filled one tensor at a time from the files, so
    at no point are two full copies of the weights in memory (see load_weights).
    """
    folder = Path(path)
    config = load_config(folder)
    tokenizer = load_tokenizer(folder, config.model_type)
    if config.tie_word_embeddings and "lm_head.weight" in _tensor_names(folder):
        config.tie_word_embeddings = False  # a checkpoint that stores its own output head is untied (as in HF)
    with torch.device("meta"):
        model = build_model(config)
    model = model.to(dtype).to_empty(device=device)
    tie_output_head(model)
    load_weights(model, folder)
    return model.eval(), tokenizer


def _weight_files(folder: Path) -> list[str]:
    """The weight file names of a single-file or sharded checkpoint."""
    if (folder / INDEX_FILE).is_file():
        index_path = folder / INDEX_FILE
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{index_path}: not a valid index (needs a 'weight_map'): {e}") from None
        files = sorted(set(weight_map.values()))
        for file in files:
            if not (folder / file).is_file():
                raise FileNotFoundError(f"{index_path}: names shard '{file}', which is missing from {folder}")
        return files
    if (folder / SINGLE_FILE).is_file():
        return [SINGLE_FILE]
    raise FileNotFoundError(f"{folder}: no {SINGLE_FILE} or {INDEX_FILE}")


def read_header(path: Path) -> tuple[dict, int]:
    """A safetensors file is: 8 bytes (little-endian header length n), n bytes of JSON
    {name: {"dtype", "shape", "data_offsets": [begin, end]}}, then the raw little-endian tensor bytes.
    Returns the checked header and the offset where tensor data starts."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if size < 8 or n > size - 8:
            raise ValueError(f"{path}: not a valid safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a valid safetensors file (header is not JSON: {e})") from None
    header.pop("__metadata__", None)
    for name, entry in header.items():
        try:
            begin, end = entry["data_offsets"]
            nbytes = DTYPES[entry["dtype"]].itemsize * torch.Size(entry["shape"]).numel()
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a valid safetensors file (bad entry for '{name}': {e!r})") from None
        if end - begin != nbytes or 8 + n + end > size:
            raise ValueError(f"{path}: not a valid safetensors file (tensor '{name}' does not fit: truncated?)")
    return header, 8 + n


def _tensor_names(folder: Path) -> set[str]:
    return {name for file in _weight_files(folder) for name in read_header(folder / file)[0]}


@torch.no_grad()
def load_weights(model, folder):
    """Copy every tensor of the checkpoint into the model's (already allocated) parameters.

    Tensors are read with plain file reads straight into the parameter's memory when dtype and
    device already match, else through a buffer of one tensor; nothing is memory-mapped, so the
    process never holds the file's pages on top of the model.
    """
    folder = Path(folder)
    params = dict(model.named_parameters())  # tied weights appear once, under the embedding's name
    loaded = set()
    for file in _weight_files(folder):
        path = folder / file
        header, data_start = read_header(path)
        with open(path, "rb") as f:
            for name, entry in header.items():
                if name.endswith(DERIVED):
                    continue
                if name not in params:
                    raise ValueError(f"{path}: unexpected tensor '{name}' (not part of a {model.config.model_type} model)")
                param, shape, dtype = params[name].detach(), tuple(entry["shape"]), DTYPES[entry["dtype"]]
                if shape != tuple(param.shape):
                    raise ValueError(f"{path}: tensor '{name}' has shape {shape}, the model expects {tuple(param.shape)}")
                in_place = param.device.type == "cpu" and param.dtype == dtype and param.is_contiguous()
                buffer = param.view(-1).view(torch.uint8) if in_place else torch.empty(param.numel() * dtype.itemsize, dtype=torch.uint8)
                f.seek(data_start + entry["data_offsets"][0])
                f.readinto(buffer.numpy())
                if not in_place:
                    param.copy_(buffer.view(dtype).view(shape))  # converts dtype, moves to the device
                loaded.add(name)
    missing = [name for name in params if name not in loaded]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ValueError(f"{folder}: checkpoint is missing tensor(s) {', '.join(missing[:3])}{more}")


def save_pretrained(model, tokenizer, path, max_shard_bytes: int = 2 * 2**30):
    """Write config.json, safetensors weights (sharded above max_shard_bytes) and tokenizer files.

    Everything is written into a temporary folder beside `path`, which is renamed into place only
    when complete: a failure leaves `path` as it was, never half-written.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        config = model.config.to_hf()
        config["torch_dtype"] = config["dtype"] = str(model.lm_head.weight.dtype).removeprefix("torch.")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        # Tied weights are stored once, under the embedding's name, as Hugging Face does.
        tensors = {name: p.detach().contiguous() for name, p in model.named_parameters()}
        _write_shards(tensors, tmp, max_shard_bytes)
        if tokenizer is not None:
            tokenizer.save(tmp)
        for file in tmp.iterdir():  # safetensors writes private (0600) files: give them the user's umask
            file.chmod(file_mode())
        replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(new: Path, final: Path):
    """Rename the finished folder `new` to `final`. An old `final` is moved aside first and removed only
    once the new one is in place, so a crash leaves a whole folder, never a half-written one: the new
    one at `final`, or, between the two renames, the old one at .NAME.old-PID beside it."""
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        new.rename(final)
        shutil.rmtree(old)
    else:
        new.rename(final)


def _write_shards(tensors: dict, folder: Path, max_shard_bytes: int):
    shards, size = [{}], 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t.cpu()
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], folder / SINGLE_FILE, metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / file, metadata={"format": "pt"})
        weight_map.update({name: file for name in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
