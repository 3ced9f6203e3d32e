"""Synthetic GSM8K-style word problems, so a tiny model can be trained from scratch on a CPU.

Real GSM8K needs a pretrained model. These problems keep GSM8K's format (a
short story, a rationale with one calculation per line written
"6*4 = <<6*4=24>>24", a last line "#### 24") but use small numbers and a
small vocabulary, so a ~2M-parameter model can learn them in minutes.

Each template below is a function that draws a cast, items and numbers and
returns the question's sentences, the rationale's lines and the answer.
Every intermediate result is a whole number (divisions are built from a
product). Difficulty comes from:
  - the number of steps: 24 templates with 1 to 4 steps; every extra step is one more chance to slip;
  - DISTRACTOR_PROB: a sentence with a number that the answer does not use;
  - two out-of-distribution splits, as the paper tests on SVAMP, ASDiv and MultiArith:
      "ood-long": 4 held-out templates with 5 or 6 steps that no other split ever uses (hard for a tiny model);
      "ood-distractors": the 1- and 2-step templates with two distractor sentences from a held-out
      list, SVAMP's kind of variation (Patel et al. 2021): familiar problems, unfamiliar clutter.

The split names (SPLITS) are the names of the loop's data files and of the report's columns.

    python -m data.synthetic --out data/synthetic --seed 0
"""

import argparse
import os
import random
from typing import NamedTuple

from data.jsonl import write_jsonl

SPLITS = ("labeled", "unlabeled", "dev", "test", "ood-long", "ood-distractors")
# The default run's sizes (configs/tiny-llama.json); loop.py's data.sizes start from these.
DEFAULT_SIZES = {"labeled": 800, "unlabeled": 1600, "dev": 300, "test": 500, "ood-long": 200, "ood-distractors": 200}
DISTRACTOR_PROB = 0.3


class Person(NamedTuple):
    name: str
    he: str  # "she" / "he"
    him: str  # "her" / "him"

    @property
    def He(self):
        return self.he.capitalize()


PEOPLE = (
    [Person(name, "she", "her") for name in
     ["Mia", "Ava", "Zoe", "Lily", "Emma", "Nora", "Ruby", "Sara", "Ella", "Maya", "Anna", "Lucy"]]
    + [Person(name, "he", "him") for name in
       ["Leo", "Sam", "Ben", "Max", "Jack", "Omar", "Noah", "Liam", "Eli", "Finn", "Ravi", "Tom"]]
)
THINGS = ["apples", "marbles", "stickers", "pencils", "shells", "cards", "stamps", "crayons",
          "balloons", "books", "toy cars", "beads"]
GOODS = ["notebooks", "pens", "comics", "sandwiches", "toys", "cupcakes", "kites", "puzzles"]
BAKED = ["cookies", "muffins", "cupcakes", "brownies", "rolls"]
PLANTS = ["tomato plants", "roses", "sunflowers", "carrots", "trees", "tulips"]
FRUITS = ["apples", "pears", "oranges", "peaches", "lemons", "plums"]

DISTRACTORS = [
    "The shop is {n} miles from home.",
    "It is {n} degrees outside.",
    "The bus ride takes {n} minutes.",
    "The park has {n} benches.",
    "The street has {n} houses.",
    "The library is open for {n} hours on Sunday.",
]
HELD_OUT_DISTRACTORS = [  # only in "ood-distractors"
    "The school has {n} windows.",
    "The train leaves at {n} past noon.",
    "There are {n} ducks on the pond.",
    "The tree in the yard is {n} feet tall.",
]


def people(rng, k):
    return rng.sample(PEOPLE, k)


def calc(a, op, b):
    """One GSM8K calculation and its result: calc(6, "*", 4) -> ("6*4 = <<6*4=24>>24", 24)."""
    if op == "+":
        result = a + b
    elif op == "-":
        result = a - b
    elif op == "*":
        result = a * b
    else:  # "/": templates build the dividend as a product, so this is exact
        if b == 0 or a % b != 0:
            raise ValueError(f"template bug: {a}/{b} is not a whole number")
        result = a // b
    if result < 0:
        raise ValueError(f"template bug: {a}{op}{b} is negative")
    return f"{a}{op}{b} = <<{a}{op}{b}={result}>>{result}", result


