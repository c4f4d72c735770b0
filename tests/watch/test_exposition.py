"""/metrics on a real uvicorn server over a real Lab collecting from the simulator, read with
prometheus-client's own parser: the families the collector's counters feed, with bounded
labels, counters that only grow, and the process' own figures."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from marketlab.lab import Lab
from marketlab.server import PREFIX, create_app
from marketlab.server.runner import ServerThread
from marketlab.sim import SimExchange
from marketlab.watch import Watch
from marketlab.watch.metrics import HELP
from tests.conftest import START
from tests.lab.test_lab import FAST, wait_for

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
STREAMS = {"trade", "ticker", "depth", "kline_1m"}


@dataclass
class Served:
    sim: SimExchange
    lab: Lab
    url: str

    def scrape(self) -> dict[str, list[Sample]]:
        answer = httpx.get(self.url + "/metrics", timeout=10)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=")
        families = text_string_to_metric_families(answer.text)
        return {f.name: list(f.samples) for f in families}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("metrics") / "m.sqlite"
    with SimExchange(SYMBOLS, speed=60, seed=17, start_time=START) as sim:
        lab = Lab(
            SYMBOLS,
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
            db=db,
            alerts=Watch(interval_s=0.2),
            **{**FAST, "idle_timeout": 120.0},
        )
        lab.start()
        lab.wait_ready(30)
        with ServerThread(create_app(lab)) as server:
            yield Served(sim, lab, server.url)
        lab.stop()


def by_labels(samples: list[Sample], name: str) -> dict[tuple[str, ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.name == name}


def test_streams_are_counted_per_venue_symbol_and_stream(served):
    before = served.lab.status()
    metrics = served.scrape()
    after = served.lab.status()
    messages = metrics["marketlab_messages_received"]
    assert {s.name for s in messages} == {"marketlab_messages_received_total"}
    seen = {(s.labels["venue"], s.labels["symbol"], s.labels["stream"]) for s in messages}
    assert seen == {("binance", sym, stream) for sym in SYMBOLS for stream in STREAMS}
    for s in messages:  # read between two status tables: within their counts
        row = (s.labels["symbol"], s.labels["stream"])
        assert before.loc[row, "messages"] <= s.value <= after.loc[row, "messages"]
        assert s.value > 0
    ages = by_labels(
        metrics["marketlab_stream_last_message_age_seconds"],
        "marketlab_stream_last_message_age_seconds",
    )
    assert len(ages) == len(SYMBOLS) * len(STREAMS)
    assert all(0 <= age < 30 for age in ages.values())
    synced = metrics["marketlab_book_synced"]
    assert {s.labels["symbol"]: s.value for s in synced} == dict.fromkeys(SYMBOLS, 1.0)


def test_counters_only_grow_between_scrapes(served):
    first = served.scrape()
    time.sleep(0.5)
    second = served.scrape()
    for family in ("marketlab_messages_received", "marketlab_store_written"):
        name = family + "_total"
        a, b = by_labels(first[family], name), by_labels(second[family], name)
        assert a.keys() == b.keys()
        assert all(b[k] >= a[k] for k in a)
    received = "marketlab_messages_received_total"
    assert sum(by_labels(second["marketlab_messages_received"], received).values()) > sum(
        by_labels(first["marketlab_messages_received"], received).values()
    )


def test_venue_store_process_and_alert_families(served):
    metrics = served.scrape()
    venue = {s.name: s for f in ("marketlab_connected", "marketlab_reconnects") for s in metrics[f]}
    assert venue["marketlab_connected"].value == 1.0
    assert venue["marketlab_connected"].labels == {"venue": "binance"}
    assert venue["marketlab_reconnects_total"].value == served.lab.summary()["reconnects"]
    store_failing = metrics["marketlab_store_failing"][0]
    assert store_failing.value == 0.0
    wait_for(lambda: served.scrape()["marketlab_store_written"][0].value > 0, 20, "a stored candle")
    assert metrics["process_resident_memory_bytes"][0].value > 10e6
    assert metrics["process_open_fds"][0].value > 0
    assert "marketlab_alerts_raised" in metrics
    lag = metrics["marketlab_trade_lag_seconds"]
    buckets = [s for s in lag if s.name == "marketlab_trade_lag_seconds_bucket"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf"
    count = next(s.value for s in lag if s.name == "marketlab_trade_lag_seconds_count")
    assert count == counts[-1] > 0


def test_bytes_resyncs_and_rest_weight(served):
    """The venue's bytes (growing), each book's resyncs (one more after the venue skips a
    book event), the REST weight used within the limit."""
    messages = sum(c["messages"] for c in served.lab.summary()["connections"])
    first = served.scrape()
    (received,) = first["marketlab_received_bytes"]
    assert received.labels == {"venue": "binance"}
    # a frame is at least a few dozen bytes: the bytes outgrow the messages by far
    assert received.value > 20 * messages > 0
    resyncs = "marketlab_book_resyncs_total"
    before = {
        dict(k)["symbol"]: v for k, v in by_labels(first["marketlab_book_resyncs"], resyncs).items()
    }
    assert set(before) == set(SYMBOLS)
    served.sim.skip_depth_updates(1, "ETHUSDT", venue="binance")

    def resynced() -> bool:
        now = by_labels(served.scrape()["marketlab_book_resyncs"], resyncs)
        return {dict(k)["symbol"]: v for k, v in now.items()}["ETHUSDT"] > before["ETHUSDT"]

    wait_for(resynced, 20, "a resync of the ETHUSDT book counted")
    wait_for(lambda: served.lab.status().loc[("ETHUSDT", "depth"), "book"] == "synced", 20, "sync")
    second = served.scrape()
    assert second["marketlab_received_bytes"][0].value > received.value
    used = second["marketlab_rest_weight_used"][0]
    limit = second["marketlab_rest_weight_limit"][0]
    assert used.labels == limit.labels == {"venue": "binance"}
    assert limit.value == 6000  # Binance's spot REQUEST_WEIGHT per minute
    assert 0 <= used.value <= limit.value
    assert second["marketlab_rest_forbidden"][0].value == 0


def test_labels_come_from_bounded_sets(served):
    """Label values are what the Lab was asked for (venues, symbols, streams, rules, the
    histogram's bounds): never a price, an id or an error text."""
    allowed = {
        "venue": {"binance"},
        "symbol": set(SYMBOLS),
        "stream": STREAMS,
        "le": None,  # the histogram's fixed bounds
        "rule": None,  # the rule names (marketlab.watch.RULES)
    }
    from marketlab.watch import RULES

    allowed["rule"] = set(RULES)
    for name, samples in served.scrape().items():
        for s in samples:
            for label, value in s.labels.items():
                assert label in allowed, (name, label)
                if allowed[label] is not None:
                    assert value in allowed[label], (name, label, value)


def test_alerts_endpoint_answers_the_lab_s_alerts(served):
    rows = httpx.get(served.url + PREFIX + "/alerts", timeout=10).json()
    assert isinstance(rows, list)
    assert rows == served.lab.watch.rows()  # the same book the frame reads


DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "marketlab-collector.json"
METRIC = re.compile(r"\b(?:marketlab|process)_[a-z0-9_]+")


def sample_names(family: str, kind: str) -> set[str]:
    """The names of a family's samples in the text format (what a query names)."""
    if kind == "counter":
        return {family + "_total"}
    if kind == "histogram":
        return {family + suffix for suffix in ("_bucket", "_sum", "_count")}
    return {family}


def test_the_catalogue_is_what_the_exposition_has(served):
    """Every family of metrics.HELP is in a scrape of a Lab with a store and alert rules (the
    bus's only with a bus), and nothing is exposed that the catalogue lacks."""
    scraped = {n for n in served.scrape() if n.startswith("marketlab_")}
    catalogue = {name.removesuffix("_total") for name in HELP}
    assert scraped == {n for n in catalogue if not n.startswith("marketlab_bus_")}


def test_every_dashboard_query_names_an_exposed_metric(served):
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert len(queries) > 20
    answer = httpx.get(served.url + "/metrics", timeout=10).text
    exposed = {
        name
        for family in text_string_to_metric_families(answer)
        for name in sample_names(family.name, family.type)
    }
    # the bus's families appear only on a Lab that publishes: named from the catalogue
    exposed |= {name for name in HELP if name.startswith("marketlab_bus_")}
    named = {m for q in queries for m in METRIC.findall(q)}
    assert named - exposed == set()
    assert {"marketlab_messages_received_total", "marketlab_trade_lag_seconds_bucket"} <= named


def test_bytes_received_keep_growing_across_a_rollover(served):
    """Binance announces a shutdown: the feed rolls over to a new connection and retires the
    old one; the venue's bytes counter keeps what the old one took (a counter never falls)."""
    names = {c["name"] for c in served.lab.summary()["connections"]}
    before = served.scrape()["marketlab_received_bytes"][0].value
    served.sim.inject("shutdown", venue="binance")

    def rolled_over() -> bool:
        now = {c["name"] for c in served.lab.summary()["connections"]}
        return bool(now) and not now & names

    wait_for(rolled_over, 30, "every connection replaced and the old ones retired")
    summary = served.lab.summary()
    after = served.scrape()["marketlab_received_bytes"][0].value
    # the new connections opened after ``before``: all they took comes on top of it
    assert (
        after
        >= summary["bytes_received"]
        >= before + sum(c["bytes_received"] for c in summary["connections"])
    )
    wait_for(lambda: served.scrape()["marketlab_received_bytes"][0].value > after, 10, "new bytes")
