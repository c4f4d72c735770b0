"""ccxt's async client of one venue, loaded without the other hundred.

ccxt's package ``__init__`` (and ``ccxt.async_support``'s) imports every exchange module it
ships, sync and async (104 of them in 4.5), so ``import ccxt.async_support`` costs a process
about 93 MB of resident memory (ccxt issue #29573, open: "`import ccxt` ... imports all 104
exchange modules", 67 MB measured by its reporter for the sync half alone). A collector talks
to one to four venues. Loading binance, okx, bybit and coinbase's modules alone costs about
46 MB in a bare interpreter, 19 MB beside what a collector loads anyway, most of it ccxt's base
(requests, urllib3, cryptography, which its base exchange imports at its top).

How: a venue's module (``ccxt/async_support/binance.py``) imports only ``ccxt.base.*``,
``ccxt.abstract.<venue>`` and ``ccxt.async_support.base.*``, and those import from the package
itself nothing but what its ``__init__`` re-exports from ``ccxt.base`` (the errors,
``Exchange``, ``Precise``, the ``decimal_to_precision`` names; ``async_support/base/ws``
does ``from ccxt import Exchange, NetworkError, RequestTimeout``). So for the length of that
one import, a bare stand-in for the package ``ccxt`` (and ``ccxt.async_support``) sits in
``sys.modules``: it has the real package's directory as ``__path__``, so Python finds the
submodules where they are, and answers those names from ``ccxt.base``. Then the stand-ins
are taken out again: the submodules stay loaded, and a later ``import ccxt`` or
``import ccxt.async_support`` (a user's, in a notebook) runs ccxt's own ``__init__``, which
finds them loaded and binds the very same classes (``ccxt.async_support.binance`` is the class
loaded here, ``ccxt.BadSymbol`` the error caught here). One difference is left: that package
has no attribute ``abstract`` (``import ccxt.abstract.binance`` still works), as Python binds a
submodule to its package only when it first loads it.

It relies on that layout. Should a ccxt release import anything else from the package, the
narrow import fails: the stand-ins are removed, a debug line says so, and the whole package is
imported as before (more memory, same behaviour). Where ccxt is already imported in full it is
simply used. The stand-ins are only ever in ``sys.modules`` under :data:`_LOCK`, so two threads
of this process loading venues never see each other's; code that imports ccxt itself (not
through here) while another thread is inside the narrow import could see a stand-in, which is
why everything of marketlab that needs ccxt comes through here.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
import types

log = logging.getLogger(__name__)

_LOCK = threading.Lock()

# What ccxt's package __init__ re-exports from ccxt.base, beside the errors and the
# decimal_to_precision names (both listed in their modules' __all__).
_PACKAGE_NAMES = {"Exchange": "ccxt.base.exchange", "Precise": "ccxt.base.precise"}
_PACKAGE_MODULES_WITH_ALL = ("ccxt.base.errors", "ccxt.base.decimal_to_precision")


def ccxt_exchange(name: str) -> type:
    """ccxt's async client class of the venue ``name`` (``"binance"``, ``"okx"``, ...), with
    that venue's module loaded and no other exchange's."""
    module = _load(f"ccxt.async_support.{name}")
    if module is None:  # the narrow import failed: the whole package is loaded
        full = sys.modules["ccxt.async_support"]
        found = getattr(full, name, None)
        if not isinstance(found, type):
            raise ValueError(f"ccxt {getattr(full, '__version__', '?')} has no exchange {name!r}")
        return found
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ValueError(f"ccxt's module {module.__name__} defines no class {name!r}")
    return cls


def ccxt_errors() -> types.ModuleType:
    """``ccxt.base.errors`` (``BaseError``, ``BadSymbol``, ``BadRequest``, ...), the classes
    ``ccxt`` itself exports, loaded without the package."""
    module = _load("ccxt.base.errors")
    return module if module is not None else sys.modules["ccxt.base.errors"]


def _load(module_name: str) -> types.ModuleType | None:
    """``module_name`` (a submodule of ccxt) imported with stand-ins for the packages not yet
    imported; None when that failed and the whole of ccxt was imported instead."""
    with _LOCK:
        loaded = sys.modules.get(module_name)
        if loaded is not None:
            return loaded
        stand_ins: list[types.ModuleType] = []
        try:
            _put_stand_ins(stand_ins)
            return importlib.import_module(module_name)
        except Exception as exc:  # ccxt's layout changed, or no such venue: see below
            failure: Exception = exc
        finally:
            for package in stand_ins:
                if sys.modules.get(package.__name__) is package:
                    del sys.modules[package.__name__]
        log.debug(
            "ccxt: importing %s alone failed (%s: %s); importing the whole package",
            module_name,
            type(failure).__name__,
            failure,
        )
        importlib.import_module("ccxt.async_support")
        return None


def _put_stand_ins(put: list[types.ModuleType]) -> None:
    """Bare packages in ``sys.modules`` for ``ccxt`` and ``ccxt.async_support`` where they are
    not imported yet, each added to ``put`` as it goes in."""
    for name in ("ccxt", "ccxt.async_support"):
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)  # ccxt.async_support: under ccxt's __path__
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"no package {name}", name=name)
        package = types.ModuleType(name, "A stand-in while one venue of ccxt loads.")
        package.__path__ = list(spec.submodule_search_locations)
        if name == "ccxt":
            package.__getattr__ = _package_name  # type: ignore[method-assign]
        sys.modules[name] = package
        put.append(package)


def _package_name(name: str) -> object:
    """A name the stand-in for ``ccxt`` is asked for (``from ccxt import NetworkError``): what
    ccxt's ``__init__`` binds it to, from ``ccxt.base``."""
    if name in _PACKAGE_NAMES:
        return getattr(importlib.import_module(_PACKAGE_NAMES[name]), name)
    if not name.startswith("__"):
        for source in _PACKAGE_MODULES_WITH_ALL:
            module = importlib.import_module(source)
            if name in getattr(module, "__all__", ()):
                return getattr(module, name)
    raise AttributeError(f"module 'ccxt' (a stand-in while one venue loads) has no {name!r}")