# --- templates: rng -> (facts, ask, rationale lines, answer) -----------------------
# 1 step

def gets_more(rng):
    a, b = people(rng, 2)
    things, x, y = rng.choice(THINGS), rng.randint(2, 60), rng.randint(2, 40)
    shown, total = calc(x, "+", y)
    facts = [f"{a.name} has {x} {things}.", f"{b.name} gives {a.him} {y} more."]
    return facts, f"How many {things} does {a.name} have now?", [f"{a.name} has {shown} {things} now."], total


def gives_away(rng):
    a, b = people(rng, 2)
    things, x = rng.choice(THINGS), rng.randint(10, 80)
    y = rng.randint(2, x - 2)
    shown, left = calc(x, "-", y)
    facts = [f"{a.name} has {x} {things}.", f"{a.He} gives {y} of them to {b.name}."]
    return facts, f"How many {things} does {a.name} have left?", [f"{a.name} has {shown} {things} left."], left


def buys_at_price(rng):
    (a,) = people(rng, 1)
    goods, count, price = rng.choice(GOODS), rng.randint(2, 12), rng.randint(2, 15)
    shown, cost = calc(count, "*", price)
    facts = [f"{a.name} buys {count} {goods}.", f"Each one costs ${price}."]
    return facts, f"How much money does {a.name} spend?", [f"{a.name} spends {shown} dollars."], cost


def shares_equally(rng):
    (a,) = people(rng, 1)
    things, friends, each = rng.choice(THINGS), rng.randint(2, 9), rng.randint(2, 12)
    total = friends * each
    shown, share = calc(total, "/", friends)
    facts = [f"{a.name} has {total} {things}.", f"{a.He} shares them equally among {friends} friends."]
    return facts, f"How many {things} does each friend get?", [f"Each friend gets {shown} {things}."], share


def rows_of_plants(rng):
    (a,) = people(rng, 1)
    plants, rows, per_row = rng.choice(PLANTS), rng.randint(2, 12), rng.randint(2, 12)
    shown, total = calc(rows, "*", per_row)
    facts = [f"{a.name} plants {rows} rows of {plants}.", f"Each row has {per_row} {plants}."]
    return facts, f"How many {plants} does {a.name} plant?", [f"{a.name} plants {shown} {plants}."], total


def younger_than(rng):
    a, b = people(rng, 2)
    age, gap = rng.randint(20, 70), rng.randint(2, 15)
    shown, age_b = calc(age, "-", gap)
    facts = [f"{a.name} is {age} years old.", f"{b.name} is {gap} years younger than {a.name}."]
    return facts, f"How old is {b.name}?", [f"{b.name} is {shown} years old."], age_b


# 2 steps

def change_left(rng):
    (a,) = people(rng, 1)
    goods, count, price = rng.choice(GOODS), rng.randint(2, 8), rng.randint(2, 10)
    money = count * price + rng.randint(1, 40)
    shown_cost, cost = calc(count, "*", price)
    shown_left, left = calc(money, "-", cost)
    facts = [f"{a.name} has ${money}.", f"{a.He} buys {count} {goods} for ${price} each."]
    lines = [f"The {goods} cost {shown_cost} dollars.", f"{a.name} has {shown_left} dollars left."]
    return facts, f"How much money does {a.name} have left?", lines, left


def buys_then_gives(rng):
    a, b = people(rng, 2)
    things, x, y = rng.choice(THINGS), rng.randint(5, 50), rng.randint(2, 30)
    z = rng.randint(2, x + y - 1)
    shown_after_buying, after_buying = calc(x, "+", y)
    shown_left, left = calc(after_buying, "-", z)
    facts = [f"{a.name} has {x} {things}.", f"{a.He} buys {y} more.", f"Then {a.he} gives {z} to {b.name}."]
    lines = [f"After buying, {a.name} has {shown_after_buying} {things}.",
             f"After giving some away, {a.he} has {shown_left} {things}."]
    return facts, f"How many {things} does {a.name} have now?", lines, left


