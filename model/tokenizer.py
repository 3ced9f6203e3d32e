"""Text <-> token ids for the model families we fine-tune, behind one small interface.

Checkpoints ship their tokenizer in one of three formats:
  spiece.model     T5 / FLAN-T5: a sentencepiece Unigram model, plus 100 "<extra_id_N>" sentinels
  tokenizer.model  Llama-1/2, Mistral: a sentencepiece BPE model with byte fallback
  tokenizer.json   Llama-3, SmolLM2: a byte-level BPE, which we implement by hand below
Sentencepiece does the work for the first two. For the third we apply the merges ourselves rather
than depend on the `tokenizers` library; the tests check that we produce exactly its ids.

encode() never adds special tokens (no BOS/EOS): callers add them where they mean to.
decode() drops bos/eos/pad (and other special tokens) from the text.
"""

import functools
import json
import re
import unicodedata
from pathlib import Path

import sentencepiece as spm

from .config import MODEL_TYPES

TOKENIZER_FILES = ("spiece.model", "tokenizer.model", "tokenizer.json")  # looked for in this order
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")  # kept and saved alongside


def load_tokenizer(folder, model_type):
    """Load the tokenizer stored in `folder`; the files present decide the format."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}, expected one of {MODEL_TYPES}")
    folder = Path(folder)
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            files = _read_files(folder, name)
            if name != "tokenizer.json":  # only T5 has the 100 <extra_id_N> sentinels
                extra_ids = 100 if name == "spiece.model" else 0
                return SentencePieceTokenizer(folder / name, files, extra_ids)
            try:
                return ByteLevelBPETokenizer(folder / name, files)
            except (KeyError, TypeError, AttributeError) as e:  # a field missing or of the wrong kind
                raise ValueError(f"{folder / name}: malformed tokenizer file ({e!r})") from e
    raise FileNotFoundError(f"no tokenizer in {folder}: looked for {', '.join(TOKENIZER_FILES)}")


def _read_files(folder, tokenizer_name):
    """name -> bytes of the tokenizer file and the configs beside it. Kept so save() can write
    them back even if the source folder is gone by then."""
    names = [tokenizer_name] + [name for name in CONFIG_FILES if (folder / name).is_file()]
    return {name: (folder / name).read_bytes() for name in names}


def _parse_json(data, path):
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"could not read {path}: {e}") from e


def _save_files(files, folder, minimal_config):
    """Write the tokenizer's files into folder, plus a tokenizer_config.json if it had none,
    so that transformers can load the folder too."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    if "tokenizer_config.json" not in files:
        config = {key: value for key, value in minimal_config.items() if value is not None}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


class SentencePieceTokenizer:
    """T5 (Unigram, extra_ids=100) and Llama/Mistral (BPE with byte fallback, extra_ids=0)."""

    SENTINEL = re.compile(r"<extra_id_([1-9]?[0-9])>")  # <extra_id_0>..<extra_id_99>, as T5 spells them

    def __init__(self, path, files, extra_ids):
        self.files, self.extra_ids = files, extra_ids
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=files[path.name])
        except RuntimeError as e:
            raise ValueError(f"could not read sentencepiece model {path}: {e}") from e
        self.sp_size = self.sp.get_piece_size()
        self.vocab_size = self.sp_size + extra_ids
        self.bos_id = self.sp.bos_id() if self.sp.bos_id() >= 0 else None  # T5 has no bos
        self.eos_id = self.sp.eos_id()
        # Llama has no pad token; with attention masks the pad value never matters, so reuse unk.
        self.pad_id = self.sp.pad_id() if self.sp.pad_id() >= 0 else self.sp.unk_id()

    def encode(self, text):
        if not self.extra_ids:
            return self.sp.encode(text)
        # T5 sentinels are not sentencepiece pieces: cut them out and encode the text between them.
        ids, start = [], 0
        for match in self.SENTINEL.finditer(text):
            ids += self.sp.encode(text[start:match.start()])
            ids.append(self.vocab_size - 1 - int(match.group(1)))  # <extra_id_0> is the top id
            start = match.end()
        return ids + self.sp.encode(text[start:])

    def decode(self, ids):
        ids = [int(i) for i in ids if int(i) != self.pad_id]  # Llama's pad is unk, else shown as " ⁇ "
        if not self.extra_ids:
            return self.sp.decode(ids)  # drops the control tokens (bos/eos/pad) itself
        # T5: decode the runs between sentinels. Sentencepiece strips the word-start space "▁" of a
        # run's first piece, which we keep when text comes before it (as transformers does).
        text, run = "", []
        for i in ids + [None]:  # None flushes the last run
            if i is not None and i < self.sp_size:
                run.append(i)
                continue
            if run:
                space = " " if text and self.sp.id_to_piece(run[0]).startswith("\u2581") else ""
                text, run = text + space + self.sp.decode(run), []
            if i is not None:
                if i >= self.vocab_size:
                    raise ValueError(f"token id {i} is outside the vocabulary of {self.vocab_size}")
                text += f"<extra_id_{self.vocab_size - 1 - i}>"
        return text

    def save(self, folder):
        piece = lambda i: None if i is None else self.sp.id_to_piece(i)
        config = {"bos_token": piece(self.bos_id), "eos_token": piece(self.eos_id),
                  "unk_token": piece(self.sp.unk_id()), "pad_token": piece(self.pad_id)}
        if self.extra_ids:
            config |= {"tokenizer_class": "T5Tokenizer", "extra_ids": self.extra_ids}
        else:  # legacy=False: transformers then splits words the way sentencepiece does
            config |= {"tokenizer_class": "LlamaTokenizer", "legacy": False}
        _save_files(self.files, folder, config)


