"""Hand-written Llama and T5 that load and save Hugging Face checkpoint folders.

    from model import load_pretrained, save_pretrained
    model, tok = load_pretrained(path, device="cpu", dtype=torch.float32)
"""
from .checkpoint import build_model, init_from_config, load_pretrained, load_weights, save_pretrained
from .config import ConfigError, LlamaConfig, T5Config, config_from_dict, load_config
from .tokenizer import load_tokenizer