def times_as_many_together(rng):
    a, b = people(rng, 2)
    things, x, k = rng.choice(THINGS), rng.randint(2, 20), rng.randint(2, 5)
    shown_b, count_b = calc(x, "*", k)
    shown_total, total = calc(x, "+", count_b)
    facts = [f"{a.name} has {x} {things}.", f"{b.name} has {k} times as many {things} as {a.name}."]
    lines = [f"{b.name} has {shown_b} {things}.", f"Together they have {shown_total} {things}."]
    return facts, f"How many {things} do they have together?", lines, total


def weekly_savings(rng):
    (a,) = people(rng, 1)
    start, weekly, weeks = rng.randint(2, 50), rng.randint(2, 15), rng.randint(2, 10)
    shown_saved, saved = calc(weekly, "*", weeks)
    shown_total, total = calc(start, "+", saved)
    facts = [f"{a.name} has ${start} in a piggy bank.", f"{a.He} saves ${weekly} every week for {weeks} weeks."]
    lines = [f"{a.name} saves {shown_saved} dollars.", f"{a.He} will have {shown_total} dollars."]
    return facts, f"How much money will {a.name} have?", lines, total


def boxes_then_uses(rng):
    (a,) = people(rng, 1)
    things, boxes, per_box = rng.choice(THINGS), rng.randint(2, 9), rng.randint(3, 12)
    used = rng.randint(2, boxes * per_box - 1)
    shown_total, total = calc(boxes, "*", per_box)
    shown_left, left = calc(total, "-", used)
    facts = [f"{a.name} has {boxes} boxes of {things} with {per_box} {things} in each box.",
             f"{a.He} uses {used} {things}."]
    lines = [f"{a.name} has {shown_total} {things}.", f"{a.He} has {shown_left} {things} left."]
    return facts, f"How many {things} are left?", lines, left


def bakes_eats_bags(rng):
    (a,) = people(rng, 1)
    baked, bags, per_bag, eaten = rng.choice(BAKED), rng.randint(2, 8), rng.randint(2, 10), rng.randint(1, 9)
    made = bags * per_bag + eaten
    shown_rest, rest = calc(made, "-", eaten)
    shown_each, each = calc(rest, "/", bags)
    facts = [f"{a.name} bakes {made} {baked}.", f"{a.He} eats {eaten} of them.",
             f"{a.He} puts the rest equally into {bags} bags."]
    lines = [f"{a.name} has {shown_rest} {baked} left.", f"Each bag gets {shown_each} {baked}."]
    return facts, f"How many {baked} are in each bag?", lines, each


def fewer_than_together(rng):
    a, b = people(rng, 2)
    things, x = rng.choice(THINGS), rng.randint(10, 60)
    fewer = rng.randint(2, x - 2)
    shown_b, count_b = calc(x, "-", fewer)
    shown_total, total = calc(x, "+", count_b)
    facts = [f"{a.name} has {x} {things}.", f"{b.name} has {fewer} fewer {things} than {a.name}."]
    lines = [f"{b.name} has {shown_b} {things}.", f"Together they have {shown_total} {things}."]
    return facts, f"How many {things} do they have together?", lines, total


def half_as_many(rng):
    (a,) = people(rng, 1)
    fruits, half = rng.choice(FRUITS), rng.randint(2, 30)
    monday = 2 * half
    shown_tuesday, tuesday = calc(monday, "/", 2)
    shown_total, total = calc(monday, "+", tuesday)
    facts = [f"{a.name} picks {monday} {fruits} on Monday.", f"On Tuesday {a.he} picks half as many."]
    lines = [f"On Tuesday {a.name} picks {shown_tuesday} {fruits}.", f"In total {a.he} picks {shown_total} {fruits}."]
    return facts, f"How many {fruits} does {a.name} pick in total?", lines, total


