"""The one place that picks compiled or pure Python for the whole package.

The compiled part (``marketlab._native``, built from ``csrc/``) is used when it was built and
``MARKETLAB_PURE_PYTHON=1`` does not ask for the pure-Python twins (to compare the two). Each
compiled piece has a pure-Python twin beside its caller, which asks for it by name here:
``compiled("Side", BookSide)``. Both work on the same objects, so which one ran never shows
in the data.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, TypeVar, overload

T = TypeVar("T")


def _load() -> ModuleType | None:
    if os.environ.get("MARKETLAB_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("marketlab._native")
    except ImportError:
        return None


_NATIVE = _load()

COMPILED: bool = _NATIVE is not None
"""Whether the compiled part is in use (built, and not turned off)."""


@overload
def compiled(name: str) -> Any: ...
@overload
def compiled(name: str, python_twin: T) -> T: ...
def compiled(name: str, python_twin: Any = None) -> Any:
    """The compiled object ``name`` when the compiled part is in use and has it (the
    recordings' thread and decompressor are built only where POSIX threads and ``dlopen``
    are), else ``python_twin`` (None for a piece that has no twin: its caller then goes another
    way)."""
    return python_twin if _NATIVE is None else getattr(_NATIVE, name, python_twin)
