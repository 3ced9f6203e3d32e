"""model/tokenizer.py against the reference implementations: sentencepiece for the T5 and Mistral
files, the `tokenizers` library for byte-level BPE (which we train here on small corpora)."""

import json
import random
import re
import shutil

import pytest
import sentencepiece as spm
from conftest import ASSETS
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from model.tokenizer import load_tokenizer

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def stress_strings():
    """Hand-picked edge cases plus a few hundred GSM8K-like strings built with a seeded random."""
    cases = [
        "", " ", "  ", "\n", "\n\n", "\t", " \n \n ", "\r\n", "a", " leading", "trailing ", "  both  ",
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72",
        "Weng earns $12 an hour; 50 minutes is 50/60 = <<50/60=0.8333>>0.8333 hours.\n#### 10",
        "It's 25% off: $1,234.56 -> $925.92", "I'M sure they'LL say we'VE DON'T", "x² + y² = z²; ½ + ¼ = ¾",
        "café, naïve, über, Ærø, façade", "中文数学题：小明有3个苹果。", "emoji 😀🎉👍🏽 and ZWJ 👨‍👩‍👧",
        "Arabic digits ٠١٢٣٤٥٦٧٨٩ and ۱۲۳", "Roman Ⅻ and circled ① ②", "tabs\tand\t\tmore\ttabs",
        "many     spaces    here", "lines\n\n\n\nand\n \n  \n gaps", "nbsp\u00a0and\u3000ideographic space",
        "unit separator a\x1cb\x1fc", "12345678901234567890", "3.14159 and -42 and 1e10", "sp▁marker",
        "<s> and </s> as plain text", "<unk> <pad>", "####", "<<>>", "a\r\nb\rc", "  \t  \n\t",
    ]
    fragments = [
        "Janet's ducks lay 16 eggs per day.", "She eats three for breakfast", "and bakes muffins with 4.",
        "How much does she make?", "$2 per egg", "16 - 3 - 4 = <<16-3-4=9>>9", "9 * 2 = <<9*2=18>>18",
        "#### 18", "a 20% discount", "½ of the cake", "the area is 5 m²", "Zoë paid €3,50", "für 7 Tage",
        "共有 12 个", "🍎🍎🍎", "٣ تفاحات", "(48 + 24) / 2", "x = 3y - 7", "1,000,000", "...", "?!", "'s",
        "key \x1cvalue \x1f7",  # \x1c is whitespace to Python's \s but not to Unicode's (or `tokenizers`)
    ]
    separators = ["", " ", "  ", "\n", "\n\n", "\t", " \n", "   \n  ", "\n\n\n"]
    rng = random.Random(0)
    for _ in range(300):
        parts = [rng.choice(fragments) for _ in range(rng.randint(1, 6))]
        text = "".join(part + rng.choice(separators) for part in parts)
        cases.append(rng.choice(["", " ", "  ", "\n"]) + text)
    return cases


STRESS = stress_strings()


def sp_folder(tmp_path, subfolder, name):
    """A fresh folder holding just one asset file (so save() has no configs to copy)."""
    source = ASSETS / subfolder / name
    folder = tmp_path / subfolder
    folder.mkdir()
    shutil.copyfile(source, folder / name)
    return folder


def test_t5_matches_sentencepiece(tmp_path):
    folder = sp_folder(tmp_path, "t5", "spiece.model")
    tok = load_tokenizer(folder, "t5")
    sp = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    assert (tok.eos_id, tok.pad_id, tok.bos_id, tok.vocab_size) == (1, 0, None, 32100)
    for s in STRESS:
        assert tok.encode(s) == sp.encode(s), repr(s)
        assert tok.decode(tok.encode(s)) == sp.decode(sp.encode(s)), repr(s)
    assert tok.encode("translate English to German: The house is wonderful.") == [
        13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5]


def test_t5_sentinels(tmp_path):
    tok = load_tokenizer(sp_folder(tmp_path, "t5", "spiece.model"), "t5")
    assert tok.encode("<extra_id_0>") == [32099]
    assert tok.encode("<extra_id_99>") == [32000]
    assert (tok.decode([32099]), tok.decode([32000])) == ("<extra_id_0>", "<extra_id_99>")
    assert tok.encode("<extra_id_05>")[0] != 32094  # not T5's spelling: plain text
    # the text between sentinels is encoded on its own, as transformers' T5Tokenizer does
    ids = tok.encode("The <extra_id_0> walks in <extra_id_1> park")
    assert ids == tok.encode("The ") + [32099] + tok.encode(" walks in ") + [32098] + tok.encode(" park")
    assert tok.decode(ids) == "The<extra_id_0> walks in<extra_id_1> park"
    assert tok.decode([32000, 37, 1, 0]) == "<extra_id_99> The"  # eos and pad dropped