# 3 steps

def two_kinds_shopping(rng):
    (a,) = people(rng, 1)
    first, second = rng.sample(GOODS, 2)
    n1, p1, n2, p2 = rng.randint(2, 6), rng.randint(2, 10), rng.randint(2, 6), rng.randint(2, 10)
    shown_first, cost_first = calc(n1, "*", p1)
    shown_second, cost_second = calc(n2, "*", p2)
    shown_total, total = calc(cost_first, "+", cost_second)
    facts = [f"{a.name} buys {n1} {first} for ${p1} each and {n2} {second} for ${p2} each."]
    lines = [f"The {first} cost {shown_first} dollars.", f"The {second} cost {shown_second} dollars.",
             f"{a.name} spends {shown_total} dollars in all."]
    return facts, f"How much does {a.name} spend in all?", lines, total


def pages_left(rng):
    (a,) = people(rng, 1)
    per_day, days, extra = rng.randint(3, 12), rng.randint(2, 6), rng.randint(2, 15)
    pages = per_day * days + extra + rng.randint(5, 60)
    shown_read, read = calc(per_day, "*", days)
    shown_all, read_all = calc(read, "+", extra)
    shown_left, left = calc(pages, "-", read_all)
    facts = [f"A book has {pages} pages.", f"{a.name} reads {per_day} pages a day for {days} days.",
             f"Then {a.he} reads {extra} more pages."]
    lines = [f"In {days} days {a.name} reads {shown_read} pages.", f"In all {a.he} reads {shown_all} pages.",
             f"There are {shown_left} pages left."]
    return facts, "How many pages are left?", lines, left


def wages_left(rng):
    (a,) = people(rng, 1)
    hours, days, wage = rng.randint(2, 6), rng.randint(2, 5), rng.randint(3, 10)
    spent = rng.randint(2, hours * days * wage - 1)
    shown_hours, total_hours = calc(hours, "*", days)
    shown_earned, earned = calc(total_hours, "*", wage)
    shown_left, left = calc(earned, "-", spent)
    facts = [f"{a.name} works {hours} hours a day for {days} days.", f"{a.He} earns ${wage} an hour.",
             f"{a.He} spends ${spent}."]
    lines = [f"{a.name} works {shown_hours} hours.", f"{a.He} earns {shown_earned} dollars.",
             f"{a.He} has {shown_left} dollars left."]
    return facts, f"How much money does {a.name} have left?", lines, left


def stamps_of_three(rng):
    a, b, c = people(rng, 3)
    things, x, fewer = rng.choice(THINGS), rng.randint(3, 25), rng.randint(1, 5)
    shown_b, count_b = calc(x, "*", 2)
    shown_c, count_c = calc(count_b, "-", fewer)
    shown_total, total = calc(count_b, "+", count_c)
    facts = [f"{a.name} has {x} {things}.", f"{b.name} has twice as many {things} as {a.name}.",
             f"{c.name} has {fewer} fewer {things} than {b.name}."]
    lines = [f"{b.name} has {shown_b} {things}.", f"{c.name} has {shown_c} {things}.",
             f"{b.name} and {c.name} have {shown_total} {things} together."]
    return facts, f"How many {things} do {b.name} and {c.name} have together?", lines, total


def zoo_trip(rng):
    (a,) = people(rng, 1)
    family, ticket, snacks, snack_price = rng.randint(2, 6), rng.randint(5, 15), rng.randint(2, 8), rng.randint(2, 5)
    shown_tickets, tickets = calc(family, "*", ticket)
    shown_snacks, snack_cost = calc(snacks, "*", snack_price)
    shown_total, total = calc(tickets, "+", snack_cost)
    facts = [f"{a.name} takes {family} people to the zoo.", f"A ticket costs ${ticket} per person.",
             f"They also buy {snacks} snacks for ${snack_price} each."]
    lines = [f"The tickets cost {shown_tickets} dollars.", f"The snacks cost {shown_snacks} dollars.",
             f"They spend {shown_total} dollars."]
    return facts, "How much money do they spend?", lines, total


