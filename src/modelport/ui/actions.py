"""What the dashboard changes: sign in and out, promote and roll back, create and revoke keys, cancel a
job. Every POST needs a live session holding the action's scope (checked before the form is read), an
allowed Host and Origin and the session's CSRF token; each action goes through the same service call as
the management API, which records it in the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelport.api.errors import status_of
from modelport.errors import Conflict, Forbidden, InvalidInput, Unauthenticated
from modelport.names import check_alias, check_name
from modelport.security.keys import Scope
from modelport.ui.access import SignInRequired
from modelport.ui.pages import safe_next

if TYPE_CHECKING:
    from modelport.ui.app import Dashboard, Form

MAX_VERSION = 2**31 - 1


def _version(value: str) -> int:
    try:
        version = int(value)
    except ValueError:
        raise InvalidInput("the version must be a number", field="version") from None
    if not 1 <= version <= MAX_VERSION:
        raise InvalidInput("no such version", field="version")
    return version


def _expires(value: str) -> datetime | None:
    """A ``datetime-local`` field, read as UTC."""
    if not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            "expires must be a date and time, e.g. 2027-01-31T00:00", field="expires"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rate(value: str) -> float | None:
    if not value.strip():
        return None
    try:
        rate = float(value)
    except ValueError:
        raise InvalidInput("the rate limit must be a number of requests per second", field="rate") from None
    if not 0 < rate <= 1_000_000:
        raise InvalidInput("the rate limit must be between 0 and 1000000 per second", field="rate")
    return rate


def routes(ui: Dashboard) -> list[BaseRoute]:
    registry, services = ui.registry, ui.services

    # ---- sign in and out --------------------------------------------------------------------------
    async def sign_in(request: Request) -> Response:
        form = await ui.read_form(request)
        target = safe_next(request, form.get("next"))
        if not ui.auth.enabled:
            return Response(status_code=303, headers={"location": target})
        try:
            _, token, expires = await run_in_threadpool(ui.auth.sign_in, request, form.get("key"))
        except (Unauthenticated, Forbidden) as exc:
            await run_in_threadpool(ui.auth.denied, request, "anonymous", exc.code)
            return ui.render(request, "signin.html", None, status_of(exc), next=target, error=exc.message)
        response = Response(status_code=303, headers={"location": target})
        ui.auth.set_session_cookie(request, response, token, expires)
        return response

    async def sign_out(request: Request) -> Response:
        try:
            viewer = await ui.viewer(request)
        except SignInRequired:  # already signed out
            return ui.redirect(request, "/signin")
        await ui.form(request, viewer)
        await run_in_threadpool(ui.auth.sign_out, viewer)
        response = ui.redirect(request, "/signin" if ui.auth.enabled else "/")
        ui.auth.clear_session_cookie(request, response)
        return response

    # ---- aliases ----------------------------------------------------------------------------------
    async def promote(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.DEPLOY)
        model = ui.model_name(viewer, request.path_params["model"])
        form = await ui.form(request, viewer)
        alias = check_alias(form.get("alias").strip(), field="alias")
        version = _version(form.get("version"))
        await run_in_threadpool(lambda: services.dataplane.promote(model, alias, version, by=viewer.name))
        return ui.redirect(request, f"/models/{model}", moved=alias)

    async def rollback(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.DEPLOY)
        model = ui.model_name(viewer, request.path_params["model"])
        alias = check_alias(request.path_params["alias"], field="alias")
        await ui.form(request, viewer)
        await run_in_threadpool(lambda: services.dataplane.rollback(model, alias, by=viewer.name))
        return ui.redirect(request, f"/models/{model}", moved=alias)

    # ---- keys -------------------------------------------------------------------------------------
    def create_key(by: str, form: Form) -> tuple[Any, str]:
        record, secret = services.keys.create(
            form.get("name").strip(),
            form.getall("scopes"),
            by=by,
            expires_at=_expires(form.get("expires")),
            models=form.get("models").strip() or None,
            rate_limit=_rate(form.get("rate")),
        )
        ui.auth.guarded.forget()
        return record, secret

    async def keys_create(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.ADMIN)
        form = await ui.form(request, viewer)
        try:
            record, secret = await run_in_threadpool(create_key, viewer.name, form)
            error, status, values = None, 201, {}
        except (InvalidInput, Conflict) as exc:
            record, secret = None, None
            error, status = exc.message, status_of(exc)
            values = {"name": form.get("name"), "scopes": form.getall("scopes"), "models": form.get("models"),
                      "expires": form.get("expires"), "rate": form.get("rate")}  # fmt: skip
        keys = await run_in_threadpool(registry.keys.all)
        response = ui.render(request, "keys.html", viewer, status, nav="keys", keys=keys, created=record,
                             secret=secret, error=error, form=values)  # fmt: skip
        return response

    async def keys_revoke(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.ADMIN)
        name = check_name(request.path_params["name"])
        await ui.form(request, viewer)
        await run_in_threadpool(lambda: services.keys.revoke(name, by=viewer.name))
        ui.auth.guarded.forget()
        return ui.redirect(request, "/keys")

    # ---- jobs -------------------------------------------------------------------------------------
    async def job_cancel(request: Request) -> Response:
        viewer = await ui.viewer(request, Scope.WRITE)
        try:
            job_id = int(request.path_params["job_id"])
        except ValueError:
            raise InvalidInput("no such job") from None
        await ui.form(request, viewer)

        def cancel() -> None:
            viewer.who.require_model(registry.jobs.get(job_id).model)
            services.jobs.cancel(job_id, by=viewer.name)

        await run_in_threadpool(cancel)
        return ui.redirect(request, f"/jobs/{job_id}")

    return [
        Route("/signin", sign_in, methods=["POST"]),
        Route("/signout", sign_out, methods=["POST"]),
        Route("/models/{model}/promote", promote, methods=["POST"]),
        Route("/models/{model}/aliases/{alias}/rollback", rollback, methods=["POST"]),
        Route("/keys", keys_create, methods=["POST"]),
        Route("/keys/{name}/revoke", keys_revoke, methods=["POST"]),
        Route("/jobs/{job_id}/cancel", job_cancel, methods=["POST"]),
    ]