# ---------------------------------------------------------------------------------------------
# Byte-level BPE (GPT-2 style): text -> utf-8 bytes -> one printable character per byte -> merges.

# GPT-2's pre-tokenization pattern, used by a ByteLevel pre-tokenizer with use_regex=true
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Unicode White_Space, which is what \s means in the regexes of `tokenizers` (Oniguruma).
# Python's \s also matches \x1c-\x1f, so we spell it out.
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _bytes_to_unicode():
    """GPT-2's table: each byte maps to a printable character, so tokens never hold raw bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]  # space, control bytes, ...
    return {b: chr(b) for b in printable} | {b: chr(256 + n) for n, b in enumerate(others)}


BYTE_TO_CHAR = _bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


@functools.cache
def _unicode_classes():
    """Regex class bodies (as ranges) for \\p{L} and \\p{N}, which Python's `re` lacks. Built once."""
    ranges = {"L": [], "N": []}
    start, current = 0, None  # the range being scanned and its major category
    for cp in range(0x110001):  # one past the end closes the last range
        major = unicodedata.category(chr(cp))[0] if cp < 0x110000 else None
        if major != current:
            if current in ranges:
                ranges[current].append(f"\\U{start:08x}-\\U{cp - 1:08x}")
            start, current = cp, major
    return {name: "".join(parts) for name, parts in ranges.items()}


ESCAPE = re.compile(r"\\p\{\w+\}|\\.")  # \p{..}, or a backslash and one character
CLASS_OR_ESCAPE = re.compile(r"\[\^?\]?(?:\\.|[^\]\\])*\]|" + ESCAPE.pattern)  # [...] or an escape


def _translate_regex(pattern, path):
    """Rewrite \\p{L}, \\p{N}, \\s and \\S into explicit classes, so Python's `re` matches exactly."""
    bodies = {r"\p{L}": _unicode_classes()["L"], r"\p{N}": _unicode_classes()["N"], r"\s": WHITE_SPACE}

    def translate(match):
        text = match.group()
        if text.startswith("["):  # inside a class, splice the bodies in: [^\s\p{L}] -> [^...]
            return ESCAPE.sub(lambda escape: bodies.get(escape.group(), escape.group()), text)
        if text == r"\S":
            return f"[^{WHITE_SPACE}]"
        return f"[{bodies[text]}]" if text in bodies else text

    try:  # what we leave alone and Python lacks (\p{Lu}, \P{L}) fails here
        return re.compile(CLASS_OR_ESCAPE.sub(translate, pattern))
    except re.error as e:
        raise ValueError(f"{path}: unsupported regex {pattern!r}: {e}") from e


def _split_isolated(text, regex):
    """Cut text so each regex match and each gap between matches is its own (non-empty) piece."""
    pieces, last = [], 0
    for match in regex.finditer(text):
        pieces += [text[last:match.start()], match.group()]
        last = match.end()
    return [p for p in pieces + [text[last:]] if p]


