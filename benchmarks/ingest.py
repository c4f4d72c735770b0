"""Ingest benchmark: ``python benchmarks/ingest.py [--symbols 20] [--seconds 3000] [--rounds 5]``.

A fixed stream of Binance frames (trades, 100 ms diff depth, 1m klines and 24h tickers for
``--symbols`` symbols over ``--seconds`` of simulated market) is generated once (cached under
``benchmarks/.cache``) and served by the simulator, in its own process, as fast as each client
reads, on plain ``ws://`` for every client. Each client runs in its own process and takes every
frame of the streams it needs:

  websockets       floor: a bare ``websockets`` client, ``orjson.loads``, discard (asyncio loop)
  aiohttp          floor: aiohttp's WebSocket client (C reader), ``orjson.loads`` (asyncio loop)
  picows           floor: ``picows`` (Cython), ``orjson.loads`` of each frame (asyncio loop)
  marketlab        ``Lab`` with trades, tickers and klines into its rolling frames (its own loop)
  marketlab+books  the same plus a synced order book per symbol (snapshot + diff stream)
  ccxt.pro         ``binance`` ``watch_trades``/``watch_ticker``/``watch_ohlcv``/
                   ``watch_order_book`` (asyncio loop)
  replay           ``Lab.replay()`` of a recording a ``Lab`` with books made of the same stream
                   (no socket: the parser, books, frames and klines alone); cached once
  cryptofeed       its ``Binance`` feed with TRADES, TICKER, CANDLES and L2_BOOK callbacks; its
                   ``wss://``-only address check is lifted here so it meets the same ``ws://``
                   server as everyone (it installs uvloop's event loop policy, as it does for users)

Clients are interleaved round by round (``--rounds``, default 5): the machine drifts by tens of
percent from minute to minute, so every rate is compared with the websockets floor of its own
round, and the table gives the median rate and the median of those per-round ratios (and the
same against cryptofeed). CPU time per message covers the client's whole process; peak RSS is
its maximum. Peers are optional (``pip install -e ".[bench]"``); one that cannot run says why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from processes import median, run_child, start_simulator

CACHE = Path(__file__).parent / ".cache"
STREAMS = (
    "trade",
    "depth@100ms",
    "kline_1m",
    "ticker",
)  # what marketlab, ccxt.pro and the floor take
# cryptofeed's TRADES and TICKER channels are aggTrade and bookTicker: the stream has both too
GENERATED = (*STREAMS, "aggTrade", "bookTicker")
CRYPTOFEED = ("aggTrade", "depth@100ms", "kline_1m", "bookTicker")
START = 1_767_225_600_000  # 2026-01-01: a fixed start keeps the stream the same in every run
NAMES = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT"]


def symbols_for(n: int) -> list[str]:
    extra = [f"X{i:02d}USDT" for i in range(max(0, n - len(NAMES)))]
    return (NAMES + extra)[:n]


def stream_file(n_symbols: int, seconds: int) -> Path:
    from marketlab.sim.generate import generate_recording

    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"ingest-{n_symbols}sym-{seconds}s.mlrec"
    if not path.exists():
        print(f"generating {path.name} (once)…", flush=True)
        tmp = path.with_suffix(".tmp")
        generate_recording(
            str(tmp), symbols_for(n_symbols), seconds, seed=7, start_time=START, streams=GENERATED
        )
        tmp.rename(path)
    return path


def expected_frames(path: Path, kinds: tuple[str, ...]) -> int:
    from marketlab.recording.files import WS, open_recording
    from marketlab.sim.replay_face import stream_of

    _, entries = open_recording(path)
    n = 0
    for e in entries:
        if e.kind == WS:
            name = stream_of(e.data) or ""
            if name.split("@", 1)[1] in kinds:
                n += 1
    return n


# --- the clients (each in its own process) -----------------------------------------------------


class Meter:
    """First frame to last: wall time, process CPU time."""

    def __init__(self, expect: int):
        self.expect = expect
        self.n = 0
        self.t0 = self.c0 = 0.0
        self.t1 = self.c1 = 0.0

    def first(self) -> None:
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def last(self) -> None:
        self.t1, self.c1 = time.perf_counter(), time.process_time()

    def result(self, **extra: Any) -> dict[str, Any]:
        wall = max(self.t1 - self.t0, 1e-9)
        return {
            "messages": self.n,
            "expected": self.expect,
            "wall_s": wall,
            "msg_per_s": self.n / wall,
            "cpu_us_per_msg": (self.c1 - self.c0) / max(self.n, 1) * 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **extra,
        }


def all_streams(symbols: list[str], kinds: tuple[str, ...]) -> list[str]:
    return [f"{s.lower()}@{k}" for s in symbols for k in kinds]


def floor_url(port: int, symbols: list[str]) -> str:
    return f"ws://127.0.0.1:{port}/stream?streams=" + "/".join(all_streams(symbols, STREAMS))


async def websockets_client(port: int, symbols: list[str], expect: int) -> dict[str, Any]:
    import orjson
    import websockets

    meter = Meter(expect)
    url = floor_url(port, symbols)
    loads = orjson.loads
    async with websockets.connect(url, max_size=2**24, max_queue=4096, compression=None) as ws:
        frame = await ws.recv(decode=False)
        meter.first()
        loads(frame)
        meter.n = 1
        recv = ws.recv
        while meter.n < expect:
            loads(await recv(decode=False))
            meter.n += 1
        meter.last()
    return meter.result()


async def aiohttp_client(port: int, symbols: list[str], expect: int) -> dict[str, Any]:
    import aiohttp
    import orjson

    meter = Meter(expect)
    loads = orjson.loads
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(floor_url(port, symbols), max_msg_size=0, compress=0) as ws,
    ):
        receive = ws.receive
        msg = await receive()
        meter.first()
        loads(msg.data)
        meter.n = 1
        while meter.n < expect:
            loads((await receive()).data)
            meter.n += 1
        meter.last()
    return meter.result()


async def picows_client(port: int, symbols: list[str], expect: int) -> dict[str, Any]:
    try:
        import picows
    except ImportError as exc:
        return {"error": f"picows is not installed ({exc}); pip install -e '.[bench]'"}
    import orjson

    meter = Meter(expect)
    loads = orjson.loads
    done = asyncio.get_running_loop().create_future()

    class Listener(picows.WSListener):  # type: ignore[misc]  # picows is untyped
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type != picows.WSMsgType.TEXT:
                return
            if meter.n == 0:
                meter.first()
            loads(frame.get_payload_as_memoryview())
            meter.n += 1
            if meter.n >= expect and not done.done():
                meter.last()
                done.set_result(None)

    transport, _ = await picows.ws_connect(
        Listener, floor_url(port, symbols), max_frame_size=1 << 24
    )
    try:
        await done
    finally:
        transport.disconnect()
    return meter.result()


def marketlab_client(port: int, symbols: list[str], expect: int, books: bool) -> dict[str, Any]:
    from marketlab.lab import Lab

    channels = ("trades", "ticker", "klines", "book") if books else ("trades", "ticker", "klines")
    lab = Lab(
        symbols,
        intervals=["1m"],
        channels=channels,
        binance_ws_url=f"ws://127.0.0.1:{port}",
        binance_rest_url=f"http://127.0.0.1:{port}",
        url_streams=1024,
        seed_klines=5,
        idle_timeout=60,
    )
    meter = Meter(expect)
    lab.start()
    try:
        while not lab._feed or not lab._feed.connections or lab._feed.connections[0].messages == 0:
            time.sleep(0.0005)
        meter.first()
        conn = lab._feed.connections[0]
        last, seen = time.monotonic(), 0
        while conn.messages < expect and time.monotonic() - last < 10:
            time.sleep(0.002)
            if conn.messages != seen:
                last, seen = time.monotonic(), conn.messages
        meter.last()
        meter.n = conn.messages
        synced = sum(1 for s in symbols if lab.book(s).attrs["synced"]) if books else 0
        trades = sum(len(lab.trades(s)) for s in symbols)
        applied = sum(lb.book.stats.applied for lb in lab._feed.books.values())
    finally:
        lab.stop()
    return meter.result(books_synced=synced, book_updates_applied=applied, trades_in_frames=trades)


async def ccxt_client(port: int, symbols: list[str], expect: int) -> dict[str, Any]:
    import ccxt.pro

    meter = Meter(expect)

    class Counting(ccxt.pro.binance):  # type: ignore[misc]  # ccxt is untyped
        def handle_message(self, client: Any, message: Any) -> Any:
            if meter.n == 0:
                meter.first()
            meter.n += 1
            result = super().handle_message(client, message)
            meter.last()
            return result

    ex = Counting(
        {
            "options": {
                "fetchCurrencies": False,
                "fetchMarkets": {"types": ["spot"]},
                "watchTickers": {"name": "ticker"},
            }
        }
    )  # the full 24h ticker, as the others take
    ex.urls["api"]["public"] = f"http://127.0.0.1:{port}/api/v3"
    ex.urls["api"]["ws"]["spot"] = f"ws://127.0.0.1:{port}/ws"
    await ex.load_markets()
    markets = [f"{s[:-4]}/USDT" for s in symbols]

    async def loop(method: str, *args: Any) -> None:
        while meter.n < expect:
            await getattr(ex, method)(*args)

    tasks = [
        asyncio.create_task(loop(m, s, *a))
        for s in markets
        for m, a in (
            ("watch_trades", ()),
            ("watch_ticker", ()),
            ("watch_ohlcv", ("1m",)),
            ("watch_order_book", ()),
        )
    ]
    try:
        last, seen = time.monotonic(), 0
        while (
            meter.n < expect and time.monotonic() - last < 10
        ):  # ends at the last frame or a 10 s silence
            await asyncio.sleep(0.01)
            if meter.n != seen:
                last, seen = time.monotonic(), meter.n
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]  # not None: filtered so
    finally:
        for t in tasks:
            t.cancel()
        await ex.close()
    return meter.result()


def cryptofeed_client(port: int, symbols: list[str], expect: int) -> dict[str, Any]:
    try:
        from cryptofeed import FeedHandler
        from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
        from cryptofeed.defines import CANDLES, L2_BOOK, TICKER, TRADES
        from cryptofeed.exchanges import Binance
    except ImportError as exc:
        return {"error": f"cryptofeed is not installed ({exc}); pip install -e '.[bench]'"}

    meter = Meter(expect)

    # cryptofeed refuses any address but wss:// ("Invalid address, must be a wss address"):
    # lifted here, so it meets the same plain ws:// server as every other client.
    from cryptofeed.connection import WSAsyncConn

    checked = WSAsyncConn.__init__

    def plain_ws(self: Any, address: str, *args: Any, **kwargs: Any) -> None:
        checked(self, address.replace("ws://", "wss://", 1), *args, **kwargs)
        self.address = address

    WSAsyncConn.__init__ = plain_ws

    class LocalBinance(Binance):  # type: ignore[misc]  # cryptofeed is untyped
        websocket_endpoints: ClassVar = [
            WebsocketEndpoint(f"ws://127.0.0.1:{port}", sandbox=None, options={"compression": None})
        ]
        rest_endpoints: ClassVar = [
            RestEndpoint(
                f"http://127.0.0.1:{port}",
                routes=Routes("/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}"),
            )
        ]

        async def message_handler(self, msg: str, conn: Any, timestamp: float) -> None:
            if meter.n == 0:
                meter.first()
            meter.n += 1
            await super().message_handler(msg, conn, timestamp)
            meter.last()

    async def noop(*args: Any) -> None:
        return None

    async def until_done() -> None:
        last, seen = time.monotonic(), 0
        while meter.n < expect and time.monotonic() - last < 10:
            await asyncio.sleep(0.01)
            if meter.n != seen:
                last, seen = time.monotonic(), meter.n

    fh = FeedHandler(
        config={"log": {"disabled": True}}
    )  # installs uvloop's policy: the loop comes after it
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    fh.add_feed(
        LocalBinance(
            symbols=[f"{s[:-4]}-USDT" for s in symbols],
            channels=[TRADES, TICKER, CANDLES, L2_BOOK],
            callbacks={TRADES: noop, TICKER: noop, CANDLES: noop, L2_BOOK: noop},
        )
    )
    fh.run(start_loop=False, install_signal_handlers=False)
    loop.run_until_complete(until_done())
    return meter.result()


def lab_recording(port: int, stream: Path, n_symbols: int, expect: int) -> Path:
    """A recording by a ``Lab`` with books of the whole stream (frames, snapshots, REST
    answers), made once: what ``replay`` feeds through the collector without a socket."""
    from marketlab.lab import Lab

    path = stream.with_name(stream.stem + "-lab.mlrec")
    if path.exists():
        return path
    print(f"recording {path.name} (once)…", flush=True)
    tmp = path.with_suffix(".tmp")
    lab = Lab(
        symbols_for(n_symbols),
        intervals=["1m"],
        channels=("trades", "ticker", "klines", "book"),
        binance_ws_url=f"ws://127.0.0.1:{port}",
        binance_rest_url=f"http://127.0.0.1:{port}",
        url_streams=1024,
        seed_klines=5,
        idle_timeout=60,
        record=tmp,
    )
    lab.start()
    try:
        began = time.monotonic()
        while (
            not lab._feed or not lab._feed.connections or lab._feed.connections[0].messages < expect
        ):
            if time.monotonic() - began > 600:
                raise RuntimeError("the recording Lab did not take the whole stream in 10 minutes")
            time.sleep(0.05)
    finally:
        lab.stop()
    tmp.rename(path)
    return path


def replay_client(path: Path, n_symbols: int, expect: int) -> dict[str, Any]:
    from marketlab.lab import Lab

    meter = Meter(expect)
    meter.first()
    lab = Lab.replay(path)
    lab.join()
    meter.last()
    meter.n = lab._feed.connections[0].messages if lab._feed and lab._feed.connections else 0
    symbols = symbols_for(n_symbols)
    feed = lab._feed
    assert feed is not None  # running
    synced = sum(1 for s in symbols if feed.books[s].book.synced)
    return meter.result(books_synced=synced)


def run_client(name: str, port: int, n_symbols: int, expect: int) -> dict[str, Any]:
    symbols = symbols_for(n_symbols)
    if name == "websockets":
        return asyncio.run(websockets_client(port, symbols, expect))
    if name == "aiohttp":
        return asyncio.run(aiohttp_client(port, symbols, expect))
    if name == "picows":
        return asyncio.run(picows_client(port, symbols, expect))
    if name == "marketlab":
        return marketlab_client(port, symbols, expect, books=False)
    if name == "marketlab+books":
        return marketlab_client(port, symbols, expect, books=True)
    if name == "ccxt.pro":
        return asyncio.run(ccxt_client(port, symbols, expect))
    if name == "cryptofeed":
        return cryptofeed_client(port, symbols, expect)
    if name == "record-lab":
        stream = stream_file(n_symbols, int(os.environ["MARKETLAB_BENCH_SECONDS"]))
        return {"path": str(lab_recording(port, stream, n_symbols, expect))}
    if name == "replay":
        return replay_client(Path(os.environ["MARKETLAB_BENCH_RECORDING"]), n_symbols, expect)
    raise ValueError(name)


# --- the run -----------------------------------------------------------------------------------

CLIENTS = {  # name → the streams it takes
    "websockets": STREAMS,
    "aiohttp": STREAMS,
    "picows": STREAMS,
    "marketlab": ("trade", "kline_1m", "ticker"),
    "marketlab+books": STREAMS,
    "ccxt.pro": STREAMS,
    "cryptofeed": CRYPTOFEED,
    "replay": STREAMS,
}


def run_once(name: str, port: int, n_symbols: int, expect: int) -> dict[str, Any]:
    flags = ["--client", name, "--port", str(port), "--symbols", str(n_symbols)]
    return run_child(__file__, [*flags, "--expect", str(expect)], timeout=900)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=3000, help="simulated seconds in the stream")
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds; medians are reported"
    )
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:  # a child process: one client, one JSON line
        try:
            result = run_client(args.client, args.port, args.symbols, args.expect)
        except Exception as exc:  # reported in the table, not a traceback
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)
        return
    path = stream_file(args.symbols, args.seconds)
    os.environ["MARKETLAB_BENCH_SECONDS"] = str(args.seconds)
    names = args.clients.split(",")
    unknown = set(names) - set(CLIENTS)
    if unknown:
        ap.error(
            f"unknown client(s) {', '.join(sorted(unknown))}: expected some of {', '.join(CLIENTS)}"
        )
    if "websockets" not in names:
        names.insert(0, "websockets")  # every ratio is against it
    expect = {name: expected_frames(path, CLIENTS[name]) for name in names}
    proc, port, log = start_simulator("--replay", str(path))
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        if "replay" in names:  # made in a child: this process stays small (children inherit
            # its peak RSS through fork, and the table reports theirs)
            made = run_once("record-lab", port, args.symbols, expect["replay"])
            if "error" in made:
                raise SystemExit(f"could not record the stream for replay: {made['error']}")
            os.environ["MARKETLAB_BENCH_RECORDING"] = made["path"]

        for i in range(args.rounds):
            results = {name: run_once(name, port, args.symbols, expect[name]) for name in names}
            rounds.append(results)
            brief = ", ".join(
                f"{n} {r['msg_per_s']:,.0f}" if "msg_per_s" in r else f"{n} -"
                for n, r in results.items()
            )
            print(f"  round {i + 1}: {brief}", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    print(
        f"\ningest: {args.symbols} symbols, {args.seconds} simulated seconds, streams "
        f"{', '.join(STREAMS)}; plain ws:// for every client; simulator in its own process; "
        f"median of {args.rounds} interleaved rounds"
    )
    print(
        f"{'client':<17}{'messages':>10}{'msg/s':>11}{'x websockets':>14}{'x cryptofeed':>14}"
        f"{'CPU us/msg':>12}{'peak RSS MB':>13}"
    )
    for name in names:
        ok = [r[name] for r in rounds if "msg_per_s" in r[name]]
        if not ok:
            errors = [r[name].get("error") for r in rounds]
            print(f"{name:<17}  could not run: {errors[0]}")
            continue

        def ratio(peer: str, name: str = name) -> str:
            per_round = [
                r[name]["msg_per_s"] / r[peer]["msg_per_s"]
                for r in rounds
                if "msg_per_s" in r[name] and "msg_per_s" in r.get(peer, {})
            ]
            return f"{median(per_round):.2f}" if per_round else "-"

        last = ok[-1]
        short = (
            ""
            if last["messages"] >= last["expected"]
            else f"  (only {last['messages']} of {last['expected']})"
        )
        print(
            f"{name:<17}{last['messages']:>10,}{median([r['msg_per_s'] for r in ok]):>11,.0f}"
            f"{ratio('websockets'):>14}{ratio('cryptofeed'):>14}"
            f"{median([r['cpu_us_per_msg'] for r in ok]):>12.1f}"
            f"{max(r['peak_rss_mb'] for r in ok):>13.0f}{short}"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
