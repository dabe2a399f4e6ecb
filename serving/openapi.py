"""The OpenAPI document: FastAPI's for its routes, plus the scoring routes, which are plain ASGI endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi, validation_error_definition, validation_error_response_definition

from leadscore.features.schema import LeadRecord
from leadscore.serving.routes_scoring import openapi_paths
from leadscore.serving.schemas import BatchRequest, BatchResponse, ScoreResponse

_REF = "#/components/schemas/{model}"


def document(app: FastAPI) -> dict[str, Any]:
    """Build (once) the app's OpenAPI document with the scoring routes and the schemas they refer to."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        doc["paths"] = {**openapi_paths(), **doc.get("paths", {})}
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (LeadRecord, BatchRequest, ScoreResponse, BatchResponse):
            schema = model.model_json_schema(
                ref_template=_REF, mode="serialization" if model in (ScoreResponse, BatchResponse) else "validation"
            )
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        schemas.setdefault("ValidationError", validation_error_definition)
        schemas.setdefault("HTTPValidationError", validation_error_response_definition)
        app.openapi_schema = doc
    return app.openapi_schema
