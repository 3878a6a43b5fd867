"""Property tests: no input makes the SNP parser or verifier fail with anything but ParseError.

The verifier may also return a rejected verdict; it may return a verified one only
when the mutation left the signed bytes (0x000..0x2A0) and the signature (R, S) alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import ParseError
from veritee.verifier.base import VerifyOptions
from veritee.verifier.snp import SnpVerifier
from veritee.verifier.snp_evidence import parse_evidence
from veritee.verifier.snp_report import parse_report

OPTS = VerifyOptions(at=dt.datetime(2025, 6, 1, tzinfo=dt.UTC), allow_debug=True)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Samples(dict[str, tuple[bytes, bytes | None]]):
    """Evidence and VEK chain per sample; a short repr keeps Hypothesis's reports readable."""

    def __repr__(self) -> str:
        return f"Samples({sorted(self)})"


def _load(vectors: Path) -> Samples:
    return Samples(
        {
            "vcek": (
                (vectors / "trustee/snp/test-report.bin").read_bytes(),
                (vectors / "trustee/snp/test-vcek.der").read_bytes(),
            ),
            "vlek": (
                (vectors / "trustee/snp/test-vlek-report.bin").read_bytes(),
                (vectors / "trustee/snp/test-vlek.der").read_bytes(),
            ),
            "hcl": (
                (vectors / "trustee/az-snp-vtpm/hcl-report.bin").read_bytes(),
                (vectors / "trustee/az-snp-vtpm/vcek.pem").read_bytes(),
            ),
            "azure-json": (
                (vectors / "trustee/az-snp-vtpm/evidence-genoa.json").read_bytes(),
                None,
            ),
        }
    )


@pytest.fixture(scope="module")
def samples(vectors: Path) -> Samples:
    return _load(vectors)


def _verify(evidence: bytes, chain: bytes | None) -> bool | None:
    """Verified?  None when the evidence did not parse (ParseError)."""
    try:
        return SnpVerifier(cert_chain=chain).verify(evidence, OPTS).verified
    except ParseError:
        return None


@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes(data: bytes) -> None:
    for parse in (parse_evidence, parse_report):
        with contextlib.suppress(ParseError):
            parse(data)
    assert _verify(data, None) in (None, False)


@FUZZ
@given(
    prefix=st.sampled_from([b"HCLA", b"{", b"\x02\x00\x00\x00", b"\x05\x00\x00\x00"]),
    body=st.binary(max_size=2700),
)
def test_random_bytes_with_plausible_prefix(prefix: bytes, body: bytes) -> None:
    assert _verify(prefix + body, None) in (None, False)