def weeks_to_buy(rng):
    a, b = people(rng, 2)
    goods, weekly, weeks = rng.choice(["bike", "game", "scooter", "guitar"]), rng.randint(2, 10), rng.randint(2, 9)
    has, gift = rng.randint(2, 30), rng.randint(2, 20)
    price = has + gift + weekly * weeks
    shown_after_savings, after_savings = calc(price, "-", has)
    shown_needed, needed = calc(after_savings, "-", gift)
    shown_weeks, weeks_needed = calc(needed, "/", weekly)
    facts = [f"{a.name} wants a {goods} that costs ${price}.", f"{a.He} has ${has}.",
             f"{b.name} gives {a.him} ${gift}.", f"{a.He} saves ${weekly} each week."]
    lines = [f"Without the gift {a.name} needs {shown_after_savings} dollars.",
             f"With the gift {a.he} needs {shown_needed} dollars.", f"{a.He} needs {shown_weeks} weeks."]
    return facts, f"How many weeks does {a.name} need to save?", lines, weeks_needed


# 4 steps

def class_supplies(rng):
    while True:  # draw until everything shares out evenly
        pencil_boxes, per_pencil_box = rng.randint(2, 6), rng.randint(4, 12)
        crayon_boxes, per_crayon_box = rng.randint(2, 6), rng.randint(4, 12)
        students = rng.randint(2, 12)
        total = pencil_boxes * per_pencil_box + crayon_boxes * per_crayon_box
        if total % students == 0 and total // students >= 2:
            break
    (a,) = people(rng, 1)
    shown_pencils, pencils = calc(pencil_boxes, "*", per_pencil_box)
    shown_crayons, crayons = calc(crayon_boxes, "*", per_crayon_box)
    shown_total, total = calc(pencils, "+", crayons)
    shown_each, each = calc(total, "/", students)
    facts = [f"{a.name} buys {pencil_boxes} boxes of pencils with {per_pencil_box} pencils in each box.",
             f"{a.He} also buys {crayon_boxes} boxes of crayons with {per_crayon_box} crayons in each box.",
             f"{a.He} shares all of them equally among {students} students."]
    lines = [f"There are {shown_pencils} pencils.", f"There are {shown_crayons} crayons.",
             f"That is {shown_total} things in all.", f"Each student gets {shown_each} things."]
    return facts, "How many things does each student get?", lines, each


def fruit_stand(rng):
    (a,) = people(rng, 1)
    first, second = rng.sample(FRUITS, 2)
    per_bag, price, sold = rng.randint(2, 6), rng.randint(2, 9), rng.randint(2, 15)
    picked = rng.randint(2, 8) * per_bag + sold  # what is left after selling fills whole bags
    first_count = rng.randint(1, picked - 1)
    shown_picked, picked = calc(first_count, "+", picked - first_count)
    shown_rest, rest = calc(picked, "-", sold)
    shown_bags, bags = calc(rest, "/", per_bag)
    shown_money, money = calc(bags, "*", price)
    facts = [f"{a.name} picks {first_count} {first} and {picked - first_count} {second}.",
             f"{a.He} sells {sold} of the fruits.", f"{a.He} puts the rest into bags of {per_bag}.",
             f"Each bag sells for ${price}."]
    lines = [f"{a.name} picks {shown_picked} fruits.", f"{a.He} has {shown_rest} fruits left.",
             f"That makes {shown_bags} bags.", f"The bags sell for {shown_money} dollars."]
    return facts, f"How much money does {a.name} get for the bags?", lines, money


