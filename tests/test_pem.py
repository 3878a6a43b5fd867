"""Certificate loading tolerates comments between PEM blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from veritee.errors import ParseError
from veritee.pem import dump_certificates, load_certificates


def test_comment_lines_between_certificates(vectors: Path) -> None:
    chain = (vectors / "go-sev-guest/trust/ask_ark_milan.pem").read_bytes()
    blocks = chain.split(b"-----END CERTIFICATE-----")
    commented = (
        b"# AMD Milan chain\n# ASK first\n" + blocks[0] + b"-----END CERTIFICATE-----\n"
        b"# then the ARK, fetched 2026-11-23\n\n" + blocks[1] + b"-----END CERTIFICATE-----\n"
        b"trailing words\n"
    )
    certs = load_certificates(commented)
    assert [c.subject.rfc4514_string().split(",")[0] for c in certs] == [
        "CN=SEV-Milan",
        "CN=ARK-Milan",
    ]


def test_der_certificate(vectors: Path) -> None:
    (cert,) = load_certificates((vectors / "virtee-sev/vcek_milan.der").read_bytes())
    assert "SEV-VCEK" in cert.subject.rfc4514_string()


@pytest.mark.parametrize(
    "data", [b"", b"not a cert", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]
)
def test_garbage_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        load_certificates(data)


def test_dump_then_load_keeps_the_chain_in_order(vectors: Path) -> None:
    ask, ark = load_certificates((vectors / "go-sev-guest/trust/ask_ark_milan.pem").read_bytes())
    assert load_certificates(dump_certificates(ark, ask)) == [ark, ask]
    assert dump_certificates() == b""
