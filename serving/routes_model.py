"""Model metadata: which version serves, its training data window, holdout metrics and tier thresholds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from leadscore.serving.deps import Model, State, require_key
from leadscore.serving.schemas import ERROR_RESPONSES, ModelInfo
from leadscore.serving.state import model_info

router = APIRouter(prefix="/v1", tags=["model"], dependencies=[Depends(require_key)])


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={code: ERROR_RESPONSES[code] for code in (401, 503)},
)
async def get_model_info(state: State, model: Model) -> Any:
    """The serving model: name, version, alias, source, training window, holdout metrics, thresholds, features."""
    return model_info(state, model)
