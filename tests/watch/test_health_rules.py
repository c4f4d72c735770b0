"""The health rules on hand-made observations and times (the simulator has no failing disk or
bus: these are the rules' own terms)."""

from __future__ import annotations

import argparse
import math

import pytest

from marketlab.cli.collect import load_settings
from marketlab.lab import Lab
from marketlab.watch.rules import Observation, Rules, StreamRow, VenueRow
from marketlab.watch.settings import AlertSettings

SETTINGS = AlertSettings(
    silence_s=10, book_unsynced_s=5, store_failing_s=3, bus_down_s=4, max_reconnects=2
)


def row(age: float, connected: bool = True, stream: str = "trade", book: str = "") -> StreamRow:
    return StreamRow("okx", "BTCUSDT", stream, connected, age, book)


def rules_found(rules: Rules, now: float, seen: Observation) -> set[tuple[str, str]]:
    return {(f.rule, f.stream) for f in rules.health(now, seen)}


def test_silence_only_while_the_venue_is_connected():
    rules = Rules(SETTINGS)
    assert rules_found(rules, 0, Observation(streams=[row(9.9)])) == set()
    assert rules_found(rules, 0, Observation(streams=[row(10.5)])) == {("silence", "trade")}
    down = Observation(streams=[row(60.0, connected=False)])
    assert rules_found(rules, 0, down) == set()  # a venue down is the reconnect rules' business
    assert rules_found(rules, 0, Observation(streams=[row(math.nan)])) == set()  # nothing yet


def test_a_book_out_of_sync_counts_from_when_it_went():
    rules = Rules(SETTINGS)
    unsynced = Observation(streams=[row(0.1, stream="depth", book="resyncing: gap")])
    synced = Observation(streams=[row(0.1, stream="depth", book="synced")])
    assert rules_found(rules, 100.0, unsynced) == set()
    assert rules_found(rules, 105.0, unsynced) == set()  # 5 s: not longer than 5
    assert rules_found(rules, 105.5, unsynced) == {("book_unsynced", "")}
    assert rules_found(rules, 106.0, synced) == set()
    assert rules_found(rules, 110.0, unsynced) == set()  # out of sync again: counted anew


def test_reconnects_within_the_window():
    rules = Rules(AlertSettings(max_reconnects=2, reconnect_window_s=60))

    def at(now: float, total: int) -> set[tuple[str, str]]:
        return rules_found(rules, now, Observation(venues=[VenueRow("okx", True, total, 0)]))

    assert at(0, 4) == set()  # what came before the first look is not counted
    assert at(10, 6) == set()  # 2: not more than 2
    assert at(20, 7) == {("reconnects", "")}  # 3 within 60 s
    assert at(65, 7) == {("reconnects", "")}  # counted from the last look before 5 s
    assert at(75, 7) == set()  # from the look at 10 s: 1


def test_store_bus_holes_and_rate_limits():
    rules = Rules(SETTINGS)
    failing = Observation(store_failing=True, store_error="disk full", bus_connected=False)
    assert rules_found(rules, 0, failing) == set()
    assert rules_found(rules, 3, failing) == {("store_failing", "")}
    assert rules_found(rules, 4, failing) == {("store_failing", ""), ("bus_down", "")}
    messages = [f.message for f in rules.health(4, failing)]
    assert any("disk full" in m for m in messages)
    assert rules_found(rules, 5, Observation(bus_connected=None)) == set()  # no bus: no rule
    holes = Observation(venues=[VenueRow("okx", True, 0, 0, {"BTCUSDT": 2, "ETHUSDT": 0})])
    found = rules.health(6, holes)
    assert [(f.rule, f.symbol, f.value) for f in found] == [("trade_holes", "BTCUSDT", 2)]
    limited = Observation(venues=[VenueRow("okx", True, 0, 1)])
    assert rules_found(rules, 7, limited) == {("rest_limited", "")}


def test_a_lab_refuses_alerts_it_cannot_run():
    with pytest.raises(TypeError, match=r"Watch\(silence_s=30\), not a dict"):
        Lab(["BTCUSDT"], alerts={"silence_s": 30}, binance_rest_url="http://127.0.0.1:9")
    lab = Lab(["BTCUSDT"], binance_rest_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="alerts=Watch"):
        lab.alerts()


def test_marketlab_toml_alerts_table(tmp_path):
    def settings_of(text: str):
        (tmp_path / "marketlab.toml").write_text(text)
        args = argparse.Namespace(config=str(tmp_path / "marketlab.toml"))
        return load_settings(args)

    assert settings_of("[collect]\n").alerts is None  # no table: no rules
    assert settings_of("[alerts]\n").alerts == AlertSettings()  # empty: every default
    chosen = settings_of("[alerts]\nsilence_s = 20\nwebhook = 'http://127.0.0.1:9/hook'\n")
    assert chosen.alerts is not None
    assert (chosen.alerts.silence_s, chosen.alerts.webhook) == (20, "http://127.0.0.1:9/hook")
    with pytest.raises(ValueError, match=r"\[alerts\]: unknown key\(s\) silense_s"):
        settings_of("[alerts]\nsilense_s = 20\n")
    with pytest.raises(ValueError, match="alerts jump_z must be a number >= 0"):
        settings_of("[alerts]\njump_z = -1\n")
