"""What the simulator's parts need from the exchange that holds them, as Protocols.

:class:`~marketlab.sim.exchange.SimExchange` builds its protocol faces and mixes in its fault
controls, so it imports their modules; they are typed against these Protocols instead of
against SimExchange, which satisfies them structurally (it never names them). So no module of
the simulator imports ``exchange.py`` back, not even for its types. Each Protocol holds only
what its user reads: the faces read settings and state, they never set them.
"""

from __future__ import annotations

from typing import Protocol

from marketlab.sim.market import Market, VenueMarket


class RestFault(Protocol):
    """A REST error a fault queued for the next request: what a face answers with.

    :class:`~marketlab.sim.binance.rest.ApiError` implements it (the fault controls queue one
    per failed request, for either venue). A Protocol, so :class:`FaultState` needs no import
    of the Binance face, which is typed against this module.
    """

    @property
    def status(self) -> int: ...
    @property
    def code(self) -> int: ...
    @property
    def msg(self) -> str: ...
    @property
    def retry_after(self) -> int | None: ...


class FaultState(Protocol):
    """The fault state a face consults before it serves: a stall, a queued REST error.

    :class:`~marketlab.sim.faults.Faults` implements it. A Protocol, so the faces need no
    import of ``faults.py``, which imports them (its fault controls act on the faces).
    """

    def stalled(self, venue: str = ...) -> bool: ...
    def take_rest_fault(self, venue: str = ...) -> RestFault | None: ...


class FaceHost(Protocol):
    """What every protocol face needs from its exchange: the market it serves (each venue's view
    of it, at the venue's prices), exchange time, the fault state, the counters it adds to, the
    connection age limit.

    :class:`~marketlab.sim.exchange.SimExchange` implements it (and :class:`BinanceHost`,
    :class:`OkxHost`, :class:`BybitHost` and :class:`CoinbaseHost`, which add each venue's own
    settings). It exists so a face is typed without importing ``exchange.py``, which imports
    every face.
    """

    @property
    def market(self) -> Market: ...
    @property
    def faults(self) -> FaultState: ...
    @property
    def stats(self) -> dict[str, int]: ...
    @property
    def max_connection_age(self) -> float: ...
    def now_ms(self) -> int: ...
    def markets_of(self, venue: str) -> dict[str, VenueMarket]: ...


class BinanceHost(FaceHost, Protocol):
    """What the Binance face needs besides: its request weight and ban rules, its WebSocket
    message limit and ping/pong timing.

    :class:`~marketlab.sim.exchange.SimExchange` implements it; see :class:`FaceHost` for why.
    """

    @property
    def weight_limit(self) -> int: ...
    @property
    def violations_before_ban(self) -> int: ...
    @property
    def ban_seconds(self) -> float: ...
    @property
    def message_limit(self) -> int: ...
    @property
    def ping_interval(self) -> float: ...
    @property
    def pong_timeout(self) -> float: ...


class OkxHost(FaceHost, Protocol):
    """What the OKX face needs besides: its idle rule, its book heartbeat and checksums.

    :class:`~marketlab.sim.exchange.SimExchange` implements it; see :class:`FaceHost` for why.
    """

    @property
    def okx_idle_timeout(self) -> float: ...
    @property
    def okx_book_heartbeat(self) -> float: ...
    @property
    def okx_checksums(self) -> bool: ...


class BybitHost(FaceHost, Protocol):
    """What the Bybit face needs besides: how long a connection may go without a ping, and its
    REST limit per IP with the length of the ban beyond it.

    :class:`~marketlab.sim.exchange.SimExchange` implements it; see :class:`FaceHost` for why.
    """

    @property
    def bybit_idle_timeout(self) -> float: ...
    @property
    def bybit_rest_limit(self) -> int: ...
    @property
    def bybit_ban_seconds(self) -> float: ...


class CoinbaseHost(FaceHost, Protocol):
    """What the Coinbase face needs besides: how soon a connection must subscribe, how long a
    channel may stay quiet without ``heartbeats``, its WebSocket message and connection limits
    per IP, its public REST limit per IP and the widest candle window.

    :class:`~marketlab.sim.exchange.SimExchange` implements it; see :class:`FaceHost` for why.
    """

    @property
    def coinbase_subscribe_timeout(self) -> float: ...
    @property
    def coinbase_idle_timeout(self) -> float: ...
    @property
    def coinbase_ws_message_limit(self) -> int: ...
    @property
    def coinbase_ws_connect_limit(self) -> int: ...
    @property
    def coinbase_rest_limit(self) -> int: ...
    @property
    def coinbase_max_candles(self) -> int: ...


class PausableClock(Protocol):
    """What the fault controls need of the exchange's clock: to stop and restart time.

    :class:`~marketlab.sim.exchange.SimClock` implements it. A Protocol, so ``faults.py`` (the
    fault controls mixed into SimExchange) needs no import of ``exchange.py``, built on it.
    """

    def pause(self) -> None: ...
    def resume(self) -> None: ...
