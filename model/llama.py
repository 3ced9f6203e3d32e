"""Llama, a decoder-only transformer (Touvron et al. 2023), written to match Hugging Face's LlamaForCausalLM.

  tokens -> embedding -> N x [RMSNorm -> attention (RoPE, grouped-query) -> +residual
                              RMSNorm -> SwiGLU MLP -> +residual] -> RMSNorm -> lm_head -> logits

Module names equal the Hugging Face tensor names (model.layers.0.self_attn.q_proj.weight, ...), so
loading a checkpoint is a plain state-dict copy. Also covers Mistral without a sliding window.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import LlamaConfig
from .kv_cache import KVCache


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in fp32 (Zhang & Sennrich 2019). T5 uses the same."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_frequencies(cfg: LlamaConfig) -> torch.Tensor:
    """Inverse frequencies theta^(-2i/d) of rotary embeddings (Su et al. 2021), with Llama-3.1's rescaling."""
    d = cfg.head_dim
    # Always on the CPU, even while the model is built on the "meta" device; moved in forward.
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64, device="cpu").float() / d))
    if cfg.rope_scaling is None:
        return inv_freq
    # llama3: long wavelengths are slowed down by `factor`, short ones kept, the band between is blended.
    s = cfg.rope_scaling
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old_len = s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    in_band = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
    return torch.where(in_band, blended, scaled)


