"""Seeded procedural math word problems with step-by-step solutions and known skills.

The demo world of ``skilldistill demo``: every problem composes 1-3 leaf skills of the
bundled ``demo`` tree (``skilldistill/trees/demo.yaml``), its teacher solution shows each
step on its own short line and ends in ``\\boxed{}``, and the skills that built it are
recorded as ground truth (``true_skills``), so attribution, profiling and selection can be
checked against the truth.

Design choices (see ``docs/demo.md``):

- Numbers stay small (mostly below 100) and every solution writes each arithmetic fact it
  uses, so a model of a few million parameters can learn a skill's procedure from a few
  dozen examples on a CPU.
- A composed problem chains skills through a named value: ``Let n be the solution of
  3x + 4 = 19. What is the remainder when n is divided by 4?``. The solution solves the
  first part, states ``So n = 5.``, then solves the second.
- Problems are split by a hash of their normalised text: the evaluation split (about one
  problem in eight) never overlaps the training split, whatever the seeds.

Example::

    from skilldistill.demo.generator import generate_corpus, generate_eval_set
    pool = generate_corpus(2000, seed=0)           # pyarrow.Table, corpus schema + true_skills
    held_out = generate_eval_set(24, seed=0)       # 24 single-skill problems per leaf
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from math import gcd
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..corpus import CORPUS_SCHEMA as NORMALISED_SCHEMA
from ..textutil import normalize_question, question_id
from .student_config import WEAK_LEAVES

GENERATOR_VERSION = "demo-v2"
SOURCE = "demo"

# Split by question hash: buckets 0-1 of 8 (a quarter) are held out for evaluation, bucket 2
# (an eighth) is the development split that settings are tuned on (bench/demo_world.py),
# the rest is for training. Held-out, development and training problems never overlap.
_SPLIT_BUCKETS = 8
_EVAL_BUCKETS = frozenset({0, 1})
_DEV_BUCKETS = frozenset({2})
SPLITS = ("train", "dev", "eval")

Value = int | Fraction


@dataclass
class Piece:
    """One skill instance: how to ask it, how to name its result, how to solve it."""

    ask: str  # a full question sentence
    define: str  # a noun phrase for its result ("the solution of 3x + 4 = 19")
    steps: list[str]  # solution lines, each a short statement of facts
    value: Value


@dataclass(frozen=True)
class Skill:
    """A leaf skill: its chain in the demo tree and its problem maker.

    ``make(rng, x, var)`` returns a :class:`Piece`; when ``x`` is given the problem must
    use it as an operand, written as the variable name ``var`` in the question text.
    It returns None when ``x`` does not fit (the composer then tries another skill).
    """

    chain: tuple[str, str]
    make: Callable[[random.Random, int | None, str | None], Piece | None]
    consumes: bool = True  # can take an earlier result as an operand
    integer_result: bool = True  # its result can feed a later skill

    @property
    def name(self) -> str:
        return "->".join(self.chain)


def fmt(v: Value) -> str:
    """Integers as ``12``, fractions as ``3/4`` (lowest terms), whole fractions as integers."""
    if isinstance(v, Fraction):
        return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
    return str(v)


def _op(x: int | None, var: str | None, rng_value: int) -> tuple[int, str]:
    """The operand value and how the question writes it (a literal or the variable)."""
    if x is None:
        return rng_value, str(rng_value)
    return x, var or str(x)


# --------------------------------------------------------------------------- Arithmetic
# Operands are single digits wherever the skill allows it: the arithmetic facts a solution
# uses then come from the small addition and times tables, which a tiny model learns from
# the strong skills, so a skill's difficulty is its *procedure*, not its numbers.
def _add_sub(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None and not 0 <= x <= 30:
        return None
    a, a_txt = _op(x, var, rng.randint(1, 9))
    b = rng.randint(1, 9)
    s = a + b
    c = rng.randint(1, min(9, s))
    expr = f"{a_txt} + {b} - {c}"
    ask = rng.choice([f"What is {expr}?", f"Compute {expr}."])
    return Piece(ask, expr, [f"{a} + {b} = {s}.", f"{s} - {c} = {s - c}."], s - c)


def _mul_div(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None:
        if 2 <= x <= 9 and rng.random() < 0.5:
            b = rng.randint(2, 9)
            return Piece(f"What is {var} times {b}?", f"{var} times {b}",
                         [f"{x} * {b} = {x * b}."], x * b)
        divisors = [d for d in range(2, 10) if x % d == 0 and 1 < x // d <= 9]
        if not divisors:
            return None
        d = rng.choice(divisors)
        return Piece(f"What is {var} divided by {d}?", f"{var} divided by {d}",
                     [f"{x} / {d} = {x // d}."], x // d)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    p = a * b
    if rng.random() < 0.5:
        ask = rng.choice([f"What is {a} times {b}?", f"What is the product of {a} and {b}?",
                          f"Multiply {a} by {b}."])
        return Piece(ask, f"{a} times {b}", [f"{a} * {b} = {p}."], p)
    ask = rng.choice([f"What is {p} divided by {a}?", f"Divide {p} by {a}.",
                      f"{p} apples are shared equally by {a} children. How many does each get?"])
    return Piece(ask, f"{p} divided by {a}", [f"{p} / {a} = {b}."], b)


def _order_ops(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None and not 2 <= x <= 9:
        return None
    a, a_txt = _op(x, var, rng.randint(2, 9))
    b = rng.randint(2, 9)
    c = rng.randint(1, 9)
    p = a * b
    if rng.random() < 0.5:
        expr, last, val = f"{c} + {a_txt} * {b}", f"{c} + {p} = {c + p}.", c + p
    else:
        expr, last, val = f"{a_txt} * {b} - {c}", f"{p} - {c} = {p - c}.", p - c
    # Worded as such exercises are ("order of operations", "multiply first"): a bare
    # "What is 5 + 3 * 4?" reads, to an attributor, like any other sum.
    ask = rng.choice([f"Using the order of operations, what is {expr}?",
                      f"Remember to multiply first: compute {expr}.",
                      f"Following the order of operations, evaluate {expr}."])
    return Piece(ask, expr, [f"{a} * {b} = {p}.", last], val)


# ------------------------------------------------------------- Fractions and percents
def _add_fractions(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None:
        return None
    if rng.random() < 0.5:  # same denominator
        d = rng.randint(3, 9)
        a, b = rng.randint(1, d - 1), rng.randint(1, d - 1)
        total = Fraction(a + b, d)
        steps = [f"{a} + {b} = {a + b}, so the sum is {a + b}/{d}."]
        raw = (a + b, d)
        text = f"{a}/{d} + {b}/{d}"
    else:  # one denominator is a multiple of the other
        d1 = rng.randint(2, 4)
        d2 = d1 * rng.randint(2, 3)
        a, b = rng.randint(1, d1 - 1), rng.randint(1, d2 - 1)
        k = d2 // d1
        total = Fraction(a, d1) + Fraction(b, d2)
        steps = [f"{a}/{d1} = {a * k}/{d2}.", f"{a * k} + {b} = {a * k + b}, so the sum is {a * k + b}/{d2}."]
        raw = (a * k + b, d2)
        text = f"{a}/{d1} + {b}/{d2}"
    if gcd(*raw) > 1:
        steps.append(f"{raw[0]}/{raw[1]} = {fmt(total)}.")
    ask = rng.choice([f"What is {text}?", f"Add {text}."])
    return Piece(ask, text, steps, total)


def _simplify_fraction(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None:
        ks = [k for k in range(2, 6) if x % k == 0 and x // k <= 9]
        if not ks:
            return None
        k = rng.choice(ks)
        q = rng.choice([q for q in range(2, 10) if gcd(q, x // k) == 1 and q != x // k] or [0])
        if not q:
            return None
        num, den, text = x, q * k, f"{var}/{q * k}"
    else:
        q = rng.randint(2, 9)
        p = rng.randint(1, q + 3)
        if gcd(p, q) != 1 or p == q:
            return None
        k = rng.randint(2, 5)
        num, den = p * k, q * k
        text = f"{num}/{den}"
    g = gcd(num, den)
    steps = [f"{num} and {den} are both divisible by {g}.",
             f"{num} / {g} = {num // g} and {den} / {g} = {den // g}."]
    ask = rng.choice([f"Simplify {text}.", f"Write {text} in lowest terms."])
    return Piece(ask, f"{text} in lowest terms", steps, Fraction(num, den))


_PERCENTS = {10: (1, 10), 20: (1, 5), 25: (1, 4), 50: (1, 2), 75: (3, 4)}


def _percent_of(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None:
        options = [p for p, (_, d) in _PERCENTS.items() if x % d == 0 and 1 <= x // d <= 9]
        if not options:
            return None
        pct = rng.choice(options)
        n, n_txt = x, var
    else:
        pct = rng.choice(list(_PERCENTS))
        n = _PERCENTS[pct][1] * rng.randint(1, 9)
        n_txt = str(n)
    num, den = _PERCENTS[pct]
    part = n // den
    steps = [f"{pct}% = {num}/{den}.", f"{n} / {den} = {part}."]
    if num != 1:
        steps.append(f"{part} * {num} = {part * num}.")
    ask = rng.choice([f"What is {pct}% of {n_txt}?", f"Find {pct}% of {n_txt}.",
                      f"A class has {n_txt} pupils and {pct}% of them walk to school. How many walk?",
                      f"How much is {pct}% of {n_txt}?",
                      f"A jar holds {n_txt} marbles and {pct}% of them are blue. How many are blue?"])
    return Piece(ask, f"{pct}% of {n_txt}", steps, part * num)


# -------------------------------------------------------------------------- Algebra
def _linear_equation(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None:
        options = [(a, (x - b) // a, b) for a in range(2, 10) for b in range(1, 10)
                   if x - b > 0 and (x - b) % a == 0 and (x - b) // a <= 9]
        if not options:
            return None
        a, sol, b = rng.choice(options)
        rhs, rhs_txt = x, var
    else:
        a, sol, b = rng.randint(2, 9), rng.randint(1, 9), rng.randint(1, 9)
        rhs = a * sol + b
        rhs_txt = str(rhs)
    eq = f"{a}x + {b} = {rhs_txt}"
    steps = [f"{a}x = {rhs} - {b} = {rhs - b}.", f"x = {rhs - b} / {a} = {sol}."]
    ask = rng.choice([f"Solve for x: {eq}.", f"Find x if {eq}."])
    return Piece(ask, f"the solution of {eq}", steps, sol)


def _evaluate(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None and not 1 <= x <= 9:
        return None
    v, v_txt = _op(x, var, rng.randint(1, 9))
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    p = a * v
    if rng.random() < 0.5 or p <= b:
        expr, val, last = f"{a}y + {b}", p + b, f"{p} + {b} = {p + b}."
    else:
        expr, val, last = f"{a}y - {b}", p - b, f"{p} - {b} = {p - b}."
    ask = rng.choice([f"If y = {v_txt}, what is {expr}?", f"Evaluate {expr} when y = {v_txt}."])
    return Piece(ask, f"the value of {expr} when y = {v_txt}", [f"{a} * {v} = {p}.", last], val)


def _sequence(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None and not 0 <= x <= 20:
        return None
    start, start_txt = _op(x, var, rng.randint(1, 9))
    d = rng.randint(2, 9)
    k = rng.randint(3, 6)
    if x is None:
        terms = ", ".join(str(start + i * d) for i in range(3))
        ask = f"The sequence {terms}, ... goes up by the same amount each time. What is term {k}?"
        define = f"term {k} of the sequence {terms}, ..."
        steps = [f"The step is {start + d} - {start} = {d}."]
    else:
        ask = f"A sequence starts at {start_txt} and goes up by {d} each time. What is term {k}?"
        define = f"term {k} of the sequence that starts at {start_txt} and goes up by {d}"
        steps = []
    jump = (k - 1) * d
    # Term k is k - 1 steps after the first: written out, so every number is a copy or a known fact.
    steps += [f"{k} - 1 = {k - 1}.", f"{k - 1} * {d} = {jump}.", f"{start} + {jump} = {start + jump}."]
    return Piece(ask, define, steps, start + jump)


# -------------------------------------------------------------------- Number theory
def _euclid_steps(a: int, b: int) -> tuple[list[str], int]:
    """Euclid's algorithm on (a, b), a >= b > 0, one line per division."""
    steps = []
    while b:
        q, r = divmod(a, b)
        steps.append(f"{a} = {q} * {b} + {r}.")
        a, b = b, r
    return steps, a


