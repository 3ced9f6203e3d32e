"""Model configs: read a Hugging Face config.json into a small dataclass, and write it back.

Two families are supported:
  llama (also mistral without a sliding window: the same shapes)  -> LlamaConfig
  t5 (T5 v1.0 and T5 v1.1 / FLAN-T5)                              -> T5Config
Anything else, or a missing key, is an error that names the file and the key.
"""
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


MODEL_TYPES = ("llama", "mistral", "t5")


class ConfigError(ValueError):
    pass


@dataclass
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int            # == num_attention_heads is MHA, fewer is GQA
    head_dim: int
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None    # None, or {"rope_type": "llama3", factor, low/high_freq_factor, ...}
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    bos_token_id: int | None = 1
    eos_token_id: int | list | None = 2
    pad_token_id: int | None = None
    model_type: str = "llama"
    is_encoder_decoder: bool = field(default=False, init=False)

    def to_hf(self) -> dict:
        d = asdict(self)
        d.pop("is_encoder_decoder")
        rope = dict(self.rope_scaling or {"rope_type": "default"})
        d["rope_parameters"] = {**rope, "rope_theta": self.rope_theta}  # transformers 5 spelling
        d["rope_scaling"] = self.rope_scaling                           # transformers 4 spelling
        d["hidden_act"] = "silu"
        d["architectures"] = ["MistralForCausalLM" if self.model_type == "mistral" else "LlamaForCausalLM"]
        if self.model_type == "mistral":
            d["sliding_window"] = None
        return d


@dataclass
class T5Config:
    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    feed_forward_proj: str = "relu"     # "relu" (T5 v1.0) or "gated-gelu" (T5 v1.1 / FLAN-T5)
    tie_word_embeddings: bool = True    # v1.0 ties lm_head to the embedding...
    scale_decoder_outputs: bool = True  # ...and scales the decoder output by d_model^-0.5; v1.1 does neither
    layer_norm_epsilon: float = 1e-6
    dropout_rate: float = 0.1
    initializer_factor: float = 1.0
    decoder_start_token_id: int = 0
    pad_token_id: int = 0
    eos_token_id: int = 1
    model_type: str = "t5"
    is_encoder_decoder: bool = field(default=True, init=False)

    @property
    def is_gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    def to_hf(self) -> dict:
        d = asdict(self)
        d["architectures"] = ["T5ForConditionalGeneration"]
        return d


def _get(cfg: dict, key: str, where: str, default=...):
    if key in cfg and cfg[key] is not None:
        return cfg[key]
    if default is ...:
        raise ConfigError(f"{where}: missing key '{key}'")
    return default


def config_from_dict(cfg: dict, where: str = "config.json") -> LlamaConfig | T5Config:
    """Build our config from a Hugging Face config dict; `where` names the source in errors."""
    model_type = cfg.get("model_type")
    if model_type in ("llama", "mistral"):
        return _llama_from_dict(cfg, where)
    if model_type == "t5":
        return _t5_from_dict(cfg, where)
    raise ConfigError(f"{where}: unsupported model_type {model_type!r} (supported: {', '.join(map(repr, MODEL_TYPES))})")


def _llama_from_dict(cfg: dict, where: str) -> LlamaConfig:
    g = lambda key, default=...: _get(cfg, key, where, default)  # noqa: E731
    if g("hidden_act", "silu") != "silu":
        raise ConfigError(f"{where}: hidden_act {cfg['hidden_act']!r} is not supported (only 'silu')")
    if cfg.get("model_type") == "mistral" and cfg.get("sliding_window") is not None:
        raise ConfigError(f"{where}: sliding_window={cfg['sliding_window']} is not supported (set it to null)")
    # transformers 4 writes rope_theta + rope_scaling; transformers 5 writes rope_parameters.
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    rope_theta = float(rope.pop("rope_theta", cfg.get("rope_theta", 10000.0)))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "default":
        rope_scaling = None
    elif rope_type == "llama3":
        for key in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
            if key not in rope:
                raise ConfigError(f"{where}: rope scaling 'llama3' is missing key '{key}'")
        rope_scaling = {"rope_type": "llama3", **{k: rope[k] for k in
                        ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}}
    else:
        raise ConfigError(f"{where}: rope scaling type {rope_type!r} is not supported (only 'llama3')")
    heads = g("num_attention_heads")
    return LlamaConfig(
        vocab_size=g("vocab_size"), hidden_size=g("hidden_size"), intermediate_size=g("intermediate_size"),
        num_hidden_layers=g("num_hidden_layers"), num_attention_heads=heads,
        num_key_value_heads=g("num_key_value_heads", heads),
        head_dim=g("head_dim", g("hidden_size") // heads),
        max_position_embeddings=g("max_position_embeddings", 2048), rms_norm_eps=g("rms_norm_eps", 1e-6),
        rope_theta=rope_theta, rope_scaling=rope_scaling,
        tie_word_embeddings=g("tie_word_embeddings", False), attention_bias=g("attention_bias", False),
        mlp_bias=g("mlp_bias", False), attention_dropout=g("attention_dropout", 0.0),
        initializer_range=g("initializer_range", 0.02), bos_token_id=cfg.get("bos_token_id"),
        eos_token_id=cfg.get("eos_token_id"), pad_token_id=cfg.get("pad_token_id"),
        model_type=cfg["model_type"])


def _t5_from_dict(cfg: dict, where: str) -> T5Config:
    g = lambda key, default=...: _get(cfg, key, where, default)  # noqa: E731
    proj = g("feed_forward_proj", "relu")
    if proj not in ("relu", "gated-gelu"):
        raise ConfigError(f"{where}: feed_forward_proj {proj!r} is not supported ('relu' or 'gated-gelu')")
    return T5Config(
        vocab_size=g("vocab_size"), d_model=g("d_model"), d_kv=g("d_kv"), d_ff=g("d_ff"),
        num_layers=g("num_layers"), num_decoder_layers=g("num_decoder_layers", g("num_layers")),
        num_heads=g("num_heads"),
        relative_attention_num_buckets=g("relative_attention_num_buckets", 32),
        relative_attention_max_distance=g("relative_attention_max_distance", 128),
        # transformers 4 marks v1.1 by tie_word_embeddings=false; transformers 5 writes scale_decoder_outputs.
        feed_forward_proj=proj, tie_word_embeddings=g("tie_word_embeddings", True),
        scale_decoder_outputs=g("scale_decoder_outputs", g("tie_word_embeddings", True)),
        layer_norm_epsilon=g("layer_norm_epsilon", 1e-6), dropout_rate=g("dropout_rate", 0.1),
        initializer_factor=g("initializer_factor", 1.0),
        decoder_start_token_id=g("decoder_start_token_id", 0), pad_token_id=g("pad_token_id", 0),
        eos_token_id=g("eos_token_id", 1))


def load_config(folder) -> LlamaConfig | T5Config:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config.json in checkpoint folder {folder}")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    return config_from_dict(cfg, str(path))
