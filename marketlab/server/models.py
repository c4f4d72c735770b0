"""Response models: what every field of the API means, for ``/docs`` and for clients."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, WithJsonSchema, field_validator


class Price(BaseModel):
    symbol: str = Field(description="Exchange symbol, e.g. BTCUSDT")
    exchange: str = Field(description="The venue collected from, e.g. binance")
    last: float | None = Field(description="Last trade price")
    bid: float | None = Field(description="Best bid from the 24h ticker")
    ask: float | None = Field(description="Best ask from the 24h ticker")
    change_pct: float | None = Field(description="24-hour price change, percent")
    volume: float | None = Field(description="24-hour base-asset volume")
    event_time: AwareDatetime = Field(description="Exchange time of the newest update (UTC)")
    received_at: AwareDatetime = Field(description="When the newest update arrived here (UTC)")
    age_s: float = Field(description="Seconds since the newest update arrived")
    source: str = Field(
        description="ws: live stream; rest: polled while the stream is down; prefixed with the "
        "fallback venue while failed over (okx:ws)",
        pattern=r"^(?:[a-z]+:)?(?:ws|rest)$",
    )

    @field_validator("event_time", "received_at", mode="before")
    @classmethod
    def _from_epoch_ms(cls, value: object) -> object:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value / 1000, UTC)
        return value


class Prices(BaseModel):
    prices: list[Price] = Field(description="Venue by venue (the first venue first), per symbol")
    missing: list[str] = Field(
        description="Requested symbols with no price yet (on some venue that collects them)"
    )
    missing_by_exchange: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per venue, the requested symbols it collects but has no price of yet",
    )


# A book level as a [price, quantity] pair, the way exchanges publish them and the WebSocket
# sends them: two numbers (a plain array schema, which every OpenAPI tool reads; tuple schemas
# with prefixItems are still refused by some).
Level = Annotated[
    tuple[float, float],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 2,
            "description": "[price, quantity]",
        }
    ),
]


class Error(BaseModel):
    """Every 4xx answer: what was wrong and what would be accepted."""

    detail: str = Field(description="What was refused and why, e.g. \"invalid interval '7m': ...\"")


class Depth(BaseModel):
    symbol: str
    exchange: str = Field(
        description="The venue whose book this is (its fallback venue's while failed over)"
    )
    synced: bool = Field(
        description="True when the book provably equals the exchange's; false while it resyncs "
        "(bids and asks are then empty and reason says why)"
    )
    reason: str = Field("", description="Why the book is out of sync (empty while synced)")
    verified: str = Field(
        "",
        description="How the book is known to equal the exchange's: update id chain, seqId "
        "chain, seqId chain + checksum, or REST snapshot while polled",
    )
    last_update_id: int = Field(
        description="The exchange's book update id this book equals (0 while out of sync)"
    )
    bids: list[Level] = Field(description="Best first")
    asks: list[Level] = Field(description="Best first")
    spread: float | None = Field(description="Best ask minus best bid")
    mid: float | None = Field(description="Midpoint of the best bid and ask")


class Candle(BaseModel):
    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = Field(description="Base-asset volume")
    quote_volume: float | None = Field(
        description="Quote-asset volume; null where the venue does not say (Coinbase)"
    )
    trades: int = Field(
        description="Number of trades; -1 where the venue does not say (OKX, Bybit, Coinbase)"
    )
    taker_buy_volume: float | None = Field(
        description="null where the venue does not say (OKX, Bybit, Coinbase)"
    )
    taker_buy_quote_volume: float | None = Field(
        description="null where the venue does not say (OKX, Bybit, Coinbase)"
    )
    close_time: datetime
    closed: bool = Field(description="False for the candle still open")


class Klines(BaseModel):
    symbol: str
    exchange: str = Field(description="The venue whose series this is")
    interval: str
    source: Literal["live", "history"] = Field(
        description="live: the Lab's rolling frame; history: the store"
    )
    klines: list[Candle]


class SymbolSummary(BaseModel):
    symbol: str
    last: float | None
    change_pct: float | None
    volume: float | None
    spread: float | None = Field(
        description="From the synced order book; null while it is out of sync"
    )
    spread_bps: float | None = Field(description="Spread in basis points of the mid")
    book_synced: bool
    age_s: float | None = Field(description="Seconds since the newest price update")
    source: str | None


class VenueSummary(BaseModel):
    running: bool = Field(description="False once this venue stopped collecting")
    source: str | None = Field(description="ws or rest: where this venue's data comes from now")
    symbols: list[SymbolSummary]


class Summary(BaseModel):
    running: bool
    source: str | None = Field(description="ws or rest: where the collector's data comes from now")
    exchange: str = Field(description="The venue the top-level fields describe")
    exchanges: list[str] = Field(description="Every venue collected, the default first")
    symbols: list[SymbolSummary]
    venues: dict[str, VenueSummary] | None = Field(
        None,
        description="Every venue's own summary (several venues, no exchange= given); "
        "null otherwise",
    )


class StreamStatus(BaseModel):
    exchange: str = Field(description="The venue of this stream")
    symbol: str
    stream: str
    connected: bool
    source: str
    messages: int
    age_s: float | None
    reconnects: int
    book: str
    verified: str = Field(
        "",
        description="How a synced book is known to equal the venue's: update id chain, "
        "seqId chain, seqId chain + checksum, or REST snapshot while polled",
    )
    backfilled: int
    gaps: int


class StoreStatus(BaseModel):
    state: Literal["ok", "failing"] = Field(description="ok, or failing (writes are retried)")
    failing_since: str | None = Field(description="When writes started failing (UTC, ISO 8601)")
    error: str = Field(description="Why, e.g. 'disk full: database or disk is full'")
    pending: int = Field(description="Candles waiting to be written")
    dropped: int = Field(description="Candles let go of because too many were pending")
    awaiting_backfill: int = Field(description="Dropped candles not yet fetched again over REST")
    written: int = Field(description="Candles written since the Lab started")
    path: str


class VenueStatus(BaseModel):
    running: bool = Field(description="False once this venue stopped collecting")
    source: str | None
    symbols: list[str]
    reconnects: int
    bad_frames: int
    error: str | None = Field(None, description="What stopped this venue, in its words")
    bus: dict[str, Any] | None = Field(None, description="This venue's bus publisher or reader")


class Status(BaseModel):
    running: bool
    source: str | None
    exchange: str = Field(description="The venue the top-level fields describe")
    exchanges: list[str] = Field(description="Every venue collected, the default first")
    symbols: list[str]
    intervals: list[str]
    reconnects: int
    bad_frames: int
    websocket_clients: int
    streams: list[StreamStatus] = Field(
        description="Per venue, symbol and stream: every venue's without exchange=, else that "
        "venue's"
    )
    error: str | None = Field(None, description="What stopped collection, in the venue's words")
    store: StoreStatus | None = Field(None, description="The history store (null without db=)")
    bus: dict[str, Any] | None = Field(
        None,
        description="The NATS JetStream bus: what a publishing collector holds and has "
        "published (connected, published, held, dropped), "
        "or where a reader is (position, caught_up)",
    )
    venues: dict[str, VenueStatus] | None = Field(
        None,
        description="Every venue's own state (several venues, no exchange= given); null otherwise",
    )


class All(BaseModel):
    summary: Summary
    prices: Prices
    depth: dict[str, Depth | None] = Field(
        description="Top 5 levels per symbol; null while out of sync"
    )
    klines: dict[str, dict[str, Candle | None]] = Field(
        description="Newest candle per symbol and interval"
    )


class VenueTop(BaseModel):
    exchange: str
    bid: float | None = Field(description="The venue's best bid (null: none, or out of sync)")
    bid_qty: float | None
    ask: float | None = Field(description="The venue's best ask (null: none, or out of sync)")
    ask_qty: float | None
    mid: float | None
    spread_bps: float | None = Field(description="The venue's own spread, bps of its mid")
    synced: bool
    reason: str = Field(description="Why the venue takes no part (empty when it does)")
    best_bid: bool = Field(description="This venue holds the consolidated best bid")
    best_ask: bool = Field(description="This venue holds the consolidated best ask")


class BBO(BaseModel):
    """The best bid and ask across the venues whose books are synced (``Lab.bbo``)."""

    symbol: str = Field(description="The symbol asked for")
    best_bid: float | None
    best_bid_venue: str | None
    bid_qty: float | None = Field(description="The best bid venue's size at it")
    best_ask: float | None
    best_ask_venue: str | None
    ask_qty: float | None = Field(description="The best ask venue's size at it")
    mid: float | None
    spread: float | None = Field(description="Best ask minus best bid (negative when crossed)")
    spread_bps: float | None
    state: Literal["normal", "locked", "crossed", "one-sided", "empty"] = Field(
        description="locked: best bid == best ask across venues; crossed: best bid > best ask"
    )
    venues: list[str] = Field(description="The venues that took part, in order")
    excluded: dict[str, str] = Field(description="Venues left out, with why (out of sync, empty)")
    symbols: dict[str, str] = Field(description="Each venue's symbol for this market")
    quotes: dict[str, str] = Field(
        description="The quote each venue is compared in: USDT, or 'USD as USDT' where declared"
    )
    per_venue: list[VenueTop] = Field(description="Each venue's own top of book")


class BookLevel(BaseModel):
    price: float
    qty: float
    exchange: str = Field(description="The venue resting this level")
    cum_qty: float = Field(description="Sum of this side's sizes from its best level out")


class ConsolidatedBook(BaseModel):
    """Every synced venue's levels merged into one book (``Lab.consolidated_book``)."""

    symbol: str = Field(description="The symbol asked for")
    depth: int = Field(description="Levels a side at most")
    bids: list[BookLevel] = Field(description="Best (highest) first")
    asks: list[BookLevel] = Field(description="Best (lowest) first")
    venues: list[str] = Field(description="The venues that took part")
    excluded: dict[str, str] = Field(description="Venues left out, with why")
    crossed: bool = Field(description="One venue's best bid reaches another's best ask")
    symbols: dict[str, str] = Field(description="Each venue's symbol for this market")
    quotes: dict[str, str] = Field(description="The quote each venue is compared in")


