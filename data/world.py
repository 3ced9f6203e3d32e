"""A toy world with the paper's preconditions: word problems that several valid calculation paths
solve, a pretraining corpus of related but disjoint text, and out-of-distribution sets.

Why (../shared/LESSONS.md, RFT: Yuan et al. 2023): self-training helps when a correct sample of the
model's own is new information. In data/synthetic.py each question has one rationale, so a
verified pseudo-label repeats the gold's calculations. Here each task template knows every
sensible way to reach its answer -- the order of independent steps, grouping ((3+5)*4 for
3*4 + 5*4), subtracting one by one or the total at once, comparing totals or the differences --
and a labeled question's gold rationale is one of them, drawn at random.

  task     12 templates of 2 to 4 steps, 2 to 4 paths each: labeled, unlabeled, dev, test
  ood-changed      the task's stories with another question (SVAMP's "changed question")
  ood-distractors  the task's problems with two distractor sentences from a held-out list (SVAMP)
  ood-long         other templates with 5 or 6 steps (ASDiv / MultiArith: other problems, more steps)
  corpus   the pretraining "web" (pretraining_corpus): data/synthetic.py's 24 templates, worked
           arithmetic and copying. No task or OOD template appears in it.

Every path is checked by the tests: each calculation is right, uses numbers of the question or
earlier results, and the last one is the answer (selection.calculations_check_out).

    python -m data.world --out DIR --seed 0
"""

import argparse
import os
import random
from typing import NamedTuple

from data import synthetic
from data.jsonl import write_jsonl
from data.synthetic import DISTRACTORS, HELD_OUT_DISTRACTORS, calc, people

SPLITS = ("labeled", "unlabeled", "dev", "test", "ood-changed", "ood-distractors", "ood-long")
DEFAULT_SIZES = {"labeled": 800, "unlabeled": 0, "dev": 500, "test": 2000,
                 "ood-changed": 1000, "ood-distractors": 1000, "ood-long": 1000}
DISTRACTOR_PROB = 0.3
COLORS = ["red", "blue", "green", "yellow", "white", "black"]
PACKED = ["pens", "crayons", "stickers", "beads", "cards", "markers", "balloons"]
SNACKS = ["cookies", "muffins", "rolls", "donuts", "bagels"]
CROPS = [("tomato plants", "tomatoes"), ("pepper plants", "peppers"), ("bean plants", "beans"),
         ("apple trees", "apples"), ("lemon trees", "lemons")]
ITEMS = [("notebooks", "pencils"), ("kites", "balls"), ("comics", "posters"), ("sandwiches", "juices"),
         ("shirts", "hats"), ("plates", "cups")]


class Problem(NamedTuple):
    facts: list[str]          # the story's sentences
    ask: str                  # the question
    paths: list[list[str]]    # every valid rationale, as lines "48/2 = <<48/2=24>>24 ..."
    answer: int


def step(text, a, op, b):
    """A rationale line with one calculation in it, and its result: step("{} pens.", 3, "*", 4)."""
    shown, result = calc(a, op, b)
    return text.format(shown), result


def sum_in_either_order(first, second, text):
    """Two lines computing `first` and `second` (each (text, a, op, b)), then their sum, both orders."""
    (l1, r1), (l2, r2) = step(*first), step(*second)
    return [[l1, l2, step(text, r1, "+", r2)[0]], [l2, l1, step(text, r2, "+", r1)[0]]]


# --- task templates: rng, changed -> Problem --------------------------------------------

def packs_of_two_colors(rng, changed=False):
    (a,) = people(rng, 1)
    things, (c1, c2) = rng.choice(PACKED), rng.sample(COLORS, 2)
    x, y, n = rng.randint(2, 8), rng.randint(2, 8), rng.randint(3, 12)
    if changed:
        x, y = min(x, y), max(x, y) + 1
    facts = [f"{a.name} buys {x} packs of {c1} {things} and {y} packs of {c2} {things}.",
             f"Each pack has {n} {things}."]
    red, blue = (f"The {c1} {things} are {{}}.", x, "*", n), (f"The {c2} {things} are {{}}.", y, "*", n)
    if not changed:
        packs_line, packs = step(f"{a.name} buys {{}} packs.", x, "+", y)
        paths = sum_in_either_order(red, blue, f"In all {a.he} buys {{}} {things}.")
        paths.append([packs_line, step(f"That is {{}} {things}.", packs, "*", n)[0]])
        return Problem(facts, f"How many {things} does {a.name} buy?", paths, (x + y) * n)
    (l1, r1), (l2, r2) = step(*red), step(*blue)
    more = f"{a.He} buys {{}} more {c2} {things}."
    extra_line, extra = step(f"{a.He} buys {{}} more packs of {c2} {things}.", y, "-", x)
    paths = [[l2, l1, step(more, r2, "-", r1)[0]], [l1, l2, step(more, r2, "-", r1)[0]],
             [extra_line, step(f"That is {{}} more {c2} {things}.", extra, "*", n)[0]]]
    return Problem(facts, f"How many more {c2} {things} than {c1} {things} does {a.name} buy?", paths, (y - x) * n)


