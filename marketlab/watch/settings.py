"""The thresholds of every alert rule, with their defaults: given as ``Watch(**thresholds)``,
``Lab(alerts=Watch(...))`` or ``marketlab.toml``'s ``[alerts]`` table, each checked when given."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from marketlab.settings import positive, url


@dataclass(frozen=True)
class AlertSettings:
    """Every threshold, in the units its name says. A rule is off when its threshold is 0
    (where 0 would otherwise fire all the time)."""

    # how often the rules look (seconds of wall time); how long a rule must stay quiet before
    # its alert is resolved (the hysteresis that keeps an alert from flapping)
    interval_s: float = 0.5
    resolve_after_s: float = 5.0
    health_interval_s: float = 2.0  # how often the health rules read the Lab's status
    # health
    silence_s: float = 60.0  # a stream silent this long while its venue is connected
    book_unsynced_s: float = 30.0  # a book out of sync this long
    max_reconnects: int = 5  # more reconnects than this ...
    reconnect_window_s: float = 600.0  # ... within this window
    store_failing_s: float = 10.0  # the store unable to write this long
    bus_down_s: float = 30.0  # the bus publisher disconnected this long
    rest_limited_window_s: float = 300.0  # any 429/418 answer within this window
    # market
    window: int = 300  # samples in every rolling window (one sample per interval_s)
    min_samples: int = 30  # samples a window needs before its rule judges anything
    jump_z: float = 10.0  # a mid's return this many robust sigmas from the window's median ...
    jump_min_bps: float = 10.0  # ... and at least this large
    spread_factor: float = 5.0  # a spread this many times its rolling median ...
    # ... and at least this wide: a cheap coin's book one tick (2 bps) wide is often a few
    # ticks wide for a second or two, which is no blowout
    spread_min_bps: float = 30.0
    spread_for_s: float = 0.5  # ... for this long (one wide quote is no blowout)
    volume_factor: float = 20.0  # volume traded over volume_span_s this many times the mean
    volume_span_s: float = 2.0  # ... of such spans (one large trade in a quiet second is none)
    outside_book_bps: float = 50.0  # a trade this far outside the best bid/ask
    crossed_for_s: float = 0.5  # best bid >= best ask for this long
    divergence_bps: float = 50.0  # a venue's mid this far from the venues' median ...
    divergence_for_s: float = 2.0  # ... for this long
    # delivery
    webhook: str | None = None  # POSTed every raise and resolve as JSON
    webhook_queue: int = 1000  # alerts waiting for the webhook at most (more are dropped)
    webhook_attempts: int = 5  # tries per alert, with backoff between them
    recent: int = 500  # resolved alerts kept for lab.alerts()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "webhook":
                if value is not None:
                    url("alerts webhook", value, ("http", "https"))
            elif f.type == "int":
                positive(f"alerts {f.name}", value, integer=True, zero=f.name == "max_reconnects")
            else:
                zero = f.name not in (
                    "interval_s",
                    "health_interval_s",
                    "reconnect_window_s",
                    "rest_limited_window_s",
                )
                positive(f"alerts {f.name}", value, zero=zero)
        if self.min_samples > self.window:
            raise ValueError(
                f"alerts min_samples ({self.min_samples}) cannot exceed window ({self.window})"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "alerts") -> AlertSettings:
        """Settings from a table (``marketlab.toml``'s ``[alerts]``): unknown keys refused,
        naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(unknown)} (expected some of "
                f"{', '.join(sorted(known))})"
            )
        return replace(cls(), **dict(values))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULTS = AlertSettings()


def off(threshold: float) -> bool:
    """A rule whose threshold is 0 (or not finite) is off."""
    return threshold == 0 or not math.isfinite(threshold)
