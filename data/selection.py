"""Turn the model's own samples into training data, as the paper's utils/make_dpo_data.py and
utils/make_rft_data.py (TianduoWang/DPO-ST) do it.

    pairs = build_pairs(samples, labeled, fmt)           # DPO step (paper section 3.2)
    rows = build_pseudo_labels(samples, questions, fmt)  # SFT step on pseudo-labels

`fmt` is the model's Format (data/formats.py): it writes gold rationales the way the model's own
samples are written, and reads their calculator calls.

A sample is one line the sampler writes: {"id", "question", "sample", "completion", "prediction",
"gold", "correct"}. A question row is a dataset row: {"id", "question", "answer", "gold"}, where
"answer" is the gold rationale (None when the question has none).

Similarity is Jaccard on token SETS: |A & B| / |A | B|. It ignores order and counts, so it is cheap
and measures "do these two rationales use the same words and numbers". The paper uses it twice,
both times to keep the data diverse:
  - dedup: two rationales more than 0.7 similar are one solution written twice; keep one;
  - DPO pairs: the least similar (positive, negative) pairs are kept, so each pair differs in
    more than a token or two.

Choices where the paper's code leaves something open (all deterministic; the paper shuffles):
  - a text is dropped only when its similarity to a kept text is > threshold (strictly greater, the
    paper's `compare_similarity(...) > sim_threshold`); exactly 0.7 is kept. Exact repeats are always
    dropped (the paper does list(set(...))).
  - dedup keeps the first text of a group, so order is priority: gold rationale first (as in the
    paper), then earlier rounds, then later samples in file order.
  - pairs with equal similarity keep their order: positive order first, then negative order.
  - the cap on pseudo-labels per question is numpy.percentile's default (linear interpolation)
    rounded down, as the paper's int(np.percentile(counts, 90)); see solution_cap.

Plain Python standard library only.
"""

import re

from data.formats import Format, extract_answer, is_correct

SIMILARITY_THRESHOLD = 0.7  # paper: sim_threshold = 0.7 in both scripts
PAIRS_PER_QUESTION = 3      # paper: p_ls[:3], the 3 least similar pairs per question
CAP_PERCENTILE = 90         # paper: int(np.percentile(sol_pre_question, 90))


# --- similarity and de-duplication -------------------------------------------------

def jaccard(a_tokens, b_tokens):
    """Jaccard similarity of two token SETS: |A & B| / |A | B|; two empty sets are identical (1.0)."""
    a, b = set(a_tokens), set(b_tokens)
    union = a | b
    if not union:
        return 1.0
    return len(a & b) / len(union)


def dedup(texts, tokenize=str.split, threshold=SIMILARITY_THRESHOLD):
    """Keep texts in order, dropping any more than `threshold` similar to a text already kept.

    Paper rule: a text is dropped when jaccard(text, kept) > threshold for some kept text
    (strictly greater: exactly 0.7 stays). Exact repeats are dropped too.
    `tokenize` turns a text into tokens, e.g. a tokenizer's encode; default: split on whitespace.
    """
    kept, kept_tokens = [], []
    for text in texts:
        if text in kept:
            continue
        tokens = set(tokenize(text))
        if any(jaccard(tokens, other) > threshold for other in kept_tokens):
            continue
        kept.append(text)
        kept_tokens.append(tokens)
    return kept


# --- DPO step: preference pairs ------------------------------------------------------

def build_pairs(samples, labeled, fmt: Format, tokenize=str.split, pairs_per_question=PAIRS_PER_QUESTION,
                threshold=SIMILARITY_THRESHOLD, verify_calculations=False):
    """Preference pairs {"id", "prompt", "chosen", "rejected"} from sampled rationales (make_dpo_data).

    Per question of `labeled`, in its order (samples of several rounds are simply pooled):
      1. a sample with the right final answer is a positive, any other a negative;
      2. no negative: no pair can be made, the question is skipped;
      3. the gold rationale, when there is one, is a positive too, put first;
      4. positives and negatives are de-duplicated separately (Jaccard > threshold);
      5. every positive x negative pair is ranked by Jaccard similarity, least similar first,
         and the first `pairs_per_question` are kept.
    verify_calculations: a positive must also pass calculations_check_out (not in the paper).
    Samples of questions not in `labeled` are ignored.
    """
    if pairs_per_question < 1:
        raise ValueError(f"pairs_per_question must be at least 1, got {pairs_per_question}")
    samples_by_question = group_by_question(samples)
    pairs = []
    for row in labeled:
        own_samples = samples_by_question.get(row["id"], [])
        verdicts = [_is_positive(s, row["gold"], fmt, verify_calculations) for s in own_samples]
        positives = [s["completion"] for s, good in zip(own_samples, verdicts) if good]
        negatives = [s["completion"] for s, good in zip(own_samples, verdicts) if not good]
        if not negatives:
            continue  # paper: `if len(item['negatives']) == 0: continue`
        if row.get("answer") is not None:
            positives = [fmt.format_answer(row["answer"])] + positives  # paper: [gold_rationale] + positives
        positives = dedup(positives, tokenize, threshold)
        negatives = dedup(negatives, tokenize, threshold)

        tokens = {text: tokenize(text) for text in positives + negatives}
        candidates = [(jaccard(tokens[chosen], tokens[rejected]), chosen, rejected)
                      for chosen in positives for rejected in negatives
                      if chosen.strip() != rejected.strip()]  # a gold failing verify_calculations can be both
        candidates.sort(key=lambda candidate: candidate[0])  # stable: equal scores keep their order
        for _, chosen, rejected in candidates[:pairs_per_question]:
            pairs.append({"id": row["id"], "prompt": row["question"], "chosen": chosen, "rejected": rejected})
    return pairs


