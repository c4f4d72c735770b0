"""A recording written straight from the simulated market, no sockets: the frames the Binance
face would send, for benchmarks and for serving with ``marketlab sim --replay``."""

from __future__ import annotations

import time
from typing import Any

import orjson

from marketlab.recording import files as rec
from marketlab.records import BookSnapshot
from marketlab.sim.binance import BinanceFace
from marketlab.sim.exchange import SimExchange
from marketlab.sim.market import SECOND_MS


def generate_recording(
    path: str,
    symbols: list[str],
    seconds: int,
    *,
    seed: int = 7,
    start_time: int | None = None,
    history: str = "10m",
    streams: tuple[str, ...] = ("trade", "depth@100ms", "kline_1m", "ticker"),
) -> int:
    """Write ``seconds`` of the simulated market as a recording: the frames the Binance face
    would send for ``streams`` of every symbol, and each book's snapshot at the start (which
    the first diff event continues). Returns the number of frames."""
    start = start_time if start_time is not None else int(time.time()) * SECOND_MS
    sim = SimExchange(symbols, seed=seed, start_time=start, history=history)
    sim.market.warm_up(sim.start_time)
    frames: list[tuple[str, bytes]] = []

    class Capture(BinanceFace):
        def _send(self, name: str, payload: dict[str, Any] | bytes) -> None:
            if name in wanted:
                raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
                frames.append((name, b'{"stream":"' + name.encode() + b'","data":' + raw + b"}"))

    face = Capture(sim)
    wanted = {f"{s.lower()}@{st}" for s in sim.symbol_names for st in streams}
    face.subs = {name: set() for name in wanted}  # every stream has a (silent) subscriber
    header = rec.Header(
        "binance",
        sim.symbol_names,
        ["1m"],
        ["trades", "ticker", "book", "klines"],
        0,
        {
            "seed": seed,
            "start_time": sim.start_time,
            "history": history,
            "generated_seconds": seconds,
        },
    )
    for _ in range(30):  # the book fills with the first live seconds; the stream starts after them
        sim.market.step()
    writer = rec.RecordingWriter(path, header)
    try:
        now_ns = sim.market.now * 1_000_000
        for symbol, m in sim.market.symbols.items():
            uid, bids, asks = m.book(5000)
            tick, lot = m.spec.tick, m.spec.lot
            snap = BookSnapshot(
                symbol,
                uid,
                [
                    (round(p * tick, m.spec.price_decimals), round(q * lot, m.spec.qty_decimals))
                    for p, q in bids
                ],
                [
                    (round(p * tick, m.spec.price_decimals), round(q * lot, m.spec.qty_decimals))
                    for p, q in asks
                ],
            )
            writer.write(rec.SNAPSHOT, now_ns, symbol, rec.encode_records(snap))
        count = 0
        for _ in range(seconds):
            frames.clear()
            face.publish(sim.market.step())
            t_ns = sim.market.now * 1_000_000
            for _, frame in frames:
                writer.write(rec.WS, t_ns, "gen", frame)
            count += len(frames)
    finally:
        writer.close()
    return count
