"""One package per venue (see README.md): a sans-I/O ``protocol``, a REST client, a feed on
:mod:`marketlab.stream`, and ``VENUE`` for the registry. Shared here: ``book`` (a local book
from a snapshot and a diff stream), ``errors`` and ``pacing``."""

from marketlab.venues.registry import Venue, get, names

__all__ = ["Venue", "get", "names"]
