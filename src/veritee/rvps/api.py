"""The RVPS REST API: a FastAPI router over a :class:`ReferenceValueStore`.

Routes (all JSON):

* ``POST /rvps/reference-value`` — body: a Trustee RVPS message
  ``{"version","type","payload"}``; 200 ``{"registered": [names]}``.
* ``POST /rvps/reference-values`` — body: ``{"name", "value", "expiration"?,
  "version"?}`` or a list of them (our direct form; ``expiration`` is ISO 8601,
  naive means UTC, default now + 12 months as Trustee's sample extractor, and
  must be in the future); 200 ``{"registered": [names]}``.
* ``GET /rvps/reference-value/{name}`` — 200 the stored ``value``; 404 when
  unknown or expired.  ``name`` may contain ``/`` (Trustee ids often do).
* ``GET /rvps/reference-values[?include_expired=true]`` — 200 a list of
  Trustee's stored form ``{"version","name","expiration","value"}`` by name:
  every value when there are at most ``MAX_PAGE_SIZE`` (1000); beyond that the
  first 1000, with headers ``X-Next-Page-Token`` and ``Link: <…>; rel="next"``.
* ``GET /rvps/reference-values?limit=N[&page_token=T][&include_expired=true]``
  (paged form, either parameter selects it) — 200 ``{"reference_values":
  [...], "next_page_token": T | null}``: at most ``limit`` values (default 100;
  a limit over 1000 gets 1000) by name after the page ``T`` names; ``null`` on the last page.  A
  bad ``limit`` or a token not handed out here is 400 ``InvalidPageToken``.
* ``DELETE /rvps/reference-value/{name}`` — 200 ``{"deleted": name}``; 404 when
  not stored.

``authorize(request)`` runs first on every mutating route, and also on the
reading routes unless ``protect_reads=False`` (Trustee treats GET
reference-value as an admin endpoint too); it raises ``HTTPException(401)``
itself.  Errors are ``{"type": "...", "detail": "..."}``: 400 for a malformed
message or value, 404 not found, 413 body over ``max_body_bytes``, 500
storage failure.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from veritee.errors import VeriteeError
from veritee.rvps.extractors import SAMPLE_VALIDITY_MONTHS, add_months
from veritee.rvps.model import (
    DEFAULT_VERSION,
    InvalidPageToken,
    InvalidReferenceValue,
    ReferenceValue,
    ReferenceValueNotFound,
    RvpsError,
    check_json,
    parse_expiration,
)
from veritee.rvps.store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ReferenceValueStore

__all__ = ["DEFAULT_MAX_BODY_BYTES", "parse_direct_values", "rvps_router"]

DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024  # Trustee's default payload_request_size
_DIRECT_KEYS = frozenset({"name", "value", "expiration", "version"})


class _BodyTooLarge(Exception):
    pass


def rvps_router(
    store: ReferenceValueStore,
    *,
    authorize: Callable[[Request], None],
    protect_reads: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> APIRouter:
    """The RVPS routes over ``store``, guarded by ``authorize`` (see the module docstring)."""
    router = APIRouter(tags=["rvps"])

    def guard_read(request: Request) -> None:
        if protect_reads:
            authorize(request)

    @router.post("/rvps/reference-value", response_model=None)
    async def register_message(request: Request) -> Response:
        authorize(request)
        try:
            body = await _read_body(request, max_body_bytes)
            values = await run_in_threadpool(store.register_message, body)
        except (VeriteeError, _BodyTooLarge) as exc:
            return _failure(exc)
        return JSONResponse({"registered": [v.name for v in values]})

    @router.post("/rvps/reference-values", response_model=None)
    async def register_values(request: Request) -> Response:
        authorize(request)
        try:
            body = await _read_body(request, max_body_bytes)
            values = parse_direct_values(body)
            stored = await run_in_threadpool(store.register, values)
        except (VeriteeError, _BodyTooLarge) as exc:
            return _failure(exc)
        return JSONResponse({"registered": [v.name for v in stored]})

    @router.get("/rvps/reference-value/{name:path}", response_model=None)
    async def get_value(name: str, request: Request) -> Response:
        guard_read(request)
        try:
            found = await run_in_threadpool(store.get_reference_value, name)
        except VeriteeError as exc:
            return _failure(exc)
        if found is None:
            return _failure(ReferenceValueNotFound(f"no reference value named {name!r}"))
        return JSONResponse(found.value)

    @router.get("/rvps/reference-values", response_model=None)
    async def list_values(
        request: Request,
        include_expired: bool = False,
        limit: str | None = None,
        page_token: str | None = None,
    ) -> Response:
        guard_read(request)
        paged = limit is not None or page_token is not None
        try:
            size = _page_size(limit) if paged else MAX_PAGE_SIZE
            page = await run_in_threadpool(
                lambda: store.page(limit=size, token=page_token, include_expired=include_expired)
            )
        except VeriteeError as exc:
            return _failure(exc)
        values = [v.to_json() for v in page.values]
        if paged:
            return JSONResponse(
                {"reference_values": values, "next_page_token": page.next_token}
            )
        headers = {}
        if page.next_token is not None:
            following = request.url.include_query_params(
                limit=MAX_PAGE_SIZE, page_token=page.next_token
            )
            headers = {"X-Next-Page-Token": page.next_token, "Link": f'<{following}>; rel="next"'}
        return JSONResponse(values, headers=headers)

    @router.delete("/rvps/reference-value/{name:path}", response_model=None)
    async def delete_value(name: str, request: Request) -> Response:
        authorize(request)
        try:
            removed = await run_in_threadpool(store.delete, name)
        except VeriteeError as exc:
            return _failure(exc)
        if not removed:
            return _failure(ReferenceValueNotFound(f"no reference value named {name!r}"))
        return JSONResponse({"deleted": name})

    return router


def parse_direct_values(
    body: bytes | str | object, *, now: dt.datetime | None = None
) -> list[ReferenceValue]:
    """Our direct form, ``{"name","value","expiration"?,"version"?}`` or a list of them.

    ``body`` is JSON text/bytes or already-decoded JSON.  Raises
    :class:`InvalidReferenceValue`.
    """
    data: object = body
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise InvalidReferenceValue("body is not valid JSON") from exc
    items = data if isinstance(data, list) else [data]
    when = dt.datetime.now(dt.UTC) if now is None else now
    return [_direct_value(item, when) for item in items]


def _direct_value(item: object, now: dt.datetime) -> ReferenceValue:
    if not isinstance(item, Mapping):
        raise InvalidReferenceValue('each reference value is an object {"name", "value", ...}')
    unknown = sorted(str(k) for k in item if k not in _DIRECT_KEYS)
    if unknown:
        raise InvalidReferenceValue(f"unknown member(s) {', '.join(unknown)[:200]}")
    if "name" not in item or "value" not in item:
        raise InvalidReferenceValue('a reference value needs "name" and "value"')
    name, raw_expiration = item["name"], item.get("expiration")
    if not isinstance(name, str):
        raise InvalidReferenceValue("reference value name must be a string")
    if raw_expiration is None:
        expiration = add_months(now, SAMPLE_VALIDITY_MONTHS)
    else:
        expiration = parse_expiration(raw_expiration)
        if expiration <= now:
            raise InvalidReferenceValue(
                f"reference value {name!r}: expiration {raw_expiration} is in the past"
            )
    version = item.get("version", DEFAULT_VERSION)
    if not isinstance(version, str):
        raise InvalidReferenceValue(f"reference value {name!r}: version must be a string")
    return ReferenceValue(
        name=name,
        value=check_json(item["value"], what=f"reference value {name!r}"),
        expiration=expiration,
        version=version,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _failure(exc: BaseException) -> JSONResponse:
    status: int
    kind: str
    if isinstance(exc, ReferenceValueNotFound):
        status, kind = 404, exc.type_name
    elif isinstance(exc, RvpsError):
        status, kind = 400, exc.type_name
    elif isinstance(exc, _BodyTooLarge):
        status, kind = 413, "PayloadTooLarge"
    else:
        status, kind = 500, "StorageError"
    content: dict[str, Any] = {"type": kind, "detail": str(exc)}
    return JSONResponse(content, status_code=status)


def _page_size(limit: str | None) -> int:
    if limit is None or limit == "":
        return DEFAULT_PAGE_SIZE
    if not limit.isascii() or not limit.isdigit() or len(limit) > 9 or int(limit) < 1:
        raise InvalidPageToken("limit must be a positive integer")
    return min(int(limit), MAX_PAGE_SIZE)  # a larger limit gets the largest page


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