def _gcd(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None:
        if not 2 <= x <= 30:
            return None
        a, a_txt, b = x, var, rng.randint(2, 30)
    else:
        g = rng.randint(2, 5)
        a, b = g * rng.randint(1, 6), g * rng.randint(1, 6)
        a_txt = str(a)
    if a == b:
        return None
    steps, g = _euclid_steps(max(a, b), min(a, b))
    if len(steps) > 3:  # keep solutions short
        return None
    ask = rng.choice([f"What is the greatest common divisor of {a_txt} and {b}?",
                      f"Find the largest number that divides both {a_txt} and {b}."])
    return Piece(ask, f"the greatest common divisor of {a_txt} and {b}", steps, g)


def _lcm(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None and not 2 <= x <= 9:
        return None
    a, a_txt = _op(x, var, rng.randint(2, 9))
    b = rng.randint(2, 9)
    if a == b:
        return None
    g = gcd(a, b)
    prod = a * b
    lcm = prod // g
    if g == 1:
        steps = [f"{a} and {b} share no factor, so multiply: {a} * {b} = {prod}."]
    else:
        steps = [f"{a} and {b} share the factor {g}.", f"{a} * {b} = {prod} and {prod} / {g} = {lcm}."]
    ask = rng.choice([f"What is the least common multiple of {a_txt} and {b}?",
                      f"What is the smallest number that is a multiple of both {a_txt} and {b}?",
                      f"Find the least common multiple of {a_txt} and {b}.",
                      f"Two lights flash every {a_txt} and every {b} seconds. After how many seconds do they first flash together?"])
    return Piece(ask, f"the least common multiple of {a_txt} and {b}", steps, lcm)


def _remainder(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    # n up to 30 and the division written as Euclid's step "n = q * k + r." (the line the
    # greatest-common-divisor skill writes): the fact is one the student knows, the skill
    # is knowing which line to write and which number is the answer.
    if x is not None and not 3 <= x <= 30:
        return None
    k = rng.randint(2, 9)
    n, n_txt = _op(x, var, rng.randint(k + 1, 30))
    if n <= k:
        return None
    q, r = divmod(n, k)
    ask = rng.choice([f"What is the remainder when {n_txt} is divided by {k}?",
                      f"What is {n_txt} mod {k}?", f"Find the remainder of {n_txt} divided by {k}."])
    return Piece(ask, f"the remainder of {n_txt} divided by {k}", [f"{n} = {q} * {k} + {r}."], r)


# ------------------------------------------------------------------------- Geometry
def _rectangle(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None and not 1 <= x <= 9:
        return None
    w, w_txt = _op(x, var, rng.randint(2, 9))
    h = rng.randint(2, 9)
    shape = rng.choice(["rectangle", "garden", "room", "rug"])
    if rng.random() < 0.5:
        return Piece(f"A {shape} is {w_txt} by {h}. What is its area?",
                     f"the area of a {w_txt} by {h} {shape}", [f"{w} * {h} = {w * h}."], w * h)
    return Piece(f"A {shape} is {w_txt} by {h}. What is its perimeter?",
                 f"the perimeter of a {w_txt} by {h} {shape}",
                 [f"{w} + {h} = {w + h}.", f"2 * {w + h} = {2 * (w + h)}."], 2 * (w + h))


def _triangle(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    # angles in tens: the sums are the one-digit addition table with a trailing zero
    if x is not None and not (10 <= x <= 150 and x % 10 == 0):
        return None
    a, a_txt = _op(x, var, 10 * rng.randint(1, 9))
    b = 10 * rng.randint(1, 9)
    s = a + b
    if s >= 180:
        return None
    ask = rng.choice([f"Two angles of a triangle are {a_txt} and {b} degrees. What is the third angle?",
                      f"A triangle has angles of {a_txt} and {b} degrees. Find its third angle.",
                      f"In a triangle, one angle is {a_txt} degrees and another is {b} degrees. How big is the last angle?"])
    return Piece(ask, f"the third angle of a triangle with angles {a_txt} and {b} degrees",
                 [f"{a} + {b} = {s}.", f"180 - {s} = {180 - s}."], 180 - s)


# ------------------------------------------------------------------------- Counting
_PRODUCT_THINGS = (("shirts", "hats", "outfits"), ("soups", "salads", "meals"),
                   ("pens", "notebooks", "sets"), ("cakes", "drinks", "snacks"),
                   ("coats", "scarves", "looks"), ("games", "prizes", "choices"))


def _product_rule(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None and not 2 <= x <= 9:
        return None
    a, a_txt = _op(x, var, rng.randint(2, 9))
    b = rng.randint(2, 9)
    things = rng.choice(_PRODUCT_THINGS)
    ask = (f"There are {a_txt} {things[0]} and {b} {things[1]}. "
           f"How many {things[2]} of one of each are there?")
    return Piece(ask, f"the number of {things[2]} from {a_txt} {things[0]} and {b} {things[1]}",
                 [f"{a} * {b} = {a * b}."], a * b)


_PAIR_CONTEXTS = (
    # (question with {n}, noun phrase with {n}, ordered?)
    ("{n} people each shake hands once with each other. How many handshakes are there?",
     "the number of handshakes among {n} people", False),
    ("In a league of {n} teams, each team plays each other team once. How many games are played?",
     "the number of games among {n} teams", False),
    ("There are {n} points on a circle. How many segments join two of the points?",
     "the number of segments joining {n} points", False),
    ("How many ways can you choose 2 of {n} books?", "the number of ways to choose 2 of {n} books",
     False),
    ("How many pairs of students can be formed from {n} students?",
     "the number of pairs from {n} students", False),
    ("A club has {n} members. In how many ways can it pick a president and a vice president?",
     "the number of ways to pick a president and a vice president from {n} members", True),
    ("{n} runners race. In how many ways can gold and silver be awarded?",
     "the number of ways to award gold and silver among {n} runners", True),
    ("In how many ways can 2 of {n} books be placed in order on a shelf?",
     "the number of ordered pairs from {n} books", True),
    ("{n} friends each send a card to every other friend. How many cards are sent?",
     "the number of cards sent among {n} friends", True),
    ("Each of {n} towns is joined to every other town by one road. How many roads are there?",
     "the number of roads joining {n} towns", False),
    ("{n} players each play one match against every other player. How many matches are there?",
     "the number of matches among {n} players", False),
    ("How many ways can a pair of 2 be picked from {n} kids?",
     "the number of pairs picked from {n} kids", False),
    ("How many lines pass through 2 of {n} points, no three on a line?",
     "the number of lines through {n} points", False),
    ("In how many ways can {n} singers fill a first and a second spot?",
     "the number of ways to fill two spots from {n} singers", True),
    ("How many two-letter codes with different letters can be made from {n} letters?",
     "the number of two-letter codes from {n} letters", True),
    ("{n} guests each give a gift to every other guest. How many gifts are given?",
     "the number of gifts among {n} guests", True),
)


def _pairs(rng: random.Random, x: int | None, var: str | None) -> Piece | None:
    if x is not None and not 2 <= x <= 12:
        return None
    n, n_txt = _op(x, var, rng.randint(3, 12))
    ask, define, ordered = rng.choice(_PAIR_CONTEXTS)
    p = n * (n - 1)
    steps = [f"{n} * {n - 1} = {p}."]
    value = p
    if not ordered:
        steps.append(f"Each pair is counted twice, so {p} / 2 = {p // 2}.")
        value = p // 2
    return Piece(ask.format(n=n_txt), define.format(n=n_txt), steps, value)


# The skills, in the order of the demo tree (skilldistill/trees/demo.yaml).
SKILLS: tuple[Skill, ...] = (
    Skill(("Arithmetic", "Addition and subtraction"), _add_sub),
    Skill(("Arithmetic", "Multiplication and division"), _mul_div),
    Skill(("Arithmetic", "Order of operations"), _order_ops),
    Skill(("Fractions and percents", "Adding fractions"), _add_fractions,
          consumes=False, integer_result=False),
    Skill(("Fractions and percents", "Simplifying fractions"), _simplify_fraction,
          integer_result=False),
    Skill(("Fractions and percents", "Percent of a number"), _percent_of),
    Skill(("Algebra", "Linear equations"), _linear_equation),
    Skill(("Algebra", "Evaluating expressions"), _evaluate),
    Skill(("Algebra", "Arithmetic sequences"), _sequence),
    Skill(("Number theory", "Greatest common divisor"), _gcd),
    Skill(("Number theory", "Least common multiple"), _lcm),
    Skill(("Number theory", "Remainders"), _remainder),
    Skill(("Geometry", "Rectangles"), _rectangle),
    Skill(("Geometry", "Triangle angles"), _triangle),
    Skill(("Counting", "Product rule"), _product_rule),
    Skill(("Counting", "Choosing pairs"), _pairs),
)
SKILL_BY_NAME: dict[str, Skill] = {s.name: s for s in SKILLS}
LEAF_CHAINS: tuple[tuple[str, str], ...] = tuple(s.chain for s in SKILLS)
# WEAK_LEAVES, the leaves the base student sees only a few examples of, is a student setting
# (.student_config), imported above.

_VARS = ("n", "m")


@dataclass
class Problem:
    question: str
    response: str
    answer: str
    skills: list[tuple[str, ...]]
    difficulty: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"demo-{question_id(self.question)}"


def split_of(question: str) -> str:
    """``eval``, ``dev`` or ``train``: a fixed function of the question text, so splits never overlap."""
    bucket = hashlib.sha256(normalize_question(question).encode("utf-8")).digest()[0] % _SPLIT_BUCKETS
    return "eval" if bucket in _EVAL_BUCKETS else "dev" if bucket in _DEV_BUCKETS else "train"


def compose(rng: random.Random, skills: Sequence[Skill]) -> Problem | None:
    """Chain ``skills`` (1-3) into one problem; None when the drawn numbers do not fit."""
    pieces: list[Piece] = []
    value: Value | None = None
    for i, skill in enumerate(skills):
        x = value if i > 0 else None
        if x is not None and (not isinstance(x, int) or not skill.consumes):
            return None
        piece = skill.make(rng, x, _VARS[i - 1] if i > 0 else None)
        if piece is None:
            return None
        pieces.append(piece)
        value = piece.value
    if len(pieces) == 1:
        question = pieces[0].ask
        steps = list(pieces[0].steps)
    else:
        parts = [f"Let {_VARS[i]} be {p.define}." for i, p in enumerate(pieces[:-1])]
        question = " ".join(parts + [pieces[-1].ask])
        steps = []
        for i, p in enumerate(pieces):
            steps += p.steps
            if i < len(pieces) - 1:
                steps.append(f"So {_VARS[i]} = {fmt(p.value)}.")
    answer = fmt(value)  # type: ignore[arg-type]
    steps.append(f"So the answer is \\boxed{{{answer}}}.")
    return Problem(question=question, response="\n".join(steps), answer=answer,
                   skills=[s.chain for s in skills], difficulty=len(skills))


def _pick_chain(rng: random.Random, weights: Sequence[float], n_skills: int) -> list[Skill]:
    return rng.choices(SKILLS, weights=weights, k=n_skills)


def _leaf_weights(leaf_weights: dict[str, float] | None) -> list[float]:
    if leaf_weights is None:
        return [1.0] * len(SKILLS)
    unknown = set(leaf_weights) - set(SKILL_BY_NAME)
    if unknown:
        raise ValueError(f"unknown demo leaves {sorted(unknown)}; known: {sorted(SKILL_BY_NAME)}")
    return [float(leaf_weights.get(s.name, 0.0)) for s in SKILLS]


def skewed_weights(weak_weight: float = 0.04, weak: Sequence[str] = WEAK_LEAVES) -> dict[str, float]:
    """Leaf weights with ``weak`` leaves rare: the base student's training mix."""
    return {s.name: (weak_weight if s.name in weak else 1.0) for s in SKILLS}


def generate_problems(
    n: int,
    seed: int,
    *,
    split: str = "train",
    leaf_weights: dict[str, float] | None = None,
    skill_counts: Sequence[float] = (0.6, 0.3, 0.1),
    exclude: set[str] | None = None,
) -> list[Problem]:
    """``n`` distinct problems of ``split`` (``train`` or ``eval``), drawn with ``seed``.

    Each problem composes 1, 2 or 3 skills with probabilities ``skill_counts``; the
    skills are drawn by ``leaf_weights`` (leaf name ``Domain->Leaf`` -> weight; uniform
    when None). ``exclude`` holds normalised questions to skip.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    weights = _leaf_weights(leaf_weights)
    if sum(weights) <= 0:
        raise ValueError("leaf weights sum to zero")
    rng = random.Random(f"{GENERATOR_VERSION}:{split}:{seed}")
    seen = set(exclude or ())
    out: list[Problem] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct problems (got {len(out)})")
        k = rng.choices((1, 2, 3), weights=skill_counts)[0]
        prob = compose(rng, _pick_chain(rng, weights, k))
        if prob is None or split_of(prob.question) != split:
            continue
        key = normalize_question(prob.question)
        if key in seen:
            continue
        seen.add(key)
        out.append(prob)
    return out


def generate_leaf_problems(leaf: str, n: int, seed: int, *, split: str = "eval",
                           exclude: set[str] | None = None) -> list[Problem]:
    """``n`` distinct single-skill problems of one leaf."""
    return generate_problems(n, seed, split=split, leaf_weights={leaf: 1.0},
                             skill_counts=(1.0, 0.0, 0.0), exclude=exclude)


def to_rows(problems: Sequence[Problem], *, split: str) -> list[dict[str, Any]]:
    """Rows of the normalised corpus schema plus ``true_skills`` (list of chains)."""
    rows = []
    for p in problems:
        meta = {
            "true_skills": ["->".join(c) for c in p.skills],
            "difficulty": p.difficulty,
            "n_skills": len(p.skills),
            "split": split,
            "generator": GENERATOR_VERSION,
            **p.extra,
        }
        rows.append({
            "id": p.id,
            "question": p.question,
            "response": p.response,
            "answer": p.answer,
            "source": p.extra.get("source", SOURCE),
            "meta": json.dumps(meta, sort_keys=True),
            "true_skills": [list(c) for c in p.skills],
        })
    return rows


# The normalised corpus schema plus the ground truth, typed like annotate's `skills`.
CORPUS_SCHEMA = NORMALISED_SCHEMA.append(pa.field("true_skills", pa.list_(pa.list_(pa.string()))))


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA)


# Reasoning-gym tasks that map onto one demo leaf (their answers are checked by the
# package itself; their "teacher solution" is only the boxed answer: no steps).
GYM_TASKS: dict[str, str] = {
    "gcd": "Number theory->Greatest common divisor",
    "lcm": "Number theory->Least common multiple",
    "basic_arithmetic": "Arithmetic->Addition and subtraction",
    "fraction_simplification": "Fractions and percents->Simplifying fractions",
    "simple_equations": "Algebra->Linear equations",
}


def gym_problems(n: int, seed: int, tasks: Sequence[str] = tuple(GYM_TASKS)) -> list[Problem]:
    """``n`` reasoning-gym problems (needs ``pip install reasoning-gym``), train split only."""
    try:
        import reasoning_gym
    except ImportError as e:  # optional extra
        raise ImportError("reasoning-gym is not installed: pip install 'skilldistill[gym]'") from e
    unknown = [t for t in tasks if t not in GYM_TASKS]
    if unknown:
        raise ValueError(f"no demo leaf for reasoning-gym task(s) {unknown}; known: {sorted(GYM_TASKS)}")
    out: list[Problem] = []
    per_task = -(-n // len(tasks))
    for t_i, task in enumerate(tasks):
        # oversample: about 1 in 8 questions falls in the eval split and is dropped
        ds = reasoning_gym.create_dataset(task, size=per_task * 2 + 8, seed=seed * 100 + t_i)
        kept = 0
        for entry in ds:
            q, a = str(entry["question"]), str(entry["answer"])
            if split_of(q) != "train" or kept >= per_task:
                continue
            kept += 1
            chain = tuple(GYM_TASKS[task].split("->"))
            out.append(Problem(question=q, response=f"So the answer is \\boxed{{{a}}}.", answer=a,
                               skills=[chain], difficulty=1,
                               extra={"source": f"reasoning-gym/{task}"}))
    random.Random(seed).shuffle(out)
    return out[:n]


def generate_corpus(
    n: int,
    seed: int = 0,
    *,
    leaf_weights: dict[str, float] | None = None,
    skill_counts: Sequence[float] = (0.6, 0.3, 0.1),
    gym_fraction: float = 0.0,
    as_table: bool = True,
) -> pa.Table | list[dict[str, Any]]:
    """The training pool: ``n`` problems of the train split (never in the eval split).

    ``gym_fraction`` > 0 replaces that share with reasoning-gym tasks (optional package).
    Returns a :class:`pyarrow.Table` (or the row dicts with ``as_table=False``).
    """
    n_gym = round(n * gym_fraction)
    problems = generate_problems(n - n_gym, seed, split="train", leaf_weights=leaf_weights,
                                 skill_counts=skill_counts)
    if n_gym:
        seen = {normalize_question(p.question) for p in problems}
        problems += [p for p in gym_problems(n_gym, seed) if normalize_question(p.question) not in seen]
    rows = to_rows(problems, split="train")
    return rows_to_table(rows) if as_table else rows


def generate_eval_set(
    n_per_leaf: int,
    seed: int = 0,
    *,
    leaves: Sequence[str] | None = None,
    as_table: bool = True,
    split: str = "eval",
) -> pa.Table | list[dict[str, Any]]:
    """A held-out set of ``n_per_leaf`` single-skill problems per leaf (eval split; ``dev``
    for the development set that settings are tuned on).

    Disjoint from every :func:`generate_corpus` pool by construction (hash split).
    """
    if split not in ("eval", "dev"):
        raise ValueError(f"a held-out set comes from the eval or dev split, not {split!r}")
    names = list(leaves) if leaves is not None else [s.name for s in SKILLS]
    seen: set[str] = set()
    problems: list[Problem] = []
    for name in names:
        if name not in SKILL_BY_NAME:
            raise ValueError(f"unknown demo leaf {name!r}")
        got = generate_leaf_problems(name, n_per_leaf, seed, split=split, exclude=seen)
        seen.update(normalize_question(p.question) for p in got)
        problems += got
    rows = to_rows(problems, split=split)
    return rows_to_table(rows) if as_table else rows


def write_corpus(table: pa.Table | list[dict[str, Any]], path: str | Path) -> Path:
    """Write a generated table as ``.parquet`` or ``.jsonl`` (by suffix), atomically."""
    from ..artifacts import write_jsonl, write_parquet

    path = Path(path)
    if isinstance(table, list):
        table = rows_to_table(table)
    if path.suffix == ".jsonl":
        return write_jsonl(path, table.to_pylist())
    return write_parquet(path, table)
