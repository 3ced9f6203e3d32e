"""A static, preallocated key/value cache (as in gpt-fast), shared by both model families.

During sampling each layer's keys and values for all past positions are kept here, so a decode step
only computes the new token. Memory is allocated once for the longest possible sequence.
"""
import torch


class KVCache:
    def __init__(self, n_layers, batch, n_heads, max_len, head_dim, device, dtype):
        shape = (n_layers, batch, n_heads, max_len, head_dim)
        # Not zeroed (at the loop's batch of 256 that is ~0.1 s a call): a slot is written before it is read.
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        # Which slots hold a real token (False for left padding): the attention key mask.
        self.mask = torch.zeros(batch, max_len, device=device, dtype=torch.bool)
        self.length = 0  # slots [0, length) are filled

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def reserve(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mark the next T slots (1 = real token) and return the key mask over all filled slots."""
        T = attention_mask.shape[1]
        if self.length + T > self.max_len:
            raise ValueError(f"KV cache is full: {self.length} + {T} tokens > {self.max_len} slots")
        self.mask[:, self.length:self.length + T] = attention_mask.bool()
        return self.mask[:, :self.length + T]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Write this layer's new keys/values (B, H, T, D) and return all of them so far."""
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, T: int):
        self.length += T

    def keep_rows(self, rows: torch.Tensor):
        """Drop finished rows from the batch so later steps spend no compute on them."""
        self.k, self.v, self.mask = self._kept(self.k, rows), self._kept(self.v, rows), self.mask[rows]

    def _kept(self, cache: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """cache's rows, in a new cache. Only the filled slots are copied (the others are written before
        anything reads them), straight into place: the copy is memory-bound, and this halves its bytes."""
        kept = cache.new_empty((cache.shape[0], len(rows), *cache.shape[2:]))  # (layers, rows kept, H, slots, D)
        filled = slice(0, self.length)
        torch.index_select(cache[:, :, :, filled], 1, rows, out=kept[:, :, :, filled])
        return kept