class DivergenceRow(BaseModel):
    symbol: str = Field(description="The first venue's symbol for the market")
    exchange: str
    mid: float | None = Field(description="The venue's mid (book, else ticker); null: none")
    median: float | None = Field(description="The median mid of the venues with one")
    bps: float | None = Field(
        description="(mid / median - 1) * 1e4; null with fewer than two venues' mids"
    )
    venues: int = Field(description="How many venues had a mid")


class Divergence(BaseModel):
    """Each venue's mid against the venues' median, per market (``Lab.divergence``)."""

    rows: list[DivergenceRow] = Field(description="Per symbol, per venue")
    markets: dict[str, dict[str, str]] = Field(description="{symbol: {venue: its symbol}}")
    quotes: dict[str, dict[str, str]] = Field(description="{symbol: {venue: quote as compared}}")


class FundingRow(BaseModel):
    exchange: str
    symbol: str = Field(description="The perpetual, e.g. BTCUSDT-PERP")
    funding_rate: float | None = Field(
        description="The rate of the funding period now running (0.0001 = 0.01 %)"
    )
    annualized_pct: float | None = Field(
        description="The rate paid every funding period for a year, percent"
    )
    next_funding_time: AwareDatetime | None = Field(
        description="When the running period's funding is paid (UTC); null where not said"
    )
    mark: float | None = Field(description="The mark price (null where not sent yet)")
    index: float | None = Field(description="The index price (null where the venue sends none)")
    premium_bps: float | None = Field(description="(mark / index - 1) * 1e4")
    event_time: AwareDatetime = Field(description="Exchange time of the newest update (UTC)")