def _byte_level_step(add_prefix_space, use_regex):
    regex = _translate_regex(GPT2_PATTERN, "GPT2_PATTERN") if use_regex else None

    def step(piece):
        if add_prefix_space and not piece.startswith(" "):
            piece = " " + piece
        pieces = _split_isolated(piece, regex) if regex else [piece]
        return ["".join(BYTE_TO_CHAR[b] for b in p.encode("utf-8")) for p in pieces]
    return step


def _pre_tokenizer_steps(spec, path):
    """Turn tokenizer.json's "pre_tokenizer" into a list of functions, each piece -> pieces."""
    kind = spec.get("type") if spec else None
    if kind == "Sequence":
        return [step for inner in spec["pretokenizers"] for step in _pre_tokenizer_steps(inner, path)]
    if kind == "ByteLevel":
        return [_byte_level_step(spec.get("add_prefix_space", False), spec.get("use_regex", True))]
    if kind == "Digits":
        digits = _unicode_classes()["N"]  # Rust's char::is_numeric: any N* category
        regex = re.compile(f"[{digits}]" if spec.get("individual_digits") else f"[{digits}]+")
        return [lambda piece: _split_isolated(piece, regex)]
    if kind == "Split" and spec.get("behavior") == "Isolated" and not spec.get("invert"):
        pattern = spec["pattern"]
        if "Regex" in pattern:
            regex = _translate_regex(pattern["Regex"], path)
        else:
            regex = re.compile(re.escape(pattern["String"]))
        return [lambda piece: _split_isolated(piece, regex)]
    raise ValueError(f"{path}: unsupported pre_tokenizer {json.dumps(spec)[:200]}")


