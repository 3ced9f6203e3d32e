"""Choosing DPO pairs and pseudo-labels from samples: every expected value below is worked out by hand.

Texts are short strings of one-letter words so that, with the default tokenize (str.split), each
Jaccard similarity can be checked by counting: |A & B| / |A | B| over the sets of words.
"""

import pytest

from data.formats import LLAMA, T5
from data.selection import build_pairs, build_pseudo_labels, calculations_check_out, dedup, jaccard, solution_cap


def question_row(qid, answer):
    """A dataset row; `answer` is the gold rationale or None."""
    return {"id": qid, "question": f"question {qid}?", "answer": answer, "gold": 5.0}


def sample(qid, completion, correct, k=0):
    """A sampler line."""
    return {"id": qid, "question": f"question {qid}?", "sample": k, "completion": completion,
            "prediction": 5.0 if correct else 4.0, "gold": 5.0, "correct": correct}


def pair(qid, chosen, rejected):
    return {"id": qid, "prompt": f"question {qid}?", "chosen": chosen, "rejected": rejected}


def label(qid, answer):
    """A pseudo-label: the same shape as a dataset row."""
    return question_row(qid, answer)


# --- jaccard ----------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, expected", [
    ("a b c", "b c d", 0.5),            # {b,c} / {a,b,c,d} = 2/4
    ("a b", "a b", 1.0),
    ("a a b", "b a", 1.0),              # sets: repeats and order do not count
    ("a b", "c d", 0.0),
    ("a b c d e f g h i j", "a b c d e f g", 0.7),  # 7 / 10
    ("", "", 1.0),                      # two empty sets are identical
    ("", "a", 0.0),
])
def test_jaccard(a, b, expected):
    assert jaccard(a.split(), b.split()) == expected


def test_jaccard_takes_token_ids():
    assert jaccard([1, 2, 3], [3, 4]) == 0.25  # {3} / {1,2,3,4}


# --- dedup ------------------------------------------------------------------------------

def test_dedup_drops_near_duplicate_keeps_distinct():
    texts = ["a b c d", "a b c d e", "w x y z", "a b c e", "w x y z"]
    # "a b c d e" vs "a b c d": 4/5 = 0.8 > 0.7, dropped.
    # "w x y z" shares nothing with "a b c d": kept.
    # "a b c e" vs "a b c d": 3/5 = 0.6, kept.  The second "w x y z" is an exact repeat: dropped.
    assert dedup(texts) == ["a b c d", "w x y z", "a b c e"]


def test_dedup_compares_with_every_kept_text_not_only_the_last():
    # "a b c d x" vs "w x y z": 1/8; vs "a b c d": 4/5 = 0.8 > 0.7, dropped.
    assert dedup(["a b c d", "w x y z", "a b c d x"]) == ["a b c d", "w x y z"]


def test_dedup_threshold_is_strictly_greater():
    # Similarity exactly 7/10 = 0.7: the paper drops only "> 0.7", so both stay.
    texts = ["a b c d e f g h i j", "a b c d e f g"]
    assert dedup(texts) == texts
    assert dedup(texts, threshold=0.69) == ["a b c d e f g h i j"]


def test_dedup_drops_exact_repeats_whatever_the_threshold():
    # At threshold 1.0 no similarity is "> 1.0", yet a text written twice is kept once.
    assert dedup(["a b", "b a", "a b"], threshold=1.0) == ["a b", "b a"]


def test_dedup_uses_the_given_tokenize():
    # As characters, "ab" and "ba" are the same set {a, b}: 1.0 > 0.7. As words they differ.
    assert dedup(["ab", "ba", "cd"], tokenize=list) == ["ab", "cd"]
    assert dedup(["ab", "ba", "cd"]) == ["ab", "ba", "cd"]


# --- build_pairs -------------------------------------------------------------------------

