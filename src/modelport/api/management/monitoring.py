"""``/api/v1/models/{model}/...``: monitoring report, prediction log, feedback, references, alerts.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import Response, StreamingResponse

from modelport.api.management.context import Context, Model, require_dataset
from modelport.api.management.monitoring_schemas import (
    AlertIn,
    FeedbackItem,
    FeedbackOut,
    MonitoringConfigIn,
    MonitoringConfigOut,
    ReferenceIn,
    ReferenceOut,
    window_seconds,
)
from modelport.api.management.routing import management_router
from modelport.api.openapi import errors
from modelport.errors import InvalidInput, NotFound
from modelport.limits import MAX_VERSION
from modelport.security.keys import Principal, Scope

EXPORT_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}


def _window(text: str) -> int:
    try:
        return window_seconds(text)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="window") from None


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def build_router(ctx: Context) -> APIRouter:
    router = management_router(tags=["monitoring"])
    monitoring = ctx.monitoring
    Reader = Annotated[Principal, Depends(ctx.auth.dependency(Scope.READ))]
    Writer = Annotated[Principal, Depends(ctx.auth.dependency(Scope.WRITE))]
    Reporter = Annotated[Principal, Depends(ctx.auth.dependency(Scope.INFER, Scope.WRITE))]
    Version = Annotated[int | None, Query(ge=1, le=MAX_VERSION)]

    @router.get("/models/{model}/monitoring")
    def report(_: Reader, model: Model, window: str = "1h") -> dict[str, Any]:
        """Everything monitoring knows of the model over the window (``300``, ``15m``, ``1h``, ``7d``):
        per version requests, errors, throughput, latency quantiles and a time series (every process
        and host added up), live quality from feedback, drift against the version's reference, alert
        rules and the prediction log's settings."""
        ctx.registry.models.get_model(model)
        return monitoring.report(model, _window(window))

    @router.get("/models/{model}/monitoring/config")
    def get_config(_: Reader, model: Model) -> MonitoringConfigOut:
        return MonitoringConfigOut(**monitoring.config(model))

    @router.put("/models/{model}/monitoring/config")
    def set_config(who: Writer, model: Model, body: MonitoringConfigIn) -> MonitoringConfigOut:
        """The prediction log's sample rate (off until set) and how many first predictions make a
        reference profile. Every serving process follows within a second."""
        return MonitoringConfigOut(
            **monitoring.configure(
                model, sample_rate=body.sample_rate, reference_rows=body.reference_rows, by=who.name
            )
        )

    @router.get("/models/{model}/predictions")
    def predictions(
        _: Reader,
        model: Model,
        version: Version = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Logged predictions, newest first: ``{"predictions": [...], "next": cursor | null}``; pass
        ``next`` back as ``cursor`` for the following page. ``since``/``until``: ISO 8601 or epoch
        seconds."""
        ctx.registry.models.get_model(model)
        rows, following = monitoring.predictions.read(
            model, version=version, since=_epoch(since), until=_epoch(until), cursor=cursor, limit=limit
        )
        return {"predictions": rows, "next": following}

    @router.get("/models/{model}/predictions/export")
    def export(
        _: Reader,
        model: Model,
        format: Literal["jsonl", "csv", "parquet"] = "jsonl",
        version: Version = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> StreamingResponse:
        """The whole log (or the filtered part) as JSON lines, CSV or Parquet, streamed."""
        ctx.registry.models.get_model(model)
        chunks: Iterator[bytes] = monitoring.predictions.export(
            model, format, version=version, since=_epoch(since), until=_epoch(until)
        )
        return StreamingResponse(
            iterate_in_threadpool(chunks),
            media_type=EXPORT_TYPES[format],
            headers={"content-disposition": f'attachment; filename="{model}-predictions.{format}"'},
        )

    @router.post("/models/{model}/feedback", responses=errors(404))
    def feedback(
        who: Reporter, model: Model, body: Annotated[list[FeedbackItem], Body(max_length=10_000)]
    ) -> FeedbackOut:
        """Outcomes of answered requests, ``[{"request_id": ..., "label": ...}]`` (classification) or
        ``[{"request_id": ..., "value": ...}]`` (regression). A request's later feedback replaces the
        earlier. They are joined with the prediction log by request id for live accuracy, so the
        model's sample rate must have logged those requests."""
        ctx.registry.models.get_model(model)
        items = [item.model_dump() for item in body]
        return FeedbackOut(**monitoring.add_feedback(model, items, by=who.name))

    @router.put("/models/{model}/versions/{version}/reference")
    def set_reference(who: Writer, model: Model, version: int, body: ReferenceIn) -> ReferenceOut:
        """Profile a dataset as the version's reference for drift: its ``features`` (by default the
        version's training features, else every column but ``target``), and ``target`` as the
        reference of its predictions."""
        require_dataset(who, body.dataset)
        found = monitoring.reference_from_dataset(
            model, version, body.dataset, features=body.features, target=body.target, by=who.name
        )
        return ReferenceOut(**found)

    @router.get("/models/{model}/versions/{version}/reference")
    def get_reference(_: Reader, model: Model, version: int) -> dict[str, Any]:
        """The version's reference profile and where it came from (404 when it has none)."""
        record = ctx.registry.models.get_version(model, version)
        found = monitoring.reference(record)
        if found is None:
            raise NotFound(f"{model}:{version} has no reference profile")
        return {"source": found[0], "profile": found[1]}

    @router.get("/models/{model}/alerts")
    def list_alerts(_: Reader, model: Model) -> list[dict[str, Any]]:
        ctx.registry.models.get_model(model)
        return monitoring.alerting.rules(model)

    @router.post("/models/{model}/alerts", status_code=201)
    def create_alert(who: Writer, model: Model, body: AlertIn) -> dict[str, Any]:
        """A rule evaluated in the background every ``MODELPORT_ALERT_INTERVAL`` seconds. Firing and
        clearing are audit events (``alert.fired`` / ``alert.cleared``) and, with ``webhook_url``, a
        signed POST (see docs/monitoring.md)."""
        spec = body.model_dump()
        spec["window_seconds"] = window_seconds(body.window)
        return monitoring.alerting.create(model, spec, by=who.name)

    @router.delete("/models/{model}/alerts/{rule}", status_code=204)
    def delete_alert(who: Writer, model: Model, rule: int) -> Response:
        monitoring.alerting.delete(model, rule, by=who.name)
        return Response(status_code=204)

    return router
