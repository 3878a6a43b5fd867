"""KBS Prometheus metrics: Trustee's names, counts after recording, a dedicated registry."""

from __future__ import annotations

import re

import prometheus_client
import pytest

from veritee.kbs import metrics

TRUSTEE_NAMES = [
    "kbs_build_info",
    "kbs_http_requests_total",
    "kbs_http_request_duration_seconds",
    "kbs_http_request_size_bytes",
    "kbs_http_response_size_bytes",
    "kbs_http_active_connections",
    "kbs_resource_reads_total",
    "kbs_resource_writes_total",
    "kbs_resource_deletes_total",
    "kbs_policy_evaluations_total",
    "kbs_policy_approvals_total",
    "kbs_policy_violations_total",
    "kbs_policy_errors_total",
    "kbs_attestation_requests_total",
    "kbs_attestation_successes_total",
    "kbs_attestation_failures_total",
    "kbs_attestation_errors_total",
    "kbs_auth_requests_total",
    "kbs_auth_successes_total",
    "kbs_auth_errors_total",
]


def value(name: str, **labels: str) -> float:
    found = metrics.REGISTRY.get_sample_value(name, labels or None)
    return 0.0 if found is None else found


def exposition() -> str:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    return body.decode()


def test_every_trustee_metric_is_exposed_with_its_type() -> None:
    text = exposition()
    for name in TRUSTEE_NAMES:
        assert f"# HELP {name} " in text
    assert "# TYPE kbs_resource_reads_total counter" in text
    assert "# TYPE kbs_http_request_duration_seconds histogram" in text
    assert "# TYPE kbs_http_active_connections gauge" in text
    assert "_created" not in text
    assert re.search(
        r'^kbs_build_info\{build_date="[^"]*",git_hash="[^"]*",version="[^"]+"\} 1\.0$',
        text,
        re.MULTILINE,
    )


def test_dedicated_registry() -> None:
    assert metrics.REGISTRY is not prometheus_client.REGISTRY
    global_text = prometheus_client.generate_latest().decode()
    assert "kbs_policy_evaluations_total" not in global_text


def test_resource_counters_per_path() -> None:
    before = value("kbs_resource_reads_total", resource_path="m/key/1")
    metrics.resource_read("m/key/1")
    metrics.resource_read("m/key/1")
    metrics.resource_write("m/key/1")
    metrics.resource_delete("m/key/2")
    assert value("kbs_resource_reads_total", resource_path="m/key/1") == before + 2
    text = exposition()
    assert re.search(r'^kbs_resource_reads_total\{resource_path="m/key/1"\} \d+\.0$', text, re.M)
    assert 'kbs_resource_writes_total{resource_path="m/key/1"}' in text
    assert 'kbs_resource_deletes_total{resource_path="m/key/2"}' in text


def test_policy_counters() -> None:
    names = ["evaluations", "approvals", "violations", "errors"]
    before = {n: value(f"kbs_policy_{n}_total") for n in names}
    metrics.policy_evaluation(True)
    metrics.policy_evaluation(True)
    metrics.policy_evaluation(False)
    metrics.policy_error()
    after = {n: value(f"kbs_policy_{n}_total") for n in names}
    assert {n: after[n] - before[n] for n in names} == {
        "evaluations": 4,
        "approvals": 2,
        "violations": 1,
        "errors": 1,
    }
    assert f"kbs_policy_approvals_total {after['approvals']}" in exposition()


def test_attestation_and_auth_counters() -> None:
    before = {
        "succ": value("kbs_attestation_successes_total", tee_type="tdx"),
        "fail": value("kbs_attestation_failures_total", tee_type="snp"),
        "req": value("kbs_attestation_requests_total"),
        "err": value("kbs_attestation_errors_total"),
        "auth": value("kbs_auth_requests_total"),
        "auth_ok": value("kbs_auth_successes_total"),
        "auth_err": value("kbs_auth_errors_total"),
    }
    metrics.auth_request()
    metrics.auth_success()
    metrics.auth_request()
    metrics.auth_error()
    metrics.attestation_request()
    metrics.attestation_success("tdx")
    metrics.attestation_request()
    metrics.attestation_failure("snp")
    metrics.attestation_request()
    metrics.attestation_error()
    assert value("kbs_attestation_successes_total", tee_type="tdx") == before["succ"] + 1
    assert value("kbs_attestation_failures_total", tee_type="snp") == before["fail"] + 1
    assert value("kbs_attestation_requests_total") == before["req"] + 3
    assert value("kbs_attestation_errors_total") == before["err"] + 1
    assert value("kbs_auth_requests_total") == before["auth"] + 2
    assert value("kbs_auth_successes_total") == before["auth_ok"] + 1
    assert value("kbs_auth_errors_total") == before["auth_err"] + 1
    text = exposition()
    assert 'kbs_attestation_successes_total{tee_type="tdx"}' in text
    assert 'kbs_attestation_failures_total{tee_type="snp"}' in text


def test_http_request_metrics_with_trustee_buckets() -> None:
    count = value("kbs_http_request_size_bytes_count")
    small = value("kbs_http_request_size_bytes_bucket", le="32.0")
    resp_512 = value("kbs_http_response_size_bytes_bucket", le="512.0")
    total = value("kbs_http_requests_total")
    metrics.request_started(None)
    assert value("kbs_http_active_connections") >= 1
    metrics.request_finished(0.002, 300)
    with metrics.track_request(1000) as box:
        box[0] = 20
    assert value("kbs_http_requests_total") == total + 2
    assert value("kbs_http_request_size_bytes_count") == count + 2
    assert value("kbs_http_request_size_bytes_bucket", le="32.0") == small + 1  # None → 0 bytes
    assert value("kbs_http_response_size_bytes_bucket", le="512.0") == resp_512 + 2
    assert value("kbs_http_active_connections") == 0
    text = exposition()
    for le in ("0.0005", "0.001", "0.005", "0.01", "0.05", "0.5", "1.0", "+Inf"):
        assert f'kbs_http_request_duration_seconds_bucket{{le="{le}"}}' in text
    for le in ("32.0", "128.0", "512.0", "2048.0", "8192.0", "+Inf"):
        assert f'kbs_http_request_size_bytes_bucket{{le="{le}"}}' in text


def test_track_request_records_even_when_the_handler_raises() -> None:
    before = value("kbs_http_request_duration_seconds_count")
    with pytest.raises(RuntimeError), metrics.track_request(5):
        raise RuntimeError("handler failed")
    assert value("kbs_http_request_duration_seconds_count") == before + 1
    assert value("kbs_http_active_connections") == 0
