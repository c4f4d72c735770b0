"""Watching a Lab: its metrics in Prometheus' format and alert rules on its health and its
markets (``Lab(alerts=Watch())``)."""

from marketlab.watch.alerts import COLUMNS, HEALTH_RULES, MARKET_RULES, RULES, Alert
from marketlab.watch.settings import DEFAULTS, AlertSettings
from marketlab.watch.watch import Watch

__all__ = [
    "COLUMNS",
    "DEFAULTS",
    "HEALTH_RULES",
    "MARKET_RULES",
    "RULES",
    "Alert",
    "AlertSettings",
    "Watch",
]