def test_mistral_matches_sentencepiece(tmp_path):
    folder = sp_folder(tmp_path, "mistral", "tokenizer.model")
    tok = load_tokenizer(folder, "mistral")
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (1, 2, 0, 32000)
    lossy = []
    for s in STRESS:
        ids = tok.encode(s)
        assert ids == sp.encode(s), repr(s)
        assert tok.decode(ids) == sp.decode(ids), repr(s)
        if sp.decode(ids) != s:
            lossy.append(s)
    # Byte fallback makes everything lossless except the literal "▁", which decodes to a space.
    assert lossy == ["sp▁marker"]
    assert tok.decode([1] + tok.encode("Hi") + [2, 0]) == "Hi"  # bos, eos and pad (= unk) dropped


# --- byte-level BPE (tokenizer.json) ---------------------------------------------------------

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot|>", "<|eot|>_id"]  # last: longest match wins
SPECIAL_STRINGS = [
    "<|begin_of_text|>Hello world<|end_of_text|>", "a <|eot|> b<|eot|>_id c", "<|eot|>_i", "x<|eot|>_id<|eot|>",
    "<|begin_of_text|><|begin_of_text|>", "<|end_of_text", "[NUM] apples and [NUM]\n[NUM]",
]
PRE_TOKENIZERS = {  # name: (pre-tokenizer, BPE ignore_merges)
    "gpt2": (lambda: pre_tokenizers.ByteLevel(add_prefix_space=False), False),
    "gpt2_prefix_space": (lambda: pre_tokenizers.ByteLevel(add_prefix_space=True), False),
    "llama3": (lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), True),
    "smollm2": (lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]), False),
}


@pytest.fixture(scope="module", params=list(PRE_TOKENIZERS))
def byte_level(request, tmp_path_factory):
    """(folder, reference Tokenizer): a small BPE trained on the stress strings, saved as HF files."""
    make_pre_tokenizer, ignore_merges = PRE_TOKENIZERS[request.param]
    reference = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    reference.pre_tokenizer = make_pre_tokenizer()
    reference.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    reference.train_from_iterator(STRESS, trainer)
    reference.add_tokens([AddedToken("[NUM]", special=False)])  # an added token that decode keeps
    folder = tmp_path_factory.mktemp(request.param)
    reference.save(str(folder / "tokenizer.json"))
    config = {"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|end_of_text|>", "special": True}}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder, Tokenizer.from_file(str(folder / "tokenizer.json"))


def test_byte_level_matches_tokenizers(byte_level):
    folder, reference = byte_level
    tok = load_tokenizer(folder, "llama")
    for s in STRESS + SPECIAL_STRINGS:
        ids = tok.encode(s)
        assert ids == reference.encode(s, add_special_tokens=False).ids, repr(s)
        assert tok.decode(ids) == reference.decode(ids, skip_special_tokens=True), repr(s)
    assert tok.vocab_size == reference.get_vocab_size(with_added_tokens=True)


def test_byte_level_round_trip_and_specials(byte_level, tmp_path):
    folder, reference = byte_level
    tok = load_tokenizer(folder, "llama")
    bos, eos = reference.token_to_id("<|begin_of_text|>"), reference.token_to_id("<|end_of_text|>")
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (bos, eos, eos)  # pad falls back to eos
    prefix = " " if "prefix_space" in folder.name else ""  # ByteLevel(add_prefix_space) adds one
    for s in STRESS:
        assert tok.decode(tok.encode(s)) == (prefix + s if s and not s.startswith(" ") else s), repr(s)
    assert tok.encode("<|eot|>_id") == [reference.token_to_id("<|eot|>_id")]
    assert tok.decode([bos] + tok.encode("Hi") + [eos, eos]) == prefix + "Hi"
    tok.save(tmp_path)  # copies the files it was loaded from
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes()