def shopping_change(rng, changed=False):
    (a,) = people(rng, 1)
    g1, g2 = rng.choice(ITEMS)
    x, p1, y, p2 = rng.randint(2, 6), rng.randint(2, 9), rng.randint(2, 6), rng.randint(2, 9)
    total = x * p1 + y * p2
    bill = (total // 10 + 1 + rng.randint(0, 3)) * 10
    facts = [f"{a.name} buys {x} {g1} for ${p1} each and {y} {g2} for ${p2} each.",
             f"{a.He} pays with a ${bill} bill." if not changed else f"{a.He} has ${bill} with {a.him}."]
    first, second = (f"The {g1} cost {{}} dollars.", x, "*", p1), (f"The {g2} cost {{}} dollars.", y, "*", p2)
    if changed:
        paths = sum_in_either_order(first, second, f"{a.He} spends {{}} dollars.")
        return Problem(facts, f"How much does {a.name} spend?", paths, total)
    paths = [path + [step(f"{a.He} gets {{}} dollars back.", bill, "-", total)[0]]
             for path in sum_in_either_order(first, second, "Together they cost {} dollars.")]
    for (l1, r1), (l2, r2) in [(step(*first), step(*second)), (step(*second), step(*first))]:
        left_line, left = step("After that {} dollars are left.", bill, "-", r1)
        paths.append([l1, left_line, l2, step(f"{a.He} gets {{}} dollars back.", left, "-", r2)[0]])
    return Problem(facts, f"How much change does {a.name} get?", paths, bill - total)


def work_weeks(rng, changed=False):
    (a,) = people(rng, 1)
    pay, days, weeks = rng.randint(5, 20), rng.randint(2, 6), rng.randint(2, 8)
    facts = [f"{a.name} earns ${pay} for each day of work.", f"{a.He} works {days} days a week for {weeks} weeks."]
    days_line, all_days = step(f"{a.He} works {{}} days in all.", days, "*", weeks)
    if changed:
        return Problem(facts, f"How many days does {a.name} work?", [[days_line]], days * weeks)
    week_line, per_week = step(f"{a.He} earns {{}} dollars a week.", pay, "*", days)
    paths = [[week_line, step(f"In all {a.he} earns {{}} dollars.", per_week, "*", weeks)[0]],
             [days_line, step(f"{a.He} earns {{}} dollars.", pay, "*", all_days)[0]]]
    return Problem(facts, f"How much does {a.name} earn?", paths, pay * days * weeks)


def gives_to_two_friends(rng, changed=False):
    a, b, c = people(rng, 3)
    things, x, y = rng.choice(synthetic.THINGS), rng.randint(3, 25), rng.randint(3, 25)
    start = x + y + rng.randint(2, 40)
    facts = [f"{a.name} has {start} {things}.", f"{a.He} gives {x} to {b.name} and {y} to {c.name}."]
    given_line, given = step(f"{a.He} gives away {{}} {things}.", x, "+", y)
    if changed:
        return Problem(facts, f"How many {things} does {a.name} give away?", [[given_line]], x + y)
    paths = [[given_line, step(f"{a.He} has {{}} {things} left.", start, "-", given)[0]]]
    for first, second in [(x, y), (y, x)]:
        after_line, after = step(f"After the first gift {a.he} has {{}} {things}.", start, "-", first)
        paths.append([after_line, step(f"Then {a.he} has {{}} {things} left.", after, "-", second)[0]])
    return Problem(facts, f"How many {things} does {a.name} have left?", paths, start - x - y)


def garden_rows(rng, changed=False):
    (a,) = people(rng, 1)
    plants, crop = rng.choice(CROPS)
    rows, per_row, each = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 9)
    facts = [f"{a.name} has {rows} rows of {plants} with {per_row} in each row.",
             f"Each of the {plants} gives {each} {crop}."]
    plants_line, n_plants = step(f"{a.He} has {{}} {plants}.", rows, "*", per_row)
    if changed:
        return Problem(facts, f"How many {plants} does {a.name} have?", [[plants_line]], rows * per_row)
    row_line, per_row_crop = step(f"Each row gives {{}} {crop}.", per_row, "*", each)
    paths = [[plants_line, step(f"They give {{}} {crop}.", n_plants, "*", each)[0]],
             [row_line, step(f"All the rows give {{}} {crop}.", per_row_crop, "*", rows)[0]]]
    return Problem(facts, f"How many {crop} does {a.name} get?", paths, rows * per_row * each)


