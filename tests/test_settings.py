"""Settings are refused when given, naming the argument, the value and what would work; what
stops collection later reaches the user; the venue's return ends the backoff at once."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import marketlab as ml
from marketlab.lab import Lab
from marketlab.server.app import create_app
from marketlab.sim import SimExchange
from marketlab.store.history import History
from marketlab.stream.config import FeedConfig
from tests.lab.test_lab import FAST, venue_options, wait_for


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"exchange": "kraken"}, ["exchange 'kraken'", "binance, okx"]),
        ({"fallback": "binance"}, ["fallback 'binance'", "okx"]),
        ({"symbols": ["BTC USDT!"]}, ["symbols", "'BTC USDT!'", "BTCUSDT"]),
        ({"symbols": []}, ["symbols", "at least one"]),
        ({"intervals": ["7m"]}, ["intervals", "'7m'", "1m, 3m, 5m"]),
        ({"exchange": "okx", "intervals": ["1s"]}, ["intervals", "OKX has no 1s", "1m"]),
        ({"fallback": "okx", "intervals": ["8h"]}, ["fallback okx", "OKX has no 8h"]),
        ({"channels": ["trade"]}, ["channels", "'trade'", "trades, ticker"]),
        ({"exchange": "okx", "channels": ["aggTrades"]}, ["channels", "OKX has no aggTrades"]),
        (
            {"binance_ws_url": "http://127.0.0.1:9100"},
            ["binance_ws_url", "http://127.0.0.1:9100", "ws://"],
        ),
        ({"binance_ws_url": "wss://h:9443/stream"}, ["binance_ws_url", "without a path"]),
        ({"binance_rest_url": "api.binance.com"}, ["binance_rest_url", "https://"]),
        ({"binance_rest_url": "https://h/api/v3"}, ["binance_rest_url", "appends /api/v3"]),
        (
            {"exchange": "okx", "okx_ws_url": "ws://h:1/ws/v5/business"},
            ["okx_ws_url", "/ws/v5/public"],
        ),
        ({"exchange": "okx", "okx_rest_url": "ftp://h"}, ["okx_rest_url", "http://"]),
        ({"binance_ws_url": "ws://h:99999"}, ["binance_ws_url", "port"]),
        ({"trade_capacity": 0}, ["trade_capacity", "> 0", "0"]),
        ({"kline_capacity": 2.5}, ["kline_capacity", "whole number"]),
        ({"db_batch_size": -1}, ["db_batch_size"]),
        ({"db_flush_interval": 0}, ["db_flush_interval"]),
        ({"failover_after": float("nan")}, ["failover_after"]),
        ({"idle_timeout": -2}, ["idle_timeout", "-2"]),
        ({"backoff_initial": 5, "backoff_max": 1}, ["backoff_max", "backoff_initial"]),
        ({"book_snapshot_limit": 6000}, ["book_snapshot_limit", "5000"]),
        ({"streams_per_connection": 2000}, ["streams_per_connection", "1024"]),
    ],
)
def test_a_bad_lab_argument_is_refused_at_construction_naming_the_fix(kwargs, words):
    kwargs = {"symbols": ["BTCUSDT"], **kwargs}
    with pytest.raises(ValueError) as info:
        Lab(**kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_bad_url_in_the_environment_is_refused_for_the_venue_in_use(monkeypatch):
    monkeypatch.setenv("MARKETLAB_OKX_WS_URL", "not a url")
    Lab(["BTCUSDT"])  # Binance alone: OKX's setting is not used
    with pytest.raises(ValueError, match="okx_ws_url 'not a url'"):
        Lab(["BTCUSDT"], exchange="okx")
    with pytest.raises(ValueError, match="okx_ws_url"):
        Lab(["BTCUSDT"], fallback="okx")


def test_okx_takes_a_bare_base_or_the_full_public_url():
    bare = Lab(["BTCUSDT"], exchange="okx", okx_ws_url="ws://127.0.0.1:9300")
    assert bare.config.ws_url == "ws://127.0.0.1:9300/ws/v5/public"
    full = Lab(["BTCUSDT"], exchange="okx", okx_ws_url="wss://ws.okx.com/ws/v5/public/")
    assert full.config.ws_url == "wss://ws.okx.com/ws/v5/public"
    assert Lab(["BTCUSDT"], binance_ws_url="ws://127.0.0.1:9/").config.ws_url == "ws://127.0.0.1:9"


def test_an_okx_lab_on_a_bare_base_collects():
    with SimExchange(["BTCUSDT"], speed=60, seed=4) as sim:
        lab = Lab(
            ["BTCUSDT"],
            exchange="okx",
            okx_ws_url=sim.ws_url,
            okx_rest_url=sim.rest_url,
            channels=("ticker", "klines", "book"),
            **{**FAST, "text_ping_after": 0.5},
        )
        with lab:
            lab.wait_ready(30)
            assert lab.book("BTCUSDT").attrs["synced"] and len(lab.klines("BTCUSDT")) > 10


def test_feed_settings_check_themselves():
    assert FeedConfig().idle_timeout == 30.0
    with pytest.raises(ValueError, match="ping_interval must be a number, got True"):
        FeedConfig(ping_interval=True)
    with pytest.raises(ValueError, match="seed_klines must be a whole number"):
        FeedConfig(seed_klines=1.5)
    assert FeedConfig(seed_klines=0, rollover_overlap=0).seed_klines == 0


def test_history_and_the_api_refuse_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="exchange 'bitmex'"):
        History(db=tmp_path / "h.sqlite", exchange="bitmex")
    with pytest.raises(ValueError, match="rest_url 'localhost:9100'"):
        History(db=tmp_path / "h.sqlite", rest_url="localhost:9100")
    lab = Lab(["BTCUSDT"])
    with pytest.raises(ValueError, match="max_ws_clients must be a whole number > 0, got 0"):
        create_app(lab, max_ws_clients=0)
    with pytest.raises(ValueError, match="token must be a non-empty string"):
        create_app(lab, token="  ")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--okx-ws-url", "ws://h:1/ws/v5/business", "--exchange", "okx"],
            ["okx_ws_url", "/ws/v5/public"],
        ),
        (["--binance-rest-url", "localhost:9100"], ["binance_rest_url", "https://"]),
        (["--exchange", "okx", "--intervals", "1s"], ["OKX has no 1s"]),
        (["--exchange", "okx", "--channels", "miniTicker"], ["OKX has no miniTicker"]),
    ],
)
def test_the_cli_refuses_a_bad_flag_with_one_line_and_exit_2(args, words, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "marketlab", "collect", "--duration", "5", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for word in words:
        assert word in lines[0]


def test_the_top_level_names_the_docs_promise():
    assert {"Lab", "History", "SimExchange"} <= set(ml.__all__) <= set(dir(ml))
    assert ml.History is History and ml.SimExchange is SimExchange and ml.Lab is Lab


def test_every_public_name_loads_without_a_warning():
    """Each name of ``__all__`` resolves, lazily loaded or not, in a process that turns any
    warning into an error (a name loaded through a deprecated module would warn)."""
    code = "import marketlab as ml\nfor name in ml.__all__:\n    getattr(ml, name)\n"
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr


# --- what stops collection later reaches the user ------------------------------------------


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_symbol_the_venue_does_not_list_stops_the_lab_with_the_venues_words(exchange):
    with SimExchange(["BTCUSDT"], speed=60, seed=4) as sim:
        lab = Lab(
            ["BTCUSDT", "DOGEUSDT"],
            exchange=exchange,
            channels=("trades",),
            **{**FAST, **venue_options(sim, exchange)},
        )
        lab.start()
        try:
            with pytest.raises(RuntimeError, match=f"{exchange} does not list DOGEUSDT") as info:
                lab.wait_ready(20)
            assert "BTCUSDT" in str(info.value)  # what the venue does list
            wait_for(lambda: not lab.running, 10, "the collector to stop")
            summary = lab.summary()
            assert not summary["running"] and "DOGEUSDT" in summary["error"]
            assert "DOGEUSDT" in lab.status().attrs["error"]
        finally:
            lab.stop()


def test_a_perpetual_the_venue_does_not_list_is_refused_with_its_perpetuals():
    """The refusal names the market it looked in: the venue's perpetuals, not its spot pairs."""
    with SimExchange(["BTCUSDT"], speed=60, seed=4) as sim:
        lab = Lab(
            ["BTCUSDT-PERP", "DOGEUSDT-PERP"],
            exchange="binance",
            channels=("trades",),
            binance_perp_ws_url=sim.ws_url,
            binance_perp_rest_url=sim.rest_url,
        )
        lab.start()
        try:
            with pytest.raises(RuntimeError, match="does not list DOGEUSDT-PERP") as info:
                lab.wait_ready(20)
            assert "perpetuals listed, e.g. BTCUSDT-PERP" in str(info.value)
        finally:
            lab.stop()


