"""Live charts: figure data equals the Lab's frames after updates; views detach cleanly."""

import asyncio
import html
import time

import numpy as np
import pytest

from marketlab.charts import (
    board_html,
    candle_figure,
    candle_traces,
    depth_figure,
    depth_traces,
    stop_button,
    with_attrs,
)
from marketlab.lab import Lab
from marketlab.rings import book_frame
from marketlab.sim import SimExchange
from tests.lab.test_lab import FAST, venue_options, wait_for


@pytest.fixture(scope="module")
def lab():
    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=60, seed=17) as sim:
        lab = Lab(
            ["BTCUSDT", "ETHUSDT"],
            intervals=["1m", "5m"],
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
            **FAST,
        )
        lab.start().wait_ready(30)
        yield lab
        lab.stop()


def test_candle_figure_holds_exactly_the_frame_after_each_update(lab):
    fig = candle_figure("test")
    for _ in range(3):
        df = lab.klines("BTCUSDT", "1m").tail(50)
        candle_traces(fig, df)
        c, v = fig.data
        assert list(c.close) == list(df["close"]) and list(c.high) == list(df["high"])
        assert list(v.y) == list(df["volume"]) and len(c.x) == len(df)
        colours = [
            "#26a69a" if cl >= op else "#ef5350"
            for op, cl in zip(df["open"], df["close"], strict=True)
        ]
        assert list(v.marker.color) == colours
        time.sleep(1.1)  # a new candle each second at 60x


def test_depth_figure_is_cumulative_from_the_touch():
    fig = depth_figure("book")
    depth_traces(fig, book_frame([(99.0, 1.0), (98.0, 2.0)], [(101.0, 0.5), (102.0, 4.0)]))
    assert list(fig.data[0].x) == [99.0, 98.0] and list(fig.data[0].y) == [1.0, 3.0]
    assert list(fig.data[1].x) == [101.0, 102.0] and list(fig.data[1].y) == [0.5, 4.5]


def test_chart_controls_retarget_and_pause(lab):
    chart = lab.chart("BTCUSDT", "1m")  # no running loop here: refreshed by hand
    assert not chart.live and chart.refreshes == 1
    chart.symbol.value = "ETHUSDT"
    chart.interval_box.value = "5m"
    df = lab.klines("ETHUSDT", "5m").tail(240)
    assert list(chart.figure.data[0].open) == list(df["open"])
    assert chart.figure.layout.title.text == "ETHUSDT 5m"
    assert chart.pause.icon == "pause" and chart.pause.description == "pause"
    chart.pause.value = True
    assert chart.paused and chart.pause.description == "resume" and chart.pause.icon == "play"
    chart.pause.value = False
    assert not chart.paused and chart.pause.icon == "pause" and chart.pause.description == "pause"


async def test_views_update_on_the_loop_throttled_and_detach(lab):
    chart = lab.chart("BTCUSDT", fps=5)
    book = lab.book_chart("BTCUSDT", depth=10, fps=5)
    board = lab.board(fps=5)
    assert chart.live and book.live and board.live
    await asyncio.sleep(1.05)
    assert 4 <= chart.refreshes <= 7  # throttled to about 5 a second
    assert len(book.figure.data[0].x) == 10 and "BTCUSDT" in board.html.value
    other = lab.chart("ETHUSDT", fps=5)  # another cell: both stay live
    again = lab.chart("BTCUSDT", fps=5)  # the first cell is re-run
    await asyncio.sleep(0)
    assert not chart.live and again.live and other.live
    frozen = chart.refreshes
    chart.pause.value = False
    await asyncio.sleep(0.5)
    assert chart.refreshes == frozen
    for view in (again, other, book, board):
        view.close()
    assert not any(v.live for v in (again, book, board))


def test_board_colours_change_and_staleness(lab):
    prices = lab.prices()
    prices.loc["BTCUSDT", "change_pct"] = -1.5
    prices.loc["ETHUSDT", "change_pct"] = 2.0
    prices.loc["ETHUSDT", "age_s"] = 99.0
    html = board_html(prices, stale_after=5)
    btc, eth = html.split("<tr")[2], html.split("<tr")[3]
    assert "#ef5350'>-1.50%" in btc and "color:inherit" in btc
    assert "#26a69a'>+2.00%" in eth and "color:#9e9e9e" in eth


