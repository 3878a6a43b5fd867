"""The KBS over HTTP: Trustee's ``/kbs/v0/`` routes, ``/healthz`` and ``/metrics``.

A thin adapter: every decision is in :class:`veritee.kbs.service.KbsService`.
Dispatch follows Trustee: ``auth``/``attest`` (RCAR), ``attestation-policy``,
``resource-policy``, ``reference-value`` (admin), and the ``resource`` plugin
(GET releases under the resource policy; POST/DELETE are admin).  Any other
first segment is ``PluginNotFound`` (404).

The three requests of every flow (``auth``, ``attest`` and a resource GET) are served
by plain ASGI layers in front of FastAPI (:class:`~veritee.kbs.rcar_api.RcarRoutes`,
:class:`ResourceRoute`), with the same bodies and errors; the admin routes stay FastAPI.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import QueryParams

from veritee.auth.admin import AdminAuth, AdminAuthError
from veritee.errors import ServiceError
from veritee.kbs import metrics
from veritee.kbs.errors import AdminAuthAccess, PluginInternalError, PluginNotFound, TokenNotFound
from veritee.kbs.rcar_api import RcarRoutes, cookie_session_id, request_session_id, session_token
from veritee.kbs.service import KbsService
from veritee.kbs.session import SessionStore
from veritee.web import (
    DEFAULT_BODY_LIMIT,
    ASGIApp,
    BodyLimit,
    Receive,
    Scope,
    Send,
    header,
    install_error_handlers,
    json_bytes,
    send_error,
    send_json,
)

RESOURCE_PREFIX = "/kbs/v0/resource/"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, bearer = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and bearer.strip():
        return bearer.strip()
    return None


class ResourceRoute:
    """``GET /kbs/v0/resource/<repo>/<type>/<tag>`` as plain ASGI in front of ``app``.

    The token is the attested session's (cookie), else a Bearer token; the service
    verifies it, asks the resource policy and answers the JWE.  Runs on the event loop:
    a token check, a policy decision and one store read.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: KbsService,
        sessions: SessionStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.service = service
        self.sessions = sessions
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].startswith(RESOURCE_PREFIX)
            and self.service.resources is not None
        ):
            try:
                jwe = self._release(scope)
            except ServiceError as exc:
                await send_error(send, exc)
                return
            await send_json(send, 200, json_bytes(jwe))
            return
        await self.app(scope, receive, send)

    def _release(self, scope: Scope) -> dict[str, object]:
        token = session_token(request_session_id(scope), self.sessions, self.clock())
        if token is None:
            token = bearer_token(header(scope, b"authorization"))
        if token is None:
            raise TokenNotFound()
        rest = scope["path"][len(RESOURCE_PREFIX) :].split("/")
        query = dict(QueryParams(scope.get("query_string", b"")))
        return self.service.release(token, rest, query)


def create_kbs_app(
    service: KbsService,
    *,
    sessions: SessionStore,
    admin: AdminAuth,
    timeout_s: int = 300,
    body_limit: int = DEFAULT_BODY_LIMIT,
    clock: Callable[[], float] = time.time,
    offload_attest: bool = False,
) -> FastAPI:
    """The KBS application.  ``offload_attest`` runs ``/attest`` in the thread pool
    instead of on the event loop: it costs about 1.3 ms of CPU per flow (thread hand-off
    and GIL contention, docs/PERFORMANCE.md) and only pays when evidence verification
    waits on the network (collateral not yet cached) and the worker has other
    requests to serve meanwhile."""
    app = FastAPI(title="veritee Key Broker Service", version="0")
    install_error_handlers(app)

    def check_admin(request: Request) -> None:
        try:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            admin.authorize(request.headers.get("authorization"), path=target)
        except AdminAuthError as exc:
            raise AdminAuthAccess(request.url.path, str(exc)) from exc

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(status_code=200)

    @app.get("/metrics")
    async def metrics_text() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    def token_for(request: Request) -> str:
        session_id = cookie_session_id(request.headers.get("cookie"))
        token = session_token(session_id, sessions, clock())
        if token is None:
            token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise TokenNotFound()
        return token

    @app.api_route("/kbs/v0/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def dispatch(path: str, request: Request) -> Response:
        parts = path.split("/")
        plugin, rest, method = parts[0], parts[1:], request.method
        if plugin == "attestation-policy" and method == "POST":
            check_admin(request)
            service.set_attestation_policy(await request.body())
            return Response(status_code=200)
        if plugin == "resource-policy" and method in ("POST", "GET"):
            check_admin(request)
            if method == "GET":
                return JSONResponse(service.resource_policy_ids())
            service.set_resource_policy(await request.body())
            return Response(status_code=200)
        if plugin == "reference-value" and method in ("POST", "GET"):
            check_admin(request)
            if method == "GET":
                return JSONResponse(service.reference_value("/".join(rest)))
            service.register_reference_values(await request.body())
            return Response(status_code=200, media_type="application/json")
        if plugin != "resource" or service.resources is None:
            raise PluginNotFound(plugin)
        if method in ("POST", "DELETE"):
            check_admin(request)
            if method == "POST":
                service.set_resource(rest, await request.body())
            else:
                service.delete_resource(rest)
            return Response(status_code=200)
        token = token_for(request)
        if method == "PUT":
            service.verify_token(token)
            raise PluginInternalError()
        # A GET is answered by ResourceRoute before routing; this serves it if that
        # layer is ever left out.
        return JSONResponse(service.release(token, rest, dict(request.query_params)))

    # Added last = outermost: BodyLimit, then the RCAR routes, then the resource GET.
    app.add_middleware(ResourceRoute, service=service, sessions=sessions, clock=clock)
    app.add_middleware(
        RcarRoutes,
        sessions=sessions,
        verify=service.verify_evidence,
        timeout_s=timeout_s,
        clock=clock,
        offload_attest=offload_attest,
    )
    app.add_middleware(BodyLimit, limit=body_limit)
    return app
