"""ccxt's async client of a venue, loaded alone: the other exchanges' modules stay unloaded,
nothing is left in place of ccxt's packages, a later ``import ccxt.async_support`` gets the whole
package with the very classes loaded before, and a narrow import that fails falls back to the
whole package.

Each check runs in a fresh interpreter (``sys.modules`` is what is under test) with the real
ccxt installed here."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

VENUES = ["binance", "okx", "bybit", "coinbase"]

PRELUDE = """
import json, sys, threading
from marketlab.stream.ccxt_clients import ccxt_errors, ccxt_exchange

def ccxt_loaded():
    return sorted(m for m in sys.modules if m == "ccxt" or m.startswith("ccxt."))
"""


def run(script: str) -> dict:
    """``script`` run after :data:`PRELUDE` in a new interpreter; the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_venues_load_alone_and_a_later_import_of_ccxt_gets_the_same_classes() -> None:
    seen = run(
        f"""
        venues = {VENUES!r}
        start = threading.Barrier(2 * len(venues))
        got = {{}}

        def load(name, slot):  # two threads per venue, all at once
            start.wait()
            got[(name, slot)] = ccxt_exchange(name)

        threads = [threading.Thread(target=load, args=(n, s)) for n in venues for s in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        classes = {{n: got[(n, 0)] for n in venues}}
        errors = ccxt_errors()
        before = ccxt_loaded()
        ids = [cls().id for cls in classes.values()]

        import ccxt.async_support
        import ccxt

        print(json.dumps({{
            "both_threads_same": all(got[(n, 0)] is got[(n, 1)] for n in venues),
            "before": before,
            "ids": ids,
            "package_file": ccxt.__file__,
            "async_file": ccxt.async_support.__file__,
            "kraken_listed": "kraken" in ccxt.exchanges,
            "kraken_class": isinstance(ccxt.async_support.kraken, type),
            "same_classes": [getattr(ccxt.async_support, n) is classes[n] for n in venues],
            "same_errors": [
                ccxt.BadSymbol is errors.BadSymbol,
                ccxt.async_support.BadRequest is errors.BadRequest,
                ccxt.BaseError is errors.BaseError,
                issubclass(ccxt.async_support.binance, ccxt.async_support.Exchange),
            ],
        }}))
        """
    )
    before = set(seen["before"])
    assert seen["both_threads_same"]
    assert seen["ids"] == VENUES  # real clients of those venues
    # nothing stands in for ccxt's packages once the venues are loaded
    assert "ccxt" not in before and "ccxt.async_support" not in before
    # the four venues' async modules and abstract APIs, no other exchange's, sync or async
    loaded_async = {m for m in before if m.startswith("ccxt.async_support.")}
    assert {m for m in loaded_async if not m.startswith("ccxt.async_support.base")} == {
        f"ccxt.async_support.{n}" for n in VENUES
    }
    assert {m for m in before if m.startswith("ccxt.abstract.")} == {
        f"ccxt.abstract.{n}" for n in VENUES
    }
    for absent in ("ccxt.kraken", "ccxt.async_support.kraken", "ccxt.binance", "ccxt.okx"):
        assert absent not in before, absent
    # a later import runs ccxt's own __init__: the whole package, with the same objects
    assert seen["package_file"].endswith("ccxt/__init__.py")
    assert seen["async_file"].endswith("ccxt/async_support/__init__.py")
    assert seen["kraken_listed"] and seen["kraken_class"]
    assert seen["same_classes"] == [True] * len(VENUES)
    assert seen["same_errors"] == [True] * 4


def test_ccxt_already_imported_is_used_as_it_is() -> None:
    seen = run(
        """
        import ccxt  # the sync half, in full: ccxt.async_support is not imported yet
        package = sys.modules["ccxt"]
        okx = ccxt_exchange("okx")
        loaded = ccxt_loaded()
        import ccxt.async_support
        print(json.dumps({
            "package_kept": sys.modules["ccxt"] is package,
            "errors_are_the_package's": ccxt_errors().BadSymbol is ccxt.BadSymbol,
            "async_kraken_loaded": "ccxt.async_support.kraken" in loaded,
            "same_class": ccxt.async_support.okx is okx,
        }))
        """
    )
    assert seen == {
        "package_kept": True,
        "errors_are_the_package's": True,
        "async_kraken_loaded": False,  # only the async module of the venue asked for
        "same_class": True,
    }


def test_a_narrow_import_that_fails_falls_back_to_the_whole_package() -> None:
    """As if a ccxt release imported something more from its package: the async base fails to
    import while the stand-in is there (and imports once the real package is)."""
    seen = run(
        """
        import importlib.abc, logging

        records = []
        logging.basicConfig(level=logging.DEBUG, handlers=[logging.NullHandler()])
        logging.getLogger("marketlab.stream.ccxt_clients").addHandler(
            type("Keep", (logging.Handler,), {"emit": lambda self, r: records.append(r)})()
        )

        class NeedsThePackage(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                package = sys.modules.get("ccxt")
                if name == "ccxt.async_support.base.exchange" and not hasattr(package, "exchanges"):
                    raise ImportError("cannot import name 'exchanges' from 'ccxt'")
                return None

        sys.meta_path.insert(0, NeedsThePackage())
        binance = ccxt_exchange("binance")
        package, async_package = sys.modules["ccxt"], sys.modules["ccxt.async_support"]
        print(json.dumps({
            "whole_package": package.__file__.endswith("ccxt/__init__.py")
            and "kraken" in package.exchanges,
            "same_class": async_package.binance is binance,
            "errors": ccxt_errors().BadRequest is async_package.BadRequest,
            "logged": [(r.levelname, r.getMessage()) for r in records],
        }))
        """
    )
    assert seen["whole_package"] and seen["same_class"] and seen["errors"]
    [(level, message)] = seen["logged"]
    assert level == "DEBUG"
    assert "ccxt.async_support.binance" in message and "whole package" in message


def test_a_venue_ccxt_does_not_have_is_refused_by_name_and_leaves_no_stand_in() -> None:
    seen = run(
        """
        try:
            ccxt_exchange("nosuchvenue")
            refused = None
        except ValueError as exc:
            refused = str(exc)
        package = sys.modules.get("ccxt")
        print(json.dumps({
            "refused": refused,
            "package": getattr(package, "__file__", None),
            "binance_after": ccxt_exchange("binance").__name__,
        }))
        """
    )
    assert seen["refused"] is not None and "'nosuchvenue'" in seen["refused"]
    assert seen["package"] is not None and seen["package"].endswith("ccxt/__init__.py")
    assert seen["binance_after"] == "binance"
