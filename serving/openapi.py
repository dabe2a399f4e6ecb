"""The OpenAPI document: FastAPI's, plus the request bodies the scoring routes read themselves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from features.schema import LeadRecord
from serving.schemas import BatchRequest

_REF = "#/components/schemas/{model}"


def document(app: FastAPI) -> dict[str, Any]:
    """Build (once) the app's OpenAPI document with the ``LeadRecord`` and ``BatchRequest`` schemas in its components."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (LeadRecord, BatchRequest):
            schema = model.model_json_schema(ref_template=_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        app.openapi_schema = doc
    return app.openapi_schema
