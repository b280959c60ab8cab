"""``/api/v1/jobs`` (train a new model version: submit, list, show, follow, cancel) and
``/api/v1/estimators`` (what can be trained, with each estimator's parameter schema).

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from modelport.api.management.context import Context, require_dataset
from modelport.api.management.routing import management_router
from modelport.api.management.training_schemas import EstimatorOut, JobEventOut, JobOut
from modelport.api.openapi import errors
from modelport.errors import InvalidInput
from modelport.jobs import estimators
from modelport.jobs.submission import parse_spec
from modelport.names import check_name
from modelport.registry.jobs import FINAL, JobState
from modelport.security.keys import Principal, Scope

JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}},
    }
}
JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


async def json_body(request: Request) -> Any:
    body = await request.body()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from None


def build_router(ctx: Context) -> APIRouter:
    router = management_router(tags=["jobs"])
    registry, runner = ctx.registry, ctx.jobs
    Reader = Annotated[Principal, Depends(ctx.auth.dependency(Scope.READ))]
    Writer = Annotated[Principal, Depends(ctx.auth.dependency(Scope.WRITE))]

    @router.post("/jobs", status_code=202, openapi_extra=JOB_BODY, responses=errors(400, 422))
    async def submit_job(request: Request, who: Writer) -> JobOut:
        """Train ``estimator`` on ``dataset`` to predict ``target``; the result becomes a new version of
        ``model``. Checked against the dataset before it is queued (422 naming the field). ``promote``
        also needs the ``deploy`` scope."""
        spec = parse_spec(await json_body(request))
        who.require_model(spec.model)
        require_dataset(who, spec.dataset)
        if spec.promote is not None:
            who.require(Scope.DEPLOY)
        record = await run_in_threadpool(lambda: runner.submit(spec, by=who.name))
        return JobOut.of(record)

    @router.get("/jobs")
    def list_jobs(
        who: Reader,
        state: Annotated[JobState | None, Query()] = None,
        model: Annotated[str | None, Query(max_length=63)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[JobOut]:
        """Newest first."""
        if model is not None:
            check_name(model, field="model")
        jobs = registry.jobs.recent(state=state, model=model, limit=limit)
        return [JobOut.of(j) for j in jobs if who.can_access(j.model)]

    @router.get("/jobs/{job_id}", responses=errors(404))
    def get_job(who: Reader, job_id: JobId) -> JobOut:
        return JobOut.of(_visible(who, job_id))

    @router.post("/jobs/{job_id}/cancel", responses=errors(404, 409))
    def cancel_job(who: Writer, job_id: JobId) -> JobOut:
        """A queued job is cancelled at once; a running one is stopped within a second or two."""
        _visible(who, job_id)
        return JobOut.of(runner.cancel(job_id, by=who.name))

    @router.get(
        "/jobs/{job_id}/events",
        responses={200: {"content": {"text/event-stream": {}}}, **errors(404)},
        response_class=StreamingResponse,
    )
    async def job_events(
        who: Reader,
        job_id: JobId,
        after: Annotated[
            int, Query(ge=0, le=2**62, description="send events after this sequence number")
        ] = 0,
        last_event_id: Annotated[int | None, Header(ge=0, le=2**62)] = None,
        follow: Annotated[bool, Query(description="false: the events so far, then end")] = True,
    ) -> StreamingResponse:
        """Server-sent events: the job's ``state``, ``progress``, ``log`` and ``decision`` events in
        order, until the job ends; then one ``end`` event with the job. Each ``id`` is the event's
        sequence number (increasing, shared by all jobs), so a client resumes with ``Last-Event-ID``."""
        await run_in_threadpool(_visible, who, job_id)
        start = max(after, last_event_id or 0)
        return StreamingResponse(
            _follow(job_id, start, follow),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    async def _follow(job_id: int, seen: int, follow: bool) -> AsyncIterator[bytes]:
        idle = 0.0
        while True:
            job = await run_in_threadpool(registry.jobs.get, job_id)
            events = await run_in_threadpool(partial(registry.jobs.events, job_id, after=seen))
            for event in events:
                seen = event.seq
                body = JobEventOut.of(event).model_dump_json()
                yield f"id: {event.seq}\nevent: {event.kind}\ndata: {body}\n\n".encode()
            if events:
                idle = 0.0
                continue  # more may be waiting
            if job.state in FINAL or not follow:
                yield f"event: end\ndata: {JobOut.of(job).model_dump_json()}\n\n".encode()
                return
            await asyncio.sleep(POLL_SECONDS)
            idle += POLL_SECONDS
            if idle >= KEEPALIVE_SECONDS:
                idle = 0.0
                yield b": keep-alive\n\n"

    @router.get("/estimators", tags=["estimators"])
    def list_estimators(_: Reader) -> list[EstimatorOut]:
        """What a job can train, for which tasks, with each parameter's type, range and default."""
        return [EstimatorOut(**entry) for entry in estimators.catalog()]

    def _visible(who: Principal, job_id: int) -> Any:
        job = registry.jobs.get(job_id)
        who.require_model(job.model)  # a key limited to other models does not see it (404)
        return job

    return router
