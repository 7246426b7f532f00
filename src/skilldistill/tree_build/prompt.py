"""The proposal prompt: a few-shot conversation asking for one skill chain per solution step,
in the strict line format ``A -> B -> C`` (broad area first, the specific skill last)."""

from __future__ import annotations

from ..artifacts import sha256_text
from ..attribution.items import item_text
from ..llm.base import Conversation

INSTRUCTIONS = (
    "You are building a taxonomy of the skills that solving problems needs. Read the problem and its "
    "solution. For each step of the solution, write one skill chain: the broad area first, then narrower "
    "skills, the specific skill the step uses last; 2 to 4 short names separated by \" -> \".\n"
    "Answer with the chains only, one per line: no numbering, no bullets, no explanations."
)

# (problem, solution, chains): short, so that the prompt fits a small model's context.
EXAMPLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Solve for x: 3x + 5 = 20.",
     "Subtract 5 from both sides: 3x = 15. Divide both sides by 3: x = 5.",
     ("Algebra -> Linear equations -> Isolating the variable",
      "Arithmetic -> Division -> Dividing integers")),
    ("A right triangle has legs 6 and 8. Find its hypotenuse and its area.",
     "By the Pythagorean theorem the hypotenuse is sqrt(36 + 64) = 10. The area is (6 * 8) / 2 = 24.",
     ("Geometry -> Right triangles -> Pythagorean theorem",
      "Geometry -> Area -> Area of a triangle")),
    ("Two fair dice are rolled. What is the probability that the sum is 7?",
     "There are 36 equally likely outcomes. Six of them sum to 7: (1,6), (2,5), (3,4), (4,3), (5,2), (6,1). "
     "The probability is 6/36 = 1/6.",
     ("Counting and probability -> Counting -> Listing favourable outcomes",
      "Counting and probability -> Probability -> Probability as a ratio of outcomes",
      "Arithmetic -> Fractions -> Simplifying fractions")),
)


def _user_turn(problem: str, solution: str) -> str:
    return f"{INSTRUCTIONS}\n\nProblem:\n{problem}\n\nSolution:\n{solution}\n\nSkill chains:"


def conversation(question: str, response: str | None, max_chars: int) -> Conversation:
    """The few-shot turns, then this item: its problem, and its solution (the text after a
    reasoning block, as annotate shows it), each cut to ``max_chars`` characters."""
    turns: Conversation = []
    for problem, solution, chains in EXAMPLES:
        turns.append({"role": "user", "content": _user_turn(problem, solution)})
        turns.append({"role": "assistant", "content": "\n".join(chains)})
    problem = item_text(question, None, max_chars)
    solution = item_text("", response, max_chars) if response else "(no solution given)"
    turns.append({"role": "user", "content": _user_turn(problem, solution)})
    return turns


# Editing the instructions or the examples asks every item again: their hash is in every cache key.
PROMPT_VERSION = f"tree-chains-v1@{sha256_text(repr((INSTRUCTIONS, EXAMPLES)))[:12]}"