class ByteLevelBPETokenizer:
    """The byte-level BPE of a Hugging Face tokenizer.json (Llama-3, SmolLM2, GPT-2 style)."""

    def __init__(self, path, files):
        self.files = files
        spec = _parse_json(files["tokenizer.json"], path)
        model = spec.get("model") or {}
        for what, unsupported in [
            ("model", model.get("type") != "BPE"),
            ("normalizer", spec.get("normalizer") is not None),
            ("decoder", (spec.get("decoder") or {}).get("type") != "ByteLevel"),
            ("BPE option", any(model.get(key) for key in ("dropout", "continuing_subword_prefix",
                                                          "end_of_word_suffix", "byte_fallback"))),
            ("pre_tokenizer without ByteLevel", '"ByteLevel"' not in json.dumps(spec.get("pre_tokenizer"))),
            ("added token option", any(token.get(key) for token in spec.get("added_tokens", [])
                                       for key in ("single_word", "lstrip", "rstrip"))),
        ]:
            if unsupported:
                raise ValueError(f"{path}: unsupported {what} (we handle byte-level BPE only)")
        self.steps = _pre_tokenizer_steps(spec["pre_tokenizer"], path)

        self.vocab = dict(model["vocab"])
        merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]  # "a b" or [a, b]
        self.merge_ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
        self.ignore_merges = model.get("ignore_merges", False)
        self.unk_id = self.vocab.get(model.get("unk_token"))
        self.cache = {}  # pre-token -> ids

        # Added and special tokens are cut out of the text before anything else, longest first.
        self.added = {token["content"]: token["id"] for token in spec.get("added_tokens", [])}
        longest_first = sorted(self.added, key=len, reverse=True)
        self.added_regex = re.compile("|".join(map(re.escape, longest_first))) if self.added else None
        self.id_to_token = {i: t for t, i in self.vocab.items()} | {i: t for t, i in self.added.items()}
        self.vocab_size = max(self.id_to_token) + 1

        self.special_tokens = self._special_tokens(path.parent)
        token_to_id = self.vocab | self.added
        self.bos_id, self.eos_id, self.pad_id = (token_to_id.get(self.special_tokens[f"{kind}_token"])
                                                 for kind in ("bos", "eos", "pad"))
        self.skip_ids = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}  # decode drops
        self.skip_ids |= {self.bos_id, self.eos_id, self.pad_id}

    def _special_tokens(self, folder):
        """bos/eos/pad token texts from tokenizer_config.json, else config.json's ids, else None."""
        config_path = folder / "tokenizer_config.json"
        config = _parse_json(self.files.get(config_path.name, "{}"), config_path)
        model_config = {}
        if (folder / "config.json").is_file():
            model_config = _parse_json((folder / "config.json").read_bytes(), folder / "config.json")
        tokens = {}
        for kind in ("bos", "eos", "pad"):
            token = config.get(f"{kind}_token")  # a string, or a dict with "content"
            token = token.get("content") if isinstance(token, dict) else token
            token_id = model_config.get(f"{kind}_token_id")
            if isinstance(token_id, list):  # e.g. Llama-3-Instruct's several eos ids: take the first
                token_id = token_id[0] if token_id else None
            if token is None and token_id is not None:
                token = self.id_to_token.get(token_id)
            if token is not None and token not in self.vocab and token not in self.added:
                raise ValueError(f"{config_path}: {kind}_token {token!r} is not in tokenizer.json")
            tokens[f"{kind}_token"] = token
        tokens["pad_token"] = tokens["pad_token"] or tokens["eos_token"]
        return tokens

    def _bpe(self, word):
        """Ids for one pre-token (already in byte characters): apply merges, lowest rank first."""
        if self.ignore_merges and word in self.vocab:  # Llama-3: a whole known word skips the merges
            return [self.vocab[word]]
        if word not in self.cache:
            symbols = list(word)
            while len(symbols) > 1:  # merge the lowest-ranked pair (the leftmost on ties), repeat
                ranks = [self.merge_ranks.get(pair, float("inf")) for pair in zip(symbols, symbols[1:])]
                best = ranks.index(min(ranks))
                if ranks[best] == float("inf"):
                    break
                symbols[best:best + 2] = [symbols[best] + symbols[best + 1]]
            ids = [self.vocab.get(s, self.unk_id) for s in symbols]
            self.cache[word] = [i for i in ids if i is not None]  # with no unk token, unknowns vanish
        return self.cache[word]

    def encode(self, text):
        chunks = _split_isolated(text, self.added_regex) if self.added_regex else [text]
        ids = []
        for chunk in chunks:
            if chunk in self.added:
                ids.append(self.added[chunk])
                continue
            pieces = [chunk]
            for step in self.steps:
                pieces = [out for piece in pieces for out in step(piece)]
            for piece in pieces:
                ids += self._bpe(piece)
        return ids

    def decode(self, ids):
        data = bytearray()
        for i in map(int, ids):  # int() also accepts numpy or torch scalars
            if i in self.skip_ids:
                continue
            token = self.id_to_token[i]
            if all(c in CHAR_TO_BYTE for c in token):
                data += bytes(CHAR_TO_BYTE[c] for c in token)
            else:  # as `tokenizers` does: a token outside the byte alphabet is written as plain text
                data += token.encode("utf-8")
        return data.decode("utf-8", errors="replace")

    def save(self, folder):
        _save_files(self.files, folder, {"tokenizer_class": "PreTrainedTokenizerFast", **self.special_tokens})


def train_sentencepiece(texts, vocab_size, folder, model_type):
    """Train a small sentencepiece BPE on `texts` (for a model trained from scratch) and load it.

    Digits are split into single tokens, so numbers are copied digit by digit, and byte fallback
    makes every string encodable. For model_type "t5", T5's layout (spiece.model: pad 0, eos 1, unk 2)
    normalizes newlines and spaces, as T5's own vocabulary does; for the decoder-only models, Llama's
    layout (tokenizer.model: unk 0, bos 1, eos 2, pad 3) keeps them as they are.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if model_type == "t5":
        name, layout = "spiece", dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1, normalization_rule_name="nmt_nfkc")
    else:
        name, layout = "tokenizer", dict(unk_id=0, bos_id=1, eos_id=2, pad_id=3, normalization_rule_name="identity",
                                         remove_extra_whitespaces=False, user_defined_symbols=["\n"])
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=str(folder / name),
                                   vocab_size=vocab_size, model_type="bpe", split_digits=True, byte_fallback=True,
                                   character_coverage=1.0, minloglevel=2, **layout)
    (folder / f"{name}.vocab").unlink()
    return load_tokenizer(folder, model_type)