# --- SFT step: pseudo-labels ---------------------------------------------------------

def solution_cap(counts, percentile=CAP_PERCENTILE):
    """The most solutions any question keeps: int(numpy.percentile(counts, percentile)).

    numpy's default percentile ("linear"): sort the counts, go to position (n - 1) * percentile / 100,
    and interpolate between the two counts around it; then round down, as the paper's int(...).
    E.g. counts 1,1,1,1,1,1,1,1,1,10: position 9 * 0.9 = 8.1, between sorted[8] = 1 and
    sorted[9] = 10, so 1 + 0.1 * (10 - 1) = 1.9, rounded down: 1.
    Done in integers, so it is exact: numpy's floats can land just below a whole number
    (16.999999999999996) and int() then gives one less, in about 1 case in 1000. Every count
    is >= 1, so the cap is too.
    """
    if not isinstance(percentile, int) or not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be a whole number from 0 to 100, got {percentile!r}")
    if not counts or min(counts) < 1:
        raise ValueError(f"counts must be a non-empty list of numbers >= 1, got {counts!r}")
    ordered = sorted(counts)
    below, hundredths = divmod((len(ordered) - 1) * percentile, 100)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * hundredths // 100


def build_pseudo_labels(samples, questions, fmt: Format, tokenize=str.split, threshold=SIMILARITY_THRESHOLD,
                        cap_percentile=CAP_PERCENTILE, previous=None, verify_calculations=False):
    """Pseudo-labelled rationales {"id", "question", "answer", "gold"} for SFT (make_rft_data).

    Per question of `questions`, in its order:
      1. its solutions, in priority order: the gold rationale (when there is one), then the answers
         of `previous` (an earlier round's output, so solutions pool across rounds), then the
         samples with the right final answer; wrong samples are dropped;
      2. de-duplicated (Jaccard > threshold), keeping the earlier of two near-repeats;
      3. capped: every question keeps at most solution_cap(counts, cap_percentile) solutions, the
         counts being those of step 2 over questions with at least one solution. The cap stops a
         few easy questions from filling the training set.
    verify_calculations: a kept sample must also pass calculations_check_out (not in the paper).
    Rows have the dataset shape; "answer" is written as fmt.format_answer writes it.
    Samples and previous rows of questions not in `questions` are ignored.
    """
    samples_by_question = group_by_question(samples)
    previous_by_question = group_by_question(previous or [])
    solutions = {}
    for row in questions:
        candidates = [fmt.format_answer(row["answer"])] if row.get("answer") is not None else []
        candidates += [earlier["answer"] for earlier in previous_by_question.get(row["id"], [])]
        candidates += [s["completion"] for s in samples_by_question.get(row["id"], [])
                       if _is_positive(s, row["gold"], fmt, verify_calculations)]
        kept = dedup(candidates, tokenize, threshold)
        if kept:
            solutions[row["id"]] = kept
    if not solutions:
        return []

    cap = solution_cap([len(kept) for kept in solutions.values()], cap_percentile)
    rows = []
    for row in questions:
        for answer in solutions.get(row["id"], [])[:cap]:
            rows.append({"id": row["id"], "question": row["question"], "answer": answer, "gold": row["gold"]})
    return rows


# --- a stricter verdict than the final answer (not in the paper) ------------------------

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NUMBER_WORDS = {"twice": "2", "double": "2", "half": "2", "triple": "3", "dozen": "12"}  # "half as many" is x/2


def calculation_path(rationale, fmt: Format) -> tuple[str, ...]:
    """The calculations a rationale makes, in order, spaces dropped: ("3*4", "5*4", "12+20"). Two
    rationales with the same path solve the problem the same way, however they word it."""
    return tuple(re.sub(r"\s+", "", expression) for expression, _, _ in fmt.finished_call.findall(rationale))


def calculations_check_out(question, rationale, fmt: Format):
    """Whether a rationale reaches its answer by calculations one can follow, not by luck.

    With small numbers, a wrong rationale often lands on the right final answer ("88/4 = 22 ...
    #### 2" for 8 crayons among 4 friends). This asks three things the paper's filter does not:
      - every number in every calculation is in the question (or is "twice", "half", ...) or is an
        earlier calculation's result;
      - the number written after each calculation is its result;
      - there is at least one calculation and the final answer is the last one's result.
    Meant for problems whose rationales use no outside constants (the synthetic ones). GSM8K's
    use some (60 minutes, 12 months), so its presets leave this off."""
    known = set(_NUMBER.findall(question)) | {n for word, n in _NUMBER_WORDS.items() if word in question.lower()}
    last = None
    # Each call and the number written after it. llama: "<<48/2=24>>24"   t5: "[ 48 / 2 = 24] 24"
    for expression, result, written in fmt.finished_call.findall(rationale):
        result = result.strip()
        uses_unknown_number = not set(_NUMBER.findall(expression)) <= known
        if not _NUMBER.fullmatch(result) or uses_unknown_number or written.rstrip(".,") != result:
            return False
        known.add(result)
        last = result
    final = extract_answer(rationale)
    return last is not None and final is not None and is_correct(final, float(last))


# --- helpers ---------------------------------------------------------------------------

def group_by_question(rows):
    """{question id: [rows of that question, in their order]}."""
    by_question = {}
    for row in rows:
        by_question.setdefault(row["id"], []).append(row)
    return by_question


def _is_positive(sample, gold, fmt: Format, verify_calculations=False):
    """Paper: a sample is positive when its final answer is right; the sampler's verdict when it wrote one."""
    right = sample["correct"] if "correct" in sample else is_correct(extract_answer(sample["completion"]), gold)
    if verify_calculations:
        return bool(right) and calculations_check_out(sample["question"], sample["completion"], fmt)
    return bool(right)
