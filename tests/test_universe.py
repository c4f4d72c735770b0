"""The whole market: ``symbols="all"`` with a quote asset, and stable shards of it."""

from __future__ import annotations

import pytest

from marketlab.lab import Lab
from marketlab.lab.options import in_shard, parse_shard
from marketlab.sim import SimExchange
from tests.lab.test_lab import venue_options

LISTED = [
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "ADAUSDT",
    "DOGEUSDT",
    "ETHBTC",
    "BNBBTC",
]


@pytest.fixture(scope="module")
def market():
    with SimExchange(LISTED, speed=1, seed=2) as sim:
        yield sim


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_all_symbols_of_a_quote_come_from_the_venue_and_shards_split_them(market, exchange):
    usdt = sorted(s for s in LISTED if s.endswith("USDT"))
    lab = Lab("all", quote="usdt", exchange=exchange, **venue_options(market, exchange))
    assert lab.symbols == usdt
    assert Lab(
        "all", quote="BTC", exchange=exchange, **venue_options(market, exchange)
    ).symbols == ["BNBBTC", "ETHBTC"]
    shares = [
        Lab(
            "all",
            quote="USDT",
            shard=f"{i}/3",
            exchange=exchange,
            **venue_options(market, exchange),
        ).symbols
        for i in range(3)
    ]
    assert sorted(s for share in shares for s in share) == usdt  # every symbol in exactly one shard
    again = [
        Lab(
            "all", quote="USDT", shard=(i, 3), exchange=exchange, **venue_options(market, exchange)
        ).symbols
        for i in range(3)
    ]
    assert again == shares  # the same on every start


def test_a_shard_of_a_given_list_and_clear_errors(market):
    names = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"]
    parts = [
        Lab(names, shard=f"{i}/2", **venue_options(market)).symbols
        for i in range(2)
        if any(in_shard(s, (i, 2)) for s in names)
    ]
    assert sorted(s for p in parts for s in p) == sorted(names)
    with pytest.raises(ValueError, match="needs quote="):
        Lab("all", **venue_options(market))
    with pytest.raises(ValueError, match="lists no spot symbol quoted in EUR"):
        Lab("all", quote="EUR", **venue_options(market))
    with pytest.raises(ValueError, match="quote= goes with symbols='all'"):
        Lab(["BTCUSDT"], quote="USDT", **venue_options(market))
    for bad in ("2/2", "x/3", "1", (3, 1), "-1/4"):
        with pytest.raises(ValueError, match="shard="):
            parse_shard(bad)


def test_shards_are_a_partition_whatever_the_names():
    names = [f"S{i}USDT" for i in range(500)]
    for n in (1, 2, 5, 16):
        owners = [[i for i in range(n) if in_shard(s, (i, n))] for s in names]
        assert all(len(o) == 1 for o in owners)
        sizes = [sum(o == [i] for o in owners) for i in range(n)]
        assert min(sizes) > 500 / n / 2  # no shard starves


def test_collect_all_symbols_of_a_quote_in_one_shard_from_the_command_line(market, tmp_path):
    import subprocess
    import sys

    mine = sorted(s for s in LISTED if s.endswith("USDT") and in_shard(s, (1, 2)))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "marketlab",
            "collect",
            "--symbols",
            "all",
            "--quote",
            "USDT",
            "--shard",
            "1/2",
            "--channels",
            "ticker",
            "--duration",
            "2",
            "--binance-ws-url",
            market.ws_url,
            "--binance-rest-url",
            market.rest_url,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert f"collecting {', '.join(mine)} at" in r.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "marketlab",
            "collect",
            "--symbols",
            "all",
            "--shard",
            "3/2",
            "--quote",
            "USDT",
            "--binance-rest-url",
            market.rest_url,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "shard=" in bad.stderr