def stopped_with(view, why: str) -> None:
    """``view`` shows it is stopped, and why, and none of its controls can act."""
    assert view.state == "stopped" and view.why == why and not view.live
    assert "stopped" in view.status.value and html.escape(why) in view.status.value
    assert all(c.disabled for c in view.controls)


def test_stopping_the_lab_stops_its_charts_which_say_so():
    with SimExchange(["BTCUSDT"], speed=60, seed=2) as sim:
        lab = Lab(
            ["BTCUSDT"], binance_ws_url=sim.ws_url, binance_rest_url=sim.rest_url, **FAST
        ).start()
        lab.wait_ready(30)

        async def scenario():
            chart = lab.chart("BTCUSDT", fps=10)
            book = lab.book_chart("BTCUSDT", fps=10)
            board = lab.board(fps=10)
            await asyncio.sleep(0.3)
            assert [v.state for v in (chart, book, board)] == ["live"] * 3
            assert "live" in chart.status.value and not any(c.disabled for c in chart.controls)
            assert chart.figure.layout.title.text == "BTCUSDT 1m"
            button = stop_button(lab, sim)
            button.button.click()
            await asyncio.sleep(0)
            assert button.button.disabled and "Lab, SimExchange" in button.done.value
            return chart, book, board

        chart, book, board = asyncio.run(scenario())
        assert not lab.running
        for view in (chart, book, board):
            stopped_with(view, "lab.stop() was called")
        assert chart.figure.layout.title.text == "BTCUSDT 1m — stopped: lab.stop() was called"
        assert book.figure.layout.title.text.endswith(" — stopped: lab.stop() was called")
        assert {chart.pause, chart.symbol, chart.interval_box} == set(chart.controls)
        assert np.isfinite(chart.figure.data[0].close[-1])  # the last picture stays
        chart.pause.value = True  # a stopped chart is not "paused" by a control that lingers
        assert chart.state == "stopped"
        late = lab.chart("BTCUSDT")  # drawn once from what the stopped Lab holds
        stopped_with(late, "the Lab is not running")
        assert late.refreshes == 1 and len(late.figure.data[0].x) > 0


async def test_a_chart_whose_collector_fails_says_stopped_and_why():
    """The venue refuses a symbol: the collector stops with that error, and the chart left
    refreshing on the loop shows it rather than a frozen picture that looks live."""
    with SimExchange(["BTCUSDT"], speed=60, seed=5) as sim:
        lab = Lab(
            ["BTCUSDT", "NOPEUSDT"],
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
            **FAST,
        ).start()
        try:
            chart = lab.chart("BTCUSDT", fps=10)
            for _ in range(300):
                if chart.state == "stopped":
                    break
                await asyncio.sleep(0.1)
            error = lab.summary()["error"]
            assert error and "NOPEUSDT" in error
            stopped_with(chart, f"the collector failed: {error}")
            assert chart.figure.layout.title.text.startswith("BTCUSDT 1m — stopped: the collector")
        finally:
            lab.stop()


def test_pause_shows_paused_and_resume_live(lab):
    chart = lab.book_chart("ETHUSDT", depth=5)
    chart.pause.value = True
    assert chart.state == "paused" and "paused" in chart.status.value
    assert chart.figure.layout.title.text.endswith(" — paused")
    assert not chart.pause.disabled  # a paused chart can still be resumed
    chart.pause.value = False
    assert chart.state == "live" and "live" in chart.status.value
    assert "paused" not in chart.figure.layout.title.text
    chart.close()
    stopped_with(chart, "closed")


def test_charts_fill_their_cell_and_show_prices_at_the_tick_with_units(lab):
    chart = lab.chart("BTCUSDT", "1m")
    book = lab.book_chart("BTCUSDT", depth=5)
    decimals = round(-np.log10(lab.tick_size("BTCUSDT")))  # 0.01 listed by the venue -> 2
    for fig in (chart.figure, book.figure):
        assert fig.layout.autosize and fig.layout.width is None
        assert fig.layout.uirevision == "keep"  # zoom and legend survive refreshes
    layout = chart.figure.layout
    assert layout.yaxis.title.text == "price (USDT)" and layout.yaxis.tickformat == f",.{decimals}f"
    assert chart.figure.data[0].yhoverformat == f",.{decimals}f"
    assert layout.yaxis2.title.text == "volume (BTC)" and layout.xaxis2.title.text == "time (UTC)"
    assert book.figure.layout.xaxis.title.text == "price (USDT)"
    assert book.figure.layout.xaxis.tickformat == f",.{decimals}f"
    assert book.figure.layout.yaxis.title.text == "cumulative quantity (BTC)"
    chart.symbol.value = "ETHUSDT"
    assert chart.figure.layout.yaxis2.title.text == "volume (ETH)"
    chart.close()
    book.close()


