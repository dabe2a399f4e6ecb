"""The scoring routes' ``APIRoute`` class: FastAPI's route, with a request handler sized to their shape.

A scoring path operation is declared as any FastAPI route: its pydantic body, ``request``, the
:data:`serving.deps.Scoring` dependency and the ``explain`` query parameter are in its signature, so the
OpenAPI document, the examples and ``response_model`` are FastAPI's, generated from it. FastAPI's generic
handler resolves that signature anew for every request (JSON decoding, then validation of the decoded
object, a walk over every parameter kind of every dependency). For a route of exactly this shape,
:meth:`ScoringRoute.get_route_handler` answers with :func:`_lean_handler`, which does the same in fewer
steps:

- the body is decoded and validated in one pass by pydantic's JSON parser (``model_validate_json``: the
  same model, the same rules); a body it refuses goes through FastAPI's own two steps (``json.loads``,
  then validation of the decoded object), so a refused body gets FastAPI's answer, errors and ``loc``
  (``["body", ...]``) included;
- each query parameter is validated by its own FastAPI field (the same errors, ``["query", name]``);
- the one dependency, a callable taking the request, is awaited with it.

Whenever the app holds dependency overrides (tests, an embedding app), FastAPI's own handler serves, so
every override applies as FastAPI documents. ``tests/test_scoring_route.py`` holds both handlers to the
same answers and the same errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from leadscore.serving.batch_work import NESTED_TOO_DEEP, json_invalid

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class ScoringRoute(APIRoute):
    """An ``APIRoute`` answering with :func:`_lean_handler` when its signature has the scoring shape."""

    def get_route_handler(self) -> Handler:
        standard = super().get_route_handler()
        shape = _scoring_shape(self.dependant)
        if shape is None:
            return standard
        return _lean_handler(standard, self.dependant, *shape)


def _scoring_shape(dependant: Dependant) -> tuple[str, type[BaseModel], str, Callable[..., Any]] | None:
    """(body name, body model, dependency name, dependency) for a route with one pydantic body, a
    ``request`` parameter, query parameters only otherwise and one dependency taking only the request;
    None for any other shape."""
    if (
        len(dependant.body_params) != 1
        or dependant.path_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.request_param_name is None
        or len(dependant.dependencies) != 1
    ):
        return None
    body = dependant.body_params[0]
    model = body.field_info.annotation
    needed = dependant.dependencies[0]
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or needed.name is None or needed.call is None:
        return None
    if (
        needed.dependencies
        or needed.body_params
        or needed.query_params
        or needed.path_params
        or needed.header_params
        or needed.cookie_params
        or needed.request_param_name is None
        or needed.security_scopes_param_name
        or needed.use_cache is False
    ):
        return None
    return body.name, model, needed.name, needed.call


def _lean_handler(
    standard: Handler, dependant: Dependant, body_name: str, model: type[BaseModel], needed_name: str, needed: Any
) -> Handler:
    queries = dependant.query_params
    request_name = dependant.request_param_name
    endpoint = dependant.call

    async def handler(request: Request) -> Response:
        if request.app.dependency_overrides:
            return await standard(request)
        raw = await request.body()
        if not raw:
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
            )
        try:
            body = model.model_validate_json(raw)
        except ValidationError:
            body = _decoded_then_validated(model, raw)  # FastAPI's own two steps, so its answer and errors
        values: dict[str, Any] = {body_name: body, request_name: request}
        if queries:
            given = request.query_params
            errors: list[dict[str, Any]] = []
            for field in queries:
                if field.alias in given:
                    value, problems = field.validate(given[field.alias], values, loc=("query", field.alias))
                    if problems:
                        errors.extend(problems)
                        continue
                    values[field.name] = value
                elif field.field_info.is_required():
                    errors.append({"type": "missing", "loc": ("query", field.alias), "msg": "Field required"})
                else:
                    values[field.name] = field.get_default()
            if errors:
                raise RequestValidationError(errors)
        values[needed_name] = await needed(request)
        return await endpoint(**values)

    return handler


def _decoded_then_validated(model: type[BaseModel], raw: bytes) -> BaseModel:
    """What FastAPI's handler does with a body pydantic's parser did not take as JSON: ``json.loads`` (its
    error at the position it names, as FastAPI words it), then validation of the decoded object."""
    try:
        decoded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError([json_invalid(exc.pos, exc.msg)]) from None
    except UnicodeDecodeError:
        raise RequestValidationError([json_invalid()]) from None
    except RecursionError:  # nested deeper than the interpreter goes: the caller's doing, never a 500
        raise RequestValidationError([json_invalid(error=NESTED_TOO_DEEP)]) from None
    try:
        return model.model_validate(decoded, from_attributes=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None
