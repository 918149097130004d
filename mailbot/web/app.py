"""The HTTP routes: /healthz, /metrics, and the web pages (mailbot.web.form) on the same listener."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mailbot.web.metrics import Metrics


def build(health: Callable[[], dict[str, Any]], metrics: Metrics, pages: Sequence[BaseRoute] = ()) -> Starlette:
    """``health()`` is the status report (mailbot.status) as this instance sees it; it reads the database, so
    the endpoints are plain functions, which Starlette runs on its thread pool, off the delivery loop."""

    def healthz(request: Request) -> Response:
        report = health()
        # A standby is ready to take over: it answers 200 whatever the active bot's state.
        failing = report["state"] == "failing" and report.get("instance") != "standby"
        return JSONResponse(report, status_code=503 if failing else 200, headers={"Cache-Control": "no-store"})

    def metrics_page(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics_page), *pages])
