"""Response models: what every field of the API means, for ``/docs`` and for clients."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, WithJsonSchema, field_validator


class Price(BaseModel):
    symbol: str = Field(description="Exchange symbol, e.g. BTCUSDT")
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
    prices: list[Price]
    missing: list[str] = Field(description="Requested symbols with no price yet")


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
    quote_volume: float
    trades: int = Field(description="Number of trades; -1 where the venue does not say (OKX)")
    taker_buy_volume: float | None = Field(description="null where the venue does not say (OKX)")
    taker_buy_quote_volume: float | None = Field(
        description="null where the venue does not say (OKX)"
    )
    close_time: datetime
    closed: bool = Field(description="False for the candle still open")


class Klines(BaseModel):
    symbol: str
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


class Summary(BaseModel):
    running: bool
    source: str | None = Field(description="ws or rest: where the collector's data comes from now")
    symbols: list[SymbolSummary]


class StreamStatus(BaseModel):
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


class Status(BaseModel):
    running: bool
    source: str | None
    exchange: str
    symbols: list[str]
    intervals: list[str]
    reconnects: int
    bad_frames: int
    websocket_clients: int
    streams: list[StreamStatus]
    error: str | None = Field(None, description="What stopped collection, in the venue's words")
    store: StoreStatus | None = Field(None, description="The history store (null without db=)")
    bus: dict[str, Any] | None = Field(
        None,
        description="The NATS JetStream bus: what a publishing collector holds and has "
        "published (connected, published, held, dropped), "
        "or where a reader is (position, caught_up)",
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


class Health(BaseModel):
    status: Literal["ok"]
    running: bool


class Control(BaseModel):
    running: bool
    message: str
