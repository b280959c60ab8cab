"""The dashboard's pages and the fragments that refresh them (GET only: nothing here changes state)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from modelport.errors import Conflict, InvalidInput, NotFound
from modelport.names import check_name
from modelport.registry.jobs import FINAL, JobState
from modelport.security.keys import Scope
from modelport.ui.access import SignInRequired, Viewer
from modelport.ui.views import DEFAULT_WINDOW, WINDOWS, ModelSummary, chart_data, lineage_of

if TYPE_CHECKING:
    from modelport.ui.app import Dashboard

AUDIT_PAGE = 50
MAX_ID = 2**63 - 1
JOB_EVENTS_SHOWN = 200


def window_of(request: Request) -> int:
    try:
        window = int(request.query_params.get("window", DEFAULT_WINDOW))
    except ValueError:
        return DEFAULT_WINDOW
    return window if window in WINDOWS else DEFAULT_WINDOW


def safe_next(request: Request, value: str | None) -> str:
    """Where to go after signing in: a dashboard path, never another site."""
    root = str(request.scope.get("root_path") or "")
    if value and value.startswith(f"{root}/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{root}/"


def routes(ui: Dashboard) -> list[BaseRoute]:
    registry = ui.registry

    # ---- sign in ----------------------------------------------------------------------------------
    async def signin_page(request: Request) -> Response:
        target = safe_next(request, request.query_params.get("next"))
        if not ui.auth.enabled:
            return ui.redirect(request, target.removeprefix(str(request.scope.get("root_path") or "")))
        try:
            await ui.viewer(request)
        except SignInRequired:
            return ui.render(request, "signin.html", None, next=target, error=None)
        return Response(status_code=303, headers={"location": target})

    # ---- models -----------------------------------------------------------------------------------
    def summary(model: Any) -> ModelSummary:
        name = model.name
        return ModelSummary(
            model,
            tuple(registry.aliases.of_model(name)),
            tuple(registry.models.list_versions(name)),
            ui.report(name, DEFAULT_WINDOW),
        )

    async def summaries(viewer: Viewer) -> list[ModelSummary]:
        models = await run_in_threadpool(registry.models.list_models)
        visible = [m for m in models if viewer.sees(m.name)]
        found = await asyncio.gather(
            *(run_in_threadpool(summary, m) for m in visible), return_exceptions=True
        )
        return [s for s in found if isinstance(s, ModelSummary)]  # a model deleted meanwhile is left out

    async def models_page(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.READ)
        models = await summaries(viewer)
        return ui.render(request, "models.html", viewer, nav="models", models=models)

    async def models_table(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.READ)
        models = await summaries(viewer)
        return ui.render(request, "_models_table.html", viewer, models=models)

    def model_data(viewer: Viewer, model: str, window: int) -> dict[str, Any]:
        record = registry.models.get_model(model)
        versions = list(reversed(registry.models.list_versions(model)))
        aliases = registry.aliases.of_model(model)
        rollbacks: dict[str, int] = {}
        for alias in aliases:
            with contextlib.suppress(Conflict, NotFound):  # nothing to roll back to
                rollbacks[alias.name] = registry.aliases.rollback_target(model, alias.name)
        trail: list[Any] = []
        history: list[tuple[str, Any]] = []
        if viewer.can(Scope.ADMIN):
            trail = registry.audit.query(model=model, limit=20)
        else:  # the audit log is for admins (as /api/v1/audit); alias moves are readable
            for alias in aliases:
                history += [(alias.name, h) for h in registry.aliases.history(model, alias.name)]
            history = sorted(history, key=lambda entry: entry[1].at, reverse=True)[:20]
        return {
            "model": record,
            "versions": versions,
            "aliases": aliases,
            "by_version": {v.version: [a.name for a in aliases if a.version == v.version] for v in versions},
            "rollbacks": rollbacks,
            "trail": trail,
            "history": history,
            "jobs": registry.jobs.recent(model=model, limit=5),
            "lineage": {v.version: lineage_of(v) for v in versions},
            "report": ui.report(model, window),
            "window": window,
        }

    async def model_page(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.READ)
        model = ui.model_name(viewer, request.path_params["model"])
        data = await run_in_threadpool(model_data, viewer, model, window_of(request))
        moved = request.query_params.get("moved")
        notice = None
        if moved:
            current = next((a for a in data["aliases"] if a.name == moved), None)
            if current is not None:
                notice = f"{moved} now points at version {current.version}."
        return ui.render(request, "model.html", viewer, nav="models", notice=notice, **data)

    async def model_live(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.READ)
        model = ui.model_name(viewer, request.path_params["model"])
        window = window_of(request)
        record = await run_in_threadpool(registry.models.get_model, model)
        report = await run_in_threadpool(ui.report, model, window)
        return ui.render(request, "_model_live.html", viewer, model=record, report=report, window=window)

    async def model_monitoring(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.READ)
        model = ui.model_name(viewer, request.path_params["model"])
        window = window_of(request)
        await run_in_threadpool(registry.models.get_model, model)
        report = await run_in_threadpool(lambda: ui.report(model, window, details=False))  # charts only
        return JSONResponse({"model": model, "window": window, "available": report is not None,
                             **chart_data(report)})  # fmt: skip

    # ---- confirmation pages (without JavaScript; with it the same form opens in a dialog) ----------
    async def promote_page(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.DEPLOY)
        model = ui.model_name(viewer, request.path_params["model"])
        try:
            version = int(request.query_params.get("version", ""))
        except ValueError:
            raise InvalidInput("which version? ?version=N", field="version") from None
        record = await run_in_threadpool(registry.models.get_version, model, version)
        aliases = await run_in_threadpool(registry.aliases.of_model, model)
        alias = request.query_params.get("alias") or "production"
        return ui.render(request, "confirm_promote.html", viewer, nav="models", model=model,
                         version=record, aliases=aliases, alias=alias)  # fmt: skip

    async def rollback_page(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.DEPLOY)
        model = ui.model_name(viewer, request.path_params["model"])
        alias = request.path_params["alias"]
        check_name(alias, field="alias")
        current = await run_in_threadpool(registry.aliases.find, model, alias)
        if current is None:
            raise NotFound(f"alias {alias!r} of {model!r} not found")
        target = await run_in_threadpool(registry.aliases.rollback_target, model, alias)
        return ui.render(request, "confirm_rollback.html", viewer, nav="models", model=model,
                         alias=current, target=target)  # fmt: skip

    async def revoke_page(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.ADMIN)
        name = request.path_params["name"]
        check_name(name)
        keys = await run_in_threadpool(registry.keys.all)
        key = next((k for k in keys if k.name == name), None)
        if key is None:
            raise NotFound(f"key {name!r} not found")
        return ui.render(request, "confirm_revoke.html", viewer, nav="keys", key=key)

    # ---- audit ------------------------------------------------------------------------------------
    async def audit_page(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.ADMIN)
        query = request.query_params
        filters = {k: (query.get(k) or "").strip() for k in ("actor", "action", "model")}
        if filters["model"]:
            check_name(filters["model"], field="model")
        before = None
        if query.get("before"):
            try:
                before = min(max(int(query["before"]), 1), MAX_ID)
            except ValueError:
                raise InvalidInput("before must be an event id", field="before") from None
        events = await run_in_threadpool(
            lambda: registry.audit.query(
                limit=AUDIT_PAGE + 1,
                actor=filters["actor"] or None,
                action=filters["action"] or None,
                model=filters["model"] or None,
                before=before,
            )
        )
        more = len(events) > AUDIT_PAGE
        events = events[:AUDIT_PAGE]
        current = {k: v for k, v in filters.items() if v}
        older = {**current, "before": str(events[-1].id)} if more and events else None
        return ui.render(request, "audit.html", viewer, nav="audit", events=events, filters=filters,
                         current=current, older=older, paged=before is not None)  # fmt: skip

    # ---- keys -------------------------------------------------------------------------------------
    async def keys_page(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.ADMIN)
        keys = await run_in_threadpool(registry.keys.all)
        return ui.render(request, "keys.html", viewer, nav="keys", keys=keys, created=None, secret=None,
                         error=None, form={})  # fmt: skip

    # ---- jobs -------------------------------------------------------------------------------------
    def jobs_data(viewer: Viewer, request: Request) -> dict[str, Any]:
        state_name = request.query_params.get("state") or ""
        model = (request.query_params.get("model") or "").strip()
        state = None
        if state_name:
            try:
                state = JobState(state_name)
            except ValueError:
                raise InvalidInput(f"state must be one of {[s.value for s in JobState]}") from None
        if model:
            check_name(model, field="model")
        jobs = registry.jobs.recent(state=state, model=model or None, limit=100)
        return {
            "jobs": [j for j in jobs if viewer.sees(j.model)],
            "state": state_name,
            "model_filter": model,
            "states": [s.value for s in JobState],
            "query": urlencode_filters(state=state_name, model=model),
        }

    async def jobs_page(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.READ)
        data = await run_in_threadpool(jobs_data, viewer, request)
        return ui.render(request, "jobs.html", viewer, nav="jobs", **data)

    async def jobs_table(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.READ)
        data = await run_in_threadpool(jobs_data, viewer, request)
        return ui.render(request, "_jobs_table.html", viewer, **data)

    def job_data(viewer: Viewer, job_id: int) -> dict[str, Any]:
        job = registry.jobs.get(job_id)
        viewer.who.require_model(job.model)  # a key limited to other models does not see it (404)
        events = registry.jobs.events(job_id, limit=500)[-JOB_EVENTS_SHOWN:]
        return {"job": job, "events": list(reversed(events)), "final": job.state in FINAL}

    def job_id_of(request: Request) -> int:
        try:
            job_id = int(request.path_params["job_id"])
        except ValueError:
            raise NotFound("no such job") from None
        if not 1 <= job_id < 2**31:
            raise NotFound("no such job")
        return job_id

    async def job_page(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.READ)
        data = await run_in_threadpool(job_data, viewer, job_id_of(request))
        return ui.render(request, "job.html", viewer, nav="jobs", **data)

    async def job_live(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.READ)
        data = await run_in_threadpool(job_data, viewer, job_id_of(request))
        return ui.render(request, "_job_live.html", viewer, **data)

    return [
        Route("/", models_page, name="models"),
        Route("/signin", signin_page, name="signin"),
        Route("/models", models_page),
        Route("/models-table", models_table),
        Route("/models/{model}", model_page),
        Route("/models/{model}/live", model_live),
        Route("/models/{model}/monitoring.json", model_monitoring),
        Route("/models/{model}/promote", promote_page),
        Route("/models/{model}/aliases/{alias}/rollback", rollback_page),
        Route("/audit", audit_page),
        Route("/keys", keys_page),
        Route("/keys/{name}/revoke", revoke_page),
        Route("/jobs", jobs_page),
        Route("/jobs-table", jobs_table),
        Route("/jobs/{job_id}", job_page),
        Route("/jobs/{job_id}/live", job_live),
    ]


def urlencode_filters(**values: str) -> str:
    return urlencode({k: v for k, v in values.items() if v})
