"""What the bus rule and metric take as a working bus: the publisher's or reader's ``state``
from ``summary()["bus"]``, not the connection alone."""

from __future__ import annotations

import pytest

from marketlab.watch.rules import bus_working


@pytest.mark.parametrize(
    ("bus", "working"),
    [
        ({"state": "up", "connected": True}, True),
        ({"state": "failing", "connected": True}, False),  # no stream leader: nothing lands
        ({"state": "connecting", "connected": False}, False),
        ({"state": "refused", "connected": True}, False),
        ({"state": "caught up", "connected": True}, True),  # a reader
        ({"state": "stale", "connected": True}, False),
        ({"connected": True}, True),  # a status without a state: its connection
        ({"connected": False}, False),
    ],
)
def test_a_bus_works_by_its_state(bus, working):
    assert bus_working(bus) is working
