"""Text only: datasets, prompt/answer formats, answer extraction, the calculator, synthetic problems,
and choosing DPO pairs and pseudo-labels from samples.

Plain Python standard library; nothing here knows about tensors or models.
"""

from data.calculator import calculate
from data.datasets import DATASET_NAMES, load_dataset, split_train_dev
from data.formats import (
    ALPACA_PROMPT,
    CALC_CLOSE,
    CALC_OPEN,
    FAMILIES,
    calculator_markers,
    close_calculation,
    extract_answer,
    find_open_calculation,
    format_answer,
    format_prompt,
    is_correct,
)
from data.jsonl import iter_jsonl, read_jsonl, write_jsonl
from data.selection import build_pairs, build_pseudo_labels, dedup, jaccard, solution_cap
from data.synthetic import make_synthetic

__all__ = [
    "calculate",
    "DATASET_NAMES", "load_dataset", "split_train_dev",
    "ALPACA_PROMPT", "CALC_CLOSE", "CALC_OPEN", "FAMILIES", "calculator_markers", "close_calculation",
    "extract_answer", "find_open_calculation", "format_answer", "format_prompt", "is_correct",
    "iter_jsonl", "read_jsonl", "write_jsonl",
    "build_pairs", "build_pseudo_labels", "dedup", "jaccard", "solution_cap",
    "make_synthetic",
]
