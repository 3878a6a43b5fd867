"""Web-layer pieces every veritee service shares: body limits, error responses, and the
plain-ASGI helpers hot routes use instead of FastAPI's routing (:func:`read_body`,
:func:`send_json`, :func:`json_bytes`, :func:`header`).

Only services import this; the pure core never does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from veritee.errors import VERITEE_ERRORS, ServiceError

log = logging.getLogger("veritee.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_BODY_LIMIT = 2 * 1024 * 1024


def problem(status: int, name: str, detail: str, type_url: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"type": type_url or VERITEE_ERRORS + name, "detail": detail}, status_code=status
    )


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before a route reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._too_large(send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(
            {
                "type": VERITEE_ERRORS + "PayloadTooLarge",
                "detail": f"request body exceeds {self.limit} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


# --------------------------------------------------------------------------- plain ASGI


def json_bytes(value: Any) -> bytes:
    """``value`` as the bytes Starlette's JSONResponse would send."""
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def header(scope: Scope, name: bytes) -> str | None:
    """The first request header ``name`` (lower case), decoded as Latin-1, else None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_body(receive: Receive) -> bytes:
    """The whole request body (under any :class:`BodyLimit` the app has)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: Send, status: int, body: bytes, *, set_cookie: str | None = None) -> None:
    """One ``application/json`` response, as JSONResponse sends it (plus a cookie)."""
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    if set_cookie is not None:
        headers.append((b"set-cookie", set_cookie.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: ServiceError) -> None:
    """A ServiceError's problem body, as :func:`install_error_handlers` renders it."""
    await send_json(send, exc.status, json_bytes(exc.body()))


def install_error_handlers(app: FastAPI) -> None:
    """ServiceErrors become their problem bodies; validation errors 400; nothing leaks."""

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(
            ".".join(str(p) for p in e.get("loc", ())) + ": " + str(e.get("msg"))
            for e in exc.errors()[:5]
        )
        return problem(400, "MalformedRequest", f"invalid request: {where}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.detail, dict) and "type" in exc.detail:
            return JSONResponse(exc.detail, status_code=exc.status_code)
        name = {404: "NotFound", 405: "MethodNotAllowed", 401: "AdminAuthAccess"}.get(
            exc.status_code, "HttpError"
        )
        return problem(exc.status_code, name, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__)
        return problem(500, "InternalError", "internal error")