def tiny_bpe(ignore_merges, merges):
    """A hand-made tokenizer.json where merging "abc" gives a+bc, but "abc" is itself a token."""
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": byte_level,
            "post_processor": None, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": ignore_merges, "merges": merges,
                      "vocab": {"a": 0, "b": 1, "c": 2, "bc": 3, "abc": 4, "ab": 5}}}


@pytest.mark.parametrize("ignore_merges", [False, True])
@pytest.mark.parametrize("merges", [["b c", "a b", "ab c"], [["b", "c"], ["a", "b"], ["ab", "c"]]])
def test_ignore_merges_and_merge_formats(tmp_path, ignore_merges, merges):
    spec = tiny_bpe(ignore_merges, merges)
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    tok, reference = load_tokenizer(tmp_path, "llama"), Tokenizer.from_str(json.dumps(spec))
    assert tok.encode("abc") == ([4] if ignore_merges else [0, 3])
    for s in ["abc", "ab", "abcab", "aabbcc", "cab", "ab abc", "abd"]:  # " " and "d": no token, dropped
        assert tok.encode(s) == reference.encode(s).ids, repr(s)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (None, None, None)  # no configs at all


# --- errors and save() -------------------------------------------------------------------------

def test_missing_and_broken_files(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in [tmp_path / "nowhere", tmp_path / "empty"]:
        with pytest.raises(FileNotFoundError, match=re.escape(str(folder))) as error:
            load_tokenizer(folder, "llama")
        assert "spiece.model, tokenizer.model, tokenizer.json" in str(error.value)
    with pytest.raises(ValueError, match="model_type"):
        load_tokenizer(tmp_path, "gpt5")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json"):
        load_tokenizer(tmp_path, "llama")
    for part, value in [("normalizer", {"type": "NFC"}), ("pre_tokenizer", {"type": "Metaspace"}),
                        ("model", {"type": "Unigram", "vocab": []})]:
        spec = tiny_bpe(False, []) | {part: value}
        (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
        with pytest.raises(ValueError, match=part) as error:
            load_tokenizer(tmp_path, "llama")
        assert str(tmp_path / "tokenizer.json") in str(error.value)
    spec = tiny_bpe(False, [])
    del spec["model"]["vocab"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="malformed"):
        load_tokenizer(tmp_path, "llama")
    (tmp_path / "tokenizer.model").write_bytes(b"not a sentencepiece model")  # found before tokenizer.json
    with pytest.raises(ValueError, match="tokenizer.model"):
        load_tokenizer(tmp_path, "mistral")


@pytest.mark.parametrize("subfolder, name, model_type", [("t5", "spiece.model", "t5"),
                                                         ("mistral", "tokenizer.model", "mistral")])
def test_sentencepiece_save_and_reload(tmp_path, subfolder, name, model_type):
    source = sp_folder(tmp_path, subfolder, name)
    tok = load_tokenizer(source, model_type)
    original = (source / name).read_bytes()
    shutil.rmtree(source)  # save() must not need the source folder any more
    tok.save(tmp_path / "saved")
    assert (tmp_path / "saved" / name).read_bytes() == original
    config = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "</s>"
    again = load_tokenizer(tmp_path / "saved", model_type)
    assert (again.bos_id, again.eos_id, again.pad_id) == (tok.bos_id, tok.eos_id, tok.pad_id)
    assert all(again.encode(s) == tok.encode(s) for s in STRESS)


def test_byte_level_save_and_reload(byte_level, tmp_path):
    from transformers import PreTrainedTokenizerFast

    folder, reference = byte_level
    source = tmp_path / "source"  # only tokenizer.json and config.json: specials come from config.json
    source.mkdir()
    shutil.copyfile(folder / "tokenizer.json", source / "tokenizer.json")
    eos = reference.token_to_id("<|end_of_text|>")
    (source / "config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": [eos, 2]}))
    tok = load_tokenizer(source, "llama")
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (0, eos, eos)

    tok.save(tmp_path / "saved")
    again = load_tokenizer(tmp_path / "saved", "llama")  # no config.json now: reads tokenizer_config.json
    assert (again.bos_id, again.eos_id, again.pad_id) == (0, eos, eos)
    assert all(again.encode(s) == tok.encode(s) for s in STRESS + SPECIAL_STRINGS)
    hf = PreTrainedTokenizerFast.from_pretrained(tmp_path / "saved")  # the config we wrote loads
    assert (hf.bos_token_id, hf.eos_token_id) == (0, eos)
