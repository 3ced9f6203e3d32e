"""T5 and FLAN-T5, an encoder-decoder transformer (Raffel et al. 2020), matching Hugging Face's
T5ForConditionalGeneration.

  encoder: tokens -> N x [norm -> self-attention (bidirectional) -> norm -> feed-forward] -> norm
  decoder: tokens -> N x [norm -> causal self-attention -> norm -> cross-attention -> norm -> FF] -> norm
  lm_head (v1.0: tied to the embedding, decoder output scaled by d_model^-0.5; v1.1/FLAN: untied)

T5's differences from the usual transformer: no position embeddings but a learned bias per
(head, relative-distance bucket) added to attention scores (computed in layer 0, reused by all layers);
no 1/sqrt(d) score scaling (folded into the init); RMS layer norm without mean or bias; no biases.
Module names equal the Hugging Face tensor names (encoder.block.0.layer.0.SelfAttention.q.weight, ...).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import T5Config
from .kv_cache import KVCache
from .llama import RMSNorm  # T5's "layer norm" is the same RMS norm


def relative_position_bucket(relative_position, bidirectional: bool, num_buckets: int, max_distance: int):
    """Map key_pos - query_pos to a bucket: exact for small distances, log-spaced up to max_distance."""
    buckets = 0
    if bidirectional:  # half the buckets for keys after the query, half for keys before
        num_buckets //= 2
        buckets = (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:  # a causal decoder only looks back
        distance = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    log_bucket = max_exact + (torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
                              * (num_buckets - max_exact)).long()
    log_bucket = torch.clamp(log_bucket, max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, log_bucket)


class Attention(nn.Module):
    """Multi-head attention without score scaling. Self-attention reads keys/values from x; cross-attention
    (is_cross) from the encoder's output. With a cache, self-attention appends this step's keys/values
    to it (as Llama's does), and cross-attention computes the encoder's once, on the first call."""

    def __init__(self, cfg: T5Config, has_relative_bias: bool, is_decoder: bool, is_cross: bool = False):
        super().__init__()
        self.n_heads, self.d_kv = cfg.num_heads, cfg.d_kv
        inner = cfg.num_heads * cfg.d_kv
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.is_decoder, self.is_cross, self.dropout = is_decoder, is_cross, cfg.dropout_rate
        self.buckets, self.max_distance = cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
        if has_relative_bias:
            self.relative_attention_bias = nn.Embedding(self.buckets, self.n_heads)

    def position_bias(self, query_positions, key_length):
        """(1, heads, Tq, Tk) bias from learned per-bucket scalars."""
        keys = torch.arange(key_length, device=query_positions.device)
        bucket = relative_position_bucket(keys[None, :] - query_positions[:, None], not self.is_decoder,
                                          self.buckets, self.max_distance)
        return self.relative_attention_bias(bucket).permute(2, 0, 1)[None]

    def split_heads(self, x):
        """(B, T, heads * d_kv) -> (B, heads, T, d_kv)"""
        return x.view(x.shape[0], -1, self.n_heads, self.d_kv).transpose(1, 2)

    def forward(self, x, bias, cache: "T5Cache | None" = None, layer: int = 0, encoded=None):
        """x (B, T, d_model); bias: position bias plus mask, added to the scores; encoded (B, Te, d_model):
        the encoder's output, for cross-attention (None once the cache holds its keys/values)."""
        q = self.split_heads(self.q(x))                                       # (B, H, T, D)
        if not self.is_cross:
            k, v = self.split_heads(self.k(x)), self.split_heads(self.v(x))  # (B, H, T, D)
            if cache is not None:
                k, v = cache.update(layer, k, v)                              # (B, H, cached + T, D)
        elif encoded is not None:
            k, v = self.split_heads(self.k(encoded)), self.split_heads(self.v(encoded))  # (B, H, Te, D)
            if cache is not None:
                cache.set_cross(layer, k, v)
        else:
            k, v = cache.cross_k[layer], cache.cross_v[layer]                 # (B, H, Te, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, D)
        return self.o(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))  # (B, T, d_model)


