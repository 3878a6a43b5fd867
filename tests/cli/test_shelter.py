"""`veritee shelter` against `veritee ratls proxy` running as a process on loopback: Shelter's
output lines and exit codes; each failure leaves the upstream without a byte."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ratls_live import Recorder, proxy_process, recording_upstream, running_proxy
from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.root import TestRoot
from veritee.ratls.cert import make_identity
from veritee.ratls.proxy import RatlsProxy
from veritee.ratls.quoter import EmulatedQuoter

runner = CliRunner()
SUCCESS = "Remote attestation is successful."
FAILED = "Remote attestation failed with err: "
ENCLAVE_INFO = {
    "id": "123456",
    "message": "hello from the app enclave",
    "mrenclave": "aa" * 32,
    "mrsigner": "bb" * 32,
    "msgtype": "ENCLAVEINFO",
    "version": 1,
}
REQUEST = b'{"type":"GETENCLAVEINFO"}'


def _answer(data: bytes) -> bytes:
    """The application behind the proxy: Inclavared's ENCLAVEINFO for GETENCLAVEINFO."""
    return json.dumps(ENCLAVE_INFO, sort_keys=True, separators=(",", ":")).encode()


def _shelter(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["shelter", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def root(test_root: TestRoot) -> Path:
    return test_root.directory


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[tuple[str, int], Recorder]]:
    with recording_upstream(_answer) as served:
        yield served


def _xfer(upstream: tuple[tuple[str, int], Recorder]) -> str:
    (host, port), _ = upstream
    return f"{host}:{port}"


@pytest.fixture(scope="module")
def sgx_proxy(root, upstream, tmp_path_factory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("proxy") / "sgx.log"
    args = ["--attester", "emulated-sgx", "--emulated", str(root), "--xfer", _xfer(upstream)]
    with proxy_process(args, log) as port:
        yield port


@pytest.fixture(scope="module")
def tdx_proxy(root, upstream, tmp_path_factory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("proxy") / "tdx.log"
    args = ["--attester", "emulated-tdx", "--emulated", str(root), "--xfer", _xfer(upstream)]
    with proxy_process(args, log) as port:
        yield port


@pytest.fixture(scope="module")
def mutual_proxy(root, upstream, tmp_path_factory) -> Iterator[tuple[int, Path]]:
    log = tmp_path_factory.mktemp("proxy") / "mutual.log"
    args = [
        "--attester",
        "emulated-sgx",
        "--emulated",
        str(root),
        "--verifier",
        "sgx_ecdsa_qve",
        "--mutual",
        "--trust-root",
        str(root),
        "--xfer",
        _xfer(upstream),
    ]
    with proxy_process(args, log) as port:
        yield port, log


def _received(upstream: tuple[tuple[str, int], Recorder]) -> bytes:
    _, record = upstream
    with record.lock:
        return bytes(record.received)


def _reset(upstream: tuple[tuple[str, int], Recorder]) -> None:
    _, record = upstream
    with record.lock:
        record.received.clear()
        record.connections = 0


# --------------------------------------------------------------------------- failures first


def test_untrusted_test_root_fails_with_the_reason(sgx_proxy, upstream) -> None:
    _reset(upstream)
    code, out = _shelter("remoteattestation", "--addr", f"tcp://127.0.0.1:{sgx_proxy}")
    assert code == 1
    assert f"tcp sock address is 127.0.0.1:{sgx_proxy}" in out
    assert FAILED + "RA-TLS evidence: sgx root_ca" in out
    assert "Traceback" not in out
    assert SUCCESS not in out
    assert _received(upstream) == b""


def test_measurement_outside_the_policy_fails(sgx_proxy, root, upstream, tmp_path) -> None:
    _reset(upstream)
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"mrenclave": ["12" * 32]}))
    code, out = _shelter(
        "remoteattestation",
        "--addr",
        f"tcp://127.0.0.1:{sgx_proxy}",
        "--trust-root",
        str(root),
        "--policy",
        str(reference),
    )
    assert code == 1
    assert FAILED + "RA-TLS policy: mrenclave " + "00" * 32 in out
    assert _received(upstream) == b""


