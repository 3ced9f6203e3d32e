"""How questions and rationales are written for each model family, as the paper's code does it.

Two families, following the paper (data_module.py in TianduoWang/DPO-ST):

  LLAMA  decoder-only. Prompt = the Alpaca template around the question;
         answer = the raw GSM8K rationale, calculator steps written <<48/2=24>>.
  T5     encoder-decoder. Prompt = the question itself; answer = the rationale
         rewritten for T5's vocabulary, which has no "<" and no newline:
         <<48/2=24>> becomes [ 48 / 2 = 24] and the lines are joined by spaces.

Both end with "#### N", the final answer the evaluation reads. Everything that differs between the
two is one Format object. A model's format is chosen once, from its checkpoint's config
(format_for(config.model_type)), and handed to everything that reads or writes text for it.
"""

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, NamedTuple

ALPACA_PROMPT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{question}\n\n### Response:\n"
)

# The paper's evaluation (eval_greedy.py): the last "#### N" in the completion.
ANSWER_PATTERN = re.compile(r"#+ (\-?[0-9\.\,]+)")


class Example(NamedTuple):
    """A training example as token ids: what the model reads and what it learns to write."""
    prompt: list[int]
    answer: list[int]

    @property
    def n_tokens(self) -> int:
        return len(self.prompt) + len(self.answer)


@dataclass(frozen=True)
class Format:
    """What one model family reads and writes. A calculator call is open + expression + equals +
    result_prefix + result + close: llama "<<48/2=24>>", t5 "[ 48 / 2 = 24]"."""
    name: str
    prompt_template: str                  # the model's input; the question goes in {question}
    rewrite_answer: Callable[[str], str]  # a GSM8K rationale -> this family's training target
    calc_open: str
    calc_equals: str
    calc_close: str
    result_prefix: str                    # what the sampler writes between "=" and the result
    prompt_ends_with_eos: bool            # T5's encoder input ends with <eos>; a decoder prompt starts with <bos>
    copy_separator: str                   # between a question and its copy (copy pretraining)

    def format_prompt(self, question: str) -> str:
        """The model's input for a question."""
        return self.prompt_template.format(question=question)

    def format_answer(self, rationale: str) -> str:
        """The training target for a GSM8K-style rationale."""
        return self.rewrite_answer(rationale)

    @cached_property
    def open_call(self) -> re.Pattern:
        """An unfinished call at the very end of a text; group 1 is its expression."""
        markers, equals = self._marker_characters(), re.escape(self.calc_equals)
        return re.compile(rf"{re.escape(self.calc_open)}([^{markers}{equals}]+){equals}$")

    @cached_property
    def finished_call(self) -> re.Pattern:
        """A finished call and the number written after it; groups: expression, result, written."""
        markers, equals = self._marker_characters(), re.escape(self.calc_equals)
        return re.compile(rf"{re.escape(self.calc_open)}([^{markers}{equals}]*){equals}([^{markers}]*)"
                          rf"{re.escape(self.calc_close)}\s*([0-9.,-]*)")

    def _marker_characters(self) -> str:
        """The characters of both markers, escaped for a [...] class: "<>" for llama, "\\[\\]" for t5."""
        return re.escape("".join(dict.fromkeys(self.calc_open + self.calc_close)))

    def find_open_calculation(self, text: str) -> str | None:
        """The expression of an unfinished calculator call that `text` ends with, else None.

        llama: "... is 48/2 = <<48/2="  -> "48/2"
        t5:    "... is 48 / 2 = [ 48 / 2 ="  -> "48 / 2"
        """
        match = self.open_call.search(text)
        if match is None or not match.group(1).strip():
            return None
        return match.group(1).strip()

    def close_calculation(self, result: str) -> str:
        """What the sampler appends after the "=" of an open call: the result and the closing marker."""
        return f"{self.result_prefix}{result}{self.calc_close}"

    def encode_prompt(self, tok, question: str) -> list[int]:
        """Prompt ids as the model reads them. Llama: <bos> prompt.  T5: question <eos>.
        `tok` is any tokenizer with encode() and bos/eos ids."""
        return self._wrap_prompt(tok, tok.encode(self.format_prompt(question)))

    def encode_example(self, tok, question: str, answer_text: str) -> Example:
        """(prompt ids, answer ids): the answer ends with <eos>. Prompt and answer are encoded
        separately, so sampling sees the same prompt tokens as training."""
        return Example(self.encode_prompt(tok, question), tok.encode(answer_text) + [tok.eos_id])

    def encode_copy_example(self, tok, question: str) -> Example:
        """(prompt ids, target ids) for the base model's copy pretraining: read a question, write it again.
        Llama: <bos> question "\\n" | question <eos>.  T5: question <eos> | question <eos>."""
        question_ids = tok.encode(question)
        separator = tok.encode(self.copy_separator) if self.copy_separator else []
        return Example(self._wrap_prompt(tok, question_ids) + separator, question_ids + [tok.eos_id])

    def _wrap_prompt(self, tok, ids: list[int]) -> list[int]:
        if self.prompt_ends_with_eos:
            return ids + [tok.eos_id]
        return ([tok.bos_id] if tok.bos_id is not None else []) + ids


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


LLAMA = Format(
    name="llama", prompt_template=ALPACA_PROMPT, rewrite_answer=lambda rationale: rationale,
    calc_open="<<", calc_equals="=", calc_close=">>", result_prefix="", prompt_ends_with_eos=False, copy_separator="\n")
T5 = Format(
    name="t5", prompt_template="{question}", rewrite_answer=to_t5_rationale,  # the encoder reads the bare question
    calc_open="[", calc_equals="=", calc_close="]", result_prefix=" ", prompt_ends_with_eos=True, copy_separator="")  # T5's decoder starts afresh
FORMATS = {"llama": LLAMA, "mistral": LLAMA, "t5": T5}  # by the checkpoint config's model_type


def format_for(model_type: str) -> Format:
    """The format of a model whose config.json says this model_type: the one place the family is decided."""
    if model_type not in FORMATS:
        raise ValueError(f"unknown model_type {model_type!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[model_type]


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
