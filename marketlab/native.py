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
from collections.abc import Callable
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


def takes_in_order(cls: type, names: tuple[str, ...]) -> bool:
    """Whether ``cls`` takes by position exactly the values a compiled function names in
    ``names``, in that order (a msgspec Struct's, NamedTuple's or dataclass's
    ``__match_args__``): then the compiled values go straight to ``cls``. The compiled side
    declares its order; this side checks it, so neither mirrors the other."""
    return tuple(getattr(cls, "__match_args__", ())) == names


def by_name(cls: type[T], names: tuple[str, ...]) -> Callable[..., T]:
    """An adapter making ``cls`` of values given in the order of ``names``, handed over by
    name: for a class that does not take them in that order (see :func:`takes_in_order`)."""

    def make(*given: Any) -> T:
        return cls(**dict(zip(names, given, strict=True)))

    return make


def maker(cls: type, names: tuple[str, ...]) -> Callable[..., Any]:
    """What makes ``cls`` of a compiled reader's values, given in the order of ``names``:
    ``cls`` itself where it takes them so (:func:`takes_in_order`: no call in between), else
    the adapter handing them over by name (:func:`by_name`)."""
    return cls if takes_in_order(cls, names) else by_name(cls, names)
