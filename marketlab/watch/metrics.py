"""The Prometheus exposition of a Lab: what the collector already counts (``lab.status()``,
``lab.summary()``, the watch's alerts and lag histogram) read at scrape time by one custom
collector, so nothing is counted twice and the hot path makes no Prometheus call.

Names follow Prometheus' conventions: a unit in the name, ``_total`` for counters, and labels
from bounded sets only (``venue``, ``symbol``, ``stream``, ``rule``: what the Lab was asked to
collect and the rules it runs, never a value from the market).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import pandas as pd
from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from marketlab.watch.rules import bus_working

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LabCollector",
    "LagHistogram",
    "MetricsServer",
    "exposition",
    "lab_registry",
    "serve_metrics",
]

# Every metric family this module exposes (without the ``_total``/``_bucket`` suffixes the
# text format adds), with its help text: the dashboard test checks its queries against these.
HELP: dict[str, str] = {
    "marketlab_up": "1 while the Lab's collector runs",
    "marketlab_messages_received_total": "Messages taken per venue, symbol and stream",
    "marketlab_stream_last_message_age_seconds": "Seconds since the stream's last message",
    "marketlab_book_synced": "1 while the local order book is in sync with the venue's",
    "marketlab_book_resyncs_total": "Times the local order book lost sync and was fetched anew",
    "marketlab_backfilled_total": "Candles or trades fetched over REST that the stream missed",
    "marketlab_gaps_total": "Gaps detected in a stream (candles or trade ids)",
    "marketlab_trade_holes": "Trade-id holes the backfill could not fill",
    "marketlab_trades_missed_total": "Trades that passed the rolling buffer unread",
    "marketlab_connected": "1 while every connection of the venue is up",
    "marketlab_connections": "WebSocket connections of the venue",
    "marketlab_reconnects_total": "Reconnects over every connection of the venue",
    "marketlab_received_bytes_total": "Bytes of WebSocket frames taken from the venue",
    "marketlab_bad_frames_total": "Frames from the venue that could not be read",
    "marketlab_rest_requests_total": "REST requests sent to the venue",
    "marketlab_rest_rate_limited_total": "REST answers 429 (rate limited) or a ban (418; "
    "Bybit's 403)",
    "marketlab_rest_forbidden_total": "REST answers 403 (Bybit's ban, Binance's firewall)",
    "marketlab_rest_weight_used": "REST request weight used in the venue's current window",
    "marketlab_rest_weight_limit": "The venue's REST request weight limit per window",
    "marketlab_failed_over": "1 while the venue's data comes from its fallback venue",
    "marketlab_failovers_total": "Switches to the fallback venue",
    "marketlab_store_written_total": "Candle writes committed to SQLite",
    "marketlab_store_pending_klines": "Candles waiting to be written",
    "marketlab_store_dropped_klines_total": "Candles the store had to let go of",
    "marketlab_store_awaiting_backfill_klines": "Dropped candles not yet fetched again",
    "marketlab_store_failing": "1 while the store cannot write",
    "marketlab_bus_connected": "1 while the bus publisher is connected",
    "marketlab_bus_working": "1 while the bus takes records (publishes acknowledged; a reader "
    "not stale)",
    "marketlab_bus_published_total": "Messages the bus acknowledged",
    "marketlab_bus_held_messages": "Messages held while the bus is unreachable",
    "marketlab_bus_dropped_total": "Messages dropped because the hold was full",
    "marketlab_bus_resent_total": "Held messages sent again after the bus came back",
    "marketlab_alerts_active": "Alerts raised and not yet resolved, per rule",
    "marketlab_alerts_raised_total": "Alerts raised since the start, per rule",
    "marketlab_alert_deliveries_dropped_total": "Alerts a full delivery queue let go of",
    "marketlab_trade_lag_seconds": "Venue trade time to receipt by the collector (each "
    "symbol's newest trade at every look of the alert rules)",
}


class WatchFigures(Protocol):
    """What the exposition reads of the watch, if the Lab has one (:class:`Watch`)."""

    def raised_counts(self) -> Mapping[str, int]: ...

    def active_counts(self) -> Mapping[str, int]: ...

    def dropped_deliveries(self) -> int: ...

    def lag_histograms(self) -> Mapping[str, LagHistogram]: ...


# Bucket bounds of the lag histogram, seconds: a venue's trade reaches a nearby collector in
# milliseconds; seconds mean a slow link, a busy collector or a clock off.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LagHistogram:
    """Counts of lags per bucket (cumulative only when exposed): one ``observe`` is a bisect
    and two additions, cheap enough for every trade."""

    def __init__(self, bounds: tuple[float, ...] = LAG_BUCKETS):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs as Prometheus wants them, ``+Inf`` last."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == math.inf else repr(bound), float(running)))
        return out


class StatusSource(Protocol):
    """What the exposition reads of a Lab (``marketlab.lab.Lab`` has all of it)."""

    exchange: str

    @property
    def running(self) -> bool: ...

    def status(self) -> pd.DataFrame: ...

    @property
    def watch(self) -> Any: ...


def _gauge(name: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, HELP[name], labels=labels)


def _counter(name: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name.removesuffix("_total"), HELP[name], labels=labels)


def _number(value: Any) -> float:
    """A figure of the summary as a float (None, NaN and text count as 0)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return 0.0


