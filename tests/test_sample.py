"""Our sampler: equal to transformers' greedy generate, cache equal to full forward, sampling rules, errors."""
import pytest
import torch
import transformers

from sample import generate, pick_next
from test_model_parity import hf_llama, hf_t5, loaded, rel_err

EOS = 2


class IdsOnly:
    """A tokenizer stand-in for tests that never look at text (calculator off)."""
    pad_id, eos_id, bos_id, vocab_size = 0, EOS, 1, 10**6


def ragged_prompts(vocab, lengths=(9, 4, 1, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


def left_pad(prompts, pad=0):
    T = max(map(len, prompts))
    ids = torch.tensor([[pad] * (T - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def eos_it_likes(ours, prompts, n):
    """A token that greedy decoding emits at many different first positions across rows: used as EOS,
    so that rows stop at different steps (and some never)."""
    tok = IdsOnly()
    tok.eos_id = -1
    out = generate(ours, tok, prompts, n)
    first_positions = {}
    for row in out:
        for token in set(row[1:]):
            first_positions.setdefault(token, set()).add(row.index(token))
    return max(first_positions, key=lambda token: len(first_positions[token]))


def test_llama_greedy_equals_transformers_generate(tmp_path):
    hf = hf_llama(num_attention_heads=4, num_key_value_heads=2)
    ours = loaded(tmp_path, hf, "llama")[0]
    prompts = ragged_prompts(96)
    tok = IdsOnly()
    tok.eos_id = eos_it_likes(ours, prompts, 24)
    got = generate(ours, tok, prompts, max_new_tokens=24)
    ids, mask = left_pad(prompts)
    want = hf.generate(ids, attention_mask=mask, max_new_tokens=24, do_sample=False,
                       eos_token_id=tok.eos_id, pad_token_id=0)[:, ids.shape[1]:]
    assert any(len(row) < 24 for row in got)  # at least one row stopped at EOS
    for row, new_tokens in zip(want.tolist(), got):
        assert new_tokens == row[:len(new_tokens)]
        assert all(t == 0 for t in row[len(new_tokens):])  # transformers pads after EOS


def test_t5_greedy_equals_transformers_generate(tmp_path):
    # (transformers 5.23's generate sizes its cache by num_layers, so keep the decoder as deep as the encoder.)
    hf = hf_t5(feed_forward_proj="gated-gelu", untie=True, num_decoder_layers=2)
    ours = loaded(tmp_path, hf, "t5")[0]
    prompts = ragged_prompts(80, lengths=(12, 5, 8))
    tok = IdsOnly()
    tok.eos_id = eos_it_likes(ours, prompts, 20)
    got = generate(ours, tok, prompts, max_new_tokens=20)
    # transformers pads T5 prompts on the right; relative positions make that the same as our left padding.
    T = max(map(len, prompts))
    ids = torch.tensor([p + [0] * (T - len(p)) for p in prompts])
    mask = (torch.arange(T)[None] < torch.tensor([len(p) for p in prompts])[:, None]).long()
    want = hf.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False,
                       eos_token_id=tok.eos_id, pad_token_id=0, decoder_start_token_id=0)[:, 1:]
    assert any(len(row) < 20 for row in got)
    for row, new_tokens in zip(want.tolist(), got):
        assert new_tokens == row[:len(new_tokens)]


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_cached_decoding_equals_full_forward(tmp_path, family):
    hf = hf_llama(num_attention_heads=4, num_key_value_heads=2) if family == "llama" else hf_t5(untie=True)
    ours = loaded(tmp_path, hf, family)[0]
    prompts = ragged_prompts(80, lengths=(7, 3, 5))
    ids, mask = left_pad(prompts)
    steps = torch.randint(3, 80, (3, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits, cache = ours.prefill(ids, mask, max_new_tokens=8)
        cached = [logits]
        for t in range(steps.shape[1]):
            cached.append(ours.decode_step(steps[:, t], cache))
        for t in range(steps.shape[1] + 1):  # the uncached forward over everything so far
            if family == "llama":
                full_ids = torch.cat([ids, steps[:, :t]], 1)
                full_mask = torch.cat([mask, torch.ones(3, t, dtype=torch.long)], 1)
                full = ours(full_ids, attention_mask=full_mask)[:, -1]
            else:
                dec = torch.cat([torch.zeros(3, 1, dtype=torch.long), steps[:, :t]], 1)
                full = ours(ids, attention_mask=mask, decoder_input_ids=dec)[:, -1]
            assert rel_err(cached[t], full) <= 1e-4, t


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_decode_attention_equals_scaled_dot_product_attention(heads, kv_heads, dtype, tolerance):
    from model.llama import attend_one_query
    g = torch.Generator().manual_seed(0)
    B, S, D = 5, 11, 16
    q, k, v = (torch.randn(B, h, n, D, generator=g).to(dtype) for h, n in ((heads, 1), (kv_heads, S), (kv_heads, S)))
    mask = torch.rand(B, 1, 1, S, generator=g) > 0.3
    mask[..., -1] = True  # a decode step always sees its own key
    want = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask,
                                                            enable_gqa=heads != kv_heads)
    got = attend_one_query(q, k, v, mask)
    assert got.dtype == dtype and got.shape == (B, heads, 1, D)
    assert rel_err(got.float(), want) <= tolerance


def test_cache_keeps_the_chosen_rows_filled_slots():
    from model.kv_cache import KVCache
    cache = KVCache(n_layers=2, batch=4, n_heads=3, max_len=9, head_dim=5, device="cpu", dtype=torch.float32)
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]])
    cache.reserve(mask)
    for layer in range(2):
        cache.update(layer, torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5))
    cache.advance(5)
    k, v = cache.k[:, :, :, :5].clone(), cache.v[:, :, :, :5].clone()
    rows = torch.tensor([2, 0])
    cache.keep_rows(rows)
    assert cache.k.shape == (2, 2, 3, 9, 5) and cache.length == 5
    assert torch.equal(cache.k[:, :, :, :5], k[:, rows]) and torch.equal(cache.v[:, :, :, :5], v[:, rows])
    assert torch.equal(cache.mask[:, :5], mask[rows].bool())


def test_batch_compaction_gives_each_row_what_it_gets_alone(tmp_path):
    ours = loaded(tmp_path, hf_llama(num_attention_heads=4, num_key_value_heads=2), "llama")[0]
    prompts = ragged_prompts(96, lengths=(9, 4, 1, 6, 3, 8, 2, 5))
    tok = IdsOnly()
    tok.eos_id = eos_it_likes(ours, prompts, 30)
    together = generate(ours, tok, prompts, max_new_tokens=30)
    assert len({len(row) for row in together}) > 2  # rows finished at different steps
    assert together == [generate(ours, tok, [p], max_new_tokens=30)[0] for p in prompts]


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_a_prompt_repeated_in_the_batch_is_run_once_and_each_copy_decodes_as_it_would_alone(tmp_path, family):
    hf = hf_llama(num_attention_heads=4, num_key_value_heads=2) if family == "llama" else hf_t5(untie=True)
    ours = loaded(tmp_path, hf, family)[0]
    a, b, c = ragged_prompts(80, lengths=(6, 3, 9))
    prompts = [a, b, a, c, a, b]  # the loop's samples of one question share its prompt, in any order
    tok = IdsOnly()
    tok.eos_id = eos_it_likes(ours, [a, b, c], 20)
    alone = {tuple(p): generate(ours, tok, [p], max_new_tokens=20)[0] for p in (a, b, c)}
    assert len(set(map(tuple, alone.values()))) == 3  # the three prompts decode differently
    assert generate(ours, tok, prompts, max_new_tokens=20) == [alone[tuple(p)] for p in prompts]
    # Sampled copies share the prompt's cache rows but draw their own tokens.
    sampled = generate(ours, tok, prompts, max_new_tokens=20, temperature=1.0, seed=1)
    assert sampled[0] != sampled[2] or sampled[2] != sampled[4]


def test_seeded_sampling_is_reproducible(tmp_path):
    ours = loaded(tmp_path, hf_llama(num_attention_heads=4, num_key_value_heads=2), "llama")[0]
    prompts = ragged_prompts(96)
    tok = IdsOnly()
    tok.eos_id = -1
    kwargs = dict(max_new_tokens=16, temperature=1.0, top_k=20, top_p=0.9)
    a, b = generate(ours, tok, prompts, seed=3, **kwargs), generate(ours, tok, prompts, seed=3, **kwargs)
    c = generate(ours, tok, prompts, seed=4, **kwargs)
    assert a == b and a != c


def test_top_k_and_top_p_stay_inside_the_allowed_set():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 50, generator=g) * 3
    probs = logits.softmax(-1)
    top5 = set()
    for row in range(64):
        top5 = set(torch.topk(logits[row], 5).indices.tolist())
        order = probs[row].argsort(descending=True).tolist()
        nucleus, mass = set(), 0.0
        for token in order:  # smallest set of most likely tokens with mass >= 0.8
            nucleus.add(token)
            mass += probs[row, token].item()
            if mass >= 0.8:
                break
        for _ in range(30):
            assert pick_next(logits[row:row + 1], 1.0, 5, 1.0, g).item() in top5
            assert pick_next(logits[row:row + 1], 1.0, 0, 0.8, g).item() in nucleus
    greedy = pick_next(logits, 0.0, 0, 1.0, g)
    assert torch.equal(greedy, logits.argmax(-1))


def test_errors_for_empty_and_too_long_prompts(tmp_path):
    ours = loaded(tmp_path, hf_llama(num_attention_heads=4, num_key_value_heads=2), "llama")[0]
    with pytest.raises(ValueError, match="list of prompts is empty"):
        generate(ours, IdsOnly(), [], 10)
    with pytest.raises(ValueError, match=r"prompt of 60 tokens \+ 10 new tokens exceeds the model's context of 64"):
        generate(ours, IdsOnly(), [[5] * 60, [5] * 3], 10)
