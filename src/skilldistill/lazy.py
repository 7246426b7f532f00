"""Lazy re-exports for package ``__init__`` files (PEP 562), so that importing a package, or a
light module inside it such as its ``config``, never imports its heavy stage modules.

    from ..lazy import lazy_exports
    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"run_select": ".stage", "SelectConfig": ".config"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``: ``exports`` maps a public
    name to the module (relative to ``package`` or absolute) that defines it."""

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook's name)
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # later lookups skip this hook
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(exports) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__, list(exports)