GOLD = "a b c d"
Q1_SAMPLES = [
    sample("q1", "a b c e", True, 0),     # P1: vs gold 3/5 = 0.6, kept
    sample("q1", "a b c d", True, 1),     # P2: the gold rationale again, dropped
    sample("q1", "a b x y", False, 2),    # N1
    sample("q1", "a b c d e", True, 3),   # P3: vs gold 4/5 = 0.8, dropped
    sample("q1", "a b x y z", False, 4),  # N2: vs N1 4/5 = 0.8, dropped
    sample("q1", "w x y z", True, 5),     # P4: 0 vs gold and vs P1, kept
    sample("q1", "a m n o", False, 6),    # N3: vs N1 1/7, kept
]
# Positives kept: [gold, P1, P4] (gold first). Negatives kept: [N1, N3]. The six pairs:
#   gold x N1: {a,b} / {a,b,c,d,x,y} = 1/3     gold x N3: {a} / {a,b,c,d,m,n,o} = 1/7
#   P1 x N1:   {a,b} / {a,b,c,e,x,y} = 1/3     P1 x N3:   {a} / {a,b,c,e,m,n,o} = 1/7
#   P4 x N1:   {x,y} / {w,x,y,z,a,b} = 1/3     P4 x N3:   {} = 0
# Least similar first, equal scores in positive order: P4xN3, goldxN3, P1xN3, goldxN1, P1xN1, P4xN1.
ALL_Q1_PAIRS = [
    pair("q1", "w x y z", "a m n o"),
    pair("q1", "a b c d", "a m n o"),
    pair("q1", "a b c e", "a m n o"),
    pair("q1", "a b c d", "a b x y"),
    pair("q1", "a b c e", "a b x y"),
    pair("q1", "w x y z", "a b x y"),
]


def test_pairs_keeps_the_three_least_similar_in_order():
    assert build_pairs(Q1_SAMPLES, [question_row("q1", GOLD)], LLAMA) == ALL_Q1_PAIRS[:3]


def test_pairs_dedups_positives_and_negatives_and_ranks_every_pair():
    # With room for all pairs: 3 positives x 2 negatives, so P2, P3 and N2 were dropped.
    pairs = build_pairs(Q1_SAMPLES, [question_row("q1", GOLD)], LLAMA, pairs_per_question=10)
    assert pairs == ALL_Q1_PAIRS
    assert build_pairs(Q1_SAMPLES, [question_row("q1", GOLD)], LLAMA, pairs_per_question=1) == ALL_Q1_PAIRS[:1]


def test_pairs_skip_a_question_without_negatives_even_with_gold():
    samples = [sample("q1", "a b", True), sample("q1", "c d", True),
               sample("q2", "e f", True), sample("q2", "g h", False)]
    labeled = [question_row("q1", "x y"), question_row("q2", "x y")]
    # q2: positives [gold "x y", "e f"], negative "g h": both pairs 0, in positive order.
    assert build_pairs(samples, labeled, LLAMA) == [pair("q2", "x y", "g h"), pair("q2", "e f", "g h")]


def test_gold_is_a_positive_when_no_sample_is_correct():
    samples = [sample("q1", "a b", False), sample("q1", "c d", False)]
    assert build_pairs(samples, [question_row("q1", "g h")], LLAMA) == [
        pair("q1", "g h", "a b"), pair("q1", "g h", "c d")]
    # No gold and no correct sample: nothing to choose.
    assert build_pairs(samples, [question_row("q1", None)], LLAMA) == []


def test_pairs_pool_samples_of_two_rounds():
    round_1 = [sample("q1", "a b c", True)]
    round_2 = [sample("q1", "x y z", False)]
    labeled = [question_row("q1", None)]  # no gold: the positive must come from round 1
    assert build_pairs(round_1, labeled, LLAMA) == []  # no negative
    assert build_pairs(round_2, labeled, LLAMA) == []  # no positive
    assert build_pairs(round_1 + round_2, labeled, LLAMA) == [pair("q1", "a b c", "x y z")]