def test_a_rerun_cell_replaces_its_chart_and_the_old_one_says_so(lab):
    first = lab.chart("ETHUSDT", "5m")
    again = lab.chart("ETHUSDT", "5m")  # the same cell (no cell id outside a notebook: its key)
    stopped_with(first, "replaced by the chart this cell made when run again")
    assert again.state == "live"
    again.close()


def test_board_right_aligns_prices_at_the_tick(lab):
    prices = lab.prices()
    prices.loc["BTCUSDT", ["last", "bid", "ask"]] = [602.4, 602.42, 602.5]
    html_ = board_html(prices, 5, {"BTCUSDT": 2, "ETHUSDT": 2})
    btc = html_.split("<tr")[2]
    cells = btc.split("<td")[2:5]
    assert [c.split(">")[1].split("<")[0] for c in cells] == ["602.40", "602.42", "602.50"]
    assert all("text-align:right" in c for c in cells)
    assert "font-family:monospace" in html_


def test_a_frame_is_shown_as_a_table_beside_its_attrs(lab):
    book = lab.book("BTCUSDT", depth=3)
    shown = with_attrs(book)._repr_html_()
    assert shown.count("<table") == 2 and "synced" in shown and "last_update_id" in shown
    assert str(book.attrs["last_update_id"]) in shown
    assert "<th>price</th>" in shown or ">price</th>" in shown


def test_derived_prices_are_shown_at_the_instruments_tick(lab):
    """The venue lists the tick (0.01 for the simulator's BTCUSDT): a spread is 0.66, never
    0.659999999995."""
    assert lab.tick_size("BTCUSDT") == 0.01 and lab.price_decimals("BTCUSDT") == 2
    chart = lab.book_chart("BTCUSDT", depth=5)  # no running loop: refreshed by hand
    for _ in range(100):  # the book moves on: compare a refresh with the book it drew
        before = lab.book("BTCUSDT", 1)
        chart.refresh()
        if lab.book("BTCUSDT", 1).attrs["last_update_id"] == before.attrs["last_update_id"]:
            break
    title = chart.figure.layout.title.text
    spread = title.split("spread ")[1]
    assert spread == f"{float(spread):.2f}", title
    assert float(spread) == round(before.price.iloc[1] - before.price.iloc[0], 2)
    chart.close()


VENUES = ["binance", "okx", "bybit", "coinbase"]


def settled(lab, sim, symbol: str) -> None:
    """With the exchange paused, wait until every venue's top of book in the Lab is the
    venue's own (frames still on their way have arrived)."""

    def equal() -> bool:
        for venue in VENUES:
            truth = sim.book(symbol, 1, venue=venue)
            book = lab.book(symbol, 1, exchange=venue)
            if not book.attrs["synced"] or len(book) != 2:
                return False
            if (book.price.iloc[0], book.price.iloc[1]) != (
                truth["bids"][0][0],
                truth["asks"][0][0],
            ):
                return False
        return True

    wait_for(equal, 20, f"every venue's {symbol} top of book equal to the venue's")


