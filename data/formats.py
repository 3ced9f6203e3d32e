"""How questions and rationales are written for each model family, as the paper's code does it.

Two families, following the paper (data_module.py in TianduoWang/DPO-ST):

  llama  decoder-only. Prompt = the Alpaca template around the question;
         answer = the raw GSM8K rationale, calculator steps written <<48/2=24>>.
  t5     encoder-decoder. Prompt = the question itself; answer = the rationale
         rewritten for T5's vocabulary, which has no "<" and no newline:
         <<48/2=24>> becomes [ 48 / 2 = 24] and the lines are joined by spaces.

Both end with "#### N", the final answer the evaluation reads.
"""

import re

FAMILIES = ("llama", "t5")

ALPACA_PROMPT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{question}\n\n### Response:\n"
)

# A calculator call is OPEN expression EQUALS result CLOSE.
# llama: "<<48/2=24>>"   t5: "[ 48 / 2 = 24]"
CALC_OPEN = {"llama": "<<", "t5": "["}
CALC_EQUALS = {"llama": "=", "t5": "="}
CALC_CLOSE = {"llama": ">>", "t5": "]"}

# An unfinished call at the very end of the text: the model has just written "=".
_OPEN_CALCULATION = {
    "llama": re.compile(r"<<([^<>=]+)=$"),
    "t5": re.compile(r"\[([^\[\]=]+)=$"),
}

# The paper's evaluation (eval_greedy.py): the last "#### N" in the completion.
ANSWER_PATTERN = re.compile(r"#+ (\-?[0-9\.\,]+)")


def _check_family(family):
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")


def format_prompt(question, family):
    """The model's input for a question."""
    _check_family(family)
    if family == "llama":
        return ALPACA_PROMPT.format(question=question)
    return question  # t5: the encoder reads the bare question


def format_answer(rationale, family):
    """The training target for a GSM8K-style rationale."""
    _check_family(family)
    if family == "llama":
        return rationale
    return to_t5_rationale(rationale)


def to_t5_rationale(rationale):
    """Rewrite a GSM8K rationale the way the paper's GSM8K.process_answer does.

    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\\n...\\n#### 72" becomes
    "Natalia sold 48 / 2 = [ 48 / 2 = 24] 24 clips in May. ... #### 72"
    """
    text = re.sub(r"<<\d+=\d+>>", "", rationale)  # a trivial step like <<5=5>> computes nothing
    text = re.sub(r"(\D):(\d)", r"\1: \2", text)  # "Total:5" -> "Total: 5"
    text = text.replace("<<", "[ ").replace(">>", "] ")
    text = re.sub(r"\$(?=\S)", "$ ", text)  # "$5" -> "$ 5"
    # Space out operators so each one is its own token. (The paper's regexes
    # consume the characters around each operator, so in "2+3+4" the second
    # "+" stays unspaced; lookarounds space every one.)
    for operator in "+-*/=":
        text = re.sub(rf"(?<=\S){re.escape(operator)}(?=\S)", f" {operator} ", text)
    # Every line but the final "#### N" ends with a period, then lines are joined. (Testing for
    # "####" anywhere in the line keeps the rewrite idempotent: T5-form text passes through unchanged.)
    lines = [line if "####" in line or line.endswith(".") else line + "."
             for line in text.split("\n")]
    return " ".join(lines)


def calculator_markers(family):
    """(open, equals, close) strings around a calculator call for this family."""
    _check_family(family)
    return CALC_OPEN[family], CALC_EQUALS[family], CALC_CLOSE[family]


def find_open_calculation(text, family):
    """The expression of an unfinished calculator call that `text` ends with, else None.

    llama: "... is 48/2 = <<48/2="  -> "48/2"
    t5:    "... is 48 / 2 = [ 48 / 2 ="  -> "48 / 2"
    """
    _check_family(family)
    match = _OPEN_CALCULATION[family].search(text)
    if match is None or not match.group(1).strip():
        return None
    return match.group(1).strip()


def close_calculation(result, family):
    """What the sampler appends after the "=" of an open call: the result and the closing marker."""
    _check_family(family)
    if family == "llama":
        return f"{result}>>"  # <<48/2=24>>
    return f" {result}]"  # [ 48 / 2 = 24]


def encode_example(tok, family, question, answer_text=None):
    """(prompt ids, answer ids) as the model reads and writes them; `tok` is any tokenizer with
    encode() and bos/eos ids. Llama: <bos> prompt | answer <eos>.  T5: question <eos> | answer <eos>.
    Prompt and answer are encoded separately, so sampling sees the same prompt tokens as training."""
    _check_family(family)
    prompt = _wrap_prompt(tok, family, tok.encode(format_prompt(question, family)))
    answer = None if answer_text is None else tok.encode(answer_text) + [tok.eos_id]
    return prompt, answer


def _wrap_prompt(tok, family, ids):
    """What the model reads: T5's encoder input ends with <eos>; a decoder prompt starts with <bos>."""
    if family == "t5":
        return ids + [tok.eos_id]
    return ([tok.bos_id] if tok.bos_id is not None else []) + ids


def encode_copy_example(tok, family, question):
    """(prompt ids, target ids) for the base model's copy pretraining: read a question, write it again.
    Llama: <bos> question "\n" | question <eos>.  T5: question <eos> | question <eos>."""
    _check_family(family)
    question_ids = tok.encode(question)
    separator = tok.encode("\n") if family == "llama" else []  # T5's decoder starts afresh
    return _wrap_prompt(tok, family, question_ids) + separator, question_ids + [tok.eos_id]


def extract_answer(text):
    """The final answer of a completion: the number after the last "####", or None."""
    matches = ANSWER_PATTERN.findall(text)
    if not matches:
        return None
    try:
        return float(matches[-1].replace(",", ""))
    except ValueError:  # e.g. "#### ..." or "#### 1.2.3"
        return None


def is_correct(prediction, gold):
    """The paper's rule: correct when |prediction - gold| < 1e-4; no answer is wrong."""
    return prediction is not None and abs(prediction - gold) < 1e-4
