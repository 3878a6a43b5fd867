"""The local REST API on 127.0.0.1:8006, as guest-components' api-server-rest serves it.

Routes (``features`` decides which are on: ``resource``, the default, turns on
``/cdh``; ``attestation`` turns on ``/aa``; ``all`` both):

- ``GET /aa/evidence?runtime_data=…[&encoding=base64]`` and ``/aa/additional-evidence``:
  evidence bytes (``application/octet-stream``).  Without ``encoding`` the query value's
  UTF-8 bytes are the runtime data; ``encoding=base64`` is URL-safe base64 without
  padding, strictly.  Never hashed.
- ``GET /aa/token?token_type=kbs|coco_as``: the token (``kbs``: ``{"token","tee_keypair"}``).
- ``POST /aa/aael`` ``{"domain","operation","content"}``: ``{"success":"true"}`` or
  ``{"success":"false","message": "…"}`` (string booleans, as upstream).
- ``/cdh/resource/<repo>/<type>/<tag>`` (any method): the resource's bytes.
- ``GET /info``: version, TEE, additional TEEs, features.

Upstream's quirks are kept: a caller that is not on loopback gets 403 ``Forbidden``;
a wrong method on an ``/aa`` route is 404 ``URL NOT FOUND`` (only ``/info`` says 405);
a disabled feature is 404 naming it.  Where upstream answers bad input with 500
(an AAEL body that is not the right JSON, an unknown token type) this API answers
400: a 500 here always means the backend (the TEE, the KBS) failed, and its body says
what failed, never more.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, ValidationError

from veritee import __version__
from veritee.errors import ParseError, VeriteeError
from veritee.guest.aa import (
    AttestationAgent,
    RuntimeDataTooLong,
    RuntimeMeasurementResult,
    UnsupportedTokenType,
)
from veritee.guest.cdh import ConfidentialDataHub
from veritee.guest.eventlog import AaelEventError

__all__ = ["FEATURES", "Features", "create_app"]

Features = Literal["resource", "attestation", "all"]
FEATURES: tuple[Features, ...] = ("resource", "attestation", "all")
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
OCTETS = "application/octet-stream"
_B64URL = re.compile(r"\A[A-Za-z0-9_-]*\Z")
log = logging.getLogger("veritee.agent")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class AaelEvent(BaseModel):
    """The body of ``POST /aa/aael``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    domain: str
    operation: str
    content: str


class _LoopbackOnly:
    """Answer 403 ``Forbidden`` to any caller that is not on a loopback address."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _is_loopback(scope.get("client")):
            await Response("Forbidden", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _is_loopback(client: Any) -> bool:
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _text(status: int, body: str) -> Response:
    return Response(body, status_code=status, media_type="text/plain; charset=utf-8")


def _not_found() -> Response:
    return _text(404, "URL NOT FOUND")


def _bad_request(detail: str = "BAD REQUEST") -> Response:
    return _text(400, detail)


def _failed(what: str, exc: Exception) -> Response:
    """A backend failure: 500 with the error's message (never a traceback or a repr)."""
    if isinstance(exc, VeriteeError):
        log.warning("%s failed: %s", what, exc)
        return _text(500, f"{what} failed: {exc}")
    log.exception("%s failed", what)
    return _text(500, f"{what} failed: internal error")


def decode_runtime_data(value: str, encoding: str | None) -> bytes:
    """The query value as bytes: UTF-8 as given, or strict URL-safe base64 without padding."""
    if encoding is None:
        return value.encode()
    if encoding != "base64":
        raise ParseError("encoding", f"expected base64, got {encoding!r}")
    if not _B64URL.match(value) or len(value) % 4 == 1:
        raise ParseError("runtime_data", "not URL-safe base64 without padding")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ParseError("runtime_data", "not URL-safe base64 without padding") from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != value:
        raise ParseError("runtime_data", "non-canonical base64 (stray trailing bits)")
    return raw


