"""``marketlab download``: history from Binance's public data archive into the stores.

``marketlab download --symbols BTCUSDT,ETHUSDT --kinds klines:1m,trades,aggTrades --start 2023-01
--end 2025-06 [--market spot|um] --db data/marketlab.sqlite`` fetches the archive's monthly and
daily files (each checked against its ``.CHECKSUM``), imports each row once, audits what came
and fills the holes over REST, then prints what is still missing. USDⓈ-M perpetuals
(``--market um``, or a symbol named ``BTCUSDT-PERP``) are kept as the Lab keeps them.
"""

from __future__ import annotations

import argparse

from marketlab.cli.args import positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download", help="import history from the public data archive (data.binance.vision)"
    )
    p.add_argument("--symbols", required=True, help="e.g. BTCUSDT,ETHUSDT")
    p.add_argument(
        "--kinds",
        default="klines:1m",
        help="klines:<interval>, trades, aggTrades (comma-separated)",
    )
    p.add_argument("--start", required=True, help="a month (2023-01) or a day (2023-01-15), UTC")
    p.add_argument("--end", default=None, help="a month or a day, included (default: --start)")
    p.add_argument("--market", default="spot", choices=("spot", "um"))
    p.add_argument("--db", required=True, help="SQLite file (trades go to the .ticks beside it)")
    p.add_argument("--archive-url", default=None, help="archive base (or $MARKETLAB_ARCHIVE_URL)")
    p.add_argument(
        "--binance-rest-url",
        default=None,
        help="spot REST base for filling holes (or $MARKETLAB_BINANCE_REST_URL)",
    )
    p.add_argument(
        "--binance-perp-rest-url",
        default=None,
        help="USDⓈ-M REST base for filling --market um holes (or $MARKETLAB_BINANCE_PERP_REST_URL)",
    )
    p.add_argument("--parallel", type=positive, default=4, help="downloads at once (default 4)")
    p.add_argument("--no-fill", action="store_true", help="list holes, do not fetch them over REST")


def run_download_command(args: argparse.Namespace) -> int:
    from marketlab.lab.options import venue_url
    from marketlab.store.history import History

    if args.market == "um":  # a perpetual's holes are filled over /fapi/v1
        rest_url = venue_url("binance_perp_rest_url", args.binance_perp_rest_url)
    else:
        rest_url = venue_url("binance_rest_url", args.binance_rest_url)
    report = History(db=args.db).download(
        args.symbols,
        args.kinds,
        args.start,
        args.end,
        market=args.market,
        fill=not args.no_fill,
        archive_url=args.archive_url,
        rest_url=rest_url,
        parallel=int(args.parallel),
    )
    open_holes = report[~report["filled"]]
    print(f"archive imported into {args.db}; {len(report)} hole(s) found, {len(open_holes)} open")
    if len(open_holes):
        cols = ["file", "what", "start", "end", "missing"]
        print(open_holes[cols].to_string(index=False))
    repaired = report[report["filled"] & report["repaired"].notna()]
    if len(repaired):  # one-sided days of trades, their sides set from the aggTrades
        print(f"{len(repaired)} day(s) of trades all of one side, each side set from its aggTrade:")
        print(repaired[["file", "start", "repaired"]].to_string(index=False))
    return 0
