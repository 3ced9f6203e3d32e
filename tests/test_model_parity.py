"""Our hand-written Llama and T5 give the same logits as Hugging Face transformers.

Each test builds a tiny random model in transformers, saves it as a checkpoint folder, loads it with
our load_pretrained, and compares logits on a padded batch (fp32). Error measure: the largest absolute
difference divided by the largest absolute reference logit, over real (non-padding) positions.
"""
import shutil

import pytest
import torch
import transformers
from conftest import ASSETS

from model import load_pretrained, save_pretrained

MAX_REL_ERR = 1e-4
LLAMA_VOCAB, T5_VOCAB = 96, 80

LLAMA_VARIANTS = {
    "mha-tied": dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True),
    "gqa-untied": dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
    "mqa-head-dim": dict(num_attention_heads=4, num_key_value_heads=1, head_dim=24),
    "llama3-rope": dict(num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8}),
    "biases": dict(num_attention_heads=4, num_key_value_heads=2, attention_bias=True, mlp_bias=True),
    "mistral": dict(model_type="mistral", num_attention_heads=4, num_key_value_heads=2, sliding_window=None),
}


def rel_err(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def add_tokenizer(folder, family):
    asset = {"llama": ASSETS / "mistral" / "tokenizer.model", "t5": ASSETS / "t5" / "spiece.model"}[family]
    shutil.copy(asset, folder / asset.name)


def loaded(folder, hf, family, **kwargs):
    """Save a transformers model as a checkpoint folder (with a real tokenizer file), load it with ours."""
    hf.save_pretrained(folder)
    add_tokenizer(folder, family)
    return load_pretrained(folder, **kwargs)


def hf_llama(seed=0, model_type="llama", **overrides):
    kwargs = dict(vocab_size=LLAMA_VOCAB, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                  max_position_embeddings=64, rms_norm_eps=1e-5)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    if model_type == "mistral":
        return transformers.MistralForCausalLM(transformers.MistralConfig(**kwargs)).eval()
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**kwargs)).eval()


def left_padded_batch(seed=1, lengths=(11, 7, 3)):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, LLAMA_VOCAB, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, T - n:] = 1
    ids[mask == 0] = 0
    return ids, mask


def hf_llama_logits(hf, ids, mask):
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # what HF's generate passes for left padding
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits


@pytest.mark.parametrize("variant", LLAMA_VARIANTS)
def test_llama_logits_match_transformers(tmp_path, variant):
    hf = hf_llama(**LLAMA_VARIANTS[variant])
    ours, _ = loaded(tmp_path, hf, "llama")
    ids, mask = left_padded_batch()
    with torch.no_grad():
        got = ours(ids, attention_mask=mask)
    want = hf_llama_logits(hf, ids, mask)
    real = mask.bool()
    assert rel_err(got[real], want[real]) <= MAX_REL_ERR
    # Unpadded, a row must give the same logits as in the padded batch (positions start at its first token).
    with torch.no_grad():
        alone = ours(ids[2:, -3:])
    assert rel_err(alone[0], got[2, -3:]) <= MAX_REL_ERR


def grads_rel_err(ours, hf, ours_logits, hf_logits, real):
    """Backpropagate the same random weighting of the real positions' logits through both models;
    the largest relative error over every parameter's gradient (matched by its HF name)."""
    weights = torch.randn(ours_logits.shape, generator=torch.Generator().manual_seed(3)) * real[..., None]
    (ours_logits * weights).sum().backward()
    (hf_logits * weights).sum().backward()
    theirs = dict(hf.named_parameters())
    mine = dict(ours.named_parameters())
    assert len(mine) > 10 and all(p.grad is not None and theirs[name].grad is not None for name, p in mine.items())
    errors = {name: rel_err(p.grad, theirs[name].grad) for name, p in mine.items()}
    worst = max(errors, key=errors.get)
    return errors[worst], worst


@pytest.mark.parametrize("variant", ["mha-tied", "gqa-untied", "biases"])
def test_llama_gradients_match_transformers(tmp_path, variant):
    """Training runs backward through our model: its gradients, not only its logits, must be HF's
    (right-padded, as SFT and DPO batch their examples)."""
    hf = hf_llama(**LLAMA_VARIANTS[variant]).train()
    ours, _ = loaded(tmp_path, hf, "llama")
    ours.train()
    ids, mask = left_padded_batch()
    ids, mask = ids.flip(-1), mask.flip(-1)  # right-padded
    error, worst = grads_rel_err(ours, hf, ours(ids, attention_mask=mask),
                                 hf(input_ids=ids, attention_mask=mask).logits, mask.bool())
    assert error <= MAX_REL_ERR, worst


