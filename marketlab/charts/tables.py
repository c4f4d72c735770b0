"""Tables for a notebook: a DataFrame shown beside what its ``attrs`` say about it."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import pandas as pd


class FrameWithAttrs:
    """A DataFrame rendered as its table with its ``attrs`` as a second, two-column table
    beside it (a notebook shows ``df.attrs, df`` as a plain tuple otherwise)."""

    def __init__(self, frame: pd.DataFrame, title: str | None = None):
        self.frame = frame
        self.title = title

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{_value(v)}</td></tr>"
            for k, v in self.frame.attrs.items()
        )
        caption = f"<p><b>{html.escape(self.title)}</b></p>" if self.title else ""
        return (
            f"{caption}<div style='display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap'>"
            f"<div>{self.frame.to_html(max_rows=60)}</div>"
            f"<div><table><tr><th colspan=2 style='text-align:left'>attrs</th></tr>{rows}"
            "</table></div></div>"
        )

    def __repr__(self) -> str:
        attrs = "\n".join(f"  {k}: {v!r}" for k, v in self.frame.attrs.items())
        return f"{self.frame!r}\nattrs:\n{attrs}"


def _value(value: Any) -> str:
    if isinstance(value, Mapping):
        inner = "".join(
            f"<tr><td style='text-align:left'>{html.escape(str(k))}</td>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in value.items()
        )
        return f"<table>{inner}</table>"
    return html.escape(str(value))


def with_attrs(frame: pd.DataFrame, title: str | None = None) -> FrameWithAttrs:
    """Show ``frame`` as a table beside its ``attrs`` (``with_attrs(lab.book("BTCUSDT"))``)."""
    return FrameWithAttrs(frame, title)
