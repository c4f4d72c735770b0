"""How the routes build their answers from the Lab's frames and document their refusals, said
once for every router: a frame's cell as JSON takes it (NaN and NaT are ``null``), and an
operation's error answers, each with the one error model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from fastapi import Response
from pydantic import BaseModel

from marketlab.server import models


def documented_errors(descriptions: Mapping[int, str], *codes: int) -> dict[int | str, Any]:
    """The ``responses=`` of an operation: each code's ``{"detail": "..."}`` model, described
    as the router describes it."""
    return {code: {"model": models.Error, "description": descriptions[code]} for code in codes}


def json_answer(model: BaseModel) -> Response:
    """``model`` sent as FastAPI sends a route's ``response_model``: pydantic's JSON of it, by
    alias, as ``application/json``."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")


def json_cell(value: Any) -> Any:
    """A frame's cell as JSON takes it: NaN and NaT → None, timestamps → datetimes, numpy
    scalars → Python."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def json_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as dicts of :func:`json_cell` values, its named index levels as fields."""
    rows = df.reset_index() if any(df.index.names) else df
    return [{str(k): json_cell(v) for k, v in row.items()} for row in rows.to_dict("records")]
