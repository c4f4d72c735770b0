"""Record what a collector takes in, replay it through the same path, get the same data."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time

import pytest
import zstandard

from marketlab.lab import Lab
from marketlab.recording.files import WS, RecordingError, open_recording
from marketlab.sim import SimExchange
from tests.lab.test_lab import FAST, venue_options, wait_for


def record_live(sim: SimExchange, path, exchange: str = "binance", faults: bool = True) -> dict:
    lab = Lab(
        ["BTCUSDT", "ETHUSDT"],
        intervals=["1m"],
        exchange=exchange,
        record=path,
        **{**FAST, **venue_options(sim, exchange)},
    )
    with lab:
        lab.wait_ready(30)
        time.sleep(1.5)
        if faults:
            sim.drop_connections()
            sim.skip_depth_updates(1)
            time.sleep(1.5)
            wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 10, "the book to resync")
        time.sleep(1)
    return {
        "klines": lab.klines("BTCUSDT"),
        "trades": lab.trades("ETHUSDT"),
        "book": lab.book("BTCUSDT", 50),
        "status": lab.status()[["messages", "backfilled", "gaps"]],
        "recorded": lab.recorded(),
    }


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_replay_rebuilds_the_live_frames_exactly_every_time(tmp_path, exchange):
    path = tmp_path / "session.mlrec"
    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=60, seed=3) as sim:
        live = record_live(sim, path, exchange)
    assert live["recorded"]["entries"] > 500
    assert live["recorded"]["file_bytes"] < live["recorded"]["raw_bytes"] / 3  # compressed
    header, entries = open_recording(path)
    assert header.exchange == exchange and header.symbols == ["BTCUSDT", "ETHUSDT"]
    kinds = {e.kind for e in entries}
    assert WS in kinds and len(kinds) >= 3  # frames and the REST answers they were synced with
    for _ in range(2):
        lab = Lab.replay(path).join(60)
        assert lab.klines("BTCUSDT").equals(live["klines"])
        assert lab.trades("ETHUSDT").equals(live["trades"])
        book = lab.book("BTCUSDT", 50)
        assert (
            book.equals(live["book"]) and book.attrs == live["book"].attrs and book.attrs["synced"]
        )
        assert lab.status()[["messages", "backfilled", "gaps"]].equals(live["status"])
        assert lab.summary()["replayed"] == live["recorded"]["entries"]
    # the pure-Python twins of the compiled core (book sides, frame cut, reader) give the same
    pure = replay_in_pure_python(path, tmp_path / "pure.pkl")
    assert pure["klines"].equals(live["klines"]) and pure["trades"].equals(live["trades"])
    assert pure["book"].equals(live["book"]) and pure["book"].attrs == live["book"].attrs


def replay_in_pure_python(path, out) -> dict:
    script = (
        "import pickle, sys\n"
        "from marketlab.lab import Lab\n"
        "from marketlab.native import COMPILED\n"
        "assert not COMPILED\n"
        "lab = Lab.replay(sys.argv[1]).join(60)\n"
        "assert 'ccxt' not in sys.modules, 'a replay loaded ccxt (about 90 MB it never uses)'\n"
        "frames = {'klines': lab.klines('BTCUSDT'), 'trades': lab.trades('ETHUSDT'),\n"
        "          'book': lab.book('BTCUSDT', 50)}\n"
        "pickle.dump(frames, open(sys.argv[2], 'wb'))\n"
    )
    env = {**os.environ, "MARKETLAB_PURE_PYTHON": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with open(out, "rb") as f:
        return pickle.load(f)  # written by the test itself, just above


def test_replays_into_history_are_identical_and_paced_replays_take_their_time(tmp_path):
    path = tmp_path / "s.mlrec"
    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=60, seed=4) as sim:
        record_live(sim, path, faults=False)
    stored = []
    for i in range(2):
        db = tmp_path / f"h{i}.sqlite"
        Lab.replay(path, db=db).join(60)
        stored.append(Lab(["BTCUSDT"], db=db).history.klines("BTCUSDT", "1m"))
    assert len(stored[0]) >= 30 and stored[0].equals(stored[1])
    _, entries = open_recording(path)
    times = [e.time_ns for e in entries]
    span = (times[-1] - times[0]) / 1e9
    began = time.monotonic()
    Lab.replay(path, speed=4).join(60)
    assert time.monotonic() - began >= span / 4 * 0.9


def test_bad_recordings_are_named_and_explained(tmp_path):
    with pytest.raises(RecordingError, match="no such recording"):
        Lab.replay(tmp_path / "missing.mlrec")
    (tmp_path / "text.mlrec").write_text("hello")
    with pytest.raises(RecordingError, match="not a marketlab recording"):
        Lab.replay(tmp_path / "text.mlrec")
    (tmp_path / "other.mlrec").write_bytes(
        zstandard.ZstdCompressor().compress(b"something else entirely")
    )
    with pytest.raises(RecordingError, match="not a marketlab recording"):
        Lab.replay(tmp_path / "other.mlrec")


def test_record_and_replay_from_the_command_line(tmp_path):
    out = tmp_path / "cli.mlrec"
    with SimExchange(["BTCUSDT"], speed=60, seed=6) as sim:
        rec = subprocess.run(
            [
                sys.executable,
                "-m",
                "marketlab",
                "record",
                "--symbols",
                "BTCUSDT",
                "--intervals",
                "1m",
                "--binance-ws-url",
                sim.ws_url,
                "--binance-rest-url",
                sim.rest_url,
                "--duration",
                "4",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert rec.returncode == 0, rec.stderr
    assert f"to {out}" in rec.stdout and "recorded" in rec.stdout
    db = tmp_path / "r.sqlite"
    rep = subprocess.run(
        [sys.executable, "-m", "marketlab", "replay", str(out), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rep.returncode == 0, rep.stderr
    assert (
        "klines BTCUSDT 1m:" in rep.stdout
        and "contiguous" in rep.stdout
        and "replayed" in rep.stdout
    )
    bad = subprocess.run(
        [sys.executable, "-m", "marketlab", "replay", str(tmp_path / "nope.mlrec")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "no such recording" in bad.stderr


@pytest.mark.parametrize("way", ["blocks", "entries", "timed"])
def test_a_frame_whose_taking_raises_is_counted_and_the_replay_goes_on(tmp_path, way, monkeypatch):
    # as live: one frame's failure (a bug's, a sink's) never ends the replay
    import asyncio

    from marketlab.recording import files as rec
    from marketlab.stream import replay as replay_module
    from tests.venues.binance.feeds import OfflineFeed, trade_frame

    path = tmp_path / "r.mlrec"
    writer = rec.RecordingWriter(path, rec.Header("binance", ["BTCUSDT"], ["1m"], ["trades"], 1))
    for tid in range(1, 6):
        writer.write(rec.WS, 10**18 + tid, "binance-1", trade_frame(tid, 1.5, 2.0, True))
    writer.close()

    class Raising(OfflineFeed):
        def _lane(self, st):
            lane = super()._lane(st)
            if st.channel != "trade":
                return lane
            take = lane.take

            def raising(stats, record, source):
                if record.trade_id == 3:
                    raise RuntimeError("a sink broke")
                take(stats, record, source)

            return lane._replace(take=raising)

    if way == "entries":
        monkeypatch.setattr(Raising, "frame_reader", lambda self: None)
    feed = replay_module.replaying(Raising)()
    feed.replay_path = str(path)
    feed.replay_speed = 1e9 if way == "timed" else None
    asyncio.run(feed.run())
    assert feed.bad_frames == 1 and feed.frames_failed == 1
    assert "RuntimeError: a sink broke" in feed.last_bad_frame
    assert feed.state.trades["BTCUSDT"].arrays()["trade_id"].tolist() == [1, 2, 4, 5]


@pytest.mark.parametrize("way", ["blocks", "entries", "timed"])
def test_a_damaged_record_of_an_answer_is_counted_and_the_replay_goes_on(
    tmp_path, way, monkeypatch
):
    import asyncio

    from marketlab.recording import files as rec
    from marketlab.stream import replay as replay_module
    from tests.venues.binance.feeds import OfflineFeed, trade_frame

    path = tmp_path / "r.mlrec"
    writer = rec.RecordingWriter(path, rec.Header("binance", ["BTCUSDT"], ["1m"], ["trades"], 1))
    for tid in range(1, 6):
        writer.write(rec.WS, 10**18 + 2 * tid, "binance-1", trade_frame(tid, 1.5, 2.0, True))
        if tid == 3:  # a REST snapshot's record, damaged: nested past any decoder's depth
            writer.write(rec.SNAPSHOT, 10**18 + 2 * tid + 1, "BTCUSDT", b"\x91" * 3000)
    writer.close()

    if way == "entries":
        monkeypatch.setattr(OfflineFeed, "frame_reader", lambda self: None)
    feed = replay_module.replaying(OfflineFeed)()
    feed.replay_path = str(path)
    feed.replay_speed = 1e9 if way == "timed" else None
    asyncio.run(feed.run())
    assert feed.bad_frames == 1 and "RecordingError" in feed.last_bad_frame
    assert feed.state.trades["BTCUSDT"].arrays()["trade_id"].tolist() == [1, 2, 3, 4, 5]
