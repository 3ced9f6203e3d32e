"""data/world.py: every path it calls valid is one, its splits are disjoint, and the corpus holds no task text."""
import random

from data import LLAMA, T5, synthetic
from data.selection import calculation_path, calculations_check_out
from data.world import SPLITS, TASK_TEMPLATES, draw, make_world, pretraining_corpus


def test_every_path_of_every_split_checks_out_and_reaches_the_answer():
    for split in SPLITS:
        rng = random.Random(f"test {split}")
        for _ in range(300):
            problem, _ = draw(rng, split)
            question = " ".join(problem.facts + [problem.ask])
            for path in problem.paths:
                rationale = "\n".join(path + [f"#### {problem.answer}"])
                assert calculations_check_out(question, rationale, LLAMA), (split, rationale)
                assert calculations_check_out(question, T5.format_answer(rationale), T5), (split, rationale)


def test_task_problems_have_several_distinct_paths():
    rng, counts = random.Random("paths"), []
    for template in TASK_TEMPLATES:
        problem = template(rng)
        paths = {calculation_path("\n".join(p), LLAMA) for p in problem.paths}
        assert len(paths) == len(problem.paths) >= 2, template.__name__  # no path is another written twice
        counts.append(len(paths))
    assert sum(counts) / len(counts) >= 2.5


def test_splits_share_no_question_and_gold_is_one_of_the_paths():
    sizes = {"labeled": 300, "unlabeled": 50, "dev": 100, "test": 200, "ood-changed": 100,
             "ood-distractors": 100, "ood-long": 100}
    world = make_world(0, sizes)
    assert {split: len(rows) for split, rows in world.items()} == sizes
    questions = [row["question"] for rows in world.values() for row in rows]
    assert len(set(questions)) == len(questions)
    assert all(row["answer"] is None for row in world["unlabeled"])
    golds = {calculation_path(row["answer"], LLAMA) for row in world["labeled"]}
    assert len(golds) > 200  # a random path each, not one canonical rationale
    # The same seed gives the same world; another seed, another one.
    assert make_world(0, sizes) == world and make_world(1, sizes)["test"] != world["test"]


def test_the_pretraining_corpus_holds_no_task_or_ood_text():
    world = make_world(0, {"labeled": 200, "dev": 100, "test": 200, "ood-changed": 100,
                           "ood-distractors": 100, "ood-long": 100})
    corpus = pretraining_corpus(0, 2000, 200, 200)
    corpus_text = {row["question"] for row in corpus} | {row["question"].removeprefix("Write this again: ")
                                                          for row in corpus}
    assert not corpus_text & {row["question"] for rows in world.values() for row in rows}
    # Its problems come from data/synthetic.py's TEMPLATES, none of which a task or OOD split draws from.
    used = {row["template"] for rows in world.values() for row in rows}
    assert not used & {template.__name__ for template in synthetic.TEMPLATES}
    assert used >= {template.__name__ for template in TASK_TEMPLATES}