def test_verifier_for_another_tee_fails(tdx_proxy, root, upstream) -> None:
    _reset(upstream)
    code, out = _shelter(
        "remoteattestation",
        "--addr",
        f"tcp://127.0.0.1:{tdx_proxy}",
        "--trust-root",
        str(root),
        "--verifier",
        "sgx_ecdsa",
    )
    assert code == 1
    assert "the peer's evidence is tdx; verifier sgx_ecdsa takes sgx" in out
    assert _received(upstream) == b""


def test_mutual_proxy_refuses_a_client_that_does_not_attest(mutual_proxy, root, upstream) -> None:
    _reset(upstream)
    port, log = mutual_proxy
    code, out = _shelter(
        "remoteattestation", "--addr", f"tcp://127.0.0.1:{port}", "--trust-root", str(root)
    )
    assert code == 1
    assert FAILED in out
    assert "Traceback" not in out
    _, record = upstream
    assert record.connections == 0
    assert _received(upstream) == b""
    assert "RA-TLS no_evidence" in log.read_text()


def test_mutual_proxy_refuses_a_client_of_another_tee(mutual_proxy, root, upstream) -> None:
    _reset(upstream)
    port, log = mutual_proxy
    code, out = _shelter(
        "remoteattestation",
        "--addr",
        f"tcp://127.0.0.1:{port}",
        "--trust-root",
        str(root),
        "--mutual",
        "--emulated",
        str(root),
        "--attester",
        "emulated-tdx",
    )
    assert code == 1
    assert FAILED in out
    assert _received(upstream) == b""
    assert "verifier sgx_ecdsa_qve takes sgx" in log.read_text()


def test_nothing_listening_fails() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out = _shelter("remoteattestation", "--addr", f"tcp://127.0.0.1:{port}")
    assert code == 1
    assert FAILED + f"cannot connect to 127.0.0.1:{port}" in out


def test_inclavared_without_xfer_answers_text_which_shelter_cannot_parse(root) -> None:
    """Shelter against Inclavared without --xfer: the reply is not JSON, as upstream."""
    identity = make_identity(EmulatedQuoter(root, "sgx"))
    with running_proxy(RatlsProxy(identity, xfer=None)) as port:
        code, out = _shelter(
            "remoteattestation", "--addr", f"tcp://127.0.0.1:{port}", "--trust-root", str(root)
        )
    assert code == 1
    assert "Verified mrenclave: " + "00" * 32 in out
    assert "Server:\nreply from inclavared!\n" in out
    assert FAILED + "parse receiver message failed with err" in out


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--addr", "127.0.0.1:1236"], "--addr"),
        (["--addr", "unix:///run/enclave-tls/tls.sock"], "--addr"),
        (["--verifier", "nullverifier"], "--verifier"),
        (["--emulated", "/nonexistent"], "--emulated"),
        (["--log-level", "loud"], "--log-level"),
    ],
)
def test_usage_errors_exit_2(args, hint) -> None:
    code, out = _shelter("remoteattestation", *args)
    assert code == 2
    assert hint in out


# --------------------------------------------------------------------------- success


def test_emulated_sgx_through_the_proxy(sgx_proxy, root, upstream) -> None:
    _reset(upstream)
    code, out = _shelter(
        "remoteattestation", "--addr", f"tcp://127.0.0.1:{sgx_proxy}", "--trust-root", str(root)
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"tcp sock address is 127.0.0.1:{sgx_proxy}"
    assert "Verified sgx evidence (dice certificate, emulated)" in lines
    assert "Verified mrenclave: " + "00" * 32 in lines
    assert "Verified mrsigner: " + "00" * 32 in lines
    server = lines.index("Server:")
    assert json.loads(lines[server + 1]) == ENCLAVE_INFO
    assert "App Enclave mrenclave: " + "aa" * 32 in lines
    assert "App Enclave mrsigner: " + "bb" * 32 in lines
    assert lines[-1] == SUCCESS
    assert _received(upstream) == REQUEST  # what the application behind the proxy saw


def test_emulated_tdx_through_the_proxy(tdx_proxy, root, upstream) -> None:
    _reset(upstream)
    code, out = _shelter(
        "remoteattestation",
        "--addr",
        f"tcp://127.0.0.1:{tdx_proxy}",
        "--trust-root",
        str(root),
        "--verifier",
        "tdx_ecdsa",
    )
    assert code == 0, out
    assert "Verified tdx evidence (dice certificate, emulated)" in out
    assert "Verified mrtd: " in out
    assert out.splitlines()[-1] == SUCCESS
    assert _received(upstream) == REQUEST


def test_mutual_both_sides_attest(mutual_proxy, root, upstream) -> None:
    _reset(upstream)
    port, log = mutual_proxy
    code, out = _shelter(
        "remoteattestation",
        "--addr",
        f"tcp://127.0.0.1:{port}",
        "--trust-root",
        str(root),
        "--mutual",
        "--emulated",
        str(root),
    )
    assert code == 0, out
    assert out.splitlines()[-1] == SUCCESS
    assert _received(upstream) == REQUEST
    assert "attested client 127.0.0.1:" in log.read_text()


# --------------------------------------------------------------------------- mrverify


def _reference(tmp_path: Path, doc: dict[str, object]) -> Path:
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(doc))
    return path