def compare_collections(rng, changed=False):
    a, b = people(rng, 2)
    things, (c1, c2) = rng.choice(PACKED), rng.sample(COLORS, 2)
    y1, y2 = rng.randint(2, 30), rng.randint(2, 30)
    x1, x2 = y1 + rng.randint(1, 20), y2 + rng.randint(1, 20)
    facts = [f"{a.name} has {x1} {c1} {things} and {x2} {c2} {things}.",
             f"{b.name} has {y1} {c1} {things} and {y2} {c2} {things}."]
    if changed:
        line, total = step(f"Together they have {{}} {c1} {things}.", x1, "+", y1)
        return Problem(facts, f"How many {c1} {things} do they have together?", [[line]], total)
    more = f"{a.name} has {{}} more {things}."
    a_line, a_total = step(f"{a.name} has {{}} {things}.", x1, "+", x2)
    b_line, b_total = step(f"{b.name} has {{}} {things}.", y1, "+", y2)
    paths = [[a_line, b_line, step(more, a_total, "-", b_total)[0]], [b_line, a_line, step(more, a_total, "-", b_total)[0]]]
    d1 = step(f"{a.name} has {{}} more {c1} {things}.", x1, "-", y1)
    d2 = step(f"{a.name} has {{}} more {c2} {things}.", x2, "-", y2)
    paths += [[d1[0], d2[0], step(more, d1[1], "+", d2[1])[0]], [d2[0], d1[0], step(more, d2[1], "+", d1[1])[0]]]
    return Problem(facts, f"How many more {things} does {a.name} have than {b.name}?", paths, x1 + x2 - y1 - y2)


def dozens(rng, changed=False):
    (a,) = people(rng, 1)
    snack, count, price = rng.choice(SNACKS), rng.randint(2, 6), rng.randint(1, 4)
    facts = [f"{a.name} buys {count} dozen {snack}.", f"Each of the {snack} costs ${price}."]
    count_line, n = step(f"{a.He} buys {{}} {snack}.", count, "*", 12)
    if changed:
        return Problem(facts, f"How many {snack} does {a.name} buy?", [[count_line]], count * 12)
    dozen_line, per_dozen = step("A dozen costs {} dollars.", 12, "*", price)
    paths = [[count_line, step(f"{a.He} pays {{}} dollars.", n, "*", price)[0]],
             [dozen_line, step(f"{a.He} pays {{}} dollars.", per_dozen, "*", count)[0]]]
    return Problem(facts, f"How much does {a.name} pay?", paths, count * 12 * price)


def shares_boxes(rng, changed=False):
    (a,) = people(rng, 1)
    things, boxes, friends, each = rng.choice(synthetic.THINGS), rng.randint(2, 8), rng.randint(2, 6), rng.randint(2, 6)
    per_box = friends * each
    facts = [f"{a.name} has {boxes} boxes of {things} with {per_box} in each box.",
             f"{a.He} shares all of them equally among {friends} friends."]
    total_line, total = step(f"{a.He} has {{}} {things}.", boxes, "*", per_box)
    if changed:
        return Problem(facts, f"How many {things} does {a.name} have?", [[total_line]], boxes * per_box)
    box_line, from_box = step(f"Each friend gets {{}} {things} from a box.", per_box, "/", friends)
    paths = [[total_line, step(f"Each friend gets {{}} {things}.", total, "/", friends)[0]],
             [box_line, step(f"In all each friend gets {{}} {things}.", from_box, "*", boxes)[0]]]
    return Problem(facts, f"How many {things} does each friend get?", paths, boxes * each)