def test_venues_chart_draws_each_venue_mid_and_the_consolidated_spread():
    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=60, seed=23) as sim:
        options: dict = {}
        for venue in VENUES:
            options.update(venue_options(sim, venue))
        lab = Lab(
            ["BTCUSDT", "ETHUSDT"],
            exchanges=VENUES,
            channels=["ticker", "book"],
            **{**FAST, **options},
        ).start()
        try:
            lab.wait_ready(60)
            chart = lab.venues_chart("btcusdt", window=60)  # no running loop: refreshed by hand
            assert not chart.live and chart.refreshes == 1 and chart.venues == VENUES
            assert [t.name for t in chart.figure.data[:4]] == VENUES
            title = chart.figure.layout.title.text
            assert title.startswith("BTCUSDT on binance, okx, bybit, coinbase")
            assert "USDT on every venue, no quote equivalence" in title
            for round_ in range(3):
                sim.pause()
                try:
                    settled(lab, sim, "BTCUSDT")
                    chart.refresh()
                    bbo = lab.bbo("BTCUSDT")
                finally:
                    sim.resume()
                for i, venue in enumerate(VENUES):
                    trace = chart.figure.data[i]
                    assert len(trace.y) == len(trace.x) == round_ + 2
                    assert trace.y[-1] == bbo.loc[venue, "mid"], venue
                    assert trace.hovertemplate == f"%{{y:,.2f}}<extra>{venue}</extra>"
                assert chart.figure.layout.yaxis.tickformat == ",.2f"  # 66,305.18, not 66.3k
                consolidated = bbo.attrs["bbo"]
                spread, locked, crossed = chart.figure.data[4:7]
                assert spread.y[-1] == pytest.approx(consolidated["spread_bps"])
                assert spread.customdata[-1] == consolidated["state"] == chart.market_state
                marked = {"locked": locked, "crossed": crossed}.get(consolidated["state"])
                if marked is not None:
                    assert marked.x[-1] == spread.x[-1] and marked.y[-1] == spread.y[-1]
                    assert f"{consolidated['state']} across venues" in (
                        chart.figure.layout.title.text
                    )
                time.sleep(0.3)  # the market moves on between rounds
            for state, trace in (("locked", locked), ("crossed", crossed)):
                want = [y for y, s in zip(spread.y, spread.customdata, strict=True) if s == state]
                assert list(trace.y or []) == want
            every = {v: list(chart.figure.data[i].y) for i, v in enumerate(VENUES)}
            assert all(np.isfinite(every[v]).all() for v in VENUES)

            chart.window = 0.5  # older samples leave the chart
            time.sleep(0.6)
            chart.refresh()
            assert len(chart.figure.data[0].x) == 1 and len(chart.figure.data[4].y) == 1

            chart.pause.value = True
            assert chart.paused and chart.pause.description == "resume"
            chart.pause.value = False

            async def scenario():
                live = lab.venues_chart("ETHUSDT", fps=10)
                await asyncio.sleep(0.5)
                assert live.live and live.refreshes >= 3
                lab.stop()
                await asyncio.sleep(0)
                return live

            live = asyncio.run(scenario())
            assert not live.live and len(live.figure.data[0].y) >= 3
        finally:
            lab.stop()


def test_venues_chart_refuses_a_market_no_venue_collects(lab):
    with pytest.raises(ValueError, match="no venue collects DOGEUSDT"):
        lab.venues_chart("DOGEUSDT")


def test_board_shows_the_active_alerts_and_none_once_resolved(lab):
    """Alerts from the rules themselves (a Watch fed a crossed BTCUSDT book by hand): the row's
    alerts cell names the rule, the list under the table says it; once resolved, neither."""
    from marketlab.watch import Watch
    from marketlab.watch.rules import Observation, Quote

    watch = Watch(crossed_for_s=0, resolve_after_s=1)
    crossed = Observation(quotes=[Quote("binance", "BTCUSDT", 101.0, 100.0)], health=False)
    raised = watch.evaluate(1000.0, crossed)
    assert [a.rule for a in raised] == ["crossed_book"]
    prices = lab.prices()
    shown = board_html(prices, 5, None, watch.frame())
    table, listed = shown.split("</table>")
    rows = table.split("<tr")
    assert ">alerts</th>" in rows[1]
    assert "crossed_book" in rows[2] and "crossed_book" not in rows[3]  # BTCUSDT, ETHUSDT
    assert "crossed_book" in listed and html.escape(raised[0].message) in listed
    calm = Observation(quotes=[Quote("binance", "BTCUSDT", 100.0, 101.0)], health=False)
    watch.evaluate(1001.0, calm)
    resolved = watch.evaluate(1002.5, calm)
    assert [a.state for a in resolved] == ["resolved"]
    after = board_html(prices, 5, None, watch.frame())
    assert "crossed_book" not in after and "no active alert" in after
    assert ">alerts</th>" not in board_html(prices, 5)  # a Lab without rules: no column
