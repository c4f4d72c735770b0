"""Alerts: what a rule finds (a :class:`Finding`), and the book that turns findings into
alerts raised once and resolved once (:class:`AlertBook`). Sans-I/O: every time comes in as an
argument, nothing here reads a clock."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

# The columns of lab.alerts(), in order.
COLUMNS = [
    "time",
    "venue",
    "symbol",
    "rule",
    "kind",
    "value",
    "threshold",
    "message",
    "state",
    "resolved_at",
    "stream",
]

HEALTH_RULES = (
    "silence",
    "book_unsynced",
    "reconnects",
    "store_failing",
    "trade_holes",
    "bus_down",
    "rest_limited",
)
MARKET_RULES = (
    "price_jump",
    "spread_blowout",
    "volume_burst",
    "trade_outside_book",
    "crossed_book",
    "divergence",
)
RULES = HEALTH_RULES + MARKET_RULES


@dataclass(frozen=True)
class Finding:
    """A rule firing on one subject at one evaluation: ``value`` beyond ``threshold``."""

    rule: str
    venue: str
    symbol: str
    value: float
    threshold: float
    message: str
    stream: str = ""  # the stream, for rules about one (silence)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.rule, self.venue, self.symbol, self.stream)


@dataclass(frozen=True)
class Alert:
    """One alert, as delivered: raised (``state="active"``) and later resolved (the same
    alert with ``state="resolved"`` and ``resolved_at``). Times are epoch seconds."""

    time: float
    venue: str
    symbol: str
    rule: str
    value: float
    threshold: float
    message: str
    state: str = "active"
    resolved_at: float | None = None
    stream: str = ""

    @property
    def kind(self) -> str:
        return "health" if self.rule in HEALTH_RULES else "market"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the webhook's body, the API's and WebSocket's rows)."""
        return {**asdict(self), "kind": self.kind}


class AlertBook:
    """Active alerts and recent resolved ones. A finding raises its alert the first time (and
    updates its value after); the alert is resolved once its rule has not found it for
    ``resolve_after_s`` seconds, so a value hovering at the threshold does not flap."""

    def __init__(self, resolve_after_s: float, recent: int = 500):
        self.resolve_after_s = resolve_after_s
        self.active: dict[tuple[str, str, str, str], Alert] = {}
        self.recent: deque[Alert] = deque(maxlen=recent)
        self.raised: Counter[str] = Counter()
        self._quiet_since: dict[tuple[str, str, str, str], float] = {}

    def update(
        self, now: float, findings: Iterable[Finding], judged: Collection[str] = RULES
    ) -> list[Alert]:
        """Take one evaluation's findings (of the rules ``judged``: an alert of another rule
        is neither found nor quiet); return the alerts raised and resolved by it (in that
        order): what is to be delivered."""
        events: list[Alert] = []
        seen = set()
        for finding in findings:
            key = finding.key
            seen.add(key)
            self._quiet_since.pop(key, None)
            alert = self.active.get(key)
            if alert is None:
                alert = Alert(
                    now,
                    finding.venue,
                    finding.symbol,
                    finding.rule,
                    finding.value,
                    finding.threshold,
                    finding.message,
                    stream=finding.stream,
                )
                self.active[key] = alert
                self.raised[finding.rule] += 1
                events.append(alert)
        for key in [k for k in self.active if k not in seen and k[0] in judged]:
            since = self._quiet_since.setdefault(key, now)
            if now - since >= self.resolve_after_s:
                alert = self.active.pop(key)
                del self._quiet_since[key]
                done = replace(alert, state="resolved", resolved_at=now)
                self.recent.append(done)
                events.append(done)
        return events

    def rows(self) -> list[dict[str, Any]]:
        """Active alerts, then recent resolved ones newest first, as dicts."""
        alerts = sorted(self.active.values(), key=lambda a: a.time, reverse=True)
        return [a.as_dict() for a in [*alerts, *reversed(self.recent)]]

    def active_counts(self) -> Counter[str]:
        return Counter(a.rule for a in self.active.values())
