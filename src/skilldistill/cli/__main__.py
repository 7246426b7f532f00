"""``python -m skilldistill.cli``: the same as the ``skilldistill`` command."""

from . import main

main()
