"""OKX v5 perpetual swaps (``instType`` SWAP), sans-I/O: instrument names, the channels read
and the URL each lives on, subscription messages.

Our name for OKX's ``BTC-USDT-SWAP`` is ``BTCUSDT-PERP``. A swap is collected on the same two
connections as spot: ``books``, ``funding-rate``, ``mark-price``, ``open-interest`` and
``liquidation-orders`` on ``/ws/v5/public``; ``trades-all`` and the candles on
``/ws/v5/business`` (OKX's documentation, the URL Path line of each channel). A channel asked
for on the other URL is refused with code 60018, so every topic knows its URL.

``liquidation-orders`` is subscribed per instrument type (``{"channel": "liquidation-orders",
"instType": "SWAP"}``), not per instrument: its pushes carry every swap's liquidations and the
reader keeps those of the instruments it was told of. OKX says of it that it "doesn't represent
the total number of liquidations": it is a sample.

Sizes on every swap channel are counted in contracts; a contract is ``ctVal`` × ``ctMult`` of
the base asset (``/api/v5/public/instruments?instType=SWAP``), which is how the readers turn
them into base quantities.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from marketlab.records import Interval, is_perpetual, perpetual_of, underlying_of
from marketlab.venues.okx.protocol import bar, inst_id, interval_of_bar

SWAP_SUFFIX = "-SWAP"
LIQUIDATION_CHANNEL = "liquidation-orders"
INDEX_CHANNEL = "index-tickers"  # named by the index (the swap's underlying), not the swap
# Our channel names of a perpetual → OKX's (klines are ``candle<bar>``)
PERP_CHANNELS = {
    "trades": "trades-all",
    "book": "books",
    "mark": "mark-price",
    "funding": "funding-rate",
    "open_interest": "open-interest",
    "liquidations": LIQUIDATION_CHANNEL,
}
BUSINESS_CHANNELS = ("trades-all",)  # and every candle channel
FUNDING_RATE_HISTORY_LIMIT = 400  # rows per /public/funding-rate-history request


def swap_inst_id(symbol: str) -> str:
    """OKX's name of our perpetual (``BTCUSDT-PERP`` → ``BTC-USDT-SWAP``); ``ValueError`` for a
    name that is not a perpetual's, so a spot symbol never reaches a swap channel."""
    if not isinstance(symbol, str) or not is_perpetual(symbol.strip().upper()):
        raise ValueError(f"{symbol!r} is not a perpetual (expected a name such as BTCUSDT-PERP)")
    return inst_id(underlying_of(perpetual_of(symbol))) + SWAP_SUFFIX


def index_inst_id(symbol: str) -> str:
    """The name of our perpetual's index on OKX, its underlying (``BTCUSDT-PERP`` →
    ``BTC-USDT``); ``ValueError`` for a name that is not a perpetual's."""
    return swap_inst_id(symbol)[: -len(SWAP_SUFFIX)]


def perp_symbol_of_index(inst: str) -> str:
    """Our perpetual whose index OKX names ``inst`` (``BTC-USDT`` → ``BTCUSDT-PERP``);
    ``ValueError`` for a name that is no index of a pair."""
    if not isinstance(inst, str) or inst.count("-") != 1:
        raise ValueError(f"{inst!r} is not an OKX index (expected a name such as BTC-USDT)")
    return perpetual_of(inst)


def perp_symbol_of(inst: str) -> str:
    """Our name of an OKX swap (``BTC-USDT-SWAP`` → ``BTCUSDT-PERP``); ``ValueError`` for an
    instrument that is not a swap."""
    if not isinstance(inst, str) or not inst.endswith(SWAP_SUFFIX) or inst.count("-") != 2:
        raise ValueError(f"{inst!r} is not an OKX swap (expected a name such as BTC-USDT-SWAP)")
    return perpetual_of(inst[: -len(SWAP_SUFFIX)])


@dataclass(frozen=True, slots=True)
class PerpTopic:
    """One subscription of a swap channel: ``inst_id`` is the swap's (empty for
    ``liquidation-orders``, which is subscribed for every swap at once)."""

    channel: str
    inst_id: str = ""

    @property
    def business(self) -> bool:
        """Whether the channel lives on ``/ws/v5/business`` (else ``/ws/v5/public``)."""
        return self.channel.startswith("candle") or self.channel in BUSINESS_CHANNELS

    @property
    def symbol(self) -> str | None:
        if not self.inst_id:
            return None
        if self.channel == INDEX_CHANNEL:
            return perp_symbol_of_index(self.inst_id)
        return perp_symbol_of(self.inst_id)

    @property
    def interval(self) -> Interval | None:
        return interval_of_bar(self.channel[6:]) if self.channel.startswith("candle") else None

    def arg(self) -> dict[str, str]:
        if self.channel == LIQUIDATION_CHANNEL:
            return {"channel": self.channel, "instType": "SWAP"}
        return {"channel": self.channel, "instId": self.inst_id}


def perp_topics_for(
    symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str]
) -> list[PerpTopic]:
    """The subscriptions for our channel names of perpetuals (``klines`` one per interval;
    ``liquidations`` once for all of them; ``mark`` with its index's ``index-tickers``), or
    ``ValueError`` naming what is not read here."""
    unknown = [c for c in channels if c not in PERP_CHANNELS and c != "klines"]
    if unknown:
        raise ValueError(
            f"channel(s) {unknown} not collected for OKX swaps: expected some of "
            f"{', '.join([*PERP_CHANNELS, 'klines'])}"
        )
    bars = [bar(iv) for iv in intervals] if "klines" in channels else []
    out: list[PerpTopic] = []
    for s in symbols:
        inst = swap_inst_id(s)
        out.extend(
            PerpTopic(PERP_CHANNELS[c], inst)
            for c in channels
            if c in PERP_CHANNELS and c != "liquidations"
        )
        if "mark" in channels:
            out.append(PerpTopic(INDEX_CHANNEL, index_inst_id(s)))
        out.extend(PerpTopic(f"candle{b}", inst) for b in bars)
    if "liquidations" in channels and symbols:
        out.append(PerpTopic(LIQUIDATION_CHANNEL))
    return out


def subscribe_message(topics: Iterable[PerpTopic]) -> bytes:
    return msgspec.json.encode({"op": "subscribe", "args": [t.arg() for t in topics]})


def unsubscribe_message(topics: Iterable[PerpTopic]) -> bytes:
    return msgspec.json.encode({"op": "unsubscribe", "args": [t.arg() for t in topics]})