def test_pairs_follow_the_order_of_labeled():
    samples = [sample("qA", "a", True), sample("qA", "b", False),
               sample("qB", "c", True), sample("qB", "d", False),
               sample("qX", "e", True), sample("qX", "f", False)]  # qX is not labeled: ignored
    labeled = [question_row("qB", None), question_row("qA", None)]
    assert build_pairs(samples, labeled, LLAMA) == [pair("qB", "c", "d"), pair("qA", "a", "b")]


def test_pairs_recompute_correctness_when_the_sample_has_no_verdict():
    samples = [{"id": "q1", "completion": "two plus three #### 5"},
               {"id": "q1", "completion": "two plus two #### 4"},
               {"id": "q1", "completion": "I do not know"}]
    # gold is 5. Positive "two plus three #### 5"; vs "two plus two #### 4": {two,plus,####} over
    # {two,plus,three,####,5,4} = 3/6 = 0.5; vs "I do not know": 0. Least similar first.
    assert build_pairs(samples, [question_row("q1", None)], LLAMA) == [
        pair("q1", "two plus three #### 5", "I do not know"),
        pair("q1", "two plus three #### 5", "two plus two #### 4")]


def test_pairs_use_the_given_tokenize():
    samples = [sample("q1", "ab", True), sample("q1", "ba", True), sample("q1", "cd", False)]
    # As characters "ba" repeats "ab" (1.0), so one pair; as words they differ, so two.
    assert build_pairs(samples, [question_row("q1", None)], LLAMA, tokenize=list) == [pair("q1", "ab", "cd")]
    assert build_pairs(samples, [question_row("q1", None)], LLAMA) == [pair("q1", "ab", "cd"), pair("q1", "ba", "cd")]


def test_pairs_write_the_gold_rationale_in_the_family_format():
    samples = [sample("q1", "x", False)]
    labeled = [question_row("q1", "He has <<5=5>>5 apples.\n#### 5")]
    assert build_pairs(samples, labeled, T5) == [pair("q1", "He has 5 apples. #### 5", "x")]
    assert build_pairs(samples, labeled, LLAMA) == [pair("q1", "He has <<5=5>>5 apples.\n#### 5", "x")]


def test_pairs_per_question_must_be_positive():
    with pytest.raises(ValueError, match="pairs_per_question"):
        build_pairs([], [], LLAMA, pairs_per_question=0)


# --- solution_cap --------------------------------------------------------------------------

@pytest.mark.parametrize("counts, percentile, expected", [
    # position (n-1) * p / 100 in the sorted counts, interpolated, rounded down:
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 10], 90, 1),   # 9*0.9 = 8.1: 1 + 0.1*(10-1) = 1.9 -> 1
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9),   # 8.1: 9 + 0.1*(10-9) = 9.1 -> 9
    ([2, 12], 90, 11),                          # 1*0.9 = 0.9: 2 + 0.9*(12-2) = 11
    ([3, 1, 2], 90, 2),                         # sorted 1,2,3; 2*0.9 = 1.8: 2 + 0.8*1 = 2.8 -> 2
    ([1, 2, 3, 4], 50, 2),                      # 3*0.5 = 1.5: 2 + 0.5*1 = 2.5 -> 2
    ([5, 1, 7], 100, 7),                        # the largest
    ([5, 1, 7], 0, 1),                          # the smallest
    ([4], 90, 4),
])
def test_solution_cap(counts, percentile, expected):
    assert solution_cap(counts, percentile) == expected


@pytest.mark.parametrize("counts, percentile", [([], 90), ([0, 3], 90), ([1, 2], 101), ([1, 2], 90.5)])
def test_solution_cap_rejects_bad_input(counts, percentile):
    with pytest.raises(ValueError):
        solution_cap(counts, percentile)


# --- build_pseudo_labels ----------------------------------------------------------------

