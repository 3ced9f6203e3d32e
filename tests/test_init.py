"""init_from_config: each family's usual initialization, reproducible from the seed."""
import torch
import transformers

from model import init_from_config

LLAMA = {"model_type": "llama", "vocab_size": 500, "hidden_size": 128, "intermediate_size": 256,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "initializer_range": 0.02, "tie_word_embeddings": True}
T5 = {"model_type": "t5", "vocab_size": 500, "d_model": 128, "d_kv": 16, "d_ff": 256, "num_layers": 2,
      "num_heads": 4, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}


def test_same_seed_same_weights_other_seed_other_weights():
    for config in (LLAMA, T5):
        a, b, c = (init_from_config(config, seed=s) for s in (0, 0, 1))
        for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
            assert torch.equal(pa, pb), name
            assert "norm" in name or not torch.equal(pa, pc), name


def test_init_scales_match_transformers():
    """The standard deviation of every matrix is within 10% of what transformers' own init gives."""
    torch.manual_seed(0)
    hf_llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA))
    hf_t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(**T5))
    for ours, hf in ((init_from_config(LLAMA), hf_llama), (init_from_config(T5), hf_t5)):
        theirs = dict(hf.named_parameters())
        for name, p in ours.named_parameters():
            if name not in theirs:
                continue  # untied T5 lm_head: transformers 5 always ties it
            if "norm" in name:
                assert torch.equal(p, theirs[name]), name
            else:
                assert abs(p.std().item() / theirs[name].std().item() - 1) < 0.1, name
    llama = init_from_config(LLAMA)
    assert llama.lm_head.weight is llama.model.embed_tokens.weight
    t5 = init_from_config(T5)
    assert t5.lm_head.weight is not t5.shared.weight
    assert abs(t5.lm_head.weight.std().item() - 1.0) < 0.1  # HF: normal(0, factor) for an untied head


def test_t5_locality_prior_gives_the_encoder_order_from_the_start():
    """pretrain.py's prior for a T5 base: each encoder head scores its own position highest, falls off
    with distance, and the heads of each half prefer one side; the decoder's heads fall off looking back."""
    from model.t5 import relative_position_bucket
    from pretrain import t5_locality_prior
    model = init_from_config(T5, seed=0)
    t5_locality_prior(model)
    for stack, bidirectional in ((model.encoder, True), (model.decoder, False)):
        attn = stack.block[0].layer[0].SelfAttention
        offsets = torch.arange(-3, 4) if bidirectional else torch.arange(-3, 1)  # key position - query position
        bias = attn.relative_attention_bias(relative_position_bucket(offsets, bidirectional, attn.buckets,
                                                                     attn.max_distance))  # (offsets, heads)
        itself = offsets.tolist().index(0)
        for h in range(bias.shape[1]):
            scores = bias[:, h].tolist()
            assert scores[itself] == 0 and max(scores) == 0, (bidirectional, h, scores)
            assert scores[:itself + 1] == sorted(scores[:itself + 1]), (h, scores)  # nearer on the left: higher
            if bidirectional:
                assert scores[itself:] == sorted(scores[itself:], reverse=True), (h, scores)
                left, right = scores[itself - 1], scores[itself + 1]
                assert (left > right) == (h < bias.shape[1] // 2), (h, scores)