def test_llama_logits_at_chosen_positions_match_transformers(tmp_path):
    hf = hf_llama(num_attention_heads=4, num_key_value_heads=2)
    ours, _ = loaded(tmp_path, hf, "llama")
    ids, mask = left_padded_batch()
    at = torch.tensor([[10, 4, 7], [8, 9, 10], [10, 10, 9]])  # (B, A), any order, repeats allowed
    with torch.no_grad():  # the last block runs only at these positions
        got = ours(ids, attention_mask=mask, logits_at=at)
    with_grad = ours(ids, attention_mask=mask, logits_at=at)  # training: every position, gathered at the end
    want = hf_llama_logits(hf, ids, mask).gather(1, at[..., None].expand(-1, -1, LLAMA_VOCAB))
    assert got.shape == with_grad.shape == (3, 3, LLAMA_VOCAB)
    assert rel_err(got, want) <= MAX_REL_ERR and rel_err(with_grad.detach(), want) <= MAX_REL_ERR


def test_llama_tied_head_is_shared_and_untied_is_not(tmp_path):
    for tie in (True, False):
        ours, _ = loaded(tmp_path / str(tie), hf_llama(tie_word_embeddings=tie), "llama")
        assert (ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()) == tie


def test_llama_sharded_checkpoint_loads(tmp_path):
    hf = hf_llama(num_attention_heads=4, num_key_value_heads=2)
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
    add_tokenizer(tmp_path, "llama")
    ours, _ = load_pretrained(tmp_path)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        got = ours(ids, attention_mask=mask)
    assert rel_err(got[mask.bool()], hf_llama_logits(hf, ids, mask)[mask.bool()]) <= MAX_REL_ERR


@pytest.mark.parametrize("max_shard_bytes", [2**30, 30_000])
def test_llama_our_save_loads_in_transformers(tmp_path, max_shard_bytes):
    ours, tok = loaded(tmp_path / "hf", hf_llama(num_attention_heads=4, num_key_value_heads=2), "llama")
    save_pretrained(ours, tok, tmp_path / "ours", max_shard_bytes=max_shard_bytes)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids, mask = left_padded_batch()
    with torch.no_grad():
        got = ours(ids, attention_mask=mask)
    assert rel_err(got[mask.bool()], hf_llama_logits(reloaded, ids, mask)[mask.bool()]) <= MAX_REL_ERR
    assert (tmp_path / "ours" / "tokenizer.model").is_file()


def test_llama_bf16_loads_and_runs(tmp_path):
    ours32, _ = loaded(tmp_path, hf_llama(num_attention_heads=4, num_key_value_heads=2), "llama")
    ours16, _ = load_pretrained(tmp_path, dtype=torch.bfloat16)
    assert ours16.lm_head.weight.dtype == torch.bfloat16
    ids, mask = left_padded_batch()
    with torch.no_grad():
        got16, got32 = ours16(ids, attention_mask=mask), ours32(ids, attention_mask=mask)
    assert got16.dtype == torch.bfloat16
    assert rel_err(got16.float()[mask.bool()], got32[mask.bool()]) < 0.05


# ---------------------------------------------------------------- T5
T5_VARIANTS = {
    # FLAN-T5 / T5 v1.1: gated tanh-GELU, separate lm_head, no output scaling.
    "v1.1-gated-gelu-untied": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, untie=True),
    # Original T5: ReLU, lm_head tied to the embedding, output scaled by d_model^-0.5.
    "v1.0-relu-tied": dict(feed_forward_proj="relu", tie_word_embeddings=True, untie=False),
}


def hf_t5(seed=0, untie=False, **overrides):
    kwargs = dict(vocab_size=T5_VOCAB, d_model=32, d_kv=8, d_ff=56, num_layers=2, num_decoder_layers=3,
                  num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=12)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**kwargs))
    if untie:  # transformers 5 always builds T5 tied; a FLAN-T5 checkpoint has its own lm_head
        hf.lm_head.weight = torch.nn.Parameter(torch.randn(T5_VOCAB, 32))
    return hf.eval()