def museum_trip(rng, changed=False):
    adults, children, ticket, bus = rng.randint(2, 9), rng.randint(3, 20), rng.randint(2, 9), rng.randint(10, 60)
    facts = [f"{adults} adults and {children} children go to a museum.", f"Each ticket costs ${ticket}.",
             f"The bus costs ${bus}."]
    kids_line, kids = step("The tickets of the children cost {} dollars.", children, "*", ticket)
    if changed:
        return Problem(facts, "How much do the tickets of the children cost?", [[kids_line]], children * ticket)
    with_bus = "With the bus the trip costs {} dollars."
    people_line, n_people = step("{} people go.", adults, "+", children)
    tickets_line, tickets = step("The tickets cost {} dollars.", n_people, "*", ticket)
    paths = [[people_line, tickets_line, step(with_bus, tickets, "+", bus)[0]]]
    adult_ticket = ("The tickets of the adults cost {} dollars.", adults, "*", ticket)
    child_ticket = ("The tickets of the children cost {} dollars.", children, "*", ticket)
    paths += [path + [step(with_bus, tickets, "+", bus)[0]]
              for path in sum_in_either_order(adult_ticket, child_ticket, "The tickets cost {} dollars.")]
    return Problem(facts, "How much does the trip cost?", paths, tickets + bus)


def two_savers(rng, changed=False):
    a, b = people(rng, 2)
    x, y, weeks = rng.randint(3, 20), rng.randint(2, 19), rng.randint(2, 10)
    if changed:
        x, y = max(x, y) + 1, min(x, y)
    facts = [f"{a.name} saves ${x} a week and {b.name} saves ${y} a week.", f"They save for {weeks} weeks."]
    first, second = (f"{a.name} saves {{}} dollars.", x, "*", weeks), (f"{b.name} saves {{}} dollars.", y, "*", weeks)
    if changed:
        (l1, r1), (l2, r2) = step(*first), step(*second)
        more = f"{a.name} saves {{}} more dollars."
        gap_line, gap = step(f"Each week {a.name} saves {{}} dollars more.", x, "-", y)
        paths = [[l1, l2, step(more, r1, "-", r2)[0]], [l2, l1, step(more, r1, "-", r2)[0]],
                 [gap_line, step(f"In all {a.name} saves {{}} more dollars.", gap, "*", weeks)[0]]]
        return Problem(facts, f"How much more money does {a.name} save than {b.name}?", paths, (x - y) * weeks)
    paths = sum_in_either_order(first, second, "Together they save {} dollars.")
    week_line, both = step("Each week they save {} dollars.", x, "+", y)
    paths.append([week_line, step("In all they save {} dollars.", both, "*", weeks)[0]])
    return Problem(facts, "How much money do they save together?", paths, (x + y) * weeks)


def bake_sale(rng, changed=False):
    (a,) = people(rng, 1)
    snack, trays, per_tray, price = rng.choice(SNACKS), rng.randint(2, 8), rng.randint(4, 12), rng.randint(1, 5)
    facts = [f"{a.name} bakes {trays} trays of {snack} with {per_tray} on each tray.",
             f"{a.He} sells every one of them for ${price}."]
    baked_line, baked = step(f"{a.He} bakes {{}} {snack}.", trays, "*", per_tray)
    if changed:
        return Problem(facts, f"How many {snack} does {a.name} bake?", [[baked_line]], trays * per_tray)
    tray_line, per_tray_money = step("A tray sells for {} dollars.", per_tray, "*", price)
    paths = [[baked_line, step(f"{a.He} makes {{}} dollars.", baked, "*", price)[0]],
             [tray_line, step(f"{a.He} makes {{}} dollars.", per_tray_money, "*", trays)[0]]]
    return Problem(facts, f"How much money does {a.name} make?", paths, trays * per_tray * price)


def reading_days(rng, changed=False):
    (a,) = people(rng, 1)
    p, d1, q, d2 = rng.randint(5, 30), rng.randint(2, 6), rng.randint(5, 30), rng.randint(2, 4)
    if changed and p * d1 <= q * d2:
        p = q * d2 // d1 + rng.randint(1, 5)
    facts = [f"{a.name} reads {p} pages on each of {d1} school days.", f"{a.He} reads {q} pages on each of {d2} weekend days."]
    school, weekend = (f"On school days {a.he} reads {{}} pages.", p, "*", d1), (f"On weekend days {a.he} reads {{}} pages.", q, "*", d2)
    if changed:
        (l1, r1), (l2, r2) = step(*school), step(*weekend)
        more = f"{a.He} reads {{}} more pages on school days."
        paths = [[l1, l2, step(more, r1, "-", r2)[0]], [l2, l1, step(more, r1, "-", r2)[0]]]
        return Problem(facts, f"How many more pages does {a.name} read on school days than on weekend days?",
                       paths, p * d1 - q * d2)
    return Problem(facts, f"How many pages does {a.name} read?",
                   sum_in_either_order(school, weekend, f"In all {a.he} reads {{}} pages."), p * d1 + q * d2)


