"""Prometheus metrics of the KBS, with Trustee's metric names (``kbs/src/prometheus/mod.rs``,
``kbs/docs/metrics.md``).

All metrics live in one dedicated :data:`REGISTRY` (never prometheus_client's global
registry), and :func:`render` returns the text exposition for ``GET /metrics``.
``_created`` samples, which the Python client adds and Trustee's Rust client does
not have, are left out so the exposition carries the same series as Trustee's.

==========================================  =========  ================  ===========================
Metric                                      Type       Labels            Recorded by
==========================================  =========  ================  ===========================
``kbs_build_info``                          gauge      version,          at import (value 1)
                                                       git_hash,
                                                       build_date
``kbs_http_requests_total``                 counter    –                 :func:`request_started`
``kbs_http_request_duration_seconds``       histogram  –                 :func:`request_finished`
``kbs_http_request_size_bytes``             histogram  –                 :func:`request_started`
``kbs_http_response_size_bytes``            histogram  –                 :func:`request_finished`
``kbs_http_active_connections``             gauge      –                 started/finished
``kbs_resource_reads_total``                counter    resource_path     :func:`resource_read`
``kbs_resource_writes_total``               counter    resource_path     :func:`resource_write`
``kbs_resource_deletes_total``              counter    resource_path     :func:`resource_delete`
``kbs_policy_evaluations_total``            counter    –                 policy_evaluation/_error
``kbs_policy_approvals_total``              counter    –                 :func:`policy_evaluation`
``kbs_policy_violations_total``             counter    –                 :func:`policy_evaluation`
``kbs_policy_errors_total``                 counter    –                 :func:`policy_error`
``kbs_attestation_requests_total``          counter    –                 :func:`attestation_request`
``kbs_attestation_successes_total``         counter    tee_type          :func:`attestation_success`
``kbs_attestation_failures_total``          counter    tee_type          :func:`attestation_failure`
``kbs_attestation_errors_total``            counter    –                 :func:`attestation_error`
``kbs_auth_requests_total``                 counter    –                 :func:`auth_request`
``kbs_auth_successes_total``                counter    –                 :func:`auth_success`
``kbs_auth_errors_total``                   counter    –                 :func:`auth_error`
==========================================  =========  ================  ===========================

Buckets as Trustee's: durations 0.5 ms, 1 ms, 5 ms, 10 ms, 50 ms, 500 ms, 1 s; sizes
32, 128, 512, 2048, 8192 bytes.  Differences from Trustee: response sizes go to
``kbs_http_response_size_bytes`` (Trustee observes them into the request-size
histogram by mistake, so its response histogram stays empty); ``kbs_build_info``
carries veritee's version, and ``git_hash``/``build_date`` are ``unknown`` unless the
environment variables ``VERITEE_GIT_HASH``/``VERITEE_BUILD_DATE`` say otherwise.
Like Trustee, only ``/kbs/...`` requests should be recorded (not ``/metrics``).
:func:`policy_error` counts an evaluation too, since Trustee counts the evaluation
before it fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "REGISTRY",
    "attestation_error",
    "attestation_failure",
    "attestation_request",
    "attestation_success",
    "auth_error",
    "auth_request",
    "auth_success",
    "policy_error",
    "policy_evaluation",
    "render",
    "request_finished",
    "request_started",
    "resource_delete",
    "resource_read",
    "resource_write",
    "track_request",
]

#: The registry every KBS metric is registered in (not prometheus_client's global one).
REGISTRY = CollectorRegistry(auto_describe=True)

_DURATION_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.5, 1.0)
_SIZE_BUCKETS = (32.0, 128.0, 512.0, 2048.0, 8192.0)


def _version() -> str:
    try:
        return metadata.version("veritee")
    except metadata.PackageNotFoundError:  # pragma: no cover (always installed here)
        return "unknown"


BUILD_INFO = Gauge(
    "kbs_build_info",
    "KBS binary build info",
    ["version", "git_hash", "build_date"],
    registry=REGISTRY,
)
BUILD_INFO.labels(
    _version(),
    os.environ.get("VERITEE_GIT_HASH", "unknown"),
    os.environ.get("VERITEE_BUILD_DATE", "unknown"),
).set(1)

REQUEST_TOTAL = Counter("kbs_http_requests", "Total HTTP requests count", registry=REGISTRY)
REQUEST_DURATION = Histogram(
    "kbs_http_request_duration_seconds",
    "Distribution of request handling duration",
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
REQUEST_SIZES = Histogram(
    "kbs_http_request_size_bytes",
    "Distribution of request body sizes",
    buckets=_SIZE_BUCKETS,
    registry=REGISTRY,
)
RESPONSE_SIZES = Histogram(
    "kbs_http_response_size_bytes",
    "Distribution of response body sizes",
    buckets=_SIZE_BUCKETS,
    registry=REGISTRY,
)
ACTIVE_CONNECTIONS = Gauge(
    "kbs_http_active_connections",
    "Count of HTTP connections being processed at the moment",
    registry=REGISTRY,
)

RESOURCE_READS = Counter(
    "kbs_resource_reads", "KBS resource read count", ["resource_path"], registry=REGISTRY
)
RESOURCE_WRITES = Counter(
    "kbs_resource_writes", "KBS resource write count", ["resource_path"], registry=REGISTRY
)
RESOURCE_DELETES = Counter(
    "kbs_resource_deletes", "KBS resource delete count", ["resource_path"], registry=REGISTRY
)

POLICY_EVALS = Counter(
    "kbs_policy_evaluations", "Total count of KBS policy evaluations", registry=REGISTRY
)
POLICY_APPROVALS = Counter(
    "kbs_policy_approvals", "Total count of requests approved by KBS policy", registry=REGISTRY
)
POLICY_VIOLATIONS = Counter(
    "kbs_policy_violations", "Total count of requests denied by KBS policy", registry=REGISTRY
)
POLICY_ERRORS = Counter(
    "kbs_policy_errors", "Total count of errors during KBS evaluation", registry=REGISTRY
)

ATTESTATION_REQUESTS = Counter(
    "kbs_attestation_requests", "Total count of attestation requests", registry=REGISTRY
)
ATTESTATION_SUCCESSES = Counter(
    "kbs_attestation_successes",
    "Total count of attestation successes",
    ["tee_type"],
    registry=REGISTRY,
)
ATTESTATION_FAILURES = Counter(
    "kbs_attestation_failures",
    "Total count of attestation failures",
    ["tee_type"],
    registry=REGISTRY,
)
ATTESTATION_ERRORS = Counter(
    "kbs_attestation_errors",
    "Total count of errors during attestation processing",
    registry=REGISTRY,
)

AUTH_REQUESTS = Counter("kbs_auth_requests", "Total count of auth requests", registry=REGISTRY)
AUTH_SUCCESSES = Counter(
    "kbs_auth_successes", "Total count of successfully authenticated requests", registry=REGISTRY
)
AUTH_ERRORS = Counter(
    "kbs_auth_errors", "Total count of errors during auth processing", registry=REGISTRY
)


# -- HTTP ---------------------------------------------------------------------


def request_started(request_bytes: int | None) -> None:
    """A ``/kbs/...`` request arrived; ``request_bytes`` is its Content-Length (None → 0)."""
    ACTIVE_CONNECTIONS.inc()
    REQUEST_TOTAL.inc()
    REQUEST_SIZES.observe(max(0, request_bytes or 0))


def request_finished(duration_s: float, response_bytes: int | None) -> None:
    """The request handled by :func:`request_started` has its response."""
    REQUEST_DURATION.observe(max(0.0, duration_s))
    if response_bytes is not None:
        RESPONSE_SIZES.observe(max(0, response_bytes))
    ACTIVE_CONNECTIONS.dec()


@contextmanager
def track_request(request_bytes: int | None) -> Iterator[list[int | None]]:
    """Record one request around a block; put the response size in ``box[0]``.

    ``with track_request(n) as box: ...; box[0] = len(body)``.  The duration is
    measured with :func:`time.perf_counter` and recorded even when the block raises.
    """
    box: list[int | None] = [None]
    start = time.perf_counter()
    request_started(request_bytes)
    try:
        yield box
    finally:
        request_finished(time.perf_counter() - start, box[0])


# -- resources ----------------------------------------------------------------


def resource_read(resource_path: str) -> None:
    RESOURCE_READS.labels(resource_path).inc()


def resource_write(resource_path: str) -> None:
    RESOURCE_WRITES.labels(resource_path).inc()


def resource_delete(resource_path: str) -> None:
    RESOURCE_DELETES.labels(resource_path).inc()


# -- resource policy ----------------------------------------------------------


def policy_evaluation(allowed: bool) -> None:
    """One resource-policy evaluation that produced a decision."""
    POLICY_EVALS.inc()
    (POLICY_APPROVALS if allowed else POLICY_VIOLATIONS).inc()


def policy_error() -> None:
    """One resource-policy evaluation that failed (counted as an evaluation too)."""
    POLICY_EVALS.inc()
    POLICY_ERRORS.inc()


# -- attestation (RCAR) -------------------------------------------------------


def auth_request() -> None:
    """``POST /kbs/v0/auth`` received."""
    AUTH_REQUESTS.inc()


def auth_success() -> None:
    AUTH_SUCCESSES.inc()


def auth_error() -> None:
    AUTH_ERRORS.inc()


def attestation_request() -> None:
    """``POST /kbs/v0/attest`` received."""
    ATTESTATION_REQUESTS.inc()


def attestation_success(tee: str) -> None:
    ATTESTATION_SUCCESSES.labels(tee).inc()


def attestation_failure(tee: str) -> None:
    """Evidence of ``tee`` was verified and rejected."""
    ATTESTATION_FAILURES.labels(tee).inc()


def attestation_error() -> None:
    """An attestation request failed before or after verification (malformed, no session…)."""
    ATTESTATION_ERRORS.inc()


# -- exposition ---------------------------------------------------------------


class _WithoutCreated(Collector):
    """A view of a registry without the ``_created`` samples Trustee does not export."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


def render(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type."""
    view = _WithoutCreated(registry or REGISTRY)
    return generate_latest(view), CONTENT_TYPE_LATEST