def test_pseudo_labels_keep_correct_add_gold_and_dedup():
    samples = [sample("q1", "a b c d e", True),   # vs gold "a b c d": 4/5 = 0.8, dropped
               sample("q1", "w x y z", True),     # kept
               sample("q1", "p q r s", False),    # wrong: dropped
               sample("q1", "w x y z", True),     # exact repeat: dropped
               sample("q2", "m n", True),
               sample("q2", "o p", False),
               sample("q3", "k l", False)]        # q3: no gold, nothing correct: no row
    questions = [question_row("q1", GOLD), question_row("q2", None), question_row("q3", None)]
    # cap_percentile=100: the cap is the largest count (2), so nothing is cut here.
    assert build_pseudo_labels(samples, questions, LLAMA, cap_percentile=100) == [
        label("q1", "a b c d"), label("q1", "w x y z"), label("q2", "m n")]


def test_pseudo_labels_cap_at_the_90th_percentile():
    # q0..q8: one correct sample each; q9: gold + 9 distinct correct samples = 10 solutions.
    questions = [question_row(f"q{i}", None) for i in range(9)] + [question_row("q9", "gold nine")]
    samples = [sample(f"q{i}", f"only{i}", True) for i in range(9)]
    samples += [sample("q9", f"t{k}", True, k) for k in range(9)]
    # Counts 1,1,1,1,1,1,1,1,1,10: position 9*0.9 = 8.1, 1 + 0.1*(10-1) = 1.9, rounded down: cap 1.
    # q9 keeps its first solution, the gold rationale.
    rows = build_pseudo_labels(samples, questions, LLAMA)
    assert [(r["id"], r["answer"]) for r in rows] == [
        ("q0", "only0"), ("q1", "only1"), ("q2", "only2"), ("q3", "only3"), ("q4", "only4"),
        ("q5", "only5"), ("q6", "only6"), ("q7", "only7"), ("q8", "only8"), ("q9", "gold nine")]
    # With the cap at the largest count, q9 keeps all 10: 9 + 10 rows.
    assert len(build_pseudo_labels(samples, questions, LLAMA, cap_percentile=100)) == 19


def test_pseudo_labels_pool_with_previous_round_which_keeps_priority():
    previous = [label("q1", "a b c d"),       # the gold rationale, already in the earlier round
                label("q1", "w x y z q"),
                label("q2", "m n o")]          # q2 has no new samples: still kept
    samples = [sample("q1", "w x y z", True),  # vs earlier "w x y z q": 4/5 = 0.8, dropped
               sample("q1", "k l m n", True)]  # new and distinct: kept
    questions = [question_row("q1", GOLD), question_row("q2", None)]
    assert build_pseudo_labels(samples, questions, LLAMA, previous=previous, cap_percentile=100) == [
        label("q1", "a b c d"), label("q1", "w x y z q"), label("q1", "k l m n"), label("q2", "m n o")]
    # Without the previous round, the new sample "w x y z" is the one kept and q2 has nothing.
    assert build_pseudo_labels(samples, questions, LLAMA, cap_percentile=100) == [
        label("q1", "a b c d"), label("q1", "w x y z"), label("q1", "k l m n")]


def test_pseudo_labels_gold_in_family_format_and_recomputed_correctness():
    samples = [{"id": "q1", "completion": "so #### 5"}, {"id": "q1", "completion": "so #### 4"}]
    questions = [question_row("q1", "He has <<5=5>>5 apples.\n#### 5")]
    # gold 5: "so #### 5" is correct, "so #### 4" is not.
    assert build_pseudo_labels(samples, questions, T5, cap_percentile=100) == [
        label("q1", "He has 5 apples. #### 5"), label("q1", "so #### 5")]


def test_pseudo_labels_empty_when_nothing_is_correct():
    assert build_pseudo_labels([sample("q1", "a", False)], [question_row("q1", None)], LLAMA) == []


# --- calculations_check_out (not in the paper; for the synthetic default) ---------------

CRAYONS = "Max has 8 crayons. He shares them equally among 4 friends. How many crayons does each friend get?"