class Funding(BaseModel):
    """Every perpetual's funding now running (``Lab.funding``)."""

    funding_hours: int = Field(description="The funding period the annualized rates assume")
    rows: list[FundingRow] = Field(description="Per venue (the first venue first), per perpetual")


class OpenInterestReading(BaseModel):
    time: AwareDatetime
    open_interest: float = Field(description="In the base asset, on every venue")
    value: float | None = Field(
        description="In the quote asset where the venue gives it (null where not)"
    )


class OpenInterest(BaseModel):
    """A perpetual's open interest readings, oldest first (``Lab.open_interest``)."""

    symbol: str
    exchange: str
    readings: list[OpenInterestReading]


class LiquidationRow(BaseModel):
    time: AwareDatetime
    side: Literal["long", "short"] = Field(description="The side of the position liquidated")
    price: float = Field(description="Average fill price")
    qty: float = Field(description="Filled quantity, base asset")
    order_price: float | None = Field(description="The liquidation order's limit price")
    notional: float = Field(description="price * qty, quote asset")


class Liquidations(BaseModel):
    """A perpetual's liquidations the venue sent, oldest first (``Lab.liquidations``)."""

    symbol: str
    exchange: str
    sampled: bool = Field(
        description="The venue sends a sample, not every liquidation (Binance: the latest per "
        "symbol per second): a count is then a lower bound"
    )
    liquidations: list[LiquidationRow]


class BasisRow(BaseModel):
    exchange: str = Field(description="The perpetual's venue")
    spot_exchange: str = Field(
        description="The spot mid's venue, or 'median' for the median of every venue's spot mid"
    )
    spot_symbol: str = Field(description="The spot symbol on spot_exchange ('' for the median)")
    spot_mid: float | None
    perp_mid: float | None = Field(description="The perpetual's mid (book, else ticker)")
    mark: float | None
    basis_bps: float | None = Field(description="(perp_mid / spot_mid - 1) * 1e4")
    mark_basis_bps: float | None = Field(description="(mark / spot_mid - 1) * 1e4")
    basis_annualized_pct: float | None = Field(
        description="basis_bps as if paid every funding period for a year, percent"
    )
    mark_basis_annualized_pct: float | None
    funding_rate: float | None = Field(description="The perpetual's funding rate now running")
    funding_annualized_pct: float | None


class Basis(BaseModel):
    """A perpetual against every venue's spot mid and their median (``Lab.basis_across``)."""

    symbol: str = Field(description="The perpetual, e.g. BTCUSDT-PERP")
    spot_symbols: dict[str, str] = Field(description="Each venue's spot symbol for its pair")
    median_of: list[str] = Field(description="The venues whose spot mid made the median")
    funding_hours: int = Field(description="The funding period the annualized values assume")
    rows: list[BasisRow] = Field(description="Per perpetual venue, per spot venue, then median")


class Health(BaseModel):
    status: Literal["ok"]
    running: bool


class Control(BaseModel):
    running: bool
    message: str
