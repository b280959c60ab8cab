"""The management API's routes read a JSON body as JSON whatever the request's Content-Type says.

``curl -d '{"name": "iris"}'`` sends ``application/x-www-form-urlencoded``, many clients send no
Content-Type at all; inference reads its body as JSON either way, and so does every management route
that takes a JSON body: the body is decoded as JSON and a body that is not JSON is a 400 that says so.
Routes that read the raw request themselves (the push) have no body field and are left alone.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
JSON_TYPE = (b"content-type", b"application/json")


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json`` (e.g. merge-patch+json)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def as_json(request: Request) -> Request:
    """The same request, its body declared as JSON."""
    scope = dict(request.scope)
    scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"] + [JSON_TYPE]
    return Request(scope, request.receive)


class JSONBodyRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def json_body_handler(request: Request) -> Response:
            if not is_json(request.headers.get("content-type")):
                request = as_json(request)
            return await handler(request)

        return json_body_handler


def management_router(tags: list[str] | None = None) -> APIRouter:
    """An ``APIRouter`` for the management surface (its routes are ``JSONBodyRoute``)."""
    return APIRouter(tags=list(tags or []), route_class=JSONBodyRoute)