def create_app(
    aa: AttestationAgent | None,
    cdh: ConfidentialDataHub | None,
    features: Features = "resource",
) -> Any:
    """The REST API for ``features``; ``aa`` is needed for ``attestation``, ``cdh`` for
    ``resource``.  Returns an ASGI app that refuses non-loopback callers."""
    aa_on = features in ("attestation", "all")
    cdh_on = features in ("resource", "all")
    if aa_on and aa is None:
        raise ValueError("the attestation feature needs an Attestation Agent")
    if cdh_on and cdh is None:
        raise ValueError("the resource feature needs a Confidential Data Hub")
    app = FastAPI(
        title="veritee guest API (CoCo RESTful API)",
        version=__version__,
        description="Evidence, tokens, runtime measurements and resources for the workload "
        "in this TEE, as guest-components' api-server-rest serves them.",
        docs_url=None,
        redoc_url=None,
    )

    def agent() -> AttestationAgent | None:
        return aa if aa_on else None

    def evidence_route(path: str, what: str, produce: Callable[[bytes], bytes]) -> None:
        @app.api_route(path, methods=METHODS, response_class=Response, name=what)
        def route(request: Request) -> Response:
            if agent() is None:
                return _text(404, "Attestation Feature Not Enabled")
            if request.method != "GET":
                return _not_found()
            value = request.query_params.get("runtime_data")
            if value is None:
                return _bad_request()
            try:
                runtime_data = decode_runtime_data(value, request.query_params.get("encoding"))
            except ParseError:
                return _bad_request()
            try:
                body = produce(runtime_data)
            except RuntimeDataTooLong as exc:
                return _bad_request(str(exc))
            except Exception as exc:
                return _failed(what, exc)
            return Response(body, media_type=OCTETS)

    if aa is not None:
        evidence_route("/aa/evidence", "get evidence", aa.get_evidence)
        evidence_route(
            "/aa/additional-evidence", "get additional evidence", aa.get_additional_evidence
        )

    @app.api_route("/aa/token", methods=METHODS, response_class=Response)
    def token(request: Request) -> Response:
        current = agent()
        if current is None:
            return _text(404, "Attestation Feature Not Enabled")
        if request.method != "GET":
            return _not_found()
        token_type = request.query_params.get("token_type")
        if token_type is None:
            return _bad_request()
        try:
            return Response(current.get_token(token_type), media_type=OCTETS)
        except UnsupportedTokenType as exc:
            return _bad_request(str(exc))
        except Exception as exc:
            return _failed("get token", exc)

    @app.api_route("/aa/aael", methods=METHODS, response_class=Response)
    async def aael(request: Request) -> Response:
        current = agent()
        if current is None:
            return _text(404, "Attestation Feature Not Enabled")
        if request.method != "POST":
            return _not_found()
        try:
            event = AaelEvent.model_validate_json(await request.body())
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            detail = f"{where}: {problem['msg']}" if where else problem["msg"]
            return _bad_request(f"Illegal AAEL entry format: {detail}")
        try:
            result = await _in_thread(
                current.extend_runtime_measurement, event.domain, event.operation, event.content
            )
        except AaelEventError as exc:
            return _bad_request(f"Illegal AAEL entry format: {exc}")
        except Exception as exc:
            return _failed("extend runtime measurement", exc)
        if result is RuntimeMeasurementResult.OK:
            body = '{"success":"true"}'
        else:
            body = '{"success":"false","message": ' + json.dumps(result.value) + "}"
        return Response(body, media_type="application/json")

    @app.api_route("/cdh/resource/{path:path}", methods=METHODS, response_class=Response)
    def resource(request: Request) -> Response:
        if not cdh_on or cdh is None:
            return _text(404, "Resource Feature Not Enabled")
        # The whole decoded path, not the route parameter: Starlette's ``path`` converter
        # silently drops a trailing newline (``…/tag%0a`` would be served as ``…/tag``).
        path = str(request.scope["path"]).removeprefix("/cdh/resource/")
        if not path.strip("/"):
            return _not_found()
        try:
            return Response(cdh.get_resource(f"kbs:///{path}"), media_type=OCTETS)
        except ParseError as exc:
            return _bad_request(str(exc))
        except Exception as exc:
            return _failed("get resource", exc)

    @app.api_route("/info", methods=METHODS, response_class=Response)
    def info(request: Request) -> Response:
        if request.method != "GET":
            return _text(405, "Method Not Allowed")
        body: dict[str, Any] = {"version": f"Guest Components Version: veritee {__version__}"}
        current = agent()
        if current is not None:
            body["tee"] = current.tee
            if current.additional_tees:
                body["additional_tees"] = current.additional_tees
        body["feature"] = features
        return Response(json.dumps(body), media_type="application/json")

    @app.api_route(
        "/{rest:path}", methods=METHODS, response_class=Response, include_in_schema=False
    )
    def anything_else(rest: str) -> Response:
        if rest.startswith("aa/") and not aa_on:
            return _text(404, "Attestation Feature Not Enabled")
        if rest.startswith("cdh/") and not cdh_on:
            return _text(404, "Resource Feature Not Enabled")
        return _not_found()

    return _LoopbackOnly(app)


async def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)
