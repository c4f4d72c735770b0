from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketlab.records import (
    INTERVAL_NAMES,
    Interval,
    Kline,
    normalize_symbol,
    parse_duration,
    split_symbol,
)

MS = st.integers(min_value=0, max_value=4_102_444_800_000)  # up to 2100


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_interval_lengths_follow_their_names():
    expected = {
        "1s": 1,
        "1m": 60,
        "3m": 180,
        "5m": 300,
        "15m": 900,
        "30m": 1800,
        "1h": 3600,
        "2h": 7200,
        "4h": 14400,
        "6h": 21600,
        "8h": 28800,
        "12h": 43200,
        "1d": 86400,
        "3d": 259200,
        "1w": 604800,
    }
    for name, seconds in expected.items():
        assert Interval(name).ms == seconds * 1000
    assert set(INTERVAL_NAMES) == {*expected, "1M"}


@pytest.mark.parametrize("bad", ["", "1", "2m", "1H", "60s", "1y", "m1", " 1m", None, 5])
def test_interval_rejects_junk_with_the_valid_names(bad):
    with pytest.raises(ValueError, match=r"invalid interval.*1m"):
        Interval(bad)


def test_interval_is_a_str_and_idempotent():
    iv = Interval("5m")
    assert iv == "5m" and Interval(iv) is iv and isinstance(iv, str)


@given(st.sampled_from(INTERVAL_NAMES), MS)
def test_every_time_falls_in_exactly_one_candle(name, ts):
    iv = Interval(name)
    open_ = iv.open_of(ts)
    assert open_ <= ts < iv.next_open(open_)
    assert iv.open_of(open_) == open_
    assert iv.close_of(open_) == iv.next_open(open_) - 1
    assert iv.open_of(iv.next_open(open_)) == iv.next_open(open_)


def test_weeks_open_on_monday_and_months_on_the_first():
    thursday = utc_ms(2026, 1, 1, 15)
    assert Interval("1w").open_of(thursday) == utc_ms(2025, 12, 29)
    assert Interval("1M").open_of(thursday) == utc_ms(2026, 1, 1)
    assert Interval("1M").next_open(utc_ms(2026, 2, 10)) == utc_ms(2026, 3, 1)
    assert Interval("1M").next_open(utc_ms(2026, 12, 31, 23)) == utc_ms(2027, 1, 1)
    assert Interval("1d").open_of(thursday) == utc_ms(2026, 1, 1)
    assert Interval("4h").open_of(thursday) == utc_ms(2026, 1, 1, 12)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("BTCUSDT", "BTCUSDT"),
        ("btcusdt", "BTCUSDT"),
        (" eth/usdt ", "ETHUSDT"),
        ("BTC-USDT", "BTCUSDT"),
        ("1000SATSUSDT", "1000SATSUSDT"),
        ("btcusdt-perp", "BTCUSDT-PERP"),
        ("BTC/USDT:USDT", "BTCUSDT-PERP"),  # ccxt's unified name of the linear perpetual
        (" eth/usdc:usdc ", "ETHUSDC-PERP"),
    ],
)
def test_symbols_normalize(raw, canonical):
    assert normalize_symbol(raw) == canonical


@pytest.mark.parametrize(
    ("contract", "said"),
    [
        ("BTC/USD:BTC", "inverse perpetual \\(settled in BTC\\)"),
        ("BTC/USDT:USDT-261225", "dated future"),
        ("BTCUSDT:USDT", "BASE/QUOTE:SETTLE"),
        ("BTC/USDT:", "BASE/QUOTE:SETTLE"),
    ],
)
def test_contracts_not_collected_are_refused_by_what_they_are(contract, said):
    with pytest.raises(ValueError, match=said):
        normalize_symbol(contract)


@pytest.mark.parametrize("junk", ["", " ", "B", "BTC USDT", "BTC$USDT", "X" * 21, "ÄBC", None, 42])
def test_junk_symbols_raise_a_clear_value_error(junk):
    with pytest.raises(ValueError, match="symbol"):
        normalize_symbol(junk)


def test_records_are_immutable_values():
    k = Kline("BTCUSDT", "1m", 0, 1.0, 2.0, 0.5, 1.5, 10.0, 59_999, 15.0, 3, 4.0, 6.0, True)
    assert k == Kline("BTCUSDT", "1m", 0, 1.0, 2.0, 0.5, 1.5, 10.0, 59_999, 15.0, 3, 4.0, 6.0, True)
    with pytest.raises(AttributeError):
        k.close = 3.0  # type: ignore[misc]  # frozen: what the test checks


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_says_what_is_expected():
    with pytest.raises(ValueError, match="invalid duration 'soon'"):
        parse_duration("soon")


def test_a_symbol_splits_at_its_longest_known_quote_asset():
    assert split_symbol("BTCUSDT") == ("BTC", "USDT")  # not BTCUS / DT, not BTCUSD / T
    assert split_symbol("btc-usd") == ("BTC", "USD")
    assert split_symbol("ETHBTC") == ("ETH", "BTC")
    assert split_symbol("BTCFDUSD") == ("BTC", "FDUSD") and split_symbol("SOLPYUSD")[1] == "PYUSD"
    assert split_symbol("USDCEURC") == ("USDC", "EURC")
    with pytest.raises(ValueError, match="no known quote asset"):
        split_symbol("ABCXYZ")
    with pytest.raises(ValueError, match="no known quote asset"):
        split_symbol("USDT")  # a quote alone has no base