class FeedForward(nn.Module):
    """v1.0: wo(relu(wi(x))).  v1.1 / FLAN: wo(gelu_tanh(wi_0(x)) * wi_1(x))."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.gated = cfg.is_gated
        if self.gated:
            self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
            self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        else:
            self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x):
        h = F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x) if self.gated else F.relu(self.wi(x))
        return self.wo(self.dropout(h))


class SubLayer(nn.Module):
    """Pre-norm residual wrapper. Its child is named as in HF: SelfAttention, EncDecAttention or DenseReluDense."""

    def __init__(self, cfg: T5Config, name: str, inner: nn.Module):
        super().__init__()
        self.name = name
        self.add_module(name, inner)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x, *args, **kwargs):
        return x + self.dropout(getattr(self, self.name)(self.layer_norm(x), *args, **kwargs))


class Block(nn.Module):
    def __init__(self, cfg: T5Config, is_decoder: bool, has_relative_bias: bool):
        super().__init__()
        self.layer = nn.ModuleList([SubLayer(cfg, "SelfAttention", Attention(cfg, has_relative_bias, is_decoder))])
        if is_decoder:
            self.layer.append(SubLayer(cfg, "EncDecAttention", Attention(cfg, False, True, is_cross=True)))
        self.layer.append(SubLayer(cfg, "DenseReluDense", FeedForward(cfg)))


class Stack(nn.Module):
    def __init__(self, cfg: T5Config, n_layers: int, is_decoder: bool):
        super().__init__()
        self.block = nn.ModuleList(Block(cfg, is_decoder, has_relative_bias=i == 0) for i in range(n_layers))
        self.final_layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dropout = nn.Dropout(cfg.dropout_rate)


def additive(mask: torch.Tensor) -> torch.Tensor:
    """Boolean keep-mask -> 0 where kept, a very negative number where masked (added to scores)."""
    return torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, torch.finfo(torch.float32).min)


class T5Cache(KVCache):
    """Decoder self-attention cache, plus each layer's cross-attention keys/values, computed once from the encoder."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cross_k, self.cross_v = {}, {}  # layer -> (B, H, Te, D)
        self.encoder_mask = None             # (B, Te)

    def set_cross(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        self.cross_k[layer], self.cross_v[layer] = k, v

    def keep_rows(self, rows):
        super().keep_rows(rows)
        self.cross_k = {layer: k[rows] for layer, k in self.cross_k.items()}
        self.cross_v = {layer: v[rows] for layer, v in self.cross_v.items()}
        self.encoder_mask = self.encoder_mask[rows]


class T5(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.config = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = Stack(cfg, cfg.num_layers, is_decoder=False)
        self.decoder = Stack(cfg, cfg.num_decoder_layers, is_decoder=True)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.shared.weight

    def encode(self, input_ids, attention_mask):
        enc = self.encoder
        x = enc.dropout(self.shared(input_ids))                                 # (B, T, d_model)
        T = input_ids.shape[1]
        attn0 = enc.block[0].layer[0].SelfAttention
        bias = attn0.position_bias(torch.arange(T, device=x.device), T) + additive(attention_mask.bool())[:, None, None, :]
        # bias: (B, H, T, T), shared by every layer
        for block in enc.block:
            x = block.layer[0](x, bias)
            x = block.layer[1](x)
        return enc.dropout(enc.final_layer_norm(x))

    def decode(self, decoder_input_ids, encoded, encoder_mask, cache: T5Cache | None = None):
        """Logits (B, T, V) of the decoder tokens. encoded (B, Te, d_model) is None once the cache holds
        the cross-attention keys/values."""
        dec = self.decoder
        x = dec.dropout(self.shared(decoder_input_ids))                        # (B, T, d_model)
        start, T = (cache.length if cache is not None else 0), decoder_input_ids.shape[1]
        queries = start + torch.arange(T, device=x.device)
        keys = torch.arange(start + T, device=x.device)
        causal = keys[None, :] <= queries[:, None]
        self_bias = dec.block[0].layer[0].SelfAttention.position_bias(queries, start + T) + additive(causal)
        cross_bias = additive(encoder_mask.bool())[:, None, None, :]            # (B, 1, 1, Te)
        if cache is not None:
            cache.reserve(torch.ones_like(decoder_input_ids))
        for i, block in enumerate(dec.block):
            x = block.layer[0](x, self_bias, cache, i)
            x = block.layer[1](x, cross_bias, cache, i, encoded)
            x = block.layer[2](x)
        if cache is not None:
            cache.advance(T)
        x = dec.dropout(dec.final_layer_norm(x))
        if self.config.scale_decoder_outputs:
            x = x * self.config.d_model ** -0.5  # T5 v1.0 rescales before the tied output projection
        return self.lm_head(x)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, cache: T5Cache | None = None):
        """Decoder logits (B, Td, V). input_ids/attention_mask feed the encoder (1 = real token).

        With a cache, the first call encodes and stores cross-attention keys/values; later calls
        pass only the next decoder tokens (input_ids may then be None).
        """
        if decoder_input_ids is None:
            raise ValueError("T5 needs decoder_input_ids (start with decoder_start_token_id)")
        if cache is not None and cache.encoder_mask is not None:  # encoded already: keys/values are cached
            return self.decode(decoder_input_ids, None, cache.encoder_mask, cache)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        if cache is not None:
            cache.encoder_mask = attention_mask.bool()
        return self.decode(decoder_input_ids, self.encode(input_ids, attention_mask), attention_mask, cache)

    # The generation interface (the same for Llama): encode the prompts, then one decoder token per step.
    def prefill(self, input_ids, attention_mask, max_new_tokens: int):
        """Encode padded prompts (B, T), feed the decoder start token; return next-token logits and the cache."""
        B = input_ids.shape[0]
        p, c = self.lm_head.weight, self.config
        cache = T5Cache(c.num_decoder_layers, B, c.num_heads, max_new_tokens, c.d_kv, p.device, p.dtype)
        start = torch.full((B, 1), c.decoder_start_token_id, dtype=torch.long, device=input_ids.device)
        return self(input_ids, attention_mask, decoder_input_ids=start, cache=cache)[:, -1], cache

    def decode_step(self, tokens, cache: T5Cache):
        """Next-token logits (B, V) after appending tokens (B,) to the cached decoder sequences."""
        return self(None, decoder_input_ids=tokens[:, None], cache=cache)[:, -1]

    @torch.no_grad()
    def init_weights(self, seed: int):
        """Hugging Face's T5 init (Mesh TensorFlow's): each matrix's std set by its fan-in."""
        g = torch.Generator().manual_seed(seed)
        c = self.config
        f, d, inner = c.initializer_factor, c.d_model, c.num_heads * c.d_kv
        std = {"q": f * (d * c.d_kv) ** -0.5, "k": f * d ** -0.5, "v": f * d ** -0.5, "o": f * inner ** -0.5,
               "relative_attention_bias": f * d ** -0.5, "wi": f * d ** -0.5, "wi_0": f * d ** -0.5,
               "wi_1": f * d ** -0.5, "wo": f * c.d_ff ** -0.5, "shared": f, "lm_head": f}
        for name, p in self.named_parameters():
            kind = name.split(".")[-2]
            if kind in ("layer_norm", "final_layer_norm"):
                p.fill_(f)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std[kind])
