"""Bad checkpoint folders give one clear error naming the file and the problem; failed saves leave nothing."""
import json
import shutil

import pytest
import torch
from conftest import ASSETS
from safetensors.torch import load_file, save_file

from model import ConfigError, init_from_config, load_pretrained, save_pretrained

CONFIG = {"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}


class Tokenizer:
    """The least a tokenizer must do for save_pretrained: copy its file."""

    def save(self, folder):
        shutil.copy(ASSETS / "mistral" / "tokenizer.model", folder / "tokenizer.model")


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    save_pretrained(init_from_config(CONFIG, seed=0), Tokenizer(), folder)
    return folder


def edit_weights(folder, edit):
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_good_checkpoint_loads(checkpoint):
    model, tok = load_pretrained(checkpoint)
    assert tok.eos_id == 2 and model.config.num_hidden_layers == 2


def test_missing_config(checkpoint):
    (checkpoint / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(checkpoint)


def test_unknown_model_type(checkpoint):
    (checkpoint / "config.json").write_text(json.dumps({**CONFIG, "model_type": "gpt2"}))
    with pytest.raises(ConfigError, match=r"config.json: unsupported model_type 'gpt2'"):
        load_pretrained(checkpoint)


def test_missing_config_key(checkpoint):
    config = {k: v for k, v in CONFIG.items() if k != "hidden_size"}
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"config.json: missing key 'hidden_size'"):
        load_pretrained(checkpoint)


def test_unsupported_rope_scaling(checkpoint):
    config = {**CONFIG, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="'yarn' is not supported"):
        load_pretrained(checkpoint)


def test_missing_tensor(checkpoint):
    edit_weights(checkpoint, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ValueError, match=r"missing tensor\(s\) model.layers.1.mlp.up_proj.weight"):
        load_pretrained(checkpoint)


def test_unexpected_tensor(checkpoint):
    edit_weights(checkpoint, lambda t: t.update({"model.layers.0.extra.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"model.safetensors: unexpected tensor 'model.layers.0.extra.weight'"):
        load_pretrained(checkpoint)


def test_shape_mismatch_names_tensor_and_both_shapes(checkpoint):
    edit_weights(checkpoint, lambda t: t.update({"model.norm.weight": torch.ones(31)}))
    with pytest.raises(ValueError, match=r"'model.norm.weight' has shape \(31,\), the model expects \(32,\)"):
        load_pretrained(checkpoint)


def test_truncated_safetensors(checkpoint):
    path = checkpoint / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"model.safetensors: not a valid safetensors file"):
        load_pretrained(checkpoint)


def test_corrupt_safetensors(checkpoint):
    (checkpoint / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match=r"model.safetensors: not a valid safetensors file"):
        load_pretrained(checkpoint)


def test_no_weights(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_pretrained(checkpoint)


def test_index_names_missing_shard(tmp_path):
    folder = tmp_path / "sharded"
    save_pretrained(init_from_config(CONFIG, seed=0), Tokenizer(), folder, max_shard_bytes=8_000)
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[-1].unlink()
    with pytest.raises(FileNotFoundError, match=rf"index.json: names shard '{shards[-1].name}', which is missing"):
        load_pretrained(folder)


def test_missing_tokenizer(checkpoint):
    (checkpoint / "tokenizer.model").unlink()
    with pytest.raises(FileNotFoundError, match=str(checkpoint)):
        load_pretrained(checkpoint)


class FailingTokenizer:
    def save(self, folder):
        (folder / "tokenizer.model").write_bytes(b"half")
        raise OSError("disk full")


def test_failed_save_leaves_nothing_behind(tmp_path):
    model = init_from_config(CONFIG, seed=0)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(model, FailingTokenizer(), tmp_path / "new")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary folder


def test_failed_overwrite_keeps_the_old_checkpoint(checkpoint):
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(init_from_config(CONFIG, seed=1), FailingTokenizer(), checkpoint)
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["ckpt"]


def test_overwrite_replaces_the_checkpoint(checkpoint):
    save_pretrained(init_from_config(CONFIG, seed=1), Tokenizer(), checkpoint)
    model, _ = load_pretrained(checkpoint)
    assert torch.equal(model.model.norm.weight, torch.ones(32))
    assert torch.equal(model.lm_head.weight, init_from_config(CONFIG, seed=1).lm_head.weight)
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["ckpt"]


def test_saved_files_get_the_users_umask(tmp_path):
    import os
    import stat
    from model import init_from_config, save_pretrained
    model = init_from_config({"model_type": "llama", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32,
                              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2})
    old = os.umask(0o027)
    try:
        save_pretrained(model, None, tmp_path / "ckpt")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "ckpt").iterdir()}
    assert modes and all(mode == 0o640 for mode in modes.values()), modes