def test_a_kline_request_the_venue_refuses_stops_the_lab_with_the_venues_words():
    """A listing can be stale; the klines endpoint's own refusal stops the Lab as well."""
    with SimExchange(["BTCUSDT"], speed=60, seed=4) as sim:
        lab = Lab(["BTCUSDT"], channels=("klines",), **{**FAST, **venue_options(sim)})
        lab.start()
        try:
            lab.wait_ready(20)
            feed = lab._feed
            fetch = feed._fetch_klines(("ETHUSDT", "1m"), 0, count_as_backfill=True)
            lab._bg.loop.call_soon_threadsafe(feed._spawn, fetch)
            wait_for(lambda: not lab.running, 10, "the collector to stop")
            with pytest.raises(RuntimeError, match=r"refused klines ETHUSDT 1m: .*Invalid symbol"):
                lab.wait_ready(1)
        finally:
            lab.stop()


# --- reconnect promptly when the venue is back ---------------------------------------------


def test_the_websocket_reconnects_as_soon_as_the_venue_answers_again():
    """A 12 s outage (WebSocket refused, REST failing): the backoff grew to many seconds, but
    the first REST answer after it ends the wait."""
    with SimExchange(["BTCUSDT"], speed=60, seed=4) as sim:
        options = {
            **FAST,
            **venue_options(sim),
            "backoff_initial": 2.0,
            "backoff_max": 60.0,
            "fallback_after": 30.0,
        }
        with Lab(["BTCUSDT"], channels=("ticker", "book"), **options) as lab:
            lab.wait_ready(30)
            sim.refuse_connections(12, rest=True, venue="binance")
            sim.drop_connections(venue="binance")
            wait_for(lambda: not lab._feed.connected, 5, "the drop")
            time.sleep(12)
            back = time.monotonic()
            wait_for(lambda: lab._feed.connected, 30, "the reconnection")
            took = time.monotonic() - back
            wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 10, "the book")
            assert took < 5.0, f"reconnected {took:.1f} s after the venue was back"
            assert lab.summary()["reconnects"] >= 3  # it did back off meanwhile