@FUZZ
@given(
    name=st.sampled_from(["vcek", "vlek", "hcl"]),
    flips=st.lists(st.tuples(st.integers(0, 2599), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_mutated_reports(samples: Samples, name: str, flips: list[tuple[int, int]]) -> None:
    original, chain = samples[name]
    base = 0x20 if name == "hcl" else 0
    data = bytearray(original)
    for offset, mask in flips:
        if offset < len(data):
            data[offset] ^= mask
    verified = _verify(bytes(data), chain)
    if verified:
        signed = slice(base, base + 0x330)  # signed bytes, R and S
        assert data[signed] == original[signed]


@FUZZ
@given(
    name=st.sampled_from(["vcek", "vlek", "hcl"]),
    cut=st.integers(0, 2600),
    extra=st.binary(max_size=64),
)
def test_truncated_and_extended(samples: Samples, name: str, cut: int, extra: bytes) -> None:
    original, chain = samples[name]
    data = original[:cut] + extra
    verified = _verify(data, chain)
    if verified:
        base = 0x20 if name == "hcl" else 0
        assert data[base : base + 0x330] == original[base : base + 0x330]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    doc=st.dictionaries(
        st.sampled_from(
            ["attestation_report", "cert_chain", "report", "hcl_report", "vcek", "quote"]
        ),
        JSON_VALUES,
        max_size=4,
    )
)
def test_random_json_documents(doc: dict[str, Any]) -> None:
    assert _verify(json.dumps(doc).encode(), None) in (None, False)


def _serde_sample(samples: Samples) -> dict[str, Any]:
    raw, chain = samples["vlek"]
    r = parse_report(raw)
    return {
        "attestation_report": {
            "version": r.version,
            "guest_svn": r.guest_svn,
            "policy": r.policy.value,
            "family_id": list(r.family_id),
            "image_id": list(r.image_id),
            "vmpl": r.vmpl,
            "sig_algo": r.signature_algo,
            "current_tcb": _tcb(r.current_tcb),
            "plat_info": r.platform_info.value,
            "key_info": r.key_info,
            "report_data": list(r.report_data),
            "measurement": list(r.measurement),
            "host_data": list(r.host_data),
            "id_key_digest": list(r.id_key_digest),
            "author_key_digest": list(r.author_key_digest),
            "report_id": list(r.report_id),
            "report_id_ma": list(r.report_id_ma),
            "reported_tcb": _tcb(r.reported_tcb),
            "cpuid_fam_id": 0x19,
            "cpuid_mod_id": 1,
            "cpuid_step": 1,
            "chip_id": list(r.chip_id),
            "committed_tcb": _tcb(r.committed_tcb),
            "current": vars(r.current_version),
            "committed": vars(r.committed_version),
            "launch_tcb": _tcb(r.launch_tcb),
            "signature": {"r": list(r.signature_r), "s": list(r.signature_s)},
        },
        "cert_chain": [{"cert_type": "VLEK", "data": list(chain or b"")}],
    }


def _tcb(t: Any) -> dict[str, Any]:
    return {
        "fmc": t.fmc,
        "bootloader": t.bootloader,
        "tee": t.tee,
        "snp": t.snp,
        "microcode": t.microcode,
    }


def test_serde_sample_verifies(samples: Samples) -> None:
    """The base document of the next test is genuine."""
    assert _verify(json.dumps(_serde_sample(samples)).encode(), None) is True


@FUZZ
@given(path=st.lists(st.integers(0, 1000), min_size=1, max_size=3), value=JSON_VALUES)
def test_mutated_trustee_json(samples: Samples, path: list[int], value: object) -> None:
    doc = _serde_sample(samples)
    node: Any = doc
    for step in path[:-1]:
        if isinstance(node, dict) and node:
            node = node[sorted(node)[step % len(node)]]
        elif isinstance(node, list) and node:
            node = node[step % len(node)]
    if isinstance(node, dict) and node:
        node[sorted(node)[path[-1] % len(node)]] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node)] = value
    evidence = json.dumps(doc).encode()
    if _verify(evidence, None):
        # Only a change outside the signed fields can leave it verified.
        assert (
            parse_evidence(evidence).report.raw
            == parse_evidence(json.dumps(_serde_sample(samples)).encode()).report.raw
        )


# cryptography warns (UserWarning) about out-of-range name attributes, e.g. an 11-character
# countryName; that is a warning in production and not an exception of ours.
@pytest.mark.filterwarnings("ignore:Attribute's length must be:UserWarning")
@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, 1400), st.integers(1, 255)), min_size=1, max_size=3),
    embedded=st.booleans(),
)
def test_mutated_certificates(
    samples: Samples, flips: list[tuple[int, int]], embedded: bool
) -> None:
    """A damaged VEK, in the evidence JSON or in the caller's chain, is a ParseError or a
    rejected verdict, never another exception."""
    report, chain = samples["vlek"]
    cert = bytearray(chain or b"")
    for offset, mask in flips:
        if offset < len(cert):
            cert[offset] ^= mask
    try:
        if embedded:
            doc = _serde_sample(samples)
            doc["cert_chain"][0]["data"] = list(cert)
            SnpVerifier().verify(json.dumps(doc).encode(), OPTS)
        else:
            SnpVerifier(cert_chain=bytes(cert)).verify(report, OPTS)
    except ParseError:
        pass
