"""The calculator inside decoding: forced tokens write exactly the result, for every kind of tokenizer."""
import json

import pytest
import sentencepiece as spm
import torch
from conftest import ASSETS
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from data import LLAMA, T5, calculate
from model import load_tokenizer
from sample import continuation_ids, generate
from test_tokenizer import LLAMA3_PATTERN

CORPUS = [f"{name} has {a} apples and buys {b} more. {name} has {a}+{b} = <<{a}+{b}={a + b}>>{a + b} apples.\n"
          f"Each box holds {c} so {a + b}/{c} = <<{a + b}/{c}={(a + b) / c:g}>>{(a + b) / c:g} boxes.\n#### {a * c}"
          for name, a, b, c in [("Ann", 12, 30, 4), ("Bo", 7, 5, 3), ("Cy", 48, 2, 8), ("Di", 60, 15, 9)] * 25]
EXPRESSIONS = ["48/2", "12*0.5", "7-19", "100000*3", "2/3", "1.25+2.5", "(3+4)*5", "5/8"]


def byte_level_bpe(folder):
    """A Llama-3-style byte-level BPE trained with the tokenizers library, saved as tokenizer.json."""
    reference = Tokenizer(models.BPE(ignore_merges=True))
    reference.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    reference.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    reference.train_from_iterator(CORPUS, trainer)
    reference.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    return load_tokenizer(folder, "llama")


def tiny_sentencepiece(folder):
    """A small sentencepiece BPE with digits split, like the tiny default model's own tokenizer."""
    (folder / "corpus.txt").write_text("\n".join(CORPUS))
    spm.SentencePieceTrainer.train(input=str(folder / "corpus.txt"), model_prefix=str(folder / "tokenizer"),
                                   vocab_size=360, model_type="bpe", split_digits=True, byte_fallback=True,
                                   pad_id=3, bos_id=1, eos_id=2, unk_id=0, minloglevel=2)
    return load_tokenizer(folder, "llama")


def asset(folder, subfolder, name, model_type):
    (folder / name).write_bytes((ASSETS / subfolder / name).read_bytes())
    return load_tokenizer(folder, model_type)


TOKENIZERS = {
    "t5-sentencepiece": (lambda f: asset(f, "t5", "spiece.model", "t5"), T5),
    "mistral-sentencepiece": (lambda f: asset(f, "mistral", "tokenizer.model", "llama"), LLAMA),
    "byte-level-bpe": (byte_level_bpe, LLAMA),
    "tiny-sentencepiece": (tiny_sentencepiece, LLAMA),
}


@pytest.mark.parametrize("name", TOKENIZERS)
def test_forced_tokens_write_exactly_the_result(tmp_path, name):
    make, fmt = TOKENIZERS[name]
    tok = make(tmp_path)
    for expression in EXPRESSIONS:
        result = calculate(expression)
        opened = f"<<{expression}=" if fmt is LLAMA else f"[ {expression.replace('*', ' * ')} ="
        context_ids = tok.encode(f"She paid {expression} = {opened}")
        addition = fmt.close_calculation(result)
        forced = continuation_ids(tok, tok.decode(context_ids), addition)
        assert forced, (expression, result)
        assert tok.decode(context_ids + forced) == tok.decode(context_ids) + addition


class ScriptedModel(torch.nn.Module):
    """Writes a fixed token script whatever it is fed: shows what the sampler itself changes."""

    class Cache:
        def __init__(self, rows):
            self.rows, self.step = rows, 0

        def keep_rows(self, keep):
            self.rows = self.rows[keep]

    def __init__(self, scripts, vocab_size, is_encoder_decoder=False):
        super().__init__()
        self.scripts, self.vocab_size = scripts, vocab_size
        self.lm_head = torch.nn.Linear(1, 1)
        self.config = type("Config", (), {"is_encoder_decoder": is_encoder_decoder,
                                          "model_type": "t5" if is_encoder_decoder else "llama"})()

    def logits(self, cache):
        out = torch.zeros(len(cache.rows), self.vocab_size)
        for pos, row in enumerate(cache.rows.tolist()):
            out[pos, self.scripts[row][min(cache.step, len(self.scripts[row]) - 1)]] = 1.0
        return out

    def prefill(self, input_ids, attention_mask, max_new_tokens):
        cache = self.Cache(torch.arange(input_ids.shape[0]))
        return self.logits(cache), cache

    def decode_step(self, tokens, cache):
        cache.step += 1
        return self.logits(cache)


@pytest.mark.parametrize("name", ["mistral-sentencepiece", "byte-level-bpe", "tiny-sentencepiece", "t5-sentencepiece"])
def test_generate_forces_the_calculator_result(tmp_path, name):
    make, fmt = TOKENIZERS[name]
    tok = make(tmp_path)
    if fmt is LLAMA:
        texts = ["So 7*6 = <<7*6=99>>99 eggs.", "Then 48/2 = <<48/2=20>>20 and 5-8 = <<5-8=3>>3 left.",
                 "No call here: 3 = 3."]
        want = ["<<7*6=42>>", "<<48/2=24>>", "<<5-8=-3>>"]
    else:
        texts = ["So 7 * 6 = [ 7 * 6 = 99] 99 eggs.", "Then 48 / 2 = [ 48 / 2 = 20] 20 left.", "No call: 3 = 3."]
        want = ["[ 7 * 6 = 42]", "[ 48 / 2 = 24]"]
    scripts = [tok.encode(t) + [tok.eos_id] for t in texts]
    model = ScriptedModel(scripts, tok.vocab_size, is_encoder_decoder=fmt is T5)
    prompts = [[5 + i] for i in range(len(scripts))]  # distinct: rows that share a prompt share its prefill
    with_calc = [tok.decode(out) for out in generate(model, tok, prompts, 80, calculator=True)]
    without = [tok.decode(out) for out in generate(model, tok, prompts, 80, calculator=False)]
    assert without == [tok.decode(s) for s in scripts]  # the script as written, wrong results and all
    for expected in want:
        assert any(expected in text for text in with_calc), (expected, with_calc)
    assert with_calc[-1] == without[-1]  # "3 = 3" opens no call: nothing forced