def test_mrverify_mismatch(sgx_proxy, root, tmp_path) -> None:
    reference = _reference(tmp_path, {"mrenclave": ["34" * 32], "mrsigner": ["00" * 32]})
    code, out = _shelter(
        "mrverify",
        "--reference",
        str(reference),
        "--addr",
        f"tcp://127.0.0.1:{sgx_proxy}",
        "--trust-root",
        str(root),
    )
    assert code == 1
    assert "Verified mrenclave: " + "00" * 32 in out
    assert f"Measurements mismatch with the reference {reference}: RA-TLS policy" in out


def test_mrverify_needs_attestation_first(sgx_proxy, tmp_path) -> None:
    reference = _reference(tmp_path, {"mrenclave": ["00" * 32]})
    code, out = _shelter(
        "mrverify", "--reference", str(reference), "--addr", f"tcp://127.0.0.1:{sgx_proxy}"
    )
    assert code == 1
    assert FAILED + "RA-TLS evidence" in out
    assert "Measurements match" not in out


@pytest.mark.parametrize(
    "content", ['{"mrenclave": "not a list"}', '{"colour": ["00"]}', "not json"]
)
def test_mrverify_unusable_reference_exits_2(content, tmp_path) -> None:
    reference = tmp_path / "reference.json"
    reference.write_text(content)
    code, out = _shelter("mrverify", "--reference", str(reference), "--cert", str(reference))
    assert code == 2
    assert f"reference {reference}" in out


def test_mrverify_needs_one_source(tmp_path) -> None:
    reference = _reference(tmp_path, {"mrenclave": ["00" * 32]})
    code, _ = _shelter("mrverify", "--reference", str(reference))
    assert code == 2


def test_mrverify_match_online(sgx_proxy, root, tmp_path) -> None:
    reference = _reference(
        tmp_path, {"mrenclave": ["00" * 32], "mrsigner": ["00" * 32], "isvsvn": 0}
    )
    code, out = _shelter(
        "mrverify",
        "--reference",
        str(reference),
        "--addr",
        f"tcp://127.0.0.1:{sgx_proxy}",
        "--trust-root",
        str(root),
    )
    assert code == 0, out
    assert out.splitlines()[-1] == f"Measurements match the reference {reference}."


def test_mrverify_match_offline_certificate(root, tmp_path) -> None:
    quoter = EmulatedQuoter(root, "tdx", settings={"mr_td": bytes.fromhex("5a" * 48)})
    cert = tmp_path / "peer.pem"
    cert.write_bytes(make_identity(quoter).cert_pem)
    reference = _reference(tmp_path, {"mrtd": ["5a" * 48]})
    code, out = _shelter(
        "mrverify", "--reference", str(reference), "--cert", str(cert), "--trust-root", str(root)
    )
    assert code == 0, out
    assert "Verified mrtd: " + "5a" * 48 in out
    assert "Measurements match" in out


# --------------------------------------------------------------------------- proxy usage


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--listen", "1236", "--attester", "emulated-sgx"], 2, "--listen"),
        (["--listen", "127.0.0.1:0", "--attester", "sgx_la"], 2, "--attester"),
        (["--listen", "127.0.0.1:0", "--attester", "emulated-sgx"], 1, "--emulated"),
        (
            ["--listen", "127.0.0.1:0", "--attester", "emulated-sgx", "--policy", "p.json"],
            2,
            "--mutual",
        ),
    ],
)
def test_proxy_usage_errors(args, code, text) -> None:
    result = runner.invoke(app, ["ratls", "proxy", *args])
    assert result.exit_code == code
    assert text in result.output