def rotate(x, cos, sin):
    """Rotate pairs (x_i, x_{i+d/2}) by the position's angle (the 'rotate_half' layout of HF checkpoints)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def take(t, dim, positions):
    """t's entries at positions (B, A) along dim, for every row b (t's batch dim may be 1: broadcast)."""
    B, A = positions.shape
    t = t.expand(B, *t.shape[1:])
    index = positions.view(B, *[A if d == dim else 1 for d in range(1, t.dim())])
    return t.gather(dim, index.expand(*[A if d == dim else n for d, n in enumerate(t.shape)]))


def attend_one_query(q, k, v, mask):
    """softmax(q k^T / sqrt(D), masked) v for a single query per row, written out.

    q (B, H, 1, D); k, v (B, Hkv, S, D); mask (B, 1, 1, S), True where a key may be seen.
    On CPUs this is about 2x faster than scaled_dot_product_attention's kernel (made for many queries)
    at the loop's batch of 256, and 10x in bf16 (docs/speed.md). The softmax runs in fp32, as SDPA's does.
    """
    B, H, _, D = q.shape
    q = q.view(B, k.shape[1], H // k.shape[1], D)                   # (B, Hkv, G, D): a group shares one k/v head
    scores = (q @ k.transpose(-1, -2)) * D ** -0.5                 # (B, Hkv, G, S)
    scores = torch.where(mask, scores.float(), float("-inf"))      # one op: no inverted mask per layer
    return (scores.softmax(-1).to(v.dtype) @ v).view(B, H, 1, D)   # (B, H, 1, D)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.dropout = cfg.attention_dropout
        bias = cfg.attention_bias
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=bias)

    def forward(self, x, cos, sin, mask, cache: KVCache | None, layer: int, queries=None):
        """x (B, T, hidden); with a cache, this step's keys/values are appended to the cached ones.
        queries (B, A): only these positions ask (keys and values come from all T); output (B, A, hidden)."""
        B, T, _ = x.shape
        xq, cos_q, sin_q = x, cos, sin
        if queries is not None:  # the queries' rows of x, of the angles and of the mask
            xq, cos_q, sin_q, mask = take(x, 1, queries), take(cos, 2, queries), take(sin, 2, queries), take(mask, 2, queries)
        A = xq.shape[1]
        q = self.q_proj(xq).view(B, A, self.n_heads, self.head_dim).transpose(1, 2)    # (B, H, A, D)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        q, k = rotate(q, cos_q, sin_q), rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)                                           # (B, Hkv, cached + T, D)
        if cache is not None and T == 1:  # a decode step: one query per row
            y = attend_one_query(q, k, v, mask)                                        # (B, H, 1, D)
        else:
            # Grouped-query attention: each group of n_heads / n_kv_heads query heads shares one k/v head.
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.n_kv_heads != self.n_heads,
                                               dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, D)
        return self.o_proj(y.transpose(1, 2).reshape(B, A, -1))                        # (B, A, hidden)


class MLP(nn.Module):
    """SwiGLU (Shazeer 2020): down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, cache, layer, queries=None):
        """queries (B, A): the output only at these positions, (B, A, hidden) (the last block, without gradients)."""
        h = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer, queries)
        if queries is not None:
            x = take(x, 1, queries)                                                    # (B, A, hidden)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.config = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # A plain fp32 attribute, not a buffer: it is derived from the config, never saved or loaded.
        self.inv_freq = rope_frequencies(cfg)

    def forward(self, input_ids, attention_mask=None, cache: KVCache | None = None, logits_at=None):
        """Logits (B, T, V). attention_mask (B, T): 1 for real tokens, 0 for padding (left or right).

        With a cache, input_ids are the next T tokens after those already cached (prefill, then decode).
        Each row's positions count only its real tokens, so a left-padded row starts at position 0.
        logits_at (B, A): only these positions' logits, (B, A, V). The head is the costliest layer of a
        model with a large vocabulary, and a prefill needs one position, a loss only the answer's.
        """
        B, T = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
        start = 0
        if cache is None:
            key_mask = attention_mask.bool()
        else:
            start, key_mask = cache.length, cache.reserve(attention_mask)
        positions = (key_mask.cumsum(-1) - 1).clamp(min=0)[:, start:]
        # Query i (absolute slot start+i) sees real keys at slots <= start+i, and always itself,
        # so that a padding query still has one key and softmax gives no NaN.
        S = key_mask.shape[1]
        slots = torch.arange(S, device=input_ids.device)
        causal = slots[None, :] <= (start + torch.arange(T, device=input_ids.device))[:, None]
        itself = slots[None, :] == (start + torch.arange(T, device=input_ids.device))[:, None]
        mask = (causal & key_mask[:, None, None, :]) | itself
        # Rotary angles in fp32 (as Hugging Face does), then cast to the activations' dtype.
        x = self.model.embed_tokens(input_ids)
        inv_freq = self.inv_freq.to(input_ids.device)
        angles = positions[..., None].float() * inv_freq
        angles = torch.cat((angles, angles), dim=-1)[:, None]  # (B, 1, T, head_dim)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        # Without gradients the last block computes its queries, MLP and head only where logits are wanted
        # (a prefill wants one position), its keys and values everywhere (the cache needs them): the same
        # numbers for less work. Not in training: there it changes the order in which weight gradients are
        # summed, so every SFT result would move (docs/speed.md measured it); the loss gathers at the end.
        cut = logits_at is not None and not torch.is_grad_enabled()
        last = len(self.model.layers) - 1
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask, cache, i, logits_at if cut and i == last else None)  # cut: (B, A, hidden)
        if cache is not None:
            cache.advance(T)
        if logits_at is not None and not cut:
            x = take(x, 1, logits_at)                                                # (B, A, hidden)
        return self.lm_head(self.model.norm(x))

    # The generation interface (the same for T5): prefill the prompts, then one token per step.
    def prefill(self, input_ids, attention_mask, max_new_tokens: int):
        """Run left-padded prompts (B, T) through the model; return the next-token logits and the cache."""
        B, T = input_ids.shape
        if T + max_new_tokens > self.config.max_position_embeddings:
            raise ValueError(f"prompt of {T} tokens + {max_new_tokens} new tokens exceeds the model's "
                             f"context of {self.config.max_position_embeddings} positions")
        p, c = self.lm_head.weight, self.config
        cache = KVCache(c.num_hidden_layers, B, c.num_key_value_heads, T + max_new_tokens, c.head_dim, p.device, p.dtype)
        last = torch.full((B, 1), T - 1, device=input_ids.device)  # left-padded: every prompt ends at T - 1
        return self(input_ids, attention_mask, cache=cache, logits_at=last)[:, -1], cache

    def decode_step(self, tokens, cache: KVCache):
        """Next-token logits (B, V) after appending tokens (B,) to the cached sequences."""
        return self(tokens[:, None], cache=cache)[:, -1]

    @torch.no_grad()
    def init_weights(self, seed: int):
        """Hugging Face's Llama init: normal(0, initializer_range) for linears and embeddings, norms at 1."""
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g) * self.config.initializer_range)
