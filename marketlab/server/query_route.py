"""A route for the reads asked for many times a second: declared, documented and validated as
any FastAPI route is, served with less work per request.

FastAPI's general request handler looks at each parameter's annotation again on every request
(is it a sequence, a model, a form field?) before it validates the value: for ``/prices`` and
its two optional query parameters that reflection was about a third of the request's time
inside the app. A :class:`QueryRoute` does it once, when the route is declared, and then each
request is: read each query parameter, validate it with the validator built from its own
declaration (the same pattern, the same error), call the endpoint.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

# the defaults a QueryRoute takes: values no request can change, so one serves every request
_IMMUTABLE = (type(None), str, int, float, bool)


@dataclass(frozen=True)
class QueryParameter:
    """One declared query parameter: its Python name, its name in the URL, its default and
    the validator of its declared type and constraints."""

    name: str
    alias: str
    default: Any
    validator: TypeAdapter[Any]


def declared_type(field: FieldInfo) -> Any:
    """A parameter's type with its constraints (pattern, bounds...), as pydantic validates it."""
    return Annotated[(field.annotation, *field.metadata)]


class QueryRoute(APIRoute):
    """An ``async def`` endpoint of query parameters only, returning its own
    :class:`~fastapi.Response`.

    What FastAPI says of the route is unchanged: the OpenAPI document comes from the
    declaration (the parameters' types, patterns and descriptions, ``response_model=`` and
    ``responses=``), a value the declaration forbids is a :class:`RequestValidationError` with
    FastAPI's location (``("query", name)``), handled by the app's handler as any other, a
    parameter given twice is taken at its last value and one not given is its default. An
    endpoint with path, header, cookie or body parameters, or dependencies, or a parameter
    with a ``validation_alias`` or whose default is not None, a string, a number or a bool, is
    refused when declared: those are FastAPI's general handler's to serve. (FastAPI's own
    telemetry of a handler's steps is not recorded for a QueryRoute.)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler of each request (FastAPI asks for it once, while the route is built)."""
        endpoint, path, declared = self.endpoint, self.path, self.dependant
        if not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"{path}: a QueryRoute's endpoint is an async def")
        if (
            declared.path_params
            or declared.header_params
            or declared.cookie_params
            or declared.body_params
            or declared.dependencies
        ):
            raise TypeError(f"{path}: a QueryRoute takes query parameters only")
        for field in declared.query_params:
            if field.field_info.validation_alias is not None:
                raise TypeError(f"{path}: a QueryRoute reads a parameter by its alias only")
            if field.field_info.is_required() or not isinstance(field.default, _IMMUTABLE):
                raise TypeError(
                    f"{path}: a QueryRoute's query parameter {field.name} has a default of "
                    "None, a string, a number or a bool (taken as is, shared by every request)"
                )
        parameters = [
            QueryParameter(
                name=field.name,
                alias=field.alias,
                default=field.default,
                validator=TypeAdapter(declared_type(field.field_info)),
            )
            for field in declared.query_params
        ]
        defaults = {parameter.name: parameter.default for parameter in parameters}

        async def handle(request: Request) -> Response:
            if not request.scope["query_string"]:  # every parameter at its default
                return await answer(defaults)
            received = request.query_params
            values: dict[str, Any] = {}
            errors: list[dict[str, Any]] = []
            for parameter in parameters:
                raw = received.get(parameter.alias)
                if raw is None:
                    values[parameter.name] = parameter.default
                    continue
                try:
                    values[parameter.name] = parameter.validator.validate_python(raw)
                except ValidationError as exc:
                    where = ("query", parameter.alias)
                    errors += [
                        {**error, "loc": (*where, *error["loc"])}
                        for error in exc.errors(include_url=False)
                    ]
            if errors:
                raise RequestValidationError(errors)
            return await answer(values)

        async def answer(values: dict[str, Any]) -> Response:
            response = await endpoint(**values)
            if not isinstance(response, Response):
                raise TypeError(f"{path}: a QueryRoute's endpoint returns a Response")
            return response

        return handle
