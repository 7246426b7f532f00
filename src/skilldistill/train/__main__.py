"""``python -m skilldistill.train ARGS`` is ``skilldistill train ARGS``: what ``accelerate
launch -m skilldistill.train`` runs on every process (the pipeline launches it so).

The CLI is imported here only: no module of the package imports ``skilldistill.cli``
(which imports every verb, this one included).
"""

from __future__ import annotations

import sys

from ..cli import app


def main(argv: list[str] | None = None) -> None:
    app(args=["train", *(sys.argv[1:] if argv is None else argv)], prog_name="skilldistill")


if __name__ == "__main__":
    main()