TASK_TEMPLATES = [packs_of_two_colors, shopping_change, work_weeks, gives_to_two_friends, garden_rows,
                  compare_collections, dozens, shares_boxes, museum_trip, two_savers, bake_sale, reading_days]


# --- drawing the splits ---------------------------------------------------------------------

def add_distractors(rng, facts, sentences, n):
    """First or last, never in between (a sentence in between could steal a pronoun's referent)."""
    for sentence in rng.sample(sentences, n):
        facts.insert(rng.choice([0, len(facts)]), sentence.format(n=rng.randint(2, 60)))


def draw(rng, split):
    """One (problem, template name) of a split."""
    if split == "ood-long":
        template = rng.choice(synthetic.OOD_TEMPLATES)
        facts, ask, lines, answer = template(rng)
        return Problem(facts, ask, [lines], answer), template.__name__
    template = rng.choice(TASK_TEMPLATES)
    problem = template(rng, changed=split == "ood-changed")
    if split == "ood-distractors":
        add_distractors(rng, problem.facts, HELD_OUT_DISTRACTORS, 2)
    elif rng.random() < DISTRACTOR_PROB:
        add_distractors(rng, problem.facts, DISTRACTORS, 1)
    return problem, template.__name__


def make_world(seed, sizes=None):
    """All splits as {split: [example, ...]}; examples have id, question, answer (the gold rationale:
    one of the problem's paths, at random; None for unlabeled), gold, template, and n_paths."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {', '.join(sorted(unknown))}; the splits are {', '.join(SPLITS)}")
    seen, splits = set(), {}
    # Evaluation splits first, each from its own stream: more training data never changes them.
    for split in ["test", "dev", "ood-changed", "ood-distractors", "ood-long", "labeled", "unlabeled"]:
        rng, rows = random.Random(f"dpo-st world {seed} {split}"), []
        for attempt in range(100 * sizes[split] + 1):
            if len(rows) == sizes[split]:
                break
            problem, template = draw(rng, split)
            question = " ".join(problem.facts + [problem.ask])
            if question in seen:
                continue
            seen.add(question)
            gold = "\n".join(rng.choice(problem.paths) + [f"#### {problem.answer}"])
            rows.append({"id": f"world-{split}-{len(rows)}", "question": question,
                         "answer": None if split == "unlabeled" else gold, "gold": float(problem.answer),
                         "template": template, "n_paths": len(problem.paths)})
        else:
            raise ValueError(f"could not draw {sizes[split]} distinct {split} questions; ask for fewer")
        splits[split] = rows
    return {split: splits[split] for split in SPLITS}


def pretraining_corpus(seed, n_problems, n_arithmetic, n_copies):
    """The "web" a pretrained base has read, as rows {question, answer} (answer: what follows the question):
    data/synthetic.py's problems (other templates and phrasings), worked arithmetic, and copying."""
    rng, rows = random.Random(f"dpo-st corpus {seed}"), []
    for _ in range(n_problems):
        template = rng.choice(synthetic.TEMPLATES)
        question, rationale, _, _ = synthetic.make_problem(rng, template)
        rows.append({"question": question, "answer": rationale})
    for _ in range(n_arithmetic):
        a, op, b = rng.randint(2, 99), rng.choice("+-*"), rng.randint(2, 30)
        if op == "-" and b > a:
            a, b = b, a
        shown, result = calc(a, op, b)
        rows.append({"question": f"What is {a} {'plus' if op == '+' else 'minus' if op == '-' else 'times'} {b}?",
                     "answer": f"{shown}\n#### {result}"})
    for _ in range(n_copies):
        template = rng.choice(synthetic.TEMPLATES)
        question = synthetic.make_problem(rng, template)[0]
        rows.append({"question": f"Write this again: {question}", "answer": question})
    rng.shuffle(rows)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for labeled.jsonl, dev.jsonl, ...")
    parser.add_argument("--seed", type=int, default=0)
    for split in SPLITS:
        parser.add_argument(f"--n-{split}", type=int, default=DEFAULT_SIZES[split], dest=split,
                            help=f"examples in {split}.jsonl (default: %(default)s)")
    args = parser.parse_args()
    for split, rows in make_world(args.seed, {split: getattr(args, split) for split in SPLITS}).items():
        write_jsonl(os.path.join(args.out, f"{split}.jsonl"), rows)
        print(f"wrote {len(rows)} examples to {os.path.join(args.out, split)}.jsonl")


if __name__ == "__main__":
    main()
