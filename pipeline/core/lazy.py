"""Package facades that import on first use (PEP 562), so `import pipeline` or a stage's package costs
nothing until one of its names is used: LightGBM, scikit-learn and matplotlib load only where needed."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def attach(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` for `package`, whose public names live in the modules that
    `exports` maps them to, relative to the package: {"train": ".run"}, or {"run_train": ".train.run:train"}
    when the public name differs from the module's."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = exports[name].partition(":")
        return getattr(importlib.import_module(module, package), attribute or name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