def bakery_boxes(rng):
    (a,) = people(rng, 1)
    baked, trays, per_tray, per_box = rng.choice(BAKED), rng.randint(2, 6), rng.randint(6, 12), rng.randint(2, 6)
    while True:  # what is left after both sales must fill whole boxes
        morning, afternoon = rng.randint(1, trays * per_tray // 2), rng.randint(1, trays * per_tray // 2)
        left = trays * per_tray - morning - afternoon
        if left > 0 and left % per_box == 0:
            break
    shown_made, made = calc(trays, "*", per_tray)
    shown_sold, sold = calc(morning, "+", afternoon)
    shown_left, left = calc(made, "-", sold)
    shown_boxes, boxes = calc(left, "/", per_box)
    facts = [f"{a.name} bakes {trays} trays of {baked} with {per_tray} on each tray.",
             f"{a.He} sells {morning} in the morning and {afternoon} in the afternoon.",
             f"{a.He} packs the rest in boxes of {per_box}."]
    lines = [f"{a.name} bakes {shown_made} {baked}.", f"{a.He} sells {shown_sold} {baked}.",
             f"{a.He} has {shown_left} {baked} left.", f"That fills {shown_boxes} boxes."]
    return facts, f"How many boxes does {a.name} fill?", lines, boxes


def party_packs(rng):
    (a,) = people(rng, 1)
    things, per_pack, price = rng.choice(["balloons", "stickers", "candles", "party hats"]), rng.randint(2, 6), rng.randint(2, 6)
    while True:  # the missing ones must come in whole packs
        friends, each, packs_wanted = rng.randint(2, 10), rng.randint(2, 5), rng.randint(1, 6)
        has = friends * each - packs_wanted * per_pack
        if has >= 1:
            break
    shown_needed, needed = calc(friends, "*", each)
    shown_missing, missing = calc(needed, "-", has)
    shown_packs, packs = calc(missing, "/", per_pack)
    shown_cost, cost = calc(packs, "*", price)
    facts = [f"{a.name} invites {friends} friends to a party.", f"Each friend gets {each} {things}.",
             f"{a.name} already has {has} {things}.", f"{things.capitalize()} come in packs of {per_pack}.",
             f"A pack costs ${price}."]
    lines = [f"The friends need {shown_needed} {things}.", f"{a.name} needs {shown_missing} more.",
             f"That is {shown_packs} packs.", f"The packs cost {shown_cost} dollars."]
    return facts, f"How much does {a.name} spend on {things}?", lines, cost


# Held out: 5 or 6 steps, used only in the "ood-long" split.

def school_trip(rng):
    while True:
        classes, per_class, teachers = rng.randint(2, 5), rng.randint(10, 25), rng.randint(2, 6)
        ticket, bus = rng.randint(2, 6), rng.randint(20, 90)
        total = (classes * per_class + teachers) * ticket + bus
        if total % classes == 0:
            break
    shown_students, students = calc(classes, "*", per_class)
    shown_people, people_count = calc(students, "+", teachers)
    shown_tickets, tickets = calc(people_count, "*", ticket)
    shown_total, total = calc(tickets, "+", bus)
    shown_each, each = calc(total, "/", classes)
    facts = [f"A school takes {classes} classes of {per_class} students to a museum with {teachers} teachers.",
             f"A ticket costs ${ticket} per person.", f"The bus costs ${bus}.",
             "The classes split the total cost equally."]
    lines = [f"There are {shown_students} students.", f"With the teachers there are {shown_people} people.",
             f"The tickets cost {shown_tickets} dollars.", f"With the bus the cost is {shown_total} dollars.",
             f"Each class pays {shown_each} dollars."]
    return facts, "How much does each class pay?", lines, each


def egg_farm(rng):
    (a,) = people(rng, 1)
    hens, per_hen, price = rng.randint(3, 12), rng.randint(3, 7), rng.randint(2, 5)
    laid = hens * per_hen
    per_carton = rng.randint(4, min(12, laid - 1))
    cartons_wanted = rng.randint(1, (laid - 1) // per_carton)  # keeps at least one egg
    kept = laid - cartons_wanted * per_carton
    feed = rng.randint(1, cartons_wanted * price)
    shown_laid, laid = calc(hens, "*", per_hen)
    shown_sold, sold = calc(laid, "-", kept)
    shown_cartons, cartons = calc(sold, "/", per_carton)
    shown_money, money = calc(cartons, "*", price)
    shown_profit, profit = calc(money, "-", feed)
    facts = [f"{a.name} has {hens} hens.", f"Each hen lays {per_hen} eggs a week.",
             f"{a.He} keeps {kept} eggs and sells the rest in cartons of {per_carton}.",
             f"A carton sells for ${price}.", f"{a.He} spends ${feed} on feed."]
    lines = [f"The hens lay {shown_laid} eggs.", f"{a.name} sells {shown_sold} eggs.",
             f"That is {shown_cartons} cartons.", f"The cartons sell for {shown_money} dollars.",
             f"After the feed {a.he} has {shown_profit} dollars."]
    return facts, f"How much money does {a.name} have after paying for the feed?", lines, profit


def lemonade_stand(rng):
    a, b = people(rng, 2)
    while True:
        saturday, price, lemons = rng.randint(3, 20), rng.randint(2, 5), rng.randint(2, 20)
        profit = 3 * saturday * price - lemons
        if profit > 0 and profit % 2 == 0:
            break
    shown_sunday, sunday = calc(saturday, "*", 2)
    shown_cups, cups = calc(saturday, "+", sunday)
    shown_money, money = calc(cups, "*", price)
    shown_profit, profit = calc(money, "-", lemons)
    shown_share, share = calc(profit, "/", 2)
    facts = [f"{a.name} and {b.name} sell lemonade for ${price} a cup.",
             f"They sell {saturday} cups on Saturday and twice as many on Sunday.",
             f"The lemons cost ${lemons}.", "They share the profit equally."]
    lines = [f"On Sunday they sell {shown_sunday} cups.", f"They sell {shown_cups} cups in all.",
             f"They take in {shown_money} dollars.", f"The profit is {shown_profit} dollars.",
             f"Each of them gets {shown_share} dollars."]
    return facts, f"How much money does {a.name} get?", lines, share


def book_fair(rng):
    (a,) = people(rng, 1)
    n1, p1, n2, p2 = rng.randint(2, 5), rng.randint(3, 9), rng.randint(2, 5), rng.randint(3, 9)
    discount = rng.randint(1, 5)
    bills = (n1 * p1 + n2 * p2 - discount) // 10 + 1
    shown_first, first = calc(n1, "*", p1)
    shown_second, second = calc(n2, "*", p2)
    shown_books, books = calc(first, "+", second)
    shown_cost, cost = calc(books, "-", discount)
    shown_paid, paid = calc(bills, "*", 10)
    shown_change, change = calc(paid, "-", cost)
    facts = [f"{a.name} buys {n1} books for ${p1} each and {n2} books for ${p2} each.",
             f"{a.He} gets ${discount} off.", f"{a.He} pays with {bills} $10 bills."]
    lines = [f"The first books cost {shown_first} dollars.", f"The other books cost {shown_second} dollars.",
             f"Together they cost {shown_books} dollars.", f"With the discount {a.he} pays {shown_cost} dollars.",
             f"{a.He} gives {shown_paid} dollars.", f"{a.He} gets {shown_change} dollars back."]
    return facts, f"How much change does {a.name} get?", lines, change


TEMPLATES = [
    gets_more, gives_away, buys_at_price, shares_equally, rows_of_plants, younger_than,  # 1 step
    change_left, buys_then_gives, times_as_many_together, weekly_savings,  # 2 steps
    boxes_then_uses, bakes_eats_bags, fewer_than_together, half_as_many,
    two_kinds_shopping, pages_left, wages_left, stamps_of_three, zoo_trip, weeks_to_buy,  # 3 steps
    class_supplies, fruit_stand, bakery_boxes, party_packs,  # 4 steps
]
SHORT_TEMPLATES = TEMPLATES[:10]  # 1 and 2 steps: the problems of "ood-distractors"
OOD_TEMPLATES = [school_trip, egg_farm, lemonade_stand, book_fair]  # 5-6 steps, never in other splits


# --- assembling the splits ---------------------------------------------------------

def make_problem(rng, template, distractor_prob=DISTRACTOR_PROB, distractors=DISTRACTORS, n_distractors=1):
    """(question, rationale, answer, steps) from one template."""
    facts, ask, lines, answer = template(rng)
    if rng.random() < distractor_prob:
        for sentence in rng.sample(distractors, n_distractors):
            # First or last, never in between: "Emma has 59 balloons. The park has 26
            # benches. She gives 50 of them away." would make "them" the benches.
            facts.insert(rng.choice([0, len(facts)]), sentence.format(n=rng.randint(2, 60)))
    question = " ".join(facts + [ask])
    rationale = "\n".join(lines + [f"#### {answer}"])
    return question, rationale, answer, len(lines)


def make_synthetic(seed, sizes=None, distractor_prob=DISTRACTOR_PROB):
    """All splits as {split: [example, ...]}, the same for the same arguments.

    sizes: {split: number of examples}; a split not named gets its DEFAULT_SIZES.
    Examples have the usual keys (id, question, answer, gold) plus "template"
    and "steps". Unlabeled examples keep the gold answer but no rationale. No
    question text appears twice, in a split or across splits.
    """
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {', '.join(sorted(unknown))}; the splits are {', '.join(SPLITS)}")
    # Evaluation splits are drawn first, each from its own random stream, so
    # asking for more training data never changes dev, test or ood. A stream (and the examples' ids)
    # is keyed by the split's first name, which a rename must not change: it would redraw every set.
    usual = (distractor_prob, DISTRACTORS, 1)  # (probability, sentences, how many) of distractors
    plan = [("test", "test", TEMPLATES, usual), ("dev", "dev", TEMPLATES, usual),
            ("ood-long", "ood", OOD_TEMPLATES, usual),
            ("ood-distractors", "ood_distractors", SHORT_TEMPLATES, (1.0, HELD_OUT_DISTRACTORS, 2)),
            ("labeled", "train", TEMPLATES, usual), ("unlabeled", "unlabeled", TEMPLATES, usual)]
    seen_questions = set()
    splits = {}
    for split, stream, templates, distractors in plan:
        size = sizes[split]
        rng = random.Random(f"dpo-st synthetic {seed} {stream}")
        rows = []
        attempts = 0
        while len(rows) < size:
            attempts += 1
            if attempts > 100 * size:
                raise RuntimeError(f"could not draw {size} distinct {split} questions; ask for fewer")
            template = rng.choice(templates)
            question, rationale, answer, steps = make_problem(rng, template, *distractors)
            if question in seen_questions:
                continue
            seen_questions.add(question)
            rows.append({
                "id": f"synthetic-{stream}-{len(rows)}",
                "question": question,
                "answer": None if split == "unlabeled" else rationale,
                "gold": float(answer),
                "template": template.__name__,
                "steps": steps,
            })
        splits[split] = rows
    return {split: splits[split] for split in SPLITS}


def main():
    parser = argparse.ArgumentParser(description="Write synthetic GSM8K-style splits as JSONL files.")
    parser.add_argument("--out", required=True, help="folder for labeled.jsonl, unlabeled.jsonl, ...")
    parser.add_argument("--seed", type=int, default=0)
    for split in SPLITS:
        parser.add_argument(f"--n-{split}", type=int, default=DEFAULT_SIZES[split], dest=split,
                            help=f"examples in {split}.jsonl (default: %(default)s)")
    args = parser.parse_args()
    splits = make_synthetic(args.seed, {split: getattr(args, split) for split in SPLITS})
    for split, rows in splits.items():
        path = os.path.join(args.out, f"{split}.jsonl")
        write_jsonl(path, rows)
        print(f"wrote {len(rows)} examples to {path}")


if __name__ == "__main__":
    main()
