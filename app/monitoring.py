"""``GET /metrics``: Prometheus text format, for keys with the ``admin`` scope."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from app import metrics
from app.deps import AdminKey
from app.errors import NotFound
from app.training.metrics import TrainingRuns

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    dependencies=[AdminKey],
    response_class=Response,
    responses={200: {"content": {metrics.CONTENT_TYPE: {}}}},
)
async def scrape(request: Request) -> Response:
    """Every worker's request, cache, event, model and answer metrics, and training runs."""
    if not request.app.state.settings.metrics:
        raise NotFound("metrics are switched off (TASTEMAKER_METRICS=false)")
    settings = request.app.state.settings
    metrics.flush()  # on the event loop's thread, where requests count (see metrics._Tally)
    body = await run_in_threadpool(
        metrics.exposition,
        settings.metrics_multiprocess_dir,
        [TrainingRuns(request.app.state.sessionmaker)],
    )
    return Response(body, media_type=metrics.CONTENT_TYPE)
