"""The compiled hot path (``marketlab._native``) when it was built, else None.

Each compiled function has a pure-Python twin beside its caller, used when the extension is
missing (no compiler at install time) or when ``MARKETLAB_PURE_PYTHON=1`` asks for it (to compare
the two). Both work on the same objects, so which one ran never shows in the data.
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("MARKETLAB_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from marketlab import _native
    except ImportError:
        return None
    return _native


native = _load()
