"""Text only: datasets, prompt/answer formats, answer extraction, the calculator, synthetic problems,
and choosing DPO pairs and pseudo-labels from samples.

Plain Python standard library; nothing here knows about tensors or models.
"""

from data.calculator import calculate
from data.datasets import DATASET_NAMES, load_dataset, split_train_dev
from data.formats import FORMATS, LLAMA, T5, Example, Format, extract_answer, format_for, is_correct
from data.jsonl import iter_jsonl, read_jsonl, write_atomically, write_jsonl
from data.selection import build_pairs, build_pseudo_labels, dedup, jaccard, solution_cap

__all__ = [
    "calculate",
    "DATASET_NAMES", "load_dataset", "split_train_dev",
    "FORMATS", "LLAMA", "T5", "Example", "Format", "extract_answer", "format_for", "is_correct",
    "iter_jsonl", "read_jsonl", "write_atomically", "write_jsonl",
    "build_pairs", "build_pseudo_labels", "dedup", "jaccard", "solution_cap",
]
# data.synthetic is imported where it is used: importing it here would make `python -m data.synthetic`
# warn that the module ran after it was imported.
