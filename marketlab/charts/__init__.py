"""Live plotly charts and ipywidgets controls over a running Lab, for Jupyter.

Each chart is a ``FigureWidget`` updated in place (one batched message per refresh, never a
new figure) by a task on the notebook's event loop, at most ``fps`` times a second however
fast data arrives, and shows its state: live, paused, or stopped with why (its controls then
disabled). Re-running the cell that made a chart replaces it: the old one says so and stops
updating; ``lab.stop()`` stops them all. Outside a running event loop (a script), call
``refresh()`` yourself. Charts import nothing of the Lab's: each reads what its Protocol names.
"""

from marketlab.charts.figures import (
    VENUE_COLOURS,
    candle_figure,
    candle_traces,
    depth_figure,
    depth_traces,
    price_format,
    venue_colour,
    venues_figure,
)
from marketlab.charts.live import (
    LIVE,
    PAUSED,
    STOPPED,
    LiveView,
    StopButton,
    live_views,
    stop_button,
)
from marketlab.charts.market import BookChart, CandleChart, LabLike, PriceBoard, board_html
from marketlab.charts.perpetuals import (
    basis_figure,
    funding_figure,
    liquidations_figure,
    open_interest_figure,
)
from marketlab.charts.tables import FrameWithAttrs, with_attrs
from marketlab.charts.venues import VenuesChart, VenuesLabLike, quotes_text

__all__ = [
    "LIVE",
    "PAUSED",
    "STOPPED",
    "VENUE_COLOURS",
    "BookChart",
    "CandleChart",
    "FrameWithAttrs",
    "LabLike",
    "LiveView",
    "PriceBoard",
    "StopButton",
    "VenuesChart",
    "VenuesLabLike",
    "basis_figure",
    "board_html",
    "candle_figure",
    "candle_traces",
    "depth_figure",
    "depth_traces",
    "funding_figure",
    "liquidations_figure",
    "live_views",
    "open_interest_figure",
    "price_format",
    "quotes_text",
    "stop_button",
    "venue_colour",
    "venues_figure",
    "with_attrs",
]
