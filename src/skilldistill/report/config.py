"""The report's settings: the recipe's ``report:`` section, and the default standard error
the samples-needed table aims at (light: pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TARGET_SE = 0.01  # sampling standard error (1 pp) the "samples needed" table aims at


class ReportConfig(BaseModel):
    """Which arms the report compares (the recipe's ``report:`` section)."""

    model_config = ConfigDict(extra="forbid")

    baseline: str | None = Field(None, description="Arm the deltas are taken against (default: the first arm).")
    method: str | None = Field(None, description="Arm the report's verdict is about (default: the last arm).")
    one_shot: str | None = Field(None, description="One-round arm each closed-loop arm is compared against at the "
                                 "same budget (default: the verdict's arm when it runs one round).")