class LabCollector:
    """A prometheus-client collector reading a Lab at scrape time (register it in a registry;
    :func:`lab_registry` does, with the process collector beside it)."""

    def __init__(self, lab: StatusSource):
        self.lab = lab

    def describe(self) -> list[Metric]:
        return []  # families depend on what the Lab collects: no checks at registration

    def collect(self) -> Iterator[Metric]:
        lab = self.lab
        yield GaugeMetricFamily("marketlab_up", HELP["marketlab_up"], value=float(lab.running))
        status = lab.status()
        summary: dict[str, Any] = {str(k): v for k, v in status.attrs.items()}
        venues: Mapping[str, Mapping[str, Any]] = summary.get("venues") or {lab.exchange: summary}
        yield from _stream_metrics(status, lab.exchange)
        yield from _venue_metrics(venues)
        yield from _store_and_bus(summary)
        watch = lab.watch
        if watch is not None:
            yield from _watch_metrics(watch)


def _stream_metrics(status: pd.DataFrame, exchange: str) -> Iterator[Metric]:
    labels = ["venue", "symbol", "stream"]
    messages = _counter("marketlab_messages_received_total", labels)
    age = _gauge("marketlab_stream_last_message_age_seconds", labels)
    backfilled = _counter("marketlab_backfilled_total", labels)
    gaps = _counter("marketlab_gaps_total", labels)
    synced = _gauge("marketlab_book_synced", ["venue", "symbol"])
    frame = status.reset_index()
    if "exchange" not in frame.columns:
        frame["exchange"] = exchange
    rows: list[dict[str, Any]] = frame.to_dict("records")  # type: ignore[assignment]
    for row in rows:
        key = [str(row["exchange"]), str(row["symbol"]), str(row["stream"])]
        messages.add_metric(key, _number(row["messages"]))
        if not math.isnan(row["age_s"]):
            age.add_metric(key, float(row["age_s"]))
        backfilled.add_metric(key, _number(row["backfilled"]))
        gaps.add_metric(key, _number(row["gaps"]))
        if row["stream"] == "depth":
            synced.add_metric(key[:2], float(row["book"] == "synced"))
    yield from (messages, age, backfilled, gaps, synced)


