"""The watch a Lab runs beside its collector (``Lab(alerts=Watch(...))``): a thread that
observes the Lab through its public readers every ``interval_s``, hands the observation and
the time to the sans-I/O rules, and delivers what they raise and resolve: the log,
``lab.on_alert`` callbacks, a webhook, ``lab.alerts()``, the API server.

The collector's hot path never calls the watch: trades are read at each look, a batch per
symbol from the Lab's trade columns (those newer than the last look), and summed with numpy,
so the rules cost nothing per trade on the collector's thread."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from marketlab.watch.alerts import COLUMNS, MARKET_RULES, RULES, Alert, AlertBook
from marketlab.watch.metrics import LagHistogram
from marketlab.watch.rules import Observation, Print, Rules, observe
from marketlab.watch.settings import DEFAULTS, AlertSettings
from marketlab.watch.webhook import Webhook

if TYPE_CHECKING:
    from marketlab.lab import Lab

log = logging.getLogger("marketlab.watch")

AlertCallback = Callable[[Mapping[str, Any]], Any]


class Watch:
    """Alert rules over a Lab, with ``settings`` (:class:`AlertSettings`) and any threshold
    given by name on top: ``Watch(silence_s=20, webhook="http://127.0.0.1:9000/alerts")``."""

    def __init__(
        self, settings: AlertSettings | Mapping[str, Any] | None = None, **thresholds: Any
    ):
        if isinstance(settings, Mapping):
            settings = AlertSettings.from_mapping(settings)
        base = settings or DEFAULTS
        self.settings = AlertSettings.from_mapping({**base.as_dict(), **thresholds})
        self.book = AlertBook(self.settings.resolve_after_s, self.settings.recent)
        self.rules = Rules(self.settings)
        self.webhook: Webhook | None = None
        self.failures = 0  # observations that raised (logged; the watch goes on)
        self.steps = 0  # observations made
        self._health_at = -math.inf  # when the Lab's status was last read
        self.step_cpu_s = 0.0  # CPU time the observations took (their thread's)
        self._callbacks: list[AlertCallback] = []
        self._lock = threading.Lock()
        self._newest_ids: dict[tuple[str, str], int] = {}  # the last trade id looked at
        self._lag: dict[str, LagHistogram] = {}
        self._lab: Lab | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- the Lab's hook --------------------------------------------------------------------

    def attach(self, lab: Lab) -> None:
        """Start watching ``lab`` (the Lab calls this when it starts)."""
        if self._thread is not None:
            return
        self._lab = lab
        for venue in lab.exchanges:
            self._lag.setdefault(venue, LagHistogram())
        s = self.settings
        if s.webhook is not None and self.webhook is None:
            self.webhook = Webhook(s.webhook, s.webhook_queue, s.webhook_attempts)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="marketlab-watch", daemon=True)
        self._thread.start()

    def detach(self) -> None:
        """Stop watching (the Lab calls this when it stops); alerts stay readable."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(5.0)
        if self.webhook is not None:
            self.webhook.close()
            self.webhook = None

    def on_alert(self, callback: AlertCallback) -> Callable[[], None]:
        """Call ``callback(alert)`` (a dict: :meth:`Alert.as_dict`) for every alert raised and
        resolved, on the watch's thread; returns a function that unsubscribes."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def frame(self) -> pd.DataFrame:
        """Active alerts first, then recently resolved ones (newest first)."""
        with self._lock:
            rows = self.book.rows()
        df = pd.DataFrame(rows, columns=COLUMNS)
        for column in ("time", "resolved_at"):
            df[column] = pd.to_datetime(df[column].astype("float64"), unit="s", utc=True)
        return df

    def rows(self) -> list[dict[str, Any]]:
        """:meth:`frame` as plain dicts (epoch seconds), for servers."""
        with self._lock:
            return self.book.rows()

    # --- observing -------------------------------------------------------------------------

    def _trades_since_last_look(
        self, lab: Lab, pairs: Iterable[tuple[str, str]]
    ) -> tuple[list[Print], dict[tuple[str, str], float]]:
        """Of each (venue, symbol)'s trades since the last look: the highest and the lowest
        (only they can lie outside the book) and the volume, from the Lab's trade columns in
        one numpy pass; the lag of the newest one is counted. What came before a symbol's
        first look is no news (the rules start from there)."""
        prints: list[Print] = []
        volumes: dict[tuple[str, str], float] = {}
        for key in pairs:
            venue, symbol = key
            seen = self._newest_ids.get(key)
            try:
                taken = lab.trades_newer_than(symbol, -1 if seen is None else seen, venue)
            except KeyError:  # a price without trades of its own (a symbol's fallback venue)
                continue
            if taken is None:
                continue
            columns, newest = taken
            ids = columns["trade_id"]
            if not len(ids):
                continue
            self._newest_ids[key] = int(ids[-1])
            start = len(ids) if seen is None else int(np.searchsorted(ids, seen, side="right"))
            if start >= len(ids):
                continue
            price, qty, time_ms = (columns[c][start:] for c in ("price", "qty", "time"))
            volumes[key] = float(qty.sum())
            high, low = int(price.argmax()), int(price.argmin())
            for i in (high,) if high == low else (high, low):
                prints.append(
                    Print(venue, symbol, float(price[i]), float(qty[i]), float(time_ms[i]))
                )
            if newest is not None and newest[1] >= time_ms[-1]:
                _price, trade_time, received, _source = newest
                self._lag[venue].observe(max(0.0, received - trade_time / 1000))
        return prints, volumes

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.interval_s):
            began = time.thread_time()
            try:
                self.step(time.time())
            except Exception:
                self.failures += 1
                log.exception("alert rules failed (they go on at the next interval)")
            self.steps += 1
            self.step_cpu_s += time.thread_time() - began

    def step(self, now: float) -> list[Alert]:
        """Observe the Lab once at ``now`` and deliver what the rules raise and resolve."""
        lab = self._lab
        if lab is None:
            raise RuntimeError("the watch is not attached to a Lab")
        rows = lab.price_rows()
        pairs = [(str(row["exchange"]), str(row["symbol"])) for row in rows]
        prints, volumes = self._trades_since_last_look(lab, pairs)
        divergence = None
        if len(lab.exchanges) > 1:
            try:
                divergence = lab.divergence()
            except ValueError:  # venues quoting in different assets: nothing to compare
                divergence = None
        status = None
        if now - self._health_at >= self.settings.health_interval_s:
            self._health_at = now
            status = lab.status()
        seen = observe(status, lab.exchange, rows, prints, divergence, volumes)
        return self.evaluate(now, seen)

    def evaluate(self, now: float, seen: Observation) -> list[Alert]:
        """Run the rules on one observation and deliver the alerts raised and resolved."""
        with self._lock:
            judged = RULES if seen.health else MARKET_RULES
            events = self.book.update(now, self.rules.evaluate(now, seen), judged)
        for alert in events:
            self._deliver(alert)
        return events

    def _deliver(self, alert: Alert) -> None:
        if alert.state == "active":
            log.warning("alert %s: %s", alert.rule, alert.message)
        else:
            log.info("resolved %s: %s", alert.rule, alert.message)
        payload = alert.as_dict()
        if self.webhook is not None:
            self.webhook.send(payload)
        for callback in list(self._callbacks):
            try:
                callback(payload)
            except Exception:
                log.exception("alert callback %r failed", callback)

    # --- what the metrics read ------------------------------------------------------------

    def raised_counts(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self.book.raised)

    def active_counts(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self.book.active_counts())

    def dropped_deliveries(self) -> int:
        return self.webhook.dropped if self.webhook is not None else 0

    def lag_histograms(self) -> Mapping[str, LagHistogram]:
        return dict(self._lag)