@pytest.mark.parametrize("rationale, expected", [
    ("Each friend gets 8/4 = <<8/4=2>>2 crayons.\n#### 2", True),
    ("Each friend gets 88/4 = <<88/4=22>>22 crayons.\n#### 2", False),   # 88 is not in the question
    ("Each friend gets 8/4 = <<8/4=2>>22 crayons.\n#### 2", False),      # writes 22 after the result 2
    ("Each friend gets 8/4 = <<8/4=2>>2 crayons.\n#### 4", False),       # the answer is not the last result
    ("Each friend gets 2 crayons.\n#### 2", False),                      # no calculation at all
    ("They have 8*4 = <<8*4=32>>32.\nEach gets 32/4 = <<32/4=8>>8.\n#### 8", True),  # 32: an earlier result
])
def test_calculations_check_out(rationale, expected):
    assert calculations_check_out(CRAYONS, rationale, LLAMA) is expected


def test_calculations_check_out_knows_twice_and_the_t5_format():
    question = "Leo has 22 pens. Ava has twice as many pens as Leo. How many pens does Ava have?"
    assert calculations_check_out(question, "Ava has 22*2 = <<22*2=44>>44 pens.\n#### 44", LLAMA)
    assert calculations_check_out(question, "Ava has 22 * 2 = [ 22 * 2 = 44] 44 pens. #### 44", T5)
    assert not calculations_check_out(question, "Ava has 22 * 3 = [ 22 * 3 = 66] 66 pens. #### 66", T5)


def crayons_sample(completion, k):
    return {"id": "c", "question": CRAYONS, "sample": k, "completion": completion, "gold": 2.0, "correct": True}


SOUND = "Each friend gets 8/4 = <<8/4=2>>2 crayons.\n#### 2"
LUCKY = "Each friend gets 88/4 = <<88/4=22>>22 crayons.\n#### 2"  # right answer, wrong reasoning


def test_verified_pseudo_labels_drop_a_lucky_right_answer():
    row = {"id": "c", "question": CRAYONS, "answer": None, "gold": 2.0}
    samples = [crayons_sample(LUCKY, 0), crayons_sample(SOUND, 1)]
    assert [r["answer"] for r in build_pseudo_labels(samples, [row], LLAMA)] == [LUCKY, SOUND]
    assert [r["answer"] for r in build_pseudo_labels(samples, [row], LLAMA, verify_calculations=True)] == [SOUND]


def test_verified_pairs_reject_a_lucky_right_answer():
    row = {"id": "c", "question": CRAYONS, "answer": None, "gold": 2.0}
    samples = [crayons_sample(LUCKY, 0), crayons_sample(SOUND, 1)]
    assert build_pairs(samples, [row], LLAMA) == []  # both right: no negative, no pair (the paper's rule)
    assert build_pairs(samples, [row], LLAMA, verify_calculations=True) == [
        {"id": "c", "prompt": CRAYONS, "chosen": SOUND, "rejected": LUCKY}]


def test_a_gold_that_is_also_a_negative_never_pairs_with_itself():
    """With verify_calculations, a sample equal to the gold can fail the check and be a negative; the
    gold is a positive: (gold, the same text) is no preference, so it is never a pair."""
    from data import LLAMA, build_pairs
    gold = "3+4=<<3+4=7>>7 pens.\n#### 7"
    row = {"id": "q", "question": "Ann has 3 pens and 9 cups. How many pens?", "answer": gold, "gold": 7.0}
    same_as_gold = {"id": "q", "question": row["question"], "completion": LLAMA.format_answer(gold), "correct": False}
    other = {"id": "q", "question": row["question"], "completion": "9+4=<<9+4=13>>13\n#### 13", "correct": False}
    pairs = build_pairs([same_as_gold, other], [row], LLAMA)
    assert pairs and all(p["chosen"].strip() != p["rejected"].strip() for p in pairs)
    assert {p["rejected"] for p in pairs} == {other["completion"]}