def _venue_metrics(venues: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    v = ["venue"]
    connected, connections = _gauge("marketlab_connected", v), _gauge("marketlab_connections", v)
    reconnects = _counter("marketlab_reconnects_total", v)
    bad_frames = _counter("marketlab_bad_frames_total", v)
    requests = _counter("marketlab_rest_requests_total", v)
    limited = _counter("marketlab_rest_rate_limited_total", v)
    failed_over = _gauge("marketlab_failed_over", v)
    failovers = _counter("marketlab_failovers_total", v)
    holes = _gauge("marketlab_trade_holes", ["venue", "symbol"])
    missed = _counter("marketlab_trades_missed_total", ["venue", "symbol"])
    received = _counter("marketlab_received_bytes_total", v)
    forbidden = _counter("marketlab_rest_forbidden_total", v)
    weight_used = _gauge("marketlab_rest_weight_used", v)
    weight_limit = _gauge("marketlab_rest_weight_limit", v)
    resyncs = _counter("marketlab_book_resyncs_total", ["venue", "symbol"])
    for venue, info in venues.items():
        conns = info.get("connections") or []
        received.add_metric([venue], _number(info.get("bytes_received")))
        forbidden.add_metric([venue], _number(info.get("rest_forbidden")))
        weight = info.get("rest_weight")
        if weight is not None:
            weight_used.add_metric([venue], _number(weight[0]))
            weight_limit.add_metric([venue], _number(weight[1]))
        for symbol, n in (info.get("book_resyncs") or {}).items():
            resyncs.add_metric([venue, symbol], _number(n))
        connected.add_metric([venue], float(bool(conns) and all(c["connected"] for c in conns)))
        connections.add_metric([venue], float(len(conns)))
        reconnects.add_metric([venue], _number(info.get("reconnects")))
        bad_frames.add_metric([venue], _number(info.get("bad_frames")))
        requests.add_metric([venue], _number(info.get("rest_requests")))
        limited.add_metric([venue], _number(info.get("rest_rate_limited")))
        failed_over.add_metric([venue], float(bool(info.get("failed_over"))))
        failovers.add_metric([venue], _number(info.get("failovers")))
        for symbol, spans in (info.get("trade_holes") or {}).items():
            holes.add_metric([venue, symbol], float(len(spans)))
        for symbol, n in (info.get("trades_missed") or {}).items():
            missed.add_metric([venue, symbol], _number(n))
    yield from (connected, connections, reconnects, bad_frames, requests, limited)
    yield from (failed_over, failovers, holes, missed)
    yield from (received, forbidden, weight_used, weight_limit, resyncs)


def _store_and_bus(summary: Mapping[str, Any]) -> Iterator[Metric]:
    store = summary.get("store")
    if store:
        yield _value(_counter("marketlab_store_written_total", []), store.get("written"))
        yield _value(_gauge("marketlab_store_pending_klines", []), store.get("pending"))
        yield _value(_counter("marketlab_store_dropped_klines_total", []), store.get("dropped"))
        awaiting = _gauge("marketlab_store_awaiting_backfill_klines", [])
        yield _value(awaiting, store.get("awaiting_backfill"))
        yield _value(_gauge("marketlab_store_failing", []), store.get("state") == "failing")
    bus = summary.get("bus")
    if bus:
        yield _value(_gauge("marketlab_bus_connected", []), bool(bus.get("connected")))
        yield _value(_gauge("marketlab_bus_working", []), bus_working(bus))
        yield _value(_counter("marketlab_bus_published_total", []), bus.get("published"))
        yield _value(_gauge("marketlab_bus_held_messages", []), bus.get("held"))
        yield _value(_counter("marketlab_bus_dropped_total", []), bus.get("dropped"))
        yield _value(_counter("marketlab_bus_resent_total", []), bus.get("resent"))


def _value(family: GaugeMetricFamily | CounterMetricFamily, value: Any) -> Metric:
    family.add_metric([], _number(value))
    return family


def _watch_metrics(watch: WatchFigures) -> Iterator[Metric]:
    active = _gauge("marketlab_alerts_active", ["rule"])
    raised = _counter("marketlab_alerts_raised_total", ["rule"])
    counts = watch.active_counts()
    for rule, n in watch.raised_counts().items():
        raised.add_metric([rule], float(n))
        active.add_metric([rule], float(counts.get(rule, 0)))
    yield from (active, raised)
    yield _value(
        _counter("marketlab_alert_deliveries_dropped_total", []), watch.dropped_deliveries()
    )
    lag = HistogramMetricFamily(
        "marketlab_trade_lag_seconds", HELP["marketlab_trade_lag_seconds"], labels=["venue"]
    )
    for venue, histogram in watch.lag_histograms().items():
        lag.add_metric([venue], histogram.buckets(), histogram.sum)
    yield lag


def lab_registry(lab: StatusSource) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) holding the Lab's collector and
    the process' (resident memory, CPU seconds, open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LabCollector(lab))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format (``CONTENT_TYPE_LATEST``)."""
    return generate_latest(registry)


class MetricsServer:
    """prometheus-client's own HTTP server (a thread) serving one Lab's registry at
    ``/metrics``, for a collector run without the API server."""

    def __init__(self, lab: StatusSource, host: str, port: int):
        self.server, self.thread = start_http_server(port, host, registry=lab_registry(lab))
        self.port = self.server.server_port

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5.0)


def serve_metrics(lab: StatusSource, host: str, port: int) -> MetricsServer:
    """Serve ``lab``'s metrics at ``http://host:port/metrics`` until ``shutdown()``."""
    return MetricsServer(lab, host, port)