def t5_batch(seed=2):
    g = torch.Generator().manual_seed(seed)
    enc = torch.randint(2, T5_VOCAB, (3, 20), generator=g)  # long enough to reach the log-spaced buckets
    enc_mask = torch.ones_like(enc)
    enc_mask[1, 13:] = 0
    enc_mask[2, 4:] = 0
    enc[enc_mask == 0] = 0
    dec = torch.randint(2, T5_VOCAB, (3, 16), generator=g)
    dec[:, 0] = 0  # decoder_start_token_id
    return enc, enc_mask, dec


@pytest.mark.parametrize("variant", T5_VARIANTS)
def test_t5_logits_match_transformers(tmp_path, variant):
    hf = hf_t5(**T5_VARIANTS[variant])
    ours, tok = loaded(tmp_path, hf, "t5")
    assert (ours.lm_head.weight.data_ptr() == ours.shared.weight.data_ptr()) == (not T5_VARIANTS[variant]["untie"])
    enc, enc_mask, dec = t5_batch()
    with torch.no_grad():
        got = ours(enc, attention_mask=enc_mask, decoder_input_ids=dec)
        want = hf(input_ids=enc, attention_mask=enc_mask, decoder_input_ids=dec).logits
    assert rel_err(got, want) <= MAX_REL_ERR
    # Round trip: our save -> transformers load -> same logits.
    save_pretrained(ours, tok, tmp_path / "ours")
    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        again = reloaded(input_ids=enc, attention_mask=enc_mask, decoder_input_ids=dec).logits
    assert rel_err(got, again) <= MAX_REL_ERR


@pytest.mark.parametrize("variant", T5_VARIANTS)
def test_t5_gradients_match_transformers(tmp_path, variant):
    """The encoder's relative position bias, the cross-attention and the head all get HF's gradients."""
    hf = hf_t5(**T5_VARIANTS[variant], dropout_rate=0.0).train()
    ours, _ = loaded(tmp_path, hf, "t5")
    ours.train()
    enc, enc_mask, dec = t5_batch()
    error, worst = grads_rel_err(ours, hf, ours(enc, attention_mask=enc_mask, decoder_input_ids=dec),
                                 hf(input_ids=enc, attention_mask=enc_mask, decoder_input_ids=dec).logits,
                                 torch.ones(dec.shape, dtype=torch.bool))
    assert error <= MAX_REL_ERR, worst


def test_t5_transformers4_style_config_untied(tmp_path):
    """FLAN-T5 checkpoints on the hub say tie_word_embeddings=false (and have no scale_decoder_outputs)."""
    hf = hf_t5(feed_forward_proj="gated-gelu", untie=True)
    hf.save_pretrained(tmp_path)
    config = (tmp_path / "config.json").read_text()
    config = config.replace('"tie_word_embeddings": true', '"tie_word_embeddings": false')
    config = config.replace('"scale_decoder_outputs": false,', "")
    (tmp_path / "config.json").write_text(config)
    add_tokenizer(tmp_path, "t5")
    ours, _ = load_pretrained(tmp_path)
    enc, enc_mask, dec = t5_batch()
    with torch.no_grad():
        got = ours(enc, attention_mask=enc_mask, decoder_input_ids=dec)
        want = hf(input_ids=enc, attention_mask=enc_mask, decoder_input_ids=dec).logits
    assert rel_err(got, want) <= MAX_REL_ERR


def test_t5_sharded_and_bf16(tmp_path):
    hf = hf_t5(feed_forward_proj="gated-gelu", untie=True)
    hf.save_pretrained(tmp_path, max_shard_size="30KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    add_tokenizer(tmp_path, "t5")
    ours32, _ = load_pretrained(tmp_path)
    ours16, _ = load_pretrained(tmp_path, dtype=torch.bfloat16)
    enc, enc_mask, dec = t5_batch()
    with torch.no_grad():
        want = hf(input_ids=enc, attention_mask=enc_mask, decoder_input_ids=dec).logits
        got32 = ours32(enc, attention_mask=enc_mask, decoder_input_ids=dec)
        got16 = ours16(enc, attention_mask=enc_mask, decoder_input_ids=dec)
    assert rel_err(got32, want) <= MAX_REL_ERR
    assert got16.dtype == torch.bfloat16 and rel_err(got16.float(), want) < 0.05
