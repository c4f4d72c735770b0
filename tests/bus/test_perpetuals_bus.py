"""A Lab collecting a perpetual publishes to a real JetStream server what the venue sent (mark,
fundings settled, open interest, liquidations); a reader's frames and a history writer's store
hold each funding and each liquidation once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import marketlab as ml
from marketlab.bus.nats_server import NatsServer
from marketlab.sim import SimExchange
from marketlab.store.history import History
from tests.store.test_perpetual_history import MIDNIGHT, START, _until, venue_fundings

PERP = "BTCUSDT-PERP"


@pytest.fixture(scope="module")
def late_sim() -> Iterator[SimExchange]:
    """Ten minutes before midnight, with the eight hours of history that the midnight funding
    is settled from (the store test covers fundings backfilled from before the start)."""
    with SimExchange(["BTCUSDT"], speed=60, seed=5, start_time=START, history="8h") as sim:
        yield sim


def _mark(lab: ml.Lab) -> float | None:
    try:
        return float(lab.mark(PERP)["mark"])
    except KeyError:  # none taken yet
        return None


def _times(index) -> list[int]:
    return [int(t.timestamp() * 1000) for t in index]


def test_a_perpetuals_fundings_and_liquidations_cross_the_bus_once(
    late_sim: SimExchange, nats: NatsServer, tmp_path: Path
) -> None:
    db = tmp_path / "h.sqlite"
    collector = ml.Lab(
        [PERP],
        exchange="bybit",
        publish=nats.url,
        bybit_perp_ws_url=late_sim.ws_url,
        bybit_perp_rest_url=late_sim.rest_url,
    ).start()
    writer = ml.Lab.from_bus(
        nats.url,
        [PERP],
        exchange="bybit",
        durable="writer",
        db=db,
        store=("klines", "liquidations"),
        channels=["klines"],
    ).start()
    reader = ml.Lab.from_bus(nats.url, [PERP], exchange="bybit", channels=["klines"]).start()
    history = History(db=db, exchange="bybit")
    try:
        collector.wait_ready(30)
        _until(
            lambda: MIDNIGHT in _times(history.funding(PERP).index),
            30,
            "the funding settled at midnight stored by the history writer",
        )
        _until(lambda: len(collector.liquidations(PERP)) >= 3, 20, "liquidations")
        collector.stop()
        taken = collector.liquidations(PERP)
        _until(
            lambda: (
                len(reader.liquidations(PERP)) == len(writer.liquidations(PERP)) == len(taken)
                and _mark(reader) == collector.mark(PERP)["mark"]
            ),
            20,
            "the reader and the writer have every liquidation, the reader the last mark",
        )
        assert len(reader.open_interest(PERP)) > 0
        assert writer.summary()["bus"]["bad_messages"] == 0
    finally:
        for lab in (collector, reader, writer):
            lab.stop()
    venue = venue_fundings(late_sim, "bybit")
    stored = history.funding(PERP)
    assert MIDNIGHT in venue
    assert dict(zip(_times(stored.index), stored["rate"], strict=True)) == venue
    kept = history.liquidations(PERP)
    assert len(kept) == len(taken) and not kept["sampled"].any()  # Bybit sends every one
    assert sorted(
        zip(_times(kept.index), kept["side"].astype(str), kept["price"], kept["qty"], strict=True)
    ) == sorted(
        zip(_times(taken["time"]), taken["side"], taken["price"], taken["qty"], strict=True)
    )
    read = reader.liquidations(PERP)
    assert read[["side", "price", "qty"]].values.tolist() == (
        taken[["side", "price", "qty"]].values.tolist()
    )
