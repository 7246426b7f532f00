"""The recipe's ``loop`` section (``LoopConfig``): how a closed-loop arm splits its budget over
rounds and continues training (see :mod:`skilldistill.orchestration.closed_loop`). Light:
pydantic only, so the recipe loads without the loop's code."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LoopConfig(BaseModel):
    """How a closed-loop arm splits its budget and continues training (see docs/closed_loop.md)."""

    model_config = ConfigDict(extra="forbid")

    budgets: list[int] | None = Field(
        None, description="Items per round (their sum is the arm's budget); default: equal slices, the remainder "
        "to the first rounds.")
    replay: bool = Field(False, description="Round r trains on every slice so far (true) or on its own slice (false).")
    later_rounds_lr_scale: float = Field(
        1.0, gt=0, le=10, description="Rounds > 1 train at the train section's learning_rate times this (each "
        "round continues from the one before with a fresh schedule: below 1, later rounds move the model less).")
    profile_sample: int | None = Field(
        None, ge=1, description="Items (stratified by leaf) the trained student answers before rounds > 1; "
        "None: every pool item not yet selected.")
    profile_sample_seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> LoopConfig:
        if self.budgets is not None and (not self.budgets or any(b < 1 for b in self.budgets)):
            raise ValueError("loop.budgets: one positive number of items per round")
        return self

    def round_learning_rate(self, learning_rate: float, round_number: int) -> float:
        """The learning rate of round ``round_number`` (1-based)."""
        return learning_rate if round_number == 1 else learning_rate * self.later_rounds_lr_scale

    def round_budgets(self, total: int, rounds: int) -> list[int]:
        """The items each round selects."""
        if self.budgets is not None:
            if len(self.budgets) != rounds:
                raise ValueError(f"loop.budgets has {len(self.budgets)} entries for {rounds} rounds")
            if sum(self.budgets) != total:
                raise ValueError(f"loop.budgets sums to {sum(self.budgets)}, not the budget {total}")
            return list(self.budgets)
        if total < rounds:
            raise ValueError(f"a budget of {total} cannot give each of {rounds} rounds an item")
        base, extra = divmod(total, rounds)
        return [base + (1 if r < extra else 0) for r in range(rounds)]


__all__ = ["LoopConfig"]
